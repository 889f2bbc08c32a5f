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
    pub const SOURCES: &str = "SOURCES";
    pub const PAIR_MACS: &str = "PAIR_MACS";
    pub const IDENTITIES: &str = "IDENTITIES";
    pub const POLICY: &str = "POLICY";
    pub const CONNTRACK: &str = "CONNTRACK";
    pub const RULE_HITS: &str = "RULE_HITS";
    pub const XSKS: &str = "XSKS";
    pub const LEASES: &str = "LEASES";
    pub const NEXT_HOPS: &str = "NEXT_HOPS";
    pub const DEVICES: &str = "DEVICES";
    pub const SERVICES: &str = "SERVICES";
    pub const MAGLEV_SMALL: &str = "MAGLEV_SMALL";
    pub const MAGLEV_LARGE: &str = "MAGLEV_LARGE";
    pub const MAGLEV_MEMBERS: &str = "MAGLEV_MEMBERS";
    pub const NAT_FLOWS: &str = "NAT_FLOWS";
    pub const NAT_REPLIES: &str = "NAT_REPLIES";
    pub const AFFINITY: &str = "AFFINITY";
}

/// Capacity of the endpoint table: pods' interfaces and gateways, cluster-wide, all planes.
pub const MAX_ENDPOINTS: u32 = 65_536;
/// Capacity of the local port table: pod interfaces on one node.
pub const MAX_POD_PORTS: u32 = 4_096;
/// Capacity of the network (plane) table.
pub const MAX_NETWORKS: u32 = 1_024;
/// Capacity of the VTEP table: nodes in the cluster.
pub const MAX_VTEPS: u32 = 16_384;
/// Capacity of the anti-spoofing table: owned prefixes of local pod interfaces.
pub const MAX_SOURCES: u32 = 16_384;
/// Capacity of the identity table: prefixes named by security groups, per plane.
pub const MAX_IDENTITIES: u32 = 131_072;
/// Capacity of the compiled policy: (policy, identity, direction, protocol, port prefix) entries.
pub const MAX_POLICY_ENTRIES: u32 = 524_288;
/// Rules with hit counters (cluster-wide, all groups).
pub const MAX_RULES: u32 = 65_536;
/// Default capacity of the conntrack table; the agent sizes it from the state.
pub const DEFAULT_CONNTRACK_ENTRIES: u32 = 262_144;
/// AF_XDP socket slots one interface may use in `XSKS`: one per receive queue, queues
/// `0..XSK_QUEUES_PER_INTERFACE`. An interface's slots start at its `xsk_base`.
pub const XSK_QUEUES_PER_INTERFACE: u32 = 16;
/// Interfaces (pod veths on fast-path planes, and the underlay) with AF_XDP sockets.
pub const MAX_XSK_INTERFACES: u32 = 1_024;
/// Bytes of frame an AF_XDP chunk of the forwarder holds: its 4,096 bytes less the kernel's
/// 256 bytes of XDP headroom. The programs hand the forwarder only frames that fit, VXLAN
/// included (a pod's frame grows by `VXLAN_ENCAP_LEN` on its way out); larger ones (planes
/// with jumbo MTUs) they carry themselves, with the same semantics.
pub const XSK_FRAME_ROOM: u32 = 4096 - 256;
/// How long a forwarder worker's lease on its queue lasts (`LEASES`, CLOCK_MONOTONIC
/// nanoseconds): a live worker renews it every round and at least every millisecond while
/// idle; the programs hand a queue's frames to the forwarder only while its lease runs. A
/// worker that dies (`kill -9`) or stalls stops renewing, and within this time the programs
/// carry its queue again, without waiting for the kernel to close its sockets. Several
/// scheduler ticks long: a worker sharing its CPU with other busy threads waits that long for
/// its turn now and then, and must keep its queue (with 3 ms it lost a quarter of its frames
/// to XDP on one shared CPU here).
pub const FORWARDER_LEASE_NS: u64 = 20_000_000;
/// `BPF_F_MMAPABLE`: the workers renew their leases by writing the map's memory, no syscall.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Capacity of the `XSKS` map (an XSKMAP): socket slots of every fast-path interface.
pub const MAX_XSK_SLOTS: u32 = MAX_XSK_INTERFACES * XSK_QUEUES_PER_INTERFACE;

