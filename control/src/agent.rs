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
    collections::{BTreeMap, BTreeSet},
    io,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime},
};

use aya::{
    programs::{xdp::XdpLinkId, XdpMode},
    Ebpf,
};
use ctpath_common::{maps::names, Counter, CounterKind, DropReason};
use signal_hook::{consts::signal::*, iterator::Signals};
use thiserror::Error;

use crate::{
    compile::{self, CompileError, NodePlan},
    conntrack,
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

/// How often the agent looks at signals and the state file.
const TICK: Duration = Duration::from_millis(250);
/// How often expired conntrack entries are collected.
const COLLECT_EVERY: Duration = Duration::from_secs(10);
/// How often a rejected state is tried again (e.g. a pod's veth not created yet).
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// The maps pinned under the pin directory for `ctpath status`.
const PINNED_MAPS: [&str; 4] = [
    DropReason::MAP_NAME,
    Counter::MAP_NAME,
    names::RULE_HITS,
    names::CONNTRACK,
];

/// Runs the agent until SIGTERM or SIGINT. `ready` is called once the datapath carries
/// traffic. The state file is read again when it changes or on SIGHUP: a valid new state is
/// applied as a diff (make before break); an invalid one is logged and the last good state
/// stays in force.
pub fn run(options: &AgentOptions, ready: impl FnOnce(&NodePlan)) -> Result<(), AgentError> {
    // Signals are blocked from here on, so one arriving during set-up is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(AgentError::Signals)?;
    let links = KernelLinks::open().map_err(AgentError::Links)?;
    let mut state_version = modified(&options.state);
    let plan = compile_state(options, &links)?;
    tracing::info!(
        node = %options.node,
        pod_interfaces = plan.pod_ports.len(),
        endpoints = plan.endpoints.len(),
        networks = plan.networks.len(),
        remote_vteps = plan.remote_vteps.len(),
        policies = plan.policy.policies.len(),
        policy_entries = plan.policy.entries.len(),
        "compiled the cluster state"
    );

    let mut running = Running::start(options, plan)?;
    ready(&running.plan);
    let mut last_collect = Instant::now();
    let mut retry_at: Option<Instant> = None;
    loop {
        let mut reload = retry_at.is_some_and(|at| Instant::now() >= at);
        for signal in signals.pending() {
            if signal == SIGHUP {
                reload = true;
            } else {
                tracing::info!(signal, "stopping: detaching programs and removing pins");
                return Ok(());
            }
        }
        let version = modified(&options.state);
        if version != state_version {
            state_version = version;
            reload = true;
        }
        if reload {
            retry_at = match compile_state(options, &links).and_then(|plan| running.update(plan)) {
                Ok(()) => None,
                Err(error) => {
                    tracing::error!(%error, "new cluster state not applied; the last good one stays in force");
                    // Interfaces the CNI has not created yet may appear; anything else waits
                    // for the next change of the file.
                    let may_resolve = matches!(
                        error,
                        AgentError::Compile(CompileError::MissingInterfaces { .. })
                    );
                    may_resolve.then(|| Instant::now() + RETRY_EVERY)
                }
            };
        }
        if last_collect.elapsed() >= COLLECT_EVERY {
            last_collect = Instant::now();
            running.collect_expired();
        }
        std::thread::sleep(TICK);
    }
}

fn compile_state(options: &AgentOptions, links: &KernelLinks) -> Result<NodePlan, AgentError> {
    let state = ClusterState::from_path(&options.state)?;
    Ok(compile::compile(&state, &options.node, links)?)
}

/// When the state file was last changed (none if it cannot be read: the next read reports it).
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

/// A started datapath: dropping it detaches the programs (their links close with `ebpf`).
struct Running {
    ebpf: Ebpf,
    plan: NodePlan,
    generation: u32,
    mode: XdpMode,
    /// `from_pod` links by interface name.
    pod_links: BTreeMap<String, XdpLinkId>,
    pins: Vec<PathBuf>,
    pin_dir: PathBuf,
    neighbours: BTreeSet<(String, String)>,
    /// The underlay's forwarding sysctl and the value to restore on stop.
    forwarding: Option<(PathBuf, String)>,
}

impl Running {
    fn start(options: &AgentOptions, plan: NodePlan) -> Result<Running, AgentError> {
        let mut ebpf = datapath::load_with(plan.conntrack_entries)?;
        datapath::apply_plan(&mut ebpf, None, &plan, 1)?;
        let mut running = Running {
            ebpf,
            plan,
            generation: 1,
            mode: options.xdp_mode,
            pod_links: BTreeMap::new(),
            pins: Vec::new(),
            pin_dir: options.pin_dir.clone(),
            neighbours: BTreeSet::new(),
            forwarding: None,
        };
        // On any error below, dropping `running` undoes what was done so far.
        let underlay = running.plan.underlay_interface.clone();
        running.enable_forwarding(&underlay)?;
        running.resolve_vteps()?;
        running.attach(XdpProgram::FromUnderlay, &underlay)?;
        running.sync_pod_links()?;
        running.pin_maps()?;
        Ok(running)
    }

    /// Applies `plan` in place of the running one.
    fn update(&mut self, plan: NodePlan) -> Result<(), AgentError> {
        if plan == self.plan {
            tracing::info!("cluster state changed, nothing for this node");
            return Ok(());
        }
        if plan.underlay_interface != self.plan.underlay_interface
            || plan.conntrack_entries != self.plan.conntrack_entries
        {
            tracing::warn!(
                "a new underlay interface or conntrack size takes effect when the agent restarts"
            );
        }
        let generation = self.generation + 1;
        datapath::apply_plan(&mut self.ebpf, Some(&self.plan), &plan, generation)?;
        self.generation = generation;
        self.plan = plan;
        self.resolve_vteps()?;
        self.sync_pod_links()?;
        tracing::info!(
            generation,
            pod_interfaces = self.plan.pod_ports.len(),
            endpoints = self.plan.endpoints.len(),
            policy_entries = self.plan.policy.entries.len(),
            "applied the new cluster state"
        );
        Ok(())
    }

    fn attach(&mut self, program: XdpProgram, interface: &str) -> Result<XdpLinkId, AgentError> {
        let xdp = datapath::xdp_program(&mut self.ebpf, program)?;
        let link = xdp
            .attach(interface, self.mode)
            .map_err(|source| AgentError::Attach {
                program: program.symbol(),
                interface: interface.to_owned(),
                source,
            })?;
        tracing::info!(program = program.symbol(), interface, mode = ?self.mode, "attached");
        Ok(link)
    }

    /// Attaches `from_pod` to the plan's pod interfaces that lack it, and detaches it from
    /// interfaces no longer in the plan.
    fn sync_pod_links(&mut self) -> Result<(), AgentError> {
        let wanted: BTreeSet<String> = self.plan.pod_interfaces.values().cloned().collect();
        let gone: Vec<String> = self
            .pod_links
            .keys()
            .filter(|name| !wanted.contains(*name))
            .cloned()
            .collect();
        for interface in gone {
            let link = self.pod_links.remove(&interface).expect("listed above");
            let xdp = datapath::xdp_program(&mut self.ebpf, XdpProgram::FromPod)?;
            // The interface may be gone already, taking the program with it.
            if let Err(error) = xdp.detach(link) {
                tracing::debug!(interface, %error, "detach");
            }
            tracing::info!(interface, "detached from_pod");
        }
        for interface in wanted {
            if !self.pod_links.contains_key(&interface) {
                let link = self.attach(XdpProgram::FromPod, &interface)?;
                self.pod_links.insert(interface, link);
            }
        }
        Ok(())
    }

    /// Removes expired conntrack entries, logging how many.
    fn collect_expired(&mut self) {
        let timeouts = self.plan.node.ct_timeouts;
        let Some(map) = self.ebpf.map_mut(names::CONNTRACK) else {
            return;
        };
        match conntrack::collect_expired(map, &timeouts) {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "collected expired conntrack entries"),
            Err(error) => tracing::warn!(%error, "collecting conntrack entries"),
        }
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
    fn resolve_vteps(&mut self) -> Result<(), AgentError> {
        let device = self.plan.underlay_interface.clone();
        for vtep in &self.plan.remote_vteps {
            let vtep = std::net::Ipv4Addr::from(*vtep).to_string();
            if self.neighbours.contains(&(vtep.clone(), device.clone())) {
                continue;
            }
            ip(&[
                "neigh",
                "replace",
                &vtep,
                "dev",
                &device,
                "managed",
                "extern_learn",
            ])
            .map_err(|message| AgentError::Neighbour {
                vtep: vtep.clone(),
                message,
            })?;
            self.neighbours.insert((vtep, device.clone()));
        }
        Ok(())
    }

    fn pin_maps(&mut self) -> Result<(), AgentError> {
        ensure_bpffs(&self.pin_dir)?;
        std::fs::create_dir_all(&self.pin_dir).map_err(|source| AgentError::PinDir {
            path: self.pin_dir.clone(),
            source,
        })?;
        for name in PINNED_MAPS {
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
        tracing::info!(pin_dir = %self.pin_dir.display(), "pinned the counter and conntrack maps");
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
