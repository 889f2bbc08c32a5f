//! The datapath's counters: per-CPU arrays of [`Tally`] indexed by [`DropReason`] and
//! [`Counter`]. Per-CPU, so the hot path needs no atomics; userspace sums the CPUs.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use ctpath_common::{Counter, DropReason, Tally};

use crate::context::PacketContext;

#[map]
static DROPS: PerCpuArray<Tally> = PerCpuArray::with_max_entries(DropReason::COUNT, 0);

#[map]
static COUNTERS: PerCpuArray<Tally> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[inline(always)]
fn add(map: &PerCpuArray<Tally>, index: u32, bytes: u64) {
    if let Some(tally) = map.get_ptr_mut(index) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array, valid for the whole program
        // run; no other context writes this CPU's slot while this program runs.
        unsafe {
            (*tally).packets += 1;
            (*tally).bytes += bytes;
        }
    }
}

/// Counts the frame in `ctx` under `counter`.
#[inline(always)]
pub fn count<C: PacketContext>(ctx: &C, counter: Counter) {
    add(&COUNTERS, counter.index(), ctx.len());
}

/// Counts the frame in `ctx` as dropped for `reason` and returns the hook's drop verdict.
#[inline(always)]
pub fn drop<C: PacketContext>(ctx: &C, reason: DropReason) -> u32 {
    add(&DROPS, reason.index(), ctx.len());
    C::DROP
}
