//! An OCI image layout as a tar stream, for `ctr -n k8s.io images import` on a node:
//! `oci-layout`, `index.json`, then `blobs/sha256/<hex>` for every blob of the images, each
//! once. Each image keeps its pinned index (so containerd knows it as `repo:tag@sha256:<index>`,
//! the reference CRI resolves), with the manifests of the platforms fetched and their configs
//! and layers; the other platforms' manifests are absent, as in what `ctr images export
//! --platform` writes, and containerd imports the index for its own platform.
//!
//! `index.json` names each image twice: `io.containerd.image.name: <repo:tag>` (the name
//! containerd gives it) and `org.opencontainers.image.ref.name: <tag>` (the OCI layout's ref).
//!
//! Blobs stream from the cache: nothing is held in memory but one buffer. Each blob's digest is
//! checked before it is sent (once per run) and again while it is sent; a mismatch stops the
//! stream with an error, and the receiver must discard what it got (containerd verifies every
//! blob it imports too). The tar headers come from the `tar` crate (ustar, mode 0644, mtime 0,
//! uid/gid 0); the archive's exact length is known in advance ([`archive_size`]).

use super::error::{ImageError, io_err};
use super::media::{self, Descriptor, hex_of};
use super::{BlobInfo, FetchedImage, ImageStore, NOFOLLOW};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const BLOCK: u64 = 512;

/// The `index.json` of the archive of `images`: one entry per image, pointing at its pinned
/// index (or single manifest), with its names as annotations.
pub fn archive_index_json(images: &[FetchedImage]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Index<'a> {
        schema_version: u32,
        media_type: &'a str,
        manifests: Vec<Descriptor>,
    }
    let mut seen = HashSet::new();
    let manifests = images
        .iter()
        .filter(|i| seen.insert((i.reference.clone(), i.index.digest.clone())))
        .map(|i| Descriptor {
            media_type: i.index.media_type.clone(),
            digest: i.index.digest.clone(),
            size: i.index.size,
            platform: None,
            annotations: BTreeMap::from([
                (CONTAINERD_NAME.to_string(), i.reference.clone()),
                (OCI_REF_NAME.to_string(), i.tag.clone()),
            ]),
            urls: Vec::new(),
        })
        .collect();
    serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: media::OCI_INDEX,
        manifests,
    })
    .expect("an index serializes")
}

enum Body<'a> {
    Bytes(Vec<u8>),
    Dir,
    Blob(&'a BlobInfo, &'a str),
}

struct Entry<'a> {
    path: String,
    body: Body<'a>,
}

impl Entry<'_> {
    fn size(&self) -> u64 {
        match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::Dir => 0,
            Body::Blob(b, _) => b.size,
        }
    }

    fn header(&self) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_path(&self.path).expect("short ASCII paths fit ustar");
        h.set_size(self.size());
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        match self.body {
            Body::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
            }
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
            }
        }
        h.set_cksum();
        h
    }
}

fn entries(images: &[FetchedImage]) -> Vec<Entry<'_>> {
    let mut out = vec![
        Entry {
            path: "oci-layout".into(),
            body: Body::Bytes(LAYOUT.to_vec()),
        },
        Entry {
            path: "index.json".into(),
            body: Body::Bytes(archive_index_json(images)),
        },
        Entry {
            path: "blobs/".into(),
            body: Body::Dir,
        },
        Entry {
            path: "blobs/sha256/".into(),
            body: Body::Dir,
        },
    ];
    let mut seen = HashSet::new();
    for i in images {
        for b in i.blobs() {
            if seen.insert(b.digest.clone()) {
                out.push(Entry {
                    path: format!("blobs/sha256/{}", hex_of(&b.digest)),
                    body: Body::Blob(b, &i.reference),
                });
            }
        }
    }
    out
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// The exact length in bytes of the archive [`ImageStore::write_archive`] writes for `images`.
pub fn archive_size(images: &[FetchedImage]) -> u64 {
    entries(images)
        .iter()
        .map(|e| BLOCK + e.size() + padding(e.size()))
        .sum::<u64>()
        + 2 * BLOCK
}

