//! A ctpath cluster in network namespaces, built from a cluster state: one namespace per node,
//! an underlay between them, every pod with one interface per plane, and on each node either a
//! real `ctpath agent` process or, for interop tests, the kernel's own overlay set up as flannel
//! and Rancher do (a vxlan device per VNI, a bridge with the pods' veths, an all-zeros FDB entry
//! towards each other node), or nothing at all for the caller to wire ([`NodeKind::Bare`]).
//! Dropping the [`Cluster`] stops the agents and removes everything.
//!
//! The agents follow a state file, or, with [`ClusterOptions::state_in_etcd`], a real etcd
//! server that runs in the first node's namespace on its underlay address (as on a
//! control-plane node; the other nodes reach it over the underlay), written with
//! `ctpath state apply`.
//!
//! The agents run the `ctpath` binary built next to the test executable (`target/<profile>/`),
//! or the one named by `CTPATH_BIN`, joined to the node's network namespace only
//! ([`Netns::spawn_sharing_mounts`]), so their pins land on the host's bpffs where the test
//! reads them; or, with [`ClusterOptions::own_mounts`], under `ip netns exec`, each with a
//! mount namespace and a bpffs of its own, whose pins the test reads as `ctpath status` does,
//! through the agent's pid ([`ctpath_control::pins`]).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::mpsc,
    time::Duration,
};

use ctpath_control::{
    state::{ClusterState, Network, Pod},
    status::{FastPathStatus, RuleHits, Snapshot},
    store::{Store, DEFAULT_PREFIX},
};
use ipnet::Ipv4Net;

use crate::{
    etcd::EtcdServer, Addressing, ChildGuard, NodeHandle, Offloads, PodHandle, PodInterfaceSpec,
    PodSpec, Testbed, UnderlaySpec,
};

/// What an agent logs once it has applied a new state, or found nothing in it for its node.
const STATE_TAKEN_IN: [&str; 2] = [
    "applied the new cluster state",
    "cluster state changed, nothing for this node",
];

/// How long an agent may take to report `ready`.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(20);

/// What runs the overlay on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// `ctpath agent`.
    Ctpath,
    /// The Linux kernel's vxlan device and a bridge, flannel style.
    KernelVxlan,
    /// Nothing: no agent and no kernel overlay; the caller wires the node itself (the bench's
    /// `ceiling` topology attaches its own probes).
    Bare,
}

/// How one pod's interfaces are addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodAddressing {
    /// The plane's prefix: the pod ARPs for every peer.
    OnLink,
    /// A /32 and a default route via the plane's gateway.
    HostRoute,
}

#[derive(Default)]
pub struct ClusterOptions {
    /// Nodes not listed run ctpath.
    pub node_kinds: BTreeMap<String, NodeKind>,
    /// Pods not listed are on-link.
    pub pod_addressing: BTreeMap<String, PodAddressing>,
    /// Extra arguments for every `ctpath agent` (e.g. `--fastpath-cores 1`).
    pub agent_args: Vec<String>,
    /// The underlay veths' offloads; `None`: [`Offloads::KernelDefault`] where no node runs
    /// XDP on its underlay, [`Offloads::Wire`] otherwise.
    pub underlay: Option<Offloads>,
    /// The state in etcd (`ctpath agent --etcd`) instead of a file.
    pub state_in_etcd: bool,
    /// Extra arguments for that etcd server (e.g. `--max-request-bytes`).
    pub etcd_args: Vec<String>,
    /// Agents under `ip netns exec` (a mount namespace of their own, where they mount bpffs
    /// themselves), as an agent started by hand in a node's namespace runs.
    pub own_mounts: bool,
}

pub struct Cluster {
    pub state: ClusterState,
    nodes: BTreeMap<String, NodeHandle>,
    pods: BTreeMap<String, PodHandle>,
    agents: BTreeMap<String, ChildGuard>,
    pin_dirs: BTreeMap<String, PathBuf>,
    run_dirs: BTreeMap<String, PathBuf>,
    agent_args: Vec<String>,
    own_mounts: bool,
    workdir: tempfile::TempDir,
    /// The etcd server holding the state, and the endpoint the agents were given.
    etcd: Option<(EtcdServer, String)>,
    // Last: dropped after the agents, which must detach before their interfaces vanish.
    testbed: Testbed,
}

