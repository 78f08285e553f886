//! os-prep: the marker naming the cluster, swap off for good, the hostname, the OS packages
//! Kubernetes needs (conntrack, socat, iptables; haproxy on workers with a local load
//! balancer), sysctls and module-load configuration.

use crate::desired::{Followup, HostDesired};
use crate::engine::ops::{WriteFile, file_actions, followup_action};
use crate::engine::{Action, PlanCx, PlanError, Schedule, Step, StepError};
use crate::facts::Facts;
use crate::model::{Cluster, Host};
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
    let missing: Vec<&'static str> = want
        .packages
        .iter()
        .copied()
        .filter(|p| !f.has_tool(p))
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

/// Package names per package manager family.
fn package_name(tool: &str, family: &str) -> &'static str {
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
