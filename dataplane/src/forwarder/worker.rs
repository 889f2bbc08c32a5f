//! A forwarder worker: one thread pinned to one core, one UMEM, and one socket on queue `q` of
//! every interface it serves (worker `q` serves receive queue `q`), run to completion: receive
//! a batch, decide each frame with the [`Pipeline`], hand it to the socket it leaves by, kick,
//! reap completions, refill.
//!
//! Owns the UMEM's frames (`Pool`): every frame is in exactly one place at a time — free, in
//! a socket's fill ring (or received and in the worker's hands), or in a socket's TX ring until
//! its completion — and the pool knows which socket holds it, so a socket that goes away gives
//! its frames back.
//!
//! Frames move by descriptor: a frame received on one socket is sent by another socket of the
//! same UMEM without being copied in userspace (in copy mode the kernel copies it into an skb
//! on send, as it copied it out of one on receive). Where a frame changes length at its front —
//! VXLAN encapsulation (50 bytes more) and decapsulation (50 fewer) — the pipeline moves the
//! frame's bytes within its own UMEM chunk: xsk-rs 0.11 keeps a descriptor's address private,
//! so a frame cannot start elsewhere in its chunk than where the kernel put it. That move (one
//! frame's length, in cache) is the only copy the forwarder makes.
//!
//! Between batches the worker takes what the agent sent ([`Command`]): a new table snapshot (an
//! `Arc` swapped in, never locked) or a new set of interfaces. Nothing on the per-packet path
//! locks or allocates: descriptor scratch space is sized when the sockets are set.
//!
//! Every round renews the worker's [`Lease`] on its queue; the XDP programs hand the queue's
//! frames over only while it runs, so a worker that dies or stalls loses the queue to them
//! within milliseconds.
//!
//! Idle, the worker spins for a short while and then sleeps in `poll` on its sockets (a
//! millisecond at most, so its lease, commands and stop are still seen), so an idle node costs
//! next to no core.
//!
//! Panic contract: nothing here panics on any frame or any kernel answer; a worker that cannot
//! create its UMEM or bind a socket logs it and carries on with what it has (the XDP programs
//! carry what it does not).
#![allow(unsafe_code)]

use std::{
    collections::BTreeMap,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::SyncSender,
        Arc,
    },
    time::Duration,
};

use aya::maps::{MapData, XskMap};
use crossbeam_channel::{Receiver, TryRecvError};
use ctpath_common::DropReason;
use xsk_rs::{
    config::{FrameSize, QueueSize, UmemConfig},
    umem::{frame::FrameDesc, Umem},
};

use super::{
    cpu,
    lease::Lease,
    nat::Mirror,
    pipeline::{Action, FrameBuf, Ingress, Pipeline},
    port::{Port, PortSpec, Role, RING_SIZE},
    stats::WorkerStats,
    tables::Tables,
};

/// UMEM chunk size: the kernel's 256 bytes of XDP headroom and `XSK_FRAME_ROOM` bytes of frame,
/// VXLAN included (the XDP programs hand over only frames that fit).
pub const FRAME_SIZE: u32 = 256 + ctpath_common::maps::XSK_FRAME_ROOM;
const _: () = assert!(FRAME_SIZE == 4096);
/// Frames in a worker's UMEM (64 MiB at 4 KiB): enough that no fill ring runs dry at a few
/// Mpps (4,096 did, 16,384 did not, on veth here).
pub const UMEM_FRAMES: u32 = 16_384;
/// Frames received from one socket per round.
pub const BATCH: usize = 64;
/// Empty rounds before the worker sleeps in `poll`.
const SPIN_ROUNDS: u32 = 256;
/// Longest sleep in `poll` before the worker looks at its commands and renews its lease (well
/// inside `FORWARDER_LEASE_NS`).
const POLL_MS: i32 = 1;
/// `sendto` kicks per round while a TX ring still holds frames (copy mode sends at most 32
/// descriptors per call).
const MAX_KICKS: usize = 64;
/// Sockets one worker polls at most (interfaces beyond are carried by the XDP programs).
const MAX_SOCKETS: usize = 256;

/// What the agent tells a worker, between batches.
pub enum Command {
    /// A new snapshot of the tables.
    Tables(Arc<Tables>),
    /// The interfaces to serve from now on (sockets of others are closed, new ones bound).
    Ports(Vec<PortSpec>),
    /// The rules got other ids: the counts follow them ([`Pipeline::move_rule_hits`]).
    MoveRuleHits(Arc<[Option<u32>]>),
}

