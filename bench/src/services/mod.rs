//! `ctpath-bench services` (issue 11, item 5): kube-proxy's iptables mode on the kernel
//! topology against ctpath, with 1 to 10,000 UDP services of three backends each.
//!
//! Per service count and dataplane a fresh two-node cluster (the testbed's [`Cluster`]): the
//! source pod on node-a, the three backends on node-b ([`rules::BACKENDS`]). Then:
//! - **load**, `runs` times: on the kernel topology (bridge + vxlan nodes, wired for
//!   kube-proxy's DNAT by [`wire_kernel`]) the nat table kube-proxy writes
//!   ([`rules::kube_proxy_nat`]) loaded with one `iptables-restore` per node, timed around the
//!   command (and node-a's `KUBE-SERVICES` counted afterwards); on `ctpath-xdp` and
//!   `ctpath-tc` the same services in the cluster state (in etcd), from before
//!   `ctpath state apply` to both agents' "applied" log lines, each sample from the state
//!   without services;
//! - **new connections per second** to the last service's VIP, `runs` times: the main bench's
//!   new-flow flood ([`measure::pps`]) keeping the service's port, a new source port per
//!   frame, counted at the three backends' sinks, summed;
//! - **one flow's pps** to the same VIP, `runs` times, 64 bytes.
//!
//! Writes `results.json`, `table.txt` and `README.md` into `--out`. Exit status 1 when a
//! sample failed or produced a zero or insane figure ([`ServicesResults::problems`]); speeds
//! are never asserted.
//!
//! Owns [`ServicesError`]. Panic contract: [`Cluster::start`] panics when the testbed cannot
//! be built (the namespaces are removed while unwinding).

pub mod rules;

use std::{
    fmt::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use ctpath_control::compile::ROUTER_MAC;
use ctpath_testbed::{
    cluster::{Cluster, ClusterOptions, NodeKind},
    format_mac, Offloads,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    cli::ServicesArgs,
    cpus::{self, CpuError, CpuMode, Placement},
    machine::Machine,
    measure::{self, Destination, FloodTiming, PpsSample, Traffic},
    report::Stats,
    scale,
    topology::{Topology, TopologyError, TopologyKind, NODE_A, NODE_B, SRC_HOST_IF, SRC_MAC, VNI},
};
use rules::RulesError;

/// How long both agents may take to apply a state of services.
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the agents' logs are read while waiting.
const LOG_POLL: Duration = Duration::from_millis(5);
/// The issue's service counts.
const FULL_COUNTS: [usize; 4] = [1, 100, 1_000, 10_000];
const QUICK_COUNTS: [usize; 2] = [1, 100];
/// The pps case's warm-up, as the main bench's.
const WARMUP: Duration = Duration::from_millis(300);
/// New connections per cluster, shared by its runs: the new-flow mode keeps the service's
/// port, so only 64,512 source ports make distinct flows, and none may repeat while its
/// conntrack entry lives (each service count gets fresh clusters, so fresh tables).
const CONN_SPACE: u32 = 60_000;

#[derive(Debug, Error)]
pub enum ServicesError {
    #[error("ctpath-bench services must run as root (namespaces, eBPF); euid is {0}")]
    NotRoot(u32),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Cpu(#[from] CpuError),
    #[error("wiring the kernel topology for kube-proxy's DNAT ({what}): {message}")]
    Wiring { what: String, message: String },
    #[error("writing {path}: {source}")]
    Output {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding the results: {0}")]
    Json(#[from] serde_json::Error),
}

/// The dataplanes compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dataplane {
    /// kube-proxy's iptables mode on the bridge + vxlan nodes.
    Kernel,
    /// ctpath, `datapath: xdp`.
    CtpathXdp,
    /// ctpath, `datapath: tc`.
    CtpathTc,
}

impl Dataplane {
    const ALL: [Dataplane; 3] = [Dataplane::Kernel, Dataplane::CtpathXdp, Dataplane::CtpathTc];

    const fn name(self) -> &'static str {
        match self {
            Dataplane::Kernel => "kernel",
            Dataplane::CtpathXdp => "ctpath-xdp",
            Dataplane::CtpathTc => "ctpath-tc",
        }
    }

    /// The plane's datapath in the state (the kernel nodes run no agent; the testbed wires
    /// their pods the same either way).
    const fn kind(self) -> TopologyKind {
        match self {
            Dataplane::Kernel => TopologyKind::Kernel,
            Dataplane::CtpathXdp => TopologyKind::CtpathXdp,
            Dataplane::CtpathTc => TopologyKind::CtpathTc,
        }
    }

    const fn datapath(self) -> &'static str {
        match self {
            Dataplane::CtpathTc => "tc",
            Dataplane::Kernel | Dataplane::CtpathXdp => "xdp",
        }
    }
}

/// What a services run measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServicesConfig {
    pub quick: bool,
    pub counts: Vec<usize>,
    pub runs: usize,
    pub backends_per_service: usize,
    /// Which service the traffic goes to.
    pub measured_service: String,
    /// New connections per run (one per frame; every run of a cluster its own source ports).
    pub conn_budget: u32,
    pub warmup_seconds: f64,
    pub window_seconds: f64,
}

