//! The compiler from a cluster state to the contents of one node's datapath maps: which pod
//! interfaces are local (and behind which veth), where every other pod interface lives, which
//! planes and VTEPs the node accepts. Pure: interfaces are looked up through [`Links`], so the
//! whole translation is unit-tested without a kernel.
//!
//! Services are compiled by [`crate::services`], the same for every datapath.

use std::collections::{BTreeMap, BTreeSet};

use ctpath_common::{
    maps::{
        endpoint_flags, endpoint_kind, network_flags, node_flags, port_flags, Endpoint,
        EndpointKey, Network, NodeConfig, PodPort, MAX_XSK_INTERFACES, NO_POLICY,
        XSK_QUEUES_PER_INTERFACE,
    },
    wire::VXLAN_ENCAP_LEN,
};
use ipnet::Ipv4Net;
use thiserror::Error;

use crate::{
    links::{LinkError, Links},
    policy::{self, CompiledPolicy, PolicyError},
    services::{self, ServicePlan},
    state::{self, ClusterState, PodInterface},
};

/// The MAC every node answers for every plane's gateway address (locally administered). Pods
/// only ever see their own node's, so one value serves the whole cluster.
pub const ROUTER_MAC: [u8; 6] = [0x02, 0xc7, 0x00, 0x00, 0x00, 0x01];

/// Everything one node's datapath needs, ready to be written to its maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    pub node: NodeConfig,
    pub underlay_interface: String,
    /// Keyed by the host-side veth's ifindex.
    pub pod_ports: BTreeMap<u32, PodPort>,
    /// Host-side veth names, by ifindex: where `from_pod` is attached.
    pub pod_interfaces: BTreeMap<u32, String>,
    pub endpoints: BTreeMap<EndpointKey, Endpoint>,
    /// Keyed by VNI.
    pub networks: BTreeMap<u32, Network>,
    /// Underlay addresses of the other nodes.
    pub remote_vteps: BTreeSet<[u8; 4]>,
    /// Anti-spoofing: (ifindex, owned prefix) to the MAC it must be sent from.
    pub sources: BTreeMap<(u32, Ipv4Net), [u8; 6]>,
    /// Anti-spoofing: (ifindex, MAC of an allowed address pair).
    pub pair_macs: BTreeSet<(u32, [u8; 6])>,
    /// Security groups compiled for this node.
    pub policy: CompiledPolicy,
    /// Capacity of the conntrack table.
    pub conntrack_entries: u32,
    /// Service ports and their Maglev tables.
    pub services: ServicePlan,
}

#[derive(Debug, Error)]
pub enum CompileError {
    #[error("node {0:?} is not in the cluster state")]
    UnknownNode(String),
    #[error("interfaces missing on node {node}: {}", missing.join(", "))]
    MissingInterfaces { node: String, missing: Vec<String> },
    #[error(transparent)]
    Link(LinkError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("underlay interface {interface} has MTU {mtu}, too small to carry VXLAN (needs more than {VXLAN_ENCAP_LEN} bytes of overhead plus 576)")]
    UnderlayMtuTooSmall { interface: String, mtu: u32 },
    #[error("{wanted} pod interfaces on fast-path planes on this node; the forwarder has socket slots for {}", MAX_XSK_INTERFACES - 1)]
    XskSlotsExhausted { wanted: usize },
}

/// The underlay's `XSKS` slots come first; pod interfaces' follow, a block each.
pub const UNDERLAY_XSK_BASE: u32 = 0;

fn port_flags_of(interface: &PodInterface, network: &state::Network) -> u32 {
    let mut flags = 0;
    if interface.port_security {
        flags |= port_flags::PORT_SECURITY;
    }
    if network.fast_path {
        flags |= port_flags::FAST_PATH;
    }
    flags
}