/// The `ctpath` binary the agents run.
pub fn ctpath_binary() -> PathBuf {
    built_binary("ctpath", "CTPATH_BIN")
}

/// A binary of the workspace built next to the test executable (`target/<profile>/NAME`), or
/// the one the environment variable `override_var` names.
pub fn built_binary(name: &str, override_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // A binary in target/<profile>/ has it beside it; a test in target/<profile>/deps/ one up.
    let beside = exe.parent().expect("executable in a directory");
    let candidates = [
        beside.join(name),
        beside.parent().unwrap_or(beside).join(name),
    ];
    candidates
        .iter()
        .find(|path| path.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{} not built: run `cargo build --bins` first (or set {override_var})",
                candidates[1].display()
            )
        })
}

impl Cluster {
    /// Builds the cluster described by `state_yaml` and starts its agents.
    pub fn start(label: &str, state_yaml: &str, options: ClusterOptions) -> Cluster {
        let state = ClusterState::from_yaml_str(state_yaml).expect("test cluster state is valid");
        let testbed = Testbed::new(label).expect("testbed");
        let workdir = tempfile::tempdir().expect("tempdir");
        let state_path = workdir.path().join("state.yaml");
        std::fs::write(&state_path, state_yaml).expect("write state");

        let nodes: BTreeMap<String, NodeHandle> = state
            .nodes
            .iter()
            .map(|node| {
                (
                    node.name.clone(),
                    testbed.add_node(&node.name).expect("node"),
                )
            })
            .collect();
        let underlay = underlay_subnet(&state);
        let ordered: Vec<&NodeHandle> = state.nodes.iter().map(|node| &nodes[&node.name]).collect();
        // Where no node runs XDP on its underlay, the underlay keeps the kernel's offloads
        // unless told otherwise.
        let kernel_only = state
            .nodes
            .iter()
            .all(|node| options.node_kinds.get(&node.name) == Some(&NodeKind::KernelVxlan));
        let offloads = options.underlay.unwrap_or(if kernel_only {
            Offloads::KernelDefault
        } else {
            Offloads::Wire
        });
        let ports = testbed
            .connect_underlay_with(
                &ordered,
                &UnderlaySpec {
                    offloads,
                    ..UnderlaySpec::new(underlay)
                },
            )
            .expect("underlay");
        for (node, port) in state.nodes.iter().zip(&ports.ports) {
            assert_eq!(
                node.underlay_ip, port.ip,
                "test state: node underlay IPs must be the subnet's first hosts, in order"
            );
        }

        let mut cluster = Cluster {
            state,
            nodes,
            pods: BTreeMap::new(),
            agents: BTreeMap::new(),
            pin_dirs: BTreeMap::new(),
            run_dirs: BTreeMap::new(),
            agent_args: options.agent_args.clone(),
            own_mounts: options.own_mounts,
            workdir,
            etcd: None,
            testbed,
        };
        if options.state_in_etcd {
            let first = &cluster.state.nodes[0];
            let etcd = EtcdServer::start_in_with(
                &cluster.nodes[&first.name],
                first.underlay_ip,
                &options.etcd_args,
            );
            let endpoint = etcd.endpoint();
            cluster.etcd = Some((etcd, endpoint));
            cluster.write_state(state_yaml);
        }
        for pod in cluster.state.pods.clone() {
            let addressing = options
                .pod_addressing
                .get(&pod.name)
                .copied()
                .unwrap_or(PodAddressing::OnLink);
            cluster.create_pod(&pod, addressing);
        }
        for node in cluster.state.nodes.clone() {
            match options
                .node_kinds
                .get(&node.name)
                .copied()
                .unwrap_or(NodeKind::Ctpath)
            {
                NodeKind::Ctpath => cluster.start_agent(&node.name, &state_path),
                NodeKind::KernelVxlan => cluster.configure_kernel_vxlan(&node.name),
                NodeKind::Bare => {}
            }
        }
        cluster
    }

