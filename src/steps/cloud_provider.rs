//! cloud-provider: on OpenStack (`spec.openstack.cloudProvider`, the default), the OpenStack
//! cloud-controller-manager and the Cinder CSI driver, with images the release manifest pins.
//! Their cloud.conf (credentials) goes to the cluster as the Secret kube-system/cloud-config,
//! through kubectl's stdin: never on a command line, never printed. The kubelets run with
//! `--cloud-provider=external` from their join on.

use super::{Ctx, StepError, cluster_action};
use crate::cluster_state::kubectl;
use crate::model::Host;
use crate::plan::{Action, CloudProvider, Input, Op, Step};
use crate::ssh::session::{Exec, Upload};

pub const MANIFEST: &str = "/etc/kubeforge/cloud-provider.yaml";

pub fn plan(input: &Input, init: &Host) -> Vec<Action> {
    let Some(cp) = &input.cloud_provider else {
        return Vec::new();
    };
    let sha = crate::artifacts::sha256_hex(cp.manifest.as_bytes());
    let applied = input
        .facts
        .get(&init.name)
        .and_then(|f| f.files.get(MANIFEST))
        .is_some_and(|have| *have == sha);
    if applied && input.cluster_exists() {
        return Vec::new();
    }
    vec![cluster_action(
        Step::CloudProvider,
        "install the OpenStack cloud-controller-manager and Cinder CSI (cloud.conf in Secret kube-system/cloud-config)",
        Op::ApplyCloudProvider(cp.clone()),
    )]
}

/// The Secret holding cloud.conf, as YAML for `kubectl apply -f -`.
pub fn secret_yaml(cloud_conf: &str) -> String {
    use base64::Engine as _;
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cloud-config\n  namespace: kube-system\ntype: Opaque\ndata:\n  cloud.conf: {}\n",
        base64::engine::general_purpose::STANDARD.encode(cloud_conf)
    )
}

pub async fn run(ctx: &Ctx, cp: &CloudProvider) -> Result<(), StepError> {
    let api = ctx.api()?;
    let secret = secret_yaml(&cp.cloud_conf);
    api.run_with(
        &kubectl("apply -f - >/dev/null"),
        Exec {
            stdin: Some(secret.as_bytes()),
            display: Some("kubectl apply the Secret kube-system/cloud-config"),
            ..Exec::default()
        },
    )
    .await?;
    api.upload(
        Upload::Bytes(cp.manifest.as_bytes()),
        MANIFEST,
        0o644,
        "root:root",
    )
    .await?;
    api.run(&kubectl(&format!("apply -f {MANIFEST}"))).await?;
    Ok(())
}
