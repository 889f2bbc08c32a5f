//! The plugin's network configuration: the `ctpath` entry of a conflist, as the runtime hands it
//! on stdin (with `cniVersion` and `name` of the conflist, and `prevResult` for CHECK and DEL).
//!
//! Owns: its shape and the checks that need nothing but the text ([`NetConf::parse`]).
//!
//! ```json
//! {
//!   "type": "ctpath",
//!   "etcd": { "endpoints": ["http://10.0.0.1:2379"], "prefix": "/ctpath/v1" },
//!   "node": "node-a",
//!   "defaultPlanes": ["std"],
//!   "planes": {
//!     "std":   { "ipam": { "type": "host-local" }, "securityGroups": ["default"] },
//!     "media": { "ipam": { "type": "host-local", "dataDir": "/var/lib/cni/ctpath" } }
//!   }
//! }
//! ```
//!
//! - `etcd`: where the cluster state is (`prefix` defaults to `/ctpath/v1`).
//! - `node`: this node's name in the cluster state.
//! - `defaultPlanes`: the planes a pod gets when its `CNI_ARGS` has no `CTPATH_PLANES`; the first
//!   is the primary plane (default route).
//! - `planes`: every plane this node serves, by network name: the IPAM plugin to delegate to
//!   (`type` and its own keys, passed through; the range is the plugin's business, from the
//!   node's `pod_ranges` in the cluster state, so `ranges`, `subnet`, `rangeStart`,
//!   `rangeEnd` and `gateway` may not be written here), and the security groups of a pod's
//!   interface on the plane unless `CTPATH_SG_<plane>` says otherwise.
//!
//! Keys are camelCase as in the CNI spec. A key this plugin does not know at the top level is
//! refused as unsupported (CNI code 2); inside `etcd` and `planes` as invalid (code 7).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// The only CNI version this plugin speaks.
pub const CNI_VERSION: &str = "1.0.0";
/// The etcd key prefix when `etcd.prefix` is not given.
pub const DEFAULT_ETCD_PREFIX: &str = "/ctpath/v1";
/// Keys of the IPAM configuration the plugin writes itself.
const IPAM_KEYS_OWNED: [&str; 5] = ["ranges", "subnet", "rangeStart", "rangeEnd", "gateway"];
/// Top-level keys the spec lets a runtime add, accepted and not used.
const RUNTIME_KEYS: [&str; 4] = ["runtimeConfig", "args", "capabilities", "dns"];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("the configuration is not JSON: {0}")]
    Decode(String),
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported field {key} (value {value})")]
    Unsupported { key: String, value: String },
    #[error("cniVersion {0:?} is not supported: ctpath-cni speaks {CNI_VERSION}")]
    IncompatibleVersion(String),
}

