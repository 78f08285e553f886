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

/// `None` for text that is not base64: the caller skips that known_hosts line and lists it in
/// `skipped` (logged when the file is loaded), as OpenSSH ignores lines it cannot read.
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

/// What [`append`] found when it re-read the file under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The host was still unknown: its line was added.
    Recorded,
    /// Another writer recorded this very key meanwhile: nothing was added.
    AlreadyRecorded(LineRef),
    /// Another writer recorded a different key for this host meanwhile (or revoked this one):
    /// nothing was added, and the key must be refused.
    Refused(Verdict),
}

/// How many symbolic links [`resolve_links`] follows (as the kernel's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// The file a path finally names, following symbolic links even to a target that does not
/// exist yet, so known_hosts kept elsewhere (a dotfiles repository) is written where it lives
/// and the link stays a link.
fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// `dir/.name.kubeforge-<random>`, created exclusively (O_CREAT|O_EXCL: never an existing
/// file, never through a planted symlink), 0600 until it is complete.
fn create_temp_beside(file: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = file.parent().unwrap_or(Path::new("."));
    let base = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "known_hosts".into());
    let rng = ring::rand::SystemRandom::new();
    let mut last = None;
    for _ in 0..16 {
        let mut b = [0u8; 8];
        ring::rand::SecureRandom::fill(&rng, &mut b)
            .map_err(|_| std::io::Error::other("no randomness for a temporary file name"))?;
        let tmp = dir.join(format!(".{base}.kubeforge-{}", hex::encode(b)));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cannot create a temporary file")))
}

