//! Services in the kernel: the service maps as the [`ServiceTables`] of the shared decision
//! (`ctpath_common::service`, also run by the reference model's tests and, once it carries
//! services, the AF_XDP forwarder), and the rewrite of a translated packet's addresses, ports
//! and checksums in place.

use aya_ebpf::{helpers::generated::bpf_ktime_get_ns, macros::map, maps::PerCpuArray};
use ctpath_common::{
    checksum::{replace16, replace32},
    conntrack::Packet,
    maps::{
        AffinityEntry, AffinityKey, FlowKey, MemberKey, NatEntry, NodeConfig, Rewrite,
        ServiceEntry, ServiceKey, MAGLEV_LARGE_SLOTS, MAGLEV_SMALL_SLOTS,
    },
    service::{self, Scratch, ServiceTables},
    wire::{IPPROTO_TCP, IPPROTO_UDP},
    DropReason,
};

/// [`to_service`]'s keys and entries, off the stack.
#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

use crate::{
    conntrack::{self, Quoted},
    context::{replaced, Change, PacketContext},
    maps::{
        AFFINITY, MAGLEV_LARGE, MAGLEV_MEMBERS, MAGLEV_SMALL, NAT_FLOWS, NAT_REPLIES, SERVICES,
    },
    packet::{header_at, write_at},
    parse::Ipv4Packet,
};

/// The kernel's service maps.
struct KernelServices;

impl ServiceTables for KernelServices {
    #[inline(always)]
    fn now_ns(&self) -> u64 {
        // SAFETY: `bpf_ktime_get_ns` takes no arguments and reads no memory.
        unsafe { bpf_ktime_get_ns() }
    }

    #[inline(always)]
    fn service(&self, key: &ServiceKey) -> Option<ServiceEntry> {
        // SAFETY: a pointer from a successful lookup, valid for this program run; the value
        // is copied out.
        SERVICES.get_ptr(*key).map(|entry| unsafe { *entry })
    }

    #[inline(always)]
    fn maglev_slot(&self, table: u64, large: bool, slot: usize) -> Option<[u8; 4]> {
        // Behind `black_box`: LLVM knows a remainder is below its divisor and drops the
        // checks below, which the verifier needs (it does not bound a remainder).
        let slot = core::hint::black_box(slot);
        if large {
            let table = MAGLEV_LARGE.get_ptr(table)?;
            // SAFETY: a pointer from a successful lookup to a whole table, valid for this
            // program run; `slot` is checked against the table's length.
            (slot < MAGLEV_LARGE_SLOTS).then(|| unsafe { (*table)[slot] })
        } else {
            let table = MAGLEV_SMALL.get_ptr(table)?;
            // SAFETY: as above.
            (slot < MAGLEV_SMALL_SLOTS).then(|| unsafe { (*table)[slot] })
        }
    }

    #[inline(always)]
    fn flow(&mut self, key: &FlowKey) -> Option<&mut NatEntry> {
        // SAFETY: a pointer from a successful lookup, valid for this program run; concurrent
        // updates of the timestamp from other CPUs race benignly (last writer wins).
        NAT_FLOWS
            .get_ptr_mut(*key)
            .map(|entry| unsafe { &mut *entry })
    }

    #[inline(always)]
    fn reply(&mut self, key: &FlowKey) -> Option<&mut NatEntry> {
        // SAFETY: as for `flow`.
        NAT_REPLIES
            .get_ptr_mut(*key)
            .map(|entry| unsafe { &mut *entry })
    }

    #[inline(always)]
    fn affinity(&mut self, key: &AffinityKey) -> Option<&mut AffinityEntry> {
        // SAFETY: as for `flow`.
        AFFINITY
            .get_ptr_mut(*key)
            .map(|entry| unsafe { &mut *entry })
    }

    #[inline(always)]
    fn is_member(&self, key: &MemberKey) -> bool {
        MAGLEV_MEMBERS.get_ptr(*key).is_some()
    }

