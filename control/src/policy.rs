//! The compiler from security groups to the datapath's policy maps (docs/security-groups.md):
//! per node, every distinct set of groups on a filtered local interface becomes a *policy*;
//! every prefix that matters to a rule (member addresses of referenced groups, `remote_cidr`s,
//! the virtual IP and backend addresses of referenced services) gets an *identity* per plane,
//! naming which selectors it matches; every rule becomes `POLICY`
//! LPM entries keyed by (policy, identity, direction, protocol, port prefix). The datapath then
//! decides a connection in a fixed number of lookups, whatever the number of rules.
//!
//! Identities follow longest-prefix semantics: the identity of a prefix is the union of the
//! selectors of every prefix containing it, so the most specific match in the trie carries
//! everything that matches the address.
//!
//! A service named by `remote_service` is compiled as a group whose members are its VIP and
//! its backends' addresses (`ClusterState::service_members`), each a /32 on the service's
//! plane only: an address that is both a backend and a group member gets one identity naming
//! both, so a rule naming a service costs the datapath no extra lookup. Membership is read
//! from the state at each compile: a backend leaving the service leaves its identity, and the
//! new plan's policy generation makes conntrack re-check the connections it had.

use std::collections::{BTreeMap, BTreeSet};

use ctpath_common::maps::{
    direction, PolicyRuleKey, IDENTITY_ANY, MAX_RULES, POLICY_KEY_FIXED_BITS, PROTOCOL_ANY,
};
use ipnet::Ipv4Net;
use thiserror::Error;

use crate::state::{ClusterState, Direction, PortRange, Protocol, RemoteSide, Rule};

/// Something a rule's remote side can name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Selector {
    Group(String),
    Cidr(Ipv4Net),
    Service(String),
}

/// A rule's id: its position among all rules of all groups, in the state's order. It indexes
/// the rule hit counters, which follow a rule to its new id when a new state moves it
/// ([`rule_moves`]).
pub type RuleId = u32;

/// The compiled policy of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledPolicy {
    /// Policy id of each distinct set of groups used by a filtered local interface (ids from 1).
    pub policies: BTreeMap<BTreeSet<String>, u32>,
    /// `IDENTITIES` entries: (VNI, prefix) to identity.
    pub identities: BTreeMap<(u32, Ipv4Net), u32>,
    /// `POLICY` entries: (key, port prefix length) to the allowing rule.
    pub entries: BTreeMap<(PolicyRuleKey, u8), RuleId>,
    /// What each rule id is (indexed by id; [`rule_identity`]), so that its counters can follow
    /// it to another id in the next state.
    pub rules: Vec<RuleIdentity>,
}

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("the state has {count} security-group rules; the datapath counts at most {MAX_RULES}")]
    TooManyRules { count: usize },
}

/// Every rule of every group with its id, in the state's order.
pub fn rule_ids(state: &ClusterState) -> impl Iterator<Item = (RuleId, &str, usize, &Rule)> {
    state
        .security_groups
        .iter()
        .flat_map(|group| {
            group
                .rules
                .iter()
                .enumerate()
                .map(move |(index, rule)| (group.name.as_str(), index, rule))
        })
        .enumerate()
        .map(|(id, (group, index, rule))| (id as RuleId, group, index, rule))
}

/// What a rule is, whatever its position: a hash of its group's name and of what it allows
/// (SipHash with fixed keys: the same in every agent process that compares two plans; two
/// different rules share one with a chance of 2^-64, and would then swap their counts).
pub type RuleIdentity = u64;

pub fn rule_identity(group: &str, rule: &Rule) -> RuleIdentity {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    group.hash(&mut hasher);
    rule.hash(&mut hasher);
    hasher.finish()
}

/// For each rule id of `new` (identities as [`CompiledPolicy::rules`]), the id the same rule
/// has in `old`, if it is there: the n-th rule of an identity in `new` is the n-th of it in
/// `old` (two equal rules of a group are told apart by their order only).
pub fn rule_moves(old: &[RuleIdentity], new: &[RuleIdentity]) -> Vec<Option<RuleId>> {
    let mut by_identity: std::collections::HashMap<
        RuleIdentity,
        std::collections::VecDeque<RuleId>,
    > = std::collections::HashMap::with_capacity(old.len());
    for (id, identity) in old.iter().enumerate() {
        by_identity
            .entry(*identity)
            .or_default()
            .push_back(id as RuleId);
    }
    new.iter()
        .map(|identity| by_identity.get_mut(identity)?.pop_front())
        .collect()
}

