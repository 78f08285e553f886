//! The kubeforge binary: parse the command line, run, map errors to exit codes.

mod cli;

use clap::Parser;
use std::process::ExitCode;

pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KUBEFORGE_GIT_REV"),
    ")"
);

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    init_logging(args.verbose);
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // errors carry remote output (stderr of a command, host facts): no secret and no
            // terminal control reaches the screen
            let shown = |m: String| {
                kubeforge::util::terminal_safe(&kubeforge::secrets::redact(&m)).into_owned()
            };
            eprintln!("error: {}", shown(e.to_string()));
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {}", shown(cause.to_string()));
            }
            ExitCode::from(cli::EXIT_FAILED)
        }
    }
}

/// Logs go to stderr; RUST_LOG overrides the level chosen with -v.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "kubeforge=info",
        1 => "kubeforge=debug",
        _ => "kubeforge=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let color =
        kubeforge::inventory::diag::use_color(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(kubeforge::progress::LogWriter)
        .with_ansi(color)
        .with_target(false)
        .try_init();
}
