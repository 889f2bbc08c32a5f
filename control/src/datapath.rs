//! The loaded eBPF datapath: the object built by `build.rs` and embedded here, loading it,
//! handing out its programs, writing a node's plan into its maps, and reading its counters.
//!
//! Program and map names are the symbols of `ebpf/programs`; a fixture test loads every
//! program and reads every counter map, so a rename on one side fails there.

use aya::{
    maps::{Array, HashMap, Map, MapError, PerCpuArray},
    programs::{ProgramError, Xdp},
    Ebpf, EbpfError, EbpfLoader, Pod,
};
use ctpath_common::{
    maps::{names, NodeConfig, Vtep},
    CounterKind, Tally,
};
use thiserror::Error;

use crate::compile::NodePlan;

/// The eBPF object with every ctpath program, built from `ebpf/programs` by `build.rs`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ctpath.bpf.o"));

/// The XDP programs in [`OBJECT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpProgram {
    /// On a pod's host-side veth: everything the pod sends.
    FromPod,
    /// On the node's underlay interface: VXLAN from other nodes.
    FromUnderlay,
    /// Bench probe: redirects every frame to the interface in `BENCH_TARGET[0]`.
    BenchRedirect,
    /// Bench probe: counts every frame in `BENCH_SINK[0]` and drops it.
    BenchSink,
}

impl XdpProgram {
    pub const ALL: &'static [XdpProgram] = &[
        XdpProgram::FromPod,
        XdpProgram::FromUnderlay,
        XdpProgram::BenchRedirect,
        XdpProgram::BenchSink,
    ];

    /// The program's symbol in the object.
    pub const fn symbol(self) -> &'static str {
        match self {
            XdpProgram::FromPod => "from_pod",
            XdpProgram::FromUnderlay => "from_underlay",
            XdpProgram::BenchRedirect => "bench_redirect",
            XdpProgram::BenchSink => "bench_sink",
        }
    }
}

#[derive(Debug, Error)]
pub enum DatapathError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("the eBPF object has no program `{0}`")]
    MissingProgram(&'static str),
    #[error("program `{name}`: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("the eBPF object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("map `{name}`: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

/// Loads [`OBJECT`] into the kernel (maps created, programs not yet verified).
pub fn load() -> Result<Ebpf, DatapathError> {
    Ok(EbpfLoader::new().load(OBJECT)?)
}

/// The XDP program `program` of `ebpf`, loaded (verified) into the kernel.
pub fn xdp_program(ebpf: &mut Ebpf, program: XdpProgram) -> Result<&mut Xdp, DatapathError> {
    let name = program.symbol();
    let xdp: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(DatapathError::MissingProgram(name))?
        .try_into()
        .map_err(|source| DatapathError::Program { name, source })?;
    if xdp.fd().is_err() {
        xdp.load()
            .map_err(|source| DatapathError::Program { name, source })?;
    }
    Ok(xdp)
}

/// The map `name` of `ebpf`.
pub fn map<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Map, DatapathError> {
    ebpf.map(name).ok_or(DatapathError::MissingMap(name))
}

/// The tally of every counter of kind `K` in `map` (loaded, or opened from its pin), summed
/// over all CPUs, in index order.
pub fn read_counters<K: CounterKind>(map: &Map) -> Result<Vec<(K, Tally)>, DatapathError> {
    let name = K::MAP_NAME;
    let array = PerCpuArray::<_, Tally>::try_from(map)
        .map_err(|source| DatapathError::Map { name, source })?;
    K::ALL
        .iter()
        .map(|&kind| {
            let per_cpu = array
                .get(&kind.index(), 0)
                .map_err(|source| DatapathError::Map { name, source })?;
            let total = per_cpu.iter().fold(Tally::default(), |sum, cpu| Tally {
                packets: sum.packets + cpu.packets,
                bytes: sum.bytes + cpu.bytes,
            });
            Ok((kind, total))
        })
        .collect()
}

/// Writes `plan` into the maps of `ebpf`. The node entry goes last: until it is there the
/// programs leave every frame to the kernel, so they never see half a configuration.
pub fn write_plan(ebpf: &mut Ebpf, plan: &NodePlan) -> Result<(), DatapathError> {
    fill_hash(
        ebpf,
        names::NETWORKS,
        plan.networks.iter().map(|(vni, network)| (*vni, *network)),
    )?;
    fill_hash(
        ebpf,
        names::ENDPOINTS,
        plan.endpoints
            .iter()
            .map(|(key, endpoint)| (*key, *endpoint)),
    )?;
    fill_hash(
        ebpf,
        names::VTEPS,
        plan.remote_vteps
            .iter()
            .map(|vtep| (*vtep, Vtep { known: 1 })),
    )?;
    fill_hash(
        ebpf,
        names::POD_PORTS,
        plan.pod_ports
            .iter()
            .map(|(ifindex, port)| (*ifindex, *port)),
    )?;
    let name = names::NODE;
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut node = Array::<_, NodeConfig>::try_from(map)
        .map_err(|source| DatapathError::Map { name, source })?;
    node.set(0, plan.node, 0)
        .map_err(|source| DatapathError::Map { name, source })
}

fn fill_hash<K: Pod, V: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    entries: impl Iterator<Item = (K, V)>,
) -> Result<(), DatapathError> {
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut hash =
        HashMap::<_, K, V>::try_from(map).map_err(|source| DatapathError::Map { name, source })?;
    for (key, value) in entries {
        hash.insert(key, value, 0)
            .map_err(|source| DatapathError::Map { name, source })?;
    }
    Ok(())
}
