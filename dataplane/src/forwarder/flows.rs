//! The forwarder's connection tracking: a local table of `ctpath_common::maps::{CtKey,
//! CtEntry}` that the shared decision (`ctpath_common::conntrack::admit`) runs over, backed by
//! the kernel's `CONNTRACK` map ([`CtMirror`]), the store the XDP path and the forwarder share.
//!
//! Owns: the local table and what it publishes. The table is a `HashMap` (foldhash, randomly
//! seeded per table, so senders cannot pick colliding flow keys) reserved once to
//! the state's `conntrack.max_entries` and never grown past it, so the packet path does not
//! allocate; each entry remembers when it was last published.
//!
//! Consistency with the XDP path. A plane moves between the XDP programs and the forwarder
//! when the forwarder starts or stops (its sockets bound or not), and its connections must
//! survive the move. So the mirror is the shared truth and the local table a cache of it:
//! - on a local miss the mirror is consulted, and an entry found there (made by the XDP path,
//!   or by an earlier run of the forwarder) is adopted, expired or not: `admit` then treats an
//!   expired one as absent and overwrites it in place (`BPF_ANY`), as the kernel does;
//! - a new entry goes into the mirror first (`BPF_NOEXIST`): the mirror's capacity decides
//!   `conntrack_full`, exactly as for the programs; an entry found there instead (made by the
//!   XDP path meanwhile) is adopted and the connection is tracked;
//! - a change of state, rules or generation is published at once; a plain refresh
//!   (`last_seen_ns` only) at most once per [`REFRESH_PUBLISH_NS`] per entry, so a busy
//!   connection costs no syscall per packet, and the mirror's idle time lags the truth by at
//!   most that (timeouts are seconds to days);
//! - a removal (a connection cut by a rule change) is published at once;
//! - expired entries are dropped locally by [`Flows::collect_expired`], called periodically by
//!   the worker; the agent's collector frees the mirror's.
//!
//! Caveat: while a plane is moving, a packet of one connection may be handled by the XDP path
//! after the forwarder cached the entry; the cache does not see that update (of a refresh or a
//! state change) until the forwarder writes its own, and then the last writer wins, as between
//! two CPUs of the XDP path. A local table filled to capacity adopts nothing more until the
//! collector makes room: such connections are still decided (by the mirror's `BPF_NOEXIST`),
//! but their state is not advanced by the forwarder. And std's table rehashes when removals'
//! tombstones use up its spare slots: holding more than half its bucket capacity (between half
//! and all of `capacity`, depending on rounding), that rehash allocates a bigger table. So a
//! table kept near full under churn may allocate on an insert; reserving twice `capacity`
//! would rule that out at twice the memory.
//!
//! Panic contract: nothing here panics.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use ctpath_common::{
    conntrack::{Change, CtTable, InsertError, BPF_ANY, BPF_NOEXIST, EEXIST},
    maps::{CtEntry, CtKey, CtTimeouts},
};
use thiserror::Error;

/// A refresh of an entry (its `last_seen_ns` only) is published at most this often.
pub const REFRESH_PUBLISH_NS: u64 = 1_000_000_000;

#[derive(Debug, Error)]
pub enum FlowsError {
    #[error("conntrack entry {0:?} exists already")]
    Exists(CtKey),
    #[error("conntrack table is full: no room for {0:?}")]
    Full(CtKey),
    #[error("conntrack map refused the entry {key:?}: {source}")]
    Map {
        key: CtKey,
        #[source]
        source: MapError,
    },
}

/// The shared conntrack store (the kernel's `CONNTRACK` map), as the forwarder uses it.
pub trait CtMirror {
    fn lookup(&self, key: &CtKey) -> Option<CtEntry>;
    /// Stores a new entry only where there is none (`BPF_NOEXIST`): [`FlowsError::Exists`]
    /// if there is one; any other error means no room.
    fn insert_new(&mut self, key: &CtKey, entry: &CtEntry) -> Result<(), FlowsError>;
    /// Creates or replaces the entry (`BPF_ANY`).
    fn update(&mut self, key: &CtKey, entry: &CtEntry) -> Result<(), FlowsError>;
    fn remove(&mut self, key: &CtKey);
}

