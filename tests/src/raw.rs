//! Raw Ethernet frames in and out of one interface.
//!
//! Owns [`RawSocket`]: an `AF_PACKET`/`SOCK_RAW` socket bound to one interface, for injecting
//! crafted (also malformed) frames and for catching what arrives. A socket belongs to the network
//! namespace of the thread that created it, so create it with [`RawSocket::open`] (which goes
//! through [`Netns::run_in`]) or with [`RawSocket::bind`] from inside `run_in`. It stays in that
//! namespace when moved to another thread.
//!
//! Receiving skips frames the interface transmitted (`PACKET_OUTGOING`): a socket on the host side
//! of a pod veth sees what the pod sent, not what the node sent to the pod. A socket never sees
//! its own frames.
//!
//! Panic contract: only [`RawSocket::recv_timeout`] panics, when `poll` or `recv` fail on the
//! (valid, bound) socket, which means a bug; [`RawSocket::try_recv_timeout`] returns the error.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{Result, TestbedError};
use crate::netns::Netns;

/// Largest frame [`RawSocket::try_recv_timeout`] returns whole (a 64 KiB GRO packet plus headers).
const RECV_BUF_LEN: usize = 65_536 + 256;

/// An `AF_PACKET` raw socket bound to one interface (see the module docs).
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl RawSocket {
    /// Opens a socket on `ifname` inside `ns`.
    pub fn open(ns: &Netns, ifname: &str) -> Result<Self> {
        let ifindex = ns.ifindex(ifname)?;
        ns.run_in(|| Self::bind(ifindex))?
    }

    /// Opens a socket on `ifindex` in the calling thread's network namespace.
    pub fn bind(ifindex: u32) -> Result<Self> {
        let err = |op| TestbedError::RawSocket {
            ifindex,
            op,
            source: io::Error::last_os_error(),
        };
        // Protocol 0 at creation: the socket receives nothing until it is bound below, so no
        // frame of another interface slips in between.
        // SAFETY: socket() takes plain integers and returns a new descriptor or -1.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(err("socket"));
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::sa_family_t;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = i32::try_from(ifindex).map_err(|_| TestbedError::RawSocket {
            ifindex,
            op: "bind",
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        // SAFETY: `addr` is a valid, initialised sockaddr_ll and the length passed is its size;
        // bind only reads it during the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(err("bind"));
        }
        Ok(Self { fd, ifindex })
    }

    /// The interface the socket is bound to (an index in the socket's namespace).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Transmits `frame` (destination MAC first, no FCS) out of the interface as is.
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: the pointer and length describe `frame`, which is borrowed for the call; send
        // only reads it.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(self.error("send", io::Error::last_os_error()));
        }
        if n as usize != frame.len() {
            let msg = format!("short send: {n} of {} bytes", frame.len());
            return Err(self.error("send", io::Error::other(msg)));
        }
        Ok(())
    }

    /// The next frame received within `timeout`, or `None`. Panics if `poll`/`recv` fail (see the
    /// module docs).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.try_recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("RawSocket::recv_timeout: {e}"))
    }

    /// The next frame received within `timeout`, `Ok(None)` on timeout. Frames longer than 64 KiB
    /// are truncated.
    pub fn try_recv_timeout(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Round up so that a sub-millisecond remainder still waits.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid pollfd and we pass a count of 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.error("poll", e));
            }
            if rc == 0 {
                return Ok(None);
            }
            // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
            let mut from_len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is writable for `buf.len()` bytes, and `from`/`from_len` describe a
            // writable sockaddr_ll; recvfrom writes within those bounds. MSG_DONTWAIT: poll said
            // readable, never block if the frame was consumed meanwhile.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&raw mut from).cast::<libc::sockaddr>(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) {
                    continue;
                }
                return Err(self.error("recv", e));
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                continue;
            }
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
    }

    fn error(&self, op: &'static str, source: io::Error) -> TestbedError {
        TestbedError::RawSocket {
            ifindex: self.ifindex,
            op,
            source,
        }
    }
}
