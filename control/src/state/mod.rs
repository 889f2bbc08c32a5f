//! The cluster state: the contract between whoever describes the cluster (a file today, etcd or
//! the Kubernetes API later) and the agent on every node. Schema version 1 is defined by
//! `shared/contract/cluster-state.example.yaml`, plus the optional `conntrack:` and `services:`
//! sections and pods' `labels` (`control/examples/services.yaml`); this module is its only
//! reader.
//!
//! Owns: loading a state from YAML (`ClusterState::from_yaml_str`, `ClusterState::from_path`),
//! the typed model (`model`, `values`), the semantic rules a state must satisfy (`validate`),
//! and the few look-ups the agent needs (among them a service's backends,
//! [`ClusterState::service_backends`]). A `ClusterState` returned by a loader has passed every
//! rule. Errors name the YAML path of the offending value, e.g.
//! `pods[3].interfaces[0].ip: 10.9.0.5 is outside network std (10.244.0.0/16)`.
//!
//! Loading never panics, whatever the input; `ClusterState::to_yaml` writes a state back. The schema is IPv4-only for now.

#![deny(unsafe_code)]

mod model;
mod validate;
mod values;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;
use thiserror::Error;

pub use model::{
    AddressPair, BackendRef, ClusterState, ConntrackSettings, Datapath, Direction, Network, Node,
    Pod, PodInterface, Protocol, RemoteSide, Rule, SecurityGroup, Service, ServicePort,
    ServiceProtocol, SessionAffinity, DEFAULT_AFFINITY_TIMEOUT_S,
};
pub use values::{MacAddr, PortRange, SchemaVersion, ValueError};

/// Why a cluster state could not be loaded.
#[derive(Debug, Error)]
pub enum StateError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML of schema version 1: bad syntax, an unknown or missing field, a value
    /// of the wrong type or form. `path` is the YAML path (`pods[0].interfaces[1].ip`), or `.`
    /// for the document itself; `message` ends with the line and column when known.
    #[error("{}", format_parse_error(path, message))]
    Parse { path: String, message: String },
    /// The document parsed but breaks semantic rules; every broken rule is listed.
    #[error("{}", format_violations(.0))]
    Invalid(Vec<Violation>),
}

/// One broken rule of a parsed state, at a YAML path such as `pods[3].interfaces[0].ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The path of the document itself.
const ROOT_PATH: &str = ".";

fn format_parse_error(path: &str, message: &str) -> String {
    if path == ROOT_PATH {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

fn format_violations(violations: &[Violation]) -> String {
    let listed: Vec<String> = violations.iter().map(Violation::to_string).collect();
    format!("invalid cluster state: {}", listed.join("; "))
}

impl ClusterState {
    /// Parses and validates a YAML document of schema version 1.
    pub fn from_yaml_str(yaml: &str) -> Result<ClusterState, StateError> {
        let state = parse(yaml)?;
        state.validate()?;
        Ok(state)
    }

    /// Reads, parses and validates a YAML file of schema version 1.
    pub fn from_path(path: &Path) -> Result<ClusterState, StateError> {
        let yaml = std::fs::read_to_string(path).map_err(|source| StateError::Io {
            path: path.to_owned(),
            source,
        })?;
        ClusterState::from_yaml_str(&yaml)
    }

    /// Checks every semantic rule; `Err(StateError::Invalid)` lists all that are broken, in
    /// document order. The loaders call this; a state built another way should too.
    pub fn validate(&self) -> Result<(), StateError> {
        let violations = self.violations();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(StateError::Invalid(violations))
        }
    }

    /// Every broken semantic rule, in document order (none: the state is valid).
    pub fn violations(&self) -> Vec<Violation> {
        validate::violations(self)
    }

    /// The network plane called `name`.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|network| network.name == name)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|node| node.name == name)
    }

    /// The security group called `name`.
    pub fn security_group(&self, name: &str) -> Option<&SecurityGroup> {
        self.security_groups.iter().find(|group| group.name == name)
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|service| service.name == name)
    }

    /// The addresses a rule naming `service` as its remote side (`remote_service`) matches,
    /// on the service's network: its VIP, then its backends' addresses
    /// ([`ClusterState::service_backends`]).
    pub fn service_members(&self, service: &Service) -> Vec<Ipv4Addr> {
        std::iter::once(service.vip)
            .chain(
                self.service_backends(service)
                    .into_iter()
                    .map(|(_, interface)| interface.ip),
            )
            .collect()
    }

    /// Every interface of every pod scheduled on `node`, with its pod, in document order.
    pub fn interfaces_on_node<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a Pod, &'a PodInterface)> + 'a {
        self.pods
            .iter()
            .filter(move |pod| pod.node == node)
            .flat_map(|pod| pod.interfaces.iter().map(move |interface| (pod, interface)))
    }

    /// The backends of `service`: the interfaces on its network of the pods its selector
    /// matches (every pair of the selector among the pod's labels) or its `backends` list
    /// names, ordered by namespace and pod name whatever the order of the document or the
    /// list. A pod matched or listed without an interface on the network is left out (in a
    /// valid state a listed pod has one).
    pub fn service_backends<'a>(&'a self, service: &Service) -> Vec<(&'a Pod, &'a PodInterface)> {
        let chosen = |pod: &Pod| match (&service.selector, &service.backends) {
            (Some(selector), _) => selector
                .iter()
                .all(|(key, value)| pod.labels.get(key) == Some(value)),
            (None, Some(listed)) => listed
                .iter()
                .any(|backend| backend.pod == pod.name && backend.namespace == pod.namespace),
            (None, None) => false,
        };
        let mut backends: Vec<_> = self
            .pods
            .iter()
            .filter(|pod| chosen(pod))
            .filter_map(|pod| {
                let interface = pod
                    .interfaces
                    .iter()
                    .find(|interface| interface.network == service.network)?;
                Some((pod, interface))
            })
            .collect();
        backends.sort_by(|(a, _), (b, _)| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        backends
    }

    /// The state as a YAML document of schema version 1, which loads back as the same state.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a cluster state is plain data and always serializes")
    }

    /// The number of pod interfaces in the cluster.
    pub fn interface_count(&self) -> usize {
        self.pods.iter().map(|pod| pod.interfaces.len()).sum()
    }
}

