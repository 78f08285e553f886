//! Release manifests: for one Kubernetes release, every binary kubeforge installs (per arch, with
//! its upstream URL, its path in a mirror, and its pinned sha256) and the container images the
//! release needs. The manifests of images/ are built into the binary; an inventory can add its
//! own (`spec.artifacts.manifest`) for air-gapped sites and tests.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/builtin_manifests.rs"));

pub const MANIFEST_KIND: &str = "ReleaseManifest";
pub const MANIFEST_API_VERSION: &str = "kubeforge.io/v1alpha1";

/// The binaries a release manifest must list, for each arch it supports, in the order a node
/// installs them: the container runtime first, then kubeadm, the kubelet and kubectl. The one
/// list of components: the steps and the facts probe take theirs from it.
pub const COMPONENTS: &[&str] = &[
    "runc",
    "containerd",
    "cni-plugins",
    "crictl",
    "kubeadm",
    "kubelet",
    "kubectl",
];

/// What the runtime step installs.
pub const RUNTIME_COMPONENTS: &[&str] = COMPONENTS.split_at(4).0;
/// What the kube-binaries step installs.
pub const KUBE_COMPONENTS: &[&str] = COMPONENTS.split_at(4).1;

/// A component that is one binary (whose presence the facts probe checks), unlike the CNI
/// plugins' directory.
pub fn is_single_binary(component: &str) -> bool {
    component != "cni-plugins"
}

/// The order of an upgrade's installs: kubeadm first (`kubeadm upgrade` needs the new one),
/// then the others in install order.
pub fn upgrade_order() -> impl Iterator<Item = &'static str> {
    std::iter::once("kubeadm").chain(COMPONENTS.iter().copied().filter(|c| *c != "kubeadm"))
}

/// The container images a release manifest must name.
pub const IMAGES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "etcd",
    "coredns",
    "pause",
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReleaseManifest {
    pub api_version: String,
    pub kind: String,
    pub kubernetes: String,
    pub artifacts: Vec<Artifact>,
    pub images: BTreeMap<String, String>,
    #[serde(default)]
    pub cni: BTreeMap<String, CniRelease>,
    /// Images of optional add-ons (`openstack`: the cloud-controller-manager and Cinder CSI).
    #[serde(default)]
    pub addons: BTreeMap<String, AddonRelease>,
    /// Tools kubeforge installs only where a feature needs them (`helm`, on the control plane
    /// that applies the inventory's charts), per arch, pinned like the artifacts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Artifact>,
}

/// The tools a release manifest may pin (`tools:`).
pub const TOOLS: &[&str] = &["helm"];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddonRelease {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub images: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Artifact {
    pub component: String,
    pub version: String,
    pub arch: String,
    /// Upstream download URL.
    pub url: String,
    /// Path below a mirror's base URL or directory (the upstream layout).
    pub path: String,
    pub sha256: String,
    /// Where the checksum was read (kept for audit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CniRelease {
    pub version: String,
    pub images: BTreeMap<String, String>,
}

/// Release manifests larger than this are refused (the built-in ones are a few KiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// A container image reference as a release manifest pins it: `repo:tag@sha256:<64 hex>`.
///
/// The tag stays because kubeadm's configuration takes a repository and a tag (and the harness's
/// kubelet double reads versions from tags); the digest is what containerd verifies: it is the
/// digest of the image index (manifest list), from which containerd resolves the platform's
/// manifest and checks every blob below it. A manifest an inventory adds may leave the digest out
/// (`repo:tag`); the built-in manifests pin one for every image (see `images/SOURCES.md`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Image {
    /// Registry and path, e.g. `registry.k8s.io/coredns/coredns`.
    pub repo: String,
    pub tag: String,
    /// `sha256:<64 lowercase hex>`, when pinned.
    pub digest: Option<String>,
}

