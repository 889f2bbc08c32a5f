//! One sample of each kind, on one built topology: a pps flood counted at the sink, a UDP
//! ping-pong's round trips, an iperf3 TCP stream.
//!
//! Owns [`MeasureError`] and the sample types ([`PpsSample`], [`LatencySample`], [`TcpSample`]),
//! which are also the records of the JSON report.
//!
//! pps: the generator (`ctpath-bench generate`, see `generator.rs`) runs in the source pod,
//! pinned with `taskset`; the harness reads the sink when the generator says `start` and when
//! it says `stop`, and divides by its own clock between the two reads, so pipe latency cannot
//! skew the rate. Drops are exact: what the generator's socket completed over its whole life
//! (every frame the path took) less what the sink counted from before it started to after it
//! drained.
//!
//! Panic contract: nothing here panics; a sample that cannot be taken is a [`MeasureError`].

use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    process::Stdio,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    cpus::{self, CpuShare, CpuTimes, Placement},
    forwarder::ForwarderSample,
    generator::GenerateArgs,
    topology::{Topology, TopologyError, TopologyKind, DST_IP, DST_MAC, POD_IF, SRC_IP, SRC_MAC},
};

/// How long the generator may take to say each line before the sample is abandoned.
const GENERATOR_TIMEOUT: Duration = Duration::from_secs(15);
/// UDP port of the flood (discard), the ping-pong (echo) and iperf3.
pub const FLOOD_PORT: u16 = 9;
pub const ECHO_PORT: u16 = 7;
pub const IPERF_PORT: u16 = 5201;
/// First UDP source port of the flood.
pub const FLOOD_SRC_PORT: u16 = 40000;

#[derive(Debug, Error)]
pub enum MeasureError {
    #[error("{topology}: starting {what}: {message}")]
    Start {
        topology: TopologyKind,
        what: &'static str,
        message: String,
    },
    #[error("{topology}: the generator {problem}; its stderr: {stderr}")]
    Generator {
        topology: TopologyKind,
        problem: String,
        stderr: String,
    },
    #[error("{topology}: ping-pong: {message}")]
    PingPong {
        topology: TopologyKind,
        message: String,
    },
    #[error("{topology}: iperf3: {message}")]
    Iperf {
        topology: TopologyKind,
        message: String,
    },
    /// ctpath-afxdp: the sample did not (all) go through the forwarder, or its report could
    /// not be read; the sample is not recorded.
    #[error("the sample is not counted: {0}")]
    Forwarder(Box<TopologyError>),
}

impl From<TopologyError> for MeasureError {
    fn from(error: TopologyError) -> MeasureError {
        MeasureError::Forwarder(Box::new(error))
    }
}

/// Where the flood goes: the address, MAC and UDP port of its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub port: u16,
    /// New-flow mode keeps `port` (a service's) and varies the source port only.
    pub fixed_port: bool,
}

impl Destination {
    /// The destination pod, as every case of the main bench floods it.
    pub const DST_POD: Destination = Destination {
        ip: DST_IP,
        mac: DST_MAC,
        port: FLOOD_PORT,
        fixed_port: false,
    };
}

/// One flood case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Frame size on the wire, FCS included.
    pub frame_size: usize,
    /// Distinct flows; in new-flow mode, the budget of new flows per run (one per frame).
    pub flows: u32,
    /// Every frame a new UDP flow (the new-connections case), at most `flows` per run.
    #[serde(default)]
    pub new_flows: bool,
}

impl Traffic {
    pub const fn flood(frame_size: usize, flows: u32) -> Traffic {
        Traffic {
            frame_size,
            flows,
            new_flows: false,
        }
    }
}

impl std::fmt::Display for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.new_flows {
            return write!(f, "{} B, new flow per frame", self.frame_size);
        }
        let flows = if self.flows == 1 { "flow" } else { "flows" };
        write!(f, "{} B, {} {flows}", self.frame_size, self.flows)
    }
}

