//! Bundles for air-gapped sites ("prepare at the desk, carry into the bunker"):
//! `kubeforge artifacts fetch` downloads everything an inventory's cluster needs into one
//! directory, verified, and `spec.artifacts.bundle` points apply at it, so that apply needs no
//! network on the operator's machine.
//!
//! A bundle directory holds:
//! - every binary of the release for the chosen arches at its `path` (the upstream layout: the
//!   directory is also a valid `spec.artifacts.mirror` directory);
//! - `images/sha256/<hex>`: the blobs (indexes, manifests, configs, layers) of every image the
//!   release needs, for each arch;
//! - `kubeforge/release-<version>.yaml`: a copy of the release manifest;
//! - `kubeforge/cni/<sha256>.yaml`: the CNI manifest, when `cni: manifest` gives a URL;
//! - `index.json`: every file with its sha256 and size, the binaries, and the images with their
//!   index digest and blobs. It is written first with `complete: false` (so an interrupted
//!   fetch leaves a directory a new fetch continues) and last with `complete: true`.
//!
//! Everything is verified while it is written (binaries against the release manifest's
//! sha256, blobs against their digests), and again when a fetch finds it there already.

use crate::artifacts::{self, ArtifactError, Store};
use crate::error::ErrorKind;
use crate::images::{FetchedImage, ImageError, ImageStore, Platform};
use crate::inventory::Loaded;
use crate::model::{Cluster, Cni, ManifestSource};
use crate::release::{Artifact, BUILTIN_MANIFESTS, Image, ReleaseManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The bundle's index file.
pub const INDEX: &str = "index.json";
pub const API_VERSION: &str = "kubeforge.io/v1alpha1";
pub const KIND: &str = "Bundle";
/// Image blobs live under `images/sha256/<hex>`.
pub const IMAGES_DIR: &str = "images";
/// The release manifest's copy and CNI manifests live below `kubeforge/`.
pub const META_DIR: &str = "kubeforge";
/// The most an index.json may weigh (one of a few thousand blobs is a few hundred KiB).
pub const MAX_INDEX_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "{}: {reason}; it is not a bundle written by `kubeforge artifacts fetch`",
        dir.display()
    )]
    NotABundle { dir: PathBuf, reason: String },
    #[error(
        "the bundle {} is incomplete (a `kubeforge artifacts fetch` into it did not finish); run it again",
        dir.display()
    )]
    Incomplete { dir: PathBuf },
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    /// What the inventory or its release asks cannot go into a bundle.
    #[error("{0}")]
    Refused(String),
    #[error("no release manifest for Kubernetes {0}")]
    NoManifest(String),
    #[error("CNI manifest: {0}")]
    CniManifest(String),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Images(#[from] ImageError),
}

