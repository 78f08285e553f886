//! mirror-images (image mode `mirror`): before any host changes, kubeforge copies the release's
//! images the site's registry lacks into it, under their upstream repository paths
//! (`registry.k8s.io/coredns/coredns` -> `<site>/coredns/coredns`), every blob verified on the
//! way through the operator's cache; every node's containerd then pulls every registry's images
//! from the site registry (`_default` in certs.d, see `desired`). What the registry holds is
//! observed before planning (a HEAD of each pinned manifest), so a filled registry gets no
//! action.

use crate::engine::{Action, Ctx, PlanCx, PlanError, Run, RunFuture, Schedule, Step, StepError};
use crate::images::{ImageError, ImageStore, RegistryOptions};
use crate::model::{Cluster, ImageMode, Role, SiteRegistry};
use crate::release::{Image, ReleaseManifest};
use std::collections::BTreeSet;

pub struct MirrorImages;

impl Step for MirrorImages {
    fn name(&self) -> &'static str {
        "mirror-images"
    }
    fn timing(&self) -> &'static str {
        "fill the site registry"
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        Schedule::OneAtATime
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        let c = cx.input.cluster;
        let Some(site) = c.artifacts.site_registry.as_ref() else {
            return Ok(Vec::new());
        };
        if c.artifacts.images != ImageMode::Mirror {
            return Ok(Vec::new());
        }
        let held = cx.input.mirrored.clone().unwrap_or_default();
        let missing: Vec<Image> = wanted(c, cx.input.manifest, cx.input.cloud_provider.is_some())?
            .into_iter()
            .filter(|i| !held.contains(&i.reference()))
            .collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = missing
            .iter()
            .map(|i| {
                let name = i.repo.rsplit('/').next().unwrap_or(&i.repo);
                format!("{name}:{}", i.tag)
            })
            .collect();
        Ok(vec![Action::cluster(
            self,
            format!(
                "copy {} image{} into the site registry {} ({})",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                site.host(),
                names.join(", ")
            ),
            Copy(missing),
        )])
    }
}

/// Every image any node runs (a control plane's set is the largest), each pinned.
pub fn wanted(c: &Cluster, m: &ReleaseManifest, cloud: bool) -> Result<Vec<Image>, PlanError> {
    super::images::wanted(c, m, Role::ControlPlane, cloud)
}

/// How kubeforge reaches the site registry: its CA, its credentials, plain http when the
/// inventory allowed it.
pub fn site_options(r: &SiteRegistry) -> RegistryOptions {
    let mut o = RegistryOptions {
        ca_file: r.ca_file.clone(),
        ..RegistryOptions::default()
    };
    if let (Some(u), Some(p)) = (&r.username, &r.password) {
        o.credentials.insert(
            r.host().to_string(),
            crate::images::Credentials {
                username: u.clone(),
                password: p.clone(),
            },
        );
    }
    if r.url.starts_with("http://") {
        o.plain_http.insert(r.host().to_string());
    }
    o
}

/// The images of `wanted` the site registry holds (`repo:tag@digest`).
pub async fn observe(
    c: &Cluster,
    r: &SiteRegistry,
    wanted: &[Image],
) -> Result<BTreeSet<String>, ImageError> {
    let store = ImageStore::new(&c.artifacts.cache_dir, site_options(r))?;
    let mut held = BTreeSet::new();
    for i in wanted {
        if store.holds(i, r.host()).await? {
            held.insert(i.reference());
        }
    }
    Ok(held)
}

/// Copies these images into the site registry.
#[derive(Debug, Clone)]
pub struct Copy(pub Vec<Image>);

impl Run for Copy {
    fn run<'a>(&'a self, ctx: &'a Ctx, _host: &'a str) -> RunFuture<'a> {
        Box::pin(copy(ctx, &self.0))
    }
}

async fn copy(ctx: &Ctx, images: &[Image]) -> Result<(), StepError> {
    let c = &ctx.cluster;
    let site = c
        .artifacts
        .site_registry
        .as_ref()
        .ok_or_else(|| StepError::failed("site registry", "not configured"))?;
    let failed =
        |e: ImageError| StepError::failed(&format!("site registry {}", site.host()), e.to_string());
    // pulled through the inventory's registryMirrors, pushed with the site's credentials
    let upstream: Vec<crate::engine::PlatformImage> = images
        .iter()
        .map(|i| crate::engine::PlatformImage {
            image: i.clone(),
            arch: String::new(),
        })
        .collect();
    let mut options = crate::workflow::apply::registry_options(c, &upstream);
    let site_opts = site_options(site);
    options.credentials.extend(site_opts.credentials);
    options.plain_http.extend(site_opts.plain_http);
    options.ca_file = site_opts.ca_file.or(options.ca_file);
    let store = ImageStore::new(&c.artifacts.cache_dir, options).map_err(failed)?;
    for i in images {
        tracing::info!("copy {i} into {}", site.host());
        // the distribution registry refuses an index whose manifests it lacks: every platform
        let fetched = store.fetch_all_platforms(i).await.map_err(failed)?;
        let report = store.push(&fetched, site.host()).await.map_err(failed)?;
        if Some(&report.digest) != i.digest.as_ref() {
            return Err(StepError::failed(
                &format!("site registry {}", site.host()),
                format!(
                    "{} holds {} after the copy, the release manifest pins {}",
                    report.target,
                    report.digest,
                    i.digest.as_deref().unwrap_or("(no digest)")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_registrys_credentials_and_scheme_reach_the_client() {
        let r = SiteRegistry {
            url: "http://10.0.0.9:5000".into(),
            username: Some("ci".into()),
            password: Some("s3cret".into()),
            ca_file: None,
            ca_pem: None,
        };
        let o = site_options(&r);
        assert_eq!(r.host(), "10.0.0.9:5000");
        assert!(o.plain_http.contains("10.0.0.9:5000"));
        assert_eq!(o.credentials["10.0.0.9:5000"].username, "ci");
    }
}
