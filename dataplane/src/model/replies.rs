//! The frames the datapath writes: ARP replies, ICMP "fragmentation needed", and frames
//! readdressed for delivery. Byte for byte what the XDP programs write in place (`arp.rs`,
//! `icmp.rs`, `pod.rs`/`underlay.rs`), so a test can compare output frames whole.
//!
//! Owns: output bytes only; whether to answer or forward is [`super::node`]'s. Each reply is
//! written by one in-place function (`write_*`, [`readdress`]) over a frame in a buffer, which
//! the AF_XDP forwarder calls on its frames and the model's `Vec`-returning functions call on
//! a copy: the bytes are written once for both.
//!
//! Panic contract: nothing here panics. Each function takes a frame that [`super::classify()`]
//! accepted with the header it rewrites; given less, it writes what fits.

use std::net::Ipv4Addr;

use ctpath_common::wire::{
    ARP_LEN, DEFAULT_TTL, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HDR_LEN, ICMP_CODE_FRAG_NEEDED,
    ICMP_DEST_UNREACHABLE, ICMP_ERROR_QUOTED_PAYLOAD, ICMP_HDR_LEN, IPPROTO_ICMP, IPV4_MAX_HDR_LEN,
    IPV4_MIN_HDR_LEN,
};

use super::topology::LocalPort;
use crate::wire::{arp, ethernet, icmp, ipv4, MacAddr};

/// `frame` (an ARP request) turned into the reply that the requested address is at `mac`,
/// sent back to the requester from `mac`. Bytes after the 28 of ARP (padding) are kept.
pub fn arp_reply(frame: &[u8], request: &arp::Repr, mac: MacAddr) -> Vec<u8> {
    let mut reply = frame.to_vec();
    write_arp_reply(&mut reply, request, mac);
    reply
}

/// Rewrites the ARP request `request` at the start of `frame` in place into [`arp_reply`]'s
/// reply. A frame shorter than Ethernet + ARP is left alone.
pub fn write_arp_reply(frame: &mut [u8], request: &arp::Repr, mac: MacAddr) {
    if frame.len() < ETH_HDR_LEN + ARP_LEN {
        return;
    }
    write_ethernet(frame, request.sender_mac, mac, ETHERTYPE_ARP);
    let repr = arp::Repr {
        operation: arp::Operation::Reply,
        sender_mac: mac,
        sender_ip: request.target_ip,
        target_mac: request.sender_mac,
        target_ip: request.sender_ip,
    };
    repr.emit(&mut arp::Packet::new_unchecked(&mut frame[ETH_HDR_LEN..]));
}

/// The ICMP "fragmentation needed" error answering `frame`, an IPv4 packet from the pod behind
/// `port` larger than its MTU: from the port's gateway (and the router MAC) to the pod, next-hop
/// MTU the port's, quoting the offending header (options included) and 8 bytes of its payload.
/// DF set, as Linux sends its ICMP errors.
pub fn frag_needed(frame: &[u8], port: &LocalPort, router_mac: MacAddr) -> Vec<u8> {
    let mut reply = frame.to_vec();
    reply.resize(frame.len().max(FRAG_NEEDED_MAX_LEN), 0);
    let len = write_frag_needed(&mut reply, frame.len(), port.gateway, port.mtu, router_mac)
        .unwrap_or(frame.len());
    reply.truncate(len);
    reply
}

/// The longest "fragmentation needed" error: Ethernet, IPv4, ICMP, a quoted header with 40
/// bytes of options and 8 bytes of its payload.
pub const FRAG_NEEDED_MAX_LEN: usize =
    ETH_HDR_LEN + IPV4_MIN_HDR_LEN + ICMP_HDR_LEN + IPV4_MAX_HDR_LEN + ICMP_ERROR_QUOTED_PAYLOAD;

