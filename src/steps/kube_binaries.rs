//! kube-binaries: kubeadm, kubelet and kubectl from the pinned artifacts, the kubelet unit and
//! kubeadm's drop-in, the kubelet enabled (kubeadm starts it).

use crate::desired::HostDesired;
use crate::engine::ops::{Install, file_actions, followup_action, install_actions};
use crate::engine::{Action, PlanCx, PlanError, Schedule, Step, StepError};
use crate::facts::Facts;
use crate::model::{Cluster, Host};
use crate::release::KUBE_COMPONENTS;
use crate::ssh::Session;

pub struct KubeBinaries;

impl Step for KubeBinaries {
    fn name(&self) -> &'static str {
        "kube-binaries"
    }
    fn timing(&self) -> &'static str {
        super::PREPARE_TIMING
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        super::PREPARE
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        let upgrading = super::upgrading(cx)?;
        Ok(super::each_host(cx, |h, f, want| {
            plan_host(h, f, want, cx.is_member(h), upgrading.contains(&h.name))
        }))
    }
}

#[derive(Debug, Clone)]
struct EnableKubelet;
crate::run_op!(EnableKubelet, |_op, ctx, host| enable_kubelet(
    ctx.session(host)?
)
.await);

/// `deferred`: the host is a member being upgraded; its binaries change while it is drained.
fn plan_host(h: &Host, f: &Facts, want: &HostDesired, member: bool, deferred: bool) -> Vec<Action> {
    let step = &KubeBinaries;
    let mut out = if deferred {
        Vec::new()
    } else {
        install_actions(h, f, want, step, KUBE_COMPONENTS)
    };
    let kubelet_changed = out.iter().any(|a| {
        a.op::<Install>()
            .is_some_and(|art| art.0.component == "kubelet")
    });
    let (writes, followups) = file_actions(h, f, want, step);
    let units_changed = !writes.is_empty();
    out.extend(writes);
    for fu in followups {
        out.push(followup_action(h, step, fu));
    }
    if !f.kubelet_enabled || (member && (kubelet_changed || units_changed)) {
        let why = if member {
            "restart the kubelet (binary or unit changed)"
        } else {
            "enable the kubelet (kubeadm starts it)"
        };
        out.push(Action::on(h, step, why, EnableKubelet));
    }
    out
}

pub async fn enable_kubelet(s: &Session) -> Result<(), StepError> {
    s.run(
        "systemctl daemon-reload && systemctl enable kubelet >/dev/null 2>&1\n\
         if [ -f /var/lib/kubelet/config.yaml ]; then systemctl restart kubelet; fi",
    )
    .await?;
    Ok(())
}
