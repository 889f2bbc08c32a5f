//! The commands: ADD, DEL and CHECK against the [`Registry`], with the names of `names`, the
//! delegated IPAM of `ipam` and the veths of `veth`.
//!
//! Owns: what each command does, in which order, and what is undone when ADD fails part way.
//!
//! - **ADD**: reads the cluster state; resolves the pod's planes (`CTPATH_PLANES` or
//!   `defaultPlanes`), each served by the conflist, known to the state and with a block in this
//!   node's `pod_ranges`, and their security groups; then per plane an address from IPAM and
//!   the veth pair with the plane's MTU (`mtu`, else the underlay's less VXLAN), the MAC from
//!   the address, the address with the plane's prefix, and on the primary plane the default
//!   route via the plane's gateway (the agent answers ARP for it); last, registers the pod with
//!   its interfaces. Whatever fails, what was done is undone in reverse ([`Undo`]): veths
//!   deleted, leases released. Nothing is registered unless everything else is in place.
//! - **DEL**: for every plane of the conflist deletes the host veth (missing is fine: a gone
//!   namespace took it along); then, with the state read, releases the plane's lease
//!   (host-local: nothing held is fine; it needs the plane's range, so a plane whose network or
//!   block has left the state is skipped with a message) and unregisters the pod if its
//!   registered interfaces are this container's (their host names derive from the container
//!   id), so a DEL of an older sandbox never removes a newer one. The veths go even when the
//!   store is down; the error (try again later) then makes the runtime repeat DEL.
//! - **CHECK**: the registered pod's interfaces against the system (host veth up with the
//!   plane's MTU, the pod's end up with its MAC, MTU and address, the primary's default
//!   route), against `prevResult`, and each lease against IPAM.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ctpath_control::compile::plane_mtu;
use ctpath_control::links::{KernelLinks, Links};
use ctpath_control::state::{ClusterState, Network, Pod, PodInterface};
use ipnet::Ipv4Net;
use thiserror::Error;

use crate::config::{ConfigError, NetConf, CNI_VERSION};
use crate::env::{Env, EnvError};
use crate::ipam::{Ipam, IpamError};
use crate::names::{self, NameError};
use crate::registry::{Registry, RegistryError};
use crate::result::{AddResult, Code, ErrorObject, Interface, Ip, Route};
use crate::veth::{self, PlaneLink, VethError};

#[derive(Debug, Error)]
pub enum PluginError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Veth(#[from] VethError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The pod asks for what this node or the cluster state does not have.
    #[error("{0}")]
    Refused(String),
    #[error("reading interface {interface}: {message}")]
    Link { interface: String, message: String },
    #[error("CHECK: {0}")]
    Check(String),
}

impl PluginError {
    /// The error object printed for this error.
    pub fn to_object(&self) -> ErrorObject {
        let code = match self {
            PluginError::Env(_) => Code::InvalidEnvironment as u32,
            PluginError::Name(_) => Code::InvalidEnvironment as u32,
            PluginError::Config(ConfigError::Decode(_)) => Code::Decoding as u32,
            PluginError::Config(ConfigError::Invalid(_)) => Code::InvalidConfig as u32,
            PluginError::Config(ConfigError::Unsupported { .. }) => Code::UnsupportedField as u32,
            PluginError::Config(ConfigError::IncompatibleVersion(_)) => {
                Code::IncompatibleVersion as u32
            }
            PluginError::Ipam(IpamError::Delegate { code, .. }) if *code != 0 => *code,
            PluginError::Ipam(_) => Code::Ipam as u32,
            PluginError::Veth(_) | PluginError::Link { .. } => Code::Link as u32,
            PluginError::Registry(RegistryError::Unavailable(_)) => Code::TryAgainLater as u32,
            PluginError::Registry(RegistryError::Refused { .. }) | PluginError::Refused(_) => {
                Code::Refused as u32
            }
            PluginError::Registry(RegistryError::Unusable(_)) => Code::StoreUnusable as u32,
            PluginError::Check(_) => Code::CheckFailed as u32,
        };
        // The causes (the store's own message: which rules the pod breaks, why etcd failed).
        let mut details = Vec::new();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            details.push(cause.to_string());
            source = cause.source();
        }
        ErrorObject::new(code, self.to_string(), details.join(": "))
    }
}

