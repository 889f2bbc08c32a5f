//! The forwarding pipeline of the node model (`from_pod`, `from_underlay`): one table of
//! fixtures `{ description, hook, frame, expected counter }` covering every drop reason and
//! counter the model can produce, then the exact output frames: ARP replies, ICMP
//! "fragmentation needed", readdressed and encapsulated frames, ARP over VXLAN.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use common::*;
use ctpath_common::flow::{flow_hash, vxlan_source_port};
use ctpath_common::wire::{
    ETH_HDR_LEN, ICMP_CODE_FRAG_NEEDED, ICMP_DEST_UNREACHABLE, IPPROTO_ICMP, IPPROTO_UDP,
};
use ctpath_common::{Counter, DropReason};
use ctpath_dataplane::model::{Counted, NodeModel, Outcome, Protocol, Remote, XdpAction};
use ctpath_dataplane::testing::{FrameBuilder, Malform};
use ctpath_dataplane::wire::tcp::Flags;
use ctpath_dataplane::wire::{icmp, ipv4};

const ETHERTYPE_IPV6: u16 = 0x86dd;

#[derive(Clone, Copy, Debug)]
enum Hook {
    Pod(u32),
    Underlay,
}

/// The groups of every fixture: WEB may send UDP anywhere; DB takes UDP from `web`.
fn fixture_model() -> NodeModel {
    model(vec![
        group("web", vec![egress(ALL_UDP, Remote::Anywhere)]),
        group("db", vec![ingress(ALL_UDP, in_group("web"))]),
    ])
}

fn run(model: &mut NodeModel, hook: Hook, frame: &[u8]) -> ctpath_dataplane::model::Verdict {
    match hook {
        Hook::Pod(ifindex) => model.from_pod(ifindex, frame, 0),
        Hook::Underlay => model.from_underlay(frame, 0),
    }
}

fn vxlan_from(vtep: Ipv4Addr, vni: u32, inner: &[u8]) -> Vec<u8> {
    FrameBuilder::vxlan(
        PEER_UNDERLAY_MAC,
        UNDERLAY_MAC,
        vtep,
        UNDERLAY_IP,
        50_000,
        vni,
        inner,
    )
}

fn big_udp(from: Pod, to: Pod, total_len: usize) -> Vec<u8> {
    let payload = vec![0x5a; total_len - 28];
    FrameBuilder::udp(from.mac, ROUTER_MAC, from.ip, to.ip, 1, 2, &payload)
}

