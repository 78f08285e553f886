//! charts: the inventory's Helm charts (`spec.addons.charts`), after the CNI. Each chart's
//! archive is a pinned artifact, downloaded and verified on the operator's machine before any
//! host changes; on the API host, the pinned helm (installed there only, and only when a chart
//! needs it) runs `helm upgrade --install ... --atomic --wait` with the values in 0600 files
//! removed afterwards. The release Secret is labelled with the digests of the archive and the
//! values, so a release that matches both is left alone (no helm call).

use crate::charts::{CHART_LABEL, ChartInput, Release, VALUES_LABEL, label_value};
use crate::engine::ops::Install;
use crate::engine::{Action, PlanCx, PlanError, Run, RunFuture, Schedule, Step, StepError};
use crate::model::Cluster;
use crate::paths;
use crate::ssh::session::{Exec, Upload};
use crate::util::shell_quote;
use std::time::Duration;

pub struct Charts;

impl Step for Charts {
    fn name(&self) -> &'static str {
        "charts"
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::OneAtATime
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        plan(cx)
    }
}

/// `helm upgrade --install` of one chart.
#[derive(Debug, Clone)]
pub struct HelmRelease {
    pub input: ChartInput,
    /// "install" or "upgrade".
    pub verb: &'static str,
}

impl Run for HelmRelease {
    fn run<'a>(&'a self, ctx: &'a crate::engine::Ctx, host: &'a str) -> RunFuture<'a> {
        Box::pin(run(ctx, host, &self.input))
    }
    fn installs(&self) -> &[crate::release::Artifact] {
        std::slice::from_ref(&self.input.archive)
    }
}

/// `helm uninstall` of a release kubeforge installed that the inventory no longer lists
/// (`apply --prune` only; destructive: confirmed).
#[derive(Debug, Clone)]
pub struct HelmUninstall {
    pub name: String,
    pub namespace: String,
}

impl Run for HelmUninstall {
    fn run<'a>(&'a self, ctx: &'a crate::engine::Ctx, host: &'a str) -> RunFuture<'a> {
        Box::pin(async move {
            let s = ctx.session(host)?;
            let cmd = format!(
                "helm uninstall {} --namespace {} --wait --timeout 5m --kubeconfig {} </dev/null",
                shell_quote(&self.name),
                shell_quote(&self.namespace),
                paths::ADMIN_KUBECONFIG
            );
            let out = ctx.waiting(s.exec_with(&cmd, Exec::default())).await?;
            if !out.success() {
                return Err(StepError::failed(
                    host,
                    format!(
                        "release {} (namespace {}): helm uninstall failed (exit status {}):\n    {}",
                        self.name,
                        self.namespace,
                        out.status,
                        out.stderr()
                            .trim()
                            .lines()
                            .take(12)
                            .collect::<Vec<_>>()
                            .join("\n    ")
                    ),
                ));
            }
            Ok(())
        })
    }
    fn destructive(&self) -> Option<&'static str> {
        Some("uninstall")
    }
}

