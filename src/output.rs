//! Everything a user reads, rendered in one place: the plan, the run's report, the status
//! table, the cloud plan, the removals. Commands print what these return (data on stdout,
//! messages on stderr); nothing here does I/O.

use crate::engine::ops::Install;
use crate::engine::{Action, Plan};
use crate::model::{Cluster, Role};
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

pub fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}
