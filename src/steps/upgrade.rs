//! upgrade: change `spec.kubernetes.version` and apply. The first control plane runs
//! `kubeadm upgrade apply`, the other control planes `kubeadm upgrade node` one at a time, then
//! the workers in batches of `workerDisruptionPercent`. Every node is cordoned and drained
//! (honouring PodDisruptionBudgets), gets its new binaries, restarts its kubelet, must be Ready
//! at the new version, and is uncordoned. The run halts at the first failure with the cluster
//! serving; the node is left cordoned only when it is unhealthy. A re-run resumes.

use crate::cluster_state::{CORDON_ANNOTATION, kubectl};
use crate::desired::HostDesired;
use crate::engine::{Action, Ctx, Input, PlanCx, PlanError, Run, RunFuture, Step, StepError};
use crate::model::{Host, Role};
use crate::release::Artifact;
use crate::ssh::session::Exec;
use std::collections::BTreeSet;
use std::time::Duration;

/// An upgrade (or a resume of one) the plan carries out.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub from: semver::Version,
    pub to: semver::Version,
    /// Members whose binaries or kubelet are not at the target yet.
    pub hosts: BTreeSet<String>,
}

fn parse(v: &str) -> Option<semver::Version> {
    crate::release::parse_version(v)
}

/// The version policy, from the version the API server reports and every node's kubelet:
/// no downgrade; no skipped minor release, for the cluster and for each control plane (a
/// control plane still behind from an interrupted upgrade counts: kubeadm upgrades a control
/// plane one minor at a time); kubelets at most three minors behind the target and never newer.
/// kubectl is replaced with kubelet on every member, so it ends within kubectl's one-minor skew.
pub fn skew(
    from: &semver::Version,
    to: &semver::Version,
    nodes: &[crate::cluster_state::NodeState],
) -> Result<(), String> {
    if to < from {
        return Err(format!(
            "Kubernetes {from} cannot be downgraded to {to}: kubeadm supports upgrades only; restore a backup to go back"
        ));
    }
    if to.major != from.major || to.minor > from.minor + 1 {
        return Err(format!(
            "an upgrade from {from} to {to} skips a minor release; upgrade one minor at a time (next: {}.{}.x)",
            from.major,
            from.minor + 1
        ));
    }
    for n in nodes {
        let Some(k) = parse(&n.kubelet_version) else {
            continue;
        };
        if k > *to {
            return Err(format!(
                "node {} runs kubelet {k}, newer than the target {to}",
                n.name
            ));
        }
        if n.control_plane && (k.major != to.major || k.minor + 1 < to.minor) {
            return Err(format!(
                "control plane {} is still at {k}: an upgrade to {to} would skip a minor release on it; set the version to {}.{}.x and apply first",
                n.name,
                k.major,
                k.minor + 1
            ));
        }
        if k.major != to.major || k.minor + 3 < to.minor {
            return Err(format!(
                "node {} runs kubelet {k}, more than three minor releases behind {to}: upgrade it first",
                n.name
            ));
        }
    }
    Ok(())
}

/// Checks the version policy and finds the members to upgrade. Errors refuse the whole run,
/// before any host is touched.
pub fn check(input: &Input) -> Result<Option<Upgrade>, String> {
    if !input.cluster_exists() {
        return Ok(None);
    }
    let to = input.cluster.version.clone();
    let Some(state) = input.state else {
        return Err(
            "the cluster's API did not answer, so its version is unknown; kubeforge changes a running cluster only when it can read it"
                .into(),
        );
    };
    let Some(from) = state.server_version.as_deref().and_then(parse) else {
        return Err("the API server did not report its version".into());
    };
    skew(&from, &to, &state.nodes)?;
    let mut hosts = BTreeSet::new();
    for h in &input.cluster.hosts {
        if !input.is_member(h) {
            continue;
        }
        let Some(f) = input.facts.get(&h.name) else {
            continue;
        };
        let node_at = state.node(&h.name).and_then(|n| parse(&n.kubelet_version));
        let binaries_at_target = crate::release::KUBE_COMPONENTS.iter().all(|c| {
            input
                .manifest
                .artifact(c, &f.arch)
                .is_some_and(|a| f.marker_sha(c) == Some(a.sha256.as_str()))
        });
        if node_at.as_ref() != Some(&to) || !binaries_at_target {
            hosts.insert(h.name.clone());
        }
    }
    // with no host to upgrade, the plan may still resume an uncordon
    Ok(Some(Upgrade { from, to, hosts }))
}

