//! Connection tracking (docs/security-groups.md, "Connection tracking"): what makes the
//! security groups stateful. A packet of a live connection whose entry carries the current
//! policy generation passes without looking at a rule; a stale entry is checked again in its
//! original direction; the first packet of a connection is decided by [`policy::decide`] and,
//! if allowed, gets an entry. ICMP errors about a tracked connection are related and pass.
//!
//! The table is a plain hash (not LRU): when it is full a new connection is dropped and counted
//! (`conntrack_full`) and no established connection is ever evicted. Expired entries are
//! treated as absent, overwritten in place when their key comes back, and removed by the
//! agent's collector.

use aya_ebpf::{helpers::generated::bpf_ktime_get_ns, programs::XdpContext};
use ctpath_common::{
    flow::ct_key,
    maps::{ct_state, CtEntry, CtKey, NodeConfig, NO_POLICY, NO_RULE},
    wire::{
        ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_ERROR_QUOTED_PAYLOAD,
        ICMP_HDR_LEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HDR_LEN,
    },
    DropReason,
};

use crate::{
    maps::{CONNTRACK, RULE_HITS},
    packet::{frame_len, header_at, Ipv4Hdr},
    parse::Ipv4Packet,
    policy::{self, Connection, Verdict},
};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;
const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;
const EEXIST: i64 = 17;

/// Admits or drops `packet` on plane `vni`, sent by a pod whose policy on this node is
/// `sender_policy` to one whose policy is `receiver_policy` ([`NO_POLICY`]: not filtered here,
/// or not on this node).
#[inline(always)]
pub fn admit(
    ctx: &XdpContext,
    node: &NodeConfig,
    vni: u32,
    packet: &Ipv4Packet,
    sender_policy: u32,
    receiver_policy: u32,
) -> Result<(), DropReason> {
    if sender_policy == NO_POLICY && receiver_policy == NO_POLICY {
        return Ok(());
    }
    // SAFETY: `bpf_ktime_get_ns` takes no arguments and reads no memory.
    let now = unsafe { bpf_ktime_get_ns() };
    let header = &packet.header;
    let l4 = &packet.l4;
    let bytes = frame_len(ctx);

    if header.protocol == IPPROTO_ICMP && is_icmp_error(l4.icmp_type) {
        if quoted_connection_is_live(ctx, node, vni, packet, now) {
            return Ok(());
        }
        let connection = Connection {
            vni,
            protocol: IPPROTO_ICMP,
            initiator: header.src,
            responder: header.dst,
            port: 0,
        };
        let verdict = policy::decide(&connection, sender_policy, receiver_policy)?;
        count_rules(verdict.egress_rule, verdict.ingress_rule, bytes);
        return Ok(());
    }

    let (key, sender_side) = ct_key(
        vni,
        header.protocol,
        header.src,
        header.dst,
        l4.src_port,
        l4.dst_port,
    );
    let mut replace_expired = false;
    if let Some(entry) = CONNTRACK.get_ptr_mut(key) {
        // SAFETY: a pointer from a successful lookup, valid for this program run. Concurrent
        // updates of the same entry from other CPUs race benignly (last writer wins on
        // timestamps and state), as in the kernel's own conntrack fast path.
        let entry = unsafe { &mut *entry };
        if node.ct_timeouts.is_expired(header.protocol, entry, now) {
            replace_expired = true;
        } else if entry.generation == node.policy_generation
            || revalidate(
                entry,
                node,
                vni,
                packet,
                sender_side,
                sender_policy,
                receiver_policy,
            )
        {
            advance(
                entry,
                header.protocol,
                l4.tcp_flags,
                sender_side != entry.origin,
            );
            entry.last_seen_ns = now;
            count_rules(entry.egress_rule, entry.ingress_rule, bytes);
            return Ok(());
        } else {
            // No longer allowed: the connection is over; this packet starts a new one.
            let _ = CONNTRACK.remove(key);
        }
    }

    let connection = Connection {
        vni,
        protocol: header.protocol,
        initiator: header.src,
        responder: header.dst,
        port: l4.dst_port,
    };
    let Verdict {
        egress_rule,
        ingress_rule,
    } = policy::decide(&connection, sender_policy, receiver_policy)?;
    let entry = CtEntry {
        last_seen_ns: now,
        generation: node.policy_generation,
        egress_rule,
        ingress_rule,
        state: first_state(header.protocol, l4.tcp_flags),
        origin: sender_side,
        _pad: [0; 2],
    };
    let flags = if replace_expired {
        BPF_ANY
    } else {
        BPF_NOEXIST
    };
    match CONNTRACK.insert(key, entry, flags) {
        Ok(()) => {}
        // Another CPU created it in the meantime: the connection is tracked.
        Err(error) if error as i64 == -EEXIST => {}
        Err(_) => return Err(DropReason::ConntrackFull),
    }
    count_rules(egress_rule, ingress_rule, bytes);
    Ok(())
}

