//! Anti-spoofing (docs/security-groups.md, "Anti-spoofing"): whether a frame a pod sent comes
//! from an address and a MAC its interface owns. Applied by `from_pod` right after
//! classification, to interfaces with port security only.
//!
//! Owns: the ownership rule. An interface owns (address, MAC) when the address is its `ip`
//! and the MAC its own, or the address is inside an allowed address pair's prefix and the MAC
//! is that pair's (its own MAC for a pair without one). Where prefixes overlap, *any* owning
//! entry with the frame's MAC will do, as OpenStack's allowed-address-pairs filter does (one
//! rule per pair): the interface's own address may also be sent from the MAC of a pair whose
//! prefix covers it, and one address may be owned with two MACs through two pairs.
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
