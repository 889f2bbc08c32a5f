//! Network-namespace testbed for ctpath's end-to-end tests and its bench harness.
//!
//! Builds real topologies out of Linux network namespaces and veth pairs: nodes, an underlay
//! between them, pods with one interface per network plane; runs commands, processes and Rust
//! closures inside them; injects and captures raw Ethernet frames. Everything a [`Testbed`] builds
//! is removed when it is dropped, even when the test panicked, and namespaces left behind by a
//! killed run are swept by the next one.
//!
//! Modules, one concern each:
//! - `topology`: [`Testbed`] (the RAII guard), nodes, underlay, pods and their specs.
//! - `netns`: [`Netns`], one named namespace: `exec`, `spawn`, `run_in`, ifindex/link/sysctl.
//! - `process`: [`ChildGuard`], spawned processes that are killed with their guard or testbed.
//! - `raw`: [`RawSocket`], `AF_PACKET` frames in and out of one interface.
//! - `stale`: namespace naming (`ct{pid}x{n}-{name}`) and the sweep of dead runs' namespaces.
//! - `error`: [`TestbedError`].
//! - [`traffic`]: ping, UDP and TCP echo exchanges between pods.
//! - [`etcd`]: a real etcd server per test, on loopback or in a namespace.
//! - [`cluster`]: a ctpath cluster built from a cluster state, with real agents per node.
//! - [`containerd`]: a containerd of the test's own in a node, a busybox image, `ctr run --cni`.
//! - [`fixture`]: table-driven XDP fixtures run through `BPF_PROG_TEST_RUN`, reused by the bench.
//! - [`model_of`]: a cluster state as the reference model's topology, and the frames it sends.
//!
//! This file owns the crate surface: re-exports, [`require_root`] and MAC text helpers.
//!
//! Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN + CAP_NET_RAW), `ip` (iproute2) and `ethtool`.
//!
//! ```no_run
//! use ctpath_testbed::{require_root, Addressing, PodInterfaceSpec, PodSpec, Testbed};
//!
//! require_root();
//! let tb = Testbed::new("example").unwrap();
//! let a = tb.add_node("node-a").unwrap();
//! let b = tb.add_node("node-b").unwrap();
//! tb.connect_underlay(&[&a, &b], "192.168.77.0/24".parse().unwrap()).unwrap();
//! let pod = tb
//!     .add_pod(
//!         &a,
//!         PodSpec {
//!             name: "pod-a".into(),
//!             interfaces: vec![PodInterfaceSpec {
//!                 addressing: Addressing::HostRoute { gateway: "169.254.1.1".parse().unwrap() },
//!                 ..PodInterfaceSpec::new("veth-pod-a", "10.244.1.2".parse().unwrap(), 16, [2, 0, 0, 0, 1, 2])
//!             }],
//!         },
//!     )
//!     .unwrap();
//! a.exec(&["ping", "-c1", "-W1", &b.underlay().unwrap().ip.to_string()]).unwrap();
//! # drop(pod);
//! ```
//!
//! Panic contract: the library panics only in [`require_root`] (on purpose), in
//! [`RawSocket::recv_timeout`] on a broken socket, and by re-raising a panic of a
//! [`Netns::run_in`] closure.

pub mod cluster;
pub mod containerd;
mod error;
pub mod etcd;
pub mod fixture;
pub mod model_of;
mod netns;
mod process;
mod raw;
pub mod services;
mod stale;
mod topology;
pub mod traffic;

pub use error::{Result, TestbedError};
pub use netns::{LinkInfo, Netns, NETNS_RUN_DIR};
pub use process::ChildGuard;
pub use raw::RawSocket;
pub use topology::{
    Addressing, NodeHandle, Offloads, PodHandle, PodInterface, PodInterfaceSpec, PodSpec, Testbed,
    Underlay, UnderlayPort, UnderlaySpec, DEFAULT_POD_MTU, DEFAULT_UNDERLAY_IFNAME,
    DEFAULT_UNDERLAY_MTU,
};

/// Panics with an explanation unless the process runs as root. Call it first in every test that
/// builds a testbed.
pub fn require_root() {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "ctpath end-to-end tests must run as root: network namespaces, veth pairs, raw sockets \
         and BPF programs need CAP_SYS_ADMIN and CAP_NET_ADMIN (euid is {euid}; try \
         `sudo -E cargo test`)"
    );
}

/// Formats a MAC as `02:00:00:00:00:01`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `02:00:00:00:00:01` (either case); `None` if it is not six `:`-separated hex bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Testbed>();
        send_sync::<NodeHandle>();
        send_sync::<PodHandle>();
        send_sync::<Netns>();
        send_sync::<RawSocket>();
        fn send<T: Send>() {}
        send::<ChildGuard>();
    }

    #[test]
    fn mac_text_round_trips() {
        let mac = [0x02, 0xab, 0, 0x10, 0xff, 1];
        assert_eq!(format_mac(mac), "02:ab:00:10:ff:01");
        assert_eq!(parse_mac("02:AB:00:10:ff:01"), Some(mac));
        assert_eq!(parse_mac("02:ab:00:10:ff"), None);
        assert_eq!(parse_mac("02:ab:00:10:ff:01:02"), None);
        assert_eq!(parse_mac("02:ab:00:10:ff:1"), None);
        assert_eq!(parse_mac("02:ab:00:10:ff:zz"), None);
    }
}
