//! `ctpath agent --metrics ADDR`: the node's counters for Prometheus, in its text format
//! (version 0.0.4), at `GET /metrics`.
//!
//! Owns the exposition (metric names, labels and help texts) and its HTTP listener
//! ([`Exporter`], a `tiny_http` server on a thread of the agent), and [`AgentReport`], what the
//! agent loop tells the exporter after each attempt to apply a cluster state.
//!
//! Every scrape reads what `ctpath status` reads ([`NodeStatus::read`]: the pinned maps, the
//! forwarder's report in the run directory, written every second, so its figures are up to a
//! second old, its rule hits, which each worker samples about once a second, up to two), with the state in force for the rules and conntrack; a scrape before the agent
//! pinned its maps, or one whose maps cannot be read, is answered 503 with the reason. The
//! families, all prefixed `ctpath_`:
//!
//! - `forwarded_{packets,bytes}_total{kind}`, `dropped_{packets,bytes}_total{reason}`: the
//!   XDP and tc programs' counters (the names of `ctpath status`).
//! - `rule_{packets,bytes}_total{group,rule,description}`: per security-group rule (`rule` is
//!   its index in its group), the programs' and the forwarder's counts together. The counts
//!   follow a rule that a new state moves to another position (`policy::rule_moves`); a new
//!   rule starts at zero.
//! - `conntrack_entries{state="live"|"expired"}`, `conntrack_entries_limit`.
//! - with a forwarder: `forwarder_report_age_seconds`, per worker
//!   `forwarder_{received_packets,batches}_total`, `forwarder_free_frames`,
//!   `forwarder_worker_failed`, `forwarder_{forwarded,dropped}_{packets,bytes}_total`; per
//!   socket `forwarder_socket_*_total`, the kernel's `XDP_STATISTICS` fields.
//! - `state_revision`: the etcd revision of the state in force. A state file has no revision:
//!   then the family has no sample (the applies below show when it was taken in).
//! - `last_apply_duration_seconds`, `last_apply_result{result}` (1 for the last attempt's
//!   result, 0 for the others) and `applies_total{result}`, results as [`ApplyResult`]. The
//!   etcd revisions an agent refuses while it waits for its first valid state are logged, not
//!   counted.
//!
//! A scrape walks the conntrack table key by key, as `ctpath status --state` does.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

use ctpath_common::{Counter, CounterKind, DropReason, Tally};
use ctpath_dataplane::forwarder::{
    port::{Role, SocketStats},
    stats::{Count, WorkerReport},
};
use prometheus_client::{
    collector::Collector,
    encoding::{prometheus_text, DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, TypedMetric},
    registry::{Registry, Unit},
};
use thiserror::Error;

use crate::{
    state::ClusterState,
    status::{FastPathStatus, NodeStatus},
};

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("--metrics {addr}: cannot listen there: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What became of an attempt to apply a cluster state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyResult {
    /// In force now (also when it changed nothing for this node).
    Applied,
    /// The state did not validate (the file, or etcd's keys).
    Invalid,
    /// A valid state that could not be compiled for this node (e.g. a pod's interface not
    /// created yet: tried again every 2 s).
    NotCompiled,
    /// A step of applying it failed: the steps before it were undone, the last good state is
    /// in force again.
    RolledBack,
    /// A step failed and so did the rollback: the node runs parts of two states (tried again
    /// every 2 s).
    Failed,
}

impl ApplyResult {
    pub const ALL: [ApplyResult; 5] = [
        ApplyResult::Applied,
        ApplyResult::Invalid,
        ApplyResult::NotCompiled,
        ApplyResult::RolledBack,
        ApplyResult::Failed,
    ];

    /// The `result` label.
    pub fn name(self) -> &'static str {
        match self {
            ApplyResult::Applied => "applied",
            ApplyResult::Invalid => "invalid",
            ApplyResult::NotCompiled => "not_compiled",
            ApplyResult::RolledBack => "rolled_back",
            ApplyResult::Failed => "failed",
        }
    }
}

