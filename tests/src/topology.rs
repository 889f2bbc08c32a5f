//! Testbed topologies: nodes, an underlay between them, pods on nodes.
//!
//! Owns [`Testbed`], the RAII guard for everything one test builds, and the specs and handles of
//! what it builds:
//!
//! - a **node** ([`Testbed::add_node`]) is a namespace with `lo` up. It does not route in the
//!   kernel (no `ip_forward`): forwarding between pods and the underlay is ctpath's XDP job.
//! - an **underlay** ([`Testbed::connect_underlay`]) gives each node one interface (`eth0`) with
//!   the i-th host address of a subnet. Two nodes get one veth pair straight between their
//!   namespaces; more get a switch namespace with a Linux bridge (`br0`, ports `p0`, `p1`, …).
//! - a **pod** ([`Testbed::add_pod`]) is a namespace with one veth pair per network plane: the host
//!   side (named by the spec) in the node namespace, the pod side (`eth0`, `eth1`, …) in the pod
//!   namespace, with the pod's MAC, MTU on both ends, and the address and routes of the chosen
//!   [`Addressing`].
//!
//! Nothing is ever created in the root namespace, so interface names only need to be unique
//! within one namespace, and all testbeds can use the same subnets and interface names. IPv6 is
//! disabled in every namespace (no router solicitations or DAD frames in captures).
//!
//! Pods keep the kernel's defaults on their side of every veth (TX checksum offload and TSO on,
//! GRO off), as a CNI plugin or container runtime creates them: what XDP at the host end needs
//! inside the pod (`datapath: xdp` and fast-path planes) is the agent's job
//! (`ctpath_control::pod_side`), not the testbed's.
//!
//! The underlay veths stand for a wire between NICs ([`Offloads::Wire`], the default): TX
//! checksum offload off, so frames arrive with complete checksums (a NIC computes them on
//! transmit), and GRO on, so XDP redirects into them are delivered whether or not the other
//! node runs XDP. Clusters where no node runs XDP on its underlay keep the kernel's defaults
//! there ([`Offloads::KernelDefault`]).
//!
//! Dropping the testbed kills the processes spawned in its namespaces, then deletes the
//! namespaces (and with them their interfaces), even while unwinding from a panic. Errors in
//! `Drop` are printed, never raised. Handles ([`NodeHandle`], [`PodHandle`], [`Netns`]) are plain
//! values: they do not keep namespaces alive, and commands through them fail after the drop.
//!
//! Panic contract: nothing here panics.

use std::net::Ipv4Addr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ipnet::Ipv4Net;

use crate::error::{Result, TestbedError};
use crate::netns::{self, Netns};
use crate::process::ChildRegistry;
use crate::stale;

/// Default name of a node's underlay interface.
pub const DEFAULT_UNDERLAY_IFNAME: &str = "eth0";
/// Default underlay MTU.
pub const DEFAULT_UNDERLAY_MTU: u32 = 1500;
/// Default pod MTU: a 1500-byte underlay minus the 50 bytes of VXLAN-over-IPv4 encapsulation.
pub const DEFAULT_POD_MTU: u32 = 1450;

/// Longest node or pod name accepted (namespace names stay short: `ct{pid}x{n}-` + this).
const MAX_NAME_LEN: usize = 24;
/// Linux interface names are at most 15 bytes (`IFNAMSIZ` − 1).
const MAX_IFNAME_LEN: usize = 15;

/// The RAII guard of one test's topology. See the module docs.
#[derive(Debug)]
pub struct Testbed {
    label: String,
    prefix: String,
    children: Arc<ChildRegistry>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Namespaces created so far, in creation order (full names).
    namespaces: Vec<String>,
    /// Switch namespaces created so far.
    switches: usize,
}

impl Testbed {
    /// Creates an empty testbed. `label` names it in messages (use the test name). Sweeps
    /// namespaces left by dead runs first (see `stale.rs`).
    pub fn new(label: &str) -> Result<Self> {
        stale::sweep();
        Ok(Self {
            label: label.to_owned(),
            prefix: stale::next_prefix(),
            children: Arc::default(),
            state: Mutex::default(),
        })
    }

    /// The label given to [`Testbed::new`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The prefix of every namespace name of this testbed (`ct{pid}x{n}-`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Full names of the namespaces created so far, in creation order.
    pub fn namespace_names(&self) -> Vec<String> {
        self.state().namespaces.clone()
    }

