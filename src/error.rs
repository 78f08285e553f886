//! What kind of failure an error is, across the library's error types: callers decide what to
//! report and whether a retry can help from the kind, never from the message.

/// The kind of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The host could not be reached: connection refused, DNS, no answer in time, the host
    /// went down or the link was cut.
    Unreachable,
    /// The host was reached but the two sides could not trust each other: an unknown, changed
    /// or revoked host key, a refused login, a key that cannot be used, no passwordless sudo.
    Auth,
    /// A command ran on the host and failed: its exit status, a timeout, output past the cap,
    /// a file that could not be read or written there, a service that did not come up.
    RemoteFailed,
    /// The host answered, but what it printed could not be understood.
    Parse,
    /// kubeforge refused on purpose: a host it does not own, ssh-rsa (SHA-1) host-key
    /// signatures, a host certificate it does not verify.
    Policy,
    /// A problem on this machine: its known_hosts file, its configuration.
    Local,
}

impl ErrorKind {
    /// Whether the host itself could not be used at all (reached, or trusted): what a "cannot
    /// reach" report lists.
    pub fn is_unreachable(self) -> bool {
        matches!(self, ErrorKind::Unreachable | ErrorKind::Auth)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Auth => "authentication",
            ErrorKind::RemoteFailed => "remote command failed",
            ErrorKind::Parse => "unparsable remote output",
            ErrorKind::Policy => "refused by policy",
            ErrorKind::Local => "local",
        })
    }
}
