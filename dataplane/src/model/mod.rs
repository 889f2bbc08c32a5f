//! The reference model of the datapath: what each stage of the XDP programs means, written once
//! as plain Rust over [`crate::wire`].
//!
//! The XDP programs (run through `BPF_PROG_TEST_RUN`) and the AF_XDP forwarder are tested
//! against this model on the same frames: fixed fixtures, and random and malformed frames from
//! proptest. Where the two disagree, the model states the intended semantics; a change of
//! semantics is made here first. Security groups, anti-spoofing and connection tracking follow
//! `docs/security-groups.md`, their specification; each module names what it decided where
//! that page is silent.
//!
//! - [`mod@classify`]: the parse step of `from_pod`, which turns a frame from a pod into a
//!   [`Classified`] value or a [`DropReason`](ctpath_common::DropReason).
//! - [`topology`]: the model's input, one node's view of the cluster as plain data, and the
//!   lookups in it (ports, endpoints, groups, group membership).
//! - [`spoofing`]: which source addresses and MACs a pod interface owns.
//! - [`policy`]: security-group rules, and the check of a connection on one node.
//! - [`conntrack`]: connection keys, entries, states, timeouts, the table.
//! - [`mod@vxlan`]: the outer headers on the underlay.
//! - [`replies`]: the frames the datapath writes (ARP replies, ICMP errors, readdressed
//!   frames).
//! - [`services`]: services' virtual IPs, translated to a backend at the source pod's hook
//!   and back for the replies: the choice of a backend (Maglev, client-IP affinity), the
//!   translation tables, the rewrite of a frame.
//! - [`node`]: [`NodeModel`], one node's `from_pod` and `from_underlay`, which runs the stages
//!   above in the programs' order and decides each frame's [`Verdict`].
//!
//! Panic contract: no function of the model panics, whatever bytes it is given.

pub mod classify;
pub mod conntrack;
pub mod node;
pub mod policy;
pub mod replies;
pub mod services;
pub mod spoofing;
pub mod topology;
pub mod vxlan;

pub use classify::{classify, Classified, Ipv4Summary, DROP_REASONS, L3, L4};
pub use conntrack::{CtEntry, CtKey, CtState, Side};
pub use node::{Counted, NodeModel, Outcome, Verdict, XdpAction, INITIAL_GENERATION};
pub use policy::{RuleHits, RuleId};
pub use topology::{
    AddressPair, ConntrackConfig, Direction, Ipv4Prefix, LocalPort, Node, Plane, PortRange,
    Protocol, Remote, RemoteEndpoint, Rule, SecurityGroup, Service, ServicePort, ServiceProtocol,
    Topology,
};
