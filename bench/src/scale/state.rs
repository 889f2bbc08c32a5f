//! The cluster states of the scale case, built as typed [`ClusterState`]s (each valid under
//! the state's own validation, which the tests below check):
//!
//! - the **base** state: the agent nodes (`node-a`, `node-b`, `node-c`, ...), one plane, a probe
//!   pod on every node (a /32 with a route via the gateway, so probes never ARP for a peer),
//!   the steady flow's security group on the probe of the second node (`ingress udp` from the
//!   first node's probe on [`FLOW_PORT`], `egress any`, and one rule the updates change);
//! - the pods the convergence samples add one by one ([`new_pod`]) and the spare pod the
//!   update phase puts in and takes out ([`spare_pod`]);
//! - the **large** state ([`enlarge`]): the base plus `groups` security groups holding `rules`
//!   rules between them, and `pods` more pods, the first `local_per_node` of each agent node
//!   on it (their veths exist), the rest on nodes that exist only in the state (100 pods each,
//!   standing for the rest of a large cluster: no namespace, no agent), each pod interface in
//!   one group.
//!
//! Owns [`StateError`]. Addresses: plane 10.100.0.0/16; large-state pods 10.100.1.2 on (250 a
//! /24, up to 10.100.249.x), probes 10.100.250.x, new pods 10.100.251.x, the spare pod
//! 10.100.252.2; agent nodes 192.168.77.1..; state-only nodes 192.168.77.10..254.
//!
//! Panic contract: nothing here panics on any input: out-of-range sizes are [`StateError`]s,
//! and the `expect`s are on prefixes and port ranges built here within their bounds.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ctpath_control::state::{
    ClusterState, ConntrackSettings, Datapath, Direction, MacAddr, Network, Node, Pod,
    PodInterface, PortRange, Protocol, Rule, SchemaVersion, SecurityGroup,
};
use thiserror::Error;

pub const PLANE: &str = "scale";
const VNI: u32 = 300;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
/// The steady flow's UDP port at the destination probe.
pub const FLOW_PORT: u16 = 9000;
/// The UDP echo port of probes and new pods.
pub const ECHO_PORT: u16 = 7;
/// The flow destination's security group.
pub const FLOW_GROUP: &str = "flow";
/// Pods per state-only node.
const PODS_PER_STATE_NODE: usize = 100;
/// The first state-only node's underlay host number (192.168.77.N).
const FIRST_STATE_NODE_HOST: usize = 10;
/// Large-state pods per /24 of the plane, and the /24s they may use (10.100.1-249.x).
const PODS_PER_BLOCK: usize = 250;
const BLOCKS: usize = 249;
/// At most this many convergence samples (10.100.251.2-251).
pub const MAX_NEW_PODS: usize = 250;
/// At most this many agent nodes (192.168.77.1-9).
pub const MAX_NODES: usize = FIRST_STATE_NODE_HOST - 1;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StateError {
    #[error("--nodes {0}: the scale case needs 3 to {MAX_NODES} agent nodes")]
    Nodes(usize),
    #[error("{pods} pods: the plane's addresses of this case hold at most {max}")]
    Pods { pods: usize, max: usize },
    #[error("{pods} pods on state-only nodes need {nodes} nodes of {PODS_PER_STATE_NODE}; the underlay /24 holds {max}")]
    StateNodes {
        pods: usize,
        nodes: usize,
        max: usize,
    },
    #[error("{rules} rules in {groups} groups: every group needs at least one rule, and there must be at least one group")]
    Rules { groups: usize, rules: usize },
    #[error("{local} local pods per node on {nodes} nodes is more than the {pods} pods")]
    Local {
        local: usize,
        nodes: usize,
        pods: usize,
    },
    #[error("convergence sample {0}: at most {MAX_NEW_PODS} new pods")]
    NewPod(usize),
}

/// The sizes of the large state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub pods: usize,
    pub groups: usize,
    pub rules: usize,
    /// Large-state pods on each agent node (the rest are on state-only nodes).
    pub local_per_node: usize,
}

