//! Tests of the testbed itself: topologies come up as specified and always go away.
//!
//! They need root (`require_root`) and `ip`, `ethtool`, `ping`. Pod-to-pod traffic is not tested
//! here: it needs ctpath's XDP programs.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctpath_testbed::{
    require_root, Addressing, NodeHandle, PodHandle, PodInterfaceSpec, PodSpec, RawSocket, Testbed,
    TestbedError, Underlay,
};
use ipnet::Ipv4Net;

const UNDERLAY: &str = "192.168.77.0/24";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test IPv4 address")
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("test IPv4 prefix")
}

/// `ip netns list`, names only.
fn listed_namespaces() -> HashSet<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(out.status.success(), "ip netns list: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_gone(names: &[String]) {
    assert!(!names.is_empty());
    let listed = listed_namespaces();
    let left: Vec<_> = names.iter().filter(|n| listed.contains(*n)).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

fn stdout(ns: &ctpath_testbed::Netns, argv: &[&str]) -> String {
    let out = ns.exec(argv).expect("command in namespace");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ping(from: &NodeHandle, to: Ipv4Addr) {
    from.exec(&["ping", "-c1", "-W1", &to.to_string()])
        .unwrap_or_else(|e| panic!("ping {to} from {}: {e}", from.name()));
}

fn two_nodes(tb: &Testbed) -> (NodeHandle, NodeHandle, Underlay) {
    let a = tb.add_node("node-a").expect("node a");
    let b = tb.add_node("node-b").expect("node b");
    let underlay = tb
        .connect_underlay(&[&a, &b], net(UNDERLAY))
        .expect("underlay");
    (a, b, underlay)
}

/// Pod on node A: one OnLink interface with a gateway on the plane.
fn onlink_pod(tb: &Testbed, node: &NodeHandle) -> PodHandle {
    tb.add_pod(
        node,
        PodSpec {
            name: "pod-a".into(),
            interfaces: vec![PodInterfaceSpec {
                addressing: Addressing::OnLink {
                    gateway: Some(ip("10.244.0.1")),
                },
                ..PodInterfaceSpec::new("vpa0", ip("10.244.1.2"), 16, [0x02, 0, 0, 0, 0xa, 0])
            }],
        },
    )
    .expect("OnLink pod")
}

/// Pod on node B: HostRoute on the cluster plane, OnLink on a second (data) plane.
fn hostroute_pod(tb: &Testbed, node: &NodeHandle) -> PodHandle {
    tb.add_pod(
        node,
        PodSpec {
            name: "pod-b".into(),
            interfaces: vec![
                PodInterfaceSpec {
                    mtu: 1400,
                    addressing: Addressing::HostRoute {
                        gateway: ip("169.254.1.1"),
                    },
                    ..PodInterfaceSpec::new("vpb0", ip("10.244.2.3"), 16, [0x02, 0, 0, 0, 0xb, 0])
                },
                PodInterfaceSpec {
                    pod_ifname: Some("data0".into()),
                    ..PodInterfaceSpec::new("vpb1", ip("10.250.2.3"), 24, [0x02, 0, 0, 0, 0xb, 1])
                },
            ],
        },
    )
    .expect("HostRoute pod")
}

#[test]
fn two_nodes_underlay_and_pods() {
    require_root();
    let tb = Testbed::new("two_nodes_underlay_and_pods").expect("testbed");
    let (a, b, underlay) = two_nodes(&tb);

    // Underlay: addresses in node order, eth0, MTU 1500, a real veth between the two nodes.
    assert!(underlay.switch.is_none());
    let (pa, pb) = (a.underlay().expect("a port"), b.underlay().expect("b port"));
    assert_eq!(underlay.port(&a), Some(&pa));
    assert_eq!((pa.ip, pb.ip), (ip("192.168.77.1"), ip("192.168.77.2")));
    assert_eq!(
        (pa.ifname.as_str(), pa.prefix_len, pa.mtu),
        ("eth0", 24, 1500)
    );
    assert_eq!(pa.ifindex, a.ifindex("eth0").expect("ifindex"));
    assert_eq!(a.link("eth0").expect("link").mac, pa.mac);
    assert_ne!(pa.mac, pb.mac);
    ping(&a, pb.ip);
    ping(&b, pa.ip);

    let pod_a = onlink_pod(&tb, &a);
    let pod_b = hostroute_pod(&tb, &b);
    assert_eq!(pod_a.node_name(), "node-a");

    // OnLink: the plane prefix on eth0, default via the gateway.
    let ia = &pod_a.interfaces[0];
    assert_eq!(ia.pod_ifname, "eth0");
    assert_eq!(ia.mac, [0x02, 0, 0, 0, 0xa, 0]);
    assert_eq!(ia.host_ifindex, a.ifindex("vpa0").expect("host ifindex"));
    assert_eq!(ia.pod_ifindex, pod_a.ifindex("eth0").expect("pod ifindex"));
    assert_eq!(ia.host_mac, a.link("vpa0").expect("host link").mac);
    assert_eq!(ia.plane(), net("10.244.0.0/16"));
    let addrs = stdout(&pod_a, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("10.244.1.2/16"), "{addrs}");
    let routes = stdout(&pod_a, &["ip", "route"]);
    assert!(
        routes.contains("default via 10.244.0.1 dev eth0"),
        "{routes}"
    );
    assert!(routes.contains("10.244.0.0/16 dev eth0"), "{routes}");

    // HostRoute: /32, on-link gateway, plane via gateway, default on the first interface only.
    let ib = pod_b.interface("eth0").expect("eth0");
    assert_eq!((ib.mtu, ib.host_ifname.as_str()), (1400, "vpb0"));
    assert_eq!(b.link("vpb0").expect("host link").mtu, 1400);
    let addrs = stdout(&pod_b, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("10.244.2.3/32"), "{addrs}");
    let routes = stdout(&pod_b, &["ip", "route"]);
    for want in [
        "default via 169.254.1.1 dev eth0",
        "169.254.1.1 dev eth0 scope link",
        "10.244.0.0/16 via 169.254.1.1 dev eth0",
        "10.250.2.0/24 dev data0",
    ] {
        assert!(routes.contains(want), "missing {want:?} in\n{routes}");
    }
    assert_eq!(routes.matches("default").count(), 1, "{routes}");
    let data = pod_b.interface("data0").expect("data0");
    assert_eq!((data.mtu, data.host_ifname.as_str()), (1450, "vpb1"));

    // The pod side keeps the kernel's defaults (TX checksum offload on, GRO off); links up on
    // both sides.
    let features = stdout(&pod_b, &["ethtool", "-k", "data0"]);
    for want in ["tx-checksumming: on", "generic-receive-offload: off"] {
        assert!(features.contains(want), "missing {want:?} in\n{features}");
    }
    let host_link = stdout(&b, &["ip", "-o", "link", "show", "dev", "vpb1"]);
    assert!(host_link.contains("state UP"), "{host_link}");

    // IPv6 is off everywhere: no link-local addresses, hence no RS/DAD noise.
    for ns in [a.ns(), b.ns(), pod_a.ns(), pod_b.ns()] {
        let v6 = stdout(ns, &["ip", "-6", "addr"]);
        assert!(v6.trim().is_empty(), "{}: {v6}", ns.name());
        let all = stdout(ns, &["sysctl", "-n", "net.ipv6.conf.all.disable_ipv6"]);
        assert_eq!(all.trim(), "1", "{}", ns.name());
    }

    // Nothing was created in the root namespace.
    let root_links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    let root_links = String::from_utf8_lossy(&root_links.stdout);
    for ifname in ["vpa0", "vpb0", "vpb1"] {
        assert!(!root_links.contains(&format!(": {ifname}")), "{root_links}");
    }
}

#[test]
fn three_nodes_share_a_switch() {
    require_root();
    let tb = Testbed::new("three_nodes_share_a_switch").expect("testbed");
    let nodes: Vec<_> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| tb.add_node(n).expect("node"))
        .collect();
    let refs: Vec<_> = nodes.iter().collect();
    let spec = ctpath_testbed::UnderlaySpec {
        ifname: "uplink".into(),
        mtu: 9000,
        ..ctpath_testbed::UnderlaySpec::new(net("172.30.0.0/29"))
    };
    let underlay = tb.connect_underlay_with(&refs, &spec).expect("underlay");
    let switch = underlay.switch.as_ref().expect("switch namespace");
    assert!(switch.name().starts_with(tb.prefix()));
    let ports = stdout(switch, &["ip", "-o", "link", "show", "master", "br0"]);
    assert_eq!(ports.lines().count(), 3, "{ports}");
    for (i, node) in nodes.iter().enumerate() {
        let port = node.underlay().expect("port");
        assert_eq!(
            port.ip,
            Ipv4Addr::from(u32::from(ip("172.30.0.1")) + i as u32)
        );
        assert_eq!((port.ifname.as_str(), port.mtu), ("uplink", 9000));
    }
    ping(&nodes[0], nodes[2].underlay().expect("port").ip);
    ping(&nodes[2], nodes[1].underlay().expect("port").ip);

    // A /30 has two host addresses: a third node does not fit.
    let x = tb.add_node("x").expect("node");
    let y = tb.add_node("y").expect("node");
    let z = tb.add_node("z").expect("node");
    let err = tb
        .connect_underlay(&[&x, &y, &z], net("10.9.9.0/30"))
        .expect_err("subnet too small");
    assert!(
        matches!(err, TestbedError::SubnetTooSmall { index: 2, .. }),
        "{err}"
    );
}

#[test]
fn drop_removes_every_namespace() {
    require_root();
    let tb = Testbed::new("drop_removes_every_namespace").expect("testbed");
    let (a, b, _) = two_nodes(&tb);
    onlink_pod(&tb, &a);
    hostroute_pod(&tb, &b);
    let names = tb.namespace_names();
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|n| n.starts_with(tb.prefix())));
    let listed = listed_namespaces();
    assert!(
        names.iter().all(|n| listed.contains(n)),
        "{names:?} {listed:?}"
    );
    drop(tb);
    assert_gone(&names);
    // Handles outlive the testbed; using them is an error, not a panic.
    assert!(a.exec(&["true"]).is_err());
}

