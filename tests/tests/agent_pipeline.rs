//! End to end: how the agent applies a new state, step by step, and what it does on the host
//! besides the datapath's maps. On real agents in network namespaces:
//! - the VTEPs' neighbour entries (rtnetlink, managed and externally learned) follow the state:
//!   a node that leaves has its entry deleted, the others stay; a clean stop deletes them all
//!   and gives the underlay its forwarding setting back;
//! - a state whose programs cannot be attached (a pod interface on an XDP plane is a bridge,
//!   which has no native XDP) is partly applied, then rolled back: the log says what was
//!   applied, what failed and that the last good state is in force again; the maps are as
//!   before it and traffic goes on; the next good state is applied. A new pod's program comes
//!   before the maps (nothing was written when it fails); a plane that moves to XDP fails
//!   after them (the maps are reconciled back);
//! - a rule's hit counters follow it when a new state moves it to another position.
//!
//! Also the netlink module itself against the kernel: an entry made, listed as managed, deleted
//! once; the gateway of a route.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use aya::maps::{HashMap, Map, MapData};
use ctpath_common::maps::{names, Endpoint, EndpointKey, Network};
use ctpath_control::netlink::Rtnetlink;
use ctpath_testbed::{
    cluster::{pod_ip, Cluster, ClusterOptions},
    require_root,
    traffic::udp_echo,
    Netns, Testbed,
};

const PORT: u16 = 5000;

const NETWORKS_AND_GROUPS: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450 }
  - { name: media, vni: 200, cidr: 10.245.0.0/16, gateway: 10.245.0.1, mtu: 1450, datapath: xdp }
security_groups:
  - name: open
    rules:
      - { direction: ingress, protocol: any }
      - { direction: egress, protocol: any }
"#;

const THREE_NODES: &str = r#"
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
  - { name: node-c, underlay_interface: eth0, underlay_ip: 192.168.77.3 }
"#;

const TWO_NODES: &str = r#"
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
"#;

const PODS_A_B: &str = r#"
pods:
  - name: cli-a
    node: node-a
    interfaces:
      - { network: std, host_interface: vclia, ip: 10.244.1.2, mac: "02:00:00:00:01:02", security_groups: [open] }
  - name: srv-b
    node: node-b
    interfaces:
      - { network: std, host_interface: vsrvb, ip: 10.244.2.2, mac: "02:00:00:00:02:02", security_groups: [open] }
"#;

const POD_C: &str = r#"
  - name: srv-c
    node: node-c
    interfaces:
      - { network: std, host_interface: vsrvc, ip: 10.244.3.2, mac: "02:00:00:00:03:02", security_groups: [open] }
"#;

/// A pod interface on the XDP plane whose host interface is a bridge: no native XDP.
const POD_ON_A_BRIDGE: &str = r#"
  - name: bad-a
    node: node-a
    interfaces:
      - { network: media, host_interface: vbada, ip: 10.245.1.9, mac: "02:00:00:00:01:09", security_groups: [open] }
"#;

fn state(nodes: &str, pods: &[&str]) -> String {
    format!("{NETWORKS_AND_GROUPS}{nodes}{}", pods.concat())
}

/// The state with a rule inserted first in group `open`: its other rules move by one.
fn with_rule_inserted(state: &str) -> String {
    let inserted = state.replace(
        "    rules:\n      - { direction: ingress, protocol: any }",
        "    rules:\n      - { direction: ingress, protocol: tcp, ports: \"22\" }\n      - { direction: ingress, protocol: any }",
    );
    assert_ne!(inserted, state);
    inserted
}

/// The managed, externally learned neighbour entries on `ns`'s underlay, as `ip` shows them.
fn managed_vteps(ns: &Netns) -> Vec<Ipv4Addr> {
    let output = ns.ip(&["neigh", "show", "dev", "eth0"]).unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains("managed") && line.contains("extern_learn"))
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect()
}

