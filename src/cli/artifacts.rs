//! `artifacts fetch`.

use super::args::ArtifactsFetchArgs;
use super::remote::{bars, load, runtime};
use anyhow::Result;
use kubeforge::bundle::{self, FetchOptions};
use kubeforge::util::terminal_safe;
use std::process::ExitCode;

pub fn fetch(a: ArtifactsFetchArgs) -> Result<ExitCode> {
    let loaded = load(&a.file.file)?;
    let opts = FetchOptions {
        dir: a.output_dir.unwrap_or_else(|| bundle::default_dir(&loaded)),
        arches: a.arch,
        bars: bars(),
    };
    let rt = runtime()?;
    let summary = rt.block_on(bundle::fetch(&loaded, &opts))?;
    print!(
        "{}",
        terminal_safe(&kubeforge::output::bundle_summary(&summary))
    );
    Ok(ExitCode::SUCCESS)
}
