//! The cluster state in etcd (v3 API): one key per object of schema v1 under a prefix
//! ([`DEFAULT_PREFIX`], `/ctpath/v1`), each value the JSON of that object as the YAML schema
//! writes it:
//!
//! ```text
//! {prefix}/networks/{name}          a network plane
//! {prefix}/nodes/{name}             a node
//! {prefix}/security_groups/{name}   a security group
//! {prefix}/pods/{namespace}/{name}  a pod
//! {prefix}/conntrack                the conntrack settings (absent: the defaults)
//! {prefix}/services/{name}          a service
//! ```
//!
//! Owns: that key layout and the values' encoding; reading the keys back as one
//! [`ClusterState`], checked by the state's own validation (a violation is reported at the key
//! of the object it is in, with the path inside the object; a value that does not parse, an
//! unknown key or a name that disagrees with its key is reported at the key); the
//! read-modify-validate-write transaction ([`Store::update`], [`Store::replace`]); and the
//! watch that follows the prefix for the agent ([`watch`]).
//!
//! Writes are one transaction each, guarded on what was read: it applies only if no key under
//! the prefix was written since the read (a compare on the prefix's highest mod revision:
//! every put, every new key, fails it) and none of the keys read was deleted that the result
//! depends on (networks, nodes, security groups: what others name; the pods a service's
//! `backends` list names) or that the write itself puts or deletes (a compare on each one's
//! mod revision); another pod deleted meanwhile cannot make the result invalid. Otherwise the
//! whole read-modify-write is done again, at most [`ATTEMPTS`] times. Only keys whose value changes are written. etcd caps the compares and
//! the operations of one transaction (`--max-txn-ops`, 128 by default): a state written whole
//! with more objects than that, or with that many networks, nodes and security groups, needs
//! the cap raised; so does a transaction larger than `--max-request-bytes` (1.5 MiB by
//! default). Responses up to [`MAX_RESPONSE_BYTES`] are read (gRPC's default is 4 MiB).
//!
//! The client is async (etcd-client on tokio); [`Store`] wraps it in a current-thread runtime
//! of its own and is blocking, for the CLI and the agent (and writers such as a CNI plugin),
//! which are synchronous. [`watch`] runs on a thread of its own and hands each state over a channel.
//!
//! Nothing here panics on any content of etcd.

use std::{
    collections::{BTreeMap, BTreeSet},
    error::Error as StdError,
    fmt,
    hash::{BuildHasher, RandomState},
    sync::mpsc,
    time::Duration,
};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions,
};
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

use crate::state::{
    self, ClusterState, ConntrackSettings, Network, Node, Pod, SchemaVersion, SecurityGroup,
    Service, Violation,
};

/// The prefix the keys live under unless told otherwise.
pub const DEFAULT_PREFIX: &str = "/ctpath/v1";
/// Read-modify-write attempts before [`StoreError::Conflict`].
pub const ATTEMPTS: u32 = 5;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keep-alive pings and how long one may go unanswered: a connection whose peer went
/// silent is given up after about the sum. etcd closes connections that ping more often than its
/// `--grpc-keepalive-min-time` (5 s by default).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response the client takes (a list of the whole prefix, a watch response with
/// every key a transaction wrote). gRPC's default, 4 MiB, is a state of a few thousand pods
/// with their security groups: a state of 10,000 pods and 50,000 rules lists as about 7 MB
/// (measured by `ctpath-bench scale`).
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// Reconnection backoff of the watch: from the first delay, doubling, up to the last (each
/// with up to half of it again as jitter).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What went wrong reading or writing the state in etcd.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("starting the etcd client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// An endpoint that is not `[http://|https://]HOST:PORT`.
    #[error(
        "etcd endpoint {endpoint:?}: {reason} (expected http://HOST:PORT or https://HOST:PORT)"
    )]
    Endpoint {
        endpoint: String,
        reason: &'static str,
    },
    /// etcd could not be reached, or refused a request.
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    /// Keys under the prefix whose key or value is not an object of schema v1.
    #[error("{}", join(.0))]
    Corrupt(Vec<KeyProblem>),
    /// The objects parse but the state they make breaks the schema's rules.
    #[error("invalid cluster state: {}", join(.0))]
    Invalid(Vec<KeyProblem>),
    /// A name that cannot be part of a key (`path` is the state's, e.g. `pods[2].name`).
    #[error("{path}: {name:?} cannot be part of an etcd key (it is empty or contains '/')")]
    KeyName { path: String, name: String },
    /// The closure of [`Store::update`] refused the change.
    #[error("update refused: {0}")]
    Update(#[source] Box<dyn StdError + Send + Sync>),
    /// Every attempt of a read-modify-write found the state changed when it wrote.
    #[error("the state under {prefix} changed during each of {attempts} attempts to update it")]
    Conflict { prefix: String, attempts: u32 },
}

