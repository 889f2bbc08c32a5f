//! `ctpath agent`: the node agent. Reads the cluster state, compiles this node's plan, loads the
//! datapath over the maps pinned in its pin directory, writes the plan into them, attaches
//! `from_underlay` (XDP, with `from_underlay_tc` behind it as a tcx ingress program) to the
//! underlay interface and `from_pod` to every local pod interface (`from_pod_tc`, tcx ingress,
//! on planes with `datapath: tc`; XDP on the others) after setting what each needs at the
//! pod's end ([`pod_side`]; the endpoints whose end runs NAPI are flagged for the NIC's XDP to
//! redirect into), turns on IPv4 forwarding on the underlay
//! interface and asks the kernel to keep the other nodes' VTEPs resolved (both for
//! `bpf_fib_lookup`), then follows the state source until SIGTERM or SIGINT.
//!
//! The state source ([`StateSource`]) is a file, read again when it changes or on SIGHUP, or
//! etcd, listed and then watched by [`store::watch`] (which reconnects, resumes and relists on
//! its own). Either way each new state goes down the same pipeline: the source, then
//! [`compile::compile`] (a pure function of the state and the node's interfaces), then
//! `Running::update`, which applies the plan as a diff against the one running, in
//! [`Step`]s: the maps (make before break), the VTEPs' neighbour entries, the next hops, the
//! programs on the pod interfaces, the AF_XDP forwarder. What became of the state is one
//! [`Reload`], and one line of the reload log: applied (with its generation), unchanged for
//! this node, refused (it did not validate or compile: where it came from, the file or the etcd
//! revision, and the keys and paths at fault; nothing changed), or partly applied (which steps
//! ran, which failed and why, and that the last good state was applied again: the maps by a
//! reconcile, as they may hold part of the new plan, the other steps as they converge). The
//! last good state stays in force. While etcd is unreachable nothing new arrives and the
//! datapath stays as it is.
//!
//! What the agent owns, all of it under its pin directory (`/sys/fs/bpf/ctpath/NODE` by
//! default): every map of the datapath, pinned as `NAME` ([`datapath::PINNED_MAPS`]), and every
//! attachment, a bpf_link pinned as `link_IFNAME` (XDP) or `tcx_IFNAME` (tcx); besides those,
//! as guards of [`crate::host`], the bpffs mount it made, IPv4 forwarding on the underlay and
//! the VTEPs' managed neighbour entries (over rtnetlink: made for every other node of the
//! state, deleted for a node that leaves it); and the AF_XDP forwarder (`fastpath`).
//!
//! What survives the agent: a crash, `kill -9`, or a failed start-up of an agent that had
//! taken over, leaves the links and maps pinned, so the programs go on forwarding with the last
//! configuration, conntrack and counters included (and the sysctl and neighbour entries stay).
//! Only the AF_XDP forwarder, threads of the agent, dies with it. The next agent started with the same pin directory takes over: it
//! reuses the pinned maps ([`datapath::load_pinned`]), writes its plan over them as a reconcile
//! ([`datapath::reconcile`]: upserts, the node entry with the next policy generation, then the
//! removal of what the plan no longer has), and adopts each pinned link by replacing its program
//! in place (`bpf_link_update`: the interface is never without a program). A pinned link whose
//! interface was deleted or re-created is replaced by a new one; pins of interfaces no longer in
//! the plan are removed (their programs detach). Only a clean stop (SIGTERM, SIGINT) undoes it
//! all: the forwarder stops, the links are unpinned and detached, the map pins and the pin
//! directory removed, the sysctl restored, the neighbour entries deleted. (An agent that took
//! over finds forwarding on and cannot know what it was before the first agent: it leaves it
//! on.) The guards go in the reverse order of their making: the forwarder, the links, the
//! neighbour entries, the sysctl, the map pins and the pin directory, the bpffs mount.
//!
//! Runs in the caller's network namespace. The pin directory must be on a bpffs; when the
//! default `/sys/fs/bpf` is not one (as inside `ip netns exec`, which mounts a fresh `/sys`),
//! the agent mounts bpffs there. Such a mount is private to the agent's mount namespace, and
//! the pins (and with them the datapath) do not outlive that mount namespace, so an agent
//! meant to survive a crash runs in the host's mount namespace. `ctpath status` finds the pins
//! from any mount namespace all the same: the agent writes its pid into its run directory
//! (`agent.pid`, on the host's `/run`, which `ip netns exec` shares), and status looks through
//! `/proc/PID/root` when the pins are not in its own ([`crate::pins`]).
//!
//! With `--metrics` ([`AgentOptions::metrics`]) the agent reports each attempt to apply a state
//! (its etcd revision, how long it took, its outcome) to the `/metrics` exporter
//! ([`crate::metrics`]).

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    time::{Duration, Instant, SystemTime},
};

use aya::{
    programs::{
        links::{FdLink, LinkOrder, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
        TcAttachType, XdpMode,
    },
    Ebpf,
};
use ctpath_common::maps::names;
use signal_hook::{consts::signal::*, iterator::Signals};
use thiserror::Error;

use crate::{
    compile::{self, CompileError, NodePlan},
    conntrack,
    datapath::{self, DatapathError, TcProgram, XdpProgram},
    fastpath::{self, FastPath, FastPathError},
    host::{Bpffs, Forwarding, HostError, PinDir, VtepNeighbours},
    links::KernelLinks,
    metrics::{AgentReport, ApplyResult},
    nexthop::NextHops,
    pins::{PidFile, PinsError},
    pod_side::{self, HostHook},
    state::{ClusterState, StateError},
    store::{self, Observed, StoreError},
};

pub use crate::host::BPFFS;

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
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("pinning the link of {interface} at {path}: {source}")]
    PinLink {
        interface: String,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("the attachment of {interface} is not a bpf_link (the kernel fell back to netlink), so it cannot be pinned: {source}")]
    NotALink {
        interface: String,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("installing signal handlers: {0}")]
    Signals(io::Error),
    #[error(transparent)]
    FastPath(#[from] FastPathError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the etcd watch stopped")]
    WatchEnded,
    #[error(transparent)]
    Pins(#[from] PinsError),
}

impl AgentError {
    /// Whether the error is the input's fault (exit status 2) rather than the system's.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            AgentError::State(_) | AgentError::Compile(CompileError::UnknownNode(_)) => true,
            AgentError::Store(error) => error.is_invalid_input(),
            _ => false,
        }
    }
}

