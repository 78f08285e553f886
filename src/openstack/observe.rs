//! Reads what exists for the cluster, changing nothing: `observe` lists (async), `build` turns
//! the lists into an `Observed` (pure, tested on recorded responses).

use super::api;
use super::cloud::{Cloud, CloudError, Svc};
use super::provider::{
    Desired, LoadBalancerInfo, Observed, SERVER_GROUP_POLICY, ServerGroup, ServerInfo,
    keypair_name, parse_server_name, role_slug, tag,
};
use crate::model::Role;

/// The API's answers `observe` reads, as they came.
#[derive(Debug, Default, Clone)]
pub struct Listings {
    /// `GET os-keypairs/kubeforge-<cluster>` (None: 404).
    pub keypair: Option<api::Keypair>,
    /// `GET networks?name=<network>` (in the project, for the cluster's own network).
    pub networks: Vec<api::Network>,
    /// `GET subnets?network_id=<the network picked of networks>`.
    pub subnets: Vec<api::Subnet>,
    /// `GET routers?name=<cluster>&tags=<tag>` in the project (own network only).
    pub routers: Vec<api::Router>,
    /// `GET security-groups?tags=<tag>` in the project.
    pub security_groups: Vec<api::SecurityGroup>,
    /// `GET os-server-groups`.
    pub server_groups: Vec<api::ServerGroup>,
    /// `GET servers/detail?tags=<tag>`.
    pub servers: Vec<api::Server>,
    /// `GET floatingips?tags=<tag>` in the project.
    pub floating_ips: Vec<api::FloatingIp>,
    /// `GET lbaas/loadbalancers?name=<cluster>-api` in the project (None: not listed).
    pub load_balancers: Option<Vec<api::LoadBalancer>>,
}

/// Of the networks named like the cluster's, the tagged one first: an untagged namesake is
/// reported by `check`.
pub fn pick_network<'a>(d: &Desired<'_>, networks: &'a [api::Network]) -> Option<&'a api::Network> {
    let (want, t) = (d.network_name(), tag(d.name()));
    let same: Vec<&api::Network> = networks.iter().filter(|x| x.name == want).collect();
    same.iter()
        .find(|x| x.has_tag(&t))
        .or_else(|| same.first())
        .copied()
}

/// The fixed and floating address of a server, from Nova's `addresses`: the floating one if
/// any, and the first IPv4 fixed one (else the first fixed one of any version).
pub fn server_addresses(s: &api::Server) -> (Option<String>, Option<String>) {
    let (mut fixed, mut floating) = (None, None);
    for a in s.all_addresses() {
        if a.is_floating() {
            floating = Some(a.addr.clone());
        } else if a.version == 4 || fixed.is_none() {
            fixed = fixed.or(Some(a.addr.clone()));
        }
    }
    (fixed, floating)
}

/// What the lists say exists for the cluster.
pub fn build(d: &Desired<'_>, l: &Listings) -> Observed {
    let name = d.name();
    let t = tag(name);
    let mut o = Observed {
        keypair: l.keypair.as_ref().map(|k| k.public_key.clone()),
        ..Observed::default()
    };
    if let Some(n) = pick_network(d, &l.networks) {
        o.network = Some((n.id.clone(), n.has_tag(&t)));
        o.subnet = l
            .subnets
            .iter()
            .find(|x| x.ip_version == 4)
            .map(|x| x.id.clone());
    }
    if d.own_network() {
        o.router = l
            .routers
            .iter()
            .find(|r| r.name == name && r.has_tag(&t))
            .map(|r| r.id.clone());
    }
    for g in &l.security_groups {
        o.security_groups.insert(g.name.clone(), g.id.clone());
    }
    for role in [Role::ControlPlane, Role::Worker] {
        let n = format!("{name}-{}", role_slug(role));
        let same: Vec<&api::ServerGroup> = l.server_groups.iter().filter(|g| g.name == n).collect();
        // of namesakes, one with kubeforge's policy first
        if let Some(g) = same
            .iter()
            .find(|g| g.policy == SERVER_GROUP_POLICY)
            .or_else(|| same.first())
        {
            o.server_groups.insert(
                n,
                ServerGroup {
                    id: g.id.clone(),
                    policy: g.policy.clone(),
                    members: g.members.clone(),
                },
            );
        }
    }
    for v in &l.servers {
        let Some((role, index)) = parse_server_name(name, &v.name) else {
            continue;
        };
        let (fixed, floating) = server_addresses(v);
        o.servers.push(ServerInfo {
            id: v.id.clone(),
            name: v.name.clone(),
            role,
            index,
            status: v.status.clone(),
            fixed_ip: fixed,
            floating_ip: floating,
            failed_build: v.status == "ERROR" && v.launched_at.as_deref().is_none_or(str::is_empty),
        });
    }
    o.servers.sort_by_key(|x| (x.role, x.index));
    for f in &l.floating_ips {
        o.floating_ips
            .push((f.id.clone(), f.floating_ip_address.clone()));
    }
    if let Some(lbs) = &l.load_balancers {
        let lbn = format!("{name}-api");
        let same: Vec<&api::LoadBalancer> = lbs.iter().filter(|x| x.name == lbn).collect();
        if let Some(lb) = same.iter().find(|x| x.has_tag(&t)).or_else(|| same.first()) {
            o.load_balancer = Some(LoadBalancerInfo {
                id: lb.id.clone(),
                vip: lb.vip_address.clone(),
                ours: lb.has_tag(&t),
            });
        }
    }
    o
}

