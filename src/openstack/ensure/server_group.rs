//! The server group `<cluster>-<role>` (soft anti-affinity): created or adopted.

use super::Ensurer;
use crate::model::Role;
use crate::openstack::action::{Kind, Verb};
use crate::openstack::api;
use crate::openstack::cloud::{CloudError, Svc};
use crate::openstack::provider::{Observed, SERVER_GROUP_POLICY, role_slug};
use serde_json::json;

/// Returns the group's ID.
pub(super) async fn ensure(
    e: &mut Ensurer<'_>,
    o: &Observed,
    role: Role,
) -> Result<String, CloudError> {
    let g = format!("{}-{}", e.d.name(), role_slug(role));
    match o.server_groups.get(&g) {
        Some(sg) => {
            e.record(Verb::Adopt, Kind::ServerGroup, &g);
            Ok(sg.id.clone())
        }
        None => {
            let v: api::ServerGroupDoc = e
                .cloud
                .post(
                    Svc::Compute,
                    &["os-server-groups"],
                    json!({"server_group": {"name": g, "policy": SERVER_GROUP_POLICY}}),
                )
                .send(&format!("create server group {g}"))
                .await?;
            e.record(Verb::Create, Kind::ServerGroup, &g);
            Ok(v.server_group.id)
        }
    }
}
