//! Connection tracking (docs/security-groups.md, "Connection tracking"): the key of a packet's
//! connection, the entry kept for it, the state machine, idle expiry, the key of the connection
//! an ICMP error quotes, and the table with its fixed capacity.
//!
//! Owns: what a key and an entry *mean*. Which entry a packet creates, refreshes, re-checks or
//! deletes is the pipeline's ([`super::node`]), which combines this module with
//! [`super::policy`]. Plain Rust types, not the map types; [`CtKey`], [`CtState`] and [`Side`]
//! convert to and from `ctpath_common::maps` so a test compares them with the kernel's table.
//!
//! Where the spec is silent, this module decides (and the datapath must agree):
//! - **Expiry boundary.** An entry is expired once `now - last_seen >= timeout` of its current
//!   state: a packet exactly one timeout after the last finds it expired, as in Linux
//!   (`nf_ct_is_expired`: the deadline has come). A clock that went backwards
//!   (`now < last_seen`) counts as no time elapsed.
//! - **States of protocols other than TCP.** UDP, ICMP and every other protocol: `New` on the
//!   first packet, `Established` after a packet in the reply direction. Timeouts by protocol
//!   only: `udp`, `icmp` (every ICMP message, not just echo), `other`.
//! - **TCP.** A FIN or RST, in either direction and also on a first packet, makes the state
//!   `Closing`, and nothing leaves `Closing`; otherwise a first packet with SYN and without ACK
//!   makes `SynSent`, any other first packet `Established`, and a reply-direction packet moves
//!   `SynSent` to `Established`.
//! - **Both ends equal** (same address and port): the originator is [`Side::Lo`] and every
//!   packet goes in the original direction.
//! - **ICMP errors** are types 3, 11 and 12, whatever their code. The quote must hold an IPv4
//!   header (version 4, IHL at least 5) and 8 bytes after it, inside the ICMP message (the
//!   IPv4 total length bounds it: Ethernet padding is not quoted); its total length and
//!   fragment fields are not looked at. Ports come from the quoted 8 bytes as for a packet
//!   (TCP/UDP ports; the identifier of a quoted echo; 0/0 otherwise). The error must go to the
//!   quoted packet's sender, as Linux requires (`nf_conntrack_inet_error`: "outer daddr !=
//!   inner"): otherwise any pod could reach a filtered one with errors quoting some third
//!   party's live connection.
//! - **Full** counts every entry the table holds, expired ones included: like the kernel's
//!   hash map, an expired entry keeps its slot until its key comes back (it is then overwritten
//!   in place) or the agent's collector removes it ([`Table::collect_expired`]).
//!
//! Panic contract: nothing here panics.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ctpath_common::maps::{self, ct_origin, ct_state, CtTimeouts};
use ctpath_common::wire::{
    ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_ERROR_QUOTED_PAYLOAD,
    IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HDR_LEN,
};

use super::classify::L4;
use super::policy::{Connection, RuleId};
use crate::wire::tcp::Flags;
use crate::wire::{icmp, ipv4, read_u16};

pub use ctpath_common::wire::{ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED};

const NS_PER_SEC: u64 = 1_000_000_000;

/// One connection, both directions: `(ip_lo, port_lo) <= (ip_hi, port_hi)`, ordered by the
/// address bytes, then the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    pub vni: u32,
    pub protocol: u8,
    pub ip_lo: Ipv4Addr,
    pub ip_hi: Ipv4Addr,
    pub port_lo: u16,
    pub port_hi: u16,
}

/// A side of a [`CtKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Lo,
    Hi,
}

/// A connection's state; which ones a protocol uses is in the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CtState {
    /// Not TCP, no reply seen yet.
    New,
    /// TCP: the first packet was a SYN without ACK, no reply seen yet.
    SynSent,
    /// TCP picked up or answered; others: a reply seen.
    Established,
    /// TCP: a FIN or RST was seen.
    Closing,
}

/// The entry of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtEntry {
    pub state: CtState,
    /// The side that sent the first packet.
    pub originator: Side,
    pub last_seen_ns: u64,
    /// The policy generation the connection was last checked against.
    pub generation: u32,
    /// The rules that allowed the connection (`None`: that side is not a filtered interface of
    /// this node).
    pub egress_rule: Option<RuleId>,
    pub ingress_rule: Option<RuleId>,
}