/// Rewrites the frame of `len` bytes at the start of `buf` in place into [`frag_needed`]'s
/// error, gateway `gateway`, next-hop MTU `mtu`; returns the error's length. `None` if `buf` is
/// too short to hold it (nothing written). A frame without a whole IPv4 header is left alone
/// (`Some(len)`).
pub fn write_frag_needed(
    buf: &mut [u8],
    len: usize,
    gateway: Ipv4Addr,
    mtu: u16,
    router_mac: MacAddr,
) -> Option<usize> {
    let datagram = buf.get(ETH_HDR_LEN..len.min(buf.len()))?;
    if datagram.len() < ipv4::field::DST_ADDR.end {
        return Some(len);
    }
    let offending = ipv4::Packet::new_unchecked(datagram);
    let (header_len, pod_ip) = (offending.header_len(), offending.src_addr());
    let pod_mac = ethernet::Packet::new_unchecked(&buf[..]).src_addr();
    let quoted_len = header_len + ICMP_ERROR_QUOTED_PAYLOAD;
    let icmp_at = ETH_HDR_LEN + IPV4_MIN_HDR_LEN;
    let quote_at = icmp_at + ICMP_HDR_LEN;
    let reply_len = quote_at + quoted_len;
    if buf.len() < reply_len {
        return None;
    }
    // The kernel cuts (or, never in practice, zero-extends) the frame to the quote.
    let present = quoted_len.min(datagram.len());
    buf.copy_within(ETH_HDR_LEN..ETH_HDR_LEN + present, quote_at);
    buf[quote_at + present..reply_len].fill(0);

    write_ethernet(buf, pod_mac, router_mac, ETHERTYPE_IPV4);
    let header = ipv4::Repr {
        src_addr: gateway,
        dst_addr: pod_ip,
        protocol: IPPROTO_ICMP,
        payload_len: ICMP_HDR_LEN + quoted_len,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
        ttl: DEFAULT_TTL,
    };
    header.emit(&mut ipv4::Packet::new_unchecked(
        &mut buf[ETH_HDR_LEN..icmp_at],
    ));
    let [mtu_hi, mtu_lo] = mtu.to_be_bytes();
    let mut message = icmp::Packet::new_unchecked(&mut buf[icmp_at..reply_len]);
    message.set_msg_type(ICMP_DEST_UNREACHABLE);
    message.set_msg_code(ICMP_CODE_FRAG_NEEDED);
    message.set_rest_of_header([0, 0, mtu_hi, mtu_lo]);
    message.fill_checksum();
    Some(reply_len)
}

/// `frame` (IPv4) with new Ethernet addresses, as delivered to a pod.
pub fn readdressed(frame: &[u8], dst_mac: MacAddr, src_mac: MacAddr) -> Vec<u8> {
    let mut frame = frame.to_vec();
    readdress(&mut frame, dst_mac, src_mac);
    frame
}

/// Rewrites the Ethernet header of `frame` (IPv4) in place for delivery, as [`readdressed`].
/// A frame shorter than an Ethernet header is left alone.
pub fn readdress(frame: &mut [u8], dst_mac: MacAddr, src_mac: MacAddr) {
    if frame.len() >= ETH_HDR_LEN {
        write_ethernet(frame, dst_mac, src_mac, ETHERTYPE_IPV4);
    }
}

