//! `ctpath state check` as a person runs it: the built binary on real files, its output and its
//! exit status.

use std::path::Path;
use std::process::{Command, Output};

const CONTRACT_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/contract/cluster-state.example.yaml"
);
const TWO_NODE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/two-node.yaml");
const SERVICES_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/services.yaml");

fn state_check(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ctpath"))
        .args(["state", "check"])
        .arg(file)
        .env_remove("RUST_LOG")
        .output()
        .expect("ctpath runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

#[test]
fn contract_example_is_ok() {
    let output = state_check(Path::new(CONTRACT_PATH));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    assert_eq!(
        text(&output.stdout),
        format!(
            "{CONTRACT_PATH}: ok (2 networks, 2 nodes, 2 security groups, 2 pods, 3 interfaces)\n"
        )
    );
    assert_eq!(text(&output.stderr), "");
}

#[test]
fn two_node_example_is_ok() {
    let output = state_check(Path::new(TWO_NODE_PATH));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    assert_eq!(
        text(&output.stdout),
        format!(
            "{TWO_NODE_PATH}: ok (3 networks, 2 nodes, 3 security groups, 4 pods, 10 interfaces)\n\
             {TWO_NODE_PATH}: 1 service, each balanced over its backends by Maglev:\n  \
             service upf-gtpu 10.96.0.20: 2 backends: telco/upf-0 10.244.1.2, telco/upf-1 \
             10.244.2.2\n"
        )
    );
}

#[test]
fn services_are_validated_and_their_backends_listed() {
    let output = state_check(Path::new(SERVICES_PATH));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    assert_eq!(
        text(&output.stdout),
        format!(
            "{SERVICES_PATH}: ok (1 networks, 2 nodes, 1 security groups, 4 pods, 4 interfaces)\n\
             {SERVICES_PATH}: 2 services, each balanced over its backends by Maglev:\n  \
             service web 10.96.0.10: 2 backends: default/web-0 10.244.1.2, default/web-1 \
             10.244.2.2\n  \
             service dns 10.244.0.53: 1 backend: infra/dns-0 10.244.1.3\n"
        )
    );
}

#[test]
fn every_service_problem_is_listed_with_its_path() {
    let example = std::fs::read_to_string(SERVICES_PATH).expect("example is readable");
    let broken = example
        .replacen("vip: 10.96.0.10", "vip: 10.244.1.2", 1)
        .replacen("pod: dns-0", "pod: dns-9", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).expect("write broken copy");

    let output = state_check(&file);
    assert_eq!(output.status.code(), Some(2));
    let shown = file.display();
    assert_eq!(
        text(&output.stderr),
        format!(
            "{shown}: services[0].vip: 10.244.1.2 is the address of default/web-0 \
             (pods[0].interfaces[0]) on network std\n\
             {shown}: services[1].backends[0]: unknown pod infra/dns-9\n"
        )
    );
}

#[test]
fn inconsistent_state_lists_every_violation_and_exits_2() {
    let contract = std::fs::read_to_string(CONTRACT_PATH).expect("contract is readable");
    let broken = contract
        .replacen("vni: 300", "vni: 100", 1)
        .replacen("ip: 10.244.2.2", "ip: 10.9.0.5", 1)
        .replacen("node: node-b", "node: node-c", 1);
    assert_ne!(broken, contract);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).expect("write broken copy");

    let output = state_check(&file);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(text(&output.stdout), "");
    let shown = file.display();
    assert_eq!(
        text(&output.stderr),
        format!(
            "{shown}: networks[1].vni: duplicate VNI 100 (already used by network std)\n\
             {shown}: pods[1].node: unknown node node-c\n\
             {shown}: pods[1].interfaces[0].ip: 10.9.0.5 is outside network std (10.244.0.0/16)\n"
        )
    );
}

#[test]
fn unparsable_state_names_the_path_and_exits_2() {
    let contract = std::fs::read_to_string(CONTRACT_PATH).expect("contract is readable");
    let broken = contract.replacen("ip: 10.250.1.2", "ip: 10.250.1", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).expect("write broken copy");

    let output = state_check(&file);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    let expected = format!(
        "{}: pods[0].interfaces[1].ip: invalid IPv4 address syntax at line ",
        file.display()
    );
    assert!(stderr.starts_with(&expected), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
}

#[test]
fn missing_file_is_named_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("absent.yaml");
    let output = state_check(&file);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        format!(
            "{}: cannot read: No such file or directory (os error 2)\n",
            file.display()
        )
    );
}

#[test]
fn help_lists_the_state_subcommand() {
    let output = Command::new(env!("CARGO_BIN_EXE_ctpath"))
        .arg("--help")
        .output()
        .expect("ctpath runs");
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    assert!(help.contains("container network dataplane"), "{help}");
    assert!(help.contains("state"), "{help}");
    assert!(help.contains("Exit status"), "{help}");
}
