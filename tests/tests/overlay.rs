//! End to end: the VXLAN overlay between two ctpath nodes in network namespaces, each running a
//! real `ctpath agent`, with pods on several planes, some on-link and some routed via their
//! gateway; and a ctpath node talking to a node that runs the Linux kernel's vxlan device.

use ctpath_common::{Counter, DropReason};
use ctpath_control::compile::ROUTER_MAC;
use ctpath_dataplane::testing::{FrameBuilder, Malform};
use ctpath_testbed::{
    cluster::{pod_ip, Cluster, ClusterOptions, NodeKind, PodAddressing},
    require_root,
    traffic::{ping, rx_packets, tcp_echo, udp_echo},
    RawSocket,
};

/// Two nodes, three planes (`blue` and `green` overlap on purpose: the same address lives on
/// both), two pods per node.
const STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450 }
  - { name: blue, vni: 500, cidr: 10.60.0.0/16, gateway: 10.60.0.1 }
  - { name: green, vni: 600, cidr: 10.60.0.0/16, gateway: 10.60.0.1 }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups: []
pods:
  - name: a1
    node: node-a
    interfaces:
      - { network: std, host_interface: va1s, ip: 10.244.1.2, mac: "02:00:0a:f4:01:02" }
      - { network: blue, host_interface: va1b, ip: 10.60.1.2, mac: "02:00:0a:3c:01:02" }
  - name: a2
    node: node-a
    interfaces:
      - { network: std, host_interface: va2s, ip: 10.244.1.3, mac: "02:00:0a:f4:01:03" }
  - name: b1
    node: node-b
    interfaces:
      - { network: std, host_interface: vb1s, ip: 10.244.2.2, mac: "02:00:0a:f4:02:02" }
      - { network: blue, host_interface: vb1b, ip: 10.60.2.2, mac: "02:00:0a:3c:02:02" }
  - name: b2
    node: node-b
    interfaces:
      - { network: std, host_interface: vb2s, ip: 10.244.2.3, mac: "02:00:0a:f4:02:03" }
      - { network: green, host_interface: vb2g, ip: 10.60.2.2, mac: "02:00:0a:3c:02:03" }
"#;

fn two_ctpath_nodes(label: &str) -> Cluster {
    let options = ClusterOptions {
        pod_addressing: [
            ("a2".to_owned(), PodAddressing::HostRoute),
            ("b2".to_owned(), PodAddressing::HostRoute),
        ]
        .into(),
        ..ClusterOptions::default()
    };
    Cluster::start(label, STATE, options)
}

#[test]
fn pods_talk_across_nodes_and_on_one_node() {
    require_root();
    let cluster = two_ctpath_nodes("overlay");
    let ip = |pod, net| pod_ip(&cluster.state, pod, net);
    let (a1, a2, b1, b2) = (
        cluster.pod("a1"),
        cluster.pod("a2"),
        cluster.pod("b1"),
        cluster.pod("b2"),
    );

    // ICMP: across nodes on two planes, on one node, on-link and routed pods.
    assert!(
        ping(a1, ip("b1", "std"), 3, None),
        "a1 -> b1 on std\n{}",
        cluster.report()
    );
    assert!(ping(a1, ip("b1", "blue"), 3, None), "a1 -> b1 on blue");
    assert!(
        ping(a1, ip("a2", "std"), 3, None),
        "a1 -> a2 on one node (a2 routed via gateway)"
    );
    assert!(
        ping(a2, ip("b2", "std"), 3, None),
        "a2 -> b2, both routed via their gateway"
    );
    assert!(ping(b2, ip("a1", "std"), 3, None), "b2 -> a1");
    // UDP and TCP, across nodes and on one node.
    assert_eq!(
        udp_echo(a1, b1, ip("b1", "std"), 2152, 20),
        20,
        "UDP a1 -> b1"
    );
    assert_eq!(
        udp_echo(a2, a1, ip("a1", "std"), 5060, 20),
        20,
        "UDP a2 -> a1 on one node"
    );
    assert!(
        tcp_echo(a1, b1, ip("b1", "std"), 8080, 1 << 20),
        "TCP a1 -> b1, 1 MiB"
    );
    assert!(
        tcp_echo(b2, a2, ip("a2", "std"), 8080, 256 << 10),
        "TCP b2 -> a2, routed pods"
    );

    let a = cluster.status("node-a");
    let b = cluster.status("node-b");
    assert!(a.event(Counter::PodEncapsulated).packets > 0, "{a}");
    assert!(a.event(Counter::PodRedirectedLocal).packets > 0, "{a}");
    assert!(a.event(Counter::PodArpReplied).packets > 0, "{a}");
    assert!(a.event(Counter::UnderlayDecapsulated).packets > 0, "{a}");
    assert!(b.event(Counter::UnderlayDecapsulated).packets > 0, "{b}");
    assert_eq!(
        a.total_dropped() + b.total_dropped(),
        0,
        "unexpected drops:\n{}",
        cluster.report()
    );
}

