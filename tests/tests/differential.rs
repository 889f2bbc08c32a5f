//! Differential test: random clusters (security groups and rules, port security, address pairs)
//! and random packet sequences (new connections, replies, ICMP errors about earlier packets,
//! spoofed and corrupted frames, rule changes in the middle of a sequence) run through four
//! subjects: the reference model (`ctpath_dataplane::model::NodeModel`), the XDP programs in the
//! kernel (`BPF_PROG_TEST_RUN`), their tc twins in the kernel, and the AF_XDP forwarder's
//! pipeline (`ctpath_dataplane::forwarder::pipeline`, no sockets). For every frame the verdict
//! (for the pipeline also its exact action: bounce, which pod, or the underlay), the frame that
//! leaves and the counter that moves must agree, and for the kernel's programs how many
//! security-group rules it counts towards (`RULE_HITS`); after every sequence, so must the conntrack
//! tables: the model's, the XDP object's, the tc object's, the pipeline's own and the one it
//! mirrors into.
//!
//! The XDP side runs node A's plan, compiled by the agent's compiler from the same state with
//! both planes on `datapath: xdp`, in a namespace with a real veth per local pod and a
//! permanent neighbour for node B. The pipeline gets its tables from the same plan
//! (`datapath::contents`), node B's MAC as the next hop, and as its mirror the `CONNTRACK` map
//! of a third, separately loaded object, cleared before each sequence like the kernel's.
//!
//! The tc side is a second object with its own maps and conntrack table, holding the plan the
//! compiler makes from the same state with both planes on `datapath: tc` (the plan differs
//! only in the planes' `TC` flag, which is what sends the underlay's VXLAN on to tc), and it
//! runs frames as a node with tc planes does: a pod's frame through `from_pod_tc` (the agent
//! attaches it, not XDP, to a tc plane's veths); a frame from the underlay through
//! `from_underlay` (XDP, always at the NIC), which must hand a tc plane's VXLAN on
//! (`underlay_to_tc`), then, if it passed the frame, through `from_underlay_tc`. So every
//! counter is the model's, `underlay_passed` included (XDP in front counts it, tc leaves it),
//! and `underlay_to_tc` comes on top. After a rule change both objects get their new plan.
//!
//! Frames the kernel cannot run a tc program on (`fixture::tc_can_run`: IPv4 or IPv6 ethertype
//! with less than a whole IP header; a corrupted ethertype makes them here) are skipped for the
//! tc subject only. No such frame reaches conntrack in the model (`classify` drops an IPv4
//! runt, IPv6 goes to the kernel), so skipping them leaves the tc object's table in step; the
//! test checks that on every one (the model's table must be the same after it as before).
//!
//! Clusters get services over their pods (a virtual IP on a plane, listed ports with target
//! ports or all ports, backends by label selector or by list, client-IP affinity sometimes);
//! sequences send to the virtual IPs, the backends (local or remote) answer the connections
//! they were given (the model's delivered frame says which), and the backends change in the
//! middle of a sequence (`BackendsChange`). The AF_XDP forwarder's pipeline translates them
//! too, its translation caches over the `NAT_FLOWS`, `NAT_REPLIES` and `AFFINITY` maps of the
//! same third object.
//!
//! Proptest shrinks a failure to a small cluster and sequence.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use ctpath_common::{
    maps::{
        names, network_flags, AffinityEntry, AffinityKey, CtEntry as KernelCtEntry,
        CtKey as KernelCtKey, FlowKey, NatEntry, NodeConfig, NO_RULE,
    },
    Counter, CounterKind, DropReason, Tally,
};
use ctpath_control::{
    compile::{self, NodePlan, ROUTER_MAC},
    datapath::{self, XdpProgram},
    links::KernelLinks,
    policy,
    state::ClusterState,
};
use ctpath_dataplane::{
    forwarder::{
        flows::BpfMirror,
        nat::{BpfNat, Shared},
        pipeline::{Action, FrameBuf, Ingress, Pipeline},
        tables::{NextHop, Tables},
    },
    model::{Counted, CtEntry as ModelCtEntry, CtKey as ModelCtKey, NodeModel, Outcome, Verdict},
    testing::{FrameBuilder, Malform},
    wire::{tcp::Flags, MacAddr},
};
use ctpath_testbed::{
    fixture::{plan_with_pods_set, tc_can_run, FixtureNode, FixtureRunner, Hook, XdpAction},
    model_of, require_root,
};
use proptest::prelude::*;

/// Sequences run: cases × sequences per case (`CTPATH_DIFFERENTIAL_CASES` overrides the
/// number of cases, e.g. for a quick look while developing).
const CASES: u32 = 5_000;
const SEQUENCES_PER_CASE: usize = 20;

const NODE_A_IP: [u8; 4] = [192, 168, 77, 1];
const NODE_B_IP: [u8; 4] = [192, 168, 77, 2];
const NODE_A_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const NODE_B_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

/// A pod of the fixed universe: name, node, plane, host veth, address, MAC.
#[derive(Clone, Copy)]
struct PodSpec {
    name: &'static str,
    local: bool,
    network: &'static str,
    host_interface: &'static str,
    ip: [u8; 4],
    mac: [u8; 6],
}

/// Three pods on node A (ours), three on node B; two planes whose address ranges overlap (red's
/// r2 has blue's l0's address).
const PODS: [PodSpec; 6] = [
    PodSpec {
        name: "l0",
        local: true,
        network: "blue",
        host_interface: "vl0",
        ip: [10, 0, 1, 1],
        mac: [2, 0, 0, 0, 1, 1],
    },
    PodSpec {
        name: "l1",
        local: true,
        network: "blue",
        host_interface: "vl1",
        ip: [10, 0, 1, 2],
        mac: [2, 0, 0, 0, 1, 2],
    },
    PodSpec {
        name: "l2",
        local: true,
        network: "red",
        host_interface: "vl2",
        ip: [10, 0, 1, 3],
        mac: [2, 0, 0, 0, 1, 3],
    },
    PodSpec {
        name: "r0",
        local: false,
        network: "blue",
        host_interface: "vr0",
        ip: [10, 0, 2, 1],
        mac: [2, 0, 0, 0, 2, 1],
    },
    PodSpec {
        name: "r1",
        local: false,
        network: "blue",
        host_interface: "vr1",
        ip: [10, 0, 2, 2],
        mac: [2, 0, 0, 0, 2, 2],
    },
    PodSpec {
        name: "r2",
        local: false,
        network: "red",
        host_interface: "vr2",
        ip: [10, 0, 1, 1],
        mac: [2, 0, 0, 0, 2, 3],
    },
];
const GROUPS: [&str; 3] = ["g0", "g1", "g2"];
const CIDRS: [&str; 5] = [
    "10.0.1.0/24",
    "10.0.2.0/24",
    "10.0.0.0/16",
    "10.0.1.2/32",
    "192.0.2.0/24",
];
const PORT_RANGES: [Option<&str>; 4] = [None, Some("80"), Some("80-81"), Some("1000-2000")];
const PORTS: [u16; 5] = [80, 81, 1500, 2000, 53];