fn fixtures() -> Vec<(&'static str, Hook, Vec<u8>, Counted)> {
    use Counted::{Counter as C, Drop as D};
    use DropReason::*;
    let web = Hook::Pod(WEB.ifindex);
    let to_web = udp(REMOTE_PLAIN, WEB, 2, 1);
    vec![
        // from_pod
        ("runt", web, vec![0; 13], D(EthTruncated)),
        (
            "bad IHL",
            web,
            udp(WEB, REMOTE_PLAIN, 1, 2).with_ipv4_ihl(4),
            D(Ipv4BadIhl),
        ),
        (
            "unknown veth",
            Hook::Pod(99),
            udp(WEB, REMOTE_PLAIN, 1, 2),
            D(UnconfiguredPort),
        ),
        (
            "classification before the port",
            Hook::Pod(99),
            vec![0; 13],
            D(EthTruncated),
        ),
        (
            "spoofed MAC",
            web,
            udp(WEB, REMOTE_PLAIN, 1, 2).with_byte(6, 0x12),
            D(SpoofedMac),
        ),
        (
            "spoofed IP",
            web,
            FrameBuilder::udp(WEB.mac, ROUTER_MAC, DB.ip, REMOTE_PLAIN.ip, 1, 2, b""),
            D(SpoofedIp),
        ),
        (
            "spoofed ARP",
            web,
            FrameBuilder::arp_request(WEB.mac, DB.ip, GATEWAY),
            D(SpoofedArp),
        ),
        (
            "ARP for the gateway",
            web,
            FrameBuilder::arp_request(WEB.mac, WEB.ip, GATEWAY),
            C(Counter::PodArpReplied),
        ),
        (
            "ARP for nobody",
            web,
            FrameBuilder::arp_request(WEB.mac, WEB.ip, [10, 1, 0, 99]),
            D(ArpUnknownTarget),
        ),
        (
            "ARP for another plane's pod",
            web,
            FrameBuilder::arp_request(WEB.mac, WEB.ip, WEB200.ip),
            D(ArpUnknownTarget),
        ),
        (
            "ARP reply",
            web,
            FrameBuilder::arp_reply(WEB.mac, WEB.ip, ROUTER_MAC, GATEWAY),
            D(ArpNotRequest),
        ),
        (
            "IPv6",
            web,
            FrameBuilder::ethernet(WEB.mac, ROUTER_MAC, ETHERTYPE_IPV6, &[0; 40]),
            C(Counter::PodPassed),
        ),
        (
            "too big, DF",
            web,
            big_udp(WEB, REMOTE_PLAIN, 1451),
            C(Counter::IcmpFragNeededSent),
        ),
        (
            "too big, no DF",
            web,
            big_udp(WEB, REMOTE_PLAIN, 1451).with_ipv4_dont_frag(false),
            D(MtuExceeded),
        ),
        (
            "just fits",
            web,
            big_udp(WEB, REMOTE_PLAIN, 1450),
            C(Counter::PodEncapsulated),
        ),
        (
            "unknown destination",
            web,
            FrameBuilder::udp(WEB.mac, ROUTER_MAC, WEB.ip, [10, 1, 0, 99], 1, 2, b""),
            D(UnknownDestination),
        ),
        (
            "to the gateway",
            web,
            FrameBuilder::udp(WEB.mac, ROUTER_MAC, WEB.ip, GATEWAY, 1, 2, b""),
            D(UnknownDestination),
        ),
        (
            "egress denied",
            web,
            tcp(WEB, REMOTE_PLAIN, 1, 2, Flags::SYN),
            D(PolicyDeniedEgress),
        ),
        (
            "ingress denied",
            Hook::Pod(OPEN.ifindex),
            udp(OPEN, DB, 1, 2),
            D(PolicyDeniedIngress),
        ),
        (
            "local",
            web,
            udp(WEB, DB, 1, 2),
            C(Counter::PodRedirectedLocal),
        ),
        (
            "remote",
            web,
            udp(WEB, REMOTE_PLAIN, 1, 2),
            C(Counter::PodEncapsulated),
        ),
        // from_underlay
        ("empty", Hook::Underlay, vec![], C(Counter::UnderlayPassed)),
        (
            "the node's own traffic",
            Hook::Underlay,
            FrameBuilder::udp(
                PEER_UNDERLAY_MAC,
                UNDERLAY_MAC,
                PEER_VTEP,
                UNDERLAY_IP,
                1,
                53,
                b"",
            ),
            C(Counter::UnderlayPassed),
        ),
        (
            "VXLAN for another node",
            Hook::Underlay,
            FrameBuilder::vxlan(
                PEER_UNDERLAY_MAC,
                UNDERLAY_MAC,
                PEER_VTEP,
                OTHER_VTEP,
                1,
                VNI,
                &to_web,
            ),
            C(Counter::UnderlayPassed),
        ),
        (
            "VXLAN cut short",
            Hook::Underlay,
            over_vxlan(VNI, &to_web).truncated(49),
            D(VxlanTruncated),
        ),
        (
            "no inner Ethernet",
            Hook::Underlay,
            over_vxlan(VNI, &to_web[..13]),
            D(VxlanTruncated),
        ),
        (
            "no I flag",
            Hook::Underlay,
            over_vxlan(VNI, &to_web).with_byte(42, 0),
            D(VxlanBadFlags),
        ),
        (
            "unknown VTEP",
            Hook::Underlay,
            vxlan_from([192, 168, 0, 9].into(), VNI, &to_web),
            D(UnknownVtep),
        ),
        (
            "unknown VTEP first",
            Hook::Underlay,
            vxlan_from([192, 168, 0, 9].into(), 300, &to_web),
            D(UnknownVtep),
        ),
        (
            "unknown VNI",
            Hook::Underlay,
            over_vxlan(300, &to_web),
            D(UnknownVni),
        ),
        (
            "another known VTEP",
            Hook::Underlay,
            vxlan_from(OTHER_VTEP, VNI, &udp(REMOTE_PLAIN, OPEN, 2, 1)),
            C(Counter::UnderlayDecapsulated),
        ),
        (
            "inner fragment",
            Hook::Underlay,
            over_vxlan(VNI, &to_web.clone().with_ipv4_fragment(true, 0)),
            D(Ipv4Fragment),
        ),
        (
            "inner IPv6",
            Hook::Underlay,
            over_vxlan(
                VNI,
                &FrameBuilder::ethernet(REMOTE_PLAIN.mac, WEB.mac, ETHERTYPE_IPV6, &[0; 40]),
            ),
            D(InnerUnsupported),
        ),
        (
            "ARP for a local pod",
            Hook::Underlay,
            over_vxlan(
                VNI,
                &FrameBuilder::arp_request(REMOTE_PLAIN.mac, REMOTE_PLAIN.ip, WEB.ip),
            ),
            C(Counter::UnderlayArpReplied),
        ),
        (
            "ARP for a remote pod",
            Hook::Underlay,
            over_vxlan(
                VNI,
                &FrameBuilder::arp_request(REMOTE_PLAIN.mac, REMOTE_PLAIN.ip, REMOTE_WEB.ip),
            ),
            D(ArpUnknownTarget),
        ),
        (
            "ARP for the gateway",
            Hook::Underlay,
            over_vxlan(
                VNI,
                &FrameBuilder::arp_request(REMOTE_PLAIN.mac, REMOTE_PLAIN.ip, GATEWAY),
            ),
            D(ArpUnknownTarget),
        ),
        (
            "ARP reply over VXLAN",
            Hook::Underlay,
            over_vxlan(
                VNI,
                &FrameBuilder::arp_reply(REMOTE_PLAIN.mac, REMOTE_PLAIN.ip, WEB.mac, WEB.ip),
            ),
            D(ArpNotRequest),
        ),
        (
            "too big",
            Hook::Underlay,
            over_vxlan(VNI, &big_udp(REMOTE_PLAIN, OPEN, 1451)),
            D(MtuExceeded),
        ),
        (
            "just fits the plane's MTU",
            Hook::Underlay,
            over_vxlan(VNI, &big_udp(REMOTE_PLAIN, OPEN, 1450)),
            C(Counter::UnderlayDecapsulated),
        ),
        (
            "to a remote pod",
            Hook::Underlay,
            over_vxlan(VNI, &udp(REMOTE_PLAIN, REMOTE_WEB, 2, 1)),
            D(UnknownDestination),
        ),
        (
            "to the gateway",
            Hook::Underlay,
            over_vxlan(
                VNI,
                &FrameBuilder::udp(
                    REMOTE_PLAIN.mac,
                    WEB.mac,
                    REMOTE_PLAIN.ip,
                    GATEWAY,
                    1,
                    2,
                    b"",
                ),
            ),
            D(UnknownDestination),
        ),
        (
            "ingress denied",
            Hook::Underlay,
            over_vxlan(VNI, &to_web),
            D(PolicyDeniedIngress),
        ),
        (
            "to a pod",
            Hook::Underlay,
            over_vxlan(VNI, &udp(REMOTE_PLAIN, OPEN, 2, 1)),
            C(Counter::UnderlayDecapsulated),
        ),
        (
            "to a service port the service does not forward",
            Hook::Pod(OPEN.ifindex),
            FrameBuilder::udp(OPEN.mac, ROUTER_MAC, OPEN.ip, WEB_SERVICE, 1, 54, b""),
            D(ServicePortUnknown),
        ),
        (
            "to a service without backends",
            Hook::Pod(OPEN.ifindex),
            FrameBuilder::tcp(
                OPEN.mac,
                ROUTER_MAC,
                OPEN.ip,
                EMPTY_SERVICE,
                1,
                80,
                Flags::SYN,
                b"",
            ),
            D(ServiceNoBackend),
        ),
        (
            "GRE to a service",
            Hook::Pod(OPEN.ifindex),
            FrameBuilder::udp(OPEN.mac, ROUTER_MAC, OPEN.ip, WEB_SERVICE, 1, 2, b"")
                .with_ipv4_protocol(47),
            D(ServiceUnsupported),
        ),
    ]
}