/// The agent node names: node-a, node-b, ...
pub fn node_names(nodes: usize) -> Result<Vec<String>, StateError> {
    if !(3..=MAX_NODES).contains(&nodes) {
        return Err(StateError::Nodes(nodes));
    }
    Ok((0..nodes)
        .map(|i| format!("node-{}", char::from(b'a' + i as u8)))
        .collect())
}

fn node(name: &str, host: usize) -> Node {
    Node {
        name: name.to_owned(),
        underlay_interface: "eth0".to_owned(),
        underlay_ip: Ipv4Addr::new(192, 168, 77, host as u8),
        pod_ranges: Default::default(),
    }
}

fn rule(
    direction: Direction,
    protocol: Protocol,
    ports: Option<(u16, u16)>,
    remote: Remote,
) -> Rule {
    let (remote_group, remote_cidr) = match remote {
        Remote::Anywhere => (None, None),
        Remote::Group(group) => (Some(group), None),
        Remote::Cidr(ip, len) => (
            None,
            Some(ipnet::Ipv4Net::new(ip, len).expect("prefix length <= 32")),
        ),
    };
    Rule {
        direction,
        protocol,
        ports: ports.map(|(first, last)| {
            format!("{first}-{last}")
                .parse::<PortRange>()
                .expect("1 <= first <= last")
        }),
        remote_group,
        remote_cidr,
        remote_service: None,
    }
}

enum Remote {
    Anywhere,
    Group(String),
    Cidr(Ipv4Addr, u8),
}

/// A pod with one interface on the plane.
fn pod(name: &str, node: &str, host_interface: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Pod {
    Pod {
        name: name.to_owned(),
        namespace: "default".to_owned(),
        node: node.to_owned(),
        labels: BTreeMap::new(),
        interfaces: vec![PodInterface {
            network: PLANE.to_owned(),
            host_interface: host_interface.to_owned(),
            ip,
            mac: MacAddr(mac),
            security_groups: Vec::new(),
            port_security: true,
            allowed_address_pairs: Vec::new(),
        }],
    }
}

fn mac(kind: u8, index: usize) -> [u8; 6] {
    let b = (index as u32).to_be_bytes();
    [0x02, kind, b[0], b[1], b[2], b[3]]
}

/// The probe pod of agent node `index`.
pub fn probe_name(index: usize) -> String {
    format!("probe-{index}")
}

pub fn probe_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 100, 250, 2 + index as u8)
}

/// The base state of `nodes` agent nodes (see the module docs); `churn` picks the changing
/// rule of the flow's group.
pub fn base(nodes: usize, churn: u16) -> Result<ClusterState, StateError> {
    let names = node_names(nodes)?;
    let mut pods: Vec<Pod> = names
        .iter()
        .enumerate()
        .map(|(i, node)| {
            pod(
                &probe_name(i),
                node,
                &format!("pr{i}"),
                probe_ip(i),
                mac(0x5d, i),
            )
        })
        .collect();
    pods[1].interfaces[0].security_groups = vec![FLOW_GROUP.to_owned()];
    let mut state = ClusterState {
        version: SchemaVersion::V1,
        networks: vec![Network {
            name: PLANE.to_owned(),
            vni: VNI,
            cidr: "10.100.0.0/16".parse().expect("a CIDR"),
            gateway: GATEWAY,
            mtu: Some(1450),
            fast_path: false,
            datapath_given: Some(Datapath::Tc),
        }],
        nodes: names
            .iter()
            .enumerate()
            .map(|(i, name)| node(name, i + 1))
            .collect(),
        security_groups: vec![SecurityGroup {
            name: FLOW_GROUP.to_owned(),
            rules: Vec::new(),
        }],
        pods,
        conntrack: ConntrackSettings::default(),
        services: Vec::new(),
    };
    set_churn(&mut state, churn);
    Ok(state)
}

