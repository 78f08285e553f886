//! wait-ready: every node of the inventory is registered and Ready.

use super::{StepError, cluster_action, nodes};
use crate::plan::{Action, Input, Op, Step};
use std::time::{Duration, Instant};

pub fn plan(input: &Input, changes: bool) -> Vec<Action> {
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
    vec![cluster_action(Step::WaitReady, what, Op::WaitReady)]
}

/// With `cni: none` a kubelet reports NotReady (no network plugin) until the operator installs
/// one: registration is all there is to wait for.
pub fn no_pod_network(c: &crate::model::Cluster) -> bool {
    c.cni == crate::model::Cni::None
}

pub const TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(ctx: &super::Ctx) -> Result<(), StepError> {
    let start = Instant::now();
    let _w = ctx.stats.wait();
    let registered_is_enough = no_pod_network(&ctx.cluster);
    loop {
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
            return Ok(());
        }
        if start.elapsed() > TIMEOUT {
            return Err(StepError::failed(
                &ctx.init_host,
                format!(
                    "nodes not Ready after {}s:\n    {}",
                    TIMEOUT.as_secs(),
                    pending.join("\n    ")
                ),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