/// One traffic sample (new connections or one flow's pps) with `services` services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrafficSample {
    pub services: usize,
    pub sample: PpsSample,
}

/// One load of `services` services on one dataplane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadSample {
    pub dataplane: String,
    pub services: usize,
    pub run: usize,
    /// kernel: `iptables-restore` per node (node-a, node-b); ctpath: the etcd write to the
    /// last agent's "applied" line (one figure). Milliseconds.
    pub ms: Vec<f64>,
    /// kernel: rules found in node-a's `KUBE-SERVICES` after the load (services + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_services_rules: Option<usize>,
    /// Why the load failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServicesResults {
    pub tool: String,
    pub machine: Machine,
    /// Where the generator and the datapath ran.
    pub placement: String,
    pub config: ServicesConfig,
    pub duration_seconds: f64,
    pub loads: Vec<LoadSample>,
    pub traffic: Vec<TrafficSample>,
    /// Traffic samples that did not run, and why.
    pub failures: Vec<String>,
    /// Per dataplane, what its topology ended up with (offloads, sinks).
    pub wiring: Vec<String>,
}

/// Runs the services bench (see the module docs) and writes its outputs.
pub fn run(args: &ServicesArgs) -> Result<ServicesResults, ServicesError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(ServicesError::NotRoot(euid));
    }
    let counts: Vec<usize> = if args.quick {
        QUICK_COUNTS.to_vec()
    } else {
        FULL_COUNTS.to_vec()
    };
    for &n in &counts {
        rules::kube_proxy_nat(n)?;
    }
    let runs = args.runs.unwrap_or(if args.quick { 2 } else { 5 }).max(1);
    let window = Duration::from_secs_f64(if args.quick { 0.5 } else { 2.0 });
    let config = ServicesConfig {
        quick: args.quick,
        runs,
        counts,
        backends_per_service: rules::BACKENDS.len(),
        measured_service: "the last one created (its rule is last in KUBE-SERVICES)".into(),
        conn_budget: CONN_SPACE / runs as u32,
        warmup_seconds: WARMUP.as_secs_f64(),
        window_seconds: window.as_secs_f64(),
    };
    let placement = Placement::new(CpuMode::Same)?;
    let known_napi = cpus::napi_threads();
    let machine = Machine::describe();
    let started = Instant::now();
    let mut results = ServicesResults {
        tool: format!("ctpath-bench {}", env!("CARGO_PKG_VERSION")),
        machine,
        placement: placement.description.clone(),
        config,
        duration_seconds: 0.0,
        loads: Vec::new(),
        traffic: Vec::new(),
        failures: Vec::new(),
        wiring: Vec::new(),
    };
    let c = results.config.clone();
    for &services in &c.counts {
        for dataplane in Dataplane::ALL {
            eprintln!("services: {} with {services} services", dataplane.name());
            let cluster = build(dataplane)?;
            if dataplane == Dataplane::Kernel {
                wire_kernel(&cluster)?;
            }
            for run in 0..c.runs {
                let sample = match dataplane {
                    Dataplane::Kernel => kernel_load(&cluster, services, run)?,
                    _ => ctpath_load(&cluster, dataplane, services, run, run == 0)?,
                };
                eprintln!(
                    "  load run {run}: {:?} ms{}",
                    sample.ms,
                    sample
                        .error
                        .as_deref()
                        .map_or(String::new(), |e| format!(" FAILED: {e}"))
                );
                results.loads.push(sample);
            }
            let destination = Destination {
                ip: rules::vip(rules::measured_service(services)),
                mac: match dataplane {
                    // Rewritten by br_netfilter's DNAT to the chosen backend's.
                    Dataplane::Kernel => rules::BACKENDS[0].mac,
                    // The gateway's, as the pod's stack sends off-plane traffic.
                    Dataplane::CtpathXdp | Dataplane::CtpathTc => ROUTER_MAC,
                },
                port: rules::SERVICE_PORT,
                fixed_port: true,
            };
            let mut topology = Topology::from_cluster(
                dataplane.kind(),
                cluster,
                &placement,
                rules::BACKENDS.iter().map(|b| b.name.to_owned()).collect(),
                destination,
            )?;
            if !results
                .wiring
                .iter()
                .any(|w| w.starts_with(dataplane.name()))
            {
                results.wiring.push(topology.wiring.clone());
            }
            topology.attach_sinks()?;
            let cases = [
                (
                    Traffic {
                        frame_size: 64,
                        flows: c.conn_budget,
                        new_flows: true,
                    },
                    FloodTiming {
                        warmup: Duration::ZERO,
                        window,
                    },
                ),
                (
                    Traffic::flood(64, 1),
                    FloodTiming {
                        warmup: WARMUP,
                        window,
                    },
                ),
            ];
            for (traffic, timing) in cases {
                for run in 0..c.runs {
                    let base = run as u64 * u64::from(c.conn_budget);
                    match measure::pps(
                        &topology,
                        traffic,
                        timing,
                        &placement,
                        &known_napi,
                        run,
                        base,
                    ) {
                        Ok(sample) => {
                            eprintln!(
                                "  {traffic} run {run}: {:.0} /s at the backends",
                                sample.received_pps
                            );
                            results.traffic.push(TrafficSample { services, sample });
                        }
                        Err(e) => {
                            eprintln!("  {traffic} run {run}: FAILED: {e}");
                            results.failures.push(format!(
                                "{} {services} services, {traffic} run {run}: {e}",
                                dataplane.name()
                            ));
                        }
                    }
                }
            }
        }
    }
    results.duration_seconds = started.elapsed().as_secs_f64();
    write_outputs(&results, &args.out)?;
    Ok(results)
}

