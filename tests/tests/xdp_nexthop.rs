//! The per-packet cost of the XDP path (issue #9): the next hop towards a remote VTEP from the
//! plan's cache (`NEXT_HOPS`) rather than `bpf_fib_lookup`, with the lookup as the fallback while
//! no entry is cached; and the timing probe that measures `from_pod` (encapsulation, conntrack
//! hit) and `from_underlay` (decapsulation to a pod, conntrack hit) through `BPF_PROG_TEST_RUN`.
//!
//! Node A runs in a namespace of its own (a real veth per pod interface, an underlay `eth0` with
//! node B as a permanent neighbour); its plan is compiled from the state below by the agent's
//! compiler. Client-0 (node A) is filtered (egress tcp), so every packet goes through conntrack.

use std::collections::{BTreeMap, BTreeSet};

use aya::maps::DevMapHash;
use ctpath_common::{
    flow::{flow_hash, vxlan_source_port},
    maps::{names, NextHopEntry},
    DropReason,
};
use ctpath_control::{
    compile::NodePlan,
    datapath::{self, XdpProgram},
    netlink::Rtnetlink,
    nexthop::NextHops,
    state::ClusterState,
};
use ctpath_dataplane::{testing::FrameBuilder, wire::tcp::Flags};
use ctpath_testbed::{
    fixture::{ExpectedCounter, FixtureNode, FixtureRunner, Hook, XdpAction},
    require_root,
};

const STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450, datapath: xdp }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups:
  - name: client
    rules:
      - { direction: egress, protocol: tcp }
pods:
  - name: client-0
    node: node-a
    interfaces:
      - { network: std, host_interface: vcli, ip: 10.244.1.3, mac: "02:00:00:00:01:03", security_groups: [client] }
  - name: db-0
    node: node-b
    interfaces:
      - { network: std, host_interface: vdb, ip: 10.244.2.2, mac: "02:00:00:00:02:02" }
"#;

type Pod = ([u8; 6], [u8; 4]);
const CLIENT: Pod = ([2, 0, 0, 0, 1, 3], [10, 244, 1, 3]);
const DB: Pod = ([2, 0, 0, 0, 2, 2], [10, 244, 2, 2]);
const NODE_A: Pod = ([0x52, 0x54, 0, 0, 0, 1], [192, 168, 77, 1]);
const NODE_B: Pod = ([0x52, 0x54, 0, 0, 0, 2], [192, 168, 77, 2]);
const VNI: u32 = 100;

fn tcp(from: Pod, to: Pod, sport: u16, dport: u16, flags: Flags) -> Vec<u8> {
    FrameBuilder::tcp(from.0, to.0, from.1, to.1, sport, dport, flags, b"")
}

/// VXLAN from node B carrying `inner`.
fn from_node_b(inner: &[u8]) -> Vec<u8> {
    FrameBuilder::vxlan(NODE_B.0, NODE_A.0, NODE_B.1, NODE_A.1, 51000, VNI, inner)
}

/// What node A sends node B for `inner` (a frame of client-0 to db-0), the outer destination
/// MAC `next_hop_mac`.
fn to_node_b(inner: &[u8], next_hop_mac: [u8; 6], sport: u16, dport: u16) -> Vec<u8> {
    let port = vxlan_source_port(flow_hash(CLIENT.1, DB.1, 6, sport, dport));
    FrameBuilder::vxlan(NODE_A.0, next_hop_mac, NODE_A.1, NODE_B.1, port, VNI, inner)
}

/// `NEXT_HOPS` with node B's VTEP behind `dst_mac` out of `ifindex`.
fn cache(ifindex: u32, dst_mac: [u8; 6]) -> BTreeMap<[u8; 4], NextHopEntry> {
    BTreeMap::from([(
        NODE_B.1,
        NextHopEntry {
            ifindex,
            src_mac: NODE_A.0,
            dst_mac,
        },
    )])
}

fn node_a() -> FixtureNode {
    FixtureNode::new("nhop", &["vcli"], NODE_A, NODE_B)
}

fn compile(node: &FixtureNode) -> NodePlan {
    node.compile(&ClusterState::from_yaml_str(STATE).unwrap(), "node-a")
}

/// Puts `plan`'s devices into `DEVICES` (`on`) or takes them out (`from_pod` and
/// `from_underlay` then redirect with `bpf_redirect`).
fn set_devices(runner: &mut FixtureRunner, plan: &NodePlan, on: bool) {
    let map = runner.ebpf_mut().map_mut(names::DEVICES).unwrap();
    let mut devmap = DevMapHash::try_from(map).unwrap();
    for ifindex in datapath::devices(plan) {
        if on {
            devmap.insert(ifindex, ifindex, None, 0).unwrap();
        } else {
            devmap.remove(ifindex).unwrap();
        }
    }
}