impl StoreError {
    /// Whether the content (of etcd, or of the state to write) is at fault rather than etcd or
    /// the network.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt(_)
                | StoreError::Invalid(_)
                | StoreError::KeyName { .. }
                | StoreError::Endpoint { .. }
        )
    }
}

/// A problem at one key: `KEY: PATH: MESSAGE`, the path inside the object (none when the
/// problem is the value as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    pub key: String,
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {path}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

fn join(problems: &[KeyProblem]) -> String {
    let listed: Vec<String> = problems.iter().map(KeyProblem::to_string).collect();
    listed.join("; ")
}

/// A state read from etcd, at the store's revision of the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub state: ClusterState,
    pub revision: i64,
}

/// What a write did: the revision it made (the one read, when nothing changed) and how many
/// keys it put and deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub revision: i64,
    pub put: usize,
    pub deleted: usize,
}

/// The keys under a prefix, for one state.
#[derive(Debug, Clone)]
struct Layout {
    /// Without a trailing `/`.
    prefix: String,
}

/// The keys under the prefix with their values and mod revisions, at `revision`.
struct Listing {
    values: BTreeMap<String, (Vec<u8>, i64)>,
    revision: i64,
}

impl Layout {
    fn new(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// What every key starts with: the prefix and a `/`.
    fn dir(&self) -> String {
        format!("{}/", self.prefix)
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}/{kind}/{name}", self.prefix)
    }

    fn pod_key(&self, pod: &Pod) -> String {
        self.key("pods", &format!("{}/{}", pod.namespace, pod.name))
    }

    /// Whether the key is of an object that others refer to by name (a network, a node, a
    /// security group): deleting one can make the rest invalid. Deleting the conntrack
    /// settings or a service cannot, nor a pod unless a service lists it
    /// ([`Layout::listed_pods`]).
    fn is_referenced(&self, key: &str) -> bool {
        key.strip_prefix(&self.dir()).is_some_and(|rest| {
            ["networks/", "nodes/", "security_groups/"]
                .iter()
                .any(|kind| rest.starts_with(kind))
        })
    }

    /// The keys of the pods that `state`'s services name in their `backends` lists: deleting
    /// one of them makes `state` invalid.
    fn listed_pods(&self, state: &ClusterState) -> BTreeSet<String> {
        state
            .services
            .iter()
            .flat_map(|service| service.backends.iter().flatten())
            .map(|backend| self.key("pods", &format!("{}/{}", backend.namespace, backend.pod)))
            .collect()
    }

    fn conntrack_key(&self) -> String {
        format!("{}/conntrack", self.prefix)
    }

