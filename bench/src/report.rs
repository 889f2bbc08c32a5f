//! The results of one run and what is made of them: the JSON record (every raw sample, the
//! machine, the CPU placement, the configuration), the summary (min / median / max per case,
//! ratios to the kernel path and to the ceiling, the four headline ratios), the plain
//! text table (pps, rule scaling, new connections per second with the runs that found a
//! conntrack table full, latency, TCP, headline; generator-only footnoted as the generator's
//! cost, not a dataplane; the ctpath commit in the header), and the sanity checks `--quick`
//! relies on (a full conntrack table is one: its capacity, not the path, would be measured).
//!
//! Owns [`Results`], [`Stats`], [`Headline`], [`ReportError`]. Ratios are of medians; the runs
//! of the topologies compared are interleaved (A B A B ...), so slow phases of the machine hit
//! both sides of a ratio alike.
//!
//! Panic contract: nothing here panics.

use std::{fmt::Write as _, path::Path};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    cpus::{CpuMode, Placement},
    machine::Machine,
    measure::{LatencySample, PpsSample, TcpSample, Traffic},
    topology::TopologyKind,
};

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a ctpath-bench results file: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The version of the JSON layout.
pub const SCHEMA: u32 = 1;

/// What a run was asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub quick: bool,
    pub runs: usize,
    pub warmup_ms: u64,
    pub window_ms: u64,
    pub traffic: Vec<Traffic>,
    /// The rule count of every case that is not a rule-scaling case.
    pub base_rules: usize,
    /// The rule counts of the scaling cases (64 B, 1 flow).
    pub rules: Vec<usize>,
    pub round_trips: usize,
    pub tcp_seconds: u64,
    /// The rule counts of the new-connections case.
    #[serde(default)]
    pub conn_rules: Vec<usize>,
    /// New flows per run of the new-connections case (see `run::conn_budget`).
    #[serde(default)]
    pub conn_budget: u32,
}

/// A topology that was not measured, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub topology: String,
    pub reason: String,
}

/// Everything one run produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: u32,
    pub tool: String,
    pub started_unix: u64,
    pub duration_seconds: f64,
    pub placement: Placement,
    pub machine: Machine,
    pub config: RunConfig,
    pub notes: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// Samples that could not be taken, as messages.
    pub failures: Vec<String>,
    pub pps: Vec<PpsSample>,
    pub latency: Vec<LatencySample>,
    pub tcp: Vec<TcpSample>,
    /// Derived from the samples when the run ended (recomputed by `report`).
    pub headline: Headline,
}

