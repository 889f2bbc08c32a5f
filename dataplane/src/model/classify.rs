//! Frame classification: the first thing `from_pod` does with a frame a pod sends, and the
//! input of the later security-group and forwarding models.
//!
//! [`classify`] returns either a [`Classified`] frame or the [`DropReason`] of the *first* check
//! that fails, in this order (the XDP program checks in the same order, so both name the same
//! reason for a frame that is wrong in several ways):
//!
//! | step | check | reason |
//! |---|---|---|
//! | Ethernet | fewer than 14 bytes | `EthTruncated` |
//! | ARP | payload below 28 bytes | `ArpTruncated` |
//! | ARP | hardware type not 1, protocol type not 0x0800, lengths not 6/4 | `ArpUnsupported` |
//! | IPv4 | payload below 20 bytes | `Ipv4Truncated` |
//! | IPv4 | version not 4 | `Ipv4BadVersion` |
//! | IPv4 | IHL below 5 | `Ipv4BadIhl` |
//! | IPv4 | header with options longer than the payload | `Ipv4Truncated` |
//! | IPv4 | total length below the header length or above the payload | `Ipv4BadTotalLength` |
//! | IPv4 | MF set or fragment offset non-zero | `Ipv4Fragment` |
//! | TCP | segment below 20 bytes | `TcpTruncated` |
//! | TCP | data offset below 5 | `TcpBadDataOffset` |
//! | TCP | header with options longer than the segment | `TcpTruncated` |
//! | UDP | datagram below 8 bytes | `UdpTruncated` |
//! | UDP | UDP length below 8 or above the datagram | `UdpBadLength` |
//! | ICMP | message below 8 bytes | `IcmpTruncated` |
//!
//! The transport checks look at the IPv4 payload only: the bytes between the header and the
//! total length. Ethernet padding after the total length is ignored. Other ethertypes (IPv6,
//! VLAN tags, ...) and other IP protocols are classified, not dropped: whether they may pass is
//! policy, decided later.
//!
//! Checksums are not verified, neither the IPv4 header's nor the transport's. Like Cilium, the
//! datapath does not re-verify what the receiving kernel verifies anyway; a frame with a bad
//! checksum is classified normally and dropped by the receiver.
//!
//! The checks themselves live in the `check_len` and `Repr::parse` of each [`crate::wire`]
//! module; this module adds the dispatch on ethertype and protocol, and maps each wire error to
//! its `DropReason` with exhaustive `match`es, so a new wire error cannot go unnamed.
//!
//! Panic contract: [`classify`] never panics, whatever the bytes (a proptest checks it).

use std::net::Ipv4Addr;

use ctpath_common::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV4, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use ctpath_common::DropReason;

use crate::wire::arp::{self, ArpError};
use crate::wire::ethernet::{self, EthernetError};
use crate::wire::icmp::{self, IcmpError};
use crate::wire::ipv4::{self, Ipv4Error};
use crate::wire::tcp::{self, TcpError};
use crate::wire::udp::{self, UdpError};
use crate::wire::MacAddr;

/// The drop reasons [`classify`] can return, in `DropReason` order. The other reasons belong to
/// later stages.
pub const DROP_REASONS: &[DropReason] = &[
    DropReason::EthTruncated,
    DropReason::ArpTruncated,
    DropReason::ArpUnsupported,
    DropReason::Ipv4Truncated,
    DropReason::Ipv4BadVersion,
    DropReason::Ipv4BadIhl,
    DropReason::Ipv4BadTotalLength,
    DropReason::Ipv4Fragment,
    DropReason::TcpTruncated,
    DropReason::TcpBadDataOffset,
    DropReason::UdpTruncated,
    DropReason::UdpBadLength,
    DropReason::IcmpTruncated,
];

/// A frame that passed classification: its Ethernet addresses and what it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Classified {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub l3: L3,
}

/// What an Ethernet frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L3 {
    /// An Ethernet/IPv4 ARP packet, any operation.
    Arp(arp::Repr),
    /// A whole (unfragmented) IPv4 datagram.
    Ipv4(Ipv4Summary),
    /// Any other ethertype, not parsed further: IPv6, an 802.1Q tag, an 802.3 length, ...
    Other { ethertype: u16 },
}

/// What classification learned about an IPv4 datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Summary {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// The DF flag. Fragments never get this far.
    pub dont_fragment: bool,
    /// The total-length field: header and payload, without Ethernet padding.
    pub total_len: u16,
    pub l4: L4,
}

