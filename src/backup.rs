//! `kubeforge backup`: an etcd snapshot (etcd's Maintenance API through an SSH tunnel), the PKI
//! and the kubeadm configuration of a control plane, saved locally in a timestamped directory
//! (mode 0700, files 0600: it holds the cluster's CA keys) with SHA256SUMS.

use crate::cluster_state::kubectl;
use crate::etcd::Etcd;
use crate::inventory::Loaded;
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

async fn collect(s: &Session) -> anyhow::Result<(String, Vec<(String, Vec<u8>)>)> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let etcd = Etcd::connect(s).await?;
    let method = match etcd.snapshot().await? {
        Some(db) => {
            files.push(("etcd-snapshot.db".into(), db));
            "etcd-snapshot"
        }
        None => {
            tracing::warn!(
                "{}: etcd offers no snapshot API; copying its data directory while it runs instead (crash-consistent)",
                s.name()
            );
            let tar = archive(s, "/var/lib/etcd", "member", "the etcd data directory").await?;
            files.push(("etcd-data.tar.gz".into(), tar));
            "data-dir-copy"
        }
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
    files.push(("etc-kubernetes.tar.gz".into(), kubernetes));
    let cfg = s
        .run(&kubectl(
            "-n kube-system get configmap kubeadm-config -o jsonpath={.data.ClusterConfiguration}",
        ))
        .await?;
    files.push(("kubeadm-config.yaml".into(), cfg.into_bytes()));
    Ok((method.to_string(), files))
}

/// Takes a backup from the first control plane that answers.
pub async fn run(
    loaded: &Loaded,
    out_dir: &Path,
    connect: ConnectOptions,
) -> anyhow::Result<BackupReport> {
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
        let got = collect(&s).await;
        s.close().await;
        let (method, files) = match got {
            Ok(x) => x,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
        }
        let mut sums = String::new();
        let mut listed = Vec::new();
        for (name, data) in &files {
            write_private(&dir.join(name), data)?;
            let sha = crate::artifacts::sha256_hex(data);
            sums.push_str(&format!("{sha}  {name}\n"));
            listed.push((name.clone(), sha, data.len() as u64));
        }
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
