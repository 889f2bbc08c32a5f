//! Where the plugin reads the cluster state and registers the pods it wires: the cluster-state
//! store the agents read (etcd, `ctpath_control::store`).
//!
//! Owns: the [`Registry`] seam the plugin's commands are written against, and its errors. A
//! registration is a read-modify-validate-write of the whole state: the pod is accepted only if
//! the state with it passes every rule of `ctpath_control::state` (addresses unique on their
//! plane, security groups known, ...), whatever other nodes register at the same time.

use ctpath_control::state::{ClusterState, Pod};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RegistryError {
    /// The store cannot be reached or did not answer in time: worth trying again.
    #[error("the cluster-state store is unavailable: {0}")]
    Unavailable(String),
    /// The state with the pod breaks its rules; `violations` lists them.
    #[error("the cluster state refuses pod {pod}")]
    Refused { pod: String, violations: String },
}

/// The cluster state and its pods, as the plugin uses them.
pub trait Registry {
    /// The cluster state as it is now.
    fn state(&self) -> Result<ClusterState, RegistryError>;
    /// Adds `pod`, replacing a pod of the same namespace and name, if the state stays valid.
    fn register(&self, pod: &Pod) -> Result<(), RegistryError>;
    /// Removes the pod `namespace/name` if `owned` says it is the caller's; whether it did.
    fn unregister(
        &self,
        namespace: &str,
        name: &str,
        owned: &dyn Fn(&Pod) -> bool,
    ) -> Result<bool, RegistryError>;
}