/// A rule in one line: `ingress udp 2152 from group smf`.
pub fn describe(rule: &Rule) -> String {
    let direction = match rule.direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    let ports = rule
        .ports
        .map(|ports| format!(" {ports}"))
        .unwrap_or_default();
    let preposition = if rule.direction == Direction::Ingress {
        "from"
    } else {
        "to"
    };
    let remote = match rule.remote() {
        RemoteSide::Group(group) => format!("group {group}"),
        RemoteSide::Cidr(cidr) => cidr.to_string(),
        RemoteSide::Service(service) => format!("service {service}"),
        RemoteSide::Anywhere => "anywhere".to_owned(),
    };
    format!(
        "{direction} {}{ports} {preposition} {remote}",
        rule.protocol.as_str()
    )
}

/// Compiles the policy of node `node`.
pub fn compile(state: &ClusterState, node: &str) -> Result<CompiledPolicy, PolicyError> {
    let count = rule_ids(state).count();
    if count > MAX_RULES as usize {
        return Err(PolicyError::TooManyRules { count });
    }
    let mut compiled = CompiledPolicy {
        rules: rule_ids(state)
            .map(|(_, group, _, rule)| rule_identity(group, rule))
            .collect(),
        ..CompiledPolicy::default()
    };
    for (_, interface) in state.interfaces_on_node(node) {
        if interface.port_security && !interface.security_groups.is_empty() {
            let groups: BTreeSet<String> = interface.security_groups.iter().cloned().collect();
            let next = compiled.policies.len() as u32 + 1;
            compiled.policies.entry(groups).or_insert(next);
        }
    }
    // The rules that matter here: those of groups in some local policy.
    let local_groups: BTreeSet<&String> = compiled.policies.keys().flatten().collect();
    let rules: Vec<(RuleId, &str, &Rule)> = rule_ids(state)
        .filter(|(_, group, _, _)| local_groups.contains(&group.to_string()))
        .map(|(id, group, _, rule)| (id, group, rule))
        .collect();
    let selectors: BTreeSet<Selector> = rules
        .iter()
        .filter_map(|(_, _, rule)| selector(rule))
        .collect();

    let identity_selectors = identities(state, &selectors, &mut compiled);
    for (groups, &policy) in &compiled.policies {
        for (rule_id, _, rule) in rules.iter().filter(|(_, group, _)| groups.contains(*group)) {
            let remote: Vec<u32> = match selector(rule) {
                None => vec![IDENTITY_ANY],
                Some(wanted) => identity_selectors
                    .iter()
                    .filter(|(_, selected)| selected.contains(&wanted))
                    .map(|(identity, _)| *identity)
                    .collect(),
            };
            let direction = match rule.direction {
                Direction::Ingress => direction::INGRESS,
                Direction::Egress => direction::EGRESS,
            };
            let (protocol, ports) = match rule.protocol {
                Protocol::Tcp => (6, port_prefixes(rule.ports)),
                Protocol::Udp => (17, port_prefixes(rule.ports)),
                Protocol::Icmp => (1, vec![(0, 0)]),
                Protocol::Any => (PROTOCOL_ANY, vec![(0, 0)]),
            };
            for &identity in &remote {
                for &(port, bits) in &ports {
                    let key = PolicyRuleKey {
                        policy,
                        identity,
                        direction,
                        protocol,
                        port: port.to_be_bytes(),
                    };
                    compiled.entries.entry((key, bits)).or_insert(*rule_id);
                }
            }
        }
    }
    Ok(compiled)
}

fn selector(rule: &Rule) -> Option<Selector> {
    match rule.remote() {
        RemoteSide::Group(group) => Some(Selector::Group(group.to_owned())),
        RemoteSide::Cidr(cidr) => Some(Selector::Cidr(cidr.trunc())),
        RemoteSide::Service(service) => Some(Selector::Service(service.to_owned())),
        RemoteSide::Anywhere => None,
    }
}

