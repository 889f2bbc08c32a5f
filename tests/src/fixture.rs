//! Table-driven datapath fixtures run through `BPF_PROG_TEST_RUN` (aya's `TestRun`): each
//! fixture is `{ description, input frame, expected action, expected output, expected counter }`.
//!
//! Each hook's program exists as XDP and as tc (`sched_cls`) built from the same code; a runner
//! runs one of them ([`Hook`]), and tables are run through both with the same expectations
//! (actions in XDP's names: `TC_ACT_OK`, `TC_ACT_SHOT`, `TC_ACT_REDIRECT` stand for `Pass`,
//! `Drop`, `Redirect`). One difference is by design: `from_underlay_tc` leaves the node's own
//! traffic uncounted (XDP in front of it counted it), so a row expecting `underlay_passed`
//! expects no counter on the tc side. Rows the kernel's test run refuses for `sched_cls`
//! ([`tc_can_run`]: shorter than an Ethernet header, or than an IP header after one) run
//! on XDP only.
//!
//! The runner checks all four for every row and reports every failing row, not just the first.
//! A counter expectation is exact: the named counter grows by one packet of the input's length
//! and no other drop or event counter moves. The same tables feed micro-benchmarks through
//! [`FixtureRunner::time`] (the kernel's `repeat`).
//!
//! A runner may also carry the reference model of the node ([`FixtureRunner::with_model`]):
//! then every row runs through the model too, in table order on the model's own conntrack
//! table, and the model's verdict must give the row's action and counter, and its frame the
//! row's output (and, where the row ignores the output of a frame that is not dropped, the
//! frame the kernel left). The model runs every row, also those the tc hook cannot run: it is
//! the same model on either hook. The next hop of an encapsulated frame is outside the model
//! (the kernel's FIB): the runner is given its MAC.

use std::{collections::BTreeMap, fmt, time::Duration};

use crate::{format_mac, model_of, LinkInfo, Netns, Testbed};

use aya::{
    programs::{TestRun, TestRunOptions, TestRunResult},
    Ebpf, EbpfLoader,
};
use ctpath_common::{maps::names, Counter, CounterKind, DropReason, Tally};
use ctpath_control::{
    compile::{self, NodePlan},
    datapath::{self, TcProgram, XdpProgram},
    links::KernelLinks,
    state::ClusterState,
};
use ctpath_dataplane::{
    model::{Counted, NodeModel, Topology},
    wire::MacAddr,
};

/// XDP verdicts (`enum xdp_action`), as the reference model names them.
pub use ctpath_dataplane::model::XdpAction;

/// What the program must leave in the packet buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedOutput {
    /// The input, byte for byte.
    Unchanged,
    /// Exactly these bytes.
    Frame(Vec<u8>),
    /// Not checked (the frame is dropped, so what is left in the buffer does not matter).
    Ignored,
}

/// The one counter a run must move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExpectedCounter {
    Drop(DropReason),
    Event(Counter),
}

impl From<Counted> for ExpectedCounter {
    fn from(counted: Counted) -> ExpectedCounter {
        match counted {
            Counted::Drop(reason) => ExpectedCounter::Drop(reason),
            Counted::Counter(counter) => ExpectedCounter::Event(counter),
        }
    }
}

pub struct Fixture {
    pub description: &'static str,
    pub input: Vec<u8>,
    pub action: XdpAction,
    pub output: ExpectedOutput,
    pub counter: ExpectedCounter,
}

/// The result of one run of a program on one frame.
#[derive(Debug)]
pub struct RunOutcome {
    pub action: Option<XdpAction>,
    pub raw_action: u32,
    pub output: Vec<u8>,
}

/// Room for what a program may add in front of a frame (encapsulation) and replies.
const OUTPUT_CAPACITY: usize = 4096;

/// Which of a hook's two programs a runner runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    /// The tc twin (`from_pod_tc`, `from_underlay_tc`) of the XDP program named; programs
    /// without one (the bench probes) run as XDP.
    Tc,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::Xdp, Hook::Tc];
}

