//! `ctpath-bench scale`: the control plane at scale (issue 10, item 6), on one cluster of
//! three or more netns nodes whose agents follow one real etcd (the testbed's [`Cluster`] with
//! the state in etcd, etcd in the first node), in five phases:
//!
//! 1. **Convergence**: `samples` times, a new pod is created on the next node (namespace and
//!    veth, as the runtime and the CNI plugin create them, with a UDP echo server in it), the
//!    state with the pod is written to etcd ([`Store::replace`], from a thread in the first
//!    node's namespace), and from the end of that write a prober in the probe pod of every node
//!    (the new pod's own included) sends a datagram every millisecond until the new pod's echo
//!    comes back: the time to reachability from each node. The time until each agent's log
//!    says it took the revision in is recorded beside it.
//! 2. **Updates under traffic**: a steady UDP flow from the first node's probe to the second's
//!    (allowed by the second probe's security group), while `updates` states are written one
//!    after the other, each changing a rule of that very group and putting a spare pod on the
//!    last node into the state or taking it out, each written once every agent has taken the
//!    previous one in; the flow's datagrams sent, received and lost, and what each agent did
//!    with each revision (applied, nothing for its node, or not taken in).
//! 3. **Compile and load** of the large state ([`state::enlarge`]: by default 10,000 pods,
//!    2,000 groups, 50,000 rules): in this process, inside each agent node's namespace,
//!    validation, [`compile::compile`] against the node's real interfaces, loading the object
//!    and [`datapath::apply_plan`] into its fresh maps; then as an operator sees it: the state
//!    written to etcd, and the time until each agent logs that it applied it (or what it
//!    logged instead).
//! 4. **Memory**: each agent's VmRSS and VmHWM (`/proc/PID/status`) before and after the
//!    large state.
//! 5. **Convergence with the large state in force** (when every agent applied it): phase 1
//!    again, `samples_large` times, each write now of the large state plus one pod.
//!
//! Writes `scale.json` (every sample, the machine, the configuration) and `scale.txt` (the
//! summary with the issue's goals met or missed) into `--out`. Speeds are never asserted: the
//! exit status is 1 only when a phase could not produce its figures (see
//! [`ScaleResults::problems`]).
//!
//! Owns [`ScaleError`], [`ScaleResults`]. Panic contract: [`Cluster::start`] and the
//! testbed's pod creation panic when the testbed cannot be built (test code; the namespaces are
//! removed while unwinding); everything else returns [`ScaleError`] (the few `expect`s are on
//! invariants of this module).

mod probe;
pub mod state;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddrV4,
    path::{Path, PathBuf},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use ctpath_control::{
    compile, datapath,
    links::KernelLinks,
    state::ClusterState,
    store::{Store, Written, DEFAULT_PREFIX},
};
use ctpath_testbed::{
    cluster::{Cluster, ClusterOptions, PodAddressing},
    Netns,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    cli::ScaleArgs,
    machine::Machine,
    measure::quantile,
    report::{verdict, ReportError, Stats},
};
use probe::{Echo, FlowCount, ProbeError, Prober};
use state::{Shape, StateError, ECHO_PORT, FLOW_PORT};

/// How long a new pod may take to become reachable before the sample counts it unreached.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an agent may take to take in a small state.
const TAKE_IN_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the agents' logs are read while waiting.
const LOG_POLL: Duration = Duration::from_millis(5);
/// The steady flow's pace: 5,000 datagrams a second.
const FLOW_INTERVAL: Duration = Duration::from_micros(200);
/// etcd's limits raised for the large state: one transaction holds every key
/// (`--max-txn-ops`, 128 by default) and the request is several MB (`--max-request-bytes`,
/// 1.5 MiB by default).
pub const ETCD_ARGS: [&str; 4] = ["--max-txn-ops", "100000", "--max-request-bytes", "67108864"];
/// The issue's sizes, at which the size-dependent goals apply.
pub const ISSUE_SHAPE: Shape = Shape {
    pods: 10_000,
    groups: 2_000,
    rules: 50_000,
    local_per_node: 20,
};

#[derive(Debug, Error)]
pub enum ScaleError {
    #[error("ctpath-bench scale must run as root (namespaces, eBPF); euid is {0}")]
    NotRoot(u32),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("writing the state to etcd: {0}")]
    Write(String),
    #[error("the etcd writer thread is gone")]
    WriterGone,
    #[error("the allowed flow from {from} to {to} never arrived ({sent} datagrams sent in 5 s)")]
    FlowNeverArrived { from: String, to: String, sent: u64 },
    #[error("creating {path}: {source}")]
    OutDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// What a scale run measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleConfig {
    pub quick: bool,
    pub nodes: usize,
    pub samples: usize,
    /// Convergence samples with the large state in force.
    pub samples_large: usize,
    pub updates: usize,
    pub shape: Shape,
    pub probe_interval_ms: f64,
    pub flow_pps: f64,
    pub etcd_args: Vec<String>,
}

