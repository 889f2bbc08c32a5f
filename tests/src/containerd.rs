//! A containerd of the test's own inside a node's namespace, and a busybox image built from
//! `/bin/busybox` for it, so that end-to-end tests run containers the way a node does and the
//! runtime calls the CNI plugins.
//!
//! Owns [`Containerd`], an RAII guard: the daemon with its root, state and sockets in a
//! tempdir (CRI and the snapshotters that need other filesystems disabled), joined to the
//! node's network namespace only (under `ip netns exec` the remounted `/sys` has no cgroup
//! filesystem, which runc needs); [`Containerd::import_busybox`];
//! [`Containerd::run_with_cni`], `ctr run --rm --cni` of a container in the foreground;
//! [`Containerd::exec`] of a command in a running container; [`Containerd::stop`].
//!
//! `ctr run --cni` (containerd 1.6) is the CNI client itself (the daemon calls no plugin): it
//! reads the first conflist in `/etc/cni/net.d`, runs the plugins from `/opt/cni/bin`, and
//! keeps libcni's cache in `/var/lib/cni`, with no flag to say otherwise, and passes an empty
//! `CNI_ARGS` and the container id `<namespace>-<id>` (`default-ID`). So each such `ctr` runs
//! in a mount namespace of its own in which overlays over `/etc` and `/var/lib` (their upper
//! layers in the tempdir) hold the test's conflist and that cache, and a tmpfs over `/opt` the
//! test's plugins: the host's `/etc`, `/opt` and `/var/lib` are never written, and an
//! operator's CNI configuration is neither read nor touched. Its stdout and stderr go to a file
//! in the tempdir. `ctr run --rm` sends the CNI DEL and removes the container and its snapshot
//! when the container's task ends.
//!
//! Nothing else lands outside the tempdir either: `ctr` keeps its FIFOs there (`--fifo-dir`),
//! runc its state (`--runc-root`), and with `--cgroup ''` runc puts a container in a cgroup
//! named by its id and removes it with the task (ctr's default, `/default/ID`, leaves
//! `/default` behind). containerd 1.6 puts its shims' sockets in `/run/containerd/s` whatever
//! its configuration says; the shims remove theirs, and a `/run/containerd` the guard made is
//! removed at the end if nothing else is in it.
//!
//! Dropping the guard kills every task (so the foreground `ctr run`s send DEL and remove their
//! containers), waits for them, removes what is left (tasks, containers, the image), then
//! stops the daemon; the tempdir goes last. Errors in `Drop` are printed.
//!
//! Needs root, `containerd`, `ctr`, `runc`, `unshare`, `tar`, `sha256sum`, `/bin/busybox`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Result, TestbedError};
use crate::netns::run_checked;
use crate::{ChildGuard, Netns};

/// The image [`Containerd::import_busybox`] imports.
pub const BUSYBOX_IMAGE: &str = "docker.io/ctpath/busybox:test";
/// Busybox applets linked into the image's `/bin`.
const APPLETS: [&str; 5] = ["sh", "ping", "nc", "sleep", "ip"];
/// Where containerd 1.6 puts its shims' sockets (`s/`) whatever its configuration says.
const RUN_DIR: &str = "/run/containerd";
/// How long the daemon may take to answer, and a container's `ctr run` to end once killed.
const WAIT: Duration = Duration::from_secs(20);

/// The CNI set-up a `ctr run --cni` sees: conflists (file name, text) for `/etc/cni/net.d`
/// and plugins (name in `/opt/cni/bin`, the binary to copy there).
pub struct CniSetup {
    pub conflists: Vec<(String, String)>,
    pub plugins: Vec<(String, PathBuf)>,
}

/// A container started by [`Containerd::run_with_cni`].
struct Running {
    id: String,
    ctr: ChildGuard,
}

