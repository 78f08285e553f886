//! push-images (image mode `push`, the default): every node gets the release's container images
//! it lacks, from the operator's verified copies, so no node needs a registry. Each image was
//! fetched once on the operator's machine (every blob checked against its digest) before any
//! host changed; a node is sent one OCI archive of just the images its facts say it lacks,
//! imports it into containerd's `k8s.io` namespace with containerd's own `ctr`, and the digest
//! containerd then holds for each image is checked against the release manifest. It runs with
//! the hosts' preparation, after containerd started, so the images are there before kubeadm
//! (init, join or upgrade) and the kubelet need them.

use crate::engine::{
    Action, Ctx, PlanCx, PlanError, PlatformImage, Run, RunFuture, Schedule, Step, StepError,
};
use crate::model::{Cluster, Cni, ImageMode, Role};
use crate::paths;
use crate::release::{Image, ReleaseManifest};
use crate::ssh::session::{Exec, Upload};
use crate::util::shell_quote;

pub struct PushImages;

impl Step for PushImages {
    fn name(&self) -> &'static str {
        "push-images"
    }
    fn timing(&self) -> &'static str {
        super::PREPARE_TIMING
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        super::PREPARE
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        let c = cx.input.cluster;
        if c.artifacts.images != ImageMode::Push {
            return Ok(Vec::new());
        }
        let cloud = cx.input.cloud_provider.is_some();
        let mut out = Vec::new();
        for h in &c.hosts {
            let f = cx.facts_of(h);
            let wanted = wanted(c, cx.input.manifest, h.role, cloud)?;
            let missing: Vec<PlatformImage> = wanted
                .into_iter()
                .filter(|i| !f.has_image(i))
                .map(|image| PlatformImage {
                    image,
                    arch: f.arch.clone(),
                })
                .collect();
            if missing.is_empty() {
                continue;
            }
            out.push(Action::on(h, self, summary(&missing), Push(missing)));
        }
        Ok(out)
    }
}

/// "import 7 images into containerd (pause:3.10, etcd:3.5.21-0, …)".
fn summary(images: &[PlatformImage]) -> String {
    let names: Vec<String> = images
        .iter()
        .map(|i| {
            let name = i.image.repo.rsplit('/').next().unwrap_or(&i.image.repo);
            format!("{name}:{}", i.image.tag)
        })
        .collect();
    format!(
        "push {} image{} ({}) and import into containerd",
        images.len(),
        if images.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

/// The static pods of a control plane, which no worker runs.
const CONTROL_PLANE_ONLY: &[&str] = &[
    "images.kube-apiserver",
    "images.kube-controller-manager",
    "images.kube-scheduler",
    "images.etcd",
];

/// The images a node of `role` runs: the release's core images (a worker skips the control
/// plane's), the built-in CNI's, and the OpenStack add-on's when the cloud provider is
/// installed. Every one must be pinned by digest: only a digest proves what was imported.
pub fn wanted(
    c: &Cluster,
    m: &ReleaseManifest,
    role: Role,
    cloud_provider: bool,
) -> Result<Vec<Image>, PlanError> {
    let mut out = Vec::new();
    for (key, image) in selection(c, m, role, cloud_provider) {
        if image.digest.is_none() {
            return Err(PlanError::Refused(format!(
                "image {} ({key} of the release manifest of Kubernetes {}) is not pinned by digest: \
                 image mode `push` imports only what a digest proves; pin it as repo:tag@sha256:<digest>, \
                 or set spec.artifacts.images.mode: pull",
                image.tag_ref(),
                m.kubernetes
            )));
        }
        out.push(image);
    }
    Ok(out)
}

/// The images of the release a node of `role` runs, with their keys in the manifest (a control
/// plane's are every role's), pinned or not.
pub fn selection(
    c: &Cluster,
    m: &ReleaseManifest,
    role: Role,
    cloud_provider: bool,
) -> Vec<(String, Image)> {
    m.all_images()
        .into_iter()
        .filter(|(key, _)| {
            if key.starts_with("images.") {
                role == Role::ControlPlane || !CONTROL_PLANE_ONLY.contains(&key.as_str())
            } else if key.starts_with("cni.flannel.") {
                c.cni == Cni::Flannel
            } else if key.starts_with("addons.openstack.") {
                cloud_provider
            } else {
                false
            }
        })
        .collect()
}

/// Pushes an archive of these images to the host and imports it.
#[derive(Debug, Clone)]
pub struct Push(pub Vec<PlatformImage>);

impl Run for Push {
    fn run<'a>(&'a self, ctx: &'a Ctx, host: &'a str) -> RunFuture<'a> {
        Box::pin(push(ctx, host, &self.0))
    }
    fn images(&self) -> &[PlatformImage] {
        &self.0
    }
}

fn ctr() -> String {
    format!(
        "{} --address {} -n k8s.io",
        shell_quote(&format!("{}/ctr", paths::BIN_DIR)),
        paths::CONTAINERD_SOCKET
    )
}

/// The labels every pushed image gets: pinned, so the kubelet's image garbage collection never
/// removes what this node cannot pull again, and managed by the CRI.
const LABELS: &str = "io.cri-containerd.pinned=pinned io.cri-containerd.image=managed";

