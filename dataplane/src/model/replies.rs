//! The frames the datapath writes: ARP replies, ICMP "fragmentation needed", and frames
//! readdressed for delivery. Byte for byte what the XDP programs write in place (`arp.rs`,
//! `icmp.rs`, `pod.rs`/`underlay.rs`), so a test can compare output frames whole.
//!
//! Owns: output bytes only; whether to answer or forward is [`super::node`]'s.
//!
//! Panic contract: nothing here panics. Each function takes a frame that [`super::classify()`]
//! accepted with the header it rewrites; given less, it writes what fits.

use ctpath_common::wire::{
    ARP_LEN, DEFAULT_TTL, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HDR_LEN, ICMP_CODE_FRAG_NEEDED,
    ICMP_DEST_UNREACHABLE, ICMP_ERROR_QUOTED_PAYLOAD, IPPROTO_ICMP,
};

use super::topology::LocalPort;
use crate::wire::{arp, ethernet, icmp, ipv4, MacAddr};

/// `frame` (an ARP request) turned into the reply that the requested address is at `mac`,
/// sent back to the requester from `mac`. Bytes after the 28 of ARP (padding) are kept.
pub fn arp_reply(frame: &[u8], request: &arp::Repr, mac: MacAddr) -> Vec<u8> {
    let mut reply = frame.to_vec();
    if reply.len() < ETH_HDR_LEN + ARP_LEN {
        return reply;
    }
    write_ethernet(&mut reply, request.sender_mac, mac, ETHERTYPE_ARP);
    let repr = arp::Repr {
        operation: arp::Operation::Reply,
        sender_mac: mac,
        sender_ip: request.target_ip,
        target_mac: request.sender_mac,
        target_ip: request.sender_ip,
    };
    repr.emit(&mut arp::Packet::new_unchecked(&mut reply[ETH_HDR_LEN..]));
    reply
}

/// The ICMP "fragmentation needed" error answering `frame`, an IPv4 packet from the pod behind
/// `port` larger than its MTU: from the port's gateway (and the router MAC) to the pod, next-hop
/// MTU the port's, quoting the offending header (options included) and 8 bytes of its payload.
/// DF set, as Linux sends its ICMP errors.
pub fn frag_needed(frame: &[u8], port: &LocalPort, router_mac: MacAddr) -> Vec<u8> {
    let datagram = frame.get(ETH_HDR_LEN..).unwrap_or_default();
    if datagram.len() < ipv4::field::DST_ADDR.end {
        return frame.to_vec();
    }
    let offending = ipv4::Packet::new_unchecked(datagram);
    let pod_mac = ethernet::Packet::new_unchecked(frame).src_addr();
    // The kernel cuts (or, never in practice, zero-extends) the frame to this length.
    let mut quoted = datagram.to_vec();
    quoted.resize(offending.header_len() + ICMP_ERROR_QUOTED_PAYLOAD, 0);

    let [mtu_hi, mtu_lo] = port.mtu.to_be_bytes();
    let message = icmp::Repr::Other {
        msg_type: ICMP_DEST_UNREACHABLE,
        code: ICMP_CODE_FRAG_NEEDED,
        rest_of_header: [0, 0, mtu_hi, mtu_lo],
        data: &quoted,
    };
    let header = ipv4::Repr {
        src_addr: port.gateway,
        dst_addr: offending.src_addr(),
        protocol: IPPROTO_ICMP,
        payload_len: message.buffer_len(),
        dscp_ecn: 0,
        ident: 0,
        dont_frag: true,
        ttl: DEFAULT_TTL,
    };
    let mut reply = vec![0u8; ETH_HDR_LEN + header.buffer_len() + message.buffer_len()];
    write_ethernet(&mut reply, pod_mac, router_mac, ETHERTYPE_IPV4);
    let ip = &mut reply[ETH_HDR_LEN..];
    header.emit(&mut ipv4::Packet::new_unchecked(&mut ip[..]));
    message.emit(&mut icmp::Packet::new_unchecked(
        &mut ip[header.buffer_len()..],
    ));
    reply
}

/// `frame` (IPv4) with new Ethernet addresses, as delivered to a pod.
pub fn readdressed(frame: &[u8], dst_mac: MacAddr, src_mac: MacAddr) -> Vec<u8> {
    let mut frame = frame.to_vec();
    if frame.len() >= ETH_HDR_LEN {
        write_ethernet(&mut frame, dst_mac, src_mac, ETHERTYPE_IPV4);
    }
    frame
}

/// Writes a whole Ethernet header at the start of `frame` (at least 14 bytes).
fn write_ethernet(frame: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    let mut eth = ethernet::Packet::new_unchecked(frame);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(ethertype);
}