/// The transport header of an IPv4 datagram, as far as the datapath reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: tcp::Flags,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Icmp {
        icmp_type: u8,
        code: u8,
        /// The identifier of an echo request or reply (by type; the code is not checked),
        /// `None` for other messages.
        echo_id: Option<u16>,
    },
    /// Another IP protocol; its number is [`Ipv4Summary::protocol`].
    Other,
}

impl Classified {
    /// The ARP packet, if this is one.
    pub fn arp(&self) -> Option<&arp::Repr> {
        match &self.l3 {
            L3::Arp(arp) => Some(arp),
            _ => None,
        }
    }

    /// The IPv4 datagram, if this is one.
    pub fn ipv4(&self) -> Option<&Ipv4Summary> {
        match &self.l3 {
            L3::Ipv4(ipv4) => Some(ipv4),
            _ => None,
        }
    }

    /// The ethertype of the frame.
    pub fn ethertype(&self) -> u16 {
        match self.l3 {
            L3::Arp(_) => ETHERTYPE_ARP,
            L3::Ipv4(_) => ETHERTYPE_IPV4,
            L3::Other { ethertype } => ethertype,
        }
    }
}

impl L4 {
    /// Source and destination port of TCP and UDP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match *self {
            L4::Tcp {
                src_port, dst_port, ..
            }
            | L4::Udp { src_port, dst_port } => Some((src_port, dst_port)),
            L4::Icmp { .. } | L4::Other => None,
        }
    }
}

/// Classifies a frame a pod sent, or names the first check it fails. See the module doc for the
/// checks and their order.
pub fn classify(frame: &[u8]) -> Result<Classified, DropReason> {
    let eth = ethernet::Packet::new_checked(frame).map_err(eth_reason)?;
    let eth = ethernet::Repr::parse(&eth);
    let payload = &frame[eth.buffer_len()..];
    let l3 = match eth.ethertype {
        ETHERTYPE_ARP => L3::Arp(classify_arp(payload)?),
        ETHERTYPE_IPV4 => L3::Ipv4(classify_ipv4(payload)?),
        ethertype => L3::Other { ethertype },
    };
    Ok(Classified {
        src_mac: eth.src_addr,
        dst_mac: eth.dst_addr,
        l3,
    })
}

fn classify_arp(payload: &[u8]) -> Result<arp::Repr, DropReason> {
    let packet = arp::Packet::new_checked(payload).map_err(arp_reason)?;
    arp::Repr::parse(&packet).map_err(arp_reason)
}

fn classify_ipv4(payload: &[u8]) -> Result<Ipv4Summary, DropReason> {
    let packet = ipv4::Packet::new_checked(payload).map_err(ipv4_reason)?;
    let repr = ipv4::Repr::parse(&packet).map_err(ipv4_reason)?;
    let l4 = classify_l4(repr.protocol, packet.payload())?;
    Ok(Ipv4Summary {
        src: repr.src_addr,
        dst: repr.dst_addr,
        protocol: repr.protocol,
        dont_fragment: repr.dont_frag,
        total_len: packet.total_len(),
        l4,
    })
}

/// `datagram` is the IPv4 payload: from the end of the header to the total length.
fn classify_l4(protocol: u8, datagram: &[u8]) -> Result<L4, DropReason> {
    Ok(match protocol {
        IPPROTO_TCP => {
            let tcp = tcp::Packet::new_checked(datagram).map_err(tcp_reason)?;
            L4::Tcp {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                flags: tcp.flags(),
            }
        }
        IPPROTO_UDP => {
            let udp = udp::Packet::new_checked(datagram).map_err(udp_reason)?;
            L4::Udp {
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
            }
        }
        IPPROTO_ICMP => {
            let icmp = icmp::Packet::new_checked(datagram).map_err(icmp_reason)?;
            L4::Icmp {
                icmp_type: icmp.msg_type(),
                code: icmp.msg_code(),
                echo_id: icmp.is_echo().then(|| icmp.echo_ident()),
            }
        }
        _ => L4::Other,
    })
}

fn eth_reason(error: EthernetError) -> DropReason {
    match error {
        EthernetError::Truncated { .. } => DropReason::EthTruncated,
    }
}

fn arp_reason(error: ArpError) -> DropReason {
    match error {
        ArpError::Truncated { .. } => DropReason::ArpTruncated,
        ArpError::Unsupported { .. } => DropReason::ArpUnsupported,
    }
}

fn ipv4_reason(error: Ipv4Error) -> DropReason {
    match error {
        Ipv4Error::Truncated { .. } => DropReason::Ipv4Truncated,
        Ipv4Error::BadVersion { .. } => DropReason::Ipv4BadVersion,
        Ipv4Error::BadIhl { .. } => DropReason::Ipv4BadIhl,
        Ipv4Error::BadTotalLength { .. } => DropReason::Ipv4BadTotalLength,
        Ipv4Error::Fragment { .. } => DropReason::Ipv4Fragment,
    }
}

