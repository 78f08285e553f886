//! kubeforge: turns an inventory file into a production Kubernetes cluster on machines the user
//! owns, and keeps it there.
//!
//! The library holds all behaviour; the `kubeforge` binary parses the command line and maps
//! errors to exit codes.

pub mod artifacts;
pub mod backup;
pub mod bundle;
pub mod certs;
pub mod charts;
pub mod cluster_state;
pub mod day2;
pub mod desired;
pub mod engine;
pub mod error;
pub mod etcd;
pub mod facts;
pub mod fleet;
pub mod images;
pub mod inventory;
pub mod kubeconfig;
pub mod model;
pub mod openstack;
pub mod output;
pub mod ownership;
pub mod paths;
pub mod pki;
pub mod preflight;
pub mod progress;
pub mod release;
pub mod secrets;
pub mod ssh;
pub mod status;
pub mod steps;
pub mod templates;
pub mod util;
pub mod wait;
pub mod workflow;

/// kubeforge's own version and the git revision it was built from.
pub fn version_string() -> String {
    format!(
        "{} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("KUBEFORGE_GIT_REV")
    )
}
