//! plan, apply, kubeconfig.

use super::args::{
    ApplyArgs, BackupArgs, CertsRenewArgs, KubeconfigArgs, NodeRemoveArgs, OutputFormat, PlanArgs,
    ResetArgs,
};
use super::remote::{bars, connect_options, load, load_observed, runtime};
use super::{EXIT_FAILED, print_json};
use anyhow::{Context, Result, bail};
use kubeforge::day2;
use kubeforge::preflight;
use kubeforge::util::terminal_safe;
use kubeforge::workflow::apply::{self, Options};
use kubeforge::workflow::command;
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

pub fn plan(a: PlanArgs) -> Result<ExitCode> {
    check_ignores(&a.ignore_preflight)?;
    let rt = runtime()?;
    let (loaded, view) = load_observed(&a.file.file, &rt)?;
    let cloud_plan = view.as_ref().map(|v| v.actions.clone()).unwrap_or_default();
    let opts = Options {
        connect: connect_options(&a.connect),
        ignore_preflight: a.ignore_preflight.clone(),
        bars: bars() && a.output == OutputFormat::Text,
        cloud_provider: view.and_then(|v| v.cloud_provider),
    };
    let to_create: Vec<&str> = cloud_plan
        .iter()
        .filter(|x| x.creates_server())
        .map(|x| x.name.as_str())
        .collect();
    // hosts that exist are planned; servers still to create get the whole bootstrap
    let prepared = if loaded.cluster.hosts.is_empty() {
        None
    } else {
        Some(rt.block_on(apply::prepare(&loaded, &opts))?)
    };
    let mut prepared = prepared;
    if a.prune
        && let Some(p) = prepared.as_mut()
        && let Some(state) = p.state.clone()
    {
        let names = kubeforge::engine::plan::unlisted_nodes(&loaded.cluster, Some(&state));
        p.plan.remove_nodes(&loaded.cluster, &state, &names, "");
        if let Some(releases) = rt.block_on(apply::chart_releases(p)) {
            kubeforge::steps::charts::prune(&mut p.plan, &loaded.cluster, &releases);
        }
    }
    if a.output == OutputFormat::Json {
        // the plan's own fields, plus `cloud` (the OpenStack changes) when the inventory has a cloud
        let mut v = match &prepared {
            Some(p) => serde_json::to_value(&p.plan)?,
            None => serde_json::json!({"actions": []}),
        };
        if loaded.inventory.spec.openstack.is_some() {
            v["cloud"] = serde_json::to_value(&cloud_plan)?;
        }
        print_json(&v)?;
    } else {
        if !cloud_plan.is_empty() {
            print!(
                "{}",
                terminal_safe(&kubeforge::output::cloud_plan(&cloud_plan))
            );
            if !to_create.is_empty() {
                println!(
                    "  new servers ({}) then get the whole bootstrap (os-prep, runtime, kube-binaries, api-endpoint, join)\n",
                    to_create.join(", ")
                );
            }
        }
        if let Some(p) = &prepared {
            eprint!(
                "{}",
                terminal_safe(&kubeforge::output::findings(&p.warnings))
            );
            print!(
                "{}",
                terminal_safe(&kubeforge::output::plan(&p.plan, &loaded.cluster))
            );
        }
    }
    if let Some(p) = prepared {
        rt.block_on(p.fleet.close());
    }
    Ok(ExitCode::SUCCESS)
}

/// For a destructive command: without `--yes`, the operator types the cluster's name on a
/// terminal (off a terminal, `--yes` is required). Ok(false): they typed something else.
fn confirm_by_name(yes: bool, name: &str, what: &str, prompt: &str) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{what}: confirm on a terminal, or pass --yes");
    }
    eprint!("{prompt}Type the cluster name to confirm: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != name {
        eprintln!("nothing changed");
        return Ok(false);
    }
    Ok(true)
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

/// The operator's side of `apply`: the confirmation rule with --yes and the terminal, the
/// prompt, and messages on stderr.
struct Terminal {
    yes: bool,
}

