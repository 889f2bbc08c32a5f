//! The typed form of cluster-state schema version 1, exactly as the contract file
//! `shared/contract/cluster-state.example.yaml` writes it.
//!
//! Owns: the shape of the document (which fields exist, which are optional and their defaults).
//! Every struct denies unknown fields, so a typo is an error rather than a silently ignored
//! setting. `Serialize` writes the same shape back (absent optional fields left out), for
//! `ctpath state get` and the values stored in etcd (`crate::store`). Cross-references and value ranges are checked by `validate`, not here.
//!
//! The optional `services:` section (and the pods' `labels`, which its selectors match) is
//! compiled by `crate::services`, for every datapath.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::values::{
    deserialize_address_or_cidr, serialize_address_or_cidr, MacAddr, PortRange, SchemaVersion,
};

/// The whole cluster as the agent on every node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterState {
    pub version: SchemaVersion,
    pub networks: Vec<Network>,
    pub nodes: Vec<Node>,
    pub security_groups: Vec<SecurityGroup>,
    pub pods: Vec<Pod>,
    /// Connection tracking: table size and idle timeouts (docs/security-groups.md).
    #[serde(default)]
    pub conntrack: ConntrackSettings,
    /// Virtual addresses whose connections go to a set of pod interfaces (`crate::services`).
    /// Optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
}

/// The optional `conntrack:` section. Timeouts are idle times in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConntrackSettings {
    /// Connections tracked at once per node; new ones beyond are dropped (`conntrack_full`).
    pub max_entries: u32,
    pub tcp_syn: u32,
    pub tcp_established: u32,
    pub tcp_closing: u32,
    pub udp: u32,
    pub icmp: u32,
    pub other: u32,
}

impl Default for ConntrackSettings {
    fn default() -> Self {
        let timeouts = ctpath_common::maps::CtTimeouts::default();
        ConntrackSettings {
            max_entries: ctpath_common::maps::DEFAULT_CONNTRACK_ENTRIES,
            tcp_syn: timeouts.tcp_syn,
            tcp_established: timeouts.tcp_established,
            tcp_closing: timeouts.tcp_closing,
            udp: timeouts.udp,
            icmp: timeouts.icmp,
            other: timeouts.other,
        }
    }
}

impl ConntrackSettings {
    /// The timeouts as the datapath reads them.
    pub fn timeouts(&self) -> ctpath_common::maps::CtTimeouts {
        ctpath_common::maps::CtTimeouts {
            tcp_syn: self.tcp_syn,
            tcp_established: self.tcp_established,
            tcp_closing: self.tcp_closing,
            udp: self.udp,
            icmp: self.icmp,
            other: self.other,
        }
    }
}

/// A network plane: one VXLAN segment with its own address space, isolated from the others.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    /// VXLAN network identifier, 1 to 2^24 - 1.
    pub vni: u32,
    pub cidr: Ipv4Net,
    /// Answered by ARP on every node; pods may route through it.
    pub gateway: Ipv4Addr,
    /// Pod-side MTU; absent means the agent derives it (underlay MTU minus 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Forwarded by the AF_XDP forwarder instead of the XDP programs alone. Implies
    /// `datapath: xdp` (the forwarder's sockets are fed by XDP at the pod's veth).
    #[serde(default)]
    pub fast_path: bool,
    /// The hook at the pods' veths: `tc` (the default; pods keep the kernel's offloads, GSO
    /// packets stay whole) or `xdp`. Absent: `tc`, or `xdp` with `fast_path: true`; giving
    /// `tc` together with `fast_path: true` is an error. Read it through
    /// [`Network::datapath`].
    #[serde(default, rename = "datapath", skip_serializing_if = "Option::is_none")]
    pub datapath_given: Option<Datapath>,
}

/// Which program carries a plane at its pods' veths (`networks[].datapath`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Datapath {
    /// `from_pod_tc`, a tcx ingress program; on the underlay XDP hands the plane's VXLAN to
    /// `from_underlay_tc`, which delivers with `bpf_redirect_peer`.
    Tc,
    /// `from_pod` and `from_underlay`, XDP programs: the pod's side of its veth needs GRO on
    /// and TX checksum offload off, which the agent sets (`crate::pod_side`).
    Xdp,
}

impl Network {
    /// The plane's datapath: as given, else `xdp` for a fast-path plane and `tc` otherwise.
    pub fn datapath(&self) -> Datapath {
        match (self.datapath_given, self.fast_path) {
            (Some(datapath), _) => datapath,
            (None, true) => Datapath::Xdp,
            (None, false) => Datapath::Tc,
        }
    }
}

/// A Kubernetes node running the ctpath agent; its underlay address is its VTEP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    /// The interface, inside the node, that carries VXLAN traffic.
    pub underlay_interface: String,
    pub underlay_ip: Ipv4Addr,
    /// Per network (by name): the block of the network's CIDR from which this node's pods get
    /// their addresses (the CNI plugin `ctpath-cni` hands it to host-local as the node's range).
    /// Optional; a node without an entry for a network has no pods addressed by the plugin on
    /// it. Each block lies inside its network, holds neither its gateway nor another node's
    /// block of the same network.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_ranges: BTreeMap<String, Ipv4Net>,
}

