//! Services in the node model: translation to a backend chosen by the service's Maglev table,
//! the reply translated back (from a local backend at `from_pod`, from a remote one at
//! `from_underlay`), hairpin, client-IP affinity, backend churn, TCP SYN re-selection,
//! expiry, the drops, and the checksums of every rewritten frame (checked with the wire
//! views, not with the model's own arithmetic).

mod common;

use std::net::Ipv4Addr;

use common::*;
use ctpath_common::flow::flow_hash;
use ctpath_common::wire::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use ctpath_common::{Counter, DropReason};
use ctpath_dataplane::maglev::{BackendId, Maglev};
use ctpath_dataplane::model::{
    Counted, NodeModel, Outcome, Protocol, Remote, SecurityGroup, Topology, Verdict,
};
use ctpath_dataplane::testing::{FrameBuilder, Malform};
use ctpath_dataplane::wire::tcp::Flags;
use ctpath_dataplane::wire::{icmp, ipv4, tcp, udp};

/// The web service's backends, as [`common::services`] lists them.
const WEB_BACKENDS: [Pod; 3] = [DB, OPEN, REMOTE_PLAIN];

/// The backend Maglev gives a new connection: slot `flow_hash mod 1021` of the table of
/// `backends`.
fn maglev_choice(
    backends: &[Pod],
    src: Pod,
    vip: Ipv4Addr,
    protocol: u8,
    ports: (u16, u16),
) -> Pod {
    let ids: Vec<BackendId> = backends
        .iter()
        .map(|p| BackendId(u32::from(p.ip)))
        .collect();
    let table = Maglev::build(&ids, 1021).unwrap();
    let hash = flow_hash(src.ip.octets(), vip.octets(), protocol, ports.0, ports.1);
    let id = table.lookup(u64::from(hash)).unwrap();
    *backends.iter().find(|p| u32::from(p.ip) == id.0).unwrap()
}

/// A client port of `client` whose connection to `vip:port` Maglev gives to `backend`.
fn port_choosing(
    backends: &[Pod],
    client: Pod,
    vip: Ipv4Addr,
    protocol: u8,
    port: u16,
    backend: Pod,
) -> u16 {
    (40_000..41_000)
        .find(|sport| {
            maglev_choice(backends, client, vip, protocol, (*sport, port)).ip == backend.ip
        })
        .expect("a client port for each backend")
}

/// The frame a verdict delivers (to a local pod or, inner, over VXLAN) and where: the local
/// ifindex, or 0 for the underlay.
fn delivered(verdict: &Verdict) -> (u32, Vec<u8>) {
    match &verdict.outcome {
        Outcome::Redirect { ifindex, frame } => (*ifindex, frame.clone()),
        Outcome::Encapsulate { inner, .. } => (0, inner.clone()),
        other => panic!("not delivered: {other:?} ({:?})", verdict.counted),
    }
}

/// The addresses and ports of an IPv4 frame, with every checksum it has verified.
fn addressed(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = ipv4::Packet::new_checked(&frame[14..]).unwrap();
    assert!(ip.verify_checksum(), "IPv4 checksum of {frame:02x?}");
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match ip.protocol() {
        IPPROTO_TCP => {
            let segment = tcp::Packet::new_checked(ip.payload()).unwrap();
            assert!(segment.verify_checksum(src, dst), "TCP checksum");
            (src, segment.src_port(), dst, segment.dst_port())
        }
        IPPROTO_UDP => {
            let datagram = udp::Packet::new_checked(ip.payload()).unwrap();
            assert!(datagram.verify_checksum(src, dst), "UDP checksum");
            (src, datagram.src_port(), dst, datagram.dst_port())
        }
        IPPROTO_ICMP => {
            let message = icmp::Packet::new_checked(ip.payload()).unwrap();
            assert!(message.verify_checksum(), "ICMP checksum");
            (src, message.echo_ident(), dst, message.echo_ident())
        }
        other => panic!("protocol {other}"),
    }
}

fn syn(from: Pod, vip: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    FrameBuilder::tcp(
        from.mac,
        ROUTER_MAC,
        from.ip,
        vip,
        sport,
        dport,
        Flags::SYN,
        b"",
    )
}

fn ack(from: Pod, vip: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    FrameBuilder::tcp(
        from.mac,
        ROUTER_MAC,
        from.ip,
        vip,
        sport,
        dport,
        Flags::ACK,
        b"x",
    )
}

/// A reply from `backend` at `src` (its address, or the VIP it appears as) to `dst`.
fn reply_from(backend: Pod, src_port: u16, dst: Ipv4Addr, dst_port: u16) -> Vec<u8> {
    let flags = Flags(Flags::SYN.0 | Flags::ACK.0);
    FrameBuilder::tcp(
        backend.mac,
        ROUTER_MAC,
        backend.ip,
        dst,
        src_port,
        dst_port,
        flags,
        b"",
    )
}

