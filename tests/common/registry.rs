//! A real registry for tests (Debian's docker-registry, the CNCF distribution registry) on
//! 127.0.0.1, filled by an independent tool (skopeo) with small real OCI images built here; a CA
//! and server certificate made by openssl; Basic authentication from `htpasswd -B`.
//! Needs the Debian packages docker-registry, skopeo, apache2-utils and openssl.

use kubeforge::images::Platform;
use kubeforge::release::Image;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "site-admin";
pub const PASSWORD: &str = "correct-horse-battery";

pub fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (install docker-registry skopeo apache2-utils openssl)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn host_platform() -> Platform {
    Platform::from_arch(std::env::consts::ARCH).expect("tests run on amd64 or arm64")
}

/// A CA and a server certificate for 127.0.0.1 (and the harness host's 10.123.0.1), made with
/// openssl.
pub struct Tls {
    pub dir: tempfile::TempDir,
}

impl Tls {
    pub fn new() -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        run(Command::new("openssl")
            .current_dir(d)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args([
                "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            ])
            .args(["-subj", "/CN=kubeforge test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
        run(Command::new("openssl")
            .current_dir(d)
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", "/CN=127.0.0.1"]));
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,IP:10.123.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl")
            .current_dir(d)
            .args([
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
            ])
            .args([
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ]));
        Tls { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A directory with only the CA, for skopeo's --cert-dir.
    pub fn cert_dir(&self) -> PathBuf {
        let d = self.dir.path().join("certs.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(self.ca(), d.join("ca.crt")).unwrap();
        d
    }
}

/// A distribution registry on 127.0.0.1 (or another address of this host), killed when dropped.
pub struct Registry {
    pub child: Option<Child>,
    pub ip: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub tls: bool,
    pub auth: bool,
}

impl Registry {
    pub async fn start(tls: Option<&Tls>, auth: bool) -> Registry {
        Self::start_at("127.0.0.1", tls, auth).await
    }

    /// A registry listening on `ip` (the harness host's 10.123.0.1: the nodes reach it).
    pub async fn start_at(ip: &str, tls: Option<&Tls>, auth: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = std::net::TcpListener::bind(format!("{ip}:0"))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {ip}:{port}\n",
            d.join("storage").display()
        );
        if let Some(t) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.dir.path().join("server.crt").display(),
                t.dir.path().join("server.key").display()
            ));
        }
        if auth {
            let pw = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
            std::fs::write(d.join("htpasswd"), pw).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kubeforge-test\n    path: {}\n",
                d.join("htpasswd").display()
            ));
        }
        std::fs::write(d.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry) runs");
        let mut r = Registry {
            child: Some(child),
            ip: ip.to_string(),
            port,
            dir,
            tls: tls.is_some(),
            auth,
        };
        r.wait_ready(tls).await;
        r
    }

    /// Polls `GET /v2/` until the registry answers (200, or 401 with auth).
    pub async fn wait_ready(&mut self, tls: Option<&Tls>) {
        let mut b = reqwest::Client::builder();
        if let Some(t) = tls {
            let pem = std::fs::read(t.ca()).unwrap();
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        let client = b.timeout(Duration::from_secs(2)).build().unwrap();
        let url = format!("{}/v2/", self.base());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the registry exited ({status}): {}", self.log());
            }
            let ok = client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 200 || r.status().as_u16() == 401);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the registry did not answer: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn base(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.host()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The file the registry keeps a blob's bytes in.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// skopeo's options for this registry as a destination (`dest`) or source (`src`).
    pub fn skopeo_args(&self, side: &str, tls: Option<&Tls>, scratch: &Path) -> Vec<String> {
        let mut a = Vec::new();
        match tls {
            None => a.push(format!("--{side}-tls-verify=false")),
            Some(t) => {
                a.push(format!("--{side}-tls-verify=true"));
                a.push(format!("--{side}-cert-dir={}", t.cert_dir().display()));
            }
        }
        if self.auth {
            // an auth file: the password stays off the command line
            let auth = base64_encode(format!("{USER}:{PASSWORD}").as_bytes());
            let f = scratch.join(format!("auth-{}.json", self.port));
            std::fs::write(
                &f,
                format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, self.host()),
            )
            .unwrap();
            a.push(format!("--{side}-authfile={}", f.display()));
        }
        a
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A two-platform test image written as an OCI layout: its index and per-platform manifests.
pub struct TestImage {
    pub layout: tempfile::TempDir,
    pub tag: String,
    pub index: Vec<u8>,
    /// (arch, manifest digest, layer digest, layer bytes)
    pub platforms: Vec<(String, String, String, Vec<u8>)>,
}

pub fn layer_tar(content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("hello.txt").unwrap();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, content).unwrap();
    b.into_inner().unwrap()
}

impl TestImage {
    pub fn build(tag: &str, salt: &str) -> TestImage {
        let layout = tempfile::tempdir().unwrap();
        let blobs = layout.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| -> String {
            let d = sha(data);
            std::fs::write(blobs.join(d.strip_prefix("sha256:").unwrap()), data).unwrap();
            d
        };
        let mut entries = Vec::new();
        let mut platforms = Vec::new();
        for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
            let layer = layer_tar(format!("hello from {arch} {salt}\n").as_bytes());
            let ld = put(&layer);
            let config = format!(
                r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{ld}"]}},"config":{{"Cmd":["/hello"]}}}}"#
            );
            let cd = put(config.as_bytes());
            let manifest = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
                config.len(),
                layer.len()
            );
            let md = put(manifest.as_bytes());
            let v = variant
                .map(|v| format!(r#","variant":"{v}""#))
                .unwrap_or_default();
            entries.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"platform":{{"architecture":"{arch}","os":"linux"{v}}}}}"#,
                manifest.len()
            ));
            platforms.push((arch.to_string(), md, ld, layer));
        }
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            entries.join(",")
        )
        .into_bytes();
        let id = put(&index);
        std::fs::write(
            layout.path().join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{id}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
                index.len()
            ),
        )
        .unwrap();
        std::fs::write(
            layout.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        TestImage {
            layout,
            tag: tag.into(),
            index,
            platforms,
        }
    }

    pub fn digest(&self) -> String {
        sha(&self.index)
    }

    pub fn platform(&self, arch: &str) -> &(String, String, String, Vec<u8>) {
        self.platforms.iter().find(|p| p.0 == arch).unwrap()
    }

    /// Pushes all platforms into `r` as `<repo>:<tag>` with skopeo.
    pub fn push(&self, r: &Registry, tls: Option<&Tls>, repo: &str) {
        let scratch = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--all", "--preserve-digests", "--quiet"])
            .args(r.skopeo_args("dest", tls, scratch.path()))
            .arg(format!("oci:{}:{}", self.layout.path().display(), self.tag))
            .arg(format!("docker://{}/{repo}:{}", r.host(), self.tag));
        run(&mut cmd);
    }

    pub fn pinned(&self, r: &Registry, repo: &str) -> Image {
        Image::parse(&format!(
            "{}/{repo}:{}@{}",
            r.host(),
            self.tag,
            self.digest()
        ))
        .unwrap()
    }
}
