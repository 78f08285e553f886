//! Everything a user reads, rendered in one place: the plan, the run's report, the status
//! table, the cloud plan, the removals. Commands print what these return (data on stdout,
//! messages on stderr); nothing here does I/O.

use crate::engine::ops::Install;
use crate::engine::{Action, Plan};
use crate::model::{Cluster, Role};
use crate::preflight::Severity;
use crate::workflow::apply::Report;

/// The plan, per host then cluster-wide, then the destructive actions and the warnings.
pub fn plan(p: &Plan, cluster: &Cluster) -> String {
    let mut out = format!(
        "Plan for cluster {} (Kubernetes {}, API endpoint {}:{}):\n",
        p.cluster, p.version, p.endpoint.host, p.endpoint.port
    );
    if p.actions.is_empty() && p.destructive.is_empty() {
        out.push_str("  no changes: the hosts and the cluster match the inventory\n");
    }
    let observed: Vec<String> = cluster
        .hosts
        .iter()
        .filter(|h| p.for_host(&h.name).next().is_none())
        .filter_map(|h| Some((h, p.node_ips.get(&h.name)?)))
        .filter(|(h, ip)| ip.ip != h.ssh.address)
        .map(|(h, ip)| format!("{} {} ({})", h.name, ip.ip, ip.describe()))
        .collect();
    if !observed.is_empty() {
        out.push_str(&format!("  node IPs: {}\n", observed.join(", ")));
    }
    out.push_str(&format!("  images: {}\n", image_source(cluster)));
    for h in &cluster.hosts {
        let acts: Vec<&Action> = p.for_host(&h.name).collect();
        if acts.is_empty() {
            continue;
        }
        let bytes: u64 = acts.iter().map(|a| a.upload_bytes).sum();
        let no_size = acts
            .iter()
            .filter(|a| a.op::<Install>().is_some_and(|i| i.0.size.is_none()))
            .count();
        let uploads = match (bytes, no_size) {
            (0, 0) => String::new(),
            (b, 0) => format!(", uploads {}", human_bytes(b)),
            (b, n) => format!(
                ", uploads {} and {n} binar{}",
                human_bytes(b),
                if n == 1 { "y" } else { "ies" }
            ),
        };
        let node_ip = match p.node_ips.get(&h.name) {
            Some(ip) if ip.ip != h.ssh.address => {
                format!(", node IP {} {}", ip.ip, ip.describe())
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "\n{} ({}, {}{node_ip}){uploads}:\n",
            h.name, h.role, h.ssh.address
        ));
        for a in acts {
            out.push_str(&format!("  + {:<18} {}\n", a.step, a.summary));
        }
    }
    let cluster_actions: Vec<&Action> = p.actions.iter().filter(|a| a.host.is_none()).collect();
    if !cluster_actions.is_empty() {
        out.push_str("\ncluster:\n");
        for a in cluster_actions {
            out.push_str(&format!("  + {:<18} {}\n", a.step, a.summary));
        }
    }
    if !p.destructive.is_empty() {
        out.push_str("\ndestructive (confirmed on a terminal, or with --yes):\n");
        for d in &p.destructive {
            out.push_str(&format!("  - {:<18} {}\n", d.step, d.summary));
        }
    }
    for w in &p.warnings {
        out.push_str(&format!("\nwarning: {w}\n"));
    }
    let hosts = cluster
        .hosts
        .iter()
        .filter(|h| p.for_host(&h.name).next().is_some())
        .count();
    if !p.actions.is_empty() {
        out.push_str(&format!(
            "\n{} action{} on {} host{} and the cluster.\n",
            p.actions.len(),
            if p.actions.len() == 1 { "" } else { "s" },
            hosts,
            if hosts == 1 { "" } else { "s" }
        ));
    }
    if !p.destructive.is_empty() {
        out.push_str(&format!(
            "{} destructive action{}.\n",
            p.destructive.len(),
            if p.destructive.len() == 1 { "" } else { "s" }
        ));
    }
    out
}
/// Where every node's images come from, by the image mode (the same for every node).
pub fn image_source(c: &Cluster) -> String {
    use crate::model::ImageMode;
    match (c.artifacts.images, &c.artifacts.site_registry) {
        (ImageMode::Mirror, Some(r)) => format!(
            "every node pulls from the site registry {} (filled by mirror-images)",
            r.host()
        ),
        (ImageMode::Pull, _) | (ImageMode::Mirror, None) => {
            let m = c.artifacts.node_registry_mirrors();
            if m.is_empty() {
                "every node pulls from the images' own registries".to_string()
            } else {
                let through: Vec<String> = m
                    .iter()
                    .map(|(r, e)| {
                        let e: Vec<String> = e.iter().map(|x| crate::util::redact_url(x)).collect();
                        let r = if r == "_default" { "any registry" } else { r };
                        format!("{r} through {}", e.join(", "))
                    })
                    .collect();
                format!("every node pulls: {}", through.join("; "))
            }
        }
        (ImageMode::Push, _) => {
            "kubeforge sends each node the images it lacks (push-images); no node pulls".to_string()
        }
    }
}

