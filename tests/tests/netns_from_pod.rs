//! `from_pod` attached (native XDP) to a real pod's host-side veth in a network namespace: what
//! the pod sends is counted and validated, and the counters read back from the maps match what
//! was sent, frame for frame and byte for byte.

use std::time::Duration;

use aya::programs::XdpMode;
use ctpath_common::{Counter, CounterKind, DropReason, Tally};
use ctpath_control::datapath::{self, XdpProgram};
use ctpath_dataplane::testing::{FrameBuilder, Malform};
use ctpath_testbed::{require_root, PodInterfaceSpec, PodSpec, RawSocket, Testbed};

const POD_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02];
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0xf4, 0x02, 0x02];

fn tally<K: PartialEq>(counters: &[(K, Tally)], kind: K) -> Tally {
    counters
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, t)| *t)
        .unwrap_or_default()
}

#[test]
fn counters_match_what_a_pod_sent() {
    require_root();
    let testbed = Testbed::new("from-pod").unwrap();
    let node = testbed.add_node("node-a").unwrap();
    let pod = testbed
        .add_pod(
            &node,
            PodSpec {
                name: "pod-a".into(),
                interfaces: vec![PodInterfaceSpec::new(
                    "vpoda",
                    "10.244.1.2".parse().unwrap(),
                    16,
                    POD_MAC,
                )],
            },
        )
        .unwrap();

    let ebpf = node
        .run_in(|| {
            let mut ebpf = datapath::load().unwrap();
            datapath::xdp_program(&mut ebpf, XdpProgram::FromPod)
                .unwrap()
                .attach("vpoda", XdpMode::Driver)
                .unwrap();
            ebpf
        })
        .unwrap();

    let valid = FrameBuilder::udp(
        POD_MAC,
        PEER_MAC,
        [10, 244, 1, 2],
        [10, 244, 2, 2],
        40000,
        2152,
        &[0xab; 100],
    );
    let bad_ihl = valid.clone().with_ipv4_ihl(4);
    let fragment = valid.clone().with_ipv4_fragment(true, 0);
    const VALID: u64 = 50;
    const BAD_IHL: u64 = 7;
    const FRAGMENTS: u64 = 3;
    pod.run_in(|| {
        let socket = RawSocket::open(&pod, "eth0").unwrap();
        for _ in 0..VALID {
            socket.send(&valid).unwrap();
        }
        for _ in 0..BAD_IHL {
            socket.send(&bad_ihl).unwrap();
        }
        for _ in 0..FRAGMENTS {
            socket.send(&fragment).unwrap();
        }
    })
    .unwrap();
    // The frames cross the veth asynchronously (NAPI on the host side).
    std::thread::sleep(Duration::from_millis(200));

    let drops =
        datapath::read_counters::<DropReason>(datapath::map(&ebpf, DropReason::MAP_NAME).unwrap())
            .unwrap();
    let events =
        datapath::read_counters::<Counter>(datapath::map(&ebpf, Counter::MAP_NAME).unwrap())
            .unwrap();
    assert_eq!(
        tally(&drops, DropReason::Ipv4BadIhl),
        Tally {
            packets: BAD_IHL,
            bytes: BAD_IHL * bad_ihl.len() as u64
        }
    );
    assert_eq!(
        tally(&drops, DropReason::Ipv4Fragment),
        Tally {
            packets: FRAGMENTS,
            bytes: FRAGMENTS * fragment.len() as u64
        }
    );
    let other_drops: u64 = drops.iter().map(|(_, t)| t.packets).sum::<u64>() - BAD_IHL - FRAGMENTS;
    assert_eq!(other_drops, 0, "unexpected drops: {drops:?}");
    assert_eq!(
        tally(&events, Counter::PodPassed),
        Tally {
            packets: VALID,
            bytes: VALID * valid.len() as u64
        },
        "the pod's kernel sent something besides the test's frames? {events:?}"
    );

    // Detaching (dropping the object) leaves the veth as it was: frames flow uncounted.
    let attached = node.exec(&["ip", "-d", "link", "show", "vpoda"]).unwrap();
    assert!(
        String::from_utf8_lossy(&attached.stdout).contains("prog/xdp"),
        "XDP not attached"
    );
    drop(ebpf);
    let after = node.exec(&["ip", "-d", "link", "show", "vpoda"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&after.stdout).contains("prog/xdp"),
        "XDP still attached after drop"
    );
}
