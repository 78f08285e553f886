//! The cluster's cloud resources: each named `<cluster>-...`, tagged `kubeforge-cluster-<name>`
//! (where the API has tags) or described, created only when missing and adopted when present,
//! so that apply is idempotent and destroy removes exactly what kubeforge made.

use super::cloud::{Cloud, CloudError, Svc};
use crate::inventory::types::OpenStack;
use crate::model::{Cluster, Host, LoadBalancer, Role, SshTarget};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const DEFAULT_CIDR: &str = "10.10.0.0/24";
const SERVER_TIMEOUT: Duration = Duration::from_secs(600);
const LB_TIMEOUT: Duration = Duration::from_secs(600);

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

fn description(cluster: &str) -> String {
    format!("kubeforge: cluster {cluster}")
}

/// One change to the cloud, for `plan` and reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudAction {
    pub verb: &'static str,
    pub kind: &'static str,
    pub name: String,
}

impl std::fmt::Display for CloudAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.verb, self.kind, self.name)
    }
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
#[derive(Debug, Default)]
pub struct Observed {
    pub keypair: Option<String>,
    /// (id, carries the cluster's tag)
    pub network: Option<(String, bool)>,
    pub subnet: Option<String>,
    pub router: Option<String>,
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
    fn name(&self) -> &str {
        &self.cluster.name
    }
    fn counts(&self) -> [(Role, u32); 2] {
        [
            (
                Role::ControlPlane,
                self.os.control_plane.as_ref().map_or(0, |p| p.count),
            ),
            (
                Role::Worker,
                self.os.workers.as_ref().map_or(0, |p| p.count),
            ),
        ]
    }
    fn flavor(&self, role: Role) -> &str {
        match role {
            Role::ControlPlane => self
                .os
                .control_plane
                .as_ref()
                .map(|p| p.flavor.as_str())
                .unwrap_or(""),
            Role::Worker => self
                .os
                .workers
                .as_ref()
                .map(|p| p.flavor.as_str())
                .unwrap_or(""),
        }
    }
    pub fn floating_ips(&self) -> bool {
        self.os
            .floating_ips
            .unwrap_or(self.cluster.ssh.defaults.bastion.is_none())
    }
    fn octavia(&self) -> bool {
        self.cluster.api.load_balancer == LoadBalancer::Octavia
    }
    fn security_groups(&self, role: Role) -> Vec<String> {
        vec![
            format!("{}-common", self.name()),
            format!("{}-{}", self.name(), role_slug(role)),
        ]
    }
    fn own_network(&self) -> bool {
        self.os.network.name.is_none()
    }
    /// The router of an own network, and floating IPs, need the external network.
    pub fn needs_external_network(&self) -> bool {
        self.floating_ips() || self.own_network()
    }
}

fn s(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn list<'a>(v: &'a Value, k: &str) -> Vec<&'a Value> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn has_tag(v: &Value, t: &str) -> bool {
    list(v, "tags").iter().any(|x| x.as_str() == Some(t))
}

