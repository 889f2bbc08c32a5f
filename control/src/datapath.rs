//! The loaded eBPF datapath: the object built by `build.rs` and embedded here, loading it,
//! handing out its programs, writing a node's plan into its maps, and reading its counters.
//!
//! Program and map names are the symbols of `ebpf/programs`; a fixture test loads every
//! program and reads every counter map, so a rename on one side fails there.

use std::collections::BTreeMap;

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapError, PerCpuArray},
    programs::{ProgramError, Xdp},
    Ebpf, EbpfError, EbpfLoader, Pod,
};
use ctpath_common::{
    maps::{
        names, Endpoint, EndpointKey, Network, NodeConfig, PodPort, PolicyRuleKey, ScopedIp,
        ScopedMac, SourceMac, Vtep,
    },
    CounterKind, Tally,
};
use thiserror::Error;

use ipnet::Ipv4Net;

use crate::{compile::NodePlan, policy::policy_prefix_len};

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

/// Loads [`OBJECT`] into the kernel (maps created, programs not yet verified), with the
/// default conntrack table size.
pub fn load() -> Result<Ebpf, DatapathError> {
    load_with(ctpath_common::maps::DEFAULT_CONNTRACK_ENTRIES)
}

/// Loads [`OBJECT`] with a conntrack table of `conntrack_entries` entries.
pub fn load_with(conntrack_entries: u32) -> Result<Ebpf, DatapathError> {
    Ok(EbpfLoader::new()
        .map_max_entries(names::CONNTRACK, conntrack_entries)
        .load(OBJECT)?)
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

/// The contents of every map a plan fills, keyed as the maps are (LPM keys as (prefix
/// length, data)).
#[derive(Default)]
struct Contents {
    networks: BTreeMap<u32, Network>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
    vteps: BTreeMap<[u8; 4], Vtep>,
    pod_ports: BTreeMap<u32, PodPort>,
    pair_macs: BTreeMap<ScopedMac, u32>,
    sources: BTreeMap<(u32, ScopedIp), SourceMac>,
    identities: BTreeMap<(u32, ScopedIp), u32>,
    policy: BTreeMap<(u32, PolicyRuleKey), u32>,
}

impl Contents {
    fn of(plan: &NodePlan) -> Contents {
        let scoped = |scope: u32, net: &Ipv4Net| {
            (
                32 + u32::from(net.prefix_len()),
                ScopedIp {
                    scope,
                    ip: net.network().octets(),
                },
            )
        };
        Contents {
            networks: plan.networks.clone(),
            endpoints: plan.endpoints.clone(),
            vteps: plan
                .remote_vteps
                .iter()
                .map(|vtep| (*vtep, Vtep { known: 1 }))
                .collect(),
            pod_ports: plan.pod_ports.clone(),
            pair_macs: plan
                .pair_macs
                .iter()
                .map(|&(scope, mac)| {
                    (
                        ScopedMac {
                            scope,
                            mac,
                            _pad: [0; 2],
                        },
                        1,
                    )
                })
                .collect(),
            sources: plan
                .sources
                .iter()
                .map(|((ifindex, net), mac)| {
                    (
                        scoped(*ifindex, net),
                        SourceMac {
                            mac: *mac,
                            _pad: [0; 2],
                        },
                    )
                })
                .collect(),
            identities: plan
                .policy
                .identities
                .iter()
                .map(|((vni, net), identity)| (scoped(*vni, net), *identity))
                .collect(),
            policy: plan
                .policy
                .entries
                .iter()
                .map(|((key, bits), rule)| ((policy_prefix_len(*bits), *key), *rule))
                .collect(),
        }
    }
}

/// Which half of an update: new and changed entries first, removals after the switch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Upsert,
    Prune,
}

