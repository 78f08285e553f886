//! `plan` and `apply`: connect, gather facts, run preflight, read the cluster's API, compute
//! the plan; then download and verify every artifact, prepare the hosts in parallel, init,
//! join the control planes one at a time and the workers in parallel, deploy the CNI, wait for
//! Ready, verify, and hand the operator a kubeconfig. A failure stops the run with the host and
//! step named; a re-run continues from the facts.

use crate::artifacts::{self, Store};
use crate::cluster_state::{self, ClusterState, kubectl};
use crate::desired;
use crate::engine::exec::{self, Timings};
use crate::engine::{self as plan, Ctx, Plan};
use crate::facts::{self, Facts};
use crate::fleet::{Fleet, fan_out};
use crate::inventory::Loaded;
use crate::model::{Cni, LoadBalancer, ManifestSource, Role};
use crate::paths::ADMIN_KUBECONFIG;
use crate::preflight::{self, Finding, Severity};
use crate::release::ReleaseManifest;
use crate::ssh::{ConnectOptions, Session};
use crate::status::{connect_all, connect_setup};
use crate::steps;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("no release manifest for Kubernetes {0}")]
    NoManifest(String),
    #[error("cannot reach {} host{}:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|(_, e)| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Unreachable(Vec<(String, String)>),
    #[error("cannot read the facts of {} host{} (they answered, but not as expected):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|(_, e)| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Facts(Vec<(String, String)>),
    #[error("preflight failed on {}:\n{}\n(skip a check with --ignore-preflight NAME)", hosts_of(.0), .0.iter().map(|f| format!("  - {}: {}: {}", f.host, f.check, f.message)).collect::<Vec<_>>().join("\n"))]
    Preflight(Vec<Finding>),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error("CNI manifest: {0}")]
    CniManifest(String),
    #[error(transparent)]
    Chart(#[from] crate::charts::ChartError),
    #[error(transparent)]
    Artifact(#[from] artifacts::ArtifactError),
    #[error(transparent)]
    Images(#[from] crate::images::ImageError),
    #[error("apply stopped in step {step}:\n{}\nHosts not listed are in a known state. Fix the cause and run apply again: it continues from where the hosts are.", failures.iter().map(|(h, e)| format!("  - {h}: {e}")).collect::<Vec<_>>().join("\n"))]
    Steps {
        step: String,
        failures: Vec<(String, String)>,
    },
    #[error("the cluster was set up, but verification failed:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Verify(Vec<String>),
    /// Destructive actions, off a terminal, without --yes: refused before anything changed.
    #[error("apply would {0}: confirm on a terminal, or pass --yes")]
    Refused(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn hosts_of(f: &[Finding]) -> String {
    let mut h: Vec<&str> = f.iter().map(|f| f.host.as_str()).collect();
    h.dedup();
    h.join(", ")
}

pub struct Options {
    pub connect: ConnectOptions,
    pub ignore_preflight: Vec<String>,
    pub bars: bool,
    /// With spec.openstack and cloudProvider: the CCM and Cinder CSI to install.
    pub cloud_provider: Option<plan::plan::CloudProvider>,
}

/// Connections, observations and the plan.
pub struct Prepared {
    pub plan: Plan,
    /// The cluster's Helm releases (when the inventory has charts and they could be read).
    pub releases: Option<BTreeMap<(String, String), crate::charts::Release>>,
    pub manifest: ReleaseManifest,
    pub facts: BTreeMap<String, Facts>,
    pub state: Option<ClusterState>,
    pub warnings: Vec<Finding>,
    pub fleet: Fleet,
    pub elapsed: Duration,
}

async fn load_cni_manifest(
    loaded: &Loaded,
    manifest: &ReleaseManifest,
) -> Result<Option<String>, ApplyError> {
    let c = &loaded.cluster;
    match &c.cni {
        Cni::None => Ok(None),
        Cni::Flannel => Ok(Some(
            desired::flannel_manifest(c, manifest)
                .map_err(|e| ApplyError::CniManifest(e.to_string()))?,
        )),
        Cni::Manifest { source, sha256 } => {
            let bytes = match source {
                ManifestSource::Path(p) => {
                    crate::inventory::read_text_file(p, artifacts::MANIFEST_LIMIT, "a CNI manifest")
                        .map_err(|e| ApplyError::CniManifest(format!("{}: {e}", p.display())))?
                        .into_bytes()
                }
                // with a bundle, its copy (stored by sha256): no network
                ManifestSource::Url(u) => match &c.artifacts.bundle {
                    Some(b) => {
                        let p = crate::bundle::cni_manifest_path(b, sha256);
                        crate::inventory::read_text_file(
                            &p,
                            artifacts::MANIFEST_LIMIT,
                            "a CNI manifest",
                        )
                        .map_err(|e| {
                            ApplyError::CniManifest(if e.kind() == std::io::ErrorKind::NotFound {
                                format!(
                                    "the bundle {} holds no CNI manifest with sha256 {sha256}; run `kubeforge artifacts fetch` again to add it",
                                    b.display()
                                )
                            } else {
                                format!("{}: {e}", p.display())
                            })
                        })?
                        .into_bytes()
                    }
                    None => artifacts::fetch_bounded(
                        u,
                        artifacts::MANIFEST_LIMIT,
                        artifacts::MANIFEST_TIMEOUT,
                    )
                    .await
                    .map_err(|e| ApplyError::CniManifest(e.to_string()))?,
                },
            };
            let actual = artifacts::sha256_hex(&bytes);
            if &actual != sha256 {
                return Err(ApplyError::CniManifest(format!(
                    "checksum mismatch: expected sha256 {sha256}, got {actual}"
                )));
            }
            Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
        }
    }
}

/// The cluster's Helm releases, for `--prune`: those read for the plan, else read now (an
/// inventory without charts may have dropped all of kubeforge's).
pub async fn chart_releases(
    p: &Prepared,
) -> Option<BTreeMap<(String, String), crate::charts::Release>> {
    if p.releases.is_some() {
        return p.releases.clone();
    }
    let s = p.fleet.session(&p.state.as_ref()?.api_host)?;
    match crate::charts::observe(s).await {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(
                "cannot read the cluster's Helm releases on {}: {e}",
                s.name()
            );
            None
        }
    }
}

/// Everything up to the plan; changes nothing.
pub async fn prepare(loaded: &Loaded, opts: &Options) -> Result<Prepared, ApplyError> {
    let start = Instant::now();
    let c = &loaded.cluster;
    let manifest = loaded
        .catalog
        .get(&c.version)
        .cloned()
        .ok_or_else(|| ApplyError::NoManifest(c.version.to_string()))?;
    let paths = Arc::new(desired::managed_paths(c, &manifest));
    let (fleet, gathered, progress) =
        connect_all(loaded, opts.connect.clone(), "facts", opts.bars, {
            move |name, s, progress| {
                let paths = paths.clone();
                async move {
                    progress.set(&name, "gathering facts");
                    let r = facts::gather_with(&s, &paths).await;
                    progress.finish(
                        &name,
                        r.is_ok(),
                        if r.is_ok() { "facts" } else { "facts failed" },
                    );
                    let f = r?;
                    let certs =
                        if f.membership.role() == Some(crate::facts::MemberRole::ControlPlane) {
                            match crate::certs::check(&s).await {
                                Ok(c) => Some(c),
                                Err(e) => {
                                    tracing::warn!("{name}: cannot read certificate expiry: {e}");
                                    None
                                }
                            }
                        } else {
                            None
                        };
                    Ok::<_, facts::FactsError>((f, certs))
                }
            }
        })
        .await?;
    drop(progress);
    let mut unreachable: Vec<(String, String)> = fleet
        .unreachable
        .iter()
        .map(|(h, e)| (h.clone(), e.to_string()))
        .collect();
    let mut facts_by_host = BTreeMap::new();
    let mut plan_warnings = Vec::new();
    // reached, but what the host answered could not be read: not an unreachable host
    let mut unreadable: Vec<(String, String)> = Vec::new();
    for (name, r) in gathered {
        match r {
            Ok((f, certs)) => {
                for cert in certs.unwrap_or_default() {
                    if cert.residual_seconds < 30 * 86_400 {
                        plan_warnings.push(format!(
                            "{name}: certificate {} expires in {} days ({}); renew with `kubeforge certs renew`",
                            cert.name,
                            cert.residual_seconds / 86_400,
                            cert.expires
                        ));
                    }
                }
                facts_by_host.insert(name, f);
            }
            Err(e) if e.kind().is_unreachable() => unreachable.push((name, e.to_string())),
            Err(e) => unreadable.push((name, e.to_string())),
        }
    }
    if !unreachable.is_empty() {
        fleet.close().await;
        return Err(ApplyError::Unreachable(unreachable));
    }
    if !unreadable.is_empty() {
        fleet.close().await;
        return Err(ApplyError::Facts(unreadable));
    }
    let findings = preflight::run(
        c,
        &facts_by_host,
        &opts.ignore_preflight,
        &manifest.arches(),
    );
    let (errors, warnings): (Vec<Finding>, Vec<Finding>) = findings
        .into_iter()
        .partition(|f| f.severity == Severity::Error);
    if !errors.is_empty() {
        fleet.close().await;
        return Err(ApplyError::Preflight(errors));
    }
    // the cluster as its API sees it, when there is one
    let probe = plan::Input {
        cluster: c,
        manifest: &manifest,
        facts: &facts_by_host,
        state: None,
        cni_manifest: None,
        cloud_provider: None,
        mirrored: None,
        charts: None,
    };
    let state = match probe.init_host() {
        Some(h)
            if facts_by_host
                .get(&h.name)
                .is_some_and(|f| f.membership.role().is_some()) =>
        {
            match fleet.session(&h.name) {
                Some(s) => match cluster_state::observe(s).await {
                    Ok(st) => Some(st),
                    Err(e) => {
                        plan_warnings
                            .push(format!("cannot read the cluster's API on {}: {e}", h.name));
                        None
                    }
                },
                None => None,
            }
        }
        _ => None,
    };
    let cni_manifest = load_cni_manifest(loaded, &manifest).await?;
    let mirrored = match &c.artifacts.site_registry {
        Some(r) if c.artifacts.images == crate::model::ImageMode::Mirror => {
            let wanted = steps::mirror_images::wanted(c, &manifest, opts.cloud_provider.is_some())?;
            Some(steps::mirror_images::observe(c, r, &wanted).await?)
        }
        _ => None,
    };
    // the charts' values and archive sources, and the releases the cluster holds
    let charts = if c.charts.is_empty() {
        None
    } else {
        let list = match crate::charts::prepare(&c.charts).await {
            Ok(l) => l,
            Err(e) => {
                fleet.close().await;
                return Err(e.into());
            }
        };
        let releases = match state.as_ref().and_then(|s| fleet.session(&s.api_host)) {
            Some(s) => match crate::charts::observe(s).await {
                Ok(r) => Some(r),
                Err(e) => {
                    plan_warnings.push(format!(
                        "cannot read the cluster's Helm releases on {}: {e}; every chart is planned as an install",
                        s.name()
                    ));
                    None
                }
            },
            None => None,
        };
        Some(crate::charts::Prepared {
            charts: list,
            releases,
        })
    };
    let releases = charts.as_ref().and_then(|c| c.releases.clone());
    let input = plan::Input {
        cluster: c,
        manifest: &manifest,
        facts: &facts_by_host,
        state: state.as_ref(),
        cni_manifest,
        cloud_provider: opts.cloud_provider.clone(),
        mirrored,
        charts,
    };
    let mut plan = plan::plan::compute(super::APPLY, &input)?;
    plan.warnings.extend(plan_warnings);
    Ok(Prepared {
        plan,
        releases,
        manifest,
        facts: facts_by_host,
        state,
        warnings,
        fleet,
        elapsed: start.elapsed(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeLine {
    pub name: String,
    pub role: Role,
    pub ready: bool,
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: String,
    pub version: String,
    pub endpoint: String,
    pub changed: bool,
    pub nodes: Vec<NodeLine>,
    pub kubeconfig: Option<PathBuf>,
    pub kubeconfig_server: Option<String>,
    /// (phase, seconds)
    pub phases: Vec<(String, f64)>,
    pub total_seconds: f64,
    /// Time spent waiting on kubeadm and kubelets.
    pub waited_seconds: f64,
    pub uploaded_bytes: BTreeMap<String, u64>,
}

/// Executes a plan.
pub async fn execute(
    loaded: &Loaded,
    prepared: Prepared,
    opts: &Options,
) -> Result<Report, ApplyError> {
    let start = Instant::now();
    let c = &loaded.cluster;
    let Prepared {
        plan,
        fleet,
        elapsed: prepared_in,
        ..
    } = prepared;
    // gathering facts and planning came first (a confirmation prompt in between is not counted)
    let mut phases = Timings::starting_with(vec![(
        "facts and plan".to_string(),
        (prepared_in.as_secs_f64() * 10.0).round() / 10.0,
    )]);
    // 1. every artifact, verified, before any host changes
    let wanted = plan.artifacts();
    let mut cached = BTreeMap::new();
    if !wanted.is_empty() {
        let store = Store::new(&c.artifacts.cache_dir, c.artifacts.mirror.clone())?;
        let paths = store.fetch_all(&wanted, opts.bars).await?;
        for (a, p) in wanted.iter().zip(paths) {
            cached.insert(a.sha256.clone(), p);
        }
        phases.mark("download");
    }
    // 2. every image to push (image mode push), fetched and verified the same way
    let images = plan.images();
    let image_source = if images.is_empty() {
        None
    } else {
        let source = fetch_images(c, &images).await?;
        phases.mark("fetch images");
        Some(Arc::new(source) as Arc<dyn crate::engine::ImageSource>)
    };
    let mut ctx = Ctx::new(
        c.clone(),
        fleet.sessions.clone(),
        cached,
        plan.init_host.clone(),
        plan.node_ips.clone(),
    );
    ctx.images = image_source;
    let ctx = Arc::new(ctx);
    // 2. every step of the workflow, as it schedules its actions; the bootstrap token made
    // for this run's joins is deleted afterwards, also after a failure
    let outcome = exec::execute(super::APPLY, &plan.actions, &ctx, opts.bars, &mut phases)
        .await
        .map_err(|f| ApplyError::Steps {
            step: f.step,
            failures: f.failures,
        });
    if let Some(w) = steps::forget_join_secrets(&ctx).await {
        tracing::warn!("{w}");
    }
    outcome?;
    // 3. verification and the kubeconfig
    let (nodes, problems) = verify(&ctx).await;
    phases.mark("verify");
    if !problems.is_empty() {
        fleet.close().await;
        return Err(ApplyError::Verify(problems));
    }
    let (kubeconfig, server) = write_kubeconfig(loaded, &ctx, !plan.is_empty()).await?;
    fleet.close().await;
    let ep = desired::api_endpoint(c);
    Ok(Report {
        cluster: c.name.clone(),
        version: c.version.to_string(),
        endpoint: format!("https://{}:{}", ep.host, ep.port),
        changed: !plan.is_empty(),
        nodes,
        kubeconfig,
        kubeconfig_server: server,
        phases: phases.list,
        total_seconds: ((start.elapsed() + prepared_in).as_secs_f64() * 10.0).round() / 10.0,
        waited_seconds: (ctx
            .stats
            .waited
            .lock()
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
            * 10.0)
            .round()
            / 10.0,
        uploaded_bytes: ctx
            .stats
            .uploaded
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default(),
    })
}

/// The operator's verified copies of the images a run pushes.
struct FetchedImages {
    store: crate::images::ImageStore,
    /// By (`repo:tag@digest`, arch).
    fetched: BTreeMap<ImageKey, crate::images::FetchedImage>,
}

/// An image's `repo:tag@digest` and arch.
type ImageKey = (String, String);

impl crate::engine::ImageSource for FetchedImages {
    fn write_archive<'a>(
        &'a self,
        images: &'a [crate::engine::PlatformImage],
        out: &'a std::path::Path,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send + 'a>> {
        Box::pin(async move {
            let mut list = Vec::new();
            for i in images {
                let f = self
                    .fetched
                    .get(&(i.image.reference(), i.arch.clone()))
                    .ok_or_else(|| format!("{} was not fetched before the run", i.image))?;
                list.push(f.clone());
            }
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(out)
                .await
                .map_err(|e| format!("{}: {e}", out.display()))?;
            let n = self
                .store
                .write_archive(&list, &mut file)
                .await
                .map_err(|e| e.to_string())?;
            tokio::io::AsyncWriteExt::flush(&mut file)
                .await
                .map_err(|e| format!("{}: {e}", out.display()))?;
            Ok(n)
        })
    }
}

/// How the operator's machine reaches the registries of `images`: `registryMirrors`' first
/// endpoint for each registry that has one, else the `_default` entry's, as containerd picks
/// them (plain http only where the inventory allowed it: validation refuses it otherwise).
pub fn registry_options(
    c: &crate::model::Cluster,
    images: &[crate::engine::PlatformImage],
) -> crate::images::RegistryOptions {
    let mut o = crate::images::RegistryOptions::default();
    let mirrors = &c.artifacts.registry_mirrors;
    let registries: std::collections::BTreeSet<&str> = images
        .iter()
        .filter_map(|i| i.image.repo.split_once('/').map(|(r, _)| r))
        .collect();
    for registry in registries {
        let first = mirrors
            .get(registry)
            .or_else(|| mirrors.get("_default"))
            .and_then(|e| e.first());
        if let Some(first) = first {
            let base = first.trim_end_matches('/').to_string();
            if let Some(host) = base.strip_prefix("http://") {
                o.plain_http
                    .insert(host.split('/').next().unwrap_or(host).to_string());
            }
            o.mirrors.insert(registry.to_string(), base);
        }
    }
    o
}

/// Fetches each image once per platform (a few at a time), every blob verified into the cache.
async fn fetch_images(
    c: &crate::model::Cluster,
    images: &[crate::engine::PlatformImage],
) -> Result<FetchedImages, ApplyError> {
    use futures_util::StreamExt;
    // with a bundle, every blob comes from it, verified into the cache: no registry at all
    let store = match &c.artifacts.bundle {
        Some(b) => {
            crate::images::ImageStore::offline(&c.artifacts.cache_dir, &crate::bundle::blob_dir(b))?
        }
        None => {
            crate::images::ImageStore::new(&c.artifacts.cache_dir, registry_options(c, images))?
        }
    };
    let results: Vec<Result<(ImageKey, crate::images::FetchedImage), ApplyError>> =
        futures_util::stream::iter(images.iter().map(|i| {
            let store = &store;
            async move {
                let platform = crate::images::Platform::from_arch(&i.arch).ok_or_else(|| {
                    ApplyError::Plan(plan::PlanError::Refused(format!(
                        "no image platform for arch {}",
                        i.arch
                    )))
                })?;
                tracing::info!("fetch {} (linux/{})", i.image, i.arch);
                let f = store.fetch(&i.image, platform).await?;
                Ok(((i.image.reference(), i.arch.clone()), f))
            }
        }))
        .buffer_unordered(4)
        .collect()
        .await;
    let mut fetched = BTreeMap::new();
    for r in results {
        let (k, f) = r?;
        fetched.insert(k, f);
    }
    Ok(FetchedImages { store, fetched })
}

/// Waits until every host answers over SSH (new cloud servers are still booting): at most
/// 10 minutes for all; a host that answers with the wrong key or credentials fails at once.
pub async fn wait_reachable(loaded: &Loaded, connect: &ConnectOptions) -> Result<(), ApplyError> {
    use crate::wait::{Poll, poll_until};
    let (connector, resolver) = connect_setup(loaded, connect.clone())?;
    let deadline = Instant::now() + Duration::from_secs(600);
    for h in &loaded.cluster.hosts {
        let target = resolver.target(&h.name, &h.ssh);
        let what = format!("SSH on {} while the server boots", h.name);
        poll_until(
            deadline.saturating_duration_since(Instant::now()),
            Duration::from_secs(5),
            &what,
            || async {
                match connector.connect(&target).await {
                    Ok(s) => {
                        s.close().await;
                        Poll::Ready(())
                    }
                    Err(
                        e @ (crate::ssh::SshError::Connect { .. }
                        | crate::ssh::SshError::ConnectTimeout { .. }),
                    ) => {
                        tracing::debug!("{}: {e}", h.name);
                        Poll::Pending(e.to_string())
                    }
                    Err(e) => Poll::Abort(ApplyError::Unreachable(vec![(
                        h.name.clone(),
                        e.to_string(),
                    )])),
                }
            },
        )
        .await
        .map_err(|e| e.into_error(|t| ApplyError::Unreachable(vec![(h.name.clone(), t)])))?;
    }
    Ok(())
}

/// Checks the result: `/readyz` through the endpoint from every node (with the node's own
/// kubelet credentials and path to the API), every node Ready, the kube-system pods present.
pub async fn verify(ctx: &Arc<Ctx>) -> (Vec<NodeLine>, Vec<String>) {
    let mut problems = Vec::new();
    let hosts: Vec<(String, Arc<Session>)> = ctx
        .cluster
        .hosts
        .iter()
        .filter_map(|h| {
            ctx.sessions
                .get(&h.name)
                .map(|s| (h.name.clone(), s.clone()))
        })
        .collect();
    let readyz = fan_out(hosts, ctx.cluster.options.concurrency, |(_, s)| async move {
        s.exec("kubectl --kubeconfig /etc/kubernetes/kubelet.conf get --raw /readyz --request-timeout=15s").await
    })
    .await;
    for ((name, _), r, _) in readyz {
        match r {
            Ok(o) if o.success() && o.stdout().trim() == "ok" => {}
            Ok(o) => problems.push(format!(
                "{name}: /readyz through the API endpoint did not answer ok: {}{}",
                o.stdout().trim(),
                o.stderr().trim()
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let mut lines = Vec::new();
    match steps::nodes(ctx).await {
        Ok(nodes) => {
            for h in &ctx.cluster.hosts {
                match nodes.iter().find(|n| n.name == h.name) {
                    Some(n) => {
                        if !n.ready && steps::wait_ready::no_pod_network(&ctx.cluster) {
                            tracing::warn!(
                                "{}: NotReady until a pod network is installed (cni: none)",
                                h.name
                            );
                        } else if !n.ready {
                            problems.push(format!(
                                "{}: node not Ready: {}",
                                h.name,
                                n.not_ready_reason.clone().unwrap_or_default()
                            ));
                        }
                        lines.push(NodeLine {
                            name: h.name.clone(),
                            role: h.role,
                            ready: n.ready,
                            version: n.kubelet_version.clone(),
                        });
                    }
                    None => problems.push(format!("{}: not a node of the cluster", h.name)),
                }
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    // the DaemonSet and Deployment controllers create the pods of a node that just registered
    // a moment later: missing pods are asked for again for a while before they count
    match ctx.api() {
        Ok(api) => {
            use crate::wait::{Poll, WaitError, poll_until};
            let missing = std::sync::Mutex::new(Vec::new());
            let r = poll_until(
                SYSTEM_PODS_GRACE,
                Duration::from_secs(2),
                "the kube-system pods of every node",
                || async {
                    match api
                        .run(&kubectl(
                            "-n kube-system get pods -o json --request-timeout=20s",
                        ))
                        .await
                    {
                        Ok(json) => {
                            let m = missing_system_pods(&ctx.cluster, &json);
                            let why = m.join("; ");
                            *missing.lock().unwrap_or_else(|p| p.into_inner()) = m;
                            if why.is_empty() {
                                Poll::Ready(())
                            } else {
                                Poll::Pending(why)
                            }
                        }
                        Err(e) => Poll::Abort(e.to_string()),
                    }
                },
            )
            .await;
            match r {
                Ok(()) => {}
                // what is still missing after the grace period is what verification reports
                Err(WaitError::TimedOut { .. }) => {
                    problems.extend(missing.into_inner().unwrap_or_else(|p| p.into_inner()))
                }
                Err(WaitError::Aborted(e)) => problems.push(e),
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    (lines, problems)
}

/// How long verification waits for the kube-system pods of new nodes to be created.
const SYSTEM_PODS_GRACE: Duration = Duration::from_secs(60);

/// The kube-system pods a kubeadm cluster has: the control-plane static pods of every control
/// plane, a kube-proxy per node, CoreDNS.
pub fn missing_system_pods(c: &crate::model::Cluster, pods_json: &str) -> Vec<String> {
    let v: serde_json::Value = match serde_json::from_str(pods_json) {
        Ok(v) => v,
        Err(e) => return vec![format!("kube-system pods: {e}")],
    };
    let names: Vec<&str> = v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["metadata"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut missing = Vec::new();
    for h in c.control_planes() {
        for p in [
            "kube-apiserver",
            "etcd",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let want = format!("{p}-{}", h.name);
            if !names.contains(&want.as_str()) {
                missing.push(format!("kube-system pod {want} is missing"));
            }
        }
    }
    let proxies = names
        .iter()
        .filter(|n| n.starts_with("kube-proxy-"))
        .count();
    if proxies < c.hosts.len() {
        missing.push(format!(
            "{proxies} kube-proxy pods for {} nodes",
            c.hosts.len()
        ));
    }
    if !names.iter().any(|n| n.starts_with("coredns-")) {
        missing.push("no CoreDNS pod in kube-system".into());
    }
    missing
}

/// The API address for the operator's kubeconfig: the endpoint for an external or Octavia load
/// balancer. With the node-local endpoint (a name only the nodes resolve), a control plane's
/// own address: `via`, the one that answered, when it is a control plane, else the first. That
/// is its SSH address when it is an IP, else its node IP (a name in the inventory may be one
/// only the operator's ssh config knows). Both are certificate names of every API server.
pub fn operator_server(
    c: &crate::model::Cluster,
    via: Option<&str>,
    ips: &desired::NodeIps,
) -> String {
    let ep = desired::api_endpoint(c);
    match c.api.load_balancer {
        LoadBalancer::Local => format!(
            "https://{}:{}",
            c.control_planes()
                .find(|h| Some(h.name.as_str()) == via)
                .or_else(|| c.control_planes().next())
                .map(|h| if h.ssh.address.parse::<std::net::IpAddr>().is_ok() {
                    h.ssh.address.as_str()
                } else {
                    ips.ip(h)
                })
                .unwrap_or(ep.host.as_str()),
            desired::API_PORT
        ),
        _ => format!("https://{}:{}", ep.host, ep.port),
    }
}

/// Default path of the operator's kubeconfig: beside the inventory, `<cluster>.kubeconfig`.
pub fn kubeconfig_path(loaded: &Loaded) -> PathBuf {
    loaded
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(format!("{}.kubeconfig", loaded.cluster.name))
}

/// Fetches admin.conf and rewrites it for the operator.
pub async fn fetch_kubeconfig(
    loaded: &Loaded,
    api: &Session,
) -> Result<(serde_json::Value, String), ApplyError> {
    let raw = api
        .read_file(ADMIN_KUBECONFIG)
        .await
        .map_err(|e| ApplyError::Other(e.into()))?;
    let c = &loaded.cluster;
    let mut ips = desired::NodeIps::from_inventory(c);
    if let Some(h) = c.host(api.name())
        && ips.get(&h.name).is_none()
        && let Some(ip) = facts::ssh_local_address(api).await
    {
        ips.0.insert(
            h.name.clone(),
            desired::NodeIp {
                ip: ip.to_string(),
                source: desired::NodeIpSource::SshConnection,
                interface: None,
            },
        );
    }
    let server = operator_server(c, Some(api.name()), &ips);
    let v = crate::kubeconfig::for_operator(
        &String::from_utf8_lossy(&raw),
        &loaded.cluster.name,
        &server,
        api.name(),
    )
    .map_err(|e| ApplyError::Other(e.into()))?;
    Ok((v, server))
}

/// The admin kubeconfig for the operator, from the first control plane that answers, with
/// the server address the operator reaches (see [`operator_server`]).
pub async fn admin_kubeconfig(
    loaded: &Loaded,
    connect: ConnectOptions,
) -> Result<(serde_json::Value, String), ApplyError> {
    let (connector, resolver) = connect_setup(loaded, connect)?;
    let mut last = None;
    for h in loaded.cluster.control_planes() {
        match connector.connect(&resolver.target(&h.name, &h.ssh)).await {
            Ok(s) => {
                let r = fetch_kubeconfig(loaded, &s).await;
                s.close().await;
                match r {
                    Ok(v) => return Ok(v),
                    Err(e) => last = Some(e),
                }
            }
            Err(e) => last = Some(ApplyError::Other(e.into())),
        }
    }
    Err(last.unwrap_or_else(|| {
        ApplyError::Other(anyhow::anyhow!("the inventory lists no control plane"))
    }))
}

async fn write_kubeconfig(
    loaded: &Loaded,
    ctx: &Ctx,
    changed: bool,
) -> Result<(Option<PathBuf>, Option<String>), ApplyError> {
    let path = kubeconfig_path(loaded);
    if !changed && path.exists() {
        return Ok((
            Some(path),
            Some(operator_server(&loaded.cluster, None, &ctx.node_ips)),
        ));
    }
    let api = ctx.api().map_err(|e| ApplyError::Other(e.into()))?;
    let (v, server) = fetch_kubeconfig(loaded, api).await?;
    crate::kubeconfig::write_private(&path, &crate::kubeconfig::to_yaml(&v))
        .map_err(|e| ApplyError::Other(e.into()))?;
    Ok((Some(path), Some(server)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_fetched_through_the_registry_mirrors_containerd_would_use() {
        let text = "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n  kubernetes: {version: 1.33.5}\n  artifacts:\n    allowHttpRegistryMirrors: true\n    registryMirrors: {registry.k8s.io: ['http://10.0.0.9:5000/', 'https://second'], _default: ['https://all.example']}\n  hosts:\n    - {name: cp1, address: 10.0.0.11, role: control-plane}\n";
        let l = crate::inventory::load_str(
            std::path::Path::new("t.yaml"),
            text,
            std::path::Path::new("/"),
            &|_| None,
        )
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
        let img = |t: &str| crate::engine::PlatformImage {
            image: crate::release::Image::parse(t).unwrap(),
            arch: "amd64".into(),
        };
        let o = registry_options(
            &l.cluster,
            &[
                img("registry.k8s.io/pause:3.10"),
                img("ghcr.io/flannel-io/flannel:v0.27.3"),
            ],
        );
        assert_eq!(
            o.mirrors.into_iter().collect::<Vec<_>>(),
            vec![
                ("ghcr.io".to_string(), "https://all.example".to_string()),
                (
                    "registry.k8s.io".to_string(),
                    "http://10.0.0.9:5000".to_string()
                ),
            ]
        );
        assert_eq!(
            o.plain_http.into_iter().collect::<Vec<_>>(),
            vec!["10.0.0.9:5000"]
        );
    }
}
