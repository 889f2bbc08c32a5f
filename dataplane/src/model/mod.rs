//! The reference model of the datapath: what each stage of the XDP programs means, written once
//! as plain Rust over [`crate::wire`].
//!
//! The XDP programs (run through `BPF_PROG_TEST_RUN`) and the AF_XDP forwarder are tested
//! against this model on the same frames: fixed fixtures, and random and malformed frames from
//! proptest. Where the two disagree, the model states the intended semantics; a change of
//! semantics is made here first.
//!
//! - [`mod@classify`]: the parse step of `from_pod`, which turns a frame from a pod into a
//!   [`Classified`] value or a [`DropReason`](ctpath_common::DropReason).
//!
//! Panic contract: no function of the model panics, whatever bytes it is given.

pub mod classify;

pub use classify::{classify, Classified, Ipv4Summary, DROP_REASONS, L3, L4};