#[test]
fn fixtures_are_counted_as_expected() {
    for (description, hook, frame, expected) in fixtures() {
        let verdict = run(&mut fixture_model(), hook, &frame);
        assert_eq!(verdict.counted, expected, "{description}: {verdict:?}");
        let action = verdict.outcome.xdp_action();
        match expected {
            Counted::Drop(reason) => assert_eq!(verdict.outcome, Outcome::Drop(reason)),
            Counted::Counter(Counter::PodPassed | Counter::UnderlayPassed) => {
                assert_eq!(verdict.outcome, Outcome::Pass, "{description}")
            }
            Counted::Counter(_) => assert_eq!(action, XdpAction::Redirect, "{description}"),
        }
    }
}

#[test]
fn every_reason_and_counter_has_a_fixture() {
    let covered: BTreeSet<Counted> = fixtures().into_iter().map(|f| f.3).collect();
    // Outside the model: the underlay's FIB and the kernel's frame resizing. Conntrack
    // full needs a prepared table: tests/security_groups.rs.
    let elsewhere = [
        DropReason::NoNeighbor,
        DropReason::NoUnderlayRoute,
        DropReason::AdjustFailed,
        DropReason::UnderlayForwardingOff,
        DropReason::ConntrackFull,
        // The kernel failing to write a translated frame it has read.
        DropReason::ServiceRewriteFailed,
        // The AF_XDP forwarder's own sockets (tests/tests/fastpath.rs), not semantics.
        DropReason::ForwarderCannotPass,
        DropReason::ForwarderNoSocket,
        DropReason::ForwarderTxRingFull,
    ];
    // The hand-over to the forwarder is not a step of the semantics: the forwarder does the
    // same (tests/tests/fastpath.rs); nor is XDP's hand-over to the tc program behind it, which
    // does the same (tests/tests/xdp_overlay.rs).
    let handovers = [
        Counter::PodToForwarder,
        Counter::UnderlayToForwarder,
        Counter::UnderlayToTc,
    ];
    let classify_only = ctpath_dataplane::model::DROP_REASONS;
    for reason in DropReason::ALL {
        if !elsewhere.contains(reason) && !classify_only.contains(reason) {
            assert!(
                covered.contains(&Counted::Drop(*reason)),
                "{}",
                reason.name()
            );
        }
    }
    for counter in Counter::ALL.iter().filter(|c| !handovers.contains(c)) {
        assert!(
            covered.contains(&Counted::Counter(*counter)),
            "{}",
            counter.name()
        );
    }
}

