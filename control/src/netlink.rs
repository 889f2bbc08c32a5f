//! The agent's rtnetlink conversations with the kernel of its network namespace: the managed
//! neighbour entries of the other nodes' VTEPs on the underlay (created, listed, deleted), the
//! route towards a VTEP (its gateway), a pod veth's peer (its kind, the peer's ifindex and
//! namespace id), and the id this namespace gives another one (a pod's). One request at a time on a blocking socket; the
//! kernel answers each with its messages and an acknowledgement or an error, which is returned
//! as [`NetlinkError::Kernel`] with the errno.
//!
//! A managed entry (`NTF_EXT_MANAGED`) is one the kernel resolves by itself and keeps
//! resolved, which is what `bpf_fib_lookup` needs to find a next hop before any packet asked
//! for it; ctpath marks its entries `NTF_EXT_LEARNED` too (`extern_learn`: the kernel's garbage
//! collection leaves them alone), and recognises its own by both flags.

use std::{io, net::Ipv4Addr, os::fd::AsRawFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::{
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourFlags, NeighbourMessage,
        NeighbourState,
    },
    nsid::{NsidAttribute, NsidMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage},
    AddressFamily, RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("rtnetlink socket: {0}")]
    Socket(io::Error),
    #[error("{request}: {source}")]
    Kernel {
        request: String,
        #[source]
        source: io::Error,
    },
    #[error("{request}: unparsable answer from the kernel: {message}")]
    Decode { request: String, message: String },
}

impl NetlinkError {
    /// The errno the kernel answered with, if it did.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// A neighbour entry as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    /// The link-layer address, once resolved.
    pub mac: Option<[u8; 6]>,
    /// Whether the kernel holds a usable MAC (neither failed nor still being resolved).
    pub resolved: bool,
    /// Whether the entry is managed and externally learned: the kind ctpath creates.
    pub managed: bool,
}

/// What a link's peer is, as the kernel reports the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkPeer {
    /// Whether the link is a veth.
    pub veth: bool,
    /// The peer's ifindex (in its namespace), if the link has one.
    pub peer_ifindex: Option<u32>,
    /// The id this namespace gives the peer's namespace; none when the peer is in this one.
    pub peer_netnsid: Option<i32>,
}

/// A blocking rtnetlink socket in the caller's network namespace (at the time of `open`).
pub struct Rtnetlink {
    socket: Socket,
    sequence: u32,
}

