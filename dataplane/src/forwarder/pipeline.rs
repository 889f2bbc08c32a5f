//! The forwarder's per-packet pipeline: one plain function over a frame in a buffer and the
//! node's [`Tables`] that decides the frame exactly as the XDP programs `from_pod` and
//! `from_underlay` do (the steps and their order are those of [`crate::model::node`]'s module
//! doc), rewrites it in place and says where it goes. No sockets: the worker hands frames in
//! and sends them where the [`Verdict`] says.
//!
//! Owns: the order of the steps, and the in-place growing and shrinking of the frame (VXLAN
//! encapsulation shifts it 50 bytes on within its buffer, decapsulation 50 bytes back). The
//! steps themselves are shared: parsing is [`crate::model::classify()`], the bytes written are
//! those of [`crate::model::replies`] and [`crate::model::vxlan`], conntrack and policy are
//! `ctpath_common::conntrack::admit` over [`Flows`] and the [`Tables`], the very code the XDP
//! programs run. Anti-spoofing and the ARP responder are the programs' rules over the same
//! lookups. Services are the programs' too: the decision is `ctpath_common::service` over
//! [`NatView`] (the snapshot's service tables, the local translation caches over the
//! kernel's maps), translated at the same steps (a packet or ICMP error to a virtual IP
//! before conntrack, a backend's reply or ICMP error after it), the bytes those of
//! [`crate::model::services`].
//!
//! What the programs get from the kernel comes from the tables here: the underlay next hop
//! ([`Tables::next_hop`]: `no_neighbor` without one), and a frame that cannot grow
//! (`adjust_failed`: no room after it in the buffer).
//!
//! The per-packet path takes no lock and allocates nothing: the tables are an immutable
//! snapshot (swapped between batches by [`Pipeline::set_tables`]), the conntrack table, the
//! translation caches and the rule counters are allocated once, at their full size (with the
//! rehash caveat of [`super::flows`]).
//!
//! Panic contract: [`Pipeline::process`] never panics, whatever the frame and its buffer.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ctpath_common::{
    conntrack::{self, Packet},
    flow::{flow_hash, vxlan_source_port},
    maps::{
        endpoint_kind, node_flags, port_flags, CtEntry, CtKey, Endpoint, NodeConfig, PodPort,
        Rewrite, MAX_RULES, NO_POLICY, NO_RULE,
    },
    policy::Allowed,
    service::{self, Scratch},
    wire::{ETH_HDR_LEN, VXLAN_ENCAP_LEN},
    Counter, DropReason, Tally,
};

use super::flows::Flows;
use super::nat::{Mirror, NatCache, NatView};
use super::tables::Tables;
use crate::model::classify::{classify, Classified, Ipv4Summary, L3, L4};
use crate::model::conntrack::{is_icmp_error, key_ports, quoted, quoted_key};
use crate::model::replies::{readdress, write_arp_reply, write_frag_needed};
use crate::model::services::{self as model_services, Translation};
use crate::model::vxlan::{self, decapsulate_in_place, encapsulate_in_place, write_outer, Outer};
use crate::model::Counted;
use crate::wire::{arp, ipv4, MacAddr};

/// Where a frame came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// From the pod behind the host-side veth `ifindex` (`from_pod`).
    Pod { ifindex: u32 },
    /// From the node's underlay interface (`from_underlay`).
    Underlay,
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `XDP_DROP`.
    Drop(DropReason),
    /// To the node's kernel stack, untouched (`XDP_PASS`).
    Pass,
    /// Back out of the interface it came in on (an ARP reply, an ICMP error, an ARP reply
    /// over VXLAN).
    Bounce,
    /// To the pod behind the host-side veth `ifindex`.
    ToPod { ifindex: u32 },
    /// Out of the underlay interface, VXLAN-encapsulated.
    ToUnderlay,
}

/// The decision on one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The one drop reason or counter the XDP program would count the frame under.
    pub counted: Counted,
    /// The rules the packet counted towards ([`NO_RULE`]: none).
    pub egress_rule: u32,
    pub ingress_rule: u32,
}

