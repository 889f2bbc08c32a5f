//! Fixed cases of the forwarder's pipeline (`ctpath_dataplane::forwarder::pipeline`), one node
//! with hand-written map contents: every action, the bytes written in place, the counter of
//! each frame, conntrack through the mirror, and frames without room to grow. The randomized
//! check against the model and the kernel is `tests/tests/differential.rs`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ctpath_common::{
    flow::{flow_hash, vxlan_source_port},
    maps::{
        ct_state, direction, endpoint_kind, port_flags, Endpoint, EndpointKey, Network, NodeConfig,
        PodPort, PolicyRuleKey, ScopedIp, SourceMac, Vtep, IDENTITY_ANY, NO_POLICY, NO_RULE,
        POLICY_KEY_FIXED_BITS,
    },
    wire::{IPPROTO_TCP, VXLAN_ENCAP_LEN},
    Counter, DropReason,
};
use ctpath_dataplane::{
    forwarder::{
        flows::MemoryMirror,
        nat::{MemoryNat, Shared},
        pipeline::{Action, FrameBuf, Ingress, Pipeline, Verdict},
        tables::{MapContents, NextHop, Tables},
    },
    model::{
        replies,
        topology::LocalPort,
        vxlan::{self, Received},
        Counted,
    },
    testing::{FrameBuilder, Malform},
    wire::{tcp::Flags, MacAddr},
};

const NODE_IP: [u8; 4] = [192, 168, 77, 1];
const PEER_IP: [u8; 4] = [192, 168, 77, 2];
/// A node whose neighbour entry is not resolved.
const UNRESOLVED_IP: [u8; 4] = [192, 168, 77, 3];
const NODE_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const ROUTER_MAC: [u8; 6] = [2, 0xc7, 0, 0, 0, 1];
const VNI: u32 = 100;
const MTU: u16 = 1450;
const GATEWAY: [u8; 4] = [10, 0, 0, 1];
/// The one compiled policy: ingress TCP to port 80 from anywhere, rule 7.
const POLICY: u32 = 1;
const RULE: u32 = 7;
const NOW: u64 = 1_000_000_000_000;

#[derive(Clone, Copy)]
struct Pod {
    ifindex: u32,
    ip: [u8; 4],
    mac: [u8; 6],
}

/// A pod behind veth `ifindex` (0: not on this node) at 10.0.`subnet`.`host`.
const fn pod(ifindex: u32, subnet: u8, host: u8) -> Pod {
    Pod {
        ifindex,
        ip: [10, 0, subnet, host],
        mac: [2, 0, 0, 0, subnet, host],
    }
}

/// Local, not filtered.
const OPEN: Pod = pod(10, 1, 1);
/// Local, filtered by [`POLICY`].
const GUARDED: Pod = pod(11, 1, 2);
/// On the peer node.
const REMOTE: Pod = pod(0, 2, 1);
/// On the node without a resolved neighbour.
const UNREACHABLE: Pod = pod(0, 3, 1);

fn contents() -> MapContents {
    let endpoint = |kind, pod: Pod, vtep, policy| {
        (
            EndpointKey {
                vni: VNI,
                ip: pod.ip,
            },
            Endpoint {
                kind,
                ifindex: pod.ifindex,
                vtep,
                mac: pod.mac,
                flags: 0,
                _pad: 0,
                policy,
            },
        )
    };
    let port = |pod: Pod, policy| {
        (
            pod.ifindex,
            PodPort {
                vni: VNI,
                ip: pod.ip,
                mac: pod.mac,
                mtu: MTU,
                gateway: GATEWAY,
                policy,
                flags: port_flags::PORT_SECURITY,
                ..PodPort::default()
            },
        )
    };
    let source = |pod: Pod| {
        (
            (
                64,
                ScopedIp {
                    scope: pod.ifindex,
                    ip: pod.ip,
                },
            ),
            SourceMac {
                mac: pod.mac,
                _pad: [0; 2],
            },
        )
    };
    let gateway = Pod {
        ifindex: 0,
        ip: GATEWAY,
        mac: ROUTER_MAC,
    };
    let rule = PolicyRuleKey {
        policy: POLICY,
        identity: IDENTITY_ANY,
        direction: direction::INGRESS,
        protocol: IPPROTO_TCP,
        port: 80u16.to_be_bytes(),
    };
    MapContents {
        networks: BTreeMap::from([(
            VNI,
            Network {
                mtu: u32::from(MTU),
                ..Network::default()
            },
        )]),
        endpoints: BTreeMap::from([
            endpoint(endpoint_kind::LOCAL, OPEN, [0; 4], NO_POLICY),
            endpoint(endpoint_kind::LOCAL, GUARDED, [0; 4], POLICY),
            endpoint(endpoint_kind::REMOTE, REMOTE, PEER_IP, NO_POLICY),
            endpoint(endpoint_kind::REMOTE, UNREACHABLE, UNRESOLVED_IP, NO_POLICY),
            endpoint(endpoint_kind::GATEWAY, gateway, [0; 4], NO_POLICY),
        ]),
        vteps: BTreeMap::from([(PEER_IP, Vtep { known: 1 })]),
        pod_ports: BTreeMap::from([port(OPEN, NO_POLICY), port(GUARDED, POLICY)]),
        pair_macs: BTreeMap::new(),
        sources: BTreeMap::from([source(OPEN), source(GUARDED)]),
        identities: BTreeMap::new(),
        policy: BTreeMap::from([((POLICY_KEY_FIXED_BITS + 16, rule), RULE)]),
        ..MapContents::default()
    }
}