fn forwarding(ns: &Netns) -> String {
    let output = ns
        .exec(&["cat", "/proc/sys/net/ipv4/conf/eth0/forwarding"])
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn echo(cluster: &Cluster, client: &str, server: &str) -> u32 {
    let server_ip = pod_ip(&cluster.state, server, "std");
    udp_echo(
        cluster.pod(client).ns(),
        cluster.pod(server).ns(),
        server_ip,
        PORT,
        5,
    )
}

#[test]
fn vtep_entries_follow_the_nodes_and_a_clean_stop_removes_them() {
    require_root();
    let three = state(THREE_NODES, &[PODS_A_B, POD_C]);
    let mut cluster = Cluster::start("pipe-nodes", &three, ClusterOptions::default());
    let node_a = cluster.node("node-a").ns().clone();
    let (b, c) = (
        Ipv4Addr::new(192, 168, 77, 2),
        Ipv4Addr::new(192, 168, 77, 3),
    );
    let mut vteps = managed_vteps(&node_a);
    vteps.sort();
    assert_eq!(vteps, [b, c], "{}", cluster.agent_log("node-a"));
    assert_eq!(echo(&cluster, "cli-a", "srv-c"), 5, "{}", cluster.report());
    assert_eq!(forwarding(&node_a), "1");

    // node-c leaves: its agent stops, the state drops it and its pod.
    assert!(cluster.stop_agent("node-c").success());
    cluster.update_state(&state(TWO_NODES, &[PODS_A_B]));
    assert_eq!(
        managed_vteps(&node_a),
        [b],
        "{}",
        cluster.agent_log("node-a")
    );
    let log = cluster.agent_log("node-a");
    assert!(
        log.lines()
            .any(|line| line.contains("VTEP neighbour entries") && line.contains("removed")),
        "{log}"
    );
    assert_eq!(echo(&cluster, "cli-a", "srv-b"), 5, "{}", cluster.report());

    // A clean stop deletes the entries and gives forwarding its setting back (off in a new
    // namespace).
    assert!(cluster.stop_agent("node-a").success());
    assert!(
        managed_vteps(&node_a).is_empty(),
        "entries left after SIGTERM"
    );
    assert_eq!(forwarding(&node_a), "0", "forwarding not restored");
}

#[test]
fn a_step_that_fails_is_rolled_back_and_the_last_good_state_stays() {
    require_root();
    let good = state(TWO_NODES, &[PODS_A_B]);
    let mut cluster = Cluster::start("pipe-rollback", &good, ClusterOptions::default());
    let node_a = cluster.node("node-a").ns().clone();
    let maps_before = maps(cluster.pin_dir("node-a"));
    for command in [
        &["link", "add", "vbada", "type", "bridge"][..],
        &["link", "set", "vbada", "up"],
    ] {
        node_a.ip(command).unwrap();
    }

    // A new pod whose program cannot be attached: that comes first, so nothing else changed.
    let on_xdp = state(TWO_NODES, &[PODS_A_B, POD_ON_A_BRIDGE]);
    cluster.write_state(&on_xdp);
    let line = wait_for_line(&cluster, "node-a", "partly applied", 1);
    assert!(
        line.contains("nothing applied, then programs on new pod interfaces failed")
            && line.contains("vbada")
            && line.contains("rolled back: the last good state is in force again"),
        "{line}"
    );
    assert_eq!(maps(cluster.pin_dir("node-a")), maps_before);
    assert!(!pins(&cluster).iter().any(|pin| pin.contains("vbada")));
    assert_eq!(echo(&cluster, "cli-a", "srv-b"), 5, "{}", cluster.report());
    // Node B had nothing to attach: it runs the new state.
    wait_for_line(&cluster, "node-b", "applied the new cluster state", 1);

    // On a tc plane the bridge gets its program (tcx attaches anywhere).
    let on_tc = on_xdp.replace(", datapath: xdp }", " }");
    assert_ne!(on_tc, on_xdp);
    let before = cluster.states_taken_in();
    cluster.write_state(&on_tc);
    cluster.wait_taken_in(&before, &on_tc);
    let maps_on_tc = maps(cluster.pin_dir("node-a"));
    assert_ne!(maps_on_tc, maps_before);
    assert!(pins(&cluster).contains(&"tcx_vbada".to_owned()));

    // The plane moves to XDP: the maps are written, then XDP cannot be attached to the bridge;
    // the maps are reconciled back to the tc plane and its program stays.
    cluster.write_state(&on_xdp);
    let line = wait_for_line(&cluster, "node-a", "partly applied", 2);
    assert!(
        line.contains(
            "maps, VTEP neighbours, next hops applied, then pod interface programs failed"
        ) && line.contains("vbada")
            && line.contains("rolled back: the last good state is in force again"),
        "{line}"
    );
    assert_eq!(maps(cluster.pin_dir("node-a")), maps_on_tc);
    let pins_now = pins(&cluster);
    assert!(pins_now.contains(&"tcx_vbada".to_owned()), "{pins_now:?}");
    assert!(!pins_now.contains(&"link_vbada".to_owned()), "{pins_now:?}");
    assert_eq!(echo(&cluster, "cli-a", "srv-b"), 5, "{}", cluster.report());

    // The next good state (without the bridge) is applied as a diff from the last good one.
    let before = cluster.states_taken_in();
    cluster.write_state(&good);
    cluster.wait_taken_in(&before, &good);
    assert_eq!(maps(cluster.pin_dir("node-a")), maps_before);
    assert_eq!(echo(&cluster, "cli-a", "srv-b"), 5, "{}", cluster.report());
}

fn pins(cluster: &Cluster) -> Vec<String> {
    std::fs::read_dir(cluster.pin_dir("node-a"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn rule_hits_follow_a_rule_that_a_new_state_moves() {
    require_root();
    let before = state(TWO_NODES, &[PODS_A_B]);
    let mut cluster = Cluster::start("pipe-hits", &before, ClusterOptions::default());
    assert_eq!(echo(&cluster, "cli-a", "srv-b"), 5, "{}", cluster.report());
    let hits = |cluster: &Cluster| {
        cluster
            .rule_hits("node-b")
            .into_iter()
            .map(|hits| ((hits.index, hits.description), hits.tally))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let counted = hits(&cluster);
    let any_in = counted[&(0, "ingress any from anywhere".to_owned())];
    assert!(any_in.packets > 0, "{counted:?}");

    cluster.update_state(&with_rule_inserted(&before));
    let moved = hits(&cluster);
    assert_eq!(
        moved[&(1, "ingress any from anywhere".to_owned())],
        any_in,
        "{moved:?}"
    );
    assert_eq!(
        moved[&(0, "ingress tcp 22 from anywhere".to_owned())].packets,
        0,
        "{moved:?}"
    );
}

#[test]
fn rtnetlink_makes_lists_and_deletes_managed_entries_and_finds_gateways() {
    require_root();
    let testbed = Testbed::new("pipe-nl").unwrap();
    let a = testbed.add_node("a").unwrap();
    let b = testbed.add_node("b").unwrap();
    testbed
        .connect_underlay(&[&a, &b], "192.168.79.0/24".parse().unwrap())
        .unwrap();
    let ns = a.ns().clone();
    ns.ip(&["route", "add", "10.50.0.0/16", "via", "192.168.79.2"])
        .unwrap();
    let ifindex = ns.ifindex("eth0").unwrap();
    let peer = Ipv4Addr::new(192, 168, 79, 2);
    let far = Ipv4Addr::new(10, 50, 0, 7);
    let (listed, gateways, deleted) = ns
        .run_in(|| {
            let mut netlink = Rtnetlink::open().unwrap();
            netlink.replace_managed_neighbour(ifindex, peer).unwrap();
            // Replacing is idempotent.
            netlink.replace_managed_neighbour(ifindex, peer).unwrap();
            let listed = netlink.neighbours(ifindex).unwrap();
            let gateways = (
                netlink.route_gateway(far, ifindex).unwrap(),
                netlink.route_gateway(peer, ifindex).unwrap(),
            );
            let deleted = (
                netlink.delete_neighbour(ifindex, peer).unwrap(),
                netlink.delete_neighbour(ifindex, peer).unwrap(),
            );
            (listed, gateways, deleted)
        })
        .unwrap();
    let entry = listed
        .iter()
        .find(|entry| entry.ip == peer)
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert!(entry.managed, "{entry:?}");
    assert_eq!(gateways, (Some(peer), None));
    assert_eq!(deleted, (true, false));
    assert!(managed_vteps(&ns).is_empty());
}

/// A node's pinned `ENDPOINTS` (keys) and `NETWORKS` (entries).
fn maps(pin_dir: &Path) -> (Vec<EndpointKey>, Vec<(u32, Network)>) {
    let open = |name| Map::from_map_data(MapData::from_pin(pin_dir.join(name)).unwrap()).unwrap();
    let endpoints = HashMap::<_, EndpointKey, Endpoint>::try_from(open(names::ENDPOINTS)).unwrap();
    let mut keys: Vec<EndpointKey> = endpoints.keys().map(Result::unwrap).collect();
    keys.sort();
    let networks = HashMap::<_, u32, Network>::try_from(open(names::NETWORKS)).unwrap();
    let mut planes: Vec<(u32, Network)> = networks.iter().map(Result::unwrap).collect();
    planes.sort_by_key(|(vni, _)| *vni);
    (keys, planes)
}

/// The `nth` line (from 1) of `node`'s agent log that contains `text`, once there is one.
fn wait_for_line(cluster: &Cluster, node: &str, text: &str, nth: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = cluster.agent_log(node);
        if let Some(line) = log.lines().filter(|line| line.contains(text)).nth(nth - 1) {
            return line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {nth}. {text:?} in the log of {node}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