/// The upgrade actions of the members with `role`, in order (for control planes: the first
/// one, then the others): the upgrade of each member not at the target yet, and the uncordon
/// of a member an interrupted run left cordoned and that is Ready now.
pub fn plan(cx: &PlanCx, step: &dyn Step, role: Role) -> Result<Vec<Action>, PlanError> {
    let Some(u) = check(cx).map_err(PlanError::Upgrade)? else {
        return Ok(Vec::new());
    };
    let c = cx.cluster;
    let Some(state) = cx.state else {
        return Ok(Vec::new());
    };
    let init = cx.init;
    let server_at_target = state.server_version.as_deref().and_then(parse).as_ref() == Some(&u.to);
    let mut order: Vec<&Host> = Vec::new();
    order.push(init);
    order.extend(c.control_planes().filter(|h| h.name != init.name));
    order.extend(c.workers());
    let mut out = Vec::new();
    for h in order.into_iter().filter(|h| h.role == role) {
        let f = cx.facts_of(h);
        let node = state.node(&h.name);
        if u.hosts.contains(&h.name) {
            let want: &HostDesired = cx.want(h);
            // kubeadm first (kubeadm upgrade needs the new one), then the runtime, then kubelet/kubectl
            let mut installs: Vec<Artifact> = Vec::new();
            for comp in crate::release::upgrade_order() {
                if let Some(a) = want.installs.iter().find(|a| a.component == comp)
                    && (f.marker_sha(comp) != Some(a.sha256.as_str()) || comp == "kubelet")
                {
                    installs.push(a.clone());
                }
            }
            let first = h.name == init.name && !server_at_target;
            let from = node
                .map(|n| n.kubelet_version.clone())
                .unwrap_or_else(|| u.from.to_string());
            let runtime_files = super::runtime::deferred_files(h, f, want);
            let runtime = if runtime_files.is_empty() {
                ""
            } else {
                ", new containerd config"
            };
            let new_kubeadm = installs.iter().any(|a| a.component == "kubeadm");
            let pull = cx.input.cluster.artifacts.images != crate::model::ImageMode::Push;
            let what = sequence(&u.to.to_string(), first, new_kubeadm, runtime, pull);
            out.push(Action::on(
                h,
                step,
                format!("upgrade {} {from} → {}: {}", h.name, u.to, what.join(", ")),
                UpgradeNode {
                    first,
                    installs,
                    runtime_files,
                },
            ));
        } else if node.is_some_and(|n| n.cordoned_by_kubeforge && n.unschedulable && n.ready) {
            out.push(Action::on(
                h,
                step,
                format!(
                    "uncordon {} (left cordoned by an interrupted run; Ready now)",
                    h.name
                ),
                Uncordon,
            ));
        }
    }
    Ok(out)
}

/// cordon, drain, kubeadm upgrade (apply on the first control plane), new binaries, kubelet
/// restart, Ready at the new version, uncordon.
#[derive(Debug, Clone)]
pub struct UpgradeNode {
    pub first: bool,
    pub installs: Vec<Artifact>,
    /// runtime files written after the drain (they restart containerd)
    pub runtime_files: Vec<crate::desired::ManagedFile>,
}

impl Run for UpgradeNode {
    fn run<'a>(&'a self, ctx: &'a Ctx, host: &'a str) -> RunFuture<'a> {
        Box::pin(run(
            ctx,
            host,
            self.first,
            &self.installs,
            &self.runtime_files,
        ))
    }
    fn installs(&self) -> &[Artifact] {
        &self.installs
    }
}

/// A node an interrupted run left cordoned, now healthy at the right version.
#[derive(Debug, Clone)]
pub struct Uncordon;
crate::run_op!(Uncordon, |_op, ctx, host| uncordon(host, ctx.api()?).await);

