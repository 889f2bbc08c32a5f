//! Connection tracking in the kernel (docs/security-groups.md, "Connection tracking"): the
//! `CONNTRACK` hash as the [`CtTable`] of the shared decision (`ctpath_common::conntrack::admit`,
//! also run by the AF_XDP forwarder), reading an ICMP error's quote from the packet, and the
//! per-rule hit counters.
//!
//! Entries are updated in place through the lookup's pointer: concurrent updates of one entry
//! from other CPUs race benignly (last writer wins on timestamps and state), as in the kernel's
//! own conntrack fast path.

use aya_ebpf::helpers::generated::bpf_ktime_get_ns;
use ctpath_common::{
    conntrack::{self, Change, CtTable, InsertError, Packet, BPF_ANY, BPF_NOEXIST, EEXIST},
    flow::ct_key,
    maps::{CtEntry, CtKey, NodeConfig, Rewrite, NO_RULE},
    policy::Allowed,
    wire::{
        ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_ERROR_QUOTED_PAYLOAD, ICMP_HDR_LEN, IPPROTO_ICMP,
        IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HDR_LEN,
    },
    DropReason,
};

use crate::{
    context::PacketContext,
    maps::{CONNTRACK, RULE_HITS},
    packet::{header_at, Ipv4Hdr},
    parse::Ipv4Packet,
    policy::KernelPolicy,
};

/// The kernel's `CONNTRACK` map.
struct KernelConntrack;

impl CtTable for KernelConntrack {
    #[inline(always)]
    fn now_ns(&self) -> u64 {
        // SAFETY: `bpf_ktime_get_ns` takes no arguments and reads no memory.
        unsafe { bpf_ktime_get_ns() }
    }

    #[inline(always)]
    fn entry(&mut self, key: &CtKey) -> Option<&mut CtEntry> {
        // SAFETY: a pointer from a successful lookup, valid for this program run; concurrent
        // updates from other CPUs race benignly (module doc).
        CONNTRACK
            .get_ptr_mut(*key)
            .map(|entry| unsafe { &mut *entry })
    }

    #[inline(always)]
    fn insert(&mut self, key: &CtKey, entry: &CtEntry, replace: bool) -> Result<(), InsertError> {
        let flags = if replace { BPF_ANY } else { BPF_NOEXIST };
        match CONNTRACK.insert(*key, *entry, flags) {
            Ok(()) => Ok(()),
            Err(error) if error as i64 == -(EEXIST as i64) => Err(InsertError::Exists),
            Err(_) => Err(InsertError::Full),
        }
    }

    #[inline(always)]
    fn remove(&mut self, key: &CtKey) {
        let _ = CONNTRACK.remove(*key);
    }

    #[inline(always)]
    fn written(&mut self, _key: &CtKey, _change: Change) {
        // Written in place already.
    }
}

/// `packet` on plane `vni` as conntrack and the service maps see it.
#[inline(always)]
pub fn summary_of(vni: u32, packet: &Ipv4Packet) -> Packet {
    let (header, l4) = (&packet.header, &packet.l4);
    Packet {
        vni,
        protocol: header.protocol,
        src: header.src,
        dst: header.dst,
        src_port: l4.src_port,
        dst_port: l4.dst_port,
        tcp_flags: l4.tcp_flags,
        icmp_type: l4.icmp_type,
    }
}

/// Who sends a packet and who receives it, as conntrack and the rules see them.
#[derive(Clone, Copy)]
pub struct Parties<'a> {
    /// The plane.
    pub vni: u32,
    /// The sender's compiled policy on this node (`NO_POLICY`: not filtered here, or not on
    /// this node).
    pub sender_policy: u32,
    /// The receiver's, likewise.
    pub receiver_policy: u32,
    /// For a packet to a service, the addresses and ports it leaves with (towards the
    /// backend): the connection conntrack and the rules see.
    pub translated: Option<&'a Rewrite>,
}