/// `TC_ACT_*` verdicts (`linux/pkt_cls.h`) and the XDP actions they stand for.
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

/// Size of `struct __sk_buff`, the context of a tc program's test run, and the offsets of the
/// fields set in it: `ifindex` (the device the skb appears to arrive on) and `wire_len` (the
/// frame's length: `BPF_PROG_TEST_RUN` refuses one shorter than the data).
const SK_BUFF_LEN: usize = 192;
const SK_BUFF_IFINDEX: usize = 40;
const SK_BUFF_WIRE_LEN: usize = 160;
/// Whether `BPF_PROG_TEST_RUN` can run a `sched_cls` program on `frame`: it refuses data
/// shorter than an Ethernet header, and (Linux 6.18) IPv4 or IPv6 frames shorter than a whole
/// IPv4 or IPv6 header (EINVAL). The tc program still has to handle such runts (a pod's packet
/// socket can send them); only XDP's run of those rows shows it.
pub fn tc_can_run(frame: &[u8]) -> bool {
    const ETH_HLEN: usize = 14;
    match frame.get(12..14) {
        None => false,
        Some([0x08, 0x00]) => frame.len() >= ETH_HLEN + 20,
        Some([0x86, 0xdd]) => frame.len() >= ETH_HLEN + 40,
        Some(_) => true,
    }
}

/// Loads the datapath and runs one of its programs on crafted frames.
pub struct FixtureRunner {
    ebpf: Ebpf,
    program: XdpProgram,
    hook: Hook,
    ingress_ifindex: u32,
    reference: Option<Reference>,
}

/// The reference model a runner checks rows against, and the MAC of the underlay next hop
/// (outside the model) for the frames it encapsulates.
struct Reference {
    model: NodeModel,
    next_hop: MacAddr,
}

impl FixtureRunner {
    /// Loads a fresh copy of the datapath (its own maps) and verifies `program`. Frames appear
    /// to arrive on the loopback device (ifindex 1) unless [`Self::with_ingress_ifindex`] says
    /// otherwise: `BPF_PROG_TEST_RUN` requires a real device in the caller's namespace.
    pub fn new(program: XdpProgram) -> FixtureRunner {
        Self::with_conntrack_entries(program, ctpath_common::maps::DEFAULT_CONNTRACK_ENTRIES)
    }

    /// Like [`Self::new`], with a conntrack table of `entries` entries.
    pub fn with_conntrack_entries(program: XdpProgram, entries: u32) -> FixtureRunner {
        Self::on_hook(program, Hook::Xdp, entries)
    }

    /// Like [`Self::with_conntrack_entries`], running `program`'s twin on `hook`.
    pub fn on_hook(program: XdpProgram, hook: Hook, entries: u32) -> FixtureRunner {
        let ebpf = datapath::load_with(entries).expect("load the eBPF object (are you root?)");
        Self::of(ebpf, program, hook)
    }

    /// Like [`Self::on_hook`], with every per-connection table of `entries` entries: conntrack
    /// and the services' translations and affinities (a test that empties them between runs
    /// walks them, and a walk of a BPF hash costs its whole bucket array).
    pub fn with_connection_tables(program: XdpProgram, hook: Hook, entries: u32) -> FixtureRunner {
        let ebpf = EbpfLoader::new()
            .map_max_entries(names::CONNTRACK, entries)
            .map_max_entries(names::NAT_FLOWS, entries)
            .map_max_entries(names::NAT_REPLIES, entries)
            .map_max_entries(names::AFFINITY, entries)
            .load(datapath::OBJECT)
            .expect("load the eBPF object (are you root?)");
        Self::of(ebpf, program, hook)
    }

