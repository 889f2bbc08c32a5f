//! Ethernet II frames: destination and source MAC address, ethertype, payload. Owns [`MacAddr`].
//!
//! There is no frame check sequence (XDP and AF_XDP never see it) and no VLAN handling: an
//! 802.1Q tag is just another ethertype here. Whatever follows the ethertype is the payload,
//! including any padding up to the 60-byte minimum frame; the layer above decides how much of it
//! is meaningful (IPv4 by its total length).
//!
//! Panic contract: see [the module overview](super); accessors of a packet that passed
//! [`Packet::check_len`] never panic.

use core::fmt;

use ctpath_common::wire::{ETH_ADDR_LEN, ETH_HDR_LEN};

use super::{read_u16, write_u16, Field, Rest};

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; ETH_ADDR_LEN]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; ETH_ADDR_LEN]);
    pub const ZERO: MacAddr = MacAddr([0; ETH_ADDR_LEN]);

    /// The address in the first six bytes of `bytes`. Panics if there are fewer.
    pub fn from_bytes(bytes: &[u8]) -> MacAddr {
        let mut addr = [0u8; ETH_ADDR_LEN];
        addr.copy_from_slice(&bytes[..ETH_ADDR_LEN]);
        MacAddr(addr)
    }

    pub const fn octets(self) -> [u8; ETH_ADDR_LEN] {
        self.0
    }

    pub fn is_broadcast(self) -> bool {
        self == MacAddr::BROADCAST
    }

    /// Group address (I/G bit set); broadcast is one.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_unicast(self) -> bool {
        !self.is_multicast()
    }
}

impl From<[u8; ETH_ADDR_LEN]> for MacAddr {
    fn from(octets: [u8; ETH_ADDR_LEN]) -> MacAddr {
        MacAddr(octets)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Why a buffer is not an Ethernet frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EthernetError {
    #[error("Ethernet frame of {len} bytes is shorter than the 14-byte header")]
    Truncated { len: usize },
}

pub mod field {
    use super::{Field, Rest};

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

/// A view of an Ethernet II frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; see the panic contract.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` and checks that it holds a whole Ethernet header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, EthernetError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the 14-byte header.
    pub fn check_len(&self) -> Result<(), EthernetError> {
        let len = self.buffer.as_ref().len();
        if len < ETH_HDR_LEN {
            return Err(EthernetError::Truncated { len });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    pub fn ethertype(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ETHERTYPE])
    }

    /// Everything after the header, padding included.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    pub fn set_ethertype(&mut self, ethertype: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ETHERTYPE], ethertype);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The Ethernet header as values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    pub ethertype: u16,
}

impl Repr {
    /// Reads the header of a checked packet. Cannot fail: every 14 bytes are some header.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            ethertype: packet.ethertype(),
        }
    }

    /// Length of the header this emits (the payload is the caller's).
    pub const fn buffer_len(&self) -> usize {
        ETH_HDR_LEN
    }

    /// Writes the header. Panics if the buffer is shorter than [`Repr::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_dst_addr(self.dst_addr);
        packet.set_src_addr(self.src_addr);
        packet.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use ctpath_common::wire::ETHERTYPE_ARP;

    use super::*;
    use crate::testing::captured;

    #[test]
    fn parses_captured_arp_request_header() {
        let packet = Packet::new_checked(&captured::ARP_REQUEST[..]).unwrap();
        assert_eq!(packet.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(
            packet.src_addr(),
            MacAddr([0x02, 0x00, 0x0a, 0x00, 0x00, 0x01])
        );
        assert_eq!(packet.ethertype(), ETHERTYPE_ARP);
        assert_eq!(packet.payload().len(), 28);
    }

    #[test]
    fn short_buffers_are_truncated() {
        for len in 0..ETH_HDR_LEN {
            let buffer = vec![0u8; len];
            assert_eq!(
                Packet::new_checked(&buffer[..]),
                Err(EthernetError::Truncated { len })
            );
        }
        assert!(Packet::new_checked(&[0u8; ETH_HDR_LEN][..])
            .unwrap()
            .payload()
            .is_empty());
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let repr = Repr {
            src_addr: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_addr: MacAddr([2, 0, 0, 0, 0, 2]),
            ethertype: 0x86dd,
        };
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buffer[..]));
        assert_eq!(
            buffer,
            [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd],
            "destination first, then source, then ethertype"
        );
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buffer[..]).unwrap()),
            repr
        );
    }

    #[test]
    fn mac_addr_kinds_and_display() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(MacAddr([0x02, 0, 0, 0, 0, 1]).is_unicast());
        assert_eq!(
            MacAddr([0x02, 0, 0x0a, 0xff, 0, 1]).to_string(),
            "02:00:0a:ff:00:01"
        );
    }
}