/// Gives every local interface on a fast-path plane its block of `XSKS` slots (one per receive
/// queue): an interface of `previous` keeps its block (its sockets stay where they are), a new
/// one takes the lowest free block. Interfaces on other planes get none (`xsk_base` 0 and no
/// `FAST_PATH` flag, which the programs check first).
pub fn assign_xsk_slots(
    plan: &mut NodePlan,
    previous: Option<&NodePlan>,
) -> Result<(), CompileError> {
    let fast = |port: &PodPort| port.flags & port_flags::FAST_PATH != 0;
    let kept: BTreeMap<u32, u32> = previous
        .map(|previous| {
            previous
                .pod_ports
                .iter()
                .filter(|(ifindex, port)| {
                    fast(port) && plan.pod_ports.get(ifindex).is_some_and(&fast)
                })
                .map(|(ifindex, port)| (*ifindex, port.xsk_base))
                .collect()
        })
        .unwrap_or_default();
    let wanted = plan.pod_ports.values().filter(|port| fast(port)).count();
    let used: BTreeSet<u32> = kept.values().copied().collect();
    let mut free = (1..MAX_XSK_INTERFACES)
        .map(|block| UNDERLAY_XSK_BASE + block * XSK_QUEUES_PER_INTERFACE)
        .filter(|base| !used.contains(base));
    for (ifindex, port) in plan.pod_ports.iter_mut() {
        port.xsk_base = if !fast(port) {
            0
        } else if let Some(base) = kept.get(ifindex) {
            *base
        } else {
            free.next()
                .ok_or(CompileError::XskSlotsExhausted { wanted })?
        };
    }
    Ok(())
}

/// The plane MTU: as configured, or the underlay's less the VXLAN overhead.
pub fn plane_mtu(network: &state::Network, underlay_mtu: u32) -> u16 {
    network
        .mtu
        .unwrap_or_else(|| (underlay_mtu - VXLAN_ENCAP_LEN as u32).min(u16::MAX as u32) as u16)
}

/// The `NETWORKS` flags of `network`: `FAST_PATH`, and `TC` for `datapath: tc`.
fn network_flags_of(network: &state::Network) -> u32 {
    let mut flags = 0;
    if network.fast_path {
        flags |= network_flags::FAST_PATH;
    }
    if network.datapath() == state::Datapath::Tc {
        flags |= network_flags::TC;
    }
    flags
}

/// Whether the pod interface behind host-side veth `ifindex` is on a plane with `datapath:
/// tc` (the agent attaches `from_pod_tc` there, `from_pod` elsewhere).
pub fn is_tc_port(plan: &NodePlan, ifindex: u32) -> bool {
    plan.pod_ports
        .get(&ifindex)
        .and_then(|port| plan.networks.get(&port.vni))
        .is_some_and(|network| network.flags & network_flags::TC != 0)
}

/// Flags the local endpoints whose pod end runs NAPI (`endpoint_flags::POD_NAPI`: an XDP
/// redirect into their veth is delivered), as `runs_napi` says of each host-side ifindex. A
/// compiled plan has no endpoint flagged: whether a pod's end runs NAPI is found on the node
/// (the agent turns GRO on there, `pod_side`), not in the state.
pub fn mark_pod_napi(plan: &mut NodePlan, runs_napi: impl Fn(u32) -> bool) {
    for endpoint in plan.endpoints.values_mut() {
        if endpoint.kind == endpoint_kind::LOCAL && runs_napi(endpoint.ifindex) {
            endpoint.flags |= endpoint_flags::POD_NAPI;
        } else {
            endpoint.flags &= !endpoint_flags::POD_NAPI;
        }
    }
}

