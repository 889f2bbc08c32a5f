//! The services of a `ctpath-bench services` run, written twice: as kube-proxy's iptables
//! mode writes them (the nat table for `iptables-restore`) and as ctpath's cluster state
//! (`services:`, selecting the backend pods by label).
//!
//! Owns [`RulesError`]. Pure text; nothing here touches a namespace.

use std::{fmt::Write as _, net::Ipv4Addr};

use thiserror::Error;

use ctpath_testbed::format_mac;

use crate::topology::{NODE_A, NODE_B, SRC_IP, SRC_MAC, SRC_POD, UNDERLAY_IF, VNI};

/// The most services a run may ask for (VIPs are 10.96.0.0/16 from .0.1 up).
pub const MAX_SERVICES: usize = 60_000;
/// The UDP port every service serves and every backend listens on.
pub const SERVICE_PORT: u16 = 5000;
/// The plane's pod CIDR (kube-proxy's `--cluster-cidr`).
pub const POD_CIDR: &str = "10.100.0.0/16";
/// The label every backend pod carries and every service selects.
const BACKEND_LABEL: (&str, &str) = ("app", "bench-backend");

/// A backend pod on node-b.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    pub name: &'static str,
    pub host_interface: &'static str,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// The three backends, all on node-b (so every connection crosses the underlay).
pub const BACKENDS: [Backend; 3] = [
    Backend {
        name: "be1",
        host_interface: "vbe1",
        ip: Ipv4Addr::new(10, 100, 2, 2),
        mac: [0x02, 0x00, 0x0a, 0x64, 0x02, 0x02],
    },
    Backend {
        name: "be2",
        host_interface: "vbe2",
        ip: Ipv4Addr::new(10, 100, 2, 3),
        mac: [0x02, 0x00, 0x0a, 0x64, 0x02, 0x03],
    },
    Backend {
        name: "be3",
        host_interface: "vbe3",
        ip: Ipv4Addr::new(10, 100, 2, 4),
        mac: [0x02, 0x00, 0x0a, 0x64, 0x02, 0x04],
    },
];

#[derive(Debug, Error)]
pub enum RulesError {
    #[error("services: {0} is out of range (1..={MAX_SERVICES})")]
    ServiceCount(usize),
}

/// The virtual IP of service `i` (0-based): 10.96.0.1, 10.96.0.2, ... (outside the plane).
pub fn vip(i: usize) -> Ipv4Addr {
    let n = i as u32 + 1;
    Ipv4Addr::new(10, 96, (n >> 8) as u8, n as u8)
}

/// The service whose VIP the measured traffic goes to: the last one created, so the kernel's
/// `KUBE-SERVICES` chain is walked to its end for every new connection.
pub fn measured_service(services: usize) -> usize {
    services - 1
}

fn check(services: usize) -> Result<(), RulesError> {
    if (1..=MAX_SERVICES).contains(&services) {
        Ok(())
    } else {
        Err(RulesError::ServiceCount(services))
    }
}

