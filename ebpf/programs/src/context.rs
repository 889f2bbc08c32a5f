//! The packet context of a hook, behind one trait, so every module serves both the XDP and the
//! tc (tcx) entry points: packet bytes and their bounds, the packet's length, the ingress
//! interface, growing and shrinking the packet at either end, tunnel headers, redirects and
//! the verdict codes.
//!
//! [`PacketContext`] is implemented for [`XdpContext`] (a frame in a page: the whole packet is
//! between `data` and `data_end`) and [`TcContext`] (an skb: only its linear part is between
//! `data` and `data_end`, [`PacketContext::len`] is the whole packet, and a GSO packet is one
//! skb of up to 64 KB that the device segments later). Where the two differ in what the kernel
//! can do, each method's doc says what the tc side does and why.
//!
//! Equivalence: for every method, both sides leave the same bytes in the packet (the fixture
//! runner runs each table through both programs and compares the output byte for byte).

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action, BPF_F_ADJ_ROOM_ENCAP_L2_ETH,
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO,
        BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT,
    },
    helpers::generated::{
        bpf_l4_csum_replace, bpf_redirect, bpf_redirect_peer, bpf_skb_adjust_room,
        bpf_skb_change_head, bpf_skb_change_tail, bpf_skb_change_type, bpf_skb_pull_data,
        bpf_xdp_adjust_head, bpf_xdp_adjust_tail,
    },
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use ctpath_common::{
    checksum::{replace16, replace32},
    wire::ETH_HDR_LEN,
    DropReason,
};

use crate::{
    maps,
    packet::{header_at, write_at},
};

/// `PACKET_HOST` (`linux/if_packet.h`): the skb is addressed to this host.
const PACKET_HOST: u32 = 0;
/// `BPF_F_ADJ_ROOM_ENCAP_L2(len)`: the length of the inner L2 header inside the room added.
const fn adj_room_encap_l2(len: usize) -> u64 {
    ((len & 0xff) as u64) << 56
}
/// Flags of the VXLAN push on the tc side: outer IPv4 + UDP around an inner Ethernet frame,
/// so the kernel marks the skb as encapsulated (inner headers, `SKB_GSO_UDP_TUNNEL`) and a GSO
/// packet is segmented with its tunnel headers replicated. `FIXED_GSO`: the inner segment size
/// stays what the pod's TCP chose (its MSS already leaves room for the 50 bytes: the plane MTU
/// is the underlay's less VXLAN).
const VXLAN_ROOM_FLAGS: u64 = (BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH
    | BPF_F_ADJ_ROOM_FIXED_GSO) as u64
    | adj_room_encap_l2(ETH_HDR_LEN);

/// What a hook's modules need of its packet context. See the module doc.
pub trait PacketContext: EbpfContext {
    /// The verdict that leaves the packet to the kernel.
    const PASS: u32;
    /// The verdict that drops the packet.
    const DROP: u32;
    /// Whether this is the first of ctpath's hooks a frame from the underlay meets (XDP): it
    /// counts the frames it leaves to the kernel, which the tc hook behind it then sees again.
    const FIRST_HOOK: bool;

    /// Address of the first byte of the packet.
    fn data(&self) -> usize;

    /// Address one past the last byte that can be read directly, read afresh (volatile) on
    /// every call: otherwise LLVM proves a bounds check redundant from earlier length
    /// comparisons and drops it, and the verifier, which cannot follow that proof, rejects the
    /// access.
    fn data_end(&self) -> usize;

    /// Length of the whole packet in bytes (for an skb, its linear part and its fragments).
    fn len(&self) -> u64;

    /// The interface the packet arrived on.
    fn ingress_ifindex(&self) -> u32;

    /// For a GSO packet, the payload size of each segment it will be cut into; 0 otherwise.
    fn gso_size(&self) -> u32;

    /// Adds `len` bytes in front of the packet (their content undefined until written).
    fn grow_head(&self, len: u32) -> Result<(), DropReason>;

    /// Cuts the packet to its first `len` bytes.
    fn truncate(&self, len: u32) -> Result<(), DropReason>;

    /// Makes room for `len` bytes of tunnel headers in front of the Ethernet frame: afterwards
    /// bytes `[0, len)` are for the outer headers and the frame's Ethernet header must be
    /// written again at `len` (the tc side leaves the old one at 0 and inserts the room behind
    /// it, where the kernel can record the inner headers for segmentation).
    fn push_tunnel(&self, len: u32) -> Result<(), DropReason>;