impl ImageStore {
    /// Writes the OCI archive of `images` (fetched into this store) to `w`; returns its length
    /// (always [`archive_size`]). Every blob is checked against its digest before the first
    /// byte is written, and again while it streams.
    pub async fn write_archive<W: AsyncWrite + Unpin>(
        &self,
        images: &[FetchedImage],
        w: &mut W,
    ) -> Result<u64, ImageError> {
        let list = entries(images);
        // every blob good before anything is sent
        for e in &list {
            if let Body::Blob(b, name) = e.body {
                self.verified_blob(name, b).await?;
            }
        }
        let werr = |e: std::io::Error| ImageError::ArchiveWrite {
            message: e.to_string(),
        };
        let zeros = [0u8; BLOCK as usize];
        let mut written: u64 = 0;
        let mut buf = vec![0u8; 1 << 16];
        for e in &list {
            w.write_all(e.header().as_bytes()).await.map_err(werr)?;
            written += BLOCK;
            match &e.body {
                Body::Bytes(b) => w.write_all(b).await.map_err(werr)?,
                Body::Dir => {}
                Body::Blob(b, name) => {
                    let path = self.blob_path(&b.digest);
                    let mut f = tokio::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(NOFOLLOW)
                        .open(&path)
                        .await
                        .map_err(|e| io_err(&path, e))?;
                    let mut h = Sha256::new();
                    let mut left = b.size;
                    while left > 0 {
                        let want = left.min(buf.len() as u64) as usize;
                        let n = f
                            .read(&mut buf[..want])
                            .await
                            .map_err(|e| io_err(&path, e))?;
                        if n == 0 {
                            return Err(ImageError::SizeMismatch {
                                image: name.to_string(),
                                what: format!("cached blob {}", b.media_type),
                                digest: b.digest.clone(),
                                expected: b.size,
                                actual: (b.size - left).to_string(),
                            });
                        }
                        h.update(&buf[..n]);
                        w.write_all(&buf[..n]).await.map_err(werr)?;
                        left -= n as u64;
                    }
                    let actual = format!("sha256:{}", hex::encode(h.finalize()));
                    // one byte more than the size is a change too
                    let longer = f.read(&mut buf[..1]).await.map_err(|e| io_err(&path, e))? > 0;
                    if actual != b.digest || longer {
                        return Err(ImageError::DigestMismatch {
                            image: name.to_string(),
                            what: format!(
                                "cached blob {} (changed while it was sent)",
                                b.media_type
                            ),
                            expected: b.digest.clone(),
                            actual: if longer {
                                format!("a file longer than {} bytes", b.size)
                            } else {
                                actual
                            },
                        });
                    }
                }
            }
            let pad = padding(e.size());
            w.write_all(&zeros[..pad as usize]).await.map_err(werr)?;
            written += e.size() + pad;
        }
        w.write_all(&zeros).await.map_err(werr)?;
        w.write_all(&zeros).await.map_err(werr)?;
        w.flush().await.map_err(werr)?;
        written += 2 * BLOCK;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::PlatformImage;

    fn blob(c: char, size: u64, mt: &str) -> BlobInfo {
        BlobInfo {
            digest: format!("sha256:{}", c.to_string().repeat(64)),
            size,
            media_type: mt.into(),
        }
    }

    fn image(reference: &str, tag: &str, index: char, layer: char) -> FetchedImage {
        FetchedImage {
            reference: reference.into(),
            repo: reference.rsplit_once(':').unwrap().0.into(),
            tag: tag.into(),
            index: blob(index, 300, media::OCI_INDEX),
            manifests: vec![PlatformImage {
                platform: "linux/amd64".into(),
                manifest: blob('m', 400, media::OCI_MANIFEST),
                config: blob('c', 511, "application/vnd.oci.image.config.v1+json"),
                layers: vec![blob(
                    layer,
                    513,
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )],
            }],
        }
    }

    #[test]
    fn index_json_names_each_image_for_containerd_and_oci() {
        let a = image("registry.k8s.io/pause:3.10", "3.10", 'a', 'l');
        let b = image("registry.k8s.io/kube-proxy:v1.31.0", "v1.31.0", 'b', 'l');
        let v: serde_json::Value =
            serde_json::from_slice(&archive_index_json(&[a.clone(), b, a.clone()])).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], media::OCI_INDEX);
        let m = v["manifests"].as_array().unwrap();
        assert_eq!(m.len(), 2, "the same image twice is listed once: {v}");
        assert_eq!(m[0]["digest"], a.index.digest);
        assert_eq!(m[0]["size"], 300);
        assert_eq!(m[0]["mediaType"], media::OCI_INDEX);
        assert_eq!(
            m[0]["annotations"][CONTAINERD_NAME],
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(m[0]["annotations"][OCI_REF_NAME], "3.10");
        assert_eq!(
            m[1]["annotations"][CONTAINERD_NAME],
            "registry.k8s.io/kube-proxy:v1.31.0"
        );
        assert!(m[0].get("platform").is_none());
    }

    #[test]
    fn the_archive_size_counts_headers_padding_and_shared_blobs_once() {
        let a = image("r.example/a:1", "1", 'a', 'l');
        let b = image("r.example/b:1", "1", 'b', 'l');
        let idx = archive_index_json(&[a.clone(), b.clone()]).len() as u64;
        let round = |n: u64| n.div_ceil(512) * 512;
        // oci-layout, index.json, two directories, then a's 4 blobs and b's index (manifest,
        // config and layer are shared)
        let expect = 512
            + round(LAYOUT.len() as u64)
            + 512
            + round(idx)
            + 2 * 512
            + (512 + round(300)) * 2
            + 512
            + round(400)
            + 512
            + round(511)
            + 512
            + round(513)
            + 1024;
        assert_eq!(archive_size(&[a, b]), expect);
        assert_eq!(entries(&[]).len(), 4);
    }
}
