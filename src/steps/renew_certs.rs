//! renew-certs: every control plane in turn, one at a time, leaves the workers' load
//! balancers, renews its certificates with kubeadm, proves that its own API server and etcd
//! serve (asked at its own address, not through the endpoint), and goes back.

use crate::engine::{Action, Ctx, PlanCx, PlanError, Run, RunFuture, Schedule, Step, StepError};
use crate::model::Cluster;
use std::sync::{Arc, Mutex};

/// What one control plane's renewal found: the soonest expiry before and after, in days.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub host: String,
    pub before_days: Option<u64>,
    pub after_days: Option<u64>,
}

/// Told of each control plane before its renewal (false) and after (true).
pub type Progress = Arc<dyn Fn(&Renewed, bool) + Send + Sync>;

pub struct RenewCerts {
    shared: Arc<Shared>,
}

struct Shared {
    progress: Progress,
    done: Mutex<Vec<Renewed>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("certificate renewals")
    }
}

impl RenewCerts {
    pub fn new(progress: Progress) -> Self {
        RenewCerts {
            shared: Arc::new(Shared {
                progress,
                done: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The renewals done, in order.
    pub fn done(&self) -> Vec<Renewed> {
        self.shared
            .done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Step for RenewCerts {
    fn name(&self) -> &'static str {
        "renew-certs"
    }
    /// One at a time: the others serve while one restarts its API server.
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::OneAtATime
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        Ok(cx
            .cluster
            .control_planes()
            .map(|h| {
                Action::on(
                    h,
                    self,
                    format!(
                        "renew the certificates of {} (out of the load balancers meanwhile)",
                        h.name
                    ),
                    RenewOne(self.shared.clone()),
                )
            })
            .collect())
    }
}

#[derive(Debug)]
struct RenewOne(Arc<Shared>);

impl Run for RenewOne {
    fn run<'a>(&'a self, ctx: &'a Ctx, host: &'a str) -> RunFuture<'a> {
        Box::pin(async move {
            let r = renew_one(ctx, host, &self.0.progress).await?;
            self.0
                .done
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(r);
            Ok(())
        })
    }
}

async fn renew_one(ctx: &Ctx, host: &str, progress: &Progress) -> Result<Renewed, StepError> {
    let c = &ctx.cluster;
    let s = ctx.session(host)?;
    let h = c
        .host(host)
        .ok_or_else(|| StepError::failed(host, "not in the inventory"))?;
    let mut r = Renewed {
        host: host.to_string(),
        before_days: crate::certs::soonest_days(&crate::certs::check(s).await?),
        after_days: None,
    };
    progress(&r, false);
    // its own API server is asked, at the address it advertises (an IP); read before it
    // leaves the load balancers, so an error here leaves the rotation as it was
    let address = match h.internal_address().parse::<std::net::Ipv4Addr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => super::control_plane_ready::advertised_address(s)
            .await
            .map_err(|m| StepError::failed(host, m))?,
    };
    super::api_endpoint::lb_rotation(c, &ctx.sessions, host, false).await;
    let renewed = crate::certs::renew(s, &address).await;
    super::api_endpoint::lb_rotation(c, &ctx.sessions, host, true).await;
    renewed.map_err(|e| StepError::failed(host, e.to_string()))?;
    r.after_days = crate::certs::soonest_days(&crate::certs::check(s).await?);
    progress(&r, true);
    Ok(r)
}
