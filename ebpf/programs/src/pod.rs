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
//! On a fast-path plane the frame goes to the AF_XDP forwarder before any of this, when a
//! socket is bound for its receive queue (see `hand_to_forwarder`); while none is (the agent
//! restarting), this program carries the plane itself.

use aya_ebpf::{bindings::xdp_action, helpers::generated::bpf_redirect, programs::XdpContext};
use ctpath_common::{
    flow::{flow_hash, vxlan_source_port},
    maps::{endpoint_kind, port_flags, Endpoint, NodeConfig, PodPort, NO_POLICY, XSK_FRAME_ROOM},
    wire::{ETHERTYPE_ARP, ETHERTYPE_IPV4, VXLAN_ENCAP_LEN},
    Counter, DropReason,
};

use crate::{
    arp, conntrack, icmp, maps,
    packet::{frame_len, header_at, write_at, EthHdr},
    parse::{self, Ipv4Packet, Payload},
    route, spoof, stats, vxlan,
};

pub fn try_from_pod(ctx: &XdpContext) -> Result<u32, DropReason> {
    let ifindex = ctx.ingress_ifindex() as u32;
    let port = maps::pod_port(ifindex);
    if let Some(action) = port.and_then(|port| hand_to_forwarder(ctx, &port)) {
        stats::count(ctx, Counter::PodToForwarder);
        return Ok(action);
    }
    let frame = parse::parse_frame(ctx, 0)?;
    let Some(node) = maps::node() else {
        // Not configured yet: leave the node as it was without ctpath.
        stats::count(ctx, Counter::PodPassed);
        return Ok(xdp_action::XDP_PASS);
    };
    let port = port.ok_or(DropReason::UnconfiguredPort)?;
    spoof::check(ifindex, &port, &frame)?;
    match frame.payload {
        Payload::Arp(request) => {
            let target = arp::resolve(&request, port.vni, arp::answerable_to_local_pod)?;
            let mac = if target.kind == endpoint_kind::GATEWAY {
                node.router_mac
            } else {
                target.mac
            };
            stats::count(ctx, Counter::PodArpReplied);
            arp::reply_in_place(ctx, 0, &request, mac)?;
            Ok(bounce(ctx))
        }
        Payload::Ipv4(packet) => forward(ctx, &node, &port, &frame.eth, &packet),
        Payload::Other => {
            stats::count(ctx, Counter::PodPassed);
            Ok(xdp_action::XDP_PASS)
        }
    }
}

/// On a fast-path plane, IPv4 and ARP go to the AF_XDP forwarder, which does all of the rest
/// with the same semantics; other ethertypes, and everything while no socket is bound for this
/// receive queue, stay here.
#[inline(always)]
fn hand_to_forwarder(ctx: &XdpContext, port: &PodPort) -> Option<u32> {
    if port.flags & port_flags::FAST_PATH == 0 {
        return None;
    }
    if frame_len(ctx) + VXLAN_ENCAP_LEN as u64 > XSK_FRAME_ROOM as u64 {
        return None;
    }
    let ethertype = header_at::<EthHdr>(ctx, 0)?.ethertype();
    if ethertype != ETHERTYPE_IPV4 && ethertype != ETHERTYPE_ARP {
        return None;
    }
    maps::to_forwarder(port.xsk_base, ctx.rx_queue_index())
}

#[inline(always)]
fn forward(
    ctx: &XdpContext,
    node: &NodeConfig,
    port: &PodPort,
    eth: &EthHdr,
    packet: &Ipv4Packet,
) -> Result<u32, DropReason> {
    if packet.header.total_len() > port.mtu {
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
    let destination =
        maps::endpoint(port.vni, packet.header.dst).ok_or(DropReason::UnknownDestination)?;
    let receiver_policy = match destination.kind {
        endpoint_kind::LOCAL => destination.policy,
        endpoint_kind::REMOTE => NO_POLICY,
        _ => return Err(DropReason::UnknownDestination),
    };
    conntrack::admit(ctx, node, port.vni, packet, port.policy, receiver_policy)?;
    let src_mac = if eth.dst == node.router_mac {
        node.router_mac
    } else {
        eth.src
    };
    match destination.kind {
        endpoint_kind::LOCAL => {
            stats::count(ctx, Counter::PodRedirectedLocal);
            readdress(ctx, &destination, src_mac)?;
            Ok(redirect(destination.ifindex))
        }
        endpoint_kind::REMOTE => {
            let hop = route::towards(ctx, node, destination.vtep)?;
            let hash = flow_hash(
                packet.header.src,
                packet.header.dst,
                packet.header.protocol,
                packet.l4.src_port,
                packet.l4.dst_port,
            );
            stats::count(ctx, Counter::PodEncapsulated);
            readdress(ctx, &destination, src_mac)?;
            vxlan::encapsulate(
                ctx,
                node,
                &hop,
                destination.vtep,
                port.vni,
                vxlan_source_port(hash),
            )?;
            Ok(redirect(hop.ifindex))
        }
        _ => Err(DropReason::UnknownDestination),
    }
}

/// Rewrites the frame's Ethernet addresses for delivery to `destination`.
#[inline(always)]
fn readdress(ctx: &XdpContext, destination: &Endpoint, src_mac: [u8; 6]) -> Result<(), DropReason> {
    write_at(
        ctx,
        0,
        EthHdr::new(destination.mac, src_mac, ETHERTYPE_IPV4),
    )
    .ok_or(DropReason::EthTruncated)
}

#[inline(always)]
pub fn redirect(ifindex: u32) -> u32 {
    // SAFETY: `bpf_redirect` only records the target interface for the XDP_REDIRECT verdict it
    // returns; it reads no memory.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}

/// Sends an answer back out of the device the frame came in on.
///
/// A redirect to the ingress device rather than `XDP_TX`: a veth flushes `XDP_TX` frames to its
/// peer only when the peer runs an XDP program itself, so a pod (or a node without ctpath)
/// behind a veth would never see them; a redirect is flushed to any peer with NAPI (GRO on).
#[inline(always)]
pub fn bounce(ctx: &XdpContext) -> u32 {
    redirect(ctx.ingress_ifindex() as u32)
}
