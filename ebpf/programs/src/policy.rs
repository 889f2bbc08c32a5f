//! Security-group rules, compiled (docs/security-groups.md, "Rules", "Where rules are
//! enforced"). The agent turns every interface's groups into a *policy* (one per distinct set
//! of groups) and every address named by a rule into an *identity*; a rule becomes `POLICY`
//! entries keyed by (policy, remote identity, direction, protocol, destination-port prefix).
//! Deciding a connection is a fixed number of lookups whatever the number of rules: the
//! remote's identity, then at most four policy lookups (that identity or anywhere, that
//! protocol or any).

use ctpath_common::{
    maps::{direction, PolicyRuleKey, IDENTITY_ANY, NO_POLICY, NO_RULE, PROTOCOL_ANY},
    DropReason,
};

use crate::maps;

/// One connection's first packet as the rules see it.
pub struct Connection {
    pub vni: u32,
    pub protocol: u8,
    pub initiator: [u8; 4],
    pub responder: [u8; 4],
    /// Destination port of the initiator's packets (0 for protocols without ports).
    pub port: u16,
}

/// The rules that allow a connection: the initiator's egress rule and the responder's ingress
/// rule ([`NO_RULE`] for a side that is not filtered here).
#[derive(Clone, Copy)]
pub struct Verdict {
    pub egress_rule: u32,
    pub ingress_rule: u32,
}

/// Whether `connection` is allowed by the initiator's policy (egress) and the responder's
/// policy (ingress), each [`NO_POLICY`] when that side is not filtered on this node.
#[inline(always)]
pub fn decide(
    connection: &Connection,
    initiator_policy: u32,
    responder_policy: u32,
) -> Result<Verdict, DropReason> {
    let egress_rule = if initiator_policy == NO_POLICY {
        NO_RULE
    } else {
        let remote = maps::identity(connection.vni, connection.responder);
        allowing_rule(initiator_policy, direction::EGRESS, remote, connection)
            .ok_or(DropReason::PolicyDeniedEgress)?
    };
    let ingress_rule = if responder_policy == NO_POLICY {
        NO_RULE
    } else {
        let remote = maps::identity(connection.vni, connection.initiator);
        allowing_rule(responder_policy, direction::INGRESS, remote, connection)
            .ok_or(DropReason::PolicyDeniedIngress)?
    };
    Ok(Verdict {
        egress_rule,
        ingress_rule,
    })
}

/// The rule of `policy` allowing `connection` in `direction` from or to `identity`, if any.
#[inline(always)]
fn allowing_rule(
    policy: u32,
    direction: u8,
    identity: u32,
    connection: &Connection,
) -> Option<u32> {
    let port = connection.port.to_be_bytes();
    let key = |identity, protocol| PolicyRuleKey {
        policy,
        identity,
        direction,
        protocol,
        port,
    };
    maps::policy_rule(key(identity, connection.protocol))
        .or_else(|| maps::policy_rule(key(identity, PROTOCOL_ANY)))
        .or_else(|| maps::policy_rule(key(IDENTITY_ANY, connection.protocol)))
        .or_else(|| maps::policy_rule(key(IDENTITY_ANY, PROTOCOL_ANY)))
}
