//! The `apply` command as a library call: the cloud first (shown, confirmed, created or
//! adopted), then the plan of every host (shown, confirmed), the run, the removals the plan
//! named (pruned nodes, servers beyond a lowered count), and the report. The caller supplies
//! the confirmation rule and where messages go ([`Ui`]); nothing here reads a terminal.

use super::apply::{self, ApplyError, Options, Report};
use crate::day2;
use crate::engine::Plan;
use crate::inventory::Loaded;
use crate::model::Cluster;
use crate::openstack::provider::CloudAction;
use crate::preflight::Finding;

/// What the command shows the operator as it goes (rendered by `output`).
pub enum Shown<'a> {
    /// The cloud's resources, to create, adopt, replace or delete.
    CloudPlan(&'a [CloudAction]),
    /// What provisioning created or replaced.
    CloudChanges(&'a [CloudAction]),
    /// Preflight warnings.
    Findings(&'a [Finding]),
    /// The plan of the hosts and the cluster.
    Plan(&'a Plan, &'a Cluster),
    /// What removing nodes did.
    Removed(&'a [day2::Removed]),
    /// A line of progress.
    Note(String),
}

/// How a command goes on after showing what it would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Go {
    /// Without asking: nothing destructive, or --yes.
    Ahead,
    /// Ask the operator first.
    Ask,
    /// Refuse before anything changes: destructive, off a terminal, without --yes.
    Refuse,
}

/// The rule of every destructive command: a destructive action is confirmed on a terminal or
/// by --yes; off a terminal without --yes it is refused. Other changes are asked about on a
/// terminal, and made without asking off one.
pub fn confirmation(changes: bool, destructive: bool, yes: bool, terminal: bool) -> Go {
    match (yes, terminal) {
        (true, _) => Go::Ahead,
        (false, false) if destructive => Go::Refuse,
        (false, false) => Go::Ahead,
        (false, true) if changes || destructive => Go::Ask,
        (false, true) => Go::Ahead,
    }
}

/// What the command needs from whoever runs it.
pub trait Ui: Sync {
    /// How to go on, given whether there are changes and destructive ones.
    fn decide(&self, changes: bool, destructive: bool) -> Go;
    /// Asks the operator `question`; true: go ahead.
    fn ask(&self, question: &str) -> Result<bool, ApplyError>;
    /// Shows the operator what the command does.
    fn show(&self, what: Shown);
}

/// What `apply` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Remove the nodes the inventory does not list.
    pub prune: bool,
    /// Reset hosts of removed nodes that the cluster cannot vouch for.
    pub force: bool,
    /// Stop after the cloud's machines are there.
    pub cloud_only: bool,
}

/// How `apply` ended.
pub enum Outcome {
    /// The cluster matches the inventory.
    Applied(Report),
    /// `--cloud-only`: the machines, and where the API will be.
    CloudOnly(crate::openstack::provider::Provisioned),
    /// The operator said no; nothing changed.
    Declined,
}

/// Runs `apply`.
pub async fn apply(
    loaded: &Loaded,
    opts: &Options,
    req: &Request,
    ui: &dyn Ui,
) -> Result<Outcome, ApplyError> {
    let mut loaded = loaded.clone();
    let mut opts = Options {
        connect: opts.connect.clone(),
        ignore_preflight: opts.ignore_preflight.clone(),
        bars: opts.bars,
        cloud_provider: opts.cloud_provider.clone(),
    };
    let mut surplus = Vec::new();
    if loaded.inventory.spec.openstack.is_some() {
        // the machines first: show what changes in the cloud, confirm, create or adopt
        let cloud_plan = crate::openstack::observe(&loaded)
            .await
            .map_err(other)?
            .actions;
        ui.show(Shown::CloudPlan(&cloud_plan));
        let changes = cloud_plan.iter().any(|x| x.is_change());
        let destructive: Vec<String> = cloud_plan
            .iter()
            .filter(|x| x.is_destructive())
            .map(|x| format!("{} {} {}", x.verb, x.kind, x.name))
            .collect();
        match ui.decide(changes, !destructive.is_empty()) {
            Go::Refuse => return Err(ApplyError::Refused(destructive.join(", "))),
            Go::Ask
                if !ui.ask("Make these changes in the cloud, then bootstrap the servers?")? =>
            {
                return Ok(Outcome::Declined);
            }
            _ => {}
        }
        let (p, cloud_provider, resolved) =
            crate::openstack::provision(&loaded).await.map_err(other)?;
        loaded = crate::openstack::resolved(&loaded, &resolved);
        opts.cloud_provider = cloud_provider;
        ui.show(Shown::CloudChanges(&p.actions));
        if req.cloud_only {
            return Ok(Outcome::CloudOnly(p));
        }
        surplus = p.surplus.clone();
        apply::wait_reachable(&loaded, &opts.connect).await?;
    }
    let mut prepared = apply::prepare(&loaded, &opts).await?;
    ui.show(Shown::Findings(&prepared.warnings));
    // destructive: the nodes to prune, and those beyond a lowered count
    let prune: Vec<String> = if req.prune {
        crate::engine::plan::unlisted_nodes(&loaded.cluster, prepared.state.as_ref())
    } else {
        Vec::new()
    };
    let surplus_names: Vec<String> = surplus.iter().map(|s| s.name.clone()).collect();
    if let Some(state) = prepared.state.clone() {
        prepared
            .plan
            .remove_nodes(&loaded.cluster, &state, &prune, "");
        prepared.plan.remove_nodes(
            &loaded.cluster,
            &state,
            &surplus_names,
            "; then its server is deleted",
        );
    }
    // destructive: the Helm releases of kubeforge the inventory no longer lists
    if req.prune
        && let Some(releases) = apply::chart_releases(&prepared).await
    {
        crate::steps::charts::prune(&mut prepared.plan, &loaded.cluster, &releases);
    }
    ui.show(Shown::Plan(&prepared.plan, &loaded.cluster));
    let go = ui.decide(!prepared.plan.is_empty(), prepared.plan.is_destructive());
    if go == Go::Refuse {
        prepared.fleet.close().await;
        return Err(ApplyError::Refused(prepared.plan.destructive_summary()));
    }
    // the hosts to reset are this cluster's: refused before anything changes
    let removals: Vec<String> = prune.iter().chain(&surplus_names).cloned().collect();
    if !removals.is_empty()
        && let Err(e) = check_removals(&loaded, &opts, &removals, req.force).await
    {
        prepared.fleet.close().await;
        return Err(e);
    }
    if go == Go::Ask && !ui.ask("Apply these changes?")? {
        prepared.fleet.close().await;
        return Ok(Outcome::Declined);
    }
    let report = apply::execute(&loaded, prepared, &opts).await?;
    if !prune.is_empty() {
        ui.show(Shown::Note(format!(
            "pruning nodes the inventory no longer lists: {}",
            prune.join(", ")
        )));
        let removed = remove_nodes(&loaded, &opts, &prune, req.force).await?;
        ui.show(Shown::Removed(&removed));
    }
    if !surplus.is_empty() {
        // lowered counts: the highest-numbered servers leave the cluster safely, then go
        ui.show(Shown::Note(format!(
            "scaling down: removing {}",
            surplus_names.join(", ")
        )));
        let removed = remove_nodes(&loaded, &opts, &surplus_names, req.force).await?;
        ui.show(Shown::Removed(&removed));
        let cloud = crate::openstack::connect(&loaded).await.map_err(other)?;
        let deleted =
            crate::openstack::provider::delete_servers(&cloud, &loaded.cluster.name, &surplus)
                .await
                .map_err(|e| other(e.into()))?;
        for x in deleted {
            ui.show(Shown::Note(format!("deleted {} {}", x.kind, x.name)));
        }
    }
    Ok(Outcome::Applied(report))
}

fn other(e: crate::openstack::ProviderError) -> ApplyError {
    ApplyError::Other(e.into())
}

/// Of `names`, the nodes the cluster has.
fn nodes_of_the_cluster(s: &day2::Session2, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| s.state.node(n).is_some())
        .cloned()
        .collect()
}

