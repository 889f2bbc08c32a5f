//! Security groups, anti-spoofing and connection tracking in the kernel, through
//! `BPF_PROG_TEST_RUN` (docs/security-groups.md): every rule kind in both directions, replies,
//! RELATED ICMP errors, spoofed IP/MAC/ARP, allowed address pairs, port security off, a rule
//! removal and a group-membership change cutting established connections, a full table.
//!
//! Node A runs in a namespace of its own with a real veth per pod interface (test runs need real
//! ingress devices) and a permanent neighbour for node B; its plan is compiled from the state
//! below by the agent's own compiler, so these tests cover the compiler too.
//!
//! Every row is checked against the reference model of node A too, built from the same state
//! (`FixtureNode::topology`), in table order on the model's own conntrack table; where a test
//! changes the plan, the model gets the changed state's topology (`NodeModel::set_policy`,
//! which bumps the generation as the plan's writes do). The full-table test fills the
//! kernel's table by hand with connections no row touches; the model stands for that with a
//! table that holds just the one connection the rows make (see there).

use aya::maps::HashMap as BpfHashMap;
use ctpath_common::{
    maps::{ct_origin, ct_state, names, CtEntry, CtKey, DEFAULT_CONNTRACK_ENTRIES},
    Counter, DropReason,
};
use ctpath_control::{
    compile::NodePlan,
    datapath::{self, XdpProgram},
    state::ClusterState,
};
use ctpath_dataplane::{
    model::{NodeModel, Topology},
    testing::{FrameBuilder, Malform},
    wire::{icmp, tcp::Flags},
};
use ctpath_testbed::{
    fixture::{
        ExpectedCounter, ExpectedOutput, Fixture, FixtureNode, FixtureRunner, Hook, XdpAction,
    },
    require_root,
};

const STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450 }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups:
  - name: web
    rules:
      - { direction: ingress, protocol: tcp, ports: "80", remote_group: client }
      - { direction: ingress, protocol: icmp, remote_cidr: 10.244.0.0/16 }
      - { direction: egress, protocol: any }
  - name: client
    rules:
      - { direction: egress, protocol: tcp }
      - { direction: egress, protocol: udp, ports: "53-54", remote_cidr: 10.244.1.0/24 }
  - name: db
    rules:
      - { direction: ingress, protocol: tcp, ports: "5432", remote_group: web }
pods:
  - name: web-0
    node: node-a
    interfaces:
      - network: std
        host_interface: vweb
        ip: 10.244.1.2
        mac: "02:00:00:00:01:02"
        security_groups: [web]
        allowed_address_pairs: [{ ip: 10.244.1.100, mac: "02:00:00:00:01:64" }, { ip: 10.244.7.0/24 }]
  - name: client-0
    node: node-a
    interfaces:
      - { network: std, host_interface: vcli, ip: 10.244.1.3, mac: "02:00:00:00:01:03", security_groups: [client] }
  - name: open-0
    node: node-a
    interfaces:
      - { network: std, host_interface: vopen, ip: 10.244.1.4, mac: "02:00:00:00:01:04", security_groups: [web], port_security: false }
  - name: plain-0
    node: node-a
    interfaces:
      - { network: std, host_interface: vplain, ip: 10.244.1.5, mac: "02:00:00:00:01:05" }
  - name: db-0
    node: node-b
    interfaces:
      - { network: std, host_interface: vdb, ip: 10.244.2.2, mac: "02:00:00:00:02:02", security_groups: [db] }
  - name: cli-1
    node: node-b
    interfaces:
      - { network: std, host_interface: vcli1, ip: 10.244.2.3, mac: "02:00:00:00:02:03", security_groups: [client] }
"#;