/// Fills `compiled.identities` and returns each identity's selectors.
fn identities(
    state: &ClusterState,
    selectors: &BTreeSet<Selector>,
    compiled: &mut CompiledPolicy,
) -> BTreeMap<u32, BTreeSet<Selector>> {
    let cidrs: Vec<Ipv4Net> = selectors
        .iter()
        .filter_map(|s| match s {
            Selector::Cidr(net) => Some(*net),
            Selector::Group(_) | Selector::Service(_) => None,
        })
        .collect();
    let mut by_selectors: BTreeMap<BTreeSet<Selector>, u32> = BTreeMap::new();
    for network in &state.networks {
        // Member prefixes of referenced groups on this plane, with the groups they carry.
        let mut members: Vec<(Ipv4Net, BTreeSet<Selector>)> = Vec::new();
        for pod in &state.pods {
            for interface in pod.interfaces.iter().filter(|i| i.network == network.name) {
                let groups: BTreeSet<Selector> = interface
                    .security_groups
                    .iter()
                    .map(|g| Selector::Group(g.clone()))
                    .filter(|s| selectors.contains(s))
                    .collect();
                if groups.is_empty() {
                    continue;
                }
                let own = Ipv4Net::new(interface.ip, 32).expect("/32");
                members.push((own, groups.clone()));
                for pair in &interface.allowed_address_pairs {
                    members.push((pair.ip.trunc(), groups.clone()));
                }
            }
        }
        // The VIP and backends of referenced services on this plane.
        for service in state.services.iter().filter(|s| s.network == network.name) {
            let named = Selector::Service(service.name.clone());
            if !selectors.contains(&named) {
                continue;
            }
            for address in state.service_members(service) {
                members.push((Ipv4Net::from(address), BTreeSet::from([named.clone()])));
            }
        }
        let prefixes: BTreeSet<Ipv4Net> = members
            .iter()
            .map(|(net, _)| *net)
            .chain(cidrs.iter().copied())
            .collect();
        for prefix in prefixes {
            let mut selected: BTreeSet<Selector> = members
                .iter()
                .filter(|(net, _)| net.contains(&prefix))
                .flat_map(|(_, groups)| groups.iter().cloned())
                .collect();
            selected.extend(
                cidrs
                    .iter()
                    .filter(|c| c.contains(&prefix))
                    .map(|c| Selector::Cidr(*c)),
            );
            let next = by_selectors.len() as u32 + 1;
            let identity = *by_selectors.entry(selected).or_insert(next);
            compiled.identities.insert((network.vni, prefix), identity);
        }
    }
    by_selectors
        .into_iter()
        .map(|(selected, identity)| (identity, selected))
        .collect()
}

/// A port range as (port, prefix length) blocks covering exactly the range; all ports: one
/// block of length 0.
fn port_prefixes(range: Option<PortRange>) -> Vec<(u16, u8)> {
    let Some(range) = range else {
        return vec![(0, 0)];
    };
    let (mut first, last) = (u32::from(range.first()), u32::from(range.last()));
    let mut blocks = Vec::new();
    while first <= last {
        // The largest aligned block starting at `first` that stays inside the range.
        let mut size = 1u32 << first.trailing_zeros().min(16);
        while first + size - 1 > last {
            size >>= 1;
        }
        blocks.push((first as u16, (16 - size.trailing_zeros()) as u8));
        first += size;
    }
    blocks
}

/// The `POLICY` LPM prefix length of an entry whose port prefix is `bits` long.
pub fn policy_prefix_len(bits: u8) -> u32 {
    POLICY_KEY_FIXED_BITS + u32::from(bits)
}

#[cfg(test)]
mod tests {
    use ctpath_common::maps::IDENTITY_WORLD;

    use super::*;

    fn ports(text: &str) -> Vec<(u16, u8)> {
        port_prefixes(Some(text.parse().unwrap()))
    }

    #[test]
    fn rule_moves_follow_identities_in_order() {
        let old = [1, 2, 3, 2];
        // A rule inserted first, one removed, the two equal rules kept in their order.
        let new = [4, 1, 2, 2, 5];
        assert_eq!(
            rule_moves(&old, &new),
            vec![None, Some(0), Some(1), Some(3), None]
        );
        assert_eq!(
            rule_moves(&old, &old),
            vec![Some(0), Some(1), Some(2), Some(3)]
        );
        assert_eq!(rule_moves(&old, &[]), Vec::<Option<RuleId>>::new());
    }

