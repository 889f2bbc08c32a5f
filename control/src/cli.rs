//! The `ctpath` command line: argument definitions (clap derive) and one function per subcommand.
//!
//! Owns: what each subcommand prints and its exit status. Exit status 0 means success; 2 means
//! the input was invalid: an unreadable, unparsable or inconsistent state file, or a bad command
//! line (clap's own usage errors also exit 2). Status 1 is left for operational failures of
//! commands that act on the system.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aya::programs::XdpMode;
use clap::{Parser, Subcommand};

use crate::{
    agent::{self, AgentOptions},
    fastpath,
    state::{ClusterState, StateError},
    status::{self, Snapshot},
};

/// Exit status for invalid input, the same as clap's for a bad command line.
const EXIT_INVALID_INPUT: u8 = 2;

/// ctpath: a container network dataplane for Kubernetes telco pods.
///
/// Pods get one interface per network plane; each plane is a VXLAN segment carried between nodes
/// by eBPF/XDP programs, with security groups and anti-spoofing enforced in XDP; planes marked
/// `fast_path: true` are carried by an AF_XDP userspace forwarder with the same semantics.
/// The cluster state (networks, nodes, security groups, pods) is
/// described in a YAML file of schema version 1.
#[derive(Debug, Parser)]
#[command(
    name = "ctpath",
    version,
    after_help = "Exit status: 0 on success, 2 on invalid input (bad command line, unreadable, \
                  unparsable or inconsistent state file), 1 on other failures.\n\
                  Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change their level."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check cluster-state files (schema version 1).
    #[command(subcommand)]
    State(StateCommand),
    /// Run the node agent: load the XDP datapath for one node and keep it until SIGTERM/SIGINT.
    ///
    /// Attaches `from_underlay` to the node's underlay interface and `from_pod` to the host-side
    /// veth of every pod interface on the node, fills the datapath's maps from the cluster state,
    /// and pins every map and XDP link under the pin directory: killed, it leaves the datapath
    /// running and the next agent adopts it; SIGTERM/SIGINT remove everything. When the state has a fast-path plane it
    /// also runs the AF_XDP forwarder (one AF_XDP socket per interface of those planes and on the
    /// underlay); while the forwarder is not running, the XDP programs carry those planes. Prints
    /// `ready` on stdout once traffic flows. Needs root (CAP_BPF, CAP_NET_ADMIN).
    Agent {
        /// The cluster-state YAML file.
        #[arg(long)]
        state: PathBuf,
        /// This node's name in the cluster state.
        #[arg(long)]
        node: String,
        /// Where to pin the datapath's maps and links [default: /sys/fs/bpf/ctpath/NODE].
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Where to write the AF_XDP forwarder's report for `ctpath status`
        /// [default: /run/ctpath/NODE].
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// XDP attach mode: `native` (in the driver; veth supports it) or `generic` (any device,
        /// slower).
        #[arg(long, default_value = "native", value_parser = ["native", "generic"])]
        xdp_mode: String,
        /// Cores of the AF_XDP forwarder, which carries the planes marked `fast_path: true`:
        /// one worker pinned to each, worker i serving receive queue i of every interface
        /// (comma-separated, e.g. `2,3`). Unused when the state has no fast-path plane.
        #[arg(long, value_delimiter = ',', default_value = "0")]
        fastpath_cores: Vec<usize>,
    },
    /// Print a node's datapath counters: what was forwarded, what was dropped and why; on a node
    /// with fast-path planes, also the AF_XDP forwarder's (per worker and per socket).
    Status {
        /// The node whose agent pinned the counters (in this mount namespace).
        #[arg(long)]
        node: String,
        /// The agent's pin directory [default: /sys/fs/bpf/ctpath/NODE].
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// The agent's run directory [default: /run/ctpath/NODE].
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Show counters that are zero too.
        #[arg(long)]
        all: bool,
        /// The cluster state the agent runs: adds each security-group rule's hits and the
        /// conntrack table's occupancy.
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Parse and validate a cluster-state file; print a summary, or every problem found.
    ///
    /// On success prints `FILE: ok (...)` with the number of networks, nodes, security groups,
    /// pods and interfaces, and exits 0. Otherwise prints each problem on its own line to stderr
    /// as `FILE: PATH: MESSAGE` and exits 2.
    Check {
        /// The cluster-state YAML file.
        file: PathBuf,
    },
}