impl Verdict {
    fn counted(counter: Counter, action: Action) -> Verdict {
        Verdict::allowed(counter, action, Allowed::UNFILTERED)
    }

    fn allowed(counter: Counter, action: Action, allowed: Allowed) -> Verdict {
        Verdict {
            action,
            counted: Counted::Counter(counter),
            egress_rule: allowed.egress_rule,
            ingress_rule: allowed.ingress_rule,
        }
    }

    fn dropped(reason: DropReason) -> Verdict {
        Verdict {
            action: Action::Drop(reason),
            counted: Counted::Drop(reason),
            egress_rule: NO_RULE,
            ingress_rule: NO_RULE,
        }
    }
}

/// A frame in a buffer with room to grow: `buf` is all the room from the frame's first byte
/// (an AF_XDP frame's data segment to the chunk end), `len` the frame's length.
#[derive(Debug)]
pub struct FrameBuf<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
}

/// One worker's pipeline: the tables it reads, its conntrack table and translation caches,
/// its rule counters.
pub struct Pipeline<M: Mirror> {
    tables: Arc<Tables>,
    flows: Flows<M>,
    nat: NatCache,
    rule_hits: Vec<Tally>,
}

impl<M: Mirror> Pipeline<M> {
    /// A pipeline over `tables` with a conntrack table of `conntrack_capacity` entries (the
    /// size of the kernel's map) and translation caches as large, over the kernel's maps
    /// `mirror`.
    pub fn new(tables: Arc<Tables>, conntrack_capacity: u32, mirror: M) -> Self {
        Pipeline {
            tables,
            flows: Flows::new(conntrack_capacity, mirror),
            nat: NatCache::new(conntrack_capacity),
            rule_hits: vec![Tally::default(); MAX_RULES as usize],
        }
    }

    /// Replaces the tables (a new snapshot, between batches). Connections of an older policy
    /// generation are checked again as their packets come.
    pub fn set_tables(&mut self, tables: Arc<Tables>) {
        self.tables = tables;
    }

    /// Decides `frame`, which came in at `ingress` at `now_ns` (CLOCK_MONOTONIC), and rewrites
    /// it in place: what leaves is `frame.buf[..frame.len]`.
    pub fn process(&mut self, ingress: Ingress, frame: &mut FrameBuf<'_>, now_ns: u64) -> Verdict {
        frame.len = frame.len.min(frame.buf.len());
        let Pipeline {
            tables,
            flows,
            nat,
            rule_hits,
        } = self;
        let mut step = Step {
            tables,
            flows,
            nat,
            rule_hits,
            now_ns,
        };
        let verdict = match ingress {
            Ingress::Pod { ifindex } => step.frame_from_pod(ifindex, frame),
            Ingress::Underlay => step.frame_from_underlay(frame),
        };
        verdict.unwrap_or_else(Verdict::dropped)
    }

    /// Packets and bytes counted towards each rule, indexed by rule id.
    pub fn rule_hits(&self) -> &[Tally] {
        &self.rule_hits
    }

    /// The rules got other ids (a new state): id `i` takes the counts of id `moves[i]`, or
    /// none for a rule that is new; ids beyond `moves` are zeroed.
    pub fn move_rule_hits(&mut self, moves: &[Option<u32>]) {
        let old = std::mem::replace(
            &mut self.rule_hits,
            vec![Tally::default(); MAX_RULES as usize],
        );
        for (hits, from) in self.rule_hits.iter_mut().zip(moves) {
            if let Some(tally) = from.and_then(|from| old.get(from as usize)) {
                *hits = *tally;
            }
        }
    }

    /// Drops the conntrack entries and translations expired at `now_ns` from the local
    /// tables; returns how many.
    pub fn collect_expired(&mut self, now_ns: u64) -> usize {
        let timeouts = &self.tables.node().ct_timeouts;
        self.flows.collect_expired(timeouts, now_ns) + self.nat.collect_expired(timeouts, now_ns)
    }

