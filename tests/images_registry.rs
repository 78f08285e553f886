//! The image pull, archive and push code against real registries on loopback: the CNCF
//! distribution registry (Debian's `docker-registry`), filled by an independent tool (`skopeo`)
//! from OCI layouts built here, over plain HTTP and over TLS with a CA made by `openssl` and
//! Basic authentication from `htpasswd -B`.
//!
//! Needs the Debian packages docker-registry, skopeo, apache2-utils and openssl.

use kubeforge::error::ErrorKind;
use kubeforge::images::{
    Credentials, FetchedImage, ImageError, ImageStore, Platform, RegistryOptions, archive_size,
};
use kubeforge::release::Image;
#[path = "common/registry.rs"]
mod registry;
use registry::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn plain_options(r: &Registry) -> RegistryOptions {
    let mut o = RegistryOptions::default();
    o.plain_http.insert(r.host());
    o
}

fn tls_options(r: &Registry, tls: &Tls, password: &str) -> RegistryOptions {
    let mut o = RegistryOptions {
        ca_file: Some(tls.ca()),
        ..Default::default()
    };
    o.credentials.insert(
        r.host(),
        Credentials {
            username: USER.into(),
            password: password.into(),
        },
    );
    o
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn check_fetched(f: &FetchedImage, img: &TestImage, arch: &str, store: &ImageStore) {
    let (_, md, ld, layer) = img.platform(arch);
    assert_eq!(f.digest(), img.digest());
    assert_eq!(f.manifest_digest(), md);
    assert_eq!(f.index.size, img.index.len() as u64);
    assert_eq!(f.manifests.len(), 1);
    assert_eq!(f.manifests[0].layers.len(), 1);
    assert_eq!(&f.manifests[0].layers[0].digest, ld);
    assert_eq!(
        f.manifests[0].layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(f.blobs().len(), 4);
    assert_eq!(
        f.total_bytes(),
        f.blobs().iter().map(|b| b.size).sum::<u64>()
    );
    for b in f.blobs() {
        let data = std::fs::read(store.blob_path(&b.digest)).unwrap();
        assert_eq!(sha(&data), b.digest, "the cache holds {}", b.digest);
        assert_eq!(data.len() as u64, b.size);
    }
    assert_eq!(&std::fs::read(store.blob_path(ld)).unwrap(), layer);
}

#[tokio::test]
async fn fetch_by_digest_over_plain_http_then_again_from_the_cache_alone() {
    let scratch_cache = tempfile::tempdir().unwrap();
    let mut r = Registry::start(None, false).await;
    let img = TestImage::build("1.0", "plain");
    img.push(&r, None, "team/hello");
    let cache = tempfile::tempdir().unwrap();
    let image = img.pinned(&r, "team/hello");

    let store = ImageStore::new(cache.path(), plain_options(&r)).unwrap();
    let f = store.fetch(&image, Platform::LinuxAmd64).await.unwrap();
    check_fetched(&f, &img, "amd64", &store);
    assert_eq!(f.reference, format!("{}/team/hello:1.0", r.host()));
    assert_eq!(f.manifests[0].platform, "linux/amd64");
    assert_eq!(store.downloads(), 4, "index, manifest, config, layer");
    let arm = store.fetch(&image, Platform::LinuxArm64).await.unwrap();
    check_fetched(&arm, &img, "arm64", &store);
    assert_eq!(arm.manifests[0].platform, "linux/arm64/v8");
    assert_eq!(store.downloads(), 7, "the index came from the cache");
    store.fetch(&image, Platform::LinuxAmd64).await.unwrap();
    assert_eq!(store.downloads(), 7, "nothing downloaded again");

    // through a mirror: the upstream name is kept (containerd's name for the image), the
    // bytes come from the mirror (path kept, `?ns=` added)
    let mut o = plain_options(&r);
    o.mirrors.insert("upstream.example:5000".into(), r.base());
    let mirrored = ImageStore::new(scratch_cache.path(), o).unwrap();
    let up = Image::parse(&format!(
        "upstream.example:5000/team/hello:1.0@{}",
        img.digest()
    ))
    .unwrap();
    let m = mirrored.fetch(&up, Platform::LinuxAmd64).await.unwrap();
    assert_eq!(m.reference, "upstream.example:5000/team/hello:1.0");
    assert_eq!(m.manifests, f.manifests);
    assert_eq!(mirrored.downloads(), 4);

    // plain HTTP is not used unless allowed: the same registry over HTTPS fails
    let empty = tempfile::tempdir().unwrap();
    let store = ImageStore::new(empty.path(), RegistryOptions::default()).unwrap();
    let e = store.fetch(&image, Platform::LinuxAmd64).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.to_string().contains(&r.host()), "{e}");

    // a new run, the registry gone: everything comes from the cache, re-hashed
    r.stop();
    let store = ImageStore::new(cache.path(), plain_options(&r)).unwrap();
    let again = store.fetch(&image, Platform::LinuxAmd64).await.unwrap();
    assert_eq!(again, f);
    assert_eq!(store.downloads(), 0);
    assert!(files_under(&cache.path().join("partial")).is_empty());
}

#[tokio::test]
async fn fetch_over_tls_with_basic_auth_and_a_site_ca() {
    let scratch_cache = tempfile::tempdir().unwrap();
    let tls = Tls::new();
    let r = Registry::start(Some(&tls), true).await;
    let img = TestImage::build("2.1", "tls");
    img.push(&r, Some(&tls), "site/app");
    let cache = tempfile::tempdir().unwrap();
    let image = img.pinned(&r, "site/app");
    let store = ImageStore::new(cache.path(), tls_options(&r, &tls, PASSWORD)).unwrap();
    let f = store.fetch(&image, host_platform()).await.unwrap();
    check_fetched(&f, &img, host_platform().arch(), &store);
    assert_eq!(store.downloads(), 4);

    // without the CA the registry's certificate is not trusted
    let mut o = tls_options(&r, &tls, PASSWORD);
    o.ca_file = None;
    let store = ImageStore::new(scratch_cache.path(), o).unwrap();
    let e = store.fetch(&image, host_platform()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.to_string().contains(&r.host()), "{e}");
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_an_authentication_error_without_the_password() {
    let scratch_cache = tempfile::tempdir().unwrap();
    let tls = Tls::new();
    let r = Registry::start(Some(&tls), true).await;
    let img = TestImage::build("3.0", "auth");
    img.push(&r, Some(&tls), "site/app");
    let image = img.pinned(&r, "site/app");
    let wrong = "wrong-secret-pw-123";
    let store = ImageStore::new(scratch_cache.path(), tls_options(&r, &tls, wrong)).unwrap();
    let e = store.fetch(&image, host_platform()).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::Auth { .. }), "{msg}");
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(msg.contains(&r.host()) && msg.contains(USER), "{msg}");
    assert!(
        !msg.contains(wrong) && !format!("{e:?}").contains(wrong),
        "{msg}"
    );

    let mut o = tls_options(&r, &tls, PASSWORD);
    o.credentials.clear();
    let store = ImageStore::new(scratch_cache.path(), o).unwrap();
    let e = store.fetch(&image, host_platform()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("none are configured"), "{e}");
}

