//! `ctpath agent --cleanup`: removes what an agent of a node left behind, for a node that no
//! longer runs one (an agent killed with `kill -9` and not restarted, a node leaving ctpath).
//!
//! Owns the list of what goes, all found from the pins themselves, not from a state: the
//! managed neighbour entries of the VTEPs in the pinned `VTEPS` map (on the underlay device
//! the pinned `NODE` names), every link pin (which detaches its program: the pin is the last
//! reference once no agent holds it), every map pin, the pin directory, and the run
//! directory with the forwarder's report and the agent's pid file. IPv4 forwarding on the underlay stays as it is: the
//! agent that turned it on knew the value before, the pins do not. Idempotent: a node with
//! nothing pinned is clean already. Run it only while no agent runs for the node: an agent
//! running keeps its links and maps alive through its own references, and would go on
//! without its pins.

use std::{
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, Map, MapData};
use ctpath_common::maps::{names, NodeConfig, Vtep};
use thiserror::Error;

use crate::{
    links::interface_name,
    netlink::{NetlinkError, Rtnetlink},
};

#[derive(Debug, Error)]
pub enum CleanupError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the VTEPs' neighbour entries: {0}")]
    Neighbours(NetlinkError),
    #[error("removing {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a cleanup removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Link pins removed (each detached a program).
    pub links: usize,
    /// Map pins removed.
    pub maps: usize,
    /// Neighbour entries of VTEPs deleted.
    pub neighbours: usize,
    /// Whether the run directory was there and is gone.
    pub run_dir: bool,
}

/// Removes what the agent pinned under `pin_dir` and wrote under `run_dir` (see the module
/// docs). Neighbour entries that cannot be deleted (already gone) are not an error.
pub fn cleanup(pin_dir: &Path, run_dir: &Path) -> Result<Cleaned, CleanupError> {
    let mut cleaned = Cleaned::default();
    if pin_dir.exists() {
        let neighbours = pinned_neighbours(pin_dir);
        if !neighbours.is_empty() {
            let mut netlink = Rtnetlink::open().map_err(CleanupError::Neighbours)?;
            for (vtep, ifindex) in neighbours {
                match netlink.delete_neighbour(ifindex, vtep) {
                    Ok(true) => cleaned.neighbours += 1,
                    Ok(false) => {}
                    Err(error) => {
                        tracing::debug!(%vtep, ifindex, %error, "neighbour entry not deleted")
                    }
                }
            }
        }
        let read = |source| CleanupError::Read {
            path: pin_dir.to_owned(),
            source,
        };
        let mut pins: Vec<PathBuf> = std::fs::read_dir(pin_dir)
            .map_err(read)?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()
            .map_err(read)?;
        // Links first: their programs stop while the maps they use still exist.
        pins.sort_by_key(|path| !is_link_pin(path));
        for pin in pins {
            remove(&pin, std::fs::remove_file(&pin))?;
            if is_link_pin(&pin) {
                cleaned.links += 1;
            } else {
                cleaned.maps += 1;
            }
        }
        remove(pin_dir, std::fs::remove_dir(pin_dir))?;
    }
    if run_dir.exists() {
        remove(run_dir, std::fs::remove_dir_all(run_dir))?;
        cleaned.run_dir = true;
    }
    Ok(cleaned)
}

fn remove(path: &Path, result: io::Result<()>) -> Result<(), CleanupError> {
    match result {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CleanupError::Remove {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A link pin, as the agent names them (`link_IFNAME`, `tcx_IFNAME`).
fn is_link_pin(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(crate::agent::is_link_pin_name)
}

/// The VTEPs the pins know and the underlay device (ifindex) their neighbour entries are on;
/// none when the maps are missing or the device is gone (its entries went with it).
fn pinned_neighbours(pin_dir: &Path) -> Vec<(Ipv4Addr, u32)> {
    let open = |name: &str| {
        MapData::from_pin(pin_dir.join(name))
            .ok()
            .and_then(|data| Map::from_map_data(data).ok())
    };
    let device = open(names::NODE)
        .and_then(|map| Array::<_, NodeConfig>::try_from(map).ok())
        .and_then(|node| node.get(&0, 0).ok())
        .map(|node| node.underlay_ifindex)
        .filter(|&ifindex| interface_name(ifindex).is_ok());
    let (Some(device), Some(vteps)) = (
        device,
        open(names::VTEPS).and_then(|map| HashMap::<_, [u8; 4], Vtep>::try_from(map).ok()),
    ) else {
        return Vec::new();
    };
    vteps
        .keys()
        .filter_map(Result::ok)
        .map(|vtep| (Ipv4Addr::from(vtep), device))
        .collect()
}