/// Idle timeouts of conntrack entries, in seconds, by protocol and state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtTimeouts {
    pub tcp_syn: u32,
    pub tcp_established: u32,
    pub tcp_closing: u32,
    pub udp: u32,
    pub icmp: u32,
    pub other: u32,
}
const _: () = assert!(core::mem::size_of::<CtTimeouts>() == 24);

impl CtTimeouts {
    /// The idle timeout, in seconds, of an entry of `protocol` in `state`.
    #[inline(always)]
    pub fn for_entry(&self, protocol: u8, state: u8) -> u32 {
        use crate::wire::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
        match (protocol, state) {
            (IPPROTO_TCP, ct_state::TCP_SYN_SENT) => self.tcp_syn,
            (IPPROTO_TCP, ct_state::TCP_CLOSING) => self.tcp_closing,
            (IPPROTO_TCP, _) => self.tcp_established,
            (IPPROTO_UDP, _) => self.udp,
            (IPPROTO_ICMP, _) => self.icmp,
            _ => self.other,
        }
    }

    /// Whether an entry of `protocol` last seen at `entry.last_seen_ns` has expired at `now_ns`
    /// (both CLOCK_MONOTONIC): idle for its timeout or longer, as Linux counts.
    #[inline(always)]
    pub fn is_expired(&self, protocol: u8, entry: &CtEntry, now_ns: u64) -> bool {
        now_ns.saturating_sub(entry.last_seen_ns)
            >= self.for_entry(protocol, entry.state) as u64 * 1_000_000_000
    }
}

impl Default for CtTimeouts {
    /// The defaults of docs/security-groups.md.
    fn default() -> Self {
        CtTimeouts {
            tcp_syn: 60,
            tcp_established: 86_400,
            tcp_closing: 10,
            udp: 60,
            icmp: 30,
            other: 60,
        }
    }
}

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
    /// Bumped by the agent whenever rules or group memberships change; conntrack entries of an
    /// older generation are checked again against the current rules.
    pub policy_generation: u32,
    pub ct_timeouts: CtTimeouts,
    /// [`node_flags`].
    pub flags: u32,
    /// First `XSKS` slot of the underlay's AF_XDP sockets (slot + receive queue). VXLAN of a
    /// fast-path plane goes to the forwarder through it.
    pub underlay_xsk_base: u32,
}
const _: () = assert!(core::mem::size_of::<NodeConfig>() == 60);

/// Bits of `NodeConfig::flags`.
pub mod node_flags {
    /// The state has services on this node's planes: packets delivered to pods are looked up
    /// in `NAT_REPLIES` (a reply of a translated connection is translated back). Without it
    /// the programs make no service lookup at all.
    pub const SERVICES: u32 = 1;
}

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
    /// The compiled policy of the interface's security groups; [`NO_POLICY`]: not filtered.
    pub policy: u32,
    /// [`port_flags`].
    pub flags: u32,
    /// With [`port_flags::FAST_PATH`]: the first `XSKS` slot of this interface's AF_XDP
    /// sockets (slot + receive queue).
    pub xsk_base: u32,
}
const _: () = assert!(core::mem::size_of::<PodPort>() == 32);

/// `PodPort::policy` of an interface that is not filtered.
pub const NO_POLICY: u32 = 0;

/// Bits of `PodPort::flags`.
pub mod port_flags {
    /// Anti-spoofing is on (`port_security: true`).
    pub const PORT_SECURITY: u32 = 1;
    /// The interface's plane is a fast-path plane: its frames go to the AF_XDP forwarder
    /// while a socket is bound for the receive queue, and stay in XDP otherwise.
    pub const FAST_PATH: u32 = 2;
}

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
    /// A service's virtual IP: answered (ARP) by this node with the router MAC; a packet to
    /// it is translated to one of the service's backends (`SERVICES`).
    pub const SERVICE: u32 = 4;
}

