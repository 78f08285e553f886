//! The cluster's cloud resources: each named `<cluster>-...`, tagged `kubeforge-cluster-<name>`
//! (where the API has tags) or described, created only when missing and adopted when present,
//! so that apply is idempotent and destroy removes exactly what kubeforge made.
//!
//! This module holds the names, the desired side (`Desired`) and what was observed
//! (`Observed`); the work is done in:
//! - `observe`: reads the cloud (async) into the API's typed lists, then `observe::build`
//!   (pure) turns them into an `Observed`;
//! - `plan`: `check` (refusals) and `plan` (the changes), pure;
//! - `teardown`: what `destroy` deletes and leaves, pure;
//! - `ensure/*`: creates or adopts, one module per kind of resource;
//! - `destroy`: deletes exactly what the teardown listed.

use crate::inventory::types::OpenStack;
use crate::model::{Cluster, Host, LoadBalancer, Role, SshTarget};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub use super::action::{CloudAction, Kind, Verb};
pub use super::destroy::{delete_servers, destroy};
pub use super::ensure::{EnsureError, Provisioned, ensure, external_network_id};
pub use super::observe::observe;
pub use super::plan::{check, plan};
pub use super::teardown::{Teardown, teardown, teardown_plan};

pub const DEFAULT_CIDR: &str = "10.10.0.0/24";
pub(crate) const SERVER_TIMEOUT: Duration = Duration::from_secs(600);
pub(crate) const LB_TIMEOUT: Duration = Duration::from_secs(600);

pub fn tag(cluster: &str) -> String {
    format!("kubeforge-cluster-{cluster}")
}

pub fn role_slug(role: Role) -> &'static str {
    match role {
        Role::ControlPlane => "control-plane",
        Role::Worker => "worker",
    }
}

pub fn server_name(cluster: &str, role: Role, index: u32) -> String {
    format!("{cluster}-{}-{index}", role_slug(role))
}

/// (role, index) of a server kubeforge named.
pub fn parse_server_name(cluster: &str, name: &str) -> Option<(Role, u32)> {
    let rest = name.strip_prefix(&format!("{cluster}-"))?;
    for role in [Role::ControlPlane, Role::Worker] {
        if let Some(n) = rest.strip_prefix(&format!("{}-", role_slug(role)))
            && let Ok(i) = n.parse::<u32>()
        {
            return Some((role, i));
        }
    }
    None
}

pub fn keypair_name(cluster: &str) -> String {
    format!("kubeforge-{cluster}")
}

pub(crate) fn description(cluster: &str) -> String {
    format!("kubeforge: cluster {cluster}")
}

/// The second word of an OpenSSH public key (the key itself, without type and comment).
pub(crate) fn key_body(k: &str) -> Option<&str> {
    k.split_whitespace().nth(1)
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub index: u32,
    pub status: String,
    pub fixed_ip: Option<String>,
    pub floating_ip: Option<String>,
    /// In ERROR without ever having launched (Nova's `launched_at` is empty): a failed build,
    /// never a node, so it is safe to delete and create again.
    pub failed_build: bool,
}

/// The server group policy kubeforge creates.
pub const SERVER_GROUP_POLICY: &str = "soft-anti-affinity";

/// A Nova server group named like one of the cluster's (server groups have no tags).
#[derive(Debug, Clone)]
pub struct ServerGroup {
    pub id: String,
    pub policy: String,
    pub members: Vec<String>,
}

/// An Octavia load balancer named like the cluster's.
#[derive(Debug, Clone)]
pub struct LoadBalancerInfo {
    pub id: String,
    pub vip: String,
    /// Carries the cluster's tag: kubeforge made it.
    pub ours: bool,
}

