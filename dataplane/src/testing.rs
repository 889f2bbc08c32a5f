//! Frames for tests: builders for valid frames with correct checksums, mutators that make them
//! malformed, and a few frames captured from Linux.
//!
//! Used by the unit tests here, by the XDP fixture tables and by the network-namespace tests.
//! It is small and has no dependencies, so it is always compiled rather than hidden behind a
//! feature.
//!
//! ```
//! use ctpath_common::DropReason;
//! use ctpath_dataplane::model::classify;
//! use ctpath_dataplane::testing::{FrameBuilder, Malform};
//!
//! const POD_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
//! const GATEWAY: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
//! let dns = FrameBuilder::udp(POD_A, GATEWAY, [10, 1, 0, 5], [10, 96, 0, 10], 40000, 53, b"q");
//! assert!(classify(&dns).is_ok());
//! assert_eq!(classify(&dns.clone().with_ipv4_ihl(4)), Err(DropReason::Ipv4BadIhl));
//! assert_eq!(classify(&dns.truncated(20)), Err(DropReason::Ipv4Truncated));
//! ```
//!
//! Frames are `Vec<u8>`, so a fixture table holds them directly. The builders fill in what the
//! tests rarely care about: TTL 64, DF set, identification 0, TCP sequence number
//! [`TCP_SEQ`], acknowledgement number [`TCP_ACK`] (zero unless ACK is set), window
//! [`TCP_WINDOW`].
//!
//! Panic contract: builders panic only on sizes no frame can have (payload beyond 64 KiB);
//! [`Malform`] methods panic if the frame lacks the header they modify (a mistake in the
//! test, reported with the method name).

use std::net::Ipv4Addr;

use ctpath_common::wire::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HDR_LEN, ICMP_ERROR_QUOTED_PAYLOAD, IPPROTO_ICMP,
    IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HDR_LEN,
};

use crate::model::vxlan;
use crate::wire::{arp, ethernet, icmp, ipv4, tcp, udp, MacAddr};

/// TTL of every IPv4 header the builders write.
pub const IPV4_TTL: u8 = 64;
/// Sequence number of every TCP segment the builders write.
pub const TCP_SEQ: u32 = 0x1000_0000;
/// Acknowledgement number of TCP segments with ACK set (zero without).
pub const TCP_ACK: u32 = 0x2000_0000;
/// Window of every TCP segment the builders write.
pub const TCP_WINDOW: u16 = 64240;

/// Builders of valid frames. Each returns the whole frame, Ethernet header first, with every
/// checksum correct and no Ethernet padding.
pub struct FrameBuilder;

impl FrameBuilder {
    /// An Ethernet frame with any ethertype and payload (IPv6, VLAN, a hand-made header).
    pub fn ethernet(
        src_mac: impl Into<MacAddr>,
        dst_mac: impl Into<MacAddr>,
        ethertype: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let repr = ethernet::Repr {
            src_addr: src_mac.into(),
            dst_addr: dst_mac.into(),
            ethertype,
        };
        let mut frame = vec![0u8; repr.buffer_len() + payload.len()];
        let mut packet = ethernet::Packet::new_unchecked(&mut frame[..]);
        repr.emit(&mut packet);
        packet.payload_mut().copy_from_slice(payload);
        frame
    }

    /// An IPv4 datagram (20-byte header, DF set) carrying `l4` as it is: for other protocols
    /// and for hand-made transport headers.
    pub fn ipv4(
        src_mac: impl Into<MacAddr>,
        dst_mac: impl Into<MacAddr>,
        src_ip: impl Into<Ipv4Addr>,
        dst_ip: impl Into<Ipv4Addr>,
        protocol: u8,
        l4: &[u8],
    ) -> Vec<u8> {
        let (src_ip, dst_ip) = (src_ip.into(), dst_ip.into());
        Self::ipv4_with(
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
            protocol,
            l4.len(),
            |buf| buf.copy_from_slice(l4),
        )
    }