impl Image {
    /// Parses and checks a reference. The registry must be explicit (a name with a dot or a port,
    /// or `localhost`), the tag is required, and a digest, if any, must be sha256 in lowercase hex.
    pub fn parse(text: &str) -> Result<Image, String> {
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => {
                let hex = d.strip_prefix("sha256:").ok_or_else(|| {
                    format!("{text:?}: the digest must be sha256:<64 lowercase hex digits>")
                })?;
                if !is_sha256_hex(hex) {
                    return Err(format!(
                        "{text:?}: the digest must be sha256:<64 lowercase hex digits>"
                    ));
                }
                (n, Some(d.to_string()))
            }
            None => (text, None),
        };
        // The tag follows the last ':' after the last '/' (a registry port has a '/' after it).
        let last_slash = name_tag.rfind('/').ok_or_else(|| {
            format!("{text:?}: name the registry, e.g. registry.k8s.io/pause:3.10")
        })?;
        let (repo, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (&name_tag[..last_slash + i], &name_tag[last_slash + i + 1..]),
            None => return Err(format!("{text:?}: a tag is required (repo:tag)")),
        };
        if !valid_tag(tag) {
            return Err(format!(
                "{text:?}: tag {tag:?} is not valid (letters, digits, '_', '.', '-'; at most 128)"
            ));
        }
        if repo.len() > 255 {
            return Err(format!(
                "{text:?}: the repository name is over 255 characters"
            ));
        }
        let (domain, path) = repo.split_once('/').expect("checked: has a '/'");
        if !valid_domain(domain) {
            return Err(format!(
                "{text:?}: {domain:?} is not a registry host[:port] (a name with a dot, a port, or localhost)"
            ));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(format!(
                "{text:?}: repository path {path:?} must be lowercase components of [a-z0-9] joined by '.', '_', '__' or '-'"
            ));
        }
        Ok(Image {
            repo: repo.to_string(),
            tag: tag.to_string(),
            digest,
        })
    }

    /// The reference to pull and run: `repo:tag@sha256:…` (or `repo:tag` when not pinned).
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}:{}@{d}", self.repo, self.tag),
            None => self.tag_ref(),
        }
    }

    /// `repo:tag`, for configuration that takes a tag (kubeadm) and for display.
    pub fn tag_ref(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }

    /// `repo@sha256:…`, the name containerd stores a digest-pinned image under (it drops the tag
    /// of a `tag@digest` reference); `repo:tag` when not pinned. Used for containerd's sandbox
    /// image: containerd 2.3.0/2.3.1 cannot find a sandbox image configured as `tag@digest`
    /// (containerd/containerd#13529), while every version finds the digest-only form.
    pub fn digest_ref(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.repo),
            None => self.tag_ref(),
        }
    }
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reference())
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    let labels_ok = !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        });
    labels_ok && (host.contains('.') || port.is_some() || host == "localhost")
}

/// `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`, the path grammar of distribution/reference.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_digit() || c.is_ascii_lowercase()
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot read release manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("release manifest {origin} is not valid YAML for a ReleaseManifest: {message}")]
    Parse { origin: String, message: String },
    #[error("release manifest {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Parses `1.33.5` or `v1.33.5`. Pre-release suffixes are accepted (`1.34.0-rc.1`).
