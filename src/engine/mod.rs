//! The engine every workflow runs on.
//!
//! - A [`Step`] is one file under `steps/`: it plans its actions from the desired state and the
//!   observations ([`PlanCx`]), its actions carry their own run ([`Run`]), and it declares how
//!   its actions are scheduled ([`Schedule`]).
//! - A [`Workflow`] is an ordered list of steps (see `workflow/`).
//! - [`plan::compute`] asks every step of a workflow for its actions, before anything changes;
//!   [`exec::execute`] runs them, with bounded concurrency, in the workflow's order, with
//!   progress, and a summary of every failed host and step.
//!
//! The engine knows no step: steps depend on it, never the reverse.

pub mod ctx;
pub mod exec;
pub mod ops;
pub mod plan;

pub use ctx::{Ctx, JoinSecrets, Stats, StepError};
pub use plan::{Destructive, Input, Plan, PlanCx, PlanError};

use crate::model::{Cluster, Host};
use crate::release::Artifact;
use serde::Serialize;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// How the executor runs the actions of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every host at once (bounded by `options.concurrency`), each host's actions in order.
    /// Steps next to each other in a workflow with the same `group` run as one: a host goes
    /// through all of them without waiting for the others. A failure is reported under `group`.
    PerHost { group: &'static str },
    /// One action at a time, in plan order (where quorum or ordering matters).
    OneAtATime,
    /// Hosts in batches of at most this many (a disruption budget); the next batch starts when
    /// the whole batch succeeded; a batch with a failure halts the step.
    Batched(usize),
}

/// One step of a workflow.
pub trait Step: Sync {
    /// Its name, in plans and messages (`os-prep`, `join-worker`, ...).
    fn name(&self) -> &'static str;
    /// The label of its time in the run's report (steps of one `PerHost` group share it).
    fn timing(&self) -> &'static str {
        self.name()
    }
    /// How its actions run, computed from the cluster.
    fn schedule(&self, c: &Cluster) -> Schedule;
    /// The actions still needed (none when the hosts have converged). `so_far` holds the
    /// actions the workflow's earlier steps planned.
    fn plan(&self, cx: &PlanCx, so_far: &[Action]) -> Result<Vec<Action>, PlanError>;
}

/// An ordered list of steps.
pub type Workflow<'w> = &'w [&'w dyn Step];

/// The future of one action's run.
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<(), StepError>> + Send + 'a>>;

/// What an action does, with the data it needs: defined by the step that plans it.
pub trait Run: Send + Sync + std::fmt::Debug + Any {
    /// Runs it on `host` (the API host for a cluster-wide action).
    fn run<'a>(&'a self, ctx: &'a Ctx, host: &'a str) -> RunFuture<'a>;
    /// The artifacts it installs: downloaded and verified before any host changes.
    fn installs(&self) -> &[Artifact] {
        &[]
    }
    /// The container images it imports (with the platform's arch): fetched and verified on the
    /// operator's machine before any host changes.
    fn images(&self) -> &[PlatformImage] {
        &[]
    }
    /// `Some(label)` when it destroys state on a host: shown apart in the plan and confirmed.
    fn destructive(&self) -> Option<&'static str> {
        None
    }
}

/// A pinned image for one platform (`linux/<arch>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlatformImage {
    pub image: crate::release::Image,
    pub arch: String,
}

/// Where the operator's verified copies of the images come from (the image cache): writes an
/// OCI archive of `images` to `out` and returns its size. Only images fetched before the run
/// started can be written.
pub trait ImageSource: Send + Sync {
    fn write_archive<'a>(
        &'a self,
        images: &'a [PlatformImage],
        out: &'a std::path::Path,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + 'a>>;
}

/// One action of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    /// None for cluster-wide actions.
    pub host: Option<String>,
    /// The step that planned it.
    pub step: &'static str,
    pub summary: String,
    /// Bytes uploaded to the host.
    pub upload_bytes: u64,
    #[serde(skip)]
    pub op: Arc<dyn Run>,
}

impl Action {
    /// An action on a host.
    pub fn on(h: &Host, step: &dyn Step, summary: impl Into<String>, op: impl Run) -> Action {
        Action {
            host: Some(h.name.clone()),
            step: step.name(),
            summary: summary.into(),
            upload_bytes: 0,
            op: Arc::new(op),
        }
    }

    /// A cluster-wide action (run through the API host).
    pub fn cluster(step: &dyn Step, summary: impl Into<String>, op: impl Run) -> Action {
        Action {
            host: None,
            step: step.name(),
            summary: summary.into(),
            upload_bytes: 0,
            op: Arc::new(op),
        }
    }

    /// The action's operation, if it is a `T`.
    pub fn op<T: Run>(&self) -> Option<&T> {
        let any: &dyn Any = self.op.as_ref();
        any.downcast_ref::<T>()
    }

    pub fn is<T: Run>(&self) -> bool {
        self.op::<T>().is_some()
    }
}

/// Implements [`Run`] for an operation type from an async block over `(self, ctx, host)`.
#[macro_export]
macro_rules! run_op {
    ($ty:ty, |$s:ident, $ctx:ident, $host:ident| $body:expr) => {
        impl $crate::engine::Run for $ty {
            fn run<'a>(
                &'a self,
                $ctx: &'a $crate::engine::Ctx,
                $host: &'a str,
            ) -> $crate::engine::RunFuture<'a> {
                let $s = self;
                Box::pin(async move { $body })
            }
        }
    };
}
