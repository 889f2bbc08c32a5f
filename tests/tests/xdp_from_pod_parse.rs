//! `from_pod`'s frame validation, run in the kernel through `BPF_PROG_TEST_RUN`: a fixture
//! table of valid and malformed frames, each also checked against the reference model
//! (`ctpath_dataplane::model::classify`), and a randomized differential test of the two.
//!
//! With no node configured the program hands every valid frame to the kernel, so these tests
//! see exactly the parser's verdicts.
//!
//! Frames shorter than an Ethernet header are not among them: `BPF_PROG_TEST_RUN` refuses them
//! (EINVAL), as no device delivers them; the model's unit tests cover `eth_truncated`.

use ctpath_common::{wire::ETH_HDR_LEN, Counter, DropReason};
use ctpath_control::datapath::XdpProgram;
use ctpath_dataplane::{
    model::classify,
    testing::{FrameBuilder, Malform},
    wire::tcp::Flags,
};
use ctpath_testbed::{
    fixture::{
        tc_can_run, ExpectedCounter, ExpectedOutput, Fixture, FixtureRunner, Hook, XdpAction,
    },
    require_root,
};
use proptest::prelude::*;

const POD: [u8; 6] = [0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02];
const PEER: [u8; 6] = [0x02, 0x00, 0x0a, 0xf4, 0x02, 0x02];
const POD_IP: [u8; 4] = [10, 244, 1, 2];
const PEER_IP: [u8; 4] = [10, 244, 2, 2];

fn udp() -> Vec<u8> {
    FrameBuilder::udp(POD, PEER, POD_IP, PEER_IP, 40000, 2152, b"gtp-u payload")
}

fn tcp() -> Vec<u8> {
    FrameBuilder::tcp(POD, PEER, POD_IP, PEER_IP, 40000, 80, Flags::SYN, b"")
}

fn icmp() -> Vec<u8> {
    FrameBuilder::icmp_echo_request(POD, PEER, POD_IP, PEER_IP, 7, 1)
}

fn arp() -> Vec<u8> {
    FrameBuilder::arp_request(POD, POD_IP, PEER_IP)
}

/// A valid UDP frame whose IPv4 header carries `options` (a multiple of 4 bytes).
fn udp_with_ipv4_options(options: &[u8]) -> Vec<u8> {
    let plain = udp();
    let mut frame = plain[..34].to_vec();
    frame.extend_from_slice(options);
    frame.extend_from_slice(&plain[34..]);
    let total_len = (plain.len() - 14 + options.len()) as u16;
    frame
        .with_ipv4_ihl(5 + (options.len() / 4) as u8)
        .with_ipv4_total_len(total_len)
}

fn pass(description: &'static str, input: Vec<u8>) -> Fixture {
    Fixture {
        description,
        input,
        action: XdpAction::Pass,
        output: ExpectedOutput::Unchanged,
        counter: ExpectedCounter::Event(Counter::PodPassed),
    }
}

fn drop(description: &'static str, input: Vec<u8>, reason: DropReason) -> Fixture {
    Fixture {
        description,
        input,
        action: XdpAction::Drop,
        output: ExpectedOutput::Ignored,
        counter: ExpectedCounter::Drop(reason),
    }
}

