//! UDP datagrams (RFC 768): ports, length, checksum, payload.
//!
//! The buffer is the IPv4 payload as [`super::ipv4::Packet::payload`] returns it.
//! [`Packet::check_len`] checks, in the datapath's order: 8 bytes present, then the UDP length
//! between 8 and the buffer length. Bytes past the UDP length are allowed and excluded from
//! [`Packet::payload`]; the checksum covers the UDP length, not the buffer.
//!
//! Panic contract: see [the module overview](super); accessors of a packet that passed
//! [`Packet::check_len`] never panic.

use std::net::Ipv4Addr;

use ctpath_common::wire::{IPPROTO_UDP, UDP_HDR_LEN};

use super::{checksum, read_u16, write_u16, Field};

/// Why a buffer is not a UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    #[error("UDP datagram of {len} bytes is shorter than the 8-byte header")]
    Truncated { len: usize },
    #[error("UDP length {udp_len} is below 8 or above the {len} bytes present")]
    BadLength { udp_len: u16, len: usize },
}

pub mod field {
    use super::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;

    /// The payload runs from here to the UDP length.
    pub const PAYLOAD_START: usize = 8;
}

/// A view of a UDP datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; see the panic contract.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` and runs [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, UdpError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in this order: 8 bytes present, 8 <= UDP length <= buffer length.
    pub fn check_len(&self) -> Result<(), UdpError> {
        let len = self.buffer.as_ref().len();
        if len < UDP_HDR_LEN {
            return Err(UdpError::Truncated { len });
        }
        let udp_len = self.len();
        if usize::from(udp_len) < UDP_HDR_LEN || usize::from(udp_len) > len {
            return Err(UdpError::BadLength { udp_len, len });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The UDP length field: header and payload, in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// From the end of the header to the UDP length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD_START..usize::from(self.len())]
    }

    /// Whether the checksum is correct, or absent (zero: the sender did not compute one).
    pub fn verify_checksum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> bool {
        self.checksum() == 0 || self.sum(src_addr, dst_addr) == 0xffff
    }

    fn sum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> u16 {
        let udp_len = self.len();
        checksum::combine(&[
            checksum::pseudo_header(src_addr, dst_addr, IPPROTO_UDP, udp_len),
            checksum::sum(&self.buffer.as_ref()[..usize::from(udp_len)]),
        ])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], value);
    }

    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], value);
    }

    pub fn set_len(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD_START..end]
    }

    /// Computes and stores the checksum over the pseudo-header and the UDP length. A computed
    /// zero is sent as `0xffff`, since zero means "no checksum" (RFC 768).
    pub fn fill_checksum(&mut self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) {
        self.set_checksum(0);
        let checksum = match !self.sum(src_addr, dst_addr) {
            0 => 0xffff,
            checksum => checksum,
        };
        self.set_checksum(checksum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A UDP datagram as values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Reads a checked packet. Cannot fail; does not verify the checksum.
    pub fn parse<T: AsRef<[u8]>>(packet: &'a Packet<T>) -> Repr<'a> {
        Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: packet.payload(),
        }
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        UDP_HDR_LEN + self.payload.len()
    }

    /// Writes header, payload and checksum. Panics if the buffer is shorter than
    /// [`Repr::buffer_len`] or the datagram does not fit the 16-bit length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) {
        let len = u16::try_from(self.buffer_len()).expect("UDP datagram longer than 65535 bytes");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src_addr, dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use ctpath_common::wire::{ETH_HDR_LEN, IPV4_MIN_HDR_LEN};

    use super::*;
    use crate::testing::captured;

    const L4: usize = ETH_HDR_LEN + IPV4_MIN_HDR_LEN;
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn parses_captured_datagram_and_its_checksum() {
        let packet = Packet::new_checked(&captured::UDP[L4..]).unwrap();
        assert_eq!(packet.src_port(), 40000);
        assert_eq!(packet.dst_port(), 53);
        assert_eq!(packet.len(), 14);
        assert_eq!(packet.checksum(), 0x071c);
        assert_eq!(packet.payload(), b"ctpath");
        assert!(packet.verify_checksum(SRC, DST));
        assert!(!packet.verify_checksum(SRC, Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn emit_reproduces_captured_datagram() {
        let repr = Repr {
            src_port: 40000,
            dst_port: 53,
            payload: b"ctpath",
        };
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buffer[..]), SRC, DST);
        assert_eq!(buffer, captured::UDP[L4..]);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buffer[..]).unwrap()),
            repr
        );
    }

    #[test]
    fn check_len_reports_the_first_failing_check() {
        let datagram = &captured::UDP[L4..];
        assert_eq!(
            Packet::new_checked(&datagram[..7]).map(|_| ()),
            Err(UdpError::Truncated { len: 7 })
        );
        // Length 14 with only 13 bytes present.
        assert_eq!(
            Packet::new_checked(&datagram[..13]).map(|_| ()),
            Err(UdpError::BadLength {
                udp_len: 14,
                len: 13
            })
        );
        let mut buffer = datagram.to_vec();
        Packet::new_unchecked(&mut buffer[..]).set_len(7);
        assert_eq!(
            Packet::new_checked(&buffer[..]).map(|_| ()),
            Err(UdpError::BadLength {
                udp_len: 7,
                len: 14
            })
        );
    }

    #[test]
    fn bytes_after_udp_length_are_not_payload() {
        let mut buffer = captured::UDP[L4..].to_vec();
        buffer.extend_from_slice(b"trailer");
        let packet = Packet::new_checked(&buffer[..]).unwrap();
        assert_eq!(packet.payload(), b"ctpath");
        assert!(packet.verify_checksum(SRC, DST));
    }

    #[test]
    fn zero_checksum_means_absent_and_is_never_emitted() {
        let mut buffer = captured::UDP[L4..].to_vec();
        let mut packet = Packet::new_unchecked(&mut buffer[..]);
        packet.set_checksum(0);
        assert!(packet.verify_checksum(SRC, DST));
        // Find a payload whose checksum computes to zero: the stored value must be 0xffff.
        for value in 0..=u16::MAX {
            let payload = value.to_be_bytes();
            let repr = Repr {
                src_port: 1,
                dst_port: 2,
                payload: &payload,
            };
            let mut buffer = vec![0u8; repr.buffer_len()];
            let mut packet = Packet::new_unchecked(&mut buffer[..]);
            repr.emit(&mut packet, SRC, DST);
            assert_ne!(packet.checksum(), 0);
            if packet.checksum() == 0xffff {
                assert!(packet.verify_checksum(SRC, DST));
                return;
            }
        }
        panic!("no payload with a zero checksum found");
    }
}
