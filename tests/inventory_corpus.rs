//! The corpus of bad (and warned-about) inventories under tests/inventory-corpus/: each file's
//! exact messages are a snapshot, so a change in wording is a visible diff. Every error must
//! carry a field path, a line and column in the file, and a hint.

use kubeforge::inventory::{self, InventoryError};
use std::path::Path;

fn env(name: &str) -> Option<String> {
    (name == "KF_TEST_ADDR").then(|| "10.0.0.11".to_string())
}

fn check(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let rel = Path::new("tests/inventory-corpus").join(path.file_name().unwrap());
    // relative, so that messages naming resolved paths do not depend on where the checkout is
    let base = rel.parent().unwrap();
    match inventory::load_str(&rel, &text, base, &env) {
        Ok(loaded) => {
            assert!(
                !loaded.warnings.is_empty(),
                "{}: valid files in the corpus must warn",
                rel.display()
            );
            format!(
                "VALID: {}\n{}",
                loaded.cluster.summary(),
                loaded.render_warnings(false)
            )
        }
        Err(e @ InventoryError::Invalid { .. }) => {
            let InventoryError::Invalid { diagnostics, .. } = &e else {
                unreachable!()
            };
            let empty_file = text
                .lines()
                .all(|l| l.trim().is_empty() || l.starts_with('#'));
            for d in diagnostics {
                assert!(d.hint.is_some(), "{}: no hint for {d:?}", rel.display());
                if !empty_file {
                    let pos = d
                        .pos
                        .unwrap_or_else(|| panic!("{}: no position for {d:?}", rel.display()));
                    assert!(
                        pos.line >= 1 && pos.column >= 1,
                        "{}: bad position {pos:?}",
                        rel.display()
                    );
                    assert!(
                        !d.path.is_empty()
                            || text.starts_with('-')
                            || d.message.contains("more than one YAML document"),
                        "{}: no path for {d:?}",
                        rel.display()
                    );
                }
            }
            format!("{}\n{e}\n", e.render(false))
        }
        Err(e) => panic!("{}: unexpected {e}", rel.display()),
    }
}

#[test]
fn corpus_messages() {
    insta::glob!("inventory-corpus/*.yaml", |path| {
        insta::assert_snapshot!(check(path));
    });
}

#[test]
fn corpus_is_not_empty() {
    let n = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/inventory-corpus"
    ))
    .unwrap()
    .count();
    assert!(n >= 30, "only {n} corpus files");
}
