//! Anti-spoofing (docs/security-groups.md, "Anti-spoofing"): whether a frame a pod sent comes
//! from an address and a MAC its interface owns. Applied by `from_pod` right after
//! classification, to interfaces with port security only.
//!
//! Owns: the ownership rule. An interface owns (address, MAC) when the address is its `ip`
//! and the MAC its own, or the address is inside an allowed address pair's prefix and the MAC
//! is that of the most specific such pair (the first listed among equally specific ones; its
//! own MAC for a pair without one), as docs/security-groups.md says and
//! [`LocalPort::mac_owning`] computes: the interface's own address keeps its own MAC inside a
//! pair's prefix, and one address is owned with one MAC.
//!
//! Panic contract: nothing here panics.

use std::net::Ipv4Addr;

use ctpath_common::DropReason;

use super::classify::{Classified, L3};
use super::topology::LocalPort;
use crate::wire::MacAddr;

/// Checks a frame from the pod behind `port` (whose port security is on).
pub fn check(port: &LocalPort, frame: &Classified) -> Result<(), DropReason> {
    match &frame.l3 {
        L3::Ipv4(ip) => match port.mac_owning(ip.src) {
            None => Err(DropReason::SpoofedIp),
            Some(mac) if mac != frame.src_mac => Err(DropReason::SpoofedMac),
            Some(_) => Ok(()),
        },
        L3::Arp(arp) => {
            let owned = if arp.sender_ip == Ipv4Addr::UNSPECIFIED {
                // A probe (RFC 5227): only from the interface's own MAC.
                arp.sender_mac == port.mac
            } else {
                owns(port, arp.sender_ip, arp.sender_mac)
            };
            if arp.sender_mac != frame.src_mac || !owned {
                return Err(DropReason::SpoofedArp);
            }
            Ok(())
        }
        L3::Other { .. } => {
            let pairs = &port.allowed_address_pairs;
            if frame.src_mac != port.mac && !pairs.iter().any(|p| p.mac == Some(frame.src_mac)) {
                return Err(DropReason::SpoofedMac);
            }
            Ok(())
        }
    }
}

/// Whether `port` may send from `ip` with Ethernet source `mac`.
pub fn owns(port: &LocalPort, ip: Ipv4Addr, mac: MacAddr) -> bool {
    port.mac_owning(ip) == Some(mac)
}
