//! TCP segments (RFC 9293): the fixed header, options, flags ([`Flags`]) and payload.
//!
//! The buffer is the whole segment, exactly: the IPv4 payload as [`super::ipv4::Packet::payload`]
//! returns it, because the checksum covers the segment length. [`Packet::check_len`] checks, in
//! the datapath's order: 20 bytes present, data offset at least 5, header with options present.
//! [`Repr`] is the basic header: it neither keeps nor emits options, and ignores the urgent
//! pointer and the reserved bits.
//!
//! Panic contract: see [the module overview](super); accessors of a packet that passed
//! [`Packet::check_len`] never panic.

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign};
use std::net::Ipv4Addr;

use ctpath_common::wire::{IPPROTO_TCP, TCP_MIN_HDR_LEN};

use super::{checksum, read_u16, read_u32, write_u16, write_u32, Field, Rest};

/// Why a buffer is not a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TcpError {
    #[error("TCP segment of {len} bytes is shorter than its {needed}-byte header")]
    Truncated { len: usize, needed: usize },
    #[error("TCP data offset {data_offset} is below 5")]
    BadDataOffset { data_offset: u8 },
}

pub mod field {
    use super::{Field, Rest};

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset (high nibble, in 32-bit words) and reserved bits.
    pub const DATA_OFFSET: usize = 12;
    /// CWR, ECE, URG, ACK, PSH, RST, SYN, FIN, high bit to low.
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    /// Options, up to the header length.
    pub const OPTIONS: Rest = 20..;
}

