//! The maps the agent fills and the programs read, with typed lookups.
//!
//! Lookups return copies: the values are small, and a copy cannot be torn by a concurrent
//! update from the agent (hash map values are updated in place otherwise).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap},
};
use ctpath_common::maps::{
    Endpoint, EndpointKey, Network, NodeConfig, PodPort, Vtep, MAX_ENDPOINTS, MAX_NETWORKS,
    MAX_POD_PORTS, MAX_VTEPS,
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

/// Copies the value behind a map pointer.
#[inline(always)]
fn read<T: Copy>(ptr: *const T) -> T {
    // SAFETY: `ptr` comes from a successful map lookup, so it points to a live, initialised
    // value of the map's value type for the duration of this program run.
    unsafe { *ptr }
}

/// This node's configuration, once the agent has written it.
#[inline(always)]
pub fn node() -> Option<NodeConfig> {
    let node = read(NODE.get_ptr(0)?);
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
