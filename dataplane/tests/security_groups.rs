//! docs/security-groups.md, paragraph by paragraph, through the node model's public API: who
//! is filtered, rules, where they are enforced, connection tracking, anti-spoofing, counters.
//!
//! The cluster is `common::topology()`; each test writes the security groups it needs.

mod common;

use std::net::Ipv4Addr;

use common::*;
use ctpath_common::wire::{ICMP_DEST_UNREACHABLE, IPPROTO_ICMP, IPPROTO_UDP};
use ctpath_common::{Counter, DropReason};
use ctpath_dataplane::model::conntrack::{ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED};
use ctpath_dataplane::model::{
    AddressPair, Counted, CtEntry, CtKey, CtState, Ipv4Prefix, NodeModel, Outcome, Protocol,
    Remote, RuleHits, RuleId, Side, Topology, Verdict, INITIAL_GENERATION,
};
use ctpath_dataplane::testing::{FrameBuilder, Malform};
use ctpath_dataplane::wire::arp;
use ctpath_dataplane::wire::tcp::Flags;
use ctpath_dataplane::wire::MacAddr;

const ETHERTYPE_IPV6: u16 = 0x86dd;

fn send(model: &mut NodeModel, from: Pod, frame: &[u8], now: u64) -> Verdict {
    model.from_pod(from.ifindex, frame, now)
}

fn receive(model: &mut NodeModel, vni: u32, inner: &[u8], now: u64) -> Verdict {
    model.from_underlay(&over_vxlan(vni, inner), now)
}

#[track_caller]
fn assert_dropped(verdict: &Verdict, reason: DropReason) {
    assert_eq!(verdict.counted, Counted::Drop(reason), "{verdict:?}");
    assert_eq!(verdict.outcome, Outcome::Drop(reason));
}

/// Forwarded to a pod (locally or over VXLAN).
#[track_caller]
fn assert_forwarded(verdict: &Verdict) {
    assert!(
        matches!(
            verdict.counted,
            Counted::Counter(
                Counter::PodRedirectedLocal
                    | Counter::PodEncapsulated
                    | Counter::UnderlayDecapsulated
            )
        ),
        "{verdict:?}"
    );
}

fn id(group: &str, index: usize) -> RuleId {
    RuleId {
        group: group.to_owned(),
        index,
    }
}

fn hits(egress: Option<RuleId>, ingress: Option<RuleId>) -> RuleHits {
    RuleHits { egress, ingress }
}

fn entries(model: &NodeModel) -> Vec<(CtKey, CtEntry)> {
    model
        .conntrack()
        .map(|(key, entry)| (*key, entry.clone()))
        .collect()
}

fn entry(model: &NodeModel, key: &CtKey) -> Option<CtEntry> {
    model
        .conntrack()
        .find(|(k, _)| *k == key)
        .map(|(_, e)| e.clone())
}

fn udp_key(a: Pod, a_port: u16, b: Pod, b_port: u16) -> CtKey {
    CtKey::of_packet(a.vni, IPPROTO_UDP, (a.ip, a_port), (b.ip, b_port)).0
}

/// WEB may send UDP anywhere; nothing else is allowed.
fn web_udp_out() -> NodeModel {
    model(vec![group("web", vec![egress(ALL_UDP, Remote::Anywhere)])])
}

// --- Who is filtered ---

#[test]
fn port_security_off_is_neither_filtered_nor_checked() {
    // NOSEC lists `db`, which allows nothing.
    let mut m = model(vec![group("db", vec![])]);
    assert_forwarded(&send(&mut m, NOSEC, &udp(NOSEC, REMOTE_PLAIN, 1, 2), 0));
    assert_forwarded(&receive(&mut m, VNI, &udp(REMOTE_PLAIN, NOSEC, 2, 1), 0));
    assert_forwarded(&send(&mut m, OPEN, &udp(OPEN, NOSEC, 1, 2), 0));
    // Any source address and MAC.
    let spoofed = FrameBuilder::udp(
        [0x02, 9, 9, 9, 9, 9],
        ROUTER_MAC,
        [10, 1, 0, 99],
        REMOTE_PLAIN.ip,
        1,
        2,
        b"",
    );
    assert_forwarded(&send(&mut m, NOSEC, &spoofed, 0));
    let arp = FrameBuilder::arp_request([0x02, 9, 9, 9, 9, 9], [10, 1, 0, 99], GATEWAY);
    assert_eq!(
        send(&mut m, NOSEC, &arp, 0).counted,
        Counted::Counter(Counter::PodArpReplied)
    );
    assert_eq!(
        m.conntrack().count(),
        0,
        "nothing filtered, nothing tracked"
    );
}

#[test]
fn no_group_means_checked_but_not_filtered() {
    let mut m = model(vec![]);
    assert_forwarded(&send(&mut m, OPEN, &udp(OPEN, REMOTE_PLAIN, 1, 2), 0));
    assert_forwarded(&receive(&mut m, VNI, &udp(REMOTE_PLAIN, OPEN, 3, 4), 0));
    assert_eq!(m.conntrack().count(), 0);
    let spoofed = FrameBuilder::udp(OPEN.mac, ROUTER_MAC, DB.ip, REMOTE_PLAIN.ip, 1, 2, b"");
    assert_dropped(&send(&mut m, OPEN, &spoofed, 0), DropReason::SpoofedIp);
}

#[test]
fn a_filtered_interface_is_denied_unless_a_rule_allows() {
    // `web` has rules, none for this; `db` is listed by DB but defined nowhere.
    let mut m = model(vec![group("web", vec![ingress(ALL_TCP, Remote::Anywhere)])]);
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0),
        DropReason::PolicyDeniedEgress,
    );
    assert_dropped(
        &send(&mut m, DB, &udp(DB, REMOTE_PLAIN, 1, 2), 0),
        DropReason::PolicyDeniedEgress,
    );
    assert_dropped(
        &receive(&mut m, VNI, &udp(REMOTE_PLAIN, DB, 1, 2), 0),
        DropReason::PolicyDeniedIngress,
    );
}

