//! A small client of the OCI distribution API over the crate's reqwest: manifests and blobs by
//! digest, blob uploads and manifest pushes, with the registry token flow (`WWW-Authenticate:
//! Bearer`, anonymous or with credentials) and Basic authentication, a CA file to trust, plain
//! HTTP only for hosts allowed by name, and mirrors (an upstream registry's pulls sent to a
//! mirror registry, repository path kept, `?ns=<upstream>` added as containerd does).
//!
//! Passwords and tokens never appear in messages or logs; reqwest's errors are reported without
//! their URL (a redirect to object storage may carry a signed query).

use super::error::ImageError;
use base64::Engine;
use reqwest::header::{self, HeaderMap};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use url::Url;

/// A user and password for one registry. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// A PEM file of CA certificates trusted besides the system's (a site registry's own CA).
    pub ca_file: Option<PathBuf>,
    /// Credentials by registry `host[:port]`, as contacted: a mirror's own host when a pull goes
    /// to a mirror, `docker.io` for Docker Hub.
    pub credentials: BTreeMap<String, Credentials>,
    /// Registries (`host[:port]`) spoken to over plain HTTP. Every other one is HTTPS, and a
    /// mirror, token service or redirect whose URL is `http://` is refused unless its host is
    /// listed here.
    pub plain_http: BTreeSet<String>,
    /// Upstream registry host -> mirror base URL (`https://10.0.0.9:5000`): pulls of
    /// `registry.k8s.io/pause` go to `https://10.0.0.9:5000/v2/pause/...`.
    pub mirrors: BTreeMap<String, String>,
}

/// Where requests for one repository go.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port]`.
    pub base: Url,
    /// `host[:port]` as named in messages and in the options (credentials, plain HTTP).
    pub key: String,
    /// The upstream registry when this is a mirror.
    pub ns: Option<String>,
    /// The repository path inside the registry (`coredns/coredns`).
    pub path: String,
}

impl Endpoint {
    /// `<base>/v2/<path>/<tail>`, with `?ns=` for a mirror.
    pub fn url(&self, tail: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("/v2/{}/{tail}", self.path));
        if let Some(ns) = &self.ns {
            u.query_pairs_mut().append_pair("ns", ns);
        }
        u
    }

    fn scope(&self, actions: &str) -> String {
        format!("repository:{}:{actions}", self.path)
    }
}

