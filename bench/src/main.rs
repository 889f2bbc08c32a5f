//! `ctpath-bench`: ctpath against the kernel path on veth, side by side in one run. See
//! `bench/README.md` for what it measures, how, and how to reproduce the committed results.
//!
//! Modules, one concern each:
//! - `cli`: the command line.
//! - `run`: one run start to end: topologies, interleaved cases, progress, outputs.
//! - `topology`: the kernel, ctpath-xdp, ctpath-tc, ctpath-afxdp, ceiling and generator-only
//!   topologies (on the shared testbed), the security group as cluster state and as iptables
//!   rules, the probes (sinks, redirect), what each topology's interfaces ended up with.
//! - `forwarder`: ctpath-afxdp's checks against the agents' forwarder report (placement, and
//!   that every sample went through the forwarder).
//! - `generator`: the AF_XDP TX flood (one flow, many, or a new flow per frame), run as
//!   `ctpath-bench generate` inside the source pod.
//! - `measure`: one pps (or new-connections), latency or TCP sample.
//! - `cpus`: `--cpus same|split` and the pinning behind it.
//! - `machine`: the machine's description.
//! - `report`: the JSON record, summary, table, headline ratios, sanity checks.
//! - `plot`: the PNG plots.
//! - `scale`: `ctpath-bench scale`, the control plane at scale (convergence, updates under
//!   traffic, compile and load of a large state, agent memory).
//! - `services`: `ctpath-bench services`, kube-proxy's iptables rules against ctpath's
//!   services at 1 to 10,000 services.

mod cli;
mod cpus;
mod forwarder;
mod generator;
mod machine;
mod measure;
mod plot;
mod report;
mod run;
mod scale;
mod services;
mod topology;

use std::process::ExitCode;

use clap::Parser;

use crate::{
    cli::{Cli, Command},
    report::Results,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Generate(args)) => {
            let args = generator::GenerateArgs::from(args);
            match generator::run(&args, &mut std::io::stdout().lock()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ctpath-bench generate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Hold {
            topology,
            rules,
            cpus,
            seconds,
            no_sink,
        }) => match run::hold(topology, rules, cpus, seconds, !no_sink) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ctpath-bench hold: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Scale(args)) => finish(
            "scale",
            scale::run(&args).map(|r| (scale::summary(&r), r.problems())),
            &args.out,
            "every phase produced its figures",
        ),
        Some(Command::Services(args)) => finish(
            "services",
            services::run(&args).map(|r| (services::table(&r), r.problems())),
            &args.out,
            "every sample ran and produced non-zero, sane figures",
        ),
        Some(Command::Report { results, out }) => {
            let dir = out.unwrap_or_else(|| {
                results
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default()
            });
            let outcome = Results::read_json(&results)
                .map_err(run::RunError::from)
                .and_then(|mut r| {
                    r.headline = r.compute_headline();
                    run::write_outputs(&r, &dir)
                });
            match outcome {
                Ok(table) => {
                    print!("{table}");
                    println!("written to {}", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ctpath-bench report: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => match run::run(&cli.run) {
            Ok(results) => {
                println!();
                print!("{}", report::table(&results));
                println!(
                    "\nresults, table and plots in {} ({:.0} s)",
                    cli.run.out.display(),
                    results.duration_seconds
                );
                let problems = report::sanity_problems(&results);
                if problems.is_empty() {
                    println!("every case ran and produced non-zero, sane figures");
                    ExitCode::SUCCESS
                } else {
                    eprintln!("ctpath-bench: {} problem(s):", problems.len());
                    for p in &problems {
                        eprintln!("  {p}");
                    }
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("ctpath-bench: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The end of a subcommand that wrote its results to `out`: its summary, then `fine` or the
/// number of problems (exit status 1), or the error that stopped it.
fn finish<E: std::fmt::Display>(
    name: &str,
    outcome: Result<(String, Vec<String>), E>,
    out: &std::path::Path,
    fine: &str,
) -> ExitCode {
    match outcome {
        Ok((summary, problems)) => {
            print!("{summary}");
            println!("written to {}", out.display());
            if problems.is_empty() {
                println!("{fine}");
                ExitCode::SUCCESS
            } else {
                eprintln!("ctpath-bench {name}: {} problem(s)", problems.len());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ctpath-bench {name}: {e}");
            ExitCode::FAILURE
        }
    }
}
