//! The AF_XDP forwarder: carries the fast-path planes (`fast_path: true`) of a node in
//! userspace, with the semantics of the XDP programs, which hand it those planes' frames
//! through the `XSKS` map and carry them themselves whenever no socket is bound.
//!
//! - [`tables`]: the immutable lookup tables a worker decides frames with, built from the same
//!   map contents the agent writes into the BPF maps.
//! - [`flows`]: the forwarder's connection tracking, mirrored into the kernel's conntrack map
//!   so a connection survives moving between the forwarder and the XDP programs.
//! - [`nat`]: the services' translated connections and affinities, mirrored likewise into the
//!   kernel's `NAT_FLOWS`, `NAT_REPLIES` and `AFFINITY`.
//! - [`pipeline`]: the per-packet logic, a plain function over a frame and the tables (no
//!   sockets), tested against the reference model ([`crate::model`]).
//! - [`port`]: one AF_XDP socket on one (interface, receive queue).
//! - [`lease`]: a worker's lease on its queue, without which the XDP programs keep its frames.
//! - [`worker`]: one pinned thread, one UMEM, one socket per interface on its queue.
//! - [`stats`]: the workers' counters and the report `ctpath status` reads.
//! - [`cpu`]: pinning and the datapath's clock.
//!
//! [`Forwarder`] is what the agent holds: it starts one worker per core given, sends each the
//! table snapshots and the set of interfaces, and stops them when dropped (their sockets close,
//! the kernel clears their slots, and the XDP programs carry the planes again).

pub mod cpu;
pub mod flows;
pub mod lease;
pub mod nat;
pub mod pipeline;
pub mod port;
pub mod stats;
pub mod tables;
pub mod worker;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use aya::maps::{MapData, XskMap};
use crossbeam_channel::Sender;
use thiserror::Error;

use nat::Mirror;
use pipeline::Pipeline;
use port::PortSpec;
use stats::{ForwarderReport, WorkerStats};
use tables::Tables;
use worker::{Command, WorkerSetup};

/// How long starting waits for a worker to bind its first sockets.
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ForwarderError {
    #[error("--fastpath-cores: at least one core is needed")]
    NoCores,
    #[error("--fastpath-cores: core {core} is listed twice")]
    DuplicateCore { core: usize },
    #[error(
        "--fastpath-cores: {count} cores, but an interface has at most {max} forwarder queues"
    )]
    TooManyCores { count: usize, max: u32 },
    #[error("starting forwarder worker {id}: {source}")]
    Spawn {
        id: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("a handle on the XSKS map for worker {id}: {message}")]
    Map { id: usize, message: String },
}

/// How the forwarder runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// One worker per core, pinned; worker `i` serves receive queue `i` of every interface.
    pub cores: Vec<usize>,
    /// Capacity of each worker's connection table (the state's `conntrack.max_entries`).
    pub conntrack_capacity: u32,
    /// VNIs of the planes carried (for the report).
    pub planes: Vec<u32>,
}

/// One worker's handles on the datapath's maps.
pub struct WorkerMaps<M> {
    /// The kernel's conntrack map, which the worker's connection table mirrors into.
    pub mirror: M,
    /// The `XSKS` map its sockets are registered in.
    pub xsks: XskMap<MapData>,
    /// Its lease on its queue in `LEASES`.
    pub lease: lease::Lease,
}

struct WorkerHandle {
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<WorkerStats>,
}

/// The running forwarder of one node.
pub struct Forwarder {
    workers: Vec<WorkerHandle>,
    stop: Arc<AtomicBool>,
    planes: Vec<u32>,
    huge_pages: bool,
}