/// Where the agent's cluster state comes from.
pub enum StateSource {
    /// A YAML file, read again when it changes or on SIGHUP.
    File(PathBuf),
    /// The keys under `prefix` in the etcd cluster at `endpoints` ([`crate::store`]).
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

pub struct AgentOptions {
    pub source: StateSource,
    pub node: String,
    pub pin_dir: PathBuf,
    /// Where the agent writes what `ctpath status` reads besides the pins (its pid, the
    /// forwarder's report).
    pub run_dir: PathBuf,
    pub xdp_mode: XdpMode,
    /// Cores of the AF_XDP forwarder's workers (one each), for the fast-path planes.
    pub fastpath_cores: Vec<usize>,
    /// Where to report each attempt to apply a state (`--metrics`).
    pub metrics: Option<AgentReport>,
}

/// How often the agent looks at signals and a state file (a state from etcd is taken in as it
/// comes).
const TICK: Duration = Duration::from_millis(250);
/// How often expired conntrack entries are collected.
const COLLECT_EVERY: Duration = Duration::from_secs(10);
/// How often a rejected state is tried again (e.g. a pod's veth not created yet).
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// How often the forwarder's report is written and the underlay next hops are read again.
const FAST_PATH_EVERY: Duration = Duration::from_secs(1);

/// Runs the agent until SIGTERM or SIGINT. `ready` is called once the datapath carries
/// traffic. Each new state of the source is applied as a diff (make before break); an invalid
/// one is logged and the last good state stays in force. The first state must be valid when it
/// comes from a file; from etcd, the agent waits for a valid one that names its node, whose
/// pod interfaces on the node exist and that has no services (not carried yet).
pub fn run(options: &AgentOptions, ready: impl FnOnce(&NodePlan)) -> Result<(), AgentError> {
    // Signals are blocked from here on, so one arriving during set-up is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(AgentError::Signals)?;
    let links = KernelLinks::open().map_err(AgentError::Links)?;
    // Dropped last: `ctpath status` finds the pins through it while the agent runs.
    let _pid_file = PidFile::write(&options.run_dir)?;
    let mut follower = Follower::open(&options.source)?;
    let Some(FirstState {
        origin,
        revision,
        state,
        plan,
    }) = first_plan(&mut follower, &mut signals, &options.node, &links)?
    else {
        tracing::info!("stopping before a state this node can run arrived");
        return Ok(());
    };
    let started = Instant::now();
    tracing::info!(
        origin,
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
    if let Some(metrics) = &options.metrics {
        metrics.applied(
            revision,
            started.elapsed(),
            ApplyResult::Applied,
            Some(&state),
        );
    }
    ready(&running.plan);
    let mut last_collect = Instant::now();
    let mut last_fast_path = Instant::now();
    let mut retry_at: Option<Instant> = None;
    loop {
        let mut again = retry_at.is_some_and(|at| Instant::now() >= at);
        for signal in signals.pending() {
            if signal == SIGHUP {
                again = true;
            } else {
                tracing::info!(signal, "stopping: detaching programs and removing pins");
                running.stop();
                return Ok(());
            }
        }
        // A watch that stopped (its thread gone) ends the agent as a crash does: the datapath
        // stays pinned for the next agent.
        if let Some(offer) = follower.next(again)? {
            let started = Instant::now();
            let (reload, state) = match offer
                .state
                .and_then(|state| Ok((compile::compile(&state, &options.node, &links)?, state)))
            {
                Ok((plan, state)) => (running.update(plan), Some(state)),
                Err(error) => (Reload::Refused(error), None),
            };
            reload.log(&offer.origin, &running.plan);
            if let Some(metrics) = &options.metrics {
                let in_force = state.as_ref().filter(|_| reload.in_force());
                metrics.applied(offer.revision, started.elapsed(), reload.result(), in_force);
            }
            // Interfaces the CNI has not created yet may appear; a node left with parts of two
            // states (its rollback failed) is brought to one as soon as it can be. Anything
            // else waits for the next change of the state, or a SIGHUP.
            retry_at = match &reload {
                Reload::Refused(AgentError::Compile(CompileError::MissingInterfaces {
                    ..
                }))
                | Reload::RolledBack {
                    rollback: Err(_), ..
                } => Some(Instant::now() + RETRY_EVERY),
                _ => None,
            };
        }
        if last_collect.elapsed() >= COLLECT_EVERY {
            last_collect = Instant::now();
            running.collect_expired();
        }
        if last_fast_path.elapsed() >= FAST_PATH_EVERY {
            last_fast_path = Instant::now();
            if let Err(error) = running.refresh_next_hops(false) {
                tracing::warn!(%error, "underlay next hops not written");
            }
            running.fast_path_tick();
        }
        follower.wait(TICK);
    }
}

/// The first state this node can run, compiled: the file's, whatever is wrong with it an error; from etcd the first that validates and compiles,
/// waited for. A state from etcd that does not validate is logged; one that does not name this
/// node yet, lacks the interfaces of its pods here (the CNI has not made them yet) or has
/// services is logged and compiled again every `RETRY_EVERY` and with every new revision.
/// `None` when a stop signal came first.
fn first_plan(
    follower: &mut Follower,
    signals: &mut Signals,
    node: &str,
    links: &KernelLinks,
) -> Result<Option<FirstState>, AgentError> {
    // The first look takes the file, or etcd's state if one has come.
    let mut retry_at = Some(Instant::now());
    loop {
        if signals.pending().any(|signal| signal != SIGHUP) {
            return Ok(None);
        }
        let again = retry_at.is_some_and(|at| Instant::now() >= at);
        let Some(Offer {
            origin,
            revision,
            state,
        }) = follower.next(again)?
        else {
            follower.wait(TICK);
            continue;
        };
        retry_at = None;
        let waiting = match state {
            Ok(state) => match compile::compile(&state, node, links) {
                Ok(plan) => {
                    return Ok(Some(FirstState {
                        origin,
                        revision,
                        state,
                        plan,
                    }))
                }
                Err(
                    error @ (CompileError::UnknownNode(_) | CompileError::MissingInterfaces { .. }),
                ) if follower.is_etcd() => {
                    retry_at = Some(Instant::now() + RETRY_EVERY);
                    format!("{error}; waiting for a state this node can run")
                }
                Err(error) => return Err(error.into()),
            },
            Err(error) if follower.is_etcd() => format!("{error}; waiting for a valid state"),
            Err(error) => return Err(error),
        };
        tracing::error!("refused {origin}: {waiting}");
    }
}

/// The state an agent starts with, and its plan.
struct FirstState {
    origin: String,
    revision: Option<i64>,
    state: Arc<ClusterState>,
    plan: NodePlan,
}

/// A cluster state for the agent, and where it came from (for logs; its etcd revision, none
/// for a file, for the metrics).
struct Offer {
    origin: String,
    revision: Option<i64>,
    /// Shared: the follower keeps the last good one, the metrics the one in force.
    state: Result<Arc<ClusterState>, AgentError>,
}

/// The state source as the agent follows it.
enum Follower {
    File {
        path: PathBuf,
        /// When the file was last changed, as last seen.
        version: Option<SystemTime>,
    },
    Etcd {
        updates: mpsc::Receiver<Observed>,
        /// A state received while waiting ([`Follower::wait`]), not offered yet.
        arrived: Option<Box<Observed>>,
        /// The last valid state seen, with its revision, to offer again.
        last_good: Option<(i64, Arc<ClusterState>)>,
    },
}

impl Follower {
    fn open(source: &StateSource) -> Result<Follower, AgentError> {
        Ok(match source {
            StateSource::File(path) => Follower::File {
                path: path.clone(),
                version: modified(path),
            },
            StateSource::Etcd { endpoints, prefix } => Follower::Etcd {
                updates: store::watch(endpoints, prefix)?,
                arrived: None,
                last_good: None,
            },
        })
    }

    fn is_etcd(&self) -> bool {
        matches!(self, Follower::Etcd { .. })
    }

    /// Waits up to `timeout`, less when etcd sends a state: a new revision is taken in as it
    /// comes, not at the next tick. (A file is looked at once per tick.)
    fn wait(&mut self, timeout: Duration) {
        match self {
            Follower::File { .. } => std::thread::sleep(timeout),
            Follower::Etcd {
                updates, arrived, ..
            } => {
                if arrived.is_none() {
                    // Disconnected: `next` reports it.
                    *arrived = updates.recv_timeout(timeout).ok().map(Box::new);
                }
            }
        }
    }

    /// A new state, if the source has one; with `again`, the current one in any case (a
    /// SIGHUP, or a retry of a state that could not be applied yet).
    fn next(&mut self, again: bool) -> Result<Option<Offer>, AgentError> {
        match self {
            Follower::File { path, version } => {
                let now = modified(path);
                if now == *version && !again {
                    return Ok(None);
                }
                *version = now;
                Ok(Some(Offer {
                    origin: format!("state file {}", path.display()),
                    revision: None,
                    state: ClusterState::from_path(path)
                        .map(Arc::new)
                        .map_err(AgentError::from),
                }))
            }
            Follower::Etcd {
                updates,
                arrived,
                last_good,
            } => {
                // Only the newest matters: the ones before it are superseded.
                let mut newest = arrived.take().map(|observed| *observed);
                loop {
                    match updates.try_recv() {
                        Ok(observed) => newest = Some(observed),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            return Err(AgentError::WatchEnded)
                        }
                    }
                }
                let offer = match newest {
                    Some(Observed { revision, state }) => {
                        let state = state.map(Arc::new);
                        if let Ok(state) = &state {
                            *last_good = Some((revision, state.clone()));
                        }
                        Offer {
                            origin: etcd_origin(revision),
                            revision: Some(revision),
                            state: state.map_err(AgentError::from),
                        }
                    }
                    None => match last_good {
                        Some((revision, state)) if again => Offer {
                            origin: etcd_origin(*revision),
                            revision: Some(*revision),
                            state: Ok(state.clone()),
                        },
                        _ => return Ok(None),
                    },
                };
                Ok(Some(offer))
            }
        }
    }
}

fn etcd_origin(revision: i64) -> String {
    format!("etcd revision {revision}")
}

/// Whether the plan has a plane the AF_XDP forwarder carries.
fn has_fast_path(plan: &NodePlan) -> bool {
    !fastpath::fast_planes(plan).is_empty()
}

/// When the state file was last changed (none if it cannot be read: the next read reports it).
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

/// A started datapath. [`Running::stop`] takes it down: its fields are dropped in order, each
/// undoing what it holds: the forwarder first, then the links (their programs detach), the
/// VTEPs' neighbour entries, the forwarding sysctl, the map pins and the pin directory, the
/// bpffs mount (the reverse of the order they were made in). Dropped any other way (an error
/// at start-up after it took over a running datapath, a panic) it keeps them all: the programs
/// stay attached and the maps pinned, as a `kill -9` leaves them, for the next agent to adopt.
struct Running {
    /// First field: dropped first, so its sockets close while the programs still run.
    fast_path: Option<FastPath>,
    /// The pinned links (XDP and tcx) by pin name (`link_IFNAME`, `tcx_IFNAME`).
    links: BTreeMap<String, PinnedProgram>,
    neighbours: VtepNeighbours,
    forwarding: Forwarding,
    pin_dir: PinDir,
    fastpath_cores: Vec<usize>,
    run_dir: PathBuf,
    ebpf: Ebpf,
    plan: NodePlan,
    generation: u32,
    mode: XdpMode,
    /// Whether dropping takes the datapath down (see the type's doc).
    teardown: bool,
    /// The remote VTEPs' next hops, as written into `NEXT_HOPS`.
    next_hops: NextHops,
    /// Pod interfaces (host-side ifindex) whose pod end is set for their hook
    /// ([`prepare_pod_sides`]).
    pod_sides: BTreeMap<u32, PodEnd>,
    /// Last: unmounted (if this agent mounted it and it is empty) after everything else went.
    bpffs: Bpffs,
}

/// One step of applying a plan, in the order they run: each makes one part of the node match
/// the running plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Programs on the pod interfaces that have none yet ([`Running::attach_new_pod_links`]).
    NewPodLinks,
    /// The configuration maps, as a diff against the plan before (make before break).
    Maps,
    /// The managed neighbour entries of the remote VTEPs (created, and deleted for nodes gone).
    Neighbours,
    /// The underlay next hops in `NEXT_HOPS` and the forwarder's tables.
    NextHops,
    /// `from_pod` / `from_pod_tc` on every pod interface, and only there.
    PodLinks,
    /// The AF_XDP forwarder: started, handed the plan, or stopped.
    FastPath,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::NewPodLinks,
        Step::Maps,
        Step::Neighbours,
        Step::NextHops,
        Step::PodLinks,
        Step::FastPath,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::NewPodLinks => "programs on new pod interfaces",
            Step::Maps => "maps",
            Step::Neighbours => "VTEP neighbours",
            Step::NextHops => "next hops",
            Step::PodLinks => "pod interface programs",
            Step::FastPath => "AF_XDP forwarder",
        }
    }
}