    fn of(ebpf: Ebpf, program: XdpProgram, hook: Hook) -> FixtureRunner {
        let mut runner = FixtureRunner {
            ebpf,
            program,
            hook,
            ingress_ifindex: 1,
            reference: None,
        };
        runner.set_program(program);
        runner
    }

    /// [`Self::new`] on `hook`.
    pub fn new_on(program: XdpProgram, hook: Hook) -> FixtureRunner {
        Self::on_hook(
            program,
            hook,
            ctpath_common::maps::DEFAULT_CONNTRACK_ENTRIES,
        )
    }

    /// The hook this runner runs programs on.
    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// Runs the program on `hook` from now on, on the same maps: a tc plane's frames from the
    /// underlay meet `from_underlay` (XDP) first, then `from_underlay_tc`.
    pub fn set_hook(&mut self, hook: Hook) {
        self.hook = hook;
        self.set_program(self.program);
    }

    /// Checks every row against `model` too (see the module doc), which encapsulates towards
    /// `next_hop` (the underlay neighbour's MAC). `from_pod` rows run through the model's
    /// `from_pod` on the runner's ingress ifindex, `from_underlay` rows through its
    /// `from_underlay`; other programs have no model.
    pub fn with_model(mut self, model: NodeModel, next_hop: [u8; 6]) -> FixtureRunner {
        self.reference = Some(Reference {
            model,
            next_hop: MacAddr(next_hop),
        });
        self
    }

    /// The model rows are checked against, to change its policy where the table changes the
    /// kernel's plan ([`NodeModel::set_policy`]). Panics if the runner has none.
    pub fn model_mut(&mut self) -> &mut NodeModel {
        &mut self
            .reference
            .as_mut()
            .expect("the runner carries a model (with_model)")
            .model
    }

    /// The tc twin of the program, when the runner runs on tc and the program has one.
    fn tc_program(&self) -> Option<TcProgram> {
        match (self.hook, self.program) {
            (Hook::Tc, XdpProgram::FromPod) => Some(TcProgram::FromPod),
            (Hook::Tc, XdpProgram::FromUnderlay) => Some(TcProgram::FromUnderlay),
            _ => None,
        }
    }

    pub fn with_ingress_ifindex(mut self, ifindex: u32) -> FixtureRunner {
        self.ingress_ifindex = ifindex;
        self
    }

    /// Frames from now on arrive on `ifindex` (a device in the caller's namespace).
    pub fn set_ingress_ifindex(&mut self, ifindex: u32) {
        self.ingress_ifindex = ifindex;
    }

    /// Runs `program` from now on: another program of the same object, sharing its maps (and so
    /// its conntrack table).
    pub fn set_program(&mut self, program: XdpProgram) {
        self.program = program;
        match self.tc_program() {
            Some(tc) => {
                datapath::tc_program(&mut self.ebpf, tc).expect("verify the tc program");
            }
            None => {
                datapath::xdp_program(&mut self.ebpf, program).expect("verify the XDP program");
            }
        }
    }

    /// The loaded object, for filling maps before a run.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The program's context for a frame of `len` bytes arriving on the ingress interface, as
    /// `BPF_PROG_TEST_RUN` wants it. XDP: `struct xdp_md` with `data` 0 (no metadata),
    /// `data_end` the frame's length. tc: `struct __sk_buff`, all zero but `ifindex` and
    /// `wire_len`.
    fn context(&self, len: usize) -> Vec<u8> {
        if self.tc_program().is_some() {
            let mut ctx = vec![0u8; SK_BUFF_LEN];
            ctx[SK_BUFF_IFINDEX..SK_BUFF_IFINDEX + 4]
                .copy_from_slice(&self.ingress_ifindex.to_ne_bytes());
            ctx[SK_BUFF_WIRE_LEN..SK_BUFF_WIRE_LEN + 4]
                .copy_from_slice(&(len as u32).to_ne_bytes());
            return ctx;
        }
        let mut ctx = vec![0u8; 24];
        ctx[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.ingress_ifindex.to_ne_bytes());
        ctx
    }