/// One flood run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PpsSample {
    pub topology: String,
    pub frame_size: usize,
    pub flows: u32,
    /// The new-connections case: every frame a new flow, at most `flows` per run.
    #[serde(default)]
    pub new_flows: bool,
    pub rules: usize,
    pub run: usize,
    /// Received at the sink per second, over the measured window.
    pub received_pps: f64,
    /// Completed by the generator's socket per second, over its measured window.
    pub sent_pps: f64,
    /// Frames the path took but the sink never counted, over the generator's whole life.
    pub drops: u64,
    /// Frames the generator's socket completed over its whole life (warm-up included).
    pub completed: u64,
    /// Frames the sink counted over the same life.
    pub received: u64,
    /// Frames still in flight when the generator stopped waiting (normally 0).
    pub outstanding: u64,
    /// ctpath's own drop counters over the run (both nodes, all reasons); 0 elsewhere.
    pub datapath_drops: u64,
    /// Of those, `conntrack_full` (XDP programs; the forwarder's are among its drops).
    #[serde(default)]
    pub conntrack_full: u64,
    /// kernel: the destination node's conntrack entries after the run and `nf_conntrack_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_conntrack: Option<(u64, u64)>,
    pub window_seconds: f64,
    /// Per CPU, where the time went over the window.
    pub cpu: Vec<CpuShare>,
    /// ctpath-afxdp: what the forwarders' workers received over the generator's life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder: Option<ForwarderSample>,
}

/// One ping-pong run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySample {
    pub topology: String,
    pub rules: usize,
    pub run: usize,
    pub round_trips: usize,
    pub lost: usize,
    pub min_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// (quantile, µs) points of this run's distribution, for the CDF plot.
    pub cdf: Vec<(f64, f64)>,
    /// ctpath-afxdp: what the forwarders' workers received over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder: Option<ForwarderSample>,
}

/// One iperf3 run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpSample {
    pub topology: String,
    pub rules: usize,
    pub run: usize,
    pub bits_per_second: f64,
    pub retransmits: u64,
    pub seconds: u64,
    /// ctpath-afxdp: what the forwarders' workers received over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder: Option<ForwarderSample>,
}

/// Timing of one flood.
#[derive(Clone, Copy, Debug)]
pub struct FloodTiming {
    pub warmup: Duration,
    pub window: Duration,
}

/// Floods `topology` with `traffic` once and counts at its sink (which must be attached). In
/// new-flow mode the flows are numbered from `flow_base` (the caller never repeats one).
#[allow(clippy::too_many_arguments)]
pub fn pps(
    topology: &Topology,
    traffic: Traffic,
    timing: FloodTiming,
    placement: &Placement,
    known_napi: &[u32],
    run: usize,
    flow_base: u64,
) -> Result<PpsSample, MeasureError> {
    let kind = topology.kind;
    let mut args = flood_args(traffic, timing, topology.destination);
    args.flow_base = flow_base;
    let exe = std::env::current_exe().map_err(|e| MeasureError::Start {
        topology: kind,
        what: "the generator",
        message: format!("cannot find ctpath-bench itself: {e}"),
    })?;
    let exe = exe.display().to_string();
    let generate = generate_argv(&exe, &args);
    let generate: Vec<&str> = generate.iter().map(String::as_str).collect();
    let argv = Placement::taskset(placement.generator_cpu, &generate);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();

    let mark = topology.forwarder_mark()?;
    let drops_before = topology.datapath_drops();
    let full_before = topology.conntrack_full();
    let before = topology.received().packets;
    let mut child = topology
        .src()
        .spawn_with(&argv, Stdio::piped(), Stdio::piped())
        .map_err(|e| MeasureError::Start {
            topology: kind,
            what: "the generator",
            message: e.to_string(),
        })?;
    let stdout = child.take_stdout();
    let stderr = child.take_stderr();
    let (line_tx, line_rx) = mpsc::channel::<String>();
    if let Some(stdout) = stdout {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let stderr_text = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    });
    let fail = |problem: String, child: ctpath_testbed::ChildGuard| {
        drop(child);
        MeasureError::Generator {
            topology: kind,
            problem,
            stderr: String::new(),
        }
    };

    let expect = |word: &str| -> Result<Vec<u64>, String> {
        let line = line_rx
            .recv_timeout(GENERATOR_TIMEOUT + timing.warmup + timing.window)
            .map_err(|_| format!("did not say `{word}` in time"))?;
        let mut parts = line.split_whitespace();
        if parts.next() != Some(word) {
            return Err(format!("said {line:?} where `{word}` was expected"));
        }
        parts
            .map(|p| p.parse().map_err(|_| format!("bad number in {line:?}")))
            .collect()
    };
    let outcome = (|| -> Result<_, String> {
        expect("ready")?;
        // Threaded NAPI kthreads appear when a veth gets NAPI: pin the new ones now.
        placement
            .pin_napi_threads(known_napi)
            .map_err(|e| e.to_string())?;
        expect("start")?;
        let (t0, s0, cpu0) = (Instant::now(), topology.received().packets, CpuTimes::now());
        let stop = expect("stop")?;
        let (t1, s1, cpu1) = (Instant::now(), topology.received().packets, CpuTimes::now());
        let done = expect("done")?;
        Ok((t0, s0, cpu0, stop, t1, s1, cpu1, done))
    })();
    let (t0, s0, cpu0, stop, t1, s1, cpu1, done) = match outcome {
        Ok(values) => values,
        Err(problem) => {
            let mut error = fail(problem, child);
            if let MeasureError::Generator { stderr, .. } = &mut error {
                *stderr = stderr_text.join().unwrap_or_default();
            }
            return Err(error);
        }
    };
    let status = child.wait_timeout(Duration::from_secs(5)).ok().flatten();
    let stderr = stderr_text.join().unwrap_or_default();
    if !status.is_some_and(|s| s.success()) {
        return Err(MeasureError::Generator {
            topology: kind,
            problem: format!("exited with {status:?}"),
            stderr,
        });
    }
    // Let the last frames reach the sink.
    std::thread::sleep(Duration::from_millis(20));
    let after = topology.received().packets;
    let (window_completed, window_ns) = (
        stop.first().copied().unwrap_or(0),
        stop.get(1).copied().unwrap_or(1),
    );
    let (completed, outstanding) = (
        done.first().copied().unwrap_or(0),
        done.get(1).copied().unwrap_or(0),
    );
    let received = after - before;
    let window = (t1 - t0).as_secs_f64();
    // Every frame at the sink went through both nodes' workers (the sink may count a few
    // frames that are not the flood).
    let forwarder = topology.forwarder_since(mark.as_ref(), received - received / 100)?;
    let forwarder_drops = forwarder.as_ref().map_or(0, ForwarderSample::drops);
    Ok(PpsSample {
        topology: kind.name().into(),
        frame_size: traffic.frame_size,
        flows: traffic.flows,
        new_flows: traffic.new_flows,
        rules: topology.rules,
        run,
        received_pps: (s1 - s0) as f64 / window,
        sent_pps: window_completed as f64 / (window_ns as f64 / 1e9),
        drops: completed.saturating_sub(received),
        completed,
        received,
        outstanding,
        datapath_drops: topology.datapath_drops().saturating_sub(drops_before) + forwarder_drops,
        conntrack_full: topology.conntrack_full().saturating_sub(full_before),
        kernel_conntrack: topology.kernel_conntrack(),
        window_seconds: window,
        cpu: cpu1.since(&cpu0),
        forwarder,
    })
}