/// Bits of `Endpoint::flags`.
pub mod endpoint_flags {
    /// A local endpoint whose pod end of the veth runs NAPI (GRO on, set by the agent: see
    /// `control/src/pod_side.rs`), so an XDP redirect into its host veth is delivered; without
    /// it, `from_underlay` hands the endpoint's VXLAN to `from_underlay_tc`, whose
    /// `bpf_redirect_peer` needs nothing of the pod. With it, TCP is delivered by XDP redirect
    /// on every plane (the pod's GRO merges the segments) and the rest of a `datapath: tc`
    /// plane still by tc (cheaper per packet into the pod's stack):
    /// `docs/decisions/pod-hook.md`, "Receive side".
    pub const POD_NAPI: u8 = 1;
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
    /// [`endpoint_flags`].
    pub flags: u8,
    pub _pad: u8,
    /// For a local endpoint, the compiled policy of its interface ([`NO_POLICY`]: not filtered).
    pub policy: u32,
}
const _: () = assert!(core::mem::size_of::<Endpoint>() == 24);

/// Value of `NETWORKS`, keyed by VNI (`u32`): a plane this node carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// Largest IPv4 packet on the plane.
    pub mtu: u32,
    /// [`network_flags`].
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<Network>() == 8);

/// Bits of `Network::flags`.
pub mod network_flags {
    /// A fast-path plane (`fast_path: true`): its VXLAN goes to the AF_XDP forwarder while a
    /// socket is bound for the underlay's receive queue, and stays in XDP otherwise.
    pub const FAST_PATH: u32 = 1;
    /// A plane with `datapath: tc`: its pods' veths run `from_pod_tc`, and `from_underlay`
    /// (XDP) hands its VXLAN other than TCP to `from_underlay_tc` on the underlay
    /// ([`super::endpoint_flags::POD_NAPI`]).
    pub const TC: u32 = 2;
}

/// Value of `VTEPS`, keyed by a node's underlay address (`[u8; 4]`): a node VXLAN is
/// accepted from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vtep {
    /// Non-zero for a known node (the key's presence is what matters; the value leaves room).
    pub known: u32,
}
const _: () = assert!(core::mem::size_of::<Vtep>() == 4);

/// Value of `NEXT_HOPS`, keyed by a remote node's underlay address (`[u8; 4]`): the underlay
/// next hop towards that VTEP as the agent resolved it from the kernel's route and neighbour
/// tables (the same resolution the AF_XDP forwarder uses), so `from_pod` needs no
/// `bpf_fib_lookup` per packet. A VTEP without an entry (its neighbour not resolved yet) falls
/// back to `bpf_fib_lookup`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHopEntry {
    /// The interface the encapsulated frame leaves through.
    pub ifindex: u32,
    /// Outer source MAC: that interface's.
    pub src_mac: [u8; 6],
    /// Outer destination MAC: the neighbour's (the VTEP itself, or the route's gateway).
    pub dst_mac: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<NextHopEntry>() == 16);

/// Capacity of `DEVICES` (the XDP programs' redirect targets: the underlay and local pods'
/// host-side veths).
pub const MAX_DEVICES: u32 = MAX_POD_PORTS + 1;

/// Data of an LPM key scoped to an interface (`SOURCES`: ifindex) or a plane (`IDENTITIES`:
/// VNI): the scope is matched whole (prefix length 32 + the address prefix).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopedIp {
    pub scope: u32,
    pub ip: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<ScopedIp>() == 8);

/// Key of `PAIR_MACS`: a MAC an interface may send from besides its own (an allowed address
/// pair's), for frames that are neither IPv4 nor ARP.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopedMac {
    pub scope: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<ScopedMac>() == 12);

/// Value of `SOURCES`: the MAC a pod must send from when using an address of the prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceMac {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<SourceMac>() == 8);

