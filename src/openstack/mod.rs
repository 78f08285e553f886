//! The OpenStack provider: kubeforge creates or adopts the cluster's machines (and their
//! network, security groups, server groups, floating IPs, Octavia load balancer), then
//! bootstraps Kubernetes on them over SSH.

pub mod action;
pub mod api;
pub mod cloud;
mod destroy;
pub mod ensure;
#[cfg(test)]
mod fixture_tests;
pub mod observe;
pub mod plan;
pub mod provider;
pub mod teardown;

use crate::inventory::Loaded;
use crate::model::{Host, LoadBalancer};
use cloud::{Cloud, CloudError};
use provider::{Desired, Provisioned};

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Ensure(#[from] provider::EnsureError),
    #[error("{0}")]
    Config(String),
}

/// The inventory's `spec.openstack`.
fn spec(loaded: &Loaded) -> Result<&crate::inventory::types::OpenStack, ProviderError> {
    loaded
        .inventory
        .spec
        .openstack
        .as_ref()
        .ok_or_else(|| ProviderError::Config("no spec.openstack".into()))
}

/// The public key the key pair and cloud-init carry.
pub fn public_key(loaded: &Loaded) -> Result<String, ProviderError> {
    let os = spec(loaded)?;
    let base = loaded.file.parent().unwrap_or(std::path::Path::new("."));
    let home = dirs::home_dir();
    let path = match (&os.public_key_path, &loaded.cluster.ssh.defaults.key_path) {
        (Some(p), _) => crate::inventory::expand::resolve_path(p, base, home.as_deref()),
        (None, Some(k)) => {
            let mut p = k.as_os_str().to_owned();
            p.push(".pub");
            std::path::PathBuf::from(p)
        }
        (None, None) => {
            return Err(ProviderError::Config(
                "set spec.openstack.publicKeyPath (or spec.ssh.keyPath, whose .pub is used): the servers need a public key".into(),
            ));
        }
    };
    let text = crate::inventory::read_text_file(&path, 64 * 1024, "a public key").map_err(|e| {
        ProviderError::Config(format!(
            "cannot read the public key {}: {e}",
            path.display()
        ))
    })?;
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap_or("")
        .trim();
    let mut w = line.split_whitespace();
    match (w.next(), w.next()) {
        (Some(t), Some(k)) => Ok(format!("{t} {k}")),
        _ => Err(ProviderError::Config(format!(
            "{} is not an OpenSSH public key",
            path.display()
        ))),
    }
}

pub async fn connect(loaded: &Loaded) -> Result<Cloud, ProviderError> {
    let os = spec(loaded)?;
    Ok(Cloud::connect(os.cloud.as_deref()).await?)
}

/// The cloud-controller-manager and Cinder CSI manifests and their cloud.conf, when the
/// inventory wants the cloud provider (`cloudProvider`, true by default).
pub fn cloud_provider(
    loaded: &Loaded,
    cloud: &Cloud,
    subnet_id: &str,
    external_network_id: Option<&str>,
) -> Result<Option<crate::engine::plan::CloudProvider>, ProviderError> {
    let c = &loaded.cluster;
    if !crate::desired::cloud_provider_external(c) {
        return Ok(None);
    }
    let m = loaded
        .catalog
        .get(&c.version)
        .ok_or_else(|| ProviderError::Config(format!("no release manifest for {}", c.version)))?;
    render_cloud_provider(c, m, &cloud.credentials, subnet_id, external_network_id).map(Some)
}

/// Where the cloud provider's pods read the CA bundle: the key `ca.crt` of the Secret
/// kube-system/cloud-config, mounted at /etc/config.
pub const CA_FILE: &str = "/etc/config/ca.crt";

