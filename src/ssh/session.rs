//! One SSH connection to one host (russh), reused for every command and file of a run.

use super::auth::Credentials;
use super::known_hosts::{self, KnownHosts, Verdict};
use super::resolve::Target;
use super::{ConnectOptions, SshError};
use crate::util::shell_quote;
use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::{ChannelMsg, Disconnect};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Checks the server's host key against known_hosts and records why it refused.
struct ClientHandler {
    name: String,
    host: String,
    port: u16,
    known: Arc<KnownHosts>,
    record_to: Option<PathBuf>,
    accept_new: bool,
    problem: Arc<std::sync::Mutex<Option<SshError>>>,
}

impl ClientHandler {
    fn refuse(&self, e: SshError) -> Result<bool, russh::Error> {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        Ok(false)
    }
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let addr = known_hosts::host_name(&self.host, self.port);
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return self.refuse(SshError::HostCertificate {
                host: self.name.clone(),
                addr,
            });
        };
        let algorithm = key.algorithm().to_string();
        let fingerprint = known_hosts::fingerprint(key);
        let verdict = match self.known.check(&self.host, self.port, key) {
            Verdict::Unknown if self.accept_new => {
                let Some(file) = self.record_to.clone() else {
                    return self.refuse(SshError::KnownHosts {
                        host: self.name.clone(),
                        message: "no known_hosts file to record new host keys in".into(),
                    });
                };
                // append re-reads the file under its lock: another writer may have recorded
                // this host meanwhile
                match known_hosts::append(&file, &self.host, self.port, key) {
                    Ok(known_hosts::Appended::Recorded) => {
                        tracing::warn!(
                            "{}: recorded new host key of {addr} in {}: {algorithm} {fingerprint}",
                            self.name,
                            file.display()
                        );
                        return Ok(true);
                    }
                    Ok(known_hosts::Appended::AlreadyRecorded(line)) => {
                        tracing::debug!(
                            "{}: host key of {addr} was recorded meanwhile at {line}",
                            self.name
                        );
                        return Ok(true);
                    }
                    Ok(known_hosts::Appended::Refused(v)) => v,
                    Err(e) => {
                        return self.refuse(SshError::RecordHostKey {
                            host: self.name.clone(),
                            addr,
                            file,
                            message: e.to_string(),
                        });
                    }
                }
            }
            v => v,
        };
        match verdict {
            Verdict::Trusted(_) => Ok(true),
            Verdict::Unknown => self.refuse(SshError::UnknownHostKey {
                host: self.name.clone(),
                addr,
                algorithm,
                fingerprint,
                known_hosts: self.record_to.clone().unwrap_or_default(),
            }),
            Verdict::Changed {
                line,
                known_algorithms,
            } => self.refuse(SshError::HostKeyChanged {
                host: self.name.clone(),
                addr,
                algorithm,
                fingerprint,
                line: line.to_string(),
                known: known_algorithms.join(", "),
            }),
            Verdict::Revoked(line) => self.refuse(SshError::HostKeyRevoked {
                host: self.name.clone(),
                addr,
                fingerprint,
                line: line.to_string(),
            }),
        }
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// How to run one command.
#[derive(Debug, Clone, Default)]
pub struct Exec<'a> {
    /// Run as root (through `sudo -n` for other users). Default: true.
    pub unprivileged: bool,
    pub stdin: Option<&'a [u8]>,
    /// Default: the connector's command timeout.
    pub timeout: Option<Duration>,
    /// What to call the command in messages, when the script itself holds something secret.
    pub display: Option<&'a str>,
    /// The script holds a secret (a join token, a certificate key): it is sent over the
    /// channel's stdin to `sh -s`, so it never appears on a command line that sudo logs or that
    /// `ps` shows. Not combinable with `stdin`.
    pub secret: bool,
    /// The most stdout, and separately stderr, kept in memory. Default: [`MAX_OUTPUT`]. Past it
    /// the command is stopped and the call fails with [`SshError::OutputTooLarge`].
    pub max_output: Option<u64>,
}

/// How much of a command's stdout (and, separately, stderr) is kept by default: a host that
/// prints without end cannot exhaust this machine's memory.
pub const MAX_OUTPUT: u64 = 16 << 20;