/// The identity of addresses no security group names (LPM miss in `IDENTITIES`).
pub const IDENTITY_WORLD: u32 = 0;
/// Identity slot of rules whose remote side is anywhere.
pub const IDENTITY_ANY: u32 = u32::MAX;
/// Protocol slot of rules for every protocol.
pub const PROTOCOL_ANY: u8 = 255;

/// Directions of `PolicyRuleKey::direction`.
pub mod direction {
    pub const INGRESS: u8 = 1;
    pub const EGRESS: u8 = 2;
}

/// Data of a `POLICY` LPM key: everything but the port is matched whole (prefix length
/// 80 + the port prefix); the port is big-endian so a port range is a few prefixes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRuleKey {
    pub policy: u32,
    pub identity: u32,
    pub direction: u8,
    pub protocol: u8,
    pub port: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<PolicyRuleKey>() == 12);
/// Bits of a `PolicyRuleKey` before the port.
pub const POLICY_KEY_FIXED_BITS: u32 = 80;

/// No rule (conntrack entries of connections where a side is not filtered).
pub const NO_RULE: u32 = u32::MAX;

/// Key of `CONNTRACK`: one connection, both directions. `(ip_lo, port_lo) <= (ip_hi,
/// port_hi)`; for ICMP echo both ports are the identifier, for other ICMP and protocols
/// without ports both are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    pub vni: u32,
    pub ip_lo: [u8; 4],
    pub ip_hi: [u8; 4],
    pub port_lo: u16,
    pub port_hi: u16,
    pub protocol: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<CtKey>() == 20);

/// Conntrack states (`CtEntry::state`).
pub mod ct_state {
    /// UDP, ICMP, other: no reply yet.
    pub const NEW: u8 = 0;
    pub const TCP_SYN_SENT: u8 = 1;
    /// TCP, or a reply seen (UDP, other).
    pub const ESTABLISHED: u8 = 2;
    pub const TCP_CLOSING: u8 = 3;
}

/// Which side of a `CtKey` initiated the connection (`CtEntry::origin`).
pub mod ct_origin {
    pub const LO: u8 = 0;
    pub const HI: u8 = 1;
}

/// Value of `CONNTRACK`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the last packet.
    pub last_seen_ns: u64,
    pub generation: u32,
    /// The rules that allowed the connection ([`NO_RULE`] where a side is not filtered).
    pub egress_rule: u32,
    pub ingress_rule: u32,
    pub state: u8,
    pub origin: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<CtEntry>() == 24);

/// Capacity of `SERVICES`: (plane, virtual IP, protocol, port) entries, cluster-wide.
pub const MAX_SERVICE_PORTS: u32 = 65_536;
/// Slots of a small Maglev table (`MAGLEV_SMALL`): a prime, at least 100 per backend for
/// services of up to 10 backends (the Maglev paper's bound for shares within about 1%).
pub const MAGLEV_SMALL_SLOTS: usize = 1_021;
/// Slots of a large Maglev table (`MAGLEV_LARGE`): a prime, at least 100 per backend up to 163
/// backends; services with more get fewer slots each (their shares less even).
pub const MAGLEV_LARGE_SLOTS: usize = 16_381;
/// Backends of the largest service a small table serves.
pub const MAGLEV_SMALL_MAX_BACKENDS: usize = 10;
/// Capacity of `MAGLEV_SMALL` (tables are shared by services with the same backends).
pub const MAX_MAGLEV_SMALL: u32 = 65_536;
/// Capacity of `MAGLEV_LARGE`.
pub const MAX_MAGLEV_LARGE: u32 = 4_096;
/// Capacity of `MAGLEV_MEMBERS`: the backends of the tables of services with client-IP
/// affinity.
pub const MAX_MAGLEV_MEMBERS: u32 = 262_144;
/// Capacity of `NAT_FLOWS` and `NAT_REPLIES` (LRU: the least recently used translated
/// connection is forgotten when full).
pub const NAT_ENTRIES: u32 = 262_144;
/// Capacity of `AFFINITY` (LRU).
pub const AFFINITY_ENTRIES: u32 = 65_536;
/// `BPF_F_NO_PREALLOC`: the Maglev tables' memory is taken as tables are written.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// Key of `SERVICES`: a service port on a plane. An IP-level service (`all_ports`) has one
/// entry per protocol with port 0; the programs try the exact port, then port 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub vni: u32,
    pub vip: [u8; 4],
    /// The service port (host order); 0 for an IP-level service.
    pub port: u16,
    pub protocol: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 12);

