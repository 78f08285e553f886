//! An authenticated OpenStack session (osauth): clouds.yaml (`OS_CLIENT_CONFIG_FILE`,
//! ./clouds.yaml, ~/.config/openstack, /etc/openstack; with secure.yaml) or `OS_*` variables;
//! TLS verified (a `cacert` is honoured, `verify: false` is refused); JSON calls to Nova,
//! Neutron, Glance and Octavia with their errors turned into messages. Credentials are never
//! part of a message.

use osauth::services::{COMPUTE, GenericService, IMAGE, NETWORK, VersionSelector};
use osauth::{ErrorKind, Session};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

pub const LOAD_BALANCER: GenericService =
    GenericService::new("load-balancer", VersionSelector::Major(2));

/// The compute microversion kubeforge speaks: tags on create (2.52), the `policy` of server
/// groups (2.64).
pub const NOVA_MICROVERSION: (u16, u16) = (2, 64);

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("OpenStack configuration: {0}")]
    Config(String),
    #[error("authentication to OpenStack failed ({who}): {message}")]
    Auth { who: String, message: String },
    #[error("{what}: {message}")]
    Api {
        what: String,
        status: Option<u16>,
        message: String,
    },
    #[error("{kind} `{name}` does not exist in the cloud{}", if available.is_empty() { String::new() } else { format!(" (available: {})", sorted(available).join(", ")) })]
    NotFound {
        kind: &'static str,
        name: String,
        available: Vec<String>,
    },
    /// A wait that gave up: says what it waited for, how long, and what it last saw.
    #[error("{0}")]
    Timeout(String),
    /// Refused by ownership or policy: named like the cluster's but not kubeforge's, or a
    /// change kubeforge does not make.
    #[error("{0}")]
    Refused(String),
    #[error(
        "server {name} went to ERROR: {fault} (the next apply deletes and recreates a server that never launched; one that ran is left for you to inspect)"
    )]
    ServerError { name: String, fault: String },
}

impl CloudError {
    pub fn status(&self) -> Option<u16> {
        match self {
            CloudError::Api { status, .. } => *status,
            _ => None,
        }
    }
    /// HTTP 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
    /// HTTP 409 (the resource exists, or is in use).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
    /// HTTP 403: the cloud's policy refused the call.
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(403)
    }
    /// A failed wait, in the cloud's error type.
    pub fn from_wait(e: crate::wait::WaitError<CloudError>) -> CloudError {
        e.into_error(CloudError::Timeout)
    }
}

/// The body of a response kubeforge does not read.
pub type Ignored = serde::de::IgnoredAny;

#[derive(Clone, Copy, Debug)]
pub enum Svc {
    Compute,
    Network,
    Image,
    LoadBalancer,
}

pub struct Cloud {
    session: Session,
    /// Who we are, for messages: `user admin, project admin at http://...`.
    pub who: String,
    /// The settings the cloud provider (CCM, Cinder CSI) needs, secrets included; never printed.
    pub credentials: Credentials,
    /// The project the session's token is scoped to (from Keystone): list calls that look for
    /// the cluster's resources are limited to it, since admin credentials see every project's.
    pub project_id: String,
}

/// The auth of the session, for the cloud-controller-manager's cloud.conf.
#[derive(Clone, Default)]
pub struct Credentials {
    pub auth_url: String,
    pub region: Option<String>,
    /// The `auth` keys of clouds.yaml (or the `OS_*` variables), and `cacert`: the CA bundle
    /// that verifies the cloud's TLS (clouds.yaml's `cacert` or `OS_CACERT`), as an absolute path.
    pub fields: Vec<(String, String)>,
}

impl Credentials {
    /// The CA bundle that verifies the cloud's TLS, if one is given.
    pub fn cacert(&self) -> Option<PathBuf> {
        self.fields
            .iter()
            .find(|(k, _)| k == "cacert")
            .map(|(_, v)| PathBuf::from(v))
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.auth_url)
    }
}

