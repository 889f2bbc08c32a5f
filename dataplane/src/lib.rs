//! Userspace packet semantics of ctpath.
//!
//! - [`wire`]: typed views of the headers the datapath reads and writes (Ethernet, ARP, IPv4,
//!   TCP, UDP, ICMP) and the internet checksum, in smoltcp's style.
//! - [`model`]: the reference model, the meaning of each datapath stage written once in plain
//!   Rust; the XDP programs and the AF_XDP forwarder are tested against it.
//! - [`testing`]: builders of valid and malformed frames, and captured frames, for the tests of
//!   this crate, the XDP fixture tables and the network-namespace tests.
//! - [`maglev`]: Maglev consistent hashing, the lookup table that spreads a service's new
//!   connections over its backends.
//! - [`forwarder`]: the AF_XDP userspace forwarder of the fast-path planes: its per-packet
//!   pipeline (tested against the model), its sockets and workers.
//!
//! Wire constants and drop reasons are not defined here: they come from `ctpath_common`, which
//! the kernel programs share.
#![deny(unsafe_code)]

pub mod forwarder;
pub mod maglev;
pub mod model;
pub mod testing;
pub mod wire;
