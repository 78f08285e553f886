//! Bundles for air-gapped sites, end to end without harness hosts: the real `kubeforge
//! artifacts fetch` binary against a local HTTP server (the binaries and a CNI manifest) and a
//! real distribution registry (the images, through the inventory's registryMirrors); then,
//! with both servers stopped, the bundle alone provides every binary (as a mirror directory)
//! and every image (an offline ImageStore), each verified.
//!
//! Needs the Debian packages docker-registry and skopeo.

use kubeforge::artifacts::Store;
use kubeforge::bundle::{self, Index};
use kubeforge::images::{ImageError, ImageStore, Platform};
use kubeforge::model::Mirror;
use kubeforge::release::{COMPONENTS, IMAGES, Image};
#[path = "common/registry.rs"]
#[allow(dead_code)]
mod registry;
use registry::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const VERSION: &str = "1.33.99";

/// A static file server on loopback: path -> bytes; counts requests; stopped on demand.
struct Files {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Files {
    fn serve(files: BTreeMap<String, Vec<u8>>) -> Files {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, s2) = (requests.clone(), stop.clone());
        let files = Arc::new(Mutex::new(files));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = stream else { continue };
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                r2.fetch_add(1, Ordering::SeqCst);
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let body = files
                    .lock()
                    .unwrap()
                    .get(path.trim_start_matches('/'))
                    .cloned();
                match body {
                    Some(b) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        );
                        let _ = s.write_all(&b);
                    }
                    None => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                }
                let _ = s.flush();
                let mut rest = Vec::new();
                let _ = s.set_read_timeout(Some(Duration::from_millis(10)));
                let _ = s.read_to_end(&mut rest);
            }
        });
        Files {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Stops serving: afterwards connections are refused.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        assert!(
            std::net::TcpStream::connect(self.addr).is_err(),
            "the file server is down"
        );
    }
}

fn sha_hex(data: &[u8]) -> String {
    sha(data).strip_prefix("sha256:").unwrap().to_string()
}

/// The binaries of the test release: small distinct files at upstream-like paths.
fn binaries() -> Vec<(String, String, String, Vec<u8>)> {
    let mut v = Vec::new();
    for arch in ["amd64", "arm64"] {
        for c in COMPONENTS {
            let version = if ["kubeadm", "kubelet", "kubectl"].contains(c) {
                VERSION.to_string()
            } else {
                "1.0.0".to_string()
            };
            let path = format!("{c}/v{version}/{c}-linux-{arch}");
            let data = format!("#!/bin/sh\n# {c} {version} {arch}\n")
                .repeat(50)
                .into_bytes();
            v.push((c.to_string(), arch.to_string(), path, data));
        }
    }
    v
}

const CNI_MANIFEST: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: my-cni, namespace: kube-system}\ndata: {x: y}\n";

/// Everything the servers offer, and the release manifest naming it.
struct Site {
    files: Files,
    registry: Registry,
    /// By release manifest key (`images.pause`).
    images: BTreeMap<String, (Image, Arc<TestImage>)>,
    release: String,
}

async fn site() -> Site {
    let mut served = BTreeMap::new();
    let bins = binaries();
    for (_, _, path, data) in &bins {
        served.insert(path.clone(), data.clone());
    }
    served.insert("cni/my-cni.yaml".into(), CNI_MANIFEST.as_bytes().to_vec());
    let files = Files::serve(served);
    let registry = Registry::start(None, false).await;
    // three distinct images, each pushed under a few of the release's names
    let built: Vec<Arc<TestImage>> = ["one", "two", "three"]
        .iter()
        .map(|salt| Arc::new(TestImage::build("v1", salt)))
        .collect();
    let mut images = BTreeMap::new();
    for (n, key) in IMAGES.iter().enumerate() {
        let t = built[n % built.len()].clone();
        t.push(&registry, None, key);
        // named as upstream names them; pulled through the inventory's registryMirrors
        let image = Image::parse(&format!("registry.k8s.io/{key}:v1@{}", t.digest())).unwrap();
        images.insert(format!("images.{key}"), (image, t));
    }
    let mut release = format!(
        "apiVersion: kubeforge.io/v1alpha1\nkind: ReleaseManifest\nkubernetes: {VERSION}\nartifacts:\n"
    );
    for (c, arch, path, data) in &bins {
        let version = if ["kubeadm", "kubelet", "kubectl"].contains(&c.as_str()) {
            VERSION
        } else {
            "1.0.0"
        };
        release.push_str(&format!(
            "  - {{component: {c}, version: {version}, arch: {arch}, url: '{}/{path}', path: '{path}', sha256: '{}'}}\n",
            files.base(),
            sha_hex(data)
        ));
    }
    release.push_str("images:\n");
    for (key, (image, _)) in &images {
        release.push_str(&format!(
            "  {}: '{}'\n",
            key.strip_prefix("images.").unwrap(),
            image.reference()
        ));
    }
    // flannel's images are not in the registry: with `cni: manifest` they are not fetched
    release.push_str(&format!(
        "cni:\n  flannel:\n    version: 0.27.3\n    images:\n      flannel: 'ghcr.io/flannel-io/flannel:v0.27.3@sha256:{}'\n",
        "0".repeat(64)
    ));
    Site {
        files,
        registry,
        images,
        release,
    }
}