/// One `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// The challenges of a `WWW-Authenticate` value (RFC 7235: `scheme k=v, k="v", ...`, several
/// challenges separated by commas). Schemes other than Basic and Bearer are skipped.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    // tokenize into (scheme, params) groups
    let mut out = Vec::new();
    let mut cur: Option<(String, BTreeMap<String, String>)> = None;
    let s = value.as_bytes();
    let mut i = 0;
    let flush = |cur: &mut Option<(String, BTreeMap<String, String>)>, out: &mut Vec<Challenge>| {
        if let Some((scheme, params)) = cur.take() {
            match scheme.to_ascii_lowercase().as_str() {
                "basic" => out.push(Challenge::Basic),
                "bearer" => {
                    if let Some(realm) = params.get("realm") {
                        out.push(Challenge::Bearer {
                            realm: realm.clone(),
                            service: params.get("service").cloned(),
                            scope: params.get("scope").cloned(),
                        })
                    }
                }
                _ => {}
            }
        }
    };
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c);
    while i < s.len() {
        while i < s.len() && (s[i] == b' ' || s[i] == b',' || s[i] == b'\t') {
            i += 1;
        }
        let start = i;
        while i < s.len() && is_tchar(s[i]) {
            i += 1;
        }
        if start == i {
            i += 1; // a stray character
            continue;
        }
        let word = &value[start..i];
        let mut j = i;
        while j < s.len() && s[j] == b' ' {
            j += 1;
        }
        if j < s.len() && s[j] == b'=' && cur.is_some() {
            // a parameter of the current challenge
            j += 1;
            while j < s.len() && s[j] == b' ' {
                j += 1;
            }
            let mut v = String::new();
            if j < s.len() && s[j] == b'"' {
                j += 1;
                while j < s.len() && s[j] != b'"' {
                    if s[j] == b'\\' && j + 1 < s.len() {
                        j += 1;
                    }
                    // push whole UTF-8 characters
                    let ch = value[j..].chars().next().unwrap_or(' ');
                    v.push(ch);
                    j += ch.len_utf8();
                }
                j += 1;
            } else {
                let vs = j;
                while j < s.len() && s[j] != b',' && s[j] != b' ' {
                    j += 1;
                }
                v.push_str(&value[vs..j]);
            }
            if let Some((_, params)) = cur.as_mut() {
                params.insert(word.to_ascii_lowercase(), v);
            }
            i = j;
        } else {
            // a new scheme (token68 credentials after it are not used by registries)
            flush(&mut cur, &mut out);
            cur = Some((word.to_string(), BTreeMap::new()));
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// `Basic <base64(user:password)>`.
pub(crate) fn basic_header(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// `host[:port]` of a URL.
fn authority(u: &Url) -> String {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

/// An error and its causes in one line, without URLs.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    if timeout {
        s.push_str(" (timed out)");
    }
    s
}

/// A registry client: one per run, shared by all pulls and pushes (tokens are kept).
pub struct RegistryClient {
    http: reqwest::Client,
    opts: RegistryOptions,
    /// The challenge each registry answered with, to authenticate the next requests at once.
    challenges: Mutex<HashMap<String, Challenge>>,
    /// Bearer tokens by (registry, scope).
    tokens: Mutex<HashMap<(String, String), String>>,
    /// Attempts per request for transient failures (network, HTTP 429 and 5xx).
    pub attempts: u32,
    pub backoff: Duration,
}

impl RegistryClient {
    pub fn new(opts: RegistryOptions) -> Result<RegistryClient, ImageError> {
        let plain = opts.plain_http.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("more than 10 redirects")
            } else if attempt.url().scheme() != "https"
                && !(attempt.url().scheme() == "http" && plain.contains(&authority(attempt.url())))
            {
                attempt.error("a redirect to plain HTTP (or another scheme) was refused")
            } else {
                attempt.follow()
            }
        });
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .redirect(redirects)
            .user_agent(concat!("kubeforge/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).map_err(|e| ImageError::Config {
                message: format!("cannot read the registry CA file {}: {e}", ca.display()),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ImageError::Config {
                    message: format!(
                        "the registry CA file {} holds no usable PEM certificate: {}",
                        ca.display(),
                        describe(e)
                    ),
                })?;
            if certs.is_empty() {
                return Err(ImageError::Config {
                    message: format!(
                        "the registry CA file {} holds no PEM certificate",
                        ca.display()
                    ),
                });
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        for (upstream, base) in &opts.mirrors {
            check_mirror(upstream, base, &opts.plain_http)?;
        }
        let http = b.build().map_err(|e| ImageError::Config {
            message: format!("cannot set up the HTTP client: {}", describe(e)),
        })?;
        Ok(RegistryClient {
            http,
            opts,
            challenges: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            attempts: 4,
            backoff: Duration::from_millis(500),
        })
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Where pulls of `repo` (`registry/path`, as [`crate::release::Image::repo`]) go.
    pub(crate) fn pull_endpoint(&self, repo: &str) -> Result<Endpoint, ImageError> {
        let (host, path) = repo.split_once('/').ok_or_else(|| ImageError::Config {
            message: format!("{repo:?}: an image repository names its registry (host/path)"),
        })?;
        if let Some(base) = self.opts.mirrors.get(host) {
            let base = check_mirror(host, base, &self.opts.plain_http)?;
            return Ok(Endpoint {
                key: authority(&base),
                base,
                ns: Some(host.to_string()),
                path: path.to_string(),
            });
        }
        self.direct_endpoint(host, path)
    }

    /// A registry spoken to directly (a push target, or an upstream without a mirror).
    pub(crate) fn direct_endpoint(&self, host: &str, path: &str) -> Result<Endpoint, ImageError> {
        let scheme = if self.opts.plain_http.contains(host) {
            "http"
        } else {
            "https"
        };
        // Docker Hub's API lives on another host than its image names
        let api = if host == "docker.io" {
            "registry-1.docker.io"
        } else {
            host
        };
        let base = Url::parse(&format!("{scheme}://{api}/")).map_err(|e| ImageError::Config {
            message: format!("{host:?} is not a registry host[:port]: {e}"),
        })?;
        Ok(Endpoint {
            base,
            key: host.to_string(),
            ns: None,
            path: path.to_string(),
        })
    }

    fn auth_header(&self, ep: &Endpoint, actions: &str) -> Option<String> {
        let ch = self
            .challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ep.key)
            .cloned()?;
        match ch {
            Challenge::Basic => self.opts.credentials.get(&ep.key).map(basic_header),
            Challenge::Bearer { .. } => self
                .tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(ep.key.clone(), ep.scope(actions)))
                .map(|t| format!("Bearer {t}")),
        }
    }

    /// Sends a request built by `make` (called again for each try), authenticating when the
    /// registry challenges, and retrying network failures, 429 and 5xx. Returns the response
    /// of any other status for the caller to judge; 401 after authenticating, and 403, are
    /// [`ImageError::Auth`].
    pub(crate) async fn send(
        &self,
        ep: &Endpoint,
        actions: &str,
        action: &str,
        make: &(dyn Fn() -> Result<reqwest::RequestBuilder, ImageError> + Send + Sync),
    ) -> Result<reqwest::Response, ImageError> {
        let mut attempt = 0;
        let mut challenged = false;
        loop {
            attempt += 1;
            let mut rb = make()?;
            if let Some(h) = self.auth_header(ep, actions) {
                rb = rb.header(header::AUTHORIZATION, h);
            }
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    let message = format!("{action}: {}", describe(e));
                    if attempt < self.attempts {
                        tracing::warn!(
                            "registry {}: {message}; retrying ({attempt}/{})",
                            ep.key,
                            self.attempts
                        );
                        tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                        continue;
                    }
                    return Err(ImageError::Network {
                        registry: ep.key.clone(),
                        message: format!("{message} (after {attempt} attempts)"),
                    });
                }
            };
            let status = resp.status().as_u16();
            match status {
                401 => {
                    let creds = self.opts.credentials.get(&ep.key);
                    if challenged {
                        return Err(ImageError::Auth {
                            registry: ep.key.clone(),
                            message: match creds {
                                Some(c) => format!(
                                    "{action}: the registry refused the credentials of user {:?} (HTTP 401)",
                                    c.username
                                ),
                                None => format!(
                                    "{action}: the registry needs credentials (HTTP 401); none are configured for {}",
                                    ep.key
                                ),
                            },
                        });
                    }
                    let challenges: Vec<Challenge> = resp
                        .headers()
                        .get_all(header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(parse_www_authenticate)
                        .collect();
                    let bearer = challenges
                        .iter()
                        .find(|c| matches!(c, Challenge::Bearer { .. }));
                    let chosen = match bearer.or(challenges.first()) {
                        Some(c) => c.clone(),
                        None => {
                            return Err(ImageError::Auth {
                                registry: ep.key.clone(),
                                message: format!(
                                    "{action}: HTTP 401 without a Basic or Bearer challenge kubeforge can answer"
                                ),
                            });
                        }
                    };
                    match &chosen {
                        Challenge::Basic if creds.is_none() => {
                            return Err(ImageError::Auth {
                                registry: ep.key.clone(),
                                message: format!(
                                    "{action}: the registry asks for a user and password (HTTP 401); none are configured for {}",
                                    ep.key
                                ),
                            });
                        }
                        Challenge::Basic => {}
                        Challenge::Bearer {
                            realm,
                            service,
                            scope,
                        } => {
                            let token = self
                                .fetch_token(
                                    ep,
                                    actions,
                                    realm,
                                    service.as_deref(),
                                    scope.as_deref(),
                                )
                                .await?;
                            self.tokens
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert((ep.key.clone(), ep.scope(actions)), token);
                        }
                    }
                    self.challenges
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(ep.key.clone(), chosen);
                    challenged = true;
                    attempt -= 1; // authenticating is not a failed try
                }
                403 => {
                    let detail = error_detail(resp).await;
                    return Err(ImageError::Auth {
                        registry: ep.key.clone(),
                        message: format!("{action}: access denied (HTTP 403){detail}"),
                    });
                }
                429 | 500..=599 if attempt < self.attempts => {
                    tracing::warn!(
                        "registry {}: {action}: HTTP {status}; retrying ({attempt}/{})",
                        ep.key,
                        self.attempts
                    );
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                }
                _ => return Ok(resp),
            }
        }
    }

    /// A token from the registry's token service for the scope of `actions` (and the one the
    /// challenge named), with the registry's credentials when there are some, else anonymous.
    async fn fetch_token(
        &self,
        ep: &Endpoint,
        actions: &str,
        realm: &str,
        service: Option<&str>,
        challenge_scope: Option<&str>,
    ) -> Result<String, ImageError> {
        let auth_err = |message: String| ImageError::Auth {
            registry: ep.key.clone(),
            message,
        };
        let mut url = Url::parse(realm).map_err(|_| {
            auth_err(format!(
                "the token service realm {:?} is not a URL",
                crate::util::redact_url(realm)
            ))
        })?;
        let realm_host = authority(&url);
        match url.scheme() {
            "https" => {}
            "http" if self.opts.plain_http.contains(&realm_host) => {}
            _ => {
                return Err(auth_err(format!(
                    "the token service {realm_host} is not HTTPS; kubeforge sends no credentials over plain HTTP unless that host is allowed"
                )));
            }
        }
        url.set_username("").ok();
        url.set_password(None).ok();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            let ours = ep.scope(actions);
            q.append_pair("scope", &ours);
            if let Some(s) = challenge_scope.filter(|s| *s != ours) {
                q.append_pair("scope", s);
            }
        }
        let creds = self.opts.credentials.get(&ep.key);
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let mut rb = self.http.get(url.clone());
            if let Some(c) = creds {
                rb = rb.header(header::AUTHORIZATION, basic_header(c));
            }
            match rb.send().await {
                Ok(r)
                    if (r.status().as_u16() == 429 || r.status().is_server_error())
                        && attempt < self.attempts =>
                {
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await
                }
                Ok(r) => break r,
                Err(_) if attempt < self.attempts => {
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await
                }
                Err(e) => {
                    return Err(ImageError::Network {
                        registry: ep.key.clone(),
                        message: format!("token service {realm_host}: {}", describe(e)),
                    });
                }
            }
        };
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(auth_err(match creds {
                Some(c) => format!(
                    "the token service {realm_host} refused the credentials of user {:?} (HTTP {status})",
                    c.username
                ),
                None => format!(
                    "the token service {realm_host} refused anonymous access (HTTP {status}); configure credentials for {}",
                    ep.key
                ),
            }));
        }
        if !resp.status().is_success() {
            return Err(auth_err(format!(
                "the token service {realm_host} answered HTTP {status}"
            )));
        }
        let body = read_limited(resp, 1 << 20)
            .await
            .map_err(|m| auth_err(format!("the token service {realm_host}: {m}")))?;
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body)
            .map_err(|_| auth_err(format!("the token service {realm_host} sent no JSON token")))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                auth_err(format!(
                    "the token service {realm_host} sent no usable token"
                ))
            })
    }
}

