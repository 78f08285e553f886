//! The SSH transport: the only way kubeforge touches a host. One connection per host (through
//! a shared bastion connection when there is one), verified host keys, key/agent
//! authentication, `sudo -n` for non-root users, commands with timeouts, atomic SFTP uploads.

pub mod auth;
pub mod config;
pub mod known_hosts;
pub mod resolve;
pub mod session;

pub use resolve::{Resolver, Target};
pub use session::{Connector, ExecOutput, Session};

pub use crate::error::ErrorKind;

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong talking to a host. Every variant names the host.
#[derive(Debug, thiserror::Error, Clone)]
pub enum SshError {
    #[error("{host}: cannot connect to {addr}: {message}")]
    Connect {
        host: String,
        addr: String,
        message: String,
    },
    #[error("{host}: no SSH answer from {addr} within {}s", timeout.as_secs())]
    ConnectTimeout {
        host: String,
        addr: String,
        timeout: Duration,
    },
    #[error(
        "{host}: the host key of {addr} is not known ({algorithm} {fingerprint}); verify it (ssh-keygen -lf on the host) and re-run with --accept-new-host-keys to record it in {}",
        known_hosts.display()
    )]
    UnknownHostKey {
        host: String,
        addr: String,
        algorithm: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    #[error(
        "{host}: HOST KEY CHANGED for {addr}: it presented {algorithm} {fingerprint}, which differs from the key recorded at {line} (known types: {known}). This can be a man-in-the-middle attack; if the host was reinstalled, remove that line (ssh-keygen -R {addr}) and verify the new key"
    )]
    HostKeyChanged {
        host: String,
        addr: String,
        algorithm: String,
        fingerprint: String,
        line: String,
        known: String,
    },
    #[error("{host}: the host key of {addr} ({fingerprint}) is marked @revoked at {line}")]
    HostKeyRevoked {
        host: String,
        addr: String,
        fingerprint: String,
        line: String,
    },
    #[error(
        "{host}: {addr} signs its host key only with {offered}; kubeforge refuses ssh-rsa (SHA-1) host-key signatures. Let its sshd sign with rsa-sha2-512 or rsa-sha2-256 (HostKeyAlgorithms in sshd_config; OpenSSH 7.2 or later does by default), or give it an ed25519 host key"
    )]
    Sha1HostKeySignature {
        host: String,
        addr: String,
        offered: String,
    },
    #[error("{host}: cannot record the host key of {addr} in {}: {message}", file.display())]
    RecordHostKey {
        host: String,
        addr: String,
        file: PathBuf,
        message: String,
    },
    #[error("{host}: authentication failed for {user}@{addr}: {tried}")]
    Auth {
        host: String,
        user: String,
        addr: String,
        tried: String,
    },
    #[error("{host}: cannot use key {}: {message}", path.display())]
    Key {
        host: String,
        path: PathBuf,
        message: String,
    },
    #[error("{host}: user {user} cannot run commands as root: {message}")]
    Sudo {
        host: String,
        user: String,
        message: String,
    },
    #[error("{host}: connection lost{}", if let Some(c) = command { format!(" while running `{c}`") } else { String::new() })]
    Disconnected {
        host: String,
        command: Option<String>,
    },
    #[error("{host}: `{command}` did not finish within {}", crate::util::format_duration(*timeout))]
    CommandTimeout {
        host: String,
        command: String,
        timeout: Duration,
    },
    #[error("{host}: {stream} of `{command}` exceeded {}; the command was stopped", session::format_bytes(*limit))]
    OutputTooLarge {
        host: String,
        command: String,
        /// `output` (stdout) or `error output` (stderr)
        stream: &'static str,
        limit: u64,
    },
    #[error("{host}: `{command}` ended without an exit status{}", signal.as_ref().map(|s| format!(" (killed by signal {s})")).unwrap_or_default())]
    NoExitStatus {
        host: String,
        command: String,
        signal: Option<String>,
    },
    #[error(
        "{host}: `{command}` failed with exit status {status}{}",
        stderr_tail(stderr)
    )]
    CommandFailed {
        host: String,
        command: String,
        status: u32,
        stderr: String,
    },
    #[error("{host}: {op} {path}: {message}")]
    File {
        host: String,
        op: &'static str,
        path: String,
        message: String,
    },
    #[error("{host}: SSH protocol error: {message}")]
    Protocol { host: String, message: String },
    #[error(
        "{host}: SSH protocol error: {addr} presented a host certificate; kubeforge verifies plain host keys"
    )]
    HostCertificate { host: String, addr: String },
    /// This machine's known_hosts files cannot be read, or there is none to record a new key
    /// in.
    #[error("{host}: {message}")]
    KnownHosts { host: String, message: String },
    /// What a command printed could not be understood (`what` names the output).
    #[error("{host}: {message}")]
    Parse {
        host: String,
        what: &'static str,
        message: String,
    },
    /// The host did not reach a state kubeforge waited for (a service that did not come back).
    #[error("{host}: {message}")]
    NotReady { host: String, message: String },
}

fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(6)..];
    format!(": {}", tail.join("\n    "))
}

impl SshError {
    pub fn host(&self) -> &str {
        use SshError::*;
        match self {
            Connect { host, .. }
            | ConnectTimeout { host, .. }
            | UnknownHostKey { host, .. }
            | HostKeyChanged { host, .. }
            | HostKeyRevoked { host, .. }
            | RecordHostKey { host, .. }
            | Sha1HostKeySignature { host, .. }
            | Auth { host, .. }
            | Key { host, .. }
            | Sudo { host, .. }
            | Disconnected { host, .. }
            | CommandTimeout { host, .. }
            | NoExitStatus { host, .. }
            | OutputTooLarge { host, .. }
            | CommandFailed { host, .. }
            | File { host, .. }
            | Protocol { host, .. }
            | HostCertificate { host, .. }
            | KnownHosts { host, .. }
            | Parse { host, .. }
            | NotReady { host, .. } => host,
        }
    }

    /// The kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        use SshError::*;
        match self {
            Connect { .. } | ConnectTimeout { .. } | Disconnected { .. } | Protocol { .. } => {
                ErrorKind::Unreachable
            }
            UnknownHostKey { .. }
            | HostKeyChanged { .. }
            | HostKeyRevoked { .. }
            | Auth { .. }
            | Key { .. }
            | Sudo { .. } => ErrorKind::Auth,
            Sha1HostKeySignature { .. } | HostCertificate { .. } => ErrorKind::Policy,
            RecordHostKey { .. } | KnownHosts { .. } => ErrorKind::Local,
            CommandTimeout { .. }
            | OutputTooLarge { .. }
            | NoExitStatus { .. }
            | CommandFailed { .. }
            | File { .. }
            | NotReady { .. } => ErrorKind::RemoteFailed,
            Parse { .. } => ErrorKind::Parse,
        }
    }

    /// Whether no working connection to the host could be opened at all (as opposed to a
    /// command that ran and failed, or output that could not be parsed): every failure of
    /// [`Connector::connect`] except those of the commands it runs.
    pub fn is_unreachable(&self) -> bool {
        use SshError::*;
        matches!(
            self,
            Connect { .. }
                | ConnectTimeout { .. }
                | UnknownHostKey { .. }
                | HostKeyChanged { .. }
                | HostKeyRevoked { .. }
                | RecordHostKey { .. }
                | Sha1HostKeySignature { .. }
                | Auth { .. }
                | Key { .. }
                | Sudo { .. }
                | Disconnected { .. }
                | HostCertificate { .. }
                | KnownHosts { .. }
        )
    }
}

/// Connection settings shared by every host of a run.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Record unknown host keys (OpenSSH's `StrictHostKeyChecking accept-new`).
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    /// The operator gave `connect_timeout` on the command line: it wins over ~/.ssh/config.
    pub connect_timeout_given: bool,
    pub command_timeout: Duration,
    /// Keepalive probes: the interval, and how many unanswered probes mean the peer is dead.
    pub keepalive_interval: Duration,
    pub keepalive_max: usize,
    /// Ask for key passphrases on the terminal when a key is encrypted and not in the agent.
    pub interactive: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            connect_timeout_given: false,
            command_timeout: Duration::from_secs(600),
            keepalive_interval: Duration::from_secs(3),
            keepalive_max: 2,
            interactive: false,
        }
    }
}
