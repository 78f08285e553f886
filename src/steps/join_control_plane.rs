//! join-control-plane: the other control planes join one at a time (etcd grows by one member
//! at a time) with the uploaded certificates. A joining control plane reaches the API through a
//! serving one; once its own API server runs, its endpoint name points at itself.

use super::{StepError, cluster_action, join_secrets};
use crate::desired;
use crate::model::{Host, Role};
use crate::plan::{Action, Input, Op, Step};

pub fn plan(input: &Input, init: &Host) -> Vec<Action> {
    let mut out = Vec::new();
    for h in input
        .cluster
        .control_planes()
        .filter(|h| h.name != init.name)
    {
        if input.is_member(h) {
            continue;
        }
        if input.is_stale(h) {
            let mut r = cluster_action(
                Step::JoinControlPlane,
                format!(
                    "reset {}: an interrupted join left kubeadm's files, but it is no node",
                    h.name
                ),
                Op::ResetStale,
            );
            r.host = Some(h.name.clone());
            out.push(r);
        }
        let mut a = cluster_action(
            Step::JoinControlPlane,
            format!("kubeadm join {} as a control plane (etcd member)", h.name),
            Op::JoinControlPlane,
        );
        a.host = Some(h.name.clone());
        out.push(a);
    }
    out
}

/// Renders a join configuration (with its secrets).
pub fn render_config(
    c: &crate::model::Cluster,
    h: &Host,
    token: &str,
    ca_hash: &str,
    certificate_key: Option<&str>,
) -> Result<String, StepError> {
    let mut ctx = desired::kubeadm_context(c, h);
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
        &s.token,
        &s.ca_hash,
        s.certificate_key.as_deref(),
    )?;
    super::kubeadm_with_config(ctx, host, &config, "join", "join (control plane)").await?;
    // its own API server runs now: the endpoint name points at it
    let ep = desired::api_endpoint(&ctx.cluster);
    if ep.local {
        let block = crate::templates::render(
            "hosts-block",
            &serde_json::json!({"cluster": ctx.cluster.name, "endpoint": ep.host, "endpoint_ip": h.internal_address()}),
        )?;
        super::api_endpoint::write_hosts_block(ctx.session(host)?, &block).await?;
    }
    Ok(())
}
