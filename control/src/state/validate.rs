//! Semantic checks of a parsed cluster state: uniqueness, cross-references and value ranges that
//! the schema's types cannot express.
//!
//! Owns: the list of rules a state must satisfy before the agent acts on it. Every broken rule
//! becomes one `Violation` naming the YAML path of the offending value; all of them are collected
//! in document order, none stops the others. Nothing here panics.
//!
//! Decisions worth knowing:
//! - The same IP (or MAC) on two different networks is allowed: planes are isolated.
//! - `mtu` must lie in 576..=9000: 576 is the smallest datagram every IPv4 host must accept, 9000
//!   the common jumbo-frame size; whether it fits the actual underlay is the agent's check.
//! - `allowed_address_pairs[].ip` may be any CIDR, inside the interface's network or not (VIPs
//!   often are not), as OpenStack allows; only its syntax is checked, by the parser. A pair's MAC
//!   must be unicast like any other, but may repeat (VRRP shares one virtual MAC between pods).
//! - Interface names follow the kernel's `dev_valid_name`: 1 to 15 bytes (IFNAMSIZ less the NUL),
//!   not `.` or `..`, no `/`, `:` or whitespace.
//! - A network's `cidr` must be written as its network address (`10.244.0.0/16`, not
//!   `10.244.1.0/16`), so that the written form and the meaning agree; so must a node's
//!   `pod_ranges` entries.
//! - `nodes[].pod_ranges` (per network, the node's block for the CNI plugin's host-local): each
//!   block inside its network's CIDR, not holding the gateway, not overlapping another node's
//!   block of the same network. Pods listed in the state with addresses are not checked against
//!   the blocks: addresses given by hand may lie anywhere in the network.
//! - `services[]`: names unique in the cluster. The VIP may lie outside its network's CIDR
//!   but is never unspecified, broadcast, multicast or loopback, nor (inside the CIDR) the
//!   network, broadcast or gateway address, nor in a node's `pod_ranges` block of the network
//!   (the CNI plugin could give it to a pod), nor a pod interface's address or another
//!   service's VIP on the same network (on different networks a VIP may repeat: planes are
//!   isolated). Exactly one of `ports` (non-empty, ports 1 to 65535, each (port, protocol)
//!   once) and `all_ports: true`; exactly one of `selector` (non-empty) and `backends` (each
//!   a known pod with an interface on the service's network, listed once; the list may be
//!   empty). `affinity_timeout_seconds` only with `session_affinity: client_ip`, 1 to 86400
//!   (a day, Kubernetes' limit). A selector that matches no pod is not an error.
//! - A security-group rule sets at most one of `remote_group`, `remote_cidr` and
//!   `remote_service`; the group or service it names must exist.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::model::{
    ClusterState, Datapath, Network, Node, Pod, PodInterface, Protocol, Service, SessionAffinity,
};
use super::values::MacAddr;
use super::Violation;

/// The largest VNI: VXLAN carries 24 bits.
const MAX_VNI: u32 = (1 << 24) - 1;
/// Accepted pod-side MTUs.
const MTU_RANGE: std::ops::RangeInclusive<u16> = 576..=9000;
/// Longest interface name: IFNAMSIZ (16) less the terminating NUL.
const MAX_INTERFACE_NAME_BYTES: usize = 15;

/// Every rule `state` breaks, in document order; empty when the state is valid.
pub(super) fn violations(state: &ClusterState) -> Vec<Violation> {
    let mut report = Report::default();
    check_networks(state, &mut report);
    check_nodes(state, &mut report);
    check_security_groups(state, &mut report);
    check_pods(state, &mut report);
    check_conntrack(state, &mut report);
    check_services(state, &mut report);
    report.violations
}

#[derive(Default)]
struct Report {
    violations: Vec<Violation>,
}

impl Report {
    fn add(&mut self, path: impl Display, message: impl Display) {
        self.violations.push(Violation {
            path: path.to_string(),
            message: message.to_string(),
        });
    }
}

/// Names the first element of `items` with each key, by index.
fn first_index_by<'a, T, K: std::hash::Hash + Eq>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> HashMap<K, usize> {
    let mut first = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        first.entry(key(item)).or_insert(index);
    }
    first
}

fn check_networks(state: &ClusterState, report: &mut Report) {
    let first_by_name = first_index_by(&state.networks, |network| network.name.as_str());
    let first_by_vni = first_index_by(&state.networks, |network| network.vni);
    for (n, network) in state.networks.iter().enumerate() {
        let path = format!("networks[{n}]");
        let first = first_by_name[network.name.as_str()];
        if first != n {
            report.add(
                format!("{path}.name"),
                format!(
                    "duplicate network name {} (first at networks[{first}])",
                    network.name
                ),
            );
        }

        if network.vni == 0 {
            report.add(format!("{path}.vni"), "VNI 0 is reserved");
        } else if network.vni > MAX_VNI {
            report.add(
                format!("{path}.vni"),
                format!(
                    "VNI {} does not fit in 24 bits (max {MAX_VNI})",
                    network.vni
                ),
            );
        }
        let first = first_by_vni[&network.vni];
        if first != n {
            report.add(
                format!("{path}.vni"),
                format!(
                    "duplicate VNI {} (already used by network {})",
                    network.vni, state.networks[first].name
                ),
            );
        }

        let cidr = network.cidr;
        if cidr.addr() != cidr.network() {
            report.add(
                format!("{path}.cidr"),
                format!("{cidr} has host bits set; did you mean {}?", cidr.trunc()),
            );
        }

        let gateway = network.gateway;
        let gateway_problem = if !cidr.contains(&gateway) {
            Some(format!("{gateway} is outside {}", cidr.trunc()))
        } else if gateway == cidr.network() {
            Some(format!(
                "{gateway} is the network address of {}",
                cidr.trunc()
            ))
        } else if gateway == cidr.broadcast() {
            Some(format!(
                "{gateway} is the broadcast address of {}",
                cidr.trunc()
            ))
        } else {
            None
        };
        if let Some(problem) = gateway_problem {
            report.add(format!("{path}.gateway"), problem);
        }

        if network.fast_path && network.datapath_given == Some(Datapath::Tc) {
            report.add(
                format!("{path}.datapath"),
                "tc is not possible with fast_path: true (the AF_XDP forwarder is fed by XDP at \
                 the pods' veths); leave it out or write xdp",
            );
        }

        if let Some(mtu) = network.mtu {
            if !MTU_RANGE.contains(&mtu) {
                report.add(
                    format!("{path}.mtu"),
                    format!(
                        "{mtu} is outside {}..={}",
                        MTU_RANGE.start(),
                        MTU_RANGE.end()
                    ),
                );
            }
        }
    }
}

fn check_nodes(state: &ClusterState, report: &mut Report) {
    let first_by_name = first_index_by(&state.nodes, |node| node.name.as_str());
    let first_by_ip = first_index_by(&state.nodes, |node| node.underlay_ip);
    for (n, node) in state.nodes.iter().enumerate() {
        let path = format!("nodes[{n}]");
        let first = first_by_name[node.name.as_str()];
        if first != n {
            report.add(
                format!("{path}.name"),
                format!(
                    "duplicate node name {} (first at nodes[{first}])",
                    node.name
                ),
            );
        }
        if let Err(problem) = check_interface_name(&node.underlay_interface) {
            report.add(format!("{path}.underlay_interface"), problem);
        }
        let first = first_by_ip[&node.underlay_ip];
        if first != n {
            report.add(
                format!("{path}.underlay_ip"),
                format!(
                    "{} is already used by node {} (nodes[{first}])",
                    node.underlay_ip, state.nodes[first].name
                ),
            );
        }
    }
    check_pod_ranges(state, report);
}