pub fn report(r: &Report) -> String {
    let mut out = String::new();
    let cps = r
        .nodes
        .iter()
        .filter(|n| n.role == Role::ControlPlane)
        .count();
    out.push_str(&format!(
        "\nCluster {} {}: Kubernetes {}, {} control plane{}, {} worker{}.\n",
        r.cluster,
        if r.changed {
            "is ready"
        } else {
            "is up to date (no changes)"
        },
        r.version,
        cps,
        if cps == 1 { "" } else { "s" },
        r.nodes.len() - cps,
        if r.nodes.len() - cps == 1 { "" } else { "s" }
    ));
    out.push_str(&format!("  API endpoint: {}\n", r.endpoint));
    if let (Some(p), Some(s)) = (&r.kubeconfig, &r.kubeconfig_server) {
        out.push_str(&format!(
            "  kubeconfig:   {} (server {s}, mode 0600)\n",
            p.display()
        ));
    }
    out.push_str("  nodes:\n");
    for n in &r.nodes {
        out.push_str(&format!(
            "    {:<16} {:<14} {:<9} v{}\n",
            n.name,
            n.role.as_str(),
            if n.ready { "Ready" } else { "NotReady" },
            n.version
        ));
    }
    if r.changed {
        let phases: Vec<String> = r
            .phases
            .iter()
            .map(|(n, s)| format!("{n} {s:.1}s"))
            .collect();
        out.push_str(&format!(
            "  time: {} (total {:.1}s, of which {:.1}s waiting on kubeadm and kubelets)\n",
            phases.join(", "),
            r.total_seconds,
            r.waited_seconds
        ));
        if !r.uploaded_bytes.is_empty() {
            let up: Vec<String> = r
                .uploaded_bytes
                .iter()
                .map(|(h, b)| format!("{h} {}", human_bytes(*b)))
                .collect();
            out.push_str(&format!("  uploaded: {}\n", up.join(", ")));
        }
    }
    out
}

/// What `kubeforge artifacts fetch` put together.
pub fn bundle_summary(s: &crate::bundle::Summary) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut out = format!(
        "Bundle {} for cluster {} (Kubernetes {}, {}):\n",
        s.dir.display(),
        s.cluster,
        s.kubernetes,
        s.arches.join(", ")
    );
    out.push_str(&format!(
        "  {}, {} ({}), the release manifest{}\n",
        plural(s.binaries, "binary", "binaries"),
        plural(s.images, "image", "images"),
        plural(s.blobs, "blob", "blobs"),
        if s.files > s.binaries + s.blobs + 1 {
            ", the CNI manifest"
        } else {
            ""
        }
    ));
    out.push_str(&format!(
        "  {}, {} in all, each verified; {} added by this run ({}), {} already there\n",
        plural(s.files, "file", "files"),
        human_bytes(s.bytes),
        plural(s.added_files, "file", "files"),
        human_bytes(s.added_bytes),
        s.files.saturating_sub(s.added_files)
    ));
    out.push_str(&format!(
        "  use it with `spec.artifacts.bundle: {}` in the inventory\n",
        s.dir.display()
    ));
    out
}

