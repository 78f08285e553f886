//! The engine's planning, as pure functions of the desired state and given observations: a
//! converged cluster plans nothing; one change plans exactly what it needs; an upgrade defers
//! the runtime's restart to the node's own drain; workers upgrade in batches of the disruption
//! budget; verification names the kube-system pods that are missing.

use kubeforge::cluster_state::{ClusterState, NodeState};
use kubeforge::desired;
use kubeforge::engine::plan::compute;
use kubeforge::engine::{Input, Schedule, Step};
use kubeforge::facts::Facts;
use kubeforge::inventory::load_str;
use kubeforge::model::{Cluster, Role};
use kubeforge::release::ReleaseManifest;
use kubeforge::steps::upgrade::UpgradeNode;
use kubeforge::workflow::APPLY;
use std::collections::BTreeMap;
use std::path::Path;

fn cluster(workers: usize, version: &str, percent: u32) -> (Cluster, ReleaseManifest) {
    let mut text = format!(
        "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: prod}}\nspec:\n  kubernetes: {{version: {version}}}\n  options: {{workerDisruptionPercent: {percent}}}\n  hosts:\n    - {{name: cp1, address: 10.0.0.11, role: control-plane}}\n    - {{name: cp2, address: 10.0.0.12, role: control-plane}}\n"
    );
    for i in 1..=workers {
        text.push_str(&format!(
            "    - {{name: w{i}, address: 10.0.1.{i}, role: worker}}\n"
        ));
    }
    let l = load_str(Path::new("t.yaml"), &text, Path::new("/"), &|_| None)
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let m = l.catalog.get(&l.cluster.version).unwrap().clone();
    (l.cluster, m)
}

/// Facts of hosts that are exactly what `c` and `m` want: members of the cluster, every file
/// and binary in place, services running, the CNI applied.
fn converged(c: &Cluster, m: &ReleaseManifest, cni: &str) -> BTreeMap<String, Facts> {
    let bare = include_str!("fixtures/facts/harness-bare.txt");
    let t: f64 = bare.lines().nth(2).unwrap().parse().unwrap();
    let ips = desired::NodeIps::from_inventory(c);
    let mut out = BTreeMap::new();
    for h in &c.hosts {
        let mut f = kubeforge::facts::parse(bare, t, t).unwrap();
        f.hostname = h.name.clone();
        let endpoint_ip = match h.role {
            Role::Worker => "127.0.0.1".to_string(),
            Role::ControlPlane => h.internal_address().to_string(),
        };
        let want = desired::for_host(c, m, h, &f.arch, &endpoint_ip, &ips).unwrap();
        for file in &want.files {
            f.files.insert(file.path.clone(), file.sha256());
        }
        for a in &want.installs {
            f.markers
                .insert(a.component.clone(), format!("{} {}", a.sha256, a.version));
            if a.component != "cni-plugins" {
                f.installed.insert(
                    a.component.clone(),
                    kubeforge::facts::Installed {
                        path: format!("/usr/local/bin/{}", a.component),
                        version: Some(a.version.clone()),
                    },
                );
            }
        }
        for p in &want.packages {
            f.tools.insert(p.to_string());
        }
        // containerd holds every image the host runs (image mode push, the default)
        for image in kubeforge::steps::images::wanted(c, m, h.role, false).unwrap() {
            f.images
                .insert(image.tag_ref(), image.digest.clone().unwrap());
        }
        f.hosts_block = want
            .hosts_block
            .iter()
            .flat_map(|b| b.lines().map(String::from))
            .collect();
        f.kubelet_enabled = true;
        f.haproxy_active = h.role == Role::Worker;
        f.swap_mib = 0;
        f.fstab_swap.clear();
        f.kernel_features.ip_forward = true;
        f.kernel_features.bridge_nf_call_iptables = Some(true);
        let mb = &mut f.membership;
        mb.marker.insert("cluster".into(), c.name.clone());
        mb.kubelet_active = true;
        mb.containerd_active = true;
        mb.initialized = h.role == Role::ControlPlane;
        mb.kubeconfigs = vec!["kubelet.conf".into()];
        if h.role == Role::ControlPlane {
            mb.static_pods = vec!["kube-apiserver".into(), "etcd".into()];
            f.files.insert(
                kubeforge::paths::CNI_MANIFEST.into(),
                kubeforge::artifacts::sha256_hex(cni.as_bytes()),
            );
        }
        out.insert(h.name.clone(), f);
    }
    out
}