/// The generator's arguments for `traffic` from the source pod to `to`.
pub fn flood_args(traffic: Traffic, timing: FloodTiming, to: Destination) -> GenerateArgs {
    GenerateArgs {
        ifname: POD_IF.into(),
        src_mac: SRC_MAC,
        dst_mac: to.mac,
        src_ip: SRC_IP,
        dst_ip: to.ip,
        src_port: FLOOD_SRC_PORT,
        dst_port: to.port,
        // New-flow mode rewrites the ports of one template per frame.
        flows: if traffic.new_flows { 1 } else { traffic.flows },
        frame_size: traffic.frame_size,
        warmup: timing.warmup,
        duration: timing.window,
        new_flows: if traffic.new_flows {
            u64::from(traffic.flows)
        } else {
            0
        },
        flow_base: 0,
        fixed_dst_port: to.fixed_port,
    }
}

/// The `ctpath-bench generate` command line for `args`.
pub fn generate_argv(exe: &str, args: &GenerateArgs) -> Vec<String> {
    let mut argv = vec![
        exe.to_owned(),
        "generate".into(),
        "--ifname".into(),
        args.ifname.clone(),
        "--src-mac".into(),
        ctpath_testbed::format_mac(args.src_mac),
        "--dst-mac".into(),
        ctpath_testbed::format_mac(args.dst_mac),
        "--src-ip".into(),
        args.src_ip.to_string(),
        "--dst-ip".into(),
        args.dst_ip.to_string(),
        "--src-port".into(),
        args.src_port.to_string(),
        "--dst-port".into(),
        args.dst_port.to_string(),
        "--flows".into(),
        args.flows.to_string(),
        "--frame-size".into(),
        args.frame_size.to_string(),
        "--warmup-ms".into(),
        args.warmup.as_millis().to_string(),
        "--duration-ms".into(),
        args.duration.as_millis().to_string(),
        "--new-flows".into(),
        args.new_flows.to_string(),
        "--flow-base".into(),
        args.flow_base.to_string(),
    ];
    if args.fixed_dst_port {
        argv.push("--fixed-dst-port".into());
    }
    argv
}

