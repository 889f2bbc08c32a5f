//! End to end: the agent restarts without losing a packet. An agent killed with `kill -9`
//! leaves its XDP programs attached (pinned bpf_links) and its maps pinned, conntrack included;
//! the next agent reuses the maps, writes its state over them as a reconcile and adopts the
//! links in place. Tested on a two-node cluster of real agents: a steady UDP stream on a flow
//! whose replies only conntrack allows, across a `kill -9` and the restart (every lost datagram
//! counted, by phase); a pod interface added to the state, one removed and one re-created
//! while the agent was down; a clean stop (SIGTERM) that leaves nothing behind. Also the check
//! `load_pinned` makes before reusing a pinned map, against a freshly loaded object.
//!
//! The tests of this file run one at a time: the loss count must not pay for another test's
//! agents loading their programs on the same two cores.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use ctpath_common::{
    maps::{names, FORWARDER_LEASE_NS},
    Counter, DropReason,
};
use ctpath_control::datapath;
use ctpath_dataplane::forwarder::worker::BATCH;
use ctpath_testbed::{
    cluster::{pod_ip, Cluster, ClusterOptions},
    require_root,
    traffic::udp_echo,
    Netns,
};

/// `cli-a` may send anything and receive nothing but replies (no ingress rule): the stream's
/// echoes reach it only through node-a's conntrack. `srv-b` takes UDP 5000 from group client.
const STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450 }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups:
  - name: client
    rules:
      - { direction: egress, protocol: any }
  - name: server
    rules:
      - { direction: ingress, protocol: udp, ports: "5000", remote_group: client }
      - { direction: egress, protocol: any }
pods:
  - name: cli-a
    node: node-a
    interfaces:
      - { network: std, host_interface: vclia, ip: 10.244.1.2, mac: "02:00:00:00:01:02", security_groups: [client] }
  - name: old-a
    node: node-a
    interfaces:
      - { network: std, host_interface: volda, ip: 10.244.1.3, mac: "02:00:00:00:01:03", security_groups: [client] }
  - name: srv-b
    node: node-b
    interfaces:
      - { network: std, host_interface: vsrvb, ip: 10.244.2.2, mac: "02:00:00:00:02:02", security_groups: [server] }
"#;

/// Datagrams per second of the stream.
const RATE: u64 = 20_000;
const PORT: u16 = 5000;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn kill_9_under_a_udp_stream_loses_nothing_and_the_next_agent_adopts() {
    require_root();
    let _serial = serial();
    let (mut cluster, cli_a, srv_b, server) = with_established_flow("restart", STATE);
    let before = cluster.status("node-a");

    let mut marks = Marks::default();
    let stream = udp_stream(&cli_a, &srv_b, server, PORT, || {
        std::thread::sleep(Duration::from_millis(800));
        marks.kill = Some(Instant::now());
        cluster.kill_agent("node-a");
        // Dead: the programs still run, from their pinned links, on the pinned maps.
        assert_has_xdp(cluster.node("node-a"), "eth0", true);
        assert_has_tcx(cluster.node("node-a"), "eth0", true);
        assert_has_tcx(cluster.node("node-a"), "vclia", true);
        let pins = pins(cluster.pin_dir("node-a"));
        for name in datapath::PINNED_MAPS {
            assert!(
                pins.iter().any(|pin| pin == name),
                "{name} pinned: {pins:?}"
            );
        }
        assert!(pins.iter().any(|pin| pin == "link_eth0"), "{pins:?}");
        assert!(pins.iter().any(|pin| pin == "tcx_eth0"), "{pins:?}");
        assert!(pins.iter().any(|pin| pin == "tcx_vclia"), "{pins:?}");
        std::thread::sleep(Duration::from_millis(1000));
        marks.restart_agent(&mut cluster, "node-a");
    });
    let report = stream.report(&marks);
    eprintln!("{report}");
    assert!(
        stream.sent > RATE,
        "the stream ran ({} sent)\n{report}",
        stream.sent
    );
    assert_eq!(
        stream.lost(),
        0,
        "datagrams lost\n{report}\n{}\nUDP in srv-b: {}",
        cluster.report(),
        udp_snmp(&srv_b)
    );

    // The new agent adopted the running datapath rather than building another one.
    let log = cluster.agent_log("node-a");
    assert_eq!(
        log.matches("took over the pinned datapath").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("adopted the pinned link").count(),
        4,
        "eth0 (XDP and tcx), vclia, volda (tcx: plane std is datapath tc): {log}"
    );
    // The counters continued from where the dead agent's programs left them, and counted
    // every datagram both ways: the datapath itself lost nothing either.
    let after = cluster.status("node-a");
    let delta = |counter| after.event(counter).packets - before.event(counter).packets;
    assert_eq!(
        (
            delta(Counter::PodEncapsulated),
            delta(Counter::UnderlayDecapsulated)
        ),
        (stream.sent, stream.echoed),
        "node-a's counters across the restart (encapsulated, decapsulated) against the \
         stream's (sent, echoed): before\n{before}\nafter\n{after}"
    );
    // The same flow still passes, and the echoes really needed conntrack: srv-b starting a
    // flow of its own towards cli-a is denied.
    assert_eq!(udp_echo(&cli_a, &srv_b, server, PORT, 5), 5);
    let denied = after.dropped(DropReason::PolicyDeniedIngress).packets;
    assert_eq!(
        udp_echo(
            &srv_b,
            &cli_a,
            pod_ip(&cluster.state, "cli-a", "std"),
            6000,
            3
        ),
        0
    );
    assert!(
        cluster
            .status("node-a")
            .dropped(DropReason::PolicyDeniedIngress)
            .packets
            > denied,
        "{}",
        cluster.report()
    );
}

