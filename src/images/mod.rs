//! Container images for air-gapped sites, on the operator's machine: each image a release needs
//! is pulled once, by the digest it is pinned by, from its registry or a mirror; every manifest
//! and blob is checked against its sha256 while it streams and kept in the content-addressed
//! cache beside the binaries (`<cache>/sha256/<hex>`: a blob and a binary with the same digest
//! are the same bytes). From the cache kubeforge then writes an OCI archive of the images a node
//! lacks (for `ctr -n k8s.io images import`, see [`archive`]) or copies images into a site
//! registry ([`push`]).
//!
//! The cache follows [`crate::artifacts`]: private directories, no symlinks opened, a file's
//! digest checked again before its first use in a run, downloads written to a temporary file and
//! renamed into place only once verified.

pub mod archive;
pub mod error;
pub mod media;
pub mod push;
pub mod registry;

pub use archive::{archive_index_json, archive_size};
pub use error::ImageError;
pub use media::Platform;
pub use push::PushReport;
pub use registry::{Credentials, RegistryClient, RegistryOptions};

use crate::release::Image;
use error::io_err;
use futures_util::StreamExt;
use media::{ManifestKind, describe_platform, hex_of, is_sha256_digest, manifest_kind};
use registry::Endpoint;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;

/// One blob of an image: a manifest, a config or a layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct BlobInfo {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// The part of an image for one platform.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlatformImage {
    /// `linux/amd64`, `linux/arm64/v8`: as the index names it.
    pub platform: String,
    pub manifest: BlobInfo,
    pub config: BlobInfo,
    pub layers: Vec<BlobInfo>,
}

/// An image whose blobs are all in the cache, verified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FetchedImage {
    /// `repo:tag`, the name containerd gives the image.
    pub reference: String,
    pub repo: String,
    pub tag: String,
    /// The top-level manifest the image is pinned by: an index (manifest list), or a manifest
    /// when the image has a single platform.
    pub index: BlobInfo,
    /// The platforms fetched, in the index's order (the one asked for, or all of them).
    pub manifests: Vec<PlatformImage>,
}

impl FetchedImage {
    /// The pinned digest (of the index).
    pub fn digest(&self) -> &str {
        &self.index.digest
    }

    /// The digest of the (first) platform manifest.
    pub fn manifest_digest(&self) -> &str {
        &self.manifests[0].manifest.digest
    }

    /// Every blob once: the index, then per platform its manifest, config and layers.
    pub fn blobs(&self) -> Vec<&BlobInfo> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let all = std::iter::once(&self.index).chain(
            self.manifests
                .iter()
                .flat_map(|m| [&m.manifest, &m.config].into_iter().chain(&m.layers)),
        );
        for b in all {
            if seen.insert(&b.digest) {
                out.push(b);
            }
        }
        out
    }

    /// The bytes of all its blobs, each counted once.
    pub fn total_bytes(&self) -> u64 {
        self.blobs().iter().map(|b| b.size).sum()
    }
}

/// Which manifests of an index to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Select {
    One(Platform),
    /// Every image manifest of the index (a copy into a registry that checks an index's
    /// references, as the distribution registry does).
    All,
}

/// Opens without following a symlink at the last component.
const NOFOLLOW: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// What the cache holds for a digest.
pub(crate) enum Cached {
    Good(PathBuf),
    Missing,
    /// A file whose digest (or size) is not the one it is named by; it was removed.
    Bad {
        actual: String,
    },
}

/// The image cache: blobs under `<cache>/sha256/<hex>`, and a registry client.
pub struct ImageStore {
    cache: PathBuf,
    registry: RegistryClient,
    /// Digests whose cache entry was hashed in this run.
    verified: Mutex<HashSet<String>>,
    seq: AtomicU64,
    /// Blobs and manifests fetched over the network by this store (for progress and tests).
    downloads: AtomicU64,
    /// Offline mode: a directory of blobs named by their sha256 hex (a bundle's
    /// `images/sha256`, written by `kubeforge artifacts fetch`) consulted instead of any
    /// registry; no registry is contacted at all.
    offline: Option<PathBuf>,
}

