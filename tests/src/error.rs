//! The testbed's one error type.
//!
//! Owns [`TestbedError`]. Every variant names what failed: the full command line with its exit
//! status and stderr, or the namespace / interface / socket operation. The testbed itself never
//! panics on these errors; tests usually `.expect()` them.

use std::io;
use std::net::Ipv4Addr;
use std::process::ExitStatus;

use ipnet::Ipv4Net;

/// Everything that can go wrong while building or using a testbed.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// A command could not be started at all (binary missing, fork failed).
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command line, space-joined.
        command: String,
        /// The error from `fork`/`exec`.
        source: io::Error,
    },

    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, space-joined.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its stderr, lossily decoded and trimmed.
        stderr: String,
    },

    /// Waiting for or killing a spawned process failed.
    #[error("process {pid} (`{command}`): {source}")]
    Process {
        /// The process id.
        pid: u32,
        /// The command line, space-joined.
        command: String,
        /// The underlying error.
        source: io::Error,
    },

    /// `/run/netns/NAME` could not be opened.
    #[error("cannot open network namespace {netns} ({path}): {source}")]
    OpenNetns {
        /// The namespace name.
        netns: String,
        /// The bind-mount path that was opened.
        path: String,
        /// The error from `open`.
        source: io::Error,
    },

    /// `setns(CLONE_NEWNET)` failed.
    #[error("setns into network namespace {netns} failed: {source}")]
    Setns {
        /// The namespace name.
        netns: String,
        /// The error from `setns`.
        source: io::Error,
    },

    /// The helper thread for `run_in` could not be started.
    #[error("cannot start a thread for network namespace {netns}: {source}")]
    Thread {
        /// The namespace name.
        netns: String,
        /// The error from `std::thread::Builder::spawn_scoped`.
        source: io::Error,
    },

    /// An interface does not exist in a namespace.
    #[error("no interface {ifname} in network namespace {netns}: {source}")]
    NoSuchInterface {
        /// The namespace name.
        netns: String,
        /// The interface name.
        ifname: String,
        /// The error from `if_nametoindex`.
        source: io::Error,
    },

    /// Writing a sysctl inside a namespace failed.
    #[error("sysctl {key}={value} in network namespace {netns}: {source}")]
    Sysctl {
        /// The namespace name.
        netns: String,
        /// The sysctl key, dotted (`net.ipv6.conf.all.disable_ipv6`).
        key: String,
        /// The value that was written.
        value: String,
        /// The error from opening or writing the `/proc/sys` file.
        source: io::Error,
    },

    /// Output of a command could not be understood.
    #[error("cannot find {what} in the output of `{command}`: {output:?}")]
    Parse {
        /// What was looked for.
        what: &'static str,
        /// The command line, space-joined.
        command: String,
        /// The output that was searched.
        output: String,
    },

    /// A name given to the testbed is unusable.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What the name is for: `node`, `pod`, `interface`, ...
        kind: &'static str,
        /// The offending name.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// A node or pod name is already used in this testbed.
    #[error("testbed {testbed}: a namespace named {name:?} already exists")]
    DuplicateName {
        /// The testbed's label.
        testbed: String,
        /// The duplicate name.
        name: String,
    },

    /// An underlay needs at least two nodes.
    #[error("an underlay needs at least two nodes, got {count}")]
    TooFewNodes {
        /// How many nodes were passed.
        count: usize,
    },

    /// The underlay subnet has fewer host addresses than nodes.
    #[error("underlay subnet {subnet} has no host address #{index} (one per node)")]
    SubnetTooSmall {
        /// The subnet.
        subnet: Ipv4Net,
        /// The zero-based node index that did not fit.
        index: usize,
    },

    /// A pod interface spec is inconsistent.
    #[error("pod {pod}, interface {ifname}: {reason}")]
    InvalidPodInterface {
        /// The pod name.
        pod: String,
        /// The pod-side interface name (or host-side name if the pod side is not known yet).
        ifname: String,
        /// What is wrong.
        reason: String,
    },

    /// A pod was given a gateway that is not usable (e.g. its own address).
    #[error("pod {pod}: gateway {gateway} is unusable: {reason}")]
    InvalidGateway {
        /// The pod name.
        pod: String,
        /// The gateway address.
        gateway: Ipv4Addr,
        /// Why.
        reason: &'static str,
    },

    /// A file or directory the testbed prepares could not be written or read.
    #[error("{what}: {source}")]
    Io {
        /// What was being prepared (`containerd config.toml`, `busybox image`, ...).
        what: String,
        /// The error.
        source: io::Error,
    },

    /// A raw-socket system call failed.
    #[error("raw socket on ifindex {ifindex}: {op} failed: {source}")]
    RawSocket {
        /// The interface the socket is (to be) bound to.
        ifindex: u32,
        /// The system call: `socket`, `bind`, `send`, `poll`, `recv`.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = TestbedError> = std::result::Result<T, E>;
