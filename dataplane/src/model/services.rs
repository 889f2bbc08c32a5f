//! Services (issue 11): a connection to a service's virtual IP is translated at the source
//! pod's hook to one of the service's backends, and the backend's replies are translated back
//! so the client sees the virtual IP. This is the meaning the programs' shared decision
//! (`ctpath_common::service`) and rewrite (`ebpf/programs/src/service.rs`) are tested against,
//! written here on its own.
//!
//! Owns: one node's service state, as plain maps (the programs' `NAT_FLOWS`, `NAT_REPLIES`
//! and `AFFINITY`, and a Maglev table per service), the choice of a connection's backend, and
//! the rewrite of a translated frame.
//!
//! - A packet to a virtual IP must be TCP, UDP or an ICMP echo request
//!   (`service_unsupported`). Its connection (plane, protocol, addresses, ports as conntrack
//!   keys them) keeps the translation it was given while the translation is live (used within
//!   the conntrack timeout of an established connection of its protocol); every use refreshes
//!   it. A TCP SYN (without ACK) is always a new connection: a reused client port chooses
//!   again, so a backend that left never gets it.
//! - A new connection needs a service port: the listed (protocol, port), or for an IP-level
//!   service any TCP or UDP port and ICMP echo (`service_port_unknown`), and a backend
//!   (`service_no_backend`). Under client-IP affinity it is the backend the client's last new
//!   connection to the same service port got, if that was within the affinity timeout and that
//!   backend is still one of the service's (its backends may have changed since); else slot `flow_hash(client, vip, protocol,
//!   client port, service port) mod size` of the service's Maglev table
//!   ([`crate::maglev::Maglev`], backend id the address as a big-endian `u32`; 1,021 slots up
//!   to 10 backends, else 16,381). Affinity is refreshed by each new connection, not by the
//!   connection's later packets.
//! - The connection leaves to the backend on the target port (an IP-level service keeps the
//!   port); from the client's address, or from the virtual IP when the backend is the client
//!   itself (hairpin: the pod would drop a packet from its own address). Its reply (from the
//!   backend's target port to where it left from) is translated back to come from the virtual
//!   IP and service port, to the client; a reply refreshes only its own translation.
//!
//! - An ICMP error (types 3, 11 and 12) about a packet of a live translated connection (its
//!   quote as conntrack reads it, [`super::conntrack::quoted`]) is translated as a packet of
//!   that connection sent its way would be: an error to a virtual IP (a client's, about a
//!   reply from the service) as the client's packets, any other (a backend's, or a hop's on
//!   its way, about a client's packet to the backend) as the backend's replies. Its addresses
//!   become those of that translation, and its quote the reverse: the quoted addresses, and a
//!   quoted TCP or UDP packet's ports. An error does not refresh the translation. An error to
//!   a virtual IP about nothing translated is `service_unsupported`; any other goes on as it
//!   came.
//!
//! The programs' tables are LRU maps with room for every connection a test makes; these maps
//! never forget, which is the same while nothing is evicted. Time is an argument, as for
//! conntrack.
//!
//! A rewrite changes the addresses and, for TCP and UDP, the ports; the IPv4 and the TCP or
//! UDP checksums are updated incrementally (RFC 1624, one 16-bit word at a time), so a valid
//! checksum stays valid and a wrong one stays wrong; a UDP datagram without a checksum (0)
//! keeps none, and a UDP checksum that comes out 0 is sent as 0xffff (RFC 768). ICMP's
//! checksum covers no address, and an echo keeps its identifier. In an ICMP error, the quoted
//! IPv4 header's checksum and a quoted UDP checksum are updated likewise (a quoted TCP
//! checksum lies beyond the 8 bytes an error must quote, and is left as it is), and the ICMP
//! checksum follows the quoted ports and UDP checksum: an IPv4 header updated incrementally
//! keeps its sum, so the quoted header's changes leave the ICMP sum as it was.
//!
//! Panic contract: nothing here panics, whatever the frame or the topology.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ctpath_common::checksum::replace16;
use ctpath_common::flow::flow_hash;
use ctpath_common::maps::{MAGLEV_LARGE_SLOTS, MAGLEV_SMALL_MAX_BACKENDS, MAGLEV_SMALL_SLOTS};
use ctpath_common::wire::{
    ICMP_ECHO_REQUEST, ICMP_HDR_LEN, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HDR_LEN,
};
use ctpath_common::DropReason;