fn kubeforge(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubeforge"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("KUBEFORGE_FILE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn inventory(artifacts: &str, cni_url: &str) -> String {
    format!(
        "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: bunker}}\nspec:\n  kubernetes:\n    version: {VERSION}\n    cni: manifest\n    cniManifest: {{url: '{cni_url}', sha256: '{}'}}\n  artifacts:\n{artifacts}  hosts:\n    - {{name: cp1, address: 10.0.0.11, role: control-plane}}\n    - {{name: w1, address: 10.0.0.21, role: worker}}\n",
        sha_hex(CNI_MANIFEST.as_bytes())
    )
}

fn registry_get_lines(r: &Registry) -> usize {
    r.log().lines().filter(|l| l.contains("/v2/")).count()
}

/// Every file of the index is there, with its digest and size.
fn check_files(dir: &Path, ix: &Index) {
    for f in &ix.files {
        let data = std::fs::read(dir.join(&f.path)).unwrap_or_else(|e| panic!("{}: {e}", f.path));
        assert_eq!(data.len() as u64, f.size, "{}", f.path);
        assert_eq!(sha_hex(&data), f.sha256, "{}", f.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_fetched_at_the_desk_serves_apply_offline() {
    let mut s = site().await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("release.yaml"), &s.release).unwrap();
    let cni_url = format!("{}/cni/my-cni.yaml", s.files.base());
    let desk = inventory(
        &format!(
            "    manifest: release.yaml\n    cacheDir: {}\n    allowHttpRegistryMirrors: true\n    registryMirrors: {{registry.k8s.io: ['http://{}']}}\n",
            w.join("desk-cache").display(),
            s.registry.host()
        ),
        &cni_url,
    );
    std::fs::write(w.join("desk.yaml"), desk).unwrap();
    let desk_file = w.join("desk.yaml").display().to_string();
    let dir = w.join("bundle");
    let dir_s = dir.display().to_string();

    // 1. the first fetch: everything, verified
    let (ok, out, err) = kubeforge(&["artifacts", "fetch", "-f", &desk_file, "-o", &dir_s]);
    assert!(
        ok,
        "fetch failed:\n{out}\n{err}\nregistry:\n{}",
        s.registry.log()
    );
    let ix: Index =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    assert!(ix.complete);
    assert_eq!(
        (ix.cluster.as_str(), ix.kubernetes.as_str()),
        ("bunker", VERSION)
    );
    assert_eq!(
        ix.arches,
        vec!["amd64", "arm64"],
        "every arch of the release by default"
    );
    assert_eq!(ix.binaries.len(), 2 * COMPONENTS.len());
    for (_, _, path, data) in binaries() {
        assert_eq!(
            std::fs::read(dir.join(&path)).unwrap(),
            data,
            "{path} in the upstream layout"
        );
        assert!(
            ix.files
                .iter()
                .any(|f| f.path == path && f.sha256 == sha_hex(&data))
        );
    }
    assert_eq!(
        ix.images.len(),
        IMAGES.len(),
        "the core images, not flannel's"
    );
    for (key, (image, t)) in &s.images {
        let e = ix.images.iter().find(|e| &e.key == key).unwrap();
        assert_eq!(e.reference, image.reference());
        assert_eq!(e.index.digest, t.digest());
        assert_eq!(e.platforms.len(), 2, "{key}: one manifest per arch");
        for (arch, md, ld, layer) in &t.platforms {
            assert!(
                e.platforms
                    .iter()
                    .any(|p| &p.arch == arch && &p.manifest == md)
            );
            assert!(e.blobs.iter().any(|b| &b.digest == ld));
            let f = bundle::blob_dir(&dir).join(ld.strip_prefix("sha256:").unwrap());
            assert_eq!(
                &std::fs::read(f).unwrap(),
                layer,
                "{key} {arch}: the layer is in the bundle"
            );
        }
        // index + 2 manifests + 2 configs + 2 layers
        assert_eq!(e.blobs.len(), 7, "{key}");
    }
    // three distinct images: 3 x 7 blobs
    let blob_files = ix
        .files
        .iter()
        .filter(|f| f.path.starts_with("images/sha256/"))
        .count();
    assert_eq!(blob_files, 21);
    let cni = ix
        .cni_manifest
        .as_ref()
        .expect("the CNI manifest from its URL");
    assert_eq!(cni.sha256, sha_hex(CNI_MANIFEST.as_bytes()));
    assert_eq!(
        std::fs::read_to_string(bundle::cni_manifest_path(&dir, &cni.sha256)).unwrap(),
        CNI_MANIFEST
    );
    let rel = ix.release.as_ref().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join(&rel.path)).unwrap(),
        s.release
    );
    assert_eq!(ix.files.len(), 2 * COMPONENTS.len() + 21 + 2);
    check_files(&dir, &ix);
    assert!(
        !dir.join("images/partial").exists(),
        "no scratch left in the bundle"
    );
    println!("{out}");
    assert!(out.contains(&format!("{} files", ix.files.len())), "{out}");
    assert!(
        out.contains(&format!("{} files added", ix.files.len())),
        "{out}"
    );

    // 2. again: everything is there and verified, nothing is downloaded
    let (http_before, reg_before) = (s.files.requests(), registry_get_lines(&s.registry));
    let (ok, out, err) = kubeforge(&["artifacts", "fetch", "-f", &desk_file, "-o", &dir_s]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("0 files added"), "{out}");
    assert_eq!(
        s.files.requests(),
        http_before,
        "no binary downloaded again"
    );
    assert_eq!(
        registry_get_lines(&s.registry),
        reg_before,
        "no registry request"
    );
    let again: Index =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(again, ix, "the same index");

    // a damaged binary in the bundle is found and fetched again (from the operator's cache)
    let (_, _, first_path, first_data) = binaries().remove(0);
    std::fs::write(dir.join(&first_path), b"tampered").unwrap();
    let (ok, out, err) = kubeforge(&["artifacts", "fetch", "-f", &desk_file, "-o", &dir_s]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("1 file added"), "{out}");
    assert_eq!(std::fs::read(dir.join(&first_path)).unwrap(), first_data);

    // a directory that is not a bundle is refused, and left alone
    let other = w.join("photos");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), b"meow").unwrap();
    let (ok, out, err) = kubeforge(&[
        "artifacts",
        "fetch",
        "-f",
        &desk_file,
        "-o",
        &other.display().to_string(),
    ]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("not a bundle written by `kubeforge artifacts fetch`"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
    // an arch the release does not list
    let (ok, _, err) = kubeforge(&[
        "artifacts",
        "fetch",
        "-f",
        &desk_file,
        "-o",
        &dir_s,
        "--arch",
        "riscv64",
    ]);
    assert!(!ok && err.contains("riscv64"), "{err}");

    // 3. in the bunker: no file server, no registry
    s.files.stop();
    s.registry.stop();
    let site_inv = w.join("site");
    std::fs::create_dir(&site_inv).unwrap();
    // the bundle relative to the inventory; no release manifest file: 1.33.99 is not built in,
    // the bundle's copy is used
    let bunker = inventory(
        &format!(
            "    bundle: ../bundle\n    cacheDir: {}\n    allowHttpRegistryMirrors: true\n    registryMirrors: {{registry.k8s.io: ['http://127.0.0.1:9']}}\n",
            w.join("site-cache").display()
        ),
        &cni_url,
    );
    std::fs::write(site_inv.join("cluster.yaml"), bunker).unwrap();
    let loaded = kubeforge::inventory::load(&site_inv.join("cluster.yaml"))
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let c = &loaded.cluster;
    let bundle_dir = c.artifacts.bundle.clone().unwrap();
    assert_eq!(
        std::fs::canonicalize(&bundle_dir).unwrap(),
        std::fs::canonicalize(&dir).unwrap()
    );
    assert!(
        matches!(&c.artifacts.mirror, Some(Mirror::Dir(d)) if d == &bundle_dir),
        "binaries come from the bundle"
    );
    let m = loaded
        .catalog
        .get(&c.version)
        .expect("the bundle's release manifest");
    assert!(
        loaded
            .catalog
            .origin(&c.version)
            .unwrap()
            .contains("release-1.33.99.yaml")
    );
    // every binary, from the bundle as a mirror directory, verified into the cache
    let store = Store::new(&c.artifacts.cache_dir, c.artifacts.mirror.clone()).unwrap();
    let paths = store.fetch_all(&m.artifacts, false).await.unwrap();
    assert_eq!(paths.len(), 2 * COMPONENTS.len());
    for (a, p) in m.artifacts.iter().zip(&paths) {
        assert_eq!(sha_hex(&std::fs::read(p).unwrap()), a.sha256);
    }
    // every image for both arches, offline
    let offline =
        ImageStore::offline(&c.artifacts.cache_dir, &bundle::blob_dir(&bundle_dir)).unwrap();
    for (key, (image, t)) in &s.images {
        for (arch, md, ld, layer) in &t.platforms {
            let f = offline
                .fetch(image, Platform::from_arch(arch).unwrap())
                .await
                .unwrap_or_else(|e| panic!("{key} {arch}: {e}"));
            assert_eq!(f.digest(), t.digest());
            assert_eq!(f.manifest_digest(), md);
            assert_eq!(&std::fs::read(offline.blob_path(ld)).unwrap(), layer);
        }
    }
    assert_eq!(offline.downloads(), 0, "nothing over the network");
    // the CNI manifest in the bundle is the pinned one
    let cni = bundle::cni_manifest_path(&bundle_dir, &sha_hex(CNI_MANIFEST.as_bytes()));
    assert_eq!(std::fs::read_to_string(cni).unwrap(), CNI_MANIFEST);

    // 4. a corrupted blob in the bundle is refused, naming both digests; nothing is cached
    let (image, t) = &s.images["images.etcd"];
    let (_, _, ld, layer) = t.platform("arm64");
    let blob = bundle::blob_dir(&bundle_dir).join(ld.strip_prefix("sha256:").unwrap());
    let mut bad = layer.clone();
    bad[100] ^= 0xff;
    std::fs::write(&blob, &bad).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let store = ImageStore::offline(fresh.path(), &bundle::blob_dir(&bundle_dir)).unwrap();
    let e = store
        .fetch(image, Platform::LinuxArm64)
        .await
        .expect_err("a corrupted blob is refused");
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(ld) && msg.contains(&sha(&bad)),
        "both digests: {msg}"
    );
    assert!(
        !store.blob_path(ld).exists(),
        "nothing unverified in the cache"
    );
    // a blob the bundle lacks: fetch again
    std::fs::remove_file(&blob).unwrap();
    let e = store.fetch(image, Platform::LinuxArm64).await.unwrap_err();
    assert!(matches!(e, ImageError::NotInBundle { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("registry.k8s.io/etcd")
            && msg.contains(ld)
            && msg.contains("kubeforge artifacts fetch"),
        "{msg}"
    );
}

fn invalid(text: &str, base: &Path) -> String {
    match kubeforge::inventory::load_str(Path::new("t.yaml"), text, base, &|_| None) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.render(false),
    }
}

#[test]
fn validation_names_the_bundle_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let inv = |artifacts: &str| {
        format!(
            "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: t}}\nspec:\n  kubernetes: {{version: 1.33.5}}\n  artifacts:\n{artifacts}  hosts:\n    - {{name: cp1, address: 10.0.0.11, role: control-plane}}\n"
        )
    };
    // a directory that does not exist
    let e = invalid(&inv("    bundle: ./nowhere\n"), base);
    assert!(
        e.contains("spec.artifacts.bundle")
            && e.contains("does not exist")
            && e.contains("kubeforge artifacts fetch"),
        "{e}"
    );
    // a file, not a directory
    std::fs::write(base.join("file"), "x").unwrap();
    let e = invalid(&inv("    bundle: file\n"), base);
    assert!(
        e.contains("spec.artifacts.bundle") && e.contains("is not a directory"),
        "{e}"
    );
    // a directory without index.json
    std::fs::create_dir(base.join("empty")).unwrap();
    let e = invalid(&inv("    bundle: empty\n"), base);
    assert!(
        e.contains("spec.artifacts.bundle") && e.contains("there is no index.json"),
        "{e}"
    );
    // an interrupted fetch
    std::fs::write(
        base.join("empty/index.json"),
        r#"{"apiVersion":"kubeforge.io/v1alpha1","kind":"Bundle","complete":false,"cluster":"t","kubernetes":"1.33.5","arches":[],"release":null,"cniManifest":null,"binaries":[],"images":[],"files":[]}"#,
    )
    .unwrap();
    let e = invalid(&inv("    bundle: empty\n"), base);
    assert!(
        e.contains("spec.artifacts.bundle") && e.contains("incomplete"),
        "{e}"
    );
    // complete: valid, and the binaries come from it
    let text = std::fs::read_to_string(base.join("empty/index.json"))
        .unwrap()
        .replace("\"complete\":false", "\"complete\":true");
    std::fs::write(base.join("empty/index.json"), text).unwrap();
    let l = kubeforge::inventory::load_str(
        Path::new("t.yaml"),
        &inv("    bundle: empty\n"),
        base,
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert_eq!(l.cluster.artifacts.bundle, Some(base.join("empty")));
    assert!(
        matches!(&l.cluster.artifacts.mirror, Some(Mirror::Dir(d)) if d == &base.join("empty"))
    );
    // together with a mirror
    let e = invalid(
        &inv("    bundle: empty\n    mirror: https://mirror.example.com/k8s\n"),
        base,
    );
    assert!(
        e.contains("spec.artifacts.bundle") && e.contains("spec.artifacts.mirror are both given"),
        "{e}"
    );
}
