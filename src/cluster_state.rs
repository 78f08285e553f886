//! The cluster as its API sees it (observed state), read with kubectl on a control plane over
//! SSH: nodes with their versions and conditions, and whether the CNI is deployed.

use crate::paths::ADMIN_KUBECONFIG;
use crate::ssh::{Session, SshError};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeState {
    pub name: String,
    pub kubelet_version: String,
    pub ready: bool,
    /// The Ready condition's reason and message when not Ready.
    pub not_ready_reason: Option<String>,
    pub unschedulable: bool,
    pub control_plane: bool,
    pub internal_ip: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Cordoned by kubeforge (for an upgrade or a removal), so a later run uncordons it.
    pub cordoned_by_kubeforge: bool,
}

/// The annotation kubeforge puts on a node it cordons.
pub const CORDON_ANNOTATION: &str = "kubeforge.io/cordoned";

#[derive(Debug, Clone, Serialize)]
pub struct ClusterState {
    /// The host whose kubectl answered.
    pub api_host: String,
    pub nodes: Vec<NodeState>,
    pub server_version: Option<String>,
}

impl ClusterState {
    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// `kubectl --kubeconfig admin.conf ...` on a control plane.
pub fn kubectl(args: &str) -> String {
    format!("kubectl --kubeconfig {ADMIN_KUBECONFIG} {args}")
}

/// Parses `kubectl get nodes -o json`.
pub fn parse_nodes(json: &str) -> Result<Vec<NodeState>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("kubectl get nodes: {e}"))?;
    let items = v["items"].as_array().ok_or("kubectl get nodes: no items")?;
    Ok(items
        .iter()
        .map(|n| {
            let conds = n["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ready_cond = conds.iter().find(|c| c["type"] == "Ready");
            let ready = ready_cond.is_some_and(|c| c["status"] == "True");
            let labels: BTreeMap<String, String> = n["metadata"]["labels"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            NodeState {
                name: n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                kubelet_version: n["status"]["nodeInfo"]["kubeletVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches('v')
                    .to_string(),
                ready,
                not_ready_reason: (!ready).then(|| {
                    ready_cond
                        .map(|c| {
                            format!(
                                "{}: {}",
                                c["reason"].as_str().unwrap_or("Unknown"),
                                c["message"].as_str().unwrap_or("")
                            )
                        })
                        .unwrap_or_else(|| "no Ready condition yet".into())
                }),
                unschedulable: n["spec"]["unschedulable"].as_bool().unwrap_or(false),
                control_plane: labels.contains_key("node-role.kubernetes.io/control-plane"),
                internal_ip: n["status"]["addresses"].as_array().and_then(|a| {
                    a.iter()
                        .find(|x| x["type"] == "InternalIP")
                        .and_then(|x| x["address"].as_str())
                        .map(String::from)
                }),
                cordoned_by_kubeforge: n["metadata"]["annotations"][CORDON_ANNOTATION].is_string(),
                labels,
            }
        })
        .collect())
}

/// The API server's version in `kubectl version -o json`'s output, without the `v`.
pub fn parse_server_version(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["serverVersion"]["gitVersion"]
        .as_str()
        .map(|s| s.trim_start_matches('v').to_string())
}

/// Reads the nodes through the API of `session`'s control plane.
pub async fn observe(session: &Session) -> Result<ClusterState, SshError> {
    let out = session
        .run(&kubectl("get nodes -o json --request-timeout=20s"))
        .await?;
    let nodes = parse_nodes(&out).map_err(|message| SshError::Parse {
        host: session.name().to_string(),
        what: "kubectl get nodes",
        message,
    })?;
    // without it, the planner refuses to change the cluster: the reason is logged
    let version = match session
        .run(&kubectl("version -o json --request-timeout=20s"))
        .await
    {
        Ok(v) => match parse_server_version(&v) {
            Some(v) => Some(v),
            None => {
                tracing::warn!(
                    "{}: `kubectl version` printed no server version",
                    session.name()
                );
                None
            }
        },
        Err(e) => {
            tracing::warn!(
                "{}: cannot read the API server's version: {e}",
                session.name()
            );
            None
        }
    };
    Ok(ClusterState {
        api_host: session.name().to_string(),
        nodes,
        server_version: version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_from_kubectl_json() {
        let json = r#"{"items":[
          {"metadata":{"name":"cp1","labels":{"node-role.kubernetes.io/control-plane":""}},
           "spec":{},
           "status":{"nodeInfo":{"kubeletVersion":"v1.33.5"},
                     "addresses":[{"type":"InternalIP","address":"10.0.0.11"},{"type":"Hostname","address":"cp1"}],
                     "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}]}},
          {"metadata":{"name":"w1","labels":{}},
           "spec":{"unschedulable":true},
           "status":{"nodeInfo":{"kubeletVersion":"v1.32.9"},
                     "conditions":[{"type":"Ready","status":"False","reason":"KubeletNotReady","message":"container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"}]}}
        ]}"#;
        let n = parse_nodes(json).unwrap();
        assert_eq!(n.len(), 2);
        assert!(n[0].ready && n[0].control_plane && !n[0].unschedulable);
        assert_eq!(n[0].kubelet_version, "1.33.5");
        assert_eq!(n[0].internal_ip.as_deref(), Some("10.0.0.11"));
        assert!(!n[1].ready && n[1].unschedulable && !n[1].control_plane);
        assert!(
            n[1].not_ready_reason
                .as_deref()
                .unwrap()
                .starts_with("KubeletNotReady: container runtime network not ready")
        );
        assert!(parse_nodes("not json").is_err());
    }
}
