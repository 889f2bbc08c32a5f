//! Types shared by ctpath's eBPF programs and its userspace: wire constants, the internet
//! checksum ([`checksum`]), the drop reasons and counters the datapath reports, and the `#[repr(C)]` keys and values of its maps; and the
//! compiled semantics both datapaths run, the XDP programs and the AF_XDP forwarder: the
//! security-group decision ([`policy`]) and connection tracking ([`conntrack`]).
//!
//! Everything here is `no_std`, `Copy` and free of implicit padding (explicit `_pad` fields, a
//! const size assertion per map type), so the kernel and userspace agree on every byte. With the
//! `user` feature the map types also implement `aya::Pod`.
#![no_std]
#![deny(unsafe_code)]

pub mod checksum;
pub mod conntrack;
pub mod counters;
pub mod flow;
pub mod maps;
pub mod policy;
pub mod service;
pub mod wire;

pub use counters::{Counter, CounterKind, DropReason, Tally};
