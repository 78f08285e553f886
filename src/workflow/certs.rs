//! `certs renew`: every control plane in turn leaves the load balancers, renews its
//! certificates with kubeadm, proves its own API server and etcd serve, and goes back.

use crate::inventory::Loaded;
use crate::model::Role;
use crate::ssh::ConnectOptions;

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
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
}

/// What one control plane's renewal found: the soonest expiry before and after, in days.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub host: String,
    pub before_days: Option<u64>,
    pub after_days: Option<u64>,
}

/// Renews the certificates of every control plane, one at a time; `progress` is told of
/// each control plane before it starts (with its soonest expiry) and after it is done.
pub async fn renew(
    loaded: &Loaded,
    connect: ConnectOptions,
    progress: &(dyn Fn(&Renewed, bool) + Sync),
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
    let mut done = Vec::new();
    let result: Result<(), CertsError> = async {
        for h in c.control_planes() {
            let s = fleet
                .session(&h.name)
                .ok_or_else(|| CertsError::NotConnected(h.name.clone()))?;
            let mut r = Renewed {
                host: h.name.clone(),
                before_days: crate::certs::soonest_days(&crate::certs::check(s).await?),
                after_days: None,
            };
            progress(&r, false);
            // its own API server is asked, at the address it advertises (an IP); read before it
            // leaves the load balancers, so an error here leaves the rotation as it was
            let address = match h.internal_address().parse::<std::net::Ipv4Addr>() {
                Ok(ip) => ip.to_string(),
                Err(_) => crate::steps::control_plane_ready::advertised_address(s)
                    .await
                    .map_err(|message| CertsError::Failed {
                        host: h.name.clone(),
                        message,
                    })?,
            };
            crate::steps::api_endpoint::lb_rotation(c, &fleet.sessions, &h.name, false).await;
            let renewed = crate::certs::renew(s, &address).await;
            crate::steps::api_endpoint::lb_rotation(c, &fleet.sessions, &h.name, true).await;
            renewed.map_err(|e| CertsError::Failed {
                host: h.name.clone(),
                message: e.to_string(),
            })?;
            r.after_days = crate::certs::soonest_days(&crate::certs::check(s).await?);
            progress(&r, true);
            done.push(r);
        }
        Ok(())
    }
    .await;
    fleet.close().await;
    result.map(|()| done)
}
