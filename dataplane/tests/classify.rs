//! Property tests of the classifier over `testing::FrameBuilder` frames, and a cross-check
//! against etherparse, an independent parser.
//!
//! Expected values are written from the frame's specification ([`Spec`]), never from the
//! classifier, so a bug shared by the builder and the classifier (both use `wire`) shows up as a
//! disagreement with etherparse or with the spec.

use std::net::Ipv4Addr;

use ctpath_common::wire::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HDR_LEN, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IPPROTO_ICMP,
    IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HDR_LEN,
};
use ctpath_common::DropReason;
use ctpath_dataplane::model::{classify, Classified, Ipv4Summary, DROP_REASONS, L3, L4};
use ctpath_dataplane::testing::{captured, FrameBuilder, Malform};
use ctpath_dataplane::wire::arp::{self, Operation};
use ctpath_dataplane::wire::tcp::Flags;
use ctpath_dataplane::wire::MacAddr;
use etherparse::{LinkSlice, NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;

/// IP authentication header (RFC 4302).
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;

/// Addresses of an IPv4 frame.
#[derive(Clone, Copy, Debug)]
struct Addrs {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
}

/// What a builder is asked to build.
#[derive(Clone, Debug)]
enum Spec {
    Udp(Addrs, u16, u16, Vec<u8>),
    Tcp(Addrs, u16, u16, Flags, Vec<u8>),
    EchoRequest(Addrs, u16, u16),
    EchoReply(Addrs, u16, u16),
    Ipv4Other(Addrs, u8, Vec<u8>),
    ArpRequest([u8; 6], Ipv4Addr, Ipv4Addr),
    ArpReply([u8; 6], Ipv4Addr, [u8; 6], Ipv4Addr),
    /// Neither IPv4 nor ARP.
    Other([u8; 6], [u8; 6], u16, Vec<u8>),
}

impl Spec {
    fn build(&self) -> Vec<u8> {
        match self.clone() {
            Spec::Udp(a, sport, dport, payload) => FrameBuilder::udp(
                a.src_mac, a.dst_mac, a.src_ip, a.dst_ip, sport, dport, &payload,
            ),
            Spec::Tcp(a, sport, dport, flags, payload) => FrameBuilder::tcp(
                a.src_mac, a.dst_mac, a.src_ip, a.dst_ip, sport, dport, flags, &payload,
            ),
            Spec::EchoRequest(a, id, seq) => {
                FrameBuilder::icmp_echo_request(a.src_mac, a.dst_mac, a.src_ip, a.dst_ip, id, seq)
            }
            Spec::EchoReply(a, id, seq) => {
                FrameBuilder::icmp_echo_reply(a.src_mac, a.dst_mac, a.src_ip, a.dst_ip, id, seq)
            }
            Spec::Ipv4Other(a, protocol, payload) => {
                FrameBuilder::ipv4(a.src_mac, a.dst_mac, a.src_ip, a.dst_ip, protocol, &payload)
            }
            Spec::ArpRequest(mac, ip, target) => FrameBuilder::arp_request(mac, ip, target),
            Spec::ArpReply(mac, ip, target_mac, target_ip) => {
                FrameBuilder::arp_reply(mac, ip, target_mac, target_ip)
            }
            Spec::Other(src, dst, ethertype, payload) => {
                FrameBuilder::ethernet(src, dst, ethertype, &payload)
            }
        }
    }

    fn ipv4(a: &Addrs, protocol: u8, l4_len: usize, l4: L4) -> Classified {
        Classified {
            src_mac: MacAddr(a.src_mac),
            dst_mac: MacAddr(a.dst_mac),
            l3: L3::Ipv4(Ipv4Summary {
                src: a.src_ip,
                dst: a.dst_ip,
                protocol,
                dont_fragment: true,
                total_len: (20 + l4_len) as u16,
                l4,
            }),
        }
    }

    fn expected(&self) -> Classified {
        match self {
            Spec::Udp(a, src_port, dst_port, payload) => Spec::ipv4(
                a,
                IPPROTO_UDP,
                8 + payload.len(),
                L4::Udp {
                    src_port: *src_port,
                    dst_port: *dst_port,
                },
            ),
            Spec::Tcp(a, src_port, dst_port, flags, payload) => Spec::ipv4(
                a,
                IPPROTO_TCP,
                20 + payload.len(),
                L4::Tcp {
                    src_port: *src_port,
                    dst_port: *dst_port,
                    flags: *flags,
                },
            ),
            Spec::EchoRequest(a, id, _) | Spec::EchoReply(a, id, _) => {
                let icmp_type = match self {
                    Spec::EchoRequest(..) => ICMP_ECHO_REQUEST,
                    _ => ICMP_ECHO_REPLY,
                };
                let l4 = L4::Icmp {
                    icmp_type,
                    code: 0,
                    echo_id: Some(*id),
                };
                Spec::ipv4(a, IPPROTO_ICMP, 8, l4)
            }
            Spec::Ipv4Other(a, protocol, payload) => {
                Spec::ipv4(a, *protocol, payload.len(), L4::Other)
            }
            Spec::ArpRequest(mac, ip, target) => Classified {
                src_mac: MacAddr(*mac),
                dst_mac: MacAddr::BROADCAST,
                l3: L3::Arp(arp::Repr {
                    operation: Operation::Request,
                    sender_mac: MacAddr(*mac),
                    sender_ip: *ip,
                    target_mac: MacAddr::ZERO,
                    target_ip: *target,
                }),
            },
            Spec::ArpReply(mac, ip, target_mac, target_ip) => Classified {
                src_mac: MacAddr(*mac),
                dst_mac: MacAddr(*target_mac),
                l3: L3::Arp(arp::Repr {
                    operation: Operation::Reply,
                    sender_mac: MacAddr(*mac),
                    sender_ip: *ip,
                    target_mac: MacAddr(*target_mac),
                    target_ip: *target_ip,
                }),
            },
            Spec::Other(src, dst, ethertype, _) => Classified {
                src_mac: MacAddr(*src),
                dst_mac: MacAddr(*dst),
                l3: L3::Other {
                    ethertype: *ethertype,
                },
            },
        }
    }

    /// What `classify` must say about the first `len` bytes of the frame, `len` below the length
    /// the headers announce.
    fn truncated_reason(&self, len: usize) -> Option<DropReason> {
        if len < ETH_HDR_LEN {
            return Some(DropReason::EthTruncated);
        }
        match self {
            Spec::Other(..) => None,
            Spec::ArpRequest(..) | Spec::ArpReply(..) => Some(DropReason::ArpTruncated),
            _ if len < ETH_HDR_LEN + IPV4_MIN_HDR_LEN => Some(DropReason::Ipv4Truncated),
            _ => Some(DropReason::Ipv4BadTotalLength),
        }
    }
}

fn addrs() -> impl Strategy<Value = Addrs> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
    )
        .prop_map(|(src_mac, dst_mac, src_ip, dst_ip)| Addrs {
            src_mac,
            dst_mac,
            src_ip: src_ip.into(),
            dst_ip: dst_ip.into(),
        })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn spec() -> impl Strategy<Value = Spec> {
    let flags = any::<u8>().prop_map(Flags);
    let other_protocol = any::<u8>().prop_filter("not ICMP/TCP/UDP", |p| ![1, 6, 17].contains(p));
    // Nor what etherparse parses behind the Ethernet header (IPv6, VLAN tags, MACsec), whose
    // random payload it would reject where the datapath rightly reads no further.
    let other_ethertype = any::<u16>().prop_filter("not IPv4/ARP or parsed by etherparse", |t| {
        ![
            ETHERTYPE_IPV4,
            ETHERTYPE_ARP,
            0x86dd,
            0x8100,
            0x88a8,
            0x9100,
            0x88e5,
        ]
        .contains(t)
    });
    prop_oneof![
        (addrs(), any::<u16>(), any::<u16>(), payload())
            .prop_map(|(a, s, d, p)| Spec::Udp(a, s, d, p)),
        (addrs(), any::<u16>(), any::<u16>(), flags, payload())
            .prop_map(|(a, s, d, f, p)| Spec::Tcp(a, s, d, f, p)),
        (addrs(), any::<u16>(), any::<u16>()).prop_map(|(a, i, s)| Spec::EchoRequest(a, i, s)),
        (addrs(), any::<u16>(), any::<u16>()).prop_map(|(a, i, s)| Spec::EchoReply(a, i, s)),
        (addrs(), other_protocol, payload()).prop_map(|(a, p, l)| Spec::Ipv4Other(a, p, l)),
        (any::<[u8; 6]>(), ip(), ip()).prop_map(|(m, i, t)| Spec::ArpRequest(m, i, t)),
        (any::<[u8; 6]>(), ip(), any::<[u8; 6]>(), ip())
            .prop_map(|(m, i, tm, ti)| Spec::ArpReply(m, i, tm, ti)),
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            other_ethertype,
            payload()
        )
            .prop_map(|(s, d, t, p)| Spec::Other(s, d, t, p)),
    ]
}

