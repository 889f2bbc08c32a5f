//! The scale case's traffic, std UDP sockets opened inside the pods' namespaces (a socket
//! stays in the namespace it was created in, so the threads that use it run anywhere):
//!
//! - [`Echo`]: a UDP echo server in a pod, answering until it is dropped;
//! - [`Prober`]: from one pod, a datagram every [`PROBE_INTERVAL`] to a pod that may not be
//!   reachable yet, until the first echo comes back: when that happened, measured from a given
//!   instant (the end of the etcd write);
//! - [`Flow`]: a steady stream of numbered datagrams from one pod to a counting receiver in
//!   another, for the packets lost while the state changes.
//!
//! Owns [`ProbeError`]. Panic contract: nothing here panics; a thread that cannot use its
//! socket ends and reports what it counted.

use std::{
    collections::HashSet,
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use ctpath_testbed::{Netns, TestbedError};
use thiserror::Error;

/// How often a prober sends while it has no answer.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(1);
/// How long a server thread blocks before it looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("entering {netns}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: Box<TestbedError>,
    },
    #[error("{what} in {netns}: {source}")]
    Socket {
        what: &'static str,
        netns: String,
        #[source]
        source: std::io::Error,
    },
}

/// A UDP socket bound to `address` inside `netns`, with `timeout` on reads.
fn socket_in(
    netns: &Netns,
    address: SocketAddrV4,
    timeout: Duration,
) -> Result<UdpSocket, ProbeError> {
    let socket_error = |what| {
        let netns = netns.name().to_owned();
        move |source| ProbeError::Socket {
            what,
            netns,
            source,
        }
    };
    let socket = netns
        .run_in(|| UdpSocket::bind(address))
        .map_err(|source| ProbeError::Netns {
            netns: netns.name().to_owned(),
            source: Box::new(source),
        })?
        .map_err(socket_error("bind"))?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(socket_error("read timeout"))?;
    Ok(socket)
}

/// A thread serving a socket until the flag is set; joined on drop.
struct Server<T> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Server<T> {
    fn spawn(serve: impl FnOnce(&AtomicBool) -> T + Send + 'static) -> Server<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve(&flag));
        Server {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread and returns what it returned (None if it panicked).
    fn finish(mut self) -> Option<T> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take()?.join().ok()
    }
}

impl<T> Drop for Server<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A UDP echo server on `ip:port` in a pod.
pub struct Echo {
    _server: Server<()>,
}

impl Echo {
    pub fn start(netns: &Netns, ip: Ipv4Addr, port: u16) -> Result<Echo, ProbeError> {
        let socket = socket_in(netns, SocketAddrV4::new(ip, port), POLL)?;
        let server = Server::spawn(move |stop| {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((len, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..len], peer);
                }
            }
        });
        Ok(Echo { _server: server })
    }
}

/// A non-blocking socket in one pod, ready to probe another pod's [`Echo`].
pub struct Prober {
    socket: UdpSocket,
}

/// What one [`Prober::first_answer`] found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probed {
    /// When the first echo arrived, from the given instant.
    pub answered: Option<Duration>,
    /// Datagrams sent meanwhile.
    pub sent: u32,
}

impl Prober {
    pub fn open(netns: &Netns) -> Result<Prober, ProbeError> {
        let socket = socket_in(
            netns,
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            PROBE_INTERVAL,
        )?;
        socket
            .set_nonblocking(true)
            .map_err(|source| ProbeError::Socket {
                what: "non-blocking",
                netns: netns.name().to_owned(),
                source,
            })?;
        Ok(Prober { socket })
    }

    /// Sends a datagram to `target` every [`PROBE_INTERVAL`] (paced against `since`) and
    /// looks for an echo before each, until one came back or `timeout` after `since` passed.
    /// Echoes of another `round`'s datagrams do not count.
    pub fn first_answer(
        &self,
        target: SocketAddrV4,
        since: Instant,
        timeout: Duration,
        round: u32,
    ) -> Probed {
        let mut buf = [0u8; 16];
        let mut sent = 0u32;
        while since.elapsed() < timeout {
            loop {
                match self.socket.recv(&mut buf) {
                    Ok(8) if buf[..4] == round.to_be_bytes() => {
                        return Probed {
                            answered: Some(since.elapsed()),
                            sent,
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // Stale echoes, and ICMP errors of earlier sends (refused): go on.
                    _ => {}
                }
            }
            let mut message = [0u8; 8];
            message[..4].copy_from_slice(&round.to_be_bytes());
            message[4..].copy_from_slice(&sent.to_be_bytes());
            // Errors (no route yet) are what an unreachable pod looks like: go on.
            let _ = self.socket.send_to(&message, target);
            sent += 1;
            let next = since + PROBE_INTERVAL * sent;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        Probed {
            answered: None,
            sent,
        }
    }
}

/// What a [`Flow`] counted.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowCount {
    pub sent: u64,
    pub received: u64,
    /// Sent but never received.
    pub lost: u64,
    /// Sends the sender's own stack refused (not on the wire, so not in `sent`).
    #[serde(default)]
    pub send_errors: u64,
    pub seconds: f64,
}

/// A steady UDP flow: numbered datagrams every `interval` from one pod to a receiver in
/// another that counts the distinct numbers it got.
pub struct Flow {
    sender: Server<(u64, u64)>,
    receiver: Server<HashSet<u64>>,
    received: Arc<AtomicU64>,
    started: Instant,
}

impl Flow {
    pub fn start(
        from: &Netns,
        to: &Netns,
        to_ip: Ipv4Addr,
        port: u16,
        interval: Duration,
    ) -> Result<Flow, ProbeError> {
        let receiving = socket_in(to, SocketAddrV4::new(to_ip, port), POLL)?;
        let sending = socket_in(from, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), POLL)?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let receiver = Server::spawn(move |stop| {
            let mut seen = HashSet::new();
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(8) = receiving.recv(&mut buf) {
                    let mut number = [0u8; 8];
                    number.copy_from_slice(&buf[..8]);
                    seen.insert(u64::from_be_bytes(number));
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            seen
        });
        let target = SocketAddrV4::new(to_ip, port);
        let sender = Server::spawn(move |stop| {
            let start = Instant::now();
            let (mut sent, mut errors, mut attempts) = (0u64, 0u64, 0u32);
            while !stop.load(Ordering::Relaxed) {
                match sending.send_to(&sent.to_be_bytes(), target) {
                    Ok(_) => sent += 1,
                    Err(_) => errors += 1,
                }
                attempts += 1;
                // Paced against the start, so a late wake-up does not lower the rate.
                let next = start + interval * attempts;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            (sent, errors)
        });
        Ok(Flow {
            sender,
            receiver,
            received,
            started: Instant::now(),
        })
    }

    /// Waits until the receiver has had a datagram (the flow is allowed end to end), at
    /// most `timeout`; whether it had.
    pub fn wait_flowing(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.received.load(Ordering::Relaxed) == 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Stops the sender, waits `grace` for what is in flight, and counts.
    pub fn finish(self, grace: Duration) -> FlowCount {
        let (sent, send_errors) = self.sender.finish().unwrap_or((0, 0));
        let seconds = self.started.elapsed().as_secs_f64();
        std::thread::sleep(grace);
        let seen = self.receiver.finish().unwrap_or_default();
        let received = seen.iter().filter(|&&n| n < sent).count() as u64;
        FlowCount {
            sent,
            received,
            lost: sent - received,
            send_errors,
            seconds,
        }
    }
}
