//! Every rendered template and a plan, as snapshots: a change in what kubeforge writes to
//! hosts is a visible diff.

use kubeforge::desired;
use kubeforge::inventory::load_str;
use kubeforge::model::Cluster;
use kubeforge::release::ReleaseManifest;
use std::collections::BTreeMap;
use std::path::Path;

const INVENTORY: &str = "\
apiVersion: kubeforge.io/v1alpha1
kind: Cluster
metadata: {name: prod}
spec:
  kubernetes: {version: 1.33.5, podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12}
  controlPlane: {certSANs: [k8s.example.com]}
  artifacts:
    registryMirrors: {docker.io: ['https://mirror.internal'], quay.io: ['https://quay-mirror.internal']}
  hosts:
    - {name: cp1, address: 10.0.0.11, role: control-plane}
    - {name: cp2, address: 10.0.0.12, role: control-plane}
    - {name: cp3, address: 203.0.113.13, privateAddress: 10.0.0.13, role: control-plane}
    - {name: w1, address: 10.0.0.21, role: worker, labels: {topology.kubernetes.io/zone: a}}
    - {name: gpu1, address: 10.0.0.31, role: worker, labels: {example.com/gpu: 'true'}, taints: ['example.com/gpu=true:NoSchedule']}
";

fn cluster(text: &str) -> (Cluster, ReleaseManifest) {
    let l = load_str(Path::new("t.yaml"), text, Path::new("/"), &|_| None)
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let m = l.catalog.get(&l.cluster.version).unwrap().clone();
    (l.cluster, m)
}

fn files(c: &Cluster, m: &ReleaseManifest, host: &str, ip: &str) -> BTreeMap<String, String> {
    let h = c.host(host).unwrap();
    let ips = desired::NodeIps::from_inventory(c);
    let d = desired::for_host(c, m, h, "amd64", ip, &ips).unwrap();
    let mut out: BTreeMap<String, String> =
        d.files.into_iter().map(|f| (f.path, f.content)).collect();
    if let Some(b) = d.hosts_block {
        out.insert("/etc/hosts (block)".into(), b);
    }
    out
}

fn dump(files: &BTreeMap<String, String>) -> String {
    files
        .iter()
        .map(|(p, c)| format!("==> {p} <==\n{c}\n"))
        .collect()
}

#[test]
fn control_plane_files() {
    let (c, m) = cluster(INVENTORY);
    insta::assert_snapshot!(dump(&files(&c, &m, "cp1", "10.0.0.11")));
}

#[test]
fn worker_files_with_haproxy() {
    let (c, m) = cluster(INVENTORY);
    let f = files(&c, &m, "w1", "127.0.0.1");
    let only: BTreeMap<String, String> = f
        .into_iter()
        .filter(|(p, _)| p.contains("haproxy") || p.contains("hosts") || p.contains("cluster"))
        .collect();
    insta::assert_snapshot!(dump(&only));
}

#[test]
fn containerd_config_for_containerd_1() {
    let (c, mut m) = cluster(INVENTORY);
    for a in m
        .artifacts
        .iter_mut()
        .filter(|a| a.component == "containerd")
    {
        a.version = "1.7.27".into();
    }
    let f = files(&c, &m, "cp1", "10.0.0.11");
    insta::assert_snapshot!(f["/etc/containerd/config.toml"]);
}

#[test]
fn kubeadm_init_v1beta4() {
    let (c, _) = cluster(INVENTORY);
    let cfg = kubeforge::steps::init::render_config(
        &c,
        c.host("cp1").unwrap(),
        &desired::NodeIps::from_inventory(&c),
        "abcdef.0123456789abcdef",
        &"0".repeat(64),
    )
    .unwrap();
    insta::assert_snapshot!(cfg);
}

#[test]
fn kubeadm_init_v1beta3_single_node() {
    let (mut c, _) = cluster(&INVENTORY.replace(
        "    - {name: cp2, address: 10.0.0.12, role: control-plane}\n    - {name: cp3, address: 203.0.113.13, privateAddress: 10.0.0.13, role: control-plane}\n    - {name: w1, address: 10.0.0.21, role: worker, labels: {topology.kubernetes.io/zone: a}}\n    - {name: gpu1, address: 10.0.0.31, role: worker, labels: {example.com/gpu: 'true'}, taints: ['example.com/gpu=true:NoSchedule']}\n",
        "",
    ));
    // a release before 1.31 speaks kubeadm's v1beta3
    c.version = semver::Version::new(1, 30, 14);
    let cfg = kubeforge::steps::init::render_config(
        &c,
        c.host("cp1").unwrap(),
        &desired::NodeIps::from_inventory(&c),
        "abcdef.0123456789abcdef",
        &"0".repeat(64),
    )
    .unwrap();
    assert!(
        cfg.contains("taints: []"),
        "a cluster without workers schedules on its control plane"
    );
    insta::assert_snapshot!(cfg);
}

