//! The cluster state in etcd against a real etcd server on loopback: `ctpath state apply` and
//! `state get` (round trip, an invalid file refused with nothing written, keys of objects no
//! longer in the file deleted), the store's read-modify-write retried on a conflict,
//! content of etcd that is not a valid state reported at its key, and a state larger than
//! gRPC's default message size listed and watched.

use std::{collections::BTreeSet, path::Path, process::Output};

use ctpath_control::{
    state::{ClusterState, Direction, Pod, Protocol, Rule},
    store::{self, Store, StoreError, ATTEMPTS, DEFAULT_PREFIX},
};
use ctpath_testbed::{cluster::ctpath_binary, etcd::EtcdServer};

const TWO_NODE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../control/examples/two-node.yaml"
);

fn ctpath(args: &[&str]) -> Output {
    std::process::Command::new(ctpath_binary())
        .args(args)
        .output()
        .expect("run ctpath")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The keys under the default prefix, as etcdctl lists them.
fn keys(etcd: &EtcdServer) -> BTreeSet<String> {
    etcd.etcdctl(&["get", "--prefix", "--keys-only", DEFAULT_PREFIX])
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `state` with its lists in key order, as a state read from etcd has them.
fn sorted(mut state: ClusterState) -> ClusterState {
    state.networks.sort_by(|a, b| a.name.cmp(&b.name));
    state.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    state.security_groups.sort_by(|a, b| a.name.cmp(&b.name));
    state
        .pods
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    state
}

fn store(etcd: &EtcdServer) -> Store {
    Store::connect(&[etcd.endpoint()], DEFAULT_PREFIX).expect("connect to etcd")
}

#[test]
fn apply_then_get_round_trips() {
    let etcd = EtcdServer::start();
    let applied = ctpath(&["state", "apply", TWO_NODE, "--etcd", &etcd.endpoint()]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let stdout = text(&applied.stdout);
    assert!(
        stdout.contains(&format!("applied at revision {}", etcd.revision())),
        "{stdout}"
    );
    // One key per object: 3 networks, 2 nodes, 3 security groups, 4 pods, 1 service, the
    // conntrack.
    assert_eq!(keys(&etcd).len(), 14, "{:?}", keys(&etcd));
    assert!(keys(&etcd).contains("/ctpath/v1/pods/default/probe-0"));

    let got = ctpath(&["state", "get", "--etcd", &etcd.endpoint()]);
    assert!(got.status.success(), "{}", text(&got.stderr));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("got.yaml");
    std::fs::write(&copy, &got.stdout).unwrap();
    let checked = ctpath(&["state", "check", copy.to_str().unwrap()]);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    let file = ClusterState::from_path(Path::new(TWO_NODE)).unwrap();
    assert_eq!(
        ClusterState::from_path(&copy).unwrap(),
        sorted(file.clone())
    );
    assert_eq!(store(&etcd).load().unwrap().state, sorted(file));

    // The same file again changes nothing.
    let before = etcd.revision();
    let again = ctpath(&["state", "apply", TWO_NODE, "--etcd", &etcd.endpoint()]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("0 keys put, 0 deleted"));
    assert_eq!(etcd.revision(), before);
}

#[test]
fn invalid_file_is_refused_and_nothing_written() {
    let etcd = EtcdServer::start();
    assert!(
        ctpath(&["state", "apply", TWO_NODE, "--etcd", &etcd.endpoint()])
            .status
            .success()
    );
    let before = etcd.revision();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let yaml = std::fs::read_to_string(TWO_NODE)
        .unwrap()
        .replacen("ip: 10.244.1.2", "ip: 10.9.1.2", 1)
        .replacen("name: upf-1", "name: upf-9", 1);
    std::fs::write(&bad, yaml).unwrap();
    let applied = ctpath(&[
        "state",
        "apply",
        bad.to_str().unwrap(),
        "--etcd",
        &etcd.endpoint(),
    ]);
    assert_eq!(applied.status.code(), Some(2));
    let check = ctpath(&["state", "check", bad.to_str().unwrap()]);
    assert_eq!(
        text(&applied.stderr),
        text(&check.stderr),
        "the same messages as state check"
    );
    assert!(
        text(&applied.stderr).contains("interfaces[0].ip: 10.9.1.2 is outside network std"),
        "{}",
        text(&applied.stderr)
    );
    assert_eq!(etcd.revision(), before, "nothing written");
    assert!(!keys(&etcd).contains("/ctpath/v1/pods/telco/upf-9"));
}

#[test]
fn keys_of_objects_not_in_the_file_are_deleted() {
    let etcd = EtcdServer::start();
    assert!(
        ctpath(&["state", "apply", TWO_NODE, "--etcd", &etcd.endpoint()])
            .status
            .success()
    );
    let mut state = ClusterState::from_path(Path::new(TWO_NODE)).unwrap();
    state.pods.retain(|pod| pod.name != "probe-0");
    let dir = tempfile::tempdir().unwrap();
    let smaller = dir.path().join("smaller.yaml");
    std::fs::write(&smaller, state.to_yaml()).unwrap();
    // A key nobody should have written under the prefix goes too.
    etcd.etcdctl(&["put", "/ctpath/v1/stray", "x"]);
    let applied = ctpath(&[
        "state",
        "apply",
        smaller.to_str().unwrap(),
        "--etcd",
        &etcd.endpoint(),
    ]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    assert!(
        text(&applied.stdout).contains("0 keys put, 2 deleted"),
        "{}",
        text(&applied.stdout)
    );
    let now = keys(&etcd);
    assert!(!now.contains("/ctpath/v1/pods/default/probe-0"), "{now:?}");
    assert!(!now.contains("/ctpath/v1/stray"), "{now:?}");
    assert_eq!(store(&etcd).load().unwrap().state, sorted(state));
}

/// A copy of the first pod of `state` under another name, on an address of its own.
fn another_pod(state: &ClusterState, name: &str, last_octet: u8) -> Pod {
    let mut pod = state.pods[0].clone();
    pod.name = name.to_owned();
    for (i, interface) in pod.interfaces.iter_mut().enumerate() {
        let [a, b, c, _] = interface.ip.octets();
        interface.ip = [a, b, c, last_octet].into();
        interface.mac.0[5] = last_octet;
        interface.host_interface = format!("v{name}{i}");
        interface.allowed_address_pairs.clear();
    }
    pod
}

#[test]
fn read_modify_write_retries_on_a_conflict() {
    let etcd = EtcdServer::start();
    let file = ClusterState::from_path(Path::new(TWO_NODE)).unwrap();
    let mut writer = store(&etcd);
    writer.replace(&file).unwrap();

    // Another writer adds a pod between the first read and its write: the write is refused,
    // the change is made again on the new state, and both pods are in.
    let mut other = store(&etcd);
    let mut calls = 0;
    let written = writer
        .update(|state| {
            calls += 1;
            if calls == 1 {
                other
                    .update(|state| {
                        state.pods.push(another_pod(state, "cni-b", 201));
                        Ok(())
                    })
                    .expect("the other writer's update");
            }
            state.pods.push(another_pod(state, "cni-a", 200));
            Ok(())
        })
        .unwrap();
    assert_eq!(calls, 2, "one conflict, one retry");
    assert_eq!((written.put, written.deleted), (1, 0));
    let loaded = store(&etcd).load().unwrap();
    assert_eq!(loaded.revision, written.revision);
    let names: Vec<&str> = loaded.state.pods.iter().map(|p| p.name.as_str()).collect();
    assert!(
        names.contains(&"cni-a") && names.contains(&"cni-b"),
        "{names:?}"
    );

    // A change the store keeps losing is given up after the bounded number of attempts.
    let mut calls = 0;
    let error = writer
        .update(|state| {
            calls += 1;
            other
                .update(|state| {
                    state.conntrack.udp += 1;
                    Ok(())
                })
                .expect("the other writer's update");
            state.pods.retain(|pod| pod.name != "cni-a");
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Conflict { attempts, .. } if attempts == ATTEMPTS),
        "{error}"
    );
    assert_eq!(calls, ATTEMPTS);

    // A result that breaks a rule is not written; nor is one the closure refuses.
    let before = etcd.revision();
    let error = writer
        .update(|state| {
            state.pods.push(another_pod(state, "cni-c", 200));
            Ok(())
        })
        .unwrap_err();
    assert!(
        error.to_string().contains(
            "/ctpath/v1/pods/default/cni-c: interfaces[0].ip: 10.244.2.200 is already used on \
             network std by default/cni-a"
        ),
        "{error}"
    );
    let error = writer
        .update(|_| Err("no room for the pod".into()))
        .unwrap_err();
    assert_eq!(error.to_string(), "update refused: no room for the pod");
    assert_eq!(etcd.revision(), before);
}

#[test]
fn corrupt_values_are_reported_at_their_key() {
    let etcd = EtcdServer::start();
    store(&etcd)
        .replace(&ClusterState::from_path(Path::new(TWO_NODE)).unwrap())
        .unwrap();
    let pod_key = "/ctpath/v1/pods/telco/upf-0";
    let good = etcd.etcdctl(&["get", "--print-value-only", pod_key]);

    etcd.etcdctl(&["put", pod_key, "{\"name\": \"upf-0\", "]);
    let got = ctpath(&["state", "get", "--etcd", &etcd.endpoint()]);
    assert_eq!(got.status.code(), Some(2));
    assert!(
        text(&got.stderr).contains(&format!("{pod_key}: EOF while parsing")),
        "{}",
        text(&got.stderr)
    );

    let wrong_type = good.trim().replacen("\"node\":\"node-a\"", "\"node\":7", 1);
    assert_ne!(wrong_type, good.trim());
    etcd.etcdctl(&["put", pod_key, &wrong_type]);
    let error = store(&etcd).load().unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("{pod_key}: node: invalid type: integer `7`")),
        "{error}"
    );

    let elsewhere = good
        .trim()
        .replacen("\"node\":\"node-a\"", "\"node\":\"node-z\"", 1);
    etcd.etcdctl(&["put", pod_key, &elsewhere]);
    let error = store(&etcd).load().unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("{pod_key}: node: unknown node node-z")),
        "{error}"
    );

    etcd.etcdctl(&["put", "/ctpath/v1/pods/telco/upf-7", good.trim()]);
    let error = store(&etcd).load().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("/ctpath/v1/pods/telco/upf-7: the key names pod upf-7, the value upf-0"),
        "{error}"
    );
}

