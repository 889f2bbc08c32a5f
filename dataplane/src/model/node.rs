//! The model of one node's datapath: what `from_pod` and `from_underlay` do with a frame,
//! security groups, anti-spoofing, connection tracking and services included. The specification is
//! `docs/security-groups.md` with the forwarding pipeline of `ebpf/programs/src/pod.rs` and
//! `underlay.rs`; this module is that specification as code, in the order the programs run:
//!
//! `from_pod(ifindex, frame)`:
//! 1. classify ([`super::classify()`]), else its drop reason;
//! 2. the port behind `ifindex`, else `unconfigured_port` (the model's node is always
//!    configured);
//! 3. anti-spoofing if the port has port security ([`super::spoofing`]);
//! 4. ARP: a request for an address of the port's plane (local, remote, gateway or a
//!    service's virtual IP; the last two with the router MAC) is answered back out of the
//!    port (`pod_arp_replied`), else `arp_not_request` / `arp_unknown_target`;
//! 5. other ethertypes go to the kernel (`pod_passed`);
//! 6. IPv4 larger than the port's MTU: "fragmentation needed" back to the pod if DF is set
//!    (`icmp_frag_needed_sent`), else `mtu_exceeded`;
//! 7. services, on a node whose cluster has any ([`super::services`]): an ICMP error about a
//!    packet of a live translated connection follows that connection (an error to a virtual
//!    IP about nothing translated is `service_unsupported`); else the reply of a live
//!    translated connection is translated back (from the service); else a packet to a
//!    service's virtual IP is translated to a backend (`service_unsupported`,
//!    `service_port_unknown`, `service_no_backend`);
//! 8. the destination (as translated) on the port's plane: a local or remote pod interface,
//!    else (the gateway included) `unknown_destination`;
//! 9. conntrack and policy (`admit`): egress of the port, ingress of a local destination; a
//!    packet to a service as translated (client to backend), a reply as it came, an ICMP
//!    error (and its quote) on the backend's side as it is there;
//! 10. delivery to the local pod (`pod_redirected_local`) or VXLAN to the remote pod's node
//!     (`pod_encapsulated`), the outer source port hashed from the packet as it leaves.
//!
//! `from_underlay(frame)`:
//! 1. not VXLAN for this node: to the kernel (`underlay_passed`); malformed VXLAN for this
//!    node: `vxlan_truncated` / `vxlan_bad_flags` ([`super::vxlan::receive`]);
//! 2. `unknown_vtep`, then `unknown_vni`;
//! 3. classify the inner frame;
//! 4. ARP: a request for a *local* pod is answered back over VXLAN (`underlay_arp_replied`);
//! 5. IPv4 larger than the plane's MTU: `mtu_exceeded`; its destination must be a local pod
//!    (`unknown_destination`); conntrack and policy, ingress of the destination only; the
//!    reply of a live translated connection (a remote backend's to a local client), or an
//!    ICMP error about a packet of one, is translated back; then delivery
//!    (`underlay_decapsulated`);
//! 6. any other inner ethertype: `inner_unsupported`.
//!
//! Outside the model: the underlay next hop of an encapsulated frame (the kernel's FIB and
//! neighbour table: `no_neighbor`, `no_underlay_route`, `underlay_forwarding_off`) and the
//! kernel refusing to resize a frame (`adjust_failed`). [`Outcome::Encapsulate`] gives what the
//! model does know: the VTEP, the VNI, the outer UDP source port and the inner frame.
//!
//! # Conntrack and policy
//!
//! `admit` is the spec's "Connection tracking" section, step for step. Where the spec is
//! silent (see also [`super::conntrack`], [`super::policy`] and [`super::spoofing`]):
//! - The policy generation starts at [`INITIAL_GENERATION`] and [`NodeModel::set_policy`] adds
//!   one (wrapping).
//! - A packet with neither end filtered on this node (its sender's port, its destination's
//!   port) skips conntrack altogether, as "if neither side is filtered nothing is tracked"
//!   reads: no lookup, no refresh, no state change, no re-check. An entry made while a side
//!   was filtered is left to expire.
//! - A stale entry that passes its re-check takes the current generation *and* the rules that
//!   allow it now.
//! - A RELATED ICMP error allowed by a live entry leaves the entry alone (no refresh, no state
//!   change, no generation check) and counts towards no rule, as Linux leaves a master
//!   connection's timer alone for related packets.
//! - The state moves on every packet the entry allows, reply or not; denied packets change
//!   nothing.
//!
//! Panic contract: nothing here panics, whatever the frame or the topology.

