//! The security groups `<cluster>-common`, `-control-plane` and `-worker`, and their rules.

use super::{Ensurer, create_tagged};
use crate::openstack::action::{Kind, Verb};
use crate::openstack::api;
use crate::openstack::cloud::{CloudError, Ignored, Svc};
use crate::openstack::plan::SECURITY_GROUPS;
use crate::openstack::provider::{Observed, description};
use serde::Serialize;
use std::collections::BTreeMap;

/// One ingress rule of a group: protocol (None: any), port range, and from where (None:
/// anywhere; Some(suffix): the members of that group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub protocol: Option<&'static str>,
    pub ports: Option<(u16, u16)>,
    pub remote_group: Option<&'static str>,
}

const fn rule(
    protocol: Option<&'static str>,
    ports: Option<(u16, u16)>,
    remote_group: Option<&'static str>,
) -> Rule {
    Rule {
        protocol,
        ports,
        remote_group,
    }
}

const TCP: Option<&str> = Some("tcp");
const COMMON: Option<&str> = Some("common");

/// The rules of the group with this suffix.
pub fn rules(group: &str) -> Vec<Rule> {
    match group {
        "common" => vec![
            rule(TCP, Some((22, 22)), None),
            // everything between the cluster's machines
            rule(None, None, COMMON),
            // flannel's VXLAN
            rule(Some("udp"), Some((8472, 8472)), COMMON),
        ],
        "control-plane" => vec![
            rule(TCP, Some((6443, 6443)), None),
            rule(TCP, Some((2379, 2380)), COMMON),
            rule(TCP, Some((10250, 10250)), COMMON),
            rule(TCP, Some((10257, 10257)), COMMON),
            rule(TCP, Some((10259, 10259)), COMMON),
        ],
        _ => vec![
            rule(TCP, Some((10250, 10250)), COMMON),
            rule(TCP, Some((30000, 32767)), None),
        ],
    }
}

/// The body of `POST security-group-rules`.
#[derive(Debug, Serialize, PartialEq)]
pub struct RuleBody<'a> {
    security_group_id: &'a str,
    direction: &'static str,
    ethertype: &'static str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port_range_min: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port_range_max: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_ip_prefix: Option<&'static str>,
}

impl Rule {
    /// The request body of this rule in `group_id`, with the IDs of the cluster's groups (by
    /// suffix) for a remote group.
    pub fn body<'a>(
        &self,
        group_id: &'a str,
        ids: &'a BTreeMap<String, String>,
        description: &'a str,
    ) -> RuleBody<'a> {
        RuleBody {
            security_group_id: group_id,
            direction: "ingress",
            ethertype: "IPv4",
            description,
            protocol: self.protocol,
            port_range_min: self.ports.map(|p| p.0),
            port_range_max: self.ports.map(|p| p.1),
            remote_group_id: self.remote_group.map(|g| ids[g].as_str()),
            remote_ip_prefix: self.remote_group.is_none().then_some("0.0.0.0/0"),
        }
    }
}

/// Returns the groups' IDs by suffix (`common` ...).
pub(super) async fn ensure(
    e: &mut Ensurer<'_>,
    o: &Observed,
) -> Result<BTreeMap<String, String>, CloudError> {
    let name = e.d.name().to_string();
    let desc = description(&name);
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for g in SECURITY_GROUPS {
        let n = format!("{name}-{g}");
        let id = match o.security_groups.get(&n) {
            Some(id) => {
                e.record(Verb::Adopt, Kind::SecurityGroup, &n);
                id.clone()
            }
            None => {
                let v: api::SecurityGroup = create_tagged(
                    e,
                    "security-groups",
                    "security_group",
                    Kind::SecurityGroup,
                    &n,
                    serde_json::json!({"security_group": {"name": n, "description": desc}}),
                )
                .await?;
                e.record(Verb::Create, Kind::SecurityGroup, &n);
                v.id
            }
        };
        ids.insert(g.to_string(), id);
    }
    for g in SECURITY_GROUPS {
        for r in rules(g) {
            let body = serde_json::json!({"security_group_rule": r.body(&ids[g], &ids, &desc)});
            match e
                .cloud
                .post(Svc::Network, &["security-group-rules"], body)
                .send::<Ignored>(&format!("add a rule to security group {name}-{g}"))
                .await
            {
                Ok(_) => {}
                Err(err) if err.is_conflict() => {} // the rule exists
                Err(err) => return Err(err),
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_bodies_are_those_neutron_was_always_sent() {
        let ids: BTreeMap<String, String> = [("common", "c-id"), ("control-plane", "cp-id")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let body =
            |r: &Rule| serde_json::to_value(r.body("cp-id", &ids, "kubeforge: cluster x")).unwrap();
        let cp = rules("control-plane");
        assert_eq!(
            body(&cp[0]),
            serde_json::json!({"security_group_id": "cp-id", "direction": "ingress", "ethertype": "IPv4",
                "description": "kubeforge: cluster x", "protocol": "tcp", "port_range_min": 6443,
                "port_range_max": 6443, "remote_ip_prefix": "0.0.0.0/0"})
        );
        assert_eq!(
            body(&cp[1]),
            serde_json::json!({"security_group_id": "cp-id", "direction": "ingress", "ethertype": "IPv4",
                "description": "kubeforge: cluster x", "protocol": "tcp", "port_range_min": 2379,
                "port_range_max": 2380, "remote_group_id": "c-id"})
        );
        // any protocol between the cluster's machines: no protocol, no ports
        assert_eq!(
            body(&rules("common")[1]),
            serde_json::json!({"security_group_id": "cp-id", "direction": "ingress", "ethertype": "IPv4",
                "description": "kubeforge: cluster x", "remote_group_id": "c-id"})
        );
        let count: usize = SECURITY_GROUPS.iter().map(|g| rules(g).len()).sum();
        assert_eq!(count, 10, "the lab test expects at least 10 tagged rules");
        // only SSH, the API and NodePorts are open to the world
        let open: Vec<(u16, u16)> = SECURITY_GROUPS
            .iter()
            .flat_map(|g| rules(g))
            .filter(|r| r.remote_group.is_none())
            .filter_map(|r| r.ports)
            .collect();
        assert_eq!(open, [(22, 22), (6443, 6443), (30000, 32767)]);
    }
}
