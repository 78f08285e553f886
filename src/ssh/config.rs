//! The parts of OpenSSH's client config (`~/.ssh/config`) kubeforge honours for a host:
//! HostName, User, Port, IdentityFile, IdentitiesOnly, ProxyJump, UserKnownHostsFile,
//! StrictHostKeyChecking, ConnectTimeout. `Host` patterns (wildcards, negation), `Match all` /
//! `Match host`, `Include`, `Key=value` and quoted values are understood; as in OpenSSH, the
//! first value obtained for an option wins (IdentityFile accumulates).

use super::known_hosts::wildcard_match;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// `Host` patterns: (negated, pattern)
    Host(Vec<(bool, String)>),
    All,
    Never,
}

#[derive(Debug, Clone)]
struct Block {
    condition: Condition,
    options: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
    /// The home directory `~` stands for.
    home: Option<PathBuf>,
}

/// The options that apply to one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOptions {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    pub identities_only: bool,
    pub proxy_jump: Option<String>,
    pub user_known_hosts_files: Vec<PathBuf>,
    pub strict_host_key_checking: Option<String>,
    pub connect_timeout: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Splits a config line into words: whitespace or one `=` separates the keyword; double
/// quotes group words.
fn words(line: &str) -> Vec<String> {
    let line = line.trim();
    // "Key=value" and "Key = value"
    let (key, rest) = match line.find(|c: char| c.is_whitespace() || c == '=') {
        Some(i) => (&line[..i], line[i..].trim_start()),
        None => (line, ""),
    };
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let mut out = vec![key.to_string()];
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in rest.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn expand_home(p: &str, home: Option<&Path>) -> PathBuf {
    match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ if p == "~" => home
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(p)),
        _ => PathBuf::from(p),
    }
}

impl SshConfig {
    /// Reads a config file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg = SshConfig::default();
        let home = dirs::home_dir();
        cfg.read_file(path, home.as_deref(), 0)?;
        Ok(cfg)
    }

    fn read_file(
        &mut self,
        path: &Path,
        home: Option<&Path>,
        depth: usize,
    ) -> Result<(), ConfigError> {
        // `/dev/null` is the usual way to say "no configuration" (ssh -F /dev/null)
        if path == Path::new("/dev/null") {
            return Ok(());
        }
        let text = match crate::inventory::read_text_file(path, 4 << 20, "an ssh_config") {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(ConfigError {
                    file: path.to_path_buf(),
                    line: 0,
                    message: e.to_string(),
                });
            }
        };
        self.parse(path, &text, home, depth)
    }

    pub fn parse(
        &mut self,
        file: &Path,
        text: &str,
        home: Option<&Path>,
        depth: usize,
    ) -> Result<(), ConfigError> {
        if self.home.is_none() {
            self.home = home.map(Path::to_path_buf);
        }
        let err = |line: usize, message: String| ConfigError {
            file: file.to_path_buf(),
            line,
            message,
        };
        if depth > 8 {
            return Err(err(0, "Include nested too deeply".into()));
        }
        if self.blocks.is_empty() {
            self.blocks.push(Block {
                condition: Condition::All,
                options: Vec::new(),
            });
        }
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut w = words(line);
            let key = w.remove(0).to_ascii_lowercase();
            match key.as_str() {
                "host" => {
                    let pats = w
                        .into_iter()
                        .map(|p| match p.strip_prefix('!') {
                            Some(n) => (true, n.to_string()),
                            None => (false, p),
                        })
                        .collect();
                    self.blocks.push(Block {
                        condition: Condition::Host(pats),
                        options: Vec::new(),
                    });
                }
                "match" => {
                    let condition = match w.first().map(|s| s.to_ascii_lowercase()).as_deref() {
                        Some("all") => Condition::All,
                        Some("host") if w.len() == 2 => Condition::Host(
                            w[1].split(',')
                                .map(|p| match p.strip_prefix('!') {
                                    Some(n) => (true, n.to_string()),
                                    None => (false, p.to_string()),
                                })
                                .collect(),
                        ),
                        _ => {
                            tracing::debug!(
                                "{}:{}: Match criteria not supported; block ignored",
                                file.display(),
                                i + 1
                            );
                            Condition::Never
                        }
                    };
                    self.blocks.push(Block {
                        condition,
                        options: Vec::new(),
                    });
                }
                "include" => {
                    for pattern in w {
                        let p = expand_home(&pattern, home);
                        let p = if p.is_absolute() {
                            p
                        } else {
                            home.map(|h| h.join(".ssh").join(&p)).unwrap_or(p)
                        };
                        for f in glob_files(&p) {
                            self.read_file(&f, home, depth + 1)?;
                        }
                    }
                }
                _ => {
                    if w.is_empty() {
                        return Err(err(i + 1, format!("`{key}` has no value")));
                    }
                    // as OpenSSH does ("Bad number"): a value that would be ignored is an error
                    let bad = match key.as_str() {
                        "port" => w[0].parse::<u16>().is_err().then_some("a port number"),
                        "connecttimeout" => seconds(&w[0])
                            .is_none()
                            .then_some("a time (seconds, or as 1m30s)"),
                        _ => None,
                    };
                    if let Some(want) = bad {
                        return Err(err(i + 1, format!("`{key}` is {:?}, not {want}", w[0])));
                    }
                    if let Some(b) = self.blocks.last_mut() {
                        b.options.push((key, w));
                    }
                }
            }
        }
        Ok(())
    }

    /// The options for `host` (the name given to ssh, before HostName applies).
    pub fn lookup(&self, host: &str) -> HostOptions {
        let home = self.home.clone();
        let mut o = HostOptions::default();
        let mut seen: Vec<String> = Vec::new();
        for b in &self.blocks {
            let applies = match &b.condition {
                Condition::All => true,
                Condition::Never => false,
                Condition::Host(pats) => {
                    let mut m = false;
                    for (neg, p) in pats {
                        // case-insensitive, as OpenSSH matches Host patterns
                        if wildcard_match(&p.to_ascii_lowercase(), &host.to_ascii_lowercase()) {
                            if *neg {
                                m = false;
                                break;
                            }
                            m = true;
                        }
                    }
                    m
                }
            };
            if !applies {
                continue;
            }
            for (key, values) in &b.options {
                let first = !seen.contains(key);
                let v = values[0].as_str();
                match key.as_str() {
                    "identityfile" => o.identity_files.push(expand_home(
                        &v.replace("%h", host).replace("%%", "%"),
                        home.as_deref(),
                    )),
                    _ if !first => {}
                    "hostname" => o.hostname = Some(v.replace("%h", host).replace("%%", "%")),
                    "user" => o.user = Some(v.to_string()),
                    // checked when parsed
                    "port" => o.port = v.parse().ok(),
                    "identitiesonly" => o.identities_only = v.eq_ignore_ascii_case("yes"),
                    "proxyjump" => {
                        o.proxy_jump = (!v.eq_ignore_ascii_case("none")).then(|| v.to_string())
                    }
                    "userknownhostsfile" => {
                        o.user_known_hosts_files = values
                            .iter()
                            .filter(|v| !v.eq_ignore_ascii_case("none"))
                            .map(|v| expand_home(v, home.as_deref()))
                            .collect()
                    }
                    "stricthostkeychecking" => {
                        o.strict_host_key_checking = Some(v.to_ascii_lowercase())
                    }
                    "connecttimeout" => o.connect_timeout = seconds(v),
                    _ => {}
                }
                if first {
                    seen.push(key.clone());
                }
            }
        }
        o
    }
}