    /// Every local conntrack entry, expired ones included until collected.
    pub fn conntrack(&self) -> impl Iterator<Item = (&CtKey, &CtEntry)> {
        self.flows.iter()
    }
}

/// The pipeline's parts for one frame.
struct Step<'a, M> {
    tables: &'a Tables,
    flows: &'a mut Flows<M>,
    nat: &'a mut NatCache,
    rule_hits: &'a mut [Tally],
    now_ns: u64,
}

impl<M: Mirror> Step<'_, M> {
    /// The service tables as the shared decision uses them, now.
    fn nat_view(&mut self) -> NatView<'_, M> {
        NatView {
            tables: self.tables,
            cache: self.nat,
            mirror: self.flows.mirror_mut(),
            now_ns: self.now_ns,
        }
    }

    /// How `ip` (of `frame`, sent on plane `vni` of a node with services) is translated, as
    /// the programs' `translate` decides; a packet or ICMP error to a virtual IP is rewritten
    /// in place here, one from the backend's side is left to [`Step::rewrite_from_service`]
    /// (after conntrack saw it as it came).
    fn translate(
        &mut self,
        node: &NodeConfig,
        vni: u32,
        ip: &Ipv4Summary,
        frame: &mut FrameBuf<'_>,
    ) -> Result<Translation, DropReason> {
        let to_virtual_ip = self
            .tables
            .endpoint(vni, ip.dst.octets())
            .is_some_and(|endpoint| endpoint.kind == endpoint_kind::SERVICE);
        if let L4::Icmp { icmp_type, .. } = ip.l4 {
            if is_icmp_error(icmp_type) {
                let datagram = &frame.buf[ETH_HDR_LEN..frame.len];
                let found = quoted_packet(vni, datagram, ip.dst).and_then(|quoted| {
                    service::of_error(&mut self.nat_view(), node, to_virtual_ip, &quoted)
                });
                return match found.map(|rewrite| model_rewrite(&rewrite)) {
                    Some(rewrite) if to_virtual_ip => {
                        let translation = Translation::ErrorToBackend(rewrite);
                        translation.rewrite_in_place(&mut frame.buf[..frame.len], ETH_HDR_LEN);
                        Ok(translation)
                    }
                    Some(rewrite) => Ok(Translation::ErrorFromService(rewrite)),
                    None if to_virtual_ip => Err(DropReason::ServiceUnsupported),
                    None => Ok(Translation::None),
                };
            }
        }
        let packet = packet_of(vni, ip);
        if let Some(rewrite) = service::from_backend(&mut self.nat_view(), node, &packet) {
            return Ok(Translation::FromService(model_rewrite(&rewrite)));
        }
        if !to_virtual_ip {
            return Ok(Translation::None);
        }
        let rewrite =
            service::to_service(&mut self.nat_view(), &mut Scratch::default(), node, &packet)?;
        let translation = Translation::ToBackend(model_rewrite(&rewrite));
        translation.rewrite_in_place(&mut frame.buf[..frame.len], ETH_HDR_LEN);
        Ok(translation)
    }

    /// A backend's reply, or an ICMP error about a client's packet to a backend, rewritten in
    /// place to come from the service (its IPv4 header at `l3`).
    fn rewrite_from_service(frame: &mut [u8], l3: usize, translation: &Translation) {
        if matches!(
            translation,
            Translation::FromService(_) | Translation::ErrorFromService(_)
        ) {
            translation.rewrite_in_place(frame, l3);
        }
    }

    fn frame_from_pod(
        &mut self,
        ifindex: u32,
        frame: &mut FrameBuf<'_>,
    ) -> Result<Verdict, DropReason> {
        let tables = self.tables;
        let classified = classify(&frame.buf[..frame.len])?;
        let node = tables.node();
        if node.configured == 0 {
            return Ok(Verdict::counted(Counter::PodPassed, Action::Pass));
        }
        let port = tables
            .pod_port(ifindex)
            .ok_or(DropReason::UnconfiguredPort)?;
        check_source(tables, ifindex, &port, &classified)?;
        match &classified.l3 {
            L3::Arp(request) => {
                let target = arp_target(tables, request, port.vni)?;
                let mac = match target.kind {
                    endpoint_kind::LOCAL | endpoint_kind::REMOTE => target.mac,
                    endpoint_kind::GATEWAY | endpoint_kind::SERVICE => node.router_mac,
                    _ => return Err(DropReason::ArpUnknownTarget),
                };
                write_arp_reply(&mut frame.buf[..frame.len], request, MacAddr(mac));
                Ok(Verdict::counted(Counter::PodArpReplied, Action::Bounce))
            }
            L3::Other { .. } => Ok(Verdict::counted(Counter::PodPassed, Action::Pass)),
            L3::Ipv4(ip) => self.forward(node, &port, &classified, ip, frame),
        }
    }

    fn forward(
        &mut self,
        node: &NodeConfig,
        port: &PodPort,
        classified: &Classified,
        ip: &Ipv4Summary,
        frame: &mut FrameBuf<'_>,
    ) -> Result<Verdict, DropReason> {
        if ip.total_len > port.mtu {
            if !ip.dont_fragment {
                return Err(DropReason::MtuExceeded);
            }
            frame.len = write_frag_needed(
                frame.buf,
                frame.len,
                Ipv4Addr::from(port.gateway),
                port.mtu,
                MacAddr(node.router_mac),
            )
            .ok_or(DropReason::AdjustFailed)?;
            return Ok(Verdict::counted(
                Counter::IcmpFragNeededSent,
                Action::Bounce,
            ));
        }
        let translation = if node.flags & node_flags::SERVICES == 0 {
            Translation::None
        } else {
            self.translate(node, port.vni, ip, frame)?
        };
        let leaving = translation
            .rewrite()
            .map_or(*ip, |rewrite| rewrite.applied_to(ip));
        let destination = self
            .tables
            .endpoint(port.vni, leaving.dst.octets())
            .ok_or(DropReason::UnknownDestination)?;
        let receiver_policy = match destination.kind {
            endpoint_kind::LOCAL => destination.policy,
            endpoint_kind::REMOTE => NO_POLICY,
            _ => return Err(DropReason::UnknownDestination),
        };
        // Conntrack and the rules see the connection between the client and the backend: a
        // packet (or ICMP error) to a service as translated, one from the backend as it came.
        let tracked = match translation {
            Translation::ToBackend(_) | Translation::ErrorToBackend(_) => &leaving,
            _ => ip,
        };
        let allowed = self.admit(port.vni, tracked, frame, port.policy, receiver_policy)?;
        Self::rewrite_from_service(&mut frame.buf[..frame.len], ETH_HDR_LEN, &translation);
        // A routed frame (to the router MAC) leaves from the router MAC, as from a router.
        let src_mac = if classified.dst_mac.0 == node.router_mac {
            node.router_mac
        } else {
            classified.src_mac.0
        };
        if destination.kind == endpoint_kind::LOCAL {
            readdress(
                &mut frame.buf[..frame.len],
                MacAddr(destination.mac),
                MacAddr(src_mac),
            );
            let action = Action::ToPod {
                ifindex: destination.ifindex,
            };
            return Ok(Verdict::allowed(
                Counter::PodRedirectedLocal,
                action,
                allowed,
            ));
        }
        let hop = self.tables.next_hop(destination.vtep)?;
        let (src_port, dst_port) = key_ports(&leaving.l4);
        let hash = flow_hash(
            leaving.src.octets(),
            leaving.dst.octets(),
            leaving.protocol,
            src_port,
            dst_port,
        );
        readdress(
            &mut frame.buf[..frame.len],
            MacAddr(destination.mac),
            MacAddr(src_mac),
        );
        let outer = Outer {
            src_mac: MacAddr(hop.src_mac),
            dst_mac: MacAddr(hop.dst_mac),
            src_ip: Ipv4Addr::from(node.underlay_ip),
            dst_ip: Ipv4Addr::from(destination.vtep),
            src_port: vxlan_source_port(hash),
            vni: port.vni,
        };
        frame.len =
            encapsulate_in_place(frame.buf, frame.len, &outer).ok_or(DropReason::AdjustFailed)?;
        Ok(Verdict::allowed(
            Counter::PodEncapsulated,
            Action::ToUnderlay,
            allowed,
        ))
    }

    fn frame_from_underlay(&mut self, frame: &mut FrameBuf<'_>) -> Result<Verdict, DropReason> {
        let tables = self.tables;
        let node = tables.node();
        let received = match node.configured {
            0 => None,
            _ => vxlan::receive(&frame.buf[..frame.len], Ipv4Addr::from(node.underlay_ip))?,
        };
        let Some(received) = received else {
            return Ok(Verdict::counted(Counter::UnderlayPassed, Action::Pass));
        };
        if !tables.is_known_vtep(received.src_vtep.octets()) {
            return Err(DropReason::UnknownVtep);
        }
        let network = tables.network(received.vni).ok_or(DropReason::UnknownVni)?;
        let inner = &frame.buf[VXLAN_ENCAP_LEN..frame.len];
        let classified = classify(inner)?;
        let ip = match &classified.l3 {
            L3::Arp(request) => {
                let target = arp_target(tables, request, received.vni)?;
                if target.kind != endpoint_kind::LOCAL {
                    return Err(DropReason::ArpUnknownTarget);
                }
                let (outer, inner) = frame.buf[..frame.len].split_at_mut(VXLAN_ENCAP_LEN);
                write_arp_reply(inner, request, MacAddr(target.mac));
                let back = Outer {
                    src_mac: MacAddr(node.underlay_mac),
                    dst_mac: received.src_mac,
                    src_ip: Ipv4Addr::from(node.underlay_ip),
                    dst_ip: received.src_vtep,
                    src_port: received.src_port,
                    vni: received.vni,
                };
                write_outer(outer, &back, inner.len());
                return Ok(Verdict::counted(
                    Counter::UnderlayArpReplied,
                    Action::Bounce,
                ));
            }
            L3::Other { .. } => return Err(DropReason::InnerUnsupported),
            L3::Ipv4(ip) => ip,
        };
        if u32::from(ip.total_len) > network.mtu {
            return Err(DropReason::MtuExceeded);
        }
        let destination = match tables.endpoint(received.vni, ip.dst.octets()) {
            Some(endpoint) if endpoint.kind == endpoint_kind::LOCAL => endpoint,
            _ => return Err(DropReason::UnknownDestination),
        };
        let allowed = self.admit_inner(received.vni, ip, frame, destination.policy)?;
        if node.flags & node_flags::SERVICES != 0 {
            self.translate_inner_from_service(node, received.vni, ip, frame);
        }
        frame.len = decapsulate_in_place(frame.buf, frame.len);
        readdress(
            &mut frame.buf[..frame.len],
            MacAddr(destination.mac),
            classified.src_mac,
        );
        let action = Action::ToPod {
            ifindex: destination.ifindex,
        };
        Ok(Verdict::allowed(
            Counter::UnderlayDecapsulated,
            action,
            allowed,
        ))
    }

    /// A remote backend's reply to a client of this node, or an ICMP error about the client's
    /// packet to it, comes from the service (the programs' `underlay.rs`): translated in place
    /// inside the VXLAN frame.
    fn translate_inner_from_service(
        &mut self,
        node: &NodeConfig,
        vni: u32,
        ip: &Ipv4Summary,
        frame: &mut FrameBuf<'_>,
    ) {
        const INNER_L3: usize = VXLAN_ENCAP_LEN + ETH_HDR_LEN;
        let translation = match ip.l4 {
            L4::Icmp { icmp_type, .. } if is_icmp_error(icmp_type) => {
                let datagram = &frame.buf[INNER_L3..frame.len];
                quoted_packet(vni, datagram, ip.dst)
                    .and_then(|quoted| {
                        service::of_error(&mut self.nat_view(), node, false, &quoted)
                    })
                    .map_or(Translation::None, |rewrite| {
                        Translation::ErrorFromService(model_rewrite(&rewrite))
                    })
            }
            _ => service::from_backend(&mut self.nat_view(), node, &packet_of(vni, ip))
                .map_or(Translation::None, |rewrite| {
                    Translation::FromService(model_rewrite(&rewrite))
                }),
        };
        Self::rewrite_from_service(&mut frame.buf[..frame.len], INNER_L3, &translation);
    }

    /// Conntrack and policy for the IPv4 packet `ip` of the frame a pod sent.
    fn admit(
        &mut self,
        vni: u32,
        ip: &Ipv4Summary,
        frame: &FrameBuf<'_>,
        sender_policy: u32,
        receiver_policy: u32,
    ) -> Result<Allowed, DropReason> {
        let datagram = &frame.buf[ETH_HDR_LEN..frame.len];
        self.admit_datagram(vni, ip, datagram, frame.len, sender_policy, receiver_policy)
    }

    /// Conntrack and policy for the IPv4 packet `ip` inside a VXLAN frame.
    fn admit_inner(
        &mut self,
        vni: u32,
        ip: &Ipv4Summary,
        frame: &FrameBuf<'_>,
        receiver_policy: u32,
    ) -> Result<Allowed, DropReason> {
        let datagram = &frame.buf[VXLAN_ENCAP_LEN + ETH_HDR_LEN..frame.len];
        self.admit_datagram(vni, ip, datagram, frame.len, NO_POLICY, receiver_policy)
    }

    /// Conntrack and policy for `ip`, whose datagram (header first) is `datagram`, in a frame
    /// of `frame_len` bytes (what the rules' byte counters count).
    fn admit_datagram(
        &mut self,
        vni: u32,
        ip: &Ipv4Summary,
        datagram: &[u8],
        frame_len: usize,
        sender_policy: u32,
        receiver_policy: u32,
    ) -> Result<Allowed, DropReason> {
        let packet = packet_of(vni, ip);
        let quoted = if packet.is_icmp_error() {
            quoted_key(vni, icmp_message(datagram), ip.dst).map(CtKey::from)
        } else {
            None
        };
        let allowed = conntrack::admit(
            &mut self.flows.at(self.now_ns),
            self.tables,
            self.tables.node(),
            &packet,
            quoted,
            sender_policy,
            receiver_policy,
        )?;
        for rule in [allowed.egress_rule, allowed.ingress_rule] {
            if let Some(tally) = self.rule_hits.get_mut(rule as usize) {
                tally.packets += 1;
                tally.bytes += frame_len as u64;
            }
        }
        Ok(allowed)
    }
}

