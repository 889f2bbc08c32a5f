//! Where the generator and the datapath run: `--cpus same|split`, and the pinning behind it.
//!
//! Owns [`CpuMode`], [`Placement`] and the mechanics: `taskset` for spawned processes,
//! `sched_setaffinity` for the harness's own threads (the ping-pong), and in split mode threaded
//! NAPI and RPS for the kernel's share of the work.
//!
//! What runs where on veth: a frame sent into a veth is processed by its peer in softirq context
//! on the CPU that sent it (the peer's NAPI is scheduled there, or the frame is queued to that
//! CPU's backlog). So pinning the generator to a CPU pins the whole path behind it to that CPU,
//! through every veth hop, and that is `same`: generator, XDP programs, bridge, netfilter, vxlan
//! and the sink all on one CPU, the stable configuration on this kind of machine.
//!
//! `split` moves the datapath to a second CPU: the source pod's host-side veth gets GRO on, then
//! every veth of the topology that has NAPI gets threaded NAPI (`/sys/class/net/IF/threaded`;
//! the kernel refuses the flag on a veth without NAPI, so it is applied again after the sinks'
//! XDP is attached), whose `napi/IF-ID` kernel threads are pinned to the datapath CPU before
//! every sample. A thread that cannot be pinned, or no thread at all, fails the sample or the
//! run: a split figure is never silently a same-CPU one. GRO on the source pod's host veth makes
//! it run NAPI in the kernel topology too (without XDP or GRO a veth
//! hands frames to the sending CPU's backlog, and the kernel path would stay on the generator's
//! CPU). The generator keeps its own CPU: it builds the skb and puts it in the veth's ring, and
//! that is all that runs there. When the datapath is slower than the generator the ring
//! overflows and frames are dropped at the first veth: split runs report drops.

use std::{fmt, path::Path};