impl Results {
    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(self).expect("results serialise");
        std::fs::write(path, text + "\n").map_err(|source| ReportError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn read_json(path: &Path) -> Result<Results, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// The received pps of every run of one case.
    pub fn pps_values(&self, topology: TopologyKind, traffic: Traffic, rules: usize) -> Vec<f64> {
        self.pps_samples(topology, traffic, rules)
            .map(|s| s.received_pps)
            .collect()
    }

    pub fn pps_samples(
        &self,
        topology: TopologyKind,
        traffic: Traffic,
        rules: usize,
    ) -> impl Iterator<Item = &PpsSample> {
        self.pps.iter().filter(move |s| {
            s.topology == topology.name()
                && s.frame_size == traffic.frame_size
                && s.flows == traffic.flows
                && s.new_flows == traffic.new_flows
                && s.rules == rules
        })
    }

    pub fn pps_stats(&self, topology: TopologyKind, traffic: Traffic, rules: usize) -> Stats {
        Stats::of(&self.pps_values(topology, traffic, rules))
    }

    pub fn latency_samples(&self, topology: TopologyKind) -> Vec<&LatencySample> {
        self.latency
            .iter()
            .filter(|s| s.topology == topology.name())
            .collect()
    }

    pub fn tcp_stats(&self, topology: TopologyKind) -> Stats {
        let v: Vec<f64> = self
            .tcp
            .iter()
            .filter(|s| s.topology == topology.name())
            .map(|s| s.bits_per_second)
            .collect();
        Stats::of(&v)
    }

    /// The topologies measured (not skipped), in run order.
    pub fn measured(&self) -> Vec<TopologyKind> {
        TopologyKind::ALL
            .into_iter()
            .filter(|k| self.pps.iter().any(|s| s.topology == k.name()))
            .collect()
    }

    /// The dataplanes (kernel, ctpath-xdp, ctpath-afxdp) this run has samples of.
    pub fn dataplanes(&self) -> Vec<TopologyKind> {
        let measured = self.measured();
        TopologyKind::DATAPLANES
            .into_iter()
            .filter(|k| measured.contains(k))
            .collect()
    }

    /// The headline case: 64 bytes, one flow.
    pub fn headline_traffic(&self) -> Traffic {
        Traffic::flood(64, 1)
    }

    /// The new-connections case: 64 bytes, every frame a new flow, `conn_budget` per run.
    pub fn conn_traffic(&self) -> Traffic {
        Traffic {
            frame_size: 64,
            flows: self.config.conn_budget,
            new_flows: true,
        }
    }

    /// The four ratios of the issue, from medians.
    pub fn compute_headline(&self) -> Headline {
        let t = self.headline_traffic();
        let base = self.config.base_rules;
        let med = |k, rules| self.pps_stats(k, t, rules).median;
        let xdp = med(TopologyKind::CtpathXdp, base);
        let kernel = med(TopologyKind::Kernel, base);
        let ceiling = med(TopologyKind::Ceiling, base);
        let at = |rules| med(TopologyKind::CtpathXdp, rules);
        let p99 = |k| {
            let v: Vec<f64> = self.latency_samples(k).iter().map(|s| s.p99_us).collect();
            Stats::of(&v).median
        };
        let tcp = |k| self.tcp_stats(k).median;
        Headline {
            xdp_over_kernel_64b: ratio(xdp, kernel),
            xdp_over_ceiling_64b: ratio(xdp, ceiling),
            xdp_rules_10000_over_10: ratio(at(10000), at(10)),
            latency_p99_xdp_over_kernel: ratio(
                p99(TopologyKind::CtpathXdp),
                p99(TopologyKind::Kernel),
            ),
            tc_over_kernel_64b: ratio(med(TopologyKind::CtpathTc, base), kernel),
            tcp_tc_over_kernel: ratio(tcp(TopologyKind::CtpathTc), tcp(TopologyKind::Kernel)),
            latency_p99_tc_over_kernel: ratio(
                p99(TopologyKind::CtpathTc),
                p99(TopologyKind::Kernel),
            ),
        }
    }
}

/// `a / b` when both exist and `b` is not zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The issues' headline ratios (None where the run has no data for one): issue 5's for
/// ctpath-xdp, issue 9's for ctpath-tc and ctpath-xdp against the ceiling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    /// ctpath-xdp / kernel, 64 B, one flow (goal >= 5).
    pub xdp_over_kernel_64b: Option<f64>,
    /// ctpath-xdp / ceiling, 64 B, one flow (goal >= 0.75).
    pub xdp_over_ceiling_64b: Option<f64>,
    /// ctpath-xdp pps at 10,000 rules / at 10 rules (goal >= 0.9).
    pub xdp_rules_10000_over_10: Option<f64>,
    /// ctpath-xdp RTT p99 / kernel RTT p99 (goal <= 0.7).
    pub latency_p99_xdp_over_kernel: Option<f64>,
    /// ctpath-tc / kernel, 64 B, one flow (goal >= 2).
    #[serde(default)]
    pub tc_over_kernel_64b: Option<f64>,
    /// ctpath-tc / kernel, TCP one stream (goal >= 1.2).
    #[serde(default)]
    pub tcp_tc_over_kernel: Option<f64>,
    /// ctpath-tc RTT p99 / kernel RTT p99 (goal <= 0.7).
    #[serde(default)]
    pub latency_p99_tc_over_kernel: Option<f64>,
}

