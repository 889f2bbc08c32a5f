//! What the plugin prints on stdout (CNI spec 1.0.0, "Success" and "Error"): the ADD result,
//! the VERSION answer and the error object.
//!
//! Owns those JSON shapes and the list of error codes. The result lists, per plane, the host
//! end (no `sandbox`) and then the pod's end (with `sandbox`), so plane i's pod interface is
//! `interfaces[2i + 1]`; `ips[].interface` indexes it; `routes` holds the primary plane's
//! default route.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::config::CNI_VERSION;

/// The codes of the spec, and the plugin's own (100 and up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Decoding = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// Creating, reading or deleting interfaces, addresses or routes failed.
    Link = 100,
    /// The delegated IPAM plugin failed in a way that has no spec code of its own.
    Ipam = 101,
    /// The cluster state refused the pod (unknown plane, security group, no range, ...).
    Refused = 102,
    /// CHECK found the pod not as ADD left it.
    CheckFailed = 103,
    /// What the store holds is not a valid cluster state.
    StoreUnusable = 104,
}

/// The error object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorObject {
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl ErrorObject {
    pub fn new(code: u32, msg: String, details: String) -> ErrorObject {
        ErrorObject {
            cni_version: CNI_VERSION.to_owned(),
            code,
            msg,
            details,
        }
    }
}

/// The VERSION answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionResult {
    pub cni_version: String,
    pub supported_versions: Vec<String>,
}

impl VersionResult {
    pub fn this_plugin() -> VersionResult {
        VersionResult {
            cni_version: CNI_VERSION.to_owned(),
            supported_versions: vec![CNI_VERSION.to_owned()],
        }
    }
}

/// The ADD result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<Ip>,
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ip {
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub interface: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: Ipv4Net,
    pub gw: Ipv4Addr,
}