use super::classify::{Ipv4Summary, L4};
use super::conntrack::{key_ports, CtState, QuotedPacket};
use super::topology::{Service, Topology};
use crate::maglev::{BackendId, Maglev};
use crate::wire::{ipv4, tcp};

/// A packet's connection as the service tables key it: ports as conntrack has them (the echo
/// identifier twice for ICMP echo, 0 and 0 where there are none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatKey {
    pub vni: u32,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

impl NatKey {
    /// The key of packet `ip` on plane `vni`.
    pub fn of(vni: u32, ip: &Ipv4Summary) -> NatKey {
        let (src_port, dst_port) = key_ports(&ip.l4);
        NatKey {
            vni,
            protocol: ip.protocol,
            src: ip.src,
            dst: ip.dst,
            src_port,
            dst_port,
        }
    }
}

/// What a translated packet leaves with: its addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

impl Rewrite {
    /// `ip` as this rewrite leaves it (ports changed where the protocol has them).
    pub fn applied_to(&self, ip: &Ipv4Summary) -> Ipv4Summary {
        let l4 = match ip.l4 {
            L4::Tcp { flags, .. } => L4::Tcp {
                src_port: self.src_port,
                dst_port: self.dst_port,
                flags,
            },
            L4::Udp { .. } => L4::Udp {
                src_port: self.src_port,
                dst_port: self.dst_port,
            },
            other => other,
        };
        Ipv4Summary {
            src: self.src,
            dst: self.dst,
            l4,
            ..*ip
        }
    }
}

/// How a packet from a pod is translated on its way (the reference model's and the AF_XDP
/// forwarder's steps; the programs' `pod.rs` has its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    None,
    /// A packet to a service, now to one of its backends.
    ToBackend(Rewrite),
    /// A backend's reply, now from the service.
    FromService(Rewrite),
    /// An ICMP error to a service's virtual IP about a reply from it, now to the backend.
    ErrorToBackend(Rewrite),
    /// An ICMP error about a packet from a client to a service's backend, now from the
    /// service.
    ErrorFromService(Rewrite),
}

impl Translation {
    /// The addresses and ports the packet leaves with, unless it is not translated.
    pub fn rewrite(&self) -> Option<&Rewrite> {
        match self {
            Translation::None => None,
            Translation::ToBackend(rewrite)
            | Translation::FromService(rewrite)
            | Translation::ErrorToBackend(rewrite)
            | Translation::ErrorFromService(rewrite) => Some(rewrite),
        }
    }

    /// `frame` (whose IPv4 header starts at `l3`) rewritten in place as it leaves.
    pub fn rewrite_in_place(&self, frame: &mut [u8], l3: usize) {
        match self {
            Translation::None => {}
            Translation::ToBackend(rewrite) | Translation::FromService(rewrite) => {
                rewrite_in_place(frame, l3, rewrite)
            }
            Translation::ErrorToBackend(rewrite) | Translation::ErrorFromService(rewrite) => {
                rewrite_error_in_place(frame, l3, rewrite)
            }
        }
    }
}

/// A live translation, and when it was last used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kept {
    rewrite: Rewrite,
    last_seen_ns: u64,
}

/// A client of a service port: plane, virtual IP, protocol, service port (0 for an IP-level
/// service), client address.
type AffinityKey = (u32, Ipv4Addr, u8, u16, Ipv4Addr);

/// The backend a client's last new connection to a service port got.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Affinity {
    backend: Ipv4Addr,
    last_seen_ns: u64,
}

/// One node's service state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// The Maglev table of each service of the topology, in its order (`None`: no backends,
    /// or a backend given twice).
    tables: Vec<Option<Maglev>>,
    /// The client's packets, by their connection: to the backend.
    flows: BTreeMap<NatKey, Kept>,
    /// The backend's packets, by their connection: from the service.
    replies: BTreeMap<NatKey, Kept>,
    affinity: BTreeMap<AffinityKey, Affinity>,
}

/// Slots of the Maglev table of a service with `backends` backends.
pub fn table_size(backends: usize) -> usize {
    if backends > MAGLEV_SMALL_MAX_BACKENDS {
        MAGLEV_LARGE_SLOTS
    } else {
        MAGLEV_SMALL_SLOTS
    }
}

