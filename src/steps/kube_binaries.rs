//! kube-binaries: kubeadm, kubelet and kubectl from the pinned artifacts, the kubelet unit and
//! kubeadm's drop-in, the kubelet enabled (kubeadm starts it).

use super::StepError;
use crate::desired::HostDesired;
use crate::facts::Facts;
use crate::model::Host;
use crate::plan::{
    Action, Input, Op, Step, file_actions, followup_action, host_action, install_actions,
};
use crate::ssh::Session;

pub const COMPONENTS: &[&str] = &["kubeadm", "kubelet", "kubectl"];

/// `deferred`: the host is a member being upgraded; its binaries change while it is drained.
pub fn plan(input: &Input, h: &Host, f: &Facts, want: &HostDesired, deferred: bool) -> Vec<Action> {
    let mut out = if deferred {
        Vec::new()
    } else {
        install_actions(h, f, want, Step::KubeBinaries, COMPONENTS)
    };
    let kubelet_changed = out
        .iter()
        .any(|a| matches!(&a.op, Op::Install(art) if art.component == "kubelet"));
    let (writes, followups) = file_actions(h, f, want, Step::KubeBinaries);
    let units_changed = !writes.is_empty();
    out.extend(writes);
    for fu in followups {
        out.push(followup_action(h, Step::KubeBinaries, fu));
    }
    let member = input.is_member(h);
    if !f.kubelet_enabled || (member && (kubelet_changed || units_changed)) {
        let why = if member {
            "restart the kubelet (binary or unit changed)"
        } else {
            "enable the kubelet (kubeadm starts it)"
        };
        out.push(host_action(h, Step::KubeBinaries, why, Op::EnableKubelet));
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