/// The kernel topology as kube-proxy's DNAT needs it on the bridged nodes: br_netfilter (as
/// Kubernetes requires), static FDB entries for every pod's MAC (local port or the vxlan
/// device to the other node), and on node-a, where the source pod's connections are
/// translated, a route of the plane onto the bridge and permanent neighbours for the
/// backends, so that a bridged frame DNATed to a backend is bridged on with the backend's MAC
/// (br_netfilter's "bridged DNAT").
fn wire_kernel(cluster: &Cluster) -> Result<(), ServicesError> {
    let vxlan = format!("vx{VNI}");
    let bridge = format!("br{VNI}");
    let mut pods: Vec<(&str, &str, String)> = vec![(NODE_A, SRC_HOST_IF, format_mac(SRC_MAC))];
    pods.extend(
        rules::BACKENDS
            .iter()
            .map(|b| (NODE_B, b.host_interface, format_mac(b.mac))),
    );
    let fail = |what: &str, e: ctpath_testbed::TestbedError| ServicesError::Wiring {
        what: what.to_owned(),
        message: e.to_string(),
    };
    for (node, vtep_of_other) in [(NODE_A, "192.168.77.2"), (NODE_B, "192.168.77.1")] {
        let ns = cluster.node(node).ns();
        ns.sysctl("net.bridge.bridge-nf-call-iptables", "1")
            .map_err(|e| fail("br_netfilter", e))?;
        for (pod_node, port, mac) in &pods {
            let commands: Vec<Vec<&str>> = if *pod_node == node {
                vec![vec!["fdb", "replace", mac, "dev", port, "master", "static"]]
            } else {
                vec![
                    vec!["fdb", "replace", mac, "dev", &vxlan, "master", "static"],
                    vec![
                        "fdb",
                        "replace",
                        mac,
                        "dev",
                        &vxlan,
                        "self",
                        "dst",
                        vtep_of_other,
                        "static",
                    ],
                ]
            };
            for command in commands {
                let argv: Vec<&str> = std::iter::once("bridge").chain(command).collect();
                ns.exec(&argv).map_err(|e| fail("static FDB", e))?;
            }
        }
    }
    let a = cluster.node(NODE_A).ns();
    // Forwarding on, as on every Kubernetes node: without it the route lookup after the DNAT
    // finds no forwarding route and br_netfilter hands the frame to the host, which drops it.
    for (key, value) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
    ] {
        a.sysctl(key, value).map_err(|e| fail(key, e))?;
    }
    a.exec(&["ip", "route", "replace", rules::POD_CIDR, "dev", &bridge])
        .map_err(|e| fail("route to the plane", e))?;
    for b in &rules::BACKENDS {
        let (ip, mac) = (b.ip.to_string(), format_mac(b.mac));
        a.exec(&[
            "ip",
            "neigh",
            "replace",
            &ip,
            "lladdr",
            &mac,
            "dev",
            &bridge,
            "nud",
            "permanent",
        ])
        .map_err(|e| fail("backend neighbour", e))?;
    }
    Ok(())
}

