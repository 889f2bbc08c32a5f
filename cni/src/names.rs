//! The names and addresses the plugin derives, the same on every invocation so that DEL and
//! CHECK find what ADD made without keeping any state of their own:
//!
//! - **Host-side veth**: `ct` and the first 13 hex digits (52 bits) of FNV-1a 64 over
//!   `container id, NUL, plane`: 15 bytes, the most IFNAMSIZ allows. Two interfaces on one node
//!   share a name with probability about n²/2⁵³ (10⁻¹⁰ for a thousand); ADD then fails on the
//!   existing name rather than touching another pod's veth.
//! - **In-pod names**: the primary plane's interface is `CNI_IFNAME` (conventionally `eth0`);
//!   the i-th plane of the pod gets the same stem with the number raised by i (`eth1`, `eth2`,
//!   ...; a name without a trailing number counts from 0: `net` gives `net`, `net1`, ...), in
//!   the order of `CTPATH_PLANES` (or `defaultPlanes`).
//! - **Pod MAC**: `02:00` and the four bytes of the interface's IPv4 address (locally
//!   administered, unicast), as the project's states write them: unique on a plane because the
//!   address is.
//! - **Pod identity**: `K8S_POD_NAMESPACE`/`K8S_POD_NAME` when both are in `CNI_ARGS`, else the
//!   namespace `default` and the container id as the name.
//!
//! Owns those rules; nothing here touches the system. Never panics.

use std::hash::Hasher;
use std::net::Ipv4Addr;

use ctpath_control::state::MacAddr;
use thiserror::Error;

use crate::env::CniArgs;

/// Prefix of every host-side veth the plugin creates.
pub const HOST_PREFIX: &str = "ct";
/// IFNAMSIZ less the terminating NUL.
const MAX_IFNAME: usize = 15;
/// The namespace of a pod whose runtime gave no Kubernetes identity.
pub const DEFAULT_POD_NAMESPACE: &str = "default";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error(
        "CNI_IFNAME {ifname:?} gives {name:?} for the pod's plane {index}, longer than 15 bytes"
    )]
    TooLong {
        ifname: String,
        index: usize,
        name: String,
    },
}

/// The host-side veth of `container_id`'s interface on `plane`.
pub fn host_interface(container_id: &str, plane: &str) -> String {
    let mut hash = fnv::FnvHasher::default();
    hash.write(container_id.as_bytes());
    hash.write(&[0]);
    hash.write(plane.as_bytes());
    let hex = format!("{:016x}", hash.finish());
    format!("{HOST_PREFIX}{}", &hex[..MAX_IFNAME - HOST_PREFIX.len()])
}

/// The in-pod names of `count` planes, the first being `ifname`.
pub fn pod_interfaces(ifname: &str, count: usize) -> Result<Vec<String>, NameError> {
    let stem = ifname.trim_end_matches(|c: char| c.is_ascii_digit());
    let first: usize = ifname[stem.len()..].parse().unwrap_or(0);
    (0..count)
        .map(|index| {
            let name = if index == 0 {
                ifname.to_owned()
            } else {
                format!("{stem}{}", first + index)
            };
            if name.len() > MAX_IFNAME {
                return Err(NameError::TooLong {
                    ifname: ifname.to_owned(),
                    index,
                    name,
                });
            }
            Ok(name)
        })
        .collect()
}

/// The MAC of the pod's interface with address `ip`.
pub fn pod_mac(ip: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = ip.octets();
    MacAddr([0x02, 0x00, a, b, c, d])
}

/// The pod's namespace and name.
pub fn pod_identity(args: &CniArgs, container_id: &str) -> (String, String) {
    match (&args.pod_namespace, &args.pod_name) {
        (Some(namespace), Some(name)) => (namespace.clone(), name.clone()),
        _ => (DEFAULT_POD_NAMESPACE.to_owned(), container_id.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_fixed_short_and_distinct() {
        let name = host_interface("0123456789abcdef", "std");
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("ct"));
        assert_eq!(
            name,
            host_interface("0123456789abcdef", "std"),
            "deterministic"
        );
        // FNV-1a 64 of "c1\0std" (the function is fixed: a change would orphan veths).
        assert_eq!(host_interface("c1", "std"), "ct6331c5be137c1");
        let mut seen = std::collections::HashSet::new();
        for container in 0..2000 {
            for plane in ["std", "control", "media"] {
                assert!(seen.insert(host_interface(&format!("c{container}"), plane)));
            }
        }
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(host_interface("ab", "c"), host_interface("a", "bc"));
    }

    #[test]
    fn pod_names_count_up_from_cni_ifname() {
        assert_eq!(pod_interfaces("eth0", 3).unwrap(), ["eth0", "eth1", "eth2"]);
        assert_eq!(pod_interfaces("net", 2).unwrap(), ["net", "net1"]);
        assert_eq!(pod_interfaces("eth9", 2).unwrap(), ["eth9", "eth10"]);
        assert_eq!(
            pod_interfaces("averylongname99", 2),
            Err(NameError::TooLong {
                ifname: "averylongname99".to_owned(),
                index: 1,
                name: "averylongname100".to_owned()
            })
        );
    }

    #[test]
    fn mac_follows_the_address() {
        assert_eq!(
            pod_mac("10.244.1.2".parse().unwrap()).to_string(),
            "02:00:0a:f4:01:02"
        );
    }

    #[test]
    fn identity_prefers_kubernetes() {
        let mut args = CniArgs::default();
        assert_eq!(
            pod_identity(&args, "abc"),
            ("default".to_owned(), "abc".to_owned())
        );
        args.pod_namespace = Some("telco".to_owned());
        assert_eq!(pod_identity(&args, "abc").1, "abc", "both or neither");
        args.pod_name = Some("upf-0".to_owned());
        assert_eq!(
            pod_identity(&args, "abc"),
            ("telco".to_owned(), "upf-0".to_owned())
        );
    }
}
