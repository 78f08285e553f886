//! runtime: runc, containerd, the CNI plugins and crictl from the pinned artifacts, containerd's
//! config (SystemdCgroup, the sandbox image of the release, registry mirrors) and unit; then
//! containerd enabled, started, and proven by a CRI call.

use super::StepError;
use crate::desired::{Followup, HostDesired, ManagedFile};
use crate::facts::Facts;
use crate::model::Host;
use crate::plan::{Action, Op, Step, file_actions, followup_action, host_action, install_actions};
use crate::ssh::Session;

pub const COMPONENTS: &[&str] = &["runc", "containerd", "cni-plugins", "crictl"];

/// `deferred`: the host is a member being upgraded; its binaries, and the files whose change
/// restarts containerd, change while it is drained (see [`deferred_files`]).
pub fn plan(h: &Host, f: &Facts, want: &HostDesired, deferred: bool) -> Vec<Action> {
    let mut out = if deferred {
        Vec::new()
    } else {
        install_actions(h, f, want, Step::Runtime, COMPONENTS)
    };
    let binaries_changed = !out.is_empty();
    let (mut writes, mut followups) = file_actions(h, f, want, Step::Runtime);
    if deferred && f.membership.containerd_active {
        writes.retain(|a| !restarts_containerd(a));
        followups = writes
            .iter()
            .filter_map(|a| match &a.op {
                Op::WriteFile(m) => Some(m.followups.clone()),
                _ => None,
            })
            .flatten()
            .collect();
    }
    let config_changed = followups.contains(&Followup::RestartContainerd);
    out.extend(writes);
    for fu in followups
        .into_iter()
        .filter(|f| *f == Followup::DaemonReload)
    {
        out.push(followup_action(h, Step::Runtime, fu));
    }
    let why = if !f.membership.containerd_active {
        Some("enable and start containerd, then check it answers CRI")
    } else if binaries_changed || config_changed {
        Some("restart containerd (binaries or configuration changed), then check it answers CRI")
    } else {
        None
    };
    if let Some(why) = why {
        out.push(host_action(h, Step::Runtime, why, Op::StartContainerd));
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
    matches!(&a.op, Op::WriteFile(m) if m.followups.contains(&Followup::RestartContainerd))
}

/// For a node being upgraded: the runtime files (containerd's config, with the release's
/// sandbox image) that would restart containerd. They are written during the node's own
/// upgrade, after its drain, never on every node at once.
pub fn deferred_files(h: &Host, f: &Facts, want: &HostDesired) -> Vec<ManagedFile> {
    if !f.membership.containerd_active {
        return Vec::new();
    }
    file_actions(h, f, want, Step::Runtime)
        .0
        .into_iter()
        .filter(restarts_containerd)
        .filter_map(|a| match a.op {
            Op::WriteFile(m) => Some(m),
            _ => None,
        })
        .collect()
}
