//! Named network namespaces and running things inside them.
//!
//! Owns [`Netns`], a handle to one `/run/netns/NAME` namespace: running commands in it
//! ([`Netns::exec`], [`Netns::ip`]), spawning long-lived processes ([`Netns::spawn`]), running Rust
//! closures in it ([`Netns::run_in`], a fresh thread that `setns`es first), and small queries
//! (ifindex, link MAC, sysctl). Also the crate-internal primitives that create and delete
//! namespaces; which namespaces exist and when they go away is the testbed's business
//! (`topology.rs`), not this module's.
//!
//! A `Netns` does not own its namespace: it stays usable (and its commands fail with a clear
//! error) after the testbed that made it is dropped.
//!
//! Panic contract: nothing here panics, except that [`Netns::run_in`] re-raises a panic of the
//! closure on the calling thread.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Result, TestbedError};
use crate::process::{ChildGuard, ChildRegistry};

/// Where `ip netns add` bind-mounts namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A named network namespace (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Netns {
    name: String,
    children: Arc<ChildRegistry>,
}

impl fmt::Debug for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Netns").field(&self.name).finish()
    }
}

/// What `ip -o link show` says about one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// The interface index inside its namespace.
    pub ifindex: u32,
    /// The MAC address (all zero for interfaces without one, such as `lo`).
    pub mac: [u8; 6],
    /// The MTU.
    pub mtu: u32,
}

impl Netns {
    pub(crate) fn new(name: String, children: Arc<ChildRegistry>) -> Self {
        Self { name, children }
    }

    /// The namespace name as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind mount that pins the namespace: `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_RUN_DIR).join(&self.name)
    }

    /// Runs `argv` inside the namespace (`ip netns exec NAME argv…`) and waits for it. A non-zero
    /// exit is an error naming the command, its status and its stderr.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        run_checked(&mut self.exec_command(argv))
    }

    /// Like [`Netns::exec`], but a non-zero exit is returned in `Output::status`, not as an error.
    pub fn exec_unchecked(&self, argv: &[&str]) -> Result<Output> {
        let mut cmd = self.exec_command(argv);
        cmd.output().map_err(|source| TestbedError::Spawn {
            command: command_line(&cmd),
            source,
        })
    }

    /// Runs `ip -n NAME args…` (cheaper than `exec(["ip", …])`) and checks its exit status.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new("ip");
        cmd.arg("-n").arg(&self.name).args(args);
        run_checked(&mut cmd)
    }

    /// Starts `argv` inside the namespace with stdin, stdout and stderr on `/dev/null`. The guard
    /// kills it on drop; the testbed kills it too when the testbed is dropped first.
    ///
    /// Returns as soon as `ip netns exec` started: the command enters the namespace and execs a
    /// moment later, so wait for it to be ready (a port that answers, a file it writes) before
    /// relying on it.
    pub fn spawn(&self, argv: &[&str]) -> Result<ChildGuard> {
        self.spawn_with(argv, Stdio::null(), Stdio::null())
    }

    /// Like [`Netns::spawn`] with chosen stdout and stderr (e.g. `Stdio::piped()`, then
    /// [`ChildGuard::take_stdout`]; a pipe nobody reads eventually blocks the child).
    pub fn spawn_with(&self, argv: &[&str], stdout: Stdio, stderr: Stdio) -> Result<ChildGuard> {
        self.spawn_command(self.exec_command(argv), stdout, stderr)
    }

    /// Like [`Netns::spawn_with`], but the process joins only the network namespace (`nsenter
    /// --net`), not a fresh mount namespace as under `ip netns exec`: it keeps the caller's
    /// mounts, among them the host's bpffs at `/sys/fs/bpf` (and the caller's `/sys`).
    pub fn spawn_sharing_mounts(
        &self,
        argv: &[&str],
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<ChildGuard> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .args(argv);
        self.spawn_command(cmd, stdout, stderr)
    }

    fn spawn_command(&self, mut cmd: Command, stdout: Stdio, stderr: Stdio) -> Result<ChildGuard> {
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Own process group, so that killing the child also kills what it forked.
            .process_group(0);
        let command = command_line(&cmd);
        let child = cmd.spawn().map_err(|source| TestbedError::Spawn {
            command: command.clone(),
            source,
        })?;
        Ok(ChildGuard::new(child, command, Arc::clone(&self.children)))
    }

    /// Runs `f` on a fresh thread that has first joined this namespace with
    /// `setns(CLONE_NEWNET)`, and returns its result. Sockets (raw sockets, netlink, BPF links
    /// that aya attaches by ifindex) created by `f` belong to this namespace and stay there
    /// when returned. The thread's mount namespace is unchanged: `/sys/class/net` still shows
    /// the caller's namespace, so look interfaces up with `if_nametoindex` or netlink. A panic in
    /// `f` is re-raised here.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = self.path();
        let file = File::open(&path).map_err(|source| TestbedError::OpenNetns {
            netns: self.name.clone(),
            path: path.display().to_string(),
            source,
        })?;
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("netns {}", self.name))
                .spawn_scoped(scope, move || -> Result<T> {
                    // SAFETY: `file` is an open descriptor of a network-namespace bind mount and
                    // outlives the call; setns only changes this (fresh, single-purpose) thread's
                    // network namespace, which ends with the thread.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        return Err(TestbedError::Setns {
                            netns: self.name.clone(),
                            source: io::Error::last_os_error(),
                        });
                    }
                    drop(file);
                    Ok(f())
                })
                .map_err(|source| TestbedError::Thread {
                    netns: self.name.clone(),
                    source,
                })?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// The index of `ifname` inside this namespace (`if_nametoindex` run via [`Netns::run_in`]).
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        let no_such = |source| TestbedError::NoSuchInterface {
            netns: self.name.clone(),
            ifname: ifname.to_owned(),
            source,
        };
        let c_name = CString::new(ifname)
            .map_err(|_| no_such(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let index = self.run_in(|| {
            // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call;
            // if_nametoindex only reads it.
            let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
            if index == 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(index)
            }
        })?;
        index.map_err(no_such)
    }

    /// Index, MAC and MTU of `ifname`, parsed from `ip -n NAME -o link show dev IFNAME`.
    pub fn link(&self, ifname: &str) -> Result<LinkInfo> {
        let args = ["-o", "link", "show", "dev", ifname];
        let out = self.ip(&args)?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_link(&text).ok_or_else(|| TestbedError::Parse {
            what: "ifindex, mtu and link/ether",
            command: format!("ip -n {} {}", self.name, args.join(" ")),
            output: text.into_owned(),
        })
    }

    /// Writes a sysctl of this namespace. `key` is dotted (`net.ipv4.ip_forward`) or, for names
    /// containing dots such as VLAN interfaces, a path relative to `/proc/sys`
    /// (`net/ipv4/conf/eth0.100/rp_filter`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let rel = if key.contains('/') {
            key.to_owned()
        } else {
            key.replace('.', "/")
        };
        let path = PathBuf::from("/proc/sys").join(rel);
        // /proc/sys/net resolves against the opening thread's network namespace.
        self.run_in(|| std::fs::write(&path, value))?
            .map_err(|source| TestbedError::Sysctl {
                netns: self.name.clone(),
                key: key.to_owned(),
                value: value.to_owned(),
                source,
            })
    }

    /// Pids of the processes whose network namespace this is (`ip netns pids NAME`).
    pub fn pids(&self) -> Result<Vec<u32>> {
        pids_of(&self.name)
    }

    fn exec_command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(argv);
        cmd
    }
}