    fn test_run(&mut self, options: TestRunOptions<'_>) -> TestRunResult {
        let (hook, len) = (self.hook, options.data_in.map_or(0, <[u8]>::len));
        match self.tc_program() {
            Some(tc) => datapath::tc_program(&mut self.ebpf, tc)
                .expect("program stays loaded")
                .test_run(options),
            None => datapath::xdp_program(&mut self.ebpf, self.program)
                .expect("program stays loaded")
                .test_run(options),
        }
        .unwrap_or_else(|error| panic!("BPF_PROG_TEST_RUN ({hook:?}, {len} bytes): {error:?}"))
    }

    /// The XDP action a verdict of the program run stands for.
    fn action(&self, code: u32) -> Option<XdpAction> {
        if self.tc_program().is_none() {
            return XdpAction::from_code(code);
        }
        match code {
            TC_ACT_OK => Some(XdpAction::Pass),
            TC_ACT_SHOT => Some(XdpAction::Drop),
            TC_ACT_REDIRECT => Some(XdpAction::Redirect),
            _ => None,
        }
    }

    /// Runs the program once on `frame`.
    pub fn run(&mut self, frame: &[u8]) -> RunOutcome {
        let ctx = self.context(frame.len());
        let mut output = vec![0u8; OUTPUT_CAPACITY];
        let result = self.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut output),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        });
        output.truncate(result.data_size_out as usize);
        RunOutcome {
            action: self.action(result.return_value),
            raw_action: result.return_value,
            output,
        }
    }

    /// Mean time of one run of the program on `frame`, over `repeat` runs in the kernel.
    pub fn time(&mut self, frame: &[u8], repeat: u32) -> Duration {
        let ctx = self.context(frame.len());
        self.test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        })
        .duration
    }

    /// Every counter (drops and events) that is non-zero, summed over CPUs.
    pub fn counters(&self) -> BTreeMap<ExpectedCounter, Tally> {
        let read = |name| datapath::map(&self.ebpf, name).expect("counter map");
        let drops =
            datapath::read_counters::<DropReason>(read(DropReason::MAP_NAME)).expect("read drops");
        let events =
            datapath::read_counters::<Counter>(read(Counter::MAP_NAME)).expect("read events");
        drops
            .into_iter()
            .map(|(reason, tally)| (ExpectedCounter::Drop(reason), tally))
            .chain(
                events
                    .into_iter()
                    .map(|(event, tally)| (ExpectedCounter::Event(event), tally)),
            )
            .filter(|(_, tally)| tally.packets != 0)
            .collect()
    }

    /// Runs every fixture and panics with a report of every row that failed.
    pub fn check_all(&mut self, fixtures: &[Fixture]) {
        let failures: Vec<String> = fixtures
            .iter()
            .filter_map(|fixture| {
                self.check(fixture)
                    .err()
                    .map(|why| format!("- {}: {why}", fixture.description))
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} fixtures failed:\n{}",
            failures.len(),
            fixtures.len(),
            failures.join("\n")
        );
    }

    /// Checks one row against the kernel, then (whatever the kernel did, so the model's
    /// conntrack table follows the table) against the model.
    fn check(&mut self, fixture: &Fixture) -> Result<(), String> {
        let kernel = if self.tc_program().is_some() && !tc_can_run(&fixture.input) {
            Ok(None)
        } else {
            self.check_kernel(fixture).map(Some)
        };
        let model = self.check_model(fixture, kernel.as_ref().ok().and_then(Option::as_ref));
        match (kernel, model) {
            (Ok(_), Ok(())) => Ok(()),
            (Err(kernel), Ok(())) => Err(format!("kernel ({:?}): {kernel}", self.hook)),
            (Ok(_), Err(model)) => Err(format!("model: {model}")),
            (Err(kernel), Err(model)) => Err(format!(
                "kernel ({:?}): {kernel}\n    model: {model}",
                self.hook
            )),
        }
    }

    /// The model's verdict on the row, checked; `kernel` is the kernel's run of the row, if
    /// it ran it and met the row's expectations.
    fn check_model(
        &mut self,
        fixture: &Fixture,
        kernel: Option<&RunOutcome>,
    ) -> Result<(), String> {
        let (program, ifindex) = (self.program, self.ingress_ifindex);
        let Some(Reference { model, next_hop }) = &mut self.reference else {
            return Ok(());
        };
        let now = ctpath_control::conntrack::monotonic_ns();
        let verdict = match program {
            XdpProgram::FromPod => model.from_pod(ifindex, &fixture.input, now),
            XdpProgram::FromUnderlay => model.from_underlay(&fixture.input, now),
            other => return Err(format!("no model of {}", other.symbol())),
        };
        let action = verdict.outcome.xdp_action();
        if action != fixture.action {
            return Err(format!(
                "action {action:?} ({:?}), expected {:?}",
                verdict.outcome, fixture.action
            ));
        }
        let counted = ExpectedCounter::from(verdict.counted);
        if counted != fixture.counter {
            return Err(format!(
                "counted {counted:?}, expected {:?}",
                fixture.counter
            ));
        }
        let Some(frame) = model_of::frame_out(
            &verdict.outcome,
            &fixture.input,
            &model.topology().node,
            *next_hop,
        ) else {
            return Ok(());
        };
        let (expected, whose) = match (&fixture.output, kernel) {
            (ExpectedOutput::Unchanged, _) => (&fixture.input, "expected"),
            (ExpectedOutput::Frame(expected), _) => (expected, "expected"),
            (ExpectedOutput::Ignored, Some(kernel)) => (&kernel.output, "kernel  "),
            (ExpectedOutput::Ignored, None) => return Ok(()),
        };
        if &frame != expected {
            return Err(format!(
                "output differs:\n    model    {}\n    {whose} {}",
                Hex(&frame),
                Hex(expected)
            ));
        }
        Ok(())
    }

    /// The kernel's run of the row, checked.
    fn check_kernel(&mut self, fixture: &Fixture) -> Result<RunOutcome, String> {
        let before = self.counters();
        let outcome = self.run(&fixture.input);
        let after = self.counters();

        if outcome.action != Some(fixture.action) {
            return Err(format!(
                "action {:?} (raw {}), expected {:?}",
                outcome.action, outcome.raw_action, fixture.action
            ));
        }
        let expected_output = match &fixture.output {
            ExpectedOutput::Unchanged => Some(&fixture.input),
            ExpectedOutput::Frame(frame) => Some(frame),
            ExpectedOutput::Ignored => None,
        };
        if let Some(expected) = expected_output {
            if &outcome.output != expected {
                return Err(format!(
                    "output differs:\n    got      {}\n    expected {}",
                    Hex(&outcome.output),
                    Hex(expected)
                ));
            }
        }
        let moved = counter_delta(&before, &after);
        let uncounted = self.tc_program() == Some(TcProgram::FromUnderlay)
            && fixture.counter == ExpectedCounter::Event(Counter::UnderlayPassed);
        let expected = if uncounted {
            Vec::new()
        } else {
            vec![(
                fixture.counter,
                Tally {
                    packets: 1,
                    bytes: fixture.input.len() as u64,
                },
            )]
        };
        if moved != expected {
            return Err(format!("counters moved {moved:?}, expected {expected:?}"));
        }
        Ok(outcome)
    }
}