impl Headline {
    /// (what, value, goal text, met) for printing.
    pub fn rows(&self) -> Vec<(&'static str, Option<f64>, &'static str, Option<bool>)> {
        vec![
            (
                "ctpath-xdp / kernel, 64 B",
                self.xdp_over_kernel_64b,
                ">= 5x",
                self.xdp_over_kernel_64b.map(|r| r >= 5.0),
            ),
            (
                "ctpath-xdp / ceiling, 64 B",
                self.xdp_over_ceiling_64b,
                ">= 0.75x",
                self.xdp_over_ceiling_64b.map(|r| r >= 0.75),
            ),
            (
                "ctpath-xdp pps 10,000 rules / 10 rules",
                self.xdp_rules_10000_over_10,
                ">= 0.90x",
                self.xdp_rules_10000_over_10.map(|r| r >= 0.9),
            ),
            (
                "RTT p99 ctpath-xdp / kernel",
                self.latency_p99_xdp_over_kernel,
                "<= 0.70x",
                self.latency_p99_xdp_over_kernel.map(|r| r <= 0.7),
            ),
            (
                "ctpath-tc / kernel, 64 B",
                self.tc_over_kernel_64b,
                ">= 2x",
                self.tc_over_kernel_64b.map(|r| r >= 2.0),
            ),
            (
                "TCP ctpath-tc / kernel",
                self.tcp_tc_over_kernel,
                ">= 1.2x",
                self.tcp_tc_over_kernel.map(|r| r >= 1.2),
            ),
            (
                "RTT p99 ctpath-tc / kernel",
                self.latency_p99_tc_over_kernel,
                "<= 0.70x",
                self.latency_p99_tc_over_kernel.map(|r| r <= 0.7),
            ),
        ]
    }
}

/// Min, median and max of some runs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub min: Option<f64>,
    pub median: Option<f64>,
    pub max: Option<f64>,
}

impl Stats {
    pub fn of(values: &[f64]) -> Stats {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Stats::default();
        }
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stats {
            n,
            min: Some(v[0]),
            median: Some(median),
            max: Some(v[n - 1]),
        }
    }
}

fn mpps(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| {
        let m = v / 1e6;
        if m >= 0.1 {
            format!("{m:.3}")
        } else {
            format!("{m:.5}")
        }
    })
}

fn times(x: Option<f64>) -> String {
    x.map_or("-".into(), |r| format!("{r:.2}x"))
}

/// Nanoseconds per packet at `pps`.
pub fn ns_per_packet(pps: Option<f64>) -> Option<f64> {
    pps.filter(|p| *p > 0.0).map(|p| 1e9 / p)
}

/// Nanoseconds per packet beyond the generator's own: the time of the path after the pod.
pub fn path_ns(pps: Option<f64>, generator_pps: Option<f64>) -> Option<f64> {
    Some(ns_per_packet(pps)? - ns_per_packet(generator_pps)?)
}

fn nanos(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.0}"))
}

fn micros(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.1}"))
}

