//! What a pod's side of its veth needs of the programs at the host side, set by the agent so
//! that pods are created with the kernel's defaults on every plane (a CNI or runtime creates
//! veths that way):
//!
//! - **GRO on**, on every plane: an XDP redirect into a veth (the NIC's `from_underlay`
//!   delivering into the pod, and on `datapath: xdp` planes pod to pod and the answers
//!   `from_pod` sends back) is only delivered when the receiving end runs NAPI, which a veth
//!   does when it has an XDP program or GRO on. With it, TCP arriving over VXLAN is delivered
//!   by XDP and merged by the pod's GRO (`docs/decisions/pod-hook.md`, "Receive side"); the
//!   agent flags such endpoints (`endpoint_flags::POD_NAPI`) and, for the others, `from_underlay`
//!   hands everything to tc, which needs nothing of the pod.
//! - **TX checksum offload off**, where the host side runs XDP (`datapath: xdp` and fast-path
//!   planes): a veth hands its peer skbs whose TCP/UDP checksum is still to be completed
//!   (`CHECKSUM_PARTIAL`); once XDP on the host side takes the frame as bytes, nothing
//!   completes it and the receiver drops it. Turning it off also turns TSO off, which needs it:
//!   this is the cost of XDP at the pod's veth. Planes with `datapath: tc` keep it (the tc
//!   program works on the skb).
//!
//! The agent reaches the pod's end through the host end, all over rtnetlink: its peer's
//! ifindex and the peer's namespace id (`IFLA_LINK`, `IFLA_LINK_NETNSID`), the namespace of
//! that id, and the features set there with the ethtool ioctls (`SIOCETHTOOL`:
//! `ETHTOOL_STXCSUM`, `ETHTOOL_SGRO`) from a thread that enters it. The namespace is one bound
//! under `/run/netns` whose id is the peer's (namespaces made by `ip netns`, and by Kubernetes'
//! runtimes for CNI, which bind them there), else that of a process in it (`/proc/PID/ns/net`:
//! a container that `ctr run --cni` made, whose namespace is bound nowhere). A pod with no such
//! process either cannot be reached: [`PodSideError`] says so, and the agent logs it. When a
//! plane moves from XDP to tc, [`restore_tx_checksum`] gives the pods back the TX checksum
//! offload the agent turned off (and with it TSO); GRO stays on (tc's planes want it too).

use std::{fs::File, os::fd::AsRawFd};

use thiserror::Error;

use crate::{
    links::{in_netns, interface_name},
    netlink::{NetlinkError, Rtnetlink},
};

/// Legacy ethtool commands (`linux/ethtool.h`), each with a `struct ethtool_value`.
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

#[derive(Debug, Error)]
pub enum PodSideError {
    #[error("reading {interface} over rtnetlink: {source}")]
    Netlink {
        interface: String,
        #[source]
        source: NetlinkError,
    },
    #[error("{interface}: no such interface")]
    NoSuchInterface { interface: String },
    #[error("{interface} is not a veth")]
    NotVeth { interface: String },
    #[error(
        "the namespace of {interface}'s peer (nsid {nsid}) is not bound under /run/netns and no \
         process runs in it, so its offloads cannot be set from here"
    )]
    NamespaceNotFound { interface: String, nsid: i32 },
    #[error("entering {netns}: {source}")]
    Enter {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} on {interface} in {netns}: {source}")]
    Ethtool {
        what: &'static str,
        interface: String,
        netns: String,
        #[source]
        source: std::io::Error,
    },
}

/// What was found and done on a pod's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSide {
    /// The namespace's name under `/run/netns` (empty: the node's own namespace).
    pub netns: String,
    pub interface: String,
    /// The settings changed (empty when they were already right).
    pub changed: Vec<&'static str>,
}

/// What the program at the host side of a pod's veth needs at the pod's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostHook {
    /// `from_pod_tc`: GRO on (NAPI, for XDP redirects from the NIC).
    Tc,
    /// `from_pod` in XDP: GRO on and TX checksum offload off.
    Xdp,
}

