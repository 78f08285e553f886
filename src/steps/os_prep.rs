//! os-prep: the marker naming the cluster, swap off for good, the hostname, the OS packages
//! a node needs (iptables; haproxy on workers with a local load balancer), sysctls and
//! module-load configuration.
//!
//! conntrack and socat are no longer installed: no part of Kubernetes 1.32 and later uses them
//! on the host (docs/os-packages.md says why, with sources). Hosts that have them keep them.

use crate::desired::{Followup, HostDesired};
use crate::engine::ops::{WriteFile, file_actions, followup_action};
use crate::engine::{Action, PlanCx, PlanError, Schedule, Step, StepError};
use crate::facts::Facts;
use crate::model::{Cluster, Host, Role};
use crate::ssh::Session;
use crate::util::shell_quote;

pub struct OsPrep;

impl Step for OsPrep {
    fn name(&self) -> &'static str {
        "os-prep"
    }
    fn timing(&self) -> &'static str {
        super::PREPARE_TIMING
    }
    fn schedule(&self, _: &Cluster) -> Schedule {
        super::PREPARE
    }
    fn plan(&self, cx: &PlanCx, _: &[Action]) -> Result<Vec<Action>, PlanError> {
        Ok(super::each_host(cx, plan_host))
    }
}

#[derive(Debug, Clone)]
struct SwapOff;
crate::run_op!(SwapOff, |_op, ctx, host| swap_off(ctx.session(host)?).await);

#[derive(Debug, Clone)]
struct SetHostname(String);
crate::run_op!(SetHostname, |op, ctx, host| set_hostname(
    ctx.session(host)?,
    &op.0
)
.await);

#[derive(Debug, Clone)]
struct InstallPackages(Vec<&'static str>);
crate::run_op!(InstallPackages, |op, ctx, host| install_packages(
    ctx.session(host)?,
    &op.0
)
.await);

/// The tools os-prep installs from the host's package manager when a host needs them and
/// lacks them; the facts probe asks the package manager about exactly these
/// (`for t in iptables haproxy` in its `packages` section).
pub const PACKAGE_TOOLS: &[&str] = &["iptables", "haproxy"];

/// The OS packages (by the tool they provide) `h` needs: iptables everywhere (kubeadm 1.32's
/// preflight requires it, the kubelet keeps its chains with it, the CNI's portmap plugin and
/// `reset` use it), haproxy on workers when the API is reached through the node-local load
/// balancer. What the preflight `Packages` check asks for.
pub fn needed_packages(c: &Cluster, h: &Host) -> Vec<&'static str> {
    let mut p = vec!["iptables"];
    if h.role == Role::Worker && crate::desired::api_endpoint(c).local {
        p.push("haproxy");
    }
    p
}

/// The family of package names a package manager uses.
pub fn package_family(manager: &str) -> &'static str {
    match manager {
        "apt-get" => "deb",
        _ => "rpm",
    }
}

fn plan_host(h: &Host, f: &Facts, want: &HostDesired) -> Vec<Action> {
    let step = &OsPrep;
    let mut out = Vec::new();
    let (mut writes, followups) = file_actions(h, f, want, step);
    // the marker first: it claims the host for this cluster before anything else changes
    if let Some(i) = writes.iter().position(|a| {
        a.op::<WriteFile>()
            .is_some_and(|m| m.0.path == crate::paths::MARKER)
    }) {
        out.push(writes.remove(i));
    }
    if f.swap_mib > 0 || !f.fstab_swap.is_empty() {
        let what = if f.swap_mib > 0 {
            format!("turn off {} MiB of swap and keep it off", f.swap_mib)
        } else {
            format!("keep swap off at boot ({})", f.fstab_swap.join(", "))
        };
        out.push(Action::on(h, step, what, SwapOff));
    }
    if f.hostname != h.name {
        out.push(Action::on(
            h,
            step,
            format!("set the hostname to {} (was {})", h.name, f.hostname),
            SetHostname(h.name.clone()),
        ));
    }
    // what the desired state lists (PACKAGE_TOOLS: a test pins that they agree)
    let missing: Vec<&'static str> = want
        .packages
        .iter()
        .copied()
        .filter(|p| PACKAGE_TOOLS.contains(p) && !f.has_tool(p))
        .collect();
    if !missing.is_empty() {
        out.push(Action::on(
            h,
            step,
            format!("install OS packages {}", missing.join(", ")),
            InstallPackages(missing),
        ));
    }
    out.extend(writes);
    for fu in kernel_followups(f, followups) {
        out.push(followup_action(h, step, fu));
    }
    out
}

