//! The forwarder's service translation state: the translated connections (`NAT_FLOWS`,
//! `NAT_REPLIES`) and client-IP affinities (`AFFINITY`) that the shared decision
//! (`ctpath_common::service`) keeps, cached locally over the kernel's LRU maps ([`NatMirror`]),
//! the store the XDP programs and the forwarder share, as [`super::flows`] does for conntrack:
//! a translated connection survives its plane moving between the forwarder and the programs.
//!
//! Owns: the local caches and what they publish.
//! - A local miss consults the mirror; an entry found there (made by the programs or an
//!   earlier run of the forwarder) is adopted.
//! - A new entry (a connection's first packet, a client's affinity) is written to the mirror
//!   at once; an LRU map makes room for it, as for the programs.
//! - A refresh (`last_seen_ns`) is published at most once per [`REFRESH_PUBLISH_NS`] per
//!   entry, when the entry is next used, so a busy connection costs no syscall per packet and
//!   the mirror's idle time lags by at most that and one packet (timeouts are seconds).
//! - The caches are reserved once to their capacity and never grow past it: a full cache
//!   makes room for an adopted or new entry by dropping another (the mirror keeps it, with a
//!   refresh of up to a second not yet published). [`NatCache::collect_expired`] drops the
//!   expired ones. As for [`super::flows`], std's table may rehash (and allocate) on an insert
//!   when removals' tombstones use up its spare slots.
//!
//! The decision itself is the programs' ([`ServiceTables`] over [`NatView`]): the service
//! entries and the Maglev tables come from the [`Tables`] snapshot.
//!
//! Panic contract: nothing here panics.

use std::collections::BTreeMap;

use aya::maps::{HashMap as BpfHashMap, MapData};
use foldhash::{HashMap, HashMapExt};

use ctpath_common::{
    maps::{
        ct_state, AffinityEntry, AffinityKey, CtEntry, CtKey, CtTimeouts, FlowKey, MemberKey,
        NatEntry, ServiceEntry, ServiceKey,
    },
    service::ServiceTables,
};

use super::flows::{CtMirror, FlowsError, MemoryMirror, REFRESH_PUBLISH_NS};
use super::tables::Tables;

/// Which of the kernel's two translation maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NatMap {
    /// `NAT_FLOWS`: a client's packets, to the backend.
    Flows,
    /// `NAT_REPLIES`: a backend's packets, from the service.
    Replies,
}

/// The shared translation store (the kernel's `NAT_FLOWS`, `NAT_REPLIES` and `AFFINITY`), as
/// the forwarder uses it. Stores create or replace (the maps are LRU: a store makes room); a
/// store the kernel refuses leaves the connection to choose again at its next packet, as in
/// the programs.
pub trait NatMirror {
    fn nat(&self, map: NatMap, key: &FlowKey) -> Option<NatEntry>;
    fn store_nat(&mut self, map: NatMap, key: &FlowKey, entry: &NatEntry);
    fn affinity(&self, key: &AffinityKey) -> Option<AffinityEntry>;
    fn store_affinity(&mut self, key: &AffinityKey, entry: &AffinityEntry);
}

/// Both shared stores, conntrack and translations: what a worker's pipeline is given.
pub trait Mirror: CtMirror + NatMirror {}

impl<M: CtMirror + NatMirror> Mirror for M {}

/// The conntrack mirror and the translation maps beside it: what a worker's pipeline is
/// given.
pub struct Shared<C, N> {
    pub conntrack: C,
    pub nat: N,
}

impl Shared<MemoryMirror, MemoryNat> {
    /// Both stores in memory (tests, a standalone run), conntrack of `capacity` entries.
    pub fn in_memory(capacity: u32) -> Self {
        Shared {
            conntrack: MemoryMirror::new(capacity),
            nat: MemoryNat::default(),
        }
    }
}

impl<C: CtMirror, N> CtMirror for Shared<C, N> {
    fn lookup(&self, key: &CtKey) -> Option<CtEntry> {
        self.conntrack.lookup(key)
    }

    fn insert_new(&mut self, key: &CtKey, entry: &CtEntry) -> Result<(), FlowsError> {
        self.conntrack.insert_new(key, entry)
    }

    fn update(&mut self, key: &CtKey, entry: &CtEntry) -> Result<(), FlowsError> {
        self.conntrack.update(key, entry)
    }

    fn remove(&mut self, key: &CtKey) {
        self.conntrack.remove(key)
    }
}

