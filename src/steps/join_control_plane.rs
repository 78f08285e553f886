//! join-control-plane: the other control planes join one at a time (etcd grows by one member
//! at a time) with the uploaded certificates. A joining control plane reaches the API through a
//! serving one; once its own API server runs, its endpoint name points at itself.

use crate::paths;
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
    use crate::cluster_state::{ClusterState, NodeState};
    use std::collections::BTreeMap;

    #[test]
    fn a_joining_control_plane_maps_the_endpoint_to_a_serving_one_before_its_join() {
        let text = "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {name: prod}\nspec:\n  kubernetes: {version: 1.34.1}\n  hosts:\n    - {name: cp1, address: 10.0.0.11, role: control-plane}\n    - {name: cp2, address: 10.0.0.12, role: control-plane}\n";
        let l = crate::inventory::load_str(
            std::path::Path::new("t.yaml"),
            text,
            std::path::Path::new("/"),
            &|_| None,
        )
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
        let c = l.cluster;
        let m = l.catalog.get(&c.version).unwrap().clone();
        let bare = include_str!("../../tests/fixtures/facts/harness-bare.txt");
        let t: f64 = bare.lines().nth(2).unwrap().parse().unwrap();
        let mut facts = BTreeMap::new();
        for h in &c.hosts {
            let mut f = crate::facts::parse(bare, t, t).unwrap();
            f.hostname = h.name.clone();
            facts.insert(h.name.clone(), f);
        }
        // cp1 serves the cluster; cp2 is new
        let cp1 = facts.get_mut("cp1").unwrap();
        cp1.membership.static_pods = vec!["kube-apiserver".into()];
        cp1.membership
            .marker
            .insert("cluster".into(), "prod".into());
        let state = ClusterState {
            api_host: "cp1".into(),
            nodes: vec![NodeState {
                name: "cp1".into(),
                kubelet_version: "v1.34.1".into(),
                ready: true,
                not_ready_reason: None,
                unschedulable: false,
                control_plane: true,
                internal_ip: Some("10.0.0.11".into()),
                labels: Default::default(),
                cordoned_by_kubeforge: false,
            }],
            server_version: Some("v1.34.1".into()),
        };
        let input = crate::plan::Input {
            cluster: &c,
            manifest: &m,
            facts: &facts,
            state: Some(&state),
            cni_manifest: None,
            cloud_provider: None,
        };
        let plan = crate::plan::compute(&input).unwrap();
        let pos = |f: &dyn Fn(&Action) -> bool| plan.actions.iter().position(f);
        let block = pos(&|a| {
            a.host.as_deref() == Some("cp2")
                && matches!(&a.op, Op::HostsBlock(b) if b.contains("10.0.0.11 api.prod.kubeforge.internal"))
        })
        .unwrap_or_else(|| panic!("cp2's block points at cp1: {:#?}", plan.actions));
        let join =
            pos(&|a| a.host.as_deref() == Some("cp2") && matches!(a.op, Op::JoinControlPlane))
                .expect("cp2 joins");
        assert!(block < join, "the block is in place before kubeadm join");
        assert_eq!(
            restart_kube_proxy("cp2"),
            "kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system delete pod -l k8s-app=kube-proxy --field-selector spec.nodeName=cp2 --ignore-not-found --wait=false --request-timeout=20s"
        );
    }
}