impl CtKey {
    /// The key of a packet from `src` to `dst` (address, port) and the side of the key the
    /// sender is on.
    pub fn of_packet(
        vni: u32,
        protocol: u8,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
    ) -> (CtKey, Side) {
        let (lo, hi, side) = if src <= dst {
            (src, dst, Side::Lo)
        } else {
            (dst, src, Side::Hi)
        };
        let key = CtKey {
            vni,
            protocol,
            ip_lo: lo.0,
            ip_hi: hi.0,
            port_lo: lo.1,
            port_hi: hi.1,
        };
        (key, side)
    }

    /// Address and port of one side.
    pub fn side(&self, side: Side) -> (Ipv4Addr, u16) {
        match side {
            Side::Lo => (self.ip_lo, self.port_lo),
            Side::Hi => (self.ip_hi, self.port_hi),
        }
    }

    /// The connection in its original direction, the originator being `originator`.
    pub fn connection(&self, originator: Side) -> Connection {
        let (initiator, _) = self.side(originator);
        let (responder, responder_port) = self.side(originator.other());
        Connection {
            vni: self.vni,
            protocol: self.protocol,
            initiator,
            responder,
            dst_port: has_ports(self.protocol).then_some(responder_port),
        }
    }
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }

    /// `ct_origin::LO` or `ct_origin::HI`.
    pub fn code(self) -> u8 {
        match self {
            Side::Lo => ct_origin::LO,
            Side::Hi => ct_origin::HI,
        }
    }

    pub fn from_code(code: u8) -> Option<Side> {
        match code {
            ct_origin::LO => Some(Side::Lo),
            ct_origin::HI => Some(Side::Hi),
            _ => None,
        }
    }
}

impl CtState {
    /// The state after a packet. `current`: the live entry's state, `None` for a first packet;
    /// `l4`: the packet's transport header; `is_reply`: the packet goes from the responder to
    /// the originator.
    pub fn after(current: Option<CtState>, l4: &L4, is_reply: bool) -> CtState {
        match *l4 {
            L4::Tcp { flags, .. } => {
                if flags.contains(Flags::FIN) || flags.contains(Flags::RST) {
                    return CtState::Closing;
                }
                match current {
                    None if flags.contains(Flags::SYN) && !flags.contains(Flags::ACK) => {
                        CtState::SynSent
                    }
                    None => CtState::Established,
                    Some(CtState::SynSent) if !is_reply => CtState::SynSent,
                    Some(CtState::Closing) => CtState::Closing,
                    Some(_) => CtState::Established,
                }
            }
            _ => match current {
                None => CtState::New,
                Some(CtState::New) if !is_reply => CtState::New,
                Some(_) => CtState::Established,
            },
        }
    }

    /// Idle timeout in nanoseconds of a connection of IP protocol `protocol` in this state.
    pub fn timeout_ns(self, protocol: u8, timeouts: &CtTimeouts) -> u64 {
        let seconds = match (protocol, self) {
            (IPPROTO_TCP, CtState::New | CtState::SynSent) => timeouts.tcp_syn,
            (IPPROTO_TCP, CtState::Established) => timeouts.tcp_established,
            (IPPROTO_TCP, CtState::Closing) => timeouts.tcp_closing,
            (IPPROTO_UDP, _) => timeouts.udp,
            (IPPROTO_ICMP, _) => timeouts.icmp,
            _ => timeouts.other,
        };
        u64::from(seconds) * NS_PER_SEC
    }

    /// The `ct_state` code of the kernel's entries.
    pub fn code(self) -> u8 {
        match self {
            CtState::New => ct_state::NEW,
            CtState::SynSent => ct_state::TCP_SYN_SENT,
            CtState::Established => ct_state::ESTABLISHED,
            CtState::Closing => ct_state::TCP_CLOSING,
        }
    }

    pub fn from_code(code: u8) -> Option<CtState> {
        match code {
            ct_state::NEW => Some(CtState::New),
            ct_state::TCP_SYN_SENT => Some(CtState::SynSent),
            ct_state::ESTABLISHED => Some(CtState::Established),
            ct_state::TCP_CLOSING => Some(CtState::Closing),
            _ => None,
        }
    }
}

impl CtEntry {
    /// Whether the entry of a connection of IP protocol `protocol` has expired at `now_ns`.
    pub fn is_expired(&self, protocol: u8, timeouts: &CtTimeouts, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.last_seen_ns) >= self.state.timeout_ns(protocol, timeouts)
    }
}

