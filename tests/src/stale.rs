//! Namespace naming and the sweep of namespaces left behind by dead runs.
//!
//! Owns the naming scheme: every namespace of a testbed is called `ct{pid}x{n}-{name}`, where
//! `pid` is this process and `n` a process-wide counter, so testbeds in parallel threads and
//! processes never clash and stay short. The scheme is what makes the sweep safe: a namespace
//! whose `pid` no longer exists belongs to a run that died without running `Drop` (SIGKILL,
//! abort, Ctrl-C); [`sweep`] kills any process still inside it and deletes it. The first sweep
//! of a process also deletes namespaces carrying this process's own pid: they come from an
//! earlier process that had the same (recycled) pid, since no testbed of ours exists yet.
//!
//! Panic contract: nothing here panics; sweep failures are printed to stderr.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use crate::netns::{self, NETNS_RUN_DIR};

static NEXT_TESTBED: AtomicU32 = AtomicU32::new(0);
static FIRST_SWEEP: Once = Once::new();

/// A fresh prefix `ct{pid}x{n}-` for one testbed.
pub(crate) fn next_prefix() -> String {
    let n = NEXT_TESTBED.fetch_add(1, Ordering::Relaxed);
    format!("ct{}x{}-", std::process::id(), n)
}

/// Deletes namespaces of dead runs (see the module docs). Best effort.
pub(crate) fn sweep() {
    let own = std::process::id();
    // Other threads calling `sweep` wait here until the first sweep is done, so no testbed of
    // this process can exist while namespaces with our own pid are deleted.
    FIRST_SWEEP.call_once(|| sweep_where(|pid| pid == own || !alive(pid)));
    sweep_where(|pid| pid != own && !alive(pid));
}

fn sweep_where(stale: impl Fn(u32) -> bool) {
    let Ok(entries) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return; // no namespaces at all yet
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = owner_pid(name) else { continue };
        if !stale(pid) {
            continue;
        }
        if let Err(e) = netns::delete(name) {
            // Another process may have swept it first.
            if std::path::Path::new(NETNS_RUN_DIR).join(name).exists() {
                eprintln!("ctpath-testbed: cannot delete stale namespace {name}: {e}");
            }
        }
    }
}

/// The pid in a `ct{pid}x{n}-…` name, or `None` for names not made by a testbed.
pub(crate) fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("ct")?;
    let (pid, rest) = rest.split_once('x')?;
    let (n, _) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_only_matches_testbed_names() {
        assert_eq!(owner_pid("ct1234x0-node-a"), Some(1234));
        assert_eq!(owner_pid("ct1x22-"), Some(1));
        assert_eq!(owner_pid("ctx0-a"), None);
        assert_eq!(owner_pid("ct12x-a"), None);
        assert_eq!(owner_pid("ct12y3-a"), None);
        assert_eq!(owner_pid("cni-1234"), None);
        assert_eq!(owner_pid("ct12x3"), None);
    }

    #[test]
    fn prefixes_are_unique_and_short() {
        let a = next_prefix();
        let b = next_prefix();
        assert_ne!(a, b);
        assert!(a.len() <= 20, "{a}");
        assert_eq!(owner_pid(&a), Some(std::process::id()));
    }
}
