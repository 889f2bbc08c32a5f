//! End to end, on the tc, the XDP and the AF_XDP datapath: services on a two-node cluster of
//! real agents. TCP and UDP clients on both nodes reach a service's three backends (one on the
//! client's node or not), every connection
//! to the backend its Maglev slot names and the shares the table's; the client only ever sees
//! the service's address; a backend reaching its own service (hairpin); an IP-level service
//! (every port, and ping); a backend's port unreachable reaching the client's socket from
//! the service's address; security groups on the translated connection; a backend removed
//! from the service while connections to it are open: they go on, and new connections never
//! reach it.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
};

use ctpath_testbed::{
    cluster::{pod_ip, Cluster, ClusterOptions},
    require_root,
    services::{
        expected_backend, maglev_shares, serve_name, tcp_answers, udp_answers, udp_refused, Answer,
        HeldConnection,
    },
    traffic::ping,
};

const WEB_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 53);
const BACKEND_PORT: u16 = 8080;

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
      - { direction: ingress, protocol: udp, ports: "8080", remote_group: client }
      # No server on port 9: the backend answers with port unreachable.
      - { direction: ingress, protocol: udp, ports: "9", remote_group: client }
      - { direction: ingress, protocol: tcp, ports: "8080", remote_group: web }
      # A backend reaching itself through the service is reached from the VIP (hairpin).
      - { direction: ingress, protocol: tcp, ports: "8080", remote_cidr: 10.96.0.10/32 }
      - { direction: ingress, protocol: icmp }
      - { direction: egress, protocol: any }
  - name: client
    rules:
      - { direction: egress, protocol: any }
  - name: other
    rules:
      - { direction: egress, protocol: any }
pods:
  - name: web-a
    node: node-a
    labels: { app: web }
    interfaces:
      - { network: std, host_interface: vweba, ip: 10.244.1.2, mac: "02:00:00:00:01:02", security_groups: [web] }
  - name: web-b1
    node: node-b
    labels: { app: web }
    interfaces:
      - { network: std, host_interface: vwebb1, ip: 10.244.2.2, mac: "02:00:00:00:02:02", security_groups: [web] }
  - name: web-b2
    node: node-b
    labels: { app: web }
    interfaces:
      - { network: std, host_interface: vwebb2, ip: 10.244.2.3, mac: "02:00:00:00:02:03", security_groups: [web] }
  - name: cli-a
    node: node-a
    interfaces:
      - { network: std, host_interface: vclia, ip: 10.244.1.3, mac: "02:00:00:00:01:03", security_groups: [client] }
  - name: cli-b
    node: node-b
    interfaces:
      - { network: std, host_interface: vclib, ip: 10.244.2.4, mac: "02:00:00:00:02:04", security_groups: [client] }
  - name: other-b
    node: node-b
    interfaces:
      - { network: std, host_interface: vothb, ip: 10.244.2.5, mac: "02:00:00:00:02:05", security_groups: [other] }
services:
  - name: web
    network: std
    vip: 10.96.0.10
    ports:
      - { port: 80, protocol: tcp, target_port: 8080 }
      - { port: 80, protocol: udp, target_port: 8080 }
    selector: { app: web }
  - name: dns
    network: std
    vip: 10.244.0.53
    all_ports: true
    backends:
      - { pod: web-b1 }
"#;

/// The backends of `web` named `pods`, by address.
fn web_backends(cluster: &Cluster, pods: &[&str]) -> BTreeMap<Ipv4Addr, String> {
    pods.iter()
        .map(|pod| (pod_ip(&cluster.state, pod, "std"), (*pod).to_owned()))
        .collect()
}

/// Checks that every answer came, from the backend the Maglev table of `backends` names for
/// its source port; returns how many each backend answered.
fn check_answers(
    answers: &[Option<Answer>],
    backends: &BTreeMap<Ipv4Addr, String>,
    client: Ipv4Addr,
    tcp: bool,
    what: &str,
) -> BTreeMap<String, usize> {
    let addresses: Vec<Ipv4Addr> = backends.keys().copied().collect();
    let mut counts = BTreeMap::new();
    for (i, answer) in answers.iter().enumerate() {
        let answer = answer
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: connection {i} got no answer"));
        let expected =
            expected_backend(&addresses, client, answer.source_port, WEB_VIP, 80, tcp).unwrap();
        assert_eq!(
            answer.backend, backends[&expected],
            "{what}: connection {i} from port {} went to another backend than its Maglev slot",
            answer.source_port
        );
        *counts.entry(answer.backend.clone()).or_insert(0) += 1;
    }
    counts
}

