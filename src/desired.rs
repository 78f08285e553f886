//! What every host should look like, derived from the cluster model and the release manifest:
//! the files kubeforge manages (rendered from templates), the binaries it installs, the OS
//! packages it needs, the API endpoint. Pure: the planner compares this with the facts.

use crate::facts::Facts;
use crate::model::{Cluster, Host, LoadBalancer, Role};
use crate::release::{Artifact, ReleaseManifest};
use crate::templates;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

pub use crate::paths::API_PORT;
use crate::paths::{self, CNI_MANIFEST, MARKER};

#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("the release manifest of Kubernetes {version} has no {component} for {arch}")]
    NoArtifact {
        version: String,
        component: String,
        arch: String,
    },
    #[error("the release manifest of Kubernetes {0} pins no flannel images (cni.flannel)")]
    NoFlannel(String),
    #[error(
        "spec.artifacts.registryMirrors: the key {0:?} is not a registry `host[:port]` or `_default`; it names the directory /etc/containerd/certs.d/<key>"
    )]
    RegistryKey(String),
    #[error("spec.artifacts.registryMirrors.{registry}: the endpoint {endpoint:?} is {why}")]
    MirrorEndpoint {
        registry: String,
        endpoint: String,
        why: &'static str,
    },
    #[error(transparent)]
    Template(#[from] templates::TemplateError),
}

/// A URL for a message: `user:password@` left out.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// A registryMirrors key containerd looks up under /etc/containerd/certs.d: `_default`, or a
/// registry's `host[:port]` (a DNS name or an IPv4 address, a port 1-65535). Anything else
/// could name a path outside that directory, so it is never made into one.
pub fn is_registry_key(key: &str) -> bool {
    if key == "_default" {
        return true;
    }
    let (host, port) = match key.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (key, None),
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    port_ok && !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok)
}

/// Where a node's IP comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeIpSource {
    /// The inventory's `privateAddress`.
    PrivateAddress,
    /// The inventory's `address`, an IP.
    Address,
    /// Observed: the host's end of the SSH connection (the inventory gives a name).
    SshConnection,
    /// Observed: the host's only global IPv4 address.
    OnlyAddress,
}

/// The IP a node registers with, advertises its API server and etcd on, and that the other
/// nodes reach it at (kubelet `--node-ip`, kubeadm's `advertiseAddress`, haproxy's backends,
/// the endpoint name in /etc/hosts). kubeadm takes only an IP there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeIp {
    pub ip: String,
    pub source: NodeIpSource,
    /// The interface that holds it, when observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

impl NodeIp {
    /// `from privateAddress`, `from the SSH connection (eth0)`.
    pub fn describe(&self) -> String {
        let how = match self.source {
            NodeIpSource::PrivateAddress => "from privateAddress",
            NodeIpSource::Address => "from address",
            NodeIpSource::SshConnection => "from the SSH connection",
            NodeIpSource::OnlyAddress => "the host's only address",
        };
        match &self.interface {
            Some(i) => format!("{how} ({i})"),
            None => how.to_string(),
        }
    }
}

/// The node IP of `h`: `privateAddress` when given, else `address` when it is an IP, else what
/// the host reports (facts: the local address of the SSH connection, else its only global
/// IPv4 address). The inventory is never changed: a name stays the SSH address.
pub fn node_ip(h: &Host, facts: Option<&Facts>) -> Result<NodeIp, String> {
    let given = |ip: &str, source| NodeIp {
        ip: ip.to_string(),
        source,
        interface: None,
    };
    if let Some(p) = &h.private_address {
        return Ok(given(p, NodeIpSource::PrivateAddress));
    }
    if h.ssh.address.parse::<IpAddr>().is_ok() {
        return Ok(given(&h.ssh.address, NodeIpSource::Address));
    }
    let f = facts.ok_or_else(|| {
        format!(
            "{}: address {} is a name and the host's facts were not read, so its node IP is unknown",
            h.name, h.ssh.address
        )
    })?;
    let o = f.observed_node_ip().ok_or_else(|| {
        let seen: Vec<String> = f
            .addresses
            .iter()
            .map(|(i, a)| format!("{a} ({i})"))
            .collect();
        format!(
            "{}: address {} is a name, and the host's node IP cannot be told: the SSH connection's local address is {}, the host has {}; set privateAddress to the IP the other nodes reach it at",
            h.name,
            h.ssh.address,
            f.ssh_local_address
                .map(|a| a.to_string())
                .unwrap_or_else(|| "unknown".into()),
            if seen.is_empty() {
                "no global address listed".to_string()
            } else {
                format!("addresses {}", seen.join(", "))
            }
        )
    })?;
    Ok(NodeIp {
        ip: o.ip.to_string(),
        source: if o.from_ssh {
            NodeIpSource::SshConnection
        } else {
            NodeIpSource::OnlyAddress
        },
        interface: o.interface,
    })
}

