//! The API's Octavia load balancer `<cluster>-api`: TCP 6443, a listener, a pool with an HTTPS
//! /readyz health monitor, one member per control plane; with floating IPs, one on its VIP.

use super::{Ensurer, floating_ips};
use crate::openstack::action::{Kind, Verb};
use crate::openstack::api;
use crate::openstack::cloud::{Cloud, CloudError, Ignored, Svc};
use crate::openstack::provider::{LB_TIMEOUT, ServerInfo, description, tag};
use crate::wait::{Poll, poll_until};
use serde_json::json;
use std::time::Duration;

/// Waits until the load balancer is ACTIVE again after a change (`what` names the change).
async fn wait_lb(cloud: &Cloud, id: &str, what: &str) -> Result<(), CloudError> {
    poll_until(
        LB_TIMEOUT,
        Duration::from_secs(1),
        &format!("{what} to become ACTIVE"),
        || async {
            match cloud
                .get(Svc::LoadBalancer, &["lbaas", "loadbalancers", id])
                .send::<api::LoadBalancerDoc>(what)
                .await
            {
                Ok(v) => match v.loadbalancer.provisioning_status.as_str() {
                    "ACTIVE" => Poll::Ready(()),
                    "ERROR" => Poll::Abort(CloudError::Api {
                        what: what.to_string(),
                        status: None,
                        message: "the load balancer went to ERROR".into(),
                    }),
                    s => Poll::Pending(format!("provisioning status {s}")),
                },
                Err(e) => Poll::Abort(e),
            }
        },
    )
    .await
    .map_err(CloudError::from_wait)
}

/// The listener on TCP 6443 of load balancer `lb`.
pub fn pick_listener(listeners: &[api::Listener], lb: &str) -> Option<String> {
    listeners
        .iter()
        .find(|l| l.protocol_port == 6443 && l.loadbalancers.iter().any(|x| x.id == lb))
        .map(|l| l.id.clone())
}

/// The pool of `listener` on load balancer `lb`.
pub fn pick_pool(pools: &[api::Pool], listener: &str, lb: &str) -> Option<String> {
    pools
        .iter()
        .find(|p| {
            p.listeners.iter().any(|x| x.id == listener)
                && p.loadbalancers.iter().any(|x| x.id == lb)
        })
        .map(|p| p.id.clone())
}

/// The members to add (control planes without one) and to remove (of control planes gone).
pub fn member_changes<'a>(
    members: &'a [api::Member],
    cps: &[&'a ServerInfo],
) -> (Vec<&'a ServerInfo>, Vec<&'a api::Member>) {
    let add = cps
        .iter()
        .filter(|cp| {
            let ip = cp.fixed_ip.clone().unwrap_or_default();
            !members.iter().any(|m| m.address == ip)
        })
        .copied()
        .collect();
    let remove = members
        .iter()
        .filter(|m| {
            !cps.iter()
                .any(|cp| cp.fixed_ip.as_deref() == Some(m.address.as_str()))
        })
        .collect();
    (add, remove)
}