/// Safely removes those of `names` that are nodes of the cluster (drain, delete, etcd member,
/// reset), as `kubeforge node remove` does.
async fn remove_nodes(
    loaded: &Loaded,
    opts: &Options,
    names: &[String],
    force_unvouched: bool,
) -> Result<Vec<day2::Removed>, ApplyError> {
    let s = day2::open(loaded, opts.connect.clone(), opts.bars)
        .await
        .map_err(day2_error)?;
    let nodes = nodes_of_the_cluster(&s, names);
    let options = day2::RemoveOptions {
        force: false,
        force_unvouched,
        remove_binaries: false,
        bars: opts.bars,
    };
    let r = day2::remove(loaded, &s, &nodes, &options).await;
    s.fleet.close().await;
    r.map_err(day2_error)
}

/// Before anything changes: the hosts of the nodes to remove are this cluster's.
async fn check_removals(
    loaded: &Loaded,
    opts: &Options,
    names: &[String],
    force_unvouched: bool,
) -> Result<(), ApplyError> {
    let s = day2::open(loaded, opts.connect.clone(), opts.bars)
        .await
        .map_err(day2_error)?;
    let nodes = nodes_of_the_cluster(&s, names);
    let r = day2::reach_and_check(loaded, &s, &nodes, force_unvouched).await;
    if let Ok(sessions) = &r {
        for (name, session) in sessions {
            if s.fleet.session(name).is_none() {
                session.close().await;
            }
        }
    }
    s.fleet.close().await;
    r.map(|_| ()).map_err(day2_error)
}

fn day2_error(e: day2::Day2Error) -> ApplyError {
    ApplyError::Other(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destructive_actions_are_confirmed() {
        // (changes, destructive, yes, terminal)
        assert_eq!(confirmation(true, true, false, false), Go::Refuse);
        assert_eq!(confirmation(false, true, false, false), Go::Refuse);
        assert_eq!(confirmation(false, true, false, true), Go::Ask);
        assert_eq!(confirmation(true, true, false, true), Go::Ask);
        assert_eq!(confirmation(true, true, true, false), Go::Ahead);
        assert_eq!(confirmation(false, true, true, true), Go::Ahead);
        // not destructive: asked on a terminal, made off one, as before
        assert_eq!(confirmation(true, false, false, true), Go::Ask);
        assert_eq!(confirmation(true, false, false, false), Go::Ahead);
        assert_eq!(confirmation(false, false, false, true), Go::Ahead);
        assert_eq!(confirmation(false, false, false, false), Go::Ahead);
    }
}
