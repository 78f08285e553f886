//! Where each value of a YAML file is: a map from field paths (`spec.hosts[2].address`) to
//! source positions, built from the parser's events. Typed deserialization (serde-saphyr) knows
//! nothing of paths; semantic validation knows nothing of positions. This index joins the two so
//! every diagnostic can name the file, line, column and field path.

use granit_parser::{Event, Parser};
use std::collections::BTreeMap;

/// A position in the source: 1-based line and column, and the length (in characters) of the
/// token there (0 when unknown or when the token spans lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    pub len: usize,
}

/// One node of the document: where its key is (for mapping entries) and where its value starts
/// and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Scalar,
    Collection,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub key: Option<Pos>,
    pub value: Pos,
    /// (line, column) just past the end of the value.
    pub end: (usize, usize),
}

#[derive(Debug, Default, Clone)]
pub struct LocationIndex {
    nodes: BTreeMap<String, Node>,
    /// Keys that repeat an earlier key of the same mapping: (position, path).
    repeated_keys: Vec<(Pos, String)>,
}

/// Appends a mapping key to a path: `.key` for plain identifiers, `["key"]` otherwise (label
/// keys such as `topology.kubernetes.io/zone`).
pub fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

pub fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

enum Frame {
    Map {
        path: String,
        key: Option<(String, Pos)>,
        /// nesting depth of a complex (non-scalar) key being skipped
        skipping: usize,
    },
    Seq {
        path: String,
        next: usize,
    },
}

impl LocationIndex {
    /// Builds the index. Never fails: on a syntax error it keeps what it saw so far (the typed
    /// parser reports the error itself).
    pub fn build(source: &str) -> Self {
        let mut index = LocationIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        // paths of open collections, to record their end
        let mut open: Vec<Option<String>> = Vec::new();
        let mut parser = Parser::new_from_str(source);
        let mut events = 0usize;
        while let Some(Ok((event, span))) = parser.next_event() {
            events += 1;
            if events > 1_000_000 {
                break;
            }
            let start = Pos {
                line: span.start.line(),
                column: span.start.col() + 1,
                len: if span.end.line() == span.start.line() {
                    span.end.col().saturating_sub(span.start.col())
                } else {
                    0
                },
            };
            let end = (span.end.line(), span.end.col() + 1);
            let is_node = matches!(
                event,
                Event::Scalar(..)
                    | Event::Alias(..)
                    | Event::SequenceStart(..)
                    | Event::MappingStart(..)
            );
            let opens = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..));
            match event {
                Event::SequenceEnd | Event::MappingEnd => {
                    // a complex key being skipped?
                    if let Some(Frame::Map { skipping, key, .. }) = stack.last_mut()
                        && *skipping > 0
                    {
                        *skipping -= 1;
                        if *skipping == 0 {
                            *key = Some(("?".to_string(), start));
                        }
                        continue;
                    }
                    stack.pop();
                    if let Some(Some(path)) = open.pop()
                        && let Some(node) = index.nodes.get_mut(&path)
                    {
                        node.end = end;
                    }
                    Self::value_done(&mut stack);
                    continue;
                }
                _ if !is_node => continue,
                _ => {}
            }
            // a node: is it a key, or a value?
            if let Some(Frame::Map { key, skipping, .. }) = stack.last_mut() {
                if *skipping > 0 {
                    if opens {
                        *skipping += 1;
                    }
                    continue;
                }
                if key.is_none() {
                    match &event {
                        Event::Scalar(text, ..) => *key = Some((text.to_string(), start)),
                        _ if opens => *skipping = 1,
                        _ => *key = Some(("?".to_string(), start)),
                    }
                    continue;
                }
            }
            let (path, key_pos) = match stack.last_mut() {
                None => (String::new(), None),
                Some(Frame::Map { path, key, .. }) => {
                    let (k, kpos) = key.clone().unwrap_or_else(|| ("?".to_string(), start));
                    (join_key(path, &k), Some(kpos))
                }
                Some(Frame::Seq { path, next }) => {
                    let p = join_index(path, *next);
                    *next += 1;
                    (p, None)
                }
            };
            if index.nodes.contains_key(&path) {
                if let Some(k) = key_pos {
                    index.repeated_keys.push((k, path.clone()));
                }
            } else {
                index.nodes.insert(
                    path.clone(),
                    Node {
                        kind: if opens {
                            Kind::Collection
                        } else {
                            Kind::Scalar
                        },
                        key: key_pos,
                        value: start,
                        end,
                    },
                );
            }
            match event {
                Event::MappingStart(..) => {
                    stack.push(Frame::Map {
                        path: path.clone(),
                        key: None,
                        skipping: 0,
                    });
                    open.push(Some(path));
                }
                Event::SequenceStart(..) => {
                    stack.push(Frame::Seq {
                        path: path.clone(),
                        next: 0,
                    });
                    open.push(Some(path));
                }
                _ => Self::value_done(&mut stack),
            }
        }
        index
    }

    fn value_done(stack: &mut [Frame]) {
        if let Some(Frame::Map { key, .. }) = stack.last_mut() {
            *key = None;
        }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The position to show for a problem with the value at `path`: a scalar's value, or the
    /// key of a mapping or list. A path absent from the file (a default) falls back to the key
    /// of the nearest ancestor that is present.
    pub fn value_pos(&self, path: &str) -> Option<Pos> {
        self.lookup(path, false)
    }

    /// Like `value_pos`, but points at the key of a mapping entry (for unknown or misplaced
    /// fields).
    pub fn key_pos(&self, path: &str) -> Option<Pos> {
        self.lookup(path, true)
    }

    fn lookup(&self, path: &str, prefer_key: bool) -> Option<Pos> {
        let mut p = path.to_string();
        let mut walked = false;
        loop {
            if let Some(n) = self.nodes.get(&p) {
                let key = prefer_key || walked || n.kind == Kind::Collection;
                return Some(if key {
                    n.key.unwrap_or(n.value)
                } else {
                    n.value
                });
            }
            p = parent(&p)?;
            walked = true;
        }
    }

    /// Whether the file itself holds a value at `path` (rather than a default).
    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    /// True when (line, column) is the position of the key of the entry at `path`.
    pub fn is_key_at(&self, path: &str, line: usize, column: usize) -> bool {
        self.nodes
            .get(path)
            .and_then(|n| n.key)
            .is_some_and(|k| k.line == line && k.column == column)
    }

    /// The field path of the node at (line, column): a key or value that starts there, else the
    /// deepest node whose value spans it.
    pub fn path_at(&self, line: usize, column: usize) -> Option<String> {
        let mut exact: Option<&String> = None;
        for (path, n) in &self.nodes {
            let at_key = n.key.is_some_and(|k| k.line == line && k.column == column);
            let at_value = n.value.line == line && n.value.column == column;
            if at_key || at_value {
                // prefer the deepest (longest) path that starts here
                if exact.is_none_or(|e| path.len() > e.len()) {
                    exact = Some(path);
                }
            }
        }
        if let Some(p) = exact {
            return Some(p.clone());
        }
        if let Some((_, p)) = self
            .repeated_keys
            .iter()
            .find(|(k, _)| k.line == line && k.column == column)
        {
            return Some(p.clone());
        }
        let mut best: Option<&String> = None;
        for (path, n) in &self.nodes {
            let starts = (n.value.line, n.value.column) <= (line, column);
            let ends = (line, column) < n.end;
            if starts && ends && best.is_none_or(|b| path.len() > b.len()) {
                best = Some(path);
            }
        }
        if best.is_some() {
            return best.cloned();
        }
        // After a syntax error the index stops early: name the last node before the position.
        self.nodes
            .iter()
            .filter(|(_, n)| (n.value.line, n.value.column) <= (line, column))
            .max_by_key(|(p, n)| (n.value.line, n.value.column, p.len()))
            .map(|(p, _)| p.clone())
    }
}

