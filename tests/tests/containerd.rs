//! End to end under containerd: a two-node ctpath cluster with its state in etcd, a pod on
//! node-b made by the testbed, and on node-a a busybox container started by `ctr run --rm
//! --cni` of a containerd of the test's own, which calls `ctpath-cni` (with host-local) as its
//! CNI plugin. The container gets an interface on each of the conflist's default planes, with
//! an address from node-a's block of the plane, is registered in etcd, and the agents carry
//! its pings and a TCP exchange (busybox `nc`; Debian's busybox `nc` has no UDP) to the pod on
//! node-b over each plane; once its task is killed, `ctr run` sends DEL and removes the
//! container: the registration and the leases are gone, and so are the host veths (which
//! would go with the container's namespace even without DEL: `tests/tests/cni.rs` shows that
//! DEL deletes them).
//!
//! `ctr run --cni` passes no `CNI_ARGS`, so the container gets the conflist's `defaultPlanes`
//! and is registered as `default/default-<id>` (ctr's container id for CNI is
//! `<namespace>-<id>`).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ctpath_cni::names::host_interface;
use ctpath_control::state::Pod;
use ctpath_testbed::{
    cluster::{built_binary, pod_ip, Cluster, ClusterOptions},
    containerd::{CniSetup, Containerd},
    require_root,
    traffic::with_tcp_echo,
};
use ipnet::Ipv4Net;
use serde_json::json;

/// node-a serves both planes with a block for the CNI plugin; b1 on node-b is made by the
/// testbed, outside node-a's blocks. `media` runs XDP at the pod's veth: the container's TCP
/// over it gets through only once the agent has turned TX checksum offload off at the
/// container's end, which it reaches through the container's process (`ctr run` binds its
/// namespace nowhere).
const STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450 }
  - { name: media, vni: 300, cidr: 10.250.0.0/16, gateway: 10.250.0.1, mtu: 1400, datapath: xdp }
nodes:
  - name: node-a
    underlay_interface: eth0
    underlay_ip: 192.168.77.1
    pod_ranges: { std: 10.244.1.0/24, media: 10.250.1.0/24 }
  - { name: node-b, underlay_interface: eth0, underlay_ip: 192.168.77.2 }
security_groups: []
pods:
  - name: b1
    node: node-b
    interfaces:
      - { network: std, host_interface: vb1s, ip: 10.244.2.2, mac: "02:00:0a:f4:02:02" }
      - { network: media, host_interface: vb1m, ip: 10.250.2.2, mac: "02:00:0a:fa:02:02" }
"#;

/// The container's planes in order (the conflist's `defaultPlanes`): name, node-a's block,
/// the interface in the container, the plane's prefix length.
const PLANES: [(&str, &str, &str, u8); 2] = [
    ("std", "10.244.1.0/24", "eth0", 16),
    ("media", "10.250.1.0/24", "eth1", 16),
];
/// The container, and the id ctr gives CNI for it (the pod's name in the state).
const CONTAINER: &str = "c1";
const CNI_ID: &str = "default-c1";
/// How long the agents may take to serve a newly registered pod.
const SERVED_WITHIN: Duration = Duration::from_secs(20);

/// The conflist for node-a: its etcd, its name, the planes with host-local keeping its leases
/// in `ipam_dir`.
fn conflist(etcd: &str, ipam_dir: &Path) -> String {
    let ipam = json!({ "ipam": { "type": "host-local", "dataDir": ipam_dir } });
    json!({
        "cniVersion": "1.0.0",
        "name": "ctpath",
        "plugins": [{
            "type": "ctpath",
            "etcd": { "endpoints": [etcd] },
            "node": "node-a",
            "defaultPlanes": PLANES.map(|(plane, ..)| plane),
            "planes": { "std": ipam, "media": ipam },
        }],
    })
    .to_string()
}

fn registered(cluster: &Cluster) -> Option<Pod> {
    cluster
        .stored_state()
        .pods
        .into_iter()
        .find(|pod| pod.namespace == "default" && pod.name == CNI_ID)
}

