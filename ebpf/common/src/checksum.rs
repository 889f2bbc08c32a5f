//! The internet checksum (RFC 1071), written once for IPv4, ICMP, UDP and TCP, and the IPv4
//! pseudo-header that TCP and UDP checksums cover (RFC 793 section 3.1, RFC 768).
//!
//! Sums are returned folded to 16 bits and not yet complemented, so several can be combined
//! (pseudo-header + segment); the value stored in a header is `!combine(..)`. A header or segment
//! whose stored checksum is correct sums to `0xffff`.
//!
//! The eBPF programs use the fixed-size forms ([`checksum_fold`], [`ipv4_header_checksum`]),
//! whose loops the verifier bounds; userspace (the wire formats, the forwarder, the test
//! frames) the slice forms.
//!
//! Panic contract: nothing here panics.

use core::net::Ipv4Addr;

/// One's-complement sum of `data` read as big-endian 16-bit words, folded to 16 bits. An odd
/// trailing byte is padded with a zero byte, as RFC 1071 specifies; so only the last of several
/// sums that are [`combine`]d may cover an odd number of bytes.
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        acc += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    fold(acc)
}

/// One's-complement sum of already folded sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Sum of the IPv4 pseudo-header: source and destination address, zero, protocol, and the length
/// of the TCP or UDP segment (header and data).
pub fn pseudo_header(src_addr: Ipv4Addr, dst_addr: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let mut header = [0u8; 12];
    header[0..4].copy_from_slice(&src_addr.octets());
    header[4..8].copy_from_slice(&dst_addr.octets());
    header[9] = protocol;
    header[10..12].copy_from_slice(&length.to_be_bytes());
    sum(&header)
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Folds a 32-bit one's-complement sum into the 16-bit internet checksum (complemented).
#[inline(always)]
pub const fn checksum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The header checksum of a 20-byte IPv4 header whose checksum field (bytes 10..12) is zero.
#[inline(always)]
pub fn ipv4_header_checksum(header: &[u8; 20]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 20 {
        sum += u16::from_be_bytes([header[i], header[i + 1]]) as u32;
        i += 2;
    }
    checksum_fold(sum)
}

/// A stored checksum `check` after a 16-bit word it covers changed from `old` to `new`
/// (RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')`).
#[inline(always)]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    checksum_fold(!check as u32 + (!old) as u32 + new as u32)
}

/// [`replace16`] for a 4-byte field (an IPv4 address), given as its bytes.
#[inline(always)]
pub const fn replace32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let check = replace16(
        check,
        u16::from_be_bytes([old[0], old[1]]),
        u16::from_be_bytes([new[0], new[1]]),
    );
    replace16(
        check,
        u16::from_be_bytes([old[2], old[3]]),
        u16::from_be_bytes([new[2], new[3]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_matches_a_known_header() {
        // RFC 1071 style example: 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&header), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        // A header with its checksum in place sums to zero.
        let mut sum = 0u32;
        for pair in header.chunks(2) {
            sum += u16::from_be_bytes([pair[0], pair[1]]) as u32;
        }
        assert_eq!(checksum_fold(sum), 0);
    }

    #[test]
    fn incremental_update_matches_a_full_recomputation() {
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let before = ipv4_header_checksum(&header);
        let new_dst = [10, 96, 255, 254];
        let old_dst = [header[16], header[17], header[18], header[19]];
        header[16..20].copy_from_slice(&new_dst);
        assert_eq!(
            replace32(before, old_dst, new_dst),
            ipv4_header_checksum(&header)
        );
    }

    #[test]
    fn rfc1071_numerical_example() {
        // RFC 1071 section 3: the one's-complement sum of these bytes is 0xddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn carries_wrap_around() {
        assert_eq!(sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
        assert_eq!(combine(&[0xffff, 0x0002]), 0x0002);
        // 64 KiB of 0xff: every partial sum wraps.
        assert_eq!(sum(&[0xff; 65536]), 0xffff);
    }

    #[test]
    fn wikipedia_ipv4_header_example() {
        // The IPv4 header of the "Internet checksum" example: stored checksum 0xb861.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(!sum(&header), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(sum(&header), 0xffff);
    }

    #[test]
    fn pseudo_header_matches_spelled_out_sum() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        // 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 0x0011 + 0x000e
        assert_eq!(pseudo_header(src, dst, 17, 14), 0x1422);
    }
}