/// What exists in the cloud for the cluster.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// The public key of the key pair `kubeforge-<cluster>`.
    pub keypair: Option<String>,
    /// (id, carries the cluster's tag)
    pub network: Option<(String, bool)>,
    pub subnet: Option<String>,
    pub router: Option<String>,
    /// name → id, of those with the cluster's tag, in the session's project.
    pub security_groups: BTreeMap<String, String>,
    pub server_groups: BTreeMap<String, ServerGroup>,
    pub servers: Vec<ServerInfo>,
    pub load_balancer: Option<LoadBalancerInfo>,
    /// Floating IPs with the cluster's tag: (id, address).
    pub floating_ips: Vec<(String, String)>,
}

impl Observed {
    /// The load balancer kubeforge made (tagged), if any.
    pub fn our_load_balancer(&self) -> Option<&LoadBalancerInfo> {
        self.load_balancer.as_ref().filter(|lb| lb.ours)
    }
}

pub struct Desired<'a> {
    pub cluster: &'a Cluster,
    pub os: &'a OpenStack,
}

impl Desired<'_> {
    pub(crate) fn name(&self) -> &str {
        &self.cluster.name
    }
    pub(crate) fn count(&self, role: Role) -> u32 {
        match role {
            Role::ControlPlane => self.os.control_plane.as_ref().map_or(0, |p| p.count),
            Role::Worker => self.os.workers.as_ref().map_or(0, |p| p.count),
        }
    }
    pub(crate) fn counts(&self) -> [(Role, u32); 2] {
        [
            (Role::ControlPlane, self.count(Role::ControlPlane)),
            (Role::Worker, self.count(Role::Worker)),
        ]
    }
    pub(crate) fn flavor(&self, role: Role) -> &str {
        let pool = match role {
            Role::ControlPlane => self.os.control_plane.as_ref(),
            Role::Worker => self.os.workers.as_ref(),
        };
        pool.map(|p| p.flavor.as_str()).unwrap_or("")
    }
    pub fn floating_ips(&self) -> bool {
        self.os
            .floating_ips
            .unwrap_or(self.cluster.ssh.defaults.bastion.is_none())
    }
    pub(crate) fn octavia(&self) -> bool {
        self.cluster.api.load_balancer == LoadBalancer::Octavia
    }
    pub(crate) fn security_groups(&self, role: Role) -> Vec<String> {
        vec![
            format!("{}-common", self.name()),
            format!("{}-{}", self.name(), role_slug(role)),
        ]
    }
    pub(crate) fn own_network(&self) -> bool {
        self.os.network.name.is_none()
    }
    /// The name of the cluster's network: its own (the cluster's name), or the inventory's.
    pub(crate) fn network_name(&self) -> String {
        self.os
            .network
            .name
            .clone()
            .unwrap_or_else(|| self.name().to_string())
    }
    /// The router of an own network, and floating IPs, need the external network.
    pub fn needs_external_network(&self) -> bool {
        self.floating_ips() || self.own_network()
    }
}

/// The inventory hosts of the servers: reached at their floating IP when they have one.
pub fn hosts(c: &Cluster, servers: &[ServerInfo]) -> Vec<Host> {
    let d = &c.ssh.defaults;
    servers
        .iter()
        .map(|x| {
            let fixed = x.fixed_ip.clone().unwrap_or_default();
            let (address, private) = match &x.floating_ip {
                Some(f) => (f.clone(), Some(fixed.clone())),
                None => (fixed.clone(), None),
            };
            Host {
                name: x.name.clone(),
                role: x.role,
                ssh: SshTarget {
                    address,
                    ..d.clone()
                },
                private_address: private,
                labels: Default::default(),
                taints: Vec::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(server_name("demo", Role::Worker, 3), "demo-worker-3");
        assert_eq!(
            parse_server_name("demo", "demo-control-plane-2"),
            Some((Role::ControlPlane, 2))
        );
        assert_eq!(parse_server_name("demo", "demo-worker-x"), None);
        assert_eq!(parse_server_name("demo", "other-worker-1"), None);
        assert_eq!(tag("demo"), "kubeforge-cluster-demo");
    }
}
