//! Whether a host is this cluster's: kubeforge's marker names the cluster, or the host holds
//! the cluster's CA. Pure: decided from the facts, before any destructive step.

use crate::facts::Membership;

/// The identity of a Kubernetes CA: sha256 of its public key (SPKI, as kubeadm's
/// discovery-token-ca-cert-hash) and of its certificate file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaHash {
    pub spki: Option<String>,
    pub file: Option<String>,
}

impl CaHash {
    /// The CA a host holds (/etc/kubernetes/pki/ca.crt), if any.
    pub fn of(m: &Membership) -> Option<CaHash> {
        (m.ca_spki_sha256.is_some() || m.ca_sha256.is_some()).then(|| CaHash {
            spki: m.ca_spki_sha256.clone(),
            file: m.ca_sha256.clone(),
        })
    }

    /// Whether two CAs are the same: by public key when both are known, else by file.
    /// None: nothing to compare.
    pub fn same(&self, other: &CaHash) -> Option<bool> {
        match (&self.spki, &other.spki, &self.file, &other.file) {
            (Some(a), Some(b), _, _) => Some(a == b),
            (_, _, Some(a), Some(b)) => Some(a == b),
            _ => None,
        }
    }
}

/// Why a host is not this cluster's to reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its marker names another cluster.
    OtherCluster { theirs: String, ours: String },
    /// It holds a Kubernetes CA that is not the cluster's.
    OtherCa { ours: String },
    /// Neither kubeforge's marker nor the cluster's CA is on it.
    Unvouched { ours: String },
    /// It is the cluster's, but calls itself by another name than the node's.
    OtherName { hostname: String, node: String },
    /// Its facts could not be read.
    NoFacts(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::OtherCluster { theirs, ours } => write!(
                f,
                "its /etc/kubeforge/cluster names cluster {theirs:?}, not {ours:?}"
            ),
            Refusal::OtherCa { ours } => write!(
                f,
                "its Kubernetes CA (/etc/kubernetes/pki/ca.crt) is not the CA of cluster {ours:?}"
            ),
            Refusal::Unvouched { ours } => write!(
                f,
                "it has no kubeforge marker (/etc/kubeforge/cluster) and no CA of cluster {ours:?}: nothing shows that it is this cluster's"
            ),
            Refusal::OtherName { hostname, node } => {
                write!(f, "it is named {hostname:?}, not {node:?}")
            }
            Refusal::NoFacts(e) => write!(f, "cannot read what is on it: {e}"),
        }
    }
}

/// Whether the cluster named `cluster`, whose CA is `cluster_ca` (as read from a serving control
/// plane; None when unknown), can vouch for a host with membership `m`: its marker names this
/// cluster, or it holds this cluster's CA; never when the marker names another cluster or the
/// CA is another.
pub fn vouch(m: &Membership, cluster: &str, cluster_ca: Option<&CaHash>) -> Result<(), Refusal> {
    if let Some(theirs) = m.cluster().filter(|c| *c != cluster) {
        return Err(Refusal::OtherCluster {
            theirs: theirs.to_string(),
            ours: cluster.to_string(),
        });
    }
    let ca = match (CaHash::of(m), cluster_ca) {
        (Some(h), Some(c)) => h.same(c),
        _ => None,
    };
    match (m.cluster().is_some(), ca) {
        (_, Some(false)) => Err(Refusal::OtherCa {
            ours: cluster.to_string(),
        }),
        (true, _) | (false, Some(true)) => Ok(()),
        (false, None) => Err(Refusal::Unvouched {
            ours: cluster.to_string(),
        }),
    }
}

/// Kubeadm's state on a host: kubeconfigs, static pods or a CA.
pub fn has_kubeadm_state(m: &Membership) -> bool {
    !m.kubeconfigs.is_empty() || !m.static_pods.is_empty() || CaHash::of(m).is_some()
}

/// What `reset` does with an inventory host: Ok(true) reset it, Ok(false) skip it (neither
/// kubeforge's marker nor kubeadm's state is on it: nothing to reset), Err refuse it.
pub fn reset_decision(
    m: &Membership,
    cluster: &str,
    cluster_ca: Option<&CaHash>,
) -> Result<bool, Refusal> {
    if m.cluster().is_none() && !has_kubeadm_state(m) {
        return Ok(false);
    }
    vouch(m, cluster, cluster_ca).map(|()| true)
}
