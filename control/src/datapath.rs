//! The loaded eBPF datapath: the object built by `build.rs` and embedded here, loading it,
//! handing out its programs, writing a node's plan into its maps, and reading its counters.
//!
//! The agent loads it over pinned maps ([`load_pinned`]: every map of [`PINNED_MAPS`], reused
//! when an earlier agent pinned it and it matches the object's declaration) and writes its plan
//! with [`reconcile`], which makes no assumption about what the maps hold; a running agent then
//! applies each new plan as a diff against the last ([`apply_plan`]).
//!
//! Program and map names are the symbols of `ebpf/programs`; a fixture test loads every
//! program and reads every counter map, so a rename on one side fails there.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use aya::{
    maps::{
        lpm_trie::Key, Array, DevMapHash, HashMap, LpmTrie, Map, MapError, MapInfo, MapType,
        PerCpuArray, PerCpuValues,
    },
    programs::{ProgramError, SchedClassifier, Xdp},
    Ebpf, EbpfError, EbpfLoader, Pod,
};
use ctpath_common::{
    maps::{
        endpoint_kind, names, MaglevLarge, MaglevSmall, NextHopEntry, NodeConfig, ScopedIp,
        ScopedMac, SourceMac, Vtep, MAGLEV_LARGE_SLOTS, MAGLEV_SMALL_SLOTS,
    },
    Counter, CounterKind, DropReason, Tally,
};
use ctpath_dataplane::forwarder::tables::MapContents;
use ipnet::Ipv4Net;
use thiserror::Error;

use crate::{
    compile::NodePlan,
    policy::{policy_prefix_len, RuleId},
    services::{MaglevTable, ServicePlan},
};

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

/// The tc (`sched_cls`, attached as tcx ingress links) programs in [`OBJECT`]: the same code as
/// the XDP programs of the same hook, over an skb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcProgram {
    /// On a pod's host-side veth of a plane with `datapath: tc`.
    FromPod,
    /// On the node's underlay interface, behind `from_underlay`, which hands it the VXLAN of
    /// `tc` planes.
    FromUnderlay,
}

impl TcProgram {
    pub const ALL: &'static [TcProgram] = &[TcProgram::FromPod, TcProgram::FromUnderlay];