/// `nodes[].pod_ranges`: see the module docs.
fn check_pod_ranges(state: &ClusterState, report: &mut Report) {
    // Per network: the blocks seen so far, with their paths.
    let mut seen: HashMap<&str, Vec<(Ipv4Net, String)>> = HashMap::new();
    for (n, node) in state.nodes.iter().enumerate() {
        for (name, &range) in &node.pod_ranges {
            let path = format!("nodes[{n}].pod_ranges.{name}");
            let Some(network) = state.network(name) else {
                report.add(&path, format_args!("unknown network {name}"));
                continue;
            };
            let cidr = network.cidr.trunc();
            if range.addr() != range.network() {
                report.add(
                    &path,
                    format_args!("{range} has host bits set; did you mean {}?", range.trunc()),
                );
                continue;
            }
            if !cidr.contains(&range) {
                report.add(
                    &path,
                    format_args!("{range} is outside network {name} ({cidr})"),
                );
                continue;
            }
            if range.contains(&network.gateway) {
                report.add(
                    &path,
                    format_args!(
                        "{range} holds the gateway {} of network {name}",
                        network.gateway
                    ),
                );
            }
            let blocks = seen.entry(name.as_str()).or_default();
            if let Some((other, other_path)) = blocks
                .iter()
                .find(|(other, _)| other.contains(&range) || range.contains(other))
            {
                report.add(
                    &path,
                    format_args!("{range} overlaps {other_path} ({other})"),
                );
            }
            blocks.push((range, path));
        }
    }
}

fn check_security_groups(state: &ClusterState, report: &mut Report) {
    let first_by_name = first_index_by(&state.security_groups, |group| group.name.as_str());
    for (g, group) in state.security_groups.iter().enumerate() {
        let path = format!("security_groups[{g}]");
        let first = first_by_name[group.name.as_str()];
        if first != g {
            report.add(
                format!("{path}.name"),
                format!(
                    "duplicate security group name {} (first at security_groups[{first}])",
                    group.name
                ),
            );
        }
        for (r, rule) in group.rules.iter().enumerate() {
            let path = format!("{path}.rules[{r}]");
            if rule.ports.is_some() && !matches!(rule.protocol, Protocol::Tcp | Protocol::Udp) {
                report.add(
                    format!("{path}.ports"),
                    format!(
                        "ports are only allowed with protocol tcp or udp, not {}",
                        rule.protocol.as_str()
                    ),
                );
            }
            let remotes: Vec<&str> = [
                ("remote_group", rule.remote_group.is_some()),
                ("remote_cidr", rule.remote_cidr.is_some()),
                ("remote_service", rule.remote_service.is_some()),
            ]
            .into_iter()
            .filter_map(|(field, set)| set.then_some(field))
            .collect();
            if let [others @ .., last] = remotes.as_slice() {
                if !others.is_empty() {
                    report.add(
                        &path,
                        format_args!(
                            "has {} and {last}; set at most one of remote_group, remote_cidr and \
                             remote_service",
                            others.join(", ")
                        ),
                    );
                }
            }
            if let Some(remote) = &rule.remote_group {
                if !first_by_name.contains_key(remote.as_str()) {
                    report.add(
                        format!("{path}.remote_group"),
                        format!("unknown security group {remote}"),
                    );
                }
            }
            if let Some(service) = &rule.remote_service {
                if state.service(service).is_none() {
                    report.add(
                        format!("{path}.remote_service"),
                        format!("no service named {service}"),
                    );
                }
            }
        }
    }
}

/// Accepted conntrack table sizes, and the longest idle timeout (a year, in seconds).
const CONNTRACK_ENTRIES: std::ops::RangeInclusive<u32> = 1_024..=16_777_216;
const MAX_TIMEOUT_S: u32 = 365 * 24 * 3600;

fn check_conntrack(state: &ClusterState, report: &mut Report) {
    let settings = &state.conntrack;
    if !CONNTRACK_ENTRIES.contains(&settings.max_entries) {
        report.add(
            "conntrack.max_entries",
            format_args!(
                "{} is outside {}..={}",
                settings.max_entries,
                CONNTRACK_ENTRIES.start(),
                CONNTRACK_ENTRIES.end()
            ),
        );
    }
    let timeouts = [
        ("tcp_syn", settings.tcp_syn),
        ("tcp_established", settings.tcp_established),
        ("tcp_closing", settings.tcp_closing),
        ("udp", settings.udp),
        ("icmp", settings.icmp),
        ("other", settings.other),
    ];
    for (name, seconds) in timeouts {
        if !(1..=MAX_TIMEOUT_S).contains(&seconds) {
            report.add(
                format_args!("conntrack.{name}"),
                format_args!("{seconds} s is outside 1..={MAX_TIMEOUT_S} s"),
            );
        }
    }
}

fn check_pods(state: &ClusterState, report: &mut Report) {
    let mut checks = PodChecks {
        state,
        networks: first_index_by(&state.networks, |network| network.name.as_str()),
        nodes: first_index_by(&state.nodes, |node| node.name.as_str()),
        groups: first_index_by(&state.security_groups, |group| group.name.as_str()),
        ip_owners: HashMap::new(),
        mac_owners: HashMap::new(),
        host_interface_owners: HashMap::new(),
    };
    let first_by_name = first_index_by(&state.pods, |pod| (&pod.namespace, &pod.name));
    for (p, pod) in state.pods.iter().enumerate() {
        let first = first_by_name[&(&pod.namespace, &pod.name)];
        if first != p {
            report.add(
                format!("pods[{p}].name"),
                format!(
                    "duplicate pod {}/{} (first at pods[{first}])",
                    pod.namespace, pod.name
                ),
            );
        }
        checks.check_pod(p, pod, report);
    }
}

