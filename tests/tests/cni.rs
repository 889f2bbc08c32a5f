//! `ctpath-cni` invoked exactly as a runtime invokes it: the CNI variables in its environment,
//! the configuration on stdin, the result or error object read from stdout, inside a testbed
//! node's namespace, with a real pod namespace, the real host-local IPAM plugin (its data in a
//! tempdir) and a real etcd holding the cluster state.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ctpath_cni::names::host_interface;
use ctpath_control::state::{ClusterState, Pod};
use ctpath_control::store::Store;
use ctpath_testbed::{
    cluster::built_binary, etcd::EtcdServer, require_root, Netns, NodeHandle, Testbed,
};
use serde_json::{json, Value};

/// One node, three planes; `media` has no MTU (the underlay's 9000 less VXLAN: 8950).
const STATE: &str = r#"
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1, mtu: 1450 }
  - { name: control, vni: 200, cidr: 10.246.0.0/16, gateway: 10.246.0.1, mtu: 1400 }
  - { name: media, vni: 300, cidr: 10.250.0.0/16, gateway: 10.250.0.1 }
nodes:
  - name: node-a
    underlay_interface: eth0
    underlay_ip: 192.168.77.1
    pod_ranges: { std: 10.244.1.0/24, control: 10.246.1.0/24, media: 10.250.1.0/28 }
security_groups:
  - { name: web, rules: [{ direction: ingress, protocol: tcp, ports: "80" }] }
  - { name: sg1, rules: [{ direction: ingress, protocol: udp }] }
  - { name: sg2, rules: [{ direction: egress, protocol: any }] }
pods: []
"#;

/// A node with an underlay interface of MTU 9000, an etcd inside it holding [`STATE`], and host-local's data in
/// a tempdir.
struct CniNode {
    node: NodeHandle,
    etcd: EtcdServer,
    ipam: tempfile::TempDir,
    testbed: Testbed,
}

/// What one invocation printed.
struct Invocation {
    success: bool,
    stdout: Value,
}

impl CniNode {
    fn new(label: &str) -> CniNode {
        let testbed = Testbed::new(label).expect("testbed");
        let node = testbed.add_node("node-a").expect("node");
        // The underlay: one end of a veth (no dummy driver here), for its MTU.
        node.ip(&[
            "link",
            "add",
            "eth0",
            "mtu",
            "9000",
            "type",
            "veth",
            "peer",
            "name",
            "eth0-wire",
            "mtu",
            "9000",
        ])
        .expect("underlay");
        node.ip(&["link", "set", "eth0", "up"])
            .expect("underlay up");
        let etcd = EtcdServer::start_in(&node, Ipv4Addr::LOCALHOST);
        let cni = CniNode {
            node,
            etcd,
            ipam: tempfile::tempdir().expect("tempdir"),
            testbed,
        };
        let state = ClusterState::from_yaml_str(STATE).expect("valid state");
        cni.with_store(|store| store.replace(&state).map(drop));
        cni
    }

