//! Commands that connect to hosts: status, exec.

use super::args::{ConnectArgs, ExecArgs, OutputFormat, StatusArgs};
use super::{EXIT_FAILED, print_json, stderr_color};
use anyhow::{Context, Result, bail};
use kubeforge::inventory::{self, Loaded};
use kubeforge::preflight;
use kubeforge::ssh::ConnectOptions;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Loads and validates the inventory; prints its diagnostics on failure.
pub(crate) fn load(path: &std::path::Path) -> Result<Loaded> {
    match inventory::load(path) {
        Ok(l) => {
            eprint!("{}", l.render_warnings(stderr_color()));
            Ok(l)
        }
        Err(e @ inventory::InventoryError::Invalid { .. }) => {
            eprint!("{}", e.render(stderr_color()));
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Loads the inventory; with spec.openstack, also the servers that exist (read-only), as hosts.
pub(crate) fn load_observed(
    path: &std::path::Path,
    rt: &tokio::runtime::Runtime,
) -> Result<(Loaded, Option<kubeforge::openstack::CloudView>)> {
    let loaded = load(path)?;
    if loaded.inventory.spec.openstack.is_none() {
        return Ok((loaded, None));
    }
    let view = rt.block_on(kubeforge::openstack::observe(&loaded))?;
    Ok((
        kubeforge::openstack::resolved(&loaded, &view.resolved),
        Some(view),
    ))
}

pub(crate) fn connect_options(a: &ConnectArgs) -> ConnectOptions {
    ConnectOptions {
        accept_new_host_keys: a.accept_new_host_keys,
        connect_timeout: Duration::from_secs(a.connect_timeout.unwrap_or(10).max(1)),
        connect_timeout_given: a.connect_timeout.is_some(),
        interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        ..ConnectOptions::default()
    }
}

pub(crate) fn bars() -> bool {
    std::io::stderr().is_terminal()
}

pub fn status(a: StatusArgs) -> Result<ExitCode> {
    if a.list_checks {
        for (name, what) in preflight::CHECKS {
            println!("{name:22} {what}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let unknown = preflight::unknown_names(&a.ignore_preflight);
    if !unknown.is_empty() {
        bail!(
            "--ignore-preflight: unknown check {} (see --list-checks)",
            unknown.join(", ")
        );
    }
    let Some(file) = &a.file else {
        bail!("--file is required");
    };
    let rt = runtime()?;
    let (loaded, _) = load_observed(file, &rt)?;
    let report = rt.block_on(kubeforge::status::gather(
        &loaded,
        connect_options(&a.connect),
        &a.ignore_preflight,
        bars() && a.output == OutputFormat::Text,
    ))?;
    if a.output == OutputFormat::Json {
        print_json(&report)?;
    } else {
        print!("{}", kubeforge::output::status(&report));
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

#[derive(serde::Serialize)]
struct ExecResult {
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u32>,
    stdout: String,
    stderr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    elapsed: f64,
}

pub fn exec(a: ExecArgs) -> Result<ExitCode> {
    let rt = runtime()?;
    let (loaded, _) = load_observed(&a.file.file, &rt)?;
    let cluster = &loaded.cluster;
    for h in &a.hosts {
        if cluster.host(h).is_none() {
            bail!("--hosts: {h} is not in {}", a.file.file.display());
        }
    }
    let hosts: Vec<&kubeforge::model::Host> = cluster
        .hosts
        .iter()
        .filter(|h| a.hosts.is_empty() || a.hosts.contains(&h.name))
        .filter(|h| a.role.as_deref().is_none_or(|r| h.role.as_str() == r))
        .collect();
    if hosts.is_empty() {
        bail!("no host matches --hosts/--role");
    }
    let command = a.command.join(" ");
    let timeout = a.timeout.map(Duration::from_secs);
    let results = rt.block_on(async {
        let (connector, resolver) =
            kubeforge::status::connect_setup(&loaded, connect_options(&a.connect))?;
        let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        let progress = Arc::new(kubeforge::progress::Progress::new(
            "exec",
            &names,
            bars() && a.output == OutputFormat::Text,
        ));
        let start = std::time::Instant::now();
        let fleet =
            kubeforge::fleet::Fleet::connect(cluster, &hosts, connector, &resolver, &progress)
                .await;
        let sessions: Vec<(String, Arc<kubeforge::ssh::Session>)> = fleet
            .sessions
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let ran = kubeforge::fleet::fan_out(sessions, cluster.options.concurrency, |(name, s)| {
            let command = command.clone();
            let progress = progress.clone();
            async move {
                progress.set(&name, "running");
                let r = s
                    .exec_with(
                        &command,
                        kubeforge::ssh::session::Exec {
                            timeout,
                            ..Default::default()
                        },
                    )
                    .await;
                match &r {
                    Ok(o) => progress.finish(&name, o.success(), &format!("exit {}", o.status)),
                    Err(_) => progress.finish(&name, false, "error"),
                }
                (r, start.elapsed())
            }
        })
        .await;
        let mut by_host: std::collections::BTreeMap<String, ExecResult> =
            std::collections::BTreeMap::new();
        for ((name, _), (r, at), _) in ran {
            let res = match r {
                Ok(o) => ExecResult {
                    host: name.clone(),
                    status: Some(o.status),
                    stdout: o.stdout(),
                    stderr: o.stderr(),
                    error: None,
                    elapsed: at.as_secs_f64(),
                },
                Err(e) => ExecResult {
                    host: name.clone(),
                    status: None,
                    stdout: String::new(),
                    stderr: String::new(),
                    error: Some(e.to_string()),
                    elapsed: at.as_secs_f64(),
                },
            };
            by_host.insert(name, res);
        }
        for (name, e) in &fleet.unreachable {
            by_host.insert(
                name.clone(),
                ExecResult {
                    host: name.clone(),
                    status: None,
                    stdout: String::new(),
                    stderr: String::new(),
                    error: Some(e.to_string()),
                    elapsed: start.elapsed().as_secs_f64(),
                },
            );
        }
        fleet.close().await;
        anyhow::Ok(
            names
                .into_iter()
                .filter_map(|n| by_host.remove(&n))
                .collect::<Vec<_>>(),
        )
    })?;
    let failed: Vec<&ExecResult> = results.iter().filter(|r| r.status != Some(0)).collect();
    if a.output == OutputFormat::Json {
        print_json(&results)?;
    } else {
        use std::io::IsTerminal;
        let (stdout_tty, stderr_tty) = (
            std::io::stdout().is_terminal(),
            std::io::stderr().is_terminal(),
        );
        let for_stream = |text: &str, tty: bool| -> String {
            if tty {
                kubeforge::util::terminal_safe(text).into_owned()
            } else {
                text.to_string()
            }
        };
        for r in &results {
            let how = match (&r.status, &r.error) {
                (Some(s), _) => format!("exit {s}"),
                (None, Some(_)) => "FAILED".to_string(),
                _ => "?".to_string(),
            };
            println!("--- {} ({how}, {:.1}s)", r.host, r.elapsed);
            // stdout is data: raw into a pipe or file, escaped on a terminal; stderr is shown to
            // the operator, escaped on a terminal
            print!("{}", for_stream(&r.stdout, stdout_tty));
            if !r.stderr.is_empty() {
                eprint!(
                    "{}",
                    r.stderr
                        .lines()
                        .map(|l| format!("{}: {}\n", r.host, for_stream(l, stderr_tty)))
                        .collect::<String>()
                );
            }
        }
        if !failed.is_empty() {
            eprintln!("\n{} of {} hosts failed:", failed.len(), results.len());
            for r in &failed {
                match &r.error {
                    Some(e) => eprintln!("  - {}", kubeforge::util::terminal_safe(e)),
                    None => eprintln!(
                        "  - {}: exit status {}",
                        r.host,
                        r.status.unwrap_or_default()
                    ),
                }
            }
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