/// A step that failed, after the steps before it had run.
#[derive(Debug)]
pub struct StepFailure {
    pub done: Vec<Step>,
    pub step: Step,
    pub error: Box<AgentError>,
}

/// What became of one state from the source: the reload log says it.
#[derive(Debug)]
pub enum Reload {
    /// Applied whole: the datapath runs it.
    Applied { generation: u32 },
    /// Valid, and nothing in it for this node changed.
    Unchanged,
    /// Did not validate or compile: nothing was changed, the last good state stays in force.
    Refused(AgentError),
    /// A step failed after the ones before it had changed the node: they were undone by
    /// applying the last good state again (`rollback`: how that went).
    RolledBack {
        failure: StepFailure,
        rollback: Result<u32, StepFailure>,
    },
}

impl Reload {
    /// Whether the state is in force now.
    fn in_force(&self) -> bool {
        matches!(self, Reload::Applied { .. } | Reload::Unchanged)
    }

    /// What the metrics call it.
    fn result(&self) -> ApplyResult {
        match self {
            Reload::Applied { .. } | Reload::Unchanged => ApplyResult::Applied,
            Reload::Refused(AgentError::State(_) | AgentError::Store(_)) => ApplyResult::Invalid,
            Reload::Refused(_) => ApplyResult::NotCompiled,
            Reload::RolledBack {
                rollback: Ok(_), ..
            } => ApplyResult::RolledBack,
            Reload::RolledBack {
                rollback: Err(_), ..
            } => ApplyResult::Failed,
        }
    }

