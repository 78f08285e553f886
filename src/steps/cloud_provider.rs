//! cloud-provider: on OpenStack (`spec.openstack.cloudProvider`, the default), the OpenStack
//! cloud-controller-manager and the Cinder CSI driver, with images the release manifest pins.
//! Their cloud.conf (credentials) goes to the cluster as the Secret kube-system/cloud-config,
//! through kubectl's stdin: never on a command line, never printed. The kubelets run with
//! `--cloud-provider=external` from their join on.

use crate::cluster_state::kubectl;
use crate::engine::plan::CloudProvider;
use crate::engine::{Action, Ctx, PlanCx, PlanError, Schedule, Step, StepError};
use crate::model::Cluster;
use crate::paths::CLOUD_PROVIDER_MANIFEST as MANIFEST;
use crate::ssh::session::{Exec, Upload};

pub struct CloudProviderStep;

impl Step for CloudProviderStep {
    fn name(&self) -> &'static str {
        "cloud-provider"
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::OneAtATime
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        Ok(plan(cx))
    }
}

#[derive(Debug, Clone)]
struct ApplyCloudProvider(CloudProvider);
crate::run_op!(ApplyCloudProvider, |op, ctx, _host| run(ctx, &op.0).await);

/// The file kubeforge keeps at MANIFEST: the manifests, and a digest of the Secret's content
/// (cloud.conf and the CA), so that changed credentials are applied again. Only the digest
/// of the credentials is written there, never they themselves (and the file is root's only).
pub fn manifest_file(cp: &CloudProvider) -> String {
    format!(
        "{}
# kubeforge: Secret kube-system/cloud-config sha256:{}\n",
        cp.manifest.trim_end(),
        crate::artifacts::sha256_hex(secret_yaml(cp).as_bytes())
    )
}

fn plan(input: &PlanCx) -> Vec<Action> {
    let init = input.init;
    let Some(cp) = &input.cloud_provider else {
        return Vec::new();
    };
    let sha = crate::artifacts::sha256_hex(manifest_file(cp).as_bytes());
    let applied = input
        .facts
        .get(&init.name)
        .and_then(|f| f.files.get(MANIFEST))
        .is_some_and(|have| *have == sha);
    if applied && input.cluster_exists() {
        return Vec::new();
    }
    vec![Action::cluster(
        &CloudProviderStep,
        "install the OpenStack cloud-controller-manager and Cinder CSI (cloud.conf in Secret kube-system/cloud-config)",
        ApplyCloudProvider(cp.clone()),
    )]
}

/// The Secret holding cloud.conf (and the cloud's CA as `ca.crt`), as YAML for
/// `kubectl apply -f -`.
pub fn secret_yaml(cp: &CloudProvider) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut y = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cloud-config\n  namespace: kube-system\ntype: Opaque\ndata:\n  cloud.conf: {}\n",
        b64(&cp.cloud_conf)
    );
    if let Some(ca) = &cp.ca_cert {
        y.push_str(&format!("  ca.crt: {}\n", b64(ca)));
    }
    y
}

pub async fn run(ctx: &Ctx, cp: &CloudProvider) -> Result<(), StepError> {
    let api = ctx.api()?;
    let secret = secret_yaml(cp);
    api.run_with(
        &kubectl("apply -f - >/dev/null"),
        Exec {
            stdin: Some(secret.as_bytes()),
            display: Some("kubectl apply the Secret kube-system/cloud-config"),
            ..Exec::default()
        },
    )
    .await?;
    let file = manifest_file(cp);
    api.upload(Upload::Bytes(file.as_bytes()), MANIFEST, 0o600, "root:root")
        .await?;
    api.run(&kubectl(&format!("apply -f {MANIFEST}"))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(conf: &str, ca: Option<&str>) -> CloudProvider {
        CloudProvider {
            manifest: "kind: List\n".into(),
            cloud_conf: conf.into(),
            ca_cert: ca.map(String::from),
        }
    }

    #[test]
    fn the_kept_manifest_changes_with_the_credentials_but_never_holds_them() {
        let a = manifest_file(&cp("password=\"one-secret\"", None));
        let b = manifest_file(&cp("password=\"two-secret\"", None));
        let c = manifest_file(&cp("password=\"one-secret\"", Some("PEM")));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, manifest_file(&cp("password=\"one-secret\"", None)));
        assert!(a.starts_with("kind: List\n# kubeforge: Secret"));
        assert!(!a.contains("one-secret") && !b.contains("two-secret"));
    }

    #[test]
    fn the_secret_carries_the_ca_next_to_cloud_conf() {
        assert!(!secret_yaml(&cp("x", None)).contains("ca.crt"));
        assert!(secret_yaml(&cp("x", Some("PEM"))).contains("  ca.crt: UEVN\n"));
    }
}
