//! The load generator: an AF_XDP TX-only flood of pre-built UDP frames out of one interface,
//! run as `ctpath-bench generate` inside the source pod's namespace (the harness spawns it there,
//! pinned with `taskset`, so the same generator drives every topology).
//!
//! Owns [`GenerateArgs`], [`Flood`] and [`GeneratorError`]. The socket is bound in copy mode to
//! queue 0 with `XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD` (a TX-only socket needs no XDP program; veth
//! has no zero-copy). Every frame is written into the UMEM once: `flows` templates that differ
//! only in the UDP source port (and so in the UDP checksum), repeated over the UMEM. The loop
//! keeps the TX ring full, kicks the kernel with `sendto` (copy mode transmits inside that call,
//! at most 32 frames per call), reaps completions and puts their frames back in the free list.
//! A copy-mode TX completes when the kernel frees the skb at the end of the path, so the flood
//! never outruns the path: what completes is what the path took.
//!
//! New-flow mode (`new_flows > 0`, the new-connections case): every frame is a new 5-tuple.
//! Before a free frame is produced its UDP source and destination ports are rewritten in the
//! UMEM to those of flow number `flow_base + k` ([`new_flow_ports`]: source ports
//! 1024..=65535, then the next destination port of 1..=19999, below the security group's
//! non-matching ports) and its UDP checksum updated incrementally (RFC 1624); the frame was
//! copied by the kernel when it was sent, so rewriting it after its completion is safe. With
//! `fixed_dst_port` (a service's port) only the source port changes, so a run has at most
//! 64,512 new flows. After `new_flows` frames the generator produces no more: the window then
//! ends early, so a run never creates more connections than its budget (see `bench/README.md`
//! on table capacity).
//!
//! Protocol on stdout, one line each, for the harness: `ready` once the socket is bound, then
//! `start <completed>` after the warm-up, `stop <completed> <elapsed_ns>` after the measured
//! window, and `done <completed> <outstanding>` when every frame in flight came back (or a
//! drain timeout passed) and the generator exits.
//!
//! Panic contract: nothing here panics on bad input; arguments are checked and every failure
//! is a [`GeneratorError`].

