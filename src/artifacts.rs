//! Downloads on the operator's machine: every artifact is streamed into a content-addressed
//! cache (`<cache>/sha256/<digest>`), its sha256 checked while it streams against the pinned
//! value of the release manifest. Interrupted downloads resume (HTTP Range), transient errors
//! are retried with backoff, and a mirror (a base URL or a local directory in the upstream
//! layout) replaces the upstream URLs. A file whose digest differs is never put in the cache.

use crate::model::Mirror;
use crate::release::Artifact;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(
        "checksum mismatch for {name} from {source_url}: expected sha256 {expected}, got {actual}; nothing was installed"
    )]
    Checksum {
        name: String,
        source_url: String,
        expected: String,
        actual: String,
    },
    #[error("cannot download {name} from {url}: HTTP {status}")]
    Http {
        name: String,
        url: String,
        status: u16,
    },
    #[error("cannot download {name} from {url}: {message}")]
    Network {
        name: String,
        url: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
}

/// A short name for messages: `containerd 1.7.27 (amd64)`.
pub fn label(a: &Artifact) -> String {
    format!("{} {} ({})", a.component, a.version, a.arch)
}

/// Where an artifact comes from: the mirror when one is configured, else upstream.
pub fn source_of(a: &Artifact, mirror: Option<&Mirror>) -> String {
    match mirror {
        Some(Mirror::Url(base)) => format!("{}/{}", base.trim_end_matches('/'), a.path),
        Some(Mirror::Dir(dir)) => dir.join(&a.path).display().to_string(),
        None => a.url.clone(),
    }
}

pub struct Store {
    cache: PathBuf,
    mirror: Option<Mirror>,
    client: reqwest::Client,
    /// Attempts per download for transient errors.
    pub attempts: u32,
    pub backoff: Duration,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> ArtifactError {
    ArtifactError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

enum Attempt {
    Done,
    /// Worth another try (network error, 5xx, 429): the message.
    Retry(String),
}

impl Store {
    pub fn new(cache: &Path, mirror: Option<Mirror>) -> Result<Store, ArtifactError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("kubeforge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ArtifactError::Io {
                path: cache.to_path_buf(),
                message: format!("cannot set up the HTTP client: {e}"),
            })?;
        for d in ["sha256", "partial"] {
            std::fs::create_dir_all(cache.join(d)).map_err(|e| io_err(&cache.join(d), e))?;
        }
        Ok(Store {
            cache: cache.to_path_buf(),
            mirror,
            client,
            attempts: 5,
            backoff: Duration::from_secs(1),
        })
    }

    /// Where a verified artifact lives in the cache.
    pub fn cached_path(&self, a: &Artifact) -> PathBuf {
        self.cache.join("sha256").join(&a.sha256)
    }

    pub fn is_cached(&self, a: &Artifact) -> bool {
        self.cached_path(a).is_file()
    }