#[test]
fn verdict_names_and_actions() {
    assert_eq!(Counted::Drop(DropReason::SpoofedIp).name(), "spoofed_ip");
    assert_eq!(Counted::Counter(Counter::PodPassed).name(), "pod_passed");
    for (code, action) in [
        (0, XdpAction::Aborted),
        (1, XdpAction::Drop),
        (2, XdpAction::Pass),
        (3, XdpAction::Tx),
        (4, XdpAction::Redirect),
    ] {
        assert_eq!(XdpAction::from_code(code), Some(action));
        assert_eq!(action as u32, code);
    }
    assert_eq!(XdpAction::from_code(5), None);
}

#[test]
fn arp_requests_are_answered_with_the_owners_mac() {
    let mut m = fixture_model();
    for (target, mac) in [
        (GATEWAY, ROUTER_MAC),
        (DB.ip, DB.mac),
        (REMOTE_PLAIN.ip, REMOTE_PLAIN.mac),
    ] {
        let request = FrameBuilder::arp_request(WEB.mac, WEB.ip, target).padded(18);
        let verdict = m.from_pod(WEB.ifindex, &request, 0);
        let expected = FrameBuilder::arp_reply(mac, target, WEB.mac, WEB.ip).padded(18);
        assert_eq!(verdict.outcome, Outcome::Bounce { frame: expected });
    }
}