pub fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The status table, then each host's problems.
pub fn status(r: &crate::status::StatusReport) -> String {
    let dash = || "-".to_string();
    let mut rows = vec![
        [
            "HOST",
            "ADDRESS",
            "NODE-IP",
            "ROLE",
            "SSH",
            "OS",
            "KERNEL",
            "ARCH",
            "CGROUP",
            "CONTAINERD",
            "KUBELET",
            "MEMBER",
            "CERTS",
            "PREFLIGHT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
    ];
    for h in &r.hosts {
        let findings: Vec<_> = r.preflight.iter().filter(|f| f.host == h.name).collect();
        let errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let warnings = findings.len() - errors;
        let pre = match (h.facts.is_some(), errors, warnings) {
            (false, _, _) => dash(),
            (true, 0, 0) => "ok".to_string(),
            (true, e, w) => {
                let mut p = Vec::new();
                if e > 0 {
                    p.push(format!("{e} error{}", if e == 1 { "" } else { "s" }));
                }
                if w > 0 {
                    p.push(format!("{w} warning{}", if w == 1 { "" } else { "s" }));
                }
                p.join(", ")
            }
        };
        let mut row = vec![
            h.name.clone(),
            h.address.clone(),
            h.node_ip.clone().unwrap_or_else(dash),
            h.role.to_string(),
        ];
        match &h.facts {
            Some(f) => {
                let ver = |c: &str| {
                    f.installed
                        .get(c)
                        .and_then(|i| i.version.clone())
                        .unwrap_or_else(dash)
                };
                let member = match (f.membership.role(), f.membership.cluster()) {
                    (Some(role), Some(c)) => format!(
                        "{} of {c}",
                        serde_json::to_value(role)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default()
                    ),
                    (Some(_), None) => "yes (not kubeforge)".to_string(),
                    (None, _) => "no".to_string(),
                };
                row.extend([
                    "ok".to_string(),
                    format!("{} {}", f.os_id, f.os_version),
                    f.kernel.clone(),
                    f.arch.clone(),
                    format!("v{}", f.cgroup_version),
                    ver("containerd"),
                    ver("kubelet"),
                    member,
                    h.cert_expiry_days
                        .map(|d| format!("{d}d"))
                        .unwrap_or_else(dash),
                    pre,
                ]);
            }
            None => {
                row.push(if h.reachable {
                    "ok".into()
                } else {
                    "FAILED".into()
                });
                row.extend((0..8).map(|_| dash()));
                row.push(pre);
            }
        }
        // facts are the host's word: shown escaped
        rows.push(
            row.iter()
                .map(|c| crate::util::terminal_safe(c).into_owned())
                .collect(),
        );
    }
    let mut out = table(&rows);
    if !r.preflight.is_empty() {
        out.push_str("\nPreflight:\n");
        for f in &r.preflight {
            let sev = match f.severity {
                Severity::Error => "error  ",
                Severity::Warning => "warning",
            };
            out.push_str(&format!(
                "  {sev}  {}  {}: {}\n",
                f.host, f.check, f.message
            ));
        }
    }
    let unreachable: Vec<_> = r.unreachable().collect();
    if !unreachable.is_empty() {
        out.push_str("\nUnreachable:\n");
        for h in &unreachable {
            out.push_str(&format!(
                "  {}\n",
                h.error.as_deref().unwrap_or("unknown error")
            ));
        }
    }
    let errors = r.blocking().count();
    out.push_str(&format!(
        "\n{} host{}: {} reachable, {} unreachable; {} preflight error{}, {} warning{} ({:.1}s)\n",
        r.hosts.len(),
        if r.hosts.len() == 1 { "" } else { "s" },
        r.hosts.len() - unreachable.len(),
        unreachable.len(),
        errors,
        if errors == 1 { "" } else { "s" },
        r.preflight.len() - errors,
        if r.preflight.len() - errors == 1 {
            ""
        } else {
            "s"
        },
        r.elapsed.as_secs_f64()
    ));
    // preflight messages and connection errors quote the hosts too
    crate::util::terminal_safe(&out).into_owned()
}

/// What a command shows as it goes.
pub fn shown(s: &crate::workflow::command::Shown) -> String {
    use crate::workflow::command::Shown;
    match s {
        Shown::CloudPlan(a) => cloud_plan(a),
        Shown::CloudChanges(a) => cloud_changes(a),
        Shown::Findings(f) => findings(f),
        Shown::Plan(p, c) => plan(p, c),
        Shown::Removed(r) => removed(r),
        Shown::Note(n) => format!("{n}\n"),
    }
}

/// The OpenStack resources a run creates, adopts, replaces or deletes.
pub fn cloud_plan(actions: &[crate::openstack::provider::CloudAction]) -> String {
    let mut out = String::from("OpenStack resources:\n");
    for a in actions {
        let sign = a.verb.sign();
        out.push_str(&format!(
            "  {sign} {:<14} {} ({})\n",
            a.kind, a.name, a.verb
        ));
    }
    out
}

/// What provisioning created or replaced.
pub fn cloud_changes(actions: &[crate::openstack::provider::CloudAction]) -> String {
    let mut out = String::new();
    for x in actions.iter().filter(|x| x.verb.creates()) {
        out.push_str(&format!(
            "{} {} {}\n",
            if x.verb == crate::openstack::action::Verb::Create {
                "created"
            } else {
                "replaced"
            },
            x.kind,
            x.name
        ));
    }
    out
}

/// `apply --cloud-only`: one line per server (name, role, fixed and floating IP), the
/// endpoint; the warnings about servers beyond the count go apart.
pub fn cloud_servers(p: &crate::openstack::provider::Provisioned) -> (String, String) {
    let mut out = String::new();
    for s in &p.servers {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            s.name,
            s.role,
            s.fixed_ip.as_deref().unwrap_or("-"),
            s.floating_ip.as_deref().unwrap_or("-")
        ));
    }
    if let Some(ep) = &p.endpoint {
        out.push_str(&format!("endpoint\t{ep}:6443\n"));
    }
    let mut warnings = String::new();
    for s in &p.surplus {
        warnings.push_str(&format!(
            "warning: {} is beyond the count; a full apply removes its node, then the server\n",
            s.name
        ));
    }
    (out, warnings)
}