// --- Rules ---

#[test]
fn remote_cidr_matches_the_other_end_on_any_plane() {
    let mut m = model(vec![
        group("web", vec![egress(ALL_UDP, cidr(10, 1, 0, 16, 28))]),
        group("db", vec![ingress(ALL_UDP, Remote::Anywhere)]),
    ]);
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0));
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, DB, 1, 2), 0),
        DropReason::PolicyDeniedEgress,
    );
    // WEB200 is on plane 200; 10.1.0.22 there is in the prefix too.
    assert_forwarded(&send(
        &mut m,
        WEB200,
        &udp(WEB200, REMOTE_TWIN_200, 1, 2),
        0,
    ));
}

#[test]
fn remote_group_matches_member_addresses_on_the_same_plane() {
    let mut m = model(vec![
        group(
            "web",
            vec![
                egress(ALL_UDP, in_group("db")),
                egress(ALL_TCP, in_group("web")),
            ],
        ),
        group("db", vec![ingress(ALL_UDP, in_group("web"))]),
    ]);
    // A local member (DB), whose ingress rule names WEB's group.
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, DB, 1, 2), 0));
    // A member with port security off is still a member.
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, NOSEC, 1, 2), 0));
    // A remote member.
    assert_forwarded(&send(
        &mut m,
        WEB,
        &tcp(WEB, REMOTE_WEB, 1, 2, Flags::SYN),
        0,
    ));
    // Not members.
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0),
        DropReason::PolicyDeniedEgress,
    );
    // 10.1.0.22 is in `db` on plane 200, not on plane 100.
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, REMOTE_TWIN, 1, 2), 0),
        DropReason::PolicyDeniedEgress,
    );
    // WEB's address pairs are members of `web` too: from its VIP to DB.
    let from_vip = FrameBuilder::udp(WEB.mac, ROUTER_MAC, VIP, DB.ip, 5, 6, b"");
    assert_forwarded(&send(&mut m, WEB, &from_vip, 0));
    // And a remote interface's pairs: REMOTE_PLAIN joins `db` with 10.1.0.0/24 as a pair,
    // which makes REMOTE_TWIN's address a member.
    let mut t = m.topology().clone();
    t.remotes[1].security_groups = names(&["db"]);
    t.remotes[1].allowed_address_pairs = vec![AddressPair {
        prefix: Ipv4Prefix::new(Ipv4Addr::new(10, 1, 0, 0), 24),
        mac: None,
    }];
    m.set_policy(t);
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_TWIN, 1, 2), 0));
}

#[test]
fn remote_service_matches_its_members_on_its_plane() {
    // A service on plane 100: its VIP, a local and a remote backend.
    let service = Remote::Service {
        vni: VNI,
        members: vec![VIP, DB.ip, REMOTE_TWIN.ip],
    };
    let mut m = model(vec![
        group("web", vec![egress(ALL_UDP, service.clone())]),
        group("db", vec![ingress(ALL_UDP, service)]),
    ]);
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_TWIN, 1, 2), 0));
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0),
        DropReason::PolicyDeniedEgress,
    );
    // DB's ingress rule names the service too: WEB is not a member, the remote backend and the
    // VIP (which WEB owns as an address pair) are.
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, DB, 1, 2), 0),
        DropReason::PolicyDeniedIngress,
    );
    assert_forwarded(&receive(&mut m, VNI, &udp(REMOTE_TWIN, DB, 3, 4), 0));
    let from_vip = FrameBuilder::udp(WEB.mac, ROUTER_MAC, VIP, DB.ip, 5, 6, b"");
    assert_forwarded(&send(&mut m, WEB, &from_vip, 0));
    // 10.1.0.22 on plane 200 is not the backend on plane 100.
    assert_dropped(
        &send(&mut m, WEB200, &udp(WEB200, REMOTE_TWIN_200, 1, 2), 0),
        DropReason::PolicyDeniedEgress,
    );
}

#[test]
fn absent_remote_means_anywhere() {
    let mut m = model(vec![group("web", vec![egress(ALL_UDP, Remote::Anywhere)])]);
    for to in [REMOTE_PLAIN, REMOTE_WEB, OPEN, DB] {
        let v = send(&mut m, WEB, &udp(WEB, to, 1, 2), 0);
        if to.ip == DB.ip {
            assert_dropped(&v, DropReason::PolicyDeniedIngress);
        } else {
            assert_forwarded(&v);
        }
    }
}

#[test]
fn protocols() {
    let rules =
        |protocol: Protocol| model(vec![group("web", vec![egress(protocol, Remote::Anywhere)])]);
    let gre = FrameBuilder::ipv4(WEB.mac, ROUTER_MAC, WEB.ip, REMOTE_PLAIN.ip, 47, &[0; 4]);
    let packets = [
        ("udp", udp(WEB, REMOTE_PLAIN, 1, 2)),
        ("tcp", tcp(WEB, REMOTE_PLAIN, 1, 2, Flags::SYN)),
        ("icmp", ping(WEB, REMOTE_PLAIN, 1)),
        ("gre", gre),
    ];
    for (protocol, allowed) in [
        (ALL_UDP, &["udp"][..]),
        (ALL_TCP, &["tcp"]),
        (Protocol::Icmp, &["icmp"]),
        (Protocol::Any, &["udp", "tcp", "icmp", "gre"]),
    ] {
        let mut m = rules(protocol);
        for (name, frame) in &packets {
            let v = send(&mut m, WEB, frame, 0);
            if allowed.contains(name) {
                assert_forwarded(&v);
            } else {
                assert_dropped(&v, DropReason::PolicyDeniedEgress);
            }
        }
    }
}