/// The agent's side of the metrics: the state in force and the applies so far.
#[derive(Clone, Debug, Default)]
pub struct Applies {
    /// The state in force, for the rules' labels and conntrack's timeouts.
    pub state: Option<Arc<ClusterState>>,
    /// Its etcd revision (none for a file).
    pub revision: Option<i64>,
    /// The last attempt's result and how long it took.
    pub last: Option<(ApplyResult, Duration)>,
    /// Attempts by result, in [`ApplyResult::ALL`]'s order.
    pub totals: [u64; ApplyResult::ALL.len()],
}

/// Where the agent loop reports its applies (shared with the exporter's thread).
#[derive(Clone, Debug, Default)]
pub struct AgentReport(Arc<Mutex<Applies>>);

impl AgentReport {
    /// Records an attempt to apply the state of etcd revision `revision` (none: a file) that
    /// took `took` and came to `result`; `in_force`: the state, when it is in force now.
    pub fn applied(
        &self,
        revision: Option<i64>,
        took: Duration,
        result: ApplyResult,
        in_force: Option<&Arc<ClusterState>>,
    ) {
        let mut applies = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = in_force {
            applies.state = Some(state.clone());
            applies.revision = revision;
        }
        applies.last = Some((result, took));
        if let Some(slot) = ApplyResult::ALL.iter().position(|r| *r == result) {
            applies.totals[slot] += 1;
        }
    }

