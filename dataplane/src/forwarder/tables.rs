//! The forwarder's lookup tables: the contents of every map a node's plan fills
//! ([`MapContents`], what the agent writes into the kernel's maps, keyed as they are), and
//! [`Tables`], an immutable snapshot of them built for lookups, with this node's
//! [`NodeConfig`] and the underlay next hop of every remote VTEP.
//!
//! Owns: the lookups, one for one those of the XDP programs (`ebpf/programs/src/maps.rs`):
//! the same keys, the same answers, so the pipeline over them decides as the programs do. LPM
//! tries (`SOURCES`, `IDENTITIES`, `POLICY`) become [`Lpm`]: one hash per prefix length
//! present, probed longest first. Nothing allocates on lookup; a new snapshot is built off the
//! packet path and swapped in between batches.
//!
//! Next hops: the programs ask the kernel (`bpf_fib_lookup`); the forwarder is handed them by
//! the agent, which resolves them from the neighbour table. A VTEP without one drops with
//! [`DropReason::NoNeighbor`], as the FIB lookup does.
//!
//! Panic contract: nothing here panics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use foldhash::{HashMap, HashSet};

use ctpath_common::{
    maps::{
        Endpoint, EndpointKey, MemberKey, Network, NodeConfig, PodPort, PolicyRuleKey, ScopedIp,
        ScopedMac, ServiceEntry, ServiceKey, SourceMac, Vtep, IDENTITY_WORLD, MAGLEV_LARGE_SLOTS,
        MAGLEV_SMALL_SLOTS, POLICY_KEY_FIXED_BITS,
    },
    policy::PolicyTables,
    DropReason,
};

/// The contents of every map a plan fills, keyed as the maps are: LPM keys as (prefix
/// length in bits, data).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapContents {
    pub networks: BTreeMap<u32, Network>,
    pub endpoints: BTreeMap<EndpointKey, Endpoint>,
    pub vteps: BTreeMap<[u8; 4], Vtep>,
    pub pod_ports: BTreeMap<u32, PodPort>,
    pub pair_macs: BTreeMap<ScopedMac, u32>,
    pub sources: BTreeMap<(u32, ScopedIp), SourceMac>,
    pub identities: BTreeMap<(u32, ScopedIp), u32>,
    pub policy: BTreeMap<(u32, PolicyRuleKey), u32>,
    pub services: BTreeMap<ServiceKey, ServiceEntry>,
    /// `MAGLEV_SMALL` and `MAGLEV_LARGE` by table key (the slots say which: a table is as
    /// long as its class's tables), shared rather than copied between snapshots.
    pub maglev: BTreeMap<u64, Arc<[[u8; 4]]>>,
    pub members: BTreeSet<MemberKey>,
}

/// The underlay next hop towards a remote VTEP: the MACs of the outer Ethernet header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

/// The key of an LPM table, as the kernel's trie compares it: its bytes in memory order,
/// most significant first.
pub trait LpmKey: Copy {
    /// The key's bytes as the high bits of a `u128` (keys are at most 16 bytes).
    fn bits(&self) -> u128;
    /// The key's length in bits: a lookup matches the whole key.
    const LEN: u32;
}

impl LpmKey for ScopedIp {
    fn bits(&self) -> u128 {
        let [s0, s1, s2, s3] = self.scope.to_ne_bytes();
        let [i0, i1, i2, i3] = self.ip;
        high_bits(&[s0, s1, s2, s3, i0, i1, i2, i3])
    }
    const LEN: u32 = 64;
}

impl LpmKey for PolicyRuleKey {
    fn bits(&self) -> u128 {
        let [p0, p1, p2, p3] = self.policy.to_ne_bytes();
        let [i0, i1, i2, i3] = self.identity.to_ne_bytes();
        let [port0, port1] = self.port;
        high_bits(&[
            p0,
            p1,
            p2,
            p3,
            i0,
            i1,
            i2,
            i3,
            self.direction,
            self.protocol,
            port0,
            port1,
        ])
    }
    const LEN: u32 = POLICY_KEY_FIXED_BITS + 16;
}

/// `bytes` (at most 16) as the high bytes of a `u128`, big-endian.
fn high_bits(bytes: &[u8]) -> u128 {
    let mut all = [0u8; 16];
    all[..bytes.len()].copy_from_slice(bytes);
    u128::from_be_bytes(all)
}

/// The first `prefix_len` bits of a `u128`.
fn mask(prefix_len: u32) -> u128 {
    match prefix_len {
        0 => 0,
        len => u128::MAX << (128 - len.min(128)),
    }
}

/// A longest-prefix-match table over keys `K`: one hash per prefix length present, longest
/// first; a lookup probes each until one answers.
#[derive(Clone, Debug)]
pub struct Lpm<K, V> {
    /// (prefix length, masked key bits to value), longest prefix first.
    levels: Vec<(u32, HashMap<u128, V>)>,
    key: std::marker::PhantomData<K>,
}

