//! Reading an inventory file: YAML → typed inventory → `${ENV}` expansion → semantic checks →
//! the desired-state model. Every problem comes back as a `Diagnostic` with the file, line,
//! column and field path, and a hint.

pub mod diag;
pub mod expand;
pub mod locate;
pub mod types;
pub mod validate;

use crate::model::Cluster;
use crate::release::{Catalog, ReleaseError, ReleaseManifest};
use crate::util::suggest;
use diag::{Diagnostic, Severity};
use locate::LocationIndex;
use serde_saphyr::MessageFormatter as _;
use std::path::{Path, PathBuf};
use types::Inventory;

/// Inventory files larger than this are refused (a real one is a few KiB).
pub const MAX_INVENTORY_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// (`error` is not a `source`: the message already carries it, and is printed once)
    #[error("cannot read inventory {}: {error}{}", path.display(), if error.kind() == std::io::ErrorKind::NotFound { " (check the path given to -f, or set KUBEFORGE_FILE)" } else { "" })]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {} error{}", file.display(), count_errors(diagnostics), if count_errors(diagnostics) == 1 { "" } else { "s" })]
    Invalid {
        file: PathBuf,
        source_text: String,
        /// Errors and warnings, errors first.
        diagnostics: Vec<Diagnostic>,
    },
    #[error("the built-in release manifests are broken: {0}")]
    Builtin(#[from] ReleaseError),
}

fn count_errors(d: &[Diagnostic]) -> usize {
    d.iter().filter(|d| d.is_error()).count()
}

impl InventoryError {
    /// The diagnostics rendered against the file, for stderr.
    pub fn render(&self, color: bool) -> String {
        match self {
            InventoryError::Invalid {
                file,
                source_text,
                diagnostics,
            } => diag::render(diagnostics, &file.display().to_string(), source_text, color),
            other => format!("{other}\n"),
        }
    }
}

/// A valid inventory, ready to use.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: PathBuf,
    pub source: String,
    pub inventory: Inventory,
    pub cluster: Cluster,
    pub catalog: Catalog,
    pub warnings: Vec<Diagnostic>,
}

impl Loaded {
    pub fn render_warnings(&self, color: bool) -> String {
        diag::render(
            &self.warnings,
            &self.file.display().to_string(),
            &self.source,
            color,
        )
    }
}

/// Reads a regular file of at most `limit` bytes as UTF-8 text; `what` names it in messages
/// ("an inventory"). Devices, FIFOs, sockets and directories are refused before they are
/// opened (`/dev/zero` never ends, a FIFO blocks), and again on the opened file (opened
/// non-blocking, so a FIFO swapped in meanwhile cannot hang the open); the read itself stops
/// past the limit, in case the file grows.
pub fn read_text_file(path: &Path, limit: u64, what: &str) -> std::io::Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let regular = |meta: &std::fs::Metadata| -> std::io::Result<()> {
        let t = meta.file_type();
        let kind = if t.is_file() {
            return Ok(());
        } else if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO (named pipe)"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        Err(std::io::Error::other(format!(
            "it is {kind}, not a regular file: give the path of {what} file"
        )))
    };
    let too_big = || {
        std::io::Error::other(format!(
            "the file is larger than {} MiB; {what} is at most {limit} bytes",
            limit.div_ceil(1024 * 1024)
        ))
    };
    let meta = std::fs::metadata(path)?;
    regular(&meta)?;
    if meta.len() > limit {
        return Err(too_big());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    regular(&file.metadata()?)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("the file is not UTF-8 text"))
}

