//! `from_pod`: what happens to a frame a pod sends. In order: validate it; answer ARP; answer
//! an oversized DF packet with ICMP "fragmentation needed"; deliver IPv4 to a pod on this node
//! (veth to veth) or encapsulate it in VXLAN to the destination's node. Frames other than IPv4
//! and ARP go to the kernel. Destinations are looked up on the sender's plane only, so planes
//! stay isolated even where they reuse addresses.
//!
//! A pod may be configured on-link (the plane's prefix: it ARPs for each peer, answered with
//! the peer's own MAC) or with a /32 and a default route via the gateway (it ARPs for the
//! gateway, answered with the node's router MAC). Either way the frame is delivered with the
//! destination pod's MAC; a routed frame (sent to the router MAC) also gets the router MAC as
//! its source, as a router would.
//!
//! The same code runs as the XDP program and as the tc program (`from_pod_tc`, on planes with
//! `datapath: tc`), over [`PacketContext`]: on tc a GSO packet is one skb, checked against the
//! MTU by its segments, encapsulated whole, and delivered to a local pod with
//! `bpf_redirect_peer`.
//!
//! On a fast-path plane the frame goes to the AF_XDP forwarder before any of this, when a
//! socket is bound for its receive queue (see `hand_to_forwarder`); while none is (the agent
//! restarting), this program carries the plane itself.

use ctpath_common::{
    flow::{flow_hash, vxlan_source_port},
    maps::{
        endpoint_kind, node_flags, port_flags, Endpoint, NodeConfig, PodPort, Rewrite, NO_POLICY,
        XSK_FRAME_ROOM,
    },
    wire::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HDR_LEN, IPPROTO_TCP, IPPROTO_UDP, VXLAN_ENCAP_LEN},
    Counter, DropReason,
};

use crate::{
    arp,
    conntrack::{self, Parties},
    context::PacketContext,
    icmp, maps,
    packet::{header_at, write_at, EthHdr},
    parse::{self, Ipv4Packet, Payload},
    route, service, spoof, stats, vxlan,
};

#[inline(always)]
pub fn try_from_pod<C: PacketContext>(ctx: &C) -> Result<u32, DropReason> {
    let ifindex = ctx.ingress_ifindex();
    let port = maps::pod_port(ifindex);
    if let Some(action) = port.and_then(|port| hand_to_forwarder(ctx, &port)) {
        stats::count(ctx, Counter::PodToForwarder);
        return Ok(action);
    }
    let frame = parse::parse_frame(ctx, 0)?;
    let Some(node) = maps::node() else {
        // Not configured yet: leave the node as it was without ctpath.
        stats::count(ctx, Counter::PodPassed);
        return Ok(C::PASS);
    };
    let port = port.ok_or(DropReason::UnconfiguredPort)?;
    spoof::check(ifindex, &port, &frame)?;
    match frame.payload {
        Payload::Arp(request) => {
            let target = arp::resolve(&request, port.vni, arp::answerable_to_local_pod)?;
            let mac = if matches!(target.kind, endpoint_kind::GATEWAY | endpoint_kind::SERVICE) {
                node.router_mac
            } else {
                target.mac
            };
            stats::count(ctx, Counter::PodArpReplied);
            arp::reply_in_place(ctx, 0, &request, mac)?;
            Ok(bounce(ctx))
        }
        Payload::Ipv4(packet) => forward(ctx, node, &port, &frame.eth, &packet),
        Payload::Other => {
            stats::count(ctx, Counter::PodPassed);
            Ok(C::PASS)
        }
    }
}

/// On a fast-path plane, IPv4 and ARP go to the AF_XDP forwarder, which does all of the rest
/// with the same semantics; other ethertypes, and everything while no socket is bound for this
/// receive queue, stay here.
#[inline(always)]
fn hand_to_forwarder<C: PacketContext>(ctx: &C, port: &PodPort) -> Option<u32> {
    if port.flags & port_flags::FAST_PATH == 0 {
        return None;
    }
    if ctx.len() + VXLAN_ENCAP_LEN as u64 > XSK_FRAME_ROOM as u64 {
        return None;
    }
    let ethertype = header_at::<EthHdr, _>(ctx, 0)?.ethertype();
    if ethertype != ETHERTYPE_IPV4 && ethertype != ETHERTYPE_ARP {
        return None;
    }
    ctx.hand_to_forwarder(port.xsk_base)
}

