//! Userspace views of the headers the datapath parses: Ethernet, ARP (Ethernet/IPv4 only), IPv4,
//! TCP, UDP, ICMP and VXLAN, plus the internet checksum.
//!
//! The style is smoltcp's (`src/wire/`): each module has
//!
//! - `Packet<T: AsRef<[u8]>>`, a typed view over a byte buffer, with the header layout written
//!   once as byte ranges in `mod field`. Reads and writes go through those ranges and
//!   `from_be_bytes`/`to_be_bytes`: packet bytes are never cast to struct references (they need
//!   not be aligned), and the crate has no `unsafe` at all.
//! - `Packet::new_checked`, which runs `check_len` and returns the module's error. The order of
//!   the checks in `check_len` is the order in which the XDP programs check the same header, so
//!   that the first failing check gives the same [`DropReason`](ctpath_common::DropReason) in both.
//! - `Repr`, the header as plain values, with `parse` / `emit` / `buffer_len`.
//!
//! # Errors
//!
//! One `thiserror` enum per module (`EthernetError`, `ArpError`, `Ipv4Error`, `TcpError`,
//! `UdpError`, `IcmpError`, `VxlanError`), as `/work/shared/STYLE.md` asks, rather than one
//! shared `WireError`: each variant then names exactly the fields of its header that were
//! wrong, and the reference model maps each variant to one `DropReason` with an exhaustive
//! `match`, so a new variant cannot go unclassified.
//!
//! # Panic contract (all modules)
//!
//! - `new_unchecked` never panics; accessors and setters on an unchecked packet may panic if the
//!   buffer is too short for the field they touch.
//! - Once `check_len` (or `new_checked`) has succeeded, no accessor panics, and no setter panics
//!   either. A setter that rewrites a length field (IPv4 IHL or total length, TCP data offset,
//!   UDP length) can make the packet fail `check_len` again; call it again before using the
//!   accessors that depend on that field (`payload`, `options`).
//! - `Repr::emit` panics if the buffer is shorter than `Repr::buffer_len` (a caller bug).
//!
//! Checksums are computed by `emit` and `fill_checksum` but never verified by `parse`: like
//! Cilium, the datapath does not re-verify what the receiving kernel verifies anyway. Each
//! `Packet` with a checksum has a `verify_checksum` for tests.

pub mod arp;
/// The internet checksum, written once for the eBPF programs and userspace.
pub use ctpath_common::checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;
pub mod vxlan;

pub use ethernet::MacAddr;

/// A fixed-size header field: its byte range from the start of the header.
pub type Field = core::ops::Range<usize>;
/// Everything from this byte on (options, payload).
pub type Rest = core::ops::RangeFrom<usize>;

/// Reads a big-endian `u16` from the first two bytes of `bytes`. Panics if there are fewer.
pub(crate) fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

/// Reads a big-endian `u32` from the first four bytes of `bytes`. Panics if there are fewer.
pub(crate) fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Writes `value` big-endian into the first two bytes of `bytes`. Panics if there are fewer.
pub(crate) fn write_u16(bytes: &mut [u8], value: u16) {
    bytes[..2].copy_from_slice(&value.to_be_bytes());
}

/// Writes `value` big-endian into the first four bytes of `bytes`. Panics if there are fewer.
pub(crate) fn write_u32(bytes: &mut [u8], value: u32) {
    bytes[..4].copy_from_slice(&value.to_be_bytes());
}

/// Reads an IPv4 address from the first four bytes of `bytes`. Panics if there are fewer.
pub(crate) fn read_ipv4_addr(bytes: &[u8]) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}
