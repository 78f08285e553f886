//! join-worker: workers join in parallel (bounded by spec.options.concurrency), reaching the
//! API through their node-local load balancer.

use super::{join_actions, join_secrets};
use crate::engine::{Action, PlanCx, PlanError, Schedule, Step, StepError};
use crate::model::Cluster;

pub struct JoinWorker;

impl Step for JoinWorker {
    fn name(&self) -> &'static str {
        "join-worker"
    }
    fn timing(&self) -> &'static str {
        "join workers"
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::PerHost {
            group: "join-worker",
        }
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        Ok(join_actions(
            cx,
            cx.cluster.workers(),
            self,
            Join,
            "as a worker",
        ))
    }
}

#[derive(Debug, Clone)]
struct Join;
crate::run_op!(Join, |_op, ctx, host| run(ctx, host).await);

pub async fn run(ctx: &crate::engine::Ctx, host: &str) -> Result<(), StepError> {
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