#[tokio::test]
async fn a_blob_corrupted_in_the_registry_stops_the_fetch_and_stays_out_of_the_cache() {
    let r = Registry::start(None, false).await;
    let img = TestImage::build("1.0", "corrupt");
    img.push(&r, None, "team/hello");
    let (_, _, ld, layer) = img.platform("amd64");
    let data = r.blob_data(ld);
    let mut bad = layer.clone();
    bad[600] ^= 0x20; // inside the file content: same length
    std::fs::write(&data, &bad).unwrap();

    let cache = tempfile::tempdir().unwrap();
    let store = ImageStore::new(cache.path(), plain_options(&r)).unwrap();
    let image = img.pinned(&r, "team/hello");
    let e = store.fetch(&image, Platform::LinuxAmd64).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{msg}");
    assert_eq!(e.kind(), ErrorKind::Policy);
    assert!(msg.contains(&image.reference()), "names the image: {msg}");
    assert!(
        msg.contains(ld.as_str()) && msg.contains(&sha(&bad)),
        "both digests: {msg}"
    );
    assert!(
        !store.blob_path(ld).exists(),
        "nothing unverified in the cache"
    );
    assert!(files_under(&cache.path().join("partial")).is_empty());
}

#[tokio::test]
async fn a_wrong_or_missing_pin_is_refused() {
    let r = Registry::start(None, false).await;
    let img = TestImage::build("1.0", "pins");
    img.push(&r, None, "team/hello");
    let cache = tempfile::tempdir().unwrap();
    let store = ImageStore::new(cache.path(), plain_options(&r)).unwrap();

    let unpinned = Image::parse(&format!("{}/team/hello:1.0", r.host())).unwrap();
    let e = store
        .fetch(&unpinned, Platform::LinuxAmd64)
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::Unpinned { .. }), "{e}");
    assert!(e.to_string().contains("team/hello:1.0"), "{e}");

    // a digest the registry does not have
    let other = sha(b"some other index");
    let wrong = Image::parse(&format!("{}/team/hello:1.0@{other}", r.host())).unwrap();
    let e = store.fetch(&wrong, Platform::LinuxAmd64).await.unwrap_err();
    assert!(matches!(e, ImageError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains(&other), "{e}");

    // the registry answers the pinned digest with other bytes (its copy of the index damaged)
    let data = r.blob_data(&img.digest());
    // still a valid index (the registry parses what it serves), with other bytes
    let bad = String::from_utf8(img.index.clone())
        .unwrap()
        .replace(r#""variant":"v8""#, r#""variant":"v9""#)
        .into_bytes();
    assert_ne!(bad, img.index);
    std::fs::write(&data, &bad).unwrap();
    let image = img.pinned(&r, "team/hello");
    let e = store.fetch(&image, Platform::LinuxAmd64).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{msg}");
    assert!(
        msg.contains("index") && msg.contains(&img.digest()) && msg.contains(&sha(&bad)),
        "{msg}"
    );
    assert!(!store.blob_path(&img.digest()).exists());

    // an index without the platform asked for
    let e = store
        .fetch(
            &Image::parse(&format!(
                "{}/team/hello:1.0@{}",
                r.host(),
                img.platform("amd64").1
            ))
            .unwrap(),
            Platform::LinuxArm64,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::NoPlatform { .. }), "{e}");
    assert!(e.to_string().contains("linux/amd64"), "{e}");
}