/// host-local's leases on `plane` (files named by address).
fn leases(ipam_dir: &Path, plane: &str) -> Vec<Ipv4Addr> {
    std::fs::read_dir(ipam_dir.join(format!("ctpath-{plane}")))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ctr_run_cni_container_reaches_a_pod_on_another_node() {
    require_root();
    let started = Instant::now();
    let mut cluster = Cluster::start(
        "ctrd",
        STATE,
        ClusterOptions {
            state_in_etcd: true,
            ..ClusterOptions::default()
        },
    );
    let etcd = cluster.etcd().endpoint();
    let ipam = tempfile::tempdir().expect("tempdir");
    let node_a = cluster.node("node-a");
    let containerd = Containerd::start(node_a).expect("start containerd in node-a");
    containerd
        .import_busybox()
        .expect("import the busybox image");
    let cni = CniSetup {
        conflists: vec![(
            "10-ctpath.conflist".to_owned(),
            conflist(&etcd, ipam.path()),
        )],
        plugins: vec![
            (
                "ctpath".to_owned(),
                built_binary("ctpath-cni", "CTPATH_CNI_BIN"),
            ),
            (
                "host-local".to_owned(),
                PathBuf::from("/usr/lib/cni/host-local"),
            ),
        ],
    };
    containerd
        .run_with_cni(&cni, CONTAINER, &["sleep", "600"])
        .expect("ctr run");
    containerd.task_pid(CONTAINER).expect("the container runs");

    // The plugin made the veths and registered the container with an address of node-a's
    // block of each plane.
    let pod = registered(&cluster).unwrap_or_else(|| {
        panic!(
            "{CNI_ID} not registered; ctr run said:\n{}",
            containerd.output(CONTAINER)
        )
    });
    assert_eq!(pod.node, "node-a");
    assert_eq!(
        pod.interfaces
            .iter()
            .map(|interface| (interface.network.as_str(), interface.host_interface.clone()))
            .collect::<Vec<_>>(),
        PLANES.map(|(plane, ..)| (plane, host_interface(CNI_ID, plane)))
    );
    for ((plane, block, ifname, prefix), interface) in PLANES.iter().zip(&pod.interfaces) {
        let ip = interface.ip;
        assert!(
            block.parse::<Ipv4Net>().unwrap().contains(&ip),
            "{plane}: {ip}"
        );
        assert_eq!(leases(ipam.path(), plane), [ip], "{plane}");
        node_a
            .link(&interface.host_interface)
            .expect("the host end in node-a");
        let in_container = containerd
            .exec(
                CONTAINER,
                &["ip", "-o", "-4", "addr", "show", "dev", ifname],
            )
            .expect("ctr task exec");
        let addresses = String::from_utf8_lossy(&in_container.stdout);
        assert!(
            addresses.contains(&format!("inet {ip}/{prefix}")),
            "{plane}: {addresses}"
        );
    }

    // The container reaches b1 on node-b over each plane, once the agents serve it.
    for (port, (plane, ..)) in (7000..).zip(PLANES) {
        let b1 = pod_ip(&cluster.state, "b1", plane);
        let deadline = Instant::now() + SERVED_WITHIN;
        loop {
            let ping = containerd
                .exec(CONTAINER, &["ping", "-c", "1", "-W", "1", &b1.to_string()])
                .expect("ctr task exec");
            if ping.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the container cannot ping b1 on {plane} ({b1}): {}\nnode-a agent:\n{}\n{}",
                String::from_utf8_lossy(&ping.stdout),
                cluster.agent_log("node-a"),
                cluster.report()
            );
        }
        let message = format!("ctpath over containerd on {plane}");
        let exchange = format!("echo '{message}' | nc -w 2 {b1} {port}");
        let echoed = with_tcp_echo(cluster.pod("b1"), b1, port, || {
            containerd
                .exec(CONTAINER, &["sh", "-c", &exchange])
                .expect("ctr task exec")
        });
        assert!(echoed.status.success(), "nc on {plane}: {echoed:?}");
        assert_eq!(String::from_utf8_lossy(&echoed.stdout).trim(), message);
    }

    // Killing the task ends `ctr run --rm`, which sends DEL and removes the container. (The
    // veths go with the container's namespace anyway.)
    let output = containerd.stop(CONTAINER).expect("stop the container");
    let containers = containerd
        .ctr(&["container", "ls", "-q"])
        .expect("ctr container ls");
    assert!(
        String::from_utf8_lossy(&containers.stdout)
            .trim()
            .is_empty(),
        "left: {}\nctr run said:\n{output}",
        String::from_utf8_lossy(&containers.stdout)
    );
    assert!(registered(&cluster).is_none(), "still registered");
    for (plane, ..) in PLANES {
        let host = host_interface(CNI_ID, plane);
        assert!(node_a.link(&host).is_err(), "{host} still in node-a");
        assert!(leases(ipam.path(), plane).is_empty(), "{plane}");
    }
    eprintln!("containerd end to end: {:?}", started.elapsed());
}