/// Checks a mirror base URL: `https://host[:port]` (or `http://` for an allowed host), no path,
/// no credentials in it.
fn check_mirror(
    upstream: &str,
    base: &str,
    plain_http: &BTreeSet<String>,
) -> Result<Url, ImageError> {
    let bad = |why: &str| ImageError::Config {
        message: format!(
            "the mirror of {upstream} ({}) {why}",
            crate::util::redact_url(base)
        ),
    };
    let u = Url::parse(base).map_err(|_| bad("is not a URL like https://10.0.0.9:5000"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad(
            "carries credentials; give them as the registry's credentials instead",
        ));
    }
    if u.path() != "/" && !u.path().is_empty() || u.query().is_some() {
        return Err(bad(
            "has a path or query; give the registry's base URL (scheme://host[:port])",
        ));
    }
    match u.scheme() {
        "https" => {}
        "http" if plain_http.contains(&authority(&u)) => {}
        "http" => {
            return Err(bad(
                "is plain HTTP; allow plain HTTP for that host explicitly to use it",
            ));
        }
        _ => return Err(bad("is not an https:// URL")),
    }
    Ok(u)
}

/// The registry's error message from a failed response, as `: CODE: message` (or empty).
pub(crate) async fn error_detail(resp: reqwest::Response) -> String {
    let Ok(body) = read_limited(resp, 16 << 10).await else {
        return String::new();
    };
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<OneError>,
    }
    #[derive(serde::Deserialize)]
    struct OneError {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(&body) {
        Ok(e) if !e.errors.is_empty() => {
            let parts: Vec<String> = e
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect();
            format!(": {}", parts.join("; "))
        }
        _ => String::new(),
    }
}