/// One ethtool feature at a pod's end: its get and set commands, the value wanted, and how
/// the change is logged.
struct Setting {
    get: u32,
    set: u32,
    want: u32,
    what: &'static str,
}

/// How [`PodSide::changed`] names TX checksum offload turned off.
pub const TX_CHECKSUM_OFF_CHANGE: &str = "tx-checksumming off";

const TX_CHECKSUM_OFF: Setting = Setting {
    get: ETHTOOL_GTXCSUM,
    set: ETHTOOL_STXCSUM,
    want: 0,
    what: TX_CHECKSUM_OFF_CHANGE,
};
const TX_CHECKSUM_ON: Setting = Setting {
    want: 1,
    what: "tx-checksumming on",
    ..TX_CHECKSUM_OFF
};
const GRO_ON: Setting = Setting {
    get: ETHTOOL_GGRO,
    set: ETHTOOL_SGRO,
    want: 1,
    what: "generic-receive-offload on",
};

/// Sets what `hook` at the host-side veth `host_interface` needs at its other end, wherever
/// that end is (see the module docs).
pub fn prepare(host_interface: &str, hook: HostHook) -> Result<PodSide, PodSideError> {
    let settings: &[Setting] = match hook {
        HostHook::Tc => &[GRO_ON],
        HostHook::Xdp => &[TX_CHECKSUM_OFF, GRO_ON],
    };
    on_pod_end(host_interface, settings)
}

/// Turns TX checksum offload back on at the other end of `host_interface`: for a pod whose
/// plane moved from XDP to tc, which takes its partially checksummed packets (and TSO).
pub fn restore_tx_checksum(host_interface: &str) -> Result<PodSide, PodSideError> {
    on_pod_end(host_interface, &[TX_CHECKSUM_ON])
}

/// Applies `settings` at the other end of the veth `host_interface`, wherever it is.
fn on_pod_end(host_interface: &str, settings: &[Setting]) -> Result<PodSide, PodSideError> {
    let netlink_error = |source| PodSideError::Netlink {
        interface: host_interface.to_owned(),
        source,
    };
    let mut netlink = Rtnetlink::open().map_err(netlink_error)?;
    let link = netlink
        .link_peer(host_interface)
        .map_err(netlink_error)?
        .ok_or_else(|| PodSideError::NoSuchInterface {
            interface: host_interface.to_owned(),
        })?;
    let peer_ifindex = link
        .peer_ifindex
        .filter(|_| link.veth)
        .ok_or(PodSideError::NotVeth {
            interface: host_interface.to_owned(),
        })?;
    let (netns, namespace) = match link.peer_netnsid {
        None => (String::new(), None),
        Some(nsid) => {
            let (name, file) = named_netns(&mut netlink, nsid)
                .or_else(|| process_in(&mut netlink, nsid))
                .ok_or(PodSideError::NamespaceNotFound {
                    interface: host_interface.to_owned(),
                    nsid,
                })?;
            (name, Some(file))
        }
    };
    match namespace {
        None => set_in(&netns, peer_ifindex, settings),
        Some(file) => {
            in_netns(&file, || set_in(&netns, peer_ifindex, settings)).map_err(|source| {
                PodSideError::Enter {
                    netns: netns.clone(),
                    source,
                }
            })?
        }
    }
}

/// The network namespace bound under `/run/netns` (by `ip netns` or a runtime) whose id here
/// is `nsid`: its name and the namespace, open.
fn named_netns(netlink: &mut Rtnetlink, nsid: i32) -> Option<(String, File)> {
    let bound = std::fs::read_dir("/run/netns").ok()?.flatten();
    with_nsid(
        netlink,
        nsid,
        bound.map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            )
        }),
    )
}

