//! The steps of `apply`, one per file. Each step selects its hosts and, from their facts,
//! plans only what is missing (`plan`); the executor runs those actions (`run`). A host that
//! has converged gets no action.

pub mod api_endpoint;
pub mod cloud_provider;
pub mod cni;
pub mod control_plane_ready;
pub mod init;
pub mod join_control_plane;
pub mod join_worker;
pub mod kube_binaries;
pub mod os_prep;
pub mod reset;
pub mod runtime;
pub mod upgrade;
pub mod wait_ready;

use crate::paths;
use crate::cluster_state::kubectl;
use crate::desired::{self, Followup, ManagedFile};
use crate::model::Cluster;
use crate::plan::{Action, Op, Step};
use crate::release::{Artifact, ReleaseManifest};
use crate::ssh::session::{Exec, Upload};
use crate::ssh::{Session, SshError};
use crate::util::shell_quote;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Ssh(Box<SshError>),
    #[error("{host}: {message}")]
    Failed { host: String, message: String },
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
}

impl From<SshError> for StepError {
    fn from(e: SshError) -> Self {
        StepError::Ssh(Box::new(e))
    }
}

impl StepError {
    pub fn failed(host: &str, message: impl Into<String>) -> Self {
        StepError::Failed {
            host: host.to_string(),
            message: message.into(),
        }
    }
}

/// What the cluster's joins need, made or fetched once per run; never printed.
#[derive(Clone)]
pub struct JoinSecrets {
    pub token: String,
    pub ca_hash: String,
    /// Set once certificates are uploaded for control-plane joins.
    pub certificate_key: Option<String>,
}

/// Counters for the run's summary.
#[derive(Default)]
pub struct Stats {
    pub uploaded: Mutex<BTreeMap<String, u64>>,
    /// Wall time spent waiting on kubeadm and the kubelets (init, joins, nodes turning Ready).
    /// Waits that overlap (workers joining in parallel) count once.
    pub waited: Mutex<Duration>,
    /// Waits under way, and since when at least one has been.
    active: Mutex<(usize, Option<Instant>)>,
}

/// One wait under way; the time counts until it is dropped.
pub struct Waiting<'a>(&'a Stats);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut a = self.0.active.lock().unwrap_or_else(|p| p.into_inner());
        a.0 -= 1;
        if a.0 == 0
            && let Some(since) = a.1.take()
        {
            *self.0.waited.lock().unwrap_or_else(|p| p.into_inner()) += since.elapsed();
        }
    }
}

impl Stats {
    pub fn add_upload(&self, host: &str, bytes: u64) {
        *self
            .uploaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.to_string())
            .or_default() += bytes;
    }
    /// Starts counting a wait (the union of all waits' wall time is what is reported).
    pub fn wait(&self) -> Waiting<'_> {
        let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if a.0 == 0 {
            a.1 = Some(Instant::now());
        }
        a.0 += 1;
        Waiting(self)
    }
}

/// Everything the actions of one run share.
pub struct Ctx {
    pub cluster: Cluster,
    pub manifest: ReleaseManifest,
    pub sessions: BTreeMap<String, Arc<Session>>,
    /// Verified artifacts in the local cache, by sha256.
    pub artifacts: BTreeMap<String, PathBuf>,
    /// The control plane that inits the cluster or serves its API.
    pub init_host: String,
    /// Every host's node IP (from the plan: the inventory's, else the host's facts).
    pub node_ips: desired::NodeIps,
    pub stats: Stats,
    pub secrets: tokio::sync::Mutex<Option<JoinSecrets>>,
}

impl Ctx {
    pub fn session(&self, host: &str) -> Result<&Arc<Session>, StepError> {
        self.sessions
            .get(host)
            .ok_or_else(|| StepError::failed(host, "not connected"))
    }

    /// The session kubectl runs on.
    pub fn api(&self) -> Result<&Arc<Session>, StepError> {
        self.session(&self.init_host)
    }

    /// Runs a kubeadm or kubectl command that waits on the cluster, counting the time waited.
    pub async fn waiting<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let _w = self.stats.wait();
        f.await
    }
}

/// Runs one action.
pub async fn run(ctx: &Ctx, a: &Action) -> Result<(), StepError> {
    let host = a.host.as_deref().unwrap_or(&ctx.init_host);
    match &a.op {
        Op::WriteFile(f) => write_file(ctx, host, f).await,
        Op::Followup(f) => followup(ctx, host, *f).await,
        Op::SwapOff => os_prep::swap_off(ctx.session(host)?).await,
        Op::SetHostname(name) => os_prep::set_hostname(ctx.session(host)?, name).await,
        Op::InstallPackages(p) => os_prep::install_packages(ctx.session(host)?, p).await,
        Op::Install(art) => install(ctx, host, art).await,
        Op::StartContainerd => runtime::start_containerd(ctx.session(host)?).await,
        Op::EnableKubelet => kube_binaries::enable_kubelet(ctx.session(host)?).await,
        Op::StartHaproxy => api_endpoint::start_haproxy(ctx.session(host)?).await,
        Op::HostsBlock(block) => api_endpoint::write_hosts_block(ctx.session(host)?, block).await,
        Op::Init => init::run(ctx, host).await,
        Op::ResetStale => reset(ctx.session(host)?).await,
        Op::JoinControlPlane => join_control_plane::run(ctx, host).await,
        Op::JoinWorker => join_worker::run(ctx, host).await,
        Op::ApplyCni(manifest) => cni::run(ctx, manifest).await,
        Op::ApplyCloudProvider(cp) => cloud_provider::run(ctx, cp).await,
        Op::WaitReady => wait_ready::run(ctx).await,
        Op::Upgrade {
            first,
            installs,
            runtime_files,
        } => upgrade::run(ctx, host, *first, installs, runtime_files).await,
        Op::Uncordon => upgrade::run_uncordon(ctx, host).await,
    }
}