/// Writes `plan` into the maps of `ebpf`, which hold `previous` (or nothing), under policy
/// generation `generation`. Make before break: new and changed entries go in first, then the
/// node entry (with the generation that makes conntrack re-check its connections), then
/// entries that are gone are removed; a packet in flight sees the old plan or the new one,
/// never a hole. Until the node entry is first written the programs leave every frame to the
/// kernel, so they never see half a configuration.
pub fn apply_plan(
    ebpf: &mut Ebpf,
    previous: Option<&NodePlan>,
    plan: &NodePlan,
    generation: u32,
) -> Result<(), DatapathError> {
    let old = previous.map(Contents::of).unwrap_or_default();
    let new = Contents::of(plan);
    for phase in [Phase::Upsert, Phase::Prune] {
        if phase == Phase::Prune {
            let name = names::NODE;
            let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
            let mut node = Array::<_, NodeConfig>::try_from(map)
                .map_err(|source| DatapathError::Map { name, source })?;
            let config = NodeConfig {
                policy_generation: generation,
                ..plan.node
            };
            node.set(0, config, 0)
                .map_err(|source| DatapathError::Map { name, source })?;
        }
        sync_hash(ebpf, names::NETWORKS, &old.networks, &new.networks, phase)?;
        sync_hash(
            ebpf,
            names::ENDPOINTS,
            &old.endpoints,
            &new.endpoints,
            phase,
        )?;
        sync_hash(ebpf, names::VTEPS, &old.vteps, &new.vteps, phase)?;
        sync_hash(
            ebpf,
            names::POD_PORTS,
            &old.pod_ports,
            &new.pod_ports,
            phase,
        )?;
        sync_hash(
            ebpf,
            names::PAIR_MACS,
            &old.pair_macs,
            &new.pair_macs,
            phase,
        )?;
        sync_lpm(ebpf, names::SOURCES, &old.sources, &new.sources, phase)?;
        sync_lpm(
            ebpf,
            names::IDENTITIES,
            &old.identities,
            &new.identities,
            phase,
        )?;
        sync_lpm(ebpf, names::POLICY, &old.policy, &new.policy, phase)?;
    }
    Ok(())
}

/// Writes `plan` into freshly loaded maps (generation 1).
pub fn write_plan(ebpf: &mut Ebpf, plan: &NodePlan) -> Result<(), DatapathError> {
    apply_plan(ebpf, None, plan, 1)
}

fn sync_hash<K: Pod + Ord, V: Pod + PartialEq>(
    ebpf: &mut Ebpf,
    name: &'static str,
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    phase: Phase,
) -> Result<(), DatapathError> {
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut hash =
        HashMap::<_, K, V>::try_from(map).map_err(|source| DatapathError::Map { name, source })?;
    let error = |source| DatapathError::Map { name, source };
    match phase {
        Phase::Upsert => {
            for (key, value) in new
                .iter()
                .filter(|(key, value)| old.get(key) != Some(value))
            {
                hash.insert(key, value, 0).map_err(error)?;
            }
        }
        Phase::Prune => {
            for key in old.keys().filter(|key| !new.contains_key(key)) {
                hash.remove(key).map_err(error)?;
            }
        }
    }
    Ok(())
}

fn sync_lpm<K: Pod + Ord, V: Pod + PartialEq>(
    ebpf: &mut Ebpf,
    name: &'static str,
    old: &BTreeMap<(u32, K), V>,
    new: &BTreeMap<(u32, K), V>,
    phase: Phase,
) -> Result<(), DatapathError> {
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut trie =
        LpmTrie::<_, K, V>::try_from(map).map_err(|source| DatapathError::Map { name, source })?;
    let error = |source| DatapathError::Map { name, source };
    match phase {
        Phase::Upsert => {
            for ((prefix_len, key), value) in new
                .iter()
                .filter(|(key, value)| old.get(key) != Some(value))
            {
                trie.insert(&Key::new(*prefix_len, *key), *value, 0)
                    .map_err(error)?;
            }
        }
        Phase::Prune => {
            for (prefix_len, key) in old.keys().filter(|key| !new.contains_key(key)) {
                trie.remove(&Key::new(*prefix_len, *key)).map_err(error)?;
            }
        }
    }
    Ok(())
}
