//! What `destroy` deletes, and what it leaves although it is named like the cluster's: pure,
//! from what `observe` read.

use super::action::{CloudAction, Kind, Verb};
use super::cloud::{Cloud, CloudError};
use super::provider::{Desired, Observed, key_body, keypair_name, tag};

/// What `destroy` deletes, and what it leaves although it is named like the cluster's.
#[derive(Debug, Clone)]
pub struct Teardown {
    /// What was read: its tagged resources, by ID, are what `destroy` deletes.
    pub(crate) o: Observed,
    /// (name, id) of the server groups to delete.
    pub(crate) server_groups: Vec<(String, String)>,
    /// The key pair `kubeforge-<cluster>` is deleted.
    pub(crate) keypair: bool,
    /// What is left, and why.
    pub kept: Vec<String>,
}

/// Reads what `destroy` would delete, changing nothing (see `teardown_plan`).
pub async fn teardown(
    cloud: &Cloud,
    d: &Desired<'_>,
    public_key: Option<&str>,
) -> Result<Teardown, CloudError> {
    let o = super::observe::observe(cloud, d).await?;
    Ok(teardown_plan(d, o, public_key))
}

/// What `destroy` deletes: what carries the cluster's tag in the session's project (load
/// balancer, floating IPs, servers, router, network, security groups; `observe` lists only
/// those), the server groups whose members are all the cluster's servers (or none), and the
/// key pair if it holds `public_key` (the inventory's). What is named like the cluster's but
/// left is in `kept`, with why.
pub fn teardown_plan(d: &Desired<'_>, o: Observed, public_key: Option<&str>) -> Teardown {
    let name = d.name().to_string();
    let t = tag(&name);
    let mut kept = Vec::new();
    if let Some(lb) = &o.load_balancer
        && !lb.ours
    {
        kept.push(format!("load balancer {name}-api ({}): no tag {t}", lb.id));
    }
    if d.own_network()
        && let Some((id, false)) = &o.network
    {
        kept.push(format!("network {name} ({id}): no tag {t}"));
    }
    let ours: Vec<&str> = o.servers.iter().map(|x| x.id.as_str()).collect();
    let mut server_groups = Vec::new();
    for (g, sg) in &o.server_groups {
        let foreign: Vec<&str> = sg
            .members
            .iter()
            .map(String::as_str)
            .filter(|m| !ours.contains(m))
            .collect();
        if foreign.is_empty() {
            server_groups.push((g.clone(), sg.id.clone()));
        } else {
            kept.push(format!(
                "server group {g} ({}): its members include servers that are not the cluster's ({})",
                sg.id,
                foreign.join(", ")
            ));
        }
    }
    let kp = keypair_name(&name);
    let same_key =
        |have: &str, want: &str| key_body(have).is_some() && key_body(have) == key_body(want);
    let keypair = match (&o.keypair, public_key) {
        (None, _) => false,
        (Some(have), Some(want)) if same_key(have, want) => true,
        (Some(_), Some(_)) => {
            kept.push(format!(
                "key pair {kp}: it holds another public key than the inventory's; delete it yourself if it is the cluster's (`openstack keypair delete {kp}`)"
            ));
            false
        }
        (Some(_), None) => {
            kept.push(format!(
                "key pair {kp}: the inventory's public key cannot be read to compare; delete it yourself if it is the cluster's (`openstack keypair delete {kp}`)"
            ));
            false
        }
    };
    Teardown {
        o,
        server_groups,
        keypair,
        kept,
    }
}

impl Teardown {
    /// What `destroy` deletes, in order.
    pub fn actions(&self, cluster: &str) -> Vec<CloudAction> {
        let o = &self.o;
        let mut out = Vec::new();
        let mut del = |kind, name: String| out.push(CloudAction::new(Verb::Delete, kind, name));
        if o.our_load_balancer().is_some() {
            del(Kind::LoadBalancer, format!("{cluster}-api"));
        }
        for (_, ip) in &o.floating_ips {
            del(Kind::FloatingIp, ip.clone());
        }
        for x in &o.servers {
            del(Kind::Server, x.name.clone());
        }
        if o.router.is_some() {
            del(Kind::Router, cluster.to_string());
        }
        if let Some((_, true)) = &o.network {
            del(Kind::Network, cluster.to_string());
        }
        for n in o.security_groups.keys() {
            del(Kind::SecurityGroup, n.clone());
        }
        for (g, _) in &self.server_groups {
            del(Kind::ServerGroup, g.clone());
        }
        if self.keypair {
            del(Kind::KeyPair, keypair_name(cluster));
        }
        out
    }

    /// The IDs `destroy` deletes, by kind (`server`, `floating IP`, ...): exactly these.
    pub fn ids(&self) -> Vec<(Kind, String)> {
        let o = &self.o;
        let mut out = Vec::new();
        if let Some(lb) = o.our_load_balancer() {
            out.push((Kind::LoadBalancer, lb.id.clone()));
        }
        out.extend(
            o.floating_ips
                .iter()
                .map(|(id, _)| (Kind::FloatingIp, id.clone())),
        );
        out.extend(o.servers.iter().map(|x| (Kind::Server, x.id.clone())));
        out.extend(o.router.iter().map(|r| (Kind::Router, r.clone())));
        if let Some((id, true)) = &o.network {
            out.push((Kind::Network, id.clone()));
        }
        out.extend(
            o.security_groups
                .values()
                .map(|id| (Kind::SecurityGroup, id.clone())),
        );
        out.extend(
            self.server_groups
                .iter()
                .map(|(_, id)| (Kind::ServerGroup, id.clone())),
        );
        out
    }
}