fn state(c: &Cluster, version: &str) -> ClusterState {
    ClusterState {
        api_host: "cp1".into(),
        nodes: c
            .hosts
            .iter()
            .map(|h| NodeState {
                name: h.name.clone(),
                kubelet_version: format!("v{version}"),
                ready: true,
                not_ready_reason: None,
                unschedulable: false,
                control_plane: h.role == Role::ControlPlane,
                internal_ip: Some(h.internal_address().to_string()),
                labels: BTreeMap::new(),
                cordoned_by_kubeforge: false,
            })
            .collect(),
        server_version: Some(format!("v{version}")),
    }
}

fn summaries(p: &kubeforge::engine::Plan) -> Vec<String> {
    p.actions
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a.host.as_deref().unwrap_or("-"),
                a.step,
                a.summary
            )
        })
        .collect()
}

#[test]
fn a_converged_cluster_plans_nothing_and_one_change_plans_only_it() {
    let (c, m) = cluster(2, "1.33.5", 10);
    let cni = desired::flannel_manifest(&c, &m).unwrap();
    let facts = converged(&c, &m, &cni);
    let st = state(&c, "1.33.5");
    let input = Input {
        cluster: &c,
        manifest: &m,
        facts: &facts,
        state: Some(&st),
        cni_manifest: Some(cni.clone()),
        cloud_provider: None,
        mirrored: None,
        charts: None,
    };
    let plan = compute(APPLY, &input).unwrap();
    assert!(plan.is_empty(), "{:#?}", summaries(&plan));
    assert!(!plan.is_destructive());
    assert!(
        kubeforge::output::plan(&plan, &c).contains("no changes"),
        "{}",
        kubeforge::output::plan(&plan, &c)
    );

    // one changed file on one host: its write and its follow-up, nothing else
    let mut changed = facts.clone();
    changed
        .get_mut("w2")
        .unwrap()
        .files
        .insert("/etc/sysctl.d/99-kubernetes.conf".into(), "0".repeat(64));
    let input = Input {
        facts: &changed,
        ..input
    };
    let plan = compute(APPLY, &input).unwrap();
    assert_eq!(
        summaries(&plan),
        [
            "w2 os-prep update /etc/sysctl.d/99-kubernetes.conf",
            "w2 os-prep apply sysctl settings (sysctl --system)"
        ]
    );
}