#[derive(Clone, Debug)]
struct RuleSpec {
    ingress: bool,
    /// 0 tcp, 1 udp, 2 icmp, 3 any.
    protocol: usize,
    ports: usize,
    /// 0 anywhere, 1..=3 a group, 4..=8 a CIDR, 9.. the service at that one of `VIPS` (if
    /// there is none, anywhere).
    remote: usize,
}

#[derive(Clone, Debug)]
struct PodConfig {
    groups: Vec<bool>,
    port_security: bool,
    /// 0 none, 1 a /32 with a MAC of its own, 2 a /24 without a MAC.
    pair: usize,
    /// The pod's label `app: a{label}`.
    label: usize,
}

/// Where services may be: (plane, virtual IP). One inside blue's CIDR; red reuses blue's
/// other one (planes are isolated).
const VIPS: [(&str, [u8; 4]); 3] = [
    ("blue", [10, 96, 0, 1]),
    ("blue", [10, 0, 0, 53]),
    ("red", [10, 96, 0, 1]),
];
const LABELS: usize = 2;

#[derive(Clone, Debug)]
struct ServiceSpec {
    /// (0 tcp / 1 udp, port, target port), ports and targets indices in `PORTS`; `None`: all
    /// ports.
    ports: Option<Vec<(usize, usize, usize)>>,
    backends: BackendSpec,
    affinity: bool,
}

#[derive(Clone, Debug)]
enum BackendSpec {
    /// The pods labelled `app: a{label}` (on the service's plane).
    Selector(usize),
    /// The pods of the service's plane (in `PODS` order) whose flag is set.
    List(Vec<bool>),
}

#[derive(Clone, Debug)]
struct Scenario {
    pods: Vec<PodConfig>,
    rules: Vec<Vec<RuleSpec>>,
    /// A service at each of `VIPS`, or none.
    services: Vec<Option<ServiceSpec>>,
}

fn backend_spec() -> impl Strategy<Value = BackendSpec> {
    prop_oneof![
        (0..LABELS + 1).prop_map(BackendSpec::Selector),
        prop::collection::vec(any::<bool>(), PODS.len()).prop_map(BackendSpec::List),
    ]
}