/// The same, on a fast-path plane: the AF_XDP forwarder carries the stream until `kill -9`;
/// its lease on the queue runs out within `FORWARDER_LEASE_NS` and the XDP programs carry the
/// stream on the conntrack entries the forwarder mirrored into the kernel's map; the next
/// agent's forwarder takes it back, adopting those entries. The move back loses nothing; the
/// move away loses at most what the dead worker was handed before its lease ran out.
#[test]
fn kill_9_on_the_fast_path_moves_the_stream_to_xdp_and_back_without_loss() {
    require_root();
    let _serial = serial();
    let fast_state = STATE.replace(
        "gateway: 10.244.0.1, mtu: 1450 }",
        "gateway: 10.244.0.1, mtu: 1450, fast_path: true }",
    );
    assert_ne!(fast_state, STATE);
    let (mut cluster, cli_a, srv_b, server) = with_established_flow("restart-fast", &fast_state);
    let forwarded = |cluster: &Cluster| -> (u32, u64) {
        // The agent writes its report once a second.
        std::thread::sleep(Duration::from_millis(1100));
        let status = cluster
            .fast_path("node-a")
            .expect("node-a runs a forwarder");
        assert!(status.running, "node-a's forwarder report is stale");
        let encapsulated = status
            .report
            .workers
            .iter()
            .filter_map(|worker| worker.counters.get(Counter::PodEncapsulated.name()))
            .map(|count| count.packets)
            .sum();
        (status.report.pid, encapsulated)
    };
    let (first_pid, first) = forwarded(&cluster);
    assert!(first >= 5, "the forwarder carried the flow: {first}");

    let mut marks = Marks::default();
    let mut xdp_while_dead = 0;
    let stream = udp_stream(&cli_a, &srv_b, server, PORT, || {
        std::thread::sleep(Duration::from_millis(800));
        marks.kill = Some(Instant::now());
        let before = cluster.status("node-a").event(Counter::PodEncapsulated);
        cluster.kill_agent("node-a");
        std::thread::sleep(Duration::from_millis(1000));
        xdp_while_dead = cluster
            .status("node-a")
            .event(Counter::PodEncapsulated)
            .packets
            - before.packets;
        marks.restart_agent(&mut cluster, "node-a");
    });
    let report = stream.report(&marks);
    eprintln!("{report}");
    assert!(stream.sent > RATE, "the stream ran\n{report}");
    // What a dead worker cannot give back: the frames the programs handed it until its lease
    // ran out (one lease's worth of the stream in each direction: the datagrams and their
    // echoes), and those in its rings then. Not the tens of milliseconds the kernel takes to
    // close a killed process's sockets.
    let bound = 2 * (RATE * FORWARDER_LEASE_NS / 1_000_000_000 + BATCH as u64);
    assert!(
        stream.lost() <= bound,
        "{} datagrams lost, more than {bound}\n{report}\n{}\nUDP in srv-b: {}\nforwarders:\n{}",
        stream.lost(),
        cluster.report(),
        udp_snmp(&srv_b),
        ["node-a", "node-b"]
            .map(|node| cluster
                .fast_path(node)
                .map(|f| f.to_string())
                .unwrap_or_default())
            .join("\n")
    );
    // While the agent was dead the XDP program carried the plane.
    assert!(
        xdp_while_dead >= RATE / 2,
        "XDP encapsulated {xdp_while_dead} while the forwarder was gone\n{report}"
    );
    // And the new agent's forwarder took it back.
    let (pid, after) = forwarded(&cluster);
    assert_ne!(pid, first_pid, "a new agent wrote the report");
    assert!(
        after >= RATE / 2,
        "the new forwarder carried the stream after ready: {after}\n{report}"
    );
}