/// Checks that etherparse reads `frame` as `classified` says: addresses, ethertype, protocol,
/// ports, flags, ICMP type; and, for frames straight from a builder, that every checksum is
/// right by etherparse's computation.
fn assert_etherparse_agrees(frame: &[u8], classified: &Classified, check_checksums: bool) {
    // Where etherparse reads more than the datapath, the two are not comparable: etherparse
    // parses an authentication header (51) and the transport behind it, and ICMPv6 (58) even
    // over IPv4, where the datapath sees just other protocols; and it wants the 20-byte body of
    // ICMP timestamp messages (13, 14), where the datapath reads the 8-byte header only.
    if let Some(ip) = classified.ipv4() {
        let icmp_timestamp = matches!(
            ip.l4,
            L4::Icmp {
                icmp_type: 13 | 14,
                ..
            }
        );
        if [IPPROTO_AH, IPPROTO_ICMPV6].contains(&ip.protocol) || icmp_timestamp {
            return;
        }
    }
    let sliced = SlicedPacket::from_ethernet(frame).expect("etherparse rejects a classified frame");
    let Some(LinkSlice::Ethernet2(eth)) = &sliced.link else {
        panic!("etherparse found no Ethernet II header");
    };
    assert_eq!(MacAddr(eth.source()), classified.src_mac);
    assert_eq!(MacAddr(eth.destination()), classified.dst_mac);
    assert_eq!(eth.ether_type().0, classified.ethertype());
    // etherparse 0.16 does not parse ARP; the wire tests check it against captured frames.
    let L3::Ipv4(ours) = classified.l3 else {
        return;
    };
    let Some(NetSlice::Ipv4(ipv4)) = &sliced.net else {
        panic!("etherparse found no IPv4 header");
    };
    let header = ipv4.header();
    assert_eq!(header.source_addr(), ours.src);
    assert_eq!(header.destination_addr(), ours.dst);
    assert_eq!(header.protocol().0, ours.protocol);
    assert_eq!(header.dont_fragment(), ours.dont_fragment);
    assert_eq!(header.total_len(), ours.total_len);
    if check_checksums {
        assert_eq!(
            header.header_checksum(),
            header.to_header().calc_header_checksum()
        );
    }
    let (src, dst) = (ours.src.octets(), ours.dst.octets());
    match (ours.l4, &sliced.transport) {
        (L4::Other, _) => {}
        (
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            },
            Some(TransportSlice::Tcp(tcp)),
        ) => {
            assert_eq!(
                (tcp.source_port(), tcp.destination_port()),
                (src_port, dst_port)
            );
            let theirs = [
                (tcp.fin(), Flags::FIN),
                (tcp.syn(), Flags::SYN),
                (tcp.rst(), Flags::RST),
                (tcp.psh(), Flags::PSH),
                (tcp.ack(), Flags::ACK),
                (tcp.urg(), Flags::URG),
                (tcp.ece(), Flags::ECE),
                (tcp.cwr(), Flags::CWR),
            ];
            for (set, flag) in theirs {
                assert_eq!(set, flags.contains(flag), "{flag}");
            }
            if check_checksums {
                assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv4(src, dst).unwrap());
            }
        }
        (L4::Udp { src_port, dst_port }, Some(TransportSlice::Udp(udp))) => {
            assert_eq!(
                (udp.source_port(), udp.destination_port()),
                (src_port, dst_port)
            );
            if check_checksums {
                let expected = udp
                    .to_header()
                    .calc_checksum_ipv4_raw(src, dst, udp.payload())
                    .unwrap();
                assert_eq!(udp.checksum(), expected);
            }
        }
        (
            L4::Icmp {
                icmp_type,
                code,
                echo_id,
            },
            Some(TransportSlice::Icmpv4(icmp)),
        ) => {
            assert_eq!((icmp.type_u8(), icmp.code_u8()), (icmp_type, code));
            if let Some(id) = echo_id {
                let [a, b, _, _] = icmp.bytes5to8();
                assert_eq!(u16::from_be_bytes([a, b]), id);
            }
            if check_checksums {
                let expected =
                    etherparse::Icmpv4Header::with_checksum(icmp.icmp_type(), icmp.payload());
                assert_eq!(icmp.checksum(), expected.checksum);
            }
        }
        (l4, transport) => panic!("we say {l4:?}, etherparse says {transport:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn never_panics_on_arbitrary_bytes(frame in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(reason) = classify(&frame) {
            prop_assert!(DROP_REASONS.contains(&reason));
        }
    }

    /// Arbitrary bytes behind an ARP or IPv4 ethertype, to get past the first check.
    #[test]
    fn never_panics_on_arbitrary_arp_or_ipv4(
        ethertype in prop_oneof![Just(ETHERTYPE_IPV4), Just(ETHERTYPE_ARP)],
        payload in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        if let Err(reason) = classify(&FrameBuilder::ethernet([2; 6], [4; 6], ethertype, &payload)) {
            prop_assert!(DROP_REASONS.contains(&reason));
        }
    }

    /// Corrupting one byte of a valid frame never panics; whenever the result still says TCP,
    /// UDP or ICMP over IPv4, etherparse reads the same addresses, ports and types.
    #[test]
    fn corrupted_frames_never_panic(
        spec in spec(),
        index in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let frame = spec.build();
        let offset = index.index(frame.len());
        let frame = frame.with_byte(offset, value);
        if let Ok(classified) = classify(&frame) {
            if classified.ipv4().is_some_and(|ip| ip.l4 != L4::Other) {
                assert_etherparse_agrees(&frame, &classified, false);
            }
        }
    }

    #[test]
    fn builder_frames_classify_as_built(spec in spec(), padding in 0..24usize) {
        let frame = spec.build().padded(padding);
        prop_assert_eq!(classify(&frame), Ok(spec.expected()));
    }

    #[test]
    fn builder_frames_agree_with_etherparse(spec in spec()) {
        let frame = spec.build();
        assert_etherparse_agrees(&frame, &spec.expected(), true);
    }

    /// Every strict prefix of a valid frame shorter than its announced length is dropped as too
    /// short: Ethernet, ARP or IPv4 truncated, or an IPv4 total length past the frame.
    #[test]
    fn strict_prefixes_are_truncated(spec in spec(), cut in any::<prop::sample::Index>()) {
        let frame = spec.build();
        let len = cut.index(frame.len());
        let result = classify(&frame[..len]);
        match spec.truncated_reason(len) {
            Some(reason) => prop_assert_eq!(result, Err(reason)),
            None => prop_assert!(result.is_ok()),
        }
    }
}