fn config_paths() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("OS_CLIENT_CONFIG_FILE") {
        v.push(PathBuf::from(p));
    }
    v.push(PathBuf::from("clouds.yaml"));
    if let Some(h) = dirs::home_dir() {
        v.push(h.join(".config/openstack/clouds.yaml"));
    }
    v.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    v
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn read_yaml(path: &std::path::Path) -> Result<Option<Value>, CloudError> {
    match crate::inventory::read_text_file(path, 4 << 20, "a clouds.yaml") {
        Ok(t) => serde_saphyr::from_str::<Value>(&t).map(Some).map_err(|e| {
            CloudError::Config(format!("{}: {}", path.display(), e.without_snippet()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CloudError::Config(format!("{}: {e}", path.display()))),
    }
}

/// The clouds.yaml entry `name` (with secure.yaml merged), and the file it came from.
fn cloud_entry(name: &str) -> Result<(Value, PathBuf), CloudError> {
    let mut tried = Vec::new();
    for p in config_paths() {
        tried.push(p.display().to_string());
        let Some(doc) = read_yaml(&p)? else { continue };
        let Some(mut entry) = doc.get("clouds").and_then(|c| c.get(name)).cloned() else {
            continue;
        };
        let secure = p.with_file_name("secure.yaml");
        if let Some(sec) = read_yaml(&secure)?
            && let Some(s) = sec.get("clouds").and_then(|c| c.get(name))
        {
            merge(&mut entry, s);
        }
        return Ok((entry, p));
    }
    Err(CloudError::Config(format!(
        "no cloud `{name}` in clouds.yaml (looked in {})",
        tried.join(", ")
    )))
}

fn api_err(what: &str, e: osauth::Error) -> CloudError {
    let status = match e.kind() {
        ErrorKind::AuthenticationFailed => Some(401),
        ErrorKind::AccessDenied => Some(403),
        ErrorKind::ResourceNotFound => Some(404),
        ErrorKind::Conflict => Some(409),
        _ => None,
    };
    CloudError::Api {
        what: what.to_string(),
        status,
        message: e.to_string(),
    }
}

/// The message of an OpenStack error body, whichever service wrote it:
/// `{"itemNotFound": {"message": ...}}`, `{"NeutronError": {"message": ...}}`,
/// `{"faultstring": ...}`, `{"error": {"message": ...}}`, `{"message": ...}`.
pub fn error_message(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(300)
            .collect();
    };
    let pick = |v: &Value| -> Option<String> {
        v.get("message")
            .or_else(|| v.get("faultstring"))
            .or_else(|| v.get("detail"))
            .and_then(Value::as_str)
            .map(String::from)
    };
    if let Some(m) = pick(&v) {
        return m;
    }
    if let Some(o) = v.as_object() {
        for inner in o.values() {
            if let Some(m) = pick(inner) {
                return m;
            }
        }
    }
    v.to_string().chars().take(300).collect()
}

impl Cloud {
    /// Logs in with the clouds.yaml entry `cloud`, or with the `OS_*` variables.
    pub async fn connect(cloud: Option<&str>) -> Result<Cloud, CloudError> {
        // OS_CLOUD names a clouds.yaml entry, as it does for the openstack CLI
        let env_cloud = std::env::var("OS_CLOUD").ok().filter(|c| !c.is_empty());
        let (config, who, creds) = match cloud.or(env_cloud.as_deref()) {
            Some(name) => {
                let (mut entry, path) = cloud_entry(name)?;
                // the secrets first: an error of the typed parsing below may quote a value
                register_secrets(&entry);
                if entry.get("verify").and_then(Value::as_bool) == Some(false) {
                    return Err(CloudError::Config(format!(
                        "cloud `{name}` in {} sets `verify: false`; kubeforge always verifies TLS: give the CA with `cacert:` instead",
                        path.display()
                    )));
                }
                // a relative cacert is relative to the clouds.yaml that names it
                let cacert = match entry.get("cacert") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(c)) => {
                        let base = path.parent().unwrap_or(std::path::Path::new("."));
                        let abs = absolute(&base.join(c));
                        entry["cacert"] = Value::String(abs.display().to_string());
                        Some(abs)
                    }
                    Some(_) => {
                        return Err(CloudError::Config(format!(
                            "cloud `{name}` in {}: `cacert` must be the path of a PEM file",
                            path.display()
                        )));
                    }
                };
                let auth = entry.get("auth").cloned().unwrap_or_default();
                let who = format!(
                    "cloud {name} from {}: {} at {}",
                    path.display(),
                    describe_principal(&auth),
                    auth.get("auth_url").and_then(Value::as_str).unwrap_or("?")
                );
                let creds = credentials_of(
                    &auth,
                    entry.get("region_name").and_then(Value::as_str),
                    cacert,
                );
                let config: osauth::CloudConfig = serde_json::from_value(entry).map_err(|e| {
                    CloudError::Config(format!(
                        "cloud `{name}` in {}: {}",
                        path.display(),
                        crate::secrets::redact(&e.to_string())
                    ))
                })?;
                (config, who, creds)
            }
            None => {
                let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                let mut auth = serde_json::Map::new();
                for (k, v) in ENV_AUTH {
                    if let Some(val) = env(v) {
                        auth.insert(k.to_string(), Value::String(val));
                    }
                }
                let auth = Value::Object(auth);
                register_secrets(&json_auth(&auth));
                let config = osauth::CloudConfig::from_env().map_err(|e| {
                    CloudError::Config(format!(
                        "no spec.openstack.cloud and no usable OS_* environment: {}",
                        crate::secrets::redact(&e.to_string())
                            .replace(|c: char| c.is_control(), " ")
                    ))
                })?;
                let who = format!(
                    "OS_* environment: {} at {}",
                    describe_principal(&auth),
                    env("OS_AUTH_URL").unwrap_or_default()
                );
                let cacert = env("OS_CACERT").map(|c| absolute(std::path::Path::new(&c)));
                let creds = credentials_of(&auth, env("OS_REGION_NAME").as_deref(), cacert);
                (config, who, creds)
            }
        };
        let session = config.create_session().await.map_err(|e| {
            let message = match e.kind() {
                ErrorKind::AuthenticationFailed => "the credentials were refused (HTTP 401): check the password or application credential".to_string(),
                _ => e.to_string(),
            };
            CloudError::Auth {
                who: who.clone(),
                message: crate::secrets::redact(&message),
            }
        })?;
        let project_id = scoped_project(&session)
            .await
            .map_err(|message| CloudError::Auth {
                who: who.clone(),
                message,
            })?;
        Ok(Cloud {
            session,
            who,
            credentials: creds,
            project_id,
        })
    }

    /// A list call limited to the session's project (`project_id=`): for the cluster's own
    /// resources, which must never be another project's, however they are tagged or named.
    pub fn list_ours(&self, svc: Svc, path: &[&str]) -> RequestBuilder<'_> {
        self.get(svc, path).query("project_id", &self.project_id)
    }

    fn request(&self, svc: Svc, method: reqwest::Method, path: &[&str]) -> RequestBuilder<'_> {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        RequestBuilder {
            cloud: self,
            svc,
            method,
            path,
            body: None,
            query: Vec::new(),
        }
    }

    pub fn get(&self, svc: Svc, path: &[&str]) -> RequestBuilder<'_> {
        self.request(svc, reqwest::Method::GET, path)
    }
    pub fn post(&self, svc: Svc, path: &[&str], body: Value) -> RequestBuilder<'_> {
        let mut r = self.request(svc, reqwest::Method::POST, path);
        r.body = Some(body);
        r
    }
    pub fn put(&self, svc: Svc, path: &[&str], body: Option<Value>) -> RequestBuilder<'_> {
        let mut r = self.request(svc, reqwest::Method::PUT, path);
        r.body = body;
        r
    }
    pub fn delete(&self, svc: Svc, path: &[&str]) -> RequestBuilder<'_> {
        self.request(svc, reqwest::Method::DELETE, path)
    }

    /// Refuses a compute API older than the microversion kubeforge speaks (from Nova's version
    /// document; a cloud that does not say is given the benefit of the doubt).
    pub async fn check_compute_microversion(&self) -> Result<(), CloudError> {
        let want = osauth::ApiVersion(NOVA_MICROVERSION.0, NOVA_MICROVERSION.1);
        match self.session.get_api_versions(COMPUTE).await {
            Ok(Some((_, max))) if max < want => Err(CloudError::Config(format!(
                "the compute API (Nova) of this cloud supports microversions up to {max}; kubeforge needs {want} (tags on create, server group policies): ask the cloud's operator, or use a newer cloud"
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(api_err("read the compute API's versions", e)),
        }
    }

    /// Whether Neutron takes `tags` in the body of a create (the `tag-creation` extension), so
    /// that a resource never exists untagged.
    pub async fn neutron_tags_on_create(&self) -> Result<bool, CloudError> {
        Ok(self
            .get(Svc::Network, &["extensions", "tag-creation"])
            .send_opt::<Ignored>("read Neutron's extension tag-creation")
            .await?
            .is_some())
    }

    /// Whether the catalog has Octavia.
    pub async fn has_load_balancer(&self) -> bool {
        self.session
            .get_endpoint(LOAD_BALANCER, osauth::client::NO_PATH)
            .await
            .is_ok()
    }
}

fn describe_principal(auth: &Value) -> String {
    let s = |k: &str| auth.get(k).and_then(Value::as_str).map(String::from);
    match (
        s("application_credential_id").or(s("application_credential_name")),
        s("username"),
    ) {
        (Some(id), _) => format!("application credential {id}"),
        (None, Some(u)) => format!(
            "user {u}{}",
            s("project_name")
                .map(|p| format!(", project {p}"))
                .unwrap_or_default()
        ),
        _ => "unknown principal".into(),
    }
}

/// The `OS_*` variables of an openrc file, as clouds.yaml `auth` keys.
const ENV_AUTH: [(&str, &str); 16] = [
    ("auth_url", "OS_AUTH_URL"),
    ("username", "OS_USERNAME"),
    ("user_id", "OS_USER_ID"),
    ("password", "OS_PASSWORD"),
    ("project_name", "OS_PROJECT_NAME"),
    ("project_id", "OS_PROJECT_ID"),
    ("user_domain_name", "OS_USER_DOMAIN_NAME"),
    ("user_domain_id", "OS_USER_DOMAIN_ID"),
    ("project_domain_name", "OS_PROJECT_DOMAIN_NAME"),
    ("project_domain_id", "OS_PROJECT_DOMAIN_ID"),
    ("domain_name", "OS_DOMAIN_NAME"),
    ("domain_id", "OS_DOMAIN_ID"),
    ("application_credential_id", "OS_APPLICATION_CREDENTIAL_ID"),
    (
        "application_credential_name",
        "OS_APPLICATION_CREDENTIAL_NAME",
    ),
    (
        "application_credential_secret",
        "OS_APPLICATION_CREDENTIAL_SECRET",
    ),
    ("token", "OS_TOKEN"),
];

/// The ID of the project the session's token is scoped to. osauth keeps only the token, so it
/// is read back from Keystone (`GET /v3/auth/tokens` with the token as its own subject, which
/// Keystone's default policy allows every user). The token is registered as a secret.
async fn scoped_project(session: &Session) -> Result<String, String> {
    let client = session.client();
    let url = client
        .get_endpoint("identity", session.endpoint_filters())
        .await
        .map_err(|e| format!("no identity endpoint in the catalog: {e}"))?;
    let base = url.as_str().trim_end_matches('/');
    let tokens = if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    };
    let probe = client
        .auth_type()
        .authenticate(client.inner(), client.inner().get(&tokens))
        .await
        .and_then(|r| Ok(r.build()?))
        .map_err(|e| format!("cannot read the session's token: {e}"))?;
    let token = probe
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or("the session has no token")?
        .to_string();
    crate::secrets::register(&token);
    let resp = client
        .inner()
        .get(&tokens)
        .header("X-Auth-Token", &token)
        .header("X-Subject-Token", &token)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| {
            crate::secrets::redact(&format!("reading the token's scope: {}", e.without_url()))
        })?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("reading the token's scope: {}", e.without_url()))?;
    if !status.is_success() {
        return Err(format!(
            "reading the token's scope: HTTP {}",
            status.as_u16()
        ));
    }
    project_of_token(&body)
}