/// A response body of at most `limit` bytes.
pub(crate) async fn read_limited(resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, String> {
    use futures_util::StreamExt;
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(format!("the response is larger than {limit} bytes"));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(describe)?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(format!("the response is larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The `Docker-Content-Digest` header, when sent.
pub(crate) fn content_digest(h: &HeaderMap) -> Option<String> {
    h.get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_challenges_are_parsed() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            }]
        );
        assert_eq!(
            parse_www_authenticate(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic]
        );
        // two challenges in one value, unquoted values, odd case, escapes
        let c = parse_www_authenticate(
            r#"basic realm=site, BEARER Realm="https://h/t?a=1",service=reg\"x, scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0], Challenge::Basic);
        assert_eq!(
            c[1],
            Challenge::Bearer {
                realm: "https://h/t?a=1".into(),
                service: Some(r#"reg\"x"#.into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        let c = parse_www_authenticate(r#"Bearer service="x", realm="https://q/\"t\"""#);
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: r#"https://q/"t""#.into(),
                service: Some("x".into()),
                scope: None
            }]
        );
        // a Bearer challenge without a realm cannot be answered; unknown schemes are skipped
        assert!(parse_www_authenticate(r#"Bearer service="x""#).is_empty());
        assert!(parse_www_authenticate(r#"Negotiate abc=="#).is_empty());
        assert!(parse_www_authenticate("").is_empty());
    }

    #[test]
    fn credentials_never_show_their_password() {
        let c = Credentials {
            username: "ci".into(),
            password: "s3cret-pw".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
        let opts = RegistryOptions {
            credentials: [("r.example:5000".to_string(), c.clone())].into(),
            ..Default::default()
        };
        assert!(!format!("{opts:?}").contains("s3cret"));
        assert_eq!(basic_header(&c), "Basic Y2k6czNjcmV0LXB3");
    }

    #[test]
    fn mirrors_keep_the_path_and_need_plain_http_allowed() {
        let mut opts = RegistryOptions::default();
        opts.mirrors
            .insert("registry.k8s.io".into(), "https://10.0.0.9:5000".into());
        let c = RegistryClient::new(opts.clone()).unwrap();
        let ep = c.pull_endpoint("registry.k8s.io/coredns/coredns").unwrap();
        assert_eq!(ep.key, "10.0.0.9:5000");
        assert_eq!(
            ep.url(&format!("manifests/sha256:{}", "a".repeat(64)))
                .as_str(),
            format!(
                "https://10.0.0.9:5000/v2/coredns/coredns/manifests/sha256:{}?ns=registry.k8s.io",
                "a".repeat(64)
            )
        );
        let other = c.pull_endpoint("quay.io/x/y").unwrap();
        assert_eq!(
            other.url("tags/list").as_str(),
            "https://quay.io/v2/x/y/tags/list"
        );
        assert_eq!(
            c.pull_endpoint("docker.io/library/nginx")
                .unwrap()
                .base
                .as_str(),
            "https://registry-1.docker.io/"
        );

        opts.mirrors
            .insert("docker.io".into(), "http://10.0.0.9:5001".into());
        let e = RegistryClient::new(opts.clone()).err().unwrap().to_string();
        assert!(e.contains("docker.io") && e.contains("plain HTTP"), "{e}");
        opts.plain_http.insert("10.0.0.9:5001".into());
        assert!(RegistryClient::new(opts.clone()).is_ok());

        for bad in [
            "https://u:pw@10.0.0.9:5000",
            "https://10.0.0.9:5000/v2",
            "ftp://10.0.0.9",
            "10.0.0.9:5000",
        ] {
            let mut o = RegistryOptions::default();
            o.mirrors.insert("quay.io".into(), bad.into());
            let e = RegistryClient::new(o).err().unwrap().to_string();
            assert!(e.contains("quay.io") && !e.contains("pw@"), "{bad}: {e}");
        }
    }

    #[test]
    fn plain_http_only_for_listed_hosts() {
        let mut opts = RegistryOptions::default();
        opts.plain_http.insert("127.0.0.1:5000".into());
        let c = RegistryClient::new(opts).unwrap();
        assert_eq!(
            c.pull_endpoint("127.0.0.1:5000/a").unwrap().base.scheme(),
            "http"
        );
        assert_eq!(
            c.pull_endpoint("127.0.0.1:5001/a").unwrap().base.scheme(),
            "https"
        );
    }

    #[test]
    fn a_bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate").unwrap();
        let e = RegistryClient::new(RegistryOptions {
            ca_file: Some(f.clone()),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains(&f.display().to_string()), "{e}");
        assert_eq!(e.kind(), crate::error::ErrorKind::Local);
    }
}
