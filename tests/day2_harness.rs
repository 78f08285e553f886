//! Day 2 on harness hosts (the Kubernetes doubles model versions, drains, PDBs and etcd
//! quorum): upgrades, adding and removing nodes, reset, backup.

mod common;

use common::{Harness, Poll, cluster_inventory, kubeforge, poll_for, serial, text, wait_for};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

fn apply(inv: &Path) -> std::process::Output {
    kubeforge(&["apply", "-f", inv.to_str().unwrap(), "--yes"], &[])
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// An inventory for `version`, with short drains so faults show quickly.
fn inventory(
    h: &Harness,
    dir: &Path,
    name: &str,
    version: &str,
    hosts: &[(usize, &str)],
) -> PathBuf {
    cluster_inventory(
        h,
        dir,
        name,
        version,
        hosts,
        "  options: {drain: {gracePeriod: 5s, timeout: 30s}}\n",
    )
}

/// Switches an inventory to another release (and its manifest).
fn set_version(h: &Harness, inv: &Path, version: &str) {
    let dir = inv.parent().unwrap();
    let m = common::harness_manifest(h, dir, version);
    let text = std::fs::read_to_string(inv).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("  kubernetes: {version: ") {
                format!("  kubernetes: {{version: {version}}}")
            } else if l.starts_with("    manifest: ") {
                format!("    manifest: {}", m.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(inv, text + "\n").unwrap();
}

/// What must not change on a host that kubeforge should leave alone: file times of everything
/// it manages and the start times of the services.
fn fingerprint(h: &Harness, i: usize) -> String {
    h.sh(
        i,
        "stat -c '%n %Y' /etc/kubeforge/* /etc/kubeforge/installed/* /etc/containerd/config.toml /etc/systemd/system/kubelet.service* /etc/hosts /etc/haproxy/haproxy.cfg /usr/local/bin/kube* /var/lib/kubelet/config.yaml 2>/dev/null; \
         systemctl show -p ActiveEnterTimestampMonotonic containerd kubelet haproxy; \
         systemctl list-units 'kubedouble-*' --plain --no-legend | awk '{print $1}' | xargs -r systemctl show -p ActiveEnterTimestampMonotonic",
    )
}

/// A remote loop on a worker: every 0.5 s, the API's /readyz through the node's endpoint, and
/// every node's kubelet version. Returns the child and where its output goes.
fn watch(h: &Harness, worker: usize) -> (std::process::Child, tempfile::NamedTempFile) {
    h.sh(1, "cat /etc/kubernetes/admin.conf > /root/admin.conf");
    let admin = h.sh(1, "cat /root/admin.conf");
    let f = tempfile::NamedTempFile::new().unwrap();
    h.sh(
        worker,
        &format!("cat > /root/watch.conf <<'EOF'\n{admin}EOF"),
    );
    let child = std::process::Command::new("ssh")
        .args(["-F", h.ssh_config().to_str().unwrap(), &format!("node{worker}")])
        .arg(
            "while true; do t=$(date +%s.%N); r=$(kubectl --kubeconfig /etc/kubernetes/kubelet.conf get --raw /readyz --request-timeout=4s 2>&1 | head -c 200 | tr '\\n' ' '); \
             v=$(kubectl --kubeconfig /root/watch.conf get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.nodeInfo.kubeletVersion} {end}' --request-timeout=4s 2>/dev/null); \
             echo \"$t|$r|$v\"; sleep 0.5; done",
        )
        .stdout(std::fs::File::create(f.path()).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, f)
}

/// The complete lines of a watch's log (time, /readyz answer, node=version pairs); a line still
/// being written is left out.
fn samples(log: &Path) -> Vec<(f64, String, String)> {
    let lines = std::fs::read_to_string(log).unwrap();
    let complete = match lines.rfind('\n') {
        Some(end) => &lines[..end],
        None => "",
    };
    complete
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, '|');
            Some((
                p.next()?.parse().ok()?,
                p.next()?.trim().to_string(),
                p.next().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn upgrades_across_a_minor_version_in_order_with_the_api_answering() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(5);
    let dir = tempfile::tempdir().unwrap();
    let hosts = [
        (1, "control-plane"),
        (2, "control-plane"),
        (3, "control-plane"),
        (4, "worker"),
        (5, "worker"),
    ];
    let inv = inventory(&h, dir.path(), "upg", "1.32.9", &hosts);
    ok(&apply(&inv));

    // refused before any host is touched: a skipped minor release
    let before: Vec<String> = (1..=5).map(|i| fingerprint(&h, i)).collect();
    set_version(&h, &inv, "1.34.1");
    let out = apply(&inv);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("an upgrade from 1.32.9 to 1.34.1 skips a minor release; upgrade one minor at a time (next: 1.33.x)"),
        "{}",
        text(&out.stderr)
    );
    let after: Vec<String> = (1..=5).map(|i| fingerprint(&h, i)).collect();
    assert_eq!(before, after, "a refused upgrade touches no host");

    // 1.32.9 -> 1.33.5, watched from a worker
    set_version(&h, &inv, "1.33.5");
    let (mut child, log) = watch(&h, 5);
    // the watch answers before the upgrade starts: a sample with every node on 1.32.9
    wait_for(
        "a first sample of node5's watch, every node on v1.32.9",
        Duration::from_secs(30),
        || match samples(log.path()).last() {
            Some(s) if s.2.matches("=v1.32.9").count() == 5 => Ok(()),
            Some(s) => Err(format!("last sample: {s:?}")),
            None => Err("no sample yet".into()),
        },
    );
    let out = apply(&inv);
    let finished = unix_now();
    // ... and still after it: a sample taken after kubeforge finished, every node on 1.33.5
    // (when the upgrade failed, `ok` below says so without this wait)
    let watched = if out.status.success() {
        poll_for::<_, String>(
            "a sample of node5's watch taken after the upgrade, every node on v1.33.5",
            Duration::from_secs(60),
            common::POLL_INTERVAL,
            || match samples(log.path()).last() {
                Some(s) if s.0 > finished && s.2.matches("=v1.33.5").count() == 5 => {
                    Poll::Ready(())
                }
                Some(s) => Poll::Pending(format!("last sample: {s:?}")),
                None => Poll::Pending("no sample".into()),
            },
        )
    } else {
        Ok(())
    };
    let _ = child.kill();
    let _ = child.wait();
    ok(&out);
    watched.unwrap_or_else(|e| panic!("{e}"));
    let samples = samples(log.path());
    assert!(
        samples.len() > 40,
        "the watch ran ({} samples)",
        samples.len()
    );
    let failures: Vec<&(f64, String, String)> = samples.iter().filter(|s| s.1 != "ok").collect();
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("API gap at {:.1}: {} (nodes: {})", f.0, f.1, f.2.trim());
        }
        eprintln!("kubeforge's output:\n{}", text(&out.stderr));
    }
    assert!(
        failures.is_empty(),
        "{} of {} /readyz polls failed during the upgrade",
        failures.len(),
        samples.len()
    );
    // the order, from the versions the nodes reported
    let mut upgraded_at = std::collections::BTreeMap::new();
    for (t, _, v) in &samples {
        for pair in v.split_whitespace() {
            if let Some((node, ver)) = pair.split_once('=')
                && ver == "v1.33.5"
            {
                upgraded_at.entry(node.to_string()).or_insert(*t);
            }
        }
    }
    let at = |n: &str| {
        *upgraded_at
            .get(n)
            .unwrap_or_else(|| panic!("{n} never reported 1.33.5: {upgraded_at:?}"))
    };
    assert!(
        at("node1") < at("node2") && at("node2") < at("node3"),
        "control planes one at a time, the first first: {upgraded_at:?}"
    );
    assert!(
        at("node3") < at("node4") && at("node3") < at("node5"),
        "workers after the control planes: {upgraded_at:?}"
    );
    assert!(
        (at("node4") - at("node5")).abs() > 1.0,
        "workers one at a time (10% of 2): {upgraded_at:?}"
    );
    assert_eq!(
        h.sh(
            1,
            &format!("{KUBECTL} version -o json | grep -c '\"gitVersion\": \"v1.33.5\"'")
        )
        .trim(),
        "2"
    );
    assert!(
        !h.sh(1, &format!("{KUBECTL} get nodes"))
            .contains("SchedulingDisabled")
    );

    // a downgrade is refused
    let before: Vec<String> = (1..=5).map(|i| fingerprint(&h, i)).collect();
    set_version(&h, &inv, "1.33.4");
    let out = apply(&inv);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Kubernetes 1.33.5 cannot be downgraded to 1.33.4"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        before,
        (1..=5).map(|i| fingerprint(&h, i)).collect::<Vec<_>>()
    );

    // a worker dies during the next upgrade: the run halts naming it; after a restart, a re-run completes
    let containerd_since = |i: usize| {
        h.sh(
            i,
            "systemctl show -p ActiveEnterTimestampMonotonic containerd; grep -o 'registry.k8s.io/pause[:@][^\"]*' /etc/containerd/config.toml",
        )
    };
    // the sandbox image as kubeforge configures it: the release's pause pinned by digest
    // (3.10 in 1.33, 3.10.1 in 1.34)
    let sandbox = |release: &str| -> String {
        let m = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("images/{release}.yaml")),
        )
        .unwrap();
        let digest = m
            .lines()
            .find_map(|l| l.trim().strip_prefix("pause: registry.k8s.io/pause:"))
            .and_then(|r| r.split_once('@'))
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| panic!("no pinned pause image in images/{release}.yaml"));
        format!("registry.k8s.io/pause@{digest}\n")
    };
    let node5_before = containerd_since(5);
    assert!(node5_before.contains(&sandbox("1.33.5")), "{node5_before}");
    set_version(&h, &inv, "1.34.1");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .args(["apply", "-f", inv.to_str().unwrap(), "--yes"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("node4  upgrade-worker") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(300))
        .expect("node4's upgrade started");
    // mid-upgrade: node4 is cordoned (its drain follows at once) and the run goes on
    let cordoned = poll_for::<_, String>(
        "node4 to be cordoned by its upgrade",
        Duration::from_secs(300),
        common::POLL_INTERVAL,
        || {
            if let Some(st) = child.try_wait().unwrap() {
                return Poll::Abort(format!(
                    "kubeforge ended ({st}) before node4 was seen cordoned"
                ));
            }
            let out = h.nodes(&[
                "ssh",
                "1",
                &format!("{KUBECTL} get node node4 -o jsonpath='{{.spec.unschedulable}}'"),
            ]);
            let seen = text(&out.stdout);
            if out.status.success() && seen.trim() == "true" {
                Poll::Ready(())
            } else {
                Poll::Pending(format!(
                    "spec.unschedulable: {seen:?} {}",
                    text(&out.stderr).trim()
                ))
            }
        },
    );
    if let Err(e) = cordoned {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{e}:\n{}", reader.join().unwrap());
    }
    assert!(h.nodes(&["kill", "4"]).status.success());
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("apply stopped in step upgrade-worker"),
        "{log}"
    );
    assert!(
        log.contains("  - node4: step upgrade-worker: node4: "),
        "names the node: {log}"
    );
    assert!(
        log.contains("the node is left cordoned: it is not healthy"),
        "{log}"
    );
    assert_eq!(
        h.sh(
            1,
            &format!("{KUBECTL} get node node4 -o jsonpath='{{.spec.unschedulable}}'")
        )
        .trim(),
        "true",
        "node4 is left cordoned"
    );
    // 1.34 changes the sandbox image: a node not yet upgraded keeps its containerd running,
    // with its old config (it changes after that node's own drain, not on every node at once)
    assert_eq!(
        containerd_since(5),
        node5_before,
        "node5's containerd untouched before its turn"
    );
    assert!(h.nodes(&["start", "4"]).status.success());
    let out = apply(&inv);
    ok(&out);
    let versions = h.sh(
        1,
        &format!("{KUBECTL} get nodes -o jsonpath='{{.items[*].status.nodeInfo.kubeletVersion}}'"),
    );
    assert_eq!(versions.trim(), "v1.34.1 v1.34.1 v1.34.1 v1.34.1 v1.34.1");
    let node5_after = containerd_since(5);
    assert!(node5_after.contains(&sandbox("1.34.1")), "{node5_after}");
    assert_ne!(sandbox("1.33.5"), sandbox("1.34.1"));
    assert_ne!(
        node5_after.lines().next(),
        node5_before.lines().next(),
        "restarted in its own upgrade"
    );
    assert!(
        !h.sh(1, &format!("{KUBECTL} get nodes"))
            .contains("SchedulingDisabled"),
        "node4 uncordoned"
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn adding_and_removing_nodes() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(5);
    let dir = tempfile::tempdir().unwrap();
    let four = [
        (1, "control-plane"),
        (2, "control-plane"),
        (3, "control-plane"),
        (4, "worker"),
    ];
    let inv = inventory(&h, dir.path(), "grow", "1.33.5", &four);
    ok(&apply(&inv));

    // add a worker: only the new host changes
    let before: Vec<String> = (1..=4).map(|i| fingerprint(&h, i)).collect();
    let five = [
        (1, "control-plane"),
        (2, "control-plane"),
        (3, "control-plane"),
        (4, "worker"),
        (5, "worker"),
    ];
    let inv5 = inventory(&h, dir.path(), "grow", "1.33.5", &five);
    let plan = kubeforge(&["plan", "-f", inv5.to_str().unwrap(), "-o", "json"], &[]);
    ok(&plan);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    for a in plan["actions"].as_array().unwrap() {
        assert!(
            a["host"] == "node5" || a["host"].is_null(),
            "only node5 gets actions: {a}"
        );
    }
    ok(&apply(&inv5));
    let after: Vec<String> = (1..=4).map(|i| fingerprint(&h, i)).collect();
    for i in 0..4 {
        assert_eq!(
            before[i],
            after[i],
            "node{} changed while node5 joined",
            i + 1
        );
    }
    assert!(
        h.sh(1, &format!("{KUBECTL} get node node5"))
            .contains("Ready")
    );

    // a PodDisruptionBudget blocks the drain: the message names the pod, nothing is removed
    h.sh(
        1,
        &format!(
            "cat > /root/web.yaml <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: node5}}
      containers: [{{name: web, image: registry.example/web:1}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: web, namespace: default}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: web}}}}