#[test]
fn oversized_df_packets_get_fragmentation_needed() {
    let mut m = fixture_model();
    // With a 4-byte IPv4 option, quoted with the header.
    let mut offending = big_udp(WEB, REMOTE_PLAIN, 1500);
    offending.splice(34..34, [1, 1, 1, 0]);
    let offending = offending.with_ipv4_ihl(6).with_ipv4_total_len(1504);
    let verdict = m.from_pod(WEB.ifindex, &offending, 0);
    let Outcome::Bounce { frame } = verdict.outcome else {
        panic!("{verdict:?}")
    };
    assert_eq!(&frame[..6], &WEB.mac);
    assert_eq!(&frame[6..12], &ROUTER_MAC);
    let ip = ipv4::Packet::new_checked(&frame[ETH_HDR_LEN..]).unwrap();
    assert!(ip.verify_checksum() && ip.dont_frag());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GATEWAY, WEB.ip));
    assert_eq!((ip.protocol(), ip.ttl(), ip.ident()), (IPPROTO_ICMP, 64, 0));
    assert_eq!(usize::from(ip.total_len()), 20 + 8 + 24 + 8);
    let message = icmp::Packet::new_checked(ip.payload()).unwrap();
    assert!(message.verify_checksum());
    assert_eq!(
        (message.msg_type(), message.msg_code()),
        (ICMP_DEST_UNREACHABLE, ICMP_CODE_FRAG_NEEDED)
    );
    assert_eq!(message.rest_of_header(), [0, 0, 0x05, 0xaa], "MTU 1450");
    assert_eq!(message.data(), &offending[ETH_HDR_LEN..ETH_HDR_LEN + 32]);
    assert_eq!(frame.len(), ETH_HDR_LEN + 20 + 8 + 32);
}

#[test]
fn delivered_frames_are_readdressed() {
    let mut m = fixture_model();
    // Routed (to the router MAC): from the router MAC.
    let routed = udp(WEB, DB, 1, 2);
    let verdict = m.from_pod(WEB.ifindex, &routed, 0);
    let mut expected = routed.clone();
    expected[..6].copy_from_slice(&DB.mac);
    expected[6..12].copy_from_slice(&ROUTER_MAC);
    assert_eq!(
        verdict.outcome,
        Outcome::Redirect {
            ifindex: DB.ifindex,
            frame: expected
        }
    );
    // On-link (to the peer's MAC): from the sender's MAC.
    let on_link = FrameBuilder::udp(WEB.mac, DB.mac, WEB.ip, DB.ip, 1, 2, b"x");
    let verdict = m.from_pod(WEB.ifindex, &on_link, 0);
    assert_eq!(
        verdict.outcome,
        Outcome::Redirect {
            ifindex: DB.ifindex,
            frame: on_link
        }
    );
    // From the underlay: the inner frame, to the pod's MAC, from the inner source.
    let inner = FrameBuilder::udp(
        REMOTE_PLAIN.mac,
        [2, 2, 2, 2, 2, 2],
        REMOTE_PLAIN.ip,
        OPEN.ip,
        2,
        1,
        b"y",
    );
    let verdict = m.from_underlay(&over_vxlan(VNI, &inner).padded(6), 0);
    let mut expected = inner.clone().padded(6);
    expected[..6].copy_from_slice(&OPEN.mac);
    assert_eq!(
        verdict.outcome,
        Outcome::Redirect {
            ifindex: OPEN.ifindex,
            frame: expected
        }
    );
}

#[test]
fn remote_destinations_are_encapsulated_with_a_flow_hashed_port() {
    let mut m = model(vec![]);
    let frame = udp(OPEN, REMOTE_PLAIN, 40000, 53);
    let mut inner = frame.clone();
    inner[..6].copy_from_slice(&REMOTE_PLAIN.mac);
    inner[6..12].copy_from_slice(&ROUTER_MAC);
    let port = vxlan_source_port(flow_hash(
        OPEN.ip.octets(),
        REMOTE_PLAIN.ip.octets(),
        IPPROTO_UDP,
        40000,
        53,
    ));
    assert_eq!(
        m.from_pod(OPEN.ifindex, &frame, 0).outcome,
        Outcome::Encapsulate {
            vtep: PEER_VTEP,
            vni: VNI,
            src_port: port,
            inner
        }
    );
    // ICMP: the ports of the conntrack key, the identifier twice for echo, 0/0 otherwise.
    for (frame, ports) in [
        (ping(OPEN, REMOTE_PLAIN, 0x1234), (0x1234, 0x1234)),
        (
            FrameBuilder::icmp_error(OPEN.mac, ROUTER_MAC, OPEN.ip, REMOTE_PLAIN.ip, 3, 1, &frame),
            (0, 0),
        ),
    ] {
        let (src, dst) = (OPEN.ip.octets(), REMOTE_PLAIN.ip.octets());
        let hash = flow_hash(src, dst, IPPROTO_ICMP, ports.0, ports.1);
        let Outcome::Encapsulate { src_port, .. } = m.from_pod(OPEN.ifindex, &frame, 0).outcome
        else {
            panic!()
        };
        assert_eq!(src_port, vxlan_source_port(hash));
    }
    // Another protocol: no ports.
    let gre = FrameBuilder::ipv4(OPEN.mac, ROUTER_MAC, OPEN.ip, REMOTE_PLAIN.ip, 47, &[0; 4]);
    let Outcome::Encapsulate { src_port, .. } = m.from_pod(OPEN.ifindex, &gre, 0).outcome else {
        panic!()
    };
    let hash = flow_hash(OPEN.ip.octets(), REMOTE_PLAIN.ip.octets(), 47, 0, 0);
    assert_eq!(src_port, vxlan_source_port(hash));
}

