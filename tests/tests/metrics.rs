//! End to end: what a node's agent tells its operator. Agents run with `--metrics`; traffic
//! allowed by a security-group rule and traffic it denies move the forwarded, dropped and
//! rule-hit counters of `/metrics`, which agree with `ctpath status --json` read between two
//! scrapes; the applies (a new state, an invalid one) and the etcd revision of the state in
//! force show there too. Agents under `ip netns exec` (a bpffs of their own) are read by
//! `ctpath status` from the host's mount namespace and from another one, and when the agent
//! is gone the error says what was tried. On a fast-path plane the AF_XDP forwarder's workers
//! and sockets are exported, and its rule hits counted with the programs'.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::Output,
    time::{Duration, Instant},
};

use ctpath_common::{Counter, DropReason};
use ctpath_testbed::{
    cluster::{ctpath_binary, pod_ip, Cluster, ClusterOptions},
    require_root,
    traffic::{ping, tcp_echo, udp_echo},
    Netns,
};
use serde_json::Value;

/// Every agent listens on this address in its node's network namespace.
const METRICS: &str = "127.0.0.1:9464";

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
  - name: client
    rules:
      - { direction: egress, protocol: any }
pods:
  - name: web-a
    node: node-a
    interfaces:
      - { network: std, host_interface: vweba, ip: 10.244.1.2, mac: "02:00:00:00:01:02", security_groups: [web] }
  - name: cli-b
    node: node-b
    interfaces:
      - { network: std, host_interface: vclib, ip: 10.244.2.2, mac: "02:00:00:00:02:02", security_groups: [client] }
  - name: other-b
    node: node-b
    interfaces:
      - { network: std, host_interface: vothb, ip: 10.244.2.3, mac: "02:00:00:00:02:03" }
"#;

/// The allowed connections' rule on node-a, as its `description` label and status name it.
const WEB_RULE: &str = "ingress tcp 8080 from group client";

fn metrics_options() -> ClusterOptions {
    ClusterOptions {
        agent_args: vec!["--metrics".into(), METRICS.into()],
        ..ClusterOptions::default()
    }
}

/// `GET /metrics` from the agent of the node whose namespace is `node`: the status code and
/// the body.
fn scrape(node: &Netns) -> (u16, String) {
    node.run_in(|| {
        let mut stream = TcpStream::connect(METRICS).expect("connect to /metrics");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {METRICS}\r\n\r\n").expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head and body");
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status code in {head:?}"));
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4") || code != 200,
            "{head}"
        );
        (code, body.to_owned())
    })
    .expect("enter the node's namespace")
}

/// A scrape that succeeded.
fn metrics(node: &Netns) -> String {
    let (code, body) = scrape(node);
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of the sample `series` (`name{labels}` as exposed), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a sample's value"))
}

fn counter(text: &str, family: &str, label: &str, name: &str) -> u64 {
    let series = format!("{family}{{{label}=\"{name}\"}}");
    sample(text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}")) as u64
}

fn rule_packets(text: &str, group: &str, index: usize, description: &str) -> u64 {
    let series = format!(
        "ctpath_rule_packets_total{{group=\"{group}\",rule=\"{index}\",description=\"{description}\"}}"
    );
    sample(text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}")) as u64
}

/// `ctpath status ARGS` for `node` of `cluster`, run through `run` (on the host, or inside a
/// namespace).
fn status_command(cluster: &Cluster, node: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        ctpath_binary().display().to_string(),
        "status".into(),
        "--node".into(),
        node.into(),
        "--pin-dir".into(),
        cluster.pin_dir(node).display().to_string(),
        "--run-dir".into(),
        cluster.run_dir(node).display().to_string(),
    ];
    argv.extend(args.iter().map(|arg| arg.to_string()));
    argv
}

fn run_on_host(argv: &[String]) -> Output {
    std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .expect("run ctpath status")
}

fn json_status(cluster: &Cluster, node: &str, state: &Path) -> Value {
    let argv = status_command(
        cluster,
        node,
        &["--json", "--state", state.to_str().expect("utf-8 path")],
    );
    let output = run_on_host(&argv);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
}

