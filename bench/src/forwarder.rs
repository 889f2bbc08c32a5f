//! What the `ctpath-afxdp` topology asks of the agents' AF_XDP forwarder: that it is set up as
//! the run's CPU placement says ([`Facts::read`], once, after the topology is built), and that
//! the frames of every sample really went through it ([`Mark`] before a sample,
//! [`Mark::since`] after it), so that no figure the XDP programs carried is reported as the
//! forwarder's.
//!
//! Everything comes from the agents' own report (`forwarder.json` in their run directories, via
//! [`Cluster::fast_path`]), which an agent rewrites once a second: after a sample,
//! [`Mark::since`] waits for a report written after the sample ended (at most
//! [`REPORT_WAIT`]). A frame of the flood is received by a worker twice, once on each node:
//! from the source pod's host veth on node-a, from the underlay on node-b. So each node's
//! workers must have received at least what reached the sink.
//!
//! Whether the sockets are zero-copy is not in the report: the forwarder binds without a mode
//! flag and the kernel picks zero-copy where the driver has it. [`copy_mode`] reads it from
//! `ss --xdp -e` (the UMEM's `zc` flag) where the kernel has AF_XDP socket diagnostics, and
//! otherwise from the interfaces' driver (`ethtool -i`): veth has no zero-copy AF_XDP.
//!
//! Owns [`ForwarderError`], [`Facts`], [`Mark`] and [`ForwarderSample`] (a record of the JSON
//! report). Panic contract: nothing here panics on what the agents report; the testbed's
//! [`Cluster::fast_path`] panics on a report it cannot parse (test code).

use std::time::{Duration, Instant};

use ctpath_dataplane::forwarder::{cpu::monotonic_ns, port::Role, stats::ForwarderReport};
use ctpath_testbed::cluster::Cluster;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::topology::{NODE_A, NODE_B, UNDERLAY_IF, VNI};

/// How long to wait for an agent's next report (it writes one a second).
pub const REPORT_WAIT: Duration = Duration::from_millis(3000);

#[derive(Debug, Error)]
pub enum ForwarderError {
    #[error("{node}: the agent wrote no forwarder report (is the plane fast_path?)")]
    NoReport { node: String },
    #[error("{node}: the agent that wrote the forwarder report is gone")]
    NotRunning { node: String },
    #[error("{node}: no forwarder report newer than {waited:?}")]
    Stale { node: String, waited: Duration },
    #[error("{node}: the forwarder is not set up as the bench needs: {problem}")]
    Setup { node: String, problem: String },
    #[error(
        "{node}: the forwarder's workers received {received} frames during the sample, fewer \
         than the {expected} that went through; the XDP programs carried the rest"
    )]
    Bypassed {
        node: String,
        received: u64,
        expected: u64,
    },
}

/// The forwarder of one node as the bench found it after building the topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub node: String,
    /// (worker id, core, queue) of every worker.
    pub workers: Vec<(usize, Option<usize>, u32)>,
    /// The interfaces its sockets are bound to, with their role.
    pub sockets: Vec<(String, Role)>,
    /// UMEMs on huge pages (else 4 KiB pages), from the report.
    pub huge_pages: bool,
    /// Copy or zero-copy, and how the bench knows (see [`copy_mode`]).
    pub mode: String,
}

/// Both nodes' forwarders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub nodes: Vec<NodeFacts>,
}

impl Facts {
    /// Reads both nodes' reports (waiting for them while the agents start) and checks that
    /// each forwarder carries the bench's plane, with every worker on `core` and sockets on
    /// the pod's host veth and the underlay.
    pub fn read(
        cluster: &Cluster,
        host_ifs: [&str; 2],
        core: usize,
    ) -> Result<Facts, ForwarderError> {
        let mut nodes = Vec::new();
        for (node, host_if) in [NODE_A, NODE_B].into_iter().zip(host_ifs) {
            let deadline = Instant::now() + REPORT_WAIT;
            let facts = loop {
                match node_facts(cluster, node, host_if, core) {
                    Ok(facts) => break facts,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    Err(error) => return Err(error),
                }
            };
            nodes.push(facts);
        }
        Ok(Facts { nodes })
    }