    /// Every object of `state` as its key and JSON value.
    fn encode(&self, state: &ClusterState) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
        fn checked(path: String, name: &str) -> Result<&str, StoreError> {
            if name.is_empty() || name.contains('/') {
                Err(StoreError::KeyName {
                    path,
                    name: name.to_owned(),
                })
            } else {
                Ok(name)
            }
        }
        fn json(value: &impl Serialize) -> Vec<u8> {
            serde_json::to_vec(value).expect("schema objects are plain data and always serialize")
        }
        let mut keys = BTreeMap::new();
        for (i, network) in state.networks.iter().enumerate() {
            let name = checked(format!("networks[{i}].name"), &network.name)?;
            keys.insert(self.key("networks", name), json(network));
        }
        for (i, node) in state.nodes.iter().enumerate() {
            let name = checked(format!("nodes[{i}].name"), &node.name)?;
            keys.insert(self.key("nodes", name), json(node));
        }
        for (i, group) in state.security_groups.iter().enumerate() {
            let name = checked(format!("security_groups[{i}].name"), &group.name)?;
            keys.insert(self.key("security_groups", name), json(group));
        }
        for (i, pod) in state.pods.iter().enumerate() {
            checked(format!("pods[{i}].namespace"), &pod.namespace)?;
            checked(format!("pods[{i}].name"), &pod.name)?;
            keys.insert(self.pod_key(pod), json(pod));
        }
        for (i, service) in state.services.iter().enumerate() {
            let name = checked(format!("services[{i}].name"), &service.name)?;
            keys.insert(self.key("services", name), json(service));
        }
        keys.insert(self.conntrack_key(), json(&state.conntrack));
        Ok(keys)
    }

    /// The state the keys make, validated.
    fn decode<'v>(
        &self,
        values: impl IntoIterator<Item = (&'v String, &'v Vec<u8>)>,
    ) -> Result<ClusterState, StoreError> {
        let objects: Vec<_> = values
            .into_iter()
            .map(|(key, value)| self.object(key, value))
            .collect();
        self.assemble(&objects)
    }

    /// The object at `key`, parsed from its value.
    fn object(&self, key: &str, value: &[u8]) -> Result<Object, KeyProblem> {
        let dir = self.dir();
        let rest = key.strip_prefix(&dir).unwrap_or(key);
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["networks", name] => parse::<Network>(key, value).and_then(|network| {
                named(key, "network", name, &network.name)?;
                Ok(Object::Network(network))
            }),
            ["nodes", name] => parse::<Node>(key, value).and_then(|node| {
                named(key, "node", name, &node.name)?;
                Ok(Object::Node(node))
            }),
            ["security_groups", name] => parse::<SecurityGroup>(key, value).and_then(|group| {
                named(key, "security group", name, &group.name)?;
                Ok(Object::SecurityGroup(group))
            }),
            ["pods", namespace, name] => parse::<Pod>(key, value).and_then(|pod| {
                named(key, "pod namespace", namespace, &pod.namespace)?;
                named(key, "pod", name, &pod.name)?;
                Ok(Object::Pod(Box::new(pod)))
            }),
            ["conntrack"] => parse::<ConntrackSettings>(key, value).map(Object::Conntrack),
            ["services", name] => parse::<Service>(key, value).and_then(|service| {
                named(key, "service", name, &service.name)?;
                Ok(Object::Service(service))
            }),
            _ => Err(KeyProblem {
                key: key.to_owned(),
                path: None,
                message:
                    "not a key of schema v1 (networks/NAME, nodes/NAME, security_groups/NAME, \
                     pods/NAMESPACE/NAME, conntrack, services/NAME)"
                        .to_owned(),
            }),
        }
    }

    /// The state `objects` (parsed from the keys, in key order) make, validated.
    fn assemble<'o>(
        &self,
        objects: impl IntoIterator<Item = &'o Result<Object, KeyProblem>>,
    ) -> Result<ClusterState, StoreError> {
        let mut state = ClusterState {
            version: SchemaVersion::V1,
            networks: Vec::new(),
            nodes: Vec::new(),
            security_groups: Vec::new(),
            pods: Vec::new(),
            conntrack: ConntrackSettings::default(),
            services: Vec::new(),
        };
        let mut problems = Vec::new();
        for object in objects {
            match object {
                Ok(Object::Network(network)) => state.networks.push(network.clone()),
                Ok(Object::Node(node)) => state.nodes.push(node.clone()),
                Ok(Object::SecurityGroup(group)) => state.security_groups.push(group.clone()),
                Ok(Object::Pod(pod)) => state.pods.push((**pod).clone()),
                Ok(Object::Conntrack(conntrack)) => state.conntrack = *conntrack,
                Ok(Object::Service(service)) => state.services.push(service.clone()),
                Err(problem) => problems.push(problem.clone()),
            }
        }
        if !problems.is_empty() {
            return Err(StoreError::Corrupt(problems));
        }
        self.validated(state)
    }

    /// `state` if it passes the schema's rules, else its violations at their keys.
    fn validated(&self, state: ClusterState) -> Result<ClusterState, StoreError> {
        let violations = state.violations();
        if violations.is_empty() {
            Ok(state)
        } else {
            Err(self.invalid(&state, violations))
        }
    }

    /// The state's violations at the keys of the objects they are in.
    fn invalid(&self, state: &ClusterState, violations: Vec<Violation>) -> StoreError {
        StoreError::Invalid(
            violations
                .into_iter()
                .map(|violation| self.at_key(state, violation))
                .collect(),
        )
    }

    /// `pods[2].interfaces[0].ip` becomes the pod's key and `interfaces[0].ip`.
    fn at_key(&self, state: &ClusterState, violation: Violation) -> KeyProblem {
        let (head, tail) = match violation.path.split_once('.') {
            Some((head, tail)) => (head, Some(tail.to_owned())),
            None => (violation.path.as_str(), None),
        };
        let index = |kind: &str| -> Option<usize> {
            head.strip_prefix(kind)?
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse()
                .ok()
        };
        let key = if head == "conntrack" {
            Some(self.conntrack_key())
        } else if let Some(network) = index("networks").and_then(|i| state.networks.get(i)) {
            Some(self.key("networks", &network.name))
        } else if let Some(node) = index("nodes").and_then(|i| state.nodes.get(i)) {
            Some(self.key("nodes", &node.name))
        } else if let Some(group) =
            index("security_groups").and_then(|i| state.security_groups.get(i))
        {
            Some(self.key("security_groups", &group.name))
        } else if let Some(service) = index("services").and_then(|i| state.services.get(i)) {
            Some(self.key("services", &service.name))
        } else {
            index("pods")
                .and_then(|i| state.pods.get(i))
                .map(|pod| self.pod_key(pod))
        };
        match key {
            Some(key) => KeyProblem {
                key,
                path: tail,
                message: violation.message,
            },
            None => KeyProblem {
                key: self.prefix.clone(),
                path: Some(violation.path),
                message: violation.message,
            },
        }
    }
}