fn node() -> NodeConfig {
    NodeConfig {
        underlay_ifindex: 2,
        underlay_ip: NODE_IP,
        underlay_mac: NODE_MAC,
        router_mac: ROUTER_MAC,
        configured: 1,
        policy_generation: 1,
        ..NodeConfig::default()
    }
}

fn tables(node: NodeConfig) -> Arc<Tables> {
    let towards_peer = NextHop {
        src_mac: NODE_MAC,
        dst_mac: PEER_MAC,
    };
    Arc::new(Tables::new(
        &contents(),
        node,
        BTreeMap::from([(PEER_IP, towards_peer)]),
    ))
}

fn pipeline() -> Pipeline<Shared<MemoryMirror, MemoryNat>> {
    Pipeline::new(tables(node()), 1024, Shared::in_memory(1024))
}

/// Runs `frame` through `pipeline` in a buffer with `room` bytes after it; the verdict and
/// what leaves.
fn run(
    pipeline: &mut Pipeline<impl ctpath_dataplane::forwarder::nat::Mirror>,
    ingress: Ingress,
    frame: &[u8],
    room: usize,
) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; frame.len() + room];
    buf[..frame.len()].copy_from_slice(frame);
    let mut frame = FrameBuf {
        buf: &mut buf,
        len: frame.len(),
    };
    let verdict = pipeline.process(ingress, &mut frame, NOW);
    (verdict, frame.buf[..frame.len].to_vec())
}

fn from(pod: Pod) -> Ingress {
    Ingress::Pod {
        ifindex: pod.ifindex,
    }
}

fn udp(from: Pod, to: Pod) -> Vec<u8> {
    FrameBuilder::udp(from.mac, to.mac, from.ip, to.ip, 40000, 53, b"query")
}

fn tcp(from: Pod, to: Pod, src_port: u16, dst_port: u16, flags: Flags) -> Vec<u8> {
    FrameBuilder::tcp(
        from.mac, to.mac, from.ip, to.ip, src_port, dst_port, flags, b"",
    )
}

fn over_vxlan(src_vtep: [u8; 4], inner: &[u8]) -> Vec<u8> {
    FrameBuilder::vxlan(PEER_MAC, NODE_MAC, src_vtep, NODE_IP, 51000, VNI, inner)
}

fn counter(counted: Counted) -> Option<Counter> {
    match counted {
        Counted::Counter(counter) => Some(counter),
        Counted::Drop(_) => None,
    }
}