#[test]
fn an_upgrade_defers_the_runtime_to_each_nodes_drain_and_batches_workers_by_the_budget() {
    // the cluster runs 1.33.5; the inventory asks for the next patch release of the manifests
    let (old, m_old) = cluster(10, "1.33.5", 20);
    let cni = desired::flannel_manifest(&old, &m_old).unwrap();
    let facts = converged(&old, &m_old, &cni);
    let st = state(&old, "1.33.5");
    let catalog = kubeforge::release::Catalog::builtin().unwrap();
    let next = catalog
        .versions()
        .into_iter()
        .find(|v| v.major == 1 && v.minor == 34)
        .expect("a 1.34 release manifest");
    let (c, m) = cluster(10, &next.to_string(), 20);
    let cni = desired::flannel_manifest(&c, &m).unwrap();
    let input = Input {
        cluster: &c,
        manifest: &m,
        facts: &facts,
        state: Some(&st),
        cni_manifest: Some(cni),
        cloud_provider: None,
        mirrored: None,
        charts: None,
    };
    let plan = compute(APPLY, &input).unwrap();
    // no member gets new binaries or a containerd restart while it still serves
    for a in &plan.actions {
        assert!(
            !matches!(a.step, "runtime" | "kube-binaries") || !a.summary.starts_with("install"),
            "{} {}",
            a.step,
            a.summary
        );
        assert!(
            !(a.step == "runtime" && a.summary.contains("containerd")),
            "{}",
            a.summary
        );
    }
    let upgrades: Vec<(&str, &str)> = plan
        .actions
        .iter()
        .filter(|a| a.is::<UpgradeNode>())
        .map(|a| (a.step, a.host.as_deref().unwrap()))
        .collect();
    let mut want: Vec<(&str, &str)> = vec![
        ("upgrade-control-plane", "cp1"),
        ("upgrade-control-plane", "cp2"),
    ];
    let ws: Vec<String> = (1..=10).map(|i| format!("w{i}")).collect();
    want.extend(ws.iter().map(|w| ("upgrade-worker", w.as_str())));
    assert_eq!(upgrades, want);
    let first = plan.actions[plan
        .actions
        .iter()
        .position(|a| a.is::<UpgradeNode>())
        .unwrap()]
    .op::<UpgradeNode>()
    .unwrap();
    assert!(
        first.first,
        "the first control plane runs kubeadm upgrade apply"
    );
    assert_eq!(
        first.installs.first().map(|a| a.component.as_str()),
        Some("kubeadm")
    );
    // the new release's containerd config (its sandbox image) is written during the drain
    assert_ne!(
        m.image("pause").map(|i| i.digest_ref()),
        m_old.image("pause").map(|i| i.digest_ref()),
        "the two releases pin different sandbox images"
    );
    assert!(
        first
            .runtime_files
            .iter()
            .any(|f| f.path == "/etc/containerd/config.toml"),
        "{:?}",
        first.runtime_files
    );
    // the disruption budget: 20% of 10 workers
    assert_eq!(
        kubeforge::steps::upgrade_worker::UpgradeWorker.schedule(&c),
        Schedule::Batched(2)
    );
    assert_eq!(
        kubeforge::steps::upgrade_control_plane::UpgradeControlPlane.schedule(&c),
        Schedule::OneAtATime
    );

    // a skipped minor release is refused before anything changes
    let skip = catalog
        .versions()
        .into_iter()
        .find(|v| v.major == 1 && v.minor == 35);
    if let Some(skip) = skip {
        let (c, m) = cluster(10, &skip.to_string(), 20);
        let input = Input {
            cluster: &c,
            manifest: &m,
            ..input
        };
        let e = compute(APPLY, &input).unwrap_err().to_string();
        assert!(e.contains("skips a minor release"), "{e}");
    }
}

#[test]
fn the_worker_budget_is_a_percentage_of_the_workers_and_at_least_one() {
    use kubeforge::steps::upgrade_worker::worker_batch;
    assert_eq!(worker_batch(&cluster(10, "1.33.5", 10).0), 1);
    assert_eq!(worker_batch(&cluster(10, "1.33.5", 35).0), 3);
    assert_eq!(worker_batch(&cluster(3, "1.33.5", 10).0), 1);
    assert_eq!(worker_batch(&cluster(0, "1.33.5", 50).0), 1);
    assert_eq!(worker_batch(&cluster(20, "1.33.5", 100).0), 20);
}

