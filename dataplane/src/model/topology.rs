//! The input of the node model: one node's view of the cluster, as plain data a test builds
//! from a cluster state (no `control` types: the dataplane crate does not depend on the
//! control plane).
//!
//! Owns: the shape of that data, and the lookups every stage makes in it, each written once:
//! a local port by ifindex, an endpoint by (VNI, address) as the `ENDPOINTS` map answers it,
//! a security group by name, group membership (`remote_group`) as
//! `docs/security-groups.md` defines it, and a service by its virtual IP.
//!
//! A topology is not validated here: the control plane's validator refuses duplicate names,
//! two endpoints at one address, ports on a protocol without ports, and so on. Given such a
//! topology anyway, the model neither panics nor errs; it takes the first match, as each
//! lookup's doc says.
//!
//! Panic contract: nothing here panics.

use std::net::Ipv4Addr;

use ctpath_common::maps::{CtTimeouts, DEFAULT_CONNTRACK_ENTRIES};
use ctpath_common::wire::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

use crate::wire::MacAddr;

/// One node's datapath configuration: what the agent compiles into the maps, in the terms of
/// the cluster state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub node: Node,
    /// The planes this node carries (`NETWORKS`): VXLAN is accepted for these VNIs only.
    pub planes: Vec<Plane>,
    /// Pod interfaces on this node (`POD_PORTS`).
    pub ports: Vec<LocalPort>,
    /// Pod interfaces on other nodes, all planes.
    pub remotes: Vec<RemoteEndpoint>,
    /// Underlay addresses of the nodes VXLAN is accepted from (`VTEPS`).
    pub vteps: Vec<Ipv4Addr>,
    pub security_groups: Vec<SecurityGroup>,
    pub conntrack: ConntrackConfig,
    /// Every service of the cluster, on every plane (services are cluster-wide).
    pub services: Vec<Service>,
}

/// This node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's VTEP address.
    pub underlay_ip: Ipv4Addr,
    /// MAC of the underlay interface: outer source of the VXLAN packets the node answers.
    pub underlay_mac: MacAddr,
    /// The MAC answered for every plane's gateway address.
    pub router_mac: MacAddr,
}

/// A network plane: one VXLAN segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plane {
    pub vni: u32,
    /// Largest IPv4 packet on the plane (checked on frames from the underlay).
    pub mtu: u16,
    /// Answered by ARP with the router MAC; forwards nothing.
    pub gateway: Ipv4Addr,
}

/// A pod interface on this node, behind the host-side veth `ifindex`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPort {
    pub ifindex: u32,
    pub vni: u32,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// The plane's MTU: the largest IPv4 packet the pod may send.
    pub mtu: u16,
    /// The plane's gateway: source of the ICMP errors the node sends the pod.
    pub gateway: Ipv4Addr,
    /// Anti-spoofing and filtering on (`port_security: true`, the default) or both off.
    pub port_security: bool,
    /// Names of the interface's security groups, in the order the state lists them.
    pub security_groups: Vec<String>,
    pub allowed_address_pairs: Vec<AddressPair>,
}

/// A pod interface on another node. Its groups and address pairs matter here because
/// `remote_group` membership includes interfaces on every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub vni: u32,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Underlay address of the interface's node.
    pub vtep: Ipv4Addr,
    pub security_groups: Vec<String>,
    pub allowed_address_pairs: Vec<AddressPair>,
}

/// An extra source an interface may use, and a member prefix of its groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPair {
    pub prefix: Ipv4Prefix,
    /// `None`: the interface's own MAC.
    pub mac: Option<MacAddr>,
}

/// An IPv4 prefix. Bits of `addr` past `len` are ignored; a `len` above 32 means 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Prefix {
    pub const fn new(addr: Ipv4Addr, len: u8) -> Ipv4Prefix {
        Ipv4Prefix { addr, len }
    }

    /// The /32 of one address.
    pub const fn host(addr: Ipv4Addr) -> Ipv4Prefix {
        Ipv4Prefix { addr, len: 32 }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = match self.len {
            0 => 0,
            len => u32::MAX << (32 - u32::from(len.min(32))),
        };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

/// A named set of allow rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityGroup {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// One allow rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub direction: Direction,
    pub protocol: Protocol,
    pub remote: Remote,
}