/// One plane of the pod, resolved against the conflist and the state.
struct Plane<'a> {
    name: &'a str,
    network: &'a Network,
    security_groups: Vec<String>,
    ipam: Ipam<'a>,
}

/// The IPAM of `plane` on this node: the conflist must serve the plane, the state know its
/// network and give the node a block of it.
fn ipam_of<'a>(
    env: &'a Env,
    conf: &'a NetConf,
    state: &'a ClusterState,
    plane: &str,
) -> Result<Ipam<'a>, PluginError> {
    let refused = |message: String| PluginError::Refused(message);
    let plane_conf = conf.plane(plane).ok_or_else(|| {
        refused(format!(
            "plane {plane} is not served on node {} (its conflist has: {})",
            conf.node,
            conf.planes.keys().cloned().collect::<Vec<_>>().join(",")
        ))
    })?;
    let network = state
        .network(plane)
        .ok_or_else(|| refused(format!("no network {plane} in the cluster state")))?;
    let node = state
        .node(&conf.node)
        .ok_or_else(|| refused(format!("node {} is not in the cluster state", conf.node)))?;
    let block = *node.pod_ranges.get(plane).ok_or_else(|| {
        refused(format!(
            "node {} has no pod_ranges entry for network {plane}",
            node.name
        ))
    })?;
    Ok(Ipam::new(env, conf, plane_conf, network, block))
}

/// The MTU of `network`'s interfaces on `node`'s pods.
fn mtu_on(state: &ClusterState, node: &str, network: &Network) -> Result<u32, PluginError> {
    if let Some(mtu) = network.mtu {
        return Ok(u32::from(mtu));
    }
    let underlay = &state
        .node(node)
        .ok_or_else(|| PluginError::Refused(format!("node {node} is not in the cluster state")))?
        .underlay_interface;
    let link = KernelLinks::open()
        .map_err(|error| PluginError::Link {
            interface: underlay.clone(),
            message: error.to_string(),
        })?
        .link(underlay)
        .map_err(|error| PluginError::Link {
            interface: underlay.clone(),
            message: error.to_string(),
        })?;
    Ok(u32::from(plane_mtu(network, link.mtu)))
}

/// The pod's planes, in order, checked against the conflist and the state.
fn resolve<'a>(
    env: &'a Env,
    conf: &'a NetConf,
    state: &'a ClusterState,
) -> Result<Vec<Plane<'a>>, PluginError> {
    let wanted = env.args.planes.as_ref().unwrap_or(&conf.default_planes);
    if let Some(plane) = env
        .args
        .security_groups
        .keys()
        .find(|plane| !wanted.contains(plane))
    {
        return Err(PluginError::Refused(format!(
            "CTPATH_SG_{plane} names a plane the pod does not get (planes: {})",
            wanted.join(",")
        )));
    }
    wanted
        .iter()
        .map(|name| {
            let ipam = ipam_of(env, conf, state, name)?;
            let network = state.network(name).ok_or_else(|| {
                PluginError::Refused(format!("no network {name} in the cluster state"))
            })?;
            let security_groups = env
                .args
                .security_groups
                .get(name)
                .or_else(|| conf.plane(name).map(|plane| &plane.security_groups))
                .cloned()
                .unwrap_or_default();
            Ok(Plane {
                name,
                network,
                security_groups,
                ipam,
            })
        })
        .collect()
}

/// What ADD has done so far, undone in reverse on drop unless [`Undo::commit`]ted.
struct Undo<'a> {
    leases: Vec<&'a Ipam<'a>>,
    veths: Vec<String>,
    committed: bool,
}

impl Undo<'_> {
    fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for host in self.veths.iter().rev() {
            if let Err(error) = veth::delete(host) {
                eprintln!("ctpath-cni: undoing ADD: deleting {host}: {error}");
            }
        }
        for ipam in self.leases.iter().rev() {
            if let Err(error) = ipam.del() {
                eprintln!("ctpath-cni: undoing ADD: releasing {}: {error}", ipam.name);
            }
        }
    }
}

