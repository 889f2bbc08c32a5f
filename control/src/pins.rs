//! Finding an agent's pins from any mount namespace of the node.
//!
//! An agent whose `/sys/fs/bpf` is not a bpffs (under `ip netns exec`, which mounts a fresh
//! `/sys`) mounts one there itself, visible only in its own mount namespace; a `ctpath status`
//! run in another mount namespace (the host's, or another `ip netns exec`) does not see its
//! pins at the same path. The run directory (`/run/ctpath/NODE`) is on the host's `/run`,
//! which `ip netns exec` shares, so the agent records its pid there ([`PidFile`], `agent.pid`),
//! and [`locate`] looks for the pins first in this mount namespace, then as the agent sees
//! them: through `/proc/PID/root`, the agent's root in its own mount namespace (`BPF_OBJ_GET`
//! resolves such a path like any other and finds the pin on the agent's bpffs; verified on
//! Linux 6.18). When neither finds them the error says what was tried.
//!
//! Owns the pid file (written when the agent starts, removed when it returns; a killed agent
//! leaves it, and a pid that no longer runs is reported as such) and the lookup.

use std::{
    io,
    path::{Path, PathBuf},
};

use ctpath_common::{Counter, CounterKind};
use thiserror::Error;

/// The agent's pid file in its run directory.
pub const PID_FILE: &str = "agent.pid";

#[derive(Debug, Error)]
pub enum PinsError {
    #[error("writing the agent's pid file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no pins of an agent at {pin_dir} in this mount namespace (no {probe}), and {elsewhere}; \
         is the agent running?"
    )]
    NotFound {
        pin_dir: PathBuf,
        probe: PathBuf,
        /// What the lookup through the agent's pid found.
        elsewhere: String,
    },
}

/// The agent's pid in `run_dir`, written when created and removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Records this process's pid in `run_dir` (created if needed).
    pub fn write(run_dir: &Path) -> Result<PidFile, PinsError> {
        let path = run_dir.join(PID_FILE);
        let error = |source| PinsError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(run_dir).map_err(error)?;
        std::fs::write(&path, format!("{}\n", std::process::id())).map_err(error)?;
        Ok(PidFile { path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove the pid file");
        }
        // Empty once the forwarder's report is gone too.
        if let Some(run_dir) = self.path.parent() {
            let _ = std::fs::remove_dir(run_dir);
        }
    }
}

/// Where an agent's pins were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The pin directory as this process opens it.
    pub path: PathBuf,
    /// The agent's pid when the pins were found through its mount namespace
    /// (`/proc/PID/root`), none when they are in this one.
    pub through_pid: Option<u32>,
}

/// Finds the pins of the agent whose pin directory is `pin_dir` and run directory `run_dir`:
/// in this mount namespace, else through the mount namespace of the pid in the agent's pid
/// file (see the module docs).
pub fn locate(pin_dir: &Path, run_dir: &Path) -> Result<Located, PinsError> {
    let probe = pin_dir.join(Counter::MAP_NAME);
    if probe.exists() {
        return Ok(Located {
            path: pin_dir.to_owned(),
            through_pid: None,
        });
    }
    let not_found = |elsewhere: String| PinsError::NotFound {
        pin_dir: pin_dir.to_owned(),
        probe: probe.clone(),
        elsewhere,
    };
    let pid_path = run_dir.join(PID_FILE);
    let text = match std::fs::read_to_string(&pid_path) {
        Ok(text) => text,
        Err(error) => {
            return Err(not_found(format!(
                "no agent's pid to look through ({}: {error})",
                pid_path.display()
            )))
        }
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Err(not_found(format!(
            "{} holds no pid ({:?})",
            pid_path.display(),
            text.trim()
        )));
    };
    let Ok(relative) = pin_dir.strip_prefix("/") else {
        return Err(not_found(format!(
            "the pin directory is not absolute, so it cannot be looked up in the mount \
             namespace of agent pid {pid}"
        )));
    };
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    if !root.exists() {
        return Err(not_found(format!(
            "agent pid {pid} (from {}) is not running",
            pid_path.display()
        )));
    }
    let through = root.join(relative);
    if through.join(Counter::MAP_NAME).exists() {
        Ok(Located {
            path: through,
            through_pid: Some(pid),
        })
    } else {
        Err(not_found(format!(
            "not in the mount namespace of agent pid {pid} either (no {})",
            through.join(Counter::MAP_NAME).display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_is_written_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("node-a");
        let file = PidFile::write(&run_dir).unwrap();
        let text = std::fs::read_to_string(run_dir.join(PID_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(file);
        assert!(!run_dir.exists());
    }

    #[test]
    fn pins_in_this_namespace_are_used_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(Counter::MAP_NAME), "").unwrap();
        let located = locate(dir.path(), Path::new("/nonexistent")).unwrap();
        assert_eq!(located.path, dir.path());
        assert_eq!(located.through_pid, None);
    }

    #[test]
    fn pins_are_found_through_the_agents_mount_namespace() {
        // A process in a mount namespace of its own with a tmpfs over `pins`, holding the
        // probe: this process sees the directory empty, the other one sees the pin.
        let pins = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let script = format!(
            "mount -t tmpfs ctpath-test {dir} && touch {dir}/{probe} && echo ready && sleep 20",
            dir = pins.path().display(),
            probe = Counter::MAP_NAME
        );
        let mut agent = std::process::Command::new("unshare")
            // A user namespace too, so that it runs without root as well.
            .args([
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(agent.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready, "ready\n");
        assert!(!pins.path().join(Counter::MAP_NAME).exists());
        std::fs::write(run.path().join(PID_FILE), format!("{}\n", agent.id())).unwrap();
        let located = locate(pins.path(), run.path());
        agent.kill().unwrap();
        agent.wait().unwrap();
        let located = located.unwrap();
        assert_eq!(located.through_pid, Some(agent.id()));
        assert_eq!(
            located.path,
            PathBuf::from(format!("/proc/{}/root", agent.id()))
                .join(pins.path().strip_prefix("/").unwrap())
        );
        // Gone with its process: the pid is reported as not running.
        let error = locate(pins.path(), run.path()).unwrap_err().to_string();
        assert!(error.contains("is not running"), "{error}");
    }

    #[test]
    fn errors_say_what_was_tried() {
        let run = tempfile::tempdir().unwrap();
        let pin_dir = Path::new("/nonexistent/ctpath/node-a");
        let error = locate(pin_dir, run.path()).unwrap_err().to_string();
        assert!(
            error.contains("/nonexistent/ctpath/node-a/COUNTERS")
                && error.contains("no agent's pid to look through"),
            "{error}"
        );
        std::fs::write(run.path().join(PID_FILE), "garbage").unwrap();
        let error = locate(pin_dir, run.path()).unwrap_err().to_string();
        assert!(error.contains("holds no pid (\"garbage\")"), "{error}");
        // A pid that cannot be running (above the kernel's pid_max limit).
        std::fs::write(run.path().join(PID_FILE), "4194305\n").unwrap();
        let error = locate(pin_dir, run.path()).unwrap_err().to_string();
        assert!(error.contains("agent pid 4194305"), "{error}");
        assert!(error.contains("is not running"), "{error}");
        // A running pid whose mount namespace has no such pins either.
        std::fs::write(run.path().join(PID_FILE), format!("{}", std::process::id())).unwrap();
        let error = locate(pin_dir, run.path()).unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "not in the mount namespace of agent pid {} either (no /proc/{}/root/nonexistent/ctpath/node-a/COUNTERS)",
                std::process::id(),
                std::process::id()
            )),
            "{error}"
        );
    }
}
