//! One bench run, start to end: builds the topologies, runs every case with the topologies
//! interleaved run by run, shows progress (a bar per case), and writes the results.
//!
//! Order: (1) pps: for each traffic case, R rounds of kernel, ctpath-xdp, ctpath-tc,
//! ctpath-afxdp, ceiling, generator-only; (2) latency: R rounds of the four dataplanes; (3) TCP:
//! the same; (4) security-group scaling: for each further rule count N, the kernel's chain is
//! replaced (`iptables-restore`) and the three ctpath clusters are started again with N rules
//! (fresh conntrack tables), then R rounds of the four dataplanes at 64 bytes, one flow; and
//! (5) at N = 10 and 10,000 the new-connections case, R rounds of all six topologies (the
//! ceiling and generator-only have no rules; their samples carry the case's N). The first rule
//! count's scaling point is the pps phase's 64-byte one-flow case.
//!
//! A full run refuses to start when the ctpath commit is `-dirty` (unless `--allow-dirty`):
//! its figures would belong to no commit.
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
    #[error(
        "ctpath is at {0}: a full run's results would belong to no commit; commit first, or \
         pass --allow-dirty (the commit is written into every report either way)"
    )]
    Dirty(String),
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
            .map(|(frame_size, flows)| Traffic::flood(frame_size, flows))
            .to_vec();
        let rules = if quick {
            vec![1, 10, 10000]
        } else {
            vec![1, 10, 100, 1000, 10000]
        };
        let conn_rules = CONN_RULES.to_vec();
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
                conn_budget: conn_budget(runs, conn_rules.len(), kernel_conntrack_max()),
                conn_rules,
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
            * (c.runs as f64 * (4.0 * flood + report) + 8.0);
        let conn = c.conn_rules.len() as f64 * c.runs as f64 * (6.0 * 0.5 + report);
        let latency = c.runs as f64 * (3.0 * (c.round_trips as f64 * 40e-6 + 0.2) + report);
        let tcp = c.runs as f64 * (3.0 * (c.tcp_seconds as f64 + 0.5) + report);
        Duration::from_secs_f64(pps + scaling + conn + latency + tcp + 20.0)
    }
}

/// The rule counts of the new-connections case.
pub const CONN_RULES: [usize; 2] = [10, 10000];

/// The kernel's `nf_conntrack_max` (one table for every namespace), or the usual default.
fn kernel_conntrack_max() -> u64 {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(262_144)
}

/// New flows per run of the new-connections case, so that neither table fills: ctpath's
/// clusters are built afresh for each rule count, so `runs` runs must fit in three quarters of
/// its table (`DEFAULT_CONNTRACK_ENTRIES`); the kernel's conntrack is one table that lives
/// through the whole run (unreplied UDP entries stay 30 s), so every run of every rule count
/// must fit in three quarters of `nf_conntrack_max`. At most 40,000.
pub fn conn_budget(runs: usize, rule_counts: usize, kernel_max: u64) -> u32 {
    let ctpath = u64::from(ctpath_common::maps::DEFAULT_CONNTRACK_ENTRIES) * 3 / 4 / runs as u64;
    let kernel = kernel_max * 3 / 4 / (runs * rule_counts.max(1)) as u64;
    ctpath.min(kernel).clamp(1_000, 40_000) as u32
}

