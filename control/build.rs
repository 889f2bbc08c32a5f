//! Builds ctpath's eBPF programs (ebpf/programs) for `bpfel-unknown-none` with the nightly
//! toolchain and `-Z build-std=core`, linked by bpf-linker, and leaves the object at
//! `$OUT_DIR/ctpath.bpf.o` for `loader` to embed.
//!
//! Not aya-build: version 0.2.0 (the one that builds on this Rust) always links with `--btf`,
//! and the kernel rejects the BTF bpf-linker emits for Rust unions (see shared/TOOLCHAIN.md).
//! `scripts/setup` installs the nightly rust-src component and bpf-linker this needs.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const EBPF_PACKAGE: &str = "ctpath-ebpf";
const EBPF_BIN: &str = "ctpath";
const BPF_TARGET: &str = "bpfel-unknown-none";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("control/ lives in the workspace root");
    for dir in ["ebpf/programs", "ebpf/common"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    // A target directory of its own (inside the workspace's), so the nested cargo never waits
    // on the lock of the build that runs this script, and its build-std artifacts are reused.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("bpf");

    let mut cargo = Command::new("rustup");
    cargo
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "--release",
            "-Z",
            "build-std=core",
        ])
        .args([
            "--package",
            EBPF_PACKAGE,
            "--bin",
            EBPF_BIN,
            "--target",
            BPF_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace);
    // The outer build's compiler, wrappers (clippy) and flags are for the host: keep them out.
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ] {
        cargo.env_remove(key);
    }
    let status = cargo.status().unwrap_or_else(|err| {
        panic!("cannot run `rustup run nightly cargo` to build the eBPF programs: {err}; run scripts/setup")
    });
    if !status.success() {
        panic!(
            "building the eBPF programs ({EBPF_PACKAGE}) failed with {status}; see the errors above \
             (missing nightly rust-src or bpf-linker? run scripts/setup)"
        );
    }

    let object = target_dir.join(BPF_TARGET).join("release").join(EBPF_BIN);
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("ctpath.bpf.o");
    std::fs::copy(&object, &out)
        .unwrap_or_else(|err| panic!("copying {} to {}: {err}", object.display(), out.display()));
}