use std::net::Ipv4Addr;

use ctpath_common::flow::{flow_hash, vxlan_source_port};
use ctpath_common::wire::{ETH_HDR_LEN, IPPROTO_ICMP, VXLAN_ENCAP_LEN};
use ctpath_common::{Counter, DropReason};

use super::classify::{classify, Ipv4Summary, L3, L4};
use super::conntrack::{
    has_ports, is_icmp_error, key_ports, quoted, quoted_key, CtEntry, CtKey, CtState, Table,
};
use super::policy::{self, Connection, RuleHits};
use super::replies;
use super::services::{self, ServiceState, Translation};
use super::spoofing;
use super::topology::{Endpoint, LocalPort, Topology};
use super::vxlan::{self, Outer};
use crate::wire::{arp, ipv4, MacAddr};

/// The policy generation of a new [`NodeModel`].
pub const INITIAL_GENERATION: u32 = 1;

/// One node's datapath: its topology and policy, the policy generation, and the conntrack
/// table. Time is an argument of each call, so the model is deterministic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeModel {
    topology: Topology,
    generation: u32,
    table: Table,
    services: ServiceState,
}

/// What the datapath does with one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The one drop reason or counter the frame is counted under.
    pub counted: Counted,
    /// The rules the packet counts towards (`ctpath status --state FILE`): those of its connection
    /// on this node. Empty for everything but forwarded IPv4.
    pub rules: RuleHits,
}

/// A drop reason or a counter: the frame's one entry in the `DROPS` or `COUNTERS` map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counted {
    Drop(DropReason),
    Counter(Counter),
}

/// The action on a frame, and the frame that leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `XDP_DROP`.
    Drop(DropReason),
    /// `XDP_PASS`, the frame untouched.
    Pass,
    /// Delivered to the pod behind veth `ifindex` (`XDP_REDIRECT`).
    Redirect { ifindex: u32, frame: Vec<u8> },
    /// Sent back out of the device it came in on (`XDP_REDIRECT` to the ingress ifindex): an
    /// ARP reply, an ICMP error, or an ARP reply over VXLAN with its outer headers.
    Bounce { frame: Vec<u8> },
    /// Wrapped in VXLAN to `vtep` (`XDP_REDIRECT` to the underlay next hop). The frame that
    /// leaves is [`super::vxlan::encapsulate`] of `inner` with this node's underlay address as
    /// source, `src_port`, `vni`, and the next hop's MACs.
    Encapsulate {
        vtep: Ipv4Addr,
        vni: u32,
        src_port: u16,
        inner: Vec<u8>,
    },
}

/// XDP actions, numbered as the kernel numbers them (`enum xdp_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpAction {
    Aborted = 0,
    Drop = 1,
    Pass = 2,
    Tx = 3,
    Redirect = 4,
}

impl XdpAction {
    pub fn from_code(code: u32) -> Option<XdpAction> {
        [
            XdpAction::Aborted,
            XdpAction::Drop,
            XdpAction::Pass,
            XdpAction::Tx,
            XdpAction::Redirect,
        ]
        .into_iter()
        .find(|action| *action as u32 == code)
    }
}

impl Outcome {
    pub fn xdp_action(&self) -> XdpAction {
        match self {
            Outcome::Drop(_) => XdpAction::Drop,
            Outcome::Pass => XdpAction::Pass,
            Outcome::Redirect { .. } | Outcome::Bounce { .. } | Outcome::Encapsulate { .. } => {
                XdpAction::Redirect
            }
        }
    }
}

impl Counted {
    /// The counter's stable name, as `ctpath status` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Counted::Drop(reason) => reason.name(),
            Counted::Counter(counter) => counter.name(),
        }
    }
}

impl Verdict {
    fn new(counter: Counter, outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            counted: Counted::Counter(counter),
            rules: RuleHits::default(),
        }
    }

    fn dropped(reason: DropReason) -> Verdict {
        Verdict {
            outcome: Outcome::Drop(reason),
            counted: Counted::Drop(reason),
            rules: RuleHits::default(),
        }
    }
}