/// A two-node cluster of `dataplane` with the source pod and the three backends and no
/// services yet.
fn build(dataplane: Dataplane) -> Result<Cluster, ServicesError> {
    let kind = match dataplane {
        Dataplane::Kernel => NodeKind::KernelVxlan,
        Dataplane::CtpathXdp | Dataplane::CtpathTc => NodeKind::Ctpath,
    };
    let ctpath = kind == NodeKind::Ctpath;
    let options = ClusterOptions {
        node_kinds: [(NODE_A.to_owned(), kind), (NODE_B.to_owned(), kind)].into(),
        underlay: Some(Offloads::Wire),
        // The agents take a state from etcd in as it comes (a state file is looked at every
        // 250 ms); the scale bench's limits let one transaction hold 10,000 services.
        state_in_etcd: ctpath,
        etcd_args: if ctpath {
            scale::ETCD_ARGS.map(String::from).to_vec()
        } else {
            Vec::new()
        },
        ..ClusterOptions::default()
    };
    let yaml = rules::state_yaml(0, dataplane.datapath())?;
    Ok(Cluster::start(
        &format!("svc-{}", dataplane.name()),
        &yaml,
        options,
    ))
}

/// kube-proxy's nat table for `services`, loaded with one `iptables-restore` per node.
fn kernel_load(
    cluster: &Cluster,
    services: usize,
    run: usize,
) -> Result<LoadSample, ServicesError> {
    let text = rules::kube_proxy_nat(services)?;
    let path = std::env::temp_dir().join(format!(
        "ctpath-bench-{}-kube-proxy-{services}.txt",
        std::process::id()
    ));
    std::fs::write(&path, text).map_err(|source| ServicesError::Output {
        path: path.display().to_string(),
        source,
    })?;
    let mut sample = LoadSample {
        dataplane: Dataplane::Kernel.name().into(),
        services,
        run,
        ms: Vec::new(),
        kube_services_rules: None,
        error: None,
    };
    for node in [NODE_A, NODE_B] {
        let ns = cluster.node(node).ns();
        let t0 = Instant::now();
        let outcome = ns.exec(&[
            "sh",
            "-c",
            &format!("iptables-restore < {}", path.display()),
        ]);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Ok(_) => sample.ms.push(ms),
            Err(e) => sample.error = Some(format!("iptables-restore on {node}: {e}")),
        }
    }
    let listed = cluster
        .node(NODE_A)
        .ns()
        .exec(&["iptables", "-t", "nat", "-S", "KUBE-SERVICES"]);
    match listed {
        Ok(out) => {
            let found = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("-A KUBE-SERVICES"))
                .count();
            sample.kube_services_rules = Some(found);
            if found != services + 1 {
                sample.error = Some(format!(
                    "node-a's KUBE-SERVICES has {found} rules after the load, not {}",
                    services + 1
                ));
            }
        }
        Err(e) => sample.error = Some(format!("listing KUBE-SERVICES: {e}")),
    }
    let _ = std::fs::remove_file(&path);
    Ok(sample)
}