/// Writes a whole Ethernet header at the start of `frame` (at least 14 bytes).
fn write_ethernet(frame: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    let mut eth = ethernet::Packet::new_unchecked(frame);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(ethertype);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FrameBuilder;

    const POD_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
    const ROUTER: MacAddr = MacAddr([2, 0xc7, 0, 0, 0, 1]);
    const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);

    /// A UDP datagram from the pod with `options` bytes of IPv4 options (NOPs) in its header.
    fn datagram_with_options(options: usize, payload: usize) -> Vec<u8> {
        let plain = FrameBuilder::udp(
            POD_MAC,
            ROUTER,
            Ipv4Addr::new(10, 244, 1, 2),
            Ipv4Addr::new(10, 244, 2, 2),
            4000,
            5000,
            &vec![0xab; payload],
        );
        let mut frame = plain[..ETH_HDR_LEN + IPV4_MIN_HDR_LEN].to_vec();
        frame.extend(std::iter::repeat_n(1u8, options));
        frame.extend_from_slice(&plain[ETH_HDR_LEN + IPV4_MIN_HDR_LEN..]);
        let total_len = (frame.len() - ETH_HDR_LEN) as u16;
        let mut header = ipv4::Packet::new_unchecked(&mut frame[ETH_HDR_LEN..]);
        header.set_ihl(((IPV4_MIN_HDR_LEN + options) / 4) as u8);
        header.set_total_len(total_len);
        header.set_dont_frag(true);
        header.fill_checksum();
        frame
    }

    #[test]
    fn the_longest_error_quotes_a_header_with_40_bytes_of_options() {
        let frame = datagram_with_options(40, 1400);
        let mut buf = frame.clone();
        let len = write_frag_needed(&mut buf, frame.len(), GATEWAY, 1450, ROUTER).unwrap();
        assert_eq!(len, FRAG_NEEDED_MAX_LEN);
        let reply = ipv4::Packet::new_unchecked(&buf[ETH_HDR_LEN..len]);
        assert!(reply.verify_checksum());
        assert_eq!(reply.header_len(), IPV4_MIN_HDR_LEN);
        assert_eq!(usize::from(reply.total_len()), len - ETH_HDR_LEN);
        assert_eq!(reply.src_addr(), GATEWAY);
        let icmp_at = ETH_HDR_LEN + IPV4_MIN_HDR_LEN;
        let message = icmp::Packet::new_unchecked(&buf[icmp_at..len]);
        assert!(message.verify_checksum());
        assert_eq!(message.rest_of_header(), [0, 0, 0x05, 0xaa]);
        // The quote: the whole offending header, options included, and 8 bytes after it.
        let quoted = IPV4_MAX_HDR_LEN + ICMP_ERROR_QUOTED_PAYLOAD;
        assert_eq!(
            &buf[icmp_at + ICMP_HDR_LEN..len],
            &frame[ETH_HDR_LEN..ETH_HDR_LEN + quoted]
        );
        assert_eq!(frag_needed(&frame, &port(), ROUTER), buf[..len].to_vec());
    }

    #[test]
    fn a_buffer_must_hold_the_whole_error_and_a_frame_the_whole_header() {
        let frame = datagram_with_options(0, 1400);
        let reply_len = ETH_HDR_LEN
            + IPV4_MIN_HDR_LEN
            + ICMP_HDR_LEN
            + IPV4_MIN_HDR_LEN
            + ICMP_ERROR_QUOTED_PAYLOAD;
        // Exactly long enough: written.
        let mut exact = frame[..reply_len].to_vec();
        assert_eq!(
            write_frag_needed(&mut exact, reply_len, GATEWAY, 1450, ROUTER),
            Some(reply_len)
        );
        // One byte short: nothing written.
        let mut short = frame[..reply_len - 1].to_vec();
        assert_eq!(
            write_frag_needed(&mut short, reply_len - 1, GATEWAY, 1450, ROUTER),
            None
        );
        assert_eq!(short, frame[..reply_len - 1]);
        // A frame that ends inside its IPv4 header: left alone.
        let cut = ETH_HDR_LEN + IPV4_MIN_HDR_LEN - 1;
        let mut buf = frame.clone();
        assert_eq!(
            write_frag_needed(&mut buf, cut, GATEWAY, 1450, ROUTER),
            Some(cut)
        );
        assert_eq!(buf, frame);
    }

    fn port() -> LocalPort {
        LocalPort {
            ifindex: 7,
            vni: 100,
            ip: Ipv4Addr::new(10, 244, 1, 2),
            mac: MacAddr(POD_MAC),
            mtu: 1450,
            gateway: GATEWAY,
            port_security: true,
            security_groups: Vec::new(),
            allowed_address_pairs: Vec::new(),
        }
    }
}
