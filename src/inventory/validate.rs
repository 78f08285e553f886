//! Semantic checks of a parsed inventory. Every rule reports at the field it is about, and all
//! problems are reported at once, errors and warnings alike.

use super::diag::Diagnostic;
use super::locate::LocationIndex;
use super::types::*;
use crate::release::{self, Catalog};
use crate::util::{parse_duration, suggest};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const ADDR_HINT: &str =
    "write an IPv4 address or a DNS name, without a port (ports have fields of their own)";

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

/// An address to reach a host by: an IPv4 address or a DNS name (upper case allowed) that no
/// resolver reads as a number.
pub fn is_host_address(s: &str) -> bool {
    host_address_problem(s).is_none()
}

/// What is wrong with `s` as the address of a host (SSH address, node IP, bastion, API
/// endpoint): a message and a hint, or None when it is an IPv4 address in dotted-decimal form
/// or a DNS name. Refused: IPv6 (kubeforge is IPv4-only for now), the unspecified address, and
/// names a resolver reads as a number (getaddrinfo/inet_aton accept `10.1`, `167772161`,
/// `0x0a000001` and `010.0.0.1` as IPv4 addresses, unrelated to what the text seems to say).
pub fn host_address_problem(s: &str) -> Option<(String, String)> {
    if let Ok(ip) = s.parse::<Ipv4Addr>() {
        if ip.is_unspecified() {
            return Some((
                format!("`{s}` is the unspecified address, not the address of a host"),
                "write the host's own IPv4 address or DNS name".into(),
            ));
        }
        return None;
    }
    let unbracketed = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    let no_zone = unbracketed.split_once('%').map_or(unbracketed, |(a, _)| a);
    if no_zone.parse::<Ipv6Addr>().is_ok() {
        return Some((
            format!("`{s}` is an IPv6 address: kubeforge supports IPv4 only for now"),
            "IPv6 is not supported yet: use the host's IPv4 address, or a DNS name that resolves to it".into(),
        ));
    }
    if let Some(ip) = legacy_ipv4(s) {
        return Some((
            format!("`{s}` is a legacy IPv4 spelling: resolvers read it as {ip}"),
            if ip.is_unspecified() {
                "0.0.0.0 is the unspecified address: write the host's own IPv4 address".to_string()
            } else {
                format!("write the address as four decimal numbers without leading zeros: {ip}")
            },
        ));
    }
    if is_numeric_looking(s) {
        return Some((
            format!("`{s}` ends in a numeric label: resolvers read such a name as an IPv4 address"),
            "write an IPv4 address as four numbers 0-255 without leading zeros (e.g. 10.0.0.11), or a DNS name whose last label has a letter".into(),
        ));
    }
    if !is_dns_subdomain(&s.to_ascii_lowercase()) {
        return Some((
            format!("`{s}` is not an IP address or host name"),
            ADDR_HINT.into(),
        ));
    }
    None
}

/// Whether the last dot-separated label of `s` is a number as inet_aton or the WHATWG URL
/// host parser reads one: decimal digits, or `0x` followed by hex digits.
pub fn is_numeric_looking(s: &str) -> bool {
    let last = s
        .strip_suffix('.')
        .unwrap_or(s)
        .rsplit('.')
        .next()
        .unwrap_or("");
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || hex
}

/// The address inet_aton makes of `s`: one to four parts, each decimal, octal (leading 0) or
/// hex (0x); the last part fills the remaining bytes. None when it is not such a spelling.
pub fn legacy_ipv4(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::new();
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"))
        {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if p.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        let n = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    if head.iter().any(|&n| n > 255) || *last >= 1u64 << (8 * (4 - head.len())) {
        return None;
    }
    let mut v: u64 = 0;
    for (i, &n) in head.iter().enumerate() {
        v |= n << (8 * (3 - i));
    }
    Some(Ipv4Addr::from((v | last) as u32))
}

/// What kubeadm's ValidateCertSANs refuses, plus what a resolver reads as a number: a SAN is
/// an IP address (IPv4 or IPv6: a certificate may name both), a DNS-1123 subdomain or a
/// wildcard one (`*.example.com`). Upper case is accepted here (the model lowercases it).
pub fn cert_san_problem(san: &str) -> Option<(String, String)> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        if ip.is_unspecified() {
            return Some((
                format!(
                    "`{san}` is the unspecified address, not an address to name in a certificate"
                ),
                "name the addresses clients use to reach the API server".into(),
            ));
        }
        return None;
    }
    let lower = san.to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if is_dns_subdomain(name) && !is_numeric_looking(name) {
        return None;
    }
    if legacy_ipv4(san).is_some() || is_dns_subdomain(name) {
        let (m, h) = host_address_problem(san).unwrap_or_default();
        return Some((m, h));
    }
    Some((
        format!("`{san}` is not an IP address, DNS name or wildcard name"),
        "certSANs are IP addresses, DNS-1123 names (letters, digits, '-' and '.') or wildcard names like *.example.com, as kubeadm requires".into(),
    ))
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
    check_addons(&mut c, &spec.addons);
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

