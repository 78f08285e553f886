//! Command handlers: each turns parsed arguments into library calls and output.
//! Data goes to stdout; diagnostics, logs and progress go to stderr.

pub mod args;
mod artifacts;
mod cluster;
mod remote;

use anyhow::{Context, Result, bail};
use args::{Cli, Command, OutputFormat};
use kubeforge::inventory::{self, InventoryError, diag};
use kubeforge::release::Catalog;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// Exit status for "the command ran, and the answer is no" (invalid inventory, failed hosts).
pub const EXIT_FAILED: u8 = 1;

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate(a) => validate(a),
        Command::Init(a) => init(a),
        Command::Status(a) => remote::status(a),
        Command::Exec(a) => remote::exec(a),
        Command::Plan(a) => cluster::plan(a),
        Command::Apply(a) => cluster::apply(a),
        Command::Kubeconfig(a) => cluster::kubeconfig(a),
        Command::Node(args::NodeCommand::Remove(a)) => cluster::node_remove(a),
        Command::Reset(a) => cluster::reset(a),
        Command::Backup(a) => cluster::backup(a),
        Command::Destroy(a) => cluster::destroy(a),
        Command::Certs(args::CertsCommand::Renew(a)) => cluster::certs_renew(a),
        Command::Artifacts(args::ArtifactsCommand::Fetch(a)) => artifacts::fetch(a),
        Command::Version(a) => version(a),
        Command::Completion(a) => completion(a),
    }
}

pub(crate) fn stderr_color() -> bool {
    diag::use_color(std::io::stderr().is_terminal())
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn validate(a: args::ValidateArgs) -> Result<ExitCode> {
    let path = &a.file.file;
    let result = inventory::load(path);
    if a.output == OutputFormat::Json {
        let (valid, summary, diagnostics) = match &result {
            Ok(l) => (true, Some(l.cluster.summary()), l.warnings.clone()),
            Err(InventoryError::Invalid { diagnostics, .. }) => (false, None, diagnostics.clone()),
            Err(e) => (
                false,
                None,
                vec![diag::Diagnostic::error("", e.to_string())],
            ),
        };
        let (errors, warnings): (Vec<_>, Vec<_>) =
            diagnostics.into_iter().partition(|d| d.is_error());
        print_json(&serde_json::json!({
            "file": path.display().to_string(),
            "valid": valid,
            "summary": summary,
            "errors": errors,
            "warnings": warnings,
        }))?;
        return Ok(if valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_FAILED)
        });
    }
    match result {
        Ok(loaded) => {
            eprint!("{}", loaded.render_warnings(stderr_color()));
            println!("{}: valid: {}", path.display(), loaded.cluster.summary());
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ InventoryError::Invalid { .. }) => {
            eprint!("{}", e.render(stderr_color()));
            eprintln!("{e}");
            Ok(ExitCode::from(EXIT_FAILED))
        }
        Err(e) => Err(e.into()),
    }
}

fn init(a: args::InitArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin()?;
    let version = match a.kubernetes_version {
        Some(v) => {
            let parsed = kubeforge::release::parse_version(&v).with_context(|| {
                format!("--kubernetes-version {v:?} is not a version like 1.33.5")
            })?;
            if catalog.get(&parsed).is_none() {
                bail!(
                    "Kubernetes {parsed} is not a supported release (supported: {})",
                    catalog
                        .versions()
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            parsed.to_string()
        }
        None => catalog
            .newest()
            .context("no release manifests are built in")?
            .version()
            .to_string(),
    };
    if !inventory::validate::is_dns_label(&a.name) {
        bail!(
            "--name {:?} is not a DNS label (lowercase letters, digits and '-')",
            a.name
        );
    }
    let text = kubeforge::templates::render(
        "inventory.yaml",
        &serde_json::json!({"name": a.name, "version": version, "file": format!("{}.yaml", a.name)}),
    )?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn version(a: args::VersionArgs) -> Result<ExitCode> {
    let catalog = Catalog::builtin()?;
    let releases: Vec<String> = catalog.versions().iter().map(|v| v.to_string()).collect();
    if a.output == OutputFormat::Json {
        print_json(&serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "gitRevision": env!("KUBEFORGE_GIT_REV"),
            "kubernetesReleases": releases,
        }))?;
    } else {
        println!("kubeforge {}", kubeforge::version_string());
        println!("Kubernetes releases: {}", releases.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn completion(a: args::CompletionArgs) -> Result<ExitCode> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "kubeforge", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
