//! The artifact store against a real HTTP server on loopback (written here, so faults can be
//! injected): streaming sha256, resume with Range, retries, mismatches, mirrors, the cache.

use kubeforge::artifacts::{ArtifactError, Store};
use kubeforge::model::Mirror;
use kubeforge::release::Artifact;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Log {
    requests: Vec<(String, Option<String>)>,
}

/// Serves `body` under a few paths with different behaviours.
fn server(body: Vec<u8>) -> (String, Arc<Mutex<Log>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Log::default()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        let mut flaky_served = false;
        let mut unavailable_served = false;
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut range = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = Some(v.trim().trim_end_matches('-').to_string());
                }
            }
            log2.lock()
                .unwrap()
                .requests
                .push((path.clone(), range.clone()));
            let from: usize = range.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0);
            let send = |s: &mut std::net::TcpStream, status: &str, data: &[u8], len: usize| {
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(data);
            };
            let name = path.rsplit('/').next().unwrap_or("");
            match name {
                "missing" => send(&mut s, "404 Not Found", b"", 0),
                "huge" => {
                    let big = vec![b'#'; 17 << 20];
                    send(&mut s, "200 OK", &big, big.len())
                }
                "huge-unsized" => {
                    // no Content-Length: the body ends when the connection closes
                    let _ = write!(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                    let _ = s.write_all(&vec![b'#'; 17 << 20]);
                    let _ = s.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                "unavailable" if !unavailable_served => {
                    unavailable_served = true;
                    send(&mut s, "503 Service Unavailable", b"", 0)
                }
                "corrupt" => {
                    let mut bad = body.clone();
                    bad[10] ^= 0xff;
                    send(&mut s, "200 OK", &bad, bad.len())
                }
                "flaky" if !flaky_served => {
                    // headers announce everything, the connection dies half way
                    flaky_served = true;
                    let half = body.len() / 2;
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(&body[..half]);
                    let _ = s.flush();
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
                _ if from > 0 && from < body.len() => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len() - 1,
                        body.len(),
                        body.len() - from
                    );
                    let _ = s.write_all(&body[from..]);
                }
                _ => send(&mut s, "200 OK", &body, body.len()),
            }
            let mut rest = Vec::new();
            let _ = s.set_read_timeout(Some(Duration::from_millis(10)));
            let _ = s.read_to_end(&mut rest);
        }
    });
    (format!("http://{addr}"), log)
}

fn body() -> Vec<u8> {
    (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect()
}

fn artifact(url: &str, path: &str, data: &[u8]) -> Artifact {
    Artifact {
        component: "containerd".into(),
        version: "1.7.27".into(),
        arch: "amd64".into(),
        url: url.into(),
        path: path.into(),
        sha256: kubeforge::artifacts::sha256_hex(data),
        source: None,
        size: Some(data.len() as u64),
    }
}

fn store(dir: &std::path::Path, mirror: Option<Mirror>) -> Store {
    let mut s = Store::new(&dir.join("cache"), mirror).unwrap();
    s.backoff = Duration::from_millis(20);
    s
}

#[tokio::test]
async fn downloads_verify_and_cache() {
    let data = body();
    let (base, log) = server(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), None);
    let a = artifact(&format!("{base}/ok"), "x/ok", &data);
    let p = s.fetch(&a, None).await.unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), data);
    assert_eq!(
        p,
        dir.path().join("cache/sha256").join(&a.sha256),
        "content-addressed"
    );
    let again = s.fetch(&a, None).await.unwrap();
    assert_eq!(again, p);
    assert_eq!(
        log.lock().unwrap().requests.len(),
        1,
        "the second fetch is a cache hit"
    );
}

#[tokio::test]
async fn resumes_an_interrupted_download_with_range() {
    let data = body();
    let (base, log) = server(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), None);
    let a = artifact(&format!("{base}/flaky"), "x/flaky", &data);
    let p = s.fetch(&a, None).await.unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), data);
    let reqs = log.lock().unwrap().requests.clone();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].1, None);
    let from: usize = reqs[1].1.as_deref().unwrap().parse().unwrap();
    assert!(from > 0 && from <= data.len() / 2, "resumed at {from}");
}

#[tokio::test]
async fn retries_transient_errors_but_not_missing_files() {
    let data = body();
    let (base, log) = server(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), None);
    let a = artifact(&format!("{base}/unavailable"), "x/unavailable", &data);
    s.fetch(&a, None).await.unwrap();
    assert_eq!(log.lock().unwrap().requests.len(), 2);
    // another file (another digest): not in the cache
    let a = artifact(&format!("{base}/missing"), "x/missing", b"some other file");
    match s.fetch(&a, None).await {
        Err(ArtifactError::Http {
            status: 404, url, ..
        }) => assert!(url.ends_with("/missing")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        log.lock().unwrap().requests.len(),
        3,
        "a 404 is not retried"
    );
}

