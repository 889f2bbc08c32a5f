//! End to end: security groups and anti-spoofing on a two-node cluster of real agents. Allowed
//! and denied flows across nodes and on one node; a remote-group rule following membership
//! changes in the state while the agents run; spoofing attempts from a pod, all dropped and
//! counted.

use ctpath_common::{DropReason, Tally};
use ctpath_dataplane::testing::FrameBuilder;
use ctpath_testbed::{
    cluster::{pod_ip, Cluster, ClusterOptions},
    require_root,
    traffic::{ping, tcp_echo, udp_echo},
    RawSocket,
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
      - { direction: ingress, protocol: tcp, ports: "8080", remote_group: client }
      - { direction: ingress, protocol: icmp }
      - { direction: egress, protocol: any }
  - name: client
    rules:
      - { direction: egress, protocol: any }
pods:
  - name: web-a
    node: node-a
    interfaces:
      - { network: std, host_interface: vweba, ip: 10.244.1.2, mac: "02:00:00:00:01:02", security_groups: [web] }
  - name: cli-a
    node: node-a
    interfaces:
      - { network: std, host_interface: vclia, ip: 10.244.1.3, mac: "02:00:00:00:01:03", security_groups: [client] }
  - name: cli-b
    node: node-b
    interfaces:
      - { network: std, host_interface: vclib, ip: 10.244.2.2, mac: "02:00:00:00:02:02", security_groups: [client] }
  - name: other-b
    node: node-b
    interfaces:
      - { network: std, host_interface: vothb, ip: 10.244.2.3, mac: "02:00:00:00:02:03" }
"#;

#[test]
fn groups_allow_and_deny_and_follow_membership_changes() {
    require_root();
    let mut cluster = Cluster::start("secgroups", STATE, ClusterOptions::default());
    let web = pod_ip(&cluster.state, "web-a", "std");
    let (web_a, cli_a, cli_b, other_b) = (
        cluster.pod("web-a").ns().clone(),
        cluster.pod("cli-a").ns().clone(),
        cluster.pod("cli-b").ns().clone(),
        cluster.pod("other-b").ns().clone(),
    );

    assert!(
        tcp_echo(&cli_b, &web_a, web, 8080, 64 << 10),
        "client across nodes -> web:8080\n{}",
        cluster.report()
    );
    assert!(
        tcp_echo(&cli_a, &web_a, web, 8080, 64 << 10),
        "client on the same node -> web:8080"
    );
    assert!(
        !tcp_echo(&other_b, &web_a, web, 8080, 1024),
        "a pod outside group client -> web:8080"
    );
    assert!(
        !tcp_echo(&cli_b, &web_a, web, 8081, 1024),
        "client -> web on another port"
    );
    assert!(ping(&other_b, web, 2, None), "ICMP from anywhere");
    assert_eq!(
        udp_echo(
            &web_a,
            &other_b,
            pod_ip(&cluster.state, "other-b", "std"),
            5000,
            10
        ),
        10,
        "web's egress and its replies"
    );
    let denied = cluster
        .status("node-a")
        .dropped(DropReason::PolicyDeniedIngress)
        .packets;
    assert!(denied >= 2, "{}", cluster.report());

    // cli-b leaves group client, other-b joins it: the rule follows, on both nodes.
    cluster.update_state(
        &STATE
            .replace(
                "ip: 10.244.2.2, mac: \"02:00:00:00:02:02\", security_groups: [client]",
                "ip: 10.244.2.2, mac: \"02:00:00:00:02:02\"",
            )
            .replace(
                "ip: 10.244.2.3, mac: \"02:00:00:00:02:03\" }",
                "ip: 10.244.2.3, mac: \"02:00:00:00:02:03\", security_groups: [client] }",
            ),
    );
    assert!(
        !tcp_echo(&cli_b, &web_a, web, 8080, 1024),
        "cli-b after leaving group client\n{}",
        cluster.report()
    );
    assert!(
        tcp_echo(&other_b, &web_a, web, 8080, 64 << 10),
        "other-b after joining group client\n{}",
        cluster.report()
    );
    assert!(
        tcp_echo(&cli_a, &web_a, web, 8080, 1024),
        "cli-a is unaffected"
    );
}

#[test]
fn spoofing_from_a_pod_is_dropped_and_counted() {
    require_root();
    let cluster = Cluster::start("spoofing", STATE, ClusterOptions::default());
    let cli_a = cluster.pod("cli-a").ns().clone();
    let own_mac = [2, 0, 0, 0, 1, 3];
    let web_mac = [2, 0, 0, 0, 1, 2];
    let frames = [
        // Another pod's address, own MAC.
        (
            DropReason::SpoofedIp,
            FrameBuilder::udp(
                own_mac,
                web_mac,
                [10, 244, 1, 2],
                [10, 244, 2, 2],
                1,
                2,
                b"x",
            ),
        ),
        // Own address, another pod's MAC.
        (
            DropReason::SpoofedMac,
            FrameBuilder::udp(
                web_mac,
                web_mac,
                [10, 244, 1, 3],
                [10, 244, 2, 2],
                1,
                2,
                b"x",
            ),
        ),
        // ARP claiming web-a's address (to take over its traffic).
        (
            DropReason::SpoofedArp,
            FrameBuilder::arp_reply(own_mac, [10, 244, 1, 2], web_mac, [10, 244, 1, 2]),
        ),
    ];
    cli_a
        .run_in(|| {
            let socket = RawSocket::open(&cli_a, "eth0").unwrap();
            for (_, frame) in &frames {
                for _ in 0..5 {
                    socket.send(frame).unwrap();
                }
            }
        })
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let a = cluster.status("node-a");
    for (reason, frame) in &frames {
        assert_eq!(
            a.dropped(*reason),
            Tally {
                packets: 5,
                bytes: 5 * frame.len() as u64
            },
            "{reason:?}\n{a}"
        );
    }
    // The pod's own traffic still flows.
    assert!(ping(
        &cli_a,
        pod_ip(&cluster.state, "web-a", "std"),
        2,
        None
    ));
}