/// A mirror lent to a pipeline (a test keeps and inspects it between pipelines).
impl<M: CtMirror> CtMirror for &mut M {
    fn lookup(&self, key: &CtKey) -> Option<CtEntry> {
        (**self).lookup(key)
    }

    fn insert_new(&mut self, key: &CtKey, entry: &CtEntry) -> Result<(), FlowsError> {
        (**self).insert_new(key, entry)
    }

    fn update(&mut self, key: &CtKey, entry: &CtEntry) -> Result<(), FlowsError> {
        (**self).update(key, entry)
    }

    fn remove(&mut self, key: &CtKey) {
        (**self).remove(key)
    }
}

/// The kernel's `CONNTRACK` map as the mirror, through aya's map syscalls.
pub struct BpfMirror {
    map: BpfHashMap<MapData, CtKey, CtEntry>,
}

impl BpfMirror {
    pub fn new(map: BpfHashMap<MapData, CtKey, CtEntry>) -> BpfMirror {
        BpfMirror { map }
    }

    /// The map itself (to read or clear it).
    pub fn map_mut(&mut self) -> &mut BpfHashMap<MapData, CtKey, CtEntry> {
        &mut self.map
    }

    fn write(&mut self, key: &CtKey, entry: &CtEntry, flags: u64) -> Result<(), FlowsError> {
        self.map
            .insert(key, entry, flags)
            .map_err(|source| match &source {
                MapError::SyscallError(error) if error.io_error.raw_os_error() == Some(EEXIST) => {
                    FlowsError::Exists(*key)
                }
                _ => FlowsError::Map { key: *key, source },
            })
    }
}

impl CtMirror for BpfMirror {
    fn lookup(&self, key: &CtKey) -> Option<CtEntry> {
        self.map.get(key, 0).ok()
    }

    fn insert_new(&mut self, key: &CtKey, entry: &CtEntry) -> Result<(), FlowsError> {
        self.write(key, entry, BPF_NOEXIST)
    }

    fn update(&mut self, key: &CtKey, entry: &CtEntry) -> Result<(), FlowsError> {
        self.write(key, entry, BPF_ANY)
    }

    fn remove(&mut self, key: &CtKey) {
        // Absent already (collected by the agent) is as good as removed.
        let _ = self.map.remove(key);
    }
}

/// A mirror in memory, of a fixed capacity: a forwarder without the kernel's map (tests, a
/// standalone run), whose connections then do not survive a move to the XDP path.
#[derive(Clone, Debug, Default)]
pub struct MemoryMirror {
    entries: BTreeMap<CtKey, CtEntry>,
    capacity: usize,
    writes: usize,
}

impl MemoryMirror {
    pub fn new(capacity: u32) -> MemoryMirror {
        MemoryMirror {
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            ..MemoryMirror::default()
        }
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> &BTreeMap<CtKey, CtEntry> {
        &self.entries
    }

    /// How many times an entry was written (created, replaced or refreshed).
    pub fn writes(&self) -> usize {
        self.writes
    }
}

impl CtMirror for MemoryMirror {
    fn lookup(&self, key: &CtKey) -> Option<CtEntry> {
        self.entries.get(key).copied()
    }

    fn insert_new(&mut self, key: &CtKey, entry: &CtEntry) -> Result<(), FlowsError> {
        if self.entries.contains_key(key) {
            return Err(FlowsError::Exists(*key));
        }
        self.update(key, entry)
    }

    fn update(&mut self, key: &CtKey, entry: &CtEntry) -> Result<(), FlowsError> {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(key) {
            return Err(FlowsError::Full(*key));
        }
        self.writes += 1;
        self.entries.insert(*key, *entry);
        Ok(())
    }