#[test]
fn panic_while_building_still_cleans_up() {
    require_root();
    let names = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&names);
    let result = catch_unwind(AssertUnwindSafe(move || {
        let tb = Testbed::new("panic_while_building_still_cleans_up").expect("testbed");
        let (a, _b, _) = two_nodes(&tb);
        onlink_pod(&tb, &a);
        *seen.lock().expect("lock") = tb.namespace_names();
        panic!("deliberate panic with a testbed alive");
    }));
    assert!(result.is_err());
    let names = names.lock().expect("lock").clone();
    assert_eq!(names.len(), 3);
    assert_gone(&names);
}

#[test]
fn two_testbeds_coexist() {
    require_root();
    let one = Testbed::new("two_testbeds_coexist/1").expect("testbed 1");
    let two = Testbed::new("two_testbeds_coexist/2").expect("testbed 2");
    assert_ne!(one.prefix(), two.prefix());
    // Same node names, same subnet, same interface names: no clash.
    let (a1, _, u1) = two_nodes(&one);
    let (a2, _, u2) = two_nodes(&two);
    onlink_pod(&one, &a1);
    onlink_pod(&two, &a2);
    let names1 = one.namespace_names();
    let names2 = two.namespace_names();
    assert!(names1.iter().all(|n| !names2.contains(n)));
    ping(&a1, u1.ports[1].ip);
    ping(&a2, u2.ports[1].ip);

    drop(one);
    assert_gone(&names1);
    ping(&a2, u2.ports[1].ip);
    let listed = listed_namespaces();
    assert!(names2.iter().all(|n| listed.contains(n)));
}

