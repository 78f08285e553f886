//! A floating IP per server, found through the server's port on the cluster's network (Nova's
//! `addresses` may lag); made with the cluster's tag where missing.

use super::{Ensurer, create_tagged};
use crate::openstack::action::{Kind, Verb};
use crate::openstack::api;
use crate::openstack::cloud::{CloudError, Svc};
use crate::openstack::provider::{ServerInfo, description};
use serde_json::json;

/// Gives each of `servers` a floating IP (servers about to be removed are not passed).
pub(super) async fn ensure(
    e: &mut Ensurer<'_>,
    servers: &mut [ServerInfo],
    network_id: &str,
    external: &str,
) -> Result<(), CloudError> {
    for x in servers.iter_mut() {
        let ports: api::Ports = e
            .cloud
            .get(Svc::Network, &["ports"])
            .query("device_id", &x.id)
            .query("network_id", network_id)
            .send(&format!("list the ports of server {}", x.name))
            .await?;
        let Some(port) = ports.ports.first().map(|p| p.id.clone()) else {
            return Err(CloudError::Config(format!(
                "server {} has no port on network {network_id}: cannot give it a floating IP",
                x.name
            )));
        };
        let name = x.name.clone();
        x.floating_ip = Some(on_port(e, &port, external, &name).await?);
    }
    Ok(())
}

/// The address of the floating IP on `port`, made (tagged, described, named `name` in the
/// report) if there is none.
pub(super) async fn on_port(
    e: &mut Ensurer<'_>,
    port: &str,
    external: &str,
    name: &str,
) -> Result<String, CloudError> {
    let existing: api::FloatingIps = e
        .cloud
        .get(Svc::Network, &["floatingips"])
        .query("port_id", port)
        .send("list floating IPs")
        .await?;
    if let Some(f) = existing.floatingips.first() {
        return Ok(f.floating_ip_address.clone());
    }
    let f: api::FloatingIp = create_tagged(
        e,
        "floatingips",
        "floatingip",
        Kind::FloatingIp,
        name,
        json!({"floatingip": {"floating_network_id": external, "port_id": port, "description": description(e.d.name())}}),
    )
    .await?;
    e.record(Verb::Create, Kind::FloatingIp, name);
    Ok(f.floating_ip_address)
}