/// The module loads and sysctls to run: those a changed file asks for, and those the facts
/// show are still missing (a run that stopped after writing the files). Modules first: the
/// `net.bridge.*` sysctls exist only once br_netfilter is loaded.
fn kernel_followups(f: &Facts, mut followups: Vec<Followup>) -> Vec<Followup> {
    let k = &f.kernel_features;
    if k.bridge_nf_call_iptables.is_none() && !followups.contains(&Followup::Modules) {
        followups.push(Followup::Modules);
    }
    if (!k.ip_forward || k.bridge_nf_call_iptables != Some(true))
        && !followups.contains(&Followup::Sysctl)
    {
        followups.push(Followup::Sysctl);
    }
    followups.sort_by_key(|fu| match fu {
        Followup::Modules => 0,
        Followup::Sysctl => 1,
        _ => 2,
    });
    followups
}

pub async fn swap_off(s: &Session) -> Result<(), StepError> {
    s.run(
        "swapoff -a\n\
         sed -i.kubeforge-bak -E 's@^([^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$@# disabled by kubeforge: \\1@' /etc/fstab\n\
         for u in $(systemctl list-units --type=swap --all --plain --no-legend 2>/dev/null | awk '{print $1}'); do systemctl mask \"$u\" >/dev/null 2>&1 || true; done\n\
         [ \"$(tail -n +2 /proc/swaps | wc -l)\" = 0 ] || { echo 'swap is still on:' >&2; cat /proc/swaps >&2; exit 1; }",
    )
    .await?;
    Ok(())
}

pub async fn set_hostname(s: &Session, name: &str) -> Result<(), StepError> {
    let n = shell_quote(name);
    s.run(&format!(
        "hostnamectl set-hostname {n} 2>/dev/null || {{ echo {n} > /etc/hostname && hostname {n}; }}\n\
         grep -qE \"^127\\.0\\.1\\.1[[:space:]]\" /etc/hosts && sed -i -E \"s/^127\\.0\\.1\\.1[[:space:]].*/127.0.1.1\\t{name}/\" /etc/hosts || printf '127.0.1.1\\t%s\\n' {n} >> /etc/hosts"
    ))
    .await?;
    Ok(())
}

/// The package that provides `tool` in a package manager family (`deb` or `rpm`, see
/// [`package_family`]).
pub fn package_name(tool: &str, family: &str) -> &'static str {
    match (tool, family) {
        ("conntrack", "rpm") => "conntrack-tools",
        ("conntrack", _) => "conntrack",
        ("socat", _) => "socat",
        ("iptables", _) => "iptables",
        ("haproxy", _) => "haproxy",
        _ => "",
    }
}