/// The cloud-controller-manager and Cinder CSI manifests, and the cloud.conf they read.
pub fn render_cloud_provider(
    c: &crate::model::Cluster,
    m: &crate::release::ReleaseManifest,
    credentials: &cloud::Credentials,
    subnet_id: &str,
    external_network_id: Option<&str>,
) -> Result<crate::engine::plan::CloudProvider, ProviderError> {
    let addon = m.addons.get("openstack").ok_or_else(|| {
        ProviderError::Config(format!(
            "the release manifest of Kubernetes {} pins no OpenStack cloud provider images (addons.openstack); set spec.openstack.cloudProvider: false to go without",
            c.version
        ))
    })?;
    let ctx =
        serde_json::json!({"cluster": c.name, "version": addon.version, "images": addon.images});
    let render = |n: &str| {
        crate::templates::render(n, &ctx).map_err(|e| ProviderError::Config(e.to_string()))
    };
    let manifest = format!(
        "{}---\n{}",
        render("openstack-ccm.yaml")?,
        render("cinder-csi.yaml")?
    );
    let map = |k: &str| -> Option<&'static str> {
        Some(match k {
            "username" => "username",
            "password" => "password",
            "user_id" => "user-id",
            "project_name" => "tenant-name",
            "project_id" => "tenant-id",
            "user_domain_name" => "user-domain-name",
            "user_domain_id" => "user-domain-id",
            "project_domain_name" => "tenant-domain-name",
            "project_domain_id" => "tenant-domain-id",
            "domain_name" => "domain-name",
            "domain_id" => "domain-id",
            "application_credential_id" => "application-credential-id",
            "application_credential_name" => "application-credential-name",
            "application_credential_secret" => "application-credential-secret",
            _ => return None,
        })
    };
    let fields: Vec<serde_json::Value> = credentials
        .fields
        .iter()
        .filter_map(|(k, v)| map(k).map(|key| serde_json::json!({"key": key, "value": v})))
        .collect();
    // the CA that verifies the cloud goes into the Secret next to cloud.conf: the
    // cloud-controller-manager and Cinder CSI mount it at /etc/config
    let ca_cert = match &credentials.cacert() {
        Some(path) => {
            let pem = crate::inventory::read_text_file(path, 4 << 20, "a CA bundle").map_err(|e| {
                ProviderError::Config(format!(
                    "cannot read the CA bundle {} (`cacert` of the cloud, or OS_CACERT): {e}; the cloud provider needs it to verify the cloud",
                    path.display()
                ))
            })?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(ProviderError::Config(format!(
                    "the CA bundle {} (`cacert` of the cloud, or OS_CACERT) holds no PEM certificate",
                    path.display()
                )));
            }
            Some(pem)
        }
        None => None,
    };
    let cloud_conf = crate::templates::render(
        "openstack-cloud-config",
        &serde_json::json!({
            "auth_url": credentials.auth_url,
            "region": credentials.region,
            "fields": fields,
            "ca_file": ca_cert.as_ref().map(|_| CA_FILE),
            "subnet_id": subnet_id,
            "floating_network_id": external_network_id,
        }),
    )
    .map_err(|e| ProviderError::Config(e.to_string()))?;
    Ok(crate::engine::plan::CloudProvider {
        manifest,
        cloud_conf,
        ca_cert,
    })
}

/// What the cloud holds for the cluster, read-only.
pub struct CloudView {
    pub actions: Vec<provider::CloudAction>,
    pub cloud_provider: Option<crate::engine::plan::CloudProvider>,
    /// The servers that exist, and the load balancer's address.
    pub resolved: Resolved,
}

/// What the provider resolved: the hosts of the servers that exist, and the API endpoint (the
/// Octavia load balancer's address). The model is never changed; `resolved` builds the
/// cluster with them.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub hosts: Vec<Host>,
    pub endpoint: Option<(String, u16)>,
}

/// A new inventory whose cluster has the resolved hosts added and, if one was resolved, the
/// endpoint set.
pub fn resolved(loaded: &Loaded, r: &Resolved) -> Loaded {
    let mut out = loaded.clone();
    out.cluster.hosts.extend(r.hosts.iter().cloned());
    if let Some(ep) = &r.endpoint {
        out.cluster.api.endpoint = Some(ep.clone());
    }
    out
}

/// What observe resolves: the ACTIVE servers within the counts, and the VIP of the cluster's
/// (tagged) load balancer with `loadBalancer: octavia`.
pub fn resolve_observed(
    loaded: &Loaded,
    o: &provider::Observed,
) -> Result<Resolved, ProviderError> {
    let os = spec(loaded)?;
    let d = Desired {
        cluster: &loaded.cluster,
        os,
    };
    let existing: Vec<provider::ServerInfo> = o
        .servers
        .iter()
        .filter(|s| s.status == "ACTIVE" && s.index <= d.count(s.role))
        .cloned()
        .collect();
    let endpoint = match o.our_load_balancer() {
        Some(lb) if loaded.cluster.api.load_balancer == LoadBalancer::Octavia => {
            Some((lb.vip.clone(), crate::desired::API_PORT))
        }
        _ => None,
    };
    Ok(Resolved {
        hosts: provider::hosts(&loaded.cluster, &existing),
        endpoint,
    })
}

