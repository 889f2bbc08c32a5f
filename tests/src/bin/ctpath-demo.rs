//! `ctpath-demo` (run by `scripts/demo`): a two-node ctpath cluster in network namespaces, built
//! from the embedded default state (`control/examples/two-node.yaml`), with pods on several
//! planes; flows across nodes and on one node that the state's security groups allow or block,
//! plane isolation, a service (`upf-gtpu`) whose new connections are spread by Maglev over its
//! backends on both nodes, a short 64-byte UDP flood, and a readable summary of what was sent,
//! what arrived, the datapath's counters and the rules that allowed traffic, and what the
//! AF_XDP forwarder, which carries the media plane (`fast_path: true`), reports.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use ctpath_dataplane::testing::FrameBuilder;
use ctpath_testbed::{
    cluster::{pod_ifname, pod_ip, Cluster, ClusterOptions},
    require_root,
    services::{expected_backend, maglev_shares, serve_name, udp_answers},
    traffic::{flood, ping, rx_packets, tcp_echo, udp_echo},
};

const STATE: &str = include_str!("../../../control/examples/two-node.yaml");
const FLOOD: Duration = Duration::from_secs(2);

/// A flow of the demo: (from, to, plane, protocol, port, expected to be delivered, why).
type Flow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u16,
    bool,
    &'static str,
);

const FLOWS: [Flow; 9] = [
    (
        "smf-0",
        "upf-1",
        "std",
        "udp",
        2152,
        true,
        "GTP-U: upf allows udp 2152 from group smf",
    ),
    (
        "upf-0",
        "smf-0",
        "std",
        "tcp",
        7777,
        true,
        "SBI: smf allows tcp 7777-7779 from anywhere",
    ),
    (
        "smf-0",
        "upf-0",
        "control",
        "udp",
        8805,
        true,
        "PFCP: upf allows udp 8805 from 10.245.0.0/16",
    ),
    (
        "probe-0",
        "upf-0",
        "std",
        "icmp",
        0,
        true,
        "upf allows icmp from anywhere",
    ),
    (
        "upf-0",
        "probe-0",
        "media",
        "tcp",
        5001,
        true,
        "probe-0's media interface has port security off",
    ),
    (
        "smf-0",
        "upf-1",
        "media",
        "udp",
        2152,
        false,
        "upf-1 on media: smf-0's media address is in no group",
    ),
    (
        "probe-0",
        "upf-1",
        "std",
        "tcp",
        22,
        false,
        "upf allows no tcp in",
    ),
    (
        "probe-0",
        "smf-0",
        "std",
        "udp",
        2152,
        false,
        "smf allows udp 2152 only from group upf",
    ),
    (
        "upf-0",
        "smf-0",
        "std",
        "icmp",
        0,
        false,
        "smf allows no icmp in",
    ),
];

