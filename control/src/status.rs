//! `ctpath status`: a node's counters, read from the maps its agent pinned: what the datapath
//! forwarded and what it dropped, and why; with the cluster state at hand, also every
//! security-group rule's hits and the conntrack table's occupancy; and, on a node with
//! fast-path planes, what the AF_XDP forwarder did, from the report its agent writes.
//!
//! Owns [`NodeStatus`], all of that read at one moment, and its two renderings: the table
//! (`Display`) and the JSON object of `ctpath status --json` ([`NodeStatus::to_json`]). The
//! agent's `/metrics` ([`crate::metrics`]) exports the same reading.
//!
//! JSON field names (stable): `forwarded` and `dropped` map every counter name (zero ones too)
//! to `{packets, bytes}`; `rules` is a list of `{group, index, description, packets, bytes}`,
//! `index` the rule's position in its group; `conntrack` is `{entries, expired, capacity}`
//! (`entries` counts expired ones too, `capacity` is the pinned table's size); both are `null`
//! without the state; `fast_path` is `null` or the forwarder's report (`pid`, `written_ns`,
//! `planes`, `huge_pages`, `workers`: as `forwarder.json` has them) plus `running` and
//! `age_seconds`.

use std::{fmt, path::Path};

use aya::maps::{Map, MapData, PerCpuArray};
use ctpath_common::{
    maps::{names, CtTimeouts},
    Counter, CounterKind, DropReason, Tally,
};
use thiserror::Error;

use ctpath_dataplane::forwarder::stats::{Count, ForwarderReport};
use serde_json::json;

use crate::{
    conntrack::{self, TableSummary},
    datapath::{self, DatapathError},
    fastpath::{self, FastPathError},
    policy,
    state::{ClusterState, Direction, Rule},
};

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("no pinned map {path}: is the agent running? {source}")]
    NotPinned {
        path: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    FastPath(#[from] FastPathError),
}

/// A node's counters at one moment, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub events: Vec<(Counter, Tally)>,
    pub drops: Vec<(DropReason, Tally)>,
}

impl Snapshot {
    /// Reads the counters pinned under `pin_dir`.
    pub fn read(pin_dir: &Path) -> Result<Snapshot, StatusError> {
        Ok(Snapshot {
            events: read_pinned(pin_dir)?,
            drops: read_pinned(pin_dir)?,
        })
    }

    pub fn event(&self, counter: Counter) -> Tally {
        lookup(&self.events, counter)
    }

    pub fn dropped(&self, reason: DropReason) -> Tally {
        lookup(&self.drops, reason)
    }

    /// Every drop, all reasons together.
    pub fn total_dropped(&self) -> u64 {
        self.drops.iter().map(|(_, tally)| tally.packets).sum()
    }
}

fn lookup<K: PartialEq>(tallies: &[(K, Tally)], kind: K) -> Tally {
    tallies
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, tally)| *tally)
        .unwrap_or_default()
}

/// Opens the map `name` pinned under `pin_dir`.
fn open_data(pin_dir: &Path, name: &'static str) -> Result<MapData, StatusError> {
    let path = pin_dir.join(name);
    MapData::from_pin(&path).map_err(|source| StatusError::NotPinned {
        path: path.display().to_string(),
        source,
    })
}

fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

fn open_pinned(pin_dir: &Path, name: &'static str) -> Result<Map, StatusError> {
    Ok(Map::from_map_data(open_data(pin_dir, name)?).map_err(map_error(name))?)
}

/// One security-group rule and what it allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleHits {
    pub group: String,
    /// The rule's position in its group.
    pub index: usize,
    /// The rule in one line ([`describe`]).
    pub description: String,
    pub tally: Tally,
}

impl RuleHits {
    /// `group[index] description`, as the table shows it.
    pub fn label(&self) -> String {
        format!("{}[{}] {}", self.group, self.index, self.description)
    }
}