impl From<CtKey> for maps::CtKey {
    fn from(key: CtKey) -> maps::CtKey {
        maps::CtKey {
            vni: key.vni,
            ip_lo: key.ip_lo.octets(),
            ip_hi: key.ip_hi.octets(),
            port_lo: key.port_lo,
            port_hi: key.port_hi,
            protocol: key.protocol,
            _pad: [0; 3],
        }
    }
}

impl From<maps::CtKey> for CtKey {
    fn from(key: maps::CtKey) -> CtKey {
        CtKey {
            vni: key.vni,
            protocol: key.protocol,
            ip_lo: key.ip_lo.into(),
            ip_hi: key.ip_hi.into(),
            port_lo: key.port_lo,
            port_hi: key.port_hi,
        }
    }
}

/// Whether connections of IP protocol `protocol` have ports that rules match.
pub fn has_ports(protocol: u8) -> bool {
    matches!(protocol, IPPROTO_TCP | IPPROTO_UDP)
}

/// The ports of a packet in its connection key: TCP and UDP ports, the identifier twice for
/// ICMP echo, 0/0 otherwise.
pub fn key_ports(l4: &L4) -> (u16, u16) {
    match *l4 {
        L4::Tcp {
            src_port, dst_port, ..
        }
        | L4::Udp { src_port, dst_port } => (src_port, dst_port),
        L4::Icmp {
            echo_id: Some(id), ..
        } => (id, id),
        L4::Icmp { echo_id: None, .. } | L4::Other => (0, 0),
    }
}

/// Whether an ICMP message of type `icmp_type` is an error that may be related to a
/// connection.
pub fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
    )
}

/// The key of the connection whose packet the ICMP error `message` (the whole ICMP message,
/// header first), sent to `to` on plane `vni`, quotes; `None` if the quote is not an IPv4
/// header and 8 bytes, or if the quoted packet was not sent by `to`.
pub fn quoted_key(vni: u32, message: &[u8], to: Ipv4Addr) -> Option<CtKey> {
    let quoted = quoted(message, to)?;
    Some(CtKey::of_packet(vni, quoted.protocol, quoted.src, quoted.dst).0)
}

/// The packet an ICMP error quotes, as its connection is keyed: protocol, and source and
/// destination with their ports (TCP/UDP ports, an echo's identifier twice, 0/0 otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedPacket {
    pub protocol: u8,
    pub src: (Ipv4Addr, u16),
    pub dst: (Ipv4Addr, u16),
}

/// The packet the ICMP error `message` (the whole ICMP message, header first), sent to `to`,
/// quotes; `None` if the quote is not an IPv4 header and 8 bytes, or if the quoted packet was
/// not sent by `to`.
pub fn quoted(message: &[u8], to: Ipv4Addr) -> Option<QuotedPacket> {
    let quote = message.get(icmp::field::DATA)?;
    if quote.len() < IPV4_MIN_HDR_LEN {
        return None;
    }
    let header = ipv4::Packet::new_unchecked(quote);
    let header_len = header.header_len();
    if header.version() != 4 || header_len < IPV4_MIN_HDR_LEN {
        return None;
    }
    if header.src_addr() != to {
        return None;
    }
    let l4 = quote.get(header_len..header_len + ICMP_ERROR_QUOTED_PAYLOAD)?;
    let protocol = header.protocol();
    let (src_port, dst_port) = match protocol {
        IPPROTO_TCP | IPPROTO_UDP => (read_u16(&l4[0..2]), read_u16(&l4[2..4])),
        IPPROTO_ICMP if matches!(l4[0], ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) => {
            let id = read_u16(&l4[icmp::field::ECHO_IDENT]);
            (id, id)
        }
        _ => (0, 0),
    };
    Some(QuotedPacket {
        protocol,
        src: (header.src_addr(), src_port),
        dst: (header.dst_addr(), dst_port),
    })
}

/// The table: every entry it holds, live or expired, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    entries: BTreeMap<CtKey, CtEntry>,
}

