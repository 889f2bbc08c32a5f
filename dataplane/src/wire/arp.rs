//! ARP for Ethernet hardware and IPv4 protocol addresses (RFC 826): the only kind a pod sends,
//! and the only layout this view knows (28 bytes, fixed offsets).
//!
//! [`Packet::check_len`] checks only that the 28 bytes are there; [`Repr::parse`] then rejects
//! any other hardware type, protocol type or address length, in that order of concern, as the
//! XDP program does. The operation is not restricted: requests and replies are named, anything
//! else is kept as [`Operation::Other`] for the layer above to judge.
//!
//! Panic contract: see [the module overview](super); accessors of a packet that passed
//! [`Packet::check_len`] never panic.

use std::net::Ipv4Addr;

use ctpath_common::wire::{
    ARP_HTYPE_ETHERNET, ARP_LEN, ARP_OP_REPLY, ARP_OP_REQUEST, ETHERTYPE_IPV4, ETH_ADDR_LEN,
};

use super::{read_ipv4_addr, read_u16, write_u16, Field, MacAddr};

/// Length of an IPv4 address, the ARP protocol-address length this view supports.
// Not in `ctpath_common::wire` yet; move it there when the kernel side needs it.
const IPV4_ADDR_LEN: u8 = 4;

/// Why a buffer is not an Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArpError {
    #[error("ARP packet of {len} bytes is shorter than the 28 bytes of Ethernet/IPv4 ARP")]
    Truncated { len: usize },
    #[error(
        "unsupported ARP: hardware type {htype}, protocol type {ptype:#06x}, address lengths \
         {hlen}/{plen} (only Ethernet/IPv4, 6/4)"
    )]
    Unsupported {
        htype: u16,
        ptype: u16,
        hlen: u8,
        plen: u8,
    },
}

pub mod field {
    use super::Field;

    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// The ARP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Request,
    Reply,
    /// RARP, InARP, or anything else: kept, not judged here.
    Other(u16),
}

impl From<u16> for Operation {
    fn from(value: u16) -> Operation {
        match value {
            ARP_OP_REQUEST => Operation::Request,
            ARP_OP_REPLY => Operation::Reply,
            other => Operation::Other(other),
        }
    }
}

impl From<Operation> for u16 {
    fn from(operation: Operation) -> u16 {
        match operation {
            Operation::Request => ARP_OP_REQUEST,
            Operation::Reply => ARP_OP_REPLY,
            Operation::Other(other) => other,
        }
    }
}

/// A view of an Ethernet/IPv4 ARP packet (the Ethernet payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; see the panic contract.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` and checks that it holds 28 bytes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, ArpError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the 28 bytes of Ethernet/IPv4 ARP. Bytes after them
    /// (Ethernet padding) are allowed and ignored.
    pub fn check_len(&self) -> Result<(), ArpError> {
        let len = self.buffer.as_ref().len();
        if len < ARP_LEN {
            return Err(ArpError::Truncated { len });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::HTYPE])
    }

    pub fn protocol_type(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::PTYPE])
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    pub fn operation(&self) -> Operation {
        read_u16(&self.buffer.as_ref()[field::OPER]).into()
    }

    pub fn sender_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        read_ipv4_addr(&self.buffer.as_ref()[field::SPA])
    }

    pub fn target_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        read_ipv4_addr(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_hardware_type(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::HTYPE], value);
    }

    pub fn set_protocol_type(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::PTYPE], value);
    }

    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    pub fn set_operation(&mut self, operation: Operation) {
        write_u16(&mut self.buffer.as_mut()[field::OPER], operation.into());
    }

    pub fn set_sender_hardware_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    pub fn set_sender_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    pub fn set_target_hardware_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An Ethernet/IPv4 ARP packet as values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    pub operation: Operation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// Reads a checked packet; rejects anything but Ethernet (1) / IPv4 (0x0800) with address
    /// lengths 6 and 4.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ArpError> {
        let (htype, ptype) = (packet.hardware_type(), packet.protocol_type());
        let (hlen, plen) = (packet.hardware_len(), packet.protocol_len());
        if htype != ARP_HTYPE_ETHERNET
            || ptype != ETHERTYPE_IPV4
            || usize::from(hlen) != ETH_ADDR_LEN
            || plen != IPV4_ADDR_LEN
        {
            return Err(ArpError::Unsupported {
                htype,
                ptype,
                hlen,
                plen,
            });
        }
        Ok(Repr {
            operation: packet.operation(),
            sender_mac: packet.sender_hardware_addr(),
            sender_ip: packet.sender_protocol_addr(),
            target_mac: packet.target_hardware_addr(),
            target_ip: packet.target_protocol_addr(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        ARP_LEN
    }

    /// Writes the 28 bytes. Panics if the buffer is shorter.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_hardware_type(ARP_HTYPE_ETHERNET);
        packet.set_protocol_type(ETHERTYPE_IPV4);
        packet.set_hardware_len(ETH_ADDR_LEN as u8);
        packet.set_protocol_len(IPV4_ADDR_LEN);
        packet.set_operation(self.operation);
        packet.set_sender_hardware_addr(self.sender_mac);
        packet.set_sender_protocol_addr(self.sender_ip);
        packet.set_target_hardware_addr(self.target_mac);
        packet.set_target_protocol_addr(self.target_ip);
    }
}

