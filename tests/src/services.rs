//! Traffic to services for end-to-end tests and the demo: backend servers that answer every
//! TCP connection and UDP datagram with their pod's name, and clients that connect to a
//! service address and record which backend answered, from which source port. With
//! [`expected_backend`] a test predicts each connection's backend from the service's Maglev
//! table (the agent's own compiler, `ctpath_control::services::table_of`) and checks every
//! one, not only the shares.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::ScopedJoinHandle,
    time::Duration,
};

use ctpath_common::{
    flow::flow_hash,
    maps::{MAGLEV_LARGE_SLOTS, MAGLEV_SMALL_SLOTS},
    wire::{IPPROTO_TCP, IPPROTO_UDP},
};
use ctpath_control::services::table_of;

use crate::Netns;

/// How long one exchange waits for an answer.
const WAIT: Duration = Duration::from_secs(2);

/// The answer a backend gives: its name, then a newline.
fn answer(name: &str) -> Vec<u8> {
    format!("{name}\n").into_bytes()
}

/// Serves `port` (TCP and UDP) in `server`'s namespace, answering with `name`, until `stop`;
/// returns once both sockets are bound. TCP connections are served one at a time: each is
/// answered, then echoed until the client half-closes (so a test can hold one open).
pub fn serve_name<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    server: &'scope Netns,
    name: &'scope str,
    port: u16,
    stop: &'scope AtomicBool,
) -> ScopedJoinHandle<'scope, ()> {
    let (bound_tx, bound_rx) = mpsc::channel();
    let handle = scope.spawn(move || {
        server
            .run_in(|| {
                let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
                let listener = TcpListener::bind(any).expect("bind TCP");
                listener.set_nonblocking(true).expect("non-blocking");
                let udp = UdpSocket::bind(any).expect("bind UDP");
                udp.set_nonblocking(true).expect("non-blocking");
                bound_tx.send(()).expect("caller waits");
                std::thread::scope(|connections| {
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        let mut idle = true;
                        if let Ok((stream, _)) = listener.accept() {
                            idle = false;
                            connections.spawn(move || serve_connection(stream, name, stop));
                        }
                        if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                            idle = false;
                            let _ = udp.send_to(&answer(name), peer);
                        }
                        if idle {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                });
            })
            .expect("enter server namespace");
    });
    bound_rx.recv_timeout(WAIT).expect("servers bound");
    handle
}