impl BundleError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BundleError::Images(e) => e.kind(),
            BundleError::Artifact(ArtifactError::Checksum { .. }) => ErrorKind::Policy,
            BundleError::Artifact(ArtifactError::Network { .. })
            | BundleError::Artifact(ArtifactError::Fetch { .. }) => ErrorKind::Unreachable,
            BundleError::Artifact(ArtifactError::Http { .. }) => ErrorKind::RemoteFailed,
            BundleError::Refused(_) => ErrorKind::Policy,
            _ => ErrorKind::Local,
        }
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> BundleError {
    BundleError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// One file of the bundle: its path below the bundle directory, sha256 (hex) and size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BinaryEntry {
    pub component: String,
    pub version: String,
    pub arch: String,
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// A blob of an image: `sha256:<hex>` (its file is `images/sha256/<hex>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlobEntry {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformEntry {
    pub arch: String,
    /// As the index names it (`linux/arm64/v8`).
    pub platform: String,
    /// The digest of the platform's manifest.
    pub manifest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageEntry {
    /// Where the release manifest names it (`images.pause`, `cni.flannel.images.flannel`).
    pub key: String,
    /// `repo:tag@sha256:…`.
    pub reference: String,
    /// The index (or single manifest) the image is pinned by.
    pub index: BlobEntry,
    pub platforms: Vec<PlatformEntry>,
    /// Every blob once: the index, then per platform its manifest, config and layers.
    pub blobs: Vec<BlobEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CniEntry {
    /// Where it was fetched (user and password left out).
    pub url: String,
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Index {
    pub api_version: String,
    pub kind: String,
    /// False while a fetch is under way, or after one that did not finish.
    pub complete: bool,
    pub cluster: String,
    pub kubernetes: String,
    pub arches: Vec<String>,
    /// The copy of the release manifest.
    pub release: Option<FileEntry>,
    pub cni_manifest: Option<CniEntry>,
    pub binaries: Vec<BinaryEntry>,
    pub images: Vec<ImageEntry>,
    /// Every file of the bundle (binaries, blobs, the release manifest, the CNI manifest),
    /// sorted by path.
    pub files: Vec<FileEntry>,
}

impl Index {
    fn skeleton(cluster: &str, kubernetes: &str, arches: &[String]) -> Index {
        Index {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            complete: false,
            cluster: cluster.into(),
            kubernetes: kubernetes.into(),
            arches: arches.to_vec(),
            release: None,
            cni_manifest: None,
            binaries: Vec::new(),
            images: Vec::new(),
            files: Vec::new(),
        }
    }

    /// The bytes of every file.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The directory of a bundle's image blobs (files named by their sha256 hex).
pub fn blob_dir(bundle: &Path) -> PathBuf {
    bundle.join(IMAGES_DIR).join("sha256")
}

/// Where a bundle keeps the CNI manifest of this sha256 (hex).
pub fn cni_manifest_path(bundle: &Path, sha256: &str) -> PathBuf {
    bundle.join(cni_rel_path(sha256))
}

fn cni_rel_path(sha256: &str) -> String {
    format!("{META_DIR}/cni/{sha256}.yaml")
}

fn release_rel_path(version: &str) -> String {
    format!("{META_DIR}/release-{version}.yaml")
}

fn blob_rel_path(digest: &str) -> String {
    format!(
        "{IMAGES_DIR}/sha256/{}",
        digest.strip_prefix("sha256:").unwrap_or(digest)
    )
}

/// Reads a bundle's index.json, complete or not.
fn read_index_any(dir: &Path) -> Result<Index, BundleError> {
    let path = dir.join(INDEX);
    let not = |reason: String| BundleError::NotABundle {
        dir: dir.to_path_buf(),
        reason,
    };
    let text = match crate::inventory::read_text_file(&path, MAX_INDEX_BYTES, "a bundle index") {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not(format!("there is no {INDEX}")));
        }
        Err(e) => return Err(not(format!("cannot read {INDEX}: {e}"))),
    };
    let probe: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| not(format!("{INDEX} is not JSON: {e}")))?;
    if probe["kind"] != KIND || probe["apiVersion"] != API_VERSION {
        return Err(not(format!(
            "{INDEX} is not of kind {KIND} ({API_VERSION}) (an OCI layout's index.json, say)"
        )));
    }
    serde_json::from_value(probe).map_err(|e| BundleError::Io {
        path,
        message: format!("not a valid bundle index: {e}"),
    })
}

/// Reads the index.json of a complete bundle.
pub fn read_index(dir: &Path) -> Result<Index, BundleError> {
    let ix = read_index_any(dir)?;
    if !ix.complete {
        return Err(BundleError::Incomplete {
            dir: dir.to_path_buf(),
        });
    }
    Ok(ix)
}

/// The release manifest a bundle carries, checked against its index entry: (origin, manifest).
pub fn load_release(dir: &Path) -> Result<Option<(String, ReleaseManifest)>, BundleError> {
    let ix = read_index(dir)?;
    let Some(entry) = ix.release else {
        return Ok(None);
    };
    let path = dir.join(&entry.path);
    let text = crate::inventory::read_text_file(
        &path,
        crate::release::MAX_MANIFEST_BYTES,
        "a release manifest",
    )
    .map_err(|e| io_err(&path, e))?;
    let actual = artifacts::sha256_hex(text.as_bytes());
    if actual != entry.sha256 {
        return Err(io_err(
            &path,
            format!(
                "sha256 {actual}, not the {} the bundle's {INDEX} lists; the bundle is damaged: run `kubeforge artifacts fetch` again",
                entry.sha256
            ),
        ));
    }
    let origin = path.display().to_string();
    let m = ReleaseManifest::parse(&origin, &text).map_err(|e| io_err(&path, e))?;
    Ok(Some((origin, m)))
}

/// Whether the cluster installs the OpenStack cloud provider (and so needs its images).
fn uses_cloud_provider(c: &Cluster) -> bool {
    crate::desired::cloud_provider_external(c)
}

/// The images a bundle carries: what [`crate::steps::images::wanted`] picks for a control
/// plane (every role's images: a worker's are a subset), i.e. the release's core images, the
/// built-in CNI's when the CNI is flannel, and the OpenStack add-on's when the cloud provider
/// is installed. Each must be pinned by digest: only a digest proves what the bundle holds.
pub fn bundle_images(
    c: &Cluster,
    m: &ReleaseManifest,
    cloud_provider: bool,
) -> Result<Vec<(String, Image)>, BundleError> {
    let mut out = Vec::new();
    for (key, image) in
        crate::steps::images::selection(c, m, crate::model::Role::ControlPlane, cloud_provider)
    {
        if image.digest.is_none() {
            return Err(BundleError::Refused(format!(
                "image {} ({key} of the release manifest of Kubernetes {}) is not pinned by digest: \
                 a bundle holds only what a digest proves; pin it as repo:tag@sha256:<digest> in the release manifest",
                image.tag_ref(),
                m.kubernetes
            )));
        }
        out.push((key, image));
    }
    Ok(out)
}

/// The arches to fetch: the ones asked for (each one the release lists), else all the release
/// lists.
pub fn select_arches(m: &ReleaseManifest, asked: &[String]) -> Result<Vec<String>, BundleError> {
    let have = m.arches();
    if asked.is_empty() {
        return Ok(have);
    }
    let mut out = BTreeSet::new();
    for a in asked {
        let a = a.trim();
        if !have.iter().any(|h| h == a) {
            return Err(BundleError::Refused(format!(
                "--arch {a:?}: the release manifest of Kubernetes {} lists {}",
                m.kubernetes,
                have.join(", ")
            )));
        }
        out.insert(a.to_string());
    }
    Ok(out.into_iter().collect())
}

/// Refuses artifact paths that would land on the bundle's own files.
fn check_artifact_paths(list: &[&Artifact]) -> Result<(), BundleError> {
    for a in list {
        let p = a.path.as_str();
        let first = p.split('/').next().unwrap_or("");
        if p.is_empty()
            || p == INDEX
            || first == IMAGES_DIR
            || first == META_DIR
            || p.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(BundleError::Refused(format!(
                "{}: its path {p:?} in the release manifest is not a relative file path outside {INDEX}, {IMAGES_DIR}/ and {META_DIR}/ (the bundle's own files)",
                artifacts::label(a)
            )));
        }
    }
    Ok(())
}