#[test]
fn verification_names_the_missing_system_pods() {
    let (c, _) = cluster(1, "1.33.5", 10);
    let pods = |names: &[&str]| {
        serde_json::json!({"items": names.iter().map(|n| serde_json::json!({"metadata": {"name": n}})).collect::<Vec<_>>()}).to_string()
    };
    let all = [
        "kube-apiserver-cp1",
        "etcd-cp1",
        "kube-controller-manager-cp1",
        "kube-scheduler-cp1",
        "kube-apiserver-cp2",
        "etcd-cp2",
        "kube-controller-manager-cp2",
        "kube-scheduler-cp2",
        "kube-proxy-a",
        "kube-proxy-b",
        "kube-proxy-c",
        "coredns-1",
    ];
    assert!(kubeforge::workflow::apply::missing_system_pods(&c, &pods(&all)).is_empty());
    let missing = kubeforge::workflow::apply::missing_system_pods(
        &c,
        &pods(
            &all[..all.len() - 2]
                .iter()
                .copied()
                .filter(|n| *n != "etcd-cp2")
                .collect::<Vec<_>>(),
        ),
    );
    assert_eq!(
        missing,
        [
            "kube-system pod etcd-cp2 is missing",
            "2 kube-proxy pods for 3 nodes",
            "no CoreDNS pod in kube-system"
        ]
    );
    assert_eq!(
        kubeforge::workflow::apply::missing_system_pods(&c, "not json").len(),
        1
    );
}