#[test]
fn kubeadm_join_configs() {
    let (c, _) = cluster(INVENTORY);
    let cp = kubeforge::steps::join_control_plane::render_config(
        &c,
        c.host("cp3").unwrap(),
        &desired::NodeIps::from_inventory(&c),
        "abcdef.0123456789abcdef",
        &"1".repeat(64),
        Some(&"0".repeat(64)),
    )
    .unwrap();
    let w = kubeforge::steps::join_control_plane::render_config(
        &c,
        c.host("gpu1").unwrap(),
        &desired::NodeIps::from_inventory(&c),
        "abcdef.0123456789abcdef",
        &"1".repeat(64),
        None,
    )
    .unwrap();
    insta::assert_snapshot!(format!(
        "==> control plane cp3 <==\n{cp}\n==> worker gpu1 <==\n{w}"
    ));
}

#[test]
fn flannel_manifest() {
    let (c, m) = cluster(INVENTORY);
    insta::assert_snapshot!(desired::flannel_manifest(&c, &m).unwrap());
}

#[test]
fn plan_for_bare_hosts() {
    let (c, m) = cluster(INVENTORY);
    let bare = include_str!("fixtures/facts/harness-bare.txt");
    let t: f64 = bare.lines().nth(2).unwrap().parse().unwrap();
    let mut facts = BTreeMap::new();
    for (i, h) in c.hosts.iter().enumerate() {
        let mut f = kubeforge::facts::parse(bare, t, t).unwrap();
        f.hostname = format!("node{}", i + 1);
        facts.insert(h.name.clone(), f);
    }
    let input = kubeforge::plan::Input {
        cluster: &c,
        manifest: &m,
        facts: &facts,
        state: None,
        cni_manifest: Some(desired::flannel_manifest(&c, &m).unwrap()),
        cloud_provider: None,
    };
    let plan = kubeforge::plan::compute(&input).unwrap();
    assert_eq!(plan.init_host, "cp1");
    insta::assert_snapshot!(plan.render(&c));
}