#[test]
fn port_ranges_match_the_first_packets_destination_port() {
    let mut m = model(vec![group(
        "web",
        vec![
            egress(tcp_ports(8000, 8080), Remote::Anywhere),
            egress(udp_port(53), Remote::Anywhere),
        ],
    )]);
    let mut try_tcp = |src_port, dst_port| {
        send(
            &mut m,
            WEB,
            &tcp(WEB, REMOTE_PLAIN, src_port, dst_port, Flags::SYN),
            0,
        )
    };
    assert_forwarded(&try_tcp(40000, 8000));
    assert_forwarded(&try_tcp(40001, 8080));
    assert_dropped(&try_tcp(40002, 7999), DropReason::PolicyDeniedEgress);
    assert_dropped(&try_tcp(40003, 8081), DropReason::PolicyDeniedEgress);
    assert_dropped(&try_tcp(8000, 9000), DropReason::PolicyDeniedEgress);
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 5353, 53), 0));
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 53, 54), 0),
        DropReason::PolicyDeniedEgress,
    );
}

#[test]
fn rules_apply_in_their_direction_only() {
    let mut m = model(vec![group("web", vec![ingress(ALL_UDP, Remote::Anywhere)])]);
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0),
        DropReason::PolicyDeniedEgress,
    );
    assert_forwarded(&receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 3, 4), 0));
    let mut m = model(vec![group("web", vec![egress(ALL_UDP, Remote::Anywhere)])]);
    assert_dropped(
        &receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 3, 4), 0),
        DropReason::PolicyDeniedIngress,
    );
}

// --- Where rules are enforced ---

#[test]
fn local_traffic_needs_the_senders_egress_and_the_receivers_ingress() {
    let web_out = group("web", vec![egress(ALL_UDP, Remote::Anywhere)]);
    let db_in = group("db", vec![ingress(ALL_UDP, Remote::Anywhere)]);
    let mut m = model(vec![web_out.clone()]);
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, DB, 1, 2), 0),
        DropReason::PolicyDeniedIngress,
    );
    let mut m = model(vec![db_in.clone()]);
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, DB, 1, 2), 0),
        DropReason::PolicyDeniedEgress,
        // Egress is checked first.
    );
    let mut m = model(vec![web_out, db_in]);
    let v = send(&mut m, WEB, &udp(WEB, DB, 1, 2), 0);
    assert_eq!(v.counted, Counted::Counter(Counter::PodRedirectedLocal));
    assert_eq!(v.rules, hits(Some(id("web", 0)), Some(id("db", 0))));
}

#[test]
fn each_node_checks_its_own_pods_only() {
    // REMOTE_WEB's groups allow nothing in or out, but they are its node's business.
    let mut m = model(vec![group(
        "web",
        vec![
            egress(ALL_UDP, Remote::Anywhere),
            ingress(ALL_TCP, Remote::Anywhere),
        ],
    )]);
    let v = send(&mut m, WEB, &udp(WEB, REMOTE_WEB, 1, 2), 0);
    assert_eq!(v.rules, hits(Some(id("web", 0)), None));
    let v = receive(&mut m, VNI, &tcp(REMOTE_WEB, WEB, 3, 4, Flags::SYN), 0);
    assert_eq!(v.rules, hits(None, Some(id("web", 1))));
    // From the underlay, the sender's egress is not looked at, even for an unfiltered sender
    // and a receiver that lists groups.
    assert_dropped(
        &receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 3, 4), 0),
        DropReason::PolicyDeniedIngress,
    );
}

#[test]
fn the_sender_is_the_port_the_frame_came_from() {
    // WEB may send only to REMOTE_WEB, whatever address it sends from.
    let mut m = model(vec![group(
        "web",
        vec![egress(Protocol::Any, cidr(10, 1, 0, 20, 32))],
    )]);
    let from_vip = FrameBuilder::udp(WEB.mac, ROUTER_MAC, VIP, REMOTE_PLAIN.ip, 1, 2, b"");
    assert_dropped(
        &send(&mut m, WEB, &from_vip, 0),
        DropReason::PolicyDeniedEgress,
    );
    // NOSEC (unfiltered) sending with WEB's address is not bound by WEB's rules.
    let as_web = FrameBuilder::udp(WEB.mac, ROUTER_MAC, WEB.ip, REMOTE_PLAIN.ip, 1, 2, b"");
    assert_forwarded(&send(&mut m, NOSEC, &as_web, 0));
    assert_eq!(m.conntrack().count(), 0);
}

// --- Connection tracking ---

#[test]
fn replies_are_allowed_and_tracked_in_one_entry() {
    let mut m = web_udp_out();
    let v = send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 40000, 53), 5 * S);
    assert_eq!(v.rules, hits(Some(id("web", 0)), None));
    let key = udp_key(WEB, 40000, REMOTE_PLAIN, 53);
    assert_eq!(
        entries(&m),
        [(
            key,
            CtEntry {
                state: CtState::New,
                originator: Side::Lo,
                last_seen_ns: 5 * S,
                generation: INITIAL_GENERATION,
                egress_rule: Some(id("web", 0)),
                ingress_rule: None,
            }
        )]
    );
    assert_eq!(
        (key.ip_lo, key.port_lo, key.ip_hi, key.port_hi, key.vni),
        (WEB.ip, 40000, REMOTE_PLAIN.ip, 53, VNI)
    );
    let v = receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 53, 40000), 6 * S);
    assert_forwarded(&v);
    assert_eq!(v.rules, hits(Some(id("web", 0)), None));
    let e = entry(&m, &key).unwrap();
    assert_eq!((e.state, e.last_seen_ns), (CtState::Established, 6 * S));
    // Not a reply: other ports.
    assert_dropped(
        &receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 53, 40001), 6 * S),
        DropReason::PolicyDeniedIngress,
    );
    // The same holds between two local pods, one entry for both.
    let mut m = model(vec![
        group("web", vec![egress(ALL_UDP, Remote::Anywhere)]),
        group("db", vec![ingress(udp_port(5432), in_group("web"))]),
    ]);
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, DB, 40000, 5432), 0));
    let v = send(&mut m, DB, &udp(DB, WEB, 5432, 40000), 0);
    assert_forwarded(&v);
    assert_eq!(v.rules, hits(Some(id("web", 0)), Some(id("db", 0))));
    assert_eq!(m.conntrack().count(), 1);
    // The originator is WEB, the key's low side (10.1.0.10 < 10.1.0.11).
    let (_, e) = m.conntrack().next().unwrap();
    assert_eq!((e.originator, e.state), (Side::Lo, CtState::Established));
}