/// Parses without the semantic checks.
fn parse(yaml: &str) -> Result<ClusterState, StateError> {
    let deserializer = serde_norway::Deserializer::from_str(yaml);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = yaml_path(error.path());
        let message = error.into_inner().to_string();
        StateError::Parse {
            message: strip_yaml_path(&message, &path).to_owned(),
            path,
        }
    })
}

/// The path as `pods[0].interfaces[1].ip`, cut before a segment `serde_path_to_error` could not
/// name (its `?`, e.g. a key cut short by a syntax error); `.` for the document itself.
pub(crate) fn yaml_path(path: &serde_path_to_error::Path) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    if text.is_empty() {
        ROOT_PATH.to_owned()
    } else {
        text
    }
}

/// serde_norway starts its messages with its own, coarser path (`networks[1]: unknown field
/// ...` where `serde_path_to_error` says `networks[1].fast_paht`); drop it, the finer path is
/// shown instead. It is recognised as a leading `P: ` where `P` is `path` or an ancestor of it.
fn strip_yaml_path<'m>(message: &'m str, path: &str) -> &'m str {
    let Some((prefix, rest)) = message.split_once(": ") else {
        return message;
    };
    let is_ancestor = path
        .strip_prefix(prefix)
        .is_some_and(|tail| tail.is_empty() || tail.starts_with(['.', '[']));
    if is_ancestor {
        rest
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    const CONTRACT_PATH: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/contract/cluster-state.example.yaml"
    );
    const TWO_NODE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/two-node.yaml");
    const SERVICES_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/services.yaml");

    fn services_example() -> ClusterState {
        ClusterState::from_path(Path::new(SERVICES_PATH)).unwrap()
    }

    /// `namespace/name` of each backend of the service called `name`.
    fn backend_names(state: &ClusterState, name: &str) -> Vec<String> {
        let service = state.services.iter().find(|s| s.name == name).unwrap();
        state
            .service_backends(service)
            .iter()
            .map(|(pod, interface)| {
                assert_eq!(interface.network, service.network);
                format!("{}/{}", pod.namespace, pod.name)
            })
            .collect()
    }

    /// A valid document to break one line at a time.
    const SMALL: &str = "\
version: 1
networks:
  - name: std
    vni: 100
    cidr: 10.244.0.0/16
    gateway: 10.244.0.1
nodes:
  - name: node-a
    underlay_interface: eth0
    underlay_ip: 192.168.77.1
security_groups:
  - name: web
    rules:
      - direction: ingress
        protocol: tcp
        ports: \"80\"