/// The configuration as given (see the module docs).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    pub etcd: EtcdConf,
    pub node: String,
    pub default_planes: Vec<String>,
    pub planes: BTreeMap<String, PlaneConf>,
    /// The result of ADD, as the runtime keeps it (CHECK and DEL).
    #[serde(default)]
    pub prev_result: Option<Value>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConf {
    pub endpoints: Vec<String>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    DEFAULT_ETCD_PREFIX.to_owned()
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlaneConf {
    /// The delegated IPAM plugin's configuration: `type` and its own keys.
    pub ipam: Map<String, Value>,
    #[serde(default)]
    pub security_groups: Vec<String>,
}

impl PlaneConf {
    /// The IPAM plugin's binary name (checked present by [`NetConf::parse`]).
    pub fn ipam_type(&self) -> &str {
        self.ipam
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

impl NetConf {
    /// Parses and checks the configuration read from stdin. The version is checked first, so
    /// a configuration of another version is refused as such whatever else it holds.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, ConfigError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|error| ConfigError::Decode(error.to_string()))?;
        match value.get("cniVersion").and_then(Value::as_str) {
            Some(CNI_VERSION) => {}
            Some(other) => return Err(ConfigError::IncompatibleVersion(other.to_owned())),
            None => return Err(ConfigError::Invalid("cniVersion is missing".to_owned())),
        }
        let conf: NetConf = serde_json::from_value(value)
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        if let Some((key, value)) = conf
            .other
            .iter()
            .find(|(key, _)| !RUNTIME_KEYS.contains(&key.as_str()))
        {
            return Err(ConfigError::Unsupported {
                key: key.clone(),
                value: value.to_string(),
            });
        }
        conf.check()?;
        Ok(conf)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.etcd.endpoints.is_empty() {
            return invalid("etcd.endpoints is empty".to_owned());
        }
        if let Err(error) = ctpath_control::store::check_endpoints(&self.etcd.endpoints) {
            return invalid(format!("etcd.endpoints: {error}"));
        }
        if self.node.is_empty() {
            return invalid("node is empty".to_owned());
        }
        if self.default_planes.is_empty() {
            return invalid("defaultPlanes is empty: a pod needs at least one plane".to_owned());
        }
        for plane in &self.default_planes {
            if !self.planes.contains_key(plane) {
                return invalid(format!("defaultPlanes: {plane} is not one of planes"));
            }
        }
        for (name, plane) in &self.planes {
            if plane.ipam_type().is_empty() {
                return invalid(format!("planes.{name}.ipam.type is missing"));
            }
            if let Some(key) = IPAM_KEYS_OWNED
                .iter()
                .find(|key| plane.ipam.contains_key(**key))
            {
                return invalid(format!(
                    "planes.{name}.ipam.{key}: the range comes from the cluster state (the \
                     node's pod_ranges), not from the conflist"
                ));
            }
        }
        Ok(())
    }

    /// The plane called `name`.
    pub fn plane(&self, name: &str) -> Option<&PlaneConf> {
        self.planes.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const CONF: &str = r#"{
        "cniVersion": "1.0.0", "name": "ctpath", "type": "ctpath",
        "etcd": { "endpoints": ["http://127.0.0.1:2379"] },
        "node": "node-a",
        "defaultPlanes": ["std"],
        "planes": {
            "std": { "ipam": { "type": "host-local", "dataDir": "/tmp/x" },
                     "securityGroups": ["default"] },
            "media": { "ipam": { "type": "host-local" } }
        },
        "runtimeConfig": {}
    }"#;

    fn error(from: &str, to: &str) -> ConfigError {
        assert!(CONF.contains(from), "{from}");
        NetConf::parse(CONF.replacen(from, to, 1).as_bytes()).unwrap_err()
    }

    #[test]
    fn parses_the_documented_form() {
        let conf = NetConf::parse(CONF.as_bytes()).unwrap();
        assert_eq!(conf.etcd.prefix, DEFAULT_ETCD_PREFIX);
        assert_eq!(conf.default_planes, ["std"]);
        assert_eq!(conf.plane("std").unwrap().ipam_type(), "host-local");
        assert_eq!(conf.plane("std").unwrap().security_groups, ["default"]);
        assert!(conf.plane("media").unwrap().security_groups.is_empty());
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        assert_eq!(
            error("\"1.0.0\"", "\"0.4.0\""),
            ConfigError::IncompatibleVersion("0.4.0".to_owned())
        );
        assert!(matches!(error("{", "["), ConfigError::Decode(_)));
        assert_eq!(
            error("\"runtimeConfig\"", "\"mtu\""),
            ConfigError::Unsupported {
                key: "mtu".to_owned(),
                value: "{}".to_owned()
            }
        );
        assert_eq!(
            error("[\"std\"]", "[\"control\"]").to_string(),
            "defaultPlanes: control is not one of planes"
        );
        assert_eq!(
            error("\"dataDir\"", "\"subnet\"").to_string(),
            "planes.std.ipam.subnet: the range comes from the cluster state (the node's \
             pod_ranges), not from the conflist"
        );
        assert_eq!(
            error("\"type\": \"host-local\" }", "\"dataDir\": \"/d\" }").to_string(),
            "planes.media.ipam.type is missing"
        );
        assert!(error("\"securityGroups\"", "\"securityGroup\"")
            .to_string()
            .contains("unknown field `securityGroup`"));
        assert_eq!(
            error("\"http://127.0.0.1:2379\"", "").to_string(),
            "etcd.endpoints is empty"
        );
        assert!(error("\"http://127.0.0.1:2379\"", "\"127.0.0.1\"")
            .to_string()
            .starts_with("etcd.endpoints: etcd endpoint \"127.0.0.1\": no port"));
    }
}