/// The limit for [`Session::read_file`] through `cat` (sudo users): certificates and
/// kubeconfigs are far smaller.
pub const MAX_FILE: u64 = 64 << 20;

/// The limit for an archive of a data directory read through a command (the etcd data
/// directory when etcd offers no snapshot API): etcd's largest supported backend quota.
pub const MAX_ARCHIVE: u64 = 8 << 30;

/// `16 MiB`, `8 GiB`, `1000 bytes`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// The environment every script runs in: a PATH that finds /usr/local and sbin tools, and the
/// C locale so output can be parsed.
const PRELUDE: &str =
    "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C; ";

/// An open connection to one host.
pub struct Session {
    pub target: Target,
    handle: Handle<ClientHandler>,
    /// Keeps the bastion connection alive while this one tunnels through it.
    _jump: Option<Arc<Session>>,
    sftp: tokio::sync::OnceCell<SftpSession>,
    command_timeout: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target.describe())
            .finish()
    }
}

fn short(script: &str) -> String {
    let first = script.trim().lines().next().unwrap_or_default();
    let mut s: String = first.chars().take(100).collect();
    if s.len() < first.len() || script.trim().lines().count() > 1 {
        s.push_str(" …");
    }
    s
}

/// A name part nobody can guess (temporary files in /tmp are created with O_EXCL, so a guess
/// would only make the upload fail); `None` when the system has no random source.
fn random_suffix() -> Option<String> {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).ok()?;
    Some(hex::encode(b))
}

/// `ssh-rsa`: an RSA signature over SHA-1.
fn is_sha1_rsa(a: &russh::keys::Algorithm) -> bool {
    matches!(a, russh::keys::Algorithm::Rsa { hash: None })
}

/// What a failed handshake means: a host that can only sign its host key with ssh-rsa (SHA-1)
/// is named as such, not as a bare "no common algorithm".
fn handshake_error(host: &str, addr: &str, e: russh::Error) -> SshError {
    if let russh::Error::NoCommonAlgo {
        kind: russh::AlgorithmKind::Key,
        theirs,
        ..
    } = &e
        && theirs.iter().any(|a| a == "ssh-rsa")
    {
        return SshError::Sha1HostKeySignature {
            host: host.to_string(),
            addr: addr.to_string(),
            offered: theirs.join(", "),
        };
    }
    SshError::Connect {
        host: host.to_string(),
        addr: addr.to_string(),
        message: e.to_string(),
    }
}

/// Opens connections: owns the run's options, credentials, and the bastion connections that
/// several hosts share.
pub struct Connector {
    pub options: ConnectOptions,
    creds: Credentials,
    jumps: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Session>>>>>,
}