impl<K: LpmKey, V: Copy> Lpm<K, V> {
    /// The table of `entries` ((prefix length, key), value). Bits past a prefix are ignored,
    /// and of two entries equal within their prefix the later wins, as in the kernel's trie.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a (u32, K), &'a V)>) -> Lpm<K, V>
    where
        K: 'a,
        V: 'a,
    {
        let mut levels: BTreeMap<u32, HashMap<u128, V>> = BTreeMap::new();
        for ((prefix_len, key), value) in entries {
            let prefix_len = (*prefix_len).min(K::LEN);
            levels
                .entry(prefix_len)
                .or_default()
                .insert(key.bits() & mask(prefix_len), *value);
        }
        Lpm {
            levels: levels.into_iter().rev().collect(),
            key: std::marker::PhantomData,
        }
    }

    /// The value of the longest prefix holding `key`.
    pub fn lookup(&self, key: &K) -> Option<V> {
        let bits = key.bits();
        self.levels
            .iter()
            .find_map(|(prefix_len, entries)| entries.get(&(bits & mask(*prefix_len))).copied())
    }
}

/// An immutable snapshot of a node's maps, for the forwarder's lookups.
#[derive(Clone, Debug)]
pub struct Tables {
    node: NodeConfig,
    pod_ports: HashMap<u32, PodPort>,
    endpoints: HashMap<EndpointKey, Endpoint>,
    networks: HashMap<u32, Network>,
    vteps: HashSet<[u8; 4]>,
    sources: Lpm<ScopedIp, SourceMac>,
    pair_macs: HashSet<ScopedMac>,
    identities: Lpm<ScopedIp, u32>,
    policy: Lpm<PolicyRuleKey, u32>,
    next_hops: HashMap<[u8; 4], NextHop>,
    services: HashMap<ServiceKey, ServiceEntry>,
    maglev: HashMap<u64, Arc<[[u8; 4]]>>,
    members: HashSet<MemberKey>,
}

impl Tables {
    /// The tables of `contents` on the node `node` (its policy generation included), with the
    /// underlay next hop of each remote VTEP in `next_hops`.
    pub fn new(
        contents: &MapContents,
        node: NodeConfig,
        next_hops: BTreeMap<[u8; 4], NextHop>,
    ) -> Tables {
        Tables {
            node,
            pod_ports: contents.pod_ports.clone().into_iter().collect(),
            endpoints: contents.endpoints.clone().into_iter().collect(),
            networks: contents.networks.clone().into_iter().collect(),
            vteps: contents.vteps.keys().copied().collect(),
            sources: Lpm::new(&contents.sources),
            pair_macs: contents.pair_macs.keys().copied().collect(),
            identities: Lpm::new(&contents.identities),
            policy: Lpm::new(&contents.policy),
            next_hops: next_hops.into_iter().collect(),
            services: contents.services.clone().into_iter().collect(),
            maglev: contents.maglev.clone().into_iter().collect(),
            members: contents.members.iter().copied().collect(),
        }
    }

    /// This node's configuration (`NODE[0]`); frames are left to the kernel while its
    /// `configured` is 0.
    pub fn node(&self) -> &NodeConfig {
        &self.node
    }

    /// The pod interface behind the host-side veth `ifindex`.
    pub fn pod_port(&self, ifindex: u32) -> Option<PodPort> {
        self.pod_ports.get(&ifindex).copied()
    }

    /// The endpoint with address `ip` on plane `vni`.
    pub fn endpoint(&self, vni: u32, ip: [u8; 4]) -> Option<Endpoint> {
        self.endpoints.get(&EndpointKey { vni, ip }).copied()
    }

    /// The plane with VXLAN network identifier `vni`.
    pub fn network(&self, vni: u32) -> Option<Network> {
        self.networks.get(&vni).copied()
    }

    /// Whether `ip` is the underlay address of a node of the cluster.
    pub fn is_known_vtep(&self, ip: [u8; 4]) -> bool {
        self.vteps.contains(&ip)
    }

    /// The MAC the pod behind `ifindex` must send from when its source address is `ip`, if it
    /// owns `ip`.
    pub fn source_mac(&self, ifindex: u32, ip: [u8; 4]) -> Option<[u8; 6]> {
        self.sources
            .lookup(&ScopedIp { scope: ifindex, ip })
            .map(|owned| owned.mac)
    }

    /// Whether `mac` is the MAC of one of the allowed address pairs of the pod behind
    /// `ifindex`.
    pub fn is_pair_mac(&self, ifindex: u32, mac: [u8; 6]) -> bool {
        self.pair_macs.contains(&ScopedMac {
            scope: ifindex,
            mac,
            _pad: [0; 2],
        })
    }

    /// The identity of address `ip` on plane `vni` (which security-group selectors it
    /// matches).
    pub fn identity(&self, vni: u32, ip: [u8; 4]) -> u32 {
        self.identities
            .lookup(&ScopedIp { scope: vni, ip })
            .unwrap_or(IDENTITY_WORLD)
    }