fn tcp_reason(error: TcpError) -> DropReason {
    match error {
        TcpError::Truncated { .. } => DropReason::TcpTruncated,
        TcpError::BadDataOffset { .. } => DropReason::TcpBadDataOffset,
    }
}

fn udp_reason(error: UdpError) -> DropReason {
    match error {
        UdpError::Truncated { .. } => DropReason::UdpTruncated,
        UdpError::BadLength { .. } => DropReason::UdpBadLength,
    }
}

fn icmp_reason(error: IcmpError) -> DropReason {
    match error {
        IcmpError::Truncated { .. } => DropReason::IcmpTruncated,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ctpath_common::wire::{ETH_HDR_LEN, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IPV4_MIN_HDR_LEN};

    use super::*;
    use crate::testing::{captured, FrameBuilder, Malform};
    use crate::wire::tcp::Flags;

    const POD_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
    const GW_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    const POD_IP: [u8; 4] = [10, 1, 0, 5];
    const PEER_IP: [u8; 4] = [10, 2, 0, 7];
    const ETHERTYPE_IPV6: u16 = 0x86dd;
    const ETHERTYPE_VLAN: u16 = 0x8100;
    /// Where the transport header starts in a builder frame.
    const L4_START: usize = ETH_HDR_LEN + IPV4_MIN_HDR_LEN;

    fn udp() -> Vec<u8> {
        FrameBuilder::udp(POD_MAC, GW_MAC, POD_IP, PEER_IP, 40000, 53, b"query")
    }

    fn tcp() -> Vec<u8> {
        FrameBuilder::tcp(
            POD_MAC,
            GW_MAC,
            POD_IP,
            PEER_IP,
            40001,
            443,
            Flags::SYN,
            b"",
        )
    }

    fn icmp() -> Vec<u8> {
        FrameBuilder::icmp_echo_request(POD_MAC, GW_MAC, POD_IP, PEER_IP, 7, 1)
    }

    fn arp() -> Vec<u8> {
        FrameBuilder::arp_request(POD_MAC, POD_IP, [10, 1, 0, 1])
    }

    /// One or more frames per drop reason; the first failing check names the reason.
    fn malformed() -> Vec<(&'static str, Vec<u8>, DropReason)> {
        use DropReason::*;
        vec![
            ("empty frame", vec![], EthTruncated),
            ("13 bytes", udp().truncated(13), EthTruncated),
            ("ARP header only", arp().truncated(14), ArpTruncated),
            ("ARP of 27 bytes", arp().truncated(14 + 27), ArpTruncated),
            (
                "ARP hardware type 6",
                arp().with_arp_hardware_type(6),
                ArpUnsupported,
            ),
            (
                "ARP for IPv6",
                arp().with_arp_protocol_type(0x86dd),
                ArpUnsupported,
            ),
            ("ARP hlen 8", arp().with_arp_lens(8, 4), ArpUnsupported),
            ("ARP plen 16", arp().with_arp_lens(6, 16), ArpUnsupported),
            ("IPv4 header only", udp().truncated(14), Ipv4Truncated),
            ("IPv4 of 19 bytes", udp().truncated(14 + 19), Ipv4Truncated),
            (
                "IPv6 under IPv4 ethertype",
                udp().with_ipv4_version(6),
                Ipv4BadVersion,
            ),
            ("version 0", udp().with_ipv4_version(0), Ipv4BadVersion),
            (
                "version checked before IHL",
                udp().with_ipv4_ihl(2).with_ipv4_version(5),
                Ipv4BadVersion,
            ),
            ("IHL 4", udp().with_ipv4_ihl(4), Ipv4BadIhl),
            ("IHL 0", udp().with_ipv4_ihl(0), Ipv4BadIhl),
            (
                "IHL 15 past the frame",
                udp().with_ipv4_ihl(15),
                Ipv4Truncated,
            ),
            (
                "total length below header",
                udp().with_ipv4_total_len(19),
                Ipv4BadTotalLength,
            ),
            (
                "total length past the frame",
                udp().with_ipv4_total_len(20 + 8 + 5 + 1),
                Ipv4BadTotalLength,
            ),
            (
                "frame cut inside the payload",
                udp().truncated(40),
                Ipv4BadTotalLength,
            ),
            (
                "first fragment (MF)",
                udp().with_ipv4_fragment(true, 0),
                Ipv4Fragment,
            ),
            (
                "last fragment (offset)",
                udp().with_ipv4_fragment(false, 185),
                Ipv4Fragment,
            ),
            (
                "middle fragment",
                udp().with_ipv4_fragment(true, 1),
                Ipv4Fragment,
            ),
            (
                "fragment checked before L4",
                tcp().with_ipv4_total_len(30).with_ipv4_fragment(true, 0),
                Ipv4Fragment,
            ),
            (
                "TCP of 19 bytes",
                tcp().with_ipv4_total_len(20 + 19),
                TcpTruncated,
            ),
            (
                "TCP total length without TCP",
                tcp().with_ipv4_total_len(20),
                TcpTruncated,
            ),
            (
                "TCP data offset 4",
                tcp().with_tcp_data_offset(4),
                TcpBadDataOffset,
            ),
            (
                "TCP data offset 0",
                tcp().with_tcp_data_offset(0),
                TcpBadDataOffset,
            ),
            (
                "TCP options past the segment",
                tcp().with_tcp_data_offset(6),
                TcpTruncated,
            ),
            (
                "TCP options in the padding",
                tcp().padded(4).with_tcp_data_offset(6),
                TcpTruncated,
            ),
            (
                "UDP of 7 bytes",
                udp().with_ipv4_total_len(20 + 7),
                UdpTruncated,
            ),
            ("UDP length 7", udp().with_udp_len(7), UdpBadLength),
            (
                "UDP length past the datagram",
                udp().with_udp_len(14),
                UdpBadLength,
            ),
            (
                "UDP length in the padding",
                udp().padded(10).with_udp_len(20),
                UdpBadLength,
            ),
            (
                "ICMP of 7 bytes",
                icmp().with_ipv4_total_len(20 + 7),
                IcmpTruncated,
            ),
            (
                "ICMP of 0 bytes",
                icmp().with_ipv4_total_len(20),
                IcmpTruncated,
            ),
        ]
    }

    #[test]
    fn malformed_frames_drop_with_the_first_failing_reason() {
        for (description, frame, reason) in malformed() {
            assert_eq!(classify(&frame), Err(reason), "{description}");
        }
    }

    #[test]
    fn every_drop_reason_of_classify_has_a_case() {
        let covered: BTreeSet<_> = malformed().into_iter().map(|(_, _, r)| r).collect();
        let all: BTreeSet<_> = DROP_REASONS.iter().copied().collect();
        assert_eq!(covered, all);
    }

    #[test]
    fn udp_frame() {
        let classified = classify(&udp()).unwrap();
        assert_eq!(classified.src_mac, MacAddr(POD_MAC));
        assert_eq!(classified.dst_mac, MacAddr(GW_MAC));
        assert_eq!(classified.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(
            classified.l3,
            L3::Ipv4(Ipv4Summary {
                src: POD_IP.into(),
                dst: PEER_IP.into(),
                protocol: IPPROTO_UDP,
                dont_fragment: true,
                total_len: 20 + 8 + 5,
                l4: L4::Udp {
                    src_port: 40000,
                    dst_port: 53
                },
            })
        );
    }

    #[test]
    fn tcp_frame() {
        let frame = FrameBuilder::tcp(
            POD_MAC,
            GW_MAC,
            POD_IP,
            PEER_IP,
            40001,
            443,
            Flags::PSH | Flags::ACK,
            b"hello",
        );
        let ip = *classify(&frame).unwrap().ipv4().unwrap();
        assert_eq!(ip.protocol, IPPROTO_TCP);
        assert_eq!(ip.total_len, 20 + 20 + 5);
        assert_eq!(
            ip.l4,
            L4::Tcp {
                src_port: 40001,
                dst_port: 443,
                flags: Flags::PSH | Flags::ACK
            }
        );
        assert_eq!(ip.l4.ports(), Some((40001, 443)));
    }

    #[test]
    fn icmp_frames() {
        let request = classify(&icmp()).unwrap();
        assert_eq!(
            request.ipv4().unwrap().l4,
            L4::Icmp {
                icmp_type: ICMP_ECHO_REQUEST,
                code: 0,
                echo_id: Some(7)
            }
        );
        let reply = FrameBuilder::icmp_echo_reply(GW_MAC, POD_MAC, PEER_IP, POD_IP, 7, 1);
        assert_eq!(
            classify(&reply).unwrap().ipv4().unwrap().l4,
            L4::Icmp {
                icmp_type: ICMP_ECHO_REPLY,
                code: 0,
                echo_id: Some(7)
            }
        );
        let unreachable = icmp().with_icmp_type(3, 3);
        assert_eq!(
            classify(&unreachable).unwrap().ipv4().unwrap().l4,
            L4::Icmp {
                icmp_type: 3,
                code: 3,
                echo_id: None
            }
        );
        assert_eq!(
            classify(&unreachable).unwrap().ipv4().unwrap().l4.ports(),
            None
        );
    }

    #[test]
    fn arp_frames() {
        let request = classify(&arp()).unwrap();
        assert_eq!(request.src_mac, MacAddr(POD_MAC));
        assert_eq!(request.dst_mac, MacAddr::BROADCAST);
        assert_eq!(
            request.arp(),
            Some(&arp::Repr {
                operation: arp::Operation::Request,
                sender_mac: MacAddr(POD_MAC),
                sender_ip: POD_IP.into(),
                target_mac: MacAddr::ZERO,
                target_ip: Ipv4Addr::new(10, 1, 0, 1),
            })
        );
        let reply = FrameBuilder::arp_reply(GW_MAC, [10, 1, 0, 1], POD_MAC, POD_IP);
        let reply = classify(&reply).unwrap();
        assert_eq!(reply.dst_mac, MacAddr(POD_MAC));
        assert_eq!(reply.arp().unwrap().operation, arp::Operation::Reply);
        // Any operation passes classification; policy decides later.
        let rarp = arp().with_byte(ETH_HDR_LEN + 7, 3);
        assert_eq!(
            classify(&rarp).unwrap().arp().unwrap().operation,
            arp::Operation::Other(3)
        );
    }

    #[test]
    fn captured_frames() {
        for frame in [
            &captured::ARP_REQUEST[..],
            &captured::ARP_REPLY[..],
            &captured::UDP[..],
            &captured::TCP_SYN[..],
            &captured::TCP_RST_ACK[..],
            &captured::ICMP_ECHO_REQUEST[..],
            &captured::ICMP_ECHO_REPLY[..],
        ] {
            assert!(classify(frame).is_ok(), "{frame:02x?}");
        }
        let syn = classify(&captured::TCP_SYN).unwrap();
        assert_eq!(
            syn.ipv4().unwrap().l4,
            L4::Tcp {
                src_port: 40001,
                dst_port: 80,
                flags: Flags::SYN
            }
        );
        let reply = classify(&captured::ICMP_ECHO_REPLY).unwrap();
        assert!(!reply.ipv4().unwrap().dont_fragment);
    }

    #[test]
    fn other_ethertypes_and_protocols_are_classified_not_dropped() {
        for ethertype in [ETHERTYPE_IPV6, ETHERTYPE_VLAN, 0x0042] {
            let frame = FrameBuilder::ethernet(POD_MAC, GW_MAC, ethertype, &[]);
            assert_eq!(
                classify(&frame).unwrap().l3,
                L3::Other { ethertype },
                "{ethertype:#06x}"
            );
        }
        // An IPv4 frame relabelled IPv6 is not looked into.
        assert_eq!(
            classify(&udp().with_ethertype(ETHERTYPE_IPV6)).unwrap().l3,
            L3::Other {
                ethertype: ETHERTYPE_IPV6
            }
        );
        // GRE: no transport checks, even with an empty payload.
        let gre = FrameBuilder::ipv4(POD_MAC, GW_MAC, POD_IP, PEER_IP, 47, &[]);
        let ip = *classify(&gre).unwrap().ipv4().unwrap();
        assert_eq!((ip.protocol, ip.l4), (47, L4::Other));
    }

    #[test]
    fn padding_and_options_are_handled() {
        // Padded to the 60-byte minimum: same classification as without padding.
        let frame = icmp();
        assert_eq!(frame.len(), 42);
        assert_eq!(classify(&frame.clone().padded(18)), classify(&frame));
        // An IPv4 option (4 bytes of NOP + EOL) inserted before the transport header.
        let mut with_option = udp();
        with_option.splice(L4_START..L4_START, [1, 1, 1, 0]);
        let with_option = with_option
            .with_ipv4_ihl(6)
            .with_ipv4_total_len(20 + 4 + 8 + 5);
        assert_eq!(
            classify(&with_option).unwrap().ipv4().unwrap().l4,
            L4::Udp {
                src_port: 40000,
                dst_port: 53
            }
        );
    }

    #[test]
    fn checksums_are_not_verified() {
        let bad_ip = udp().with_ipv4_checksum(0xbad0);
        assert_eq!(classify(&bad_ip), classify(&udp()));
        let bad_udp = udp().with_byte(L4_START + 6, 0xff);
        assert_eq!(classify(&bad_udp), classify(&udp()));
    }
}