/// Parses one value, naming the key and the path inside the value of what does not parse.
fn parse<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, KeyProblem> {
    let mut deserializer = serde_json::Deserializer::from_slice(value);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = state::yaml_path(error.path());
        KeyProblem {
            key: key.to_owned(),
            path: (path != ".").then_some(path),
            message: error.into_inner().to_string(),
        }
    })
}

/// One key's object of the state.
#[derive(Debug)]
enum Object {
    Network(Network),
    Node(Node),
    SecurityGroup(SecurityGroup),
    Pod(Box<Pod>),
    Conntrack(ConntrackSettings),
    Service(Service),
}

/// Checks that a value names the object its key names.
fn named(key: &str, what: &str, in_key: &str, in_value: &str) -> Result<(), KeyProblem> {
    if in_key == in_value {
        Ok(())
    } else {
        Err(KeyProblem {
            key: key.to_owned(),
            path: None,
            message: format!("the key names {what} {in_key}, the value {in_value}"),
        })
    }
}

fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
        // Only while a stream (the watch) is open: etcd also closes connections that ping
        // without one.
        .with_keep_alive_while_idle(false)
}

/// The keys under the prefix, with their values and mod revisions.
async fn list(client: &mut Client, layout: &Layout) -> Result<Listing, etcd_client::Error> {
    let response = client
        .kv_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
        .get(layout.dir(), Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = response.header().map_or(0, |header| header.revision());
    let values = response
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                (kv.value().to_vec(), kv.mod_revision()),
            )
        })
        .collect();
    Ok(Listing { values, revision })
}

/// A blocking client of the state in etcd.
pub struct Store {
    runtime: tokio::runtime::Runtime,
    client: Client,
    endpoints: String,
    layout: Layout,
}