impl Table {
    pub fn iter(&self) -> impl Iterator<Item = (&CtKey, &CtEntry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `key` if it has not expired.
    pub fn live_mut(
        &mut self,
        key: &CtKey,
        timeouts: &CtTimeouts,
        now_ns: u64,
    ) -> Option<&mut CtEntry> {
        self.entries
            .get_mut(key)
            .filter(|entry| !entry.is_expired(key.protocol, timeouts, now_ns))
    }

    pub fn is_live(&self, key: &CtKey, timeouts: &CtTimeouts, now_ns: u64) -> bool {
        self.entries
            .get(key)
            .is_some_and(|entry| !entry.is_expired(key.protocol, timeouts, now_ns))
    }

    /// Stores `entry` under `key`: in place if the key has an entry (an expired one: live ones
    /// are never replaced this way), in a free slot otherwise. `false`: no free slot among
    /// `max_entries`, nothing stored.
    pub fn insert(&mut self, key: CtKey, entry: CtEntry, max_entries: u32) -> bool {
        let full = u64::try_from(self.entries.len()).unwrap_or(u64::MAX) >= u64::from(max_entries);
        if full && !self.entries.contains_key(&key) {
            return false;
        }
        self.entries.insert(key, entry);
        true
    }

    pub fn remove(&mut self, key: &CtKey) -> Option<CtEntry> {
        self.entries.remove(key)
    }

    /// Removes every entry expired at `now_ns`, as the agent's collector does; returns how many.
    pub fn collect_expired(&mut self, timeouts: &CtTimeouts, now_ns: u64) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|key, entry| !entry.is_expired(key.protocol, timeouts, now_ns));
        before - self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FrameBuilder;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn tcp(flags: Flags) -> L4 {
        L4::Tcp {
            src_port: 1,
            dst_port: 2,
            flags,
        }
    }

    #[test]
    fn keys_are_ordered_by_address_then_port() {
        let (forward, sender) = CtKey::of_packet(7, IPPROTO_TCP, (B, 80), (A, 40000));
        let (reverse, replier) = CtKey::of_packet(7, IPPROTO_TCP, (A, 40000), (B, 80));
        assert_eq!(forward, reverse);
        assert_eq!((sender, replier), (Side::Hi, Side::Lo));
        assert_eq!(forward.side(Side::Lo), (A, 40000));
        // Same address: the ports decide; both ends equal: the sender is Lo.
        let (key, side) = CtKey::of_packet(7, IPPROTO_UDP, (A, 9), (A, 8));
        assert_eq!((key.port_lo, key.port_hi, side), (8, 9, Side::Hi));
        assert_eq!(CtKey::of_packet(7, IPPROTO_UDP, (A, 9), (A, 9)).1, Side::Lo);
        // Addresses compare by bytes, not by their low byte.
        let (key, _) = CtKey::of_packet(
            1,
            IPPROTO_UDP,
            (Ipv4Addr::new(10, 0, 1, 1), 1),
            (Ipv4Addr::new(10, 0, 0, 200), 1),
        );
        assert_eq!(key.ip_lo, Ipv4Addr::new(10, 0, 0, 200));
    }

    #[test]
    fn the_original_direction_comes_back_from_the_key() {
        let (key, side) = CtKey::of_packet(7, IPPROTO_TCP, (B, 40000), (A, 443));
        let connection = key.connection(side);
        assert_eq!(
            (
                connection.initiator,
                connection.responder,
                connection.dst_port
            ),
            (B, A, Some(443))
        );
        let (key, side) = CtKey::of_packet(7, IPPROTO_ICMP, (B, 5), (A, 5));
        assert_eq!(key.connection(side).dst_port, None);
    }

    #[test]
    fn tcp_states() {
        use CtState::*;
        let syn = tcp(Flags::SYN);
        let syn_ack = tcp(Flags::SYN | Flags::ACK);
        let ack = tcp(Flags::ACK);
        assert_eq!(CtState::after(None, &syn, false), SynSent);
        assert_eq!(CtState::after(None, &ack, false), Established);
        assert_eq!(CtState::after(None, &syn_ack, false), Established);
        assert_eq!(CtState::after(Some(SynSent), &syn, false), SynSent);
        assert_eq!(CtState::after(Some(SynSent), &ack, false), SynSent);
        assert_eq!(CtState::after(Some(SynSent), &syn_ack, true), Established);
        assert_eq!(CtState::after(Some(Established), &ack, false), Established);
        for closing in [Flags::FIN | Flags::ACK, Flags::RST, Flags::RST | Flags::ACK] {
            for current in [None, Some(SynSent), Some(Established), Some(Closing)] {
                for reply in [false, true] {
                    assert_eq!(CtState::after(current, &tcp(closing), reply), Closing);
                }
            }
        }
        assert_eq!(CtState::after(Some(Closing), &ack, true), Closing);
        assert_eq!(CtState::after(Some(Closing), &syn, false), Closing);
    }