/// A control plane other than `host` to run kubectl on while `host` restarts its API server.
fn kubectl_host<'a>(
    ctx: &'a Ctx,
    host: &str,
) -> Result<&'a std::sync::Arc<crate::ssh::Session>, StepError> {
    for h in ctx.cluster.control_planes() {
        if h.name != host
            && let Some(s) = ctx.sessions.get(&h.name)
        {
            return Ok(s);
        }
    }
    ctx.api()
}

/// The pods a drain could not evict, from kubectl's messages (`pods/"web-1" -n "default"`).
pub fn blocked_pods(output: &str) -> Vec<String> {
    let mut pods: Vec<String> = Vec::new();
    for (i, _) in output.match_indices("pods/\"") {
        let rest = &output[i + 6..];
        let Some(end) = rest.find('"') else { continue };
        let name = &rest[..end];
        let ns = rest[end..]
            .strip_prefix("\" -n \"")
            .and_then(|r| r.split('"').next())
            .unwrap_or("default");
        let p = format!("{ns}/{name}");
        if !pods.contains(&p) {
            pods.push(p);
        }
    }
    pods
}

pub async fn cordon(host: &str, kubectl_on: &crate::ssh::Session) -> Result<(), StepError> {
    // a node's name comes from the cluster's API too (a node the inventory no longer lists)
    let host = &crate::util::shell_quote(host);
    kubectl_on
        .run(&format!(
            "{} && {}",
            kubectl(&format!(
                "annotate node {host} {CORDON_ANNOTATION}=true --overwrite"
            )),
            kubectl(&format!("cordon {host}"))
        ))
        .await?;
    Ok(())
}

pub async fn uncordon(host: &str, kubectl_on: &crate::ssh::Session) -> Result<(), StepError> {
    let host = &crate::util::shell_quote(host);
    kubectl_on
        .run(&format!(
            "{} && {}",
            kubectl(&format!("uncordon {host}")),
            kubectl(&format!("annotate node {host} {CORDON_ANNOTATION}-"))
        ))
        .await?;
    Ok(())
}

/// Drains a node with the inventory's grace period and timeout; a drain that times out names
/// the pods it could not evict.
pub async fn drain(
    o: &crate::model::Options,
    host: &str,
    kubectl_on: &crate::ssh::Session,
) -> Result<(), StepError> {
    let cmd = kubectl(&format!(
        "drain {} --ignore-daemonsets --delete-emptydir-data --grace-period={} --timeout={}s",
        crate::util::shell_quote(host),
        o.drain_grace_period.as_secs(),
        o.drain_timeout.as_secs()
    ));
    let out = kubectl_on
        .exec_with(
            &cmd,
            Exec {
                timeout: Some(o.drain_timeout + Duration::from_secs(60)),
                ..Exec::default()
            },
        )
        .await?;
    if out.success() {
        return Ok(());
    }
    let text = format!("{}\n{}", out.stdout(), out.stderr());
    let pods = blocked_pods(&text);
    let why = if text.contains("disruption budget") {
        "its PodDisruptionBudget allows no disruption"
    } else {
        "eviction failed"
    };
    let msg = if pods.is_empty() {
        format!(
            "drain did not finish: {}",
            text.trim().lines().last().unwrap_or_default()
        )
    } else {
        format!(
            "drain did not finish within {}s: pod{} {} cannot be evicted ({why})",
            o.drain_timeout.as_secs(),
            if pods.len() == 1 { "" } else { "s" },
            pods.join(", ")
        )
    };
    Err(StepError::failed(host, msg))
}

