//! The admin kubeconfig for the operator: fetched from a control plane, its names set to the
//! cluster's, its server set to an address the operator can reach; written 0600, or merged into
//! ~/.kube/config under a context named after the cluster.

use serde_json::{Value, json};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("the admin kubeconfig from {host} is not a kubeconfig: {message}")]
    Invalid { host: String, message: String },
    #[error("{}: {message}", path.display())]
    Io {
        path: std::path::PathBuf,
        message: String,
    },
}

/// Rewrites kubeadm's admin.conf: cluster `name`, user `name-admin`, context `name`, and the
/// given server URL.
pub fn for_operator(
    admin_conf: &str,
    name: &str,
    server: &str,
    from_host: &str,
) -> Result<Value, KubeconfigError> {
    let invalid = |message: String| KubeconfigError::Invalid {
        host: from_host.to_string(),
        message,
    };
    let v: Value =
        serde_saphyr::from_str(admin_conf).map_err(|e| invalid(e.without_snippet().to_string()))?;
    let cluster = v["clusters"][0]["cluster"].clone();
    let user = v["users"][0]["user"].clone();
    if cluster.get("certificate-authority-data").is_none() || user.get("client-key-data").is_none()
    {
        return Err(invalid("no embedded CA or client key".into()));
    }
    let mut cluster = cluster;
    cluster["server"] = json!(server);
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": format!("{name}-admin"), "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": format!("{name}-admin")}}],
        "current-context": name,
        "preferences": {},
    }))
}

/// Merges `ours` into `existing` (entries with our names are replaced); keeps the existing
/// current context when there is one.
pub fn merge(existing: Option<Value>, ours: &Value) -> Value {
    let Some(mut base) = existing.filter(|v| v.is_object()) else {
        return ours.clone();
    };
    for list in ["clusters", "users", "contexts"] {
        let new_items = ours[list].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = new_items
            .iter()
            .filter_map(|i| i["name"].as_str())
            .collect();
        let mut items: Vec<Value> = base[list]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| !i["name"].as_str().is_some_and(|n| names.contains(&n)))
            .collect();
        items.extend(new_items.iter().cloned());
        base[list] = Value::Array(items);
    }
    if base["current-context"].as_str().is_none_or(str::is_empty) {
        base["current-context"] = ours["current-context"].clone();
    }
    if base.get("apiVersion").is_none() {
        base["apiVersion"] = json!("v1");
        base["kind"] = json!("Config");
    }
    base
}

pub fn to_yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_default()
}

/// Writes a file with mode 0600 atomically: a temporary file with a random name, created
/// exclusively without following symlinks in the target's directory, then renamed. When `path`
/// is a symlink (a `~/.kube/config` kept elsewhere), its target is written and the link kept.
pub fn write_private(path: &Path, content: &str) -> Result<(), KubeconfigError> {
    crate::util::write_private_atomic(path, content.as_bytes()).map_err(|e| KubeconfigError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Merges into a kubeconfig file (created 0600 when missing).
pub fn merge_into(path: &Path, ours: &Value) -> Result<(), KubeconfigError> {
    let existing = match crate::inventory::read_text_file(path, 16 << 20, "a kubeconfig") {
        Ok(t) if t.trim().is_empty() => None,
        Ok(t) => Some(
            serde_saphyr::from_str::<Value>(&t).map_err(|e| KubeconfigError::Io {
                path: path.to_path_buf(),
                message: format!("not a kubeconfig: {}", e.without_snippet()),
            })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(KubeconfigError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            });
        }
    };
    write_private(path, &to_yaml(&merge(existing, ours)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://api.prod.kubeforge.internal:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";

    #[test]
    fn rewrites_names_and_server() {
        let v = for_operator(ADMIN, "prod", "https://10.0.0.11:6443", "cp1").unwrap();
        assert_eq!(v["clusters"][0]["name"], "prod");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://10.0.0.11:6443"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(v["users"][0]["name"], "prod-admin");
        assert_eq!(v["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(v["contexts"][0]["context"]["user"], "prod-admin");
        assert_eq!(v["current-context"], "prod");
        let yaml = to_yaml(&v);
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, v);
        assert!(for_operator("apiVersion: v1\n", "x", "s", "cp1").is_err());
    }

    #[test]
    fn merge_replaces_ours_and_keeps_the_rest() {
        let ours = for_operator(ADMIN, "prod", "https://10.0.0.11:6443", "cp1").unwrap();
        let other = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "dev",
            "clusters": [{"name": "dev", "cluster": {"server": "https://dev"}}, {"name": "prod", "cluster": {"server": "https://old"}}],
            "users": [{"name": "dev", "user": {}}],
            "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "dev"}}],
        });
        let m = merge(Some(other), &ours);
        let clusters = m["clusters"].as_array().unwrap();
        assert_eq!(clusters.len(), 2);
        assert_eq!(clusters[1]["cluster"]["server"], "https://10.0.0.11:6443");
        assert_eq!(m["contexts"].as_array().unwrap().len(), 2);
        assert_eq!(
            m["current-context"], "dev",
            "the user's current context stays"
        );
        assert_eq!(merge(None, &ours), ours);

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kube/config");
        merge_into(&p, &ours).unwrap();
        merge_into(&p, &ours).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back: Value = serde_saphyr::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(back["clusters"].as_array().unwrap().len(), 1);
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// The temporary name main used: `<path>.kubeforge-tmp-<pid>`.
    fn old_tmp(p: &Path) -> std::path::PathBuf {
        p.with_extension(format!("kubeforge-tmp-{}", std::process::id()))
    }

    #[test]
    fn a_symlink_planted_at_the_predictable_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "victim\n").unwrap();
        let p = dir.path().join("prod.kubeconfig");
        std::os::unix::fs::symlink(&victim, old_tmp(&p)).unwrap();
        write_private(&p, "admin\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
        assert!(
            !std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "admin\n");
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn a_file_planted_at_the_predictable_temporary_name_gets_nothing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prod.kubeconfig");
        let planted = old_tmp(&p);
        std::fs::write(&planted, "").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, "admin\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&planted).unwrap(),
            "",
            "not written"
        );
        assert_eq!(mode(&p), 0o600, "the kubeconfig is private");
    }

    #[test]
    fn a_symlinked_kube_config_is_merged_through_its_link() {
        let ours = for_operator(ADMIN, "prod", "https://10.0.0.11:6443", "cp1").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dotfiles")).unwrap();
        std::fs::create_dir_all(dir.path().join("home/.kube")).unwrap();
        let real = dir.path().join("dotfiles/kubeconfig");
        let dev = json!({"apiVersion": "v1", "kind": "Config", "current-context": "dev",
            "clusters": [{"name": "dev", "cluster": {"server": "https://dev"}}]});
        std::fs::write(&real, to_yaml(&dev)).unwrap();
        let link = dir.path().join("home/.kube/config");
        std::os::unix::fs::symlink("../../dotfiles/kubeconfig", &link).unwrap();
        merge_into(&link, &ours).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let back: Value = serde_saphyr::from_str(&std::fs::read_to_string(&real).unwrap()).unwrap();
        assert_eq!(back["clusters"].as_array().unwrap().len(), 2);
        assert_eq!(back["current-context"], "dev");
        assert_eq!(mode(&real), 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path().join("dotfiles"))
                .unwrap()
                .count(),
            1
        );
    }
}
