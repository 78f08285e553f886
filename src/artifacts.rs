//! Downloads on the operator's machine: every artifact is streamed into a content-addressed
//! cache (`<cache>/sha256/<digest>`), its sha256 checked while it streams against the pinned
//! value of the release manifest. Interrupted downloads resume (HTTP Range), transient errors
//! are retried with backoff, and a mirror (a base URL or a local directory in the upstream
//! layout) replaces the upstream URLs. A file whose digest differs is never put in the cache.
//!
//! The cache is not trusted blindly: its directories must be private (not writable by group or
//! others; created 0700), a cached file's digest is checked again before its first use in a run,
//! and nothing in it is opened through a symlink (a symlink found there is removed and the file
//! downloaded again). URLs in messages and logs never carry their `user:password@`.

use crate::model::Mirror;
use crate::release::Artifact;
use crate::util::{redact_url, redact_urls};
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
    #[error("cannot fetch {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
}

/// The most a fetched manifest (`cni: manifest` from a URL) may weigh.
pub const MANIFEST_LIMIT: u64 = 16 << 20;
/// The time a manifest fetch may take, connection and body included.
pub const MANIFEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A short name for messages: `containerd 1.7.27 (amd64)`.
pub fn label(a: &Artifact) -> String {
    format!("{} {} ({})", a.component, a.version, a.arch)
}

