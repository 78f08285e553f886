//! Secrets of a run (bootstrap tokens, certificate keys): generated here, never printed. Every
//! secret is registered with a process-wide redactor that log output and error messages pass
//! through, so a value that reaches a message by accident still never reaches the terminal.

use std::sync::{Mutex, OnceLock};

static KNOWN: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

fn known() -> &'static Mutex<Vec<String>> {
    KNOWN.get_or_init(|| Mutex::new(Vec::new()))
}

/// Secrets at least this long are hidden wherever they appear, even inside a longer word;
/// shorter ones only where they stand alone (see [`redact`]).
const ANYWHERE: usize = 6;

/// Registers a value to hide from all output. Every non-empty value counts, however short.
pub fn register(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut k = known().lock().unwrap_or_else(|p| p.into_inner());
    if !k.iter().any(|s| s == secret) {
        k.push(secret.to_string());
        // longest first: a short secret inside a longer one does not break the longer's match
        k.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Replaces every registered secret (and the secret half of any bootstrap token) by
/// `<redacted>`, and strips the `user:password@` of every URL.
///
/// A secret of [`ANYWHERE`] characters or more is replaced wherever it occurs. A shorter one
/// (a 1-character password, say) is replaced only where it stands alone: neither the character
/// before nor the one after is a letter or digit. So the password `x` is hidden in
/// `password x rejected` and in `user:x@host`, but `exit` and `0x1f` stay readable: replacing
/// every `x` would make all output unreadable, and a short value inside a word does not give the
/// secret away.
pub fn redact(text: &str) -> String {
    let mut out = crate::util::redact_urls(text);
    for s in known().lock().unwrap_or_else(|p| p.into_inner()).iter() {
        if !out.contains(s.as_str()) {
            continue;
        }
        out = if s.chars().count() >= ANYWHERE {
            out.replace(s.as_str(), "<redacted>")
        } else {
            replace_standalone(&out, s)
        };
    }
    redact_token_shapes(&out)
}

/// Replaces the occurrences of `needle` not adjacent to a letter or digit.
fn replace_standalone(text: &str, needle: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(i) = text[from..].find(needle).map(|i| i + from) {
        let end = i + needle.len();
        let before = text[..i].chars().next_back();
        let after = text[end..].chars().next();
        if !word(before) && !word(after) {
            out.push_str(&text[last..i]);
            out.push_str("<redacted>");
            last = end;
            from = end;
        } else {
            // the next match may start inside this one
            from = i + text[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out.push_str(&text[last..]);
    out
}

/// `abcdef.0123456789abcdef` → `abcdef.<redacted>`: bootstrap tokens kubeforge did not make
/// (printed by kubeadm) are hidden too.
fn redact_token_shapes(text: &str) -> String {
    let b = text.as_bytes();
    let is_tok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut last = 0;
    while i + 23 <= b.len() {
        let starts = i == 0 || !is_tok(b[i - 1]);
        if starts
            && b[i..i + 6].iter().all(|c| is_tok(*c))
            && b[i + 6] == b'.'
            && b[i + 7..i + 23].iter().all(|c| is_tok(*c))
            && (i + 23 == b.len() || !is_tok(b[i + 23]))
        {
            out.push_str(&text[last..i + 7]);
            out.push_str("<redacted>");
            i += 23;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[last..]);
    out
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the OS random generator works");
    b
}

/// A kubeadm bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`, registered as a secret.
pub fn bootstrap_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let b = random_bytes::<22>();
    let chars: String = b
        .iter()
        .map(|x| ALPHABET[(*x as usize) % ALPHABET.len()] as char)
        .collect();
    let token = format!("{}.{}", &chars[..6], &chars[6..]);
    register(&token);
    register(&token[7..]);
    token
}

/// A certificate key for `kubeadm --upload-certs` (32 random bytes, hex), registered as a secret.
pub fn certificate_key() -> String {
    let key = hex::encode(random_bytes::<32>());
    register(&key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_keys_have_kubeadms_shapes_and_are_redacted() {
        let t = bootstrap_token();
        assert_eq!(t.len(), 23);
        assert!(
            t.chars()
                .all(|c| c == '.' || c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        let k = certificate_key();
        assert_eq!(k.len(), 64);
        let msg = format!("join with {t} and --certificate-key {k} done");
        let r = redact(&msg);
        assert!(!r.contains(&t[7..]) && !r.contains(&k), "{r}");
        assert!(r.contains("--certificate-key <redacted>"));
    }

    #[test]
    fn token_shapes_from_elsewhere_are_hidden() {
        assert_eq!(
            redact("kubeadm join x:6443 --token abcdef.0123456789abcdef --discovery"),
            "kubeadm join x:6443 --token abcdef.<redacted> --discovery"
        );
        assert_eq!(redact("node1.example.com"), "node1.example.com");
        assert_eq!(redact("v1.33.5"), "v1.33.5");
    }

    #[test]
    fn short_secrets_are_redacted_where_they_stand_alone() {
        // values no other test of this process prints (the registry is process-wide)
        register("Zq");
        register("ß");
        register("");
        assert_eq!(
            redact("password Zq rejected; login as admin:Zq@host; code ß"),
            "password <redacted> rejected; login as admin:<redacted>@host; code <redacted>"
        );
        // inside words they stay: the text stays readable
        assert_eq!(redact("Zqx xZq Straße"), "Zqx xZq Straße");
        assert_eq!(redact("\"Zq\"\nß\n"), "\"<redacted>\"\n<redacted>\n");
        assert_eq!(
            redact("日Zq日"),
            "日Zq日",
            "letters of any script are word characters"
        );
        assert_eq!(redact("-ß-ß"), "-<redacted>-<redacted>");
        assert_eq!(redact("ZqZq Zq"), "ZqZq <redacted>");
    }

    #[test]
    fn urls_in_messages_lose_their_userinfo() {
        assert_eq!(
            redact("cannot download from https://mirror:hunter2@m.example/x: HTTP 404"),
            "cannot download from https://m.example/x: HTTP 404"
        );
    }
}
