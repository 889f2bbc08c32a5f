//! What the agent changes on its node besides the datapath's maps and links, each change held
//! by a guard: the bpffs mount under the pin directory ([`Bpffs`]), the pin directory with the
//! map pins ([`PinDir`]), IPv4 forwarding on the underlay ([`Forwarding`]) and the managed
//! neighbour entries of the other nodes' VTEPs ([`VtepNeighbours`], over rtnetlink).
//!
//! A guard undoes its change when it is dropped: the agent holds them in the reverse order of
//! their making, so a clean stop undoes the last change first. A guard told to keep its change
//! (`keep(true)`) leaves it in place when dropped: that is how an agent that stops without
//! SIGTERM (an error after it took over a running datapath) leaves everything for the next one,
//! as `kill -9` does, and it can be told otherwise again (`keep(false)`, for the clean stop).

use std::{
    collections::BTreeSet,
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::netlink::{NetlinkError, Rtnetlink};

/// Where bpffs is mounted on a host.
pub const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, Error)]
pub enum HostError {
    #[error("pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pin directory {0} is not on a bpffs, and is not under {BPFFS} where the agent could mount one")]
    NotBpffs(PathBuf),
    #[error("turning on IPv4 forwarding on {interface} ({path}): {source}")]
    Forwarding {
        interface: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the neighbour entries of the VTEPs on {device}: {source}")]
    Neighbours {
        device: String,
        #[source]
        source: NetlinkError,
    },
}

/// A bpffs at [`BPFFS`] that the agent mounted (none when one was there already, as in the
/// host's mount namespace; `ip netns exec` gives its commands a fresh `/sys` without one).
/// Dropped, it is unmounted if nothing is pinned in it any more; such a mount is private to
/// the agent's mount namespace and goes with it anyway.
pub struct Bpffs {
    mounted: Option<PathBuf>,
    keep: bool,
}

impl Bpffs {
    /// Makes sure `pin_dir` is on a bpffs, mounting one at [`BPFFS`] if that is where it
    /// belongs.
    pub fn ensure(pin_dir: &Path) -> Result<Bpffs, HostError> {
        let existing = pin_dir
            .ancestors()
            .find(|dir| dir.exists())
            .unwrap_or(Path::new("/"));
        let pin_dir_error = |path: &Path, source| HostError::PinDir {
            path: path.to_owned(),
            source,
        };
        if fs_type(existing).map_err(|source| pin_dir_error(existing, source))? == BPF_FS_MAGIC {
            return Ok(Bpffs {
                mounted: None,
                keep: false,
            });
        }
        if !pin_dir.starts_with(BPFFS) {
            return Err(HostError::NotBpffs(pin_dir.to_owned()));
        }
        let target = std::ffi::CString::new(BPFFS).expect("no NUL");
        // SAFETY: all pointers are to NUL-terminated strings that outlive the call; `data` may
        // be null for bpffs.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(pin_dir_error(Path::new(BPFFS), io::Error::last_os_error()));
        }
        tracing::info!(
            mount_point = BPFFS,
            "bpffs was not mounted here: mounted it"
        );
        Ok(Bpffs {
            mounted: Some(PathBuf::from(BPFFS)),
            keep: false,
        })
    }

    pub fn keep(&mut self, keep: bool) {
        self.keep = keep;
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let Some(mount_point) = self.mounted.take().filter(|_| !self.keep) else {
            return;
        };
        let pinned = walk_files(&mount_point);
        if pinned > 0 {
            tracing::info!(mount_point = %mount_point.display(), pinned, "bpffs left mounted: other pins are in it");
            return;
        }
        let target = std::ffi::CString::new(mount_point.as_os_str().as_encoded_bytes())
            .expect("no NUL in BPFFS");
        // SAFETY: `target` is a NUL-terminated path that outlives the call.
        if unsafe { libc::umount(target.as_ptr()) } != 0 {
            let error = io::Error::last_os_error();
            tracing::warn!(mount_point = %mount_point.display(), %error, "could not unmount the bpffs this agent mounted");
        }
    }
}

/// How many files are under `dir` (directories not counted).
fn walk_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| match entry.file_type() {
                    Ok(kind) if kind.is_dir() => walk_files(&entry.path()),
                    _ => 1,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn fs_type(path: &Path) -> io::Result<i64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with NUL"))?;
    // SAFETY: `statfs` is a plain C struct for which all zeros is valid.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` a valid, writable `statfs`.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type as i64)
}

/// The pin directory and the map pins in it (the link pins are the links' own). Dropped, the
/// map pins and then the directory are removed (a map whose pin goes lives on while a program
/// or a process holds it).
pub struct PinDir {
    dir: PathBuf,
    maps: Vec<PathBuf>,
    keep: bool,
}

impl PinDir {
    /// Creates `dir` if it is not there; `maps` are the pins of the maps in it. `keep`: whether
    /// it is kept when dropped (it holds an earlier agent's datapath).
    pub fn create(dir: &Path, maps: Vec<PathBuf>, keep: bool) -> Result<PinDir, HostError> {
        std::fs::create_dir_all(dir).map_err(|source| HostError::PinDir {
            path: dir.to_owned(),
            source,
        })?;
        Ok(PinDir {
            dir: dir.to_owned(),
            maps,
            keep,
        })
    }