/// Returns the API's address: the VIP, or its floating IP.
pub(super) async fn ensure(
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
    let found: api::LoadBalancers = cloud
        .list_ours(Svc::LoadBalancer, &["lbaas", "loadbalancers"])
        .query("name", &lbn)
        .send("list load balancers")
        .await?;
    let ours = found
        .loadbalancers
        .into_iter()
        .find(|x| x.name == lbn && x.has_tag(&t));
    let lb = match ours {
        Some(lb) => {
            e.record(Verb::Adopt, Kind::LoadBalancer, &lbn);
            lb
        }
        None => {
            let v: api::LoadBalancerDoc = cloud
                .post(
                    Svc::LoadBalancer,
                    &["lbaas", "loadbalancers"],
                    json!({"loadbalancer": {"name": lbn, "vip_subnet_id": subnet, "description": description(&name), "tags": [t]}}),
                )
                .send(&format!("create load balancer {lbn}"))
                .await?;
            e.record(Verb::Create, Kind::LoadBalancer, &lbn);
            v.loadbalancer
        }
    };
    let lb_id = lb.id.clone();
    wait_lb(cloud, &lb_id, &format!("load balancer {lbn}")).await?;
    // the listener and pool are those of our load balancer, whatever their names
    let listeners: api::Listeners = cloud
        .list_ours(Svc::LoadBalancer, &["lbaas", "listeners"])
        .query("loadbalancer_id", &lb_id)
        .send("list listeners")
        .await?;
    let listener = match pick_listener(&listeners.listeners, &lb_id) {
        Some(l) => l,
        None => {
            let v: api::ListenerDoc = cloud
                .post(
                    Svc::LoadBalancer,
                    &["lbaas", "listeners"],
                    json!({"listener": {"name": lbn, "protocol": "TCP", "protocol_port": 6443, "loadbalancer_id": lb_id, "tags": [t]}}),
                )
                .send(&format!("create listener {lbn}"))
                .await?;
            e.record(Verb::Create, Kind::Listener, &lbn);
            wait_lb(cloud, &lb_id, &format!("listener {lbn}")).await?;
            v.listener.id
        }
    };
    let pools: api::Pools = cloud
        .list_ours(Svc::LoadBalancer, &["lbaas", "pools"])
        .query("loadbalancer_id", &lb_id)
        .send("list pools")
        .await?;
    let pool = match pick_pool(&pools.pools, &listener, &lb_id) {
        Some(p) => p,
        None => {
            let v: api::PoolDoc = cloud
                .post(
                    Svc::LoadBalancer,
                    &["lbaas", "pools"],
                    json!({"pool": {"name": lbn, "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "listener_id": listener, "tags": [t]}}),
                )
                .send(&format!("create pool {lbn}"))
                .await?;
            e.record(Verb::Create, Kind::Pool, &lbn);
            wait_lb(cloud, &lb_id, &format!("pool {lbn}")).await?;
            v.pool.id
        }
    };
    let monitors: api::HealthMonitors = cloud
        .list_ours(Svc::LoadBalancer, &["lbaas", "healthmonitors"])
        .query("pool_id", &pool)
        .send("list health monitors")
        .await?;
    if !monitors
        .healthmonitors
        .iter()
        .any(|m| m.pools.iter().any(|p| p.id == pool))
    {
        cloud
            .post(
                Svc::LoadBalancer,
                &["lbaas", "healthmonitors"],
                // /readyz over HTTPS: an API server whose port is open but that cannot serve (its
                // etcd member without quorum, still starting) takes no traffic
                json!({"healthmonitor": {"name": lbn, "pool_id": pool, "type": "HTTPS", "http_method": "GET", "url_path": "/readyz", "expected_codes": "200", "delay": 5, "timeout": 3, "max_retries": 3, "tags": [t]}}),
            )
            .send::<Ignored>(&format!("create health monitor {lbn}"))
            .await?;
        e.record(Verb::Create, Kind::HealthMonitor, &lbn);
        wait_lb(cloud, &lb_id, &format!("health monitor {lbn}")).await?;
    }
    let members: api::Members = cloud
        .get(Svc::LoadBalancer, &["lbaas", "pools", &pool, "members"])
        .send("list pool members")
        .await?;
    let (add, remove) = member_changes(&members.members, cps);
    for cp in add {
        let ip = cp.fixed_ip.clone().unwrap_or_default();
        cloud
            .post(
                Svc::LoadBalancer,
                &["lbaas", "pools", &pool, "members"],
                json!({"member": {"name": cp.name, "address": ip, "protocol_port": 6443, "subnet_id": subnet}}),
            )
            .send::<Ignored>(&format!("add {} to pool {lbn}", cp.name))
            .await?;
        e.record(Verb::Create, Kind::PoolMember, &cp.name);
        wait_lb(cloud, &lb_id, &format!("member {}", cp.name)).await?;
    }
    // members of control planes that are gone
    for m in remove {
        cloud
            .delete(
                Svc::LoadBalancer,
                &["lbaas", "pools", &pool, "members", &m.id],
            )
            .send_opt::<Ignored>("remove a pool member")
            .await?;
        e.record(Verb::Delete, Kind::PoolMember, &m.name);
        wait_lb(cloud, &lb_id, "member removal").await?;
    }
    if let (true, Some(ext)) = (e.d.floating_ips(), external) {
        return floating_ips::on_port(e, &lb.vip_port_id, ext, &lbn).await;
    }
    Ok(lb.vip_address)
}