pub async fn write_file(ctx: &Ctx, host: &str, f: &ManagedFile) -> Result<(), StepError> {
    ctx.session(host)?
        .upload(
            Upload::Bytes(f.content.as_bytes()),
            &f.path,
            f.mode,
            "root:root",
        )
        .await?;
    ctx.stats.add_upload(host, f.content.len() as u64);
    Ok(())
}

pub async fn followup(ctx: &Ctx, host: &str, f: Followup) -> Result<(), StepError> {
    let s = ctx.session(host)?;
    let script = match f {
        Followup::Sysctl => "sysctl --system >/dev/null",
        // built-in features make modprobe unnecessary; a module that does not exist is fine
        // when the feature is built in (facts checked that it is available)
        Followup::Modules => {
            "for m in overlay br_netfilter; do modprobe $m 2>/dev/null || grep -q \"/$m.ko\" /lib/modules/$(uname -r)/modules.builtin 2>/dev/null || [ -d /sys/module/$m ] || { echo \"cannot load $m\" >&2; exit 1; }; done"
        }
        Followup::DaemonReload => "systemctl daemon-reload",
        Followup::RestartContainerd => "systemctl daemon-reload; systemctl restart containerd",
        Followup::ReloadHaproxy => {
            "haproxy -c -q -f /etc/haproxy/haproxy.cfg && systemctl reload-or-restart haproxy"
        }
    };
    s.run(script).await?;
    Ok(())
}

/// Uploads a verified artifact from the local cache and installs it (files are replaced by
/// rename, so a running binary is never written over), then records what was installed.
pub async fn install(ctx: &Ctx, host: &str, a: &Artifact) -> Result<(), StepError> {
    let s = ctx.session(host)?;
    let local = ctx.artifacts.get(&a.sha256).ok_or_else(|| {
        StepError::failed(
            host,
            format!("{} {} was not downloaded", a.component, a.version),
        )
    })?;
    let remote = format!(
        "{}/{}-{}-{}",
        paths::STAGING_DIR,
        a.component,
        a.version,
        a.sha256.get(..12).unwrap_or_default()
    );
    s.upload(Upload::File(local), &remote, 0o600, "root:root")
        .await?;
    ctx.stats.add_upload(
        host,
        a.size
            .unwrap_or_else(|| std::fs::metadata(local).map(|m| m.len()).unwrap_or(0)),
    );
    let script = format!(
        "set -e\nF={f}\n{check}\n{install}\nmkdir -p {dir}\necho {marker} > {dir}/{comp}.tmp && mv -f {dir}/{comp}.tmp {dir}/{comp}\nrm -f \"$F\"",
        f = shell_quote(&remote),
        check = crate::artifacts::remote_check_script(&a.sha256),
        install = desired::install_script(a),
        dir = paths::INSTALLED_DIR,
        marker = shell_quote(&desired::marker_line(a)),
        comp = a.component,
    );
    s.run_with(
        &script,
        Exec {
            display: Some(&format!("install {} {}", a.component, a.version)),
            ..Exec::default()
        },
    )
    .await?;
    Ok(())
}

/// `kubeadm reset` for a host an interrupted run left half-joined.
pub async fn reset(s: &Session) -> Result<(), StepError> {
    reset::run(s, reset::Scope::Stale).await
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

/// A cluster-wide action (no host).
pub fn cluster_action(step: Step, summary: impl Into<String>, op: Op) -> Action {
    Action {
        host: None,
        step,
        summary: summary.into(),
        upload_bytes: 0,
        op,
    }
}

/// The join actions for hosts that are not yet nodes: a stale host (an interrupted join left
/// kubeadm's files) is reset first, then joined. `what` completes "kubeadm join NAME ...".
pub fn join_actions<'a>(
    input: &crate::plan::Input,
    hosts: impl Iterator<Item = &'a crate::model::Host>,
    step: Step,
    op: Op,
    what: &str,
) -> Vec<Action> {
    let mut out = Vec::new();
    for h in hosts.filter(|h| !input.is_member(h)) {
        if input.is_stale(h) {
            let mut r = cluster_action(
                step,
                format!(
                    "reset {}: an interrupted join left kubeadm's files, but it is no node",
                    h.name
                ),
                Op::ResetStale,
            );
            r.host = Some(h.name.clone());
            out.push(r);
        }
        let mut a = cluster_action(step, format!("kubeadm join {} {what}", h.name), op.clone());
        a.host = Some(h.name.clone());
        out.push(a);
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
    fn overlapping_waits_count_once() {
        let s = Stats::default();
        let started = Instant::now();
        {
            let _a = s.wait();
            std::thread::sleep(Duration::from_millis(60));
            let _b = s.wait(); // a parallel join, inside the first
            std::thread::sleep(Duration::from_millis(60));
        }
        let elapsed = started.elapsed();
        let waited = *s.waited.lock().unwrap();
        assert!(waited >= Duration::from_millis(120), "{waited:?}");
        assert!(waited <= elapsed, "{waited:?} > wall {elapsed:?}");
        std::thread::sleep(Duration::from_millis(30)); // not waiting: not counted
        {
            let _c = s.wait();
            std::thread::sleep(Duration::from_millis(20));
        }
        let total = *s.waited.lock().unwrap();
        assert!(total >= waited + Duration::from_millis(20));
        assert!(
            total < started.elapsed() - Duration::from_millis(25),
            "{total:?}"
        );
    }

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
