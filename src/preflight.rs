//! Preflight checks, in the spirit of kubeadm's: named, with a severity, decided from facts
//! alone. Errors block `apply`; warnings are shown. `--ignore-preflight NAME[,NAME]` (or `all`)
//! skips checks by name.

use crate::facts::{Facts, Feature, Installable, MemberRole};
use crate::model::{Cluster, Role};
use crate::steps::os_prep;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub host: String,
    pub severity: Severity,
    pub message: String,
}

/// Every check, with what it looks at.
pub const CHECKS: &[(&str, &str)] = &[
    ("OS", "a supported Linux distribution and release"),
    (
        "Arch",
        "a CPU architecture the release manifest has binaries for",
    ),
    ("InitSystem", "systemd as the init system"),
    (
        "Swap",
        "swap is off (kubelet refuses to start with swap; apply turns it off)",
    ),
    ("NumCPU", "at least 2 CPUs on control planes"),
    (
        "Memory",
        "at least 1700 MiB on control planes, 1024 MiB on workers",
    ),
    (
        "DuplicateHostname",
        "hostnames differ across hosts (apply sets each to its inventory name)",
    ),
    (
        "DuplicateMachineID",
        "/etc/machine-id differs across hosts (cloned images)",
    ),
    (
        "DuplicateProductUUID",
        "DMI product_uuid differs across hosts",
    ),
    (
        "ClockSkew",
        "the host clock is within spec.options.maxClockSkew of the operator's",
    ),
    (
        "Ports",
        "ports Kubernetes needs are free (6443, 2379-2380, 10250, 10257, 10259)",
    ),
    (
        "KernelOverlay",
        "the overlay filesystem is built in or loadable",
    ),
    (
        "KernelBridgeNetfilter",
        "br_netfilter is built in or loadable",
    ),
    ("IPForward", "net.ipv4.ip_forward is 1 (apply sets it)"),
    ("CgroupV1", "cgroup v2, which Kubernetes 1.35 requires"),
    (
        "ForeignCluster",
        "the host is not already part of another cluster",
    ),
    (
        "Packages",
        "the OS packages a host needs (iptables; haproxy on workers behind the local load balancer) are installed, or its package manager can install them",
    ),
];

pub const CONTROL_PLANE_PORTS: &[u16] = &[6443, 2379, 2380, 10250, 10257, 10259];
pub const WORKER_PORTS: &[u16] = &[10250];

/// Supported distributions and their oldest supported release.
const SUPPORTED_OS: &[(&str, &str)] = &[
    ("debian", "11"),
    ("ubuntu", "20.04"),
    ("rhel", "8"),
    ("rocky", "8"),
    ("almalinux", "8"),
    ("centos", "9"),
    ("ol", "8"),
    ("fedora", "39"),
    ("opensuse-leap", "15.5"),
    ("sles", "15.5"),
    ("flatcar", "3000"),
];

fn version_at_least(have: &str, min: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(have) >= parse(min)
}

/// Normalizes user input: names are matched case-insensitively; `all` matches every check.
pub fn is_ignored(check: &str, ignore: &[String]) -> bool {
    ignore
        .iter()
        .any(|i| i.eq_ignore_ascii_case("all") || i.eq_ignore_ascii_case(check))
}

/// Names given to --ignore-preflight that are not checks.
pub fn unknown_names(ignore: &[String]) -> Vec<String> {
    ignore
        .iter()
        .filter(|i| {
            !i.eq_ignore_ascii_case("all") && !CHECKS.iter().any(|(c, _)| c.eq_ignore_ascii_case(i))
        })
        .cloned()
        .collect()
}

struct Out<'a> {
    ignore: &'a [String],
    findings: Vec<Finding>,
}

impl Out<'_> {
    fn add(&mut self, check: &'static str, host: &str, severity: Severity, message: String) {
        if !is_ignored(check, self.ignore) {
            self.findings.push(Finding {
                check,
                host: host.to_string(),
                severity,
                message,
            });
        }
    }
}

