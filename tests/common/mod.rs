//! Shared helpers for the tests that run against harness hosts (shared/harness/nodes.sh):
//! systemd-nspawn machines with a real sshd on a private bridge.
//!
//! These tests are `#[ignore]`d in a plain `cargo test`; `scripts/test.sh` brings the hosts up
//! and runs them with `--include-ignored`. They change hosts, so they take a global lock and run
//! one at a time.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use kubeforge::wait::Poll;

static LOCK: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Harness {
    pub dir: PathBuf,
    pub nodes_sh: PathBuf,
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Harness {
    pub fn get() -> Harness {
        let dir =
            PathBuf::from(std::env::var("HARNESS_DIR").unwrap_or_else(|_| "/tmp/harness".into()));
        let shared = std::env::var("KUBEFORGE_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
        let nodes_sh = shared.join("harness/nodes.sh");
        assert!(
            nodes_sh.exists(),
            "{} not found: set KUBEFORGE_SHARED to the shared/ directory",
            nodes_sh.display()
        );
        Harness { dir, nodes_sh }
    }

    /// Makes sure nodes 1..=n run (starting missing ones; nodes.sh up is idempotent).
    pub fn up(&self, n: usize) -> &Self {
        let running =
            (1..=n).all(|i| self.dir.join(format!("state/node{i}/pid")).exists() && self.ssh_ok(i));
        if !running {
            let out = Command::new("bash")
                .arg(&self.nodes_sh)
                .args(["up", &n.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "nodes.sh up {n} failed:\n{}",
                text(&out.stderr)
            );
        }
        self
    }

    fn ssh_ok(&self, i: usize) -> bool {
        self.nodes(&["ssh", &i.to_string(), "true"])
            .status
            .success()
    }

    /// Runs nodes.sh with arguments.
    pub fn nodes(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(&self.nodes_sh)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command on node i as root over the harness's own ssh client; must succeed.
    pub fn sh(&self, i: usize, cmd: &str) -> String {
        let out = self.nodes(&["ssh", &i.to_string(), cmd]);
        assert!(
            out.status.success(),
            "node{i}: `{cmd}` failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs a command inside node i without the network (nsenter).
    pub fn exec(&self, i: usize, cmd: &str) -> Output {
        self.nodes(&["exec", &i.to_string(), "sh", "-c", cmd])
    }

    pub fn ip(&self, i: usize) -> String {
        format!("10.123.0.{}", 10 + i)
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("state/known_hosts")
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("state/ssh_config")
    }
}

/// An inventory for harness nodes: `hosts` are (node index, role). `ssh` is the body of
/// spec.ssh (indented by 4), `extra` more spec lines (indented by 2).
pub fn inventory(
    dir: &Path,
    name: &str,
    version: &str,
    hosts: &[(usize, &str)],
    ssh: &str,
    extra: &str,
) -> PathBuf {
    let mut s = format!(
        "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: {name}}}\nspec:\n  kubernetes: {{version: {version}}}\n  ssh:\n{ssh}  hosts:\n"
    );
    for (i, role) in hosts {
        s.push_str(&format!(
            "    - {{name: node{i}, address: 10.123.0.{}, role: {role}}}\n",
            10 + i
        ));
    }
    s.push_str(extra);
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, s).unwrap();
    p
}

/// Runs the kubeforge binary.
pub fn kubeforge(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubeforge"));
    c.args(args)
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("KUBEFORGE_FILE");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Restores a harness link when dropped (even when the test fails).
pub struct Healer<'a>(pub &'a Harness, pub usize);

impl Drop for Healer<'_> {
    fn drop(&mut self) {
        let _ = self.0.nodes(&["heal", &self.1.to_string()]);
    }
}

/// A release manifest for `version` made from the harness mirror's index.json (its doubles of
/// kubeadm/kubelet/kubectl/crictl and Debian's containerd, runc and CNI plugins) by
/// scripts/harness-inventory.sh, the script the README gives newcomers.
pub fn harness_manifest(h: &Harness, dir: &Path, version: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/harness-inventory.sh"))
        .args(["-v", version, "-n", "unused", "-o"])
        .arg(dir)
        .env("HARNESS_DIR", &h.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "harness-inventory.sh: {}",
        text(&out.stderr)
    );
    dir.join(format!("manifest-{version}.yaml"))
}

/// An inventory for a cluster on harness nodes, using the harness mirror and a manifest made
/// from it. `hosts`: (node index, role).
pub fn cluster_inventory(
    h: &Harness,
    dir: &Path,
    name: &str,
    version: &str,
    hosts: &[(usize, &str)],
    extra: &str,
) -> PathBuf {
    let manifest = harness_manifest(h, dir, version);
    let mut s = format!(
        "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: {name}}}\nspec:\n  kubernetes: {{version: {version}}}\n  ssh: {{keyPath: {key}, knownHosts: {kh}, config: none}}\n  artifacts:\n    mirror: http://10.123.0.1:8080/\n    manifest: {m}\n    cacheDir: {cache}\n{images}{extra}  hosts:\n",
        key = h.key().display(),
        kh = h.known_hosts().display(),
        m = manifest.display(),
        cache = dir.join("cache").display(),
        // the doubles run no images, and the release's real images cannot be fetched here:
        // push mode has tests of its own (images_harness.rs), with images built there, whose
        // `extra` gives spec.artifacts.images itself
        images = if extra.contains("    images:") {
            ""
        } else {
            "    images: {mode: pull}\n"
        },
    );
    for (i, role) in hosts {
        s.push_str(&format!(
            "    - {{name: node{i}, address: 10.123.0.{}, role: {role}}}\n",
            10 + i
        ));
    }
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, s).unwrap();
    p
}

impl Harness {
    /// Fresh hosts: down, then up n (clean disks, empty store).
    pub fn fresh(&self, n: usize) -> &Self {
        let _ = self.nodes(&["down"]);
        std::fs::create_dir_all(self.dir.join("debs")).unwrap();
        let out = Command::new("bash")
            .arg(&self.nodes_sh)
            .args(["up", &n.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nodes.sh up {n} failed:\n{}",
            text(&out.stderr)
        );
        self
    }
}

static CLEAN: std::sync::Once = std::sync::Once::new();

impl Harness {
    /// Hosts that carry nothing from other test binaries: fresh once per test process, then
    /// kept (and restarted when needed) for the tests that follow.
    pub fn clean(&self, n: usize) -> &Self {
        CLEAN.call_once(|| {
            self.fresh(n);
        });
        self.up(n)
    }
}

/// How often `wait_for` checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The blocking twin of `kubeforge::wait::poll_until` for the tests (it runs that very helper
/// on a runtime of its own): checks `check` every `interval` until it returns `Ready`, returns
/// `Abort`, or `deadline` has passed since the first check. `Pending(why)` says what the check
/// saw; the last one is in the error, which reads "gave up waiting for {what} after Ns: {why}".
/// Not for use inside an async test: call `poll_until` there.
pub fn poll_for<T, E>(
    what: &str,
    deadline: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Poll<T, E>,
) -> Result<T, kubeforge::wait::WaitError<E>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(kubeforge::wait::poll_until(
            deadline,
            interval,
            what,
            || std::future::ready(check()),
        ))
}

/// Waits until `check` returns `Ok` (checked every `POLL_INTERVAL`; `Err(why)` means "not yet",
/// and why) and returns its value; panics with what it waited for and what it last saw when
/// `deadline` passes first.
pub fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    poll_for::<T, String>(what, deadline, POLL_INTERVAL, || match check() {
        Ok(v) => Poll::Ready(v),
        Err(why) => Poll::Pending(why),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

impl Harness {
    /// Waits until something on node i listens on TCP `port` (as `ss` shows it: the socket
    /// table the facts probe reads in /proc/net/tcp{,6}).
    pub fn wait_listening(&self, i: usize, port: u16, deadline: Duration) {
        wait_for(&format!("a listener on node{i}:{port}"), deadline, || {
            let out = self.exec(i, &format!("ss -Hltn 'sport = :{port}'"));
            let seen = text(&out.stdout);
            if out.status.success() && seen.contains("LISTEN") {
                Ok(())
            } else {
                Err(format!("ss: {}{}", seen.trim(), text(&out.stderr).trim()))
            }
        })
    }
}

pub mod registry;