/// The test's containerd (see the module docs).
pub struct Containerd {
    node: Netns,
    socket: PathBuf,
    running: Mutex<Vec<Running>>,
    runs: AtomicUsize,
    execs: AtomicUsize,
    daemon: Option<ChildGuard>,
    /// Whether this guard made [`RUN_DIR`] (then it removes what is left of it, if empty).
    made_run_dir: bool,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd in `node`'s namespace and waits until it answers.
    pub fn start(node: &Netns) -> Result<Containerd> {
        let made_run_dir = !Path::new(RUN_DIR).exists();
        let dir = tempfile::tempdir().map_err(|source| io_error("tempdir", source))?;
        let root = dir.path();
        let socket = root.join("containerd.sock");
        let config = format!(
            "version = 2\n\
             root = \"{root}/root\"\n\
             state = \"{root}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \
             \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \
             \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.devmapper\"]\n\
             [grpc]\n  address = \"{socket}\"\n\
             [ttrpc]\n  address = \"{socket}.ttrpc\"\n\
             [debug]\n  address = \"{root}/debug.sock\"\n",
            root = root.display(),
            socket = socket.display(),
        );
        let config_path = root.join("config.toml");
        std::fs::write(&config_path, config).map_err(|source| io_error("config.toml", source))?;
        let log = std::fs::File::create(root.join("containerd.log"))
            .map_err(|source| io_error("containerd.log", source))?;
        // Joined to the node's network namespace only: under `ip netns exec` the remounted
        // `/sys` has no cgroup filesystem, which runc needs.
        let daemon = node.spawn_sharing_mounts(
            &["containerd", "--config", &config_path.to_string_lossy()],
            Stdio::null(),
            Stdio::from(log),
        )?;
        let containerd = Containerd {
            node: node.clone(),
            socket,
            running: Mutex::default(),
            runs: AtomicUsize::new(0),
            execs: AtomicUsize::new(0),
            daemon: Some(daemon),
            made_run_dir,
            dir,
        };
        let deadline = Instant::now() + WAIT;
        while containerd.ctr(&["version"]).is_err() {
            if Instant::now() > deadline {
                return Err(TestbedError::Parse {
                    what: "a containerd answering",
                    command: "ctr version".to_owned(),
                    output: containerd.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(containerd)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr --address SOCKET args...` in the node's namespace.
    pub fn ctr(&self, args: &[&str]) -> Result<Output> {
        let socket = self.socket.to_string_lossy();
        let mut argv = vec!["ctr", "--address", &socket];
        argv.extend(args);
        self.node.exec(&argv)
    }

    /// Builds an OCI image layout with `/bin/busybox` and its applets, and imports it as
    /// [`BUSYBOX_IMAGE`].
    pub fn import_busybox(&self) -> Result<()> {
        let work = self.dir.path().join("image");
        let rootfs = work.join("rootfs/bin");
        let blobs = work.join("layout/blobs/sha256");
        for dir in [&rootfs, &blobs] {
            std::fs::create_dir_all(dir).map_err(|source| io_error("image dirs", source))?;
        }
        std::fs::copy("/bin/busybox", rootfs.join("busybox"))
            .map_err(|source| io_error("/bin/busybox", source))?;
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join(applet))
                .map_err(|source| io_error(applet, source))?;
        }
        let layer_tar = work.join("layer.tar");
        run_checked(
            Command::new("tar")
                .arg("-C")
                .arg(work.join("rootfs"))
                .arg("-cf")
                .arg(&layer_tar)
                .arg("."),
        )?;
        let layer = add_blob(
            &blobs,
            &std::fs::read(&layer_tar).map_err(|source| io_error("layer", source))?,
        )?;
        let config = add_blob(
            &blobs,
            format!(
                r#"{{"architecture":"{}","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
                oci_architecture(),
                layer.0
            )
            .as_bytes(),
        )?;
        let manifest = add_blob(
            &blobs,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
                config.0, config.1, layer.0, layer.1
            )
            .as_bytes(),
        )?;
        let layout = work.join("layout");
        let write = |name: &str, text: String| {
            std::fs::write(layout.join(name), text).map_err(|source| io_error("layout", source))
        };
        write(
            "index.json",
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"annotations":{{"io.containerd.image.name":"{BUSYBOX_IMAGE}","org.opencontainers.image.ref.name":"test"}}}}]}}"#,
                manifest.0, manifest.1
            ),
        )?;
        write("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#.to_owned())?;
        let image_tar = work.join("image.tar");
        run_checked(
            Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&image_tar)
                .arg("."),
        )?;
        self.ctr(&["image", "import", &image_tar.to_string_lossy()])
            .map(drop)
    }

    /// Starts `ctr run --rm --cni IMAGE ID argv...` in the node's namespace, with `cni` as the
    /// CNI set-up it sees (see the module docs); stdout and stderr go to a file read by
    /// [`Containerd::output`]. Returns once `ctr` started (the container comes a moment later).
    pub fn run_with_cni(&self, cni: &CniSetup, id: &str, argv: &[&str]) -> Result<()> {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let base = self.dir.path().join(format!("cni-{n}"));
        let (conf, bin) = (base.join("net.d"), base.join("bin"));
        let overlays = ["etc", "var-lib"].map(|name| {
            (
                base.join(format!("{name}-upper")),
                base.join(format!("{name}-work")),
            )
        });
        for dir in [&conf, &bin]
            .into_iter()
            .chain(overlays.iter().flat_map(|(upper, work)| [upper, work]))
        {
            std::fs::create_dir_all(dir).map_err(|source| io_error("cni dirs", source))?;
        }
        for (name, text) in &cni.conflists {
            std::fs::write(conf.join(name), text).map_err(|source| io_error("conflist", source))?;
        }
        for (name, binary) in &cni.plugins {
            std::fs::copy(binary, bin.join(name)).map_err(|source| io_error("plugin", source))?;
        }
        let overlay = |target: &str, (upper, work): &(PathBuf, PathBuf)| {
            format!(
                "mount -t overlay overlay -o lowerdir={target},upperdir={},workdir={} {target}",
                upper.display(),
                work.display()
            )
        };
        let script = format!(
            "set -e; {etc}; {var_lib}; \
             mkdir -p /etc/cni/net.d; mount --bind {conf} /etc/cni/net.d; \
             mount -t tmpfs tmpfs /opt; mkdir -p /opt/cni/bin; mount --bind {bin} /opt/cni/bin; \
             exec ctr --address \"$0\" run --rm --cni --cgroup '' --fifo-dir {fifo} \
             --runc-root {runc} \"$@\"",
            fifo = self.fifo_dir().display(),
            runc = self.dir.path().join("runc").display(),
            etc = overlay("/etc", &overlays[0]),
            var_lib = overlay("/var/lib", &overlays[1]),
            conf = conf.display(),
            bin = bin.display(),
        );
        let socket = self.socket.to_string_lossy();
        let mut command = vec![
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            &socket,
            BUSYBOX_IMAGE,
            id,
        ];
        command.extend(argv);
        let output = std::fs::File::create(self.output_path(id))
            .map_err(|source| io_error("ctr output", source))?;
        let stderr = output
            .try_clone()
            .map_err(|source| io_error("ctr output", source))?;
        let ctr = self
            .node
            .spawn_with(&command, Stdio::from(output), Stdio::from(stderr))?;
        self.lock().push(Running {
            id: id.to_owned(),
            ctr,
        });
        Ok(())
    }

    /// What container `id`'s `ctr run` printed so far.
    pub fn output(&self, id: &str) -> String {
        std::fs::read_to_string(self.output_path(id)).unwrap_or_default()
    }

    /// Waits until the task of container `id` runs, and returns its pid (in the node's pid
    /// namespace, which is the host's).
    pub fn task_pid(&self, id: &str) -> Result<u32> {
        let deadline = Instant::now() + WAIT;
        loop {
            let output = self.ctr(&["task", "ls"])?;
            let text = String::from_utf8_lossy(&output.stdout);
            let pid = text
                .lines()
                .map(|line| line.split_whitespace().collect::<Vec<_>>())
                .find(|words| words.first() == Some(&id) && words.get(2) == Some(&"RUNNING"))
                .and_then(|words| words.get(1)?.parse().ok());
            if let Some(pid) = pid {
                return Ok(pid);
            }
            if Instant::now() > deadline {
                return Err(TestbedError::Parse {
                    what: "a running task",
                    command: "ctr task ls".to_owned(),
                    output: format!("{text}\n{}", self.output(id)),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `argv` in the running container `id` (`ctr task exec`) and waits for it; its exit
    /// status is in the output, not an error.
    pub fn exec(&self, id: &str, argv: &[&str]) -> Result<Output> {
        let n = self.execs.fetch_add(1, Ordering::Relaxed).to_string();
        let socket = self.socket.to_string_lossy();
        let fifo_dir = self.fifo_dir();
        let mut command = vec![
            "ctr",
            "--address",
            &socket,
            "task",
            "exec",
            "--fifo-dir",
            fifo_dir.to_str().unwrap_or_default(),
            "--exec-id",
            &n,
            id,
        ];
        command.extend(argv);
        self.node.exec_unchecked(&command)
    }

    /// Waits (up to `timeout`) for the `ctr run` of container `id` to end, and returns its
    /// exit status (`None`: still running) and everything it printed.
    pub fn wait(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<(Option<std::process::ExitStatus>, String)> {
        let running = {
            let mut list = self.lock();
            let index = list.iter().position(|running| running.id == id);
            index.map(|index| list.remove(index))
        };
        let Some(mut running) = running else {
            return Ok((None, self.output(id)));
        };
        let status = running.ctr.wait_timeout(timeout)?;
        if status.is_none() {
            self.lock().push(running);
        }
        Ok((status, self.output(id)))
    }

    /// Kills the task of container `id` (its `ctr run` then sends DEL and removes it) and
    /// waits for `ctr run` to end; returns what it printed.
    pub fn stop(&self, id: &str) -> Result<String> {
        // The task may have ended already.
        let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        match self.wait(id, WAIT)? {
            (Some(_), output) => Ok(output),
            (None, output) => Err(TestbedError::Parse {
                what: "ctr run ending after its task was killed",
                command: format!("ctr run {id}"),
                output,
            }),
        }
    }

    /// Where `ctr` makes the FIFOs of a container's stdio (else `/run/containerd/fifo`).
    fn fifo_dir(&self) -> PathBuf {
        self.dir.path().join("fifo")
    }

    fn output_path(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("ctr-run-{id}.out"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let ids: Vec<String> = self
            .lock()
            .iter()
            .map(|running| running.id.clone())
            .collect();
        for id in ids {
            if let Err(error) = self.stop(&id) {
                eprintln!("ctpath-testbed containerd: stopping container {id}: {error}");
            }
        }
        let listed = self.ctr(&["container", "ls", "-q"]);
        for id in listed
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default()
            .split_whitespace()
        {
            let _ = self.ctr(&["task", "delete", "-f", id]);
            if let Err(error) = self.ctr(&["container", "delete", id]) {
                eprintln!("ctpath-testbed containerd: deleting container {id}: {error}");
            }
        }
        let _ = self.ctr(&["image", "rm", BUSYBOX_IMAGE]);
        // Every task is deleted by now, so no shim is left and no container's rootfs mounted.
        drop(self.daemon.take());
        if self.made_run_dir {
            if let Err(error) = remove_empty_dirs(Path::new(RUN_DIR)) {
                eprintln!("ctpath-testbed containerd: removing {RUN_DIR}: {error}");
            }
        }
    }
}

/// Removes `dir` and the directories in it, all of which must be empty of anything else.
fn remove_empty_dirs(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_empty_dirs(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

/// This machine's architecture as OCI images name it (Go's `GOARCH`; `riscv64`, `s390x` are
/// the same in Rust).
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes `bytes` as a blob; returns its digest (`sha256:...`) and size.
fn add_blob(blobs: &Path, bytes: &[u8]) -> Result<(String, usize)> {
    let staged = blobs.join("staged");
    std::fs::write(&staged, bytes).map_err(|source| io_error("blob", source))?;
    let output = run_checked(Command::new("sha256sum").arg(&staged))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let hex = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    std::fs::rename(&staged, blobs.join(&hex)).map_err(|source| io_error("blob", source))?;
    Ok((format!("sha256:{hex}"), bytes.len()))
}

fn io_error(what: &str, source: std::io::Error) -> TestbedError {
    TestbedError::Io {
        what: format!("containerd fixture: {what}"),
        source,
    }
}
