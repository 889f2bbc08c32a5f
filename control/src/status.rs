//! `ctpath status`: a node's counters, read from the maps its agent pinned, as a table of
//! what the datapath forwarded and what it dropped, and why; with the cluster state at hand,
//! also every security-group rule's hits and the conntrack table's occupancy; and, on a node
//! with fast-path planes, what the AF_XDP forwarder did, from the report its agent writes.

use std::{fmt, path::Path};

use aya::maps::{Map, MapData, PerCpuArray};
use ctpath_common::{
    maps::{names, CtTimeouts},
    Counter, CounterKind, DropReason, Tally,
};
use thiserror::Error;

use ctpath_dataplane::forwarder::stats::{Count, ForwarderReport};

use crate::{
    conntrack::{self, TableSummary},
    datapath::{self, DatapathError},
    fastpath::{self, FastPathError},
    policy,
    state::{ClusterState, Direction, Rule},
};

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("no pinned map {path}: is the agent running (in this mount namespace)? {source}")]
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
fn open_pinned(pin_dir: &Path, name: &'static str) -> Result<Map, StatusError> {
    let path = pin_dir.join(name);
    let data = MapData::from_pin(&path).map_err(|source| StatusError::NotPinned {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Map::from_map_data(data).map_err(|source| DatapathError::Map { name, source })?)
}

/// Packets and bytes each rule of `state` allowed, summed over CPUs (and the forwarder's
/// workers, from `fast_path`), with a label per rule.
pub fn rule_hits(
    pin_dir: &Path,
    state: &ClusterState,
    fast_path: Option<&FastPathStatus>,
) -> Result<Vec<(String, Tally)>, StatusError> {
    let map = open_pinned(pin_dir, names::RULE_HITS)?;
    let error = |source| DatapathError::Map {
        name: names::RULE_HITS,
        source,
    };
    let hits = PerCpuArray::<_, Tally>::try_from(&map).map_err(error)?;
    policy::rule_ids(state)
        .map(|(id, group, index, rule)| {
            let per_cpu = hits.get(&id, 0).map_err(error)?;
            let forwarder = fast_path
                .iter()
                .flat_map(|status| &status.report.workers)
                .filter_map(|worker| worker.rule_hits.get(&id))
                .map(|count| Tally {
                    packets: count.packets,
                    bytes: count.bytes,
                });
            let total =
                per_cpu
                    .iter()
                    .copied()
                    .chain(forwarder)
                    .fold(Tally::default(), |sum, part| Tally {
                        packets: sum.packets + part.packets,
                        bytes: sum.bytes + part.bytes,
                    });
            Ok((format!("{group}[{index}] {}", describe(rule)), total))
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

/// The conntrack table's occupancy under `timeouts`.
pub fn conntrack_summary(
    pin_dir: &Path,
    timeouts: &CtTimeouts,
) -> Result<TableSummary, StatusError> {
    Ok(conntrack::summarize(
        &open_pinned(pin_dir, names::CONNTRACK)?,
        timeouts,
    )?)
}

fn read_pinned<K: CounterKind>(pin_dir: &Path) -> Result<Vec<(K, Tally)>, StatusError> {
    let path = pin_dir.join(K::MAP_NAME);
    let data = MapData::from_pin(&path).map_err(|source| StatusError::NotPinned {
        path: path.display().to_string(),
        source,
    })?;
    let map = Map::from_map_data(data).map_err(|source| DatapathError::Map {
        name: K::MAP_NAME,
        source,
    })?;
    Ok(datapath::read_counters(&map)?)
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
mod tests {
    use super::*;

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
}