#[test]
fn the_originator_side_is_named_by_the_key_order() {
    // DB (10.1.0.11) initiates to WEB (10.1.0.10): DB is the key's high side.
    let mut m = model(vec![
        group("db", vec![egress(ALL_UDP, Remote::Anywhere)]),
        group("web", vec![ingress(ALL_UDP, Remote::Anywhere)]),
    ]);
    assert_forwarded(&send(&mut m, DB, &udp(DB, WEB, 1, 2), 0));
    let (key, e) = m.conntrack().next().unwrap();
    assert_eq!((key.ip_lo, key.port_lo), (WEB.ip, 2));
    assert_eq!(e.originator, Side::Hi);
}

#[test]
fn unfiltered_connections_are_not_tracked() {
    let mut m = model(vec![]);
    assert_forwarded(&send(&mut m, OPEN, &udp(OPEN, REMOTE_PLAIN, 1, 2), 0));
    assert_forwarded(&send(&mut m, OPEN, &tcp(OPEN, NOSEC, 1, 2, Flags::SYN), 0));
    assert_forwarded(&receive(&mut m, VNI, &ping(REMOTE_PLAIN, OPEN, 3), 0));
    assert_eq!(m.conntrack().count(), 0);
}

#[test]
fn unfiltered_traffic_leaves_the_table_alone() {
    let mut m = web_udp_out();
    send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0);
    let before = entries(&m);
    // WEB no longer filtered: its packets skip conntrack, the old entry is left to expire.
    let mut t = with_groups(vec![]);
    t.ports[0].security_groups.clear();
    m.set_policy(t);
    assert_forwarded(&receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 1), S));
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), S));
    assert_eq!(entries(&m), before);
}

#[test]
fn a_stale_entry_still_allowed_takes_the_current_generation_and_rules() {
    let mut m = web_udp_out();
    send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0);
    // A rule inserted before the one that allows the connection.
    m.set_policy(with_groups(vec![group(
        "web",
        vec![
            ingress(Protocol::Icmp, Remote::Anywhere),
            egress(ALL_UDP, Remote::Anywhere),
        ],
    )]));
    assert_eq!(m.generation(), INITIAL_GENERATION + 1);
    let key = udp_key(WEB, 1, REMOTE_PLAIN, 2);
    assert_eq!(entry(&m, &key).unwrap().generation, INITIAL_GENERATION);
    let v = receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 1), S);
    assert_eq!(v.rules, hits(Some(id("web", 1)), None));
    let e = entry(&m, &key).unwrap();
    assert_eq!(e.generation, INITIAL_GENERATION + 1);
    assert_eq!(e.egress_rule, Some(id("web", 1)));
    assert_eq!(e.state, CtState::Established);
}

#[test]
fn removing_a_rule_cuts_the_connections_it_allowed() {
    let mut m = web_udp_out();
    send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0);
    receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 1), 0);
    m.set_policy(with_groups(vec![group("web", vec![])]));
    // The reply is now the first packet of REMOTE_PLAIN -> WEB, which nothing allows.
    assert_dropped(
        &receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 1), S),
        DropReason::PolicyDeniedIngress,
    );
    assert_eq!(m.conntrack().count(), 0, "the entry is deleted");
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), S),
        DropReason::PolicyDeniedEgress,
    );
}

#[test]
fn a_cut_connection_may_come_back_the_other_way() {
    let mut m = web_udp_out();
    send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0);
    // Egress removed, ingress allowed: the reply starts a new connection from REMOTE_PLAIN.
    m.set_policy(with_groups(vec![group(
        "web",
        vec![ingress(ALL_UDP, Remote::Anywhere)],
    )]));
    let v = receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 1), S);
    assert_eq!(v.rules, hits(None, Some(id("web", 0))));
    let e = entry(&m, &udp_key(WEB, 1, REMOTE_PLAIN, 2)).unwrap();
    assert_eq!(e.originator, Side::Hi, "REMOTE_PLAIN (10.1.0.21) initiated");
    assert_eq!(e.state, CtState::New);
    assert_eq!(e.generation, INITIAL_GENERATION + 1);
}

#[test]
fn a_remote_group_membership_change_is_seen_by_established_connections() {
    let groups = vec![group("web", vec![egress(ALL_UDP, in_group("db"))])];
    let mut joined = with_groups(groups.clone());
    joined.remotes[1].security_groups = names(&["db"]);
    let mut m = NodeModel::new(with_groups(groups.clone()));
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0),
        DropReason::PolicyDeniedEgress,
    );
    m.set_policy(joined);
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0));
    assert_forwarded(&receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 1), 0));
    m.set_policy(with_groups(groups));
    assert_dropped(
        &receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 1), S),
        DropReason::PolicyDeniedIngress,
    );
    assert_eq!(m.conntrack().count(), 0);
}

