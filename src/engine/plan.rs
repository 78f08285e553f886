//! A plan: the actions `apply` would take, per host, computed from the desired state (model +
//! release manifest) and the observed state (facts, the cluster's API) before anything changes.
//! `plan` prints it; `apply` executes it. On a converged cluster it is empty.

use super::{Action, Schedule, Workflow};
use crate::cluster_state::ClusterState;
use crate::desired::{self, HostDesired};
use crate::facts::Facts;
use crate::model::{Cluster, Host, Role};
use crate::release::{Artifact, ReleaseManifest};
use serde::Serialize;
use std::collections::BTreeMap;

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
pub fn left_alone(node: &str) -> String {
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
    /// The destructive actions of a plan, for a refusal: "remove w1 (drain, delete, reset its
    /// host) and reset cp2 (...)".
    pub fn destructive_summary(&self) -> String {
        let p = self;
        let of = |step: &str| -> Vec<&str> {
            p.destructive
                .iter()
                .filter(|d| d.step == step)
                .map(|d| d.host.as_str())
                .collect()
        };
        let (removed, reset) = (of("remove-node"), of("reset"));
        let uninstalled: Vec<&str> = p
            .destructive
            .iter()
            .filter(|d| d.step == "uninstall")
            .map(|d| d.summary.as_str())
            .collect();
        let mut what = Vec::new();
        if !removed.is_empty() {
            what.push(format!(
                "remove {} (drain, delete, reset {})",
                removed.join(", "),
                if removed.len() == 1 {
                    "its host"
                } else {
                    "their hosts"
                }
            ));
        }
        if !reset.is_empty() {
            what.push(format!(
                "reset {} (kubeadm's files of an interrupted run)",
                reset.join(", ")
            ));
        }
        if !uninstalled.is_empty() {
            what.push(format!(
                "run {} (Helm releases the inventory no longer lists)",
                uninstalled
                    .iter()
                    .map(|u| u.split(" (").next().unwrap_or(u))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        what.join(" and ")
    }

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
    /// Every image the plan imports on a host, once per platform, in order.
    pub fn images(&self) -> Vec<super::PlatformImage> {
        let mut out: std::collections::BTreeSet<super::PlatformImage> = Default::default();
        for a in &self.actions {
            out.extend(a.op.images().iter().cloned());
        }
        out.into_iter().collect()
    }

    pub fn artifacts(&self) -> Vec<Artifact> {
        let mut out: Vec<Artifact> = Vec::new();
        for a in &self.actions {
            for art in a.op.installs() {
                if !out.iter().any(|o| o.sha256 == art.sha256) {
                    out.push(art.clone());
                }
            }
        }
        out
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
    /// Mode mirror: the images (`repo:tag@digest`) the site's registry was seen to hold; None
    /// when it was not asked.
    pub mirrored: Option<std::collections::BTreeSet<String>>,
    /// The inventory's Helm charts and the cluster's releases (apply and plan only).
    pub charts: Option<crate::charts::Prepared>,
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

impl<'a> Input<'a> {
    /// The input of a day-2 workflow: what was observed, nothing to apply (no CNI manifest,
    /// no cloud provider).
    pub fn day2(
        cluster: &'a Cluster,
        manifest: &'a ReleaseManifest,
        facts: &'a BTreeMap<String, Facts>,
        state: Option<&'a ClusterState>,
    ) -> Self {
        Input {
            cluster,
            manifest,
            facts,
            state,
            cni_manifest: None,
            cloud_provider: None,
            mirrored: None,
            charts: None,
        }
    }
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
    /// Refused by policy (a host that is not this cluster's, a quorum that would be lost).
    #[error("{0}")]
    Refused(String),
}

/// The planning context: the planner's input, and what every step plans from, derived once.
pub struct PlanCx<'a> {
    pub input: &'a Input<'a>,
    /// The control plane that runs `kubeadm init`, or serves the existing cluster.
    pub init: &'a Host,
    /// Every host's node IP.
    pub node_ips: desired::NodeIps,
    /// Every host's desired state, by name.
    pub want: BTreeMap<String, HostDesired>,
}

impl<'a> std::ops::Deref for PlanCx<'a> {
    type Target = Input<'a>;
    fn deref(&self) -> &Input<'a> {
        self.input
    }
}

impl<'a> PlanCx<'a> {
    /// Derives the context; refuses a cluster with no control plane, a host with no facts,
    /// or one whose node IP cannot be told.
    pub fn new(input: &'a Input<'a>) -> Result<Self, PlanError> {
        let c = input.cluster;
        let init = input.init_host().ok_or(PlanError::NoControlPlane)?;
        if let Some(h) = c.hosts.iter().find(|h| !input.facts.contains_key(&h.name)) {
            return Err(PlanError::NoFacts(h.name.clone()));
        }
        let (node_ips, unknown) = desired::NodeIps::resolve(c, input.facts);
        if let Some(e) = unknown.first() {
            return Err(PlanError::NodeIp(e.clone()));
        }
        let mut want = BTreeMap::new();
        for h in &c.hosts {
            let f = &input.facts[&h.name];
            let w = desired::for_host(
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
            want.insert(h.name.clone(), w);
        }
        Ok(PlanCx {
            input,
            init,
            node_ips,
            want,
        })
    }

    /// The context of a day-2 workflow over the hosts that were reached: facts only for those,
    /// no desired state (it changes nothing it would render), node IPs from the inventory.
    pub fn observed(input: &'a Input<'a>) -> Result<Self, PlanError> {
        Ok(PlanCx {
            input,
            init: input.init_host().ok_or(PlanError::NoControlPlane)?,
            node_ips: desired::NodeIps::from_inventory(input.cluster),
            want: BTreeMap::new(),
        })
    }

    /// A host's facts (every host has them: [`PlanCx::new`] checked).
    pub fn facts_of(&self, h: &Host) -> &'a Facts {
        &self.input.facts[&h.name]
    }

    /// A host's desired state.
    pub fn want(&self, h: &Host) -> &HostDesired {
        &self.want[&h.name]
    }
}

/// Computes the plan of a workflow: every step's actions, in the workflow's order, before
/// anything changes. The actions of the steps of one `PerHost` group are listed host by host.
pub fn compute(workflow: Workflow<'_>, input: &Input) -> Result<Plan, PlanError> {
    compute_with(workflow, PlanCx::new(input)?)
}

/// Plans a day-2 workflow over the hosts that answered (see [`PlanCx::observed`]).
pub fn compute_observed(workflow: Workflow<'_>, input: &Input) -> Result<Plan, PlanError> {
    compute_with(workflow, PlanCx::observed(input)?)
}

/// [`compute`] in a given context.
pub fn compute_with(workflow: Workflow<'_>, cx: PlanCx) -> Result<Plan, PlanError> {
    let input = cx.input;
    let c = input.cluster;
    let mut actions: Vec<Action> = Vec::new();
    let mut group: Option<(&'static str, usize)> = None;
    for step in workflow {
        let planned = step.plan(&cx, &actions)?;
        match (step.schedule(c), group) {
            (Schedule::PerHost { group: g }, Some((open, start))) if g == open => {
                actions.extend(planned);
                // host by host, each host's actions in step order (a stable sort)
                let order = |a: &Action| {
                    c.hosts
                        .iter()
                        .position(|h| a.host.as_deref() == Some(h.name.as_str()))
                        .unwrap_or(usize::MAX)
                };
                actions[start..].sort_by_key(order);
            }
            (Schedule::PerHost { group: g }, _) => {
                group = Some((g, actions.len()));
                actions.extend(planned);
            }
            _ => {
                group = None;
                actions.extend(planned);
            }
        }
    }
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
        .filter_map(|a| {
            Some(Destructive {
                host: a.host.clone().unwrap_or_default(),
                step: a.op.destructive()?,
                summary: a.summary.clone(),
            })
        })
        .collect();
    Ok(Plan {
        cluster: c.name.clone(),
        version: c.version.to_string(),
        endpoint: desired::api_endpoint(c),
        init_host: cx.init.name.clone(),
        node_ips: cx.node_ips,
        actions,
        warnings,
        destructive,
    })
}
