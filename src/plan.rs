//! A plan: the actions `apply` would take, per host, computed from the desired state (model +
//! release manifest) and the observed state (facts, the cluster's API) before anything changes.
//! `plan` prints it; `apply` executes it. On a converged cluster it is empty.

use crate::cluster_state::ClusterState;
use crate::desired::{self, Followup, ManagedFile};
use crate::facts::Facts;
use crate::model::{Cluster, Host, Role};
use crate::release::{Artifact, ReleaseManifest};
use crate::steps;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    OsPrep,
    Runtime,
    KubeBinaries,
    ApiEndpoint,
    Init,
    UpgradeControlPlane,
    UpgradeWorker,
    JoinControlPlane,
    JoinWorker,
    Cni,
    CloudProvider,
    WaitReady,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::OsPrep => "os-prep",
            Step::Runtime => "runtime",
            Step::KubeBinaries => "kube-binaries",
            Step::ApiEndpoint => "api-endpoint",
            Step::Init => "init",
            Step::UpgradeControlPlane => "upgrade-control-plane",
            Step::UpgradeWorker => "upgrade-worker",
            Step::JoinControlPlane => "join-control-plane",
            Step::JoinWorker => "join-worker",
            Step::Cni => "cni",
            Step::CloudProvider => "cloud-provider",
            Step::WaitReady => "wait-ready",
        }
    }

    /// Steps that prepare one host and need nothing from the others.
    pub fn is_host_preparation(self) -> bool {
        self <= Step::ApiEndpoint
    }
}

/// What an action does, with the data it needs.
#[derive(Debug, Clone)]
pub enum Op {
    WriteFile(ManagedFile),
    Followup(Followup),
    SwapOff,
    SetHostname(String),
    InstallPackages(Vec<&'static str>),
    Install(Artifact),
    /// enable and (re)start containerd, then prove it with a CRI call
    StartContainerd,
    EnableKubelet,
    StartHaproxy,
    HostsBlock(String),
    Init,
    /// `kubeadm reset` of a host left half-joined by an interrupted run
    ResetStale,
    JoinControlPlane,
    JoinWorker,
    ApplyCni(String),
    ApplyCloudProvider(CloudProvider),
    WaitReady,
    /// cordon, drain, kubeadm upgrade (apply on the first control plane), new binaries,
    /// kubelet restart, Ready at the new version, uncordon
    Upgrade {
        first: bool,
        installs: Vec<Artifact>,
        /// runtime files written after the drain (they restart containerd)
        runtime_files: Vec<desired::ManagedFile>,
    },
    /// a node an interrupted run left cordoned, now healthy at the right version
    Uncordon,
}

#[derive(Debug, Clone, Serialize)]
pub struct Action {
    /// None for cluster-wide actions.
    pub host: Option<String>,
    pub step: Step,
    pub summary: String,
    /// Bytes uploaded to the host.
    pub upload_bytes: u64,
    #[serde(skip)]
    pub op: Op,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub cluster: String,
    pub version: String,
    pub endpoint: desired::ApiEndpoint,
    /// The control plane that runs `kubeadm init`, or serves the existing cluster.
    pub init_host: String,
    /// Every host's node IP and where it comes from (the inventory, or the host's facts).
    pub node_ips: desired::NodeIps,
    pub actions: Vec<Action>,
    pub warnings: Vec<String>,
    /// Destructive actions (nodes removed, hosts reset): shown apart, and confirmed on a
    /// terminal or by --yes; off a terminal without --yes, apply refuses them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destructive: Vec<Destructive>,
}

/// A destructive action of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Destructive {
    /// The node (and host) it destroys.
    pub host: String,
    pub step: &'static str,
    pub summary: String,
}

/// The warning for a node the inventory does not list, left alone.
fn left_alone(node: &str) -> String {
    format!(
        "node {node} is in the cluster but not in the inventory; it is left alone (removal is explicit)"
    )
}