impl Store {
    /// Connects to the etcd cluster at `endpoints` (URLs such as `http://127.0.0.1:2379`), for
    /// the state under `prefix`.
    pub fn connect(endpoints: &[String], prefix: &str) -> Result<Store, StoreError> {
        check_endpoints(endpoints)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StoreError::Runtime)?;
        let joined = endpoints.join(",");
        let client = runtime
            .block_on(Client::connect(endpoints, Some(connect_options())))
            .map_err(|source| StoreError::Etcd {
                endpoints: joined.clone(),
                source,
            })?;
        Ok(Store {
            runtime,
            client,
            endpoints: joined,
            layout: Layout::new(prefix),
        })
    }

    /// The prefix of the keys, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.layout.prefix
    }

    fn etcd_error(&self, source: etcd_client::Error) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            source,
        }
    }

    fn list(&mut self) -> Result<Listing, StoreError> {
        let listing = self.runtime.block_on(list(&mut self.client, &self.layout));
        listing.map_err(|source| self.etcd_error(source))
    }

    /// The state under the prefix and the revision it was read at. An empty prefix is the
    /// empty state.
    pub fn load(&mut self) -> Result<Loaded, StoreError> {
        let listing = self.list()?;
        let state = self
            .layout
            .decode(listing.values.iter().map(|(k, (v, _))| (k, v)))?;
        Ok(Loaded {
            state,
            revision: listing.revision,
        })
    }

    /// Reads the state, hands it to `change`, validates the result and writes the keys that
    /// changed in one transaction guarded on what was read; when the state changed in between,
    /// does it all again (`change` is called once per attempt, on the fresh state), at most
    /// [`ATTEMPTS`] times. An error of `change` ends it, as [`StoreError::Update`].
    pub fn update<F>(&mut self, mut change: F) -> Result<Written, StoreError>
    where
        F: FnMut(&mut ClusterState) -> Result<(), Box<dyn StdError + Send + Sync>>,
    {
        self.write(|layout, listing| {
            let mut state = layout.decode(listing.values.iter().map(|(k, (v, _))| (k, v)))?;
            change(&mut state).map_err(StoreError::Update)?;
            Ok(state)
        })
    }

    /// Makes `state` the state under the prefix, in one transaction: puts the objects that are
    /// new or changed, deletes the keys it does not have (whatever their content). Retried
    /// like [`Store::update`] when the keys change in between.
    pub fn replace(&mut self, state: &ClusterState) -> Result<Written, StoreError> {
        self.write(|_, _| Ok(state.clone()))
    }

    fn write(
        &mut self,
        mut make: impl FnMut(&Layout, &Listing) -> Result<ClusterState, StoreError>,
    ) -> Result<Written, StoreError> {
        for attempt in 1..=ATTEMPTS {
            let listing = self.list()?;
            let state = self.layout.validated(make(&self.layout, &listing)?)?;
            let wanted = self.layout.encode(&state)?;
            let puts: Vec<(&String, &Vec<u8>)> = wanted
                .iter()
                .filter(|(key, value)| listing.values.get(*key).map(|(v, _)| v) != Some(value))
                .collect();
            let deletes: Vec<&String> = listing
                .values
                .keys()
                .filter(|key| !wanted.contains_key(*key))
                .collect();
            let (put, deleted) = (puts.len(), deletes.len());
            if put + deleted == 0 {
                return Ok(Written {
                    revision: listing.revision,
                    put,
                    deleted,
                });
            }
            // Nothing under the prefix written since the read (a put, a new key), and none of
            // the keys read deleted that the result depends on or that this write touches.
            let mut guard = vec![Compare::mod_revision(
                self.layout.dir(),
                CompareOp::Less,
                listing.revision + 1,
            )
            .with_prefix()];
            let touched =
                |key: &String| puts.iter().any(|(k, _)| *k == key) || deletes.contains(&key);
            let listed_pods = self.layout.listed_pods(&state);
            guard.extend(
                listing
                    .values
                    .iter()
                    .filter(|(key, _)| {
                        self.layout.is_referenced(key) || listed_pods.contains(*key) || touched(key)
                    })
                    .map(|(key, (_, mod_revision))| {
                        Compare::mod_revision(key.as_str(), CompareOp::Equal, *mod_revision)
                    }),
            );
            let operations: Vec<TxnOp> = puts
                .iter()
                .map(|(key, value)| TxnOp::put(key.as_str(), value.as_slice(), None))
                .chain(deletes.iter().map(|key| TxnOp::delete(key.as_str(), None)))
                .collect();
            let txn = Txn::new().when(guard).and_then(operations);
            let response = self.runtime.block_on(self.client.txn(txn));
            let response = response.map_err(|source| self.etcd_error(source))?;
            if response.succeeded() {
                return Ok(Written {
                    revision: response.header().map_or(0, |header| header.revision()),
                    put,
                    deleted,
                });
            }
            tracing::debug!(
                attempt,
                prefix = self.layout.prefix,
                "the state changed since it was read: reading it again"
            );
            std::thread::sleep(jittered(BACKOFF_FIRST / 10 * attempt));
        }
        Err(StoreError::Conflict {
            prefix: self.layout.prefix.clone(),
            attempts: ATTEMPTS,
        })
    }
}

/// A state seen by [`watch`]: the state under the prefix at `revision`, or why the keys there
/// do not make a valid one.
#[derive(Debug)]
pub struct Observed {
    pub revision: i64,
    pub state: Result<ClusterState, StoreError>,
}

/// Follows the state under `prefix` on a thread of its own: lists it, sends it, then watches
/// from the next revision and sends the state after every revision that changes a key. After
/// a lost connection it reconnects (exponential backoff with jitter, up to
/// [`BACKOFF_MAX`]) and resumes from the last revision seen; when that revision has been
/// compacted away it lists again. It logs each of these. The thread ends when the receiver is
/// dropped (noticed at its next send).
pub fn watch(endpoints: &[String], prefix: &str) -> Result<mpsc::Receiver<Observed>, StoreError> {
    check_endpoints(endpoints)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StoreError::Runtime)?;
    let (sender, receiver) = mpsc::channel();
    let follower = Follower {
        endpoints: endpoints.to_vec(),
        layout: Layout::new(prefix),
        objects: BTreeMap::new(),
        revision: None,
        sender,
    };
    std::thread::Builder::new()
        .name("etcd-watch".to_owned())
        .spawn(move || runtime.block_on(follower.run()))
        .map_err(StoreError::Runtime)?;
    Ok(receiver)
}