fn service_spec() -> impl Strategy<Value = ServiceSpec> {
    let port = (0..2usize, 0..PORTS.len(), 0..PORTS.len());
    (
        prop::option::weighted(0.7, prop::collection::vec(port, 1..4)),
        backend_spec(),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(ports, backends, affinity)| ServiceSpec {
            ports,
            backends,
            affinity,
        })
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        any::<bool>(),
        0..4usize,
        0..PORT_RANGES.len(),
        0..(1 + GROUPS.len() + CIDRS.len() + VIPS.len()),
    )
        .prop_map(|(ingress, protocol, ports, remote)| RuleSpec {
            ingress,
            protocol,
            ports,
            remote,
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let pod = (
        prop::collection::vec(prop::bool::weighted(0.4), GROUPS.len()),
        prop::bool::weighted(0.9),
        0..3usize,
        0..LABELS,
    )
        .prop_map(|(groups, port_security, pair, label)| PodConfig {
            groups,
            port_security,
            pair,
            label,
        });
    (
        prop::collection::vec(pod, PODS.len()),
        prop::collection::vec(prop::collection::vec(rule_spec(), 0..5), GROUPS.len()),
        prop::collection::vec(prop::option::weighted(0.4, service_spec()), VIPS.len()),
    )
        .prop_map(|(pods, rules, services)| Scenario {
            pods,
            rules,
            services,
        })
}

/// The cluster state of a scenario, as YAML, both planes on `datapath` (`xdp` or `tc`).
fn state_yaml(scenario: &Scenario, datapath: &str) -> String {
    let mut yaml = format!(
        "version: 1\nnetworks:\n  - {{ name: blue, vni: 100, cidr: 10.0.0.0/16, gateway: 10.0.0.1, mtu: 1450, datapath: {datapath} }}\n  \
         - {{ name: red, vni: 200, cidr: 10.0.0.0/16, gateway: 10.0.0.1, mtu: 1450, datapath: {datapath} }}\nnodes:\n  \
         - {{ name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }}\n  \
         - {{ name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }}\nsecurity_groups:\n",
    );
    for (group, rules) in GROUPS.iter().zip(&scenario.rules) {
        yaml += &format!("  - name: {group}\n    rules:\n");
        if rules.is_empty() {
            yaml.truncate(yaml.len() - "    rules:\n".len());
            yaml += "    rules: []\n";
        }
        for rule in rules {
            let protocol = ["tcp", "udp", "icmp", "any"][rule.protocol];
            let mut line = format!(
                "      - {{ direction: {}, protocol: {protocol}",
                if rule.ingress { "ingress" } else { "egress" }
            );
            if let (Some(ports), 0 | 1) = (PORT_RANGES[rule.ports], rule.protocol) {
                line += &format!(", ports: \"{ports}\"");
            }
            let cidrs = 1 + GROUPS.len()..1 + GROUPS.len() + CIDRS.len();
            match rule.remote {
                0 => {}
                group @ 1..=3 => line += &format!(", remote_group: {}", GROUPS[group - 1]),
                cidr if cidrs.contains(&cidr) => {
                    line += &format!(", remote_cidr: {}", CIDRS[cidr - cidrs.start]);
                }
                service => {
                    let index = service - cidrs.end;
                    if scenario.services[index].is_some() {
                        line += &format!(", remote_service: s{index}");
                    }
                }
            }
            yaml += &line;
            yaml += " }\n";
        }
    }
    yaml += "pods:\n";
    for (index, (pod, config)) in PODS.iter().zip(&scenario.pods).enumerate() {
        let groups: Vec<&str> = GROUPS
            .iter()
            .zip(&config.groups)
            .filter(|(_, on)| **on)
            .map(|(g, _)| *g)
            .collect();
        let [a, b, c, d] = pod.ip;
        let mac = MacAddr(pod.mac);
        yaml += &format!(
            "  - name: {}\n    node: {}\n    labels: {{ app: a{} }}\n    interfaces:\n      - network: {}\n        host_interface: {}\n        \
             ip: {a}.{b}.{c}.{d}\n        mac: \"{mac}\"\n        security_groups: [{}]\n        port_security: {}\n",
            pod.name,
            if pod.local { "node-a" } else { "node-b" },
            config.label,
            pod.network,
            pod.host_interface,
            groups.join(", "),
            config.port_security,
        );
        match config.pair {
            1 => yaml += &format!("        allowed_address_pairs: [{{ ip: 10.0.9.{index}, mac: \"02:00:00:00:09:0{index}\" }}]\n"),
            2 => yaml += &format!("        allowed_address_pairs: [{{ ip: 10.0.{}.0/24 }}]\n", 20 + index),
            _ => {}
        }
    }
    yaml + &services_yaml(&scenario.services)
}

/// The `services:` section of a scenario (none without services).
fn services_yaml(services: &[Option<ServiceSpec>]) -> String {
    let mut yaml = String::new();
    for (index, ((network, vip), service)) in VIPS.iter().zip(services).enumerate() {
        let Some(service) = service else { continue };
        if yaml.is_empty() {
            yaml += "services:\n";
        }
        let [a, b, c, d] = vip;
        yaml += &format!("  - name: s{index}\n    network: {network}\n    vip: {a}.{b}.{c}.{d}\n");
        match &service.ports {
            None => yaml += "    all_ports: true\n",
            Some(ports) => {
                yaml += "    ports:\n";
                let mut listed = BTreeSet::new();
                for &(protocol, port, target) in ports {
                    if listed.insert((protocol, port)) {
                        let protocol = ["tcp", "udp"][protocol];
                        yaml += &format!(
                            "      - {{ port: {}, protocol: {protocol}, target_port: {} }}\n",
                            PORTS[port], PORTS[target]
                        );
                    }
                }
            }
        }
        match &service.backends {
            BackendSpec::Selector(label) => yaml += &format!("    selector: {{ app: a{label} }}\n"),
            BackendSpec::List(chosen) => {
                let names: Vec<String> = PODS
                    .iter()
                    .zip(chosen)
                    .filter(|(pod, on)| **on && pod.network == *network)
                    .map(|(pod, _)| format!("{{ pod: {} }}", pod.name))
                    .collect();
                yaml += &format!("    backends: [{}]\n", names.join(", "));
            }
        }
        if service.affinity {
            yaml += "    session_affinity: client_ip\n    affinity_timeout_seconds: 600\n";
        }
    }
    yaml
}

/// What a packet of a sequence is.
#[derive(Clone, Debug)]
enum Packet {
    /// A new packet from pod `from` to pod `to` (or, for `to` past the pods, an address that
    /// is no pod, the gateway, or one of `VIPS`).
    Fresh {
        from: usize,
        to: usize,
        kind: Kind,
        spoof: Spoof,
    },
    /// The reverse of the `index`-th packet sent so far.
    Reply { index: usize, kind: Kind },
    /// The `index`-th packet sent so far, sent again as it was (a SYN again after the
    /// backends changed is a new connection to the service; anything else keeps its backend).
    Again { index: usize },
    /// An ICMP error about the `index`-th packet sent so far, from its receiver, to its
    /// sender (or, with `misdirected`, to another pod).
    Error {
        index: usize,
        misdirected: Option<usize>,
    },
    /// The rules change to those of `scenario` (same pods), mid-sequence.
    RulesChange { rules: Vec<Vec<RuleSpec>> },
    /// The services' backends change, mid-sequence: the pods' labels, and the backends of
    /// each service (where there is one).
    BackendsChange {
        labels: Vec<usize>,
        backends: Vec<BackendSpec>,
    },
}

#[derive(Clone, Debug)]
enum Kind {
    Tcp {
        sport: usize,
        dport: usize,
        flags: usize,
    },
    Udp {
        sport: usize,
        dport: usize,
    },
    Echo {
        id: u16,
    },
    Other,
}

#[derive(Clone, Copy, Debug)]
enum Spoof {
    None,
    Ip,
    Mac,
    /// A byte of the frame overwritten.
    Corrupt(usize, u8),
}

const TCP_FLAGS: [Flags; 5] = [
    Flags::SYN,
    Flags(Flags::SYN.bits() | Flags::ACK.bits()),
    Flags::ACK,
    Flags(Flags::FIN.bits() | Flags::ACK.bits()),
    Flags::RST,
];

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => (0..PORTS.len(), 0..PORTS.len(), 0..TCP_FLAGS.len()).prop_map(|(sport, dport, flags)| Kind::Tcp { sport, dport, flags }),
        3 => (0..PORTS.len(), 0..PORTS.len()).prop_map(|(sport, dport)| Kind::Udp { sport, dport }),
        2 => (1..3u16).prop_map(|id| Kind::Echo { id }),
        1 => Just(Kind::Other),
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    let spoof = prop_oneof![
        16 => Just(Spoof::None),
        1 => Just(Spoof::Ip),
        1 => Just(Spoof::Mac),
        1 => (0usize..80, any::<u8>()).prop_map(|(at, byte)| Spoof::Corrupt(at, byte)),
    ];
    prop_oneof![
        6 => (0..PODS.len(), 0..PODS.len() + 2 + VIPS.len(), kind(), spoof).prop_map(|(from, to, kind, spoof)| Packet::Fresh { from, to, kind, spoof }),
        4 => (0..8usize, kind()).prop_map(|(index, kind)| Packet::Reply { index, kind }),
        // To a service: as likely as to a pod (most clusters have one).
        3 => (0..PODS.len(), 0..VIPS.len(), kind()).prop_map(|(from, vip, kind)| Packet::Fresh { from, to: PODS.len() + 2 + vip, kind, spoof: Spoof::None }),
        2 => (0..8usize).prop_map(|index| Packet::Again { index }),
        1 => (0..8usize, prop::option::weighted(0.3, 0..PODS.len())).prop_map(|(index, misdirected)| Packet::Error { index, misdirected }),
        1 => prop::collection::vec(prop::collection::vec(rule_spec(), 0..4), GROUPS.len()).prop_map(|rules| Packet::RulesChange { rules }),
        1 => (prop::collection::vec(0..LABELS, PODS.len()), prop::collection::vec(backend_spec(), VIPS.len())).prop_map(|(labels, backends)| Packet::BackendsChange { labels, backends }),
    ]
}

