//! Arbitrary input never panics the parser or the validator: random text, random YAML-ish
//! token soup, and random byte-level mutations of the example inventories.

use proptest::prelude::*;
use std::path::Path;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) {
    let _ = kubeforge::inventory::load_str(
        Path::new("fuzz.yaml"),
        text,
        Path::new("/nonexistent"),
        &no_env,
    );
    let _ = kubeforge::inventory::locate::LocationIndex::build(text);
}

fn examples() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/inventories");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    v
}

const TOKENS: &[&str] = &[
    "apiVersion: kubeforge.io/v1alpha1\n",
    "kind: Cluster\n",
    "metadata:\n",
    "  name: x\n",
    "spec:\n",
    "  kubernetes:\n",
    "    version: 1.33.5\n",
    "  hosts:\n",
    "    - ",
    "{name: a, address: 10.0.0.1, role: worker}",
    "role: control-plane",
    "[",
    "]",
    "{",
    "}",
    ":",
    "- ",
    "\n",
    "  ",
    "\t",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!str ",
    "'",
    "\"",
    "${X}",
    "~",
    "? ",
    "---\n",
    "...\n",
    "#",
    "|\n",
    ">\n",
    "null",
    "1e999",
    "0x10",
    "ssh:\n",
    "bastion: {}",
    "openstack: {image: x, controlPlane: {count: 4294967295, flavor: f}}",
    "podSubnet: ::/0",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(s in "\\PC{0,400}") {
        load(&s);
    }

    #[test]
    fn token_soup_never_panics(parts in proptest::collection::vec(0..TOKENS.len(), 0..60)) {
        let s: String = parts.iter().map(|i| TOKENS[*i]).collect();
        load(&s);
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..12),
    ) {
        let ex = examples();
        let mut bytes = ex[which % ex.len()].clone().into_bytes();
        for (pos, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = pos % bytes.len();
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        load(&String::from_utf8_lossy(&bytes));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever the inventory holds, rendered diagnostics carry no raw control character or
    /// bidi override (only the newlines that end lines).
    #[test]
    fn diagnostics_never_echo_control_characters(s in "(\\PC|[\\x00-\\x1f\\x7f-\\u{9f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}]){0,80}") {
        use kubeforge::inventory::diag::{is_invisible, render, Diagnostic};
        use kubeforge::inventory::locate::Pos;
        let d = Diagnostic::error(s.clone(), s.clone())
            .hint(s.clone())
            .at(Some(Pos { line: 1, column: 1, len: s.chars().count() }));
        let out = render(&[d], "f.yaml", &s.replace(['\n', '\r'], " "), false);
        prop_assert!(!out.chars().any(|c| is_invisible(c) && c != '\n'), "{:?}", out);
    }

    /// Every number a resolver would take as an IPv4 address is refused, however it is spelt,
    /// unless it is the canonical dotted quad.
    #[test]
    fn numeric_spellings_are_refused(v in any::<u32>(), a in any::<[u8; 4]>()) {
        use kubeforge::inventory::validate::host_address_problem;
        prop_assert!(host_address_problem(&v.to_string()).is_some());
        let hex = format!("{v:#x}");
        prop_assert!(host_address_problem(&hex).is_some(), "{}", hex);
        let canonical = std::net::Ipv4Addr::from(a).to_string();
        let padded = format!("0{}", a[0]) + &canonical[a[0].to_string().len()..];
        prop_assert!(host_address_problem(&padded).is_some(), "{}", padded);
        prop_assert_eq!(
            host_address_problem(&canonical).is_none(),
            !std::net::Ipv4Addr::from(a).is_unspecified()
        );
    }
}