#[inline(always)]
fn forward<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    port: &PodPort,
    eth: &EthHdr,
    packet: &Ipv4Packet,
) -> Result<u32, DropReason> {
    if exceeds_mtu(ctx, packet, port.mtu) {
        if ctx.gso_size() != 0 {
            // No ICMP from a GSO packet: cutting it down to an error would leave its
            // segmentation state behind. A pod whose MTU is the plane's never sends one.
            return Err(DropReason::MtuExceeded);
        }
        if !packet.dont_fragment() {
            return Err(DropReason::MtuExceeded);
        }
        stats::count(ctx, Counter::IcmpFragNeededSent);
        icmp::frag_needed_in_place(
            ctx,
            port,
            node.router_mac,
            eth.src,
            &packet.header,
            packet.header_len,
        )?;
        return Ok(bounce(ctx));
    }
    let routed = if node.flags & node_flags::SERVICES == 0 {
        Routed::direct(endpoint(port.vni, packet.header.dst)?)
    } else {
        translate(ctx, node, port.vni, packet)?
    };
    let destination = routed.destination;
    let receiver_policy = match destination.kind {
        endpoint_kind::LOCAL => destination.policy,
        endpoint_kind::REMOTE => NO_POLICY,
        _ => return Err(DropReason::UnknownDestination),
    };
    // Conntrack and the rules see the connection between the client and the backend: a
    // packet to a service as translated (before), a backend's reply as it came (translated
    // after), and an ICMP error about one of theirs likewise.
    let to_backend = matches!(
        routed.translation,
        Translation::ToBackend | Translation::ErrorToBackend
    );
    let parties = Parties {
        vni: port.vni,
        sender_policy: port.policy,
        receiver_policy,
        translated: to_backend.then_some(&routed.rewrite),
    };
    conntrack::admit(ctx, node, packet, &parties)?;
    match routed.translation {
        Translation::FromService => service::rewrite(ctx, ETH_HDR_LEN, packet, &routed.rewrite)?,
        Translation::ErrorFromService => {
            // Read again rather than kept from `translate`: the stack has no room for it.
            let quoted = conntrack::quoted(ctx, port.vni, packet, packet.header.dst)
                .ok_or(DropReason::ServiceRewriteFailed)?;
            service::rewrite_error(ctx, ETH_HDR_LEN, packet, &quoted, &routed.rewrite)?
        }
        _ => {}
    }
    let src_mac = if eth.dst == node.router_mac {
        node.router_mac
    } else {
        eth.src
    };
    match destination.kind {
        endpoint_kind::LOCAL => {
            stats::count(ctx, Counter::PodRedirectedLocal);
            write(ctx, 0, readdressed(&destination, src_mac))?;
            Ok(ctx.redirect_to_pod(destination.ifindex))
        }
        endpoint_kind::REMOTE => {
            let hop = route::towards(ctx, node, destination.vtep)?;
            let hash = leaving_hash(&routed, packet);
            stats::count(ctx, Counter::PodEncapsulated);
            vxlan::encapsulate(
                ctx,
                node,
                &hop,
                readdressed(&destination, src_mac),
                destination.vtep,
                port.vni,
                vxlan_source_port(hash),
            )?;
            Ok(ctx.redirect(hop.ifindex))
        }
        _ => Err(DropReason::UnknownDestination),
    }
}

/// The flow hash of `packet` as it leaves (the VXLAN source port's).
#[inline(always)]
fn leaving_hash(routed: &Routed, packet: &Ipv4Packet) -> u32 {
    let (header, l4) = (&packet.header, &packet.l4);
    let (src, dst) = match routed.translation {
        Translation::None => (header.src, header.dst),
        _ => (routed.rewrite.src, routed.rewrite.dst),
    };
    let (src_port, dst_port) = match (
        routed.translation,
        matches!(header.protocol, IPPROTO_TCP | IPPROTO_UDP),
    ) {
        (Translation::ToBackend | Translation::FromService, true) => {
            (routed.rewrite.src_port, routed.rewrite.dst_port)
        }
        _ => (l4.src_port, l4.dst_port),
    };
    flow_hash(src, dst, header.protocol, src_port, dst_port)
}

/// How a packet was translated on its way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Translation {
    None,
    /// A packet to a service, now to one of its backends.
    ToBackend,
    /// A backend's reply, now from the service.
    FromService,
    /// An ICMP error to a service's virtual IP about a reply from it, now to the backend.
    ErrorToBackend,
    /// An ICMP error about a packet from a client to a service's backend, now from the
    /// service.
    ErrorFromService,
}

/// Where a packet goes, and how it was translated on its way there.
struct Routed {
    destination: Endpoint,
    translation: Translation,
    /// Unless `translation` is `None`, the addresses (and for a TCP or UDP packet the ports)
    /// it leaves with.
    rewrite: Rewrite,
}