/// Look-ups by name, and the first claimant of each address and interface name that must be
/// unique, gathered while the pods are checked in order.
struct PodChecks<'s> {
    state: &'s ClusterState,
    networks: HashMap<&'s str, usize>,
    nodes: HashMap<&'s str, usize>,
    groups: HashMap<&'s str, usize>,
    /// Per network: IP to `owner`.
    ip_owners: HashMap<(&'s str, Ipv4Addr), String>,
    /// Per network: MAC to `owner`.
    mac_owners: HashMap<(&'s str, MacAddr), String>,
    /// Per node: host interface name to `owner`.
    host_interface_owners: HashMap<(&'s str, &'s str), String>,
}

/// Where something was first claimed: `telco/upf-0 (pods[0].interfaces[1])`.
fn owner(pod: &Pod, p: usize, i: usize) -> String {
    format!("{}/{} (pods[{p}].interfaces[{i}])", pod.namespace, pod.name)
}

impl<'s> PodChecks<'s> {
    fn check_pod(&mut self, p: usize, pod: &'s Pod, report: &mut Report) {
        let state = self.state;
        let node = self.nodes.get(pod.node.as_str()).map(|&n| &state.nodes[n]);
        if node.is_none() {
            report.add(
                format!("pods[{p}].node"),
                format!("unknown node {}", pod.node),
            );
        }
        let mut first_interface_by_network: HashMap<&str, usize> = HashMap::new();
        for (i, interface) in pod.interfaces.iter().enumerate() {
            let path = format!("pods[{p}].interfaces[{i}]");
            if let Some(&first) = first_interface_by_network.get(interface.network.as_str()) {
                report.add(
                    format!("{path}.network"),
                    format!(
                        "pod {}/{} already has an interface on network {} (interfaces[{first}])",
                        pod.namespace, pod.name, interface.network
                    ),
                );
            } else {
                first_interface_by_network.insert(&interface.network, i);
            }
            self.check_interface(&path, owner(pod, p, i), pod, node, interface, report);
        }
    }

    /// The checks of one interface, in the order its fields are written.
    fn check_interface(
        &mut self,
        path: &str,
        owner: String,
        pod: &'s Pod,
        node: Option<&Node>,
        interface: &'s PodInterface,
        report: &mut Report,
    ) {
        let state = self.state;
        let network = match self.networks.get(interface.network.as_str()) {
            Some(&n) => Some(&state.networks[n]),
            None => {
                report.add(
                    format!("{path}.network"),
                    format!("unknown network {}", interface.network),
                );
                None
            }
        };

        let host_interface = interface.host_interface.as_str();
        if let Err(problem) = check_interface_name(host_interface) {
            report.add(format!("{path}.host_interface"), problem);
        }
        if let Some(node) = node.filter(|node| node.underlay_interface == host_interface) {
            report.add(
                format!("{path}.host_interface"),
                format!(
                    "{host_interface} is the underlay interface of node {}",
                    node.name
                ),
            );
        }
        let key = (pod.node.as_str(), host_interface);
        if let Some(first) = self.host_interface_owners.get(&key) {
            report.add(
                format!("{path}.host_interface"),
                format!(
                    "{host_interface} is already used on node {} by {first}",
                    pod.node
                ),
            );
        } else {
            self.host_interface_owners.insert(key, owner.clone());
        }

        if let Some(network) = network {
            if let Err(problem) = check_pod_ip(interface.ip, network) {
                report.add(format!("{path}.ip"), problem);
            }
            let key = (network.name.as_str(), interface.ip);
            if let Some(first) = self.ip_owners.get(&key) {
                report.add(
                    format!("{path}.ip"),
                    format!(
                        "{} is already used on network {} by {first}",
                        interface.ip, network.name
                    ),
                );
            } else {
                self.ip_owners.insert(key, owner.clone());
            }
        }

        if let Err(problem) = check_unicast_mac(interface.mac) {
            report.add(format!("{path}.mac"), problem);
        }
        if let Some(network) = network {
            let key = (network.name.as_str(), interface.mac);
            if let Some(first) = self.mac_owners.get(&key) {
                report.add(
                    format!("{path}.mac"),
                    format!(
                        "{} is already used on network {} by {first}",
                        interface.mac, network.name
                    ),
                );
            } else {
                self.mac_owners.insert(key, owner);
            }
        }

        for (s, group) in interface.security_groups.iter().enumerate() {
            if !self.groups.contains_key(group.as_str()) {
                report.add(
                    format!("{path}.security_groups[{s}]"),
                    format!("unknown security group {group}"),
                );
            }
        }

        for (a, pair) in interface.allowed_address_pairs.iter().enumerate() {
            if let Some(Err(problem)) = pair.mac.map(check_unicast_mac) {
                report.add(format!("{path}.allowed_address_pairs[{a}].mac"), problem);
            }
        }
    }
}

/// A pod address must be a host address of its network other than the gateway.
fn check_pod_ip(ip: Ipv4Addr, network: &Network) -> Result<(), String> {
    let cidr = network.cidr.trunc();
    if !cidr.contains(&ip) {
        Err(format!("{ip} is outside network {} ({cidr})", network.name))
    } else {
        check_not_reserved(ip, network)
    }
}

/// An address of `network`'s CIDR that neither a pod nor a service may take: the network
/// address, the broadcast address, the gateway.
fn check_not_reserved(ip: Ipv4Addr, network: &Network) -> Result<(), String> {
    let cidr = network.cidr.trunc();
    let name = &network.name;
    if ip == cidr.network() {
        Err(format!(
            "{ip} is the network address of network {name} ({cidr})"
        ))
    } else if ip == cidr.broadcast() {
        Err(format!(
            "{ip} is the broadcast address of network {name} ({cidr})"
        ))
    } else if ip == network.gateway {
        Err(format!("{ip} is the gateway of network {name}"))
    } else {
        Ok(())
    }
}

/// Accepted `affinity_timeout_seconds`.
const AFFINITY_TIMEOUT_S: std::ops::RangeInclusive<u32> = 1..=86_400;

fn check_services(state: &ClusterState, report: &mut Report) {
    let first_by_name = first_index_by(&state.services, |service| service.name.as_str());
    let pods = first_index_by(&state.pods, |pod| {
        (pod.namespace.as_str(), pod.name.as_str())
    });
    // Per network: the pod interface that has each address.
    let mut pod_addresses: HashMap<(&str, Ipv4Addr), String> = HashMap::new();
    for (p, pod) in state.pods.iter().enumerate() {
        for (i, interface) in pod.interfaces.iter().enumerate() {
            pod_addresses
                .entry((interface.network.as_str(), interface.ip))
                .or_insert_with(|| owner(pod, p, i));
        }
    }
    // Per network: the first service with each VIP.
    let mut vip_owners: HashMap<(&str, Ipv4Addr), usize> = HashMap::new();
    for (s, service) in state.services.iter().enumerate() {
        let path = format!("services[{s}]");
        let first = first_by_name[service.name.as_str()];
        if first != s {
            report.add(
                format!("{path}.name"),
                format!(
                    "duplicate service name {} (first at services[{first}])",
                    service.name
                ),
            );
        }
        let network = state.network(&service.network);
        if network.is_none() {
            report.add(
                format!("{path}.network"),
                format!("unknown network {}", service.network),
            );
        }
        let vip = service.vip;
        if let Err(problem) = check_vip(vip, network) {
            report.add(format!("{path}.vip"), problem);
        }
        if let Some(network) = network {
            let key = (network.name.as_str(), vip);
            if let Some(pod) = pod_addresses.get(&key) {
                report.add(
                    format!("{path}.vip"),
                    format!("{vip} is the address of {pod} on network {}", network.name),
                );
            }
            let pod_range = state.nodes.iter().enumerate().find_map(|(n, node)| {
                let range = node.pod_ranges.get(&network.name)?;
                range.contains(&vip).then_some((n, node, range))
            });
            if let Some((n, node, range)) = pod_range {
                report.add(
                    format!("{path}.vip"),
                    format!(
                        "{vip} lies in node {}'s pod range {range} (nodes[{n}].pod_ranges.{}), \
                         from which the CNI plugin gives pods their addresses",
                        node.name, network.name
                    ),
                );
            }
            if let Some(&first) = vip_owners.get(&key) {
                report.add(
                    format!("{path}.vip"),
                    format!(
                        "{vip} is already the VIP of service {} (services[{first}]) on network {}",
                        state.services[first].name, network.name
                    ),
                );
            } else {
                vip_owners.insert(key, s);
            }
        }
        check_service_ports(&path, service, report);
        check_service_backends(&path, service, network, &pods, state, report);
        match (service.session_affinity, service.affinity_timeout_given) {
            (SessionAffinity::None, Some(_)) => report.add(
                format!("{path}.affinity_timeout_seconds"),
                "is only allowed with session_affinity: client_ip",
            ),
            (SessionAffinity::ClientIp, Some(seconds))
                if !AFFINITY_TIMEOUT_S.contains(&seconds) =>
            {
                report.add(
                    format!("{path}.affinity_timeout_seconds"),
                    format!(
                        "{seconds} s is outside {}..={} s",
                        AFFINITY_TIMEOUT_S.start(),
                        AFFINITY_TIMEOUT_S.end()
                    ),
                )
            }
            _ => {}
        }
    }
}

/// A VIP is a unicast address other than loopback, and no reserved address of its network.
fn check_vip(vip: Ipv4Addr, network: Option<&Network>) -> Result<(), String> {
    if vip.is_unspecified() {
        Err(format!("{vip} is the unspecified address"))
    } else if vip.is_broadcast() {
        Err(format!("{vip} is the broadcast address"))
    } else if vip.is_multicast() {
        Err(format!("{vip} is a multicast address (224.0.0.0/4)"))
    } else if vip.is_loopback() {
        Err(format!(
            "{vip} is a loopback address (127.0.0.0/8), which a pod never sends out"
        ))
    } else {
        match network {
            Some(network) if network.cidr.trunc().contains(&vip) => {
                check_not_reserved(vip, network)
            }
            _ => Ok(()),
        }
    }
}

/// Exactly one of `ports` and `all_ports: true`; each port in range and listed once.
fn check_service_ports(path: &str, service: &Service, report: &mut Report) {
    match (&service.ports, service.all_ports) {
        (None, false) => report.add(path, "has neither ports nor all_ports: true; set one"),
        (Some(_), true) => report.add(path, "has both ports and all_ports: true; set one"),
        (Some(ports), false) if ports.is_empty() => report.add(
            format!("{path}.ports"),
            "is empty; list at least one port, or write all_ports: true instead",
        ),
        _ => {}
    }
    let ports = service.ports.as_deref().unwrap_or_default();
    let first_by_port = first_index_by(ports, |port| (port.port, port.protocol));
    for (k, port) in ports.iter().enumerate() {
        let path = format!("{path}.ports[{k}]");
        let numbers = [
            ("port", Some(port.port)),
            ("target_port", port.target_port_given),
        ];
        for (field, number) in numbers {
            if number == Some(0) {
                report.add(
                    format!("{path}.{field}"),
                    "0 is not a port (ports are 1 to 65535)",
                );
            }
        }
        let first = first_by_port[&(port.port, port.protocol)];
        if first != k {
            report.add(
                &path,
                format_args!(
                    "{}/{} is already listed (ports[{first}])",
                    port.port,
                    port.protocol.as_str()
                ),
            );
        }
    }
}

/// Exactly one of `selector` (non-empty) and `backends`; each listed pod known, with an
/// interface on the service's network, and listed once.
fn check_service_backends(
    path: &str,
    service: &Service,
    network: Option<&Network>,
    pods: &HashMap<(&str, &str), usize>,
    state: &ClusterState,
    report: &mut Report,
) {
    match (&service.selector, &service.backends) {
        (None, None) => report.add(path, "has neither selector nor backends; set one"),
        (Some(_), Some(_)) => report.add(path, "has both selector and backends; set one"),
        (Some(selector), None) if selector.is_empty() => report.add(
            format!("{path}.selector"),
            "is empty; a selector names at least one label",
        ),
        _ => {}
    }
    let listed = service.backends.as_deref().unwrap_or_default();
    let first_by_pod = first_index_by(listed, |backend| {
        (backend.namespace.as_str(), backend.pod.as_str())
    });
    for (b, backend) in listed.iter().enumerate() {
        let path = format!("{path}.backends[{b}]");
        let key = (backend.namespace.as_str(), backend.pod.as_str());
        let pod_name = format!("{}/{}", backend.namespace, backend.pod);
        let first = first_by_pod[&key];
        if first != b {
            report.add(
                &path,
                format_args!("{pod_name} is already listed (backends[{first}])"),
            );
            continue;
        }
        let Some(&p) = pods.get(&key) else {
            report.add(&path, format_args!("unknown pod {pod_name}"));
            continue;
        };
        if let Some(network) = network {
            let on_network = state.pods[p]
                .interfaces
                .iter()
                .any(|interface| interface.network == network.name);
            if !on_network {
                report.add(
                    &path,
                    format_args!(
                        "pod {pod_name} has no interface on network {}",
                        network.name
                    ),
                );
            }
        }
    }
}

/// A MAC a pod sends from must be a unicast, non-zero address.
fn check_unicast_mac(mac: MacAddr) -> Result<(), String> {
    if mac.is_broadcast() {
        Err(format!("{mac} is the broadcast address"))
    } else if mac.is_multicast() {
        Err(format!(
            "{mac} is a multicast address (low bit of the first octet set)"
        ))
    } else if mac.is_zero() {
        Err(format!("{mac} is the all-zero address"))
    } else {
        Ok(())
    }
}

/// The kernel's `dev_valid_name`.
fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("interface name is empty".to_owned())
    } else if name.len() > MAX_INTERFACE_NAME_BYTES {
        Err(format!(
            "{name} is {} bytes, longer than the {MAX_INTERFACE_NAME_BYTES} that IFNAMSIZ allows",
            name.len()
        ))
    } else if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        Err(format!(
            "{name:?} is not a valid interface name (no '/', ':' or whitespace; not . or ..)"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::model::{BackendRef, ServicePort, ServiceProtocol};
    use super::super::{parse, ClusterState, StateError};
    use super::*;

    /// The contract example, self-contained so these tests do not move when the file does.
    const BASE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450 }
  - { name: media, vni: 300, cidr: 10.250.0.0/16, gateway: 10.250.0.1, fast_path: true }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups:
  - name: upf
    rules:
      - { direction: ingress, protocol: udp, ports: "2152", remote_group: smf }
      - { direction: egress, protocol: any }
  - name: smf
    rules:
      - { direction: egress, protocol: udp, ports: "2152", remote_group: upf }
pods:
  - name: upf-0
    namespace: telco
    node: node-a
    interfaces:
      - network: std
        host_interface: vupf0s
        ip: 10.244.1.2
        mac: "02:00:0a:f4:01:02"
        security_groups: [upf]
        allowed_address_pairs: [{ ip: 10.244.1.100/32, mac: "02:00:0a:f4:01:64" }]
      - { network: media, host_interface: vupf0m, ip: 10.250.1.2, mac: "02:00:0a:fa:01:02" }
  - name: smf-0
    namespace: telco
    node: node-b
    interfaces:
      - network: std
        host_interface: vsmf0s
        ip: 10.244.2.2
        mac: "02:00:0a:f4:02:02"
        security_groups: [smf]
    labels: { app: smf }
services:
  - { name: sbi, network: std, vip: 10.96.0.1, ports: [{ port: 7777, protocol: tcp }], selector: { app: smf } }
  - { name: smf-all, network: std, vip: 10.244.200.100, all_ports: true, backends: [{ pod: smf-0, namespace: telco }] }
"#;

    fn base() -> ClusterState {
        parse(BASE).unwrap()
    }

    /// Every violation of `state`, as `path: message` lines.
    fn problems(state: &ClusterState) -> Vec<String> {
        match state.validate() {
            Ok(()) => Vec::new(),
            Err(StateError::Invalid(violations)) => {
                violations.iter().map(Violation::to_string).collect()
            }
            Err(other) => panic!("validate returned {other:?}"),
        }
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn mac(text: &str) -> MacAddr {
        text.parse().unwrap()
    }

    /// A copy of upf-0 renamed `name` on `node`, with addresses that clash with nothing.
    fn extra_pod(state: &ClusterState, name: &str, node: &str) -> Pod {
        let mut pod = state.pods[0].clone();
        pod.name = name.to_owned();
        pod.node = node.to_owned();
        for (i, interface) in pod.interfaces.iter_mut().enumerate() {
            let octets = interface.ip.octets();
            interface.ip = Ipv4Addr::new(octets[0], octets[1], 9, 9);
            interface.mac = MacAddr([0x02, 0, 0, 0, 9, i as u8]);
            interface.host_interface = format!("v{name}{i}");
        }
        pod
    }

    #[test]
    fn base_state_is_valid() {
        assert_eq!(problems(&base()), Vec::<String>::new());
    }

    fn network(name: &str, vni: u32, cidr: &str, gateway: &str) -> Network {
        Network {
            name: name.to_owned(),
            vni,
            cidr: cidr.parse().unwrap(),
            gateway: ip(gateway),
            mtu: None,
            fast_path: false,
            datapath_given: None,
        }
    }

    // Networks.

    #[test]
    fn duplicate_network_name() {
        let mut state = base();
        let extra = network("std", 101, "10.246.0.0/16", "10.246.0.1");
        state.networks.push(extra);
        assert_eq!(
            problems(&state),
            ["networks[2].name: duplicate network name std (first at networks[0])"]
        );
    }

    #[test]
    fn duplicate_vni() {
        let mut state = base();
        state.networks[1].vni = 100;
        assert_eq!(
            problems(&state),
            ["networks[1].vni: duplicate VNI 100 (already used by network std)"]
        );
    }

    #[test]
    fn vni_zero_is_reserved() {
        let mut state = base();
        state.networks[1].vni = 0;
        assert_eq!(problems(&state), ["networks[1].vni: VNI 0 is reserved"]);
    }

    #[test]
    fn vni_beyond_24_bits() {
        let mut state = base();
        state.networks[1].vni = 1 << 24;
        assert_eq!(
            problems(&state),
            ["networks[1].vni: VNI 16777216 does not fit in 24 bits (max 16777215)"]
        );
        state.networks[1].vni = (1 << 24) - 1;
        assert_eq!(problems(&state), Vec::<String>::new());
    }

    #[test]
    fn cidr_with_host_bits() {
        let mut state = base();
        state.networks[1].cidr = "10.250.1.0/16".parse().unwrap();
        assert_eq!(
            problems(&state),
            ["networks[1].cidr: 10.250.1.0/16 has host bits set; did you mean 10.250.0.0/16?"]
        );
    }

    #[test]
    fn gateway_outside_cidr() {
        let mut state = base();
        state.networks[0].gateway = ip("10.245.0.1");
        assert_eq!(
            problems(&state),
            ["networks[0].gateway: 10.245.0.1 is outside 10.244.0.0/16"]
        );
    }

    #[test]
    fn gateway_is_the_network_address() {
        let mut state = base();
        state.networks[0].gateway = ip("10.244.0.0");
        assert_eq!(
            problems(&state),
            ["networks[0].gateway: 10.244.0.0 is the network address of 10.244.0.0/16"]
        );
    }

    #[test]
    fn gateway_is_the_broadcast_address() {
        let mut state = base();
        state.networks[0].gateway = ip("10.244.255.255");
        assert_eq!(
            problems(&state),
            ["networks[0].gateway: 10.244.255.255 is the broadcast address of 10.244.0.0/16"]
        );
    }

    #[test]
    fn conntrack_settings_out_of_range() {
        let mut state = base();
        state.conntrack.max_entries = 10;
        state.conntrack.udp = 0;
        assert_eq!(
            problems(&state),
            vec![
                "conntrack.max_entries: 10 is outside 1024..=16777216".to_string(),
                "conntrack.udp: 0 s is outside 1..=31536000 s".to_string(),
            ]
        );
    }

    #[test]
    fn mtu_outside_bounds() {
        let mut state = base();
        state.networks[0].mtu = Some(575);
        state.networks[1].mtu = Some(9001);
        assert_eq!(
            problems(&state),
            [
                "networks[0].mtu: 575 is outside 576..=9000",
                "networks[1].mtu: 9001 is outside 576..=9000",
            ]
        );
        state.networks[0].mtu = Some(576);
        state.networks[1].mtu = Some(9000);
        assert_eq!(problems(&state), Vec::<String>::new());
    }

    #[test]
    fn datapath_defaults_and_fast_path_exclusion() {
        let mut state = base();
        assert_eq!(state.networks[0].datapath(), Datapath::Tc);
        state.networks[0].fast_path = true;
        assert_eq!(state.networks[0].datapath(), Datapath::Xdp);
        state.networks[0].datapath_given = Some(Datapath::Xdp);
        assert_eq!(problems(&state), Vec::<String>::new());
        state.networks[0].datapath_given = Some(Datapath::Tc);
        assert_eq!(
            problems(&state),
            [
                "networks[0].datapath: tc is not possible with fast_path: true (the AF_XDP \
              forwarder is fed by XDP at the pods' veths); leave it out or write xdp"
            ]
        );
        state.networks[0].fast_path = false;
        assert_eq!(problems(&state), Vec::<String>::new());
        assert_eq!(state.networks[0].datapath(), Datapath::Tc);
    }

    // Nodes.

    #[test]
    fn duplicate_node_name() {
        let mut state = base();
        let mut extra = state.nodes[0].clone();
        extra.underlay_ip = ip("192.168.77.3");
        state.nodes.push(extra);
        assert_eq!(
            problems(&state),
            ["nodes[2].name: duplicate node name node-a (first at nodes[0])"]
        );
    }

    #[test]
    fn duplicate_underlay_ip() {
        let mut state = base();
        state.nodes[1].underlay_ip = ip("192.168.77.1");
        assert_eq!(
            problems(&state),
            ["nodes[1].underlay_ip: 192.168.77.1 is already used by node node-a (nodes[0])"]
        );
    }

    #[test]
    fn underlay_interface_name_too_long() {
        let mut state = base();
        state.nodes[1].underlay_interface = "enp0s31f6-uplink".to_owned();
        assert_eq!(
            problems(&state),
            [
                "nodes[1].underlay_interface: enp0s31f6-uplink is 16 bytes, longer than the 15 \
                 that IFNAMSIZ allows"
            ]
        );
    }

    #[test]
    fn pod_ranges_are_checked_per_network() {
        let mut state = base();
        let range = |text: &str| text.parse::<Ipv4Net>().unwrap();
        state.nodes[0].pod_ranges = [
            ("std".to_owned(), range("10.244.1.0/24")),
            ("media".to_owned(), range("10.250.1.0/24")),
        ]
        .into();
        state.nodes[1].pod_ranges = [
            ("std".to_owned(), range("10.244.2.0/24")),
            // The same block on another network is fine: planes are isolated.
            ("media".to_owned(), range("10.250.2.0/24")),
        ]
        .into();
        assert_eq!(problems(&state), Vec::<String>::new());

        state.nodes[1].pod_ranges = [
            ("std".to_owned(), range("10.244.0.0/20")),
            ("media".to_owned(), range("10.251.0.0/24")),
            ("control".to_owned(), range("10.252.0.0/24")),
        ]
        .into();
        state.nodes[0].pod_ranges = [("std".to_owned(), range("10.244.1.1/24"))].into();
        assert_eq!(
            problems(&state),
            [
                "nodes[0].pod_ranges.std: 10.244.1.1/24 has host bits set; did you mean \
                 10.244.1.0/24?",
                "nodes[1].pod_ranges.control: unknown network control",
                "nodes[1].pod_ranges.media: 10.251.0.0/24 is outside network media \
                 (10.250.0.0/16)",
                "nodes[1].pod_ranges.std: 10.244.0.0/20 holds the gateway 10.244.0.1 of network \
                 std",
            ]
        );
        state.nodes[0].pod_ranges = [("std".to_owned(), range("10.244.1.0/24"))].into();
        state.nodes[1].pod_ranges = [("std".to_owned(), range("10.244.1.128/25"))].into();
        assert_eq!(
            problems(&state),
            [
                "nodes[1].pod_ranges.std: 10.244.1.128/25 overlaps nodes[0].pod_ranges.std \
              (10.244.1.0/24)"
            ]
        );
    }

    // Security groups.

    #[test]
    fn duplicate_security_group_name() {
        let mut state = base();
        let extra = state.security_groups[0].clone();
        state.security_groups.push(extra);
        assert_eq!(
            problems(&state),
            [
                "security_groups[2].name: duplicate security group name upf \
              (first at security_groups[0])"
            ]
        );
    }

    #[test]
    fn rule_naming_unknown_remote_group() {
        let mut state = base();
        state.security_groups[1].rules[0].remote_group = Some("amf".to_owned());
        assert_eq!(
            problems(&state),
            ["security_groups[1].rules[0].remote_group: unknown security group amf"]
        );
    }

    #[test]
    fn rule_with_both_remote_group_and_remote_cidr() {
        let mut state = base();
        state.security_groups[1].rules[0].remote_cidr = Some("10.0.0.0/8".parse().unwrap());
        assert_eq!(
            problems(&state),
            [
                "security_groups[1].rules[0]: has remote_group and remote_cidr; set at most one \
                 of remote_group, remote_cidr and remote_service"
            ]
        );
    }

    #[test]
    fn rule_naming_a_service_as_its_remote_side() {
        let mut state = base();
        state.security_groups[0].rules[0].remote_group = None;
        state.security_groups[0].rules[0].remote_service = Some("sbi".to_owned());
        assert_eq!(problems(&state), Vec::<String>::new());
        state.security_groups[0].rules[0].remote_service = Some("amf".to_owned());
        assert_eq!(
            problems(&state),
            ["security_groups[0].rules[0].remote_service: no service named amf"]
        );
    }

    #[test]
    fn rule_with_more_than_one_remote_side() {
        let mut state = base();
        state.security_groups[1].rules[0].remote_service = Some("sbi".to_owned());
        state.security_groups[0].rules[1].remote_cidr = Some("10.0.0.0/8".parse().unwrap());
        state.security_groups[0].rules[1].remote_service = Some("sbi".to_owned());
        state.security_groups[0].rules[0].remote_cidr = Some("10.0.0.0/8".parse().unwrap());
        state.security_groups[0].rules[0].remote_service = Some("sbi".to_owned());
        assert_eq!(
            problems(&state),
            [
                "security_groups[0].rules[0]: has remote_group, remote_cidr and remote_service; \
                 set at most one of remote_group, remote_cidr and remote_service",
                "security_groups[0].rules[1]: has remote_cidr and remote_service; set at most \
                 one of remote_group, remote_cidr and remote_service",
                "security_groups[1].rules[0]: has remote_group and remote_service; set at most \
                 one of remote_group, remote_cidr and remote_service",
            ]
        );
    }

    #[test]
    fn ports_on_icmp_rule() {
        let mut state = base();
        state.security_groups[0].rules[0].protocol = Protocol::Icmp;
        assert_eq!(
            problems(&state),
            [
                "security_groups[0].rules[0].ports: ports are only allowed with protocol tcp or \
              udp, not icmp"
            ]
        );
    }

    #[test]
    fn ports_on_any_rule() {
        let mut state = base();
        state.security_groups[0].rules[1].ports = Some("53".parse().unwrap());
        assert_eq!(
            problems(&state),
            [
                "security_groups[0].rules[1].ports: ports are only allowed with protocol tcp or \
              udp, not any"
            ]
        );
    }

    // Pods.

    #[test]
    fn duplicate_pod_in_one_namespace() {
        let mut state = base();
        let extra = extra_pod(&state, "upf-0", "node-a");
        state.pods.push(extra);
        assert_eq!(
            problems(&state),
            ["pods[2].name: duplicate pod telco/upf-0 (first at pods[0])"]
        );
    }

    #[test]
    fn same_pod_name_in_two_namespaces_is_allowed() {
        let mut state = base();
        let mut extra = extra_pod(&state, "upf-0", "node-a");
        extra.namespace = "default".to_owned();
        state.pods.push(extra);
        assert_eq!(problems(&state), Vec::<String>::new());
    }

    #[test]
    fn pod_on_unknown_node() {
        let mut state = base();
        state.pods[1].node = "node-c".to_owned();
        assert_eq!(problems(&state), ["pods[1].node: unknown node node-c"]);
    }

    #[test]
    fn interface_on_unknown_network() {
        let mut state = base();
        state.pods[0].interfaces[1].network = "signalling".to_owned();
        assert_eq!(
            problems(&state),
            ["pods[0].interfaces[1].network: unknown network signalling"]
        );
    }

    #[test]
    fn two_interfaces_on_one_network() {
        let mut state = base();
        state.pods[0].interfaces[1].network = "std".to_owned();
        state.pods[0].interfaces[1].ip = ip("10.244.1.3");
        assert_eq!(
            problems(&state),
            ["pods[0].interfaces[1].network: pod telco/upf-0 already has an interface on network \
              std (interfaces[0])"]
        );
    }

    #[test]
    fn ip_outside_its_network() {
        let mut state = base();
        state.pods[1].interfaces[0].ip = ip("10.9.0.5");
        assert_eq!(
            problems(&state),
            ["pods[1].interfaces[0].ip: 10.9.0.5 is outside network std (10.244.0.0/16)"]
        );
    }

    #[test]
    fn ip_is_the_network_address() {
        let mut state = base();
        state.pods[1].interfaces[0].ip = ip("10.244.0.0");
        assert_eq!(
            problems(&state),
            [
                "pods[1].interfaces[0].ip: 10.244.0.0 is the network address of network std \
              (10.244.0.0/16)"
            ]
        );
    }

    #[test]
    fn ip_is_the_broadcast_address() {
        let mut state = base();
        state.pods[1].interfaces[0].ip = ip("10.244.255.255");
        assert_eq!(
            problems(&state),
            [
                "pods[1].interfaces[0].ip: 10.244.255.255 is the broadcast address of network std \
              (10.244.0.0/16)"
            ]
        );
    }

    #[test]
    fn ip_is_the_gateway() {
        let mut state = base();
        state.pods[1].interfaces[0].ip = ip("10.244.0.1");
        assert_eq!(
            problems(&state),
            ["pods[1].interfaces[0].ip: 10.244.0.1 is the gateway of network std"]
        );
    }

    #[test]
    fn duplicate_ip_on_one_network() {
        let mut state = base();
        state.pods[1].interfaces[0].ip = ip("10.244.1.2");
        assert_eq!(
            problems(&state),
            [
                "pods[1].interfaces[0].ip: 10.244.1.2 is already used on network std by \
              telco/upf-0 (pods[0].interfaces[0])"
            ]
        );
    }

    #[test]
    fn same_ip_and_mac_on_two_networks_are_allowed() {
        let mut state = base();
        // media gets std's address space; upf-0 takes smf-0's std IP and MAC on it.
        state.networks[1].cidr = "10.244.0.0/16".parse().unwrap();
        state.networks[1].gateway = ip("10.244.0.1");
        state.pods[0].interfaces[1].ip = ip("10.244.2.2");
        state.pods[0].interfaces[1].mac = mac("02:00:0a:f4:02:02");
        assert_eq!(problems(&state), Vec::<String>::new());
    }

    #[test]
    fn duplicate_mac_on_one_network() {
        let mut state = base();
        state.pods[1].interfaces[0].mac = mac("02:00:0a:f4:01:02");
        assert_eq!(
            problems(&state),
            [
                "pods[1].interfaces[0].mac: 02:00:0a:f4:01:02 is already used on network std by \
              telco/upf-0 (pods[0].interfaces[0])"
            ]
        );
    }

    #[test]
    fn multicast_mac() {
        let mut state = base();
        state.pods[1].interfaces[0].mac = mac("01:00:5e:00:00:01");
        assert_eq!(
            problems(&state),
            [
                "pods[1].interfaces[0].mac: 01:00:5e:00:00:01 is a multicast address (low bit of \
              the first octet set)"
            ]
        );
    }

    #[test]
    fn broadcast_mac() {
        let mut state = base();
        state.pods[1].interfaces[0].mac = mac("ff:ff:ff:ff:ff:ff");
        assert_eq!(
            problems(&state),
            ["pods[1].interfaces[0].mac: ff:ff:ff:ff:ff:ff is the broadcast address"]
        );
    }

    #[test]
    fn all_zero_mac() {
        let mut state = base();
        state.pods[1].interfaces[0].mac = mac("00:00:00:00:00:00");
        assert_eq!(
            problems(&state),
            ["pods[1].interfaces[0].mac: 00:00:00:00:00:00 is the all-zero address"]
        );
    }

    #[test]
    fn allowed_address_pair_with_multicast_mac() {
        let mut state = base();
        state.pods[0].interfaces[0].allowed_address_pairs[0].mac = Some(mac("33:33:00:00:00:01"));
        assert_eq!(
            problems(&state),
            [
                "pods[0].interfaces[0].allowed_address_pairs[0].mac: 33:33:00:00:00:01 is a \
              multicast address (low bit of the first octet set)"
            ]
        );
    }

    #[test]
    fn allowed_address_pair_outside_the_network_is_allowed() {
        let mut state = base();
        state.pods[0].interfaces[0].allowed_address_pairs[0].ip = "192.0.2.0/24".parse().unwrap();
        assert_eq!(problems(&state), Vec::<String>::new());
    }

    #[test]
    fn interface_naming_unknown_security_group() {
        let mut state = base();
        state.pods[0].interfaces[0]
            .security_groups
            .push("amf".to_owned());
        assert_eq!(
            problems(&state),
            ["pods[0].interfaces[0].security_groups[1]: unknown security group amf"]
        );
    }

    #[test]
    fn host_interface_name_too_long() {
        let mut state = base();
        state.pods[1].interfaces[0].host_interface = "vsmf0-standard0".to_owned();
        assert_eq!(problems(&state), Vec::<String>::new(), "15 bytes fit");
        state.pods[1].interfaces[0].host_interface = "vsmf0-standard00".to_owned();
        assert_eq!(
            problems(&state),
            [
                "pods[1].interfaces[0].host_interface: vsmf0-standard00 is 16 bytes, longer than \
              the 15 that IFNAMSIZ allows"
            ]
        );
    }

    #[test]
    fn host_interface_name_with_forbidden_characters() {
        let mut state = base();
        state.pods[1].interfaces[0].host_interface = "vsmf/0".to_owned();
        assert_eq!(
            problems(&state),
            [
                "pods[1].interfaces[0].host_interface: \"vsmf/0\" is not a valid interface name \
              (no '/', ':' or whitespace; not . or ..)"
            ]
        );
    }

    #[test]
    fn host_interface_names_the_kernel_refuses() {
        for name in [".", "..", "vsmf:0", "vsmf 0", "vsmf\t0"] {
            let mut state = base();
            state.pods[1].interfaces[0].host_interface = name.to_owned();
            assert_eq!(
                problems(&state),
                [format!(
                    "pods[1].interfaces[0].host_interface: {name:?} is not a valid interface \
                     name (no '/', ':' or whitespace; not . or ..)"
                )],
                "{name:?}"
            );
        }
        // Dots are fine elsewhere.
        let mut state = base();
        state.pods[1].interfaces[0].host_interface = "vsmf.0".to_owned();
        assert_eq!(problems(&state), Vec::<String>::new());
    }

    #[test]
    fn host_interface_name_empty() {
        let mut state = base();
        state.pods[1].interfaces[0].host_interface = String::new();
        assert_eq!(
            problems(&state),
            ["pods[1].interfaces[0].host_interface: interface name is empty"]
        );
    }

    #[test]
    fn host_interface_duplicated_on_one_node() {
        let mut state = base();
        let mut extra = extra_pod(&state, "upf-1", "node-a");
        extra.interfaces[1].host_interface = "vupf0s".to_owned();
        state.pods.push(extra);
        assert_eq!(
            problems(&state),
            [
                "pods[2].interfaces[1].host_interface: vupf0s is already used on node node-a by \
              telco/upf-0 (pods[0].interfaces[0])"
            ]
        );
    }

    #[test]
    fn same_host_interface_on_two_nodes_is_allowed() {
        let mut state = base();
        state.pods[1].interfaces[0].host_interface = "vupf0s".to_owned();
        assert_eq!(problems(&state), Vec::<String>::new());
    }

    #[test]
    fn host_interface_is_the_underlay_interface() {
        let mut state = base();
        state.pods[1].interfaces[0].host_interface = "eth0".to_owned();
        assert_eq!(
            problems(&state),
            ["pods[1].interfaces[0].host_interface: eth0 is the underlay interface of node node-b"]
        );
    }

    #[test]
    fn every_violation_is_reported_in_document_order() {
        let mut state = base();
        state.networks[1].vni = 0;
        state.nodes[1].underlay_ip = ip("192.168.77.1");
        state.pods[1].node = "node-c".to_owned();
        state.pods[1].interfaces[0].ip = ip("10.9.0.5");
        state.pods[0].interfaces[1].mac = mac("ff:ff:ff:ff:ff:ff");
        assert_eq!(
            problems(&state),
            [
                "networks[1].vni: VNI 0 is reserved",
                "nodes[1].underlay_ip: 192.168.77.1 is already used by node node-a (nodes[0])",
                "pods[0].interfaces[1].mac: ff:ff:ff:ff:ff:ff is the broadcast address",
                "pods[1].node: unknown node node-c",
                "pods[1].interfaces[0].ip: 10.9.0.5 is outside network std (10.244.0.0/16)",
            ]
        );
    }

    // Services.

    #[test]
    fn duplicate_service_name() {
        let mut state = base();
        state.services[1].name = "sbi".to_owned();
        assert_eq!(
            problems(&state),
            ["services[1].name: duplicate service name sbi (first at services[0])"]
        );
    }

    #[test]
    fn service_on_unknown_network() {
        let mut state = base();
        state.services[0].network = "signalling".to_owned();
        assert_eq!(
            problems(&state),
            ["services[0].network: unknown network signalling"]
        );
    }

    #[test]
    fn vip_that_no_service_may_have() {
        for (vip, problem) in [
            ("0.0.0.0", "0.0.0.0 is the unspecified address"),
            (
                "255.255.255.255",
                "255.255.255.255 is the broadcast address",
            ),
            (
                "239.1.2.3",
                "239.1.2.3 is a multicast address (224.0.0.0/4)",
            ),
            (
                "127.0.0.53",
                "127.0.0.53 is a loopback address (127.0.0.0/8), which a pod never sends out",
            ),
            (
                "10.244.0.0",
                "10.244.0.0 is the network address of network std (10.244.0.0/16)",
            ),
            (
                "10.244.255.255",
                "10.244.255.255 is the broadcast address of network std (10.244.0.0/16)",
            ),
            ("10.244.0.1", "10.244.0.1 is the gateway of network std"),
        ] {
            let mut state = base();
            state.services[0].vip = ip(vip);
            assert_eq!(
                problems(&state),
                [format!("services[0].vip: {problem}")],
                "{vip}"
            );
        }
    }

    #[test]
    fn vip_inside_or_outside_the_network() {
        let mut state = base();
        state.services[0].vip = ip("10.244.0.10");
        assert_eq!(problems(&state), Vec::<String>::new());
        // Another network's gateway is only an address outside std.
        state.services[0].vip = ip("10.250.0.1");
        assert_eq!(problems(&state), Vec::<String>::new());
    }

    #[test]
    fn vip_is_a_pod_address() {
        let mut state = base();
        state.services[0].vip = ip("10.244.2.2");
        assert_eq!(
            problems(&state),
            ["services[0].vip: 10.244.2.2 is the address of telco/smf-0 (pods[1].interfaces[0]) \
              on network std"]
        );
        // The same address on another network is free.
        state.services[0].network = "media".to_owned();
        state.services[0].selector = None;
        state.services[0].backends = Some(Vec::new());
        assert_eq!(problems(&state), Vec::<String>::new());
    }

    #[test]
    fn vip_in_a_nodes_pod_range() {
        let mut state = base();
        state.nodes[1].pod_ranges = [("std".to_owned(), "10.244.2.0/24".parse().unwrap())].into();
        state.services[0].vip = ip("10.244.2.200");
        assert_eq!(
            problems(&state),
            [
                "services[0].vip: 10.244.2.200 lies in node node-b's pod range 10.244.2.0/24 \
              (nodes[1].pod_ranges.std), from which the CNI plugin gives pods their addresses"
            ]
        );
        state.services[0].vip = ip("10.244.3.200");
        assert_eq!(problems(&state), Vec::<String>::new());
    }

    #[test]
    fn vip_shared_by_two_services() {
        let mut state = base();
        state.services[1].vip = ip("10.96.0.1");
        assert_eq!(
            problems(&state),
            [
                "services[1].vip: 10.96.0.1 is already the VIP of service sbi (services[0]) on \
              network std"
            ]
        );
        state.services[1].network = "media".to_owned();
        state.services[1].backends = Some(Vec::new());
        assert_eq!(
            problems(&state),
            Vec::<String>::new(),
            "planes are isolated"
        );
    }

    #[test]
    fn ports_or_all_ports() {
        let mut state = base();
        state.services[0].all_ports = true;
        state.services[1].all_ports = false;
        assert_eq!(
            problems(&state),
            [
                "services[0]: has both ports and all_ports: true; set one",
                "services[1]: has neither ports nor all_ports: true; set one",
            ]
        );
        state.services[0].all_ports = false;
        state.services[0].ports = Some(Vec::new());
        state.services[1].all_ports = true;
        assert_eq!(
            problems(&state),
            [
                "services[0].ports: is empty; list at least one port, or write all_ports: true \
                 instead"
            ]
        );
    }

    #[test]
    fn port_numbers_and_duplicates() {
        let mut state = base();
        let ports = state.services[0].ports.as_mut().unwrap();
        let first = ports[0];
        let udp = ServicePort {
            protocol: ServiceProtocol::Udp,
            ..first
        };
        let zero = ServicePort {
            port: 0,
            target_port_given: Some(0),
            ..udp
        };
        ports.extend([udp, first, zero]);
        assert_eq!(
            problems(&state),
            [
                "services[0].ports[2]: 7777/tcp is already listed (ports[0])",
                "services[0].ports[3].port: 0 is not a port (ports are 1 to 65535)",
                "services[0].ports[3].target_port: 0 is not a port (ports are 1 to 65535)",
            ]
        );
    }

    #[test]
    fn selector_or_backends() {
        let mut state = base();
        state.services[0].backends = Some(Vec::new());
        state.services[1].backends = None;
        assert_eq!(
            problems(&state),
            [
                "services[0]: has both selector and backends; set one",
                "services[1]: has neither selector nor backends; set one",
            ]
        );
        state.services[0].backends = None;
        state.services[0].selector = Some(BTreeMap::new());
        state.services[1].backends = Some(Vec::new());
        assert_eq!(
            problems(&state),
            ["services[0].selector: is empty; a selector names at least one label"]
        );
    }

    #[test]
    fn listed_backends_are_pods_on_the_network_listed_once() {
        let mut state = base();
        let backend = |namespace: &str, pod: &str| BackendRef {
            pod: pod.to_owned(),
            namespace: namespace.to_owned(),
        };
        state.services[1].network = "media".to_owned();
        state.services[1].backends = Some(vec![
            backend("telco", "upf-0"),
            backend("default", "upf-0"),
            backend("telco", "smf-0"),
            backend("telco", "upf-0"),
        ]);
        assert_eq!(
            problems(&state),
            [
                "services[1].backends[1]: unknown pod default/upf-0",
                "services[1].backends[2]: pod telco/smf-0 has no interface on network media",
                "services[1].backends[3]: telco/upf-0 is already listed (backends[0])",
            ]
        );
    }

    #[test]
    fn affinity_timeout_needs_client_ip_and_a_range() {
        let mut state = base();
        state.services[0].affinity_timeout_given = Some(60);
        assert_eq!(
            problems(&state),
            [
                "services[0].affinity_timeout_seconds: is only allowed with session_affinity: \
              client_ip"
            ]
        );
        state.services[0].session_affinity = SessionAffinity::ClientIp;
        assert_eq!(problems(&state), Vec::<String>::new());
        for seconds in [0, 86_401] {
            state.services[0].affinity_timeout_given = Some(seconds);
            assert_eq!(
                problems(&state),
                [format!(
                    "services[0].affinity_timeout_seconds: {seconds} s is outside 1..=86400 s"
                )]
            );
        }
        state.services[0].affinity_timeout_given = Some(86_400);
        assert_eq!(problems(&state), Vec::<String>::new());
    }
}
