//! ctpath's XDP and tc programs. Each entry point is thin: it calls a `try_` function of its
//! hook's module and turns the error, a [`DropReason`], into a counted drop (`XDP_DROP`,
//! `TC_ACT_SHOT`).
//!
//! Hooks, each an XDP program and a tc (tcx, ingress) program built from the same code:
//! - [`pod`]: `from_pod` / `from_pod_tc`, on a pod's host-side veth: everything the pod sends.
//!   The agent attaches the tc program on planes with `datapath: tc`, XDP on the others.
//! - [`underlay`]: `from_underlay` / `from_underlay_tc`, on the node's underlay interface:
//!   VXLAN from other nodes. XDP always; tc behind it for the `tc` planes' VXLAN.
//!
//! Modules they are built from, one concern each:
//! - [`context`]: the hook's packet context behind one trait: bytes and bounds, length, head
//!   and tail, tunnel headers, redirects, verdicts.
//! - [`packet`]: bounds-checked packet access and header layouts.
//! - [`parse`]: Ethernet, ARP, IPv4, TCP, UDP and ICMP validation.
//! - [`arp`]: the ARP responder.
//! - [`vxlan`]: VXLAN encapsulation and decapsulation.
//! - [`route`]: the underlay next hop (the agent's `NEXT_HOPS` cache, else `bpf_fib_lookup`).
//! - [`icmp`]: ICMP errors sent to pods (fragmentation needed).
//! - [`spoof`]: anti-spoofing (addresses and MACs a pod owns).
//! - [`policy`]: compiled security-group rules.
//! - [`conntrack`]: connection tracking, which makes the rules stateful.
//! - [`service`]: services: a packet to a virtual IP translated to a backend, its replies
//!   translated back.
//! - [`maps`]: the maps the agent fills, with typed lookups.
//! - [`stats`]: the per-CPU drop and event counters.
//! - [`bench`]: measurement probes for `ctpath-bench` (`bench_redirect`, `bench_sink`).
#![no_std]
#![no_main]

mod arp;
mod bench;
mod conntrack;
mod context;
mod icmp;
mod maps;
mod packet;
mod parse;
mod pod;
mod policy;
mod route;
mod service;
mod spoof;
mod stats;
mod underlay;
mod vxlan;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
#[cfg(doc)]
use ctpath_common::DropReason;

/// Attached to a pod's host-side veth: sees every frame the pod sends.
#[xdp]
pub fn from_pod(ctx: XdpContext) -> u32 {
    match pod::try_from_pod(&ctx) {
        Ok(action) => action,
        Err(reason) => stats::drop(&ctx, reason),
    }
}

/// `from_pod` as a tc program (tcx ingress of a pod's host-side veth, planes with
/// `datapath: tc`).
#[classifier]
pub fn from_pod_tc(ctx: TcContext) -> i32 {
    match context::pull_headers(&ctx).and_then(|()| pod::try_from_pod(&ctx)) {
        Ok(action) => action as i32,
        Err(reason) => stats::drop(&ctx, reason) as i32,
    }
}

/// Attached to the node's underlay interface: VXLAN from other nodes, and the node's own
/// traffic, which it leaves to the kernel.
#[xdp]
pub fn from_underlay(ctx: XdpContext) -> u32 {
    match underlay::try_from_underlay(&ctx) {
        Ok(action) => action,
        Err(reason) => stats::drop(&ctx, reason),
    }
}

/// `from_underlay` as a tc program (tcx ingress of the underlay interface, behind the XDP
/// program, which hands it what it does not deliver itself: `underlay::hand_to_tc`).
#[classifier]
pub fn from_underlay_tc(ctx: TcContext) -> i32 {
    match context::pull_headers(&ctx).and_then(|()| underlay::try_from_underlay(&ctx)) {
        Ok(action) => action as i32,
        Err(reason) => stats::drop(&ctx, reason) as i32,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