impl<C, N: NatMirror> NatMirror for Shared<C, N> {
    fn nat(&self, map: NatMap, key: &FlowKey) -> Option<NatEntry> {
        self.nat.nat(map, key)
    }

    fn store_nat(&mut self, map: NatMap, key: &FlowKey, entry: &NatEntry) {
        self.nat.store_nat(map, key, entry)
    }

    fn affinity(&self, key: &AffinityKey) -> Option<AffinityEntry> {
        self.nat.affinity(key)
    }

    fn store_affinity(&mut self, key: &AffinityKey, entry: &AffinityEntry) {
        self.nat.store_affinity(key, entry)
    }
}

/// A mirror lent to a pipeline (a test keeps and inspects it between pipelines).
impl<M: NatMirror> NatMirror for &mut M {
    fn nat(&self, map: NatMap, key: &FlowKey) -> Option<NatEntry> {
        (**self).nat(map, key)
    }

    fn store_nat(&mut self, map: NatMap, key: &FlowKey, entry: &NatEntry) {
        (**self).store_nat(map, key, entry)
    }

    fn affinity(&self, key: &AffinityKey) -> Option<AffinityEntry> {
        (**self).affinity(key)
    }

    fn store_affinity(&mut self, key: &AffinityKey, entry: &AffinityEntry) {
        (**self).store_affinity(key, entry)
    }
}

/// The kernel's translation maps, through aya's map syscalls.
pub struct BpfNat {
    pub flows: BpfHashMap<MapData, FlowKey, NatEntry>,
    pub replies: BpfHashMap<MapData, FlowKey, NatEntry>,
    pub affinity: BpfHashMap<MapData, AffinityKey, AffinityEntry>,
}

impl BpfNat {
    fn map(&self, map: NatMap) -> &BpfHashMap<MapData, FlowKey, NatEntry> {
        match map {
            NatMap::Flows => &self.flows,
            NatMap::Replies => &self.replies,
        }
    }
}

impl NatMirror for BpfNat {
    fn nat(&self, map: NatMap, key: &FlowKey) -> Option<NatEntry> {
        self.map(map).get(key, 0).ok()
    }

    fn store_nat(&mut self, map: NatMap, key: &FlowKey, entry: &NatEntry) {
        let map = match map {
            NatMap::Flows => &mut self.flows,
            NatMap::Replies => &mut self.replies,
        };
        // Refused (out of memory): the next packet chooses again (module doc).
        let _ = map.insert(key, entry, 0);
    }

    fn affinity(&self, key: &AffinityKey) -> Option<AffinityEntry> {
        self.affinity.get(key, 0).ok()
    }

    fn store_affinity(&mut self, key: &AffinityKey, entry: &AffinityEntry) {
        let _ = self.affinity.insert(key, entry, 0);
    }
}

/// Translation maps in memory (tests, a standalone run), never full.
#[derive(Clone, Debug, Default)]
pub struct MemoryNat {
    pub nat: BTreeMap<(NatMap, FlowKey), NatEntry>,
    pub affinity: BTreeMap<AffinityKey, AffinityEntry>,
}

impl NatMirror for MemoryNat {
    fn nat(&self, map: NatMap, key: &FlowKey) -> Option<NatEntry> {
        self.nat.get(&(map, *key)).copied()
    }

    fn store_nat(&mut self, map: NatMap, key: &FlowKey, entry: &NatEntry) {
        self.nat.insert((map, *key), *entry);
    }

    fn affinity(&self, key: &AffinityKey) -> Option<AffinityEntry> {
        self.affinity.get(key).copied()
    }

    fn store_affinity(&mut self, key: &AffinityKey, entry: &AffinityEntry) {
        self.affinity.insert(*key, *entry);
    }
}

/// A local entry and the `last_seen_ns` the mirror has of it.
#[derive(Clone, Copy, Debug)]
struct Cached<V> {
    value: V,
    published_ns: u64,
}

/// Entries that carry when they were last used.
trait LastSeen: Copy {
    fn last_seen_ns(&self) -> u64;
}

impl LastSeen for NatEntry {
    fn last_seen_ns(&self) -> u64 {
        self.last_seen_ns
    }
}

impl LastSeen for AffinityEntry {
    fn last_seen_ns(&self) -> u64 {
        self.last_seen_ns
    }
}