/// Reads the cloud (changing nothing): the cloud plan, the servers that exist (as hosts) and
/// the load balancer's address as the endpoint, and the cloud provider's manifests.
pub async fn observe(loaded: &Loaded) -> Result<CloudView, ProviderError> {
    let cloud = connect(loaded).await?;
    let os = spec(loaded)?;
    let d = Desired {
        cluster: &loaded.cluster,
        os,
    };
    // what apply would refuse, plan refuses too, before anything is created
    cloud.check_compute_microversion().await?;
    let o = provider::observe(&cloud, &d).await?;
    provider::check(&d, &o)?;
    let actions = provider::plan(&d, &o);
    // refused when a router or floating IPs need it; else only for the cloud provider's
    // floating-network-id, if there is a single one (as apply does)
    let ext = provider::external_network_id(&cloud, os.network.external_network.as_deref()).await;
    let ext = if d.needs_external_network() {
        Some(ext?)
    } else {
        ext.ok()
    };
    let r = resolve_observed(loaded, &o)?;
    let cloud_provider = match &o.subnet {
        Some(sn) => cloud_provider(&resolved(loaded, &r), &cloud, sn, ext.as_deref())?,
        None => None,
    };
    Ok(CloudView {
        actions,
        cloud_provider,
        resolved: r,
    })
}

/// Creates or adopts the cluster's machines; returns them, the cloud provider's manifests,
/// and what was resolved (their hosts, the load balancer's address).
pub async fn provision(
    loaded: &Loaded,
) -> Result<
    (
        Provisioned,
        Option<crate::engine::plan::CloudProvider>,
        Resolved,
    ),
    ProviderError,
> {
    let cloud = connect(loaded).await?;
    let os = spec(loaded)?;
    let key = public_key(loaded)?;
    let d = Desired {
        cluster: &loaded.cluster,
        os,
    };
    let name = loaded.cluster.name.clone();
    let user_data = |host: &str| {
        crate::templates::render(
            "cloud-init.yaml",
            &serde_json::json!({"hostname": host, "cluster": name, "public_key": key}),
        )
        .map_err(|e| {
            cloud::CloudError::Config(format!(
                "cannot render the cloud-init user data of server {host} (template cloud-init.yaml): {e}"
            ))
        })
    };
    let p = provider::ensure(&cloud, &d, &key, &user_data).await?;
    let r = Resolved {
        hosts: provider::hosts(&loaded.cluster, &p.servers),
        endpoint: p.endpoint.clone().map(|ep| (ep, crate::desired::API_PORT)),
    };
    let cp = cloud_provider(
        &resolved(loaded, &r),
        &cloud,
        &p.subnet_id,
        p.external_network_id.as_deref(),
    )?;
    Ok((p, cp, r))
}

/// What `destroy` would delete, and what it leaves (with why), read once: `destroy` deletes
/// exactly these resources, by ID, with the same session.
pub struct DestroyPlan {
    pub deletes: Vec<provider::CloudAction>,
    pub kept: Vec<String>,
    cloud: Cloud,
    os: crate::inventory::types::OpenStack,
    teardown: provider::Teardown,
}

/// Reads what `destroy` would delete and what it leaves (with why), changing nothing.
pub async fn destroy_preview(loaded: &Loaded) -> Result<DestroyPlan, ProviderError> {
    let cloud = connect(loaded).await?;
    let os = spec(loaded)?.clone();
    let d = Desired {
        cluster: &loaded.cluster,
        os: &os,
    };
    let key = public_key(loaded).ok();
    let t = provider::teardown(&cloud, &d, key.as_deref()).await?;
    Ok(DestroyPlan {
        deletes: t.actions(&loaded.cluster.name),
        kept: t.kept.clone(),
        cloud,
        os,
        teardown: t,
    })
}

/// Deletes what the (confirmed) preview listed and nothing else (see `provider::teardown`);
/// what it leaves is logged with the reason.
pub async fn destroy(
    loaded: &Loaded,
    plan: DestroyPlan,
) -> Result<Vec<provider::CloudAction>, ProviderError> {
    let d = Desired {
        cluster: &loaded.cluster,
        os: &plan.os,
    };
    for k in &plan.kept {
        tracing::warn!("left in place: {k}");
    }
    Ok(provider::destroy(&plan.cloud, &d, plan.teardown).await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cloud_conf_names_the_ca_file_only_when_there_is_one() {
        let render = |ca: Option<&str>| {
            crate::templates::render(
                "openstack-cloud-config",
                &serde_json::json!({"auth_url": "https://k:5000/v3", "fields": [], "ca_file": ca, "subnet_id": "s"}),
            )
            .unwrap()
        };
        assert!(render(Some(super::CA_FILE)).contains("\nca-file=\"/etc/config/ca.crt\"\n"));
        assert!(!render(None).contains("ca-file"));
    }
}
