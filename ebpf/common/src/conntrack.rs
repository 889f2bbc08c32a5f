//! Connection tracking (docs/security-groups.md, "Connection tracking"): what makes the
//! security groups stateful, written once for the XDP programs and the AF_XDP forwarder.
//!
//! Owns: [`admit`], the whole per-packet decision (lookup, expiry, generation re-check in the
//! original direction, insert, RELATED ICMP errors), and the state machine ([`first_state`],
//! [`advance`]). It runs over two small traits: [`PolicyTables`] for the rules and
//! [`CtTable`] for the table: in the programs the `CONNTRACK` BPF hash (entries updated in
//! place through the lookup's pointer, `BPF_NOEXIST`/`BPF_ANY` inserts), in the forwarder its
//! local table backed by that same map. Packet bytes are the caller's: it hands over a
//! [`Packet`] summary and, for an ICMP error, the key of the connection the error quotes.
//!
//! A packet of a live connection whose entry carries the current policy generation passes
//! without looking at a rule; a stale entry is checked again in its original direction; the
//! first packet of a connection is decided by [`decide`] and, if allowed, gets an entry. ICMP
//! errors about a tracked connection are related and pass.
//!
//! The table is a plain hash (not LRU): when it is full a new connection is dropped and counted
//! (`conntrack_full`) and no established connection is ever evicted. Expired entries are
//! treated as absent, overwritten in place when their key comes back, and removed by a
//! collector.
//!
//! Every function is `#[inline(always)]`: the verifier sees one straight program (the generic
//! version verifies as the hand-written one did).
//!
//! Panic contract: nothing here panics.

use crate::{
    maps::{ct_state, CtEntry, CtKey, NodeConfig, NO_POLICY},
    policy::{decide, Allowed, Connection, PolicyTables},
    wire::{
        ICMP_DEST_UNREACHABLE, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, IPPROTO_ICMP,
        IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
    },
    DropReason,
};

/// `bpf_map_update_elem` flags the table is written with, by the programs and by the
/// forwarder's mirror of the same map: create or replace.
pub const BPF_ANY: u64 = 0;
/// Create only; fails with [`EEXIST`] if the key has an entry.
pub const BPF_NOEXIST: u64 = 1;
/// The errno of a `BPF_NOEXIST` update that found an entry.
pub const EEXIST: i32 = 17;

/// Why an insert did not store the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// A new entry (not `replace`) found one there: another CPU or path made it meanwhile.
    Exists,
    /// No free slot.
    Full,
}

/// What a packet did to an entry it was allowed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Only `last_seen_ns` moved.
    Refreshed,
    /// The state, the rules or the generation changed too.
    Changed,
}

/// The conntrack table, as [`admit`] uses it.
pub trait CtTable {
    /// CLOCK_MONOTONIC now, in nanoseconds (`bpf_ktime_get_ns`), read once per tracked packet.
    fn now_ns(&self) -> u64;
    /// The entry of `key`, expired or not; changes through the reference are the table's.
    fn entry(&mut self, key: &CtKey) -> Option<&mut CtEntry>;
    /// Stores a new entry: over an expired one if `replace`, else only where there is none
    /// (`BPF_NOEXIST`).
    fn insert(&mut self, key: &CtKey, entry: &CtEntry, replace: bool) -> Result<(), InsertError>;
    fn remove(&mut self, key: &CtKey);
    /// The entry of `key` was just changed through [`CtTable::entry`].
    fn written(&mut self, key: &CtKey, change: Change);
}

/// An IPv4 packet as conntrack sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub vni: u32,
    pub protocol: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// The ports of the connection key: TCP/UDP ports, the identifier twice for ICMP echo,
    /// 0/0 otherwise.
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags; 0 for other protocols.
    pub tcp_flags: u8,
    /// ICMP type; 0 for other protocols.
    pub icmp_type: u8,
}

impl Packet {
    /// The connection this packet would start: from its sender to its destination port.
    #[inline(always)]
    pub fn connection(&self) -> Connection {
        Connection {
            vni: self.vni,
            protocol: self.protocol,
            initiator: self.src,
            responder: self.dst,
            port: self.dst_port,
        }
    }

    /// The connection its receiver would start: the reply direction's original.
    #[inline(always)]
    pub fn reversed_connection(&self) -> Connection {
        Connection {
            initiator: self.dst,
            responder: self.src,
            port: self.src_port,
            ..self.connection()
        }
    }

    /// Whether this is an ICMP error that may be related to a tracked connection: the caller
    /// then passes the key of the quoted connection to [`admit`].
    #[inline(always)]
    pub fn is_icmp_error(&self) -> bool {
        self.protocol == IPPROTO_ICMP && is_icmp_error(self.icmp_type)
    }
}

/// Whether an ICMP message of type `icmp_type` is an error (destination unreachable, time
/// exceeded, parameter problem), whatever its code.
#[inline(always)]
pub fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
    )
}

