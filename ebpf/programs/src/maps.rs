//! The maps the agent fills and the programs read, with typed lookups.
//!
//! Lookups return copies: the values are small, and a copy cannot be torn by a concurrent
//! update from the agent (hash map values are updated in place otherwise).

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_ns,
    macros::map,
    maps::{lpm_trie::Key, Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, XskMap},
};
use ctpath_common::{
    maps::{
        AffinityEntry, AffinityKey, CtEntry, CtKey, Endpoint, EndpointKey, FlowKey, MaglevLarge,
        MaglevSmall, MemberKey, NatEntry, Network, NextHopEntry, NodeConfig, PodPort,
        PolicyRuleKey, ScopedIp, ScopedMac, ServiceEntry, ServiceKey, SourceMac, Vtep,
        AFFINITY_ENTRIES, BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, DEFAULT_CONNTRACK_ENTRIES,
        IDENTITY_WORLD, MAX_DEVICES, MAX_ENDPOINTS, MAX_IDENTITIES, MAX_MAGLEV_LARGE,
        MAX_MAGLEV_MEMBERS, MAX_MAGLEV_SMALL, MAX_NETWORKS, MAX_POD_PORTS, MAX_POLICY_ENTRIES,
        MAX_RULES, MAX_SERVICE_PORTS, MAX_SOURCES, MAX_VTEPS, MAX_XSK_SLOTS, NAT_ENTRIES,
        POLICY_KEY_FIXED_BITS, XSK_QUEUES_PER_INTERFACE,
    },
    Tally,
};

#[map]
static NODE: Array<NodeConfig> = Array::with_max_entries(1, 0);

#[map]
static POD_PORTS: HashMap<u32, PodPort> = HashMap::with_max_entries(MAX_POD_PORTS, 0);

#[map]
static ENDPOINTS: HashMap<EndpointKey, Endpoint> = HashMap::with_max_entries(MAX_ENDPOINTS, 0);

#[map]
static NETWORKS: HashMap<u32, Network> = HashMap::with_max_entries(MAX_NETWORKS, 0);

#[map]
static VTEPS: HashMap<[u8; 4], Vtep> = HashMap::with_max_entries(MAX_VTEPS, 0);

/// The underlay next hop of each remote VTEP, from the agent (see `route`).
#[map]
static NEXT_HOPS: HashMap<[u8; 4], NextHopEntry> = HashMap::with_max_entries(MAX_VTEPS, 0);

/// The XDP programs' redirect targets by ifindex (the underlay, local pods' host-side veths),
/// from the agent: `bpf_redirect_map` finds the device in this map rather than in the
/// namespace's device table on every redirect.
#[map]
static DEVICES: DevMapHash = DevMapHash::with_max_entries(MAX_DEVICES, 0);

#[map]
static SOURCES: LpmTrie<ScopedIp, SourceMac> = LpmTrie::with_max_entries(MAX_SOURCES, 0);

#[map]
static PAIR_MACS: HashMap<ScopedMac, u32> = HashMap::with_max_entries(MAX_SOURCES, 0);

#[map]
static IDENTITIES: LpmTrie<ScopedIp, u32> = LpmTrie::with_max_entries(MAX_IDENTITIES, 0);

#[map]
static POLICY: LpmTrie<PolicyRuleKey, u32> = LpmTrie::with_max_entries(MAX_POLICY_ENTRIES, 0);

/// Sized by the agent from the state (`conntrack.max_entries`) before loading.
#[map]
pub static CONNTRACK: HashMap<CtKey, CtEntry> =
    HashMap::with_max_entries(DEFAULT_CONNTRACK_ENTRIES, 0);

/// The AF_XDP forwarder's sockets, by slot (an interface's `xsk_base` + receive queue).
#[map]
static XSKS: XskMap = XskMap::with_max_entries(MAX_XSK_SLOTS, 0);

/// Per receive queue, until when (CLOCK_MONOTONIC ns) the forwarder's worker of that queue
/// holds it: written by the workers through the map's memory.
#[map]
static LEASES: Array<u64> = Array::with_max_entries(XSK_QUEUES_PER_INTERFACE, BPF_F_MMAPABLE);

/// Service ports by (plane, virtual IP, protocol, port): their Maglev table and target port.
#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceEntry> =
    HashMap::with_max_entries(MAX_SERVICE_PORTS, 0);

/// Maglev tables of services of up to `MAGLEV_SMALL_MAX_BACKENDS` backends, by table key.
#[map]
pub static MAGLEV_SMALL: HashMap<u64, MaglevSmall> =
    HashMap::with_max_entries(MAX_MAGLEV_SMALL, BPF_F_NO_PREALLOC);

/// Maglev tables of larger services.
#[map]
pub static MAGLEV_LARGE: HashMap<u64, MaglevLarge> =
    HashMap::with_max_entries(MAX_MAGLEV_LARGE, BPF_F_NO_PREALLOC);

/// Translated connections, client to service: what their packets become.
#[map]
pub static NAT_FLOWS: LruHashMap<FlowKey, NatEntry> = LruHashMap::with_max_entries(NAT_ENTRIES, 0);

/// Translated connections, backend to client: what their replies become.
#[map]
pub static NAT_REPLIES: LruHashMap<FlowKey, NatEntry> =
    LruHashMap::with_max_entries(NAT_ENTRIES, 0);