#[test]
fn a_deletion_the_result_depends_on_is_a_conflict() {
    let etcd = EtcdServer::start();
    let mut state = ClusterState::from_path(Path::new(TWO_NODE)).unwrap();
    let mut extra = state.networks[0].clone();
    extra.name = "extra".to_owned();
    extra.vni = 900;
    extra.cidr = "10.99.0.0/16".parse().unwrap();
    extra.gateway = "10.99.0.1".parse().unwrap();
    state.networks.push(extra);
    let mut writer = store(&etcd);
    writer.replace(&state).unwrap();

    // An operator deletes the network while a pod is being put on it: the write is refused,
    // and on the state read again the pod names an unknown network.
    let mut calls = 0;
    let error = writer
        .update(|state| {
            calls += 1;
            if calls == 1 {
                etcd.etcdctl(&["del", "/ctpath/v1/networks/extra"]);
            }
            let mut pod = another_pod(state, "on-extra", 5);
            pod.interfaces.truncate(1);
            pod.interfaces[0].network = "extra".to_owned();
            pod.interfaces[0].ip = "10.99.1.5".parse().unwrap();
            pod.interfaces[0].security_groups.clear();
            state.pods.push(pod);
            Ok(())
        })
        .unwrap_err();
    assert_eq!(calls, 2, "one conflict, one retry");
    assert!(
        error.to_string().contains(
            "/ctpath/v1/pods/default/on-extra: interfaces[0].network: unknown network extra"
        ),
        "{error}"
    );
    assert!(!keys(&etcd).contains("/ctpath/v1/pods/default/on-extra"));
}

