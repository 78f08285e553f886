//! wait-ready: every node of the inventory is registered and Ready.

use super::nodes;
use crate::engine::{Action, Input, PlanCx, PlanError, Schedule, Step, StepError};
use crate::model::Cluster;
use std::time::Duration;

pub struct WaitReady;

impl Step for WaitReady {
    fn name(&self) -> &'static str {
        "wait-ready"
    }
    fn timing(&self) -> &'static str {
        "wait ready"
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::OneAtATime
    }
    /// After a join, an init or a new pod network; or when a node is not Ready.
    fn plan(&self, cx: &PlanCx, so_far: &[Action]) -> Result<Vec<Action>, PlanError> {
        let changing: [&dyn Step; 4] = [
            &super::init::Init,
            &super::join_control_plane::JoinControlPlane,
            &super::join_worker::JoinWorker,
            &super::cni::Cni,
        ];
        let changes = so_far
            .iter()
            .any(|a| changing.iter().any(|s| s.name() == a.step));
        Ok(plan(cx, changes))
    }
}

#[derive(Debug, Clone)]
struct Wait;
crate::run_op!(Wait, |_op, ctx, _host| run(ctx).await);

fn plan(input: &Input, changes: bool) -> Vec<Action> {
    let all_ready = input.state.is_some_and(|s| {
        input
            .cluster
            .hosts
            .iter()
            .all(|h| s.node(&h.name).is_some_and(|n| n.ready))
    });
    if !changes && all_ready {
        return Vec::new();
    }
    let what = if no_pod_network(input.cluster) {
        "wait until every node is registered (cni: none: nodes stay NotReady until you install a pod network)"
    } else {
        "wait until every node is Ready"
    };
    vec![Action::cluster(&WaitReady, what, Wait)]
}

/// With `cni: none` a kubelet reports NotReady (no network plugin) until the operator installs
/// one: registration is all there is to wait for.
pub fn no_pod_network(c: &crate::model::Cluster) -> bool {
    c.cni == crate::model::Cni::None
}

pub const TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(ctx: &crate::engine::Ctx) -> Result<(), StepError> {
    use crate::wait::{Poll, poll_until};
    let _w = ctx.stats.wait();
    let registered_is_enough = no_pod_network(&ctx.cluster);
    let what = if registered_is_enough {
        "every node to register"
    } else {
        "every node to be Ready"
    };
    poll_until(TIMEOUT, Duration::from_secs(2), what, || async {
        let last = nodes(ctx).await;
        let pending: Vec<String> = match &last {
            Ok(ns) => ctx
                .cluster
                .hosts
                .iter()
                .filter_map(|h| match ns.iter().find(|n| n.name == h.name) {
                    Some(n) if n.ready || registered_is_enough => None,
                    Some(n) => Some(format!(
                        "{}: {}",
                        h.name,
                        n.not_ready_reason.clone().unwrap_or_default()
                    )),
                    None => Some(format!("{}: not registered", h.name)),
                })
                .collect(),
            Err(e) => vec![e.to_string()],
        };
        if pending.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("\n    {}", pending.join("\n    ")))
        }
    })
    .await
    .map_err(|e: crate::wait::WaitError<StepError>| {
        e.into_error(|t| StepError::failed(&ctx.init_host, t))
    })
}