const WEB: ([u8; 6], [u8; 4]) = ([2, 0, 0, 0, 1, 2], [10, 244, 1, 2]);
const CLIENT: ([u8; 6], [u8; 4]) = ([2, 0, 0, 0, 1, 3], [10, 244, 1, 3]);
const OPEN: ([u8; 6], [u8; 4]) = ([2, 0, 0, 0, 1, 4], [10, 244, 1, 4]);
const PLAIN: ([u8; 6], [u8; 4]) = ([2, 0, 0, 0, 1, 5], [10, 244, 1, 5]);
const DB: ([u8; 6], [u8; 4]) = ([2, 0, 0, 0, 2, 2], [10, 244, 2, 2]);
const CLI1: ([u8; 6], [u8; 4]) = ([2, 0, 0, 0, 2, 3], [10, 244, 2, 3]);
const VIP_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x64];
const NODE_A: ([u8; 6], [u8; 4]) = ([0x52, 0x54, 0, 0, 0, 1], [192, 168, 77, 1]);
const NODE_B: ([u8; 6], [u8; 4]) = ([0x52, 0x54, 0, 0, 0, 2], [192, 168, 77, 2]);

type Pod = ([u8; 6], [u8; 4]);

fn tcp(from: Pod, to: Pod, sport: u16, dport: u16, flags: Flags) -> Vec<u8> {
    FrameBuilder::tcp(from.0, to.0, from.1, to.1, sport, dport, flags, b"")
}

fn udp(from: Pod, to: Pod, sport: u16, dport: u16) -> Vec<u8> {
    FrameBuilder::udp(from.0, to.0, from.1, to.1, sport, dport, b"payload")
}

fn ping(from: Pod, to: Pod, id: u16) -> Vec<u8> {
    FrameBuilder::icmp_echo_request(from.0, to.0, from.1, to.1, id, 1)
}

fn pong(from: Pod, to: Pod, id: u16) -> Vec<u8> {
    FrameBuilder::icmp_echo_reply(from.0, to.0, from.1, to.1, id, 1)
}

/// ICMP port unreachable from `from` to `to` quoting `offending` (a frame `to` sent).
fn unreachable(from: Pod, to: Pod, offending: &[u8]) -> Vec<u8> {
    let quoted = &offending[14..14 + 28];
    let repr = icmp::Repr::Other {
        msg_type: 3,
        code: 3,
        rest_of_header: [0; 4],
        data: quoted,
    };
    FrameBuilder::icmp(from.0, to.0, from.1, to.1, repr)
}

/// VXLAN from node B carrying `inner`.
fn from_node_b(inner: &[u8]) -> Vec<u8> {
    FrameBuilder::vxlan(NODE_B.0, NODE_A.0, NODE_B.1, NODE_A.1, 51000, 100, inner)
}

fn allowed(description: &'static str, input: Vec<u8>, counter: Counter) -> Fixture {
    Fixture {
        description,
        input,
        action: XdpAction::Redirect,
        output: ExpectedOutput::Ignored,
        counter: ExpectedCounter::Event(counter),
    }
}

fn dropped(description: &'static str, input: Vec<u8>, reason: DropReason) -> Fixture {
    Fixture {
        description,
        input,
        action: XdpAction::Drop,
        output: ExpectedOutput::Ignored,
        counter: ExpectedCounter::Drop(reason),
    }
}

/// Node A's namespace: a veth per pod interface of node A, and an underlay towards node B.
fn node_a() -> FixtureNode {
    FixtureNode::new("sec", &["vweb", "vcli", "vopen", "vplain"], NODE_A, NODE_B)
}

/// Compiles `state` for node A with its real interfaces, its plane's datapath the one of
/// `hook` (`xdp` for XDP, so `from_underlay` carries the plane itself rather than handing it
/// to tc).
fn compile(hook: Hook, node: &FixtureNode, state: &str) -> NodePlan {
    let datapath = match hook {
        Hook::Xdp => "xdp",
        Hook::Tc => "tc",
    };
    let state = state.replace(
        "mtu: 1450 }",
        &format!("mtu: 1450, datapath: {datapath} }}"),
    );
    node.compile(&ClusterState::from_yaml_str(&state).unwrap(), "node-a")
}