/// Serialises `ip netns add` within the process: the first `ip netns add` on a machine makes
/// `/run/netns` a shared mount, and concurrent first calls can stack mounts.
static ADD_LOCK: Mutex<()> = Mutex::new(());

/// `ip netns add NAME`.
pub(crate) fn add(name: &str) -> Result<()> {
    let _serial = ADD_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    run_checked(Command::new("ip").args(["netns", "add", name])).map(drop)
}

/// Kills every process inside namespace `name` (never this process), then `ip netns del NAME`.
pub(crate) fn delete(name: &str) -> Result<()> {
    let own = std::process::id();
    for pid in pids_of(name)?.into_iter().filter(|&p| p != own) {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill only sends a signal. `pid` was just listed as living in a namespace
            // this testbed created (or a dead run's namespace), so it belongs to the test run.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    run_checked(Command::new("ip").args(["netns", "del", name])).map(drop)
}

fn pids_of(name: &str) -> Result<Vec<u32>> {
    let out = run_checked(Command::new("ip").args(["netns", "pids", name]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Runs `cmd`, turning a start failure or a non-zero exit into an error naming the command.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<Output> {
    let command = command_line(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TestbedError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(TestbedError::Command {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses one line of `ip -o link show`:
/// `3: eth1@if3: <BROADCAST,…> mtu 1450 qdisc … \    link/ether 02:00:00:00:00:01 brd …`.
fn parse_link(line: &str) -> Option<LinkInfo> {
    let ifindex = line.split(':').next()?.trim().parse().ok()?;
    let mut words = line.split_whitespace();
    let mut mtu = None;
    let mut mac = [0u8; 6];
    while let Some(word) = words.next() {
        match word {
            "mtu" if mtu.is_none() => mtu = words.next()?.parse().ok(),
            "link/ether" => mac = crate::parse_mac(words.next()?)?,
            _ => {}
        }
    }
    Some(LinkInfo {
        ifindex,
        mac,
        mtu: mtu?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_link_oneline() {
        let line =
            "3: eth1@if3: <BROADCAST,MULTICAST> mtu 1450 qdisc noop state DOWN mode DEFAULT \
                    group default qlen 1000\\    link/ether 02:00:00:00:00:01 brd \
                    ff:ff:ff:ff:ff:ff link-netns tB\n";
        assert_eq!(
            parse_link(line),
            Some(LinkInfo {
                ifindex: 3,
                mac: [2, 0, 0, 0, 0, 1],
                mtu: 1450
            })
        );
        let lo = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode \
                  DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd \
                  00:00:00:00:00:00";
        assert_eq!(parse_link(lo).map(|l| (l.ifindex, l.mtu)), Some((1, 65536)));
        assert_eq!(parse_link("garbage"), None);
    }
}