/// The eight TCP flag bits (byte 13 of the header).
// The bit values are not in `ctpath_common::wire` yet; move them there when the kernel side's
// conntrack needs them.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: Flags = Flags(ctpath_common::wire::TCP_FIN);
    pub const SYN: Flags = Flags(ctpath_common::wire::TCP_SYN);
    pub const RST: Flags = Flags(ctpath_common::wire::TCP_RST);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(ctpath_common::wire::TCP_ACK);
    pub const URG: Flags = Flags(0x20);
    pub const ECE: Flags = Flags(0x40);
    pub const CWR: Flags = Flags(0x80);

    const NAMES: [(Flags, &'static str); 8] = [
        (Flags::FIN, "FIN"),
        (Flags::SYN, "SYN"),
        (Flags::RST, "RST"),
        (Flags::PSH, "PSH"),
        (Flags::ACK, "ACK"),
        (Flags::URG, "URG"),
        (Flags::ECE, "ECE"),
        (Flags::CWR, "CWR"),
    ];

    pub const fn empty() -> Flags {
        Flags(0)
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag set in `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Flags {
    type Output = Flags;
    fn bitand(self, rhs: Flags) -> Flags {
        Flags(self.0 & rhs.0)
    }
}

/// `SYN|ACK`; `-` when no flag is set.
impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({self})")
    }
}

/// A view of a TCP segment.
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
    pub fn new_checked(buffer: T) -> Result<Packet<T>, TcpError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in this order: 20 bytes present, data offset at least 5, the header with its
    /// options present.
    pub fn check_len(&self) -> Result<(), TcpError> {
        let len = self.buffer.as_ref().len();
        if len < TCP_MIN_HDR_LEN {
            return Err(TcpError::Truncated {
                len,
                needed: TCP_MIN_HDR_LEN,
            });
        }
        let data_offset = self.data_offset();
        if usize::from(data_offset) * 4 < TCP_MIN_HDR_LEN {
            return Err(TcpError::BadDataOffset { data_offset });
        }
        let header_len = self.header_len();
        if header_len > len {
            return Err(TcpError::Truncated {
                len,
                needed: header_len,
            });
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

    pub fn seq_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SEQ_NUM])
    }

    pub fn ack_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::ACK_NUM])
    }

    /// Header length in 32-bit words.
    pub fn data_offset(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFFSET] >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }

    pub fn window_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::WIN_SIZE])
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    pub fn urgent_at(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::URGENT])
    }

    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS.start..self.header_len()]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum over the pseudo-header and the whole buffer is correct. Panics if the
    /// buffer is longer than 65535 bytes (no IPv4 segment is).
    pub fn verify_checksum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            checksum::pseudo_header(src_addr, dst_addr, IPPROTO_TCP, segment_len(data)),
            checksum::sum(data),
        ]) == 0xffff
    }
}

fn segment_len(data: &[u8]) -> u16 {
    u16::try_from(data.len()).expect("TCP segment longer than 65535 bytes")
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], value);
    }

    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], value);
    }

    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::SEQ_NUM], value);
    }

    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::ACK_NUM], value);
    }

    /// Sets the header length in 32-bit words (only the low four bits are kept); clears the
    /// reserved bits.
    pub fn set_data_offset(&mut self, value: u8) {
        self.buffer.as_mut()[field::DATA_OFFSET] = (value & 0x0f) << 4;
    }

    pub fn set_flags(&mut self, flags: Flags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    pub fn set_window_len(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::WIN_SIZE], value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::URGENT], value);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and stores the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header(src_addr, dst_addr, IPPROTO_TCP, segment_len(data)),
            checksum::sum(data),
        ]);
        self.set_checksum(!sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A TCP segment without options, as values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: Flags,
    pub window_len: u16,
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Reads a checked packet. Cannot fail; does not verify the checksum; ignores options.
    pub fn parse<T: AsRef<[u8]>>(packet: &'a Packet<T>) -> Repr<'a> {
        Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            payload: packet.payload(),
        }
    }

    /// Header (20 bytes, no options) plus payload.
    pub fn buffer_len(&self) -> usize {
        TCP_MIN_HDR_LEN + self.payload.len()
    }

    /// Writes header, payload and checksum. The buffer must be exactly [`Repr::buffer_len`]
    /// bytes, since the checksum covers all of it; panics if it is shorter.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_data_offset((TCP_MIN_HDR_LEN / 4) as u8);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(0);
        packet.payload_mut()[..self.payload.len()].copy_from_slice(self.payload);
        packet.fill_checksum(src_addr, dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use ctpath_common::wire::{ETH_HDR_LEN, IPV4_MIN_HDR_LEN};

    use super::*;
    use crate::testing::captured;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const L4: usize = ETH_HDR_LEN + IPV4_MIN_HDR_LEN;

    #[test]
    fn parses_captured_syn_with_options() {
        let packet = Packet::new_checked(&captured::TCP_SYN[L4..]).unwrap();
        assert_eq!(packet.src_port(), 40001);
        assert_eq!(packet.dst_port(), 80);
        assert_eq!(packet.seq_number(), 1086358873);
        assert_eq!(packet.ack_number(), 0);
        assert_eq!(packet.data_offset(), 10);
        assert_eq!(packet.flags(), Flags::SYN);
        assert_eq!(packet.window_len(), 64240);
        assert_eq!(packet.checksum(), 0xd5dc);
        // mss 1460, sackOK, TS, nop, wscale 10
        assert_eq!(packet.options().len(), 20);
        assert_eq!(packet.options()[..4], [0x02, 0x04, 0x05, 0xb4]);
        assert!(packet.payload().is_empty());
        assert!(packet.verify_checksum(CLIENT, SERVER));
        assert!(!packet.verify_checksum(CLIENT, Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn emit_reproduces_captured_rst_ack() {
        let packet = Packet::new_checked(&captured::TCP_RST_ACK[L4..]).unwrap();
        let repr = Repr::parse(&packet);
        assert_eq!(repr.flags, Flags::RST | Flags::ACK);
        assert_eq!(repr.flags.to_string(), "RST|ACK");
        assert_eq!(repr.ack_number, 1086358874);
        assert!(packet.verify_checksum(SERVER, CLIENT));
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buffer[..]), SERVER, CLIENT);
        assert_eq!(buffer, captured::TCP_RST_ACK[L4..]);
    }

    #[test]
    fn check_len_reports_the_first_failing_check() {
        let syn = &captured::TCP_SYN[L4..];
        assert_eq!(
            Packet::new_checked(&syn[..19]).map(|_| ()),
            Err(TcpError::Truncated {
                len: 19,
                needed: 20
            })
        );
        // Data offset 10 (40 bytes of header) with only 30 bytes present.
        assert_eq!(
            Packet::new_checked(&syn[..30]).map(|_| ()),
            Err(TcpError::Truncated {
                len: 30,
                needed: 40
            })
        );
        let mut buffer = syn.to_vec();
        Packet::new_unchecked(&mut buffer[..]).set_data_offset(4);
        assert_eq!(
            Packet::new_checked(&buffer[..]).map(|_| ()),
            Err(TcpError::BadDataOffset { data_offset: 4 })
        );
    }

    #[test]
    fn flags_display_and_contains() {
        assert_eq!(Flags::empty().to_string(), "-");
        assert_eq!((Flags::SYN | Flags::ACK).to_string(), "SYN|ACK");
        assert_eq!(format!("{:?}", Flags::FIN), "Flags(FIN)");
        assert!((Flags::SYN | Flags::ACK).contains(Flags::SYN));
        assert!(!Flags::SYN.contains(Flags::SYN | Flags::ACK));
        assert_eq!((Flags::SYN | Flags::ACK) & Flags::ACK, Flags::ACK);
    }
}