/// Where a frame of the UMEM is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    Free,
    /// In the fill ring of socket `n` of the worker, or received on it and in the worker's
    /// hands.
    Fill(usize),
    /// In the TX ring of socket `n`, until its completion.
    Tx(usize),
}

/// The UMEM's frames: a free list, and who holds each frame.
struct Pool {
    free: Vec<FrameDesc>,
    owner: Vec<Owner>,
    /// Every frame's descriptor as the UMEM made it, by frame index.
    pristine: Vec<FrameDesc>,
}

impl Pool {
    fn new(frames: Vec<FrameDesc>) -> Pool {
        Pool {
            owner: vec![Owner::Free; frames.len()],
            pristine: frames.clone(),
            free: frames,
        }
    }

    fn index(desc: &FrameDesc) -> usize {
        desc.addr() / FRAME_SIZE as usize
    }

    fn hand_to(&mut self, desc: &FrameDesc, owner: Owner) {
        owners_set(&mut self.owner, desc, owner);
    }

    /// Takes a frame back (a completion, a dropped frame), reset to its whole chunk.
    fn release(&mut self, desc: &FrameDesc) {
        let index = Pool::index(desc);
        if let (Some(owner), Some(pristine)) = (self.owner.get_mut(index), self.pristine.get(index))
        {
            if *owner != Owner::Free {
                *owner = Owner::Free;
                self.free.push(*pristine);
            }
        }
    }

    /// Takes back every frame socket `n` held (it is closed: the kernel let go of them), and
    /// renumbers the sockets after it, which move down by one.
    fn reclaim(&mut self, n: usize) {
        for index in 0..self.owner.len() {
            match self.owner[index] {
                Owner::Fill(m) | Owner::Tx(m) if m == n => {
                    self.owner[index] = Owner::Free;
                    self.free.push(self.pristine[index]);
                }
                Owner::Fill(m) if m > n => self.owner[index] = Owner::Fill(m - 1),
                Owner::Tx(m) if m > n => self.owner[index] = Owner::Tx(m - 1),
                _ => {}
            }
        }
    }
}

/// Records that `owner` now holds the frame `desc`.
fn owners_set(owners: &mut [Owner], desc: &FrameDesc, owner: Owner) {
    if let Some(slot) = owners.get_mut(Pool::index(desc)) {
        *slot = owner;
    }
}

/// Everything a worker needs to start.
pub struct WorkerSetup<M: Mirror> {
    pub id: usize,
    /// The core the worker pins itself to (`None`: not pinned).
    pub core: Option<usize>,
    /// The receive queue the worker serves on every interface.
    pub queue: u32,
    pub pipeline: Pipeline<M>,
    pub xsks: XskMap<MapData>,
    /// The worker's lease on its queue, renewed every round.
    pub lease: Lease,
    pub commands: Receiver<Command>,
    /// Told once the first set of interfaces is bound (or could not be).
    pub started: SyncSender<()>,
    pub stats: Arc<WorkerStats>,
    pub stop: Arc<AtomicBool>,
    /// Back the UMEM with huge pages (the node has enough free).
    pub huge_pages: bool,
}

struct Worker<M: Mirror> {
    setup: WorkerSetup<M>,
    umem: Umem,
    pool: Pool,
    ports: Vec<Port>,
    /// Socket number by ifindex, for `ToPod`.
    by_ifindex: BTreeMap<u32, usize>,
    underlay: Option<usize>,
    /// Scratch: descriptors from a ring.
    scratch: Vec<FrameDesc>,
    /// Frames bound for each socket this round.
    outgoing: Vec<Vec<FrameDesc>>,
    /// Frames each socket keeps in its fill ring.
    fill_target: u32,
}

