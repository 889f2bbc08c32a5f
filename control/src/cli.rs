//! The `ctpath` command line: argument definitions (clap derive) and one function per subcommand.
//!
//! Owns: what each subcommand prints and its exit status. Exit status 0 means success; 2 means
//! the input was invalid: an unreadable, unparsable or inconsistent state file, or a bad command
//! line (clap's own usage errors also exit 2). Status 1 is left for operational failures of
//! commands that act on the system.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::state::{ClusterState, StateError};

/// Exit status for invalid input, the same as clap's for a bad command line.
const EXIT_INVALID_INPUT: u8 = 2;

/// ctpath: a container network dataplane for Kubernetes telco pods.
///
/// Pods get one interface per network plane; each plane is a VXLAN segment carried between nodes
/// by eBPF/XDP programs, with security groups and anti-spoofing enforced in XDP and an AF_XDP
/// forwarder for fast-path planes. The cluster state (networks, nodes, security groups, pods) is
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
