//! `${VAR}` expansion for values a user should not write into a file (a mirror's credentials, an
//! address that differs per site), and `~` expansion for paths.
//!
//! Syntax: `${NAME}` (an error when NAME is unset), `${NAME:-default}` (default when unset or
//! empty), and `$$` for a literal `$`. A `$` not followed by `{` or `$` is kept as is.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("environment variable {0} is not set")]
    Undefined(String),
    #[error("unclosed `${{` (expected `}}`)")]
    Unclosed,
    #[error("`{0}` is not a valid environment variable name")]
    BadName(String),
}

pub fn expand_env(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(ExpandError::Unclosed)?;
            let expr = &body[..end];
            let (name, default) = match expr.find(":-") {
                Some(j) => (&expr[..j], Some(&expr[j + 2..])),
                None => (expr, None),
            };
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ExpandError::BadName(name.to_string()));
            }
            match (lookup(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(ExpandError::Undefined(name.to_string())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The process environment, for `expand_env`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Expands a leading `~` or `~/` to the home directory, then makes a relative path relative to
/// `base` (the directory of the inventory file), so an inventory means the same thing from any
/// working directory.
pub fn resolve_path(value: &str, base: &Path, home: Option<&Path>) -> PathBuf {
    let expanded = match (value, home) {
        ("~", Some(h)) => h.to_path_buf(),
        (v, Some(h)) if v.starts_with("~/") => h.join(&v[2..]),
        (v, _) => PathBuf::from(v),
    };
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER_NAME" => Some("ops".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        assert_eq!(expand_env("plain", &env).unwrap(), "plain");
        assert_eq!(expand_env("${USER_NAME}@x", &env).unwrap(), "ops@x");
        assert_eq!(expand_env("a${MISSING:-b}c", &env).unwrap(), "abc");
        assert_eq!(expand_env("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand_env("$$HOME $x", &env).unwrap(), "$HOME $x");
        assert_eq!(expand_env("cost: 5$", &env).unwrap(), "cost: 5$");
    }

    #[test]
    fn reports_what_is_wrong() {
        assert_eq!(
            expand_env("${MISSING}", &env),
            Err(ExpandError::Undefined("MISSING".into()))
        );
        assert_eq!(expand_env("${USER_NAME", &env), Err(ExpandError::Unclosed));
        assert_eq!(
            expand_env("${1X}", &env),
            Err(ExpandError::BadName("1X".into()))
        );
        assert_eq!(
            expand_env("${}", &env),
            Err(ExpandError::BadName("".into()))
        );
    }

    #[test]
    fn resolves_home_and_relative_paths() {
        let home = Path::new("/home/ops");
        let base = Path::new("/srv/inv");
        assert_eq!(
            resolve_path("~/.ssh/id", base, Some(home)),
            PathBuf::from("/home/ops/.ssh/id")
        );
        assert_eq!(
            resolve_path("~", base, Some(home)),
            PathBuf::from("/home/ops")
        );
        assert_eq!(
            resolve_path("keys/id", base, Some(home)),
            PathBuf::from("/srv/inv/keys/id")
        );
        assert_eq!(
            resolve_path("/abs", base, Some(home)),
            PathBuf::from("/abs")
        );
        assert_eq!(
            resolve_path("~other/x", base, Some(home)),
            PathBuf::from("/srv/inv/~other/x")
        );
    }
}
