//! remove-node: the nodes to remove, one at a time (etcd loses one member at a time). Each is
//! drained (honouring PodDisruptionBudgets), deleted, its etcd member removed after a quorum
//! check, and its host reset. The last control plane is never removed. The hosts were reached
//! and checked to be this cluster's before the plan (`day2::reach_and_check`).

use crate::cluster_state::{ClusterState, NodeState, kubectl};
use crate::engine::{Action, Ctx, PlanCx, PlanError, Run, RunFuture, Schedule, Step, StepError};
use crate::etcd::{Etcd, Member};
use crate::model::{Cluster, Role};
use crate::ssh::Session;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What happened to one removed node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Removed {
    pub name: String,
    pub drained: bool,
    pub etcd_member_removed: bool,
    /// False when the host could not be reached: its cleanup was skipped.
    pub host_reset: bool,
    pub warnings: Vec<String>,
}

pub struct RemoveNode {
    names: Vec<String>,
    shared: Arc<Shared>,
}

/// What every removal of one run reads, and where it records what it did.
struct Shared {
    state: ClusterState,
    /// The hosts of the nodes to remove that were reached.
    targets: BTreeMap<String, Arc<Session>>,
    /// Remove a control plane whose etcd member is dead.
    force: bool,
    remove_binaries: bool,
    removed: Mutex<Vec<Removed>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "removals of {:?}",
            self.targets.keys().collect::<Vec<_>>()
        )
    }
}

impl RemoveNode {
    pub fn new(
        names: Vec<String>,
        state: ClusterState,
        targets: BTreeMap<String, Arc<Session>>,
        force: bool,
        remove_binaries: bool,
    ) -> Self {
        RemoveNode {
            names,
            shared: Arc::new(Shared {
                state,
                targets,
                force,
                remove_binaries,
                removed: Mutex::new(Vec::new()),
            }),
        }
    }

    /// What the removals did, in order.
    pub fn removed(&self) -> Vec<Removed> {
        self.shared
            .removed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Step for RemoveNode {
    fn name(&self) -> &'static str {
        "remove-node"
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::OneAtATime
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        let c = cx.cluster;
        let state = &self.shared.state;
        let mut out = Vec::new();
        // removed earlier in this run: never used as the API host again
        let mut gone: Vec<String> = Vec::new();
        for name in &self.names {
            let node = state.node(name).cloned();
            let is_cp = node.as_ref().is_some_and(|n| n.control_plane)
                || c.host(name).is_some_and(|h| h.role == Role::ControlPlane);
            if is_cp {
                let cps = state
                    .nodes
                    .iter()
                    .filter(|n| n.control_plane && !gone.contains(&n.name))
                    .count();
                if cps <= 1 {
                    return Err(PlanError::Refused(format!(
                        "{name} is the last control plane: removing it would destroy the cluster (use kubeforge reset)"
                    )));
                }
            }
            let address = c
                .host(name)
                .map(|h| h.ssh.address.clone())
                .or_else(|| node.as_ref().and_then(|n| n.internal_ip.clone()))
                .unwrap_or_else(|| "address unknown".into());
            out.push(Action {
                host: Some(name.clone()),
                step: self.name(),
                summary: format!(
                    "{name}: drain, delete the node, {}reset its host ({address})",
                    if is_cp {
                        "remove its etcd member, "
                    } else {
                        ""
                    }
                ),
                upload_bytes: 0,
                op: Arc::new(RemoveOne {
                    name: name.clone(),
                    node,
                    is_cp,
                    earlier: gone.clone(),
                    shared: self.shared.clone(),
                }),
            });
            gone.push(name.clone());
        }
        Ok(out)
    }
}

/// The removal of one node.
#[derive(Debug)]
struct RemoveOne {
    name: String,
    node: Option<NodeState>,
    is_cp: bool,
    /// Removed earlier in this run.
    earlier: Vec<String>,
    shared: Arc<Shared>,
}

impl Run for RemoveOne {
    fn run<'a>(&'a self, ctx: &'a Ctx, _host: &'a str) -> RunFuture<'a> {
        Box::pin(async move {
            let r = remove_one(ctx, self).await?;
            self.shared
                .removed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(r);
            Ok(())
        })
    }
    fn destructive(&self) -> Option<&'static str> {
        Some("remove-node")
    }
}