impl Routed {
    #[inline(always)]
    fn direct(destination: Endpoint) -> Routed {
        Routed {
            destination,
            translation: Translation::None,
            rewrite: Rewrite::default(),
        }
    }
}

/// The endpoint with address `ip` on plane `vni`.
#[inline(always)]
fn endpoint(vni: u32, ip: [u8; 4]) -> Result<Endpoint, DropReason> {
    maps::endpoint(vni, ip).ok_or(DropReason::UnknownDestination)
}

/// Where `packet` goes on plane `vni` of a node with services, and how it is translated: a
/// backend's reply of a translated connection comes from the service, and a packet to a
/// service's virtual IP goes to a backend; an ICMP error about a packet of a translated
/// connection follows its connection. A packet (or error) to a service is translated in place
/// here, one from the backend's side once conntrack has seen it as it came.
#[inline(always)]
fn translate<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    vni: u32,
    packet: &Ipv4Packet,
) -> Result<Routed, DropReason> {
    let tuple = conntrack::summary_of(vni, packet);
    if tuple.is_icmp_error() {
        return translate_error(ctx, node, vni, packet);
    }
    let (rewrite, translation) = match service::from_backend(node, &tuple) {
        Some(rewrite) => (rewrite, Translation::FromService),
        None => {
            let destination = endpoint(vni, packet.header.dst)?;
            if destination.kind != endpoint_kind::SERVICE {
                return Ok(Routed::direct(destination));
            }
            let rewrite = service::to_service(node, &tuple)?;
            service::rewrite(ctx, ETH_HDR_LEN, packet, &rewrite)?;
            (rewrite, Translation::ToBackend)
        }
    };
    Ok(Routed {
        destination: endpoint(vni, rewrite.dst)?,
        translation,
        rewrite,
    })
}

/// [`translate`] for the ICMP error `packet`. An error to a service's virtual IP about
/// nothing it translated is `service_unsupported`; any other error about nothing translated
/// goes on as it is.
#[inline(always)]
fn translate_error<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    vni: u32,
    packet: &Ipv4Packet,
) -> Result<Routed, DropReason> {
    let destination = endpoint(vni, packet.header.dst)?;
    let to_virtual_ip = destination.kind == endpoint_kind::SERVICE;
    let Some((quoted, rewrite)) = service::of_error(ctx, node, vni, to_virtual_ip, packet) else {
        if to_virtual_ip {
            return Err(DropReason::ServiceUnsupported);
        }
        return Ok(Routed::direct(destination));
    };
    let translation = if to_virtual_ip {
        service::rewrite_error(ctx, ETH_HDR_LEN, packet, &quoted, &rewrite)?;
        Translation::ErrorToBackend
    } else {
        Translation::ErrorFromService
    };
    Ok(Routed {
        destination: endpoint(vni, rewrite.dst)?,
        translation,
        rewrite,
    })
}

/// Whether `packet` is larger than the plane's `mtu`: a GSO packet (tc hook) by the segments
/// it will be cut into (headers plus `gso_size`), as the kernel's own forwarding checks it.
#[inline(always)]
fn exceeds_mtu<C: PacketContext>(ctx: &C, packet: &Ipv4Packet, mtu: u16) -> bool {
    let gso_size = ctx.gso_size();
    if gso_size == 0 {
        return packet.header.total_len() > mtu;
    }
    let segment = packet.header_len as u32 + packet.l4.header_len as u32 + gso_size;
    segment > mtu as u32
}

/// The frame's Ethernet header for delivery to `destination`.
#[inline(always)]
fn readdressed(destination: &Endpoint, src_mac: [u8; 6]) -> EthHdr {
    EthHdr::new(destination.mac, src_mac, ETHERTYPE_IPV4)
}

#[inline(always)]
fn write<C: PacketContext>(ctx: &C, offset: usize, eth: EthHdr) -> Result<(), DropReason> {
    write_at(ctx, offset, eth).ok_or(DropReason::EthTruncated)
}

/// Sends an answer back out of the device the frame came in on.
///
/// A redirect to the ingress device rather than `XDP_TX`: a veth flushes `XDP_TX` frames to its
/// peer only when the peer runs an XDP program itself, so a pod (or a node without ctpath)
/// behind a veth would never see them; a redirect is flushed to any peer with NAPI (GRO on).
/// On the tc hook the redirect is a transmit on the ingress device, which a veth hands to its
/// peer whatever the peer's settings.
#[inline(always)]
pub fn bounce<C: PacketContext>(ctx: &C) -> u32 {
    ctx.redirect(ctx.ingress_ifindex())
}