    #[test]
    fn other_protocols_are_established_by_a_reply() {
        for l4 in [
            L4::Udp {
                src_port: 1,
                dst_port: 2,
            },
            L4::Icmp {
                icmp_type: 8,
                code: 0,
                echo_id: Some(1),
            },
            L4::Other,
        ] {
            assert_eq!(CtState::after(None, &l4, false), CtState::New);
            assert_eq!(CtState::after(Some(CtState::New), &l4, false), CtState::New);
            assert_eq!(
                CtState::after(Some(CtState::New), &l4, true),
                CtState::Established
            );
            assert_eq!(
                CtState::after(Some(CtState::Established), &l4, false),
                CtState::Established
            );
        }
    }

    #[test]
    fn timeouts_by_protocol_and_state() {
        let t = CtTimeouts {
            tcp_syn: 1,
            tcp_established: 2,
            tcp_closing: 3,
            udp: 4,
            icmp: 5,
            other: 6,
        };
        let s = |n: u64| n * NS_PER_SEC;
        assert_eq!(CtState::SynSent.timeout_ns(IPPROTO_TCP, &t), s(1));
        assert_eq!(CtState::Established.timeout_ns(IPPROTO_TCP, &t), s(2));
        assert_eq!(CtState::Closing.timeout_ns(IPPROTO_TCP, &t), s(3));
        assert_eq!(CtState::New.timeout_ns(IPPROTO_UDP, &t), s(4));
        assert_eq!(CtState::Established.timeout_ns(IPPROTO_UDP, &t), s(4));
        assert_eq!(CtState::New.timeout_ns(IPPROTO_ICMP, &t), s(5));
        assert_eq!(CtState::Established.timeout_ns(47, &t), s(6));
        let entry = CtEntry {
            state: CtState::New,
            originator: Side::Lo,
            last_seen_ns: s(10),
            generation: 1,
            egress_rule: None,
            ingress_rule: None,
        };
        assert!(!entry.is_expired(IPPROTO_UDP, &t, s(14) - 1));
        assert!(entry.is_expired(IPPROTO_UDP, &t, s(14)));
        assert!(
            !entry.is_expired(IPPROTO_UDP, &t, 0),
            "clock went backwards"
        );
    }

    #[test]
    fn codes_round_trip() {
        use CtState::*;
        for state in [New, SynSent, Established, Closing] {
            assert_eq!(CtState::from_code(state.code()), Some(state));
        }
        for side in [Side::Lo, Side::Hi] {
            assert_eq!(Side::from_code(side.code()), Some(side));
        }
        let (key, _) = CtKey::of_packet(9, IPPROTO_UDP, (B, 1), (A, 2));
        assert_eq!(CtKey::from(maps::CtKey::from(key)), key);
    }

    /// The ICMP message of an error frame.
    fn message(frame: &[u8]) -> Vec<u8> {
        frame[14 + 20..].to_vec()
    }

    fn error_quoting(quoted: &[u8], icmp_type: u8) -> Vec<u8> {
        let repr = icmp::Repr::Other {
            msg_type: icmp_type,
            code: 0,
            rest_of_header: [0; 4],
            data: quoted,
        };
        FrameBuilder::icmp([2; 6], [4; 6], B, A, repr)
    }

    #[test]
    fn errors_quote_the_connection_of_their_packet() {
        let udp = FrameBuilder::udp([2; 6], [4; 6], A, B, 40000, 53, b"query");
        let quote = &udp[14..14 + 28];
        let error = error_quoting(quote, ICMP_DEST_UNREACHABLE);
        let expected = CtKey::of_packet(3, IPPROTO_UDP, (A, 40000), (B, 53)).0;
        assert_eq!(quoted_key(3, &message(&error), A), Some(expected));
        // An echo request: the identifier on both sides.
        let ping = FrameBuilder::icmp_echo_request([2; 6], [4; 6], A, B, 77, 1);
        let error = error_quoting(&ping[14..14 + 28], ICMP_TIME_EXCEEDED);
        let expected = CtKey::of_packet(3, IPPROTO_ICMP, (A, 77), (B, 77)).0;
        assert_eq!(quoted_key(3, &message(&error), A), Some(expected));
        // Another protocol: no ports.
        let gre = FrameBuilder::ipv4([2; 6], [4; 6], A, B, 47, &[1; 8]);
        let error = error_quoting(&gre[14..14 + 28], ICMP_PARAMETER_PROBLEM);
        let expected = CtKey::of_packet(3, 47, (A, 0), (B, 0)).0;
        assert_eq!(quoted_key(3, &message(&error), A), Some(expected));
    }