    /// Creates a bare namespace `{prefix}{name}` (loopback up, IPv6 off), for peers that are
    /// neither nodes nor pods (an external host, an etcd server, …).
    pub fn add_namespace(&self, name: &str) -> Result<Netns> {
        validate_name("namespace", name)?;
        let full = format!("{}{}", self.prefix, name);
        {
            // Check and record under one lock so concurrent adds of one name cannot both pass.
            let mut state = self.state();
            if state.namespaces.contains(&full) {
                return Err(TestbedError::DuplicateName {
                    testbed: self.label.clone(),
                    name: name.to_owned(),
                });
            }
            netns::add(&full)?;
            state.namespaces.push(full.clone());
        }
        let ns = Netns::new(full, Arc::clone(&self.children));
        // Before any interface exists, so that every interface inherits IPv6 off.
        disable_ipv6(&ns)?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates a node: a namespace with loopback up and nothing else.
    pub fn add_node(&self, name: &str) -> Result<NodeHandle> {
        let ns = self.add_namespace(name)?;
        Ok(NodeHandle {
            name: name.to_owned(),
            ns,
            underlay: Arc::default(),
        })
    }

    /// Connects `nodes` with an underlay on `subnet`: interface `eth0`, MTU 1500, node i gets
    /// the i-th host address (`subnet.hosts()`). Shorthand for [`Testbed::connect_underlay_with`].
    pub fn connect_underlay(&self, nodes: &[&NodeHandle], subnet: Ipv4Net) -> Result<Underlay> {
        self.connect_underlay_with(nodes, &UnderlaySpec::new(subnet))
    }

    /// Connects `nodes` with an underlay described by `spec`: one veth pair between the two node
    /// namespaces for two nodes, a switch namespace with a bridge for more. The ports are also
    /// recorded on each node ([`NodeHandle::underlay`]).
    pub fn connect_underlay_with(
        &self,
        nodes: &[&NodeHandle],
        spec: &UnderlaySpec,
    ) -> Result<Underlay> {
        if nodes.len() < 2 {
            return Err(TestbedError::TooFewNodes { count: nodes.len() });
        }
        validate_ifname(&spec.ifname)?;
        let mut hosts = spec.subnet.hosts();
        let addresses = (0..nodes.len())
            .map(|index| {
                hosts.next().ok_or(TestbedError::SubnetTooSmall {
                    subnet: spec.subnet,
                    index,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ifname = spec.ifname.as_str();
        let mtu = spec.mtu.to_string();

        let switch = if let [a, b] = nodes {
            a.ip(&[
                "link",
                "add",
                ifname,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                ifname,
                "mtu",
                &mtu,
                "netns",
                b.ns.name(),
            ])?;
            None
        } else {
            let switch = {
                let k = {
                    let mut state = self.state();
                    state.switches += 1;
                    state.switches - 1
                };
                self.add_namespace(&format!("sw{k}"))?
            };
            switch.ip(&["link", "add", "br0", "type", "bridge"])?;
            switch.ip(&["link", "set", "br0", "up"])?;
            for (i, node) in nodes.iter().enumerate() {
                let port = format!("p{i}");
                node.ip(&[
                    "link",
                    "add",
                    ifname,
                    "mtu",
                    &mtu,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &port,
                    "mtu",
                    &mtu,
                    "netns",
                    switch.name(),
                ])?;
                switch.ip(&["link", "set", &port, "master", "br0", "up"])?;
                // Frames XDP redirects into the node's end arrive here: see below.
                if spec.offloads == Offloads::Wire {
                    switch.exec(&["ethtool", "-K", &port, "gro", "on", "tx", "off"])?;
                }
            }
            Some(switch)
        };

        let mut ports = Vec::with_capacity(nodes.len());
        for (node, ip) in nodes.iter().zip(addresses) {
            let cidr = format!("{}/{}", ip, spec.subnet.prefix_len());
            node.ip(&["addr", "add", &cidr, "dev", ifname])?;
            node.ip(&["link", "set", ifname, "up"])?;
            // XDP_REDIRECT or XDP_TX into a veth needs NAPI on its peer: an XDP program there
            // (a ctpath node) or GRO (a node without ctpath, e.g. a kernel vxlan node). A real
            // NIC needs nothing of the kind.
            if spec.offloads == Offloads::Wire {
                node.exec(&["ethtool", "-K", ifname, "gro", "on", "tx", "off"])?;
            }
            let link = node.link(ifname)?;
            let port = UnderlayPort {
                node: node.name.clone(),
                ifname: ifname.to_owned(),
                ifindex: link.ifindex,
                ip,
                prefix_len: spec.subnet.prefix_len(),
                mac: link.mac,
                mtu: link.mtu,
            };
            node.underlay
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(port.clone());
            ports.push(port);
        }
        Ok(Underlay {
            subnet: spec.subnet,
            ports,
            switch,
        })
    }

    /// Creates a pod on `node` as described by `spec` (see [`PodSpec`] and [`Addressing`]).
    pub fn add_pod(&self, node: &NodeHandle, spec: PodSpec) -> Result<PodHandle> {
        let invalid = |ifname: &str, reason: String| TestbedError::InvalidPodInterface {
            pod: spec.name.clone(),
            ifname: ifname.to_owned(),
            reason,
        };
        if spec.interfaces.is_empty() {
            return Err(invalid("-", "a pod needs at least one interface".into()));
        }
        // Validate everything before creating anything.
        let mut pod_ifnames = Vec::with_capacity(spec.interfaces.len());
        for (i, itf) in spec.interfaces.iter().enumerate() {
            let pod_ifname = itf.pod_ifname.clone().unwrap_or_else(|| format!("eth{i}"));
            validate_ifname(&itf.host_ifname)?;
            validate_ifname(&pod_ifname)?;
            if itf.prefix_len > 32 {
                return Err(invalid(
                    &pod_ifname,
                    format!("prefix length {} > 32", itf.prefix_len),
                ));
            }
            if pod_ifnames.contains(&pod_ifname) {
                return Err(invalid(&pod_ifname, "pod interface name used twice".into()));
            }
            if spec.interfaces[..i]
                .iter()
                .any(|o| o.host_ifname == itf.host_ifname)
            {
                return Err(invalid(
                    &pod_ifname,
                    "host interface name used twice".into(),
                ));
            }
            if let Some(gateway) = itf.addressing.gateway() {
                if gateway == itf.ip {
                    return Err(TestbedError::InvalidGateway {
                        pod: spec.name.clone(),
                        gateway,
                        reason: "it is the pod's own address",
                    });
                }
            }
            pod_ifnames.push(pod_ifname);
        }

        let pod = self.add_namespace(&spec.name)?;
        let mut interfaces = Vec::with_capacity(spec.interfaces.len());
        for (itf, pod_ifname) in spec.interfaces.iter().zip(pod_ifnames) {
            let mtu = itf.mtu.to_string();
            let mac = crate::format_mac(itf.mac);
            pod.ip(&[
                "link",
                "add",
                &pod_ifname,
                "address",
                &mac,
                "mtu",
                &mtu,
                "type",
                "veth",
                "peer",
                "name",
                &itf.host_ifname,
                "mtu",
                &mtu,
                "netns",
                node.ns.name(),
            ])?;
            let addr_len = match itf.addressing {
                Addressing::OnLink { .. } => itf.prefix_len,
                Addressing::HostRoute { .. } => 32,
            };
            pod.ip(&[
                "addr",
                "add",
                &format!("{}/{}", itf.ip, addr_len),
                "dev",
                &pod_ifname,
            ])?;
            pod.ip(&["link", "set", &pod_ifname, "up"])?;
            node.ip(&["link", "set", &itf.host_ifname, "up"])?;
            let host = node.link(&itf.host_ifname)?;
            let pod_link = pod.link(&pod_ifname)?;
            interfaces.push(PodInterface {
                host_ifname: itf.host_ifname.clone(),
                host_ifindex: host.ifindex,
                host_mac: host.mac,
                pod_ifname,
                pod_ifindex: pod_link.ifindex,
                ip: itf.ip,
                prefix_len: itf.prefix_len,
                mac: pod_link.mac,
                mtu: pod_link.mtu,
                addressing: itf.addressing,
            });
        }
        // Routes last: every interface is up by now.
        for (i, itf) in interfaces.iter().enumerate() {
            let dev = itf.pod_ifname.as_str();
            let plane = itf.plane().to_string();
            if let Addressing::HostRoute { gateway } = itf.addressing {
                let gw = gateway.to_string();
                pod.ip(&["route", "add", &gw, "dev", dev, "scope", "link"])?;
                if itf.prefix_len < 32 {
                    pod.ip(&["route", "add", &plane, "via", &gw, "dev", dev])?;
                }
            }
            if let (0, Some(gateway)) = (i, itf.addressing.gateway()) {
                let gw = gateway.to_string();
                pod.ip(&["route", "add", "default", "via", &gw, "dev", dev])?;
            }
        }
        Ok(PodHandle {
            name: spec.name,
            node: node.name.clone(),
            ns: pod,
            interfaces,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.children.kill_all();
        let namespaces = std::mem::take(&mut self.state().namespaces);
        for name in namespaces.iter().rev() {
            if let Err(e) = netns::delete(name) {
                eprintln!(
                    "ctpath-testbed {}: cannot delete namespace {name}: {e}",
                    self.label
                );
            }
        }
    }
}

fn disable_ipv6(ns: &Netns) -> Result<()> {
    for key in [
        "net.ipv6.conf.all.disable_ipv6",
        "net.ipv6.conf.default.disable_ipv6",
    ] {
        match ns.sysctl(key, "1") {
            // A kernel without IPv6 has nothing to disable.
            Err(TestbedError::Sysctl { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 24 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Some("only ASCII letters, digits, '-' and '_' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(TestbedError::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_ifname(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_IFNAME_LEN {
        Some("longer than 15 bytes")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        Some("contains '/', ':', whitespace or control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(TestbedError::InvalidName {
            kind: "interface",
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A node of a testbed. Derefs to its [`Netns`], so `node.exec(…)` runs inside the node.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    name: String,
    ns: Netns,
    underlay: Arc<Mutex<Vec<UnderlayPort>>>,
}

impl NodeHandle {
    /// The node name given to [`Testbed::add_node`] (without the testbed prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// The node's (first) underlay port, once [`Testbed::connect_underlay`] has run.
    pub fn underlay(&self) -> Option<UnderlayPort> {
        self.underlay_ports().into_iter().next()
    }

    /// All underlay ports of the node, in the order the underlays were connected.
    pub fn underlay_ports(&self) -> Vec<UnderlayPort> {
        self.underlay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Deref for NodeHandle {
    type Target = Netns;

    fn deref(&self) -> &Netns {
        &self.ns
    }
}

/// How to build an underlay. `UnderlaySpec { mtu: 9000, ..UnderlaySpec::new(subnet) }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnderlaySpec {
    /// Node i gets the i-th host address of this subnet, with its prefix length.
    pub subnet: Ipv4Net,
    /// The interface name in each node (default `eth0`).
    pub ifname: String,
    /// The MTU of every underlay interface (default 1500).
    pub mtu: u32,
    /// How the underlay veths' offloads are set: [`Offloads::Wire`] (the default) for nodes
    /// with XDP on their underlay, [`Offloads::KernelDefault`] for clusters where no node runs
    /// XDP.
    pub offloads: Offloads,
}

impl UnderlaySpec {
    /// `eth0`, MTU 1500, on `subnet`.
    pub fn new(subnet: Ipv4Net) -> Self {
        Self {
            subnet,
            ifname: DEFAULT_UNDERLAY_IFNAME.to_owned(),
            mtu: DEFAULT_UNDERLAY_MTU,
            offloads: Offloads::Wire,
        }
    }
}

/// An underlay built by [`Testbed::connect_underlay`].
#[derive(Clone, Debug)]
pub struct Underlay {
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// One port per node, in the order the nodes were given.
    pub ports: Vec<UnderlayPort>,
    /// The switch namespace (bridge `br0`, ports `p0`, `p1`, … in node order), for three or more
    /// nodes; `None` for a direct veth pair.
    pub switch: Option<Netns>,
}

impl Underlay {
    /// The port of the node named `node`.
    pub fn port(&self, node: &NodeHandle) -> Option<&UnderlayPort> {
        self.ports.iter().find(|p| p.node == node.name)
    }
}

/// One node's underlay interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnderlayPort {
    /// The node name (without prefix).
    pub node: String,
    /// Interface name in the node namespace.
    pub ifname: String,
    /// Interface index in the node namespace.
    pub ifindex: u32,
    /// The node's underlay address.
    pub ip: Ipv4Addr,
    /// Prefix length of the underlay subnet.
    pub prefix_len: u8,
    /// The interface's MAC (chosen by the kernel).
    pub mac: [u8; 6],
    /// The interface's MTU.
    pub mtu: u32,
}

/// What to build for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSpec {
    /// Pod name, unique within the testbed (it names the pod's namespace).
    pub name: String,
    /// One entry per network plane; the first is the pod's primary interface.
    pub interfaces: Vec<PodInterfaceSpec>,
}

/// One pod interface (one plane). Build with [`PodInterfaceSpec::new`] and struct update syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInterfaceSpec {
    /// Name of the host side, in the node namespace (at most 15 bytes, unique in the node).
    pub host_ifname: String,
    /// Name of the pod side; `None` means `eth{i}` for the i-th interface.
    pub pod_ifname: Option<String>,
    /// The pod's address on this plane.
    pub ip: Ipv4Addr,
    /// Prefix length of the plane (e.g. 16 for 10.244.0.0/16).
    pub prefix_len: u8,
    /// MAC of the pod side.
    pub mac: [u8; 6],
    /// MTU of both ends (default [`DEFAULT_POD_MTU`]).
    pub mtu: u32,
    /// How the pod reaches the plane.
    pub addressing: Addressing,
}

/// Offloads of the underlay veths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offloads {
    /// A wire between NICs, for nodes with XDP on their underlay: TX checksum offload (and with
    /// it TSO/GSO) off, so frames arrive with complete checksums; GRO on, NAPI for redirects.
    Wire,
    /// The kernel's defaults (TX checksum offload and TSO on): GSO packets stay whole to the
    /// other node, as a NIC with TSO would carry them.
    KernelDefault,
}

impl PodInterfaceSpec {
    /// An interface with the default pod name, [`DEFAULT_POD_MTU`] and `OnLink` without a
    /// gateway.
    pub fn new(host_ifname: &str, ip: Ipv4Addr, prefix_len: u8, mac: [u8; 6]) -> Self {
        Self {
            host_ifname: host_ifname.to_owned(),
            pod_ifname: None,
            ip,
            prefix_len,
            mac,
            mtu: DEFAULT_POD_MTU,
            addressing: Addressing::OnLink { gateway: None },
        }
    }
}

/// How a pod interface is addressed and routed. In both modes, the pod's **first** interface also
/// gets `default via GATEWAY` when it has a gateway; other interfaces never carry the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `ip/prefix_len` on the pod side: the whole plane is on-link (the pod ARPs for every peer
    /// directly, as with a flat L2 plane).
    OnLink {
        /// Gateway for the default route (first interface only); must be inside the plane.
        gateway: Option<Ipv4Addr>,
    },
    /// `ip/32` on the pod side, `GATEWAY dev IF scope link`, and `PLANE via GATEWAY dev IF`
    /// (the pod ARPs only for the gateway, as in Calico-style routed pod networking). The
    /// gateway may lie outside the plane (e.g. 169.254.1.1).
    HostRoute {
        /// The next hop for everything on this plane.
        gateway: Ipv4Addr,
    },
}

impl Addressing {
    /// The gateway, if any.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        match *self {
            Addressing::OnLink { gateway } => gateway,
            Addressing::HostRoute { gateway } => Some(gateway),
        }
    }
}

/// A pod of a testbed. Derefs to its [`Netns`], so `pod.exec(…)` runs inside the pod.
#[derive(Clone, Debug)]
pub struct PodHandle {
    name: String,
    node: String,
    ns: Netns,
    /// The pod's interfaces, in spec order.
    pub interfaces: Vec<PodInterface>,
}

impl PodHandle {
    /// The pod name from its spec (without the testbed prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the node the pod runs on.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The pod's namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// The interface whose pod-side name is `pod_ifname`.
    pub fn interface(&self, pod_ifname: &str) -> Option<&PodInterface> {
        self.interfaces.iter().find(|i| i.pod_ifname == pod_ifname)
    }
}

impl Deref for PodHandle {
    type Target = Netns;

    fn deref(&self) -> &Netns {
        &self.ns
    }
}

/// One built pod interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInterface {
    /// Host-side name, in the node namespace.
    pub host_ifname: String,
    /// Host-side index, in the node namespace (what ctpath attaches XDP to / redirects into).
    pub host_ifindex: u32,
    /// Host-side MAC (chosen by the kernel).
    pub host_mac: [u8; 6],
    /// Pod-side name, in the pod namespace.
    pub pod_ifname: String,
    /// Pod-side index, in the pod namespace.
    pub pod_ifindex: u32,
    /// The pod's address on this plane.
    pub ip: Ipv4Addr,
    /// The plane's prefix length (the address itself is /32 with [`Addressing::HostRoute`]).
    pub prefix_len: u8,
    /// Pod-side MAC.
    pub mac: [u8; 6],
    /// MTU of both ends.
    pub mtu: u32,
    /// The addressing mode used.
    pub addressing: Addressing,
}

impl PodInterface {
    /// The plane: `ip/prefix_len` truncated to its network (e.g. 10.244.0.0/16).
    pub fn plane(&self) -> Ipv4Net {
        Ipv4Net::new(self.ip, self.prefix_len)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| Ipv4Net::from(self.ip))
    }
}