    /// A UDP datagram.
    pub fn udp(
        src_mac: impl Into<MacAddr>,
        dst_mac: impl Into<MacAddr>,
        src_ip: impl Into<Ipv4Addr>,
        dst_ip: impl Into<Ipv4Addr>,
        src_port: u16,
        dst_port: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let (src_ip, dst_ip) = (src_ip.into(), dst_ip.into());
        let repr = udp::Repr {
            src_port,
            dst_port,
            payload,
        };
        Self::ipv4_with(
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
            IPPROTO_UDP,
            repr.buffer_len(),
            |buf| repr.emit(&mut udp::Packet::new_unchecked(buf), src_ip, dst_ip),
        )
    }

    /// A TCP segment without options.
    #[allow(
        clippy::too_many_arguments,
        reason = "read in fixture tables next to udp(); a parameter struct would hide the order"
    )]
    pub fn tcp(
        src_mac: impl Into<MacAddr>,
        dst_mac: impl Into<MacAddr>,
        src_ip: impl Into<Ipv4Addr>,
        dst_ip: impl Into<Ipv4Addr>,
        src_port: u16,
        dst_port: u16,
        flags: tcp::Flags,
        payload: &[u8],
    ) -> Vec<u8> {
        let (src_ip, dst_ip) = (src_ip.into(), dst_ip.into());
        let repr = tcp::Repr {
            src_port,
            dst_port,
            seq_number: TCP_SEQ,
            ack_number: if flags.contains(tcp::Flags::ACK) {
                TCP_ACK
            } else {
                0
            },
            flags,
            window_len: TCP_WINDOW,
            payload,
        };
        Self::ipv4_with(
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
            IPPROTO_TCP,
            repr.buffer_len(),
            |buf| repr.emit(&mut tcp::Packet::new_unchecked(buf), src_ip, dst_ip),
        )
    }

    /// An ICMP echo request without data.
    pub fn icmp_echo_request(
        src_mac: impl Into<MacAddr>,
        dst_mac: impl Into<MacAddr>,
        src_ip: impl Into<Ipv4Addr>,
        dst_ip: impl Into<Ipv4Addr>,
        ident: u16,
        seq_no: u16,
    ) -> Vec<u8> {
        let repr = icmp::Repr::EchoRequest {
            ident,
            seq_no,
            data: &[],
        };
        Self::icmp(src_mac, dst_mac, src_ip, dst_ip, repr)
    }

    /// An ICMP echo reply without data.
    pub fn icmp_echo_reply(
        src_mac: impl Into<MacAddr>,
        dst_mac: impl Into<MacAddr>,
        src_ip: impl Into<Ipv4Addr>,
        dst_ip: impl Into<Ipv4Addr>,
        ident: u16,
        seq_no: u16,
    ) -> Vec<u8> {
        let repr = icmp::Repr::EchoReply {
            ident,
            seq_no,
            data: &[],
        };
        Self::icmp(src_mac, dst_mac, src_ip, dst_ip, repr)
    }

    /// Any ICMP message.
    pub fn icmp(
        src_mac: impl Into<MacAddr>,
        dst_mac: impl Into<MacAddr>,
        src_ip: impl Into<Ipv4Addr>,
        dst_ip: impl Into<Ipv4Addr>,
        repr: icmp::Repr<'_>,
    ) -> Vec<u8> {
        let (src_ip, dst_ip) = (src_ip.into(), dst_ip.into());
        Self::ipv4_with(
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
            IPPROTO_ICMP,
            repr.buffer_len(),
            |buf| repr.emit(&mut icmp::Packet::new_unchecked(buf)),
        )
    }

    /// A broadcast ARP request "who has `target_ip`, tell `sender_ip`".
    pub fn arp_request(
        sender_mac: impl Into<MacAddr>,
        sender_ip: impl Into<Ipv4Addr>,
        target_ip: impl Into<Ipv4Addr>,
    ) -> Vec<u8> {
        let sender_mac = sender_mac.into();
        Self::arp(
            MacAddr::BROADCAST,
            arp::Repr {
                operation: arp::Operation::Request,
                sender_mac,
                sender_ip: sender_ip.into(),
                target_mac: MacAddr::ZERO,
                target_ip: target_ip.into(),
            },
        )
    }

    /// A unicast ARP reply "`sender_ip` is at `sender_mac`", sent to the requester.
    pub fn arp_reply(
        sender_mac: impl Into<MacAddr>,
        sender_ip: impl Into<Ipv4Addr>,
        target_mac: impl Into<MacAddr>,
        target_ip: impl Into<Ipv4Addr>,
    ) -> Vec<u8> {
        let target_mac = target_mac.into();
        Self::arp(
            target_mac,
            arp::Repr {
                operation: arp::Operation::Reply,
                sender_mac: sender_mac.into(),
                sender_ip: sender_ip.into(),
                target_mac,
                target_ip: target_ip.into(),
            },
        )
    }

    /// Any Ethernet/IPv4 ARP packet, from its sender's MAC to `dst_mac`.
    pub fn arp(dst_mac: impl Into<MacAddr>, repr: arp::Repr) -> Vec<u8> {
        let mut payload = vec![0u8; repr.buffer_len()];
        repr.emit(&mut arp::Packet::new_unchecked(&mut payload[..]));
        Self::ethernet(repr.sender_mac, dst_mac, ETHERTYPE_ARP, &payload)
    }

    /// An ICMP error (`icmp_type` 3, 11 or 12, any code) quoting the IPv4 header and the first 8
    /// payload bytes of `offending`, an IPv4 frame (as much as it has, if it has less).
    pub fn icmp_error(
        src_mac: impl Into<MacAddr>,
        dst_mac: impl Into<MacAddr>,
        src_ip: impl Into<Ipv4Addr>,
        dst_ip: impl Into<Ipv4Addr>,
        icmp_type: u8,
        code: u8,
        offending: &[u8],
    ) -> Vec<u8> {
        let datagram = offending.get(ETH_HDR_LEN..).unwrap_or_default();
        let header_len = datagram
            .first()
            .map_or(0, |byte| usize::from(byte & 0x0f) * 4);
        let quoted = &datagram[..datagram.len().min(header_len + ICMP_ERROR_QUOTED_PAYLOAD)];
        let repr = icmp::Repr::Other {
            msg_type: icmp_type,
            code,
            rest_of_header: [0; 4],
            data: quoted,
        };
        Self::icmp(src_mac, dst_mac, src_ip, dst_ip, repr)
    }

    /// `inner` wrapped in VXLAN (outer IPv4 with DF, UDP to port 4789 without checksum), as
    /// the datapath and the Linux vxlan device send it.
    pub fn vxlan(
        src_mac: impl Into<MacAddr>,
        dst_mac: impl Into<MacAddr>,
        src_ip: impl Into<Ipv4Addr>,
        dst_ip: impl Into<Ipv4Addr>,
        src_port: u16,
        vni: u32,
        inner: &[u8],
    ) -> Vec<u8> {
        let outer = vxlan::Outer {
            src_mac: src_mac.into(),
            dst_mac: dst_mac.into(),
            src_ip: src_ip.into(),
            dst_ip: dst_ip.into(),
            src_port,
            vni,
        };
        vxlan::encapsulate(&outer, inner)
    }

    /// Writes Ethernet and IPv4 headers and lets `emit_l4` write the `l4_len` bytes after them.
    fn ipv4_with(
        src_mac: impl Into<MacAddr>,
        dst_mac: impl Into<MacAddr>,
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        protocol: u8,
        l4_len: usize,
        emit_l4: impl FnOnce(&mut [u8]),
    ) -> Vec<u8> {
        let repr = ipv4::Repr {
            src_addr: src_ip,
            dst_addr: dst_ip,
            protocol,
            payload_len: l4_len,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: true,
            ttl: IPV4_TTL,
        };
        let mut datagram = vec![0u8; repr.buffer_len() + l4_len];
        let mut packet = ipv4::Packet::new_unchecked(&mut datagram[..]);
        repr.emit(&mut packet);
        emit_l4(packet.payload_mut());
        Self::ethernet(src_mac, dst_mac, ETHERTYPE_IPV4, &datagram)
    }
}

