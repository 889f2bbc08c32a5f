//! IPv4 headers (RFC 791): the header with its options, and the datagram payload it delimits.
//!
//! [`Packet::check_len`] checks, in the datapath's order: 20 bytes present, version 4, IHL at
//! least 5, the whole header (with options) present, total length between the header length and
//! the buffer length. The version is checked here, between two length checks, because the IHL
//! nibble means nothing unless the version is 4. Bytes past the total length (Ethernet padding)
//! are allowed and excluded from [`Packet::payload`].
//!
//! Fragments pass `check_len` (their header is well formed) but not [`Repr::parse`]: a `Repr`
//! describes a whole datagram, and ctpath does not reassemble. The header checksum is not
//! verified by `parse` (the receiving kernel does that); [`Packet::verify_checksum`] is there for
//! tests. Options are readable but [`Repr`] neither keeps nor emits them.
//!
//! Panic contract: see [the module overview](super); accessors of a packet that passed
//! [`Packet::check_len`] never panic.

use std::net::Ipv4Addr;

use ctpath_common::wire::{IPV4_FLAG_DF, IPV4_FLAG_MF, IPV4_FRAG_OFFSET_MASK, IPV4_MIN_HDR_LEN};

use super::{checksum, read_ipv4_addr, read_u16, write_u16, Field, Rest};

/// Why a buffer is not a whole, unfragmented IPv4 datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    #[error("IPv4 packet of {len} bytes is shorter than its {needed}-byte header")]
    Truncated { len: usize, needed: usize },
    #[error("IP version {version} is not 4")]
    BadVersion { version: u8 },
    #[error("IPv4 IHL {ihl} is below 5")]
    BadIhl { ihl: u8 },
    #[error("IPv4 total length {total_len} is below the header length {header_len} or above the {len} bytes present")]
    BadTotalLength {
        total_len: u16,
        header_len: usize,
        len: usize,
    },
    #[error("IPv4 fragment (more fragments: {more_frags}, offset {frag_offset}); fragments are not reassembled")]
    Fragment { more_frags: bool, frag_offset: u16 },
}

pub mod field {
    use super::{Field, Rest};

    /// Version (high nibble) and IHL (low nibble, in 32-bit words).
    pub const VER_IHL: usize = 0;
    /// DSCP (high six bits) and ECN (low two bits).
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    /// Flags (high three bits) and fragment offset (low 13 bits, in 8-byte units).
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
    /// Options, up to the header length.
    pub const OPTIONS: Rest = 20..;
}

