//! Image mode `push` on harness hosts whose egress is cut: kubeforge fetches each image once on
//! the operator's machine from a real registry (Debian's docker-registry, the CNCF distribution
//! registry), verifies every blob, and real containerd on the nodes imports what each lacks.
//! The images are small real OCI images built here (the kubelet double runs none of them: what
//! is checked is what containerd holds, by digest).

mod common;

use common::registry::{Registry, TestImage, Tls};
use common::{Harness, cluster_inventory, kubeforge, text};
use kubeforge::release::{Image, ReleaseManifest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static M: std::sync::Mutex<()> = std::sync::Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

/// The release's images, rebuilt as test images and pushed into `r` under their upstream paths
/// (`registry.k8s.io/coredns/coredns` -> `<r>/coredns/coredns`); the manifest is rewritten to
/// pin the built digests. Returns the manifest's path and each image's (reference, test image).
fn release_with_test_images(
    h: &Harness,
    dir: &Path,
    r: &Registry,
    version: &str,
) -> (PathBuf, BTreeMap<String, (Image, TestImage)>) {
    let harness = common::harness_manifest(h, dir, version);
    let mut m = ReleaseManifest::load(&harness).unwrap();
    let mut built = BTreeMap::new();
    let mut rewrite = |key: &str, text: &mut String| {
        let img = Image::parse(text).unwrap();
        let (_, path) = img.repo.split_once('/').unwrap();
        let t = TestImage::build(&img.tag, key);
        t.push(r, None, path);
        let pinned = Image {
            digest: Some(t.digest()),
            ..img
        };
        *text = pinned.reference();
        built.insert(key.to_string(), (pinned, t));
    };
    for (k, v) in m.images.iter_mut() {
        rewrite(&format!("images.{k}"), v);
    }
    for (name, cni) in m.cni.iter_mut() {
        for (k, v) in cni.images.iter_mut() {
            rewrite(&format!("cni.{name}.images.{k}"), v);
        }
    }
    // JSON is YAML: the manifest as kubeforge reads it
    let p = dir.join(format!("manifest-pushed-{version}.yaml"));
    std::fs::write(&p, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    (p, built)
}

/// The images containerd holds on node `i` (`ctr images ls`: reference -> digest, labels).
fn node_images(h: &Harness, i: usize) -> BTreeMap<String, (String, String)> {
    let out = h.sh(
        i,
        "[ -x /usr/local/bin/ctr ] && [ -S /run/containerd/containerd.sock ] && /usr/local/bin/ctr -n k8s.io images ls || true",
    );
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| {
                (
                    f[0].to_string(),
                    (f[2].to_string(), f.last().unwrap().to_string()),
                )
            })
        })
        .collect()
}

/// Cuts node `i` off every registry: it may answer SSH and reach the other nodes and the
/// harness's apt proxy (OS packages stay the package manager's), nothing else.
fn cut_egress(h: &Harness, i: usize) {
    cut_egress_but(h, i, None);
}

/// The same, leaving one port of the harness host open (a site registry there).
fn cut_egress_but(h: &Harness, i: usize, open: Option<u16>) {
    let allow = open
        .map(|p| format!("iptables -A OUTPUT -d 10.123.0.1 -p tcp --dport {p} -j ACCEPT && "))
        .unwrap_or_default();
    h.sh(
        i,
        &format!(
            "iptables -F OUTPUT && \
             iptables -A OUTPUT -o lo -j ACCEPT && \
             iptables -A OUTPUT -p tcp --sport 22 -j ACCEPT && \
             iptables -A OUTPUT -d 10.123.0.1 -p tcp --dport 3142 -j ACCEPT && {allow}\
             iptables -A OUTPUT -d 10.123.0.1 -j REJECT && \
             iptables -A OUTPUT -d 10.123.0.0/24 -j ACCEPT && \
             iptables -A OUTPUT -j REJECT"
        ),
    );
    // proof: the artifact mirror is out of its reach
    let probe = h.sh(
        i,
        "for p in 8080 5000; do (exec 3<>/dev/tcp/10.123.0.1/$p) 2>/dev/null && echo reachable-$p; done; echo probed",
    );
    assert_eq!(
        probe.trim(),
        "probed",
        "node{i} still reaches the host: {probe}"
    );
}

