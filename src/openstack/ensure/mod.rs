//! Creates what is missing and adopts what exists, one module per kind of resource, in this
//! order: key pair, network (subnet, router), security groups, server groups and servers,
//! floating IPs, load balancer. Everything that can refuse does so before anything is created.

pub(crate) mod floating_ips;
pub(crate) mod keypair;
pub(crate) mod load_balancer;
pub(crate) mod network;
pub(crate) mod security_groups;
pub(crate) mod server_group;
pub(crate) mod servers;

pub use security_groups::{Rule, rules};
pub use servers::wait_active;

use super::action::{CloudAction, Kind, Verb};
use super::api;
use super::cloud::{Cloud, CloudError, Ignored, Svc};
use super::provider::{Desired, ServerInfo, server_name, tag};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The result of `ensure`.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub servers: Vec<ServerInfo>,
    /// Servers beyond the counts: their nodes are removed, then they are deleted.
    pub surplus: Vec<ServerInfo>,
    /// The API endpoint of an Octavia load balancer (its floating IP, with floating IPs).
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

/// The state of one `ensure`: what it made (for the error) and did (for the report).
pub(crate) struct Ensurer<'a> {
    pub cloud: &'a Cloud,
    pub d: &'a Desired<'a>,
    /// Neutron takes `tags` in a create's body.
    pub tags_on_create: bool,
    pub created: Vec<String>,
    pub actions: Vec<CloudAction>,
}

impl Ensurer<'_> {
    pub fn record(&mut self, verb: Verb, kind: Kind, name: &str) {
        if verb == Verb::Create {
            self.created.push(format!("{kind} {name}"));
        }
        self.actions.push(CloudAction::new(verb, kind, name));
    }
}

/// The external network's id (by name, or the only one there is).
pub async fn external_network_id(cloud: &Cloud, name: Option<&str>) -> Result<String, CloudError> {
    let v: api::Networks = cloud
        .get(Svc::Network, &["networks"])
        .query("router:external", "true")
        .send("list external networks")
        .await?;
    pick_external_network(&v.networks, name)
}

