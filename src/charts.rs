//! Helm charts of the inventory (`spec.addons.charts`): what each needs before planning (its
//! archive as a pinned artifact, its values read and digested, the archive's URL from a
//! repository's `index.yaml`), and the releases the cluster holds (helm's release Secrets,
//! labelled by kubeforge with the digests of the chart archive and the values it installed).

use crate::model::{Chart, ChartSource};
use crate::release::Artifact;
use crate::ssh::Session;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The label of a release Secret that holds the first 40 hex digits of the chart archive's
/// sha256 (a label value is at most 63 characters).
pub const CHART_LABEL: &str = "kubeforge.io/chart-sha256";
/// The label that holds the first 40 hex digits of the values digest.
pub const VALUES_LABEL: &str = "kubeforge.io/values-sha256";

/// A repository index (`index.yaml`) larger than this is refused.
pub const INDEX_LIMIT: u64 = 32 << 20;
const INDEX_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("chart {chart}: {message}")]
    Chart { chart: String, message: String },
}

fn err(c: &Chart, message: impl Into<String>) -> ChartError {
    ChartError::Chart {
        chart: c.name.clone(),
        message: message.into(),
    }
}

/// One chart, ready to plan: its archive (a pinned artifact fetched into the cache like the
/// binaries) and its values documents (the values files, then the inline values as JSON).
#[derive(Clone)]
pub struct ChartInput {
    pub chart: Chart,
    pub archive: Artifact,
    /// (what it is, for messages; the bytes). May hold secrets: never printed.
    pub values: Vec<(String, Vec<u8>)>,
    /// sha256 over every values document, length-prefixed, in order.
    pub values_sha256: String,
}

impl std::fmt::Debug for ChartInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChartInput({} {} in {}, {} values documents <redacted>)",
            self.chart.name,
            self.chart.version,
            self.chart.namespace,
            self.values.len()
        )
    }
}

/// The digest of values documents: sha256 over each one's length and bytes, in order.
pub fn values_digest(docs: &[(String, Vec<u8>)]) -> String {
    let mut all = Vec::new();
    for (_, d) in docs {
        all.extend_from_slice(format!("{}\n", d.len()).as_bytes());
        all.extend_from_slice(d);
    }
    crate::artifacts::sha256_hex(&all)
}

/// The first 40 hex digits of a digest: what a label holds.
pub fn label_value(sha256: &str) -> &str {
    sha256.get(..40).unwrap_or(sha256)
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    entries: BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(Debug, Deserialize)]
struct IndexEntry {
    version: String,
    #[serde(default)]
    urls: Vec<String>,
}

