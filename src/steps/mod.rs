//! The steps, one per file. Each implements [`crate::engine::Step`]: it selects its hosts and,
//! from their facts, plans only what is missing; its actions carry their own run; it declares
//! its scheduling. A host that has converged gets no action. The workflows (`workflow/`) list
//! them in order. This module holds what several steps share (join secrets, kubeadm with a
//! config file, join actions).

pub mod api_endpoint;
pub mod charts;
pub mod cloud_provider;
pub mod cni;
pub mod control_plane_ready;
pub mod images;
pub mod init;
pub mod join_control_plane;
pub mod join_worker;
pub mod kube_binaries;
pub mod mirror_images;
pub mod os_prep;
pub mod remove_node;
pub mod renew_certs;
pub mod reset;
pub mod reset_host;
pub mod runtime;
pub mod upgrade;
pub mod upgrade_control_plane;
pub mod upgrade_worker;
pub mod wait_ready;

use crate::cluster_state::kubectl;
use crate::engine::{
    Action, Ctx, JoinSecrets, PlanCx, PlanError, Run, RunFuture, Schedule, Step, StepError,
};
use crate::ssh::Session;
use crate::ssh::session::{Exec, Upload};
use crate::util::shell_quote;
use std::time::Duration;

/// The steps that prepare each host by itself (os-prep, runtime, kube-binaries, api-endpoint)
/// run as one group: a host goes through all of them without waiting for the others.
pub const PREPARE: Schedule = Schedule::PerHost { group: "prepare" };
/// Their phase in the run's timings.
pub const PREPARE_TIMING: &str = "prepare hosts";

/// Plans `f` for every host of the cluster, with its facts and desired state.
pub fn each_host(
    cx: &PlanCx,
    f: impl Fn(&crate::model::Host, &crate::facts::Facts, &crate::desired::HostDesired) -> Vec<Action>,
) -> Vec<Action> {
    cx.cluster
        .hosts
        .iter()
        .flat_map(|h| f(h, cx.facts_of(h), cx.want(h)))
        .collect()
}

/// The members being upgraded: their binaries and runtime change during their own upgrade,
/// after their drain, not while they prepare.
pub fn upgrading(cx: &PlanCx) -> Result<std::collections::BTreeSet<String>, PlanError> {
    Ok(upgrade::check(cx)
        .map_err(PlanError::Upgrade)?
        .map(|u| u.hosts)
        .unwrap_or_default())
}

/// `kubeadm reset` of a host an interrupted run left half-joined (destructive: confirmed).
#[derive(Debug, Clone, Copy)]
pub struct ResetStale;

impl Run for ResetStale {
    fn run<'a>(&'a self, ctx: &'a Ctx, host: &'a str) -> RunFuture<'a> {
        Box::pin(async move { reset::run(ctx.session(host)?, reset::Scope::Stale).await })
    }
    fn destructive(&self) -> Option<&'static str> {
        Some("reset")
    }
}

/// The join secrets: made once per run. A fresh cluster passes its token and certificate key
/// to `kubeadm init` in its config file (mode 0600); an existing one gets a new token, and
/// freshly uploaded certificates when a control plane joins, both made by kubeadm itself and
/// read from its output. No secret is ever an argument of a process (`/proc/PID/cmdline` is
/// readable by every user of the control plane) nor on a logged command line.
pub async fn join_secrets(ctx: &Ctx, control_plane: bool) -> Result<JoinSecrets, StepError> {
    let mut guard = ctx.secrets.lock().await;
    if let Some(s) = guard.as_ref()
        && (!control_plane || s.certificate_key.is_some())
    {
        return Ok(s.clone());
    }
    let api = ctx.api()?;
    let mut secrets = match guard.take() {
        Some(s) => s,
        None => {
            let out = ctx
                .waiting(api.run_with(
                    &token_create_script(&ctx.cluster.name),
                    Exec {
                        display: Some("kubeadm token create --ttl 2h0m0s"),
                        secret: true,
                        ..Exec::default()
                    },
                ))
                .await?;
            let token = parse_token(&out).ok_or_else(|| {
                StepError::failed(
                    api.name(),
                    "kubeadm token create printed no bootstrap token",
                )
            })?;
            crate::secrets::register(&token);
            crate::secrets::register(&token[7..]);
            JoinSecrets {
                token,
                ca_hash: ca_hash(api).await?,
                certificate_key: None,
            }
        }
    };
    if control_plane && secrets.certificate_key.is_none() {
        let out = ctx
            .waiting(api.run_with(
                UPLOAD_CERTS,
                Exec {
                    display: Some("kubeadm init phase upload-certs --upload-certs"),
                    secret: true,
                    ..Exec::default()
                },
            ))
            .await?;
        let key = parse_certificate_key(&out).ok_or_else(|| {
            StepError::failed(
                api.name(),
                "kubeadm init phase upload-certs printed no certificate key",
            )
        })?;
        crate::secrets::register(&key);
        secrets.certificate_key = Some(key);
    }
    *guard = Some(secrets.clone());
    Ok(secrets)
}