    pub fn keep(&mut self, keep: bool) {
        self.keep = keep;
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for pin in &self.maps {
            match std::fs::remove_file(pin) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(pin = %pin.display(), %error, "could not remove pin"),
            }
        }
        if let Err(error) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(pin_dir = %self.dir.display(), %error, "could not remove the pin directory");
        }
    }
}

/// IPv4 forwarding on the underlay, which `bpf_fib_lookup` needs (it refuses to work on a
/// device without it, even for an egress lookup; the node still forwards nothing in the
/// kernel: it has no routes to forward along). Dropped, the setting found is restored.
pub struct Forwarding {
    path: PathBuf,
    /// The value before this agent turned it on (none: it was on already).
    previous: Option<String>,
    keep: bool,
}

impl Forwarding {
    pub fn enable(interface: &str) -> Result<Forwarding, HostError> {
        let path = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{interface}/forwarding"));
        let error = |source| HostError::Forwarding {
            interface: interface.to_owned(),
            path: path.display().to_string(),
            source,
        };
        let found = std::fs::read_to_string(&path)
            .map_err(error)?
            .trim()
            .to_owned();
        let previous = if found == "1" {
            None
        } else {
            std::fs::write(&path, "1").map_err(error)?;
            tracing::info!(
                interface,
                "turned on IPv4 forwarding on the underlay (bpf_fib_lookup needs it)"
            );
            Some(found)
        };
        Ok(Forwarding {
            path,
            previous,
            keep: false,
        })
    }

    pub fn keep(&mut self, keep: bool) {
        self.keep = keep;
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take().filter(|_| !self.keep) {
            if let Err(error) = std::fs::write(&self.path, &previous) {
                tracing::warn!(path = %self.path.display(), %error, "could not restore the forwarding setting");
            }
        }
    }
}

/// The managed neighbour entries of the other nodes' VTEPs on the underlay: the kernel
/// resolves them and keeps them fresh, so `bpf_fib_lookup` finds the next hop towards every
/// VTEP. Kept equal to the plan's VTEPs ([`VtepNeighbours::sync`]): a node that leaves has its
/// entry deleted. An entry on the underlay that is managed and externally learned, as ctpath
/// makes them, is taken for one of ctpath's (an earlier agent's, adopted). Dropped, every entry
/// is deleted.
pub struct VtepNeighbours {
    netlink: Rtnetlink,
    device: String,
    ifindex: u32,
    entries: BTreeSet<Ipv4Addr>,
    keep: bool,
}

/// What a [`VtepNeighbours::sync`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NeighbourChanges {
    pub added: Vec<Ipv4Addr>,
    pub removed: Vec<Ipv4Addr>,
}

impl VtepNeighbours {
    /// The entries on `device` (ifindex `ifindex`), adopting those an earlier agent made.
    /// `keep`: whether they are kept when dropped (they serve an earlier agent's datapath).
    pub fn adopt(device: &str, ifindex: u32, keep: bool) -> Result<VtepNeighbours, HostError> {
        let error = |source| HostError::Neighbours {
            device: device.to_owned(),
            source,
        };
        let mut netlink = Rtnetlink::open().map_err(error)?;
        let entries = netlink
            .neighbours(ifindex)
            .map_err(error)?
            .into_iter()
            .filter(|entry| entry.managed)
            .map(|entry| entry.ip)
            .collect();
        Ok(VtepNeighbours {
            netlink,
            device: device.to_owned(),
            ifindex,
            entries,
            keep,
        })
    }

    /// Makes the entries those of `vteps`: creates the missing ones, deletes the others. On an
    /// error the entries made or deleted before it stay so (and are known: a later `sync` or the
    /// drop finishes the job).
    pub fn sync(&mut self, vteps: &BTreeSet<[u8; 4]>) -> Result<NeighbourChanges, HostError> {
        let wanted: BTreeSet<Ipv4Addr> = vteps.iter().copied().map(Ipv4Addr::from).collect();
        let planned = NeighbourChanges {
            added: wanted.difference(&self.entries).copied().collect(),
            removed: self.entries.difference(&wanted).copied().collect(),
        };
        let error = |source| HostError::Neighbours {
            device: self.device.clone(),
            source,
        };
        for &vtep in &planned.added {
            self.netlink
                .replace_managed_neighbour(self.ifindex, vtep)
                .map_err(error)?;
            self.entries.insert(vtep);
        }
        for vtep in &planned.removed {
            self.netlink
                .delete_neighbour(self.ifindex, *vtep)
                .map_err(error)?;
            self.entries.remove(vtep);
        }
        Ok(planned)
    }

    /// The rtnetlink socket, for the next-hop reads of the same namespace.
    pub fn netlink(&mut self) -> &mut Rtnetlink {
        &mut self.netlink
    }

    pub fn keep(&mut self, keep: bool) {
        self.keep = keep;
    }
}

impl Drop for VtepNeighbours {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for vtep in std::mem::take(&mut self.entries) {
            if let Err(error) = self.netlink.delete_neighbour(self.ifindex, vtep) {
                tracing::warn!(%vtep, device = self.device, %error, "could not remove the neighbour entry");
            }
        }
    }
}