/// A named set of allow rules; an interface with no group listed is not filtered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// One allow rule of a security group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub direction: Direction,
    pub protocol: Protocol,
    /// tcp and udp only; absent means all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortRange>,
    /// The peer is any interface in this group. At most one of `remote_group`, `remote_cidr`
    /// and `remote_service`; none means anywhere. Read the remote side through
    /// [`Rule::remote`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_cidr: Option<Ipv4Net>,
    /// The peer is this service's virtual IP or one of its backends, on the service's plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_service: Option<String>,
}

/// The other end of a connection a rule allows, as [`Rule::remote`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteSide<'a> {
    Anywhere,
    /// A member address of the group, on the connection's plane.
    Group(&'a str),
    /// An address in the prefix, on any plane.
    Cidr(Ipv4Net),
    /// The service's virtual IP or a backend's address, on the service's plane.
    Service(&'a str),
}

impl Rule {
    /// The rule's remote side. A valid state sets at most one of the three fields; should a
    /// rule set more, `remote_group` wins over `remote_cidr`, which wins over `remote_service`.
    pub fn remote(&self) -> RemoteSide<'_> {
        match (&self.remote_group, &self.remote_cidr, &self.remote_service) {
            (Some(group), _, _) => RemoteSide::Group(group),
            (None, Some(cidr), _) => RemoteSide::Cidr(*cidr),
            (None, None, Some(service)) => RemoteSide::Service(service),
            (None, None, None) => RemoteSide::Anywhere,
        }
    }
}

/// Traffic direction, seen from the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

/// The IP protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl Protocol {
    /// The name used in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Any => "any",
        }
    }
}

/// A pod and its interfaces, one per network plane it is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The node the pod runs on.
    pub node: String,
    /// Free-form `key: value` pairs that services' selectors match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub interfaces: Vec<PodInterface>,
}

fn default_namespace() -> String {
    "default".to_owned()
}

/// One interface of a pod: a veth pair whose host side is `host_interface` on the pod's node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodInterface {
    pub network: String,
    pub host_interface: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Anti-spoofing: the pod may send only from its own (or an allowed pair's) IP and MAC.
    #[serde(default = "port_security_default")]
    pub port_security: bool,
    #[serde(default)]
    pub allowed_address_pairs: Vec<AddressPair>,
}

fn port_security_default() -> bool {
    true
}

/// An extra source the pod may use besides its own IP and MAC (a VIP, a VRRP address).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPair {
    /// Written as an address (`10.244.1.100`, a /32) or a CIDR. Any prefix is accepted, inside
    /// the interface's network or not, as OpenStack does.
    #[serde(
        deserialize_with = "deserialize_address_or_cidr",
        serialize_with = "serialize_address_or_cidr"
    )]
    pub ip: Ipv4Net,
    /// Absent means the interface's own MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
}

/// A service: a virtual IP on one network plane whose connections are spread over a set of
/// pod interfaces on that plane (its backends).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unique in the cluster.
    pub name: String,
    /// The plane the service is reached on and its backends are on.
    pub network: String,
    /// The virtual IP, inside the plane's CIDR or outside it.
    pub vip: Ipv4Addr,
    /// The ports served. Exactly one of `ports` (a non-empty list) and `all_ports: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ServicePort>>,
    /// An IP-level service: every port and protocol, translated to the backend's address only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_ports: bool,
    /// The backends are the pods whose labels hold every one of these pairs. Exactly one of
    /// `selector` (non-empty) and `backends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
    /// The backends are these pods, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<BackendRef>>,
    #[serde(default)]
    pub session_affinity: SessionAffinity,
    /// With `session_affinity: client_ip` only: how long a client stays with its backend,
    /// in seconds. Read it through [`Service::affinity_timeout`].
    #[serde(
        default,
        rename = "affinity_timeout_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub affinity_timeout_given: Option<u32>,
}

/// The affinity timeout when `affinity_timeout_seconds` is not given: three hours, as
/// Kubernetes' `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10_800;

impl Service {
    /// How long, in seconds, a client stays with its backend: none without client-IP affinity,
    /// else as given or [`DEFAULT_AFFINITY_TIMEOUT_S`].
    pub fn affinity_timeout(&self) -> Option<u32> {
        match self.session_affinity {
            SessionAffinity::None => None,
            SessionAffinity::ClientIp => Some(
                self.affinity_timeout_given
                    .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_S),
            ),
        }
    }
}

/// One port of a service (`services[].ports[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    /// The port clients connect to on the VIP.
    pub port: u16,
    pub protocol: ServiceProtocol,
    /// The port on the backend; absent means `port`. Read it through
    /// [`ServicePort::target_port`].
    #[serde(
        default,
        rename = "target_port",
        skip_serializing_if = "Option::is_none"
    )]
    pub target_port_given: Option<u16>,
}

impl ServicePort {
    /// The backend's port: as given, else the service port.
    pub fn target_port(&self) -> u16 {
        self.target_port_given.unwrap_or(self.port)
    }
}

/// The transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceProtocol {
    Tcp,
    Udp,
}

impl ServiceProtocol {
    /// The name used in the schema.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceProtocol::Tcp => "tcp",
            ServiceProtocol::Udp => "udp",
        }
    }
}

/// A backend named in a service's `backends` list: the pod's interface on the service's plane.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendRef {
    pub pod: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

/// Whether a client's connections keep going to the same backend (`services[].session_affinity`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionAffinity {
    /// Each new connection is placed on its own.
    #[default]
    None,
    /// A client's new connections go to the backend its last one went to, until it has been
    /// idle for the affinity timeout.
    ClientIp,
}
