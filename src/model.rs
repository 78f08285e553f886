//! The desired state: a validated inventory with every default applied and every path resolved.
//! Pure data. Observed state (facts gathered from hosts) lives elsewhere and is never mixed in.

use crate::inventory::expand::resolve_path;
use crate::inventory::types::{self, Inventory};
use crate::release;
use crate::util::parse_duration;
use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Cni {
    Flannel,
    None,
    Manifest {
        source: ManifestSource,
        sha256: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestSource {
    Url(String),
    Path(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancer {
    /// A stable name in every node's /etc/hosts, and a node-local TCP proxy on nodes without an
    /// API server.
    Local,
    /// An address the user provides.
    External,
    /// An OpenStack Octavia load balancer kubeforge creates.
    Octavia,
}

/// How to reach a host over SSH. `None` fields fall back to ~/.ssh/config, then to defaults
/// (root, port 22).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshTarget {
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key_path: Option<PathBuf>,
    pub bastion: Option<Box<SshTarget>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub role: Role,
    pub ssh: SshTarget,
    /// The node's InternalIP when it differs from the SSH address.
    pub private_address: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<String>,
}

impl Host {
    /// The address other nodes use to reach this one.
    pub fn internal_address(&self) -> &str {
        self.private_address.as_deref().unwrap_or(&self.ssh.address)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiSettings {
    pub load_balancer: LoadBalancer,
    /// The endpoint given in the inventory, if any.
    pub endpoint: Option<(String, u16)>,
    pub cert_sans: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub enum Mirror {
    Url(String),
    Dir(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
pub struct ArtifactSettings {
    /// With a bundle: `Mirror::Dir(<bundle>)` (the binaries are there, in the upstream layout).
    pub mirror: Option<Mirror>,
    /// spec.artifacts.bundle, resolved: a directory `kubeforge artifacts fetch` wrote.
    pub bundle: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
    pub cache_dir: PathBuf,
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    /// spec.artifacts.allowHttpRegistryMirrors: plain-http mirror endpoints were opted into.
    pub allow_http_registry_mirrors: bool,
    /// spec.artifacts.images.mode.
    pub images: ImageMode,
    /// spec.artifacts.images.registry: the site's registry (mode mirror).
    pub site_registry: Option<SiteRegistry>,
}

/// The site's own registry kubeforge fills in mode mirror, and the nodes pull from.
#[derive(Debug, Clone, Serialize)]
pub struct SiteRegistry {
    /// `https://host[:port]`, no trailing slash.
    pub url: String,
    pub username: Option<String>,
    /// Registered with the redactor at load; never serialized.
    #[serde(skip)]
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// The CA file's PEM, read at load.
    #[serde(skip)]
    pub ca_pem: Option<String>,
}

impl ArtifactSettings {
    /// The registry mirrors every node's containerd gets (`/etc/containerd/certs.d`): the
    /// inventory's, but in mode mirror the site registry for every registry (`_default`) and
    /// in place of each of the inventory's mirrors, which then only say where kubeforge itself
    /// fetches from.
    pub fn node_registry_mirrors(&self) -> BTreeMap<String, Vec<String>> {
        match (&self.site_registry, self.images) {
            (Some(site), ImageMode::Mirror) => std::iter::once("_default".to_string())
                .chain(self.registry_mirrors.keys().cloned())
                .map(|k| (k, vec![site.url.clone()]))
                .collect(),
            _ => self.registry_mirrors.clone(),
        }
    }
}

impl SiteRegistry {
    /// `host[:port]`, as in an image reference.
    pub fn host(&self) -> &str {
        self.url
            .split_once("://")
            .map(|(_, h)| h)
            .unwrap_or(&self.url)
    }
}

/// How the nodes get the release's container images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageMode {
    /// kubeforge fetches each image once on the operator's machine (verified by digest) and
    /// imports it on every node that lacks it: the nodes need no registry.
    Push,
    /// The nodes pull the images themselves (through registryMirrors when given).
    Pull,
    /// kubeforge copies the images into the site's registry first; every node's containerd
    /// pulls every registry's images from there (`_default` in certs.d).
    Mirror,
}

#[derive(Debug, Clone, Serialize)]
pub struct SshSettings {
    /// spec.ssh's user, port, key and bastion (for hosts a provider creates); address empty.
    pub defaults: SshTarget,
    /// The known_hosts file from the inventory; None: ~/.ssh/config's, else ~/.ssh/known_hosts.
    pub known_hosts: Option<PathBuf>,
    /// The OpenSSH client config to honour; None when disabled.
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub concurrency: usize,
    pub worker_disruption_percent: u32,
    pub drain_grace_period: Duration,
    pub drain_timeout: Duration,
    pub command_timeout: Duration,
    pub max_clock_skew: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    pub version: semver::Version,
    pub pod_subnet: IpNet,
    pub service_subnet: IpNet,
    pub cluster_domain: String,
    pub cni: Cni,
    pub api: ApiSettings,
    pub hosts: Vec<Host>,
    pub ssh: SshSettings,
    pub artifacts: ArtifactSettings,
    pub options: Options,
    pub openstack: Option<types::OpenStack>,
    /// Helm charts to install on the cluster (spec.addons.charts), in order.
    pub charts: Vec<Chart>,
}

/// A Helm chart of the inventory, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub name: String,
    pub namespace: String,
    pub source: ChartSource,
    pub version: String,
    /// Of the chart archive.
    pub sha256: String,
    /// Inline values (a map; may hold secrets from `${ENV}`: never printed).
    #[serde(skip)]
    pub values: Option<serde_json::Value>,
    /// Values files, resolved, in order (before the inline values).
    pub values_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChartSource {
    /// A `.tgz` on the operator's machine.
    Local(PathBuf),
    /// A chart of a repository: its `index.yaml` gives the archive's URL for the version.
    Repo { url: String, chart: String },
}

impl Cluster {
    /// Builds the model from an inventory that passed validation. `base` is the directory of the
    /// inventory file (relative paths are relative to it).
    pub fn from_inventory(inv: &Inventory, base: &Path) -> Result<Cluster, String> {
        let home = dirs::home_dir();
        let home = home.as_deref();
        let path = |p: &str| resolve_path(p, base, home);
        let spec = &inv.spec;
        let k = &spec.kubernetes;
        let version = release::parse_version(&k.version).ok_or("version")?;
        let pod_subnet: IpNet = k.pod_subnet.parse().map_err(|_| "podSubnet")?;
        let service_subnet: IpNet = k.service_subnet.parse().map_err(|_| "serviceSubnet")?;
        let cni = match k.cni.as_str() {
            "flannel" => Cni::Flannel,
            "none" => Cni::None,
            _ => {
                let m = k.cni_manifest.as_ref().ok_or("cniManifest")?;
                let source = match (&m.url, &m.path) {
                    (Some(u), _) => ManifestSource::Url(u.clone()),
                    (None, Some(p)) => ManifestSource::Path(path(p)),
                    _ => return Err("cniManifest".into()),
                };
                Cni::Manifest {
                    source,
                    sha256: m.sha256.clone().ok_or("cniManifest.sha256")?,
                }
            }
        };
        let load_balancer = match spec
            .control_plane
            .load_balancer
            .as_deref()
            .unwrap_or("local")
        {
            "local" => LoadBalancer::Local,
            "external" => LoadBalancer::External,
            "octavia" => LoadBalancer::Octavia,
            _ => return Err("loadBalancer".into()),
        };
        let jump = |b: &types::Bastion| -> Option<Box<SshTarget>> {
            Some(Box::new(SshTarget {
                address: b.address.clone()?,
                port: b.port,
                user: b.user.clone(),
                key_path: b.key_path.as_deref().map(path),
                bastion: None,
            }))
        };
        let default_bastion = spec.ssh.bastion.as_ref().and_then(jump);
        let mut hosts = Vec::new();
        for h in &spec.hosts {
            let role = match h.role.as_str() {
                "control-plane" => Role::ControlPlane,
                "worker" => Role::Worker,
                _ => return Err(format!("role {}", h.role)),
            };
            hosts.push(Host {
                name: h.name.clone(),
                role,
                ssh: SshTarget {
                    address: h.address.clone(),
                    port: h.port.or(spec.ssh.port),
                    user: h.user.clone().or_else(|| spec.ssh.user.clone()),
                    key_path: h
                        .key_path
                        .as_deref()
                        .or(spec.ssh.key_path.as_deref())
                        .map(path),
                    bastion: match &h.bastion {
                        Some(b) => jump(b),
                        None => default_bastion.clone(),
                    },
                },
                private_address: h.private_address.clone(),
                labels: h.labels.clone(),
                taints: h.taints.clone(),
            });
        }
        let dur = |s: &str| parse_duration(s).ok_or_else(|| format!("duration {s}"));
        let o = &spec.options;
        let a = &spec.artifacts;
        let bundle = a.bundle.as_deref().map(path);
        let mirror = a
            .mirror
            .as_ref()
            .map(|m| {
                if m.starts_with("http://") || m.starts_with("https://") {
                    Mirror::Url(m.clone())
                } else {
                    Mirror::Dir(path(m.strip_prefix("file://").unwrap_or(m)))
                }
            })
            .or_else(|| bundle.clone().map(Mirror::Dir));
        let site_registry = a
            .images
            .as_ref()
            .and_then(|i| i.registry.as_ref())
            .filter(|_| a.images.as_ref().and_then(|i| i.mode.as_deref()) == Some("mirror"))
            .and_then(|r| {
                Some(SiteRegistry {
                    url: r.url.as_deref()?.trim_end_matches('/').to_string(),
                    username: r.username.clone(),
                    password: r.password.clone().inspect(|p| crate::secrets::register(p)),
                    ca_file: r.ca_file.as_deref().map(&path),
                    ca_pem: None,
                })
            });
        let cache_dir = match &a.cache_dir {
            Some(d) => path(d),
            None => dirs::cache_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("kubeforge"),
        };
        Ok(Cluster {
            name: inv.metadata.name.clone(),
            version,
            pod_subnet,
            service_subnet,
            cluster_domain: k.cluster_domain.trim_end_matches('.').to_string(),
            cni,
            api: ApiSettings {
                load_balancer,
                endpoint: spec
                    .control_plane
                    .endpoint
                    .as_ref()
                    // DNS names are case-insensitive; kubeadm takes only lowercase ones
                    .map(|e| (e.host.to_ascii_lowercase(), e.port)),
                cert_sans: spec
                    .control_plane
                    .cert_sans
                    .iter()
                    .map(|s| s.to_ascii_lowercase())
                    .collect(),
            },
            hosts,
            ssh: SshSettings {
                defaults: SshTarget {
                    address: String::new(),
                    port: spec.ssh.port,
                    user: spec.ssh.user.clone(),
                    key_path: spec.ssh.key_path.as_deref().map(path),
                    bastion: default_bastion.clone(),
                },
                known_hosts: spec.ssh.known_hosts.as_deref().map(path),
                config: match spec.ssh.config.as_deref() {
                    Some("none") => None,
                    Some(p) => Some(path(p)),
                    None => Some(path("~/.ssh/config")),
                },
            },
            artifacts: ArtifactSettings {
                mirror,
                bundle,
                manifest: a.manifest.as_deref().map(path),
                cache_dir,
                registry_mirrors: a.registry_mirrors.clone(),
                allow_http_registry_mirrors: a.allow_http_registry_mirrors,
                images: match a.images.as_ref().and_then(|i| i.mode.as_deref()) {
                    Some("pull") => ImageMode::Pull,
                    Some("mirror") => ImageMode::Mirror,
                    _ => ImageMode::Push,
                },
                site_registry: site_registry.clone(),
            },
            options: Options {
                concurrency: o.concurrency.max(1) as usize,
                worker_disruption_percent: o.worker_disruption_percent,
                drain_grace_period: dur(&o.drain.grace_period)?,
                drain_timeout: dur(&o.drain.timeout)?,
                command_timeout: dur(&o.command_timeout)?,
                max_clock_skew: dur(&o.max_clock_skew)?,
            },
            openstack: spec.openstack.clone(),
            charts: spec
                .addons
                .charts
                .iter()
                .map(|ch| {
                    let chart = ch.chart.clone().ok_or("spec.addons.charts[].chart")?;
                    Ok::<_, String>(Chart {
                        name: ch.name.clone(),
                        namespace: ch.namespace.clone().unwrap_or_else(|| "default".into()),
                        source: match &ch.repo {
                            Some(r) => ChartSource::Repo {
                                url: r.clone(),
                                chart,
                            },
                            None => ChartSource::Local(path(&chart)),
                        },
                        version: ch.version.clone().ok_or("spec.addons.charts[].version")?,
                        sha256: ch.sha256.clone().ok_or("spec.addons.charts[].sha256")?,
                        values: ch.values.clone(),
                        values_files: ch.values_files.iter().map(|f| path(f)).collect(),
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn control_planes(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.role == Role::ControlPlane)
    }

    pub fn workers(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.role == Role::Worker)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// A one-line description: roles, version, CNI.
    pub fn summary(&self) -> String {
        let (cp, w) = self.role_counts();
        let cni = match &self.cni {
            Cni::Flannel => "flannel".to_string(),
            Cni::None => "no CNI".to_string(),
            Cni::Manifest { .. } => "CNI from manifest".to_string(),
        };
        let plural = |n: usize, s: &str| format!("{n} {s}{}", if n == 1 { "" } else { "s" });
        format!(
            "cluster {}: Kubernetes {}, {}, {}, {}",
            self.name,
            self.version,
            plural(cp, "control plane"),
            plural(w, "worker"),
            cni
        )
    }

    /// Control planes and workers, counting servers an OpenStack section will create.
    pub fn role_counts(&self) -> (usize, usize) {
        let os = self.openstack.as_ref();
        let os_cp = os
            .and_then(|o| o.control_plane.as_ref())
            .map_or(0, |p| p.count as usize);
        let os_w = os
            .and_then(|o| o.workers.as_ref())
            .map_or(0, |p| p.count as usize);
        (
            self.control_planes().count() + os_cp,
            self.workers().count() + os_w,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::load_str;

    fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Cluster {
        match load_str(Path::new("t.yaml"), text, Path::new("/inv"), env) {
            Ok(l) => l.cluster,
            Err(e) => panic!("{}", e.render(false)),
        }
    }

    const MINIMAL: &str = "\
apiVersion: kubeforge.io/v1alpha1
kind: Cluster
metadata: {name: t}
spec:
  kubernetes: {version: v1.33.5}
  hosts:
    - {name: cp1, address: 10.0.0.11, role: control-plane}
    - {name: w1, address: 10.0.0.21, role: worker, user: admin, port: 2222}
";

    #[test]
    fn defaults() {
        let c = load(MINIMAL, &|_| None);
        assert_eq!(c.version, semver::Version::new(1, 33, 5));
        assert_eq!(c.pod_subnet.to_string(), "10.244.0.0/16");
        assert_eq!(c.service_subnet.to_string(), "10.96.0.0/12");
        assert_eq!(c.cluster_domain, "cluster.local");
        assert_eq!(c.cni, Cni::Flannel);
        assert_eq!(c.api.load_balancer, LoadBalancer::Local);
        assert_eq!(c.options.concurrency, 30);
        assert_eq!(c.options.worker_disruption_percent, 10);
        assert_eq!(c.options.drain_grace_period, Duration::from_secs(120));
        assert_eq!(c.options.drain_timeout, Duration::from_secs(300));
        assert_eq!(c.options.command_timeout, Duration::from_secs(600));
        let cp = c.host("cp1").unwrap();
        assert_eq!(cp.role, Role::ControlPlane);
        assert_eq!(
            cp.ssh.user, None,
            "user falls back to ssh config, then root"
        );
        assert_eq!(cp.ssh.port, None);
        let w = c.host("w1").unwrap();
        assert_eq!(
            (w.ssh.user.as_deref(), w.ssh.port),
            (Some("admin"), Some(2222))
        );
        assert_eq!(c.ssh.known_hosts, None);
        assert!(c.artifacts.cache_dir.ends_with("kubeforge"));
        assert_eq!(c.role_counts(), (1, 1));
    }

    #[test]
    fn ssh_settings_inherit_and_paths_resolve() {
        let text = MINIMAL.replace(
            "  hosts:\n",
            "  ssh: {user: ops, keyPath: keys/id, bastion: {address: 203.0.113.5, user: jump, keyPath: ~/.ssh/jump}}\n  artifacts: {mirror: ./mirror, cacheDir: /var/cache/kf}\n  hosts:\n",
        );
        let c = load(&text, &|_| None);
        let cp = c.host("cp1").unwrap();
        assert_eq!(cp.ssh.user.as_deref(), Some("ops"));
        assert_eq!(cp.ssh.key_path.as_deref(), Some(Path::new("/inv/keys/id")));
        let b = cp.ssh.bastion.as_ref().unwrap();
        assert_eq!(
            (b.address.as_str(), b.user.as_deref()),
            ("203.0.113.5", Some("jump"))
        );
        assert!(b.key_path.as_ref().unwrap().ends_with(".ssh/jump"));
        assert_eq!(
            c.host("w1").unwrap().ssh.user.as_deref(),
            Some("admin"),
            "host overrides spec.ssh"
        );
        assert!(
            matches!(&c.artifacts.mirror, Some(Mirror::Dir(d)) if d == Path::new("/inv/./mirror"))
        );
        assert_eq!(c.artifacts.cache_dir, PathBuf::from("/var/cache/kf"));
    }

    #[test]
    fn environment_variables_expand() {
        let text = MINIMAL.replace("address: 10.0.0.21", "address: \"${W1_ADDR}\"").replace(
            "  hosts:\n",
            "  artifacts: {mirror: \"https://${MIRROR_USER:-anon}:$${literal}@mirror/k8s\"}\n  hosts:\n",
        );
        let env = |n: &str| (n == "W1_ADDR").then(|| "10.0.0.99".to_string());
        let c = load(&text, &env);
        assert_eq!(c.host("w1").unwrap().ssh.address, "10.0.0.99");
        assert!(
            matches!(&c.artifacts.mirror, Some(Mirror::Url(u)) if u == "https://anon:${literal}@mirror/k8s")
        );
    }

    #[test]
    fn cert_sans_and_endpoint_host_are_lowercased() {
        let text = MINIMAL.replace(
            "  hosts:\n",
            "  controlPlane: {loadBalancer: external, endpoint: {host: API.Example.COM}, certSANs: [Kube.Example.com, \"*.Apps.Example.com\", 10.0.0.5]}\n  artifacts: {allowHttpRegistryMirrors: true, registryMirrors: {docker.io: [\"http://10.0.0.9:5000\"]}}\n  hosts:\n",
        );
        let c = load(&text, &|_| None);
        assert_eq!(
            c.api.cert_sans,
            ["kube.example.com", "*.apps.example.com", "10.0.0.5"]
        );
        assert_eq!(c.api.endpoint, Some(("api.example.com".to_string(), 6443)));
        assert!(c.artifacts.allow_http_registry_mirrors);
    }
}