fn fixtures() -> Vec<Fixture> {
    use DropReason::*;
    vec![
        pass("UDP", udp()),
        pass("TCP SYN", tcp()),
        pass("ICMP echo request", icmp()),
        pass("ARP request", arp()),
        pass(
            "ARP reply",
            FrameBuilder::arp_reply(POD, POD_IP, PEER, PEER_IP),
        ),
        pass(
            "UDP padded to 60 bytes by the NIC",
            FrameBuilder::udp(POD, PEER, POD_IP, PEER_IP, 1, 2, b"").padded(18),
        ),
        pass(
            "IPv4 with options (IHL 6, NOP NOP NOP EOL)",
            udp_with_ipv4_options(&[1, 1, 1, 0]),
        ),
        pass(
            "IPv4 with 40 bytes of options (IHL 15)",
            udp_with_ipv4_options(&[1; 40]),
        ),
        pass(
            "IPv4, protocol without a parser (GRE)",
            udp().with_ipv4_protocol(47),
        ),
        pass("IPv6 frame: not inspected", udp().with_ethertype(0x86dd)),
        pass(
            "UDP with zero-length payload",
            FrameBuilder::udp(POD, PEER, POD_IP, PEER_IP, 1, 2, b""),
        ),
        drop("ARP cut after 20 bytes", arp().truncated(34), ArpTruncated),
        drop(
            "ARP for hardware type 6 (IEEE 802)",
            arp().with_arp_hardware_type(6),
            ArpUnsupported,
        ),
        drop(
            "ARP for IPv6 protocol addresses",
            arp().with_arp_protocol_type(0x86dd),
            ArpUnsupported,
        ),
        drop(
            "ARP with 8-byte hardware addresses",
            arp().with_arp_lens(8, 4),
            ArpUnsupported,
        ),
        drop(
            "IPv4 cut inside the fixed header",
            udp().truncated(14 + 19),
            Ipv4Truncated,
        ),
        drop(
            "IPv4 version 6 in an IPv4 ethertype",
            udp().with_ipv4_version(6),
            Ipv4BadVersion,
        ),
        drop("IHL 4", udp().with_ipv4_ihl(4), Ipv4BadIhl),
        drop("IHL 0", udp().with_ipv4_ihl(0), Ipv4BadIhl),
        drop(
            "IHL 15 but the frame ends before 60 header bytes",
            tcp().truncated(14 + 40).with_ipv4_ihl(15),
            Ipv4Truncated,
        ),
        drop(
            "total length beyond the frame",
            udp().with_ipv4_total_len(1500),
            Ipv4BadTotalLength,
        ),
        drop(
            "total length shorter than the header",
            udp().with_ipv4_total_len(19),
            Ipv4BadTotalLength,
        ),
        drop(
            "first fragment (MF set)",
            udp().with_ipv4_fragment(true, 0),
            Ipv4Fragment,
        ),
        drop(
            "last fragment (offset 185)",
            udp().with_ipv4_fragment(false, 185),
            Ipv4Fragment,
        ),
        drop(
            "TCP header cut at 12 bytes",
            tcp().with_ipv4_total_len(20 + 12).truncated(14 + 32),
            TcpTruncated,
        ),
        drop(
            "TCP data offset 4",
            tcp().with_tcp_data_offset(4),
            TcpBadDataOffset,
        ),
        drop(
            "TCP data offset 15 beyond the segment",
            tcp().with_tcp_data_offset(15),
            TcpTruncated,
        ),
        drop(
            "UDP header cut at 6 bytes",
            udp().with_ipv4_total_len(20 + 6).truncated(14 + 26),
            UdpTruncated,
        ),
        // The header is in the buffer (the frame goes on past the IPv4 length, as padding
        // would), but not in the packet: cut by the IPv4 length, whatever the header says.
        drop(
            "UDP header cut at 6 bytes by the IPv4 length, bytes after it",
            udp().with_ipv4_total_len(20 + 6),
            UdpTruncated,
        ),
        drop(
            "TCP header cut at 12 bytes by the IPv4 length, data offset 4, bytes after it",
            tcp().with_ipv4_total_len(20 + 12).with_tcp_data_offset(4),
            TcpTruncated,
        ),
        drop("UDP length 7", udp().with_udp_len(7), UdpBadLength),
        drop(
            "UDP length beyond the IPv4 payload",
            udp().with_udp_len(200),
            UdpBadLength,
        ),
        drop(
            "ICMP cut at 4 bytes",
            icmp().with_ipv4_total_len(24).truncated(14 + 24),
            IcmpTruncated,
        ),
    ]
}

#[test]
fn from_pod_validates_frames() {
    require_root();
    let fixtures = fixtures();
    assert!(fixtures.len() >= 20);
    // The table is the model's semantics too: check it against the model first.
    for fixture in &fixtures {
        let modelled = match classify(&fixture.input) {
            Ok(_) => ExpectedCounter::Event(Counter::PodPassed),
            Err(reason) => ExpectedCounter::Drop(reason),
        };
        assert_eq!(
            modelled, fixture.counter,
            "reference model disagrees on: {}",
            fixture.description
        );
    }
    for hook in Hook::ALL {
        FixtureRunner::new_on(XdpProgram::FromPod, hook).check_all(&fixtures);
    }
}

/// Frames built valid, then damaged in one or a few bytes, or cut short: the XDP program, its
/// tc twin and the reference model must give the same verdict on each.
fn damaged_frames() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        Just(udp()),
        Just(tcp()),
        Just(icmp()),
        Just(arp()),
        Just(udp_with_ipv4_options(&[1, 1, 1, 0]))
    ];
    (
        valid,
        prop::collection::vec((0usize..80, any::<u8>()), 0..4),
        prop::option::of(ETH_HDR_LEN..100),
    )
        .prop_map(|(mut frame, edits, cut)| {
            for (offset, value) in edits {
                if offset < frame.len() {
                    frame[offset] = value;
                }
            }
            if let Some(len) = cut {
                frame.truncate(len.max(ETH_HDR_LEN));
            }
            frame
        })
}

#[test]
fn from_pod_agrees_with_the_model_on_damaged_frames() {
    require_root();
    let runners = std::cell::RefCell::new(
        Hook::ALL.map(|hook| FixtureRunner::new_on(XdpProgram::FromPod, hook)),
    );
    let config = ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(frame in damaged_frames())| {
        let expected = match classify(&frame) {
            Ok(_) => XdpAction::Pass,
            Err(_) => XdpAction::Drop,
        };
        for runner in runners.borrow_mut().iter_mut() {
            if runner.hook() == Hook::Tc && !tc_can_run(&frame) {
                continue;
            }
            let outcome = runner.run(&frame);
            prop_assert_eq!(
                outcome.action,
                Some(expected),
                "{:?} hook; model says {:?}",
                runner.hook(),
                classify(&frame)
            );
        }
    });
}