/// The releases kubeforge installed (its labels are on them) that the inventory no longer lists:
/// what `apply --prune` uninstalls. Releases of other tools are never touched.
pub fn unlisted(
    c: &Cluster,
    releases: &std::collections::BTreeMap<(String, String), Release>,
) -> Vec<(String, String)> {
    releases
        .iter()
        .filter(|(_, r)| r.chart_sha.is_some() && r.status != "uninstalled")
        .filter(|((ns, name), _)| {
            !c.charts
                .iter()
                .any(|ch| ch.namespace == *ns && ch.name == *name)
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Adds the uninstalls of [`unlisted`] releases to a plan, as destructive actions.
pub fn prune(
    plan: &mut crate::engine::Plan,
    c: &Cluster,
    releases: &std::collections::BTreeMap<(String, String), Release>,
) {
    for (namespace, name) in unlisted(c, releases) {
        let summary = format!(
            "helm uninstall {name} in namespace {namespace} (a release of kubeforge the inventory no longer lists)"
        );
        plan.destructive.push(crate::engine::Destructive {
            host: plan.init_host.clone(),
            step: "uninstall",
            summary: summary.clone(),
        });
        plan.actions.push(Action::cluster(
            &Charts,
            summary,
            HelmUninstall { name, namespace },
        ));
    }
}

/// What a chart needs: None when its release matches the archive and the values.
pub fn needed(input: &ChartInput, have: Option<&Release>) -> Option<(&'static str, String)> {
    let c = &input.chart;
    let Some(r) = have else {
        return Some(("install", String::new()));
    };
    let chart_ok = r.chart_sha.as_deref() == Some(label_value(&input.archive.sha256));
    let values_ok = r.values_sha.as_deref() == Some(label_value(&input.values_sha256));
    if r.status == "deployed" && chart_ok && values_ok {
        return None;
    }
    let mut why = Vec::new();
    if r.status != "deployed" {
        why.push(format!("revision {} is {}", r.revision, r.status));
    }
    if !chart_ok {
        why.push(format!(
            "chart archive differs from {} {}",
            c.version,
            short(&c.sha256)
        ));
    }
    if !values_ok {
        why.push("values changed".to_string());
    }
    Some(("upgrade", format!(" ({})", why.join(", "))))
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn plan(cx: &PlanCx) -> Result<Vec<Action>, PlanError> {
    let Some(p) = &cx.charts else {
        return Ok(Vec::new());
    };
    let releases = p.releases.as_ref().filter(|_| cx.cluster_exists());
    let mut out = Vec::new();
    for input in &p.charts {
        let c = &input.chart;
        let have = releases.and_then(|r| r.get(&(c.namespace.clone(), c.name.clone())));
        let Some((verb, why)) = needed(input, have) else {
            continue;
        };
        let what = match &c.source {
            crate::model::ChartSource::Local(path) => path.display().to_string(),
            crate::model::ChartSource::Repo { url, chart } => format!("{chart} from {url}"),
        };
        let mut a = Action::cluster(
            &Charts,
            format!(
                "helm {verb} {} {} ({what}) in namespace {}{why}",
                c.name, c.version, c.namespace
            ),
            HelmRelease {
                input: input.clone(),
                verb,
            },
        );
        a.upload_bytes = input.values.iter().map(|(_, v)| v.len() as u64).sum();
        out.push(a);
    }
    if out.is_empty() {
        return Ok(out);
    }
    // the pinned helm, on the API host only, when a chart needs it
    let api = cx.init;
    let f = cx.facts_of(api);
    let helm = cx.manifest.tool("helm", &f.arch).ok_or_else(|| {
        PlanError::Refused(format!(
            "spec.addons.charts needs helm, and the release manifest of Kubernetes {} pins none for {} (add it under tools:)",
            cx.manifest.kubernetes, f.arch
        ))
    })?;
    if f.marker_sha("helm") != Some(helm.sha256.as_str()) {
        let mut a = Action::on(
            api,
            &Charts,
            format!("install helm {} (for the charts)", helm.version),
            Install(helm.clone()),
        );
        a.upload_bytes = helm.size.unwrap_or(0);
        out.insert(0, a);
    }
    Ok(out)
}

/// The helm command for a chart (no secret in it: the values are in files).
pub fn helm_command(input: &ChartInput, archive: &str, values: &[String]) -> String {
    let c = &input.chart;
    let mut cmd = format!(
        "helm upgrade --install {} {} --namespace {} --create-namespace --atomic --wait --timeout 5m",
        shell_quote(&c.name),
        shell_quote(archive),
        shell_quote(&c.namespace)
    );
    for v in values {
        cmd.push_str(&format!(" -f {}", shell_quote(v)));
    }
    cmd.push_str(&format!(
        " --labels {CHART_LABEL}={},{VALUES_LABEL}={} --kubeconfig {} </dev/null",
        label_value(&input.archive.sha256),
        label_value(&input.values_sha256),
        paths::ADMIN_KUBECONFIG
    ));
    cmd
}

async fn run(ctx: &crate::engine::Ctx, host: &str, input: &ChartInput) -> Result<(), StepError> {
    let c = &input.chart;
    let s = ctx.session(host)?;
    let local = ctx.artifacts.get(&input.archive.sha256).ok_or_else(|| {
        StepError::failed(
            host,
            format!("chart {}: its archive was not downloaded", c.name),
        )
    })?;
    let dir = format!("{}/charts", paths::STAGING_DIR);
    let base = format!("{dir}/{}.{}", c.namespace, c.name);
    let archive = format!("{base}-{}.tgz", short(&input.archive.sha256));
    s.upload(Upload::File(local), &archive, 0o600, "root:root")
        .await?;
    let mut files = Vec::new();
    for (i, (_, bytes)) in input.values.iter().enumerate() {
        let p = format!("{base}.values-{i}.yaml");
        s.upload(Upload::Bytes(bytes), &p, 0o600, "root:root")
            .await?;
        ctx.stats.add_upload(host, bytes.len() as u64);
        files.push(p);
    }
    let script = format!(
        "set -e\nF={f}\n{check}\n{helm}",
        f = shell_quote(&archive),
        check = crate::artifacts::remote_check_script(&input.archive.sha256),
        helm = helm_command(input, &archive, &files),
    );
    let display = format!("helm upgrade --install {} ({})", c.name, c.namespace);
    let out = ctx
        .waiting(s.exec_with(
            &script,
            Exec {
                display: Some(&display),
                timeout: Some(Duration::from_secs(330).max(ctx.cluster.options.command_timeout)),
                ..Exec::default()
            },
        ))
        .await;
    let mut rm = vec![shell_quote(&archive)];
    rm.extend(files.iter().map(|f| shell_quote(f)));
    let cleanup = s.run(&format!("rm -f {}", rm.join(" "))).await;
    let out = out?;
    cleanup?;
    if !out.success() {
        let text = format!("{}\n{}", out.stderr(), out.stdout());
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[..lines.len().min(12)].join("\n    ");
        return Err(StepError::failed(
            host,
            crate::secrets::redact(&format!(
                "chart {} {} (namespace {}): helm upgrade --install failed (exit status {}):\n    {tail}",
                c.name, c.version, c.namespace, out.status
            )),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Chart, ChartSource};

    fn input(values: &str) -> ChartInput {
        let docs = vec![("inline values".to_string(), values.as_bytes().to_vec())];
        ChartInput {
            chart: Chart {
                name: "web".into(),
                namespace: "apps".into(),
                source: ChartSource::Local("/x/web-0.1.0.tgz".into()),
                version: "0.1.0".into(),
                sha256: "a".repeat(64),
                values: None,
                values_files: vec![],
            },
            archive: crate::release::Artifact {
                component: "chart web".into(),
                version: "0.1.0".into(),
                arch: "tgz".into(),
                url: "/x/web-0.1.0.tgz".into(),
                path: String::new(),
                sha256: "a".repeat(64),
                source: None,
                size: None,
            },
            values_sha256: crate::charts::values_digest(&docs),
            values: docs,
        }
    }

    fn release(i: &ChartInput, status: &str) -> Release {
        Release {
            name: "web".into(),
            namespace: "apps".into(),
            revision: 3,
            status: status.into(),
            chart_sha: Some(label_value(&i.archive.sha256).to_string()),
            values_sha: Some(label_value(&i.values_sha256).to_string()),
        }
    }

    #[test]
    fn install_upgrade_or_nothing() {
        let i = input("{\"a\":1}");
        assert_eq!(needed(&i, None).unwrap().0, "install");
        assert!(needed(&i, Some(&release(&i, "deployed"))).is_none());
        let changed = input("{\"a\":2}");
        let (verb, why) = needed(&changed, Some(&release(&i, "deployed"))).unwrap();
        assert_eq!((verb, why.as_str()), ("upgrade", " (values changed)"));
        let (verb, why) = needed(&i, Some(&release(&i, "failed"))).unwrap();
        assert_eq!((verb, why.as_str()), ("upgrade", " (revision 3 is failed)"));
        let mut other = release(&i, "deployed");
        other.chart_sha = None; // installed by someone else
        assert!(
            needed(&i, Some(&other))
                .unwrap()
                .1
                .contains("chart archive differs")
        );
    }

    #[test]
    fn the_command_holds_no_values() {
        let i = input("{\"password\":\"s3cret\"}");
        let cmd = helm_command(
            &i,
            "/var/cache/kubeforge/charts/apps.web-aaaa.tgz",
            &["/v/0.yaml".into()],
        );
        assert!(!cmd.contains("s3cret"), "{cmd}");
        assert!(cmd.starts_with("helm upgrade --install web /var/cache/kubeforge/charts/apps.web-aaaa.tgz --namespace apps --create-namespace --atomic --wait --timeout 5m -f /v/0.yaml --labels kubeforge.io/chart-sha256="), "{cmd}");
        assert!(
            cmd.ends_with("--kubeconfig /etc/kubernetes/admin.conf </dev/null"),
            "{cmd}"
        );
    }
}