    fn remove(&mut self, key: &CtKey) {
        self.entries.remove(key);
    }
}

/// A local entry and when it was last written to the mirror.
#[derive(Clone, Copy, Debug)]
struct Cached {
    entry: CtEntry,
    published_ns: u64,
}

/// The forwarder's conntrack table over a mirror `M`.
pub struct Flows<M> {
    entries: HashMap<CtKey, Cached>,
    capacity: usize,
    mirror: M,
}

impl<M: CtMirror> Flows<M> {
    /// A table of at most `capacity` entries (the mirror's size) over `mirror`.
    pub fn new(capacity: u32, mirror: M) -> Flows<M> {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Flows {
            entries: HashMap::with_capacity(capacity),
            capacity,
            mirror,
        }
    }

    /// The mirror (the forwarder's other shared maps go through it too).
    pub fn mirror_mut(&mut self) -> &mut M {
        &mut self.mirror
    }

    /// The table as [`admit`](ctpath_common::conntrack::admit) uses it, at time `now_ns`.
    pub fn at(&mut self, now_ns: u64) -> FlowsAt<'_, M> {
        FlowsAt {
            flows: self,
            now_ns,
        }
    }

    /// Every local entry, expired ones included until collected.
    pub fn iter(&self) -> impl Iterator<Item = (&CtKey, &CtEntry)> {
        self.entries
            .iter()
            .map(|(key, cached)| (key, &cached.entry))
    }

    /// Drops the local entries expired at `now_ns`; returns how many.
    pub fn collect_expired(&mut self, timeouts: &CtTimeouts, now_ns: u64) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|key, cached| !timeouts.is_expired(key.protocol, &cached.entry, now_ns));
        before - self.entries.len()
    }

    /// Caches `entry` under `key` if there is room (or the key is cached already).
    fn cache(&mut self, key: &CtKey, entry: CtEntry) {
        if self.entries.len() < self.capacity || self.entries.contains_key(key) {
            let published_ns = entry.last_seen_ns;
            self.entries.insert(
                *key,
                Cached {
                    entry,
                    published_ns,
                },
            );
        }
    }
}

/// [`Flows`] at one instant: the [`CtTable`] of one packet.
pub struct FlowsAt<'a, M> {
    flows: &'a mut Flows<M>,
    now_ns: u64,
}