pub fn parse_version(text: &str) -> Option<semver::Version> {
    let t = text.trim();
    let t = t.strip_prefix('v').unwrap_or(t);
    semver::Version::parse(t).ok()
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ReleaseManifest {
    pub fn parse(origin: &str, text: &str) -> Result<Self, ReleaseError> {
        let m: ReleaseManifest = serde_saphyr::from_str(text).map_err(|e| ReleaseError::Parse {
            origin: origin.to_string(),
            message: e.without_snippet().to_string(),
        })?;
        m.check(origin)?;
        Ok(m)
    }

    pub fn load(path: &Path) -> Result<Self, ReleaseError> {
        let text = crate::inventory::read_text_file(path, MAX_MANIFEST_BYTES, "a release manifest")
            .map_err(|source| ReleaseError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn version(&self) -> semver::Version {
        parse_version(&self.kubernetes).expect("checked at load")
    }

    /// Structural checks: a manifest that passes them has everything an install needs.
    fn check(&self, origin: &str) -> Result<(), ReleaseError> {
        let bad = |message: String| ReleaseError::Invalid {
            origin: origin.to_string(),
            message,
        };
        if self.api_version != MANIFEST_API_VERSION || self.kind != MANIFEST_KIND {
            return Err(bad(format!(
                "expected apiVersion {MANIFEST_API_VERSION} and kind {MANIFEST_KIND}"
            )));
        }
        let version = parse_version(&self.kubernetes).ok_or_else(|| {
            bad(format!(
                "kubernetes: {:?} is not a version like 1.33.5",
                self.kubernetes
            ))
        })?;
        for a in &self.artifacts {
            if !COMPONENTS.contains(&a.component.as_str()) {
                return Err(bad(format!(
                    "unknown component {:?} (expected one of {})",
                    a.component,
                    COMPONENTS.join(", ")
                )));
            }
            if !is_sha256_hex(&a.sha256) {
                return Err(bad(format!(
                    "{} {} {}: sha256 must be 64 lowercase hex digits",
                    a.component, a.version, a.arch
                )));
            }
            if a.path.starts_with('/') || a.path.split('/').any(|s| s == "..") {
                return Err(bad(format!(
                    "{} {}: path must be relative, without ..",
                    a.component, a.arch
                )));
            }
            if ["kubeadm", "kubelet", "kubectl"].contains(&a.component.as_str())
                && parse_version(&a.version) != Some(version.clone())
            {
                return Err(bad(format!(
                    "{} {} does not match kubernetes {}",
                    a.component, a.version, self.kubernetes
                )));
            }
        }
        for a in &self.tools {
            if !TOOLS.contains(&a.component.as_str()) {
                return Err(bad(format!(
                    "tools: unknown tool {:?} (expected one of {})",
                    a.component,
                    TOOLS.join(", ")
                )));
            }
            if !is_sha256_hex(&a.sha256) {
                return Err(bad(format!(
                    "tools: {} {} {}: sha256 must be 64 lowercase hex digits",
                    a.component, a.version, a.arch
                )));
            }
            if a.path.is_empty() || a.path.starts_with('/') || a.path.split('/').any(|s| s == "..")
            {
                return Err(bad(format!(
                    "tools: {} {}: path must be relative, without ..",
                    a.component, a.arch
                )));
            }
        }
        let arches = self.arches();
        if arches.is_empty() {
            return Err(bad("lists no artifacts".into()));
        }
        for arch in &arches {
            for c in COMPONENTS {
                if self.artifact(c, arch).is_none() {
                    return Err(bad(format!("no {c} for {arch}")));
                }
            }
        }
        for i in IMAGES {
            if !self.images.contains_key(*i) {
                return Err(bad(format!("images: no {i}")));
            }
        }
        for (key, text) in self.image_texts() {
            Image::parse(text).map_err(|e| bad(format!("{key}: {e}")))?;
        }
        Ok(())
    }

    /// Every image reference in the manifest, with the key it is under
    /// (`images.pause`, `cni.flannel.images.flannel`, `addons.openstack.images.csi-attacher`).
    fn image_texts(&self) -> Vec<(String, &str)> {
        let mut v: Vec<(String, &str)> = self
            .images
            .iter()
            .map(|(k, t)| (format!("images.{k}"), t.as_str()))
            .collect();
        for (name, c) in &self.cni {
            for (k, t) in &c.images {
                v.push((format!("cni.{name}.images.{k}"), t.as_str()));
            }
        }
        for (name, a) in &self.addons {
            for (k, t) in &a.images {
                v.push((format!("addons.{name}.images.{k}"), t.as_str()));
            }
        }
        v
    }

    /// Every image the release runs, parsed (checked at load), with its key as in
    /// [`Self::image_texts`]: what a pre-pull or an import needs.
    pub fn all_images(&self) -> Vec<(String, Image)> {
        self.image_texts()
            .into_iter()
            .map(|(k, t)| {
                (
                    k,
                    Image::parse(t).expect("image references are checked at load"),
                )
            })
            .collect()
    }

    /// One of the release's core images (`images.<key>`), parsed.
    pub fn image(&self, key: &str) -> Option<Image> {
        self.images
            .get(key)
            .map(|t| Image::parse(t).expect("image references are checked at load"))
    }

    pub fn arches(&self) -> Vec<String> {
        let mut a: Vec<String> = self.artifacts.iter().map(|a| a.arch.clone()).collect();
        a.sort();
        a.dedup();
        a
    }

    /// A tool (`tools:`) for one arch.
    pub fn tool(&self, component: &str, arch: &str) -> Option<&Artifact> {
        self.tools
            .iter()
            .find(|a| a.component == component && a.arch == arch)
    }

    pub fn artifact(&self, component: &str, arch: &str) -> Option<&Artifact> {
        self.artifacts
            .iter()
            .find(|a| a.component == component && a.arch == arch)
    }
}

/// Every release kubeforge knows: the built-in manifests plus any the inventory adds. A later
/// manifest for the same release replaces an earlier one.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    releases: BTreeMap<semver::Version, (String, ReleaseManifest)>,
}

impl Catalog {
    pub fn builtin() -> Result<Self, ReleaseError> {
        let mut c = Catalog::default();
        for (origin, text) in BUILTIN_MANIFESTS {
            c.add(origin, ReleaseManifest::parse(origin, text)?);
        }
        Ok(c)
    }

    pub fn add(&mut self, origin: &str, m: ReleaseManifest) {
        self.releases.insert(m.version(), (origin.to_string(), m));
    }

    pub fn versions(&self) -> Vec<semver::Version> {
        self.releases.keys().cloned().collect()
    }

    pub fn get(&self, v: &semver::Version) -> Option<&ReleaseManifest> {
        self.releases.get(v).map(|(_, m)| m)
    }

    pub fn origin(&self, v: &semver::Version) -> Option<&str> {
        self.releases.get(v).map(|(o, _)| o.as_str())
    }

    pub fn newest(&self) -> Option<&ReleaseManifest> {
        self.releases.values().next_back().map(|(_, m)| m)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A structurally complete manifest for unit tests. Its digests are not those of any real
    /// file; tests that download use manifests written from the harness mirror's index.
    pub fn sample(version: &str) -> String {
        let mut s = format!(
            "apiVersion: kubeforge.io/v1alpha1\nkind: ReleaseManifest\nkubernetes: {version}\nartifacts:\n"
        );
        for arch in ["amd64", "arm64"] {
            for c in COMPONENTS {
                let v = if ["kubeadm", "kubelet", "kubectl"].contains(c) {
                    version
                } else {
                    "1.0.0"
                };
                s.push_str(&format!(
                    "  - {{component: {c}, version: {v}, arch: {arch}, url: 'https://example.invalid/{c}', path: '{c}/{arch}', sha256: '{}'}}\n",
                    "ab".repeat(32)
                ));
            }
        }
        s.push_str("images:\n");
        for i in IMAGES {
            s.push_str(&format!("  {i}: registry.k8s.io/{i}:v{version}\n"));
        }
        s
    }

    #[test]
    fn builtin_manifests_are_complete() {
        let c = Catalog::builtin().expect("images/ manifests parse and pass their checks");
        for v in c.versions() {
            let m = c.get(&v).unwrap();
            assert_eq!(m.arches(), vec!["amd64", "arm64"], "{v}: amd64 and arm64");
            assert!(m.cni.contains_key("flannel"), "{v}: flannel images pinned");
            for a in &m.artifacts {
                assert!(
                    a.url.starts_with("https://"),
                    "{v}: {} url is https",
                    a.component
                );
                assert!(
                    a.url
                        .ends_with(&a.path.rsplit('/').next().unwrap().to_string())
                );
                assert!(
                    a.source.is_some(),
                    "{v}: {} {} records its checksum's source",
                    a.component,
                    a.arch
                );
            }
        }
    }

    #[test]
    fn sample_parses_and_checks_catch_gaps() {
        let m = ReleaseManifest::parse("t", &sample("1.33.5")).unwrap();
        assert_eq!(m.version(), semver::Version::new(1, 33, 5));
        let broken = sample("1.33.5").replace(&"ab".repeat(32), "xyz");
        assert!(matches!(
            ReleaseManifest::parse("t", &broken),
            Err(ReleaseError::Invalid { .. })
        ));
        let missing = sample("1.33.5").replace("  pause: registry.k8s.io/pause:v1.33.5\n", "");
        let e = ReleaseManifest::parse("t", &missing)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no pause"), "{e}");
        let mismatch = sample("1.33.5").replacen("version: 1.33.5", "version: 1.33.4", 1);
        assert!(ReleaseManifest::parse("t", &mismatch).is_err());
    }

    /// Images of the built-in manifests that no source available when they were pinned gave a
    /// digest for: each is tag-only in its manifest, marked there and in images/SOURCES.md with
    /// "digest not found in any source available here". (release, key) pairs.
    const UNPINNED_EXCEPTIONS: &[(&str, &str)] = &[
        (
            "1.34.1",
            "addons.openstack.images.openstack-cloud-controller-manager",
        ),
        ("1.34.1", "addons.openstack.images.cinder-csi-plugin"),
        (
            "1.35.1",
            "addons.openstack.images.openstack-cloud-controller-manager",
        ),
        ("1.35.1", "addons.openstack.images.cinder-csi-plugin"),
    ];

    #[test]
    fn every_builtin_image_is_pinned_by_digest() {
        let mut unpinned = Vec::new();
        let mut seen_exceptions = Vec::new();
        for (origin, text) in BUILTIN_MANIFESTS {
            let m = ReleaseManifest::parse(origin, text).expect("built-in manifest parses");
            let all = m.all_images();
            assert!(
                all.len() >= IMAGES.len() + 2,
                "{origin}: core and flannel images"
            );
            for (key, img) in all {
                // Well-formed and round-trips: what the manifest says is what kubeforge uses.
                let raw = m
                    .image_texts()
                    .into_iter()
                    .find(|(k, _)| *k == key)
                    .unwrap()
                    .1;
                assert_eq!(img.reference(), raw, "{origin} {key}");
                assert!(img.repo.contains('.'), "{origin} {key}: registry named");
                let exception =
                    UNPINNED_EXCEPTIONS.contains(&(m.kubernetes.as_str(), key.as_str()));
                match &img.digest {
                    Some(d) => {
                        assert!(
                            d.starts_with("sha256:") && is_sha256_hex(&d[7..]),
                            "{origin} {key}: {d}"
                        );
                        assert!(
                            !exception,
                            "{origin} {key} is pinned now: drop it from UNPINNED_EXCEPTIONS"
                        );
                    }
                    None if exception => {
                        // The exception is visible where the image is named.
                        let line = text
                            .lines()
                            .find(|l| {
                                l.trim_start()
                                    .starts_with(&format!("{}:", key.rsplit('.').next().unwrap()))
                                    && l.contains(raw)
                            })
                            .unwrap_or_else(|| panic!("{origin} {key}: line"));
                        assert!(
                            line.contains("# digest not found in any source available here"),
                            "{origin} {key}: mark the exception on its line: {line}"
                        );
                        seen_exceptions.push((m.kubernetes.clone(), key));
                    }
                    None => unpinned.push(format!("{origin} {key}: {raw}")),
                }
            }
        }
        assert!(
            unpinned.is_empty(),
            "images pinned by tag only:\n{}",
            unpinned.join("\n")
        );
        assert_eq!(
            seen_exceptions.len(),
            UNPINNED_EXCEPTIONS.len(),
            "every listed exception names an image of a built-in manifest"
        );
    }

    #[test]
    fn image_references_split_and_reject_malformed() {
        let d = format!("sha256:{}", "0a".repeat(32));
        let i = Image::parse(&format!("registry.k8s.io/pause:3.10@{d}")).unwrap();
        assert_eq!(i.repo, "registry.k8s.io/pause");
        assert_eq!(i.tag, "3.10");
        assert_eq!(i.digest.as_deref(), Some(d.as_str()));
        assert_eq!(i.reference(), format!("registry.k8s.io/pause:3.10@{d}"));
        assert_eq!(i.tag_ref(), "registry.k8s.io/pause:3.10");
        assert_eq!(i.digest_ref(), format!("registry.k8s.io/pause@{d}"));
        let p = Image::parse("10.0.0.1:5000/a/b-c__d.e:v1.7.1-flannel1").unwrap();
        assert_eq!(p.repo, "10.0.0.1:5000/a/b-c__d.e");
        assert_eq!(p.tag, "v1.7.1-flannel1");
        assert_eq!(p.digest, None);
        assert_eq!(p.digest_ref(), p.tag_ref());
        assert!(Image::parse("localhost/x:1").is_ok());
        for bad in [
            "registry.k8s.io/pause".to_string(),      // no tag
            "registry.k8s.io/pause:".to_string(),     // empty tag
            "pause:3.10".to_string(),                 // no registry
            "library/pause:3.10".to_string(),         // no registry host
            "registry.k8s.io/Pause:3.10".to_string(), // uppercase path
            "registry.k8s.io/pause:3.10@sha256:abc".to_string(),
            format!("registry.k8s.io/pause:3.10@sha512:{}", "0a".repeat(32)),
            format!("registry.k8s.io/pause:3.10@sha256:{}", "0A".repeat(32)),
            format!("registry.k8s.io/pause@{d}"), // digest without tag
            "registry.k8s.io/pause:3.10\"x".to_string(),
            "registry.k8s.io/pause:3 10".to_string(),
            "registry.k8s.io/pa..use:3.10".to_string(),
            "registry.k8s.io//pause:3.10".to_string(),
            "regis try.io/pause:3.10".to_string(),
            "registry.k8s.io:99999x/pause:3.10".to_string(),
            format!("registry.k8s.io/pause:{}", "a".repeat(129)),
        ] {
            assert!(Image::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn manifest_check_rejects_malformed_image_references() {
        let broken = sample("1.33.5").replace(
            "  pause: registry.k8s.io/pause:v1.33.5\n",
            "  pause: registry.k8s.io/pause:v1.33.5@sha256:1234\n",
        );
        let e = ReleaseManifest::parse("t", &broken)
            .unwrap_err()
            .to_string();
        assert!(e.contains("images.pause") && e.contains("sha256"), "{e}");
        let flannel = format!(
            "{}cni:\n  flannel:\n    version: 0.27.3\n    images:\n      flannel: 'ghcr.io/flannel-io/flannel:v0.27.3\"'\n",
            sample("1.33.5")
        );
        let e = ReleaseManifest::parse("t", &flannel)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cni.flannel.images.flannel"), "{e}");
    }

    #[test]
    fn versions_parse_with_or_without_v() {
        assert_eq!(
            parse_version("v1.33.5"),
            Some(semver::Version::new(1, 33, 5))
        );
        assert_eq!(
            parse_version("1.33.5"),
            Some(semver::Version::new(1, 33, 5))
        );
        assert_eq!(parse_version("1.33"), None);
        assert_eq!(parse_version("latest"), None);
    }
}