/// One local cache of a mirror's map, of a fixed capacity.
struct Cache<K, V> {
    entries: HashMap<K, Cached<V>>,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq + Copy, V: LastSeen> Cache<K, V> {
    fn new(capacity: usize) -> Self {
        Cache {
            entries: HashMap::with_capacity(capacity),
            capacity,
        }
    }

    /// The entry of `key`: cached, else adopted from `mirror` (`fetch`), else none. A cached
    /// entry used since it was last published is published first (`publish`), so the
    /// mirror's idle time keeps up with it.
    fn get<M>(
        &mut self,
        key: &K,
        mirror: &mut M,
        fetch: impl FnOnce(&M) -> Option<V>,
        publish: impl FnOnce(&mut M, &V),
    ) -> Option<&mut V> {
        if !self.entries.contains_key(key) {
            let value = fetch(mirror)?;
            self.stored(key, value);
        }
        let cached = self.entries.get_mut(key)?;
        let last_seen = cached.value.last_seen_ns();
        if last_seen.saturating_sub(cached.published_ns) >= REFRESH_PUBLISH_NS {
            publish(mirror, &cached.value);
            cached.published_ns = last_seen;
        }
        Some(&mut cached.value)
    }

    /// Caches `value`, as the mirror has it, making room if the cache is full.
    fn stored(&mut self, key: &K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(key) {
            if let Some(other) = self.entries.keys().next().copied() {
                self.entries.remove(&other);
            }
        }
        let published_ns = value.last_seen_ns();
        self.entries.insert(
            *key,
            Cached {
                value,
                published_ns,
            },
        );
    }

    /// Drops the entries unused for `lifetime_ns(key)` at `now_ns`; returns how many.
    fn collect(&mut self, lifetime_ns: impl Fn(&K) -> u64, now_ns: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|key, cached| {
            now_ns.saturating_sub(cached.value.last_seen_ns()) < lifetime_ns(key)
        });
        before - self.entries.len()
    }
}

/// The forwarder's local translation caches, one per shared map.
pub struct NatCache {
    flows: Cache<FlowKey, NatEntry>,
    replies: Cache<FlowKey, NatEntry>,
    affinity: Cache<AffinityKey, AffinityEntry>,
}

impl NatCache {
    /// Caches of at most `capacity` entries each.
    pub fn new(capacity: u32) -> NatCache {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        NatCache {
            flows: Cache::new(capacity),
            replies: Cache::new(capacity),
            affinity: Cache::new(capacity),
        }
    }

    fn cache(&mut self, map: NatMap) -> &mut Cache<FlowKey, NatEntry> {
        match map {
            NatMap::Flows => &mut self.flows,
            NatMap::Replies => &mut self.replies,
        }
    }

    /// Drops the translations expired at `now_ns` (the conntrack timeout of an established
    /// connection of their protocol, as the decision has them) and the affinities unused for
    /// a day, the longest affinity timeout; returns how many.
    pub fn collect_expired(&mut self, timeouts: &CtTimeouts, now_ns: u64) -> usize {
        let lifetime = |key: &FlowKey| {
            u64::from(timeouts.for_entry(key.protocol, ct_state::ESTABLISHED)) * 1_000_000_000
        };
        self.flows.collect(lifetime, now_ns)
            + self.replies.collect(lifetime, now_ns)
            + self.affinity.collect(|_| MAX_AFFINITY_TIMEOUT_NS, now_ns)
    }
}

/// The longest affinity timeout a state may give (`affinity_timeout_seconds` up to 86,400).
const MAX_AFFINITY_TIMEOUT_NS: u64 = 86_400 * 1_000_000_000;

/// The service tables as the shared decision sees them from the forwarder: the snapshot's
/// services and Maglev tables, the local caches over the mirror, at one time.
pub struct NatView<'a, M> {
    pub tables: &'a Tables,
    pub cache: &'a mut NatCache,
    pub mirror: &'a mut M,
    pub now_ns: u64,
}

impl<M: NatMirror> NatView<'_, M> {
    fn nat(&mut self, map: NatMap, key: &FlowKey) -> Option<&mut NatEntry> {
        self.cache.cache(map).get(
            key,
            &mut *self.mirror,
            |mirror| mirror.nat(map, key),
            |mirror, entry| mirror.store_nat(map, key, entry),
        )
    }

    fn store(&mut self, map: NatMap, key: &FlowKey, entry: &NatEntry) {
        self.mirror.store_nat(map, key, entry);
        self.cache.cache(map).stored(key, *entry);
    }
}

