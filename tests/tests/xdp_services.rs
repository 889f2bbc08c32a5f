//! Services in the kernel, through `BPF_PROG_TEST_RUN`, with byte-exact expected output
//! (issue 11): TCP and UDP to a service port (translated to the backend's address and target
//! port), ICMP echo, TCP and UDP to an IP-level service, the replies of a local backend and,
//! over VXLAN, of a remote one (the client sees the virtual IP), hairpin both ways, client-IP
//! affinity, a table change (new connections follow the new table, an established one keeps
//! its backend, a SYN chooses again), the drops (`service_port_unknown`,
//! `service_no_backend`, `service_unsupported`), ARP for a virtual IP, and checksums after
//! the rewrite (TCP, UDP, UDP without a checksum keeps none), ICMP errors about translated
//! connections (a backend's, local and over VXLAN, comes from the service quoting what the
//! client sent; a client's to the virtual IP goes to the backend quoting what the backend
//! sent; one about nothing translated is dropped): every expected frame is built
//! whole by `FrameBuilder`, so its checksums are computed afresh, not updated.
//!
//! Node A runs in a namespace of its own with a real veth per local pod and a permanent
//! neighbour for node B; its plan is compiled from the state below by the agent's compiler
//! (services, Maglev tables, virtual IPs as endpoints). Which backend a connection gets is
//! worked out here from the Maglev table of the service's backends (slot `flow_hash mod
//! 1021`), and client ports are picked so each row reaches the backend it is about. Every row
//! runs on both hooks (the plan's plane on `datapath: xdp` or `tc`) and through the reference
//! model, in table order on its own tables.