    /// The program's symbol in the object.
    pub const fn symbol(self) -> &'static str {
        match self {
            TcProgram::FromPod => "from_pod_tc",
            TcProgram::FromUnderlay => "from_underlay_tc",
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
    #[error("pinned map {path}: {source}")]
    PinnedMap {
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("removing the pinned map {path}, which does not match this datapath: {source}")]
    Unpin {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("counting the possible CPUs (for per-CPU counters): {0}")]
    Cpus(std::io::Error),
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

/// Every map `from_pod` and `from_underlay` use: what the agent pins as `PIN_DIR/NAME` and
/// the next agent reuses. The bench probes' maps are not among them.
///
/// `NEXT_HOPS` and `DEVICES` came later: an agent taking over from one that had neither finds
/// no pin and creates them (the programs it replaces never used them); their contents are
/// written again by every agent (`DEVICES` from the plan, `NEXT_HOPS` from its first
/// resolution), so a pinned one is only reused while the agent starts.
pub const PINNED_MAPS: [&str; 24] = [
    names::NODE,
    names::POD_PORTS,
    names::ENDPOINTS,
    names::NETWORKS,
    names::VTEPS,
    names::SOURCES,
    names::PAIR_MACS,
    names::IDENTITIES,
    names::POLICY,
    names::CONNTRACK,
    names::RULE_HITS,
    names::XSKS,
    names::LEASES,
    names::NEXT_HOPS,
    names::DEVICES,
    names::SERVICES,
    names::MAGLEV_SMALL,
    names::MAGLEV_LARGE,
    names::MAGLEV_MEMBERS,
    names::NAT_FLOWS,
    names::NAT_REPLIES,
    names::AFFINITY,
    DropReason::MAP_NAME,
    Counter::MAP_NAME,
];

/// [`OBJECT`] loaded over the maps pinned in a pin directory.
pub struct PinnedDatapath {
    pub ebpf: Ebpf,
    /// The maps found pinned and reused, contents and all.
    pub reused: Vec<&'static str>,
    /// The size of the conntrack table in use: the pinned one's when it was reused.
    pub conntrack_entries: u32,
}

/// Loads [`OBJECT`] with every map of [`PINNED_MAPS`] pinned at `pin_dir/NAME` (`pin_dir`
/// must exist, on a bpffs). A map an earlier agent pinned there is reused, contents and all:
/// the programs still attached (pinned links) and the new ones share it. Any other map is
/// created and pinned.
///
/// aya opens a pinned map without comparing it with the object's definition (a pinned map of
/// another size or layout would be used as if it were the declared one), so each is checked
/// first against the layout of `ebpf/programs/src/maps.rs`: a pinned map of another type, key
/// size, value size or capacity (an older datapath) is replaced by a fresh one, losing its
/// contents (programs still attached keep the old map until they are replaced). The one
/// exception is a conntrack table of another size than `conntrack_entries`: it is kept with
/// its connections, and the new size takes effect once a clean stop has removed the pins.
pub fn load_pinned(
    pin_dir: &Path,
    conntrack_entries: u32,
) -> Result<PinnedDatapath, DatapathError> {
    let mut reused = Vec::new();
    let mut conntrack_size = conntrack_entries;
    for name in PINNED_MAPS {
        let path = pin_dir.join(name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|source| DatapathError::PinnedMap {
            path: path.clone(),
            source,
        })?;
        let found = MapLayout::of(&info);
        let expected = MapLayout::declared(name, conntrack_entries);
        let resized = MapLayout {
            max_entries: expected.max_entries,
            ..found
        } == expected;
        if found == expected {
            reused.push(name);
        } else if name == names::CONNTRACK && resized {
            tracing::warn!(
                pinned = found.max_entries,
                requested = conntrack_entries,
                "the pinned conntrack table has another size: kept with its connections; the \
                 new size takes effect after a clean stop of the agent"
            );
            conntrack_size = found.max_entries;
            reused.push(name);
        } else {
            tracing::warn!(
                map = name,
                ?found,
                ?expected,
                "pinned map does not match this datapath: replaced by a fresh, empty one"
            );
            std::fs::remove_file(&path).map_err(|source| DatapathError::Unpin {
                path: path.clone(),
                source,
            })?;
        }
    }
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(names::CONNTRACK, conntrack_size);
    for name in PINNED_MAPS {
        loader.map_pin_path(name, pin_dir.join(name));
    }
    Ok(PinnedDatapath {
        ebpf: loader.load(OBJECT)?,
        reused,
        conntrack_entries: conntrack_size,
    })
}

/// What the kernel says of a map, and the object declares: enough to tell whether a pinned map
/// can stand in for the declared one.
#[derive(Clone, Copy, Debug, PartialEq)]
struct MapLayout {
    map_type: Option<MapType>,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    /// Only the flag a user of the map depends on: `BPF_F_MMAPABLE` (`LEASES` is written
    /// through its memory). Others (`BPF_F_NO_PREALLOC` of the LPM tries) follow the type.
    map_flags: u32,
}

impl MapLayout {
    fn of(info: &MapInfo) -> MapLayout {
        MapLayout {
            map_type: info.map_type().ok(),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            map_flags: info.map_flags() & ctpath_common::maps::BPF_F_MMAPABLE,
        }
    }

    /// The map `name` as `ebpf/programs/src/maps.rs` and `stats.rs` declare it (the same
    /// `ctpath_common` types and capacities), the conntrack table sized `conntrack_entries`.
    /// `tests/tests/restart.rs` checks this against a freshly loaded object.
    fn declared(name: &str, conntrack_entries: u32) -> MapLayout {
        use ctpath_common::maps::{
            AffinityEntry, AffinityKey, CtEntry, CtKey, Endpoint, EndpointKey, FlowKey,
            MaglevLarge, MaglevSmall, MemberKey, NatEntry, Network, PodPort, PolicyRuleKey,
            ServiceEntry, ServiceKey, AFFINITY_ENTRIES, BPF_F_MMAPABLE, MAX_DEVICES, MAX_ENDPOINTS,
            MAX_IDENTITIES, MAX_MAGLEV_LARGE, MAX_MAGLEV_MEMBERS, MAX_MAGLEV_SMALL, MAX_NETWORKS,
            MAX_POD_PORTS, MAX_POLICY_ENTRIES, MAX_RULES, MAX_SERVICE_PORTS, MAX_SOURCES,
            MAX_VTEPS, MAX_XSK_SLOTS, NAT_ENTRIES, XSK_QUEUES_PER_INTERFACE,
        };
        fn layout<K, V>(map_type: MapType, max_entries: u32) -> MapLayout {
            MapLayout {
                map_type: Some(map_type),
                key_size: std::mem::size_of::<K>() as u32,
                value_size: std::mem::size_of::<V>() as u32,
                max_entries,
                map_flags: 0,
            }
        }
        match name {
            names::NODE => layout::<u32, NodeConfig>(MapType::Array, 1),
            names::POD_PORTS => layout::<u32, PodPort>(MapType::Hash, MAX_POD_PORTS),
            names::ENDPOINTS => layout::<EndpointKey, Endpoint>(MapType::Hash, MAX_ENDPOINTS),
            names::NETWORKS => layout::<u32, Network>(MapType::Hash, MAX_NETWORKS),
            names::VTEPS => layout::<[u8; 4], Vtep>(MapType::Hash, MAX_VTEPS),
            names::SOURCES => layout::<Key<ScopedIp>, SourceMac>(MapType::LpmTrie, MAX_SOURCES),
            names::PAIR_MACS => layout::<ScopedMac, u32>(MapType::Hash, MAX_SOURCES),
            names::IDENTITIES => layout::<Key<ScopedIp>, u32>(MapType::LpmTrie, MAX_IDENTITIES),
            names::POLICY => {
                layout::<Key<PolicyRuleKey>, u32>(MapType::LpmTrie, MAX_POLICY_ENTRIES)
            }
            names::CONNTRACK => layout::<CtKey, CtEntry>(MapType::Hash, conntrack_entries),
            names::XSKS => layout::<u32, u32>(MapType::XskMap, MAX_XSK_SLOTS),
            names::LEASES => MapLayout {
                map_flags: BPF_F_MMAPABLE,
                ..layout::<u32, u64>(MapType::Array, XSK_QUEUES_PER_INTERFACE)
            },
            names::NEXT_HOPS => layout::<[u8; 4], NextHopEntry>(MapType::Hash, MAX_VTEPS),
            // `struct bpf_devmap_val`: the target's ifindex and a program (unused: 0).
            names::DEVICES => layout::<u32, [u32; 2]>(MapType::DevMapHash, MAX_DEVICES),
            names::RULE_HITS => layout::<u32, Tally>(MapType::PerCpuArray, MAX_RULES),
            names::SERVICES => layout::<ServiceKey, ServiceEntry>(MapType::Hash, MAX_SERVICE_PORTS),
            names::MAGLEV_SMALL => layout::<u64, MaglevSmall>(MapType::Hash, MAX_MAGLEV_SMALL),
            names::MAGLEV_LARGE => layout::<u64, MaglevLarge>(MapType::Hash, MAX_MAGLEV_LARGE),
            names::MAGLEV_MEMBERS => layout::<MemberKey, u8>(MapType::Hash, MAX_MAGLEV_MEMBERS),
            names::NAT_FLOWS | names::NAT_REPLIES => {
                layout::<FlowKey, NatEntry>(MapType::LruHash, NAT_ENTRIES)
            }
            names::AFFINITY => {
                layout::<AffinityKey, AffinityEntry>(MapType::LruHash, AFFINITY_ENTRIES)
            }
            DropReason::MAP_NAME => layout::<u32, Tally>(MapType::PerCpuArray, DropReason::COUNT),
            Counter::MAP_NAME => layout::<u32, Tally>(MapType::PerCpuArray, Counter::COUNT),
            _ => MapLayout {
                map_type: None,
                key_size: 0,
                value_size: 0,
                max_entries: 0,
                map_flags: 0,
            },
        }
    }
}

/// Whether the pinned maps in `pin_dir` (loaded with [`OBJECT`]) match what this datapath
/// declares, map by map: `(name, matches)`. For tests of [`load_pinned`]'s check.
pub fn pinned_maps_match(pin_dir: &Path, conntrack_entries: u32) -> Vec<(&'static str, bool)> {
    PINNED_MAPS
        .iter()
        .map(|&name| {
            let matches = MapInfo::from_pin(pin_dir.join(name)).is_ok_and(|info| {
                MapLayout::of(&info) == MapLayout::declared(name, conntrack_entries)
            });
            (name, matches)
        })
        .collect()
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

/// The tc program `program` of `ebpf`, loaded (verified) into the kernel.
pub fn tc_program(
    ebpf: &mut Ebpf,
    program: TcProgram,
) -> Result<&mut SchedClassifier, DatapathError> {
    let name = program.symbol();
    let tc: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or(DatapathError::MissingProgram(name))?
        .try_into()
        .map_err(|source| DatapathError::Program { name, source })?;
    if tc.fd().is_err() {
        tc.load()
            .map_err(|source| DatapathError::Program { name, source })?;
    }
    Ok(tc)
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

/// The contents of every map `plan` fills, keyed as the maps are (LPM keys as (prefix length,
/// data)): what [`apply_plan`] writes, and what the AF_XDP forwarder builds its tables from.
pub fn contents(plan: &NodePlan) -> MapContents {
    let scoped = |scope: u32, net: &Ipv4Net| {
        (
            32 + u32::from(net.prefix_len()),
            ScopedIp {
                scope,
                ip: net.network().octets(),
            },
        )
    };
    MapContents {
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
        services: plan.services.entries.clone(),
        maglev: plan
            .services
            .tables
            .iter()
            .map(|(key, table)| (*key, table.slots.clone()))
            .collect(),
        members: plan.services.members.keys().copied().collect(),
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
/// kernel, so they never see half a configuration. `ENDPOINTS`, which makes an address
/// reachable, is written after everything its pod needs to answer (its port, anti-spoofing,
/// policy, devices) and pruned before any of it: a packet never reaches a pod whose answer
/// the datapath would not carry yet (its first ARP for the gateway, say, which it would only
/// send again a second later).
pub fn apply_plan(
    ebpf: &mut Ebpf,
    previous: Option<&NodePlan>,
    plan: &NodePlan,
    generation: u32,
) -> Result<(), DatapathError> {
    let old = previous.map(contents).unwrap_or_default();
    let new = contents(plan);
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
        let endpoints = |ebpf: &mut Ebpf| {
            sync_hash(
                ebpf,
                names::ENDPOINTS,
                &old.endpoints,
                &new.endpoints,
                phase,
            )
        };
        if phase == Phase::Prune {
            endpoints(ebpf)?;
        }
        let no_services = ServicePlan::default();
        let old_services = previous.map_or(&no_services, |previous| &previous.services);
        sync_services(ebpf, old_services, &plan.services, phase)?;
        sync_hash(ebpf, names::NETWORKS, &old.networks, &new.networks, phase)?;
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
        let old_devices = previous.map(devices).unwrap_or_default();
        sync_devices(ebpf, &old_devices, &devices(plan), phase)?;
        if phase == Phase::Upsert {
            endpoints(ebpf)?;
        }
    }
    Ok(())
}

/// The XDP programs' redirect targets in `plan`: the underlay and every local pod's host-side
/// veth (`DEVICES`).
pub fn devices(plan: &NodePlan) -> BTreeSet<u32> {
    let local = plan
        .endpoints
        .values()
        .filter(|endpoint| endpoint.kind == endpoint_kind::LOCAL)
        .map(|endpoint| endpoint.ifindex);
    plan.pod_ports
        .keys()
        .copied()
        .chain(local)
        .chain([plan.node.underlay_ifindex])
        .filter(|&ifindex| ifindex != 0)
        .collect()
}

/// Puts the devices of `new` that `old` lacks into `DEVICES` (upsert), or takes those of `old`
/// that `new` lacks out (prune). A device the kernel does not know (gone since the plan was
/// compiled, or an ifindex of a test's hand-made plan) is left out: the programs then redirect
/// to it with `bpf_redirect`, as they do for any ifindex missing from the map. A removal that
/// finds no entry is not an error either: the kernel removes a device's entry when the device
/// goes.
fn sync_devices(
    ebpf: &mut Ebpf,
    old: &BTreeSet<u32>,
    new: &BTreeSet<u32>,
    phase: Phase,
) -> Result<(), DatapathError> {
    let name = names::DEVICES;
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut devmap =
        DevMapHash::try_from(map).map_err(|source| DatapathError::Map { name, source })?;
    match phase {
        Phase::Upsert => {
            for &ifindex in new.difference(old) {
                if let Err(error) = devmap.insert(ifindex, ifindex, None, 0) {
                    tracing::debug!(ifindex, %error, "device left out of DEVICES (bpf_redirect)");
                }
            }
        }
        Phase::Prune => {
            for &ifindex in old.difference(new) {
                let _ = devmap.remove(ifindex);
            }
        }
    }
    Ok(())
}

/// Moves the rule hit counters (`RULE_HITS`) with their rules from one plan's rule ids to the
/// next's: id `i` of the new plan gets the counts of `moves[i]` in the old one
/// ([`crate::policy::rule_moves`]), or zeros for a rule that is new; the ids the old plan had
/// beyond the new one's (`old_rules`) are zeroed. Counts are read before any is written; a
/// packet counted between the two is lost to the counters. Returns how many ids were written.
pub fn move_rule_hits(
    ebpf: &mut Ebpf,
    moves: &[Option<RuleId>],
    old_rules: usize,
) -> Result<usize, DatapathError> {
    let name = names::RULE_HITS;
    let error = |source| DatapathError::Map { name, source };
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut hits = PerCpuArray::<_, Tally>::try_from(map).map_err(error)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, source)| DatapathError::Cpus(source))?;
    let zeros = || {
        PerCpuValues::try_from(vec![Tally::default(); cpus]).expect("one value per possible CPU")
    };
    let changed: Vec<(RuleId, Option<RuleId>)> = moves
        .iter()
        .enumerate()
        .map(|(id, from)| (id as RuleId, *from))
        .filter(|(id, from)| *from != Some(*id))
        .chain((moves.len()..old_rules).map(|id| (id as RuleId, None)))
        .collect();
    let mut values = Vec::with_capacity(changed.len());
    for (_, from) in &changed {
        values.push(match from {
            Some(from) => hits.get(from, 0).map_err(error)?,
            None => zeros(),
        });
    }
    for ((id, _), value) in changed.iter().zip(values) {
        hits.set(*id, value, 0).map_err(error)?;
    }
    Ok(changed.len())
}

/// Makes `NEXT_HOPS` hold exactly `next_hops` (see `crate::nexthop`): changed and new entries
/// written, entries of VTEPs not in it (gone, or their neighbour no longer resolved) removed,
/// whatever the map held before (an earlier agent's entries included). Returns how many entries
/// were written or removed.
pub fn write_next_hops(
    ebpf: &mut Ebpf,
    next_hops: &BTreeMap<[u8; 4], NextHopEntry>,
) -> Result<usize, DatapathError> {
    let name = names::NEXT_HOPS;
    let error = |source| DatapathError::Map { name, source };
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut hash = HashMap::<_, [u8; 4], NextHopEntry>::try_from(map).map_err(error)?;
    let found: BTreeMap<[u8; 4], NextHopEntry> =
        hash.iter().collect::<Result<_, _>>().map_err(error)?;
    let mut changes = 0;
    for (vtep, entry) in next_hops {
        if found.get(vtep) != Some(entry) {
            hash.insert(vtep, entry, 0).map_err(error)?;
            changes += 1;
        }
    }
    for vtep in found.keys().filter(|vtep| !next_hops.contains_key(*vtep)) {
        hash.remove(vtep).map_err(error)?;
        changes += 1;
    }
    Ok(changes)
}

/// Brings the service maps from `old` to `new`, make before break: a new Maglev table is
/// written before the `SERVICES` entries that name it, and removed only after the entries that
/// named it (a service whose backends changed names a new table, so the table a packet reads
/// is never one being rewritten).
fn sync_services(
    ebpf: &mut Ebpf,
    old: &ServicePlan,
    new: &ServicePlan,
    phase: Phase,
) -> Result<(), DatapathError> {
    if phase == Phase::Prune {
        sync_hash(ebpf, names::SERVICES, &old.entries, &new.entries, phase)?;
    }
    match phase {
        Phase::Upsert => {
            for (key, table) in &new.tables {
                if old.tables.get(key) != Some(table) {
                    write_table(ebpf, *key, table)?;
                }
            }
        }
        Phase::Prune => {
            for (key, table) in &old.tables {
                if !new.tables.contains_key(key) {
                    remove_table(ebpf, *key, table.large)?;
                }
            }
        }
    }
    sync_hash(
        ebpf,
        names::MAGLEV_MEMBERS,
        &old.members,
        &new.members,
        phase,
    )?;
    if phase == Phase::Upsert {
        sync_hash(ebpf, names::SERVICES, &old.entries, &new.entries, phase)?;
    }
    Ok(())
}

/// The map of Maglev tables of a size class.
fn table_map(large: bool) -> &'static str {
    if large {
        names::MAGLEV_LARGE
    } else {
        names::MAGLEV_SMALL
    }
}

/// Writes Maglev table `key` (its slots as compiled: exactly the map value's length).
fn write_table(ebpf: &mut Ebpf, key: u64, table: &MaglevTable) -> Result<(), DatapathError> {
    fn write<const N: usize>(
        ebpf: &mut Ebpf,
        name: &'static str,
        key: u64,
        slots: &[[u8; 4]],
    ) -> Result<(), DatapathError> {
        let error = |source| DatapathError::Map { name, source };
        let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
        let mut hash = HashMap::<_, u64, [[u8; 4]; N]>::try_from(map).map_err(error)?;
        let mut value = Box::new([[0u8; 4]; N]);
        value.copy_from_slice(slots);
        hash.insert(key, *value, 0).map_err(error)
    }
    let name = table_map(table.large);
    if table.large {
        write::<MAGLEV_LARGE_SLOTS>(ebpf, name, key, &table.slots)
    } else {
        write::<MAGLEV_SMALL_SLOTS>(ebpf, name, key, &table.slots)
    }
}

fn remove_table(ebpf: &mut Ebpf, key: u64, large: bool) -> Result<(), DatapathError> {
    let name = table_map(large);
    let error = |source| DatapathError::Map { name, source };
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    if large {
        HashMap::<_, u64, MaglevLarge>::try_from(map)
            .and_then(|mut hash| hash.remove(&key))
            .map_err(error)
    } else {
        HashMap::<_, u64, MaglevSmall>::try_from(map)
            .and_then(|mut hash| hash.remove(&key))
            .map_err(error)
    }
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

/// What [`reconcile`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reconciled {
    /// The policy generation written into the node entry.
    pub generation: u32,
    /// Whether the maps held an earlier agent's configuration (a configured node entry).
    pub resumed: bool,
    /// Entries of an earlier configuration deleted because `plan` does not have them.
    pub removed: usize,
}

/// Writes `plan` into maps that may hold anything (reused from an earlier agent, whose plan is
/// not known): a reconcile, never a flush, so the programs still attached see the old
/// configuration or the new one and never an empty one. Every entry of `plan` is upserted,
/// then the node entry, then every key of the configuration maps (`POD_PORTS`, `ENDPOINTS`,
/// `NETWORKS`, `VTEPS`, `SOURCES`, `PAIR_MACS`, `IDENTITIES`, `POLICY`, `DEVICES`, `SERVICES`,
/// the Maglev tables and their members) that `plan` does not have is deleted (`NEXT_HOPS` is made whole by [`write_next_hops`]). Conntrack, the services' translated connections (`NAT_FLOWS`, `NAT_REPLIES`, `AFFINITY`), the counters and the rule hits are left as they are. The policy
/// generation continues from the one in the node entry found (+1), so connections are checked
/// again against the new rules rather than trusted; fresh maps start at 1.
pub fn reconcile(ebpf: &mut Ebpf, plan: &NodePlan) -> Result<Reconciled, DatapathError> {
    let name = names::NODE;
    let found = Array::<_, NodeConfig>::try_from(map(ebpf, name)?)
        .and_then(|node| node.get(&0, 0))
        .map_err(|source| DatapathError::Map { name, source })?;
    let resumed = found.configured != 0;
    let generation = if resumed {
        found.policy_generation.wrapping_add(1).max(1)
    } else {
        1
    };
    // With nothing as the previous plan, `apply_plan` upserts all of `plan`, then writes the
    // node entry; what an earlier configuration left is pruned below.
    apply_plan(ebpf, None, plan, generation)?;
    let keep = contents(plan);
    let removed = [
        prune_hash(ebpf, names::POD_PORTS, &keep.pod_ports)?,
        prune_hash(ebpf, names::ENDPOINTS, &keep.endpoints)?,
        prune_hash(ebpf, names::NETWORKS, &keep.networks)?,
        prune_hash(ebpf, names::VTEPS, &keep.vteps)?,
        prune_hash(ebpf, names::PAIR_MACS, &keep.pair_macs)?,
        prune_lpm(ebpf, names::SOURCES, &keep.sources)?,
        prune_lpm(ebpf, names::IDENTITIES, &keep.identities)?,
        prune_lpm(ebpf, names::POLICY, &keep.policy)?,
        prune_devices(ebpf, &devices(plan))?,
        prune_hash(ebpf, names::SERVICES, &plan.services.entries)?,
        prune_keys::<u64, MaglevSmall>(ebpf, names::MAGLEV_SMALL, |key| {
            plan.services
                .tables
                .get(key)
                .is_some_and(|table| !table.large)
        })?,
        prune_keys::<u64, MaglevLarge>(ebpf, names::MAGLEV_LARGE, |key| {
            plan.services
                .tables
                .get(key)
                .is_some_and(|table| table.large)
        })?,
        prune_hash(ebpf, names::MAGLEV_MEMBERS, &plan.services.members)?,
    ]
    .iter()
    .sum();
    Ok(Reconciled {
        generation,
        resumed,
        removed,
    })
}

/// Deletes the keys of hash map `name` that `keep` does not have; returns how many.
fn prune_hash<K: Pod + Ord, V: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    keep: &BTreeMap<K, V>,
) -> Result<usize, DatapathError> {
    prune_keys::<K, V>(ebpf, name, |key| keep.contains_key(key))
}

/// Deletes the keys of hash map `name` that `keep` refuses; returns how many.
fn prune_keys<K: Pod, V: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    keep: impl Fn(&K) -> bool,
) -> Result<usize, DatapathError> {
    let error = |source| DatapathError::Map { name, source };
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut hash = HashMap::<_, K, V>::try_from(map).map_err(error)?;
    // Listed first: deleting while walking a hash map can restart the walk.
    let stale: Vec<K> = hash
        .keys()
        .filter(|key| key.as_ref().map_or(true, |key| !keep(key)))
        .collect::<Result<_, _>>()
        .map_err(error)?;
    for key in &stale {
        hash.remove(key).map_err(error)?;
    }
    Ok(stale.len())
}

