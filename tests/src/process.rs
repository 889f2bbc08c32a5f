//! Processes spawned inside testbed namespaces.
//!
//! Owns [`ChildGuard`] (kills and reaps one process on drop) and the per-testbed registry that
//! lets `Testbed::drop` kill stragglers whose guard is still alive (leaked, or held past the
//! testbed). Every child is started as the leader of its own process group, so killing it also
//! kills whatever it forked.
//!
//! Kill safety: a pid is only signalled while it is still registered, and a guard unregisters its
//! pid (under the registry lock) before reaping it, so a recycled pid is never signalled.
//!
//! Panic contract: nothing here panics; errors in `Drop` are printed to stderr.

use std::io;
use std::process::{Child, ChildStderr, ChildStdout, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Result, TestbedError};

/// Pids of the live children of one testbed.
#[derive(Debug, Default)]
pub(crate) struct ChildRegistry {
    pids: Mutex<Vec<u32>>,
}

impl ChildRegistry {
    fn lock(&self) -> MutexGuard<'_, Vec<u32>> {
        self.pids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// SIGKILLs the process group of every registered child and forgets them. The guards
    /// still reap their processes when they are dropped.
    pub(crate) fn kill_all(&self) {
        let mut pids = self.lock();
        for pid in pids.drain(..) {
            kill_group(pid);
        }
    }
}

/// Sends SIGKILL to the process group led by `pid`, or to `pid` alone if it has no group.
fn kill_group(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: killpg/kill only send a signal; they take plain integers and touch no memory. The
    // caller guarantees `pid` is an unreaped child of ours (still registered), so the id cannot
    // have been recycled for an unrelated process.
    unsafe {
        if libc::killpg(pid, libc::SIGKILL) != 0 {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// A process running inside a testbed namespace. Dropping the guard SIGKILLs the process (and
/// its process group) and reaps it.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    command: String,
    registry: Arc<ChildRegistry>,
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    pub(crate) fn new(child: Child, command: String, registry: Arc<ChildRegistry>) -> Self {
        registry.lock().push(child.id());
        Self {
            child,
            command,
            registry,
            exited: None,
        }
    }

    /// The process id (of `ip netns exec`, which has exec'd into the command).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line, space-joined.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Takes the child's stdout, if it was spawned with `Stdio::piped()`.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Takes the child's stderr, if it was spawned with `Stdio::piped()`.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Returns the exit status if the process has exited (and reaps it), without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_some() {
            return Ok(self.exited);
        }
        // Reap under the registry lock so `kill_all` never signals a reaped (recyclable) pid.
        let mut pids = self.registry.lock();
        let status = self.child.try_wait().map_err(|e| self.error(e))?;
        if let Some(status) = status {
            pids.retain(|&p| p != self.child.id());
            self.exited = Some(status);
        }
        Ok(status)
    }

    /// Polls until the process exits or `timeout` passes; `None` means it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the process group and reaps the process, returning its exit status.
    pub fn kill(mut self) -> Result<ExitStatus> {
        self.kill_and_reap()
    }

    fn kill_and_reap(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        {
            let mut pids = self.registry.lock();
            pids.retain(|&p| p != self.child.id());
            // Still unreaped here, so the pid is ours.
            kill_group(self.child.id());
        }
        let status = self.child.wait().map_err(|e| self.error(e))?;
        self.exited = Some(status);
        Ok(status)
    }

    fn error(&self, source: io::Error) -> TestbedError {
        TestbedError::Process {
            pid: self.child.id(),
            command: self.command.clone(),
            source,
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(e) = self.kill_and_reap() {
            eprintln!("ctpath-testbed: cannot reap child: {e}");
        }
    }
}