/// Runs a worker until `stop` is set or the agent is gone.
pub fn run<M: Mirror>(setup: WorkerSetup<M>) {
    let id = setup.id;
    if let Some(core) = setup.core {
        match cpu::pin_current_thread(core) {
            Ok(()) => tracing::info!(worker = id, core, "forwarder worker pinned"),
            Err(error) => tracing::warn!(worker = id, core, %error, "forwarder worker not pinned"),
        }
    }
    let (umem, frames) = match create_umem(setup.huge_pages) {
        Ok(created) => created,
        Err(message) => {
            tracing::error!(worker = id, %message, "forwarder worker has no UMEM; the XDP programs carry its queue");
            setup.stats.set_failed(message);
            let _ = setup.started.send(());
            return;
        }
    };
    let mut worker = Worker {
        umem,
        pool: Pool::new(frames),
        ports: Vec::new(),
        by_ifindex: BTreeMap::new(),
        underlay: None,
        scratch: vec![FrameDesc::default(); RING_SIZE as usize],
        outgoing: Vec::new(),
        fill_target: 0,
        setup,
    };
    worker.run_loop();
    // The queue goes back to the XDP programs at once; then the sockets close (the kernel
    // takes them out of XSKS) before the UMEM goes.
    worker.setup.lease.end();
    worker.ports.clear();
    tracing::info!(worker = id, "forwarder worker stopped");
}

fn create_umem(huge_pages: bool) -> Result<(Umem, Vec<FrameDesc>), String> {
    let ring = QueueSize::new(RING_SIZE).expect("RING_SIZE is a power of two");
    let config = UmemConfig::builder()
        .frame_size(FrameSize::new(FRAME_SIZE).expect("FRAME_SIZE is a valid frame size"))
        .fill_queue_size(ring)
        .comp_queue_size(ring)
        .build()
        .map_err(|error| format!("UMEM configuration: {error}"))?;
    let count = NonZeroU32::new(UMEM_FRAMES).expect("non-zero");
    if huge_pages {
        match Umem::new(config, count, true) {
            Ok(created) => {
                tracing::info!(frames = UMEM_FRAMES, "UMEM on huge pages");
                return Ok(created);
            }
            Err(error) => {
                tracing::warn!(%error, "huge pages refused for the UMEM; using 4 KiB pages")
            }
        }
    } else {
        tracing::warn!(
            "not enough free huge pages for the UMEM (vm.nr_hugepages): using 4 KiB pages"
        );
    }
    Umem::new(config, count, false).map_err(|error| format!("creating the UMEM: {error}"))
}

impl<M: Mirror> Worker<M> {
    fn run_loop(&mut self) {
        let mut idle_rounds = 0u32;
        let mut started = false;
        while !self.setup.stop.load(Ordering::Relaxed) {
            if !self.take_commands() {
                return;
            }
            if !started {
                started = true;
                let _ = self.setup.started.send(());
            }
            let now = cpu::monotonic_ns();
            self.setup.lease.renew(now);
            if self.round(now) > 0 {
                idle_rounds = 0;
                self.housekeeping(now);
                continue;
            }
            idle_rounds += 1;
            if idle_rounds >= SPIN_ROUNDS {
                self.sleep();
                self.housekeeping(cpu::monotonic_ns());
            }
        }
    }

    /// Applies the agent's commands; `false` once the agent is gone.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.setup.commands.try_recv() {
                Ok(Command::Tables(tables)) => self.setup.pipeline.set_tables(tables),
                Ok(Command::Ports(ports)) => self.set_ports(ports),
                Ok(Command::MoveRuleHits(moves)) => self.setup.pipeline.move_rule_hits(&moves),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Closes the sockets of interfaces no longer wanted, binds the new ones.
    fn set_ports(&mut self, wanted: Vec<PortSpec>) {
        let mut n = 0;
        while n < self.ports.len() {
            if wanted.contains(&self.ports[n].spec) {
                n += 1;
                continue;
            }
            let port = self.ports.remove(n);
            tracing::info!(worker = self.setup.id, interface = %port.spec.name, queue = port.queue, "forwarder socket closed");
            drop(port);
            self.pool.reclaim(n);
        }
        for spec in wanted {
            if self.ports.len() >= MAX_SOCKETS {
                tracing::error!(worker = self.setup.id, interface = %spec.name, "too many sockets for one worker; the XDP programs keep carrying this interface");
                continue;
            }
            if self.ports.iter().any(|port| port.spec == spec) {
                continue;
            }
            self.add_port(spec);
        }
        self.by_ifindex = self
            .ports
            .iter()
            .enumerate()
            .filter(|(_, port)| port.spec.role == Role::Pod)
            .map(|(n, port)| (port.spec.ifindex, n))
            .collect();
        self.underlay = self
            .ports
            .iter()
            .position(|port| port.spec.role == Role::Underlay);
        self.outgoing = (0..self.ports.len())
            .map(|_| Vec::with_capacity(BATCH * self.ports.len()))
            .collect();
        self.setup.stats.set_sockets(
            self.ports
                .iter()
                .map(|port| (port.spec.clone(), port.queue))
                .collect(),
        );
    }

