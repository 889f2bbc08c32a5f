//! One bench run, start to end: builds the topologies, runs every case with the topologies
//! interleaved run by run, shows progress (a bar per case), and writes the results.
//!
//! Order: (1) pps: for each traffic case, R rounds of kernel, ctpath-xdp, ctpath-afxdp,
//! ceiling, generator-only; (2) latency: R rounds of kernel, ctpath-xdp, ctpath-afxdp; (3) TCP:
//! the same; (4) security-group scaling: for each further rule count N, the kernel's chain is
//! replaced (`iptables-restore`) and both ctpath clusters are started again with N rules, then
//! R rounds of kernel, ctpath-xdp, ctpath-afxdp at 64 bytes, one flow. The first rule count's
//! scaling point is the pps phase's 64-byte one-flow case.
//!
//! Owns [`RunError`] and [`Plan`]. Panic contract: a testbed that cannot be built panics in the
//! shared testbed (test code), and the namespaces are removed while unwinding; a sample that
//! fails is recorded in `failures` and the run goes on.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use thiserror::Error;

use crate::{
    cli::{HoldTopology, RunArgs},
    cpus::{self, CpuError, CpuMode, Placement},
    machine::Machine,
    measure::{self, FloodTiming, Traffic},
    plot::{self, PlotError},
    report::{self, ReportError, Results, RunConfig},
    topology::{Topology, TopologyError, TopologyKind},
};

