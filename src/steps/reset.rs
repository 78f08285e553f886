//! reset: tears Kubernetes down on a host (kubeadm reset, the kubelet's and etcd's data, CNI
//! configuration and interfaces, iptables rules of kube-proxy and the CNI, the endpoint's
//! /etc/hosts block), leaving containerd and, unless asked, the binaries, so a later apply can
//! use the host again without uploading them.

use super::StepError;
use crate::ssh::Session;
use crate::ssh::session::Exec;
use std::time::Duration;

/// How much to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The leftovers of an interrupted join, before joining again: the host keeps its
    /// kubeforge marker and its endpoint mapping.
    Stale,
    /// The host leaves the cluster.
    Full { remove_binaries: bool },
}

pub fn script(scope: Scope) -> String {
    if scope == Scope::Stale {
        return "kubeadm reset -f >/dev/null 2>&1 || true\n\
                systemctl stop kubelet 2>/dev/null || true\n\
                rm -rf /etc/kubernetes /var/lib/kubelet /var/lib/etcd /etc/cni/net.d/* /etc/kubeforge/kubeadm.yaml /etc/kubeforge/initialized\n"
            .to_string();
    }
    let remove_binaries = matches!(
        scope,
        Scope::Full {
            remove_binaries: true
        }
    );
    let mut s = String::from(
        "kubeadm reset -f >/dev/null 2>&1 || true\n\
         systemctl stop kubelet 2>/dev/null || true\n\
         crictl --runtime-endpoint unix:///run/containerd/containerd.sock rmp -fa >/dev/null 2>&1 || true\n\
         rm -rf /etc/kubernetes /var/lib/kubelet /var/lib/etcd /var/lib/cni /run/flannel /etc/cni/net.d/* \\\n\
                /etc/kubeforge/cluster /etc/kubeforge/cni.yaml /etc/kubeforge/kubeadm.yaml /etc/kubeforge/initialized $HOME/.kube\n\
         for i in cni0 flannel.1 kube-ipvs0; do ip link del \"$i\" 2>/dev/null || true; done\n\
         if command -v iptables-save >/dev/null; then\n\
           for t in iptables ip6tables; do\n\
             command -v $t-save >/dev/null || continue\n\
             $t-save 2>/dev/null | grep -v -E 'KUBE-|CNI-|FLANNEL' | $t-restore 2>/dev/null || true\n\
           done\n\
         fi\n\
         command -v ipvsadm >/dev/null && ipvsadm --clear 2>/dev/null || true\n\
         if grep -q '^# BEGIN kubeforge' /etc/hosts; then t=$(mktemp); awk '/^# BEGIN kubeforge/{skip=1} !skip{print} /^# END kubeforge/{skip=0}' /etc/hosts > \"$t\" && cat \"$t\" > /etc/hosts; rm -f \"$t\"; fi\n",
    );
    if remove_binaries {
        s.push_str(
            "systemctl disable --now kubelet haproxy containerd >/dev/null 2>&1 || true\n\
             rm -f /usr/local/bin/kubeadm /usr/local/bin/kubelet /usr/local/bin/kubectl /usr/local/bin/crictl \\\n\
                   /usr/local/bin/containerd* /usr/local/bin/ctr /usr/local/sbin/runc \\\n\
                   /etc/systemd/system/kubelet.service /etc/systemd/system/containerd.service /etc/crictl.yaml\n\
             rm -rf /etc/systemd/system/kubelet.service.d /opt/cni/bin /etc/containerd /etc/kubeforge /var/cache/kubeforge\n\
             systemctl daemon-reload\n",
        );
    }
    s
}

/// Resets one host.
pub async fn run(s: &Session, scope: Scope) -> Result<(), StepError> {
    s.run_with(
        &script(scope),
        Exec {
            display: Some("reset Kubernetes on the host"),
            timeout: Some(Duration::from_secs(300)),
            ..Exec::default()
        },
    )
    .await?;
    Ok(())
}