/// Mutators that make a valid frame malformed, for fixture tables:
/// `FrameBuilder::udp(..).with_ipv4_ihl(4)`.
///
/// IPv4 header mutators recompute the header checksum afterwards, so the frame is wrong in
/// exactly one way; [`Malform::with_ipv4_checksum`] sets a checksum and keeps it. Transport
/// checksums are never recomputed (the datapath does not verify them). The transport header is
/// found through the IHL as it is at the time of the call.
pub trait Malform: Sized {
    /// Keeps the first `len` bytes. Panics if the frame is shorter.
    fn truncated(self, len: usize) -> Self;
    /// Appends `count` zero bytes: Ethernet padding, as a NIC adds to reach 60 bytes. Lengths
    /// in the headers are kept, so the padding is past the IPv4 total length.
    fn padded(self, count: usize) -> Self;
    /// Sets one byte, checksums untouched.
    fn with_byte(self, offset: usize, value: u8) -> Self;
    fn with_ethertype(self, ethertype: u16) -> Self;

    fn with_arp_hardware_type(self, htype: u16) -> Self;
    fn with_arp_protocol_type(self, ptype: u16) -> Self;
    fn with_arp_lens(self, hlen: u8, plen: u8) -> Self;

    fn with_ipv4_version(self, version: u8) -> Self;
    fn with_ipv4_ihl(self, ihl: u8) -> Self;
    fn with_ipv4_total_len(self, total_len: u16) -> Self;
    /// Sets the MF flag and the fragment offset (in 8-byte units); DF is kept.
    fn with_ipv4_fragment(self, more_frags: bool, frag_offset: u16) -> Self;
    fn with_ipv4_dont_frag(self, dont_frag: bool) -> Self;
    fn with_ipv4_protocol(self, protocol: u8) -> Self;
    /// Sets the header checksum to `checksum` and leaves it so.
    fn with_ipv4_checksum(self, checksum: u16) -> Self;