/// Notes recorded with every result (JSON and README): what the code does by design. What a
/// topology did on this machine (offloads read back, sink, forwarder UMEM) is added per
/// topology after it is built ([`Topology::wiring`]).
pub fn notes(config: &RunConfig) -> Vec<String> {
    let mut notes: Vec<String> = [
        "kernel path: flannel/Rancher-style bridged L2 overlay: per node a Linux bridge with the pod veths and a kernel vxlan device (VNI 100, dstport 4789, all-zeros FDB entry to the other node plus static FDB entries for both pods); br_netfilter with net.bridge.bridge-nf-call-iptables=1 on both nodes; the destination pod's security group is an iptables chain (nf_tables backend, loaded with iptables-restore) jumped to from FORWARD for frames bridged out of its host veth (-m physdev --physdev-out): conntrack ESTABLISHED,RELATED ACCEPT, N rules of which the last matches, then DROP. A one-way UDP flood never becomes ESTABLISHED, so every flood packet walks all N rules.",
        "ctpath-xdp: real ctpath agents, plane `datapath: xdp` (from_pod as XDP on the pod's host veth, from_underlay as XDP on the node's underlay interface), with a cluster state whose destination-pod security group has the same N rules, enforced at the destination node statefully: a flow's first packet is checked against the rules and creates a conntrack entry, later packets hit the entry (docs/security-groups.md).",
        "ctpath-tc: the same agents and state as ctpath-xdp but the plane is `datapath: tc`: from_pod runs as a tcx program on the pod's host veth (GSO packets stay whole, encapsulated with bpf_skb_adjust_room), and on the underlay from_underlay (XDP) delivers TCP into the destination pod by XDP redirect (the pod's GRO, turned on by the agent, merges the segments) and hands everything else to from_underlay_tc, which delivers it with bpf_redirect_peer. Such an skb enters the pod's eth0 without crossing the veth, so no XDP program there sees it (native XDP runs in the veth's receive path, generic XDP skips redirected skbs): its sink is bench_sink_tc (the same counter as a tc program) at tcx ingress of the same interface, the first hook the frame meets in the pod, as native XDP is for the other topologies.",
        "ctpath-afxdp: the same agents and cluster state as ctpath-xdp, but the plane is fast_path: true, so from_pod and from_underlay hand its frames to the agents' AF_XDP forwarder (XSKS map) and the forwarder's workers carry them: node-a's worker receives the source pod's frame on the pod's host veth and sends it, VXLAN-encapsulated, out of the underlay; node-b's receives it from the underlay and sends it, decapsulated, into the destination pod's host veth; security group and conntrack in the forwarder's pipeline (the same semantics as the XDP programs). The workers run where --cpus says (--fastpath-cores). Every sample is checked against the agents' forwarder report: each node's workers must have received at least every frame that reached the sink (twice per round trip for latency; half the segments iperf3 reported for TCP), else the sample fails and is not reported. The generator's copy-mode TX completes once node-a's XDP copied the frame into the worker's RX ring, not at the end of the path: when the worker is slower than the generator its RX ring overflows and ctpath-afxdp reports drops.",
        "ceiling: bench_redirect on the source pod's host veth redirects every frame, unencapsulated, into the node's underlay interface; bench_sink on the far node's underlay interface counts and drops it. The floor of per-packet cost of this machine with this generator; no latency or TCP figures (one way only).",
        "generator-only is a diagnostic of the generator's own cost, not a dataplane: bench_sink on the source pod's host veth, so frames stop at the first veth hop. Its time per packet is the generator's share (AF_XDP copy-mode TX builds an skb and copies the frame; the veth copies it again for XDP), paid by every topology; the table's `path ns` column is a topology's time per packet less this one's. It has no ratios.",
        "sink: bench_sink (XDP, counts and drops) on the destination pod's own interface inside its namespace (at tcx ingress for ctpath-tc, native XDP elsewhere; see each topology's note below); attached only for the pps and new-connection cases.",
        "generator: AF_XDP TX-only socket (xsk-rs, copy mode, queue 0, no XDP program) in the source pod, frames pre-built in the UMEM; 1,024 flows vary the UDP source port. Frame sizes count the 4-byte FCS (64 B = 60-byte buffer). Copy-mode TX completes when the skb is freed at the end of the path, so offered equals what the path takes.",
        "pods and offloads: every topology is built by the shared testbed from the same cluster state: same nodes, underlay, pods, addresses, MACs, MTU 1450. Which offloads each interface ended up with is not assumed: each topology's note below lists them as `ethtool -k` read them after setup. TCP throughput depends on them (with TX checksum offload off the pod's stack segments in software and every 1450-byte segment is carried on its own; with it on, 64 KB GSO packets can stay whole). The underlay is the same for every topology, the kernel's included: a wire (TX checksum offload off, GRO on), which carries frames of at most the MTU as between real NICs, so 64 KB GSO packets are segmented before it (in software here) and merged again by GRO where the receiving path has it (the kernel's vxlan socket; the pod's GRO after an XDP redirect).",
        "drops: frames the generator's socket completed (the path took them) that never reached the sink, over the generator's whole life.",
    ]
    .map(String::from)
    .to_vec();
    notes.push(format!(
        "new connections: 64 B UDP, every frame a new flow (the generator rewrites the source port over 1024-65535 and then the destination port over 1-19999, below the security group's non-matching ports; no 5-tuple repeats within the run), at N = {} rules, no warm-up, at most {} new flows per run (the window ends when they are spent): ctpath's table (DEFAULT_CONNTRACK_ENTRIES {}, built afresh per rule count) and the kernel's (nf_conntrack_max, one table for the run, unreplied UDP entries live 30 s) stay below three quarters full, so rule evaluation and entry creation are measured, not a full table. Each run records ctpath's conntrack_full drops and the kernel's entry count; a run that finds either table full is a problem of the run.",
        config
            .conn_rules
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        config.conn_budget,
        ctpath_common::maps::DEFAULT_CONNTRACK_ENTRIES,
    ));
    notes
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

/// One case's rounds: `runs` rounds of a flood sample on each of `topologies`, in turn.
/// New-flow traffic numbers its flows from `next_flow` on, which moves past every run's budget.
#[allow(clippy::too_many_arguments)]
fn flood_case(
    progress: &Progress,
    name: &str,
    topologies: &[&Topology],
    traffic: Traffic,
    timing: FloodTiming,
    placement: &Placement,
    known_napi: &[u32],
    runs: usize,
    next_flow: &mut u64,
    results: &mut Results,
) {
    let case = progress.bar(name, topologies.len() * runs);
    for run in 0..runs {
        for topology in topologies {
            let base = *next_flow;
            if traffic.new_flows {
                *next_flow += u64::from(traffic.flows);
            }
            match measure::pps(topology, traffic, timing, placement, known_napi, run, base) {
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
    let medians: Vec<(TopologyKind, f64)> = topologies
        .iter()
        .filter_map(|t| Some((t.kind, results.pps_stats(t.kind, traffic, t.rules).median?)))
        .collect();
    case.finish(mpps_message(&medians));
}

/// Runs the bench as `args` say and writes everything into `args.out`.
pub fn run(args: &RunArgs) -> Result<Results, RunError> {
    check_environment()?;
    let plan = Plan::new(args)?;
    let placement = Placement::new(args.cpus)?;
    let machine = Machine::describe();
    if !plan.config.quick && machine.ctpath_commit.ends_with("-dirty") && !args.allow_dirty {
        return Err(RunError::Dirty(machine.ctpath_commit));
    }
    std::fs::create_dir_all(&args.out).map_err(|source| RunError::OutDir {
        path: args.out.display().to_string(),
        source,
    })?;
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let progress = Progress::new();
    let c = plan.config.clone();
    progress.say(&format!(
        "ctpath-bench {} run, about {:.0} s: {} run(s) x {:.1} s per case\ncpus: {}\nmachine: {}, {} CPUs, Linux {}; ctpath {}",
        if c.quick { "quick" } else { "full" },
        plan.estimate().as_secs_f64(),
        c.runs,
        plan.timing.window.as_secs_f64(),
        placement.description,
        machine.cpu_model,
        machine.cpus,
        machine.kernel,
        machine.ctpath_commit,
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
        notes: notes(&c),
        skipped: Vec::new(),
        failures: Vec::new(),
        pps: Vec::new(),
        latency: Vec::new(),
        tcp: Vec::new(),
        headline: Default::default(),
    };

    let building = progress.bar("building topologies", TopologyKind::ALL.len());
    let mut built = Vec::new();
    for kind in TopologyKind::ALL {
        let topology = Topology::build(kind, c.base_rules, &placement)?;
        progress.say(&topology.wiring);
        results.notes.push(topology.wiring.clone());
        building.step(kind.name().into());
        built.push(topology);
    }
    let names: Vec<&str> = TopologyKind::ALL.iter().map(|k| k.name()).collect();
    building.finish(names.join(", "));
    let mut generator = built.pop().expect("generator-only");
    let mut ceiling = built.pop().expect("ceiling");
    let mut afxdp = built.pop().expect("ctpath-afxdp");
    let mut tc = built.pop().expect("ctpath-tc");
    let mut xdp = built.pop().expect("ctpath-xdp");
    let mut kernel = built.pop().expect("kernel");
    let mut next_flow = 0u64;

    // (1) pps.
    for topology in [
        &mut kernel,
        &mut xdp,
        &mut tc,
        &mut afxdp,
        &mut ceiling,
        &mut generator,
    ] {
        topology.attach_sinks()?;
    }
    for &traffic in &c.traffic {
        flood_case(
            &progress,
            &format!("pps {traffic}"),
            &[&kernel, &xdp, &tc, &afxdp, &ceiling, &generator],
            traffic,
            plan.timing,
            &placement,
            &known_napi,
            c.runs,
            &mut next_flow,
            &mut results,
        );
    }
    kernel.detach_sinks();
    xdp.detach_sinks();
    tc.detach_sinks();
    afxdp.detach_sinks();

    // (2) latency.
    let case = progress.bar("latency (UDP ping-pong)", 4 * c.runs);
    for run in 0..c.runs {
        for topology in [&kernel, &xdp, &tc, &afxdp] {
            placement.pin_napi_threads(&known_napi)?;
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
    case.finish(
        TopologyKind::DATAPLANES
            .iter()
            .map(|&k| format!("{k} {:.1} µs", p99(k)))
            .collect::<Vec<_>>()
            .join("  ")
            + " (p99)",
    );

    // (3) TCP.
    let case = progress.bar("tcp (iperf3, one stream)", 4 * c.runs);
    for run in 0..c.runs {
        for topology in [&kernel, &xdp, &tc, &afxdp] {
            placement.pin_napi_threads(&known_napi)?;
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
    case.finish(
        TopologyKind::DATAPLANES
            .iter()
            .map(|&k| format!("{k} {:.2}", gbps(k)))
            .collect::<Vec<_>>()
            .join("  ")
            + " Gbit/s",
    );

    // (4) security-group scaling, and (5) new connections at the rule counts that have them.
    let traffic = results.headline_traffic();
    let conn = results.conn_traffic();
    let conn_timing = FloodTiming {
        warmup: Duration::ZERO,
        window: plan.timing.window,
    };
    let mut scaled = c.rules.clone();
    for &n in &c.conn_rules {
        if !scaled.contains(&n) {
            scaled.push(n);
        }
    }
    for &rules in &scaled {
        if rules != kernel.rules {
            kernel.set_kernel_rules(rules)?;
            drop(xdp);
            xdp = Topology::build(TopologyKind::CtpathXdp, rules, &placement)?;
            drop(tc);
            tc = Topology::build(TopologyKind::CtpathTc, rules, &placement)?;
            drop(afxdp);
            afxdp = Topology::build(TopologyKind::CtpathAfxdp, rules, &placement)?;
        }
        for topology in [&mut kernel, &mut xdp, &mut tc, &mut afxdp] {
            topology.attach_sinks()?;
        }
        if rules != c.base_rules && c.rules.contains(&rules) {
            flood_case(
                &progress,
                &format!("rules N={rules} ({traffic})"),
                &[&kernel, &xdp, &tc, &afxdp],
                traffic,
                plan.timing,
                &placement,
                &known_napi,
                c.runs,
                &mut next_flow,
                &mut results,
            );
        }
        if c.conn_rules.contains(&rules) {
            // The references have no rules: their samples carry the case's rule count.
            ceiling.rules = rules;
            generator.rules = rules;
            flood_case(
                &progress,
                &format!("new connections N={rules}"),
                &[&kernel, &xdp, &tc, &afxdp, &ceiling, &generator],
                conn,
                conn_timing,
                &placement,
                &known_napi,
                c.runs,
                &mut next_flow,
                &mut results,
            );
        }
    }
    drop(ceiling);
    drop(generator);
    drop(afxdp);
    drop(tc);
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
        HoldTopology::CtpathTc => TopologyKind::CtpathTc,
        HoldTopology::CtpathAfxdp => TopologyKind::CtpathAfxdp,
        HoldTopology::Ceiling => TopologyKind::Ceiling,
    };
    let known_napi = cpus::napi_threads();
    let mut topology = Topology::build(kind, rules, &placement)?;
    if sink {
        topology.attach_sinks()?;
    }
    let pinned = placement.pin_napi_threads(&known_napi)?;
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
    println!("{}", topology.wiring);
    let exe =
        std::env::current_exe().map_or_else(|_| "ctpath-bench".into(), |p| p.display().to_string());
    let flood = measure::generate_argv(
        &exe,
        &measure::flood_args(
            Traffic::flood(64, 1),
            FloodTiming {
                warmup: Duration::ZERO,
                window: Duration::from_secs(10),
            },
            topology.destination,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_connection_budget_keeps_both_tables_under_three_quarters() {
        let ctpath = u64::from(ctpath_common::maps::DEFAULT_CONNTRACK_ENTRIES);
        for (runs, kernel_max) in [(1, 262_144), (5, 262_144), (5, 65_536), (10, 1 << 20)] {
            let budget = u64::from(conn_budget(runs, CONN_RULES.len(), kernel_max));
            assert!(
                budget * runs as u64 <= ctpath * 3 / 4,
                "{runs} {kernel_max}"
            );
            assert!(
                budget * (runs * CONN_RULES.len()) as u64 <= kernel_max * 3 / 4,
                "{runs} {kernel_max}"
            );
        }
        assert_eq!(conn_budget(1, 2, 262_144), 40_000);
    }

    #[test]
    fn quick_runs_have_the_new_connection_rule_counts() {
        let cli =
            <crate::cli::Cli as clap::Parser>::try_parse_from(["ctpath-bench", "--quick"]).unwrap();
        let plan = Plan::new(&cli.run).unwrap();
        for n in CONN_RULES {
            assert!(plan.config.rules.contains(&n), "{n}");
        }
        assert!(!cli.run.allow_dirty);
    }
}