#[test]
fn planes_are_isolated_even_where_addresses_overlap() {
    require_root();
    let cluster = two_ctpath_nodes("isolation");
    let (a1, b2) = (cluster.pod("a1"), cluster.pod("b2"));
    // 10.60.2.2 is b1 on blue and b2 on green. From blue, a1 reaches b1 and never b2.
    let green_before = rx_packets(b2, "eth1");
    assert!(
        ping(a1, "10.60.2.2".parse().unwrap(), 5, None),
        "a1 -> 10.60.2.2 on blue"
    );
    assert_eq!(
        udp_echo(
            a1,
            cluster.pod("b1"),
            "10.60.2.2".parse().unwrap(),
            4000,
            10
        ),
        10
    );
    assert_eq!(
        rx_packets(b2, "eth1"),
        green_before,
        "a frame crossed from blue to green"
    );
    // b2 on green has no peer at 10.60.1.2 (that is a1 on blue): unanswered, dropped on its node.
    assert!(!ping(b2, "10.60.1.2".parse().unwrap(), 2, Some("eth1")));
    let b = cluster.status("node-b");
    assert!(b.dropped(DropReason::ArpUnknownTarget).packets > 0, "{b}");
}

#[test]
fn oversized_df_packets_get_frag_needed_with_the_plane_mtu() {
    require_root();
    let cluster = two_ctpath_nodes("mtu");
    let a1 = cluster.pod("a1");
    // A pod misconfigured with a larger MTU than its plane's 1450.
    cluster
        .node("node-a")
        .ip(&["link", "set", "va1s", "mtu", "3000"])
        .unwrap();
    a1.ip(&["link", "set", "eth0", "mtu", "3000"]).unwrap();
    let b1 = pod_ip(&cluster.state, "b1", "std").to_string();
    let output = a1
        .exec_unchecked(&["ping", "-c", "2", "-W", "1", "-M", "do", "-s", "2000", &b1])
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("mtu = 1450") || text.contains("mtu=1450"),
        "ping did not learn the MTU:\n{text}\n{}",
        cluster.report()
    );
    // The pod's kernel now knows the path MTU, and smaller packets get through.
    let route = a1.exec(&["ip", "route", "get", &b1]).unwrap();
    assert!(
        String::from_utf8_lossy(&route.stdout).contains("mtu 1450"),
        "{}",
        String::from_utf8_lossy(&route.stdout)
    );
    assert!(ping(a1, b1.parse().unwrap(), 2, None));
    let a = cluster.status("node-a");
    assert!(a.event(Counter::IcmpFragNeededSent).packets >= 1, "{a}");
    // Without DF the packet is dropped and counted (sent raw: the pod's kernel, knowing the path
    // MTU now, would fragment it itself).
    let oversized = FrameBuilder::udp(
        [2, 0, 0x0a, 0xf4, 1, 2],
        ROUTER_MAC,
        [10, 244, 1, 2],
        [10, 244, 2, 2],
        1,
        2,
        &[0; 2000],
    )
    .with_ipv4_dont_frag(false);
    a1.run_in(|| {
        RawSocket::open(a1, "eth0")
            .unwrap()
            .send(&oversized)
            .unwrap()
    })
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let a = cluster.status("node-a");
    assert_eq!(a.dropped(DropReason::MtuExceeded).packets, 1, "{a}");
}

