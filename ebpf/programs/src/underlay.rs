//! `from_underlay`: what happens to a frame arriving on the node's underlay interface. VXLAN
//! addressed to this node's VTEP is accepted only from a known node and for a known VNI; its
//! inner frame is validated like a pod's, then delivered to the local pod it is addressed to
//! on that plane, or, for an ARP request about a local pod (from a node running the kernel's
//! vxlan device), answered back over VXLAN. Everything else is the node's own traffic and goes
//! to the kernel untouched.
//!
//! The same code runs as the XDP program and, behind it, as the tc program
//! `from_underlay_tc` (`PacketContext`): XDP hands a packet to tc once it has checked it and
//! found its local destination, when the destination is better served by tc (see
//! `hand_to_tc`), and tc carries it with the same checks. The tc program leaves uncounted what
//! is not VXLAN for this node: XDP counted it already.
//!
//! VXLAN of a fast-path plane goes to the AF_XDP forwarder once the outer headers are known
//! to be VXLAN for this node, when a socket is bound for the receive queue; while none is,
//! this program carries it.

use ctpath_common::{
    maps::{
        endpoint_flags, endpoint_kind, network_flags, node_flags, Endpoint, Network, NodeConfig,
        NO_POLICY, XSK_FRAME_ROOM,
    },
    wire::{ETHERTYPE_IPV4, ETH_HDR_LEN, IPPROTO_TCP, VXLAN_ENCAP_LEN},
    Counter, DropReason,
};

use crate::{
    arp,
    conntrack::{self, Parties},
    context::PacketContext,
    maps,
    packet::{write_at, EthHdr},
    parse::{self, Ipv4Packet, Payload},
    pod::bounce,
    service, stats, vxlan,
};

pub fn try_from_underlay<C: PacketContext>(ctx: &C) -> Result<u32, DropReason> {
    let received = match maps::node() {
        Some(node) => vxlan::receive(ctx, node)?.map(|received| (node, received)),
        None => None,
    };
    let Some((node, received)) = received else {
        if C::FIRST_HOOK {
            stats::count(ctx, Counter::UnderlayPassed);
        }
        return Ok(C::PASS);
    };
    // Looked up once for the three uses below (it was once per use).
    let network = maps::network(received.vni);
    if let Some(action) = hand_to_forwarder(ctx, node, network.as_ref()) {
        stats::count(ctx, Counter::UnderlayToForwarder);
        return Ok(action);
    }
    if !maps::is_known_vtep(received.src_vtep) {
        return Err(DropReason::UnknownVtep);
    }
    let network = network.ok_or(DropReason::UnknownVni)?;
    let inner = parse::parse_frame(ctx, VXLAN_ENCAP_LEN)?;
    match inner.payload {
        Payload::Arp(request) => {
            let target = arp::resolve(&request, received.vni, arp::answerable_over_vxlan)?;
            stats::count(ctx, Counter::UnderlayArpReplied);
            arp::reply_in_place(ctx, VXLAN_ENCAP_LEN, &request, target.mac)?;
            vxlan::turn_around(ctx, node, &received)?;
            Ok(bounce(ctx))
        }
        Payload::Ipv4(packet) => {
            if packet.header.total_len() as u32 > network.mtu {
                return Err(DropReason::MtuExceeded);
            }
            let destination = match maps::endpoint(received.vni, packet.header.dst) {
                Some(endpoint) if endpoint.kind == endpoint_kind::LOCAL => endpoint,
                _ => return Err(DropReason::UnknownDestination),
            };
            if let Some(action) = hand_to_tc(ctx, &network, &destination, packet.header.protocol) {
                stats::count(ctx, Counter::UnderlayToTc);
                return Ok(action);
            }
            let parties = Parties {
                vni: received.vni,
                sender_policy: NO_POLICY,
                receiver_policy: destination.policy,
                translated: None,
            };
            conntrack::admit(ctx, node, &packet, &parties)?;
            if node.flags & node_flags::SERVICES != 0 {
                from_service(ctx, node, received.vni, &packet)?;
            }
            stats::count(ctx, Counter::UnderlayDecapsulated);
            vxlan::decapsulate(ctx)?;
            write_at(
                ctx,
                0,
                EthHdr::new(destination.mac, inner.eth.src, ETHERTYPE_IPV4),
            )
            .ok_or(DropReason::EthTruncated)?;
            Ok(ctx.redirect_to_pod(destination.ifindex))
        }
        Payload::Other => Err(DropReason::InnerUnsupported),
    }
}

/// VXLAN of a fast-path plane goes to the AF_XDP forwarder, which makes every further check
/// itself; `None` for other planes, unknown VNIs (`network` `None`), and while no socket is
/// bound.
#[inline(always)]
fn hand_to_forwarder<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    network: Option<&Network>,
) -> Option<u32> {
    let network = network?;
    if network.flags & network_flags::FAST_PATH == 0 || ctx.len() > XSK_FRAME_ROOM as u64 {
        return None;
    }
    ctx.hand_to_forwarder(node.underlay_xsk_base)
}

/// Which of the two receive paths delivers a packet into a local pod: the XDP redirect into
/// the pod's host veth, or, behind XDP, `from_underlay_tc` with `bpf_redirect_peer` (measured
/// side by side in `docs/decisions/pod-hook.md`, "Receive side"). An XDP redirect into a veth
/// is only delivered when the pod's end runs NAPI ([`endpoint_flags::POD_NAPI`], which the
/// agent sets once it has turned GRO on there), so without it everything goes to tc. With it,
/// TCP is redirected by XDP on every plane (the pod's GRO merges the segments; tc would hand
/// the pod's stack one skb per segment), and the rest of a `datapath: tc` plane goes to tc
/// (one skb straight into the pod costs less than a frame the pod's NAPI turns into one).
/// Called after the inner frame was checked and its destination found, so both paths see the
/// same frame; tc checks it again as its own. `None` on the tc hook itself.
#[inline(always)]
fn hand_to_tc<C: PacketContext>(
    ctx: &C,
    network: &Network,
    destination: &Endpoint,
    protocol: u8,
) -> Option<u32> {
    let redirect = destination.flags & endpoint_flags::POD_NAPI != 0
        && (protocol == IPPROTO_TCP || network.flags & network_flags::TC == 0);
    if redirect {
        return None;
    }
    ctx.hand_to_tc()
}

/// A backend's reply to a client of this node comes from the service, and so does an ICMP
/// error about a packet of the client's to the backend: translated in place.
#[inline(always)]
fn from_service<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    vni: u32,
    packet: &Ipv4Packet,
) -> Result<(), DropReason> {
    const INNER_L3: usize = VXLAN_ENCAP_LEN + ETH_HDR_LEN;
    let tuple = conntrack::summary_of(vni, packet);
    if tuple.is_icmp_error() {
        if let Some((quoted, rewrite)) = service::of_error(ctx, node, vni, false, packet) {
            service::rewrite_error(ctx, INNER_L3, packet, &quoted, &rewrite)?;
        }
    } else if let Some(rewrite) = service::from_backend(node, &tuple) {
        service::rewrite(ctx, INNER_L3, packet, &rewrite)?;
    }
    Ok(())
}