    /// Binds a socket for `spec`, stocks its fill ring, then registers it in `XSKS`.
    fn add_port(&mut self, spec: PortSpec) {
        let id = self.setup.id;
        let queue = self.setup.queue;
        let port = match Port::bind(&spec, queue, &self.umem) {
            Ok(port) => port,
            Err(error) if error.is_no_such_queue() && queue > 0 => {
                tracing::debug!(worker = id, %error, "no such queue on this interface");
                return;
            }
            Err(error) => {
                tracing::error!(worker = id, %error, "the XDP programs keep carrying this interface");
                return;
            }
        };
        self.ports.push(port);
        let n = self.ports.len() - 1;
        self.fill_target = (UMEM_FRAMES / 2 / self.ports.len() as u32).min(RING_SIZE);
        self.refill(n);
        match self.ports[n].register(&mut self.setup.xsks) {
            Ok(()) => tracing::info!(
                worker = id,
                interface = %spec.name,
                queue,
                "forwarder socket bound: this queue's fast-path frames go to the forwarder"
            ),
            Err(error) => {
                tracing::error!(worker = id, %error, "the XDP programs keep carrying this interface");
                self.ports.pop();
                self.pool.reclaim(n);
            }
        }
    }

    /// One round over every socket; returns the frames received.
    fn round(&mut self, now: u64) -> usize {
        for n in 0..self.ports.len() {
            self.reap(n);
            self.refill(n);
        }
        let mut received = 0;
        for n in 0..self.ports.len() {
            received += self.receive(n, now);
        }
        for n in 0..self.ports.len() {
            self.transmit(n);
        }
        received
    }

    /// Takes completed frames of socket `n` back into the pool.
    fn reap(&mut self, n: usize) {
        // SAFETY: `scratch` is space the ring writes descriptors into; the completions are
        // frames of this worker's UMEM that socket `n` sent.
        let done = unsafe { self.ports[n].comp.consume(&mut self.scratch) };
        for desc in &self.scratch[..done] {
            self.pool.release(desc);
        }
    }

    /// Tops up the fill ring of socket `n` from the free list; what it does not take stays
    /// free.
    fn refill(&mut self, n: usize) {
        let port = &mut self.ports[n];
        let room = port.fill.nb_free(self.fill_target) as usize;
        let want = room
            .min(self.pool.free.len())
            .min(self.fill_target as usize);
        if want == 0 {
            return;
        }
        let start = self.pool.free.len() - want;
        // SAFETY: the frames in the free list belong to this worker's UMEM and are in no ring.
        let produced = unsafe { port.fill.produce(&self.pool.free[start..]) };
        for desc in self.pool.free.drain(start..start + produced) {
            owners_set(&mut self.pool.owner, &desc, Owner::Fill(n));
        }
        if port.fill.needs_wakeup() {
            wake(port.fd(), libc::POLLIN);
        }
    }