#[tokio::test]
async fn a_checksum_mismatch_names_the_artifact_and_both_digests_and_caches_nothing() {
    let data = body();
    let (base, _) = server(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), None);
    let a = artifact(&format!("{base}/corrupt"), "x/corrupt", &data);
    let e = s.fetch(&a, None).await.unwrap_err();
    let msg = e.to_string();
    let mut bad = data.clone();
    bad[10] ^= 0xff;
    assert_eq!(
        msg,
        format!(
            "checksum mismatch for containerd 1.7.27 (amd64) from {base}/corrupt: expected sha256 {}, got {}; nothing was installed",
            a.sha256,
            kubeforge::artifacts::sha256_hex(&bad)
        )
    );
    assert!(!s.is_cached(&a));
    assert_eq!(
        std::fs::read_dir(dir.path().join("cache/partial"))
            .unwrap()
            .count(),
        0,
        "no partial left"
    );
}

#[tokio::test]
async fn mirrors_replace_upstream_urls() {
    let data = body();
    let (base, log) = server(data.clone());
    let dir = tempfile::tempdir().unwrap();
    // an upstream URL that must not be used
    let a = artifact(
        "https://upstream.invalid/ok",
        "containerd/v1.7.27/ok",
        &data,
    );
    let s = store(dir.path(), Some(Mirror::Url(format!("{base}/mirror/"))));
    s.fetch(&a, None).await.unwrap();
    assert_eq!(
        log.lock().unwrap().requests[0].0,
        "/mirror/containerd/v1.7.27/ok"
    );

    let local = dir.path().join("local");
    std::fs::create_dir_all(local.join("containerd/v1.7.27")).unwrap();
    std::fs::write(local.join("containerd/v1.7.27/ok"), &data).unwrap();
    let s = store(&dir.path().join("other"), Some(Mirror::Dir(local.clone())));
    let p = s.fetch(&a, None).await.unwrap();
    assert_eq!(std::fs::read(p).unwrap(), data);
    std::fs::write(local.join("containerd/v1.7.27/ok"), b"tampered").unwrap();
    let s = store(&dir.path().join("third"), Some(Mirror::Dir(local)));
    assert!(matches!(
        s.fetch(&a, None).await,
        Err(ArtifactError::Checksum { .. })
    ));
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_corrupted_cache_entry_is_detected_and_downloaded_again() {
    let data = body();
    let (base, log) = server(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let a = artifact(&format!("{base}/ok"), "x/ok", &data);
    let p = store(dir.path(), None).fetch(&a, None).await.unwrap();
    // between runs, the cached file changes
    let mut bad = data.clone();
    bad[100] ^= 0xff;
    std::fs::write(&p, &bad).unwrap();
    let s = store(dir.path(), None);
    let again = s.fetch(&a, None).await.unwrap();
    assert_eq!(
        std::fs::read(&again).unwrap(),
        data,
        "the bad entry was replaced"
    );
    assert_eq!(log.lock().unwrap().requests.len(), 2, "downloaded again");
    // verified once per run: the next use in the same run is not hashed (or fetched) again
    s.fetch(&a, None).await.unwrap();
    assert_eq!(log.lock().unwrap().requests.len(), 2);
}

#[tokio::test]
async fn a_symlink_in_the_cache_is_not_followed() {
    let data = body();
    let (base, log) = server(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), None);
    let a = artifact(&format!("{base}/ok"), "x/ok", &data);
    // a link with the right content elsewhere: still not ours
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, &data).unwrap();
    let entry = dir.path().join("cache/sha256").join(&a.sha256);
    std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
    assert!(!s.is_cached(&a), "a symlink is not a cache entry");
    let p = s.fetch(&a, None).await.unwrap();
    assert_eq!(p, entry);
    assert!(
        !std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink(),
        "replaced by a downloaded file"
    );
    assert_eq!(std::fs::read(&p).unwrap(), data);
    assert_eq!(log.lock().unwrap().requests.len(), 1);
    assert_eq!(
        std::fs::read(&elsewhere).unwrap(),
        data,
        "the link's target is untouched"
    );
}

#[tokio::test]
async fn a_fifo_in_the_cache_is_refused_without_blocking() {
    let data = body();
    let (base, _) = server(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), None);
    let a = artifact(&format!("{base}/ok"), "x/ok", &data);
    let entry = dir.path().join("cache/sha256").join(&a.sha256);
    let mk = std::process::Command::new("mkfifo")
        .arg(&entry)
        .status()
        .unwrap();
    assert!(mk.success());
    let e = tokio::time::timeout(Duration::from_secs(20), s.fetch(&a, None))
        .await
        .expect("the fetch does not block on a FIFO")
        .unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

#[tokio::test]
async fn a_symlink_as_a_partial_download_is_not_written_through() {
    let data = body();
    let (base, _) = server(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), None);
    let a = artifact(&format!("{base}/ok"), "x/ok", &data);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "do not touch\n").unwrap();
    let part = dir
        .path()
        .join("cache/partial")
        .join(format!("{}.part", a.sha256));
    std::os::unix::fs::symlink(&victim, &part).unwrap();
    let p = s.fetch(&a, None).await.unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), data);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch\n");
}