/// Reads and validates an inventory file.
pub fn load(path: &Path) -> Result<Loaded, InventoryError> {
    let text = read_text_file(path, MAX_INVENTORY_BYTES, "an inventory").map_err(|error| {
        InventoryError::Read {
            path: path.to_path_buf(),
            error,
        }
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    load_str(path, &text, &base, &expand::process_env)
}

/// Validates inventory text. `file` names it in messages, `base` resolves relative paths, and
/// `env` answers `${VAR}` lookups.
pub fn load_str(
    file: &Path,
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, InventoryError> {
    let invalid = |diagnostics: Vec<Diagnostic>| InventoryError::Invalid {
        file: file.to_path_buf(),
        source_text: text.to_string(),
        diagnostics,
    };
    let ix = LocationIndex::build(text);
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(invalid(vec![Diagnostic::error("", "the inventory is empty").hint(
            "start from `kubeforge init > cluster.yaml`, or copy one of the examples in inventories/",
        )]));
    }
    let mut inv: Inventory = match serde_saphyr::from_str(text) {
        Ok(inv) => inv,
        Err(e) => return Err(invalid(vec![yaml_error(&e, &ix, text)])),
    };
    let mut diags = Vec::new();
    let failed_paths = expand_inventory(&mut inv, &ix, env, &mut diags);

    let mut catalog = Catalog::builtin()?;
    let home = dirs::home_dir();
    if let Some(m) = &inv.spec.artifacts.manifest {
        let p = expand::resolve_path(m, base, home.as_deref());
        match ReleaseManifest::load(&p) {
            Ok(manifest) => catalog.add(&p.display().to_string(), manifest),
            Err(e) => diags.push(
                Diagnostic::error("spec.artifacts.manifest", e.to_string())
                    .hint("point it at a release manifest in the format of images/*.yaml")
                    .at(ix.value_pos("spec.artifacts.manifest")),
            ),
        }
    }
    // the site registry's CA (mode mirror): read once, for kubeforge and for the nodes
    let mut site_ca = None;
    if let Some(ca) = inv
        .spec
        .artifacts
        .images
        .as_ref()
        .and_then(|i| i.registry.as_ref())
        .and_then(|r| r.ca_file.as_deref())
    {
        let p = expand::resolve_path(ca, base, home.as_deref());
        let at = "spec.artifacts.images.registry.caFile";
        match std::fs::read_to_string(&p) {
            Ok(pem) if pem.len() < 1 << 20 && pem.contains("-----BEGIN CERTIFICATE-----") => {
                site_ca = Some(pem)
            }
            Ok(_) => diags.push(
                Diagnostic::error(at, format!("{} holds no PEM certificate", p.display()))
                    .hint("the CA that signed the registry's certificate, in PEM (-----BEGIN CERTIFICATE-----)")
                    .at(ix.value_pos(at)),
            ),
            Err(e) => diags.push(
                Diagnostic::error(at, format!("cannot read {}: {e}", p.display()))
                    .hint("a PEM file of the registry's CA, relative to the inventory")
                    .at(ix.value_pos(at)),
            ),
        }
    }
    if let Some(b) = &inv.spec.artifacts.bundle
        && !failed_paths.iter().any(|p| p == "spec.artifacts.bundle")
    {
        let dir = expand::resolve_path(b, base, home.as_deref());
        let at = ix.value_pos("spec.artifacts.bundle");
        match validate::bundle_dir_problem(&dir) {
            Some((message, hint)) => diags.push(
                Diagnostic::error("spec.artifacts.bundle", message)
                    .hint(hint)
                    .at(at),
            ),
            // the bundle's copy of the release manifest, for a release this kubeforge does
            // not carry built in
            None => {
                let version = crate::release::parse_version(&inv.spec.kubernetes.version);
                if let Some(v) = version
                    && catalog.get(&v).is_none()
                {
                    match crate::bundle::load_release(&dir) {
                        Ok(Some((origin, m))) => catalog.add(&origin, m),
                        Ok(None) => {}
                        Err(e) => diags.push(
                            Diagnostic::error("spec.artifacts.bundle", e.to_string())
                                .hint("run `kubeforge artifacts fetch` again to repair the bundle")
                                .at(at),
                        ),
                    }
                }
            }
        }
    }
    diags.extend(
        validate::validate(&inv, &ix, &catalog)
            .into_iter()
            .filter(|d| !failed_paths.contains(&d.path)),
    );
    diags.sort_by_key(|d| (d.severity, d.pos.map(|p| (p.line, p.column))));
    if diags.iter().any(Diagnostic::is_error) {
        return Err(invalid(diags));
    }
    let mut cluster = Cluster::from_inventory(&inv, base).map_err(|what| {
        invalid(vec![Diagnostic::error(
            "",
            format!("internal error: a validated inventory did not convert ({what})"),
        )])
    })?;
    if let Some(r) = cluster.artifacts.site_registry.as_mut() {
        r.ca_pem = site_ca;
    }
    Ok(Loaded {
        file: file.to_path_buf(),
        source: text.to_string(),
        inventory: inv,
        cluster,
        catalog,
        warnings: diags,
    })
}

/// Expands `${VAR}` in every string value. The inventory is walked as JSON, whose keys are the
/// YAML's own (camelCase), so the paths match the location index. Returns the paths that failed.
fn expand_inventory(
    inv: &mut Inventory,
    ix: &LocationIndex,
    env: &dyn Fn(&str) -> Option<String>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let Ok(mut value) = serde_json::to_value(&*inv) else {
        return Vec::new();
    };
    let mut failed = Vec::new();
    walk_strings(
        &mut value,
        String::new(),
        &mut |path, s| match expand::expand_env(s, env) {
            Ok(v) if v.chars().any(diag::is_invisible) => {
                diags.push(
                    Diagnostic::error(
                        path.clone(),
                        format!(
                            "the value `{}` holds a control character or an escape sequence",
                            diag::visible(&v)
                        ),
                    )
                    .hint("values are plain single-line text: remove the control characters (terminal escape sequences, bidi overrides, newlines)")
                    .at(ix.value_pos(&path)),
                );
                failed.push(path);
            }
            Ok(v) => {
                // a chart's value taken from the environment may be a secret: redacted from
                // every message (the values themselves are never printed)
                if v != *s
                    && path.starts_with("spec.addons.charts")
                    && (path.contains(".values.") || path.contains(".values["))
                {
                    crate::secrets::register(&v);
                }
                *s = v
            }
            Err(e) => {
                let hint = match e {
                    expand::ExpandError::Undefined(_) => {
                        "export the variable before running kubeforge, use ${NAME:-default}, or write $$ for a literal $"
                    }
                    _ => "write ${NAME} or ${NAME:-default}; $$ is a literal $",
                };
                diags.push(
                    Diagnostic::error(path.clone(), e.to_string())
                        .hint(hint)
                        .at(ix.value_pos(&path)),
                );
                failed.push(path);
            }
        },
    );
    if let Ok(expanded) = serde_json::from_value(value) {
        *inv = expanded;
    }
    failed
}

fn walk_strings(v: &mut serde_json::Value, path: String, f: &mut dyn FnMut(String, &mut String)) {
    match v {
        serde_json::Value::String(s) => f(path, s),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk_strings(item, locate::join_index(&path, i), f);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                walk_strings(item, locate::join_key(&path, k), f);
            }
        }
        _ => {}
    }
}