#[test]
fn a_state_larger_than_grpc_s_default_message_is_listed_and_watched() {
    // etcd's own cap on one request (1.5 MiB) raised, as for any state this large.
    let etcd = EtcdServer::start_with(&["--max-request-bytes".into(), "33554432".into()]);
    let mut state = ClusterState::from_path(Path::new(TWO_NODE)).unwrap();
    // About 5 MB of rules in one group: more than gRPC's default of 4 MiB per response.
    state.security_groups[0].rules = (0..60_000u32)
        .map(|i| Rule {
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            ports: Some(format!("{}", 1 + i % 60_000).parse().unwrap()),
            remote_group: None,
            remote_cidr: Some(
                format!("10.{}.{}.0/24", i / 256 % 256, i % 256)
                    .parse()
                    .unwrap(),
            ),
            remote_service: None,
        })
        .collect();
    let json = serde_json::to_vec(&state.security_groups[0]).unwrap();
    assert!(json.len() > 4 << 20, "{} bytes", json.len());
    store(&etcd).replace(&state).expect("write the large state");
    assert_eq!(
        store(&etcd).load().expect("list it").state,
        sorted(state.clone())
    );
    let watched = store::watch(&[etcd.endpoint()], DEFAULT_PREFIX).expect("watch");
    let first = watched
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the watch lists the state");
    assert_eq!(first.state.expect("a valid state"), sorted(state));
}