/// A frame as one side sends it: the sending pod, the receiving pod (if a pod), the frame
/// (for a packet to a service, as the model delivered it to the backend), and where its
/// replies go (MAC, address): the sender, or for a hairpin the virtual IP (via the router).
#[derive(Clone)]
struct Sent {
    from: usize,
    to: Option<usize>,
    frame: Vec<u8>,
    reply_to: ([u8; 6], [u8; 4]),
    /// The frame as the sender sent it, and whether to a virtual IP.
    sent: (Vec<u8>, bool),
}

/// The inner frame from pod `from` to address/MAC `to`.
fn frame(
    from: &PodSpec,
    to_ip: [u8; 4],
    to_mac: [u8; 6],
    kind: &Kind,
    reverse_ports: bool,
) -> Vec<u8> {
    let (src, dst) = ((from.mac, from.ip), (to_mac, to_ip));
    match *kind {
        Kind::Tcp {
            sport,
            dport,
            flags,
        } => {
            let (s, d) = if reverse_ports {
                (PORTS[dport], PORTS[sport])
            } else {
                (PORTS[sport], PORTS[dport])
            };
            FrameBuilder::tcp(src.0, dst.0, src.1, dst.1, s, d, TCP_FLAGS[flags], b"")
        }
        Kind::Udp { sport, dport } => {
            let (s, d) = if reverse_ports {
                (PORTS[dport], PORTS[sport])
            } else {
                (PORTS[sport], PORTS[dport])
            };
            FrameBuilder::udp(src.0, dst.0, src.1, dst.1, s, d, b"x")
        }
        Kind::Echo { id } if reverse_ports => {
            FrameBuilder::icmp_echo_reply(src.0, dst.0, src.1, dst.1, id, 1)
        }
        Kind::Echo { id } => FrameBuilder::icmp_echo_request(src.0, dst.0, src.1, dst.1, id, 1),
        Kind::Other => {
            FrameBuilder::udp(src.0, dst.0, src.1, dst.1, 1, 2, b"gre").with_ipv4_protocol(47)
        }
    }
}

/// Node A's namespace: a veth per local pod, and an underlay with node B as permanent neighbour.
fn node_a() -> FixtureNode {
    let local: Vec<&str> = PODS
        .iter()
        .filter(|p| p.local)
        .map(|p| p.host_interface)
        .collect();
    FixtureNode::new(
        "diff",
        &local,
        (NODE_A_MAC, NODE_A_IP),
        (NODE_B_MAC, NODE_B_IP),
    )
}

/// A kernel subject: one loaded object (run as the XDP programs or as a tc plane's), its
/// current plan and generation.
struct Kernel {
    runner: FixtureRunner,
    plan: NodePlan,
    generation: u32,
    eth0: u32,
}

impl Kernel {
    fn apply(&mut self, plan: NodePlan) {
        self.generation += 1;
        datapath::apply_plan(
            self.runner.ebpf_mut(),
            Some(&self.plan),
            &plan,
            self.generation,
        )
        .unwrap();
        self.plan = plan;
    }

    /// Empties the conntrack table and the services' translation tables.
    fn clear_tables(&mut self) {
        let map = self.runner.ebpf_mut().map_mut(names::CONNTRACK).unwrap();
        clear(&mut BpfHashMap::<_, KernelCtKey, KernelCtEntry>::try_from(map).unwrap());
        for name in [names::NAT_FLOWS, names::NAT_REPLIES] {
            let map = self.runner.ebpf_mut().map_mut(name).unwrap();
            clear(&mut BpfHashMap::<_, FlowKey, NatEntry>::try_from(map).unwrap());
        }
        let map = self.runner.ebpf_mut().map_mut(names::AFFINITY).unwrap();
        clear(&mut BpfHashMap::<_, AffinityKey, AffinityEntry>::try_from(map).unwrap());
    }

    fn conntrack(&mut self) -> BTreeMap<KernelCtKey, KernelCtEntry> {
        let map = self.runner.ebpf_mut().map(names::CONNTRACK).unwrap();
        entries(&BpfHashMap::<_, KernelCtKey, KernelCtEntry>::try_from(map).unwrap())
    }

    /// The pipeline's tables for the kernel's current plan and generation.
    fn tables(&self) -> Arc<Tables> {
        let node = NodeConfig {
            policy_generation: self.generation,
            ..self.plan.node
        };
        let towards_node_b = NextHop {
            src_mac: NODE_A_MAC,
            dst_mac: NODE_B_MAC,
        };
        Arc::new(Tables::new(
            &datapath::contents(&self.plan),
            node,
            BTreeMap::from([(NODE_B_IP, towards_node_b)]),
        ))
    }

