//! What the forwarder's workers report: per worker, packets and batches received, every frame's
//! drop reason or counter (the datapath's own [`DropReason`] and [`Counter`] values), and per
//! socket the kernel's `XDP_STATISTICS`; and [`ForwarderReport`], the serialisable snapshot the
//! agent writes for `ctpath status`.
//!
//! Owns the shared counters. A worker adds a batch's counts with relaxed atomic adds once per
//! batch ([`BatchTally`]), never per packet; the socket statistics are sampled about once a
//! second, the only part behind a lock, taken outside the per-packet path.
//!
//! Panic contract: nothing here panics (a poisoned lock is read through).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
};

use ctpath_common::{Counter, DropReason, Tally};
use serde::{Deserialize, Serialize};

use super::port::{PortSpec, Role, SocketStats};
use crate::model::Counted;

/// How often a worker samples its sockets' statistics.
pub const SAMPLE_EVERY_NS: u64 = 1_000_000_000;

/// Counters of one worker, shared with the agent.
pub struct WorkerStats {
    pub id: usize,
    pub core: Option<usize>,
    pub queue: u32,
    packets: AtomicU64,
    batches: AtomicU64,
    /// Packets and bytes by [`DropReason`] index.
    drops: Vec<[AtomicU64; 2]>,
    /// Packets and bytes by [`Counter`] index.
    counters: Vec<[AtomicU64; 2]>,
    last_sample_ns: AtomicU64,
    sampled: Mutex<Sampled>,
}

#[derive(Default)]
struct Sampled {
    sockets: Vec<(PortSpec, u32)>,
    socket_stats: Vec<SocketStats>,
    free_frames: usize,
    rule_hits: Vec<Tally>,
    failed: Option<String>,
}

fn lock(mutex: &Mutex<Sampled>) -> MutexGuard<'_, Sampled> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl WorkerStats {
    pub fn new(id: usize, core: Option<usize>, queue: u32) -> WorkerStats {
        let zeros = |n: u32| {
            (0..n)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect()
        };
        WorkerStats {
            id,
            core,
            queue,
            packets: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            drops: zeros(DropReason::COUNT),
            counters: zeros(Counter::COUNT),
            last_sample_ns: AtomicU64::new(0),
            sampled: Mutex::new(Sampled::default()),
        }
    }

    /// A tally for one batch, added to the shared counters when it is finished.
    pub fn batch(&self) -> BatchTally<'_> {
        BatchTally {
            stats: self,
            drops: [Tally::default(); DropReason::COUNT as usize],
            counters: [Tally::default(); Counter::COUNT as usize],
        }
    }

    /// Whether a sample of the sockets is due at `now_ns` (and, if so, marks it taken).
    pub fn sample_due(&self, now_ns: u64) -> bool {
        let last = self.last_sample_ns.load(Ordering::Relaxed);
        if now_ns.saturating_sub(last) < SAMPLE_EVERY_NS {
            return false;
        }
        self.last_sample_ns.store(now_ns, Ordering::Relaxed);
        true
    }

    pub fn set_sockets(&self, sockets: Vec<(PortSpec, u32)>) {
        let mut sampled = lock(&self.sampled);
        sampled.socket_stats = vec![SocketStats::default(); sockets.len()];
        sampled.sockets = sockets;
    }

    pub fn set_socket_stats(&self, stats: Vec<SocketStats>, free_frames: usize) {
        let mut sampled = lock(&self.sampled);
        sampled.socket_stats = stats;
        sampled.free_frames = free_frames;
    }

    pub fn set_rule_hits(&self, hits: &[Tally]) {
        let mut sampled = lock(&self.sampled);
        sampled.rule_hits.clear();
        sampled.rule_hits.extend_from_slice(hits);
    }

    /// The worker could not start: it carries nothing, the XDP programs carry its queue.
    pub fn set_failed(&self, message: String) {
        lock(&self.sampled).failed = Some(message);
    }

    /// This worker's part of the report.
    pub fn report(&self) -> WorkerReport {
        let sampled = lock(&self.sampled);
        WorkerReport {
            id: self.id,
            core: self.core,
            queue: self.queue,
            packets: self.packets.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            drops: named(&self.drops, |i| {
                DropReason::from_index(i).map_or("unknown", DropReason::name)
            }),
            counters: named(&self.counters, |i| {
                Counter::from_index(i).map_or("unknown", Counter::name)
            }),
            sockets: sampled
                .sockets
                .iter()
                .enumerate()
                .map(|(n, (spec, queue))| SocketReport {
                    interface: spec.name.clone(),
                    role: spec.role,
                    queue: *queue,
                    kernel: sampled.socket_stats.get(n).copied().unwrap_or_default(),
                })
                .collect(),
            free_frames: sampled.free_frames,
            rule_hits: sampled
                .rule_hits
                .iter()
                .enumerate()
                .filter(|(_, tally)| tally.packets > 0)
                .map(|(rule, tally)| (rule as u32, (*tally).into()))
                .collect(),
            failed: sampled.failed.clone(),
        }
    }
}

