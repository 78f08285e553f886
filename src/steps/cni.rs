//! cni: the pod network. Flannel by default, from a manifest kubeforge renders itself with the
//! images the release manifest pins; or a user's manifest pinned by sha256; or none. Applied
//! with kubectl on a control plane; a copy kept at /etc/kubeforge/cni.yaml tells later runs
//! whether it changed.

use crate::cluster_state::kubectl;
use crate::engine::{Action, PlanCx, PlanError, Schedule, Step, StepError};
use crate::model::Cluster;
use crate::paths::CNI_MANIFEST;
use crate::ssh::session::Upload;

pub struct Cni;

impl Step for Cni {
    fn name(&self) -> &'static str {
        "cni"
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::OneAtATime
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        Ok(plan(cx))
    }
}

#[derive(Debug, Clone)]
struct ApplyCni(String);
crate::run_op!(ApplyCni, |op, ctx, _host| run(ctx, &op.0).await);

fn plan(input: &PlanCx) -> Vec<Action> {
    let init = input.init;
    let Some(manifest) = &input.cni_manifest else {
        return Vec::new();
    };
    let sha = crate::artifacts::sha256_hex(manifest.as_bytes());
    let applied = input
        .facts
        .get(&init.name)
        .and_then(|f| f.files.get(CNI_MANIFEST))
        .is_some_and(|have| *have == sha);
    if applied && input.cluster_exists() {
        return Vec::new();
    }
    let what = match &input.cluster.cni {
        crate::model::Cni::Flannel => "flannel".to_string(),
        _ => "the CNI manifest".to_string(),
    };
    vec![Action::cluster(
        &Cni,
        format!("apply {what} ({} KiB)", manifest.len().div_ceil(1024)),
        ApplyCni(manifest.clone()),
    )]
}

/// Applies the manifest from a staging path and keeps it as the applied copy only once
/// `kubectl apply` succeeded: a failed apply is planned again by the next run.
pub async fn run(ctx: &crate::engine::Ctx, manifest: &str) -> Result<(), StepError> {
    let api = ctx.api()?;
    let staged = format!("{CNI_MANIFEST}.new");
    api.upload(
        Upload::Bytes(manifest.as_bytes()),
        &staged,
        0o644,
        "root:root",
    )
    .await?;
    ctx.stats.add_upload(api.name(), manifest.len() as u64);
    api.run(&format!(
        "{} && mv -f {staged} {CNI_MANIFEST}",
        kubectl(&format!("apply -f {staged}"))
    ))
    .await?;
    Ok(())
}