    /// Logs what became of the state from `origin`.
    fn log(&self, origin: &str, plan: &NodePlan) {
        match self {
            Reload::Applied { generation } => tracing::info!(
                generation,
                pod_interfaces = plan.pod_ports.len(),
                endpoints = plan.endpoints.len(),
                remote_vteps = plan.remote_vteps.len(),
                policy_entries = plan.policy.entries.len(),
                "applied the new cluster state ({origin})"
            ),
            Reload::Unchanged => {
                tracing::info!("cluster state changed, nothing for this node ({origin})")
            }
            Reload::Refused(error) => tracing::error!(
                "refused {origin}: {error}; not applied, the last good state stays in force"
            ),
            Reload::RolledBack { failure, rollback } => {
                let done = names_of(&failure.done);
                let step = failure.step.name();
                let error = crate::error_chain(&failure.error);
                match rollback {
                    Ok(generation) => tracing::error!(
                        generation,
                        "partly applied {origin}: {done} applied, then {step} failed: {error}; \
                         rolled back: the last good state is in force again"
                    ),
                    Err(undo) => tracing::error!(
                        "partly applied {origin}: {done} applied, then {step} failed: {error}; \
                         the rollback to the last good state failed too ({} done, {} failed: \
                         {}): the node runs parts of both, tried again with the next state",
                        names_of(&undo.done),
                        undo.step.name(),
                        crate::error_chain(&undo.error)
                    ),
                }
            }
        }
    }
}