/// The terminal table (also written to `table.txt` and embedded in the results README).
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    let c = &results.config;
    let m = &results.machine;
    let _ = writeln!(
        out,
        "ctpath-bench {} run: {} run(s) per case, {:.1} s each (after {:.1} s warm-up), topologies interleaved run by run",
        if c.quick { "quick" } else { "full" },
        c.runs,
        c.window_ms as f64 / 1000.0,
        c.warmup_ms as f64 / 1000.0
    );
    let _ = writeln!(out, "cpus: {}", results.placement.description);
    let _ = writeln!(
        out,
        "machine: {}, {} CPUs, Linux {}; {}; ctpath {}",
        m.cpu_model, m.cpus, m.kernel, m.iptables, m.ctpath_commit
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Received at the destination pod (Mpps; min / median / max over runs); security group of {} rule(s)",
        c.base_rules
    );
    let _ = writeln!(
        out,
        "{:<18} {:<14} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>9} {:>10}",
        "case",
        "topology",
        "min",
        "median",
        "max",
        "drops",
        "ns/pkt",
        "path ns",
        "vs kernel",
        "vs ceiling"
    );
    for &traffic in &c.traffic {
        let kernel = results.pps_stats(TopologyKind::Kernel, traffic, c.base_rules);
        let ceiling = results.pps_stats(TopologyKind::Ceiling, traffic, c.base_rules);
        let generator = results
            .pps_stats(TopologyKind::GeneratorOnly, traffic, c.base_rules)
            .median;
        for (i, kind) in TopologyKind::ALL.into_iter().enumerate() {
            let case = if i == 0 {
                traffic.to_string()
            } else {
                String::new()
            };
            if let Some(skip) = results.skipped.iter().find(|s| s.topology == kind.name()) {
                let _ = writeln!(
                    out,
                    "{case:<18} {:<14} skipped: {}",
                    kind.name(),
                    short(&skip.reason)
                );
                continue;
            }
            let diagnostic = kind == TopologyKind::GeneratorOnly;
            // Time per packet is CPU time only when everything runs on one CPU.
            let same = results.placement.mode == CpuMode::Same;
            let s = results.pps_stats(kind, traffic, c.base_rules);
            let drops: u64 = results
                .pps_samples(kind, traffic, c.base_rules)
                .map(|s| s.drops)
                .sum();
            let dash = |text: String| if diagnostic { "-".to_owned() } else { text };
            let _ = writeln!(
                out,
                "{case:<18} {:<14} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>9} {:>10}",
                kind.name(),
                mpps(s.min),
                mpps(s.median),
                mpps(s.max),
                drops,
                nanos(ns_per_packet(s.median)),
                dash(nanos(path_ns(s.median, generator).filter(|_| same))),
                dash(times(ratio(s.median, kernel.median))),
                dash(times(ratio(s.median, ceiling.median))),
            );
        }
    }

    let _ = writeln!(
        out,
        "generator-only is not a dataplane: a diagnostic of the generator's own cost (frames stop at \
         the first veth hop); `path ns` is a topology's ns/pkt less its. No ratios."
    );

    if c.rules.len() > 1 || c.rules.first() != Some(&c.base_rules) {
        let t = results.headline_traffic();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Security-group scaling, {t} (Mpps, median over runs; N = rules in the destination pod's group)"
        );
        let planes = results.dataplanes();
        let median = |k, n| results.pps_stats(k, t, n).median;
        let _ = write!(out, "{:>7}", "N");
        for k in &planes {
            let _ = write!(out, " {:>13}", k.name());
        }
        for k in planes.iter().filter(|&&k| k != TopologyKind::Kernel) {
            let _ = write!(out, " {:>20}", format!("{} / kernel", short_name(*k)));
            let _ = write!(out, " {:>16}", format!("{} vs N=10", short_name(*k)));
        }
        let _ = writeln!(out);
        for &rules in &c.rules {
            let _ = write!(out, "{rules:>7}");
            for &k in &planes {
                let _ = write!(out, " {:>13}", mpps(median(k, rules)));
            }
            let kernel = median(TopologyKind::Kernel, rules);
            for &k in planes.iter().filter(|&&k| k != TopologyKind::Kernel) {
                let _ = write!(
                    out,
                    " {:>20} {:>16}",
                    times(ratio(median(k, rules), kernel)),
                    times(ratio(median(k, rules), median(k, 10)))
                );
            }
            let _ = writeln!(out);
        }
    }

    if !c.conn_rules.is_empty() {
        let t = results.conn_traffic();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "New connections per second, {t} (up to {} new flows per run, no warm-up; thousand new \
             flows/s, min / median / max; ct full: runs that found a conntrack table full)",
            c.conn_budget
        );
        let _ = writeln!(
            out,
            "{:>7} {:<14} {:>9} {:>9} {:>9} {:>8} {:>9} {:>10} {:>8}",
            "N", "topology", "min", "median", "max", "drops", "vs kernel", "vs ceiling", "ct full"
        );
        for &rules in &c.conn_rules {
            let stats = |k| results.pps_stats(k, t, rules);
            let kernel = stats(TopologyKind::Kernel).median;
            let ceiling = stats(TopologyKind::Ceiling).median;
            for kind in results.measured() {
                let samples: Vec<&PpsSample> = results.pps_samples(kind, t, rules).collect();
                if samples.is_empty() {
                    continue;
                }
                let s = stats(kind);
                let drops: u64 = samples.iter().map(|s| s.drops).sum();
                let full = samples.iter().filter(|s| conntrack_was_full(s)).count();
                let diagnostic = kind == TopologyKind::GeneratorOnly;
                let dash = |text: String| if diagnostic { "-".to_owned() } else { text };
                let k = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.1}", v / 1e3));
                let _ = writeln!(
                    out,
                    "{rules:>7} {:<14} {:>9} {:>9} {:>9} {:>8} {:>9} {:>10} {:>8}",
                    kind.name(),
                    k(s.min),
                    k(s.median),
                    k(s.max),
                    drops,
                    dash(times(ratio(s.median, kernel))),
                    dash(times(ratio(s.median, ceiling))),
                    full,
                );
            }
        }
        let n10000 = |k| results.pps_stats(k, t, 10000).median;
        let n10 = |k| results.pps_stats(k, t, 10).median;
        let _ = writeln!(
            out,
            "  new connections at 10,000 rules / at 10: {}",
            results
                .dataplanes()
                .into_iter()
                .map(|k| format!("{k} {}", times(ratio(n10000(k), n10(k)))))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Round trip, UDP request/response pod to pod across nodes (µs; median over runs of each run's percentile; {} round trips per run)",
        c.round_trips
    );
    let _ = writeln!(
        out,
        "{:<13} {:>8} {:>8} {:>8} {:>6} {:>14}",
        "topology", "p50", "p99", "p999", "lost", "p99 vs kernel"
    );
    let p99_of = |k| {
        let v: Vec<f64> = results
            .latency_samples(k)
            .iter()
            .map(|s| s.p99_us)
            .collect();
        Stats::of(&v).median
    };
    let kernel_p99 = p99_of(TopologyKind::Kernel);
    for kind in results.dataplanes() {
        let samples = results.latency_samples(kind);
        let median = |f: fn(&LatencySample) -> f64| {
            let v: Vec<f64> = samples.iter().map(|s| f(s)).collect();
            Stats::of(&v).median
        };
        let lost: usize = samples.iter().map(|s| s.lost).sum();
        let _ = writeln!(
            out,
            "{:<13} {:>8} {:>8} {:>8} {:>6} {:>14}",
            kind.name(),
            micros(median(|s| s.p50_us)),
            micros(median(|s| s.p99_us)),
            micros(median(|s| s.p999_us)),
            lost,
            times(ratio(median(|s| s.p99_us), kernel_p99)),
        );
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "TCP, iperf3 one stream pod to pod across nodes, {} s per run (Gbit/s, min / median / max)",
        c.tcp_seconds
    );
    let kernel_tcp = results.tcp_stats(TopologyKind::Kernel).median;
    for kind in results.dataplanes() {
        let s = results.tcp_stats(kind);
        let retransmits: u64 = results
            .tcp
            .iter()
            .filter(|t| t.topology == kind.name())
            .map(|t| t.retransmits)
            .sum();
        let g = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.2}", v / 1e9));
        let _ = writeln!(
            out,
            "{:<13} {:>8} {:>8} {:>8}   retransmits {:<6} vs kernel {}",
            kind.name(),
            g(s.min),
            g(s.median),
            g(s.max),
            retransmits,
            times(ratio(s.median, kernel_tcp)),
        );
    }

    let _ = writeln!(out);
    let _ = writeln!(out, "Headline ratios (medians; {})", results.placement.mode);
    for (what, value, goal, met) in results.compute_headline().rows() {
        let _ = writeln!(
            out,
            "  {what:<40} {:>8}   goal {goal:<9} {}",
            times(value),
            verdict(met)
        );
    }
    let t = results.headline_traffic();
    let generator = results
        .pps_stats(TopologyKind::GeneratorOnly, t, c.base_rules)
        .median
        .filter(|_| results.placement.mode == CpuMode::Same);
    let path = |k| path_ns(results.pps_stats(k, t, c.base_rules).median, generator);
    let (kernel_path, xdp_path, afxdp_path, ceiling_path) = (
        path(TopologyKind::Kernel),
        path(TopologyKind::CtpathXdp),
        path(TopologyKind::CtpathAfxdp),
        path(TopologyKind::Ceiling),
    );
    let _ = writeln!(
        out,
        "  time per packet beyond the generator ({t}; one-CPU runs only): kernel {} ns, \
         ctpath-xdp {} ns, ctpath-afxdp {} ns, ceiling {} ns; generator alone {} ns",
        nanos(kernel_path),
        nanos(xdp_path),
        nanos(afxdp_path),
        nanos(ceiling_path),
        nanos(ns_per_packet(generator)),
    );
    let _ = writeln!(
        out,
        "  on path time alone: kernel / ctpath-xdp {}, ceiling / ctpath-xdp {}",
        times(ratio(kernel_path, xdp_path)),
        times(ratio(ceiling_path, xdp_path)),
    );
    let med = |k| results.pps_stats(k, t, c.base_rules).median;
    let tc = med(TopologyKind::CtpathTc);
    if tc.is_some() {
        let _ = writeln!(
            out,
            "  ctpath-tc ({t}): / kernel {}, / ctpath-xdp {}, / ceiling {}; path {} ns, on path \
             time: kernel / ctpath-tc {}",
            times(ratio(tc, med(TopologyKind::Kernel))),
            times(ratio(tc, med(TopologyKind::CtpathXdp))),
            times(ratio(tc, med(TopologyKind::Ceiling))),
            nanos(path(TopologyKind::CtpathTc)),
            times(ratio(kernel_path, path(TopologyKind::CtpathTc))),
        );
    }
    let afxdp = med(TopologyKind::CtpathAfxdp);
    if afxdp.is_some() {
        let _ = writeln!(
            out,
            "  ctpath-afxdp ({t}): / kernel {}, / ctpath-xdp {}, / ceiling {}; on path time: \
             kernel / ctpath-afxdp {}",
            times(ratio(afxdp, med(TopologyKind::Kernel))),
            times(ratio(afxdp, med(TopologyKind::CtpathXdp))),
            times(ratio(afxdp, med(TopologyKind::Ceiling))),
            times(ratio(kernel_path, afxdp_path)),
        );
        for &traffic in &c.traffic {
            let samples: Vec<&PpsSample> = results
                .pps_samples(TopologyKind::CtpathAfxdp, traffic, c.base_rules)
                .collect();
            let per_batch: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.forwarder.as_ref()?.per_batch())
                .collect();
            let dropped: u64 = samples
                .iter()
                .filter_map(|s| s.forwarder.as_ref())
                .map(|f| f.drops())
                .sum();
            let _ = writeln!(
                out,
                "  ctpath-afxdp forwarder, {traffic}: {} frames per receive batch (median over \
                 runs, both nodes), {dropped} dropped by the workers",
                Stats::of(&per_batch)
                    .median
                    .map_or("-".into(), |v| format!("{v:.1}")),
            );
        }
    }
    if !results.failures.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "FAILED samples:");
        for f in &results.failures {
            let _ = writeln!(out, "  {f}");
        }
    }
    out
}