    /// In words, for the notes of the run.
    pub fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let workers: Vec<String> = n
                    .workers
                    .iter()
                    .map(|(id, core, queue)| {
                        let core = core.map_or("unpinned".to_owned(), |c| format!("CPU {c}"));
                        format!("worker {id} on {core}, queue {queue}")
                    })
                    .collect();
                let sockets: Vec<&str> = n.sockets.iter().map(|(name, _)| name.as_str()).collect();
                format!(
                    "{}: {}, sockets on {} ({}), UMEM on {}",
                    n.node,
                    workers.join(", "),
                    sockets.join(" and "),
                    n.mode,
                    if n.huge_pages {
                        "huge pages"
                    } else {
                        "4 KiB pages (vm.nr_hugepages leaves too few free huge pages)"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn report(cluster: &Cluster, node: &str) -> Result<(ForwarderReport, bool), ForwarderError> {
    let status = cluster
        .fast_path(node)
        .ok_or_else(|| ForwarderError::NoReport { node: node.into() })?;
    Ok((status.report, status.running))
}

fn node_facts(
    cluster: &Cluster,
    node: &str,
    host_if: &str,
    core: usize,
) -> Result<NodeFacts, ForwarderError> {
    let setup = |problem: String| ForwarderError::Setup {
        node: node.into(),
        problem,
    };
    let (report, running) = report(cluster, node)?;
    if !running {
        return Err(ForwarderError::NotRunning { node: node.into() });
    }
    if report.planes != [VNI] {
        return Err(setup(format!(
            "it carries planes {:?}, not [{VNI}]",
            report.planes
        )));
    }
    if report.workers.is_empty() {
        return Err(setup("no workers".into()));
    }
    let mut sockets = Vec::new();
    for worker in &report.workers {
        if let Some(failed) = &worker.failed {
            return Err(setup(format!("worker {} failed: {failed}", worker.id)));
        }
        if worker.core != Some(core) {
            return Err(setup(format!(
                "worker {} is on {:?}, the placement wants CPU {core}",
                worker.id, worker.core
            )));
        }
        sockets.extend(worker.sockets.iter().map(|s| (s.interface.clone(), s.role)));
    }
    for (ifname, role) in [(host_if, Role::Pod), (UNDERLAY_IF, Role::Underlay)] {
        if !sockets.iter().any(|(name, r)| name == ifname && *r == role) {
            return Err(setup(format!("no socket bound on {ifname}")));
        }
    }
    Ok(NodeFacts {
        node: node.into(),
        workers: report
            .workers
            .iter()
            .map(|w| (w.id, w.core, w.queue))
            .collect(),
        mode: copy_mode(cluster, node, &sockets),
        sockets,
        huge_pages: report.huge_pages,
    })
}

/// Whether `node`'s sockets are copy or zero-copy, in words: from `ss --xdp -e` when it lists
/// the sockets (the kernel has `xsk_diag`), else from the interfaces' driver.
fn copy_mode(cluster: &Cluster, node: &str, sockets: &[(String, Role)]) -> String {
    let ns = cluster.node(node);
    let run = |argv: &[&str]| {
        ns.exec_unchecked(argv)
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    };
    let ss = run(&["ss", "--xdp", "-a", "-e"]);
    if ss.lines().count() > 1 {
        return if ss.split_whitespace().any(|word| word == "zc") {
            "zero-copy (ss --xdp)".into()
        } else {
            "copy mode (ss --xdp)".into()
        };
    }
    let veth = sockets.iter().all(|(ifname, _)| {
        run(&["ethtool", "-i", ifname])
            .lines()
            .any(|line| line.trim() == "driver: veth")
    });
    if veth {
        "copy mode: veth has no zero-copy AF_XDP".into()
    } else {
        "copy or zero-copy: not known".into()
    }
}

/// What one node's workers had counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    packets: u64,
    batches: u64,
    drops: u64,
}

impl Counts {
    fn of(report: &ForwarderReport) -> Counts {
        report
            .workers
            .iter()
            .fold(Counts::default(), |sum, w| Counts {
                packets: sum.packets + w.packets,
                batches: sum.batches + w.batches,
                drops: sum.drops + w.drops.values().map(|c| c.packets).sum::<u64>(),
            })
    }
}

/// Both nodes' forwarder counts at their latest report, taken before a sample.
#[derive(Clone, Debug)]
pub struct Mark {
    counts: [Counts; 2],
}

/// What the forwarders received during one sample, per node (a record of the JSON report).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwarderSample {
    /// (node, frames received by its workers, non-empty receive batches, frames they dropped).
    pub nodes: Vec<(String, u64, u64, u64)>,
}

impl ForwarderSample {
    /// Frames the forwarders dropped, both nodes.
    pub fn drops(&self) -> u64 {
        self.nodes.iter().map(|n| n.3).sum()
    }

    /// Frames per receive batch, both nodes together.
    pub fn per_batch(&self) -> Option<f64> {
        let (packets, batches) = self
            .nodes
            .iter()
            .fold((0, 0), |(p, b), n| (p + n.1, b + n.2));
        (batches > 0).then(|| packets as f64 / batches as f64)
    }
}

impl Mark {
    pub fn now(cluster: &Cluster) -> Result<Mark, ForwarderError> {
        let a = report(cluster, NODE_A)?.0;
        let b = report(cluster, NODE_B)?.0;
        Ok(Mark {
            counts: [Counts::of(&a), Counts::of(&b)],
        })
    }

    /// Waits for reports written after now, and checks that each node's workers received at
    /// least `expected` frames since the mark.
    pub fn since(
        &self,
        cluster: &Cluster,
        expected: u64,
    ) -> Result<ForwarderSample, ForwarderError> {
        let ended = monotonic_ns();
        let mut nodes = Vec::new();
        for (node, before) in [NODE_A, NODE_B].into_iter().zip(self.counts) {
            let deadline = Instant::now() + REPORT_WAIT;
            let after = loop {
                let (report, running) = report(cluster, node)?;
                if !running {
                    return Err(ForwarderError::NotRunning { node: node.into() });
                }
                if report.written_ns > ended {
                    break Counts::of(&report);
                }
                if Instant::now() >= deadline {
                    return Err(ForwarderError::Stale {
                        node: node.into(),
                        waited: REPORT_WAIT,
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let received = after.packets.saturating_sub(before.packets);
            if received < expected {
                return Err(ForwarderError::Bypassed {
                    node: node.into(),
                    received,
                    expected,
                });
            }
            nodes.push((
                node.to_owned(),
                received,
                after.batches.saturating_sub(before.batches),
                after.drops.saturating_sub(before.drops),
            ));
        }
        Ok(ForwarderSample { nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_batch_adds_both_nodes() {
        let sample = ForwarderSample {
            nodes: vec![("a".into(), 640, 10, 1), ("b".into(), 320, 10, 2)],
        };
        assert_eq!(sample.per_batch(), Some(48.0));
        assert_eq!(sample.drops(), 3);
        assert_eq!(ForwarderSample::default().per_batch(), None);
    }
}