#[test]
fn a_joining_control_plane_maps_the_endpoint_to_a_serving_one_before_its_join() {
    let text = "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {name: prod}\nspec:\n  kubernetes: {version: 1.34.1}\n  hosts:\n    - {name: cp1, address: 10.0.0.11, role: control-plane}\n    - {name: cp2, address: 10.0.0.12, role: control-plane}\n";
    let l = kubeforge::inventory::load_str(
        std::path::Path::new("t.yaml"),
        text,
        std::path::Path::new("/"),
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let c = l.cluster;
    let m = l.catalog.get(&c.version).unwrap().clone();
    let bare = include_str!("fixtures/facts/harness-bare.txt");
    let t: f64 = bare.lines().nth(2).unwrap().parse().unwrap();
    let mut facts = BTreeMap::new();
    for h in &c.hosts {
        let mut f = kubeforge::facts::parse(bare, t, t).unwrap();
        f.hostname = h.name.clone();
        facts.insert(h.name.clone(), f);
    }
    // cp1 serves the cluster; cp2 is new
    let cp1 = facts.get_mut("cp1").unwrap();
    cp1.membership.static_pods = vec!["kube-apiserver".into()];
    cp1.membership
        .marker
        .insert("cluster".into(), "prod".into());
    let state = ClusterState {
        api_host: "cp1".into(),
        nodes: vec![NodeState {
            name: "cp1".into(),
            kubelet_version: "v1.34.1".into(),
            ready: true,
            not_ready_reason: None,
            unschedulable: false,
            control_plane: true,
            internal_ip: Some("10.0.0.11".into()),
            labels: Default::default(),
            cordoned_by_kubeforge: false,
        }],
        server_version: Some("v1.34.1".into()),
    };
    let input = kubeforge::engine::Input {
        cluster: &c,
        manifest: &m,
        facts: &facts,
        state: Some(&state),
        cni_manifest: None,
        cloud_provider: None,
        mirrored: None,
        charts: None,
    };
    let plan = kubeforge::engine::plan::compute(kubeforge::workflow::APPLY, &input).unwrap();
    let pos = |f: &dyn Fn(&kubeforge::engine::Action) -> bool| plan.actions.iter().position(f);
    let block = pos(&|a| {
        a.host.as_deref() == Some("cp2")
            && a.op::<kubeforge::steps::api_endpoint::HostsBlock>()
                .is_some_and(|b| b.0.contains("10.0.0.11 api.prod.kubeforge.internal"))
    })
    .unwrap_or_else(|| panic!("cp2's block points at cp1: {:#?}", plan.actions));
    let join = pos(&|a| {
        a.host.as_deref() == Some("cp2") && a.is::<kubeforge::steps::join_control_plane::Join>()
    })
    .expect("cp2 joins");
    assert!(block < join, "the block is in place before kubeadm join");
}

/// The facts probe hashes exactly the files the desired state writes (derived, not listed by
/// hand): a file added to `for_host` is probed, so a converged host plans nothing for it.
#[test]
fn managed_paths_are_every_file_the_desired_state_writes() {
    let text = "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {name: prod}\nspec:\n  kubernetes: {version: 1.33.5}\n  artifacts:\n    registryMirrors: {docker.io: ['https://mirror.internal']}\n  hosts:\n    - {name: cp1, address: 10.0.0.11, role: control-plane}\n    - {name: w1, address: 10.0.1.1, role: worker}\n";
    let l = load_str(Path::new("t.yaml"), text, Path::new("/"), &|_| None)
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let (c, m) = (
        l.cluster.clone(),
        l.catalog.get(&l.cluster.version).unwrap().clone(),
    );
    let paths = desired::managed_paths(&c, &m);
    let ips = desired::NodeIps::from_inventory(&c);
    let mut wanted = std::collections::BTreeSet::new();
    for h in &c.hosts {
        for arch in m.arches() {
            for f in desired::for_host(&c, &m, h, &arch, "127.0.0.1", &ips)
                .unwrap()
                .files
            {
                wanted.insert(f.path);
            }
        }
    }
    wanted.insert(kubeforge::paths::CNI_MANIFEST.to_string());
    wanted.insert(kubeforge::paths::CLOUD_PROVIDER_MANIFEST.to_string());
    let probed: std::collections::BTreeSet<String> = paths.iter().cloned().collect();
    assert_eq!(probed, wanted);
    assert_eq!(probed.len(), paths.len(), "each path once: {paths:?}");
    // the worker's haproxy and the registry mirror's hosts.toml are among them
    for p in [
        "/etc/haproxy/haproxy.cfg",
        "/etc/containerd/certs.d/docker.io/hosts.toml",
        "/etc/containerd/config.toml",
    ] {
        assert!(probed.contains(p), "{p} is not probed: {paths:?}");
    }
}

/// Node removal plans one action per node, in order, and refuses the last control plane
/// before anything changes (not after the removals listed before it).
#[test]
fn removals_are_planned_in_order_and_the_last_control_plane_is_refused_first() {
    use kubeforge::steps::remove_node::RemoveNode;
    let (c, m) = cluster(1, "1.33.5", 10);
    let st = state(&c, "1.33.5");
    let facts = BTreeMap::new();
    let input = Input {
        cluster: &c,
        manifest: &m,
        facts: &facts,
        state: Some(&st),
        cni_manifest: None,
        cloud_provider: None,
        mirrored: None,
        charts: None,
    };
    let plan_of = |names: &[&str]| {
        let step = RemoveNode::new(
            names.iter().map(|n| n.to_string()).collect(),
            st.clone(),
            BTreeMap::new(),
            false,
            false,
        );
        let workflow: [&dyn Step; 1] = [&step];
        kubeforge::engine::PlanCx::observed(&input)
            .and_then(|cx| kubeforge::engine::plan::compute_with(&workflow, cx))
    };
    let p = plan_of(&["w1", "cp2"]).unwrap();
    assert_eq!(
        summaries(&p),
        [
            "w1 remove-node w1: drain, delete the node, reset its host (10.0.1.1)",
            "cp2 remove-node cp2: drain, delete the node, remove its etcd member, reset its host (10.0.0.12)"
        ]
    );
    assert_eq!(p.destructive.len(), 2, "both are shown as destructive");
    assert_eq!(
        kubeforge::steps::remove_node::RemoveNode::new(
            vec![],
            st.clone(),
            BTreeMap::new(),
            false,
            false
        )
        .schedule(&c),
        Schedule::OneAtATime
    );
    let e = plan_of(&["w1", "cp2", "cp1"]).unwrap_err().to_string();
    assert_eq!(
        e,
        "cp1 is the last control plane: removing it would destroy the cluster (use kubeforge reset)"
    );
}

#[test]
fn push_mode_imports_only_the_images_a_node_lacks() {
    let (c, m) = cluster(2, "1.33.5", 10);
    let cni = desired::flannel_manifest(&c, &m).unwrap();
    let mut facts = converged(&c, &m, &cni);
    let st = state(&c, "1.33.5");
    // w2 lost the pause image, cp2 holds etcd at another digest (a tag moved under it)
    let pause = m.image("pause").unwrap();
    facts.get_mut("w2").unwrap().images.remove(&pause.tag_ref());
    let etcd = m.image("etcd").unwrap();
    facts.get_mut("cp2").unwrap().images.insert(
        etcd.tag_ref(),
        "sha256:1111111111111111111111111111111111111111111111111111111111111111".into(),
    );
    let input = Input {
        cluster: &c,
        manifest: &m,
        facts: &facts,
        state: Some(&st),
        cni_manifest: Some(cni.clone()),
        cloud_provider: None,
        mirrored: None,
        charts: None,
    };
    let plan = compute(APPLY, &input).unwrap();
    assert_eq!(
        summaries(&plan),
        vec![
            format!(
                "cp2 push-images push 1 image (etcd:{}) and import into containerd",
                etcd.tag
            ),
            "w2 push-images push 1 image (pause:3.10) and import into containerd".to_string(),
        ]
    );
    let images: Vec<String> = plan.images().iter().map(|i| i.image.reference()).collect();
    assert_eq!(images, vec![etcd.reference(), pause.reference()]);

    // a fresh worker gets what a worker runs, never the control plane's static pods
    let mut fresh = facts.clone();
    fresh.get_mut("w1").unwrap().images.clear();
    let input = Input {
        facts: &fresh,
        ..input
    };
    let plan = compute(APPLY, &input).unwrap();
    let w1 = plan
        .actions
        .iter()
        .find(|a| a.host.as_deref() == Some("w1"))
        .unwrap();
    let pushed: Vec<String> = w1
        .op
        .images()
        .iter()
        .map(|i| i.image.repo.clone())
        .collect();
    assert_eq!(
        pushed,
        vec![
            "registry.k8s.io/coredns/coredns",
            "registry.k8s.io/kube-proxy",
            "registry.k8s.io/pause",
            "ghcr.io/flannel-io/flannel",
            "ghcr.io/flannel-io/flannel-cni-plugin",
        ]
    );
}

#[test]
fn push_mode_refuses_an_image_without_a_digest_and_pull_mode_pushes_nothing() {
    let (c, mut m) = cluster(1, "1.33.5", 10);
    let cni = desired::flannel_manifest(&c, &m).unwrap();
    let facts = converged(&c, &m, &cni);
    let st = state(&c, "1.33.5");
    let tag_only = m.image("coredns").unwrap().tag_ref();
    m.images.insert("coredns".into(), tag_only.clone());
    let input = Input {
        cluster: &c,
        manifest: &m,
        facts: &facts,
        state: Some(&st),
        cni_manifest: Some(cni.clone()),
        cloud_provider: None,
        mirrored: None,
        charts: None,
    };
    let e = compute(APPLY, &input).unwrap_err().to_string();
    assert!(
        e.contains(&format!("image {tag_only} (images.coredns of the release manifest of Kubernetes 1.33.5) is not pinned by digest")),
        "{e}"
    );
    let mut pull = c.clone();
    pull.artifacts.images = kubeforge::model::ImageMode::Pull;
    let mut bare = facts.clone();
    for f in bare.values_mut() {
        f.images.clear();
    }
    let input = Input {
        cluster: &pull,
        facts: &bare,
        ..input
    };
    let plan = compute(APPLY, &input).unwrap();
    assert!(plan.is_empty(), "{:#?}", summaries(&plan));
}