/// Runs every check on the hosts whose facts were gathered. `arches`: the architectures the
/// release manifest has binaries for.
pub fn run(
    cluster: &Cluster,
    facts: &BTreeMap<String, Facts>,
    ignore: &[String],
    arches: &[String],
) -> Vec<Finding> {
    let mut out = Out {
        ignore,
        findings: Vec::new(),
    };
    for h in &cluster.hosts {
        let Some(f) = facts.get(&h.name) else {
            continue;
        };
        per_host(&mut out, cluster, h, f, arches);
    }
    across_hosts(&mut out, cluster, facts);
    out.findings.sort_by(|a, b| {
        let ia = cluster.hosts.iter().position(|h| h.name == a.host);
        let ib = cluster.hosts.iter().position(|h| h.name == b.host);
        (ia, a.severity).cmp(&(ib, b.severity))
    });
    out.findings
}

fn per_host(
    out: &mut Out,
    cluster: &Cluster,
    h: &crate::model::Host,
    f: &Facts,
    arches: &[String],
) {
    let name = &h.name;
    let is_cp = h.role == Role::ControlPlane;
    match SUPPORTED_OS.iter().find(|(id, _)| *id == f.os_id) {
        Some((_, min)) if !version_at_least(&f.os_version, min) => out.add(
            "OS",
            name,
            Severity::Error,
            format!(
                "{} is older than the oldest supported {} {min}",
                f.os_pretty, f.os_id
            ),
        ),
        Some(_) => {}
        None => out.add(
            "OS",
            name,
            Severity::Error,
            format!(
                "{} ({}) is not a supported distribution (supported: {})",
                f.os_pretty,
                f.os_id,
                SUPPORTED_OS
                    .iter()
                    .map(|(i, v)| format!("{i} {v}+"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
    if !arches.contains(&f.arch) {
        out.add(
            "Arch",
            name,
            Severity::Error,
            format!(
                "architecture {} has no binaries in the release manifest of Kubernetes {} ({})",
                f.arch,
                cluster.version,
                arches.join(", ")
            ),
        );
    }
    if f.init != "systemd" {
        out.add(
            "InitSystem",
            name,
            Severity::Error,
            format!(
                "the init system is {:?}; kubeforge manages services with systemd",
                f.init
            ),
        );
    }
    if f.swap_mib > 0 {
        out.add(
            "Swap",
            name,
            Severity::Warning,
            format!(
                "{} MiB of swap is on; apply turns it off and keeps it off",
                f.swap_mib
            ),
        );
    }
    if is_cp && f.cpus < 2 {
        out.add(
            "NumCPU",
            name,
            Severity::Error,
            format!("{} CPU; a control plane needs at least 2", f.cpus),
        );
    }
    let min_mem = if is_cp { 1700 } else { 1024 };
    if f.memory_mib < min_mem {
        out.add(
            "Memory",
            name,
            Severity::Error,
            format!(
                "{} MiB of memory; a {} needs at least {min_mem} MiB",
                f.memory_mib, h.role
            ),
        );
    }
    let skew_ms = cluster.options.max_clock_skew.as_millis() as i64;
    if f.clock_offset_ms.abs() > skew_ms {
        out.add(
            "ClockSkew",
            name,
            Severity::Error,
            format!(
                "the clock is {:+.1}s off the operator's (limit {}s); certificates and tokens need synchronized clocks (enable NTP)",
                f.clock_offset_ms as f64 / 1000.0,
                skew_ms / 1000
            ),
        );
    }
    // ports: only where nothing of ours runs yet
    let member = f.membership.role().is_some() || f.membership.kubelet_active;
    if !member {
        let needed = if is_cp {
            CONTROL_PLANE_PORTS
        } else {
            WORKER_PORTS
        };
        let busy: Vec<String> = needed
            .iter()
            .filter(|p| f.listening_ports.contains(p))
            .map(|p| p.to_string())
            .collect();
        if !busy.is_empty() {
            out.add(
                "Ports",
                name,
                Severity::Error,
                format!(
                    "port{} {} already in use",
                    if busy.len() == 1 { "" } else { "s" },
                    busy.join(", ")
                ),
            );
        }
    }
    let k = &f.kernel_features;
    if k.overlay == Feature::Missing {
        out.add(
            "KernelOverlay",
            name,
            Severity::Error,
            "the kernel has no overlay filesystem (not built in, no module); containerd needs it"
                .into(),
        );
    }
    if k.br_netfilter == Feature::Missing {
        out.add(
            "KernelBridgeNetfilter",
            name,
            Severity::Error,
            "the kernel has no br_netfilter (not built in, no module); pod traffic would bypass iptables".into(),
        );
    }
    if !k.ip_forward {
        out.add(
            "IPForward",
            name,
            Severity::Warning,
            "net.ipv4.ip_forward is 0; apply sets it to 1 persistently".into(),
        );
    }
    if f.cgroup_version == 1 {
        let v = &cluster.version;
        if (v.major, v.minor) >= (1, 35) {
            out.add(
                "CgroupV1",
                name,
                Severity::Error,
                format!("the host uses cgroup v1; the kubelet of Kubernetes {v} refuses to run on it (boot with systemd.unified_cgroup_hierarchy=1)"),
            );
        } else {
            out.add(
                "CgroupV1",
                name,
                Severity::Warning,
                "the host uses cgroup v1, which Kubernetes deprecated (1.35 and later refuse it)"
                    .into(),
            );
        }
    }
    packages(out, cluster, h, f);
    if let Some(other) = f.membership.cluster().filter(|c| *c != cluster.name) {
        out.add(
            "ForeignCluster",
            name,
            Severity::Error,
            format!("the host belongs to cluster {other:?} (/etc/kubeforge/cluster), not {:?}; reset it first", cluster.name),
        );
    } else if f.membership.cluster().is_none() && f.membership.role().is_some() {
        out.add(
            "ForeignCluster",
            name,
            Severity::Error,
            format!(
                "the host is already a Kubernetes {} of a cluster kubeforge did not install (/etc/kubernetes holds its kubeconfigs); reset it (kubeadm reset) or leave it out of the inventory",
                match f.membership.role() {
                    Some(MemberRole::ControlPlane) => "control plane",
                    _ => "node",
                }
            ),
        );
    }
}

/// The OS packages `h` needs that it lacks, as its package manager would install them: an
/// error naming each one its package manager said it cannot install (apply would fail in
/// os-prep, after other changes), a warning for those it cannot tell about without a network.
fn packages(out: &mut Out, cluster: &Cluster, h: &crate::model::Host, f: &Facts) {
    let manager = f.package_manager.as_deref();
    let family = os_prep::package_family(manager.unwrap_or_default());
    let mut cannot: Vec<(&str, &str)> = Vec::new();
    let mut unsure: Vec<(&str, &str)> = Vec::new();
    for tool in os_prep::needed_packages(cluster, h) {
        if f.has_tool(tool) {
            continue;
        }
        let package = os_prep::package_name(tool, family);
        match f.package_checks.get(tool) {
            Some(Installable::No(why)) => cannot.push((package, why)),
            Some(Installable::Unknown(why)) => unsure.push((package, why)),
            // installable, or not asked about (a probe that predates the question)
            Some(Installable::Yes) | None => {}
        }
    }
    let names = |v: &[(&str, &str)]| v.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(" ");
    let said = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(p, why)| format!("{p} ({why})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plural = |v: &[(&str, &str)]| if v.len() == 1 { "" } else { "s" };
    let them = |v: &[(&str, &str)]| if v.len() == 1 { "it" } else { "them" };
    if !cannot.is_empty() {
        let message = match manager {
            Some(m) => format!(
                "missing OS package{} that {m} cannot install: {}; make {} installable from the site's repository or mirror that {m} uses (`{m} install {}`), or preinstall {} in the host's image",
                plural(&cannot),
                said(&cannot),
                them(&cannot),
                names(&cannot),
                them(&cannot),
            ),
            None => format!(
                "missing OS package{} {}, and the host has no package manager (apt-get, dnf, yum, zypper) to install {}; preinstall {} in the host's image",
                plural(&cannot),
                names(&cannot),
                them(&cannot),
                them(&cannot),
            ),
        };
        out.add("Packages", &h.name, Severity::Error, message);
    }
    if !unsure.is_empty() {
        let m = manager.unwrap_or("the package manager");
        out.add(
            "Packages",
            &h.name,
            Severity::Warning,
            format!(
                "missing OS package{} that {m} cannot vouch for without a network: {}; apply installs {} with {m}, which needs a reachable repository or mirror (on a site without one, preinstall {})",
                plural(&unsure),
                said(&unsure),
                them(&unsure),
                names(&unsure),
            ),
        );
    }
}

fn across_hosts(out: &mut Out, cluster: &Cluster, facts: &BTreeMap<String, Facts>) {
    let in_order: Vec<(&str, &Facts)> = cluster
        .hosts
        .iter()
        .filter_map(|h| facts.get(&h.name).map(|f| (h.name.as_str(), f)))
        .collect();
    let dup = |out: &mut Out,
               check: &'static str,
               what: &str,
               severity: Severity,
               hint: &str,
               key: &dyn Fn(&Facts) -> Option<String>| {
        let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (name, f) in &in_order {
            if let Some(k) = key(f).filter(|k| !k.is_empty()) {
                seen.entry(k).or_default().push(name);
            }
        }
        for (value, hosts) in seen.into_iter().filter(|(_, h)| h.len() > 1) {
            for h in &hosts {
                out.add(
                    check,
                    h,
                    severity,
                    format!("{what} {value} is shared by {}{hint}", hosts.join(", ")),
                );
            }
        }
    };
    dup(
        out,
        "DuplicateHostname",
        "hostname",
        Severity::Warning,
        "; apply sets each host's hostname to its inventory name",
        &|f| Some(f.hostname.clone()),
    );
    dup(
        out,
        "DuplicateMachineID",
        "machine-id",
        Severity::Error,
        "; hosts cloned from one image need a new one (rm /etc/machine-id && systemd-machine-id-setup)",
        &|f| Some(f.machine_id.clone()),
    );
    dup(
        out,
        "DuplicateProductUUID",
        "product_uuid",
        Severity::Warning,
        "; Kubernetes reports it as the node's system UUID",
        &|f| f.product_uuid.clone(),
    );
    // members of this cluster share one CA; a host with another CA belongs to another cluster
    let mut cas: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, f) in &in_order {
        if f.membership.cluster() == Some(cluster.name.as_str())
            && let Some(ca) = &f.membership.ca_sha256
        {
            cas.entry(ca.as_str()).or_default().push(name);
        }
    }
    if cas.len() > 1 {
        // the CA of the first control plane that has one is this cluster's
        let ours = cluster
            .control_planes()
            .filter_map(|h| facts.get(&h.name)?.membership.ca_sha256.as_deref())
            .next();
        for (ca, hosts) in &cas {
            if Some(*ca) != ours {
                for h in hosts {
                    out.add(
                        "ForeignCluster",
                        h,
                        Severity::Error,
                        format!("the host's cluster CA (sha256 {}…) differs from this cluster's; it belongs to another cluster named {:?}", &ca[..12], cluster.name),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts;
    use std::path::Path;

    const BARE: &str = include_str!("../tests/fixtures/facts/harness-bare.txt");

    fn cluster(extra: &str) -> Cluster {
        let text = format!(
            "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: prod}}\nspec:\n  kubernetes: {{version: 1.33.5}}\n  hosts:\n    - {{name: cp1, address: 10.0.0.11, role: control-plane}}\n    - {{name: w1, address: 10.0.0.21, role: worker}}\n{extra}"
        );
        crate::inventory::load_str(Path::new("t.yaml"), &text, Path::new("/"), &|_| None)
            .unwrap_or_else(|e| panic!("{}", e.render(false)))
            .cluster
    }

    fn facts_with(edit: impl Fn(&mut Facts)) -> Facts {
        let t = facts::fixture_tests::captured_at();
        let mut f = facts::parse(BARE, t - 0.1, t + 0.1).unwrap();
        edit(&mut f);
        f
    }

    fn run_on(cp: Facts, w: Facts, ignore: &[&str]) -> Vec<(String, &'static str, Severity)> {
        let c = cluster("");
        let facts = BTreeMap::from([("cp1".to_string(), cp), ("w1".to_string(), w)]);
        let ignore: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
        run(
            &c,
            &facts,
            &ignore,
            &["amd64".to_string(), "arm64".to_string()],
        )
        .into_iter()
        .map(|f| (f.host, f.check, f.severity))
        .collect()
    }

    fn checks(v: &[(String, &'static str, Severity)], host: &str) -> Vec<&'static str> {
        v.iter()
            .filter(|(h, _, _)| h == host)
            .map(|(_, c, _)| *c)
            .collect()
    }

    #[test]
    fn a_bare_harness_host_passes_apart_from_what_apply_fixes() {
        let v = run_on(
            facts_with(|_| {}),
            facts_with(|f| {
                f.hostname = "node2".into();
                f.machine_id = "other".into();
            }),
            &[],
        );
        assert!(v.iter().all(|(_, _, s)| *s == Severity::Warning), "{v:?}");
        assert_eq!(checks(&v, "cp1"), vec!["IPForward", "CgroupV1"]);
    }

    #[test]
    fn each_rule_fires() {
        let cp = facts_with(|f| {
            f.os_id = "arch".into();
            f.arch = "riscv64".into();
            f.init = "runit".into();
            f.swap_mib = 2048;
            f.cpus = 1;
            f.memory_mib = 1024;
            f.clock_offset_ms = -45_000;
            f.listening_ports.extend([6443, 2379]);
            f.kernel_features.overlay = crate::facts::Feature::Missing;
            f.kernel_features.br_netfilter = crate::facts::Feature::Missing;
        });
        let w = facts_with(|f| {
            f.os_version = "10".into();
            f.product_uuid = Some("u".into());
            f.membership
                .marker
                .insert("cluster".into(), "staging".into());
        });
        let v = run_on(cp.clone(), w, &[]);
        assert_eq!(
            checks(&v, "cp1"),
            vec![
                "OS",
                "Arch",
                "InitSystem",
                "NumCPU",
                "Memory",
                "ClockSkew",
                "Ports",
                "KernelOverlay",
                "KernelBridgeNetfilter",
                "DuplicateMachineID",
                "Swap",
                "IPForward",
                "CgroupV1",
                "DuplicateHostname"
            ]
        );
        assert_eq!(
            checks(&v, "w1"),
            vec![
                "OS",
                "ForeignCluster",
                "DuplicateMachineID",
                "IPForward",
                "CgroupV1",
                "DuplicateHostname"
            ]
        );
        // ignoring by name, case-insensitively
        let v = run_on(
            cp.clone(),
            facts_with(|f| f.machine_id = "x".into()),
            &["os", "Arch", "swap"],
        );
        assert!(!checks(&v, "cp1").contains(&"OS") && !checks(&v, "cp1").contains(&"Swap"));
        assert!(run_on(cp, facts_with(|_| {}), &["all"]).is_empty());
    }

    #[test]
    fn members_and_versions() {
        // a member of this cluster: its ports are ours, no ForeignCluster
        let member = |ca: &str| {
            facts_with(move |f| {
                f.listening_ports.extend([6443, 10250]);
                f.membership.static_pods.push("kube-apiserver".into());
                f.membership.marker.insert("cluster".into(), "prod".into());
                f.membership.ca_sha256 = Some(ca.repeat(64));
            })
        };
        let w = facts_with(|f| {
            f.machine_id = "w".into();
            f.hostname = "w1".into();
            f.membership.kubeconfigs.push("kubelet.conf".into());
            f.membership.marker.insert("cluster".into(), "prod".into());
            f.membership.ca_sha256 = Some("b".repeat(64));
        });
        let v = run_on(member("a"), w.clone(), &["IPForward", "CgroupV1"]);
        assert_eq!(checks(&v, "cp1"), Vec::<&str>::new(), "{v:?}");
        assert_eq!(
            checks(&v, "w1"),
            vec!["ForeignCluster"],
            "another CA: another cluster"
        );
        // kubeadm-installed, without kubeforge's marker
        let foreign = facts_with(|f| f.membership.kubeconfigs.push("kubelet.conf".into()));
        let v = run_on(
            member("a"),
            foreign,
            &[
                "IPForward",
                "CgroupV1",
                "DuplicateHostname",
                "DuplicateMachineID",
            ],
        );
        assert_eq!(checks(&v, "w1"), vec!["ForeignCluster"]);
        assert!(
            unknown_names(&["OS".into(), "nope".into(), "ALL".into()]) == vec!["nope".to_string()]
        );
        assert!(
            version_at_least("22.04", "20.04")
                && !version_at_least("11", "12")
                && version_at_least("12", "11")
        );
    }

    fn packages_of(v: &[Finding], host: &str) -> Vec<(Severity, String)> {
        v.iter()
            .filter(|f| f.check == "Packages" && f.host == host)
            .map(|f| (f.severity, f.message.clone()))
            .collect()
    }

    fn run_packages(cp: Facts, w: Facts, ignore: &[&str]) -> Vec<Finding> {
        let c = cluster("");
        let facts = BTreeMap::from([("cp1".to_string(), cp), ("w1".to_string(), w)]);
        let ignore: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
        run(&c, &facts, &ignore, &["amd64".to_string()])
    }

    /// A host as the probe sees it when `tools` are missing and apt answered `checks`.
    fn lacking(tools: &[&str], checks: &[(&str, Installable)]) -> Facts {
        facts_with(|f| {
            for t in tools {
                f.tools.remove(*t);
            }
            f.package_manager = Some("apt-get".into());
            f.package_checks = checks
                .iter()
                .map(|(t, i)| (t.to_string(), i.clone()))
                .collect();
        })
    }

    #[test]
    fn packages_the_package_manager_cannot_install_block_apply_each_named() {
        let no = |why: &str| Installable::No(why.into());
        let w = lacking(
            &["iptables"],
            &[
                ("haproxy", no("E: Unable to locate package haproxy")),
                (
                    "iptables",
                    no("E: Package 'iptables' has no installation candidate"),
                ),
            ],
        );
        let cp = lacking(
            &["iptables"],
            &[
                ("haproxy", no("E: Unable to locate package haproxy")),
                (
                    "iptables",
                    no("E: Package 'iptables' has no installation candidate"),
                ),
            ],
        );
        let v = run_packages(cp, w, &[]);
        assert_eq!(
            packages_of(&v, "w1"),
            vec![(
                Severity::Error,
                "missing OS packages that apt-get cannot install: iptables (E: Package 'iptables' has no installation candidate), haproxy (E: Unable to locate package haproxy); make them installable from the site's repository or mirror that apt-get uses (`apt-get install iptables haproxy`), or preinstall them in the host's image".to_string()
            )]
        );
        // a control plane needs no haproxy (the local load balancer runs on workers)
        let cp = packages_of(&v, "cp1");
        assert_eq!(cp.len(), 1, "{cp:?}");
        assert!(
            cp[0].1.starts_with("missing OS package that apt-get cannot install: iptables (E: Package 'iptables' has no installation candidate); make it installable")
                && !cp[0].1.contains("haproxy"),
            "{cp:?}"
        );
        // ignorable by name, like every check
        let again = lacking(&["iptables"], &[("iptables", no("E: x"))]);
        assert!(packages_of(&run_packages(again.clone(), again, &["packages"]), "cp1").is_empty());
        // a host without a package manager
        let mut bare = lacking(&[], &[("haproxy", no("the host has no package manager"))]);
        bare.package_manager = None;
        let v = run_packages(facts_with(|_| {}), bare, &[]);
        assert_eq!(
            packages_of(&v, "w1"),
            vec![(
                Severity::Error,
                "missing OS package haproxy, and the host has no package manager (apt-get, dnf, yum, zypper) to install it; preinstall it in the host's image".to_string()
            )]
        );
    }

    #[test]
    fn packages_are_silent_when_present_or_installable_and_warn_when_unknown() {
        // present: iptables in the capture, haproxy added
        let all = facts_with(|f| {
            f.tools.insert("haproxy".into());
            f.package_manager = Some("apt-get".into());
        });
        let v = run_packages(all.clone(), all, &[]);
        assert!(v.iter().all(|f| f.check != "Packages"), "{v:?}");
        // missing, and apt can install them
        let yes = lacking(
            &["iptables"],
            &[
                ("haproxy", Installable::Yes),
                ("iptables", Installable::Yes),
            ],
        );
        let v = run_packages(yes.clone(), yes, &[]);
        assert!(v.iter().all(|f| f.check != "Packages"), "{v:?}");
        // missing, and apt cannot tell before its first update: a warning, not a block
        let unsure = lacking(
            &[],
            &[(
                "haproxy",
                Installable::Unknown(
                    "apt has no package lists yet (apt-get update has not run)".into(),
                ),
            )],
        );
        let v = run_packages(facts_with(|_| {}), unsure, &[]);
        let w = packages_of(&v, "w1");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, Severity::Warning);
        assert!(
            w[0].1.contains("haproxy (apt has no package lists yet")
                && w[0].1.contains("preinstall haproxy"),
            "{w:?}"
        );
    }

    #[test]
    fn cgroup_v1_blocks_from_1_35() {
        let mut c = cluster("");
        c.version = semver::Version::new(1, 35, 1);
        let facts = BTreeMap::from([("cp1".to_string(), facts_with(|_| {}))]);
        let v = run(&c, &facts, &[], &["amd64".to_string()]);
        assert!(
            v.iter()
                .any(|f| f.check == "CgroupV1" && f.severity == Severity::Error)
        );
    }
}
