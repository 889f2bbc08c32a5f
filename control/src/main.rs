//! The `ctpath` binary: sets up logging and hands the command line to `ctpath_control::cli`.

use std::process::ExitCode;

use clap::Parser;
use ctpath_control::cli::{self, Cli};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

fn main() -> ExitCode {
    init_logging();
    cli::run(Cli::parse())
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
