//! The executor: runs a plan's actions in the workflow's order, each step's as it declares
//! (per host in parallel, one at a time, or in batches), with bounded concurrency, progress,
//! the time of each phase, and on failure a summary naming every failed host and step.

use super::{Action, Ctx, Schedule, Workflow};
use crate::fleet::fan_out;
use crate::progress::Progress;
use std::sync::Arc;
use std::time::Instant;

/// A step that failed, with every host it failed on.
#[derive(Debug, Clone)]
pub struct Failed {
    pub step: String,
    /// (host, what failed)
    pub failures: Vec<(String, String)>,
}

/// The time of each phase of a run.
pub struct Timings {
    pub list: Vec<(String, f64)>,
    at: Instant,
}

impl Timings {
    /// Starts with phases already measured.
    pub fn starting_with(list: Vec<(String, f64)>) -> Self {
        Timings {
            list,
            at: Instant::now(),
        }
    }

    /// Ends the phase under way, named `name`.
    pub fn mark(&mut self, name: &str) {
        let now = Instant::now();
        let d = now.duration_since(self.at).as_secs_f64();
        if d > 0.0005 {
            self.list
                .push((name.to_string(), (d * 10.0).round() / 10.0));
        }
        self.at = now;
    }
}

/// Runs `actions` (a plan of `workflow`).
pub async fn execute(
    workflow: Workflow<'_>,
    actions: &[Action],
    ctx: &Arc<Ctx>,
    bars: bool,
    timings: &mut Timings,
) -> Result<(), Failed> {
    let c = &ctx.cluster;
    let mut i = 0;
    while i < workflow.len() {
        let step = workflow[i];
        let schedule = step.schedule(c);
        // the steps that run together: a PerHost group, else this one
        let mut names = vec![step.name()];
        i += 1;
        if let Schedule::PerHost { group } = schedule {
            while let Some(next) = workflow.get(i)
                && next.schedule(c) == (Schedule::PerHost { group })
            {
                names.push(next.name());
                i += 1;
            }
        }
        let todo: Vec<Action> = actions
            .iter()
            .filter(|a| names.contains(&a.step))
            .cloned()
            .collect();
        if todo.is_empty() {
            continue;
        }
        match schedule {
            Schedule::PerHost { group } => {
                run_per_host(ctx, &todo, step.timing(), bars)
                    .await
                    .map_err(|failures| Failed {
                        step: group.to_string(),
                        failures,
                    })?;
            }
            Schedule::Batched(size) => {
                let mut hosts: Vec<String> = Vec::new();
                for a in &todo {
                    let h = a.host.clone().unwrap_or_default();
                    if !hosts.contains(&h) {
                        hosts.push(h);
                    }
                }
                for batch in hosts.chunks(size.max(1)) {
                    let acts: Vec<Action> = todo
                        .iter()
                        .filter(|a| batch.contains(&a.host.clone().unwrap_or_default()))
                        .cloned()
                        .collect();
                    run_per_host(ctx, &acts, step.timing(), bars)
                        .await
                        .map_err(|failures| Failed {
                            step: step.name().to_string(),
                            failures,
                        })?;
                }
            }
            Schedule::OneAtATime => {
                for a in &todo {
                    let host = a.host.clone().unwrap_or_else(|| ctx.init_host.clone());
                    tracing::info!("{host}: {}", a.summary);
                    a.op.run(ctx, &host).await.map_err(|e| Failed {
                        step: a.step.to_string(),
                        failures: vec![(host.clone(), crate::secrets::redact(&e.to_string()))],
                    })?;
                }
            }
        }
        timings.mark(step.timing());
    }
    Ok(())
}

/// Runs a day-2 plan over `sessions`: no artifacts to install, the plan's API host for
/// kubectl, the phase timings not kept.
pub async fn run_day2(
    workflow: Workflow<'_>,
    plan: &super::Plan,
    cluster: &crate::model::Cluster,
    sessions: &std::collections::BTreeMap<String, Arc<crate::ssh::Session>>,
    bars: bool,
) -> Result<(), Failed> {
    let ctx = Arc::new(Ctx::new(
        cluster.clone(),
        sessions.clone(),
        Default::default(),
        plan.init_host.clone(),
        plan.node_ips.clone(),
    ));
    let mut timings = Timings::starting_with(Vec::new());
    execute(workflow, &plan.actions, &ctx, bars, &mut timings).await
}

/// Runs the actions of several hosts in parallel, each host's in order; returns the failures.
async fn run_per_host(
    ctx: &Arc<Ctx>,
    actions: &[Action],
    title: &str,
    bars: bool,
) -> Result<(), Vec<(String, String)>> {
    let mut by_host: Vec<(String, Vec<Action>)> = Vec::new();
    for a in actions {
        let h = a.host.clone().unwrap_or_else(|| ctx.init_host.clone());
        match by_host.iter_mut().find(|(n, _)| *n == h) {
            Some((_, v)) => v.push(a.clone()),
            None => by_host.push((h, vec![a.clone()])),
        }
    }
    let hosts: Vec<String> = by_host.iter().map(|(h, _)| h.clone()).collect();
    let progress = Arc::new(Progress::new(title, &hosts, bars));
    let results = fan_out(by_host, ctx.cluster.options.concurrency, |(host, acts)| {
        let ctx = ctx.clone();
        let progress = progress.clone();
        async move {
            for a in &acts {
                progress.set(&host, &format!("{}: {}", a.step, a.summary));
                if let Err(e) = a.op.run(&ctx, &host).await {
                    progress.finish(&host, false, a.step);
                    return Err(format!(
                        "step {}: {}",
                        a.step,
                        crate::secrets::redact(&e.to_string())
                    ));
                }
            }
            progress.finish(
                &host,
                true,
                &format!(
                    "{} action{}",
                    acts.len(),
                    if acts.len() == 1 { "" } else { "s" }
                ),
            );
            Ok(())
        }
    })
    .await;
    let failures: Vec<(String, String)> = results
        .into_iter()
        .filter_map(|((h, _), r, _)| r.err().map(|e| (h, e)))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}