    fn with_tcp_data_offset(self, data_offset: u8) -> Self;
    fn with_tcp_flags(self, flags: tcp::Flags) -> Self;
    fn with_udp_len(self, udp_len: u16) -> Self;
    fn with_icmp_type(self, icmp_type: u8, code: u8) -> Self;
}

impl Malform for Vec<u8> {
    fn truncated(mut self, len: usize) -> Vec<u8> {
        assert!(
            len <= self.len(),
            "truncated({len}): frame has only {} bytes",
            self.len()
        );
        self.truncate(len);
        self
    }

    fn padded(mut self, count: usize) -> Vec<u8> {
        self.resize(self.len() + count, 0);
        self
    }

    fn with_byte(mut self, offset: usize, value: u8) -> Vec<u8> {
        self[offset] = value;
        self
    }

    fn with_ethertype(mut self, ethertype: u16) -> Vec<u8> {
        assert!(
            self.len() >= ETH_HDR_LEN,
            "with_ethertype: no Ethernet header"
        );
        ethernet::Packet::new_unchecked(&mut self[..]).set_ethertype(ethertype);
        self
    }

    fn with_arp_hardware_type(mut self, htype: u16) -> Vec<u8> {
        arp_packet(&mut self, "with_arp_hardware_type").set_hardware_type(htype);
        self
    }

    fn with_arp_protocol_type(mut self, ptype: u16) -> Vec<u8> {
        arp_packet(&mut self, "with_arp_protocol_type").set_protocol_type(ptype);
        self
    }

    fn with_arp_lens(mut self, hlen: u8, plen: u8) -> Vec<u8> {
        let mut packet = arp_packet(&mut self, "with_arp_lens");
        packet.set_hardware_len(hlen);
        packet.set_protocol_len(plen);
        self
    }

    fn with_ipv4_version(self, version: u8) -> Vec<u8> {
        with_ipv4_header(self, "with_ipv4_version", |p| p.set_version(version))
    }

    fn with_ipv4_ihl(self, ihl: u8) -> Vec<u8> {
        with_ipv4_header(self, "with_ipv4_ihl", |p| p.set_ihl(ihl))
    }

    fn with_ipv4_total_len(self, total_len: u16) -> Vec<u8> {
        with_ipv4_header(self, "with_ipv4_total_len", |p| p.set_total_len(total_len))
    }

    fn with_ipv4_fragment(self, more_frags: bool, frag_offset: u16) -> Vec<u8> {
        with_ipv4_header(self, "with_ipv4_fragment", |p| {
            p.set_more_frags(more_frags);
            p.set_frag_offset(frag_offset);
        })
    }