impl<M: NatMirror> ServiceTables for NatView<'_, M> {
    fn now_ns(&self) -> u64 {
        self.now_ns
    }

    fn service(&self, key: &ServiceKey) -> Option<ServiceEntry> {
        self.tables.service(key)
    }

    fn maglev_slot(&self, table: u64, large: bool, slot: usize) -> Option<[u8; 4]> {
        self.tables.maglev_slot(table, large, slot)
    }

    fn flow(&mut self, key: &FlowKey) -> Option<&mut NatEntry> {
        self.nat(NatMap::Flows, key)
    }

    fn reply(&mut self, key: &FlowKey) -> Option<&mut NatEntry> {
        self.nat(NatMap::Replies, key)
    }

    fn affinity(&mut self, key: &AffinityKey) -> Option<&mut AffinityEntry> {
        self.cache.affinity.get(
            key,
            &mut *self.mirror,
            |mirror| mirror.affinity(key),
            |mirror, entry| mirror.store_affinity(key, entry),
        )
    }

    fn is_member(&self, key: &MemberKey) -> bool {
        self.tables.is_member(key)
    }

    fn store_flow(&mut self, key: &FlowKey, entry: &NatEntry) {
        self.store(NatMap::Flows, key, entry);
    }

    fn store_reply(&mut self, key: &FlowKey, entry: &NatEntry) {
        self.store(NatMap::Replies, key, entry);
    }

    fn store_affinity(&mut self, key: &AffinityKey, entry: &AffinityEntry) {
        self.mirror.store_affinity(key, entry);
        self.cache.affinity.stored(key, *entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_tables() -> Tables {
        Tables::new(&Default::default(), Default::default(), Default::default())
    }

    fn view<'a>(
        tables: &'a Tables,
        cache: &'a mut NatCache,
        mirror: &'a mut MemoryNat,
    ) -> NatView<'a, MemoryNat> {
        NatView {
            tables,
            cache,
            mirror,
            now_ns: 0,
        }
    }

    fn entry(last_seen_ns: u64) -> NatEntry {
        NatEntry {
            last_seen_ns,
            ..NatEntry::default()
        }
    }

    #[test]
    fn a_miss_adopts_the_mirrors_entry_and_refreshes_are_published_once_a_second() {
        let key = FlowKey::default();
        let mut mirror = MemoryNat::default();
        mirror.store_nat(NatMap::Flows, &key, &entry(5));
        let (tables, mut cache) = (empty_tables(), NatCache::new(4));
        let mut view = view(&tables, &mut cache, &mut mirror);
        let adopted = view.flow(&key).expect("adopted from the mirror");
        assert_eq!(adopted.last_seen_ns, 5);
        adopted.last_seen_ns = 5 + REFRESH_PUBLISH_NS / 2;
        view.flow(&key).unwrap().last_seen_ns = 5 + REFRESH_PUBLISH_NS;
        assert_eq!(
            view.mirror.nat(NatMap::Flows, &key),
            Some(entry(5)),
            "not yet: less than a second since"
        );
        view.flow(&key);
        assert_eq!(
            view.mirror.nat(NatMap::Flows, &key),
            Some(entry(5 + REFRESH_PUBLISH_NS))
        );
        assert!(view.reply(&key).is_none(), "the other map has none");
    }

    #[test]
    fn a_full_cache_makes_room_and_stores_write_through() {
        let mut mirror = MemoryNat::default();
        let (tables, mut cache) = (empty_tables(), NatCache::new(1));
        let mut view = view(&tables, &mut cache, &mut mirror);
        let first = FlowKey::default();
        let second = FlowKey {
            src_port: 1,
            ..FlowKey::default()
        };
        view.store_flow(&first, &entry(1));
        view.store_flow(&second, &entry(2));
        assert_eq!(view.mirror.nat(NatMap::Flows, &first), Some(entry(1)));
        assert_eq!(
            view.cache.flows.entries.len(),
            1,
            "one cached, the other dropped"
        );
        // Both still found: the dropped one adopted again from the mirror.
        assert_eq!(view.flow(&first).map(|e| e.last_seen_ns), Some(1));
        assert_eq!(view.flow(&second).map(|e| e.last_seen_ns), Some(2));
        assert_eq!(
            view.cache.collect_expired(&CtTimeouts::default(), u64::MAX),
            1
        );
    }
}