impl NodeModel {
    pub fn new(topology: Topology) -> NodeModel {
        NodeModel {
            services: ServiceState::new(&topology),
            topology,
            generation: INITIAL_GENERATION,
            table: Table::default(),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The current policy generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Replaces the topology, policy included (a test rebuilds it from the changed cluster
    /// state, as the agent recompiles), and bumps the policy generation, as the agent does on
    /// every change it applies. The conntrack table is kept: its entries are re-checked as
    /// their packets come. The new timeouts apply at once; so does a new `max_entries`, which
    /// the agent applies only when it restarts: keep it unchanged to compare with the kernel.
    /// The services' tables are rebuilt; their translations are kept (a backend's
    /// established connections go on).
    pub fn set_policy(&mut self, topology: Topology) {
        self.services.set_services(&topology);
        self.topology = topology;
        self.generation = self.generation.wrapping_add(1);
    }

    /// Every entry of the conntrack table, expired ones included (they hold their slot until
    /// reused or collected), in key order. [`CtEntry::is_expired`] tells them apart.
    pub fn conntrack(&self) -> impl Iterator<Item = (&CtKey, &CtEntry)> {
        self.table.iter()
    }

    /// Removes the entries expired at `now_ns`, as the agent's collector does; returns how
    /// many.
    pub fn collect_expired(&mut self, now_ns: u64) -> usize {
        self.table
            .collect_expired(&self.topology.conntrack.timeouts, now_ns)
    }

    /// A frame sent by the pod behind the host-side veth `ifindex`, at `now_ns`.
    pub fn from_pod(&mut self, ifindex: u32, frame: &[u8], now_ns: u64) -> Verdict {
        self.try_from_pod(ifindex, frame, now_ns)
            .unwrap_or_else(Verdict::dropped)
    }

    /// A frame arriving on the underlay interface, at `now_ns`.
    pub fn from_underlay(&mut self, frame: &[u8], now_ns: u64) -> Verdict {
        self.try_from_underlay(frame, now_ns)
            .unwrap_or_else(Verdict::dropped)
    }

    fn try_from_pod(
        &mut self,
        ifindex: u32,
        frame: &[u8],
        now_ns: u64,
    ) -> Result<Verdict, DropReason> {
        let NodeModel {
            topology,
            generation,
            table,
            services,
        } = self;
        let classified = classify(frame)?;
        let port = topology.port(ifindex).ok_or(DropReason::UnconfiguredPort)?;
        if port.port_security {
            spoofing::check(port, &classified)?;
        }
        let ip = match &classified.l3 {
            L3::Arp(request) => {
                let mac = arp_answer(topology, request, port.vni, false)?;
                let frame = replies::arp_reply(frame, request, mac);
                return Ok(Verdict::new(
                    Counter::PodArpReplied,
                    Outcome::Bounce { frame },
                ));
            }
            L3::Other { .. } => return Ok(Verdict::new(Counter::PodPassed, Outcome::Pass)),
            L3::Ipv4(ip) => ip,
        };
        let router_mac = topology.node.router_mac;
        if ip.total_len > port.mtu {
            if !ip.dont_fragment {
                return Err(DropReason::MtuExceeded);
            }
            let frame = replies::frag_needed(frame, port, router_mac);
            return Ok(Verdict::new(
                Counter::IcmpFragNeededSent,
                Outcome::Bounce { frame },
            ));
        }
        let routed = route(
            topology,
            services,
            port.vni,
            ip,
            ipv4_payload(frame),
            now_ns,
        )?;
        let leaving = routed.leaving(ip);
        let leaving_frame = routed.frame(frame);
        let receiver = match routed.destination {
            Endpoint::Local(receiver) => Some(receiver),
            _ => None,
        };
        // Conntrack and the rules see the connection between the client and the backend: a
        // packet to a service as translated, a backend's reply as it came, and an ICMP error
        // about a packet of theirs likewise (its quote included).
        let (tracked, message) = match routed.translation {
            Translation::ToBackend(_) | Translation::ErrorToBackend(_) => {
                (&leaving, ipv4_payload(&leaving_frame))
            }
            Translation::None | Translation::FromService(_) | Translation::ErrorFromService(_) => {
                (ip, ipv4_payload(frame))
            }
        };
        let packet = Packet {
            vni: port.vni,
            ip: tracked,
            message,
            sender: Some(port),
            receiver,
        };
        let rules = admit(topology, table, *generation, &packet, now_ns)?;
        let frame = leaving_frame;
        // A routed frame (to the router MAC) leaves from the router MAC, as from a router.
        let src_mac = if classified.dst_mac == router_mac {
            router_mac
        } else {
            classified.src_mac
        };
        let (counter, outcome) = match routed.destination {
            Endpoint::Local(receiver) => (
                Counter::PodRedirectedLocal,
                Outcome::Redirect {
                    ifindex: receiver.ifindex,
                    frame: replies::readdressed(&frame, receiver.mac, src_mac),
                },
            ),
            Endpoint::Remote(remote) => (
                Counter::PodEncapsulated,
                Outcome::Encapsulate {
                    vtep: remote.vtep,
                    vni: port.vni,
                    src_port: outer_source_port(&leaving),
                    inner: replies::readdressed(&frame, remote.mac, src_mac),
                },
            ),
            Endpoint::Gateway | Endpoint::Service(_) => return Err(DropReason::UnknownDestination),
        };
        Ok(Verdict {
            outcome,
            counted: Counted::Counter(counter),
            rules,
        })
    }

    fn try_from_underlay(&mut self, frame: &[u8], now_ns: u64) -> Result<Verdict, DropReason> {
        let NodeModel {
            topology,
            generation,
            table,
            services,
        } = self;
        let node = topology.node;
        let Some(received) = vxlan::receive(frame, node.underlay_ip)? else {
            return Ok(Verdict::new(Counter::UnderlayPassed, Outcome::Pass));
        };
        if !topology.is_known_vtep(received.src_vtep) {
            return Err(DropReason::UnknownVtep);
        }
        let plane = topology.plane(received.vni).ok_or(DropReason::UnknownVni)?;
        let inner = frame.get(VXLAN_ENCAP_LEN..).unwrap_or_default();
        let classified = classify(inner)?;
        let ip = match &classified.l3 {
            L3::Arp(request) => {
                let mac = arp_answer(topology, request, received.vni, true)?;
                let reply = replies::arp_reply(inner, request, mac);
                let outer = Outer {
                    src_mac: node.underlay_mac,
                    dst_mac: received.src_mac,
                    src_ip: node.underlay_ip,
                    dst_ip: received.src_vtep,
                    src_port: received.src_port,
                    vni: received.vni,
                };
                let frame = vxlan::encapsulate(&outer, &reply);
                return Ok(Verdict::new(
                    Counter::UnderlayArpReplied,
                    Outcome::Bounce { frame },
                ));
            }
            L3::Other { .. } => return Err(DropReason::InnerUnsupported),
            L3::Ipv4(ip) => ip,
        };
        if ip.total_len > plane.mtu {
            return Err(DropReason::MtuExceeded);
        }
        let Some(Endpoint::Local(receiver)) = topology.endpoint(received.vni, ip.dst) else {
            return Err(DropReason::UnknownDestination);
        };
        let packet = Packet {
            vni: received.vni,
            ip,
            message: ipv4_payload(inner),
            sender: None,
            receiver: Some(receiver),
        };
        let rules = admit(topology, table, *generation, &packet, now_ns)?;
        // A backend's reply to a client of this node comes from the service, and so does an
        // ICMP error about a packet of the client's to the backend.
        let inner = if topology.services.is_empty() {
            inner.to_vec()
        } else if is_error(ip) {
            let message = ipv4_payload(inner);
            match quoted(message, ip.dst).and_then(|quoted| {
                services.of_error(topology, received.vni, false, &quoted, now_ns)
            }) {
                Some(rewrite) => services::rewritten_error(inner, ETH_HDR_LEN, &rewrite),
                None => inner.to_vec(),
            }
        } else {
            match services.from_backend(topology, received.vni, ip, now_ns) {
                Some(rewrite) => services::rewritten(inner, ETH_HDR_LEN, &rewrite),
                None => inner.to_vec(),
            }
        };
        Ok(Verdict {
            outcome: Outcome::Redirect {
                ifindex: receiver.ifindex,
                frame: replies::readdressed(&inner, receiver.mac, classified.src_mac),
            },
            counted: Counted::Counter(Counter::UnderlayDecapsulated),
            rules,
        })
    }
}

/// Where a packet from a pod goes, and how it was translated on its way there.
struct Routed<'a> {
    destination: Endpoint<'a>,
    translation: Translation,
}

impl Routed<'_> {
    /// The packet `ip` as it leaves.
    fn leaving(&self, ip: &Ipv4Summary) -> Ipv4Summary {
        self.translation
            .rewrite()
            .map_or(*ip, |rewrite| rewrite.applied_to(ip))
    }

    /// The frame `frame` as it leaves, before its Ethernet header is readdressed.
    fn frame(&self, frame: &[u8]) -> Vec<u8> {
        let mut frame = frame.to_vec();
        self.translation.rewrite_in_place(&mut frame, ETH_HDR_LEN);
        frame
    }
}

/// Where `ip`, from a pod on plane `vni`, goes. On a node with services, the reply of a live
/// translated connection is translated back first; else a packet to a service's virtual IP
/// is translated to a backend. The destination (as translated) must be a pod interface.
fn route<'a>(
    topology: &'a Topology,
    services: &mut ServiceState,
    vni: u32,
    ip: &Ipv4Summary,
    message: &[u8],
    now_ns: u64,
) -> Result<Routed<'a>, DropReason> {
    let to_virtual_ip = matches!(topology.endpoint(vni, ip.dst), Some(Endpoint::Service(_)));
    let translation = if topology.services.is_empty() {
        Translation::None
    } else if is_error(ip) {
        let found = quoted(message, ip.dst)
            .and_then(|quoted| services.of_error(topology, vni, to_virtual_ip, &quoted, now_ns));
        match found {
            Some(rewrite) if to_virtual_ip => Translation::ErrorToBackend(rewrite),
            Some(rewrite) => Translation::ErrorFromService(rewrite),
            None if to_virtual_ip => return Err(DropReason::ServiceUnsupported),
            None => Translation::None,
        }
    } else if let Some(rewrite) = services.from_backend(topology, vni, ip, now_ns) {
        Translation::FromService(rewrite)
    } else if to_virtual_ip {
        Translation::ToBackend(services.to_service(topology, vni, ip, now_ns)?)
    } else {
        Translation::None
    };
    let dst = translation.rewrite().map_or(ip.dst, |rewrite| rewrite.dst);
    match topology.endpoint(vni, dst) {
        Some(destination @ (Endpoint::Local(_) | Endpoint::Remote(_))) => Ok(Routed {
            destination,
            translation,
        }),
        _ => Err(DropReason::UnknownDestination),
    }
}

