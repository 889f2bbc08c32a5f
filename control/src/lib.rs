//! ctpath control plane: the cluster-state model, the eBPF datapath loader, the agent and CLI.
pub mod cli;
pub mod datapath;
pub mod state;