/// Seen from the interface: `Ingress` towards it, `Egress` from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

/// What a rule matches above IPv4. Ports exist only for TCP and UDP, so a rule with ports on
/// another protocol cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `ports`: the destination port of the connection's first packet; `None`: all ports.
    Tcp {
        ports: Option<PortRange>,
    },
    Udp {
        ports: Option<PortRange>,
    },
    Icmp,
    /// Every IPv4 protocol.
    Any,
}

impl Protocol {
    /// Whether a connection of IP protocol `protocol` whose first packet went to `dst_port`
    /// (TCP and UDP; `None` for others) matches.
    pub fn matches(&self, protocol: u8, dst_port: Option<u16>) -> bool {
        let in_range = |ports: &Option<PortRange>| match (ports, dst_port) {
            (None, _) => true,
            (Some(range), Some(port)) => range.contains(port),
            (Some(_), None) => false,
        };
        match self {
            Protocol::Tcp { ports } => protocol == IPPROTO_TCP && in_range(ports),
            Protocol::Udp { ports } => protocol == IPPROTO_UDP && in_range(ports),
            Protocol::Icmp => protocol == IPPROTO_ICMP,
            Protocol::Any => true,
        }
    }
}

/// Ports `first..=last` (`N` is `N-N`). A range with `first > last` matches nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// The other end of a connection a rule allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    Anywhere,
    /// The other end's address is in the prefix (any plane).
    Cidr(Ipv4Prefix),
    /// The other end's address is a member of the group on the connection's plane
    /// ([`Topology::is_member`]).
    Group(String),
    /// The other end's address is one of `members` (a service's virtual IP and its backends'
    /// addresses, resolved from the state by whoever builds the topology) on plane `vni`.
    Service {
        vni: u32,
        members: Vec<Ipv4Addr>,
    },
}

/// The conntrack table's size and idle timeouts (the state's `conntrack:` section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Seconds per protocol and state; `CtTimeouts::default()` holds the spec's defaults.
    pub timeouts: CtTimeouts,
    /// Entries the table holds, expired ones included until they are reused or collected.
    pub max_entries: u32,
}

impl Default for ConntrackConfig {
    fn default() -> ConntrackConfig {
        ConntrackConfig {
            timeouts: CtTimeouts::default(),
            max_entries: DEFAULT_CONNTRACK_ENTRIES,
        }
    }
}

/// A service: a virtual IP on one plane whose connections are spread over its backends
/// (translated at the source pod's hook: [`super::services`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub vni: u32,
    pub vip: Ipv4Addr,
    /// The ports served; `None`: an IP-level service (`all_ports`), every TCP and UDP port
    /// and ICMP echo, each to the same port of the backend.
    pub ports: Option<Vec<ServicePort>>,
    /// The backends' addresses on the plane, each once.
    pub backends: Vec<Ipv4Addr>,
    /// With client-IP affinity: how long, in seconds, a client's new connections keep going
    /// to the backend of its last one; `None`: each new connection is placed on its own.
    pub affinity_timeout_s: Option<u32>,
}

/// One port of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub protocol: ServiceProtocol,
    /// The port clients connect to on the virtual IP.
    pub port: u16,
    /// The port on the backend.
    pub target_port: u16,
}

/// The transport protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceProtocol {
    Tcp,
    Udp,
}

impl ServiceProtocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            ServiceProtocol::Tcp => IPPROTO_TCP,
            ServiceProtocol::Udp => IPPROTO_UDP,
        }
    }
}

