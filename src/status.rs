//! `kubeforge status`: reach every host, gather its facts, run preflight. Read-only.

use crate::facts::{self, Facts};
use crate::fleet::Fleet;
use crate::inventory::Loaded;
use crate::model::Role;
use crate::preflight::{self, Finding, Severity};
use crate::progress::Progress;
use crate::ssh::{ConnectOptions, Connector, Resolver};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub name: String,
    pub address: String,
    /// The IP the node registers with and the other nodes reach it at: the inventory's
    /// privateAddress or IP address, else what the host reports (see `desired::node_ip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ip: Option<String>,
    /// Where `node_ip` comes from, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ip_from: Option<String>,
    pub role: Role,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
    /// Days until the soonest control-plane certificate expires (control planes in a cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_expiry_days: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub cluster: String,
    pub hosts: Vec<HostReport>,
    pub preflight: Vec<Finding>,
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl StatusReport {
    /// Hosts that could not be reached, or whose facts could not be read.
    pub fn unreachable(&self) -> impl Iterator<Item = &HostReport> {
        self.hosts
            .iter()
            .filter(|h| !h.reachable || h.facts.is_none())
    }

    pub fn blocking(&self) -> impl Iterator<Item = &Finding> {
        self.preflight
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    pub fn ok(&self) -> bool {
        self.unreachable().next().is_none() && self.blocking().next().is_none()
    }
}

/// The connector and resolver for a run over an inventory's hosts.
pub fn connect_setup(
    loaded: &Loaded,
    mut options: ConnectOptions,
) -> anyhow::Result<(Arc<Connector>, Resolver)> {
    options.command_timeout = loaded.cluster.options.command_timeout;
    let resolver = Resolver::new(&loaded.cluster, options.connect_timeout)?
        .timeout_given(options.connect_timeout_given);
    Ok((Arc::new(Connector::new(options)), resolver))
}

/// The one way a command connects to the cluster's hosts: the connector and resolver from the
/// inventory, a progress display titled `title`, every host at once (bounded by
/// `options.concurrency`), and `work` run on each host as soon as its own connection is up.
/// Returns the connections and, per connected host, the work's result, in inventory order.
pub async fn connect_all<T, E, F, Fut>(
    loaded: &Loaded,
    options: ConnectOptions,
    title: &str,
    bars: bool,
    work: F,
) -> anyhow::Result<Connected<T, E>>
where
    T: Send + 'static,
    E: Send + 'static,
    F: Fn(String, Arc<crate::ssh::Session>, Arc<Progress>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
{
    let c = &loaded.cluster;
    let (connector, resolver) = connect_setup(loaded, options)?;
    let names: Vec<String> = c.hosts.iter().map(|h| h.name.clone()).collect();
    let progress = Arc::new(Progress::new(title, &names, bars));
    let hosts: Vec<&crate::model::Host> = c.hosts.iter().collect();
    let p = progress.clone();
    let (fleet, results) = Fleet::connect_and(
        c,
        &hosts,
        connector,
        &resolver,
        &progress,
        move |name, s| work(name, s, p.clone()),
    )
    .await;
    Ok((fleet, results, progress))
}

/// The connections, each connected host's work result, and the progress display.
pub type Connected<T, E> = (Fleet, Vec<(String, Result<T, E>)>, Arc<Progress>);

/// Connects to every host, gathers facts and runs preflight.
pub async fn gather(
    loaded: &Loaded,
    options: ConnectOptions,
    ignore: &[String],
    bars: bool,
) -> anyhow::Result<StatusReport> {
    let cluster = &loaded.cluster;
    let (fleet, gathered, progress) = connect_all(loaded, options, "status", bars, {
        move |name, s, progress| async move {
            progress.set(&name, "gathering facts");
            let r = facts::gather(&s).await;
            match &r {
                Ok(f) => progress.finish(&name, true, &format!("{} {}", f.os_pretty, f.kernel)),
                Err(_) => progress.finish(&name, false, "facts"),
            }
            let f = r?;
            let days = if f.membership.role() == Some(crate::facts::MemberRole::ControlPlane) {
                match crate::certs::check(&s).await {
                    Ok(c) => crate::certs::soonest_days(&c),
                    Err(e) => {
                        tracing::warn!("{name}: cannot read certificate expiry: {e}");
                        None
                    }
                }
            } else {
                None
            };
            Ok::<_, facts::FactsError>((f, days))
        }
    })
    .await?;
    let mut facts_by_host: BTreeMap<String, Facts> = BTreeMap::new();
    let mut cert_days: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, String> = fleet
        .unreachable
        .iter()
        .map(|(h, e)| (h.clone(), e.to_string()))
        .collect();
    for (name, r) in gathered {
        match r {
            Ok((f, days)) => {
                if let Some(d) = days {
                    cert_days.insert(name.clone(), d);
                }
                facts_by_host.insert(name, f);
            }
            Err(e) => {
                errors.insert(name, e.to_string());
            }
        }
    }
    fleet.close().await;
    let arches = loaded
        .catalog
        .get(&cluster.version)
        .map(|m| m.arches())
        .unwrap_or_default();
    let findings = preflight::run(cluster, &facts_by_host, ignore, &arches);
    let (node_ips, _) = crate::desired::NodeIps::resolve(cluster, &facts_by_host);
    let hosts = cluster
        .hosts
        .iter()
        .map(|h| HostReport {
            name: h.name.clone(),
            address: h.ssh.address.clone(),
            node_ip: node_ips.get(&h.name).map(|n| n.ip.clone()),
            node_ip_from: node_ips.get(&h.name).map(|n| n.describe()),
            role: h.role,
            reachable: !fleet.unreachable.iter().any(|(n, _)| n == &h.name),
            error: errors.get(&h.name).cloned(),
            facts: facts_by_host.remove(&h.name),
            cert_expiry_days: cert_days.get(&h.name).copied(),
        })
        .collect();
    Ok(StatusReport {
        cluster: cluster.name.clone(),
        hosts,
        preflight: findings,
        elapsed: progress.elapsed(),
    })
}
