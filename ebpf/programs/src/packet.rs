//! Bounds-checked access to packet bytes, and the header layouts the programs read.
//!
//! Every read of packet data goes through [`ptr_at`], which checks the access against
//! `data_end` so the verifier accepts it, on either hook's context ([`PacketContext`]). Headers are byte arrays with accessors (alignment 1,
//! big-endian decoding in one place), never multi-byte integers read in place.

use core::mem::size_of;
use ctpath_common::{
    checksum::ipv4_header_checksum,
    wire::{
        ARP_OP_REPLY, DEFAULT_TTL, ICMP_CODE_FRAG_NEEDED, ICMP_DEST_UNREACHABLE,
        VXLAN_FLAG_VNI_VALID,
    },
};

use crate::context::PacketContext;

/// A pointer to a `T` at `offset` bytes into the packet, if the whole `T` lies before
/// `data_end` (read afresh for every check: see [`PacketContext::data_end`]).
#[inline(always)]
pub fn ptr_at<T, C: PacketContext>(ctx: &C, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Reads the header `T` at `offset`; `T` must be one of the byte-array layouts below, for which
/// any alignment and any bit pattern is valid.
#[inline(always)]
pub fn header_at<T: Copy, C: PacketContext>(ctx: &C, offset: usize) -> Option<T> {
    let ptr = ptr_at::<T, C>(ctx, offset)?;
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `ptr` lie inside the packet; the
    // header types are `#[repr(C)]` byte arrays (alignment 1, every bit pattern valid), so an
    // unaligned read of them is sound.
    Some(unsafe { ptr.read_unaligned() })
}

#[inline(always)]
fn be16(bytes: [u8; 2]) -> u16 {
    u16::from_be_bytes(bytes)
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    ethertype: [u8; 2],
}

impl EthHdr {
    pub fn ethertype(&self) -> u16 {
        be16(self.ethertype)
    }
}

/// ARP for Ethernet/IPv4 (RFC 826): the fixed 28-byte layout.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ArpHdr {
    htype: [u8; 2],
    ptype: [u8; 2],
    pub hlen: u8,
    pub plen: u8,
    oper: [u8; 2],
    pub sender_mac: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_mac: [u8; 6],
    pub target_ip: [u8; 4],
}

impl ArpHdr {
    pub fn htype(&self) -> u16 {
        be16(self.htype)
    }
    pub fn ptype(&self) -> u16 {
        be16(self.ptype)
    }
    pub fn operation(&self) -> u16 {
        be16(self.oper)
    }
}

/// The fixed 20 bytes of an IPv4 header; options follow when IHL > 5.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv4Hdr {
    version_ihl: u8,
    pub tos: u8,
    total_len: [u8; 2],
    _id: [u8; 2],
    flags_frag: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    checksum: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

impl Ipv4Hdr {
    pub fn version(&self) -> u8 {
        self.version_ihl >> 4
    }
    /// Header length in 32-bit words.
    pub fn ihl(&self) -> u8 {
        self.version_ihl & 0x0f
    }
    pub fn total_len(&self) -> u16 {
        be16(self.total_len)
    }
    pub fn flags_frag(&self) -> u16 {
        be16(self.flags_frag)
    }
}

/// The fixed 20 bytes of a TCP header.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TcpHdr {
    src_port: [u8; 2],
    dst_port: [u8; 2],
    _seq: [u8; 4],
    _ack: [u8; 4],
    data_offset_reserved: u8,
    pub flags: u8,
    _window: [u8; 2],
    _checksum: [u8; 2],
    _urgent: [u8; 2],
}

impl TcpHdr {
    pub fn src_port(&self) -> u16 {
        be16(self.src_port)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.dst_port)
    }
    /// Header length in 32-bit words.
    pub fn data_offset(&self) -> u8 {
        self.data_offset_reserved >> 4
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct UdpHdr {
    src_port: [u8; 2],
    dst_port: [u8; 2],
    len: [u8; 2],
    checksum: [u8; 2],
}

impl UdpHdr {
    pub fn src_port(&self) -> u16 {
        be16(self.src_port)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.dst_port)
    }
    pub fn len(&self) -> u16 {
        be16(self.len)
    }
}