/// Whether `ip` is an ICMP error (types 3, 11, 12).
fn is_error(ip: &Ipv4Summary) -> bool {
    matches!(ip.l4, L4::Icmp { icmp_type, .. } if is_icmp_error(icmp_type))
}

/// An IPv4 packet on its way through conntrack and policy.
struct Packet<'a> {
    vni: u32,
    ip: &'a Ipv4Summary,
    /// The IPv4 payload (an ICMP error's quote is in it).
    message: &'a [u8],
    /// The sender's interface if it is on this node: the port the frame came from.
    sender: Option<&'a LocalPort>,
    /// The destination's interface if it is on this node.
    receiver: Option<&'a LocalPort>,
}

/// Conntrack and policy for one packet: the rules it counts towards, or why it is dropped.
/// Follows docs/security-groups.md, "Connection tracking", cases 1 to 4.
fn admit(
    topology: &Topology,
    table: &mut Table,
    generation: u32,
    packet: &Packet<'_>,
    now_ns: u64,
) -> Result<RuleHits, DropReason> {
    let timeouts = &topology.conntrack.timeouts;
    let ip = packet.ip;
    let filtered = |port: Option<&LocalPort>| port.is_some_and(LocalPort::is_filtered);
    if !filtered(packet.sender) && !filtered(packet.receiver) {
        // Nothing to filter, nothing tracked: the table is not even looked at.
        return Ok(RuleHits::default());
    }

    // 4. An ICMP error: allowed by a live entry of the quoted connection, else checked as a
    // first packet of protocol icmp; never tracked itself.
    if let L4::Icmp { icmp_type, .. } = ip.l4 {
        if is_icmp_error(icmp_type) {
            let quoted = quoted_key(packet.vni, packet.message, ip.dst);
            if quoted.is_some_and(|key| table.is_live(&key, timeouts, now_ns)) {
                return Ok(RuleHits::default());
            }
            let connection = Connection {
                vni: packet.vni,
                protocol: IPPROTO_ICMP,
                initiator: ip.src,
                responder: ip.dst,
                dst_port: None,
            };
            return policy::check(topology, &connection, packet.sender, packet.receiver)
                .map(|decision| decision.rules);
        }
    }

    let (src_port, dst_port) = key_ports(&ip.l4);
    let (key, side) = CtKey::of_packet(
        packet.vni,
        ip.protocol,
        (ip.src, src_port),
        (ip.dst, dst_port),
    );
    if let Some(entry) = table.live_mut(&key, timeouts, now_ns) {
        let is_reply = side != entry.originator;
        // 2. A stale entry: the connection checked again in its original direction.
        let allowed = entry.generation == generation || {
            let (initiator, responder) = if is_reply {
                (packet.receiver, packet.sender)
            } else {
                (packet.sender, packet.receiver)
            };
            let connection = key.connection(entry.originator);
            match policy::check(topology, &connection, initiator, responder) {
                Ok(decision) => {
                    entry.generation = generation;
                    entry.egress_rule = decision.rules.egress;
                    entry.ingress_rule = decision.rules.ingress;
                    true
                }
                Err(_) => false,
            }
        };
        // 1. A live, current entry: allowed either way.
        if allowed {
            entry.state = CtState::after(Some(entry.state), &ip.l4, is_reply);
            entry.last_seen_ns = now_ns;
            return Ok(RuleHits {
                egress: entry.egress_rule.clone(),
                ingress: entry.ingress_rule.clone(),
            });
        }
        table.remove(&key);
    }

    // 3. A first packet: initiator the sender.
    let connection = Connection {
        vni: packet.vni,
        protocol: ip.protocol,
        initiator: ip.src,
        responder: ip.dst,
        dst_port: has_ports(ip.protocol).then_some(dst_port),
    };
    let decision = policy::check(topology, &connection, packet.sender, packet.receiver)?;
    if decision.tracked {
        let entry = CtEntry {
            state: CtState::after(None, &ip.l4, false),
            originator: side,
            last_seen_ns: now_ns,
            generation,
            egress_rule: decision.rules.egress.clone(),
            ingress_rule: decision.rules.ingress.clone(),
        };
        if !table.insert(key, entry, topology.conntrack.max_entries) {
            return Err(DropReason::ConntrackFull);
        }
    }
    Ok(decision.rules)
}

