//! `ctpath-cni`: the CNI plugin binary. Reads the environment and stdin, prints the result or
//! a CNI error object on stdout, and exits 1 on error (see the library, `ctpath_cni`).

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => ctpath_cni::run(|name| std::env::var(name).ok(), &stdin),
        Err(error) => {
            Err(ctpath_cni::config::ConfigError::Decode(format!("reading stdin: {error}")).into())
        }
    };
    match outcome {
        Ok(output) => {
            if let Some(output) = output {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!(
                "{}",
                serde_json::to_string(&error.to_object()).unwrap_or_default()
            );
            ExitCode::FAILURE
        }
    }
}
