//! What the actions of one run share: the cluster, the sessions, the verified artifacts, the
//! node IPs, the join secrets, and the run's counters; and the error of a failed action.

use crate::desired;
use crate::model::Cluster;
use crate::ssh::{Session, SshError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Ssh(Box<SshError>),
    #[error("{host}: {message}")]
    Failed { host: String, message: String },
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
}

impl From<SshError> for StepError {
    fn from(e: SshError) -> Self {
        StepError::Ssh(Box::new(e))
    }
}

impl StepError {
    pub fn failed(host: &str, message: impl Into<String>) -> Self {
        StepError::Failed {
            host: host.to_string(),
            message: message.into(),
        }
    }
}

/// What the cluster's joins need, made or fetched once per run; never printed.
#[derive(Clone)]
pub struct JoinSecrets {
    pub token: String,
    pub ca_hash: String,
    /// Set once certificates are uploaded for control-plane joins.
    pub certificate_key: Option<String>,
}

/// Counters for the run's summary.
#[derive(Default)]
pub struct Stats {
    pub uploaded: Mutex<BTreeMap<String, u64>>,
    /// Wall time spent waiting on kubeadm and the kubelets (init, joins, nodes turning Ready).
    /// Waits that overlap (workers joining in parallel) count once.
    pub waited: Mutex<Duration>,
    /// Waits under way, and since when at least one has been.
    active: Mutex<(usize, Option<Instant>)>,
}

/// One wait under way; the time counts until it is dropped.
pub struct Waiting<'a>(&'a Stats);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut a = self.0.active.lock().unwrap_or_else(|p| p.into_inner());
        a.0 -= 1;
        if a.0 == 0
            && let Some(since) = a.1.take()
        {
            *self.0.waited.lock().unwrap_or_else(|p| p.into_inner()) += since.elapsed();
        }
    }
}

impl Stats {
    pub fn add_upload(&self, host: &str, bytes: u64) {
        *self
            .uploaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.to_string())
            .or_default() += bytes;
    }
    /// Starts counting a wait (the union of all waits' wall time is what is reported).
    pub fn wait(&self) -> Waiting<'_> {
        let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if a.0 == 0 {
            a.1 = Some(Instant::now());
        }
        a.0 += 1;
        Waiting(self)
    }
}

/// Everything the actions of one run share.
pub struct Ctx {
    pub cluster: Cluster,
    pub sessions: BTreeMap<String, Arc<Session>>,
    /// Verified artifacts in the local cache, by sha256.
    pub artifacts: BTreeMap<String, PathBuf>,
    /// The control plane that inits the cluster or serves its API.
    pub init_host: String,
    /// Every host's node IP (from the plan: the inventory's, else the host's facts).
    pub node_ips: desired::NodeIps,
    pub stats: Stats,
    pub secrets: tokio::sync::Mutex<Option<JoinSecrets>>,
    /// The verified images to push (push mode), when the plan imports any.
    pub images: Option<Arc<dyn super::ImageSource>>,
}

impl Ctx {
    /// The context of a run over `sessions`, with `api_host` serving kubectl.
    pub fn new(
        cluster: Cluster,
        sessions: BTreeMap<String, Arc<Session>>,
        artifacts: BTreeMap<String, PathBuf>,
        api_host: String,
        node_ips: desired::NodeIps,
    ) -> Ctx {
        Ctx {
            cluster,
            sessions,
            artifacts,
            init_host: api_host,
            node_ips,
            stats: Stats::default(),
            secrets: tokio::sync::Mutex::new(None),
            images: None,
        }
    }

    pub fn session(&self, host: &str) -> Result<&Arc<Session>, StepError> {
        self.sessions
            .get(host)
            .ok_or_else(|| StepError::failed(host, "not connected"))
    }

    /// The session kubectl runs on.
    pub fn api(&self) -> Result<&Arc<Session>, StepError> {
        self.session(&self.init_host)
    }

    /// Runs a kubeadm or kubectl command that waits on the cluster, counting the time waited.
    pub async fn waiting<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let _w = self.stats.wait();
        f.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_waits_count_once() {
        let s = Stats::default();
        let started = Instant::now();
        {
            let _a = s.wait();
            std::thread::sleep(Duration::from_millis(60));
            let _b = s.wait(); // a parallel join, inside the first
            std::thread::sleep(Duration::from_millis(60));
        }
        let elapsed = started.elapsed();
        let waited = *s.waited.lock().unwrap();
        assert!(waited >= Duration::from_millis(120), "{waited:?}");
        assert!(waited <= elapsed, "{waited:?} > wall {elapsed:?}");
        std::thread::sleep(Duration::from_millis(30)); // not waiting: not counted
        {
            let _c = s.wait();
            std::thread::sleep(Duration::from_millis(20));
        }
        let total = *s.waited.lock().unwrap();
        assert!(total >= waited + Duration::from_millis(20));
        assert!(
            total < started.elapsed() - Duration::from_millis(25),
            "{total:?}"
        );
    }
}
