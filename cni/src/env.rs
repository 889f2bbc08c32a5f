//! What the runtime tells the plugin through its environment (CNI spec 1.0.0, "Parameters"):
//! `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH`, and `CNI_ARGS` with
//! the pod's identity and its choice of planes and security groups.
//!
//! Owns: reading and checking those variables ([`Env::read`]) and the `CNI_ARGS` syntax
//! ([`CniArgs::parse`]). `CNI_ARGS` is `KEY=VALUE` pairs separated by `;`:
//!
//! - `K8S_POD_NAMESPACE`, `K8S_POD_NAME`: the pod (Kubernetes passes both).
//! - `CTPATH_PLANES=std,control,media`: the planes the pod gets, in order (the first is its
//!   primary plane); absent: the conflist's `defaultPlanes`.
//! - `CTPATH_SG_<plane>=sg1+sg2`: the security groups of the pod's interface on `<plane>`
//!   (`+`-separated; empty: none); absent: the plane's `securityGroups` in the conflist.
//!
//! Other keys (`IgnoreUnknown`, `K8S_POD_UID`, `K8S_POD_INFRA_CONTAINER_ID`, ...) are ignored; an
//! unknown `CTPATH_` key is an error, so a typo is not silently dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;

use thiserror::Error;

/// The `CNI_COMMAND`s of spec 1.0.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("CNI_COMMAND={0:?} is not one of ADD, DEL, CHECK, VERSION")]
    UnknownCommand(String),
    #[error(
        "CNI_CONTAINERID={0:?}: a container id is alphanumeric, '_', '.' and '-', starting \
         alphanumeric"
    )]
    BadContainerId(String),
    #[error("CNI_ARGS: {0}")]
    BadArgs(String),
}

/// The pod's choices and identity from `CNI_ARGS` (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub planes: Option<Vec<String>>,
    /// Per plane, the security groups given with `CTPATH_SG_<plane>`.
    pub security_groups: BTreeMap<String, Vec<String>>,
}

impl CniArgs {
    pub fn parse(text: &str) -> Result<CniArgs, EnvError> {
        let mut args = CniArgs::default();
        for pair in text.split(';').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| EnvError::BadArgs(format!("{pair:?} is not KEY=VALUE")))?;
            match key {
                "K8S_POD_NAMESPACE" => args.pod_namespace = Some(value.to_owned()),
                "K8S_POD_NAME" => args.pod_name = Some(value.to_owned()),
                "CTPATH_PLANES" => args.planes = Some(plane_list(value)?),
                _ => match key.strip_prefix("CTPATH_SG_") {
                    Some(plane) if !plane.is_empty() => {
                        let groups = value
                            .split('+')
                            .filter(|group| !group.is_empty())
                            .map(str::to_owned)
                            .collect();
                        args.security_groups.insert(plane.to_owned(), groups);
                    }
                    _ if key.starts_with("CTPATH_") => {
                        return Err(EnvError::BadArgs(format!(
                            "unknown key {key} (ctpath reads CTPATH_PLANES and CTPATH_SG_<plane>)"
                        )))
                    }
                    _ => {}
                },
            }
        }
        Ok(args)
    }
}

/// `std,control,media`: non-empty names, each once.
fn plane_list(value: &str) -> Result<Vec<String>, EnvError> {
    let mut planes: Vec<String> = Vec::new();
    for plane in value.split(',') {
        if plane.is_empty() {
            return Err(EnvError::BadArgs(format!(
                "CTPATH_PLANES={value:?} has an empty plane name"
            )));
        }
        if planes.iter().any(|seen| seen == plane) {
            return Err(EnvError::BadArgs(format!(
                "CTPATH_PLANES={value:?} names {plane} twice"
            )));
        }
        planes.push(plane.to_owned());
    }
    Ok(planes)
}

/// The environment of one invocation, checked for what its command needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    /// Absent only for DEL (the namespace may be gone).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
    /// `CNI_PATH`: where delegated plugins are looked up, in order.
    pub cni_path: Vec<PathBuf>,
}

