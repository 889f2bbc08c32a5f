//! End to end: two ctpath nodes whose agents follow the cluster state in a real etcd
//! (`ctpath agent --etcd`), written with `ctpath state apply`: traffic flows once they have
//! listed it, a pod added in etcd becomes reachable, a value that breaks the state is refused
//! (named by revision and key) while traffic goes on, etcd killed and started again leaves the
//! datapath forwarding and the agents pick up what was written after the restart, and a
//! compaction of the revisions they missed makes them list again; an agent started before the
//! state names its node waits for it.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use ctpath_testbed::{
    cluster::{pod_ip, Cluster, ClusterOptions},
    require_root,
    traffic::{ping, udp_echo},
};

const STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450 }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups: []
pods:
  - name: a1
    node: node-a
    interfaces:
      - { network: std, host_interface: va1s, ip: 10.244.1.2, mac: "02:00:0a:f4:01:02" }
  - name: b1
    node: node-b
    interfaces:
      - { network: std, host_interface: vb1s, ip: 10.244.2.2, mac: "02:00:0a:f4:02:02" }
"#;

/// `STATE` with a second pod on node-b.
fn with_b2() -> String {
    format!(
        "{STATE}  - name: b2
    node: node-b
    interfaces:
      - {{ network: std, host_interface: vb2s, ip: 10.244.2.3, mac: \"02:00:0a:f4:02:03\" }}
"
    )
}

const B2_KEY: &str = "/ctpath/v1/pods/default/b2";
const LOG_TIMEOUT: Duration = Duration::from_secs(20);

fn cluster_in_etcd(label: &str, state: &str) -> Cluster {
    let options = ClusterOptions {
        state_in_etcd: true,
        ..ClusterOptions::default()
    };
    Cluster::start(label, state, options)
}

/// Waits until every agent's log contains `needle`.
fn wait_for_logs(cluster: &Cluster, needle: &str) {
    let deadline = Instant::now() + LOG_TIMEOUT;
    for node in ["node-a", "node-b"] {
        while !cluster.agent_log(node).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log of {node}:\n{}",
                cluster.agent_log(node)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Both ways across the nodes, ICMP and UDP.
fn assert_traffic(cluster: &Cluster, from: &str, to: &str) {
    let to_ip = pod_ip(&cluster.state, to, "std");
    assert!(
        ping(cluster.pod(from), to_ip, 3, None),
        "{from} -> {to}\n{}",
        cluster.report()
    );
    assert_eq!(
        udp_echo(cluster.pod(from), cluster.pod(to), to_ip, 2152, 10),
        10,
        "UDP {from} -> {to}\n{}",
        cluster.report()
    );
}

#[test]
fn agents_converge_from_etcd_and_refuse_a_bad_value() {
    require_root();
    let mut cluster = cluster_in_etcd("etcdagent", STATE);
    let listed = cluster.etcd().revision();
    wait_for_logs(&cluster, &format!("listed at revision {listed}"));
    assert_traffic(&cluster, "a1", "b1");

    // A pod added in etcd: created on node-b, written with `state apply`, reachable.
    cluster.add_pods(&with_b2());
    let added = cluster.etcd().revision();
    wait_for_logs(
        &cluster,
        &format!("applied the new cluster state (etcd revision {added})"),
    );
    assert_traffic(&cluster, "a1", "b2");

    // b2's value moved outside its plane: refused at that revision, naming the key and path.
    let good = cluster
        .etcd()
        .etcdctl(&["get", "--print-value-only", B2_KEY]);
    let bad = good
        .trim()
        .replace("\"ip\":\"10.244.2.3\"", "\"ip\":\"10.9.0.5\"");
    assert_ne!(bad, good.trim());
    cluster.etcd().etcdctl(&["put", B2_KEY, &bad]);
    let refused = cluster.etcd().revision();
    wait_for_logs(
        &cluster,
        &format!(
            "refused etcd revision {refused}: invalid cluster state: {B2_KEY}: \
             interfaces[0].ip: 10.9.0.5 is outside network std (10.244.0.0/16); not applied, \
             the last good state stays in force"
        ),
    );
    // The last good state stays: traffic to b2 at its good address, and to b1, goes on.
    assert_traffic(&cluster, "a1", "b2");
    assert_traffic(&cluster, "b1", "a1");

    // The file applied again mends the key; the agents take the state in.
    cluster.update_state(&with_b2());
    assert_traffic(&cluster, "b2", "a1");
    // etcd ran throughout: one watch each, never lost (keep-alive within etcd's limits).
    for node in ["node-a", "node-b"] {
        let log = cluster.agent_log(node);
        assert!(!log.contains("connection to etcd lost"), "{node}:\n{log}");
    }
}

#[test]
fn agents_ride_out_an_etcd_restart_and_relist_after_compaction() {
    require_root();
    let mut cluster = cluster_in_etcd("etcdrestart", STATE);
    assert_traffic(&cluster, "a1", "b1");
    let etcd_ip: Ipv4Addr = cluster.state.nodes[0].underlay_ip;

    // etcd dies: the agents notice, the datapath keeps forwarding.
    let seen = cluster.etcd().revision();
    cluster.etcd().kill();
    wait_for_logs(&cluster, "connection to etcd lost");
    assert_traffic(&cluster, "a1", "b1");

    // etcd comes back on its data: the agents resume where they were and pick up a pod
    // written after the restart.
    cluster.etcd().start_again(etcd_ip);
    cluster.add_pods(&with_b2());
    wait_for_logs(
        &cluster,
        &format!("connection to etcd resumed at revision {seen}"),
    );
    assert_traffic(&cluster, "a1", "b2");

    // While the agents cannot reach etcd (it listens on loopback only), b2 is removed and the
    // revisions they missed compacted away: when etcd is back they list again and apply it.
    let before = cluster.states_taken_in();
    cluster.etcd().kill();
    cluster.etcd().start_again(Ipv4Addr::LOCALHOST);
    cluster.write_state(STATE);
    let removed = cluster.etcd().revision();
    cluster.etcd().etcdctl(&["compact", &removed.to_string()]);
    cluster.etcd().kill();
    cluster.etcd().start_again(etcd_ip);
    cluster.wait_taken_in(&before, STATE);
    wait_for_logs(
        &cluster,
        &format!("relisted after compaction at revision {removed}"),
    );
    assert_traffic(&cluster, "b1", "a1");
    let b2_ip: Ipv4Addr = "10.244.2.3".parse().unwrap();
    assert!(
        !ping(cluster.pod("a1"), b2_ip, 2, None),
        "b2 is no longer in the state, yet reachable\n{}",
        cluster.report()
    );
}

#[test]
fn an_agent_started_before_its_node_is_in_etcd_waits_for_it() {
    require_root();
    let mut cluster = cluster_in_etcd("etcdwait", STATE);
    assert!(cluster.stop_agent("node-b").success());
    // node-b leaves the state: its node and its pod.
    let keys = ["/ctpath/v1/nodes/node-b", "/ctpath/v1/pods/default/b1"];
    let values: Vec<String> = keys
        .iter()
        .map(|key| {
            cluster
                .etcd()
                .etcdctl(&["get", "--print-value-only", key])
                .trim()
                .to_owned()
        })
        .collect();
    for key in keys {
        cluster.etcd().etcdctl(&["del", key]);
    }
    // It comes back (as an operator registers a node) while its agent is starting.
    let (node_a, endpoint) = (
        cluster.node("node-a").ns().clone(),
        cluster.etcd().endpoint(),
    );
    let register = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        for (key, value) in keys.iter().zip(&values) {
            let endpoints = format!("--endpoints={endpoint}");
            node_a
                .exec(&["etcdctl", &endpoints, "put", key, value])
                .expect("etcdctl put");
        }
    });
    // Ready only once the state names it (within the fixture's start timeout).
    cluster.restart_agent("node-b");
    register.join().unwrap();
    let log = cluster.agent_log("node-b");
    assert!(
        log.contains("node \"node-b\" is not in the cluster state")
            && log.contains("waiting for a state this node can run"),
        "{log}"
    );
    assert_traffic(&cluster, "a1", "b1");
}