/// The nodes of the cluster that the inventory does not list (what `--prune` removes).
pub fn unlisted_nodes(c: &Cluster, state: Option<&ClusterState>) -> Vec<String> {
    state
        .map(|s| {
            s.nodes
                .iter()
                .filter(|n| c.host(&n.name).is_none())
                .map(|n| n.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn is_destructive(&self) -> bool {
        !self.destructive.is_empty()
    }

    /// Adds the removal of nodes `names` (drain, delete, etcd member, reset of the host) as
    /// destructive actions; `then` is appended to each summary.
    pub fn remove_nodes(
        &mut self,
        c: &Cluster,
        state: &ClusterState,
        names: &[String],
        then: &str,
    ) {
        for name in names {
            let node = state.node(name);
            let address = c
                .host(name)
                .map(|h| h.ssh.address.clone())
                .or_else(|| node.and_then(|n| n.internal_ip.clone()))
                .unwrap_or_else(|| "address unknown".into());
            let cp = node.is_some_and(|n| n.control_plane)
                || c.host(name).is_some_and(|h| h.role == Role::ControlPlane);
            self.warnings.retain(|w| *w != left_alone(name));
            self.destructive.push(Destructive {
                host: name.clone(),
                step: "remove-node",
                summary: format!(
                    "{name}: drain, delete the node, {}reset its host ({address}){then}",
                    if cp { "remove its etcd member, " } else { "" }
                ),
            });
        }
    }

    pub fn for_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Action> + 'a {
        self.actions
            .iter()
            .filter(move |a| a.host.as_deref() == Some(host))
    }

    /// The artifacts any action installs, once each.
    pub fn artifacts(&self) -> Vec<Artifact> {
        let mut out: Vec<Artifact> = Vec::new();
        for a in &self.actions {
            let arts: &[Artifact] = match &a.op {
                Op::Install(art) => std::slice::from_ref(art),
                Op::Upgrade { installs, .. } => installs,
                _ => &[],
            };
            for art in arts {
                if !out.iter().any(|o| o.sha256 == art.sha256) {
                    out.push(art.clone());
                }
            }
        }
        out
    }

    /// Human-readable plan, per host then cluster-wide.
    pub fn render(&self, cluster: &Cluster) -> String {
        let mut out = format!(
            "Plan for cluster {} (Kubernetes {}, API endpoint {}:{}):\n",
            self.cluster, self.version, self.endpoint.host, self.endpoint.port
        );
        if self.actions.is_empty() && self.destructive.is_empty() {
            out.push_str("  no changes: the hosts and the cluster match the inventory\n");
        }
        let observed: Vec<String> = cluster
            .hosts
            .iter()
            .filter(|h| self.for_host(&h.name).next().is_none())
            .filter_map(|h| Some((h, self.node_ips.get(&h.name)?)))
            .filter(|(h, ip)| ip.ip != h.ssh.address)
            .map(|(h, ip)| format!("{} {} ({})", h.name, ip.ip, ip.describe()))
            .collect();
        if !observed.is_empty() {
            out.push_str(&format!("  node IPs: {}\n", observed.join(", ")));
        }
        for h in &cluster.hosts {
            let acts: Vec<&Action> = self.for_host(&h.name).collect();
            if acts.is_empty() {
                continue;
            }
            let bytes: u64 = acts.iter().map(|a| a.upload_bytes).sum();
            let no_size = acts
                .iter()
                .filter(|a| matches!(&a.op, Op::Install(art) if art.size.is_none()))
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
            let node_ip = match self.node_ips.get(&h.name) {
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
                out.push_str(&format!("  + {:<18} {}\n", a.step.name(), a.summary));
            }
        }
        let cluster_actions: Vec<&Action> =
            self.actions.iter().filter(|a| a.host.is_none()).collect();
        if !cluster_actions.is_empty() {
            out.push_str("\ncluster:\n");
            for a in cluster_actions {
                out.push_str(&format!("  + {:<18} {}\n", a.step.name(), a.summary));
            }
        }
        if !self.destructive.is_empty() {
            out.push_str("\ndestructive (confirmed on a terminal, or with --yes):\n");
            for d in &self.destructive {
                out.push_str(&format!("  - {:<18} {}\n", d.step, d.summary));
            }
        }
        for w in &self.warnings {
            out.push_str(&format!("\nwarning: {w}\n"));
        }
        let hosts = cluster
            .hosts
            .iter()
            .filter(|h| self.for_host(&h.name).next().is_some())
            .count();
        if !self.actions.is_empty() {
            out.push_str(&format!(
                "\n{} action{} on {} host{} and the cluster.\n",
                self.actions.len(),
                if self.actions.len() == 1 { "" } else { "s" },
                hosts,
                if hosts == 1 { "" } else { "s" }
            ));
        }
        if !self.destructive.is_empty() {
            out.push_str(&format!(
                "{} destructive action{}.\n",
                self.destructive.len(),
                if self.destructive.len() == 1 { "" } else { "s" }
            ));
        }
        out
    }
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

/// Everything the planner looks at.
pub struct Input<'a> {
    pub cluster: &'a Cluster,
    pub manifest: &'a ReleaseManifest,
    pub facts: &'a BTreeMap<String, Facts>,
    pub state: Option<&'a ClusterState>,
    /// The CNI manifest to apply (flannel's, rendered, or the user's), if any.
    pub cni_manifest: Option<String>,
    /// The OpenStack cloud provider to install: (manifests, cloud.conf with credentials).
    pub cloud_provider: Option<CloudProvider>,
}

/// The OpenStack cloud-controller-manager and Cinder CSI, and their cloud.conf.
#[derive(Clone)]
pub struct CloudProvider {
    pub manifest: String,
    /// Holds credentials: only ever sent to the cluster in a Secret.
    pub cloud_conf: String,
    /// The PEM CA bundle of the cloud (`cacert`), sent in the same Secret as `ca.crt`.
    pub ca_cert: Option<String>,
}

impl std::fmt::Debug for CloudProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CloudProvider({} bytes of manifests, cloud.conf <redacted>)",
            self.manifest.len()
        )
    }
}