/// How a goal's line ends: met, MISSED, or not measured.
pub fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured in this run",
    }
}

/// The topology's name without `ctpath-`, for narrow column heads.
fn short_name(kind: TopologyKind) -> &'static str {
    kind.name().strip_prefix("ctpath-").unwrap_or(kind.name())
}

/// Whether a run found a conntrack table full: ctpath counted `conntrack_full` drops, or the
/// kernel's table held `nf_conntrack_max` entries after it.
pub fn conntrack_was_full(sample: &PpsSample) -> bool {
    sample.conntrack_full > 0
        || sample
            .kernel_conntrack
            .is_some_and(|(count, max)| max > 0 && count >= max)
}

fn short(text: &str) -> &str {
    text.split(':').next().unwrap_or(text)
}

/// Every check a smoke test relies on: each case ran and produced non-zero, sane figures.
/// Never a speed. Returns the problems found.
pub fn sanity_problems(results: &Results) -> Vec<String> {
    let mut problems: Vec<String> = results.failures.clone();
    let c = &results.config;
    let skipped = |k: &TopologyKind| results.skipped.iter().any(|s| s.topology == k.name());
    let measured: Vec<TopologyKind> = TopologyKind::ALL
        .into_iter()
        .filter(|k| !skipped(k))
        .collect();
    let dataplanes: Vec<TopologyKind> = TopologyKind::DATAPLANES
        .into_iter()
        .filter(|k| !skipped(k))
        .collect();
    let mut expect_case = |kind: TopologyKind, traffic: Traffic, rules: usize| {
        let samples: Vec<&PpsSample> = results.pps_samples(kind, traffic, rules).collect();
        if samples.len() < c.runs {
            problems.push(format!(
                "{kind} {traffic}, {rules} rules: {} of {} runs",
                samples.len(),
                c.runs
            ));
        }
        for s in samples {
            let what = format!("{kind} {traffic}, {rules} rules, run {}", s.run);
            if !(s.received_pps > 0.0 && s.received_pps < 1e8) {
                problems.push(format!("{what}: received {} pps", s.received_pps));
            }
            if s.completed == 0 || s.received == 0 {
                problems.push(format!(
                    "{what}: completed {} received {}",
                    s.completed, s.received
                ));
            }
            // The sink may see a few frames that are not the flood (ARP).
            if s.received > s.completed + s.completed / 100 + 100 {
                problems.push(format!(
                    "{what}: received {} > completed {}",
                    s.received, s.completed
                ));
            }
            if kind == TopologyKind::CtpathAfxdp && s.forwarder.is_none() {
                problems.push(format!("{what}: no forwarder figures"));
            }
            if s.received_pps > 1.1 * s.sent_pps + 10_000.0 {
                problems.push(format!(
                    "{what}: received {:.0} pps > sent {:.0} pps",
                    s.received_pps, s.sent_pps
                ));
            }
        }
    };
    for &traffic in &c.traffic {
        for &kind in &measured {
            expect_case(kind, traffic, c.base_rules);
        }
    }
    let t = results.headline_traffic();
    for &rules in &c.rules {
        for &kind in &dataplanes {
            expect_case(kind, t, rules);
        }
    }
    let conn = results.conn_traffic();
    for &rules in &c.conn_rules {
        for &kind in &measured {
            expect_case(kind, conn, rules);
        }
    }
    for s in results.pps.iter().filter(|s| conntrack_was_full(s)) {
        problems.push(format!(
            "{} {} B{}, {} rules, run {}: a conntrack table was full (ctpath conntrack_full {}, \
             kernel {:?}): its capacity, not the path, was measured",
            s.topology,
            s.frame_size,
            if s.new_flows { " new flows" } else { "" },
            s.rules,
            s.run,
            s.conntrack_full,
            s.kernel_conntrack
        ));
    }
    for kind in dataplanes {
        let samples = results.latency_samples(kind);
        if samples.len() < c.runs {
            problems.push(format!(
                "{kind} latency: {} of {} runs",
                samples.len(),
                c.runs
            ));
        }
        for s in samples {
            let ok = s.p50_us > 0.0
                && s.p50_us <= s.p99_us
                && s.p99_us <= s.p999_us
                && s.p999_us < 1e6
                && s.lost * 10 <= s.round_trips;
            if !ok {
                problems.push(format!(
                    "{kind} latency run {}: p50 {} p99 {} p999 {} lost {}/{}",
                    s.run, s.p50_us, s.p99_us, s.p999_us, s.lost, s.round_trips
                ));
            }
        }
        let tcp: Vec<&TcpSample> = results
            .tcp
            .iter()
            .filter(|s| s.topology == kind.name())
            .collect();
        if tcp.len() < c.runs {
            problems.push(format!("{kind} tcp: {} of {} runs", tcp.len(), c.runs));
        }
        for s in tcp {
            if !(s.bits_per_second > 0.0 && s.bits_per_second < 1e12) {
                problems.push(format!(
                    "{kind} tcp run {}: {} bit/s",
                    s.run, s.bits_per_second
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_min_median_max() {
        let s = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.max), (Some(1.0), Some(2.0), Some(3.0)));
        assert_eq!(Stats::of(&[1.0, 2.0, 3.0, 4.0]).median, Some(2.5));
        assert_eq!(Stats::of(&[]).median, None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
    }

    #[test]
    fn figures_are_formatted_for_the_table() {
        assert_eq!(mpps(Some(2_450_000.0)), "2.450");
        assert_eq!(mpps(Some(4_400.0)), "0.00440");
        assert_eq!(mpps(None), "-");
        assert_eq!(times(Some(5.123)), "5.12x");
    }
}
