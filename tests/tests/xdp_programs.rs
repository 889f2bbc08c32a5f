//! Every program in the eBPF object (XDP and tc) passes the verifier, and the bench probes do what the bench
//! relies on: `bench_redirect` redirects to its target (and aborts without one), `bench_sink`
//! counts and drops.
//!
//! No row here is checked against the reference model: the bench probes are measurement
//! tools with no datapath semantics to model (`from_pod` and `from_underlay` tables are in
//! xdp_overlay, xdp_security and xdp_from_pod_parse).

use aya::maps::{Array, PerCpuArray};
use ctpath_common::Tally;
use ctpath_control::datapath::{self, TcProgram, XdpProgram};
use ctpath_dataplane::testing::FrameBuilder;
use ctpath_testbed::{
    fixture::{FixtureRunner, XdpAction},
    require_root,
};

#[test]
fn every_program_loads() {
    require_root();
    let mut ebpf = datapath::load().unwrap();
    for &program in XdpProgram::ALL {
        datapath::xdp_program(&mut ebpf, program)
            .unwrap_or_else(|error| panic!("{}: {error}", program.symbol()));
    }
    for &program in TcProgram::ALL {
        datapath::tc_program(&mut ebpf, program)
            .unwrap_or_else(|error| panic!("{}: {error:?}", program.symbol()));
    }
}

#[test]
fn bench_probes_redirect_and_sink() {
    require_root();
    let frame = FrameBuilder::udp(
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        1,
        2,
        &[0; 18],
    );

    let mut redirect = FixtureRunner::new(XdpProgram::BenchRedirect);
    assert_eq!(
        redirect.run(&frame).action,
        Some(XdpAction::Aborted),
        "no target set"
    );
    let mut target =
        Array::<_, u32>::try_from(redirect.ebpf_mut().map_mut("BENCH_TARGET").unwrap()).unwrap();
    target.set(0, 1, 0).unwrap();
    let outcome = redirect.run(&frame);
    assert_eq!(outcome.action, Some(XdpAction::Redirect));
    assert_eq!(outcome.output, frame);

    let mut sink = FixtureRunner::new(XdpProgram::BenchSink);
    for _ in 0..3 {
        assert_eq!(sink.run(&frame).action, Some(XdpAction::Drop));
    }
    let tallies =
        PerCpuArray::<_, Tally>::try_from(sink.ebpf_mut().map("BENCH_SINK").unwrap()).unwrap();
    let total: u64 = tallies
        .get(&0, 0)
        .unwrap()
        .iter()
        .map(|tally| tally.packets)
        .sum();
    assert_eq!(total, 3);
}