pods:
  - name: web-0
    node: node-a
    interfaces:
      - network: std
        host_interface: vweb0
        ip: 10.244.1.2
        mac: \"02:00:0a:f4:01:02\"
        security_groups: [web]
        allowed_address_pairs:
          - ip: 10.244.1.100
";

    /// `SMALL` with the first occurrence of `from` replaced by `to`.
    fn small_with(from: &str, to: &str) -> String {
        assert!(SMALL.contains(from), "{from:?} is not in SMALL");
        SMALL.replacen(from, to, 1)
    }

    /// The `path: message` text of the parse error `yaml` must produce.
    fn parse_error(yaml: &str) -> String {
        match ClusterState::from_yaml_str(yaml) {
            Err(error @ StateError::Parse { .. }) => error.to_string(),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn contract_example_loads() {
        let state = ClusterState::from_path(Path::new(CONTRACT_PATH)).unwrap();
        assert_eq!(state.version, SchemaVersion::V1);
        let names = |items: Vec<&str>| items.join(",");
        assert_eq!(
            names(state.networks.iter().map(|n| n.name.as_str()).collect()),
            "std,media"
        );
        assert_eq!(state.networks[0].mtu, Some(1450));
        assert!(!state.networks[0].fast_path);
        assert_eq!(state.networks[1].mtu, None);
        assert!(state.networks[1].fast_path);
        assert_eq!(state.nodes[1].underlay_ip, Ipv4Addr::new(192, 168, 77, 2));

        let upf = &state.security_groups[0];
        assert_eq!(upf.rules[0].direction, Direction::Ingress);
        assert_eq!(upf.rules[0].protocol, Protocol::Udp);
        assert_eq!(upf.rules[0].ports, Some("2152".parse().unwrap()));
        assert_eq!(upf.rules[0].remote_group.as_deref(), Some("smf"));
        assert_eq!(upf.rules[1].protocol, Protocol::Any);
        assert_eq!(upf.rules[1].ports, None);
        assert_eq!(upf.rules[0].remote(), RemoteSide::Group("smf"));
        assert_eq!(upf.rules[1].remote(), RemoteSide::Anywhere);

        let upf_std = &state.pods[0].interfaces[0];
        assert_eq!(upf_std.mac, MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02]));
        assert_eq!(upf_std.security_groups, ["upf"]);
        assert!(upf_std.port_security);
        let pair = &upf_std.allowed_address_pairs[0];
        assert_eq!(pair.ip, "10.244.1.100/32".parse().unwrap());
        assert_eq!(pair.mac, Some("02:00:0a:f4:01:64".parse().unwrap()));

        let upf_media = &state.pods[0].interfaces[1];
        assert!(upf_media.security_groups.is_empty());
        assert!(upf_media.port_security, "port_security defaults to true");
        assert!(upf_media.allowed_address_pairs.is_empty());
        assert_eq!(state.interface_count(), 3);
    }

    #[test]
    fn two_node_example_loads() {
        let state = ClusterState::from_path(Path::new(TWO_NODE_PATH)).unwrap();
        assert_eq!(
            (
                state.networks.len(),
                state.nodes.len(),
                state.security_groups.len(),
                state.pods.len(),
                state.interface_count()
            ),
            (3, 2, 3, 4, 10)
        );
        let media = state.network("media").unwrap();
        assert_eq!((media.vni, media.fast_path), (300, true));
        let probe = state.pods.iter().find(|pod| pod.name == "probe-0").unwrap();
        assert_eq!(probe.namespace, "default");
        assert!(!probe.interfaces[1].port_security);
    }

    #[test]
    fn services_example_loads_with_its_defaults() {
        let state = services_example();
        assert_eq!(state.pods[0].labels["app"], "web");
        assert!(state.pods[3].labels.is_empty());
        let web = &state.services[0];
        assert_eq!(web.vip, Ipv4Addr::new(10, 96, 0, 10));
        let ports = web.ports.as_ref().unwrap();
        assert_eq!(ports[0].protocol, ServiceProtocol::Tcp);
        assert_eq!((ports[0].port, ports[0].target_port()), (80, 8080));
        assert_eq!(
            (ports[1].port, ports[1].target_port()),
            (443, 443),
            "target_port defaults to port"
        );
        assert_eq!(web.session_affinity, SessionAffinity::ClientIp);
        assert_eq!(web.affinity_timeout(), Some(600));
        let mut default_timeout = web.clone();
        default_timeout.affinity_timeout_given = None;
        assert_eq!(
            default_timeout.affinity_timeout(),
            Some(DEFAULT_AFFINITY_TIMEOUT_S)
        );

        let dns = &state.services[1];
        assert!(dns.all_ports && dns.ports.is_none());
        assert_eq!(dns.session_affinity, SessionAffinity::None, "the default");
        assert_eq!(dns.affinity_timeout(), None);
        assert_eq!(dns.backends.as_ref().unwrap()[0].namespace, "infra");
        // Written back, it loads as the same state.
        assert_eq!(
            ClusterState::from_yaml_str(&state.to_yaml()).unwrap(),
            state
        );
    }

    #[test]
    fn a_service_s_members_are_its_vip_then_its_backends() {
        let state = services_example();
        let members = |name| state.service_members(state.service(name).unwrap());
        let ips = |list: &[&str]| -> Vec<Ipv4Addr> {
            list.iter().map(|ip| ip.parse().unwrap()).collect()
        };
        assert_eq!(
            members("web"),
            ips(&["10.96.0.10", "10.244.1.2", "10.244.2.2"])
        );
        assert_eq!(members("dns"), ips(&["10.244.0.53", "10.244.1.3"]));
        assert!(state.service("www").is_none());
        let rules = &state.security_groups[0].rules;
        assert_eq!(rules[0].remote(), RemoteSide::Service("web"));
        assert_eq!(rules[2].remote(), RemoteSide::Service("dns"));
    }

    #[test]
    fn a_state_without_services_writes_no_services_section() {
        let state = ClusterState::from_yaml_str(SMALL).unwrap();
        assert!(state.services.is_empty());
        assert!(!state.to_yaml().contains("services"));
        assert!(!state.to_yaml().contains("labels"));
    }

    #[test]
    fn service_backends_by_selector_and_by_list() {
        let state = services_example();
        assert_eq!(
            backend_names(&state, "web"),
            ["default/web-0", "default/web-1"]
        );
        assert_eq!(backend_names(&state, "dns"), ["infra/dns-0"]);
    }

    #[test]
    fn service_backends_match_every_label_of_the_selector() {
        let mut state = services_example();
        let selector = state.services[0].selector.as_mut().unwrap();
        selector.insert("tier".to_owned(), "front".to_owned());
        state.pods[1]
            .labels
            .insert("tier".to_owned(), "back".to_owned());
        assert_eq!(backend_names(&state, "web"), ["default/web-0"]);
        state.pods[3].labels = state.pods[0].labels.clone();
        assert_eq!(
            backend_names(&state, "web"),
            ["default/client-0", "default/web-0"]
        );
    }

    #[test]
    fn service_backends_are_in_the_same_order_whatever_the_documents_order() {
        let mut state = services_example();
        state.pods.reverse();
        assert_eq!(
            backend_names(&state, "web"),
            ["default/web-0", "default/web-1"]
        );
        state.services[1].backends = Some(vec![
            BackendRef {
                pod: "web-1".to_owned(),
                namespace: "default".to_owned(),
            },
            BackendRef {
                pod: "dns-0".to_owned(),
                namespace: "infra".to_owned(),
            },
        ]);
        assert_eq!(
            backend_names(&state, "dns"),
            ["default/web-1", "infra/dns-0"]
        );
    }

    #[test]
    fn service_backends_leave_out_pods_without_an_interface_on_its_network() {
        let mut state = services_example();
        state.pods[1].interfaces[0].network = "other".to_owned();
        assert_eq!(backend_names(&state, "web"), ["default/web-0"]);
    }

    #[test]
    fn service_fields_are_checked_by_the_parser() {
        let example = std::fs::read_to_string(SERVICES_PATH).unwrap();
        let broken = example.replacen("session_affinity: client_ip", "session_affinity: sticky", 1);
        assert!(parse_error(&broken).starts_with(
            "services[0].session_affinity: unknown variant `sticky`, expected `none` or \
             `client_ip`"
        ));
        let broken = example.replacen(
            "protocol: tcp, target_port",
            "protocol: icmp, target_port",
            1,
        );
        assert!(parse_error(&broken).starts_with(
            "services[0].ports[0].protocol: unknown variant `icmp`, expected `tcp` or `udp`"
        ));
        let broken = example.replacen("port: 443", "port: 65536", 1);
        assert!(parse_error(&broken).starts_with(
            "services[0].ports[1].port: invalid value: integer `65536`, expected u16"
        ));
        let broken = example.replacen("    vip: 10.96.0.10", "    cluster_ip: 10.96.0.10", 1);
        assert!(parse_error(&broken)
            .starts_with("services[0].cluster_ip: unknown field `cluster_ip`, expected one of"));
    }

    #[test]
    fn namespace_defaults_to_default() {
        let state = ClusterState::from_yaml_str(SMALL).unwrap();
        assert_eq!(state.pods[0].namespace, "default");
    }

    #[test]
    fn lookups_by_name() {
        let state = ClusterState::from_path(Path::new(CONTRACT_PATH)).unwrap();
        assert_eq!(state.network("media").unwrap().vni, 300);
        assert!(state.network("control").is_none());
        assert_eq!(
            state.node("node-b").unwrap().underlay_ip,
            Ipv4Addr::new(192, 168, 77, 2)
        );
        assert!(state.node("node-c").is_none());
        assert_eq!(state.security_group("smf").unwrap().rules.len(), 1);
        assert!(state.security_group("amf").is_none());
    }

    #[test]
    fn interfaces_on_node_lists_its_pods_interfaces_in_order() {
        let state = ClusterState::from_path(Path::new(TWO_NODE_PATH)).unwrap();
        let on_node_b: Vec<String> = state
            .interfaces_on_node("node-b")
            .map(|(pod, interface)| format!("{}:{}", pod.name, interface.host_interface))
            .collect();
        assert_eq!(
            on_node_b,
            [
                "upf-1:vupf1s",
                "upf-1:vupf1m",
                "probe-0:vprobe0s",
                "probe-0:vprobe0m"
            ]
        );
        assert_eq!(state.interfaces_on_node("node-c").count(), 0);
    }

    #[test]
    fn version_other_than_1_is_rejected() {
        assert_eq!(
            parse_error(&small_with("version: 1", "version: 2")),
            "version: unsupported schema version 2: this ctpath reads version 1 at line 1 column 10"
        );
    }

    #[test]
    fn missing_field_names_its_parent() {
        assert_eq!(
            parse_error(&small_with("    underlay_ip: 192.168.77.1\n", "")),
            "nodes[0]: missing field `underlay_ip` at line 8 column 5"
        );
    }

    #[test]
    fn datapath_is_tc_or_xdp() {
        let tc = ClusterState::from_yaml_str(&small_with(
            "    gateway:",
            "    datapath: xdp\n    gateway:",
        ));
        assert_eq!(tc.unwrap().networks[0].datapath(), Datapath::Xdp);
        assert!(parse_error(&small_with(
            "    gateway:",
            "    datapath: ebpf\n    gateway:"
        ))
        .starts_with("networks[0].datapath: unknown variant `ebpf`, expected `tc` or `xdp`"));
    }

    #[test]
    fn unknown_field_is_rejected_with_its_path() {
        assert_eq!(
            parse_error(&small_with("    gateway:", "    gatway:")),
            "networks[0].gatway: unknown field `gatway`, expected one of `name`, `vni`, `cidr`, \
             `gateway`, `mtu`, `fast_path`, `datapath` at line 6 column 5"
        );
    }

    #[test]
    fn unknown_top_level_section_is_rejected() {
        assert_eq!(
            parse_error(&format!("{SMALL}firewall:\n  udp_timeout: 30\n")),
            "firewall: unknown field `firewall`, expected one of `version`, `networks`, \
             `nodes`, `security_groups`, `pods`, `conntrack`, `services` at line 28 column 1"
        );
    }

    #[test]
    fn wrong_type_is_rejected_with_its_path() {
        assert_eq!(
            parse_error(&small_with("vni: 100", "vni: hundred")),
            "networks[0].vni: invalid type: string \"hundred\", expected u32 at line 4 column 10"
        );
    }

    #[test]
    fn bad_ip_is_rejected_with_its_path() {
        assert_eq!(
            parse_error(&small_with("ip: 10.244.1.2", "ip: 10.244.1")),
            "pods[0].interfaces[0].ip: invalid IPv4 address syntax at line 23 column 13"
        );
    }

    #[test]
    fn ipv6_address_is_rejected() {
        assert_eq!(
            parse_error(&small_with("gateway: 10.244.0.1", "gateway: fd00::1")),
            "networks[0].gateway: invalid IPv4 address syntax at line 6 column 14"
        );
    }

    #[test]
    fn bad_cidr_is_rejected_with_its_path() {
        assert_eq!(
            parse_error(&small_with("cidr: 10.244.0.0/16", "cidr: 10.244.0.0/33")),
            "networks[0].cidr: invalid IP address syntax at line 5 column 11"
        );
    }

    #[test]
    fn bad_mac_is_rejected_with_its_path() {
        assert_eq!(
            parse_error(&small_with("\"02:00:0a:f4:01:02\"", "\"02:00:0a:f4:01\"")),
            "pods[0].interfaces[0].mac: invalid MAC address \"02:00:0a:f4:01\": expected six hex \
             octets like \"02:00:0a:f4:01:02\" at line 24 column 14"
        );
    }

    #[test]
    fn bad_allowed_address_pair_ip_is_rejected_with_its_path() {
        assert_eq!(
            parse_error(&small_with("- ip: 10.244.1.100", "- ip: 10.244.1.100/40")),
            "pods[0].interfaces[0].allowed_address_pairs[0].ip: invalid IPv4 address or CIDR \
             \"10.244.1.100/40\" at line 27 column 17"
        );
    }

    #[test]
    fn port_range_syntax_error() {
        assert_eq!(
            parse_error(&small_with("ports: \"80\"", "ports: \"http\"")),
            "security_groups[0].rules[0].ports: invalid port range \"http\": expected \"N\" or \
             \"N-M\" at line 16 column 16"
        );
    }

    #[test]
    fn port_zero_is_rejected() {
        assert_eq!(
            parse_error(&small_with("ports: \"80\"", "ports: \"0-80\"")),
            "security_groups[0].rules[0].ports: invalid port range \"0-80\": ports are 1 to 65535 \
             at line 16 column 16"
        );
    }

    #[test]
    fn port_range_with_first_above_last_is_rejected() {
        assert_eq!(
            parse_error(&small_with("ports: \"80\"", "ports: \"8080-80\"")),
            "security_groups[0].rules[0].ports: invalid port range \"8080-80\": first port is \
             greater than last port at line 16 column 16"
        );
    }

    #[test]
    fn ports_may_be_a_plain_integer() {
        let state = ClusterState::from_yaml_str(&small_with("ports: \"80\"", "ports: 80")).unwrap();
        assert_eq!(
            state.security_groups[0].rules[0].ports,
            Some("80".parse().unwrap())
        );
    }

    #[test]
    fn unknown_direction_is_rejected_with_its_path() {
        assert_eq!(
            parse_error(&small_with("direction: ingress", "direction: inbound")),
            "security_groups[0].rules[0].direction: unknown variant `inbound`, expected \
             `ingress` or `egress` at line 14 column 20"
        );
    }

    #[test]
    fn yaml_syntax_error_names_where_parsing_stopped() {
        assert_eq!(
            parse_error(&small_with("name: std", "name: \"std")),
            "networks[0]: did not find expected key at line 16 column 17, while parsing a block \
             mapping at line 3 column 5"
        );
    }

    #[test]
    fn empty_document_is_rejected() {
        assert_eq!(parse_error(""), "missing field `version`");
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let error = ClusterState::from_path(Path::new("/nonexistent/state.yaml")).unwrap_err();
        assert!(matches!(error, StateError::Io { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "/nonexistent/state.yaml: cannot read: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn loading_reports_every_violation() {
        let yaml = small_with("ip: 10.244.1.2", "ip: 10.245.1.2");
        let yaml = yaml.replacen("[web]", "[web, db]", 1);
        let error = ClusterState::from_yaml_str(&yaml).unwrap_err();
        let StateError::Invalid(violations) = &error else {
            panic!("expected violations, got {error:?}");
        };
        assert_eq!(
            violations,
            &[
                Violation {
                    path: "pods[0].interfaces[0].ip".to_owned(),
                    message: "10.245.1.2 is outside network std (10.244.0.0/16)".to_owned(),
                },
                Violation {
                    path: "pods[0].interfaces[0].security_groups[1]".to_owned(),
                    message: "unknown security group db".to_owned(),
                },
            ]
        );
        assert_eq!(
            error.to_string(),
            "invalid cluster state: pods[0].interfaces[0].ip: 10.245.1.2 is outside network std \
             (10.244.0.0/16); pods[0].interfaces[0].security_groups[1]: unknown security group db"
        );
    }

    proptest! {
        #[test]
        fn loading_a_damaged_document_never_panics(
            at in 0..SMALL.len(),
            cut in 0..16usize,
            insert in "\\PC{0,8}",
        ) {
            // SMALL is ASCII, so every index is a char boundary.
            let end = (at + cut).min(SMALL.len());
            let yaml = format!("{}{insert}{}", &SMALL[..at], &SMALL[end..]);
            let _ = ClusterState::from_yaml_str(&yaml);
        }
    }
}
