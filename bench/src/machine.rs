//! The description of the machine a run was taken on, recorded with every result: CPU model,
//! CPU count, kernel release, and the versions of the kernel-path tools that matter.
//!
//! Panic contract: nothing here panics; what cannot be read is recorded as `unknown`.

use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `iptables --version` (says which backend: nf_tables or legacy).
    pub iptables: String,
    /// `iperf3 --version`, first line.
    pub iperf3: String,
    /// /proc/loadavg when the run started (another busy process skews every figure).
    pub loadavg: String,
    /// The ctpath commit the harness was built from, when run from a git checkout.
    pub ctpath_commit: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            iptables: first_line(&["iptables", "--version"]),
            iperf3: first_line(&["iperf3", "--version"]),
            ctpath_commit: first_line(&["git", "describe", "--always", "--dirty", "--abbrev=12"]),
        }
    }
}

fn first_line(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_this_machine() {
        let m = Machine::describe();
        assert!(m.cpus >= 1);
        assert!(!m.kernel.is_empty());
    }
}