/// The groups of the fixture's pods allow everything: services, not policy, are tested here.
fn open_groups() -> Vec<SecurityGroup> {
    let open = || {
        vec![
            egress(Protocol::Any, Remote::Anywhere),
            ingress(Protocol::Any, Remote::Anywhere),
        ]
    };
    vec![group("web", open()), group("db", open())]
}

fn topology() -> Topology {
    with_groups(open_groups())
}

fn model() -> NodeModel {
    NodeModel::new(topology())
}

#[test]
fn a_connection_to_a_service_goes_to_its_maglev_backend_on_the_target_port() {
    for backend in WEB_BACKENDS {
        let mut model = model();
        let sport = port_choosing(&WEB_BACKENDS, WEB, WEB_SERVICE, IPPROTO_TCP, 80, backend);
        let verdict = model.from_pod(WEB.ifindex, &syn(WEB, WEB_SERVICE, sport, 80), 0);
        let (ifindex, frame) = delivered(&verdict);
        assert_eq!(ifindex, backend.ifindex, "{verdict:?}");
        assert_eq!(addressed(&frame), (WEB.ip, sport, backend.ip, 8080));
        assert_eq!(&frame[0..6], &backend.mac);
        // Later packets of the connection: the same translation.
        let verdict = model.from_pod(WEB.ifindex, &ack(WEB, WEB_SERVICE, sport, 80), 1);
        let (_, frame) = delivered(&verdict);
        assert_eq!(addressed(&frame), (WEB.ip, sport, backend.ip, 8080));
    }
}

#[test]
fn replies_come_from_the_service_from_local_and_remote_backends() {
    for backend in [DB, REMOTE_PLAIN] {
        let mut model = model();
        let sport = port_choosing(&WEB_BACKENDS, WEB, WEB_SERVICE, IPPROTO_TCP, 80, backend);
        model.from_pod(WEB.ifindex, &syn(WEB, WEB_SERVICE, sport, 80), 0);
        let reply = reply_from(backend, 8080, WEB.ip, sport);
        let verdict = if backend.ifindex == 0 {
            model.from_underlay(&over_vxlan(VNI, &reply), 1)
        } else {
            model.from_pod(backend.ifindex, &reply, 1)
        };
        let (ifindex, frame) = delivered(&verdict);
        assert_eq!(ifindex, WEB.ifindex);
        assert_eq!(addressed(&frame), (WEB_SERVICE, 80, WEB.ip, sport));
    }
    // Not a reply of a translated connection: left as it is.
    let mut model = model();
    let verdict = model.from_pod(DB.ifindex, &reply_from(DB, 8080, WEB.ip, 40_000), 0);
    assert_eq!(
        addressed(&delivered(&verdict).1),
        (DB.ip, 8080, WEB.ip, 40_000)
    );
}

#[test]
fn a_backend_reaching_its_own_service_leaves_from_the_virtual_ip() {
    let mut model = model();
    let sport = port_choosing(&WEB_BACKENDS, DB, WEB_SERVICE, IPPROTO_TCP, 80, DB);
    let verdict = model.from_pod(DB.ifindex, &syn(DB, WEB_SERVICE, sport, 80), 0);
    let (ifindex, frame) = delivered(&verdict);
    assert_eq!(ifindex, DB.ifindex);
    assert_eq!(addressed(&frame), (WEB_SERVICE, sport, DB.ip, 8080));
    // Its reply goes to the virtual IP, and comes back from the service.
    let reply = reply_from(DB, 8080, WEB_SERVICE, sport);
    let (ifindex, frame) = delivered(&model.from_pod(DB.ifindex, &reply, 1));
    assert_eq!(ifindex, DB.ifindex);
    assert_eq!(addressed(&frame), (WEB_SERVICE, 80, DB.ip, sport));
}

