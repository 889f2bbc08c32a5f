//! The agent's side of connection tracking: the collector of expired entries, and a summary of
//! the table for `ctpath status`. The datapath treats expired entries as absent; the collector
//! only frees their slots.
//!
//! The walk runs in the agent, key by key through the map syscalls: it holds no lock the
//! datapath takes, so it never stalls forwarding, however large the table.

use aya::maps::{HashMap, Map};
use ctpath_common::maps::{names, CtEntry, CtKey, CtTimeouts};

use crate::datapath::DatapathError;

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns` (the forwarder's too).
pub use ctpath_dataplane::forwarder::cpu::monotonic_ns;

/// Entries in the table, and how many of them have expired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSummary {
    pub entries: usize,
    pub expired: usize,
}

fn map_error(source: aya::maps::MapError) -> DatapathError {
    DatapathError::Map {
        name: names::CONNTRACK,
        source,
    }
}

/// Counts the entries of the conntrack table `map`, and the expired ones.
pub fn summarize(map: &Map, timeouts: &CtTimeouts) -> Result<TableSummary, DatapathError> {
    let table = HashMap::<_, CtKey, CtEntry>::try_from(map).map_err(map_error)?;
    let now = monotonic_ns();
    let mut summary = TableSummary::default();
    for (key, entry) in table.iter().filter_map(Result::ok) {
        summary.entries += 1;
        summary.expired += usize::from(timeouts.is_expired(key.protocol, &entry, now));
    }
    Ok(summary)
}

/// Removes the expired entries of the conntrack table `map`; returns how many.
pub fn collect_expired(map: &mut Map, timeouts: &CtTimeouts) -> Result<usize, DatapathError> {
    let mut table = HashMap::<_, CtKey, CtEntry>::try_from(map).map_err(map_error)?;
    let now = monotonic_ns();
    let expired: Vec<CtKey> = table
        .iter()
        .filter_map(Result::ok)
        .filter(|(key, entry)| timeouts.is_expired(key.protocol, entry, now))
        .map(|(key, _)| key)
        .collect();
    // An entry refreshed since the walk is removed too; its connection then starts a new entry
    // through the rules, which allowed it a moment ago.
    for key in &expired {
        let _ = table.remove(key);
    }
    Ok(expired.len())
}