impl Env {
    /// Reads the variables through `var` (`std::env::var` in the binary). VERSION needs only
    /// `CNI_COMMAND`, and gets an `Env` with the rest empty.
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Env, EnvError> {
        let get = |name: &'static str| {
            var(name)
                .filter(|value| !value.is_empty())
                .ok_or(EnvError::Missing(name))
        };
        let command = match get("CNI_COMMAND")?.as_str() {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            other => return Err(EnvError::UnknownCommand(other.to_owned())),
        };
        if command == Command::Version {
            return Ok(Env {
                command,
                container_id: String::new(),
                netns: None,
                ifname: String::new(),
                args: CniArgs::default(),
                cni_path: Vec::new(),
            });
        }
        let container_id = get("CNI_CONTAINERID")?;
        let valid_id = container_id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid_id {
            return Err(EnvError::BadContainerId(container_id));
        }
        let netns = match get("CNI_NETNS") {
            Ok(netns) => Some(PathBuf::from(netns)),
            Err(_) if command == Command::Del => None,
            Err(missing) => return Err(missing),
        };
        Ok(Env {
            command,
            container_id,
            netns,
            ifname: get("CNI_IFNAME")?,
            args: CniArgs::parse(&var("CNI_ARGS").unwrap_or_default())?,
            cni_path: std::env::split_paths(&get("CNI_PATH")?).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env, EnvError> {
        Env::read(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/pod"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=telco;K8S_POD_NAME=upf-0",
        ),
    ];

    #[test]
    fn add_reads_every_variable() {
        let env = env(ADD).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.netns, Some(PathBuf::from("/run/netns/pod")));
        assert_eq!(
            env.cni_path,
            [PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(env.args.pod_namespace.as_deref(), Some("telco"));
        assert_eq!(env.args.pod_name.as_deref(), Some("upf-0"));
        assert_eq!(env.args.planes, None);
    }

    #[test]
    fn missing_and_bad_variables_are_named() {
        let without = |name: &str| -> Vec<(&str, &str)> {
            ADD.iter()
                .copied()
                .filter(|(key, _)| *key != name)
                .collect()
        };
        assert_eq!(
            env(&without("CNI_NETNS")),
            Err(EnvError::Missing("CNI_NETNS"))
        );
        let mut del = without("CNI_NETNS");
        del[0] = ("CNI_COMMAND", "DEL");
        assert_eq!(
            env(&del).unwrap().netns,
            None,
            "DEL may come without a netns"
        );
        assert_eq!(
            env(&without("CNI_IFNAME")),
            Err(EnvError::Missing("CNI_IFNAME"))
        );
        let mut bad = ADD.to_vec();
        bad[1] = ("CNI_CONTAINERID", "../etc");
        assert_eq!(
            env(&bad),
            Err(EnvError::BadContainerId("../etc".to_owned()))
        );
        bad[0] = ("CNI_COMMAND", "GC");
        assert_eq!(env(&bad), Err(EnvError::UnknownCommand("GC".to_owned())));
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
    }

    #[test]
    fn planes_and_security_groups_from_args() {
        let args = CniArgs::parse(
            "CTPATH_PLANES=std,control,media;CTPATH_SG_media=sg1+sg2;CTPATH_SG_std=",
        )
        .unwrap();
        assert_eq!(args.planes.unwrap(), ["std", "control", "media"]);
        assert_eq!(args.security_groups["media"], ["sg1", "sg2"]);
        assert!(args.security_groups["std"].is_empty());
        assert!(!args.security_groups.contains_key("control"));
    }

    #[test]
    fn bad_args_are_refused_with_their_text() {
        let error = |text| CniArgs::parse(text).unwrap_err().to_string();
        assert_eq!(
            error("CTPATH_PLANES=std,,media"),
            "CNI_ARGS: CTPATH_PLANES=\"std,,media\" has an empty plane name"
        );
        assert_eq!(
            error("CTPATH_PLANES=std,std"),
            "CNI_ARGS: CTPATH_PLANES=\"std,std\" names std twice"
        );
        assert_eq!(
            error("CTPATH_PLANE=std"),
            "CNI_ARGS: unknown key CTPATH_PLANE (ctpath reads CTPATH_PLANES and CTPATH_SG_<plane>)"
        );
        assert_eq!(error("oops"), "CNI_ARGS: \"oops\" is not KEY=VALUE");
    }
}