    fn with_store<T: Send>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, ctpath_control::store::StoreError> + Send,
    ) -> T {
        let endpoint = self.etcd.endpoint();
        self.node
            .run_in(|| {
                let mut store = Store::connect(&[endpoint], "/ctpath/v1").expect("connect");
                f(&mut store).expect("store")
            })
            .expect("enter the node")
    }

    fn state(&self) -> ClusterState {
        self.with_store(|store| store.load()).state
    }

    fn registered(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.state()
            .pods
            .into_iter()
            .find(|pod| pod.namespace == namespace && pod.name == name)
    }

    fn pod(&self, name: &str) -> Netns {
        self.testbed.add_namespace(name).expect("pod namespace")
    }

    /// The conflist entry as the runtime hands it to the plugin.
    fn conf(&self) -> Value {
        let ipam = json!({ "type": "host-local", "dataDir": self.ipam.path() });
        json!({
            "cniVersion": "1.0.0",
            "name": "ctpath",
            "type": "ctpath",
            "etcd": { "endpoints": [self.etcd.endpoint()] },
            "node": "node-a",
            "defaultPlanes": ["std"],
            "planes": {
                "std": { "ipam": ipam, "securityGroups": ["web"] },
                "control": { "ipam": ipam },
                "media": { "ipam": ipam },
            },
        })
    }

    /// Runs the plugin in the node: `CNI_COMMAND=command`, the container `id`, the pod's
    /// namespace (none: `CNI_NETNS` unset), `CNI_IFNAME=eth0`, `CNI_ARGS=args`, and `stdin`.
    fn invoke(
        &self,
        command: &str,
        id: &str,
        pod: Option<&Netns>,
        args: &str,
        stdin: &[u8],
    ) -> Invocation {
        let plugin = built_binary("ctpath-cni", "CTPATH_CNI_BIN");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.node.ns().name()])
            .arg(&plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_ARGS", args)
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match pod {
            Some(pod) => cmd.env("CNI_NETNS", pod.path()),
            None => cmd.env_remove("CNI_NETNS"),
        };
        let mut child = cmd.spawn().expect("start ctpath-cni");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write the configuration");
        let output = child.wait_with_output().expect("ctpath-cni");
        let text = String::from_utf8_lossy(&output.stdout);
        let stdout = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
        };
        Invocation {
            success: output.status.success(),
            stdout,
        }
    }

    fn add(&self, id: &str, pod: &Netns, args: &str) -> Value {
        let done = self.invoke(
            "ADD",
            id,
            Some(pod),
            args,
            self.conf().to_string().as_bytes(),
        );
        assert!(done.success, "ADD failed: {}", done.stdout);
        done.stdout
    }

    fn del(&self, id: &str, pod: Option<&Netns>, args: &str) {
        let done = self.invoke("DEL", id, pod, args, self.conf().to_string().as_bytes());
        assert!(done.success, "DEL failed: {}", done.stdout);
    }

    fn check(&self, id: &str, pod: &Netns, args: &str, prev: &Value) -> Invocation {
        let mut conf = self.conf();
        conf["prevResult"] = prev.clone();
        self.invoke("CHECK", id, Some(pod), args, conf.to_string().as_bytes())
    }

    /// The error object of a failed invocation: its code and message.
    fn error(&self, done: Invocation) -> (u64, String) {
        assert!(!done.success, "expected a failure, got {}", done.stdout);
        assert_eq!(done.stdout["cniVersion"], "1.0.0", "{}", done.stdout);
        (
            done.stdout["code"].as_u64().expect("code"),
            done.stdout["msg"].as_str().expect("msg").to_owned(),
        )
    }

    /// host-local's leases on `plane` (files named by address).
    fn leases(&self, plane: &str) -> Vec<String> {
        let dir = self.ipam.path().join(format!("ctpath-{plane}"));
        let mut leases: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                    .filter(|name| name.parse::<Ipv4Addr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        leases.sort();
        leases
    }

    /// The host-side veths the plugin made (`ct...`) in the node.
    fn host_veths(&self) -> Vec<String> {
        let out = self.node.ip(&["-o", "link", "show"]).expect("ip link");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_owned())
            .filter(|name| name.starts_with("ct"))
            .collect()
    }
}

/// `ip -j addr show dev IFNAME` in `ns`.
fn link_in(ns: &Netns, ifname: &str) -> Value {
    let out = ns
        .ip(&["-j", "addr", "show", "dev", ifname])
        .expect("ip addr");
    serde_json::from_slice::<Value>(&out.stdout).expect("json")[0].clone()
}

