//! etcd's v3 API (its JSON gateway) on a control plane, reached through an SSH tunnel to the
//! host's loopback with the API server's etcd client certificate: member list, removal of a
//! member (also one whose host is dead), health, snapshots. No tool is needed on the hosts; the
//! certificate and key are read over SSH and held in memory only.

use crate::error::ErrorKind;
use crate::ssh::{Session, SshError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;

use crate::paths::PKI_DIR as PKI;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(transparent)]
    Ssh(#[from] Box<SshError>),
    /// etcd's API failed (`kind` RemoteFailed), answered what cannot be parsed (Parse), or the
    /// TLS client cannot be set up here (Local).
    #[error("{host}: etcd: {message}")]
    Api {
        host: String,
        kind: ErrorKind,
        message: String,
    },
}

impl From<SshError> for EtcdError {
    fn from(e: SshError) -> Self {
        EtcdError::Ssh(Box::new(e))
    }
}

impl EtcdError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EtcdError::Ssh(e) => e.kind(),
            EtcdError::Api { kind, .. } => *kind,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
}

impl Member {
    /// Whether this member runs on the host with `address` (its peer URL names it).
    pub fn is_on(&self, address: &str, name: &str) -> bool {
        self.name == name
            || self
                .peer_urls
                .iter()
                .any(|u| u.contains(&format!("//{address}:")))
    }
}

pub struct Etcd<'a> {
    session: &'a Session,
    tls: tokio_rustls::TlsConnector,
}

/// etcd's API failed or did not answer.
fn api_err(host: &str, message: impl Into<String>) -> EtcdError {
    EtcdError::Api {
        host: host.to_string(),
        kind: ErrorKind::RemoteFailed,
        message: message.into(),
    }
}

/// What the host holds or etcd answered cannot be parsed.
fn parse_err(host: &str, message: impl Into<String>) -> EtcdError {
    EtcdError::Api {
        host: host.to_string(),
        kind: ErrorKind::Parse,
        message: message.into(),
    }
}

impl<'a> Etcd<'a> {
    /// Reads the etcd CA and the API server's etcd client certificate from the host.
    pub async fn connect(session: &'a Session) -> Result<Etcd<'a>, EtcdError> {
        let host = session.name().to_string();
        let ca = session.read_file(&format!("{PKI}/etcd/ca.crt")).await?;
        let cert = session
            .read_file(&format!("{PKI}/apiserver-etcd-client.crt"))
            .await?;
        let key = session
            .read_file(&format!("{PKI}/apiserver-etcd-client.key"))
            .await?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            let c = c.map_err(|e| parse_err(&host, format!("etcd CA: {e}")))?;
            roots
                .add(c)
                .map_err(|e| parse_err(&host, format!("etcd CA: {e}")))?;
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<_, _>>()
            .map_err(|e| parse_err(&host, format!("etcd client certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| parse_err(&host, format!("etcd client key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| EtcdError::Api {
                host: host.clone(),
                kind: ErrorKind::Local,
                message: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| parse_err(&host, format!("etcd client certificate: {e}")))?;
        Ok(Etcd {
            session,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends one request to the member on this host (127.0.0.1:2379 there) over a new TLS
    /// connection through the SSH tunnel; the response body is read by the caller.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, EtcdError> {
        let host = self.session.name();
        let stream = self.session.tunnel("127.0.0.1", 2379).await?;
        let server = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let tls = self
            .tls
            .connect(server, stream)
            .await
            .map_err(|e| api_err(host, format!("TLS to etcd: {e}")))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| api_err(host, format!("HTTP to etcd: {e}")))?;
        // the connection is driven until the response body ends; its errors reach the body
        let name = host.to_string();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("{name}: etcd connection: {e}");
            }
        });
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "127.0.0.1:2379")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .map_err(|e| api_err(host, format!("{path}: {e}")))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| api_err(host, format!("{path}: {e}")))
    }