#[derive(Debug, Error)]
pub enum RunError {
    #[error("ctpath-bench must run as root (network namespaces, eBPF, AF_XDP); euid is {0}")]
    NotRoot(u32),
    #[error("`{0}` is not installed (run scripts/setup)")]
    MissingTool(&'static str),
    #[error("--runs must be at least 1 and --seconds at least 0.1")]
    BadOptions,
    #[error("creating {path}: {source}")]
    OutDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cpu(#[from] CpuError),
    #[error(transparent)]
    Topology(Box<TopologyError>),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

impl From<TopologyError> for RunError {
    fn from(error: TopologyError) -> RunError {
        RunError::Topology(Box::new(error))
    }
}

/// What a run measures.
#[derive(Clone, Debug)]
pub struct Plan {
    pub config: RunConfig,
    pub timing: FloodTiming,
    pub warmup_round_trips: usize,
}

impl Plan {
    pub fn new(args: &RunArgs) -> Result<Plan, RunError> {
        let quick = args.quick;
        let runs = args.runs.unwrap_or(if quick { 1 } else { 5 });
        let seconds = args.seconds.unwrap_or(if quick { 0.5 } else { 2.0 });
        if runs == 0 || seconds < 0.1 {
            return Err(RunError::BadOptions);
        }
        let warmup = Duration::from_millis(if quick { 200 } else { 300 });
        let traffic = [(64, 1), (64, 1024), (1400, 1), (1400, 1024)]
            .map(|(frame_size, flows)| Traffic { frame_size, flows })
            .to_vec();
        let rules = if quick {
            vec![1, 1000]
        } else {
            vec![1, 10, 100, 1000, 10000]
        };
        Ok(Plan {
            config: RunConfig {
                quick,
                runs,
                warmup_ms: warmup.as_millis() as u64,
                window_ms: (seconds * 1000.0) as u64,
                traffic,
                base_rules: 1,
                rules,
                round_trips: if quick { 2000 } else { 20000 },
                tcp_seconds: if quick { 1 } else { 2 },
            },
            timing: FloodTiming {
                warmup,
                window: Duration::from_secs_f64(seconds),
            },
            warmup_round_trips: if quick { 200 } else { 1000 },
        })
    }

    /// A rough duration, for the banner.
    pub fn estimate(&self) -> Duration {
        let c = &self.config;
        let flood = self.timing.warmup.as_secs_f64() + self.timing.window.as_secs_f64() + 0.35;
        // ctpath-afxdp's samples wait for the agents' next forwarder report (one a second).
        let report = 0.6;
        let pps = c.traffic.len() as f64 * c.runs as f64 * (5.0 * flood + report);
        let scaling = (c.rules.len().saturating_sub(1)) as f64
            * (c.runs as f64 * (3.0 * flood + report) + 6.0);
        let latency = c.runs as f64 * (3.0 * (c.round_trips as f64 * 40e-6 + 0.2) + report);
        let tcp = c.runs as f64 * (3.0 * (c.tcp_seconds as f64 + 0.5) + report);
        Duration::from_secs_f64(pps + scaling + latency + tcp + 20.0)
    }
}

/// Notes recorded with every result (JSON and README).
pub fn notes() -> Vec<String> {
    [
        "kernel path: flannel/Rancher-style bridged L2 overlay: per node a Linux bridge with the pod veths and a kernel vxlan device (VNI 100, dstport 4789, all-zeros FDB entry to the other node plus static FDB entries for both pods); br_netfilter with net.bridge.bridge-nf-call-iptables=1 on both nodes; the destination pod's security group is an iptables chain (nf_tables backend, loaded with iptables-restore) jumped to from FORWARD for frames bridged out of its host veth (-m physdev --physdev-out): conntrack ESTABLISHED,RELATED ACCEPT, N rules of which the last matches, then DROP. A one-way UDP flood never becomes ESTABLISHED, so every flood packet walks all N rules.",
        "ctpath-xdp: real ctpath agents (from_pod on the pod's host veth, from_underlay on the node's underlay interface) with a cluster state whose destination-pod security group has the same N rules, enforced at the destination node (from_underlay) statefully: a flow's first packet is checked against the rules and creates a conntrack entry, later packets hit the entry (docs/security-groups.md). The kernel's conntrack never marks a one-way UDP flow ESTABLISHED, so its chain is walked for every flood packet.",
        "ctpath-afxdp: the same agents and cluster state as ctpath-xdp, but the plane is fast_path: true, so from_pod and from_underlay hand its frames to the agents' AF_XDP forwarder (XSKS map) and the forwarder's workers carry them: node-a's worker receives the source pod's frame on the pod's host veth and sends it, VXLAN-encapsulated, out of the underlay; node-b's receives it from the underlay and sends it, decapsulated, into the destination pod's host veth; security group and conntrack in the forwarder's pipeline (the same semantics as the XDP programs). The workers run where --cpus says (--fastpath-cores: CPU 0 in `same`, with the generator and everything else; CPU 1 in `split`). Every sample is checked against the agents' forwarder report: each node's workers must have received at least every frame that reached the sink (twice per round trip for latency; half the segments iperf3 reported for TCP), else the sample fails and is not reported. Pods' TX checksum offload is off as for ctpath-xdp (the same CNI wiring), so TCP is segmented in the pod. The AF_XDP hand-over completes the generator's copy-mode TX once node-a's XDP copied the frame into the worker's RX ring, not at the end of the path: when the worker is slower than the generator (always in `same`, where they share a CPU), its RX ring overflows and ctpath-afxdp reports drops (the sockets' rx_dropped / rx_ring_full in `ctpath status`).",
        "ceiling: bench_redirect on the source pod's host veth redirects every frame, unencapsulated, into the node's underlay interface; bench_sink on the far node's underlay interface counts and drops it. The floor of per-packet cost of this machine with this generator; no latency or TCP figures (one way only).",
        "generator-only: a diagnostic, not a dataplane: bench_sink on the source pod's host veth, so frames stop at the first veth hop. Its time per packet is the generator's share (AF_XDP copy-mode TX builds an skb and copies the frame; the veth copies it again into a page with XDP headroom), paid by every topology; the table's `path ns` column is a topology's time per packet less this one's.",
        "sink: bench_sink (XDP, native mode, counts and drops) on the destination pod's own interface inside its namespace, the same in every topology; attached only for the pps cases.",
        "generator: AF_XDP TX-only socket (xsk-rs, copy mode, queue 0, no XDP program) in the source pod, frames pre-built in the UMEM; 1,024 flows vary the UDP source port. Frame sizes count the 4-byte FCS (64 B = 60-byte buffer). Copy-mode TX completes when the skb is freed at the end of the path, so offered equals what the path takes.",
        "pods: every topology is built by the shared testbed from the same cluster state: same nodes, underlay, pods, addresses, MACs, MTU 1450. Where XDP runs at the pods' host veths (ctpath-xdp, ctpath-afxdp, ceiling, generator-only) the pod veths are wired as ctpath's CNI wires them, TX checksum offload off and GRO on (pod side), and so are the underlay veths; the kernel topology keeps the kernel's offloads (TX checksum, TSO) on pods and underlay, as users run it.",
        "TCP: the kernel path keeps its offloads and carries 64 KB GSO packets whole across bridge and vxlan. ctpath-xdp's and ctpath-afxdp's pods have TX checksum offload off (XDP on the host veth, and the AF_XDP copy behind it, cannot complete CHECKSUM_PARTIAL skbs), which turns TSO off too: the pod's stack segments in software before its veth and every 1450-byte segment is carried on its own (encapsulated in XDP, or by the forwarder's workers). Reported as measured, as data for the XDP-vs-TC decision.",
        "drops: frames the generator's socket completed (the path took them) that never reached the sink, over the generator's whole life.",
    ]
    .map(String::from)
    .to_vec()
}

/// Progress: a bar per case on a terminal, a line per finished case otherwise.
struct Progress {
    multi: MultiProgress,
    tty: bool,
}

impl Progress {
    fn new() -> Progress {
        let tty = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Progress { multi, tty }
    }

    fn bar(&self, name: &str, len: usize) -> Case {
        let bar = self.multi.add(ProgressBar::new(len as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:<34} [{bar:28}] {pos:>2}/{len:<2} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_owned());
        Case {
            bar,
            name: name.to_owned(),
            tty: self.tty,
            started: Instant::now(),
        }
    }

    /// Reports a measurement that failed on `topology`, keeps it among `failures` (the run
    /// then fails its final check) and moves the case's bar on.
    fn failed(
        &self,
        case: &Case,
        topology: TopologyKind,
        error: &dyn std::fmt::Display,
        failures: &mut Vec<String>,
    ) {
        self.say(&format!("FAILED: {error}"));
        failures.push(error.to_string());
        case.step(format!("{topology} failed"));
    }

    fn say(&self, line: &str) {
        if self.tty {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }
}

struct Case {
    bar: ProgressBar,
    name: String,
    tty: bool,
    started: Instant,
}

impl Case {
    fn step(&self, message: String) {
        self.bar.set_message(message);
        self.bar.inc(1);
    }

    fn finish(&self, summary: String) {
        self.bar.finish_with_message(summary.clone());
        if !self.tty {
            eprintln!(
                "[ctpath-bench] {:<34} {summary} ({:.1} s)",
                self.name,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

fn check_environment() -> Result<(), RunError> {
    // SAFETY: geteuid takes no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(RunError::NotRoot(euid));
    }
    for tool in [
        "taskset",
        "iperf3",
        "iptables-restore",
        "bridge",
        "ethtool",
        "ip",
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        if !found {
            return Err(RunError::MissingTool(tool));
        }
    }
    Ok(())
}

fn mpps_message(values: &[(TopologyKind, f64)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k} {:.3}", v / 1e6))
        .collect::<Vec<_>>()
        .join("  ")
        + " Mpps"
}

/// Runs the bench as `args` say and writes everything into `args.out`.
pub fn run(args: &RunArgs) -> Result<Results, RunError> {
    check_environment()?;
    let plan = Plan::new(args)?;
    let placement = Placement::new(args.cpus)?;
    std::fs::create_dir_all(&args.out).map_err(|source| RunError::OutDir {
        path: args.out.display().to_string(),
        source,
    })?;
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = Machine::describe();
    let progress = Progress::new();
    let c = plan.config.clone();
    progress.say(&format!(
        "ctpath-bench {} run, about {:.0} s: {} run(s) x {:.1} s per case\ncpus: {}\nmachine: {}, {} CPUs, Linux {}",
        if c.quick { "quick" } else { "full" },
        plan.estimate().as_secs_f64(),
        c.runs,
        plan.timing.window.as_secs_f64(),
        placement.description,
        machine.cpu_model,
        machine.cpus,
        machine.kernel
    ));
    let known_napi = cpus::napi_threads();
    let mut results = Results {
        schema: report::SCHEMA,
        tool: format!("ctpath-bench {}", env!("CARGO_PKG_VERSION")),
        started_unix,
        duration_seconds: 0.0,
        placement: placement.clone(),
        machine,
        config: c.clone(),
        notes: notes(),
        skipped: Vec::new(),
        failures: Vec::new(),
        pps: Vec::new(),
        latency: Vec::new(),
        tcp: Vec::new(),
        headline: Default::default(),
    };

    let building = progress.bar("building topologies", 5);
    let mut kernel = Topology::build(TopologyKind::Kernel, c.base_rules, &placement)?;
    building.step("kernel".into());
    let mut xdp = Topology::build(TopologyKind::CtpathXdp, c.base_rules, &placement)?;
    building.step("ctpath-xdp".into());
    let mut afxdp = Topology::build(TopologyKind::CtpathAfxdp, c.base_rules, &placement)?;
    if let Some(facts) = &afxdp.forwarder {
        let note = format!("ctpath-afxdp forwarders as found: {}", facts.describe());
        progress.say(&note);
        results.notes.push(note);
    }
    building.step("ctpath-afxdp".into());
    let mut ceiling = Topology::build(TopologyKind::Ceiling, c.base_rules, &placement)?;
    building.step("ceiling".into());
    let mut generator = Topology::build(TopologyKind::GeneratorOnly, c.base_rules, &placement)?;
    building.step("generator-only".into());
    building.finish("kernel, ctpath-xdp, ctpath-afxdp, ceiling, generator-only".into());

    // (1) pps.
    for topology in [
        &mut kernel,
        &mut xdp,
        &mut afxdp,
        &mut ceiling,
        &mut generator,
    ] {
        topology.attach_sinks()?;
    }
    for &traffic in &c.traffic {
        let case = progress.bar(&format!("pps {traffic}"), 5 * c.runs);
        for run in 0..c.runs {
            for topology in [&kernel, &xdp, &afxdp, &ceiling, &generator] {
                match measure::pps(topology, traffic, plan.timing, &placement, &known_napi, run) {
                    Ok(sample) => {
                        case.step(format!(
                            "{} {:.3} Mpps",
                            topology.kind,
                            sample.received_pps / 1e6
                        ));
                        results.pps.push(sample);
                    }
                    Err(e) => progress.failed(&case, topology.kind, &e, &mut results.failures),
                }
            }
        }
        let medians: Vec<(TopologyKind, f64)> = TopologyKind::ALL
            .into_iter()
            .filter_map(|k| Some((k, results.pps_stats(k, traffic, c.base_rules).median?)))
            .collect();
        case.finish(mpps_message(&medians));
    }
    drop(ceiling);
    drop(generator);
    kernel.detach_sinks();
    xdp.detach_sinks();
    afxdp.detach_sinks();

    // (2) latency.
    let case = progress.bar("latency (UDP ping-pong)", 3 * c.runs);
    for run in 0..c.runs {
        for topology in [&kernel, &xdp, &afxdp] {
            placement.pin_napi_threads(&known_napi);
            match measure::latency(
                topology,
                c.round_trips,
                plan.warmup_round_trips,
                &placement,
                run,
            ) {
                Ok(sample) => {
                    case.step(format!("{} p99 {:.1} µs", topology.kind, sample.p99_us));
                    results.latency.push(sample);
                }
                Err(e) => progress.failed(&case, topology.kind, &e, &mut results.failures),
            }
        }
    }
    let p99 = |k: TopologyKind| {
        let v: Vec<f64> = results
            .latency_samples(k)
            .iter()
            .map(|s| s.p99_us)
            .collect();
        report::Stats::of(&v).median.unwrap_or(0.0)
    };
    case.finish(format!(
        "p99 kernel {:.1} µs  ctpath-xdp {:.1} µs  ctpath-afxdp {:.1} µs",
        p99(TopologyKind::Kernel),
        p99(TopologyKind::CtpathXdp),
        p99(TopologyKind::CtpathAfxdp)
    ));

    // (3) TCP.
    let case = progress.bar("tcp (iperf3, one stream)", 3 * c.runs);
    for run in 0..c.runs {
        for topology in [&kernel, &xdp, &afxdp] {
            placement.pin_napi_threads(&known_napi);
            match measure::tcp(topology, c.tcp_seconds, &placement, run) {
                Ok(sample) => {
                    case.step(format!(
                        "{} {:.2} Gbit/s",
                        topology.kind,
                        sample.bits_per_second / 1e9
                    ));
                    results.tcp.push(sample);
                }
                Err(e) => progress.failed(&case, topology.kind, &e, &mut results.failures),
            }
        }
    }
    let gbps = |k| results.tcp_stats(k).median.unwrap_or(0.0) / 1e9;
    case.finish(format!(
        "kernel {:.2} Gbit/s  ctpath-xdp {:.2} Gbit/s  ctpath-afxdp {:.2} Gbit/s",
        gbps(TopologyKind::Kernel),
        gbps(TopologyKind::CtpathXdp),
        gbps(TopologyKind::CtpathAfxdp)
    ));

    // (4) security-group scaling.
    let traffic = results.headline_traffic();
    for &rules in c.rules.iter().filter(|&&n| n != c.base_rules) {
        let case = progress.bar(&format!("rules N={rules} ({traffic})"), 3 * c.runs);
        kernel.set_kernel_rules(rules)?;
        drop(xdp);
        xdp = Topology::build(TopologyKind::CtpathXdp, rules, &placement)?;
        drop(afxdp);
        afxdp = Topology::build(TopologyKind::CtpathAfxdp, rules, &placement)?;
        for topology in [&mut kernel, &mut xdp, &mut afxdp] {
            topology.attach_sinks()?;
        }
        for run in 0..c.runs {
            for topology in [&kernel, &xdp, &afxdp] {
                match measure::pps(topology, traffic, plan.timing, &placement, &known_napi, run) {
                    Ok(sample) => {
                        case.step(format!(
                            "{} {:.4} Mpps",
                            topology.kind,
                            sample.received_pps / 1e6
                        ));
                        results.pps.push(sample);
                    }
                    Err(e) => progress.failed(&case, topology.kind, &e, &mut results.failures),
                }
            }
        }
        let medians: Vec<(TopologyKind, f64)> = TopologyKind::DATAPLANES
            .into_iter()
            .filter_map(|k| Some((k, results.pps_stats(k, traffic, rules).median?)))
            .collect();
        case.finish(mpps_message(&medians));
    }
    drop(afxdp);
    drop(xdp);
    drop(kernel);

    results.duration_seconds = started.elapsed().as_secs_f64();
    results.headline = results.compute_headline();
    write_outputs(&results, &args.out)?;
    Ok(results)
}

/// `ctpath-bench hold`: builds one topology and keeps it until Enter or `seconds`.
pub fn hold(
    which: HoldTopology,
    rules: usize,
    mode: CpuMode,
    seconds: Option<u64>,
    sink: bool,
) -> Result<(), RunError> {
    check_environment()?;
    let placement = Placement::new(mode)?;
    let kind = match which {
        HoldTopology::Kernel => TopologyKind::Kernel,
        HoldTopology::CtpathXdp => TopologyKind::CtpathXdp,
        HoldTopology::CtpathAfxdp => TopologyKind::CtpathAfxdp,
        HoldTopology::Ceiling => TopologyKind::Ceiling,
    };
    let known_napi = cpus::napi_threads();
    let mut topology = Topology::build(kind, rules, &placement)?;
    if sink {
        topology.attach_sinks()?;
    }
    let pinned = placement.pin_napi_threads(&known_napi);
    println!(
        "{kind} with {rules} rule(s), cpus: {}",
        placement.description
    );
    if pinned > 0 {
        println!(
            "pinned {pinned} napi/* threads to CPU {}",
            placement.datapath_cpu
        );
    }
    for (role, ns) in topology.namespaces() {
        println!("  {role:<8} ip netns exec {ns} ...");
    }
    if let Some(facts) = &topology.forwarder {
        println!("forwarders: {}", facts.describe());
    }
    let exe =
        std::env::current_exe().map_or_else(|_| "ctpath-bench".into(), |p| p.display().to_string());
    let flood = measure::generate_argv(
        &exe,
        &measure::flood_args(
            Traffic {
                frame_size: 64,
                flows: 1,
            },
            FloodTiming {
                warmup: Duration::ZERO,
                window: Duration::from_secs(10),
            },
        ),
    );
    println!(
        "a 10 s flood from the source pod:\n  ip netns exec {} taskset -c {} {}",
        topology.src().name(),
        placement.generator_cpu,
        flood.join(" ")
    );
    match seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => {
            println!("press Enter to tear it down");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
    }
    if sink {
        println!("the sink counted {} frames", topology.received().packets);
    }
    Ok(())
}

/// Writes results.json, table.txt, README.md and the plots into `dir`; returns the table.
pub fn write_outputs(results: &Results, dir: &Path) -> Result<String, RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::OutDir {
        path: dir.display().to_string(),
        source,
    })?;
    let table = report::table(results);
    let write = |name: &str, text: &str| -> Result<PathBuf, RunError> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| {
            RunError::Report(ReportError::Write {
                path: path.display().to_string(),
                source,
            })
        })?;
        Ok(path)
    };
    results.write_json(&dir.join("results.json"))?;
    write("table.txt", &table)?;
    plot::all(results, dir)?;
    write("README.md", &readme(results, &table))?;
    Ok(table)
}

fn readme(results: &Results, table: &str) -> String {
    let c = &results.config;
    let command = format!(
        "ctpath-bench{} --cpus {}{}",
        if c.quick { " --quick" } else { "" },
        results.placement.mode,
        " --out DIR"
    );
    let mut text = format!(
        "# ctpath-bench results\n\n\
         Taken with `{command}` on {}, {} CPUs, Linux {} (ctpath {}), in {:.0} s.\n\
         CPU placement: {}.\n\n\
         Every raw sample, the machine and the configuration are in `results.json`; \
         `ctpath-bench report results.json` re-renders this file, `table.txt` and the plots.\n\n\
         ```text\n{table}```\n\n\
         ![pps per topology](pps.png)\n\n\
         ![pps vs rules](rules.png)\n\n\
         ![latency CDF](latency_cdf.png)\n\n## Notes\n\n",
        results.machine.cpu_model,
        results.machine.cpus,
        results.machine.kernel,
        results.machine.ctpath_commit,
        results.duration_seconds,
        results.placement.description,
    );
    for note in &results.notes {
        text.push_str(&format!("- {note}\n"));
    }
    for skipped in &results.skipped {
        text.push_str(&format!("- {}: {}\n", skipped.topology, skipped.reason));
    }
    text
}