/// The Maglev table of `service`; `None` without backends or for a backend given twice.
fn table_of(service: &Service) -> Option<Maglev> {
    let ids: Vec<BackendId> = service
        .backends
        .iter()
        .map(|ip| BackendId(u32::from(*ip)))
        .collect();
    Maglev::build(&ids, table_size(ids.len()))
        .ok()
        .filter(|table| !table.slots().is_empty())
}

/// How long a translation of `protocol` lives unused: the conntrack timeout of an
/// established connection of that protocol.
fn lifetime_ns(topology: &Topology, protocol: u8) -> u64 {
    CtState::Established.timeout_ns(protocol, &topology.conntrack.timeouts)
}

fn live(translation: &Kept, lifetime_ns: u64, now_ns: u64) -> bool {
    now_ns.saturating_sub(translation.last_seen_ns) < lifetime_ns
}

impl ServiceState {
    /// The state of a node with `topology`'s services and empty tables.
    pub fn new(topology: &Topology) -> ServiceState {
        let mut state = ServiceState::default();
        state.set_services(topology);
        state
    }

    /// The services changed to `topology`'s: their tables are rebuilt; translations and
    /// affinities are kept (established connections keep their backends).
    pub fn set_services(&mut self, topology: &Topology) {
        self.tables = topology.services.iter().map(table_of).collect();
    }

    /// The translation back of `ip` on plane `vni` if it is the reply of a live translated
    /// connection (refreshed).
    pub fn from_backend(
        &mut self,
        topology: &Topology,
        vni: u32,
        ip: &Ipv4Summary,
        now_ns: u64,
    ) -> Option<Rewrite> {
        let lifetime = lifetime_ns(topology, ip.protocol);
        let reply = self.replies.get_mut(&NatKey::of(vni, ip))?;
        if !live(reply, lifetime, now_ns) {
            return None;
        }
        reply.last_seen_ns = now_ns;
        Some(reply.rewrite)
    }

    /// The translation of an ICMP error on plane `vni` about `quoted`, if that packet belongs
    /// to a live translated connection: that of the connection's packets sent the error's
    /// way, the client's if the error goes to a service (`to_virtual_ip`), else the backend's
    /// (module doc). Nothing is refreshed.
    pub fn of_error(
        &self,
        topology: &Topology,
        vni: u32,
        to_virtual_ip: bool,
        quoted: &QuotedPacket,
        now_ns: u64,
    ) -> Option<Rewrite> {
        let key = NatKey {
            vni,
            protocol: quoted.protocol,
            src: quoted.dst.0,
            dst: quoted.src.0,
            src_port: quoted.dst.1,
            dst_port: quoted.src.1,
        };
        let table = if to_virtual_ip {
            &self.flows
        } else {
            &self.replies
        };
        let translation = table.get(&key)?;
        live(translation, lifetime_ns(topology, quoted.protocol), now_ns)
            .then_some(translation.rewrite)
    }

    /// The translation of `ip`, a packet on plane `vni` to a service's virtual IP
    /// (`ip.dst`).
    pub fn to_service(
        &mut self,
        topology: &Topology,
        vni: u32,
        ip: &Ipv4Summary,
        now_ns: u64,
    ) -> Result<Rewrite, DropReason> {
        let (service_port, starts_connection) = match ip.l4 {
            L4::Tcp {
                dst_port, flags, ..
            } => (
                dst_port,
                flags.0 & (tcp::Flags::SYN.0 | tcp::Flags::ACK.0) == tcp::Flags::SYN.0,
            ),
            L4::Udp { dst_port, .. } => (dst_port, false),
            L4::Icmp {
                icmp_type: ICMP_ECHO_REQUEST,
                ..
            } => (0, false),
            _ => return Err(DropReason::ServiceUnsupported),
        };
        let key = NatKey::of(vni, ip);
        if !starts_connection {
            let lifetime = lifetime_ns(topology, ip.protocol);
            if let Some(flow) = self.flows.get_mut(&key) {
                if live(flow, lifetime, now_ns) {
                    flow.last_seen_ns = now_ns;
                    return Ok(flow.rewrite);
                }
            }
        }
        let index = topology
            .services
            .iter()
            .position(|s| s.vni == vni && s.vip == ip.dst)
            .ok_or(DropReason::ServicePortUnknown)?;
        let service = &topology.services[index];
        let (port, target_port) = match &service.ports {
            None => (0, key.dst_port),
            Some(ports) => ports
                .iter()
                .find(|p| p.protocol.number() == ip.protocol && p.port == service_port)
                .map(|p| (p.port, p.target_port))
                .ok_or(DropReason::ServicePortUnknown)?,
        };
        let backend = self.backend(index, service, &key, port, now_ns)?;
        let forward = Rewrite {
            src: if backend == key.src { key.dst } else { key.src },
            dst: backend,
            src_port: key.src_port,
            dst_port: target_port,
        };
        let back = Rewrite {
            src: key.dst,
            dst: key.src,
            src_port: key.dst_port,
            dst_port: key.src_port,
        };
        let reply_key = NatKey {
            vni,
            protocol: ip.protocol,
            src: forward.dst,
            dst: forward.src,
            src_port: forward.dst_port,
            dst_port: forward.src_port,
        };
        let fresh = |rewrite| Kept {
            rewrite,
            last_seen_ns: now_ns,
        };
        self.flows.insert(key, fresh(forward));
        self.replies.insert(reply_key, fresh(back));
        Ok(forward)
    }