    /// One request with a small answer (at most `MAX_ANSWER` bytes), within 60 s.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, Vec<u8>), EtcdError> {
        use http_body_util::BodyExt;
        let host = self.session.name();
        let work = async {
            let resp = self.send(method, path, body).await?;
            let status = resp.status().as_u16();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| api_err(host, format!("{path}: {e}")))?
                .to_bytes();
            Ok((status, body.to_vec()))
        };
        tokio::time::timeout(Duration::from_secs(60), work)
            .await
            .map_err(|_| api_err(host, format!("{path}: no answer within 60s")))?
    }

    pub async fn members(&self) -> Result<Vec<Member>, EtcdError> {
        let host = self.session.name();
        let (status, body) = self.call("POST", "/v3/cluster/member/list", "{}").await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| parse_err(host, format!("member list: {e}")))?;
        if status != 200 {
            return Err(api_err(
                host,
                format!(
                    "member list: HTTP {status}: {}",
                    v["error"].as_str().unwrap_or("")
                ),
            ));
        }
        Ok(v["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| Member {
                        id: match &m["ID"] {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                        name: m["name"].as_str().unwrap_or_default().to_string(),
                        peer_urls: m["peerURLs"]
                            .as_array()
                            .map(|u| {
                                u.iter()
                                    .filter_map(|x| x.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        is_learner: m["isLearner"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn remove(&self, id: &str) -> Result<(), EtcdError> {
        let body = serde_json::json!({ "ID": id }).to_string();
        let (status, body) = self
            .call("POST", "/v3/cluster/member/remove", &body)
            .await?;
        if status != 200 {
            // the error's text only: a body that is not JSON still fails with the status
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(api_err(
                self.session.name(),
                format!(
                    "member remove: HTTP {status}: {}",
                    v["error"].as_str().unwrap_or("")
                ),
            ));
        }
        Ok(())
    }

    /// Whether this member answers /health with true. Any failure is "not healthy" (callers
    /// wait for health); it is logged at debug.
    pub async fn healthy(&self) -> bool {
        let host = self.session.name();
        match self.call("GET", "/health", "").await {
            Ok((200, body)) => match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) => v["health"] == "true",
                Err(e) => {
                    tracing::debug!("{host}: etcd /health: not JSON: {e}");
                    false
                }
            },
            Ok((status, _)) => {
                tracing::debug!("{host}: etcd /health: HTTP {status}");
                false
            }
            Err(e) => {
                tracing::debug!("{host}: etcd /health: {e}");
                false
            }
        }
    }

    /// Streams a snapshot through etcd's Maintenance API into `out` (bounded memory: one
    /// message at a time), reporting `(written, total)` bytes as it goes; `Ok(None)` when the
    /// server offers no snapshot API. The stream may pause for at most `SNAPSHOT_IDLE` between
    /// messages; there is no limit on the whole, which grows with the database.
    pub async fn snapshot_to(
        &self,
        out: &mut (dyn std::io::Write + Send),
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Option<Snapshot>, EtcdError> {
        use http_body_util::BodyExt;
        let host = self.session.name();
        let resp = tokio::time::timeout(
            SNAPSHOT_IDLE,
            self.send("POST", "/v3/maintenance/snapshot", "{}"),
        )
        .await
        .map_err(|_| {
            api_err(
                host,
                format!("snapshot: no answer within {SNAPSHOT_IDLE:?}"),
            )
        })??;
        let status = resp.status().as_u16();
        if status == 404 || status == 501 {
            return Ok(None);
        }
        let mut body = resp.into_body();
        if status != 200 {
            // the error's text only: the status alone fails the snapshot
            let text = http_body_util::Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(api_err(
                host,
                format!("snapshot: HTTP {status}: {}", text.trim()),
            ));
        }
        let mut stream = SnapshotStream::default();
        loop {
            let frame = tokio::time::timeout(SNAPSHOT_IDLE, body.frame())
                .await
                .map_err(|_| {
                    api_err(
                        host,
                        format!(
                            "snapshot: the stream stalled for {SNAPSHOT_IDLE:?} after {} bytes",
                            stream.written
                        ),
                    )
                })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| api_err(host, format!("snapshot stream: {e}")))?;
            if let Ok(data) = frame.into_data() {
                stream
                    .feed(&data, out)
                    .map_err(|m| api_err(host, format!("snapshot: {m}")))?;
                progress(stream.written, stream.total());
            }
        }
        let snap = stream
            .finish(out)
            .map_err(|m| api_err(host, format!("snapshot: {m}")))?;
        Ok(Some(snap))
    }
}

/// The longest answer `call` reads (member lists, health).
const MAX_ANSWER: usize = 16 << 20;
/// The longest pause a snapshot stream may take between two messages.
pub const SNAPSHOT_IDLE: Duration = Duration::from_secs(60);
/// The longest single message of a snapshot stream (etcd sends 32 KiB blobs, base64 in JSON).
const MAX_MESSAGE: usize = 8 << 20;

/// A snapshot written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub bytes: u64,
    /// sha256 of the whole file (database and etcd's trailer), hex.
    pub sha256: String,
}

/// Decodes etcd's snapshot stream (JSON messages `{"result":{"remaining_bytes":..,"blob":..}}`)
/// as it arrives: each blob is written out at once; only an unfinished message and the last
/// 32 bytes (etcd's sha256 trailer, to be checked at the end) are held.
#[derive(Default)]
pub struct SnapshotStream {
    pending: Vec<u8>,
    /// The last bytes written, not yet hashed as database: the trailer is the final 32.
    tail: Vec<u8>,
    db: sha2::Sha256,
    file: sha2::Sha256,
    pub written: u64,
    remaining: u64,
    /// The most bytes held at once (for the bounded-memory test).
    pub peak_held: usize,
}

impl SnapshotStream {
    /// Bytes expected in all, as far as the server has said.
    pub fn total(&self) -> u64 {
        self.written + self.remaining
    }

    pub fn feed(
        &mut self,
        data: &[u8],
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<(), String> {
        use base64::Engine as _;
        use sha2::Digest;
        self.pending.extend_from_slice(data);
        let mut used = 0;
        {
            let mut it = serde_json::Deserializer::from_slice(&self.pending)
                .into_iter::<serde_json::Value>();
            loop {
                match it.next() {
                    Some(Ok(msg)) => {
                        used = it.byte_offset();
                        if let Some(e) = msg.get("error") {
                            return Err(format!("the server failed: {e}"));
                        }
                        if let Some(r) = msg["result"]["remaining_bytes"].as_str() {
                            self.remaining = r
                                .parse()
                                .map_err(|e| format!("bad remaining_bytes {r:?}: {e}"))?;
                        } else if let Some(r) = msg["result"]["remaining_bytes"].as_u64() {
                            self.remaining = r;
                        }
                        if let Some(b) = msg["result"]["blob"].as_str() {
                            let blob = base64::engine::general_purpose::STANDARD
                                .decode(b)
                                .map_err(|e| format!("bad blob: {e}"))?;
                            out.write_all(&blob)
                                .map_err(|e| format!("cannot write: {e}"))?;
                            self.file.update(&blob);
                            self.written += blob.len() as u64;
                            self.tail.extend_from_slice(&blob);
                            if self.tail.len() > 32 {
                                let cut = self.tail.len() - 32;
                                self.db.update(&self.tail[..cut]);
                                self.tail.drain(..cut);
                            }
                        }
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => return Err(format!("bad message: {e}")),
                    None => break,
                }
            }
        }
        self.peak_held = self.peak_held.max(self.pending.len() + self.tail.len());
        self.pending.drain(..used);
        if self.pending.len() > MAX_MESSAGE {
            return Err(format!(
                "a message of more than {} MiB: not etcd's snapshot stream",
                MAX_MESSAGE >> 20
            ));
        }
        Ok(())
    }

    /// Checks the end: nothing left unparsed, and etcd's sha256 trailer matches the database.
    pub fn finish(self, out: &mut (dyn std::io::Write + Send)) -> Result<Snapshot, String> {
        use sha2::Digest;
        if self.pending.iter().any(|b| !b.is_ascii_whitespace()) {
            return Err(format!(
                "the stream ended inside a message after {} bytes",
                self.written
            ));
        }
        out.flush().map_err(|e| format!("cannot write: {e}"))?;
        if self.written % 512 != 32 {
            return Err(format!(
                "{} bytes, without etcd's sha256 trailer: the stream was cut short",
                self.written
            ));
        }
        if self.db.finalize().as_slice() != self.tail.as_slice() {
            return Err(
                "its sha256 trailer does not match its contents: damaged in transfer".into(),
            );
        }
        Ok(Snapshot {
            bytes: self.written,
            sha256: hex::encode(self.file.finalize()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd's stream: `{"result":{"remaining_bytes":..,"blob":..}}` messages of 32 KiB blobs,
    /// the last blob being the sha256 of the database before it, cut at arbitrary points.
    fn stream_of(db: &[u8]) -> Vec<Vec<u8>> {
        use base64::Engine as _;
        use sha2::Digest;
        let mut all = db.to_vec();
        all.extend_from_slice(&sha2::Sha256::digest(db));
        let mut text = Vec::new();
        let mut sent = 0;
        for c in all.chunks(32 * 1024) {
            sent += c.len();
            text.extend_from_slice(
                serde_json::json!({"result": {"remaining_bytes": (all.len() - sent).to_string(),
                    "blob": base64::engine::general_purpose::STANDARD.encode(c)}})
                .to_string()
                .as_bytes(),
            );
            text.push(b'\n');
        }
        // frames that split messages anywhere, as TLS records and chunks do
        text.chunks(7919).map(<[u8]>::to_vec).collect()
    }

    fn decode(frames: &[Vec<u8>]) -> (Result<Snapshot, String>, Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut st = SnapshotStream::default();
        for f in frames {
            if let Err(e) = st.feed(f, &mut out) {
                return (Err(e), out, st.peak_held);
            }
        }
        let peak = st.peak_held;
        (st.finish(&mut out), out, peak)
    }

    #[test]
    fn a_snapshot_stream_is_written_as_it_arrives_with_bounded_memory() {
        use sha2::Digest;
        // 8 MiB of database: what is held at once stays near one message
        let db: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let (snap, out, peak) = decode(&stream_of(&db));
        let snap = snap.unwrap();
        assert_eq!(snap.bytes as usize, db.len() + 32);
        assert_eq!(&out[..db.len()], &db[..]);
        assert_eq!(snap.sha256, hex::encode(sha2::Sha256::digest(&out)));
        assert!(peak < 128 * 1024, "held {peak} bytes at once");
    }

    #[test]
    fn a_damaged_or_cut_snapshot_stream_is_refused() {
        let db = vec![7u8; 40960];
        let frames = stream_of(&db);
        // cut short: the trailer is missing
        let all = frames.concat();
        let (r, _, _) = decode(&[all[..all.len() / 2].to_vec()]);
        assert!(r.unwrap_err().contains("ended inside a message"));
        // cut between messages: the trailer never came
        let first_end = all.iter().position(|&b| b == b'\n').unwrap() + 1;
        let (r, _, _) = decode(&[all[..first_end].to_vec()]);
        assert!(r.unwrap_err().contains("cut short"));
        // one byte of the database changed on the way (inside the base64 of the first blob)
        let mut bad: Vec<u8> = frames.concat();
        let at = bad.windows(6).position(|w| w == b"\"blob\"").unwrap() + 10;
        bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
        let (r, _, _) = decode(&[bad]);
        assert!(r.unwrap_err().contains("does not match"), "damaged");
        // a server error message
        let (r, _, _) =
            decode(&[br#"{"error":{"grpc_code":14,"message":"etcdserver: no leader"}}"#.to_vec()]);
        assert!(r.unwrap_err().contains("no leader"));
        // garbage
        let (r, _, _) = decode(&[b"<html>".to_vec()]);
        assert!(r.unwrap_err().contains("bad message"));
    }

    #[test]
    fn members_match_their_hosts() {
        let m = Member {
            id: "1".into(),
            name: "cp2".into(),
            peer_urls: vec!["https://10.0.0.12:2380".into()],
            is_learner: false,
        };
        assert!(m.is_on("10.0.0.12", "x"));
        assert!(m.is_on("10.9.9.9", "cp2"));
        assert!(!m.is_on("10.0.0.1", "cp1"));
    }
}