    /// Runs `program`'s frame `input` (arriving on `ingress`) as a node whose planes are on
    /// `datapath: tc` does, and checks the result against the model's `verdict` and the frame
    /// it sends, `expected` (`None`: a drop): a pod's frame through `from_pod_tc`; a frame
    /// from the underlay through `from_underlay` (XDP), which must hand the VXLAN of a plane it
    /// knows to tc (`underlay_to_tc`), then, if XDP passed it, through `from_underlay_tc`.
    /// The verdict is the last program's; every counter but `underlay_to_tc` is the model's.
    fn run_as_tc_plane(
        &mut self,
        program: XdpProgram,
        ingress: u32,
        input: &[u8],
        verdict: &Verdict,
        expected: Option<&[u8]>,
    ) -> Result<(), String> {
        let handed_on = Counted::Counter(Counter::UnderlayToTc);
        self.runner.set_ingress_ifindex(ingress);
        let before = self.count(verdict.counted);
        let outcome = match program {
            XdpProgram::FromPod => {
                self.runner.set_hook(Hook::Tc);
                self.runner.set_program(XdpProgram::FromPod);
                self.runner.run(input)
            }
            _ => {
                let handed_before = self.count(handed_on);
                self.runner.set_hook(Hook::Xdp);
                self.runner.set_program(XdpProgram::FromUnderlay);
                let front = self.runner.run(input);
                let handed = self.count(handed_on) - handed_before;
                let passed = front.action == Some(XdpAction::Pass);
                let own_traffic = verdict.counted == Counted::Counter(Counter::UnderlayPassed);
                if handed != u64::from(passed && !own_traffic) {
                    return Err(format!(
                        "from_underlay in front of tc: {:?}, handed to tc {handed} times",
                        front.action
                    ));
                }
                if passed {
                    self.runner.set_hook(Hook::Tc);
                    self.runner.run(input)
                } else {
                    front
                }
            }
        };
        let after = self.count(verdict.counted);
        if outcome.action != Some(verdict.outcome.xdp_action()) {
            return Err(format!(
                "tc action {:?} (raw {})",
                outcome.action, outcome.raw_action
            ));
        }
        if after != before + 1 {
            return Err(format!(
                "the tc programs counted it there {} times",
                after - before
            ));
        }
        if let Some(expected) = expected {
            if outcome.output != expected {
                return Err(format!(
                    "output differs\n  tc    {:02x?}\n  model {expected:02x?}",
                    outcome.output
                ));
            }
        }
        Ok(())
    }

    /// Packets counted so far towards each rule id (`RULE_HITS`, the ids of `rules`).
    fn rule_hits(&mut self, rules: &RuleIds) -> Vec<u64> {
        let map = self.runner.ebpf_mut().map(names::RULE_HITS).unwrap();
        let array = PerCpuArray::<_, Tally>::try_from(map).unwrap();
        (0..rules.len() as u32)
            .map(|id| {
                array
                    .get(&id, 0)
                    .unwrap()
                    .iter()
                    .map(|tally| tally.packets)
                    .sum()
            })
            .collect()
    }

    /// Runs `run` and checks that it counted the packet towards as many rules as `verdict`
    /// (its egress and its ingress rule, where it has them). Which rule of several that allow a
    /// connection gets the hit is not compared: the model credits the first in the groups'
    /// order, the compiled policy may credit another (found by this test, not settled yet).
    fn counting_rules<T>(
        &mut self,
        rules: &RuleIds,
        verdict: &Verdict,
        run: impl FnOnce(&mut Kernel) -> Result<T, String>,
    ) -> Result<T, String> {
        let before = self.rule_hits(rules);
        let result = run(self)?;
        let counted: u64 = self
            .rule_hits(rules)
            .iter()
            .zip(&before)
            .map(|(after, before)| after - before)
            .sum();
        let expected = [&verdict.rules.egress, &verdict.rules.ingress]
            .into_iter()
            .flatten()
            .count() as u64;
        if counted != expected {
            return Err(format!(
                "counted towards {counted} rules, the model towards {expected} ({:?})",
                verdict.rules
            ));
        }
        Ok(result)
    }

    /// Packets counted so far under `counted`.
    fn count(&mut self, counted: Counted) -> u64 {
        let (name, index) = match counted {
            Counted::Drop(reason) => (DropReason::MAP_NAME, reason.index()),
            Counted::Counter(counter) => (Counter::MAP_NAME, counter.index()),
        };
        let map = self.runner.ebpf_mut().map(name).unwrap();
        let array = PerCpuArray::<_, Tally>::try_from(map).unwrap();
        array
            .get(&index, 0)
            .unwrap()
            .iter()
            .map(|tally| tally.packets)
            .sum()
    }
}

/// The model's conntrack table, entry for entry.
fn model_table(model: &NodeModel) -> Vec<(ModelCtKey, ModelCtEntry)> {
    model
        .conntrack()
        .map(|(key, entry)| (*key, entry.clone()))
        .collect()
}

/// Removes every entry of a hash map.
fn clear<T: std::borrow::BorrowMut<MapData>, K: aya::Pod, V: aya::Pod>(
    table: &mut BpfHashMap<T, K, V>,
) {
    let keys: Vec<K> = table.keys().map(Result::unwrap).collect();
    for key in keys {
        table.remove(&key).unwrap();
    }
}

/// Every entry of a conntrack map.
fn entries<T: std::borrow::Borrow<MapData>>(
    table: &BpfHashMap<T, KernelCtKey, KernelCtEntry>,
) -> BTreeMap<KernelCtKey, KernelCtEntry> {
    table.iter().map(Result::unwrap).collect()
}

/// How many rules a state has (the `RULE_HITS` ids in use).
struct RuleIds(usize);

impl RuleIds {
    fn of(state: &ClusterState) -> RuleIds {
        RuleIds(policy::rule_ids(state).count())
    }

    fn len(&self) -> usize {
        self.0
    }
}

/// A scenario's state (its planes on `datapath: xdp`) and node A's plans for its planes on
/// either datapath (call from inside node A's namespace).
struct Compiled {
    state: ClusterState,
    xdp: NodePlan,
    tc: NodePlan,
}

fn compile_scenario(scenario: &Scenario) -> Compiled {
    let links = KernelLinks::open().unwrap();
    let compile = |datapath| {
        let yaml = state_yaml(scenario, datapath);
        let state =
            ClusterState::from_yaml_str(&yaml).unwrap_or_else(|error| panic!("{error}\n{yaml}"));
        let plan = plan_with_pods_set(compile::compile(&state, "node-a", &links).unwrap());
        (state, plan)
    };
    let ((state, xdp), (_, tc)) = (compile("xdp"), compile("tc"));
    // What the module doc says of the two plans.
    let mut flagged = xdp.clone();
    for network in flagged.networks.values_mut() {
        network.flags |= network_flags::TC;
    }
    assert_eq!(
        flagged, tc,
        "the tc plan is the XDP plan with its planes flagged TC"
    );
    Compiled { state, xdp, tc }
}

