//! What the registry sends: media types, descriptors, image indexes (manifest lists) and image
//! manifests, in their OCI and Docker schema 2 forms, and the choice of a platform's manifest
//! from an index as containerd makes it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header of a manifest request: every kind kubeforge can use.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused (containerd's own limit is 4 MiB too).
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// Image configs larger than this are refused when kubeforge reads one (a single-platform image).
pub const CONFIG_LIMIT: u64 = 8 << 20;

/// What a manifest document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An OCI image index or a Docker manifest list: one manifest per platform.
    Index,
    /// An OCI image manifest or a Docker schema 2 manifest: a config and layers.
    Image,
}

/// The kind of a manifest media type; `None` for one kubeforge does not handle (schema 1, say).
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_INDEX | DOCKER_LIST => Some(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        _ => None,
    }
}

/// A content descriptor (OCI image spec, descriptor.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescPlatform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescPlatform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// An image index or manifest list, as far as kubeforge reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// An image manifest, as far as kubeforge reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The platform fields of an image config.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigPlatform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// A node platform kubeforge pulls for: Linux on amd64 or arm64 (ARMv8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    LinuxAmd64,
    LinuxArm64,
}

impl Platform {
    /// From a Debian/Go architecture name (`amd64`, `arm64`; `x86_64` and `aarch64` too).
    pub fn from_arch(arch: &str) -> Option<Platform> {
        match arch {
            "amd64" | "x86_64" => Some(Platform::LinuxAmd64),
            "arm64" | "aarch64" => Some(Platform::LinuxArm64),
            _ => None,
        }
    }

    pub fn arch(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "amd64",
            Platform::LinuxArm64 => "arm64",
        }
    }

    /// Whether an image of `os`/`arch`/`variant` runs here, by containerd's rules for
    /// `platforms.Only(linux/<arch>)` restricted to 64-bit images: amd64 takes no variant or
    /// `v1` (the baseline; v2-v4 need newer CPUs than a node may have), arm64 takes no variant
    /// or `v8` (containerd normalizes arm64 to arm64/v8). 32-bit arm images are not taken.
    pub fn matches(self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if os != "linux" {
            return false;
        }
        let variant = variant.unwrap_or("");
        match self {
            Platform::LinuxAmd64 => arch == "amd64" && matches!(variant, "" | "v1"),
            Platform::LinuxArm64 => {
                (arch == "arm64" || arch == "aarch64") && matches!(variant, "" | "v8" | "8")
            }
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "linux/{}", self.arch())
    }
}

/// `os/arch[/variant]` of an index entry, for messages.
pub fn describe_platform(d: &Descriptor) -> String {
    match &d.platform {
        None => "(no platform)".into(),
        Some(p) => match &p.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os, p.architecture),
            _ => format!("{}/{}", p.os, p.architecture),
        },
    }
}

/// The index entry for `platform`: the first image manifest in the index's order whose
/// platform matches. Entries without a platform (attestations carry `unknown/unknown`) and
/// nested indexes never match.
pub fn select_platform(index: &Index, platform: Platform) -> Option<&Descriptor> {
    index.manifests.iter().find(|d| {
        manifest_kind(&d.media_type) == Some(ManifestKind::Image)
            && d.platform
                .as_ref()
                .is_some_and(|p| platform.matches(&p.os, &p.architecture, p.variant.as_deref()))
    })
}

/// Whether `d` is `sha256:` and 64 lowercase hex digits: the only digests kubeforge takes (the
/// cache is sha256-addressed).
pub fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

