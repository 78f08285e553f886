//! The inventory file, as written by the user: a serde mirror of the YAML with no behaviour.
//! Unknown fields are rejected everywhere. Values whose default depends on other fields stay
//! `Option` here; `model` applies the defaults.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "kubeforge.io/v1alpha1";
pub const KIND: &str = "Cluster";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Inventory {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    pub kubernetes: Kubernetes,
    #[serde(default)]
    pub control_plane: ControlPlane,
    #[serde(default)]
    pub ssh: Ssh,
    #[serde(default)]
    pub hosts: Vec<Host>,
    #[serde(default)]
    pub openstack: Option<OpenStack>,
    #[serde(default)]
    pub artifacts: Artifacts,
    #[serde(default)]
    pub options: Options,
    #[serde(default)]
    pub addons: Addons,
}

/// What kubeforge installs on the cluster once it runs.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Addons {
    /// Helm charts, installed (and upgraded) with a pinned helm on the API host.
    #[serde(default)]
    pub charts: Vec<Chart>,
}

/// A Helm chart: a local `.tgz` (`chart: ./charts/x-1.0.0.tgz`), or a chart of a repository
/// (`repo: https://charts.example/`, `chart: x`), pinned by version and sha256 of the archive.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Chart {
    /// The release name (a DNS label).
    pub name: String,
    /// Default: `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub chart: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Inline values (a map), applied after valuesFiles.
    #[serde(default)]
    pub values: Option<serde_json::Value>,
    /// Values files, relative to the inventory, in order.
    #[serde(default)]
    pub values_files: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kubernetes {
    /// `1.33.5` or `v1.33.5`; must be a release listed in the manifests (images/).
    pub version: String,
    #[serde(default = "default_pod_subnet")]
    pub pod_subnet: String,
    #[serde(default = "default_service_subnet")]
    pub service_subnet: String,
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    /// flannel (default) | none | manifest
    #[serde(default = "default_cni")]
    pub cni: String,
    /// With `cni: manifest`: the CNI manifest to apply, pinned by sha256.
    #[serde(default)]
    pub cni_manifest: Option<CniManifest>,
}