/// Deletes the devices of `DEVICES` that `keep` does not have; returns how many.
fn prune_devices(ebpf: &mut Ebpf, keep: &BTreeSet<u32>) -> Result<usize, DatapathError> {
    let name = names::DEVICES;
    let error = |source| DatapathError::Map { name, source };
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut devmap = DevMapHash::try_from(map).map_err(error)?;
    let stale: Vec<u32> = devmap
        .keys()
        .filter(|key| key.as_ref().map_or(true, |key| !keep.contains(key)))
        .collect::<Result<_, _>>()
        .map_err(error)?;
    for &ifindex in &stale {
        let _ = devmap.remove(ifindex);
    }
    Ok(stale.len())
}

/// Deletes the keys of LPM trie `name` that `keep` (keyed by (prefix length, data)) does not
/// have; returns how many.
fn prune_lpm<K: Pod + Ord, V: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    keep: &BTreeMap<(u32, K), V>,
) -> Result<usize, DatapathError> {
    let error = |source| DatapathError::Map { name, source };
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let mut trie = LpmTrie::<_, K, V>::try_from(map).map_err(error)?;
    let stale: Vec<Key<K>> = trie
        .keys()
        .filter(|key| {
            key.as_ref().map_or(true, |key| {
                !keep.contains_key(&(key.prefix_len(), key.data()))
            })
        })
        .collect::<Result<_, _>>()
        .map_err(error)?;
    for key in &stale {
        trie.remove(key).map_err(error)?;
    }
    Ok(stale.len())
}
