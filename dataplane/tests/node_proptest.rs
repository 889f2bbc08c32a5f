//! Property tests of the node model over random sequences: frames from the fixture's pods and
//! from the underlay (well-formed, mutated, truncated, or random bytes), policy changes, time
//! passing, the collector. The model must never panic, and must keep its invariants:
//!
//! - exactly one counter per frame, consistent with the outcome;
//! - the conntrack table never holds more than `max_entries`; entries are never from the
//!   future (generation, last seen);
//! - a forwarded packet of a filtered interface of this node names a rule that allowed its
//!   connection, unless it is a related ICMP error;
//! - the same sequence gives the same verdicts (determinism).
//!
//! And the model's conntrack key agrees with `ctpath_common::flow::ct_key`, the kernel's.

mod common;

use std::net::Ipv4Addr;

use common::*;
use ctpath_common::flow::ct_key;
use ctpath_common::maps::{self, ct_origin};
use ctpath_common::Counter;
use ctpath_dataplane::model::conntrack::is_icmp_error;
use ctpath_dataplane::model::{
    classify, Counted, CtKey, NodeModel, Outcome, Protocol, Remote, Side, Topology, Verdict, L4,
};
use ctpath_dataplane::testing::FrameBuilder;
use ctpath_dataplane::wire::tcp::Flags;
use proptest::prelude::*;

const MAX_ENTRIES: u32 = 4;
/// Every pod of the fixture, local and remote, and an address nobody has.
const PODS: [Pod; 10] = [
    WEB,
    DB,
    OPEN,
    NOSEC,
    WEB200,
    REMOTE_WEB,
    REMOTE_PLAIN,
    REMOTE_TWIN,
    REMOTE_TWIN_200,
    Pod {
        ifindex: 0,
        vni: VNI,
        ip: Ipv4Addr::new(10, 1, 0, 99),
        mac: [0x02, 0x99, 0, 0, 0, 0x99],
    },
];
/// Veths: the fixture's and one without a port.
const IFINDICES: [u32; 6] = [10, 11, 12, 13, 20, 99];

/// Policies to switch between: groups and memberships differ, rule indices shift.
fn policy(variant: u8) -> Topology {
    let mut t = match variant % 4 {
        0 => with_groups(vec![
            group(
                "web",
                vec![
                    egress(ALL_UDP, Remote::Anywhere),
                    egress(tcp_ports(1, 100), in_group("db")),
                    ingress(Protocol::Icmp, cidr(10, 1, 0, 16, 28)),
                ],
            ),
            group("db", vec![ingress(Protocol::Any, in_group("web"))]),
        ]),
        1 => with_groups(vec![group(
            "web",
            vec![
                ingress(ALL_TCP, Remote::Anywhere),
                egress(Protocol::Any, in_group("web")),
            ],
        )]),
        2 => {
            let mut t = with_groups(vec![
                group("web", vec![egress(Protocol::Any, Remote::Anywhere)]),
                group("db", vec![ingress(udp_port(53), Remote::Anywhere)]),
            ]);
            t.remotes[1].security_groups = names(&["web"]);
            t
        }
        _ => with_groups(vec![]),
    };
    t.conntrack.max_entries = MAX_ENTRIES;
    // Short enough to expire within a sequence, long enough to fill the table.
    t.conntrack.timeouts.tcp_syn = 5;
    t.conntrack.timeouts.tcp_established = 30;
    t.conntrack.timeouts.tcp_closing = 2;
    t.conntrack.timeouts.udp = 8;
    t.conntrack.timeouts.icmp = 5;
    t.conntrack.timeouts.other = 8;
    t
}

#[derive(Clone, Debug)]
enum L4Spec {
    Tcp(u8),
    Udp,
    Echo(bool),
    /// An ICMP error quoting the packet that would be built with the ports swapped.
    Error(u8),
    Other(u8),
}

#[derive(Clone, Debug)]
struct FrameSpec {
    from: usize,
    to: usize,
    src_port: u16,
    dst_port: u16,
    l4: L4Spec,
    payload_len: usize,
    /// ARP instead of IPv4 (request if true, reply if false).
    arp: Option<bool>,
    mutation: Option<(usize, u8)>,
    cut: Option<usize>,
}