/// Reads what exists, changing nothing.
pub async fn observe(cloud: &Cloud, d: &Desired<'_>) -> Result<Observed, CloudError> {
    let name = d.name();
    let t = tag(name);
    let mut o = Observed::default();
    let kp = cloud
        .get(Svc::Compute, &["os-keypairs", &keypair_name(name)])
        .send_opt("read key pair")
        .await?;
    o.keypair = kp.map(|v| s(&v["keypair"], "public_key"));
    let net_name =
        d.os.network
            .name
            .clone()
            .unwrap_or_else(|| name.to_string());
    // the cluster's own network is looked for in its project only; a network named in the
    // inventory may be another project's shared one
    let nets = if d.own_network() {
        cloud.list_ours(Svc::Network, &["networks"])
    } else {
        cloud.get(Svc::Network, &["networks"])
    }
    .query("name", &net_name)
    .send("list networks")
    .await?;
    let nets: Vec<&Value> = list(&nets, "networks")
        .into_iter()
        .filter(|x| s(x, "name") == net_name)
        .collect();
    // ours (tagged) first: an untagged namesake is reported by `check`
    if let Some(n) = nets
        .iter()
        .find(|x| has_tag(x, &t))
        .or_else(|| nets.first())
    {
        let ours = has_tag(n, &t);
        o.network = Some((s(n, "id"), ours));
        let subnets = cloud
            .get(Svc::Network, &["subnets"])
            .query("network_id", &s(n, "id"))
            .send("list subnets")
            .await?;
        o.subnet = list(&subnets, "subnets")
            .into_iter()
            .find(|x| x["ip_version"] == 4)
            .map(|x| s(x, "id"));
    }
    if d.own_network() {
        let routers = cloud
            .list_ours(Svc::Network, &["routers"])
            .query("name", name)
            .query("tags", &t)
            .send("list routers")
            .await?;
        o.router = list(&routers, "routers")
            .into_iter()
            .find(|r| s(r, "name") == name && has_tag(r, &t))
            .map(|r| s(r, "id"));
    }
    let sgs = cloud
        .list_ours(Svc::Network, &["security-groups"])
        .query("tags", &t)
        .send("list security groups")
        .await?;
    for g in list(&sgs, "security_groups") {
        o.security_groups.insert(s(g, "name"), s(g, "id"));
    }
    let groups = cloud
        .get(Svc::Compute, &["os-server-groups"])
        .send("list server groups")
        .await?;
    for role in [Role::ControlPlane, Role::Worker] {
        let n = format!("{name}-{}", role_slug(role));
        let same: Vec<&Value> = list(&groups, "server_groups")
            .into_iter()
            .filter(|g| s(g, "name") == n)
            .collect();
        // of namesakes, one with kubeforge's policy first
        if let Some(g) = same
            .iter()
            .find(|g| s(g, "policy") == SERVER_GROUP_POLICY)
            .or_else(|| same.first())
        {
            o.server_groups.insert(
                n,
                ServerGroup {
                    id: s(g, "id"),
                    policy: s(g, "policy"),
                    members: list(g, "members")
                        .iter()
                        .filter_map(|m| m.as_str().map(String::from))
                        .collect(),
                },
            );
        }
    }
    let servers = cloud
        .get(Svc::Compute, &["servers", "detail"])
        .query("tags", &t)
        .send("list servers")
        .await?;
    for v in list(&servers, "servers") {
        let n = s(v, "name");
        let Some((role, index)) = parse_server_name(name, &n) else {
            continue;
        };
        let (mut fixed, mut floating) = (None, None);
        if let Some(addrs) = v["addresses"].as_object() {
            for a in addrs.values().filter_map(Value::as_array).flatten() {
                let ip = s(a, "addr");
                match a["OS-EXT-IPS:type"].as_str() {
                    Some("floating") => floating = Some(ip),
                    _ if a["version"] == 4 || fixed.is_none() => fixed = fixed.or(Some(ip)),
                    _ => {}
                }
            }
        }
        o.servers.push(ServerInfo {
            id: s(v, "id"),
            name: n,
            role,
            index,
            status: s(v, "status"),
            fixed_ip: fixed,
            floating_ip: floating,
            failed_build: s(v, "status") == "ERROR" && v["OS-SRV-USG:launched_at"].is_null(),
        });
    }
    o.servers.sort_by_key(|x| (x.role, x.index));
    let fips = cloud
        .list_ours(Svc::Network, &["floatingips"])
        .query("tags", &t)
        .send("list floating IPs")
        .await?;
    for f in list(&fips, "floatingips") {
        o.floating_ips
            .push((s(f, "id"), s(f, "floating_ip_address")));
    }
    if d.octavia() || cloud.has_load_balancer().await {
        let lbn = format!("{name}-api");
        match cloud
            .list_ours(Svc::LoadBalancer, &["lbaas", "loadbalancers"])
            .query("name", &lbn)
            .send("list load balancers")
            .await
        {
            Ok(v) => {
                let same: Vec<&Value> = list(&v, "loadbalancers")
                    .into_iter()
                    .filter(|x| s(x, "name") == lbn)
                    .collect();
                if let Some(lb) = same
                    .iter()
                    .find(|x| has_tag(x, &t))
                    .or_else(|| same.first())
                {
                    o.load_balancer = Some(LoadBalancerInfo {
                        id: s(lb, "id"),
                        vip: s(lb, "vip_address"),
                        ours: has_tag(lb, &t),
                    });
                }
            }
            // without Octavia's roles the user cannot have made a load balancer either
            Err(e) if e.status() == Some(403) && !d.octavia() => {
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
    Ok(o)
}

/// Refuses what kubeforge would otherwise adopt although it is not the cluster's: run on what
/// `observe` read, by `plan` and before `ensure` creates anything.
pub fn check(d: &Desired<'_>, o: &Observed) -> Result<(), CloudError> {
    let name = d.name();
    let t = tag(name);
    if d.own_network()
        && let Some((id, false)) = &o.network
    {
        return Err(CloudError::Config(format!(
            "network {name} ({id}) exists but is not kubeforge's (no tag {t}); name it in spec.openstack.network.name to use it, or rename it"
        )));
    }
    for (role, count) in d.counts() {
        let g = format!("{name}-{}", role_slug(role));
        if count > 0
            && let Some(sg) = o.server_groups.get(&g)
            && sg.policy != SERVER_GROUP_POLICY
        {
            return Err(CloudError::Config(format!(
                "server group {g} ({}) exists with policy {}, not the {SERVER_GROUP_POLICY} kubeforge creates, so it is not kubeforge's; rename or delete it",
                sg.id,
                if sg.policy.is_empty() {
                    "unknown"
                } else {
                    &sg.policy
                }
            )));
        }
    }
    if d.octavia()
        && let Some(lb) = &o.load_balancer
        && !lb.ours
    {
        return Err(CloudError::Config(format!(
            "load balancer {name}-api ({}) exists but is not kubeforge's (no tag {t}); rename or delete it, or use controlPlane.loadBalancer: local",
            lb.id
        )));
    }
    Ok(())
}

/// The changes `ensure` would make.
pub fn plan(d: &Desired<'_>, o: &Observed) -> Vec<CloudAction> {
    let name = d.name();
    let mut out = Vec::new();
    let mut act = |verb: &'static str, kind: &'static str, n: String| {
        out.push(CloudAction {
            verb,
            kind,
            name: n,
        })
    };
    act(
        if o.keypair.is_some() {
            "adopt"
        } else {
            "create"
        },
        "key pair",
        keypair_name(name),
    );
    if d.own_network() {
        act(
            if o.network.is_some() {
                "adopt"
            } else {
                "create"
            },
            "network",
            name.to_string(),
        );
        act(
            if o.subnet.is_some() {
                "adopt"
            } else {
                "create"
            },
            "subnet",
            name.to_string(),
        );
        act(
            if o.router.is_some() {
                "adopt"
            } else {
                "create"
            },
            "router",
            name.to_string(),
        );
    } else {
        act(
            "use",
            "network",
            d.os.network.name.clone().unwrap_or_default(),
        );
    }
    for g in ["common", "control-plane", "worker"] {
        let n = format!("{name}-{g}");
        act(
            if o.security_groups.contains_key(&n) {
                "adopt"
            } else {
                "create"
            },
            "security group",
            n,
        );
    }
    for (role, count) in d.counts() {
        if count == 0 {
            continue;
        }
        let g = format!("{name}-{}", role_slug(role));
        act(
            if o.server_groups.contains_key(&g) {
                "adopt"
            } else {
                "create"
            },
            "server group",
            g,
        );
        for i in 1..=count {
            let n = server_name(name, role, i);
            let verb = match o.servers.iter().find(|x| x.name == n) {
                Some(x) if x.failed_build => "replace",
                Some(_) => "adopt",
                None => "create",
            };
            act(verb, "server", n);
        }
    }
    for x in &o.servers {
        let count = d
            .counts()
            .iter()
            .find(|(r, _)| *r == x.role)
            .map_or(0, |(_, c)| *c);
        if x.index > count {
            act(
                "delete",
                "server",
                format!("{} (after removing its node)", x.name),
            );
        }
    }
    if d.floating_ips() {
        act("ensure", "floating IPs", "one per server".into());
    }
    if d.octavia() {
        act(
            if o.our_load_balancer().is_some() {
                "adopt"
            } else {
                "create"
            },
            "load balancer",
            format!("{name}-api (TCP 6443, one member per control plane)"),
        );
    }
    out
}

async fn tag_neutron(cloud: &Cloud, collection: &str, id: &str, t: &str) -> Result<(), CloudError> {
    cloud
        .put(
            Svc::Network,
            &[collection, id, "tags"],
            Some(json!({"tags": [t]})),
        )
        .send(&format!("tag {collection} {id}"))
        .await?;
    Ok(())
}

/// Deletes a Neutron resource kubeforge just made but could not finish (tag, router interface):
/// untagged or half-made, it would be neither adopted nor destroyed. The error says so if the
/// delete fails too.
async fn undo_create(
    cloud: &Cloud,
    collection: &str,
    kind: &str,
    name: &str,
    id: &str,
    cause: CloudError,
) -> CloudError {
    match cloud
        .delete(Svc::Network, &[collection, id])
        .send_opt(&format!("delete the unfinished {kind} {name}"))
        .await
    {
        Ok(_) => cause,
        Err(undo) => CloudError::Config(format!(
            "{cause}; deleting the unfinished {kind} {name} ({id}) failed as well ({undo}): delete it yourself (`openstack {} delete {id}`), it does not carry kubeforge's tag",
            kind.replace("IP", "ip")
        )),
    }
}

/// Creates a Neutron resource with the cluster's tag: in the create itself where Neutron
/// allows it (`tag-creation`), else tagged right after, and deleted again if tagging fails.
/// Returns the created object.
async fn create_tagged(
    e: &Ensurer<'_>,
    collection: &str,
    key: &str,
    kind: &str,
    name: &str,
    mut body: Value,
) -> Result<Value, CloudError> {
    let t = tag(e.d.name());
    if e.tags_on_create {
        body[key]["tags"] = json!([t]);
    }
    let v = e
        .cloud
        .post(Svc::Network, &[collection], body)
        .send(&format!("create {kind} {name}"))
        .await?;
    let obj = v[key].clone();
    if !e.tags_on_create {
        let id = s(&obj, "id");
        if let Err(err) = tag_neutron(e.cloud, collection, &id, &t).await {
            return Err(undo_create(e.cloud, collection, kind, name, &id, err).await);
        }
    }
    Ok(obj)
}

/// Neutron security group rules: (direction, protocol, from port, to port, remote: None = anywhere, Some(group) = that group).
type Rule = (
    &'static str,
    Option<&'static str>,
    Option<u16>,
    Option<u16>,
    Option<&'static str>,
);

fn rules(group: &str) -> Vec<Rule> {
    match group {
        "common" => vec![
            ("ingress", Some("tcp"), Some(22), Some(22), None),
            // everything between the cluster's machines
            ("ingress", None, None, None, Some("common")),
            // flannel's VXLAN
            (
                "ingress",
                Some("udp"),
                Some(8472),
                Some(8472),
                Some("common"),
            ),
        ],
        "control-plane" => vec![
            ("ingress", Some("tcp"), Some(6443), Some(6443), None),
            (
                "ingress",
                Some("tcp"),
                Some(2379),
                Some(2380),
                Some("common"),
            ),
            (
                "ingress",
                Some("tcp"),
                Some(10250),
                Some(10250),
                Some("common"),
            ),
            (
                "ingress",
                Some("tcp"),
                Some(10257),
                Some(10257),
                Some("common"),
            ),
            (
                "ingress",
                Some("tcp"),
                Some(10259),
                Some(10259),
                Some("common"),
            ),
        ],
        _ => vec![
            (
                "ingress",
                Some("tcp"),
                Some(10250),
                Some(10250),
                Some("common"),
            ),
            ("ingress", Some("tcp"), Some(30000), Some(32767), None),
        ],
    }
}

async fn wait_lb(cloud: &Cloud, id: &str, what: &str) -> Result<(), CloudError> {
    let start = Instant::now();
    loop {
        let v = cloud
            .get(Svc::LoadBalancer, &["lbaas", "loadbalancers", id])
            .send(what)
            .await?;
        match v["loadbalancer"]["provisioning_status"].as_str() {
            Some("ACTIVE") => return Ok(()),
            Some("ERROR") => {
                return Err(CloudError::Api {
                    what: what.to_string(),
                    status: None,
                    message: "the load balancer went to ERROR".into(),
                });
            }
            _ => {}
        }
        if start.elapsed() > LB_TIMEOUT {
            return Err(CloudError::Timeout {
                what: what.to_string(),
                timeout: LB_TIMEOUT,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The result of `ensure`.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub servers: Vec<ServerInfo>,
    /// Servers beyond the counts: their nodes are removed, then they are deleted.
    pub surplus: Vec<ServerInfo>,
    /// The API endpoint of an Octavia load balancer.
    pub endpoint: Option<String>,
    pub subnet_id: String,
    pub external_network_id: Option<String>,
    pub actions: Vec<CloudAction>,
}

#[derive(Debug, thiserror::Error)]
#[error("{cause}{}", if created.is_empty() { String::new() } else { format!("\nkubeforge created before the failure (kept, and adopted by the next apply): {}", created.join(", ")) })]
pub struct EnsureError {
    pub cause: CloudError,
    pub created: Vec<String>,
}

struct Ensurer<'a> {
    cloud: &'a Cloud,
    d: &'a Desired<'a>,
    /// Neutron takes `tags` in a create's body.
    tags_on_create: bool,
    created: Vec<String>,
    actions: Vec<CloudAction>,
}

impl Ensurer<'_> {
    fn record(&mut self, verb: &'static str, kind: &'static str, name: &str) {
        if verb == "create" {
            self.created.push(format!("{kind} {name}"));
        }
        self.actions.push(CloudAction {
            verb,
            kind,
            name: name.to_string(),
        });
    }
}

/// The external network's id (by name, or the only one there is).
pub async fn external_network_id(cloud: &Cloud, name: Option<&str>) -> Result<String, CloudError> {
    external_network(cloud, name).await
}

async fn external_network(cloud: &Cloud, name: Option<&str>) -> Result<String, CloudError> {
    let v = cloud
        .get(Svc::Network, &["networks"])
        .query("router:external", "true")
        .send("list external networks")
        .await?;
    let nets = list(&v, "networks");
    match name {
        Some(n) => nets
            .iter()
            .find(|x| s(x, "name") == n || s(x, "id") == n)
            .map(|x| s(x, "id"))
            .ok_or_else(|| CloudError::NotFound {
                kind: "external network",
                name: n.to_string(),
                available: nets.iter().map(|x| s(x, "name")).collect(),
            }),
        None if nets.len() == 1 => Ok(s(nets[0], "id")),
        None => Err(CloudError::Config(format!(
            "set spec.openstack.network.externalNetwork: the cloud has {} external networks ({})",
            nets.len(),
            nets.iter()
                .map(|x| s(x, "name"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Looks up an image and the flavors before anything is created.
async fn resolve(
    cloud: &Cloud,
    d: &Desired<'_>,
) -> Result<(String, BTreeMap<String, String>), CloudError> {
    let images = cloud
        .get(Svc::Image, &["images"])
        .query("name", &d.os.image)
        .send("list images")
        .await?;
    let image = list(&images, "images")
        .into_iter()
        .find(|x| s(x, "name") == d.os.image || s(x, "id") == d.os.image)
        .map(|x| s(x, "id"));
    let image = match image {
        Some(i) => i,
        None => {
            let all = cloud
                .get(Svc::Image, &["images"])
                .send("list images")
                .await?;
            return Err(CloudError::NotFound {
                kind: "image",
                name: d.os.image.clone(),
                available: list(&all, "images").iter().map(|x| s(x, "name")).collect(),
            });
        }
    };
    let flavors = cloud
        .get(Svc::Compute, &["flavors"])
        .send("list flavors")
        .await?;
    let flavors: Vec<(String, String)> = list(&flavors, "flavors")
        .iter()
        .map(|x| (s(x, "name"), s(x, "id")))
        .collect();
    let mut out = BTreeMap::new();
    for (role, count) in d.counts() {
        if count == 0 {
            continue;
        }
        let want = d.flavor(role);
        let id = flavors
            .iter()
            .find(|(n, id)| n == want || id == want)
            .map(|(_, id)| id.clone())
            .ok_or_else(|| CloudError::NotFound {
                kind: "flavor",
                name: want.to_string(),
                available: flavors.iter().map(|(n, _)| n.clone()).collect(),
            })?;
        out.insert(want.to_string(), id);
    }
    Ok((image, out))
}

/// Creates what is missing and adopts what exists; returns the servers.
pub async fn ensure(
    cloud: &Cloud,
    d: &Desired<'_>,
    public_key: &str,
    user_data: &dyn Fn(&str) -> Result<String, CloudError>,
) -> Result<Provisioned, EnsureError> {
    let mut e = Ensurer {
        cloud,
        d,
        tags_on_create: false,
        created: Vec::new(),
        actions: Vec::new(),
    };
    match ensure_inner(&mut e, public_key, user_data).await {
        Ok(p) => Ok(p),
        Err(cause) => Err(EnsureError {
            cause,
            created: e.created,
        }),
    }
}

async fn ensure_inner(
    e: &mut Ensurer<'_>,
    public_key: &str,
    user_data: &dyn Fn(&str) -> Result<String, CloudError>,
) -> Result<Provisioned, CloudError> {
    let cloud = e.cloud;
    let d = e.d;
    let name = d.name().to_string();
    let t = tag(&name);
    let desc = description(&name);
    // everything that can refuse does so before anything is created
    cloud.check_compute_microversion().await?;
    let (image, flavors) = resolve(cloud, d).await?;
    let o = observe(cloud, d).await?;
    check(d, &o)?;
    let external = external_network(cloud, d.os.network.external_network.as_deref()).await;
    let external = if d.needs_external_network() {
        Some(external?)
    } else {
        // only for the cloud provider's floating-network-id
        external.ok()
    };
    let user_data: BTreeMap<String, String> = d
        .counts()
        .iter()
        .flat_map(|&(role, count)| {
            let name = &name;
            (1..=count).map(move |i| server_name(name, role, i))
        })
        .map(|n| user_data(&n).map(|u| (n, u)))
        .collect::<Result<_, _>>()?;
    e.tags_on_create = cloud.neutron_tags_on_create().await?;

    // key pair
    let kp = keypair_name(&name);
    match &o.keypair {
        Some(existing) => {
            let same = existing.split_whitespace().nth(1) == public_key.split_whitespace().nth(1);
            if !same {
                return Err(CloudError::Config(format!(
                    "key pair {kp} exists with another public key; delete it or use that key"
                )));
            }
            e.record("adopt", "key pair", &kp);
        }
        None => {
            cloud
                .post(
                    Svc::Compute,
                    &["os-keypairs"],
                    json!({"keypair": {"name": kp, "public_key": public_key}}),
                )
                .send(&format!("create key pair {kp}"))
                .await?;
            e.record("create", "key pair", &kp);
        }
    }

    // network, subnet, router
    let (network_id, subnet_id) = if d.own_network() {
        let net = match &o.network {
            Some((id, _)) => {
                e.record("adopt", "network", &name);
                id.clone()
            }
            None => {
                let v = create_tagged(
                    e,
                    "networks",
                    "network",
                    "network",
                    &name,
                    json!({"network": {"name": name, "description": desc, "admin_state_up": true}}),
                )
                .await?;
                e.record("create", "network", &name);
                s(&v, "id")
            }
        };
        let subnet = match &o.subnet {
            Some(id) => {
                e.record("adopt", "subnet", &name);
                id.clone()
            }
            None => {
                let cidr =
                    d.os.network
                        .cidr
                        .clone()
                        .unwrap_or_else(|| DEFAULT_CIDR.to_string());
                let mut body = json!({"subnet": {"name": name, "network_id": net, "ip_version": 4, "cidr": cidr, "description": desc}});
                if !d.os.network.dns_nameservers.is_empty() {
                    body["subnet"]["dns_nameservers"] = json!(d.os.network.dns_nameservers);
                }
                let v = create_tagged(e, "subnets", "subnet", "subnet", &name, body).await?;
                e.record("create", "subnet", &name);
                s(&v, "id")
            }
        };
        let attach = |id: String| {
            let subnet = subnet.clone();
            let name = name.clone();
            async move {
                cloud
                    .put(
                        Svc::Network,
                        &["routers", &id, "add_router_interface"],
                        Some(json!({"subnet_id": subnet})),
                    )
                    .send(&format!("attach router {name} to subnet {name}"))
                    .await
            }
        };
        if let Some(id) = &o.router {
            e.record("adopt", "router", &name);
            // an earlier run may have stopped between creating the router and attaching it
            let ports = cloud
                .get(Svc::Network, &["ports"])
                .query("device_id", id)
                .query("network_id", &net)
                .send(&format!("list the ports of router {name}"))
                .await?;
            let attached = list(&ports, "ports").iter().any(|p| {
                list(p, "fixed_ips")
                    .iter()
                    .any(|f| s(f, "subnet_id") == subnet)
            });
            if !attached {
                attach(id.clone()).await?;
                e.record("attach", "router", &name);
            }
        } else {
            let v = create_tagged(
                e,
                "routers",
                "router",
                "router",
                &name,
                json!({"router": {"name": name, "description": desc, "external_gateway_info": {"network_id": external.clone().unwrap_or_default()}}}),
            )
            .await?;
            let id = s(&v, "id");
            if let Err(err) = attach(id.clone()).await {
                return Err(undo_create(cloud, "routers", "router", &name, &id, err).await);
            }
            e.record("create", "router", &name);
        }
        (net, subnet)
    } else {
        let n = d.os.network.name.clone().unwrap_or_default();
        let (id, _) = o.network.clone().ok_or_else(|| CloudError::NotFound {
            kind: "network",
            name: n.clone(),
            available: Vec::new(),
        })?;
        let subnet = o
            .subnet
            .clone()
            .ok_or_else(|| CloudError::Config(format!("network {n} has no IPv4 subnet")))?;
        e.record("use", "network", &n);
        (id, subnet)
    };

    // security groups and their rules
    let mut sg_ids: BTreeMap<String, String> = BTreeMap::new();
    for g in ["common", "control-plane", "worker"] {
        let n = format!("{name}-{g}");
        let id = match o.security_groups.get(&n) {
            Some(id) => {
                e.record("adopt", "security group", &n);
                id.clone()
            }
            None => {
                let v = create_tagged(
                    e,
                    "security-groups",
                    "security_group",
                    "security group",
                    &n,
                    json!({"security_group": {"name": n, "description": desc}}),
                )
                .await?;
                e.record("create", "security group", &n);
                s(&v, "id")
            }
        };
        sg_ids.insert(g.to_string(), id);
    }
    for g in ["common", "control-plane", "worker"] {
        let sg = sg_ids[g].clone();
        for (direction, proto, from, to, remote) in rules(g) {
            let mut r = json!({"security_group_rule": {"security_group_id": sg, "direction": direction, "ethertype": "IPv4", "description": desc}});
            if let Some(p) = proto {
                r["security_group_rule"]["protocol"] = json!(p);
            }
            if let (Some(a), Some(b)) = (from, to) {
                r["security_group_rule"]["port_range_min"] = json!(a);
                r["security_group_rule"]["port_range_max"] = json!(b);
            }
            match remote {
                Some(other) => r["security_group_rule"]["remote_group_id"] = json!(sg_ids[other]),
                None => r["security_group_rule"]["remote_ip_prefix"] = json!("0.0.0.0/0"),
            }
            match cloud
                .post(Svc::Network, &["security-group-rules"], r)
                .send(&format!("add a rule to security group {name}-{g}"))
                .await
            {
                Ok(_) => {}
                Err(err) if err.status() == Some(409) => {} // the rule exists
                Err(err) => return Err(err),
            }
        }
    }

    // server groups and servers; a server whose build failed earlier (quota, no valid host) is
    // deleted and made again
    let failed: Vec<ServerInfo> = o
        .servers
        .iter()
        .filter(|x| x.failed_build)
        .cloned()
        .collect();
    for x in &failed {
        tracing::warn!(
            "{:<20} its build failed earlier (status ERROR, never launched): deleting it to create it again",
            x.name
        );
        delete_servers(cloud, &name, std::slice::from_ref(x)).await?;
        e.record("replace", "server", &x.name);
    }
    let mut servers: Vec<ServerInfo> = o
        .servers
        .iter()
        .filter(|x| !x.failed_build)
        .cloned()
        .collect();
    let mut to_create: Vec<(Role, u32)> = Vec::new();
    for (role, count) in d.counts() {
        if count == 0 {
            continue;
        }
        let g = format!("{name}-{}", role_slug(role));
        let group_id = match o.server_groups.get(&g) {
            Some(sg) => {
                e.record("adopt", "server group", &g);
                sg.id.clone()
            }
            None => {
                let v = cloud
                    .post(
                        Svc::Compute,
                        &["os-server-groups"],
                        json!({"server_group": {"name": g, "policy": SERVER_GROUP_POLICY}}),
                    )
                    .send(&format!("create server group {g}"))
                    .await?;
                e.record("create", "server group", &g);
                s(&v["server_group"], "id")
            }
        };
        for i in 1..=count {
            let n = server_name(&name, role, i);
            if servers.iter().any(|x| x.name == n) {
                e.record("adopt", "server", &n);
            } else {
                to_create.push((role, i));
            }
        }
        for (r, i) in to_create.clone().into_iter().filter(|(r, _)| *r == role) {
            use base64::Engine as _;
            let n = server_name(&name, r, i);
            let mut sgs: Vec<Value> = d
                .security_groups(r)
                .into_iter()
                .map(|x| json!({"name": x}))
                .collect();
            sgs.dedup();
            let mut body = json!({
                "server": {
                    "name": n,
                    "imageRef": image,
                    "flavorRef": flavors[d.flavor(r)],
                    "key_name": kp,
                    "networks": [{"uuid": network_id}],
                    "security_groups": sgs,
                    "user_data": base64::engine::general_purpose::STANDARD.encode(&user_data[&n]),
                    "metadata": {"kubeforge-cluster": name, "kubeforge-role": role_slug(r)},
                    "tags": [t],
                },
                "os:scheduler_hints": {"group": group_id},
            });
            if let Some(az) = &d.os.availability_zone {
                body["server"]["availability_zone"] = json!(az);
            }
            let v = cloud
                .post(Svc::Compute, &["servers"], body)
                .send(&format!("create server {n}"))
                .await?;
            e.record("create", "server", &n);
            servers.push(ServerInfo {
                id: s(&v["server"], "id"),
                name: n,
                role: r,
                index: i,
                status: "BUILD".into(),
                fixed_ip: None,
                floating_ip: None,
                failed_build: false,
            });
        }
    }

    // every server ACTIVE (a server in ERROR is reported with Nova's fault)
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut last_pending: Vec<String> = Vec::new();
    loop {
        let mut pending = Vec::new();
        for x in servers.iter_mut() {
            if x.status == "ACTIVE" && x.fixed_ip.is_some() {
                continue;
            }
            let v = cloud
                .get(Svc::Compute, &["servers", &x.id])
                .send(&format!("read server {}", x.name))
                .await?;
            let sv = &v["server"];
            x.status = s(sv, "status");
            if x.status == "ERROR" {
                let fault = sv["fault"]["message"]
                    .as_str()
                    .unwrap_or("no fault message")
                    .trim()
                    .to_string();
                return Err(CloudError::ServerError {
                    name: x.name.clone(),
                    fault,
                });
            }
            if let Some(addrs) = sv["addresses"].as_object() {
                for a in addrs.values().filter_map(Value::as_array).flatten() {
                    match a["OS-EXT-IPS:type"].as_str() {
                        Some("floating") => x.floating_ip = Some(s(a, "addr")),
                        _ if a["version"] == 4 => {
                            x.fixed_ip = x.fixed_ip.clone().or(Some(s(a, "addr")))
                        }
                        _ => {}
                    }
                }
            }
            if x.status != "ACTIVE" || x.fixed_ip.is_none() {
                pending.push(x.name.clone());
            }
        }
        if pending.is_empty() {
            break;
        }
        if start.elapsed() > SERVER_TIMEOUT {
            return Err(CloudError::Timeout {
                what: format!("servers {} becoming ACTIVE", pending.join(", ")),
                timeout: SERVER_TIMEOUT,
            });
        }
        if pending != last_pending || last_report.elapsed() > Duration::from_secs(15) {
            tracing::info!(
                "waiting for {} of {} servers to become ACTIVE ({}s): {}",
                pending.len(),
                servers.len(),
                start.elapsed().as_secs(),
                pending.join(", ")
            );
            last_report = Instant::now();
            last_pending = pending;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::info!(
        "{} servers ACTIVE after {}s",
        servers.len(),
        start.elapsed().as_secs()
    );

    let counts = d.counts();
    let (mut keep, surplus): (Vec<ServerInfo>, Vec<ServerInfo>) =
        servers.into_iter().partition(|x| {
            x.index
                <= counts
                    .iter()
                    .find(|(r, _)| *r == x.role)
                    .map_or(0, |(_, c)| *c)
        });

    // floating IPs, found through the server's port on the cluster's network (Nova's
    // `addresses` may lag); servers about to be removed get none
    if d.floating_ips() {
        let ext = external.clone().unwrap_or_default();
        for x in keep.iter_mut() {
            let ports = cloud
                .get(Svc::Network, &["ports"])
                .query("device_id", &x.id)
                .query("network_id", &network_id)
                .send(&format!("list the ports of server {}", x.name))
                .await?;
            let Some(port) = list(&ports, "ports").first().map(|p| s(p, "id")) else {
                return Err(CloudError::Config(format!(
                    "server {} has no port on network {network_id}: cannot give it a floating IP",
                    x.name
                )));
            };
            let existing = cloud
                .get(Svc::Network, &["floatingips"])
                .query("port_id", &port)
                .send("list floating IPs")
                .await?;
            let ip = match list(&existing, "floatingips").first() {
                Some(f) => s(f, "floating_ip_address"),
                None => {
                    let f = create_tagged(
                        e,
                        "floatingips",
                        "floatingip",
                        "floating IP",
                        &x.name,
                        json!({"floatingip": {"floating_network_id": ext, "port_id": port, "description": desc}}),
                    )
                    .await?;
                    e.record("create", "floating IP", &x.name);
                    s(&f, "floating_ip_address")
                }
            };
            x.floating_ip = Some(ip);
        }
    }

    // the API's load balancer
    let mut endpoint = None;
    if d.octavia() {
        let cps: Vec<&ServerInfo> = keep
            .iter()
            .filter(|x| x.role == Role::ControlPlane)
            .collect();
        endpoint = Some(ensure_load_balancer(e, &subnet_id, &cps, external.as_deref()).await?);
    }
    Ok(Provisioned {
        servers: keep,
        surplus,
        endpoint,
        subnet_id,
        external_network_id: external,
        actions: std::mem::take(&mut e.actions),
    })
}

async fn ensure_load_balancer(
    e: &mut Ensurer<'_>,
    subnet: &str,
    cps: &[&ServerInfo],
    external: Option<&str>,
) -> Result<String, CloudError> {
    let cloud = e.cloud;
    let name = e.d.name().to_string();
    let t = tag(&name);
    let lbn = format!("{name}-api");
    // only a load balancer with the cluster's tag (`check` refused an untagged namesake)
    let found = cloud
        .list_ours(Svc::LoadBalancer, &["lbaas", "loadbalancers"])
        .query("name", &lbn)
        .send("list load balancers")
        .await?;
    let ours = list(&found, "loadbalancers")
        .into_iter()
        .find(|x| s(x, "name") == lbn && has_tag(x, &t))
        .cloned();
    let lb = match ours {
        Some(lb) => {
            e.record("adopt", "load balancer", &lbn);
            lb
        }
        None => {
            let v = cloud
                .post(
                    Svc::LoadBalancer,
                    &["lbaas", "loadbalancers"],
                    json!({"loadbalancer": {"name": lbn, "vip_subnet_id": subnet, "description": description(&name), "tags": [t]}}),
                )
                .send(&format!("create load balancer {lbn}"))
                .await?;
            e.record("create", "load balancer", &lbn);
            v["loadbalancer"].clone()
        }
    };
    let lb_id = s(&lb, "id");
    wait_lb(cloud, &lb_id, &format!("load balancer {lbn}")).await?;
    // the listener and pool are those of our load balancer, whatever their names
    let listeners = cloud
        .list_ours(Svc::LoadBalancer, &["lbaas", "listeners"])
        .query("loadbalancer_id", &lb_id)
        .send("list listeners")
        .await?;
    let listener = list(&listeners, "listeners")
        .into_iter()
        .find(|l| {
            l["protocol_port"] == 6443
                && list(l, "loadbalancers").iter().any(|x| s(x, "id") == lb_id)
        })
        .map(|l| s(l, "id"));
    let listener = match listener {
        Some(l) => l,
        None => {
            let v = cloud
                .post(
                    Svc::LoadBalancer,
                    &["lbaas", "listeners"],
                    json!({"listener": {"name": lbn, "protocol": "TCP", "protocol_port": 6443, "loadbalancer_id": lb_id, "tags": [t]}}),
                )
                .send(&format!("create listener {lbn}"))
                .await?;
            e.record("create", "listener", &lbn);
            wait_lb(cloud, &lb_id, &format!("listener {lbn}")).await?;
            s(&v["listener"], "id")
        }
    };
    let pools = cloud
        .list_ours(Svc::LoadBalancer, &["lbaas", "pools"])
        .query("loadbalancer_id", &lb_id)
        .send("list pools")
        .await?;
    let pool = list(&pools, "pools")
        .into_iter()
        .find(|p| {
            list(p, "listeners").iter().any(|x| s(x, "id") == listener)
                && list(p, "loadbalancers").iter().any(|x| s(x, "id") == lb_id)
        })
        .map(|p| s(p, "id"));
    let pool = match pool {
        Some(p) => p,
        None => {
            let v = cloud
                .post(
                    Svc::LoadBalancer,
                    &["lbaas", "pools"],
                    json!({"pool": {"name": lbn, "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "listener_id": listener, "tags": [t]}}),
                )
                .send(&format!("create pool {lbn}"))
                .await?;
            e.record("create", "pool", &lbn);
            wait_lb(cloud, &lb_id, &format!("pool {lbn}")).await?;
            s(&v["pool"], "id")
        }
    };
    let monitors = cloud
        .list_ours(Svc::LoadBalancer, &["lbaas", "healthmonitors"])
        .query("pool_id", &pool)
        .send("list health monitors")
        .await?;
    if !list(&monitors, "healthmonitors")
        .iter()
        .any(|m| list(m, "pools").iter().any(|p| s(p, "id") == pool))
    {
        cloud
            .post(
                Svc::LoadBalancer,
                &["lbaas", "healthmonitors"],
                json!({"healthmonitor": {"name": lbn, "pool_id": pool, "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3, "tags": [t]}}),
            )
            .send(&format!("create health monitor {lbn}"))
            .await?;
        e.record("create", "health monitor", &lbn);
        wait_lb(cloud, &lb_id, &format!("health monitor {lbn}")).await?;
    }
    let members = cloud
        .get(Svc::LoadBalancer, &["lbaas", "pools", &pool, "members"])
        .send("list pool members")
        .await?;
    let members = list(&members, "members");
    for cp in cps {
        let ip = cp.fixed_ip.clone().unwrap_or_default();
        if members.iter().any(|m| s(m, "address") == ip) {
            continue;
        }
        cloud
            .post(
                Svc::LoadBalancer,
                &["lbaas", "pools", &pool, "members"],
                json!({"member": {"name": cp.name, "address": ip, "protocol_port": 6443, "subnet_id": subnet}}),
            )
            .send(&format!("add {} to pool {lbn}", cp.name))
            .await?;
        e.record("create", "pool member", &cp.name);
        wait_lb(cloud, &lb_id, &format!("member {}", cp.name)).await?;
    }
    // members of control planes that are gone
    for m in &members {
        if !cps
            .iter()
            .any(|cp| cp.fixed_ip.as_deref() == Some(s(m, "address").as_str()))
        {
            cloud
                .delete(
                    Svc::LoadBalancer,
                    &["lbaas", "pools", &pool, "members", &s(m, "id")],
                )
                .send_opt("remove a pool member")
                .await?;
            e.record("delete", "pool member", &s(m, "name"));
            wait_lb(cloud, &lb_id, "member removal").await?;
        }
    }
    let vip = s(&lb, "vip_address");
    if let (true, Some(ext)) = (e.d.floating_ips(), external) {
        let port = s(&lb, "vip_port_id");
        let existing = cloud
            .get(Svc::Network, &["floatingips"])
            .query("port_id", &port)
            .send("list floating IPs")
            .await?;
        if let Some(f) = list(&existing, "floatingips").first() {
            return Ok(s(f, "floating_ip_address"));
        }
        let f = create_tagged(
            e,
            "floatingips",
            "floatingip",
            "floating IP",
            &lbn,
            json!({"floatingip": {"floating_network_id": ext, "port_id": port, "description": description(&name)}}),
        )
        .await?;
        e.record("create", "floating IP", &lbn);
        return Ok(s(&f, "floating_ip_address"));
    }
    Ok(vip)
}

/// Deletes servers (their ports go with them) and the floating IPs with the cluster's tag on
/// their ports (found through Neutron, not Nova's cached `addresses`). A floating IP without
/// the tag (someone else's) is left, and said so.
pub async fn delete_servers(
    cloud: &Cloud,
    cluster: &str,
    servers: &[ServerInfo],
) -> Result<Vec<CloudAction>, CloudError> {
    delete_servers_and_fips(cloud, cluster, servers, &|_| true).await
}

/// Deletes servers and, of the tagged floating IPs on their ports, those `fip_listed` accepts
/// (by ID; destroy deletes only what its confirmed preview listed).
async fn delete_servers_and_fips(
    cloud: &Cloud,
    cluster: &str,
    servers: &[ServerInfo],
    fip_listed: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<CloudAction>, CloudError> {
    let mut out = Vec::new();
    let t = tag(cluster);
    for x in servers {
        let ports = cloud
            .get(Svc::Network, &["ports"])
            .query("device_id", &x.id)
            .send(&format!("list the ports of server {}", x.name))
            .await?;
        for port in list(&ports, "ports") {
            let fips = cloud
                .get(Svc::Network, &["floatingips"])
                .query("port_id", &s(port, "id"))
                .send("list floating IPs")
                .await?;
            for f in list(&fips, "floatingips") {
                let ip = s(f, "floating_ip_address");
                if !has_tag(f, &t) {
                    tracing::warn!(
                        "floating IP {ip} of server {} is not kubeforge's (no tag {t}): left in place, detached when the server goes",
                        x.name
                    );
                    continue;
                }
                if !fip_listed(&s(f, "id")) {
                    tracing::warn!(
                        "floating IP {ip} of server {} was not in the confirmed list: left in place, detached when the server goes",
                        x.name
                    );
                    continue;
                }
                cloud
                    .delete(Svc::Network, &["floatingips", &s(f, "id")])
                    .send_opt(&format!("delete floating IP {ip} of server {}", x.name))
                    .await?;
                out.push(CloudAction {
                    verb: "delete",
                    kind: "floating IP",
                    name: ip.clone(),
                });
            }
        }
        cloud
            .delete(Svc::Compute, &["servers", &x.id])
            .send_opt(&format!("delete server {}", x.name))
            .await?;
        out.push(CloudAction {
            verb: "delete",
            kind: "server",
            name: x.name.clone(),
        });
    }
    let start = Instant::now();
    for x in servers {
        while cloud
            .get(Svc::Compute, &["servers", &x.id])
            .send_opt("read server")
            .await?
            .is_some()
        {
            if start.elapsed() > SERVER_TIMEOUT {
                return Err(CloudError::Timeout {
                    what: format!("deleting server {}", x.name),
                    timeout: SERVER_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(out)
}

/// What `destroy` deletes, and what it leaves although it is named like the cluster's.
pub struct Teardown {
    o: Observed,
    /// (name, id) of the server groups to delete.
    server_groups: Vec<(String, String)>,
    keypair: bool,
    /// What is left, and why.
    pub kept: Vec<String>,
}

/// Reads what `destroy` would delete, changing nothing: what carries the cluster's tag (load
/// balancer, floating IPs, servers, router, network, security groups), the server groups whose
/// members are all the cluster's servers (or none), and the key pair if it holds
/// `public_key` (the inventory's).
pub async fn teardown(
    cloud: &Cloud,
    d: &Desired<'_>,
    public_key: Option<&str>,
) -> Result<Teardown, CloudError> {
    let name = d.name().to_string();
    let t = tag(&name);
    let o = observe(cloud, d).await?;
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
        let foreign: Vec<&String> = sg
            .members
            .iter()
            .filter(|m| !ours.contains(&m.as_str()))
            .collect();
        if foreign.is_empty() {
            server_groups.push((g.clone(), sg.id.clone()));
        } else {
            kept.push(format!(
                "server group {g} ({}): its members include servers that are not the cluster's ({})",
                sg.id,
                foreign
                    .iter()
                    .map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let kp = keypair_name(&name);
    let same_key = |have: &str, want: &str| {
        have.split_whitespace().nth(1).is_some()
            && have.split_whitespace().nth(1) == want.split_whitespace().nth(1)
    };
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
    Ok(Teardown {
        o,
        server_groups,
        keypair,
        kept,
    })
}

impl Teardown {
    /// What `destroy` deletes, in order.
    pub fn actions(&self, cluster: &str) -> Vec<CloudAction> {
        let o = &self.o;
        let mut out = Vec::new();
        let mut del = |kind: &'static str, name: String| {
            out.push(CloudAction {
                verb: "delete",
                kind,
                name,
            })
        };
        if o.our_load_balancer().is_some() {
            del("load balancer", format!("{cluster}-api"));
        }
        for (_, ip) in &o.floating_ips {
            del("floating IP", ip.clone());
        }
        for x in &o.servers {
            del("server", x.name.clone());
        }
        if o.router.is_some() {
            del("router", cluster.to_string());
        }
        if let Some((_, true)) = &o.network {
            del("network", cluster.to_string());
        }
        for n in o.security_groups.keys() {
            del("security group", n.clone());
        }
        for (g, _) in &self.server_groups {
            del("server group", g.clone());
        }
        if self.keypair {
            del("key pair", keypair_name(cluster));
        }
        out
    }
}

/// Deletes what `teardown` found, and nothing else.
pub async fn destroy(
    cloud: &Cloud,
    d: &Desired<'_>,
    plan: Teardown,
) -> Result<Vec<CloudAction>, CloudError> {
    let name = d.name().to_string();
    let o = &plan.o;
    let mut out = Vec::new();
    if let Some(lb) = o.our_load_balancer() {
        let id = &lb.id;
        cloud
            .delete(Svc::LoadBalancer, &["lbaas", "loadbalancers", id])
            .query("cascade", "true")
            .send_opt("delete load balancer")
            .await?;
        let start = Instant::now();
        while cloud
            .get(Svc::LoadBalancer, &["lbaas", "loadbalancers", id])
            .send_opt("read load balancer")
            .await?
            .is_some()
        {
            if start.elapsed() > LB_TIMEOUT {
                return Err(CloudError::Timeout {
                    what: "deleting the load balancer".into(),
                    timeout: LB_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        out.push(CloudAction {
            verb: "delete",
            kind: "load balancer",
            name: format!("{name}-api"),
        });
    }
    // exactly what the confirmed preview listed, by ID: the servers with the listed floating
    // IPs on their ports, then the listed floating IPs left (the load balancer's, or one whose
    // server is gone). Nothing is listed again: what appeared since is not deleted.
    let listed = |id: &str| o.floating_ips.iter().any(|(f, _)| f == id);
    let gone = delete_servers_and_fips(cloud, &name, &o.servers, &listed).await?;
    let gone_ips: Vec<String> = gone
        .iter()
        .filter(|a| a.kind == "floating IP")
        .map(|a| a.name.clone())
        .collect();
    out.extend(gone);
    for (id, ip) in &o.floating_ips {
        if gone_ips.contains(ip) {
            continue;
        }
        out.push(
            delete_one(
                cloud,
                Svc::Network,
                &["floatingips", id],
                "floating IP",
                ip.clone(),
            )
            .await?,
        );
    }
    if let Some(r) = &o.router {
        // detach it from every subnet it is on, then delete it
        let ports = cloud
            .get(Svc::Network, &["ports"])
            .query("device_id", r)
            .query("device_owner", "network:router_interface")
            .send("list the router's ports")
            .await?;
        for p in list(&ports, "ports") {
            for f in list(p, "fixed_ips") {
                cloud
                    .put(
                        Svc::Network,
                        &["routers", r, "remove_router_interface"],
                        Some(json!({"subnet_id": s(f, "subnet_id")})),
                    )
                    .send_opt(&format!("detach router {name}"))
                    .await?;
            }
        }
        out.push(delete_one(cloud, Svc::Network, &["routers", r], "router", name.clone()).await?);
    }
    if let Some((net, true)) = &o.network {
        // ports left on our network (none of ours should be): then subnets go with the network
        let start = Instant::now();
        loop {
            match cloud
                .delete(Svc::Network, &["networks", net])
                .send_opt("delete network")
                .await
            {
                Ok(_) => break,
                Err(e) if e.status() == Some(409) && start.elapsed() < Duration::from_secs(60) => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e),
            }
        }
        out.push(CloudAction {
            verb: "delete",
            kind: "network",
            name: name.clone(),
        });
    }
    for (n, id) in &o.security_groups {
        out.push(
            delete_one(
                cloud,
                Svc::Network,
                &["security-groups", id],
                "security group",
                n.clone(),
            )
            .await?,
        );
    }
    for (g, id) in &plan.server_groups {
        out.push(
            delete_one(
                cloud,
                Svc::Compute,
                &["os-server-groups", id],
                "server group",
                g.clone(),
            )
            .await?,
        );
    }
    if plan.keypair {
        let kp = keypair_name(&name);
        out.push(
            delete_one(
                cloud,
                Svc::Compute,
                &["os-keypairs", &kp],
                "key pair",
                kp.clone(),
            )
            .await?,
        );
    }
    Ok(out)
}

/// Deletes one resource (gone already is fine) and says so.
async fn delete_one(
    cloud: &Cloud,
    svc: Svc,
    path: &[&str],
    kind: &'static str,
    name: String,
) -> Result<CloudAction, CloudError> {
    cloud
        .delete(svc, path)
        .send_opt(&format!("delete {kind} {name}"))
        .await?;
    Ok(CloudAction {
        verb: "delete",
        kind,
        name,
    })
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