impl ImageStore {
    /// A store over the artifact cache at `cache` (created private if missing; refused if
    /// someone else could write to it, as [`crate::artifacts::Store`] does).
    pub fn new(cache: &Path, options: RegistryOptions) -> Result<ImageStore, ImageError> {
        // the same directory checks as the binaries' cache: one policy for one cache
        crate::artifacts::Store::new(cache, None)?;
        Ok(ImageStore {
            cache: cache.to_path_buf(),
            registry: RegistryClient::new(options)?,
            verified: Mutex::new(HashSet::new()),
            seq: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
            offline: None,
        })
    }

    /// A store that takes every manifest and blob from `blobs` (a directory of files named by
    /// their sha256 hex, as a bundle's `images/sha256`) instead of a registry: each is verified
    /// against its digest (and size) while it is copied into the cache at `cache`. A blob the
    /// directory lacks is an error; no registry is ever contacted.
    pub fn offline(cache: &Path, blobs: &Path) -> Result<ImageStore, ImageError> {
        let meta = std::fs::metadata(blobs).map_err(|e| io_err(blobs, e))?;
        if !meta.is_dir() {
            return Err(io_err(blobs, "is not a directory of image blobs"));
        }
        let mut s = ImageStore::new(cache, RegistryOptions::default())?;
        s.offline = Some(blobs.to_path_buf());
        Ok(s)
    }

    /// The directory of blobs an offline store reads, if it is one.
    pub fn offline_dir(&self) -> Option<&Path> {
        self.offline.as_deref()
    }

    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    pub fn registry_mut(&mut self) -> &mut RegistryClient {
        &mut self.registry
    }

    /// How many manifests and blobs this store downloaded so far.
    pub fn downloads(&self) -> u64 {
        self.downloads.load(Ordering::Relaxed)
    }

