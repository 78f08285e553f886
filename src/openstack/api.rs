//! The Nova, Neutron, Glance and Octavia objects kubeforge reads, as the APIs return them
//! (only the fields kubeforge uses). Every field may be missing or `null` in a response: it then
//! takes its default, so that a cloud that omits one is read, not refused.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// `null` is the default, as a missing field is.
fn nd<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `{"id": ...}`, as Octavia lists the load balancers of a listener or the pools of a monitor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IdRef {
    #[serde(deserialize_with = "nd")]
    pub id: String,
}

fn has(tags: &[String], t: &str) -> bool {
    tags.iter().any(|x| x == t)
}

// ---- Nova ----

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Keypair {
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub public_key: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeypairDoc {
    pub keypair: Keypair,
}

/// A server group at microversion 2.64 (`policy`, not `policies`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerGroup {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub policy: String,
    #[serde(deserialize_with = "nd")]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerGroups {
    #[serde(deserialize_with = "nd")]
    pub server_groups: Vec<ServerGroup>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerGroupDoc {
    pub server_group: ServerGroup,
}

/// One address of a server, under its network's name in `addresses`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Address {
    #[serde(deserialize_with = "nd")]
    pub addr: String,
    #[serde(deserialize_with = "nd")]
    pub version: u8,
    /// `fixed` or `floating`.
    #[serde(rename = "OS-EXT-IPS:type", deserialize_with = "nd")]
    pub kind: Option<String>,
}

impl Address {
    pub fn is_floating(&self) -> bool {
        self.kind.as_deref() == Some("floating")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Fault {
    #[serde(deserialize_with = "nd")]
    pub message: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Server {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub status: String,
    /// By network name (sorted, as kubeforge has always read them).
    #[serde(deserialize_with = "nd")]
    pub addresses: BTreeMap<String, Vec<Address>>,
    /// Empty for a server that never launched.
    #[serde(rename = "OS-SRV-USG:launched_at", deserialize_with = "nd")]
    pub launched_at: Option<String>,
    #[serde(deserialize_with = "nd")]
    pub fault: Option<Fault>,
    #[serde(deserialize_with = "nd")]
    pub tags: Vec<String>,
}

impl Server {
    pub fn all_addresses(&self) -> impl Iterator<Item = &Address> {
        self.addresses.values().flatten()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Servers {
    #[serde(deserialize_with = "nd")]
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerDoc {
    pub server: Server,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Flavor {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Flavors {
    #[serde(deserialize_with = "nd")]
    pub flavors: Vec<Flavor>,
}

// ---- Glance ----

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Image {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Images {
    #[serde(deserialize_with = "nd")]
    pub images: Vec<Image>,
}

// ---- Neutron ----

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Network {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub tags: Vec<String>,
}

impl Network {
    pub fn has_tag(&self, t: &str) -> bool {
        has(&self.tags, t)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Networks {
    #[serde(deserialize_with = "nd")]
    pub networks: Vec<Network>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Subnet {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub ip_version: u8,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Subnets {
    #[serde(deserialize_with = "nd")]
    pub subnets: Vec<Subnet>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Router {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub tags: Vec<String>,
}

impl Router {
    pub fn has_tag(&self, t: &str) -> bool {
        has(&self.tags, t)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Routers {
    #[serde(deserialize_with = "nd")]
    pub routers: Vec<Router>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FixedIp {
    #[serde(deserialize_with = "nd")]
    pub subnet_id: String,
    #[serde(deserialize_with = "nd")]
    pub ip_address: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Port {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub fixed_ips: Vec<FixedIp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Ports {
    #[serde(deserialize_with = "nd")]
    pub ports: Vec<Port>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SecurityGroup {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SecurityGroups {
    #[serde(deserialize_with = "nd")]
    pub security_groups: Vec<SecurityGroup>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FloatingIp {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub floating_ip_address: String,
    #[serde(deserialize_with = "nd")]
    pub port_id: Option<String>,
    #[serde(deserialize_with = "nd")]
    pub tags: Vec<String>,
}

impl FloatingIp {
    pub fn has_tag(&self, t: &str) -> bool {
        has(&self.tags, t)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FloatingIps {
    #[serde(deserialize_with = "nd")]
    pub floatingips: Vec<FloatingIp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FloatingIpDoc {
    pub floatingip: FloatingIp,
}

// ---- Octavia ----

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoadBalancer {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub vip_address: String,
    #[serde(deserialize_with = "nd")]
    pub vip_port_id: String,
    #[serde(deserialize_with = "nd")]
    pub provisioning_status: String,
    #[serde(deserialize_with = "nd")]
    pub tags: Vec<String>,
}

impl LoadBalancer {
    pub fn has_tag(&self, t: &str) -> bool {
        has(&self.tags, t)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoadBalancers {
    #[serde(deserialize_with = "nd")]
    pub loadbalancers: Vec<LoadBalancer>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoadBalancerDoc {
    pub loadbalancer: LoadBalancer,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Listener {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub protocol_port: u16,
    #[serde(deserialize_with = "nd")]
    pub loadbalancers: Vec<IdRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Listeners {
    #[serde(deserialize_with = "nd")]
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ListenerDoc {
    pub listener: Listener,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Pool {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub listeners: Vec<IdRef>,
    #[serde(deserialize_with = "nd")]
    pub loadbalancers: Vec<IdRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Pools {
    #[serde(deserialize_with = "nd")]
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PoolDoc {
    pub pool: Pool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HealthMonitor {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub pools: Vec<IdRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HealthMonitors {
    #[serde(deserialize_with = "nd")]
    pub healthmonitors: Vec<HealthMonitor>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Member {
    #[serde(deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub address: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Members {
    #[serde(deserialize_with = "nd")]
    pub members: Vec<Member>,
}

// ---- Keystone ----

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenDoc {
    pub token: Token,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Token {
    #[serde(deserialize_with = "nd")]
    pub project: Option<IdRef>,
}