/// Where an artifact comes from: the mirror when one is configured, else upstream. An artifact
/// with no mirror path (a chart archive of the inventory) always comes from its own URL, or
/// from the operator's file when that URL is an absolute path.
pub fn source_of(a: &Artifact, mirror: Option<&Mirror>) -> String {
    if a.path.is_empty() {
        return a.url.clone();
    }
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
    /// Digests whose cache entry was hashed in this run: each is hashed once.
    verified: Mutex<HashSet<String>>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> ArtifactError {
    ArtifactError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Opens without following a symlink at the last component.
const NOFOLLOW: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC;

fn is_symlink_error(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Refuses a cache directory that someone else could write to: a symlink (below the cache's
/// root), one writable by group or others, or one owned by another user than us or root.
fn check_private_dir(dir: &Path, follow: bool) -> Result<(), ArtifactError> {
    use std::os::unix::fs::MetadataExt;
    let m = if follow {
        std::fs::metadata(dir)
    } else {
        std::fs::symlink_metadata(dir)
    }
    .map_err(|e| io_err(dir, e))?;
    if !m.is_dir() {
        return Err(io_err(
            dir,
            "is not a directory (a symlink or a file where the artifact cache keeps a directory); remove it",
        ));
    }
    let me = unsafe { libc::geteuid() };
    if m.uid() != me && m.uid() != 0 {
        return Err(io_err(
            dir,
            format!(
                "the artifact cache directory belongs to uid {}, not to you (uid {me}): its owner could replace what kubeforge installs; use a cache of your own (artifacts.cacheDir)",
                m.uid()
            ),
        ));
    }
    if m.mode() & 0o022 != 0 {
        return Err(io_err(
            dir,
            format!(
                "the artifact cache directory is writable by group or others (mode {:o}): anyone who can write there could replace what kubeforge installs; fix it with `chmod go-w {}`",
                m.mode() & 0o7777,
                crate::util::shell_quote(&dir.display().to_string())
            ),
        ));
    }
    Ok(())
}

/// Removes what is at `path` when it is not a regular file (a symlink, say): returns whether it
/// did.
fn remove_unless_regular(path: &Path) -> Result<bool, ArtifactError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(false),
        Ok(m) if m.is_dir() => Err(io_err(path, "is a directory; remove it")),
        Ok(_) => {
            std::fs::remove_file(path).map_err(|e| io_err(path, e))?;
            Ok(true)
        }
        Err(_) => Ok(false),
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
        {
            use std::os::unix::fs::DirBuilderExt;
            for d in ["sha256", "partial"] {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(cache.join(d))
                    .map_err(|e| io_err(&cache.join(d), e))?;
            }
        }
        check_private_dir(cache, true)?;
        for d in ["sha256", "partial"] {
            check_private_dir(&cache.join(d), false)?;
        }
        Ok(Store {
            cache: cache.to_path_buf(),
            mirror,
            client,
            attempts: 5,
            backoff: Duration::from_secs(1),
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Where a verified artifact lives in the cache.
    pub fn cached_path(&self, a: &Artifact) -> PathBuf {
        self.cache.join("sha256").join(&a.sha256)
    }

    /// Whether the cache holds a file (not a symlink) for `a`; its digest is checked on use.
    pub fn is_cached(&self, a: &Artifact) -> bool {
        std::fs::symlink_metadata(self.cached_path(a)).is_ok_and(|m| m.file_type().is_file())
    }

    fn mark_verified(&self, a: &Artifact) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(a.sha256.clone());
    }

    /// The length of the cache entry for `a` when there is a good one. Its digest is checked
    /// once per run; an entry that is a symlink, or whose digest differs, is removed (and
    /// downloaded again by the caller).
    async fn cached_entry(&self, a: &Artifact, dest: &Path) -> Result<Option<u64>, ArtifactError> {
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&a.sha256);
        // O_NONBLOCK: a FIFO planted here must not block the open (regular files ignore it)
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(NOFOLLOW | libc::O_NONBLOCK)
            .open(dest)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if is_symlink_error(&e) => {
                tracing::warn!(
                    "{}: the cache entry {} is a symlink, not a file kubeforge wrote; removing it and downloading again",
                    label(a),
                    dest.display()
                );
                std::fs::remove_file(dest).map_err(|e| io_err(dest, e))?;
                return Ok(None);
            }
            Err(e) => return Err(io_err(dest, e)),
        };
        let meta = f.metadata().map_err(|e| io_err(dest, e))?;
        if !meta.is_file() {
            return Err(io_err(dest, "is not a regular file; remove it"));
        }
        if known {
            return Ok(Some(meta.len()));
        }
        let path = dest.to_path_buf();
        let actual = tokio::task::spawn_blocking(move || sha256_reader(f))
            .await
            .map_err(|e| io_err(&path, e))?
            .map_err(|e| io_err(&path, e))?;
        if actual != a.sha256 {
            tracing::warn!(
                "{}: the cached file {} has sha256 {actual}, not the pinned {}; removing it and downloading again",
                label(a),
                dest.display(),
                a.sha256
            );
            std::fs::remove_file(dest).map_err(|e| io_err(dest, e))?;
            return Ok(None);
        }
        self.mark_verified(a);
        Ok(Some(meta.len()))
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
        if let Some(len) = self.cached_entry(a, &dest).await? {
            if let Some(pb) = pb {
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
        if remove_unless_regular(&partial)? {
            tracing::warn!(
                "{}: removed {}, which was not a file kubeforge wrote",
                label(a),
                partial.display()
            );
        }
        let local = if a.path.is_empty() {
            a.url.starts_with('/')
        } else {
            matches!(self.mirror, Some(Mirror::Dir(_)))
        };
        match local {
            true => self.copy_local(a, Path::new(&source), &partial, pb).await?,
            false => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match self.download_once(a, &source, &partial, pb).await? {
                        Attempt::Done => break,
                        Attempt::Retry(message) if attempt >= self.attempts => {
                            return Err(ArtifactError::Network {
                                name: label(a),
                                url: redact_url(&source),
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
        self.mark_verified(a);
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
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(NOFOLLOW)
            .open(partial)
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
                source_url: redact_url(source),
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
        if let Ok(mut f) = tokio::fs::OpenOptions::new()
            .read(true)
            .custom_flags(NOFOLLOW)
            .open(partial)
            .await
        {
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
                    url: redact_url(url),
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
            .mode(0o600)
            .custom_flags(NOFOLLOW)
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

/// An error and its causes in one line, URLs without their userinfo.
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
    redact_urls(&s)
}

/// Fetches a small document (a CNI manifest) over HTTP(S): at most `limit` bytes, within
/// `timeout` for the whole exchange (connection, headers and body).
pub async fn fetch_bounded(
    url: &str,
    limit: u64,
    timeout: Duration,
) -> Result<Vec<u8>, ArtifactError> {
    let fail = |message: String| ArtifactError::Fetch {
        url: redact_url(url),
        message,
    };
    let mib = |n: u64| format!("{} MiB", n.div_ceil(1 << 20));
    let describe = |e: &reqwest::Error| {
        if e.is_timeout() {
            format!(
                "timed out: the server did not finish within {}",
                crate::util::format_duration(timeout)
            )
        } else {
            error_chain(e)
        }
    };
    let client = reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(15)))
        .timeout(timeout)
        .user_agent(concat!("kubeforge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            fail(format!(
                "cannot set up the HTTP client: {}",
                error_chain(&e)
            ))
        })?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(describe(&e)))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let too_big = || {
        fail(format!(
            "the document is larger than {}, the limit for a manifest",
            mib(limit)
        ))
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fail(describe(&e)))?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Shell lines that check an uploaded file (`$F` holds its path) against `sha256` on the host:
/// on a mismatch the upload is removed and the script fails, naming both digests.
pub fn remote_check_script(sha256: &str) -> String {
    let sha = crate::util::shell_quote(sha256);
    format!(
        "got=$(sha256sum < \"$F\" | cut -d' ' -f1) || got=unreadable\n\
         if [ \"$got\" != {sha} ]; then rm -f \"$F\"; echo \"checksum mismatch after the upload of $F: expected sha256 \"{sha}\", got $got; the upload was removed\" >&2; exit 1; fi"
    )
}

/// sha256 of a local file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    sha256_reader(std::fs::File::open(path)?)
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
    Ok(hex::encode(h.finalize()))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the host-side check with a real shell and sha256sum on a real file.
    fn check(content: &[u8], sha: &str) -> (bool, String, bool) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("upload");
        std::fs::write(&f, content).unwrap();
        let script = format!(
            "set -e\nF={}\n{}\necho installed",
            crate::util::shell_quote(&f.display().to_string()),
            remote_check_script(sha)
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text, f.exists())
    }

    #[test]
    fn a_failed_host_side_check_removes_the_upload() {
        let good = sha256_hex(b"binary");
        let (ok, out, kept) = check(b"binary", &good);
        assert!(ok && out.contains("installed") && kept, "{out}");
        let (ok, out, kept) = check(b"tampered", &good);
        assert!(!ok, "{out}");
        assert!(!kept, "the upload is removed");
        assert!(!out.contains("installed"), "{out}");
        assert!(
            out.contains(&good) && out.contains(&sha256_hex(b"tampered")),
            "both digests: {out}"
        );
    }
}