#[test]
fn udp_prefixes_use_only_length_reasons() {
    let frame = FrameBuilder::udp(
        [2; 6],
        [4; 6],
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        1,
        2,
        b"payload",
    );
    let length_reasons = [
        DropReason::EthTruncated,
        DropReason::Ipv4Truncated,
        DropReason::Ipv4BadTotalLength,
        DropReason::UdpTruncated,
        DropReason::UdpBadLength,
    ];
    for len in 0..frame.len() {
        let reason = classify(&frame[..len]).unwrap_err();
        assert!(length_reasons.contains(&reason), "prefix {len}: {reason:?}");
    }
}

#[test]
fn captured_frames_agree_with_etherparse() {
    for frame in [
        &captured::ARP_REQUEST[..],
        &captured::ARP_REPLY[..],
        &captured::UDP[..],
        &captured::TCP_SYN[..],
        &captured::TCP_RST_ACK[..],
        &captured::ICMP_ECHO_REQUEST[..],
        &captured::ICMP_ECHO_REPLY[..],
    ] {
        assert_etherparse_agrees(frame, &classify(frame).unwrap(), true);
    }
    let reply = classify(&captured::ICMP_ECHO_REPLY).unwrap();
    assert_eq!(
        reply.ipv4().unwrap().l4,
        L4::Icmp {
            icmp_type: ICMP_ECHO_REPLY,
            code: 0,
            echo_id: Some(7593)
        }
    );
}
