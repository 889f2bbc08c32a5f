//! `from_underlay`: what happens to a frame arriving on the node's underlay interface. VXLAN
//! addressed to this node's VTEP is accepted only from a known node and for a known VNI; its
//! inner frame is validated like a pod's, then delivered to the local pod it is addressed to
//! on that plane, or, for an ARP request about a local pod (from a node running the kernel's
//! vxlan device), answered back over VXLAN. Everything else is the node's own traffic and goes
//! to the kernel untouched.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use ctpath_common::{
    maps::{endpoint_kind, NO_POLICY},
    wire::{ETHERTYPE_IPV4, VXLAN_ENCAP_LEN},
    Counter, DropReason,
};

use crate::{
    arp, conntrack, maps,
    packet::{write_at, EthHdr},
    parse::{self, Payload},
    pod::{bounce, redirect},
    stats, vxlan,
};

pub fn try_from_underlay(ctx: &XdpContext) -> Result<u32, DropReason> {
    let received = match maps::node() {
        Some(node) => vxlan::receive(ctx, &node)?.map(|received| (node, received)),
        None => None,
    };
    let Some((node, received)) = received else {
        stats::count(ctx, Counter::UnderlayPassed);
        return Ok(xdp_action::XDP_PASS);
    };
    if !maps::is_known_vtep(received.src_vtep) {
        return Err(DropReason::UnknownVtep);
    }
    let network = maps::network(received.vni).ok_or(DropReason::UnknownVni)?;
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
            Ok(redirect(destination.ifindex))
        }
        Payload::Other => Err(DropReason::InnerUnsupported),
    }
}
