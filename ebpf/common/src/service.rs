//! Services, translated at the source pod's hook (docs/decisions/services.md), decided the
//! same way by the XDP and tc programs and the AF_XDP forwarder.
//!
//! Owns: the per-packet decision over [`ServiceTables`] (in the programs the `SERVICES`,
//! `MAGLEV_*`, `NAT_FLOWS`, `NAT_REPLIES` and `AFFINITY` maps; in a test or the forwarder its
//! own tables):
//! - [`to_service`]: a packet to a service's virtual IP. A connection's first packet (any
//!   packet without a live `NAT_FLOWS` entry, and every TCP SYN) is given a backend: the one
//!   its client had last with client-IP affinity, else the slot `flow_hash % size` of the
//!   service's Maglev table. Two entries are written: `NAT_REPLIES` first (the backend's
//!   packets back, translated to come from the service), then `NAT_FLOWS` (the client's
//!   packets, translated to the backend). Later packets cost one lookup.
//! - [`from_backend`]: a packet that may be a backend's reply: its `NAT_REPLIES` entry, if
//!   live, says what it becomes.
//! - [`of_error`]: an ICMP error about a packet of a translated connection (a backend's port
//!   unreachable, or a client's about a reply from the service): the live entry of the
//!   error's direction of that connection says what the error's addresses become, and the
//!   quote is translated to match (the caller applies both).
//!
//! Hairpin: when the backend chosen is the client itself, the packet also leaves from the
//! virtual IP (the pod would drop a packet from its own address as a martian), so its reply
//! comes back to the virtual IP and is translated back there.
//!
//! Entries expire after the conntrack timeout of an established connection of their
//! protocol; a TCP SYN always chooses afresh (a reused client port is a new connection: a
//! backend removed from the service gets none). The packet bytes are the caller's: it applies
//! the [`Rewrite`] (addresses, ports, checksums).
//!
//! Every function is `#[inline(always)]` for the verifier. Panic contract: nothing here panics.

use crate::{
    conntrack::Packet,
    flow::flow_hash,
    maps::{
        ct_state, service_flags, AffinityEntry, AffinityKey, FlowKey, MemberKey, NatEntry,
        NodeConfig, Rewrite, ServiceEntry, ServiceKey, MAGLEV_LARGE_SLOTS, MAGLEV_SMALL_SLOTS,
        NO_TABLE,
    },
    wire::{ICMP_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_SYN},
    DropReason,
};

/// The service maps, as the decision uses them.
pub trait ServiceTables {
    /// CLOCK_MONOTONIC now, in nanoseconds.
    fn now_ns(&self) -> u64;
    fn service(&self, key: &ServiceKey) -> Option<ServiceEntry>;
    /// The backend in slot `slot` of Maglev table `table` (`large`: of `MAGLEV_LARGE_SLOTS`
    /// slots, else `MAGLEV_SMALL_SLOTS`); `slot` is below the table's size.
    fn maglev_slot(&self, table: u64, large: bool, slot: usize) -> Option<[u8; 4]>;
    fn flow(&mut self, key: &FlowKey) -> Option<&mut NatEntry>;
    fn reply(&mut self, key: &FlowKey) -> Option<&mut NatEntry>;
    fn affinity(&mut self, key: &AffinityKey) -> Option<&mut AffinityEntry>;
    /// Whether `key.backend` is a backend of table `key.table` (known for the tables of
    /// services with client-IP affinity).
    fn is_member(&self, key: &MemberKey) -> bool;
    /// Stores (creates or replaces) an entry. The tables are LRU: a store makes room.
    fn store_flow(&mut self, key: &FlowKey, entry: &NatEntry);
    fn store_reply(&mut self, key: &FlowKey, entry: &NatEntry);
    fn store_affinity(&mut self, key: &AffinityKey, entry: &AffinityEntry);
}

/// Where [`to_service`] builds its keys and entries: in the programs a per-CPU map's value,
/// since the programs' 512 bytes of stack are spent by the rest of `from_pod`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scratch {
    pub flow: FlowKey,
    pub service: ServiceKey,
    pub nat: NatEntry,
    pub affinity_key: AffinityKey,
    pub affinity: AffinityEntry,
    pub member: MemberKey,
}
const _: () = assert!(core::mem::size_of::<Scratch>() == 112);