/// Preflight warnings (the messages quote what the hosts reported).
pub fn findings(f: &[crate::preflight::Finding]) -> String {
    f.iter()
        .map(|f| format!("warning: {}: {}: {}\n", f.host, f.check, f.message))
        .collect()
}

/// A control plane's certificate renewal: before it starts, and once it is done.
pub fn renewal(r: &crate::steps::renew_certs::Renewed, done: bool) -> String {
    let days = |d: Option<u64>| d.map(|d| d.to_string()).unwrap_or("?".into());
    if done {
        format!(
            "{}: renewed; soonest expiry in {} days\n",
            r.host,
            days(r.after_days)
        )
    } else {
        format!(
            "{}: renewing certificates (soonest expiry in {} days)\n",
            r.host,
            days(r.before_days)
        )
    }
}

/// What removing nodes did, per node.
pub fn removed(removed: &[crate::day2::Removed]) -> String {
    let mut out = String::new();
    for r in removed {
        out.push_str(&format!(
            "removed {}: {}drained, {}host {}\n",
            r.name,
            if r.drained { "" } else { "not " },
            if r.etcd_member_removed {
                "etcd member removed, "
            } else {
                ""
            },
            if r.host_reset { "reset" } else { "NOT reset" }
        ));
        for w in &r.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::cluster_state::ClusterState;
    use crate::cluster_state::NodeState;
    use crate::desired;
    use crate::engine::plan::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn node(name: &str, ip: &str, cp: bool) -> NodeState {
        NodeState {
            name: name.into(),
            kubelet_version: "1.33.5".into(),
            ready: true,
            not_ready_reason: None,
            unschedulable: false,
            control_plane: cp,
            internal_ip: Some(ip.into()),
            labels: BTreeMap::new(),
            cordoned_by_kubeforge: false,
        }
    }

    #[test]
    fn removals_are_destructive_and_shown() {
        let text = "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {name: prod}\nspec:\n  kubernetes: {version: 1.33.5}\n  hosts:\n    - {name: cp1, address: 10.0.0.11, role: control-plane}\n";
        let c = crate::inventory::load_str(Path::new("t.yaml"), text, Path::new("/"), &|_| None)
            .unwrap_or_else(|e| panic!("{}", e.render(false)))
            .cluster;
        let state = ClusterState {
            api_host: "cp1".into(),
            nodes: vec![
                node("cp1", "10.0.0.11", true),
                node("cp2", "10.0.0.12", true),
                node("w1", "10.0.0.21", false),
            ],
            server_version: None,
        };
        let unlisted = unlisted_nodes(&c, Some(&state));
        assert_eq!(unlisted, vec!["cp2", "w1"]);
        let mut plan = Plan {
            cluster: "prod".into(),
            version: "1.33.5".into(),
            endpoint: desired::api_endpoint(&c),
            init_host: "cp1".into(),
            node_ips: Default::default(),
            actions: Vec::new(),
            warnings: unlisted.iter().map(|n| left_alone(n)).collect(),
            destructive: Vec::new(),
        };
        assert!(!plan.is_destructive());
        assert!(super::plan(&plan, &c).contains("no changes"));
        plan.remove_nodes(&c, &state, &unlisted, "");
        assert!(plan.is_destructive() && plan.is_empty());
        let out = super::plan(&plan, &c);
        assert!(!out.contains("no changes"), "{out}");
        assert!(!out.contains("left alone"), "{out}");
        assert!(
            out.contains(
                "\ndestructive (confirmed on a terminal, or with --yes):\n  - remove-node        cp2: drain, delete the node, remove its etcd member, reset its host (10.0.0.12)\n  - remove-node        w1: drain, delete the node, reset its host (10.0.0.21)\n"
            ),
            "{out}"
        );
        assert!(out.contains("2 destructive actions."), "{out}");
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["destructive"][1]["host"], "w1");
    }
}
