//! Semantic checks of a parsed inventory. Every rule reports at the field it is about, and all
//! problems are reported at once, errors and warnings alike.

use super::diag::Diagnostic;
use super::locate::LocationIndex;
use super::types::*;
use crate::release::{self, Catalog};
use crate::util::{parse_duration, suggest};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

const ADDR_HINT: &str =
    "write an IPv4/IPv6 address or a DNS name, without a port (ports have fields of their own)";

pub const ROLES: &[&str] = &["control-plane", "worker"];
pub const CNIS: &[&str] = &["flannel", "none", "manifest"];
pub const LOAD_BALANCERS: &[&str] = &["local", "external", "octavia"];

struct Checker<'a> {
    ix: &'a LocationIndex,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>, hint: impl Into<String>) {
        let hint: String = hint.into();
        let mut d = Diagnostic::error(path, message).at(self.ix.value_pos(path));
        if !hint.is_empty() {
            d = d.hint(hint);
        }
        self.diags.push(d);
    }

    fn warning(&mut self, path: &str, message: impl Into<String>, hint: impl Into<String>) {
        let hint: String = hint.into();
        let mut d = Diagnostic::warning(path, message).at(self.ix.value_pos(path));
        if !hint.is_empty() {
            d = d.hint(hint);
        }
        self.diags.push(d);
    }

    /// A value that must be one of `allowed`; suggests the nearest one.
    fn one_of(&mut self, path: &str, what: &str, value: &str, allowed: &[&str]) -> bool {
        if allowed.contains(&value) {
            return true;
        }
        let hint = match suggest(value, allowed) {
            Some(s) => format!("did you mean `{s}`? Allowed: {}", allowed.join(", ")),
            None => format!("allowed: {}", allowed.join(", ")),
        };
        self.error(path, format!("unknown {what} `{value}`"), hint);
        false
    }
}

/// DNS-1123 label: what Kubernetes accepts as a cluster or host name component.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters (node names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// An address to reach a host by: an IP address or a DNS name (upper case allowed).
pub fn is_host_address(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok() || is_dns_subdomain(&s.to_ascii_lowercase())
}

/// Label keys kubelet may set on its own Node (`--node-labels`); other keys in the
/// kubernetes.io and k8s.io namespaces are refused by the NodeRestriction admission plugin.
const KUBELET_ALLOWED_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.kubernetes.io/zone",
    "failure-domain.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
];

fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if !name_ok {
        return Some(format!(
            "label key `{key}` is not valid: the name part must be 1-63 characters of [A-Za-z0-9-_.], starting and ending with a letter or digit"
        ));
    }
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Some(format!(
                "label key `{key}`: prefix `{p}` must be a lowercase DNS subdomain"
            ));
        }
        let restricted = p == "kubernetes.io"
            || p.ends_with(".kubernetes.io")
            || p == "k8s.io"
            || p.ends_with(".k8s.io");
        let allowed = KUBELET_ALLOWED_LABELS.contains(&key)
            || p == "kubelet.kubernetes.io"
            || p.ends_with(".kubelet.kubernetes.io")
            || p == "node.kubernetes.io"
            || p.ends_with(".node.kubernetes.io");
        if restricted && !allowed {
            return Some(format!(
                "label `{key}` is in a namespace the kubelet may not set on its own node (NodeRestriction)"
            ));
        }
    }
    None
}