/// Packets and bytes each rule of `state` allowed (a connection's packets count towards the
/// rules that let its first packet through), summed over CPUs (and the forwarder's workers,
/// from `fast_path`).
pub fn rule_hits(
    pin_dir: &Path,
    state: &ClusterState,
    fast_path: Option<&FastPathStatus>,
) -> Result<Vec<RuleHits>, StatusError> {
    let map = open_pinned(pin_dir, names::RULE_HITS)?;
    let error = map_error(names::RULE_HITS);
    let hits = PerCpuArray::<_, Tally>::try_from(&map).map_err(&error)?;
    policy::rule_ids(state)
        .map(|(id, group, index, rule)| {
            let per_cpu = hits.get(&id, 0).map_err(&error)?;
            let forwarder = fast_path
                .iter()
                .flat_map(|status| &status.report.workers)
                .filter_map(|worker| worker.rule_hits.get(&id))
                .map(|count| Tally {
                    packets: count.packets,
                    bytes: count.bytes,
                });
            let tally =
                per_cpu
                    .iter()
                    .copied()
                    .chain(forwarder)
                    .fold(Tally::default(), |sum, part| Tally {
                        packets: sum.packets + part.packets,
                        bytes: sum.bytes + part.bytes,
                    });
            Ok(RuleHits {
                group: group.to_owned(),
                index,
                description: describe(rule),
                tally,
            })
        })
        .collect()
}

/// A rule in one line: `ingress udp 2152 from group smf`.
pub fn describe(rule: &Rule) -> String {
    let direction = match rule.direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    let ports = rule
        .ports
        .map(|ports| format!(" {ports}"))
        .unwrap_or_default();
    let preposition = if rule.direction == Direction::Ingress {
        "from"
    } else {
        "to"
    };
    let remote = match (&rule.remote_group, &rule.remote_cidr) {
        (Some(group), _) => format!("group {group}"),
        (None, Some(cidr)) => cidr.to_string(),
        (None, None) => "anywhere".to_owned(),
    };
    format!(
        "{direction} {}{ports} {preposition} {remote}",
        rule.protocol.as_str()
    )
}

/// The conntrack table's occupancy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conntrack {
    /// Entries in the table, expired ones included.
    pub entries: usize,
    /// Entries expired under the state's timeouts, awaiting collection.
    pub expired: usize,
    /// The pinned table's size (`max_entries`).
    pub capacity: u32,
}

/// The conntrack table's occupancy under `timeouts`.
pub fn conntrack_summary(pin_dir: &Path, timeouts: &CtTimeouts) -> Result<Conntrack, StatusError> {
    let data = open_data(pin_dir, names::CONNTRACK)?;
    let error = map_error(names::CONNTRACK);
    let capacity = data.info().map_err(&error)?.max_entries();
    let map = Map::from_map_data(data).map_err(&error)?;
    let TableSummary { entries, expired } = conntrack::summarize(&map, timeouts)?;
    Ok(Conntrack {
        entries,
        expired,
        capacity,
    })
}

fn read_pinned<K: CounterKind>(pin_dir: &Path) -> Result<Vec<(K, Tally)>, StatusError> {
    Ok(datapath::read_counters(&open_pinned(
        pin_dir,
        K::MAP_NAME,
    )?)?)
}

/// The AF_XDP forwarder of a node, as its agent last reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastPathStatus {
    pub report: ForwarderReport,
    /// Whether the agent that wrote the report still runs (else the XDP programs carry the
    /// fast-path planes and the report is its last word).
    pub running: bool,
    /// Age of the report, in nanoseconds.
    pub age_ns: u64,
}

/// The forwarder's status from the agent's run directory, if the agent runs (or ran) one.
pub fn fast_path(run_dir: &Path) -> Result<Option<FastPathStatus>, StatusError> {
    let Some(report) = fastpath::read_report(run_dir)? else {
        return Ok(None);
    };
    let running = Path::new("/proc").join(report.pid.to_string()).exists();
    let age_ns = conntrack::monotonic_ns().saturating_sub(report.written_ns);
    Ok(Some(FastPathStatus {
        report,
        running,
        age_ns,
    }))
}