    #[test]
    fn compiled_rules_name_every_rule_by_group_and_content() {
        let state = ClusterState::from_yaml_str(include_str!("../examples/two-node.yaml"))
            .expect("example state");
        let compiled = compile(&state, &state.nodes[0].name).unwrap();
        let expected: Vec<RuleIdentity> = rule_ids(&state)
            .map(|(_, group, _, rule)| rule_identity(group, rule))
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(compiled.rules, expected);
        // The same rule in another group, or another rule in the same group, is another rule.
        let (_, group, _, rule) = rule_ids(&state).next().unwrap();
        assert_ne!(rule_identity(group, rule), rule_identity("other", rule));
        let mut changed = rule.clone();
        changed.ports = Some("1-2".parse().unwrap());
        assert_ne!(rule_identity(group, rule), rule_identity(group, &changed));
    }

    #[test]
    fn port_ranges_become_exact_prefix_blocks() {
        assert_eq!(ports("80"), vec![(80, 16)]);
        assert_eq!(ports("1-65535").len(), 16);
        assert_eq!(ports("7777-7779"), vec![(7777, 16), (7778, 15)]);
        assert_eq!(port_prefixes(None), vec![(0, 0)]);
        // Every block is inside the range and together they cover it exactly.
        for (a, b) in [
            (1u32, 1u32),
            (2, 9),
            (1000, 2000),
            (65000, 65535),
            (3, 65534),
        ] {
            let blocks = ports(&format!("{a}-{b}"));
            let covered: u32 = blocks.iter().map(|&(_, bits)| 1u32 << (16 - bits)).sum();
            assert_eq!(covered, b - a + 1);
            for (start, bits) in blocks {
                let end = u32::from(start) + (1 << (16 - bits)) - 1;
                assert!(u32::from(start) >= a && end <= b);
                assert_eq!(u32::from(start) % (1 << (16 - bits)), 0);
            }
        }
    }

    const STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1 }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups:
  - name: web
    rules:
      - { direction: ingress, protocol: tcp, ports: "80", remote_group: client }
      - { direction: ingress, protocol: icmp, remote_cidr: 10.244.0.0/16 }
      - { direction: egress, protocol: any }
  - name: client
    rules:
      - { direction: egress, protocol: tcp }
pods:
  - name: web-0
    node: node-a
    interfaces:
      - { network: std, host_interface: vweb0, ip: 10.244.1.2, mac: "02:00:00:00:01:02", security_groups: [web] }
  - name: client-0
    node: node-b
    interfaces:
      - network: std
        host_interface: vcli0
        ip: 10.244.2.2
        mac: "02:00:00:00:02:02"
        security_groups: [client]
        allowed_address_pairs: [{ ip: 10.244.9.0/24 }]
  - name: open-0
    node: node-a
    interfaces:
      - { network: std, host_interface: vopen0, ip: 10.244.1.3, mac: "02:00:00:00:01:03", security_groups: [web], port_security: false }
