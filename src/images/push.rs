//! "Mirror" mode: a fetched image copied from the cache into a site registry under the same
//! repository path (`registry.k8s.io/coredns/coredns` -> `<target>/coredns/coredns`). Blobs the
//! registry has (HEAD) are not sent again; the others are uploaded in one PUT each (POST to open
//! the upload, PUT with `?digest=`), then each platform manifest by digest, then the index by
//! tag; every digest the registry reports back is checked.
//!
//! A registry that checks an index's references (the distribution registry does) refuses an
//! index whose other platforms' manifests are absent: fetch the image with
//! [`ImageStore::fetch_all_platforms`] to push it there.

use super::error::ImageError;
use super::registry::{self, Endpoint, content_digest};
use super::{BlobInfo, FetchedImage, ImageStore};
use bytes::Bytes;
use std::collections::HashSet;
use std::path::PathBuf;
use tokio::io::AsyncReadExt;
use url::Url;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PushReport {
    /// `<target>/<path>:<tag>`.
    pub target: String,
    /// The index digest the registry reported for the tag (the pinned one).
    pub digest: String,
    /// Blobs uploaded.
    pub uploaded: Vec<String>,
    /// Blobs the registry already had.
    pub present: Vec<String>,
}

impl ImageStore {
    /// Copies `image` (fetched into this store) into the registry `target` (`host[:port]`),
    /// authenticating with the credentials configured for `target`.
    pub async fn push(&self, image: &FetchedImage, target: &str) -> Result<PushReport, ImageError> {
        // the target must be a registry host[:port] as in an image reference
        crate::release::Image::parse(&format!("{target}/x:1")).map_err(|_| ImageError::Config {
            message: format!("{target:?} is not a registry host[:port] to push to"),
        })?;
        let path =
            image
                .repo
                .split_once('/')
                .map(|(_, p)| p)
                .ok_or_else(|| ImageError::Config {
                    message: format!("{:?}: an image repository names its registry", image.repo),
                })?;
        let ep = self.registry.direct_endpoint(target, path)?;
        let name = format!("{target}/{path}:{}", image.tag);
        let mut report = PushReport {
            target: name.clone(),
            digest: String::new(),
            uploaded: Vec::new(),
            present: Vec::new(),
        };
        let mut seen = HashSet::new();
        for m in &image.manifests {
            for b in std::iter::once(&m.config).chain(&m.layers) {
                if !seen.insert(b.digest.clone()) {
                    continue;
                }
                let file = self.verified_blob(&image.reference, b).await?;
                if self.blob_exists(&ep, &name, b).await? {
                    report.present.push(b.digest.clone());
                } else {
                    self.upload_blob(&ep, &name, b, file).await?;
                    report.uploaded.push(b.digest.clone());
                }
            }
        }
        let index_entries = self.index_entries(image).await?;
        for m in &image.manifests {
            if m.manifest.digest != image.index.digest {
                self.put_manifest(
                    &ep,
                    &name,
                    &image.reference,
                    &m.manifest,
                    &m.manifest.digest,
                    None,
                )
                .await?;
            }
        }
        let partial = index_entries
            .filter(|n| *n > image.manifests.len())
            .map(|n| {
                format!(
                    "; the index lists {n} manifests and {} of them were fetched: a registry that checks an index's references needs all of them (fetch the image with all its platforms)",
                    image.manifests.len()
                )
            });
        report.digest = self
            .put_manifest(
                &ep,
                &name,
                &image.reference,
                &image.index,
                &image.tag,
                partial,
            )
            .await?;
        Ok(report)
    }

    /// How many manifests the image's index lists (`None` for a single manifest).
    async fn index_entries(&self, image: &FetchedImage) -> Result<Option<usize>, ImageError> {
        if super::media::manifest_kind(&image.index.media_type)
            != Some(super::media::ManifestKind::Index)
        {
            return Ok(None);
        }
        let p = self.verified_blob(&image.reference, &image.index).await?;
        let body = std::fs::read(&p).map_err(|e| super::error::io_err(&p, e))?;
        Ok(serde_json::from_slice::<super::media::Index>(&body)
            .ok()
            .map(|i| i.manifests.len()))
    }

    /// Whether the registry `target` (`host[:port]`) holds `image`'s pinned manifest under the
    /// same repository path (a HEAD by digest): what mirror mode observes before it plans.
    pub async fn holds(
        &self,
        image: &crate::release::Image,
        target: &str,
    ) -> Result<bool, ImageError> {
        let digest = image.digest.clone().ok_or_else(|| ImageError::Unpinned {
            image: image.reference(),
        })?;
        let path =
            image
                .repo
                .split_once('/')
                .map(|(_, p)| p)
                .ok_or_else(|| ImageError::Config {
                    message: format!("{:?}: an image repository names its registry", image.repo),
                })?;
        let ep = self.registry.direct_endpoint(target, path)?;
        let accept = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
        self.exists(
            &ep,
            "pull",
            format!("HEAD manifest {digest} of {target}/{path}"),
            ep.url(&format!("manifests/{digest}")),
            Some(accept),
        )
        .await
    }