/// Writes `yaml` and waits until both agents took a state in since; the time from before the
/// write, or what went wrong.
fn apply(cluster: &Cluster, yaml: &str) -> Result<f64, String> {
    let before = cluster.states_taken_in();
    let t0 = Instant::now();
    cluster.write_state(yaml);
    loop {
        let now = cluster.states_taken_in();
        if now.iter().zip(&before).all(|(n, b)| n > b) {
            return Ok(t0.elapsed().as_secs_f64() * 1e3);
        }
        if t0.elapsed() > APPLY_TIMEOUT {
            return Err(format!(
                "the agents did not take the state in within {} s (taken in before {before:?}, now {now:?})",
                APPLY_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(LOG_POLL);
    }
}

/// The state with `services` services, from the state with none (which the cluster starts
/// with, so the `first` sample of a cluster does not write it again): the write to both
/// agents' "applied" lines.
fn ctpath_load(
    cluster: &Cluster,
    dataplane: Dataplane,
    services: usize,
    run: usize,
    first: bool,
) -> Result<LoadSample, ServicesError> {
    let empty = rules::state_yaml(0, dataplane.datapath())?;
    let full = rules::state_yaml(services, dataplane.datapath())?;
    let mut sample = LoadSample {
        dataplane: dataplane.name().into(),
        services,
        run,
        ms: Vec::new(),
        kube_services_rules: None,
        error: None,
    };
    let outcome = if first {
        Ok(0.0)
    } else {
        apply(cluster, &empty)
    }
    .and_then(|_| apply(cluster, &full));
    match outcome {
        Ok(ms) => sample.ms.push(ms),
        Err(e) => sample.error = Some(e),
    }
    Ok(sample)
}

impl ServicesResults {
    /// The median load time of `dataplane` at `services` (for the kernel, the slower node's).
    fn load_median(&self, dataplane: &str, services: usize) -> Option<f64> {
        let values: Vec<f64> = self
            .loads
            .iter()
            .filter(|s| s.dataplane == dataplane && s.services == services && s.error.is_none())
            .filter_map(|s| s.ms.iter().copied().reduce(f64::max))
            .collect();
        Stats::of(&values).median
    }

    /// The median received rate of `dataplane` at `services` for the new-connections
    /// (`new_flows`) or the one-flow case.
    fn rate_median(&self, dataplane: &str, services: usize, new_flows: bool) -> Option<f64> {
        let values: Vec<f64> = self
            .traffic
            .iter()
            .filter(|t| {
                t.services == services
                    && t.sample.topology == dataplane
                    && t.sample.new_flows == new_flows
            })
            .map(|t| t.sample.received_pps)
            .collect();
        Stats::of(&values).median
    }

    /// What kept the run from its figures (the exit status is 1 if any).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.failures.clone();
        for &services in &self.config.counts {
            for d in Dataplane::ALL {
                for new_flows in [true, false] {
                    let samples: Vec<&PpsSample> = self
                        .traffic
                        .iter()
                        .filter(|t| {
                            t.services == services
                                && t.sample.topology == d.name()
                                && t.sample.new_flows == new_flows
                        })
                        .map(|t| &t.sample)
                        .collect();
                    let case = if new_flows { "new conn/s" } else { "pps" };
                    if samples.len() < self.config.runs {
                        problems.push(format!(
                            "{} {services} services {case}: {} of {} runs",
                            d.name(),
                            samples.len(),
                            self.config.runs
                        ));
                    }
                    for s in samples {
                        // Above 20 Mpps on veth is not a measurement.
                        if !(s.received_pps.is_finite()
                            && s.received_pps > 0.0
                            && s.received_pps < 20e6)
                        {
                            problems.push(format!(
                                "{} {services} services {case} run {}: {:.0} /s is zero or insane",
                                d.name(),
                                s.run,
                                s.received_pps
                            ));
                        }
                        if s.conntrack_full > 0 {
                            problems.push(format!(
                                "{} {services} services {case} run {}: {} conntrack_full drops",
                                d.name(),
                                s.run,
                                s.conntrack_full
                            ));
                        }
                    }
                }
            }
        }
        for s in &self.loads {
            if let Some(e) = &s.error {
                problems.push(format!(
                    "{} {} services run {}: {e}",
                    s.dataplane, s.services, s.run
                ));
            } else if s.ms.is_empty() || s.ms.iter().any(|ms| !(ms.is_finite() && *ms > 0.0)) {
                problems.push(format!(
                    "{} {} services run {}: load time {:?} ms is zero or insane",
                    s.dataplane, s.services, s.run, s.ms
                ));
            }
        }
        problems
    }
}

/// The terminal table (`table.txt`).
pub fn table(results: &ServicesResults) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(
        out,
        "ctpath-bench services{}: {} runs, {:.0} s; machine: {}, {} CPUs, Linux {}, {}, \
         load average at start {}; ctpath {}",
        if results.config.quick { " --quick" } else { "" },
        results.config.runs,
        results.duration_seconds,
        m.cpu_model,
        m.cpus,
        m.kernel,
        m.iptables,
        m.loadavg,
        m.ctpath_commit
    );
    let _ = writeln!(
        out,
        "\nLoad time of the services (median ms; kernel: kube-proxy's nat table, one \
         iptables-restore per node, the slower node; ctpath: etcd write (ctpath state apply) to both agents' \
         \"applied\")"
    );
    let _ = write!(out, "{:>9}", "services");
    for d in Dataplane::ALL {
        let _ = write!(out, " {:>12}", d.name());
    }
    let _ = writeln!(out);
    for &n in &results.config.counts {
        let _ = write!(out, "{n:>9}");
        for d in Dataplane::ALL {
            let cell = results
                .load_median(d.name(), n)
                .map_or("-".into(), |ms| format!("{ms:.1}"));
            let _ = write!(out, " {cell:>12}");
        }
        let _ = writeln!(out);
    }
    for (title, new_flows) in [
        (
            "New connections per second to the last service's VIP (64 B UDP, a new source port \
             per frame; received at the three backends, summed; median)",
            true,
        ),
        (
            "One flow's packets per second to the last service's VIP (64 B UDP; received at \
             its backend; median)",
            false,
        ),
    ] {
        let _ = writeln!(out, "\n{title}");
        let _ = write!(out, "{:>9}", "services");
        for d in Dataplane::ALL {
            let _ = write!(out, " {:>12}", d.name());
        }
        let _ = writeln!(out, " {:>14}", "ctpath-xdp/k");
        let rate = |d: Dataplane, n: usize| results.rate_median(d.name(), n, new_flows);
        for &n in &results.config.counts {
            let _ = write!(out, "{n:>9}");
            for d in Dataplane::ALL {
                let cell = rate(d, n).map_or("-".into(), |r| format!("{r:.0}"));
                let _ = write!(out, " {cell:>12}");
            }
            let ratio = match (rate(Dataplane::CtpathXdp, n), rate(Dataplane::Kernel, n)) {
                (Some(x), Some(k)) if k > 0.0 => format!("{:.2}x", x / k),
                _ => "-".into(),
            };
            let _ = writeln!(out, " {ratio:>14}");
        }
        let (first, last) = (
            results.config.counts[0],
            results.config.counts[results.config.counts.len() - 1],
        );
        let _ = write!(out, "{:>9}", format!("{last}/{first}"));
        for d in Dataplane::ALL {
            let cell = match (rate(d, last), rate(d, first)) {
                (Some(l), Some(f)) if f > 0.0 => format!("{:.2}x", l / f),
                _ => "-".into(),
            };
            let _ = write!(out, " {cell:>12}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "\nGoal (a report, not a test): ctpath at {} services >= 0.9x its rate at {} \
         services; kube-proxy's falls with the chain's length.",
        results.config.counts[results.config.counts.len() - 1],
        results.config.counts[0]
    );
    let problems = results.problems();
    if !problems.is_empty() {
        let _ = writeln!(out, "\nPROBLEMS:");
        for p in problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

fn write_outputs(results: &ServicesResults, dir: &Path) -> Result<(), ServicesError> {
    let write = |name: &str, text: &str| -> Result<(), ServicesError> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| ServicesError::Output {
            path: path.display().to_string(),
            source,
        })
    };
    std::fs::create_dir_all(dir).map_err(|source| ServicesError::Output {
        path: dir.display().to_string(),
        source,
    })?;
    write("results.json", &serde_json::to_string_pretty(results)?)?;
    let table = table(results);
    write("table.txt", &table)?;
    let mut notes = format!(
        "- CPUs: {}\n- The traffic goes to {}; {} new connections per run at most.\n",
        results.placement, results.config.measured_service, results.config.conn_budget
    );
    for w in &results.wiring {
        let _ = writeln!(notes, "- {w}");
    }
    write(
        "README.md",
        &format!(
            "# ctpath-bench services\n\nkube-proxy's iptables mode (its nat table, written by \
             the bench, loaded with iptables-restore) on the kernel topology against ctpath's \
             services in the cluster state. What is measured and how: `bench/README.md`, \
             \"Services\".\n\n```\n{table}```\n\n## Notes\n\n{notes}"
        ),
    )?;
    Ok(())
}