/// The parent of a path: `spec.hosts[2].address` → `spec.hosts[2]` → `spec.hosts` → `spec` → ``.
pub fn parent(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        // index or quoted key
        let open = if path.ends_with("\"]") {
            // find the `["` that opens it
            path.rfind("[\"")?
        } else {
            path.rfind('[')?
        };
        return Some(path[..open].to_string());
    }
    match path.rfind('.') {
        Some(i) => Some(path[..i].to_string()),
        None => Some(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
apiVersion: kubeforge.io/v1alpha1
spec:
  hosts:
    - name: cp1
      address: 10.0.0.11
    - {name: w1, address: 10.0.0.21, labels: {topology.kubernetes.io/zone: a}}
";

    #[test]
    fn paths_and_positions() {
        let ix = LocationIndex::build(SRC);
        let n = ix.get("spec.hosts[0].address").unwrap();
        assert_eq!((n.value.line, n.value.column, n.value.len), (5, 16, 9));
        assert_eq!(n.key.map(|k| (k.line, k.column)), Some((5, 7)));
        let n = ix.get("spec.hosts[1].address").unwrap();
        assert_eq!((n.value.line, n.value.column), (6, 27));
        let n = ix
            .get("spec.hosts[1].labels[\"topology.kubernetes.io/zone\"]")
            .unwrap();
        assert_eq!(n.value.line, 6);
        assert!(ix.get("spec.hosts[2]").is_none());
    }

    #[test]
    fn missing_paths_fall_back_to_the_parent() {
        let ix = LocationIndex::build(SRC);
        let p = ix.value_pos("spec.hosts[0].role").unwrap();
        assert_eq!((p.line, p.column), (4, 7)); // the mapping of hosts[0]
        let p = ix.value_pos("spec.kubernetes.version").unwrap();
        assert_eq!((p.line, p.column), (2, 1)); // the key `spec:`
        let p = ix.value_pos("spec.hosts").unwrap();
        assert_eq!((p.line, p.column), (3, 3)); // a list is shown at its key
    }

    #[test]
    fn path_at_finds_keys_values_and_enclosing_nodes() {
        let ix = LocationIndex::build(SRC);
        assert_eq!(ix.path_at(5, 7).as_deref(), Some("spec.hosts[0].address"));
        assert_eq!(ix.path_at(5, 16).as_deref(), Some("spec.hosts[0].address"));
        assert_eq!(ix.path_at(6, 8).as_deref(), Some("spec.hosts[1].name"));
        assert_eq!(ix.path_at(1, 1).as_deref(), Some("apiVersion"));
    }

    #[test]
    fn parent_walks_up() {
        assert_eq!(parent("spec.hosts[2].address").unwrap(), "spec.hosts[2]");
        assert_eq!(parent("spec.hosts[2]").unwrap(), "spec.hosts");
        assert_eq!(parent("spec.hosts").unwrap(), "spec");
        assert_eq!(parent("spec").unwrap(), "");
        assert_eq!(parent("a.labels[\"x.y/z\"]").unwrap(), "a.labels");
        assert!(parent("").is_none());
    }

    #[test]
    fn complex_keys_and_broken_yaml_do_not_panic() {
        let ix = LocationIndex::build("? [a, b]\n: c\nd: [1, {e: 2}]\n");
        assert!(ix.get("d[1].e").is_some());
        let _ = LocationIndex::build("a: [\n  b: {\n");
        let _ = LocationIndex::build("&a x: *a\n<<: *a\n");
    }
}