#[test]
fn client_ip_affinity_keeps_a_client_on_its_backend_until_the_timeout() {
    let backends = [DB, REMOTE_PLAIN];
    let mut model = model();
    let first = 40_000;
    let chosen = maglev_choice(&backends, WEB, ALL_PORTS_SERVICE, IPPROTO_TCP, (first, 443));
    let other = if chosen.ip == DB.ip { REMOTE_PLAIN } else { DB };
    model.from_pod(WEB.ifindex, &syn(WEB, ALL_PORTS_SERVICE, first, 443), 0);
    // A port Maglev alone would give the other backend: affinity wins.
    let sport = port_choosing(&backends, WEB, ALL_PORTS_SERVICE, IPPROTO_TCP, 443, other);
    let at = u64::from(AFFINITY_TIMEOUT_S - 1) * S;
    let (_, frame) =
        delivered(&model.from_pod(WEB.ifindex, &syn(WEB, ALL_PORTS_SERVICE, sport, 443), at));
    assert_eq!(addressed(&frame).2, chosen.ip);
    // Refreshed by that connection: still there a timeout after the first.
    let later = at + u64::from(AFFINITY_TIMEOUT_S - 1) * S;
    let next = sport + 1;
    let (_, frame) =
        delivered(&model.from_pod(WEB.ifindex, &syn(WEB, ALL_PORTS_SERVICE, next, 443), later));
    assert_eq!(addressed(&frame).2, chosen.ip);
    // Affinity is per service port (and protocol): another port is placed on its own.
    let udp_port = port_choosing(&backends, WEB, ALL_PORTS_SERVICE, IPPROTO_UDP, 53, other);
    let datagram = FrameBuilder::udp(
        WEB.mac,
        ROUTER_MAC,
        WEB.ip,
        ALL_PORTS_SERVICE,
        udp_port,
        53,
        b"q",
    );
    let (_, frame) = delivered(&model.from_pod(WEB.ifindex, &datagram, later));
    assert_eq!(addressed(&frame), (WEB.ip, udp_port, other.ip, 53));
    // A timeout after the last new connection: Maglev again.
    let expired = later + u64::from(AFFINITY_TIMEOUT_S) * S;
    let (_, frame) = delivered(&model.from_pod(
        WEB.ifindex,
        &syn(WEB, ALL_PORTS_SERVICE, sport, 443),
        expired,
    ));
    assert_eq!(addressed(&frame).2, other.ip);
}

#[test]
fn a_removed_backend_keeps_its_connections_and_gets_no_new_ones() {
    let mut model = model();
    let sport = port_choosing(&WEB_BACKENDS, WEB, WEB_SERVICE, IPPROTO_TCP, 80, OPEN);
    model.from_pod(WEB.ifindex, &syn(WEB, WEB_SERVICE, sport, 80), 0);
    let mut topology: Topology = topology();
    topology.services[0].backends.retain(|ip| *ip != OPEN.ip);
    model.set_policy(topology);
    // Established: still OPEN, both ways.
    let (ifindex, frame) =
        delivered(&model.from_pod(WEB.ifindex, &ack(WEB, WEB_SERVICE, sport, 80), S));
    assert_eq!((ifindex, addressed(&frame).2), (OPEN.ifindex, OPEN.ip));
    let (_, frame) =
        delivered(&model.from_pod(OPEN.ifindex, &reply_from(OPEN, 8080, WEB.ip, sport), S));
    assert_eq!(addressed(&frame), (WEB_SERVICE, 80, WEB.ip, sport));
    // New connections, the same client port's SYN included, never.
    for port in (sport..sport + 200).chain([sport]) {
        let (_, frame) =
            delivered(&model.from_pod(WEB.ifindex, &syn(WEB, WEB_SERVICE, port, 80), 2 * S));
        let backend = addressed(&frame).2;
        assert_ne!(backend, OPEN.ip, "port {port}");
        let expected = maglev_choice(
            &[DB, REMOTE_PLAIN],
            WEB,
            WEB_SERVICE,
            IPPROTO_TCP,
            (port, 80),
        );
        assert_eq!(backend, expected.ip);
    }
}

#[test]
fn a_syn_chooses_again_and_an_idle_translation_expires() {
    let mut model = model();
    let sport = port_choosing(&WEB_BACKENDS, WEB, WEB_SERVICE, IPPROTO_TCP, 80, DB);
    model.from_pod(WEB.ifindex, &syn(WEB, WEB_SERVICE, sport, 80), 0);
    let mut moved = topology();
    moved.services[0].backends = vec![OPEN.ip];
    model.set_policy(moved);
    let (_, frame) = delivered(&model.from_pod(WEB.ifindex, &syn(WEB, WEB_SERVICE, sport, 80), S));
    assert_eq!(addressed(&frame).2, OPEN.ip);
    // The old backend's reply entry is still there, the new one's too.
    let (_, frame) =
        delivered(&model.from_pod(OPEN.ifindex, &reply_from(OPEN, 8080, WEB.ip, sport), S));
    assert_eq!(addressed(&frame).0, WEB_SERVICE);
    // Idle for the established TCP timeout: a reply is no longer translated, and the next
    // packet of the client is a new connection.
    let idle = S + u64::from(topology().conntrack.timeouts.tcp_established) * S;
    let (_, frame) =
        delivered(&model.from_pod(OPEN.ifindex, &reply_from(OPEN, 8080, WEB.ip, sport), idle));
    assert_eq!(addressed(&frame).0, OPEN.ip);
    let mut back = topology();
    back.services[0].backends = vec![DB.ip];
    model.set_policy(back);
    let (_, frame) =
        delivered(&model.from_pod(WEB.ifindex, &ack(WEB, WEB_SERVICE, sport, 80), idle + 1));
    assert_eq!(addressed(&frame).2, DB.ip);
}

