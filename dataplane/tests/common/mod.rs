//! A small cluster seen from one node, for the node model's tests: two planes, five local pod
//! interfaces with different security settings, remote pods on two other nodes, and helpers
//! that build the frames they send.
//!
//! ```text
//! node 192.168.0.1 (this one)                    node 192.168.0.2
//!   plane 100 (10.1.0.0/24, gateway 10.1.0.1)      plane 100
//!     WEB    10.1.0.10  if 10  groups [web]          REMOTE_WEB   10.1.0.20 [web]
//!            pair 10.1.0.100/32, pair 10.1.9.0/24      REMOTE_PLAIN 10.1.0.21 []
//!            with MAC VIP_MAC                          REMOTE_TWIN  10.1.0.22 []
//!     DB     10.1.0.11  if 11  groups [db]           plane 200
//!     OPEN   10.1.0.12  if 12  no group                REMOTE_TWIN_200 10.1.0.22 [db]
//!     NOSEC  10.1.0.13  if 13  [db], port security off
//!   plane 200 (10.2.0.0/24, gateway 10.2.0.1)    node 192.168.0.3: no pods
//!     WEB200 10.2.0.10  if 20  groups [web]
//! ```
//!
//! Services on plane 100 ([`services`]): `WEB_SERVICE` (10.96.0.10) TCP 80 -> 8080 and UDP
//! 53 on DB, OPEN and REMOTE_PLAIN; `ALL_PORTS_SERVICE` (10.96.0.11), every port, on DB and
//! REMOTE_PLAIN with client-IP affinity for 600 s; `EMPTY_SERVICE` (10.96.0.12) TCP 80 without
//! backends.
//!
//! Security groups are empty: each test writes the ones it needs ([`with_groups`]).
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::net::Ipv4Addr;

use ctpath_dataplane::model::{
    AddressPair, ConntrackConfig, Direction, Ipv4Prefix, LocalPort, Node, NodeModel, Plane,
    PortRange, Protocol, Remote, RemoteEndpoint, Rule, SecurityGroup, Service, ServicePort,
    ServiceProtocol, Topology,
};
use ctpath_dataplane::testing::FrameBuilder;
use ctpath_dataplane::wire::tcp::Flags;
use ctpath_dataplane::wire::MacAddr;

/// One second, in the model's nanoseconds.
pub const S: u64 = 1_000_000_000;

pub const UNDERLAY_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
pub const UNDERLAY_MAC: [u8; 6] = [0x02, 0, 0xc0, 0xa8, 0, 0x01];
pub const PEER_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
pub const PEER_UNDERLAY_MAC: [u8; 6] = [0x02, 0, 0xc0, 0xa8, 0, 0x02];
pub const OTHER_VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 3);
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
pub const VNI: u32 = 100;
pub const VNI_200: u32 = 200;
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const GATEWAY_200: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const MTU: u16 = 1450;
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 100);
pub const VIP_NET: Ipv4Prefix = Ipv4Prefix::new(Ipv4Addr::new(10, 1, 9, 0), 24);
pub const VIP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x09, 0x09];
pub const WEB_SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const ALL_PORTS_SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
pub const EMPTY_SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 12);
pub const AFFINITY_TIMEOUT_S: u32 = 600;

/// The services of the module doc.
pub fn services() -> Vec<Service> {
    let port = |protocol, port, target_port| ServicePort {
        protocol,
        port,
        target_port,
    };
    vec![
        Service {
            vni: VNI,
            vip: WEB_SERVICE,
            ports: Some(vec![
                port(ServiceProtocol::Tcp, 80, 8080),
                port(ServiceProtocol::Udp, 53, 53),
            ]),
            backends: vec![DB.ip, OPEN.ip, REMOTE_PLAIN.ip],
            affinity_timeout_s: None,
        },
        Service {
            vni: VNI,
            vip: ALL_PORTS_SERVICE,
            ports: None,
            backends: vec![DB.ip, REMOTE_PLAIN.ip],
            affinity_timeout_s: Some(AFFINITY_TIMEOUT_S),
        },
        Service {
            vni: VNI,
            vip: EMPTY_SERVICE,
            ports: Some(vec![port(ServiceProtocol::Tcp, 80, 80)]),
            backends: vec![],
            affinity_timeout_s: None,
        },
    ]
}