impl<M: CtMirror> CtTable for FlowsAt<'_, M> {
    fn now_ns(&self) -> u64 {
        self.now_ns
    }

    fn entry(&mut self, key: &CtKey) -> Option<&mut CtEntry> {
        let flows = &mut *self.flows;
        if !flows.entries.contains_key(key) {
            let adopted = flows.mirror.lookup(key)?;
            flows.cache(key, adopted);
        }
        flows.entries.get_mut(key).map(|cached| &mut cached.entry)
    }

    fn insert(&mut self, key: &CtKey, entry: &CtEntry, replace: bool) -> Result<(), InsertError> {
        let flows = &mut *self.flows;
        let published = if replace {
            flows.mirror.update(key, entry)
        } else {
            flows.mirror.insert_new(key, entry)
        };
        match published {
            Ok(()) => {
                flows.cache(key, *entry);
                Ok(())
            }
            Err(FlowsError::Exists(_)) => {
                // Made by the XDP path meanwhile: that entry is the connection's.
                if let Some(theirs) = flows.mirror.lookup(key) {
                    flows.cache(key, theirs);
                }
                Err(InsertError::Exists)
            }
            Err(_) => Err(InsertError::Full),
        }
    }

    fn remove(&mut self, key: &CtKey) {
        self.flows.entries.remove(key);
        self.flows.mirror.remove(key);
    }

    fn written(&mut self, key: &CtKey, change: Change) {
        let flows = &mut *self.flows;
        let Some(cached) = flows.entries.get_mut(key) else {
            return;
        };
        let since = cached
            .entry
            .last_seen_ns
            .saturating_sub(cached.published_ns);
        if change == Change::Changed || since >= REFRESH_PUBLISH_NS {
            // A refused update (the mirror full after the agent's collector raced us) leaves
            // the local entry in force; the next change or refresh tries again.
            if flows.mirror.update(key, &cached.entry).is_ok() {
                cached.published_ns = cached.entry.last_seen_ns;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ctpath_common::{flow::ct_key, maps::ct_state};

    use super::*;

    fn key(port: u16) -> CtKey {
        ct_key(1, 17, [10, 0, 0, 1], [10, 0, 0, 2], port, 80).0
    }

    fn entry(last_seen_ns: u64) -> CtEntry {
        CtEntry {
            last_seen_ns,
            generation: 1,
            state: ct_state::NEW,
            ..CtEntry::default()
        }
    }

    fn mirror(capacity: u32) -> MemoryMirror {
        MemoryMirror::new(capacity)
    }

    #[test]
    fn new_entries_go_to_the_mirror_first_and_its_capacity_decides() {
        let mut shared = mirror(1);
        let mut flows = Flows::new(1, &mut shared);
        assert_eq!(flows.at(5).insert(&key(1), &entry(5), false), Ok(()));
        assert_eq!(
            flows.at(5).insert(&key(2), &entry(5), false),
            Err(InsertError::Full)
        );
        assert_eq!(flows.iter().count(), 1);
        drop(flows);
        assert_eq!(shared.entries.keys().collect::<Vec<_>>(), vec![&key(1)]);
    }

    #[test]
    fn entries_of_the_xdp_path_are_adopted() {
        let mut shared = mirror(4);
        shared.entries.insert(key(1), entry(7));
        let mut flows = Flows::new(4, &mut shared);
        assert_eq!(flows.at(8).entry(&key(1)).copied(), Some(entry(7)));
        assert_eq!(flows.at(8).entry(&key(2)), None);
        // Made by the XDP path between our lookup and our insert: theirs is kept.
        flows.mirror.entries.insert(key(3), entry(1));
        assert_eq!(
            flows.at(8).insert(&key(3), &entry(8), false),
            Err(InsertError::Exists)
        );
        assert_eq!(flows.at(8).entry(&key(3)).copied(), Some(entry(1)));
    }

    #[test]
    fn changes_publish_at_once_and_refreshes_once_a_second() {
        let mut shared = mirror(4);
        let mut flows = Flows::new(4, &mut shared);
        flows.at(0).insert(&key(1), &entry(0), false).unwrap();
        let writes = flows.mirror.writes;
        for now in [1, REFRESH_PUBLISH_NS / 2, REFRESH_PUBLISH_NS - 1] {
            let mut table = flows.at(now);
            table.entry(&key(1)).unwrap().last_seen_ns = now;
            table.written(&key(1), Change::Refreshed);
        }
        assert_eq!(flows.mirror.writes, writes, "refreshes within a second");
        let mut table = flows.at(REFRESH_PUBLISH_NS);
        table.entry(&key(1)).unwrap().last_seen_ns = REFRESH_PUBLISH_NS;
        table.written(&key(1), Change::Refreshed);
        assert_eq!(flows.mirror.writes, writes + 1);
        let mut table = flows.at(REFRESH_PUBLISH_NS + 1);
        table.entry(&key(1)).unwrap().state = ct_state::ESTABLISHED;
        table.written(&key(1), Change::Changed);
        assert_eq!(flows.mirror.writes, writes + 2);
        assert_eq!(flows.mirror.entries[&key(1)].state, ct_state::ESTABLISHED);
        flows.at(0).remove(&key(1));
        assert!(flows.mirror.entries.is_empty() && flows.iter().next().is_none());
    }

    #[test]
    fn expired_entries_are_collected_locally() {
        let timeouts = CtTimeouts::default();
        let mut flows = Flows::new(4, mirror(4));
        flows.at(0).insert(&key(1), &entry(0), false).unwrap();
        let later = u64::from(timeouts.udp) * 1_000_000_000;
        flows
            .at(later)
            .insert(&key(2), &entry(later), false)
            .unwrap();
        assert_eq!(flows.collect_expired(&timeouts, later), 1);
        assert_eq!(
            flows.iter().map(|(key, _)| *key).collect::<Vec<_>>(),
            vec![key(2)]
        );
    }
}
