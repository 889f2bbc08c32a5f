//! Keys and values of the datapath's maps, written by the agent and read by the programs.
//!
//! Addresses are kept as network-order byte arrays (`[u8; 4]`, `[u8; 6]`): what the programs
//! compare against packet bytes, with no byte-order conversion on the hot path. Every type is
//! `#[repr(C)]`, `Copy`, and padded explicitly; a const assertion pins each size.

/// Map names, shared by the programs (their statics) and the agent.
pub mod names {
    pub const NODE: &str = "NODE";
    pub const POD_PORTS: &str = "POD_PORTS";
    pub const ENDPOINTS: &str = "ENDPOINTS";
    pub const NETWORKS: &str = "NETWORKS";
    pub const VTEPS: &str = "VTEPS";
}

/// Capacity of the endpoint table: pods' interfaces and gateways, cluster-wide, all planes.
pub const MAX_ENDPOINTS: u32 = 65_536;
/// Capacity of the local port table: pod interfaces on one node.
pub const MAX_POD_PORTS: u32 = 4_096;
/// Capacity of the network (plane) table.
pub const MAX_NETWORKS: u32 = 1_024;
/// Capacity of the VTEP table: nodes in the cluster.
pub const MAX_VTEPS: u32 = 16_384;

/// This node: single entry (index 0) of the `NODE` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// ifindex of the underlay interface (where VXLAN leaves and arrives).
    pub underlay_ifindex: u32,
    /// The node's VTEP address on the underlay.
    pub underlay_ip: [u8; 4],
    /// MAC of the underlay interface (outer source MAC).
    pub underlay_mac: [u8; 6],
    /// MAC the node answers for every plane's gateway address.
    pub router_mac: [u8; 6],
    /// Non-zero once the agent has written this entry; the programs pass everything before.
    pub configured: u32,
}
const _: () = assert!(core::mem::size_of::<NodeConfig>() == 24);

/// A pod interface on this node, keyed by the ifindex of its host-side veth (`POD_PORTS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodPort {
    /// VXLAN network identifier of the interface's plane.
    pub vni: u32,
    pub ip: [u8; 4],
    pub mac: [u8; 6],
    /// The plane's MTU: the largest IPv4 packet the pod may send.
    pub mtu: u16,
    /// The plane's gateway address (source of ICMP errors the node sends the pod).
    pub gateway: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<PodPort>() == 20);

/// Key of `ENDPOINTS`: an address on a plane. The same IP may exist on two planes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub vni: u32,
    pub ip: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<EndpointKey>() == 8);

/// Where an endpoint lives (`Endpoint::kind`).
pub mod endpoint_kind {
    /// A pod interface on this node: deliver through `ifindex`.
    pub const LOCAL: u32 = 1;
    /// A pod interface on another node: encapsulate to `vtep`.
    pub const REMOTE: u32 = 2;
    /// A plane's gateway address: answered (ARP) by this node, never forwarded to.
    pub const GATEWAY: u32 = 3;
}

/// Value of `ENDPOINTS`: everything needed to answer ARP for an address and forward to it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// One of [`endpoint_kind`].
    pub kind: u32,
    /// Host-side veth of a local endpoint; 0 otherwise.
    pub ifindex: u32,
    /// Underlay address of the node of a remote endpoint; zeros otherwise.
    pub vtep: [u8; 4],
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Endpoint>() == 20);

/// Value of `NETWORKS`, keyed by VNI (`u32`): a plane this node carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// Largest IPv4 packet on the plane.
    pub mtu: u32,
}
const _: () = assert!(core::mem::size_of::<Network>() == 4);

/// Value of `VTEPS`, keyed by a node's underlay address (`[u8; 4]`): a node VXLAN is
/// accepted from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vtep {
    /// Non-zero for a known node (the key's presence is what matters; the value leaves room).
    pub known: u32,
}
const _: () = assert!(core::mem::size_of::<Vtep>() == 4);

#[cfg(feature = "user")]
mod pod {
    // SAFETY (for each impl below): the type is `#[repr(C)]`, `Copy`, has no implicit padding
    // (const size assertions above) and every bit pattern is a valid value.
    #![allow(unsafe_code)]
    use super::*;
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for NodeConfig {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for PodPort {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for EndpointKey {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for Endpoint {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for Network {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for Vtep {}
}
