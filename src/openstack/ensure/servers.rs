//! The servers: a failed build is deleted and made again, a missing one created (in its role's
//! server group), and all are waited for until ACTIVE with an address.

use super::{Ensurer, server_group};
use crate::model::Role;
use crate::openstack::action::{Kind, Verb};
use crate::openstack::api;
use crate::openstack::cloud::{Cloud, CloudError, Svc};
use crate::openstack::provider::{
    Observed, SERVER_TIMEOUT, ServerInfo, role_slug, server_name, tag,
};
use crate::wait::{Poll, poll_until};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a new server is made of.
pub(super) struct Launch<'a> {
    pub image: &'a str,
    /// flavor (as the inventory names it) → ID
    pub flavors: &'a BTreeMap<String, String>,
    pub keypair: &'a str,
    pub network_id: &'a str,
    /// server name → cloud-init user data
    pub user_data: &'a BTreeMap<String, String>,
}

/// Returns the servers there are now (not yet waited for).
pub(super) async fn ensure(
    e: &mut Ensurer<'_>,
    o: &Observed,
    l: &Launch<'_>,
) -> Result<Vec<ServerInfo>, CloudError> {
    let d = e.d;
    let name = d.name().to_string();
    // a server whose build failed earlier (quota, no valid host) is deleted and made again
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
        crate::openstack::destroy::delete_servers(e.cloud, &name, std::slice::from_ref(x)).await?;
        e.record(Verb::Replace, Kind::Server, &x.name);
    }
    let mut servers: Vec<ServerInfo> = o
        .servers
        .iter()
        .filter(|x| !x.failed_build)
        .cloned()
        .collect();
    for (role, count) in d.counts() {
        if count == 0 {
            continue;
        }
        let group_id = server_group::ensure(e, o, role).await?;
        let mut to_create = Vec::new();
        for i in 1..=count {
            let n = server_name(&name, role, i);
            if servers.iter().any(|x| x.name == n) {
                e.record(Verb::Adopt, Kind::Server, &n);
            } else {
                to_create.push(i);
            }
        }
        for i in to_create {
            let n = server_name(&name, role, i);
            let body = create_body(e, l, role, &n, &group_id);
            let v: api::ServerDoc = e
                .cloud
                .post(Svc::Compute, &["servers"], body)
                .send(&format!("create server {n}"))
                .await?;
            e.record(Verb::Create, Kind::Server, &n);
            servers.push(ServerInfo {
                id: v.server.id,
                name: n,
                role,
                index: i,
                status: "BUILD".into(),
                fixed_ip: None,
                floating_ip: None,
                failed_build: false,
            });
        }
    }
    Ok(servers)
}

fn create_body(
    e: &Ensurer<'_>,
    l: &Launch<'_>,
    role: Role,
    n: &str,
    group_id: &str,
) -> serde_json::Value {
    use base64::Engine as _;
    let d = e.d;
    let mut sgs: Vec<serde_json::Value> = d
        .security_groups(role)
        .into_iter()
        .map(|x| json!({"name": x}))
        .collect();
    sgs.dedup();
    let mut body = json!({
        "server": {
            "name": n,
            "imageRef": l.image,
            "flavorRef": l.flavors[d.flavor(role)],
            "key_name": l.keypair,
            "networks": [{"uuid": l.network_id}],
            "security_groups": sgs,
            "user_data": base64::engine::general_purpose::STANDARD.encode(&l.user_data[n]),
            "metadata": {"kubeforge-cluster": d.name(), "kubeforge-role": role_slug(role)},
            "tags": [tag(d.name())],
        },
        "os:scheduler_hints": {"group": group_id},
    });
    if let Some(az) = &d.os.availability_zone {
        body["server"]["availability_zone"] = json!(az);
    }
    body
}

/// Folds what Nova says of a server into what kubeforge knows of it: its status, its floating
/// address, and the first IPv4 fixed one. A server in ERROR is an error with Nova's fault.
pub fn update_from(x: &mut ServerInfo, s: &api::Server) -> Result<(), CloudError> {
    x.status = s.status.clone();
    if x.status == "ERROR" {
        let fault = s
            .fault
            .as_ref()
            .map(|f| f.message.trim())
            .filter(|m| !m.is_empty())
            .unwrap_or("no fault message")
            .to_string();
        return Err(CloudError::ServerError {
            name: x.name.clone(),
            fault,
        });
    }
    for a in s.all_addresses() {
        if a.is_floating() {
            x.floating_ip = Some(a.addr.clone());
        } else if a.version == 4 {
            x.fixed_ip = x.fixed_ip.clone().or(Some(a.addr.clone()));
        }
    }
    Ok(())
}

fn ready(x: &ServerInfo) -> bool {
    x.status == "ACTIVE" && x.fixed_ip.is_some()
}

/// Waits until every server is ACTIVE with a fixed address (a server in ERROR is reported with
/// Nova's fault), saying which it still waits for.
pub async fn wait_active(
    cloud: &Cloud,
    servers: Vec<ServerInfo>,
) -> Result<Vec<ServerInfo>, CloudError> {
    let total = servers.len();
    let state = Mutex::new(servers);
    let start = Instant::now();
    let report = Mutex::new((Instant::now(), Vec::<String>::new()));
    poll_until(
        SERVER_TIMEOUT,
        Duration::from_secs(1),
        "the servers to become ACTIVE",
        || async {
            let todo: Vec<(usize, String, String)> = state
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(_, x)| !ready(x))
                .map(|(i, x)| (i, x.id.clone(), x.name.clone()))
                .collect();
            let mut pending = Vec::new();
            for (i, id, name) in todo {
                let v: api::ServerDoc = match cloud
                    .get(Svc::Compute, &["servers", &id])
                    .send(&format!("read server {name}"))
                    .await
                {
                    Ok(v) => v,
                    Err(e) => return Poll::Abort(e),
                };
                let mut all = state.lock().unwrap();
                if let Err(e) = update_from(&mut all[i], &v.server) {
                    return Poll::Abort(e);
                }
                if !ready(&all[i]) {
                    pending.push(name);
                }
            }
            if pending.is_empty() {
                return Poll::Ready(());
            }
            let mut r = report.lock().unwrap();
            if pending != r.1 || r.0.elapsed() > Duration::from_secs(15) {
                tracing::info!(
                    "waiting for {} of {total} servers to become ACTIVE ({}s): {}",
                    pending.len(),
                    start.elapsed().as_secs(),
                    pending.join(", ")
                );
                *r = (Instant::now(), pending.clone());
            }
            Poll::Pending(format!("not yet ACTIVE: {}", pending.join(", ")))
        },
    )
    .await
    .map_err(CloudError::from_wait)?;
    tracing::info!(
        "{total} servers ACTIVE after {}s",
        start.elapsed().as_secs()
    );
    Ok(state.into_inner().unwrap())
}
