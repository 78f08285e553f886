//! `reset`: one step, reset-host, over every host that answers. Every host is read and the
//! plan computed before any host changes; hosts that are not this cluster's refuse it.

use crate::engine::exec;
use crate::engine::{Input, PlanCx, Step};
use crate::facts::Facts;
use crate::inventory::Loaded;
use crate::ssh::ConnectOptions;
use crate::steps::reset_host::ResetHost;
use std::collections::BTreeMap;

/// What `reset` did.
#[derive(Debug, Default)]
pub struct ResetOutcome {
    /// Hosts reset.
    pub reset: Vec<String>,
    /// Hosts not reached: (host, error).
    pub unreachable: Vec<(String, String)>,
    /// Hosts with nothing to reset on them: (host, why).
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Refused by policy before anything changed.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Plan(#[from] crate::engine::PlanError),
    #[error("reset failed on {}: {}", .0.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>().join(", "), .0.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>().join("; "))]
    Failed(Vec<(String, String)>),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Resets every reachable host of the inventory that is this cluster's.
pub async fn run(
    loaded: &Loaded,
    connect: ConnectOptions,
    remove_binaries: bool,
    force: bool,
    bars: bool,
) -> Result<ResetOutcome, ResetError> {
    let c = &loaded.cluster;
    let (fleet, gathered, progress) = crate::status::connect_all(
        loaded,
        connect,
        "read",
        bars,
        |name, s, progress| async move {
            progress.set(&name, "reading what is on the host");
            let r = crate::facts::gather(&s).await;
            progress.finish(
                &name,
                r.is_ok(),
                if r.is_ok() { "read" } else { "facts failed" },
            );
            r
        },
    )
    .await?;
    drop(progress);
    let mut facts: BTreeMap<String, Facts> = BTreeMap::new();
    let mut probe_failed = BTreeMap::new();
    for (h, r) in gathered {
        match r {
            Ok(f) => {
                facts.insert(h, f);
            }
            Err(e) => {
                probe_failed.insert(h, e.to_string());
            }
        }
    }
    let step = ResetHost {
        force,
        remove_binaries,
        reached: fleet.sessions.keys().cloned().collect(),
        probe_failed,
    };
    let manifest = loaded
        .catalog
        .get(&c.version)
        .ok_or_else(|| anyhow::anyhow!("no release manifest for Kubernetes {}", c.version))?;
    let input = Input::day2(c, manifest, &facts, None);
    let planned = PlanCx::observed(&input).and_then(|cx| {
        let skipped: Vec<(String, String)> = step
            .decisions(&cx)
            .into_iter()
            .filter(|(_, d)| matches!(d, Ok(false)))
            .map(|(h, _)| {
                (
                    h,
                    "no kubeforge marker and no kubeadm state (nothing to reset)".to_string(),
                )
            })
            .collect();
        let workflow: [&dyn Step; 1] = [&step];
        crate::engine::plan::compute_with(&workflow, cx).map(|p| (p, skipped))
    });
    let (plan, skipped) = match planned {
        Ok(p) => p,
        Err(e) => {
            fleet.close().await;
            return Err(match e {
                crate::engine::PlanError::Refused(m) => ResetError::Refused(m),
                e => e.into(),
            });
        }
    };
    let workflow: [&dyn Step; 1] = [&step];
    let r = exec::run_day2(&workflow, &plan, c, &fleet.sessions, bars).await;
    fleet.close().await;
    if let Err(f) = r {
        return Err(ResetError::Failed(f.failures));
    }
    Ok(ResetOutcome {
        reset: plan.actions.iter().filter_map(|a| a.host.clone()).collect(),
        unreachable: fleet
            .unreachable
            .iter()
            .map(|(h, e)| (h.clone(), e.to_string()))
            .collect(),
        skipped,
    })
}
