//! Property tests of the wire views: the panic contract (no accessor panics once `check_len`
//! passed, whatever the bytes) and `Repr` round trips (`parse(emit(repr)) == repr`).

use std::net::Ipv4Addr;

use ctpath_dataplane::wire::tcp::Flags;
use ctpath_dataplane::wire::{arp, ethernet, icmp, ipv4, tcp, udp, MacAddr};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..128)
}

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Every accessor of every view, on any buffer that passes `check_len`. The first IPv4 byte
    /// is forced to version 4 half of the time so that deeper checks are reached.
    #[test]
    fn accessors_never_panic_after_check_len(mut data in bytes(), force_v4 in any::<bool>()) {
        if let Ok(p) = ethernet::Packet::new_checked(&data[..]) {
            let _ = (p.dst_addr(), p.src_addr(), p.ethertype(), p.payload());
        }
        if let Ok(p) = arp::Packet::new_checked(&data[..]) {
            let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len());
            let _ = (p.operation(), p.sender_hardware_addr(), p.sender_protocol_addr());
            let _ = (p.target_hardware_addr(), p.target_protocol_addr(), arp::Repr::parse(&p));
        }
        if force_v4 && !data.is_empty() {
            data[0] = 0x40 | (data[0] & 0x0f);
        }
        if let Ok(p) = ipv4::Packet::new_checked(&data[..]) {
            let _ = (p.version(), p.ihl(), p.dscp_ecn(), p.total_len(), p.ident());
            let _ = (p.dont_frag(), p.more_frags(), p.frag_offset(), p.ttl(), p.protocol());
            let _ = (p.checksum(), p.src_addr(), p.dst_addr(), p.options(), p.payload());
            let _ = (p.verify_checksum(), ipv4::Repr::parse(&p));
        }
        if let Ok(p) = tcp::Packet::new_checked(&data[..]) {
            let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags());
            let _ = (p.window_len(), p.checksum(), p.urgent_at(), p.options(), p.payload());
            let _ = (p.verify_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST), tcp::Repr::parse(&p));
        }
        if let Ok(p) = udp::Packet::new_checked(&data[..]) {
            let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload());
            let _ = (p.verify_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST), udp::Repr::parse(&p));
        }
        if let Ok(p) = icmp::Packet::new_checked(&data[..]) {
            let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.rest_of_header(), p.data());
            let _ = (p.echo_ident(), p.echo_seq_no(), p.verify_checksum(), icmp::Repr::parse(&p));
        }
    }

    #[test]
    fn ethernet_round_trips(src_addr in mac(), dst_addr in mac(), ethertype in any::<u16>()) {
        let repr = ethernet::Repr { src_addr, dst_addr, ethertype };
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ethernet::Packet::new_unchecked(&mut buffer[..]));
        prop_assert_eq!(ethernet::Repr::parse(&ethernet::Packet::new_checked(&buffer[..]).unwrap()), repr);
    }

    #[test]
    fn arp_round_trips(
        operation in any::<u16>(),
        sender_mac in mac(),
        sender_ip in ip(),
        target_mac in mac(),
        target_ip in ip(),
    ) {
        let repr = arp::Repr { operation: operation.into(), sender_mac, sender_ip, target_mac, target_ip };
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut arp::Packet::new_unchecked(&mut buffer[..]));
        prop_assert_eq!(arp::Repr::parse(&arp::Packet::new_checked(&buffer[..]).unwrap()), Ok(repr));
    }

    #[test]
    fn ipv4_round_trips(
        src_addr in ip(),
        dst_addr in ip(),
        protocol in any::<u8>(),
        payload_len in 0..100usize,
        dscp_ecn in any::<u8>(),
        ident in any::<u16>(),
        dont_frag in any::<bool>(),
        ttl in any::<u8>(),
    ) {
        let repr = ipv4::Repr { src_addr, dst_addr, protocol, payload_len, dscp_ecn, ident, dont_frag, ttl };
        let mut buffer = vec![0u8; repr.buffer_len() + payload_len];
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut buffer[..]));
        let packet = ipv4::Packet::new_checked(&buffer[..]).unwrap();
        prop_assert!(packet.verify_checksum());
        prop_assert_eq!(ipv4::Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn tcp_round_trips(
        ports in any::<(u16, u16)>(),
        seq_number in any::<u32>(),
        ack_number in any::<u32>(),
        flags in any::<u8>(),
        window_len in any::<u16>(),
        payload in bytes(),
        (src, dst) in (ip(), ip()),
    ) {
        let repr = tcp::Repr {
            src_port: ports.0,
            dst_port: ports.1,
            seq_number,
            ack_number,
            flags: Flags(flags),
            window_len,
            payload: &payload,
        };
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut tcp::Packet::new_unchecked(&mut buffer[..]), src, dst);
        let packet = tcp::Packet::new_checked(&buffer[..]).unwrap();
        prop_assert!(packet.verify_checksum(src, dst));
        prop_assert_eq!(tcp::Repr::parse(&packet), repr);
    }

    #[test]
    fn udp_round_trips(ports in any::<(u16, u16)>(), payload in bytes(), (src, dst) in (ip(), ip())) {
        let repr = udp::Repr { src_port: ports.0, dst_port: ports.1, payload: &payload };
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut udp::Packet::new_unchecked(&mut buffer[..]), src, dst);
        let packet = udp::Packet::new_checked(&buffer[..]).unwrap();
        prop_assert_ne!(packet.checksum(), 0);
        prop_assert!(packet.verify_checksum(src, dst));
        prop_assert_eq!(udp::Repr::parse(&packet), repr);
    }

    #[test]
    fn icmp_round_trips(
        msg_type in any::<u8>(),
        code in any::<u8>(),
        rest_of_header in any::<[u8; 4]>(),
        data in bytes(),
    ) {
        let [a, b, c, d] = rest_of_header;
        let (ident, seq_no) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        let repr = match msg_type {
            8 => icmp::Repr::EchoRequest { ident, seq_no, data: &data },
            0 => icmp::Repr::EchoReply { ident, seq_no, data: &data },
            _ => icmp::Repr::Other { msg_type, code, rest_of_header, data: &data },
        };
        let mut buffer = vec![0u8; repr.buffer_len()];
        repr.emit(&mut icmp::Packet::new_unchecked(&mut buffer[..]));
        let packet = icmp::Packet::new_checked(&buffer[..]).unwrap();
        prop_assert!(packet.verify_checksum());
        prop_assert_eq!(icmp::Repr::parse(&packet), repr);
    }
}
