//! `spec.addons.charts` end to end on harness hosts (1 control plane + 1 worker, image mode
//! pull): the pinned helm (the harness's helm double, from the mirror's "addons") is installed
//! on the API host only; a local chart archive and one from a chart repository (a real HTTP
//! server here, with an index.yaml) are installed with `helm upgrade --install --atomic --wait`;
//! a re-apply with nothing changed calls no helm; a changed value is an upgrade; a corrupted
//! archive is refused before any host changes; a failing chart is named with helm's error.

mod common;

use common::{Harness, cluster_inventory, kubeforge, serial, text};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const V: &str = "1.33.5";
const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";
/// The values' secret: comes from the environment, must never be printed.
const SECRET: &str = "pw-Zq8x1Lm4";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/charts")
        .join(name)
}

fn sha256(p: &Path) -> String {
    kubeforge::artifacts::sha256_hex(&std::fs::read(p).unwrap())
}

/// A chart repository on loopback: serves `files` by path, logs every request path.
fn repo(files: BTreeMap<String, Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/charts/", l.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            log2.lock().unwrap().push(path.clone());
            let resp = match files.get(&path) {
                Some(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = s.write_all(&resp);
        }
    });
    (url, log)
}

fn apply(inv: &Path) -> std::process::Output {
    kubeforge(
        &["apply", "-f", inv.to_str().unwrap(), "--yes"],
        &[("KF_WEB_PASSWORD", SECRET)],
    )
}

fn plan_json(inv: &Path) -> serde_json::Value {
    let out = kubeforge(
        &["plan", "-f", inv.to_str().unwrap(), "-o", "json"],
        &[("KF_WEB_PASSWORD", SECRET)],
    );
    assert!(out.status.success(), "plan: {}", text(&out.stderr));
    assert!(!text(&out.stdout).contains(SECRET) && !text(&out.stderr).contains(SECRET));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn chart_actions(plan: &serde_json::Value) -> Vec<String> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["step"] == "charts")
        .map(|a| a["summary"].as_str().unwrap().to_string())
        .collect()
}

/// The inventory: web (local archive `web`, values from a file and inline, with a secret from
/// the environment) and site (chart `web` 0.2.0 of the repository), plus `more` charts.
fn write_inventory(
    h: &Harness,
    dir: &Path,
    web: &Path,
    web_sha: &str,
    repo_url: &str,
    greeting: &str,
    more: &str,
) -> PathBuf {
    std::fs::write(dir.join("web-values.yaml"), "greeting: from-file\n").unwrap();
    let extra = format!(
        "  addons:\n    charts:\n      - name: web\n        namespace: apps\n        chart: {web}\n        version: 0.1.0\n        sha256: {web_sha}\n        valuesFiles: [web-values.yaml]\n        values: {{greeting: {greeting}, password: \"${{KF_WEB_PASSWORD}}\"}}\n      - name: site\n        repo: {repo_url}\n        chart: web\n        version: 0.2.0\n        sha256: {site_sha}\n{more}",
        web = web.display(),
        site_sha = sha256(&fixture("web-0.2.0.tgz")),
    );
    cluster_inventory(
        h,
        dir,
        "charts",
        V,
        &[(1, "control-plane"), (2, "worker")],
        &extra,
    )
}