/// Records a host key the user accepted, as OpenSSH's `accept-new` does, without ever
/// damaging a line already there:
///
/// - writers are serialised: within the process by a mutex, across processes by an advisory
///   lock (`flock`) on a sidecar `<file>.lock`;
/// - under the lock the file is read again: a key another writer recorded meanwhile is not
///   added twice, and a *different* key recorded meanwhile is refused ([`Appended::Refused`]);
/// - the new file (old content, a newline if the last line had none, the new line) is written
///   to a temporary file created exclusively in the same directory, synced, and renamed over
///   the old one: a crash leaves the old file or the new one, never half of one;
/// - the file keeps its mode (a new one is 0600, in a 0700 directory); a symlinked
///   known_hosts is written through to its target.
pub fn append(file: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<Appended> {
    use std::io::Read as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let _guard = APPEND_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let file = resolve_links(file)?;
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

    let mut lock_path = file.clone().into_os_string();
    lock_path.push(".lock");
    // never written to; a symlink there is refused rather than followed
    if std::fs::symlink_metadata(&lock_path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(std::io::Error::other(format!(
            "lock file {} is a symbolic link",
            Path::new(&lock_path).display()
        )));
    }
    let lock = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot open lock file {}: {e}",
                    Path::new(&lock_path).display()
                ),
            )
        })?;
    lock.lock()?;

    // what is there now, under the lock
    let (old, mode) = match std::fs::File::open(&file) {
        Ok(mut f) => {
            let meta = f.metadata()?;
            if !meta.is_file() {
                return Err(std::io::Error::other(format!(
                    "{} is not a regular file",
                    file.display()
                )));
            }
            let mut b = Vec::with_capacity(meta.len() as usize);
            f.read_to_end(&mut b)?;
            (b, meta.permissions().mode() & 0o7777)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0o600),
        Err(e) => return Err(e),
    };
    let mut now = KnownHosts::default();
    now.parse(&file, &String::from_utf8_lossy(&old));
    match now.check(host, port, key) {
        Verdict::Unknown => {}
        Verdict::Trusted(at) => return Ok(Appended::AlreadyRecorded(at)),
        v => return Ok(Appended::Refused(v)),
    }

    let (tmp, mut f) = create_temp_beside(&file)?;
    let written = (|| {
        f.write_all(&old)?;
        if !old.is_empty() && !old.ends_with(b"\n") {
            f.write_all(b"\n")?;
        }
        f.write_all(line.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &file)
    })();
    if let Err(e) = written {
        if let Err(r) = std::fs::remove_file(&tmp) {
            tracing::warn!("cannot remove {}: {r}", tmp.display());
        }
        return Err(e);
    }
    // the rename itself reaches the disk
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all())
    {
        // the key is recorded; only its durability across a crash is in doubt
        tracing::warn!("cannot sync {}: {e}", dir.display());
    }
    drop(lock);
    Ok(Appended::Recorded)
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

    #[test]
    fn append_never_glues_onto_an_unterminated_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts");
        // written by hand or by a tool that drops the final newline
        std::fs::write(&f, format!("# mine\n10.0.0.1 ssh-ed25519 {K1}")).unwrap();
        let _ = append(&f, "10.0.0.6", 22, &key(K2)).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(
            text,
            format!("# mine\n10.0.0.1 ssh-ed25519 {K1}\n10.0.0.6 ssh-ed25519 {K2}\n")
        );
        let k = KnownHosts::load(std::slice::from_ref(&f)).unwrap();
        assert!(k.skipped.is_empty(), "{:?}", k.skipped);
        assert!(
            matches!(k.check("10.0.0.1", 22, &key(K1)), Verdict::Trusted(l) if l.line == 2),
            "the old entry still verifies"
        );
        assert!(matches!(k.check("10.0.0.6", 22, &key(K2)), Verdict::Trusted(l) if l.line == 3));
        // and a host whose key is not K1 is still refused as changed, not "unknown"
        assert!(matches!(
            k.check("10.0.0.1", 22, &key(K2)),
            Verdict::Changed { .. }
        ));
    }

    /// Distinct ed25519 keys for the concurrency test: 32 bytes of key, wrapped as OpenSSH does.
    fn nth_key(i: u8) -> PublicKey {
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&[i; 32]);
        use base64::Engine as _;
        key(&base64::engine::general_purpose::STANDARD.encode(blob))
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".kubeforge-"))
            .collect()
    }

    #[test]
    fn append_from_many_threads_keeps_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts");
        std::fs::write(&f, format!("10.0.0.1 ssh-ed25519 {K1}")).unwrap();
        let threads: Vec<_> = (0..24u8)
            .map(|i| {
                let f = f.clone();
                std::thread::spawn(move || {
                    append(&f, &format!("10.0.1.{i}"), 22, &nth_key(i + 1)).unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), Appended::Recorded);
        }
        let k = KnownHosts::load(std::slice::from_ref(&f)).unwrap();
        assert!(k.skipped.is_empty(), "{:?}", k.skipped);
        assert!(matches!(
            k.check("10.0.0.1", 22, &key(K1)),
            Verdict::Trusted(_)
        ));
        for i in 0..24u8 {
            assert!(
                matches!(
                    k.check(&format!("10.0.1.{i}"), 22, &nth_key(i + 1)),
                    Verdict::Trusted(_)
                ),
                "10.0.1.{i}"
            );
        }
        assert_eq!(std::fs::read_to_string(&f).unwrap().lines().count(), 25);
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
    }

    #[test]
    fn append_waits_for_another_processs_lock_and_then_sees_its_line() {
        // another process (here: another open file description, which flock treats alike)
        // holds the lock and records the same host's key while we wait
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts");
        std::fs::write(&f, format!("10.0.0.1 ssh-ed25519 {K1}\n")).unwrap();
        let other = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.path().join("known_hosts.lock"))
            .unwrap();
        other.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let f2 = f.clone();
        let t = std::thread::spawn(move || {
            tx.send(append(&f2, "10.0.0.7", 22, &key(K2)).unwrap())
                .unwrap()
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "append must wait while another writer holds the lock"
        );
        // the other writer records this host meanwhile, unterminated, and lets go
        let mut text = std::fs::read_to_string(&f).unwrap();
        text.push_str(&format!("10.0.0.7 ssh-ed25519 {K2}"));
        std::fs::write(&f, &text).unwrap();
        other.unlock().unwrap();
        let got = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        t.join().unwrap();
        assert!(
            matches!(&got, Appended::AlreadyRecorded(l) if l.line == 2),
            "{got:?}"
        );
        assert_eq!(std::fs::read_to_string(&f).unwrap(), text, "no duplicate");
    }

    #[test]
    fn append_rereads_and_does_not_duplicate_a_key_recorded_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts");
        // what the connection loaded: nothing for 10.0.0.5
        let loaded = KnownHosts::load(std::slice::from_ref(&f)).unwrap();
        assert_eq!(loaded.check("10.0.0.5", 22, &key(K1)), Verdict::Unknown);
        // another kubeforge records it before we do
        assert_eq!(
            append(&f, "10.0.0.5", 22, &key(K1)).unwrap(),
            Appended::Recorded
        );
        assert!(matches!(
            append(&f, "10.0.0.5", 22, &key(K1)).unwrap(),
            Appended::AlreadyRecorded(l) if l.line == 1
        ));
        assert_eq!(std::fs::read_to_string(&f).unwrap().lines().count(), 1);
    }

    #[test]
    fn append_refuses_a_different_key_recorded_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts");
        let before = format!("10.0.0.5 ssh-ed25519 {K1}\n");
        std::fs::write(&f, &before).unwrap();
        match append(&f, "10.0.0.5", 22, &key(K2)).unwrap() {
            Appended::Refused(Verdict::Changed { line, .. }) => assert_eq!(line.line, 1),
            v => panic!("{v:?}"),
        }
        // revoked meanwhile: refused too
        let revoked = format!("{before}@revoked * ssh-ed25519 {K2}\n");
        std::fs::write(&f, &revoked).unwrap();
        assert!(matches!(
            append(&f, "10.0.0.9", 22, &key(K2)).unwrap(),
            Appended::Refused(Verdict::Revoked(_))
        ));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), revoked, "untouched");
    }

    #[test]
    fn append_writes_through_a_symlinked_known_hosts_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("dotfiles");
        std::fs::create_dir(&real_dir).unwrap();
        let real = real_dir.join("known_hosts");
        std::fs::write(&real, format!("10.0.0.1 ssh-ed25519 {K1}")).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
        let ssh = dir.path().join("ssh");
        std::fs::create_dir(&ssh).unwrap();
        let link = ssh.join("known_hosts");
        std::os::unix::fs::symlink("../dotfiles/known_hosts", &link).unwrap();
        assert_eq!(
            append(&link, "10.0.0.6", 22, &key(K2)).unwrap(),
            Appended::Recorded
        );
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "the link stays a link"
        );
        assert_eq!(
            std::fs::read_to_string(&real).unwrap(),
            format!("10.0.0.1 ssh-ed25519 {K1}\n10.0.0.6 ssh-ed25519 {K2}\n")
        );
        assert_eq!(
            std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o644,
            "the file keeps its mode"
        );
        assert!(leftovers(&real_dir).is_empty() && leftovers(&ssh).is_empty());
        let k = KnownHosts::load(&[link]).unwrap();
        assert!(matches!(
            k.check("10.0.0.1", 22, &key(K1)),
            Verdict::Trusted(_)
        ));
    }
}