pub async fn install_packages(s: &Session, tools: &[&'static str]) -> Result<(), StepError> {
    let deb: Vec<&str> = tools.iter().map(|t| package_name(t, "deb")).collect();
    let rpm: Vec<&str> = tools.iter().map(|t| package_name(t, "rpm")).collect();
    let script = format!(
        "if command -v apt-get >/dev/null; then\n\
           export DEBIAN_FRONTEND=noninteractive\n\
           apt-get install -y -q --no-install-recommends {deb} >/dev/null 2>&1 || {{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends {deb}; }}\n\
         elif command -v dnf >/dev/null; then dnf install -y -q {rpm}\n\
         elif command -v yum >/dev/null; then yum install -y -q {rpm}\n\
         elif command -v zypper >/dev/null; then zypper -n -q install {rpm}\n\
         else echo 'no supported package manager (apt-get, dnf, yum, zypper)' >&2; exit 1; fi",
        deb = deb.join(" "),
        rpm = rpm.join(" ")
    );
    s.run(&script).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BARE: &str = include_str!("../../tests/fixtures/facts/harness-bare.txt");

    fn load(control_plane: &str) -> (Cluster, crate::release::ReleaseManifest) {
        let text = format!(
            "apiVersion: kubeforge.io/v1alpha1\nkind: Cluster\nmetadata: {{name: prod}}\nspec:\n  kubernetes: {{version: 1.33.5}}\n{control_plane}  hosts:\n    - {{name: cp1, address: 10.0.0.11, role: control-plane}}\n    - {{name: w1, address: 10.0.0.21, role: worker}}\n"
        );
        let l = crate::inventory::load_str(Path::new("t.yaml"), &text, Path::new("/"), &|_| None)
            .unwrap_or_else(|e| panic!("{}", e.render(false)));
        let m = l.catalog.get(&l.cluster.version).unwrap().clone();
        (l.cluster, m)
    }

    fn want(c: &Cluster, m: &crate::release::ReleaseManifest, h: &Host) -> HostDesired {
        let ips = crate::desired::NodeIps::from_inventory(c);
        crate::desired::for_host(c, m, h, "amd64", "127.0.0.1", &ips).unwrap()
    }

    /// What preflight checks for is what os-prep installs: the desired state's packages that
    /// os-prep installs, for either role, with the local load balancer and without.
    #[test]
    fn the_preflight_asks_for_what_os_prep_installs() {
        for cp in [
            "",
            "  controlPlane: {loadBalancer: external, endpoint: {host: api.example.com, port: 6443}}\n",
        ] {
            let (c, m) = load(cp);
            for h in &c.hosts {
                let installs: Vec<&str> = want(&c, &m, h)
                    .packages
                    .into_iter()
                    .filter(|p| PACKAGE_TOOLS.contains(p))
                    .collect();
                assert_eq!(needed_packages(&c, h), installs, "{} {cp:?}", h.name);
            }
        }
        let (c, _) = load("");
        assert_eq!(
            needed_packages(&c, &c.hosts[1]),
            vec!["iptables", "haproxy"]
        );
        assert_eq!(needed_packages(&c, &c.hosts[0]), vec!["iptables"]);
    }

    /// The probe asks the package manager about exactly PACKAGE_TOOLS, by the tool's name:
    /// right only while every package is named as its tool in every family.
    #[test]
    fn the_probe_asks_about_the_tools_os_prep_installs_by_their_package_names() {
        let probe = crate::facts::script(&[]);
        assert!(
            probe.contains(&format!("\nfor t in {}; do\n", PACKAGE_TOOLS.join(" "))),
            "the probe's packages section asks about other tools than {PACKAGE_TOOLS:?}"
        );
        for t in PACKAGE_TOOLS {
            for family in [package_family("apt-get"), package_family("dnf")] {
                assert_eq!(package_name(t, family), *t, "{t} in {family}");
            }
        }
        assert_eq!(
            package_name("conntrack", package_family("zypper")),
            "conntrack-tools"
        );
    }

    /// A bare host gets iptables and (a worker behind the local load balancer) haproxy, never
    /// conntrack or socat, which the desired state may still list; a host that has them keeps
    /// them (os-prep removes no package).
    #[test]
    fn os_prep_installs_only_the_packages_a_node_needs() {
        let (c, m) = load("");
        let f = crate::facts::parse(BARE, 0.0, 0.0).unwrap();
        let mut bare = f.clone();
        for t in ["conntrack", "socat", "iptables", "haproxy"] {
            bare.tools.remove(t);
        }
        let installs = |h: &Host, f: &Facts| -> Vec<Vec<&'static str>> {
            plan_host(h, f, &want(&c, &m, h))
                .iter()
                .filter_map(|a| a.op::<InstallPackages>().map(|p| p.0.clone()))
                .collect()
        };
        assert_eq!(installs(&c.hosts[0], &bare), vec![vec!["iptables"]]);
        assert_eq!(
            installs(&c.hosts[1], &bare),
            vec![vec!["iptables", "haproxy"]]
        );
        // the capture has conntrack, socat and iptables: a worker only lacks haproxy
        assert_eq!(installs(&c.hosts[1], &f), vec![vec!["haproxy"]]);
        assert_eq!(installs(&c.hosts[0], &f), Vec::<Vec<&str>>::new());
    }
}
