//! Maglev consistent hashing: the lookup table that spreads a service's new connections over
//! its backends (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, section 3.4).
//!
//! Owns: building the table from a set of backends ([`Maglev::build`]) and looking a hash up in
//! it ([`Maglev::lookup`]). Each backend gets a permutation of the slots, `offset`, `offset +
//! skip`, `offset + 2 * skip`, ... (mod the table size `M`, a prime, so every `skip` in
//! `1..M` visits every slot); the backends take turns, each taking the next slot of its
//! permutation that is still free, until the table is full. So every backend holds
//! `floor(M / N)` or `ceil(M / N)` slots, and a backend joining or leaving moves about its own
//! share of slots plus a small fraction of the others' (the smaller the larger `M` is against
//! `N`; the paper asks for `M > 100 * N`).
//!
//! The table depends only on the set of backend ids and `M`, not on the order they are given
//! in (they are sorted first), and is computed with a fixed hash, so the agent and any model or
//! test build the same table: `offset = h("offset", id) mod M`, `skip = h("skip", id) mod
//! (M - 1) + 1`, where `h(tag, id)` is 64-bit FNV-1a over the tag's bytes then the id's four
//! bytes big-endian, followed by MurmurHash3's `fmix64` finalizer: ids such as consecutive
//! addresses differ in their last byte, which FNV-1a's last step only multiplies by its prime,
//! so without a finalizer the offsets and skips of neighbouring ids would be related.
//!
//! Nothing here panics. Building allocates `M` slots and takes `O(M log M)` steps on average
//! (the paper's figure; `O(M^2)` at worst, with `N` close to `M`).

use thiserror::Error;

/// A table size for a service of up to 655 backends (more than 100 slots each): the prime the
/// paper evaluates, and Katran's default. (Not used by the datapath yet, which does not carry
/// services: docs/decisions/services.md sizes each service's table by its backends.)
pub const TABLE_SIZE: usize = 65_537;

/// A backend, by an identity that stays the same while other backends come and go (its
/// IPv4 address on the service's plane, say): the table is consistent only if a backend
/// keeps its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendId(pub u32);

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MaglevError {
    #[error("table size {0} is not a prime (a skip would not visit every slot)")]
    SizeNotPrime(usize),
    #[error("{backends} backends do not fit a table of {table_size} slots")]
    TooManyBackends { backends: usize, table_size: usize },
    #[error("backend {} is given twice", .0 .0)]
    DuplicateBackend(BackendId),
}

/// One service's lookup table: slot to backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    /// Empty when there are no backends; else `table_size` slots, every one taken.
    slots: Vec<BackendId>,
}

impl Maglev {
    /// The table of `backends` (in any order, each once) with `table_size` slots, a prime of
    /// at least the number of backends; [`TABLE_SIZE`] is the datapath's. No backends make an
    /// empty table, in which every lookup finds none.
    pub fn build(backends: &[BackendId], table_size: usize) -> Result<Maglev, MaglevError> {
        if !is_prime(table_size) {
            return Err(MaglevError::SizeNotPrime(table_size));
        }
        if backends.len() > table_size {
            return Err(MaglevError::TooManyBackends {
                backends: backends.len(),
                table_size,
            });
        }
        let mut sorted = backends.to_vec();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(MaglevError::DuplicateBackend(pair[0]));
        }
        if sorted.is_empty() {
            return Ok(Maglev { slots: Vec::new() });
        }