/// ADD (see the module docs).
pub fn add(env: &Env, conf: &NetConf, registry: &mut Registry) -> Result<AddResult, PluginError> {
    let state = registry.state()?;
    let planes = resolve(env, conf, &state)?;
    let pod_names = names::pod_interfaces(&env.ifname, planes.len())?;
    let netns_path = env.netns.as_deref().ok_or(EnvError::Missing("CNI_NETNS"))?;
    let netns = veth::open_netns(netns_path)?;
    let (namespace, name) = names::pod_identity(&env.args, &env.container_id);
    let mut undo = Undo {
        leases: Vec::new(),
        veths: Vec::new(),
        committed: false,
    };
    let mut result = AddResult {
        cni_version: CNI_VERSION.to_owned(),
        interfaces: Vec::new(),
        ips: Vec::new(),
        routes: Vec::new(),
    };
    let mut interfaces = Vec::new();
    for (index, (plane, pod_ifname)) in planes.iter().zip(&pod_names).enumerate() {
        let mtu = mtu_on(&state, &conf.node, plane.network)?;
        undo.leases.push(&plane.ipam);
        let lease = plane.ipam.add()?;
        let gateway = plane.network.gateway;
        let link = PlaneLink {
            host: names::host_interface(&env.container_id, plane.name),
            pod: pod_ifname.clone(),
            mac: names::pod_mac(lease.address.addr()),
            mtu,
            address: lease.address,
            default_via: (index == 0).then_some(gateway),
        };
        veth::add_pair(&link, netns_path)?;
        // Only now: a failed add_pair may have met another pod's veth of the same name.
        undo.veths.push(link.host.clone());
        veth::configure(&link, netns_path, &netns)?;
        let host_mac = host_mac(&link.host)?;
        result.interfaces.push(Interface {
            name: link.host.clone(),
            mac: host_mac,
            mtu: Some(mtu),
            sandbox: None,
        });
        result.interfaces.push(Interface {
            name: link.pod.clone(),
            mac: link.mac.to_string(),
            mtu: Some(mtu),
            sandbox: Some(netns_path.to_string_lossy().into_owned()),
        });
        result.ips.push(Ip {
            address: lease.address,
            gateway,
            interface: result.interfaces.len() - 1,
        });
        if let Some(via) = link.default_via {
            result.routes.push(Route {
                dst: Ipv4Net::default(),
                gw: via,
            });
        }
        interfaces.push(PodInterface {
            network: plane.name.to_owned(),
            host_interface: link.host,
            ip: lease.address.addr(),
            mac: link.mac,
            security_groups: plane.security_groups.clone(),
            port_security: true,
            allowed_address_pairs: Vec::new(),
        });
    }
    registry.register(&Pod {
        name,
        namespace,
        node: conf.node.clone(),
        labels: BTreeMap::new(),
        interfaces,
    })?;
    undo.commit();
    Ok(result)
}

fn host_mac(host: &str) -> Result<String, PluginError> {
    let link_error = |message: String| PluginError::Link {
        interface: host.to_owned(),
        message,
    };
    let links = KernelLinks::open().map_err(|error| link_error(error.to_string()))?;
    let link = links
        .link(host)
        .map_err(|error| link_error(error.to_string()))?;
    Ok(ctpath_control::state::MacAddr(link.mac).to_string())
}

/// Whether `pod`'s interfaces are those `container_id` made.
fn made_by(pod: &Pod, container_id: &str) -> bool {
    !pod.interfaces.is_empty()
        && pod.interfaces.iter().all(|interface| {
            interface.host_interface == names::host_interface(container_id, &interface.network)
        })
}