    fn with_ipv4_dont_frag(self, dont_frag: bool) -> Vec<u8> {
        with_ipv4_header(self, "with_ipv4_dont_frag", |p| p.set_dont_frag(dont_frag))
    }

    fn with_ipv4_protocol(self, protocol: u8) -> Vec<u8> {
        with_ipv4_header(self, "with_ipv4_protocol", |p| p.set_protocol(protocol))
    }

    fn with_ipv4_checksum(mut self, checksum: u16) -> Vec<u8> {
        ipv4_packet(&mut self, "with_ipv4_checksum").set_checksum(checksum);
        self
    }

    fn with_tcp_data_offset(mut self, data_offset: u8) -> Vec<u8> {
        let l4 = l4_bytes(&mut self, IPPROTO_TCP, 13, "with_tcp_data_offset");
        tcp::Packet::new_unchecked(l4).set_data_offset(data_offset);
        self
    }

    fn with_tcp_flags(mut self, flags: tcp::Flags) -> Vec<u8> {
        let l4 = l4_bytes(&mut self, IPPROTO_TCP, 14, "with_tcp_flags");
        tcp::Packet::new_unchecked(l4).set_flags(flags);
        self
    }

    fn with_udp_len(mut self, udp_len: u16) -> Vec<u8> {
        let l4 = l4_bytes(&mut self, IPPROTO_UDP, 6, "with_udp_len");
        udp::Packet::new_unchecked(l4).set_len(udp_len);
        self
    }

    fn with_icmp_type(mut self, icmp_type: u8, code: u8) -> Vec<u8> {
        let mut packet =
            icmp::Packet::new_unchecked(l4_bytes(&mut self, IPPROTO_ICMP, 2, "with_icmp_type"));
        packet.set_msg_type(icmp_type);
        packet.set_msg_code(code);
        self
    }
}

fn ethertype(frame: &[u8]) -> Option<u16> {
    ethernet::Packet::new_checked(frame)
        .ok()
        .map(|eth| eth.ethertype())
}

fn arp_packet<'a>(frame: &'a mut [u8], caller: &str) -> arp::Packet<&'a mut [u8]> {
    assert_eq!(
        ethertype(frame),
        Some(ETHERTYPE_ARP),
        "{caller}: not an ARP frame"
    );
    let packet = arp::Packet::new_unchecked(&mut frame[ETH_HDR_LEN..]);
    assert!(packet.check_len().is_ok(), "{caller}: ARP packet truncated");
    packet
}

/// The IPv4 packet of `frame`; panics unless the ethertype is IPv4 and 20 header bytes are there.
fn ipv4_packet<'a>(frame: &'a mut [u8], caller: &str) -> ipv4::Packet<&'a mut [u8]> {
    assert_eq!(
        ethertype(frame),
        Some(ETHERTYPE_IPV4),
        "{caller}: not an IPv4 frame"
    );
    assert!(
        frame.len() >= ETH_HDR_LEN + IPV4_MIN_HDR_LEN,
        "{caller}: IPv4 header truncated"
    );
    ipv4::Packet::new_unchecked(&mut frame[ETH_HDR_LEN..])
}

/// Applies `mutate` to the IPv4 header, then recomputes its checksum.
fn with_ipv4_header(
    mut frame: Vec<u8>,
    caller: &str,
    mutate: impl FnOnce(&mut ipv4::Packet<&mut [u8]>),
) -> Vec<u8> {
    let mut packet = ipv4_packet(&mut frame, caller);
    mutate(&mut packet);
    packet.fill_checksum();
    frame
}

/// The bytes after the IPv4 header of `frame` (located through the current IHL), checking the
/// protocol and that `needed` of them are there.
fn l4_bytes<'a>(frame: &'a mut [u8], protocol: u8, needed: usize, caller: &str) -> &'a mut [u8] {
    let packet = ipv4_packet(frame, caller);
    assert_eq!(packet.protocol(), protocol, "{caller}: wrong IP protocol");
    let start = ETH_HDR_LEN + packet.header_len();
    assert!(
        frame.len() >= start + needed,
        "{caller}: transport header truncated"
    );
    &mut frame[start..]
}