#[test]
fn ctpath_node_interoperates_with_a_kernel_vxlan_node() {
    require_root();
    let options = ClusterOptions {
        node_kinds: [("node-b".to_owned(), NodeKind::KernelVxlan)].into(),
        ..Default::default()
    };
    let cluster = Cluster::start("interop", STATE, options);
    let ip = |pod, net| pod_ip(&cluster.state, pod, net);
    let (a1, b1) = (cluster.pod("a1"), cluster.pod("b1"));
    let kernel_node = cluster.node("node-b");

    let capture = kernel_node
        .spawn_with(
            &[
                "tshark",
                "-i",
                "eth0",
                "-f",
                "udp port 4789",
                "-a",
                "duration:8",
                "-T",
                "fields",
                "-e",
                "vxlan.vni",
                "-e",
                "ip.src",
            ],
            std::process::Stdio::piped(),
            std::process::Stdio::null(),
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2)); // tshark starts slowly

    // Both directions, ARP resolved across the two kinds of node.
    assert!(
        ping(b1, ip("a1", "std"), 3, None),
        "kernel pod b1 -> ctpath pod a1\n{}",
        cluster.report()
    );
    assert!(
        ping(a1, ip("b1", "std"), 3, None),
        "ctpath pod a1 -> kernel pod b1"
    );
    assert!(ping(a1, ip("b1", "blue"), 3, None), "on the second plane");
    assert_eq!(
        udp_echo(a1, b1, ip("b1", "std"), 2152, 20),
        20,
        "UDP ctpath -> kernel"
    );
    assert_eq!(
        udp_echo(b1, a1, ip("a1", "std"), 2152, 20),
        20,
        "UDP kernel -> ctpath"
    );
    assert!(
        tcp_echo(a1, b1, ip("b1", "std"), 8080, 1 << 20),
        "TCP ctpath -> kernel"
    );
    assert!(
        tcp_echo(b1, a1, ip("a1", "std"), 8081, 1 << 20),
        "TCP kernel -> ctpath"
    );

    let a = cluster.status("node-a");
    assert!(
        a.event(Counter::UnderlayArpReplied).packets > 0,
        "kernel node's ARP answered over VXLAN: {a}"
    );

    let mut capture = capture;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut capture.take_stdout().unwrap(), &mut text).unwrap();
    let vnis: std::collections::BTreeSet<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    assert!(
        vnis.contains(&("100", "192.168.77.1")),
        "tshark saw no VNI 100 from the ctpath node:\n{text}"
    );
    assert!(
        vnis.contains(&("500", "192.168.77.1")),
        "tshark saw no VNI 500 from the ctpath node:\n{text}"
    );
}