impl FrameSpec {
    fn build(&self) -> Vec<u8> {
        let (from, to) = (PODS[self.from], PODS[self.to]);
        let mut frame = match self.arp {
            Some(true) => FrameBuilder::arp_request(from.mac, from.ip, to.ip),
            Some(false) => FrameBuilder::arp_reply(from.mac, from.ip, to.mac, to.ip),
            None => self.ipv4(from, to),
        };
        if let Some((offset, value)) = self.mutation {
            let len = frame.len();
            frame[offset % len] = value;
        }
        if let Some(cut) = self.cut {
            frame.truncate(cut % (frame.len() + 1));
        }
        frame
    }

    fn ipv4(&self, from: Pod, to: Pod) -> Vec<u8> {
        let payload = vec![0xab; self.payload_len];
        let (sport, dport) = (self.src_port, self.dst_port);
        match self.l4 {
            L4Spec::Tcp(flags) => FrameBuilder::tcp(
                from.mac,
                ROUTER_MAC,
                from.ip,
                to.ip,
                sport,
                dport,
                Flags(flags),
                &payload,
            ),
            L4Spec::Udp => {
                FrameBuilder::udp(from.mac, ROUTER_MAC, from.ip, to.ip, sport, dport, &payload)
            }
            L4Spec::Echo(true) => {
                FrameBuilder::icmp_echo_request(from.mac, ROUTER_MAC, from.ip, to.ip, sport, 1)
            }
            L4Spec::Echo(false) => {
                FrameBuilder::icmp_echo_reply(from.mac, ROUTER_MAC, from.ip, to.ip, sport, 1)
            }
            L4Spec::Error(icmp_type) => {
                let quoted = FrameBuilder::udp(to.mac, from.mac, to.ip, from.ip, dport, sport, b"");
                FrameBuilder::icmp_error(
                    from.mac, ROUTER_MAC, from.ip, to.ip, icmp_type, 0, &quoted,
                )
            }
            L4Spec::Other(protocol) => {
                FrameBuilder::ipv4(from.mac, ROUTER_MAC, from.ip, to.ip, protocol, &payload)
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Pod(usize, FrameSpec),
    Underlay {
        vtep: u8,
        vni: u32,
        inner: FrameSpec,
        outer_mutation: Option<(usize, u8)>,
    },
    Raw(bool, Vec<u8>),
    SetPolicy(u8),
    Advance(u64),
    Collect,
}

fn l4_spec() -> impl Strategy<Value = L4Spec> {
    prop_oneof![
        3 => prop::sample::select(vec![0x02u8, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x03])
            .prop_map(L4Spec::Tcp),
        3 => Just(L4Spec::Udp),
        2 => any::<bool>().prop_map(L4Spec::Echo),
        1 => prop::sample::select(vec![3u8, 11, 12]).prop_map(L4Spec::Error),
        1 => prop::sample::select(vec![47u8, 50, 132]).prop_map(L4Spec::Other),
    ]
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    (
        0..PODS.len(),
        0..PODS.len(),
        prop::sample::select(vec![1u16, 53, 80, 40000]),
        prop::sample::select(vec![1u16, 53, 80, 40000]),
        l4_spec(),
        prop_oneof![9 => 0usize..64, 1 => 1380usize..1460],
        prop_oneof![8 => Just(None), 1 => Just(Some(true)), 1 => Just(Some(false))],
        prop_oneof![8 => Just(None), 2 => (any::<usize>(), any::<u8>()).prop_map(Some)],
        prop_oneof![9 => Just(None), 1 => any::<usize>().prop_map(Some)],
    )
        .prop_map(
            |(from, to, src_port, dst_port, l4, payload_len, arp, mutation, cut)| FrameSpec {
                from,
                to,
                src_port,
                dst_port,
                l4,
                payload_len,
                arp,
                mutation,
                cut,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..IFINDICES.len(), frame_spec(), any::<bool>()).prop_map(|(i, mut f, own)| {
            // Mostly from the pod behind the veth, so frames get past anti-spoofing.
            if own && i < 5 {
                f.from = i;
            }
            Op::Pod(i, f)
        }),
        6 => (
            prop::sample::select(vec![0u8, 0, 0, 0, 1, 2, 3]),
            prop::sample::select(vec![VNI, VNI, VNI, VNI_200, 300]),
            (frame_spec(), any::<bool>()).prop_map(|(mut f, own)| {
                // Mostly from a remote pod to a local one.
                if own {
                    f.from = 5 + f.from % 4;
                    f.to %= 5;
                }
                f
            }),
            prop_oneof![9 => Just(None), 1 => (0usize..50, any::<u8>()).prop_map(Some)],
        )
            .prop_map(|(vtep, vni, inner, outer_mutation)| Op::Underlay {
                vtep,
                vni,
                inner,
                outer_mutation,
            }),
        1 => (any::<bool>(), prop::collection::vec(any::<u8>(), 0..120))
            .prop_map(|(pod, bytes)| Op::Raw(pod, bytes)),
        1 => any::<u8>().prop_map(Op::SetPolicy),
        2 => prop_oneof![3 => 0u64..S, 1 => S..5 * S].prop_map(Op::Advance),
        1 => Just(Op::Collect),
    ]
}

/// Well-formed traffic between WEB, DB (filtered) and the remote pods on plane 100, with few
/// ports so connections repeat: conntrack fills, expires, is re-checked and cut.
fn conntrack_op() -> impl Strategy<Value = Op> {
    let clean = |mut f: FrameSpec| {
        f.arp = None;
        f.mutation = None;
        f.cut = None;
        f.payload_len %= 16;
        f
    };
    prop_oneof![
        6 => (0usize..2, frame_spec(), 0usize..4).prop_map(move |(i, f, to)| {
            let to = [DB, REMOTE_WEB, REMOTE_PLAIN, WEB][to];
            let to = PODS.iter().position(|p| p.ip == to.ip && p.vni == VNI).unwrap_or(0);
            Op::Pod(i, FrameSpec { from: i, to, ..clean(f) })
        }),
        6 => (frame_spec(), 5usize..7, 0usize..2).prop_map(move |(f, from, to)| Op::Underlay {
            vtep: 0,
            vni: VNI,
            inner: FrameSpec { from, to, ..clean(f) },
            outer_mutation: None,
        }),
        1 => (0u8..3).prop_map(Op::SetPolicy),
        2 => prop_oneof![3 => 0u64..S, 1 => S..10 * S].prop_map(Op::Advance),
        1 => Just(Op::Collect),
    ]
}

/// Runs `ops`, checking the invariants after each; returns the verdicts.
fn run(ops: &[Op]) -> Vec<Verdict> {
    let mut model = NodeModel::new(policy(0));
    let mut now = 0;
    let mut verdicts = vec![];
    for op in ops {
        let (verdict, sender) = match op {
            Op::Pod(i, spec) => {
                let frame = spec.build();
                let verdict = model.from_pod(IFINDICES[*i], &frame, now);
                (Some((verdict, frame, 0)), Some(IFINDICES[*i]))
            }
            Op::Underlay {
                vtep,
                vni,
                inner,
                outer_mutation,
            } => {
                let vtep = [PEER_VTEP, OTHER_VTEP, [192, 168, 0, 9].into(), UNDERLAY_IP]
                    [usize::from(*vtep)];
                let mut frame = FrameBuilder::vxlan(
                    PEER_UNDERLAY_MAC,
                    UNDERLAY_MAC,
                    vtep,
                    UNDERLAY_IP,
                    50_000,
                    *vni,
                    &inner.build(),
                );
                if let Some((offset, value)) = outer_mutation {
                    frame[*offset] = *value;
                }
                let verdict = model.from_underlay(&frame, now);
                (Some((verdict, frame, 50)), None)
            }
            Op::Raw(true, bytes) => (
                Some((model.from_pod(10, bytes, now), bytes.clone(), 0)),
                Some(10),
            ),
            Op::Raw(false, bytes) => (
                Some((model.from_underlay(bytes, now), bytes.clone(), 50)),
                None,
            ),
            Op::SetPolicy(variant) => {
                model.set_policy(policy(*variant));
                (None, None)
            }
            Op::Advance(ns) => {
                now += ns;
                (None, None)
            }
            Op::Collect => {
                model.collect_expired(now);
                (None, None)
            }
        };
        if let Some((verdict, frame, inner_offset)) = verdict {
            check_verdict(
                &model,
                &verdict,
                &frame[inner_offset.min(frame.len())..],
                sender,
            );
            verdicts.push(verdict);
        }
        assert!(model.conntrack().count() <= MAX_ENTRIES as usize);
        for (_, entry) in model.conntrack() {
            assert!(entry.generation <= model.generation());
            assert!(entry.last_seen_ns <= now);
        }
    }
    verdicts
}

/// `inner`: the frame as the pod sent it (after the outer headers for the underlay).
fn check_verdict(model: &NodeModel, verdict: &Verdict, inner: &[u8], sender: Option<u32>) {
    match (&verdict.outcome, verdict.counted) {
        (Outcome::Drop(reason), Counted::Drop(counted)) => assert_eq!(*reason, counted),
        (Outcome::Pass, Counted::Counter(Counter::PodPassed | Counter::UnderlayPassed)) => {}
        (Outcome::Redirect { .. }, Counted::Counter(c)) => assert!(matches!(
            c,
            Counter::PodRedirectedLocal | Counter::UnderlayDecapsulated
        )),
        (Outcome::Bounce { .. }, Counted::Counter(c)) => assert!(matches!(
            c,
            Counter::PodArpReplied | Counter::IcmpFragNeededSent | Counter::UnderlayArpReplied
        )),
        (Outcome::Encapsulate { .. }, Counted::Counter(Counter::PodEncapsulated)) => {}
        other => panic!("outcome and counter disagree: {other:?}"),
    }
    let forwarded = matches!(
        verdict.outcome,
        Outcome::Redirect { .. } | Outcome::Encapsulate { .. }
    );
    if !forwarded {
        return;
    }
    let Ok(classified) = classify(inner) else {
        panic!("forwarded an invalid frame")
    };
    let ip = classified.ipv4().expect("only IPv4 is forwarded");
    if matches!(ip.l4, L4::Icmp { icmp_type, .. } if is_icmp_error(icmp_type)) {
        return;
    }
    // The sender's rule is egress if it initiated the connection, ingress if it answers.
    let topology = model.topology();
    let filtered = |ifindex: u32| topology.port(ifindex).is_some_and(|p| p.is_filtered());
    let receiver = match verdict.outcome {
        Outcome::Redirect { ifindex, .. } => Some(ifindex),
        _ => None,
    };
    if sender.is_some_and(filtered) || receiver.is_some_and(filtered) {
        let rules = &verdict.rules;
        assert!(
            rules.egress.is_some() || rules.ingress.is_some(),
            "{verdict:?}"
        );
    }
}

/// Cases per property: 512, or `CTPATH_PROPTEST_CASES` (scripts/mutate-userspace runs fewer per
/// mutant).
fn cases() -> u32 {
    std::env::var("CTPATH_PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn random_sequences_keep_the_invariants(ops in prop::collection::vec(op(), 1..100)) {
        let first = run(&ops);
        prop_assert_eq!(first, run(&ops));
    }

    #[test]
    fn conntrack_sequences_keep_the_invariants(ops in prop::collection::vec(conntrack_op(), 1..150)) {
        let first = run(&ops);
        prop_assert_eq!(first, run(&ops));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), ifindex in 0u32..30) {
        let mut model = NodeModel::new(policy(0));
        model.from_pod(ifindex, &bytes, 0);
        model.from_underlay(&bytes, 0);
        // The same bytes as a VXLAN payload, to get past the outer checks.
        model.from_underlay(&over_vxlan(VNI, &bytes), 0);
    }

    #[test]
    fn keys_match_the_kernels(
        vni in any::<u32>(),
        protocol in any::<u8>(),
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        src_port in any::<u16>(),
        dst_port in any::<u16>(),
        same_ip in any::<bool>(),
    ) {
        let dst = if same_ip { src } else { dst };
        let (key, side) = CtKey::of_packet(vni, protocol, (src.into(), src_port), (dst.into(), dst_port));
        let (kernel, kernel_side) = ct_key(vni, protocol, src, dst, src_port, dst_port);
        prop_assert_eq!(maps::CtKey::from(key), kernel);
        prop_assert_eq!(side.code(), kernel_side);
        prop_assert_eq!(side == Side::Lo, kernel_side == ct_origin::LO);
    }
}
