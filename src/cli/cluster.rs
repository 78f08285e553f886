//! plan, apply, kubeconfig.

use super::args::{
    ApplyArgs, BackupArgs, CertsRenewArgs, KubeconfigArgs, NodeRemoveArgs, OutputFormat, PlanArgs,
    ResetArgs,
};
use super::remote::{bars, connect_options, load, runtime};
use super::{EXIT_FAILED, print_json};
use anyhow::{Context, Result, bail};
use kubeforge::apply::{self, Options};
use kubeforge::day2;
use kubeforge::preflight;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

fn check_ignores(names: &[String]) -> Result<()> {
    let unknown = preflight::unknown_names(names);
    if !unknown.is_empty() {
        bail!(
            "--ignore-preflight: unknown check {} (see kubeforge status --list-checks)",
            unknown.join(", ")
        );
    }
    Ok(())
}

fn print_warnings(p: &apply::Prepared) {
    for f in &p.warnings {
        eprintln!("warning: {}: {}: {}", f.host, f.check, f.message);
    }
}

pub fn plan(a: PlanArgs) -> Result<ExitCode> {
    check_ignores(&a.ignore_preflight)?;
    let loaded = load(&a.file.file)?;
    let opts = Options {
        connect: connect_options(&a.connect),
        ignore_preflight: a.ignore_preflight.clone(),
        bars: bars() && a.output == OutputFormat::Text,
    };
    let rt = runtime()?;
    let prepared = rt.block_on(apply::prepare(&loaded, &opts))?;
    print_warnings(&prepared);
    if a.output == OutputFormat::Json {
        print_json(&prepared.plan)?;
    } else {
        print!("{}", prepared.plan.render(&loaded.cluster));
    }
    rt.block_on(prepared.fleet.close());
    Ok(ExitCode::SUCCESS)
}

fn confirm(question: &str) -> Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

