//! The reference model (`ctpath_dataplane::model`) of a node, as tests build it: the one
//! translation of a cluster state into the model's [`Topology`], and the frame a model
//! [`Outcome`] puts on the wire. The differential test and the fixture tables
//! ([`crate::fixture::FixtureRunner::with_model`]) both use these, so the kernel, the AF_XDP
//! pipeline and the model are compared on one reading of the state.
//!
//! The translation reads the state as its schema documents it, not through the agent's
//! compiler (which is one of the things under test): a plane's MTU is the state's or the
//! underlay's less the VXLAN overhead; every other node is a VTEP, and a remote pod's VTEP is
//! its node's underlay address; the router MAC is the one the agent answers for gateways; a
//! service's backends are the pods the state's `service_backends` chooses (the schema's one
//! reading of a selector or a list). What
//! the state does not say, the node's devices do: the underlay's MAC and MTU, and the ifindex
//! of each local pod's host-side veth.
//!
//! Panic contract: [`topology`] panics on a state the validator would refuse (an interface on
//! an unknown plane, a pod on an unknown node, a rule naming an unknown service) and when a local pod's host interface is not in
//! the ifindex map: test set-up errors, reported with the offending name.

use std::collections::BTreeMap;

use ctpath_common::wire::VXLAN_ENCAP_LEN;
use ctpath_control::{
    compile::ROUTER_MAC,
    state::{self, ClusterState},
};
use ctpath_dataplane::{
    model::{
        topology::{
            AddressPair, ConntrackConfig, Direction, Ipv4Prefix, LocalPort, Node, Plane, PortRange,
            Protocol, Remote, RemoteEndpoint, Rule, SecurityGroup, Service, ServicePort,
            ServiceProtocol, Topology,
        },
        vxlan::{encapsulate, Outer},
        Outcome,
    },
    wire::MacAddr,
};

use crate::LinkInfo;

/// The model's view of node `node` of `state`: `underlay` is the node's underlay device (its
/// MAC and MTU), `ifindex` maps host interface names to the ifindexes of the node's devices.
pub fn topology(
    state: &ClusterState,
    node: &str,
    underlay: &LinkInfo,
    ifindex: &BTreeMap<String, u32>,
) -> Topology {
    let this = state
        .node(node)
        .unwrap_or_else(|| panic!("node {node} is not in the state"));
    let plane_mtu = |network: &state::Network| {
        network.mtu.unwrap_or_else(|| {
            (underlay.mtu.saturating_sub(VXLAN_ENCAP_LEN as u32)).min(u32::from(u16::MAX)) as u16
        })
    };
    let mut ports = Vec::new();
    let mut remotes = Vec::new();
    for pod in &state.pods {
        for interface in &pod.interfaces {
            let network = plane(state, &interface.network);
            if pod.node == node {
                let ifindex = *ifindex.get(&interface.host_interface).unwrap_or_else(|| {
                    panic!("no device {} on node {node}", interface.host_interface)
                });
                ports.push(LocalPort {
                    ifindex,
                    vni: network.vni,
                    ip: interface.ip,
                    mac: MacAddr(interface.mac.0),
                    mtu: plane_mtu(network),
                    gateway: network.gateway,
                    port_security: interface.port_security,
                    security_groups: interface.security_groups.clone(),
                    allowed_address_pairs: address_pairs(interface),
                });
            } else {
                let vtep = state
                    .node(&pod.node)
                    .unwrap_or_else(|| panic!("node {} is not in the state", pod.node))
                    .underlay_ip;
                remotes.push(RemoteEndpoint {
                    vni: network.vni,
                    ip: interface.ip,
                    mac: MacAddr(interface.mac.0),
                    vtep,
                    security_groups: interface.security_groups.clone(),
                    allowed_address_pairs: address_pairs(interface),
                });
            }
        }
    }
    Topology {
        node: Node {
            underlay_ip: this.underlay_ip,
            underlay_mac: MacAddr(underlay.mac),
            router_mac: MacAddr(ROUTER_MAC),
        },
        planes: state
            .networks
            .iter()
            .map(|network| Plane {
                vni: network.vni,
                mtu: plane_mtu(network),
                gateway: network.gateway,
            })
            .collect(),
        ports,
        remotes,
        vteps: state
            .nodes
            .iter()
            .filter(|other| other.name != node)
            .map(|other| other.underlay_ip)
            .collect(),
        security_groups: state
            .security_groups
            .iter()
            .map(|group| security_group(state, group))
            .collect(),
        conntrack: ConntrackConfig {
            timeouts: state.conntrack.timeouts(),
            max_entries: state.conntrack.max_entries,
        },
        services: state
            .services
            .iter()
            .map(|service| {
                let vni = plane(state, &service.network).vni;
                self::service(state, service, vni)
            })
            .collect(),
    }
}

