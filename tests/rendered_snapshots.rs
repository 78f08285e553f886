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
    let input = kubeforge::engine::Input {
        cluster: &c,
        manifest: &m,
        facts: &facts,
        state: None,
        cni_manifest: Some(desired::flannel_manifest(&c, &m).unwrap()),
        cloud_provider: None,
        mirrored: None,
        charts: None,
    };
    let plan = kubeforge::engine::plan::compute(kubeforge::workflow::APPLY, &input).unwrap();
    assert_eq!(plan.init_host, "cp1");
    insta::assert_snapshot!(kubeforge::output::plan(&plan, &c));
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
    let input = kubeforge::engine::Input {
        cluster: &c,
        manifest: &m,
        facts: &facts,
        state: None,
        cni_manifest: Some(desired::flannel_manifest(&c, &m).unwrap()),
        cloud_provider: None,
        mirrored: None,
        charts: None,
    };
    let plan = kubeforge::engine::plan::compute(kubeforge::workflow::APPLY, &input).unwrap();
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
    assert!(init.contains("advertiseAddress: \"10.0.0.11\""), "{init}");
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
        kubeforge::output::plan(&plan, &c),
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
    fn images<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match v.as_str() {
                        Some(s) if k == "image" => out.push(s),
                        _ => images(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| images(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    docs.iter().for_each(|d| images(d, &mut found));
    let lines = p
        .manifest
        .lines()
        .filter(|l| l.trim_start().starts_with("image:"))
        .count();
    assert_eq!(found.len(), lines, "every image line parses as an image");
    for image in found {
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

// --- every value is escaped for its file's format (issue 10, item 9) ---

#[test]
fn toml_mirror_endpoint_with_a_quote_stays_one_value() {
    let (mut c, m) = cluster(INVENTORY);
    let evil = "https://m.example/\"]\n[evil]\nx = \"1";
    c.artifacts
        .registry_mirrors
        .insert("docker.io".into(), vec![evil.into()]);
    let f = files(&c, &m, "cp1", "10.0.0.11");
    let text = &f["/etc/containerd/certs.d/docker.io/hosts.toml"];
    let doc: toml_edit::DocumentMut = text
        .parse()
        .unwrap_or_else(|e| panic!("hosts.toml does not parse: {e}\n{text}"));
    let top: Vec<&str> = doc.iter().map(|(k, _)| k).collect();
    assert_eq!(top, ["server", "host"], "{text}");
    let hosts = doc["host"].as_table().unwrap();
    let keys: Vec<&str> = hosts.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [evil], "{text}");
}

#[test]
fn toml_pause_image_is_escaped_in_the_containerd_config() {
    // the release manifest checks image references at load; the template layer escapes anyway
    let evil = "registry.k8s.io/pause:3.10\"\n[evil]";
    for major in [1, 2] {
        let text = kubeforge::templates::render(
            "containerd-config.toml",
            &serde_json::json!({"cluster": "prod", "containerd_major": major, "pause_image": evil}),
        )
        .unwrap();
        let doc: toml_edit::DocumentMut = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(doc.get("evil").is_none(), "{text}");
        let sandbox = if major >= 2 {
            &doc["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"]
        } else {
            &doc["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"]
        };
        assert_eq!(sandbox.as_str(), Some(evil), "{text}");
    }
}

#[test]
fn yaml_values_round_trip_through_a_yaml_parser() {
    let hostname = "a: #b\nc: d\n- e 'f' \"g\" \\ \t\u{2028}\u{85}\u{7f}é😀";
    let key = "ssh-ed25519 AAAA x: #y\nruncmd: [reboot]";
    let out = kubeforge::templates::render(
        "cloud-init.yaml",
        &serde_json::json!({"hostname": hostname, "cluster": "demo\n# x: y", "public_key": key}),
    )
    .unwrap();
    let v: serde_json::Value =
        serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(v["hostname"], hostname, "{out}");
    assert_eq!(v["fqdn"], hostname, "{out}");
    assert_eq!(v["ssh_authorized_keys"], serde_json::json!([key]), "{out}");
    assert!(v.get("runcmd").is_none() && v.get("c").is_none(), "{out}");
}

#[test]
fn yaml_cert_sans_and_labels_round_trip_in_kubeadm_config() {
    let (mut c, _) = cluster(INVENTORY);
    let san = "x.example\"\n    - evil: #";
    c.api.cert_sans.push(san.into());
    let cfg = kubeforge::steps::init::render_config(
        &c,
        c.host("cp1").unwrap(),
        &desired::NodeIps::from_inventory(&c),
        "abcdef.0123456789abcdef",
        &"0".repeat(64),
    )
    .unwrap();
    let docs: Vec<serde_json::Value> = cfg
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{e}\n{d}")))
        .collect();
    let sans = docs[1]["apiServer"]["certSANs"].as_array().unwrap();
    assert_eq!(sans.last().unwrap(), san, "{cfg}");
    assert_eq!(docs[0]["localAPIEndpoint"]["advertiseAddress"], "10.0.0.11");
}

/// Reads a gcfg value the way gcfg's scanner does: quoted parts with `\"` `\\` `\n` `\t` `\b`
/// escapes, `;` and `#` starting a comment outside quotes.
fn gcfg_value(raw: &str) -> String {
    let (mut out, mut quoted, mut chars) = (String::new(), false, raw.chars());
    // whitespace outside quotes counts only between other characters
    let mut pending = String::new();
    while let Some(c) = chars.next() {
        if !quoted && c.is_whitespace() {
            pending.push(c);
            continue;
        }
        if !matches!(c, ';' | '#') || quoted {
            out.push_str(&std::mem::take(&mut pending));
        }
        match c {
            '"' => quoted = !quoted,
            '\\' => match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('b') => out.push('\u{8}'),
                other => panic!("gcfg rejects the escape \\{other:?} in {raw}"),
            },
            ';' | '#' if !quoted => break,
            c => out.push(c),
        }
    }
    assert!(!quoted, "unterminated quote in {raw}");
    out
}

#[test]
fn ini_password_with_quote_semicolon_and_hash_is_one_value() {
    let (c, m) = cluster(OPENSTACK);
    let password = "p\"a;s#s\\w=rd ";
    let creds = kubeforge::openstack::cloud::Credentials {
        auth_url: "https://keystone.example.com:5000/v3".into(),
        region: Some("Region;One".into()),
        fields: vec![
            ("username".into(), "admin".into()),
            ("password".into(), password.into()),
        ],
    };
    let p = kubeforge::openstack::render_cloud_provider(&c, &m, &creds, "subnet-1", None).unwrap();
    let value = |key: &str| {
        let lines: Vec<&str> = p
            .cloud_conf
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .collect();
        assert_eq!(lines.len(), 1, "{key} in\n{}", p.cloud_conf);
        gcfg_value(lines[0])
    };
    assert_eq!(value("password"), password);
    assert_eq!(value("region"), "Region;One");
    assert_eq!(value("username"), "admin");
    let newline = kubeforge::openstack::cloud::Credentials {
        auth_url: "https://keystone.example.com:5000/v3".into(),
        region: None,
        fields: vec![("password".into(), "a\n[Global]\nauth-url=x".into())],
    };
    let err = kubeforge::openstack::render_cloud_provider(&c, &m, &newline, "subnet-1", None)
        .expect_err("a newline in an INI value is refused");
    assert!(err.to_string().contains("control character"), "{err}");
}

#[test]
fn registry_mirror_key_that_is_not_a_host_is_refused() {
    let (c0, m) = cluster(INVENTORY);
    for bad in [
        "../../etc/cron.d",
        "a/b",
        "..",
        "",
        "host:port:x",
        "a b",
        "x\n",
    ] {
        let mut c = c0.clone();
        c.artifacts
            .registry_mirrors
            .insert(bad.into(), vec!["https://mirror.internal".into()]);
        let h = c.host("cp1").unwrap();
        let err = desired::for_host(
            &c,
            &m,
            h,
            "amd64",
            "10.0.0.11",
            &desired::NodeIps::from_inventory(&c),
        )
        .err()
        .unwrap_or_else(|| panic!("the key {bad:?} is accepted"));
        assert!(err.to_string().contains("registryMirrors"), "{err}");
        for p in desired::managed_paths(&c, &m) {
            if let Some(k) = p.strip_prefix("/etc/containerd/certs.d/") {
                let k = k.strip_suffix("/hosts.toml").unwrap();
                assert!(
                    k != bad && !k.contains('/') && !matches!(k, "" | "." | ".."),
                    "{p} from {bad:?}"
                );
            }
        }
    }
    for good in [
        "_default",
        "registry.example.com:5000",
        "quay.io",
        "10.0.0.5:5000",
    ] {
        let mut c = c0.clone();
        c.artifacts
            .registry_mirrors
            .insert(good.into(), vec!["https://mirror.internal".into()]);
        let h = c.host("cp1").unwrap();
        let d = desired::for_host(
            &c,
            &m,
            h,
            "amd64",
            "10.0.0.11",
            &desired::NodeIps::from_inventory(&c),
        )
        .unwrap();
        assert!(
            d.files
                .iter()
                .any(|f| f.path == format!("/etc/containerd/certs.d/{good}/hosts.toml"))
        );
    }
}

#[test]
fn plain_http_mirror_needs_the_opt_in() {
    let (mut c, m) = cluster(INVENTORY);
    c.artifacts.registry_mirrors.insert(
        "docker.io".into(),
        vec![
            "http://10.0.0.9:5000".into(),
            "https://mirror.internal".into(),
        ],
    );
    let h = c.host("cp1").unwrap().clone();
    let err = desired::for_host(
        &c,
        &m,
        &h,
        "amd64",
        "10.0.0.11",
        &desired::NodeIps::from_inventory(&c),
    )
    .expect_err("a plain-http mirror without allowHttpRegistryMirrors is refused");
    assert!(
        err.to_string().contains("allowHttpRegistryMirrors"),
        "{err}"
    );
    let mut secret = c.clone();
    secret.artifacts.registry_mirrors.insert(
        "docker.io".into(),
        vec!["http://u:s3cret@10.0.0.9:5000".into()],
    );
    let err = desired::for_host(
        &secret,
        &m,
        &h,
        "amd64",
        "10.0.0.11",
        &desired::NodeIps::from_inventory(&secret),
    )
    .err()
    .unwrap();
    assert!(!err.to_string().contains("s3cret"), "{err}");
    assert!(err.to_string().contains("http://10.0.0.9:5000"), "{err}");
    c.artifacts.allow_http_registry_mirrors = true;
    let f = files(&c, &m, "cp1", "10.0.0.11");
    let text = &f["/etc/containerd/certs.d/docker.io/hosts.toml"];
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let keys: Vec<&str> = doc["host"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        ["http://10.0.0.9:5000", "https://mirror.internal"],
        "{text}"
    );
    assert!(!text.contains("skip_verify"), "{text}");
    // a value that is not an http(s) URL is never written
    c.artifacts
        .registry_mirrors
        .insert("quay.io".into(), vec!["file:///etc/shadow".into()]);
    assert!(
        desired::for_host(
            &c,
            &m,
            &h,
            "amd64",
            "10.0.0.11",
            &desired::NodeIps::from_inventory(&c)
        )
        .is_err()
    );
}

#[test]
fn containerd_2_config_lists_cni_bin_dirs_not_the_deprecated_bin_dir() {
    let (c, m) = cluster(INVENTORY);
    let f = files(&c, &m, "cp1", "10.0.0.11");
    let text = &f["/etc/containerd/config.toml"];
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    assert_eq!(doc["version"].as_integer(), Some(3), "{text}");
    let cni = doc["plugins"]["io.containerd.cri.v1.runtime"]["cni"]
        .as_table()
        .unwrap();
    assert!(
        cni.get("bin_dir").is_none(),
        "deprecated in containerd 2.1:\n{text}"
    );
    let dirs: Vec<&str> = cni["bin_dirs"]
        .as_array()
        .expect("bin_dirs is a list")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(dirs, ["/opt/cni/bin"]);
}

#[test]
fn kubelet_drop_in_reads_the_deb_and_the_rpm_environment_file() {
    let (c, m) = cluster(INVENTORY);
    let f = files(&c, &m, "cp1", "10.0.0.11");
    let unit = &f["/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"];
    let env: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("EnvironmentFile="))
        .collect();
    assert_eq!(
        env,
        [
            "-/var/lib/kubelet/kubeadm-flags.env",
            "-/etc/default/kubelet",
            "-/etc/sysconfig/kubelet"
        ],
        "{unit}"
    );
}

/// What cloud-init's update_etc_hosts module does to /etc/hosts at boot, by the value of
/// `manage_etc_hosts` (cloudinit/config/cc_update_etc_hosts.py): `true`/`template` writes the
/// file anew from /etc/cloud/templates/hosts.*.tmpl on every boot; `localhost` edits only the
/// 127.0.1.1 line; `false` or absent leaves it alone.
fn cloud_init_boot(manage: &serde_json::Value, hosts: &str, hostname: &str) -> String {
    let template = format!(
        "127.0.1.1 {hostname} {hostname}\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
    );
    match manage {
        serde_json::Value::Bool(true) => template,
        serde_json::Value::String(s) if s == "template" => template,
        serde_json::Value::String(s) if s == "localhost" => {
            let mut out: Vec<String> = hosts
                .lines()
                .filter(|l| !l.starts_with("127.0.1.1"))
                .map(String::from)
                .collect();
            out.insert(0, format!("127.0.1.1 {hostname} {hostname}"));
            out.join("\n") + "\n"
        }
        serde_json::Value::Bool(false) | serde_json::Value::Null => hosts.to_string(),
        other => panic!("cloud-init does not know manage_etc_hosts: {other}"),
    }
}

#[test]
fn cloud_init_keeps_the_api_endpoint_block_in_etc_hosts_across_reboots() {
    let user_data = kubeforge::templates::render(
        "cloud-init.yaml",
        &serde_json::json!({"hostname": "demo-worker-1", "cluster": "demo", "public_key": "ssh-ed25519 AAAA k"}),
    )
    .unwrap();
    let cfg: serde_json::Value = serde_saphyr::from_str(&user_data).unwrap();
    assert_ne!(
        cfg["manage_etc_hosts"],
        serde_json::json!(true),
        "{user_data}"
    );
    assert_eq!(cfg["hostname"], "demo-worker-1");
    assert_eq!(cfg["preserve_hostname"], false);
    let block = kubeforge::templates::render(
        "hosts-block",
        &serde_json::json!({"cluster": "demo", "endpoint": "api.demo.kubeforge.internal", "endpoint_ip": "127.0.0.1"}),
    )
    .unwrap();
    let hosts = format!("127.0.0.1 localhost\n{block}");
    let mut now = hosts.clone();
    for _ in 0..2 {
        now = cloud_init_boot(
            cfg.get("manage_etc_hosts")
                .unwrap_or(&serde_json::Value::Null),
            &now,
            "demo-worker-1",
        );
    }
    assert!(now.contains(&block), "after two reboots:\n{now}");
}

#[test]
fn cinder_csi_has_no_snapshotter_without_the_snapshot_api() {
    let (c, m) = cluster(OPENSTACK);
    let creds = kubeforge::openstack::cloud::Credentials {
        auth_url: "https://keystone.example.com:5000/v3".into(),
        ..Default::default()
    };
    let p = kubeforge::openstack::render_cloud_provider(&c, &m, &creds, "subnet-1", None).unwrap();
    let docs: Vec<serde_json::Value> = p
        .manifest
        .split("\n---\n")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    // the VolumeSnapshot CRDs and the snapshot-controller are not deployed, so nothing may
    // ask for them: no csi-snapshotter sidecar, no RBAC on snapshot.storage.k8s.io
    let crds = docs.iter().any(|d| {
        d["kind"] == "CustomResourceDefinition" && d["spec"]["group"] == "snapshot.storage.k8s.io"
    });
    assert!(!crds);
    for d in &docs {
        for ctr in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_ne!(
                ctr["name"], "csi-snapshotter",
                "in {}",
                d["metadata"]["name"]
            );
        }
        for rule in d["rules"].as_array().into_iter().flatten() {
            assert!(
                !rule["apiGroups"]
                    .to_string()
                    .contains("snapshot.storage.k8s.io"),
                "RBAC for the snapshot API in {}",
                d["metadata"]["name"]
            );
        }
    }
}