/// `kubeadm token create` with no token argument: kubeadm makes the token and prints it.
pub fn token_create_script(cluster: &str) -> String {
    format!(
        "kubeadm token create --ttl 2h0m0s --description {} </dev/null",
        shell_quote(&format!("kubeforge: joins of cluster {cluster}"))
    )
}

/// Uploads the control-plane certificates under a key kubeadm makes and prints.
pub const UPLOAD_CERTS: &str = "kubeadm init phase upload-certs --upload-certs </dev/null";

/// The bootstrap token `kubeadm token create` printed (its last line, in kubeadm's format).
pub fn parse_token(out: &str) -> Option<String> {
    let t = out.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let (id, secret) = t.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then(|| t.to_string())
}

/// The key `kubeadm init phase upload-certs` printed: the line after "Using certificate key:",
/// 32 bytes in hex.
pub fn parse_certificate_key(out: &str) -> Option<String> {
    let mut lines = out.lines().map(str::trim);
    lines.find(|l| l.ends_with("Using certificate key:"))?;
    let k = lines.next()?;
    (k.len() == 64 && k.bytes().all(|c| c.is_ascii_hexdigit())).then(|| k.to_ascii_lowercase())
}

/// The bootstrap token of this run's joins is deleted once they are done (or one failed), and
/// the uploaded certificates with it. Best effort: returns what could not be deleted.
pub async fn forget_join_secrets(ctx: &Ctx) -> Option<String> {
    let secrets = ctx.secrets.lock().await.take()?;
    let api = match ctx.api() {
        Ok(a) => a,
        Err(e) => return Some(e.to_string()),
    };
    let id = secrets.token.split('.').next().unwrap_or_default();
    let mut script = format!(
        "kubeadm token delete {} </dev/null >/dev/null",
        shell_quote(id)
    );
    if secrets.certificate_key.is_some() {
        script.push_str(&format!(
            " && {} </dev/null >/dev/null",
            kubectl("-n kube-system delete secret kubeadm-certs --ignore-not-found --request-timeout=20s")
        ));
    }
    match api.run(&script).await {
        Ok(_) => None,
        Err(e) => Some(format!(
            "the bootstrap token {id} of this run's joins could not be deleted (it expires within 2 hours; `kubeadm token delete {id}` on {}): {}",
            api.name(),
            crate::secrets::redact(&e.to_string())
        )),
    }
}

/// The discovery CA pin, from the cluster CA on a control plane.
pub async fn ca_hash(api: &Session) -> Result<String, StepError> {
    let pem = api.read_file("/etc/kubernetes/pki/ca.crt").await?;
    crate::pki::ca_cert_hash(&String::from_utf8_lossy(&pem))
        .map_err(|e| StepError::failed(api.name(), format!("/etc/kubernetes/pki/ca.crt: {e}")))
}

