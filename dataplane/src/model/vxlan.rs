//! VXLAN on the underlay, as `from_underlay` sees it: which frames are VXLAN addressed to this
//! node ([`receive`], the outer checks in the datapath's order), and the outer headers the node
//! writes ([`encapsulate`]), which are what the Linux vxlan device writes: IPv4 without
//! options, identification 0, DF, TTL 64; UDP to port 4789 without checksum; the I flag.
//!
//! Owns: the outer 50 bytes, written by one in-place function ([`write_outer`]) that the
//! model's [`encapsulate`] and the AF_XDP forwarder (through [`encapsulate_in_place`], on a
//! frame in a buffer with room after it) both use. The inner frame is
//! [`super::classify()`]'s.
//!
//! Panic contract: nothing here panics. Lengths that do not fit their 16-bit fields (an inner
//! frame near 64 KiB) wrap, as the XDP programs' arithmetic does.

use std::net::Ipv4Addr;

use ctpath_common::wire::{
    DEFAULT_TTL, ETHERTYPE_IPV4, ETH_HDR_LEN, IPPROTO_UDP, IPV4_MIN_HDR_LEN, UDP_HDR_LEN,
    VXLAN_ENCAP_LEN, VXLAN_HDR_LEN, VXLAN_PORT,
};
use ctpath_common::DropReason;

use crate::wire::{ethernet, ipv4, udp, vxlan, MacAddr};

const IP_OFFSET: usize = ETH_HDR_LEN;
const UDP_OFFSET: usize = IP_OFFSET + IPV4_MIN_HDR_LEN;
const VXLAN_OFFSET: usize = UDP_OFFSET + UDP_HDR_LEN;

/// A VXLAN packet addressed to this node, as far as its outer headers tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub src_mac: MacAddr,
    pub src_vtep: Ipv4Addr,
    pub src_port: u16,
    pub vni: u32,
}

/// Outer headers around an inner frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub vni: u32,
}

/// Recognises VXLAN for the VTEP `underlay_ip`. `Ok(None)`: not VXLAN for this node (the
/// node's own traffic: an outer header that is short, not IPv4 with a 20-byte header, not to
/// `underlay_ip`, not UDP, a fragment, or not to port 4789). `Err`: VXLAN for this node that
/// is malformed: shorter than the outer headers, an IPv4 total length past the frame or too
/// short for an inner Ethernet header (`vxlan_truncated`), or without the I flag
/// (`vxlan_bad_flags`).
pub fn receive(frame: &[u8], underlay_ip: Ipv4Addr) -> Result<Option<Received>, DropReason> {
    let Ok(eth) = ethernet::Packet::new_checked(frame) else {
        return Ok(None);
    };
    if eth.ethertype() != ETHERTYPE_IPV4 || frame.len() < UDP_OFFSET {
        return Ok(None);
    }
    let ip = ipv4::Packet::new_unchecked(&frame[IP_OFFSET..]);
    if ip.version() != 4
        || ip.header_len() != IPV4_MIN_HDR_LEN
        || ip.dst_addr() != underlay_ip
        || ip.protocol() != IPPROTO_UDP
        || ip.is_fragment()
    {
        return Ok(None);
    }
    if frame.len() < VXLAN_OFFSET {
        return Ok(None);
    }
    let udp = udp::Packet::new_unchecked(&frame[UDP_OFFSET..]);
    if udp.dst_port() != VXLAN_PORT {
        return Ok(None);
    }
    let header = vxlan::Packet::new_checked(&frame[VXLAN_OFFSET..])
        .map_err(|_| DropReason::VxlanTruncated)?;
    let total_len = usize::from(ip.total_len());
    if ETH_HDR_LEN + total_len > frame.len()
        || total_len < IPV4_MIN_HDR_LEN + UDP_HDR_LEN + VXLAN_HDR_LEN + ETH_HDR_LEN
    {
        return Err(DropReason::VxlanTruncated);
    }
    if !header.vni_valid() {
        return Err(DropReason::VxlanBadFlags);
    }
    Ok(Some(Received {
        src_mac: eth.src_addr(),
        src_vtep: ip.src_addr(),
        src_port: udp.src_port(),
        vni: header.vni(),
    }))
}

/// `inner` wrapped in the outer headers `outer`.
pub fn encapsulate(outer: &Outer, inner: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; VXLAN_ENCAP_LEN + inner.len()];
    frame[..inner.len()].copy_from_slice(inner);
    let encapsulated = encapsulate_in_place(&mut frame, inner.len(), outer);
    debug_assert_eq!(encapsulated, Some(frame.len()));
    frame
}

/// Wraps the frame of `len` bytes at the start of `buf` in place in the outer headers `outer`
/// (the frame moves 50 bytes on); returns the new length. `None` if `buf` has no room for it
/// (nothing written).
pub fn encapsulate_in_place(buf: &mut [u8], len: usize, outer: &Outer) -> Option<usize> {
    let encapsulated = len.checked_add(VXLAN_ENCAP_LEN)?;
    if buf.len() < encapsulated {
        return None;
    }
    buf.copy_within(..len, VXLAN_ENCAP_LEN);
    write_outer(&mut buf[..VXLAN_ENCAP_LEN], outer, len);
    Some(encapsulated)
}