#[test]
fn entries_expire_after_their_states_timeout() {
    let mut m = web_udp_out();
    send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 10 * S);
    // udp: 60 s. Live up to the last nanosecond before.
    assert_forwarded(&receive(
        &mut m,
        VNI,
        &udp(REMOTE_PLAIN, WEB, 2, 1),
        70 * S - 1,
    ));
    let last = 70 * S - 1;
    assert_dropped(
        &receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 1), last + 60 * S),
        DropReason::PolicyDeniedIngress,
    );
    // The expired entry still holds its slot...
    let key = udp_key(WEB, 1, REMOTE_PLAIN, 2);
    let e = entry(&m, &key).unwrap();
    assert_eq!((e.state, e.last_seen_ns), (CtState::Established, last));
    // ...and is overwritten in place by a new connection with the same key.
    let now = last + 61 * S;
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), now));
    let e = entry(&m, &key).unwrap();
    assert_eq!((e.state, e.last_seen_ns), (CtState::New, now));
    assert_eq!(m.conntrack().count(), 1);
    // The collector removes expired entries only.
    assert_eq!(m.collect_expired(now + 59 * S), 0);
    assert_eq!(m.collect_expired(now + 60 * S), 1);
    assert_eq!(m.conntrack().count(), 0);
}

#[test]
fn timeouts_are_configurable_per_state() {
    let mut t = with_groups(vec![group(
        "web",
        vec![egress(Protocol::Any, Remote::Anywhere)],
    )]);
    t.conntrack.timeouts.tcp_syn = 5;
    t.conntrack.timeouts.tcp_established = 100;
    t.conntrack.timeouts.tcp_closing = 2;
    t.conntrack.timeouts.icmp = 3;
    t.conntrack.timeouts.other = 4;
    let mut m = NodeModel::new(t);
    let reply = |m: &mut NodeModel, flags, now| {
        receive(m, VNI, &tcp(REMOTE_PLAIN, WEB, 80, 1000, flags), now)
    };
    // SYN sent, no answer for 5 s: gone.
    send(
        &mut m,
        WEB,
        &tcp(WEB, REMOTE_PLAIN, 1000, 80, Flags::SYN),
        0,
    );
    assert_dropped(
        &reply(&mut m, Flags::SYN | Flags::ACK, 5 * S),
        DropReason::PolicyDeniedIngress,
    );
    // Answered in time: established, 100 s.
    send(
        &mut m,
        WEB,
        &tcp(WEB, REMOTE_PLAIN, 1000, 80, Flags::SYN),
        10 * S,
    );
    assert_forwarded(&reply(&mut m, Flags::SYN | Flags::ACK, 14 * S));
    assert_forwarded(&reply(&mut m, Flags::ACK, 113 * S));
    // Closing: 2 s.
    assert_forwarded(&reply(&mut m, Flags::FIN | Flags::ACK, 120 * S));
    assert_dropped(
        &reply(&mut m, Flags::ACK, 122 * S),
        DropReason::PolicyDeniedIngress,
    );
    // ICMP 3 s, other protocols 4 s.
    send(&mut m, WEB, &ping(WEB, REMOTE_PLAIN, 9), 0);
    assert_dropped(
        &receive(&mut m, VNI, &pong(REMOTE_PLAIN, WEB, 9), 3 * S),
        DropReason::PolicyDeniedIngress,
    );
    let gre =
        |from: Pod, to: Pod| FrameBuilder::ipv4(from.mac, ROUTER_MAC, from.ip, to.ip, 47, &[]);
    send(&mut m, WEB, &gre(WEB, REMOTE_PLAIN), 0);
    assert_forwarded(&receive(&mut m, VNI, &gre(REMOTE_PLAIN, WEB), 4 * S - 1));
    assert_dropped(
        &receive(&mut m, VNI, &gre(REMOTE_PLAIN, WEB), 8 * S - 1),
        DropReason::PolicyDeniedIngress,
    );
}

#[test]
fn tcp_states_follow_the_connection() {
    let mut m = model(vec![group("web", vec![egress(ALL_TCP, Remote::Anywhere)])]);
    let key = CtKey::of_packet(VNI, 6, (WEB.ip, 1000), (REMOTE_PLAIN.ip, 80)).0;
    let state = |m: &NodeModel| entry(m, &key).map(|e| e.state);
    let out = |m: &mut NodeModel, flags| send(m, WEB, &tcp(WEB, REMOTE_PLAIN, 1000, 80, flags), 0);
    let back =
        |m: &mut NodeModel, flags| receive(m, VNI, &tcp(REMOTE_PLAIN, WEB, 80, 1000, flags), 0);
    out(&mut m, Flags::SYN);
    assert_eq!(state(&m), Some(CtState::SynSent));
    out(&mut m, Flags::SYN); // a retransmission
    assert_eq!(state(&m), Some(CtState::SynSent));
    back(&mut m, Flags::SYN | Flags::ACK);
    assert_eq!(state(&m), Some(CtState::Established));
    out(&mut m, Flags::ACK | Flags::PSH);
    assert_eq!(state(&m), Some(CtState::Established));
    back(&mut m, Flags::FIN | Flags::ACK);
    assert_eq!(state(&m), Some(CtState::Closing));
    out(&mut m, Flags::ACK);
    assert_eq!(state(&m), Some(CtState::Closing), "closing stays");
    // Picked up mid-stream: established at once.
    let mut m = model(vec![group("web", vec![egress(ALL_TCP, Remote::Anywhere)])]);
    out(&mut m, Flags::ACK);
    assert_eq!(state(&m), Some(CtState::Established));
    // A first RST: closing.
    let mut m = model(vec![group("web", vec![egress(ALL_TCP, Remote::Anywhere)])]);
    out(&mut m, Flags::RST);
    assert_eq!(state(&m), Some(CtState::Closing));
}

#[test]
fn udp_is_established_by_a_reply_only() {
    let mut m = web_udp_out();
    let key = udp_key(WEB, 1, REMOTE_PLAIN, 2);
    send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0);
    send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0);
    assert_eq!(entry(&m, &key).unwrap().state, CtState::New);
    receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 1), 0);
    assert_eq!(entry(&m, &key).unwrap().state, CtState::Established);
}

