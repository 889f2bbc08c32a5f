//! End to end: security-group rules naming a service as their remote side (`remote_service`),
//! on a two-node cluster of real agents. The database pod admits only the web service's
//! backends; a client whose only rule is egress to the web service reaches it through its
//! virtual IP (the rule sees the translated packet, so the chosen backend's address and target
//! port) and nothing else; the rules' hit counters count those connections; a backend leaving
//! the service and a pod joining it move the rules with them while the agents run.

use std::net::{Ipv4Addr, SocketAddrV4};

use ctpath_common::DropReason;
use ctpath_testbed::{
    cluster::{pod_ip, Cluster, ClusterOptions},
    require_root,
    traffic::{tcp_echo, tcp_echo_client, with_tcp_echo_servers},
};

const STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450 }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups:
  - name: db
    rules:
      - { direction: ingress, protocol: tcp, ports: "5432", remote_service: web }
  - name: web-client
    rules:
      - { direction: egress, protocol: tcp, ports: "8080", remote_service: web }
pods:
  - name: web-a
    node: node-a
    labels: { app: web }
    interfaces:
      - { network: std, host_interface: vweba, ip: 10.244.1.2, mac: "02:00:00:00:01:02" }
  - name: web-b
    node: node-b
    labels: { app: WEB_B_APP }
    interfaces:
      - { network: std, host_interface: vwebb, ip: 10.244.2.2, mac: "02:00:00:00:02:02" }
  - name: db-a
    node: node-a
    interfaces:
      - { network: std, host_interface: vdba, ip: 10.244.1.3, mac: "02:00:00:00:01:03", security_groups: [db] }
  - name: other-b
    node: node-b
    labels: { app: OTHER_B_APP }
    interfaces:
      - { network: std, host_interface: vothb, ip: 10.244.2.3, mac: "02:00:00:00:02:03" }
  - name: cli-b
    node: node-b
    interfaces:
      - { network: std, host_interface: vclib, ip: 10.244.2.4, mac: "02:00:00:00:02:04", security_groups: [web-client] }
services:
  - name: web
    network: std
    vip: 10.96.0.10
    ports: [{ port: 80, protocol: tcp, target_port: 8080 }]
    selector: { app: web }
"#;

/// `STATE` with web-b's and other-b's `app` labels (the service selects `app: web`).
fn state(web_b_app: &str, other_b_app: &str) -> String {
    STATE
        .replace("WEB_B_APP", web_b_app)
        .replace("OTHER_B_APP", other_b_app)
}

const VIP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 10), 80);
const DB_PORT: u16 = 5432;
const WEB_PORT: u16 = 8080;

/// Whether `from` completes a TCP echo through the web service's VIP, each of `backends`
/// listening on the target port.
fn through_the_service(cluster: &Cluster, from: &str, backends: &[&str]) -> bool {
    let servers: Vec<_> = backends
        .iter()
        .map(|pod| (cluster.pod(pod).ns(), pod_ip(&cluster.state, pod, "std")))
        .collect();
    with_tcp_echo_servers(&servers, WEB_PORT, || {
        tcp_echo_client(cluster.pod(from).ns(), VIP, 16 << 10)
    })
}

/// Whether `from` completes a TCP echo with pod `to` at its address and `port`.
fn direct(cluster: &Cluster, from: &str, to: &str, port: u16) -> bool {
    let ip = pod_ip(&cluster.state, to, "std");
    tcp_echo(
        cluster.pod(from).ns(),
        cluster.pod(to).ns(),
        ip,
        port,
        16 << 10,
    )
}

/// Packets the rule `group[index]` allowed on `node`, checking its description too.
fn rule_packets(
    cluster: &Cluster,
    node: &str,
    group: &str,
    index: usize,
    description: &str,
) -> u64 {
    let hits = cluster.rule_hits(node);
    let rule = hits
        .iter()
        .find(|hits| hits.group == group && hits.index == index)
        .unwrap_or_else(|| panic!("no rule {group}[{index}] on {node}: {hits:?}"));
    assert_eq!(rule.description, description);
    rule.tally.packets
}

#[test]
fn rules_naming_a_service_admit_its_backends_and_follow_its_membership() {
    require_root();
    let mut cluster = Cluster::start("rsvc", &state("web", "batch"), ClusterOptions::default());

    // db-a admits the service's backends, on its node and across nodes, and no other pod.
    assert!(
        direct(&cluster, "web-b", "db-a", DB_PORT),
        "backend across nodes -> db\n{}",
        cluster.report()
    );
    assert!(
        direct(&cluster, "web-a", "db-a", DB_PORT),
        "backend on the same node -> db"
    );
    let denied_before = cluster
        .status("node-a")
        .dropped(DropReason::PolicyDeniedIngress)
        .packets;
    assert!(
        !direct(&cluster, "other-b", "db-a", DB_PORT),
        "a pod outside the service -> db"
    );
    let denied = cluster
        .status("node-a")
        .dropped(DropReason::PolicyDeniedIngress)
        .packets;
    assert!(denied > denied_before, "{}", cluster.report());
    let db_rule = "ingress tcp 5432 from service web";
    assert!(rule_packets(&cluster, "node-a", "db", 0, db_rule) > 0);

    // cli-b may reach the web service: through its VIP (the rule matches the backend the
    // connection is given, on the target port), or a backend directly; no other pod.
    for attempt in 0..3 {
        assert!(
            through_the_service(&cluster, "cli-b", &["web-a", "web-b"]),
            "client -> VIP, connection {attempt}\n{}",
            cluster.report()
        );
    }
    assert!(
        direct(&cluster, "cli-b", "web-a", WEB_PORT),
        "client -> a backend"
    );
    let denied_before = cluster
        .status("node-b")
        .dropped(DropReason::PolicyDeniedEgress)
        .packets;
    assert!(
        !direct(&cluster, "cli-b", "other-b", WEB_PORT),
        "client -> a pod outside the service"
    );
    assert!(!direct(&cluster, "cli-b", "db-a", DB_PORT), "client -> db");
    let denied = cluster
        .status("node-b")
        .dropped(DropReason::PolicyDeniedEgress)
        .packets;
    assert!(denied >= denied_before + 2, "{}", cluster.report());
    let client_rule = "egress tcp 8080 to service web";
    let client_hits = rule_packets(&cluster, "node-b", "web-client", 0, client_rule);
    assert!(client_hits > 0);

    // web-b leaves the service, other-b joins it: both rules follow, on both nodes.
    cluster.update_state(&state("batch", "web"));
    let ip = |pod| pod_ip(&cluster.state, pod, "std");
    assert_eq!(
        cluster
            .state
            .service_members(cluster.state.service("web").unwrap()),
        [*VIP.ip(), ip("other-b"), ip("web-a")],
        "the edit moved the labels (backends in name order)"
    );
    assert!(
        !direct(&cluster, "web-b", "db-a", DB_PORT),
        "web-b after leaving the service -> db\n{}",
        cluster.report()
    );
    assert!(
        direct(&cluster, "other-b", "db-a", DB_PORT),
        "other-b after joining the service -> db\n{}",
        cluster.report()
    );
    assert!(
        !direct(&cluster, "cli-b", "web-b", WEB_PORT),
        "client -> web-b after it left the service"
    );
    for attempt in 0..3 {
        assert!(
            through_the_service(&cluster, "cli-b", &["web-a", "other-b"]),
            "client -> VIP after the change, connection {attempt}\n{}",
            cluster.report()
        );
    }
    assert!(rule_packets(&cluster, "node-b", "web-client", 0, client_rule) > client_hits);
}