    /// Removes `len` bytes of tunnel headers behind the first 14: afterwards bytes `[0, 14)`
    /// must be written with the inner frame's Ethernet header (the XDP side leaves the inner
    /// one there, the tc side the outer one).
    fn pop_tunnel(&self, len: u32) -> Result<(), DropReason>;

    /// Sends the packet out of interface `ifindex`. XDP: through the `DEVICES` devmap when the
    /// device is there, else `bpf_redirect`; tc: `bpf_redirect` (tc has no devmap redirect).
    fn redirect(&self, ifindex: u32) -> u32;

    /// Delivers the packet to the pod behind the host-side veth `ifindex`. XDP: out of the
    /// host side (the veth hands it to its peer). tc: `bpf_redirect_peer`, straight into the
    /// pod's namespace as if received on its side of the veth, without a second trip through
    /// the veth's backlog; the skb is marked as addressed to the host first (it arrived with
    /// another host's MAC, and the pod's IPv4 input drops `PACKET_OTHERHOST`).
    fn redirect_to_pod(&self, ifindex: u32) -> u32;

    /// Hands the packet to the AF_XDP socket of this receive queue among the slots from
    /// `xsk_base`, if the forwarder holds the queue. Only XDP can: the tc side never does.
    fn hand_to_forwarder(&self, xsk_base: u32) -> Option<u32>;

    /// On the XDP side of an underlay where a tc program carries the plane, the verdict that
    /// hands the packet to it; `None` on the tc side, which carries the packet itself.
    fn hand_to_tc(&self) -> Option<u32>;

    /// Updates the TCP or UDP checksum at `offset` for `change` of a field it covers. A UDP
    /// checksum of 0 (none) stays 0 (`udp`). XDP: the checksum is complete, updated by hand.
    /// tc: `bpf_l4_csum_replace`, which also serves a packet whose checksum the device is
    /// still to complete (`CHECKSUM_PARTIAL`, a pod's TX offload: only its pseudo-header
    /// part is there, and a port needs no update).
    fn replace_l4_checksum(
        &self,
        offset: usize,
        change: Change,
        udp: bool,
    ) -> Result<(), DropReason>;
}

/// A change of a field a TCP or UDP checksum covers, as the field's bytes before and after.
#[derive(Clone, Copy)]
pub enum Change {
    /// An address of the IPv4 pseudo-header.
    Address { old: [u8; 4], new: [u8; 4] },
    /// A port of the TCP or UDP header.
    Port { old: [u8; 2], new: [u8; 2] },
}

/// The `check` of a complete checksum after `change` (a UDP `check` of 0 stays 0, and a
/// computed 0 is sent as 0xffff, RFC 768).
#[inline(always)]
pub fn replaced(check: u16, change: Change, udp: bool) -> u16 {
    if udp && check == 0 {
        return 0;
    }
    let check = match change {
        Change::Address { old, new } => replace32(check, old, new),
        Change::Port { old, new } => {
            replace16(check, u16::from_be_bytes(old), u16::from_be_bytes(new))
        }
    };
    if udp && check == 0 {
        0xffff
    } else {
        check
    }
}

#[inline(always)]
fn adjusted(ret: i64) -> Result<(), DropReason> {
    match ret {
        0 => Ok(()),
        _ => Err(DropReason::AdjustFailed),
    }
}