#[test]
fn duplicate_and_invalid_names_are_rejected() {
    require_root();
    let tb = Testbed::new("duplicate_and_invalid_names_are_rejected").expect("testbed");
    let a = tb.add_node("a").expect("node");
    let err = tb.add_node("a").expect_err("duplicate");
    assert!(matches!(err, TestbedError::DuplicateName { .. }), "{err}");
    let err = tb.add_node("no spaces").expect_err("invalid");
    assert!(matches!(err, TestbedError::InvalidName { .. }), "{err}");
    let err = tb
        .add_pod(
            &a,
            PodSpec {
                name: "p".into(),
                interfaces: vec![PodInterfaceSpec::new(
                    "a-very-long-host-ifname",
                    ip("10.0.0.2"),
                    24,
                    [2, 0, 0, 0, 0, 1],
                )],
            },
        )
        .expect_err("ifname too long");
    assert!(err.to_string().contains("a-very-long-host-ifname"), "{err}");
    // Rejected before anything was created.
    assert_eq!(tb.namespace_names().len(), 1);
}

#[test]
fn raw_socket_carries_frames_from_pod_to_host_side() {
    require_root();
    let tb = Testbed::new("raw_socket_carries_frames_from_pod_to_host_side").expect("testbed");
    let (a, _, _) = two_nodes(&tb);
    let pod = onlink_pod(&tb, &a);
    let itf = &pod.interfaces[0];

    let host_side = RawSocket::open(a.ns(), &itf.host_ifname).expect("host-side socket");
    assert_eq!(host_side.ifindex(), itf.host_ifindex);
    let pod_side = RawSocket::open(pod.ns(), &itf.pod_ifname).expect("pod-side socket");

    // A well-formed frame with a marker payload (IEEE local experimental ethertype).
    let mut frame = Vec::new();
    frame.extend_from_slice(&itf.host_mac);
    frame.extend_from_slice(&itf.mac);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend_from_slice(b"ctpath-testbed marker");
    frame.resize(64, 0xee);
    // A malformed one: IPv4 ethertype, 4 bytes of a header that claims 20.
    let mut runt = frame[..12].to_vec();
    runt.extend_from_slice(&[0x08, 0x00, 0x45, 0x00, 0x00, 0x54]);

    for sent in [&frame, &runt] {
        pod_side.send(sent).expect("send");
        let got = std::iter::from_fn(|| host_side.recv_timeout(Duration::from_secs(2)))
            .find(|f| f == sent);
        assert_eq!(got.as_ref(), Some(sent), "frame not received on host side");
    }
    // The sending socket does not see its own frames.
    assert_eq!(pod_side.recv_timeout(Duration::from_millis(50)), None);
}