/// While node-a's agent is down a pod joins, one leaves and one's veth is re-created: the next
/// agent serves the new one, detaches the one that left and replaces the stale link.
#[test]
fn an_interface_added_while_the_agent_was_down_is_served_once_it_is_back() {
    require_root();
    let _serial = serial();
    let mut cluster = Cluster::start("restart-add", STATE, ClusterOptions::default());
    let server = pod_ip(&cluster.state, "srv-b", "std");
    cluster.kill_agent("node-a");
    // While node-a's agent is down: new-a joins, old-a leaves (node-b's agent takes it in).
    let changed = STATE.replace(
        r#"  - name: old-a
    node: node-a
    interfaces:
      - { network: std, host_interface: volda, ip: 10.244.1.3, mac: "02:00:00:00:01:03", security_groups: [client] }
"#,
        r#"  - name: new-a
    node: node-a
    interfaces:
      - { network: std, host_interface: vnewa, ip: 10.244.1.4, mac: "02:00:00:00:01:04", security_groups: [client] }
"#,
    );
    assert_ne!(changed, STATE);
    cluster.add_pods(&changed);
    assert_has_tcx(cluster.node("node-a"), "vnewa", false);
    // And cli-a's veth is deleted and made again (a pod restarted): its pinned link lost its
    // interface. (The new veth's peer stays on the node: no traffic through it here.)
    let node_a = cluster.node("node-a").ns().clone();
    for command in [
        &["link", "del", "vclia"][..],
        &[
            "link", "add", "vclia", "type", "veth", "peer", "name", "vcliap",
        ],
        &["link", "set", "vclia", "up"],
        &["link", "set", "vcliap", "up"],
    ] {
        node_a.ip(command).expect("re-create vclia");
    }
    cluster.restart_agent("node-a");

    let (new_a, srv_b) = (
        cluster.pod("new-a").ns().clone(),
        cluster.pod("srv-b").ns().clone(),
    );
    assert_eq!(
        udp_echo(&new_a, &srv_b, server, PORT, 10),
        10,
        "new-a -> srv-b\n{}\n{}",
        cluster.report(),
        cluster.agent_log("node-a")
    );
    assert_has_tcx(cluster.node("node-a"), "vnewa", true);
    // The re-created vclia got a link of its own in place of the stale one.
    assert_has_tcx(&node_a, "vclia", true);
    let log = cluster.agent_log("node-a");
    assert!(
        log.lines()
            .any(|line| line.contains("removing a stale link pin") && line.contains("vclia")),
        "{log}"
    );
    // old-a's veth is no longer served: its link pin is gone and so is the program.
    assert_has_tcx(cluster.node("node-a"), "volda", false);
    let pins = pins(cluster.pin_dir("node-a"));
    assert!(!pins.iter().any(|pin| pin == "tcx_volda"), "{pins:?}");
    assert!(pins.iter().any(|pin| pin == "tcx_vnewa"), "{pins:?}");
    assert!(pins.iter().any(|pin| pin == "tcx_vclia"), "{pins:?}");
}