/// Sets the flow group's rules: the flow's, `egress any`, and a TCP rule on port
/// 40000 + `churn` (what the updates change).
pub fn set_churn(state: &mut ClusterState, churn: u16) {
    let source = probe_ip(0);
    let rules = vec![
        rule(
            Direction::Ingress,
            Protocol::Udp,
            Some((FLOW_PORT, FLOW_PORT)),
            Remote::Cidr(source, 32),
        ),
        rule(Direction::Egress, Protocol::Any, None, Remote::Anywhere),
        rule(
            Direction::Ingress,
            Protocol::Tcp,
            Some((40000 + churn % 20000, 40000 + churn % 20000)),
            Remote::Cidr(Ipv4Addr::new(10, 100, 0, 0), 16),
        ),
    ];
    if let Some(group) = state
        .security_groups
        .iter_mut()
        .find(|g| g.name == FLOW_GROUP)
    {
        group.rules = rules;
    }
}

/// Convergence sample `index`'s new pod, on `node`.
pub fn new_pod(index: usize, node: &str) -> Result<Pod, StateError> {
    if index >= MAX_NEW_PODS {
        return Err(StateError::NewPod(index));
    }
    Ok(pod(
        &format!("new-{index}"),
        node,
        &format!("nw{index}"),
        Ipv4Addr::new(10, 100, 251, 2 + index as u8),
        mac(0x5e, index),
    ))
}

/// The pod the update phase puts into the state and takes out again, on `node`.
pub fn spare_pod(node: &str) -> Pod {
    pod(
        "spare",
        node,
        "spare",
        Ipv4Addr::new(10, 100, 252, 2),
        mac(0x5f, 0),
    )
}

/// Large-state pod `index`'s address.
fn large_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        10,
        100,
        1 + (index / PODS_PER_BLOCK) as u8,
        2 + (index % PODS_PER_BLOCK) as u8,
    )
}

/// The rules of group `g` of `groups`, rule `k` of each group one of five kinds in turn: TCP
/// from another group, a UDP port range from a /24 of the plane, TCP from a /24 outside it,
/// ICMP from another group, egress TCP.
fn group_rules(g: usize, groups: usize, count: usize) -> Vec<Rule> {
    let other = |step: usize| format!("sg-{}", (g + step) % groups);
    (0..count)
        .map(|k| {
            let port = 1000 + (k as u16 % 20000);
            match k % 5 {
                0 => rule(
                    Direction::Ingress,
                    Protocol::Tcp,
                    Some((port, port)),
                    Remote::Group(other(1)),
                ),
                1 => rule(
                    Direction::Ingress,
                    Protocol::Udp,
                    Some((port + 20000, port + 20003)),
                    Remote::Cidr(Ipv4Addr::new(10, 100, 1 + (k % BLOCKS) as u8, 0), 24),
                ),
                2 => rule(
                    Direction::Ingress,
                    Protocol::Tcp,
                    Some((port, port)),
                    Remote::Cidr(Ipv4Addr::new(172, 16, (g % 256) as u8, 0), 24),
                ),
                3 => rule(
                    Direction::Ingress,
                    Protocol::Icmp,
                    None,
                    Remote::Group(other(7)),
                ),
                _ => rule(
                    Direction::Egress,
                    Protocol::Tcp,
                    Some((port, port)),
                    Remote::Anywhere,
                ),
            }
        })
        .collect()
}

/// The name of the large-state pod `index`'s host-side veth when it is local.
pub fn local_host_interface(index: usize) -> String {
    format!("l{index}")
}

