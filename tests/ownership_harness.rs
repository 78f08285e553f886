//! Ownership and confirmation of destructive actions on harness hosts: `apply --prune` off a
//! terminal refuses without --yes; a node whose InternalIP points at a machine that is not the
//! cluster's is not reset there; `reset` refuses a host of another cluster and skips a host with
//! nothing to reset.

mod common;

use common::{Harness, cluster_inventory, kubeforge, serial, text, wait_for};
use std::time::Duration;

const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn destructive_steps_are_confirmed_and_touch_only_the_clusters_hosts() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(3);
    let dir = tempfile::tempdir().unwrap();
    let both = [(1, "control-plane"), (2, "worker")];
    let inv = cluster_inventory(&h, dir.path(), "own", "1.33.5", &both, "");
    let inv_s = inv.to_str().unwrap();
    ok(&kubeforge(&["apply", "-f", inv_s, "--yes"], &[]));
    let nodes = || h.sh(1, &format!("{KUBECTL} get nodes -o name"));
    let files = |i: usize, d: &str| {
        h.sh(i, &format!("find {d} -mindepth 1 2>/dev/null | wc -l"))
            .trim()
            .parse::<usize>()
            .unwrap()
    };

    // a converged apply off a terminal without --yes changes nothing destructive: it still runs
    ok(&kubeforge(&["apply", "-f", inv_s], &[]));

    // node2 leaves the inventory: the plan shows its removal as destructive; apply --prune off a
    // terminal without --yes refuses before anything changes
    let one = dir.path().join("one");
    std::fs::create_dir(&one).unwrap();
    let inv1 = cluster_inventory(&h, &one, "own", "1.33.5", &[(1, "control-plane")], "");
    let inv1_s = inv1.to_str().unwrap();
    let out = kubeforge(&["apply", "-f", inv1_s, "--prune"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "apply would remove node2 (drain, delete, reset its host): confirm on a terminal, or pass --yes"
        ),
        "{}",
        text(&out.stderr)
    );
    let plan = kubeforge(&["plan", "-f", inv1_s, "--prune"], &[]);
    ok(&plan);
    assert!(
        text(&plan.stdout).contains(
            "  - remove-node        node2: drain, delete the node, reset its host (10.123.0.12)"
        ),
        "{}",
        text(&plan.stdout)
    );
    assert!(nodes().contains("node/node2"), "node2 is still a node");
    assert!(files(2, "/etc/kubernetes") > 0, "node2 was not reset");

    // node2's InternalIP now names node3, a machine with nothing of this cluster (its kubelet
    // is stopped first, as a hostile kubelet would keep reporting the address)
    h.sh(
        3,
        "mkdir -p /etc/kubernetes && echo keep > /etc/kubernetes/precious",
    );
    h.sh(2, "systemctl stop kubelet");
    h.sh(
        1,
        &format!(
            "{KUBECTL} patch node node2 --type=merge -p '{{\"status\":{{\"addresses\":[{{\"type\":\"InternalIP\",\"address\":\"10.123.0.13\"}},{{\"type\":\"Hostname\",\"address\":\"node2\"}}]}}}}'"
        ),
    );
    wait_for(
        "node2's InternalIP to read 10.123.0.13",
        Duration::from_secs(30),
        || {
            let ip = h.sh(
                1,
                &format!("{KUBECTL} get node node2 -o jsonpath='{{.status.addresses[0].address}}'"),
            );
            if ip.contains("10.123.0.13") {
                Ok(())
            } else {
                Err(format!("it reads {ip:?}"))
            }
        },
    );
    let out = kubeforge(&["apply", "-f", inv1_s, "--prune", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("node2: refusing to reset the host at 10.123.0.13 (the InternalIP the cluster reports for node2): it has no kubeforge marker (/etc/kubeforge/cluster) and no CA of cluster \"own\""),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(h.sh(3, "cat /etc/kubernetes/precious").trim(), "keep");
    assert!(nodes().contains("node/node2"), "nothing was removed");
    // node remove of the same node is refused alike
    let out = kubeforge(&["node", "remove", "node2", "-f", inv1_s, "--yes"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("node2: refusing to reset the host at 10.123.0.13"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(h.sh(3, "cat /etc/kubernetes/precious").trim(), "keep");

    // reset: node2's marker names another cluster; node3 (in this inventory) has nothing to
    // reset. Refused before any host changes; with --force node1 and node2 are reset, node3 is
    // skipped
    h.sh(
        2,
        "printf 'cluster=other\\nrole=worker\\n' > /etc/kubeforge/cluster",
    );
    let three = dir.path().join("three");
    std::fs::create_dir(&three).unwrap();
    let inv3 = cluster_inventory(
        &h,
        &three,
        "own",
        "1.33.5",
        &[(1, "control-plane"), (2, "worker"), (3, "worker")],
        "",
    );
    let inv3_s = inv3.to_str().unwrap();
    let out = kubeforge(&["reset", "-f", inv3_s, "--yes"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("node2: its /etc/kubeforge/cluster names cluster \"other\", not \"own\""),
        "{err}"
    );
    assert!(err.contains("nothing was reset"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(files(1, "/etc/kubernetes") > 0, "node1 was not reset");
    assert!(files(2, "/etc/kubernetes") > 0, "node2 was not reset");
    assert_eq!(
        h.sh(2, "cat /etc/kubeforge/cluster"),
        "cluster=other\nrole=worker\n"
    );
    let out = kubeforge(&["reset", "-f", inv3_s, "--yes", "--force"], &[]);
    ok(&out);
    assert!(
        text(&out.stderr).contains(
            "node3: skipped: no kubeforge marker and no kubeadm state (nothing to reset)"
        ),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("cluster own reset on 2 of 3 hosts"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(files(1, "/etc/kubernetes"), 0);
    assert_eq!(files(2, "/etc/kubernetes"), 0);
    assert_eq!(
        h.sh(2, "ls /etc/kubeforge/cluster 2>/dev/null | wc -l")
            .trim(),
        "0"
    );
    assert_eq!(h.sh(3, "cat /etc/kubernetes/precious").trim(), "keep");
    h.sh(3, "rm -rf /etc/kubernetes");
}
