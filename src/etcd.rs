//! etcd's v3 API (its JSON gateway) on a control plane, reached through an SSH tunnel to the
//! host's loopback with the API server's etcd client certificate: member list, removal of a
//! member (also one whose host is dead), health, snapshots. No tool is needed on the hosts; the
//! certificate and key are read over SSH and held in memory only.

use crate::ssh::{Session, SshError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PKI: &str = "/etc/kubernetes/pki";

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(transparent)]
    Ssh(#[from] Box<SshError>),
    #[error("{host}: etcd: {message}")]
    Api { host: String, message: String },
}

impl From<SshError> for EtcdError {
    fn from(e: SshError) -> Self {
        EtcdError::Ssh(Box::new(e))
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

fn api_err(host: &str, message: impl Into<String>) -> EtcdError {
    EtcdError::Api {
        host: host.to_string(),
        message: message.into(),
    }
}

/// Parses an HTTP/1.1 response (Content-Length, chunked, or until close).
pub fn parse_http(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[end + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..nl]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[nl + 2..];
        if size == 0 {
            break;
        }
        if rest.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    Ok((status, out))
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
            let c = c.map_err(|e| api_err(&host, format!("etcd CA: {e}")))?;
            roots
                .add(c)
                .map_err(|e| api_err(&host, format!("etcd CA: {e}")))?;
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<_, _>>()
            .map_err(|e| api_err(&host, format!("etcd client certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| api_err(&host, format!("etcd client key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| api_err(&host, e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| api_err(&host, format!("etcd client certificate: {e}")))?;
        Ok(Etcd {
            session,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// One request to the member on this host (127.0.0.1:2379 there).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, Vec<u8>), EtcdError> {
        let host = self.session.name();
        let work = async {
            let stream = self.session.tunnel("127.0.0.1", 2379).await?;
            let server = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
            let mut tls = self
                .tls
                .connect(server, stream)
                .await
                .map_err(|e| api_err(host, format!("TLS to etcd: {e}")))?;
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(req.as_bytes())
                .await
                .map_err(|e| api_err(host, e.to_string()))?;
            tls.flush()
                .await
                .map_err(|e| api_err(host, e.to_string()))?;
            let mut raw = Vec::new();
            // a server that closes without close_notify still gave us the whole response
            if let Err(e) = tls.read_to_end(&mut raw).await
                && raw.is_empty()
            {
                return Err(api_err(host, e.to_string()));
            }
            parse_http(&raw).map_err(|e| api_err(host, format!("bad HTTP response: {e}")))
        };
        tokio::time::timeout(Duration::from_secs(60), work)
            .await
            .map_err(|_| api_err(host, format!("{path}: no answer within 60s")))?
    }

    pub async fn members(&self) -> Result<Vec<Member>, EtcdError> {
        let host = self.session.name();
        let (status, body) = self.call("POST", "/v3/cluster/member/list", "{}").await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| api_err(host, format!("member list: {e}")))?;
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

    /// Whether this member answers /health with true.
    pub async fn healthy(&self) -> bool {
        match self.call("GET", "/health", "").await {
            Ok((200, body)) => serde_json::from_slice::<serde_json::Value>(&body)
                .map(|v| v["health"] == "true")
                .unwrap_or(false),
            _ => false,
        }
    }

    /// A snapshot through etcd's Maintenance API; None when the server does not offer it.
    pub async fn snapshot(&self) -> Result<Option<Vec<u8>>, EtcdError> {
        use base64::Engine as _;
        let host = self.session.name();
        let (status, body) = self.call("POST", "/v3/maintenance/snapshot", "{}").await?;
        if status == 404 || status == 501 {
            return Ok(None);
        }
        if status != 200 {
            return Err(api_err(host, format!("snapshot: HTTP {status}")));
        }
        // a stream of JSON messages: {"result":{"blob":"<base64>", ...}}
        let mut out = Vec::new();
        for msg in serde_json::Deserializer::from_slice(&body).into_iter::<serde_json::Value>() {
            let msg = msg.map_err(|e| api_err(host, format!("snapshot stream: {e}")))?;
            if let Some(e) = msg.get("error") {
                return Err(api_err(host, format!("snapshot: {e}")));
            }
            if let Some(b) = msg["result"]["blob"].as_str() {
                out.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| api_err(host, format!("snapshot blob: {e}")))?,
                );
            }
        }
        verify_snapshot(&out).map_err(|m| api_err(host, format!("snapshot: {m}")))?;
        Ok(Some(out))
    }
}

/// etcd's snapshot stream ends with the sha256 of the database before it (a database is whole
/// pages, so the trailer is what a size of 32 modulo 512 means, as etcdutl reads it). A
/// snapshot whose trailer does not match was damaged on the way.
pub fn verify_snapshot(db: &[u8]) -> Result<(), String> {
    use sha2::Digest;
    if db.len() % 512 != 32 {
        return Err(format!(
            "{} bytes, without etcd's sha256 trailer: the stream was cut short",
            db.len()
        ));
    }
    let (data, trailer) = db.split_at(db.len() - 32);
    if sha2::Sha256::digest(data).as_slice() != trailer {
        return Err("its sha256 trailer does not match its contents: damaged in transfer".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_carry_their_own_sha256() {
        use sha2::Digest;
        let mut db = vec![7u8; 4096];
        db.extend_from_slice(&sha2::Sha256::digest(&db));
        assert_eq!(verify_snapshot(&db), Ok(()));
        let mut bad = db.clone();
        bad[10] ^= 1;
        assert!(
            verify_snapshot(&bad)
                .unwrap_err()
                .contains("does not match")
        );
        assert!(
            verify_snapshot(&db[..4000])
                .unwrap_err()
                .contains("cut short")
        );
    }

    #[test]
    fn http_responses() {
        let (s, b) = parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"{}"[..]));
        let (s, b) = parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abcde"[..]));
        assert!(parse_http(b"garbage").is_err());
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
