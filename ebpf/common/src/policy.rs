//! Security-group rules, compiled (docs/security-groups.md, "Rules", "Where rules are
//! enforced"), decided the same way by the XDP programs and the AF_XDP forwarder.
//!
//! The agent turns every interface's groups into a *policy* (one per distinct set of groups)
//! and every address named by a rule into an *identity*; a rule becomes `POLICY` entries keyed
//! by (policy, remote identity, direction, protocol, destination-port prefix). Deciding a
//! connection is a fixed number of lookups whatever the number of rules: the remote's
//! identity, then at most four policy lookups (that identity or anywhere, that protocol or
//! any), for the initiator's egress and then the responder's ingress.
//!
//! Owns: that decision, over [`PolicyTables`], the two lookups it needs: the kernel's
//! `IDENTITIES` and `POLICY` LPM tries in the programs, the forwarder's userspace copies of
//! them. Every function is `#[inline(always)]` for the BPF verifier.
//!
//! Panic contract: nothing here panics.

use crate::{
    maps::{direction, PolicyRuleKey, IDENTITY_ANY, NO_POLICY, NO_RULE, PROTOCOL_ANY},
    DropReason,
};

/// The compiled rules, as the decision reads them.
pub trait PolicyTables {
    /// The identity of address `ip` on plane `vni` (`IDENTITY_WORLD` if no group names it).
    fn identity(&self, vni: u32, ip: [u8; 4]) -> u32;
    /// The rule of compiled policy `key.policy` that allows `key` (longest port prefix), if any.
    fn policy_rule(&self, key: PolicyRuleKey) -> Option<u32>;
}

/// One connection's first packet, in its original direction, as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowed {
    pub egress_rule: u32,
    pub ingress_rule: u32,
}

impl Allowed {
    /// Allowed without a rule: neither side filtered, or related to a tracked connection.
    pub const UNFILTERED: Allowed = Allowed {
        egress_rule: NO_RULE,
        ingress_rule: NO_RULE,
    };
}

/// Whether `connection` is allowed by the initiator's policy (egress) and the responder's
/// policy (ingress), each [`NO_POLICY`] when that side is not filtered on this node.
#[inline(always)]
pub fn decide<T: PolicyTables>(
    tables: &T,
    connection: &Connection,
    initiator_policy: u32,
    responder_policy: u32,
) -> Result<Allowed, DropReason> {
    let egress_rule = side_rule(
        tables,
        connection,
        initiator_policy,
        direction::EGRESS,
        connection.responder,
    )
    .ok_or(DropReason::PolicyDeniedEgress)?;
    let ingress_rule = side_rule(
        tables,
        connection,
        responder_policy,
        direction::INGRESS,
        connection.initiator,
    )
    .ok_or(DropReason::PolicyDeniedIngress)?;
    Ok(Allowed {
        egress_rule,
        ingress_rule,
    })
}

/// The rule of one side's `policy` allowing `connection` in `direction`, the other end being
/// `remote`: [`NO_RULE`] for a side that is not filtered, `None` if no rule allows it.
#[inline(always)]
fn side_rule<T: PolicyTables>(
    tables: &T,
    connection: &Connection,
    policy: u32,
    direction: u8,
    remote: [u8; 4],
) -> Option<u32> {
    if policy == NO_POLICY {
        return Some(NO_RULE);
    }
    let identity = tables.identity(connection.vni, remote);
    allowing_rule(tables, policy, direction, identity, connection)
}

/// The rule of `policy` allowing `connection` in `direction` from or to `identity`, if any.
#[inline(always)]
fn allowing_rule<T: PolicyTables>(
    tables: &T,
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
    tables
        .policy_rule(key(identity, connection.protocol))
        .or_else(|| tables.policy_rule(key(identity, PROTOCOL_ANY)))
        .or_else(|| tables.policy_rule(key(IDENTITY_ANY, connection.protocol)))
        .or_else(|| tables.policy_rule(key(IDENTITY_ANY, PROTOCOL_ANY)))
}
