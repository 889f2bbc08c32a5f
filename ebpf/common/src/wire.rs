//! Wire-format constants of the headers the datapath parses: Ethernet, ARP, IPv4, TCP, UDP,
//! ICMP. Offsets are from the start of each header; multi-byte fields are big-endian on the wire.

pub const ETH_HDR_LEN: usize = 14;
pub const ETH_ADDR_LEN: usize = 6;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// ARP for Ethernet hardware and IPv4 protocol addresses (RFC 826), the only kind pods send.
pub const ARP_LEN: usize = 28;
pub const ARP_HTYPE_ETHERNET: u16 = 1;
pub const ARP_OP_REQUEST: u16 = 1;
pub const ARP_OP_REPLY: u16 = 2;

pub const IPV4_MIN_HDR_LEN: usize = 20;
pub const IPV4_MAX_HDR_LEN: usize = 60;
/// "More fragments" flag and fragment-offset mask in the flags/fragment-offset field.
pub const IPV4_FLAG_MF: u16 = 0x2000;
pub const IPV4_FLAG_DF: u16 = 0x4000;
pub const IPV4_FRAG_OFFSET_MASK: u16 = 0x1fff;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

pub const TCP_MIN_HDR_LEN: usize = 20;
/// TCP flag bits (the 13th byte of the header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;
pub const UDP_HDR_LEN: usize = 8;
pub const ICMP_HDR_LEN: usize = 8;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;
/// Code of "destination unreachable": fragmentation needed and DF set (RFC 1191).
pub const ICMP_CODE_FRAG_NEEDED: u8 = 4;
/// An ICMP error quotes the offending IPv4 header and this many bytes of its payload (RFC 792).
pub const ICMP_ERROR_QUOTED_PAYLOAD: usize = 8;

/// IANA-assigned VXLAN port (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
pub const VXLAN_HDR_LEN: usize = 8;
/// The "I" flag: the VNI field is valid. The only flag RFC 7348 defines.
pub const VXLAN_FLAG_VNI_VALID: u8 = 0x08;
/// Bytes VXLAN encapsulation adds in front of the inner Ethernet frame: outer Ethernet,
/// IPv4 without options, UDP, VXLAN.
pub const VXLAN_ENCAP_LEN: usize = ETH_HDR_LEN + IPV4_MIN_HDR_LEN + UDP_HDR_LEN + VXLAN_HDR_LEN;
/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = (1 << 24) - 1;
/// TTL of the outer header and of ICMP errors the node originates.
pub const DEFAULT_TTL: u8 = 64;

/// Outer UDP source ports are taken from this range (the Linux ephemeral default, as the kernel
/// vxlan device does), so underlay ECMP and RSS see the inner flows as different flows.
pub const VXLAN_SRC_PORT_MIN: u16 = 49152;
pub const VXLAN_SRC_PORT_MAX: u16 = 65535;
