//! Small helpers shared by modules: durations, "did you mean" suggestions, shell quoting,
//! URLs without credentials, untrusted text made safe for a terminal, private files written
//! atomically.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Parses `90s`, `5m`, `1h30m`, `250ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(d)?;
    }
    Some(total)
}

/// Formats a duration the way `parse_duration` reads it (`1m30s`, `2.5s` below a minute).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        let s = d.as_secs_f64();
        return if s < 10.0 {
            format!("{s:.1}s")
        } else {
            format!("{secs}s")
        };
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The allowed value nearest to `given`, if one is near enough to be a likely typo: the same
/// letters in another case or spelling (`pod_subnet` for `podSubnet`), or a small edit distance.
pub fn suggest<'a>(given: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let g = norm(given);
    if let Some(a) = allowed.iter().find(|a| norm(a) == g) {
        return Some(a);
    }
    let mut best: Option<(&str, f64)> = None;
    for a in allowed {
        let score = strsim::jaro_winkler(&given.to_ascii_lowercase(), &a.to_ascii_lowercase());
        let d = strsim::levenshtein(&g, &norm(a));
        let close = d <= 1.max(g.len() / 4) && d < g.len();
        if (score >= 0.85 || close) && best.is_none_or(|(_, s)| score > s) {
            best = Some((a, score));
        }
    }
    best.map(|(a, _)| a)
}

/// Quotes a word for a POSIX shell (single quotes; safe for any content).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A URL without its userinfo: `https://user:pw@host/p` → `https://host/p`. Text that is not a
/// URL is returned unchanged. Every URL that reaches a message or a log goes through this (or
/// through [`redact_urls`] for text that may hold URLs).
pub fn redact_url(url: &str) -> String {
    redact_urls(url)
}

/// Strips the userinfo (`user:password@`) of every `scheme://` URL found in `text`.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // the scheme: letters, digits, `+-.` before `://`, starting with a letter
        let head = &rest[..i];
        let scheme_start = head
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || "+-.".contains(*c))
            .last()
            .map(|(j, _)| j);
        let is_url =
            scheme_start.is_some_and(|j| head[j..].starts_with(|c: char| c.is_ascii_alphabetic()));
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        if !is_url {
            continue;
        }
        // the authority ends at the first `/`, `?`, `#`, whitespace or quote; its userinfo at
        // the last `@` inside it
        let end = rest
            .find(|c: char| "/?#\"'<>`".contains(c) || c.is_whitespace() || c.is_control())
            .unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Untrusted text (remote output, facts, values from files) made safe to print on a terminal:
/// control characters other than newline and tab, DEL, C1 controls and the Unicode bidi
/// overrides are shown escaped (`\x1b`, `\r`, `\u{202e}`), so they can neither move the cursor,
/// rewrite the screen nor set the terminal's title. Backslashes stay as they are, so the
/// function is idempotent.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
    }
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if c == '\r' {
            out.push_str("\\r");
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// [`terminal_safe`] for log lines that carry their own colours: well-formed SGR sequences
/// (`ESC [ digits;… m`, which only set colours) stay, every other control is escaped. Remote
/// text in a log line can then at most change a colour, never move the cursor, clear the screen
/// or set the title.
pub fn terminal_safe_keeping_colors(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\x1b') {
        out.push_str(&terminal_safe(&rest[..i]));
        let after = &rest[i + 1..];
        let sgr_len = after.strip_prefix('[').and_then(|p| {
            let params = p.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
            p[params..].starts_with('m').then_some(1 + params + 1)
        });
        match sgr_len {
            Some(n) => {
                out.push_str(&rest[i..i + 1 + n]);
                rest = &after[n..];
            }
            None => {
                out.push_str("\\x1b");
                rest = after;
            }
        }
    }
    out.push_str(&terminal_safe(rest));
    out
}

/// `n` random bytes from the OS, hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the OS random generator works");
    hex::encode(b)
}

/// Where a write to `path` lands: `path` itself, or, when it is a symlink, the file the link
/// (chain) points to, so that the link is kept and its target is written through.
pub fn resolve_write_target(path: &Path) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&p)?;
                p = if link.is_absolute() {
                    link
                } else {
                    p.parent().unwrap_or(Path::new("")).join(link)
                };
            }
            _ => return Ok(p),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// Writes a private file (mode 0600) atomically: a temporary file with a random name is created
/// exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`) in the target's directory, written, synced, then
/// renamed over the target. A symlink at `path` is written through (its target is replaced, the
/// link stays); nothing planted at any name is ever opened or followed.
pub fn write_private_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_private_atomic_with(path, data, &mut || random_hex(8))
}