/// The hex part of a checked `sha256:<hex>` digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The media type of a manifest body: its own `mediaType` field when it has one, else the
/// `Content-Type` the registry sent (an OCI manifest may leave the field out).
pub fn body_media_type(body: &[u8], content_type: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    if let Some(m) = probe.media_type.filter(|m| !m.is_empty()) {
        return Some(m);
    }
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| manifest_kind(c).is_some());
    if ct.is_some() {
        return ct;
    }
    // neither says: an OCI document by its shape
    match (probe.manifests.is_some(), probe.config.is_some()) {
        (true, false) => Some(OCI_INDEX.into()),
        (false, true) => Some(OCI_MANIFEST.into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index of registry.k8s.io/pause:3.10 as the registry serves it (recorded; digests
    /// shortened to well-formed placeholders), with Windows entries and an arm/v7 entry.
    pub(crate) const PAUSE_INDEX: &str = r#"{
   "schemaVersion": 2,
   "mediaType": "application/vnd.oci.image.index.v1+json",
   "manifests": [
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 527,
       "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
       "platform": {"architecture": "amd64", "os": "linux"}},
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 527,
       "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
       "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 527,
       "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
       "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 527,
       "digest": "sha256:4444444444444444444444444444444444444444444444444444444444444444",
       "platform": {"architecture": "ppc64le", "os": "linux"}},
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1104,
       "digest": "sha256:5555555555555555555555555555555555555555555555555555555555555555",
       "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.6414"}}
   ]
}"#;

    fn index(text: &str) -> Index {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn picks_the_linux_manifest_of_each_architecture() {
        let i = index(PAUSE_INDEX);
        let amd = select_platform(&i, Platform::LinuxAmd64).unwrap();
        assert!(amd.digest.ends_with("1111"), "{amd:?}");
        let arm = select_platform(&i, Platform::LinuxArm64).unwrap();
        assert!(arm.digest.ends_with("3333"), "{arm:?}");
        assert_eq!(describe_platform(arm), "linux/arm64/v8");
        assert_eq!(
            i.manifests[4]
                .platform
                .as_ref()
                .unwrap()
                .os_version
                .as_deref(),
            Some("10.0.17763.6414")
        );
    }

    #[test]
    fn variant_rules_follow_containerd_for_64_bit_nodes() {
        let p = |arch: &str, variant: Option<&str>| {
            let v = variant
                .map(|v| format!(r#", "variant": "{v}""#))
                .unwrap_or_default();
            index(&format!(
                r#"{{"schemaVersion": 2, "manifests": [{{"mediaType": "{OCI_MANIFEST}", "size": 1,
                  "digest": "sha256:{}", "platform": {{"architecture": "{arch}", "os": "linux"{v}}}}}]}}"#,
                "a".repeat(64)
            ))
        };
        let arm64 = Platform::LinuxArm64;
        let amd64 = Platform::LinuxAmd64;
        assert!(select_platform(&p("arm64", None), arm64).is_some());
        assert!(select_platform(&p("arm64", Some("v8")), arm64).is_some());
        // a newer variant needs a newer CPU; 32-bit arm is not taken on a 64-bit node
        assert!(select_platform(&p("arm64", Some("v9")), arm64).is_none());
        assert!(select_platform(&p("arm", Some("v8")), arm64).is_none());
        assert!(select_platform(&p("arm", Some("v7")), arm64).is_none());
        assert!(select_platform(&p("amd64", None), amd64).is_some());
        assert!(select_platform(&p("amd64", Some("v1")), amd64).is_some());
        assert!(select_platform(&p("amd64", Some("v3")), amd64).is_none());
        assert!(select_platform(&p("amd64", None), arm64).is_none());
    }

    #[test]
    fn attestations_and_nested_indexes_are_never_chosen() {
        let i = index(&format!(
            r#"{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", "manifests": [
              {{"mediaType": "{OCI_INDEX}", "size": 1, "digest": "sha256:{a}",
                "platform": {{"architecture": "amd64", "os": "linux"}}}},
              {{"mediaType": "{OCI_MANIFEST}", "size": 1, "digest": "sha256:{b}",
                "platform": {{"architecture": "unknown", "os": "unknown"}},
                "annotations": {{"vnd.docker.reference.type": "attestation-manifest"}}}},
              {{"mediaType": "{DOCKER_MANIFEST}", "size": 1, "digest": "sha256:{c}",
                "platform": {{"architecture": "amd64", "os": "linux"}}}}]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64),
            c = "c".repeat(64)
        ));
        let d = select_platform(&i, Platform::LinuxAmd64).unwrap();
        assert_eq!(d.digest, format!("sha256:{}", "c".repeat(64)));
        assert!(select_platform(&i, Platform::LinuxArm64).is_none());
    }

    #[test]
    fn media_types_come_from_the_body_then_the_header_then_the_shape() {
        let docker_list =
            format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[]}}"#);
        assert_eq!(
            body_media_type(docker_list.as_bytes(), Some(OCI_INDEX)).as_deref(),
            Some(DOCKER_LIST)
        );
        let bare = br#"{"schemaVersion":2,"config":{"digest":"x","size":1},"layers":[]}"#;
        assert_eq!(
            body_media_type(
                bare,
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8")
            )
            .as_deref(),
            Some(DOCKER_MANIFEST)
        );
        assert_eq!(
            body_media_type(bare, Some("application/json")).as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            body_media_type(br#"{"schemaVersion":2,"manifests":[]}"#, None).as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(body_media_type(b"not json", Some(OCI_INDEX)), None);
        assert_eq!(manifest_kind(DOCKER_LIST), Some(ManifestKind::Index));
        assert_eq!(manifest_kind(OCI_MANIFEST), Some(ManifestKind::Image));
        assert_eq!(
            manifest_kind("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            None
        );
    }

    #[test]
    fn only_sha256_digests_in_lowercase_hex_are_taken() {
        assert!(is_sha256_digest(&format!("sha256:{}", "0a".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "0A".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha512:{}", "0a".repeat(64))));
        assert!(!is_sha256_digest("sha256:../../etc/passwd"));
        assert!(!is_sha256_digest(&format!("sha256:{}", "0a".repeat(31))));
    }
}