/// The text of the release manifest `loaded` uses for its version: the built-in file's, or
/// the file it was read from.
fn manifest_text(loaded: &Loaded) -> Result<String, BundleError> {
    let v = &loaded.cluster.version;
    let origin = loaded
        .catalog
        .origin(v)
        .ok_or_else(|| BundleError::NoManifest(v.to_string()))?;
    if let Some((_, text)) = BUILTIN_MANIFESTS.iter().find(|(o, _)| *o == origin) {
        return Ok(text.to_string());
    }
    let path = Path::new(origin);
    crate::inventory::read_text_file(
        path,
        crate::release::MAX_MANIFEST_BYTES,
        "a release manifest",
    )
    .map_err(|e| io_err(path, e))
}

/// What `kubeforge artifacts fetch` does.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub dir: PathBuf,
    /// Empty: every arch of the release.
    pub arches: Vec<String>,
    pub bars: bool,
}

/// What a fetch did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dir: PathBuf,
    pub cluster: String,
    pub kubernetes: String,
    pub arches: Vec<String>,
    pub binaries: usize,
    pub images: usize,
    pub blobs: usize,
    /// Every file the index lists, and their bytes.
    pub files: usize,
    pub bytes: u64,
    /// Files this run wrote into the bundle (the rest were there, verified).
    pub added_files: usize,
    pub added_bytes: u64,
}

/// The default bundle directory: `spec.artifacts.bundle` when given, else `<cluster>-bundle`
/// beside the inventory.
pub fn default_dir(loaded: &Loaded) -> PathBuf {
    if let Some(b) = &loaded.cluster.artifacts.bundle {
        return b.clone();
    }
    loaded
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(format!("{}-bundle", loaded.cluster.name))
}