fn routes_in(ns: &Netns) -> String {
    let out = ns.ip(&["route", "show"]).expect("ip route");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const WEB: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=telco;K8S_POD_NAME=web-0";

#[test]
fn add_check_del_one_plane() {
    require_root();
    let cni = CniNode::new("cni-one-plane");
    let pod = cni.pod("web-0");
    let result = cni.add("c-web-0", &pod, WEB);

    // The result: host end, pod end, one address on the pod end, the default route.
    let host = host_interface("c-web-0", "std");
    assert_eq!(result["cniVersion"], "1.0.0");
    let interfaces = result["interfaces"].as_array().expect("interfaces");
    assert_eq!(interfaces.len(), 2, "{result}");
    assert_eq!(interfaces[0]["name"], host.as_str());
    assert!(interfaces[0].get("sandbox").is_none());
    assert_eq!(interfaces[1]["name"], "eth0");
    assert_eq!(interfaces[1]["sandbox"], pod.path().to_str().unwrap());
    let ip = &result["ips"][0];
    assert_eq!(ip["interface"], 1);
    assert_eq!(ip["gateway"], "10.244.0.1");
    let address = ip["address"].as_str().expect("address").to_owned();
    assert!(
        address.starts_with("10.244.1.") && address.ends_with("/16"),
        "{address}"
    );
    assert_eq!(
        result["routes"],
        json!([{ "dst": "0.0.0.0/0", "gw": "10.244.0.1" }])
    );
    let pod_ip: Ipv4Addr = address.split('/').next().unwrap().parse().unwrap();
    let [_, _, c, d] = pod_ip.octets();
    let mac = format!("02:00:0a:f4:{c:02x}:{d:02x}");
    assert_eq!(interfaces[1]["mac"], mac.as_str());

    // The system: the pod's end and the host's, the route, the lease.
    let eth0 = link_in(&pod, "eth0");
    assert_eq!(eth0["address"], mac.as_str());
    assert_eq!(eth0["mtu"], 1450);
    assert!(eth0["flags"].as_array().unwrap().contains(&json!("UP")));
    assert_eq!(eth0["addr_info"][0]["local"], pod_ip.to_string());
    assert_eq!(eth0["addr_info"][0]["prefixlen"], 16);
    assert!(
        routes_in(&pod).contains("default via 10.244.0.1 dev eth0"),
        "{}",
        routes_in(&pod)
    );
    let host_link = link_in(cni.node.ns(), &host);
    assert_eq!(host_link["mtu"], 1450);
    assert!(host_link["flags"]
        .as_array()
        .unwrap()
        .contains(&json!("UP")));
    assert_eq!(cni.leases("std"), [pod_ip.to_string()]);

    // The registration the agents read.
    let registered = cni.registered("telco", "web-0").expect("registered");
    assert_eq!(registered.node, "node-a");
    assert_eq!(registered.interfaces.len(), 1);
    let interface = &registered.interfaces[0];
    assert_eq!(
        (
            interface.network.as_str(),
            interface.host_interface.as_str(),
            interface.ip,
            interface.mac.to_string(),
        ),
        ("std", host.as_str(), pod_ip, mac.clone())
    );
    assert_eq!(interface.security_groups, ["web"], "the plane's default");

    // CHECK passes, then fails once the pod's interface is down.
    let checked = cni.check("c-web-0", &pod, WEB, &result);
    assert!(checked.success, "CHECK: {}", checked.stdout);
    pod.ip(&["link", "set", "eth0", "down"]).unwrap();
    let (code, msg) = cni.error(cni.check("c-web-0", &pod, WEB, &result));
    assert_eq!(code, 103, "{msg}");
    assert!(msg.contains("eth0 in the pod"), "{msg}");
    pod.ip(&["link", "set", "eth0", "up"]).unwrap();
    pod.ip(&["route", "add", "default", "via", "10.244.0.1"])
        .unwrap();
    assert!(cni.check("c-web-0", &pod, WEB, &result).success);

    // DEL removes everything, and is idempotent, with or without the namespace.
    cni.del("c-web-0", Some(&pod), WEB);
    assert!(cni.host_veths().is_empty(), "{:?}", cni.host_veths());
    assert!(cni.leases("std").is_empty());
    assert!(cni.registered("telco", "web-0").is_none());
    assert!(link_in_missing(&pod, "eth0"));
    cni.del("c-web-0", Some(&pod), WEB);
    cni.del("c-web-0", None, WEB);
    let (code, msg) = cni.error(cni.check("c-web-0", &pod, WEB, &result));
    assert_eq!(
        (code, msg.as_str()),
        (103, "CHECK: pod telco/web-0 is not registered")
    );
}

fn link_in_missing(ns: &Netns, ifname: &str) -> bool {
    ns.ip(&["link", "show", "dev", ifname]).is_err()
}

#[test]
fn planes_and_security_groups_from_cni_args() {
    require_root();
    let cni = CniNode::new("cni-planes");
    let pod = cni.pod("upf-0");
    // Without Kubernetes names, the pod is default/<container id>.
    let args = "CTPATH_PLANES=std,control,media;CTPATH_SG_media=sg1+sg2;CTPATH_SG_std=";
    let result = cni.add("upf0", &pod, args);
    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 3, "{result}");
    for (plane, (ip, (prefix, gateway))) in
        ["std", "control", "media"].iter().zip(ips.iter().zip([
            ("10.244.1.", "10.244.0.1"),
            ("10.246.1.", "10.246.0.1"),
            ("10.250.1.", "10.250.0.1"),
        ]))
    {
        assert!(
            ip["address"].as_str().unwrap().starts_with(prefix),
            "{plane}: {ip}"
        );
        assert_eq!(ip["gateway"], gateway);
    }
    assert_eq!(
        ips.iter()
            .map(|ip| ip["interface"].clone())
            .collect::<Vec<_>>(),
        [json!(1), json!(3), json!(5)]
    );
    assert_eq!(
        result["routes"].as_array().unwrap().len(),
        1,
        "default on std only"
    );
    for (ifname, mtu) in [("eth0", 1450), ("eth1", 1400), ("eth2", 8950)] {
        assert_eq!(link_in(&pod, ifname)["mtu"], mtu, "{ifname}");
    }
    let routes = routes_in(&pod);
    assert_eq!(routes.matches("default").count(), 1, "{routes}");
    assert!(
        routes.contains("default via 10.244.0.1 dev eth0"),
        "{routes}"
    );

    let registered = cni.registered("default", "upf0").expect("registered");
    let groups: Vec<(&str, Vec<String>)> = registered
        .interfaces
        .iter()
        .map(|interface| {
            (
                interface.network.as_str(),
                interface.security_groups.clone(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("std", vec![]),
            ("control", vec![]),
            ("media", vec!["sg1".to_owned(), "sg2".to_owned()]),
        ]
    );
    assert!(cni.check("upf0", &pod, args, &result).success);

    // DEL needs neither the planes nor the namespace: it finds everything by the container id.
    cni.del("upf0", None, "");
    assert!(cni.host_veths().is_empty(), "{:?}", cni.host_veths());
    for plane in ["std", "control", "media"] {
        assert!(cni.leases(plane).is_empty(), "{plane}");
    }
    assert!(cni.registered("default", "upf0").is_none());
}

#[test]
fn errors_are_cni_error_objects_and_a_failed_add_leaves_nothing() {
    require_root();
    let cni = CniNode::new("cni-errors");
    let pod = cni.pod("bad-0");
    let conf = cni.conf();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut conf = conf.clone();
        edit(&mut conf);
        conf.to_string().into_bytes()
    };
    let add =
        |args: &str, stdin: &[u8]| cni.error(cni.invoke("ADD", "bad0", Some(&pod), args, stdin));

    let version = cni.invoke("VERSION", "", None, "", b"{\"cniVersion\":\"1.0.0\"}");
    assert!(version.success);
    assert_eq!(version.stdout["supportedVersions"], json!(["1.0.0"]));

    assert_eq!(add("", b"{not json").0, 6);
    let (code, msg) = add("", &with(&|conf| conf["cniVersion"] = json!("0.3.1")));
    assert_eq!(code, 1, "{msg}");
    let (code, msg) = add("", &with(&|conf| conf["mtu"] = json!(9000)));
    assert_eq!(
        (code, msg.as_str()),
        (2, "unsupported field mtu (value 9000)")
    );
    let (code, msg) = add("", &with(&|conf| conf["defaultPlanes"] = json!([])));
    assert_eq!(code, 7, "{msg}");
    let (code, msg) = add("CTPATH_PLANE=std", &with(&|_| {}));
    assert_eq!(code, 4, "{msg}");
    let (code, msg) = add("CTPATH_PLANES=std,voice", &with(&|_| {}));
    assert_eq!(code, 102, "{msg}");
    assert!(
        msg.contains("plane voice is not served on node node-a"),
        "{msg}"
    );
    let (code, msg) = cni.error(cni.invoke("ADD", "bad0", None, "", &with(&|_| {})));
    assert_eq!((code, msg.as_str()), (4, "CNI_NETNS is not set"));
    let (code, msg) = add(
        "",
        &with(&|conf| conf["etcd"]["endpoints"] = json!(["http://127.0.0.1:1"])),
    );
    assert_eq!(code, 11, "{msg}");

    // A failure at the end of ADD (the store refuses an unknown security group, after both
    // planes got their address and veth) undoes everything.
    let (code, msg) = add(
        "CTPATH_PLANES=std,media;CTPATH_SG_media=nosuch",
        &with(&|_| {}),
    );
    assert_eq!(code, 102, "{msg}");
    assert!(cni.host_veths().is_empty(), "{:?}", cni.host_veths());
    assert!(cni.leases("std").is_empty() && cni.leases("media").is_empty());
    assert!(cni.registered("default", "bad0").is_none());
    assert!(link_in_missing(&pod, "eth0") && link_in_missing(&pod, "eth1"));
}
