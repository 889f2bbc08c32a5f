//! ctpath control plane: the cluster-state model, its compiler to a node's datapath maps, the
//! eBPF datapath loader, the node agent and the CLI.
//!
//! - [`state`]: the cluster state (schema v1): model, parsing, validation.
//! - [`store`]: the cluster state in etcd: key layout, read-modify-write, watch.
//! - [`links`]: the node's interfaces (ifindex, MAC, MTU).
//! - [`netlink`]: rtnetlink requests: the VTEPs' neighbour entries, routes to VTEPs.
//! - [`compile`]: cluster state to one node's map contents.
//! - [`policy`]: security groups to identities and policy LPM entries.
//! - [`datapath`]: the embedded eBPF object: loading, programs, maps, counters.
//! - [`conntrack`]: the expired-entry collector and table summary.
//! - [`nexthop`]: the underlay next hop of every other node's VTEP (forwarder and XDP cache).
//! - [`host`]: the agent's changes to its node besides maps and links, as guards.
//! - [`fastpath`]: the AF_XDP forwarder of the fast-path planes, as the agent runs it.
//! - [`pod_side`]: what XDP at a pod's veth needs at the pod's end, set by the agent.
//! - [`agent`]: `ctpath agent`, the node agent.
//! - [`status`]: `ctpath status`, a node's counters (table and JSON).
//! - [`pins`]: an agent's pins found from any mount namespace (its pid file).
//! - [`metrics`]: `ctpath agent --metrics`, the node's counters for Prometheus.
//! - [`cli`]: the command line.
pub mod agent;
pub mod cleanup;
pub mod cli;
pub mod compile;
pub mod conntrack;
pub mod datapath;
pub mod fastpath;
pub mod host;
pub mod links;
pub mod metrics;
pub mod netlink;
pub mod nexthop;
pub mod pins;
pub mod pod_side;
pub mod policy;
pub mod services;
pub mod state;
pub mod status;
pub mod store;

/// `error` followed by those of its causes its message does not already quote (many of this
/// crate's errors quote their source): `attaching from_pod to veth1: bpf_link_create failed:
/// Operation not supported`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