fn names_of(steps: &[Step]) -> String {
    if steps.is_empty() {
        return "nothing".to_owned();
    }
    steps
        .iter()
        .map(|step| step.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Running {
    fn start(options: &AgentOptions, mut plan: NodePlan) -> Result<Running, AgentError> {
        compile::assign_xsk_slots(&mut plan, None)?;
        let mut pod_sides = BTreeMap::new();
        prepare_pod_sides(&mut pod_sides, &mut plan);
        // A bpffs this agent mounts has nothing of an earlier agent in it.
        let bpffs = Bpffs::ensure(&options.pin_dir)?;
        let pins = datapath::PINNED_MAPS
            .iter()
            .map(|name| options.pin_dir.join(name))
            .collect();
        // Kept until it is known whose datapath the pins hold.
        let mut pin_dir = PinDir::create(&options.pin_dir, pins, true)?;
        let pinned = datapath::load_pinned(&options.pin_dir, plan.conntrack_entries)?;
        let mut ebpf = pinned.ebpf;
        let reconciled = datapath::reconcile(&mut ebpf, &plan)?;
        if reconciled.resumed {
            tracing::info!(
                pin_dir = %options.pin_dir.display(),
                reused_maps = pinned.reused.len(),
                removed_entries = reconciled.removed,
                generation = reconciled.generation,
                "took over the pinned datapath of an earlier agent: its maps (conntrack, \
                 counters) kept, the state written over them"
            );
        }
        // On an error below, a datapath taken over keeps running (as after a `kill -9`); what
        // this agent created is undone. (Forwarding is on already under an earlier agent.)
        pin_dir.keep(reconciled.resumed);
        let forwarding = Forwarding::enable(&plan.underlay_interface)?;
        let neighbours = VtepNeighbours::adopt(
            &plan.underlay_interface,
            plan.node.underlay_ifindex,
            reconciled.resumed,
        )?;
        let mut running = Running {
            fast_path: None,
            links: BTreeMap::new(),
            neighbours,
            forwarding,
            pin_dir,
            bpffs,
            fastpath_cores: options.fastpath_cores.clone(),
            run_dir: options.run_dir.clone(),
            ebpf,
            plan,
            generation: reconciled.generation,
            mode: options.xdp_mode,
            teardown: !reconciled.resumed,
            next_hops: NextHops::default(),
            pod_sides,
        };
        running.sync_neighbours()?;
        running.refresh_next_hops(true)?;
        // The pods' programs before the underlay's: nothing reaches a pod over VXLAN before
        // the datapath carries its answers. (Link pins of an earlier agent that no interface
        // wants are removed once the underlay's have been adopted, below.)
        running.attach_new_pod_links()?;
        let underlay = running.plan.underlay_interface.clone();
        let underlay_ifindex = running.plan.node.underlay_ifindex;
        running.attach(
            Program::Xdp(XdpProgram::FromUnderlay),
            &underlay,
            underlay_ifindex,
        )?;
        // Behind XDP, for the VXLAN it hands on (see `underlay::hand_to_tc`; it passes the
        // rest untouched and uncounted, so it is attached whatever the planes).
        running.attach(
            Program::Tc(TcProgram::FromUnderlay),
            &underlay,
            underlay_ifindex,
        )?;
        running.sync_pod_links()?;
        running.sync_fast_path()?;
        // From here on only `stop` takes the datapath down.
        running.teardown = false;
        Ok(running)
    }

    /// Takes the datapath down (the clean stop on SIGTERM or SIGINT): see [`Running`].
    fn stop(mut self) {
        self.teardown = true;
    }

    /// Starts the forwarder when the plan has a fast-path plane, stops it when it has none
    /// any more, or hands it the plan.
    fn sync_fast_path(&mut self) -> Result<(), AgentError> {
        match (&mut self.fast_path, has_fast_path(&self.plan)) {
            (None, true) => {
                let fast_path = FastPath::start(
                    &self.ebpf,
                    &self.run_dir,
                    &self.plan,
                    self.generation,
                    &self.fastpath_cores,
                    &self.next_hops,
                )?;
                // `ctpath status` sees the forwarder from the moment it carries traffic.
                fast_path.write_report()?;
                self.fast_path = Some(fast_path);
            }
            (Some(_), false) => {
                self.fast_path = None;
                tracing::info!("no fast-path plane left: AF_XDP forwarder stopped");
            }
            (Some(fast_path), true) => {
                fast_path.update(&self.plan, self.generation, &self.next_hops)
            }
            (None, false) => {}
        }
        Ok(())
    }

    /// The forwarder's report for `ctpath status`.
    fn fast_path_tick(&mut self) {
        if let Some(fast_path) = &self.fast_path {
            if let Err(error) = fast_path.write_report() {
                tracing::warn!(%error, "forwarder report not written");
            }
        }
    }

    /// Applies `plan` in place of the running one, step by step; when a step fails, the
    /// running plan is applied again, the maps by a reconcile (they may hold part of the new
    /// plan: every entry is written again and what the plan lacks deleted), the other steps
    /// as they converge on any plan.
    fn update(&mut self, mut plan: NodePlan) -> Reload {
        if let Err(error) = compile::assign_xsk_slots(&mut plan, Some(&self.plan)) {
            return Reload::Refused(error.into());
        }
        prepare_pod_sides(&mut self.pod_sides, &mut plan);
        if plan == self.plan {
            return Reload::Unchanged;
        }
        if plan.underlay_interface != self.plan.underlay_interface
            || plan.conntrack_entries != self.plan.conntrack_entries
        {
            tracing::warn!(
                "a new underlay interface takes effect when the agent restarts, a new conntrack size after a clean stop (the pinned table is kept across restarts)"
            );
        }
        let last_good = std::mem::replace(&mut self.plan, plan);
        let generation = self.generation + 1;
        let applied = self.converge(|running| {
            datapath::apply_plan(
                &mut running.ebpf,
                Some(&last_good),
                &running.plan,
                generation,
            )?;
            move_rule_hits(&mut running.ebpf, &last_good, &running.plan)
        });
        // The node entry holds the new generation once the maps step is done.
        if applied
            .as_ref()
            .map_or_else(|failure| failure.done.contains(&Step::Maps), |()| true)
        {
            self.generation = generation;
        }
        let Err(failure) = applied else {
            return Reload::Applied { generation };
        };
        let failed = std::mem::replace(&mut self.plan, last_good);
        let mut rolled_back_to = self.generation;
        let rollback = self
            .converge(|running| {
                rolled_back_to = datapath::reconcile(&mut running.ebpf, &running.plan)?.generation;
                // The counters moved with the maps step: back with the rules.
                if failure.done.contains(&Step::Maps) {
                    move_rule_hits(&mut running.ebpf, &failed, &running.plan)?;
                }
                Ok(())
            })
            .map(|()| rolled_back_to);
        self.generation = rolled_back_to;
        Reload::RolledBack { failure, rollback }
    }

    /// Runs every step for the running plan, the maps by `write_maps`.
    fn converge(
        &mut self,
        write_maps: impl FnOnce(&mut Running) -> Result<(), DatapathError>,
    ) -> Result<(), StepFailure> {
        let mut write_maps = Some(write_maps);
        let mut done = Vec::new();
        for step in Step::ALL {
            let result = match step {
                Step::Maps => (write_maps.take().expect("maps are written once"))(self)
                    .map_err(AgentError::from),
                Step::NewPodLinks => self.attach_new_pod_links(),
                Step::Neighbours => self.sync_neighbours(),
                Step::NextHops => self.refresh_next_hops(true),
                Step::PodLinks => self.sync_pod_links(),
                Step::FastPath => self.sync_fast_path(),
            };
            if let Err(error) = result {
                return Err(StepFailure {
                    done,
                    step,
                    error: Box::new(error),
                });
            }
            done.push(step);
        }
        Ok(())
    }

    /// Attaches `program` to `interface` (ifindex `ifindex`) as a pinned link, or adopts the
    /// link an earlier agent pinned for it: that link is switched to this agent's program in
    /// one `bpf_link_update`, so the interface is never without a program. An adopted XDP link
    /// keeps the XDP mode it was created with. tcx links are bpf_links like XDP's and are
    /// adopted the same way (aya's `SchedClassifier::attach_to_link` is `bpf_link_update`).
    fn attach(
        &mut self,
        program: Program,
        interface: &str,
        ifindex: u32,
    ) -> Result<(), AgentError> {
        let pin_name = program.pin_name(interface);
        let pin = self.pin_dir.path().join(&pin_name);
        let earlier = pinned_link(&pin, interface, ifindex);
        let attach_error = |source| AgentError::Attach {
            program: program.symbol(),
            interface: interface.to_owned(),
            source,
        };
        let not_a_link = |source| AgentError::NotALink {
            interface: interface.to_owned(),
            source,
        };
        let stale = |reason: String| {
            tracing::warn!(interface, pin = %pin.display(), reason, "removing a stale link pin: the interface gets a new link");
            if let Err(error) = std::fs::remove_file(&pin) {
                tracing::warn!(pin = %pin.display(), %error, "could not remove the stale link pin");
            }
        };
        let adopted;
        let link = match program {
            Program::Xdp(xdp_program) => {
                let earlier = earlier.and_then(|link| {
                    XdpLink::try_from(link)
                        .map_err(|error| stale(format!("not an XDP link: {error}")))
                        .ok()
                });
                adopted = earlier.is_some();
                let xdp = datapath::xdp_program(&mut self.ebpf, xdp_program)?;
                let id = match earlier {
                    Some(link) => xdp.attach_to_link(link),
                    None => xdp.attach(interface, self.mode),
                }
                .map_err(attach_error)?;
                FdLink::try_from(xdp.take_link(id).map_err(attach_error)?).map_err(not_a_link)?
            }
            Program::Tc(tc_program) => {
                let earlier = earlier.and_then(|link| {
                    SchedClassifierLink::try_from(link)
                        .map_err(|error| stale(format!("not a tcx link: {error}")))
                        .ok()
                });
                adopted = earlier.is_some();
                let tc = datapath::tc_program(&mut self.ebpf, tc_program)?;
                let id = match earlier {
                    Some(link) => tc.attach_to_link(link),
                    None => tc.attach_with_options(
                        interface,
                        TcAttachType::Ingress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    ),
                }
                .map_err(attach_error)?;
                FdLink::try_from(tc.take_link(id).map_err(attach_error)?).map_err(not_a_link)?
            }
        };
        let link = if adopted {
            tracing::info!(
                program = program.symbol(),
                interface,
                pin = %pin.display(),
                "adopted the pinned link: program replaced in place"
            );
            link
        } else {
            let pinned = link.pin(&pin).map_err(|source| AgentError::PinLink {
                interface: interface.to_owned(),
                path: pin.clone(),
                source,
            })?;
            tracing::info!(
                program = program.symbol(),
                interface,
                hook = program.hook(self.mode),
                pin = %pin.display(),
                "attached (link pinned)"
            );
            FdLink::from(pinned)
        };
        let attached = PinnedProgram {
            program,
            interface: interface.to_owned(),
            pin,
            ifindex,
            _link: link,
            keep: false,
        };
        self.links.insert(pin_name, attached);
        Ok(())
    }

    /// Unpins and detaches the link pinned as `pin_name`.
    fn detach(&mut self, pin_name: &str) {
        if let Some(attached) = self.links.remove(pin_name) {
            let (program, interface) = (attached.program.symbol(), attached.interface.clone());
            drop(attached);
            tracing::info!(program, interface, "detached");
        }
    }

    /// The program each pod interface of the plan gets, by pin name: (interface, ifindex,
    /// program).
    fn wanted_pod_links(&self) -> BTreeMap<String, (String, u32, Program)> {
        self.plan
            .pod_interfaces
            .iter()
            .map(|(&ifindex, name)| {
                let program = if compile::is_tc_port(&self.plan, ifindex) {
                    Program::Tc(TcProgram::FromPod)
                } else {
                    Program::Xdp(XdpProgram::FromPod)
                };
                (program.pin_name(name), (name.clone(), ifindex, program))
            })
            .collect()
    }

    /// Attaches its program to each pod interface of the plan that has none yet (a new pod),
    /// before the maps make the pod reachable: the pod's first answer (its ARP for the gateway)
    /// is then the datapath's to carry. Until the maps name its port, the program drops what
    /// the pod sends, counted; without it the kernel would have dropped it unanswered.
    /// Everything else about the pod links is [`Running::sync_pod_links`]'s, after the maps.
    fn attach_new_pod_links(&mut self) -> Result<(), AgentError> {
        let served: std::collections::BTreeSet<u32> = self
            .links
            .values()
            .filter(|attached| attached.program.is_from_pod())
            .map(|attached| attached.ifindex)
            .collect();
        for (interface, ifindex, program) in self.wanted_pod_links().into_values() {
            if !served.contains(&ifindex) {
                self.attach(program, &interface, ifindex)?;
            }
        }
        Ok(())
    }

    /// Attaches `from_pod` (XDP) or `from_pod_tc` (tcx), as each interface's plane says, to
    /// the plan's pod interfaces that lack it (or whose interface was re-created: another
    /// ifindex), detaches it from interfaces no longer in the plan or whose plane changed its
    /// datapath (after the new program is attached: XDP runs before tc, so either way the new
    /// one sees the traffic before the old one goes), and removes link pins of interfaces this
    /// agent does not serve (left by an earlier agent).
    fn sync_pod_links(&mut self) -> Result<(), AgentError> {
        let wanted = self.wanted_pod_links();
        for (pin_name, (interface, ifindex, program)) in &wanted {
            let current = self.links.get(pin_name).map(|attached| attached.ifindex);
            if current != Some(*ifindex) {
                // The interface may have been re-created: its old link is gone with it.
                self.detach(pin_name);
                self.attach(*program, interface, *ifindex)?;
            }
        }
        let gone: Vec<String> = self
            .links
            .iter()
            .filter(|(pin_name, attached)| {
                attached.program.is_from_pod() && !wanted.contains_key(*pin_name)
            })
            .map(|(pin_name, _)| pin_name.clone())
            .collect();
        for pin_name in gone {
            // The interface may be gone already, taking the program with it.
            self.detach(&pin_name);
        }
        self.remove_stale_link_pins();
        Ok(())
    }

    /// Removes the link pins in the pin directory without a link here: left by an earlier
    /// agent for interfaces that are no longer in the plan, or for another hook than the
    /// interface's plane now has. Their programs detach.
    fn remove_stale_link_pins(&self) {
        let Ok(entries) = std::fs::read_dir(self.pin_dir.path()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if !Program::is_link_pin(name) || self.links.contains_key(name) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(
                    pin = name,
                    "removed a pinned link this agent does not use: its program is detached"
                ),
                Err(error) => {
                    tracing::warn!(pin = name, %error, "could not remove a stale link pin")
                }
            }
        }
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

    /// Resolves the remote VTEPs' next hops again (`plan_changed`: the plan's VTEPs may have
    /// changed too) and, when they changed, writes them into `NEXT_HOPS` and hands them to the
    /// forwarder (see `crate::nexthop`).
    fn refresh_next_hops(&mut self, plan_changed: bool) -> Result<(), AgentError> {
        let netlink = self.neighbours.netlink();
        let changed = if plan_changed {
            self.next_hops.update(netlink, &self.plan)
        } else {
            self.next_hops.refresh(netlink, &self.plan)
        };
        if changed || plan_changed {
            let entries = self.next_hops.entries(&self.plan);
            let written = datapath::write_next_hops(&mut self.ebpf, &entries)?;
            if written != 0 {
                tracing::info!(
                    resolved = entries.len(),
                    written,
                    "underlay next hops cached"
                );
            }
            if let Some(fast_path) = &mut self.fast_path {
                fast_path.set_next_hops(&self.next_hops);
            }
        }
        Ok(())
    }

    /// Makes the VTEPs' neighbour entries those of the plan (see [`VtepNeighbours`]).
    fn sync_neighbours(&mut self) -> Result<(), AgentError> {
        let changes = self.neighbours.sync(&self.plan.remote_vteps)?;
        if !changes.added.is_empty() || !changes.removed.is_empty() {
            tracing::info!(
                added = ?changes.added,
                removed = ?changes.removed,
                device = self.plan.underlay_interface,
                "VTEP neighbour entries (managed: the kernel keeps them resolved)"
            );
        }
        Ok(())
    }
}

/// The rule hit counters follow the rules from `from`'s ids to `to`'s.
fn move_rule_hits(ebpf: &mut Ebpf, from: &NodePlan, to: &NodePlan) -> Result<(), DatapathError> {
    if from.policy.rules == to.policy.rules {
        return Ok(());
    }
    let moves = crate::policy::rule_moves(&from.policy.rules, &to.policy.rules);
    let written = datapath::move_rule_hits(ebpf, &moves, from.policy.rules.len())?;
    tracing::debug!(written, "rule hit counters moved with their rules");
    Ok(())
}

/// A program of the datapath on an interface: which program, and with it which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Program {
    Xdp(XdpProgram),
    Tc(TcProgram),
}

/// Pins of XDP links are named `link_IFNAME`, of tcx (ingress) links `tcx_IFNAME`.
/// Whether `name` in a pin directory is a link's pin (`link_IFNAME`, `tcx_IFNAME`).
pub fn is_link_pin_name(name: &str) -> bool {
    name.starts_with(XDP_PIN_PREFIX) || name.starts_with(TCX_PIN_PREFIX)
}

const XDP_PIN_PREFIX: &str = "link_";
const TCX_PIN_PREFIX: &str = "tcx_";

impl Program {
    fn symbol(self) -> &'static str {
        match self {
            Program::Xdp(program) => program.symbol(),
            Program::Tc(program) => program.symbol(),
        }
    }

    fn is_from_pod(self) -> bool {
        matches!(
            self,
            Program::Xdp(XdpProgram::FromPod) | Program::Tc(TcProgram::FromPod)
        )
    }

    /// The name of the pin of this program's link on `interface` in the pin directory.
    fn pin_name(self, interface: &str) -> String {
        match self {
            Program::Xdp(_) => format!("{XDP_PIN_PREFIX}{interface}"),
            Program::Tc(_) => format!("{TCX_PIN_PREFIX}{interface}"),
        }
    }

    /// Whether a file in the pin directory is a link pin.
    fn is_link_pin(name: &str) -> bool {
        is_link_pin_name(name)
    }

    /// The hook, for logs: the XDP mode, or tcx ingress.
    fn hook(self, mode: XdpMode) -> String {
        match self {
            Program::Xdp(_) => format!("xdp {mode:?}"),
            Program::Tc(_) => "tcx ingress".to_owned(),
        }
    }
}