    /// The backend of a new connection `key` to service port `port` of `service`, the
    /// topology's `index`-th.
    fn backend(
        &mut self,
        index: usize,
        service: &Service,
        key: &NatKey,
        port: u16,
        now_ns: u64,
    ) -> Result<Ipv4Addr, DropReason> {
        let table = self
            .tables
            .get(index)
            .and_then(Option::as_ref)
            .ok_or(DropReason::ServiceNoBackend)?;
        let client = (key.vni, key.dst, key.protocol, port, key.src);
        if let Some(timeout_s) = service.affinity_timeout_s {
            if let Some(last) = self.affinity.get_mut(&client) {
                let fresh =
                    now_ns.saturating_sub(last.last_seen_ns) < u64::from(timeout_s) * 1_000_000_000;
                if fresh && service.backends.contains(&last.backend) {
                    last.last_seen_ns = now_ns;
                    return Ok(last.backend);
                }
            }
        }
        let hash = flow_hash(
            key.src.octets(),
            key.dst.octets(),
            key.protocol,
            key.src_port,
            key.dst_port,
        );
        let backend = table
            .lookup(u64::from(hash))
            .map(|id| Ipv4Addr::from(id.0))
            .ok_or(DropReason::ServiceNoBackend)?;
        if service.affinity_timeout_s.is_some() {
            let chosen = Affinity {
                backend,
                last_seen_ns: now_ns,
            };
            self.affinity.insert(client, chosen);
        }
        Ok(backend)
    }
}

/// `frame` (a classified IPv4 frame whose IPv4 header starts at `l3`) rewritten to the
/// addresses and ports of `rewrite`, checksums updated (module doc).
pub fn rewritten(frame: &[u8], l3: usize, rewrite: &Rewrite) -> Vec<u8> {
    let mut frame = frame.to_vec();
    rewrite_in_place(&mut frame, l3, rewrite);
    frame
}

/// [`rewritten`], in place.
pub fn rewrite_in_place(frame: &mut [u8], l3: usize, rewrite: &Rewrite) {
    let Some((src, dst, protocol)) = frame
        .get(l3..)
        .and_then(|datagram| ipv4::Packet::new_checked(datagram).ok())
        .map(|packet| (packet.src_addr(), packet.dst_addr(), packet.protocol()))
    else {
        return;
    };
    let Some(l4) = readdressed(frame, l3, rewrite.src, rewrite.dst) else {
        return;
    };
    let Some(segment) = datagram_l4(frame, l3 + l4) else {
        return;
    };
    let (check_at, udp) = match protocol {
        IPPROTO_TCP => (16, false),
        IPPROTO_UDP => (6, true),
        _ => return,
    };
    if segment.len() < check_at + 2 {
        return;
    }
    let ports = [
        u16::from_be_bytes([segment[0], segment[1]]),
        u16::from_be_bytes([segment[2], segment[3]]),
    ];
    let mut check = u16::from_be_bytes([segment[check_at], segment[check_at + 1]]);
    for (old, new) in [(src, rewrite.src), (dst, rewrite.dst)] {
        check = updated(check, &old.octets(), &new.octets(), udp);
    }
    for (old, new) in ports.into_iter().zip([rewrite.src_port, rewrite.dst_port]) {
        check = updated(check, &old.to_be_bytes(), &new.to_be_bytes(), udp);
    }
    segment[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());
    segment[0..2].copy_from_slice(&rewrite.src_port.to_be_bytes());
    segment[2..4].copy_from_slice(&rewrite.dst_port.to_be_bytes());
}

