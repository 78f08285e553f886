//! join-worker: workers join in parallel (bounded by spec.options.concurrency), reaching the
//! API through their node-local load balancer.

use super::{StepError, join_actions, join_secrets};
use crate::plan::{Action, Input, Op, Step};

pub fn plan(input: &Input) -> Vec<Action> {
    join_actions(
        input,
        input.cluster.workers(),
        Step::JoinWorker,
        Op::JoinWorker,
        "as a worker",
    )
}

pub async fn run(ctx: &super::Ctx, host: &str) -> Result<(), StepError> {
    let h = ctx
        .cluster
        .host(host)
        .ok_or_else(|| StepError::failed(host, "not in the inventory"))?;
    let s = join_secrets(ctx, false).await?;
    let config = super::join_control_plane::render_config(
        &ctx.cluster,
        h,
        &ctx.node_ips,
        &s.token,
        &s.ca_hash,
        None,
    )?;
    super::kubeadm_with_config(ctx, host, &config, "join", "join").await
}