/// The node IPs of a run, by host name: computed from the model and the facts, kept apart
/// from both.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct NodeIps(pub BTreeMap<String, NodeIp>);

impl NodeIps {
    /// The node IP of every host it can be told for, and why not for the others.
    pub fn resolve(c: &Cluster, facts: &BTreeMap<String, Facts>) -> (NodeIps, Vec<String>) {
        let mut ips = BTreeMap::new();
        let mut errors = Vec::new();
        for h in &c.hosts {
            match node_ip(h, facts.get(&h.name)) {
                Ok(ip) => {
                    ips.insert(h.name.clone(), ip);
                }
                Err(e) => errors.push(e),
            }
        }
        (NodeIps(ips), errors)
    }

    /// The node IPs that need no facts: `privateAddress` or an IP `address`.
    pub fn from_inventory(c: &Cluster) -> NodeIps {
        NodeIps::resolve(c, &BTreeMap::new()).0
    }

    /// `h`'s node IP; the inventory's internal address for a host it is not known for (the
    /// planner refuses such a host before anything runs).
    pub fn ip<'a>(&'a self, h: &'a Host) -> &'a str {
        self.0
            .get(&h.name)
            .map(|n| n.ip.as_str())
            .unwrap_or_else(|| h.internal_address())
    }

    pub fn get(&self, host: &str) -> Option<&NodeIp> {
        self.0.get(host)
    }
}

/// The address every node and client uses for the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiEndpoint {
    pub host: String,
    pub port: u16,
    /// A name kubeforge maps in /etc/hosts (local load balancing).
    pub local: bool,
}

pub fn api_endpoint(c: &Cluster) -> ApiEndpoint {
    match (c.api.load_balancer, &c.api.endpoint) {
        (LoadBalancer::Local, Some((host, _))) => ApiEndpoint {
            host: host.clone(),
            port: API_PORT,
            local: true,
        },
        (LoadBalancer::Local, None) => ApiEndpoint {
            host: format!("api.{}.kubeforge.internal", c.name),
            port: API_PORT,
            local: true,
        },
        (_, Some((host, port))) => ApiEndpoint {
            host: host.clone(),
            port: *port,
            local: false,
        },
        (_, None) => ApiEndpoint {
            // an Octavia endpoint before it exists: the first control plane
            host: c
                .control_planes()
                .next()
                .map(|h| h.internal_address().to_string())
                .unwrap_or_default(),
            port: API_PORT,
            local: false,
        },
    }
}

/// What has to happen after a managed file changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Followup {
    Sysctl,
    Modules,
    DaemonReload,
    ReloadHaproxy,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManagedFile {
    pub path: String,
    #[serde(skip)]
    pub content: String,
    pub mode: u32,
    pub followups: Vec<Followup>,
    /// A change restarts containerd (its runtime step restarts it and proves it answers CRI).
    pub restarts_containerd: bool,
    /// The step that owns the file (os-prep, runtime, kube-binaries, api-endpoint).
    pub step: &'static str,
}

impl ManagedFile {
    /// Marks a file whose change restarts containerd.
    fn restarting(mut self) -> Self {
        self.restarts_containerd = true;
        self
    }

    pub fn sha256(&self) -> String {
        crate::artifacts::sha256_hex(self.content.as_bytes())
    }
}

