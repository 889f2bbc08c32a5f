//! Traffic between pods for end-to-end tests and the demo: ping, and UDP and TCP request/echo
//! exchanges written with std sockets inside the pods' namespaces, so a test learns exactly which
//! messages arrived, and TCP echo servers to run any client against (`with_tcp_echo`: a
//! container's `nc`; `with_tcp_echo_servers`: a service's backends). Bounded in count and time; every call stops by itself.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    sync::mpsc,
    time::Duration,
};

use crate::{Netns, RawSocket};

/// How long one exchange waits for an answer.
const WAIT: Duration = Duration::from_secs(2);

/// Whether `count` pings from `from` to `to` were all answered (`ping -c count`), optionally
/// bound to the pod's interface `interface`.
pub fn ping(from: &Netns, to: Ipv4Addr, count: u32, interface: Option<&str>) -> bool {
    let count = count.to_string();
    let to = to.to_string();
    let mut argv = vec!["ping", "-c", &count, "-i", "0.2", "-W", "2", "-q"];
    if let Some(interface) = interface {
        argv.extend(["-I", interface]);
    }
    argv.push(&to);
    from.exec_unchecked(&argv)
        .map(|output| output.status.success())
        .unwrap_or(false)
}

/// Sends `count` UDP datagrams from `client` to `server_ip:port`, where `server` echoes each;
/// returns how many echoes came back.
pub fn udp_echo(client: &Netns, server: &Netns, server_ip: Ipv4Addr, port: u16, count: u32) -> u32 {
    let (bound_tx, bound_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let echo = scope.spawn(|| {
            server
                .run_in(|| {
                    let socket =
                        UdpSocket::bind(SocketAddrV4::new(server_ip, port)).expect("bind UDP echo");
                    socket.set_read_timeout(Some(WAIT)).expect("timeout");
                    bound_tx.send(()).expect("main thread waits");
                    let mut buf = [0u8; 2048];
                    for _ in 0..count {
                        let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                            break;
                        };
                        let _ = socket.send_to(&buf[..len], peer);
                    }
                })
                .expect("enter server namespace");
        });
        bound_rx.recv_timeout(WAIT).expect("UDP echo server bound");
        let echoed = client
            .run_in(|| {
                let socket = UdpSocket::bind("0.0.0.0:0").expect("bind client");
                socket.set_read_timeout(Some(WAIT)).expect("timeout");
                let mut echoed = 0;
                let mut buf = [0u8; 2048];
                for i in 0..count {
                    let message = format!("ctpath udp {i}");
                    socket
                        .send_to(message.as_bytes(), SocketAddrV4::new(server_ip, port))
                        .expect("send");
                    if let Ok(len) = socket.recv(&mut buf) {
                        echoed += u32::from(&buf[..len] == message.as_bytes());
                    }
                }
                echoed
            })
            .expect("enter client namespace");
        echo.join().expect("echo thread");
        echoed
    })
}

/// Opens a TCP connection from `client` to `server_ip:port`, where `server` accepts it and
/// echoes; sends `bytes` bytes and returns whether all came back intact.
pub fn tcp_echo(
    client: &Netns,
    server: &Netns,
    server_ip: Ipv4Addr,
    port: u16,
    bytes: usize,
) -> bool {
    with_tcp_echo(server, server_ip, port, || {
        tcp_echo_client(client, SocketAddrV4::new(server_ip, port), bytes)
    })
}

/// Opens a TCP connection from `client` to `to`, where an echo server answers (directly, or
/// behind a service's virtual IP: [`with_tcp_echo_servers`]); sends `bytes` bytes and returns
/// whether all came back intact.
pub fn tcp_echo_client(client: &Netns, to: SocketAddrV4, bytes: usize) -> bool {
    client
        .run_in(|| {
            let Ok(mut stream) = TcpStream::connect_timeout(&to.into(), WAIT) else {
                return false;
            };
            stream.set_read_timeout(Some(WAIT)).expect("timeout");
            let sent: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
            let writer = stream.try_clone().expect("clone stream");
            let sender = std::thread::spawn(move || {
                let mut writer = writer;
                let ok = writer.write_all(&sent).is_ok();
                let _ = writer.shutdown(std::net::Shutdown::Write);
                ok
            });
            let mut received = Vec::with_capacity(bytes);
            let _ = stream.read_to_end(&mut received);
            let expected: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
            sender.join().unwrap_or(false) && received == expected
        })
        .expect("enter client namespace")
}

/// Runs `client` while each of `servers` listens on its address and `port` as
/// [`with_tcp_echo`] does (the backends of a service: whichever one a connection is given to
/// answers it); returns what `client` returned.
pub fn with_tcp_echo_servers<T>(
    servers: &[(&Netns, Ipv4Addr)],
    port: u16,
    client: impl FnOnce() -> T,
) -> T {
    match servers.split_first() {
        None => client(),
        Some(((server, ip), others)) => with_tcp_echo(server, *ip, port, || {
            with_tcp_echo_servers(others, port, client)
        }),
    }
}

/// Runs `client` while `server` listens on `server_ip:port` (TCP) and echoes what the first
/// connection accepted within a few seconds sends, until it half-closes; returns what
/// `client` returned.
pub fn with_tcp_echo<T>(
    server: &Netns,
    server_ip: Ipv4Addr,
    port: u16,
    client: impl FnOnce() -> T,
) -> T {
    let (bound_tx, bound_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            server
                .run_in(|| {
                    let listener = TcpListener::bind(SocketAddrV4::new(server_ip, port))
                        .expect("bind TCP echo");
                    bound_tx.send(()).expect("main thread waits");
                    if let Some(mut stream) = accept_within(&listener, WAIT) {
                        stream.set_read_timeout(Some(WAIT)).expect("timeout");
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(len @ 1..) = stream.read(&mut buf) {
                            if stream.write_all(&buf[..len]).is_err() {
                                break;
                            }
                        }
                    }
                })
                .expect("enter server namespace");
        });
        bound_rx.recv_timeout(WAIT).expect("TCP echo server bound");
        client()
    })
}

/// The first connection `listener` accepts within `wait`, if any.
fn accept_within(listener: &TcpListener, wait: Duration) -> Option<TcpStream> {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                return Some(stream);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return None,
        }
    }
    None
}

/// Sends `frame` from `ifname` in `from` as fast as one thread can for `duration`; returns how
/// many were sent.
pub fn flood(from: &Netns, ifname: &str, frame: &[u8], duration: Duration) -> u64 {
    from.run_in(|| {
        let socket = RawSocket::open(from, ifname).expect("raw socket");
        let deadline = std::time::Instant::now() + duration;
        let mut sent = 0u64;
        while std::time::Instant::now() < deadline {
            for _ in 0..256 {
                if socket.send(frame).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    })
    .expect("enter namespace")
}

/// Packets received so far on `ifname` in `ns` (`/sys/class/net/IF/statistics/rx_packets`).
pub fn rx_packets(ns: &Netns, ifname: &str) -> u64 {
    let path = format!("/sys/class/net/{ifname}/statistics/rx_packets");
    let output = ns.exec(&["cat", &path]).expect("read rx_packets");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a number")
}
