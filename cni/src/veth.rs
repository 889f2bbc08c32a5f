//! A pod's interface on one plane: a veth pair whose host end stays in the caller's namespace
//! (the node's) and whose other end is created directly inside the pod's namespace with its
//! final name, MAC and MTU (one `ip link add ... peer ... netns PATH`: the pod's name never
//! exists in the node's namespace, where `eth0` usually does), then the address, the link state
//! and the default route set from a thread inside the pod's namespace
//! (`ctpath_control::links::in_netns`). Offloads are the kernel's defaults on both ends: the
//! plugin sets none (what XDP planes need at the pod's end is the agent's job,
//! `ctpath_control::pod_side`).
//!
//! Owns: creating ([`add_pair`], [`configure`]), deleting ([`delete`], missing is fine) and reading back
//! ([`inspect_host`], [`inspect_pod`]) such a pair, through `ip` (`ctpath_control::links`).

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ctpath_control::links::{in_netns, ip, ip_json};
use ctpath_control::state::MacAddr;
use ipnet::Ipv4Net;
use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum VethError {
    #[error("opening the pod's network namespace {}: {source}", path.display())]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Ip(String),
}

/// What one plane's pair is to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaneLink {
    pub host: String,
    pub pod: String,
    pub mac: MacAddr,
    pub mtu: u32,
    pub address: Ipv4Net,
    /// The default route's next hop, on the primary plane only.
    pub default_via: Option<Ipv4Addr>,
}

/// Opens the pod's namespace (a `/proc/PID/ns/net` or a bind mount such as `/run/netns/NAME`).
pub fn open_netns(path: &Path) -> Result<File, VethError> {
    File::open(path).map_err(|source| VethError::Netns {
        path: path.to_owned(),
        source,
    })
}

/// Creates the pair of `link` between the caller's namespace and the namespace at
/// `netns_path`, in one request: afterwards both ends exist, or neither does (a host name that
/// exists already is an error, and the existing interface is left alone).
pub fn add_pair(link: &PlaneLink, netns_path: &Path) -> Result<(), VethError> {
    let mtu = link.mtu.to_string();
    let mac = link.mac.to_string();
    let netns_arg = netns_path.to_string_lossy();
    ip(&[
        "link", "add", &link.host, "mtu", &mtu, "type", "veth", "peer", "name", &link.pod,
        "address", &mac, "mtu", &mtu, "netns", &netns_arg,
    ])
    .map(drop)
    .map_err(VethError::Ip)
}

/// Brings the pair of `link` up and gives the pod's end its address and, on the primary
/// plane, the default route, from a thread inside `netns` (opened from `netns_path`).
pub fn configure(link: &PlaneLink, netns_path: &Path, netns: &File) -> Result<(), VethError> {
    ip(&["link", "set", &link.host, "up"]).map_err(VethError::Ip)?;
    let address = link.address.to_string();
    in_netns(netns, || -> Result<(), String> {
        ip(&["addr", "add", &address, "dev", &link.pod])?;
        ip(&["link", "set", &link.pod, "up"])?;
        if let Some(gateway) = link.default_via {
            let gateway = gateway.to_string();
            ip(&["route", "add", "default", "via", &gateway, "dev", &link.pod])?;
        }
        Ok(())
    })
    .map_err(|source| VethError::Netns {
        path: netns_path.to_owned(),
        source,
    })?
    .map_err(VethError::Ip)
}

/// Deletes the host end `host` (and with it the pod's end); `false` when there was none.
pub fn delete(host: &str) -> Result<bool, VethError> {
    if inspect_host(host)?.is_none() {
        return Ok(false);
    }
    match ip(&["link", "del", host]) {
        Ok(_) => Ok(true),
        // Gone in between (its namespace went away).
        Err(_) if inspect_host(host)?.is_none() => Ok(false),
        Err(message) => Err(VethError::Ip(message)),
    }
}

/// One interface as `ip -j -d addr show` reports it.
#[derive(Clone, Debug, Deserialize)]
pub struct LinkState {
    pub ifname: String,
    #[serde(default)]
    pub flags: Vec<String>,
    pub mtu: u32,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub linkinfo: Option<LinkInfo>,
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct LinkInfo {
    #[serde(default)]
    pub info_kind: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AddrInfo {
    pub family: String,
    pub local: String,
    pub prefixlen: u8,
}

impl LinkState {
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|flag| flag == "UP")
    }

    pub fn is_veth(&self) -> bool {
        self.linkinfo
            .as_ref()
            .is_some_and(|info| info.info_kind == "veth")
    }

    /// The IPv4 addresses with their prefix lengths.
    pub fn ipv4(&self) -> Vec<Ipv4Net> {
        self.addr_info
            .iter()
            .filter(|info| info.family == "inet")
            .filter_map(|info| Ipv4Net::new(info.local.parse().ok()?, info.prefixlen).ok())
            .collect()
    }
}

/// A route as `ip -j route show` reports it.
#[derive(Clone, Debug, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dev: String,
}

/// The host end `host` in the caller's namespace, if it exists.
pub fn inspect_host(host: &str) -> Result<Option<LinkState>, VethError> {
    read_link(host)
}

/// The interface `pod` in `netns` and the namespace's default routes.
pub fn inspect_pod(
    pod: &str,
    netns_path: &Path,
    netns: &File,
) -> Result<(Option<LinkState>, Vec<Route>), VethError> {
    in_netns(netns, || -> Result<_, VethError> {
        let routes = ip_json(&["route", "show", "default"]).map_err(VethError::Ip)?;
        Ok((read_link(pod)?, routes))
    })
    .map_err(|source| VethError::Netns {
        path: netns_path.to_owned(),
        source,
    })?
}

/// `ip -j -d addr show dev NAME` in the caller's namespace; `None` if there is no such link.
fn read_link(name: &str) -> Result<Option<LinkState>, VethError> {
    let all: Vec<LinkState> = ip_json(&["-d", "addr", "show"]).map_err(VethError::Ip)?;
    Ok(all.into_iter().find(|link| link.ifname == name))
}