/// Reads what exists, changing nothing.
pub async fn observe(cloud: &Cloud, d: &Desired<'_>) -> Result<Observed, CloudError> {
    Ok(build(d, &list(cloud, d).await?))
}

/// The lists `build` reads.
pub async fn list(cloud: &Cloud, d: &Desired<'_>) -> Result<Listings, CloudError> {
    let name = d.name();
    let t = tag(name);
    let mut l = Listings {
        keypair: cloud
            .get(Svc::Compute, &["os-keypairs", &keypair_name(name)])
            .send_opt::<api::KeypairDoc>("read key pair")
            .await?
            .map(|k| k.keypair),
        ..Listings::default()
    };
    // the cluster's own network is looked for in its project only; a network named in the
    // inventory may be another project's shared one
    let net_name = d.network_name();
    l.networks = if d.own_network() {
        cloud.list_ours(Svc::Network, &["networks"])
    } else {
        cloud.get(Svc::Network, &["networks"])
    }
    .query("name", &net_name)
    .send::<api::Networks>("list networks")
    .await?
    .networks;
    if let Some(n) = pick_network(d, &l.networks) {
        l.subnets = cloud
            .get(Svc::Network, &["subnets"])
            .query("network_id", &n.id)
            .send::<api::Subnets>("list subnets")
            .await?
            .subnets;
    }
    if d.own_network() {
        l.routers = cloud
            .list_ours(Svc::Network, &["routers"])
            .query("name", name)
            .query("tags", &t)
            .send::<api::Routers>("list routers")
            .await?
            .routers;
    }
    l.security_groups = cloud
        .list_ours(Svc::Network, &["security-groups"])
        .query("tags", &t)
        .send::<api::SecurityGroups>("list security groups")
        .await?
        .security_groups;
    l.server_groups = cloud
        .get(Svc::Compute, &["os-server-groups"])
        .send::<api::ServerGroups>("list server groups")
        .await?
        .server_groups;
    l.servers = cloud
        .get(Svc::Compute, &["servers", "detail"])
        .query("tags", &t)
        .send::<api::Servers>("list servers")
        .await?
        .servers;
    l.floating_ips = cloud
        .list_ours(Svc::Network, &["floatingips"])
        .query("tags", &t)
        .send::<api::FloatingIps>("list floating IPs")
        .await?
        .floatingips;
    if d.octavia() || cloud.has_load_balancer().await {
        match cloud
            .list_ours(Svc::LoadBalancer, &["lbaas", "loadbalancers"])
            .query("name", &format!("{name}-api"))
            .send::<api::LoadBalancers>("list load balancers")
            .await
        {
            Ok(v) => l.load_balancers = Some(v.loadbalancers),
            // without Octavia's roles the user cannot have made a load balancer either
            Err(e) if e.is_forbidden() && !d.octavia() => {
                tracing::debug!("not allowed to list load balancers ({e}); the cluster uses none");
            }
            Err(CloudError::Api {
                what,
                status,
                message,
            }) if status == Some(403) => {
                return Err(CloudError::Api {
                    what,
                    status,
                    message: format!(
                        "{message} (controlPlane.loadBalancer: octavia needs Octavia's load-balancer_member role, or member where the cloud enforces the new default policies; ask the cloud's operator, or use loadBalancer: local)"
                    ),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(l)
}
