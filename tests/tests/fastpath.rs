//! End to end: a fast-path plane (`fast_path: true`) carried by the AF_XDP forwarder of real
//! agents, beside an ordinary plane carried by the XDP programs. Pods on the fast plane across
//! nodes and on one node, security groups allowing and denying on it, spoofing from a pod on it,
//! the ordinary plane beside it, and a node running the kernel's vxlan device on the same plane; every check
//! also asks the forwarder's own report that the frames went its way.

use ctpath_common::DropReason;
use ctpath_dataplane::testing::FrameBuilder;
use ctpath_testbed::{
    cluster::{pod_ifname, pod_ip, Cluster, ClusterOptions, NodeKind},
    require_root,
    traffic::{ping, tcp_echo, udp_echo},
    RawSocket,
};

const STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450 }
  - { name: media, vni: 300, cidr: 10.250.0.0/16, gateway: 10.250.0.1, mtu: 1450, fast_path: true }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
  - { name: node-k, underlay_interface: eth0, underlay_ip: 192.168.77.3 }
security_groups:
  - name: upf
    rules:
      - { direction: ingress, protocol: udp, ports: "2152", remote_group: gnb }
      - { direction: ingress, protocol: icmp }
      - { direction: egress, protocol: any }
  - name: gnb
    rules:
      - { direction: egress, protocol: any }
pods:
  - name: upf-a
    node: node-a
    interfaces:
      - { network: media, host_interface: vupfam, ip: 10.250.1.2, mac: "02:00:00:fa:01:02", security_groups: [upf] }
      - { network: std, host_interface: vupfas, ip: 10.244.1.2, mac: "02:00:00:f4:01:02" }
  - name: gnb-a
    node: node-a
    interfaces:
      - { network: media, host_interface: vgnbam, ip: 10.250.1.3, mac: "02:00:00:fa:01:03", security_groups: [gnb] }
  - name: gnb-b
    node: node-b
    interfaces:
      - { network: media, host_interface: vgnbbm, ip: 10.250.2.2, mac: "02:00:00:fa:02:02", security_groups: [gnb] }
      - { network: std, host_interface: vgnbbs, ip: 10.244.2.2, mac: "02:00:00:f4:02:02" }
  - name: other-b
    node: node-b
    interfaces:
      - { network: media, host_interface: vothbm, ip: 10.250.2.3, mac: "02:00:00:fa:02:03" }
  - name: kern-k
    node: node-k
    interfaces:
      - { network: media, host_interface: vkernm, ip: 10.250.3.2, mac: "02:00:00:fa:03:02" }
"#;

/// Packets node `node`'s forwarder counted under `name` (a counter or a drop reason), all
/// workers together, once the agent has written a report covering what was sent so far (it
/// writes one a second).
fn forwarder_count(cluster: &Cluster, node: &str, name: &str) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let status = cluster
        .fast_path(node)
        .unwrap_or_else(|| panic!("{node} runs no forwarder\n{}", cluster.report()));
    assert!(status.running, "{node}'s forwarder report is stale");
    status
        .report
        .workers
        .iter()
        .flat_map(|worker| worker.counters.get(name).or(worker.drops.get(name)))
        .map(|count| count.packets)
        .sum()
}

#[test]
fn the_forwarder_carries_the_fast_plane_with_the_datapath_semantics() {
    require_root();
    let cluster = Cluster::start(
        "fastpath",
        STATE,
        ClusterOptions {
            node_kinds: [("node-k".to_owned(), NodeKind::KernelVxlan)].into(),
            ..ClusterOptions::default()
        },
    );
    let upf = pod_ip(&cluster.state, "upf-a", "media");
    let ns = |pod: &str| cluster.pod(pod).ns().clone();
    let (upf_a, gnb_a, gnb_b, other_b, kern_k) = (
        ns("upf-a"),
        ns("gnb-a"),
        ns("gnb-b"),
        ns("other-b"),
        ns("kern-k"),
    );
    let status = cluster
        .fast_path("node-a")
        .expect("node-a runs the forwarder");
    assert_eq!(
        status.report.planes,
        vec![300],
        "only media is on the fast path"
    );

    // Allowed: GTP-U from group gnb, across nodes and on one node.
    assert_eq!(
        udp_echo(&gnb_b, &upf_a, upf, 2152, 20),
        20,
        "gnb-b -> upf-a:2152 across nodes\n{}",
        cluster.report()
    );
    assert_eq!(
        udp_echo(&gnb_a, &upf_a, upf, 2152, 20),
        20,
        "gnb-a -> upf-a:2152 on one node"
    );
    assert!(ping(&other_b, upf, 2, None), "ICMP from anywhere");
    assert!(
        forwarder_count(&cluster, "node-a", "underlay_decapsulated") >= 20
            && forwarder_count(&cluster, "node-a", "pod_redirected_local") >= 20
            && forwarder_count(&cluster, "node-b", "pod_encapsulated") >= 20,
        "the media plane went through the forwarders\n{}",
        cluster.report()
    );
    assert!(
        cluster
            .status("node-a")
            .event(ctpath_common::Counter::PodToForwarder)
            .packets
            >= 20,
        "the XDP program handed the pods' frames to the forwarder"
    );

    // Denied: a pod outside group gnb, another port; counted by the forwarder.
    let denied_before = forwarder_count(&cluster, "node-a", "policy_denied_ingress");
    assert_eq!(
        udp_echo(&other_b, &upf_a, upf, 2152, 5),
        0,
        "other-b is not in gnb"
    );
    assert!(!tcp_echo(&gnb_b, &upf_a, upf, 2152, 1024), "no tcp in");
    assert!(
        forwarder_count(&cluster, "node-a", "policy_denied_ingress") >= denied_before + 5,
        "{}",
        cluster.report()
    );

    // The ordinary plane still runs in XDP beside it.
    assert!(ping(
        &gnb_b,
        pod_ip(&cluster.state, "upf-a", "std"),
        2,
        None
    ));

    // Interop: the kernel vxlan node on the fast plane, both ways (ARP over VXLAN included).
    assert!(
        ping(&kern_k, upf, 2, None),
        "kernel vxlan node -> fast-path pod\n{}",
        cluster.report()
    );
    assert!(ping(
        &upf_a,
        pod_ip(&cluster.state, "kern-k", "media"),
        2,
        None
    ));

    // Spoofing from a pod on the fast plane: dropped and counted by the forwarder.
    // gnb-a (10.250.1.3, MAC ...:01:03) to upf-a: from another address, and from another MAC.
    let to_upf = |src_mac, src_ip| {
        FrameBuilder::udp(
            src_mac,
            [2, 0, 0, 0xfa, 1, 2],
            src_ip,
            [10, 250, 1, 2],
            1,
            2152,
            b"x",
        )
    };
    let spoofed_ip = to_upf([2, 0, 0, 0xfa, 1, 3], [10, 250, 1, 99]);
    let spoofed_mac = to_upf([2, 0, 0, 0xfa, 9, 9], [10, 250, 1, 3]);
    let ifname = pod_ifname(&cluster.state, "gnb-a", "media");
    gnb_a
        .run_in(|| {
            let socket = RawSocket::open(&gnb_a, &ifname).unwrap();
            for _ in 0..5 {
                socket.send(&spoofed_ip).unwrap();
                socket.send(&spoofed_mac).unwrap();
            }
        })
        .unwrap();
    assert_eq!(
        forwarder_count(&cluster, "node-a", DropReason::SpoofedIp.name()),
        5
    );
    assert_eq!(
        forwarder_count(&cluster, "node-a", DropReason::SpoofedMac.name()),
        5
    );
}
