//! `ctpath-cni`, the CNI plugin (spec 1.0.0) that wires a pod into ctpath's planes: per plane a
//! veth pair (the host end is where the node's agent attaches its programs), an address from
//! the plane's delegated IPAM plugin within this node's block, and the pod's registration in
//! the cluster state, which the agents read. Configured by a conflist entry of type `ctpath`
//! (`config`); the pod chooses its planes and security groups in `CNI_ARGS` (`env`).
//! The design, for operators: `docs/cni.md`.
//!
//! Modules, one concern each:
//! - [`env`]: the CNI environment variables and the `CNI_ARGS` syntax.
//! - [`config`]: the conflist entry.
//! - [`names`]: host veth names, in-pod names, MACs and the pod's identity, all derived.
//! - [`ipam`]: running the delegated IPAM plugin (host-local) as a runtime does.
//! - [`veth`]: creating, deleting and reading back one plane's veth pair.
//! - [`registry`]: the pod's registration in the cluster state in etcd.
//! - [`plugin`]: ADD, DEL and CHECK, with the undo of a failed ADD.
//! - [`result`]: the JSON printed: results, VERSION, error objects and their codes.
//!
//! This file owns [`run`], one invocation from environment and stdin to what is printed.
//! Panic contract: nothing panics on any input.

pub mod config;
pub mod env;
pub mod ipam;
pub mod names;
pub mod plugin;
pub mod registry;
pub mod result;
pub mod veth;

use config::NetConf;
use env::{Command, Env};
use plugin::PluginError;
use registry::Registry;
use result::VersionResult;

/// Runs one invocation: the environment through `var`, the configuration in `stdin`. Returns
/// what to print on stdout on success (nothing for DEL and CHECK).
pub fn run(
    var: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Result<Option<String>, PluginError> {
    let env = Env::read(var)?;
    let open = || -> Result<(NetConf, Registry), PluginError> {
        let conf = NetConf::parse(stdin)?;
        let registry = Registry::connect(&conf.etcd)?;
        Ok((conf, registry))
    };
    match env.command {
        Command::Version => Ok(Some(json(&VersionResult::this_plugin()))),
        Command::Add => {
            let (conf, mut registry) = open()?;
            plugin::add(&env, &conf, &mut registry).map(|result| Some(json(&result)))
        }
        Command::Del => {
            let (conf, mut registry) = open()?;
            plugin::del(&env, &conf, &mut registry).map(|()| None)
        }
        Command::Check => {
            let (conf, mut registry) = open()?;
            plugin::check(&env, &conf, &mut registry).map(|()| None)
        }
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