impl Rtnetlink {
    pub fn open() -> Result<Rtnetlink, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Rtnetlink {
            socket,
            sequence: 0,
        })
    }

    /// Creates (or replaces) the managed, externally learned entry of `ip` on `ifindex`: the
    /// kernel starts resolving it at once and keeps it resolved.
    pub fn replace_managed_neighbour(
        &mut self,
        ifindex: u32,
        ip: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let mut message = neighbour_message(ifindex, ip);
        message.header.state = NeighbourState::None;
        message.header.flags = NeighbourFlags::ExtLearned;
        message
            .attributes
            .push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        self.request(
            &format!("creating the neighbour entry of {ip} on ifindex {ifindex}"),
            RouteNetlinkMessage::NewNeighbour(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Deletes the entry of `ip` on `ifindex`; returns whether there was one.
    pub fn delete_neighbour(&mut self, ifindex: u32, ip: Ipv4Addr) -> Result<bool, NetlinkError> {
        match self.request(
            &format!("deleting the neighbour entry of {ip} on ifindex {ifindex}"),
            RouteNetlinkMessage::DelNeighbour(neighbour_message(ifindex, ip)),
            NLM_F_ACK,
        ) {
            Ok(_) => Ok(true),
            Err(error) if error.errno() == Some(libc::ENOENT) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The IPv4 neighbour entries on `ifindex`.
    pub fn neighbours(&mut self, ifindex: u32) -> Result<Vec<Neighbour>, NetlinkError> {
        let mut query = NeighbourMessage::default();
        query.header.family = AddressFamily::Inet;
        let request = format!("listing the neighbours of ifindex {ifindex}");
        let answers = self.request(
            &request,
            RouteNetlinkMessage::GetNeighbour(query),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewNeighbour(entry) if entry.header.ifindex == ifindex => {
                    neighbour(&entry)
                }
                _ => None,
            })
            .collect())
    }

    /// The gateway of the route the kernel would take to `destination` out of `oif`: `None`
    /// when `destination` is on the link (or the route has no gateway).
    pub fn route_gateway(
        &mut self,
        destination: Ipv4Addr,
        oif: u32,
    ) -> Result<Option<Ipv4Addr>, NetlinkError> {
        let mut query = RouteMessage::default();
        query.header.address_family = AddressFamily::Inet;
        query.header.destination_prefix_length = 32;
        query.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet(destination)),
            RouteAttribute::Oif(oif),
        ];
        let request = format!("looking up the route to {destination} out of ifindex {oif}");
        let answers = self.request(&request, RouteNetlinkMessage::GetRoute(query), 0)?;
        Ok(answers.iter().find_map(|answer| match answer {
            RouteNetlinkMessage::NewRoute(route) => {
                route
                    .attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        RouteAttribute::Gateway(RouteAddress::Inet(gateway)) => Some(*gateway),
                        _ => None,
                    })
            }
            _ => None,
        }))
    }

    /// The link named `name` and what its peer is; `None` when there is no such link.
    pub fn link_peer(&mut self, name: &str) -> Result<Option<LinkPeer>, NetlinkError> {
        let mut query = LinkMessage::default();
        query.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        let answers = match self.request(
            &format!("reading link {name}"),
            RouteNetlinkMessage::GetLink(query),
            0,
        ) {
            Ok(answers) => answers,
            Err(error) if error.errno() == Some(libc::ENODEV) => return Ok(None),
            Err(error) => return Err(error),
        };
        Ok(answers.into_iter().find_map(|answer| match answer {
            RouteNetlinkMessage::NewLink(link) => Some(link_peer(&link)),
            _ => None,
        }))
    }

    /// The id the caller's namespace has given the network namespace open as `netns` (as a
    /// veth's `IFLA_LINK_NETNSID` names its peer's), if it has given it one.
    pub fn nsid_of(&mut self, netns: &impl AsRawFd) -> Result<Option<i32>, NetlinkError> {
        let mut query = NsidMessage::default();
        query.attributes = vec![NsidAttribute::Fd(netns.as_raw_fd() as u32)];
        let answers = self.request(
            "asking the id of a network namespace",
            RouteNetlinkMessage::GetNsId(query),
            0,
        )?;
        Ok(answers.iter().find_map(|answer| match answer {
            RouteNetlinkMessage::NewNsId(message) => {
                message
                    .attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                        _ => None,
                    })
            }
            _ => None,
        }))
    }

    /// Sends `message` and collects the kernel's answers up to its acknowledgement, the end of
    /// a dump, or (without `NLM_F_ACK` or a dump) its one answer.
    fn request(
        &mut self,
        request: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buffer = vec![0; packet.buffer_len()];
        packet.serialize(&mut buffer);
        let kernel = |source| NetlinkError::Kernel {
            request: request.to_owned(),
            source,
        };
        self.socket.send(&buffer, 0).map_err(kernel)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        loop {
            let (received, _) = self.socket.recv_from_full().map_err(kernel)?;
            let mut offset = 0;
            while offset < received.len() {
                let answer =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&received[offset..])
                        .map_err(|error| NetlinkError::Decode {
                            request: request.to_owned(),
                            message: error.to_string(),
                        })?;
                let length = answer.header.length as usize;
                // Answers to an earlier request that gave up are not ours.
                if answer.header.sequence_number == self.sequence {
                    match answer.payload {
                        NetlinkPayload::Done(_) => return Ok(answers),
                        NetlinkPayload::Error(error) => {
                            return match error.code {
                                None => Ok(answers),
                                Some(_) => Err(kernel(error.to_io())),
                            }
                        }
                        NetlinkPayload::InnerMessage(inner) => {
                            answers.push(inner);
                            if !dump && flags & NLM_F_ACK == 0 {
                                return Ok(answers);
                            }
                        }
                        // Noop, overrun, and what later crate versions add.
                        _ => {}
                    }
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }
}

fn link_peer(link: &LinkMessage) -> LinkPeer {
    let mut peer = LinkPeer {
        veth: false,
        peer_ifindex: None,
        peer_netnsid: None,
    };
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::Link(ifindex) => peer.peer_ifindex = Some(*ifindex),
            LinkAttribute::LinkNetNsId(nsid) => peer.peer_netnsid = Some(*nsid),
            LinkAttribute::LinkInfo(infos) => {
                peer.veth |= infos
                    .iter()
                    .any(|info| matches!(info, LinkInfo::Kind(InfoKind::Veth)));
            }
            _ => {}
        }
    }
    peer
}