/// An attachment (XDP or tcx) held as a bpf_link pinned at `pin` (`PIN_DIR/link_IFNAME` or
/// `PIN_DIR/tcx_IFNAME`): it outlives the agent's process, so the program keeps running when
/// the agent dies, and goes only when both the pin and every fd of the link (`link`) are gone.
/// Dropped, it removes the pin and closes the link, which detaches the program, unless told to
/// [`keep`](PinnedProgram::keep) it.
struct PinnedProgram {
    program: Program,
    interface: String,
    pin: PathBuf,
    /// The interface the link was made for.
    ifindex: u32,
    /// Held for its fd: the link lives while this or the pin does.
    _link: FdLink,
    keep: bool,
}

impl Drop for PinnedProgram {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(error) = std::fs::remove_file(&self.pin) {
            tracing::warn!(pin = %self.pin.display(), %error, "could not remove the link pin");
        }
    }
}

/// The link an earlier agent pinned at `pin` for `interface`, if it still holds that
/// interface (ifindex `ifindex`). A pin whose link lost its interface (deleted, or re-created
/// under the same name while no agent ran: the link then holds ifindex 0) or holds another
/// one is removed, its link with it.
fn pinned_link(pin: &Path, interface: &str, ifindex: u32) -> Option<FdLink> {
    if !pin.exists() {
        return None;
    }
    let link = PinnedLink::from_pin(pin)
        .map(FdLink::from)
        .map_err(|error| error.to_string())
        .and_then(|link| match link_ifindex(&link) {
            Some(found) if found == ifindex => Ok(link),
            found => Err(format!(
                "the link holds ifindex {found:?}, the interface has {ifindex}"
            )),
        });
    match link {
        Ok(link) => Some(link),
        Err(reason) => {
            tracing::warn!(
                interface,
                pin = %pin.display(),
                reason,
                "removing a stale link pin: the interface gets a new link"
            );
            if let Err(error) = std::fs::remove_file(pin) {
                tracing::warn!(pin = %pin.display(), %error, "could not remove the stale link pin");
            }
            None
        }
    }
}