impl Connector {
    pub fn new(options: ConnectOptions) -> Self {
        Connector {
            creds: Credentials::new(options.interactive),
            options,
            jumps: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn client_config(&self, preferred_keys: Vec<russh::keys::Algorithm>) -> Arc<client::Config> {
        let mut preferred = russh::Preferred::default();
        // the host keys known_hosts records for this host first (as OpenSSH orders its
        // HostKeyAlgorithms), then russh's defaults; never ssh-rsa, whose signatures use SHA-1
        // (OpenSSH refuses it by default since 8.8): an RSA host key is accepted when it signs
        // with rsa-sha2-512 or rsa-sha2-256
        let mut keys: Vec<russh::keys::Algorithm> = Vec::new();
        for a in preferred_keys.iter().chain(preferred.key.iter()) {
            if !is_sha1_rsa(a) && !keys.contains(a) {
                keys.push(a.clone());
            }
        }
        preferred.key = keys.into();
        Arc::new(client::Config {
            keepalive_interval: Some(self.options.keepalive_interval),
            keepalive_max: self.options.keepalive_max,
            inactivity_timeout: None,
            nodelay: true,
            preferred,
            ..Default::default()
        })
    }

    /// The shared connection to a bastion, opened once.
    fn jump<'a>(
        &'a self,
        target: &'a Target,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Arc<Session>, SshError>> + Send + 'a>> {
        Box::pin(async move {
            let cell = {
                let mut map = self.jumps.lock().await;
                map.entry(target.describe()).or_default().clone()
            };
            cell.get_or_try_init(|| async { self.open(target, false).await.map(Arc::new) })
                .await
                .cloned()
        })
    }

    /// Connects and authenticates; for a non-root user, also checks that `sudo -n` works.
    pub async fn connect(&self, target: &Target) -> Result<Session, SshError> {
        self.open(target, true).await
    }

    /// Connects and authenticates. A bastion only forwards connections: its user needs no
    /// sudo (and often has no shell), so `as_root` is false for it.
    async fn open(&self, target: &Target, as_root: bool) -> Result<Session, SshError> {
        let name = target.name.clone();
        let addr = format!("{}:{}", target.host, target.port);
        let known = KnownHosts::load(&target.known_hosts).map_err(|e| SshError::KnownHosts {
            host: name.clone(),
            message: e.to_string(),
        })?;
        for skipped in &known.skipped {
            tracing::debug!("known_hosts line {skipped} skipped (unsupported key type or format)");
        }
        let config = self.client_config(known.algorithms_for(&target.host, target.port));
        let problem = Arc::new(std::sync::Mutex::new(None));
        let handler = ClientHandler {
            name: name.clone(),
            host: target.host.clone(),
            port: target.port,
            known: Arc::new(known),
            record_to: target.known_hosts.first().cloned(),
            accept_new: self.options.accept_new_host_keys,
            problem: problem.clone(),
        };
        let timeout = target.connect_timeout;
        let jump = match &target.jump {
            Some(j) => Some(self.jump(j).await.map_err(|e| SshError::Connect {
                host: name.clone(),
                addr: addr.clone(),
                message: format!("through {}: {e}", j.name),
            })?),
            None => None,
        };
        let handshake = async {
            let connect_err = |message: String| SshError::Connect {
                host: name.clone(),
                addr: addr.clone(),
                message,
            };
            match &jump {
                Some(j) => {
                    let ch = j
                        .handle
                        .channel_open_direct_tcpip(
                            target.host.clone(),
                            target.port as u32,
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| {
                            connect_err(format!(
                                "{} cannot open a tunnel to it: {e}",
                                j.target.name
                            ))
                        })?;
                    client::connect_stream(config, ch.into_stream(), handler)
                        .await
                        .map_err(|e| handshake_error(&name, &addr, e))
                }
                None => {
                    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
                        .await
                        .map_err(|e| connect_err(e.to_string()))?;
                    // latency only: a socket without TCP_NODELAY still works
                    let _ = tcp.set_nodelay(true);
                    client::connect_stream(config, tcp, handler)
                        .await
                        .map_err(|e| handshake_error(&name, &addr, e))
                }
            }
        };
        let result = tokio::time::timeout(timeout, handshake).await;
        let taken = problem.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(p) = taken {
            return Err(p);
        }
        let mut handle = match result {
            Err(_) => {
                return Err(SshError::ConnectTimeout {
                    host: name,
                    addr,
                    timeout,
                });
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(h)) => h,
        };
        self.creds.authenticate(&mut handle, target).await?;
        let session = Session {
            target: target.clone(),
            handle,
            _jump: jump,
            sftp: tokio::sync::OnceCell::new(),
            command_timeout: self.options.command_timeout,
        };
        if as_root && session.needs_sudo() {
            let out = session
                .exec_raw(
                    "sudo -n true",
                    None,
                    Duration::from_secs(30),
                    "sudo -n true",
                    MAX_OUTPUT,
                )
                .await?;
            if !out.success() {
                let said = out.stderr().trim().to_string();
                let message = if said.contains("password") {
                    format!(
                        "passwordless sudo is required (sudo -n said: {said}); allow it with a line `{} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/",
                        target.user
                    )
                } else {
                    format!("`sudo -n true` failed: {said}")
                };
                return Err(SshError::Sudo {
                    host: session.target.name.clone(),
                    user: target.user.clone(),
                    message,
                });
            }
        }
        Ok(session)
    }
}

impl Session {
    pub fn name(&self) -> &str {
        &self.target.name
    }

    fn needs_sudo(&self) -> bool {
        self.target.user != "root"
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs a command line as given (no wrapping), collecting stdout, stderr and exit status.
    /// Past `max_output` bytes of stdout or of stderr the channel is closed (the host's sshd
    /// then closes the command's pipes, and its next write ends it) and the call fails.
    pub async fn exec_raw(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        display: &str,
        max_output: u64,
    ) -> Result<ExecOutput, SshError> {
        let host = self.name().to_string();
        let lost = |_| SshError::Disconnected {
            host: host.clone(),
            command: Some(display.to_string()),
        };
        let work = async {
            let mut ch = self.handle.channel_open_session().await.map_err(lost)?;
            ch.exec(true, command).await.map_err(lost)?;
            if let Some(data) = stdin {
                ch.data(data).await.map_err(lost)?;
            }
            ch.eof().await.map_err(lost)?;
            let mut out = ExecOutput::default();
            let mut status = None;
            let mut signal = None;
            // OpenSSH may send the exit status after EOF: read until the channel closes
            while let Some(msg) = ch.wait().await {
                let (kept, data, stream) = match msg {
                    ChannelMsg::Data { data } => (&mut out.stdout, data, "output"),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        (&mut out.stderr, data, "error output")
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = Some(exit_status);
                        continue;
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        signal = Some(format!("{signal_name:?}"));
                        continue;
                    }
                    _ => continue,
                };
                if (kept.len() + data.len()) as u64 > max_output {
                    // a host that prints without end must not exhaust this machine: stop here
                    // the call fails with OutputTooLarge either way; closing only stops it
                    let _ = ch.close().await;
                    return Err(SshError::OutputTooLarge {
                        host: host.clone(),
                        command: display.to_string(),
                        stream,
                        limit: max_output,
                    });
                }
                kept.extend_from_slice(&data);
            }
            match status {
                Some(s) => {
                    out.status = s;
                    Ok(out)
                }
                None if self.handle.is_closed() => Err(SshError::Disconnected {
                    host: host.clone(),
                    command: Some(display.to_string()),
                }),
                None => Err(SshError::NoExitStatus {
                    host: host.clone(),
                    command: display.to_string(),
                    signal,
                }),
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(SshError::CommandTimeout {
                host,
                command: display.to_string(),
                timeout,
            }),
        }
    }

    /// Runs a shell script (POSIX sh), as root unless `opts.unprivileged`.
    pub async fn exec_with(&self, script: &str, opts: Exec<'_>) -> Result<ExecOutput, SshError> {
        let full = format!("{PRELUDE}{script}\n");
        let (shell, stdin) = if opts.secret {
            debug_assert!(opts.stdin.is_none(), "a secret script takes stdin");
            ("sh -s".to_string(), Some(full.as_bytes()))
        } else {
            (format!("sh -c {}", shell_quote(&full)), opts.stdin)
        };
        // the host ends the command a little after we give up on it (a dropped channel does not
        // stop a process without a terminal): a timed-out kubeadm does not run on behind a retry
        let limit = opts.timeout.unwrap_or(self.command_timeout);
        let shell = format!("timeout -k 5 {} {shell}", limit.as_secs().saturating_add(5));
        let command = if !opts.unprivileged && self.needs_sudo() {
            format!("sudo -n -- {shell}")
        } else {
            shell
        };
        let shown = opts
            .display
            .map(str::to_string)
            .unwrap_or_else(|| short(script));
        tracing::debug!("{}: run {}", self.name(), shown);
        self.exec_raw(
            &command,
            stdin,
            limit,
            &shown,
            opts.max_output.unwrap_or(MAX_OUTPUT),
        )
        .await
    }

    /// Runs a script as root; any exit status is returned.
    pub async fn exec(&self, script: &str) -> Result<ExecOutput, SshError> {
        self.exec_with(script, Exec::default()).await
    }

    /// Runs a script as root and requires exit status 0; returns stdout.
    pub async fn run(&self, script: &str) -> Result<String, SshError> {
        self.run_with(script, Exec::default()).await
    }

    pub async fn run_with(&self, script: &str, opts: Exec<'_>) -> Result<String, SshError> {
        let display = opts
            .display
            .map(str::to_string)
            .unwrap_or_else(|| short(script));
        let out = self.exec_with(script, opts).await?;
        if !out.success() {
            return Err(SshError::CommandFailed {
                host: self.name().to_string(),
                command: display,
                status: out.status,
                stderr: out.stderr(),
            });
        }
        Ok(out.stdout())
    }

    async fn sftp(&self) -> Result<&SftpSession, SshError> {
        self.sftp
            .get_or_try_init(|| async {
                let err = |m: String| SshError::File {
                    host: self.name().to_string(),
                    op: "open SFTP session for",
                    path: String::new(),
                    message: m,
                };
                let ch = self
                    .handle
                    .channel_open_session()
                    .await
                    .map_err(|e| err(e.to_string()))?;
                ch.request_subsystem(true, "sftp")
                    .await
                    .map_err(|e| err(e.to_string()))?;
                let s = SftpSession::new(ch.into_stream())
                    .await
                    .map_err(|e| err(e.to_string()))?;
                s.set_timeout(30);
                Ok(s)
            })
            .await
    }

    /// Uploads a file atomically: written to a temporary file beside (or, for sudo users, in
    /// /tmp and copied beside) the destination, given its mode and owner, then renamed over it.
    /// A reader never sees a partial file.
    pub async fn upload(
        &self,
        source: Upload<'_>,
        dest: &str,
        mode: u32,
        owner: &str,
    ) -> Result<(), SshError> {
        let host = self.name().to_string();
        let file_err = |op: &'static str, message: String| SshError::File {
            host: host.clone(),
            op,
            path: dest.to_string(),
            message,
        };
        let (dir, base) = match dest.rsplit_once('/') {
            Some((d, b)) if !b.is_empty() => (if d.is_empty() { "/" } else { d }, b),
            _ => {
                return Err(file_err(
                    "upload",
                    "destination must be an absolute file path".into(),
                ));
            }
        };
        // two names nobody can guess: the temporary file and, for sudo users, the staged copy
        let (Some(tmp_suffix), Some(staged_suffix)) = (random_suffix(), random_suffix()) else {
            return Err(file_err(
                "upload",
                "no random source on this machine for a temporary name".into(),
            ));
        };
        let sftp = self.sftp().await?;
        let tmp = if self.needs_sudo() {
            format!("/tmp/.kubeforge-{tmp_suffix}")
        } else {
            format!("{dir}/.{base}.kubeforge-{tmp_suffix}")
        };
        let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE | OpenFlags::EXCLUDE;
        // created 0600, so a secret (a kubeadm config with a join token) is never readable by
        // others while it is written; the final mode is set before the rename
        let private = || {
            let mut a = FileAttributes::empty();
            a.permissions = Some(0o600);
            a
        };
        let mut file = match sftp
            .open_with_flags_and_attributes(tmp.clone(), flags, private())
            .await
        {
            Ok(f) => f,
            Err(_) if !self.needs_sudo() => {
                self.run(&format!("mkdir -p {}", shell_quote(dir))).await?;
                sftp.open_with_flags_and_attributes(tmp.clone(), flags, private())
                    .await
                    .map_err(|e| file_err("create", e.to_string()))?
            }
            Err(e) => return Err(file_err("create", e.to_string())),
        };
        let written = async {
            match source {
                Upload::Bytes(b) => file.write_all(b).await?,
                Upload::File(p) => {
                    let mut f = tokio::fs::File::open(p).await?;
                    tokio::io::copy(&mut f, &mut file).await?;
                }
            }
            file.shutdown().await
        }
        .await;
        if let Err(e) = written {
            if let Err(r) = sftp.remove_file(tmp.clone()).await {
                tracing::warn!("{host}: cannot remove the partial upload {tmp}: {r}");
            }
            return Err(file_err("write", e.to_string()));
        }
        let (q_tmp, q_dest, q_dir) = (shell_quote(&tmp), shell_quote(dest), shell_quote(dir));
        let owner = shell_quote(owner);
        let script = if self.needs_sudo() {
            let staged = shell_quote(&format!("{dir}/.{base}.kubeforge-{staged_suffix}"));
            format!(
                "mkdir -p {q_dir} && (umask 077 && cp {q_tmp} {staged}) && chmod {mode:o} {staged} && chown {owner} {staged} && mv -f {staged} {q_dest}; rc=$?; rm -f {q_tmp} {staged}; exit $rc"
            )
        } else {
            format!(
                "chmod {mode:o} {q_tmp} && chown {owner} {q_tmp} && mv -f {q_tmp} {q_dest} || {{ rc=$?; rm -f {q_tmp}; exit $rc; }}"
            )
        };
        self.run_with(
            &script,
            Exec {
                display: Some(&format!("install {dest}")),
                ..Exec::default()
            },
        )
        .await
        .map(|_| ())
    }

    /// Reads a whole file (as root).
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, SshError> {
        if self.needs_sudo() {
            let out = self
                .exec_with(
                    &format!("cat -- {}", shell_quote(path)),
                    Exec {
                        display: Some(&format!("read {path}")),
                        max_output: Some(MAX_FILE),
                        ..Exec::default()
                    },
                )
                .await?;
            if !out.success() {
                return Err(SshError::File {
                    host: self.name().to_string(),
                    op: "read",
                    path: path.to_string(),
                    message: out.stderr().trim().to_string(),
                });
            }
            return Ok(out.stdout);
        }
        // at most MAX_FILE bytes, as through `cat` above: a host whose file is /dev/zero or
        // huge is an error, never an unbounded read
        use tokio::io::AsyncReadExt as _;
        let err = |message: String| SshError::File {
            host: self.name().to_string(),
            op: "read",
            path: path.to_string(),
            message,
        };
        let file = self
            .sftp()
            .await?
            .open(path.to_string())
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut data = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut data)
            .await
            .map_err(|e| err(e.to_string()))?;
        if data.len() as u64 > MAX_FILE {
            return Err(SshError::OutputTooLarge {
                host: self.name().to_string(),
                command: format!("read {path}"),
                stream: "output",
                limit: MAX_FILE,
            });
        }
        Ok(data)
    }

    /// A TCP connection from the host to `host:port` (as seen from the host), tunnelled over
    /// this SSH connection: talks to services bound to the host's loopback.
    pub async fn tunnel(
        &self,
        host: &str,
        port: u16,
    ) -> Result<russh::ChannelStream<russh::client::Msg>, SshError> {
        let ch = self
            .handle
            .channel_open_direct_tcpip(host.to_string(), port as u32, "127.0.0.1", 0)
            .await
            .map_err(|e| SshError::Connect {
                host: self.name().to_string(),
                addr: format!("{host}:{port} (tunnelled)"),
                message: e.to_string(),
            })?;
        Ok(ch.into_stream())
    }

    pub async fn close(&self) {
        // the work is done: a connection already gone cannot be disconnected, and need not be
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "kubeforge done", "en")
            .await;
    }
}

