//! OpenSSH known_hosts files: plain and hashed (`|1|salt|hash`) host patterns, `[host]:port`,
//! wildcards and negation, `@revoked` markers, several files, tab or space separators.
//! `@cert-authority` lines are recognised and skipped (host certificates are not accepted).
//!
//! A host is *known* when a line for it carries the key it presented; its key has *changed* when
//! lines for it exist but none carries that key. Changed keys are always refused.

use russh::keys::ssh_key::{HashAlg, PublicKey};
use russh::keys::{Algorithm, parse_public_key_base64};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone)]
enum Patterns {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    List(Vec<(bool, String)>),
}

#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    line: usize,
    marker: Marker,
    patterns: Patterns,
    key: PublicKey,
}

/// Where a line is, for messages: `~/.ssh/known_hosts:12`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRef {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for LineRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host carries this key.
    Trusted(LineRef),
    /// No line names this host.
    Unknown,
    /// Lines name this host, but none carries this key; `line` is the first of them.
    Changed {
        line: LineRef,
        known_algorithms: Vec<String>,
    },
    /// The key is marked `@revoked`.
    Revoked(LineRef),
}

#[derive(Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    /// Lines that could not be read (unsupported key types, garbage), for debug logs.
    pub skipped: Vec<LineRef>,
}

static APPEND_LOCK: Mutex<()> = Mutex::new(());

/// The name a host is recorded under: `host` on port 22, else `[host]:port`.
/// Host names compare case-insensitively, as in OpenSSH (which lowercases them).
pub fn host_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// `SHA256:...`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// OpenSSH wildcard match: `*` any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn hmac_sha1(salt: &[u8], msg: &str) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
    ring::hmac::sign(&key, msg.as_bytes()).as_ref().to_vec()
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

impl Patterns {
    fn matches(&self, name: &str) -> bool {
        match self {
            Patterns::Hashed { salt, hash } => hmac_sha1(salt, name) == *hash,
            Patterns::List(list) => {
                let mut matched = false;
                for (negated, pattern) in list {
                    if wildcard_match(&pattern.to_ascii_lowercase(), name) {
                        if *negated {
                            return false;
                        }
                        matched = true;
                    }
                }
                matched
            }
        }
    }
}

impl KnownHosts {
    /// Reads the given files in order; missing files are skipped.
    pub fn load(files: &[PathBuf]) -> std::io::Result<Self> {
        let mut kh = KnownHosts::default();
        for f in files {
            match std::fs::read_to_string(f) {
                Ok(text) => kh.parse(f, &text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot read known_hosts file {}: {e}", f.display()),
                    ));
                }
            }
        }
        Ok(kh)
    }

    pub fn parse(&mut self, file: &Path, text: &str) {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = LineRef {
                file: file.to_path_buf(),
                line: i + 1,
            };
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let marker = match first {
                "@revoked" => Marker::Revoked,
                "@cert-authority" => Marker::CertAuthority,
                _ => Marker::None,
            };
            if marker != Marker::None {
                first = fields.next().unwrap_or_default();
            }
            let (Some(_key_type), Some(key_b64)) = (fields.next(), fields.next()) else {
                self.skipped.push(at);
                continue;
            };
            let patterns = if let Some(rest) = first.strip_prefix("|1|") {
                let mut parts = rest.split('|');
                match (parts.next().and_then(b64), parts.next().and_then(b64)) {
                    (Some(salt), Some(hash)) => Patterns::Hashed { salt, hash },
                    _ => {
                        self.skipped.push(at);
                        continue;
                    }
                }
            } else {
                Patterns::List(
                    first
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| match p.strip_prefix('!') {
                            Some(n) => (true, n.to_string()),
                            None => (false, p.to_string()),
                        })
                        .collect(),
                )
            };
            let Ok(key) = parse_public_key_base64(key_b64) else {
                self.skipped.push(at);
                continue;
            };
            self.entries.push(Entry {
                file: at.file,
                line: at.line,
                marker,
                patterns,
                key,
            });
        }
    }

    fn lines_for<'a>(&'a self, host: &str, port: u16) -> impl Iterator<Item = &'a Entry> + 'a {
        let name = host_name(host, port);
        self.entries
            .iter()
            .filter(move |e| e.marker != Marker::CertAuthority && e.patterns.matches(&name))
    }

    /// Decides whether `key`, presented by `host:port`, is trusted.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let same = |e: &Entry| e.key.key_data() == key.key_data();
        let at = |e: &Entry| LineRef {
            file: e.file.clone(),
            line: e.line,
        };
        // a revoked key is refused whatever host it is presented by
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.marker == Marker::Revoked && same(e))
        {
            return Verdict::Revoked(at(e));
        }
        let lines: Vec<&Entry> = self
            .lines_for(host, port)
            .filter(|e| e.marker == Marker::None)
            .collect();
        if let Some(e) = lines.iter().find(|e| same(e)) {
            return Verdict::Trusted(at(e));
        }
        match lines.first() {
            None => Verdict::Unknown,
            Some(first) => {
                // prefer to point at a line with the same key type
                let line = lines
                    .iter()
                    .find(|e| e.key.algorithm() == key.algorithm())
                    .unwrap_or(first);
                let mut known_algorithms: Vec<String> = lines
                    .iter()
                    .map(|e| e.key.algorithm().to_string())
                    .collect();
                known_algorithms.dedup();
                Verdict::Changed {
                    line: at(line),
                    known_algorithms,
                }
            }
        }
    }

    /// Key algorithms recorded for a host, so the client can ask the server for one it can
    /// verify (as OpenSSH orders its HostKeyAlgorithms).
    pub fn algorithms_for(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        for e in self
            .lines_for(host, port)
            .filter(|e| e.marker == Marker::None)
        {
            let a = e.key.algorithm();
            let algos = if a.clone().is_rsa() {
                vec![
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha256),
                    },
                ]
            } else {
                vec![a]
            };
            for a in algos {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }
}