/// The reference model's topology of node A in `state`, on the node's devices.
fn topology(node: &FixtureNode, state: &str) -> Topology {
    node.topology(&ClusterState::from_yaml_str(state).unwrap(), "node-a")
}

/// A runner of `program` on `hook` (conntrack table of `entries`) holding `plan`, checking
/// rows against a model of `model` too.
fn runner(
    program: XdpProgram,
    hook: Hook,
    entries: u32,
    plan: &NodePlan,
    model: Topology,
) -> FixtureRunner {
    let mut runner =
        FixtureRunner::on_hook(program, hook, entries).with_model(NodeModel::new(model), NODE_B.0);
    datapath::write_plan(runner.ebpf_mut(), plan).unwrap();
    runner
}

fn conntrack(runner: &mut FixtureRunner) -> Vec<(CtKey, CtEntry)> {
    let map = runner.ebpf_mut().map(names::CONNTRACK).unwrap();
    let table = BpfHashMap::<_, CtKey, CtEntry>::try_from(map).unwrap();
    table.iter().map(Result::unwrap).collect()
}

#[test]
fn rules_replies_related_and_spoofing() {
    require_root();
    for hook in Hook::ALL {
        rules_replies_related_and_spoofing_on(hook);
    }
}

fn rules_replies_related_and_spoofing_on(hook: Hook) {
    let node = node_a();
    let plan = compile(hook, &node, STATE);
    let model = topology(&node, STATE);
    let at = |name: &str| node.ifindex[name];
    node.ns
        .run_in(|| {
            let mut runner =
                runner(XdpProgram::FromPod, hook, DEFAULT_CONNTRACK_ENTRIES, &plan, model);
            let web_syn = tcp(CLIENT, WEB, 40000, 80, Flags::SYN);

            runner.set_ingress_ifindex(at("vcli"));
            runner.check_all(&[
                allowed("client -> web tcp 80 (egress tcp anywhere, ingress from group client)", web_syn.clone(), Counter::PodRedirectedLocal),
                dropped("client -> web tcp 81: no ingress rule", tcp(CLIENT, WEB, 40001, 81, Flags::SYN), DropReason::PolicyDeniedIngress),
                dropped("client -> db-0 (remote) udp 53: egress udp only to 10.244.1.0/24", udp(CLIENT, DB, 5000, 53), DropReason::PolicyDeniedEgress),
                allowed("client -> plain udp 54 (inside 10.244.1.0/24, port range 53-54)", udp(CLIENT, PLAIN, 5000, 54), Counter::PodRedirectedLocal),
                dropped("client -> plain udp 55: outside the port range", udp(CLIENT, PLAIN, 5000, 55), DropReason::PolicyDeniedEgress),
                dropped("client pings plain: no egress icmp rule", ping(CLIENT, PLAIN, 9), DropReason::PolicyDeniedEgress),
                allowed("client -> db-0 tcp 5432 (egress tcp; db is on node B)", tcp(CLIENT, DB, 40002, 5432, Flags::SYN), Counter::PodEncapsulated),
            ]);
            let entries = conntrack(&mut runner);
            let (key, entry) = entries
                .iter()
                .find(|(key, _)| key.port_lo == 80 || key.port_hi == 80)
                .expect("an entry for client -> web");
            assert_eq!((key.ip_lo, key.ip_hi, key.protocol), (WEB.1, CLIENT.1, 6));
            assert_eq!((entry.state, entry.origin), (ct_state::TCP_SYN_SENT, ct_origin::HI));
            // Allowed connections on a filtered side are tracked: 3 so far.
            assert_eq!(entries.len(), 3, "{entries:?}");

            runner.set_ingress_ifindex(at("vweb"));
            runner.check_all(&[
                allowed("web -> client: the SYN-ACK of the tracked connection (client has no ingress rule)", tcp(WEB, CLIENT, 80, 40000, Flags::SYN | Flags::ACK), Counter::PodRedirectedLocal),
                dropped("web -> client tcp 22: a new connection, client has no ingress rule", tcp(WEB, CLIENT, 40005, 22, Flags::SYN), DropReason::PolicyDeniedIngress),
                allowed("web -> client: ICMP error quoting the tracked connection (RELATED)", unreachable(WEB, CLIENT, &web_syn), Counter::PodRedirectedLocal),
                dropped("web -> client: ICMP error quoting an unknown connection", unreachable(WEB, CLIENT, &tcp(CLIENT, WEB, 1, 2, Flags::SYN)), DropReason::PolicyDeniedIngress),
                dropped("web spoofs its source address", tcp(([2, 0, 0, 0, 1, 2], [10, 244, 1, 9]), PLAIN, 1, 2, Flags::SYN), DropReason::SpoofedIp),
                dropped("web spoofs its MAC", tcp(([2, 0, 0, 0, 9, 9], WEB.1), PLAIN, 1, 2, Flags::SYN), DropReason::SpoofedMac),
                allowed("web sends from its VIP with the VIP's MAC (allowed address pair)", udp((VIP_MAC, [10, 244, 1, 100]), PLAIN, 7, 7), Counter::PodRedirectedLocal),
                dropped("web sends from its VIP with its own MAC", udp((WEB.0, [10, 244, 1, 100]), PLAIN, 7, 7), DropReason::SpoofedMac),
                allowed("web sends from inside its /24 pair (no MAC: its own)", udp((WEB.0, [10, 244, 7, 9]), PLAIN, 7, 7), Counter::PodRedirectedLocal),
                dropped("ARP claiming another pod's address", FrameBuilder::arp_request(WEB.0, PLAIN.1, CLIENT.1), DropReason::SpoofedArp),
                dropped("ARP whose sender MAC is not the frame's", FrameBuilder::arp_request(WEB.0, WEB.1, CLIENT.1).with_byte(22, 0x66), DropReason::SpoofedArp),
                allowed("ARP probe (sender 0.0.0.0) from its own MAC: answered", FrameBuilder::arp_request(WEB.0, [0; 4], CLIENT.1), Counter::PodArpReplied),
                allowed("ARP for a pod from its own address: answered", FrameBuilder::arp_request(WEB.0, WEB.1, CLIENT.1), Counter::PodArpReplied),
            ]);

            runner.set_ingress_ifindex(at("vplain"));
            runner.check_all(&[
                allowed("plain pings web (ingress icmp from 10.244.0.0/16)", ping(PLAIN, WEB, 77), Counter::PodRedirectedLocal),
                dropped("plain -> web tcp 80: plain is not in group client", tcp(PLAIN, WEB, 3, 80, Flags::SYN), DropReason::PolicyDeniedIngress),
                allowed("plain -> open tcp 9999: open has port security off, so no filtering", tcp(PLAIN, OPEN, 3, 9999, Flags::SYN), Counter::PodRedirectedLocal),
            ]);
            runner.set_ingress_ifindex(at("vweb"));
            runner.check_all(&[allowed("web answers the ping (tracked by echo id)", pong(WEB, PLAIN, 77), Counter::PodRedirectedLocal)]);

            runner.set_ingress_ifindex(at("vopen"));
            runner.check_all(&[allowed(
                "open (port security off) sends from any address",
                udp(([2, 0, 0, 0, 7, 7], [10, 244, 1, 77]), PLAIN, 1, 2),
                Counter::PodRedirectedLocal,
            )]);

            // Over VXLAN: the ingress rules of web hold for pods on node B too.
            runner.set_program(XdpProgram::FromUnderlay);
            runner.set_ingress_ifindex(at("eth0"));
            runner.check_all(&[
                allowed("cli-1 (node B, group client) -> web tcp 80", from_node_b(&tcp(CLI1, WEB, 41000, 80, Flags::SYN)), Counter::UnderlayDecapsulated),
                dropped("db-0 (node B) -> web tcp 80", from_node_b(&tcp(DB, WEB, 41001, 80, Flags::SYN)), DropReason::PolicyDeniedIngress),
                allowed("db-0 answers client's tcp 5432 (tracked)", from_node_b(&tcp(DB, CLIENT, 5432, 40002, Flags::SYN | Flags::ACK)), Counter::UnderlayDecapsulated),
                dropped("db-0 -> client tcp 5433: new, client has no ingress rule", from_node_b(&tcp(DB, CLIENT, 5433, 40002, Flags::SYN)), DropReason::PolicyDeniedIngress),
            ]);
        })
        .unwrap();
}