impl ScaleConfig {
    pub fn new(args: &ScaleArgs) -> ScaleConfig {
        let quick = args.quick;
        let shape = Shape {
            pods: args
                .pods
                .unwrap_or(if quick { 300 } else { ISSUE_SHAPE.pods }),
            groups: args
                .groups
                .unwrap_or(if quick { 60 } else { ISSUE_SHAPE.groups }),
            rules: args
                .rules
                .unwrap_or(if quick { 1_500 } else { ISSUE_SHAPE.rules }),
            local_per_node: args.local.unwrap_or(if quick {
                2
            } else {
                ISSUE_SHAPE.local_per_node
            }),
        };
        ScaleConfig {
            quick,
            nodes: args.nodes,
            samples: args.samples.unwrap_or(if quick { 5 } else { 50 }),
            samples_large: args.samples_large.unwrap_or(if quick { 2 } else { 20 }),
            updates: args.updates.unwrap_or(if quick { 6 } else { 100 }),
            shape,
            probe_interval_ms: probe::PROBE_INTERVAL.as_secs_f64() * 1e3,
            flow_pps: 1.0 / FLOW_INTERVAL.as_secs_f64(),
            etcd_args: ETCD_ARGS.map(String::from).to_vec(),
        }
    }
}

/// One convergence sample: per agent node (in node order), when the new pod answered that
/// node's probe and when the node's agent logged the revision taken in (ms after the write).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceSample {
    pub index: usize,
    pub pod_node: String,
    pub revision: i64,
    pub reach_ms: Vec<Option<f64>>,
    pub agent_ms: Vec<Option<f64>>,
    /// Per agent node, the probes' mean gap (ms): time probed / datagrams sent.
    #[serde(default)]
    pub probe_gap_ms: Vec<f64>,
}

/// What one agent did with the updates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenIn {
    pub applied: usize,
    pub nothing_for_node: usize,
    pub not_taken_in: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdatePhase {
    pub flow: FlowCount,
    /// Per agent node.
    pub taken_in: BTreeMap<String, TakenIn>,
    /// The etcd write to the last agent's log line, per update (ms).
    pub update_ms: Vec<f64>,
}

/// The large state compiled and loaded in this process inside one node's namespace (ms).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InProcess {
    pub node: String,
    pub validate_ms: f64,
    pub compile_ms: f64,
    /// Loading the eBPF object (creating its maps), which an agent does once at start.
    pub load_object_ms: f64,
    pub apply_ms: f64,
    pub endpoints: usize,
    pub pod_ports: usize,
    pub identities: usize,
    pub policy_entries: usize,
    pub error: Option<String>,
}

/// One agent's take of the large state from etcd.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentApply {
    pub node: String,
    /// From the end of the etcd write to the log line saying it applied the revision.
    pub applied_ms: Option<f64>,
    /// What it logged instead (errors), when it did not apply it in time.
    pub error: Option<String>,
}