EOF
{KUBECTL} apply -f /root/web.yaml >/dev/null"
        ),
    );
    let pod = wait_for(
        "the web pod to run on node5",
        Duration::from_secs(60),
        || {
            let p = h.sh(
                1,
                &format!(
                    "{KUBECTL} get pods -l app=web --field-selector=status.phase=Running -o name"
                ),
            );
            match p.lines().next() {
                Some(p) => Ok(p.trim_start_matches("pod/").to_string()),
                None => Err("no Running pod app=web".into()),
            }
        },
    );
    let out = kubeforge(
        &[
            "node",
            "remove",
            "node5",
            "-f",
            inv5.to_str().unwrap(),
            "--yes",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("node5: node5: drain did not finish within 30s: pod default/{pod} cannot be evicted (its PodDisruptionBudget allows no disruption); nothing was removed")),
        "{err}"
    );
    let n5 = h.sh(1, &format!("{KUBECTL} get node node5"));
    assert!(
        n5.contains("Ready") && !n5.contains("SchedulingDisabled"),
        "node5 stays, uncordoned: {n5}"
    );
    h.sh(1, &format!("{KUBECTL} delete pdb web >/dev/null"));

    // remove the worker
    let out = kubeforge(
        &[
            "node",
            "remove",
            "node5",
            "-f",
            inv5.to_str().unwrap(),
            "--yes",
        ],
        &[],
    );
    ok(&out);
    assert!(
        !h.sh(1, &format!("{KUBECTL} get nodes -o name"))
            .contains("node5")
    );
    assert_eq!(h.sh(5, "ls /etc/kubernetes /var/lib/kubelet 2>/dev/null | wc -l; systemctl is-active kubelet; true").split_whitespace().collect::<Vec<_>>(), ["0", "inactive"]);

    // with one of three control planes down, removing another is refused
    let members = || -> Vec<String> {
        let m = h.sh(1, "cat /var/lib/kube-double/clusters/*/members.json");
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(members().len(), 3);
    assert!(h.nodes(&["kill", "3"]).status.success());
    let out = kubeforge(
        &[
            "node",
            "remove",
            "node2",
            "-f",
            inv.to_str().unwrap(),
            "--yes",
            "--connect-timeout",
            "3",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("removing node2 would leave etcd with 1 healthy of 2 members, below its quorum of 2 (node3 down); bring it back first"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(members().len(), 3, "nothing removed");
    assert!(
        h.sh(1, &format!("{KUBECTL} get nodes -o name"))
            .contains("node2")
    );

    // the dead control plane itself: its removal must be explicit (--force); it leaves the
    // cluster and etcd (two of three members answer), and its skipped cleanup is reported
    let remove3 = |force: bool| {
        let mut args = vec![
            "node",
            "remove",
            "node3",
            "-f",
            inv.to_str().unwrap(),
            "--yes",
            "--connect-timeout",
            "3",
        ];
        if force {
            args.push("--force");
        }
        kubeforge(&args, &[])
    };
    let out = remove3(false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("node3's etcd member does not answer: removing a dead member must be explicit; run again with --force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(members().len(), 3, "nothing removed");
    let out = remove3(true);
    ok(&out);
    assert!(
        text(&out.stderr).contains("node3 is unreachable: it was removed from the cluster, but its own cleanup (kubeadm reset) was skipped"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(members(), vec!["node1", "node2"]);
    assert!(
        !h.sh(1, &format!("{KUBECTL} get nodes -o name"))
            .contains("node3")
    );

    // back, with its old files: apply resets it and joins it again; then removing a control
    // plane from three is allowed
    assert!(h.nodes(&["start", "3"]).status.success());
    let inv4 = inventory(&h, dir.path(), "grow", "1.33.5", &four);
    let plan = kubeforge(&["plan", "-f", inv4.to_str().unwrap()], &[]);
    ok(&plan);
    assert!(
        text(&plan.stdout)
            .contains("reset node3: an interrupted join left kubeadm's files, but it is no node"),
        "{}",
        text(&plan.stdout)
    );
    ok(&apply(&inv4));
    assert_eq!(members().len(), 3);
    // (through apply --prune: node3 is no longer in the inventory, and its etcd member's health
    // is read through node3 itself)
    let three = [(1, "control-plane"), (2, "control-plane"), (4, "worker")];
    let inv3 = inventory(&h, dir.path(), "grow", "1.33.5", &three);
    let out = kubeforge(
        &["apply", "-f", inv3.to_str().unwrap(), "--yes", "--prune"],
        &[],
    );
    ok(&out);
    assert!(
        text(&out.stderr).contains("pruning nodes the inventory no longer lists: node3"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(members(), vec!["node1", "node2"]);
    assert!(
        !h.sh(1, &format!("{KUBECTL} get nodes -o name"))
            .contains("node3")
    );
    assert_eq!(
        h.sh(3, "ls /etc/kubernetes 2>/dev/null | wc -l").trim(),
        "0"
    );
    assert_eq!(
        h.sh(1, &format!("{KUBECTL} get --raw /readyz")).trim(),
        "ok"
    );

    // a worker deleted from the inventory: apply only warns; apply --prune removes it
    let two = [(1, "control-plane"), (2, "control-plane")];
    let inv2 = inventory(&h, dir.path(), "grow", "1.33.5", &two);
    let out = apply(&inv2);
    ok(&out);
    assert!(
        text(&out.stderr).contains("node node4 is in the cluster but not in the inventory; it is left alone (removal is explicit)"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        h.sh(1, &format!("{KUBECTL} get nodes -o name"))
            .contains("node4")
    );
    let out = kubeforge(
        &["apply", "-f", inv2.to_str().unwrap(), "--yes", "--prune"],
        &[],
    );
    ok(&out);
    assert!(
        text(&out.stderr).contains("pruning nodes the inventory no longer lists: node4"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !h.sh(1, &format!("{KUBECTL} get nodes -o name"))
            .contains("node4")
    );
    assert_eq!(
        h.sh(4, "ls /etc/kubernetes 2>/dev/null | wc -l").trim(),
        "0"
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn backup_then_reset_then_a_fresh_apply() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(2);
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(
        &h,
        dir.path(),
        "bk",
        "1.33.5",
        &[(1, "control-plane"), (2, "worker")],
    );
    ok(&apply(&inv));

    // certificates: renewed on the control plane, after putting back a manifest that an
    // interrupted earlier renewal left aside
    let serial = || {
        h.sh(
            1,
            "openssl x509 -serial -noout -in /etc/kubernetes/pki/apiserver.crt",
        )
    };
    let before = serial();
    h.sh(
        1,
        "d=/etc/kubernetes/manifests.kubeforge-restart; mkdir -p $d && mv /etc/kubernetes/manifests/kube-scheduler.yaml $d/",
    );
    let out = kubeforge(&["certs", "renew", "-f", inv.to_str().unwrap()], &[]);
    ok(&out);
    assert!(
        text(&out.stderr).contains("node1: renewed; soonest expiry in 36"),
        "{}",
        text(&out.stderr)
    );
    assert_ne!(serial(), before, "apiserver.crt was renewed");
    assert_eq!(
        h.sh(
            1,
            "ls /etc/kubernetes/manifests; ls -d /etc/kubernetes/manifests.* 2>/dev/null; true"
        )
        .split_whitespace()
        .collect::<Vec<_>>(),
        [
            "etcd.yaml",
            "kube-apiserver.yaml",
            "kube-controller-manager.yaml",
            "kube-scheduler.yaml"
        ]
    );
    let status = kubeforge(&["status", "-f", inv.to_str().unwrap(), "-o", "json"], &[]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let days = status["hosts"][0]["cert_expiry_days"].as_u64().unwrap();
    assert!(days >= 360, "status shows the renewed expiry: {days}");

    let out = kubeforge(
        &[
            "backup",
            "-f",
            inv.to_str().unwrap(),
            "-o",
            dir.path().join("b").to_str().unwrap(),
        ],
        &[],
    );
    ok(&out);
    let bdir = PathBuf::from(text(&out.stdout).trim());
    assert!(
        bdir.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("bk-20"),
        "{}",
        bdir.display()
    );
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&bdir)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stdout));
    assert_eq!(text(&check.stdout).matches(": OK").count(), 3);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bdir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let listed = std::process::Command::new("tar")
        .arg("tzf")
        .arg(bdir.join("etc-kubernetes.tar.gz"))
        .output()
        .unwrap();
    let listed = text(&listed.stdout);
    for f in [
        "pki/ca.key",
        "pki/etcd/ca.crt",
        "admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "kubelet.conf",
    ] {
        assert!(listed.lines().any(|l| l == f), "{f} in:\n{listed}");
    }
    assert!(
        std::fs::read_to_string(bdir.join("kubeadm-config.yaml"))
            .unwrap()
            .contains("kubernetesVersion: v1.33.5")
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bdir.join("backup.json")).unwrap()).unwrap();
    assert_eq!(meta["cluster"], "bk");
    // the etcd double serves etcd's snapshot API: the snapshot came through it, streamed to
    // disk, and ends with etcd's sha256 of the database before it
    assert_eq!(meta["etcd"], "etcd-snapshot", "{meta}");
    let db = std::fs::read(bdir.join("etcd-snapshot.db")).unwrap();
    assert_eq!(db.len() % 512, 32, "{} bytes", db.len());
    {
        use sha2::Digest;
        let (data, trailer) = db.split_at(db.len() - 32);
        assert_eq!(sha2::Sha256::digest(data).as_slice(), trailer);
    }
    assert!(
        text(&out.stderr).contains("etcd snapshot:"),
        "progress is shown"
    );

    // reset: typed confirmation is required without --yes
    let out = kubeforge(&["reset", "-f", inv.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("confirm on a terminal, or pass --yes"));
    let out = kubeforge(&["reset", "-f", inv.to_str().unwrap(), "--yes"], &[]);
    ok(&out);
    for i in 1..=2 {
        assert_eq!(h.sh(i, "find /etc/kubernetes /var/lib/etcd /etc/cni/net.d -mindepth 1 2>/dev/null | wc -l; systemctl is-active kubelet; true").split_whitespace().collect::<Vec<_>>(), ["0", "inactive"]);
    }
    let st = kubeforge(&["status", "-f", inv.to_str().unwrap(), "-o", "json"], &[]);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    for host in st["hosts"].as_array().unwrap() {
        assert!(
            host["facts"]["membership"]["kubeconfigs"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
    // a fresh apply works on the reset hosts
    let out = apply(&inv);
    ok(&out);
    assert!(text(&out.stdout).contains("Cluster bk is ready"));
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn certs_renew_waits_for_each_control_plane_itself_not_the_endpoint() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(2);
    let dir = tempfile::tempdir().unwrap();
    // an external endpoint that is node1: through admin.conf, node2 always looks ready
    let inv = cluster_inventory(
        &h,
        dir.path(),
        "own",
        "1.33.5",
        &[(1, "control-plane"), (2, "control-plane")],
        "  controlPlane: {loadBalancer: external, endpoint: {host: 10.123.0.11, port: 6443}}\n",
    );
    ok(&apply(&inv));
    // on node2, the renewal's restart sets the static pods' manifests aside: the API server's is
    // taken out of that set (or out of manifests/, whichever holds it first), so the renewal puts
    // back all but it; it comes back 15 s later. Whatever the order, node2's own API server is
    // down from the restart until /root/released, while node1 (the endpoint) answers throughout.
    h.sh(
        2,
        "rm -f /root/held /root/released; cat > /root/hold.sh <<'EOF'\nd=/etc/kubernetes/manifests.kubeforge-restart\nuntil [ -d $d ]; do sleep 0.05; done\nuntil mv $d/kube-apiserver.yaml /root/kube-apiserver.yaml 2>/dev/null || mv /etc/kubernetes/manifests/kube-apiserver.yaml /root/kube-apiserver.yaml 2>/dev/null; do sleep 0.01; done\ndate +%s.%N > /root/held\nsleep 15\nmv /root/kube-apiserver.yaml /etc/kubernetes/manifests/\ndate +%s.%N > /root/released\nEOF\nsetsid nohup sh /root/hold.sh </dev/null >/dev/null 2>&1 &",
    );
    let out = kubeforge(&["certs", "renew", "-f", inv.to_str().unwrap()], &[]);
    let finished = unix_now();
    // the hosts stay usable whatever the outcome: wait for the manifest to be back (a renewal
    // that failed before node2 leaves the hold script waiting: it is stopped, and the failure
    // shown)
    let released = poll_for::<_, String>(
        "node2's hold script to put the API server's manifest back (/root/released)",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || match h.exec(2, "test -e /root/released").status.code() {
            Some(0) => Poll::Ready(()),
            _ => Poll::Pending("not yet".into()),
        },
    );
    if let Err(e) = released {
        h.sh(2, "pkill -f /root/hold.sh; [ -e /root/kube-apiserver.yaml ] && mv /root/kube-apiserver.yaml /etc/kubernetes/manifests/; true");
        panic!("{e}; kubeforge said:\n{}", text(&out.stderr));
    }
    ok(&out);
    let stamp = |f: &str| -> f64 { h.sh(2, &format!("cat {f}")).trim().parse().unwrap() };
    let released = stamp("/root/released");
    assert!(
        finished > released,
        "kubeforge finished node2's renewal while its own API server was down ({:.1}s before it came back):\n{}",
        released - finished,
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("node2: renewed"),
        "{}",
        text(&out.stderr)
    );
    h.sh(2, "rm -f /root/hold.sh /root/held /root/released");
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn an_upgrade_pulls_the_new_releases_images_before_kubeadm_upgrade() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(2);
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(
        &h,
        dir.path(),
        "pull",
        "1.32.9",
        &[(1, "control-plane"), (2, "worker")],
    );
    ok(&apply(&inv));
    // what kubeadm is asked to do, in order, on each node
    for i in 1..=2 {
        h.sh(
            i,
            "mkdir -p /usr/local/sbin && printf '#!/bin/sh\\necho \"$*\" >> /root/kubeadm-args.log\\nexec /usr/local/bin/kubeadm \"$@\"\\n' > /usr/local/sbin/kubeadm && chmod 755 /usr/local/sbin/kubeadm && rm -f /root/kubeadm-args.log",
        );
    }
    set_version(&h, &inv, "1.33.5");
    let plan = kubeforge(&["plan", "-f", inv.to_str().unwrap()], &[]);
    assert!(
        text(&plan.stdout)
            .contains("pre-pull images of v1.33.5, cordon, drain, kubeadm upgrade apply"),
        "{}",
        text(&plan.stdout)
    );
    let out = apply(&inv);
    ok(&out);
    assert!(
        text(&out.stderr).contains("node1: pre-pull images of v1.33.5"),
        "{}",
        text(&out.stderr)
    );
    for (i, upgrade) in [(1, "upgrade apply v1.33.5"), (2, "upgrade node")] {
        let log = h.sh(i, "cat /root/kubeadm-args.log");
        let at = |what: &str| {
            log.lines()
                .position(|l| l.starts_with(what))
                .unwrap_or_else(|| panic!("node{i}: no `kubeadm {what}`:\n{log}"))
        };
        assert!(
            at("config images pull --kubernetes-version v1.33.5") < at(upgrade),
            "node{i}: the images first:\n{log}"
        );
        h.sh(i, "rm -f /usr/local/sbin/kubeadm /root/kubeadm-args.log");
    }
}
