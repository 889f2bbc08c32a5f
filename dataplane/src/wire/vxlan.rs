//! The VXLAN header (RFC 7348 §5): eight bytes after the outer UDP header, flags in the first
//! byte (only "I", the VNI-valid flag, is defined), the 24-bit VNI in bytes 4 to 6.
//!
//! The buffer is the UDP payload: the VXLAN header and the inner Ethernet frame after it.
//! [`Packet::check_len`] checks only that the 8-byte header is there; whether the I flag is set
//! is the datapath's business (`vxlan_bad_flags`), not the parser's.
//!
//! Panic contract: see [the module overview](super); accessors of a packet that passed
//! [`Packet::check_len`] never panic.

use ctpath_common::wire::{VXLAN_FLAG_VNI_VALID, VXLAN_HDR_LEN};

use super::{read_u32, write_u32, Field, Rest};

/// Why a buffer is not a VXLAN packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    #[error("VXLAN packet of {len} bytes is shorter than the 8-byte header")]
    Truncated { len: usize },
}

pub mod field {
    use super::{Field, Rest};

    pub const FLAGS: usize = 0;
    /// The VNI in the first three bytes, a reserved byte after it.
    pub const VNI_RESERVED: Field = 4..8;
    /// The inner Ethernet frame.
    pub const PAYLOAD: Rest = 8..;
}

/// A view of a VXLAN packet: header and inner frame.
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
    pub fn new_checked(buffer: T) -> Result<Packet<T>, VxlanError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<(), VxlanError> {
        let len = self.buffer.as_ref().len();
        if len < VXLAN_HDR_LEN {
            return Err(VxlanError::Truncated { len });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I flag (VNI valid) is set.
    pub fn vni_valid(&self) -> bool {
        self.flags() & VXLAN_FLAG_VNI_VALID != 0
    }

    pub fn vni(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::VNI_RESERVED]) >> 8
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the VNI (its low 24 bits) and clears the reserved byte after it.
    pub fn set_vni(&mut self, vni: u32) {
        write_u32(&mut self.buffer.as_mut()[field::VNI_RESERVED], vni << 8);
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

/// A VXLAN header as values: the I flag set, this VNI, reserved bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    pub vni: u32,
}

impl Repr {
    pub const fn buffer_len(&self) -> usize {
        VXLAN_HDR_LEN
    }

    /// Writes the 8 header bytes (the I flag, reserved fields zero). Panics if the buffer is
    /// shorter.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.buffer.as_mut()[..VXLAN_HDR_LEN].fill(0);
        packet.set_flags(VXLAN_FLAG_VNI_VALID);
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_header() {
        let mut buffer = [0xffu8; 10];
        let repr = Repr { vni: 0x12_3456 };
        repr.emit(&mut Packet::new_unchecked(&mut buffer[..]));
        assert_eq!(buffer, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xff, 0xff]);
        let packet = Packet::new_checked(&buffer[..]).unwrap();
        assert!(packet.vni_valid());
        assert_eq!(packet.vni(), 0x12_3456);
        assert_eq!(packet.payload(), [0xff, 0xff]);
    }

    #[test]
    fn short_buffers_are_refused() {
        assert_eq!(
            Packet::new_checked(&[0u8; 7][..]),
            Err(VxlanError::Truncated { len: 7 })
        );
        let packet = Packet::new_checked(&[0u8; 8][..]).unwrap();
        assert!(!packet.vni_valid());
        assert!(packet.payload().is_empty());
    }
}