impl fmt::Display for FastPathStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        let planes: Vec<String> = report
            .planes
            .iter()
            .map(|vni| format!("vni {vni}"))
            .collect();
        if !self.running {
            return writeln!(
                f,
                "fast path: the AF_XDP forwarder is not running (agent pid {} is gone); the XDP \
                 programs carry {}",
                report.pid,
                planes.join(", ")
            );
        }
        writeln!(
            f,
            "fast path: AF_XDP forwarder (agent pid {}, report {:.1} s old) carries {}; UMEM on {}",
            report.pid,
            self.age_ns as f64 / 1e9,
            planes.join(", "),
            if report.huge_pages {
                "huge pages"
            } else {
                "4 KiB pages"
            }
        )?;
        for worker in &report.workers {
            let core = worker
                .core
                .map_or("unpinned".to_owned(), |core| format!("core {core}"));
            writeln!(
                f,
                "  worker {} ({core}, queue {}): {} packets in {} batches, {} UMEM frames free",
                worker.id, worker.queue, worker.packets, worker.batches, worker.free_frames
            )?;
            if let Some(failed) = &worker.failed {
                writeln!(f, "    not running: {failed}")?;
            }
            write_counts(f, "forwarded", &worker.counters)?;
            write_counts(f, "dropped", &worker.drops)?;
            for socket in &worker.sockets {
                let k = &socket.kernel;
                writeln!(
                    f,
                    "    socket {} ({:?}, queue {}): rx_dropped {}, rx_ring_full {}, \
                     fill_ring_empty {}, tx_ring_empty {}, invalid rx/tx {}/{}",
                    socket.interface,
                    socket.role,
                    socket.queue,
                    k.rx_dropped,
                    k.rx_ring_full,
                    k.rx_fill_ring_empty_descs,
                    k.tx_ring_empty_descs,
                    k.rx_invalid_descs,
                    k.tx_invalid_descs
                )?;
            }
        }
        Ok(())
    }
}

fn write_counts(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    counts: &std::collections::BTreeMap<String, Count>,
) -> fmt::Result {
    writeln!(f, "    {title:<26} {:>14} {:>16}", "packets", "bytes")?;
    if counts.is_empty() {
        writeln!(f, "      (none)")?;
    }
    for (name, count) in counts {
        writeln!(
            f,
            "      {name:<24} {:>14} {:>16}",
            count.packets, count.bytes
        )?;
    }
    Ok(())
}

/// Everything `ctpath status` shows of a node, read at one moment (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub counters: Snapshot,
    pub fast_path: Option<FastPathStatus>,
    /// Each rule's hits, when the state was given.
    pub rules: Option<Vec<RuleHits>>,
    /// The conntrack table, when the state was given (its timeouts decide what expired).
    pub conntrack: Option<Conntrack>,
}

impl NodeStatus {
    /// Reads the pins under `pin_dir` and the forwarder's report in `run_dir`; the rules'
    /// hits and the conntrack table too with the `state` the agent runs.
    pub fn read(
        pin_dir: &Path,
        run_dir: &Path,
        state: Option<&ClusterState>,
    ) -> Result<NodeStatus, StatusError> {
        let counters = Snapshot::read(pin_dir)?;
        let fast_path = fast_path(run_dir)?;
        let (rules, conntrack) = match state {
            Some(state) => (
                Some(rule_hits(pin_dir, state, fast_path.as_ref())?),
                Some(conntrack_summary(pin_dir, &state.conntrack.timeouts())?),
            ),
            None => (None, None),
        };
        Ok(NodeStatus {
            counters,
            fast_path,
            rules,
            conntrack,
        })
    }

    /// The JSON object of `ctpath status --json` (field names in the module docs).
    pub fn to_json(&self) -> serde_json::Value {
        let rules = self.rules.as_ref().map(|rules| {
            rules
                .iter()
                .map(|rule| {
                    json!({
                        "group": rule.group,
                        "index": rule.index,
                        "description": rule.description,
                        "packets": rule.tally.packets,
                        "bytes": rule.tally.bytes,
                    })
                })
                .collect::<Vec<_>>()
        });
        let conntrack = self.conntrack.map(|table| {
            json!({
                "entries": table.entries,
                "expired": table.expired,
                "capacity": table.capacity,
            })
        });
        let fast_path = self.fast_path.as_ref().map(|status| {
            let mut report = serde_json::to_value(&status.report)
                .expect("a report of plain fields always serialises");
            if let Some(object) = report.as_object_mut() {
                object.insert("running".into(), status.running.into());
                object.insert("age_seconds".into(), (status.age_ns as f64 / 1e9).into());
            }
            report
        });
        json!({
            "forwarded": tallies_json(&self.counters.events),
            "dropped": tallies_json(&self.counters.drops),
            "rules": rules,
            "conntrack": conntrack,
            "fast_path": fast_path,
        })
    }
}