/// Runs the parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::State(command) => run_state(command),
        Command::Agent {
            state,
            node,
            pin_dir,
            run_dir,
            xdp_mode,
            fastpath_cores,
        } => {
            let pin_dir = pin_dir.unwrap_or_else(|| agent::default_pin_dir(&node));
            let run_dir = run_dir.unwrap_or_else(|| fastpath::default_run_dir(&node));
            let xdp_mode = if xdp_mode == "generic" {
                XdpMode::Skb
            } else {
                XdpMode::Driver
            };
            run_agent(&AgentOptions {
                state,
                node,
                pin_dir,
                run_dir,
                xdp_mode,
                fastpath_cores,
            })
        }
        Command::Status {
            node,
            pin_dir,
            run_dir,
            all,
            state,
        } => {
            let pin_dir = pin_dir.unwrap_or_else(|| agent::default_pin_dir(&node));
            let run_dir = run_dir.unwrap_or_else(|| fastpath::default_run_dir(&node));
            status(&pin_dir, &run_dir, &node, all, state.as_deref())
        }
    }
}

fn run_agent(options: &AgentOptions) -> ExitCode {
    let result = agent::run(options, |plan| {
        println!(
            "ready: node {}, {} pod interfaces, {} endpoints, {} planes",
            options.node,
            plan.pod_ports.len(),
            plan.endpoints.len(),
            plan.networks.len()
        );
        // Whoever started the agent waits for this line.
        let _ = std::io::stdout().flush();
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ctpath agent: {error}");
            if error.is_invalid_input() {
                ExitCode::from(EXIT_INVALID_INPUT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn status(pin_dir: &Path, run_dir: &Path, node: &str, all: bool, state: Option<&Path>) -> ExitCode {
    let snapshot = match Snapshot::read(pin_dir) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            eprintln!("ctpath status: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("node {node} ({})", pin_dir.display());
    if all {
        print!("{snapshot:#}");
    } else {
        print!("{snapshot}");
    }
    let fast_path = match status::fast_path(run_dir) {
        Ok(fast_path) => fast_path,
        Err(error) => {
            eprintln!("ctpath status: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(fast_path) = &fast_path {
        print!("{fast_path}");
    }
    let Some(path) = state else {
        return ExitCode::SUCCESS;
    };
    let state = match ClusterState::from_path(path) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("ctpath status: {error}");
            return ExitCode::from(EXIT_INVALID_INPUT);
        }
    };
    let result = status::rule_hits(pin_dir, &state, fast_path.as_ref()).and_then(|hits| {
        println!(
            "{:<60} {:>14} {:>16}",
            "security-group rules", "packets", "bytes"
        );
        for (label, tally) in hits.iter().filter(|(_, tally)| all || tally.packets != 0) {
            println!("  {label:<58} {:>14} {:>16}", tally.packets, tally.bytes);
        }
        let table = status::conntrack_summary(pin_dir, &state.conntrack.timeouts())?;
        println!(
            "conntrack: {} entries ({} expired, awaiting collection) of {}",
            table.entries, table.expired, state.conntrack.max_entries
        );
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ctpath status: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_state(command: StateCommand) -> ExitCode {
    match command {
        StateCommand::Check { file } => state_check(&file),
    }
}

fn state_check(file: &Path) -> ExitCode {
    let shown = file.display();
    match ClusterState::from_path(file) {
        Ok(state) => {
            println!(
                "{shown}: ok ({} networks, {} nodes, {} security groups, {} pods, {} interfaces)",
                state.networks.len(),
                state.nodes.len(),
                state.security_groups.len(),
                state.pods.len(),
                state.interface_count()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::debug!(file = %shown, %error, "state check failed");
            match &error {
                // Already names the file.
                StateError::Io { .. } => eprintln!("{error}"),
                StateError::Parse { .. } => eprintln!("{shown}: {error}"),
                StateError::Invalid(violations) => {
                    for violation in violations {
                        eprintln!("{shown}: {violation}");
                    }
                }
            }
            ExitCode::from(EXIT_INVALID_INPUT)
        }
    }
}