"#;

    #[test]
    fn groups_and_cidrs_become_identities_and_entries() {
        let state = ClusterState::from_yaml_str(STATE).unwrap();
        let compiled = compile(&state, "node-a").unwrap();
        // One filtered interface here (open-0 has port security off).
        assert_eq!(compiled.policies.len(), 1);
        let identity = |ip: &str, len| {
            compiled.identities[&(100, Ipv4Net::new(ip.parse().unwrap(), len).unwrap())]
        };
        // client-0's address and its pair's /24 are members of `client` and inside the /16.
        let client = identity("10.244.2.2", 32);
        let pair = identity("10.244.9.0", 24);
        let cidr = identity("10.244.0.0", 16);
        assert_eq!(client, pair);
        assert_ne!(client, cidr);
        // web-0 is not in a referenced group: it only gets the /16's identity by LPM.
        assert!(!compiled
            .identities
            .contains_key(&(100, "10.244.1.2/32".parse().unwrap())));
        let key = |identity, direction, protocol, port: u16| PolicyRuleKey {
            policy: 1,
            identity,
            direction,
            protocol,
            port: port.to_be_bytes(),
        };
        assert_eq!(
            compiled.entries[&(key(client, direction::INGRESS, 6, 80), 16)],
            0
        );
        // ICMP from the /16: both identities inside it.
        assert_eq!(
            compiled.entries[&(key(client, direction::INGRESS, 1, 0), 0)],
            1
        );
        assert_eq!(
            compiled.entries[&(key(cidr, direction::INGRESS, 1, 0), 0)],
            1
        );
        assert_eq!(
            compiled.entries[&(key(IDENTITY_ANY, direction::EGRESS, PROTOCOL_ANY, 0), 0)],
            2
        );
        // The client group's own rule is not compiled on node-a: no local interface uses it.
        assert_eq!(compiled.entries.len(), 4);
        assert_eq!(
            rule_ids(&state)
                .map(|(id, group, index, _)| (id, group, index))
                .last(),
            Some((3, "client", 0))
        );
    }

    const SERVICE_STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1 }
  - { name: media, vni: 200, cidr: 10.250.0.0/16, gateway: 10.250.0.1 }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups:
  - name: db
    rules:
      - { direction: ingress, protocol: tcp, ports: "5432", remote_service: web }
      - { direction: ingress, protocol: icmp, remote_group: client }
  - name: client
    rules: []
pods:
  - name: db-0
    node: node-a
    interfaces:
      - { network: std, host_interface: vdb0, ip: 10.244.1.9, mac: "02:00:00:00:01:09", security_groups: [db] }
  - name: web-0
    node: node-a
    labels: { app: web }
    interfaces:
      - { network: std, host_interface: vweb0, ip: 10.244.1.2, mac: "02:00:00:00:01:02" }
      - { network: media, host_interface: vweb0m, ip: 10.250.1.2, mac: "02:00:00:00:01:12" }
  - name: web-1
    node: node-b
    labels: { app: web }
    interfaces:
      - { network: std, host_interface: vweb1, ip: 10.244.2.2, mac: "02:00:00:00:02:02", security_groups: [client] }
  - name: other-0
    node: node-b
    interfaces:
      - { network: std, host_interface: voth0, ip: 10.244.2.3, mac: "02:00:00:00:02:03" }
services:
  - { name: web, network: std, vip: 10.96.0.10, ports: [{ port: 80, protocol: tcp, target_port: 8080 }], selector: { app: web } }
