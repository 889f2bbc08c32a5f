//! Delegated IPAM: the plane's IPAM plugin (host-local) run exactly as a runtime runs a plugin,
//! found in `CNI_PATH`, with the CNI variables in its environment and a configuration on stdin:
//!
//! ```json
//! { "cniVersion": "1.0.0", "name": "<conflist name>-<plane>",
//!   "ipam": { <the plane's ipam keys>, "ranges": [[{ "subnet": "<network cidr>",
//!             "rangeStart": "...", "rangeEnd": "...", "gateway": "<network gateway>" }]] } }
//! ```
//!
//! Owns: the range handed to the plugin ([`node_range`]: the node's `pod_ranges` block of the
//! network, less the network's own network and broadcast addresses, inside the network's CIDR
//! so that the address carries the plane's prefix), running it for ADD, DEL and CHECK (each
//! with the same configuration: host-local checks the range on DEL and CHECK too), and
//! reading its result or error. Each plane is its own IPAM network (`name` above): host-local
//! keeps its leases per name, so planes with overlapping CIDRs do not share leases. Its
//! `CNI_IFNAME` is the runtime's for every plane (leases are per container id and name), and its
//! `CNI_ARGS` is empty (host-local refuses keys it does not know).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ctpath_control::state::Network;
use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::config::{NetConf, PlaneConf, CNI_VERSION};
use crate::env::Env;

#[derive(Debug, Error)]
pub enum IpamError {
    #[error("IPAM plugin {plugin} is in none of CNI_PATH ({path})")]
    NotFound { plugin: String, path: String },
    #[error("running IPAM plugin {}: {source}", plugin.display())]
    Run {
        plugin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The plugin answered with a CNI error object; its code is passed on.
    #[error(
        "IPAM plugin {plugin} ({command}) failed: {msg}{}",
        details_suffix(details)
    )]
    Delegate {
        plugin: String,
        command: &'static str,
        code: u32,
        msg: String,
        details: String,
    },
    #[error("IPAM plugin {plugin} ({command}) printed what is not a result: {message}")]
    BadOutput {
        plugin: String,
        command: &'static str,
        message: String,
    },
    #[error("IPAM plugin {plugin} gave {count} IPv4 addresses on plane {plane}; ctpath needs one")]
    AddressCount {
        plugin: String,
        plane: String,
        count: usize,
    },
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

/// The first and last address host-local may hand out on a node: `block` less the network's
/// own network and broadcast addresses (a block at either end of the network holds one).
pub fn node_range(network: &Network, block: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let cidr = network.cidr.trunc();
    let mut start = block.network();
    let mut end = block.broadcast();
    if start == cidr.network() {
        start = Ipv4Addr::from(u32::from(start) + 1);
    }
    if end == cidr.broadcast() {
        end = Ipv4Addr::from(u32::from(end) - 1);
    }
    (start, end)
}

/// One plane's delegated IPAM on this node: the plugin and its whole configuration, the same
/// for ADD, DEL and CHECK (host-local checks the range on each).
pub struct Ipam<'a> {
    env: &'a Env,
    /// The plane's IPAM network name: `<conflist name>-<plane>`.
    pub name: String,
    plane: String,
    plugin: &'a str,
    /// The plane's `ipam` keys from the conflist, with the node's range.
    ipam: Map<String, Value>,
}

impl<'a> Ipam<'a> {
    /// The IPAM of `plane` (`network` in the state) for a node whose block of it is `block`.
    pub fn new(
        env: &'a Env,
        conf: &'a NetConf,
        plane: &'a PlaneConf,
        network: &Network,
        block: Ipv4Net,
    ) -> Ipam<'a> {
        let (start, end) = node_range(network, block);
        let mut ipam = plane.ipam.clone();
        ipam.insert(
            "ranges".to_owned(),
            json!([[{
                "subnet": network.cidr.trunc().to_string(),
                "rangeStart": start.to_string(),
                "rangeEnd": end.to_string(),
                "gateway": network.gateway.to_string(),
            }]]),
        );
        Ipam {
            env,
            name: format!("{}-{}", conf.name, network.name),
            plane: network.name.clone(),
            plugin: plane.ipam_type(),
            ipam,
        }
    }
}

/// What ADD got for the plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The address with the plane's prefix length.
    pub address: Ipv4Net,
}

#[derive(Deserialize)]
struct IpamResult {
    #[serde(default)]
    ips: Vec<IpamIp>,
}

