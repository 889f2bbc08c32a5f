//! The `ctpath` command line: argument definitions (clap derive) and one function per subcommand.
//!
//! Owns: what each subcommand prints and its exit status. Exit status 0 means success; 2 means
//! the input was invalid: an unreadable, unparsable or inconsistent state file or state in etcd,
//! or a bad command line (clap's own usage errors also exit 2). Status 1 is left for operational failures of
//! commands that act on the system.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aya::programs::XdpMode;
use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::{
    agent::{self, AgentOptions, StateSource},
    cleanup, fastpath,
    metrics::Exporter,
    pins,
    state::{ClusterState, StateError},
    status::NodeStatus,
    store::{self, Store, StoreError},
};

/// Exit status for invalid input, the same as clap's for a bad command line.
const EXIT_INVALID_INPUT: u8 = 2;

/// ctpath: a container network dataplane for Kubernetes telco pods.
///
/// Pods get one interface per network plane; each plane is a VXLAN segment carried between nodes
/// by eBPF/XDP programs, with security groups and anti-spoofing enforced in XDP; planes marked
/// `fast_path: true` are carried by an AF_XDP userspace forwarder with the same semantics.
/// The cluster state (networks, nodes, security groups, pods) is
/// described in a YAML file of schema version 1, or kept in etcd (one key per object).
#[derive(Debug, Parser)]
#[command(
    name = "ctpath",
    version,
    after_help = "Exit status: 0 on success, 2 on invalid input (bad command line, unreadable, \
                  unparsable or inconsistent state file or state in etcd), 1 on other failures \
                  (etcd unreachable among them).\n\
                  Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change their level."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check cluster-state files (schema version 1); write the state into etcd, read it back.
    #[command(subcommand)]
    State(StateCommand),
    /// Run the node agent: load the datapath for one node and keep it until SIGTERM/SIGINT.
    ///
    /// Attaches `from_underlay` to the node's underlay interface and `from_pod` to the host-side
    /// veth of every pod interface on the node, fills the datapath's maps from the cluster state,
    /// and pins every map and link under the pin directory: killed, it leaves the datapath
    /// running and the next agent adopts it; SIGTERM/SIGINT remove everything. When the state has a fast-path plane it
    /// also runs the AF_XDP forwarder (one AF_XDP socket per interface of those planes and on the
    /// underlay); while the forwarder is not running, the XDP programs carry those planes. Prints
    /// `ready` on stdout once traffic flows. Needs root (CAP_BPF, CAP_NET_ADMIN).
    ///
    /// The state comes from a file (`--state`, read again when it changes or on SIGHUP) or from
    /// etcd (`--etcd`: listed, then watched; reconnects with backoff and resumes where it was,
    /// lists again after a compaction; an agent whose node the state does not name yet waits
    /// for it). A new state is applied as a diff, step by step; one that does not validate or
    /// compile is refused, and one whose application fails part way is rolled back: either way
    /// the log says so and the last good state stays in force. While etcd is unreachable the
    /// datapath stays as it is.
    ///
    /// With `--cleanup` instead of a state source it runs no agent: it removes what an agent of
    /// the node left pinned (links, which detaches their programs, and maps), its pin and run
    /// directories and the VTEPs' neighbour entries, and exits. For a node where no agent runs
    /// any more; IPv4 forwarding on the underlay is left as it is.
    #[command(group(ArgGroup::new("source").required(true).args(["state", "etcd", "cleanup"])))]
    Agent {
        /// Remove what an agent of this node left behind, then exit (no agent runs).
        #[arg(long)]
        cleanup: bool,
        /// The cluster-state YAML file.
        #[arg(long)]
        state: Option<PathBuf>,
        /// etcd endpoints holding the cluster state (comma-separated URLs, e.g.
        /// `http://10.0.0.1:2379`).
        #[arg(long, value_delimiter = ',')]
        etcd: Vec<String>,
        /// The prefix of the state's keys in etcd.
        #[arg(long, default_value = store::DEFAULT_PREFIX, conflicts_with = "state")]
        prefix: String,
        /// This node's name in the cluster state.
        #[arg(long)]
        node: String,
        /// Where to pin the datapath's maps and links [default: /sys/fs/bpf/ctpath/NODE].
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Where to write what `ctpath status` reads besides the pins: the agent's pid and the
        /// AF_XDP forwarder's report [default: /run/ctpath/NODE].
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
        /// Serve the node's counters for Prometheus at `http://ADDR/metrics` (text format
        /// 0.0.4; e.g. `127.0.0.1:9464`): forwarded and dropped packets and bytes, each
        /// security-group rule's hits, conntrack occupancy, the AF_XDP forwarder's counters
        /// per worker and per socket, the state's etcd revision, the last apply's duration and result and
        /// the applies by result, all named `ctpath_*`. An address that cannot be listened on
        /// (in use) stops the agent at start (exit status 1).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
    },
    /// Print a node's datapath counters: what was forwarded, what was dropped and why; on a node
    /// with fast-path planes, also the AF_XDP forwarder's (per worker and per socket).
    ///
    /// Works from any mount namespace of the node: when the pins are not found in this one
    /// (the agent runs under `ip netns exec`, which gives it a bpffs of its own), they are
    /// opened through the mount namespace of the agent whose pid is in its run directory
    /// (`/proc/PID/root`); the error says what was tried.
    ///
    /// With `--json`, one JSON object instead of the table: `node`, `pin_dir` (the path the
    /// pins were opened at), `forwarded` and `dropped` (every counter name, zero ones too, to
    /// `{packets, bytes}`), `rules` (`[{group, index, description, packets, bytes}]`) and
    /// `conntrack` (`{entries, expired, capacity}`; `entries` counts the expired ones), both
    /// `null` without `--state`, and `fast_path` (`null`, or the forwarder's report: `pid`,
    /// `written_ns`, `planes`, `huge_pages`, `workers` with their counters, drops, rule hits
    /// and sockets, and `running`, `age_seconds`).
    Status {
        /// The node whose agent pinned the counters.
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
        /// Print one JSON object instead of the table (fields above).
        #[arg(long, conflicts_with = "all")]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Parse and validate a cluster-state file; print a summary, or every problem found.
    ///
    /// On success prints `FILE: ok (...)` with the number of networks, nodes, security groups,
    /// pods and interfaces, and exits 0; a state with services gets a line more, then one
    /// per service with its virtual IP and the backends its Maglev table balances over.
    /// Otherwise prints each problem on its own line to stderr
    /// as `FILE: PATH: MESSAGE` and exits 2.
    Check {
        /// The cluster-state YAML file.
        file: PathBuf,
    },
    /// Write a cluster-state file into etcd: the whole state, in one transaction.
    ///
    /// Validates the file first, with the messages and exit status of `state check` (nothing
    /// is written then); puts the objects that are new or changed, one key each, and deletes
    /// the keys under the prefix that the file no longer has. Prints the revision written (the
    /// current one when nothing changed) and how many keys were put and deleted.
    Apply {
        /// The cluster-state YAML file.
        file: PathBuf,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Print the cluster state kept in etcd as YAML (a file `state check` and `state apply`
    /// take); exits 2, naming the keys, when the keys do not make a valid state.
    Get {
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

/// Where the state is in etcd.
#[derive(Debug, Args)]
pub struct EtcdArgs {
    /// etcd endpoints (comma-separated URLs, e.g. `http://127.0.0.1:2379`).
    #[arg(long, value_delimiter = ',', required = true)]
    etcd: Vec<String>,
    /// The prefix of the state's keys.
    #[arg(long, default_value = store::DEFAULT_PREFIX)]
    prefix: String,
}

/// Runs the parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::State(command) => run_state(command),
        Command::Agent {
            cleanup,
            state,
            etcd,
            prefix,
            node,
            pin_dir,
            run_dir,
            xdp_mode,
            fastpath_cores,
            metrics,
        } => {
            let pin_dir = pin_dir.unwrap_or_else(|| agent::default_pin_dir(&node));
            let run_dir = run_dir.unwrap_or_else(|| fastpath::default_run_dir(&node));
            if cleanup {
                return run_cleanup(&node, &pin_dir, &run_dir);
            }
            let xdp_mode = if xdp_mode == "generic" {
                XdpMode::Skb
            } else {
                XdpMode::Driver
            };
            let source = match state {
                Some(path) => StateSource::File(path),
                None => StateSource::Etcd {
                    endpoints: etcd,
                    prefix,
                },
            };
            // Listening first: a bad address stops the agent before it touches the datapath.
            let exporter = match metrics
                .map(|addr| Exporter::start(addr, &pin_dir, &run_dir))
                .transpose()
            {
                Ok(exporter) => exporter,
                Err(error) => {
                    eprintln!("ctpath agent: {error}");
                    return ExitCode::FAILURE;
                }
            };
            run_agent(&AgentOptions {
                source,
                node,
                pin_dir,
                run_dir,
                xdp_mode,
                fastpath_cores,
                metrics: exporter.as_ref().map(Exporter::report),
            })
        }
        Command::Status {
            node,
            pin_dir,
            run_dir,
            all,
            state,
            json,
        } => {
            let pin_dir = pin_dir.unwrap_or_else(|| agent::default_pin_dir(&node));
            let run_dir = run_dir.unwrap_or_else(|| fastpath::default_run_dir(&node));
            let format = if json {
                StatusFormat::Json
            } else if all {
                StatusFormat::AllRows
            } else {
                StatusFormat::Table
            };
            status(&pin_dir, &run_dir, &node, format, state.as_deref())
        }
    }
}

fn run_cleanup(node: &str, pin_dir: &Path, run_dir: &Path) -> ExitCode {
    match cleanup::cleanup(pin_dir, run_dir) {
        Ok(cleaned) if cleaned == cleanup::Cleaned::default() => {
            println!(
                "node {node}: nothing pinned at {} in this mount namespace and no run directory: \
                 nothing to remove",
                pin_dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(cleaned) => {
            println!(
                "node {node}: removed {} link pins (programs detached), {} map pins, {} VTEP \
                 neighbour entries, {}the pin directory {}",
                cleaned.links,
                cleaned.maps,
                cleaned.neighbours,
                if cleaned.run_dir {
                    "the run directory, "
                } else {
                    ""
                },
                pin_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ctpath agent --cleanup: {error}");
            ExitCode::FAILURE
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

/// How `ctpath status` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusFormat {
    /// The table, rows that are zero left out.
    Table,
    /// The table with every row.
    AllRows,
    Json,
}

fn status(
    pin_dir: &Path,
    run_dir: &Path,
    node: &str,
    format: StatusFormat,
    state: Option<&Path>,
) -> ExitCode {
    let state = match state.map(ClusterState::from_path).transpose() {
        Ok(state) => state,
        Err(error) => {
            eprintln!("ctpath status: {error}");
            return ExitCode::from(EXIT_INVALID_INPUT);
        }
    };
    let read = pins::locate(pin_dir, run_dir)
        .map_err(|error| error.to_string())
        .and_then(|pins| {
            NodeStatus::read(&pins.path, run_dir, state.as_ref())
                .map(|status| (pins, status))
                .map_err(|error| error.to_string())
        });
    let (pins, status) = match read {
        Ok(read) => read,
        Err(error) => {
            eprintln!("ctpath status: {error}");
            return ExitCode::FAILURE;
        }
    };
    match format {
        StatusFormat::Json => {
            let mut json = status.to_json();
            if let Some(object) = json.as_object_mut() {
                object.insert("node".into(), node.into());
                object.insert("pin_dir".into(), pins.path.display().to_string().into());
            }
            println!("{json}");
        }
        StatusFormat::Table | StatusFormat::AllRows => {
            match pins.through_pid {
                Some(pid) => println!(
                    "node {node} ({}, through the mount namespace of agent pid {pid})",
                    pin_dir.display()
                ),
                None => println!("node {node} ({})", pin_dir.display()),
            }
            if format == StatusFormat::AllRows {
                print!("{status:#}");
            } else {
                print!("{status}");
            }
        }
    }
    ExitCode::SUCCESS
}

fn run_state(command: StateCommand) -> ExitCode {
    match command {
        StateCommand::Check { file } => state_check(&file),
        StateCommand::Apply { file, etcd } => state_apply(&file, &etcd),
        StateCommand::Get { etcd } => state_get(&etcd),
    }
}

fn state_check(file: &Path) -> ExitCode {
    match load_file(file) {
        Ok(state) => {
            println!(
                "{}: ok ({} networks, {} nodes, {} security groups, {} pods, {} interfaces)",
                file.display(),
                state.networks.len(),
                state.nodes.len(),
                state.security_groups.len(),
                state.pods.len(),
                state.interface_count()
            );
            if !state.services.is_empty() {
                let count = match state.services.len() {
                    1 => "1 service".to_owned(),
                    n => format!("{n} services"),
                };
                println!(
                    "{}: {count}, each balanced over its backends by Maglev:",
                    file.display()
                );
                for service in &state.services {
                    let backends: Vec<String> = state
                        .service_backends(service)
                        .iter()
                        .map(|(pod, interface)| {
                            format!("{}/{} {}", pod.namespace, pod.name, interface.ip)
                        })
                        .collect();
                    let listed = match backends.len() {
                        0 => "no backends".to_owned(),
                        1 => format!("1 backend: {}", backends[0]),
                        n => format!("{n} backends: {}", backends.join(", ")),
                    };
                    println!("  service {} {}: {listed}", service.name, service.vip);
                }
            }
            ExitCode::SUCCESS
        }
        Err(exit) => exit,
    }
}

/// Loads a state file, or prints every problem with it (`FILE: PATH: MESSAGE`) and returns the
/// exit status for invalid input.
fn load_file(file: &Path) -> Result<ClusterState, ExitCode> {
    let shown = file.display();
    ClusterState::from_path(file).map_err(|error| {
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
    })
}

fn state_apply(file: &Path, etcd: &EtcdArgs) -> ExitCode {
    let state = match load_file(file) {
        Ok(state) => state,
        Err(exit) => return exit,
    };
    match Store::connect(&etcd.etcd, &etcd.prefix).and_then(|mut store| store.replace(&state)) {
        Ok(written) => {
            println!(
                "{}: applied at revision {} ({} keys put, {} deleted)",
                file.display(),
                written.revision,
                written.put,
                written.deleted
            );
            ExitCode::SUCCESS
        }
        // A name that cannot be a key is the file's fault, at its path in the file.
        Err(error @ StoreError::KeyName { .. }) => {
            eprintln!("{}: {error}", file.display());
            ExitCode::from(EXIT_INVALID_INPUT)
        }
        Err(error) => store_failure("state apply", &error),
    }
}

fn state_get(etcd: &EtcdArgs) -> ExitCode {
    match Store::connect(&etcd.etcd, &etcd.prefix).and_then(|mut store| store.load()) {
        Ok(loaded) => {
            tracing::debug!(revision = loaded.revision, "state read from etcd");
            print!("{}", loaded.state.to_yaml());
            ExitCode::SUCCESS
        }
        Err(error) => store_failure("state get", &error),
    }
}

/// Prints a store error; exit status 2 when etcd's content is at fault, 1 otherwise.
fn store_failure(command: &str, error: &StoreError) -> ExitCode {
    match error {
        StoreError::Corrupt(problems) | StoreError::Invalid(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
        }
        _ => eprintln!("ctpath {command}: {error}"),
    }
    if error.is_invalid_input() {
        ExitCode::from(EXIT_INVALID_INPUT)
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ctpath").chain(args.iter().copied()))
    }

    #[test]
    fn agent_takes_exactly_one_state_source() {
        let Command::Agent {
            state,
            etcd,
            prefix,
            ..
        } = parse(&["agent", "--node", "a", "--etcd", "http://x:1,http://y:2"])
            .unwrap()
            .command
        else {
            panic!("not the agent");
        };
        assert_eq!(state, None);
        assert_eq!(etcd, ["http://x:1", "http://y:2"]);
        assert_eq!(prefix, store::DEFAULT_PREFIX);
        assert!(parse(&["agent", "--node", "a", "--state", "s.yaml"]).is_ok());
        let both = parse(&[
            "agent",
            "--node",
            "a",
            "--state",
            "s",
            "--etcd",
            "http://x:1",
        ]);
        assert_eq!(both.unwrap_err().kind(), ErrorKind::ArgumentConflict);
        let neither = parse(&["agent", "--node", "a"]);
        assert_eq!(
            neither.unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        let prefix_alone = parse(&["agent", "--node", "a", "--state", "s", "--prefix", "/p"]);
        assert!(prefix_alone.is_err());
    }

    #[test]
    fn state_apply_and_get_need_etcd() {
        assert!(parse(&["state", "apply", "s.yaml"]).is_err());
        assert!(parse(&["state", "get"]).is_err());
        assert!(parse(&["state", "get", "--etcd", "http://x:1", "--prefix", "/p"]).is_ok());
    }
}
