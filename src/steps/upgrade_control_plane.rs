//! upgrade-control-plane: the control planes, one at a time (etcd keeps its quorum and the
//! API keeps serving): `kubeadm upgrade apply` on the first, `kubeadm upgrade node` on the
//! others. The mechanics are in `upgrade.rs`.

use crate::engine::{Action, PlanCx, PlanError, Schedule, Step};
use crate::model::{Cluster, Role};

pub struct UpgradeControlPlane;

impl Step for UpgradeControlPlane {
    fn name(&self) -> &'static str {
        "upgrade-control-plane"
    }
    fn timing(&self) -> &'static str {
        "upgrade control planes"
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::OneAtATime
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        super::upgrade::plan(cx, self, Role::ControlPlane)
    }
}