#[derive(Deserialize)]
struct IpamIp {
    address: ipnet::IpNet,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

impl Ipam<'_> {
    /// Allocates one address on the plane from the node's block.
    pub fn add(&self) -> Result<Lease, IpamError> {
        let output = self.run("ADD", self.config(None))?;
        let result: IpamResult =
            serde_json::from_str(&output).map_err(|error| self.bad_output("ADD", error))?;
        let addresses: Vec<Ipv4Net> = result
            .ips
            .iter()
            .filter_map(|ip| match ip.address {
                ipnet::IpNet::V4(address) => Some(address),
                ipnet::IpNet::V6(_) => None,
            })
            .collect();
        match addresses[..] {
            [address] => Ok(Lease { address }),
            _ => Err(IpamError::AddressCount {
                plugin: self.plugin.to_owned(),
                plane: self.plane.clone(),
                count: addresses.len(),
            }),
        }
    }

    /// Releases whatever the container holds on the plane (nothing held is fine).
    pub fn del(&self) -> Result<(), IpamError> {
        self.run("DEL", self.config(None)).map(drop)
    }

    /// Asks the plugin whether the container still holds `address` on the plane.
    pub fn check(&self, address: Ipv4Net) -> Result<(), IpamError> {
        let prev = json!({
            "cniVersion": CNI_VERSION,
            "ips": [{ "address": address.to_string() }],
        });
        self.run("CHECK", self.config(Some(prev))).map(drop)
    }

    fn config(&self, prev_result: Option<Value>) -> Value {
        let mut config = json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "ipam": self.ipam,
        });
        if let Some(prev) = prev_result {
            config["prevResult"] = prev;
        }
        config
    }

    fn bad_output(&self, command: &'static str, error: impl ToString) -> IpamError {
        IpamError::BadOutput {
            plugin: self.plugin.to_owned(),
            command,
            message: error.to_string(),
        }
    }

    /// Runs the plugin for `command` with `config` on stdin; its stdout on success.
    fn run(&self, command: &'static str, config: Value) -> Result<String, IpamError> {
        let binary = self.binary()?;
        let env = self.env;
        let mut child = Command::new(&binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &env.container_id)
            .env(
                "CNI_NETNS",
                env.netns.as_deref().unwrap_or(Path::new("")).as_os_str(),
            )
            .env("CNI_IFNAME", &env.ifname)
            .env(
                "CNI_PATH",
                std::env::join_paths(&env.cni_path).unwrap_or_default(),
            )
            .env("CNI_ARGS", "")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| IpamError::Run {
                plugin: binary.clone(),
                source,
            })?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(config.to_string().as_bytes()));
        let output = child.wait_with_output().map_err(|source| IpamError::Run {
            plugin: binary.clone(),
            source,
        })?;
        if let Some(Err(source)) = written {
            return Err(IpamError::Run {
                plugin: binary,
                source,
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        let error: ErrorObject = serde_json::from_str(&stdout).unwrap_or(ErrorObject {
            code: 0,
            msg: format!(
                "exit {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            details: String::new(),
        });
        Err(IpamError::Delegate {
            plugin: self.plugin.to_owned(),
            command,
            code: error.code,
            msg: error.msg,
            details: error.details,
        })
    }

    fn binary(&self) -> Result<PathBuf, IpamError> {
        self.env
            .cni_path
            .iter()
            .map(|dir| dir.join(self.plugin))
            .find(|path| path.is_file())
            .ok_or_else(|| IpamError::NotFound {
                plugin: self.plugin.to_owned(),
                path: std::env::join_paths(&self.env.cni_path)
                    .map(|path| path.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(cidr: &str, gateway: &str) -> Network {
        serde_json::from_value(json!({
            "name": "std", "vni": 100, "cidr": cidr, "gateway": gateway,
        }))
        .unwrap()
    }

    #[test]
    fn node_range_skips_the_network_and_broadcast_addresses() {
        let std = network("10.244.0.0/16", "10.244.255.254");
        let at = |block: &str| node_range(&std, block.parse().unwrap());
        let ip = |text: &str| text.parse::<Ipv4Addr>().unwrap();
        assert_eq!(at("10.244.1.0/24"), (ip("10.244.1.0"), ip("10.244.1.255")));
        assert_eq!(at("10.244.0.0/24"), (ip("10.244.0.1"), ip("10.244.0.255")));
        assert_eq!(
            at("10.244.255.0/24"),
            (ip("10.244.255.0"), ip("10.244.255.254"))
        );
    }
}