/// Everything one host needs.
#[derive(Debug, Clone)]
pub struct HostDesired {
    pub files: Vec<ManagedFile>,
    /// Binaries, in install order.
    pub installs: Vec<Artifact>,
    pub packages: Vec<&'static str>,
    /// The /etc/hosts block (None when the endpoint is not a local name).
    pub hosts_block: Option<String>,
}

pub fn artifact<'a>(
    m: &'a ReleaseManifest,
    component: &str,
    arch: &str,
) -> Result<&'a Artifact, DesiredError> {
    m.artifact(component, arch)
        .ok_or_else(|| DesiredError::NoArtifact {
            version: m.kubernetes.clone(),
            component: component.to_string(),
            arch: arch.to_string(),
        })
}

fn major(version: &str) -> u64 {
    version
        .split('.')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[derive(Serialize)]
struct Mirror<'a> {
    registry: &'a str,
    server: String,
    endpoints: &'a [String],
    /// The site registry's endpoint (mode mirror) and the CA file containerd trusts for it.
    ca_endpoint: &'a str,
    ca_path: String,
}

#[derive(Serialize)]
struct Backend<'a> {
    name: &'a str,
    address: &'a str,
}

/// The API servers' certificate names: the endpoint, every control plane's addresses,
/// loopback, and the inventory's certSANs.
pub fn cert_sans(c: &Cluster, ips: &NodeIps) -> Vec<String> {
    let ep = api_endpoint(c);
    let mut sans = vec![ep.host.clone()];
    for h in c.control_planes() {
        sans.push(h.ssh.address.clone());
        sans.push(ips.ip(h).to_string());
        sans.push(h.name.clone());
    }
    sans.extend(["127.0.0.1".to_string(), "localhost".to_string()]);
    sans.extend(c.api.cert_sans.iter().cloned());
    // kubeadm takes DNS SANs in lower case only (ValidateCertSANs); a host `address` given as
    // `CP1.Example.COM` is valid in the inventory and lowercased here, like the other names
    let mut out: Vec<String> = Vec::new();
    for s in sans {
        let s = s.to_ascii_lowercase();
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The desired state of `host`. `endpoint_ip`: where the local endpoint name must point on
/// this host (the host itself for a control plane that runs an API server, a serving control
/// plane for one that is about to join, 127.0.0.1 on workers). `ips`: the node IPs.
pub fn for_host(
    c: &Cluster,
    m: &ReleaseManifest,
    host: &Host,
    arch: &str,
    endpoint_ip: &str,
    ips: &NodeIps,
) -> Result<HostDesired, DesiredError> {
    let ep = api_endpoint(c);
    let base = serde_json::json!({ "cluster": c.name, "role": host.role.as_str() });
    let render = |name: &str, extra: serde_json::Value| -> Result<String, DesiredError> {
        let mut ctx = base.clone();
        if let (Some(o), serde_json::Value::Object(e)) = (ctx.as_object_mut(), extra) {
            o.extend(e);
        }
        Ok(templates::render(name, &ctx)?)
    };
    let file =
        |path: &str, content: String, mode: u32, followups: &[Followup], step: &'static str| {
            ManagedFile {
                path: path.to_string(),
                content,
                mode,
                followups: followups.to_vec(),
                restarts_containerd: false,
                step,
            }
        };
    let containerd = artifact(m, "containerd", arch)?;
    // containerd's sandbox image: the digest-only form of the pinned pause image, which every
    // containerd version resolves (a `tag@digest` sandbox image breaks RunPodSandbox on
    // containerd 2.3.0/2.3.1, containerd/containerd#13529); containerd verifies the digest.
    let pause = m.image("pause").map(|i| i.digest_ref()).unwrap_or_default();
    let mut files = vec![
        file(
            MARKER,
            render("marker", serde_json::json!({}))?,
            0o644,
            &[],
            "os-prep",
        ),
        file(
            paths::SYSCTL_CONF,
            render("sysctl.conf", serde_json::json!({}))?,
            0o644,
            &[Followup::Sysctl],
            "os-prep",
        ),
        file(
            paths::MODULES_CONF,
            render("modules-load.conf", serde_json::json!({}))?,
            0o644,
            &[Followup::Modules],
            "os-prep",
        ),
        file(
            paths::CONTAINERD_CONFIG,
            render(
                "containerd-config.toml",
                serde_json::json!({"containerd_major": major(&containerd.version), "pause_image": pause}),
            )?,
            0o644,
            &[],
            "runtime",
        )
        .restarting(),
        file(
            paths::CONTAINERD_UNIT,
            render("containerd.service", serde_json::json!({}))?,
            0o644,
            &[Followup::DaemonReload],
            "runtime",
        )
        .restarting(),
        file(
            paths::CRICTL_CONFIG,
            render("crictl.yaml", serde_json::json!({}))?,
            0o644,
            &[],
            "runtime",
        ),
    ];
    for (registry, endpoints) in &c.artifacts.node_registry_mirrors() {
        if !is_registry_key(registry) {
            return Err(DesiredError::RegistryKey(registry.clone()));
        }
        for e in endpoints {
            let why = if e.starts_with("https://") {
                continue;
            } else if e.starts_with("http://") {
                if c.artifacts.allow_http_registry_mirrors {
                    continue;
                }
                "plain http, which containerd would pull over without TLS; set spec.artifacts.allowHttpRegistryMirrors: true to allow it"
            } else {
                "not an http(s) URL"
            };
            return Err(DesiredError::MirrorEndpoint {
                registry: registry.clone(),
                endpoint: without_userinfo(e),
                why,
            });
        }
        // `_default` applies to every registry without its own directory: no upstream server
        let server = match registry.as_str() {
            "_default" => String::new(),
            "docker.io" => "https://registry-1.docker.io".to_string(),
            r => format!("https://{r}"),
        };
        let site = c
            .artifacts
            .site_registry
            .as_ref()
            .filter(|r| r.ca_pem.is_some() && endpoints.contains(&r.url));
        let ca_path = format!(
            "{}/{registry}/site-registry-ca.crt",
            paths::CONTAINERD_CERTS_DIR
        );
        if let Some(pem) = site.and_then(|r| r.ca_pem.as_ref()) {
            files.push(file(&ca_path, pem.clone(), 0o644, &[], "runtime").restarting());
        }
        let ctx = serde_json::to_value(Mirror {
            registry,
            server,
            endpoints,
            ca_endpoint: site.map(|r| r.url.as_str()).unwrap_or_default(),
            ca_path,
        })
        .unwrap_or_default();
        files.push(
            file(
                &format!("{}/{registry}/hosts.toml", paths::CONTAINERD_CERTS_DIR),
                render("containerd-hosts.toml", ctx)?,
                0o644,
                &[],
                "runtime",
            )
            .restarting(),
        );
    }
    files.push(file(
        paths::KUBELET_UNIT,
        render("kubelet.service", serde_json::json!({}))?,
        0o644,
        &[Followup::DaemonReload],
        "kube-binaries",
    ));
    files.push(file(
        paths::KUBELET_DROPIN,
        render("kubelet-kubeadm.conf", serde_json::json!({}))?,
        0o644,
        &[Followup::DaemonReload],
        "kube-binaries",
    ));
    let mut packages = vec!["iptables"];
    let mut hosts_block = None;
    if ep.local {
        hosts_block = Some(render(
            "hosts-block",
            serde_json::json!({"endpoint": ep.host, "endpoint_ip": endpoint_ip}),
        )?);
        if host.role == Role::Worker {
            packages.push("haproxy");
            let backends: Vec<Backend> = c
                .control_planes()
                .map(|h| Backend {
                    name: &h.name,
                    address: ips.ip(h),
                })
                .collect();
            files.push(file(
                paths::HAPROXY_CONFIG,
                render(
                    "haproxy.cfg",
                    serde_json::json!({"endpoint": ep.host, "port": ep.port, "control_planes": backends}),
                )?,
                0o644,
                &[Followup::ReloadHaproxy],
                "api-endpoint",
            ));
        }
    }
    let mut installs = Vec::new();
    for comp in crate::release::COMPONENTS {
        installs.push(artifact(m, comp, arch)?.clone());
    }
    Ok(HostDesired {
        files,
        installs,
        packages,
        hosts_block,
    })
}

/// Every path kubeforge manages on a host, for the facts probe to hash: the files
/// [`for_host`] renders for each host of the cluster, on every arch of the release (derived,
/// never listed by hand), and the manifests the cluster-wide steps keep on the API host.
pub fn managed_paths(c: &Cluster, m: &ReleaseManifest) -> Vec<String> {
    let mut p: Vec<String> = vec![
        crate::paths::CLOUD_PROVIDER_MANIFEST.to_string(),
        CNI_MANIFEST.to_string(),
    ];
    let ips = NodeIps::from_inventory(c);
    for h in &c.hosts {
        for arch in m.arches() {
            // a host that cannot be rendered is refused by the planner, with why
            if let Ok(want) = for_host(c, m, h, &arch, "127.0.0.1", &ips) {
                for f in want.files {
                    if !p.contains(&f.path) {
                        p.push(f.path);
                    }
                }
            }
        }
    }
    p
}

/// How a binary is installed from its artifact: a POSIX shell fragment run as root under
/// `set -e`, with the uploaded file at `$F`. Files are put in place by rename, so a running
/// binary is replaced, never written over.
pub fn install_script(a: &Artifact) -> String {
    let dest = paths::install_dir(&a.component);
    let glob = match a.component.as_str() {
        "containerd" => "bin/*",
        "cni-plugins" => "*",
        "crictl" => "crictl",
        // get.helm.sh's layout: linux-<arch>/helm
        "helm" => "linux-*/helm",
        c => {
            // a single binary
            return format!(
                "install -m 0755 \"$F\" {dest}/.{c}.kubeforge && mv -f {dest}/.{c}.kubeforge {dest}/{c}"
            );
        }
    };
    format!(
        "d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT\ntar -C \"$d\" -xzf \"$F\"\nmkdir -p {dest}\nfor f in \"$d\"/{glob}; do [ -f \"$f\" ] || continue; n=${{f##*/}}; install -m 0755 \"$f\" \"{dest}/.$n.kubeforge\"; mv -f \"{dest}/.$n.kubeforge\" \"{dest}/$n\"; done"
    )
}

/// The marker line recorded after an install: `<sha256> <version>`.
pub fn marker_line(a: &Artifact) -> String {
    format!("{} {}", a.sha256, a.version)
}

/// Labels for kubelet's --node-labels: `k=v,k2=v2`.
pub fn node_labels(h: &Host) -> Option<String> {
    (!h.labels.is_empty()).then(|| {
        h.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

pub fn parse_taint(t: &str) -> Taint {
    let (kv, effect) = t.rsplit_once(':').unwrap_or((t, "NoSchedule"));
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    Taint {
        key: key.into(),
        value: value.into(),
        effect: effect.into(),
    }
}

/// The taints kubeadm registers a node with: None keeps kubeadm's default (the control-plane
/// taint on control planes, none on workers).
pub fn registration_taints(c: &Cluster, h: &Host) -> Option<Vec<Taint>> {
    let (_, workers) = c.role_counts();
    let mut taints: Vec<Taint> = h.taints.iter().map(|t| parse_taint(t)).collect();
    match h.role {
        Role::ControlPlane if workers == 0 => Some(taints), // a cluster without workers schedules on its control planes
        Role::ControlPlane if taints.is_empty() => None,
        Role::ControlPlane => {
            taints.insert(
                0,
                Taint {
                    key: "node-role.kubernetes.io/control-plane".into(),
                    value: String::new(),
                    effect: "NoSchedule".into(),
                },
            );
            Some(taints)
        }
        Role::Worker if taints.is_empty() => None,
        Role::Worker => Some(taints),
    }
}

/// kubeadm's config API for a release: v1beta4 from 1.31, v1beta3 before.
pub fn kubeadm_api(v: &semver::Version) -> &'static str {
    if (v.major, v.minor) >= (1, 31) {
        "v1beta4"
    } else {
        "v1beta3"
    }
}

#[derive(Serialize)]
struct Arg {
    name: &'static str,
    value: String,
}

/// The context kubeadm's init and join templates share (no secrets).
pub fn kubeadm_context(c: &Cluster, h: &Host, ips: &NodeIps) -> serde_json::Value {
    let ep = api_endpoint(c);
    let mut args = vec![Arg {
        name: "node-ip",
        value: ips.ip(h).to_string(),
    }];
    if let Some(l) = node_labels(h) {
        args.push(Arg {
            name: "node-labels",
            value: l,
        });
    }
    if cloud_provider_external(c) {
        args.push(Arg {
            name: "cloud-provider",
            value: "external".into(),
        });
    }
    serde_json::json!({
        "api": kubeadm_api(&c.version),
        "cluster": c.name,
        "version": c.version.to_string(),
        "node_name": h.name,
        "node_ip": ips.ip(h),
        "endpoint": ep.host,
        "port": ep.port,
        "pod_subnet": c.pod_subnet.to_string(),
        "service_subnet": c.service_subnet.to_string(),
        "dns_domain": c.cluster_domain,
        "cert_sans": cert_sans(c, ips),
        "kubelet_args": args,
        "taints": registration_taints(c, h),
    })
}

/// The flannel manifest for the cluster.
pub fn flannel_manifest(c: &Cluster, m: &ReleaseManifest) -> Result<String, DesiredError> {
    let f = m
        .cni
        .get("flannel")
        .ok_or_else(|| DesiredError::NoFlannel(m.kubernetes.clone()))?;
    let img = |k: &str| {
        f.images
            .get(k)
            .map(|t| {
                crate::release::Image::parse(t)
                    .expect("image references are checked at load")
                    .reference()
            })
            .ok_or_else(|| DesiredError::NoFlannel(m.kubernetes.clone()))
    };
    Ok(templates::render(
        "flannel.yaml",
        &serde_json::json!({
            "cluster": c.name,
            "version": c.version.to_string(),
            "pod_subnet": c.pod_subnet.to_string(),
            "flannel_version": f.version,
            "flannel_image": img("flannel")?,
            "cni_plugin_image": img("flannel-cni-plugin")?,
        }),
    )?)
}

/// Whether the kubelets defer to an external cloud-controller-manager (OpenStack with
/// `cloudProvider`, the default there).
pub fn cloud_provider_external(c: &Cluster) -> bool {
    c.openstack
        .as_ref()
        .is_some_and(|o| o.cloud_provider.unwrap_or(true))
}

#[cfg(test)]
mod node_ip_tests {
    use super::*;
    use crate::inventory::load_str;
    use std::path::Path;

    const BARE: &str = include_str!("../tests/fixtures/facts/harness-bare.txt");

    fn cluster(hosts: &str) -> Cluster {
        let text = format!(
            "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: t}}\nspec:\n  kubernetes: {{version: v1.33.5}}\n  hosts:\n{hosts}"
        );
        match load_str(Path::new("t.yaml"), &text, Path::new("/inv"), &|_| None) {
            Ok(l) => l.cluster,
            Err(e) => panic!("{}", e.render(false)),
        }
    }

    fn facts(ssh_local: Option<&str>, addresses: &[(&str, &str)]) -> Facts {
        let mut f = crate::facts::parse(BARE, 0.0, 0.0).unwrap();
        f.ssh_local_address = ssh_local.map(|a| a.parse().unwrap());
        f.addresses = addresses
            .iter()
            .map(|(i, a)| (i.to_string(), a.parse().unwrap()))
            .collect();
        f
    }

    #[test]
    fn cert_sans_are_lower_case_as_kubeadm_requires() {
        let c = cluster(
            "    - {name: cp1, address: CP1.Example.COM, privateAddress: 10.0.0.11, role: control-plane}\n",
        );
        let sans = cert_sans(&c, &NodeIps::from_inventory(&c));
        assert!(sans.contains(&"cp1.example.com".to_string()), "{sans:?}");
        assert!(
            sans.iter().all(|s| *s == s.to_ascii_lowercase()),
            "{sans:?}"
        );
    }

    #[test]
    fn node_ip_comes_from_facts_for_a_dns_named_host() {
        let c = cluster(
            "    - {name: cp1, address: cp1.example.com, role: control-plane}\n    - {name: w1, address: w1.example.com, privateAddress: 10.0.0.21, role: worker}\n    - {name: w2, address: 10.0.0.22, role: worker}\n",
        );
        let f = facts(
            Some("10.0.0.11"),
            &[("eth1", "192.0.2.5"), ("eth0", "10.0.0.11")],
        );
        // a name: what the host reports, never the name
        let cp1 = node_ip(c.host("cp1").unwrap(), Some(&f)).unwrap();
        assert_eq!(
            (cp1.ip.as_str(), cp1.source, cp1.interface.as_deref()),
            ("10.0.0.11", NodeIpSource::SshConnection, Some("eth0"))
        );
        assert_eq!(cp1.describe(), "from the SSH connection (eth0)");
        // privateAddress wins over the facts
        let w1 = node_ip(c.host("w1").unwrap(), Some(&f)).unwrap();
        assert_eq!(
            (w1.ip.as_str(), w1.source),
            ("10.0.0.21", NodeIpSource::PrivateAddress)
        );
        // an IP address is used as it is
        let w2 = node_ip(c.host("w2").unwrap(), Some(&f)).unwrap();
        assert_eq!(
            (w2.ip.as_str(), w2.source),
            ("10.0.0.22", NodeIpSource::Address)
        );
        // the inventory is not changed: the name stays the SSH address
        assert_eq!(c.host("cp1").unwrap().ssh.address, "cp1.example.com");

        // every place kubeadm needs an IP gets the node IP
        let mut all = BTreeMap::new();
        for h in &c.hosts {
            all.insert(h.name.clone(), f.clone());
        }
        let (ips, errors) = NodeIps::resolve(&c, &all);
        assert!(errors.is_empty(), "{errors:?}");
        let ctx = kubeadm_context(&c, c.host("cp1").unwrap(), &ips);
        assert_eq!(ctx["node_ip"], "10.0.0.11");
        assert_eq!(ctx["kubelet_args"][0]["value"], "10.0.0.11");
        let sans = cert_sans(&c, &ips);
        assert!(
            sans.contains(&"10.0.0.11".to_string())
                && sans.contains(&"cp1.example.com".to_string()),
            "{sans:?}"
        );
    }

    #[test]
    fn node_ip_falls_back_to_the_only_address_and_else_refuses() {
        let c = cluster("    - {name: cp1, address: cp1.example.com, role: control-plane}\n");
        let h = c.host("cp1").unwrap();
        // a loopback SSH address (a local port forward): the host's only global IPv4 address
        let f = facts(
            Some("127.0.0.1"),
            &[("eth0", "10.0.0.11"), ("eth0", "fd00::11")],
        );
        let ip = node_ip(h, Some(&f)).unwrap();
        assert_eq!(
            (ip.ip.as_str(), ip.source),
            ("10.0.0.11", NodeIpSource::OnlyAddress)
        );
        // an SSH address the host does not hold is not trusted either
        let f = facts(Some("10.9.9.9"), &[("eth0", "10.0.0.11")]);
        assert_eq!(
            node_ip(h, Some(&f)).unwrap().source,
            NodeIpSource::OnlyAddress
        );
        // two candidates and no SSH address: refused, with a hint
        let f = facts(None, &[("eth0", "10.0.0.11"), ("eth1", "192.0.2.5")]);
        let e = node_ip(h, Some(&f)).unwrap_err();
        assert!(
            e.contains("cp1: address cp1.example.com is a name")
                && e.contains("10.0.0.11 (eth0), 192.0.2.5 (eth1)")
                && e.contains("set privateAddress"),
            "{e}"
        );
        // no facts at all
        assert!(
            node_ip(h, None)
                .unwrap_err()
                .contains("facts were not read")
        );
        // an IPv6 SSH address is not used (IPv4 node IPs only)
        let f = facts(Some("fd00::11"), &[("eth0", "fd00::11")]);
        assert!(node_ip(h, Some(&f)).is_err());
    }
}