/// Polls `/metrics` of `node` until `done` holds for it.
fn wait_for_metrics(node: &Netns, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics(node);
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_move_with_traffic_and_agree_with_status() {
    require_root();
    let mut cluster = Cluster::start("metrics", STATE, metrics_options());
    let state_file = tempfile::NamedTempFile::new().expect("state file");
    std::fs::write(state_file.path(), STATE).expect("write the state");
    let node_a = cluster.node("node-a").ns().clone();
    let web = pod_ip(&cluster.state, "web-a", "std");
    let (web_a, cli_b, other_b) = (
        cluster.pod("web-a").ns().clone(),
        cluster.pod("cli-b").ns().clone(),
        cluster.pod("other-b").ns().clone(),
    );

    let before = metrics(&node_a);
    assert_eq!(
        sample(&before, "ctpath_applies_total{result=\"applied\"}"),
        Some(1.0),
        "the first state\n{before}"
    );
    assert_eq!(
        sample(&before, "ctpath_last_apply_result{result=\"applied\"}"),
        Some(1.0)
    );
    assert!(sample(&before, "ctpath_last_apply_duration_seconds").is_some_and(|s| s > 0.0));
    assert_eq!(
        sample(&before, "ctpath_state_revision"),
        None,
        "a file has no revision\n{before}"
    );
    assert_eq!(
        sample(&before, "ctpath_conntrack_entries_limit"),
        Some(f64::from(cluster.state.conntrack.max_entries))
    );

    assert!(
        tcp_echo(&cli_b, &web_a, web, 8080, 16 << 10),
        "client -> web:8080 is allowed\n{}",
        cluster.report()
    );
    assert!(
        !tcp_echo(&other_b, &web_a, web, 8080, 1024),
        "a pod outside group client -> web:8080 is denied"
    );
    // What the connections leave behind (FIN, ACK) is through before the readings.
    std::thread::sleep(Duration::from_millis(500));

    let first = metrics(&node_a);
    let json = json_status(&cluster, "node-a", state_file.path());
    let second = metrics(&node_a);

    let decapsulated = Counter::UnderlayDecapsulated.name();
    let denied = DropReason::PolicyDeniedIngress.name();
    let forwarded = "ctpath_forwarded_packets_total";
    let dropped = "ctpath_dropped_packets_total";
    assert!(
        counter(&first, forwarded, "kind", decapsulated)
            > counter(&before, forwarded, "kind", decapsulated),
        "VXLAN delivered to web-a is counted\n{first}"
    );
    assert!(
        counter(&first, dropped, "reason", denied) > counter(&before, dropped, "reason", denied),
        "the denied SYNs are counted\n{first}"
    );
    assert!(
        rule_packets(&first, "web", 0, WEB_RULE) > rule_packets(&before, "web", 0, WEB_RULE),
        "the allowed connection counts towards its rule\n{first}"
    );

    // status --json, read between the two scrapes, lies between them, counter by counter.
    let between = |label: &str, first: u64, status: u64, second: u64| {
        assert!(
            first <= status && status <= second,
            "{label}: /metrics {first}, then status {status}, then /metrics {second}"
        );
    };
    for kind in Counter::ALL {
        let name = kind.name();
        between(
            name,
            counter(&first, forwarded, "kind", name),
            json["forwarded"][name]["packets"]
                .as_u64()
                .expect("packets"),
            counter(&second, forwarded, "kind", name),
        );
        between(
            name,
            counter(&first, "ctpath_forwarded_bytes_total", "kind", name),
            json["forwarded"][name]["bytes"].as_u64().expect("bytes"),
            counter(&second, "ctpath_forwarded_bytes_total", "kind", name),
        );
    }
    for reason in DropReason::ALL {
        let name = reason.name();
        between(
            name,
            counter(&first, dropped, "reason", name),
            json["dropped"][name]["packets"].as_u64().expect("packets"),
            counter(&second, dropped, "reason", name),
        );
    }
    let rules = json["rules"].as_array().expect("rules with --state");
    assert_eq!(rules.len(), 3, "{json}");
    for rule in rules {
        let (group, index, description) = (
            rule["group"].as_str().expect("group"),
            rule["index"].as_u64().expect("index") as usize,
            rule["description"].as_str().expect("description"),
        );
        between(
            &format!("{group}[{index}]"),
            rule_packets(&first, group, index, description),
            rule["packets"].as_u64().expect("packets"),
            rule_packets(&second, group, index, description),
        );
    }
    assert!(
        rules[0]["packets"].as_u64() > Some(0) && rules[0]["description"] == WEB_RULE,
        "{json}"
    );
    let live = sample(&first, "ctpath_conntrack_entries{state=\"live\"}").expect("live");
    let expired = sample(&first, "ctpath_conntrack_entries{state=\"expired\"}").expect("expired");
    assert_eq!(
        json["conntrack"]["entries"].as_f64(),
        Some(live + expired),
        "no connection started or was collected since\n{first}"
    );
    assert!(live >= 1.0, "the allowed connection is tracked\n{first}");
    assert_eq!(json["node"], "node-a");
    assert_eq!(json["fast_path"], Value::Null, "no fast-path plane");

    // A new state, then one that does not validate: both show in the applies.
    let icmp_only = STATE.replace(
        "      - { direction: ingress, protocol: tcp, ports: \"8080\", remote_group: client }\n",
        "",
    );
    cluster.update_state(&icmp_only);
    let text = wait_for_metrics(&node_a, "the new state applied", |text| {
        sample(text, "ctpath_applies_total{result=\"applied\"}") == Some(2.0)
    });
    // The rules of the state in force label the hits (counted by a rule's position among the
    // state's rules: the count at web[0] is the tcp rule's, kept).
    assert!(
        sample(&text, "ctpath_rule_packets_total{group=\"web\",rule=\"0\",description=\"ingress icmp from anywhere\"}").is_some()
            && !text.contains(WEB_RULE),
        "{text}"
    );
    cluster.write_state_unchecked("version: 1\nnetworks: [oops\n");
    let text = wait_for_metrics(&node_a, "the invalid state refused", |text| {
        sample(text, "ctpath_applies_total{result=\"invalid\"}") == Some(1.0)
    });
    assert_eq!(
        sample(&text, "ctpath_last_apply_result{result=\"invalid\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "ctpath_last_apply_result{result=\"applied\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "ctpath_applies_total{result=\"applied\"}"),
        Some(2.0)
    );

    // A second agent for the node, on the address the first one serves: it stops at start,
    // before it touches anything (no pid file in its run directory).
    let run_dir = tempfile::tempdir().expect("run dir");
    let binary = ctpath_binary();
    let output = node_a
        .exec_unchecked(&[
            binary.to_str().expect("utf-8 path"),
            "agent",
            "--state",
            state_file.path().to_str().expect("utf-8 path"),
            "--node",
            "node-a",
            "--pin-dir",
            "/sys/fs/bpf/ctpath/metrics-second-agent",
            "--run-dir",
            run_dir.path().to_str().expect("utf-8 path"),
            "--metrics",
            METRICS,
        ])
        .expect("run a second agent");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("--metrics {METRICS}: cannot listen there"))
            && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(std::fs::read_dir(run_dir.path())
        .expect("run dir")
        .next()
        .is_none());
    assert_eq!(scrape(&node_a).0, 200, "the running agent still serves");
}

#[test]
fn status_reads_an_agent_in_its_own_mount_namespace_from_any_other() {
    require_root();
    let options = ClusterOptions {
        state_in_etcd: true,
        own_mounts: true,
        ..metrics_options()
    };
    let mut cluster = Cluster::start("metrics-mounts", STATE, options);
    let web = pod_ip(&cluster.state, "web-a", "std");
    assert!(
        ping(cluster.pod("other-b"), web, 3, None),
        "ICMP from anywhere"
    );
    assert!(
        !Path::new(&cluster.pin_dir("node-a")).exists(),
        "the agent's pins are not in the host's mount namespace"
    );

    // From the host's mount namespace.
    let table = run_on_host(&status_command(&cluster, "node-a", &[]));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(
        text.contains("through the mount namespace of agent pid")
            && text.contains(Counter::UnderlayDecapsulated.name()),
        "{text}"
    );
    // From another mount namespace: `ip netns exec` gives the command a fresh /sys.
    let node_a = cluster.node("node-a").ns().clone();
    let argv = status_command(&cluster, "node-a", &["--json"]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let output = node_a
        .exec(&argv)
        .expect("ctpath status in another mount namespace");
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(
        json["pin_dir"]
            .as_str()
            .is_some_and(|path| path.starts_with("/proc/")),
        "{json}"
    );
    assert!(
        json["forwarded"][Counter::UnderlayDecapsulated.name()]["packets"].as_u64() >= Some(3),
        "{json}"
    );

    // The etcd revision of the state in force, moving with a new one.
    let revision = cluster.etcd().revision();
    let text = metrics(&node_a);
    assert_eq!(
        sample(&text, "ctpath_state_revision"),
        Some(revision as f64),
        "{text}"
    );
    let icmp_only = STATE.replace(
        "      - { direction: ingress, protocol: tcp, ports: \"8080\", remote_group: client }\n",
        "",
    );
    cluster.update_state(&icmp_only);
    let newer = cluster.etcd().revision();
    assert!(newer > revision);
    wait_for_metrics(&node_a, "the new revision", |text| {
        sample(text, "ctpath_state_revision") == Some(newer as f64)
    });

    // The agent gone: what was tried.
    assert!(cluster.stop_agent("node-a").success());
    let output = run_on_host(&status_command(&cluster, "node-a", &[]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no pins of an agent at {} in this mount namespace",
            cluster.pin_dir("node-a").display()
        )) && stderr.contains("no agent's pid to look through"),
        "{stderr}"
    );
}

const FAST_STATE: &str = r#"
version: 1
networks:
  - { name: media, vni: 300, cidr: 10.250.0.0/16, gateway: 10.250.0.1, mtu: 1450, fast_path: true }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups:
  - name: upf
    rules:
      - { direction: ingress, protocol: udp, ports: "2152", remote_group: gnb }
  - name: gnb
    rules:
      - { direction: egress, protocol: any }
pods:
  - name: upf-a
    node: node-a
    interfaces:
      - { network: media, host_interface: vupfam, ip: 10.250.1.2, mac: "02:00:00:fa:01:02", security_groups: [upf] }
  - name: gnb-b
    node: node-b
    interfaces:
      - { network: media, host_interface: vgnbbm, ip: 10.250.2.2, mac: "02:00:00:fa:02:02", security_groups: [gnb] }
"#;

#[test]
fn the_forwarders_workers_and_sockets_are_exported() {
    require_root();
    let cluster = Cluster::start("metrics-fast", FAST_STATE, metrics_options());
    let state_file = tempfile::NamedTempFile::new().expect("state file");
    std::fs::write(state_file.path(), FAST_STATE).expect("write the state");
    let node_a = cluster.node("node-a").ns().clone();
    let upf = pod_ip(&cluster.state, "upf-a", "media");
    assert_eq!(
        udp_echo(cluster.pod("gnb-b"), cluster.pod("upf-a"), upf, 2152, 20),
        20,
        "gnb-b -> upf-a:2152 over the fast path\n{}",
        cluster.report()
    );
    let decapsulated =
        "ctpath_forwarder_forwarded_packets_total{worker=\"0\",kind=\"underlay_decapsulated\"}";
    // The figures come from the report the agent writes every second.
    let first = wait_for_metrics(&node_a, "the forwarder's report of the echo", |text| {
        sample(text, decapsulated).is_some_and(|n| n >= 20.0)
    });
    let json = json_status(&cluster, "node-a", state_file.path());
    let second = metrics(&node_a);

    let received = "ctpath_forwarder_received_packets_total{worker=\"0\"}";
    let worker = &json["fast_path"]["workers"][0];
    let status_received = worker["packets"].as_f64().expect("packets");
    assert!(
        sample(&first, received) <= Some(status_received)
            && Some(status_received) <= sample(&second, received),
        "{received}: {:?}, then status {status_received}, then {:?}",
        sample(&first, received),
        sample(&second, received)
    );
    assert_eq!(
        sample(&first, "ctpath_forwarder_worker_failed{worker=\"0\"}"),
        Some(0.0)
    );
    assert!(
        sample(&first, "ctpath_forwarder_report_age_seconds").is_some_and(|age| age < 5.0),
        "{first}"
    );
    for interface in [("eth0", "underlay"), ("vupfam", "pod")] {
        let series = format!(
            "ctpath_forwarder_socket_rx_ring_full_total{{worker=\"0\",interface=\"{}\",role=\"{}\",queue=\"0\"}}",
            interface.0, interface.1
        );
        assert!(sample(&first, &series).is_some(), "{series} in\n{first}");
    }
    // The rule's hits include the forwarder's.
    let rule = rule_packets(&second, "upf", 0, "ingress udp 2152 from group gnb");
    assert!(rule >= 20, "{second}");
    assert!(json["rules"][0]["packets"].as_u64() >= Some(20), "{json}");
}
