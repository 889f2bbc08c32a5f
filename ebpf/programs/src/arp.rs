//! The ARP responder: pods' requests are answered by the node (no flooding), from what the
//! agent put in `ENDPOINTS`. Works on a frame at any offset, so the same code answers a pod on
//! this node (offset 0) and a pod behind a kernel VXLAN node (the inner frame).

use ctpath_common::{
    maps::{endpoint_kind, Endpoint},
    wire::{ARP_OP_REQUEST, ETHERTYPE_ARP, ETH_HDR_LEN},
    DropReason,
};

use crate::{
    context::PacketContext,
    maps,
    packet::{write_at, ArpHdr, EthHdr},
};

/// The endpoint whose MAC answers `request` on plane `vni`, if the request is one ctpath
/// answers. `answerable` says which kinds of endpoint may be answered for.
#[inline(always)]
pub fn resolve(
    request: &ArpHdr,
    vni: u32,
    answerable: fn(u32) -> bool,
) -> Result<Endpoint, DropReason> {
    if request.operation() != ARP_OP_REQUEST {
        return Err(DropReason::ArpNotRequest);
    }
    match maps::endpoint(vni, request.target_ip) {
        Some(endpoint) if answerable(endpoint.kind) => Ok(endpoint),
        _ => Err(DropReason::ArpUnknownTarget),
    }
}

/// Pods on this node may resolve any address of their plane, the gateway and services'
/// virtual IPs included.
pub fn answerable_to_local_pod(kind: u32) -> bool {
    matches!(
        kind,
        endpoint_kind::LOCAL
            | endpoint_kind::REMOTE
            | endpoint_kind::GATEWAY
            | endpoint_kind::SERVICE
    )
}

/// Over VXLAN, a node answers only for its own pods: the sender's node answers for the rest.
pub fn answerable_over_vxlan(kind: u32) -> bool {
    kind == endpoint_kind::LOCAL
}

/// Rewrites the ARP request at `offset` into the reply that `mac` has the requested address,
/// addressed back to the requester.
#[inline(always)]
pub fn reply_in_place<C: PacketContext>(
    ctx: &C,
    offset: usize,
    request: &ArpHdr,
    mac: [u8; 6],
) -> Result<(), DropReason> {
    write_at(
        ctx,
        offset,
        EthHdr::new(request.sender_mac, mac, ETHERTYPE_ARP),
    )
    .ok_or(DropReason::ArpTruncated)?;
    write_at(ctx, offset + ETH_HDR_LEN, ArpHdr::reply_to(request, mac))
        .ok_or(DropReason::ArpTruncated)
}