/// The archive URL of `chart` at `version` in a repository index, resolved against the
/// repository's URL (index.yaml may give relative URLs).
pub fn archive_url(index: &str, repo: &str, chart: &str, version: &str) -> Result<String, String> {
    let ix: Index = serde_saphyr::from_str(index)
        .map_err(|e| format!("the repository's index.yaml cannot be read: {e}"))?;
    let entries = ix.entries.get(chart).ok_or_else(|| {
        format!(
            "the repository has no chart `{chart}` (it lists {})",
            if ix.entries.is_empty() {
                "none".to_string()
            } else {
                ix.entries.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        )
    })?;
    let e = entries
        .iter()
        .find(|e| e.version.trim_start_matches('v') == version)
        .ok_or_else(|| {
            format!(
                "the repository has no version {version} of `{chart}` (it has {})",
                entries
                    .iter()
                    .map(|e| e.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let first = e
        .urls
        .first()
        .ok_or_else(|| format!("index.yaml gives no URL for `{chart}` {version}"))?;
    let base = reqwest::Url::parse(&format!("{}/", repo.trim_end_matches('/')))
        .map_err(|e| format!("{repo}: {e}"))?;
    let url = base
        .join(first)
        .map_err(|e| format!("index.yaml URL {first:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("index.yaml URL {url} is not http(s)"));
    }
    Ok(url.to_string())
}

/// Reads every chart's values and resolves every archive's source (a repository's index.yaml
/// is fetched); downloads no archive (apply does, verified, before any host changes).
pub async fn prepare(charts: &[Chart]) -> Result<Vec<ChartInput>, ChartError> {
    let mut out = Vec::new();
    for c in charts {
        let url = match &c.source {
            ChartSource::Local(p) => {
                let m = std::fs::metadata(p)
                    .map_err(|e| err(c, format!("cannot read {}: {e}", p.display())))?;
                if !m.is_file() {
                    return Err(err(c, format!("{} is not a file", p.display())));
                }
                let abs =
                    std::path::absolute(p).map_err(|e| err(c, format!("{}: {e}", p.display())))?;
                abs.display().to_string()
            }
            ChartSource::Repo { url, chart } => {
                let index_url = format!("{}/index.yaml", url.trim_end_matches('/'));
                let bytes = crate::artifacts::fetch_bounded(&index_url, INDEX_LIMIT, INDEX_TIMEOUT)
                    .await
                    .map_err(|e| err(c, e.to_string()))?;
                archive_url(&String::from_utf8_lossy(&bytes), url, chart, &c.version)
                    .map_err(|m| err(c, format!("{index_url}: {m}")))?
            }
        };
        let mut values = Vec::new();
        for f in &c.values_files {
            let text = crate::inventory::read_text_file(f, 4 << 20, "a values file")
                .map_err(|e| err(c, format!("values file {}: {e}", f.display())))?;
            values.push((format!("values file {}", f.display()), text.into_bytes()));
        }
        if let Some(v) = &c.values {
            // JSON is YAML: helm reads it as a values file
            let json = serde_json::to_vec(v).map_err(|e| err(c, e.to_string()))?;
            values.push(("inline values".to_string(), json));
        }
        let values_sha256 = values_digest(&values);
        out.push(ChartInput {
            archive: Artifact {
                component: format!("chart {}", c.name),
                version: c.version.clone(),
                arch: "tgz".into(),
                url,
                path: String::new(),
                sha256: c.sha256.clone(),
                source: None,
                size: None,
            },
            chart: c.clone(),
            values,
            values_sha256,
        });
    }
    Ok(out)
}

/// A Helm release as its storage Secret shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub revision: u64,
    pub status: String,
    /// kubeforge's labels (None when another tool installed it).
    pub chart_sha: Option<String>,
    pub values_sha: Option<String>,
}

/// The newest revision of every release, by (namespace, name), from
/// `kubectl get secrets -A -l owner=helm -o json`.
pub fn parse_releases(json: &str) -> Result<BTreeMap<(String, String), Release>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = v
        .get("items")
        .and_then(|i| i.as_array())
        .ok_or("no items")?;
    let mut out: BTreeMap<(String, String), Release> = BTreeMap::new();
    for it in items {
        let md = &it["metadata"];
        let labels = &md["labels"];
        let l = |k: &str| labels.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let (Some(name), Some(status), Some(rev)) = (l("name"), l("status"), l("version")) else {
            continue;
        };
        let Ok(revision) = rev.parse::<u64>() else {
            continue;
        };
        let namespace = md["namespace"].as_str().unwrap_or("default").to_string();
        let r = Release {
            name: name.clone(),
            namespace: namespace.clone(),
            revision,
            status,
            chart_sha: l(CHART_LABEL),
            values_sha: l(VALUES_LABEL),
        };
        let key = (namespace, name);
        if out.get(&key).is_none_or(|o| o.revision < r.revision) {
            out.insert(key, r);
        }
    }
    Ok(out)
}

/// The releases of the cluster, through kubectl on the API host.
pub async fn observe(api: &Session) -> Result<BTreeMap<(String, String), Release>, String> {
    let out = api
        .run(&crate::cluster_state::kubectl(
            "get secrets -A -l owner=helm -o json --request-timeout=20s",
        ))
        .await
        .map_err(|e| e.to_string())?;
    parse_releases(&out)
}

/// What the charts of the inventory and the releases of the cluster give the planner.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub charts: Vec<ChartInput>,
    /// None when the releases could not be read (no cluster yet): every chart is installed.
    pub releases: Option<BTreeMap<(String, String), Release>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_url_from_an_index() {
        let index = "apiVersion: v1\nentries:\n  web:\n    - version: 0.2.0\n      urls: [https://cdn.example/web-0.2.0.tgz]\n      digest: abc\n    - version: 0.1.0\n      urls: [charts/web-0.1.0.tgz]\ngenerated: \"2026-01-01T00:00:00Z\"\n";
        assert_eq!(
            archive_url(index, "http://127.0.0.1:1/repo", "web", "0.1.0").unwrap(),
            "http://127.0.0.1:1/repo/charts/web-0.1.0.tgz"
        );
        assert_eq!(
            archive_url(index, "http://127.0.0.1:1/repo/", "web", "0.2.0").unwrap(),
            "https://cdn.example/web-0.2.0.tgz"
        );
        let e = archive_url(index, "http://x/", "web", "9.9.9").unwrap_err();
        assert!(
            e.contains("no version 9.9.9") && e.contains("0.2.0, 0.1.0"),
            "{e}"
        );
        let e = archive_url(index, "http://x/", "db", "1.0.0").unwrap_err();
        assert!(e.contains("no chart `db`") && e.contains("web"), "{e}");
        let bad = "entries:\n  web:\n    - version: 1.0.0\n      urls: ['file:///etc/passwd']\n";
        assert!(archive_url(bad, "http://x/", "web", "1.0.0").is_err());
    }

    #[test]
    fn releases_newest_revision_with_kubeforge_labels() {
        let json = r#"{"items":[
          {"metadata":{"name":"sh.helm.release.v1.web.v1","namespace":"apps","labels":{"name":"web","owner":"helm","status":"superseded","version":"1","kubeforge.io/chart-sha256":"aaa"}}},
          {"metadata":{"name":"sh.helm.release.v1.web.v2","namespace":"apps","labels":{"name":"web","owner":"helm","status":"deployed","version":"2","kubeforge.io/chart-sha256":"bbb","kubeforge.io/values-sha256":"ccc"}}},
          {"metadata":{"name":"sh.helm.release.v1.other.v1","namespace":"default","labels":{"name":"other","owner":"helm","status":"failed","version":"1"}}}
        ]}"#;
        let r = parse_releases(json).unwrap();
        let web = &r[&("apps".to_string(), "web".to_string())];
        assert_eq!(web.revision, 2);
        assert_eq!(web.status, "deployed");
        assert_eq!(web.chart_sha.as_deref(), Some("bbb"));
        assert_eq!(web.values_sha.as_deref(), Some("ccc"));
        let other = &r[&("default".to_string(), "other".to_string())];
        assert_eq!(
            (other.status.as_str(), other.chart_sha.clone()),
            ("failed", None)
        );
        assert!(parse_releases("{}").is_err());
    }

    #[test]
    fn chart_values_from_the_environment_are_redacted_and_parsed_into_the_model() {
        let text = "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec:\n  kubernetes: {version: 1.33.5}\n  hosts:\n    - {name: cp1, address: 10.0.0.11, role: control-plane}\n  addons:\n    charts:\n      - {name: web, namespace: apps, chart: ./web-0.1.0.tgz, version: 0.1.0, sha256: 480e1d84dd628be59c5a8160e0082f3594113dec60e42a45a38b17624ded8a05, valuesFiles: [v.yaml], values: {db: {password: \"${KF_T_PW}\"}, plain: x}}\n      - {name: site, repo: \"https://charts.example/\", chart: web, version: 0.2.0, sha256: fb43e57805a1a65fd36f10e59928bf483963e8c87194da03c29e244ce6be86e0}\n";
        let env = |n: &str| (n == "KF_T_PW").then(|| "Kq9-secret-from-env".to_string());
        let base = std::path::Path::new("/inv");
        let l = crate::inventory::load_str(&base.join("c.yaml"), text, base, &env).unwrap();
        let c = &l.cluster.charts;
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].source, ChartSource::Local("/inv/web-0.1.0.tgz".into()));
        assert_eq!(
            c[0].values_files,
            vec![std::path::PathBuf::from("/inv/v.yaml")]
        );
        assert_eq!(
            c[0].values.as_ref().unwrap()["db"]["password"],
            "Kq9-secret-from-env"
        );
        assert_eq!(
            c[1].source,
            ChartSource::Repo {
                url: "https://charts.example/".into(),
                chart: "web".into()
            }
        );
        assert_eq!(c[1].namespace, "default");
        assert!(!crate::secrets::redact("x Kq9-secret-from-env y").contains("Kq9"));
        // the model serializes without values
        assert!(!serde_json::to_string(&l.cluster).unwrap().contains("Kq9"));
    }

    #[test]
    fn values_digest_depends_on_every_document_and_its_bounds() {
        let d = |docs: &[&str]| {
            values_digest(
                &docs
                    .iter()
                    .map(|s| (String::new(), s.as_bytes().to_vec()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(d(&["a: 1"]), d(&["a: 1"]));
        assert_ne!(d(&["a: 1"]), d(&["a: 2"]));
        assert_ne!(d(&["ab", "c"]), d(&["a", "bc"]));
        assert_eq!(label_value(&d(&["x"])).len(), 40);
    }
}
