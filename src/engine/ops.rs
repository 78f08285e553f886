//! The operations several steps plan: write a managed file, run what a changed file needs
//! (a follow-up), install a verified artifact. Each step plans its own with these helpers.

use super::{Action, Ctx, Run, RunFuture, Step, StepError};
use crate::desired::{Followup, HostDesired, ManagedFile};
use crate::facts::Facts;
use crate::model::Host;
use crate::paths;
use crate::release::Artifact;
use crate::ssh::session::{Exec, Upload};
use crate::util::shell_quote;

/// Writes a managed file (by rename: a reader never sees half of it).
#[derive(Debug, Clone)]
pub struct WriteFile(pub ManagedFile);

crate::run_op!(WriteFile, |op, ctx, host| {
    let f = &op.0;
    ctx.session(host)?
        .upload(
            Upload::Bytes(f.content.as_bytes()),
            &f.path,
            f.mode,
            "root:root",
        )
        .await?;
    ctx.stats.add_upload(host, f.content.len() as u64);
    Ok(())
});

/// What a changed file needs: sysctls applied, modules loaded, units reloaded, haproxy reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFollowup(pub Followup);

crate::run_op!(RunFollowup, |op, ctx, host| {
    let script = match op.0 {
        Followup::Sysctl => "sysctl --system >/dev/null",
        // built-in features make modprobe unnecessary; a module that does not exist is fine
        // when the feature is built in (facts checked that it is available)
        Followup::Modules => {
            "for m in overlay br_netfilter; do modprobe $m 2>/dev/null || grep -q \"/$m.ko\" /lib/modules/$(uname -r)/modules.builtin 2>/dev/null || [ -d /sys/module/$m ] || { echo \"cannot load $m\" >&2; exit 1; }; done"
        }
        Followup::DaemonReload => "systemctl daemon-reload",
        Followup::ReloadHaproxy => {
            "haproxy -c -q -f /etc/haproxy/haproxy.cfg && systemctl reload-or-restart haproxy"
        }
    };
    ctx.session(host)?.run(script).await?;
    Ok(())
});

/// Uploads a verified artifact from the local cache and installs it.
#[derive(Debug, Clone)]
pub struct Install(pub Artifact);

impl Run for Install {
    fn run<'a>(&'a self, ctx: &'a Ctx, host: &'a str) -> RunFuture<'a> {
        Box::pin(install(ctx, host, &self.0))
    }
    fn installs(&self) -> &[Artifact] {
        std::slice::from_ref(&self.0)
    }
}

/// Uploads a verified artifact from the local cache and installs it (files are replaced by
/// rename, so a running binary is never written over), then records what was installed.
pub async fn install(ctx: &Ctx, host: &str, a: &Artifact) -> Result<(), StepError> {
    let s = ctx.session(host)?;
    let local = ctx.artifacts.get(&a.sha256).ok_or_else(|| {
        StepError::failed(
            host,
            format!("{} {} was not downloaded", a.component, a.version),
        )
    })?;
    let remote = format!(
        "{}/{}-{}-{}",
        paths::STAGING_DIR,
        a.component,
        a.version,
        a.sha256.get(..12).unwrap_or_default()
    );
    s.upload(Upload::File(local), &remote, 0o600, "root:root")
        .await?;
    let size = match a.size {
        Some(n) => n,
        None => std::fs::metadata(local)
            .map(|m| m.len())
            .map_err(|e| StepError::failed(host, format!("{}: {e}", local.display())))?,
    };
    ctx.stats.add_upload(host, size);
    let script = format!(
        "set -e\nF={f}\n{check}\n{install}\nmkdir -p {dir}\necho {marker} > {dir}/{comp}.tmp && mv -f {dir}/{comp}.tmp {dir}/{comp}\nrm -f \"$F\"",
        f = shell_quote(&remote),
        check = crate::artifacts::remote_check_script(&a.sha256),
        install = crate::desired::install_script(a),
        dir = paths::INSTALLED_DIR,
        marker = shell_quote(&crate::desired::marker_line(a)),
        comp = a.component,
    );
    s.run_with(
        &script,
        Exec {
            display: Some(&format!("install {} {}", a.component, a.version)),
            ..Exec::default()
        },
    )
    .await?;
    Ok(())
}

/// Writes of the managed files of `step` that differ from the host's, then their follow-ups.
pub fn file_actions(
    h: &Host,
    f: &Facts,
    want: &HostDesired,
    step: &dyn Step,
) -> (Vec<Action>, Vec<Followup>) {
    let mut actions = Vec::new();
    let mut followups = Vec::new();
    for file in want.files.iter().filter(|m| m.step == step.name()) {
        let sha = file.sha256();
        let verb = match f.files.get(&file.path) {
            Some(have) if *have == sha => continue,
            Some(_) => "update",
            None => "write",
        };
        let mut a = Action::on(
            h,
            step,
            format!("{verb} {}", file.path),
            WriteFile(file.clone()),
        );
        a.upload_bytes = file.content.len() as u64;
        actions.push(a);
        for fu in &file.followups {
            if !followups.contains(fu) {
                followups.push(*fu);
            }
        }
    }
    (actions, followups)
}

pub fn followup_action(h: &Host, step: &dyn Step, fu: Followup) -> Action {
    let summary = match fu {
        Followup::Sysctl => "apply sysctl settings (sysctl --system)",
        Followup::Modules => "load kernel modules overlay, br_netfilter (built-in is fine)",
        Followup::DaemonReload => "reload systemd units",
        Followup::ReloadHaproxy => "reload haproxy (configuration changed; open connections stay)",
    };
    Action::on(h, step, summary, RunFollowup(fu))
}

/// Installs of `components` whose recorded sha256 differs from the manifest's, or whose binary
/// is gone (the record alone is not trusted).
pub fn install_actions(
    h: &Host,
    f: &Facts,
    want: &HostDesired,
    step: &dyn Step,
    components: &[&str],
) -> Vec<Action> {
    let binary_gone = |c: &str| crate::release::is_single_binary(c) && !f.installed.contains_key(c);
    want.installs
        .iter()
        .filter(|a| components.contains(&a.component.as_str()))
        .filter(|a| {
            f.marker_sha(&a.component) != Some(a.sha256.as_str()) || binary_gone(&a.component)
        })
        .map(|a| {
            let from = if f.marker_sha(&a.component) == Some(a.sha256.as_str()) {
                " (its binary is missing)".to_string()
            } else {
                f.markers
                    .get(&a.component)
                    .and_then(|m| m.split_whitespace().nth(1))
                    .map(|v| format!(" (was {v})"))
                    .unwrap_or_default()
            };
            let mut act = Action::on(
                h,
                step,
                format!("install {} {}{from}", a.component, a.version),
                Install(a.clone()),
            );
            act.upload_bytes = a.size.unwrap_or(0);
            act
        })
        .collect()
}