#[tokio::test]
async fn a_corrupted_cache_blob_is_found_before_use() {
    let r = Registry::start(None, false).await;
    let img = TestImage::build("1.0", "cache");
    img.push(&r, None, "team/hello");
    let cache = tempfile::tempdir().unwrap();
    let image = img.pinned(&r, "team/hello");
    let store = ImageStore::new(cache.path(), plain_options(&r)).unwrap();
    let f = store.fetch(&image, Platform::LinuxAmd64).await.unwrap();
    let (_, _, ld, layer) = img.platform("amd64");
    let mut bad = layer.clone();
    bad[700] ^= 1;
    std::fs::write(store.blob_path(ld), &bad).unwrap();

    // in the same run the change is caught while the archive streams
    let mut sink = Vec::new();
    let e = store
        .write_archive(std::slice::from_ref(&f), &mut sink)
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&sha(&bad)), "{e}");

    // in a new run it is caught before anything is written, and removed
    let store = ImageStore::new(cache.path(), plain_options(&r)).unwrap();
    let mut sink = Vec::new();
    let e = store
        .write_archive(std::slice::from_ref(&f), &mut sink)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{msg}");
    assert!(
        msg.contains(ld.as_str()) && msg.contains(&sha(&bad)),
        "{msg}"
    );
    assert!(msg.contains(&f.reference), "{msg}");
    assert!(sink.is_empty(), "nothing was written");
    assert!(
        !store.blob_path(ld).exists(),
        "the damaged entry is removed"
    );

    // a fetch downloads it again
    std::fs::write(store.blob_path(ld), &bad).unwrap();
    let store = ImageStore::new(cache.path(), plain_options(&r)).unwrap();
    store.fetch(&image, Platform::LinuxAmd64).await.unwrap();
    assert_eq!(store.downloads(), 1, "only the damaged layer");
    assert_eq!(&std::fs::read(store.blob_path(ld)).unwrap(), layer);
}