        let size = table_size as u64;
        // Per backend: the next slot of its permutation, and its step.
        let mut walks: Vec<(u64, u64)> = sorted
            .iter()
            .map(|&id| {
                let offset = hash(b"offset", id) % size;
                let skip = hash(b"skip", id) % (size - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut slots: Vec<Option<BackendId>> = vec![None; table_size];
        let mut filled = 0;
        'fill: loop {
            for (&id, (next, skip)) in sorted.iter().zip(walks.iter_mut()) {
                // Ends: the permutation visits every slot and one is still free.
                loop {
                    let slot = *next as usize;
                    *next = (*next + *skip) % size;
                    if slots[slot].is_none() {
                        slots[slot] = Some(id);
                        filled += 1;
                        break;
                    }
                }
                if filled == table_size {
                    break 'fill;
                }
            }
        }
        Ok(Maglev {
            slots: slots.into_iter().flatten().collect(),
        })
    }

    /// The backend of a connection whose hash is `hash` (slot `hash mod M`); none when the
    /// table has no backends.
    pub fn lookup(&self, hash: u64) -> Option<BackendId> {
        let size = self.slots.len() as u64;
        if size == 0 {
            return None;
        }
        Some(self.slots[(hash % size) as usize])
    }

    /// The backend of every slot, in slot order (empty without backends): what the datapath's
    /// map of the service holds.
    pub fn slots(&self) -> &[BackendId] {
        &self.slots
    }
}

fn is_prime(n: usize) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// `fmix64(fnv1a64(tag ++ id as big-endian bytes))`: see the module docs.
fn hash(tag: &[u8], id: BackendId) -> u64 {
    fmix64(fnv1a64(tag.iter().chain(&id.0.to_be_bytes())))
}

fn fnv1a64<'b>(bytes: impl IntoIterator<Item = &'b u8>) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// MurmurHash3's 64-bit finalizer.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A smaller prime than [`TABLE_SIZE`], for the tests that build many tables.
    const SMALL_SIZE: usize = 4_093;

    /// Backend ids like the addresses of pods on a plane: 10.244.1.2, 10.244.1.3, ...
    fn backends(count: u32) -> Vec<BackendId> {
        (0..count)
            .map(|i| BackendId(u32::from_be_bytes([10, 244, 1, 2]) + i))
            .collect()
    }

    fn build(backends: &[BackendId], size: usize) -> Maglev {
        Maglev::build(backends, size).unwrap()
    }

    fn shares(table: &Maglev) -> BTreeMap<BackendId, usize> {
        let mut shares = BTreeMap::new();
        for &id in table.slots() {
            *shares.entry(id).or_default() += 1;
        }
        shares
    }

    /// Slots whose backend differs between the tables and was not `except` in either.
    fn moved_between_others(a: &Maglev, b: &Maglev, except: BackendId) -> usize {
        a.slots()
            .iter()
            .zip(b.slots())
            .filter(|(x, y)| x != y && **x != except && **y != except)
            .count()
    }

    #[test]
    fn every_backend_holds_floor_or_ceil_of_its_share() {
        for size in [SMALL_SIZE, TABLE_SIZE] {
            for count in [1, 2, 3, 7, 10, 64, 100] {
                let table = build(&backends(count), size);
                assert_eq!(table.slots().len(), size);
                let shares = shares(&table);
                assert_eq!(shares.len(), count as usize, "every backend has slots");
                let low = size / count as usize;
                let high = size.div_ceil(count as usize);
                for (id, share) in shares {
                    assert!(
                        (low..=high).contains(&share),
                        "M={size} N={count}: {id:?} holds {share}, not {low}..={high}"
                    );
                }
            }
        }
    }

    /// Table size, backends, and the percentage of the table that may move between backends
    /// other than the one leaving or joining. Measured: about 0.2 % at M = 65537 with 10
    /// backends, 0.6 % with 100, 1.3 % at M = 4093 with 10.
    const CHURN_BOUNDS: [(usize, u32, usize); 3] = [
        (TABLE_SIZE, 10, 1),
        (TABLE_SIZE, 100, 1),
        (SMALL_SIZE, 10, 2),
    ];

    #[test]
    fn a_backend_leaving_moves_its_own_slots_and_few_others() {
        for (size, count, percent) in CHURN_BOUNDS {
            let all = backends(count);
            let before = build(&all, size);
            for leaving in [0, count as usize / 2, count as usize - 1] {
                let gone = all[leaving];
                let rest: Vec<BackendId> = all.iter().copied().filter(|&id| id != gone).collect();
                let after = build(&rest, size);
                assert!(!after.slots().contains(&gone));
                let moved = moved_between_others(&before, &after, gone);
                assert!(
                    moved * 100 < size * percent,
                    "M={size} N={count}: {moved} slots moved between remaining backends"
                );
            }
        }
    }

    #[test]
    fn a_backend_joining_takes_its_share_from_every_other() {
        for (size, count, percent) in CHURN_BOUNDS {
            let all = backends(count + 1);
            let (old, new) = (&all[..count as usize], all[count as usize]);
            let before = build(old, size);
            let after = build(&all, size);
            let taken = after.slots().iter().filter(|&&id| id == new).count();
            assert!(taken >= size / all.len(), "the newcomer holds its share");
            let moved = moved_between_others(&before, &after, new);
            assert!(
                moved * 100 < size * percent,
                "M={size} N={count}: {moved} slots moved between the old backends"
            );
            // Every old backend gave the newcomer slots, and each is down by its fair part
            // (what it held less what it holds now, M / N - M / (N + 1)), give or take one.
            let (shares_before, shares_after) = (shares(&before), shares(&after));
            let fair = size as f64 / count as f64 - size as f64 / (count + 1) as f64;
            for &id in old {
                let gave = before
                    .slots()
                    .iter()
                    .zip(after.slots())
                    .filter(|(b, a)| **b == id && **a == new)
                    .count();
                assert!(gave > 0, "M={size} N={count}: {id:?} gave no slot");
                let down = shares_before[&id] as f64 - shares_after[&id] as f64;
                assert!(
                    (down - fair).abs() < 2.0,
                    "M={size} N={count}: {id:?} is down {down} slots, fair is {fair}"
                );
            }
        }
    }

    #[test]
    fn the_table_depends_on_the_set_not_the_order() {
        let sorted = backends(13);
        let mut shuffled = sorted.clone();
        shuffled.reverse();
        shuffled.swap(2, 9);
        assert_eq!(build(&shuffled, SMALL_SIZE), build(&sorted, SMALL_SIZE));
    }

    #[test]
    fn the_hash_and_the_table_are_pinned() {
        // FNV-1a 64 test vectors (Fowler, Noll, Vo).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // A change of the hash or the fill changes every table: models would disagree.
        let table = build(&[BackendId(1), BackendId(2), BackendId(3)], 13);
        let ids: Vec<u32> = table.slots().iter().map(|id| id.0).collect();
        assert_eq!(ids, PINNED);
    }

    const PINNED: [u32; 13] = [2, 2, 1, 3, 3, 2, 1, 1, 2, 3, 3, 1, 1];

    proptest::proptest! {
        #[test]
        fn any_set_is_balanced_whatever_its_order(
            ids in proptest::collection::btree_set(proptest::prelude::any::<u32>(), 1..40),
            rotate in 0..40usize,
        ) {
            let sorted: Vec<BackendId> = ids.into_iter().map(BackendId).collect();
            let mut reordered = sorted.clone();
            reordered.reverse();
            reordered.rotate_left(rotate % sorted.len());
            let table = build(&reordered, SMALL_SIZE);
            proptest::prop_assert_eq!(&table, &build(&sorted, SMALL_SIZE));
            let shares = shares(&table);
            proptest::prop_assert_eq!(shares.len(), sorted.len());
            let (low, high) = (SMALL_SIZE / sorted.len(), SMALL_SIZE.div_ceil(sorted.len()));
            proptest::prop_assert!(shares.values().all(|share| (low..=high).contains(share)));
        }
    }

    #[test]
    fn lookup_is_the_slot_of_the_hash_mod_the_size() {
        let table = build(&backends(5), SMALL_SIZE);
        for hash in [0, 1, 4_092, 4_093, u64::MAX, 0x1234_5678_9abc_def0] {
            assert_eq!(
                table.lookup(hash),
                Some(table.slots()[(hash % SMALL_SIZE as u64) as usize])
            );
        }
        let empty = build(&[], SMALL_SIZE);
        assert!(empty.slots().is_empty());
        assert_eq!(empty.lookup(7), None);
    }

    #[test]
    fn sizes_and_backend_lists_that_cannot_make_a_table() {
        assert_eq!(
            Maglev::build(&backends(2), 4_096),
            Err(MaglevError::SizeNotPrime(4_096))
        );
        for size in [0, 1, 65_535] {
            assert_eq!(
                Maglev::build(&backends(2), size),
                Err(MaglevError::SizeNotPrime(size))
            );
        }
        assert_eq!(
            Maglev::build(&backends(8), 7),
            Err(MaglevError::TooManyBackends {
                backends: 8,
                table_size: 7
            })
        );
        assert!(Maglev::build(&backends(7), 7).is_ok());
        let twice = [BackendId(9), BackendId(4), BackendId(9)];
        let error = Maglev::build(&twice, 7).unwrap_err();
        assert_eq!(error, MaglevError::DuplicateBackend(BackendId(9)));
        assert_eq!(error.to_string(), "backend 9 is given twice");
    }
}