/// Hosts given by DNS name: the node IPs come from the hosts' facts (the local address of the
/// SSH connection), and every place kubeadm, haproxy and /etc/hosts need an IP gets it.
#[test]
fn hosts_given_by_name() {
    let (c, m) = cluster(
        "\
apiVersion: kubeforge.io/v1alpha1
kind: Cluster
metadata: {name: named}
spec:
  kubernetes: {version: 1.33.5}
  hosts:
    - {name: cp1, address: cp1.example.com, role: control-plane}
    - {name: cp2, address: cp2.example.com, privateAddress: 10.0.0.12, role: control-plane}
    - {name: w1, address: w1.example.com, role: worker}
",
    );
    let bare = include_str!("fixtures/facts/harness-bare.txt");
    let t: f64 = bare.lines().nth(2).unwrap().parse().unwrap();
    let mut facts = BTreeMap::new();
    for (h, ip) in c.hosts.iter().zip(["10.0.0.11", "192.0.2.99", "10.0.0.21"]) {
        let mut f = kubeforge::facts::parse(bare, t, t).unwrap();
        f.hostname = h.name.clone();
        f.ssh_local_address = Some(ip.parse().unwrap());
        f.addresses = vec![("eth0".into(), ip.parse().unwrap())];
        facts.insert(h.name.clone(), f);
    }
    let input = kubeforge::plan::Input {
        cluster: &c,
        manifest: &m,
        facts: &facts,
        state: None,
        cni_manifest: Some(desired::flannel_manifest(&c, &m).unwrap()),
        cloud_provider: None,
    };
    let plan = kubeforge::plan::compute(&input).unwrap();
    let ips: Vec<(&str, &str)> = plan
        .node_ips
        .0
        .iter()
        .map(|(h, n)| (h.as_str(), n.ip.as_str()))
        .collect();
    assert_eq!(
        ips,
        [
            ("cp1", "10.0.0.11"),
            ("cp2", "10.0.0.12"),
            ("w1", "10.0.0.21")
        ],
        "privateAddress wins over what the host reports"
    );
    let init = kubeforge::steps::init::render_config(
        &c,
        c.host("cp1").unwrap(),
        &plan.node_ips,
        "abcdef.0123456789abcdef",
        &"0".repeat(64),
    )
    .unwrap();
    assert!(init.contains("advertiseAddress: 10.0.0.11"), "{init}");
    let join = kubeforge::steps::join_control_plane::render_config(
        &c,
        c.host("w1").unwrap(),
        &plan.node_ips,
        "abcdef.0123456789abcdef",
        &"1".repeat(64),
        None,
    )
    .unwrap();
    let worker = desired::for_host(
        &c,
        &m,
        c.host("w1").unwrap(),
        "amd64",
        &input.endpoint_ip(c.host("w1").unwrap()),
        &plan.node_ips,
    )
    .unwrap();
    let cp1 = desired::for_host(
        &c,
        &m,
        c.host("cp1").unwrap(),
        "amd64",
        &input.endpoint_ip(c.host("cp1").unwrap()),
        &plan.node_ips,
    )
    .unwrap();
    let haproxy = worker
        .files
        .iter()
        .find(|f| f.path == "/etc/haproxy/haproxy.cfg")
        .unwrap();
    insta::assert_snapshot!(format!(
        "==> plan <==\n{}\n==> plan -o json: node_ips <==\n{}\n\n==> kubeadm init cp1 <==\n{init}\n==> kubeadm join w1 <==\n{join}\n==> w1 /etc/haproxy/haproxy.cfg <==\n{}\n==> cp1 /etc/hosts (block) <==\n{}",
        plan.render(&c),
        serde_json::to_string_pretty(&serde_json::to_value(&plan).unwrap()["node_ips"]).unwrap(),
        haproxy.content,
        cp1.hosts_block.unwrap(),
    ));
}

const OPENSTACK: &str = "\
apiVersion: kubeforge.io/v1alpha1
kind: Cluster
metadata: {name: demo}
spec:
  kubernetes: {version: 1.34.1}
  controlPlane: {loadBalancer: octavia}
  ssh: {user: ubuntu, keyPath: /keys/id}
  openstack:
    cloud: mycloud
    image: ubuntu-24.04
    controlPlane: {count: 3, flavor: m1.large}
    workers: {count: 2, flavor: m1.large}
";

#[test]
fn openstack_cloud_provider() {
    let (c, m) = cluster(OPENSTACK);
    let creds = kubeforge::openstack::cloud::Credentials {
        auth_url: "https://keystone.example.com:5000/v3".into(),
        region: Some("RegionOne".into()),
        fields: vec![
            ("application_credential_id".into(), "0123abcd".into()),
            ("application_credential_secret".into(), "s3cr;t\"x".into()),
            ("ignored_field".into(), "x".into()),
        ],
    };
    let p =
        kubeforge::openstack::render_cloud_provider(&c, &m, &creds, "subnet-1", Some("ext-net-1"))
            .unwrap();
    insta::assert_snapshot!("openstack_cloud_conf", p.cloud_conf);
    insta::assert_snapshot!("openstack_ccm_and_cinder_csi", p.manifest);
    // every document parses, and every image is the release manifest's pin
    let docs: Vec<serde_json::Value> = p
        .manifest
        .split("\n---\n")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{e}\n{d}")))
        .collect();
    assert!(docs.len() > 10);
    let pins: Vec<&String> = m.addons["openstack"].images.values().collect();
    for line in p
        .manifest
        .lines()
        .filter(|l| l.trim_start().starts_with("image:"))
    {
        let image = line.split("image:").nth(1).unwrap().trim();
        assert!(
            pins.iter().any(|p| p.as_str() == image),
            "{image} is not pinned"
        );
    }
}

#[test]
fn cloud_init() {
    let out = kubeforge::templates::render(
        "cloud-init.yaml",
        &serde_json::json!({"hostname": "demo-worker-1", "cluster": "demo", "public_key": "ssh-ed25519 AAAAC3Nza test@example"}),
    )
    .unwrap();
    insta::assert_snapshot!(out);
}