#[test]
fn a_clean_stop_leaves_nothing_behind_even_after_an_adoption() {
    require_root();
    let _serial = serial();
    let mut cluster = Cluster::start("restart-stop", STATE, ClusterOptions::default());
    let node_a = |cluster: &Cluster| cluster.node("node-a").ns().clone();
    let check_nothing_left = |cluster: &Cluster, when: &str| {
        let pin_dir = cluster.pin_dir("node-a");
        assert!(
            !pin_dir.exists(),
            "{when}: pin directory left with {:?}",
            pins(pin_dir)
        );
        for interface in ["eth0", "vclia", "volda"] {
            assert_has_xdp(&node_a(cluster), interface, false);
            assert_has_tcx(&node_a(cluster), interface, false);
        }
        assert_eq!(
            vtep_neighbours(&node_a(cluster)),
            0,
            "{when}: managed VTEP entries left"
        );
    };

    // A fresh agent, stopped.
    assert!(cluster.stop_agent("node-a").success());
    check_nothing_left(&cluster, "after a fresh agent's SIGTERM");

    // An agent that adopted what a killed one left, stopped.
    cluster.restart_agent("node-a");
    cluster.kill_agent("node-a");
    assert_has_xdp(&node_a(&cluster), "eth0", true);
    cluster.restart_agent("node-a");
    assert!(
        cluster
            .agent_log("node-a")
            .contains("adopted the pinned link"),
        "{}",
        cluster.agent_log("node-a")
    );
    assert!(cluster.stop_agent("node-a").success());
    check_nothing_left(&cluster, "after an adopting agent's SIGTERM");
}

#[test]
fn cleanup_removes_what_a_killed_agent_left() {
    require_root();
    let _serial = serial();
    let mut cluster = Cluster::start("restart-cleanup", STATE, ClusterOptions::default());
    let node_a = cluster.node("node-a").ns().clone();
    cluster.kill_agent("node-a");
    assert_has_xdp(&node_a, "eth0", true);
    assert!(
        vtep_neighbours(&node_a) > 0,
        "the agent's managed VTEP entries"
    );
    let (pin_dir, run_dir) = (
        cluster.pin_dir("node-a").to_owned(),
        cluster.run_dir("node-a").to_owned(),
    );
    let binary = ctpath_testbed::cluster::ctpath_binary();
    // In the node's network namespace and the host's mounts, where the agent pinned.
    let cleanup = || {
        let output = std::process::Command::new("nsenter")
            .arg(format!("--net={}", node_a.path().display()))
            .arg("--")
            .arg(&binary)
            .args(["agent", "--cleanup", "--node", "node-a", "--pin-dir"])
            .arg(&pin_dir)
            .arg("--run-dir")
            .arg(&run_dir)
            .output()
            .expect("run ctpath agent --cleanup");
        assert!(output.status.success(), "{output:?}");
        output
    };
    let first = String::from_utf8_lossy(&cleanup().stdout).into_owned();
    assert!(
        first.contains("link pins (programs detached)") && !first.contains(" 0 link pins"),
        "{first}"
    );
    assert!(
        !pin_dir.exists(),
        "pin directory left with {:?}",
        pins(&pin_dir)
    );
    assert!(!run_dir.exists(), "run directory left");
    for interface in ["eth0", "vclia", "volda"] {
        assert_has_xdp(&node_a, interface, false);
        assert_has_tcx(&node_a, interface, false);
    }
    assert_eq!(vtep_neighbours(&node_a), 0, "managed VTEP entries left");
    // Nothing left to do the second time.
    let second = String::from_utf8_lossy(&cleanup().stdout).into_owned();
    assert!(second.contains("nothing to remove"), "{second}");
}