/// The network namespace whose id here is `nsid`, through a process that runs in it: its name
/// for logs (`/proc/PID/ns/net`) and the namespace, open.
fn process_in(netlink: &mut Rtnetlink, nsid: i32) -> Option<(String, File)> {
    let processes = std::fs::read_dir("/proc").ok()?.flatten().filter(|entry| {
        entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
    });
    with_nsid(
        netlink,
        nsid,
        processes.map(|entry| {
            let path = entry.path().join("ns/net");
            (path.display().to_string(), path)
        }),
    )
}

/// The first of the network namespaces at `candidates` (name, path) whose id here is `nsid`,
/// open; a namespace met again at another path is not asked again.
fn with_nsid(
    netlink: &mut Rtnetlink,
    nsid: i32,
    candidates: impl Iterator<Item = (String, std::path::PathBuf)>,
) -> Option<(String, File)> {
    use std::os::unix::fs::MetadataExt;
    let mut asked = std::collections::BTreeSet::new();
    candidates.into_iter().find_map(|(name, path)| {
        let file = File::open(&path).ok()?;
        let meta = file.metadata().ok()?;
        if !asked.insert((meta.dev(), meta.ino())) {
            return None;
        }
        (netlink.nsid_of(&file).ok()?? == nsid).then_some((name, file))
    })
}

/// Applies `settings` to `ifindex` in the caller's network namespace (`netns` names it).
fn set_in(netns: &str, ifindex: u32, settings: &[Setting]) -> Result<PodSide, PodSideError> {
    let ethtool_error = |what, source| PodSideError::Ethtool {
        what,
        interface: format!("ifindex {ifindex}"),
        netns: netns.to_owned(),
        source,
    };
    let interface =
        interface_name(ifindex).map_err(|source| ethtool_error("finding the peer", source))?;
    let name = ifreq_name(&interface);
    let device = Ethtool::open(name).map_err(|source| ethtool_error("opening a socket", source))?;
    let mut changed = Vec::new();
    for setting in settings {
        let error = |source| PodSideError::Ethtool {
            what: setting.what,
            interface: interface.clone(),
            netns: netns.to_owned(),
            source,
        };
        if device.value(setting.get, 0).map_err(error)? == setting.want {
            continue;
        }
        device.value(setting.set, setting.want).map_err(error)?;
        if device.value(setting.get, 0).map_err(error)? != setting.want {
            return Err(error(std::io::Error::other("the device kept its setting")));
        }
        changed.push(setting.what);
    }
    Ok(PodSide {
        netns: netns.to_owned(),
        interface,
        changed,
    })
}

/// `interface` as `ifreq` holds it (NUL-terminated; a kernel name fits).
fn ifreq_name(interface: &str) -> [libc::c_char; libc::IFNAMSIZ] {
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (to, from) in name
        .iter_mut()
        .zip(interface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *to = from as libc::c_char;
    }
    name
}

/// An interface and a socket of the current thread's namespace to send it ethtool ioctls.
struct Ethtool {
    socket: std::os::fd::OwnedFd,
    name: [libc::c_char; libc::IFNAMSIZ],
}

impl Ethtool {
    fn open(name: [libc::c_char; libc::IFNAMSIZ]) -> std::io::Result<Ethtool> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new, valid descriptor nobody else owns.
        let socket = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        Ok(Ethtool { socket, name })
    }

    /// Sends `struct ethtool_value { cmd, data }` and returns `data` as the kernel left it.
    fn value(&self, cmd: u32, data: u32) -> std::io::Result<u32> {
        #[repr(C)]
        struct EthtoolValue {
            cmd: u32,
            data: u32,
        }
        let mut value = EthtoolValue { cmd, data };
        let request = libc::ifreq {
            ifr_name: self.name,
            ifr_ifru: libc::__c_anonymous_ifr_ifru {
                ifru_data: (&raw mut value).cast(),
            },
        };
        // SAFETY: SIOCETHTOOL reads the ifreq and reads/writes the ethtool_value it points to,
        // both alive for the call.
        let ret = unsafe { libc::ioctl(self.socket.as_raw_fd(), libc::SIOCETHTOOL, &request) };
        if ret != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(value.data)
    }
}
