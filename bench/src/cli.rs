//! The command line of `ctpath-bench`.
//!
//! ```text
//! ctpath-bench [--quick] [--cpus same|split] [--out DIR] [--runs N] [--seconds S]
//! ctpath-bench report RESULTS.json [--out DIR]
//! ctpath-bench generate ...          (internal: the flood, run inside the source pod)
//! ```

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{cpus::CpuMode, generator::GenerateArgs};

/// ctpath against the kernel path on veth, side by side in one run: pps (64 and 1400 bytes,
/// one flow and 1,024 flows), security-group scaling, new connections per second, round-trip
/// latency and TCP, on network
/// namespace nodes built like a two-node Kubernetes cluster. Needs root. Writes results.json,
/// table.txt, README.md and PNG plots to --out.
#[derive(Debug, Parser)]
#[command(name = "ctpath-bench", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Re-render the table, README and plots of an earlier run from its results.json.
    Report {
        results: PathBuf,
        /// Where to write (default: the directory of RESULTS).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build one topology, print its namespaces and keep it for inspection (perf, bpftool,
    /// tcpdump) until Enter is pressed or --seconds pass; the sink is attached unless --no-sink.
    Hold {
        #[arg(long, value_enum)]
        topology: HoldTopology,
        /// Rules in the destination pod's security group.
        #[arg(long, default_value_t = 1)]
        rules: usize,
        #[arg(long, value_enum, default_value_t = CpuMode::Same)]
        cpus: CpuMode,
        #[arg(long)]
        seconds: Option<u64>,
        #[arg(long)]
        no_sink: bool,
    },
    /// The control plane at scale on three or more nodes following one etcd: time from the
    /// etcd write of a new pod to its reachability from every node, packets lost on an
    /// allowed flow during consecutive updates, compile and load of a large state (10,000
    /// pods, 2,000 groups, 50,000 rules), agent memory. Writes scale.json and scale.txt.
    Scale(ScaleArgs),
    /// Services: kube-proxy's iptables rules on the kernel topology against ctpath's services,
    /// 1 to 10,000 UDP services of three backends: load time, new connections per second and
    /// one flow's pps to a service's address, per service count. Writes
    /// results.json, table.txt and README.md.
    Services(ServicesArgs),
    /// Internal: the AF_XDP flood, run by the harness inside the source pod's namespace.
    #[command(hide = true)]
    Generate(GenerateCli),
}

/// The topologies `hold` can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HoldTopology {
    Kernel,
    CtpathXdp,
    CtpathTc,
    CtpathAfxdp,
    Ceiling,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Smoke run (under 2 minutes): one run of 0.5 s per case, rule counts 1 and 1,000 only.
    /// Checks that every case produced non-zero, sane figures; never a speed.
    #[arg(long)]
    pub quick: bool,
    /// same: generator and datapath on CPU 0 (stable; the headline). split: generator on
    /// CPU 0, datapath on CPU 1.
    #[arg(long, value_enum, default_value_t = CpuMode::Same)]
    pub cpus: CpuMode,
    /// Output directory (created).
    #[arg(long, default_value = "ctpath-bench-results")]
    pub out: PathBuf,
    /// Runs per case (default 5, quick 1).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Measured seconds per flood run (default 2, quick 0.5).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Write the results of a full run even when the ctpath commit is `-dirty` (uncommitted
    /// changes: the figures would belong to no commit). Quick runs always write.
    #[arg(long)]
    pub allow_dirty: bool,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Smoke run: 5 samples, 6 updates, a large state of 300 pods / 60 groups / 1,500
    /// rules. Checks that every phase produced its figures; never a speed.
    #[arg(long)]
    pub quick: bool,
    /// Output directory (created).
    #[arg(long, default_value = "ctpath-bench-scale")]
    pub out: PathBuf,
    /// Agent nodes (3 to 9).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Convergence samples (default 50, quick 5; at most 250).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Convergence samples once the large state is in force (default 20, quick 2).
    #[arg(long)]
    pub samples_large: Option<usize>,
    /// State updates under traffic (default 100, quick 6).
    #[arg(long)]
    pub updates: Option<usize>,
    /// Pods of the large state (default 10,000).
    #[arg(long)]
    pub pods: Option<usize>,
    /// Security groups of the large state (default 2,000).
    #[arg(long)]
    pub groups: Option<usize>,
    /// Rules of the large state's groups, all told (default 50,000).
    #[arg(long)]
    pub rules: Option<usize>,
    /// Large-state pods on each agent node (default 20, quick 2; the rest are on nodes that
    /// exist only in the state).
    #[arg(long)]
    pub local: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// 1 and 100 services, 2 runs (the smoke test).
    #[arg(long)]
    pub quick: bool,
    #[arg(long, default_value = "ctpath-bench-services")]
    pub out: PathBuf,
    /// Runs per service count and dataplane (default 5, 2 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
}

