//! Tera templates for everything kubeforge writes: units, configs, manifests, cloud-init, and
//! the example inventory. They are built into the binary.
//!
//! # Validate and escape: the rules of this layer
//!
//! Every template is registered with its [`Format`]; a template cannot be added without one.
//! The format decides what happens to every `{{ value }}`, and no template can opt out:
//!
//! - **YAML** and **TOML**: every value is autoescaped for a double-quoted string (`"` `\`
//!   and every control or line-break character become escapes valid in YAML double-quoted
//!   scalars, TOML basic strings and JSON strings alike), and the template must place it
//!   inside a double-quoted string (or in a `#` comment, where an escaped value cannot end
//!   the line). A template that outputs a value anywhere else, or inside single quotes, is
//!   refused when the templates are loaded, so every render fails and the unit tests fail.
//! - **INI** (gcfg, as the OpenStack cloud provider reads cloud.conf): the same placement
//!   rule; `"` and `\` are escaped and a control character (a newline above all) is refused.
//!   Keys are not quoted in gcfg: a key is written as `{{ k | key }}`, which refuses anything
//!   but a letter followed by letters, digits and `-`.
//! - **Plain** (the /etc/hosts block, haproxy.cfg, the cluster marker): formats without
//!   quoting. A value is refused unless it is only letters, digits and `. - _ : [ ]` (names,
//!   addresses, ports), so it cannot add a word, a line or a comment.
//! - **Static** (units, sysctl, modules, crictl): no values at all; one is refused at load.
//!
//! The `safe` filter, which would turn the escaping off, is refused. Values that name a path
//! (a registry's certs.d directory) are validated where the path is made (see
//! [`crate::desired`]), not here: escaping keeps a value inside its string, not inside a
//! directory.

use std::io::{self, Write};
use std::sync::LazyLock;

/// What a template writes, which decides how its values are escaped (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML: values in double-quoted scalars (or in `#` comments).
    Yaml,
    /// TOML: values in basic strings (or in `#` comments).
    Toml,
    /// gcfg INI: values in double-quoted values, keys through the `key` filter.
    Ini,
    /// No quoting exists: values are restricted to names, addresses and ports.
    Plain,
    /// No values at all.
    Static,
}

/// Every template in templates/, by name, with its format.
pub const TEMPLATES: &[(&str, Format, &str)] = &[
    (
        "cinder-csi.yaml",
        Format::Yaml,
        include_str!("../templates/cinder-csi.yaml.tera"),
    ),
    (
        "cloud-init.yaml",
        Format::Yaml,
        include_str!("../templates/cloud-init.yaml.tera"),
    ),
    (
        "containerd-config.toml",
        Format::Toml,
        include_str!("../templates/containerd-config.toml.tera"),
    ),
    (
        "containerd-hosts.toml",
        Format::Toml,
        include_str!("../templates/containerd-hosts.toml.tera"),
    ),
    (
        "containerd.service",
        Format::Static,
        include_str!("../templates/containerd.service.tera"),
    ),
    (
        "crictl.yaml",
        Format::Static,
        include_str!("../templates/crictl.yaml.tera"),
    ),
    (
        "flannel.yaml",
        Format::Yaml,
        include_str!("../templates/flannel.yaml.tera"),
    ),
    (
        "haproxy.cfg",
        Format::Plain,
        include_str!("../templates/haproxy.cfg.tera"),
    ),
    (
        "hosts-block",
        Format::Plain,
        include_str!("../templates/hosts-block.tera"),
    ),
    (
        "inventory.yaml",
        Format::Yaml,
        include_str!("../templates/inventory.yaml.tera"),
    ),
    (
        "kubeadm-init.yaml",
        Format::Yaml,
        include_str!("../templates/kubeadm-init.yaml.tera"),
    ),
    (
        "kubeadm-join.yaml",
        Format::Yaml,
        include_str!("../templates/kubeadm-join.yaml.tera"),
    ),
    (
        "kubeadm-node-registration",
        Format::Yaml,
        include_str!("../templates/kubeadm-node-registration.tera"),
    ),
    (
        "kubelet-kubeadm.conf",
        Format::Static,
        include_str!("../templates/kubelet-kubeadm.conf.tera"),
    ),
    (
        "kubelet.service",
        Format::Static,
        include_str!("../templates/kubelet.service.tera"),
    ),
    (
        "marker",
        Format::Plain,
        include_str!("../templates/marker.tera"),
    ),
    (
        "modules-load.conf",
        Format::Static,
        include_str!("../templates/modules-load.conf.tera"),
    ),
    (
        "openstack-ccm.yaml",
        Format::Yaml,
        include_str!("../templates/openstack-ccm.yaml.tera"),
    ),
    (
        "openstack-cloud-config",
        Format::Ini,
        include_str!("../templates/openstack-cloud-config.tera"),
    ),
    (
        "sysctl.conf",
        Format::Static,
        include_str!("../templates/sysctl.conf.tera"),
    ),
];

