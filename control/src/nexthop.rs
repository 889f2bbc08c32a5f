//! The underlay next hop of every other node's VTEP, resolved from the kernel's route and
//! neighbour tables: written once, for the AF_XDP forwarder's tables (`fastpath`) and for the
//! XDP programs' `NEXT_HOPS` cache (`datapath::write_next_hops`, from the agent).
//!
//! Owns [`NextHops`] (one per agent, whose changes reach both): which neighbour each VTEP is
//! reached through (asked once per VTEP, as `ip route get VTEP oif UNDERLAY` asks it, over
//! rtnetlink: the route's gateway, or the VTEP itself), and the MAC of each, read from the
//! underlay's neighbour table on every [`NextHops::refresh`] (the agent polls once a second).
//! A VTEP whose neighbour has no MAC yet, or a failed one, has no next hop: the forwarder drops
//! its frames as `no_neighbor`, the XDP programs fall back to `bpf_fib_lookup`.
//!
//! Routes are asked again only when the set of VTEPs changes: a changed route (another
//! gateway) is seen on the next plan with other VTEPs or the next agent start.
//!
//! Panic contract: nothing here panics; a failing request is logged and reads as no route
//! (the VTEP itself is taken as its neighbour) or no neighbours.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ctpath_common::maps::NextHopEntry;
use ctpath_dataplane::forwarder::tables::NextHop;

use crate::{compile::NodePlan, netlink::Rtnetlink};

/// The resolved next hops of a plan's remote VTEPs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NextHops {
    vteps: BTreeSet<[u8; 4]>,
    /// Each VTEP's underlay neighbour (itself, or the gateway the route goes through).
    neighbours: BTreeMap<[u8; 4], Ipv4Addr>,
    hops: BTreeMap<[u8; 4], NextHop>,
}

impl NextHops {
    /// Resolves the next hops of `plan`'s remote VTEPs.
    pub fn resolve(netlink: &mut Rtnetlink, plan: &NodePlan) -> NextHops {
        let mut next_hops = NextHops::default();
        next_hops.update(netlink, plan);
        next_hops
    }

    /// Follows a new plan: routes asked again if its VTEPs changed, neighbours read again.
    /// Returns whether the next hops changed.
    pub fn update(&mut self, netlink: &mut Rtnetlink, plan: &NodePlan) -> bool {
        if plan.remote_vteps != self.vteps || self.neighbours.is_empty() {
            self.vteps = plan.remote_vteps.clone();
            self.neighbours = route_neighbours(netlink, plan);
        }
        self.refresh(netlink, plan)
    }

    /// Reads the neighbour table again; returns whether a next hop changed (appeared, went, or
    /// got another MAC).
    pub fn refresh(&mut self, netlink: &mut Rtnetlink, plan: &NodePlan) -> bool {
        let hops = read_next_hops(netlink, plan, &self.neighbours);
        let changed = hops != self.hops;
        self.hops = hops;
        changed
    }

    /// The next hop of every VTEP whose neighbour is resolved, as the forwarder's tables take
    /// them.
    pub fn hops(&self) -> &BTreeMap<[u8; 4], NextHop> {
        &self.hops
    }

    /// The same next hops as `NEXT_HOPS` entries: out of `plan`'s underlay.
    pub fn entries(&self, plan: &NodePlan) -> BTreeMap<[u8; 4], NextHopEntry> {
        self.hops
            .iter()
            .map(|(vtep, hop)| {
                (
                    *vtep,
                    NextHopEntry {
                        ifindex: plan.node.underlay_ifindex,
                        src_mac: hop.src_mac,
                        dst_mac: hop.dst_mac,
                    },
                )
            })
            .collect()
    }
}

/// The neighbour each remote VTEP is reached through on the underlay: its gateway if the route
/// has one, else the VTEP itself.
fn route_neighbours(netlink: &mut Rtnetlink, plan: &NodePlan) -> BTreeMap<[u8; 4], Ipv4Addr> {
    plan.remote_vteps
        .iter()
        .map(|vtep| {
            let ip = Ipv4Addr::from(*vtep);
            let gateway = netlink
                .route_gateway(ip, plan.node.underlay_ifindex)
                .map_err(|error| tracing::debug!(%error, "route to a VTEP not read"))
                .ok()
                .flatten();
            (*vtep, gateway.unwrap_or(ip))
        })
        .collect()
}

/// The resolved next hop of every remote VTEP whose neighbour has a MAC.
fn read_next_hops(
    netlink: &mut Rtnetlink,
    plan: &NodePlan,
    neighbours: &BTreeMap<[u8; 4], Ipv4Addr>,
) -> BTreeMap<[u8; 4], NextHop> {
    let table = netlink
        .neighbours(plan.node.underlay_ifindex)
        .map_err(|error| tracing::debug!(%error, "next hops not read"))
        .unwrap_or_default();
    let resolved: BTreeMap<Ipv4Addr, [u8; 6]> = table
        .into_iter()
        .filter(|entry| entry.resolved)
        .filter_map(|entry| Some((entry.ip, entry.mac?)))
        .collect();
    neighbours
        .iter()
        .filter(|(vtep, _)| plan.remote_vteps.contains(*vtep))
        .filter_map(|(vtep, neighbour)| {
            resolved.get(neighbour).map(|mac| {
                (
                    *vtep,
                    NextHop {
                        src_mac: plan.node.underlay_mac,
                        dst_mac: *mac,
                    },
                )
            })
        })
        .collect()
}
