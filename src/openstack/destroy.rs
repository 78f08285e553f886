//! Deletes what a teardown listed (by ID, nothing listed again), and the servers of a lowered
//! count.

use super::action::{CloudAction, Kind, Verb};
use super::api;
use super::cloud::{Cloud, CloudError, Ignored, Svc};
use super::provider::{Desired, LB_TIMEOUT, SERVER_TIMEOUT, ServerInfo, keypair_name, tag};
use super::teardown::Teardown;
use crate::wait::{Poll, poll_until};
use serde_json::json;
use std::time::Duration;

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
/// (by ID; destroy deletes only what its confirmed preview listed). Returns once Nova no
/// longer has them.
async fn delete_servers_and_fips(
    cloud: &Cloud,
    cluster: &str,
    servers: &[ServerInfo],
    fip_listed: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<CloudAction>, CloudError> {
    let mut out = Vec::new();
    let t = tag(cluster);
    for x in servers {
        let ports: api::Ports = cloud
            .get(Svc::Network, &["ports"])
            .query("device_id", &x.id)
            .send(&format!("list the ports of server {}", x.name))
            .await?;
        for port in &ports.ports {
            let fips: api::FloatingIps = cloud
                .get(Svc::Network, &["floatingips"])
                .query("port_id", &port.id)
                .send("list floating IPs")
                .await?;
            for f in &fips.floatingips {
                let ip = &f.floating_ip_address;
                if !f.has_tag(&t) {
                    tracing::warn!(
                        "floating IP {ip} of server {} is not kubeforge's (no tag {t}): left in place, detached when the server goes",
                        x.name
                    );
                    continue;
                }
                if !fip_listed(&f.id) {
                    tracing::warn!(
                        "floating IP {ip} of server {} was not in the confirmed list: left in place, detached when the server goes",
                        x.name
                    );
                    continue;
                }
                cloud
                    .delete(Svc::Network, &["floatingips", &f.id])
                    .send_opt::<Ignored>(&format!("delete floating IP {ip} of server {}", x.name))
                    .await?;
                out.push(CloudAction::new(Verb::Delete, Kind::FloatingIp, ip.clone()));
            }
        }
        cloud
            .delete(Svc::Compute, &["servers", &x.id])
            .send_opt::<Ignored>(&format!("delete server {}", x.name))
            .await?;
        out.push(CloudAction::new(Verb::Delete, Kind::Server, x.name.clone()));
    }
    if !servers.is_empty() {
        let names: Vec<&str> = servers.iter().map(|x| x.name.as_str()).collect();
        poll_until(
            SERVER_TIMEOUT,
            Duration::from_secs(1),
            &format!("Nova to delete server {}", names.join(", ")),
            || async {
                let mut left = Vec::new();
                for x in servers {
                    match cloud
                        .get(Svc::Compute, &["servers", &x.id])
                        .send_opt::<Ignored>("read server")
                        .await
                    {
                        Ok(Some(_)) => left.push(x.name.clone()),
                        Ok(None) => {}
                        Err(e) => return Poll::Abort(e),
                    }
                }
                if left.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("still there: {}", left.join(", ")))
                }
            },
        )
        .await
        .map_err(CloudError::from_wait)?;
    }
    Ok(out)
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
            .send_opt::<Ignored>("delete load balancer")
            .await?;
        poll_until(
            LB_TIMEOUT,
            Duration::from_secs(1),
            &format!("Octavia to delete load balancer {name}-api"),
            || async {
                match cloud
                    .get(Svc::LoadBalancer, &["lbaas", "loadbalancers", id])
                    .send_opt::<api::LoadBalancerDoc>("read load balancer")
                    .await
                {
                    Ok(None) => Poll::Ready(()),
                    Ok(Some(lb)) => Poll::Pending(format!(
                        "provisioning status {}",
                        lb.loadbalancer.provisioning_status
                    )),
                    Err(e) => Poll::Abort(e),
                }
            },
        )
        .await
        .map_err(CloudError::from_wait)?;
        out.push(CloudAction::new(
            Verb::Delete,
            Kind::LoadBalancer,
            format!("{name}-api"),
        ));
    }
    // exactly what the confirmed preview listed, by ID: the servers with the listed floating
    // IPs on their ports, then the listed floating IPs left (the load balancer's, or one whose
    // server is gone). Nothing is listed again: what appeared since is not deleted.
    let listed = |id: &str| o.floating_ips.iter().any(|(f, _)| f == id);
    let gone = delete_servers_and_fips(cloud, &name, &o.servers, &listed).await?;
    let gone_ips: Vec<String> = gone
        .iter()
        .filter(|a| a.kind == Kind::FloatingIp)
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
                Kind::FloatingIp,
                ip.clone(),
            )
            .await?,
        );
    }
    if let Some(r) = &o.router {
        // detach it from every subnet it is on, then delete it
        let ports: api::Ports = cloud
            .get(Svc::Network, &["ports"])
            .query("device_id", r)
            .query("device_owner", "network:router_interface")
            .send("list the router's ports")
            .await?;
        for p in &ports.ports {
            for f in &p.fixed_ips {
                cloud
                    .put(
                        Svc::Network,
                        &["routers", r, "remove_router_interface"],
                        Some(json!({"subnet_id": f.subnet_id})),
                    )
                    .send_opt::<Ignored>(&format!("detach router {name}"))
                    .await?;
            }
        }
        out.push(
            delete_one(
                cloud,
                Svc::Network,
                &["routers", r],
                Kind::Router,
                name.clone(),
            )
            .await?,
        );
    }
    if let Some((net, true)) = &o.network {
        // ports left on our network (none of ours should be) make Neutron answer 409 for a
        // while; the subnets go with the network
        poll_until(
            Duration::from_secs(60),
            Duration::from_secs(2),
            &format!("Neutron to delete network {name} (HTTP 409 while ports are on it)"),
            || async {
                match cloud
                    .delete(Svc::Network, &["networks", net])
                    .send_opt::<Ignored>("delete network")
                    .await
                {
                    Ok(_) => Poll::Ready(()),
                    Err(e) if e.is_conflict() => Poll::Pending(e.to_string()),
                    Err(e) => Poll::Abort(e),
                }
            },
        )
        .await
        .map_err(CloudError::from_wait)?;
        out.push(CloudAction::new(Verb::Delete, Kind::Network, name.clone()));
    }
    for (n, id) in &o.security_groups {
        out.push(
            delete_one(
                cloud,
                Svc::Network,
                &["security-groups", id],
                Kind::SecurityGroup,
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
                Kind::ServerGroup,
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
                Kind::KeyPair,
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
    kind: Kind,
    name: String,
) -> Result<CloudAction, CloudError> {
    cloud
        .delete(svc, path)
        .send_opt::<Ignored>(&format!("delete {kind} {name}"))
        .await?;
    Ok(CloudAction::new(Verb::Delete, kind, name))
}
