//! `ctpath status`: a node's counters, read from the maps its agent pinned, as a table of
//! what the datapath forwarded and what it dropped, and why; with the cluster state at hand,
//! also every security-group rule's hits and the conntrack table's occupancy.

use std::{fmt, path::Path};

use aya::maps::{Map, MapData, PerCpuArray};
use ctpath_common::{
    maps::{names, CtTimeouts},
    Counter, CounterKind, DropReason, Tally,
};
use thiserror::Error;

use crate::{
    conntrack::{self, TableSummary},
    datapath::{self, DatapathError},
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

/// Packets and bytes each rule of `state` allowed, summed over CPUs, with a label per rule.
pub fn rule_hits(
    pin_dir: &Path,
    state: &ClusterState,
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
            let total = per_cpu.iter().fold(Tally::default(), |sum, cpu| Tally {
                packets: sum.packets + cpu.packets,
                bytes: sum.bytes + cpu.bytes,
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