/// The first 8 bytes of every ICMP message; for echo, `rest` holds identifier and sequence.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IcmpHdr {
    pub icmp_type: u8,
    pub code: u8,
    _checksum: [u8; 2],
    rest: [u8; 4],
}

impl IcmpHdr {
    pub fn echo_id(&self) -> u16 {
        be16([self.rest[0], self.rest[1]])
    }
}

/// Writes the header `value` at `offset`, if it fits before `data_end`.
#[inline(always)]
pub fn write_at<T: Copy, C: PacketContext>(ctx: &C, offset: usize, value: T) -> Option<()> {
    let ptr = ptr_at::<T, C>(ctx, offset)? as *mut T;
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `ptr` lie inside the packet,
    // which the program may write; the header types have alignment 1.
    unsafe { ptr.write_unaligned(value) };
    Some(())
}

impl EthHdr {
    pub fn new(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> EthHdr {
        EthHdr {
            dst,
            src,
            ethertype: ethertype.to_be_bytes(),
        }
    }
}

impl ArpHdr {
    /// The reply to `request` saying that its target address is at `mac`.
    pub fn reply_to(request: &ArpHdr, mac: [u8; 6]) -> ArpHdr {
        ArpHdr {
            oper: ARP_OP_REPLY.to_be_bytes(),
            sender_mac: mac,
            sender_ip: request.target_ip,
            target_mac: request.sender_mac,
            target_ip: request.sender_ip,
            ..*request
        }
    }
}

impl Ipv4Hdr {
    /// A header without options, its checksum computed.
    pub fn new(
        src: [u8; 4],
        dst: [u8; 4],
        protocol: u8,
        total_len: u16,
        flags_frag: u16,
    ) -> Ipv4Hdr {
        let mut header = Ipv4Hdr {
            version_ihl: 0x45,
            tos: 0,
            total_len: total_len.to_be_bytes(),
            _id: [0; 2],
            flags_frag: flags_frag.to_be_bytes(),
            ttl: DEFAULT_TTL,
            protocol,
            checksum: [0; 2],
            src,
            dst,
        };
        // SAFETY: `Ipv4Hdr` is `#[repr(C)]` of byte-sized fields only: exactly 20 bytes, no
        // padding, so it can be viewed as a 20-byte array.
        let bytes: [u8; 20] = unsafe { core::mem::transmute(header) };
        header.checksum = ipv4_header_checksum(&bytes).to_be_bytes();
        header
    }
}

impl UdpHdr {
    /// A UDP header with checksum 0 (no checksum, as VXLAN over IPv4 may send: RFC 7348 §5).
    pub fn without_checksum(src_port: u16, dst_port: u16, len: u16) -> UdpHdr {
        UdpHdr {
            src_port: src_port.to_be_bytes(),
            dst_port: dst_port.to_be_bytes(),
            len: len.to_be_bytes(),
            checksum: [0; 2],
        }
    }
}

/// The 8-byte VXLAN header (RFC 7348 §5).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VxlanHdr {
    pub flags: u8,
    _reserved: [u8; 3],
    /// VNI in the first three bytes, the last one reserved.
    vni_reserved: [u8; 4],
}

impl VxlanHdr {
    pub fn new(vni: u32) -> VxlanHdr {
        VxlanHdr {
            flags: VXLAN_FLAG_VNI_VALID,
            _reserved: [0; 3],
            vni_reserved: (vni << 8).to_be_bytes(),
        }
    }
    pub fn vni(&self) -> u32 {
        u32::from_be_bytes(self.vni_reserved) >> 8
    }
}

/// "Destination unreachable: fragmentation needed" (RFC 1191), before the quoted packet.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IcmpFragNeededHdr {
    icmp_type: u8,
    code: u8,
    pub checksum: [u8; 2],
    _unused: [u8; 2],
    next_hop_mtu: [u8; 2],
}

impl IcmpFragNeededHdr {
    pub fn new(next_hop_mtu: u16) -> IcmpFragNeededHdr {
        IcmpFragNeededHdr {
            icmp_type: ICMP_DEST_UNREACHABLE,
            code: ICMP_CODE_FRAG_NEEDED,
            checksum: [0; 2],
            _unused: [0; 2],
            next_hop_mtu: next_hop_mtu.to_be_bytes(),
        }
    }
}