    /// A HEAD request: 200 is there, 404 is not, anything else an error naming `action`.
    async fn exists(
        &self,
        ep: &Endpoint,
        scope: &str,
        action: String,
        url: Url,
        accept: Option<&str>,
    ) -> Result<bool, ImageError> {
        let http = self.registry.http();
        let resp = self
            .registry
            .send(ep, scope, &action, &|| {
                let r = http.head(url.clone());
                Ok(match accept {
                    Some(a) => r.header("Accept", a),
                    None => r,
                })
            })
            .await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(ImageError::Http {
                registry: ep.key.clone(),
                action,
                status,
                detail: String::new(),
            }),
        }
    }

    async fn blob_exists(
        &self,
        ep: &Endpoint,
        name: &str,
        b: &BlobInfo,
    ) -> Result<bool, ImageError> {
        self.exists(
            ep,
            "pull,push",
            format!("HEAD blob {} of {name}", b.digest),
            ep.url(&format!("blobs/{}", b.digest)),
            None,
        )
        .await
    }

    async fn upload_blob(
        &self,
        ep: &Endpoint,
        name: &str,
        b: &BlobInfo,
        file: PathBuf,
    ) -> Result<(), ImageError> {
        let http = self.registry.http();
        let start = ep.url("blobs/uploads/");
        let action = format!("start the upload of blob {} to {name}", b.digest);
        let resp = self
            .registry
            .send(ep, "pull,push", &action, &|| {
                Ok(http
                    .post(start.clone())
                    .header(reqwest::header::CONTENT_LENGTH, "0"))
            })
            .await?;
        let status = resp.status().as_u16();
        if status != 202 {
            let detail = registry::error_detail(resp).await;
            return Err(ImageError::Http {
                registry: ep.key.clone(),
                action,
                status,
                detail,
            });
        }
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ImageError::Http {
                registry: ep.key.clone(),
                action: action.clone(),
                status,
                detail: ": no Location header for the upload".into(),
            })?;
        let mut put: Url = ep.base.join(location).map_err(|_| ImageError::Http {
            registry: ep.key.clone(),
            action: action.clone(),
            status,
            detail: ": the upload Location is not a URL".into(),
        })?;
        // credentials go only where the registry is
        if put.origin() != ep.base.origin() {
            return Err(ImageError::Http {
                registry: ep.key.clone(),
                action,
                status,
                detail: format!(
                    ": the registry sends the upload to another host ({}); kubeforge uploads only to the registry itself",
                    put.host_str().unwrap_or("?")
                ),
            });
        }
        put.query_pairs_mut().append_pair("digest", &b.digest);
        let action = format!("upload blob {} to {name}", b.digest);
        let size = b.size;
        let resp = self
            .registry
            .send(ep, "pull,push", &action, &|| {
                let f = std::fs::File::open(&file).map_err(|e| super::error::io_err(&file, e))?;
                Ok(http
                    .put(put.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, size.to_string())
                    .body(reqwest::Body::wrap_stream(file_stream(
                        tokio::fs::File::from_std(f),
                    ))))
            })
            .await?;
        let status = resp.status().as_u16();
        if status != 201 {
            let detail = registry::error_detail(resp).await;
            return Err(ImageError::Http {
                registry: ep.key.clone(),
                action,
                status,
                detail,
            });
        }
        if let Some(got) = content_digest(resp.headers())
            && got != b.digest
        {
            return Err(ImageError::DigestMismatch {
                image: name.to_string(),
                what: format!("blob uploaded to {}", ep.key),
                expected: b.digest.clone(),
                actual: got,
            });
        }
        Ok(())
    }

    /// PUTs a manifest (from the cache) under `reference` (a digest or the tag); returns the
    /// digest the registry reports, checked against the manifest's.
    async fn put_manifest(
        &self,
        ep: &Endpoint,
        name: &str,
        source: &str,
        m: &BlobInfo,
        reference: &str,
        hint: Option<String>,
    ) -> Result<String, ImageError> {
        let path = self.verified_blob(source, m).await?;
        let body = Bytes::from(std::fs::read(&path).map_err(|e| super::error::io_err(&path, e))?);
        let url = ep.url(&format!("manifests/{reference}"));
        let http = self.registry.http();
        let action = format!("PUT manifest {} of {name} as {reference}", m.digest);
        let resp = self
            .registry
            .send(ep, "pull,push", &action, &|| {
                Ok(http
                    .put(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, m.media_type.clone())
                    .body(body.clone()))
            })
            .await?;
        let status = resp.status().as_u16();
        if status != 201 && status != 200 {
            let detail = registry::error_detail(resp).await + hint.as_deref().unwrap_or("");
            return Err(ImageError::Http {
                registry: ep.key.clone(),
                action,
                status,
                detail,
            });
        }
        match content_digest(resp.headers()) {
            Some(got) if got != m.digest => Err(ImageError::DigestMismatch {
                image: name.to_string(),
                what: format!("manifest stored by {} as {reference}", ep.key),
                expected: m.digest.clone(),
                actual: got,
            }),
            _ => Ok(m.digest.clone()),
        }
    }
}

/// A file as a stream of chunks, for an upload body.
fn file_stream(
    f: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::try_unfold(f, |mut f| async move {
        let mut buf = vec![0u8; 1 << 16];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), f)))
    })
}