fn main() -> ExitCode {
    require_root();
    println!(
        "ctpath demo: a two-node cluster in network namespaces (control/examples/two-node.yaml)"
    );
    let cluster = Cluster::start("demo", STATE, ClusterOptions::default());
    print_topology(&cluster);

    let ip = |pod, plane| pod_ip(&cluster.state, pod, plane);
    let mut failed = Vec::new();
    let mut checks = 0;
    let mut check = |what: String, expected: bool, worked: bool| {
        let verdict = if worked { "delivered" } else { "blocked" };
        let mark = if worked == expected { "ok  " } else { "FAIL" };
        println!("  [{mark}] {verdict:<9} {what}");
        checks += 1;
        if worked != expected {
            failed.push(what);
        }
    };

    println!("\ntraffic (each flow delivered or blocked as the state's security groups say)");
    for (from, to, plane, protocol, port, expected, why) in FLOWS {
        let (src, dst, target) = (cluster.pod(from), cluster.pod(to), ip(to, plane));
        let place = if src.node_name() == dst.node_name() {
            "same node"
        } else {
            "across nodes"
        };
        let worked = match protocol {
            "udp" => udp_echo(src, dst, target, port, 10) == 10,
            "tcp" => tcp_echo(src, dst, target, port, 256 << 10),
            _ => ping(src, target, 2, None),
        };
        let target = if port == 0 {
            to.to_owned()
        } else {
            format!("{to}:{port}")
        };
        check(
            format!("{protocol:<4} {from} -> {target} on {plane}, {place}: {why}"),
            expected,
            worked,
        );
    }
    // upf-1 is on std and media only: smf-0's control address is on a plane it has no
    // interface on; sent out of its std interface, it must not cross over.
    check(
        "icmp upf-1 -> smf-0's control address, sent on std: planes are isolated".into(),
        false,
        ping(
            cluster.pod("upf-1"),
            ip("smf-0", "control"),
            2,
            Some("eth0"),
        ),
    );

    let service = &cluster.state.services[0];
    let backends: Vec<_> = cluster
        .state
        .service_backends(service)
        .iter()
        .map(|(pod, interface)| (interface.ip, pod.name.clone(), pod.node.clone()))
        .collect();
    println!(
        "\nservice {} {}:2152/udp on std, {} backends; each new connection (a datagram from a new \
         port) goes to the backend of its Maglev slot",
        service.name,
        service.vip,
        backends.len()
    );
    let stop = AtomicBool::new(false);
    let (spread, from_probe) = std::thread::scope(|scope| {
        let servers: Vec<_> = backends
            .iter()
            .map(|(_, name, _)| serve_name(scope, cluster.pod(name).ns(), name, 2152, &stop))
            .collect();
        let spread = udp_answers(cluster.pod("smf-0").ns(), service.vip, 2152, 200);
        let from_probe = udp_answers(cluster.pod("probe-0").ns(), service.vip, 2152, 5);
        stop.store(true, Ordering::Relaxed);
        for server in servers {
            server.join().expect("service backend");
        }
        (spread, from_probe)
    });
    let addresses: Vec<Ipv4Addr> = backends.iter().map(|(ip, _, _)| *ip).collect();
    let smf0 = ip("smf-0", "std");
    let mut answered = BTreeMap::new();
    let mut as_predicted = 0;
    for answer in spread.iter().flatten() {
        *answered.entry(answer.backend.clone()).or_insert(0) += 1;
        let predicted = expected_backend(
            &addresses,
            smf0,
            answer.source_port,
            service.vip,
            2152,
            false,
        );
        let name = backends
            .iter()
            .find(|(ip, _, _)| Some(*ip) == predicted)
            .map(|(_, name, _)| name);
        as_predicted += usize::from(name == Some(&answer.backend));
    }
    for ((_, name, node), share) in backends.iter().zip(maglev_shares(&addresses)) {
        println!(
            "  {name:<6} on {node}: {:>3} of {} connections from smf-0 (its table share {:.1}%)",
            answered.get(name).unwrap_or(&0),
            spread.len(),
            100.0 * share
        );
    }
    let answers = spread.iter().flatten().count();
    check(
        format!(
            "udp  smf-0 -> {}:2152: {answers} of {} answered, {as_predicted} by their Maglev slot's backend, from the service's address",
            service.vip,
            spread.len()
        ),
        true,
        answers == spread.len() && as_predicted == answers && answered.len() == backends.len(),
    );
    check(
        format!(
            "udp  probe-0 -> {}:2152: the backends' group upf allows udp 2152 only from group smf",
            service.vip
        ),
        false,
        from_probe.iter().any(Option::is_some),
    );

    println!(
        "\n64-byte UDP flood upf-0 -> probe-0 on media across nodes, {} s, one sender thread",
        FLOOD.as_secs()
    );
    let (upf0, probe0) = (cluster.pod("upf-0"), cluster.pod("probe-0"));
    let frame = FrameBuilder::udp(
        [0x02, 0x00, 0x0a, 0xfa, 0x01, 0x02],
        [0x02, 0x00, 0x0a, 0xfa, 0x02, 0x03],
        ip("upf-0", "media"),
        ip("probe-0", "media"),
        40000,
        2152,
        &[0u8; 18],
    );
    assert_eq!(frame.len(), 60, "64 bytes on the wire with the FCS");
    let (out, into) = (
        pod_ifname(&cluster.state, "upf-0", "media"),
        pod_ifname(&cluster.state, "probe-0", "media"),
    );
    let before = rx_packets(probe0, &into);
    let sent = flood(upf0, &out, &frame, FLOOD);
    std::thread::sleep(Duration::from_millis(200));
    let received = rx_packets(probe0, &into) - before;
    let seconds = FLOOD.as_secs_f64();
    println!(
        "  sent {sent} ({:.2} Mpps), received {received} ({:.2} Mpps, {:.1}% of sent); the sender is the limit here,\n  \
         see ctpath-bench for the datapath's own figures",
        sent as f64 / seconds / 1e6,
        received as f64 / seconds / 1e6,
        100.0 * received as f64 / sent.max(1) as f64
    );

    // The agents write the forwarder's report once a second: let it cover the flood.
    std::thread::sleep(Duration::from_millis(1100));
    for node in cluster.ctpath_nodes() {
        println!(
            "\ncounters of {node} (ctpath status)\n{}",
            cluster.status(node)
        );
        match cluster.fast_path(node) {
            Some(fast_path) => print!("{fast_path}"),
            None => println!("fast path: no AF_XDP forwarder on {node} (no fast-path plane)"),
        }
        println!("security-group rules that allowed traffic on {node}");
        for rule in cluster
            .rule_hits(node)
            .iter()
            .filter(|rule| rule.tally.packets > 0)
        {
            println!("  {:<60} {:>8} packets", rule.label(), rule.tally.packets);
        }
    }
    if failed.is_empty() {
        println!("\nsummary: all {checks} checks as expected");
        ExitCode::SUCCESS
    } else {
        println!("\nsummary: {} of {checks} checks FAILED:", failed.len());
        for what in failed {
            println!("  {what}");
        }
        ExitCode::FAILURE
    }
}

fn print_topology(cluster: &Cluster) {
    println!("\nplanes");
    for network in &cluster.state.networks {
        let fast = if network.fast_path {
            " (fast_path: true: the AF_XDP forwarder's, see its report below)"
        } else {
            ""
        };
        println!(
            "  {:<8} VNI {:<5} {}{fast}",
            network.name, network.vni, network.cidr
        );
    }
    println!("nodes and pods (plane address [security groups])");
    for node in &cluster.state.nodes {
        println!("  {} (VTEP {})", node.name, node.underlay_ip);
        for pod in cluster
            .state
            .pods
            .iter()
            .filter(|pod| pod.node == node.name)
        {
            let interfaces: Vec<String> = pod
                .interfaces
                .iter()
                .map(|i| {
                    let groups = if !i.port_security {
                        " [port security off]".to_owned()
                    } else if i.security_groups.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", i.security_groups.join(", "))
                    };
                    format!("{} {}{groups}", i.network, i.ip)
                })
                .collect();
            println!("    {:<8} {}", pod.name, interfaces.join(", "));
        }
    }
}