/// DEL (see the module docs).
pub fn del(env: &Env, conf: &NetConf, registry: &mut Registry) -> Result<(), PluginError> {
    for plane in conf.planes.keys() {
        veth::delete(&names::host_interface(&env.container_id, plane))?;
    }
    let state = registry.state()?;
    for plane in conf.planes.keys() {
        match ipam_of(env, conf, &state, plane) {
            Ok(ipam) => ipam.del()?,
            // The plane or the node's block is gone from the state: host-local cannot be
            // asked without the range.
            Err(error) => eprintln!("ctpath-cni: DEL: no lease to release on {plane}: {error}"),
        }
    }
    let (namespace, name) = names::pod_identity(&env.args, &env.container_id);
    registry.unregister(&namespace, &name, &|pod| made_by(pod, &env.container_id))?;
    Ok(())
}

/// CHECK (see the module docs).
pub fn check(env: &Env, conf: &NetConf, registry: &mut Registry) -> Result<(), PluginError> {
    let prev: AddResult = conf
        .prev_result
        .clone()
        .ok_or_else(|| ConfigError::Invalid("CHECK needs prevResult".to_owned()))
        .and_then(|value| {
            serde_json::from_value(value)
                .map_err(|error| ConfigError::Invalid(format!("prevResult: {error}")))
        })?;
    let state = registry.state()?;
    let (namespace, name) = names::pod_identity(&env.args, &env.container_id);
    let fail = |message: String| Err(PluginError::Check(message));
    let Some(pod) = state
        .pods
        .iter()
        .find(|pod| pod.namespace == namespace && pod.name == name)
    else {
        return fail(format!("pod {namespace}/{name} is not registered"));
    };
    if !made_by(pod, &env.container_id) {
        return fail(format!(
            "pod {namespace}/{name} is registered with another container's interfaces"
        ));
    }
    let pod_names = names::pod_interfaces(&env.ifname, pod.interfaces.len())?;
    let netns_path = env.netns.as_deref().ok_or(EnvError::Missing("CNI_NETNS"))?;
    let netns = veth::open_netns(netns_path)?;
    for (index, (interface, pod_ifname)) in pod.interfaces.iter().zip(&pod_names).enumerate() {
        let Some(network) = state.network(&interface.network) else {
            return fail(format!("network {} is gone", interface.network));
        };
        let mtu = mtu_on(&state, &pod.node, network)?;
        let address = Ipv4Net::new(interface.ip, network.cidr.prefix_len())
            .expect("a network's prefix length is valid");
        let host = &interface.host_interface;
        match veth::inspect_host(host)? {
            None => return fail(format!("host interface {host} is missing")),
            Some(link) if !link.is_veth() || !link.is_up() || link.mtu != mtu => {
                return fail(format!(
                    "host interface {host}: want an up veth with MTU {mtu}, found {link:?}"
                ))
            }
            Some(_) => {}
        }
        let (link, routes) = veth::inspect_pod(pod_ifname, netns_path, &netns)?;
        let Some(link) = link else {
            return fail(format!("{pod_ifname} is missing in the pod"));
        };
        let mac = interface.mac.to_string();
        if !link.is_up() || link.mtu != mtu || link.address != mac {
            return fail(format!(
                "{pod_ifname} in the pod: want up, MTU {mtu}, MAC {mac}; found {link:?}"
            ));
        }
        if !link.ipv4().contains(&address) {
            return fail(format!(
                "{pod_ifname} in the pod lacks {address} (has {:?})",
                link.ipv4()
            ));
        }
        if index == 0 && !has_default_via(&routes, network.gateway, pod_ifname) {
            return fail(format!(
                "no default route via {} dev {pod_ifname} in the pod (routes: {routes:?})",
                network.gateway
            ));
        }
        if !prev.ips.iter().any(|ip| ip.address == address) {
            return fail(format!("prevResult does not list {address}"));
        }
        ipam_of(env, conf, &state, &interface.network)?.check(address)?;
    }
    Ok(())
}

fn has_default_via(routes: &[veth::Route], gateway: Ipv4Addr, dev: &str) -> bool {
    let gateway = gateway.to_string();
    routes.iter().any(|route| {
        route.dst == "default"
            && route.gateway.as_deref() == Some(gateway.as_str())
            && route.dev == dev
    })
}
