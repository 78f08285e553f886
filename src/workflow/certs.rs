//! `certs renew`: one step, renew-certs, over every control plane in turn (it leaves the load
//! balancers, renews its certificates with kubeadm, proves its own API server and etcd serve,
//! and goes back), once every control plane answers.

use crate::engine::exec::run_day2;
use crate::engine::plan::compute_observed;
use crate::engine::{Input, Step};
use crate::inventory::Loaded;
use crate::model::Role;
use crate::ssh::ConnectOptions;
use crate::steps::renew_certs::RenewCerts;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(
        "control plane {host} is unreachable ({error}); renew when every control plane answers"
    )]
    Unreachable { host: String, error: String },
    #[error("{0}: not connected")]
    NotConnected(String),
    #[error("{host}: {message}")]
    Failed { host: String, message: String },
    /// A renewal failed: the message names the host.
    #[error("{0}")]
    Stopped(String),
}

pub use crate::steps::renew_certs::Renewed;

/// Renews the certificates of every control plane, one at a time (the renew-certs step on
/// the engine); `progress` is told of each control plane before it starts (with its soonest
/// expiry) and after it is done.
pub async fn renew(
    loaded: &Loaded,
    connect: ConnectOptions,
    progress: crate::steps::renew_certs::Progress,
) -> Result<Vec<Renewed>, CertsError> {
    let c = &loaded.cluster;
    let (fleet, _, _) =
        crate::status::connect_all(loaded, connect, "connect", false, |_, _, _| async {
            Ok::<(), crate::ssh::SshError>(())
        })
        .await
        .map_err(|e| CertsError::Failed {
            host: c.name.clone(),
            message: e.to_string(),
        })?;
    if let Some((h, e)) = fleet
        .unreachable
        .iter()
        .find(|(h, _)| c.host(h).is_some_and(|x| x.role == Role::ControlPlane))
    {
        let e = CertsError::Unreachable {
            host: h.clone(),
            error: e.to_string(),
        };
        fleet.close().await;
        return Err(e);
    }
    let step = RenewCerts::new(progress);
    let manifest = loaded.catalog.get(&c.version).ok_or_else(|| {
        CertsError::NotConnected(format!("no release manifest for {}", c.version))
    })?;
    let facts = BTreeMap::new();
    let workflow: [&dyn Step; 1] = [&step];
    let plan =
        compute_observed(&workflow, &Input::day2(c, manifest, &facts, None)).map_err(|e| {
            CertsError::Failed {
                host: c.name.clone(),
                message: e.to_string(),
            }
        })?;
    let r = run_day2(&workflow, &plan, c, &fleet.sessions, false).await;
    fleet.close().await;
    match r {
        Ok(()) => Ok(step.done()),
        Err(f) => Err(CertsError::Stopped(
            f.failures
                .into_iter()
                .map(|(_, e)| e)
                .collect::<Vec<_>>()
                .join("\n"),
        )),
    }
}
