//! runtime: runc, containerd, the CNI plugins and crictl from the pinned artifacts, containerd's
//! config (SystemdCgroup, the sandbox image of the release, registry mirrors) and unit; then
//! containerd enabled, started, and proven by a CRI call.

use crate::desired::{Followup, HostDesired, ManagedFile};
use crate::engine::ops::{WriteFile, file_actions, followup_action, install_actions};
use crate::engine::{Action, PlanCx, PlanError, Schedule, Step, StepError};
use crate::facts::Facts;
use crate::model::{Cluster, Host};
use crate::release::RUNTIME_COMPONENTS;
use crate::ssh::Session;

pub struct Runtime;

impl Step for Runtime {
    fn name(&self) -> &'static str {
        "runtime"
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
            plan_host(h, f, want, upgrading.contains(&h.name))
        }))
    }
}

/// Enables and (re)starts containerd, then proves it with a CRI call.
#[derive(Debug, Clone)]
struct StartContainerd;
crate::run_op!(StartContainerd, |_op, ctx, host| start_containerd(
    ctx.session(host)?
)
.await);

/// `deferred`: the host is a member being upgraded; its binaries, and the files whose change
/// restarts containerd, change while it is drained (see [`deferred_files`]).
pub fn plan_host(h: &Host, f: &Facts, want: &HostDesired, deferred: bool) -> Vec<Action> {
    let step = &Runtime;
    let mut out = if deferred {
        Vec::new()
    } else {
        install_actions(h, f, want, step, RUNTIME_COMPONENTS)
    };
    let binaries_changed = !out.is_empty();
    let (mut writes, mut followups) = file_actions(h, f, want, step);
    if deferred && f.membership.containerd_active {
        writes.retain(|a| !restarts_containerd(a));
        followups = writes
            .iter()
            .filter_map(|a| a.op::<WriteFile>().map(|m| m.0.followups.clone()))
            .flatten()
            .collect();
    }
    let config_changed = writes.iter().any(restarts_containerd);
    out.extend(writes);
    for fu in followups
        .into_iter()
        .filter(|f| *f == Followup::DaemonReload)
    {
        out.push(followup_action(h, step, fu));
    }
    let why = if !f.membership.containerd_active {
        Some("enable and start containerd, then check it answers CRI")
    } else if binaries_changed || config_changed {
        Some("restart containerd (binaries or configuration changed), then check it answers CRI")
    } else {
        None
    };
    if let Some(why) = why {
        out.push(Action::on(h, step, why, StartContainerd));
    }
    out
}

pub async fn start_containerd(s: &Session) -> Result<(), StepError> {
    let out = s
        .exec(
            "systemctl daemon-reload && systemctl enable containerd >/dev/null 2>&1 && systemctl restart containerd\n\
             for i in $(seq 1 30); do\n\
               crictl --runtime-endpoint unix:///run/containerd/containerd.sock info >/dev/null 2>&1 && exit 0\n\
               sleep 1\n\
             done\n\
             echo 'containerd does not answer CRI calls after 30s:' >&2\n\
             crictl --runtime-endpoint unix:///run/containerd/containerd.sock info 2>&1 | tail -n 3 >&2\n\
             journalctl -u containerd --no-pager -n 10 2>/dev/null >&2\n\
             exit 1",
        )
        .await?;
    if !out.success() {
        return Err(StepError::failed(s.name(), out.stderr().trim().to_string()));
    }
    Ok(())
}

fn restarts_containerd(a: &Action) -> bool {
    a.op::<WriteFile>().is_some_and(|m| m.0.restarts_containerd)
}

/// For a node being upgraded: the runtime files (containerd's config, with the release's
/// sandbox image) that would restart containerd. They are written during the node's own
/// upgrade, after its drain, never on every node at once.
pub fn deferred_files(h: &Host, f: &Facts, want: &HostDesired) -> Vec<ManagedFile> {
    if !f.membership.containerd_active {
        return Vec::new();
    }
    file_actions(h, f, want, &Runtime)
        .0
        .into_iter()
        .filter(restarts_containerd)
        .filter_map(|a| a.op::<WriteFile>().map(|m| m.0.clone()))
        .collect()
}
