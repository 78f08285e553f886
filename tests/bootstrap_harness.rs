//! `kubeforge apply` end to end on harness hosts: real SSH, systemd, containerd, runc and CNI
//! plugins; the Kubernetes binaries are the harness's documented doubles (kubeadm, kubelet,
//! kubectl, crictl), served by its artifact mirror with their own sha256 index.

mod common;

use common::{Harness, cluster_inventory, kubeforge, serial, text, wait_for};
use std::path::Path;
use std::time::{Duration, Instant};

const V: &str = "1.33.5";

fn apply(inv: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["apply", "-f", inv.to_str().unwrap(), "--yes"];
    args.extend(extra);
    kubeforge(&args, &[])
}

fn plan_json(inv: &Path) -> serde_json::Value {
    let out = kubeforge(&["plan", "-f", inv.to_str().unwrap(), "-o", "json"], &[]);
    assert!(out.status.success(), "plan: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn one_control_plane_and_one_worker() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(2);
    let dir = tempfile::tempdir().unwrap();
    let inv = cluster_inventory(
        &h,
        dir.path(),
        "c11",
        V,
        &[(1, "control-plane"), (2, "worker")],
        "",
    );

    let plan = plan_json(&inv);
    let actions = plan["actions"].as_array().unwrap();
    assert!(
        actions
            .iter()
            .any(|a| a["step"] == "init" && a["host"] == "node1"),
        "{plan}"
    );
    assert!(
        actions
            .iter()
            .any(|a| a["step"] == "join-worker" && a["host"] == "node2")
    );
    assert!(
        !h.sh(1, "ls /etc").contains("kubeforge"),
        "plan changes nothing"
    );

    let out = apply(&inv, &["-o", "json"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["changed"], true);
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes
            .iter()
            .all(|n| n["ready"] == true && n["version"] == V),
        "{report}"
    );

    // observed on the hosts, not taken from our own report
    let kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf";
    let nodes = h.sh(1, &format!("{kubectl} get nodes -o jsonpath='{{.items[*].metadata.name}} {{.items[*].status.conditions[?(@.type==\"Ready\")].status}}'"));
    assert_eq!(nodes.trim(), "node1 node2 True True");
    assert_eq!(
        h.sh(
            2,
            "kubectl --kubeconfig /etc/kubernetes/kubelet.conf get --raw /readyz"
        )
        .trim(),
        "ok"
    );
    assert_eq!(
        h.sh(2, "systemctl is-active haproxy containerd kubelet")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["active"; 3]
    );
    assert!(
        h.sh(1, "grep -c SystemdCgroup /etc/containerd/config.toml")
            .trim()
            == "1"
    );
    assert_eq!(h.sh(1, "cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    assert!(
        h.sh(1, &format!("{kubectl} -n kube-flannel get ds -o name"))
            .contains("daemonset.apps/kube-flannel-ds")
    );
    // the kubeadm config with secrets is gone
    assert_eq!(
        h.sh(1, "ls /etc/kubeforge")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["cluster", "cni.yaml", "initialized", "installed"]
    );

    // the operator's kubeconfig
    let kc = dir.path().join("c11.kubeconfig");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let kcv: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&kc).unwrap()).unwrap();
    assert_eq!(
        kcv["clusters"][0]["cluster"]["server"],
        "https://10.123.0.11:6443"
    );
    assert_eq!(kcv["current-context"], "c11");

    // converged: nothing to do, and apply changes nothing
    let plan = plan_json(&inv);
    assert_eq!(plan["actions"].as_array().unwrap().len(), 0, "{plan}");
    let state = |i: usize| {
        h.sh(i, "stat -c '%n %Y' /etc/containerd/config.toml /etc/kubernetes/manifests/* /var/lib/kubelet/config.yaml /etc/haproxy/haproxy.cfg 2>/dev/null; systemctl show -p ActiveEnterTimestampMonotonic containerd kubelet haproxy")
    };
    let before = [state(1), state(2)];
    let out = apply(&inv, &[]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("is up to date (no changes)"),
        "{}",
        text(&out.stdout)
    );
    let after = [state(1), state(2)];
    assert_eq!(
        before, after,
        "a converged apply restarts nothing and writes nothing"
    );

    // kubeconfig --merge into a fresh home
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = kubeforge(
        &["kubeconfig", "-f", inv.to_str().unwrap(), "--merge"],
        &[("HOME", home.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let merged = std::fs::read_to_string(home.join(".kube/config")).unwrap();
    assert!(merged.contains("name: c11") && merged.contains("https://10.123.0.11:6443"));
    assert_eq!(
        std::fs::metadata(home.join(".kube/config"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // without --merge an existing config is never overwritten; -o writes elsewhere (0600)
    let out = kubeforge(
        &["kubeconfig", "-f", inv.to_str().unwrap()],
        &[("HOME", home.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("config exists: pass --merge to add context c11 to it"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".kube/config")).unwrap(),
        merged
    );
    let other = dir.path().join("other.kubeconfig");
    let out = kubeforge(
        &[
            "kubeconfig",
            "-f",
            inv.to_str().unwrap(),
            "-o",
            other.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::metadata(&other).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&other)
            .unwrap()
            .contains("https://10.123.0.11:6443")
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn three_control_planes_survive_the_loss_of_one() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(4);
    let dir = tempfile::tempdir().unwrap();
    let inv = cluster_inventory(
        &h,
        dir.path(),
        "ha",
        V,
        &[
            (1, "control-plane"),
            (2, "control-plane"),
            (3, "control-plane"),
            (4, "worker"),
        ],
        "",
    );
    let out = apply(&inv, &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("3 control planes, 1 worker"));
    let plan = plan_json(&inv);
    assert_eq!(
        plan["actions"].as_array().unwrap().len(),
        0,
        "plan after apply: {plan}"
    );
    // etcd has three voting members
    let members = std::fs::read_to_string(
        std::fs::read_dir(h.dir.join("store/clusters"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("members.json"),
    )
    .unwrap();
    let members: serde_json::Value = serde_json::from_str(&members).unwrap();
    assert_eq!(
        members
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["isLearner"] == false)
            .count(),
        3
    );
    // each control plane reaches the API through itself, the worker through its proxy
    for i in 1..=3 {
        assert!(
            h.sh(i, "grep kubeforge.internal /etc/hosts")
                .starts_with(&h.ip(i))
        );
    }
    assert!(
        h.sh(4, "grep kubeforge.internal /etc/hosts")
            .starts_with("127.0.0.1 ")
    );

    // the first control plane dies: the API still answers through the endpoint from the worker
    let out = h.nodes(&["kill", "1"]);
    assert!(out.status.success());
    // gone: its API server no longer takes connections
    wait_for(
        "node1's API server (10.123.0.11:6443) to stop answering",
        Duration::from_secs(30),
        || {
            let api = std::net::SocketAddr::from(([10, 123, 0, 11], 6443));
            match std::net::TcpStream::connect_timeout(&api, Duration::from_millis(500)) {
                Ok(_) => Err("it still accepts connections".into()),
                Err(_) => Ok(()),
            }
        },
    );
    // ... and from then on, for 6 s and at least 5 rounds, every request through the endpoint
    // answers
    let since = Instant::now();
    let mut rounds = 0;
    while rounds < 5 || since.elapsed() < Duration::from_secs(6) {
        let r = h.sh(4, "kubectl --kubeconfig /etc/kubernetes/kubelet.conf get --raw /readyz --request-timeout=10s");
        assert_eq!(r.trim(), "ok", "round {rounds}");
        let n = h.sh(4, "kubectl --kubeconfig /etc/kubernetes/kubelet.conf get node node4 -o jsonpath='{.metadata.name}'");
        assert_eq!(n.trim(), "node4", "round {rounds}");
        rounds += 1;
    }
    let out = h.nodes(&["start", "1"]);
    assert!(out.status.success());
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn a_corrupted_artifact_aborts_before_anything_is_installed() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(2);
    let dir = tempfile::tempdir().unwrap();
    // a local-directory mirror: a copy of the harness mirror with the kubelet corrupted
    let mirror = dir.path().join("mirror");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(h.dir.join("mirror"))
        .arg(&mirror)
        .status()
        .unwrap();
    assert!(cp.success());
    let kubelet = mirror.join(format!("release/v{V}/bin/linux/amd64/kubelet"));
    let mut bytes = std::fs::read(&kubelet).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(&kubelet, &bytes).unwrap();
    let inv = cluster_inventory(
        &h,
        dir.path(),
        "bad",
        V,
        &[(1, "control-plane"), (2, "worker")],
        "",
    );
    let text_inv = std::fs::read_to_string(&inv).unwrap().replace(
        "mirror: http://10.123.0.1:8080/",
        &format!("mirror: {}", mirror.display()),
    );
    std::fs::write(&inv, text_inv).unwrap();
    let out = apply(&inv, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "checksum mismatch for kubelet {V} (amd64) from {}",
            kubelet.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("expected sha256 ") && err.contains(", got "),
        "{err}"
    );
    for i in 1..=2 {
        let left = h.sh(i, "ls -d /etc/kubeforge /usr/local/bin/containerd /usr/local/bin/kubeadm /usr/local/bin/kubelet /etc/containerd /var/cache/kubeforge 2>/dev/null; true");
        assert_eq!(left.trim(), "", "node{i} was touched: {left}");
    }
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn no_join_token_or_certificate_key_reaches_the_output_or_the_logs() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(3);
    // a wrapper earlier in the PATH kubeforge sets records what kubeadm really received
    for i in 1..=3 {
        h.sh(
            i,
            "mkdir -p /usr/local/sbin && cat > /usr/local/sbin/kubeadm <<'EOF'\n#!/bin/sh\n{ echo \"ARGS: $*\"; prev=; for a in \"$@\"; do [ \"$prev\" = --config ] && cat \"$a\"; prev=$a; done; } >> /root/kubeadm-calls.log\nexec /usr/local/bin/kubeadm \"$@\"\nEOF\nchmod 755 /usr/local/sbin/kubeadm",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let inv = cluster_inventory(
        &h,
        dir.path(),
        "sec",
        V,
        &[(1, "control-plane"), (2, "control-plane"), (3, "worker")],
        "",
    );
    let out = kubeforge(&["apply", "-f", inv.to_str().unwrap(), "--yes", "-vv"], &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.len() > 10_000,
        "debug logs were written ({} bytes)",
        all.len()
    );
    // the secrets kubeadm received
    let mut secrets: Vec<String> = Vec::new();
    for i in 1..=3 {
        let log = h.sh(i, "cat /root/kubeadm-calls.log 2>/dev/null; true");
        for line in log.lines() {
            for key in ["token: ", "certificateKey: ", "--certificate-key "] {
                if let Some(i) = line.find(key) {
                    let v = line[i + key.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_matches('"');
                    if v.len() >= 16 {
                        secrets.push(v.to_string());
                    }
                }
            }
            // an older kubeforge passed the token to `kubeadm token create TOKEN`: were one
            // passed, it is a secret too (flags such as --ttl are not)
            if let Some(i) = line.find("token create ") {
                let word = line[i + 13..].split_whitespace().next().unwrap_or("");
                let shaped = word.len() == 23
                    && word.as_bytes()[6] == b'.'
                    && word
                        .bytes()
                        .enumerate()
                        .all(|(n, b)| n == 6 || b.is_ascii_lowercase() || b.is_ascii_digit());
                if shaped {
                    secrets.push(word.to_string());
                }
            }
        }
    }
    secrets.sort();
    secrets.dedup();
    assert!(
        secrets.len() >= 2,
        "found the token and the certificate key: {secrets:?}"
    );
    for s in &secrets {
        let secret_part = s.rsplit('.').next().unwrap();
        assert!(
            !all.contains(secret_part),
            "a secret reached the output: {secret_part}"
        );
    }
    // and none is left on disk in kubeforge's files
    for i in 1..=3 {
        let files = h.sh(i, "cat /etc/kubeforge/* 2>/dev/null; true");
        for s in &secrets {
            assert!(
                !files.contains(s.rsplit('.').next().unwrap()),
                "node{i} keeps a secret in /etc/kubeforge"
            );
        }
        h.sh(i, "rm -f /usr/local/sbin/kubeadm /root/kubeadm-calls.log");
    }
}

/// The secrets kubeadm received in its config files (`token:`, `certificateKey:`), from the
/// wrapper's log on node i.
fn secrets_in_configs(h: &Harness, i: usize) -> Vec<String> {
    let log = h.sh(i, "cat /root/kubeadm-calls.log 2>/dev/null; true");
    let mut out = Vec::new();
    for line in log.lines() {
        for key in ["token: ", "certificateKey: "] {
            if let Some(at) = line.find(key) {
                let v = line[at + key.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches('"');
                if v.len() >= 16 && !out.iter().any(|s| s == v) {
                    out.push(v.to_string());
                }
            }
        }
    }
    out
}

/// A bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`) or 32 bytes of hex in a command line.
fn secret_shaped(line: &str) -> Option<String> {
    let tok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    for w in line.split(|c: char| !(tok(c) || c == '.' || c.is_ascii_hexdigit())) {
        if let Some((id, sec)) = w.split_once('.')
            && id.len() == 6
            && sec.len() == 16
            && id.chars().chain(sec.chars()).all(tok)
        {
            return Some(w.to_string());
        }
        if w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()) {
            return Some(w.to_string());
        }
    }
    None
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn join_secrets_never_reach_a_command_line_and_the_join_token_is_deleted() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(3);
    // what kubeadm really received, on every node
    for i in 1..=3 {
        h.sh(
            i,
            "mkdir -p /usr/local/sbin && cat > /usr/local/sbin/kubeadm <<'EOF'\n#!/bin/sh\n{ echo \"ARGS: $*\"; prev=; for a in \"$@\"; do [ \"$prev\" = --config ] && cat \"$a\"; prev=$a; done; } >> /root/kubeadm-calls.log\nexec /usr/local/bin/kubeadm \"$@\"\nEOF\nchmod 755 /usr/local/sbin/kubeadm",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // an existing cluster: the joins of the second run need a new token and fresh certificates
    let inv = cluster_inventory(&h, dir.path(), "cmd", V, &[(1, "control-plane")], "");
    let out = apply(&inv, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // every command line on the control plane, sampled every 20 ms during the joins
    h.sh(
        1,
        "rm -f /root/scan.stop /root/scan.done /root/cmdlines; cat > /root/scan.py <<'EOF'\nimport os, time\nseen = set()\nwhile not os.path.exists('/root/scan.stop'):\n    for p in os.listdir('/proc'):\n        if p.isdigit():\n            try:\n                seen.add(open('/proc/%s/cmdline' % p, 'rb').read().replace(b'\\0', b' ').strip())\n            except OSError:\n                pass\n    time.sleep(0.02)\nopen('/root/cmdlines', 'wb').write(b'\\n'.join(sorted(seen)))\nopen('/root/scan.done', 'w').close()\nEOF\nsetsid nohup python3 /root/scan.py </dev/null >/dev/null 2>&1 &",
    );
    let inv = cluster_inventory(
        &h,
        dir.path(),
        "cmd",
        V,
        &[(1, "control-plane"), (2, "control-plane"), (3, "worker")],
        "",
    );
    // -vv: every command kubeforge runs is logged, and still no secret may show
    let out = apply(&inv, &["-vv"]);
    h.sh(1, "touch /root/scan.stop");
    wait_for(
        "node1's command-line scan to stop and write /root/cmdlines",
        Duration::from_secs(10),
        || {
            if h.exec(1, "test -e /root/scan.done").status.success() {
                Ok(())
            } else {
                Err("no /root/scan.done yet".into())
            }
        },
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let cmdlines = h.sh(1, "cat /root/cmdlines");
    assert!(
        cmdlines.contains("kubeadm token create")
            && cmdlines.contains("kubeadm init phase upload-certs"),
        "the scan saw kubeadm making the secrets:\n{cmdlines}"
    );
    let secrets: Vec<String> = (1..=3).flat_map(|i| secrets_in_configs(&h, i)).collect();
    assert!(
        secrets.len() >= 3,
        "the init token, the join token and the certificate key: {secrets:?}"
    );
    // kubeforge read the new token and key from kubeadm's output: they reach neither its
    // output nor its logs
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for s in &secrets {
        assert!(
            !said.contains(s.rsplit('.').next().unwrap()),
            "a join secret in kubeforge's output or logs"
        );
    }
    // The kubeadm double encrypts kubeadm-certs by running `openssl enc -K <key>` (real kubeadm
    // does that in process, with no child): a command line of the double's own making, not one
    // kubeforge or kubeadm's interface puts a secret on. Every other command line is checked.
    for line in cmdlines
        .lines()
        .filter(|l| !l.starts_with("openssl enc -aes-256-cbc"))
    {
        for s in &secrets {
            assert!(
                !line.contains(s.rsplit('.').next().unwrap()),
                "a join secret in a command line on node1: {line}"
            );
        }
    }
    for i in 1..=3 {
        let log = h.sh(i, "cat /root/kubeadm-calls.log");
        for args in log.lines().filter(|l| l.starts_with("ARGS: ")) {
            assert_eq!(secret_shaped(args), None, "node{i}: kubeadm {args}");
        }
    }
    // the joins' token is gone (the init token too: nothing is left to join with)
    let tokens = h.sh(1, "/usr/local/bin/kubeadm token list");
    assert!(!tokens.contains("kubeforge"), "{tokens}");
    for s in secrets.iter().filter(|s| s.contains('.')) {
        assert!(
            !tokens.contains(&s[..6]),
            "token {} is left: {tokens}",
            &s[..6]
        );
    }
    for i in 1..=3 {
        h.sh(i, "rm -f /usr/local/sbin/kubeadm /root/kubeadm-calls.log");
    }
    h.sh(
        1,
        "rm -f /root/scan.py /root/scan.stop /root/scan.done /root/cmdlines",
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn an_interrupted_init_is_run_again_and_cni_none_completes() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(1);
    let dir = tempfile::tempdir().unwrap();
    let inv = cluster_inventory(&h, dir.path(), "c1n", V, &[(1, "control-plane")], "");
    let text_of = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(
        &inv,
        text_of.replace(
            &format!("  kubernetes: {{version: {V}}}"),
            &format!("  kubernetes: {{version: {V}, cni: none}}"),
        ),
    )
    .unwrap();
    // cni: none: the node registers and stays NotReady until the operator installs a network
    let out = apply(&inv, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("node1: NotReady until a pod network is installed (cni: none)"),
        "{}",
        text(&out.stderr)
    );
    let kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf";
    assert!(
        h.sh(1, &format!("{kubectl} get node node1"))
            .contains("NotReady")
    );

    // the API is down on a cluster whose init completed: kubeforge refuses to guess
    h.sh(1, "systemctl stop kubelet; systemctl stop 'kubedouble-*'");
    let out = kubeforge(&["plan", "-f", inv.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("the cluster's API did not answer"),
        "{}",
        text(&out.stderr)
    );
    assert!(h.sh(1, "ls /etc/kubernetes").contains("admin.conf"));

    // kubeadm's files without a completed init (as when init stops half-way): reset, init again
    h.sh(1, "rm /etc/kubeforge/initialized");
    let plan = plan_json(&inv);
    let steps: Vec<String> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["summary"].as_str().unwrap().to_string())
        .collect();
    let reset = steps.iter().position(|s| s.starts_with("reset node1"));
    let init = steps
        .iter()
        .position(|s| s.starts_with("kubeadm init on node1"));
    assert!(
        reset.is_some() && init.is_some() && reset < init,
        "{steps:?}"
    );
    let out = apply(&inv, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        h.sh(1, &format!("{kubectl} get --raw /readyz")).trim(),
        "ok"
    );
    assert!(h.sh(1, "ls /etc/kubeforge").contains("initialized"));
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn hosts_given_by_dns_name_get_their_node_ip_from_facts() {
    let _g = serial();
    let h = Harness::get();
    // hosts that carry nothing of another test (its cluster, its kubeadm wrapper)
    h.fresh(2);
    let dir = tempfile::tempdir().unwrap();
    let inv = cluster_inventory(
        &h,
        dir.path(),
        "cdns",
        V,
        &[(1, "control-plane"), (2, "worker")],
        "",
    );
    // the hosts by name: the operator resolves them through the harness's ssh_config (HostName)
    let body = std::fs::read_to_string(&inv)
        .unwrap()
        .replace("address: 10.123.0.11", "address: node1")
        .replace("address: 10.123.0.12", "address: node2")
        .replace(
            "config: none",
            &format!("config: {}", h.ssh_config().display()),
        );
    assert!(body.contains("address: node1") && body.contains("address: node2"));
    std::fs::write(&inv, body).unwrap();
    let file = inv.to_str().unwrap();

    // plan shows the node IPs the hosts reported, before anything changes
    let plan = plan_json(&inv);
    assert_eq!(plan["node_ips"]["node1"]["ip"], "10.123.0.11", "{plan}");
    assert_eq!(plan["node_ips"]["node2"]["ip"], "10.123.0.12", "{plan}");
    assert_eq!(plan["node_ips"]["node1"]["source"], "ssh-connection");
    let out = kubeforge(&["plan", "-f", file], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("node1 (control-plane, node1, node IP 10.123.0.11")
            && shown.contains("node2 (worker, node2, node IP 10.123.0.12"),
        "{shown}"
    );

    // kubeadm gets IPs (its double rejects a name as advertise address, as kubeadm does)
    let out = apply(&inv, &["-o", "json"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = report["nodes"].as_array().unwrap();
    assert!(
        nodes.len() == 2 && nodes.iter().all(|n| n["ready"] == true),
        "{report}"
    );
    let kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf";
    let ips = h.sh(1, &format!("{kubectl} get nodes -o jsonpath='{{range .items[*]}}{{.metadata.name}}={{.status.addresses[?(@.type==\"InternalIP\")].address}} {{end}}'"));
    assert_eq!(ips.trim(), "node1=10.123.0.11 node2=10.123.0.12");
    assert!(
        h.sh(2, "cat /etc/haproxy/haproxy.cfg")
            .contains("server node1 10.123.0.11:6443"),
        "haproxy's backend is the control plane's IP"
    );
    assert!(
        h.sh(1, "cat /etc/hosts")
            .contains("10.123.0.11 api.cdns.kubeforge.internal"),
        "the control plane's endpoint name points at its IP"
    );
    let kc = std::fs::read_to_string(dir.path().join("cdns.kubeconfig")).unwrap();
    assert!(kc.contains("server: https://10.123.0.11:6443"), "{kc}");

    // status shows the node IP too
    let out = kubeforge(&["status", "-f", file, "-o", "json"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["hosts"][0]["node_ip"], "10.123.0.11", "{st}");
    assert_eq!(st["hosts"][1]["node_ip"], "10.123.0.12", "{st}");
    let out = kubeforge(&["status", "-f", file], &[]);
    let shown = text(&out.stdout);
    let header = shown.lines().next().unwrap_or_default();
    assert!(header.contains("NODE-IP"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("node1") && l.contains("node1") && l.contains("10.123.0.11")),
        "{shown}"
    );
    // converged: nothing to do
    let plan = plan_json(&inv);
    assert_eq!(plan["actions"].as_array().unwrap().len(), 0, "{plan}");

    let out = kubeforge(&["reset", "-f", file, "--yes"], &[]);
    assert!(out.status.success(), "reset: {}", text(&out.stderr));
}