/// The counters that changed from `before` to `after`, with the change.
fn counter_delta(
    before: &BTreeMap<ExpectedCounter, Tally>,
    after: &BTreeMap<ExpectedCounter, Tally>,
) -> Vec<(ExpectedCounter, Tally)> {
    after
        .iter()
        .filter_map(|(counter, now)| {
            let was = before.get(counter).copied().unwrap_or_default();
            let delta = Tally {
                packets: now.packets - was.packets,
                bytes: now.bytes - was.bytes,
            };
            (delta.packets != 0).then_some((*counter, delta))
        })
        .collect()
}

/// Hex dump for failure messages.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                f.write_str(" ")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// `plan` with every local endpoint flagged as running NAPI at the pod's end: a plan as the
/// agent writes it once it has set every pod's end (`compile::mark_pod_napi`).
pub fn plan_with_pods_set(mut plan: NodePlan) -> NodePlan {
    compile::mark_pod_napi(&mut plan, |_| true);
    plan
}

/// A namespace standing for one node in fixture tests that need real devices and a real FIB:
/// a veth per pod interface name (test runs need a real ingress device), an underlay `eth0`
/// with this node's MAC and address (/24), the other node as a permanent neighbour, and IPv4
/// forwarding on the underlay (as the agent sets it), so `bpf_fib_lookup` resolves without
/// any traffic. Run the fixtures inside with [`crate::Netns::run_in`].
pub struct FixtureNode {
    _testbed: Testbed,
    pub ns: Netns,
    /// ifindex of every device created, `eth0` included.
    pub ifindex: BTreeMap<String, u32>,
    /// The underlay `eth0`: its ifindex, MAC and MTU.
    pub underlay: LinkInfo,
}

