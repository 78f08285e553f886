//! Diagnostics about an inventory file: what is wrong, where (file, line, column, field path),
//! and how to fix it. Rendered like a compiler's messages, with the offending line and a caret.

use super::locate::Pos;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The field path, e.g. `spec.hosts[2].address` (empty for the document itself).
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub pos: Option<Pos>,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
            hint: None,
            pos: None,
        }
    }

    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn at(mut self, pos: Option<Pos>) -> Self {
        self.pos = pos;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Whether to color output: only on a terminal, and never when `NO_COLOR` is set.
pub fn use_color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether a character would act on a terminal or reorder text rather than show: C0 and C1
/// controls, DEL, and the bidirectional formatting characters (Trojan Source).
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every character that [`is_invisible`] escaped visibly (`\x1b`, `\n`, `\u{202e}`),
/// so that text from an inventory never reaches a terminal raw.
pub fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_invisible) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_invisible(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_invisible(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Renders diagnostics against the file they are about:
///
/// ```text
/// error: spec.hosts[1].address: duplicate address 10.0.0.11, also used by spec.hosts[0] (cp1)
///   --> cluster.yaml:12:16
///    |
/// 12 |     address: 10.0.0.11
///    |              ^^^^^^^^^
///    = hint: every host needs an address of its own
/// ```
pub fn render(diags: &[Diagnostic], file: &str, source: &str, color: bool) -> String {
    let style = Style { on: color };
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    for d in diags {
        let (label, code) = match d.severity {
            Severity::Error => ("error", "1;31"),
            Severity::Warning => ("warning", "1;33"),
        };
        let head = if d.path.is_empty() {
            visible(&d.message).into_owned()
        } else {
            format!("{}: {}", visible(&d.path), visible(&d.message))
        };
        let _ = writeln!(
            out,
            "{}: {}",
            style.paint(code, label),
            style.paint("1", &head)
        );
        let gutter_width = d.pos.map(|p| p.line.to_string().len()).unwrap_or(1);
        let pad = " ".repeat(gutter_width);
        match d.pos {
            Some(p) if p.line >= 1 => {
                let _ = writeln!(
                    out,
                    "{pad}{} {file}:{}:{}",
                    style.paint("1;34", "-->"),
                    p.line,
                    p.column
                );
                if let Some(text) = lines.get(p.line - 1) {
                    let bar = style.paint("1;34", "|");
                    let raw = text.replace('\t', " ");
                    // the caret counts characters of the line as shown, escapes included
                    let shown = |chars: usize| {
                        visible(&raw.chars().take(chars).collect::<String>())
                            .chars()
                            .count()
                    };
                    let text = visible(&raw);
                    let _ = writeln!(out, "{pad} {bar}");
                    let _ = writeln!(
                        out,
                        "{} {bar} {}",
                        style.paint("1;34", &p.line.to_string()),
                        text
                    );
                    let width = text.chars().count();
                    let start = p.column.saturating_sub(1);
                    let col = shown(start).min(width);
                    let len = (shown(start + p.len.max(1)) - shown(start)).max(1);
                    let len = len.min(width.saturating_sub(col).max(1));
                    let _ = writeln!(
                        out,
                        "{pad} {bar} {}{}",
                        " ".repeat(col),
                        style.paint(code, &"^".repeat(len))
                    );
                }
            }
            _ => {
                let _ = writeln!(out, "{pad}{} {file}", style.paint("1;34", "-->"));
            }
        }
        if let Some(h) = &d.hint {
            let h = visible(h);
            let _ = writeln!(
                out,
                "{pad} {} {}: {h}",
                style.paint("1;34", "="),
                style.paint("1", "hint")
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_caret_and_hint() {
        let src = "a: 1\nspec:\n  port: 99999\n";
        let d = Diagnostic::error("spec.port", "expected a port number (1-65535)")
            .hint("use the SSH port of the host")
            .at(Some(Pos {
                line: 3,
                column: 9,
                len: 5,
            }));
        let text = render(&[d], "x.yaml", src, false);
        assert_eq!(
            text,
            "error: spec.port: expected a port number (1-65535)\n --> x.yaml:3:9\n  |\n3 |   port: 99999\n  |         ^^^^^\n  = hint: use the SSH port of the host\n\n"
        );
    }

    #[test]
    fn no_position_still_names_the_file() {
        let d = Diagnostic::warning("", "the file is empty");
        let text = render(&[d], "x.yaml", "", false);
        assert!(
            text.starts_with("warning: the file is empty\n --> x.yaml\n"),
            "{text}"
        );
    }

    #[test]
    fn escape_sequences_are_shown_escaped_never_raw() {
        let src = "a: 1\nname: \"\u{1b}[2J\u{202e}x\u{9b}\" # \u{7}\n";
        let d = Diagnostic::error("spec.x\u{1b}", "`\u{1b}[2J\u{202e}x\u{9b}` is bad\nnext")
            .hint("not \u{1b}]0;title\u{7}")
            .at(Some(Pos {
                line: 2,
                column: 7,
                len: 9,
            }));
        let text = render(&[d], "x.yaml", src, false);
        assert!(
            !text.chars().any(|c| is_invisible(c) && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("spec.x\\x1b: `\\x1b[2J\\u{202e}x\\x9b` is bad\\nnext"),
            "{text}"
        );
        assert!(
            text.contains("2 | name: \"\\x1b[2J\\u{202e}x\\x9b\" # \\x07"),
            "{text}"
        );
        // the caret still spans the value as shown
        assert!(
            text.contains("\n  |       ^^^^^^^^^^^^^^^^^^^^^^\n"),
            "{text}"
        );
        assert!(text.contains("hint: not \\x1b]0;title\\x07"), "{text}");
    }

    #[test]
    fn color_only_when_asked() {
        let d = Diagnostic::error("a", "b");
        assert!(render(std::slice::from_ref(&d), "f", "", true).contains("\x1b["));
        assert!(!render(&[d], "f", "", false).contains("\x1b["));
    }
}