/// An agent's memory (kB, from `/proc/PID/status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub node: String,
    pub state: String,
    pub vm_rss_kb: Option<u64>,
    pub vm_hwm_kb: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LargePhase {
    pub pods: usize,
    pub nodes: usize,
    pub groups: usize,
    pub rules: usize,
    /// The state as JSON (about what etcd holds), bytes.
    pub json_bytes: usize,
    pub write_ms: Option<f64>,
    pub write_error: Option<String>,
    pub in_process: Vec<InProcess>,
    pub agents: Vec<AgentApply>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleResults {
    pub tool: String,
    pub machine: Machine,
    pub config: ScaleConfig,
    pub nodes: Vec<String>,
    pub duration_seconds: f64,
    pub convergence: Vec<ConvergenceSample>,
    /// The same with the large state in force (phase 5), when the agents applied it.
    #[serde(default)]
    pub convergence_large: Vec<ConvergenceSample>,
    pub updates: Option<UpdatePhase>,
    pub large: Option<LargePhase>,
    pub memory: Vec<Memory>,
    /// Phases that could not run, as messages.
    pub failures: Vec<String>,
}

/// The etcd writer: a thread in the first node's namespace (where etcd listens) holding one
/// [`Store`]; each state sent is written with [`Store::replace`] and answered with the write
/// and the instant it completed.
struct Writer {
    requests: Option<mpsc::Sender<ClusterState>>,
    replies: mpsc::Receiver<Result<(Written, Instant), String>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(netns: &Netns, endpoint: String) -> Writer {
        let (requests, incoming) = mpsc::channel::<ClusterState>();
        let (answer, replies) = mpsc::channel();
        let netns = netns.clone();
        let thread = std::thread::spawn(move || {
            let entered = netns.run_in(move || {
                let mut store = match Store::connect(&[endpoint], DEFAULT_PREFIX) {
                    Ok(store) => store,
                    Err(error) => {
                        let _ = answer.send(Err(error.to_string()));
                        return;
                    }
                };
                for state in incoming {
                    let written = store
                        .replace(&state)
                        .map(|written| (written, Instant::now()))
                        .map_err(|error| error.to_string());
                    if answer.send(written).is_err() {
                        return;
                    }
                }
            });
            if let Err(error) = entered {
                eprintln!("ctpath-bench scale: the etcd writer: {error}");
            }
        });
        Writer {
            requests: Some(requests),
            replies,
            thread: Some(thread),
        }
    }

    /// Writes `state`; returns the write and when it completed.
    fn write(&self, state: &ClusterState) -> Result<(Written, Instant), ScaleError> {
        self.requests
            .as_ref()
            .ok_or(ScaleError::WriterGone)?
            .send(state.clone())
            .map_err(|_| ScaleError::WriterGone)?;
        self.replies
            .recv()
            .map_err(|_| ScaleError::WriterGone)?
            .map_err(ScaleError::Write)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Waits until every agent has taken in `revision` (or `timeout` passed); per node, when its
/// log said so (from `since`) and whether it applied it.
fn wait_taken_in(
    cluster: &Cluster,
    nodes: &[String],
    revision: i64,
    since: Instant,
    timeout: Duration,
) -> Vec<Option<(f64, bool)>> {
    let mut seen: Vec<Option<(f64, bool)>> = vec![None; nodes.len()];
    while seen.iter().any(Option::is_none) && since.elapsed() < timeout {
        for (node, slot) in nodes.iter().zip(seen.iter_mut()) {
            if slot.is_none() {
                *slot = cluster
                    .took_in_revision(node, revision)
                    .map(|applied| (ms(since.elapsed()), applied));
            }
        }
        std::thread::sleep(LOG_POLL);
    }
    seen
}

/// VmRSS and VmHWM (kB) of process `pid`.
fn memory_of(pid: u32) -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn memory(cluster: &Cluster, nodes: &[String], state: &str) -> Vec<Memory> {
    nodes
        .iter()
        .map(|node| {
            let (vm_rss_kb, vm_hwm_kb) = cluster.agent_pid(node).map_or((None, None), memory_of);
            Memory {
                node: node.clone(),
                state: state.to_owned(),
                vm_rss_kb,
                vm_hwm_kb,
            }
        })
        .collect()
}

/// Phase 1 (see the module docs).
fn convergence(
    cluster: &mut Cluster,
    writer: &Writer,
    nodes: &[String],
    state: &mut ClusterState,
    indices: std::ops::Range<usize>,
) -> Result<Vec<ConvergenceSample>, ScaleError> {
    let probers = (0..nodes.len())
        .map(|i| Prober::open(cluster.pod(&state::probe_name(i))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut results = Vec::new();
    for index in indices {
        let node = &nodes[index % nodes.len()];
        let pod = state::new_pod(index, node)?;
        cluster.create_pods(std::slice::from_ref(&pod), PodAddressing::HostRoute);
        let ip = pod.interfaces[0].ip;
        let _echo = Echo::start(cluster.pod(&pod.name), ip, ECHO_PORT)?;
        state.pods.push(pod);
        let (written, since) = writer.write(state)?;
        let target = SocketAddrV4::new(ip, ECHO_PORT);
        let cluster = &*cluster;
        let (reach, agents) = std::thread::scope(|scope| {
            let probing: Vec<_> = probers
                .iter()
                .map(|prober| {
                    scope.spawn(move || {
                        prober.first_answer(target, since, REACH_TIMEOUT, index as u32)
                    })
                })
                .collect();
            let agents = wait_taken_in(cluster, nodes, written.revision, since, TAKE_IN_TIMEOUT);
            let probed: Vec<Option<probe::Probed>> =
                probing.into_iter().map(|p| p.join().ok()).collect();
            (probed, agents)
        });
        let gap = |p: &probe::Probed| {
            let probed = p.answered.unwrap_or(REACH_TIMEOUT);
            ms(probed) / f64::from(p.sent.max(1))
        };
        results.push(ConvergenceSample {
            index,
            pod_node: node.clone(),
            revision: written.revision,
            reach_ms: reach
                .iter()
                .map(|p| p.and_then(|p| p.answered).map(ms))
                .collect(),
            agent_ms: agents.iter().map(|a| a.map(|(t, _)| t)).collect(),
            probe_gap_ms: reach.iter().flatten().map(gap).collect(),
        });
    }
    Ok(results)
}

/// Phase 2 (see the module docs).
fn updates(
    cluster: &mut Cluster,
    writer: &Writer,
    nodes: &[String],
    state: &mut ClusterState,
    count: usize,
) -> Result<UpdatePhase, ScaleError> {
    let last = nodes.last().expect("at least three nodes");
    let spare = state::spare_pod(last);
    cluster.create_pods(std::slice::from_ref(&spare), PodAddressing::HostRoute);
    let flow = probe::Flow::start(
        cluster.pod(&state::probe_name(0)),
        cluster.pod(&state::probe_name(1)),
        state::probe_ip(1),
        FLOW_PORT,
        FLOW_INTERVAL,
    )?;
    if !flow.wait_flowing(Duration::from_secs(5)) {
        return Err(ScaleError::FlowNeverArrived {
            from: state::probe_name(0),
            to: state::probe_name(1),
            sent: flow.finish(Duration::ZERO).sent,
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut taken_in: BTreeMap<String, TakenIn> = nodes
        .iter()
        .map(|n| (n.clone(), TakenIn::default()))
        .collect();
    let mut update_ms = Vec::new();
    for update in 0..count {
        if update % 2 == 0 {
            state.pods.push(spare.clone());
        } else {
            state.pods.retain(|pod| pod.name != spare.name);
        }
        state::set_churn(state, update as u16 + 1);
        let (written, since) = writer.write(state)?;
        let seen = wait_taken_in(cluster, nodes, written.revision, since, TAKE_IN_TIMEOUT);
        for (node, seen) in nodes.iter().zip(&seen) {
            let tally = taken_in.get_mut(node).expect("every node tallied");
            match seen {
                Some((_, true)) => tally.applied += 1,
                Some((_, false)) => tally.nothing_for_node += 1,
                None => tally.not_taken_in += 1,
            }
        }
        if let Some(slowest) = seen
            .iter()
            .map(|s| s.map(|(t, _)| t))
            .collect::<Option<Vec<f64>>>()
        {
            update_ms.push(slowest.into_iter().fold(0.0, f64::max));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(UpdatePhase {
        flow: flow.finish(Duration::from_millis(300)),
        taken_in,
        update_ms,
    })
}

/// The large state compiled and applied in this process, in `node`'s namespace.
fn in_process(cluster: &Cluster, node: &str, large: &ClusterState) -> InProcess {
    let measured = cluster.node(node).run_in(|| {
        let mut result = InProcess {
            node: node.to_owned(),
            ..InProcess::default()
        };
        let outcome = (|| -> Result<(), String> {
            let links = KernelLinks::open().map_err(|e| format!("netlink: {e}"))?;
            let started = Instant::now();
            large.validate().map_err(|e| e.to_string())?;
            result.validate_ms = ms(started.elapsed());
            let started = Instant::now();
            let plan = compile::compile(large, node, &links).map_err(|e| e.to_string())?;
            result.compile_ms = ms(started.elapsed());
            result.endpoints = plan.endpoints.len();
            result.pod_ports = plan.pod_ports.len();
            result.identities = plan.policy.identities.len();
            result.policy_entries = plan.policy.entries.len();
            let started = Instant::now();
            let mut ebpf =
                datapath::load_with(plan.conntrack_entries).map_err(|e| e.to_string())?;
            result.load_object_ms = ms(started.elapsed());
            let started = Instant::now();
            datapath::apply_plan(&mut ebpf, None, &plan, 1).map_err(|e| e.to_string())?;
            result.apply_ms = ms(started.elapsed());
            Ok(())
        })();
        result.error = outcome.err();
        result
    });
    measured.unwrap_or_else(|error| InProcess {
        node: node.to_owned(),
        error: Some(error.to_string()),
        ..InProcess::default()
    })
}

/// The last error or warning line of an agent's log after its first `skip` bytes, without
/// terminal colours.
fn last_complaint(log: &str, skip: usize) -> Option<String> {
    let line = log
        .get(skip..)
        .unwrap_or_default()
        .lines()
        .rfind(|line| line.contains("ERROR") || line.contains("WARN"))?;
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An SGR sequence: ESC [ ... m.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    Some(plain)
}

/// Phase 3 (see the module docs).
fn large(
    cluster: &mut Cluster,
    writer: &Writer,
    nodes: &[String],
    state: &mut ClusterState,
    shape: Shape,
    timeout: Duration,
) -> Result<LargePhase, ScaleError> {
    let mut large = state.clone();
    let local = state::enlarge(&mut large, shape)?;
    cluster.create_pods(&local, PodAddressing::HostRoute);
    let in_process: Vec<InProcess> = nodes
        .iter()
        .map(|node| in_process(cluster, node, &large))
        .collect();
    let json_bytes = serde_json::to_vec(&large).map_or(0, |v| v.len());
    let log_sizes: Vec<usize> = nodes.iter().map(|n| cluster.agent_log(n).len()).collect();
    let started = Instant::now();
    let (write_ms, write_error, agents) = match writer.write(&large) {
        Ok((written, since)) => {
            let seen = wait_taken_in(cluster, nodes, written.revision, since, timeout);
            let agents = nodes
                .iter()
                .zip(&seen)
                .zip(&log_sizes)
                .map(|((node, seen), &skip)| AgentApply {
                    node: node.clone(),
                    applied_ms: seen.and_then(|(t, applied)| applied.then_some(t)),
                    error: match seen {
                        Some((_, true)) => None,
                        Some((_, false)) => Some("found nothing in it for its node".into()),
                        None => Some(
                            last_complaint(&cluster.agent_log(node), skip).unwrap_or_else(|| {
                                format!("not applied within {} s", timeout.as_secs())
                            }),
                        ),
                    },
                })
                .collect();
            (Some(ms(since - started)), None, agents)
        }
        Err(error) => (None, Some(error.to_string()), Vec::new()),
    };
    let phase = LargePhase {
        pods: large.pods.len(),
        nodes: large.nodes.len(),
        groups: large.security_groups.len(),
        rules: state::rule_count(&large),
        json_bytes,
        write_ms,
        write_error,
        in_process,
        agents,
    };
    *state = large;
    Ok(phase)
}

/// Runs the scale case as `args` say and writes `scale.json` and `scale.txt` into `args.out`.
pub fn run(args: &ScaleArgs) -> Result<ScaleResults, ScaleError> {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(ScaleError::NotRoot(euid));
    }
    let config = ScaleConfig::new(args);
    std::fs::create_dir_all(&args.out).map_err(|source| ScaleError::OutDir {
        path: args.out.display().to_string(),
        source,
    })?;
    let started = Instant::now();
    let nodes = state::node_names(config.nodes)?;
    let mut state = state::base(config.nodes, 0)?;
    // Validate the large state's sizes before building anything.
    state::enlarge(&mut state.clone(), config.shape)?;
    eprintln!(
        "ctpath-bench scale: {} nodes on one etcd; {} convergence samples, {} updates, then \
         {} pods / {} groups / {} rules",
        config.nodes,
        config.samples,
        config.updates,
        config.shape.pods,
        config.shape.groups,
        config.shape.rules
    );
    let options = ClusterOptions {
        state_in_etcd: true,
        etcd_args: config.etcd_args.clone(),
        pod_addressing: (0..config.nodes)
            .map(|i| (state::probe_name(i), PodAddressing::HostRoute))
            .collect(),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start("bench-scale", &state.to_yaml(), options);
    let endpoint = cluster
        .etcd_endpoint()
        .expect("the cluster keeps its state in etcd")
        .to_owned();
    let writer = Writer::start(cluster.node(&nodes[0]), endpoint);
    // Every probe answers its echo port; the flow's destination only from the first probe.
    let _echoes = (0..config.nodes)
        .map(|i| {
            Echo::start(
                cluster.pod(&state::probe_name(i)),
                state::probe_ip(i),
                ECHO_PORT,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut results = ScaleResults {
        tool: format!("ctpath-bench {}", env!("CARGO_PKG_VERSION")),
        machine: Machine::describe(),
        config: config.clone(),
        nodes: nodes.clone(),
        duration_seconds: 0.0,
        convergence: Vec::new(),
        convergence_large: Vec::new(),
        updates: None,
        large: None,
        memory: Vec::new(),
        failures: Vec::new(),
    };
    match convergence(&mut cluster, &writer, &nodes, &mut state, 0..config.samples) {
        Ok(samples) => results.convergence = samples,
        Err(e) => results.failures.push(format!("convergence: {e}")),
    }
    eprintln!("convergence: {} samples", results.convergence.len());
    match updates(&mut cluster, &writer, &nodes, &mut state, config.updates) {
        Ok(phase) => results.updates = Some(phase),
        Err(e) => results.failures.push(format!("updates: {e}")),
    }
    eprintln!("updates: done");
    results.memory = memory(&cluster, &nodes, "base");
    let timeout = Duration::from_secs(if config.quick { 30 } else { 120 });
    match large(
        &mut cluster,
        &writer,
        &nodes,
        &mut state,
        config.shape,
        timeout,
    ) {
        Ok(phase) => results.large = Some(phase),
        Err(e) => results.failures.push(format!("large state: {e}")),
    }
    results.memory.extend(memory(&cluster, &nodes, "large"));
    let applied = results
        .large
        .as_ref()
        .is_some_and(|l| !l.agents.is_empty() && l.agents.iter().all(|a| a.applied_ms.is_some()));
    if applied {
        let more = config.samples..config.samples + config.samples_large;
        match convergence(&mut cluster, &writer, &nodes, &mut state, more) {
            Ok(samples) => results.convergence_large = samples,
            Err(e) => results
                .failures
                .push(format!("convergence with the large state: {e}")),
        }
        eprintln!(
            "convergence with the large state: {} samples",
            results.convergence_large.len()
        );
    }
    drop(writer);
    drop(cluster);
    results.duration_seconds = started.elapsed().as_secs_f64();
    write_outputs(&results, &args.out)?;
    Ok(results)
}

/// Writes scale.json and scale.txt into `dir`.
pub fn write_outputs(results: &ScaleResults, dir: &Path) -> Result<(), ScaleError> {
    let write = |name: &str, text: String| -> Result<(), ScaleError> {
        let path: PathBuf = dir.join(name);
        std::fs::write(&path, text).map_err(|source| {
            ScaleError::Report(ReportError::Write {
                path: path.display().to_string(),
                source,
            })
        })
    };
    write(
        "scale.json",
        serde_json::to_string_pretty(results).expect("results serialise") + "\n",
    )?;
    write("scale.txt", summary(results))
}

/// p50, p99 and max of some milliseconds.
fn percentiles(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let max = *sorted.last()?;
    Some((quantile(&sorted, 0.5), quantile(&sorted, 0.99), max))
}

fn triple(values: &[f64]) -> String {
    percentiles(values).map_or("-".into(), |(p50, p99, max)| {
        format!("{p50:>8.1} {p99:>8.1} {max:>8.1}")
    })
}

impl ScaleResults {
    /// Every reach time of the samples (ms), over all nodes.
    fn reach_all(samples: &[ConvergenceSample]) -> Vec<f64> {
        samples
            .iter()
            .flat_map(|s| s.reach_ms.iter().flatten().copied())
            .collect()
    }

    /// Whether the large state has the issue's sizes (the size-dependent goals apply).
    fn at_issue_size(&self) -> bool {
        let s = self.config.shape;
        s.pods >= ISSUE_SHAPE.pods && s.groups >= ISSUE_SHAPE.groups && s.rules >= ISSUE_SHAPE.rules
    }

    /// The issue's goals: (what, measured value, goal, met); `met` is `None` where nothing
    /// was measured, and for the large state's goals when it is smaller than the issue's.
    pub fn goals(&self) -> Vec<(String, Option<String>, &'static str, Option<bool>)> {
        let at_size = self.at_issue_size();
        let sized = |met: Option<bool>| met.filter(|_| at_size);
        let p99 = |samples| percentiles(&Self::reach_all(samples)).map(|(_, p99, _)| p99);
        let reach_p99 = p99(&self.convergence);
        let reach_large_p99 = p99(&self.convergence_large);
        let large = self.large.as_ref();
        let in_process = large.and_then(|l| {
            l.in_process
                .iter()
                .map(|p| {
                    p.error
                        .is_none()
                        .then_some(p.validate_ms + p.compile_ms + p.apply_ms)
                })
                .collect::<Option<Vec<f64>>>()
                .and_then(|v| v.into_iter().reduce(f64::max))
        });
        let agents = large.and_then(|l| {
            l.agents
                .iter()
                .map(|a| a.applied_ms)
                .collect::<Option<Vec<f64>>>()
                .and_then(|v| v.into_iter().reduce(f64::max))
        });
        let applied_large = agents.is_some();
        let rss = self
            .memory
            .iter()
            .filter(|m| m.state == "large")
            .map(|m| m.vm_rss_kb)
            .collect::<Option<Vec<u64>>>()
            .and_then(|v| v.into_iter().max())
            .filter(|_| applied_large);
        let updates = self.updates.as_ref();
        let lost = updates.map(|u| u.flow.lost + u.flow.send_errors);
        let all_applied = updates.map(|u| {
            u.taken_in.values().all(|t| t.not_taken_in == 0)
                && u.update_ms.len() == self.config.updates
        });
        vec![
            (
                format!(
                    "new pod reachable from every node, p99 ({} samples)",
                    self.convergence.len()
                ),
                reach_p99.map(|v| format!("{v:.1} ms")),
                "<= 100 ms",
                reach_p99.map(|v| v <= 100.0),
            ),
            (
                format!(
                    "the same with the large state in force ({} samples)",
                    self.convergence_large.len()
                ),
                reach_large_p99.map(|v| format!("{v:.1} ms")),
                "<= 100 ms",
                sized(reach_large_p99.map(|v| v <= 100.0)),
            ),
            (
                "large state validated, compiled, applied in process (slowest node)".into(),
                in_process.map(|v| format!("{:.0} ms", v)),
                "<= 2 s",
                sized(in_process.map(|v| v <= 2000.0)),
            ),
            (
                "large state from the etcd write to applied (slowest agent)".into(),
                agents.map(|v| format!("{:.0} ms", v)),
                "<= 2 s",
                sized(agents.map(|v| v <= 2000.0)),
            ),
            (
                "agent VmRSS with the large state (largest)".into(),
                rss.map(|kb| format!("{:.1} MiB", kb as f64 / 1024.0)),
                "<= 64 MiB",
                sized(rss.map(|kb| kb <= 64 * 1024)),
            ),
            (
                format!(
                    "packets lost on an allowed flow during {} updates",
                    self.config.updates
                ),
                lost.map(|l| l.to_string()),
                "0",
                lost.zip(all_applied).map(|(l, all)| l == 0 && all),
            ),
        ]
    }

    /// What keeps the run from having produced its figures (the exit status is 1 if any).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.failures.clone();
        let c = &self.config;
        if self.convergence.len() < c.samples {
            problems.push(format!(
                "convergence: {} of {} samples",
                self.convergence.len(),
                c.samples
            ));
        }
        for sample in self.convergence.iter().chain(&self.convergence_large) {
            for (node, reach) in self.nodes.iter().zip(&sample.reach_ms) {
                if reach.is_none() {
                    problems.push(format!(
                        "convergence sample {}: the new pod on {} was not reachable from {node} within {} s",
                        sample.index,
                        sample.pod_node,
                        REACH_TIMEOUT.as_secs()
                    ));
                }
            }
        }
        if let Some(u) = &self.updates {
            for (node, t) in &u.taken_in {
                if t.not_taken_in > 0 {
                    problems.push(format!(
                        "updates: {node}'s agent did not take in {} of {} updates",
                        t.not_taken_in, c.updates
                    ));
                }
            }
            if u.flow.received == 0 {
                problems.push("updates: the flow received nothing".into());
            }
        }
        if let Some(l) = &self.large {
            if let Some(e) = &l.write_error {
                problems.push(format!("large state: the etcd write failed: {e}"));
            }
            for p in &l.in_process {
                if let Some(e) = &p.error {
                    problems.push(format!("large state in process on {}: {e}", p.node));
                }
            }
            for a in &l.agents {
                if let Some(e) = &a.error {
                    problems.push(format!(
                        "large state: {}'s agent did not apply it: {e}",
                        a.node
                    ));
                }
            }
        }
        for m in &self.memory {
            if m.vm_rss_kb.is_none() {
                problems.push(format!(
                    "memory: no VmRSS of {}'s agent ({} state)",
                    m.node, m.state
                ));
            }
        }
        problems
    }
}

/// One convergence table of the summary.
fn convergence_table(
    out: &mut String,
    results: &ScaleResults,
    samples: &[ConvergenceSample],
    with: &str,
) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Convergence with {with}: from the end of the etcd write of a new pod to its first UDP \
         echo, per probing node (ms; {} samples, a probe every {} ms asked, a median gap of {} ms), \
         and to the agent's log line",
        samples.len(),
        results.config.probe_interval_ms,
        Stats::of(
            &samples
                .iter()
                .flat_map(|s| s.probe_gap_ms.iter().copied())
                .collect::<Vec<_>>()
        )
        .median
        .map_or("-".into(), |gap| format!("{gap:.2}"))
    );
    let _ = writeln!(
        out,
        "{:<10} {:>8} {:>8} {:>8}   {:>8} {:>8} {:>8}",
        "from", "p50", "p99", "max", "agent50", "agent99", "agentmax"
    );
    for (i, node) in results.nodes.iter().enumerate() {
        let column = |f: fn(&ConvergenceSample) -> &Vec<Option<f64>>| -> Vec<f64> {
            samples
                .iter()
                .filter_map(|s| f(s).get(i).copied().flatten())
                .collect()
        };
        let _ = writeln!(
            out,
            "{node:<10} {}   {}",
            triple(&column(|s| &s.reach_ms)),
            triple(&column(|s| &s.agent_ms))
        );
    }
    let all_agents: Vec<f64> = samples
        .iter()
        .flat_map(|s| s.agent_ms.iter().flatten().copied())
        .collect();
    let _ = writeln!(
        out,
        "{:<10} {}   {}",
        "all",
        triple(&ScaleResults::reach_all(samples)),
        triple(&all_agents)
    );
}

/// The readable summary (`scale.txt`).
pub fn summary(results: &ScaleResults) -> String {
    let mut out = String::new();
    let c = &results.config;
    let m = &results.machine;
    let _ = writeln!(
        out,
        "ctpath-bench scale{}: {} nodes on one etcd, {:.0} s; machine: {}, {} CPUs, Linux {}, \
         load average at start {}; ctpath {}",
        if c.quick { " --quick" } else { "" },
        c.nodes,
        results.duration_seconds,
        m.cpu_model,
        m.cpus,
        m.kernel,
        m.loadavg,
        m.ctpath_commit
    );
    convergence_table(&mut out, results, &results.convergence, "the base state");

    if let Some(u) = &results.updates {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Updates under traffic: {} updates, each written once every agent took the one \
             before in; a UDP flow of {:.0} datagrams/s between the first two nodes' probes",
            c.updates, c.flow_pps
        );
        let _ = writeln!(
            out,
            "  flow: {} sent, {} received, {} lost over {:.1} s ({} sends refused by the \
             sender's stack)",
            u.flow.sent, u.flow.received, u.flow.lost, u.flow.seconds, u.flow.send_errors
        );
        for (node, t) in &u.taken_in {
            let _ = writeln!(
                out,
                "  {node}: {} applied, {} nothing for the node, {} not taken in",
                t.applied, t.nothing_for_node, t.not_taken_in
            );
        }
        let _ = writeln!(
            out,
            "  etcd write to the slowest agent's log line (ms): p50 p99 max {}",
            triple(&u.update_ms)
        );
    }

    if let Some(l) = &results.large {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Large state: {} pods, {} nodes, {} groups, {} rules ({:.1} MB as JSON); \
             {} pods on each agent node",
            l.pods,
            l.nodes,
            l.groups,
            l.rules,
            l.json_bytes as f64 / 1e6,
            c.shape.local_per_node
        );
        let _ = writeln!(
            out,
            "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>10} {:>8}",
            "in process",
            "validate",
            "compile",
            "load obj",
            "apply",
            "endpoints",
            "ports",
            "identities",
            "policy"
        );
        for p in &l.in_process {
            match &p.error {
                Some(e) => {
                    let _ = writeln!(out, "{:<10} FAILED: {e}", p.node);
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{:<10} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9} {:>7} {:>10} {:>8}",
                        p.node,
                        p.validate_ms,
                        p.compile_ms,
                        p.load_object_ms,
                        p.apply_ms,
                        p.endpoints,
                        p.pod_ports,
                        p.identities,
                        p.policy_entries
                    );
                }
            }
        }
        match (&l.write_ms, &l.write_error) {
            (_, Some(e)) => {
                let _ = writeln!(out, "  etcd write FAILED: {e}");
            }
            (Some(w), None) => {
                let _ = writeln!(out, "  etcd write took {w:.0} ms; then, per agent:");
            }
            (None, None) => {}
        }
        for a in &l.agents {
            let _ = match (&a.applied_ms, &a.error) {
                (Some(t), _) => writeln!(out, "  {}: applied after {t:.0} ms", a.node),
                (None, e) => writeln!(
                    out,
                    "  {}: NOT applied: {}",
                    a.node,
                    e.as_deref().unwrap_or("-")
                ),
            };
        }
    }

    if !results.convergence_large.is_empty() {
        convergence_table(
            &mut out,
            results,
            &results.convergence_large,
            "the large state in force (phase 5)",
        );
    }

    if !results.memory.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Agent memory (MiB, /proc/PID/status)");
        let mib =
            |kb: Option<u64>| kb.map_or("-".into(), |kb| format!("{:.1}", kb as f64 / 1024.0));
        for m in &results.memory {
            let _ = writeln!(
                out,
                "  {:<10} {:<6} state: VmRSS {:>7}  VmHWM {:>7}",
                m.node,
                m.state,
                mib(m.vm_rss_kb),
                mib(m.vm_hwm_kb)
            );
        }
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Goals (issue 10 item 6){}",
        if results.at_issue_size() {
            ""
        } else {
            "; the large state is smaller than the issue's 10,000 pods / 2,000 groups / \
             50,000 rules, so its goals are not judged"
        }
    );
    for (what, value, goal, met) in results.goals() {
        let judged = if met.is_none() && value.is_some() {
            "not judged at this size"
        } else {
            verdict(met)
        };
        let _ = writeln!(
            out,
            "  {what:<68} {:>10}   goal {goal:<9} {judged}",
            value.as_deref().unwrap_or("-"),
        );
    }
    let problems = results.problems();
    if !problems.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "PROBLEMS:");
        for p in problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_complaint_is_found_without_colours() {
        let log = "\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m old\n\
                   x  INFO fine\n\
                   \u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m new one\n\
                   y  INFO fine\n";
        assert_eq!(
            last_complaint(log, 0).as_deref(),
            Some("2026  WARN new one")
        );
        assert_eq!(last_complaint(log, log.len()), None);
    }

    fn results(shape: Shape, reach: &[Option<f64>], applied_ms: Option<f64>) -> ScaleResults {
        let nodes: Vec<String> = state::node_names(3).unwrap();
        let sample = ConvergenceSample {
            index: 0,
            pod_node: nodes[0].clone(),
            revision: 7,
            reach_ms: reach.to_vec(),
            agent_ms: vec![Some(10.0); 3],
            probe_gap_ms: vec![1.0; 3],
        };
        ScaleResults {
            tool: "test".into(),
            machine: Machine::describe(),
            config: ScaleConfig {
                quick: false,
                nodes: 3,
                samples: 1,
                samples_large: 0,
                updates: 1,
                shape,
                probe_interval_ms: 1.0,
                flow_pps: 5000.0,
                etcd_args: Vec::new(),
            },
            nodes: nodes.clone(),
            duration_seconds: 1.0,
            convergence: vec![sample],
            convergence_large: Vec::new(),
            updates: Some(UpdatePhase {
                flow: FlowCount {
                    sent: 10,
                    received: 10,
                    lost: 0,
                    send_errors: 0,
                    seconds: 1.0,
                },
                taken_in: nodes
                    .iter()
                    .map(|n| {
                        (
                            n.clone(),
                            TakenIn {
                                applied: 1,
                                ..TakenIn::default()
                            },
                        )
                    })
                    .collect(),
                update_ms: vec![20.0],
            }),
            large: Some(LargePhase {
                pods: shape.pods,
                nodes: 3,
                groups: shape.groups,
                rules: shape.rules,
                json_bytes: 1,
                write_ms: Some(1.0),
                write_error: None,
                in_process: Vec::new(),
                agents: nodes
                    .iter()
                    .map(|n| AgentApply {
                        node: n.clone(),
                        applied_ms,
                        error: applied_ms.is_none().then(|| "not applied".to_owned()),
                    })
                    .collect(),
            }),
            memory: nodes
                .iter()
                .map(|n| Memory {
                    node: n.clone(),
                    state: "large".into(),
                    vm_rss_kb: Some(70 * 1024),
                    vm_hwm_kb: Some(70 * 1024),
                })
                .collect(),
            failures: Vec::new(),
        }
    }

    fn verdicts(r: &ScaleResults) -> Vec<Option<bool>> {
        r.goals().into_iter().map(|(_, _, _, met)| met).collect()
    }

    #[test]
    fn goals_are_judged_at_the_issue_s_sizes_only() {
        let at_size = results(
            ISSUE_SHAPE,
            &[Some(50.0), Some(99.0), Some(101.0)],
            Some(1500.0),
        );
        assert!(at_size.problems().is_empty(), "{:?}", at_size.problems());
        // Reach p99 101 ms: missed; no large-state samples; no in-process figures; applied in
        // 1.5 s: met; 70 MiB: missed; nothing lost: met.
        assert_eq!(
            verdicts(&at_size),
            [Some(false), None, None, Some(true), Some(false), Some(true)]
        );
        let small = results(
            Shape {
                pods: 10,
                ..ISSUE_SHAPE
            },
            &[Some(5.0); 3],
            Some(1500.0),
        );
        assert_eq!(
            verdicts(&small),
            [Some(true), None, None, None, None, Some(true)]
        );
        assert!(summary(&small).contains("not judged at this size"));
    }

    #[test]
    fn what_kept_a_phase_from_its_figures_is_a_problem() {
        let r = results(ISSUE_SHAPE, &[Some(5.0), None, Some(5.0)], None);
        let problems = r.problems();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[0].contains("not reachable from node-b"),
            "{problems:?}"
        );
        // No memory figure is judged for an agent that never applied the large state.
        assert_eq!(verdicts(&r)[4], None);
        assert!(summary(&r).contains("PROBLEMS:"));
    }

    #[test]
    fn percentiles_are_nearest_rank_with_the_max() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(&v), Some((50.0, 99.0, 100.0)));
        assert_eq!(percentiles(&[]), None);
    }
}