pub fn apply(a: ApplyArgs) -> Result<ExitCode> {
    check_ignores(&a.ignore_preflight)?;
    let loaded = load(&a.file.file)?;
    let opts = Options {
        connect: connect_options(&a.connect),
        ignore_preflight: a.ignore_preflight.clone(),
        bars: bars(),
    };
    let rt = runtime()?;
    let prepared = rt.block_on(apply::prepare(&loaded, &opts))?;
    print_warnings(&prepared);
    // the plan goes to stderr: stdout carries the report
    eprint!("{}", prepared.plan.render(&loaded.cluster));
    if !prepared.plan.is_empty()
        && !a.yes
        && std::io::stdin().is_terminal()
        && !confirm("Apply these changes?")?
    {
        rt.block_on(prepared.fleet.close());
        eprintln!("nothing changed");
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let prune: Vec<String> = prepared
        .state
        .as_ref()
        .map(|s| {
            s.nodes
                .iter()
                .filter(|n| loaded.cluster.host(&n.name).is_none())
                .map(|n| n.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let report = rt.block_on(apply::execute(&loaded, prepared, &opts))?;
    if a.prune && !prune.is_empty() {
        eprintln!(
            "pruning nodes the inventory no longer lists: {}",
            prune.join(", ")
        );
        let removed = rt.block_on(async {
            let s2 = day2::open(&loaded, connect_options(&a.connect), bars()).await?;
            let r = day2::remove(
                &loaded,
                &s2,
                &prune,
                &day2::RemoveOptions {
                    force: false,
                    remove_binaries: false,
                    bars: bars(),
                },
            )
            .await;
            s2.fleet.close().await;
            r
        })?;
        print_removed(&removed);
    }
    if a.output == OutputFormat::Json {
        print_json(&report)?;
    } else {
        print!("{}", report.render());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_removed(removed: &[day2::Removed]) {
    for r in removed {
        eprintln!(
            "removed {}: {}drained, {}host {}",
            r.name,
            if r.drained { "" } else { "not " },
            if r.etcd_member_removed {
                "etcd member removed, "
            } else {
                ""
            },
            if r.host_reset { "reset" } else { "NOT reset" }
        );
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
    }
}

pub fn node_remove(a: NodeRemoveArgs) -> Result<ExitCode> {
    let loaded = load(&a.file.file)?;
    if !a.yes
        && std::io::stdin().is_terminal()
        && !confirm(&format!(
            "Remove {} from cluster {}? Its workloads are drained and its host is reset.",
            a.names.join(", "),
            loaded.cluster.name
        ))?
    {
        eprintln!("nothing changed");
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let rt = runtime()?;
    let removed = rt.block_on(async {
        let s2 = day2::open(&loaded, connect_options(&a.connect), bars()).await?;
        let r = day2::remove(
            &loaded,
            &s2,
            &a.names,
            &day2::RemoveOptions {
                force: a.force,
                remove_binaries: a.remove_binaries,
                bars: bars(),
            },
        )
        .await;
        s2.fleet.close().await;
        r
    })?;
    print_removed(&removed);
    let listed: Vec<&str> = a
        .names
        .iter()
        .filter(|n| loaded.cluster.host(n).is_some())
        .map(String::as_str)
        .collect();
    if !listed.is_empty() {
        eprintln!(
            "next: delete {} from {} (apply would add {} back)",
            listed.join(", "),
            a.file.file.display(),
            if listed.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn reset(a: ResetArgs) -> Result<ExitCode> {
    let loaded = load(&a.file.file)?;
    let name = &loaded.cluster.name;
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!("reset destroys cluster {name}: confirm on a terminal, or pass --yes");
        }
        eprint!(
            "This destroys cluster {name} on {} hosts: its workloads and etcd data are lost.\nType the cluster name to confirm: ",
            loaded.cluster.hosts.len()
        );
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != name {
            eprintln!("nothing changed");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    }
    let skipped = runtime()?.block_on(day2::reset_all(
        &loaded,
        connect_options(&a.connect),
        a.remove_binaries,
        bars(),
    ))?;
    for (h, e) in &skipped {
        eprintln!("warning: {h} was not reset (unreachable: {e})");
    }
    println!(
        "cluster {name} reset on {} of {} hosts",
        loaded.cluster.hosts.len() - skipped.len(),
        loaded.cluster.hosts.len()
    );
    Ok(if skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

pub fn backup(a: BackupArgs) -> Result<ExitCode> {
    let loaded = load(&a.file.file)?;
    let dir = a.output_dir.clone().unwrap_or_else(|| {
        loaded
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| ".".into())
            .join("backups")
    });
    let r = runtime()?.block_on(kubeforge::backup::run(
        &loaded,
        &dir,
        connect_options(&a.connect),
    ))?;
    eprintln!(
        "backup of cluster {} from {} (etcd: {}):",
        loaded.cluster.name, r.host, r.etcd_method
    );
    for (name, sha, bytes) in &r.files {
        eprintln!("  {name:22} {bytes:>12} bytes  sha256 {sha}");
    }
    println!("{}", r.dir.display());
    Ok(ExitCode::SUCCESS)
}

pub fn certs_renew(a: CertsRenewArgs) -> Result<ExitCode> {
    let loaded = load(&a.file.file)?;
    let c = &loaded.cluster;
    runtime()?.block_on(async {
        let (connector, resolver) =
            kubeforge::status::connect_setup(&loaded, connect_options(&a.connect))?;
        let names: Vec<String> = c.hosts.iter().map(|h| h.name.clone()).collect();
        let progress =
            std::sync::Arc::new(kubeforge::progress::Progress::new("connect", &names, false));
        let hosts: Vec<&kubeforge::model::Host> = c.hosts.iter().collect();
        let fleet =
            kubeforge::fleet::Fleet::connect(c, &hosts, connector, &resolver, &progress).await;
        if let Some((h, e)) = fleet.unreachable.iter().find(|(h, _)| {
            c.host(h)
                .is_some_and(|x| x.role == kubeforge::model::Role::ControlPlane)
        }) {
            bail!("control plane {h} is unreachable ({e}); renew when every control plane answers");
        }
        for h in c.control_planes() {
            let s = fleet.session(&h.name).context("connected")?;
            let before = kubeforge::certs::soonest_days(&kubeforge::certs::check(s).await?);
            eprintln!(
                "{}: renewing certificates (soonest expiry in {} days)",
                h.name,
                before.map(|d| d.to_string()).unwrap_or("?".into())
            );
            kubeforge::steps::api_endpoint::lb_rotation(c, &fleet.sessions, &h.name, false).await;
            let r = kubeforge::certs::renew(s).await;
            kubeforge::steps::api_endpoint::lb_rotation(c, &fleet.sessions, &h.name, true).await;
            r?;
            let after = kubeforge::certs::soonest_days(&kubeforge::certs::check(s).await?);
            eprintln!(
                "{}: renewed; soonest expiry in {} days",
                h.name,
                after.map(|d| d.to_string()).unwrap_or("?".into())
            );
        }
        fleet.close().await;
        anyhow::Ok(())
    })?;
    println!(
        "certificates renewed on {} control planes; fetch a fresh admin kubeconfig with `kubeforge kubeconfig`",
        c.control_planes().count()
    );
    Ok(ExitCode::SUCCESS)
}
pub fn kubeconfig(a: KubeconfigArgs) -> Result<ExitCode> {
    let loaded = load(&a.file.file)?;
    let c = &loaded.cluster;
    let rt = runtime()?;
    let (v, server) = rt.block_on(async {
        let (connector, resolver) =
            kubeforge::status::connect_setup(&loaded, connect_options(&a.connect))?;
        // the first control plane that answers
        let mut last = None;
        for h in c.control_planes() {
            match connector.connect(&resolver.target(&h.name, &h.ssh)).await {
                Ok(s) => {
                    let r = apply::fetch_kubeconfig(&loaded, &s).await;
                    s.close().await;
                    match r {
                        Ok(v) => return Ok(v),
                        Err(e) => last = Some(anyhow::Error::from(e)),
                    }
                }
                Err(e) => last = Some(e.into()),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the inventory lists no control plane")))
    })?;
    if a.merge {
        let path = std::env::var_os("KUBECONFIG")
            .and_then(|k| std::env::split_paths(&k).next())
            .or_else(|| dirs::home_dir().map(|h| h.join(".kube/config")))
            .context("no home directory for ~/.kube/config")?;
        kubeforge::kubeconfig::merge_into(&path, &v)?;
        eprintln!(
            "merged context {} (server {server}) into {}",
            c.name,
            path.display()
        );
    } else {
        print!("{}", kubeforge::kubeconfig::to_yaml(&v));
    }
    Ok(ExitCode::SUCCESS)
}
