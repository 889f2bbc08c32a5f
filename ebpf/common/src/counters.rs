//! What the datapath counts: why it dropped a frame ([`DropReason`]) and what it did with the
//! frames it did not drop ([`Counter`]). Both index per-CPU arrays of [`Tally`]; userspace sums
//! the CPUs and prints the names. Discriminants are stable: they are map indices, and a status
//! tool of one version reads the maps of a running agent of another, so add new variants at the
//! end and never renumber.

/// Packets and bytes seen for one counter on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Tally>() == 16);

#[cfg(feature = "user")]
// SAFETY: `Tally` is `#[repr(C)]`, `Copy`, made of two `u64`s with no padding; every bit
// pattern is a valid value.
#[allow(unsafe_code)]
unsafe impl aya::Pod for Tally {}

/// Declares a `#[repr(u32)]` enum whose variants index a counter map, with a stable snake_case
/// name and a one-line description for each.
/// A kind of counter: an enum whose variants index one per-CPU array of [`Tally`].
pub trait CounterKind: Copy + 'static {
    /// Every variant, in index order.
    const ALL: &'static [Self];
    /// Name of the BPF map the variants index.
    const MAP_NAME: &'static str;
    /// Stable snake_case name of a variant.
    fn name(self) -> &'static str;
    /// Map index of a variant.
    fn index(self) -> u32;
}

macro_rules! counter_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident in $map:literal {
        $($(#[doc = $doc:literal])* $variant:ident = $value:literal => $label:literal,)+
    }) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $($(#[doc = $doc])* $variant = $value,)+
        }

        impl $name {
            /// Every variant, in index order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// Number of slots the counter map needs.
            pub const COUNT: u32 = $name::ALL.len() as u32;

            /// Stable snake_case name, used in `ctpath status` and metrics.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $label,)+ }
            }

            /// The map index of this counter.
            pub const fn index(self) -> u32 {
                self as u32
            }

            /// The variant stored at map index `index`, if any.
            pub const fn from_index(index: u32) -> Option<$name> {
                match index { $($value => Some($name::$variant),)+ _ => None }
            }
        }

        impl CounterKind for $name {
            const ALL: &'static [Self] = $name::ALL;
            const MAP_NAME: &'static str = $map;
            fn name(self) -> &'static str {
                $name::name(self)
            }
            fn index(self) -> u32 {
                $name::index(self)
            }
        }
    };
}