/// Makes `dir` ready for a fetch: created (0700) when missing; an empty directory or an
/// existing bundle (complete or not) is taken; anything else is refused.
fn prepare_dir(dir: &Path) -> Result<(), BundleError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err(dir, e))?;
            return Ok(());
        }
        Err(e) => return Err(io_err(dir, e)),
        Ok(_) => {}
    }
    let m = std::fs::metadata(dir).map_err(|e| io_err(dir, e))?;
    if !m.is_dir() {
        return Err(BundleError::NotABundle {
            dir: dir.to_path_buf(),
            reason: "it exists and is not a directory".into(),
        });
    }
    if std::fs::symlink_metadata(dir.join(INDEX)).is_ok() {
        read_index_any(dir)?;
        return Ok(());
    }
    let empty = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .next()
        .is_none();
    if !empty {
        return Err(BundleError::NotABundle {
            dir: dir.to_path_buf(),
            reason: format!("it exists, is not empty and holds no {INDEX}"),
        });
    }
    Ok(())
}

/// Writes `data` to `dest` through a temporary file beside it.
fn write_atomic(dest: &Path, data: &[u8], mode: u32) -> Result<(), BundleError> {
    use std::io::Write;
    if let Some(p) = dest.parent() {
        std::fs::create_dir_all(p).map_err(|e| io_err(p, e))?;
    }
    let tmp = dest.with_extension(format!("kubeforge-tmp.{}", std::process::id()));
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(&tmp, e));
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(dest, e)
    })
}

fn write_index(dir: &Path, ix: &Index) -> Result<(), BundleError> {
    let mut text = serde_json::to_vec_pretty(ix).map_err(|e| io_err(&dir.join(INDEX), e))?;
    text.push(b'\n');
    write_atomic(&dir.join(INDEX), &text, 0o644)
}

