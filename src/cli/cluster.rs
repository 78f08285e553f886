//! plan, apply, kubeconfig.

use super::args::{ApplyArgs, KubeconfigArgs, OutputFormat, PlanArgs};
use super::remote::{bars, connect_options, load, runtime};
use super::{EXIT_FAILED, print_json};
use anyhow::{Context, Result, bail};
use kubeforge::apply::{self, Options};
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
    let report = rt.block_on(apply::execute(&loaded, prepared, &opts))?;
    if a.output == OutputFormat::Json {
        print_json(&report)?;
    } else {
        print!("{}", report.render());
    }
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