#[test]
fn what_a_service_does_not_forward_is_dropped_and_counted() {
    let mut model = model();
    let rows = [
        (
            "UDP to an unlisted port",
            FrameBuilder::udp(WEB.mac, ROUTER_MAC, WEB.ip, WEB_SERVICE, 1, 54, b""),
            DropReason::ServicePortUnknown,
        ),
        (
            "TCP to the UDP port",
            syn(WEB, WEB_SERVICE, 1, 53),
            DropReason::ServicePortUnknown,
        ),
        (
            "ping to a service of listed ports",
            FrameBuilder::icmp_echo_request(WEB.mac, ROUTER_MAC, WEB.ip, WEB_SERVICE, 7, 1),
            DropReason::ServicePortUnknown,
        ),
        (
            "to a service without backends",
            syn(WEB, EMPTY_SERVICE, 1, 80),
            DropReason::ServiceNoBackend,
        ),
        (
            "an echo reply to a service",
            FrameBuilder::icmp_echo_reply(WEB.mac, ROUTER_MAC, WEB.ip, ALL_PORTS_SERVICE, 7, 1),
            DropReason::ServiceUnsupported,
        ),
        (
            "GRE to a service",
            FrameBuilder::udp(WEB.mac, ROUTER_MAC, WEB.ip, ALL_PORTS_SERVICE, 1, 2, b"")
                .with_ipv4_protocol(47),
            DropReason::ServiceUnsupported,
        ),
    ];
    for (description, frame, reason) in rows {
        let verdict = model.from_pod(WEB.ifindex, &frame, 0);
        assert_eq!(verdict.counted, Counted::Drop(reason), "{description}");
    }
    // A service's address over VXLAN is no pod of this node.
    let verdict = model.from_underlay(&over_vxlan(VNI, &syn(REMOTE_PLAIN, WEB_SERVICE, 1, 80)), 0);
    assert_eq!(
        verdict.counted,
        Counted::Drop(DropReason::UnknownDestination)
    );
}

#[test]
fn arp_for_a_virtual_ip_is_answered_with_the_router_mac() {
    let mut model = model();
    let request = FrameBuilder::arp_request(WEB.mac, WEB.ip, WEB_SERVICE);
    let verdict = model.from_pod(WEB.ifindex, &request, 0);
    let reply = FrameBuilder::arp_reply(ROUTER_MAC, WEB_SERVICE, WEB.mac, WEB.ip);
    assert_eq!(verdict.outcome, Outcome::Bounce { frame: reply });
    assert_eq!(verdict.counted, Counted::Counter(Counter::PodArpReplied));
}

#[test]
fn rewritten_checksums_are_valid_and_udp_without_one_keeps_none() {
    let backends = [DB, REMOTE_PLAIN];
    let mut model = model();
    // ICMP echo to an IP-level service: the identifier stays.
    let ping =
        FrameBuilder::icmp_echo_request(WEB.mac, ROUTER_MAC, WEB.ip, ALL_PORTS_SERVICE, 9, 1);
    let (_, frame) = delivered(&model.from_pod(WEB.ifindex, &ping, 0));
    let backend = maglev_choice(&backends, WEB, ALL_PORTS_SERVICE, IPPROTO_ICMP, (9, 9));
    assert_eq!(addressed(&frame), (WEB.ip, 9, backend.ip, 9));
    // UDP, with and without a checksum, to a listed port and to any port.
    for (vip, port, target) in [(WEB_SERVICE, 53, 53), (ALL_PORTS_SERVICE, 5000, 5000)] {
        let datagram =
            FrameBuilder::udp(NOSEC.mac, ROUTER_MAC, NOSEC.ip, vip, 33_000, port, b"odd");
        let (_, frame) = delivered(&model.from_pod(NOSEC.ifindex, &datagram, 0));
        assert_eq!(addressed(&frame).3, target);
        let unsummed = datagram.with_byte(40, 0).with_byte(41, 0);
        let (_, frame) = delivered(&model.from_pod(NOSEC.ifindex, &unsummed, 0));
        let l4 = 14 + 20;
        assert_eq!(&frame[l4 + 6..l4 + 8], &[0, 0], "UDP checksum 0 stays 0");
        assert!(ipv4::Packet::new_checked(&frame[14..])
            .unwrap()
            .verify_checksum());
    }
}