/// The backends of the Maglev tables of services with client-IP affinity.
#[map]
pub static MAGLEV_MEMBERS: HashMap<MemberKey, u8> =
    HashMap::with_max_entries(MAX_MAGLEV_MEMBERS, BPF_F_NO_PREALLOC);

/// Client-IP affinity: a client's backend per service port.
#[map]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityEntry> =
    LruHashMap::with_max_entries(AFFINITY_ENTRIES, 0);

#[map]
pub static RULE_HITS: PerCpuArray<Tally> = PerCpuArray::with_max_entries(MAX_RULES, 0);

/// Copies the value behind a map pointer.
#[inline(always)]
fn read<T: Copy>(ptr: *const T) -> T {
    // SAFETY: `ptr` comes from a successful map lookup, so it points to a live, initialised
    // value of the map's value type for the duration of this program run.
    unsafe { *ptr }
}

/// This node's configuration, once the agent has written it.
#[inline(always)]
pub fn node() -> Option<&'static NodeConfig> {
    // SAFETY: the array's only element, from a successful lookup: it lives as long as the map,
    // and the agent rewrites it whole and seldom (a program reading it meanwhile may see a mix
    // of the old and the new value, as a copy would).
    let node = unsafe { &*NODE.get_ptr(0)? };
    (node.configured != 0).then_some(node)
}

/// The pod interface behind the host-side veth `ifindex`.
#[inline(always)]
pub fn pod_port(ifindex: u32) -> Option<PodPort> {
    POD_PORTS.get_ptr(ifindex).map(read)
}

/// The endpoint with address `ip` on plane `vni`.
#[inline(always)]
pub fn endpoint(vni: u32, ip: [u8; 4]) -> Option<Endpoint> {
    ENDPOINTS.get_ptr(EndpointKey { vni, ip }).map(read)
}

/// The plane with VXLAN network identifier `vni`.
#[inline(always)]
pub fn network(vni: u32) -> Option<Network> {
    NETWORKS.get_ptr(vni).map(read)
}

/// Whether `ip` is the underlay address of a node of the cluster.
#[inline(always)]
pub fn is_known_vtep(ip: [u8; 4]) -> bool {
    VTEPS.get_ptr(ip).is_some()
}

/// The cached underlay next hop towards `vtep`, if the agent has resolved it.
#[inline(always)]
pub fn next_hop(vtep: [u8; 4]) -> Option<NextHopEntry> {
    NEXT_HOPS.get_ptr(vtep).map(read)
}

/// XDP: redirects to `ifindex` through `DEVICES`; `None` when the agent has not put the device
/// there (the caller then redirects with `bpf_redirect`).
#[inline(always)]
pub fn redirect_to_device(ifindex: u32) -> Option<u32> {
    // Flags 0: a missing key makes the helper return XDP_ABORTED, which is `Err` here.
    DEVICES.redirect(ifindex, 0).ok()
}

/// The MAC the pod behind `ifindex` must send from when its source address is `ip`, if it owns
/// `ip`.
#[inline(always)]
pub fn source_mac(ifindex: u32, ip: [u8; 4]) -> Option<[u8; 6]> {
    SOURCES
        .get(Key::new(64, ScopedIp { scope: ifindex, ip }))
        .map(|owned| owned.mac)
}

/// Whether `mac` is the MAC of one of the allowed address pairs of the pod behind `ifindex`.
#[inline(always)]
pub fn is_pair_mac(ifindex: u32, mac: [u8; 6]) -> bool {
    PAIR_MACS
        .get_ptr(ScopedMac {
            scope: ifindex,
            mac,
            _pad: [0; 2],
        })
        .is_some()
}

/// The identity of address `ip` on plane `vni` (which security-group selectors it matches).
#[inline(always)]
pub fn identity(vni: u32, ip: [u8; 4]) -> u32 {
    IDENTITIES
        .get(Key::new(64, ScopedIp { scope: vni, ip }))
        .copied()
        .unwrap_or(IDENTITY_WORLD)
}

/// The rule of compiled policy `key.policy` that allows `key`, if any.
#[inline(always)]
pub fn policy_rule(key: PolicyRuleKey) -> Option<u32> {
    POLICY
        .get(Key::new(POLICY_KEY_FIXED_BITS + 16, key))
        .copied()
}

/// Hands the frame to the AF_XDP socket of receive queue `queue` of the interface whose slots
/// start at `base`: `Some(XDP_REDIRECT)`, or `None` when no socket is bound there or the
/// queue's worker holds no lease (the forwarder is not running, not on that queue, or stalled),
/// and the programs carry the frame themselves.
#[inline(always)]
pub fn to_forwarder(base: u32, queue: u32) -> Option<u32> {
    if queue >= XSK_QUEUES_PER_INTERFACE {
        return None;
    }
    // A worker that stopped renewing (dead, or stalled) has its queue taken back at once,
    // before the kernel gets round to closing its sockets.
    let lease = read(LEASES.get_ptr(queue)?);
    // SAFETY: `bpf_ktime_get_ns` takes no arguments and reads no memory.
    if unsafe { bpf_ktime_get_ns() } >= lease {
        return None;
    }
    // Flags 0: a slot without a socket makes the helper fail (XDP_ABORTED), never drop.
    XSKS.redirect(base + queue, 0).ok()
}