/// An inventory for nodes 1 (control plane) and 2 (worker) with `extra` artifacts settings and
/// the test release manifest in place of the harness's.
fn inventory_with(h: &Harness, dir: &Path, name: &str, manifest: &Path, extra: &str) -> PathBuf {
    let inv = cluster_inventory(
        h,
        dir,
        name,
        "1.33.5",
        &[(1, "control-plane"), (2, "worker")],
        extra,
    );
    let text_inv = std::fs::read_to_string(&inv).unwrap();
    let harness_manifest = dir.join("manifest-1.33.5.yaml");
    std::fs::write(
        &inv,
        text_inv.replace(
            &harness_manifest.display().to_string(),
            &manifest.display().to_string(),
        ),
    )
    .unwrap();
    inv
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn push_mode_installs_with_no_registry_in_reach_and_a_second_apply_pushes_nothing() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(2);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(Registry::start(None, false));
    let (manifest, built) = release_with_test_images(&h, dir.path(), &r, "1.33.5");
    let extra = format!(
        "    images: {{mode: push}}\n    allowHttpRegistryMirrors: true\n    registryMirrors: {{registry.k8s.io: ['http://{0}'], ghcr.io: ['http://{0}']}}\n",
        r.host()
    );
    let inv = inventory_with(&h, dir.path(), "air", &manifest, &extra);
    let apply = |extra: &[&str]| {
        let mut a = vec!["apply", "-f", inv.to_str().unwrap(), "--yes"];
        a.extend_from_slice(extra);
        kubeforge(&a, &[])
    };

    // 1. a blob the registry serves corrupted: the run stops before any host changes, naming
    //    the image and both digests
    let (pause, pause_img) = &built["images.pause"];
    let layer = &pause_img.platform("amd64").2;
    let stored = r.blob_data(layer);
    let good = std::fs::read(&stored).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 0xff;
    std::fs::write(&stored, &bad).unwrap();
    let out = apply(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&pause.reference())
            && err.contains(layer.as_str())
            && err.contains(&format!(
                "sha256:{}",
                kubeforge::artifacts::sha256_hex(&bad)
            )),
        "the error names the image and both digests:\n{err}"
    );
    for i in 1..=2 {
        assert!(node_images(&h, i).is_empty(), "node{i} imported nothing");
        assert_eq!(
            h.sh(i, "ls /usr/local/bin/containerd 2>/dev/null || echo none")
                .trim(),
            "none",
            "node{i} was not changed"
        );
    }
    std::fs::write(&stored, &good).unwrap();

    // 2. the nodes cannot reach any registry; the cluster comes up with every image imported
    cut_egress(&h, 1);
    cut_egress(&h, 2);
    let plan = kubeforge(&["plan", "-f", inv.to_str().unwrap()], &[]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let plan_text = text(&plan.stdout);
    assert!(
        plan_text.contains("push 9 images") && plan_text.contains("push 5 images"),
        "the plan says what each node gets:\n{plan_text}"
    );
    let out = apply(&[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for (i, role) in [(1, "control-plane"), (2, "worker")] {
        let held = node_images(&h, i);
        for (key, (img, _)) in &built {
            let cp_only = [
                "images.kube-apiserver",
                "images.kube-controller-manager",
                "images.kube-scheduler",
                "images.etcd",
            ]
            .contains(&key.as_str());
            if role == "worker" && cp_only {
                assert!(!held.contains_key(&img.tag_ref()), "node{i} has no {key}");
                continue;
            }
            let (digest, labels) = held
                .get(&img.tag_ref())
                .unwrap_or_else(|| panic!("node{i} lacks {}: {held:?}", img.tag_ref()));
            assert_eq!(digest, img.digest.as_ref().unwrap(), "node{i} {key}");
            assert!(
                labels.contains("io.cri-containerd.pinned=pinned"),
                "node{i} {key} is pinned against the kubelet's image GC: {labels}"
            );
            assert!(
                held.contains_key(&img.digest_ref()),
                "node{i} holds {key} under its digest reference too"
            );
        }
    }

    // 3. a second apply pushes nothing
    let plan = kubeforge(&["plan", "-f", inv.to_str().unwrap()], &[]);
    assert!(
        !text(&plan.stdout).contains("+ push-images"),
        "{}",
        text(&plan.stdout)
    );

    // 4. an image lost on a node and its layer corrupted in the operator's cache: while the
    //    registry answers, the bad entry is dropped (with a warning naming both digests) and
    //    fetched again
    let cache_blob = dir
        .path()
        .join("cache/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let bad_digest = format!("sha256:{}", kubeforge::artifacts::sha256_hex(&bad));
    let lose_pause = || {
        h.sh(
            2,
            &format!(
                "/usr/local/bin/ctr -n k8s.io images rm {} {} >/dev/null",
                pause.tag_ref(),
                pause.digest_ref()
            ),
        );
        assert!(!node_images(&h, 2).contains_key(&pause.tag_ref()));
    };
    std::fs::write(&cache_blob, &bad).unwrap();
    lose_pause();
    let out = apply(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stderr);
    assert!(
        log.contains(layer.as_str()) && log.contains(&bad_digest),
        "the warning names both digests:\n{log}"
    );
    assert_eq!(
        node_images(&h, 2)
            .get(&pause.tag_ref())
            .map(|x| x.0.clone()),
        pause.digest.clone()
    );

    // 5. the same with the operator offline (the registry gone): the run stops before any
    //    host changes, naming the image and both digests; a good cache alone then suffices
    drop(r);
    std::fs::write(&cache_blob, &bad).unwrap();
    lose_pause();
    let out = apply(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&pause.tag_ref()) && err.contains(layer.as_str()) && err.contains(&bad_digest),
        "the error names the image and both digests:\n{err}"
    );
    assert!(
        !node_images(&h, 2).contains_key(&pause.tag_ref()),
        "node2 imported nothing"
    );
    std::fs::write(&cache_blob, &good).unwrap();
    let out = apply(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        node_images(&h, 2)
            .get(&pause.tag_ref())
            .map(|x| x.0.clone()),
        pause.digest.clone()
    );
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn mirror_mode_fills_the_site_registry_and_the_nodes_pull_only_from_it() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(2);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // the images' source (it stands in for registry.k8s.io and ghcr.io), on loopback: the
    // nodes cannot reach it; the site registry, with its own CA, on the harness bridge
    let source = rt.block_on(Registry::start(None, false));
    let tls = Tls::new();
    let site = rt.block_on(Registry::start_at("10.123.0.1", Some(&tls), false));
    let (manifest, built) = release_with_test_images(&h, dir.path(), &source, "1.33.5");
    let extra = format!(
        "    images: {{mode: mirror, registry: {{url: 'https://{site}', caFile: {ca}}}}}\n    allowHttpRegistryMirrors: true\n    registryMirrors: {{registry.k8s.io: ['http://{src}'], ghcr.io: ['http://{src}']}}\n",
        site = site.host(),
        ca = tls.ca().display(),
        src = source.host()
    );
    let inv = inventory_with(&h, dir.path(), "site", &manifest, &extra);
    cut_egress_but(&h, 1, Some(site.port));
    cut_egress_but(&h, 2, Some(site.port));

    let plan = kubeforge(&["plan", "-f", inv.to_str().unwrap()], &[]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let plan_text = text(&plan.stdout);
    assert!(
        plan_text.contains(&format!(
            "copy 9 images into the site registry {}",
            site.host()
        )),
        "{plan_text}"
    );
    assert!(!plan_text.contains("+ push-images"), "{plan_text}");
    let out = kubeforge(&["apply", "-f", inv.to_str().unwrap(), "--yes"], &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // the site registry holds every image at its pinned index digest (skopeo, an independent
    // client, reads it back)
    for (key, (img, _)) in &built {
        let (_, path) = img.repo.split_once('/').unwrap();
        let raw = std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=true"])
            .arg(format!("--cert-dir={}", tls.cert_dir().display()))
            .arg(format!("docker://{}/{path}:{}", site.host(), img.tag))
            .output()
            .unwrap();
        assert!(raw.status.success(), "{key}: {}", text(&raw.stderr));
        assert_eq!(
            format!("sha256:{}", kubeforge::artifacts::sha256_hex(&raw.stdout)),
            *img.digest.as_ref().unwrap(),
            "{key} in the site registry"
        );
    }
    // every node's containerd pulls through the site registry (real containerd, real TLS with
    // the site CA from certs.d), with every other registry out of reach
    let pause = &built["images.pause"].0;
    let flannel = &built["cni.flannel.images.flannel"].0;
    for i in 1..=2 {
        for img in [pause, flannel] {
            // over SSH: inside the node's network namespace, behind its egress rules
            let out = h.nodes(&[
                "ssh",
                &i.to_string(),
                &format!(
                    "/usr/local/bin/ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d {} 2>&1",
                    img.digest_ref()
                ),
            ]);
            assert!(
                out.status.success(),
                "node{i} pulls {} through the site registry: {}",
                img.digest_ref(),
                text(&out.stdout)
            );
        }
        let held = node_images(&h, i);
        assert_eq!(
            held.get(&pause.digest_ref()).map(|x| x.0.clone()),
            pause.digest.clone(),
            "node{i}: {held:?}"
        );
    }
    // a second plan copies nothing
    let plan = kubeforge(&["plan", "-f", inv.to_str().unwrap()], &[]);
    assert!(
        !text(&plan.stdout).contains("+ mirror-images"),
        "{}",
        text(&plan.stdout)
    );
}

/// Rejects this machine's own connections to the harness mirror (10.123.0.1:8080) while alive.
struct NoMirror;

impl NoMirror {
    fn new() -> NoMirror {
        let ok = std::process::Command::new("iptables")
            .args([
                "-I",
                "OUTPUT",
                "-d",
                "10.123.0.1",
                "-p",
                "tcp",
                "--dport",
                "8080",
                "-j",
                "REJECT",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "iptables on the test machine");
        NoMirror
    }
}

impl Drop for NoMirror {
    fn drop(&mut self) {
        let _ = std::process::Command::new("iptables")
            .args([
                "-D",
                "OUTPUT",
                "-d",
                "10.123.0.1",
                "-p",
                "tcp",
                "--dport",
                "8080",
                "-j",
                "REJECT",
            ])
            .status();
    }
}

#[test]
#[ignore = "needs harness hosts: run scripts/test.sh"]
fn a_bundle_from_artifacts_fetch_installs_with_the_operators_network_cut() {
    let _g = serial();
    let h = Harness::get();
    h.fresh(2);
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let source = rt.block_on(Registry::start(None, false));
    let (manifest, built) = release_with_test_images(&h, dir.path(), &source, "1.33.5");
    let extra = format!(
        "    images: {{mode: push}}\n    allowHttpRegistryMirrors: true\n    registryMirrors: {{registry.k8s.io: ['http://{0}'], ghcr.io: ['http://{0}']}}\n",
        source.host()
    );
    // at the desk: everything into one directory
    let desk = inventory_with(&h, dir.path(), "bunker", &manifest, &extra);
    let bundle = dir.path().join("bundle");
    let out = kubeforge(
        &[
            "artifacts",
            "fetch",
            "-f",
            desk.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
            "--arch",
            "amd64",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(bundle.join("index.json").is_file());

    // in the bunker: no registry, the artifact mirror unreachable from this machine, a fresh
    // cache, and the nodes cut off as well
    drop(source);
    let text_inv = std::fs::read_to_string(&desk)
        .unwrap()
        .replace(
            "    mirror: http://10.123.0.1:8080/\n",
            &format!("    bundle: {}\n", bundle.display()),
        )
        .replace(
            &format!("cacheDir: {}", dir.path().join("cache").display()),
            &format!("cacheDir: {}", dir.path().join("bunker-cache").display()),
        );
    let bunker = dir.path().join("bunker.yaml");
    std::fs::write(&bunker, text_inv).unwrap();
    cut_egress(&h, 1);
    cut_egress(&h, 2);
    let _cut = NoMirror::new();
    let out = kubeforge(&["apply", "-f", bunker.to_str().unwrap(), "--yes"], &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let held = node_images(&h, 2);
    let (pause, _) = &built["images.pause"];
    assert_eq!(
        held.get(&pause.tag_ref()).map(|x| x.0.clone()),
        pause.digest.clone(),
        "{held:?}"
    );
}
