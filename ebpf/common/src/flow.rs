//! Functions of a packet's contents that the XDP programs and userspace (the forwarder, the
//! agent, tests) must compute identically: the conntrack key, the flow hash behind VXLAN's
//! outer source port (RFC 7348 §5) and the internet checksum (RFC 1071).

use crate::{
    maps::{ct_origin, CtKey},
    wire::{VXLAN_SRC_PORT_MAX, VXLAN_SRC_PORT_MIN},
};

/// The conntrack key of a packet from `(src, src_port)` to `(dst, dst_port)`, and which side
/// of the key ([`ct_origin`]) the sender is. Both directions of a connection get the same key.
#[inline(always)]
pub fn ct_key(
    vni: u32,
    protocol: u8,
    src: [u8; 4],
    dst: [u8; 4],
    src_port: u16,
    dst_port: u16,
) -> (CtKey, u8) {
    let sender_is_lo = (u32::from_be_bytes(src), src_port) <= (u32::from_be_bytes(dst), dst_port);
    let ((ip_lo, port_lo), (ip_hi, port_hi), side) = if sender_is_lo {
        ((src, src_port), (dst, dst_port), ct_origin::LO)
    } else {
        ((dst, dst_port), (src, src_port), ct_origin::HI)
    };
    (
        CtKey {
            vni,
            ip_lo,
            ip_hi,
            port_lo,
            port_hi,
            protocol,
            _pad: [0; 3],
        },
        side,
    )
}

/// The murmur3 32-bit finaliser: spreads every input bit over the whole word.
#[inline(always)]
const fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Hash of an inner IPv4 flow (addresses, protocol and ports; ports are zero where the protocol
/// has none). Both packets of one flow direction hash alike; the two directions need not.
#[inline(always)]
pub const fn flow_hash(
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    src_port: u16,
    dst_port: u16,
) -> u32 {
    let mut h = mix32(u32::from_be_bytes(src) ^ 0x9e37_79b9);
    h = mix32(h ^ u32::from_be_bytes(dst));
    h = mix32(h ^ ((src_port as u32) << 16 | dst_port as u32));
    mix32(h ^ protocol as u32)
}

/// Outer UDP source port for a flow of hash `hash`: spread evenly over
/// `VXLAN_SRC_PORT_MIN..=VXLAN_SRC_PORT_MAX` (multiply-shift, as the kernel's
/// `udp_flow_src_port` does).
#[inline(always)]
pub const fn vxlan_source_port(hash: u32) -> u16 {
    let range = (VXLAN_SRC_PORT_MAX - VXLAN_SRC_PORT_MIN) as u64 + 1;
    VXLAN_SRC_PORT_MIN + ((hash as u64 * range) >> 32) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ports_stay_in_range_and_spread() {
        let mut seen = [0u32; 16];
        for i in 0..16_384u32 {
            let port = vxlan_source_port(flow_hash(
                [10, 244, 1, 2],
                [10, 244, 2, (i % 250) as u8],
                17,
                i as u16,
                2152,
            ));
            assert!(port >= VXLAN_SRC_PORT_MIN);
            seen[((port - VXLAN_SRC_PORT_MIN) / 1024) as usize] += 1;
        }
        // 16 buckets of 1024 ports: each should get roughly 1/16 of 16384 flows.
        assert!(seen.iter().all(|&n| (700..1350).contains(&n)), "{seen:?}");
    }

    #[test]
    fn both_directions_share_one_conntrack_key() {
        let (forward, sender) = ct_key(100, 6, [10, 0, 0, 9], [10, 0, 0, 1], 40000, 80);
        let (reverse, replier) = ct_key(100, 6, [10, 0, 0, 1], [10, 0, 0, 9], 80, 40000);
        assert_eq!(forward, reverse);
        assert_eq!((sender, replier), (ct_origin::HI, ct_origin::LO));
        assert_eq!((forward.ip_lo, forward.port_lo), ([10, 0, 0, 1], 80));
        // Same address: ports order the sides.
        let (same, side) = ct_key(1, 17, [10, 0, 0, 1], [10, 0, 0, 1], 9, 8);
        assert_eq!((same.port_lo, same.port_hi, side), (8, 9, ct_origin::HI));
    }

    #[test]
    fn extreme_hashes_map_to_the_ends_of_the_range() {
        assert_eq!(vxlan_source_port(0), VXLAN_SRC_PORT_MIN);
        assert_eq!(vxlan_source_port(u32::MAX), VXLAN_SRC_PORT_MAX);
    }
}
