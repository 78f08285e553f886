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

/// The binaries a release manifest must list, for each arch it supports.
pub const COMPONENTS: &[&str] = &[
    "kubeadm",
    "kubelet",
    "kubectl",
    "containerd",
    "runc",
    "cni-plugins",
    "crictl",
];

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
}

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
        Ok(())
    }

    pub fn arches(&self) -> Vec<String> {
        let mut a: Vec<String> = self.artifacts.iter().map(|a| a.arch.clone()).collect();
        a.sort();
        a.dedup();
        a
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