    fn read(&self) -> Applies {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The `/metrics` listener. Dropping it stops the listener.
pub struct Exporter {
    server: Arc<tiny_http::Server>,
    report: AgentReport,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Listens on `addr` and serves the metrics of the agent whose pins are under `pin_dir`
    /// and whose run directory is `run_dir`.
    pub fn start(
        addr: SocketAddr,
        pin_dir: &Path,
        run_dir: &Path,
    ) -> Result<Exporter, MetricsError> {
        let server = tiny_http::Server::http(addr)
            .map(Arc::new)
            .map_err(|source| MetricsError::Listen { addr, source })?;
        let report = AgentReport::default();
        let (pin_dir, run_dir): (PathBuf, PathBuf) = (pin_dir.to_owned(), run_dir.to_owned());
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn({
                let (server, report) = (Arc::clone(&server), report.clone());
                move || serve(&server, &pin_dir, &run_dir, &report)
            })
            .expect("spawning a thread");
        tracing::info!(address = %server.server_addr(), "serving /metrics");
        Ok(Exporter {
            server,
            report,
            thread: Some(thread),
        })
    }

    /// Where the agent loop reports its applies.
    pub fn report(&self) -> AgentReport {
        self.report.clone()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server, pin_dir: &Path, run_dir: &Path, report: &AgentReport) {
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or_default();
        let (code, content_type, body) = if *request.method() != tiny_http::Method::Get {
            (405, "text/plain", "only GET is served\n".to_owned())
        } else if path != "/metrics" {
            (404, "text/plain", "only /metrics is served\n".to_owned())
        } else {
            let applies = report.read();
            match NodeStatus::read(pin_dir, run_dir, applies.state.as_deref()) {
                Ok(status) => (
                    200,
                    prometheus_text::CONTENT_TYPE,
                    exposition(status, applies),
                ),
                Err(error) => (503, "text/plain", format!("{error}\n")),
            }
        };
        let header =
            tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid header");
        let response = tiny_http::Response::from_string(body)
            .with_status_code(code)
            .with_header(header);
        if let Err(error) = request.respond(response) {
            tracing::debug!(%error, "metrics response not sent");
        }
    }
}

/// The Prometheus text of `status` and `applies` (see the module docs).
pub fn exposition(status: NodeStatus, applies: Applies) -> String {
    let mut registry = Registry::with_prefix("ctpath");
    registry.register_collector(Box::new(Scrape { status, applies }));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// One scrape's reading, encoded by the registry.
#[derive(Debug)]
struct Scrape {
    status: NodeStatus,
    applies: Applies,
}

type Labels = Vec<(&'static str, String)>;

fn packets() -> Unit {
    Unit::Other("packets".into())
}

/// A family: its descriptor and its samples (none, and it is only described).
fn family<M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, unit, M::TYPE)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(value: u64) -> ConstCounter<u64> {
    ConstCounter::new(value)
}

/// Packets and bytes of a set of counters, as two families `NAME_packets_total` and
/// `NAME_bytes_total`.
fn tallies(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (Labels, Tally)> + Clone,
) -> fmt::Result {
    family(
        encoder,
        name,
        &format!("{help} (packets)"),
        Some(&packets()),
        rows.clone()
            .map(|(labels, tally)| (labels, counter(tally.packets))),
    )?;
    family(
        encoder,
        name,
        &format!("{help} (bytes)"),
        Some(&Unit::Bytes),
        rows.map(|(labels, tally)| (labels, counter(tally.bytes))),
    )
}

fn by_name<'a, K: CounterKind>(
    label: &'static str,
    rows: &'a [(K, Tally)],
) -> impl Iterator<Item = (Labels, Tally)> + Clone + 'a {
    rows.iter()
        .map(move |(kind, tally)| (vec![(label, kind.name().to_owned())], *tally))
}

/// A family of socket statistics: its name, help and field.
type SocketStat = (&'static str, &'static str, fn(&SocketStats) -> u64);

/// The kernel's `XDP_STATISTICS` of a socket, one family each.
const SOCKET_STATS: [SocketStat; 6] = [
    (
        "forwarder_socket_rx_dropped",
        "Received frames the kernel dropped for an AF_XDP socket of the forwarder, for other reasons than the two below (XDP_STATISTICS rx_dropped)",
        |s| s.rx_dropped,
    ),
    (
        "forwarder_socket_rx_invalid_descs",
        "Received frames dropped for an invalid descriptor on an AF_XDP socket (XDP_STATISTICS rx_invalid_descs)",
        |s| s.rx_invalid_descs,
    ),
    (
        "forwarder_socket_tx_invalid_descs",
        "Frames to send dropped for an invalid descriptor on an AF_XDP socket (XDP_STATISTICS tx_invalid_descs)",
        |s| s.tx_invalid_descs,
    ),
    (
        "forwarder_socket_rx_ring_full",
        "Received frames dropped because an AF_XDP socket's RX ring was full (XDP_STATISTICS rx_ring_full)",
        |s| s.rx_ring_full,
    ),
    (
        "forwarder_socket_rx_fill_ring_empty_descs",
        "Times the kernel found an AF_XDP socket's fill ring empty when it needed a frame (XDP_STATISTICS rx_fill_ring_empty_descs)",
        |s| s.rx_fill_ring_empty_descs,
    ),
    (
        "forwarder_socket_tx_ring_empty_descs",
        "Times the kernel found an AF_XDP socket's TX ring empty (XDP_STATISTICS tx_ring_empty_descs)",
        |s| s.tx_ring_empty_descs,
    ),
];

/// A worker's counts by name (drop reasons or counters), every name of `K`.
fn worker_counts<K: CounterKind>(
    fast_path: &FastPathStatus,
    label: &'static str,
    counts: fn(&WorkerReport) -> &BTreeMap<String, Count>,
) -> Vec<(Labels, Tally)> {
    fast_path
        .report
        .workers
        .iter()
        .flat_map(|worker| {
            K::ALL.iter().map(move |kind| {
                let count = counts(worker).get(kind.name()).copied().unwrap_or_default();
                (
                    vec![
                        ("worker", worker.id.to_string()),
                        (label, kind.name().to_owned()),
                    ],
                    Tally {
                        packets: count.packets,
                        bytes: count.bytes,
                    },
                )
            })
        })
        .collect()
}

fn encode_fast_path(encoder: &mut DescriptorEncoder, fast_path: &FastPathStatus) -> fmt::Result {
    let workers = &fast_path.report.workers;
    let worker = |id: usize| vec![("worker", id.to_string())];
    family(
        encoder,
        "forwarder_report_age",
        "Age of the AF_XDP forwarder's report these forwarder figures come from (written every second)",
        Some(&Unit::Seconds),
        [(Labels::new(), ConstGauge::new(fast_path.age_ns as f64 / 1e9))],
    )?;
    family(
        encoder,
        "forwarder_received",
        "Frames a forwarder worker received from its AF_XDP sockets",
        Some(&packets()),
        workers.iter().map(|w| (worker(w.id), counter(w.packets))),
    )?;
    family(
        encoder,
        "forwarder_batches",
        "Non-empty receive batches of a forwarder worker",
        None,
        workers.iter().map(|w| (worker(w.id), counter(w.batches))),
    )?;
    family(
        encoder,
        "forwarder_free_frames",
        "UMEM frames of a forwarder worker in no ring, at its last sample",
        None,
        workers
            .iter()
            .map(|w| (worker(w.id), ConstGauge::new(w.free_frames as i64))),
    )?;
    family(
        encoder,
        "forwarder_worker_failed",
        "1 when a forwarder worker could not start (the XDP programs carry its queue), else 0",
        None,
        workers
            .iter()
            .map(|w| (worker(w.id), ConstGauge::new(i64::from(w.failed.is_some())))),
    )?;
    let forwarded = worker_counts::<Counter>(fast_path, "kind", |w| &w.counters);
    tallies(
        encoder,
        "forwarder_forwarded",
        "Frames a forwarder worker did not drop, by what it did with them",
        forwarded.iter().cloned(),
    )?;
    let dropped = worker_counts::<DropReason>(fast_path, "reason", |w| &w.drops);
    tallies(
        encoder,
        "forwarder_dropped",
        "Frames a forwarder worker dropped, by reason",
        dropped.iter().cloned(),
    )?;
    let sockets: Vec<(Labels, SocketStats)> = workers
        .iter()
        .flat_map(|w| {
            w.sockets.iter().map(move |socket| {
                let role = match socket.role {
                    Role::Pod => "pod",
                    Role::Underlay => "underlay",
                };
                (
                    vec![
                        ("worker", w.id.to_string()),
                        ("interface", socket.interface.clone()),
                        ("role", role.to_owned()),
                        ("queue", socket.queue.to_string()),
                    ],
                    socket.kernel,
                )
            })
        })
        .collect();
    for (name, help, field) in SOCKET_STATS {
        family(
            encoder,
            name,
            help,
            None,
            sockets
                .iter()
                .map(|(labels, stats)| (labels.clone(), counter(field(stats)))),
        )?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let encoder = &mut encoder;
        let status = &self.status;
        tallies(
            encoder,
            "forwarded",
            "Frames the XDP and tc programs did not drop, by what they did with them",
            by_name("kind", &status.counters.events),
        )?;
        tallies(
            encoder,
            "dropped",
            "Frames the XDP and tc programs dropped, by reason",
            by_name("reason", &status.counters.drops),
        )?;
        if let Some(rules) = &status.rules {
            tallies(
                encoder,
                "rule",
                "What a security-group rule allowed: its connections' packets, every one \
                 counted (XDP, tc and the forwarder); rule: its index in its group",
                rules.iter().map(|rule| {
                    (
                        vec![
                            ("group", rule.group.clone()),
                            ("rule", rule.index.to_string()),
                            ("description", rule.description.clone()),
                        ],
                        rule.tally,
                    )
                }),
            )?;
        }
        if let Some(table) = &status.conntrack {
            let live = table.entries.saturating_sub(table.expired);
            family(
                encoder,
                "conntrack_entries",
                "Entries in the conntrack table: live, or expired and awaiting the agent's collection",
                None,
                [("live", live), ("expired", table.expired)]
                    .map(|(state, n)| (vec![("state", state.to_owned())], ConstGauge::new(n as i64))),
            )?;
            family(
                encoder,
                "conntrack_entries_limit",
                "Size of the conntrack table: new connections beyond it are dropped (conntrack_full)",
                None,
                [(Labels::new(), ConstGauge::new(i64::from(table.capacity)))],
            )?;
        }
        if let Some(fast_path) = &status.fast_path {
            encode_fast_path(encoder, fast_path)?;
        }
        let applies = &self.applies;
        family(
            encoder,
            "state_revision",
            "etcd revision of the cluster state in force (no sample when the state comes from a file)",
            None,
            applies
                .revision
                .map(|revision| (Labels::new(), ConstGauge::new(revision))),
        )?;
        family(
            encoder,
            "last_apply_duration",
            "How long the agent's last attempt to apply a cluster state took",
            Some(&Unit::Seconds),
            applies
                .last
                .map(|(_, took)| (Labels::new(), ConstGauge::new(took.as_secs_f64()))),
        )?;
        family(
            encoder,
            "last_apply_result",
            "1 for the result of the agent's last attempt to apply a cluster state, 0 for the others",
            None,
            applies.last.into_iter().flat_map(|(last, _)| {
                ApplyResult::ALL.map(|result| {
                    (
                        vec![("result", result.name().to_owned())],
                        ConstGauge::new(i64::from(result == last)),
                    )
                })
            }),
        )?;
        family(
            encoder,
            "applies",
            "Attempts to apply a cluster state, by result (the first state included; a state \
             waiting for its pods' interfaces is tried every 2 s, each try counted)",
            None,
            ApplyResult::ALL
                .iter()
                .zip(applies.totals)
                .map(|(result, total)| {
                    (vec![("result", result.name().to_owned())], counter(total))
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status;

    /// The samples of an exposition: `name{labels}` to value, and the described families.
    fn parse(text: &str) -> (BTreeMap<String, f64>, Vec<(String, String)>) {
        let mut samples = BTreeMap::new();
        let mut families = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                families.push((name.to_owned(), kind.to_owned()));
            } else if line.starts_with("# HELP ") {
                continue;
            } else {
                let (series, value) = line.rsplit_once(' ').expect("sample: series value");
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("value in {line:?}"));
                assert!(
                    samples.insert(series.to_owned(), value).is_none(),
                    "twice: {line}"
                );
            }
        }
        (samples, families)
    }

    #[test]
    fn exposition_has_every_family_with_the_readings_values() {
        let mut applies = Applies::default();
        let report = AgentReport::default();
        let state = ClusterState::from_yaml_str(include_str!("../examples/two-node.yaml"))
            .expect("example state");
        report.applied(
            Some(17),
            Duration::from_millis(250),
            ApplyResult::Applied,
            Some(&Arc::new(state.clone())),
        );
        report.applied(
            Some(18),
            Duration::from_millis(5),
            ApplyResult::NotCompiled,
            None,
        );
        applies.clone_from(&report.read());
        assert_eq!(
            applies.revision,
            Some(17),
            "a refused state does not move the revision"
        );

        let text = exposition(status::tests::example(), applies);
        let (samples, families) = parse(&text);
        let expected_families = [
            ("ctpath_forwarded_packets_total", "counter"),
            ("ctpath_forwarded_bytes_total", "counter"),
            ("ctpath_dropped_packets_total", "counter"),
            ("ctpath_dropped_bytes_total", "counter"),
            ("ctpath_rule_packets_total", "counter"),
            ("ctpath_rule_bytes_total", "counter"),
            ("ctpath_conntrack_entries", "gauge"),
            ("ctpath_conntrack_entries_limit", "gauge"),
            ("ctpath_forwarder_report_age_seconds", "gauge"),
            ("ctpath_forwarder_received_packets_total", "counter"),
            ("ctpath_forwarder_batches_total", "counter"),
            ("ctpath_forwarder_free_frames", "gauge"),
            ("ctpath_forwarder_worker_failed", "gauge"),
            ("ctpath_forwarder_forwarded_packets_total", "counter"),
            ("ctpath_forwarder_forwarded_bytes_total", "counter"),
            ("ctpath_forwarder_dropped_packets_total", "counter"),
            ("ctpath_forwarder_dropped_bytes_total", "counter"),
            ("ctpath_forwarder_socket_rx_dropped_total", "counter"),
            ("ctpath_forwarder_socket_rx_invalid_descs_total", "counter"),
            ("ctpath_forwarder_socket_tx_invalid_descs_total", "counter"),
            ("ctpath_forwarder_socket_rx_ring_full_total", "counter"),
            (
                "ctpath_forwarder_socket_rx_fill_ring_empty_descs_total",
                "counter",
            ),
            (
                "ctpath_forwarder_socket_tx_ring_empty_descs_total",
                "counter",
            ),
            ("ctpath_state_revision", "gauge"),
            ("ctpath_last_apply_duration_seconds", "gauge"),
            ("ctpath_last_apply_result", "gauge"),
            ("ctpath_applies_total", "counter"),
        ];
        assert_eq!(
            families,
            expected_families
                .iter()
                .map(|(name, kind)| (name.to_string(), kind.to_string()))
                .collect::<Vec<_>>(),
            "{text}"
        );
        // Every counter and drop reason has its sample, zero ones too.
        for counter in Counter::ALL {
            let series = format!(
                "ctpath_forwarded_packets_total{{kind=\"{}\"}}",
                counter.name()
            );
            assert!(samples.contains_key(&series), "{series} in\n{text}");
        }
        for reason in DropReason::ALL {
            let series = format!("ctpath_dropped_bytes_total{{reason=\"{}\"}}", reason.name());
            assert!(samples.contains_key(&series), "{series} in\n{text}");
        }
        for (series, value) in [
            ("ctpath_forwarded_packets_total{kind=\"pod_encapsulated\"}", 5.0),
            ("ctpath_forwarded_bytes_total{kind=\"pod_encapsulated\"}", 500.0),
            ("ctpath_forwarded_packets_total{kind=\"pod_passed\"}", 0.0),
            ("ctpath_dropped_packets_total{reason=\"policy_denied_ingress\"}", 3.0),
            ("ctpath_dropped_bytes_total{reason=\"policy_denied_ingress\"}", 300.0),
            (
                "ctpath_rule_packets_total{group=\"web\",rule=\"1\",description=\"ingress tcp 8080 from group client\"}",
                9.0,
            ),
            (
                "ctpath_rule_bytes_total{group=\"web\",rule=\"1\",description=\"ingress tcp 8080 from group client\"}",
                900.0,
            ),
            ("ctpath_conntrack_entries{state=\"live\"}", 6.0),
            ("ctpath_conntrack_entries{state=\"expired\"}", 4.0),
            ("ctpath_conntrack_entries_limit", 65536.0),
            ("ctpath_forwarder_report_age_seconds", 0.5),
            ("ctpath_forwarder_received_packets_total{worker=\"0\"}", 40.0),
            ("ctpath_forwarder_batches_total{worker=\"0\"}", 7.0),
            ("ctpath_forwarder_free_frames{worker=\"0\"}", 4000.0),
            ("ctpath_forwarder_worker_failed{worker=\"0\"}", 0.0),
            (
                "ctpath_forwarder_forwarded_packets_total{worker=\"0\",kind=\"pod_encapsulated\"}",
                38.0,
            ),
            (
                "ctpath_forwarder_dropped_bytes_total{worker=\"0\",reason=\"spoofed_ip\"}",
                120.0,
            ),
            (
                "ctpath_forwarder_dropped_packets_total{worker=\"0\",reason=\"no_neighbor\"}",
                0.0,
            ),
            (
                "ctpath_forwarder_socket_rx_ring_full_total{worker=\"0\",interface=\"eth0\",role=\"underlay\",queue=\"0\"}",
                3.0,
            ),
            (
                "ctpath_forwarder_socket_rx_dropped_total{worker=\"0\",interface=\"eth0\",role=\"underlay\",queue=\"0\"}",
                0.0,
            ),
            ("ctpath_state_revision", 17.0),
            ("ctpath_last_apply_duration_seconds", 0.005),
            ("ctpath_last_apply_result{result=\"not_compiled\"}", 1.0),
            ("ctpath_last_apply_result{result=\"applied\"}", 0.0),
            ("ctpath_last_apply_result{result=\"invalid\"}", 0.0),
            ("ctpath_last_apply_result{result=\"failed\"}", 0.0),
            ("ctpath_applies_total{result=\"applied\"}", 1.0),
            ("ctpath_applies_total{result=\"not_compiled\"}", 1.0),
            ("ctpath_applies_total{result=\"invalid\"}", 0.0),
            ("ctpath_applies_total{result=\"failed\"}", 0.0),
        ] {
            assert_eq!(samples.get(series), Some(&value), "{series} in\n{text}");
        }
    }

    #[test]
    fn a_file_source_has_no_revision_and_no_apply_yet_has_no_last() {
        let mut status = status::tests::example();
        status.fast_path = None;
        status.rules = None;
        status.conntrack = None;
        let (samples, families) = parse(&exposition(status.clone(), Applies::default()));
        assert!(!samples
            .keys()
            .any(|series| series.starts_with("ctpath_forwarder")
                || series.starts_with("ctpath_rule")
                || series.starts_with("ctpath_conntrack")
                || series.starts_with("ctpath_state_revision")
                || series.starts_with("ctpath_last_apply")));
        assert!(families
            .iter()
            .any(|(name, _)| name == "ctpath_state_revision"));
        assert_eq!(
            samples.get("ctpath_applies_total{result=\"applied\"}"),
            Some(&0.0)
        );

        let report = AgentReport::default();
        let state = ClusterState::from_yaml_str(include_str!("../examples/two-node.yaml"))
            .expect("example state");
        report.applied(
            None,
            Duration::from_secs(1),
            ApplyResult::Applied,
            Some(&Arc::new(state)),
        );
        report.applied(None, Duration::from_secs(2), ApplyResult::Invalid, None);
        let (samples, _) = parse(&exposition(status, report.read()));
        assert!(!samples.contains_key("ctpath_state_revision"));
        assert_eq!(
            samples.get("ctpath_last_apply_result{result=\"invalid\"}"),
            Some(&1.0)
        );
        assert_eq!(
            samples.get("ctpath_applies_total{result=\"invalid\"}"),
            Some(&1.0)
        );
        assert_eq!(
            samples.get("ctpath_last_apply_duration_seconds"),
            Some(&2.0)
        );
    }

    #[test]
    fn the_listener_serves_metrics_only_and_says_why_it_cannot() {
        let pins = tempfile::tempdir().unwrap();
        let exporter =
            Exporter::start("127.0.0.1:0".parse().unwrap(), pins.path(), pins.path()).unwrap();
        let addr = exporter.server.server_addr().to_ip().unwrap();
        let get = |path: &str| {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        };
        // No agent pinned anything there.
        let response = get("/metrics");
        assert!(response.starts_with("HTTP/1.0 503"), "{response}");
        assert!(response.contains("no pinned map"), "{response}");
        assert!(get("/").starts_with("HTTP/1.0 404"));
        // The same address again: in use.
        let error = Exporter::start(addr, pins.path(), pins.path())
            .err()
            .expect("address in use")
            .to_string();
        assert!(
            error.starts_with(&format!("--metrics {addr}: cannot listen there")),
            "{error}"
        );
        drop(exporter);
    }
}