use ctpath_common::{
    flow::{flow_hash, vxlan_source_port},
    Counter, DropReason,
};
use ctpath_control::{
    compile::{NodePlan, ROUTER_MAC},
    datapath::{self, XdpProgram},
    state::ClusterState,
};
use ctpath_dataplane::{
    maglev::{BackendId, Maglev},
    model::NodeModel,
    testing::{FrameBuilder, Malform},
    wire::tcp::Flags,
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
      - { direction: ingress, protocol: tcp, ports: "8080" }
      - { direction: ingress, protocol: udp }
      - { direction: ingress, protocol: icmp }
      - { direction: egress, protocol: any }
  - name: client
    rules:
      - { direction: egress, protocol: any }
pods:
  - name: client-0
    node: node-a
    interfaces:
      - { network: std, host_interface: vcli, ip: 10.244.1.3, mac: "02:00:00:00:01:03", security_groups: [client] }
  - name: web-0
    node: node-a
    labels: { app: web }
    interfaces:
      - { network: std, host_interface: vweb0, ip: 10.244.1.2, mac: "02:00:00:00:01:02", security_groups: [web] }
  - name: web-1
    node: node-b
    labels: { app: web }
    interfaces:
      - { network: std, host_interface: vweb1, ip: 10.244.2.2, mac: "02:00:00:00:02:02", security_groups: [web] }
  - name: web-2
    node: node-b
    labels: { app: spare }
    interfaces:
      - { network: std, host_interface: vweb2, ip: 10.244.2.3, mac: "02:00:00:00:02:03", security_groups: [web] }
services:
  - name: web
    network: std
    vip: 10.96.0.10
    ports:
      - { port: 80, protocol: tcp, target_port: 8080 }
      - { port: 53, protocol: udp, target_port: 5353 }
    selector: { app: web }
  - name: ip-level
    network: std
    vip: 10.244.0.53
    all_ports: true
    backends: [{ pod: web-1 }]
  - name: sticky
    network: std
    vip: 10.96.0.12
    all_ports: true
    selector: { app: web }
    session_affinity: client_ip
    affinity_timeout_seconds: 600
  - name: empty
    network: std
    vip: 10.96.0.13
    ports: [{ port: 80, protocol: tcp }]
    selector: { app: none }
"#;

type Pod = ([u8; 6], [u8; 4]);

const CLIENT: Pod = ([2, 0, 0, 0, 1, 3], [10, 244, 1, 3]);
const WEB0: Pod = ([2, 0, 0, 0, 1, 2], [10, 244, 1, 2]);
const WEB1: Pod = ([2, 0, 0, 0, 2, 2], [10, 244, 2, 2]);
const WEB2: Pod = ([2, 0, 0, 0, 2, 3], [10, 244, 2, 3]);
const WEB_VIP: [u8; 4] = [10, 96, 0, 10];
const IP_LEVEL_VIP: [u8; 4] = [10, 244, 0, 53];
const STICKY_VIP: [u8; 4] = [10, 96, 0, 12];
const EMPTY_VIP: [u8; 4] = [10, 96, 0, 13];
const NODE_A: ([u8; 6], [u8; 4]) = ([0x52, 0x54, 0, 0, 0, 1], [192, 168, 77, 1]);
const NODE_B: ([u8; 6], [u8; 4]) = ([0x52, 0x54, 0, 0, 0, 2], [192, 168, 77, 2]);
const VNI: u32 = 100;
const SYN_ACK: Flags = Flags(Flags::SYN.0 | Flags::ACK.0);

/// The backend Maglev gives a new connection from `client` (slot `flow_hash mod 1021` of the
/// table of `backends`).
fn maglev_choice(
    backends: &[Pod],
    client: Pod,
    vip: [u8; 4],
    protocol: u8,
    ports: (u16, u16),
) -> Pod {
    let ids: Vec<BackendId> = backends
        .iter()
        .map(|pod| BackendId(u32::from_be_bytes(pod.1)))
        .collect();
    let table = Maglev::build(&ids, 1021).unwrap();
    let id = table
        .lookup(u64::from(flow_hash(
            client.1, vip, protocol, ports.0, ports.1,
        )))
        .unwrap();
    *backends
        .iter()
        .find(|pod| u32::from_be_bytes(pod.1) == id.0)
        .unwrap()
}

/// The `skip`-th client port from 40,000 on whose connection to `vip:port` Maglev gives to
/// `backend` among `backends`.
fn port_for(
    backends: &[Pod],
    client: Pod,
    vip: [u8; 4],
    protocol: u8,
    port: u16,
    backend: Pod,
    skip: usize,
) -> u16 {
    (40_000..45_000)
        .filter(|sport| maglev_choice(backends, client, vip, protocol, (*sport, port)) == backend)
        .nth(skip)
        .expect("a client port for each backend")
}

fn tcp(
    src: ([u8; 6], [u8; 4]),
    dst: ([u8; 6], [u8; 4]),
    ports: (u16, u16),
    flags: Flags,
) -> Vec<u8> {
    FrameBuilder::tcp(src.0, dst.0, src.1, dst.1, ports.0, ports.1, flags, b"")
}

fn udp(src: ([u8; 6], [u8; 4]), dst: ([u8; 6], [u8; 4]), ports: (u16, u16)) -> Vec<u8> {
    FrameBuilder::udp(src.0, dst.0, src.1, dst.1, ports.0, ports.1, b"query")
}

/// A port unreachable from `src` to `dst` quoting `offending`.
fn icmp_error(src: Pod, dst: Pod, offending: &[u8]) -> Vec<u8> {
    FrameBuilder::icmp_error(src.0, dst.0, src.1, dst.1, 3, 3, offending)
}

/// `frame` (UDP without IP options) with no UDP checksum.
fn unsummed(frame: Vec<u8>) -> Vec<u8> {
    frame.with_byte(40, 0).with_byte(41, 0)
}

/// The client's frame to `vip`, sent to the router MAC (the node answers ARP for it).
fn to_vip(vip: [u8; 4]) -> ([u8; 6], [u8; 4]) {
    (ROUTER_MAC, vip)
}

/// A frame as node A's VXLAN to node B carries `inner`, whose flow (as it leaves) is
/// `(src, dst, protocol, ports)`.
fn encapsulated(
    inner: &[u8],
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    ports: (u16, u16),
) -> Vec<u8> {
    let sport = vxlan_source_port(flow_hash(src, dst, protocol, ports.0, ports.1));
    FrameBuilder::vxlan(NODE_A.0, NODE_B.0, NODE_A.1, NODE_B.1, sport, VNI, inner)
}

/// What node B sends node A: `inner` in VXLAN.
fn from_node_b(inner: &[u8]) -> Vec<u8> {
    FrameBuilder::vxlan(NODE_B.0, NODE_A.0, NODE_B.1, NODE_A.1, 51000, VNI, inner)
}

fn row(description: &'static str, input: Vec<u8>, output: Vec<u8>, counter: Counter) -> Fixture {
    Fixture {
        description,
        input,
        action: XdpAction::Redirect,
        output: ExpectedOutput::Frame(output),
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

fn node_a() -> FixtureNode {
    FixtureNode::new("svc", &["vcli", "vweb0"], NODE_A, NODE_B)
}

/// `state` with its plane on the datapath of `hook`.
fn on_hook(state: &str, hook: Hook) -> ClusterState {
    let datapath = match hook {
        Hook::Xdp => "xdp",
        Hook::Tc => "tc",
    };
    let state = state.replace(
        "mtu: 1450 }",
        &format!("mtu: 1450, datapath: {datapath} }}"),
    );
    ClusterState::from_yaml_str(&state).unwrap()
}

/// A runner on `hook` holding node A's plan of `state`, checking rows against the model of
/// the same state.
fn runner(node: &FixtureNode, hook: Hook, state: &ClusterState) -> (FixtureRunner, NodePlan) {
    let plan = node.compile(state, "node-a");
    let model = NodeModel::new(node.topology(state, "node-a"));
    let mut runner = FixtureRunner::new_on(XdpProgram::FromPod, hook).with_model(model, NODE_B.0);
    datapath::write_plan(runner.ebpf_mut(), &plan).unwrap();
    (runner, plan)
}

#[test]
fn services_translate_replies_come_back_and_tables_change_hitlessly() {
    require_root();
    for hook in Hook::ALL {
        services_on(hook);
    }
}

fn services_on(hook: Hook) {
    let node = node_a();
    let state = on_hook(STATE, hook);
    let at = |name: &str| node.ifindex[name];
    let webs = [WEB0, WEB1];
    // Client ports of connections to the web service's TCP port 80, by backend.
    let to_web0 = port_for(&webs, CLIENT, WEB_VIP, 6, 80, WEB0, 0);
    let to_web1 = port_for(&webs, CLIENT, WEB_VIP, 6, 80, WEB1, 0);
    let udp_to_web0 = port_for(&webs, CLIENT, WEB_VIP, 17, 53, WEB0, 0);
    let unsummed_to_web0 = port_for(&webs, CLIENT, WEB_VIP, 17, 53, WEB0, 1);
    let hairpin = port_for(&webs, WEB0, WEB_VIP, 6, 80, WEB0, 0);
    node.ns
        .run_in(|| {
            let (mut runner, plan) = runner(&node, hook, &state);
            runner.set_ingress_ifindex(at("vcli"));
            let vip = to_vip(WEB_VIP);
            runner.check_all(&[
                row(
                    "ARP for a virtual IP: answered with the router MAC",
                    FrameBuilder::arp_request(CLIENT.0, CLIENT.1, WEB_VIP),
                    FrameBuilder::arp_reply(ROUTER_MAC, WEB_VIP, CLIENT.0, CLIENT.1),
                    Counter::PodArpReplied,
                ),
                row(
                    "TCP SYN to the service's port 80: to web-0 (local) on the target port 8080",
                    tcp(CLIENT, vip, (to_web0, 80), Flags::SYN),
                    tcp((ROUTER_MAC, CLIENT.1), WEB0, (to_web0, 8080), Flags::SYN),
                    Counter::PodRedirectedLocal,
                ),
                row(
                    "TCP SYN to the service's port 80: to web-1 over VXLAN, outer port of the translated flow",
                    tcp(CLIENT, vip, (to_web1, 80), Flags::SYN),
                    encapsulated(
                        &tcp((ROUTER_MAC, CLIENT.1), WEB1, (to_web1, 8080), Flags::SYN),
                        CLIENT.1,
                        WEB1.1,
                        6,
                        (to_web1, 8080),
                    ),
                    Counter::PodEncapsulated,
                ),
                row(
                    "later TCP of the connection to web-0: the same translation",
                    tcp(CLIENT, vip, (to_web0, 80), Flags::ACK),
                    tcp((ROUTER_MAC, CLIENT.1), WEB0, (to_web0, 8080), Flags::ACK),
                    Counter::PodRedirectedLocal,
                ),
                row(
                    "UDP to the service's port 53: to web-0 on 5353, checksum valid",
                    udp(CLIENT, vip, (udp_to_web0, 53)),
                    udp((ROUTER_MAC, CLIENT.1), WEB0, (udp_to_web0, 5353)),
                    Counter::PodRedirectedLocal,
                ),
                row(
                    "UDP without a checksum to the service: keeps none",
                    unsummed(udp(CLIENT, vip, (unsummed_to_web0, 53))),
                    unsummed(udp((ROUTER_MAC, CLIENT.1), WEB0, (unsummed_to_web0, 5353))),
                    Counter::PodRedirectedLocal,
                ),
                row(
                    "ping to an IP-level service: to web-1, identifier kept",
                    FrameBuilder::icmp_echo_request(CLIENT.0, ROUTER_MAC, CLIENT.1, IP_LEVEL_VIP, 7, 1),
                    encapsulated(
                        &FrameBuilder::icmp_echo_request(ROUTER_MAC, WEB1.0, CLIENT.1, WEB1.1, 7, 1),
                        CLIENT.1,
                        WEB1.1,
                        1,
                        (7, 7),
                    ),
                    Counter::PodEncapsulated,
                ),
                row(
                    "TCP to any port of an IP-level service: the same port of web-1",
                    tcp(CLIENT, to_vip(IP_LEVEL_VIP), (41000, 7777), Flags::SYN),
                    encapsulated(
                        &tcp((ROUTER_MAC, CLIENT.1), WEB1, (41000, 7777), Flags::SYN),
                        CLIENT.1,
                        WEB1.1,
                        6,
                        (41000, 7777),
                    ),
                    Counter::PodEncapsulated,
                ),
                row(
                    "UDP to any port of an IP-level service: the same port of web-1",
                    udp(CLIENT, to_vip(IP_LEVEL_VIP), (41001, 9999)),
                    encapsulated(
                        &udp((ROUTER_MAC, CLIENT.1), WEB1, (41001, 9999)),
                        CLIENT.1,
                        WEB1.1,
                        17,
                        (41001, 9999),
                    ),
                    Counter::PodEncapsulated,
                ),
                dropped("UDP to a port the service does not list", udp(CLIENT, vip, (1, 54)), DropReason::ServicePortUnknown),
                dropped(
                    "ping to a service of listed ports",
                    FrameBuilder::icmp_echo_request(CLIENT.0, ROUTER_MAC, CLIENT.1, WEB_VIP, 7, 1),
                    DropReason::ServicePortUnknown,
                ),
                dropped("TCP to a service without backends", tcp(CLIENT, to_vip(EMPTY_VIP), (1, 80), Flags::SYN), DropReason::ServiceNoBackend),
                dropped(
                    "GRE to a service",
                    udp(CLIENT, vip, (1, 53)).with_ipv4_protocol(47),
                    DropReason::ServiceUnsupported,
                ),
                dropped(
                    "an echo reply to an IP-level service",
                    FrameBuilder::icmp_echo_reply(CLIENT.0, ROUTER_MAC, CLIENT.1, IP_LEVEL_VIP, 8, 1),
                    DropReason::ServiceUnsupported,
                ),
            ]);

            // The replies: from the service, to the client.
            runner.set_ingress_ifindex(at("vweb0"));
            let client_at_vcli = (CLIENT.0, CLIENT.1);
            runner.check_all(&[
                row(
                    "web-0's SYN-ACK (local backend): from the service's address and port",
                    tcp(WEB0, client_at_vcli, (8080, to_web0), SYN_ACK),
                    tcp((WEB0.0, WEB_VIP), CLIENT, (80, to_web0), SYN_ACK),
                    Counter::PodRedirectedLocal,
                ),
                row(
                    "web-0's UDP answer: from the service's port 53, checksum valid",
                    udp(WEB0, client_at_vcli, (5353, udp_to_web0)),
                    udp((WEB0.0, WEB_VIP), CLIENT, (53, udp_to_web0)),
                    Counter::PodRedirectedLocal,
                ),
                row(
                    "web-0's UDP answer without a checksum: keeps none",
                    unsummed(udp(WEB0, client_at_vcli, (5353, unsummed_to_web0))),
                    unsummed(udp((WEB0.0, WEB_VIP), CLIENT, (53, unsummed_to_web0))),
                    Counter::PodRedirectedLocal,
                ),
                dropped(
                    "web-0 to the client on no translated connection: a new connection from \
                     web-0 itself, which the client takes none of",
                    tcp(WEB0, client_at_vcli, (8080, 39999), SYN_ACK),
                    DropReason::PolicyDeniedIngress,
                ),
                row(
                    "web-0's port unreachable about the client's UDP: from the service, quoting \
                     what the client sent (quoted UDP checksum updated too)",
                    icmp_error(WEB0, client_at_vcli, &udp((ROUTER_MAC, CLIENT.1), WEB0, (udp_to_web0, 5353))),
                    icmp_error((WEB0.0, WEB_VIP), CLIENT, &udp(CLIENT, vip, (udp_to_web0, 53))),
                    Counter::PodRedirectedLocal,
                ),
                row(
                    "web-0's ICMP error about the client's TCP SYN: from the service, quoting \
                     what the client sent",
                    icmp_error(WEB0, client_at_vcli, &tcp((ROUTER_MAC, CLIENT.1), WEB0, (to_web0, 8080), Flags::SYN)),
                    icmp_error((WEB0.0, WEB_VIP), CLIENT, &tcp(CLIENT, vip, (to_web0, 80), Flags::SYN)),
                    Counter::PodRedirectedLocal,
                ),
                row(
                    "hairpin: web-0 to its own service leaves from the virtual IP",
                    tcp(WEB0, vip, (hairpin, 80), Flags::SYN),
                    tcp((ROUTER_MAC, WEB_VIP), WEB0, (hairpin, 8080), Flags::SYN),
                    Counter::PodRedirectedLocal,
                ),
                row(
                    "hairpin: web-0's answer to the virtual IP comes back from the service",
                    tcp(WEB0, vip, (8080, hairpin), SYN_ACK),
                    tcp((ROUTER_MAC, WEB_VIP), WEB0, (80, hairpin), SYN_ACK),
                    Counter::PodRedirectedLocal,
                ),
            ]);
            runner.set_program(XdpProgram::FromUnderlay);
            runner.set_ingress_ifindex(at("eth0"));
            runner.check_all(&[
                row(
                    "web-1's SYN-ACK over VXLAN (remote backend): from the service",
                    from_node_b(&tcp(WEB1, client_at_vcli, (8080, to_web1), SYN_ACK)),
                    tcp((WEB1.0, WEB_VIP), CLIENT, (80, to_web1), SYN_ACK),
                    Counter::UnderlayDecapsulated,
                ),
                row(
                    "web-1's echo reply over VXLAN: from the IP-level service",
                    from_node_b(&FrameBuilder::icmp_echo_reply(WEB1.0, CLIENT.0, WEB1.1, CLIENT.1, 7, 1)),
                    FrameBuilder::icmp_echo_reply(WEB1.0, CLIENT.0, IP_LEVEL_VIP, CLIENT.1, 7, 1),
                    Counter::UnderlayDecapsulated,
                ),
                row(
                    "web-1's ICMP error over VXLAN about the client's SYN: from the service",
                    from_node_b(&icmp_error(WEB1, client_at_vcli, &tcp((ROUTER_MAC, CLIENT.1), WEB1, (to_web1, 8080), Flags::SYN))),
                    icmp_error((WEB1.0, WEB_VIP), CLIENT, &tcp(CLIENT, vip, (to_web1, 80), Flags::SYN)),
                    Counter::UnderlayDecapsulated,
                ),
                dropped(
                    "VXLAN to a virtual IP: no pod of this node",
                    from_node_b(&tcp(WEB1, to_vip(WEB_VIP), (1, 80), Flags::SYN)),
                    DropReason::UnknownDestination,
                ),
            ]);

            // ICMP errors of the client's, about what came from the service: to the backend.
            runner.set_program(XdpProgram::FromPod);
            runner.set_ingress_ifindex(at("vcli"));
            let from_vip = (WEB0.0, WEB_VIP);
            runner.check_all(&[
                row(
                    "the client's port unreachable about web-0's UDP answer from the service: \
                     to web-0, quoting what web-0 sent",
                    icmp_error(CLIENT, vip, &udp(from_vip, CLIENT, (53, udp_to_web0))),
                    icmp_error((ROUTER_MAC, CLIENT.1), WEB0, &udp(WEB0, CLIENT, (5353, udp_to_web0))),
                    Counter::PodRedirectedLocal,
                ),
                dropped(
                    "an ICMP error to the virtual IP about nothing it translated",
                    icmp_error(CLIENT, vip, &udp(from_vip, CLIENT, (53, 1234))),
                    DropReason::ServiceUnsupported,
                ),
            ]);

            // web-1 leaves the service (its label changes): new connections go to web-0, the
            // established one stays on web-1 until a SYN starts a new one.
            let changed_yaml = with_label(STATE, "vweb1", "web", "gone");
            let changed = on_hook(&changed_yaml, hook);
            assert_eq!(changed.service_backends(&changed.services[0]).len(), 1);
            apply(&mut runner, &node, &plan, &changed, 2);
            runner.set_program(XdpProgram::FromPod);
            runner.set_ingress_ifindex(at("vcli"));
            let new_to_web1 = port_for(&webs, CLIENT, WEB_VIP, 6, 80, WEB1, 1);
            runner.check_all(&[
                row(
                    "established to web-1: keeps its backend after the table change",
                    tcp(CLIENT, vip, (to_web1, 80), Flags::ACK),
                    encapsulated(
                        &tcp((ROUTER_MAC, CLIENT.1), WEB1, (to_web1, 8080), Flags::ACK),
                        CLIENT.1,
                        WEB1.1,
                        6,
                        (to_web1, 8080),
                    ),
                    Counter::PodEncapsulated,
                ),
                row(
                    "a new connection the old table gave web-1: to web-0",
                    tcp(CLIENT, vip, (new_to_web1, 80), Flags::SYN),
                    tcp((ROUTER_MAC, CLIENT.1), WEB0, (new_to_web1, 8080), Flags::SYN),
                    Counter::PodRedirectedLocal,
                ),
                row(
                    "a SYN on the established connection's ports chooses again: web-0",
                    tcp(CLIENT, vip, (to_web1, 80), Flags::SYN),
                    tcp((ROUTER_MAC, CLIENT.1), WEB0, (to_web1, 8080), Flags::SYN),
                    Counter::PodRedirectedLocal,
                ),
            ]);
        })
        .unwrap();
}

#[test]
fn client_ip_affinity_keeps_a_client_on_its_backend() {
    require_root();
    for hook in Hook::ALL {
        let node = node_a();
        let state = on_hook(STATE, hook);
        let webs = [WEB0, WEB1];
        let first = 40_000;
        let chosen = maglev_choice(&webs, CLIENT, STICKY_VIP, 6, (first, 443));
        let other = if chosen == WEB0 { WEB1 } else { WEB0 };
        // A port Maglev alone would give the other backend.
        let second = port_for(&webs, CLIENT, STICKY_VIP, 6, 443, other, 0);
        // Another service port (UDP): placed on its own.
        let udp_port = port_for(&webs, CLIENT, STICKY_VIP, 17, 53, other, 0);
        let delivered = |ports: (u16, u16), to: Pod, flags| {
            let inner = tcp((ROUTER_MAC, CLIENT.1), to, ports, flags);
            if to == WEB0 {
                (inner, Counter::PodRedirectedLocal)
            } else {
                (
                    encapsulated(&inner, CLIENT.1, to.1, 6, ports),
                    Counter::PodEncapsulated,
                )
            }
        };
        let (first_out, first_counter) = delivered((first, 443), chosen, Flags::SYN);
        let (second_out, second_counter) = delivered((second, 443), chosen, Flags::SYN);
        let udp_in = udp(CLIENT, to_vip(STICKY_VIP), (udp_port, 53));
        let udp_inner = udp((ROUTER_MAC, CLIENT.1), other, (udp_port, 53));
        let (udp_out, udp_counter) = if other == WEB0 {
            (udp_inner, Counter::PodRedirectedLocal)
        } else {
            (
                encapsulated(&udp_inner, CLIENT.1, other.1, 17, (udp_port, 53)),
                Counter::PodEncapsulated,
            )
        };
        node.ns
            .run_in(|| {
                let (mut runner, plan) = runner(&node, hook, &state);
                runner.set_ingress_ifindex(node.ifindex["vcli"]);
                runner.check_all(&[
                    row(
                        "the client's first connection: Maglev's backend",
                        tcp(CLIENT, to_vip(STICKY_VIP), (first, 443), Flags::SYN),
                        first_out,
                        first_counter,
                    ),
                    row(
                        "its next one, which Maglev alone would place elsewhere: the same backend",
                        tcp(CLIENT, to_vip(STICKY_VIP), (second, 443), Flags::SYN),
                        second_out,
                        second_counter,
                    ),
                    row(
                        "UDP to another service port: placed on its own",
                        udp_in,
                        udp_out,
                        udp_counter,
                    ),
                ]);

                // web-2 joins the service: the client keeps its backend, still one of the
                // service's, on a port the new table gives another.
                let joined = with_label(STATE, "vweb2", "spare", "web");
                let plan = apply(&mut runner, &node, &plan, &on_hook(&joined, hook), 2);
                let all = [WEB0, WEB1, WEB2];
                let elsewhere = if chosen == WEB0 { WEB2 } else { WEB0 };
                let third = port_for(&all, CLIENT, STICKY_VIP, 6, 443, elsewhere, 0);
                let (third_out, third_counter) = delivered((third, 443), chosen, Flags::SYN);
                runner.check_all(&[row(
                    "after a backend joined: the same backend, on a port the new table gives another",
                    tcp(CLIENT, to_vip(STICKY_VIP), (third, 443), Flags::SYN),
                    third_out,
                    third_counter,
                )]);

                // Its backend leaves the service: the client's next connection follows the
                // new table.
                let (interface, rest) = if chosen == WEB0 {
                    ("vweb0", [WEB1, WEB2])
                } else {
                    ("vweb1", [WEB0, WEB2])
                };
                let left = with_label(&with_label(STATE, "vweb2", "spare", "web"), interface, "web", "gone");
                apply(&mut runner, &node, &plan, &on_hook(&left, hook), 3);
                let fourth = port_for(&rest, CLIENT, STICKY_VIP, 6, 443, rest[1], 0);
                let (fourth_out, fourth_counter) = delivered((fourth, 443), rest[1], Flags::SYN);
                runner.check_all(&[row(
                    "after its backend left: the new table's backend",
                    tcp(CLIENT, to_vip(STICKY_VIP), (fourth, 443), Flags::SYN),
                    fourth_out,
                    fourth_counter,
                )]);
            })
            .unwrap();
    }
}

/// `state` with the pod behind `host_interface` relabelled from `app: from` to `app: to`.
fn with_label(state: &str, host_interface: &str, from: &str, to: &str) -> String {
    let label = |app: &str| {
        format!("labels: {{ app: {app} }}\n    interfaces:\n      - {{ network: std, host_interface: {host_interface},")
    };
    let changed = state.replacen(&label(from), &label(to), 1);
    assert_ne!(
        changed, state,
        "{host_interface} is not labelled app: {from}"
    );
    changed
}

/// Moves the runner's kernel maps and model from `plan` to the plan of `state`, policy
/// generation `generation`, as the agent does; returns the new plan.
fn apply(
    runner: &mut FixtureRunner,
    node: &FixtureNode,
    plan: &NodePlan,
    state: &ClusterState,
    generation: u32,
) -> NodePlan {
    let new_plan = node.compile(state, "node-a");
    datapath::apply_plan(runner.ebpf_mut(), Some(plan), &new_plan, generation).unwrap();
    runner
        .model_mut()
        .set_policy(node.topology(state, "node-a"));
    new_plan
}