#[tokio::test]
async fn a_cache_directory_others_can_write_to_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // a new cache is private
    let s = Store::new(&dir.path().join("new"), None).unwrap();
    drop(s);
    assert_eq!(mode(&dir.path().join("new")), 0o700);
    for (sub, m) in [("", 0o777), ("", 0o775), ("sha256", 0o757)] {
        let cache = dir.path().join(format!("shared-{m:o}-{}", sub.len()));
        std::fs::create_dir_all(cache.join("sha256")).unwrap();
        let bad = cache.join(sub);
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(m)).unwrap();
        let e = Store::new(&cache, None).err().expect("refused");
        let msg = e.to_string();
        assert!(
            msg.contains(&bad.display().to_string().trim_end_matches('/').to_string())
                && msg.contains("chmod go-w"),
            "{msg}"
        );
    }
}

/// Every message of an error, its sources included.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(" | ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    format!("{s} | {e:?}")
}

#[tokio::test]
async fn mirror_credentials_never_reach_an_error() {
    let data = body();
    let (base, _) = server(data.clone());
    let with_creds = base.replace("http://", "http://user:secret@");
    let dir = tempfile::tempdir().unwrap();
    // a 404, a checksum mismatch, a refused connection
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://user:secret@{}", l.local_addr().unwrap())
    };
    let cases = [
        (with_creds.clone(), "x/missing"),
        (with_creds.clone(), "x/corrupt"),
        (closed, "x/ok"),
    ];
    for (i, (mirror, path)) in cases.into_iter().enumerate() {
        let mut s = store(&dir.path().join(i.to_string()), Some(Mirror::Url(mirror)));
        s.attempts = 2;
        let a = artifact("https://upstream.invalid/x", path, &data);
        let e = s.fetch(&a, None).await.unwrap_err();
        let all = chain(&e);
        assert!(!all.contains("secret") && !all.contains("user:"), "{all}");
        assert!(all.contains("127.0.0.1"), "the host is still named: {all}");
    }
    // and the manifest fetch
    let e = kubeforge::artifacts::fetch_bounded(
        &format!("{with_creds}/missing"),
        1 << 20,
        Duration::from_secs(10),
    )
    .await
    .unwrap_err();
    let all = chain(&e);
    assert!(!all.contains("secret") && !all.contains("user:"), "{all}");
}

#[tokio::test]
async fn the_cni_manifest_fetch_is_bounded_in_size() {
    let data = b"kind: List\n".to_vec();
    let (base, _) = server(data.clone());
    let limit = 16 << 20;
    let ok =
        kubeforge::artifacts::fetch_bounded(&format!("{base}/ok"), limit, Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(ok, data);
    for name in ["huge", "huge-unsized"] {
        let e = kubeforge::artifacts::fetch_bounded(
            &format!("{base}/{name}"),
            limit,
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("larger than 16 MiB"), "{name}: {e}");
    }
}

#[tokio::test]
async fn the_cni_manifest_fetch_is_bounded_in_time() {
    // a server that sends headers and part of the body, then never finishes
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut h = String::new();
                while reader.read_line(&mut h).unwrap_or(0) > 0 && h != "\r\n" {
                    h.clear();
                }
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nkind: ");
                let _ = s.flush();
                // hold the connection open until the client gives up
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            });
        }
    });
    let start = std::time::Instant::now();
    let e = kubeforge::artifacts::fetch_bounded(
        &format!("http://{addr}/stall"),
        16 << 20,
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(
        e.to_string().contains("timed out") || e.to_string().contains("did not finish"),
        "{e}"
    );
}

/// A chart archive (no mirror path): always from its own URL, even with a mirror set, or from
/// the operator's file when its URL is an absolute path; verified the same way.
#[tokio::test]
async fn chart_archives_bypass_the_mirror_and_are_verified() {
    let data = body();
    let (base, log) = server(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut a = artifact(&format!("{base}/repo/ok"), "", &data);
    a.component = "chart web".into();
    let s = store(dir.path(), Some(Mirror::Url(format!("{base}/mirror/"))));
    let p = s.fetch(&a, None).await.unwrap();
    assert_eq!(std::fs::read(p).unwrap(), data);
    assert_eq!(log.lock().unwrap().requests[0].0, "/repo/ok");

    let file = dir.path().join("web-0.1.0.tgz");
    std::fs::write(&file, &data).unwrap();
    let mut local = artifact(&file.display().to_string(), "", &data);
    local.component = "chart web".into();
    let s = store(
        &dir.path().join("other"),
        Some(Mirror::Url(format!("{base}/mirror/"))),
    );
    let p = s.fetch(&local, None).await.unwrap();
    assert_eq!(std::fs::read(p).unwrap(), data);
    assert_eq!(
        log.lock().unwrap().requests.len(),
        1,
        "no request for a local chart"
    );

    std::fs::write(&file, b"tampered").unwrap();
    let s = store(&dir.path().join("third"), None);
    match s.fetch(&local, None).await {
        Err(ArtifactError::Checksum {
            name,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(name, "chart web 1.7.27 (amd64)");
            assert_eq!(expected, local.sha256);
            assert_eq!(actual, kubeforge::artifacts::sha256_hex(b"tampered"));
        }
        other => panic!("{other:?}"),
    }
}