/// Checks the shares of `counts` (out of `total`) against the table's, within `tolerance`.
fn check_shares(
    counts: &BTreeMap<String, usize>,
    backends: &BTreeMap<Ipv4Addr, String>,
    total: usize,
    tolerance: f64,
) {
    let addresses: Vec<Ipv4Addr> = backends.keys().copied().collect();
    for (address, share) in addresses.iter().zip(maglev_shares(&addresses)) {
        let name = &backends[address];
        let seen = *counts.get(name).unwrap_or(&0) as f64 / total as f64;
        assert!(
            (seen - share).abs() <= tolerance,
            "{name}: {seen:.3} of the connections, the table gives it {share:.3} ({counts:?})"
        );
    }
}

#[test]
fn clients_on_both_nodes_are_spread_over_the_backends_by_maglev_on_tc() {
    require_root();
    spread_on("svc-tc", "tc");
}

#[test]
fn clients_on_both_nodes_are_spread_over_the_backends_by_maglev_on_xdp() {
    require_root();
    spread_on("svc-xdp", "xdp");
}

#[test]
fn clients_on_both_nodes_are_spread_over_the_backends_by_maglev_on_the_fast_path() {
    require_root();
    spread_on("svc-fast", "xdp, fast_path: true");
}

/// The whole test on a cluster whose plane is on `datapath` (the rest of the plane's line:
/// `fast_path: true` puts it on the AF_XDP forwarder, which must then have carried the
/// traffic, not the XDP programs in its place).
fn spread_on(label: &str, datapath: &str) {
    let state = STATE.replacen(
        "mtu: 1450 }",
        &format!("mtu: 1450, datapath: {datapath} }}"),
        1,
    );
    assert_ne!(state, STATE);
    let mut cluster = Cluster::start(label, &state, ClusterOptions::default());
    let stop = AtomicBool::new(false);
    let backends = web_backends(&cluster, &["web-a", "web-b1", "web-b2"]);
    let namespaces: Vec<_> = ["web-a", "web-b1", "web-b2"]
        .iter()
        .map(|pod| (cluster.pod(pod).ns().clone(), *pod))
        .collect();
    std::thread::scope(|scope| {
        let servers: Vec<_> = namespaces
            .iter()
            .map(|(ns, name)| serve_name(scope, ns, name, BACKEND_PORT, &stop))
            .collect();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            spread_and_churn(&mut cluster, &backends, &state);
            if datapath.contains("fast_path: true") {
                for node in ["node-a", "node-b"] {
                    let carried = forwarded_by_forwarder(&cluster, node);
                    assert!(
                        carried > 1000,
                        "{node}'s forwarder carried {carried} packets"
                    );
                }
            }
        }));
        stop.store(true, Ordering::Relaxed);
        for server in servers {
            server.join().expect("server");
        }
        if let Err(panic) = result {
            eprintln!("{}", cluster.report());
            std::panic::resume_unwind(panic);
        }
    });
}

/// Packets the AF_XDP forwarder of `node` forwarded, all workers together.
fn forwarded_by_forwarder(cluster: &Cluster, node: &str) -> u64 {
    let status = cluster
        .fast_path(node)
        .unwrap_or_else(|| panic!("{node} runs no forwarder"));
    status
        .report
        .workers
        .iter()
        .flat_map(|worker| worker.counters.values())
        .map(|count| count.packets)
        .sum()
}