#[test]
fn local_delivery_readdresses_in_place() {
    let frame = udp(OPEN, GUARDED).with_ipv4_protocol(47);
    let (verdict, _) = run(&mut pipeline(), from(OPEN), &frame, 0);
    assert_eq!(
        verdict.action,
        Action::Drop(DropReason::PolicyDeniedIngress),
        "the guarded pod allows TCP/80 only"
    );
    let frame = FrameBuilder::udp(OPEN.mac, ROUTER_MAC, OPEN.ip, [10, 0, 1, 9], 1, 2, b"");
    let (verdict, _) = run(&mut pipeline(), from(OPEN), &frame, 0);
    assert_eq!(verdict.action, Action::Drop(DropReason::UnknownDestination));

    // Routed (to the router MAC): leaves from the router MAC, to the pod's.
    let mut frame = tcp(OPEN, GUARDED, 40000, 80, Flags::SYN);
    frame[..6].copy_from_slice(&ROUTER_MAC);
    let (verdict, output) = run(&mut pipeline(), from(OPEN), &frame, 0);
    assert_eq!(
        verdict.action,
        Action::ToPod {
            ifindex: GUARDED.ifindex
        }
    );
    assert_eq!(counter(verdict.counted), Some(Counter::PodRedirectedLocal));
    assert_eq!(
        output,
        replies::readdressed(&frame, MacAddr(GUARDED.mac), MacAddr(ROUTER_MAC))
    );
    assert_eq!((verdict.egress_rule, verdict.ingress_rule), (NO_RULE, RULE));
}

#[test]
fn remote_destinations_are_encapsulated_in_place() {
    let frame = udp(OPEN, REMOTE);
    let (verdict, output) = run(&mut pipeline(), from(OPEN), &frame, VXLAN_ENCAP_LEN);
    assert_eq!(verdict.action, Action::ToUnderlay);
    assert_eq!(counter(verdict.counted), Some(Counter::PodEncapsulated));
    assert_eq!(output.len(), frame.len() + VXLAN_ENCAP_LEN);
    // As the peer receives it: from this node, the flow's source port, the plane's VNI.
    let src_port = vxlan_source_port(flow_hash(OPEN.ip, REMOTE.ip, 17, 40000, 53));
    assert_eq!(
        vxlan::receive(&output, Ipv4Addr::from(NODE_IP)),
        Ok(None),
        "not addressed to this node"
    );
    assert_eq!(
        vxlan::receive(&output, Ipv4Addr::from(PEER_IP)),
        Ok(Some(Received {
            src_mac: MacAddr(NODE_MAC),
            src_vtep: Ipv4Addr::from(NODE_IP),
            src_port,
            vni: VNI,
        }))
    );
    assert_eq!(&output[..6], &PEER_MAC);
    assert_eq!(
        output[VXLAN_ENCAP_LEN..],
        replies::readdressed(&frame, MacAddr(REMOTE.mac), MacAddr(OPEN.mac))[..]
    );
}

#[test]
fn frames_without_room_or_neighbour_are_dropped() {
    let (verdict, _) = run(&mut pipeline(), from(OPEN), &udp(OPEN, REMOTE), 49);
    assert_eq!(verdict.action, Action::Drop(DropReason::AdjustFailed));
    let (verdict, _) = run(&mut pipeline(), from(OPEN), &udp(OPEN, UNREACHABLE), 64);
    assert_eq!(verdict.action, Action::Drop(DropReason::NoNeighbor));
    assert_eq!(verdict.counted, Counted::Drop(DropReason::NoNeighbor));
}

#[test]
fn arp_is_answered_in_place() {
    let request = FrameBuilder::arp_request(OPEN.mac, OPEN.ip, GATEWAY).padded(18);
    let (verdict, output) = run(&mut pipeline(), from(OPEN), &request, 0);
    assert_eq!(verdict.action, Action::Bounce);
    assert_eq!(counter(verdict.counted), Some(Counter::PodArpReplied));
    let classified = ctpath_dataplane::model::classify(&request).unwrap();
    let expected = replies::arp_reply(&request, classified.arp().unwrap(), MacAddr(ROUTER_MAC));
    assert_eq!(output, expected);

    // Over VXLAN, only for local pods, back to the asking node.
    let request = FrameBuilder::arp_request(REMOTE.mac, REMOTE.ip, GUARDED.ip);
    let (verdict, output) = run(
        &mut pipeline(),
        Ingress::Underlay,
        &over_vxlan(PEER_IP, &request),
        0,
    );
    assert_eq!(verdict.action, Action::Bounce);
    assert_eq!(counter(verdict.counted), Some(Counter::UnderlayArpReplied));
    let classified = ctpath_dataplane::model::classify(&request).unwrap();
    let reply = replies::arp_reply(&request, classified.arp().unwrap(), MacAddr(GUARDED.mac));
    let back = FrameBuilder::vxlan(NODE_MAC, PEER_MAC, NODE_IP, PEER_IP, 51000, VNI, &reply);
    assert_eq!(output, back);
    let request = FrameBuilder::arp_request(REMOTE.mac, REMOTE.ip, GATEWAY);
    let (verdict, _) = run(
        &mut pipeline(),
        Ingress::Underlay,
        &over_vxlan(PEER_IP, &request),
        0,
    );
    assert_eq!(verdict.action, Action::Drop(DropReason::ArpUnknownTarget));
}