use std::{
    io::Write,
    net::Ipv4Addr,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use ctpath_dataplane::testing::FrameBuilder;
use thiserror::Error;
use xsk_rs::{
    config::{BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
    socket::Socket,
    umem::{frame::FrameDesc, Umem},
    CompQueue, TxQueue,
};

/// Smallest frame the generator builds: 64 bytes on the wire with the FCS.
pub const MIN_FRAME: usize = 64;
/// Largest frame: a 1450-byte pod MTU plus the Ethernet header and FCS.
pub const MAX_FRAME: usize = 1450 + 14 + 4;
/// The FCS the NIC would append; our buffers are 4 bytes shorter than the wire size.
pub const FCS_LEN: usize = 4;
/// UMEM frames: enough that the TX ring never starves waiting for completions.
const UMEM_FRAMES: u32 = 8192;
/// TX and completion ring sizes.
const RING_SIZE: u32 = 4096;
/// Frames produced per ring reservation.
const BATCH: usize = 64;
/// How long the generator waits for frames in flight after the window.
const DRAIN: Duration = Duration::from_millis(200);

#[derive(Debug, Error)]
pub enum GeneratorError {
    #[error("frame size {0} is outside {MIN_FRAME}..={MAX_FRAME} bytes")]
    FrameSize(usize),
    #[error("flows must be 1..=16384, got {0}")]
    Flows(u32),
    #[error("new flows {base} + {count} run past the {space} distinct port pairs")]
    NewFlows { base: u64, count: u64, space: u64 },
    #[error("source port base {base} + {flows} flows runs past port 65535")]
    PortRange { base: u16, flows: u32 },
    #[error("interface name {0:?} is not valid")]
    Interface(String),
    #[error("creating the UMEM ({frames} frames): {message}")]
    Umem { frames: u32, message: String },
    #[error("binding an AF_XDP socket to {ifname} queue 0 (copy mode): {message}")]
    Socket { ifname: String, message: String },
    #[error("writing frame {index} into the UMEM: {source}")]
    Write {
        index: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("kicking the TX ring of {ifname}: {source}")]
    Kick {
        ifname: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reporting to the harness: {0}")]
    Report(#[source] std::io::Error),
}

/// What to send, from where, for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateArgs {
    pub ifname: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// First UDP source port; flow `i` uses `src_port + i`.
    pub src_port: u16,
    pub dst_port: u16,
    /// Distinct UDP flows (source ports).
    pub flows: u32,
    /// Frame size on the wire, FCS included (64 means a 60-byte buffer).
    pub frame_size: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// New-flow mode: at most this many frames, each a new flow (0: off, `flows` templates).
    pub new_flows: u64,
    /// New-flow mode: the number of the first flow (so runs never repeat a 5-tuple).
    pub flow_base: u64,
    /// New-flow mode: keep `dst_port` (a service's port) and vary the source port only.
    pub fixed_dst_port: bool,
}

/// New-flow mode's source ports (1024..=65535) and destination ports (1..=19999).
const NEW_FLOW_SRC_PORTS: u64 = 65535 - 1024 + 1;
const NEW_FLOW_DST_PORTS: u64 = 19999;
/// Distinct (source port, destination port) pairs of new-flow mode.
pub const NEW_FLOW_SPACE: u64 = NEW_FLOW_SRC_PORTS * NEW_FLOW_DST_PORTS;
/// UDP header offsets in the generator's frames (Ethernet 14 + IPv4 20).
const UDP_SRC_PORT: usize = 34;
const UDP_CHECKSUM: usize = 40;

/// The (source, destination) UDP ports of new flow number `flow` (< [`NEW_FLOW_SPACE`]).
pub fn new_flow_ports(flow: u64) -> (u16, u16) {
    let src = 1024 + (flow % NEW_FLOW_SRC_PORTS);
    let dst = 1 + (flow / NEW_FLOW_SRC_PORTS) % NEW_FLOW_DST_PORTS;
    (src as u16, dst as u16)
}

/// Rewrites the UDP ports of `frame` (one of [`GenerateArgs::frames`]) and updates its UDP
/// checksum incrementally (RFC 1624: `HC' = ~(~HC + ~m + m')`).
pub fn set_ports(frame: &mut [u8], src: u16, dst: u16) {
    let Some(header) = frame.get_mut(UDP_SRC_PORT..UDP_CHECKSUM + 2) else {
        return;
    };
    let word = |h: &[u8], at: usize| u32::from(u16::from_be_bytes([h[at], h[at + 1]]));
    let old = [word(header, 0), word(header, 2)];
    let old_sum = word(header, 6);
    header[0..2].copy_from_slice(&src.to_be_bytes());
    header[2..4].copy_from_slice(&dst.to_be_bytes());
    if old_sum == 0 {
        return; // no checksum
    }
    let sum = u32::from(!(old_sum as u16))
        + u32::from(!(old[0] as u16))
        + u32::from(!(old[1] as u16))
        + u32::from(src)
        + u32::from(dst);
    let mut new = ctpath_common::checksum::checksum_fold(sum);
    if new == 0 {
        new = 0xffff; // zero means "no checksum" in UDP
    }
    header[6..8].copy_from_slice(&new.to_be_bytes());
}

impl GenerateArgs {
    /// Checks the arguments and builds the `flows` frame templates.
    pub fn frames(&self) -> Result<Vec<Vec<u8>>, GeneratorError> {
        if !(MIN_FRAME..=MAX_FRAME).contains(&self.frame_size) {
            return Err(GeneratorError::FrameSize(self.frame_size));
        }
        if !(1..=16384).contains(&self.flows) {
            return Err(GeneratorError::Flows(self.flows));
        }
        if u32::from(self.src_port) + self.flows - 1 > u32::from(u16::MAX) {
            return Err(GeneratorError::PortRange {
                base: self.src_port,
                flows: self.flows,
            });
        }
        let space = if self.fixed_dst_port {
            NEW_FLOW_SRC_PORTS
        } else {
            NEW_FLOW_SPACE
        };
        if self.new_flows > 0 && self.flow_base.saturating_add(self.new_flows) > space {
            return Err(GeneratorError::NewFlows {
                base: self.flow_base,
                count: self.new_flows,
                space,
            });
        }
        // Ethernet 14 + IPv4 20 + UDP 8 = 42 bytes of headers.
        let payload = vec![0u8; self.frame_size - FCS_LEN - 42];
        Ok((0..self.flows)
            .map(|flow| {
                FrameBuilder::udp(
                    self.src_mac,
                    self.dst_mac,
                    self.src_ip,
                    self.dst_ip,
                    self.src_port + flow as u16,
                    self.dst_port,
                    &payload,
                )
            })
            .collect())
    }
}

/// Counts of one flood.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flood {
    /// Frames the kernel completed (took and freed) over the whole run, warm-up included.
    pub completed: u64,
    /// Frames still in flight when the generator gave up waiting.
    pub outstanding: u64,
}

/// The AF_XDP socket with its UMEM and free frames.
struct Sender {
    umem: Umem,
    tx: TxQueue,
    comp: CompQueue,
    /// Frames not in flight, ready to be produced.
    free: Vec<FrameDesc>,
    /// Scratch for completions.
    reaped: Vec<FrameDesc>,
    /// Every frame's descriptor as written (length included), by frame index.
    written: Vec<FrameDesc>,
    frame_size: usize,
    ifname: String,
    completed: u64,
    /// New-flow mode: the next flow's number and the end of the budget.
    next_flow: u64,
    end_flow: u64,
    new_flows: bool,
    /// New-flow mode: the destination port every frame keeps (`fixed_dst_port`).
    fixed_dst_port: Option<u16>,
}

impl Sender {
    fn open(args: &GenerateArgs, frames: &[Vec<u8>]) -> Result<Sender, GeneratorError> {
        let frame_size = 2048u32;
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(frame_size).expect("2048 is a valid frame size"))
            .comp_queue_size(QueueSize::new(RING_SIZE).expect("power of two"))
            .fill_queue_size(QueueSize::new(RING_SIZE).expect("power of two"))
            .build()
            .map_err(|e| GeneratorError::Umem {
                frames: UMEM_FRAMES,
                message: e.to_string(),
            })?;
        let count = NonZeroU32::new(UMEM_FRAMES).expect("non-zero");
        let (umem, mut descs) =
            Umem::new(umem_config, count, false).map_err(|e| GeneratorError::Umem {
                frames: UMEM_FRAMES,
                message: e.to_string(),
            })?;
        let socket_config = SocketConfig::builder()
            .tx_queue_size(QueueSize::new(RING_SIZE).expect("power of two"))
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_COPY)
            .build();
        let interface: Interface = args
            .ifname
            .parse()
            .map_err(|_| GeneratorError::Interface(args.ifname.clone()))?;
        // SAFETY: nothing else in this process binds a socket to this interface and queue, and
        // the UMEM outlives the socket (both are fields of the returned `Sender`, the UMEM
        // dropped after the queues).
        let (tx, _rx, fq_cq) = unsafe { Socket::new(socket_config, &umem, &interface, 0) }
            .map_err(|e| GeneratorError::Socket {
                ifname: args.ifname.clone(),
                message: e.to_string(),
            })?;
        let (_fill, comp) = fq_cq.ok_or_else(|| GeneratorError::Socket {
            ifname: args.ifname.clone(),
            message: "the first socket of a UMEM has no fill and completion queues".into(),
        })?;
        for (index, desc) in descs.iter_mut().enumerate() {
            let frame = &frames[index % frames.len()];
            // SAFETY: `desc` is a frame of `umem` that no queue holds yet, and no other
            // reference to its data exists.
            let mut data = unsafe { umem.data_mut(desc) };
            data.cursor()
                .write_all(frame)
                .map_err(|source| GeneratorError::Write { index, source })?;
        }
        Ok(Sender {
            umem,
            tx,
            comp,
            written: descs.clone(),
            reaped: descs.clone(),
            free: descs,
            frame_size: frame_size as usize,
            ifname: args.ifname.clone(),
            completed: 0,
            next_flow: args.flow_base,
            end_flow: args.flow_base + args.new_flows,
            new_flows: args.new_flows > 0,
            fixed_dst_port: args.fixed_dst_port.then_some(args.dst_port),
        })
    }

    /// One round: produce what is free, kick, reap.
    fn round(&mut self) -> Result<(), GeneratorError> {
        while !self.free.is_empty() {
            let mut take = self.free.len().min(BATCH);
            if self.new_flows {
                take = take.min((self.end_flow - self.next_flow) as usize);
                if take == 0 {
                    break; // the budget of new flows is spent
                }
            }
            let start = self.free.len() - take;
            if self.new_flows {
                for (k, desc) in self.free[start..].iter_mut().enumerate() {
                    let (src, dst) = new_flow_ports(self.next_flow + k as u64);
                    let dst = self.fixed_dst_port.unwrap_or(dst);
                    // SAFETY: `desc` is a frame of `self.umem` in no queue (never produced,
                    // or completed: the kernel copied it when it was sent), and no other
                    // reference to its data exists.
                    let mut data = unsafe { self.umem.data_mut(desc) };
                    set_ports(data.contents_mut(), src, dst);
                }
            }
            // SAFETY: the frames in `free` belong to `self.umem` and are in no queue: each was
            // either never produced or came back through the completion queue.
            let produced = unsafe { self.tx.produce(&self.free[start..]) };
            self.free.truncate(self.free.len() - produced);
            // Frames rewritten but not produced are rewritten again, with the same numbers.
            self.next_flow += produced as u64;
            if produced < take {
                break; // TX ring full
            }
        }
        self.tx.wakeup().map_err(|source| GeneratorError::Kick {
            ifname: self.ifname.clone(),
            source,
        })?;
        self.reap();
        Ok(())
    }

    /// Moves completed frames back to the free list.
    fn reap(&mut self) {
        // SAFETY: `reaped` is scratch space; the completion queue only writes addresses of
        // frames of `self.umem` into it.
        let n = unsafe { self.comp.consume(&mut self.reaped) };
        for desc in &self.reaped[..n] {
            // The completion carries the frame's address only; take its written descriptor.
            let index = desc.addr() / self.frame_size;
            if let Some(written) = self.written.get(index) {
                self.free.push(*written);
            }
        }
        self.completed += n as u64;
    }

    fn in_flight(&self) -> u64 {
        (self.written.len() - self.free.len()) as u64
    }

    /// New-flow mode: every flow of the budget was sent and came back.
    fn spent(&self) -> bool {
        self.new_flows && self.next_flow == self.end_flow && self.in_flight() == 0
    }

    /// Keeps the umem alive until after the queues (field order is not relied on).
    fn close(self) {
        let Sender { tx, comp, umem, .. } = self;
        drop(tx);
        drop(comp);
        drop(umem);
    }
}