/// Turns a YAML or type error into a diagnostic with a field path and a hint.
fn yaml_error(e: &serde_saphyr::Error, ix: &LocationIndex, text: &str) -> Diagnostic {
    let inner = e.without_snippet();
    if let serde_saphyr::Error::Budget { breach, .. } = inner {
        let (message, hint) = explain_budget(breach);
        let pos = e
            .location()
            .filter(|l| l.line() > 0)
            .map(|l| locate::Pos {
                line: l.line() as usize,
                column: l.column() as usize,
                len: 1,
            })
            .unwrap_or(locate::Pos {
                line: 1,
                column: 1,
                len: 1,
            });
        return Diagnostic {
            severity: Severity::Error,
            path: ix.path_at(pos.line, pos.column).unwrap_or_default(),
            message,
            hint: Some(hint.into()),
            pos: Some(pos),
        };
    }
    let raw = serde_saphyr::DefaultMessageFormatter
        .format_message(inner)
        .to_string();
    let raw: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let loc = e.location().filter(|l| l.line() > 0);
    let pos = loc.map(|l| locate::Pos {
        line: l.line() as usize,
        column: l.column() as usize,
        len: l.span().len() as usize,
    });
    let mut at = pos
        .and_then(|p| ix.path_at(p.line, p.column))
        .unwrap_or_default();
    let mut pos = pos;
    if raw.starts_with("missing field") {
        // reported at a key of the mapping that lacks the field: name the mapping itself, and
        // point at its own key
        if let Some(p) = pos
            && ix.is_key_at(&at, p.line, p.column)
        {
            at = locate::parent(&at).unwrap_or_default();
        }
        if !at.is_empty() {
            pos = ix.key_pos(&at).or(pos);
        }
    }
    if raw.contains("found a tab") || raw.contains("tabs disallowed") {
        // the parser notices a tab where a token ends, possibly on an earlier line: point at
        // the first tab from the reported line on
        let from = pos.map(|p| p.line).unwrap_or(1);
        if let Some((line, column)) = text
            .lines()
            .enumerate()
            .skip(from.saturating_sub(1))
            .find_map(|(i, l)| l.find('\t').map(|c| (i + 1, c + 1)))
        {
            pos = Some(locate::Pos {
                line,
                column,
                len: 1,
            });
            at = ix.path_at(line, column).unwrap_or(at);
        }
    }
    if raw.contains("multiple YAML documents") {
        // point at the `---` that starts the second document
        let mut seen_content = false;
        for (i, l) in text.lines().enumerate() {
            if l.starts_with("---") && seen_content {
                pos = Some(locate::Pos {
                    line: i + 1,
                    column: 1,
                    len: 3,
                });
                at = String::new();
                break;
            }
            if !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with("---") {
                seen_content = true;
            }
        }
    }
    let (path, message, hint) = explain(&raw, &at);
    Diagnostic {
        severity: Severity::Error,
        path,
        message,
        hint,
        pos,
    }
}