/// Escapes for the inside of a YAML double-quoted scalar, a TOML basic string and a JSON
/// string at once: `"` and `\`, and `\uXXXX` for every control character (C0, DEL, C1) and
/// for the characters YAML 1.1 reads as line breaks or a byte-order mark. Everything else is
/// written as it is, so the value read back is the value given.
pub fn escape_quoted(input: &str, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = [0u8; 4];
    for c in input.chars() {
        match c {
            '"' => out.write_all(b"\\\"")?,
            '\\' => out.write_all(b"\\\\")?,
            '\n' => out.write_all(b"\\n")?,
            '\t' => out.write_all(b"\\t")?,
            '\r' => out.write_all(b"\\r")?,
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'
                ) =>
            {
                write!(out, "\\u{:04X}", c as u32)?
            }
            c => out.write_all(c.encode_utf8(&mut buf).as_bytes())?,
        }
    }
    Ok(())
}

/// Escapes for a double-quoted gcfg value: `"` and `\`; a control character (a newline
/// above all) is refused, since gcfg values are single lines.
pub fn escape_ini(input: &str, out: &mut dyn Write) -> io::Result<()> {
    if let Some(c) = input.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(io::Error::other(format!(
            "a value holds the control character {c:?}, which an INI (gcfg) value cannot hold"
        )));
    }
    for c in input.chars() {
        match c {
            '"' => out.write_all(b"\\\"")?,
            '\\' => out.write_all(b"\\\\")?,
            c => write!(out, "{c}")?,
        }
    }
    Ok(())
}

/// The characters a value may hold in a format without quoting.
fn plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
}

/// For formats without quoting: passes names, addresses and ports, refuses anything else.
pub fn escape_plain(input: &str, out: &mut dyn Write) -> io::Result<()> {
    if let Some(c) = input.chars().find(|c| !plain_char(*c)) {
        return Err(io::Error::other(format!(
            "the value {input:?} holds {c:?}; this file has no quoting, so its values may only \
             be names, addresses and ports (letters, digits, `.`, `-`, `_`, `:`, `[`, `]`)"
        )));
    }
    out.write_all(input.as_bytes())
}