    /// Fetches every artifact (at most 4 at once), with a progress bar each on a terminal.
    /// Stops at the first failure; on success every path is a verified cache entry.
    pub async fn fetch_all(
        &self,
        list: &[Artifact],
        bars: bool,
    ) -> Result<Vec<PathBuf>, ArtifactError> {
        let mp = bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let results: Vec<Result<PathBuf, ArtifactError>> = futures_util::stream::iter(list.iter())
            .map(|a| {
                let pb = mp.as_ref().map(|mp| {
                    let pb = mp.add(ProgressBar::new(a.size.unwrap_or(0)));
                    pb.set_style(
                        ProgressStyle::with_template(
                            "{prefix:28} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    pb.set_prefix(label(a));
                    pb
                });
                async move {
                    let r = self.fetch(a, pb.as_ref()).await;
                    if let Some(pb) = pb {
                        pb.finish();
                    }
                    r
                }
            })
            .buffered(4)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Returns the cached, verified file for `a`, downloading it if needed.
    pub async fn fetch(
        &self,
        a: &Artifact,
        pb: Option<&ProgressBar>,
    ) -> Result<PathBuf, ArtifactError> {
        let dest = self.cached_path(a);
        if dest.is_file() {
            if let Some(pb) = pb {
                let len = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
                pb.set_length(len);
                pb.set_position(len);
            }
            return Ok(dest);
        }
        let source = source_of(a, self.mirror.as_ref());
        let partial = self
            .cache
            .join("partial")
            .join(format!("{}.part", a.sha256));
        match &self.mirror {
            Some(Mirror::Dir(_)) => self.copy_local(a, Path::new(&source), &partial, pb).await?,
            _ => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match self.download_once(a, &source, &partial, pb).await? {
                        Attempt::Done => break,
                        Attempt::Retry(message) if attempt >= self.attempts => {
                            return Err(ArtifactError::Network {
                                name: label(a),
                                url: source,
                                message: format!("{message} (after {attempt} attempts)"),
                            });
                        }
                        Attempt::Retry(message) => {
                            tracing::warn!(
                                "{}: {message}; retrying ({attempt}/{})",
                                label(a),
                                self.attempts
                            );
                            tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                        }
                    }
                }
            }
        }
        // verified while streaming: move into place atomically
        std::fs::rename(&partial, &dest).map_err(|e| io_err(&dest, e))?;
        Ok(dest)
    }

    async fn copy_local(
        &self,
        a: &Artifact,
        src: &Path,
        partial: &Path,
        pb: Option<&ProgressBar>,
    ) -> Result<(), ArtifactError> {
        let mut f = tokio::fs::File::open(src)
            .await
            .map_err(|e| io_err(src, e))?;
        if let Some(pb) = pb {
            pb.set_length(f.metadata().await.map(|m| m.len()).unwrap_or(0));
        }
        let mut out = tokio::fs::File::create(partial)
            .await
            .map_err(|e| io_err(partial, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).await.map_err(|e| io_err(src, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .await
                .map_err(|e| io_err(partial, e))?;
            if let Some(pb) = pb {
                pb.inc(n as u64);
            }
        }
        out.flush().await.map_err(|e| io_err(partial, e))?;
        self.verify(a, &src.display().to_string(), hasher, partial)
    }

    fn verify(
        &self,
        a: &Artifact,
        source: &str,
        hasher: Sha256,
        partial: &Path,
    ) -> Result<(), ArtifactError> {
        let actual = hex::encode(hasher.finalize());
        if actual != a.sha256 {
            let _ = std::fs::remove_file(partial);
            return Err(ArtifactError::Checksum {
                name: label(a),
                source_url: source.to_string(),
                expected: a.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// One HTTP attempt, resuming a partial file when there is one.
    async fn download_once(
        &self,
        a: &Artifact,
        url: &str,
        partial: &Path,
        pb: Option<&ProgressBar>,
    ) -> Result<Attempt, ArtifactError> {
        // hash what an earlier attempt left, to continue the digest where it stopped
        let mut hasher = Sha256::new();
        let mut have: u64 = 0;
        if let Ok(mut f) = tokio::fs::File::open(partial).await {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).await.map_err(|e| io_err(partial, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                have += n as u64;
            }
        }
        let mut req = self.client.get(url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Retry(error_chain(&e))),
        };
        let status = resp.status();
        let append = match status.as_u16() {
            206 if have > 0 => true,
            200 => false,
            416 if have > 0 => {
                // the partial file may already be whole
                if hex::encode(hasher.clone().finalize()) == a.sha256 {
                    return Ok(Attempt::Done);
                }
                let _ = std::fs::remove_file(partial);
                return Ok(Attempt::Retry(
                    "the server refused to resume; starting over".into(),
                ));
            }
            429 | 500..=599 => return Ok(Attempt::Retry(format!("HTTP {status}"))),
            s => {
                return Err(ArtifactError::Http {
                    name: label(a),
                    url: url.to_string(),
                    status: s,
                });
            }
        };
        if !append {
            hasher = Sha256::new();
            have = 0;
        }
        let total = resp.content_length().map(|l| l + have).or(a.size);
        if let Some(pb) = pb {
            if let Some(t) = total {
                pb.set_length(t);
            }
            pb.set_position(have);
        }
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(partial)
            .await
            .map_err(|e| io_err(partial, e))?;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = out.flush().await;
                    return Ok(Attempt::Retry(format!(
                        "interrupted after {have} bytes: {}",
                        error_chain(&e)
                    )));
                }
            };
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| io_err(partial, e))?;
            have += chunk.len() as u64;
            if let Some(pb) = pb {
                pb.set_position(have);
            }
        }
        out.flush().await.map_err(|e| io_err(partial, e))?;
        drop(out);
        self.verify(a, url, hasher, partial)?;
        Ok(Attempt::Done)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// sha256 of a local file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