/// The key of `packet`'s direction of its connection in `NAT_FLOWS` and `NAT_REPLIES`.
#[inline(always)]
fn flow_key(packet: &Packet) -> FlowKey {
    FlowKey {
        vni: packet.vni,
        src: packet.src,
        dst: packet.dst,
        src_port: packet.src_port,
        dst_port: packet.dst_port,
        protocol: packet.protocol,
        _pad: [0; 3],
    }
}

/// How long a translation lives without packets: the conntrack timeout of an established
/// connection of `protocol`, in nanoseconds.
#[inline(always)]
fn lifetime_ns(node: &NodeConfig, protocol: u8) -> u64 {
    node.ct_timeouts.for_entry(protocol, ct_state::ESTABLISHED) as u64 * 1_000_000_000
}

/// Whether a packet of `protocol` with these flags starts a connection whatever was there
/// before: a TCP SYN.
#[inline(always)]
fn starts_afresh(tuple: &Packet) -> bool {
    tuple.protocol == IPPROTO_TCP && tuple.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
}

/// The translation of `tuple`, a packet to a service's virtual IP (`tuple.dst`): the
/// addresses and ports it leaves with, towards a backend.
#[inline(always)]
pub fn to_service<T: ServiceTables>(
    tables: &mut T,
    scratch: &mut Scratch,
    node: &NodeConfig,
    tuple: &Packet,
) -> Result<Rewrite, DropReason> {
    let port = match tuple.protocol {
        IPPROTO_TCP | IPPROTO_UDP => tuple.dst_port,
        IPPROTO_ICMP if tuple.icmp_type == ICMP_ECHO_REQUEST => 0,
        _ => return Err(DropReason::ServiceUnsupported),
    };
    let now = tables.now_ns();
    scratch.flow = flow_key(tuple);
    if !starts_afresh(tuple) {
        let lifetime = lifetime_ns(node, tuple.protocol);
        if let Some(flow) = tables.flow(&scratch.flow) {
            if now.saturating_sub(flow.last_seen_ns) < lifetime {
                flow.last_seen_ns = now;
                return Ok(flow.rewrite);
            }
        }
    }
    scratch.service = ServiceKey {
        vni: tuple.vni,
        vip: tuple.dst,
        port,
        protocol: tuple.protocol,
        _pad: 0,
    };
    let service = match tables.service(&scratch.service) {
        Some(service) => service,
        None => {
            scratch.service.port = 0;
            tables
                .service(&scratch.service)
                .ok_or(DropReason::ServicePortUnknown)?
        }
    };
    let backend = backend_for(tables, scratch, &service, tuple, now)?;
    let target_port = match tuple.protocol {
        IPPROTO_TCP | IPPROTO_UDP if service.target_port != 0 => service.target_port,
        _ => tuple.dst_port,
    };
    let forward = Rewrite {
        src: if backend == tuple.src {
            tuple.dst
        } else {
            tuple.src
        },
        dst: backend,
        src_port: tuple.src_port,
        dst_port: target_port,
    };
    // The flow's entry, then the reply's (the flow key reused for it): a backend's answer
    // can only come once the flow's first packet has left, after both.
    scratch.nat = NatEntry {
        last_seen_ns: now,
        rewrite: forward,
        _pad: [0; 4],
    };
    tables.store_flow(&scratch.flow, &scratch.nat);
    scratch.nat.rewrite = Rewrite {
        src: tuple.dst,
        dst: tuple.src,
        src_port: tuple.dst_port,
        dst_port: tuple.src_port,
    };
    scratch.flow = FlowKey {
        vni: tuple.vni,
        src: forward.dst,
        dst: forward.src,
        src_port: forward.dst_port,
        dst_port: forward.src_port,
        protocol: tuple.protocol,
        _pad: [0; 3],
    };
    tables.store_reply(&scratch.flow, &scratch.nat);
    Ok(forward)
}

