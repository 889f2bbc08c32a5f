//! The agent's side of the AF_XDP forwarder: which planes and interfaces it carries (those of
//! `fast_path: true` planes, and the underlay), the table snapshots it decides frames with
//! (the same map contents the BPF maps get, plus the underlay next hop of every other node's
//! VTEP from the kernel's neighbour table), and the report `ctpath status` reads.
//!
//! Owns [`FastPath`], started by the agent when the state has a fast-path plane, and the
//! report file: `forwarder.json` in the agent's run directory (`/run/ctpath/NODE` by default),
//! rewritten every second while the agent runs and removed when it stops.
//!
//! Next hops: the agent's ([`crate::nexthop`], the same ones the XDP programs' cache gets, read
//! again every second); a changed MAC reaches the workers as a new snapshot. A VTEP
//! whose neighbour is not resolved yet has no next hop: its frames are dropped as
//! `no_neighbor`, as the XDP programs' `bpf_fib_lookup` does.

use std::{
    collections::BTreeMap,
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::Arc,
};

use aya::{
    maps::{HashMap as BpfHashMap, Map, MapData, XskMap},
    Ebpf, Pod,
};
use ctpath_common::maps::{names, network_flags, port_flags, NodeConfig};
use ctpath_dataplane::forwarder::{
    flows::BpfMirror,
    lease::Lease,
    nat::{BpfNat, Shared},
    port::{PortSpec, Role},
    stats::ForwarderReport,
    tables::{NextHop, Tables},
    Forwarder, ForwarderConfig, ForwarderError, WorkerMaps,
};
use thiserror::Error;

use crate::{compile::NodePlan, datapath, nexthop::NextHops, policy};

/// Where the agents keep their run directories.
pub const RUN_ROOT: &str = "/run/ctpath";

/// The default run directory of a node's agent.
pub fn default_run_dir(node: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(node)
}