"#;

    #[test]
    fn a_service_is_a_group_of_its_vip_and_backends_on_its_plane() {
        let mut state = ClusterState::from_yaml_str(SERVICE_STATE).unwrap();
        let compiled = compile(&state, "node-a").unwrap();
        let identity = |compiled: &CompiledPolicy, vni, ip: &str| {
            compiled
                .identities
                .get(&(
                    vni,
                    Ipv4Net::from(ip.parse::<std::net::Ipv4Addr>().unwrap()),
                ))
                .copied()
        };
        let key = |identity, protocol, port: u16| PolicyRuleKey {
            policy: 1,
            identity,
            direction: direction::INGRESS,
            protocol,
            port: port.to_be_bytes(),
        };
        let vip = identity(&compiled, 100, "10.96.0.10").unwrap();
        let web_0 = identity(&compiled, 100, "10.244.1.2").unwrap();
        let web_1 = identity(&compiled, 100, "10.244.2.2").unwrap();
        // web-1 is also a member of `client`: one identity naming both, the VIP's and web-0's
        // naming the service only.
        assert_eq!(vip, web_0);
        assert_ne!(web_1, web_0);
        for member in [vip, web_1] {
            assert_eq!(compiled.entries[&(key(member, 6, 5432), 16)], 0);
        }
        assert_eq!(compiled.entries[&(key(web_1, 1, 0), 0)], 1);
        assert!(!compiled.entries.contains_key(&(key(vip, 1, 0), 0)));
        // Not a backend, and a backend's address on another plane: no identity.
        assert_eq!(identity(&compiled, 100, "10.244.2.3"), None);
        assert_eq!(identity(&compiled, 200, "10.250.1.2"), None);
        assert_eq!(compiled.identities.len(), 3);
        assert_eq!(
            describe(&state.security_groups[0].rules[0]),
            "ingress tcp 5432 from service web"
        );

        // web-1 leaves the service (its label changes): it keeps its `client` identity only,
        // which the service's rule no longer names; other-0 joins.
        state.pods[2].labels.clear();
        state.pods[3].labels.insert("app".into(), "web".into());
        let compiled = compile(&state, "node-a").unwrap();
        let web_1 = identity(&compiled, 100, "10.244.2.2").unwrap();
        let other_0 = identity(&compiled, 100, "10.244.2.3").unwrap();
        assert_eq!(other_0, identity(&compiled, 100, "10.96.0.10").unwrap());
        assert!(!compiled.entries.contains_key(&(key(web_1, 6, 5432), 16)));
        assert_eq!(compiled.entries[&(key(web_1, 1, 0), 0)], 1);
        assert_eq!(compiled.entries[&(key(other_0, 6, 5432), 16)], 0);
    }

    #[test]
    fn a_service_no_rule_names_makes_no_identities() {
        let mut state = ClusterState::from_yaml_str(SERVICE_STATE).unwrap();
        state.security_groups[0].rules.remove(0);
        let compiled = compile(&state, "node-a").unwrap();
        // web-1 as a member of `client` only.
        assert_eq!(
            compiled.identities.keys().collect::<Vec<_>>(),
            [&(100, "10.244.2.2/32".parse().unwrap())]
        );
    }

    #[test]
    fn only_filtered_interfaces_get_a_policy() {
        let mut state = ClusterState::from_yaml_str(STATE).unwrap();
        let mut open = state.pods[2].clone();
        // Port security on without groups, and port security off with groups of its own: not
        // filtered, no policy either way.
        open.interfaces[0].security_groups.clear();
        open.interfaces[0].port_security = true;
        let mut unchecked = state.pods[2].clone();
        unchecked.interfaces[0].security_groups = vec!["client".into()];
        state.pods.extend([open, unchecked]);
        let compiled = compile(&state, "node-a").unwrap();
        assert_eq!(
            compiled.policies,
            BTreeMap::from([(BTreeSet::from(["web".to_owned()]), 1)])
        );
    }

    #[test]
    fn identities_are_numbered_from_one_clear_of_world_and_any() {
        let state = ClusterState::from_yaml_str(STATE).unwrap();
        let compiled = compile(&state, "node-a").unwrap();
        let used: BTreeSet<u32> = compiled.identities.values().copied().collect();
        // Two selector sets: {client, the /16} and {the /16}. An identity of 0 would be
        // IDENTITY_WORLD, which every address no group names gets.
        assert_eq!(used, BTreeSet::from([1, 2]));
        assert!(!used.contains(&IDENTITY_WORLD) && !used.contains(&IDENTITY_ANY));
    }

    #[test]
    fn the_rule_limit_is_the_datapath_counters() {
        let mut state = ClusterState::from_yaml_str(STATE).unwrap();
        // Filled up in `client`, which node-a does not compile: the count is over all rules.
        let rule = state.security_groups[1].rules[0].clone();
        let others = rule_ids(&state).count();
        state.security_groups[1]
            .rules
            .resize(MAX_RULES as usize - others + 1, rule.clone());
        assert_eq!(rule_ids(&state).count(), MAX_RULES as usize);
        assert!(compile(&state, "node-a").is_ok());
        state.security_groups[1].rules.push(rule);
        assert!(matches!(
            compile(&state, "node-a"),
            Err(PolicyError::TooManyRules { count }) if count == MAX_RULES as usize + 1
        ));
    }

    #[test]
    fn policy_prefix_covers_the_key_up_to_the_port_prefix() {
        let key_bits = 8 * std::mem::size_of::<PolicyRuleKey>() as u32;
        assert_eq!(policy_prefix_len(16), key_bits);
        assert_eq!(policy_prefix_len(0), key_bits - 16);
        assert_eq!(policy_prefix_len(15), key_bits - 1);
    }

    #[test]
    fn the_other_node_compiles_its_own_groups() {
        let state = ClusterState::from_yaml_str(STATE).unwrap();
        let compiled = compile(&state, "node-b").unwrap();
        assert_eq!(compiled.policies.len(), 1);
        // client's only rule: egress TCP anywhere; no identities needed.
        assert!(compiled.identities.is_empty());
        assert_eq!(compiled.entries.len(), 1);
    }
}