/// [`write_private_atomic`] with the temporary file's random part drawn from `random` (tests
/// give names that are already taken).
pub fn write_private_atomic_with(
    path: &Path,
    data: &[u8],
    random: &mut dyn FnMut() -> String,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let target = resolve_write_target(path)?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut attempt = 0;
    let (tmp, mut f) = loop {
        attempt += 1;
        let tmp = dir.join(format!(".{file_name}.kubeforge-{}.tmp", random()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => continue,
            Err(e) => return Err(e),
        }
    };
    let written = (|| {
        // the mode is 0600 whatever the umask left
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &target)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "m", "5x", "1.5m", "-1s", "5m3", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
    }

    #[test]
    fn suggestions() {
        let fields = ["controlPlane", "hosts", "kubernetes", "ssh", "options"];
        assert_eq!(suggest("controlPlan", &fields), Some("controlPlane"));
        assert_eq!(suggest("control_plane", &fields), Some("controlPlane"));
        assert_eq!(suggest("Hosts", &fields), Some("hosts"));
        assert_eq!(suggest("kubernets", &fields), Some("kubernetes"));
        assert_eq!(suggest("zzz", &fields), None);
        assert_eq!(
            suggest("flanel", &["flannel", "none", "manifest"]),
            Some("flannel")
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn urls_lose_their_userinfo() {
        assert_eq!(
            redact_url("http://user:secret@127.0.0.1:8080/a/b"),
            "http://127.0.0.1:8080/a/b"
        );
        assert_eq!(
            redact_url("https://tok@mirror.example/x?y=1"),
            "https://mirror.example/x?y=1"
        );
        assert_eq!(
            redact_url("https://mirror.example/x@y"),
            "https://mirror.example/x@y"
        );
        assert_eq!(redact_url("/srv/mirror"), "/srv/mirror");
        assert_eq!(
            redact_urls(
                "error sending request for url (http://u:p%40ss@h:1/f): connect to https://a:b@c/ failed; mail root@example.com"
            ),
            "error sending request for url (http://h:1/f): connect to https://c/ failed; mail root@example.com"
        );
        // a password holding `@` or `:`: the last `@` of the authority ends the userinfo
        assert_eq!(redact_urls("http://u:p@ss:w@host/x"), "http://host/x");
        assert_eq!(redact_urls("no url here ://x@y"), "no url here ://x@y");
        assert_eq!(
            redact_urls("é://a@b 日本 https://k@h"),
            "é://a@b 日本 https://h"
        );
    }

    #[test]
    fn terminal_safe_escapes_controls_but_keeps_lines() {
        assert_eq!(terminal_safe("plain\ttext\nnext"), "plain\ttext\nnext");
        assert!(matches!(terminal_safe("ok"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            terminal_safe("Debian\x1b]0;owned\x07\x1b[2J\r\u{9b}31m\u{7f}"),
            "Debian\\x1b]0;owned\\x07\\x1b[2J\\r\\x9b31m\\x7f"
        );
        assert_eq!(terminal_safe("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(terminal_safe("é日本"), "é日本");
        assert_eq!(
            terminal_safe_keeping_colors(
                "\x1b[1;31mERROR\x1b[0m host says \x1b]0;t\x07\x1b[2J\x1b[31m\x1b"
            ),
            "\x1b[1;31mERROR\x1b[0m host says \\x1b]0;t\\x07\\x1b[2J\x1b[31m\\x1b"
        );
        let once = terminal_safe("x\x1by").into_owned();
        assert_eq!(terminal_safe(&once), once, "idempotent");
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_created_exclusively_never_through_a_planted_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "victim\n").unwrap();
        let target = dir.path().join("config");
        // names already taken: a symlink to the victim, then a world-readable file
        let link = dir.path().join(".config.kubeforge-planted1.tmp");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let planted = dir.path().join(".config.kubeforge-planted2.tmp");
        std::fs::write(&planted, "planted\n").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut names = ["planted1", "planted2", "fresh"].into_iter();
        write_private_atomic_with(&target, b"secret\n", &mut || {
            names.next().unwrap().to_string()
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret\n");
        assert_eq!(mode(&target), 0o600);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
        assert_eq!(std::fs::read_to_string(&planted).unwrap(), "planted\n");
        assert_eq!(mode(&planted), 0o644);
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            !dir.path().join(".config.kubeforge-fresh.tmp").exists(),
            "renamed into place"
        );
    }

    #[test]
    fn private_files_write_through_a_symlink_and_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dotfiles")).unwrap();
        std::fs::create_dir(dir.path().join("kube")).unwrap();
        let real = dir.path().join("dotfiles/kubeconfig");
        std::fs::write(&real, "old\n").unwrap();
        let link = dir.path().join("kube/config");
        std::os::unix::fs::symlink("../dotfiles/kubeconfig", &link).unwrap();
        write_private_atomic(&link, b"new\n").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new\n");
        assert_eq!(mode(&real), 0o600);
        // a dangling link: its target is created
        let dangling = dir.path().join("kube/other");
        std::os::unix::fs::symlink("../dotfiles/created", &dangling).unwrap();
        write_private_atomic(&dangling, b"x").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("dotfiles/created")).unwrap(),
            b"x"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("dotfiles"))
                .unwrap()
                .count(),
            2,
            "no temporary file left"
        );
    }
}
