//! One AF_XDP socket of the forwarder: bound to one (interface, receive queue), on its worker's
//! UMEM, with its own fill and completion rings (the kernel wants a pair per (device, queue)
//! of a shared UMEM), registered in the `XSKS` map slot the XDP program on that interface
//! redirects to.
//!
//! Owns: binding (retried while the kernel still tears down an earlier socket on the same
//! queue, `EBUSY`), the socket's rings, its kernel statistics (`XDP_STATISTICS`), and its slot:
//! the worker registers the socket only once it is bound and its fill ring is stocked, so the
//! XDP program never hands a frame to a socket that cannot take it. The kernel removes a socket
//! from every XSKMAP as it closes it — on a clean stop, a crash or `kill -9` alike — so the XDP
//! program takes the plane back the moment the socket goes.
//!
//! Sockets are bound with `XDP_USE_NEED_WAKEUP` and without a mode flag: the kernel uses
//! zero-copy where the driver has it and copy mode elsewhere (veth). libxdp never loads its
//! own program (`XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD`): ctpath owns the XDP programs.
//!
//! Panic contract: nothing here panics.
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    thread,
    time::{Duration, Instant},
};

use aya::maps::{MapData, XskMap};
use thiserror::Error;
use xsk_rs::{
    config::{BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig},
    socket::Socket,
    umem::Umem,
    CompQueue, FillQueue, RxQueue, TxQueue,
};

/// Ring sizes of every socket (RX, TX) and of its fill and completion rings.
pub const RING_SIZE: u32 = 2048;
/// How long binding is retried while the queue is still busy.
const BIND_RETRY_FOR: Duration = Duration::from_secs(3);

/// What a socket carries.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The host-side veth of a pod interface on a fast-path plane.
    Pod,
    /// The node's underlay interface (VXLAN of the fast-path planes).
    Underlay,
}

/// An interface the forwarder serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    pub name: String,
    pub ifindex: u32,
    pub role: Role,
    /// First `XSKS` slot of the interface; queue `q` uses `xsk_base + q`.
    pub xsk_base: u32,
}

#[derive(Debug, Error)]
pub enum PortError {
    #[error("interface name {0:?} is not valid for AF_XDP")]
    Name(String),
    #[error("binding an AF_XDP socket to {interface} queue {queue}: {message}")]
    Bind {
        interface: String,
        queue: u32,
        message: String,
        errno: Option<i32>,
    },
    #[error("{interface} queue {queue}: the socket came without fill and completion rings")]
    NoRings { interface: String, queue: u32 },
    #[error("registering the socket of {interface} queue {queue} in XSKS slot {slot}: {source}")]
    Register {
        interface: String,
        queue: u32,
        slot: u32,
        #[source]
        source: aya::maps::MapError,
    },
}

impl PortError {
    /// Whether the queue does not exist on the interface (a veth has one real queue, however
    /// many it lists): not an error for a worker whose queue number is higher.
    pub fn is_no_such_queue(&self) -> bool {
        matches!(
            self,
            PortError::Bind {
                errno: Some(libc::EINVAL),
                ..
            }
        )
    }
}

/// A bound socket with its rings. Dropping it closes the socket, which takes it out of
/// `XSKS`.
pub struct Port {
    pub spec: PortSpec,
    pub queue: u32,
    pub rx: RxQueue,
    pub tx: TxQueue,
    pub fill: FillQueue,
    pub comp: CompQueue,
}

/// Kernel statistics of one socket (`struct xdp_statistics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SocketStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

impl Port {
    /// Binds a socket to `spec`'s interface, queue `queue`, on `umem`. The socket is not
    /// registered yet: see [`Port::register`].
    pub fn bind(spec: &PortSpec, queue: u32, umem: &Umem) -> Result<Port, PortError> {
        let interface: Interface = spec
            .name
            .parse()
            .map_err(|_| PortError::Name(spec.name.clone()))?;
        let ring = QueueSize::new(RING_SIZE).expect("RING_SIZE is a power of two");
        let config = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        let deadline = Instant::now() + BIND_RETRY_FOR;
        let (tx, rx, rings) = loop {
            // SAFETY: the UMEM is this worker's; every queue of the socket keeps it alive
            // (xsk-rs holds a reference), and frames of it are only ever handed to the rings of
            // this worker's sockets, one owner at a time (see `worker::Pool`).
            match unsafe { Socket::new(config, umem, &interface, queue) } {
                Ok(socket) => break socket,
                Err(error) => {
                    let errno = std::error::Error::source(&error)
                        .and_then(|source| source.downcast_ref::<io::Error>())
                        .and_then(io::Error::raw_os_error);
                    if errno == Some(libc::EBUSY) && Instant::now() < deadline {
                        // The previous socket on this queue is still being torn down.
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    let message = match std::error::Error::source(&error) {
                        Some(source) => format!("{error}: {source}"),
                        None => error.to_string(),
                    };
                    return Err(PortError::Bind {
                        interface: spec.name.clone(),
                        queue,
                        message,
                        errno,
                    });
                }
            }
        };
        let (fill, comp) = rings.ok_or_else(|| PortError::NoRings {
            interface: spec.name.clone(),
            queue,
        })?;
        Ok(Port {
            spec: spec.clone(),
            queue,
            rx,
            tx,
            fill,
            comp,
        })
    }

    /// Puts the socket in its `XSKS` slot: from now on the XDP program hands it this queue's
    /// frames of the fast-path plane.
    pub fn register(&self, xsks: &mut XskMap<MapData>) -> Result<(), PortError> {
        let slot = self.spec.xsk_base + self.queue;
        xsks.set(slot, self.rx.fd().as_raw_fd(), 0)
            .map_err(|source| PortError::Register {
                interface: self.spec.name.clone(),
                queue: self.queue,
                slot,
                source,
            })
    }

    /// The socket's file descriptor (for `poll`).
    pub fn fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }

    /// The kernel's statistics of the socket.
    pub fn stats(&self) -> io::Result<SocketStats> {
        let stats = self.rx.fd().xdp_statistics()?;
        Ok(SocketStats {
            rx_dropped: stats.rx_dropped(),
            rx_invalid_descs: stats.rx_invalid_descs(),
            tx_invalid_descs: stats.tx_invalid_descs(),
            rx_ring_full: stats.rx_ring_full(),
            rx_fill_ring_empty_descs: stats.rx_fill_ring_empty_descs(),
            tx_ring_empty_descs: stats.tx_ring_empty_descs(),
        })
    }
}