/// A chart name in a repository's index: what `helm create` accepts (lowercase letters, digits,
/// '-', '_', '.'), starting with a letter or digit.
pub fn is_chart_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 250
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

fn check_addons(c: &mut Checker, a: &Addons) {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, ch) in a.charts.iter().enumerate() {
        let p = format!("spec.addons.charts[{i}]");
        // helm's limit for release names is 53 characters
        if !is_dns_label(&ch.name) || ch.name.len() > 53 {
            c.error(
                &format!("{p}.name"),
                format!("`{}` is not a valid release name", ch.name),
                "use 1-53 lowercase letters, digits and '-', starting and ending with a letter or digit",
            );
        }
        let ns = ch.namespace.as_deref().unwrap_or("default");
        if !is_dns_label(ns) {
            c.error(
                &format!("{p}.namespace"),
                format!("`{ns}` is not a valid namespace"),
                "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            );
        }
        let key = (ns.to_string(), ch.name.clone());
        if seen.contains(&key) {
            c.error(
                &format!("{p}.name"),
                format!("release `{}` in namespace `{ns}` is listed twice", ch.name),
                "a release name is unique in its namespace: rename one, or merge their values",
            );
        }
        seen.push(key);
        match &ch.version {
            None => c.error(
                &p,
                format!("chart `{}` needs its version", ch.name),
                "kubeforge installs only pinned charts: add version: 1.2.3 (the chart's version in Chart.yaml)",
            ),
            Some(v) if semver::Version::parse(v).is_err() => c.error(
                &format!("{p}.version"),
                format!("`{v}` is not a chart version (SemVer 2, like 1.2.3)"),
                "write the chart's version as in its Chart.yaml, without a leading v",
            ),
            _ => {}
        }
        match &ch.sha256 {
            None => c.error(
                &p,
                format!("chart `{}` needs the sha256 of its archive", ch.name),
                "kubeforge installs only pinned charts: add sha256: <output of sha256sum on the .tgz>",
            ),
            Some(s) if !release::is_sha256_hex(s) => c.error(
                &format!("{p}.sha256"),
                "sha256 must be 64 lowercase hex digits",
                "use the output of sha256sum on the chart's .tgz",
            ),
            _ => {}
        }
        let source_hint = "a local archive (chart: ./charts/NAME-VERSION.tgz), or a repository and a chart name (repo: https://charts.example/, chart: NAME)";
        match (&ch.chart, &ch.repo) {
            (None, _) => c.error(&p, format!("chart `{}` needs chart:", ch.name), source_hint),
            (Some(x), _) if x.starts_with("oci://") => c.error(
                &format!("{p}.chart"),
                format!("`{x}`: OCI charts (oci://) are not supported yet"),
                source_hint,
            ),
            (Some(x), Some(r)) => {
                if !(r.starts_with("https://") || r.starts_with("http://"))
                    || reqwest::Url::parse(r).is_err()
                {
                    c.error(
                        &format!("{p}.repo"),
                        format!("`{r}` is not an http(s) URL of a chart repository"),
                        "the repository's base URL, the one that serves index.yaml: https://charts.example/",
                    );
                }
                if !is_chart_name(x) {
                    c.error(
                        &format!("{p}.chart"),
                        format!(
                            "with repo:, chart must be a chart name of the repository, not `{x}`"
                        ),
                        format!("give exactly one source: {source_hint}"),
                    );
                }
            }
            (Some(x), None) => {
                if !x.ends_with(".tgz") {
                    c.error(
                        &format!("{p}.chart"),
                        format!("`{x}` is not a local chart archive (.tgz)"),
                        format!("give exactly one source: {source_hint}"),
                    );
                }
            }
        }
        if let Some(v) = &ch.values
            && !v.is_object()
        {
            c.error(
                &format!("{p}.values"),
                "values must be a map of the chart's values",
                "e.g. values: {replicaCount: 2, image: {tag: v1}}",
            );
        }
        for (j, f) in ch.values_files.iter().enumerate() {
            if f.is_empty() || f.starts_with('/') || f.starts_with('~') {
                c.error(
                    &format!("{p}.valuesFiles[{j}]"),
                    format!("`{f}` must be a path relative to the inventory"),
                    "keep values files beside the inventory: valuesFiles: [values/prod.yaml]",
                );
            }
        }
    }
}