/// The non-zero slots of a counter array, by name.
fn named(slots: &[[AtomicU64; 2]], name: impl Fn(u32) -> &'static str) -> BTreeMap<String, Count> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(index, [packets, bytes])| {
            let count = Count {
                packets: packets.load(Ordering::Relaxed),
                bytes: bytes.load(Ordering::Relaxed),
            };
            (count.packets > 0).then(|| (name(index as u32).to_owned(), count))
        })
        .collect()
}

/// One batch's counts, kept locally and added to the shared counters once.
pub struct BatchTally<'a> {
    stats: &'a WorkerStats,
    drops: [Tally; DropReason::COUNT as usize],
    counters: [Tally; Counter::COUNT as usize],
}

impl BatchTally<'_> {
    /// Counts a frame of `bytes` under what the pipeline counted it as.
    pub fn count(&mut self, counted: Counted, bytes: u64) {
        let slot = match counted {
            Counted::Drop(reason) => self.drops.get_mut(reason.index() as usize),
            Counted::Counter(counter) => self.counters.get_mut(counter.index() as usize),
        };
        if let Some(tally) = slot {
            tally.packets += 1;
            tally.bytes += bytes;
        }
    }

    /// Counts a frame of `bytes` dropped by the worker itself for `reason`.
    pub fn drop(&mut self, reason: DropReason, bytes: u64) {
        self.count(Counted::Drop(reason), bytes);
    }

    /// Adds the batch (of `received` frames) to the shared counters.
    pub fn finish(self, received: usize) {
        let add = |slots: &[[AtomicU64; 2]], tallies: &[Tally]| {
            for ([packets, bytes], tally) in slots.iter().zip(tallies) {
                if tally.packets > 0 {
                    packets.fetch_add(tally.packets, Ordering::Relaxed);
                    bytes.fetch_add(tally.bytes, Ordering::Relaxed);
                }
            }
        };
        add(&self.stats.drops, &self.drops);
        add(&self.stats.counters, &self.counters);
        if received > 0 {
            self.stats
                .packets
                .fetch_add(received as u64, Ordering::Relaxed);
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Packets and bytes, as reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl From<Tally> for Count {
    fn from(tally: Tally) -> Count {
        Count {
            packets: tally.packets,
            bytes: tally.bytes,
        }
    }
}

/// One socket in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketReport {
    pub interface: String,
    pub role: Role,
    pub queue: u32,
    pub kernel: SocketStats,
}

/// One worker in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReport {
    pub id: usize,
    pub core: Option<usize>,
    pub queue: u32,
    /// Frames received.
    pub packets: u64,
    /// Non-empty receive batches.
    pub batches: u64,
    /// By drop reason name.
    pub drops: BTreeMap<String, Count>,
    /// By counter name (what happened to the frames not dropped).
    pub counters: BTreeMap<String, Count>,
    pub sockets: Vec<SocketReport>,
    /// UMEM frames in no ring at the last sample.
    pub free_frames: usize,
    /// Packets per security-group rule id that allowed them (on this worker).
    pub rule_hits: BTreeMap<u32, Count>,
    /// Why the worker carries nothing, if it could not start.
    pub failed: Option<String>,
}

/// What `ctpath status` reads: the forwarder of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwarderReport {
    /// Agent process that wrote it.
    pub pid: u32,
    /// CLOCK_MONOTONIC when written, in nanoseconds.
    pub written_ns: u64,
    /// VNIs of the planes the forwarder carries.
    pub planes: Vec<u32>,
    pub huge_pages: bool,
    pub workers: Vec<WorkerReport>,
}