/// Checks a stale entry's connection again, in its original direction, against the current
/// rules; on success the entry takes the current generation and the rules now allowing it.
#[inline(always)]
fn revalidate(
    entry: &mut CtEntry,
    node: &NodeConfig,
    vni: u32,
    packet: &Ipv4Packet,
    sender_side: u8,
    sender_policy: u32,
    receiver_policy: u32,
) -> bool {
    let (header, l4) = (&packet.header, &packet.l4);
    let sent_by_initiator = sender_side == entry.origin;
    let (connection, initiator_policy, responder_policy) = if sent_by_initiator {
        let connection = Connection {
            vni,
            protocol: header.protocol,
            initiator: header.src,
            responder: header.dst,
            port: l4.dst_port,
        };
        (connection, sender_policy, receiver_policy)
    } else {
        let connection = Connection {
            vni,
            protocol: header.protocol,
            initiator: header.dst,
            responder: header.src,
            port: l4.src_port,
        };
        (connection, receiver_policy, sender_policy)
    };
    match policy::decide(&connection, initiator_policy, responder_policy) {
        Ok(verdict) => {
            entry.generation = node.policy_generation;
            entry.egress_rule = verdict.egress_rule;
            entry.ingress_rule = verdict.ingress_rule;
            true
        }
        Err(_) => false,
    }
}

/// The state of a new entry, from its first packet.
#[inline(always)]
fn first_state(protocol: u8, tcp_flags: u8) -> u8 {
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
fn advance(entry: &mut CtEntry, protocol: u8, tcp_flags: u8, reply: bool) {
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

#[inline(always)]
fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
    )
}

/// Whether the ICMP error `packet` quotes a packet of a connection with a live entry.
#[inline(always)]
fn quoted_connection_is_live(
    ctx: &XdpContext,
    node: &NodeConfig,
    vni: u32,
    packet: &Ipv4Packet,
    now: u64,
) -> bool {
    // Masked to its real range (at most 50 + 14 + 60 bytes): read back from the stack, the
    // offset has lost the bounds the verifier needs for packet access.
    let quoted_at = (packet.l4_offset & 0xff) + ICMP_HDR_LEN;
    let Some(quoted) = header_at::<Ipv4Hdr>(ctx, quoted_at) else {
        return false;
    };
    let quoted_len = quoted.ihl() as usize * 4;
    // An error goes to the sender of the packet it quotes (Linux requires as much); the quote
    // is an IPv4 header and 8 bytes, all within the error's own IPv4 packet.
    let error_len = packet.header.total_len() as usize - packet.header_len;
    if quoted.version() != 4
        || quoted_len < IPV4_MIN_HDR_LEN
        || ICMP_HDR_LEN + quoted_len + ICMP_ERROR_QUOTED_PAYLOAD > error_len
        || quoted.src != packet.header.dst
    {
        return false;
    }
    // The first 4 bytes after the quoted header: ports, or ICMP type/code/checksum.
    let Some(l4) = header_at::<[u8; 8]>(ctx, quoted_at + quoted_len) else {
        return false;
    };
    let (src_port, dst_port) = match quoted.protocol {
        IPPROTO_TCP | IPPROTO_UDP => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        IPPROTO_ICMP if l4[0] == ICMP_ECHO_REQUEST || l4[0] == ICMP_ECHO_REPLY => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            (id, id)
        }
        _ => (0, 0),
    };
    let (key, _) = ct_key(
        vni,
        quoted.protocol,
        quoted.src,
        quoted.dst,
        src_port,
        dst_port,
    );
    live_entry(&key, node, now)
}

#[inline(always)]
fn live_entry(key: &CtKey, node: &NodeConfig, now: u64) -> bool {
    match CONNTRACK.get_ptr(*key) {
        // SAFETY: a pointer from a successful lookup, valid for this program run.
        Some(entry) => !node
            .ct_timeouts
            .is_expired(key.protocol, unsafe { &*entry }, now),
        None => false,
    }
}

/// Counts a packet of `bytes` towards the rules that allowed its connection.
#[inline(always)]
fn count_rules(egress_rule: u32, ingress_rule: u32, bytes: u64) {
    for rule in [egress_rule, ingress_rule] {
        if rule == NO_RULE {
            continue;
        }
        if let Some(tally) = RULE_HITS.get_ptr_mut(rule) {
            // SAFETY: this CPU's slot of a per-CPU array, valid for the whole program run.
            unsafe {
                (*tally).packets += 1;
                (*tally).bytes += bytes;
            }
        }
    }
}
