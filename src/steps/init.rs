//! init: `kubeadm init --upload-certs` on the first control plane, from a config rendered from
//! the inventory (kubeadm's v1beta4 API from 1.31, v1beta3 before): the pod and service
//! subnets, the control-plane endpoint, certSANs, and a KubeletConfiguration with the systemd
//! cgroup driver. The bootstrap token and certificate key are made here and never printed.

use super::ResetStale;
use crate::desired;
use crate::engine::{Action, JoinSecrets, PlanCx, PlanError, Schedule, Step, StepError};
use crate::model::{Cluster, Host};
use crate::paths;

pub struct Init;

impl Step for Init {
    fn name(&self) -> &'static str {
        "init"
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::OneAtATime
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        let init = cx.init;
        if cx.cluster_exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if cx.is_stale(init) || cx.facts_of(init).membership.role().is_some() {
            out.push(Action::on(
                init,
                self,
                format!(
                    "reset {}: kubeadm files of an interrupted run, no cluster behind them",
                    init.name
                ),
                ResetStale,
            ));
        }
        out.push(Action::on(
            init,
            self,
            format!(
                "kubeadm init on {} (Kubernetes {})",
                init.name, cx.cluster.version
            ),
            RunInit,
        ));
        Ok(out)
    }
}

#[derive(Debug, Clone)]
struct RunInit;
crate::run_op!(RunInit, |_op, ctx, host| run(ctx, host).await);

/// Renders the init configuration (with its secrets).
pub fn render_config(
    c: &crate::model::Cluster,
    h: &Host,
    ips: &desired::NodeIps,
    token: &str,
    certificate_key: &str,
) -> Result<String, StepError> {
    let mut ctx = desired::kubeadm_context(c, h, ips);
    ctx["token"] = token.into();
    ctx["certificate_key"] = certificate_key.into();
    Ok(crate::templates::render("kubeadm-init.yaml", &ctx)?)
}

pub async fn run(ctx: &crate::engine::Ctx, host: &str) -> Result<(), StepError> {
    let h = ctx
        .cluster
        .host(host)
        .ok_or_else(|| StepError::failed(host, "not in the inventory"))?;
    let token = crate::secrets::bootstrap_token();
    let key = crate::secrets::certificate_key();
    let config = render_config(&ctx.cluster, h, &ctx.node_ips, &token, &key)?;
    super::kubeadm_with_config(ctx, host, &config, "init --upload-certs", "init").await?;
    let api = ctx.session(host)?;
    api.run(&format!("touch {}", paths::INITIALIZED)).await?;
    let ca_hash = super::ca_hash(api).await?;
    *ctx.secrets.lock().await = Some(JoinSecrets {
        token,
        ca_hash,
        certificate_key: Some(key),
    });
    Ok(())
}