pub fn default_pod_subnet() -> String {
    "10.244.0.0/16".into()
}
pub fn default_service_subnet() -> String {
    "10.96.0.0/12".into()
}
pub fn default_cluster_domain() -> String {
    "cluster.local".into()
}
pub fn default_cni() -> String {
    "flannel".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CniManifest {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlane {
    /// The API endpoint every node and the operator use; defaults per load balancer.
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    /// local (default) | external | octavia
    #[serde(default)]
    pub load_balancer: Option<String>,
    /// Extra subject alternative names for the API server certificate.
    #[serde(default, rename = "certSANs")]
    pub cert_sans: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    pub host: String,
    #[serde(default = "default_api_port")]
    pub port: u16,
}

pub fn default_api_port() -> u16 {
    6443
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ssh {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// A private key file; without one, ssh-agent and ~/.ssh/config's IdentityFile are used.
    #[serde(default)]
    pub key_path: Option<String>,
    /// known_hosts file to verify host keys against (default ~/.ssh/known_hosts).
    #[serde(default)]
    pub known_hosts: Option<String>,
    /// OpenSSH client config to honour (default ~/.ssh/config; "none" to ignore it).
    #[serde(default)]
    pub config: Option<String>,
    #[serde(default)]
    pub bastion: Option<Bastion>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bastion {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub key_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Host {
    pub name: String,
    pub address: String,
    /// control-plane | worker
    pub role: String,
    /// The address other nodes use (node IP), when `address` is a public or floating one.
    #[serde(default)]
    pub private_address: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub key_path: Option<String>,
    #[serde(default)]
    pub bastion: Option<Bastion>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `key[=value]:Effect`, as kubectl taint writes them.
    #[serde(default)]
    pub taints: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpenStack {
    /// An entry of clouds.yaml; without it, the OS_* environment variables are used.
    #[serde(default)]
    pub cloud: Option<String>,
    pub image: String,
    #[serde(default)]
    pub network: OpenStackNetwork,
    #[serde(default)]
    pub control_plane: Option<OpenStackPool>,
    #[serde(default)]
    pub workers: Option<OpenStackPool>,
    /// Public key file put into the key pair (default: keyPath + ".pub").
    #[serde(default)]
    pub public_key_path: Option<String>,
    /// Attach floating IPs so the operator can reach the servers (default true unless a bastion
    /// is set).
    #[serde(default)]
    pub floating_ips: Option<bool>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Install the OpenStack cloud-controller-manager and Cinder CSI (default true).
    #[serde(default)]
    pub cloud_provider: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpenStackNetwork {
    /// Use this existing network instead of creating one.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cidr: Option<String>,
    #[serde(default)]
    pub external_network: Option<String>,
    #[serde(default)]
    pub dns_nameservers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpenStackPool {
    pub count: u32,
    pub flavor: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Artifacts {
    /// Base URL (http/https) or local directory laid out like the upstream download sites.
    #[serde(default)]
    pub mirror: Option<String>,
    /// A directory written by `kubeforge artifacts fetch` (it holds an index.json): every
    /// binary, image and manifest the cluster needs, so apply needs no network on the
    /// operator's machine. Not together with `mirror`.
    #[serde(default)]
    pub bundle: Option<String>,
    /// An extra release manifest (same format as images/*.yaml), e.g. for air-gapped sites.
    #[serde(default)]
    pub manifest: Option<String>,
    /// Where downloads are cached (default ~/.cache/kubeforge).
    #[serde(default)]
    pub cache_dir: Option<String>,
    /// containerd registry mirrors: registry host -> mirror endpoints.
    #[serde(default)]
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    /// Allow plain-http registry mirror endpoints (default false: https only).
    #[serde(default)]
    pub allow_http_registry_mirrors: bool,
    /// How the nodes get their container images (default: push).
    #[serde(default)]
    pub images: Option<ImagesSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImagesSpec {
    /// `push` (kubeforge pulls each image once on the operator's machine and imports it on the
    /// nodes that lack it), `pull` (the nodes pull, through registryMirrors if given) or `mirror`
    /// (kubeforge copies the images into the site's registry, the nodes pull from there).
    #[serde(default)]
    pub mode: Option<String>,
    /// The site's registry, for mode `mirror`.
    #[serde(default)]
    pub registry: Option<SiteRegistrySpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SiteRegistrySpec {
    /// `https://host[:port]` (plain `http://` only with allowHttpRegistryMirrors).
    #[serde(default)]
    pub url: Option<String>,
    /// Who kubeforge pushes as (the nodes pull anonymously).
    #[serde(default)]
    pub username: Option<String>,
    /// Use `${ENV}`: never written in the file.
    #[serde(default)]
    pub password: Option<String>,
    /// A PEM file of the CA that signed the registry's certificate, trusted by kubeforge and by
    /// every node's containerd for this registry.
    #[serde(default)]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Options {
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    #[serde(default = "default_worker_disruption_percent")]
    pub worker_disruption_percent: u32,
    #[serde(default)]
    pub drain: Drain,
    /// Longest time one remote command may run (default 10m).
    #[serde(default = "default_command_timeout")]
    pub command_timeout: String,
    /// Largest clock offset between a host and the operator before preflight fails (default 30s).
    #[serde(default = "default_max_clock_skew")]
    pub max_clock_skew: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: default_concurrency(),
            worker_disruption_percent: default_worker_disruption_percent(),
            drain: Drain::default(),
            command_timeout: default_command_timeout(),
            max_clock_skew: default_max_clock_skew(),
        }
    }
}

pub fn default_concurrency() -> u32 {
    30
}
pub fn default_worker_disruption_percent() -> u32 {
    10
}
pub fn default_command_timeout() -> String {
    "10m".into()
}
pub fn default_max_clock_skew() -> String {
    "30s".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Drain {
    #[serde(default = "default_grace_period")]
    pub grace_period: String,
    #[serde(default = "default_drain_timeout")]
    pub timeout: String,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            grace_period: default_grace_period(),
            timeout: default_drain_timeout(),
        }
    }
}

pub fn default_grace_period() -> String {
    "2m".into()
}
pub fn default_drain_timeout() -> String {
    "5m".into()
}