impl Forwarder {
    /// Starts the workers. `maps` makes worker `queue`'s handles on the datapath's maps.
    pub fn start<M, F>(
        config: &ForwarderConfig,
        tables: Arc<Tables>,
        ports: Vec<PortSpec>,
        mut maps: F,
    ) -> Result<Forwarder, ForwarderError>
    where
        M: Mirror + Send + 'static,
        F: FnMut(u32) -> Result<WorkerMaps<M>, String>,
    {
        if config.cores.is_empty() {
            return Err(ForwarderError::NoCores);
        }
        for (i, core) in config.cores.iter().enumerate() {
            if config.cores[..i].contains(core) {
                return Err(ForwarderError::DuplicateCore { core: *core });
            }
        }
        let max = ctpath_common::maps::XSK_QUEUES_PER_INTERFACE;
        if config.cores.len() > max as usize {
            return Err(ForwarderError::TooManyCores {
                count: config.cores.len(),
                max,
            });
        }
        let huge_pages = huge_pages_for(config.cores.len());
        let stop = Arc::new(AtomicBool::new(false));
        let mut forwarder = Forwarder {
            workers: Vec::new(),
            stop: stop.clone(),
            planes: config.planes.clone(),
            huge_pages,
        };
        for (id, core) in config.cores.iter().enumerate() {
            let map_error = |message| ForwarderError::Map { id, message };
            let WorkerMaps {
                mirror,
                xsks,
                lease,
            } = maps(id as u32).map_err(map_error)?;
            let (commands, receiver) = crossbeam_channel::unbounded();
            let (started, bound) = std::sync::mpsc::sync_channel(1);
            let stats = Arc::new(WorkerStats::new(id, Some(*core), id as u32));
            let setup = WorkerSetup {
                id,
                core: Some(*core),
                queue: id as u32,
                pipeline: Pipeline::new(tables.clone(), config.conntrack_capacity, mirror),
                xsks,
                lease,
                commands: receiver,
                started,
                stats: stats.clone(),
                stop: stop.clone(),
                huge_pages,
            };
            // Sent before the thread starts: its first round binds them.
            let _ = commands.send(Command::Ports(ports.clone()));
            let thread = std::thread::Builder::new()
                .name(format!("ctpath-fwd{id}"))
                .spawn(move || worker::run(setup))
                .map_err(|source| ForwarderError::Spawn { id, source })?;
            forwarder.workers.push(WorkerHandle {
                commands,
                thread: Some(thread),
                stats,
            });
            // Its sockets are bound (or failed, logged) before the next worker starts, so the
            // agent reports ready only once the forwarder carries the planes.
            if bound.recv_timeout(START_TIMEOUT).is_err() {
                tracing::warn!(worker = id, "forwarder worker slow to bind its sockets");
            }
        }
        Ok(forwarder)
    }

    /// A new table snapshot, taken by every worker before its next batch.
    pub fn set_tables(&self, tables: Arc<Tables>) {
        for worker in &self.workers {
            let _ = worker.commands.send(Command::Tables(tables.clone()));
        }
    }

    /// The rules of the next tables have other ids: each worker moves its counts with them
    /// (`moves[i]`: the id that rule `i` had) before it takes the next command.
    pub fn move_rule_hits(&self, moves: Arc<[Option<u32>]>) {
        for worker in &self.workers {
            let _ = worker.commands.send(Command::MoveRuleHits(moves.clone()));
        }
    }

    /// The interfaces to serve from now on.
    pub fn set_ports(&self, ports: Vec<PortSpec>) {
        for worker in &self.workers {
            let _ = worker.commands.send(Command::Ports(ports.clone()));
        }
    }

    /// A snapshot of every worker's counters.
    pub fn report(&self) -> ForwarderReport {
        ForwarderReport {
            pid: std::process::id(),
            written_ns: cpu::monotonic_ns(),
            planes: self.planes.clone(),
            huge_pages: self.huge_pages,
            workers: self.workers.iter().map(|w| w.stats.report()).collect(),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// Whether the node has enough free huge pages for `workers` UMEMs (`/proc/meminfo`).
fn huge_pages_for(workers: usize) -> bool {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return false;
    };
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
    };
    let (Some(free), Some(size_kib)) = (field("HugePages_Free:"), field("Hugepagesize:")) else {
        return false;
    };
    let needed = workers as u64 * u64::from(worker::UMEM_FRAMES) * u64::from(worker::FRAME_SIZE);
    free * size_kib * 1024 >= needed
}
