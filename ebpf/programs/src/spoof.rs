//! Anti-spoofing (docs/security-groups.md, "Anti-spoofing"): with port security on, a pod may
//! send only from addresses it owns (its own, its allowed address pairs), each with the MAC
//! that goes with it. Ownership is compiled by the agent into `SOURCES` (an LPM trie keyed by
//! ifindex and prefix, giving the MAC) and `PAIR_MACS`.

use ctpath_common::{
    maps::{port_flags, PodPort},
    DropReason,
};

use crate::{
    maps,
    parse::{Frame, Payload},
};

/// Checks that the pod behind `ifindex` (whose port is `port`) owns the addresses `frame`
/// comes from.
#[inline(always)]
pub fn check(ifindex: u32, port: &PodPort, frame: &Frame) -> Result<(), DropReason> {
    if port.flags & port_flags::PORT_SECURITY == 0 {
        return Ok(());
    }
    match &frame.payload {
        Payload::Ipv4(packet) => match maps::source_mac(ifindex, packet.header.src) {
            None => Err(DropReason::SpoofedIp),
            Some(mac) if mac != frame.eth.src => Err(DropReason::SpoofedMac),
            Some(_) => Ok(()),
        },
        Payload::Arp(arp) => {
            let owned = if arp.sender_mac != frame.eth.src {
                false
            } else if arp.sender_ip == [0; 4] {
                // An ARP probe: no address claimed yet, only the interface's own MAC.
                arp.sender_mac == port.mac
            } else {
                maps::source_mac(ifindex, arp.sender_ip) == Some(arp.sender_mac)
            };
            if owned {
                Ok(())
            } else {
                Err(DropReason::SpoofedArp)
            }
        }
        Payload::Other => {
            if frame.eth.src == port.mac || maps::is_pair_mac(ifindex, frame.eth.src) {
                Ok(())
            } else {
                Err(DropReason::SpoofedMac)
            }
        }
    }
}