    // An LRU map makes room for every store; a failure (out of memory) leaves the connection
    // untracked, and its next packet chooses again (the same backend while the table stays).
    #[inline(always)]
    fn store_flow(&mut self, key: &FlowKey, entry: &NatEntry) {
        let _ = NAT_FLOWS.insert(key, entry, 0);
    }

    #[inline(always)]
    fn store_reply(&mut self, key: &FlowKey, entry: &NatEntry) {
        let _ = NAT_REPLIES.insert(key, entry, 0);
    }

    #[inline(always)]
    fn store_affinity(&mut self, key: &AffinityKey, entry: &AffinityEntry) {
        let _ = AFFINITY.insert(key, entry, 0);
    }
}

/// [`service::to_service`] over the kernel's maps, its keys built in `SCRATCH`.
#[inline(always)]
pub fn to_service(node: &NodeConfig, tuple: &Packet) -> Result<Rewrite, DropReason> {
    let scratch = SCRATCH
        .get_ptr_mut(0)
        .ok_or(DropReason::ServiceRewriteFailed)?;
    // SAFETY: this CPU's slot of a per-CPU array, valid for the whole program run and used by
    // nothing else while this program runs on this CPU.
    service::to_service(&mut KernelServices, unsafe { &mut *scratch }, node, tuple)
}

/// [`service::from_backend`] over the kernel's maps.
#[inline(always)]
pub fn from_backend(node: &NodeConfig, tuple: &Packet) -> Option<Rewrite> {
    service::from_backend(&mut KernelServices, node, tuple)
}

/// The quote of the ICMP error `packet` on plane `vni`, and the translation
/// [`service::of_error`] finds for it over the kernel's maps, if it is about a packet of a
/// translated connection.
#[inline(always)]
pub fn of_error<C: PacketContext>(
    ctx: &C,
    node: &NodeConfig,
    vni: u32,
    to_virtual_ip: bool,
    packet: &Ipv4Packet,
) -> Option<(Quoted, Rewrite)> {
    let quoted = conntrack::quoted(ctx, vni, packet, packet.header.dst)?;
    let rewrite = service::of_error(&mut KernelServices, node, to_virtual_ip, &quoted.packet)?;
    Some((quoted, rewrite))
}

const FAILED: DropReason = DropReason::ServiceRewriteFailed;

/// Sets the addresses of the IPv4 header at `l3` (masked to its real range) from `old` to
/// `new` (source, destination), its checksum updated.
#[inline(always)]
fn readdress<C: PacketContext>(
    ctx: &C,
    l3: usize,
    old: ([u8; 4], [u8; 4]),
    new: ([u8; 4], [u8; 4]),
) -> Result<(), DropReason> {
    let check = header_at::<[u8; 2], _>(ctx, l3 + 10).ok_or(FAILED)?;
    let check = replace32(u16::from_be_bytes(check), old.0, new.0);
    let check = replace32(check, old.1, new.1);
    write_at(ctx, l3 + 10, check.to_be_bytes()).ok_or(FAILED)?;
    write_at(ctx, l3 + 12, new.0).ok_or(FAILED)?;
    write_at(ctx, l3 + 16, new.1).ok_or(FAILED)
}

