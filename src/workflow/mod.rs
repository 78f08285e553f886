//! The workflows: each is an ordered list of steps (`steps/`), planned and run by the engine
//! (`engine/`), and the library call a command makes. Adding a step to a workflow is one line
//! here (and the step's own file).

pub mod apply;
pub mod certs;
pub mod command;
pub mod reset;

use crate::engine::Workflow;
use crate::steps;

/// `apply`: prepare every host, init, upgrade, join, the pod network, the cloud provider,
/// Ready. (Removals are added to its plan by `apply --prune` and a lowered OpenStack count.)
pub static APPLY: Workflow<'static> = &[
    &steps::mirror_images::MirrorImages,
    &steps::os_prep::OsPrep,
    &steps::runtime::Runtime,
    &steps::images::PushImages,
    &steps::kube_binaries::KubeBinaries,
    &steps::api_endpoint::ApiEndpoint,
    &steps::init::Init,
    &steps::upgrade_control_plane::UpgradeControlPlane,
    &steps::upgrade_worker::UpgradeWorker,
    &steps::join_control_plane::JoinControlPlane,
    &steps::join_worker::JoinWorker,
    &steps::cni::Cni,
    &steps::charts::Charts,
    &steps::cloud_provider::CloudProviderStep,
    &steps::wait_ready::WaitReady,
];
