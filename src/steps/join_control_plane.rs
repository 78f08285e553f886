//! join-control-plane: the other control planes join one at a time (etcd grows by one member
//! at a time) with the uploaded certificates. A joining control plane reaches the API through a
//! serving one; once its own API server runs, its endpoint name points at itself.

use super::{join_actions, join_secrets};
use crate::desired;
use crate::engine::{Action, PlanCx, PlanError, Schedule, Step, StepError};
use crate::model::{Cluster, Host, Role};
use crate::paths;

pub struct JoinControlPlane;

impl Step for JoinControlPlane {
    fn name(&self) -> &'static str {
        "join-control-plane"
    }
    fn timing(&self) -> &'static str {
        "join control planes"
    }
    /// One at a time: etcd grows by one member at a time.
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::OneAtATime
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        Ok(join_actions(
            cx,
            cx.cluster
                .control_planes()
                .filter(|h| h.name != cx.init.name),
            self,
            Join,
            "as a control plane (etcd member)",
        ))
    }
}

#[derive(Debug, Clone)]
pub struct Join;
crate::run_op!(Join, |_op, ctx, host| run(ctx, host).await);

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

pub async fn run(ctx: &crate::engine::Ctx, host: &str) -> Result<(), StepError> {
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
        .run(&format!("touch {}", paths::INITIALIZED))
        .await?;
    // its own API server runs now: the endpoint name points at it
    let ep = desired::api_endpoint(&ctx.cluster);
    if ep.local {
        let block = crate::templates::render(
            "hosts-block",
            &serde_json::json!({"cluster": ctx.cluster.name, "endpoint": ep.host, "endpoint_ip": ctx.node_ips.ip(h)}),
        )?;
        super::api_endpoint::write_hosts_block(ctx.session(host)?, &block).await?;
        // kube-proxy, a hostNetwork pod, has its own copy of /etc/hosts from when its pod
        // started (the kubelet writes one per pod), so it would go on reaching the API through
        // the control plane this one joined by: its pod here is made again with the new block
        let recreated = match ctx.api() {
            Ok(api) => api
                .run(&restart_kube_proxy(host))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = recreated {
            tracing::warn!(
                "{host}: kube-proxy keeps the API endpoint it started with (its pod could not be recreated: {e}); delete its kube-proxy pod"
            );
        }
    }
    Ok(())
}

/// Deletes a node's kube-proxy pod; its DaemonSet makes it again, with the node's /etc/hosts
/// as it is now.
pub fn restart_kube_proxy(node: &str) -> String {
    crate::cluster_state::kubectl(&format!(
        "-n kube-system delete pod -l k8s-app=kube-proxy --field-selector spec.nodeName={} --ignore-not-found --wait=false --request-timeout=20s",
        crate::util::shell_quote(node)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_proxy_is_recreated_on_the_joined_node_only() {
        assert_eq!(
            restart_kube_proxy("cp2"),
            "kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system delete pod -l k8s-app=kube-proxy --field-selector spec.nodeName=cp2 --ignore-not-found --wait=false --request-timeout=20s"
        );
    }
}
