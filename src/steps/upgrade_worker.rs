//! upgrade-worker: the workers, in batches of the disruption budget
//! (`options.workerDisruptionPercent` of the workers, at least one); the next batch starts once
//! the whole batch is back; a batch with a failure halts the upgrade. The mechanics are in
//! `upgrade.rs`.

use crate::engine::{Action, PlanCx, PlanError, Schedule, Step};
use crate::model::{Cluster, Role};

pub struct UpgradeWorker;

impl Step for UpgradeWorker {
    fn name(&self) -> &'static str {
        "upgrade-worker"
    }
    fn timing(&self) -> &'static str {
        "upgrade workers"
    }
    /// The worker disruption budget.
    fn schedule(&self, c: &Cluster) -> Schedule {
        Schedule::Batched(worker_batch(c))
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        super::upgrade::plan(cx, self, Role::Worker)
    }
}

/// How many workers are upgraded at once: `workerDisruptionPercent` of them, at least one.
pub fn worker_batch(c: &Cluster) -> usize {
    let workers = c.workers().count();
    ((workers * c.options.worker_disruption_percent as usize) / 100).max(1)
}