/// Runs one sequence through the four subjects; an error describes the first disagreement.
fn run_sequence(
    node: &FixtureNode,
    kernel: &mut Kernel,
    tc: &mut Kernel,
    mirror: &mut Shared<BpfMirror, BpfNat>,
    base: &Scenario,
    compiled: &Compiled,
    packets: &[Packet],
) -> Result<(), String> {
    kernel.clear_tables();
    tc.clear_tables();
    clear(mirror.conntrack.map_mut());
    clear(&mut mirror.nat.flows);
    clear(&mut mirror.nat.replies);
    clear(&mut mirror.nat.affinity);
    if kernel.plan != compiled.xdp {
        kernel.apply(compiled.xdp.clone());
    }
    if tc.plan != compiled.tc {
        tc.apply(compiled.tc.clone());
    }
    let mut model = NodeModel::new(node.topology(&compiled.state, "node-a"));
    let mut rule_ids = RuleIds::of(&compiled.state);
    let mut pipeline = Pipeline::new(kernel.tables(), MIRROR_ENTRIES, &mut *mirror);
    let mut sent: Vec<Sent> = Vec::new();
    let mut current = base.clone();
    for (step, packet) in packets.iter().enumerate() {
        let (from, to, inner) = match packet {
            Packet::RulesChange { .. } | Packet::BackendsChange { .. } => {
                match packet {
                    Packet::RulesChange { rules } => current.rules = rules.clone(),
                    Packet::BackendsChange { labels, backends } => {
                        for (pod, label) in current.pods.iter_mut().zip(labels) {
                            pod.label = *label;
                        }
                        for (service, spec) in current.services.iter_mut().zip(backends) {
                            if let Some(service) = service {
                                service.backends = spec.clone();
                            }
                        }
                    }
                    _ => {}
                }
                let Compiled {
                    state,
                    xdp,
                    tc: tc_plan,
                } = compile_scenario(&current);
                kernel.apply(xdp);
                tc.apply(tc_plan);
                pipeline.set_tables(kernel.tables());
                model.set_policy(node.topology(&state, "node-a"));
                rule_ids = RuleIds::of(&state);
                continue;
            }
            Packet::Fresh {
                from,
                to,
                kind,
                spoof,
            } => {
                let sender = &PODS[*from];
                let (to_ip, to_mac, to_pod) = match to {
                    i if *i < PODS.len() => (PODS[*i].ip, PODS[*i].mac, Some(*i)),
                    i if *i == PODS.len() => ([10, 0, 7, 7], [2, 0, 0, 0, 7, 7], None),
                    i if *i == PODS.len() + 1 => ([10, 0, 0, 1], ROUTER_MAC, None),
                    // A virtual IP: the backend is known once the model has delivered it.
                    i => (VIPS[i - PODS.len() - 2].1, ROUTER_MAC, None),
                };
                let mut bytes = frame(sender, to_ip, to_mac, kind, false);
                match spoof {
                    Spoof::None => {}
                    Spoof::Ip => {
                        bytes = frame(
                            &PodSpec {
                                ip: [10, 0, 1, 99],
                                ..*sender
                            },
                            to_ip,
                            to_mac,
                            kind,
                            false,
                        )
                    }
                    Spoof::Mac => bytes[6..12].copy_from_slice(&[2, 0, 0, 0, 6, 6]),
                    Spoof::Corrupt(at, byte) => {
                        if *at < bytes.len() {
                            bytes[*at] = *byte;
                        }
                    }
                }
                (*from, to_pod, bytes)
            }
            Packet::Reply { index, kind } => {
                let Some(original) = sent.get(index % sent.len().max(1)).cloned() else {
                    continue;
                };
                let Some(replier) = original.to else { continue };
                let (back, kind) = (original.reply_to, kind);
                // Same protocol as the original where it has one, else the generated kind.
                let reply_kind = match original.frame.get(23) {
                    Some(6) => Kind::Tcp {
                        sport: port_index(&original.frame, 34),
                        dport: port_index(&original.frame, 36),
                        flags: 1,
                    },
                    Some(17) => Kind::Udp {
                        sport: port_index(&original.frame, 34),
                        dport: port_index(&original.frame, 36),
                    },
                    Some(1) => Kind::Echo {
                        id: u16::from_be_bytes([original.frame[38], original.frame[39]]),
                    },
                    _ => kind.clone(),
                };
                (
                    replier,
                    Some(original.from),
                    frame(&PODS[replier], back.1, back.0, &reply_kind, true),
                )
            }
            Packet::Again { index } => {
                let Some(original) = sent.get(index % sent.len().max(1)).cloned() else {
                    continue;
                };
                (original.from, original.to, original.sent.0)
            }
            Packet::Error { index, misdirected } => {
                let Some(original) = sent.get(index % sent.len().max(1)).cloned() else {
                    continue;
                };
                let Some(reporter) = original.to else {
                    continue;
                };
                let target = misdirected.unwrap_or(original.from);
                // To the quoted packet's source: its sender, or the virtual IP a reply came
                // from (or a hairpin left from); misdirected, to another pod.
                let quoted_src: [u8; 4] = original.frame[26..30].try_into().unwrap();
                let (target_mac, target_ip) = match misdirected {
                    None if quoted_src != PODS[target].ip => (ROUTER_MAC, quoted_src),
                    _ => (PODS[target].mac, PODS[target].ip),
                };
                let reporter = &PODS[reporter];
                let error = FrameBuilder::icmp_error(
                    reporter.mac,
                    target_mac,
                    reporter.ip,
                    target_ip,
                    3,
                    3,
                    &original.frame,
                );
                (original.to.unwrap(), Some(target), error)
            }
        };
        let sender = &PODS[from];
        let now = ctpath_control::conntrack::monotonic_ns();
        let (input, program, ingress, forwarder_ingress) = if sender.local {
            let ingress = node.ifindex[sender.host_interface];
            (
                inner.clone(),
                XdpProgram::FromPod,
                ingress,
                Ingress::Pod { ifindex: ingress },
            )
        } else {
            let vni = if sender.network == "blue" { 100 } else { 200 };
            let outer = FrameBuilder::vxlan(
                NODE_B_MAC, NODE_A_MAC, NODE_B_IP, NODE_A_IP, 51000, vni, &inner,
            );
            (
                outer,
                XdpProgram::FromUnderlay,
                kernel.eth0,
                Ingress::Underlay,
            )
        };
        // A frame the tc subject cannot run must leave the model's table as it was, or the tc
        // object's table would fall behind (see the module doc).
        let tc_runs = tc_can_run(&input);
        let table_before = (!tc_runs).then(|| model_table(&model));
        let verdict = match program {
            XdpProgram::FromPod => model.from_pod(ingress, &input, now),
            _ => model.from_underlay(&input, now),
        };
        if table_before.is_some_and(|table| table != model_table(&model)) {
            return Err(format!(
                "step {step} {packet:?}: the model changed its conntrack table on a frame the tc \
                 programs cannot be run on"
            ));
        }
        kernel.runner.set_program(program);
        kernel.runner.set_ingress_ifindex(ingress);
        let context = || {
            format!(
                "step {step} {packet:?}: model {:?} counted {:?}",
                verdict.outcome_summary(),
                verdict.counted
            )
        };
        let before = kernel.count(verdict.counted);
        let outcome = kernel
            .counting_rules(&rule_ids, &verdict, |kernel| Ok(kernel.runner.run(&input)))
            .map_err(|why| format!("{}: kernel {why}", context()))?;
        let after = kernel.count(verdict.counted);
        let expected_action = verdict.outcome.xdp_action();
        if outcome.action.map(|a| a as u32) != Some(expected_action as u32) {
            return Err(format!("{}: kernel action {:?}", context(), outcome.action));
        }
        if after != before + 1 {
            return Err(format!("{}: the kernel did not count it there", context()));
        }
        let expected_frame = model_of::frame_out(
            &verdict.outcome,
            &input,
            &model.topology().node,
            MacAddr(NODE_B_MAC),
        );
        if let Some(expected) = &expected_frame {
            if outcome.output != *expected {
                return Err(format!(
                    "{}: output differs\n  kernel {:02x?}\n  model  {expected:02x?}",
                    context(),
                    outcome.output
                ));
            }
        }

        // The pipeline, on the same frame in a buffer with room to grow.
        {
            let mut buf = vec![0u8; input.len() + FORWARDER_ROOM];
            buf[..input.len()].copy_from_slice(&input);
            let mut frame = FrameBuf {
                buf: &mut buf,
                len: input.len(),
            };
            let forwarded = pipeline.process(forwarder_ingress, &mut frame, now);
            if !same_action(&verdict.outcome, &forwarded.action) {
                return Err(format!("{}: pipeline {:?}", context(), forwarded.action));
            }
            if forwarded.counted != verdict.counted {
                return Err(format!(
                    "{}: pipeline counted {:?}",
                    context(),
                    forwarded.counted
                ));
            }
            if let Some(expected) = &expected_frame {
                let output = &frame.buf[..frame.len];
                if output != &expected[..] {
                    return Err(format!(
                        "{}: output differs\n  pipeline {output:02x?}\n  model    {expected:02x?}",
                        context(),
                    ));
                }
            }
        }

        // The tc programs, as a node whose planes are on `datapath: tc` runs them.
        if tc_runs {
            tc.counting_rules(&rule_ids, &verdict, |tc| {
                tc.run_as_tc_plane(
                    program,
                    ingress,
                    &input,
                    &verdict,
                    expected_frame.as_deref(),
                )
            })
            .map_err(|why| format!("{}: tc programs: {why}", context()))?;
        }
        let sender_ip = PODS[from].ip;
        let translated = match packet {
            Packet::Fresh { to, .. } => *to >= PODS.len() + 2,
            Packet::Again { index } => sent[index % sent.len()].sent.1,
            _ => false,
        };
        let sent_now = match delivered(&verdict.outcome) {
            // To a service: the backend the model chose, the frame as it reached it.
            Some(frame) if translated => {
                let src: [u8; 4] = frame[26..30].try_into().unwrap();
                let dst: [u8; 4] = frame[30..34].try_into().unwrap();
                let backend = PODS
                    .iter()
                    .position(|pod| pod.ip == dst && pod.network == PODS[from].network);
                let via = if src == sender_ip {
                    PODS[from].mac
                } else {
                    ROUTER_MAC
                };
                Sent {
                    from,
                    to: backend,
                    frame: frame.to_vec(),
                    reply_to: (via, src),
                    sent: (inner, true),
                }
            }
            // A backend's reply translated back: from the service, as it reached the client.
            Some(frame)
                if matches!(packet, Packet::Reply { .. }) && frame[26..30] != inner[26..30] =>
            {
                Sent {
                    from,
                    to,
                    frame: frame.to_vec(),
                    reply_to: (PODS[from].mac, sender_ip),
                    sent: (inner, false),
                }
            }
            _ => Sent {
                from,
                to,
                frame: inner.clone(),
                reply_to: (PODS[from].mac, sender_ip),
                sent: (inner, translated),
            },
        };
        sent.push(sent_now);
    }
    // The tables: same connections, states and originators; a rule where the model has one.
    let now = ctpath_control::conntrack::monotonic_ns();
    let timeouts = model.topology().conntrack.timeouts;
    let modelled: BTreeMap<KernelCtKey, Tracked> = model
        .conntrack()
        .filter(|(key, entry)| !entry.is_expired(key.protocol, &timeouts, now))
        .map(|(key, entry)| {
            let tracked = Tracked {
                state: entry.state.code(),
                origin: entry.originator.code(),
                egress_rule: entry.egress_rule.is_some(),
                ingress_rule: entry.ingress_rule.is_some(),
            };
            ((*key).into(), tracked)
        })
        .collect();
    let live = |table: BTreeMap<KernelCtKey, KernelCtEntry>| -> BTreeMap<KernelCtKey, Tracked> {
        table
            .into_iter()
            .filter(|(key, entry)| !timeouts.is_expired(key.protocol, entry, now))
            .map(|(key, entry)| (key, Tracked::of(&entry)))
            .collect()
    };
    let pipeline_table = live(pipeline.conntrack().map(|(k, e)| (*k, *e)).collect());
    drop(pipeline);
    let mut subjects = vec![
        ("kernel", live(kernel.conntrack())),
        ("tc programs", live(tc.conntrack())),
    ];
    subjects.push(("pipeline", pipeline_table));
    subjects.push((
        "pipeline's mirror",
        live(entries(mirror.conntrack.map_mut())),
    ));
    for (subject, table) in subjects {
        agree(&modelled, subject, &table)?;
    }
    Ok(())
}

