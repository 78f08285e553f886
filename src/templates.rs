//! Tera templates for everything kubeforge writes: units, configs, manifests, cloud-init, and
//! the example inventory. They are built into the binary; autoescaping is off (none is HTML).

use std::sync::LazyLock;

/// Every template in templates/, by name.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "cinder-csi.yaml",
        include_str!("../templates/cinder-csi.yaml.tera"),
    ),
    (
        "cloud-init.yaml",
        include_str!("../templates/cloud-init.yaml.tera"),
    ),
    (
        "containerd-config.toml",
        include_str!("../templates/containerd-config.toml.tera"),
    ),
    (
        "containerd-hosts.toml",
        include_str!("../templates/containerd-hosts.toml.tera"),
    ),
    (
        "containerd.service",
        include_str!("../templates/containerd.service.tera"),
    ),
    ("crictl.yaml", include_str!("../templates/crictl.yaml.tera")),
    (
        "flannel.yaml",
        include_str!("../templates/flannel.yaml.tera"),
    ),
    ("haproxy.cfg", include_str!("../templates/haproxy.cfg.tera")),
    ("hosts-block", include_str!("../templates/hosts-block.tera")),
    (
        "inventory.yaml",
        include_str!("../templates/inventory.yaml.tera"),
    ),
    (
        "kubeadm-init.yaml",
        include_str!("../templates/kubeadm-init.yaml.tera"),
    ),
    (
        "kubeadm-join.yaml",
        include_str!("../templates/kubeadm-join.yaml.tera"),
    ),
    (
        "kubeadm-node-registration",
        include_str!("../templates/kubeadm-node-registration.tera"),
    ),
    (
        "kubelet-kubeadm.conf",
        include_str!("../templates/kubelet-kubeadm.conf.tera"),
    ),
    (
        "kubelet.service",
        include_str!("../templates/kubelet.service.tera"),
    ),
    ("marker", include_str!("../templates/marker.tera")),
    (
        "modules-load.conf",
        include_str!("../templates/modules-load.conf.tera"),
    ),
    (
        "openstack-ccm.yaml",
        include_str!("../templates/openstack-ccm.yaml.tera"),
    ),
    (
        "openstack-cloud-config",
        include_str!("../templates/openstack-cloud-config.tera"),
    ),
    ("sysctl.conf", include_str!("../templates/sysctl.conf.tera")),
];

static TERA: LazyLock<Result<tera::Tera, String>> = LazyLock::new(|| {
    let mut t = tera::Tera::new();
    t.autoescape_on(Vec::<&str>::new());
    t.add_raw_templates(TEMPLATES.iter().copied())
        .map_err(|e| format!("{e:?}"))?;
    Ok(t)
});

#[derive(Debug, thiserror::Error)]
#[error("cannot render template {name}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub message: String,
}

/// Renders a template with the given serializable context.
pub fn render<T: serde::Serialize>(name: &str, context: &T) -> Result<String, TemplateError> {
    let err = |message: String| TemplateError {
        name: name.to_string(),
        message,
    };
    let tera = TERA.as_ref().map_err(|e| err(e.clone()))?;
    let ctx = tera::Context::from_serialize(context).map_err(|e| err(format!("{e:?}")))?;
    tera.render(name, &ctx).map_err(|e| err(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_registered() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let name = name.trim_end_matches(".tera");
            assert!(
                TEMPLATES.iter().any(|(n, _)| *n == name),
                "templates/{name}.tera is not in TEMPLATES"
            );
        }
        assert!(TERA.is_ok(), "{:?}", TERA.as_ref().err());
    }
}