/// The YAML parser's resource limits, said in plain words: what was too big, and what to do.
fn explain_budget(breach: &serde_saphyr::budget::BudgetBreach) -> (String, &'static str) {
    use serde_saphyr::budget::BudgetBreach as B;
    const SMALLER: &str = "an inventory is a few KiB of plain YAML: check that this is the right file, or split the cluster into smaller inventories";
    match breach {
        B::Depth { depth } => (
            format!(
                "the file nests too deeply (more than {} levels of lists and mappings)",
                depth.saturating_sub(1)
            ),
            "an inventory nests only a few levels: look for runaway brackets or indentation",
        ),
        B::Aliases { .. }
        | B::AliasAnchorRatio { .. }
        | B::RecordedAnchorEvents { .. }
        | B::RecordedAnchorBytes { .. } => (
            "the file has too many YAML aliases (*name): expanding them would make it too large"
                .into(),
            "write the values out, or use fewer aliases; an inventory needs few or none",
        ),
        B::Anchors { .. } => (
            "the file defines too many YAML anchors (&name)".into(),
            "write the values out; an inventory needs few anchors or none",
        ),
        B::MergeKeys { .. } => (
            "the file has too many YAML merge keys (<<)".into(),
            "write the values out; an inventory needs few merge keys or none",
        ),
        B::Documents { .. } => (
            "the file holds too many YAML documents".into(),
            "an inventory is one document (one cluster)",
        ),
        B::Events { .. } | B::Nodes { .. } => (
            "the file is too large: it has too many values for an inventory".into(),
            SMALLER,
        ),
        B::ScalarBytes { .. } | B::InputBytes { .. } => (
            "the file is too large: its text values are too long for an inventory".into(),
            SMALLER,
        ),
        other => (
            format!("the file is too complex for an inventory ({other:?})"),
            SMALLER,
        ),
    }
}