/// A gcfg key: a letter, then letters, digits and `-`.
fn is_ini_key(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Checks that every `{{ value }}` of a template sits where its format's escaping makes it
/// safe (see the module docs). Line by line: a string does not span lines in our templates.
fn check_placement(name: &str, format: Format, src: &str) -> Result<(), String> {
    for (n, line) in src.lines().enumerate() {
        let at = |msg: &str| format!("templates/{name}.tera line {}: {msg}", n + 1);
        let mut quote: Option<char> = None;
        let mut comment = false;
        let mut prev: Option<char> = None;
        let mut i = 0;
        while i < line.len() {
            let rest = &line[i..];
            if let Some(open) = ["{{", "{%", "{#"].iter().find(|o| rest.starts_with(**o)) {
                let close = match *open {
                    "{{" => "}}",
                    "{%" => "%}",
                    _ => "#}",
                };
                let end = rest[2..]
                    .find(close)
                    .ok_or_else(|| at(&format!("`{open}` is not closed on its line")))?;
                if *open == "{{" {
                    let expr = &rest[2..2 + end];
                    let filters: Vec<&str> = expr
                        .split('|')
                        .skip(1)
                        .map(|f| {
                            f.trim_matches(|c: char| c == '-' || c.is_whitespace())
                                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                                .next()
                                .unwrap_or("")
                        })
                        .collect();
                    if filters.contains(&"safe") {
                        return Err(at("the `safe` filter would turn escaping off"));
                    }
                    let ok = match format {
                        Format::Static => false,
                        Format::Plain => true,
                        Format::Ini if filters.last() == Some(&"key") => true,
                        Format::Yaml | Format::Toml | Format::Ini => comment || quote == Some('"'),
                    };
                    if !ok {
                        return Err(at(&match format {
                            Format::Static => {
                                format!("`{{{{{expr}}}}}`: a {format:?} template has no values")
                            }
                            _ => format!(
                                "`{{{{{expr}}}}}` is outside a double-quoted string; a value in a {format:?} template must be inside one (or in a comment)"
                            ),
                        }));
                    }
                    prev = Some('v');
                }
                i += 2 + end + 2;
                continue;
            }
            let c = rest.chars().next().unwrap_or(' ');
            i += c.len_utf8();
            if comment {
                continue;
            }
            match quote {
                Some('"') if c == '\\' => {
                    // the escaped character is part of the string
                    i += line[i..].chars().next().map_or(0, char::len_utf8);
                }
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => {
                    let at_start = prev.is_none_or(char::is_whitespace);
                    let opens = match format {
                        Format::Yaml => at_start || matches!(prev, Some('[' | '{' | ',')),
                        Format::Toml => {
                            at_start || matches!(prev, Some('=' | '[' | '.' | '{' | ','))
                        }
                        _ => true,
                    };
                    let line_start = line[..i - c.len_utf8()].trim().is_empty();
                    match (format, c) {
                        (Format::Yaml, '#') if at_start => comment = true,
                        (Format::Toml, '#') => comment = true,
                        (Format::Ini, '#' | ';') if line_start => comment = true,
                        (Format::Yaml | Format::Toml | Format::Ini, '"') if opens => {
                            quote = Some('"')
                        }
                        (Format::Yaml | Format::Toml, '\'') if opens => quote = Some('\''),
                        _ => {}
                    }
                }
            }
            prev = Some(c);
        }
        if quote.is_some() && matches!(format, Format::Yaml | Format::Toml | Format::Ini) {
            return Err(at("a quoted string is not closed on its line"));
        }
    }
    Ok(())
}

/// One Tera instance per escape function (Tera has one per instance): double-quoted (YAML,
/// TOML), INI, and plain (Plain and Static).
struct Engines {
    quoted: tera::Tera,
    ini: tera::Tera,
    plain: tera::Tera,
}

fn engine(escape: tera::EscapeFn, templates: Vec<(&str, &str)>) -> Result<tera::Tera, String> {
    let mut t = tera::Tera::new();
    t.set_escape_fn(escape);
    t.register_filter(
        "safe",
        |_: &str, _: tera::Kwargs, _: &tera::State| -> tera::TeraResult<String> {
            Err(tera::Error::message(
                "the `safe` filter is refused: every value is escaped for its file's format",
            ))
        },
    );
    t.register_filter(
        "key",
        |k: &str, _: tera::Kwargs, _: &tera::State| -> tera::TeraResult<tera::Value> {
            if is_ini_key(k) {
                Ok(tera::Value::safe_string(k))
            } else {
                Err(tera::Error::message(format!(
                    "{k:?} is not a key (a letter, then letters, digits and `-`)"
                )))
            }
        },
    );
    t.add_raw_templates(templates).map_err(|e| error_text(&e))?;
    // the empty suffix matches every name: escaping is on for every template
    t.autoescape_on([""]);
    Ok(t)
}

static ENGINES: LazyLock<Result<Engines, String>> = LazyLock::new(|| {
    for (name, format, src) in TEMPLATES {
        check_placement(name, *format, src)?;
    }
    let of = |formats: &[Format]| -> Vec<(&str, &str)> {
        TEMPLATES
            .iter()
            .filter(|(_, f, _)| formats.contains(f))
            .map(|(n, _, s)| (*n, *s))
            .collect()
    };
    Ok(Engines {
        quoted: engine(escape_quoted, of(&[Format::Yaml, Format::Toml]))?,
        ini: engine(escape_ini, of(&[Format::Ini]))?,
        plain: engine(escape_plain, of(&[Format::Plain, Format::Static]))?,
    })
});

/// A tera error with its causes (an escape function's refusal is a cause).
fn error_text(e: &tera::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

#[derive(Debug, thiserror::Error)]
#[error("cannot render template {name}: {message}")]
pub struct TemplateError {
    pub name: String,
    pub message: String,
}

/// Renders a template with the given serializable context; every value is escaped for the
/// template's format, and a value the format cannot hold is an error.
pub fn render<T: serde::Serialize>(name: &str, context: &T) -> Result<String, TemplateError> {
    let err = |message: String| TemplateError {
        name: name.to_string(),
        message,
    };
    let engines = ENGINES.as_ref().map_err(|e| err(e.clone()))?;
    let format = TEMPLATES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, f, _)| *f)
        .ok_or_else(|| err("no such template".into()))?;
    let tera = match format {
        Format::Yaml | Format::Toml => &engines.quoted,
        Format::Ini => &engines.ini,
        Format::Plain | Format::Static => &engines.plain,
    };
    let ctx = tera::Context::from_serialize(context).map_err(|e| err(error_text(&e)))?;
    tera.render(name, &ctx).map_err(|e| err(error_text(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_registered() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let name = name.trim_end_matches(".tera");
            assert!(
                TEMPLATES.iter().any(|(n, _, _)| *n == name),
                "templates/{name}.tera is not in TEMPLATES"
            );
        }
        assert!(ENGINES.is_ok(), "{:?}", ENGINES.as_ref().err());
    }

    fn placed(format: Format, src: &str) -> Result<(), String> {
        check_placement("t", format, src)
    }

    #[test]
    fn a_value_outside_a_quoted_string_is_refused_at_load() {
        assert!(placed(Format::Yaml, "a: \"{{ x }}\"\n# {{ y }}\nb: [\"{{ z }}\"]").is_ok());
        assert!(
            placed(
                Format::Toml,
                "[host.\"{{ e }}\"]\ns = \"{{ x }}\" # {{ y }}"
            )
            .is_ok()
        );
        assert!(placed(Format::Ini, "{{ k | key }}=\"{{ v }}\"\n; {{ c }}").is_ok());
        for (format, src) in [
            (Format::Yaml, "a: {{ x }}"),
            (Format::Yaml, "a: '{{ x }}'"),
            (Format::Yaml, "- --flag=\"{{ x }}\""),
            (Format::Yaml, "a: \"x\" {{ y }}"),
            (Format::Yaml, "a: \"{{ x | safe }}\""),
            (Format::Yaml, "a: \"{{ x }}"),
            (Format::Toml, "s = {{ x }}"),
            (Format::Toml, "s = '{{ x }}'"),
            (Format::Ini, "k={{ v }}"),
            (Format::Ini, "{{ k }}=\"v\""),
            (Format::Static, "a {{ x }}"),
            (Format::Plain, "a {{ x | safe }}"),
        ] {
            assert!(placed(format, src).is_err(), "{format:?} accepted {src:?}");
        }
        // `{%` tags and the quotes inside them are not output
        assert!(
            placed(
                Format::Yaml,
                "{%- if a == \"b\" %}\nc: \"{{ d }}\"\n{%- endif %}"
            )
            .is_ok()
        );
    }

    fn esc(f: fn(&str, &mut dyn Write) -> io::Result<()>, s: &str) -> Result<String, String> {
        let mut out = Vec::new();
        f(s, &mut out).map_err(|e| e.to_string())?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn escapes_per_format() {
        assert_eq!(
            esc(escape_quoted, "a\"b\\c\nd\te\u{1}\u{7f}\u{85}\u{2028}é").unwrap(),
            "a\\\"b\\\\c\\nd\\te\\u0001\\u007F\\u0085\\u2028é"
        );
        assert_eq!(esc(escape_ini, "p\"a;s#s\\").unwrap(), "p\\\"a;s#s\\\\");
        assert!(esc(escape_ini, "a\nb").is_err());
        assert!(esc(escape_ini, "a\rb").is_err());
        assert_eq!(
            esc(escape_plain, "[fd00::1]:6443").unwrap(),
            "[fd00::1]:6443"
        );
        for bad in ["a b", "a\nb", "a#b", "a;b", "a/b"] {
            assert!(esc(escape_plain, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rendering_refuses_what_a_format_cannot_hold() {
        let e = render(
            "hosts-block",
            &serde_json::json!({"cluster": "c", "endpoint": "api\n0.0.0.0 evil", "endpoint_ip": "10.0.0.1"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no quoting"), "{e}");
        let e = render(
            "openstack-cloud-config",
            &serde_json::json!({"auth_url": "u", "fields": [{"key": "a=b\nc", "value": "v"}], "subnet_id": "s"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not a key"), "{e}");
    }
}
