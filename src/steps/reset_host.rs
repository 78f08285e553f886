//! reset-host: `kubeadm reset` and kubeforge's cleanup on every reached host that is this
//! cluster's. Planned from every host's facts before any host changes: a host of another
//! cluster, or one the cluster cannot vouch for, refuses the whole reset (unless `force`); a
//! host with neither kubeforge's marker nor kubeadm's state has nothing to reset.

use crate::engine::{Action, PlanCx, PlanError, Run, RunFuture, Schedule, Step};
use crate::model::Cluster;
use crate::ownership::{CaHash, Refusal, reset_decision};
use std::collections::{BTreeMap, BTreeSet};

pub struct ResetHost {
    /// Reset hosts the cluster cannot vouch for, too.
    pub force: bool,
    pub remove_binaries: bool,
    /// The hosts that answered (those without facts among them: the probe failed).
    pub reached: BTreeSet<String>,
    /// Why the facts probe failed on a host that answered.
    pub probe_failed: BTreeMap<String, String>,
}

impl ResetHost {
    /// What reset does with each reached host: reset it (true), skip it (false), or refuse.
    pub fn decisions(&self, cx: &PlanCx) -> Vec<(String, Result<bool, Refusal>)> {
        let c = cx.cluster;
        // the cluster's CA: the one its control planes (by kubeforge's marker) hold
        let ca = c
            .control_planes()
            .filter_map(|h| cx.facts.get(&h.name))
            .filter(|f| f.membership.cluster() == Some(c.name.as_str()))
            .find_map(|f| CaHash::of(&f.membership));
        c.hosts
            .iter()
            .filter(|h| self.reached.contains(&h.name))
            .map(|h| {
                let d = match cx.facts.get(&h.name) {
                    Some(f) => reset_decision(&f.membership, &c.name, ca.as_ref()),
                    None => Err(Refusal::NoFacts(
                        self.probe_failed
                            .get(&h.name)
                            .cloned()
                            .unwrap_or_else(|| "the facts probe failed".into()),
                    )),
                };
                (h.name.clone(), d)
            })
            .collect()
    }
}

impl Step for ResetHost {
    fn name(&self) -> &'static str {
        "reset"
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::PerHost { group: "reset" }
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        let mut out = Vec::new();
        let mut refused = Vec::new();
        for (name, d) in self.decisions(cx) {
            let Some(h) = cx.cluster.host(&name) else {
                continue;
            };
            let what = if self.remove_binaries {
                "kubeadm reset, remove kubeforge's files and binaries"
            } else {
                "kubeadm reset, remove kubeforge's files"
            };
            match d {
                Ok(true) => out.push(Action::on(h, self, what, ResetFull(self.remove_binaries))),
                Ok(false) => {}
                Err(why) if self.force => {
                    tracing::warn!("{name}: reset anyway (--force): {why}");
                    out.push(Action::on(
                        h,
                        self,
                        format!("{what} (--force: {why})"),
                        ResetFull(self.remove_binaries),
                    ));
                }
                Err(why) => refused.push(format!("{name}: {why}")),
            }
        }
        if !refused.is_empty() {
            return Err(PlanError::Refused(format!(
                "reset refused, nothing was reset:\n{}\nCheck those hosts (or the inventory), or run again with --force to reset them anyway",
                refused
                    .iter()
                    .map(|r| format!("  - {r}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )));
        }
        Ok(out)
    }
}

/// `kubeadm reset` and kubeforge's cleanup (destructive).
#[derive(Debug, Clone, Copy)]
struct ResetFull(bool);

impl Run for ResetFull {
    fn run<'a>(&'a self, ctx: &'a crate::engine::Ctx, host: &'a str) -> RunFuture<'a> {
        Box::pin(async move {
            super::reset::run(
                ctx.session(host)?,
                super::reset::Scope::Full {
                    remove_binaries: self.0,
                },
            )
            .await
        })
    }
    fn destructive(&self) -> Option<&'static str> {
        Some("reset")
    }
}