/// `ip` on plane `vni` as conntrack and the service maps see it.
fn packet_of(vni: u32, ip: &Ipv4Summary) -> Packet {
    let (src_port, dst_port) = key_ports(&ip.l4);
    let (tcp_flags, icmp_type) = match ip.l4 {
        L4::Tcp { flags, .. } => (flags.0, 0),
        L4::Icmp { icmp_type, .. } => (0, icmp_type),
        L4::Udp { .. } | L4::Other => (0, 0),
    };
    Packet {
        vni,
        protocol: ip.protocol,
        src: ip.src.octets(),
        dst: ip.dst.octets(),
        src_port,
        dst_port,
        tcp_flags,
        icmp_type,
    }
}

/// The packet the ICMP error `datagram` (classified, header first) on plane `vni`, sent to
/// `to`, quotes, as the service maps key its connection.
fn quoted_packet(vni: u32, datagram: &[u8], to: Ipv4Addr) -> Option<Packet> {
    let quote = quoted(icmp_message(datagram), to)?;
    Some(Packet {
        vni,
        protocol: quote.protocol,
        src: quote.src.0.octets(),
        dst: quote.dst.0.octets(),
        src_port: quote.src.1,
        dst_port: quote.dst.1,
        tcp_flags: 0,
        icmp_type: 0,
    })
}