/// Compiles `state` for the node named `node_name`, whose interfaces `links` reports.
pub fn compile(
    state: &ClusterState,
    node_name: &str,
    links: &impl Links,
) -> Result<NodePlan, CompileError> {
    let node = state
        .node(node_name)
        .ok_or_else(|| CompileError::UnknownNode(node_name.to_owned()))?;

    // Every local interface is looked up before anything is built, so one error names all of
    // the missing ones.
    let mut missing = Vec::new();
    let mut lookup = |name: &str| match links.link(name) {
        Ok(link) => Ok(Some(link)),
        Err(LinkError::NotFound(name)) => {
            missing.push(name);
            Ok(None)
        }
        Err(error) => Err(CompileError::Link(error)),
    };
    let underlay = lookup(&node.underlay_interface)?;
    let local: Vec<_> = state
        .interfaces_on_node(node_name)
        .map(|(_, interface)| Ok((interface, lookup(&interface.host_interface)?)))
        .collect::<Result<_, CompileError>>()?;
    if !missing.is_empty() {
        return Err(CompileError::MissingInterfaces {
            node: node_name.to_owned(),
            missing,
        });
    }
    let underlay = underlay.expect("present: no interface is missing");
    if underlay.mtu < VXLAN_ENCAP_LEN as u32 + 576 {
        return Err(CompileError::UnderlayMtuTooSmall {
            interface: node.underlay_interface.clone(),
            mtu: underlay.mtu,
        });
    }

    let network_of = |name: &str| {
        state
            .network(name)
            .expect("validated: interfaces name known networks")
    };
    let networks = state
        .networks
        .iter()
        .map(|network| {
            (
                network.vni,
                Network {
                    mtu: plane_mtu(network, underlay.mtu) as u32,
                    flags: network_flags_of(network),
                },
            )
        })
        .collect();

    let compiled = policy::compile(state, node_name)?;
    let mut pod_ports = BTreeMap::new();
    let mut pod_interfaces = BTreeMap::new();
    let mut endpoints = BTreeMap::new();
    let mut sources = BTreeMap::new();
    let mut pair_macs = BTreeSet::new();
    for (interface, link) in local {
        let link = link.expect("present: no interface is missing");
        let network = network_of(&interface.network);
        let policy = policy_of(&compiled, interface);
        pod_ports.insert(
            link.ifindex,
            PodPort {
                vni: network.vni,
                ip: interface.ip.octets(),
                mac: interface.mac.0,
                mtu: plane_mtu(network, underlay.mtu),
                gateway: network.gateway.octets(),
                policy,
                flags: port_flags_of(interface, network),
                // Assigned by `assign_xsk_slots`, which keeps a running interface's slots.
                xsk_base: 0,
            },
        );
        pod_interfaces.insert(link.ifindex, interface.host_interface.clone());
        let key = EndpointKey {
            vni: network.vni,
            ip: interface.ip.octets(),
        };
        endpoints.insert(
            key,
            endpoint(
                endpoint_kind::LOCAL,
                link.ifindex,
                [0; 4],
                interface.mac.0,
                policy,
            ),
        );
        if interface.port_security {
            sources.insert(
                (link.ifindex, Ipv4Net::new(interface.ip, 32).expect("/32")),
                interface.mac.0,
            );
            for pair in &interface.allowed_address_pairs {
                let mac = pair.mac.unwrap_or(interface.mac).0;
                // The interface's own address keeps its own MAC even inside a pair's prefix.
                sources
                    .entry((link.ifindex, pair.ip.trunc()))
                    .or_insert(mac);
                if let Some(pair_mac) = pair.mac {
                    pair_macs.insert((link.ifindex, pair_mac.0));
                }
            }
        }
    }
    for pod in state.pods.iter().filter(|pod| pod.node != node_name) {
        let vtep = state
            .node(&pod.node)
            .expect("validated: pods name known nodes")
            .underlay_ip
            .octets();
        for interface in &pod.interfaces {
            let key = EndpointKey {
                vni: network_of(&interface.network).vni,
                ip: interface.ip.octets(),
            };
            endpoints.insert(
                key,
                endpoint(endpoint_kind::REMOTE, 0, vtep, interface.mac.0, NO_POLICY),
            );
        }
    }
    for network in &state.networks {
        let key = EndpointKey {
            vni: network.vni,
            ip: network.gateway.octets(),
        };
        endpoints.insert(
            key,
            endpoint(endpoint_kind::GATEWAY, 0, [0; 4], ROUTER_MAC, NO_POLICY),
        );
    }
    for service in &state.services {
        let key = EndpointKey {
            vni: network_of(&service.network).vni,
            ip: service.vip.octets(),
        };
        endpoints.insert(
            key,
            endpoint(endpoint_kind::SERVICE, 0, [0; 4], ROUTER_MAC, NO_POLICY),
        );
    }
    let services = services::compile(state);

    Ok(NodePlan {
        node: NodeConfig {
            underlay_ifindex: underlay.ifindex,
            underlay_ip: node.underlay_ip.octets(),
            underlay_mac: underlay.mac,
            router_mac: ROUTER_MAC,
            configured: 1,
            // The agent sets the generation when it writes the plan.
            policy_generation: 0,
            ct_timeouts: state.conntrack.timeouts(),
            flags: if services.is_empty() {
                0
            } else {
                node_flags::SERVICES
            },
            underlay_xsk_base: UNDERLAY_XSK_BASE,
        },
        underlay_interface: node.underlay_interface.clone(),
        pod_ports,
        pod_interfaces,
        endpoints,
        networks,
        remote_vteps: state
            .nodes
            .iter()
            .filter(|other| other.name != node_name)
            .map(|other| other.underlay_ip.octets())
            .collect(),
        sources,
        pair_macs,
        policy: compiled,
        conntrack_entries: state.conntrack.max_entries,
        services,
    })
}