/// The frame a model outcome delivers to a pod, here or (inner) on node B.
fn delivered(outcome: &Outcome) -> Option<&[u8]> {
    match outcome {
        Outcome::Redirect { frame, .. } => Some(frame),
        Outcome::Encapsulate { inner, .. } => Some(inner),
        _ => None,
    }
}

/// What the conntrack tables must agree on: state, origin, and whether each side has a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tracked {
    state: u8,
    origin: u8,
    egress_rule: bool,
    ingress_rule: bool,
}

impl Tracked {
    fn of(entry: &KernelCtEntry) -> Tracked {
        Tracked {
            state: entry.state,
            origin: entry.origin,
            egress_rule: entry.egress_rule != NO_RULE,
            ingress_rule: entry.ingress_rule != NO_RULE,
        }
    }
}

/// Whether `subject`'s live conntrack entries are the model's.
fn agree(
    modelled: &BTreeMap<KernelCtKey, Tracked>,
    subject: &str,
    table: &BTreeMap<KernelCtKey, Tracked>,
) -> Result<(), String> {
    if modelled == table {
        return Ok(());
    }
    let keys: BTreeSet<_> = modelled.keys().chain(table.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|key| modelled.get(key) != table.get(key))
        .map(|key| {
            format!(
                "  {key:?}: model {:?}, {subject} {:?}",
                modelled.get(key),
                table.get(key)
            )
        })
        .collect();
    Err(format!(
        "conntrack tables of the model and the {subject} differ:\n{}",
        diff.join("\n")
    ))
}