fn spread_and_churn(cluster: &mut Cluster, backends: &BTreeMap<Ipv4Addr, String>, state: &str) {
    const CONNECTIONS: usize = 150;
    let mut total = BTreeMap::new();
    for client in ["cli-a", "cli-b"] {
        let ns = cluster.pod(client).ns().clone();
        let address = pod_ip(&cluster.state, client, "std");
        let tcp = tcp_answers(&ns, WEB_VIP, 80, CONNECTIONS);
        let udp = udp_answers(&ns, WEB_VIP, 80, CONNECTIONS);
        for (answers, tcp, what) in [(&tcp, true, "tcp"), (&udp, false, "udp")] {
            let what = format!("{client} {what}");
            for (name, n) in check_answers(answers, backends, address, tcp, &what) {
                *total.entry(name).or_insert(0) += n;
            }
        }
    }
    // 600 connections: the shares within 7 points of the table's (a share of a third has a
    // standard deviation of 1.9 points here).
    check_shares(&total, backends, 4 * CONNECTIONS, 0.07);

    // Hairpin: a backend reaching its own service, itself among the backends it may get (from
    // the VIP, which its group's rules allow).
    let web_a = cluster.pod("web-a").ns().clone();
    let web_a_ip = pod_ip(&cluster.state, "web-a", "std");
    let hairpin = tcp_answers(&web_a, WEB_VIP, 80, 30);
    let counts = check_answers(&hairpin, backends, web_a_ip, true, "hairpin web-a");
    assert!(
        counts.contains_key("web-a"),
        "no connection of web-a went to itself: {counts:?}"
    );

    // The IP-level service: every port, and ping, to its one backend.
    let cli_a = cluster.pod("cli-a").ns().clone();
    assert!(ping(&cli_a, DNS_VIP, 3, None), "ping the IP-level service");
    for answer in tcp_answers(&cli_a, DNS_VIP, BACKEND_PORT, 5)
        .into_iter()
        .chain(udp_answers(&cli_a, DNS_VIP, BACKEND_PORT, 5))
    {
        assert_eq!(
            answer.map(|answer| answer.backend).as_deref(),
            Some("web-b1")
        );
    }

    // ICMP errors about translated connections come from the service: web-b1's port
    // unreachable (no server on port 9) reaches the socket connected to the service, over
    // VXLAN (cli-a) and on web-b1's own node (cli-b).
    for client in ["cli-a", "cli-b"] {
        let ns = cluster.pod(client).ns().clone();
        assert!(
            udp_refused(&ns, DNS_VIP, 9),
            "{client}: no port unreachable from the service's address and port"
        );
    }

    // Security groups see the translated connection: `other` is no client of the backends.
    let other_b = cluster.pod("other-b").ns().clone();
    assert!(
        tcp_answers(&other_b, WEB_VIP, 80, 3)
            .iter()
            .all(Option::is_none),
        "a pod outside group client reached a backend through the service"
    );

    // A backend leaves the service while connections to it are open.
    let cli_b = cluster.pod("cli-b").ns().clone();
    let cli_b_ip = pod_ip(&cluster.state, "cli-b", "std");
    let mut held: Vec<HeldConnection> = Vec::new();
    while held.iter().filter(|c| c.answer.backend == "web-b2").count() < 3 {
        assert!(held.len() < 60, "no connections to web-b2");
        held.push(HeldConnection::open(&cli_b, WEB_VIP, 80).expect("connection"));
    }
    for connection in &mut held {
        assert!(
            connection.echoes(4096),
            "{:?} before the change",
            connection.answer
        );
    }
    let without_b2 = state.replacen(
        "  - name: web-b2\n    node: node-b\n    labels: { app: web }",
        "  - name: web-b2\n    node: node-b\n    labels: { app: retired }",
        1,
    );
    assert_ne!(without_b2, state);
    cluster.update_state(&without_b2);
    for connection in &mut held {
        assert!(
            connection.echoes(64 << 10),
            "{:?}: an established connection broke when its backend left the service",
            connection.answer
        );
    }
    let remaining = web_backends(cluster, &["web-a", "web-b1"]);
    let answers = tcp_answers(&cli_b, WEB_VIP, 80, 60);
    let counts = check_answers(&answers, &remaining, cli_b_ip, true, "after web-b2 left");
    assert!(!counts.contains_key("web-b2"), "{counts:?}");
}