fn parse_cidr(c: &mut Checker, path: &str, value: &str) -> Option<IpNet> {
    match value.parse::<IpNet>() {
        Ok(IpNet::V6(_)) => {
            c.error(
                path,
                format!("{value} is an IPv6 range: kubeforge supports IPv4 only for now"),
                "IPv6 is not supported yet: write an IPv4 network, e.g. 10.244.0.0/16",
            );
            None
        }
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
        Some(a) => {
            if let Some((message, hint)) = host_address_problem(a) {
                c.error(&format!("{path}.address"), message, hint);
            }
        }
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
            if let Some((message, hint)) = host_address_problem(addr) {
                c.error(&fp, message, hint);
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
        if let Some(a) = h.private_address.as_deref()
            && host_address_problem(a).is_none()
            && a.parse::<Ipv4Addr>().is_err()
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
        if let Some((message, hint)) = host_address_problem(&ep.host) {
            c.error("spec.controlPlane.endpoint.host", message, hint);
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
        if let Some((message, hint)) = cert_san_problem(san) {
            c.error(&format!("spec.controlPlane.certSANs[{i}]"), message, hint);
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

/// `spec.artifacts.images.mode` values.
pub const IMAGE_MODES: &[&str] = &["push", "pull", "mirror"];

fn check_images(c: &mut Checker, a: &Artifacts) {
    let Some(i) = &a.images else { return };
    let mode = i.mode.as_deref().unwrap_or("push");
    if !c.one_of(
        "spec.artifacts.images.mode",
        "image mode",
        mode,
        IMAGE_MODES,
    ) {
        return;
    }
    if mode == "mirror" && a.bundle.is_some() {
        c.error(
            "spec.artifacts.bundle",
            "mode `mirror` fills the site registry from the images' registries, not from a bundle",
            "use mode push with the bundle, or mode mirror without it",
        );
    }
    match (&i.registry, mode) {
        (None, "mirror") => c.error(
            "spec.artifacts.images",
            "mode `mirror` needs the site's registry",
            "add registry: {url: https://registry.example:5000, username: ..., password: ${REGISTRY_PASSWORD}}",
        ),
        (Some(_), m) if m != "mirror" => c.error(
            "spec.artifacts.images.registry",
            format!("a registry is only used with mode `mirror` (mode is `{m}`)"),
            "set mode: mirror, or remove registry",
        ),
        (Some(r), _) => {
            let p = "spec.artifacts.images.registry.url";
            match r.url.as_deref() {
                None => c.error(p, "the site registry needs its url", "url: https://registry.example:5000"),
                Some(u) => {
                    let host = u
                        .strip_prefix("https://")
                        .or_else(|| u.strip_prefix("http://").filter(|_| a.allow_http_registry_mirrors));
                    match host.map(|h| h.trim_end_matches('/')) {
                        None if u.starts_with("http://") => c.error(
                            p,
                            "a plain-http registry: the nodes would pull over it without TLS",
                            "use https, or set spec.artifacts.allowHttpRegistryMirrors: true",
                        ),
                        Some(h)
                            if !h.contains('/')
                                && !h.contains('@')
                                && crate::release::Image::parse(&format!("{h}/x:1")).is_ok() => {}
                        _ => c.error(
                            p,
                            format!("`{}` is not https://host[:port]", crate::util::redact_url(u)),
                            "the registry's address without a path or credentials, e.g. https://10.0.0.9:5000",
                        ),
                    }
                }
            }
            if r.username.is_some() != r.password.is_some() {
                c.error(
                    "spec.artifacts.images.registry",
                    "give both username and password, or neither (anonymous pushes)",
                    "password: ${REGISTRY_PASSWORD} keeps the secret out of the file",
                );
            }
        }
        _ => {}
    }
}

fn check_artifacts(c: &mut Checker, a: &Artifacts) {
    check_images(c, a);
    if a.bundle.is_some() && a.mirror.is_some() {
        c.error(
            "spec.artifacts.bundle",
            "spec.artifacts.bundle and spec.artifacts.mirror are both given",
            "a bundle already holds every binary: remove spec.artifacts.mirror (or the bundle, to download from the mirror)",
        );
    }
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
        if let Some(problem) = registry_key_problem(registry) {
            c.error(
                &rp,
                problem,
                "a key is a registry as image names spell it, host[:port] (e.g. docker.io, registry.example.com:5000), or _default for every registry",
            );
        }
        if endpoints.is_empty() {
            c.error(
                &rp,
                format!("no mirror endpoints for {registry}"),
                "list at least one https:// endpoint",
            );
        }
        for (i, e) in endpoints.iter().enumerate() {
            let ep = format!("{rp}[{i}]");
            match mirror_endpoint_problem(e) {
                Some(problem) => c.error(
                    &ep,
                    problem,
                    "write the mirror endpoint as https://host[:port][/path]",
                ),
                None if e.starts_with("http://") && !a.allow_http_registry_mirrors => c.error(
                    &ep,
                    format!("`{e}` is plain http: images would be pulled unencrypted and unauthenticated"),
                    "use https://, or set spec.artifacts.allowHttpRegistryMirrors: true to allow plain-http mirrors",
                ),
                None => {}
            }
        }
    }
}

/// What is wrong with the directory spec.artifacts.bundle names (resolved against the
/// inventory's directory): it must be a directory holding the index.json of a bundle
/// `kubeforge artifacts fetch` wrote. None when it is one.
pub fn bundle_dir_problem(dir: &std::path::Path) -> Option<(String, String)> {
    let fetch = format!(
        "write it with `kubeforge artifacts fetch -f <inventory> -o {}` on a machine with network access, and carry the directory here",
        crate::util::shell_quote(&dir.display().to_string())
    );
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some((
                format!("the bundle directory {} does not exist", dir.display()),
                fetch,
            ));
        }
        Err(e) => {
            return Some((
                format!("cannot read the bundle directory {}: {e}", dir.display()),
                "check the path and its permissions".into(),
            ));
        }
        Ok(m) if !m.is_dir() => {
            return Some((
                format!("{} is not a directory", dir.display()),
                "spec.artifacts.bundle names the directory `kubeforge artifacts fetch` wrote"
                    .into(),
            ));
        }
        Ok(_) => {}
    }
    if let Err(e) = crate::bundle::read_index(dir) {
        return Some((e.to_string(), fetch));
    }
    None
}

/// What is wrong with a registryMirrors key (a directory name under /etc/containerd/certs.d):
/// it must be `_default` or `host[:port]`, host an IPv4 address or a DNS name, port 1-65535.
pub fn registry_key_problem(key: &str) -> Option<String> {
    if key == "_default" {
        return None;
    }
    let (host, port) = match key.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (key, None),
    };
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && !p.starts_with('0')
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return Some(format!(
                "registry `{key}`: port `{p}` is not a number from 1 to 65535"
            ));
        }
    }
    if let Some(ch) = key
        .chars()
        .find(|ch| ch.is_whitespace() || ch.is_control() || "/\\\"'`".contains(*ch))
    {
        return Some(format!(
            "`{key}` is not a registry host[:port]: it contains {ch:?}"
        ));
    }
    host_address_problem(host).map(|(m, _)| format!("registry key: {m}"))
}

