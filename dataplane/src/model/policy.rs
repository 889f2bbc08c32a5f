//! Security-group rules: whether a connection's first packet may pass, on this node, and which
//! rules let it (docs/security-groups.md, "Rules" and "Where rules are enforced").
//!
//! Owns: rule matching and the egress-then-ingress check of one connection. It knows nothing
//! of conntrack: [`super::node`] calls [`check`] for first packets and for the re-check of a
//! stale entry, always with the connection in its *original* direction.
//!
//! Written as linear scans over the interface's groups and their rules, in the order the
//! topology lists them: this is the obviously-correct form the compiled lookups of the XDP
//! programs are tested against. When several rules allow a connection, the one named is the
//! first in that order (the interface's groups as listed, then rule index).
//!
//! Panic contract: nothing here panics.

use std::net::Ipv4Addr;

use ctpath_common::DropReason;

use super::topology::{Direction, LocalPort, Remote, Rule, Topology};

/// A stable name of a rule: its group and its index in the group's rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId {
    pub group: String,
    pub index: usize,
}

/// A connection in its original direction: what rules are matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    pub vni: u32,
    pub protocol: u8,
    pub initiator: Ipv4Addr,
    pub responder: Ipv4Addr,
    /// The destination port of the first packet, for TCP and UDP.
    pub dst_port: Option<u16>,
}

/// The rules that allowed a connection on this node: `None` where that side is not a
/// filtered interface of this node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RuleHits {
    pub egress: Option<RuleId>,
    pub ingress: Option<RuleId>,
}

/// An allowed connection: the rules that allowed it, and whether it is tracked (at least one
/// side is a filtered interface of this node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub rules: RuleHits,
    pub tracked: bool,
}

impl Rule {
    /// Whether this rule allows `connection` for an interface in direction `direction`, the
    /// other end being `remote` (the responder for egress, the initiator for ingress).
    pub fn allows(
        &self,
        topology: &Topology,
        direction: Direction,
        connection: &Connection,
        remote: Ipv4Addr,
    ) -> bool {
        self.direction == direction
            && self
                .protocol
                .matches(connection.protocol, connection.dst_port)
            && match &self.remote {
                Remote::Anywhere => true,
                Remote::Cidr(prefix) => prefix.contains(remote),
                Remote::Group(group) => topology.is_member(group, connection.vni, remote),
                Remote::Service { vni, members } => {
                    connection.vni == *vni && members.contains(&remote)
                }
            }
    }
}

/// The first rule of `port`'s groups that allows `connection` in `direction`. A group the
/// topology does not define has no rules.
pub fn allowing_rule(
    topology: &Topology,
    port: &LocalPort,
    direction: Direction,
    connection: &Connection,
) -> Option<RuleId> {
    let remote = match direction {
        Direction::Egress => connection.responder,
        Direction::Ingress => connection.initiator,
    };
    port.security_groups.iter().find_map(|name| {
        let group = topology.group(name)?;
        group
            .rules
            .iter()
            .position(|rule| rule.allows(topology, direction, connection, remote))
            .map(|index| RuleId {
                group: name.clone(),
                index,
            })
    })
}

/// Checks `connection` on this node: an egress rule of the initiator's interface if it is
/// here (`initiator`) and filtered, then an ingress rule of the responder's (`responder`).
pub fn check(
    topology: &Topology,
    connection: &Connection,
    initiator: Option<&LocalPort>,
    responder: Option<&LocalPort>,
) -> Result<Decision, DropReason> {
    let mut rules = RuleHits::default();
    if let Some(port) = filtered(initiator) {
        rules.egress = Some(
            allowing_rule(topology, port, Direction::Egress, connection)
                .ok_or(DropReason::PolicyDeniedEgress)?,
        );
    }
    if let Some(port) = filtered(responder) {
        rules.ingress = Some(
            allowing_rule(topology, port, Direction::Ingress, connection)
                .ok_or(DropReason::PolicyDeniedIngress)?,
        );
    }
    Ok(Decision {
        rules,
        tracked: filtered(initiator).is_some() || filtered(responder).is_some(),
    })
}

fn filtered(port: Option<&LocalPort>) -> Option<&LocalPort> {
    port.filter(|port| port.is_filtered())
}