async fn remove_one(ctx: &Ctx, op: &RemoveOne) -> Result<Removed, StepError> {
    let c = &ctx.cluster;
    let shared = &op.shared;
    let name = op.name.as_str();
    let failed =
        |e: &dyn std::fmt::Display| StepError::failed(name, crate::secrets::redact(&e.to_string()));
    let mut except = op.earlier.clone();
    except.push(name.to_string());
    let node = op.node.as_ref();
    let mut r = Removed {
        name: name.to_string(),
        drained: false,
        etcd_member_removed: false,
        host_reset: false,
        warnings: Vec::new(),
    };
    let session: Option<&Arc<Session>> = shared.targets.get(name);
    // etcd first: refuse before anything changes
    let mut member = None;
    if op.is_cp {
        let (members, healthy) =
            etcd_view(c, &ctx.sessions, &shared.state, &except, (name, session)).await?;
        let address = c
            .host(name)
            .map(|h| h.internal_address().to_string())
            .or_else(|| node.and_then(|n| n.internal_ip.clone()))
            .unwrap_or_default();
        member = members.iter().find(|m| m.is_on(&address, name)).cloned();
        quorum_check(name, member.as_ref(), &members, &healthy, shared.force)
            .map_err(|m| StepError::failed(name, m))?;
        if member.is_none() {
            r.warnings.push(format!(
                "{name}: no etcd member is on {address}; if one is left over, remove it by hand (etcdctl member list)"
            ));
        }
    }
    let api = api_host(c, &ctx.sessions, &shared.state, &except).ok_or_else(|| {
        StepError::failed(name, "no control plane is reachable to run kubectl on")
    })?;
    if let Some(n) = node {
        let alive = session.is_some() && n.ready;
        if alive {
            tracing::info!("{name}: cordon and drain");
            super::upgrade::cordon(name, api)
                .await
                .map_err(|e| failed(&e))?;
            if let Err(e) = super::upgrade::drain(&c.options, name, api).await {
                // the node stays in the cluster, uncordoned, as it was
                let note = match super::upgrade::uncordon(name, api).await {
                    Ok(()) => "nothing was removed".to_string(),
                    Err(u) => format!(
                        "nothing was removed, but the node could not be uncordoned ({u}): `kubectl uncordon {name}`"
                    ),
                };
                return Err(failed(&format!("{e}; {note}")));
            }
            r.drained = true;
        } else {
            r.warnings.push(format!(
                "{name} is not Ready or not reachable: its pods were not drained"
            ));
        }
        tracing::info!("{name}: delete the node");
        api.run(&kubectl(&format!(
            "delete node {} --wait=false",
            crate::util::shell_quote(name)
        )))
        .await
        .map_err(|e| failed(&e))?;
    }
    if let Some(m) = &member {
        tracing::info!("{name}: remove etcd member {}", m.id);
        let etcd = Etcd::connect(api)
            .await
            .map_err(|e| StepError::failed(api.name(), e.to_string()))?;
        etcd.remove(&m.id)
            .await
            .map_err(|e| StepError::failed(api.name(), e.to_string()))?;
        r.etcd_member_removed = true;
    }
    match session {
        Some(s) => {
            tracing::info!("{name}: reset the host");
            super::reset::run(
                s,
                super::reset::Scope::Full {
                    remove_binaries: shared.remove_binaries,
                },
            )
            .await
            .map_err(|e| failed(&e))?;
            r.host_reset = true;
        }
        None => r.warnings.push(format!(
            "{name} is unreachable: it was removed from the cluster, but its own cleanup (kubeadm reset) was skipped; reset it before reusing it"
        )),
    }
    Ok(r)
}