#[test]
fn icmp_echo_is_tracked_by_its_identifier() {
    let mut m = model(vec![group(
        "web",
        vec![egress(Protocol::Icmp, Remote::Anywhere)],
    )]);
    assert_forwarded(&send(&mut m, WEB, &ping(WEB, REMOTE_PLAIN, 7), 0));
    let key = CtKey::of_packet(VNI, IPPROTO_ICMP, (WEB.ip, 7), (REMOTE_PLAIN.ip, 7)).0;
    assert_eq!((key.port_lo, key.port_hi), (7, 7));
    assert_eq!(entry(&m, &key).unwrap().state, CtState::New);
    assert_forwarded(&receive(&mut m, VNI, &pong(REMOTE_PLAIN, WEB, 7), S));
    assert_eq!(entry(&m, &key).unwrap().state, CtState::Established);
    assert_dropped(
        &receive(&mut m, VNI, &pong(REMOTE_PLAIN, WEB, 8), S),
        DropReason::PolicyDeniedIngress,
    );
    // Other ICMP messages have ports 0/0: a timestamp request.
    let timestamp = FrameBuilder::ipv4(
        WEB.mac,
        ROUTER_MAC,
        WEB.ip,
        REMOTE_PLAIN.ip,
        IPPROTO_ICMP,
        &[13, 0, 0, 0, 0, 5, 0, 1],
    );
    assert_forwarded(&send(&mut m, WEB, &timestamp, S));
    let key = CtKey::of_packet(VNI, IPPROTO_ICMP, (WEB.ip, 0), (REMOTE_PLAIN.ip, 0)).0;
    assert!(entry(&m, &key).is_some());
}

/// An ICMP error from REMOTE_PLAIN to WEB about `offending` (a frame WEB sent).
fn error_about(icmp_type: u8, offending: &[u8]) -> Vec<u8> {
    FrameBuilder::icmp_error(
        REMOTE_PLAIN.mac,
        WEB.mac,
        REMOTE_PLAIN.ip,
        WEB.ip,
        icmp_type,
        0,
        offending,
    )
}

#[test]
fn icmp_errors_about_a_live_connection_are_related() {
    let mut m = web_udp_out();
    let sent = udp(WEB, REMOTE_PLAIN, 1, 2);
    send(&mut m, WEB, &sent, 0);
    let before = entries(&m);
    for icmp_type in [
        ICMP_DEST_UNREACHABLE,
        ICMP_TIME_EXCEEDED,
        ICMP_PARAMETER_PROBLEM,
    ] {
        let v = receive(&mut m, VNI, &error_about(icmp_type, &sent), S);
        assert_forwarded(&v);
        assert_eq!(
            v.rules,
            RuleHits::default(),
            "related errors count to no rule"
        );
    }
    assert_eq!(entries(&m), before, "the entry is left alone");
    // Whatever the entry's generation: even after its rule is gone.
    m.set_policy(with_groups(vec![group("web", vec![])]));
    assert_forwarded(&receive(&mut m, VNI, &error_about(3, &sent), S));
    // Not about a live connection: checked as a first ICMP packet, here denied.
    let other = udp(WEB, REMOTE_PLAIN, 1, 3);
    assert_dropped(
        &receive(&mut m, VNI, &error_about(3, &other), S),
        DropReason::PolicyDeniedIngress,
    );
    assert_dropped(
        &receive(&mut m, VNI, &error_about(3, &sent), 61 * S),
        DropReason::PolicyDeniedIngress,
    );
    // A quote without its 8 bytes relates to nothing.
    let mut m = web_udp_out();
    send(&mut m, WEB, &sent, 0);
    let short = error_about(3, &sent.clone().truncated(14 + 20 + 7));
    assert_dropped(
        &receive(&mut m, VNI, &short, 0),
        DropReason::PolicyDeniedIngress,
    );
    // Ethernet padding after the message is not part of the quote.
    let padded = short.padded(8);
    assert_dropped(
        &receive(&mut m, VNI, &padded, 0),
        DropReason::PolicyDeniedIngress,
    );
    // Only to the quoted packet's sender: DB's live connection does not let errors into WEB.
    let mut m = model(vec![
        group("web", vec![egress(ALL_UDP, Remote::Anywhere)]),
        group("db", vec![egress(ALL_UDP, Remote::Anywhere)]),
    ]);
    let from_db = udp(DB, REMOTE_PLAIN, 1, 2);
    send(&mut m, DB, &from_db, 0);
    assert_forwarded(&receive(
        &mut m,
        VNI,
        &error_about(3, &from_db).with_byte(33, 11),
        0,
    ));
    assert_dropped(
        &receive(&mut m, VNI, &error_about(3, &from_db), 0),
        DropReason::PolicyDeniedIngress,
    );
    let mut m = web_udp_out();
    send(&mut m, WEB, &sent, 0);
    // Not an error (an echo reply quoting the packet): no relation.
    let mut not_error = error_about(3, &sent);
    not_error[14 + 20] = 0;
    assert_dropped(
        &receive(&mut m, VNI, &not_error, 0),
        DropReason::PolicyDeniedIngress,
    );
}

#[test]
fn icmp_errors_never_create_entries() {
    let mut m = model(vec![group(
        "web",
        vec![ingress(Protocol::Icmp, Remote::Anywhere)],
    )]);
    let v = receive(
        &mut m,
        VNI,
        &error_about(3, &udp(WEB, REMOTE_PLAIN, 1, 2)),
        0,
    );
    assert_eq!(v.rules, hits(None, Some(id("web", 0))));
    assert_eq!(m.conntrack().count(), 0);
    // Related errors between local pods, from_pod: DB reports WEB's packet as unreachable.
    let mut m = model(vec![
        group("web", vec![egress(ALL_UDP, Remote::Anywhere)]),
        group("db", vec![ingress(ALL_UDP, Remote::Anywhere)]),
    ]);
    let sent = udp(WEB, DB, 1, 2);
    send(&mut m, WEB, &sent, 0);
    let unreachable = FrameBuilder::icmp_error(DB.mac, ROUTER_MAC, DB.ip, WEB.ip, 3, 3, &sent);
    assert_forwarded(&send(&mut m, DB, &unreachable, 0));
    assert_eq!(m.conntrack().count(), 1);
}

