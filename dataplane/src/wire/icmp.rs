//! ICMP for IPv4 (RFC 792): type, code, checksum, the four "rest of header" bytes, data. Echo
//! request and reply are decoded (identifier, sequence number); other messages are kept as
//! bytes.
//!
//! The buffer is the IPv4 payload as [`super::ipv4::Packet::payload`] returns it; the checksum
//! covers all of it (no pseudo-header). [`Packet::check_len`] checks only that the 8-byte header
//! is present.
//!
//! Panic contract: see [the module overview](super); accessors of a packet that passed
//! [`Packet::check_len`] never panic.

use ctpath_common::wire::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_HDR_LEN};

use super::{checksum, read_u16, write_u16, Field, Rest};

/// Why a buffer is not an ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IcmpError {
    #[error("ICMP message of {len} bytes is shorter than the 8-byte header")]
    Truncated { len: usize },
}

pub mod field {
    use super::{Field, Rest};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// The four type-specific header bytes.
    pub const REST_OF_HEADER: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const DATA: Rest = 8..;
}

/// A view of an ICMP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; see the panic contract.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` and checks that it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, IcmpError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<(), IcmpError> {
        let len = self.buffer.as_ref().len();
        if len < ICMP_HDR_LEN {
            return Err(IcmpError::Truncated { len });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Whether the type is echo request or echo reply (the code is not looked at).
    pub fn is_echo(&self) -> bool {
        matches!(self.msg_type(), ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY)
    }

    pub fn rest_of_header(&self) -> [u8; 4] {
        let bytes = &self.buffer.as_ref()[field::REST_OF_HEADER];
        [bytes[0], bytes[1], bytes[2], bytes[3]]
    }

    /// The echo identifier; meaningful only if [`Packet::is_echo`].
    pub fn echo_ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_IDENT])
    }

    /// The echo sequence number; meaningful only if [`Packet::is_echo`].
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_SEQNO])
    }

    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// Whether the checksum over the whole buffer is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    pub fn set_rest_of_header(&mut self, value: [u8; 4]) {
        self.buffer.as_mut()[field::REST_OF_HEADER].copy_from_slice(&value);
    }

    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ECHO_IDENT], value);
    }

    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ECHO_SEQNO], value);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::sum(self.buffer.as_ref());
        self.set_checksum(!sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An ICMP message as values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// Any other message, undecoded.
    Other {
        msg_type: u8,
        code: u8,
        rest_of_header: [u8; 4],
        data: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Reads a checked packet. Cannot fail; does not verify the checksum. An echo message with a
    /// non-zero code is still an echo message.
    pub fn parse<T: AsRef<[u8]>>(packet: &'a Packet<T>) -> Repr<'a> {
        let (ident, seq_no, data) = (packet.echo_ident(), packet.echo_seq_no(), packet.data());
        match packet.msg_type() {
            ICMP_ECHO_REQUEST => Repr::EchoRequest {
                ident,
                seq_no,
                data,
            },
            ICMP_ECHO_REPLY => Repr::EchoReply {
                ident,
                seq_no,
                data,
            },
            msg_type => Repr::Other {
                msg_type,
                code: packet.msg_code(),
                rest_of_header: packet.rest_of_header(),
                data,
            },
        }
    }

    fn data(&self) -> &'a [u8] {
        match *self {
            Repr::EchoRequest { data, .. }
            | Repr::EchoReply { data, .. }
            | Repr::Other { data, .. } => data,
        }
    }

    /// Header plus data.
    pub fn buffer_len(&self) -> usize {
        ICMP_HDR_LEN + self.data().len()
    }

    /// Writes the message with its checksum. The buffer must be exactly [`Repr::buffer_len`]
    /// bytes, since the checksum covers all of it; panics if it is shorter.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let echo = |ident: u16, seq_no: u16| {
            let ([a, b], [c, d]) = (ident.to_be_bytes(), seq_no.to_be_bytes());
            [a, b, c, d]
        };
        let (msg_type, code, rest_of_header) = match *self {
            Repr::EchoRequest { ident, seq_no, .. } => (ICMP_ECHO_REQUEST, 0, echo(ident, seq_no)),
            Repr::EchoReply { ident, seq_no, .. } => (ICMP_ECHO_REPLY, 0, echo(ident, seq_no)),
            Repr::Other {
                msg_type,
                code,
                rest_of_header,
                ..
            } => (msg_type, code, rest_of_header),
        };
        packet.set_msg_type(msg_type);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest_of_header);
        let data = self.data();
        packet.data_mut()[..data.len()].copy_from_slice(data);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use ctpath_common::wire::{ETH_HDR_LEN, IPV4_MIN_HDR_LEN};

    use super::*;
    use crate::testing::captured;

    const L4: usize = ETH_HDR_LEN + IPV4_MIN_HDR_LEN;

    #[test]
    fn parses_captured_echo_request_and_reply() {
        let request = Packet::new_checked(&captured::ICMP_ECHO_REQUEST[L4..]).unwrap();
        assert_eq!(request.checksum(), 0x0bc6);
        assert!(request.verify_checksum());
        let Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } = Repr::parse(&request)
        else {
            panic!("not an echo request: {:?}", Repr::parse(&request));
        };
        assert_eq!((ident, seq_no, data.len()), (7593, 1, 56));

        let reply = Packet::new_checked(&captured::ICMP_ECHO_REPLY[L4..]).unwrap();
        assert!(reply.verify_checksum());
        assert_eq!(
            Repr::parse(&reply),
            Repr::EchoReply {
                ident,
                seq_no,
                data
            },
            "the reply echoes identifier, sequence number and data"
        );
    }

    #[test]
    fn emit_reproduces_captured_reply() {
        let reply = Packet::new_checked(&captured::ICMP_ECHO_REPLY[L4..]).unwrap();
        let repr = Repr::parse(&reply);
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buffer[..]));
        assert_eq!(buffer, captured::ICMP_ECHO_REPLY[L4..]);
    }

    #[test]
    fn other_messages_round_trip_undecoded() {
        // Destination unreachable, port unreachable; rest of header unused.
        let repr = Repr::Other {
            msg_type: 3,
            code: 3,
            rest_of_header: [0, 0, 0, 0],
            data: &[0x45, 0, 0, 20],
        };
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buffer[..]));
        let packet = Packet::new_checked(&buffer[..]).unwrap();
        assert!(packet.verify_checksum());
        assert!(!packet.is_echo());
        assert_eq!(Repr::parse(&packet), repr);
    }

    #[test]
    fn short_buffers_are_truncated() {
        for len in 0..ICMP_HDR_LEN {
            assert_eq!(
                Packet::new_checked(&captured::ICMP_ECHO_REQUEST[L4..L4 + len]).map(|_| ()),
                Err(IcmpError::Truncated { len })
            );
        }
    }
}