/// Strips the outer headers of the VXLAN frame of `len` bytes at the start of `buf` in place
/// (the inner frame moves to the start); returns the inner frame's length, 0 if `len` is no
/// longer than the outer headers.
pub fn decapsulate_in_place(buf: &mut [u8], len: usize) -> usize {
    let len = len.min(buf.len());
    if len <= VXLAN_ENCAP_LEN {
        return 0;
    }
    buf.copy_within(VXLAN_ENCAP_LEN..len, 0);
    len - VXLAN_ENCAP_LEN
}

/// Writes the outer headers `outer` around an inner frame of `inner_len` bytes into `headers`
/// (at least 50 bytes; given less, nothing is written).
pub fn write_outer(headers: &mut [u8], outer: &Outer, inner_len: usize) {
    let Some(headers) = headers.get_mut(..VXLAN_ENCAP_LEN) else {
        return;
    };
    // Truncating casts on purpose: the datapath's u16 arithmetic wraps the same way.
    let udp_len = (UDP_HDR_LEN + VXLAN_HDR_LEN + inner_len) as u16;
    let total_len = (IPV4_MIN_HDR_LEN as u16).wrapping_add(udp_len);
    // Every field not set below is 0: DSCP, identification, fragment offset, UDP checksum.
    headers.fill(0);

    let mut eth = ethernet::Packet::new_unchecked(&mut headers[..]);
    eth.set_dst_addr(outer.dst_mac);
    eth.set_src_addr(outer.src_mac);
    eth.set_ethertype(ETHERTYPE_IPV4);

    let mut ip = ipv4::Packet::new_unchecked(&mut headers[IP_OFFSET..UDP_OFFSET]);
    ip.set_version(4);
    ip.set_ihl((IPV4_MIN_HDR_LEN / 4) as u8);
    ip.set_total_len(total_len);
    ip.set_dont_frag(true);
    ip.set_ttl(DEFAULT_TTL);
    ip.set_protocol(IPPROTO_UDP);
    ip.set_src_addr(outer.src_ip);
    ip.set_dst_addr(outer.dst_ip);
    ip.fill_checksum();

    let mut udp = udp::Packet::new_unchecked(&mut headers[UDP_OFFSET..VXLAN_OFFSET]);
    udp.set_src_port(outer.src_port);
    udp.set_dst_port(VXLAN_PORT);
    udp.set_len(udp_len);

    let repr = vxlan::Repr { vni: outer.vni };
    repr.emit(&mut vxlan::Packet::new_unchecked(
        &mut headers[VXLAN_OFFSET..VXLAN_ENCAP_LEN],
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FrameBuilder, Malform};

    const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);

    fn outer() -> Outer {
        Outer {
            src_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src_ip: PEER,
            dst_ip: NODE,
            src_port: 50000,
            vni: 100,
        }
    }

    fn inner() -> Vec<u8> {
        FrameBuilder::udp([2; 6], [4; 6], [10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"x")
    }

    #[test]
    fn encapsulated_frames_are_received() {
        let frame = encapsulate(&outer(), &inner());
        assert_eq!(frame.len(), VXLAN_ENCAP_LEN + inner().len());
        let ip = ipv4::Packet::new_checked(&frame[IP_OFFSET..]).unwrap();
        assert!(ip.verify_checksum() && ip.dont_frag());
        assert_eq!(usize::from(ip.total_len()), frame.len() - ETH_HDR_LEN);
        assert_eq!(
            receive(&frame, NODE),
            Ok(Some(Received {
                src_mac: MacAddr([2, 0, 0, 0, 0, 2]),
                src_vtep: PEER,
                src_port: 50000,
                vni: 100
            }))
        );
        assert_eq!(&frame[VXLAN_ENCAP_LEN..], &inner()[..]);
    }

    #[test]
    fn other_traffic_is_not_vxlan_for_this_node() {
        let frame = encapsulate(&outer(), &inner());
        assert_eq!(receive(&frame, PEER), Ok(None), "another VTEP");
        assert_eq!(receive(&frame[..13], NODE), Ok(None));
        assert_eq!(receive(&frame[..40], NODE), Ok(None), "UDP header cut");
        assert_eq!(
            receive(&frame.clone().with_ethertype(0x86dd), NODE),
            Ok(None)
        );
        assert_eq!(
            receive(&frame.clone().with_ipv4_protocol(6), NODE),
            Ok(None)
        );
        assert_eq!(
            receive(&frame.clone().with_ipv4_fragment(true, 0), NODE),
            Ok(None)
        );
        assert_eq!(receive(&frame.clone().with_ipv4_ihl(6), NODE), Ok(None));
        assert_eq!(
            receive(&frame.clone().with_byte(UDP_OFFSET + 3, 0), NODE),
            Ok(None),
            "another UDP port"
        );
    }

    #[test]
    fn malformed_vxlan_for_this_node_is_dropped() {
        let frame = encapsulate(&outer(), &inner());
        assert_eq!(
            receive(&frame[..VXLAN_OFFSET + 7], NODE),
            Err(DropReason::VxlanTruncated)
        );
        assert_eq!(
            receive(&frame[..frame.len() - 1], NODE),
            Err(DropReason::VxlanTruncated),
            "total length past the frame"
        );
        let short = encapsulate(&outer(), &inner()[..13]);
        assert_eq!(receive(&short, NODE), Err(DropReason::VxlanTruncated));
        assert_eq!(
            receive(&frame.clone().with_byte(VXLAN_OFFSET, 0), NODE),
            Err(DropReason::VxlanBadFlags)
        );
        // Padding after the outer total length is allowed.
        assert!(matches!(receive(&frame.padded(4), NODE), Ok(Some(_))));
    }
}
