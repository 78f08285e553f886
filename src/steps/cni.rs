//! cni: the pod network. Flannel by default, from a manifest kubeforge renders itself with the
//! images the release manifest pins; or a user's manifest pinned by sha256; or none. Applied
//! with kubectl on a control plane; a copy kept at /etc/kubeforge/cni.yaml tells later runs
//! whether it changed.

use super::{StepError, cluster_action};
use crate::cluster_state::kubectl;
use crate::paths::CNI_MANIFEST;
use crate::model::Host;
use crate::plan::{Action, Input, Op, Step};
use crate::ssh::session::Upload;

pub fn plan(input: &Input, init: &Host) -> Vec<Action> {
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
    vec![cluster_action(
        Step::Cni,
        format!("apply {what} ({} KiB)", manifest.len().div_ceil(1024)),
        Op::ApplyCni(manifest.clone()),
    )]
}

/// Applies the manifest from a staging path and keeps it as the applied copy only once
/// `kubectl apply` succeeded: a failed apply is planned again by the next run.
pub async fn run(ctx: &super::Ctx, manifest: &str) -> Result<(), StepError> {
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