/// A chain-name suffix in kube-proxy's shape: 16 characters of a hash of what names the
/// chain (kube-proxy takes base32 of SHA-256; any stable hash gives chains of the same length).
fn chain_hash(what: &str) -> String {
    // FNV-1a, 64 bits, as 16 upper-case hex digits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in what.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// The nat table kube-proxy (iptables mode) writes for `services` UDP services of the three
/// [`BACKENDS`] each, for one `iptables-restore`: `KUBE-SERVICES` jumped to from PREROUTING
/// and OUTPUT, one `KUBE-SVC-*` per service (the masquerade mark for sources outside the
/// cluster CIDR, then `statistic` random 1/3, 1/2 and the last unconditional), one
/// `KUBE-SEP-*` per endpoint (the mark for a backend reaching itself, then the DNAT),
/// `KUBE-NODEPORTS` at the end of `KUBE-SERVICES`, `KUBE-POSTROUTING` masquerading what is
/// marked, as kube-proxy 1.2x writes them.
pub fn kube_proxy_nat(services: usize) -> Result<String, RulesError> {
    check(services)?;
    let mut chains = String::new();
    let mut rules = String::new();
    for i in 0..services {
        let name = format!("bench/svc-{i}:udp");
        let svc = format!("KUBE-SVC-{}", chain_hash(&format!("{name}udp")));
        let vip = vip(i);
        let _ = writeln!(chains, ":{svc} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -d {vip}/32 -p udp -m comment --comment \"{name} cluster IP\" \
             -m udp --dport {SERVICE_PORT} -j {svc}"
        );
        let _ = writeln!(
            rules,
            "-A {svc} ! -s {POD_CIDR} -d {vip}/32 -p udp -m comment --comment \"{name} cluster IP\" \
             -m udp --dport {SERVICE_PORT} -j KUBE-MARK-MASQ"
        );
        for (k, backend) in BACKENDS.iter().enumerate() {
            let endpoint = format!("{}:{SERVICE_PORT}", backend.ip);
            let sep = format!("KUBE-SEP-{}", chain_hash(&format!("{name}udp{endpoint}")));
            let _ = writeln!(chains, ":{sep} - [0:0]");
            let left = BACKENDS.len() - k;
            let pick = if left > 1 {
                format!(
                    " -m statistic --mode random --probability {:.11}",
                    1.0 / left as f64
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                rules,
                "-A {svc} -m comment --comment \"{name} -> {endpoint}\"{pick} -j {sep}"
            );
            let _ = writeln!(
                rules,
                "-A {sep} -s {}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ",
                backend.ip
            );
            let _ = writeln!(
                rules,
                "-A {sep} -p udp -m comment --comment \"{name}\" -m udp \
                 -j DNAT --to-destination {endpoint}"
            );
        }
    }
    Ok(format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n\
         :KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n{chains}\
         -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" \
         -j MASQUERADE --random-fully\n\
         {rules}\
         -A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" \
         -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\nCOMMIT\n"
    ))
}

/// The cluster state of a services run: the source pod on node-a, the three backends on
/// node-b (labelled, no security groups), and `services` services (none for 0) selecting them.
pub fn state_yaml(services: usize, datapath: &str) -> Result<String, RulesError> {
    if services > 0 {
        check(services)?;
    }
    let (key, value) = BACKEND_LABEL;
    let mut yaml = format!(
        "# ctpath-bench services: a source pod, three backends, {services} UDP services.
version: 1
networks:
  - {{ name: bench, vni: {VNI}, cidr: {POD_CIDR}, gateway: 10.100.0.1, mtu: 1450, datapath: {datapath} }}
nodes:
  - {{ name: {NODE_A}, underlay_interface: {UNDERLAY_IF}, underlay_ip: 192.168.77.1 }}
  - {{ name: {NODE_B}, underlay_interface: {UNDERLAY_IF}, underlay_ip: 192.168.77.2 }}
security_groups: []
pods:
  - name: {SRC_POD}
    node: {NODE_A}
    interfaces:
      - {{ network: bench, host_interface: vsrc, ip: {SRC_IP}, mac: \"{}\" }}
",
        format_mac(SRC_MAC)
    );
    for b in &BACKENDS {
        let _ = write!(
            yaml,
            "  - name: {}
    node: {NODE_B}
    labels: {{ {key}: {value} }}
    interfaces:
      - {{ network: bench, host_interface: {}, ip: {}, mac: \"{}\" }}
",
            b.name,
            b.host_interface,
            b.ip,
            format_mac(b.mac)
        );
    }
    if services > 0 {
        yaml.push_str("services:\n");
    }
    for i in 0..services {
        let _ = writeln!(
            yaml,
            "  - {{ name: svc-{i}, network: bench, vip: {}, ports: [{{ port: {SERVICE_PORT}, protocol: udp }}], selector: {{ {key}: {value} }} }}",
            vip(i)
        );
    }
    Ok(yaml)
}

#[cfg(test)]
mod tests {
    use ctpath_control::state::ClusterState;

    use super::*;

    #[test]
    fn every_service_gets_a_chain_three_endpoints_and_the_split_of_kube_proxy() {
        let text = kube_proxy_nat(3).unwrap();
        assert_eq!(text.matches("-A KUBE-SERVICES -d ").count(), 3);
        assert_eq!(text.matches(":KUBE-SVC-").count(), 3);
        assert_eq!(text.matches(":KUBE-SEP-").count(), 9);
        assert_eq!(text.matches("--probability 0.33333333333").count(), 3);
        assert_eq!(text.matches("--probability 0.50000000000").count(), 3);
        assert_eq!(text.matches("-j DNAT --to-destination").count(), 9);
        // The measured service is the last one in KUBE-SERVICES (before the node ports).
        let last = text
            .lines()
            .rfind(|l| l.starts_with("-A KUBE-SERVICES -d "))
            .unwrap();
        assert!(last.contains(&format!("-d {}/32", vip(measured_service(3)))));
        assert!(kube_proxy_nat(0).is_err());
    }

    #[test]
    fn the_state_is_valid_and_selects_the_three_backends() {
        for services in [0, 1, 100] {
            let yaml = state_yaml(services, "xdp").unwrap();
            let state = ClusterState::from_yaml_str(&yaml).unwrap();
            assert_eq!(state.services.len(), services);
        }
        assert_eq!(vip(0), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(vip(9_999), Ipv4Addr::new(10, 96, 39, 16));
    }
}