    #[test]
    fn a_quoted_icmp_message_has_ports_only_if_it_is_an_echo() {
        // An error quoting an error (type 3, bytes 4..6 not zero): no identifier, ports 0/0.
        let unreachable = icmp::Repr::Other {
            msg_type: ICMP_DEST_UNREACHABLE,
            code: 1,
            rest_of_header: [0x12, 0x34, 0x56, 0x78],
            data: &[0; 8],
        };
        let quoted = FrameBuilder::icmp([2; 6], [4; 6], A, B, unreachable);
        let error = error_quoting(&quoted[14..14 + 28], ICMP_TIME_EXCEEDED);
        let expected = CtKey::of_packet(3, IPPROTO_ICMP, (A, 0), (B, 0)).0;
        assert_eq!(quoted_key(3, &message(&error), A), Some(expected));
        // An echo reply is an echo too.
        let pong = FrameBuilder::icmp_echo_reply([2; 6], [4; 6], A, B, 78, 1);
        let error = error_quoting(&pong[14..14 + 28], ICMP_DEST_UNREACHABLE);
        let expected = CtKey::of_packet(3, IPPROTO_ICMP, (A, 78), (B, 78)).0;
        assert_eq!(quoted_key(3, &message(&error), A), Some(expected));
    }

    #[test]
    fn quotes_of_every_length_below_header_and_8_bytes_relate_to_nothing() {
        let udp = FrameBuilder::udp([2; 6], [4; 6], A, B, 40000, 53, b"query");
        for len in 0..28 {
            let error = error_quoting(&udp[14..14 + len], ICMP_DEST_UNREACHABLE);
            assert_eq!(quoted_key(3, &message(&error), A), None, "{len} bytes");
        }
    }

    #[test]
    fn short_or_odd_quotes_relate_to_nothing() {
        let udp = FrameBuilder::udp([2; 6], [4; 6], A, B, 40000, 53, b"query");
        let short = error_quoting(&udp[14..14 + 27], ICMP_DEST_UNREACHABLE);
        assert_eq!(quoted_key(3, &message(&short), A), None);
        let mut ipv6 = udp[14..14 + 28].to_vec();
        ipv6[0] = 0x65;
        assert_eq!(quoted_key(3, &message(&error_quoting(&ipv6, 3)), A), None);
        let mut ihl4 = udp[14..14 + 28].to_vec();
        ihl4[0] = 0x44;
        assert_eq!(quoted_key(3, &message(&error_quoting(&ihl4, 3)), A), None);
        // IHL 6: the 8 bytes are counted after the options.
        let mut ihl6 = udp[14..14 + 28].to_vec();
        ihl6[0] = 0x46;
        assert_eq!(quoted_key(3, &message(&error_quoting(&ihl6, 3)), A), None);
        ihl6.extend_from_slice(&[0; 4]);
        assert!(quoted_key(3, &message(&error_quoting(&ihl6, 3)), A).is_some());
        assert_eq!(quoted_key(3, &[3, 0, 0], A), None);
        // Not to the quoted packet's sender.
        let error = error_quoting(&udp[14..14 + 28], ICMP_DEST_UNREACHABLE);
        assert_eq!(quoted_key(3, &message(&error), B), None);
    }

    #[test]
    fn a_full_table_takes_no_new_key_but_reuses_one() {
        let entry = |last_seen_ns| CtEntry {
            state: CtState::New,
            originator: Side::Lo,
            last_seen_ns,
            generation: 1,
            egress_rule: None,
            ingress_rule: None,
        };
        let key = |port| CtKey::of_packet(1, IPPROTO_UDP, (A, port), (B, 53)).0;
        let mut table = Table::default();
        assert!(table.is_empty());
        assert!(table.insert(key(1), entry(0), 2));
        assert!(!table.is_empty());
        assert!(table.insert(key(2), entry(0), 2));
        assert!(!table.insert(key(3), entry(0), 2));
        assert!(table.insert(key(2), entry(5 * NS_PER_SEC), 2), "in place");
        assert_eq!(table.len(), 2);
        let timeouts = CtTimeouts::default();
        let later = 61 * NS_PER_SEC;
        assert!(!table.is_live(&key(1), &timeouts, later));
        assert!(table.is_live(&key(2), &timeouts, later));
        assert_eq!(table.collect_expired(&timeouts, later), 1);
        assert!(table.insert(key(3), entry(later), 2));
        assert!(!Table::default().insert(key(1), entry(0), 0));
    }
}