/// The wording of serde's and the YAML parser's messages, made actionable.
fn explain(raw: &str, at: &str) -> (String, String, Option<String>) {
    let backticked = |s: &str| -> Option<String> {
        let a = s.find('`')?;
        let b = s[a + 1..].find('`')?;
        Some(s[a + 1..a + 1 + b].to_string())
    };
    let expected_list = |s: &str| -> Vec<String> {
        let Some(i) = s.find("expected ") else {
            return Vec::new();
        };
        let list = &s[i + "expected ".len()..];
        let list = list.strip_prefix("one of ").unwrap_or(list);
        list.split(", ")
            .flat_map(|p| p.split(" or "))
            .map(|p| p.trim().trim_matches('`').to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    if raw.starts_with("unknown field") || raw.starts_with("unknown variant") {
        let what = if raw.starts_with("unknown field") {
            "field"
        } else {
            "value"
        };
        let given = backticked(raw).unwrap_or_default();
        let allowed = expected_list(raw);
        let refs: Vec<&str> = allowed.iter().map(String::as_str).collect();
        let list = if refs.is_empty() {
            "none".to_string()
        } else {
            refs.join(", ")
        };
        let hint = match suggest(&given, &refs) {
            Some(s) => format!("did you mean `{s}`? Allowed here: {list}"),
            None => format!("allowed here: {list}"),
        };
        // An unknown field is reported at its key, so `at` already names it.
        return (
            at.to_string(),
            format!("unknown {what} `{given}`"),
            Some(hint),
        );
    }
    if raw.starts_with("missing field") {
        let field = backticked(raw).unwrap_or_default();
        let path = locate::join_key(at, &field);
        let example = match field.as_str() {
            "version" => "version: 1.33.5",
            "name" => "name: cp1",
            "address" => "address: 10.0.0.11",
            "role" => "role: control-plane (or worker)",
            "kubernetes" => "kubernetes: {version: 1.33.5}",
            "metadata" => "metadata: {name: prod}",
            "apiVersion" => "apiVersion: kubeforge.io/v1alpha1",
            "kind" => "kind: Cluster",
            "spec" => "spec: {kubernetes: {version: 1.33.5}, hosts: [...]}",
            "image" => "image: ubuntu-24.04",
            "flavor" => "flavor: m1.large",
            "count" => "count: 3",
            "host" => "host: 10.0.0.10",
            _ => "",
        };
        let hint = if example.is_empty() {
            format!("add `{field}` here")
        } else {
            format!("add `{example}` here")
        };
        return (
            path,
            format!("missing required field `{field}`"),
            Some(hint),
        );
    }
    if raw.starts_with("duplicate mapping key") {
        let key = raw
            .trim_start_matches("duplicate mapping key:")
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        return (
            at.to_string(),
            format!("duplicate key `{key}`"),
            Some("a key may appear only once in a mapping; merge the two entries".into()),
        );
    }
    if let Some(t) = raw.strip_prefix("invalid ") {
        let range = match t {
            "u8" => Some("0 to 255"),
            "u16" => Some("0 to 65535"),
            "u32" => Some("0 to 4294967295"),
            "u64" => Some("0 to 18446744073709551615"),
            _ => None,
        };
        if let Some(r) = range {
            return (
                at.to_string(),
                format!("expected a whole number from {r}"),
                Some("write a plain number without quotes or units".into()),
            );
        }
    }
    if raw.starts_with("cannot deserialize null") {
        return (
            at.to_string(),
            "a value is required here".into(),
            Some("write the value after the colon, or remove the key to use the default".into()),
        );
    }
    if raw == "expected mapping start"
        || raw.contains("expected a map")
        || raw.contains("expected struct")
    {
        return (
            at.to_string(),
            "expected a mapping (key: value entries) here".into(),
            Some("indent the entries below the key, or write {key: value}".into()),
        );
    }
    if raw == "expected sequence start" || raw.contains("expected a sequence") {
        return (
            at.to_string(),
            "expected a list here".into(),
            Some("write one `- item` per line below the key, or [a, b]".into()),
        );
    }
    if raw.contains("multiple YAML documents") {
        return (
            at.to_string(),
            "the file holds more than one YAML document".into(),
            Some("an inventory is one document (one cluster): remove this `---` and what follows, or move it to a file of its own".into()),
        );
    }
    if raw.contains("invalid boolean") {
        return (
            at.to_string(),
            "expected true or false".into(),
            Some("write true or false, without quotes".into()),
        );
    }
    if raw == "expected string scalar" || raw.starts_with("expected string") {
        return (
            at.to_string(),
            "expected a single text value here, not a list or a mapping".into(),
            Some("write one value after the colon, e.g. `role: worker`".into()),
        );
    }
    if raw.starts_with("invalid type") {
        return (
            at.to_string(),
            raw.to_string(),
            Some("quote the value if it is text, e.g. \"1.30\"".into()),
        );
    }
    if raw.contains("found a tab") || raw.contains("tabs disallowed") {
        return (
            at.to_string(),
            format!("a tab character where YAML allows only spaces ({raw})"),
            Some("YAML indentation must use spaces, not tabs: replace the tab with spaces".into()),
        );
    }
    let hint = if raw.contains("tab") {
        "YAML indentation must use spaces, not tabs"
    } else {
        "check the indentation, quoting and brackets on this line and the one above"
    };
    (at.to_string(), raw.to_string(), Some(hint.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_unknown_field() {
        let (p, m, h) = explain(
            "unknown field `controlPlan`, expected one of `kubernetes`, `controlPlane`, `ssh`",
            "spec.controlPlan",
        );
        assert_eq!(p, "spec.controlPlan");
        assert_eq!(m, "unknown field `controlPlan`");
        assert!(h.unwrap().starts_with("did you mean `controlPlane`?"));
        let (_, _, h) = explain("unknown field `x`, expected `a` or `b`", "x");
        assert_eq!(h.unwrap(), "allowed here: a, b");
    }

    /// Runs `f` on a thread and fails if it does not return within 20 s (a FIFO or /dev/zero
    /// read would otherwise hang the test instead of failing it).
    fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("reading did not return: it blocked or read forever")
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn inventory_must_be_a_regular_file_of_bounded_size() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.yaml");
        mkfifo(&fifo);
        for (path, expect) in [
            (
                PathBuf::from("/dev/zero"),
                "a character device, not a regular file",
            ),
            (fifo.clone(), "a FIFO (named pipe), not a regular file"),
            (dir.path().to_path_buf(), "a directory, not a regular file"),
        ] {
            let p = path.clone();
            let e = within_deadline(move || load(&p)).unwrap_err().to_string();
            assert!(e.contains(expect), "{}: {e}", path.display());
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; MAX_INVENTORY_BYTES as usize + 1]).unwrap();
        let e = load(&big).unwrap_err().to_string();
        assert!(e.contains("larger than 4 MiB"), "{e}");
        let ok = dir.path().join("ok.txt");
        std::fs::write(&ok, "x").unwrap();
        assert_eq!(read_text_file(&ok, 1, "a test").unwrap(), "x");
        std::fs::write(&ok, "xy").unwrap();
        assert!(read_text_file(&ok, 1, "a test").is_err());
    }

    #[test]
    fn artifacts_manifest_must_be_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("manifest.yaml");
        mkfifo(&fifo);
        let text = format!(
            "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: m}}\nspec:\n  kubernetes: {{version: 1.33.5}}\n  artifacts: {{manifest: {}}}\n  hosts:\n    - {{name: cp1, address: 10.0.0.11, role: control-plane}}\n",
            fifo.display()
        );
        let e = within_deadline(move || {
            load_str(Path::new("c.yaml"), &text, Path::new("/"), &|_| None).unwrap_err()
        });
        let InventoryError::Invalid { diagnostics, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(diagnostics[0].path, "spec.artifacts.manifest");
        assert!(
            diagnostics[0]
                .message
                .contains("a FIFO (named pipe), not a regular file"),
            "{:?}",
            diagnostics[0]
        );
        let dev = within_deadline(|| ReleaseManifest::load(Path::new("/dev/zero")).unwrap_err());
        assert!(dev.to_string().contains("character device"), "{dev}");
    }

    #[test]
    fn parser_limits_are_said_in_plain_words() {
        use serde_saphyr::budget::BudgetBreach as B;
        assert!(
            explain_budget(&B::Depth { depth: 65 })
                .0
                .contains("nests too deeply")
        );
        assert!(
            explain_budget(&B::Aliases { aliases: 1 })
                .0
                .contains("too many YAML aliases")
        );
        assert!(
            explain_budget(&B::Nodes { nodes: 1 })
                .0
                .contains("too large")
        );
        let mut text = String::from(
            "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {name: a}\nspec:\n  kubernetes: {version: 1.33.5}\n  hosts:\n    - {name: cp1, address: 10.0.0.11, role: control-plane, labels: &l {a: b}}\n",
        );
        for i in 0..120 {
            text.push_str(&format!(
                "    - {{name: w{i}, address: 10.0.1.{}, role: worker, labels: *l}}\n",
                i + 1
            ));
        }
        let e = load_str(Path::new("a.yaml"), &text, Path::new("/"), &|_| None).unwrap_err();
        let rendered = e.render(false);
        assert!(!rendered.contains("budget"), "{rendered}");
        assert!(rendered.contains("too many YAML aliases"), "{rendered}");
    }

    #[test]
    fn explain_missing_field_extends_the_path() {
        let (p, m, _) = explain("missing field `version`", "spec.kubernetes");
        assert_eq!(p, "spec.kubernetes.version");
        assert_eq!(m, "missing required field `version`");
    }
}