/// Frames captured on a Linux 6.18 veth pair between two network namespaces, 10.0.0.1
/// (02:00:0a:00:00:01) and 10.0.0.2 (02:00:0a:00:00:02), with transmit checksum offload off so
/// that every checksum is filled in (tcpdump reported all of them correct). A UDP datagram
/// "ctpath" from port 40000 to 53, a ping, and a TCP SYN to a closed port 80 with its RST.
/// veth does not pad to 60 bytes, so the short frames have no padding.
pub mod captured {
    /// `who-has 10.0.0.2 tell 10.0.0.1`, broadcast.
    pub const ARP_REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, //
        0x0a, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
    ];

    /// `10.0.0.2 is-at 02:00:0a:00:00:02`, to the requester.
    pub const ARP_REPLY: [u8; 42] = [
        0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, //
        0x0a, 0x00, 0x00, 0x02, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01,
    ];

    /// 10.0.0.1:40000 -> 10.0.0.2:53, payload `ctpath`; IPv4 ident 0x1f0c, DF, header checksum
    /// 0x07bd; UDP checksum 0x071c.
    pub const UDP: [u8; 48] = [
        0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x08, 0x00, //
        0x45, 0x00, 0x00, 0x22, 0x1f, 0x0c, 0x40, 0x00, 0x40, 0x11, 0x07, 0xbd, //
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, //
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0e, 0x07, 0x1c, //
        0x63, 0x74, 0x70, 0x61, 0x74, 0x68,
    ];

    /// `ping -c1 10.0.0.2`: echo request, id 7593, seq 1, 56 bytes of data (timestamp and
    /// 0x10..0x37).
    pub const ICMP_ECHO_REQUEST: [u8; 98] = [
        0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x08, 0x00, //
        0x45, 0x00, 0x00, 0x54, 0x2d, 0x97, 0x40, 0x00, 0x40, 0x01, 0xf9, 0x0f, //
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, //
        0x08, 0x00, 0x0b, 0xc6, 0x1d, 0xa9, 0x00, 0x01, //
        0xd8, 0x38, 0x02, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x34, 0x19, 0x01, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, //
        0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, //
        0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    ];

    /// The echo reply to [`ICMP_ECHO_REQUEST`]: DF clear, new ident, same ICMP data.
    pub const ICMP_ECHO_REPLY: [u8; 98] = [
        0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x00, //
        0x45, 0x00, 0x00, 0x54, 0x2d, 0xad, 0x00, 0x00, 0x40, 0x01, 0x38, 0xfa, //
        0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x01, //
        0x00, 0x00, 0x13, 0xc6, 0x1d, 0xa9, 0x00, 0x01, //
        0xd8, 0x38, 0x02, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x34, 0x19, 0x01, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, //
        0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, //
        0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    ];

    /// 10.0.0.1:40001 -> 10.0.0.2:80, SYN, seq 1086358873, window 64240, 20 bytes of options
    /// (mss 1460, sackOK, timestamps, nop, wscale 10); TCP checksum 0xd5dc.
    pub const TCP_SYN: [u8; 74] = [
        0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x08, 0x00, //
        0x45, 0x00, 0x00, 0x3c, 0x89, 0xd4, 0x40, 0x00, 0x40, 0x06, 0x9c, 0xe5, //
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, //
        0x9c, 0x41, 0x00, 0x50, 0x40, 0xc0, 0x85, 0x59, 0x00, 0x00, 0x00, 0x00, //
        0xa0, 0x02, 0xfa, 0xf0, 0xd5, 0xdc, 0x00, 0x00, //
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0xba, 0x40, 0x46, 0x41, //
        0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];

    /// The RST|ACK answering [`TCP_SYN`]: ack 1086358874, window 0, IPv4 ident 0; TCP checksum
    /// 0x3922.
    pub const TCP_RST_ACK: [u8; 54] = [
        0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x00, //
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x26, 0xce, //
        0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x01, //
        0x00, 0x50, 0x9c, 0x41, 0x00, 0x00, 0x00, 0x00, 0x40, 0xc0, 0x85, 0x5a, //
        0x50, 0x14, 0x00, 0x00, 0x39, 0x22, 0x00, 0x00,
    ];
}