impl FixtureNode {
    /// `underlay`: this node's (MAC, address); `neighbour`: the other node's.
    pub fn new(
        label: &str,
        pod_interfaces: &[&str],
        underlay: ([u8; 6], [u8; 4]),
        neighbour: ([u8; 6], [u8; 4]),
    ) -> FixtureNode {
        let testbed = Testbed::new(label).expect("testbed");
        let node = testbed.add_node("node").expect("node namespace");
        let mut ifindex = BTreeMap::new();
        for name in pod_interfaces.iter().copied().chain(["eth0"]) {
            node.ip(&[
                "link",
                "add",
                name,
                "type",
                "veth",
                "peer",
                "name",
                &format!("p{name}"),
            ])
            .expect("veth");
            node.ip(&["link", "set", name, "up"]).expect("link up");
            ifindex.insert(name.to_owned(), node.ifindex(name).expect("ifindex"));
        }
        let ip = |bytes: [u8; 4]| std::net::Ipv4Addr::from(bytes).to_string();
        node.ip(&["link", "set", "eth0", "address", &format_mac(underlay.0)])
            .expect("underlay MAC");
        node.ip(&[
            "addr",
            "add",
            &format!("{}/24", ip(underlay.1)),
            "dev",
            "eth0",
        ])
        .expect("underlay address");
        node.ip(&[
            "neigh",
            "add",
            &ip(neighbour.1),
            "lladdr",
            &format_mac(neighbour.0),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
        .expect("neighbour");
        node.sysctl("net.ipv4.conf.eth0.forwarding", "1")
            .expect("forwarding");
        let underlay = node.link("eth0").expect("underlay link");
        let ns = node.ns().clone();
        FixtureNode {
            _testbed: testbed,
            ns,
            ifindex,
            underlay,
        }
    }

    /// Node `node`'s plan of `state`, compiled inside this namespace (on its devices), with
    /// every local endpoint flagged as running NAPI at the pod's end, as the agent flags them
    /// once it has set each pod's end (`compile::mark_pod_napi`).
    pub fn compile(&self, state: &ClusterState, node: &str) -> NodePlan {
        plan_with_pods_set(
            self.ns
                .run_in(|| compile::compile(state, node, &KernelLinks::open().expect("links")))
                .expect("enter the node's namespace")
                .expect("compile the state"),
        )
    }

    /// The reference model's topology of node `node` of `state`, on this namespace's devices
    /// ([`model_of::topology`]).
    pub fn topology(&self, state: &ClusterState, node: &str) -> Topology {
        model_of::topology(state, node, &self.underlay, &self.ifindex)
    }
}