fn neighbour_message(ifindex: u32, ip: Ipv4Addr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.ifindex = ifindex;
    message.attributes = vec![NeighbourAttribute::Destination(NeighbourAddress::Inet(ip))];
    message
}

fn neighbour(entry: &NeighbourMessage) -> Option<Neighbour> {
    let ip = entry
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
            _ => None,
        })?;
    let mac = entry
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::LinkLayerAddress(bytes) => bytes.as_slice().try_into().ok(),
            _ => None,
        });
    let ext_managed = entry.attributes.iter().any(|attribute| {
        matches!(attribute, NeighbourAttribute::ExtFlags(flags) if flags.contains(NeighbourExtFlags::Managed))
    });
    let resolved = mac.is_some()
        && !matches!(
            entry.header.state,
            NeighbourState::Failed | NeighbourState::Incomplete
        );
    Some(Neighbour {
        ip,
        mac,
        resolved,
        managed: ext_managed && entry.header.flags.contains(NeighbourFlags::ExtLearned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: NeighbourState, mac: Option<[u8; 6]>, managed: bool) -> NeighbourMessage {
        let mut message = neighbour_message(7, Ipv4Addr::new(10, 0, 0, 2));
        message.header.state = state;
        if let Some(mac) = mac {
            message
                .attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        if managed {
            message.header.flags = NeighbourFlags::ExtLearned;
            message
                .attributes
                .push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        }
        message
    }

    #[test]
    fn entries_read_as_ip_neigh_shows_them() {
        let mac = [2, 0, 0, 0, 0, 9];
        let reachable = neighbour(&entry(NeighbourState::Reachable, Some(mac), true)).unwrap();
        assert_eq!(
            reachable,
            Neighbour {
                ip: Ipv4Addr::new(10, 0, 0, 2),
                mac: Some(mac),
                resolved: true,
                managed: true,
            }
        );
        // A failed entry may still carry its old MAC: not usable.
        assert!(
            !neighbour(&entry(NeighbourState::Failed, Some(mac), true))
                .unwrap()
                .resolved
        );
        assert!(
            !neighbour(&entry(NeighbourState::Incomplete, None, true))
                .unwrap()
                .resolved
        );
        assert!(
            neighbour(&entry(NeighbourState::Stale, Some(mac), false))
                .unwrap()
                .resolved
        );
        assert!(
            !neighbour(&entry(NeighbourState::Stale, Some(mac), false))
                .unwrap()
                .managed
        );
        // Only extern_learn without managed is not ours either.
        let mut learned = entry(NeighbourState::Reachable, Some(mac), false);
        learned.header.flags = NeighbourFlags::ExtLearned;
        assert!(!neighbour(&learned).unwrap().managed);
    }
}