/// The `ctr images import` of an archive (the platform's content only), then each image also
/// under its digest reference (`repo@sha256:…`: what the CRI resolves a `repo:tag@sha256:…`
/// reference to; `--digests` makes none through containerd 2's transfer service), labelled.
pub fn import_command(archive: &str, arch: &str, images: &[PlatformImage]) -> String {
    let mut s = format!(
        "{ctr} images import --platform linux/{arch} --label io.cri-containerd.pinned=pinned \
         --label io.cri-containerd.image=managed {archive} >/dev/null",
        ctr = ctr(),
        arch = shell_quote(arch),
        archive = shell_quote(archive),
    );
    for i in images {
        let (tag, digest) = (
            shell_quote(&i.image.tag_ref()),
            shell_quote(&i.image.digest_ref()),
        );
        s.push_str(&format!(
            " && {ctr} images tag --force {tag} {digest} >/dev/null && {ctr} images label {digest} {LABELS} >/dev/null",
            ctr = ctr()
        ));
    }
    s
}

/// What is wrong with the images containerd holds after an import: each image whose reference
/// is missing or points at another digest than the pinned one.
pub fn check_imported(images: &[PlatformImage], listed: &str) -> Vec<String> {
    let lines: Vec<&str> = listed.lines().collect();
    let held = crate::facts::parse_images(&lines);
    images
        .iter()
        .filter(|i| !crate::facts::holds_image(&held, &i.image))
        .map(|i| {
            let want = i.image.digest.as_deref().unwrap_or("(no digest)");
            match held.get(&i.image.tag_ref()) {
                Some(got) => format!(
                    "{} is {got} in containerd, the release manifest pins {want}",
                    i.image.tag_ref()
                ),
                None => format!(
                    "{} ({want}) is not in containerd after the import",
                    i.image.tag_ref()
                ),
            }
        })
        .collect()
}

/// A local file removed when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn push(ctx: &Ctx, host: &str, images: &[PlatformImage]) -> Result<(), StepError> {
    let s = ctx.session(host)?;
    let source = ctx
        .images
        .as_ref()
        .ok_or_else(|| StepError::failed(host, "the images were not fetched before the run"))?;
    // in the private cache directory, removed when done
    let local = Scratch(
        ctx.cluster
            .artifacts
            .cache_dir
            .join(format!("images-{host}-{}.tar", std::process::id())),
    );
    let size = source
        .write_archive(images, &local.0)
        .await
        .map_err(|e| StepError::failed(host, format!("the image archive: {e}")))?;
    let remote = format!(
        "{}/import-{}.tar",
        paths::IMAGE_IMPORT_DIR,
        std::process::id()
    );
    s.run(&format!("mkdir -p -m 0700 {}", paths::IMAGE_IMPORT_DIR))
        .await?;
    s.upload(Upload::File(&local.0), &remote, 0o600, "root:root")
        .await?;
    ctx.stats.add_upload(host, size);
    let arch = &images[0].arch;
    let out = s
        .exec_with(
            &format!(
                "{import}; rc=$?; rm -f {r}; exit $rc",
                import = import_command(&remote, arch, images),
                r = shell_quote(&remote)
            ),
            Exec {
                display: Some(&format!("import {} images into containerd", images.len())),
                ..Exec::default()
            },
        )
        .await?;
    if !out.success() {
        return Err(StepError::failed(
            host,
            format!(
                "ctr images import failed: {}",
                out.stderr().trim().lines().last().unwrap_or_default()
            ),
        ));
    }
    let listed = s.run(&format!("{} images ls", ctr())).await?;
    let wrong = check_imported(images, &listed);
    if !wrong.is_empty() {
        return Err(StepError::failed(host, wrong.join("; ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(text: &str) -> PlatformImage {
        PlatformImage {
            image: Image::parse(text).unwrap(),
            arch: "amd64".into(),
        }
    }

    const PAUSE: &str = "registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a";

    #[test]
    fn an_import_is_checked_against_the_pinned_digest() {
        let pause = img(PAUSE);
        let ok = "REF TYPE DIGEST SIZE PLATFORMS LABELS\nregistry.k8s.io/pause:3.10 application/vnd.oci.image.index.v1+json sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a 311.6 KiB linux/amd64,linux/arm64 io.cri-containerd.pinned=pinned\n";
        assert!(check_imported(std::slice::from_ref(&pause), ok).is_empty());
        let other = ok.replace("ee6521f2", "00000000");
        assert_eq!(
            check_imported(std::slice::from_ref(&pause), &other),
            vec![
                "registry.k8s.io/pause:3.10 is sha256:0000000090b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a in containerd, the release manifest pins sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
            ]
        );
        assert_eq!(
            check_imported(&[pause], "REF TYPE DIGEST SIZE PLATFORMS LABELS\n"),
            vec![
                "registry.k8s.io/pause:3.10 (sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a) is not in containerd after the import"
            ]
        );
    }

    #[test]
    fn the_import_command_names_each_image_by_its_digest_and_pins_it() {
        let ctr = "/usr/local/bin/ctr --address /run/containerd/containerd.sock -n k8s.io";
        assert_eq!(
            import_command(
                "/var/lib/kubeforge/images/import-7.tar",
                "arm64",
                &[img(PAUSE)]
            ),
            format!(
                "{ctr} images import --platform linux/arm64 --label io.cri-containerd.pinned=pinned --label io.cri-containerd.image=managed /var/lib/kubeforge/images/import-7.tar >/dev/null \
                 && {ctr} images tag --force registry.k8s.io/pause:3.10 registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a >/dev/null \
                 && {ctr} images label registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a io.cri-containerd.pinned=pinned io.cri-containerd.image=managed >/dev/null"
            )
        );
    }

    #[test]
    fn summaries_name_each_image() {
        assert_eq!(
            summary(&[img(PAUSE)]),
            "push 1 image (pause:3.10) and import into containerd"
        );
    }
}