impl PacketContext for XdpContext {
    const PASS: u32 = xdp_action::XDP_PASS;
    const DROP: u32 = xdp_action::XDP_DROP;
    const FIRST_HOOK: bool = true;

    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        // SAFETY: `self.ctx` points to the program's `xdp_md` for the whole run.
        unsafe { core::ptr::read_volatile(&(*self.ctx).data_end) as usize }
    }

    /// Behind `black_box`: otherwise LLVM reassociates `n - (end - start)` into `(n + start) -
    /// end`, arithmetic on `data_end` that the verifier prohibits.
    #[inline(always)]
    fn len(&self) -> u64 {
        core::hint::black_box(XdpContext::data_end(self) - XdpContext::data(self)) as u64
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        XdpContext::ingress_ifindex(self) as u32
    }

    #[inline(always)]
    fn gso_size(&self) -> u32 {
        0
    }

    #[inline(always)]
    fn grow_head(&self, len: u32) -> Result<(), DropReason> {
        // SAFETY: `self.ctx` is the program's `xdp_md`; the helper only moves `data`, and every
        // later packet access is re-checked against the new bounds.
        adjusted(unsafe { bpf_xdp_adjust_head(self.ctx, -(len as i32)) })
    }

    #[inline(always)]
    fn truncate(&self, len: u32) -> Result<(), DropReason> {
        let delta = len as i32 - PacketContext::len(self) as i32;
        // SAFETY: as for `grow_head`, with `data_end`.
        adjusted(unsafe { bpf_xdp_adjust_tail(self.ctx, delta) })
    }

    #[inline(always)]
    fn push_tunnel(&self, len: u32) -> Result<(), DropReason> {
        self.grow_head(len)
    }

    #[inline(always)]
    fn pop_tunnel(&self, len: u32) -> Result<(), DropReason> {
        // SAFETY: as for `grow_head`.
        adjusted(unsafe { bpf_xdp_adjust_head(self.ctx, len as i32) })
    }

    /// Through the agent's `DEVICES` devmap (`bpf_redirect_map`: the device found in the map,
    /// not looked up by ifindex in the namespace on every redirect); an ifindex the agent has
    /// not put there (a device it could not add, a test's hand-made plan) with `bpf_redirect`,
    /// to the same device and with the same verdict.
    #[inline(always)]
    fn redirect(&self, ifindex: u32) -> u32 {
        if let Some(action) = maps::redirect_to_device(ifindex) {
            return action;
        }
        // SAFETY: `bpf_redirect` only records the target interface for the XDP_REDIRECT verdict
        // it returns; it reads no memory.
        unsafe { bpf_redirect(ifindex, 0) as u32 }
    }

    #[inline(always)]
    fn redirect_to_pod(&self, ifindex: u32) -> u32 {
        self.redirect(ifindex)
    }

    #[inline(always)]
    fn hand_to_forwarder(&self, xsk_base: u32) -> Option<u32> {
        maps::to_forwarder(xsk_base, self.rx_queue_index())
    }

    #[inline(always)]
    fn hand_to_tc(&self) -> Option<u32> {
        Some(xdp_action::XDP_PASS)
    }

    #[inline(always)]
    fn replace_l4_checksum(
        &self,
        offset: usize,
        change: Change,
        udp: bool,
    ) -> Result<(), DropReason> {
        let check =
            header_at::<[u8; 2], _>(self, offset).ok_or(DropReason::ServiceRewriteFailed)?;
        let check = replaced(u16::from_be_bytes(check), change, udp);
        write_at(self, offset, check.to_be_bytes()).ok_or(DropReason::ServiceRewriteFailed)
    }
}

/// How many bytes the tc entry points make linear (`bpf_skb_pull_data`) before parsing, when
/// the skb has fewer in its linear part: Ethernet, IPv4 and the fixed TCP header, behind the
/// VXLAN headers on the underlay. A pod's TCP and UDP skbs carry their headers in the linear
/// part anyway (nothing is pulled for them); what lies beyond (IPv4 options, the packet an
/// ICMP error quotes) is read only where it is linear.
pub const TC_PULL_LEN: u64 = 104;

/// Makes the first `min(len, TC_PULL_LEN)` bytes of the skb in `ctx` directly readable.
#[inline(always)]
pub fn pull_headers(ctx: &TcContext) -> Result<(), DropReason> {
    let want = core::cmp::min(PacketContext::len(ctx), TC_PULL_LEN);
    if (PacketContext::data_end(ctx) - PacketContext::data(ctx)) as u64 >= want {
        return Ok(());
    }
    // SAFETY: `ctx.skb.skb` is the program's `__sk_buff`; the helper may move the packet, and
    // every later access is re-checked against the new bounds.
    adjusted(unsafe { bpf_skb_pull_data(ctx.skb.skb, want as u32) })
}