#[test]
fn oversized_packets_get_frag_needed_in_place() {
    let big = FrameBuilder::udp(OPEN.mac, GUARDED.mac, OPEN.ip, GUARDED.ip, 1, 2, &[7; 1500]);
    let (verdict, output) = run(&mut pipeline(), from(OPEN), &big, 0);
    assert_eq!(verdict.action, Action::Bounce);
    assert_eq!(counter(verdict.counted), Some(Counter::IcmpFragNeededSent));
    let port = LocalPort {
        ifindex: OPEN.ifindex,
        vni: VNI,
        ip: OPEN.ip.into(),
        mac: MacAddr(OPEN.mac),
        mtu: MTU,
        gateway: GATEWAY.into(),
        port_security: true,
        security_groups: vec![],
        allowed_address_pairs: vec![],
    };
    assert_eq!(
        output,
        replies::frag_needed(&big, &port, MacAddr(ROUTER_MAC))
    );
    let (verdict, _) = run(
        &mut pipeline(),
        from(OPEN),
        &big.with_ipv4_dont_frag(false),
        0,
    );
    assert_eq!(verdict.action, Action::Drop(DropReason::MtuExceeded));
}

#[test]
fn spoofing_and_other_ethertypes() {
    let spoofed = FrameBuilder::udp(OPEN.mac, GUARDED.mac, [10, 0, 1, 99], GUARDED.ip, 1, 2, b"");
    let (verdict, _) = run(&mut pipeline(), from(OPEN), &spoofed, 0);
    assert_eq!(verdict.action, Action::Drop(DropReason::SpoofedIp));
    let (verdict, _) = run(&mut pipeline(), from(GUARDED), &udp(OPEN, REMOTE), 0);
    assert_eq!(verdict.action, Action::Drop(DropReason::SpoofedIp));
    let ipv6 = FrameBuilder::ethernet(OPEN.mac, [0xff; 6], 0x86dd, &[0; 40]);
    let (verdict, output) = run(&mut pipeline(), from(OPEN), &ipv6, 0);
    assert_eq!((verdict.action, output), (Action::Pass, ipv6));
    let (verdict, _) = run(
        &mut pipeline(),
        Ingress::Pod { ifindex: 99 },
        &udp(OPEN, REMOTE),
        0,
    );
    assert_eq!(verdict.action, Action::Drop(DropReason::UnconfiguredPort));
    let (verdict, _) = run(&mut pipeline(), from(OPEN), &[0; 13], 0);
    assert_eq!(verdict.action, Action::Drop(DropReason::EthTruncated));
}

#[test]
fn an_unconfigured_node_passes_everything() {
    let mut idle = Pipeline::new(
        tables(NodeConfig {
            configured: 0,
            ..node()
        }),
        16,
        Shared::in_memory(16),
    );
    let (verdict, _) = run(&mut idle, from(OPEN), &udp(OPEN, REMOTE), 64);
    assert_eq!(
        (verdict.action, counter(verdict.counted)),
        (Action::Pass, Some(Counter::PodPassed))
    );
    let (verdict, _) = run(
        &mut idle,
        Ingress::Underlay,
        &over_vxlan(PEER_IP, &udp(REMOTE, OPEN)),
        0,
    );
    assert_eq!(
        (verdict.action, counter(verdict.counted)),
        (Action::Pass, Some(Counter::UnderlayPassed))
    );
}

