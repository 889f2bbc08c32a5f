//! Frame validation: what the programs accept, and why they drop the rest. Works on an
//! Ethernet frame at any offset: 0 for what a pod sends, `VXLAN_ENCAP_LEN` for the inner frame
//! of a VXLAN packet.
//!
//! The checks and their order are the ones of the reference model
//! (`ctpath_dataplane::model::classify`): the first failing check names the drop reason. IPv4
//! header checksums are not verified here (the receiving kernel does); fragments are dropped,
//! since ctpath does not reassemble and pods are expected to use path-MTU discovery.

use ctpath_common::{
    wire::{
        ARP_HTYPE_ETHERNET, ARP_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_ADDR_LEN, ETH_HDR_LEN,
        ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_HDR_LEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
        IPV4_FLAG_DF, IPV4_FLAG_MF, IPV4_FRAG_OFFSET_MASK, IPV4_MIN_HDR_LEN, TCP_MIN_HDR_LEN,
        UDP_HDR_LEN,
    },
    DropReason,
};

use crate::context::PacketContext;
use crate::packet::{header_at, ArpHdr, EthHdr, IcmpHdr, Ipv4Hdr, TcpHdr, UdpHdr};

/// A frame that passed validation.
pub struct Frame {
    pub eth: EthHdr,
    pub payload: Payload,
}

pub enum Payload {
    Arp(ArpHdr),
    Ipv4(Ipv4Packet),
    /// Any other ethertype (IPv6, VLAN, ...): not inspected.
    Other,
}

/// A validated, unfragmented IPv4 packet.
#[derive(Clone, Copy)]
pub struct Ipv4Packet {
    pub header: Ipv4Hdr,
    /// Length of the header with its options.
    pub header_len: usize,
    /// Offset of the layer-4 header from the start of the packet data.
    pub l4_offset: usize,
    pub l4: L4,
}

impl Ipv4Packet {
    pub fn dont_fragment(&self) -> bool {
        self.header.flags_frag() & IPV4_FLAG_DF != 0
    }
}

/// The part of a flow above IPv4: ports for TCP and UDP; for ICMP echo the identifier in both
/// port slots (so request and reply share a conntrack key); zeros otherwise.
#[derive(Clone, Copy)]
pub struct L4 {
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags; 0 for other protocols.
    pub tcp_flags: u8,
    /// ICMP type; 0 for other protocols.
    pub icmp_type: u8,
    /// Length of the layer-4 header (TCP with options, UDP, ICMP); 0 for other protocols.
    pub header_len: u8,
}

impl L4 {
    const NONE: L4 = L4 {
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        icmp_type: 0,
        header_len: 0,
    };
}

/// Validates the Ethernet frame at `base` in `ctx` down to its layer-4 header.
#[inline(always)]
pub fn parse_frame<C: PacketContext>(ctx: &C, base: usize) -> Result<Frame, DropReason> {
    let eth: EthHdr = header_at(ctx, base).ok_or(DropReason::EthTruncated)?;
    let payload = match eth.ethertype() {
        ETHERTYPE_ARP => Payload::Arp(parse_arp(ctx, base + ETH_HDR_LEN)?),
        ETHERTYPE_IPV4 => Payload::Ipv4(parse_ipv4(ctx, base + ETH_HDR_LEN)?),
        _ => Payload::Other,
    };
    Ok(Frame { eth, payload })
}

#[inline(always)]
fn parse_arp<C: PacketContext>(ctx: &C, offset: usize) -> Result<ArpHdr, DropReason> {
    const _: () = assert!(core::mem::size_of::<ArpHdr>() == ARP_LEN);
    let arp: ArpHdr = header_at(ctx, offset).ok_or(DropReason::ArpTruncated)?;
    if arp.htype() != ARP_HTYPE_ETHERNET
        || arp.ptype() != ETHERTYPE_IPV4
        || arp.hlen as usize != ETH_ADDR_LEN
        || arp.plen != 4
    {
        return Err(DropReason::ArpUnsupported);
    }
    Ok(arp)
}

