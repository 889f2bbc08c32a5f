//! The next hop on the underlay towards another node's VTEP, from the kernel's FIB and
//! neighbour table (`bpf_fib_lookup`): no MAC is configured by hand.
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

use crate::context::PacketContext;

const AF_INET: u8 = 2;

/// Where to send a frame on the underlay.
pub struct NextHop {
    pub ifindex: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

/// The next hop from this node to `vtep`.
#[inline(always)]
pub fn towards<C: PacketContext>(
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