fn endpoint(kind: u32, ifindex: u32, vtep: [u8; 4], mac: [u8; 6], policy: u32) -> Endpoint {
    Endpoint {
        kind,
        ifindex,
        vtep,
        mac,
        flags: 0,
        _pad: 0,
        policy,
    }
}

/// The compiled policy of a local interface: none without port security or groups.
fn policy_of(compiled: &CompiledPolicy, interface: &PodInterface) -> u32 {
    if !interface.port_security || interface.security_groups.is_empty() {
        return NO_POLICY;
    }
    let groups: BTreeSet<String> = interface.security_groups.iter().cloned().collect();
    compiled.policies[&groups]
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ctpath_common::maps::CtTimeouts;

    use super::*;
    use crate::links::Link;

    struct FakeLinks(HashMap<&'static str, Link>);

    impl Links for FakeLinks {
        fn link(&self, name: &str) -> Result<Link, LinkError> {
            self.0
                .get(name)
                .copied()
                .ok_or_else(|| LinkError::NotFound(name.to_owned()))
        }
    }

    fn contract() -> ClusterState {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/contract/cluster-state.example.yaml"
        );
        ClusterState::from_path(std::path::Path::new(path)).unwrap()
    }

    fn node_a_links() -> FakeLinks {
        FakeLinks(HashMap::from([
            (
                "eth0",
                Link {
                    ifindex: 2,
                    mac: [0x52, 0, 0, 0, 0, 1],
                    mtu: 1500,
                },
            ),
            (
                "vupf0s",
                Link {
                    ifindex: 10,
                    mac: [0x52, 0, 0, 0, 0, 10],
                    mtu: 1450,
                },
            ),
            (
                "vupf0m",
                Link {
                    ifindex: 11,
                    mac: [0x52, 0, 0, 0, 0, 11],
                    mtu: 1450,
                },
            ),
        ]))
    }

    #[test]
    fn fast_path_interfaces_get_socket_slots_that_stay_put() {
        let mut plan = compile(&contract(), "node-a", &node_a_links()).unwrap();
        assign_xsk_slots(&mut plan, None).unwrap();
        // vupf0m (ifindex 11) is on media, the fast-path plane; vupf0s (10) is not.
        assert_eq!(
            plan.pod_ports[&11].flags & port_flags::FAST_PATH,
            port_flags::FAST_PATH
        );
        assert_eq!(plan.pod_ports[&11].xsk_base, XSK_QUEUES_PER_INTERFACE);
        assert_eq!(plan.pod_ports[&10].flags & port_flags::FAST_PATH, 0);
        assert_eq!(plan.pod_ports[&10].xsk_base, 0);
        assert_eq!(plan.node.underlay_xsk_base, UNDERLAY_XSK_BASE);
        // A new fast-path interface takes a free block; the running one keeps its own.
        let mut next = plan.clone();
        let mut port = next.pod_ports[&11];
        port.xsk_base = 0;
        next.pod_ports.insert(11, port);
        next.pod_ports.insert(5, port);
        assign_xsk_slots(&mut next, Some(&plan)).unwrap();
        assert_eq!(next.pod_ports[&11].xsk_base, XSK_QUEUES_PER_INTERFACE);
        assert_eq!(next.pod_ports[&5].xsk_base, 2 * XSK_QUEUES_PER_INTERFACE);
    }

    #[test]
    fn only_local_endpoints_whose_pod_end_runs_napi_are_flagged() {
        let mut plan = compile(&contract(), "node-a", &node_a_links()).unwrap();
        assert!(
            plan.endpoints.values().all(|endpoint| endpoint.flags == 0),
            "a compiled plan flags no endpoint"
        );
        let local: Vec<u32> = plan
            .endpoints
            .values()
            .filter(|endpoint| endpoint.kind == endpoint_kind::LOCAL)
            .map(|endpoint| endpoint.ifindex)
            .collect();
        assert!(local.len() >= 2, "the contract has local endpoints");
        let ready = local[0];
        mark_pod_napi(&mut plan, |ifindex| ifindex == ready || ifindex == 0);
        for endpoint in plan.endpoints.values() {
            let flagged = endpoint.flags & endpoint_flags::POD_NAPI != 0;
            let expected = endpoint.kind == endpoint_kind::LOCAL && endpoint.ifindex == ready;
            assert_eq!(flagged, expected, "{endpoint:?}");
        }
        // Marking again with another answer clears what no longer holds.
        mark_pod_napi(&mut plan, |_| false);
        assert!(plan.endpoints.values().all(|endpoint| endpoint.flags == 0));
    }

    #[test]
    fn socket_slots_follow_the_fast_path_flag() {
        let mut plan = compile(&contract(), "node-a", &node_a_links()).unwrap();
        assign_xsk_slots(&mut plan, None).unwrap();
        let fast_port = plan.pod_ports[&11];
        let mut slow_port = fast_port;
        slow_port.flags &= !port_flags::FAST_PATH;
        // 11 leaves the fast path and 10 joins it: 11's block is free again and goes to 10;
        // 11 keeps no slot.
        let mut next = plan.clone();
        next.pod_ports.insert(11, slow_port);
        next.pod_ports.insert(
            10,
            PodPort {
                xsk_base: 0,
                ..fast_port
            },
        );
        assign_xsk_slots(&mut next, Some(&plan)).unwrap();
        assert_eq!(next.pod_ports[&10].xsk_base, XSK_QUEUES_PER_INTERFACE);
        assert_eq!(next.pod_ports[&11].xsk_base, 0);
        // The other way round, from a plan where 10 was on a slow plane: 10 gets a block of
        // its own, not the 0 it had.
        let mut back = next.clone();
        back.pod_ports.insert(11, fast_port);
        assign_xsk_slots(&mut back, Some(&next)).unwrap();
        assert_eq!(back.pod_ports[&11].xsk_base, 2 * XSK_QUEUES_PER_INTERFACE);
        let mut joined = plan.clone();
        joined.pod_ports.insert(
            10,
            PodPort {
                xsk_base: 0,
                ..fast_port
            },
        );
        assign_xsk_slots(&mut joined, Some(&plan)).unwrap();
        assert_eq!(joined.pod_ports[&10].xsk_base, 2 * XSK_QUEUES_PER_INTERFACE);
        // Every block taken: the one more is refused.
        let mut full = plan.clone();
        for ifindex in 100..100 + MAX_XSK_INTERFACES {
            full.pod_ports.insert(
                ifindex,
                PodPort {
                    xsk_base: 0,
                    ..fast_port
                },
            );
        }
        assert!(matches!(
            assign_xsk_slots(&mut full, None),
            Err(CompileError::XskSlotsExhausted { wanted }) if wanted == MAX_XSK_INTERFACES as usize + 1
        ));
    }

    #[test]
    fn interfaces_without_port_security_are_not_filtered() {
        let mut state = contract();
        // vupf0m lists upf, the group vupf0s is filtered by, with port security off.
        let media = &mut state.pods[0].interfaces[1];
        assert_eq!(media.host_interface, "vupf0m");
        media.security_groups = vec!["upf".into()];
        media.port_security = false;
        let plan = compile(&state, "node-a", &node_a_links()).unwrap();
        assert_eq!(plan.pod_ports[&10].policy, 1);
        assert_eq!(plan.pod_ports[&11].policy, NO_POLICY);
        assert_eq!(plan.pod_ports[&11].flags, port_flags::FAST_PATH);
        let key = EndpointKey {
            vni: 300,
            ip: [10, 250, 1, 2],
        };
        assert_eq!(plan.endpoints[&key].policy, NO_POLICY);
        assert!(plan.sources.keys().all(|(ifindex, _)| *ifindex == 10));
    }

    #[test]
    fn the_smallest_underlay_mtu_carries_576_bytes() {
        let mut links = node_a_links();
        let smallest = VXLAN_ENCAP_LEN as u32 + 576;
        links.0.get_mut("eth0").unwrap().mtu = smallest;
        let plan = compile(&contract(), "node-a", &links).unwrap();
        // media has no MTU of its own: the underlay's less the encapsulation.
        assert_eq!(plan.networks[&300].mtu, 576);
        links.0.get_mut("eth0").unwrap().mtu = smallest - 1;
        assert!(matches!(
            compile(&contract(), "node-a", &links),
            Err(CompileError::UnderlayMtuTooSmall { mtu, .. }) if mtu == smallest - 1
        ));
    }

    #[test]
    fn contract_compiles_for_node_a() {
        let plan = compile(&contract(), "node-a", &node_a_links()).unwrap();
        assert_eq!(
            plan.node,
            NodeConfig {
                underlay_ifindex: 2,
                underlay_ip: [192, 168, 77, 1],
                underlay_mac: [0x52, 0, 0, 0, 0, 1],
                router_mac: ROUTER_MAC,
                configured: 1,
                policy_generation: 0,
                ct_timeouts: CtTimeouts::default(),
                flags: 0,
                underlay_xsk_base: UNDERLAY_XSK_BASE,
            }
        );
        // std has an explicit MTU of 1450; media defaults to the underlay's 1500 less 50.
        assert_eq!(
            plan.pod_ports[&10],
            PodPort {
                vni: 100,
                ip: [10, 244, 1, 2],
                mac: [2, 0, 0x0a, 0xf4, 1, 2],
                mtu: 1450,
                gateway: [10, 244, 0, 1],
                // upf-0 lists `upf`: the node's only policy; port security on by default.
                policy: 1,
                flags: port_flags::PORT_SECURITY,
                xsk_base: 0,
            }
        );
        assert_eq!(plan.pod_ports[&11].policy, NO_POLICY);
        // Anti-spoofing: each interface's own /32 with its MAC.
        assert_eq!(
            plan.sources[&(10, "10.244.1.2/32".parse().unwrap())],
            [2, 0, 0x0a, 0xf4, 1, 2]
        );
        assert_eq!(
            plan.sources[&(10, "10.244.1.100/32".parse().unwrap())],
            [2, 0, 0x0a, 0xf4, 1, 0x64]
        );
        assert_eq!(
            plan.pair_macs,
            BTreeSet::from([(10, [2, 0, 0x0a, 0xf4, 1, 0x64])])
        );
        assert_eq!(plan.pod_ports[&11].vni, 300);
        assert_eq!(plan.pod_ports[&11].mtu, 1450);
        assert_eq!(plan.pod_interfaces[&10], "vupf0s");
        // std has no datapath in the contract: tc; media is fast-path: XDP.
        assert_eq!(
            plan.networks[&100],
            Network {
                mtu: 1450,
                flags: network_flags::TC
            }
        );
        assert!(is_tc_port(&plan, 10));
        assert!(!is_tc_port(&plan, 11));
        assert_eq!(plan.remote_vteps, BTreeSet::from([[192, 168, 77, 2]]));
        // Local upf-0 on std, remote smf-0 on std, and each plane's gateway.
        assert_eq!(
            plan.endpoints[&EndpointKey {
                vni: 100,
                ip: [10, 244, 1, 2]
            }],
            Endpoint {
                kind: endpoint_kind::LOCAL,
                ifindex: 10,
                vtep: [0; 4],
                mac: [2, 0, 0x0a, 0xf4, 1, 2],
                flags: 0,
                _pad: 0,
                policy: 1,
            }
        );
        assert_eq!(
            plan.endpoints[&EndpointKey {
                vni: 100,
                ip: [10, 244, 2, 2]
            }],
            Endpoint {
                kind: endpoint_kind::REMOTE,
                ifindex: 0,
                vtep: [192, 168, 77, 2],
                mac: [2, 0, 0x0a, 0xf4, 2, 2],
                flags: 0,
                _pad: 0,
                policy: NO_POLICY,
            }
        );
        assert_eq!(
            plan.endpoints[&EndpointKey {
                vni: 300,
                ip: [10, 250, 0, 1]
            }]
                .kind,
            endpoint_kind::GATEWAY
        );
        assert_eq!(plan.endpoints.len(), 3 + 2);
    }

    #[test]
    fn node_b_sees_node_a_pods_as_remote() {
        let links = FakeLinks(HashMap::from([
            (
                "eth0",
                Link {
                    ifindex: 2,
                    mac: [0x52, 0, 0, 0, 0, 2],
                    mtu: 9000,
                },
            ),
            (
                "vsmf0s",
                Link {
                    ifindex: 7,
                    mac: [0x52, 0, 0, 0, 0, 7],
                    mtu: 1450,
                },
            ),
        ]));
        let plan = compile(&contract(), "node-b", &links).unwrap();
        assert_eq!(
            plan.endpoints[&EndpointKey {
                vni: 300,
                ip: [10, 250, 1, 2]
            }]
                .vtep,
            [192, 168, 77, 1]
        );
        assert_eq!(
            plan.endpoints[&EndpointKey {
                vni: 300,
                ip: [10, 250, 1, 2]
            }]
                .kind,
            endpoint_kind::REMOTE
        );
        // media has no MTU in the contract: 9000 - 50 on a jumbo underlay.
        assert_eq!(
            plan.networks[&300],
            Network {
                mtu: 8950,
                flags: network_flags::FAST_PATH
            }
        );
        assert_eq!(plan.pod_ports.keys().collect::<Vec<_>>(), vec![&7]);
    }

    #[test]
    fn every_missing_interface_is_named() {
        let links = FakeLinks(HashMap::from([(
            "vupf0s",
            Link {
                ifindex: 10,
                mac: [0; 6],
                mtu: 1450,
            },
        )]));
        let error = compile(&contract(), "node-a", &links).unwrap_err();
        assert_eq!(
            error.to_string(),
            "interfaces missing on node node-a: eth0, vupf0m"
        );
    }

    #[test]
    fn services_become_endpoints_service_entries_and_the_node_flag() {
        let services = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/services.yaml");
        let state = ClusterState::from_path(std::path::Path::new(services)).unwrap();
        let links = services_node_a_links();
        let plan = compile(&state, "node-a", &links).unwrap();
        assert_eq!(plan.node.flags, node_flags::SERVICES);
        for vip in [[10, 96, 0, 10], [10, 244, 0, 53]] {
            let endpoint = plan.endpoints[&EndpointKey { vni: 100, ip: vip }];
            assert_eq!(
                (endpoint.kind, endpoint.mac),
                (endpoint_kind::SERVICE, ROUTER_MAC)
            );
        }
        // web: 2 ports; dns: all ports, an entry each for TCP, UDP and ICMP.
        assert_eq!(plan.services.entries.len(), 5);
        let mut without = state;
        without.services.clear();
        let plan = compile(&without, "node-a", &links).unwrap();
        assert_eq!(plan.node.flags, 0);
        assert!(plan.services.is_empty());
    }

    /// Node A's interfaces in `examples/services.yaml`.
    fn services_node_a_links() -> FakeLinks {
        FakeLinks(HashMap::from(
            [("eth0", 2), ("vweb0", 10), ("vdns0", 11)].map(|(name, ifindex)| {
                let link = Link {
                    ifindex,
                    mac: [0x52, 0, 0, 0, 0, ifindex as u8],
                    mtu: 1500,
                };
                (name, link)
            }),
        ))
    }

    #[test]
    fn a_service_on_a_fast_path_plane_compiles_as_on_any_other() {
        let services = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/services.yaml");
        let mut state = ClusterState::from_path(std::path::Path::new(services)).unwrap();
        let slow = compile(&state, "node-a", &services_node_a_links()).unwrap();
        state.networks[0].fast_path = true;
        let fast = compile(&state, "node-a", &services_node_a_links()).unwrap();
        assert!(!fast.services.is_empty());
        assert_eq!(fast.services, slow.services);
    }

    #[test]
    fn unknown_node_is_an_error() {
        let error = compile(&contract(), "node-z", &node_a_links()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "node \"node-z\" is not in the cluster state"
        );
    }

    #[test]
    fn tiny_underlay_mtu_is_refused() {
        let mut links = node_a_links();
        links.0.get_mut("eth0").unwrap().mtu = 600;
        let error = compile(&contract(), "node-a", &links).unwrap_err();
        assert!(
            matches!(error, CompileError::UnderlayMtuTooSmall { mtu: 600, .. }),
            "{error}"
        );
    }
}
