//! Work on many hosts at once: bounded by a semaphore (a slow host never holds back the
//! others, unlike waves), each host's outcome kept, and every failure reported with its host.

use crate::model::{Cluster, Host};
use crate::progress::Progress;
use crate::ssh::{Connector, Resolver, Session, SshError};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `f` on every item with at most `limit` running at once; results keep the input order.
pub async fn fan_out<I, T, F, Fut>(items: Vec<I>, limit: usize, f: F) -> Vec<(I, T, Duration)>
where
    I: Clone + Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, item) in items.iter().cloned().enumerate() {
        let fut = f(item);
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let start = Instant::now();
            let out = fut.await;
            (i, out, start.elapsed())
        });
    }
    let mut results: Vec<Option<(T, Duration)>> = (0..items.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, out, d)) => results[i] = Some((out, d)),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    items
        .into_iter()
        .zip(results)
        .map(|(item, r)| {
            let (out, d) = r.expect("every task reports");
            (item, out, d)
        })
        .collect()
}

/// Open connections to the hosts of a run.
pub struct Fleet {
    pub sessions: BTreeMap<String, Arc<Session>>,
    /// Hosts that could not be reached, in inventory order.
    pub unreachable: Vec<(String, SshError)>,
}

impl Fleet {
    /// Connects to `hosts` in parallel (at most `concurrency` at once).
    pub async fn connect(
        cluster: &Cluster,
        hosts: &[&Host],
        connector: Arc<Connector>,
        resolver: &Resolver,
        progress: &Arc<Progress>,
    ) -> Fleet {
        let (fleet, _) = Self::connect_and(
            cluster,
            hosts,
            connector,
            resolver,
            progress,
            |_, _| async { Ok::<(), SshError>(()) },
        )
        .await;
        fleet
    }

    /// Connects to each host and runs `work` on it as soon as its own connection is up (no
    /// barrier between the hosts' connections and their work). Returns the connections and,
    /// per connected host, the work's result, in inventory order.
    /// The work's error type is its own (facts keep their parse failures apart from SSH
    /// ones); a failure to connect is in [`Fleet::unreachable`].
    pub async fn connect_and<T, E, F, Fut>(
        cluster: &Cluster,
        hosts: &[&Host],
        connector: Arc<Connector>,
        resolver: &Resolver,
        progress: &Arc<Progress>,
        work: F,
    ) -> (Fleet, Vec<(String, Result<T, E>)>)
    where
        T: Send + 'static,
        E: Send + 'static,
        F: Fn(String, Arc<Session>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let targets: Vec<(String, crate::ssh::Target)> = hosts
            .iter()
            .map(|h| (h.name.clone(), resolver.target(&h.name, &h.ssh)))
            .collect();
        let work = Arc::new(work);
        let results = fan_out(targets, cluster.options.concurrency, |(name, target)| {
            let connector = connector.clone();
            let progress = progress.clone();
            let work = work.clone();
            async move {
                progress.set(&name, &format!("connecting to {}", target.describe()));
                let started = Instant::now();
                match connector.connect(&target).await {
                    Ok(s) => {
                        tracing::debug!(
                            "{name}: connected in {:.2}s",
                            started.elapsed().as_secs_f64()
                        );
                        let s = Arc::new(s);
                        let r = work(name.clone(), s.clone()).await;
                        (Ok(s), Some(r))
                    }
                    Err(e) => {
                        progress.finish(&name, false, "unreachable");
                        (Err(e), None)
                    }
                }
            }
        })
        .await;
        let mut fleet = Fleet {
            sessions: BTreeMap::new(),
            unreachable: Vec::new(),
        };
        let mut out = Vec::new();
        for ((name, _), (conn, r), _) in results {
            match conn {
                Ok(s) => {
                    fleet.sessions.insert(name.clone(), s);
                }
                Err(e) => fleet.unreachable.push((name.clone(), e)),
            }
            if let Some(r) = r {
                out.push((name, r));
            }
        }
        (fleet, out)
    }

    pub fn session(&self, host: &str) -> Option<&Arc<Session>> {
        self.sessions.get(host)
    }

    pub async fn close(&self) {
        for s in self.sessions.values() {
            s.close().await;
        }
    }
}

/// A failure on several hosts, listing every failed host.
#[derive(Debug, thiserror::Error)]
#[error("{} host{} failed:\n{}", failures.len(), if failures.len() == 1 { "" } else { "s" }, failures.iter().map(|(h, e)| format!("  - {h}: {e}")).collect::<Vec<_>>().join("\n"))]
pub struct HostFailures {
    pub failures: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_and_ordered() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let items: Vec<u64> = (0..12).collect();
        let out = fan_out(items, 3, |i| {
            let running = running.clone();
            let peak = peak.clone();
            async move {
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                // uneven durations: a semaphore starts the next item as soon as one ends
                tokio::time::sleep(Duration::from_millis(5 + (i % 4) * 10)).await;
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(
            out.iter().map(|(i, o, _)| (*i, *o)).collect::<Vec<_>>(),
            (0..12).map(|i| (i, i * 2)).collect::<Vec<_>>()
        );
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