/// `token.project.id` of a Keystone v3 token document; a token not scoped to a project is
/// refused (kubeforge creates and deletes resources in one project).
fn project_of_token(body: &Value) -> Result<String, String> {
    use serde::Deserialize as _;
    super::api::TokenDoc::deserialize(body)
        .ok()
        .and_then(|t| t.token.project)
        .map(|p| p.id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| "the credentials are not scoped to a project: set project_name or project_id (an application credential always is)".to_string())
}

fn json_auth(auth: &Value) -> Value {
    serde_json::json!({ "auth": auth })
}

fn is_secret_key(k: &str) -> bool {
    k.contains("password") || k.contains("secret") || k == "token"
}

/// Registers every secret of a clouds.yaml entry (`auth.password`, `auth.*secret*`,
/// `auth.token`), whatever its YAML type, so that no message can show it.
fn register_secrets(entry: &Value) {
    let Some(auth) = entry.get("auth").and_then(Value::as_object) else {
        return;
    };
    for (k, v) in auth {
        if !is_secret_key(k) {
            continue;
        }
        match v {
            Value::String(s) => crate::secrets::register(s),
            Value::Null => {}
            other => crate::secrets::register(&other.to_string()),
        }
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn credentials_of(auth: &Value, region: Option<&str>, cacert: Option<PathBuf>) -> Credentials {
    let mut fields = Vec::new();
    if let Some(o) = auth.as_object() {
        for (k, v) in o {
            if let Some(v) = v.as_str() {
                fields.push((k.clone(), v.to_string()));
            }
        }
    }
    if let Some(c) = cacert {
        fields.push(("cacert".into(), c.display().to_string()));
    }
    Credentials {
        auth_url: auth
            .get("auth_url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        region: region.map(String::from),
        fields,
    }
}

pub struct RequestBuilder<'a> {
    cloud: &'a Cloud,
    svc: Svc,
    method: reqwest::Method,
    path: Vec<String>,
    body: Option<Value>,
    query: Vec<(String, String)>,
}

impl RequestBuilder<'_> {
    pub fn query(mut self, k: &str, v: &str) -> Self {
        self.query.push((k.to_string(), v.to_string()));
        self
    }

    /// Sends it and reads the response as a `T` (`Ignored` for a body kubeforge does not read);
    /// `what` names the call in errors (`create server demo-worker-1`).
    pub async fn send<T: serde::de::DeserializeOwned>(self, what: &str) -> Result<T, CloudError> {
        let what = what.to_string();
        let bytes = self.send_bytes(&what).await?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|e| CloudError::Api {
            what,
            status: None,
            message: format!("unexpected response: {e}"),
        })
    }

    async fn send_bytes(self, what: &str) -> Result<bytes::Bytes, CloudError> {
        let s = &self.cloud.session;
        let path = self.path;
        macro_rules! build {
            ($svc:expr) => {{
                let mut b = s.request($svc, self.method.clone(), path.clone());
                if !self.query.is_empty() {
                    b = b.query(&self.query);
                }
                if let Some(body) = &self.body {
                    b = b.json(body);
                }
                b.timeout(Duration::from_secs(60))
            }};
        }
        let resp = match self.svc {
            Svc::Compute => {
                build!(COMPUTE)
                    .api_version(osauth::ApiVersion(NOVA_MICROVERSION.0, NOVA_MICROVERSION.1))
                    .send_unchecked()
                    .await
            }
            Svc::Network => build!(NETWORK).send_unchecked().await,
            Svc::Image => build!(IMAGE).send_unchecked().await,
            Svc::LoadBalancer => build!(LOAD_BALANCER).send_unchecked().await,
        }
        .map_err(|e| api_err(what, e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| CloudError::Api {
            what: what.to_string(),
            status: None,
            message: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(CloudError::Api {
                what: what.to_string(),
                status: Some(status.as_u16()),
                message: format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    crate::secrets::redact(&error_message(&bytes))
                ),
            });
        }
        Ok(bytes)
    }

    /// Like `send`, but a 404 is `Ok(None)` (deletes of things already gone).
    pub async fn send_opt<T: serde::de::DeserializeOwned>(
        self,
        what: &str,
    ) -> Result<Option<T>, CloudError> {
        match self.send(what).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_of_any_yaml_type_is_registered_before_parsing() {
        let entry: Value =
            serde_saphyr::from_str("auth:\n  username: u\n  password: 98765432123\n").unwrap();
        register_secrets(&entry);
        let err = serde_json::from_value::<osauth::CloudConfig>(entry)
            .unwrap_err()
            .to_string();
        assert!(
            !crate::secrets::redact(&err).contains("98765432123"),
            "{err}"
        );
    }

    #[test]
    fn the_project_comes_from_the_token() {
        // recorded from the lab's Keystone 22 (GET /v3/auth/tokens), trimmed
        let body = serde_json::json!({"token": {"methods": ["password"],
            "user": {"domain": {"id": "default", "name": "Default"}, "id": "5f0c", "name": "admin"},
            "project": {"domain": {"id": "default", "name": "Default"}, "id": "8d1e9a0c6b", "name": "admin"},
            "expires_at": "2026-12-04T20:00:00.000000Z"}});
        assert_eq!(project_of_token(&body).unwrap(), "8d1e9a0c6b");
        let unscoped =
            serde_json::json!({"token": {"methods": ["password"], "user": {"id": "5f0c"}}});
        assert!(
            project_of_token(&unscoped)
                .unwrap_err()
                .contains("not scoped to a project")
        );
    }

    #[test]
    fn the_cacert_is_kept_with_the_credentials() {
        let c = credentials_of(
            &serde_json::json!({"auth_url": "https://k", "password": "p"}),
            None,
            Some(PathBuf::from("/etc/ca.pem")),
        );
        assert_eq!(c.cacert(), Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(credentials_of(&Value::Null, None, None).cacert(), None);
    }
}
