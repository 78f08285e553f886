//! `kubeforge backup`: an etcd snapshot (etcd's Maintenance API through an SSH tunnel), the PKI
//! and the kubeadm configuration of a control plane, saved locally in a timestamped directory
//! (mode 0700, files 0600: it holds the cluster's CA keys) with SHA256SUMS.

use crate::cluster_state::kubectl;
use crate::etcd::Etcd;
use crate::inventory::Loaded;
use crate::progress::Progress;
use crate::ssh::session::Exec;
use crate::ssh::{ConnectOptions, Session};
use crate::status::connect_setup;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub dir: PathBuf,
    pub host: String,
    /// "etcd-snapshot" (the Maintenance API), or "data-dir-copy" when the server has none.
    pub etcd_method: String,
    pub files: Vec<(String, String, u64)>,
}

/// `20261122T015959Z` for a time in seconds since the epoch (UTC, no leap seconds).
pub fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// A tar.gz of `what` (shell words) under `dir`, made on the host in a private temporary file
/// and checked on arrival against the sha256 the host computed, so SHA256SUMS vouches for what
/// the host had, not only for what arrived.
async fn archive(s: &Session, dir: &str, what: &str, display: &str) -> anyhow::Result<Vec<u8>> {
    let out = s
        .exec_with(
            &format!(
                "set -e; t=$(mktemp); trap 'rm -f \"$t\"' EXIT; cd {dir}; tar czf \"$t\" {what}; sha256sum \"$t\" | cut -d' ' -f1 >&2; cat \"$t\""
            ),
            Exec {
                display: Some(&format!("archive {display}")),
                timeout: Some(Duration::from_secs(600)),
                max_output: Some(crate::ssh::session::MAX_ARCHIVE),
                ..Exec::default()
            },
        )
        .await?;
    anyhow::ensure!(
        out.success(),
        "{}: archive of {display} failed: {}",
        s.name(),
        out.stderr().trim()
    );
    let (theirs, ours) = (
        out.stderr().trim().to_string(),
        crate::artifacts::sha256_hex(&out.stdout),
    );
    anyhow::ensure!(
        theirs == ours,
        "{}: the archive of {display} was damaged in transfer (sha256 {ours} here, {theirs} on the host)",
        s.name()
    );
    Ok(out.stdout)
}

/// One file of a backup as written: name, sha256, size.
type Listed = (String, String, u64);

/// Writes a file of the backup (0600, created exclusively) and lists it.
fn save(dir: &Path, name: &str, data: &[u8]) -> anyhow::Result<Listed> {
    write_private(&dir.join(name), data)?;
    Ok((
        name.to_string(),
        crate::artifacts::sha256_hex(data),
        data.len() as u64,
    ))
}

/// Takes the backup of one control plane into `dir` (which exists, empty).
async fn collect(
    s: &Session,
    dir: &Path,
    progress: &Progress,
) -> anyhow::Result<(String, Vec<Listed>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut files = Vec::new();
    let etcd = Etcd::connect(s).await?;
    let name = "etcd-snapshot.db";
    let path = dir.join(name);
    let mut file = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?,
    );
    let host = s.name().to_string();
    // off a terminal, progress is a log line: one per tenth of the snapshot
    let tenth = std::sync::atomic::AtomicU64::new(0);
    let shown = |written: u64, total: u64| {
        let t = (written * 10).checked_div(total).unwrap_or(0);
        if tenth.swap(t, std::sync::atomic::Ordering::Relaxed) == t && !progress.draws() {
            return;
        }
        progress.set(
            &host,
            &format!(
                "etcd snapshot: {:.1} of {:.1} MiB",
                written as f64 / 1048576.0,
                total as f64 / 1048576.0
            ),
        )
    };
    let method = match etcd.snapshot_to(&mut file, &shown).await {
        Ok(Some(snap)) => {
            file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            files.push((name.to_string(), snap.sha256, snap.bytes));
            "etcd-snapshot"
        }
        Ok(None) => {
            drop(file);
            std::fs::remove_file(&path)?;
            tracing::warn!(
                "{}: etcd offers no snapshot API; copying its data directory while it runs instead (crash-consistent)",
                s.name()
            );
            let tar = archive(s, "/var/lib/etcd", "member", "the etcd data directory").await?;
            files.push(save(dir, "etcd-data.tar.gz", &tar)?);
            "data-dir-copy"
        }
        Err(e) => return Err(e.into()),
    };
    // the PKI and every kubeconfig (admin, controller-manager, scheduler, kubelet): a restore
    // needs them all signed by the restored CA
    let kubernetes = archive(
        s,
        "/etc/kubernetes",
        "pki $(ls *.conf)",
        "/etc/kubernetes (pki and kubeconfigs)",
    )
    .await?;
    files.push(save(dir, "etc-kubernetes.tar.gz", &kubernetes)?);
    let cfg = s
        .run(&kubectl(
            "-n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}",
        ))
        .await?;
    files.push(save(dir, "kubeadm-config.yaml", cfg.as_bytes())?);
    Ok((method.to_string(), files))
}

/// Takes a backup from the first control plane that answers. The etcd snapshot is streamed to
/// disk as it arrives; a control plane that fails leaves no directory behind.
pub async fn run(
    loaded: &Loaded,
    out_dir: &Path,
    connect: ConnectOptions,
    show_progress: bool,
) -> anyhow::Result<BackupReport> {
    use std::os::unix::fs::DirBuilderExt;
    let c = &loaded.cluster;
    let (connector, resolver) = connect_setup(loaded, connect)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = out_dir.join(format!("{}-{}", c.name, utc_stamp(now)));
    let mut last: Option<anyhow::Error> = None;
    for h in c.control_planes() {
        let s = match connector.connect(&resolver.target(&h.name, &h.ssh)).await {
            Ok(s) => s,
            Err(e) => {
                last = Some(e.into());
                continue;
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(out_dir)?;
        // the backup's own directory is new: created here, removed again if this host fails
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let progress = Progress::new("backup", std::slice::from_ref(&h.name), show_progress);
        let got = collect(&s, &dir, &progress).await;
        s.close().await;
        let (method, listed) = match got {
            Ok(x) => x,
            Err(e) => {
                progress.finish(&h.name, false, &format!("{e:#}"));
                // the host's error is what the user needs; a failed cleanup is said beside it
                if let Err(c) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!("cannot remove the partial backup {}: {c}", dir.display());
                }
                last = Some(e);
                continue;
            }
        };
        let sums: String = listed
            .iter()
            .map(|(name, sha, _)| format!("{sha}  {name}\n"))
            .collect();
        write_private(&dir.join("SHA256SUMS"), sums.as_bytes())?;
        let meta = serde_json::json!({
            "cluster": c.name,
            "kubernetes": c.version.to_string(),
            "host": h.name,
            "etcd": method,
            "taken": utc_stamp(now),
            "files": listed.iter().map(|(n, s, b)| serde_json::json!({"name": n, "sha256": s, "bytes": b})).collect::<Vec<_>>(),
        });
        write_private(
            &dir.join("backup.json"),
            serde_json::to_string_pretty(&meta)?.as_bytes(),
        )?;
        progress.finish(&h.name, true, "done");
        return Ok(BackupReport {
            dir,
            host: h.name.clone(),
            etcd_method: method,
            files: listed,
        });
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("the inventory lists no control plane")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_309_633), "20261122T010713Z");
    }
}