#[test]
fn rule_and_membership_changes_cut_established_connections() {
    require_root();
    for hook in Hook::ALL {
        rule_and_membership_changes_cut_established_connections_on(hook);
    }
}

fn rule_and_membership_changes_cut_established_connections_on(hook: Hook) {
    let node = node_a();
    let plan = compile(hook, &node, STATE);
    // Without web's tcp 80 rule; and cli-1 no longer in group client.
    let without_rule_state = STATE.replace(
        r#"      - { direction: ingress, protocol: tcp, ports: "80", remote_group: client }
"#,
        "",
    );
    let without_member_state = STATE.replace(
        "ip: 10.244.2.3, mac: \"02:00:00:00:02:03\", security_groups: [client]",
        "ip: 10.244.2.3, mac: \"02:00:00:00:02:03\"",
    );
    let without_rule = compile(hook, &node, &without_rule_state);
    let without_member = compile(hook, &node, &without_member_state);
    assert_ne!(plan, without_rule);
    assert_ne!(plan, without_member);
    let at = |name: &str| node.ifindex[name];
    node.ns
        .run_in(|| {
            let mut runner = runner(
                XdpProgram::FromPod,
                hook,
                DEFAULT_CONNTRACK_ENTRIES,
                &plan,
                topology(&node, STATE),
            );
            runner.set_ingress_ifindex(at("vcli"));
            runner.check_all(&[
                allowed(
                    "client -> web tcp 80",
                    tcp(CLIENT, WEB, 40000, 80, Flags::SYN),
                    Counter::PodRedirectedLocal,
                ),
                allowed(
                    "client -> web again (tracked)",
                    tcp(CLIENT, WEB, 40000, 80, Flags::ACK),
                    Counter::PodRedirectedLocal,
                ),
            ]);
            runner.set_program(XdpProgram::FromUnderlay);
            runner.set_ingress_ifindex(at("eth0"));
            runner.check_all(&[allowed(
                "cli-1 -> web tcp 80",
                from_node_b(&tcp(CLI1, WEB, 41000, 80, Flags::SYN)),
                Counter::UnderlayDecapsulated,
            )]);

            // The rule goes: both connections were allowed by it and are cut, in both directions.
            datapath::apply_plan(runner.ebpf_mut(), Some(&plan), &without_rule, 2).unwrap();
            runner
                .model_mut()
                .set_policy(topology(&node, &without_rule_state));
            runner.check_all(&[dropped(
                "cli-1 -> web after the rule is removed",
                from_node_b(&tcp(CLI1, WEB, 41000, 80, Flags::ACK)),
                DropReason::PolicyDeniedIngress,
            )]);
            runner.set_program(XdpProgram::FromPod);
            runner.set_ingress_ifindex(at("vweb"));
            runner.check_all(&[dropped(
                "web's reply to client after the rule is removed",
                tcp(WEB, CLIENT, 80, 40000, Flags::ACK),
                DropReason::PolicyDeniedIngress,
            )]);
            assert!(
                conntrack(&mut runner)
                    .iter()
                    .all(|(key, _)| key.port_lo != 80 && key.port_hi != 80),
                "entries of cut connections are gone"
            );

            // The rule comes back; then cli-1 leaves group client: its connection is cut, client-0's is not.
            datapath::apply_plan(runner.ebpf_mut(), Some(&without_rule), &plan, 3).unwrap();
            runner.model_mut().set_policy(topology(&node, STATE));
            runner.set_ingress_ifindex(at("vcli"));
            runner.check_all(&[allowed(
                "client -> web tcp 80, again",
                tcp(CLIENT, WEB, 40010, 80, Flags::SYN),
                Counter::PodRedirectedLocal,
            )]);
            runner.set_program(XdpProgram::FromUnderlay);
            runner.set_ingress_ifindex(at("eth0"));
            runner.check_all(&[allowed(
                "cli-1 -> web tcp 80, again",
                from_node_b(&tcp(CLI1, WEB, 41010, 80, Flags::SYN)),
                Counter::UnderlayDecapsulated,
            )]);
            datapath::apply_plan(runner.ebpf_mut(), Some(&plan), &without_member, 4).unwrap();
            runner
                .model_mut()
                .set_policy(topology(&node, &without_member_state));
            runner.check_all(&[dropped(
                "cli-1 -> web once cli-1 left group client",
                from_node_b(&tcp(CLI1, WEB, 41010, 80, Flags::ACK)),
                DropReason::PolicyDeniedIngress,
            )]);
            runner.set_program(XdpProgram::FromPod);
            runner.set_ingress_ifindex(at("vcli"));
            runner.check_all(&[allowed(
                "client-0's connection still stands",
                tcp(CLIENT, WEB, 40010, 80, Flags::ACK),
                Counter::PodRedirectedLocal,
            )]);
        })
        .unwrap();
}

