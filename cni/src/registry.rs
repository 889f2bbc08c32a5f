//! Where the plugin reads the cluster state and registers the pods it wires: the state in etcd
//! that the agents watch, through `ctpath_control::store`.
//!
//! Owns: what a registration is, and what the store's errors mean to a runtime. A registration
//! is one read-modify-validate-write of the state ([`Store::update`]): the pod (replacing one of
//! the same namespace and name) is written only if the state with it passes every rule of
//! `ctpath_control::state` (addresses unique on their plane, security groups known, ...),
//! whatever other nodes write at the same time. An unregistration removes the pod only if the
//! caller owns it.

use ctpath_control::state::{ClusterState, Pod};
use ctpath_control::store::{Store, StoreError};
use thiserror::Error;

use crate::config::EtcdConf;

#[derive(Debug, Error)]
pub enum RegistryError {
    /// The store cannot be reached, did not answer, or kept changing under the write: worth
    /// trying again.
    #[error("the cluster-state store is unavailable: {0}")]
    Unavailable(#[source] StoreError),
    /// The state with the pod breaks its rules (or the store holds what is not a state).
    #[error("the cluster state refuses pod {pod}")]
    Refused {
        pod: String,
        #[source]
        source: StoreError,
    },
    /// What is in the store is not a valid state.
    #[error("the cluster state in the store is unusable: {0}")]
    Unusable(#[source] StoreError),
}

/// The cluster-state store of a conflist.
pub struct Registry {
    store: Store,
}

impl Registry {
    pub fn connect(conf: &EtcdConf) -> Result<Registry, RegistryError> {
        let store =
            Store::connect(&conf.endpoints, &conf.prefix).map_err(RegistryError::Unavailable)?;
        Ok(Registry { store })
    }

    /// The cluster state as it is now.
    pub fn state(&mut self) -> Result<ClusterState, RegistryError> {
        self.store
            .load()
            .map(|loaded| loaded.state)
            .map_err(|error| {
                if error.is_invalid_input() {
                    RegistryError::Unusable(error)
                } else {
                    RegistryError::Unavailable(error)
                }
            })
    }

    /// Adds `pod`, replacing a pod of the same namespace and name, if the state stays valid.
    pub fn register(&mut self, pod: &Pod) -> Result<(), RegistryError> {
        self.store
            .update(|state| {
                state
                    .pods
                    .retain(|other| (&other.namespace, &other.name) != (&pod.namespace, &pod.name));
                state.pods.push(pod.clone());
                Ok(())
            })
            .map(drop)
            .map_err(|error| {
                if error.is_invalid_input() {
                    RegistryError::Refused {
                        pod: format!("{}/{}", pod.namespace, pod.name),
                        source: error,
                    }
                } else {
                    RegistryError::Unavailable(error)
                }
            })
    }

    /// Removes the pod `namespace/name` if `owned` says it is the caller's; whether it did.
    pub fn unregister(
        &mut self,
        namespace: &str,
        name: &str,
        owned: &dyn Fn(&Pod) -> bool,
    ) -> Result<bool, RegistryError> {
        let mut removed = false;
        self.store
            .update(|state| {
                let before = state.pods.len();
                state
                    .pods
                    .retain(|pod| !(pod.namespace == namespace && pod.name == name && owned(pod)));
                removed = state.pods.len() != before;
                Ok(())
            })
            .map_err(|error| {
                if error.is_invalid_input() {
                    RegistryError::Unusable(error)
                } else {
                    RegistryError::Unavailable(error)
                }
            })?;
        Ok(removed)
    }
}