/// The MAC that answers ARP `request` on plane `vni`: a pod interface's, or the router MAC for
/// the gateway. Over VXLAN (`over_vxlan`) only local pods are answered for: the sender's node
/// answers for the rest.
fn arp_answer(
    topology: &Topology,
    request: &arp::Repr,
    vni: u32,
    over_vxlan: bool,
) -> Result<MacAddr, DropReason> {
    if request.operation != arp::Operation::Request {
        return Err(DropReason::ArpNotRequest);
    }
    match (topology.endpoint(vni, request.target_ip), over_vxlan) {
        (Some(Endpoint::Local(port)), _) => Ok(port.mac),
        (Some(Endpoint::Remote(remote)), false) => Ok(remote.mac),
        (Some(Endpoint::Gateway | Endpoint::Service(_)), false) => Ok(topology.node.router_mac),
        _ => Err(DropReason::ArpUnknownTarget),
    }
}

/// The payload of the IPv4 packet in `frame` (classified already): header to total length.
fn ipv4_payload(frame: &[u8]) -> &[u8] {
    let datagram = frame.get(ETH_HDR_LEN..).unwrap_or_default();
    match ipv4::Packet::new_checked(datagram) {
        Ok(packet) => {
            let range = packet.header_len()..usize::from(packet.total_len());
            datagram.get(range).unwrap_or_default()
        }
        Err(_) => &[],
    }
}

/// The outer UDP source port of a packet's VXLAN: a hash of its flow, whose ports are those of
/// its conntrack key (the echo identifier twice for ICMP echo, 0 and 0 for other ICMP and
/// protocols without ports).
fn outer_source_port(ip: &Ipv4Summary) -> u16 {
    let (src_port, dst_port) = key_ports(&ip.l4);
    vxlan_source_port(flow_hash(
        ip.src.octets(),
        ip.dst.octets(),
        ip.protocol,
        src_port,
        dst_port,
    ))
}