#[derive(Debug, Args)]
pub struct GenerateCli {
    #[arg(long)]
    pub ifname: String,
    #[arg(long, value_parser = parse_mac)]
    pub src_mac: [u8; 6],
    #[arg(long, value_parser = parse_mac)]
    pub dst_mac: [u8; 6],
    #[arg(long)]
    pub src_ip: Ipv4Addr,
    #[arg(long)]
    pub dst_ip: Ipv4Addr,
    #[arg(long)]
    pub src_port: u16,
    #[arg(long)]
    pub dst_port: u16,
    #[arg(long, default_value_t = 1)]
    pub flows: u32,
    /// On the wire, FCS included.
    #[arg(long, default_value_t = 64)]
    pub frame_size: usize,
    #[arg(long, default_value_t = 300)]
    pub warmup_ms: u64,
    #[arg(long, default_value_t = 2000)]
    pub duration_ms: u64,
    /// New-flow mode: at most this many frames, each a new UDP flow (0: off).
    #[arg(long, default_value_t = 0)]
    pub new_flows: u64,
    /// New-flow mode: the number of the first flow.
    #[arg(long, default_value_t = 0)]
    pub flow_base: u64,
    /// New-flow mode: keep --dst-port, vary the source port only.
    #[arg(long)]
    pub fixed_dst_port: bool,
}

impl From<GenerateCli> for GenerateArgs {
    fn from(c: GenerateCli) -> GenerateArgs {
        GenerateArgs {
            ifname: c.ifname,
            src_mac: c.src_mac,
            dst_mac: c.dst_mac,
            src_ip: c.src_ip,
            dst_ip: c.dst_ip,
            src_port: c.src_port,
            dst_port: c.dst_port,
            flows: c.flows,
            frame_size: c.frame_size,
            warmup: Duration::from_millis(c.warmup_ms),
            duration: Duration::from_millis(c.duration_ms),
            new_flows: c.new_flows,
            flow_base: c.flow_base,
            fixed_dst_port: c.fixed_dst_port,
        }
    }
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    ctpath_testbed::parse_mac(text).ok_or_else(|| format!("{text:?} is not a MAC address"))
}

/// Parses a full `ctpath-bench generate ...` argv (for tests of the harness's command line).
#[cfg(test)]
pub fn parse_generate(argv: &[String]) -> Result<GenerateArgs, String> {
    match Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .command
    {
        Some(Command::Generate(g)) => Ok(g.into()),
        other => Err(format!("not a generate command: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn run_options_parse() {
        let cli = Cli::try_parse_from(["ctpath-bench", "--quick", "--cpus", "split"]).unwrap();
        assert!(cli.command.is_none());
        assert!(cli.run.quick);
        assert_eq!(cli.run.cpus, CpuMode::Split);
        let cli = Cli::try_parse_from(["ctpath-bench"]).unwrap();
        assert_eq!(cli.run.cpus, CpuMode::Same);
        assert!(Cli::try_parse_from(["ctpath-bench", "--cpus", "both"]).is_err());
    }
}