/// A view of an IPv4 packet (the Ethernet payload, padding included).
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
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Ipv4Error> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in this order: 20 bytes present, version 4, IHL at least 5, the header with its
    /// options present, header length <= total length <= buffer length.
    pub fn check_len(&self) -> Result<(), Ipv4Error> {
        let len = self.buffer.as_ref().len();
        if len < IPV4_MIN_HDR_LEN {
            return Err(Ipv4Error::Truncated {
                len,
                needed: IPV4_MIN_HDR_LEN,
            });
        }
        if self.version() != 4 {
            return Err(Ipv4Error::BadVersion {
                version: self.version(),
            });
        }
        if usize::from(self.ihl()) * 4 < IPV4_MIN_HDR_LEN {
            return Err(Ipv4Error::BadIhl { ihl: self.ihl() });
        }
        let header_len = self.header_len();
        if header_len > len {
            return Err(Ipv4Error::Truncated {
                len,
                needed: header_len,
            });
        }
        let total_len = self.total_len();
        if usize::from(total_len) < header_len || usize::from(total_len) > len {
            return Err(Ipv4Error::BadTotalLength {
                total_len,
                header_len,
                len,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in 32-bit words.
    pub fn ihl(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] & 0x0f
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl()) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Header and data, in bytes.
    pub fn total_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    pub fn ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    fn flags_and_frag_offset(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::FLG_OFF])
    }

    pub fn dont_frag(&self) -> bool {
        self.flags_and_frag_offset() & IPV4_FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flags_and_frag_offset() & IPV4_FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units, as on the wire.
    pub fn frag_offset(&self) -> u16 {
        self.flags_and_frag_offset() & IPV4_FRAG_OFFSET_MASK
    }

    /// Whether this is a fragment of a larger datagram (more fragments follow, or not the first).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4_addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4_addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The options: header bytes after the first 20.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS.start..self.header_len()]
    }

    /// The datagram payload: from the end of the header to the total length; trailing padding
    /// is not part of it.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version(&mut self, version: u8) {
        let byte = &mut self.buffer.as_mut()[field::VER_IHL];
        *byte = (*byte & 0x0f) | (version << 4);
    }

    /// Sets the header length in 32-bit words (only the low four bits are kept).
    pub fn set_ihl(&mut self, ihl: u8) {
        let byte = &mut self.buffer.as_mut()[field::VER_IHL];
        *byte = (*byte & 0xf0) | (ihl & 0x0f);
    }

    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    pub fn set_total_len(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], value);
    }

    pub fn set_ident(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::IDENT], value);
    }

    fn set_flags_and_frag_offset(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::FLG_OFF], value);
    }

    pub fn set_dont_frag(&mut self, value: bool) {
        let raw = self.flags_and_frag_offset() & !IPV4_FLAG_DF;
        self.set_flags_and_frag_offset(raw | if value { IPV4_FLAG_DF } else { 0 });
    }

    pub fn set_more_frags(&mut self, value: bool) {
        let raw = self.flags_and_frag_offset() & !IPV4_FLAG_MF;
        self.set_flags_and_frag_offset(raw | if value { IPV4_FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset in 8-byte units (only the low 13 bits are kept).
    pub fn set_frag_offset(&mut self, value: u16) {
        let raw = self.flags_and_frag_offset() & !IPV4_FRAG_OFFSET_MASK;
        self.set_flags_and_frag_offset(raw | (value & IPV4_FRAG_OFFSET_MASK));
    }

    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum.
    ///
    /// The sum covers the header as far as the buffer holds it, so test code can also fill the
    /// checksum of a deliberately malformed header (IHL pointing past the buffer); on a checked
    /// packet that is exactly the header. Panics only if the buffer ends before the checksum
    /// field (12 bytes).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let end = self.header_len().min(self.buffer.as_ref().len());
        let sum = checksum::sum(&self.buffer.as_ref()[..end]);
        self.set_checksum(!sum);
    }

    /// The payload, mutably; same range as [`Packet::payload`].
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An unfragmented IPv4 header without options, as values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    /// Length of the payload (total length minus header length).
    pub payload_len: usize,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub ttl: u8,
}

impl Repr {
    /// Reads a checked packet; rejects fragments. Does not verify the checksum; ignores options.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Ipv4Error> {
        if packet.is_fragment() {
            return Err(Ipv4Error::Fragment {
                more_frags: packet.more_frags(),
                frag_offset: packet.frag_offset(),
            });
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            ttl: packet.ttl(),
        })
    }

    /// Length of the header this emits: 20 bytes, no options.
    pub const fn buffer_len(&self) -> usize {
        IPV4_MIN_HDR_LEN
    }

    /// Writes the 20-byte header with its checksum; the payload is the caller's. Panics if the
    /// buffer is shorter than 20 bytes or if `payload_len` does not fit in the total length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let total_len = u16::try_from(IPV4_MIN_HDR_LEN + self.payload_len)
            .expect("IPv4 payload longer than 65515 bytes");
        packet.set_version(4);
        packet.set_ihl((IPV4_MIN_HDR_LEN / 4) as u8);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.set_flags_and_frag_offset(if self.dont_frag { IPV4_FLAG_DF } else { 0 });
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use ctpath_common::wire::{ETH_HDR_LEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

    use super::*;
    use crate::testing::captured;

    fn ip(frame: &[u8]) -> Packet<&[u8]> {
        Packet::new_checked(&frame[ETH_HDR_LEN..]).unwrap()
    }

    #[test]
    fn parses_captured_udp_header() {
        let packet = ip(&captured::UDP);
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.total_len(), 34);
        assert_eq!(packet.ident(), 0x1f0c);
        assert!(packet.dont_frag());
        assert!(!packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.protocol(), IPPROTO_UDP);
        assert_eq!(packet.checksum(), 0x07bd);
        assert!(packet.verify_checksum());
        assert_eq!(packet.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(packet.options().is_empty());
        assert_eq!(packet.payload().len(), 14);
    }

    #[test]
    fn captured_checksums_verify_and_refill_identically() {
        for (frame, protocol) in [
            (&captured::UDP[..], IPPROTO_UDP),
            (&captured::TCP_SYN[..], IPPROTO_TCP),
            (&captured::TCP_RST_ACK[..], IPPROTO_TCP),
            (&captured::ICMP_ECHO_REQUEST[..], IPPROTO_ICMP),
            (&captured::ICMP_ECHO_REPLY[..], IPPROTO_ICMP),
        ] {
            let packet = ip(frame);
            assert_eq!(packet.protocol(), protocol);
            assert!(packet.verify_checksum());
            let mut copy = frame[ETH_HDR_LEN..].to_vec();
            let mut packet = Packet::new_unchecked(&mut copy[..]);
            packet.set_checksum(0xdead);
            assert!(!packet.verify_checksum());
            packet.fill_checksum();
            assert_eq!(copy, frame[ETH_HDR_LEN..]);
        }
    }

    #[test]
    fn emit_reproduces_captured_header() {
        let repr = Repr::parse(&ip(&captured::UDP)).unwrap();
        assert_eq!(repr.payload_len, 14);
        let mut buffer = vec![0u8; repr.buffer_len() + repr.payload_len];
        repr.emit(&mut Packet::new_unchecked(&mut buffer[..]));
        assert_eq!(buffer[..20], captured::UDP[ETH_HDR_LEN..ETH_HDR_LEN + 20]);
    }

    #[test]
    fn padding_after_total_length_is_not_payload() {
        let mut padded = captured::UDP[ETH_HDR_LEN..].to_vec();
        padded.extend_from_slice(&[0; 12]);
        let packet = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(packet.payload(), &captured::UDP[ETH_HDR_LEN + 20..]);
    }

    fn check(mutate: impl FnOnce(&mut Packet<&mut [u8]>)) -> Result<(), Ipv4Error> {
        let mut buffer = captured::UDP[ETH_HDR_LEN..].to_vec();
        mutate(&mut Packet::new_unchecked(&mut buffer[..]));
        Packet::new_checked(&buffer[..]).map(|_| ())
    }

    #[test]
    fn check_len_reports_the_first_failing_check() {
        assert_eq!(
            Packet::new_checked(&captured::UDP[ETH_HDR_LEN..ETH_HDR_LEN + 19]).map(|_| ()),
            Err(Ipv4Error::Truncated {
                len: 19,
                needed: 20
            })
        );
        // Version is checked before the IHL.
        assert_eq!(
            check(|p| {
                p.set_version(6);
                p.set_ihl(2);
            }),
            Err(Ipv4Error::BadVersion { version: 6 })
        );
        assert_eq!(check(|p| p.set_ihl(4)), Err(Ipv4Error::BadIhl { ihl: 4 }));
        assert_eq!(
            check(|p| p.set_ihl(15)),
            Err(Ipv4Error::Truncated {
                len: 34,
                needed: 60
            })
        );
        assert_eq!(
            check(|p| p.set_total_len(19)),
            Err(Ipv4Error::BadTotalLength {
                total_len: 19,
                header_len: 20,
                len: 34
            })
        );
        assert_eq!(
            check(|p| p.set_total_len(35)),
            Err(Ipv4Error::BadTotalLength {
                total_len: 35,
                header_len: 20,
                len: 34
            })
        );
        // A header with options that fits, and a total length equal to the header length.
        assert_eq!(
            check(|p| {
                p.set_ihl(6);
                p.set_total_len(24);
            }),
            Ok(())
        );
    }

    #[test]
    fn fragments_pass_check_len_but_not_parse() {
        let mut buffer = captured::UDP[ETH_HDR_LEN..].to_vec();
        let mut packet = Packet::new_unchecked(&mut buffer[..]);
        packet.set_more_frags(true);
        assert!(packet.dont_frag(), "setting MF keeps DF");
        assert_eq!(
            Repr::parse(&packet),
            Err(Ipv4Error::Fragment {
                more_frags: true,
                frag_offset: 0
            })
        );
        packet.set_more_frags(false);
        packet.set_frag_offset(185);
        assert_eq!(packet.frag_offset(), 185);
        assert!(!packet.more_frags());
        assert_eq!(
            Repr::parse(&packet),
            Err(Ipv4Error::Fragment {
                more_frags: false,
                frag_offset: 185
            })
        );
        packet.set_frag_offset(0);
        assert!(Repr::parse(&packet).is_ok());
    }
}
