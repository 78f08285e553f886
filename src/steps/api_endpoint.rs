//! api-endpoint: every node reaches the API through a name that survives the loss of any one
//! control plane. With `loadBalancer: local` the name is in each node's /etc/hosts: on a
//! control plane it is the node itself once its API server runs (a serving control plane
//! while it joins); on a worker it is 127.0.0.1, where haproxy forwards to every API server
//! whose /readyz answers.

use crate::desired::{Followup, HostDesired};
use crate::engine::ops::{file_actions, followup_action};
use crate::engine::{Action, PlanCx, PlanError, Schedule, Step, StepError};
use crate::facts::Facts;
use crate::model::{Cluster, Host, Role};
use crate::ssh::Session;
use crate::ssh::session::Exec;

pub struct ApiEndpoint;

impl Step for ApiEndpoint {
    fn name(&self) -> &'static str {
        "api-endpoint"
    }
    fn timing(&self) -> &'static str {
        super::PREPARE_TIMING
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        super::PREPARE
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        Ok(super::each_host(cx, plan_host))
    }
}

#[derive(Debug, Clone)]
pub struct HostsBlock(pub String);
crate::run_op!(HostsBlock, |op, ctx, host| write_hosts_block(
    ctx.session(host)?,
    &op.0
)
.await);

#[derive(Debug, Clone)]
struct StartHaproxy;
crate::run_op!(StartHaproxy, |_op, ctx, host| start_haproxy(
    ctx.session(host)?
)
.await);

fn plan_host(h: &Host, f: &Facts, want: &HostDesired) -> Vec<Action> {
    let step = &ApiEndpoint;
    let mut out = Vec::new();
    if let Some(block) = &want.hosts_block {
        let have = f.hosts_block.join("\n");
        if have.trim_end() != block.trim_end() {
            let target = block.lines().nth(1).unwrap_or_default().to_string();
            out.push(Action::on(
                h,
                step,
                format!("map the API endpoint in /etc/hosts: {target}"),
                HostsBlock(block.clone()),
            ));
        }
    }
    let (writes, followups) = file_actions(h, f, want, step);
    out.extend(writes);
    if h.role == Role::Worker && want.hosts_block.is_some() && !f.haproxy_active {
        out.push(Action::on(
            h,
            step,
            "start haproxy, the node-local API load balancer",
            StartHaproxy,
        ));
    } else {
        // a running haproxy reloads: a new control plane joins the backends without cutting
        // the kubelet's and pods' open connections
        for fu in followups
            .into_iter()
            .filter(|fu| *fu != Followup::ReloadHaproxy || f.haproxy_active)
        {
            out.push(followup_action(h, step, fu));
        }
    }
    out
}

/// Replaces kubeforge's block in /etc/hosts (in place: /etc/hosts may be a bind mount).
pub async fn write_hosts_block(s: &Session, block: &str) -> Result<(), StepError> {
    s.run_with(
        "set -e\nt=$(mktemp)\nawk '/^# BEGIN kubeforge/{skip=1} !skip{print} /^# END kubeforge/{skip=0}' /etc/hosts > \"$t\"\ncat >> \"$t\"\ncat \"$t\" > /etc/hosts\nrm -f \"$t\"",
        Exec {
            stdin: Some(block.as_bytes()),
            display: Some("update the kubeforge block of /etc/hosts"),
            ..Exec::default()
        },
    )
    .await?;
    Ok(())
}

pub async fn start_haproxy(s: &Session) -> Result<(), StepError> {
    let out = s
        .exec("haproxy -c -q -f /etc/haproxy/haproxy.cfg && systemctl enable haproxy >/dev/null 2>&1 && systemctl restart haproxy && systemctl is-active -q haproxy")
        .await?;
    if !out.success() {
        return Err(StepError::failed(
            s.name(),
            format!("haproxy did not start: {}", out.stderr().trim()),
        ));
    }
    Ok(())
}

/// The haproxy admin socket on workers (see templates/haproxy.cfg.tera).
pub const LB_SOCKET: &str = "/run/haproxy-kubeforge.sock";

/// Takes a control plane out of (or back into) every worker's node-local load balancer, so no
/// client request reaches an API server while it restarts.
pub async fn lb_rotation(
    c: &crate::model::Cluster,
    sessions: &std::collections::BTreeMap<String, std::sync::Arc<Session>>,
    control_plane: &str,
    serving: bool,
) {
    if !crate::desired::api_endpoint(c).local {
        return;
    }
    let state = if serving { "ready" } else { "maint" };
    let cmd = format!(
        "echo 'set server control-planes/{control_plane} state {state}' | socat - UNIX-CONNECT:{LB_SOCKET}"
    );
    for h in c.workers() {
        if let Some(s) = sessions.get(&h.name) {
            match s.exec(&cmd).await {
                Ok(o) if o.success() && o.stdout().trim().is_empty() => {}
                Ok(o) => tracing::warn!(
                    "{}: haproxy did not take {control_plane} {state}: {}{}",
                    h.name,
                    o.stdout().trim(),
                    o.stderr().trim()
                ),
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }
}
