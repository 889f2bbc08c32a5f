//! VXLAN (RFC 7348) on the underlay: recognising the packets addressed to this node's VTEP,
//! pushing and popping the 50 bytes of outer Ethernet/IPv4/UDP/VXLAN, and turning a received
//! packet's outer headers around to answer its sender.
//!
//! What ctpath sends is what the Linux vxlan device sends: DF set, UDP checksum 0, destination
//! port 4789, source port from a hash of the inner flow so underlay ECMP and RSS spread flows.

use ctpath_common::{
    maps::NodeConfig,
    wire::{
        ETHERTYPE_IPV4, ETH_HDR_LEN, IPPROTO_UDP, IPV4_FLAG_DF, IPV4_FLAG_MF,
        IPV4_FRAG_OFFSET_MASK, IPV4_MIN_HDR_LEN, UDP_HDR_LEN, VXLAN_ENCAP_LEN,
        VXLAN_FLAG_VNI_VALID, VXLAN_HDR_LEN, VXLAN_PORT,
    },
    DropReason,
};

use crate::{
    context::PacketContext,
    packet::{header_at, write_at, EthHdr, Ipv4Hdr, UdpHdr, VxlanHdr},
    route::NextHop,
};

const IP_OFFSET: usize = ETH_HDR_LEN;
const UDP_OFFSET: usize = IP_OFFSET + IPV4_MIN_HDR_LEN;
const VXLAN_OFFSET: usize = UDP_OFFSET + UDP_HDR_LEN;

/// The outer headers of a VXLAN packet, as one 50-byte block.
#[repr(C)]
#[derive(Clone, Copy)]
struct OuterHdr {
    eth: EthHdr,
    ip: Ipv4Hdr,
    udp: UdpHdr,
    vxlan: VxlanHdr,
}
const _: () = assert!(core::mem::size_of::<OuterHdr>() == VXLAN_ENCAP_LEN);

/// The outer headers and the inner Ethernet header behind them, written in one go.
#[repr(C)]
#[derive(Clone, Copy)]
struct Encapsulated {
    outer: OuterHdr,
    inner: EthHdr,
}

/// A VXLAN packet addressed to this node, as far as the outer headers tell.
pub struct Received {
    pub src_mac: [u8; 6],
    pub src_vtep: [u8; 4],
    pub src_port: u16,
    pub vni: u32,
}

/// Recognises a VXLAN packet for this node's VTEP. `Ok(None)`: not VXLAN for us (the node's
/// own traffic, left to the kernel). `Err`: VXLAN for us that is malformed.
#[inline(always)]
pub fn receive<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
) -> Result<Option<Received>, DropReason> {
    let Some(eth) = header_at::<EthHdr, _>(ctx, 0) else {
        return Ok(None);
    };
    if eth.ethertype() != ETHERTYPE_IPV4 {
        return Ok(None);
    }
    let Some(ip) = header_at::<Ipv4Hdr, _>(ctx, IP_OFFSET) else {
        return Ok(None);
    };
    // VXLAN senders use no IPv4 options; fragments and anything else go to the kernel.
    let fragmented = ip.flags_frag() & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK) != 0;
    if ip.version() != 4
        || ip.ihl() != 5
        || ip.dst != node.underlay_ip
        || ip.protocol != IPPROTO_UDP
        || fragmented
    {
        return Ok(None);
    }
    let Some(udp) = header_at::<UdpHdr, _>(ctx, UDP_OFFSET) else {
        return Ok(None);
    };
    if udp.dst_port() != VXLAN_PORT {
        return Ok(None);
    }
    let vxlan: VxlanHdr = header_at(ctx, VXLAN_OFFSET).ok_or(DropReason::VxlanTruncated)?;
    if ETH_HDR_LEN + ip.total_len() as usize > ctx.len() as usize
        || (ip.total_len() as usize) < IPV4_MIN_HDR_LEN + UDP_HDR_LEN + VXLAN_HDR_LEN + ETH_HDR_LEN
    {
        return Err(DropReason::VxlanTruncated);
    }
    if vxlan.flags & VXLAN_FLAG_VNI_VALID == 0 {
        return Err(DropReason::VxlanBadFlags);
    }
    Ok(Some(Received {
        src_mac: eth.src,
        src_vtep: ip.src,
        src_port: udp.src_port(),
        vni: vxlan.vni(),
    }))
}

/// Outer headers from this node to `dst_vtep` around an inner frame of `inner_len` bytes.
#[inline(always)]
fn outer(
    eth: EthHdr,
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    src_port: u16,
    vni: u32,
    inner_len: usize,
) -> OuterHdr {
    let udp_len = (UDP_HDR_LEN + VXLAN_HDR_LEN + inner_len) as u16;
    OuterHdr {
        eth,
        ip: Ipv4Hdr::new(
            src_ip,
            dst_ip,
            IPPROTO_UDP,
            (IPV4_MIN_HDR_LEN as u16).wrapping_add(udp_len),
            IPV4_FLAG_DF,
        ),
        udp: UdpHdr::without_checksum(src_port, VXLAN_PORT, udp_len),
        vxlan: VxlanHdr::new(vni),
    }
}

/// Wraps the frame in `ctx` into VXLAN with network identifier `vni`, from this node to
/// `dst_vtep` through `hop`, the inner frame's Ethernet header becoming `inner`.
///
/// For a GSO packet (tc hook) the outer lengths are those of the whole skb, wrapped to 16
/// bits; the kernel writes each segment's own lengths and header checksum when it segments.
#[inline(always)]
pub fn encapsulate<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    hop: &NextHop,
    inner: EthHdr,
    dst_vtep: [u8; 4],
    vni: u32,
    src_port: u16,
) -> Result<(), DropReason> {
    let inner_len = ctx.len() as usize;
    ctx.push_tunnel(VXLAN_ENCAP_LEN as u32)?;
    let eth = EthHdr::new(hop.dst_mac, hop.src_mac, ETHERTYPE_IPV4);
    let encapsulated = Encapsulated {
        outer: outer(eth, node.underlay_ip, dst_vtep, src_port, vni, inner_len),
        inner,
    };
    write_at(ctx, 0, encapsulated).ok_or(DropReason::AdjustFailed)
}

/// Strips the outer headers of a received VXLAN packet; the frame's Ethernet header must be
/// written afterwards (see [`PacketContext::pop_tunnel`]).
#[inline(always)]
pub fn decapsulate<C: PacketContext>(ctx: &C) -> Result<(), DropReason> {
    ctx.pop_tunnel(VXLAN_ENCAP_LEN as u32)
}

/// Rewrites the outer headers of `received` (whose inner frame was answered in place) so the
/// packet goes back to its sender on the link it came from, with the same VNI.
#[inline(always)]
pub fn turn_around<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    received: &Received,
) -> Result<(), DropReason> {
    let inner_len = ctx.len() as usize - VXLAN_ENCAP_LEN;
    let eth = EthHdr::new(received.src_mac, node.underlay_mac, ETHERTYPE_IPV4);
    let headers = outer(
        eth,
        node.underlay_ip,
        received.src_vtep,
        received.src_port,
        received.vni,
        inner_len,
    );
    write_at(ctx, 0, headers).ok_or(DropReason::VxlanTruncated)
}