/// What to upload.
#[derive(Debug, Clone, Copy)]
pub enum Upload<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::{Algorithm, HashAlg};

    #[test]
    fn ssh_rsa_sha1_host_key_signatures_are_never_offered() {
        let c = Connector::new(ConnectOptions::default());
        let sha512 = Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        };
        let sha256 = Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        };
        // russh's defaults, and the order known_hosts asks for (an RSA key recorded first)
        for asked in [vec![], vec![Algorithm::Rsa { hash: None }, sha256.clone()]] {
            let keys = c.client_config(asked.clone()).preferred.key.to_vec();
            assert!(!keys.iter().any(is_sha1_rsa), "ssh-rsa offered: {keys:?}");
            assert!(keys.contains(&sha512) && keys.contains(&sha256), "{keys:?}");
            assert!(keys.contains(&Algorithm::Ed25519), "{keys:?}");
            if !asked.is_empty() {
                assert_eq!(keys[0], sha256, "known_hosts' choice first: {keys:?}");
            }
        }
    }

    #[test]
    fn a_host_offering_only_ssh_rsa_is_named_as_such() {
        let e = handshake_error(
            "node1",
            "10.0.0.1:2222",
            russh::Error::NoCommonAlgo {
                kind: russh::AlgorithmKind::Key,
                ours: vec!["ssh-ed25519".into(), "rsa-sha2-512".into()],
                theirs: vec!["ssh-rsa".into()],
            },
        );
        assert!(matches!(e, SshError::Sha1HostKeySignature { .. }));
        let m = e.to_string();
        assert!(
            m.starts_with("node1: 10.0.0.1:2222 signs its host key only with ssh-rsa; kubeforge refuses ssh-rsa (SHA-1) host-key signatures"),
            "{m}"
        );
        // any other failure stays a connection error
        let e = handshake_error("node1", "10.0.0.1:22", russh::Error::KexInit);
        assert!(matches!(e, SshError::Connect { .. }), "{e}");
    }

    #[test]
    fn every_failure_has_its_kind() {
        use crate::error::ErrorKind;
        let h = || "node1".to_string();
        let sha1 = handshake_error(
            "node1",
            "10.0.0.1:22",
            russh::Error::NoCommonAlgo {
                kind: russh::AlgorithmKind::Key,
                ours: vec![],
                theirs: vec!["ssh-rsa".into()],
            },
        );
        let cases = [
            (
                handshake_error("node1", "10.0.0.1:22", russh::Error::KexInit),
                ErrorKind::Unreachable,
            ),
            (
                SshError::ConnectTimeout {
                    host: h(),
                    addr: "a".into(),
                    timeout: Duration::from_secs(3),
                },
                ErrorKind::Unreachable,
            ),
            (
                SshError::Disconnected {
                    host: h(),
                    command: None,
                },
                ErrorKind::Unreachable,
            ),
            (
                SshError::HostKeyChanged {
                    host: h(),
                    addr: "a".into(),
                    algorithm: "ssh-ed25519".into(),
                    fingerprint: "SHA256:x".into(),
                    line: "kh:1".into(),
                    known: "ssh-ed25519".into(),
                },
                ErrorKind::Auth,
            ),
            (
                SshError::Auth {
                    host: h(),
                    user: "root".into(),
                    addr: "a".into(),
                    tried: "x".into(),
                },
                ErrorKind::Auth,
            ),
            (
                SshError::Sudo {
                    host: h(),
                    user: "u".into(),
                    message: "m".into(),
                },
                ErrorKind::Auth,
            ),
            (sha1, ErrorKind::Policy),
            (
                SshError::HostCertificate {
                    host: h(),
                    addr: "a".into(),
                },
                ErrorKind::Policy,
            ),
            (
                SshError::KnownHosts {
                    host: h(),
                    message: "m".into(),
                },
                ErrorKind::Local,
            ),
            (
                SshError::CommandFailed {
                    host: h(),
                    command: "false".into(),
                    status: 1,
                    stderr: String::new(),
                },
                ErrorKind::RemoteFailed,
            ),
            (
                SshError::CommandTimeout {
                    host: h(),
                    command: "sleep".into(),
                    timeout: Duration::from_secs(1),
                },
                ErrorKind::RemoteFailed,
            ),
            (
                SshError::NotReady {
                    host: h(),
                    message: "m".into(),
                },
                ErrorKind::RemoteFailed,
            ),
            (
                SshError::Parse {
                    host: h(),
                    what: "kubectl get nodes",
                    message: "m".into(),
                },
                ErrorKind::Parse,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.host(), "node1");
            assert_eq!(
                e.is_unreachable(),
                kind.is_unreachable()
                    || matches!(
                        e,
                        SshError::HostCertificate { .. }
                            | SshError::KnownHosts { .. }
                            | SshError::Sha1HostKeySignature { .. }
                    ),
                "{e}"
            );
        }
        // the texts users see stay as they were
        assert_eq!(
            SshError::HostCertificate {
                host: h(),
                addr: "10.0.0.1:22".into()
            }
            .to_string(),
            "node1: SSH protocol error: 10.0.0.1:22 presented a host certificate; kubeforge verifies plain host keys"
        );
        assert_eq!(
            SshError::KnownHosts {
                host: h(),
                message: "no known_hosts file to record new host keys in".into()
            }
            .to_string(),
            "node1: no known_hosts file to record new host keys in"
        );
    }

    #[test]
    fn output_limits_are_spelled_in_units() {
        assert_eq!(format_bytes(MAX_OUTPUT), "16 MiB");
        assert_eq!(format_bytes(MAX_ARCHIVE), "8 GiB");
        assert_eq!(format_bytes(1000), "1000 bytes");
        let e = SshError::OutputTooLarge {
            host: "node1".into(),
            command: "head -c 100000000 /dev/zero".into(),
            stream: "output",
            limit: MAX_OUTPUT,
        };
        assert_eq!(
            e.to_string(),
            "node1: output of `head -c 100000000 /dev/zero` exceeded 16 MiB; the command was stopped"
        );
        assert!(!e.is_unreachable());
    }
}