/// An OpenSSH time value in seconds: `30`, `30s`, `1m30s`, `2h` (units s, m, h, d, w).
fn seconds(v: &str) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut n = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            n.push(c);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        let x: u64 = std::mem::take(&mut n).parse().ok()?;
        total = total.checked_add(x.checked_mul(unit)?)?;
    }
    if !n.is_empty() {
        total = total.checked_add(n.parse().ok()?)?;
    }
    Some(total)
}

/// Files matching a path whose last component may hold `*` or `?`, sorted.
fn glob_files(p: &Path) -> Vec<PathBuf> {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains('*') && !name.contains('?') {
        return vec![p.to_path_buf()];
    }
    let dir = p.parent().unwrap_or(Path::new("."));
    // as OpenSSH does, an Include whose directory cannot be listed includes nothing
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| match e {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!("{}: cannot read an entry: {e}", dir.display());
                    None
                }
            })
            .filter(|e| wildcard_match(&name, &e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect(),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(
                    "Include {}: cannot list {}: {e}",
                    p.display(),
                    dir.display()
                );
            }
            Vec::new()
        }
    };
    out.sort();
    out
}

/// A ProxyJump hop: `[user@]host[:port]`. Only the last hop of a comma list is returned with
/// the hops before it as its own jump host, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