#[test]
fn a_full_table_refuses_new_connections_only() {
    let mut t = with_groups(vec![group("web", vec![egress(ALL_UDP, Remote::Anywhere)])]);
    t.conntrack.max_entries = 2;
    let mut m = NodeModel::new(t);
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 9), 0));
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 2, 9), 10 * S));
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 3, 9), 10 * S),
        DropReason::ConntrackFull,
    );
    // Denied connections are denied, full or not; untracked ones need no entry.
    assert_dropped(
        &receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 9, 3), 10 * S),
        DropReason::PolicyDeniedIngress,
    );
    assert_forwarded(&send(&mut m, OPEN, &udp(OPEN, REMOTE_PLAIN, 3, 9), 10 * S));
    // Existing connections go on.
    assert_forwarded(&receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 9, 1), 10 * S));
    // Connection 2 expires but keeps its slot; only its own key may take it back.
    let later = 71 * S;
    assert_dropped(
        &send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 3, 9), later),
        DropReason::ConntrackFull,
    );
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 2, 9), later));
    // Collected, the slot of connection 1 (expired too by then) is free.
    assert_eq!(m.collect_expired(later), 1);
    assert_forwarded(&send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 3, 9), later));
    assert_eq!(m.conntrack().count(), 2);
}

// --- Anti-spoofing ---

fn spoof_model() -> NodeModel {
    model(vec![group(
        "web",
        vec![egress(Protocol::Any, Remote::Anywhere)],
    )])
}

fn from_web(src_mac: [u8; 6], src_ip: Ipv4Addr) -> Vec<u8> {
    FrameBuilder::udp(src_mac, ROUTER_MAC, src_ip, REMOTE_PLAIN.ip, 1, 2, b"")
}

#[test]
fn ipv4_sources_must_be_owned_with_their_mac() {
    let mut m = spoof_model();
    let other_mac = [0x02, 7, 7, 7, 7, 7];
    let in_vip_net = Ipv4Addr::new(10, 1, 9, 5);
    for (mac, ip, expected) in [
        (WEB.mac, WEB.ip, None),
        (VIP_MAC, WEB.ip, Some(DropReason::SpoofedMac)),
        (other_mac, WEB.ip, Some(DropReason::SpoofedMac)),
        // A pair without a MAC: the interface's own.
        (WEB.mac, VIP, None),
        (VIP_MAC, VIP, Some(DropReason::SpoofedMac)),
        // A prefix with its MAC.
        (VIP_MAC, in_vip_net, None),
        (WEB.mac, in_vip_net, Some(DropReason::SpoofedMac)),
        (WEB.mac, DB.ip, Some(DropReason::SpoofedIp)),
        (
            WEB.mac,
            Ipv4Addr::new(10, 1, 8, 5),
            Some(DropReason::SpoofedIp),
        ),
        (WEB.mac, Ipv4Addr::UNSPECIFIED, Some(DropReason::SpoofedIp)),
    ] {
        let v = send(&mut m, WEB, &from_web(mac, ip), 0);
        match expected {
            None => assert_forwarded(&v),
            Some(reason) => assert_dropped(&v, reason),
        }
    }
}

#[test]
fn overlapping_pairs_the_most_specific_owner_decides_the_mac() {
    // WEB's own address is also covered by a pair with another MAC: its own MAC keeps it; the
    // rest of the pair's prefix goes with the pair's MAC.
    let mut t = with_groups(vec![group(
        "web",
        vec![egress(Protocol::Any, Remote::Anywhere)],
    )]);
    t.ports[0].allowed_address_pairs.push(AddressPair {
        prefix: Ipv4Prefix::new(Ipv4Addr::new(10, 1, 0, 0), 24),
        mac: Some(MacAddr(VIP_MAC)),
    });
    let mut m = NodeModel::new(t);
    assert_forwarded(&send(&mut m, WEB, &from_web(WEB.mac, WEB.ip), 0));
    assert_dropped(
        &send(&mut m, WEB, &from_web(VIP_MAC, WEB.ip), 0),
        DropReason::SpoofedMac,
    );
    assert_forwarded(&send(&mut m, WEB, &from_web(VIP_MAC, DB.ip), 0));
    assert_dropped(
        &send(&mut m, WEB, &from_web(WEB.mac, DB.ip), 0),
        DropReason::SpoofedMac,
    );
}

