//! Measurement probes for `ctpath-bench`, shipped in the same object so the bench measures
//! exactly what it loads:
//! - `bench_redirect`: redirects every frame to the interface in `BENCH_TARGET[0]`, untouched:
//!   the floor of per-packet cost of an XDP forwarding path on this machine (the "ceiling"
//!   topology).
//! - `bench_sink`: counts every frame in `BENCH_SINK[0]` and drops it: the receiver of a
//!   flood, whose cost does not depend on the path measured.
//! - `bench_sink_tc`: the same as a tc (tcx ingress) program, for frames that enter an
//!   interface as skbs without crossing its veth (`bpf_redirect_peer`), which no XDP program,
//!   native or generic, sees.

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT},
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use ctpath_common::Tally;

use crate::context::PacketContext;

#[map]
static BENCH_TARGET: Array<u32> = Array::with_max_entries(1, 0);

#[map]
static BENCH_SINK: PerCpuArray<Tally> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn bench_redirect(ctx: XdpContext) -> u32 {
    match BENCH_TARGET.get(0) {
        Some(&ifindex) if ifindex != 0 => ctx.redirect(ifindex),
        _ => xdp_action::XDP_ABORTED,
    }
}

#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    if let Some(tally) = BENCH_SINK.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a per-CPU array, valid for the whole program run.
        unsafe {
            (*tally).packets += 1;
            (*tally).bytes += PacketContext::len(&ctx);
        }
    }
    xdp_action::XDP_DROP
}

#[classifier]
pub fn bench_sink_tc(ctx: TcContext) -> i32 {
    if let Some(tally) = BENCH_SINK.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a per-CPU array, valid for the whole program run.
        unsafe {
            (*tally).packets += 1;
            (*tally).bytes += PacketContext::len(&ctx);
        }
    }
    TC_ACT_SHOT
}