/// Rewrites `packet` (validated, its IPv4 header at `l3_offset`) to the addresses and ports
/// of `rewrite`, with its IPv4 header checksum and its TCP or UDP checksum updated.
#[inline(always)]
pub fn rewrite<C: PacketContext>(
    ctx: &C,
    l3_offset: usize,
    packet: &Ipv4Packet,
    rewrite: &Rewrite,
) -> Result<(), DropReason> {
    let header = &packet.header;
    // Masked to its real range (read back from the stack, offsets lose the bounds the
    // verifier needs for packet access).
    let l3 = l3_offset & 0xff;
    let l4 = packet.l4_offset & 0xff;
    readdress(
        ctx,
        l3,
        (header.src, header.dst),
        (rewrite.src, rewrite.dst),
    )?;
    let (check_at, udp) = match header.protocol {
        IPPROTO_TCP => (l4 + 16, false),
        IPPROTO_UDP => (l4 + 6, true),
        // ICMP's checksum covers no address; an echo keeps its identifier.
        _ => return Ok(()),
    };
    for (old, new) in [(header.src, rewrite.src), (header.dst, rewrite.dst)] {
        if old != new {
            ctx.replace_l4_checksum(check_at, Change::Address { old, new }, udp)?;
        }
    }
    let ports = [
        (packet.l4.src_port, rewrite.src_port, l4),
        (packet.l4.dst_port, rewrite.dst_port, l4 + 2),
    ];
    for (old, new, at) in ports {
        if old != new {
            let (old, new) = (old.to_be_bytes(), new.to_be_bytes());
            ctx.replace_l4_checksum(check_at, Change::Port { old, new }, udp)?;
            write_at(ctx, at, new).ok_or(FAILED)?;
        }
    }
    Ok(())
}

/// Rewrites the ICMP error `packet` (validated, its IPv4 header at `l3_offset`), whose quote
/// is `quoted`, as [`of_error`]'s `rewrite` says: its addresses become the rewrite's, the
/// quoted header's the reverse, with its checksum updated, and a quoted TCP or UDP packet's
/// ports the reverse too, a quoted UDP checksum updated for them (as Linux's NAT does; a
/// quoted TCP checksum lies beyond the 8 bytes an error must quote, and is left as it is).
///
/// The ICMP checksum follows the quoted ports and UDP checksum: an IPv4 header updated
/// incrementally sums to what it summed to before, so the quoted header's new addresses and
/// checksum leave the ICMP sum as it was.
#[inline(always)]
pub fn rewrite_error<C: PacketContext>(
    ctx: &C,
    l3_offset: usize,
    packet: &Ipv4Packet,
    quoted: &Quoted,
    rewrite: &Rewrite,
) -> Result<(), DropReason> {
    let header = &packet.header;
    readdress(
        ctx,
        l3_offset & 0xff,
        (header.src, header.dst),
        (rewrite.src, rewrite.dst),
    )?;
    let quote = &quoted.packet;
    let at = quoted.offset & 0xff;
    readdress(ctx, at, (quote.src, quote.dst), (rewrite.dst, rewrite.src))?;
    if !matches!(quote.protocol, IPPROTO_TCP | IPPROTO_UDP) {
        return Ok(());
    }
    let check_at = (packet.l4_offset & 0xff) + 2;
    let mut check = u16::from_be_bytes(header_at::<[u8; 2], _>(ctx, check_at).ok_or(FAILED)?);
    let ports_at = at + (quoted.header_len & 0x3f);
    let ports = [
        (quote.src_port, rewrite.dst_port, ports_at),
        (quote.dst_port, rewrite.src_port, ports_at + 2),
    ];
    for (old, new, field) in ports {
        if old != new {
            check = replace16(check, old, new);
            write_at(ctx, field, new.to_be_bytes()).ok_or(FAILED)?;
        }
    }
    if quote.protocol == IPPROTO_UDP {
        let udp_check_at = ports_at + 6;
        let old = u16::from_be_bytes(header_at::<[u8; 2], _>(ctx, udp_check_at).ok_or(FAILED)?);
        let mut new = old;
        for (old, new_address) in [(quote.src, rewrite.dst), (quote.dst, rewrite.src)] {
            if old != new_address {
                let change = Change::Address {
                    old,
                    new: new_address,
                };
                new = replaced(new, change, true);
            }
        }
        for (old, new_port, _) in ports {
            if old != new_port {
                let change = Change::Port {
                    old: old.to_be_bytes(),
                    new: new_port.to_be_bytes(),
                };
                new = replaced(new, change, true);
            }
        }
        if new != old {
            check = replace16(check, old, new);
            write_at(ctx, udp_check_at, new.to_be_bytes()).ok_or(FAILED)?;
        }
    }
    write_at(ctx, check_at, check.to_be_bytes()).ok_or(FAILED)
}