#[test]
fn arp_must_come_from_owned_addresses() {
    let mut m = spoof_model();
    let ask = |mac: [u8; 6], ip: Ipv4Addr| FrameBuilder::arp_request(mac, ip, GATEWAY);
    let replied = Counted::Counter(Counter::PodArpReplied);
    assert_eq!(send(&mut m, WEB, &ask(WEB.mac, WEB.ip), 0).counted, replied);
    assert_eq!(send(&mut m, WEB, &ask(WEB.mac, VIP), 0).counted, replied);
    assert_eq!(
        send(&mut m, WEB, &ask(VIP_MAC, Ipv4Addr::new(10, 1, 9, 1)), 0).counted,
        replied
    );
    // A probe: from the interface's own MAC only.
    assert_eq!(
        send(&mut m, WEB, &ask(WEB.mac, Ipv4Addr::UNSPECIFIED), 0).counted,
        replied
    );
    for (mac, ip) in [
        (VIP_MAC, Ipv4Addr::UNSPECIFIED),
        (WEB.mac, DB.ip),
        (VIP_MAC, WEB.ip),
        (WEB.mac, Ipv4Addr::new(10, 1, 9, 1)),
    ] {
        assert_dropped(&send(&mut m, WEB, &ask(mac, ip), 0), DropReason::SpoofedArp);
    }
    // The sender hardware address must be the Ethernet source.
    let mismatched = ask(WEB.mac, WEB.ip).with_byte(6 + 5, 0x77);
    assert_dropped(&send(&mut m, WEB, &mismatched, 0), DropReason::SpoofedArp);
    // Checked before the operation: a spoofed reply is spoofed, an honest one not a request.
    let reply = |ip: Ipv4Addr| FrameBuilder::arp_reply(WEB.mac, ip, ROUTER_MAC, GATEWAY);
    assert_dropped(&send(&mut m, WEB, &reply(DB.ip), 0), DropReason::SpoofedArp);
    assert_dropped(
        &send(&mut m, WEB, &reply(WEB.ip), 0),
        DropReason::ArpNotRequest,
    );
    let gratuitous = FrameBuilder::arp(
        MacAddr::BROADCAST,
        arp::Repr {
            operation: arp::Operation::Request,
            sender_mac: MacAddr(WEB.mac),
            sender_ip: WEB.ip,
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 1, 0, 99),
        },
    );
    assert_dropped(
        &send(&mut m, WEB, &gratuitous, 0),
        DropReason::ArpUnknownTarget,
    );
}

#[test]
fn other_ethertypes_need_an_owned_mac() {
    let mut m = spoof_model();
    let ipv6 = |mac: [u8; 6]| {
        FrameBuilder::ethernet(mac, [0x33, 0x33, 0, 0, 0, 1], ETHERTYPE_IPV6, &[0; 40])
    };
    for mac in [WEB.mac, VIP_MAC] {
        let v = send(&mut m, WEB, &ipv6(mac), 0);
        assert_eq!(
            (v.counted, v.outcome),
            (Counted::Counter(Counter::PodPassed), Outcome::Pass)
        );
    }
    assert_dropped(&send(&mut m, WEB, &ipv6(DB.mac), 0), DropReason::SpoofedMac);
    // DB has no pair: only its own MAC.
    assert_dropped(&send(&mut m, DB, &ipv6(VIP_MAC), 0), DropReason::SpoofedMac);
}

#[test]
fn anti_spoofing_comes_before_arp_mtu_and_forwarding() {
    let mut m = model(vec![]);
    let big = FrameBuilder::udp(
        OPEN.mac,
        ROUTER_MAC,
        DB.ip,
        REMOTE_PLAIN.ip,
        1,
        2,
        &[0; 1500],
    );
    assert_dropped(&send(&mut m, OPEN, &big, 0), DropReason::SpoofedIp);
    let nowhere = FrameBuilder::udp(OPEN.mac, ROUTER_MAC, DB.ip, [10, 1, 0, 99], 1, 2, b"");
    assert_dropped(&send(&mut m, OPEN, &nowhere, 0), DropReason::SpoofedIp);
    let unknown_target = FrameBuilder::arp_request(OPEN.mac, DB.ip, [10, 1, 0, 99]);
    assert_dropped(
        &send(&mut m, OPEN, &unknown_target, 0),
        DropReason::SpoofedArp,
    );
}

#[test]
fn unknown_destinations_are_dropped_before_any_rule() {
    let mut m = model(vec![group("web", vec![])]);
    for to in [Ipv4Addr::new(10, 1, 0, 99), GATEWAY, WEB200.ip] {
        let frame = FrameBuilder::udp(WEB.mac, ROUTER_MAC, WEB.ip, to, 1, 2, b"");
        assert_dropped(
            &send(&mut m, WEB, &frame, 0),
            DropReason::UnknownDestination,
        );
    }
    let to_gateway = FrameBuilder::udp(
        REMOTE_PLAIN.mac,
        WEB.mac,
        REMOTE_PLAIN.ip,
        GATEWAY,
        1,
        2,
        b"",
    );
    assert_dropped(
        &receive(&mut m, VNI, &to_gateway, 0),
        DropReason::UnknownDestination,
    );
}

// --- Counters ---

#[test]
fn the_first_allowing_rule_in_group_order_is_counted() {
    // WEB lists `web` only; give it two groups, both allowing, the second listed first.
    let mut t = with_groups(vec![
        group(
            "web",
            vec![
                egress(ALL_TCP, Remote::Anywhere),
                egress(ALL_UDP, Remote::Anywhere),
            ],
        ),
        group("extra", vec![egress(Protocol::Any, Remote::Anywhere)]),
    ]);
    t.ports[0].security_groups = names(&["extra", "web"]);
    let mut m = NodeModel::new(t.clone());
    let v = send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0);
    assert_eq!(v.rules, hits(Some(id("extra", 0)), None));
    t.ports[0].security_groups = names(&["web", "extra"]);
    let mut m = NodeModel::new(t);
    let v = send(&mut m, WEB, &udp(WEB, REMOTE_PLAIN, 1, 2), 0);
    assert_eq!(v.rules, hits(Some(id("web", 1)), None));
    // Replies count towards the same rules.
    let v = receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 1), 0);
    assert_eq!(v.rules, hits(Some(id("web", 1)), None));
    // Dropped frames count towards none.
    let v = receive(&mut m, VNI, &udp(REMOTE_PLAIN, WEB, 2, 9), 0);
    assert_eq!(v.rules, RuleHits::default());
}

#[test]
fn topology_helpers_stay_consistent() {
    // A guard for the fixture itself: every local pod is where the tests think it is.
    let t: Topology = topology();
    for pod in [WEB, DB, OPEN, NOSEC, WEB200] {
        let port = t.port(pod.ifindex).unwrap();
        assert_eq!(
            (port.vni, port.ip, port.mac),
            (pod.vni, pod.ip, MacAddr(pod.mac))
        );
    }
}
