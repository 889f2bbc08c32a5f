//! Facts about this node's network interfaces that the datapath needs (ifindex, MAC, MTU), read
//! through `ioctl` on a socket: that answers for the caller's network namespace, whatever
//! `/sys` shows, so the agent works under `ip netns exec`, `nsenter` or a plain `setns`. What
//! the CNI plugin reads with `ip` (routes, addresses) is read with [`ip_json`], its changes are
//! made with [`ip`], and [`in_netns`] runs code (and the `ip` it starts) inside another network
//! namespace. (The agent itself asks rtnetlink: `crate::netlink`.)

use std::{ffi::CString, fs::File, io, os::fd::AsRawFd, os::fd::FromRawFd, os::fd::OwnedFd};

use thiserror::Error;

/// What the datapath needs to know of one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
}

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("interface {0:?}: no such interface in this network namespace")]
    NotFound(String),
    #[error("interface {name:?}: {source}")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("interface name {0:?} is not a valid interface name")]
    BadName(String),
}

/// Where the datapath learns about interfaces; a trait so the compiler can be tested without
/// real interfaces.
pub trait Links {
    fn link(&self, name: &str) -> Result<Link, LinkError>;
}

/// The interfaces of the caller's network namespace.
pub struct KernelLinks {
    socket: OwnedFd,
}

impl KernelLinks {
    pub fn open() -> io::Result<KernelLinks> {
        // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created, valid descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(KernelLinks { socket })
    }

    /// Runs `request` on an `ifreq` naming `name`.
    fn ioctl(&self, name: &str, request: libc::Ioctl) -> Result<libc::ifreq, LinkError> {
        let c_name = CString::new(name).map_err(|_| LinkError::BadName(name.to_owned()))?;
        let bytes = c_name.as_bytes_with_nul();
        if bytes.len() > libc::IFNAMSIZ {
            return Err(LinkError::BadName(name.to_owned()));
        }
        // SAFETY: `ifreq` is a plain C struct for which all zeros is valid.
        let mut ifreq: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in ifreq.ifr_name.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        // SAFETY: `ifreq` is a valid, initialised `ifreq` with a NUL-terminated name; the
        // SIOCGIF* requests used here only write into it.
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), request, &mut ifreq) };
        if rc < 0 {
            let source = io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::ENODEV) => LinkError::NotFound(name.to_owned()),
                _ => LinkError::Io {
                    name: name.to_owned(),
                    source,
                },
            });
        }
        Ok(ifreq)
    }
}

impl Links for KernelLinks {
    fn link(&self, name: &str) -> Result<Link, LinkError> {
        // SAFETY: each ioctl (here and in the two union reads below) filled the union member
        // its request is defined to fill (SIOCGIFINDEX: ifru_ifindex, SIOCGIFHWADDR:
        // ifru_hwaddr, SIOCGIFMTU: ifru_mtu).
        let ifindex = unsafe { self.ioctl(name, libc::SIOCGIFINDEX)?.ifr_ifru.ifru_ifindex };
        // SAFETY: see above.
        let hwaddr = unsafe { self.ioctl(name, libc::SIOCGIFHWADDR)?.ifr_ifru.ifru_hwaddr };
        // SAFETY: see above.
        let mtu = unsafe { self.ioctl(name, libc::SIOCGIFMTU)?.ifr_ifru.ifru_mtu };
        let mut mac = [0u8; 6];
        for (dst, &src) in mac.iter_mut().zip(hwaddr.sa_data.iter()) {
            *dst = src as u8;
        }
        Ok(Link {
            ifindex: ifindex as u32,
            mac,
            mtu: mtu as u32,
        })
    }
}

/// Runs `ip ARGS` and returns its stdout; a failure names the command and its stderr.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| format!("running ip: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `ip -j ARGS` and parses its JSON output (no output at all, as `ip -j netns list-id`
/// prints when there is nothing to list, reads as an empty list).
pub fn ip_json<T: serde::de::DeserializeOwned>(args: &[&str]) -> Result<T, String> {
    let json_args: Vec<&str> = std::iter::once("-j").chain(args.iter().copied()).collect();
    let text = ip(&json_args)?;
    let text = if text.trim().is_empty() { "[]" } else { &text };
    serde_json::from_str(text).map_err(|error| format!("ip -j {}: {error}", args.join(" ")))
}

/// The name of interface `ifindex` in the calling thread's network namespace.
pub fn interface_name(ifindex: u32) -> io::Result<String> {
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: `name` has the IFNAMSIZ bytes if_indextoname writes at most.
    let found = unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) };
    if found.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: if_indextoname succeeded, so `name` holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// Runs `f` on a thread of its own that has entered the network namespace `netns` (an open
/// `/run/netns/NAME` or `/proc/PID/ns/net`): what `f` opens, and the processes it starts, live
/// in that namespace. The caller's thread stays where it is. A panic of `f` is re-raised here.
pub fn in_netns<T: Send>(netns: &File, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            // SAFETY: `netns` is an open namespace file that outlives the call; setns changes
            // only this thread's network namespace, and the thread ends after `f`.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        });
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_unknown_names_are_named() {
        let links = KernelLinks::open().unwrap();
        let lo = links.link("lo").unwrap();
        assert_eq!(lo.mac, [0; 6]);
        assert!(lo.ifindex >= 1 && lo.mtu >= 1500);
        let error = links.link("nonexistent0").unwrap_err();
        assert_eq!(
            error.to_string(),
            "interface \"nonexistent0\": no such interface in this network namespace"
        );
        assert!(matches!(
            links.link("a-name-longer-than-ifnamsiz"),
            Err(LinkError::BadName(_))
        ));
    }
}