/// Bits of `ServiceEntry::flags`.
pub mod service_flags {
    /// The service's table is in `MAGLEV_LARGE` (else `MAGLEV_SMALL`).
    pub const LARGE_TABLE: u8 = 1;
    /// `session_affinity: client_ip`: a client's new connections go to the backend it used
    /// last, within `affinity_timeout_s`.
    pub const CLIENT_IP_AFFINITY: u8 = 2;
}

/// Value of `SERVICES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The key of the service's Maglev table (a hash of its backends and size, so services
    /// with the same backends share one); [`NO_TABLE`]: the service has no backends.
    pub table: u64,
    /// The backends' port; 0: the client's destination port (an IP-level service).
    pub target_port: u16,
    /// [`service_flags`].
    pub flags: u8,
    pub _pad: u8,
    /// With [`service_flags::CLIENT_IP_AFFINITY`]: how long a client keeps its backend after
    /// its last new connection, in seconds.
    pub affinity_timeout_s: u32,
}
const _: () = assert!(core::mem::size_of::<ServiceEntry>() == 16);

/// `ServiceEntry::table` of a service without backends.
pub const NO_TABLE: u64 = 0;

/// A small Maglev table: the backend address of each slot.
pub type MaglevSmall = [[u8; 4]; MAGLEV_SMALL_SLOTS];
/// A large Maglev table.
pub type MaglevLarge = [[u8; 4]; MAGLEV_LARGE_SLOTS];

/// Key of `NAT_FLOWS` and `NAT_REPLIES`: one direction of a connection, as its packets carry
/// it (ports as conntrack keys them: the echo identifier twice for ICMP echo).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub vni: u32,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 20);

/// The addresses and ports a translated packet leaves with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rewrite {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
}
const _: () = assert!(core::mem::size_of::<Rewrite>() == 12);

/// Value of `NAT_FLOWS` (a client's packets to a service: to its backend) and `NAT_REPLIES`
/// (the backend's packets back: from the service).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEntry {
    /// CLOCK_MONOTONIC of the last packet translated by the entry.
    pub last_seen_ns: u64,
    pub rewrite: Rewrite,
    pub _pad: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<NatEntry>() == 24);

/// Key of `AFFINITY`: a client of a service port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AffinityKey {
    pub service: ServiceKey,
    pub client: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<AffinityKey>() == 16);

/// Value of `AFFINITY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityEntry {
    /// CLOCK_MONOTONIC of the client's last new connection to the service.
    pub last_seen_ns: u64,
    /// The table the backend was chosen from or last confirmed in: under another table (the
    /// service's backends changed) the client keeps its backend only if the backend is still
    /// one of the service's (`MAGLEV_MEMBERS`).
    pub table: u64,
    pub backend: [u8; 4],
    pub _pad: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<AffinityEntry>() == 24);

/// Key of `MAGLEV_MEMBERS`: a backend of a Maglev table (of a service with client-IP
/// affinity). The value is 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberKey {
    pub table: u64,
    pub backend: [u8; 4],
    pub _pad: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<MemberKey>() == 16);

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
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for NextHopEntry {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for ScopedIp {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for SourceMac {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for ScopedMac {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for PolicyRuleKey {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for CtKey {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for CtEntry {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for CtTimeouts {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for ServiceKey {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for ServiceEntry {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for FlowKey {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for NatEntry {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for AffinityKey {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for AffinityEntry {}
    // SAFETY: see the module comment.
    unsafe impl aya::Pod for MemberKey {}
}
