//! The bench's topologies, all built by the shared testbed's [`Cluster`] from one generated
//! cluster state, so every topology has the same two nodes, the same underlay, and the same two
//! pods with the same addresses, MACs and MTU (1450). The underlay is the same wire for every
//! topology, the kernel's included ([`Offloads::Wire`]: frames of at most the MTU cross it, as
//! between real NICs, so a 64 KB GSO packet is segmented before it and may be merged by GRO
//! after it; on the kernel's veth defaults 64 KB packets would cross whole, which no wire
//! does). The pods' offloads are the testbed's and the agents' business (`tests/src/topology.rs`,
//! `control/src/pod_side.rs`) and change with the plane's datapath; this module does not
//! assume them: after a build it reads them back with `ethtool -k` ([`Topology::wiring`]) and
//! every report carries what it found.
//!
//! - `kernel`: what users run today, flannel/Rancher style, bridged. Per node a Linux bridge with
//!   the pods' host veths and a kernel vxlan device (VNI 100, dstport 4789) with an all-zeros FDB
//!   entry to the other node (the testbed's `NodeKind::KernelVxlan`), plus static FDB entries for
//!   both pods' MACs (bridge and vxlan, as flannel installs them), `bridge-nf-call-iptables=1` on
//!   both nodes (br_netfilter, as Kubernetes requires), and on the destination node the
//!   destination pod's security group as an iptables chain jumped to from FORWARD for frames
//!   bridged out of the pod's host veth (`physdev`): `ESTABLISHED,RELATED -j ACCEPT`, N rules
//!   of which the last matches, then DROP. Loaded with `iptables-restore` (Debian's `iptables`,
//!   the nf_tables backend).
//! - `ctpath-xdp`: real `ctpath agent`s on both nodes with the same state, whose security group
//!   on the destination pod's interface has the same N rules; the plane is `datapath: xdp`.
//! - `ctpath-tc`: the same agents and state, but the plane is `datapath: tc`: `from_pod` runs
//!   as a tcx program on the pod's host veth, and the underlay's XDP hands the plane's VXLAN to
//!   `from_underlay_tc`, which delivers into the pod with `bpf_redirect_peer`.
//! - `ctpath-afxdp`: the same agents and state, but the plane is `fast_path: true`, so the XDP
//!   programs hand its frames to the agents' AF_XDP forwarder (`XSKS`) and the forwarder's
//!   workers carry them (pod socket on node-a, underlay sockets, pod socket on node-b). The
//!   workers run on [`Placement::fastpath_core`] (`--fastpath-cores`). Every sample of it is
//!   checked against the forwarder's own report ([`Topology::forwarder_mark`],
//!   [`Topology::forwarder_since`]): a figure the XDP programs carried is never reported as
//!   this one's.
//! - `ceiling`: no overlay at all (`NodeKind::Bare`): `bench_redirect` on the source pod's host
//!   veth sends every frame straight into the node's underlay interface, unencapsulated, and
//!   `bench_sink` on the far node's underlay interface counts and drops it: the floor of
//!   per-packet cost of an XDP forwarding path on this machine with this generator.
//! - `generator-only` (a diagnostic, not a dataplane): `bench_sink` on the source pod's host
//!   veth, so frames go no further than the first veth hop: the cost of the generator itself
//!   (AF_XDP copy-mode TX, the skb, the veth's copy of it for XDP), which every topology pays.
//!   A topology's per-packet time less this one's is the time of its path beyond the pod.
//!
//! The sink of `kernel`, `ctpath-xdp` and `ctpath-afxdp` is `bench_sink` in native XDP on the
//! destination pod's own interface, inside the pod's namespace: the first hook a frame meets in
//! the pod, after it crossed the pod's veth. `ctpath-tc` delivers with `bpf_redirect_peer`, so
//! its skb enters the pod's interface without crossing the veth: native XDP (which runs in the
//! veth's receive path) never sees it, and generic XDP skips redirected skbs. Its first hook
//! in the pod is tc ingress, so its sink is `bench_sink_tc` (the same counter, as a tc program)
//! at tcx ingress of the same interface ([`SinkHook`]). So every topology pays one program run
//! and a drop at the first hook in the pod; what differs is what the path handed over (an XDP
//! frame, an skb that crossed the veth, or an skb moved into the namespace), which is part of
//! each path's cost. A sink drops every frame, so sinks are attached for the pps and
//! new-connection phases only ([`Topology::attach_sinks`]) and removed for latency and TCP.
//!
//! The security group of the state: N-1 rules `ingress udp <port 20000+i> from <source pod>/32`
//! that the flood never matches, then `ingress any from <source pod>/32` that everything from the
//! source pod matches, then `egress any` (not counted in N; the kernel's equivalent is that only
//! traffic towards the pod enters the chain). ctpath enforces the group statefully
//! (`docs/security-groups.md`): a flow's first packet is checked against the rules and creates
//! a conntrack entry, later packets of the flow hit the entry; the kernel's conntrack never marks
//! a one-way UDP flow ESTABLISHED, so its chain is walked for every flood packet.
//!
//! Panic contract: [`Cluster::start`] panics when the testbed cannot be built (it is test code);
//! everything after that returns [`TopologyError`].