/// What is wrong with a registry mirror endpoint: it must be an absolute http(s) URL with a
/// host, without whitespace, control characters or quotes, query or fragment.
pub fn mirror_endpoint_problem(e: &str) -> Option<String> {
    // messages never show credentials, and none are accepted: containerd's hosts.toml takes no
    // userinfo in a host URL, and the file is readable on every node
    let shown = crate::util::redact_url(e);
    let e_raw = e;
    let e = shown.as_str();
    if e_raw
        .split_once("://")
        .map(|(_, r)| r.split(['/', '?', '#']).next().unwrap_or(""))
        .is_some_and(|authority| authority.contains('@'))
    {
        return Some(format!(
            "`{e}`: a registry mirror endpoint holds no user or password (containerd does not read them there, and hosts.toml is readable on every node); give the registry's credentials to containerd another way"
        ));
    }
    if let Some(ch) = e
        .chars()
        .find(|ch| ch.is_whitespace() || ch.is_control() || "\"'`\\<>{}|^".contains(*ch))
    {
        return Some(format!(
            "`{e}` contains {ch:?}, which a URL does not hold unencoded"
        ));
    }
    let url = match url::Url::parse(e) {
        Ok(u) => u,
        Err(err) => return Some(format!("`{e}` is not a URL ({err})")),
    };
    if url.scheme() != "https" && url.scheme() != "http" {
        return Some(format!("`{e}` is not an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Some(format!("`{e}`: a mirror endpoint has no query or fragment"));
    }
    // the host as written (the url crate would turn a legacy spelling like 10.1 into 10.0.0.1;
    // containerd would hand it to the resolver as it is)
    let rest = e.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if hostport.starts_with('[') {
        hostport
            .split_once(']')
            .map_or(hostport, |(h, _)| h)
            .to_string()
            + "]"
    } else {
        hostport.split(':').next().unwrap_or("").to_string()
    };
    if host.is_empty() {
        return Some(format!("`{e}` has no host"));
    }
    host_address_problem(&host).map(|(m, _)| format!("mirror endpoint host: {m}"))
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
    for (path, value, (min, max), default) in [
        (
            "spec.options.drain.gracePeriod",
            &o.drain.grace_period,
            DURATION_RANGES[0].1,
            default_grace_period(),
        ),
        (
            "spec.options.drain.timeout",
            &o.drain.timeout,
            DURATION_RANGES[1].1,
            default_drain_timeout(),
        ),
        (
            "spec.options.commandTimeout",
            &o.command_timeout,
            DURATION_RANGES[2].1,
            default_command_timeout(),
        ),
        (
            "spec.options.maxClockSkew",
            &o.max_clock_skew,
            DURATION_RANGES[3].1,
            default_max_clock_skew(),
        ),
    ] {
        let field = path.rsplit('.').next().unwrap_or(path);
        let range = format!("from {} to {}", short_duration(min), short_duration(max));
        match parse_duration(value) {
            None => c.error(
                path,
                format!("`{value}` is not a duration"),
                format!("write a number with a unit: 30s, 5m, 1h30m ({field} is {range}; the default is {default})"),
            ),
            Some(d) if d.is_zero() && !min.is_zero() => c.error(
                path,
                format!("must be longer than 0s ({field} is {range})"),
                format!("write a number with a unit: 30s, 5m, 1h30m; the default is {default}"),
            ),
            Some(d) if d < min || d > max => c.error(
                path,
                format!("`{value}` is out of range: {field} is {range}"),
                format!("write a duration {range}; the default is {default}"),
            ),
            _ => {}
        }
    }
}

/// `0s`, `1s`, `5m`, `24h`: a range bound as the inventory would write it.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The allowed range of each duration option, in the order check_options lists them.
pub const DURATION_RANGES: [(&str, (Duration, Duration)); 4] = [
    (
        "drain.gracePeriod",
        (Duration::ZERO, Duration::from_secs(24 * 3600)),
    ),
    (
        "drain.timeout",
        (Duration::from_secs(1), Duration::from_secs(24 * 3600)),
    ),
    (
        "commandTimeout",
        (Duration::from_secs(1), Duration::from_secs(24 * 3600)),
    ),
    (
        "maxClockSkew",
        (Duration::from_secs(1), Duration::from_secs(3600)),
    ),
];

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
        assert!(!is_host_address("fd00::1"), "IPv4 only for now");
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

    #[test]
    fn numeric_looking_names_are_rejected() {
        for bad in [
            "010.0.0.1",
            "10.0.0.010",
            "167772161",
            "0x0a000001",
            "0X0A.0.0.1",
            "10.1",
            "10.0.1",
            "0",
            "node.123",
            "host.example.0x1f",
            "10.0.0.300",
            "1.2.3.4.5",
        ] {
            let (m, h) = host_address_problem(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(!m.is_empty() && !h.is_empty(), "{bad}");
            assert!(cert_san_problem(bad).is_some(), "certSAN {bad} accepted");
        }
        assert_eq!(legacy_ipv4("10.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(legacy_ipv4("167772161"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(legacy_ipv4("0x0a000001"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(legacy_ipv4("010.0.0.1"), Some("8.0.0.1".parse().unwrap()));
        assert_eq!(legacy_ipv4("1.2.3.4.5"), None);
        assert_eq!(legacy_ipv4("10.0.0.300"), None);
        assert!(
            host_address_problem("10.1")
                .unwrap()
                .0
                .contains("resolvers read it as 10.0.0.1")
        );
        for good in [
            "10.0.0.1",
            "node1",
            "node-1.example.com",
            "Bastion.Example.com",
            "x0a",
            "a.b1",
        ] {
            assert_eq!(host_address_problem(good), None, "{good}");
        }
    }

    #[test]
    fn unspecified_and_ipv6_addresses_are_rejected() {
        let (m, _) = host_address_problem("0.0.0.0").unwrap();
        assert!(m.contains("unspecified"), "{m}");
        for v6 in [
            "::",
            "fd00::100",
            "[fd00::1]",
            "fe80::1%eth0",
            "::ffff:10.0.0.1",
        ] {
            let (m, h) = host_address_problem(v6).unwrap_or_else(|| panic!("{v6} accepted"));
            assert!(m.contains("IPv4 only"), "{m}");
            assert!(h.contains("IPv6 is not supported yet"), "{h}");
        }
        assert!(cert_san_problem("0.0.0.0").is_some());
        assert!(cert_san_problem("::").is_some());
        assert_eq!(cert_san_problem("fd00::1"), None, "an IPv6 SAN is harmless");
    }

    #[test]
    fn cert_sans_follow_kubeadm() {
        for good in [
            "10.0.0.5",
            "kube.example.com",
            "Kube.Example.com",
            "*.example.com",
            "localhost",
            "fd00::1",
        ] {
            assert_eq!(cert_san_problem(good), None, "{good}");
        }
        for bad in [
            "bad_name",
            "*",
            "*.",
            "a.*.example.com",
            "**.example.com",
            "-a.example.com",
            "a..b",
            "example.com.",
            "10.0.0.1:6443",
            "https://kube.example.com",
            "",
            "kube example",
        ] {
            assert!(cert_san_problem(bad).is_some(), "{bad} accepted");
        }
        assert!(cert_san_problem(&"a".repeat(254)).is_some());
    }

    #[test]
    fn registry_mirror_keys_are_host_and_port() {
        for good in [
            "_default",
            "docker.io",
            "registry.k8s.io",
            "registry.example.com:5000",
            "10.0.0.5:5000",
            "localhost:65535",
        ] {
            assert_eq!(registry_key_problem(good), None, "{good}");
        }
        for bad in [
            "../../etc",
            "docker.io/library",
            "a\"b",
            "has space",
            "..",
            "registry:0",
            "registry:65536",
            "registry:05000",
            "registry:",
            "registry:x",
            "_other",
            "",
            "10.1:5000",
            "[fd00::1]:5000",
        ] {
            assert!(registry_key_problem(bad).is_some(), "{bad} accepted");
        }
    }

    #[test]
    fn registry_mirror_endpoints_are_urls() {
        for good in [
            "https://mirror.example.com",
            "https://mirror.example.com:5000/v2/prefix",
            "http://10.0.0.9:5000",
        ] {
            assert_eq!(mirror_endpoint_problem(good), None, "{good}");
        }
        // credentials are refused, and the message does not show them
        let m = mirror_endpoint_problem("https://user:pa%20ss@mirror.example.com").unwrap();
        assert!(m.contains("holds no user or password"), "{m}");
        assert!(!m.contains("pa%20ss") && !m.contains("user:"), "{m}");
        for bad in [
            "mirror.example.com",
            "ftp://mirror.example.com",
            "https://mirror\"]\nx = 1",
            "https://mirror.example.com/ a",
            "https://us\"er@mirror.example.com",
            "https://mirror.example.com\n",
            "https://mirror.example.com?x=1",
            "https://mirror.example.com#f",
            "https://",
            "https://10.1",
            "https://[fd00::1]:5000",
            "https://a\u{1b}[31m.example.com",
        ] {
            assert!(mirror_endpoint_problem(bad).is_some(), "{bad} accepted");
        }
    }

    #[test]
    fn duration_ranges_name_the_field_and_range() {
        for (_, (min, max)) in DURATION_RANGES {
            assert!(min <= max);
        }
        assert_eq!(short_duration(Duration::from_secs(86400)), "24h");
        assert_eq!(short_duration(Duration::ZERO), "0s");
        assert_eq!(short_duration(Duration::from_secs(90)), "90s");
    }
}