#[cfg(test)]
mod tests {
    use ctpath_common::wire::ETH_HDR_LEN;

    use super::*;
    use crate::testing::captured;

    fn captured_request() -> Packet<&'static [u8]> {
        Packet::new_checked(&captured::ARP_REQUEST[ETH_HDR_LEN..]).unwrap()
    }

    #[test]
    fn parses_captured_request() {
        let repr = Repr::parse(&captured_request()).unwrap();
        assert_eq!(
            repr,
            Repr {
                operation: Operation::Request,
                sender_mac: MacAddr([0x02, 0x00, 0x0a, 0x00, 0x00, 0x01]),
                sender_ip: Ipv4Addr::new(10, 0, 0, 1),
                target_mac: MacAddr::ZERO,
                target_ip: Ipv4Addr::new(10, 0, 0, 2),
            }
        );
    }

    #[test]
    fn parses_captured_reply() {
        let packet = Packet::new_checked(&captured::ARP_REPLY[ETH_HDR_LEN..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr.operation, Operation::Reply);
        assert_eq!(
            repr.sender_mac,
            MacAddr([0x02, 0x00, 0x0a, 0x00, 0x00, 0x02])
        );
        assert_eq!(repr.sender_ip, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            repr.target_mac,
            MacAddr([0x02, 0x00, 0x0a, 0x00, 0x00, 0x01])
        );
        assert_eq!(repr.target_ip, Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn emit_reproduces_captured_request() {
        let repr = Repr::parse(&captured_request()).unwrap();
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buffer[..]));
        assert_eq!(buffer, captured::ARP_REQUEST[ETH_HDR_LEN..]);
    }

    #[test]
    fn short_buffers_are_truncated() {
        for len in 0..ARP_LEN {
            let bytes = &captured::ARP_REQUEST[ETH_HDR_LEN..ETH_HDR_LEN + len];
            assert_eq!(Packet::new_checked(bytes), Err(ArpError::Truncated { len }));
        }
    }

    #[test]
    fn other_types_and_lengths_are_unsupported() {
        type Mutate = fn(&mut Packet<&mut [u8]>);
        let cases: [(&str, Mutate); 4] = [
            ("htype 6 (IEEE 802)", |p| p.set_hardware_type(6)),
            ("ptype IPv6", |p| p.set_protocol_type(0x86dd)),
            ("hlen 8", |p| p.set_hardware_len(8)),
            ("plen 16", |p| p.set_protocol_len(16)),
        ];
        for (description, mutate) in cases {
            let mut buffer = captured::ARP_REQUEST[ETH_HDR_LEN..].to_vec();
            mutate(&mut Packet::new_unchecked(&mut buffer[..]));
            let result = Repr::parse(&Packet::new_checked(&buffer[..]).unwrap());
            assert!(
                matches!(result, Err(ArpError::Unsupported { .. })),
                "{description}: {result:?}"
            );
        }
    }

    #[test]
    fn other_operations_are_kept() {
        let mut buffer = captured::ARP_REQUEST[ETH_HDR_LEN..].to_vec();
        Packet::new_unchecked(&mut buffer[..]).set_operation(Operation::Other(3));
        let repr = Repr::parse(&Packet::new_checked(&buffer[..]).unwrap()).unwrap();
        assert_eq!(repr.operation, Operation::Other(3));
        assert_eq!(u16::from(Operation::Other(3)), 3);
    }
}