/// Adds the large state's groups, state-only nodes and pods to `state` (see the module docs).
/// Returns the pods placed on agent nodes (their veths must exist before the state is written).
pub fn enlarge(state: &mut ClusterState, shape: Shape) -> Result<Vec<Pod>, StateError> {
    let agent_nodes: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    let Shape {
        pods,
        groups,
        rules,
        local_per_node,
    } = shape;
    if pods > PODS_PER_BLOCK * BLOCKS {
        return Err(StateError::Pods {
            pods,
            max: PODS_PER_BLOCK * BLOCKS,
        });
    }
    if groups == 0 || rules < groups {
        return Err(StateError::Rules { groups, rules });
    }
    let local = local_per_node * agent_nodes.len();
    if local > pods {
        return Err(StateError::Local {
            local: local_per_node,
            nodes: agent_nodes.len(),
            pods,
        });
    }
    let state_nodes = (pods - local).div_ceil(PODS_PER_STATE_NODE);
    let max_state_nodes = 255 - FIRST_STATE_NODE_HOST;
    if state_nodes > max_state_nodes {
        return Err(StateError::StateNodes {
            pods: pods - local,
            nodes: state_nodes,
            max: max_state_nodes,
        });
    }
    for g in 0..groups {
        let count = rules / groups + usize::from(g < rules % groups);
        state.security_groups.push(SecurityGroup {
            name: format!("sg-{g}"),
            rules: group_rules(g, groups, count),
        });
    }
    for k in 0..state_nodes {
        state
            .nodes
            .push(node(&format!("rest-{k}"), FIRST_STATE_NODE_HOST + k));
    }
    let mut placed = Vec::new();
    for j in 0..pods {
        let mut p = if j < local {
            pod(
                &format!("pod-{j}"),
                &agent_nodes[j % agent_nodes.len()],
                &local_host_interface(j),
                large_ip(j),
                mac(0x5c, j),
            )
        } else {
            pod(
                &format!("pod-{j}"),
                &format!("rest-{}", (j - local) / PODS_PER_STATE_NODE),
                &format!("b{j}"),
                large_ip(j),
                mac(0x5c, j),
            )
        };
        p.interfaces[0].security_groups = vec![format!("sg-{}", j % groups)];
        if j < local {
            placed.push(p.clone());
        }
        state.pods.push(p);
    }
    Ok(placed)
}

/// How many rules the state's groups hold.
pub fn rule_count(state: &ClusterState) -> usize {
    state.security_groups.iter().map(|g| g.rules.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_state_and_its_changes_are_valid() {
        let mut state = base(3, 0).unwrap();
        assert_eq!(state.violations(), vec![]);
        state.pods.push(new_pod(0, "node-b").unwrap());
        state
            .pods
            .push(new_pod(MAX_NEW_PODS - 1, "node-c").unwrap());
        state.pods.push(spare_pod("node-c"));
        set_churn(&mut state, 99);
        assert_eq!(state.violations(), vec![]);
        assert!(new_pod(MAX_NEW_PODS, "node-a").is_err());
        assert_eq!(base(2, 0).unwrap_err(), StateError::Nodes(2));
        assert!(base(MAX_NODES, 0).is_ok());
    }

    #[test]
    fn a_large_state_is_valid_and_has_the_sizes_asked_for() {
        let mut state = base(3, 0).unwrap();
        let shape = Shape {
            pods: 2_000,
            groups: 400,
            rules: 10_001,
            local_per_node: 4,
        };
        let local = enlarge(&mut state, shape).unwrap();
        assert_eq!(state.violations(), vec![]);
        assert_eq!(local.len(), 12);
        assert_eq!(state.pods.len(), 3 + 2_000);
        assert_eq!(state.security_groups.len(), 1 + 400);
        assert_eq!(rule_count(&state), 3 + 10_001);
        // 1,988 pods on state-only nodes of 100.
        assert_eq!(state.nodes.len(), 3 + 20);
    }

    #[test]
    fn the_issue_s_sizes_fit_the_addressing() {
        let mut state = base(3, 0).unwrap();
        let shape = Shape {
            pods: 10_000,
            groups: 2_000,
            rules: 50_000,
            local_per_node: 20,
        };
        enlarge(&mut state, shape).unwrap();
        assert_eq!(state.violations(), vec![]);
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        let shape = Shape {
            pods: 10,
            groups: 5,
            rules: 4,
            local_per_node: 1,
        };
        let mut state = base(3, 0).unwrap();
        assert!(matches!(
            enlarge(&mut state, shape),
            Err(StateError::Rules { .. })
        ));
        let local = Shape {
            rules: 5,
            local_per_node: 4,
            ..shape
        };
        assert!(matches!(
            enlarge(&mut state, local),
            Err(StateError::Local { .. })
        ));
        let many = Shape {
            pods: 100_000,
            rules: 5,
            ..shape
        };
        assert!(matches!(
            enlarge(&mut state, many),
            Err(StateError::Pods { .. })
        ));
    }
}