fn label_value_ok(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

pub const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn taint_problem(t: &str) -> Option<String> {
    let Some((kv, effect)) = t.rsplit_once(':') else {
        return Some(format!(
            "taint `{t}` has no effect; write key[=value]:Effect"
        ));
    };
    if !TAINT_EFFECTS.contains(&effect) {
        return Some(format!(
            "taint `{t}`: unknown effect `{effect}` (use {})",
            TAINT_EFFECTS.join(", ")
        ));
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    if key.is_empty() || label_key_syntax_only(key).is_some() || !label_value_ok(value) {
        return Some(format!(
            "taint `{t}`: key or value is not a valid label key/value"
        ));
    }
    None
}

fn label_key_syntax_only(key: &str) -> Option<String> {
    label_key_problem(key).filter(|m| !m.contains("NodeRestriction"))
}

/// Runs every rule. `catalog` holds the releases kubeforge can install.
pub fn validate(inv: &Inventory, ix: &LocationIndex, catalog: &Catalog) -> Vec<Diagnostic> {
    let mut c = Checker {
        ix,
        diags: Vec::new(),
    };
    if inv.api_version != API_VERSION {
        c.error(
            "apiVersion",
            format!("unsupported apiVersion `{}`", inv.api_version),
            format!("use `apiVersion: {API_VERSION}`"),
        );
    }
    if inv.kind != KIND {
        c.error(
            "kind",
            format!("unsupported kind `{}`", inv.kind),
            format!("use `kind: {KIND}`"),
        );
    }
    if !is_dns_label(&inv.metadata.name) {
        c.error(
            "metadata.name",
            format!("`{}` is not a valid cluster name", inv.metadata.name),
            "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
        );
    }
    let spec = &inv.spec;
    check_kubernetes(&mut c, spec, catalog);
    check_ssh(&mut c, &spec.ssh);
    check_hosts(&mut c, inv);
    check_control_plane(&mut c, spec);
    check_openstack(&mut c, inv);
    check_artifacts(&mut c, &spec.artifacts);
    check_options(&mut c, &spec.options);
    let mut diags = c.diags;
    diags.sort_by_key(|d| (d.severity, d.pos.map(|p| (p.line, p.column))));
    diags
}

fn check_kubernetes(c: &mut Checker, spec: &Spec, catalog: &Catalog) {
    let k = &spec.kubernetes;
    let supported: Vec<String> = catalog.versions().iter().map(|v| v.to_string()).collect();
    match release::parse_version(&k.version) {
        None => c.error(
            "spec.kubernetes.version",
            format!("malformed Kubernetes version `{}`", k.version),
            format!(
                "write a full release as MAJOR.MINOR.PATCH, e.g. `{}`; supported: {}",
                supported.last().map(String::as_str).unwrap_or("1.33.5"),
                supported.join(", ")
            ),
        ),
        Some(v) if catalog.get(&v).is_none() => {
            let same_minor: Vec<&String> = supported
                .iter()
                .filter(|s| s.starts_with(&format!("{}.{}.", v.major, v.minor)))
                .collect();
            let hint = match same_minor.last() {
                Some(s) => format!(
                    "did you mean `{s}`? Supported: {}; to install another release, add its manifest with spec.artifacts.manifest",
                    supported.join(", ")
                ),
                None => format!(
                    "supported: {}; to install another release, add its manifest with spec.artifacts.manifest",
                    supported.join(", ")
                ),
            };
            c.error(
                "spec.kubernetes.version",
                format!("Kubernetes {v} is not a supported release"),
                hint,
            );
        }
        Some(_) => {}
    }
    let pod = parse_cidr(c, "spec.kubernetes.podSubnet", &k.pod_subnet);
    let svc = parse_cidr(c, "spec.kubernetes.serviceSubnet", &k.service_subnet);
    if let (Some(p), Some(s)) = (pod, svc)
        && nets_overlap(&p, &s)
    {
        let at = if c.ix.contains("spec.kubernetes.serviceSubnet") {
            "spec.kubernetes.serviceSubnet"
        } else {
            "spec.kubernetes.podSubnet"
        };
        c.error(
            at,
            format!("service subnet {s} overlaps the pod subnet {p}"),
            "pick disjoint ranges, e.g. podSubnet 10.244.0.0/16 and serviceSubnet 10.96.0.0/12",
        );
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        for (field, addr) in [
            ("address", Some(&h.address)),
            ("privateAddress", h.private_address.as_ref()),
        ] {
            let Some(ip) = addr.and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            for (name, net) in [("podSubnet", pod), ("serviceSubnet", svc)] {
                if net.is_some_and(|n| n.contains(&ip)) {
                    c.error(
                        &format!("spec.kubernetes.{name}"),
                        format!(
                            "{name} {} contains the address {ip} of host `{}` (spec.hosts[{i}].{field})",
                            net.unwrap(),
                            h.name
                        ),
                        "cluster ranges must not overlap the hosts' network; choose another range",
                    );
                }
            }
        }
    }
    let domain = k.cluster_domain.trim_end_matches('.');
    if !is_dns_subdomain(domain) {
        c.error(
            "spec.kubernetes.clusterDomain",
            format!("`{}` is not a valid DNS domain", k.cluster_domain),
            "the default is cluster.local",
        );
    }
    match k.cni.as_str() {
        "calico" | "cilium" | "weave" | "canal" | "kube-router" | "antrea" => c.error(
            "spec.kubernetes.cni",
            format!("CNI `{}` is not built in", k.cni),
            "built in: flannel, none; to install another CNI, set `cni: manifest` and give its manifest in cniManifest: {url or path, sha256}",
        ),
        other => {
            c.one_of("spec.kubernetes.cni", "CNI", other, CNIS);
        }
    }
    match (&k.cni_manifest, k.cni.as_str()) {
        (None, "manifest") => c.error(
            "spec.kubernetes.cni",
            "`cni: manifest` needs spec.kubernetes.cniManifest",
            "add cniManifest: {url: https://..., sha256: <64 hex digits>} (or path: instead of url)",
        ),
        (Some(_), cni) if cni != "manifest" => c.error(
            "spec.kubernetes.cniManifest",
            format!("cniManifest is only used with `cni: manifest` (cni is `{cni}`)"),
            "set `cni: manifest`, or remove cniManifest",
        ),
        (Some(m), _) => {
            let p = "spec.kubernetes.cniManifest";
            match (&m.url, &m.path) {
                (Some(_), Some(_)) | (None, None) => {
                    c.error(p, "give exactly one of url and path", "url: https://... or path: ./cni.yaml")
                }
                (Some(u), None) if !u.starts_with("https://") && !u.starts_with("http://") => c.error(
                    &format!("{p}.url"),
                    format!("`{u}` is not an http(s) URL"),
                    "use an https:// URL, or path: for a local file",
                ),
                _ => {}
            }
            match &m.sha256 {
                None => c.error(
                    p,
                    "cniManifest needs its sha256",
                    "kubeforge applies only pinned manifests: add sha256: <output of sha256sum>",
                ),
                Some(s) if !release::is_sha256_hex(s) => c.error(
                    &format!("{p}.sha256"),
                    "sha256 must be 64 lowercase hex digits",
                    "use the output of sha256sum",
                ),
                _ => {}
            }
        }
        _ => {}
    }
}

fn parse_cidr(c: &mut Checker, path: &str, value: &str) -> Option<IpNet> {
    match value.parse::<IpNet>() {
        Ok(net) if net.trunc() != net => {
            c.error(
                path,
                format!("{value} has host bits set"),
                format!("did you mean {}?", net.trunc()),
            );
            None
        }
        Ok(net) => Some(net),
        Err(_) => {
            c.error(
                path,
                format!("`{value}` is not a CIDR range"),
                "write a network as ADDRESS/PREFIX, e.g. 10.244.0.0/16",
            );
            None
        }
    }
}

fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn check_bastion(c: &mut Checker, path: &str, b: &Bastion) {
    match &b.address {
        None => c.error(
            path,
            "bastion has no address",
            "add address: the host or IP of the jump host, e.g. bastion: {address: 203.0.113.5, user: jump}",
        ),
        Some(a) if !is_host_address(a) => c.error(
            &format!("{path}.address"),
            format!("`{a}` is not an IP address or host name"),
            ADDR_HINT,
        ),
        _ => {}
    }
    if b.port == Some(0) {
        c.error(
            &format!("{path}.port"),
            "port 0 is not valid",
            "the SSH port is usually 22",
        );
    }
    if b.user.as_deref() == Some("") {
        c.error(
            &format!("{path}.user"),
            "user is empty",
            "remove it to use the default",
        );
    }
}

fn check_ssh(c: &mut Checker, ssh: &Ssh) {
    if ssh.port == Some(0) {
        c.error(
            "spec.ssh.port",
            "port 0 is not valid",
            "the SSH port is usually 22",
        );
    }
    if ssh.user.as_deref() == Some("") {
        c.error(
            "spec.ssh.user",
            "user is empty",
            "remove it to use root or ~/.ssh/config's User",
        );
    }
    if let Some(b) = &ssh.bastion {
        check_bastion(c, "spec.ssh.bastion", b);
    }
}

fn check_hosts(c: &mut Checker, inv: &Inventory) {
    let spec = &inv.spec;
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut addrs: BTreeMap<String, (usize, &str)> = BTreeMap::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        let p = format!("spec.hosts[{i}]");
        if !is_dns_subdomain(&h.name) {
            let lower = h.name.to_ascii_lowercase();
            let hint = if is_dns_subdomain(&lower) {
                format!("node names must be lowercase: `{lower}`")
            } else {
                "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit".to_string()
            };
            c.error(
                &format!("{p}.name"),
                format!("`{}` is not a valid node name", h.name),
                hint,
            );
        }
        match names.get(h.name.as_str()) {
            Some(first) => c.error(
                &format!("{p}.name"),
                format!(
                    "duplicate host name `{}` (also spec.hosts[{first}])",
                    h.name
                ),
                "every host needs a name of its own: it becomes the node name",
            ),
            None => {
                names.insert(&h.name, i);
            }
        }
        for (field, addr) in [
            ("address", Some(&h.address)),
            ("privateAddress", h.private_address.as_ref()),
        ] {
            let Some(addr) = addr else { continue };
            let fp = format!("{p}.{field}");
            if !is_host_address(addr) {
                c.error(
                    &fp,
                    format!("`{addr}` is not an IP address or host name"),
                    ADDR_HINT,
                );
                continue;
            }
            let key = addr.to_ascii_lowercase();
            match addrs.get(&key) {
                Some((j, other)) if *j != i => c.error(
                    &fp,
                    format!("duplicate address {addr} (also used by spec.hosts[{j}] `{other}`)"),
                    "every host needs an address of its own",
                ),
                Some(_) => {}
                None => {
                    addrs.insert(key, (i, &h.name));
                }
            }
        }
        if h.private_address.is_some()
            && h.private_address
                .as_deref()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_none()
        {
            c.error(
                &format!("{p}.privateAddress"),
                "privateAddress must be an IP address",
                "it becomes the node's InternalIP (kubelet --node-ip)",
            );
        }
        let role = h.role.as_str();
        if !ROLES.contains(&role) {
            let alias = match role {
                "master" | "controlplane" | "control_plane" | "controller" | "cp" | "server" => {
                    Some("control-plane")
                }
                "node" | "agent" | "workers" | "minion" => Some("worker"),
                _ => None,
            };
            let hint = match alias.or_else(|| suggest(role, ROLES)) {
                Some(s) => format!("did you mean `{s}`? Allowed: {}", ROLES.join(", ")),
                None => format!("allowed: {}", ROLES.join(", ")),
            };
            c.error(&format!("{p}.role"), format!("unknown role `{role}`"), hint);
        }
        if h.port == Some(0) {
            c.error(
                &format!("{p}.port"),
                "port 0 is not valid",
                "the SSH port is usually 22",
            );
        }
        if h.user.as_deref() == Some("") {
            c.error(
                &format!("{p}.user"),
                "user is empty",
                "remove it to use spec.ssh.user",
            );
        }
        if let Some(b) = &h.bastion {
            check_bastion(c, &format!("{p}.bastion"), b);
        }
        for (k, v) in &h.labels {
            let lp = super::locate::join_key(&format!("{p}.labels"), k);
            if let Some(problem) = label_key_problem(k) {
                let hint = if problem.contains("NodeRestriction") {
                    "kubelet refuses it at registration; use a label outside kubernetes.io (e.g. example.com/role), or set it later with kubectl label"
                } else {
                    "label keys look like [prefix/]name, e.g. topology.kubernetes.io/zone"
                };
                c.error(&lp, problem, hint);
            } else if !label_value_ok(v) {
                c.error(
                    &lp,
                    format!("label value `{v}` is not valid"),
                    "values are at most 63 characters of [A-Za-z0-9-_.], starting and ending with a letter or digit",
                );
            }
        }
        for (j, t) in h.taints.iter().enumerate() {
            if let Some(problem) = taint_problem(t) {
                c.error(
                    &format!("{p}.taints[{j}]"),
                    problem,
                    "e.g. dedicated=gpu:NoSchedule",
                );
            }
        }
    }
    let listed_cp = spec
        .hosts
        .iter()
        .filter(|h| h.role == "control-plane")
        .count();
    let os_cp = spec
        .openstack
        .as_ref()
        .and_then(|o| o.control_plane.as_ref())
        .map(|p| p.count as usize)
        .unwrap_or(0);
    let os_workers = spec
        .openstack
        .as_ref()
        .and_then(|o| o.workers.as_ref())
        .map(|p| p.count as usize)
        .unwrap_or(0);
    let cps = listed_cp + os_cp;
    let total = spec.hosts.len() + os_cp + os_workers;
    if cps == 0 {
        let path = if spec.hosts.is_empty() {
            "spec"
        } else {
            "spec.hosts"
        };
        c.error(
            path,
            "the cluster has no control plane",
            "give at least one host `role: control-plane` (three for high availability), or set spec.openstack.controlPlane.count",
        );
    } else if cps.is_multiple_of(2) {
        c.warning(
            "spec.hosts",
            format!(
                "{cps} control planes: an even number gives etcd no more fault tolerance than {}",
                cps - 1
            ),
            format!(
                "use an odd number: {} tolerates the loss of {}",
                cps + 1,
                cps / 2
            ),
        );
    } else if cps == 1 && total > 1 {
        c.warning(
            "spec.hosts",
            "a single control plane: the cluster cannot survive its loss",
            "use three control planes for high availability",
        );
    }
}

fn check_control_plane(c: &mut Checker, spec: &Spec) {
    let cp = &spec.control_plane;
    let lb = cp.load_balancer.as_deref().unwrap_or("local");
    if lb == "kube-vip" {
        c.error(
            "spec.controlPlane.loadBalancer",
            "loadBalancer `kube-vip` is not supported yet",
            "use `local` (a node-local proxy on every node, no extra infrastructure) or `external` with an endpoint",
        );
    } else if c.one_of(
        "spec.controlPlane.loadBalancer",
        "load balancer",
        lb,
        LOAD_BALANCERS,
    ) {
        if lb == "external" && cp.endpoint.is_none() {
            c.error(
                "spec.controlPlane.loadBalancer",
                "`loadBalancer: external` needs spec.controlPlane.endpoint",
                "add endpoint: {host: <your load balancer's address>, port: 6443}",
            );
        }
        if lb == "octavia" && spec.openstack.is_none() {
            c.error(
                "spec.controlPlane.loadBalancer",
                "`loadBalancer: octavia` needs spec.openstack",
                "Octavia is OpenStack's load balancer; on bare metal use `local` or `external`",
            );
        }
    }
    if let Some(ep) = &cp.endpoint {
        if !is_host_address(&ep.host) {
            c.error(
                "spec.controlPlane.endpoint.host",
                format!("`{}` is not an IP address or host name", ep.host),
                ADDR_HINT,
            );
        }
        if ep.port == 0 {
            c.error(
                "spec.controlPlane.endpoint.port",
                "port 0 is not valid",
                "the API port is usually 6443",
            );
        }
    }
    for (i, san) in cp.cert_sans.iter().enumerate() {
        let name = san.strip_prefix("*.").unwrap_or(san);
        if !is_host_address(name) {
            c.error(
                &format!("spec.controlPlane.certSANs[{i}]"),
                format!("`{san}` is not an IP address or DNS name"),
                "certSANs are IP addresses or DNS names (a leading *. is allowed)",
            );
        }
    }
}

fn check_openstack(c: &mut Checker, inv: &Inventory) {
    let Some(os) = &inv.spec.openstack else {
        return;
    };
    let p = "spec.openstack";
    if os.image.trim().is_empty() {
        c.error(
            &format!("{p}.image"),
            "image is empty",
            "name a Glance image, e.g. ubuntu-24.04",
        );
    }
    for (field, pool) in [
        ("controlPlane", &os.control_plane),
        ("workers", &os.workers),
    ] {
        if let Some(pool) = pool
            && pool.flavor.trim().is_empty()
        {
            c.error(
                &format!("{p}.{field}.flavor"),
                "flavor is empty",
                "name a Nova flavor, e.g. m1.large",
            );
        }
    }
    if os.control_plane.is_none() && os.workers.is_none() {
        c.error(
            p,
            "spec.openstack creates no servers",
            "add controlPlane: {count: 3, flavor: ...} and/or workers: {count: N, flavor: ...}",
        );
    }
    let net = &os.network;
    if net.name.is_some() && net.cidr.is_some() {
        c.error(
            &format!("{p}.network"),
            "give either name (an existing network) or cidr (a network kubeforge creates), not both",
            "remove cidr to use the existing network, or remove name to let kubeforge create one",
        );
    }
    if let Some(cidr) = &net.cidr {
        parse_cidr(c, &format!("{p}.network.cidr"), cidr);
    }
    for (i, ns) in net.dns_nameservers.iter().enumerate() {
        if ns.parse::<IpAddr>().is_err() {
            c.error(
                &format!("{p}.network.dnsNameservers[{i}]"),
                format!("`{ns}` is not an IP address"),
                "nameservers are IP addresses, e.g. 1.1.1.1",
            );
        }
    }
    // conflicts with listed hosts
    let os_cp = os.control_plane.as_ref().is_some_and(|x| x.count > 0);
    let cluster = &inv.metadata.name;
    for (i, h) in inv.spec.hosts.iter().enumerate() {
        if os_cp && h.role == "control-plane" {
            c.error(
                &format!("spec.hosts[{i}].role"),
                format!(
                    "host `{}` is a control plane, but spec.openstack.controlPlane also creates control planes",
                    h.name
                ),
                "control planes come from one place: list them in spec.hosts or create them with spec.openstack.controlPlane, not both",
            );
        }
        for role in ["control-plane", "worker"] {
            let prefix = format!("{cluster}-{role}-");
            if h.name
                .strip_prefix(&prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                c.error(
                    &format!("spec.hosts[{i}].name"),
                    format!(
                        "host name `{}` is reserved for a server kubeforge creates on OpenStack",
                        h.name
                    ),
                    format!("rename the host; names {prefix}<n> belong to spec.openstack"),
                );
            }
        }
    }
}

fn check_artifacts(c: &mut Checker, a: &Artifacts) {
    if let Some(m) = &a.mirror
        && let Some((scheme, _)) = m.split_once("://")
        && scheme != "http"
        && scheme != "https"
    {
        c.error(
            "spec.artifacts.mirror",
            format!("unsupported mirror scheme `{scheme}`"),
            "use an http(s) URL or a local directory",
        );
    }
    for (registry, endpoints) in &a.registry_mirrors {
        let rp = super::locate::join_key("spec.artifacts.registryMirrors", registry);
        if endpoints.is_empty() {
            c.error(
                &rp,
                format!("no mirror endpoints for {registry}"),
                "list at least one https:// endpoint",
            );
        }
        for (i, e) in endpoints.iter().enumerate() {
            if !e.starts_with("https://") && !e.starts_with("http://") {
                c.error(
                    &format!("{rp}[{i}]"),
                    format!("`{e}` is not an http(s) URL"),
                    "write the mirror endpoint as https://host[:port]",
                );
            }
        }
    }
}

fn check_options(c: &mut Checker, o: &Options) {
    if o.concurrency == 0 {
        c.error(
            "spec.options.concurrency",
            "concurrency must be at least 1",
            "the default is 30",
        );
    }
    if o.worker_disruption_percent == 0 || o.worker_disruption_percent > 100 {
        c.error(
            "spec.options.workerDisruptionPercent",
            format!(
                "{}% is not a percentage from 1 to 100",
                o.worker_disruption_percent
            ),
            "the default is 10 (at least one worker at a time)",
        );
    }
    for (path, value) in [
        ("spec.options.drain.gracePeriod", &o.drain.grace_period),
        ("spec.options.drain.timeout", &o.drain.timeout),
        ("spec.options.commandTimeout", &o.command_timeout),
        ("spec.options.maxClockSkew", &o.max_clock_skew),
    ] {
        match parse_duration(value) {
            None => c.error(
                path,
                format!("`{value}` is not a duration"),
                "write a number with a unit: 30s, 5m, 1h30m",
            ),
            Some(d) if d.is_zero() && !path.ends_with("gracePeriod") => c.error(
                path,
                "must be longer than 0s",
                "write a number with a unit: 30s, 5m, 1h30m",
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_label("cp1"));
        assert!(!is_dns_label("Cp1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(""));
        assert!(is_dns_subdomain("node-1.example.com"));
        assert!(!is_dns_subdomain("node_1"));
        assert!(is_host_address("10.0.0.1"));
        assert!(is_host_address("fd00::1"));
        assert!(is_host_address("Bastion.Example.com"));
        assert!(!is_host_address("10.0.0.1:22"));
    }

    #[test]
    fn label_rules() {
        assert!(label_key_problem("zone").is_none());
        assert!(label_key_problem("topology.kubernetes.io/zone").is_none());
        assert!(
            label_key_problem("node.kubernetes.io/exclude-from-external-load-balancers").is_none()
        );
        assert!(label_key_problem("example.com/gpu").is_none());
        assert!(
            label_key_problem("node-role.kubernetes.io/worker")
                .unwrap()
                .contains("NodeRestriction")
        );
        assert!(label_key_problem("Bad_Prefix/x").is_some());
        assert!(label_key_problem("x/").is_some());
        assert!(label_value_ok(""));
        assert!(!label_value_ok("-x"));
    }

    #[test]
    fn taint_rules() {
        assert!(taint_problem("dedicated=gpu:NoSchedule").is_none());
        assert!(taint_problem("dedicated:NoExecute").is_none());
        assert!(taint_problem("dedicated=gpu").is_some());
        assert!(
            taint_problem("dedicated=gpu:Never")
                .unwrap()
                .contains("unknown effect")
        );
    }

    #[test]
    fn overlap() {
        let a: IpNet = "10.0.0.0/8".parse().unwrap();
        let b: IpNet = "10.96.0.0/12".parse().unwrap();
        let d: IpNet = "192.168.0.0/16".parse().unwrap();
        assert!(nets_overlap(&a, &b) && nets_overlap(&b, &a));
        assert!(!nets_overlap(&a, &d));
    }
}