fn serve_connection(mut stream: TcpStream, name: &str, stop: &AtomicBool) {
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    if stream.write_all(&answer(name)).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(len) => {
                if stream.write_all(&buf[..len]).is_err() {
                    return;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// One answered connection: the client's source port and the backend that answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub source_port: u16,
    pub backend: String,
}

fn read_line(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read_exact(&mut byte).is_ok() {
        if byte[0] == b'\n' {
            return String::from_utf8(line).ok();
        }
        line.push(byte[0]);
    }
    None
}

/// `count` TCP connections from `client` to `vip:port`, each closed after its answer; the
/// answers, `None` for a connection that got none.
pub fn tcp_answers(client: &Netns, vip: Ipv4Addr, port: u16, count: usize) -> Vec<Option<Answer>> {
    client
        .run_in(|| {
            (0..count)
                .map(|_| {
                    let mut stream =
                        TcpStream::connect_timeout(&SocketAddrV4::new(vip, port).into(), WAIT)
                            .ok()?;
                    stream.set_read_timeout(Some(WAIT)).ok()?;
                    let source_port = stream.local_addr().ok()?.port();
                    let backend = read_line(&mut stream)?;
                    Some(Answer {
                        source_port,
                        backend,
                    })
                })
                .collect()
        })
        .expect("enter client namespace")
}

/// `count` UDP datagrams from `client` to `vip:port`, each from a new socket (a new
/// connection); the answers, `None` for a datagram that got none.
pub fn udp_answers(client: &Netns, vip: Ipv4Addr, port: u16, count: usize) -> Vec<Option<Answer>> {
    client
        .run_in(|| {
            (0..count)
                .map(|_| {
                    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
                    socket.set_read_timeout(Some(WAIT)).ok()?;
                    socket.connect(SocketAddrV4::new(vip, port)).ok()?;
                    socket.send(b"which backend?").ok()?;
                    let mut buf = [0u8; 256];
                    let len = socket.recv(&mut buf).ok()?;
                    let text = std::str::from_utf8(&buf[..len]).ok()?;
                    Some(Answer {
                        source_port: socket.local_addr().ok()?.port(),
                        backend: text.trim_end().to_owned(),
                    })
                })
                .collect()
        })
        .expect("enter client namespace")
}

/// Whether a UDP datagram from `client` to `vip:port` is refused: the socket, connected to
/// the service, gets the port unreachable a backend sends about it (Linux hands an ICMP error
/// to a connected socket only if its quote is that socket's own datagram, to the service's
/// address and port). `false` if no answer or error came.
pub fn udp_refused(client: &Netns, vip: Ipv4Addr, port: u16) -> bool {
    client
        .run_in(|| {
            let exchange = || -> std::io::Result<usize> {
                let socket = UdpSocket::bind("0.0.0.0:0")?;
                socket.set_read_timeout(Some(WAIT))?;
                socket.connect(SocketAddrV4::new(vip, port))?;
                socket.send(b"anyone?")?;
                socket.recv(&mut [0u8; 64])
            };
            matches!(exchange(), Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused)
        })
        .expect("enter client namespace")
}

/// A TCP connection to a service held open: its backend, and whether it still carries data.
pub struct HeldConnection {
    stream: TcpStream,
    pub answer: Answer,
}

impl HeldConnection {
    /// Opens a connection from `client` to `vip:port` and reads its backend's answer.
    pub fn open(client: &Netns, vip: Ipv4Addr, port: u16) -> Option<HeldConnection> {
        client
            .run_in(|| {
                let mut stream =
                    TcpStream::connect_timeout(&SocketAddrV4::new(vip, port).into(), WAIT).ok()?;
                stream.set_read_timeout(Some(WAIT)).ok()?;
                let source_port = stream.local_addr().ok()?.port();
                let backend = read_line(&mut stream)?;
                Some(HeldConnection {
                    stream,
                    answer: Answer {
                        source_port,
                        backend,
                    },
                })
            })
            .expect("enter client namespace")
    }

    /// Whether `bytes` bytes sent on the connection come back intact.
    pub fn echoes(&mut self, bytes: usize) -> bool {
        let sent: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        if self.stream.write_all(&sent).is_err() {
            return false;
        }
        let mut received = vec![0u8; bytes];
        self.stream.read_exact(&mut received).is_ok() && received == sent
    }
}

/// The backend (by address) a new connection from `client:source_port` to `vip:port` of a
/// service with `backends` is given: its Maglev slot, as the datapath computes it.
pub fn expected_backend(
    backends: &[Ipv4Addr],
    client: Ipv4Addr,
    source_port: u16,
    vip: Ipv4Addr,
    port: u16,
    tcp: bool,
) -> Option<Ipv4Addr> {
    let octets: Vec<[u8; 4]> = backends.iter().map(Ipv4Addr::octets).collect();
    let (_, table) = table_of(&octets)?;
    let protocol = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
    let hash = flow_hash(client.octets(), vip.octets(), protocol, source_port, port) as u64;
    let size = if table.large {
        MAGLEV_LARGE_SLOTS
    } else {
        MAGLEV_SMALL_SLOTS
    } as u64;
    Some(Ipv4Addr::from(table.slots[(hash % size) as usize]))
}

/// The share of the slots of the table of `backends` each backend holds, in `backends`' order.
pub fn maglev_shares(backends: &[Ipv4Addr]) -> Vec<f64> {
    let octets: Vec<[u8; 4]> = backends.iter().map(Ipv4Addr::octets).collect();
    let Some((_, table)) = table_of(&octets) else {
        return Vec::new();
    };
    octets
        .iter()
        .map(|backend| {
            table.slots.iter().filter(|slot| *slot == backend).count() as f64
                / table.slots.len() as f64
        })
        .collect()
}