/// The ifindex an XDP or tcx link is attached to (0: its interface is gone), from the kernel's
/// `/proc/self/fdinfo` of one of this process's fds of the link (aya does not expose it).
fn link_ifindex(link: &FdLink) -> Option<u32> {
    let id = link.info().ok()?.id();
    let wanted = format!("link_id:\t{id}");
    std::fs::read_dir("/proc/self/fdinfo")
        .ok()?
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .find(|info| info.lines().any(|line| line == wanted))?
        .lines()
        .find_map(|line| line.strip_prefix("ifindex:"))?
        .trim()
        .parse()
        .ok()
}

impl Drop for Running {
    /// Keeps everything when the stop is not a clean one; otherwise the fields undo what they
    /// hold as they are dropped, in their order (see the type's doc).
    fn drop(&mut self) {
        let keep = !self.teardown;
        if keep {
            tracing::warn!(
                pin_dir = %self.pin_dir.path().display(),
                "agent stopping without SIGTERM/SIGINT: the programs stay attached and the maps \
                 pinned, for the next agent to adopt"
            );
        }
        for attached in self.links.values_mut() {
            attached.keep = keep;
        }
        self.neighbours.keep(keep);
        self.forwarding.keep(keep);
        self.pin_dir.keep(keep);
        self.bpffs.keep(keep);
    }
}