/// Waits until the node is Ready at `version`.
async fn wait_node(
    ctx: &Ctx,
    host: &str,
    version: &str,
    kubectl_on: &crate::ssh::Session,
) -> Result<(), StepError> {
    use crate::wait::{Poll, poll_until};
    let _w = ctx.stats.wait();
    poll_until(
        super::wait_ready::TIMEOUT,
        Duration::from_secs(2),
        &format!("node {host} to be Ready at {version}"),
        || async {
            let json = match kubectl_on
                .run(&kubectl("get nodes -o json --request-timeout=15s"))
                .await
            {
                Ok(json) => json,
                Err(e) => return Poll::Pending(e.to_string()),
            };
            match crate::cluster_state::parse_nodes(&json) {
                Ok(nodes) => match nodes.into_iter().find(|n| n.name == host) {
                    Some(n) if n.ready && n.kubelet_version == version => Poll::Ready(()),
                    Some(n) => Poll::Pending(format!(
                        "kubelet {}, {}",
                        n.kubelet_version,
                        n.not_ready_reason.unwrap_or_else(|| "Ready".into())
                    )),
                    None => Poll::Pending("not registered".into()),
                },
                Err(e) => Poll::Pending(e),
            }
        },
    )
    .await
    .map_err(|e| e.into_error(|t| StepError::failed(host, t)))
}

/// Takes a control plane out of (or back into) the workers' load balancers.
pub async fn lb_rotation(ctx: &Ctx, control_plane: &str, serving: bool) {
    super::api_endpoint::lb_rotation(&ctx.cluster, &ctx.sessions, control_plane, serving).await
}

/// The address a control plane's own API server and etcd member answer at.
fn own_address<'a>(ctx: &'a Ctx, host: &str) -> Result<&'a str, StepError> {
    ctx.cluster
        .host(host)
        .map(|h| ctx.node_ips.ip(h))
        .ok_or_else(|| StepError::failed(host, "not in the inventory"))
}

/// Whether a control plane's own API server and etcd member are ready now (a few tries).
async fn wait_apiserver_briefly(ctx: &Ctx, host: &str) -> bool {
    let (Ok(s), Ok(address)) = (ctx.session(host), own_address(ctx, host)) else {
        return false;
    };
    super::control_plane_ready::wait(s, address, Duration::from_secs(5))
        .await
        .is_ok()
}

/// Waits until a control plane's own API server answers /readyz and its own etcd member is
/// healthy (not through the endpoint: a load balancer answers while another one serves).
async fn wait_apiserver(ctx: &Ctx, host: &str) -> Result<(), StepError> {
    let s = ctx.session(host)?;
    let address = own_address(ctx, host)?;
    let _w = ctx.stats.wait();
    super::control_plane_ready::wait(s, address, super::wait_ready::TIMEOUT)
        .await
        .map_err(|m| StepError::failed(host, m))
}

/// `kubeadm config images pull` of the target release, through the CRI.
pub fn pre_pull_command(version: &str) -> String {
    format!(
        "kubeadm config images pull --kubernetes-version v{version} --cri-socket unix:///run/containerd/containerd.sock"
    )
}

/// What a node's upgrade does, in order (the plan's summary and the run follow it).
/// `pull`: the node pulls the new release's images itself (image modes pull and mirror); in push mode they
/// were imported with the hosts' preparation, before any upgrade.
pub fn sequence(
    version: &str,
    first: bool,
    new_kubeadm: bool,
    runtime: &str,
    pull: bool,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if new_kubeadm {
        out.push("new kubeadm".into());
    }
    if pull {
        out.push(pre_pull_label(version));
    }
    out.push("cordon".into());
    out.push("drain".into());
    out.push(
        if first {
            "kubeadm upgrade apply"
        } else {
            "kubeadm upgrade node"
        }
        .into(),
    );
    out.push(format!("new binaries{runtime}"));
    out.push("restart kubelet".into());
    out.push("uncordon".into());
    out
}

fn pre_pull_label(version: &str) -> String {
    format!("pre-pull images of v{version}")
}

/// Pulls the target release's images onto the node with the new kubeadm before `kubeadm
/// upgrade`: `upgrade apply` runs a health-check Job from the new pause image and gives it 15 s
/// (kubernetes/kubeadm#3282), too little for a pull; every node then restarts its pods from
/// images already there.
async fn pre_pull(ctx: &Ctx, host: &str, version: &str) -> Result<(), StepError> {
    let label = pre_pull_label(version);
    tracing::info!("{host}: {label}");
    let cmd = pre_pull_command(version);
    run_kubeadm(
        ctx,
        host,
        &cmd,
        Some(&label),
        &format!("{label} failed ({cmd})"),
    )
    .await
}