pub fn parse_proxy_jump(spec: &str) -> Vec<Hop> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let s = s.trim().trim_start_matches("ssh://");
            let (user, rest) = match s.rsplit_once('@') {
                Some((u, r)) => (Some(u.to_string()), r),
                None => (None, s),
            };
            let (host, port) = if let Some(r) = rest.strip_prefix('[') {
                match r.split_once(']') {
                    Some((h, p)) => (h.to_string(), p.strip_prefix(':')),
                    None => (rest.to_string(), None),
                }
            } else {
                match rest.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
                    _ => (rest.to_string(), None),
                }
            };
            let port = match port {
                Some(p) => match p.parse() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        tracing::warn!("ProxyJump {s}: port {p:?} is not a port number; using 22");
                        None
                    }
                },
                None => None,
            };
            Hop { user, host, port }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> SshConfig {
        let mut c = SshConfig::default();
        c.parse(Path::new("/cfg"), text, Some(Path::new("/home/u")), 0)
            .unwrap();
        c
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let c = cfg("\
User global
Host node2
  HostName 10.123.0.12
  IdentityFile ~/.ssh/node2
Host node*
  User root
  Port=2222
  IdentityFile ~/.ssh/%h
  UserKnownHostsFile /tmp/kh1 /tmp/kh2
Host *
  User fallback
  ProxyJump jump@bastion:2200
");
        let o = c.lookup("node2");
        assert_eq!(o.hostname.as_deref(), Some("10.123.0.12"));
        assert_eq!(
            o.user.as_deref(),
            Some("global"),
            "options before any Host apply to all, first wins"
        );
        assert_eq!(o.port, Some(2222));
        assert_eq!(
            o.identity_files,
            vec![
                PathBuf::from("/home/u/.ssh/node2"),
                PathBuf::from("/home/u/.ssh/node2")
            ]
        );
        assert_eq!(
            o.user_known_hosts_files,
            vec![PathBuf::from("/tmp/kh1"), PathBuf::from("/tmp/kh2")]
        );
        assert_eq!(o.proxy_jump.as_deref(), Some("jump@bastion:2200"));
        let o = c.lookup("other");
        assert_eq!(o.hostname, None);
        assert_eq!(o.port, None);
    }

    #[test]
    fn negation_match_tabs_and_quotes() {
        let c = cfg(
            "Host *.lab !db.lab\n\tUser\tlab\nMatch all\n  IdentityFile \"/keys/with space\"\nMatch exec \"true\"\n  User never\n",
        );
        assert_eq!(c.lookup("web.lab").user.as_deref(), Some("lab"));
        assert_eq!(c.lookup("db.lab").user, None);
        assert_eq!(
            c.lookup("x").identity_files,
            vec![PathBuf::from("/keys/with space")]
        );
    }

    #[test]
    fn include_reads_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.conf"), "Host a\n  User from-a\n").unwrap();
        std::fs::write(dir.path().join("b.conf"), "Host b\n  User from-b\n").unwrap();
        let main = dir.path().join("config");
        std::fs::write(
            &main,
            format!(
                "Include {}/*.conf\nHost *\n  User rest\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let c = SshConfig::load(&main).unwrap();
        assert_eq!(c.lookup("a").user.as_deref(), Some("from-a"));
        assert_eq!(c.lookup("b").user.as_deref(), Some("from-b"));
        assert_eq!(c.lookup("c").user.as_deref(), Some("rest"));
        assert!(
            SshConfig::load(&dir.path().join("missing"))
                .unwrap()
                .lookup("x")
                .user
                .is_none()
        );
    }

    #[test]
    fn a_port_or_timeout_that_is_not_a_number_is_an_error_not_ignored() {
        let parse = |text: &str| {
            let mut c = SshConfig::default();
            c.parse(Path::new("/cfg"), text, None, 0).map(|()| c)
        };
        let e = parse("Host a\n  Port 22x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/cfg:2: `port` is \"22x\", not a port number"
        );
        let e = parse("Host a\n  Port 70000\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("ConnectTimeout soon\n").unwrap_err();
        assert!(
            e.to_string().contains("`connecttimeout` is \"soon\""),
            "{e}"
        );
        // OpenSSH's time formats are values, not errors
        for (v, secs) in [
            ("7", 7),
            ("7s", 7),
            ("1m30s", 90),
            ("2h", 7200),
            ("1w", 604_800),
        ] {
            let c = parse(&format!("ConnectTimeout {v}\n")).unwrap();
            assert_eq!(c.lookup("x").connect_timeout, Some(secs), "{v}");
        }
        assert_eq!(seconds(""), None);
        assert_eq!(seconds("m"), None);
        assert_eq!(seconds("1x"), None);
    }

    #[test]
    fn proxy_jump_specs() {
        assert_eq!(
            parse_proxy_jump("jump@10.0.0.1:2222"),
            vec![Hop {
                user: Some("jump".into()),
                host: "10.0.0.1".into(),
                port: Some(2222)
            }]
        );
        assert_eq!(parse_proxy_jump("a,b").len(), 2);
        assert_eq!(parse_proxy_jump("[fd00::1]:22")[0].host, "fd00::1");
        assert_eq!(parse_proxy_jump("fd00::1")[0].port, None);
    }

    #[test]
    fn words_split() {
        assert_eq!(words("Port=22"), vec!["Port", "22"]);
        assert_eq!(words("Port = 22"), vec!["Port", "22"]);
        assert_eq!(
            words("IdentityFile \"a b\" c"),
            vec!["IdentityFile", "a b", "c"]
        );
    }
}
