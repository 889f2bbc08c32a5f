//! ctpath's XDP programs. Each entry point is thin: it calls a `try_` function of its hook's
//! module and turns the error, a [`DropReason`], into a counted `XDP_DROP`.
//!
//! Hooks:
//! - [`pod`]: `from_pod`, on a pod's host-side veth: everything the pod sends.
//! - [`underlay`]: `from_underlay`, on the node's underlay interface: VXLAN from other nodes.
//!
//! Modules they are built from, one concern each:
//! - [`packet`]: bounds-checked packet access, header layouts, growing and shrinking frames.
//! - [`parse`]: Ethernet, ARP, IPv4, TCP, UDP and ICMP validation.
//! - [`arp`]: the ARP responder.
//! - [`vxlan`]: VXLAN encapsulation and decapsulation.
//! - [`route`]: the underlay next hop (`bpf_fib_lookup`).
//! - [`icmp`]: ICMP errors sent to pods (fragmentation needed).
//! - [`spoof`]: anti-spoofing (addresses and MACs a pod owns).
//! - [`policy`]: compiled security-group rules.
//! - [`conntrack`]: connection tracking, which makes the rules stateful.
//! - [`maps`]: the maps the agent fills, with typed lookups.
//! - [`stats`]: the per-CPU drop and event counters.
//! - [`bench`]: measurement probes for `ctpath-bench` (`bench_redirect`, `bench_sink`).
#![no_std]
#![no_main]

mod arp;
mod bench;
mod conntrack;
mod icmp;
mod maps;
mod packet;
mod parse;
mod pod;
mod policy;
mod route;
mod spoof;
mod stats;
mod underlay;
mod vxlan;

use aya_ebpf::{macros::xdp, programs::XdpContext};
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

/// Attached to the node's underlay interface: VXLAN from other nodes, and the node's own
/// traffic, which it leaves to the kernel.
#[xdp]
pub fn from_underlay(ctx: XdpContext) -> u32 {
    match underlay::try_from_underlay(&ctx) {
        Ok(action) => action,
        Err(reason) => stats::drop(&ctx, reason),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
