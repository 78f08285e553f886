//! Day-2 workflows beside `apply`: removing nodes safely, resetting the whole cluster.
//!
//! Removal: cordon and drain, `kubectl delete node`, the etcd member of a control plane removed
//! through a surviving control plane, then `kubeadm reset` and cleanup on the host. A dead host
//! is still removed from the cluster, with a warning that its own cleanup was skipped. The last
//! control plane is never removed, nor one whose removal would leave etcd without quorum; a
//! dead etcd member needs an explicit --force.

use crate::cluster_state::{self, ClusterState, NodeState, kubectl};
use crate::etcd::{Etcd, Member};
use crate::fleet::Fleet;
use crate::inventory::Loaded;
use crate::model::{Host, Role, SshTarget};
use crate::progress::Progress;
use crate::ssh::{ConnectOptions, Session};
use crate::status::connect_setup;
use crate::steps::{self, reset::Scope};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Day2Error {
    #[error("{0}")]
    Refused(String),
    #[error("{host}: {message}")]
    Failed { host: String, message: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn failed(host: &str, e: impl std::fmt::Display) -> Day2Error {
    Day2Error::Failed {
        host: host.to_string(),
        message: crate::secrets::redact(&e.to_string()),
    }
}

pub struct RemoveOptions {
    pub force: bool,
    pub remove_binaries: bool,
    pub bars: bool,
}

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

/// The connections and the cluster's view needed for removals.
pub struct Session2 {
    pub fleet: Fleet,
    pub connector: Arc<crate::ssh::Connector>,
    pub resolver: crate::ssh::Resolver,
    pub state: ClusterState,
}

/// Connects to every inventory host (unreachable ones are allowed) and reads the cluster.
pub async fn open(
    loaded: &Loaded,
    connect: ConnectOptions,
    bars: bool,
) -> Result<Session2, Day2Error> {
    let c = &loaded.cluster;
    let (connector, resolver) = connect_setup(loaded, connect)?;
    let names: Vec<String> = c.hosts.iter().map(|h| h.name.clone()).collect();
    let progress = Arc::new(Progress::new("connect", &names, bars));
    let hosts: Vec<&Host> = c.hosts.iter().collect();
    let fleet = Fleet::connect(c, &hosts, connector.clone(), &resolver, &progress).await;
    drop(progress);
    for (h, e) in &fleet.unreachable {
        tracing::warn!("{h} is unreachable: {e}");
    }
    let mut last = None;
    let mut state = None;
    for h in c.control_planes() {
        if let Some(s) = fleet.session(&h.name) {
            match cluster_state::observe(s).await {
                Ok(st) => {
                    state = Some(st);
                    break;
                }
                Err(e) => last = Some(e.to_string()),
            }
        }
    }
    let state = state.ok_or_else(|| {
        Day2Error::Refused(format!(
            "no control plane of the inventory answers the cluster's API{}",
            last.map(|l| format!(" (last error: {l})"))
                .unwrap_or_default()
        ))
    })?;
    Ok(Session2 {
        fleet,
        connector,
        resolver,
        state,
    })
}

impl Session2 {
    /// A reachable control plane not in `except` (the host being removed, and those removed
    /// earlier in this run), whose kubectl answers.
    fn api(&self, c: &crate::model::Cluster, except: &[String]) -> Option<&Arc<Session>> {
        let first = self
            .fleet
            .session(&self.state.api_host)
            .filter(|_| !except.contains(&self.state.api_host));
        first.or_else(|| {
            c.control_planes()
                .filter(|h| !except.contains(&h.name))
                .find_map(|h| self.fleet.session(&h.name))
        })
    }
}

/// Health of every etcd member: the member list from a serving control plane, and each
/// member's own /health through its host. The host being removed (`target`) may be gone from
/// the inventory (apply --prune, a lowered OpenStack count): its session is passed in.
async fn etcd_view(
    loaded: &Loaded,
    s2: &Session2,
    except: &[String],
    target: (&str, Option<&Arc<Session>>),
) -> Result<(Vec<Member>, BTreeMap<String, bool>), Day2Error> {
    let c = &loaded.cluster;
    let api = s2.api(c, except).ok_or_else(|| {
        Day2Error::Refused("no other control plane is reachable to change etcd through".into())
    })?;
    let etcd = Etcd::connect(api)
        .await
        .map_err(|e| failed(api.name(), e))?;
    let members = etcd.members().await.map_err(|e| failed(api.name(), e))?;
    let mut healthy = BTreeMap::new();
    for m in &members {
        let host = c
            .control_planes()
            .find(|h| m.is_on(h.internal_address(), &h.name))
            .map(|h| h.name.clone())
            .or_else(|| {
                s2.state
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
                target.1.or_else(|| s2.fleet.session(h))
            } else {
                s2.fleet.session(h)
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

/// How to reach a node that is not in the inventory any more: its InternalIP with the
/// inventory's SSH defaults.
fn target_for(loaded: &Loaded, node: &NodeState) -> Option<SshTarget> {
    let ip = node.internal_ip.clone()?;
    let ssh = &loaded.inventory.spec.ssh;
    let base = loaded.file.parent().unwrap_or(std::path::Path::new("."));
    let home = dirs::home_dir();
    Some(SshTarget {
        address: ip,
        port: ssh.port,
        user: ssh.user.clone(),
        key_path: ssh
            .key_path
            .as_deref()
            .map(|k| crate::inventory::expand::resolve_path(k, base, home.as_deref())),
        bastion: loaded
            .cluster
            .hosts
            .first()
            .and_then(|h| h.ssh.bastion.clone()),
    })
}

/// Removes nodes, one at a time.
pub async fn remove(
    loaded: &Loaded,
    s2: &Session2,
    names: &[String],
    opts: &RemoveOptions,
) -> Result<Vec<Removed>, Day2Error> {
    let c = &loaded.cluster;
    let mut out = Vec::new();
    // removed earlier in this run: never used as the API host again
    let mut gone: Vec<String> = Vec::new();
    for name in names {
        let mut except = gone.clone();
        except.push(name.clone());
        let node = s2.state.node(name).cloned();
        let inv_host = c.host(name);
        if node.is_none() && inv_host.is_none() {
            return Err(Day2Error::Refused(format!(
                "{name} is neither a node of the cluster nor a host of the inventory"
            )));
        }
        let is_cp = node.as_ref().is_some_and(|n| n.control_plane)
            || inv_host.is_some_and(|h| h.role == Role::ControlPlane);
        if is_cp {
            let cps = s2
                .state
                .nodes
                .iter()
                .filter(|n| n.control_plane && !gone.contains(&n.name))
                .count();
            if cps <= 1 {
                return Err(Day2Error::Refused(format!(
                    "{name} is the last control plane: removing it would destroy the cluster (use kubeforge reset)"
                )));
            }
        }
        let mut r = Removed {
            name: name.clone(),
            drained: false,
            etcd_member_removed: false,
            host_reset: false,
            warnings: Vec::new(),
        };
        // the host: from the fleet, or reached through the node's address
        let session: Option<Arc<Session>> = match s2.fleet.session(name) {
            Some(s) => Some(s.clone()),
            None if inv_host.is_none() => match node.as_ref().and_then(|n| target_for(loaded, n)) {
                Some(t) => s2
                    .connector
                    .connect(&s2.resolver.target(name, &t))
                    .await
                    .ok()
                    .map(Arc::new),
                None => None,
            },
            None => None,
        };
        // etcd first: refuse before anything changes
        let mut member = None;
        if is_cp {
            let (members, healthy) =
                etcd_view(loaded, s2, &except, (name, session.as_ref())).await?;
            let address = inv_host
                .map(|h| h.internal_address().to_string())
                .or_else(|| node.as_ref().and_then(|n| n.internal_ip.clone()))
                .unwrap_or_default();
            member = members.iter().find(|m| m.is_on(&address, name)).cloned();
            quorum_check(name, member.as_ref(), &members, &healthy, opts.force)
                .map_err(Day2Error::Refused)?;
            if member.is_none() {
                r.warnings.push(format!(
                    "{name}: no etcd member is on {address}; if one is left over, remove it by hand (etcdctl member list)"
                ));
            }
        }
        let api = s2.api(c, &except).ok_or_else(|| {
            Day2Error::Refused("no control plane is reachable to run kubectl on".into())
        })?;
        if let Some(n) = &node {
            let alive = session.is_some() && n.ready;
            if alive {
                tracing::info!("{name}: cordon and drain");
                steps::upgrade::cordon(name, api)
                    .await
                    .map_err(|e| failed(name, e))?;
                if let Err(e) = steps::upgrade::drain(&c.options, name, api).await {
                    // the node stays in the cluster, uncordoned, as it was
                    let _ = steps::upgrade::uncordon(name, api).await;
                    return Err(failed(name, format!("{e}; nothing was removed")));
                }
                r.drained = true;
            } else {
                r.warnings.push(format!(
                    "{name} is not Ready or not reachable: its pods were not drained"
                ));
            }
            tracing::info!("{name}: delete the node");
            api.run(&kubectl(&format!("delete node {name} --wait=false")))
                .await
                .map_err(|e| failed(name, e))?;
        }
        if let Some(m) = &member {
            tracing::info!("{name}: remove etcd member {}", m.id);
            let etcd = Etcd::connect(api)
                .await
                .map_err(|e| failed(api.name(), e))?;
            etcd.remove(&m.id)
                .await
                .map_err(|e| failed(api.name(), e))?;
            r.etcd_member_removed = true;
        }
        match &session {
            Some(s) => {
                tracing::info!("{name}: reset the host");
                steps::reset::run(
                    s,
                    Scope::Full {
                        remove_binaries: opts.remove_binaries,
                    },
                )
                .await
                .map_err(|e| failed(name, e))?;
                r.host_reset = true;
            }
            None => r.warnings.push(format!(
                "{name} is unreachable: it was removed from the cluster, but its own cleanup (kubeadm reset) was skipped; reset it before reusing it"
            )),
        }
        gone.push(name.clone());
        out.push(r);
    }
    Ok(out)
}

/// Resets every reachable host of the inventory. Returns the hosts skipped (unreachable).
pub async fn reset_all(
    loaded: &Loaded,
    connect: ConnectOptions,
    remove_binaries: bool,
    bars: bool,
) -> Result<Vec<(String, String)>, Day2Error> {
    let c = &loaded.cluster;
    let (connector, resolver) = connect_setup(loaded, connect)?;
    let names: Vec<String> = c.hosts.iter().map(|h| h.name.clone()).collect();
    let progress = Arc::new(Progress::new("reset", &names, bars));
    let hosts: Vec<&Host> = c.hosts.iter().collect();
    let (fleet, results) = Fleet::connect_and(c, &hosts, connector, &resolver, &progress, {
        let progress = progress.clone();
        move |name, s| {
            let progress = progress.clone();
            async move {
                progress.set(&name, "kubeadm reset and cleanup");
                let r = steps::reset::run(&s, Scope::Full { remove_binaries }).await;
                progress.finish(
                    &name,
                    r.is_ok(),
                    if r.is_ok() { "reset" } else { "reset failed" },
                );
                r.map_err(|e| match e {
                    steps::StepError::Ssh(e) => *e,
                    other => crate::ssh::SshError::Config {
                        host: name.clone(),
                        message: other.to_string(),
                    },
                })
            }
        }
    })
    .await;
    let failures: Vec<(String, String)> = results
        .into_iter()
        .filter_map(|(h, r)| r.err().map(|e| (h, e.to_string())))
        .collect();
    fleet.close().await;
    if !failures.is_empty() {
        return Err(Day2Error::Failed {
            host: failures
                .iter()
                .map(|(h, _)| h.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            message: failures
                .iter()
                .map(|(_, e)| e.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(fleet
        .unreachable
        .iter()
        .map(|(h, e)| (h.clone(), e.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, name: &str) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![],
            is_learner: false,
        }
    }

    #[test]
    fn quorum_rules() {
        let members = vec![m("1", "cp1"), m("2", "cp2"), m("3", "cp3")];
        let all = BTreeMap::from([
            ("1".to_string(), true),
            ("2".to_string(), true),
            ("3".to_string(), true),
        ]);
        assert!(quorum_check("cp3", Some(&members[2]), &members, &all, false).is_ok());
        // cp3 is down: removing cp2 leaves 1 of 2 healthy, below quorum 2
        let down = BTreeMap::from([
            ("1".to_string(), true),
            ("2".to_string(), true),
            ("3".to_string(), false),
        ]);
        let e = quorum_check("cp2", Some(&members[1]), &members, &down, false).unwrap_err();
        assert!(
            e.contains("1 healthy of 2 members, below its quorum of 2 (cp3 down)"),
            "{e}"
        );
        // removing the dead one needs --force, and then it is safe
        assert!(
            quorum_check("cp3", Some(&members[2]), &members, &down, false)
                .unwrap_err()
                .contains("--force")
        );
        assert!(quorum_check("cp3", Some(&members[2]), &members, &down, true).is_ok());
        // the last member
        let one = vec![m("1", "cp1")];
        assert!(
            quorum_check("cp1", Some(&one[0]), &one, &all, true)
                .unwrap_err()
                .contains("last etcd member")
        );
        // no member (a worker, or already gone)
        assert!(quorum_check("w1", None, &members, &all, false).is_ok());
    }
}