/// A reachable control plane not in `except` (the host being removed, and those removed
/// earlier in this run) to run kubectl on: the one that served the API first.
pub fn api_host<'a>(
    c: &crate::model::Cluster,
    sessions: &'a BTreeMap<String, Arc<Session>>,
    state: &ClusterState,
    except: &[String],
) -> Option<&'a Arc<Session>> {
    let first = sessions
        .get(&state.api_host)
        .filter(|_| !except.contains(&state.api_host));
    first.or_else(|| {
        c.control_planes()
            .filter(|h| !except.contains(&h.name))
            .find_map(|h| sessions.get(&h.name))
    })
}

/// Health of every etcd member: the member list from a serving control plane, and each
/// member's own /health through its host. The host being removed (`target`) may be gone from
/// the inventory (apply --prune, a lowered OpenStack count): its session is passed in.
pub async fn etcd_view(
    c: &crate::model::Cluster,
    sessions: &BTreeMap<String, Arc<Session>>,
    state: &ClusterState,
    except: &[String],
    target: (&str, Option<&Arc<Session>>),
) -> Result<(Vec<Member>, BTreeMap<String, bool>), StepError> {
    let api = api_host(c, sessions, state, except).ok_or_else(|| {
        StepError::failed(
            target.0,
            "no other control plane is reachable to change etcd through",
        )
    })?;
    let etcd = Etcd::connect(api)
        .await
        .map_err(|e| StepError::failed(api.name(), e.to_string()))?;
    let members = etcd
        .members()
        .await
        .map_err(|e| StepError::failed(api.name(), e.to_string()))?;
    let mut healthy = BTreeMap::new();
    for m in &members {
        let host = c
            .control_planes()
            .find(|h| m.is_on(h.internal_address(), &h.name))
            .map(|h| h.name.clone())
            .or_else(|| {
                state
                    .nodes
                    .iter()
                    .find(|n| {
                        n.internal_ip
                            .as_deref()
                            .is_some_and(|ip| m.is_on(ip, &n.name))
                    })
                    .map(|n| n.name.clone())
            });
        let session = host.as_deref().and_then(|h| {
            if h == target.0 {
                target.1.or_else(|| sessions.get(h))
            } else {
                sessions.get(h)
            }
        });
        let ok = match session {
            Some(s) => match Etcd::connect(s).await {
                Ok(e) => e.healthy().await,
                Err(_) => false,
            },
            None => false,
        };
        healthy.insert(m.id.clone(), ok);
    }
    Ok((members, healthy))
}

/// Decides whether removing `name`'s etcd member is safe. Returns the member to remove.
pub fn quorum_check(
    name: &str,
    member: Option<&Member>,
    members: &[Member],
    healthy: &BTreeMap<String, bool>,
    force: bool,
) -> Result<(), String> {
    let voting: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
    let Some(me) = member else { return Ok(()) };
    if voting.len() <= 1 && !me.is_learner {
        return Err(format!(
            "{name} is the last etcd member: removing it would destroy the cluster (use reset instead)"
        ));
    }
    let me_healthy = healthy.get(&me.id).copied().unwrap_or(false);
    if !me_healthy && !force {
        return Err(format!(
            "{name}'s etcd member does not answer: removing a dead member must be explicit; run again with --force"
        ));
    }
    if me.is_learner {
        return Ok(());
    }
    let remaining: Vec<&&Member> = voting.iter().filter(|m| m.id != me.id).collect();
    let alive = remaining
        .iter()
        .filter(|m| healthy.get(&m.id).copied().unwrap_or(false))
        .count();
    let quorum = remaining.len() / 2 + 1;
    if alive < quorum {
        let down: Vec<&str> = remaining
            .iter()
            .filter(|m| !healthy.get(&m.id).copied().unwrap_or(false))
            .map(|m| {
                if m.name.is_empty() {
                    m.id.as_str()
                } else {
                    m.name.as_str()
                }
            })
            .collect();
        return Err(format!(
            "removing {name} would leave etcd with {alive} healthy of {} members, below its quorum of {quorum} ({} down); bring {} back first",
            remaining.len(),
            down.join(", "),
            if down.len() == 1 { "it" } else { "them" }
        ));
    }
    Ok(())
}
