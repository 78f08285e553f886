//! The real binary on real files: exit codes, stdout/stderr split, JSON output, init, version,
//! completion.

use std::path::PathBuf;
use std::process::{Command, Output};

fn kubeforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("KUBEFORGE_FILE")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_example_inventory_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("inventories");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let out = kubeforge(&["validate", "-f", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        assert!(stdout.contains(": valid: cluster "), "{stdout}");
        assert_eq!(stdout.lines().count(), 1, "one-line summary: {stdout}");
        n += 1;
    }
    assert!(n >= 3, "at least three examples");
}

#[test]
fn invalid_file_exits_1_with_every_error_on_stderr() {
    let out = kubeforge(&["validate", "-f", "tests/inventory-corpus/many-errors.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let err = text(&out.stderr);
    assert_eq!(
        err.matches("\nerror: ").count() + usize::from(err.starts_with("error: ")),
        8,
        "{err}"
    );
    assert!(
        err.contains("--> tests/inventory-corpus/many-errors.yaml:14:44"),
        "{err}"
    );
    assert!(err.contains("= hint: did you mean `worker`?"), "{err}");
    assert!(
        err.ends_with("tests/inventory-corpus/many-errors.yaml: 8 errors\n"),
        "{err}"
    );
    assert!(!err.contains("\x1b["), "NO_COLOR honoured");
}

#[test]
fn json_output_is_machine_readable() {
    let out = kubeforge(&[
        "validate",
        "-f",
        "tests/inventory-corpus/unknown-field-typo.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let e = &v["errors"][0];
    assert_eq!(e["path"], "spec.controlPlan");
    assert_eq!(e["line"], 8);
    assert_eq!(e["column"], 3);
    assert_eq!(e["severity"], "error");
    assert!(e["hint"].as_str().unwrap().contains("controlPlane"));

    let out = kubeforge(&[
        "validate",
        "-f",
        "inventories/bare-metal-ha.yaml",
        "-o",
        "json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert!(v["summary"].as_str().unwrap().contains("3 control planes"));
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = kubeforge(&["validate", "-f", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot read inventory no/such/file.yaml: No such file or directory (os error 2) (check the path given to -f"),
        "{err}"
    );
    assert_eq!(err.matches("No such file").count(), 1, "said once: {err}");
}

/// Runs kubeforge and kills it if it has not exited within 30 s (a read of /dev/zero or a FIFO
/// would otherwise hang the test).
fn kubeforge_within_deadline(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("KUBEFORGE_FILE")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("kubeforge {args:?} did not exit: it blocked or read forever");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn devices_and_fifos_are_refused_not_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("cluster.yaml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (path, kind) in [
        ("/dev/zero", "a character device"),
        (fifo.to_str().unwrap(), "a FIFO (named pipe)"),
    ] {
        let out = kubeforge_within_deadline(&["validate", "-f", path]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "cannot read inventory {path}: it is {kind}, not a regular file"
            )),
            "{err}"
        );
    }
}

#[test]
fn the_preflight_checks_are_listed_without_an_inventory() {
    let out = kubeforge(&["status", "--list-checks"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    for check in ["Swap", "Ports", "ClockSkew", "KernelBridgeNetfilter"] {
        assert!(
            listed.lines().any(|l| l.starts_with(check)),
            "{check} in:\n{listed}"
        );
    }
    let out = kubeforge(&["status"]);
    assert_eq!(out.status.code(), Some(2), "status needs --file");
}

#[test]
fn init_prints_an_inventory_that_validates() {
    let out = kubeforge(&["init", "--name", "demo"]);
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.yaml");
    std::fs::write(&path, &out.stdout).unwrap();
    let v = kubeforge(&["validate", "-f", path.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v.stderr));
    assert!(text(&v.stdout).contains("cluster demo"));

    let bad = kubeforge(&["init", "--kubernetes-version", "1.2.3"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("not a supported release"));
}

#[test]
fn version_lists_the_releases_from_images() {
    let out = kubeforge(&["version", "-o", "json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let releases: Vec<String> = v["kubernetesReleases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/images"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_suffix(".yaml")
                .map(String::from)
        })
        .collect();
    files.sort_by_key(|f| kubeforge::release::parse_version(f));
    assert_eq!(releases, files);
}

#[test]
fn completion_and_usage_errors() {
    let out = kubeforge(&["completion", "bash"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("kubeforge"));
    let out = kubeforge(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    let out = kubeforge(&["validate", "--help"]);
    assert!(text(&out.stdout).contains("--file"));
}

#[test]
fn command_line_durations_are_bounded() {
    // a timeout that would overflow when kubeforge adds its grace to it is a usage error, said
    // before any inventory is read or host reached
    for args in [
        &[
            "exec",
            "-f",
            "inventories/lab.yaml",
            "--timeout",
            "18446744073709551615",
            "--",
            "true",
        ][..],
        &[
            "exec",
            "-f",
            "inventories/lab.yaml",
            "--timeout",
            "0",
            "--",
            "true",
        ],
        &[
            "status",
            "-f",
            "inventories/lab.yaml",
            "--connect-timeout",
            "18446744073709551615",
        ],
    ] {
        let out = kubeforge(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains("is not in 1..="), "{args:?}: {err}");
    }
}