/// The sha256 (hex) and size of a regular file at `path`, or None when there is none. A
/// symlink there is not followed (the bundle's files are its own).
fn hash_existing(path: &Path) -> Result<Option<(String, u64)>, BundleError> {
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            tracing::warn!("{} is a symlink; replacing it", path.display());
            std::fs::remove_file(path).map_err(|e| io_err(path, e))?;
            return Ok(None);
        }
        Err(e) => return Err(io_err(path, e)),
    };
    let meta = f.metadata().map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(io_err(path, "is not a regular file; remove it"));
    }
    let mut h = Sha256::new();
    let mut r = f;
    std::io::copy(&mut r, &mut HashWriter(&mut h)).map_err(|e| io_err(path, e))?;
    Ok(Some((hex::encode(h.finalize()), meta.len())))
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether the bundle already holds `sha256` at `path` (a file with another digest is
/// removed, with a warning).
fn holds(path: &Path, sha256: &str) -> Result<Option<u64>, BundleError> {
    match hash_existing(path)? {
        Some((actual, size)) if actual == sha256 => Ok(Some(size)),
        Some((actual, _)) => {
            tracing::warn!(
                "{} has sha256 {actual}, not the {sha256} it should; fetching it again",
                path.display()
            );
            std::fs::remove_file(path).map_err(|e| io_err(path, e))?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Copies a verified cache entry into the bundle at `dest`, its sha256 checked again while it
/// is copied.
fn copy_into(src: &Path, dest: &Path, a: &Artifact) -> Result<u64, BundleError> {
    use std::io::{Read, Write};
    if let Some(p) = dest.parent() {
        std::fs::create_dir_all(p).map_err(|e| io_err(p, e))?;
    }
    let tmp = dest.with_extension(format!("kubeforge-tmp.{}", std::process::id()));
    let r = (|| -> Result<(String, u64), BundleError> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(src)
            .map_err(|e| io_err(src, e))?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut n_total = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| io_err(src, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| io_err(&tmp, e))?;
            n_total += n as u64;
        }
        out.sync_all().map_err(|e| io_err(&tmp, e))?;
        Ok((hex::encode(h.finalize()), n_total))
    })();
    let (actual, size) = match r {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if actual != a.sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(BundleError::Artifact(ArtifactError::Checksum {
            name: artifacts::label(a),
            source_url: src.display().to_string(),
            expected: a.sha256.clone(),
            actual,
        }));
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(dest, e)
    })?;
    Ok(size)
}

/// The image entry of the index from the per-arch fetches of one image.
fn image_entry(key: &str, image: &Image, per_arch: &[(String, FetchedImage)]) -> ImageEntry {
    let first = &per_arch[0].1;
    let blob = |b: &crate::images::BlobInfo| BlobEntry {
        digest: b.digest.clone(),
        size: b.size,
        media_type: b.media_type.clone(),
    };
    let mut seen = BTreeSet::new();
    let mut blobs = Vec::new();
    let mut platforms = Vec::new();
    for (arch, f) in per_arch {
        for b in f.blobs() {
            if seen.insert(b.digest.clone()) {
                blobs.push(blob(b));
            }
        }
        for m in &f.manifests {
            platforms.push(PlatformEntry {
                arch: arch.clone(),
                platform: m.platform.clone(),
                manifest: m.manifest.digest.clone(),
            });
        }
    }
    ImageEntry {
        key: key.to_string(),
        reference: image.reference(),
        index: blob(&first.index),
        platforms,
        blobs,
    }
}

/// The flat list of every file, sorted by path, each once.
pub fn files_of(ix: &Index) -> Vec<FileEntry> {
    let mut files: BTreeMap<String, FileEntry> = BTreeMap::new();
    let mut add = |path: &str, sha256: &str, size: u64| {
        files.insert(
            path.to_string(),
            FileEntry {
                path: path.to_string(),
                sha256: sha256.to_string(),
                size,
            },
        );
    };
    for b in &ix.binaries {
        add(&b.path, &b.sha256, b.size);
    }
    for i in &ix.images {
        for b in &i.blobs {
            add(
                &blob_rel_path(&b.digest),
                b.digest.strip_prefix("sha256:").unwrap_or(&b.digest),
                b.size,
            );
        }
    }
    if let Some(r) = &ix.release {
        add(&r.path, &r.sha256, r.size);
    }
    if let Some(c) = &ix.cni_manifest {
        add(&c.path, &c.sha256, c.size);
    }
    files.into_values().collect()
}

/// The names of the blob files in a bundle now.
fn blob_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(blob_dir(dir))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `kubeforge artifacts fetch`: everything the inventory's cluster needs, into `opts.dir`,
/// verified. What the bundle already holds (verified again) is not downloaded again.
pub async fn fetch(loaded: &Loaded, opts: &FetchOptions) -> Result<Summary, BundleError> {
    use futures_util::StreamExt;
    let c = &loaded.cluster;
    let m = loaded
        .catalog
        .get(&c.version)
        .ok_or_else(|| BundleError::NoManifest(c.version.to_string()))?;
    let arches = select_arches(m, &opts.arches)?;
    let images = bundle_images(c, m, uses_cloud_provider(c))?;
    let binaries: Vec<&Artifact> = m
        .artifacts
        .iter()
        .filter(|a| arches.contains(&a.arch))
        .collect();
    check_artifact_paths(&binaries)?;
    let mut platforms = Vec::new();
    for a in &arches {
        platforms.push(
            Platform::from_arch(a)
                .ok_or_else(|| BundleError::Refused(format!("no image platform for arch {a}")))?,
        );
    }
    let release_text = manifest_text(loaded)?;
    let dir = &opts.dir;
    prepare_dir(dir)?;
    let mut ix = Index::skeleton(&c.name, &c.version.to_string(), &arches);
    write_index(dir, &ix)?;
    let mut added_files = 0usize;
    let mut added_bytes = 0u64;

    // 1. binaries: what the bundle lacks comes through the operator's cache (and the
    // inventory's mirror, unless that is this very bundle)
    let mut todo = Vec::new();
    for a in &binaries {
        let dest = dir.join(&a.path);
        match holds(&dest, &a.sha256)? {
            Some(size) => ix.binaries.push(binary_entry(a, size)),
            None => todo.push((*a).clone()),
        }
    }
    if !todo.is_empty() {
        let mirror = if c.artifacts.bundle.is_some() {
            None
        } else {
            c.artifacts.mirror.clone()
        };
        let store = Store::new(&c.artifacts.cache_dir, mirror)?;
        let cached = store.fetch_all(&todo, opts.bars).await?;
        for (a, src) in todo.iter().zip(cached) {
            let size = copy_into(&src, &dir.join(&a.path), a)?;
            added_files += 1;
            added_bytes += size;
            ix.binaries.push(binary_entry(a, size));
        }
    }
    ix.binaries
        .sort_by(|x, y| (&x.arch, &x.path).cmp(&(&y.arch, &y.path)));

    // 2. images: every blob verified into images/sha256 (what is there is hashed again)
    let before = blob_names(dir);
    let pimages: Vec<crate::engine::PlatformImage> = images
        .iter()
        .flat_map(|(_, i)| {
            arches.iter().map(|a| crate::engine::PlatformImage {
                image: i.clone(),
                arch: a.clone(),
            })
        })
        .collect();
    let store = ImageStore::new(
        &dir.join(IMAGES_DIR),
        crate::workflow::apply::registry_options(c, &pimages),
    )?;
    let jobs: Vec<(usize, String, Platform)> = images
        .iter()
        .enumerate()
        .flat_map(|(n, _)| {
            arches
                .iter()
                .zip(&platforms)
                .map(move |(a, p)| (n, a.clone(), *p))
        })
        .collect();
    let results: Vec<Result<(usize, String, FetchedImage), ImageError>> =
        futures_util::stream::iter(jobs.into_iter().map(|(n, arch, p)| {
            let store = &store;
            let image = &images[n].1;
            async move {
                tracing::info!("fetch {image} (linux/{arch})");
                let f = store.fetch(image, p).await?;
                Ok((n, arch, f))
            }
        }))
        .buffer_unordered(4)
        .collect()
        .await;
    let mut by_image: BTreeMap<usize, Vec<(String, FetchedImage)>> = BTreeMap::new();
    for r in results {
        let (n, arch, f) = r?;
        by_image.entry(n).or_default().push((arch, f));
    }
    for (n, mut per_arch) in by_image {
        per_arch.sort_by(|a, b| a.0.cmp(&b.0));
        let (key, image) = &images[n];
        ix.images.push(image_entry(key, image, &per_arch));
    }
    let _ = std::fs::remove_dir(dir.join(IMAGES_DIR).join("partial"));
    let after = blob_names(dir);
    let new_blobs: BTreeSet<&String> = after.difference(&before).collect();

    // 3. the CNI manifest from a URL
    if let Cni::Manifest {
        source: ManifestSource::Url(u),
        sha256,
    } = &c.cni
    {
        let rel = cni_rel_path(sha256);
        let dest = dir.join(&rel);
        let size = match holds(&dest, sha256)? {
            Some(size) => size,
            None => {
                let bytes = artifacts::fetch_bounded(
                    u,
                    artifacts::MANIFEST_LIMIT,
                    artifacts::MANIFEST_TIMEOUT,
                )
                .await
                .map_err(|e| BundleError::CniManifest(e.to_string()))?;
                let actual = artifacts::sha256_hex(&bytes);
                if &actual != sha256 {
                    return Err(BundleError::CniManifest(format!(
                        "{}: checksum mismatch: expected sha256 {sha256}, got {actual}; nothing was stored",
                        crate::util::redact_url(u)
                    )));
                }
                write_atomic(&dest, &bytes, 0o644)?;
                added_files += 1;
                added_bytes += bytes.len() as u64;
                bytes.len() as u64
            }
        };
        ix.cni_manifest = Some(CniEntry {
            url: crate::util::redact_url(u),
            path: rel,
            sha256: sha256.clone(),
            size,
        });
    }

    // 4. the release manifest's copy
    let rel = release_rel_path(&c.version.to_string());
    let sha = artifacts::sha256_hex(release_text.as_bytes());
    if holds(&dir.join(&rel), &sha)?.is_none() {
        write_atomic(&dir.join(&rel), release_text.as_bytes(), 0o644)?;
        added_files += 1;
        added_bytes += release_text.len() as u64;
    }
    ix.release = Some(FileEntry {
        path: rel,
        sha256: sha,
        size: release_text.len() as u64,
    });

    ix.files = files_of(&ix);
    for f in &ix.files {
        if f.path.starts_with(&format!("{IMAGES_DIR}/")) && new_blobs.contains(&f.sha256) {
            added_files += 1;
            added_bytes += f.size;
        }
    }
    ix.complete = true;
    write_index(dir, &ix)?;
    Ok(Summary {
        dir: dir.clone(),
        cluster: ix.cluster.clone(),
        kubernetes: ix.kubernetes.clone(),
        arches: ix.arches.clone(),
        binaries: ix.binaries.len(),
        images: ix.images.len(),
        blobs: ix
            .files
            .iter()
            .filter(|f| f.path.starts_with(&format!("{IMAGES_DIR}/")))
            .count(),
        files: ix.files.len(),
        bytes: ix.total_bytes(),
        added_files,
        added_bytes,
    })
}

fn binary_entry(a: &Artifact, size: u64) -> BinaryEntry {
    BinaryEntry {
        component: a.component.clone(),
        version: a.version.clone(),
        arch: a.arch.clone(),
        path: a.path.clone(),
        sha256: a.sha256.clone(),
        size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    fn load(text: &str) -> Loaded {
        crate::inventory::load_str(Path::new("t.yaml"), text, Path::new("/"), &|_| None)
            .unwrap_or_else(|e| panic!("{}", e.render(false)))
    }

    fn inventory(cni: &str) -> String {
        format!(
            "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: t}}\nspec:\n  kubernetes: {{version: 1.33.5{cni}}}\n  hosts:\n    - {{name: cp1, address: 10.0.0.11, role: control-plane}}\n    - {{name: w1, address: 10.0.0.21, role: worker}}\n"
        )
    }

    #[test]
    fn a_bundle_holds_every_roles_images_as_push_mode_picks_them() {
        let l = load(&inventory(""));
        let m = l.catalog.get(&l.cluster.version).unwrap();
        let got: Vec<Image> = bundle_images(&l.cluster, m, false)
            .unwrap()
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        // the same selection as image mode push, for the role that runs the most
        let cp = crate::steps::images::wanted(&l.cluster, m, Role::ControlPlane, false).unwrap();
        assert_eq!(got, cp);
        let w = crate::steps::images::wanted(&l.cluster, m, Role::Worker, false).unwrap();
        assert!(w.iter().all(|i| got.contains(i)), "a worker's are a subset");
        assert!(got.len() > w.len(), "the control plane's static pods too");
        let keys: Vec<String> = bundle_images(&l.cluster, m, false)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(
            keys.iter().any(|k| k.starts_with("cni.flannel.")),
            "{keys:?}"
        );
        assert!(!keys.iter().any(|k| k.starts_with("addons.")), "{keys:?}");
        // no flannel images without flannel
        let l = load(&inventory(", cni: none"));
        let keys: Vec<String> = bundle_images(&l.cluster, m, false)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(keys.iter().all(|k| k.starts_with("images.")), "{keys:?}");
        assert_eq!(keys.len(), crate::release::IMAGES.len());
    }

    #[test]
    fn unpinned_images_and_unknown_arches_are_refused() {
        let l = load(&inventory(""));
        // the built-in 1.34.1 manifest has OpenStack add-on images pinned by tag only
        let c = crate::release::Catalog::builtin().unwrap();
        let m = c.get(&semver::Version::new(1, 34, 1)).unwrap();
        let e = bundle_images(&l.cluster, m, true).unwrap_err().to_string();
        assert!(
            e.contains("addons.openstack.images.") && e.contains("not pinned by digest"),
            "{e}"
        );
        assert!(bundle_images(&l.cluster, m, false).is_ok());
        assert_eq!(select_arches(m, &[]).unwrap(), vec!["amd64", "arm64"]);
        assert_eq!(
            select_arches(m, &["arm64".into(), "arm64".into()]).unwrap(),
            vec!["arm64"]
        );
        let e = select_arches(m, &["riscv64".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("riscv64") && e.contains("amd64, arm64"), "{e}");
    }

    #[test]
    fn artifact_paths_may_not_land_on_the_bundles_own_files() {
        let mut a = Artifact {
            component: "runc".into(),
            version: "1.0.0".into(),
            arch: "amd64".into(),
            url: "https://example.invalid/runc".into(),
            path: "runc/v1/runc.amd64".into(),
            sha256: "ab".repeat(32),
            source: None,
            size: None,
        };
        assert!(check_artifact_paths(&[&a]).is_ok());
        for bad in [
            "index.json",
            "images/sha256/x",
            "kubeforge/release-1.yaml",
            "a//b",
            "a/./b",
        ] {
            a.path = bad.into();
            assert!(check_artifact_paths(&[&a]).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_index_format_lists_every_file_once_and_round_trips() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let blob = |c: char, size: u64, mt: &str| BlobEntry {
            digest: d(c),
            size,
            media_type: mt.into(),
        };
        let mut ix = Index::skeleton("prod", "1.33.5", &["amd64".into()]);
        ix.complete = true;
        ix.binaries.push(BinaryEntry {
            component: "runc".into(),
            version: "1.3.4".into(),
            arch: "amd64".into(),
            path: "runc/v1.3.4/runc.amd64".into(),
            sha256: "c".repeat(64),
            size: 10,
        });
        // two images sharing a layer
        let index_mt = "application/vnd.oci.image.index.v1+json";
        let layer_mt = "application/vnd.oci.image.layer.v1.tar";
        for (k, idx) in [("images.pause", 'a'), ("images.etcd", 'b')] {
            ix.images.push(ImageEntry {
                key: k.into(),
                reference: format!("registry.k8s.io/x:1@{}", d(idx)),
                index: blob(idx, 100, index_mt),
                platforms: vec![PlatformEntry {
                    arch: "amd64".into(),
                    platform: "linux/amd64".into(),
                    manifest: d('e'),
                }],
                blobs: vec![blob(idx, 100, index_mt), blob('f', 7, layer_mt)],
            });
        }
        ix.release = Some(FileEntry {
            path: release_rel_path("1.33.5"),
            sha256: "d".repeat(64),
            size: 5,
        });
        ix.files = files_of(&ix);
        let paths: Vec<&str> = ix.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                format!("images/sha256/{}", "a".repeat(64)).as_str(),
                &format!("images/sha256/{}", "b".repeat(64)),
                &format!("images/sha256/{}", "f".repeat(64)),
                "kubeforge/release-1.33.5.yaml",
                "runc/v1.3.4/runc.amd64",
            ]
        );
        assert_eq!(ix.total_bytes(), 100 + 100 + 7 + 5 + 10);
        let text = serde_json::to_string_pretty(&ix).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["kind"], KIND);
        assert_eq!(v["complete"], true);
        assert_eq!(v["files"][0]["sha256"], "a".repeat(64), "hex, no prefix");
        assert_eq!(v["images"][0]["index"]["digest"], d('a'));
        assert_eq!(v["images"][0]["index"]["mediaType"], index_mt);
        assert_eq!(v["binaries"][0]["sha256"], "c".repeat(64));
        assert_eq!(v["release"]["path"], "kubeforge/release-1.33.5.yaml");
        assert!(v["cniManifest"].is_null());
        // written and read back
        let dir = tempfile::tempdir().unwrap();
        write_index(dir.path(), &ix).unwrap();
        assert_eq!(read_index(dir.path()).unwrap(), ix);
        ix.complete = false;
        write_index(dir.path(), &ix).unwrap();
        assert!(matches!(
            read_index(dir.path()),
            Err(BundleError::Incomplete { .. })
        ));
        assert_eq!(read_index_any(dir.path()).unwrap(), ix);
    }

    #[test]
    fn only_an_empty_directory_or_a_bundle_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new/bundle");
        prepare_dir(&fresh).unwrap();
        assert!(fresh.is_dir());
        prepare_dir(&fresh).unwrap(); // empty
        std::fs::write(fresh.join("notes.txt"), "mine").unwrap();
        let e = prepare_dir(&fresh).unwrap_err().to_string();
        assert!(e.contains("not empty") && e.contains("not a bundle"), "{e}");
        // an OCI layout's index.json is not a bundle's
        std::fs::write(fresh.join(INDEX), r#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        let e = prepare_dir(&fresh).unwrap_err().to_string();
        assert!(e.contains("not of kind Bundle"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(prepare_dir(&file).is_err());
        write_index(&fresh, &Index::skeleton("t", "1.33.5", &[])).unwrap();
        prepare_dir(&fresh).unwrap();
    }
}
