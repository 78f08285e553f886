//! init: `kubeadm init --upload-certs` on the first control plane, from a config rendered from
//! the inventory (kubeadm's v1beta4 API from 1.31, v1beta3 before): the pod and service
//! subnets, the control-plane endpoint, certSANs, and a KubeletConfiguration with the systemd
//! cgroup driver. The bootstrap token and certificate key are made here and never printed.

use crate::paths;
use super::{JoinSecrets, StepError, cluster_action};
use crate::desired;
use crate::model::Host;
use crate::plan::{Action, Input, Op, Step};

pub fn plan(input: &Input, init: &Host) -> Vec<Action> {
    if input.cluster_exists() {
        return Vec::new();
    }
    let mut a = cluster_action(
        Step::Init,
        format!(
            "kubeadm init on {} (Kubernetes {})",
            init.name, input.cluster.version
        ),
        Op::Init,
    );
    a.host = Some(init.name.clone());
    let mut out = Vec::new();
    if input.is_stale(init)
        || input
            .facts
            .get(&init.name)
            .is_some_and(|f| f.membership.role().is_some())
    {
        let mut r = cluster_action(
            Step::Init,
            format!(
                "reset {}: kubeadm files of an interrupted run, no cluster behind them",
                init.name
            ),
            Op::ResetStale,
        );
        r.host = Some(init.name.clone());
        out.push(r);
    }
    out.push(a);
    out
}

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

pub async fn run(ctx: &super::Ctx, host: &str) -> Result<(), StepError> {
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