use std::{fmt, fmt::Write as _, net::Ipv4Addr};

use aya::{
    maps::{Array, PerCpuArray},
    programs::{SchedClassifier, TcAttachType, XdpMode},
    Ebpf,
};
use ctpath_common::{DropReason, Tally};
use ctpath_control::datapath::{self, DatapathError, XdpProgram};
use ctpath_testbed::{
    cluster::{Cluster, ClusterOptions, NodeKind},
    format_mac, Netns, Offloads,
};
use thiserror::Error;

use crate::{
    cpus::{CpuError, Placement},
    forwarder::{Facts, ForwarderError, ForwarderSample, Mark},
    measure::Destination,
};

pub const NODE_A: &str = "node-a";
pub const NODE_B: &str = "node-b";
pub const SRC_POD: &str = "src";
pub const DST_POD: &str = "dst";
/// Host-side interface names (in the nodes) and the pod-side name (in the pods).
pub const SRC_HOST_IF: &str = "vsrc";
pub const DST_HOST_IF: &str = "vdst";
pub const POD_IF: &str = "eth0";
pub const UNDERLAY_IF: &str = "eth0";
pub const SRC_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 1, 2);
pub const DST_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 2, 2);
pub const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0x64, 0x01, 0x02];
pub const DST_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0x64, 0x02, 0x02];
pub const VNI: u32 = 100;
/// The non-matching rules use ports from here up.
const FIRST_DECOY_PORT: u32 = 20000;
/// The iptables chain of the destination pod's security group.
const SG_CHAIN: &str = "ctpath-sg-dst";

#[derive(Debug, Error)]
pub enum TopologyError {
    #[error("{topology}: {source}")]
    Datapath {
        topology: String,
        #[source]
        source: Box<DatapathError>,
    },
    #[error("{topology}: attaching {program} to {ifname} in {netns}: {message}")]
    Attach {
        topology: String,
        program: &'static str,
        ifname: String,
        netns: String,
        message: String,
    },
    #[error("{topology}: {what}: {message}")]
    Setup {
        topology: String,
        what: String,
        message: String,
    },
    #[error("rule count {0} is outside 1..={max}", max = MAX_RULES)]
    RuleCount(usize),
    #[error(transparent)]
    Cpu(#[from] CpuError),
    #[error("ctpath-afxdp: {0}")]
    Forwarder(#[from] ForwarderError),
}

/// At most this many rules (ports 20000..65535 for the non-matching ones).
pub const MAX_RULES: usize = 40000;

/// The topologies, in the order they run within a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopologyKind {
    Kernel,
    CtpathXdp,
    CtpathTc,
    CtpathAfxdp,
    Ceiling,
    GeneratorOnly,
}

impl TopologyKind {
    pub const ALL: [TopologyKind; 6] = [
        TopologyKind::Kernel,
        TopologyKind::CtpathXdp,
        TopologyKind::CtpathTc,
        TopologyKind::CtpathAfxdp,
        TopologyKind::Ceiling,
        TopologyKind::GeneratorOnly,
    ];

    /// The dataplanes every case compares (the ceiling and the generator are references).
    pub const DATAPLANES: [TopologyKind; 4] = [
        TopologyKind::Kernel,
        TopologyKind::CtpathXdp,
        TopologyKind::CtpathTc,
        TopologyKind::CtpathAfxdp,
    ];