counter_enum! {
    /// Why the datapath dropped a frame. One per-CPU counter each.
    pub enum DropReason in "DROPS" {
        /// Shorter than an Ethernet header.
        EthTruncated = 0 => "eth_truncated",
        /// ARP shorter than the 28 bytes of an Ethernet/IPv4 ARP packet.
        ArpTruncated = 1 => "arp_truncated",
        /// ARP for another hardware or protocol type, or with wrong address lengths.
        ArpUnsupported = 2 => "arp_unsupported",
        /// IPv4 header (with its options) runs past the end of the frame.
        Ipv4Truncated = 3 => "ipv4_truncated",
        /// Ethertype IPv4 but the version nibble is not 4.
        Ipv4BadVersion = 4 => "ipv4_bad_version",
        /// IHL below 5 (a header shorter than 20 bytes).
        Ipv4BadIhl = 5 => "ipv4_bad_ihl",
        /// Total length shorter than the header or longer than the frame.
        Ipv4BadTotalLength = 6 => "ipv4_bad_total_length",
        /// A fragment (MF set or non-zero offset). ctpath does not reassemble; pods are expected
        /// to use path-MTU discovery.
        Ipv4Fragment = 7 => "ipv4_fragment",
        /// TCP header runs past the IPv4 payload.
        TcpTruncated = 8 => "tcp_truncated",
        /// TCP data offset below 5.
        TcpBadDataOffset = 9 => "tcp_bad_data_offset",
        /// UDP header runs past the IPv4 payload.
        UdpTruncated = 10 => "udp_truncated",
        /// UDP length below 8 or beyond the IPv4 payload.
        UdpBadLength = 11 => "udp_bad_length",
        /// ICMP header runs past the IPv4 payload.
        IcmpTruncated = 12 => "icmp_truncated",
        /// A frame on a veth with the program attached but no pod interface configured for it.
        UnconfiguredPort = 13 => "unconfigured_port",
        /// ARP request for an address ctpath does not answer on that plane (no flooding).
        ArpUnknownTarget = 14 => "arp_unknown_target",
        /// ARP that is not a request: ctpath answers ARP itself, so replies and announcements
        /// from pods or over VXLAN go nowhere.
        ArpNotRequest = 15 => "arp_not_request",
        /// IPv4 to an address that is no pod interface on the sender's plane (or the gateway
        /// address itself, which forwards nothing).
        UnknownDestination = 16 => "unknown_destination",
        /// IPv4 packet larger than the plane's MTU (with DF set the sender got an ICMP
        /// "fragmentation needed" instead, counted as `icmp_frag_needed_sent`).
        MtuExceeded = 17 => "mtu_exceeded",
        /// The underlay next hop towards a remote VTEP has no resolved neighbour entry yet.
        NoNeighbor = 18 => "no_neighbor",
        /// No route on the underlay towards a remote VTEP.
        NoUnderlayRoute = 19 => "no_underlay_route",
        /// UDP to the VXLAN port too short for VXLAN and an inner Ethernet header.
        VxlanTruncated = 20 => "vxlan_truncated",
        /// VXLAN header without the I (VNI valid) flag.
        VxlanBadFlags = 21 => "vxlan_bad_flags",
        /// VXLAN from an address that is not a node of the cluster.
        UnknownVtep = 22 => "unknown_vtep",
        /// VXLAN with a VNI of no plane.
        UnknownVni = 23 => "unknown_vni",
        /// Inner frame over VXLAN that is neither IPv4 nor ARP.
        InnerUnsupported = 24 => "inner_unsupported",
        /// The kernel refused to grow or shrink the frame (`bpf_xdp_adjust_head`/`_tail`).
        AdjustFailed = 25 => "adjust_failed",
        /// IPv4 forwarding is off on the underlay interface, so the kernel's FIB helper refuses
        /// to look up next hops (the agent turns it on; someone turned it off again).
        UnderlayForwardingOff = 26 => "underlay_forwarding_off",
        /// A frame from a pod whose Ethernet source is not the MAC of the address it uses.
        SpoofedMac = 27 => "spoofed_mac",
        /// IPv4 from a pod with a source address it does not own.
        SpoofedIp = 28 => "spoofed_ip",
        /// ARP from a pod claiming an address or MAC it does not own.
        SpoofedArp = 29 => "spoofed_arp",
        /// No egress rule of the sender's security groups allows the connection.
        PolicyDeniedEgress = 30 => "policy_denied_egress",
        /// No ingress rule of the receiver's security groups allows the connection.
        PolicyDeniedIngress = 31 => "policy_denied_ingress",
        /// A new connection needed a conntrack entry and the table is full.
        ConntrackFull = 32 => "conntrack_full",
        /// A frame the AF_XDP forwarder would have to hand to the kernel, which it cannot (the
        /// XDP programs give it IPv4 and ARP only, so this means a defect).
        ForwarderCannotPass = 33 => "forwarder_cannot_pass",
        /// The forwarder's worker has no socket on the interface (and queue) the frame leaves
        /// by.
        ForwarderNoSocket = 34 => "forwarder_no_socket",
        /// The TX ring of the forwarder's socket the frame leaves by was full.
        ForwarderTxRingFull = 35 => "forwarder_tx_ring_full",
        /// To a service's virtual IP on a protocol and port the service does not forward.
        ServicePortUnknown = 36 => "service_port_unknown",
        /// To a service port whose service has no backends.
        ServiceNoBackend = 37 => "service_no_backend",
        /// To a service's virtual IP, but neither TCP, UDP nor an ICMP echo request: nothing a
        /// connection to a service starts with (ICMP errors to a virtual IP are not
        /// translated).
        ServiceUnsupported = 38 => "service_unsupported",
        /// A translated packet whose headers could not be rewritten (they lie beyond what
        /// the hook can write, or the kernel refused the checksum update).
        ServiceRewriteFailed = 39 => "service_rewrite_failed",
    }
}

counter_enum! {
    /// What the datapath did with a frame it did not drop.
    pub enum Counter in "COUNTERS" {
        /// A frame from a pod handed to the node's kernel stack (not IPv4 or ARP, or the agent
        /// has not configured the node yet).
        PodPassed = 0 => "pod_passed",
        /// A frame from a pod delivered to a pod on the same node.
        PodRedirectedLocal = 1 => "pod_redirected_local",
        /// A frame from a pod encapsulated in VXLAN towards another node.
        PodEncapsulated = 2 => "pod_encapsulated",
        /// An ARP request from a pod answered by the node.
        PodArpReplied = 3 => "pod_arp_replied",
        /// An oversized DF packet from a pod answered with ICMP "fragmentation needed".
        IcmpFragNeededSent = 4 => "icmp_frag_needed_sent",
        /// A frame on the underlay that is not VXLAN for this node, left to the kernel.
        UnderlayPassed = 5 => "underlay_passed",
        /// A VXLAN packet decapsulated and delivered to a pod on this node.
        UnderlayDecapsulated = 6 => "underlay_decapsulated",
        /// An ARP request over VXLAN for a pod on this node, answered back over VXLAN.
        UnderlayArpReplied = 7 => "underlay_arp_replied",
        /// A frame from a pod on a fast-path plane handed to the AF_XDP forwarder.
        PodToForwarder = 8 => "pod_to_forwarder",
        /// VXLAN of a fast-path plane handed to the AF_XDP forwarder.
        UnderlayToForwarder = 9 => "underlay_to_forwarder",
        /// VXLAN for a local pod handed by the XDP program on the underlay to the tc program
        /// behind it (which counts what it does with it): all but TCP on a plane with
        /// `datapath: tc`, and everything for a pod whose end does not run NAPI.
        UnderlayToTc = 10 => "underlay_to_tc",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_round_trip() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i as u32);
            assert_eq!(DropReason::from_index(i as u32), Some(*reason));
        }
        assert_eq!(DropReason::from_index(DropReason::COUNT), None);
        for (i, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(Counter::from_index(i as u32), Some(*counter));
        }
    }

    #[test]
    fn names_are_unique_snake_case() {
        for (i, a) in DropReason::ALL.iter().enumerate() {
            assert!(a
                .name()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
            for b in &DropReason::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