    /// Receives a batch on socket `n`, decides every frame, queues what leaves.
    fn receive(&mut self, n: usize, now: u64) -> usize {
        let port = &mut self.ports[n];
        // SAFETY: `scratch` is space the ring fills with frames of this UMEM that socket `n`
        // received, now in the worker's hands.
        let count = unsafe { port.rx.consume(&mut self.scratch[..BATCH]) };
        if count == 0 {
            return 0;
        }
        let ingress = match port.spec.role {
            Role::Pod => Ingress::Pod {
                ifindex: port.spec.ifindex,
            },
            Role::Underlay => Ingress::Underlay,
        };
        let stats = self.setup.stats.clone();
        let mut tally = stats.batch();
        for i in 0..count {
            let mut desc = self.scratch[i];
            let bytes = desc.lengths().data() as u64;
            // SAFETY: the frame was just received by socket `n` and is in no ring; no other
            // reference to its data exists while the pipeline works on it.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let len = data.contents().len();
            let mut cursor = data.cursor();
            let room = cursor.buf_len();
            // The whole chunk from the frame's start is the pipeline's to use.
            cursor.set_pos(room);
            let mut frame = FrameBuf {
                buf: data.contents_mut(),
                len,
            };
            let verdict = self.setup.pipeline.process(ingress, &mut frame, now);
            let new_len = frame.len;
            data.cursor().set_pos(new_len);
            tally.count(verdict.counted, bytes);
            let out = match verdict.action {
                Action::Drop(_) => None,
                Action::Bounce => Some(n),
                Action::ToPod { ifindex } => self.by_ifindex.get(&ifindex).copied(),
                Action::ToUnderlay => self.underlay,
                // The XDP programs hand the forwarder IPv4 and ARP only.
                Action::Pass => {
                    tally.drop(DropReason::ForwarderCannotPass, bytes);
                    self.pool.release(&desc);
                    continue;
                }
            };
            match out {
                Some(out) => self.outgoing[out].push(desc),
                None => {
                    if !matches!(verdict.action, Action::Drop(_)) {
                        tally.drop(DropReason::ForwarderNoSocket, bytes);
                    }
                    self.pool.release(&desc);
                }
            }
        }
        tally.finish(count);
        count
    }

    /// Sends what this round queued for socket `n`, and kicks until its TX ring drains.
    fn transmit(&mut self, n: usize) {
        let mut queued = std::mem::take(&mut self.outgoing[n]);
        let port = &mut self.ports[n];
        if !queued.is_empty() {
            // SAFETY: the frames are this UMEM's, in the worker's hands, in no ring.
            let produced = unsafe { port.tx.produce(&queued) };
            for desc in &queued[..produced] {
                self.pool.hand_to(desc, Owner::Tx(n));
            }
            if produced < queued.len() {
                let mut tally = self.setup.stats.batch();
                for desc in &queued[produced..] {
                    tally.drop(
                        DropReason::ForwarderTxRingFull,
                        desc.lengths().data() as u64,
                    );
                    self.pool.release(desc);
                }
                tally.finish(0);
            }
            queued.clear();
        }
        self.outgoing[n] = queued;
        // Copy mode sends at most 32 descriptors per `sendto`: kick until the ring is empty, or
        // until a kick moves nothing (the device is busy: its queue drains in softirq or a NAPI
        // thread, perhaps on this CPU, which kicking harder would only starve).
        for _ in 0..MAX_KICKS {
            let port = &mut self.ports[n];
            let pending = RING_SIZE - port.tx.nb_free_exact();
            if pending == 0 || !port.tx.needs_wakeup() {
                break;
            }
            if let Err(error) = port.tx.wakeup() {
                tracing::debug!(interface = %port.spec.name, %error, "TX kick");
                break;
            }
            let moved = pending > RING_SIZE - port.tx.nb_free_exact();
            self.reap(n);
            if !moved {
                break;
            }
        }
    }

    /// Sleeps in `poll` on every socket for at most [`POLL_MS`].
    fn sleep(&mut self) {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; MAX_SOCKETS];
        for (slot, port) in fds.iter_mut().zip(&self.ports) {
            *slot = libc::pollfd {
                fd: port.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
        }
        if self.ports.is_empty() {
            std::thread::sleep(Duration::from_millis(POLL_MS as u64));
            return;
        }
        // SAFETY: `fds` holds `self.ports.len()` initialised entries (at most MAX_SOCKETS)
        // and outlives the call.
        unsafe { libc::poll(fds.as_mut_ptr(), self.ports.len() as libc::nfds_t, POLL_MS) };
    }

    /// Socket statistics, rule hits and expired connections, about once a second.
    fn housekeeping(&mut self, now: u64) {
        if !self.setup.stats.sample_due(now) {
            return;
        }
        let sockets = self
            .ports
            .iter()
            .map(|port| port.stats().unwrap_or_default())
            .collect();
        self.setup
            .stats
            .set_socket_stats(sockets, self.pool.free.len());
        self.setup.pipeline.collect_expired(now);
        self.setup
            .stats
            .set_rule_hits(self.setup.pipeline.rule_hits());
    }
}

/// Wakes the kernel for socket `fd` (fill ring of a zero-copy driver; a no-op in copy mode).
fn wake(fd: std::os::fd::RawFd, events: libc::c_short) {
    let mut pollfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd that outlives the call; timeout 0.
    unsafe { libc::poll(&mut pollfd, 1, 0) };
}