    /// The plane's datapath in the cluster state, for the ctpath topologies.
    pub const fn plane(self) -> Option<PlaneDatapath> {
        match self {
            TopologyKind::CtpathXdp => Some(PlaneDatapath::Xdp),
            TopologyKind::CtpathTc => Some(PlaneDatapath::Tc),
            TopologyKind::CtpathAfxdp => Some(PlaneDatapath::FastPath),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            TopologyKind::Kernel => "kernel",
            TopologyKind::CtpathXdp => "ctpath-xdp",
            TopologyKind::CtpathTc => "ctpath-tc",
            TopologyKind::CtpathAfxdp => "ctpath-afxdp",
            TopologyKind::Ceiling => "ceiling",
            TopologyKind::GeneratorOnly => "generator-only",
        }
    }
}

impl fmt::Display for TopologyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the state's plane is carried (`networks[].datapath`, `fast_path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaneDatapath {
    /// `datapath: xdp`: `from_pod` as XDP on the pod's host veth (`ctpath-xdp`).
    Xdp,
    /// `datapath: tc`: `from_pod` as tcx on the pod's host veth, `from_underlay_tc` behind the
    /// NIC's XDP (`ctpath-tc`).
    Tc,
    /// `fast_path: true` (implies xdp): the AF_XDP forwarder's workers (`ctpath-afxdp`).
    FastPath,
}