#[inline(always)]
fn parse_ipv4<C: PacketContext>(ctx: &C, offset: usize) -> Result<Ipv4Packet, DropReason> {
    let header: Ipv4Hdr = header_at(ctx, offset).ok_or(DropReason::Ipv4Truncated)?;
    if header.version() != 4 {
        return Err(DropReason::Ipv4BadVersion);
    }
    let header_len = header.ihl() as usize * 4;
    if header_len < IPV4_MIN_HDR_LEN {
        return Err(DropReason::Ipv4BadIhl);
    }
    // Against the whole packet: on the tc hook only its linear part is readable, and options
    // beyond it are never read.
    let len = ctx.len() as usize;
    if offset + header_len > len {
        return Err(DropReason::Ipv4Truncated);
    }
    let total_len = header.total_len() as usize;
    if total_len < header_len || offset + total_len > len {
        return Err(DropReason::Ipv4BadTotalLength);
    }
    let flags_frag = header.flags_frag();
    if flags_frag & IPV4_FLAG_MF != 0 || flags_frag & IPV4_FRAG_OFFSET_MASK != 0 {
        return Err(DropReason::Ipv4Fragment);
    }
    let l4_offset = offset + header_len;
    let l4_len = total_len - header_len;
    let l4 = match header.protocol {
        IPPROTO_TCP => parse_tcp(ctx, l4_offset, l4_len)?,
        IPPROTO_UDP => parse_udp(ctx, l4_offset, l4_len)?,
        IPPROTO_ICMP => parse_icmp(ctx, l4_offset, l4_len)?,
        _ => L4::NONE,
    };
    Ok(Ipv4Packet {
        header,
        header_len,
        l4_offset,
        l4,
    })
}

#[inline(always)]
fn parse_tcp<C: PacketContext>(ctx: &C, offset: usize, l4_len: usize) -> Result<L4, DropReason> {
    if l4_len < TCP_MIN_HDR_LEN {
        return Err(DropReason::TcpTruncated);
    }
    let tcp: TcpHdr = header_at(ctx, offset).ok_or(DropReason::TcpTruncated)?;
    let header_len = tcp.data_offset() as usize * 4;
    if header_len < TCP_MIN_HDR_LEN {
        return Err(DropReason::TcpBadDataOffset);
    }
    if header_len > l4_len {
        return Err(DropReason::TcpTruncated);
    }
    Ok(L4 {
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        tcp_flags: tcp.flags,
        icmp_type: 0,
        header_len: header_len as u8,
    })
}

#[inline(always)]
fn parse_udp<C: PacketContext>(ctx: &C, offset: usize, l4_len: usize) -> Result<L4, DropReason> {
    if l4_len < UDP_HDR_LEN {
        return Err(DropReason::UdpTruncated);
    }
    let udp: UdpHdr = header_at(ctx, offset).ok_or(DropReason::UdpTruncated)?;
    let udp_len = udp.len() as usize;
    if udp_len < UDP_HDR_LEN || udp_len > l4_len {
        return Err(DropReason::UdpBadLength);
    }
    Ok(L4 {
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
        header_len: UDP_HDR_LEN as u8,
        ..L4::NONE
    })
}

#[inline(always)]
fn parse_icmp<C: PacketContext>(ctx: &C, offset: usize, l4_len: usize) -> Result<L4, DropReason> {
    if l4_len < ICMP_HDR_LEN {
        return Err(DropReason::IcmpTruncated);
    }
    let icmp: IcmpHdr = header_at(ctx, offset).ok_or(DropReason::IcmpTruncated)?;
    let id = match icmp.icmp_type {
        ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => icmp.echo_id(),
        _ => 0,
    };
    Ok(L4 {
        src_port: id,
        dst_port: id,
        tcp_flags: 0,
        icmp_type: icmp.icmp_type,
        header_len: ICMP_HDR_LEN as u8,
    })
}