impl Input<'_> {
    /// A host already in this cluster (by its own files, written by kubeforge).
    pub fn is_member(&self, h: &Host) -> bool {
        self.facts.get(&h.name).is_some_and(|f| {
            f.membership.role().is_some()
                && f.membership.cluster() == Some(self.cluster.name.as_str())
        }) && match self.state {
            Some(s) => s.node(&h.name).is_some(),
            None => !self.interrupted_init(h),
        }
    }

    /// `kubeadm init` on `h` stopped before it completed: kubeadm's files without kubeforge's
    /// record of a finished init or join, no API answering, and no other control plane of the
    /// inventory holding kubeadm's files (so no cluster can be behind them). The next run resets
    /// the host and runs init again.
    pub fn interrupted_init(&self, h: &Host) -> bool {
        let has_files = |h: &Host| {
            self.facts
                .get(&h.name)
                .is_some_and(|f| f.membership.role().is_some())
        };
        self.state.is_none()
            && h.role == Role::ControlPlane
            && self
                .facts
                .get(&h.name)
                .is_some_and(|f| has_files(h) && !f.membership.initialized)
            && self
                .cluster
                .control_planes()
                .all(|o| o.name == h.name || !has_files(o))
    }

    /// A host with kubeadm's files but not (or not yet) a node of the cluster: an interrupted join.
    pub fn is_stale(&self, h: &Host) -> bool {
        self.facts.get(&h.name).is_some_and(|f| {
            f.membership.role().is_some()
                && f.membership.cluster() == Some(self.cluster.name.as_str())
        }) && self.state.is_some_and(|s| s.node(&h.name).is_none())
    }

    /// The control plane that serves the cluster (first member), or that will init it.
    pub fn init_host(&self) -> Option<&Host> {
        self.cluster
            .control_planes()
            .find(|h| {
                self.facts.get(&h.name).is_some_and(|f| {
                    f.membership.role() == Some(crate::facts::MemberRole::ControlPlane)
                        && f.membership.cluster() == Some(self.cluster.name.as_str())
                })
            })
            .or_else(|| self.cluster.control_planes().next())
    }

    pub fn cluster_exists(&self) -> bool {
        self.init_host().is_some_and(|h| self.is_member(h))
    }

    /// The node IPs: the inventory's, else what the hosts report.
    pub fn node_ips(&self) -> desired::NodeIps {
        desired::NodeIps::resolve(self.cluster, self.facts).0
    }

    /// Where the local endpoint name points on `h`.
    pub fn endpoint_ip(&self, h: &Host) -> String {
        let ips = self.node_ips();
        match h.role {
            Role::Worker => "127.0.0.1".to_string(),
            Role::ControlPlane if self.is_member(h) => ips.ip(h).to_string(),
            Role::ControlPlane => self
                .init_host()
                .map(|i| ips.ip(i).to_string())
                .unwrap_or_else(|| ips.ip(h).to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{host}: {source}")]
    Desired {
        host: String,
        #[source]
        source: desired::DesiredError,
    },
    #[error("{0}: no facts (the host was not reached)")]
    NoFacts(String),
    #[error("the cluster has no control plane to run kubeadm init on")]
    NoControlPlane,
    #[error("{0}")]
    Upgrade(String),
    #[error("{0}")]
    NodeIp(String),
}

/// Computes the plan.
pub fn compute(input: &Input) -> Result<Plan, PlanError> {
    let c = input.cluster;
    let init = input.init_host().ok_or(PlanError::NoControlPlane)?;
    // members moving to another release are upgraded node by node, not in the preparation
    let upgrade = steps::upgrade::check(input).map_err(PlanError::Upgrade)?;
    let mut actions = Vec::new();
    let (node_ips, unknown) = desired::NodeIps::resolve(c, input.facts);
    if let Some(h) = c.hosts.iter().find(|h| !input.facts.contains_key(&h.name)) {
        return Err(PlanError::NoFacts(h.name.clone()));
    }
    if let Some(e) = unknown.first() {
        return Err(PlanError::NodeIp(e.clone()));
    }
    for h in &c.hosts {
        let f = input
            .facts
            .get(&h.name)
            .ok_or_else(|| PlanError::NoFacts(h.name.clone()))?;
        let want = desired::for_host(
            c,
            input.manifest,
            h,
            &f.arch,
            &input.endpoint_ip(h),
            &node_ips,
        )
        .map_err(|source| PlanError::Desired {
            host: h.name.clone(),
            source,
        })?;
        actions.extend(steps::os_prep::plan(h, f, &want));
        let deferred = upgrade.as_ref().is_some_and(|u| u.hosts.contains(&h.name));
        actions.extend(steps::runtime::plan(h, f, &want, deferred));
        actions.extend(steps::kube_binaries::plan(input, h, f, &want, deferred));
        actions.extend(steps::api_endpoint::plan(h, f, &want));
    }
    actions.extend(steps::init::plan(input, init));
    if let Some(u) = &upgrade {
        actions.extend(steps::upgrade::plan(input, init, u).map_err(|source| {
            PlanError::Desired {
                host: init.name.clone(),
                source,
            }
        })?);
    }
    actions.extend(steps::join_control_plane::plan(input, init));
    actions.extend(steps::join_worker::plan(input));
    actions.extend(steps::cni::plan(input, init));
    actions.extend(steps::cloud_provider::plan(input, init));
    let joins_or_cni = actions.iter().any(|a| {
        matches!(
            a.step,
            Step::Init | Step::JoinControlPlane | Step::JoinWorker | Step::Cni
        )
    });
    actions.extend(steps::wait_ready::plan(input, joins_or_cni));
    let mut warnings = Vec::new();
    if let Some(state) = input.state {
        for n in &state.nodes {
            if c.host(&n.name).is_none() {
                warnings.push(left_alone(&n.name));
            }
        }
    }
    // a reset of a host left with kubeadm's files is destructive too: shown apart, confirmed
    let destructive = actions
        .iter()
        .filter(|a| matches!(a.op, Op::ResetStale))
        .map(|a| Destructive {
            host: a.host.clone().unwrap_or_default(),
            step: "reset",
            summary: a.summary.clone(),
        })
        .collect();
    Ok(Plan {
        cluster: c.name.clone(),
        version: c.version.to_string(),
        endpoint: desired::api_endpoint(c),
        init_host: init.name.clone(),
        node_ips,
        actions,
        warnings,
        destructive,
    })
}

/// An action on a host.
pub fn host_action(h: &Host, step: Step, summary: impl Into<String>, op: Op) -> Action {
    Action {
        host: Some(h.name.clone()),
        step,
        summary: summary.into(),
        upload_bytes: 0,
        op,
    }
}

/// Writes of the managed files of `step` that differ from the host's, then their follow-ups.
pub fn file_actions(
    h: &Host,
    f: &Facts,
    want: &desired::HostDesired,
    step: Step,
) -> (Vec<Action>, Vec<Followup>) {
    let mut actions = Vec::new();
    let mut followups = Vec::new();
    for file in want.files.iter().filter(|m| m.step == step.name()) {
        let sha = file.sha256();
        let verb = match f.files.get(&file.path) {
            Some(have) if *have == sha => continue,
            Some(_) => "update",
            None => "write",
        };
        let mut a = host_action(
            h,
            step,
            format!("{verb} {}", file.path),
            Op::WriteFile(file.clone()),
        );
        a.upload_bytes = file.content.len() as u64;
        actions.push(a);
        for fu in &file.followups {
            if !followups.contains(fu) {
                followups.push(*fu);
            }
        }
    }
    (actions, followups)
}

pub fn followup_action(h: &Host, step: Step, fu: Followup) -> Action {
    let summary = match fu {
        Followup::Sysctl => "apply sysctl settings (sysctl --system)",
        Followup::Modules => "load kernel modules overlay, br_netfilter (built-in is fine)",
        Followup::DaemonReload => "reload systemd units",
        Followup::RestartContainerd => "restart containerd (configuration changed)",
        Followup::ReloadHaproxy => "reload haproxy (configuration changed; open connections stay)",
    };
    host_action(h, step, summary, Op::Followup(fu))
}

/// Installs of binaries whose recorded sha256 differs from the manifest's.
pub fn install_actions(
    h: &Host,
    f: &Facts,
    want: &desired::HostDesired,
    step: Step,
    components: &[&str],
) -> Vec<Action> {
    // the record alone is not trusted: a component whose binary is gone is installed again
    let binary_gone = |c: &str| {
        [
            "containerd",
            "runc",
            "kubelet",
            "kubeadm",
            "kubectl",
            "crictl",
        ]
        .contains(&c)
            && !f.installed.contains_key(c)
    };
    want.installs
        .iter()
        .filter(|a| components.contains(&a.component.as_str()))
        .filter(|a| {
            f.marker_sha(&a.component) != Some(a.sha256.as_str()) || binary_gone(&a.component)
        })
        .map(|a| {
            let from = if f.marker_sha(&a.component) == Some(a.sha256.as_str()) {
                " (its binary is missing)".to_string()
            } else {
                f.markers
                    .get(&a.component)
                    .and_then(|m| m.split_whitespace().nth(1))
                    .map(|v| format!(" (was {v})"))
                    .unwrap_or_default()
            };
            let mut act = host_action(
                h,
                step,
                format!("install {} {}{from}", a.component, a.version),
                Op::Install(a.clone()),
            );
            act.upload_bytes = a.size.unwrap_or(0);
            act
        })
        .collect()
}

#[cfg(test)]
mod destructive_tests {
    use super::*;
    use crate::cluster_state::NodeState;
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
        assert!(plan.render(&c).contains("no changes"));
        plan.remove_nodes(&c, &state, &unlisted, "");
        assert!(plan.is_destructive() && plan.is_empty());
        let out = plan.render(&c);
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