#[test]
fn planes_are_isolated() {
    let mut m = model(vec![group(
        "web",
        vec![egress(Protocol::Any, Remote::Anywhere)],
    )]);
    let verdict = m.from_pod(WEB200.ifindex, &udp(WEB200, REMOTE_TWIN_200, 1, 2), 0);
    let Outcome::Encapsulate { vni, inner, .. } = verdict.outcome else {
        panic!("{verdict:?}")
    };
    assert_eq!((vni, &inner[..6]), (VNI_200, &REMOTE_TWIN_200.mac[..]));
    let verdict = m.from_pod(WEB.ifindex, &udp(WEB, WEB200, 1, 2), 0);
    assert_eq!(
        verdict.counted,
        Counted::Drop(DropReason::UnknownDestination)
    );
    // Over VXLAN, the VNI picks the plane: WEB200's address on plane 100 is nobody.
    let verdict = m.from_underlay(&over_vxlan(VNI, &udp(REMOTE_PLAIN, WEB200, 1, 2)), 0);
    assert_eq!(
        verdict.counted,
        Counted::Drop(DropReason::UnknownDestination)
    );
}

#[test]
fn arp_over_vxlan_is_answered_back_over_vxlan() {
    let mut m = fixture_model();
    let request = FrameBuilder::arp_request(REMOTE_PLAIN.mac, REMOTE_PLAIN.ip, WEB.ip);
    let packet = FrameBuilder::vxlan(
        PEER_UNDERLAY_MAC,
        UNDERLAY_MAC,
        PEER_VTEP,
        UNDERLAY_IP,
        43_210,
        VNI,
        &request,
    );
    let reply = FrameBuilder::arp_reply(WEB.mac, WEB.ip, REMOTE_PLAIN.mac, REMOTE_PLAIN.ip);
    let expected = FrameBuilder::vxlan(
        UNDERLAY_MAC,
        PEER_UNDERLAY_MAC,
        UNDERLAY_IP,
        PEER_VTEP,
        43_210,
        VNI,
        &reply,
    );
    assert_eq!(
        m.from_underlay(&packet, 0).outcome,
        Outcome::Bounce { frame: expected }
    );
    assert_eq!(m.conntrack().count(), 0);
}

#[test]
fn the_node_answers_for_itself_whatever_the_policy() {
    // ARP and ICMP errors from the node are not filtered: WEB allows nothing.
    let mut m = model(vec![group("web", vec![])]);
    let arp = FrameBuilder::arp_request(WEB.mac, WEB.ip, GATEWAY);
    assert_eq!(
        m.from_pod(WEB.ifindex, &arp, 0).counted,
        Counted::Counter(Counter::PodArpReplied)
    );
    let big = big_udp(WEB, REMOTE_PLAIN, 1451);
    assert_eq!(
        m.from_pod(WEB.ifindex, &big, 0).counted,
        Counted::Counter(Counter::IcmpFragNeededSent)
    );
    let request = FrameBuilder::arp_request(REMOTE_PLAIN.mac, REMOTE_PLAIN.ip, WEB.ip);
    assert_eq!(
        m.from_underlay(&over_vxlan(VNI, &request), 0).counted,
        Counted::Counter(Counter::UnderlayArpReplied)
    );
}