#[derive(Debug, Error)]
pub enum FastPathError {
    #[error(transparent)]
    Forwarder(#[from] ForwarderError),
    #[error("the datapath has no {0} map")]
    MissingMap(&'static str),
    #[error("writing the forwarder report {path}: {source}")]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the forwarder report {path}: {message}")]
    ReadReport { path: PathBuf, message: String },
}

/// The forwarder's report file in the run directory `run_dir`.
pub fn report_path(run_dir: &Path) -> PathBuf {
    run_dir.join("forwarder.json")
}

/// Reads the report an agent wrote in `run_dir`, if there is one.
pub fn read_report(run_dir: &Path) -> Result<Option<ForwarderReport>, FastPathError> {
    let path = report_path(run_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(FastPathError::ReadReport {
                path,
                message: error.to_string(),
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| FastPathError::ReadReport {
            path,
            message: error.to_string(),
        })
}

/// VNIs of the plan's fast-path planes.
pub fn fast_planes(plan: &NodePlan) -> Vec<u32> {
    plan.networks
        .iter()
        .filter(|(_, network)| network.flags & network_flags::FAST_PATH != 0)
        .map(|(vni, _)| *vni)
        .collect()
}

/// The interfaces the forwarder serves: the underlay and every local interface on a fast-path
/// plane.
pub fn ports(plan: &NodePlan) -> Vec<PortSpec> {
    let mut ports = vec![PortSpec {
        name: plan.underlay_interface.clone(),
        ifindex: plan.node.underlay_ifindex,
        role: Role::Underlay,
        xsk_base: plan.node.underlay_xsk_base,
    }];
    for (ifindex, port) in &plan.pod_ports {
        if port.flags & port_flags::FAST_PATH == 0 {
            continue;
        }
        if let Some(name) = plan.pod_interfaces.get(ifindex) {
            ports.push(PortSpec {
                name: name.clone(),
                ifindex: *ifindex,
                role: Role::Pod,
                xsk_base: port.xsk_base,
            });
        }
    }
    ports
}

/// The running forwarder with what it was last given.
pub struct FastPath {
    forwarder: Forwarder,
    run_dir: PathBuf,
    plan: NodePlan,
    generation: u32,
    /// The agent's next hops, as the workers' tables last got them.
    next_hops: BTreeMap<[u8; 4], NextHop>,
}

impl FastPath {
    /// Starts the forwarder on `cores` for `plan` (policy generation `generation`) and the
    /// agent's `next_hops`, its workers' map handles taken from `ebpf`.
    pub fn start(
        ebpf: &Ebpf,
        run_dir: &Path,
        plan: &NodePlan,
        generation: u32,
        cores: &[usize],
        next_hops: &NextHops,
    ) -> Result<FastPath, FastPathError> {
        let next_hops = next_hops.hops().clone();
        let tables = Arc::new(tables(plan, generation, &next_hops));
        let config = ForwarderConfig {
            cores: cores.to_vec(),
            conntrack_capacity: plan.conntrack_entries,
            planes: fast_planes(plan),
        };
        let conntrack = map_handle(ebpf, names::CONNTRACK)?;
        let nat_flows = map_handle(ebpf, names::NAT_FLOWS)?;
        let nat_replies = map_handle(ebpf, names::NAT_REPLIES)?;
        let affinity = map_handle(ebpf, names::AFFINITY)?;
        let xsks = map_handle(ebpf, names::XSKS)?;
        let leases = map_handle(ebpf, names::LEASES)?;
        let forwarder = Forwarder::start(&config, tables, ports(plan), |queue| {
            let conntrack = BpfHashMap::try_from(Map::HashMap(clone_handle(conntrack)?))
                .map(BpfMirror::new)
                .map_err(|error| error.to_string())?;
            let nat = BpfNat {
                flows: lru_map(nat_flows)?,
                replies: lru_map(nat_replies)?,
                affinity: lru_map(affinity)?,
            };
            let mirror = Shared { conntrack, nat };
            let xsks = XskMap::try_from(Map::XskMap(clone_handle(xsks)?))
                .map_err(|error| error.to_string())?;
            let lease = Lease::new(clone_handle(leases)?, queue)
                .map_err(|error| format!("mapping the LEASES map: {error}"))?;
            Ok(WorkerMaps {
                mirror,
                xsks,
                lease,
            })
        })?;
        tracing::info!(
            planes = ?config.planes,
            cores = ?cores,
            "AF_XDP forwarder started for the fast-path planes"
        );
        Ok(FastPath {
            forwarder,
            run_dir: run_dir.to_owned(),
            plan: plan.clone(),
            generation,
            next_hops,
        })
    }

    /// The workers get `plan`'s tables and interfaces, with the agent's `next_hops`.
    pub fn update(&mut self, plan: &NodePlan, generation: u32, next_hops: &NextHops) {
        let ports_changed = ports(plan) != ports(&self.plan);
        if plan.policy.rules != self.plan.policy.rules {
            let moves = policy::rule_moves(&self.plan.policy.rules, &plan.policy.rules);
            self.forwarder.move_rule_hits(moves.into());
        }
        self.plan = plan.clone();
        self.generation = generation;
        self.next_hops = next_hops.hops().clone();
        self.publish();
        if ports_changed {
            self.forwarder.set_ports(ports(plan));
        }
    }

    /// The agent's next hops changed: they reach the workers.
    pub fn set_next_hops(&mut self, next_hops: &NextHops) {
        if *next_hops.hops() != self.next_hops {
            self.next_hops = next_hops.hops().clone();
            self.publish();
        }
    }

    fn publish(&self) {
        self.forwarder.set_tables(Arc::new(tables(
            &self.plan,
            self.generation,
            &self.next_hops,
        )));
    }

    /// Writes the report for `ctpath status` (atomically: a temporary file renamed).
    pub fn write_report(&self) -> Result<(), FastPathError> {
        let path = report_path(&self.run_dir);
        let error = |source| FastPathError::Report {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.run_dir).map_err(error)?;
        let json = serde_json::to_string(&self.forwarder.report())
            .map_err(|e| error(std::io::Error::other(e)))?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, json).map_err(error)?;
        std::fs::rename(&temporary, &path).map_err(error)
    }
}

impl Drop for FastPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(report_path(&self.run_dir));
        let _ = std::fs::remove_dir(&self.run_dir);
    }
}

fn tables(plan: &NodePlan, generation: u32, next_hops: &BTreeMap<[u8; 4], NextHop>) -> Tables {
    let node = NodeConfig {
        policy_generation: generation,
        ..plan.node
    };
    Tables::new(&datapath::contents(plan), node, next_hops.clone())
}

fn map_handle<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a MapData, FastPathError> {
    match ebpf.map(name) {
        Some(Map::HashMap(data) | Map::LruHashMap(data) | Map::XskMap(data) | Map::Array(data)) => {
            Ok(data)
        }
        _ => Err(FastPathError::MissingMap(name)),
    }
}

/// A worker's handle on the LRU hash map `data`.
fn lru_map<K: Pod, V: Pod>(data: &MapData) -> Result<BpfHashMap<MapData, K, V>, String> {
    BpfHashMap::try_from(Map::LruHashMap(clone_handle(data)?)).map_err(|error| error.to_string())
}

/// A second handle on a map (its descriptor duplicated), for a worker thread.
fn clone_handle(data: &MapData) -> Result<MapData, String> {
    let fd = data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|error| format!("duplicating a map descriptor: {error}"))?;
    MapData::from_fd(fd).map_err(|error| error.to_string())
}