/// Refuses endpoints that can never be reached (rather than retrying them for ever): each must
/// be `HOST:PORT`, with `http://` or `https://` before it or nothing (etcd-client's default is
/// http), and nothing after it; at least one is needed.
pub fn check_endpoints(endpoints: &[String]) -> Result<(), StoreError> {
    let refuse = |endpoint: &str, reason| StoreError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    if endpoints.is_empty() {
        return Err(refuse("", "no endpoint given"));
    }
    for endpoint in endpoints {
        let authority = match endpoint.split_once("://") {
            Some(("http" | "https", rest)) => rest,
            Some(_) => return Err(refuse(endpoint, "the scheme is neither http nor https")),
            None => endpoint.as_str(),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains('/') {
            return Err(refuse(endpoint, "an endpoint has no path"));
        }
        let Some((host, port)) = authority.rsplit_once(':') else {
            return Err(refuse(endpoint, "no port"));
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(refuse(endpoint, "no host"));
        }
        if port.parse::<u16>().map_or(true, |port| port == 0) {
            return Err(refuse(endpoint, "the port is not a number from 1 to 65535"));
        }
    }
    Ok(())
}

/// The watch's own copy of the keys, and where it is.
struct Follower {
    endpoints: Vec<String>,
    layout: Layout,
    /// Each key's object, parsed when it was put (a revision parses only what it changed).
    objects: BTreeMap<String, Result<Object, KeyProblem>>,
    /// The last revision seen; none until listed (and again after a compaction).
    revision: Option<i64>,
    sender: mpsc::Sender<Observed>,
}

/// Why a session with etcd ended without an error of the connection.
enum Ended {
    /// The agent is gone.
    Unwatched,
    /// Revisions after the last one seen were compacted away.
    Compacted,
}

impl Follower {
    async fn run(mut self) {
        let mut delay = BACKOFF_FIRST;
        let mut relist = false;
        loop {
            match self.session(relist, &mut delay).await {
                Ok(Ended::Unwatched) => return,
                Ok(Ended::Compacted) => {
                    tracing::warn!(
                        revision = self.revision,
                        "revisions after the last one seen were compacted away: listing again"
                    );
                    self.revision = None;
                    relist = true;
                }
                Err(error) => {
                    let wait = jittered(delay);
                    let what = if self.revision.is_some() {
                        "connection to etcd lost"
                    } else {
                        "etcd not reached (nothing listed yet)"
                    };
                    tracing::warn!(
                        endpoints = self.endpoints.join(","),
                        revision = self.revision,
                        %error,
                        "{what}: retrying in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Connects, lists when there is nothing to resume from, and watches until the stream
    /// ends. `delay` goes back to the first backoff once etcd answers.
    async fn session(&mut self, relist: bool, delay: &mut Duration) -> Result<Ended, String> {
        let mut client = Client::connect(&self.endpoints, Some(connect_options()))
            .await
            .map_err(|error| error.to_string())?;
        let resumed = self.revision.is_some();
        let revision = match self.revision {
            // A watch from the revision a compaction kept would miss a deletion made at it
            // (compaction drops the tombstones it keeps); the revision seen last must be there.
            Some(revision) if compacted(&mut client, &self.layout, revision).await? => {
                return Ok(Ended::Compacted)
            }
            Some(revision) => revision,
            None => {
                let listing = list(&mut client, &self.layout)
                    .await
                    .map_err(|error| error.to_string())?;
                *delay = BACKOFF_FIRST;
                self.objects = listing
                    .values
                    .into_iter()
                    .map(|(key, (value, _))| {
                        let object = self.layout.object(&key, &value);
                        (key, object)
                    })
                    .collect();
                if relist {
                    tracing::info!("relisted after compaction at revision {}", listing.revision);
                } else {
                    tracing::info!("listed at revision {}", listing.revision);
                }
                self.revision = Some(listing.revision);
                if !self.send(listing.revision) {
                    return Ok(Ended::Unwatched);
                }
                listing.revision
            }
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let (_watcher, mut stream) = client
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .watch(self.layout.dir(), Some(options))
            .await
            .map_err(|error| error.to_string())?;
        *delay = BACKOFF_FIRST;
        if resumed {
            tracing::info!("connection to etcd resumed at revision {revision}");
        }
        loop {
            let response = stream
                .message()
                .await
                .map_err(|error| error.to_string())?
                .ok_or("the watch stream ended")?;
            if response.canceled() {
                if response.compact_revision() > 0 {
                    return Ok(Ended::Compacted);
                }
                return Err(format!("watch canceled: {}", response.cancel_reason()));
            }
            let mut newest = None;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                match event.event_type() {
                    EventType::Put => {
                        let object = self.layout.object(&key, kv.value());
                        self.objects.insert(key, object)
                    }
                    EventType::Delete => self.objects.remove(&key),
                };
                newest = newest.max(Some(kv.mod_revision()));
            }
            if let Some(newest) = newest {
                self.revision = Some(newest);
                if !self.send(newest) {
                    return Ok(Ended::Unwatched);
                }
            }
        }
    }

    /// Sends the state the keys make now; false when nobody listens any more.
    fn send(&self, revision: i64) -> bool {
        let state = self.layout.assemble(self.objects.values());
        self.sender.send(Observed { revision, state }).is_ok()
    }
}

/// Whether `revision` of the prefix was compacted away.
async fn compacted(client: &mut Client, layout: &Layout, revision: i64) -> Result<bool, String> {
    let at_revision = GetOptions::new()
        .with_prefix()
        .with_revision(revision)
        .with_keys_only()
        .with_limit(1);
    match client.get(layout.dir(), Some(at_revision)).await {
        Ok(_) => Ok(false),
        Err(etcd_client::Error::GRpcStatus(status)) if status.code() == tonic::Code::OutOfRange => {
            Ok(true)
        }
        Err(error) => Err(error.to_string()),
    }
}

/// `delay` plus up to half of it again, at random.
fn jittered(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    delay + delay.mul_f64((random % 1000) as f64 / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_that_cannot_be_reached_are_refused() {
        let check = |endpoints: &[&str]| {
            check_endpoints(&endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>())
                .map_err(|error| error.to_string())
        };
        for good in [
            &["http://127.0.0.1:2379"][..],
            &["https://etcd-0.example:2379/", "10.0.0.2:2379"],
            &["http://[::1]:2379"],
        ] {
            assert_eq!(check(good), Ok(()), "{good:?}");
        }
        for (bad, reason) in [
            (&[][..], "no endpoint given"),
            (&["127.0.0.1"], "no port"),
            (&["ftp://127.0.0.1:2379"], "the scheme"),
            (&["http://127.0.0.1:2379/v3"], "no path"),
            (&["http://:2379"], "no host"),
            (&["http://127.0.0.1:99999"], "the port"),
            (&["http://127.0.0.1:2379", "etcd"], "\"etcd\": no port"),
        ] {
            let error = check(bad).unwrap_err();
            assert!(error.contains(reason), "{bad:?}: {error}");
        }
        assert!(StoreError::Endpoint {
            endpoint: String::new(),
            reason: "no port"
        }
        .is_invalid_input());
    }

    const STATE: &str = "\
version: 1
networks:
  - { name: std, vni: 100, cidr: 10.244.0.0/16, gateway: 10.244.0.1 }
nodes:
  - { name: node-a, underlay_interface: eth0, underlay_ip: 192.168.77.1 }
security_groups:
  - { name: web, rules: [{ direction: ingress, protocol: tcp, ports: \"80-90\" }] }
pods:
  - name: web-0
    namespace: shop
    node: node-a
    interfaces:
      - network: std
        host_interface: vweb0
        ip: 10.244.1.2
        mac: \"02:00:0a:f4:01:02\"
        security_groups: [web]
        allowed_address_pairs: [{ ip: 10.244.1.100 }, { ip: 10.244.9.0/24 }]
";

    fn values(layout: &Layout, state: &ClusterState) -> BTreeMap<String, Vec<u8>> {
        layout.encode(state).unwrap()
    }

    #[test]
    fn objects_round_trip_through_their_keys() {
        let layout = Layout::new("/ctpath/v1/");
        let state = ClusterState::from_yaml_str(STATE).unwrap();
        let keys = values(&layout, &state);
        assert_eq!(
            keys.keys().collect::<Vec<_>>(),
            [
                "/ctpath/v1/conntrack",
                "/ctpath/v1/networks/std",
                "/ctpath/v1/nodes/node-a",
                "/ctpath/v1/pods/shop/web-0",
                "/ctpath/v1/security_groups/web",
            ]
        );
        assert_eq!(layout.decode(&keys).unwrap(), state);
        // The YAML written back loads as the same state.
        assert_eq!(
            ClusterState::from_yaml_str(&state.to_yaml()).unwrap(),
            state
        );
    }

    /// `STATE` with two services, one by selector, one listing its backend.
    fn with_services() -> ClusterState {
        let yaml = format!(
            "{STATE}    labels: {{ app: web }}
services:
  - {{ name: web, network: std, vip: 10.96.0.10, ports: [{{ port: 80, protocol: tcp }}], selector: {{ app: web }} }}
  - {{ name: web-all, network: std, vip: 10.96.0.11, all_ports: true, backends: [{{ pod: web-0, namespace: shop }}] }}
"
        );
        ClusterState::from_yaml_str(&yaml).unwrap()
    }

    #[test]
    fn services_and_labels_round_trip_through_their_keys() {
        let layout = Layout::new(DEFAULT_PREFIX);
        let state = with_services();
        let keys = values(&layout, &state);
        assert_eq!(
            keys.keys().collect::<Vec<_>>(),
            [
                "/ctpath/v1/conntrack",
                "/ctpath/v1/networks/std",
                "/ctpath/v1/nodes/node-a",
                "/ctpath/v1/pods/shop/web-0",
                "/ctpath/v1/security_groups/web",
                "/ctpath/v1/services/web",
                "/ctpath/v1/services/web-all",
            ]
        );
        let decoded = layout.decode(&keys).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(decoded.pods[0].labels["app"], "web");

        let mut misnamed = keys.clone();
        let web = misnamed.remove("/ctpath/v1/services/web").unwrap();
        misnamed.insert("/ctpath/v1/services/www".to_owned(), web);
        assert_eq!(
            layout.decode(&misnamed).unwrap_err().to_string(),
            "/ctpath/v1/services/www: the key names service www, the value web"
        );
    }

    #[test]
    fn a_rule_naming_a_service_round_trips_in_its_group() {
        let layout = Layout::new(DEFAULT_PREFIX);
        let mut state = with_services();
        let mut rule = state.security_groups[0].rules[0].clone();
        rule.remote_service = Some("web-all".to_owned());
        state.security_groups[0].rules.push(rule);
        let mut keys = values(&layout, &state);
        let group = String::from_utf8(keys["/ctpath/v1/security_groups/web"].clone()).unwrap();
        assert!(group.contains(r#""remote_service":"web-all""#), "{group}");
        assert_eq!(layout.decode(&keys).unwrap(), state);
        // The service gone, the rule is reported at its group's key.
        keys.remove("/ctpath/v1/services/web-all");
        assert_eq!(
            layout.decode(&keys).unwrap_err().to_string(),
            "invalid cluster state: /ctpath/v1/security_groups/web: rules[1].remote_service: \
             no service named web-all"
        );
    }

    #[test]
    fn a_service_violation_is_reported_at_the_services_key() {
        let layout = Layout::new(DEFAULT_PREFIX);
        let mut keys = values(&layout, &with_services());
        keys.remove("/ctpath/v1/pods/shop/web-0");
        assert_eq!(
            layout.decode(&keys).unwrap_err().to_string(),
            "invalid cluster state: /ctpath/v1/services/web-all: backends[0]: unknown pod shop/web-0"
        );
    }

    #[test]
    fn pods_a_service_lists_are_guarded_as_referenced() {
        let layout = Layout::new(DEFAULT_PREFIX);
        let state = with_services();
        assert_eq!(
            layout.listed_pods(&state),
            BTreeSet::from(["/ctpath/v1/pods/shop/web-0".to_owned()])
        );
        assert!(!layout.is_referenced("/ctpath/v1/pods/shop/web-0"));
        assert!(!layout.is_referenced("/ctpath/v1/services/web"));
        assert!(layout
            .listed_pods(&ClusterState::from_yaml_str(STATE).unwrap())
            .is_empty());
    }

    #[test]
    fn violations_are_reported_at_the_key_of_their_object() {
        let layout = Layout::new(DEFAULT_PREFIX);
        let state = ClusterState::from_yaml_str(STATE).unwrap();
        let mut keys = values(&layout, &state);
        keys.remove("/ctpath/v1/security_groups/web");
        let error = layout.decode(&keys).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid cluster state: /ctpath/v1/pods/shop/web-0: \
             interfaces[0].security_groups[0]: unknown security group web"
        );
    }

    #[test]
    fn keys_and_values_that_are_not_schema_objects_are_named() {
        let layout = Layout::new(DEFAULT_PREFIX);
        let mut keys = values(&layout, &ClusterState::from_yaml_str(STATE).unwrap());
        keys.insert("/ctpath/v1/network/std".to_owned(), b"{}".to_vec());
        keys.insert(
            "/ctpath/v1/nodes/node-b".to_owned(),
            keys["/ctpath/v1/nodes/node-a"].clone(),
        );
        keys.insert(
            "/ctpath/v1/networks/std".to_owned(),
            b"{\"name\":\"std\",\"vni\":\"x\"}".to_vec(),
        );
        let StoreError::Corrupt(problems) = layout.decode(&keys).unwrap_err() else {
            panic!("expected corrupt keys");
        };
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "/ctpath/v1/network/std: not a key of schema v1 (networks/NAME, nodes/NAME, \
                 security_groups/NAME, pods/NAMESPACE/NAME, conntrack, services/NAME)",
                "/ctpath/v1/networks/std: vni: invalid type: string \"x\", expected u32 at line 1 \
                 column 23",
                "/ctpath/v1/nodes/node-b: the key names node node-b, the value node-a",
            ]
        );
    }

    #[test]
    fn names_that_cannot_be_keys_are_refused() {
        let layout = Layout::new(DEFAULT_PREFIX);
        let mut state = ClusterState::from_yaml_str(STATE).unwrap();
        state.pods[0].name = "web/0".to_owned();
        assert_eq!(
            layout.encode(&state).unwrap_err().to_string(),
            "pods[0].name: \"web/0\" cannot be part of an etcd key (it is empty or contains '/')"
        );
    }
}