/// Runs a kubeadm command of the upgrade on `host` (up to 15 minutes, counted as waiting); a
/// failure says `failed` and the last lines kubeadm printed.
async fn run_kubeadm(
    ctx: &Ctx,
    host: &str,
    cmd: &str,
    display: Option<&str>,
    failed: &str,
) -> Result<(), StepError> {
    let out = ctx
        .waiting(ctx.session(host)?.exec_with(
            cmd,
            Exec {
                display,
                timeout: Some(Duration::from_secs(900)),
                ..Exec::default()
            },
        ))
        .await?;
    if !out.success() {
        return Err(StepError::failed(
            host,
            format!("{failed}:\n    {}", last_lines(&out, 6)),
        ));
    }
    Ok(())
}

/// The last `n` non-empty lines of a command's stdout and stderr, indented for a message.
fn last_lines(out: &crate::ssh::session::ExecOutput, n: usize) -> String {
    let text = format!("{}\n{}", out.stdout(), out.stderr());
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n    ")
}

/// Upgrades one node.
pub async fn run(
    ctx: &Ctx,
    host: &str,
    first: bool,
    installs: &[Artifact],
    runtime_files: &[crate::desired::ManagedFile],
) -> Result<(), StepError> {
    let s = ctx.session(host)?;
    let kc = kubectl_host(ctx, host)?;
    let version = ctx.cluster.version.to_string();
    let control_plane = ctx
        .cluster
        .host(host)
        .is_some_and(|h| h.role == Role::ControlPlane);
    if control_plane {
        lb_rotation(ctx, host, false).await;
    }
    let result = async {
        // the new kubeadm, then the new release's images, while the node still serves
        let (kubeadm, rest): (Vec<&Artifact>, Vec<&Artifact>) =
            installs.iter().partition(|a| a.component == "kubeadm");
        for a in kubeadm {
            crate::engine::ops::install(ctx, host, a).await?;
        }
        // push mode: the images are there already (push-images ran with the preparation), and
        // `kubeadm config images pull` pulls even what containerd holds
        if ctx.cluster.artifacts.images != crate::model::ImageMode::Push {
            pre_pull(ctx, host, &version).await?;
        }
        cordon(host, kc).await?;
        ctx.waiting(drain(&ctx.cluster.options, host, kc)).await?;
        let cmd = if first {
            format!("kubeadm upgrade apply v{version} -y")
        } else {
            "kubeadm upgrade node".to_string()
        };
        run_kubeadm(ctx, host, &cmd, None, &format!("{cmd} failed")).await?;
        let runtime_changed = rest
            .iter()
            .any(|a| crate::release::RUNTIME_COMPONENTS.contains(&a.component.as_str()));
        for a in &rest {
            crate::engine::ops::install(ctx, host, a).await?;
        }
        for f in runtime_files {
            crate::engine::ops::WriteFile(f.clone())
                .run(ctx, host)
                .await?;
        }
        if runtime_changed || !runtime_files.is_empty() {
            super::runtime::start_containerd(s).await?;
        }
        s.run("systemctl daemon-reload && systemctl restart kubelet")
            .await?;
        wait_node(ctx, host, &version, kc).await?;
        if control_plane {
            wait_apiserver(ctx, host).await?;
        }
        uncordon(host, kc).await?;
        Ok::<(), StepError>(())
    }
    .await;
    if control_plane && (result.is_ok() || wait_apiserver(ctx, host).await.is_ok()) {
        lb_rotation(ctx, host, true).await;
    }
    if let Err(e) = result {
        // leave the node cordoned only when it is unhealthy, and say which it is
        let alive = s
            .exec("systemctl is-active -q kubelet")
            .await
            .is_ok_and(|o| o.success());
        // asked through another control plane: this one's own API server may be what failed
        let ready = super::nodes_through(kc)
            .await
            .ok()
            .and_then(|n| n.into_iter().find(|n| n.name == host))
            .is_some_and(|n| n.ready);
        let serving = !control_plane || wait_apiserver_briefly(ctx, host).await;
        let note = if alive && ready && serving && uncordon(host, kc).await.is_ok() {
            "the node is healthy and was uncordoned"
        } else {
            "the node is left cordoned: it is not healthy"
        };
        return Err(StepError::failed(
            host,
            format!("{} ({note})", crate::secrets::redact(&e.to_string())),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, version: &str, control_plane: bool) -> crate::cluster_state::NodeState {
        crate::cluster_state::NodeState {
            name: name.into(),
            kubelet_version: version.into(),
            ready: true,
            not_ready_reason: None,
            unschedulable: false,
            control_plane,
            internal_ip: None,
            labels: Default::default(),
            cordoned_by_kubeforge: false,
        }
    }

    #[test]
    fn version_skew_policy() {
        let v = |s: &str| parse(s).unwrap();
        let cp = |ver: &str| node("cp2", ver, true);
        let w = |ver: &str| node("w1", ver, false);
        assert_eq!(
            skew(&v("1.33.5"), &v("1.34.1"), &[cp("v1.33.5"), w("v1.33.5")]),
            Ok(())
        );
        assert!(
            skew(&v("1.33.5"), &v("1.33.4"), &[])
                .unwrap_err()
                .contains("cannot be downgraded")
        );
        assert!(
            skew(&v("1.32.9"), &v("1.34.1"), &[])
                .unwrap_err()
                .contains("skips a minor release; upgrade one minor at a time (next: 1.33.x)")
        );
        // an HA cluster half-way through an earlier upgrade: the API answered at 1.33, cp2 is
        // still at 1.32
        assert_eq!(
            skew(&v("1.33.5"), &v("1.34.1"), &[cp("v1.32.9")]).unwrap_err(),
            "control plane cp2 is still at 1.32.9: an upgrade to 1.34.1 would skip a minor release on it; set the version to 1.33.x and apply first"
        );
        // workers may catch up from within the kubelet skew
        assert_eq!(skew(&v("1.34.1"), &v("1.35.1"), &[w("v1.32.9")]), Ok(()));
        assert!(
            skew(&v("1.34.1"), &v("1.35.1"), &[w("v1.31.4")])
                .unwrap_err()
                .contains("more than three minor releases behind")
        );
        assert!(
            skew(&v("1.34.1"), &v("1.34.1"), &[w("v1.35.0")])
                .unwrap_err()
                .contains("newer than the target")
        );
    }

    #[test]
    fn pods_blocked_by_a_budget() {
        let out = "evicting pod default/web-1\nerror when evicting pods/\"web-1\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.\nerror: unable to drain node \"node4\" due to error: error when evicting pods/\"web-1\" -n \"default\": global timeout reached: 12s, continuing command...";
        assert_eq!(blocked_pods(out), vec!["default/web-1"]);
        assert!(blocked_pods("node/node4 drained").is_empty());
    }

    #[test]
    fn images_are_pulled_with_the_new_kubeadm_before_the_upgrade() {
        assert_eq!(
            pre_pull_command("1.34.1"),
            "kubeadm config images pull --kubernetes-version v1.34.1 --cri-socket unix:///run/containerd/containerd.sock"
        );
        let s = sequence("1.34.1", true, true, ", new containerd config", true);
        let at = |x: &str| {
            s.iter()
                .position(|y| y == x)
                .unwrap_or_else(|| panic!("{x}: {s:?}"))
        };
        assert!(at("new kubeadm") < at("pre-pull images of v1.34.1"));
        assert!(at("pre-pull images of v1.34.1") < at("kubeadm upgrade apply"));
        assert!(
            at("pre-pull images of v1.34.1") < at("drain"),
            "pulled while the node still serves"
        );
        assert_eq!(s[5], "new binaries, new containerd config");
        let s = sequence("1.34.1", false, false, "", true);
        assert_eq!(
            s.join(", "),
            "pre-pull images of v1.34.1, cordon, drain, kubeadm upgrade node, new binaries, restart kubelet, uncordon"
        );
        // push mode: pushed with the hosts' preparation, nothing to pull
        let s = sequence("1.34.1", false, false, "", false);
        assert_eq!(
            s.join(", "),
            "cordon, drain, kubeadm upgrade node, new binaries, restart kubelet, uncordon"
        );
    }
}