/// A pod interface: where it is, and its addresses.
#[derive(Clone, Copy, Debug)]
pub struct Pod {
    /// Host-side veth of a local pod; 0 for a remote one.
    pub ifindex: u32,
    pub vni: u32,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

pub const WEB: Pod = pod(10, VNI, [10, 1, 0, 10]);
pub const DB: Pod = pod(11, VNI, [10, 1, 0, 11]);
pub const OPEN: Pod = pod(12, VNI, [10, 1, 0, 12]);
pub const NOSEC: Pod = pod(13, VNI, [10, 1, 0, 13]);
pub const WEB200: Pod = pod(20, VNI_200, [10, 2, 0, 10]);
pub const REMOTE_WEB: Pod = pod(0, VNI, [10, 1, 0, 20]);
pub const REMOTE_PLAIN: Pod = pod(0, VNI, [10, 1, 0, 21]);
pub const REMOTE_TWIN: Pod = pod(0, VNI, [10, 1, 0, 22]);
pub const REMOTE_TWIN_200: Pod = pod(0, VNI_200, [10, 1, 0, 22]);

const fn pod(ifindex: u32, vni: u32, ip: [u8; 4]) -> Pod {
    let [_, plane, _, host] = ip;
    Pod {
        ifindex,
        vni,
        ip: Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
        mac: [0x02, 0, 0x0a, plane, vni as u8, host],
    }
}

fn local(pod: Pod, groups: &[&str]) -> LocalPort {
    LocalPort {
        ifindex: pod.ifindex,
        vni: pod.vni,
        ip: pod.ip,
        mac: MacAddr(pod.mac),
        mtu: MTU,
        gateway: if pod.vni == VNI { GATEWAY } else { GATEWAY_200 },
        port_security: true,
        security_groups: names(groups),
        allowed_address_pairs: vec![],
    }
}

fn remote(pod: Pod, groups: &[&str]) -> RemoteEndpoint {
    RemoteEndpoint {
        vni: pod.vni,
        ip: pod.ip,
        mac: MacAddr(pod.mac),
        vtep: PEER_VTEP,
        security_groups: names(groups),
        allowed_address_pairs: vec![],
    }
}

pub fn names(groups: &[&str]) -> Vec<String> {
    groups.iter().map(|g| g.to_string()).collect()
}

/// The cluster of the module doc, without security groups.
pub fn topology() -> Topology {
    let mut web = local(WEB, &["web"]);
    web.allowed_address_pairs = vec![
        AddressPair {
            prefix: Ipv4Prefix::host(VIP),
            mac: None,
        },
        AddressPair {
            prefix: VIP_NET,
            mac: Some(MacAddr(VIP_MAC)),
        },
    ];
    let mut nosec = local(NOSEC, &["db"]);
    nosec.port_security = false;
    Topology {
        node: Node {
            underlay_ip: UNDERLAY_IP,
            underlay_mac: MacAddr(UNDERLAY_MAC),
            router_mac: MacAddr(ROUTER_MAC),
        },
        planes: vec![
            Plane {
                vni: VNI,
                mtu: MTU,
                gateway: GATEWAY,
            },
            Plane {
                vni: VNI_200,
                mtu: MTU,
                gateway: GATEWAY_200,
            },
        ],
        ports: vec![
            web,
            local(DB, &["db"]),
            local(OPEN, &[]),
            nosec,
            local(WEB200, &["web"]),
        ],
        remotes: vec![
            remote(REMOTE_WEB, &["web"]),
            remote(REMOTE_PLAIN, &[]),
            remote(REMOTE_TWIN, &[]),
            remote(REMOTE_TWIN_200, &["db"]),
        ],
        vteps: vec![PEER_VTEP, OTHER_VTEP],
        security_groups: vec![],
        conntrack: ConntrackConfig::default(),
        services: services(),
    }
}

/// [`topology`] with these groups.
pub fn with_groups(groups: Vec<SecurityGroup>) -> Topology {
    Topology {
        security_groups: groups,
        ..topology()
    }
}

/// A model of [`topology`] with these groups.
pub fn model(groups: Vec<SecurityGroup>) -> NodeModel {
    NodeModel::new(with_groups(groups))
}

pub fn group(name: &str, rules: Vec<Rule>) -> SecurityGroup {
    SecurityGroup {
        name: name.to_owned(),
        rules,
    }
}

pub fn rule(direction: Direction, protocol: Protocol, remote: Remote) -> Rule {
    Rule {
        direction,
        protocol,
        remote,
    }
}

pub fn egress(protocol: Protocol, remote: Remote) -> Rule {
    rule(Direction::Egress, protocol, remote)
}

pub fn ingress(protocol: Protocol, remote: Remote) -> Rule {
    rule(Direction::Ingress, protocol, remote)
}

pub fn tcp_ports(first: u16, last: u16) -> Protocol {
    Protocol::Tcp {
        ports: Some(PortRange { first, last }),
    }
}

pub fn udp_port(port: u16) -> Protocol {
    Protocol::Udp {
        ports: Some(PortRange::single(port)),
    }
}

pub const ALL_TCP: Protocol = Protocol::Tcp { ports: None };
pub const ALL_UDP: Protocol = Protocol::Udp { ports: None };

pub fn cidr(a: u8, b: u8, c: u8, d: u8, len: u8) -> Remote {
    Remote::Cidr(Ipv4Prefix::new(Ipv4Addr::new(a, b, c, d), len))
}

pub fn in_group(name: &str) -> Remote {
    Remote::Group(name.to_owned())
}

/// UDP from `from` to `to`, as `from` sends it (to the router MAC).
pub fn udp(from: Pod, to: Pod, src_port: u16, dst_port: u16) -> Vec<u8> {
    FrameBuilder::udp(
        from.mac, ROUTER_MAC, from.ip, to.ip, src_port, dst_port, b"data",
    )
}

/// TCP from `from` to `to`.
pub fn tcp(from: Pod, to: Pod, src_port: u16, dst_port: u16, flags: Flags) -> Vec<u8> {
    FrameBuilder::tcp(
        from.mac, ROUTER_MAC, from.ip, to.ip, src_port, dst_port, flags, b"",
    )
}

pub fn ping(from: Pod, to: Pod, ident: u16) -> Vec<u8> {
    FrameBuilder::icmp_echo_request(from.mac, ROUTER_MAC, from.ip, to.ip, ident, 1)
}

pub fn pong(from: Pod, to: Pod, ident: u16) -> Vec<u8> {
    FrameBuilder::icmp_echo_reply(from.mac, ROUTER_MAC, from.ip, to.ip, ident, 1)
}

/// `inner` as it arrives from the peer node over VXLAN on `vni`.
pub fn over_vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    FrameBuilder::vxlan(
        PEER_UNDERLAY_MAC,
        UNDERLAY_MAC,
        PEER_VTEP,
        UNDERLAY_IP,
        50_000,
        vni,
        inner,
    )
}
