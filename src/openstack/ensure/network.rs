//! The cluster's network, subnet and router (its own network), or the inventory's network.

use super::{Ensurer, create_tagged, undo_create};
use crate::openstack::action::{Kind, Verb};
use crate::openstack::api;
use crate::openstack::cloud::{CloudError, Ignored, Svc};
use crate::openstack::provider::{DEFAULT_CIDR, Observed, description};
use serde_json::json;

/// Returns (network id, subnet id).
pub(super) async fn ensure(
    e: &mut Ensurer<'_>,
    o: &Observed,
    external: Option<&str>,
) -> Result<(String, String), CloudError> {
    let d = e.d;
    let cloud = e.cloud;
    let name = d.name().to_string();
    let desc = description(&name);
    if !d.own_network() {
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
        e.record(Verb::Use, Kind::Network, &n);
        return Ok((id, subnet));
    }
    let net = match &o.network {
        Some((id, _)) => {
            e.record(Verb::Adopt, Kind::Network, &name);
            id.clone()
        }
        None => {
            let v: api::Network = create_tagged(
                e,
                "networks",
                "network",
                Kind::Network,
                &name,
                json!({"network": {"name": name, "description": desc, "admin_state_up": true}}),
            )
            .await?;
            e.record(Verb::Create, Kind::Network, &name);
            v.id
        }
    };
    let subnet = match &o.subnet {
        Some(id) => {
            e.record(Verb::Adopt, Kind::Subnet, &name);
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
            let v: api::Subnet =
                create_tagged(e, "subnets", "subnet", Kind::Subnet, &name, body).await?;
            e.record(Verb::Create, Kind::Subnet, &name);
            v.id
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
                .send::<Ignored>(&format!("attach router {name} to subnet {name}"))
                .await
        }
    };
    if let Some(id) = &o.router {
        e.record(Verb::Adopt, Kind::Router, &name);
        // an earlier run may have stopped between creating the router and attaching it
        let ports: api::Ports = cloud
            .get(Svc::Network, &["ports"])
            .query("device_id", id)
            .query("network_id", &net)
            .send(&format!("list the ports of router {name}"))
            .await?;
        if !on_subnet(&ports.ports, &subnet) {
            attach(id.clone()).await?;
            e.record(Verb::Attach, Kind::Router, &name);
        }
    } else {
        let v: api::Router = create_tagged(
            e,
            "routers",
            "router",
            Kind::Router,
            &name,
            json!({"router": {"name": name, "description": desc, "external_gateway_info": {"network_id": external.unwrap_or_default()}}}),
        )
        .await?;
        if let Err(err) = attach(v.id.clone()).await {
            return Err(undo_create(cloud, "routers", Kind::Router, &name, &v.id, err).await);
        }
        e.record(Verb::Create, Kind::Router, &name);
    }
    Ok((net, subnet))
}

/// One of the ports has an address on the subnet.
pub fn on_subnet(ports: &[api::Port], subnet: &str) -> bool {
    ports
        .iter()
        .any(|p| p.fixed_ips.iter().any(|f| f.subnet_id == subnet))
}
