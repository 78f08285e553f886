//! join-control-plane: the other control planes join one at a time (etcd grows by one member
//! at a time) with the uploaded certificates. A joining control plane reaches the API through a
//! serving one; once its own API server runs, its endpoint name points at itself.

use super::{StepError, join_actions, join_secrets};
use crate::desired;
use crate::model::{Host, Role};
use crate::plan::{Action, Input, Op, Step};

pub fn plan(input: &Input, init: &Host) -> Vec<Action> {
    join_actions(
        input,
        input
            .cluster
            .control_planes()
            .filter(|h| h.name != init.name),
        Step::JoinControlPlane,
        Op::JoinControlPlane,
        "as a control plane (etcd member)",
    )
}

/// Renders a join configuration (with its secrets).
pub fn render_config(
    c: &crate::model::Cluster,
    h: &Host,
    ips: &desired::NodeIps,
    token: &str,
    ca_hash: &str,
    certificate_key: Option<&str>,
) -> Result<String, StepError> {
    let mut ctx = desired::kubeadm_context(c, h, ips);
    ctx["token"] = token.into();
    ctx["ca_hash"] = ca_hash.into();
    ctx["control_plane"] = (h.role == Role::ControlPlane).into();
    ctx["certificate_key"] = certificate_key.unwrap_or_default().into();
    Ok(crate::templates::render("kubeadm-join.yaml", &ctx)?)
}

pub async fn run(ctx: &super::Ctx, host: &str) -> Result<(), StepError> {
    let h = ctx
        .cluster
        .host(host)
        .ok_or_else(|| StepError::failed(host, "not in the inventory"))?;
    let s = join_secrets(ctx, true).await?;
    let config = render_config(
        &ctx.cluster,
        h,
        &ctx.node_ips,
        &s.token,
        &s.ca_hash,
        s.certificate_key.as_deref(),
    )?;
    super::kubeadm_with_config(ctx, host, &config, "join", "join (control plane)").await?;
    ctx.session(host)?
        .run(&format!("touch {}", desired::INITIALIZED))
        .await?;
    // its own API server runs now: the endpoint name points at it
    let ep = desired::api_endpoint(&ctx.cluster);
    if ep.local {
        let block = crate::templates::render(
            "hosts-block",
            &serde_json::json!({"cluster": ctx.cluster.name, "endpoint": ep.host, "endpoint_ip": ctx.node_ips.ip(h)}),
        )?;
        super::api_endpoint::write_hosts_block(ctx.session(host)?, &block).await?;
    }
    Ok(())
}