/// A shared decision's rewrite as the model's rewrite of the bytes takes it.
fn model_rewrite(rewrite: &Rewrite) -> model_services::Rewrite {
    model_services::Rewrite {
        src: Ipv4Addr::from(rewrite.src),
        dst: Ipv4Addr::from(rewrite.dst),
        src_port: rewrite.src_port,
        dst_port: rewrite.dst_port,
    }
}

/// The IPv4 payload of a classified `datagram`: from the end of its header (options
/// included) to its total length.
fn icmp_message(datagram: &[u8]) -> &[u8] {
    let header = ipv4::Packet::new_unchecked(datagram);
    let end = usize::from(header.total_len()).min(datagram.len());
    datagram.get(header.header_len()..end).unwrap_or_default()
}

/// The endpoint that answers ARP `request` on plane `vni`, if it is a request for a known
/// address (which kinds may be answered is the caller's).
fn arp_target(tables: &Tables, request: &arp::Repr, vni: u32) -> Result<Endpoint, DropReason> {
    if request.operation != arp::Operation::Request {
        return Err(DropReason::ArpNotRequest);
    }
    tables
        .endpoint(vni, request.target_ip.octets())
        .ok_or(DropReason::ArpUnknownTarget)
}

/// Anti-spoofing (docs/security-groups.md, "Anti-spoofing"), as `ebpf/programs/src/spoof.rs`:
/// with port security on, the pod behind `ifindex` may send only from the addresses and MACs
/// it owns.
fn check_source(
    tables: &Tables,
    ifindex: u32,
    port: &PodPort,
    frame: &Classified,
) -> Result<(), DropReason> {
    if port.flags & port_flags::PORT_SECURITY == 0 {
        return Ok(());
    }
    match &frame.l3 {
        L3::Ipv4(ip) => match tables.source_mac(ifindex, ip.src.octets()) {
            None => Err(DropReason::SpoofedIp),
            Some(mac) if mac != frame.src_mac.0 => Err(DropReason::SpoofedMac),
            Some(_) => Ok(()),
        },
        L3::Arp(arp) => {
            let owned = if arp.sender_mac != frame.src_mac {
                false
            } else if arp.sender_ip == Ipv4Addr::UNSPECIFIED {
                // An ARP probe: no address claimed yet, only the interface's own MAC.
                arp.sender_mac.0 == port.mac
            } else {
                tables.source_mac(ifindex, arp.sender_ip.octets()) == Some(arp.sender_mac.0)
            };
            if owned {
                Ok(())
            } else {
                Err(DropReason::SpoofedArp)
            }
        }
        L3::Other { .. } => {
            if frame.src_mac.0 == port.mac || tables.is_pair_mac(ifindex, frame.src_mac.0) {
                Ok(())
            } else {
                Err(DropReason::SpoofedMac)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ctpath_common::maps::NodeConfig;

    use super::*;
    use crate::forwarder::{nat::Shared, tables::MapContents};

    #[test]
    fn rule_hits_follow_their_rules_to_new_ids() {
        let tables = Arc::new(Tables::new(
            &MapContents::default(),
            NodeConfig::default(),
            Default::default(),
        ));
        let mut pipeline = Pipeline::new(tables, 16, Shared::in_memory(16));
        let tally = |packets| Tally {
            packets,
            bytes: packets * 100,
        };
        for (id, packets) in [(0, 5), (1, 7), (2, 9)] {
            pipeline.rule_hits[id] = tally(packets);
        }
        // A rule inserted first: 0 and 1 become 1 and 2; the old 2 is gone.
        pipeline.move_rule_hits(&[None, Some(0), Some(1)]);
        assert_eq!(
            &pipeline.rule_hits()[..4],
            &[tally(0), tally(5), tally(7), tally(0)]
        );
        // Fewer rules: what is beyond them is zeroed.
        pipeline.move_rule_hits(&[Some(2)]);
        assert_eq!(&pipeline.rule_hits()[..3], &[tally(7), tally(0), tally(0)]);
        assert_eq!(pipeline.rule_hits().len(), MAX_RULES as usize);
    }
}