    /// The rule of compiled policy `key.policy` that allows `key`, if any.
    pub fn policy_rule(&self, key: PolicyRuleKey) -> Option<u32> {
        self.policy.lookup(&key)
    }

    /// The service port `key` (`SERVICES`).
    pub fn service(&self, key: &ServiceKey) -> Option<ServiceEntry> {
        self.services.get(key).copied()
    }

    /// The backend in slot `slot` of Maglev table `table` of the large class (`large`) or the
    /// small one, as the programs' `MAGLEV_LARGE` and `MAGLEV_SMALL` answer.
    pub fn maglev_slot(&self, table: u64, large: bool, slot: usize) -> Option<[u8; 4]> {
        let size = if large {
            MAGLEV_LARGE_SLOTS
        } else {
            MAGLEV_SMALL_SLOTS
        };
        let slots = self
            .maglev
            .get(&table)
            .filter(|slots| slots.len() == size)?;
        slots.get(slot).copied()
    }

    /// Whether `key.backend` is a backend of table `key.table` (`MAGLEV_MEMBERS`).
    pub fn is_member(&self, key: &MemberKey) -> bool {
        self.members.contains(key)
    }

    /// The underlay next hop towards `vtep`.
    pub fn next_hop(&self, vtep: [u8; 4]) -> Result<NextHop, DropReason> {
        self.next_hops
            .get(&vtep)
            .copied()
            .ok_or(DropReason::NoNeighbor)
    }
}

impl PolicyTables for Tables {
    fn identity(&self, vni: u32, ip: [u8; 4]) -> u32 {
        Tables::identity(self, vni, ip)
    }

    fn policy_rule(&self, key: PolicyRuleKey) -> Option<u32> {
        Tables::policy_rule(self, key)
    }
}

#[cfg(test)]
mod tests {
    use ctpath_common::maps::{direction, PROTOCOL_ANY};

    use super::*;

    fn scoped(scope: u32, ip: [u8; 4]) -> ScopedIp {
        ScopedIp { scope, ip }
    }

    #[test]
    fn the_longest_prefix_answers() {
        let entries = BTreeMap::from([
            ((32 + 8, scoped(7, [10, 0, 0, 0])), 1u32),
            ((32 + 24, scoped(7, [10, 1, 2, 99])), 2),
            ((32 + 32, scoped(7, [10, 1, 2, 3])), 3),
            ((32, scoped(8, [0; 4])), 4),
        ]);
        let lpm = Lpm::new(&entries);
        assert_eq!(lpm.lookup(&scoped(7, [10, 1, 2, 3])), Some(3));
        assert_eq!(
            lpm.lookup(&scoped(7, [10, 1, 2, 4])),
            Some(2),
            "bits past /24 ignored"
        );
        assert_eq!(lpm.lookup(&scoped(7, [10, 9, 9, 9])), Some(1));
        assert_eq!(lpm.lookup(&scoped(7, [11, 0, 0, 0])), None);
        // The scope is matched whole: another scope's /0 is not this one's.
        assert_eq!(lpm.lookup(&scoped(8, [1, 2, 3, 4])), Some(4));
        assert_eq!(lpm.lookup(&scoped(9, [10, 1, 2, 3])), None);
        assert_eq!(
            Lpm::<ScopedIp, u32>::new(&BTreeMap::new()).lookup(&scoped(7, [0; 4])),
            None
        );
    }

    #[test]
    fn policy_ports_match_by_prefix() {
        let key = |port: u16| PolicyRuleKey {
            policy: 1,
            identity: 5,
            direction: direction::EGRESS,
            protocol: PROTOCOL_ANY,
            port: port.to_be_bytes(),
        };
        // 1024-2047 as one /6 port prefix; 80 exactly; every port.
        let entries = BTreeMap::from([
            ((POLICY_KEY_FIXED_BITS + 6, key(1024)), 10u32),
            ((POLICY_KEY_FIXED_BITS + 16, key(80)), 11),
            ((POLICY_KEY_FIXED_BITS, key(0)), 12),
        ]);
        let lpm = Lpm::new(&entries);
        assert_eq!(lpm.lookup(&key(2047)), Some(10));
        assert_eq!(lpm.lookup(&key(80)), Some(11));
        assert_eq!(lpm.lookup(&key(81)), Some(12));
        let other_policy = PolicyRuleKey {
            policy: 2,
            ..key(80)
        };
        assert_eq!(lpm.lookup(&other_policy), None);
    }

    #[test]
    fn missing_next_hops_are_no_neighbor() {
        let hop = NextHop {
            src_mac: [1; 6],
            dst_mac: [2; 6],
        };
        let tables = Tables::new(
            &MapContents::default(),
            NodeConfig::default(),
            BTreeMap::from([([192, 168, 0, 2], hop)]),
        );
        assert_eq!(tables.next_hop([192, 168, 0, 2]), Ok(hop));
        assert_eq!(
            tables.next_hop([192, 168, 0, 3]),
            Err(DropReason::NoNeighbor)
        );
        assert_eq!(tables.identity(1, [10, 0, 0, 1]), IDENTITY_WORLD);
    }
}