/// Admits or drops `packet` between `parties`, and counts it towards the rules that allow it.
#[inline(always)]
pub fn admit<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    packet: &Ipv4Packet,
    parties: &Parties<'_>,
) -> Result<(), DropReason> {
    let Parties {
        vni,
        sender_policy,
        receiver_policy,
        translated,
    } = *parties;
    let mut summary = summary_of(vni, packet);
    if let Some(rewrite) = translated {
        summary.src = rewrite.src;
        summary.dst = rewrite.dst;
        // ICMP has no ports to translate (an echo keeps its identifier).
        if matches!(summary.protocol, IPPROTO_TCP | IPPROTO_UDP) {
            summary.src_port = rewrite.src_port;
            summary.dst_port = rewrite.dst_port;
        }
    }
    let quoted = if summary.is_icmp_error() {
        // To the quoted packet's sender as conntrack sees it (translated, for an error to a
        // service's virtual IP).
        quoted(ctx, vni, packet, summary.dst).map(|quoted| {
            let q = &quoted.packet;
            ct_key(vni, q.protocol, q.src, q.dst, q.src_port, q.dst_port).0
        })
    } else {
        None
    };
    let allowed = conntrack::admit(
        &mut KernelConntrack,
        &KernelPolicy,
        node,
        &summary,
        quoted,
        sender_policy,
        receiver_policy,
    )?;
    count_rules(&allowed, ctx.len());
    Ok(())
}

/// The packet an ICMP error quotes, and where its quote lies in the frame.
#[derive(Clone, Copy)]
pub struct Quoted {
    /// The quoted packet as conntrack keys it: on the error's plane, with its connection's
    /// ports (TCP/UDP ports, an echo's identifier twice, 0/0 otherwise).
    pub packet: Packet,
    /// Offset of the quoted IPv4 header in the frame.
    pub offset: usize,
    /// Length of the quoted IPv4 header.
    pub header_len: usize,
}

/// The packet the ICMP error `packet` on plane `vni` quotes, if the quote is an IPv4 header
/// and 8 bytes within the error and goes back to its sender, the error's destination `to`
/// (Linux requires as much).
#[inline(always)]
pub fn quoted<C: PacketContext>(
    ctx: &C,
    vni: u32,
    packet: &Ipv4Packet,
    to: [u8; 4],
) -> Option<Quoted> {
    // Masked to its real range (at most 50 + 14 + 60 bytes): read back from the stack, the
    // offset has lost the bounds the verifier needs for packet access.
    let quoted_at = (packet.l4_offset & 0xff) + ICMP_HDR_LEN;
    let quoted = header_at::<Ipv4Hdr, _>(ctx, quoted_at)?;
    let quoted_len = quoted.ihl() as usize * 4;
    let error_len = packet.header.total_len() as usize - packet.header_len;
    if quoted.version() != 4
        || quoted_len < IPV4_MIN_HDR_LEN
        || ICMP_HDR_LEN + quoted_len + ICMP_ERROR_QUOTED_PAYLOAD > error_len
        || quoted.src != to
    {
        return None;
    }
    // The first 8 bytes after the quoted header: ports, or ICMP type/code/checksum/identifier.
    let l4 = header_at::<[u8; 8], _>(ctx, quoted_at + quoted_len)?;
    let (src_port, dst_port) = match quoted.protocol {
        IPPROTO_TCP | IPPROTO_UDP => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        IPPROTO_ICMP if l4[0] == ICMP_ECHO_REQUEST || l4[0] == ICMP_ECHO_REPLY => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            (id, id)
        }
        _ => (0, 0),
    };
    Some(Quoted {
        packet: Packet {
            vni,
            protocol: quoted.protocol,
            src: quoted.src,
            dst: quoted.dst,
            src_port,
            dst_port,
            tcp_flags: 0,
            icmp_type: 0,
        },
        offset: quoted_at,
        header_len: quoted_len,
    })
}

/// Counts a packet of `bytes` towards the rules that allowed its connection.
#[inline(always)]
fn count_rules(allowed: &Allowed, bytes: u64) {
    for rule in [allowed.egress_rule, allowed.ingress_rule] {
        if rule == NO_RULE {
            continue;
        }
        if let Some(tally) = RULE_HITS.get_ptr_mut(rule) {
            // SAFETY: this CPU's slot of a per-CPU array, valid for the whole program run.
            unsafe {
                (*tally).packets += 1;
                (*tally).bytes += bytes;
            }
        }
    }
}