/// `round_trips` UDP request/response exchanges from the source pod to the destination pod
/// (after `warmup` unrecorded ones), client on the generator CPU and server on the datapath CPU.
pub fn latency(
    topology: &Topology,
    round_trips: usize,
    warmup: usize,
    placement: &Placement,
    run: usize,
) -> Result<LatencySample, MeasureError> {
    let kind = topology.kind;
    let error = |message: String| MeasureError::PingPong {
        topology: kind,
        message,
    };
    let mark = topology.forwarder_mark()?;
    let stop = AtomicBool::new(false);
    let (bound_tx, bound_rx) = mpsc::channel::<Result<(), String>>();
    let server_cpu = placement.datapath_cpu;
    let client_cpu = placement.generator_cpu;
    let wait = Duration::from_millis(200);
    std::thread::scope(|scope| {
        let stop = &stop;
        let server = scope.spawn(move || {
            topology.dst().run_in(move || {
                let setup = (|| -> Result<UdpSocket, String> {
                    cpus::pin_current_thread(server_cpu).map_err(|e| e.to_string())?;
                    let socket = UdpSocket::bind(SocketAddrV4::new(DST_IP, ECHO_PORT))
                        .map_err(|e| format!("bind {DST_IP}:{ECHO_PORT}: {e}"))?;
                    socket
                        .set_read_timeout(Some(Duration::from_millis(50)))
                        .map_err(|e| e.to_string())?;
                    Ok(socket)
                })();
                let socket = match setup {
                    Ok(socket) => {
                        let _ = bound_tx.send(Ok(()));
                        socket
                    }
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((len, peer)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..len], peer);
                    }
                }
            })
        });
        let result = (|| -> Result<(Vec<f64>, usize), MeasureError> {
            bound_rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| error("server did not start".into()))?
                .map_err(error)?;
            topology
                .src()
                .run_in(move || -> Result<(Vec<f64>, usize), String> {
                    cpus::pin_current_thread(client_cpu).map_err(|e| e.to_string())?;
                    let socket = UdpSocket::bind(SocketAddrV4::new(SRC_IP, 0))
                        .map_err(|e| format!("bind {SRC_IP}: {e}"))?;
                    socket
                        .connect(SocketAddrV4::new(DST_IP, ECHO_PORT))
                        .map_err(|e| e.to_string())?;
                    socket
                        .set_read_timeout(Some(wait))
                        .map_err(|e| e.to_string())?;
                    let mut rtts = Vec::with_capacity(round_trips);
                    let mut lost = 0usize;
                    let mut buf = [0u8; 64];
                    for i in 0..warmup + round_trips {
                        let request = (i as u64).to_be_bytes();
                        let sent = Instant::now();
                        socket.send(&request).map_err(|e| format!("send: {e}"))?;
                        // Skip late answers to earlier requests.
                        let answered = loop {
                            match socket.recv(&mut buf) {
                                Ok(8) if buf[..8] == request => break true,
                                Ok(_) => continue,
                                Err(_) => break false,
                            }
                        };
                        if i < warmup {
                            continue;
                        }
                        if answered {
                            rtts.push(sent.elapsed().as_secs_f64() * 1e6);
                        } else {
                            lost += 1;
                            if lost > round_trips / 10 + 10 {
                                return Err(format!("{lost} round trips lost"));
                            }
                        }
                    }
                    Ok((rtts, lost))
                })
                .map_err(|e| error(e.to_string()))?
                .map_err(error)
        })();
        stop.store(true, Ordering::Relaxed);
        let _ = server.join();
        let (mut rtts, lost) = result?;
        if rtts.is_empty() {
            return Err(error("no round trip answered".into()));
        }
        rtts.sort_by(f64::total_cmp);
        // Each answered round trip is received twice by each node's workers.
        let forwarder = topology.forwarder_since(mark.as_ref(), 2 * rtts.len() as u64)?;
        Ok(LatencySample {
            topology: kind.name().into(),
            rules: topology.rules,
            run,
            round_trips: rtts.len(),
            lost,
            min_us: rtts[0],
            p50_us: quantile(&rtts, 0.5),
            p99_us: quantile(&rtts, 0.99),
            p999_us: quantile(&rtts, 0.999),
            max_us: rtts[rtts.len() - 1],
            cdf: CDF_POINTS
                .iter()
                .map(|&q| (q, quantile(&rtts, q)))
                .collect(),
            forwarder,
        })
    })
}