use ctpath_testbed::Netns;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CpuError {
    #[error("--cpus split needs two CPUs, this machine has {0}")]
    TooFewCpus(usize),
    #[error("sched_setaffinity to CPU {cpu}: {source}")]
    Affinity {
        cpu: usize,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--cpus split: pinning napi/* thread {pid} to CPU {cpu} failed ({source}); the \
         datapath would run where the scheduler puts it"
    )]
    PinNapi {
        pid: u32,
        cpu: usize,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--cpus split: no napi/* thread appeared (threaded NAPI did not take on the \
         topology's veths), so the datapath would follow the generator's CPU"
    )]
    NoNapiThreads,
    #[error("{what} in {netns}: {message}")]
    Sysfs {
        what: String,
        netns: String,
        message: String,
    },
}

/// `--cpus`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CpuMode {
    /// Generator and datapath on one CPU (the stable, headline configuration).
    Same,
    /// Generator on one CPU, datapath (NAPI threads, RPS) on another.
    Split,
}

impl fmt::Display for CpuMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuMode::Same => "same",
            CpuMode::Split => "split",
        })
    }
}

/// The CPUs of one run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    pub mode: CpuMode,
    /// The generator, the ping-pong client and the iperf3 client.
    pub generator_cpu: usize,
    /// Softirq / NAPI work, the ping-pong server and the iperf3 server.
    pub datapath_cpu: usize,
    /// In words, for every output.
    pub description: String,
}

impl Placement {
    pub fn new(mode: CpuMode) -> Result<Placement, CpuError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(match mode {
            CpuMode::Same => Placement {
                mode,
                generator_cpu: 0,
                datapath_cpu: 0,
                description: "same: generator, datapath (softirq/NAPI, which follows the sender \
                              on veth), the AF_XDP forwarder's workers (--fastpath-cores 0) and \
                              sink on CPU 0; ping-pong and iperf3 client and server on CPU 0"
                    .into(),
            },
            CpuMode::Split if cpus < 2 => return Err(CpuError::TooFewCpus(cpus)),
            CpuMode::Split => Placement {
                mode,
                generator_cpu: 0,
                datapath_cpu: 1,
                description: "split: generator on CPU 0; datapath on CPU 1 (threaded NAPI on \
                              every veth, napi/* threads pinned to CPU 1, GRO on the source \
                              pod's host veth so it has NAPI in every topology; the AF_XDP \
                              forwarder's workers, --fastpath-cores 1); ping-pong and iperf3 \
                              clients on CPU 0, servers on CPU 1"
                    .into(),
            },
        })
    }

    /// The CPU of the AF_XDP forwarder's workers (ctpath-afxdp, the agents'
    /// `--fastpath-cores`): the datapath's, so in `same` the one CPU everything runs on and in
    /// `split` the other one than the generator's.
    pub fn fastpath_core(&self) -> usize {
        self.datapath_cpu
    }

    /// `argv` prefixed with `taskset -c CPU`.
    pub fn taskset(cpu: usize, argv: &[&str]) -> Vec<String> {
        ["taskset".to_owned(), "-c".to_owned(), cpu.to_string()]
            .into_iter()
            .chain(argv.iter().map(|a| (*a).to_owned()))
            .collect()
    }

    /// Prepares the interfaces of a topology: nothing in `same` mode; in `split` mode GRO on
    /// `source_host_veth` (namespace, interface), so that it has NAPI in every topology, the
    /// kernel path included, then threaded NAPI on every veth of `namespaces` that has NAPI
    /// ([`Placement::thread_napi`]).
    pub fn prepare(
        &self,
        namespaces: &[&Netns],
        source_host_veth: (&Netns, &str),
    ) -> Result<(), CpuError> {
        if self.mode == CpuMode::Same {
            return Ok(());
        }
        let (ns, ifname) = source_host_veth;
        ns.exec(&["ethtool", "-K", ifname, "gro", "on"])
            .map_err(|e| CpuError::Sysfs {
                what: format!("GRO on {ifname}"),
                netns: ns.name().into(),
                message: e.to_string(),
            })?;
        self.thread_napi(namespaces)
    }

    /// In `split` mode, threaded NAPI (`/sys/class/net/IF/threaded`) on every veth of
    /// `namespaces` that has NAPI. The kernel refuses the flag on a veth without NAPI (no XDP
    /// program, no GRO) and does not remember it, so this runs again whenever XDP is attached
    /// (the sinks): a veth without NAPI is processed by the CPU that sends into it, which on
    /// the path is the previous hop's NAPI thread. Any other failure is an error.
    pub fn thread_napi(&self, namespaces: &[&Netns]) -> Result<(), CpuError> {
        if self.mode == CpuMode::Same {
            return Ok(());
        }
        for ns in namespaces {
            let script = "for d in /sys/class/net/*; do \
                            n=$(basename $d); \
                            ethtool -i $n 2>/dev/null | grep -qx 'driver: veth' || continue; \
                            err=$( (echo 1 > $d/threaded) 2>&1 ) && continue; \
                            case \"$err\" in \
                              *'not supported'*|*'I/O error'*) ;; \
                              *) echo \"$n: $err\" >&2; exit 1;; \
                            esac; \
                          done";
            ns.exec(&["sh", "-c", script])
                .map_err(|e| CpuError::Sysfs {
                    what: "threaded NAPI".into(),
                    netns: ns.name().into(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// In split mode, pins every `napi/*` kernel thread that did not exist when the harness
    /// started (`known`) to the datapath CPU. Returns how many it pinned. Fails when a thread
    /// cannot be pinned (unless it exited meanwhile) or when there is none to pin: a split
    /// figure would then silently be a same-CPU one.
    pub fn pin_napi_threads(&self, known: &[u32]) -> Result<usize, CpuError> {
        if self.mode == CpuMode::Same {
            return Ok(0);
        }
        let mut pinned = 0;
        for pid in napi_threads() {
            if known.contains(&pid) {
                continue;
            }
            match ctpath_dataplane::forwarder::cpu::pin_thread(
                pid as libc::pid_t,
                self.datapath_cpu,
            ) {
                Ok(()) => pinned += 1,
                // The thread is gone (its veth was deleted with an earlier topology).
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(source) => {
                    return Err(CpuError::PinNapi {
                        pid,
                        cpu: self.datapath_cpu,
                        source,
                    })
                }
            }
        }
        if pinned == 0 {
            return Err(CpuError::NoNapiThreads);
        }
        Ok(pinned)
    }
}

/// Pids of the `napi/*` kernel threads (threaded NAPI) that exist now.
pub fn napi_threads() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
                .is_ok_and(|comm| comm.starts_with("napi/"))
        })
        .collect()
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> Result<(), CpuError> {
    set_affinity(0, cpu)
}

fn set_affinity(pid: libc::pid_t, cpu: usize) -> Result<(), CpuError> {
    ctpath_dataplane::forwarder::cpu::pin_thread(pid, cpu)
        .map_err(|source| CpuError::Affinity { cpu, source })
}

/// Busy and idle time of every CPU, from `/proc/stat`, in clock ticks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Per CPU: (user+nice, system, irq+softirq, idle+iowait).
    pub cpus: Vec<[u64; 4]>,
}

impl CpuTimes {
    pub fn now() -> CpuTimes {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpus = text
            .lines()
            .filter(|line| {
                line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
            })
            .map(|line| {
                let v: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                let at = |i: usize| v.get(i).copied().unwrap_or(0);
                // user nice system idle iowait irq softirq steal
                [at(0) + at(1), at(2), at(5) + at(6), at(3) + at(4)]
            })
            .collect();
        CpuTimes { cpus }
    }

    /// Per CPU, the share of time spent in (user, system, softirq+irq) since `earlier`, in %.
    pub fn since(&self, earlier: &CpuTimes) -> Vec<CpuShare> {
        self.cpus
            .iter()
            .zip(&earlier.cpus)
            .map(|(now, then)| {
                let d: Vec<f64> = (0..4)
                    .map(|i| now[i].saturating_sub(then[i]) as f64)
                    .collect();
                let total = d.iter().sum::<f64>().max(1.0);
                CpuShare {
                    user: 100.0 * d[0] / total,
                    system: 100.0 * d[1] / total,
                    softirq: 100.0 * d[2] / total,
                    idle: 100.0 * d[3] / total,
                }
            })
            .collect()
    }
}

/// One CPU's time over a sample, in %.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuShare {
    pub user: f64,
    pub system: f64,
    pub softirq: f64,
    pub idle: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_add_up() {
        let a = CpuTimes {
            cpus: vec![[0, 0, 0, 0]],
        };
        let b = CpuTimes {
            cpus: vec![[10, 20, 30, 40]],
        };
        let share = b.since(&a)[0];
        assert_eq!(
            (share.user, share.system, share.softirq, share.idle),
            (10.0, 20.0, 30.0, 40.0)
        );
        assert!(!CpuTimes::now().cpus.is_empty());
    }

    #[test]
    fn taskset_prefixes_the_command() {
        assert_eq!(
            Placement::taskset(1, &["iperf3", "-s"]),
            ["taskset", "-c", "1", "iperf3", "-s"]
        );
    }
}