/// Writes a kubeadm config with secrets (0600), runs kubeadm with it, and removes it whatever
/// the outcome. kubeadm's output is never logged: on failure its last lines are reported,
/// through the secrets redactor.
pub async fn kubeadm_with_config(
    ctx: &Ctx,
    host: &str,
    config: &str,
    args: &str,
    what: &str,
) -> Result<(), StepError> {
    let s = ctx.session(host)?;
    let path = "/etc/kubeforge/kubeadm.yaml";
    s.upload(Upload::Bytes(config.as_bytes()), path, 0o600, "root:root")
        .await?;
    let display = format!("kubeadm {what} --config {path}");
    let out = ctx
        .waiting(
            s.exec_with(
                &format!("kubeadm {args} --config {path}"),
                Exec {
                    display: Some(&display),
                    timeout: Some(
                        ctx.cluster
                            .options
                            .command_timeout
                            .max(Duration::from_secs(300)),
                    ),
                    ..Exec::default()
                },
            ),
        )
        .await;
    let cleanup = s.run(&format!("rm -f {path}")).await;
    let out = out?;
    cleanup?;
    if !out.success() {
        let text = format!("{}\n{}", out.stdout(), out.stderr());
        let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(8)..].join("\n    ");
        return Err(StepError::failed(
            host,
            crate::secrets::redact(&format!(
                "kubeadm {what} failed (exit status {}):\n    {tail}",
                out.status
            )),
        ));
    }
    Ok(())
}

/// The join actions for hosts that are not yet nodes: a stale host (an interrupted join left
/// kubeadm's files) is reset first, then joined. `what` completes "kubeadm join NAME ...".
pub fn join_actions<'a, R: Run + Clone>(
    cx: &PlanCx,
    hosts: impl Iterator<Item = &'a crate::model::Host>,
    step: &dyn Step,
    op: R,
    what: &str,
) -> Vec<Action> {
    let mut out = Vec::new();
    for h in hosts.filter(|h| !cx.is_member(h)) {
        if cx.is_stale(h) {
            out.push(Action::on(
                h,
                step,
                format!(
                    "reset {}: an interrupted join left kubeadm's files, but it is no node",
                    h.name
                ),
                ResetStale,
            ));
        }
        out.push(Action::on(
            h,
            step,
            format!("kubeadm join {} {what}", h.name),
            op.clone(),
        ));
    }
    out
}

/// `kubectl get nodes` through a control plane.
pub async fn nodes(ctx: &Ctx) -> Result<Vec<crate::cluster_state::NodeState>, StepError> {
    nodes_through(ctx.api()?).await
}

/// `kubectl get nodes` through a given control plane.
pub async fn nodes_through(
    api: &Session,
) -> Result<Vec<crate::cluster_state::NodeState>, StepError> {
    let out = api
        .run(&kubectl("get nodes -o json --request-timeout=20s"))
        .await?;
    crate::cluster_state::parse_nodes(&out).map_err(|m| StepError::failed(api.name(), m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_secrets_are_made_by_kubeadm_and_never_an_argument() {
        // the scripts carry no secret: kubeadm makes the token and the key and prints them
        let create = token_create_script("prod's");
        assert_eq!(
            create,
            "kubeadm token create --ttl 2h0m0s --description 'kubeforge: joins of cluster prod'\\''s' </dev/null"
        );
        assert!(!UPLOAD_CERTS.contains("--certificate-key"));
        assert_eq!(
            parse_token("abcdef.0123456789abcdef\n").as_deref(),
            Some("abcdef.0123456789abcdef")
        );
        assert_eq!(
            parse_token("W1122 a warning\nabcdef.0123456789abcdef").as_deref(),
            Some("abcdef.0123456789abcdef")
        );
        for bad in [
            "",
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "token",
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
        let key = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
        let out = format!(
            "[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace\n[upload-certs] Using certificate key:\n{key}\n"
        );
        assert_eq!(parse_certificate_key(&out).as_deref(), Some(key));
        assert_eq!(
            parse_certificate_key("[upload-certs] Using certificate key:\nshort\n"),
            None
        );
        assert_eq!(
            parse_certificate_key(key),
            None,
            "only after kubeadm's label"
        );
    }
}
