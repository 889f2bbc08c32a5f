//! A real etcd server (the `etcd` binary of Debian's `etcd-server`) for tests: one member, its
//! data in a temporary directory of its own, on a free port, on loopback or inside a testbed
//! namespace. [`EtcdServer::start`] returns once it answers `etcdctl endpoint health`; dropping
//! it kills the server and removes its data, even when the test panicked. It can be killed and
//! started again on the same data (a crash and a restart).
//!
//! Panic contract: the constructors and [`EtcdServer::start_again`] panic when etcd does not
//! start or become healthy (a test cannot go on without it); [`EtcdServer::etcdctl`] panics
//! when etcdctl fails.

use std::{
    net::{Ipv4Addr, TcpListener},
    os::unix::process::CommandExt,
    process::{Command, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{process::ChildRegistry, ChildGuard, Netns};

/// How long etcd may take to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct EtcdServer {
    /// Where it runs: a testbed namespace, or the caller's (loopback).
    netns: Option<Netns>,
    /// The address it listens on for clients (and its peer port, for its one member).
    ip: Ipv4Addr,
    /// Arguments beyond the fixture's own (limits such as `--max-txn-ops`).
    extra_args: Vec<String>,
    client_port: u16,
    peer_port: u16,
    child: Option<ChildGuard>,
    // Last: removed after the server is killed.
    data_dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd on 127.0.0.1 in the caller's network namespace.
    pub fn start() -> EtcdServer {
        EtcdServer::launch(None, Ipv4Addr::LOCALHOST, &[])
    }

    /// [`EtcdServer::start`] with `extra_args` after the fixture's own arguments.
    pub fn start_with(extra_args: &[String]) -> EtcdServer {
        EtcdServer::launch(None, Ipv4Addr::LOCALHOST, extra_args)
    }

    /// Starts etcd inside `netns`, listening on `ip` (an address of that namespace, e.g. a
    /// node's underlay address, so the other nodes reach it).
    pub fn start_in(netns: &Netns, ip: Ipv4Addr) -> EtcdServer {
        EtcdServer::launch(Some(netns.clone()), ip, &[])
    }

    /// [`EtcdServer::start_in`] with `extra_args` after the fixture's own arguments (e.g.
    /// `--max-request-bytes`, `--max-txn-ops` for states larger than etcd's defaults allow).
    pub fn start_in_with(netns: &Netns, ip: Ipv4Addr, extra_args: &[String]) -> EtcdServer {
        EtcdServer::launch(Some(netns.clone()), ip, extra_args)
    }

    fn launch(netns: Option<Netns>, ip: Ipv4Addr, extra_args: &[String]) -> EtcdServer {
        let free_port = || {
            let bind = || {
                TcpListener::bind((ip, 0))
                    .and_then(|listener| listener.local_addr())
                    .map(|address| address.port())
                    .expect("a free port")
            };
            match &netns {
                Some(netns) => netns.run_in(bind).expect("run in the namespace"),
                None => bind(),
            }
        };
        let mut server = EtcdServer {
            ip,
            extra_args: extra_args.to_vec(),
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
            netns,
            data_dir: tempfile::tempdir().expect("tempdir for etcd"),
        };
        server.start_again(ip);
        server
    }

    /// The client URL on the address it listens on.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.ip, self.client_port)
    }

    /// Kills the server (SIGKILL, a crash); its data stays for [`EtcdServer::start_again`].
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            child.kill().expect("kill etcd");
        }
    }

    /// Starts the server again on its data, port and namespace, listening for clients on
    /// `ip` (the address it had, or another one of the namespace, such as 127.0.0.1, to keep
    /// clients elsewhere out for a while); returns once it is healthy.
    pub fn start_again(&mut self, ip: Ipv4Addr) {
        assert!(self.child.is_none(), "etcd still runs");
        self.ip = ip;
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let data_dir = self.data_dir.path().join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("etcd.log"))
            .expect("etcd log");
        let initial_cluster = format!("test={peer_url}");
        let mut argv = vec![
            "etcd",
            "--name",
            "test",
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &initial_cluster,
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ];
        argv.extend(self.extra_args.iter().map(String::as_str));
        let child = match &self.netns {
            Some(netns) => netns.spawn_with(&argv, Stdio::null(), Stdio::from(log)),
            None => {
                let mut command = Command::new(argv[0]);
                command
                    .args(&argv[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(log))
                    .process_group(0);
                let child = command
                    .spawn()
                    .expect("start etcd (is etcd-server installed?)");
                Ok(ChildGuard::new(
                    child,
                    argv.join(" "),
                    Arc::new(ChildRegistry::default()),
                ))
            }
        }
        .expect("start etcd");
        self.child = Some(child);
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let health = self.run_etcdctl(&["endpoint", "health", "--command-timeout=1s"]);
            if health.status.success() {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "etcd not healthy (exit: {exited:?}); its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `etcdctl --endpoints URL ARGS` (etcdctl 3.4 speaks the v3 API) where the server runs; panics unless it
    /// succeeds. Returns its stdout.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let output = self.run_etcdctl(args);
        assert!(
            output.status.success(),
            "etcdctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn run_etcdctl(&self, args: &[&str]) -> Output {
        let endpoints = format!("--endpoints={}", self.endpoint());
        let mut argv = vec!["etcdctl", endpoints.as_str()];
        argv.extend_from_slice(args);
        let output = match &self.netns {
            Some(netns) => netns.exec_unchecked(&argv),
            None => Command::new(argv[0])
                .args(&argv[1..])
                .output()
                .map_err(|source| crate::TestbedError::Spawn {
                    command: argv.join(" "),
                    source,
                }),
        };
        output.expect("run etcdctl (is etcd-client installed?)")
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let status = self.etcdctl(&["endpoint", "status", "--write-out=json"]);
        let field = "\"revision\":";
        let at = status.find(field).expect("a revision in etcdctl's status") + field.len();
        status[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|digits| digits.parse().ok())
            .expect("a revision")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