fn no_secret(out: &std::process::Output) {
    assert!(
        !text(&out.stdout).contains(SECRET) && !text(&out.stderr).contains(SECRET),
        "the values' secret was printed"
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn charts_install_converge_upgrade_and_fail_by_name() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(2);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let site = std::fs::read(fixture("web-0.2.0.tgz")).unwrap();
    let index = "apiVersion: v1\nentries:\n  web:\n    - name: web\n      version: 0.2.0\n      urls: [web-0.2.0.tgz]\n    - name: web\n      version: 0.1.0\n      urls: [https://unused.invalid/web-0.1.0.tgz]\ngenerated: \"2026-01-01T00:00:00Z\"\n";
    let (repo_url, log) = repo(BTreeMap::from([
        ("/charts/index.yaml".to_string(), index.as_bytes().to_vec()),
        ("/charts/web-0.2.0.tgz".to_string(), site),
    ]));

    // 1. a corrupted archive: refused before any host changes, naming the chart and both digests
    let good = fixture("web-0.1.0.tgz");
    let good_sha = sha256(&good);
    let bad = d.join("web-corrupt.tgz");
    let mut bytes = std::fs::read(&good).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    let bad_sha = sha256(&bad);
    let inv = write_inventory(&h, d, &bad, &good_sha, &repo_url, "one", "");
    let out = apply(&inv);
    no_secret(&out);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("chart web 0.1.0") && err.contains(&good_sha) && err.contains(&bad_sha),
        "{err}"
    );
    assert!(
        !h.sh(1, "ls /usr/local/bin /etc").contains("kubeadm")
            && !h.sh(1, "ls /etc").contains("kubeforge")
            && !h.sh(2, "ls /etc").contains("kubeforge"),
        "a host changed before the archive was verified"
    );

    // 2. the cluster and both charts
    let inv = write_inventory(&h, d, &good, &good_sha, &repo_url, "one", "");
    let plan = plan_json(&inv);
    let charts = chart_actions(&plan);
    assert_eq!(charts.len(), 3, "{charts:?}");
    assert!(charts[0].starts_with("install helm 3.19.0"), "{charts:?}");
    assert!(
        charts[1].starts_with("helm install web 0.1.0"),
        "{charts:?}"
    );
    assert!(
        charts[2].starts_with("helm install site 0.2.0 (web from http://127.0.0.1:"),
        "{charts:?}"
    );
    let out = apply(&inv);
    no_secret(&out);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        log.lock()
            .unwrap()
            .contains(&"/charts/web-0.2.0.tgz".to_string()),
        "the archive came from the repository's index"
    );
    // observed on the cluster: values file < inline values, the secret from the environment
    let cm = h.sh(1, &format!("{KUBECTL} -n apps get configmap web-config -o jsonpath='{{.data.greeting}} {{.data.chart}}'"));
    assert_eq!(cm.trim(), "one 0.1.0");
    let pw = h.sh(
        1,
        &format!(
            "{KUBECTL} -n apps get secret web-secret -o jsonpath='{{.data.password}}' | base64 -d"
        ),
    );
    assert_eq!(pw.trim(), SECRET);
    let cm = h.sh(1, &format!("{KUBECTL} -n default get configmap site-config -o jsonpath='{{.data.greeting}} {{.data.chart}}'"));
    assert_eq!(cm.trim(), "hello 0.2.0");
    // helm on the API host only; no values or archive left behind
    assert!(h.sh(1, "command -v helm").contains("/usr/local/bin/helm"));
    assert!(
        !h.exec(2, "command -v helm").status.success(),
        "helm on the worker"
    );
    assert_eq!(h.sh(1, "ls -A /var/cache/kubeforge/charts").trim(), "");

    // 3. nothing changed: no chart action, no helm call (no new revision)
    let plan = plan_json(&inv);
    assert!(chart_actions(&plan).is_empty(), "{plan}");
    let out = apply(&inv);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let revs = |ns: &str, name: &str| {
        h.sh(1, &format!("{KUBECTL} -n {ns} get secrets -l owner=helm,name={name} -o jsonpath='{{.items[*].metadata.labels.version}}'"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(revs("apps", "web"), ["1"]);
    assert_eq!(revs("default", "site"), ["1"]);

    // 4. a changed value: an upgrade of that chart alone
    let inv = write_inventory(&h, d, &good, &good_sha, &repo_url, "two", "");
    let charts = chart_actions(&plan_json(&inv));
    assert_eq!(charts.len(), 1, "{charts:?}");
    assert!(
        charts[0].starts_with("helm upgrade web 0.1.0") && charts[0].ends_with("(values changed)"),
        "{charts:?}"
    );
    let out = apply(&inv);
    no_secret(&out);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cm = h.sh(
        1,
        &format!("{KUBECTL} -n apps get configmap web-config -o jsonpath='{{.data.greeting}}'"),
    );
    assert_eq!(cm.trim(), "two");
    let mut r = revs("apps", "web");
    r.sort();
    assert_eq!(r, ["1", "2"]);
    assert_eq!(revs("default", "site"), ["1"]);

    // 5. a chart whose install fails: named, with helm's own error
    let broken = fixture("broken-0.1.0.tgz");
    let more = format!(
        "      - {{name: broken, chart: {}, version: 0.1.0, sha256: {}}}\n",
        broken.display(),
        sha256(&broken)
    );
    let inv = write_inventory(&h, d, &good, &good_sha, &repo_url, "two", &more);
    let out = apply(&inv);
    no_secret(&out);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("step charts"), "{err}");
    assert!(
        err.contains("chart broken 0.1.0 (namespace default)"),
        "{err}"
    );
    assert!(err.contains("broken needs .Values.must"), "{err}");
    assert_eq!(h.sh(1, "ls -A /var/cache/kubeforge/charts").trim(), "");

    // 6. a chart dropped from the inventory: left alone, uninstalled only by apply --prune
    let inv = write_inventory(&h, d, &good, &good_sha, &repo_url, "two", "");
    let t = std::fs::read_to_string(&inv).unwrap();
    let start = t.find("      - name: site\n").unwrap();
    let end = start + t[start..].find("sha256:").unwrap();
    let end = end + t[end..].find('\n').unwrap() + 1;
    std::fs::write(&inv, format!("{}{}", &t[..start], &t[end..])).unwrap();
    assert!(chart_actions(&plan_json(&inv)).is_empty());
    let out = kubeforge(
        &["plan", "-f", inv.to_str().unwrap(), "-o", "json", "--prune"],
        &[("KF_WEB_PASSWORD", SECRET)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let destructive = plan["destructive"].as_array().unwrap();
    assert_eq!(destructive.len(), 1, "{plan}");
    assert_eq!(destructive[0]["step"], "uninstall");
    assert!(
        destructive[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("helm uninstall site in namespace default"),
        "{plan}"
    );
    let out = apply(&inv);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        revs("default", "site"),
        ["1"],
        "apply without --prune kept it"
    );
    // off a terminal, without --yes: refused before anything changes
    let out = kubeforge(
        &["apply", "-f", inv.to_str().unwrap(), "--prune"],
        &[("KF_WEB_PASSWORD", SECRET)],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("helm uninstall site in namespace default"),
        "{err}"
    );
    assert_eq!(revs("default", "site"), ["1"]);
    let out = kubeforge(
        &["apply", "-f", inv.to_str().unwrap(), "--prune", "--yes"],
        &[("KF_WEB_PASSWORD", SECRET)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(revs("default", "site").is_empty(), "site was uninstalled");
    assert!(
        !h.exec(
            1,
            &format!("{KUBECTL} -n default get configmap site-config")
        )
        .status
        .success(),
        "site's objects are gone"
    );
    assert_eq!(revs("apps", "web").len(), 2, "web is kept");
}