    /// Creates `pod` of the state in its node's namespace: its interfaces, with the kernel's
    /// default offloads on every plane, as a runtime creates them (what XDP at the host end
    /// needs inside the pod is set by the agent: `ctpath_control::pod_side`).
    fn create_pod(&mut self, pod: &Pod, addressing: PodAddressing) {
        let interfaces = pod
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, interface)| {
                let network = self.state.network(&interface.network).expect("valid state");
                PodInterfaceSpec {
                    pod_ifname: Some(format!("eth{i}")),
                    mtu: plane_mtu(network),
                    addressing: match addressing {
                        PodAddressing::OnLink => Addressing::OnLink {
                            gateway: (i == 0).then_some(network.gateway),
                        },
                        PodAddressing::HostRoute => Addressing::HostRoute {
                            gateway: network.gateway,
                        },
                    },
                    ..PodInterfaceSpec::new(
                        &interface.host_interface,
                        interface.ip,
                        if addressing == PodAddressing::OnLink {
                            network.cidr.prefix_len()
                        } else {
                            32
                        },
                        interface.mac.0,
                    )
                }
            })
            .collect();
        let node = &self.nodes[&pod.node];
        let handle = self
            .testbed
            .add_pod(
                node,
                PodSpec {
                    name: pod.name.clone(),
                    interfaces,
                },
            )
            .expect("pod");
        self.pods.insert(pod.name.clone(), handle);
    }

    pub fn node(&self, name: &str) -> &NodeHandle {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn pod(&self, name: &str) -> &PodHandle {
        self.pods
            .get(name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// Replaces the cluster state with `state_yaml` (what an operator or a controller does)
    /// and waits until every agent has taken it in.
    pub fn update_state(&mut self, state_yaml: &str) {
        let before = self.states_taken_in();
        self.write_state(state_yaml);
        self.wait_taken_in(&before, state_yaml);
    }

    /// Writes `state_yaml` where the agents read it: the state file, or etcd (with
    /// `ctpath state apply`, which must succeed), without waiting for the agents.
    pub fn write_state(&self, state_yaml: &str) {
        let path = self.workdir.path().join("state.yaml");
        std::fs::write(&path, state_yaml).expect("write state");
        let Some((etcd, _)) = &self.etcd else {
            return;
        };
        let binary = ctpath_binary();
        let endpoint = etcd.endpoint();
        let argv = [
            binary.to_str().expect("utf-8 path"),
            "state",
            "apply",
            path.to_str().expect("utf-8 path"),
            "--etcd",
            &endpoint,
        ];
        let first = &self.state.nodes[0].name;
        self.nodes[first].exec(&argv).expect("ctpath state apply");
    }

    /// How many states each running agent has taken in so far (applied, or found nothing in
    /// for its node), for [`Cluster::wait_taken_in`].
    pub fn states_taken_in(&self) -> Vec<usize> {
        // Agents that are not running (killed by the test) take it in when they start again.
        self.agents
            .keys()
            .map(|node| {
                let log = self.agent_log(node);
                STATE_TAKEN_IN
                    .iter()
                    .map(|line| log.matches(line).count())
                    .sum()
            })
            .collect()
    }

    /// Whether `node`'s agent has taken in the state of etcd revision `revision`: `Some(true)`
    /// applied, `Some(false)` found nothing in it for its node, `None` not (yet).
    pub fn took_in_revision(&self, node: &str, revision: i64) -> Option<bool> {
        let origin = format!("(etcd revision {revision})");
        self.agent_log(node)
            .lines()
            .filter(|line| line.contains(&origin))
            .find_map(|line| {
                STATE_TAKEN_IN
                    .iter()
                    .position(|taken| line.contains(taken))
                    .map(|which| which == 0)
            })
    }

    /// Waits until every running agent has taken in a state since `before`
    /// ([`Cluster::states_taken_in`]), and makes `state_yaml` the state the test knows.
    pub fn wait_taken_in(&mut self, before: &[usize], state_yaml: &str) {
        let state = ClusterState::from_yaml_str(state_yaml).expect("test cluster state is valid");
        let deadline = std::time::Instant::now() + AGENT_START_TIMEOUT;
        while self
            .states_taken_in()
            .iter()
            .zip(before)
            .any(|(now, was)| now <= was)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "agents did not take in the new state:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.state = state;
    }

    /// The etcd server of a cluster started with [`ClusterOptions::state_in_etcd`].
    pub fn etcd(&mut self) -> &mut EtcdServer {
        &mut self
            .etcd
            .as_mut()
            .expect("the cluster keeps its state in etcd")
            .0
    }

    /// The cluster state in etcd now, with what others (a CNI plugin) registered there, read
    /// from the first node, where etcd runs.
    pub fn stored_state(&self) -> ClusterState {
        let (etcd, _) = self
            .etcd
            .as_ref()
            .expect("the cluster keeps its state in etcd");
        let endpoint = etcd.endpoint();
        let first = &self.state.nodes[0].name;
        self.nodes[first]
            .run_in(|| {
                let mut store =
                    Store::connect(&[endpoint], DEFAULT_PREFIX).expect("connect to etcd");
                store.load().expect("load the state from etcd").state
            })
            .expect("enter the first node")
    }

    /// Writes `text` as the cluster state file without checking it (to see how agents take a
    /// bad one; agents that follow etcd do not read the file); the state the test knows stays
    /// the last valid one.
    pub fn write_state_unchecked(&self, text: &str) {
        std::fs::write(self.workdir.path().join("state.yaml"), text).expect("write state");
    }

    fn logs(&self) -> String {
        self.ctpath_nodes()
            .map(|node| format!("{node}:\n{}", self.agent_log(node)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The nodes that run a ctpath agent.
    pub fn ctpath_nodes(&self) -> impl Iterator<Item = &str> {
        self.pin_dirs.keys().map(String::as_str)
    }

    /// Every ctpath node's counters, as text for failure messages.
    pub fn report(&self) -> String {
        self.ctpath_nodes()
            .map(|node| format!("{node}:\n{}", self.status(node)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Each security-group rule's hits on `node`.
    pub fn rule_hits(&self, node: &str) -> Vec<RuleHits> {
        let fast_path = self.fast_path(node);
        ctpath_control::status::rule_hits(&self.pins(node), &self.state, fast_path.as_ref())
            .expect("read the agent's rule hits")
    }

    /// The pin directory of `node`'s agent as this process opens it (through the agent's
    /// mount namespace with [`ClusterOptions::own_mounts`]).
    pub fn pins(&self, node: &str) -> PathBuf {
        ctpath_control::pins::locate(&self.pin_dirs[node], &self.run_dirs[node])
            .expect("the agent's pins")
            .path
    }

    /// The AF_XDP forwarder of `node`'s agent, as it last reported (none: the state has no
    /// fast-path plane).
    pub fn fast_path(&self, node: &str) -> Option<FastPathStatus> {
        ctpath_control::status::fast_path(&self.run_dirs[node]).expect("read the forwarder report")
    }

    /// The counters of the agent of `node`.
    pub fn status(&self, node: &str) -> Snapshot {
        Snapshot::read(&self.pins(node)).expect("read the agent's pinned counters")
    }

    /// The agent's log so far (its stderr).
    pub fn agent_log(&self, node: &str) -> String {
        std::fs::read_to_string(self.workdir.path().join(format!("agent-{node}.log")))
            .unwrap_or_default()
    }

    fn start_agent(&mut self, node: &str, state_path: &Path) {
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/ctpath/{}{node}",
            self.testbed.prefix()
        ));
        let run_dir = PathBuf::from(format!("/run/ctpath/{}{node}", self.testbed.prefix()));
        let log_path = self.workdir.path().join(format!("agent-{node}.log"));
        // Appended to: an agent started again writes after the one before.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("agent log");
        let binary = ctpath_binary();
        let source = match &self.etcd {
            Some((_, endpoint)) => ["--etcd", endpoint.as_str()],
            None => ["--state", state_path.to_str().expect("utf-8 path")],
        };
        let mut argv = vec![
            binary.to_str().expect("utf-8 path"),
            "agent",
            source[0],
            source[1],
            "--node",
            node,
            "--pin-dir",
            pin_dir.to_str().expect("utf-8 path"),
            "--run-dir",
            run_dir.to_str().expect("utf-8 path"),
        ];
        argv.extend(self.agent_args.iter().map(String::as_str));
        // Nodes are separate machines: unless told otherwise, each node's forwarder gets a core
        // of its own where there are enough (node i on core i mod the cores here).
        let own_core;
        if !self.agent_args.iter().any(|arg| arg == "--fastpath-cores") {
            let index = self
                .state
                .nodes
                .iter()
                .position(|n| n.name == node)
                .unwrap_or(0);
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            own_core = (index % cores).to_string();
            argv.extend(["--fastpath-cores", own_core.as_str()]);
        }
        let node_ns = &self.nodes[node];
        let mut agent = if self.own_mounts {
            node_ns.spawn_with(&argv, Stdio::piped(), Stdio::from(log))
        } else {
            node_ns.spawn_sharing_mounts(&argv, Stdio::piped(), Stdio::from(log))
        }
        .expect("spawn agent");
        let stdout = agent.take_stdout().expect("piped stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ready") {
                    let _ = ready_tx.send(line);
                }
            }
        });
        if ready_rx.recv_timeout(AGENT_START_TIMEOUT).is_err() {
            let status = agent.try_wait().ok().flatten();
            panic!(
                "agent of {node} not ready within {AGENT_START_TIMEOUT:?} (exit: {status:?}); its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        self.agents.insert(node.to_owned(), agent);
        self.pin_dirs.insert(node.to_owned(), pin_dir);
        self.run_dirs.insert(node.to_owned(), run_dir);
    }

    /// Kills `node`'s agent with SIGKILL (a crash: nothing of it runs any more) and reaps it.
    pub fn kill_agent(&mut self, node: &str) {
        let agent = self
            .agents
            .remove(node)
            .unwrap_or_else(|| panic!("no running agent on {node}"));
        agent.kill().expect("kill the agent");
    }

    /// Stops `node`'s agent with SIGTERM, as an operator does, and waits for it to exit;
    /// returns its exit status.
    pub fn stop_agent(&mut self, node: &str) -> std::process::ExitStatus {
        let mut agent = self
            .agents
            .remove(node)
            .unwrap_or_else(|| panic!("no running agent on {node}"));
        // SAFETY: plain kill(2) of a child we spawned and have not reaped.
        unsafe { libc::kill(agent.pid() as i32, libc::SIGTERM) };
        agent
            .wait_timeout(AGENT_START_TIMEOUT)
            .expect("wait for the agent")
            .unwrap_or_else(|| panic!("agent of {node} did not stop on SIGTERM"))
    }

    /// Starts `node`'s agent again (after [`Cluster::kill_agent`] or [`Cluster::stop_agent`]),
    /// with the same pin directory and the current state file; returns once it is ready.
    pub fn restart_agent(&mut self, node: &str) {
        assert!(
            !self.agents.contains_key(node),
            "the agent of {node} still runs"
        );
        let state_path = self.workdir.path().join("state.yaml");
        self.start_agent(node, &state_path);
    }

    /// The pin directory of `node`'s agent.
    pub fn pin_dir(&self, node: &str) -> &Path {
        &self.pin_dirs[node]
    }

    /// The run directory of `node`'s agent (the forwarder's report).
    pub fn run_dir(&self, node: &str) -> &Path {
        &self.run_dirs[node]
    }

    /// Creates the pods of `state_yaml` the cluster does not have yet (on-link, the kernel's
    /// offloads), then makes it the cluster state ([`Cluster::update_state`]: the running
    /// agents take it in).
    pub fn add_pods(&mut self, state_yaml: &str) {
        let state = ClusterState::from_yaml_str(state_yaml).expect("test cluster state is valid");
        self.create_pods(&state.pods, PodAddressing::OnLink);
        self.update_state(state_yaml);
    }

    /// Creates those of `pods` the cluster does not have yet in their nodes' namespaces, as a
    /// runtime and the CNI plugin would before the pods are written into the state; the
    /// state and the agents are left alone.
    pub fn create_pods(&mut self, pods: &[Pod], addressing: PodAddressing) {
        for pod in pods {
            if !self.pods.contains_key(&pod.name) {
                self.create_pod(pod, addressing);
            }
        }
    }

    /// The process id of `node`'s running agent.
    pub fn agent_pid(&self, node: &str) -> Option<u32> {
        self.agents.get(node).map(ChildGuard::pid)
    }

    /// The client URL of the etcd server of a cluster started with
    /// [`ClusterOptions::state_in_etcd`].
    pub fn etcd_endpoint(&self) -> Option<&str> {
        self.etcd.as_ref().map(|(_, endpoint)| endpoint.as_str())
    }

    /// The node's overlay as flannel and Rancher build it with the kernel: per plane a vxlan
    /// device (the plane's VNI, dstport 4789) and a bridge with it and the pods' veths, and an
    /// all-zeros FDB entry towards every other node's VTEP (flooding goes there).
    fn configure_kernel_vxlan(&self, node_name: &str) {
        let node = &self.nodes[node_name];
        let local = self.state.node(node_name).expect("valid state");
        for network in &self.state.networks {
            let (vxlan, bridge) = (format!("vx{}", network.vni), format!("br{}", network.vni));
            let vni = network.vni.to_string();
            let local_ip = local.underlay_ip.to_string();
            let mtu = plane_mtu(network).to_string();
            for command in [
                vec!["link", "add", &bridge, "mtu", &mtu, "type", "bridge"],
                vec![
                    "link",
                    "add",
                    &vxlan,
                    "mtu",
                    &mtu,
                    "type",
                    "vxlan",
                    "id",
                    &vni,
                    "dstport",
                    "4789",
                    "local",
                    &local_ip,
                    "dev",
                    &local.underlay_interface,
                ],
                vec!["link", "set", &vxlan, "master", &bridge, "up"],
                vec!["link", "set", &bridge, "up"],
            ] {
                node.ip(&command).expect("kernel vxlan setup");
            }
            for other in self
                .state
                .nodes
                .iter()
                .filter(|other| other.name != node_name)
            {
                let dst = other.underlay_ip.to_string();
                node.exec(&[
                    "bridge",
                    "fdb",
                    "append",
                    "00:00:00:00:00:00",
                    "dev",
                    &vxlan,
                    "dst",
                    &dst,
                ])
                .expect("fdb entry");
            }
            for (_, interface) in self
                .state
                .interfaces_on_node(node_name)
                .filter(|(_, i)| i.network == network.name)
            {
                node.ip(&["link", "set", &interface.host_interface, "master", &bridge])
                    .expect("enslave pod veth");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGTERM first, so the agents detach and unpin as they would in production.
        for (node, agent) in std::mem::take(&mut self.agents) {
            // SAFETY: plain kill(2) of a child we spawned and have not reaped.
            unsafe { libc::kill(agent.pid() as i32, libc::SIGTERM) };
            let mut agent = agent;
            if !matches!(agent.wait_timeout(Duration::from_secs(5)), Ok(Some(_))) {
                eprintln!("agent of {node} did not stop on SIGTERM; killing it");
            }
        }
        // Pins left by an agent the test killed (or one that did not stop cleanly) would keep
        // its programs and maps in the kernel.
        // (Pins in an agent's own mount namespace went with it.) Their run directories too
        // (the pid file, the forwarder's report).
        for dir in self
            .pin_dirs
            .values()
            .chain(self.run_dirs.values())
            .filter(|dir| dir.exists())
        {
            if let Err(error) = std::fs::remove_dir_all(dir) {
                eprintln!("cannot remove {}: {error}", dir.display());
            }
        }
    }
}

/// The plane's MTU as pods get it: configured, or 1450 (a 1500-byte underlay less VXLAN).
pub fn plane_mtu(network: &Network) -> u32 {
    network.mtu.map(u32::from).unwrap_or(1450)
}

/// The /24 holding the nodes' underlay addresses.
fn underlay_subnet(state: &ClusterState) -> Ipv4Net {
    let first = state.nodes.first().expect("at least one node").underlay_ip;
    Ipv4Net::new(first, 24).expect("/24").trunc()
}

/// The address of `pod`'s interface on `network`.
pub fn pod_ip(state: &ClusterState, pod: &str, network: &str) -> Ipv4Addr {
    state
        .pods
        .iter()
        .find(|p| p.name == pod)
        .and_then(|p| p.interfaces.iter().find(|i| i.network == network))
        .unwrap_or_else(|| panic!("no interface of {pod} on {network}"))
        .ip
}

/// The name inside the pod of `pod`'s interface on `network` (`eth0`, `eth1`, ... in the
/// state's order).
pub fn pod_ifname(state: &ClusterState, pod: &str, network: &str) -> String {
    let index = state
        .pods
        .iter()
        .find(|p| p.name == pod)
        .and_then(|p| p.interfaces.iter().position(|i| i.network == network))
        .unwrap_or_else(|| panic!("no interface of {pod} on {network}"));
    format!("eth{index}")
}
