//! ICMP errors the node sends to its own pods: "fragmentation needed" (RFC 1191) for a packet
//! larger than its plane's MTU with DF set, so the pod's path-MTU discovery learns the MTU.
//!
//! Built in place from the offending frame: the tail is cut to the quoted IPv4 header plus 8
//! bytes of payload (RFC 792), and new Ethernet, IPv4 and ICMP headers are pushed in front.

use ctpath_common::{
    checksum::checksum_fold,
    maps::PodPort,
    wire::{
        ETHERTYPE_IPV4, ETH_HDR_LEN, ICMP_ERROR_QUOTED_PAYLOAD, ICMP_HDR_LEN, IPPROTO_ICMP,
        IPV4_FLAG_DF, IPV4_MAX_HDR_LEN, IPV4_MIN_HDR_LEN,
    },
    DropReason,
};

use crate::{
    context::PacketContext,
    packet::{header_at, write_at, EthHdr, IcmpFragNeededHdr, Ipv4Hdr},
};

/// Offset of the ICMP header in the reply; the quoted packet follows it.
const ICMP_OFFSET: usize = ETH_HDR_LEN + IPV4_MIN_HDR_LEN;
/// Bytes pushed in front of the quoted packet: the offending frame's Ethernet header is
/// replaced by Ethernet + IPv4 + ICMP.
const PUSHED: usize = IPV4_MIN_HDR_LEN + ICMP_HDR_LEN;
/// Most 16-bit words the ICMP checksum covers: header + longest quoted IPv4 header + 8 bytes.
const MAX_CHECKSUM_WORDS: usize = (ICMP_HDR_LEN + IPV4_MAX_HDR_LEN + ICMP_ERROR_QUOTED_PAYLOAD) / 2;

/// Turns the frame in `ctx`, an IPv4 packet from the pod behind `port` whose header is
/// `offending` (`header_len` bytes with options), into the "fragmentation needed" error for it,
/// addressed back to the pod from its gateway, the router MAC as source.
#[inline(always)]
pub fn frag_needed_in_place<C: PacketContext>(
    ctx: &C,
    port: &PodPort,
    router_mac: [u8; 6],
    pod_mac: [u8; 6],
    offending: &Ipv4Hdr,
    header_len: usize,
) -> Result<(), DropReason> {
    let quoted_len = header_len + ICMP_ERROR_QUOTED_PAYLOAD;
    // Cut the tail first, while the offending frame is still where the parser saw it.
    let keep = ETH_HDR_LEN + quoted_len;
    ctx.truncate(keep as u32)?;
    ctx.grow_head(PUSHED as u32)?;

    let icmp_len = ICMP_HDR_LEN + quoted_len;
    // DF set, as Linux sends its ICMP errors.
    let ip = Ipv4Hdr::new(
        port.gateway,
        offending.src,
        IPPROTO_ICMP,
        (IPV4_MIN_HDR_LEN + icmp_len) as u16,
        IPV4_FLAG_DF,
    );
    let mut icmp = IcmpFragNeededHdr::new(port.mtu);
    write_at(ctx, 0, EthHdr::new(pod_mac, router_mac, ETHERTYPE_IPV4))
        .ok_or(DropReason::AdjustFailed)?;
    write_at(ctx, ETH_HDR_LEN, ip).ok_or(DropReason::AdjustFailed)?;
    write_at(ctx, ICMP_OFFSET, icmp).ok_or(DropReason::AdjustFailed)?;
    icmp.checksum = icmp_checksum(ctx, icmp_len)?.to_be_bytes();
    write_at(ctx, ICMP_OFFSET, icmp).ok_or(DropReason::AdjustFailed)
}

/// The checksum of the `len` bytes of ICMP message at `ICMP_OFFSET` (checksum field zero).
/// `len` is even: an 8-byte header plus a header of whole 32-bit words plus 8 bytes.
#[inline(always)]
fn icmp_checksum<C: PacketContext>(ctx: &C, len: usize) -> Result<u16, DropReason> {
    let mut sum = 0u32;
    for word in 0..MAX_CHECKSUM_WORDS {
        if word * 2 >= len {
            break;
        }
        let bytes: [u8; 2] =
            header_at(ctx, ICMP_OFFSET + word * 2).ok_or(DropReason::AdjustFailed)?;
        sum += u16::from_be_bytes(bytes) as u32;
    }
    Ok(checksum_fold(sum))
}