/// What the agent set at one pod interface's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PodEnd {
    hook: HostHook,
    /// Whether it turned the pod's TX checksum offload off (for XDP), to give it back when the
    /// plane moves to tc.
    checksum_turned_off: bool,
}

/// Sets what each pod interface's host hook needs at the pod's end ([`pod_side`]), before the
/// plan is written and the programs attached, for the interfaces not set yet (`done`, by
/// host-side ifindex: a re-created interface has a new one), gives back the TX checksum offload
/// it turned off where a plane moved from XDP to tc, and flags the endpoints whose pod end runs
/// NAPI, so the NIC's XDP may redirect into them. An interface that cannot be set is logged and
/// tried again with the next state; it is served anyway: its VXLAN goes through tc
/// (`from_underlay_tc`), and on an XDP hook, ARP and packets whose checksums the pod completed
/// itself still get through.
fn prepare_pod_sides(done: &mut BTreeMap<u32, PodEnd>, plan: &mut NodePlan) {
    done.retain(|ifindex, _| plan.pod_interfaces.contains_key(ifindex));
    for (&ifindex, interface) in &plan.pod_interfaces {
        let hook = if compile::is_tc_port(plan, ifindex) {
            HostHook::Tc
        } else {
            HostHook::Xdp
        };
        match done.get(&ifindex) {
            Some(end) if end.hook == hook => continue,
            // Moved to tc: GRO stays on; TX checksum offload back if the agent took it.
            Some(end) if hook == HostHook::Tc => {
                let restored = if end.checksum_turned_off {
                    pod_side::restore_tx_checksum(interface).map(|side| {
                        tracing::info!(
                            interface,
                            pod_netns = side.netns,
                            pod_interface = side.interface,
                            changed = side.changed.join(", "),
                            "pod side given back its TX checksum offload (the plane moved to tc)"
                        );
                    })
                } else {
                    Ok(())
                };
                match restored {
                    Ok(()) => {
                        done.insert(
                            ifindex,
                            PodEnd {
                                hook,
                                checksum_turned_off: false,
                            },
                        );
                    }
                    Err(error) => tracing::warn!(
                        interface,
                        %error,
                        "TX checksum offload not given back to the pod (its plane moved to tc): \
                         tried again with the next state"
                    ),
                }
                continue;
            }
            _ => {}
        }
        match pod_side::prepare(interface, hook) {
            Ok(side) => {
                if side.changed.is_empty() {
                    tracing::debug!(
                        interface,
                        pod_netns = side.netns,
                        ?hook,
                        "pod side already set"
                    );
                } else {
                    tracing::info!(
                        interface,
                        pod_netns = side.netns,
                        pod_interface = side.interface,
                        changed = side.changed.join(", "),
                        ?hook,
                        "pod side set"
                    );
                }
                done.insert(
                    ifindex,
                    PodEnd {
                        hook,
                        checksum_turned_off: side
                            .changed
                            .contains(&pod_side::TX_CHECKSUM_OFF_CHANGE),
                    },
                );
            }
            Err(error) if hook == HostHook::Tc => tracing::warn!(
                interface,
                %error,
                "pod side not set: VXLAN into this pod goes through tc, TCP without GRO"
            ),
            Err(error) => tracing::error!(
                interface,
                %error,
                "pod side not set for XDP: the pod's TCP and UDP packets with offloaded checksums \
                 will be dropped by their receivers, and VXLAN into it goes through tc"
            ),
        }
    }
    compile::mark_pod_napi(plan, |ifindex| done.contains_key(&ifindex));
}