/// What an address on a plane is, as the `ENDPOINTS` map answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    Local(&'a LocalPort),
    Remote(&'a RemoteEndpoint),
    /// The plane's gateway address: answered (ARP) by the node, never forwarded to.
    Gateway,
    /// A service's virtual IP: answered (ARP) by the node; packets to it are translated to
    /// a backend.
    Service(&'a Service),
}

impl LocalPort {
    /// Whether traffic of the interface is filtered: port security on and a group listed.
    pub fn is_filtered(&self) -> bool {
        self.port_security && !self.security_groups.is_empty()
    }

    /// The MAC this interface must send from when using source address `ip`, if it owns `ip`:
    /// its own MAC for its own address; otherwise the MAC of the most specific address pair
    /// holding `ip` (the first listed among equally specific ones), or its own MAC for a pair
    /// without one (docs/security-groups.md, "Anti-spoofing").
    pub fn mac_owning(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        if ip == self.ip {
            return Some(self.mac);
        }
        self.allowed_address_pairs
            .iter()
            .filter(|pair| pair.prefix.contains(ip))
            .fold(None::<&AddressPair>, |best, pair| match best {
                Some(best) if best.prefix.len >= pair.prefix.len => Some(best),
                _ => Some(pair),
            })
            .map(|pair| pair.mac.unwrap_or(self.mac))
    }
}

impl Topology {
    /// The local port behind veth `ifindex` (the first, should two claim it).
    pub fn port(&self, ifindex: u32) -> Option<&LocalPort> {
        self.ports.iter().find(|port| port.ifindex == ifindex)
    }

    /// The plane of VNI `vni`.
    pub fn plane(&self, vni: u32) -> Option<&Plane> {
        self.planes.iter().find(|plane| plane.vni == vni)
    }

    /// Whether VXLAN from `ip` is accepted.
    pub fn is_known_vtep(&self, ip: Ipv4Addr) -> bool {
        self.vteps.contains(&ip)
    }

    /// What `ip` is on plane `vni`: a local port, a remote endpoint, the gateway or a
    /// service's virtual IP, looked up in that order. Address pairs are not endpoints: nothing
    /// is forwarded to them.
    pub fn endpoint(&self, vni: u32, ip: Ipv4Addr) -> Option<Endpoint<'_>> {
        let local = self.ports.iter().find(|p| p.vni == vni && p.ip == ip);
        let remote = || self.remotes.iter().find(|r| r.vni == vni && r.ip == ip);
        let gateway = || self.planes.iter().any(|p| p.vni == vni && p.gateway == ip);
        if let Some(port) = local {
            return Some(Endpoint::Local(port));
        }
        if let Some(remote) = remote() {
            return Some(Endpoint::Remote(remote));
        }
        if gateway() {
            return Some(Endpoint::Gateway);
        }
        self.service(vni, ip).map(Endpoint::Service)
    }

    /// The service with virtual IP `vip` on plane `vni` (the first, should two have it).
    pub fn service(&self, vni: u32, vip: Ipv4Addr) -> Option<&Service> {
        self.services.iter().find(|s| s.vni == vni && s.vip == vip)
    }

    /// The security group named `name` (the first, should two have it).
    pub fn group(&self, name: &str) -> Option<&SecurityGroup> {
        self.security_groups.iter().find(|group| group.name == name)
    }

    /// Whether `ip` is a member address of group `group` on plane `vni`: the `ip` of an
    /// interface on that plane (local or remote, filtered or not) that lists the group, or
    /// inside one of that interface's address pairs.
    pub fn is_member(&self, group: &str, vni: u32, ip: Ipv4Addr) -> bool {
        let local = self
            .ports
            .iter()
            .map(|p| (p.vni, p.ip, &p.security_groups, &p.allowed_address_pairs));
        let remote = self
            .remotes
            .iter()
            .map(|r| (r.vni, r.ip, &r.security_groups, &r.allowed_address_pairs));
        local
            .chain(remote)
            .filter(|(plane, _, groups, _)| *plane == vni && groups.iter().any(|g| g == group))
            .any(|(_, own, _, pairs)| own == ip || pairs.iter().any(|p| p.prefix.contains(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_contain_their_addresses() {
        let net = Ipv4Prefix::new(Ipv4Addr::new(10, 1, 2, 99), 24);
        assert!(net.contains(Ipv4Addr::new(10, 1, 2, 0)));
        assert!(net.contains(Ipv4Addr::new(10, 1, 2, 255)));
        assert!(!net.contains(Ipv4Addr::new(10, 1, 3, 0)));
        let host = Ipv4Prefix::host(Ipv4Addr::new(10, 1, 2, 3));
        assert!(host.contains(Ipv4Addr::new(10, 1, 2, 3)));
        assert!(!host.contains(Ipv4Addr::new(10, 1, 2, 4)));
        assert!(Ipv4Prefix::new(Ipv4Addr::UNSPECIFIED, 0).contains(Ipv4Addr::BROADCAST));
        // Longer than 32: a host route, no overflow.
        assert!(!Ipv4Prefix::new(Ipv4Addr::new(1, 2, 3, 4), 40).contains(Ipv4Addr::new(1, 2, 3, 5)));
    }

    #[test]
    fn the_most_specific_pair_names_the_mac_then_the_first_listed() {
        let pair = |a, len, mac: Option<u8>| AddressPair {
            prefix: Ipv4Prefix::new(Ipv4Addr::new(10, 1, a, 0), len),
            mac: mac.map(|m| MacAddr([2, 0, 0, 0, 0, m])),
        };
        let port = |pairs: Vec<AddressPair>| LocalPort {
            ifindex: 1,
            vni: 1,
            ip: Ipv4Addr::new(10, 1, 0, 5),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            mtu: 1450,
            gateway: Ipv4Addr::new(10, 1, 0, 1),
            port_security: true,
            security_groups: vec![],
            allowed_address_pairs: pairs,
        };
        let mac = |m| Some(MacAddr([2, 0, 0, 0, 0, m]));
        let in_24 = Ipv4Addr::new(10, 1, 9, 7);
        let in_16_only = Ipv4Addr::new(10, 1, 8, 7);
        // Rows: pairs in the order listed, and the MAC owning an address in the /24 and one in
        // the /16 only (0: none).
        let rows = [
            (
                vec![pair(0, 16, Some(0x16)), pair(9, 24, Some(0x24))],
                0x24,
                0x16,
            ),
            (
                vec![pair(9, 24, Some(0x24)), pair(0, 16, Some(0x16))],
                0x24,
                0x16,
            ),
            // Equally specific: the first listed.
            (
                vec![pair(9, 24, Some(0xa1)), pair(9, 24, Some(0xa2))],
                0xa1,
                0,
            ),
            (vec![pair(9, 24, None), pair(0, 16, Some(0x16))], 0x01, 0x16),
        ];
        for (pairs, at_24, at_16) in rows {
            let port = port(pairs);
            assert_eq!(port.mac_owning(in_24), mac(at_24), "{port:?}");
            let expected_16 = (at_16 != 0).then_some(MacAddr([2, 0, 0, 0, 0, at_16]));
            assert_eq!(port.mac_owning(in_16_only), expected_16, "{port:?}");
            // The interface's own address keeps its own MAC inside the /16.
            assert_eq!(port.mac_owning(port.ip), Some(port.mac));
        }
    }

    #[test]
    fn protocols_and_port_ranges() {
        let dns = Protocol::Udp {
            ports: Some(PortRange::single(53)),
        };
        assert!(dns.matches(IPPROTO_UDP, Some(53)));
        assert!(!dns.matches(IPPROTO_UDP, Some(54)));
        assert!(!dns.matches(IPPROTO_TCP, Some(53)));
        let high = Protocol::Tcp {
            ports: Some(PortRange {
                first: 8000,
                last: 8080,
            }),
        };
        assert!(high.matches(IPPROTO_TCP, Some(8000)));
        assert!(high.matches(IPPROTO_TCP, Some(8080)));
        assert!(!high.matches(IPPROTO_TCP, Some(7999)));
        assert!(!high.matches(IPPROTO_TCP, Some(8081)));
        assert!(Protocol::Tcp { ports: None }.matches(IPPROTO_TCP, Some(1)));
        assert!(Protocol::Icmp.matches(IPPROTO_ICMP, None));
        assert!(!Protocol::Icmp.matches(IPPROTO_UDP, Some(1)));
        assert!(Protocol::Any.matches(47, None));
        let reversed = PortRange { first: 10, last: 9 };
        assert!(!reversed.contains(9) && !reversed.contains(10));
    }
}