impl command::Ui for Terminal {
    fn decide(&self, changes: bool, destructive: bool) -> command::Go {
        command::confirmation(
            changes,
            destructive,
            self.yes,
            std::io::stdin().is_terminal(),
        )
    }
    fn ask(&self, question: &str) -> std::result::Result<bool, apply::ApplyError> {
        confirm(question).map_err(apply::ApplyError::Other)
    }
    fn show(&self, what: command::Shown) {
        eprint!("{}", terminal_safe(&kubeforge::output::shown(&what)));
    }
}

pub fn apply(a: ApplyArgs) -> Result<ExitCode> {
    check_ignores(&a.ignore_preflight)?;
    let loaded = load(&a.file.file)?;
    let opts = Options {
        connect: connect_options(&a.connect),
        ignore_preflight: a.ignore_preflight.clone(),
        bars: bars(),
        cloud_provider: None,
    };
    let req = command::Request {
        prune: a.prune,
        force: a.force,
        cloud_only: a.cloud_only,
    };
    let outcome = runtime()?.block_on(command::apply(
        &loaded,
        &opts,
        &req,
        &Terminal { yes: a.yes },
    ))?;
    match outcome {
        command::Outcome::Declined => {
            eprintln!("nothing changed");
            Ok(ExitCode::from(EXIT_FAILED))
        }
        command::Outcome::CloudOnly(p) => {
            let (servers, warnings) = kubeforge::output::cloud_servers(&p);
            print!("{}", terminal_safe(&servers));
            eprint!("{}", terminal_safe(&warnings));
            Ok(ExitCode::SUCCESS)
        }
        command::Outcome::Applied(report) => {
            if a.output == OutputFormat::Json {
                print_json(&report)?;
            } else {
                print!("{}", terminal_safe(&kubeforge::output::report(&report)));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn node_remove(a: NodeRemoveArgs) -> Result<ExitCode> {
    let rt = runtime()?;
    let (loaded, _) = load_observed(&a.file.file, &rt)?;
    if !a.yes && !std::io::stdin().is_terminal() {
        bail!(
            "node remove drains and resets {}: confirm on a terminal, or pass --yes",
            a.names.join(", ")
        );
    }
    if !a.yes
        && !confirm(&format!(
            "Remove {} from cluster {}? Its workloads are drained and its host is reset.",
            a.names.join(", "),
            loaded.cluster.name
        ))?
    {
        eprintln!("nothing changed");
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let removed = rt.block_on(async {
        let s2 = day2::open(&loaded, connect_options(&a.connect), bars()).await?;
        let r = day2::remove(
            &loaded,
            &s2,
            &a.names,
            &day2::RemoveOptions {
                force: a.force,
                force_unvouched: a.force,
                remove_binaries: a.remove_binaries,
                bars: bars(),
            },
        )
        .await;
        s2.fleet.close().await;
        r
    })?;
    eprint!("{}", terminal_safe(&kubeforge::output::removed(&removed)));
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
    let rt = runtime()?;
    let (loaded, _) = load_observed(&a.file.file, &rt)?;
    let name = &loaded.cluster.name;
    if !confirm_by_name(
        a.yes,
        name,
        &format!("reset destroys cluster {name}"),
        &format!(
            "This destroys cluster {name} on {} hosts: its workloads and etcd data are lost.\n",
            loaded.cluster.hosts.len()
        ),
    )? {
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let outcome = rt.block_on(kubeforge::workflow::reset::run(
        &loaded,
        connect_options(&a.connect),
        a.remove_binaries,
        a.force,
        bars(),
    ))?;
    for (h, why) in &outcome.skipped {
        eprintln!("{h}: skipped: {why}");
    }
    for (h, e) in &outcome.unreachable {
        eprintln!("warning: {h} was not reset (unreachable: {e})");
    }
    println!(
        "cluster {name} reset on {} of {} hosts",
        outcome.reset.len(),
        loaded.cluster.hosts.len()
    );
    Ok(if outcome.unreachable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

pub fn backup(a: BackupArgs) -> Result<ExitCode> {
    let rt = runtime()?;
    let (loaded, _) = load_observed(&a.file.file, &rt)?;
    let dir = a.output_dir.clone().unwrap_or_else(|| {
        loaded
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| ".".into())
            .join("backups")
    });
    let r = rt.block_on(kubeforge::backup::run(
        &loaded,
        &dir,
        connect_options(&a.connect),
        bars(),
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
    let rt = runtime()?;
    let (loaded, _) = load_observed(&a.file.file, &rt)?;
    let renewed = rt.block_on(kubeforge::workflow::certs::renew(
        &loaded,
        connect_options(&a.connect),
        std::sync::Arc::new(|r: &kubeforge::workflow::certs::Renewed, done: bool| {
            eprint!("{}", kubeforge::output::renewal(r, done))
        }),
    ))?;
    println!(
        "certificates renewed on {} control planes; fetch a fresh admin kubeconfig with `kubeforge kubeconfig`",
        renewed.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn kubeconfig(a: KubeconfigArgs) -> Result<ExitCode> {
    let rt = runtime()?;
    let (loaded, _) = load_observed(&a.file.file, &rt)?;
    let c = &loaded.cluster;
    let (v, server) = rt.block_on(apply::admin_kubeconfig(
        &loaded,
        connect_options(&a.connect),
    ))?;
    let default_path = || {
        std::env::var_os("KUBECONFIG")
            .and_then(|k| std::env::split_paths(&k).next())
            .or_else(|| dirs::home_dir().map(|h| h.join(".kube/config")))
            .context("no home directory for ~/.kube/config")
    };
    match &a.output {
        Some(p) if p.as_os_str() == "-" => print!("{}", kubeforge::kubeconfig::to_yaml(&v)),
        Some(p) => {
            kubeforge::kubeconfig::write_private(p, &kubeforge::kubeconfig::to_yaml(&v))?;
            eprintln!(
                "wrote the admin kubeconfig of {} (server {server}) to {} (mode 0600)",
                c.name,
                p.display()
            );
        }
        None if a.merge => {
            let path = default_path()?;
            kubeforge::kubeconfig::merge_into(&path, &v)?;
            eprintln!(
                "merged context {} (server {server}) into {}",
                c.name,
                path.display()
            );
        }
        None => {
            let path = default_path()?;
            if path.exists() {
                bail!(
                    "{} exists: pass --merge to add context {} to it, or -o PATH to write elsewhere (-o - prints it)",
                    path.display(),
                    c.name
                );
            }
            kubeforge::kubeconfig::write_private(&path, &kubeforge::kubeconfig::to_yaml(&v))?;
            eprintln!(
                "wrote context {} (server {server}) to {} (mode 0600)",
                c.name,
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn destroy(a: super::args::DestroyArgs) -> Result<ExitCode> {
    let loaded = load(&a.file.file)?;
    let name = loaded.cluster.name.clone();
    if loaded.inventory.spec.openstack.is_none() {
        bail!(
            "{} has no spec.openstack: kubeforge created no machines to destroy (use kubeforge reset)",
            a.file.file.display()
        );
    }
    let rt = runtime()?;
    let plan = rt.block_on(kubeforge::openstack::destroy_preview(&loaded))?;
    eprintln!("kubeforge would delete what it created for cluster {name}:");
    for x in &plan.deletes {
        eprintln!("  - {} {}", x.kind, x.name);
    }
    for k in &plan.kept {
        eprintln!("  (left in place: {k})");
    }
    if !confirm_by_name(
        a.yes,
        &name,
        &format!("destroy deletes cluster {name}'s servers"),
        "",
    )? {
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let deleted = rt.block_on(kubeforge::openstack::destroy(&loaded, plan))?;
    for d in &deleted {
        println!("deleted {} {}", d.kind, d.name);
    }
    eprintln!("cluster {name}: {} cloud resources deleted", deleted.len());
    Ok(ExitCode::SUCCESS)
}
