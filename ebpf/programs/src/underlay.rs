//! `from_underlay`: what happens to a frame arriving on the node's underlay interface. VXLAN
//! addressed to this node's VTEP is accepted only from a known node and for a known VNI; its
//! inner frame is validated like a pod's, then delivered to the local pod it is addressed to
//! on that plane, or, for an ARP request about a local pod (from a node running the kernel's
//! vxlan device), answered back over VXLAN. Everything else is the node's own traffic and goes
//! to the kernel untouched.
//!
//! The same code runs as the XDP program and, behind it, as the tc program
//! `from_underlay_tc` (`PacketContext`): XDP hands VXLAN of planes with `datapath: tc` to tc
//! once it knows the plane (see `hand_to_tc`), and tc carries it with the same checks. The tc
//! program leaves uncounted what is not VXLAN for this node: XDP counted it already.
//!
//! VXLAN of a fast-path plane goes to the AF_XDP forwarder once the outer headers are known
//! to be VXLAN for this node, when a socket is bound for the receive queue; while none is,
//! this program carries it.

use ctpath_common::{
    maps::{endpoint_kind, network_flags, Network, NodeConfig, NO_POLICY, XSK_FRAME_ROOM},
    wire::{ETHERTYPE_IPV4, VXLAN_ENCAP_LEN},
    Counter, DropReason,
};

use crate::{
    arp, conntrack,
    context::PacketContext,
    maps,
    packet::{write_at, EthHdr},
    parse::{self, Payload},
    pod::bounce,
    stats, vxlan,
};

pub fn try_from_underlay<C: PacketContext>(ctx: &C) -> Result<u32, DropReason> {
    let received = match maps::node() {
        Some(node) => vxlan::receive(ctx, &node)?.map(|received| (node, received)),
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
    if let Some(action) = hand_to_forwarder(ctx, &node, network.as_ref()) {
        stats::count(ctx, Counter::UnderlayToForwarder);
        return Ok(action);
    }
    if let Some(action) = hand_to_tc(ctx, network.as_ref()) {
        stats::count(ctx, Counter::UnderlayToTc);
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
            vxlan::turn_around(ctx, &node, &received)?;
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
            conntrack::admit(
                ctx,
                &node,
                received.vni,
                &packet,
                NO_POLICY,
                destination.policy,
            )?;
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

/// VXLAN of a plane with `datapath: tc` goes on to the tc program behind XDP
/// (`from_underlay_tc`), which delivers into the pod with `bpf_redirect_peer`: an XDP redirect
/// into a veth reaches the pod only when the pod's side runs NAPI (GRO on, or XDP), which a pod
/// with the kernel's defaults does not. `None` on the tc hook itself and for other planes.
#[inline(always)]
fn hand_to_tc<C: PacketContext>(ctx: &C, network: Option<&Network>) -> Option<u32> {
    let network = network?;
    if network.flags & network_flags::TC == 0 {
        return None;
    }
    ctx.hand_to_tc()
}