#[tokio::test]
async fn the_archive_is_an_oci_layout_skopeo_reads() {
    let r = Registry::start(None, false).await;
    let a = TestImage::build("1.0", "first");
    let b = TestImage::build("2.0", "second");
    a.push(&r, None, "team/hello");
    b.push(&r, None, "team/other");
    let cache = tempfile::tempdir().unwrap();
    let store = ImageStore::new(cache.path(), plain_options(&r)).unwrap();
    let p = host_platform();
    let fa = store.fetch(&a.pinned(&r, "team/hello"), p).await.unwrap();
    let fb = store.fetch(&b.pinned(&r, "team/other"), p).await.unwrap();
    let images = [fa.clone(), fb.clone()];

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("images.tar");
    let mut w = tokio::fs::File::create(&file).await.unwrap();
    let n = store.write_archive(&images, &mut w).await.unwrap();
    drop(w);
    assert_eq!(n, archive_size(&images));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), n);

    // the tar's own listing and index.json
    let mut names = Vec::new();
    let mut index_json = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&file).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if name == "index.json" {
            e.read_to_end(&mut index_json).unwrap();
        } else if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            assert_eq!(sha(&data), format!("sha256:{hex}"));
        }
        names.push(name);
    }
    assert_eq!(&names[..2], ["oci-layout", "index.json"]);
    let other_arch = if p == Platform::LinuxAmd64 {
        "arm64"
    } else {
        "amd64"
    };
    let absent = a
        .platform(other_arch)
        .1
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    assert!(
        !names.iter().any(|n| n.ends_with(&absent)),
        "the other platform's manifest is left out"
    );
    assert_eq!(names.len(), 4 + 8, "{names:?}");
    let v: serde_json::Value = serde_json::from_slice(&index_json).unwrap();
    let m = v["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0]["digest"], a.digest());
    assert_eq!(
        m[0]["annotations"]["io.containerd.image.name"],
        format!("{}/team/hello:1.0", r.host())
    );
    assert_eq!(
        m[0]["annotations"]["org.opencontainers.image.ref.name"],
        "1.0"
    );
    assert_eq!(
        m[1]["annotations"]["org.opencontainers.image.ref.name"],
        "2.0"
    );

    // skopeo reads it: the raw index keeps its digest, and the host's image copies out
    let archive = format!("oci-archive:{}:1.0", file.display());
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", &archive])
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(sha(&raw.stdout), a.digest());
    let info = run(Command::new("skopeo").args(["inspect", &archive]));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["Architecture"], p.arch(), "{info}");
    let dir = out.path().join("copied");
    run(Command::new("skopeo")
        .args(["copy", "--quiet", &archive])
        .arg(format!("dir:{}", dir.display())));
    let (_, md, ld, layer) = a.platform(p.arch());
    let layer_file = dir.join(ld.strip_prefix("sha256:").unwrap());
    assert_eq!(&std::fs::read(layer_file).unwrap(), layer);
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    assert_eq!(&sha(&manifest), md);
}

#[tokio::test]
async fn push_copies_the_image_into_a_site_registry_with_its_index_digest() {
    let source = Registry::start(None, false).await;
    let tls = Tls::new();
    let site = Registry::start(Some(&tls), true).await;
    let img = TestImage::build("1.0", "push");
    img.push(&source, None, "team/hello");
    let cache = tempfile::tempdir().unwrap();
    let mut opts = tls_options(&site, &tls, PASSWORD);
    opts.plain_http.insert(source.host());
    let store = ImageStore::new(cache.path(), opts).unwrap();
    let image = img.pinned(&source, "team/hello");
    let all = store.fetch_all_platforms(&image).await.unwrap();
    assert_eq!(all.manifests.len(), 2);

    let report = store.push(&all, &site.host()).await.unwrap();
    assert_eq!(report.digest, img.digest());
    assert_eq!(report.uploaded.len(), 4, "{report:?}");
    assert!(report.present.is_empty());
    assert_eq!(report.target, format!("{}/team/hello:1.0", site.host()));

    let scratch = tempfile::tempdir().unwrap();
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(
            site.skopeo_args("src", Some(&tls), scratch.path())
                .iter()
                .map(|a| a.replace("--src-", "--")),
        )
        .arg(format!("docker://{}/team/hello:1.0", site.host()))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(sha(&raw.stdout), img.digest());

    // again: every blob is there already
    let again = store.push(&all, &site.host()).await.unwrap();
    assert_eq!(again.present.len(), 4, "{again:?}");
    assert!(again.uploaded.is_empty());

    // the site registry can be pulled from like any other
    let pulled = Image::parse(&format!("{}/team/hello:1.0@{}", site.host(), img.digest())).unwrap();
    let cache2 = tempfile::tempdir().unwrap();
    let store2 = ImageStore::new(cache2.path(), tls_options(&site, &tls, PASSWORD)).unwrap();
    let f = store2.fetch(&pulled, Platform::LinuxArm64).await.unwrap();
    check_fetched(&f, &img, "arm64", &store2);

    // one platform only, into an empty registry: the distribution registry refuses an index
    // whose other manifests are absent, and the error says why
    let empty = Registry::start(None, false).await;
    let mut opts = plain_options(&empty);
    opts.plain_http.insert(source.host());
    let store = ImageStore::new(cache.path(), opts).unwrap();
    let one = store.fetch(&image, Platform::LinuxAmd64).await.unwrap();
    let e = store.push(&one, &empty.host()).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::Http { status: 400, .. }), "{msg}");
    assert!(
        msg.contains("MANIFEST_BLOB_UNKNOWN")
            && msg.contains("2 manifests and 1 of them were fetched"),
        "{msg}"
    );
}
