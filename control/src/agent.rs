//! `ctpath agent`: the node agent. Reads the cluster state, compiles this node's plan, loads the
//! datapath, fills its maps, attaches `from_underlay` to the underlay interface and `from_pod`
//! to every local pod interface, pins the maps (for `ctpath status`), turns on IPv4 forwarding on
//! the underlay interface and asks the kernel to keep the other nodes' VTEPs resolved (both for
//! `bpf_fib_lookup`), then waits for SIGTERM or SIGINT and undoes all of it.
//!
//! Runs in the caller's network namespace. The pin directory must be on a bpffs; when the
//! default `/sys/fs/bpf` is not one (as inside `ip netns exec`, which mounts a fresh `/sys`),
//! the agent mounts bpffs there. Such a mount is private to the agent's mount namespace, so
//! `ctpath status` only finds the pins from the same mount namespace.

use std::{
    io,
    path::{Path, PathBuf},
    process::Command,
};

use aya::{programs::XdpMode, Ebpf};
use ctpath_common::{Counter, CounterKind, DropReason};
use signal_hook::{consts::signal::*, iterator::Signals};
use thiserror::Error;

use crate::{
    compile::{self, CompileError, NodePlan},
    datapath::{self, DatapathError, XdpProgram},
    links::KernelLinks,
    state::{ClusterState, StateError},
};

/// Where bpffs is mounted on a host.
pub const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The default pin directory of a node's agent.
pub fn default_pin_dir(node: &str) -> PathBuf {
    Path::new(BPFFS).join("ctpath").join(node)
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("reading interfaces: {0}")]
    Links(io::Error),
    #[error("attaching {program} to {interface}: {source}")]
    Attach {
        program: &'static str,
        interface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pin directory {0} is not on a bpffs, and is not under {BPFFS} where the agent could mount one")]
    NotBpffs(PathBuf),
    #[error("pinning map {name} at {path}: {source}")]
    Pin {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("installing the neighbour entry of VTEP {vtep}: {message}")]
    Neighbour { vtep: String, message: String },
    #[error("turning on IPv4 forwarding on {interface} ({path}): {source}")]
    Forwarding {
        interface: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("installing signal handlers: {0}")]
    Signals(io::Error),
}

impl AgentError {
    /// Whether the error is the input's fault (exit status 2) rather than the system's.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            AgentError::State(_) | AgentError::Compile(CompileError::UnknownNode(_))
        )
    }
}

pub struct AgentOptions {
    pub state: PathBuf,
    pub node: String,
    pub pin_dir: PathBuf,
    pub xdp_mode: XdpMode,
}

/// Runs the agent until SIGTERM or SIGINT. `ready` is called once the datapath carries
/// traffic.
pub fn run(options: &AgentOptions, ready: impl FnOnce(&NodePlan)) -> Result<(), AgentError> {
    // Signals are blocked from here on, so one arriving during set-up is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(AgentError::Signals)?;
    let state = ClusterState::from_path(&options.state)?;
    let links = KernelLinks::open().map_err(AgentError::Links)?;
    let plan = compile::compile(&state, &options.node, &links)?;
    tracing::info!(
        node = %options.node,
        pod_interfaces = plan.pod_ports.len(),
        endpoints = plan.endpoints.len(),
        networks = plan.networks.len(),
        remote_vteps = plan.remote_vteps.len(),
        "compiled the cluster state"
    );

    let running = Running::start(options, &plan)?;
    ready(&plan);
    let signal = signals.forever().next();
    tracing::info!(?signal, "stopping: detaching programs and removing pins");
    drop(running);
    Ok(())
}

/// A started datapath: dropping it detaches the programs (their links close with `ebpf`).
struct Running {
    ebpf: Ebpf,
    pins: Vec<PathBuf>,
    pin_dir: PathBuf,
    neighbours: Vec<(String, String)>,
    /// The underlay's forwarding sysctl and the value to restore on stop.
    forwarding: Option<(PathBuf, String)>,
}

impl Running {
    fn start(options: &AgentOptions, plan: &NodePlan) -> Result<Running, AgentError> {
        let mut ebpf = datapath::load()?;
        datapath::write_plan(&mut ebpf, plan)?;
        let mut running = Running {
            ebpf,
            pins: Vec::new(),
            pin_dir: options.pin_dir.clone(),
            neighbours: Vec::new(),
            forwarding: None,
        };
        // On any error below, dropping `running` undoes what was done so far.
        running.enable_forwarding(&plan.underlay_interface)?;
        running.resolve_vteps(plan)?;
        running.attach(
            XdpProgram::FromUnderlay,
            &plan.underlay_interface,
            options.xdp_mode,
        )?;
        for interface in plan.pod_interfaces.values() {
            running.attach(XdpProgram::FromPod, interface, options.xdp_mode)?;
        }
        running.pin_maps()?;
        Ok(running)
    }