#[test]
fn a_full_table_refuses_new_connections_and_keeps_the_old() {
    require_root();
    for hook in Hook::ALL {
        a_full_table_refuses_new_connections_and_keeps_the_old_on(hook);
    }
}

fn a_full_table_refuses_new_connections_and_keeps_the_old_on(hook: Hook) {
    let node = node_a();
    let mut plan = compile(hook, &node, STATE);
    plan.conntrack_entries = 1024;
    // The kernel's table: the rows' one connection and 1,023 others filled in by hand, which
    // no row touches. The model's: the rows' one connection, in a table of one entry; full at
    // the same row.
    let mut model = topology(&node, STATE);
    model.conntrack.max_entries = 1;
    let at = |name: &str| node.ifindex[name];
    node.ns
        .run_in(|| {
            let mut runner = runner(
                XdpProgram::FromPod,
                hook,
                plan.conntrack_entries,
                &plan,
                model,
            );
            runner.set_ingress_ifindex(at("vcli"));
            runner.check_all(&[allowed(
                "client -> web tcp 80",
                tcp(CLIENT, WEB, 40000, 80, Flags::SYN),
                Counter::PodRedirectedLocal,
            )]);
            // Fill the rest of the table with live entries.
            {
                let map = runner.ebpf_mut().map_mut(names::CONNTRACK).unwrap();
                let mut table = BpfHashMap::<_, CtKey, CtEntry>::try_from(map).unwrap();
                let now = ctpath_control::conntrack::monotonic_ns();
                for i in 0..1023u16 {
                    let key = CtKey {
                        vni: 100,
                        ip_lo: [10, 9, 0, 1],
                        ip_hi: [10, 9, 0, 2],
                        port_lo: i,
                        port_hi: 1,
                        protocol: 17,
                        _pad: [0; 3],
                    };
                    let entry = CtEntry {
                        last_seen_ns: now,
                        generation: 1,
                        egress_rule: 0,
                        ingress_rule: 0,
                        state: 0,
                        origin: 0,
                        _pad: [0; 2],
                    };
                    table.insert(key, entry, 0).unwrap();
                }
            }
            runner.check_all(&[
                dropped(
                    "a new connection when the table is full",
                    tcp(CLIENT, WEB, 40001, 80, Flags::SYN),
                    DropReason::ConntrackFull,
                ),
                allowed(
                    "the established connection goes on",
                    tcp(CLIENT, WEB, 40000, 80, Flags::ACK),
                    Counter::PodRedirectedLocal,
                ),
            ]);
            runner.set_ingress_ifindex(at("vplain"));
            runner.check_all(&[allowed(
                "unfiltered traffic needs no entry",
                udp(PLAIN, OPEN, 1, 2),
                Counter::PodRedirectedLocal,
            )]);
        })
        .unwrap();
}
