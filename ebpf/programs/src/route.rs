//! The next hop on the underlay towards another node's VTEP: from the agent's cache
//! (`NEXT_HOPS`, resolved from the kernel's route and neighbour tables by the same code as the
//! AF_XDP forwarder's next hops, `ctpath_control::nexthop`, and refreshed every second), else
//! from the kernel's FIB and neighbour table (`bpf_fib_lookup`). No MAC is configured by hand.
//!
//! The cache saves the FIB and neighbour lookup of every encapsulated packet. A VTEP has no
//! entry until the agent has seen its neighbour resolved (just after start, or a neighbour that
//! failed): those packets take the lookup, as before the cache, so behaviour is never worse.
//! A neighbour whose MAC changes is sent to at its old MAC until the agent's next poll (at
//! most a second); the lookup path has no such window. Which path a packet took is not
//! counted (a counter would cost the cached path a map update per packet): a VTEP's path is
//! the one its `NEXT_HOPS` entry says (`bpftool map dump name NEXT_HOPS`).
//!
//! The lookup is made from the egress side, as for a packet the node sends itself. The kernel
//! still requires IPv4 forwarding on the underlay device (`BPF_FIB_LKUP_RET_FWD_DISABLED`
//! otherwise), which the agent turns on.
//! The agent installs a "managed" neighbour entry for every remote VTEP, so the kernel keeps
//! them resolved; a lookup that still finds no neighbour drops the frame with
//! [`DropReason::NoNeighbor`] rather than guessing.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibLookup, BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_OUTPUT,
    },
    helpers::generated::bpf_fib_lookup,
};
use ctpath_common::{maps::NodeConfig, DropReason};

use crate::{context::PacketContext, maps};

const AF_INET: u8 = 2;

/// Where to send a frame on the underlay.
pub struct NextHop {
    pub ifindex: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

/// The next hop from this node to `vtep`: cached, or looked up (module doc).
#[inline(always)]
pub fn towards<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    vtep: [u8; 4],
) -> Result<NextHop, DropReason> {
    if let Some(hop) = maps::next_hop(vtep) {
        return Ok(NextHop {
            ifindex: hop.ifindex,
            src_mac: hop.src_mac,
            dst_mac: hop.dst_mac,
        });
    }
    looked_up(ctx, node, vtep)
}

/// The next hop from this node to `vtep` from the kernel's FIB (`bpf_fib_lookup`).
#[inline(always)]
fn looked_up<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    vtep: [u8; 4],
) -> Result<NextHop, DropReason> {
    // SAFETY: `bpf_fib_lookup` is a plain C struct of integers and unions of integers: all
    // zeros is a valid value.
    let mut params: FibLookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.ifindex = node.underlay_ifindex;
    params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(node.underlay_ip);
    params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(vtep);
    // SAFETY: `ctx.as_ptr()` is the program's context and `params` a live, initialised struct
    // of the size passed; the helper writes only inside it.
    let ret = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            &mut params,
            core::mem::size_of::<FibLookup>() as i32,
            // As the node itself would send (egress): no ingress-side forwarding check, which
            // would fail on nodes with IP forwarding off, as ctpath needs it.
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
    match ret as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(NextHop {
            ifindex: params.ifindex,
            src_mac: params.smac,
            dst_mac: params.dmac,
        }),
        BPF_FIB_LKUP_RET_NO_NEIGH => Err(DropReason::NoNeighbor),
        BPF_FIB_LKUP_RET_FWD_DISABLED => Err(DropReason::UnderlayForwardingOff),
        _ => Err(DropReason::NoUnderlayRoute),
    }
}