/// Admits or drops `packet`, sent by a pod whose policy on this node is `sender_policy` to one
/// whose policy is `receiver_policy` ([`NO_POLICY`]: not filtered here, or not on this node).
/// `quoted`: for an ICMP error ([`Packet::is_icmp_error`]), the key of the connection its quote
/// belongs to, if the quote is one and goes back to its sender. Returns the rules the packet
/// counts towards.
#[inline(always)]
pub fn admit<T: CtTable, P: PolicyTables>(
    table: &mut T,
    rules: &P,
    node: &NodeConfig,
    packet: &Packet,
    quoted: Option<CtKey>,
    sender_policy: u32,
    receiver_policy: u32,
) -> Result<Allowed, DropReason> {
    if sender_policy == NO_POLICY && receiver_policy == NO_POLICY {
        return Ok(Allowed::UNFILTERED);
    }
    let now = table.now_ns();

    if packet.is_icmp_error() {
        if let Some(key) = quoted {
            if is_live(table, &key, node, now) {
                return Ok(Allowed::UNFILTERED);
            }
        }
        // Checked as a first packet of protocol icmp (which it is), without a port.
        let connection = Connection {
            port: 0,
            ..packet.connection()
        };
        return decide(rules, &connection, sender_policy, receiver_policy);
    }

    let (key, sender_side) = crate::flow::ct_key(
        packet.vni,
        packet.protocol,
        packet.src,
        packet.dst,
        packet.src_port,
        packet.dst_port,
    );
    let mut replace_expired = false;
    if let Some(entry) = table.entry(&key) {
        if node.ct_timeouts.is_expired(packet.protocol, entry, now) {
            replace_expired = true;
        } else {
            let stale = entry.generation != node.policy_generation;
            if !stale
                || revalidate(
                    rules,
                    entry,
                    node,
                    packet,
                    sender_side,
                    sender_policy,
                    receiver_policy,
                )
            {
                let state = entry.state;
                advance(
                    entry,
                    packet.protocol,
                    packet.tcp_flags,
                    sender_side != entry.origin,
                );
                entry.last_seen_ns = now;
                let allowed = Allowed {
                    egress_rule: entry.egress_rule,
                    ingress_rule: entry.ingress_rule,
                };
                let change = if stale || entry.state != state {
                    Change::Changed
                } else {
                    Change::Refreshed
                };
                table.written(&key, change);
                return Ok(allowed);
            }
            // No longer allowed: the connection is over; this packet starts a new one.
            table.remove(&key);
        }
    }

    let allowed = decide(rules, &packet.connection(), sender_policy, receiver_policy)?;
    let entry = CtEntry {
        last_seen_ns: now,
        generation: node.policy_generation,
        egress_rule: allowed.egress_rule,
        ingress_rule: allowed.ingress_rule,
        state: first_state(packet.protocol, packet.tcp_flags),
        origin: sender_side,
        _pad: [0; 2],
    };
    match table.insert(&key, &entry, replace_expired) {
        // Exists: another CPU (or path) created it in the meantime: the connection is tracked.
        Ok(()) | Err(InsertError::Exists) => Ok(allowed),
        Err(InsertError::Full) => Err(DropReason::ConntrackFull),
    }
}

/// Checks a stale entry's connection again, in its original direction, against the current
/// rules; on success the entry takes the current generation and the rules now allowing it.
#[inline(always)]
fn revalidate<P: PolicyTables>(
    rules: &P,
    entry: &mut CtEntry,
    node: &NodeConfig,
    packet: &Packet,
    sender_side: u8,
    sender_policy: u32,
    receiver_policy: u32,
) -> bool {
    let (connection, initiator_policy, responder_policy) = if sender_side == entry.origin {
        (packet.connection(), sender_policy, receiver_policy)
    } else {
        (packet.reversed_connection(), receiver_policy, sender_policy)
    };
    match decide(rules, &connection, initiator_policy, responder_policy) {
        Ok(allowed) => {
            entry.generation = node.policy_generation;
            entry.egress_rule = allowed.egress_rule;
            entry.ingress_rule = allowed.ingress_rule;
            true
        }
        Err(_) => false,
    }
}

/// Whether `key` has an entry that has not expired at `now`.
#[inline(always)]
fn is_live<T: CtTable>(table: &mut T, key: &CtKey, node: &NodeConfig, now: u64) -> bool {
    match table.entry(key) {
        Some(entry) => !node.ct_timeouts.is_expired(key.protocol, entry, now),
        None => false,
    }
}

/// The state of a new entry, from its first packet.
#[inline(always)]
pub fn first_state(protocol: u8, tcp_flags: u8) -> u8 {
    if protocol != IPPROTO_TCP {
        return ct_state::NEW;
    }
    if tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        ct_state::TCP_CLOSING
    } else if tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        ct_state::TCP_SYN_SENT
    } else {
        ct_state::ESTABLISHED
    }
}

/// Moves an entry's state on for a packet of its connection (`reply`: sent by the responder).
#[inline(always)]
pub fn advance(entry: &mut CtEntry, protocol: u8, tcp_flags: u8, reply: bool) {
    if protocol == IPPROTO_TCP {
        if tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            entry.state = ct_state::TCP_CLOSING;
        } else if entry.state == ct_state::TCP_SYN_SENT && reply {
            entry.state = ct_state::ESTABLISHED;
        }
    } else if entry.state == ct_state::NEW && reply {
        entry.state = ct_state::ESTABLISHED;
    }
}