    /// Where the cache keeps the blob of `digest` (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.cache.join("sha256").join(hex_of(digest))
    }

    fn temp_path(&self, digest: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.cache.join("partial").join(format!(
            "{}.{}.{n}.blob.part",
            hex_of(digest),
            std::process::id()
        ))
    }

    fn mark_verified(&self, digest: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.to_string());
    }

    /// The cache entry of `digest`: its digest (and size, when known) checked once per run. A
    /// symlink or a file that does not match is removed.
    pub(crate) async fn check_cached(
        &self,
        digest: &str,
        size: Option<u64>,
    ) -> Result<Cached, ImageError> {
        let dest = self.blob_path(digest);
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(digest);
        // O_NONBLOCK: a FIFO planted here must not block the open (regular files ignore it)
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(NOFOLLOW | libc::O_NONBLOCK)
            .open(&dest)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cached::Missing),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                tracing::warn!(
                    "the cache entry {} is a symlink, not a file kubeforge wrote; removing it",
                    dest.display()
                );
                std::fs::remove_file(&dest).map_err(|e| io_err(&dest, e))?;
                return Ok(Cached::Missing);
            }
            Err(e) => return Err(io_err(&dest, e)),
        };
        let meta = f.metadata().map_err(|e| io_err(&dest, e))?;
        if !meta.is_file() {
            return Err(io_err(&dest, "is not a regular file; remove it"));
        }
        if size.is_some_and(|s| s != meta.len()) {
            tracing::warn!(
                "the cache entry {} has {} bytes, not {}; removing it",
                dest.display(),
                meta.len(),
                size.unwrap_or(0)
            );
            std::fs::remove_file(&dest).map_err(|e| io_err(&dest, e))?;
            return Ok(Cached::Bad {
                actual: format!("a file of {} bytes", meta.len()),
            });
        }
        if known {
            return Ok(Cached::Good(dest));
        }
        let path = dest.clone();
        let actual = tokio::task::spawn_blocking(move || sha256_reader(f))
            .await
            .map_err(|e| io_err(&path, e))?
            .map_err(|e| io_err(&path, e))?;
        if actual != digest {
            tracing::warn!(
                "the cache entry {} has {actual}, not the {digest} it is named by; removing it",
                dest.display()
            );
            std::fs::remove_file(&dest).map_err(|e| io_err(&dest, e))?;
            return Ok(Cached::Bad { actual });
        }
        self.mark_verified(digest);
        Ok(Cached::Good(dest))
    }

    /// The path of a verified cache entry for a blob of `image`, or an error naming both
    /// digests (the damaged entry is removed, so that the next fetch downloads it again).
    pub(crate) async fn verified_blob(
        &self,
        image: &str,
        b: &BlobInfo,
    ) -> Result<PathBuf, ImageError> {
        match self.check_cached(&b.digest, Some(b.size)).await? {
            Cached::Good(p) => Ok(p),
            Cached::Missing => Err(ImageError::Invalid {
                image: image.to_string(),
                message: format!(
                    "the blob {} is not in the cache {}; fetch the image again",
                    b.digest,
                    self.cache.display()
                ),
            }),
            Cached::Bad { actual } => Err(ImageError::DigestMismatch {
                image: image.to_string(),
                what: format!("cached blob {}", b.media_type),
                expected: b.digest.clone(),
                actual,
            }),
        }
    }

    /// Writes verified bytes into the cache (temporary file, then rename).
    fn store_bytes(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        use std::io::Write;
        let tmp = self.temp_path(digest);
        let dest = self.blob_path(digest);
        let r = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(NOFOLLOW)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.flush()
        })();
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(&tmp, e));
        }
        std::fs::rename(&tmp, &dest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(&dest, e)
        })?;
        self.mark_verified(digest);
        Ok(())
    }

    /// Fetches `image` for `platform`: the index by its pinned digest, the platform's manifest,
    /// its config and layers, each verified, into the cache. What the cache already holds is
    /// not downloaded again (its digest is checked once per run).
    pub async fn fetch(
        &self,
        image: &Image,
        platform: Platform,
    ) -> Result<FetchedImage, ImageError> {
        self.fetch_with(image, Select::One(platform)).await
    }

    /// Fetches every platform of `image` (for a copy into a site registry).
    pub async fn fetch_all_platforms(&self, image: &Image) -> Result<FetchedImage, ImageError> {
        self.fetch_with(image, Select::All).await
    }

    async fn fetch_with(&self, image: &Image, sel: Select) -> Result<FetchedImage, ImageError> {
        let name = image.reference();
        let digest = image.digest.clone().ok_or_else(|| ImageError::Unpinned {
            image: name.clone(),
        })?;
        if !is_sha256_digest(&digest) {
            return Err(ImageError::Unpinned { image: name });
        }
        let ep = self.registry.pull_endpoint(&image.repo)?;
        let (top, top_type) = self.manifest(&ep, &name, "index", &digest, None).await?;
        let index_blob = BlobInfo {
            digest: digest.clone(),
            size: top.len() as u64,
            media_type: top_type.clone(),
        };
        let invalid = |message: String| ImageError::Invalid {
            image: name.clone(),
            message,
        };
        let mut manifests = Vec::new();
        match manifest_kind(&top_type) {
            Some(ManifestKind::Index) => {
                let index: media::Index = serde_json::from_slice(&top).map_err(|e| {
                    invalid(format!(
                        "the index {digest} is not a valid image index: {e}"
                    ))
                })?;
                let entries: Vec<&media::Descriptor> = match sel {
                    Select::One(p) => vec![media::select_platform(&index, p).ok_or_else(|| {
                        ImageError::NoPlatform {
                            image: name.clone(),
                            digest: digest.clone(),
                            platform: p.to_string(),
                            available: available(&index),
                        }
                    })?],
                    Select::All => index.manifests.iter().collect(),
                };
                for d in entries {
                    if manifest_kind(&d.media_type) != Some(ManifestKind::Image) {
                        return Err(invalid(format!(
                            "the index {digest} lists {} of media type {:?}; kubeforge takes image manifests only (no nested indexes)",
                            d.digest, d.media_type
                        )));
                    }
                    check_descriptor(&name, d)?;
                    let plat = describe_platform(d);
                    let what = format!("manifest for {plat}");
                    let (body, mt) = self
                        .manifest(&ep, &name, &what, &d.digest, Some(d.size))
                        .await?;
                    if manifest_kind(&mt) != Some(ManifestKind::Image) {
                        return Err(invalid(format!(
                            "the {what} ({}) is of media type {mt:?}, not an image manifest",
                            d.digest
                        )));
                    }
                    manifests.push(self.platform_image(&name, &plat, &d.digest, &body, &mt)?);
                }
            }
            Some(ManifestKind::Image) => {
                // a single-platform image: its config says which platform
                let mut pi = self.platform_image(&name, "", &digest, &top, &top_type)?;
                let config_path = self.blob(&ep, &name, "config", &pi.config).await?;
                if pi.config.size > media::CONFIG_LIMIT {
                    return Err(invalid(format!(
                        "the config {} is over {} bytes",
                        pi.config.digest,
                        media::CONFIG_LIMIT
                    )));
                }
                let raw = std::fs::read(&config_path).map_err(|e| io_err(&config_path, e))?;
                let cp: media::ConfigPlatform = serde_json::from_slice(&raw).map_err(|e| {
                    invalid(format!(
                        "the config {} is not valid JSON: {e}",
                        pi.config.digest
                    ))
                })?;
                pi.platform = match cp.variant.as_deref() {
                    Some(v) if !v.is_empty() => format!("{}/{}/{v}", cp.os, cp.architecture),
                    _ => format!("{}/{}", cp.os, cp.architecture),
                };
                if let Select::One(p) = sel
                    && !p.matches(&cp.os, &cp.architecture, cp.variant.as_deref())
                {
                    return Err(ImageError::NoPlatform {
                        image: name.clone(),
                        digest: digest.clone(),
                        platform: p.to_string(),
                        available: pi.platform.clone(),
                    });
                }
                manifests.push(pi);
            }
            None => {
                return Err(invalid(format!(
                    "the manifest {digest} is of media type {top_type:?}; kubeforge takes OCI and Docker schema 2 images"
                )));
            }
        }
        // configs and layers, three at a time, each once
        let mut seen = HashSet::new();
        let mut todo = Vec::new();
        for m in &manifests {
            let plat = m.platform.clone();
            if seen.insert(m.config.digest.clone()) {
                todo.push((format!("config for {plat}"), m.config.clone()));
            }
            for (i, l) in m.layers.iter().enumerate() {
                if seen.insert(l.digest.clone()) {
                    todo.push((
                        format!("layer {} of {} for {plat}", i + 1, m.layers.len()),
                        l.clone(),
                    ));
                }
            }
        }
        // the futures made first (not by a closure inside the stream): a future that holds a
        // closure over borrowed items is not Send across the higher-ranked lifetimes a step's
        // boxed future needs
        let fetches: Vec<_> = todo
            .iter()
            .map(|(what, b)| self.blob(&ep, &name, what, b))
            .collect();
        let results: Vec<Result<PathBuf, ImageError>> = futures_util::stream::iter(fetches)
            .buffer_unordered(3)
            .collect()
            .await;
        for r in results {
            r?;
        }
        Ok(FetchedImage {
            reference: image.tag_ref(),
            repo: image.repo.clone(),
            tag: image.tag.clone(),
            index: index_blob,
            manifests,
        })
    }

    /// Parses an image manifest into a [`PlatformImage`].
    fn platform_image(
        &self,
        name: &str,
        platform: &str,
        digest: &str,
        body: &[u8],
        media_type: &str,
    ) -> Result<PlatformImage, ImageError> {
        let m: media::Manifest = serde_json::from_slice(body).map_err(|e| ImageError::Invalid {
            image: name.to_string(),
            message: format!("the manifest {digest} is not a valid image manifest: {e}"),
        })?;
        check_descriptor(name, &m.config)?;
        for l in &m.layers {
            check_descriptor(name, l)?;
            if !l.urls.is_empty() {
                tracing::debug!(
                    "{name}: layer {} lists external URLs; kubeforge pulls it from the registry",
                    l.digest
                );
            }
        }
        let info = |d: &media::Descriptor| BlobInfo {
            digest: d.digest.clone(),
            size: d.size,
            media_type: d.media_type.clone(),
        };
        Ok(PlatformImage {
            platform: platform.to_string(),
            manifest: BlobInfo {
                digest: digest.to_string(),
                size: body.len() as u64,
                media_type: media_type.to_string(),
            },
            config: info(&m.config),
            layers: m.layers.iter().map(info).collect(),
        })
    }

    /// A manifest by digest, from the cache or the registry, verified; with its media type.
    async fn manifest(
        &self,
        ep: &Endpoint,
        name: &str,
        what: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<(Vec<u8>, String), ImageError> {
        if size.is_some_and(|s| s > media::MANIFEST_LIMIT) {
            return Err(ImageError::Invalid {
                image: name.to_string(),
                message: format!(
                    "the {what} {digest} is over {} bytes, the limit for a manifest",
                    media::MANIFEST_LIMIT
                ),
            });
        }
        if let Cached::Good(p) = self.check_cached(digest, size).await? {
            let body = std::fs::read(&p).map_err(|e| io_err(&p, e))?;
            if body.len() as u64 <= media::MANIFEST_LIMIT
                && let Some(mt) = media::body_media_type(&body, None)
            {
                return Ok((body, mt));
            }
        }
        if let Some(dir) = &self.offline {
            return self.bundle_manifest(dir, name, what, digest, size).await;
        }
        let url = ep.url(&format!("manifests/{digest}"));
        let http = self.registry.http();
        let resp = self
            .registry
            .send(ep, "pull", &format!("GET the {what} of {name}"), &|| {
                Ok(http
                    .get(url.clone())
                    .header(reqwest::header::ACCEPT, media::MANIFEST_ACCEPT))
            })
            .await?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(ImageError::NotFound {
                image: name.to_string(),
                registry: ep.key.clone(),
                what: format!("{what} {digest}"),
            });
        }
        if !resp.status().is_success() {
            let detail = registry::error_detail(resp).await;
            return Err(ImageError::Http {
                registry: ep.key.clone(),
                action: format!("GET the {what} {digest} of {name}"),
                status,
                detail,
            });
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = registry::read_limited(resp, media::MANIFEST_LIMIT)
            .await
            .map_err(|message| ImageError::Network {
                registry: ep.key.clone(),
                message: format!("the {what} {digest} of {name}: {message}"),
            })?;
        self.downloads.fetch_add(1, Ordering::Relaxed);
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                image: name.to_string(),
                what: what.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        if let Some(s) = size
            && s != body.len() as u64
        {
            return Err(ImageError::SizeMismatch {
                image: name.to_string(),
                what: what.to_string(),
                digest: digest.to_string(),
                expected: s,
                actual: body.len().to_string(),
            });
        }
        let mt = media::body_media_type(&body, content_type.as_deref()).ok_or_else(|| {
            ImageError::Invalid {
                image: name.to_string(),
                message: format!("the {what} {digest} is not a JSON manifest kubeforge knows"),
            }
        })?;
        self.store_bytes(digest, &body)?;
        Ok((body, mt))
    }

    /// A blob in the cache, downloaded and verified when it is not there yet.
    async fn blob(
        &self,
        ep: &Endpoint,
        name: &str,
        what: &str,
        b: &BlobInfo,
    ) -> Result<PathBuf, ImageError> {
        match self.check_cached(&b.digest, Some(b.size)).await? {
            Cached::Good(p) => return Ok(p),
            Cached::Bad { actual } => tracing::warn!(
                "{name}: the cached {what} had {actual}, not {}; downloading it again",
                b.digest
            ),
            Cached::Missing => {}
        }
        let tmp = self.temp_path(&b.digest);
        if let Some(dir) = &self.offline {
            let src = dir.join(hex_of(&b.digest));
            let (image, what2, blob) = (name.to_string(), what.to_string(), b.clone());
            let dir2 = dir.clone();
            let tmp2 = tmp.clone();
            let r = tokio::task::spawn_blocking(move || {
                copy_verified(&dir2, &src, &tmp2, &image, &what2, &blob)
            })
            .await
            .map_err(|e| io_err(&tmp, e))?;
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        } else {
            self.download(ep, name, what, b, &tmp).await?;
        }
        let dest = self.blob_path(&b.digest);
        std::fs::rename(&tmp, &dest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(&dest, e)
        })?;
        self.mark_verified(&b.digest);
        Ok(dest)
    }

    /// Downloads a blob into `tmp`, verified, retrying transient failures.
    async fn download(
        &self,
        ep: &Endpoint,
        name: &str,
        what: &str,
        b: &BlobInfo,
        tmp: &Path,
    ) -> Result<(), ImageError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.download_once(ep, name, what, b, tmp).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt < self.registry.attempts => {
                    tracing::warn!("{e}; retrying ({attempt}/{})", self.registry.attempts);
                    let _ = std::fs::remove_file(tmp);
                    tokio::time::sleep(self.registry.backoff * 2u32.pow(attempt - 1)).await;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(tmp);
                    return Err(e);
                }
            }
        }
    }

    /// A manifest from the offline blob directory, verified, kept in the cache.
    async fn bundle_manifest(
        &self,
        dir: &Path,
        name: &str,
        what: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<(Vec<u8>, String), ImageError> {
        let src = dir.join(hex_of(digest));
        let body = match open_bundle_file(&src) {
            Ok(Some(f)) => {
                use std::io::Read;
                let mut body = Vec::new();
                f.take(media::MANIFEST_LIMIT + 1)
                    .read_to_end(&mut body)
                    .map_err(|e| io_err(&src, e))?;
                body
            }
            Ok(None) => return Err(not_in_bundle(dir, name, what, digest)),
            Err(e) => return Err(e),
        };
        if body.len() as u64 > media::MANIFEST_LIMIT {
            return Err(ImageError::Invalid {
                image: name.to_string(),
                message: format!(
                    "the {what} {digest} in the bundle ({}) is over {} bytes, the limit for a manifest",
                    src.display(),
                    media::MANIFEST_LIMIT
                ),
            });
        }
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                image: name.to_string(),
                what: format!("{what} in the bundle ({})", src.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        if let Some(s) = size
            && s != body.len() as u64
        {
            return Err(ImageError::SizeMismatch {
                image: name.to_string(),
                what: format!("{what} in the bundle"),
                digest: digest.to_string(),
                expected: s,
                actual: body.len().to_string(),
            });
        }
        let mt = media::body_media_type(&body, None).ok_or_else(|| ImageError::Invalid {
            image: name.to_string(),
            message: format!(
                "the {what} {digest} in the bundle is not a JSON manifest kubeforge knows"
            ),
        })?;
        self.store_bytes(digest, &body)?;
        Ok((body, mt))
    }

    async fn download_once(
        &self,
        ep: &Endpoint,
        name: &str,
        what: &str,
        b: &BlobInfo,
        tmp: &Path,
    ) -> Result<(), ImageError> {
        let url = ep.url(&format!("blobs/{}", b.digest));
        let http = self.registry.http();
        let action = format!("GET the {what} {} of {name}", b.digest);
        let resp = self
            .registry
            .send(ep, "pull", &action, &|| Ok(http.get(url.clone())))
            .await?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(ImageError::NotFound {
                image: name.to_string(),
                registry: ep.key.clone(),
                what: format!("{what} {}", b.digest),
            });
        }
        if !resp.status().is_success() {
            let detail = registry::error_detail(resp).await;
            return Err(ImageError::Http {
                registry: ep.key.clone(),
                action,
                status,
                detail,
            });
        }
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(NOFOLLOW)
            .open(tmp)
            .await
            .map_err(|e| io_err(tmp, e))?;
        let mut hasher = Sha256::new();
        let mut have: u64 = 0;
        let too_long = |have: u64| ImageError::SizeMismatch {
            image: name.to_string(),
            what: what.to_string(),
            digest: b.digest.clone(),
            expected: b.size,
            actual: format!("at least {have}"),
        };
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ImageError::Network {
                registry: ep.key.clone(),
                message: format!(
                    "{action}: interrupted after {have} bytes: {}",
                    registry::describe(e)
                ),
            })?;
            have += chunk.len() as u64;
            if have > b.size {
                return Err(too_long(have));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(|e| io_err(tmp, e))?;
        }
        out.flush().await.map_err(|e| io_err(tmp, e))?;
        drop(out);
        self.downloads.fetch_add(1, Ordering::Relaxed);
        if have != b.size {
            return Err(ImageError::SizeMismatch {
                image: name.to_string(),
                what: what.to_string(),
                digest: b.digest.clone(),
                expected: b.size,
                actual: have.to_string(),
            });
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != b.digest {
            return Err(ImageError::DigestMismatch {
                image: name.to_string(),
                what: what.to_string(),
                expected: b.digest.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// The error for a blob an offline directory lacks.
fn not_in_bundle(dir: &Path, image: &str, what: &str, digest: &str) -> ImageError {
    ImageError::NotInBundle {
        image: image.to_string(),
        what: what.to_string(),
        digest: digest.to_string(),
        dir: dir.to_path_buf(),
    }
}

/// Opens a file of the offline blob directory: None when it is not there. A FIFO or device
/// there cannot block or feed the read (opened non-blocking, refused unless a regular file).
fn open_bundle_file(src: &Path) -> Result<Option<std::fs::File>, ImageError> {
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(src)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(src, e)),
    };
    let meta = f.metadata().map_err(|e| io_err(src, e))?;
    if !meta.is_file() {
        return Err(io_err(src, "is not a regular file"));
    }
    Ok(Some(f))
}

/// Copies the blob `b` from the offline directory into `tmp`, its sha256 and size checked
/// while it streams; nothing is left at `tmp` on a mismatch.
fn copy_verified(
    dir: &Path,
    src: &Path,
    tmp: &Path,
    image: &str,
    what: &str,
    b: &BlobInfo,
) -> Result<(), ImageError> {
    use std::io::{Read, Write};
    let mut f = open_bundle_file(src)?.ok_or_else(|| not_in_bundle(dir, image, what, &b.digest))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(NOFOLLOW)
        .open(tmp)
        .map_err(|e| io_err(tmp, e))?;
    let mut hasher = Sha256::new();
    let mut have: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(src, e))?;
        if n == 0 {
            break;
        }
        have += n as u64;
        if have > b.size {
            return Err(ImageError::SizeMismatch {
                image: image.to_string(),
                what: format!("{what} in the bundle ({})", src.display()),
                digest: b.digest.clone(),
                expected: b.size,
                actual: format!("at least {have}"),
            });
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io_err(tmp, e))?;
    }
    out.flush().map_err(|e| io_err(tmp, e))?;
    if have != b.size {
        return Err(ImageError::SizeMismatch {
            image: image.to_string(),
            what: format!("{what} in the bundle ({})", src.display()),
            digest: b.digest.clone(),
            expected: b.size,
            actual: have.to_string(),
        });
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != b.digest {
        return Err(ImageError::DigestMismatch {
            image: image.to_string(),
            what: format!("{what} in the bundle ({})", src.display()),
            expected: b.digest.clone(),
            actual,
        });
    }
    Ok(())
}

/// The platforms an index offers, for a message.
fn available(index: &media::Index) -> String {
    let v: Vec<String> = index.manifests.iter().map(describe_platform).collect();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}

/// A descriptor kubeforge can fetch: a sha256 digest (the cache is sha256-addressed).
fn check_descriptor(name: &str, d: &media::Descriptor) -> Result<(), ImageError> {
    if !is_sha256_digest(&d.digest) {
        return Err(ImageError::Invalid {
            image: name.to_string(),
            message: format!(
                "the descriptor digest {:?} is not sha256:<64 lowercase hex>; kubeforge handles sha256 digests only",
                d.digest
            ),
        });
    }
    Ok(())
}

fn sha256_reader(mut f: impl std::io::Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}