/// The backend of a new connection to `service` (its key in `scratch.service`): the client's
/// last one under client-IP affinity (while the timeout has not run out and the backend is
/// still one of the service's: under the same table, or a member of the service's new one),
/// else its Maglev slot.
#[inline(always)]
fn backend_for<T: ServiceTables>(
    tables: &mut T,
    scratch: &mut Scratch,
    service: &ServiceEntry,
    tuple: &Packet,
    now: u64,
) -> Result<[u8; 4], DropReason> {
    if service.table == NO_TABLE {
        return Err(DropReason::ServiceNoBackend);
    }
    let affinity = service.flags & service_flags::CLIENT_IP_AFFINITY != 0;
    if affinity {
        scratch.affinity_key = AffinityKey {
            service: scratch.service,
            client: tuple.src,
        };
        let timeout = service.affinity_timeout_s as u64 * 1_000_000_000;
        let kept = match tables.affinity(&scratch.affinity_key) {
            Some(last) if now.saturating_sub(last.last_seen_ns) < timeout => {
                if last.table == service.table {
                    last.last_seen_ns = now;
                    return Ok(last.backend);
                }
                Some(last.backend)
            }
            _ => None,
        };
        // The service's backends changed since: kept if still one of them, under the new
        // table from now on.
        if let Some(backend) = kept {
            scratch.member = MemberKey {
                table: service.table,
                backend,
                _pad: [0; 4],
            };
            if tables.is_member(&scratch.member) {
                remember(tables, scratch, service, backend, now);
                return Ok(backend);
            }
        }
    }
    let hash = flow_hash(
        tuple.src,
        tuple.dst,
        tuple.protocol,
        tuple.src_port,
        tuple.dst_port,
    ) as u64;
    let large = service.flags & service_flags::LARGE_TABLE != 0;
    let size = if large {
        MAGLEV_LARGE_SLOTS
    } else {
        MAGLEV_SMALL_SLOTS
    };
    let backend = tables
        .maglev_slot(service.table, large, (hash % size as u64) as usize)
        .ok_or(DropReason::ServiceNoBackend)?;
    if affinity {
        remember(tables, scratch, service, backend, now);
    }
    Ok(backend)
}

/// Stores `backend` as the client's (its affinity key in `scratch.affinity_key`) under the
/// table of `service`, at `now`.
#[inline(always)]
fn remember<T: ServiceTables>(
    tables: &mut T,
    scratch: &mut Scratch,
    service: &ServiceEntry,
    backend: [u8; 4],
    now: u64,
) {
    scratch.affinity = AffinityEntry {
        last_seen_ns: now,
        table: service.table,
        backend,
        _pad: [0; 4],
    };
    tables.store_affinity(&scratch.affinity_key, &scratch.affinity);
}

/// The translation back of `tuple`, if it is a live translated connection's reply (from its
/// backend to its client, or to the virtual IP for a hairpin): the addresses and ports it
/// leaves with, from the service.
#[inline(always)]
pub fn from_backend<T: ServiceTables>(
    tables: &mut T,
    node: &NodeConfig,
    tuple: &Packet,
) -> Option<Rewrite> {
    let now = tables.now_ns();
    let lifetime = lifetime_ns(node, tuple.protocol);
    let reply = tables.reply(&flow_key(tuple))?;
    if now.saturating_sub(reply.last_seen_ns) >= lifetime {
        return None;
    }
    reply.last_seen_ns = now;
    Some(reply.rewrite)
}

/// The translation of an ICMP error about the quoted packet `quoted` (its connection's key, as
/// [`from_backend`] and [`to_service`] take a packet's), if that packet belongs to a live
/// translated connection: what a packet of the connection sent the error's way (from the
/// quoted packet's receiver to its sender) becomes. `to_virtual_ip`: the error goes to a
/// service's virtual IP (a client's, about a reply from the service), else it may be a
/// backend's (or a hop's on its way) about a packet from a client.
///
/// The error's addresses become the rewrite's; its quote, the reverse (source and destination
/// swapped, and TCP or UDP ports). An error does not keep its connection alive: the entry is
/// not refreshed.
#[inline(always)]
pub fn of_error<T: ServiceTables>(
    tables: &mut T,
    node: &NodeConfig,
    to_virtual_ip: bool,
    quoted: &Packet,
) -> Option<Rewrite> {
    let key = FlowKey {
        vni: quoted.vni,
        src: quoted.dst,
        dst: quoted.src,
        src_port: quoted.dst_port,
        dst_port: quoted.src_port,
        protocol: quoted.protocol,
        _pad: [0; 3],
    };
    let now = tables.now_ns();
    let entry = if to_virtual_ip {
        tables.flow(&key)?
    } else {
        tables.reply(&key)?
    };
    (now.saturating_sub(entry.last_seen_ns) < lifetime_ns(node, quoted.protocol))
        .then_some(entry.rewrite)
}
