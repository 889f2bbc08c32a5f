//! The compiler of a state's services into the datapath's service maps (issue 11,
//! docs/decisions/services.md): per service port a `SERVICES` entry naming its Maglev table,
//! and the tables themselves, built by `ctpath_dataplane::maglev` from the backends'
//! addresses, so every node (and the reference model) builds the same one.
//!
//! Owns: which service ports exist ([`ServicePlan::entries`]), which table each names, and the
//! table contents. A table's key is a hash of its size class and its backends, so services
//! with the same backends share a table, and a service whose backends change names a new
//! table: `apply_plan` writes the new table before the entry that switches to it and removes
//! the old one after, so no packet ever finds a half-built table (hitless rebuild). The
//! backends of the tables of services with client-IP affinity are listed too
//! ([`ServicePlan::members`]), written and removed with their tables.
//!
//! Pure; nothing here touches the kernel.

use std::collections::BTreeMap;
use std::sync::Arc;

use ctpath_common::{
    maps::{
        service_flags, MemberKey, ServiceEntry, ServiceKey, MAGLEV_LARGE_SLOTS,
        MAGLEV_SMALL_MAX_BACKENDS, MAGLEV_SMALL_SLOTS, NO_TABLE,
    },
    wire::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};
use ctpath_dataplane::maglev::{BackendId, Maglev};

use crate::state::{ClusterState, Service, ServiceProtocol};

/// A Maglev table: the backend address of every slot, and whether it is a large one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    pub large: bool,
    /// Shared with the AF_XDP forwarder's snapshots, not copied into each.
    pub slots: Arc<[[u8; 4]]>,
}

/// The service maps of one node (the same on every node: services are cluster-wide).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePlan {
    pub entries: BTreeMap<ServiceKey, ServiceEntry>,
    /// By table key.
    pub tables: BTreeMap<u64, MaglevTable>,
    /// The backends of the tables of services with client-IP affinity (value 1): a client
    /// keeps its backend across a change of the service's backends if it is still one.
    pub members: BTreeMap<MemberKey, u8>,
}

impl ServicePlan {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The protocol numbers of a service port.
fn protocol_number(protocol: ServiceProtocol) -> u8 {
    match protocol {
        ServiceProtocol::Tcp => IPPROTO_TCP,
        ServiceProtocol::Udp => IPPROTO_UDP,
    }
}

/// The service maps of `state` (validated).
pub fn compile(state: &ClusterState) -> ServicePlan {
    let mut plan = ServicePlan::default();
    for service in &state.services {
        let vni = state
            .network(&service.network)
            .expect("validated: services name known networks")
            .vni;
        let backends: Vec<[u8; 4]> = state
            .service_backends(service)
            .into_iter()
            .map(|(_, interface)| interface.ip.octets())
            .collect();
        let (table, large) = match table_of(&backends) {
            Some((key, table)) => {
                let large = table.large;
                plan.tables.entry(key).or_insert(table);
                (key, large)
            }
            None => (NO_TABLE, false),
        };
        if table != NO_TABLE && service.affinity_timeout().is_some() {
            for backend in &backends {
                let member = MemberKey {
                    table,
                    backend: *backend,
                    _pad: [0; 4],
                };
                plan.members.insert(member, 1);
            }
        }
        let entry = |target_port| ServiceEntry {
            table,
            target_port,
            flags: flags_of(service, large),
            _pad: 0,
            affinity_timeout_s: service.affinity_timeout().unwrap_or(0),
        };
        let key = |protocol, port| ServiceKey {
            vni,
            vip: service.vip.octets(),
            port,
            protocol,
            _pad: 0,
        };
        match &service.ports {
            Some(ports) => {
                for port in ports {
                    plan.entries.insert(
                        key(protocol_number(port.protocol), port.port),
                        entry(port.target_port()),
                    );
                }
            }
            // An IP-level service: every TCP and UDP port, and ping.
            None => {
                for protocol in [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP] {
                    plan.entries.insert(key(protocol, 0), entry(0));
                }
            }
        }
    }
    plan
}

fn flags_of(service: &Service, large: bool) -> u8 {
    let mut flags = 0;
    if large {
        flags |= service_flags::LARGE_TABLE;
    }
    if service.affinity_timeout().is_some() {
        flags |= service_flags::CLIENT_IP_AFFINITY;
    }
    flags
}

/// The table of `backends` (addresses on the service's plane) and its key; none without
/// backends.
pub fn table_of(backends: &[[u8; 4]]) -> Option<(u64, MaglevTable)> {
    if backends.is_empty() {
        return None;
    }
    let large = backends.len() > MAGLEV_SMALL_MAX_BACKENDS;
    let size = if large {
        MAGLEV_LARGE_SLOTS
    } else {
        MAGLEV_SMALL_SLOTS
    };
    let ids: Vec<BackendId> = backends
        .iter()
        .map(|ip| BackendId(u32::from_be_bytes(*ip)))
        .collect();
    let maglev = Maglev::build(&ids, size).ok()?;
    let slots = maglev.slots().iter().map(|id| id.0.to_be_bytes()).collect();
    Some((table_key(large, &ids), MaglevTable { large, slots }))
}

/// The key of the table of `ids` in its size class: FNV-1a over the class and the sorted ids,
/// never [`NO_TABLE`].
fn table_key(large: bool, ids: &[BackendId]) -> u64 {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = std::iter::once(large as u8).chain(sorted.iter().flat_map(|id| id.0.to_be_bytes()));
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    if hash == NO_TABLE {
        1
    } else {
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ClusterState;

    fn example() -> ClusterState {
        ClusterState::from_yaml_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/services.yaml"
            ))
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn every_service_port_names_a_table_of_its_backends() {
        let state = example();
        let plan = compile(&state);
        let ports: usize = state
            .services
            .iter()
            .map(|service| service.ports.as_ref().map_or(3, Vec::len))
            .sum();
        assert_eq!(plan.entries.len(), ports);
        for service in &state.services {
            let backends: Vec<[u8; 4]> = state
                .service_backends(service)
                .into_iter()
                .map(|(_, interface)| interface.ip.octets())
                .collect();
            let entries: Vec<_> = plan
                .entries
                .iter()
                .filter(|(key, _)| key.vip == service.vip.octets())
                .collect();
            assert!(!entries.is_empty());
            for (_, entry) in entries {
                let table = &plan.tables[&entry.table];
                assert_eq!(table.slots.len(), MAGLEV_SMALL_SLOTS);
                for backend in &backends {
                    assert!(table.slots.contains(backend));
                }
                assert!(table.slots.iter().all(|slot| backends.contains(slot)));
            }
        }
    }

    #[test]
    fn same_backends_share_a_table_and_a_change_makes_a_new_one() {
        let a = [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]];
        let reordered = [[10, 0, 0, 3], [10, 0, 0, 1], [10, 0, 0, 2]];
        let (key, table) = table_of(&a).unwrap();
        let (same_key, same_table) = table_of(&reordered).unwrap();
        assert_eq!((key, &table), (same_key, &same_table));
        let (other, _) = table_of(&a[..2]).unwrap();
        assert_ne!(key, other);
        assert!(table_of(&[]).is_none());
    }

    #[test]
    fn more_than_ten_backends_take_a_large_table() {
        let backends: Vec<[u8; 4]> = (1..=11).map(|i| [10, 0, 1, i]).collect();
        let (_, table) = table_of(&backends).unwrap();
        assert!(table.large);
        assert_eq!(table.slots.len(), MAGLEV_LARGE_SLOTS);
        let (_, small) = table_of(&backends[..10]).unwrap();
        assert!(!small.large);
    }
}