/// `load_pinned` reuses a pinned map only if it matches what the datapath declares: every map
/// of a freshly loaded object does; a conntrack table of another size is kept as it is.
#[test]
fn pinned_maps_are_checked_before_they_are_reused() {
    require_root();
    let pin_dir = Path::new(ctpath_control::agent::BPFFS)
        .join(format!("ctpath-test-layout-{}", std::process::id()));
    std::fs::create_dir_all(&pin_dir).expect("pin directory on the host's bpffs");
    let result = std::panic::catch_unwind(|| {
        let first = datapath::load_pinned(&pin_dir, 4096).expect("load");
        assert!(first.reused.is_empty());
        for (name, matches) in datapath::pinned_maps_match(&pin_dir, 4096) {
            assert!(
                matches,
                "{name}: the declared layout differs from the object's"
            );
        }
        let second = datapath::load_pinned(&pin_dir, 8192).expect("load again");
        assert_eq!(second.reused.len(), datapath::PINNED_MAPS.len());
        assert_eq!(second.conntrack_entries, 4096, "the pinned conntrack kept");
        let info = aya::maps::MapInfo::from_pin(pin_dir.join(names::CONNTRACK)).unwrap();
        assert_eq!(info.max_entries(), 4096);
    });
    std::fs::remove_dir_all(&pin_dir).expect("remove the pins");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A cluster of `state` with the flow cli-a -> srv-b established (and in conntrack) before
/// anything happens: the cluster, both pods' namespaces and the server's address.
fn with_established_flow(label: &str, state: &str) -> (Cluster, Netns, Netns, Ipv4Addr) {
    let cluster = Cluster::start(label, state, ClusterOptions::default());
    let cli_a = cluster.pod("cli-a").ns().clone();
    let srv_b = cluster.pod("srv-b").ns().clone();
    let server = pod_ip(&cluster.state, "srv-b", "std");
    assert_eq!(
        udp_echo(&cli_a, &srv_b, server, PORT, 5),
        5,
        "cli-a -> srv-b\n{}",
        cluster.report()
    );
    (cluster, cli_a, srv_b, server)
}

/// When the test killed and restarted the agent.
#[derive(Default)]
struct Marks {
    kill: Option<Instant>,
    restart: Option<Instant>,
    ready: Option<Instant>,
}

impl Marks {
    /// Restarts `node`'s agent, marking when it was started and when it was ready, then lets
    /// the stream run on for a while under the new agent.
    fn restart_agent(&mut self, cluster: &mut Cluster, node: &str) {
        self.restart = Some(Instant::now());
        cluster.restart_agent(node);
        self.ready = Some(Instant::now());
        std::thread::sleep(Duration::from_millis(800));
    }
}

/// What a UDP stream saw: per datagram (by sequence number) when it was sent, whether it
/// reached the server and whether its echo came back.
struct Stream {
    sent: u64,
    echoed: u64,
    sent_at: Vec<Instant>,
    reached: Vec<bool>,
    returned: Vec<bool>,
}

impl Stream {
    fn lost(&self) -> u64 {
        self.sent - self.echoed
    }

    /// Lost datagrams by the phase they were sent in.
    fn report(&self, marks: &Marks) -> String {
        let phases = [
            ("before the kill", None, marks.kill),
            ("agent dead", marks.kill, marks.restart),
            ("new agent starting", marks.restart, marks.ready),
            ("after ready", marks.ready, None),
        ];
        let mut text = format!(
            "{} datagrams at {RATE}/s, {} echoed, {} lost\n",
            self.sent,
            self.echoed,
            self.lost()
        );
        for (phase, from, to) in phases {
            let within =
                |at: &Instant| from.is_none_or(|from| *at >= from) && to.is_none_or(|to| *at < to);
            let indices: Vec<usize> = (0..self.sent_at.len())
                .filter(|&i| within(&self.sent_at[i]))
                .collect();
            let lost_out = indices.iter().filter(|&&i| !self.reached[i]).count();
            let lost_back = indices
                .iter()
                .filter(|&&i| self.reached[i] && !self.returned[i])
                .count();
            text += &format!(
                "  {phase}: {} sent, {lost_out} lost on the way out, {lost_back} on the way back\n",
                indices.len()
            );
        }
        text
    }
}

/// Runs a UDP stream of [`RATE`] datagrams per second from `client` to `server_ip:port`,
/// where `server` echoes each, for as long as `during` runs (and half a second more for the
/// last echoes).
fn udp_stream(
    client: &Netns,
    server: &Netns,
    server_ip: Ipv4Addr,
    port: u16,
    during: impl FnOnce(),
) -> Stream {
    // Sockets keep the namespace they were made in.
    let server_socket = server
        .run_in(|| UdpSocket::bind(SocketAddrV4::new(server_ip, port)))
        .expect("enter the server's namespace")
        .expect("bind the echo server");
    let client_socket = client
        .run_in(|| UdpSocket::bind("0.0.0.0:0"))
        .expect("enter the client's namespace")
        .expect("bind the client");
    for socket in [&server_socket, &client_socket] {
        large_receive_buffer(socket);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
    }
    let sending = AtomicBool::new(true);
    let receiving = AtomicBool::new(true);
    let (sent_at, reached, returned) = std::thread::scope(|scope| {
        let echo = scope.spawn(|| {
            let mut reached = Vec::new();
            let mut buf = [0u8; 2048];
            while receiving.load(Ordering::Relaxed) {
                let Ok((len, peer)) = server_socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(seq) = sequence(&buf[..len]) {
                    mark(&mut reached, seq);
                }
                let _ = server_socket.send_to(&buf[..len], peer);
            }
            reached
        });
        let receiver = scope.spawn(|| {
            let mut returned = Vec::new();
            let mut buf = [0u8; 2048];
            while receiving.load(Ordering::Relaxed) {
                if let Ok(len) = client_socket.recv(&mut buf) {
                    if let Some(seq) = sequence(&buf[..len]) {
                        mark(&mut returned, seq);
                    }
                }
            }
            returned
        });
        let sender = scope.spawn(|| {
            let destination = SocketAddrV4::new(server_ip, port);
            let mut sent_at = Vec::new();
            let start = Instant::now();
            while sending.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * RATE as f64) as usize;
                while sent_at.len() < due {
                    let mut payload = [0u8; 64];
                    payload[..8].copy_from_slice(b"ctpathrs");
                    payload[8..16].copy_from_slice(&(sent_at.len() as u64).to_le_bytes());
                    // A datagram the socket refused never left: it goes again.
                    if client_socket.send_to(&payload, destination).is_err() {
                        break;
                    }
                    sent_at.push(Instant::now());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            sent_at
        });
        // A failed check inside `during` must still stop the stream's threads, or the scope
        // would wait for them for ever; the panic goes on once they are joined.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(during));
        sending.store(false, Ordering::Relaxed);
        if let Err(panic) = outcome {
            receiving.store(false, Ordering::Relaxed);
            std::panic::resume_unwind(panic);
        }
        let sent_at = sender.join().expect("sender");
        std::thread::sleep(Duration::from_millis(500));
        receiving.store(false, Ordering::Relaxed);
        (
            sent_at,
            echo.join().expect("echo server"),
            receiver.join().expect("receiver"),
        )
    });
    let sent = sent_at.len();
    let fit = |mut marks: Vec<bool>| {
        marks.resize(sent, false);
        marks
    };
    let (reached, returned) = (fit(reached), fit(returned));
    Stream {
        sent: sent as u64,
        echoed: returned.iter().filter(|&&r| r).count() as u64,
        sent_at,
        reached,
        returned,
    }
}

/// The sequence number of a stream datagram.
fn sequence(payload: &[u8]) -> Option<usize> {
    let rest = payload.strip_prefix(b"ctpathrs")?;
    let seq = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    usize::try_from(seq).ok()
}

fn mark(marks: &mut Vec<bool>, seq: usize) {
    if marks.len() <= seq {
        marks.resize(seq + 1, false);
    }
    marks[seq] = true;
}

/// 8 MiB of receive buffer, so a thread that waits for its core loses nothing.
fn large_receive_buffer(socket: &UdpSocket) {
    let size: libc::c_int = 8 << 20;
    // SAFETY: `socket` is an open socket for the duration of the call; the option value is a
    // c_int that lives across the call, and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

/// Asserts whether `interface` in `ns` has an XDP program attached (`ip -d link show`).
/// The managed VTEP entries (extern_learn) on `ns`'s underlay.
fn vtep_neighbours(ns: &Netns) -> usize {
    let out = ns.exec(&["ip", "neigh", "show", "dev", "eth0"]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains("extern_learn"))
        .count()
}

fn assert_has_xdp(ns: &Netns, interface: &str, expected: bool) {
    let output = ns
        .exec(&["ip", "-d", "link", "show", "dev", interface])
        .expect("ip link show");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        text.contains("prog/xdp"),
        expected,
        "XDP program on {interface}: {text}"
    );
}

/// Whether `interface` in `ns` has a tcx ingress program, as the kernel says (`BPF_PROG_QUERY`:
/// `ip link` does not show tcx, nor does the bpftool 7.1 Debian ships). An interface that does
/// not exist has none.
fn assert_has_tcx(ns: &Netns, interface: &str, expected: bool) {
    let programs = ns
        .run_in(|| {
            aya::programs::SchedClassifier::query_tcx(
                interface,
                aya::programs::TcAttachType::Ingress,
            )
            .map(|(_, programs)| programs.len())
            .unwrap_or(0)
        })
        .expect("query tcx in the namespace");
    assert_eq!(
        programs > 0,
        expected,
        "tcx program on {interface}: {programs} attached"
    );
}

/// The names in a pin directory (none if it does not exist).
fn pins(pin_dir: &Path) -> Vec<String> {
    std::fs::read_dir(pin_dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The UDP line of `/proc/net/snmp` in `ns` (receive-buffer drops among them).
fn udp_snmp(ns: &Netns) -> String {
    let output = ns.exec(&["cat", "/proc/net/snmp"]).expect("read snmp");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("Udp:"))
        .collect::<Vec<_>>()
        .join("\n")
}
