//! The key pair `kubeforge-<cluster>`: adopted when it holds the inventory's public key.

use super::Ensurer;
use crate::openstack::action::{Kind, Verb};
use crate::openstack::cloud::{CloudError, Ignored, Svc};
use crate::openstack::provider::{Observed, key_body, keypair_name};
use serde_json::json;

/// Returns the key pair's name.
pub(super) async fn ensure(
    e: &mut Ensurer<'_>,
    o: &Observed,
    public_key: &str,
) -> Result<String, CloudError> {
    let kp = keypair_name(e.d.name());
    match &o.keypair {
        Some(existing) => {
            if key_body(existing) != key_body(public_key) {
                return Err(CloudError::Refused(format!(
                    "key pair {kp} exists with another public key; delete it or use that key"
                )));
            }
            e.record(Verb::Adopt, Kind::KeyPair, &kp);
        }
        None => {
            e.cloud
                .post(
                    Svc::Compute,
                    &["os-keypairs"],
                    json!({"keypair": {"name": kp, "public_key": public_key}}),
                )
                .send::<Ignored>(&format!("create key pair {kp}"))
                .await?;
            e.record(Verb::Create, Kind::KeyPair, &kp);
        }
    }
    Ok(kp)
}
