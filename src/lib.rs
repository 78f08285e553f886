//! kubeforge: turns an inventory file into a production Kubernetes cluster on machines the user
//! owns, and keeps it there.
//!
//! The library holds all behaviour; the `kubeforge` binary parses the command line and maps
//! errors to exit codes.

pub mod artifacts;
pub mod facts;
pub mod fleet;
pub mod inventory;
pub mod model;
pub mod preflight;
pub mod progress;
pub mod release;
pub mod ssh;
pub mod status;
pub mod templates;
pub mod util;

/// kubeforge's own version and the git revision it was built from.
pub fn version_string() -> String {
    format!(
        "{} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("KUBEFORGE_GIT_REV")
    )
}