/// Quantiles kept per run for the CDF: fine in the body, finer in the tail.
pub const CDF_POINTS: &[f64] = &[
    0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7,
    0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995,
    0.9999, 1.0,
];

/// The `q` quantile of sorted `values` (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One iperf3 TCP stream from the source pod to the destination pod for `seconds`.
pub fn tcp(
    topology: &Topology,
    seconds: u64,
    placement: &Placement,
    run: usize,
) -> Result<TcpSample, MeasureError> {
    let kind = topology.kind;
    let error = |message: String| MeasureError::Iperf {
        topology: kind,
        message,
    };
    let mark = topology.forwarder_mark()?;
    let port = IPERF_PORT.to_string();
    let dst = DST_IP.to_string();
    let server_argv = Placement::taskset(
        placement.datapath_cpu,
        &["iperf3", "-s", "-1", "-B", &dst, "-p", &port],
    );
    let server_argv: Vec<&str> = server_argv.iter().map(String::as_str).collect();
    let server = topology
        .dst()
        .spawn(&server_argv)
        .map_err(|e| error(e.to_string()))?;
    let secs = seconds.to_string();
    let client_argv = Placement::taskset(
        placement.generator_cpu,
        &[
            "iperf3",
            "-c",
            &dst,
            "-p",
            &port,
            "-t",
            &secs,
            "-J",
            "--connect-timeout",
            "1000",
        ],
    );
    let client_argv: Vec<&str> = client_argv.iter().map(String::as_str).collect();
    // The server takes a moment to listen; retry the client while it is refused.
    let mut last = String::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let output = topology
            .src()
            .exec_unchecked(&client_argv)
            .map_err(|e| error(e.to_string()))?;
        let text = String::from_utf8_lossy(&output.stdout);
        match parse_iperf(&text) {
            Ok((bits_per_second, retransmits)) if output.status.success() => {
                drop(server);
                // Data segments carry at most one MTU (1450 bytes) each; ask for half of that
                // many frames through each node's workers.
                let segments = bits_per_second * seconds as f64 / 8.0 / 1450.0;
                let forwarder = topology.forwarder_since(mark.as_ref(), (segments / 2.0) as u64)?;
                return Ok(TcpSample {
                    topology: kind.name().into(),
                    rules: topology.rules,
                    run,
                    bits_per_second,
                    retransmits,
                    seconds,
                    forwarder,
                });
            }
            Ok(_) => last = format!("exit status {}", output.status),
            Err(e) => last = e,
        }
    }
    drop(server);
    Err(error(last))
}

/// `(received bits per second, retransmits)` from `iperf3 -J` output.
pub fn parse_iperf(json: &str) -> Result<(f64, u64), String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not JSON ({e}): {json:.200}"))?;
    if let Some(message) = value.get("error").and_then(|e| e.as_str()) {
        return Err(message.to_owned());
    }
    let end = &value["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| "no end.sum_received.bits_per_second".to_owned())?;
    let retransmits = end["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    Ok((bps, retransmits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 500.0);
        assert_eq!(quantile(&v, 0.99), 990.0);
        assert_eq!(quantile(&v, 0.999), 999.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 1000.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn iperf_json_is_read() {
        let json =
            r#"{"end":{"sum_sent":{"retransmits":3},"sum_received":{"bits_per_second":5.4e10}}}"#;
        assert_eq!(parse_iperf(json), Ok((5.4e10, 3)));
        assert_eq!(
            parse_iperf(r#"{"error":"unable to connect to server"}"#),
            Err("unable to connect to server".into())
        );
        assert!(parse_iperf("garbage").is_err());
    }

    #[test]
    fn generate_argv_round_trips_through_the_cli() {
        let args = GenerateArgs {
            ifname: "eth0".into(),
            src_mac: SRC_MAC,
            dst_mac: DST_MAC,
            src_ip: SRC_IP,
            dst_ip: DST_IP,
            src_port: 40000,
            dst_port: 9,
            flows: 1024,
            frame_size: 1400,
            warmup: Duration::from_millis(300),
            duration: Duration::from_millis(2000),
            new_flows: 40000,
            flow_base: 80000,
            fixed_dst_port: true,
        };
        let argv = generate_argv("ctpath-bench", &args);
        assert_eq!(crate::cli::parse_generate(&argv).unwrap(), args);
    }
}