/// `{name: {packets, bytes}}` for every counter of a kind.
fn tallies_json<K: CounterKind>(rows: &[(K, Tally)]) -> serde_json::Value {
    rows.iter()
        .map(|(kind, tally)| {
            (
                kind.name().to_owned(),
                json!({ "packets": tally.packets, "bytes": tally.bytes }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The table: the counters, the forwarder, the rules and conntrack; rows that are zero only
/// with `{:#}`.
impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = f.alternate();
        if all {
            write!(f, "{:#}", self.counters)?;
        } else {
            write!(f, "{}", self.counters)?;
        }
        if let Some(fast_path) = &self.fast_path {
            write!(f, "{fast_path}")?;
        }
        if let Some(rules) = &self.rules {
            writeln!(
                f,
                "{:<60} {:>14} {:>16}",
                "security-group rules", "packets", "bytes"
            )?;
            for rule in rules.iter().filter(|rule| all || rule.tally.packets != 0) {
                writeln!(
                    f,
                    "  {:<58} {:>14} {:>16}",
                    rule.label(),
                    rule.tally.packets,
                    rule.tally.bytes
                )?;
            }
        }
        if let Some(table) = &self.conntrack {
            writeln!(
                f,
                "conntrack: {} entries ({} expired, awaiting collection) of {}",
                table.entries, table.expired, table.capacity
            )?;
        }
        Ok(())
    }
}

/// Prints the counters that are not zero, or all of them with `{:#}`.
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = f.alternate();
        writeln!(f, "{:<28} {:>14} {:>16}", "forwarded", "packets", "bytes")?;
        write_rows(f, &self.events, all)?;
        writeln!(f, "{:<28} {:>14} {:>16}", "dropped", "packets", "bytes")?;
        write_rows(f, &self.drops, all)
    }
}

fn write_rows<K: CounterKind>(
    f: &mut fmt::Formatter<'_>,
    rows: &[(K, Tally)],
    all: bool,
) -> fmt::Result {
    let mut shown = 0;
    for (kind, tally) in rows.iter().filter(|(_, tally)| all || tally.packets != 0) {
        writeln!(
            f,
            "  {:<26} {:>14} {:>16}",
            kind.name(),
            tally.packets,
            tally.bytes
        )?;
        shown += 1;
    }
    if shown == 0 {
        writeln!(f, "  (none)")?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use ctpath_dataplane::forwarder::{
        port::{Role, SocketStats},
        stats::{SocketReport, WorkerReport},
    };

    use super::*;

    /// A node's reading with a known value in one slot of every part (shared with the
    /// metrics' tests).
    pub(crate) fn example() -> NodeStatus {
        let tally = |packets| Tally {
            packets,
            bytes: packets * 100,
        };
        let worker = WorkerReport {
            id: 0,
            core: Some(1),
            queue: 0,
            packets: 40,
            batches: 7,
            drops: BTreeMap::from([(
                "spoofed_ip".to_owned(),
                Count {
                    packets: 2,
                    bytes: 120,
                },
            )]),
            counters: BTreeMap::from([(
                "pod_encapsulated".to_owned(),
                Count {
                    packets: 38,
                    bytes: 3800,
                },
            )]),
            sockets: vec![SocketReport {
                interface: "eth0".to_owned(),
                role: Role::Underlay,
                queue: 0,
                kernel: SocketStats {
                    rx_ring_full: 3,
                    ..SocketStats::default()
                },
            }],
            free_frames: 4000,
            rule_hits: BTreeMap::new(),
            failed: None,
        };
        NodeStatus {
            counters: Snapshot {
                events: Counter::ALL
                    .iter()
                    .map(|&c| {
                        (
                            c,
                            if c == Counter::PodEncapsulated {
                                tally(5)
                            } else {
                                Tally::default()
                            },
                        )
                    })
                    .collect(),
                drops: DropReason::ALL
                    .iter()
                    .map(|&r| {
                        (
                            r,
                            if r == DropReason::PolicyDeniedIngress {
                                tally(3)
                            } else {
                                Tally::default()
                            },
                        )
                    })
                    .collect(),
            },
            fast_path: Some(FastPathStatus {
                report: ForwarderReport {
                    pid: 42,
                    written_ns: 0,
                    planes: vec![200],
                    huge_pages: false,
                    workers: vec![worker],
                },
                running: true,
                age_ns: 500_000_000,
            }),
            rules: Some(vec![RuleHits {
                group: "web".to_owned(),
                index: 1,
                description: "ingress tcp 8080 from group client".to_owned(),
                tally: tally(9),
            }]),
            conntrack: Some(Conntrack {
                entries: 10,
                expired: 4,
                capacity: 65536,
            }),
        }
    }

    #[test]
    fn table_shows_non_zero_rows_or_all() {
        let snapshot = Snapshot {
            events: Counter::ALL
                .iter()
                .map(|&c| (c, Tally::default()))
                .collect(),
            drops: DropReason::ALL
                .iter()
                .map(|&r| {
                    (
                        r,
                        if r == DropReason::UnknownVni {
                            Tally {
                                packets: 3,
                                bytes: 300,
                            }
                        } else {
                            Tally::default()
                        },
                    )
                })
                .collect(),
        };
        let text = snapshot.to_string();
        assert!(
            text.contains("forwarded") && text.contains("  (none)"),
            "{text}"
        );
        assert!(text.contains("unknown_vni"), "{text}");
        assert!(!text.contains("eth_truncated"), "{text}");
        assert!(format!("{snapshot:#}").contains("eth_truncated"));
        assert_eq!(snapshot.total_dropped(), 3);
        assert_eq!(
            snapshot.dropped(DropReason::UnknownVni),
            Tally {
                packets: 3,
                bytes: 300
            }
        );
    }

    #[test]
    fn json_has_every_part_under_stable_names() {
        let json = example().to_json();
        assert_eq!(
            json["forwarded"]["pod_encapsulated"],
            json!({ "packets": 5, "bytes": 500 })
        );
        assert_eq!(
            json["forwarded"]["pod_passed"],
            json!({ "packets": 0, "bytes": 0 })
        );
        assert_eq!(
            json["forwarded"].as_object().unwrap().len(),
            Counter::ALL.len()
        );
        assert_eq!(
            json["dropped"]["policy_denied_ingress"],
            json!({ "packets": 3, "bytes": 300 })
        );
        assert_eq!(
            json["dropped"].as_object().unwrap().len(),
            DropReason::ALL.len()
        );
        assert_eq!(
            json["rules"],
            json!([{
                "group": "web",
                "index": 1,
                "description": "ingress tcp 8080 from group client",
                "packets": 9,
                "bytes": 900,
            }])
        );
        assert_eq!(
            json["conntrack"],
            json!({ "entries": 10, "expired": 4, "capacity": 65536 })
        );
        let fast_path = &json["fast_path"];
        assert_eq!(fast_path["running"], json!(true));
        assert_eq!(fast_path["age_seconds"], json!(0.5));
        assert_eq!(fast_path["pid"], json!(42));
        assert_eq!(fast_path["planes"], json!([200]));
        assert_eq!(
            fast_path["workers"][0]["drops"]["spoofed_ip"],
            json!({ "packets": 2, "bytes": 120 })
        );
        assert_eq!(
            fast_path["workers"][0]["sockets"][0]["kernel"]["rx_ring_full"],
            json!(3)
        );

        let bare = NodeStatus {
            rules: None,
            conntrack: None,
            fast_path: None,
            ..example()
        }
        .to_json();
        for key in ["rules", "conntrack", "fast_path"] {
            assert_eq!(bare[key], serde_json::Value::Null, "{key}");
        }
    }

    #[test]
    fn table_has_the_rules_and_conntrack() {
        let text = example().to_string();
        assert!(
            text.contains("web[1] ingress tcp 8080 from group client")
                && text.contains("conntrack: 10 entries (4 expired, awaiting collection) of 65536")
                && text.contains("fast path: AF_XDP forwarder (agent pid 42"),
            "{text}"
        );
        let mut quiet = example();
        if let Some(rules) = &mut quiet.rules {
            rules[0].tally = Tally::default();
        }
        assert!(!quiet.to_string().contains("web[1]"));
        assert!(format!("{quiet:#}").contains("web[1]"));
    }
}