/// Runs the flood described by `args`, reporting on `out` (see the module docs).
pub fn run(args: &GenerateArgs, out: &mut impl Write) -> Result<Flood, GeneratorError> {
    let frames = args.frames()?;
    let mut sender = Sender::open(args, &frames)?;
    let mut say = |line: String| -> Result<(), GeneratorError> {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(GeneratorError::Report)
    };
    say("ready".into())?;
    let warmup_end = Instant::now() + args.warmup;
    while Instant::now() < warmup_end && !sender.spent() {
        sender.round()?;
    }
    say(format!("start {}", sender.completed))?;
    let start = Instant::now();
    let (start_count, end) = (sender.completed, start + args.duration);
    let mut rounds = 0u32;
    loop {
        sender.round()?;
        rounds = rounds.wrapping_add(1);
        // Reading the clock every round costs more than a round at 64 bytes.
        if rounds.is_multiple_of(16) && (Instant::now() >= end || sender.spent()) {
            break;
        }
    }
    let elapsed = start.elapsed();
    say(format!(
        "stop {} {}",
        sender.completed - start_count,
        elapsed.as_nanos()
    ))?;
    let drain_end = Instant::now() + DRAIN;
    while sender.in_flight() > 0 && Instant::now() < drain_end {
        sender.tx.wakeup().map_err(|source| GeneratorError::Kick {
            ifname: sender.ifname.clone(),
            source,
        })?;
        sender.reap();
    }
    let flood = Flood {
        completed: sender.completed,
        outstanding: sender.in_flight(),
    };
    say(format!("done {} {}", flood.completed, flood.outstanding))?;
    sender.close();
    Ok(flood)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(frame_size: usize, flows: u32) -> GenerateArgs {
        GenerateArgs {
            ifname: "eth0".into(),
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 40000,
            dst_port: 9,
            flows,
            frame_size,
            warmup: Duration::ZERO,
            duration: Duration::ZERO,
            new_flows: 0,
            flow_base: 0,
            fixed_dst_port: false,
        }
    }

    /// The UDP checksum of `frame` over the pseudo-header, computed from scratch.
    fn udp_checksum(frame: &[u8]) -> u16 {
        let udp = &frame[34..];
        let mut sum = 0u32;
        for pair in frame[26..34].chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        sum += 17 + udp.len() as u32;
        for (i, pair) in udp.chunks(2).enumerate() {
            if i == 3 {
                continue; // the checksum field
            }
            let hi = pair[0];
            let lo = pair.get(1).copied().unwrap_or(0);
            sum += u32::from(u16::from_be_bytes([hi, lo]));
        }
        ctpath_common::checksum::checksum_fold(sum)
    }

    #[test]
    fn new_flows_rewrite_ports_and_keep_the_checksum_right() {
        let mut frame = args(64, 1).frames().unwrap().remove(0);
        assert_eq!(
            udp_checksum(&frame),
            u16::from_be_bytes([frame[40], frame[41]])
        );
        let mut seen = std::collections::BTreeSet::new();
        for flow in [0, 1, 64511, 64512, 1_000_000, NEW_FLOW_SPACE - 1] {
            let (src, dst) = new_flow_ports(flow);
            assert!(
                src >= 1024 && (1..20000).contains(&dst),
                "{flow}: {src} {dst}"
            );
            assert!(seen.insert((src, dst)), "flow {flow} repeats a port pair");
            set_ports(&mut frame, src, dst);
            assert_eq!(u16::from_be_bytes([frame[34], frame[35]]), src);
            assert_eq!(u16::from_be_bytes([frame[36], frame[37]]), dst);
            assert_eq!(
                udp_checksum(&frame),
                u16::from_be_bytes([frame[40], frame[41]]),
                "flow {flow}"
            );
        }
        let mut over = args(64, 1);
        over.new_flows = 10;
        over.flow_base = NEW_FLOW_SPACE - 5;
        assert!(matches!(
            over.frames(),
            Err(GeneratorError::NewFlows { .. })
        ));
    }

    #[test]
    fn frames_have_the_wire_size_less_the_fcs_and_one_port_per_flow() {
        let frames = args(64, 1024).frames().unwrap();
        assert_eq!(frames.len(), 1024);
        assert!(frames.iter().all(|f| f.len() == 60));
        let ports: std::collections::BTreeSet<u16> = frames
            .iter()
            .map(|f| u16::from_be_bytes([f[34], f[35]]))
            .collect();
        assert_eq!(ports.len(), 1024);
        assert_eq!(ports.first(), Some(&40000));
        assert_eq!(args(1400, 1).frames().unwrap()[0].len(), 1396);
    }

    #[test]
    fn bad_arguments_are_named() {
        assert_eq!(
            args(60, 1).frames().unwrap_err().to_string(),
            "frame size 60 is outside 64..=1468 bytes"
        );
        assert!(matches!(
            args(64, 0).frames(),
            Err(GeneratorError::Flows(0))
        ));
        let mut wide = args(64, 1024);
        wide.src_port = 65000;
        assert!(matches!(
            wide.frames(),
            Err(GeneratorError::PortRange { .. })
        ));
    }
}