/// The median of `runs` single runs (`repeat` 1: a run that encapsulates or decapsulates
/// leaves the packet changed for the next repetition of the same test run, so each run gets
/// the frame afresh), in nanoseconds. Includes the test run's own overhead (one clock read and
/// the bottom-half toggling around the program), the same for every program.
fn median_ns(runner: &mut FixtureRunner, frame: &[u8], runs: usize) -> u128 {
    let mut times: Vec<u128> = (0..runs)
        .map(|_| runner.time(frame, 1).as_nanos())
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

/// Prints the cost of `from_pod` (encapsulation to node B, conntrack hit) and `from_underlay`
/// (decapsulation to client-0, conntrack hit), as medians of single test runs, for several
/// rounds. Run with `cargo test -p ctpath-testbed --test xdp_nexthop -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check: run it by name"]
fn per_packet_cost() {
    require_root();
    let node = node_a();
    let plan = compile(&node);
    let (vcli, eth0) = (node.ifindex["vcli"], node.ifindex["eth0"]);
    let rounds: usize = std::env::var("CTPATH_TIMING_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let runs: usize = std::env::var("CTPATH_TIMING_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    node.ns
        .run_in(|| {
            let mut runner = FixtureRunner::new_on(XdpProgram::FromPod, Hook::Xdp);
            datapath::write_plan(runner.ebpf_mut(), &plan).unwrap();
            runner.set_ingress_ifindex(vcli);
            let syn = tcp(CLIENT, DB, 40000, 5432, Flags::SYN);
            let ack = tcp(CLIENT, DB, 40000, 5432, Flags::ACK);
            assert_eq!(runner.run(&syn).action, Some(XdpAction::Redirect));
            assert_eq!(runner.run(&ack).action, Some(XdpAction::Redirect));
            let reply = from_node_b(&tcp(DB, CLIENT, 5432, 40000, Flags::ACK));
            runner.set_program(XdpProgram::FromUnderlay);
            runner.set_ingress_ifindex(eth0);
            assert_eq!(runner.run(&reply).action, Some(XdpAction::Redirect));
            // Per round, medians of: from_pod with the FIB lookup, from_pod with the cached
            // next hop, from_underlay; each with the devices in `DEVICES` (bpf_redirect_map)
            // and without (bpf_redirect).
            let mut rows: BTreeMap<&str, Vec<u128>> = BTreeMap::new();
            for _ in 0..rounds {
                for devmap in [true, false] {
                    set_devices(&mut runner, &plan, devmap);
                    let tag =
                        |name: &'static str, long: &'static str| if devmap { name } else { long };
                    runner.set_program(XdpProgram::FromPod);
                    runner.set_ingress_ifindex(vcli);
                    datapath::write_next_hops(runner.ebpf_mut(), &BTreeMap::new()).unwrap();
                    let t = median_ns(&mut runner, &ack, runs);
                    rows.entry(tag(
                        "1 from_pod fib, devmap",
                        "4 from_pod fib, bpf_redirect",
                    ))
                    .or_default()
                    .push(t);
                    datapath::write_next_hops(runner.ebpf_mut(), &cache(eth0, NODE_B.0)).unwrap();
                    let t = median_ns(&mut runner, &ack, runs);
                    rows.entry(tag(
                        "2 from_pod cached, devmap",
                        "5 from_pod cached, bpf_redirect",
                    ))
                    .or_default()
                    .push(t);
                    runner.set_program(XdpProgram::FromUnderlay);
                    runner.set_ingress_ifindex(eth0);
                    let t = median_ns(&mut runner, &reply, runs);
                    rows.entry(tag(
                        "3 from_underlay, devmap",
                        "6 from_underlay, bpf_redirect",
                    ))
                    .or_default()
                    .push(t);
                }
            }
            println!(
                "frames: from_pod {} B TCP ACK (conntrack hit), from_underlay {} B",
                ack.len(),
                reply.len()
            );
            for (name, times) in rows {
                let mut sorted = times.clone();
                sorted.sort_unstable();
                println!(
                    "{name}: median of rounds {} ns, rounds {times:?}",
                    sorted[sorted.len() / 2]
                );
            }
        })
        .unwrap();
}

#[test]
fn encapsulates_with_the_fib_next_hop() {
    require_root();
    let node = node_a();
    let plan = compile(&node);
    let vcli = node.ifindex["vcli"];
    node.ns
        .run_in(|| {
            for hook in Hook::ALL {
                let mut runner = FixtureRunner::new_on(XdpProgram::FromPod, hook);
                datapath::write_plan(runner.ebpf_mut(), &plan).unwrap();
                runner.set_ingress_ifindex(vcli);
                let syn = tcp(CLIENT, DB, 40000, 5432, Flags::SYN);
                let outcome = runner.run(&syn);
                assert_eq!(outcome.action, Some(XdpAction::Redirect), "{hook:?}");
                assert_eq!(
                    outcome.output,
                    to_node_b(&syn, NODE_B.0, 40000, 5432),
                    "{hook:?}"
                );
            }
        })
        .unwrap();
}

/// A MAC no neighbour entry has: output with it came from `NEXT_HOPS`, not the FIB.
const CACHED_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x99];

#[test]
fn encapsulates_with_the_cached_next_hop_and_falls_back_to_the_fib() {
    require_root();
    let node = node_a();
    let plan = compile(&node);
    let (vcli, eth0) = (node.ifindex["vcli"], node.ifindex["eth0"]);
    let syn = tcp(CLIENT, DB, 40000, 5432, Flags::SYN);
    let ack = tcp(CLIENT, DB, 40000, 5432, Flags::ACK);
    let check = |runner: &mut FixtureRunner, frame: &[u8], mac: Option<[u8; 6]>| {
        let outcome = runner.run(frame);
        match mac {
            Some(mac) => {
                assert_eq!(outcome.action, Some(XdpAction::Redirect));
                assert_eq!(outcome.output, to_node_b(frame, mac, 40000, 5432));
            }
            None => assert_eq!(outcome.action, Some(XdpAction::Drop)),
        }
    };
    for hook in Hook::ALL {
        let mut runner = node
            .ns
            .run_in(|| {
                let mut runner = FixtureRunner::new_on(XdpProgram::FromPod, hook);
                datapath::write_plan(runner.ebpf_mut(), &plan).unwrap();
                runner.set_ingress_ifindex(vcli);
                datapath::write_next_hops(runner.ebpf_mut(), &cache(eth0, CACHED_MAC)).unwrap();
                check(&mut runner, &syn, Some(CACHED_MAC));
                check(&mut runner, &ack, Some(CACHED_MAC));
                runner
            })
            .unwrap();
        // Without the neighbour entry, the cache still carries the flow ...
        node.ns
            .ip(&["neigh", "del", "192.168.77.2", "dev", "eth0"])
            .unwrap();
        runner = node
            .ns
            .run_in(|| {
                check(&mut runner, &ack, Some(CACHED_MAC));
                // ... and without either, the FIB lookup finds no neighbour: dropped, counted.
                assert_eq!(
                    datapath::write_next_hops(runner.ebpf_mut(), &BTreeMap::new()).unwrap(),
                    1
                );
                let drops = |runner: &FixtureRunner| {
                    runner
                        .counters()
                        .get(&ExpectedCounter::Drop(DropReason::NoNeighbor))
                        .map_or(0, |tally| tally.packets)
                };
                let before = drops(&runner);
                check(&mut runner, &ack, None);
                assert_eq!(drops(&runner), before + 1);
                runner
            })
            .unwrap();
        // With the neighbour back and no cache entry: the FIB's next hop, as before the cache.
        node.ns
            .ip(&[
                "neigh",
                "add",
                "192.168.77.2",
                "lladdr",
                "52:54:00:00:00:02",
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])
            .unwrap();
        node.ns
            .run_in(|| check(&mut runner, &ack, Some(NODE_B.0)))
            .unwrap();
    }
}

#[test]
fn the_agents_resolution_fills_the_cache_and_the_devices() {
    require_root();
    let node = node_a();
    let plan = compile(&node);
    let (vcli, eth0) = (node.ifindex["vcli"], node.ifindex["eth0"]);
    node.ns
        .run_in(|| {
            let mut netlink = Rtnetlink::open().unwrap();
            let next_hops = NextHops::resolve(&mut netlink, &plan);
            assert_eq!(next_hops.entries(&plan), cache(eth0, NODE_B.0));
            let mut runner = FixtureRunner::new_on(XdpProgram::FromPod, Hook::Xdp);
            datapath::write_plan(runner.ebpf_mut(), &plan).unwrap();
            let entries = next_hops.entries(&plan);
            assert_eq!(
                datapath::write_next_hops(runner.ebpf_mut(), &entries).unwrap(),
                1
            );
            assert_eq!(
                datapath::write_next_hops(runner.ebpf_mut(), &entries).unwrap(),
                0,
                "nothing changed: nothing written"
            );
            let map = runner.ebpf_mut().map(names::DEVICES).unwrap();
            let devices: BTreeSet<u32> = DevMapHash::try_from(map)
                .unwrap()
                .keys()
                .map(Result::unwrap)
                .collect();
            assert_eq!(devices, BTreeSet::from([vcli, eth0]));
            assert_eq!(datapath::devices(&plan), devices);
            runner.set_ingress_ifindex(vcli);
            let syn = tcp(CLIENT, DB, 40000, 5432, Flags::SYN);
            let outcome = runner.run(&syn);
            assert_eq!(outcome.action, Some(XdpAction::Redirect));
            assert_eq!(outcome.output, to_node_b(&syn, NODE_B.0, 40000, 5432));
        })
        .unwrap();
}
