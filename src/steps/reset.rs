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

/// What every reset removes: the leftovers of kubeadm, the kubelet and etcd (`@NAME@` are the
/// paths of [`crate::paths`]).
const STALE: &str = "kubeadm reset -f >/dev/null 2>&1 || true
systemctl stop kubelet 2>/dev/null || true
rm -rf @KUBERNETES_DIR@ @KUBELET_DIR@ @ETCD_DATA_DIR@ @CNI_CONF_DIR@/* @KUBEADM_CONFIG@ @INITIALIZED@
";

/// A host leaving the cluster: also its pods, CNI state and interfaces, kubeforge's marker,
/// the rules of kube-proxy and the CNI, and the endpoint's block in the hosts file.
const FULL: &str = "kubeadm reset -f >/dev/null 2>&1 || true
systemctl stop kubelet 2>/dev/null || true
crictl --runtime-endpoint @CRI_SOCKET@ rmp -fa >/dev/null 2>&1 || true
rm -rf @KUBERNETES_DIR@ @KUBELET_DIR@ @ETCD_DATA_DIR@ @CNI_STATE_DIR@ @FLANNEL_RUN_DIR@ @CNI_CONF_DIR@/* \\
       @MARKER@ @CNI_MANIFEST@ @KUBEADM_CONFIG@ @INITIALIZED@ $HOME/.kube
for i in cni0 flannel.1 kube-ipvs0; do ip link del \"$i\" 2>/dev/null || true; done
if command -v iptables-save >/dev/null; then
  for t in iptables ip6tables; do
    command -v $t-save >/dev/null || continue
    $t-save 2>/dev/null | grep -v -E 'KUBE-|CNI-|FLANNEL' | $t-restore 2>/dev/null || true
  done
fi
command -v ipvsadm >/dev/null && ipvsadm --clear 2>/dev/null || true
if grep -q '^@HOSTS_BLOCK_BEGIN@' @HOSTS_FILE@; then t=$(mktemp); awk '/^@HOSTS_BLOCK_BEGIN@/{skip=1} !skip{print} /^@HOSTS_BLOCK_END@/{skip=0}' @HOSTS_FILE@ > \"$t\" && cat \"$t\" > @HOSTS_FILE@; rm -f \"$t\"; fi
";

/// With `remove_binaries`: the binaries, units and configuration kubeforge installed, and
/// its own directories.
const BINARIES: &str = "systemctl disable --now kubelet haproxy containerd >/dev/null 2>&1 || true
rm -f @BIN_DIR@/kubeadm @BIN_DIR@/kubelet @BIN_DIR@/kubectl @BIN_DIR@/crictl \\
      @BIN_DIR@/containerd* @BIN_DIR@/ctr @SBIN_DIR@/runc \\
      @KUBELET_UNIT@ @CONTAINERD_UNIT@ @CRICTL_CONFIG@
rm -rf @KUBELET_DROPIN_DIR@ @CNI_BIN_DIR@ @CONTAINERD_DIR@ @KUBEFORGE_DIR@ @STAGING_DIR@
systemctl daemon-reload
";

pub fn script(scope: Scope) -> String {
    match scope {
        Scope::Stale => crate::paths::fill(STALE),
        Scope::Full { remove_binaries } => {
            let mut s = crate::paths::fill(FULL);
            if remove_binaries {
                s.push_str(&crate::paths::fill(BINARIES));
            }
            s
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths;

    #[test]
    fn the_reset_removes_the_paths_of_paths_rs_and_types_none_itself() {
        for t in [STALE, FULL, BINARIES] {
            assert_eq!(
                paths::literals_in(t),
                Vec::<&str>::new(),
                "paths typed in the reset script instead of @NAME@:\n{t}"
            );
        }
        let stale = script(Scope::Stale);
        let full = script(Scope::Full {
            remove_binaries: false,
        });
        let all = script(Scope::Full {
            remove_binaries: true,
        });
        for s in [&stale, &full, &all] {
            assert_eq!(paths::placeholders(s), Vec::<&str>::new(), "unfilled:\n{s}");
            crate::facts::tests::assert_parses_as_shell(s);
        }
        let removed = |t: &'static str| paths::placeholders(t);
        for must in [
            "KUBERNETES_DIR",
            "KUBELET_DIR",
            "ETCD_DATA_DIR",
            "CNI_CONF_DIR",
            "KUBEADM_CONFIG",
            "INITIALIZED",
        ] {
            assert!(removed(STALE).contains(&must), "stale: {must}");
            assert!(removed(FULL).contains(&must), "full: {must}");
        }
        // a stale join keeps the host's marker and its endpoint mapping
        assert!(!stale.contains(paths::MARKER));
        assert!(!stale.contains(paths::HOSTS_FILE));
        for must in [
            "MARKER",
            "CNI_MANIFEST",
            "CNI_STATE_DIR",
            "FLANNEL_RUN_DIR",
            "CRI_SOCKET",
            "HOSTS_FILE",
            "HOSTS_BLOCK_BEGIN",
            "HOSTS_BLOCK_END",
        ] {
            assert!(removed(FULL).contains(&must), "full: {must}");
        }
        // the binaries stay unless asked
        assert!(!full.contains(paths::BIN_DIR));
        assert!(!full.contains(paths::STAGING_DIR));
        for must in [
            "BIN_DIR",
            "SBIN_DIR",
            "KUBELET_UNIT",
            "KUBELET_DROPIN_DIR",
            "CONTAINERD_UNIT",
            "CONTAINERD_DIR",
            "CRICTL_CONFIG",
            "CNI_BIN_DIR",
            "KUBEFORGE_DIR",
            "STAGING_DIR",
        ] {
            assert!(removed(BINARIES).contains(&must), "binaries: {must}");
        }
        assert!(all.starts_with(&full));
        assert!(all.contains("rm -f /usr/local/bin/kubeadm /usr/local/bin/kubelet"));
        assert!(all.contains("/usr/local/sbin/runc"));
    }
}
