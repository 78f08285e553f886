//! Day-2 workflows beside `apply`: removing nodes safely, resetting the whole cluster.
//!
//! Removal: cordon and drain, `kubectl delete node`, the etcd member of a control plane removed
//! through a surviving control plane, then `kubeadm reset` and cleanup on the host. A dead host
//! is still removed from the cluster, with a warning that its own cleanup was skipped. The last
//! control plane is never removed, nor one whose removal would leave etcd without quorum; a
//! dead etcd member needs an explicit --force.
//!
//! Ownership: before a host is reset (node removal, prune, scale-down, `reset`), its facts are
//! read: kubeforge's marker (/etc/kubeforge/cluster) and the Kubernetes CA it holds. A host
//! of another cluster, or one that nothing shows to be this cluster's (a machine at an address
//! a node's own kubelet reported), is refused unless the operator passes --force.

use crate::cluster_state::{self, ClusterState, NodeState};
#[cfg(test)]
use crate::etcd::Member;
use crate::facts::Facts;
use crate::fleet::Fleet;
use crate::inventory::Loaded;
use crate::model::SshTarget;
use crate::ssh::{ConnectOptions, Session};
use crate::status::{connect_all, connect_setup};
use crate::steps;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Day2Error {
    #[error("{0}")]
    Refused(String),
    #[error("{host}: {message}")]
    Failed { host: String, message: String },
    /// A step stopped: its message names the host.
    #[error("{0}")]
    Stopped(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub struct RemoveOptions {
    /// Remove a control plane whose etcd member is dead.
    pub force: bool,
    /// Reset hosts that the cluster cannot vouch for (see [`vouch`]).
    pub force_unvouched: bool,
    pub remove_binaries: bool,
    pub bars: bool,
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
    let (connector, resolver) = connect_setup(loaded, connect.clone())?;
    let (fleet, _, _) = connect_all(loaded, connect, "connect", bars, |_, _, _| async {
        Ok::<(), crate::ssh::SshError>(())
    })
    .await?;
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

pub use crate::ownership::{CaHash, Refusal, has_kubeadm_state, reset_decision, vouch};
pub use crate::steps::remove_node::{Removed, api_host, quorum_check};

/// The CA of the cluster: the one of its serving control plane.
async fn cluster_ca(s2: &Session2) -> Option<CaHash> {
    let s = s2.fleet.session(&s2.state.api_host)?;
    match crate::facts::gather(s).await {
        Ok(f) => CaHash::of(&f.membership),
        Err(e) => {
            tracing::warn!("{}: cannot read the cluster's CA: {e}", s.name());
            None
        }
    }
}

/// How a host to be reset was reached: (its address, how kubeforge knows it).
fn reached_at(loaded: &Loaded, name: &str, node: Option<&NodeState>) -> (String, String) {
    match loaded.cluster.host(name) {
        Some(h) => (h.ssh.address.clone(), "its address in the inventory".into()),
        None => (
            node.and_then(|n| n.internal_ip.clone()).unwrap_or_default(),
            format!("the InternalIP the cluster reports for {name}"),
        ),
    }
}

/// Checks that the host of node `name` is this cluster's, before anything is removed. A host
/// outside the inventory (reached at the node's InternalIP) must also carry the node's name.
fn check_owned(
    loaded: &Loaded,
    name: &str,
    node: Option<&NodeState>,
    facts: Result<&Facts, String>,
    cluster_ca: Option<&CaHash>,
) -> Result<(), Day2Error> {
    let r = facts.map_err(Refusal::NoFacts).and_then(|f| {
        vouch(&f.membership, &loaded.cluster.name, cluster_ca)?;
        if loaded.cluster.host(name).is_none() && f.hostname != name {
            return Err(Refusal::OtherName {
                hostname: f.hostname.clone(),
                node: name.to_string(),
            });
        }
        Ok(())
    });
    r.map_err(|why| {
        let (address, how) = reached_at(loaded, name, node);
        Day2Error::Refused(format!(
            "{name}: refusing to reset the host at {address} ({how}): {why}; nothing was removed. Check that host, or run again with --force to remove {name} and reset it anyway"
        ))
    })
}

/// Reaches the hosts of the nodes to remove and checks that each is this cluster's (unless
/// `force_unvouched`), before anything changes. Returns each reachable host's session.
pub async fn reach_and_check(
    loaded: &Loaded,
    s2: &Session2,
    names: &[String],
    force_unvouched: bool,
) -> Result<BTreeMap<String, Arc<Session>>, Day2Error> {
    let c = &loaded.cluster;
    let mut sessions = BTreeMap::new();
    let mut ca: Option<Option<CaHash>> = None;
    for name in names {
        let node = s2.state.node(name);
        let inv_host = c.host(name);
        if node.is_none() && inv_host.is_none() {
            return Err(Day2Error::Refused(format!(
                "{name} is neither a node of the cluster nor a host of the inventory"
            )));
        }
        // the host: from the fleet, or reached through the node's address
        let session: Option<Arc<Session>> = match s2.fleet.session(name) {
            Some(s) => Some(s.clone()),
            None if inv_host.is_none() => match node.and_then(|n| target_for(loaded, n)) {
                Some(t) => match s2.connector.connect(&s2.resolver.target(name, &t)).await {
                    Ok(s) => Some(Arc::new(s)),
                    Err(e) => {
                        tracing::warn!("{name}: not reached at its node address: {e}");
                        None
                    }
                },
                None => None,
            },
            None => None,
        };
        let Some(session) = session else { continue };
        if !force_unvouched {
            if ca.is_none() {
                ca = Some(cluster_ca(s2).await);
            }
            let facts = crate::facts::gather(&session)
                .await
                .map_err(|e| e.to_string());
            check_owned(
                loaded,
                name,
                node,
                facts.as_ref().map_err(Clone::clone),
                ca.as_ref().and_then(Option::as_ref),
            )?;
        }
        sessions.insert(name.clone(), session);
    }
    Ok(sessions)
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

/// Removes nodes, one at a time: the remove-node step on the engine. Every host is reached
/// and checked, and the plan made, before anything changes.
pub async fn remove(
    loaded: &Loaded,
    s2: &Session2,
    names: &[String],
    opts: &RemoveOptions,
) -> Result<Vec<Removed>, Day2Error> {
    let c = &loaded.cluster;
    // every host first: refuse before anything changes
    let targets = reach_and_check(loaded, s2, names, opts.force_unvouched).await?;
    let step = steps::remove_node::RemoveNode::new(
        names.to_vec(),
        s2.state.clone(),
        targets,
        opts.force,
        opts.remove_binaries,
    );
    let manifest = loaded
        .catalog
        .get(&c.version)
        .ok_or_else(|| anyhow::anyhow!("no release manifest for Kubernetes {}", c.version))?;
    let facts = BTreeMap::new();
    let input = crate::engine::Input::day2(c, manifest, &facts, Some(&s2.state));
    let workflow: [&dyn crate::engine::Step; 1] = [&step];
    let mut plan = crate::engine::plan::compute_observed(&workflow, &input)
        .map_err(|e| Day2Error::Refused(e.to_string()))?;
    // kubectl runs where the cluster's API answered
    plan.init_host = s2.state.api_host.clone();
    let r = crate::engine::exec::run_day2(&workflow, &plan, c, &s2.fleet.sessions, opts.bars).await;
    let removed = step.removed();
    match r {
        Ok(()) => Ok(removed),
        Err(f) => Err(Day2Error::Stopped(
            f.failures
                .into_iter()
                .map(|(_, e)| e)
                .collect::<Vec<_>>()
                .join("\n"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Membership;

    fn m(id: &str, name: &str) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![],
            is_learner: false,
        }
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn host(marker: Option<&str>, spki: Option<&str>, file: Option<&str>) -> Membership {
        let mut m = Membership::default();
        if let Some(c) = marker {
            m.marker.insert("cluster".into(), c.into());
        }
        m.ca_spki_sha256 = spki.map(String::from);
        m.ca_sha256 = file.map(String::from);
        if spki.is_some() || file.is_some() {
            m.kubeconfigs.push("kubelet.conf".into());
        }
        m
    }

    fn ca(spki: Option<&str>, file: Option<&str>) -> CaHash {
        CaHash {
            spki: spki.map(String::from),
            file: file.map(String::from),
        }
    }

    #[test]
    fn vouching_for_a_host() {
        let ours = ca(Some(A), Some(A));
        // ours: the marker, with the cluster's CA, or without a CA yet (only os-prep ran)
        assert_eq!(
            vouch(&host(Some("prod"), Some(A), Some(A)), "prod", Some(&ours)),
            Ok(())
        );
        assert_eq!(
            vouch(&host(Some("prod"), None, None), "prod", Some(&ours)),
            Ok(())
        );
        assert_eq!(vouch(&host(Some("prod"), None, None), "prod", None), Ok(()));
        // no marker, but the cluster's CA (by key: the file may be encoded differently)
        assert_eq!(
            vouch(&host(None, Some(A), Some(B)), "prod", Some(&ours)),
            Ok(())
        );
        // without openssl on one side: by the certificate file
        assert_eq!(
            vouch(&host(None, None, Some(A)), "prod", Some(&ours)),
            Ok(())
        );
        // another cluster's marker, even with our CA
        let e = vouch(
            &host(Some("staging"), Some(A), Some(A)),
            "prod",
            Some(&ours),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "its /etc/kubeforge/cluster names cluster \"staging\", not \"prod\""
        );
        // another CA, with or without our marker (a cluster of the same name)
        for m in [
            host(Some("prod"), Some(B), Some(B)),
            host(None, Some(B), Some(A)),
            host(None, None, Some(B)),
        ] {
            let e = vouch(&m, "prod", Some(&ours)).unwrap_err();
            assert_eq!(
                e.to_string(),
                "its Kubernetes CA (/etc/kubernetes/pki/ca.crt) is not the CA of cluster \"prod\"",
                "{m:?}"
            );
        }
        // nothing of ours: no marker, no CA; or a CA that cannot be compared
        for (m, c) in [
            (host(None, None, None), Some(&ours)),
            (host(None, Some(A), None), None),
            (host(None, Some(A), None), Some(&ca(None, Some(A)))),
        ] {
            let e = vouch(&m, "prod", c).unwrap_err();
            assert_eq!(
                e,
                Refusal::Unvouched {
                    ours: "prod".into()
                },
                "{m:?}"
            );
            assert!(
                e.to_string()
                    .contains("nothing shows that it is this cluster's")
            );
        }
    }

    #[test]
    fn what_reset_does_with_a_host() {
        let ours = ca(Some(A), None);
        assert_eq!(
            reset_decision(&host(Some("prod"), Some(A), None), "prod", Some(&ours)),
            Ok(true)
        );
        // nothing of kubeforge or kubeadm: nothing to reset
        assert_eq!(
            reset_decision(&host(None, None, None), "prod", Some(&ours)),
            Ok(false)
        );
        assert_eq!(
            reset_decision(&host(None, None, None), "prod", None),
            Ok(false)
        );
        // another cluster's marker, without kubeadm's state yet
        assert!(matches!(
            reset_decision(&host(Some("other"), None, None), "prod", Some(&ours)),
            Err(Refusal::OtherCluster { .. })
        ));
        // kubeadm's state of another cluster (no marker: not kubeforge's)
        assert!(matches!(
            reset_decision(&host(None, Some(B), None), "prod", Some(&ours)),
            Err(Refusal::OtherCa { .. })
        ));
        // kubeadm's files without a CA, and no marker
        let mut m = Membership::default();
        m.kubeconfigs.push("kubelet.conf".into());
        assert!(matches!(
            reset_decision(&m, "prod", Some(&ours)),
            Err(Refusal::Unvouched { .. })
        ));
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