#[test]
fn a_malformed_state_is_rejected_and_the_last_good_one_stays() {
    require_root();
    let cluster = two_ctpath_nodes("badstate");
    let (a1, b1) = (cluster.pod("a1"), cluster.pod("b1"));
    let b1_ip = pod_ip(&cluster.state, "b1", "std");
    assert!(ping(a1, b1_ip, 2, None));
    // b1 moved outside its plane: the whole file is refused, naming the field.
    cluster.write_state_unchecked(&STATE.replace("ip: 10.244.2.2,", "ip: 10.9.0.5,"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cluster.agent_log("node-a").contains("not applied") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            cluster.agent_log("node-a")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = cluster.agent_log("node-a");
    assert!(
        log.contains("pods[2].interfaces[0].ip: 10.9.0.5 is outside network std (10.244.0.0/16)"),
        "{log}"
    );
    // Traffic goes on under the last good state, on both nodes.
    assert!(ping(a1, b1_ip, 3, None), "{}", cluster.report());
    assert_eq!(
        udp_echo(b1, a1, pod_ip(&cluster.state, "a1", "std"), 4000, 10),
        10
    );
}

/// Whether `feature` is on for `ifname` in `ns`, as `ethtool -k` says.
fn offload_on(ns: &ctpath_testbed::Netns, ifname: &str, feature: &str) -> bool {
    let out = ns.exec(&["ethtool", "-k", ifname]).expect("ethtool -k");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|line| line.trim() == format!("{feature}: on"))
}

#[test]
fn tcp_from_pods_with_default_offloads_keeps_tso_end_to_end() {
    require_root();
    // The planes are `datapath: tc` (the default): pods keep the kernel's offloads.
    let cluster = two_ctpath_nodes("tso");
    let ip = |pod, net| pod_ip(&cluster.state, pod, net);
    let (a1, a2, b1) = (cluster.pod("a1"), cluster.pod("a2"), cluster.pod("b1"));
    for feature in ["tx-checksumming", "tcp-segmentation-offload"] {
        assert!(
            offload_on(a1, "eth0", feature),
            "a1 eth0: {feature} is the kernel's default, on"
        );
    }
    let before_a = cluster.status("node-a");
    let handed = |cluster: &Cluster| {
        cluster
            .status("node-b")
            .event(Counter::UnderlayToTc)
            .packets
    };
    let handed_before = handed(&cluster);
    // 64 MiB each way: with broken checksums nothing arrives; with segmentation broken (a GSO
    // packet dropped at the underlay) the stream stalls and the echo times out.
    assert!(
        tcp_echo(a1, b1, ip("b1", "std"), 8081, 64 << 20),
        "TCP a1 -> b1, 64 MiB, across nodes\n{}",
        cluster.report()
    );
    assert!(
        tcp_echo(a2, a1, ip("a1", "std"), 8082, 64 << 20),
        "TCP a2 -> a1, 64 MiB, on one node\n{}",
        cluster.report()
    );
    let after_a = cluster.status("node-a");
    let encapsulated =
        |snapshot: &ctpath_control::status::Snapshot| snapshot.event(Counter::PodEncapsulated);
    let (packets, bytes) = (
        encapsulated(&after_a).packets - encapsulated(&before_a).packets,
        encapsulated(&after_a).bytes - encapsulated(&before_a).bytes,
    );
    // GSO packets stay whole through from_pod_tc: far more than an MTU each on average.
    assert!(
        packets > 0 && bytes / packets > 3000,
        "{packets} packets, {bytes} bytes encapsulated on node-a: TSO did not survive"
    );
    // TCP into b1 is delivered by XDP, none of it handed to tc: b1's end runs NAPI (the
    // agent turned GRO on there, see the test below), so b1's GRO merges the segments.
    assert_eq!(
        handed(&cluster),
        handed_before,
        "node-b: TCP into b1 handed to from_underlay_tc\n{}",
        cluster.report()
    );
    // UDP of a tc plane goes to from_underlay_tc.
    assert_eq!(udp_echo(a1, b1, ip("b1", "std"), 4002, 10), 10);
    assert!(
        handed(&cluster) >= handed_before + 10,
        "node-b: XDP handed the tc plane's UDP to from_underlay_tc\n{}",
        cluster.report()
    );
    assert_eq!(
        after_a.dropped(DropReason::MtuExceeded).packets,
        0,
        "no GSO packet measured against the MTU as a whole"
    );
}

#[test]
fn pods_are_created_with_default_offloads_and_their_ends_set_by_the_agent() {
    require_root();
    // std on XDP at the pod's veth; blue stays on tc. The testbed creates every pod with the
    // kernel's defaults, as a runtime would: the agent sets what each hook needs at the pod's
    // end (XDP: TX checksum off, GRO on; tc: GRO on, for XDP redirects from the NIC).
    let state = STATE.replace("mtu: 1450 }", "mtu: 1450, datapath: xdp }");
    let mut cluster = Cluster::start(
        "podside",
        &state,
        ClusterOptions {
            pod_addressing: [("a2".to_owned(), PodAddressing::HostRoute)].into(),
            ..ClusterOptions::default()
        },
    );
    let ip = |pod, net| pod_ip(&cluster.state, pod, net);
    let (a1, a2, b1) = (cluster.pod("a1"), cluster.pod("a2"), cluster.pod("b1"));
    for (pod, name) in [(a1, "a1"), (a2, "a2"), (b1, "b1")] {
        assert!(
            !offload_on(pod, "eth0", "tx-checksumming")
                && offload_on(pod, "eth0", "generic-receive-offload"),
            "{name} eth0 (std, xdp): the agent turns TX checksum offload off and GRO on\n{}",
            cluster.agent_log("node-a")
        );
    }
    for (pod, name) in [(a1, "a1"), (b1, "b1")] {
        assert!(
            offload_on(pod, "eth1", "tx-checksumming")
                && offload_on(pod, "eth1", "tcp-segmentation-offload")
                && offload_on(pod, "eth1", "generic-receive-offload"),
            "{name} eth1 (blue, tc): the pod keeps TX checksum offload and TSO, the agent turns \
             GRO on"
        );
    }
    assert!(
        cluster.agent_log("node-a").contains("pod side set"),
        "{}",
        cluster.agent_log("node-a")
    );
    // The pods' TCP and UDP get through, across nodes and on one node, on both planes.
    assert!(
        tcp_echo(a1, b1, ip("b1", "std"), 8083, 4 << 20),
        "TCP a1 -> b1 on std (xdp)\n{}",
        cluster.report()
    );
    assert!(
        tcp_echo(a2, a1, ip("a1", "std"), 8084, 4 << 20),
        "TCP a2 -> a1 on std (xdp), one node\n{}",
        cluster.report()
    );
    assert_eq!(udp_echo(a1, b1, ip("b1", "std"), 4001, 10), 10);
    assert!(
        tcp_echo(a1, b1, ip("b1", "blue"), 8085, 4 << 20),
        "TCP a1 -> b1 on blue (tc)\n{}",
        cluster.report()
    );
    // std moves to tc: the agent gives the pods back the TX checksum offload it took (and with
    // it TSO); GRO stays on, as tc's planes want it.
    cluster.update_state(STATE);
    for name in ["a1", "a2", "b1"] {
        let pod = cluster.pod(name);
        assert!(
            offload_on(pod, "eth0", "tx-checksumming")
                && offload_on(pod, "eth0", "tcp-segmentation-offload")
                && offload_on(pod, "eth0", "generic-receive-offload"),
            "{name} eth0 (std, now tc): TX checksum offload and TSO are back\n{}",
            cluster.agent_log("node-a")
        );
    }
    let (a1, b1) = (cluster.pod("a1"), cluster.pod("b1"));
    assert!(
        tcp_echo(a1, b1, pod_ip(&cluster.state, "b1", "std"), 8086, 4 << 20),
        "TCP a1 -> b1 on std (tc)\n{}",
        cluster.report()
    );
}