/// Of the external networks, the one named (by name or ID), or the only one.
pub fn pick_external_network(
    nets: &[api::Network],
    name: Option<&str>,
) -> Result<String, CloudError> {
    match name {
        Some(n) => nets
            .iter()
            .find(|x| x.name == n || x.id == n)
            .map(|x| x.id.clone())
            .ok_or_else(|| CloudError::NotFound {
                kind: "external network",
                name: n.to_string(),
                available: nets.iter().map(|x| x.name.clone()).collect(),
            }),
        None if nets.len() == 1 => Ok(nets[0].id.clone()),
        None => Err(CloudError::Config(format!(
            "set spec.openstack.network.externalNetwork: the cloud has {} external networks ({})",
            nets.len(),
            nets.iter()
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The image's ID, by name or ID, of those Glance listed.
pub fn pick_image(images: &[api::Image], want: &str) -> Option<String> {
    images
        .iter()
        .find(|x| x.name == want || x.id == want)
        .map(|x| x.id.clone())
}

/// The flavor IDs of the roles with servers, by the inventory's flavor (name or ID).
pub fn pick_flavors(
    d: &Desired<'_>,
    flavors: &[api::Flavor],
) -> Result<BTreeMap<String, String>, CloudError> {
    let mut out = BTreeMap::new();
    for (role, count) in d.counts() {
        if count == 0 {
            continue;
        }
        let want = d.flavor(role);
        let id = flavors
            .iter()
            .find(|f| f.name == want || f.id == want)
            .map(|f| f.id.clone())
            .ok_or_else(|| CloudError::NotFound {
                kind: "flavor",
                name: want.to_string(),
                available: flavors.iter().map(|f| f.name.clone()).collect(),
            })?;
        out.insert(want.to_string(), id);
    }
    Ok(out)
}

/// Looks up the image and the flavors before anything is created.
async fn resolve(
    cloud: &Cloud,
    d: &Desired<'_>,
) -> Result<(String, BTreeMap<String, String>), CloudError> {
    let images: api::Images = cloud
        .get(Svc::Image, &["images"])
        .query("name", &d.os.image)
        .send("list images")
        .await?;
    let image = match pick_image(&images.images, &d.os.image) {
        Some(i) => i,
        None => {
            let all: api::Images = cloud
                .get(Svc::Image, &["images"])
                .send("list images")
                .await?;
            return Err(CloudError::NotFound {
                kind: "image",
                name: d.os.image.clone(),
                available: all.images.into_iter().map(|x| x.name).collect(),
            });
        }
    };
    let flavors: api::Flavors = cloud
        .get(Svc::Compute, &["flavors"])
        .send("list flavors")
        .await?;
    Ok((image, pick_flavors(d, &flavors.flavors)?))
}

async fn tag_neutron(cloud: &Cloud, collection: &str, id: &str, t: &str) -> Result<(), CloudError> {
    cloud
        .put(
            Svc::Network,
            &[collection, id, "tags"],
            Some(json!({"tags": [t]})),
        )
        .send::<Ignored>(&format!("tag {collection} {id}"))
        .await?;
    Ok(())
}

/// Deletes a Neutron resource kubeforge just made but could not finish (tag, router interface):
/// untagged or half-made, it would be neither adopted nor destroyed. The error says so if the
/// delete fails too.
pub(crate) async fn undo_create(
    cloud: &Cloud,
    collection: &str,
    kind: Kind,
    name: &str,
    id: &str,
    cause: CloudError,
) -> CloudError {
    match cloud
        .delete(Svc::Network, &[collection, id])
        .send_opt::<Ignored>(&format!("delete the unfinished {kind} {name}"))
        .await
    {
        Ok(_) => cause,
        Err(undo) => CloudError::Config(format!(
            "{cause}; deleting the unfinished {kind} {name} ({id}) failed as well ({undo}): delete it yourself (`openstack {} delete {id}`), it does not carry kubeforge's tag",
            kind.as_str().replace("IP", "ip")
        )),
    }
}

/// Creates a Neutron resource with the cluster's tag: in the create itself where Neutron
/// allows it (`tag-creation`), else tagged right after, and deleted again if tagging fails.
/// Returns the created object (`T`, read from under `key`).
pub(crate) async fn create_tagged<T: serde::de::DeserializeOwned + HasId>(
    e: &Ensurer<'_>,
    collection: &str,
    key: &str,
    kind: Kind,
    name: &str,
    mut body: Value,
) -> Result<T, CloudError> {
    let t = tag(e.d.name());
    if e.tags_on_create {
        body[key]["tags"] = json!([t]);
    }
    let mut doc: BTreeMap<String, T> = e
        .cloud
        .post(Svc::Network, &[collection], body)
        .send(&format!("create {kind} {name}"))
        .await?;
    let obj = doc.remove(key).ok_or_else(|| CloudError::Api {
        what: format!("create {kind} {name}"),
        status: None,
        message: format!("unexpected response: no `{key}`"),
    })?;
    if !e.tags_on_create
        && let Err(err) = tag_neutron(e.cloud, collection, obj.id(), &t).await
    {
        return Err(undo_create(e.cloud, collection, kind, name, obj.id(), err).await);
    }
    Ok(obj)
}

/// A Neutron object with an ID.
pub(crate) trait HasId {
    fn id(&self) -> &str;
}

macro_rules! has_id {
    ($($t:ty),*) => {$(impl HasId for $t { fn id(&self) -> &str { &self.id } })*};
}
has_id!(
    api::Network,
    api::Subnet,
    api::Router,
    api::SecurityGroup,
    api::FloatingIp
);

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
    // everything that can refuse does so before anything is created
    cloud.check_compute_microversion().await?;
    let (image, flavors) = resolve(cloud, d).await?;
    let o = super::observe::observe(cloud, d).await?;
    super::plan::check(d, &o)?;
    let external = external_network_id(cloud, d.os.network.external_network.as_deref()).await;
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

    let kp = keypair::ensure(e, &o, public_key).await?;
    let (network_id, subnet_id) = network::ensure(e, &o, external.as_deref()).await?;
    // the servers name their groups, as Nova wants
    security_groups::ensure(e, &o).await?;
    let servers = servers::ensure(
        e,
        &o,
        &servers::Launch {
            image: &image,
            flavors: &flavors,
            keypair: &kp,
            network_id: &network_id,
            user_data: &user_data,
        },
    )
    .await?;
    let servers = wait_active(cloud, servers).await?;

    let (mut keep, surplus): (Vec<ServerInfo>, Vec<ServerInfo>) = servers
        .into_iter()
        .partition(|x| x.index <= d.count(x.role));

    if d.floating_ips() {
        floating_ips::ensure(
            e,
            &mut keep,
            &network_id,
            external.as_deref().unwrap_or_default(),
        )
        .await?;
    }

    // the API's load balancer
    let mut endpoint = None;
    if d.octavia() {
        let cps: Vec<&ServerInfo> = keep
            .iter()
            .filter(|x| x.role == crate::model::Role::ControlPlane)
            .collect();
        endpoint = Some(load_balancer::ensure(e, &subnet_id, &cps, external.as_deref()).await?);
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