/// Size of the pipeline's conntrack table and of its mirror. A sequence makes at most 8
/// connections, so this is never full (nor is the model's, of the state's default size);
/// small, because every sequence walks the mirror twice (to clear and to read it), and a walk
/// of a BPF hash costs its whole bucket array.
const MIRROR_ENTRIES: u32 = 1024;

/// Size of the kernel objects' conntrack tables and services' translation and affinity tables
/// (XDP and tc subjects): small for the same reason as [`MIRROR_ENTRIES`] (each is walked per
/// sequence too; at the state's default of 262,144 entries the two walks of one conntrack
/// table cost about a tenth of the run). A table of any size that never fills behaves the
/// same.
const KERNEL_ENTRIES: u32 = MIRROR_ENTRIES;

/// Room the pipeline's buffers have after a frame (encapsulation adds 50 bytes).
const FORWARDER_ROOM: usize = 256;

/// Whether the pipeline's action is the model's outcome: the same drop, pass, bounce, pod, or
/// encapsulation.
fn same_action(outcome: &Outcome, action: &Action) -> bool {
    match (outcome, action) {
        (Outcome::Drop(expected), Action::Drop(reason)) => expected == reason,
        (Outcome::Redirect { ifindex, .. }, Action::ToPod { ifindex: to }) => ifindex == to,
        (Outcome::Pass, Action::Pass)
        | (Outcome::Bounce { .. }, Action::Bounce)
        | (Outcome::Encapsulate { .. }, Action::ToUnderlay) => true,
        _ => false,
    }
}

/// The index in `PORTS` of the port at `offset` of `frame` (0 if it is none of them).
fn port_index(frame: &[u8], offset: usize) -> usize {
    let port = u16::from_be_bytes([frame[offset], frame[offset + 1]]);
    PORTS.iter().position(|p| *p == port).unwrap_or(0)
}

trait OutcomeSummary {
    fn outcome_summary(&self) -> String;
}

impl OutcomeSummary for ctpath_dataplane::model::Verdict {
    fn outcome_summary(&self) -> String {
        match &self.outcome {
            Outcome::Drop(reason) => format!("drop {}", reason.name()),
            Outcome::Pass => "pass".into(),
            Outcome::Redirect { ifindex, .. } => format!("redirect to {ifindex}"),
            Outcome::Bounce { .. } => "bounce".into(),
            Outcome::Encapsulate { vtep, vni, .. } => format!("encapsulate to {vtep} vni {vni}"),
        }
    }
}

#[test]
fn kernel_pipeline_and_model_agree_on_random_sequences() {
    require_root();
    let node = node_a();
    let eth0 = node.ifindex["eth0"];
    let sequences =
        || prop::collection::vec(prop::collection::vec(packet(), 1..9), SEQUENCES_PER_CASE);
    let cases = std::env::var("CTPATH_DIFFERENTIAL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    };
    node.ns
        .run_in(|| {
            let empty = compile_scenario(&Scenario {
                pods: vec![
                    PodConfig {
                        groups: vec![false; 3],
                        port_security: true,
                        pair: 0,
                        label: 0,
                    };
                    PODS.len()
                ],
                rules: vec![vec![]; GROUPS.len()],
                services: vec![None; VIPS.len()],
            });
            let loaded = |hook, plan: NodePlan| {
                let mut runner = FixtureRunner::with_connection_tables(
                    XdpProgram::FromPod,
                    hook,
                    KERNEL_ENTRIES,
                );
                runner.set_program(XdpProgram::FromUnderlay);
                datapath::write_plan(runner.ebpf_mut(), &plan).unwrap();
                RefCell::new(Kernel {
                    runner,
                    plan,
                    generation: 1,
                    eth0,
                })
            };
            let kernel = loaded(Hook::Xdp, empty.xdp);
            let tc = loaded(Hook::Tc, empty.tc);
            // The pipeline's mirror: the conntrack and translation maps of a third object, as
            // the forwarder shares the agent's.
            let mut third = datapath::load_with(MIRROR_ENTRIES).unwrap();
            let map = third.take_map(names::CONNTRACK).unwrap();
            let conntrack = BpfMirror::new(BpfHashMap::try_from(map).unwrap());
            let nat = BpfNat {
                flows: BpfHashMap::try_from(third.take_map(names::NAT_FLOWS).unwrap()).unwrap(),
                replies: BpfHashMap::try_from(third.take_map(names::NAT_REPLIES).unwrap()).unwrap(),
                affinity: BpfHashMap::try_from(third.take_map(names::AFFINITY).unwrap()).unwrap(),
            };
            let mirror = RefCell::new(Shared { conntrack, nat });
            proptest!(config, |(scenario in scenario(), sequences in sequences())| {
                let compiled = compile_scenario(&scenario);
                let mut kernel = kernel.borrow_mut();
                let mut tc = tc.borrow_mut();
                let mut mirror = mirror.borrow_mut();
                for packets in &sequences {
                    let ran = run_sequence(
                        &node, &mut kernel, &mut tc, &mut mirror, &scenario, &compiled, packets,
                    );
                    if let Err(disagreement) = ran {
                        prop_assert!(
                            false,
                            "{disagreement}\nstate:\n{}\nsequence: {packets:#?}",
                            state_yaml(&scenario, "xdp")
                        );
                    }
                }
            });
        })
        .unwrap();
}