/// A service of `state` on plane `vni`: its backends as the state chooses them
/// ([`ClusterState::service_backends`]).
fn service(state: &ClusterState, service: &state::Service, vni: u32) -> Service {
    let port = |port: &state::ServicePort| ServicePort {
        protocol: match port.protocol {
            state::ServiceProtocol::Tcp => ServiceProtocol::Tcp,
            state::ServiceProtocol::Udp => ServiceProtocol::Udp,
        },
        port: port.port,
        target_port: port.target_port(),
    };
    Service {
        vni,
        vip: service.vip,
        ports: service
            .ports
            .as_ref()
            .map(|ports| ports.iter().map(port).collect()),
        backends: state
            .service_backends(service)
            .into_iter()
            .map(|(_, interface)| interface.ip)
            .collect(),
        affinity_timeout_s: service.affinity_timeout(),
    }
}

fn plane<'a>(state: &'a ClusterState, name: &str) -> &'a state::Network {
    state
        .network(name)
        .unwrap_or_else(|| panic!("plane {name} is not in the state"))
}

fn address_pairs(interface: &state::PodInterface) -> Vec<AddressPair> {
    interface
        .allowed_address_pairs
        .iter()
        .map(|pair| AddressPair {
            prefix: Ipv4Prefix::new(pair.ip.network(), pair.ip.prefix_len()),
            mac: pair.mac.map(|mac| MacAddr(mac.0)),
        })
        .collect()
}

fn security_group(state: &ClusterState, group: &state::SecurityGroup) -> SecurityGroup {
    SecurityGroup {
        name: group.name.clone(),
        rules: group.rules.iter().map(|r| rule(state, r)).collect(),
    }
}

fn rule(state: &ClusterState, rule: &state::Rule) -> Rule {
    let ports = rule.ports.map(|ports| PortRange {
        first: ports.first(),
        last: ports.last(),
    });
    Rule {
        direction: match rule.direction {
            state::Direction::Ingress => Direction::Ingress,
            state::Direction::Egress => Direction::Egress,
        },
        protocol: match rule.protocol {
            state::Protocol::Tcp => Protocol::Tcp { ports },
            state::Protocol::Udp => Protocol::Udp { ports },
            state::Protocol::Icmp => Protocol::Icmp,
            state::Protocol::Any => Protocol::Any,
        },
        remote: match rule.remote() {
            state::RemoteSide::Group(group) => Remote::Group(group.to_owned()),
            state::RemoteSide::Cidr(cidr) => {
                Remote::Cidr(Ipv4Prefix::new(cidr.network(), cidr.prefix_len()))
            }
            state::RemoteSide::Service(name) => service_members(state, name),
            state::RemoteSide::Anywhere => Remote::Anywhere,
        },
    }
}

/// A service as a rule's remote side: its members, on its plane.
fn service_members(state: &ClusterState, name: &str) -> Remote {
    let service = state
        .service(name)
        .unwrap_or_else(|| panic!("service {name} is not in the state"));
    Remote::Service {
        vni: plane(state, &service.network).vni,
        members: state.service_members(service),
    }
}

/// The frame that leaves the node when the model decides `outcome` on `input`, or `None` for a
/// drop. An encapsulated frame's outer headers are the model's (this node's underlay address
/// and MAC as source, the VTEP as destination) with `next_hop` as destination MAC: the
/// underlay next hop is the kernel's FIB and neighbour table, outside the model.
pub fn frame_out(
    outcome: &Outcome,
    input: &[u8],
    node: &Node,
    next_hop: MacAddr,
) -> Option<Vec<u8>> {
    match outcome {
        Outcome::Drop(_) => None,
        Outcome::Pass => Some(input.to_vec()),
        Outcome::Redirect { frame, .. } | Outcome::Bounce { frame } => Some(frame.clone()),
        Outcome::Encapsulate {
            vtep,
            vni,
            src_port,
            inner,
        } => Some(encapsulate(
            &Outer {
                src_mac: node.underlay_mac,
                dst_mac: next_hop,
                src_ip: node.underlay_ip,
                dst_ip: *vtep,
                src_port: *src_port,
                vni: *vni,
            },
            inner,
        )),
    }
}
