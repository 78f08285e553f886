//! join-worker: workers join in parallel (bounded by spec.options.concurrency), reaching the
//! API through their node-local load balancer.

use super::{StepError, cluster_action, join_secrets};
use crate::plan::{Action, Input, Op, Step};

pub fn plan(input: &Input) -> Vec<Action> {
    let mut out = Vec::new();
    for h in input.cluster.workers() {
        if input.is_member(h) {
            continue;
        }
        if input.is_stale(h) {
            let mut r = cluster_action(
                Step::JoinWorker,
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
            Step::JoinWorker,
            format!("kubeadm join {} as a worker", h.name),
            Op::JoinWorker,
        );
        a.host = Some(h.name.clone());
        out.push(a);
    }
    out
}

pub async fn run(ctx: &super::Ctx, host: &str) -> Result<(), StepError> {
    let h = ctx
        .cluster
        .host(host)
        .ok_or_else(|| StepError::failed(host, "not in the inventory"))?;
    let s = join_secrets(ctx, false).await?;
    let config =
        super::join_control_plane::render_config(&ctx.cluster, h, &s.token, &s.ca_hash, None)?;
    super::kubeadm_with_config(ctx, host, &config, "join", "join").await
}