/// `frame`, a classified ICMP error whose IPv4 header starts at `l3` and whose quote
/// [`super::conntrack::quoted`] reads, translated as `rewrite` says: its addresses become the
/// rewrite's, its quote's the reverse, checksums updated (module doc).
pub fn rewritten_error(frame: &[u8], l3: usize, rewrite: &Rewrite) -> Vec<u8> {
    let mut frame = frame.to_vec();
    rewrite_error_in_place(&mut frame, l3, rewrite);
    frame
}

/// [`rewritten_error`], in place.
pub fn rewrite_error_in_place(frame: &mut [u8], l3: usize, rewrite: &Rewrite) {
    let Some(header_len) = readdressed(frame, l3, rewrite.src, rewrite.dst) else {
        return;
    };
    let quote_at = l3 + header_len + ICMP_HDR_LEN;
    let Some((quoted_src, quoted_dst)) = frame.get(quote_at + 12..quote_at + 20).map(|bytes| {
        let address =
            |at: usize| Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
        (address(0), address(4))
    }) else {
        return;
    };
    let Some(quote_len) = readdressed(frame, quote_at, rewrite.dst, rewrite.src) else {
        return;
    };
    if !matches!(frame.get(quote_at + 9), Some(&(IPPROTO_TCP | IPPROTO_UDP))) {
        return;
    }
    let (check_at, ports_at) = (l3 + header_len + 2, quote_at + quote_len);
    let Some(bytes) = frame.get(ports_at..ports_at + 4) else {
        return;
    };
    let old = [
        u16::from_be_bytes([bytes[0], bytes[1]]),
        u16::from_be_bytes([bytes[2], bytes[3]]),
    ];
    let new = [rewrite.dst_port, rewrite.src_port];
    let mut check = u16::from_be_bytes([frame[check_at], frame[check_at + 1]]);
    for (old, new) in old.into_iter().zip(new) {
        check = updated(check, &old.to_be_bytes(), &new.to_be_bytes(), false);
    }
    frame[ports_at..ports_at + 2].copy_from_slice(&new[0].to_be_bytes());
    frame[ports_at + 2..ports_at + 4].copy_from_slice(&new[1].to_be_bytes());
    if frame[quote_at + 9] == IPPROTO_UDP {
        let udp_check_at = ports_at + 6;
        if let Some(bytes) = frame.get(udp_check_at..udp_check_at + 2) {
            let old_udp = u16::from_be_bytes([bytes[0], bytes[1]]);
            let addresses = [(quoted_src, rewrite.dst), (quoted_dst, rewrite.src)];
            let mut new_udp = old_udp;
            for (old_address, new_address) in addresses {
                let (old_address, new_address) = (old_address.octets(), new_address.octets());
                new_udp = updated(new_udp, &old_address, &new_address, true);
            }
            for (old_port, new_port) in old.into_iter().zip(new) {
                new_udp = updated(
                    new_udp,
                    &old_port.to_be_bytes(),
                    &new_port.to_be_bytes(),
                    true,
                );
            }
            check = updated(check, &old_udp.to_be_bytes(), &new_udp.to_be_bytes(), false);
            frame[udp_check_at..udp_check_at + 2].copy_from_slice(&new_udp.to_be_bytes());
        }
    }
    frame[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());
}

/// Sets the addresses of the IPv4 header at `at` in `frame` to `src` and `dst`, its checksum
/// updated; its length, or `None` if there is no IPv4 header there. Only the header is looked
/// at: a quoted header's total length is that of the packet it was cut from.
fn readdressed(frame: &mut [u8], at: usize, src: Ipv4Addr, dst: Ipv4Addr) -> Option<usize> {
    let bytes = frame
        .get_mut(at..)
        .filter(|bytes| bytes.len() >= IPV4_MIN_HDR_LEN)?;
    let len = bytes.len();
    let mut header = ipv4::Packet::new_unchecked(bytes);
    let header_len = header.header_len();
    if header_len < IPV4_MIN_HDR_LEN || len < header_len {
        return None;
    }
    let mut check = header.checksum();
    for (old, new) in [(header.src_addr(), src), (header.dst_addr(), dst)] {
        check = updated(check, &old.octets(), &new.octets(), false);
    }
    header.set_checksum(check);
    header.set_src_addr(src);
    header.set_dst_addr(dst);
    Some(header.header_len())
}