#[test]
fn spawned_processes_die_with_guard_and_testbed() {
    require_root();
    let tb = Testbed::new("spawned_processes_die_with_guard_and_testbed").expect("testbed");
    let a = tb.add_node("a").expect("node");

    let guard = a.spawn(&["sleep", "1000"]).expect("spawn");
    let pid = guard.pid();
    // `ip netns exec` enters the namespace just after `spawn` returns: give it a moment.
    let entered = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        a.pids().expect("pids").contains(&pid)
    });
    assert!(entered, "spawned process never showed up in the namespace");
    drop(guard);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());

    // A guard still alive when the testbed goes: the testbed kills the process.
    let mut straggler = a.spawn(&["sleep", "1000"]).expect("spawn");
    assert_eq!(
        straggler
            .wait_timeout(Duration::from_millis(50))
            .expect("wait"),
        None
    );
    drop(tb);
    let status = straggler
        .wait_timeout(Duration::from_secs(5))
        .expect("wait")
        .expect("straggler killed by the testbed drop");
    assert!(!status.success());
}

#[test]
fn exec_errors_name_the_command_and_run_in_enters_the_namespace() {
    require_root();
    let tb = Testbed::new("exec_errors_name_the_command").expect("testbed");
    let a = tb.add_node("a").expect("node");

    let err = a
        .exec(&["ip", "link", "show", "dev", "nope0"])
        .expect_err("no such device");
    let msg = err.to_string();
    assert!(matches!(err, TestbedError::Command { .. }), "{msg}");
    assert!(msg.contains(a.name()) && msg.contains("nope0"), "{msg}");
    let out = a.exec_unchecked(&["false"]).expect("runs");
    assert!(!out.status.success());

    assert_eq!(a.ifindex("lo").expect("lo"), 1);
    let err = a.ifindex("eth0").expect_err("no eth0 yet");
    assert!(matches!(err, TestbedError::NoSuchInterface { .. }), "{err}");
    // sysctl (through run_in) writes the node's value, as `ip netns exec … sysctl` sees it, and
    // run_in reads it back from inside; the root namespace keeps its own.
    let root_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("root");
    let toggled = if root_before.trim() == "1" { "0" } else { "1" };
    a.sysctl("net.ipv4.ip_forward", toggled).expect("sysctl");
    let seen = stdout(&a, &["sysctl", "-n", "net.ipv4.ip_forward"]);
    assert_eq!(seen.trim(), toggled);
    let fwd = a
        .run_in(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward"))
        .expect("run_in")
        .expect("read sysctl");
    assert_eq!(fwd.trim(), toggled);
    let root_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("root");
    assert_eq!(root_after, root_before);
    let panicked = catch_unwind(AssertUnwindSafe(|| a.run_in(|| panic!("inside the netns"))));
    assert!(panicked.is_err(), "a panic in run_in reaches the caller");
}

#[test]
fn stale_namespaces_of_dead_processes_are_swept() {
    require_root();
    // A namespace named like a testbed's, with the pid of a child we started and reaped (so no
    // live process has it). A concurrent `Testbed::new` (other tests, other processes) may sweep
    // it at any moment, even while `ip netns add` is still mounting it, which fails the add:
    // retry with a fresh pid then.
    let created = (0..5).find_map(|_| {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("reap");
        let stale = format!("ct{dead}x0-stale");
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &stale])
            .output()
            .expect("ip netns add");
        out.status.success().then_some(stale)
    });
    let stale = created.expect("could not create a stale-looking namespace");

    let _tb = Testbed::new("stale_namespaces_of_dead_processes_are_swept").expect("testbed");
    assert_gone(&[stale]);
}