#[test]
fn vxlan_from_the_underlay_is_decapsulated_in_place() {
    let inner = tcp(REMOTE, GUARDED, 40000, 80, Flags::SYN);
    let (verdict, output) = run(
        &mut pipeline(),
        Ingress::Underlay,
        &over_vxlan(PEER_IP, &inner),
        0,
    );
    assert_eq!(
        verdict.action,
        Action::ToPod {
            ifindex: GUARDED.ifindex
        }
    );
    assert_eq!(
        counter(verdict.counted),
        Some(Counter::UnderlayDecapsulated)
    );
    assert_eq!(
        output,
        replies::readdressed(&inner, MacAddr(GUARDED.mac), MacAddr(REMOTE.mac))
    );
    let (verdict, _) = run(
        &mut pipeline(),
        Ingress::Underlay,
        &over_vxlan(UNRESOLVED_IP, &inner),
        0,
    );
    assert_eq!(verdict.action, Action::Drop(DropReason::UnknownVtep));
    let denied = tcp(REMOTE, GUARDED, 40000, 81, Flags::SYN);
    let (verdict, _) = run(
        &mut pipeline(),
        Ingress::Underlay,
        &over_vxlan(PEER_IP, &denied),
        0,
    );
    assert_eq!(
        verdict.action,
        Action::Drop(DropReason::PolicyDeniedIngress)
    );
    // The node's own traffic.
    let own = FrameBuilder::udp(PEER_MAC, NODE_MAC, PEER_IP, NODE_IP, 1, 2, b"");
    let (verdict, _) = run(&mut pipeline(), Ingress::Underlay, &own, 0);
    assert_eq!(verdict.action, Action::Pass);
}

#[test]
fn connections_are_tracked_through_the_mirror() {
    let mut mirror = Shared::in_memory(1024);
    let mut pipeline = Pipeline::new(tables(node()), 1024, &mut mirror);
    let syn = tcp(OPEN, GUARDED, 40000, 80, Flags::SYN);
    let (verdict, _) = run(&mut pipeline, from(OPEN), &syn, 0);
    assert_eq!(verdict.ingress_rule, RULE);
    let reply = tcp(GUARDED, OPEN, 80, 40000, Flags(Flags::SYN.0 | Flags::ACK.0));
    let (verdict, _) = run(&mut pipeline, from(GUARDED), &reply, 0);
    assert_eq!(
        verdict.action,
        Action::ToPod {
            ifindex: OPEN.ifindex
        },
        "replies pass: stateful"
    );
    assert_eq!(pipeline.rule_hits()[RULE as usize].packets, 2);
    assert_eq!(
        pipeline.rule_hits()[RULE as usize].bytes,
        (syn.len() + reply.len()) as u64
    );
    let entries: Vec<_> = pipeline.conntrack().map(|(_, entry)| entry.state).collect();
    assert_eq!(entries, vec![ct_state::ESTABLISHED]);
    assert_eq!(pipeline.collect_expired(NOW), 0);
    drop(pipeline);
    // Published at once: the XDP path would find the connection established.
    let published: Vec<_> = mirror
        .conntrack
        .entries()
        .values()
        .map(|entry| entry.state)
        .collect();
    assert_eq!(published, vec![ct_state::ESTABLISHED]);

    // A new forwarder adopts it: the reply direction passes without a first packet.
    let mut restarted = Pipeline::new(tables(node()), 1024, &mut mirror);
    let ack = tcp(GUARDED, OPEN, 80, 40000, Flags::ACK);
    let (verdict, _) = run(&mut restarted, from(GUARDED), &ack, 0);
    assert_eq!(verdict.ingress_rule, RULE);
    assert_eq!(restarted.conntrack().count(), 1);

    // Full: a new connection is dropped, the established one still passes.
    let mut full = Pipeline::new(tables(node()), 1024, Shared::in_memory(1));
    run(&mut full, from(OPEN), &syn, 0);
    let other = tcp(OPEN, GUARDED, 40001, 80, Flags::SYN);
    let (verdict, _) = run(&mut full, from(OPEN), &other, 0);
    assert_eq!(verdict.action, Action::Drop(DropReason::ConntrackFull));
    let (verdict, _) = run(&mut full, from(GUARDED), &reply, 0);
    assert!(matches!(verdict.action, Action::ToPod { .. }));
}

#[test]
fn a_short_buffer_never_panics() {
    // `len` past the buffer is clamped; whatever the bytes, a verdict comes back.
    let frame = udp(OPEN, REMOTE);
    let mut buf = frame.clone();
    let mut short = FrameBuf {
        buf: &mut buf,
        len: frame.len() + 100,
    };
    let verdict = pipeline().process(from(OPEN), &mut short, NOW);
    assert_eq!(verdict.action, Action::Drop(DropReason::AdjustFailed));
    for len in 0..frame.len() {
        let mut buf = frame.clone();
        let mut cut = FrameBuf { buf: &mut buf, len };
        let _ = pipeline().process(Ingress::Underlay, &mut cut, NOW);
        let _ = pipeline().process(from(OPEN), &mut cut, NOW);
    }
}
