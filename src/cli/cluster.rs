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
        // the message quotes what the host reported: never raw on the terminal
        eprintln!(
            "warning: {}: {}: {}",
            f.host,
            f.check,
            terminal_safe(&f.message)
        );
    }
}

fn render_cloud_plan(actions: &[kubeforge::openstack::provider::CloudAction]) -> String {
    let mut out = String::from("OpenStack resources:\n");
    for a in actions {
        let sign = a.verb.sign();
        out.push_str(&format!(
            "  {sign} {:<14} {} ({})\n",
            a.kind, a.name, a.verb
        ));
    }
    out
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
            print!("{}", terminal_safe(&render_cloud_plan(&cloud_plan)));
            if !to_create.is_empty() {
                println!(
                    "  new servers ({}) then get the whole bootstrap (os-prep, runtime, kube-binaries, api-endpoint, join)\n",
                    to_create.join(", ")
                );
            }
        }
        if let Some(p) = &prepared {
            print_warnings(p);
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

pub fn apply(a: ApplyArgs) -> Result<ExitCode> {
    check_ignores(&a.ignore_preflight)?;
    let mut loaded = load(&a.file.file)?;
    let mut opts = Options {
        connect: connect_options(&a.connect),
        ignore_preflight: a.ignore_preflight.clone(),
        bars: bars(),
        cloud_provider: None,
    };
    let rt = runtime()?;
    let mut surplus = Vec::new();
    if loaded.inventory.spec.openstack.is_some() {
        // the machines first: show what changes in the cloud, confirm, create or adopt
        let cloud_plan = rt.block_on(kubeforge::openstack::observe(&loaded))?.actions;
        eprint!("{}", terminal_safe(&render_cloud_plan(&cloud_plan)));
        let changes = cloud_plan.iter().any(|x| x.is_change());
        let destructive: Vec<String> = cloud_plan
            .iter()
            .filter(|x| x.is_destructive())
            .map(|x| format!("{} {} {}", x.verb, x.kind, x.name))
            .collect();
        match confirmation(
            changes,
            !destructive.is_empty(),
            a.yes,
            std::io::stdin().is_terminal(),
        ) {
            Go::Refuse => bail!(
                "apply would {}: confirm on a terminal, or pass --yes",
                destructive.join(", ")
            ),
            Go::Ask
                if !confirm("Make these changes in the cloud, then bootstrap the servers?")? =>
            {
                eprintln!("nothing changed");
                return Ok(ExitCode::from(EXIT_FAILED));
            }
            _ => {}
        }
        let (p, cloud_provider, resolved) =
            rt.block_on(kubeforge::openstack::provision(&loaded))?;
        loaded = kubeforge::openstack::resolved(&loaded, &resolved);
        opts.cloud_provider = cloud_provider;
        for x in p.actions.iter().filter(|x| x.verb.creates()) {
            eprintln!(
                "{} {} {}",
                if x.verb == kubeforge::openstack::action::Verb::Create {
                    "created"
                } else {
                    "replaced"
                },
                x.kind,
                x.name
            );
        }
        if a.cloud_only {
            for s in &p.servers {
                println!(
                    "{}\t{}\t{}\t{}",
                    s.name,
                    s.role,
                    s.fixed_ip.as_deref().unwrap_or("-"),
                    s.floating_ip.as_deref().unwrap_or("-")
                );
            }
            if let Some(ep) = &p.endpoint {
                println!("endpoint\t{ep}:6443");
            }
            for s in &p.surplus {
                eprintln!(
                    "warning: {} is beyond the count; a full apply removes its node, then the server",
                    s.name
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        surplus = p.surplus.clone();
        rt.block_on(apply::wait_reachable(&loaded, &opts.connect))?;
    }
    let mut prepared = rt.block_on(apply::prepare(&loaded, &opts))?;
    print_warnings(&prepared);
    // destructive: the nodes to prune, and those beyond a lowered count
    let prune: Vec<String> = if a.prune {
        kubeforge::engine::plan::unlisted_nodes(&loaded.cluster, prepared.state.as_ref())
    } else {
        Vec::new()
    };
    let surplus_names: Vec<String> = surplus.iter().map(|s| s.name.clone()).collect();
    if let Some(state) = prepared.state.clone() {
        prepared
            .plan
            .remove_nodes(&loaded.cluster, &state, &prune, "");
        prepared.plan.remove_nodes(
            &loaded.cluster,
            &state,
            &surplus_names,
            "; then its server is deleted",
        );
    }
    // the plan goes to stderr: stdout carries the report
    eprint!(
        "{}",
        terminal_safe(&kubeforge::output::plan(&prepared.plan, &loaded.cluster))
    );
    let go = confirmation(
        !prepared.plan.is_empty(),
        prepared.plan.is_destructive(),
        a.yes,
        std::io::stdin().is_terminal(),
    );
    if go == Go::Refuse {
        rt.block_on(prepared.fleet.close());
        let of = |step: &str| -> Vec<&str> {
            prepared
                .plan
                .destructive
                .iter()
                .filter(|d| d.step == step)
                .map(|d| d.host.as_str())
                .collect()
        };
        let (removed, reset) = (of("remove-node"), of("reset"));
        let mut what = Vec::new();
        if !removed.is_empty() {
            what.push(format!(
                "remove {} (drain, delete, reset {})",
                removed.join(", "),
                if removed.len() == 1 {
                    "its host"
                } else {
                    "their hosts"
                }
            ));
        }
        if !reset.is_empty() {
            what.push(format!(
                "reset {} (kubeadm's files of an interrupted run)",
                reset.join(", ")
            ));
        }
        bail!(
            "apply would {}: confirm on a terminal, or pass --yes",
            what.join(" and ")
        );
    }
    // the hosts to reset are this cluster's: refused before anything changes
    let removals: Vec<String> = prune.iter().chain(&surplus_names).cloned().collect();
    if !removals.is_empty()
        && let Err(e) = rt.block_on(check_removals(&loaded, &a.connect, &removals, a.force))
    {
        rt.block_on(prepared.fleet.close());
        return Err(e);
    }
    if go == Go::Ask && !confirm("Apply these changes?")? {
        rt.block_on(prepared.fleet.close());
        eprintln!("nothing changed");
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let report = rt.block_on(apply::execute(&loaded, prepared, &opts))?;
    if !prune.is_empty() {
        eprintln!(
            "pruning nodes the inventory no longer lists: {}",
            prune.join(", ")
        );
        print_removed(&rt.block_on(remove_nodes(&loaded, &a.connect, &prune, a.force))?);
    }
    if !surplus.is_empty() {
        // lowered counts: the highest-numbered servers leave the cluster safely, then go
        eprintln!("scaling down: removing {}", surplus_names.join(", "));
        print_removed(&rt.block_on(remove_nodes(&loaded, &a.connect, &surplus_names, a.force))?);
        let cloud = rt.block_on(kubeforge::openstack::connect(&loaded))?;
        let deleted = rt.block_on(kubeforge::openstack::provider::delete_servers(
            &cloud,
            &loaded.cluster.name,
            &surplus,
        ))?;
        for x in deleted {
            eprintln!("deleted {} {}", x.kind, x.name);
        }
    }
    if a.output == OutputFormat::Json {
        print_json(&report)?;
    } else {
        print!("{}", terminal_safe(&kubeforge::output::report(&report)));
    }
    Ok(ExitCode::SUCCESS)
}

/// Safely removes those of `names` that are nodes of the cluster (drain, delete, etcd member,
/// reset), as `kubeforge node remove` does.
async fn remove_nodes(
    loaded: &kubeforge::inventory::Loaded,
    connect: &crate::cli::args::ConnectArgs,
    names: &[String],
    force_unvouched: bool,
) -> Result<Vec<day2::Removed>> {
    let s = day2::open(loaded, connect_options(connect), bars()).await?;
    let nodes = nodes_of_the_cluster(&s, names);
    let options = day2::RemoveOptions {
        force: false,
        force_unvouched,
        remove_binaries: false,
        bars: bars(),
    };
    let r = day2::remove(loaded, &s, &nodes, &options).await;
    s.fleet.close().await;
    Ok(r?)
}

/// Of `names`, the nodes the cluster has.
fn nodes_of_the_cluster(s: &day2::Session2, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| s.state.node(n).is_some())
        .cloned()
        .collect()
}

/// Before anything changes: the hosts of the nodes to remove are this cluster's.
async fn check_removals(
    loaded: &kubeforge::inventory::Loaded,
    connect: &crate::cli::args::ConnectArgs,
    names: &[String],
    force_unvouched: bool,
) -> Result<()> {
    let s = day2::open(loaded, connect_options(connect), bars()).await?;
    let nodes = nodes_of_the_cluster(&s, names);
    let r = day2::reach_and_check(loaded, &s, &nodes, force_unvouched).await;
    if let Ok(sessions) = &r {
        for (name, session) in sessions {
            if s.fleet.session(name).is_none() {
                session.close().await;
            }
        }
    }
    s.fleet.close().await;
    r?;
    Ok(())
}

/// How `apply` goes on after showing its plan.
#[derive(Debug, PartialEq, Eq)]
enum Go {
    /// Without asking: nothing destructive, or --yes.
    Ahead,
    /// Ask on the terminal first.
    Ask,
    /// Refuse before anything changes: destructive, off a terminal, without --yes.
    Refuse,
}

/// The rule of every destructive command: a destructive action is confirmed on a terminal or
/// by --yes; off a terminal without --yes it is refused. Other changes are asked about on a
/// terminal, and made without asking off one.
fn confirmation(changes: bool, destructive: bool, yes: bool, terminal: bool) -> Go {
    match (yes, terminal) {
        (true, _) => Go::Ahead,
        (false, false) if destructive => Go::Refuse,
        (false, false) => Go::Ahead,
        (false, true) if changes || destructive => Go::Ask,
        (false, true) => Go::Ahead,
    }
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
    let days = |d: Option<u64>| d.map(|d| d.to_string()).unwrap_or("?".into());
    let renewed = rt.block_on(kubeforge::workflow::certs::renew(
        &loaded,
        connect_options(&a.connect),
        &|r, done| {
            if done {
                eprintln!(
                    "{}: renewed; soonest expiry in {} days",
                    r.host,
                    days(r.after_days)
                );
            } else {
                eprintln!(
                    "{}: renewing certificates (soonest expiry in {} days)",
                    r.host,
                    days(r.before_days)
                );
            }
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destructive_actions_are_confirmed() {
        // (changes, destructive, yes, terminal)
        assert_eq!(confirmation(true, true, false, false), Go::Refuse);
        assert_eq!(confirmation(false, true, false, false), Go::Refuse);
        assert_eq!(confirmation(false, true, false, true), Go::Ask);
        assert_eq!(confirmation(true, true, false, true), Go::Ask);
        assert_eq!(confirmation(true, true, true, false), Go::Ahead);
        assert_eq!(confirmation(false, true, true, true), Go::Ahead);
        // not destructive: asked on a terminal, made off one, as before
        assert_eq!(confirmation(true, false, false, true), Go::Ask);
        assert_eq!(confirmation(true, false, false, false), Go::Ahead);
        assert_eq!(confirmation(false, false, false, true), Go::Ahead);
        assert_eq!(confirmation(false, false, false, false), Go::Ahead);
    }
}