/// The cluster state of every topology, with a security group of `rules` ingress rules on the
/// destination pod's interface (see the module docs), its plane carried as `plane` says.
pub fn state_yaml(rules: usize, plane: PlaneDatapath) -> Result<String, TopologyError> {
    if !(1..=MAX_RULES).contains(&rules) {
        return Err(TopologyError::RuleCount(rules));
    }
    // Said explicitly for every plane, so the state names what each topology measures.
    let fast = match plane {
        PlaneDatapath::FastPath => ", fast_path: true",
        PlaneDatapath::Xdp => ", datapath: xdp",
        PlaneDatapath::Tc => ", datapath: tc",
    };
    let mut yaml = format!(
        "# ctpath-bench: two nodes, a source and a destination pod, one plane; the destination's
# security group has {rules} ingress rules, the last one matching everything from the source.
version: 1
networks:
  - {{ name: bench, vni: {VNI}, cidr: 10.100.0.0/16, gateway: 10.100.0.1, mtu: 1450{fast} }}
nodes:
  - {{ name: {NODE_A}, underlay_interface: {UNDERLAY_IF}, underlay_ip: 192.168.77.1 }}
  - {{ name: {NODE_B}, underlay_interface: {UNDERLAY_IF}, underlay_ip: 192.168.77.2 }}
security_groups:
  - name: bench-dst
    rules:
"
    );
    for i in 0..rules - 1 {
        let port = FIRST_DECOY_PORT + i as u32;
        writeln!(
            yaml,
            "      - {{ direction: ingress, protocol: udp, ports: \"{port}\", remote_cidr: {SRC_IP}/32 }}"
        )
        .expect("write to String");
    }
    write!(
        yaml,
        "      - {{ direction: ingress, protocol: any, remote_cidr: {SRC_IP}/32 }}
      - {{ direction: egress, protocol: any }}
pods:
  - name: {SRC_POD}
    node: {NODE_A}
    interfaces:
      - {{ network: bench, host_interface: {SRC_HOST_IF}, ip: {SRC_IP}, mac: \"{}\" }}
  - name: {DST_POD}
    node: {NODE_B}
    interfaces:
      - {{ network: bench, host_interface: {DST_HOST_IF}, ip: {DST_IP}, mac: \"{}\", security_groups: [bench-dst] }}
",
        format_mac(SRC_MAC),
        format_mac(DST_MAC)
    )
    .expect("write to String");
    Ok(yaml)
}

/// The kernel topology's filter table for `iptables-restore`: the security group of `rules`
/// rules as a chain, jumped to from FORWARD for frames bridged out of the destination pod's
/// host veth.
pub fn iptables_ruleset(rules: usize) -> Result<String, TopologyError> {
    if !(1..=MAX_RULES).contains(&rules) {
        return Err(TopologyError::RuleCount(rules));
    }
    let mut text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:{SG_CHAIN} - [0:0]\n\
         -A FORWARD -m physdev --physdev-out {DST_HOST_IF} --physdev-is-bridged -j {SG_CHAIN}\n\
         -A {SG_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
    );
    for i in 0..rules - 1 {
        let port = FIRST_DECOY_PORT + i as u32;
        writeln!(
            text,
            "-A {SG_CHAIN} -s {SRC_IP}/32 -p udp -m udp --dport {port} -j ACCEPT"
        )
        .expect("write to String");
    }
    write!(
        text,
        "-A {SG_CHAIN} -s {SRC_IP}/32 -j ACCEPT\n-A {SG_CHAIN} -j DROP\nCOMMIT\n"
    )
    .expect("write to String");
    Ok(text)
}

/// Where a sink hooks the interface it counts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkHook {
    /// `bench_sink`, native XDP: frames that cross the interface's veth.
    XdpNative,
    /// `bench_sink_tc`, tcx ingress: skbs handed to the interface by `bpf_redirect_peer`.
    TcIngress,
}

/// One eBPF probe of the ctpath object (`bench_sink` or `bench_redirect`), attached in native
/// mode to one interface; detached when dropped.
pub struct Probe {
    ebpf: Ebpf,
}

impl Probe {
    /// `bench_sink` on `ifname` in `ns` at `hook`: native XDP, or tcx ingress
    /// (`bench_sink_tc`) where frames reach the interface as skbs that never cross its veth
    /// (see the module docs).
    pub fn sink(
        topology: &str,
        ns: &Netns,
        ifname: &str,
        hook: SinkHook,
    ) -> Result<Probe, TopologyError> {
        match hook {
            SinkHook::XdpNative => Self::attach(
                topology,
                ns,
                ifname,
                XdpProgram::BenchSink,
                None,
                XdpMode::Driver,
            ),
            SinkHook::TcIngress => Self::attach_tc_sink(topology, ns, ifname),
        }
    }

    fn attach_tc_sink(topology: &str, ns: &Netns, ifname: &str) -> Result<Probe, TopologyError> {
        const NAME: &str = "bench_sink_tc";
        let attach_error = |message: String| TopologyError::Attach {
            topology: topology.to_owned(),
            program: NAME,
            ifname: ifname.to_owned(),
            netns: ns.name().to_owned(),
            message,
        };
        let loaded = ns
            .run_in(|| -> Result<Ebpf, TopologyError> {
                let mut ebpf = datapath::load().map_err(|source| TopologyError::Datapath {
                    topology: topology.to_owned(),
                    source: Box::new(source),
                })?;
                let program: &mut SchedClassifier = ebpf
                    .program_mut(NAME)
                    .ok_or_else(|| attach_error("not in the ctpath object".into()))?
                    .try_into()
                    .map_err(|e: aya::programs::ProgramError| attach_error(e.to_string()))?;
                program.load().map_err(|e| attach_error(e.to_string()))?;
                program
                    .attach(ifname, TcAttachType::Ingress)
                    .map_err(|e| attach_error(e.to_string()))?;
                Ok(ebpf)
            })
            .map_err(|e| attach_error(e.to_string()))??;
        Ok(Probe { ebpf: loaded })
    }

    /// `bench_redirect` on `ifname` in `ns`, redirecting to `target_ifindex` (same namespace).
    pub fn redirect(
        topology: &str,
        ns: &Netns,
        ifname: &str,
        target_ifindex: u32,
    ) -> Result<Probe, TopologyError> {
        Self::attach(
            topology,
            ns,
            ifname,
            XdpProgram::BenchRedirect,
            Some(target_ifindex),
            XdpMode::Driver,
        )
    }

    fn attach(
        topology: &str,
        ns: &Netns,
        ifname: &str,
        program: XdpProgram,
        target: Option<u32>,
        mode: XdpMode,
    ) -> Result<Probe, TopologyError> {
        let datapath_error = |source| TopologyError::Datapath {
            topology: topology.to_owned(),
            source: Box::new(source),
        };
        let attach_error = |message: String| TopologyError::Attach {
            topology: topology.to_owned(),
            program: program.symbol(),
            ifname: ifname.to_owned(),
            netns: ns.name().to_owned(),
            message,
        };
        let loaded = ns
            .run_in(|| -> Result<Ebpf, TopologyError> {
                let mut ebpf = datapath::load().map_err(datapath_error)?;
                if let Some(ifindex) = target {
                    let map = ebpf
                        .map_mut("BENCH_TARGET")
                        .ok_or(DatapathError::MissingMap("BENCH_TARGET"))
                        .map_err(datapath_error)?;
                    let mut array = Array::<_, u32>::try_from(map)
                        .map_err(|e| attach_error(format!("BENCH_TARGET: {e}")))?;
                    array
                        .set(0, ifindex, 0)
                        .map_err(|e| attach_error(format!("BENCH_TARGET: {e}")))?;
                }
                datapath::xdp_program(&mut ebpf, program)
                    .map_err(datapath_error)?
                    .attach(ifname, mode)
                    .map_err(|e| attach_error(e.to_string()))?;
                Ok(ebpf)
            })
            .map_err(|e| attach_error(e.to_string()))??;
        Ok(Probe { ebpf: loaded })
    }

    /// What `bench_sink` counted so far, all CPUs together (zero for a redirect probe).
    pub fn received(&self) -> Tally {
        let Some(map) = self.ebpf.map("BENCH_SINK") else {
            return Tally::default();
        };
        let Ok(array) = PerCpuArray::<_, Tally>::try_from(map) else {
            return Tally::default();
        };
        array
            .get(&0, 0)
            .map(|per_cpu| {
                per_cpu.iter().fold(Tally::default(), |sum, cpu| Tally {
                    packets: sum.packets + cpu.packets,
                    bytes: sum.bytes + cpu.bytes,
                })
            })
            .unwrap_or_default()
    }
}

/// One built topology.
pub struct Topology {
    pub kind: TopologyKind,
    pub rules: usize,
    pub cluster: Cluster,
    /// The ceiling's redirect probe (kept for its lifetime).
    redirect: Option<Probe>,
    /// The pods whose interface the sinks count on (the destination pod; the services bench's
    /// backends).
    sink_pods: Vec<String>,
    sinks: Vec<Probe>,
    /// Where the generator sends.
    pub destination: Destination,
    /// ctpath-afxdp: the forwarders as found after the build.
    pub forwarder: Option<Facts>,
    /// The run's CPUs (threaded NAPI is applied again after a sink is attached).
    placement: Placement,
    /// What the topology did, read back after the build (offloads by `ethtool -k`, where the
    /// sink goes), for the notes of every report.
    pub wiring: String,
}

impl Topology {
    /// Builds `kind` with a security group of `rules` rules and prepares its CPUs.
    pub fn build(
        kind: TopologyKind,
        rules: usize,
        placement: &Placement,
    ) -> Result<Topology, TopologyError> {
        let afxdp = kind == TopologyKind::CtpathAfxdp;
        // The references (kernel, ceiling, generator-only) run no agent; their state says xdp
        // as it always did (the testbed wires pods of non-kernel nodes by the plane's datapath).
        let yaml = state_yaml(rules, kind.plane().unwrap_or(PlaneDatapath::Xdp))?;
        let node_kind = match kind {
            TopologyKind::Kernel => NodeKind::KernelVxlan,
            TopologyKind::CtpathXdp | TopologyKind::CtpathTc | TopologyKind::CtpathAfxdp => {
                NodeKind::Ctpath
            }
            TopologyKind::Ceiling | TopologyKind::GeneratorOnly => NodeKind::Bare,
        };
        let options = ClusterOptions {
            node_kinds: [
                (NODE_A.to_owned(), node_kind),
                (NODE_B.to_owned(), node_kind),
            ]
            .into(),
            agent_args: if afxdp {
                vec![
                    "--fastpath-cores".into(),
                    placement.fastpath_core().to_string(),
                ]
            } else {
                Vec::new()
            },
            // One wire for every topology (see the module docs).
            underlay: Some(Offloads::Wire),
            ..ClusterOptions::default()
        };
        let cluster = Cluster::start(&format!("bench-{}", kind.name()), &yaml, options);
        let mut topology = Topology {
            kind,
            rules,
            cluster,
            redirect: None,
            sink_pods: vec![DST_POD.to_owned()],
            sinks: Vec::new(),
            destination: Destination::DST_POD,
            forwarder: None,
            wiring: String::new(),
            placement: placement.clone(),
        };
        match kind {
            TopologyKind::Kernel => topology.configure_kernel(rules)?,
            TopologyKind::Ceiling => {
                let node_a = topology.cluster.node(NODE_A);
                let underlay = node_a.underlay().ok_or_else(|| TopologyError::Setup {
                    topology: kind.name().into(),
                    what: "underlay".into(),
                    message: "node-a has no underlay port".into(),
                })?;
                topology.redirect = Some(Probe::redirect(
                    kind.name(),
                    node_a,
                    SRC_HOST_IF,
                    underlay.ifindex,
                )?);
            }
            TopologyKind::CtpathAfxdp => topology.check_forwarder(placement)?,
            TopologyKind::CtpathXdp | TopologyKind::CtpathTc | TopologyKind::GeneratorOnly => {}
        }
        topology.prepare(placement)?;
        Ok(topology)
    }

    /// A topology of `kind` on a cluster the caller built and wired (the services bench: the
    /// source pod, `sink_pods` as the backends, flooded towards `destination`); its CPUs
    /// prepared as [`Topology::build`] prepares them.
    pub fn from_cluster(
        kind: TopologyKind,
        cluster: Cluster,
        placement: &Placement,
        sink_pods: Vec<String>,
        destination: Destination,
    ) -> Result<Topology, TopologyError> {
        let mut topology = Topology {
            kind,
            rules: 0,
            cluster,
            redirect: None,
            sink_pods,
            sinks: Vec::new(),
            destination,
            forwarder: None,
            wiring: String::new(),
            placement: placement.clone(),
        };
        topology.prepare(placement)?;
        Ok(topology)
    }

    /// The nodes and pods whose CPUs the placement governs.
    fn placed(&self) -> Vec<&Netns> {
        let c = &self.cluster;
        let mut placed = vec![
            c.node(NODE_A).ns(),
            c.node(NODE_B).ns(),
            c.pod(SRC_POD).ns(),
        ];
        placed.extend(self.sink_pods.iter().map(|pod| c.pod(pod).ns()));
        placed
    }

    /// The placement's CPUs prepared, and the wiring read back.
    fn prepare(&mut self, placement: &Placement) -> Result<(), TopologyError> {
        placement.prepare(
            &self.placed(),
            (self.cluster.node(NODE_A).ns(), SRC_HOST_IF),
        )?;
        self.wiring = self.describe_wiring();
        Ok(())
    }

    /// In words, what this topology did, read back from the built namespaces: the offloads of
    /// the pods' interfaces, the pods' host veths and the underlay (`ethtool -k`), where the
    /// sink counts, and the forwarder's UMEM and socket mode (ctpath-afxdp).
    fn describe_wiring(&self) -> String {
        let c = &self.cluster;
        let (a, b) = (c.node(NODE_A).ns(), c.node(NODE_B).ns());
        let interfaces = [
            ("src pod eth0", self.src(), POD_IF),
            ("dst pod eth0", self.dst(), POD_IF),
            ("vsrc", a, SRC_HOST_IF),
            ("vdst", b, DST_HOST_IF),
            ("node-a underlay", a, UNDERLAY_IF),
        ];
        let offloads: Vec<String> = interfaces
            .iter()
            .map(|(what, ns, ifname)| format!("{what} {}", offloads(ns, ifname)))
            .collect();
        let (sink_ns, sink_if) = self.sink_locations()[0];
        let sink_role = if sink_ns.name() == self.dst().name() {
            "the destination pod's"
        } else if sink_ns.name() == a.name() {
            "node-a's"
        } else {
            "node-b's"
        };
        let mut text = format!(
            "{}: offloads after setup (ethtool -k: tx-checksumming, tcp-segmentation-offload, \
             generic-receive-offload): {}; sink: {} on {sink_role} {sink_if}",
            self.kind,
            offloads.join("; "),
            match self.sink_hook() {
                SinkHook::TcIngress => "bench_sink_tc at tcx ingress",
                SinkHook::XdpNative => "bench_sink in native XDP",
            },
        );
        if let Some(plane) = self.kind.plane() {
            let _ = write!(
                text,
                "; plane {}",
                match plane {
                    PlaneDatapath::Xdp => "datapath: xdp",
                    PlaneDatapath::Tc => "datapath: tc",
                    PlaneDatapath::FastPath => "fast_path: true",
                }
            );
        }
        if let Some(facts) = &self.forwarder {
            let _ = write!(text, "; forwarders as found: {}", facts.describe());
        }
        text
    }

    /// ctpath-afxdp: both agents run the forwarder for the plane, workers on the placement's
    /// forwarder CPU, sockets on the pods' host veths and the underlays.
    fn check_forwarder(&mut self, placement: &Placement) -> Result<(), TopologyError> {
        self.forwarder = Some(Facts::read(
            &self.cluster,
            [SRC_HOST_IF, DST_HOST_IF],
            placement.fastpath_core(),
        )?);
        Ok(())
    }

    /// Before a sample: the forwarders' counts (ctpath-afxdp only, else `None`).
    pub fn forwarder_mark(&self) -> Result<Option<Mark>, TopologyError> {
        match self.kind {
            TopologyKind::CtpathAfxdp => Ok(Some(Mark::now(&self.cluster)?)),
            _ => Ok(None),
        }
    }

    /// After a sample: what the forwarders received since `mark`, failing unless each node's
    /// workers received at least `expected` frames (`None` without a mark).
    pub fn forwarder_since(
        &self,
        mark: Option<&Mark>,
        expected: u64,
    ) -> Result<Option<ForwarderSample>, TopologyError> {
        match mark {
            Some(mark) => Ok(Some(mark.since(&self.cluster, expected)?)),
            None => Ok(None),
        }
    }

    fn setup_error(&self, what: &str, message: impl fmt::Display) -> TopologyError {
        TopologyError::Setup {
            topology: self.kind.name().into(),
            what: what.into(),
            message: message.to_string(),
        }
    }

    /// br_netfilter on both nodes, static FDB entries for both pods, the security group.
    fn configure_kernel(&mut self, rules: usize) -> Result<(), TopologyError> {
        let vxlan = format!("vx{VNI}");
        let (src_mac, dst_mac) = (format_mac(SRC_MAC), format_mac(DST_MAC));
        for (node, local_if, local_mac, remote_mac, remote_vtep) in [
            (NODE_A, SRC_HOST_IF, &src_mac, &dst_mac, "192.168.77.2"),
            (NODE_B, DST_HOST_IF, &dst_mac, &src_mac, "192.168.77.1"),
        ] {
            let ns = self.cluster.node(node).ns().clone();
            ns.sysctl("net.bridge.bridge-nf-call-iptables", "1")
                .map_err(|e| self.setup_error("br_netfilter", e))?;
            for command in [
                vec![
                    "fdb", "replace", local_mac, "dev", local_if, "master", "static",
                ],
                vec![
                    "fdb", "replace", remote_mac, "dev", &vxlan, "master", "static",
                ],
                vec![
                    "fdb",
                    "replace",
                    remote_mac,
                    "dev",
                    &vxlan,
                    "self",
                    "dst",
                    remote_vtep,
                    "static",
                ],
            ] {
                let argv: Vec<&str> = std::iter::once("bridge").chain(command).collect();
                ns.exec(&argv)
                    .map_err(|e| self.setup_error("static FDB", e))?;
            }
        }
        self.set_kernel_rules(rules)
    }

    /// Replaces the kernel topology's security group with one of `rules` rules (atomically,
    /// `iptables-restore`).
    pub fn set_kernel_rules(&mut self, rules: usize) -> Result<(), TopologyError> {
        let ruleset = iptables_ruleset(rules)?;
        let ns = self.cluster.node(NODE_B).ns().clone();
        let path = std::env::temp_dir().join(format!(
            "ctpath-bench-{}-rules-{rules}.txt",
            std::process::id()
        ));
        std::fs::write(&path, ruleset).map_err(|e| self.setup_error("iptables rules file", e))?;
        let result = ns.exec(&[
            "sh",
            "-c",
            &format!("iptables-restore < {}", path.display()),
        ]);
        let _ = std::fs::remove_file(&path);
        result.map_err(|e| self.setup_error("iptables-restore", e))?;
        self.rules = rules;
        Ok(())
    }

    /// Where the flood is counted: the destination pod's interface (each backend's in the
    /// services bench), or for the ceiling the far node's underlay interface.
    fn sink_locations(&self) -> Vec<(&Netns, &str)> {
        match self.kind {
            TopologyKind::Ceiling => vec![(self.cluster.node(NODE_B).ns(), UNDERLAY_IF)],
            TopologyKind::GeneratorOnly => vec![(self.cluster.node(NODE_A).ns(), SRC_HOST_IF)],
            _ => self
                .sink_pods
                .iter()
                .map(|pod| (self.cluster.pod(pod).ns(), POD_IF))
                .collect(),
        }
    }

    /// ctpath-tc delivers into the pod with `bpf_redirect_peer`: the skb enters the pod's
    /// interface without crossing the veth, so no XDP program there sees it (native XDP runs in
    /// the veth's receive path, generic XDP skips redirected skbs); the first hook the frame
    /// meets in the pod is tc ingress. Everywhere else the frame crosses the pod's veth and
    /// meets native XDP first.
    fn sink_hook(&self) -> SinkHook {
        match self.kind {
            TopologyKind::CtpathTc => SinkHook::TcIngress,
            _ => SinkHook::XdpNative,
        }
    }

    pub fn attach_sinks(&mut self) -> Result<(), TopologyError> {
        if self.sinks.is_empty() {
            let sinks = self
                .sink_locations()
                .into_iter()
                .map(|(ns, ifname)| Probe::sink(self.kind.name(), ns, ifname, self.sink_hook()))
                .collect::<Result<Vec<_>, _>>()?;
            self.sinks = sinks;
            // The sink's XDP gave its veth NAPI: thread it too (split mode).
            self.placement.thread_napi(&self.placed())?;
        }
        Ok(())
    }

    pub fn detach_sinks(&mut self) {
        self.sinks.clear();
    }

    /// What the sinks counted so far, summed.
    pub fn received(&self) -> Tally {
        self.sinks
            .iter()
            .map(Probe::received)
            .fold(Tally::default(), |sum, t| Tally {
                packets: sum.packets + t.packets,
                bytes: sum.bytes + t.bytes,
            })
    }

    pub fn src(&self) -> &Netns {
        self.cluster.pod(SRC_POD).ns()
    }

    /// The destination pod (the services bench's first backend).
    pub fn dst(&self) -> &Netns {
        self.cluster.pod(&self.sink_pods[0]).ns()
    }

    /// (role, namespace name) of the nodes and pods.
    pub fn namespaces(&self) -> Vec<(&'static str, String)> {
        [
            ("node-a", self.cluster.node(NODE_A).ns()),
            ("node-b", self.cluster.node(NODE_B).ns()),
            ("src pod", self.src()),
            ("dst pod", self.dst()),
        ]
        .into_iter()
        .map(|(role, ns)| (role, ns.name().to_owned()))
        .collect()
    }

    /// ctpath's XDP drops on both nodes so far (all reasons), or 0 for other topologies (the
    /// forwarder's are in its [`ForwarderSample`]).
    pub fn datapath_drops(&self) -> u64 {
        self.cluster
            .ctpath_nodes()
            .map(|node| self.cluster.status(node).total_dropped())
            .sum()
    }

    /// ctpath's `conntrack_full` drops on both nodes so far (0 for other topologies).
    pub fn conntrack_full(&self) -> u64 {
        self.cluster
            .ctpath_nodes()
            .map(|node| {
                self.cluster
                    .status(node)
                    .dropped(DropReason::ConntrackFull)
                    .packets
            })
            .sum()
    }

    /// The kernel topology: (entries, `nf_conntrack_max`) of the destination node's conntrack
    /// (`None` elsewhere, or where it cannot be read).
    pub fn kernel_conntrack(&self) -> Option<(u64, u64)> {
        if self.kind != TopologyKind::Kernel {
            return None;
        }
        let ns = self.cluster.node(NODE_B).ns();
        let read = |name: &str| -> Option<u64> {
            let out = ns
                .exec_unchecked(&["cat", &format!("/proc/sys/net/netfilter/{name}")])
                .ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        Some((read("nf_conntrack_count")?, read("nf_conntrack_max")?))
    }
}

/// `tx-checksumming`, `tcp-segmentation-offload` and `generic-receive-offload` of `ifname` in
/// `ns`, as `ethtool -k` reports them.
fn offloads(ns: &Netns, ifname: &str) -> String {
    let text = ns
        .exec_unchecked(&["ethtool", "-k", ifname])
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let value = |key: &str| {
        text.lines()
            .find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == key).then(|| v.split_whitespace().next().unwrap_or("?").to_owned())
            })
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "tx-csum {}, tso {}, gro {}",
        value("tx-checksumming"),
        value("tcp-segmentation-offload"),
        value("generic-receive-offload")
    )
}

#[cfg(test)]
mod tests {
    use ctpath_control::state::ClusterState;

    use super::*;

    #[test]
    fn the_state_is_valid_and_has_the_rules() {
        for rules in [1, 10, 10000] {
            let state =
                ClusterState::from_yaml_str(&state_yaml(rules, PlaneDatapath::Xdp).unwrap())
                    .unwrap();
            let group = state.security_group("bench-dst").unwrap();
            assert_eq!(
                group.rules.len(),
                rules + 1,
                "N ingress rules and egress any"
            );
            assert_eq!(state.pods[1].interfaces[0].security_groups, ["bench-dst"]);
        }
        assert!(state_yaml(0, PlaneDatapath::Xdp).is_err());
        let fast =
            ClusterState::from_yaml_str(&state_yaml(1, PlaneDatapath::FastPath).unwrap()).unwrap();
        assert!(fast.networks[0].fast_path);
        assert!(
            !ClusterState::from_yaml_str(&state_yaml(1, PlaneDatapath::Xdp).unwrap())
                .unwrap()
                .networks[0]
                .fast_path
        );
        for (plane, datapath) in [
            (PlaneDatapath::Xdp, ctpath_control::state::Datapath::Xdp),
            (PlaneDatapath::Tc, ctpath_control::state::Datapath::Tc),
            (
                PlaneDatapath::FastPath,
                ctpath_control::state::Datapath::Xdp,
            ),
        ] {
            let state = ClusterState::from_yaml_str(&state_yaml(1, plane).unwrap()).unwrap();
            assert_eq!(state.networks[0].datapath(), datapath, "{plane:?}");
        }
    }

    #[test]
    fn the_iptables_chain_has_the_rules_in_order() {
        let text = iptables_ruleset(3).unwrap();
        let chain: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A ctpath-sg-dst"))
            .collect();
        assert_eq!(chain.len(), 1 + 3 + 1, "{text}");
        assert!(chain[0].contains("RELATED,ESTABLISHED"));
        assert!(chain[1].contains("--dport 20000"));
        assert!(chain[3].ends_with("-s 10.100.1.2/32 -j ACCEPT"));
        assert!(chain[4].ends_with("-j DROP"));
        assert!(text.ends_with("COMMIT\n"));
    }
}