    fn attach(
        &mut self,
        program: XdpProgram,
        interface: &str,
        mode: XdpMode,
    ) -> Result<(), AgentError> {
        let xdp = datapath::xdp_program(&mut self.ebpf, program)?;
        xdp.attach(interface, mode)
            .map_err(|source| AgentError::Attach {
                program: program.symbol(),
                interface: interface.to_owned(),
                source,
            })?;
        tracing::info!(program = program.symbol(), interface, ?mode, "attached");
        Ok(())
    }

    /// `bpf_fib_lookup` refuses to work on a device without IPv4 forwarding, even for an
    /// egress lookup; the underlay needs it on (the node forwards nothing in the kernel still:
    /// it has no routes to forward along).
    fn enable_forwarding(&mut self, interface: &str) -> Result<(), AgentError> {
        let path = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{interface}/forwarding"));
        let error = |source| AgentError::Forwarding {
            interface: interface.to_owned(),
            path: path.display().to_string(),
            source,
        };
        let previous = std::fs::read_to_string(&path)
            .map_err(error)?
            .trim()
            .to_owned();
        if previous != "1" {
            std::fs::write(&path, "1").map_err(error)?;
            tracing::info!(
                interface,
                "turned on IPv4 forwarding on the underlay (bpf_fib_lookup needs it)"
            );
            self.forwarding = Some((path, previous));
        }
        Ok(())
    }

    /// Managed neighbour entries: the kernel resolves them and keeps them fresh, so
    /// `bpf_fib_lookup` finds the next hop towards every other node's VTEP.
    fn resolve_vteps(&mut self, plan: &NodePlan) -> Result<(), AgentError> {
        for vtep in &plan.remote_vteps {
            let vtep = std::net::Ipv4Addr::from(*vtep).to_string();
            ip(&[
                "neigh",
                "replace",
                &vtep,
                "dev",
                &plan.underlay_interface,
                "managed",
                "extern_learn",
            ])
            .map_err(|message| AgentError::Neighbour {
                vtep: vtep.clone(),
                message,
            })?;
            self.neighbours
                .push((vtep, plan.underlay_interface.clone()));
        }
        Ok(())
    }

    fn pin_maps(&mut self) -> Result<(), AgentError> {
        ensure_bpffs(&self.pin_dir)?;
        std::fs::create_dir_all(&self.pin_dir).map_err(|source| AgentError::PinDir {
            path: self.pin_dir.clone(),
            source,
        })?;
        for name in [DropReason::MAP_NAME, Counter::MAP_NAME] {
            let path = self.pin_dir.join(name);
            // A pin left by an agent that was killed is stale: replace it.
            let _ = std::fs::remove_file(&path);
            datapath::map(&self.ebpf, name)?
                .pin(&path)
                .map_err(|source| AgentError::Pin {
                    name,
                    path: path.clone(),
                    source,
                })?;
            self.pins.push(path);
        }
        tracing::info!(pin_dir = %self.pin_dir.display(), "pinned the counter maps");
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for pin in &self.pins {
            if let Err(error) = std::fs::remove_file(pin) {
                tracing::warn!(pin = %pin.display(), %error, "could not remove pin");
            }
        }
        let _ = std::fs::remove_dir(&self.pin_dir);
        if let Some((path, previous)) = &self.forwarding {
            if let Err(error) = std::fs::write(path, previous) {
                tracing::warn!(path = %path.display(), %error, "could not restore the forwarding setting");
            }
        }
        for (vtep, device) in &self.neighbours {
            if let Err(message) = ip(&["neigh", "del", vtep, "dev", device]) {
                tracing::warn!(vtep, message, "could not remove neighbour entry");
            }
        }
    }
}

/// Runs `ip ARGS`, returning its stderr as the error.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| format!("running ip: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Makes sure `pin_dir` is on a bpffs, mounting one at [`BPFFS`] if that is where it belongs.
fn ensure_bpffs(pin_dir: &Path) -> Result<(), AgentError> {
    let existing = pin_dir
        .ancestors()
        .find(|dir| dir.exists())
        .unwrap_or(Path::new("/"));
    if fs_type(existing).map_err(|source| AgentError::PinDir {
        path: existing.to_owned(),
        source,
    })? == BPF_FS_MAGIC
    {
        return Ok(());
    }
    if !pin_dir.starts_with(BPFFS) {
        return Err(AgentError::NotBpffs(pin_dir.to_owned()));
    }
    tracing::info!(mount_point = BPFFS, "bpffs not mounted here: mounting it");
    let target = std::ffi::CString::new(BPFFS).expect("no NUL");
    // SAFETY: all pointers are to NUL-terminated strings that outlive the call; `data` may be
    // null for bpffs.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(AgentError::PinDir {
            path: BPFFS.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn fs_type(path: &Path) -> io::Result<i64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with NUL"))?;
    // SAFETY: `statfs` is a plain C struct for which all zeros is valid.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` a valid, writable `statfs`.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type as i64)
}
