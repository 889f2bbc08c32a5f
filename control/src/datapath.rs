//! The loaded eBPF datapath: the object built by `build.rs` and embedded here, loading it,
//! handing out its programs, and reading its counters.
//!
//! Program and map names are the symbols of `ebpf/programs`; a fixture test loads every
//! program and reads every counter map, so a rename on one side fails there.

use aya::{
    maps::{MapError, PerCpuArray},
    programs::{ProgramError, Xdp},
    Ebpf, EbpfError, EbpfLoader,
};
use ctpath_common::{CounterKind, Tally};
use thiserror::Error;

/// The eBPF object with every ctpath program, built from `ebpf/programs` by `build.rs`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ctpath.bpf.o"));

/// The XDP programs in [`OBJECT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpProgram {
    /// On a pod's host-side veth: everything the pod sends.
    FromPod,
    /// On the node's underlay interface: VXLAN from other nodes.
    FromUnderlay,
}

impl XdpProgram {
    pub const ALL: &'static [XdpProgram] = &[XdpProgram::FromPod, XdpProgram::FromUnderlay];

    /// The program's symbol in the object.
    pub const fn symbol(self) -> &'static str {
        match self {
            XdpProgram::FromPod => "from_pod",
            XdpProgram::FromUnderlay => "from_underlay",
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

/// The tally of every counter of kind `K`, summed over all CPUs, in index order.
pub fn read_counters<K: CounterKind>(ebpf: &Ebpf) -> Result<Vec<(K, Tally)>, DatapathError> {
    let name = K::MAP_NAME;
    let map = ebpf.map(name).ok_or(DatapathError::MissingMap(name))?;
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