/// The bytes of `frame` from `at` on (the transport header and payload).
fn datagram_l4(frame: &mut [u8], at: usize) -> Option<&mut [u8]> {
    frame.get_mut(at..).filter(|segment| segment.len() >= 4)
}

/// Checksum `check` after the field `old` (16-bit words) became `new`: unchanged where the
/// field is; for UDP (`udp`) an absent checksum (0) stays absent and a computed 0 is 0xffff.
fn updated(check: u16, old: &[u8], new: &[u8], udp: bool) -> u16 {
    if old == new || (udp && check == 0) {
        return check;
    }
    // Word by word, without allocating: the AF_XDP forwarder rewrites with this per packet.
    let word = |pair: &[u8]| u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
    let check = old
        .chunks(2)
        .zip(new.chunks(2))
        .fold(check, |check, (old, new)| {
            replace16(check, word(old), word(new))
        });
    if udp && check == 0 {
        0xffff
    } else {
        check
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::udp;

    const L3: usize = 14;
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 200, 1);
    const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 9);

    /// An Ethernet frame with an IPv4 header and `l4` (a TCP or UDP segment, its checksum
    /// filled over the pseudo-header) from the client to the virtual IP.
    fn frame(protocol: u8, l4: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; L3];
        let total = (20 + l4.len()) as u16;
        frame.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, protocol, 0, 0]);
        frame[L3 + 2..L3 + 4].copy_from_slice(&total.to_be_bytes());
        frame.extend_from_slice(&CLIENT.octets());
        frame.extend_from_slice(&VIP.octets());
        frame.extend_from_slice(l4);
        ipv4::Packet::new_unchecked(&mut frame[L3..]).fill_checksum();
        let segment = &mut frame[L3 + 20..];
        if protocol == IPPROTO_TCP {
            tcp::Packet::new_unchecked(segment).fill_checksum(CLIENT, VIP);
        } else {
            udp::Packet::new_unchecked(segment).fill_checksum(CLIENT, VIP);
        }
        frame
    }

    fn to_backend() -> Rewrite {
        Rewrite {
            src: CLIENT,
            dst: BACKEND,
            src_port: 40000,
            dst_port: 8080,
        }
    }

    #[test]
    fn an_in_place_rewrite_keeps_tcp_and_ipv4_checksums_valid() {
        let mut segment = [0u8; 24];
        segment[0..2].copy_from_slice(&40000u16.to_be_bytes());
        segment[2..4].copy_from_slice(&80u16.to_be_bytes());
        segment[12] = 0x50;
        segment[13] = 0x02;
        segment[20..].copy_from_slice(b"ping");
        let mut frame = frame(IPPROTO_TCP, &segment);
        rewrite_in_place(&mut frame, L3, &to_backend());
        let ip = ipv4::Packet::new_unchecked(&frame[L3..]);
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr()), (CLIENT, BACKEND));
        let tcp = tcp::Packet::new_unchecked(&frame[L3 + 20..]);
        assert_eq!((tcp.src_port(), tcp.dst_port()), (40000, 8080));
        assert!(tcp.verify_checksum(CLIENT, BACKEND));
    }

    #[test]
    fn an_in_place_rewrite_keeps_a_udp_checksum_valid_and_an_absent_one_absent() {
        let mut datagram = [0u8; 12];
        datagram[0..2].copy_from_slice(&40000u16.to_be_bytes());
        datagram[2..4].copy_from_slice(&53u16.to_be_bytes());
        datagram[4..6].copy_from_slice(&12u16.to_be_bytes());
        datagram[8..].copy_from_slice(b"name");
        let mut frame = frame(IPPROTO_UDP, &datagram);
        let unchecked = {
            let mut unchecked = frame.clone();
            unchecked[L3 + 26..L3 + 28].copy_from_slice(&[0, 0]);
            unchecked
        };
        rewrite_in_place(&mut frame, L3, &to_backend());
        assert!(udp::Packet::new_unchecked(&frame[L3 + 20..]).verify_checksum(CLIENT, BACKEND));
        assert_eq!(
            rewritten(&unchecked, L3, &to_backend())[L3 + 26..L3 + 28],
            [0, 0]
        );
    }
}