impl PacketContext for TcContext {
    const PASS: u32 = TC_ACT_OK as u32;
    const DROP: u32 = TC_ACT_SHOT as u32;
    const FIRST_HOOK: bool = false;

    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        // SAFETY: `self.skb.skb` points to the program's `__sk_buff` for the whole run.
        unsafe { core::ptr::read_volatile(&(*self.skb.skb).data_end) as usize }
    }

    #[inline(always)]
    fn len(&self) -> u64 {
        TcContext::len(self) as u64
    }

    /// `__sk_buff.ifindex`: at tc ingress the device the skb arrived on (and the one
    /// `BPF_PROG_TEST_RUN` sets from its context; it has no `ingress_ifindex` field).
    #[expect(
        clippy::misnamed_getters,
        reason = "ifindex is the ingress device at tc ingress"
    )]
    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: as for `data_end`.
        unsafe { (*self.skb.skb).ifindex }
    }

    #[inline(always)]
    fn gso_size(&self) -> u32 {
        // SAFETY: as for `data_end`.
        unsafe { (*self.skb.skb).gso_size }
    }

    /// `bpf_skb_change_head`: bytes pushed at the front, as `bpf_xdp_adjust_head` does.
    #[inline(always)]
    fn grow_head(&self, len: u32) -> Result<(), DropReason> {
        // SAFETY: `self.skb.skb` is the program's `__sk_buff`; the helper may move the packet,
        // and every later access is re-checked against the new bounds.
        adjusted(unsafe { bpf_skb_change_head(self.skb.skb, len, 0) })
    }

    #[inline(always)]
    fn truncate(&self, len: u32) -> Result<(), DropReason> {
        // SAFETY: as for `grow_head`.
        adjusted(unsafe { bpf_skb_change_tail(self.skb.skb, len, 0) })
    }

    /// `bpf_skb_adjust_room` behind the MAC header with the encapsulation flags
    /// ([`VXLAN_ROOM_FLAGS`]): a GSO packet stays one skb and a partial checksum stays partial
    /// (its offsets move with the inner headers), for the underlay device to complete.
    #[inline(always)]
    fn push_tunnel(&self, len: u32) -> Result<(), DropReason> {
        // SAFETY: as for `grow_head`.
        adjusted(unsafe {
            bpf_skb_adjust_room(self.skb.skb, len as i32, BPF_ADJ_ROOM_MAC, VXLAN_ROOM_FLAGS)
        })
    }

    #[inline(always)]
    fn pop_tunnel(&self, len: u32) -> Result<(), DropReason> {
        // SAFETY: as for `grow_head`.
        adjusted(unsafe { bpf_skb_adjust_room(self.skb.skb, -(len as i32), BPF_ADJ_ROOM_MAC, 0) })
    }

    #[inline(always)]
    fn redirect(&self, ifindex: u32) -> u32 {
        // SAFETY: `bpf_redirect` only records the target interface for the TC_ACT_REDIRECT
        // verdict it returns; it reads no memory.
        unsafe { bpf_redirect(ifindex, 0) as u32 }
    }

    #[inline(always)]
    fn redirect_to_pod(&self, ifindex: u32) -> u32 {
        // SAFETY: `self.skb.skb` is the program's `__sk_buff`; the helper only sets its packet
        // type. Its failure (a type it does not allow) leaves the skb as it was.
        unsafe { bpf_skb_change_type(self.skb.skb, PACKET_HOST) };
        // SAFETY: as `bpf_redirect`: it records the target for the verdict it returns.
        unsafe { bpf_redirect_peer(ifindex, 0) as u32 }
    }

    #[inline(always)]
    fn hand_to_forwarder(&self, _xsk_base: u32) -> Option<u32> {
        None
    }

    #[inline(always)]
    fn hand_to_tc(&self) -> Option<u32> {
        None
    }

    #[inline(always)]
    fn replace_l4_checksum(
        &self,
        offset: usize,
        change: Change,
        udp: bool,
    ) -> Result<(), DropReason> {
        let (old, new, mut flags) = match change {
            Change::Address { old, new } => (
                u32::from_ne_bytes(old) as u64,
                u32::from_ne_bytes(new) as u64,
                4 | BPF_F_PSEUDO_HDR as u64,
            ),
            Change::Port { old, new } => (
                u16::from_ne_bytes(old) as u64,
                u16::from_ne_bytes(new) as u64,
                2,
            ),
        };
        if udp {
            flags |= BPF_F_MARK_MANGLED_0 as u64;
        }
        // SAFETY: `self.skb.skb` is the program's `__sk_buff`; the helper checks `offset`
        // against the packet and may move it: every later access is re-checked.
        match unsafe { bpf_l4_csum_replace(self.skb.skb, offset as u32, old, new, flags) } {
            0 => Ok(()),
            _ => Err(DropReason::ServiceRewriteFailed),
        }
    }
}