/// Records a host key the user accepted, as OpenSSH's `accept-new` does: appends a plain line
/// to `file`, creating it (0600, in a 0700 directory) if needed.
pub fn append(file: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let _guard = APPEND_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let openssh = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(format!("cannot encode host key: {e}")))?;
    // drop the comment, keep "type base64"
    let mut parts = openssh.split_whitespace();
    let line = format!(
        "{} {} {}\n",
        host_name(host, port),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)?;
    // one write call: concurrent appenders never interleave within a line
    f.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Keys made with ssh-keygen -t ed25519 / -t ecdsa.
    const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIB/Oe6sTVSzqO0Cj2BhBr4xtLMZ9rdQHtiqzGa6HgAb4";
    const EC: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBG3u4vdfHU08rLWp1XoqW2imuURaeZVjvI/wJNp29fZa5OhhaGoC0FzzecRcMARDBjP6fzDsvLHZNzXI0mxVhUU=";

    fn key(b: &str) -> PublicKey {
        parse_public_key_base64(b).unwrap()
    }

    fn kh(text: &str) -> KnownHosts {
        let mut k = KnownHosts::default();
        k.parse(Path::new("/kh"), text);
        k
    }

    #[test]
    fn plain_entries_ports_and_lists() {
        let k = kh(&format!(
            "# comment\n10.0.0.1,node1 ssh-ed25519 {K1}\n[10.0.0.2]:2222\tssh-ed25519\t{K2} tab separated\n"
        ));
        assert!(matches!(k.check("10.0.0.1", 22, &key(K1)), Verdict::Trusted(l) if l.line == 2));
        assert!(matches!(
            k.check("node1", 22, &key(K1)),
            Verdict::Trusted(_)
        ));
        assert!(matches!(k.check("10.0.0.2", 2222, &key(K2)), Verdict::Trusted(l) if l.line == 3));
        assert_eq!(k.check("10.0.0.2", 22, &key(K2)), Verdict::Unknown);
        assert_eq!(k.check("10.0.0.9", 22, &key(K1)), Verdict::Unknown);
        // names compare case-insensitively, as in OpenSSH
        assert!(matches!(
            k.check("Node1", 22, &key(K1)),
            Verdict::Trusted(_)
        ));
        let upper = kh(&format!(
            "Node2.Example.COM ssh-ed25519 {K1}
"
        ));
        assert!(matches!(
            upper.check("node2.example.com", 22, &key(K1)),
            Verdict::Trusted(_)
        ));
        assert_eq!(host_name("Node1", 2222), "[node1]:2222");
    }

    #[test]
    fn changed_keys_name_the_line() {
        let k = kh(&format!("\n10.0.0.1 ssh-ed25519 {K1}\n"));
        match k.check("10.0.0.1", 22, &key(K2)) {
            Verdict::Changed {
                line,
                known_algorithms,
            } => {
                assert_eq!(line.to_string(), "/kh:2");
                assert_eq!(known_algorithms, vec!["ssh-ed25519"]);
            }
            v => panic!("{v:?}"),
        }
        // only another key type is known: still refused
        let k = kh(&format!("10.0.0.1 ecdsa-sha2-nistp256 {EC}\n"));
        assert!(matches!(
            k.check("10.0.0.1", 22, &key(K1)),
            Verdict::Changed { .. }
        ));
        assert_eq!(k.algorithms_for("10.0.0.1", 22).len(), 1);
    }

    #[test]
    fn hashed_entries() {
        // ssh-keygen -H output for "10.0.0.1": salt and HMAC-SHA1(salt, name)
        use base64::Engine as _;
        let salt = b"0123456789abcdefghij";
        let hash = hmac_sha1(salt, "10.0.0.1");
        let e = base64::engine::general_purpose::STANDARD;
        let k = kh(&format!(
            "|1|{}|{} ssh-ed25519 {K1}\n",
            e.encode(salt),
            e.encode(&hash)
        ));
        assert!(matches!(
            k.check("10.0.0.1", 22, &key(K1)),
            Verdict::Trusted(_)
        ));
        assert_eq!(k.check("10.0.0.2", 22, &key(K1)), Verdict::Unknown);
        // a hash with port
        let hash = hmac_sha1(salt, "[10.0.0.1]:2200");
        let k = kh(&format!(
            "|1|{}|{} ssh-ed25519 {K1}\n",
            e.encode(salt),
            e.encode(&hash)
        ));
        assert!(matches!(
            k.check("10.0.0.1", 2200, &key(K1)),
            Verdict::Trusted(_)
        ));
    }

    #[test]
    fn lines_hashed_by_openssh() {
        // `ssh-keygen -H` output for "10.0.0.1" and "[10.0.0.1]:2200"
        let k = kh(&format!(
            "|1|XYq8lhCP2dXEkvmga8P7kL337YY=|WdfobtRtTWAae3l/XMwLOPn2KiA= ssh-ed25519 {K1}\n\
             |1|TlP+rxnnw0Xhh2KEJT/lBI8vXkQ=|nGOx3B0viq/dZyugZ8dz1BnhPTg= ssh-ed25519 {K1}\n"
        ));
        assert!(matches!(k.check("10.0.0.1", 22, &key(K1)), Verdict::Trusted(l) if l.line == 1));
        assert!(matches!(k.check("10.0.0.1", 2200, &key(K1)), Verdict::Trusted(l) if l.line == 2));
        assert_eq!(k.check("10.0.0.2", 22, &key(K1)), Verdict::Unknown);
        assert!(matches!(
            k.check("10.0.0.1", 22, &key(K2)),
            Verdict::Changed { .. }
        ));
    }

    #[test]
    fn wildcards_negation_markers() {
        let k = kh(&format!(
            "*.example.com,!bad.example.com ssh-ed25519 {K1}\n@revoked * ssh-ed25519 {K2}\n@cert-authority *.ca ssh-ed25519 {K1}\nnot a key line\n"
        ));
        assert!(matches!(
            k.check("a.example.com", 22, &key(K1)),
            Verdict::Trusted(_)
        ));
        assert_eq!(k.check("bad.example.com", 22, &key(K1)), Verdict::Unknown);
        assert!(
            matches!(k.check("a.example.com", 22, &key(K2)), Verdict::Revoked(l) if l.line == 2)
        );
        assert_eq!(
            k.check("x.ca", 22, &key(K1)),
            Verdict::Unknown,
            "CA lines are not host keys"
        );
        assert_eq!(k.skipped.len(), 1);
        assert!(wildcard_match("node?", "node1"));
        assert!(!wildcard_match("node?", "node10"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("10.0.*.1", "10.0.200.1"));
    }

    #[test]
    fn append_records_a_line_that_checks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/known_hosts");
        append(&f, "10.0.0.5", 2222, &key(K1)).unwrap();
        append(&f, "10.0.0.6", 22, &key(K2)).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(
            text,
            format!("[10.0.0.5]:2222 ssh-ed25519 {K1}\n10.0.0.6 ssh-ed25519 {K2}\n")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let k = KnownHosts::load(&[f, dir.path().join("missing")]).unwrap();
        assert!(matches!(
            k.check("10.0.0.5", 2222, &key(K1)),
            Verdict::Trusted(_)
        ));
        assert!(fingerprint(&key(K1)).starts_with("SHA256:"));
    }
}
