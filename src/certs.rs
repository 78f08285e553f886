//! Certificate expiry of the control planes (`kubeadm certs check-expiration`), and
//! `kubeforge certs renew`: on every control plane, one at a time, `kubeadm certs renew all`,
//! then its control-plane static pods are restarted (out of the load balancers meanwhile).

use crate::ssh::Session;
use crate::ssh::session::Exec;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertExpiry {
    pub name: String,
    pub expires: String,
    /// Time left, as kubeadm computes it on the host.
    pub residual_seconds: u64,
}

/// `364d`, `9y`, `23h`, `45m`, `<invalid>` (expired: 0).
pub fn parse_residual(s: &str) -> Option<u64> {
    if s.starts_with('<') {
        return Some(0);
    }
    // split at a character boundary: the text comes from the host and may hold any character
    let mut chars = s.chars();
    let unit = chars.next_back()?;
    let n: u64 = chars.as_str().parse().ok()?;
    n.checked_mul(match unit {
        'y' => 365 * 86_400,
        'd' => 86_400,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => return None,
    })
}

/// Parses the first table of `kubeadm certs check-expiration` (the leaf certificates).
pub fn parse_check_expiration(out: &str) -> Vec<CertExpiry> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in out.lines() {
        if line.starts_with("CERTIFICATE ")
            && line.contains("RESIDUAL TIME")
            && !line.starts_with("CERTIFICATE AUTHORITY")
        {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if line.trim().is_empty() {
            break;
        }
        // NAME  Mon DD, YYYY HH:MM UTC  RESIDUAL  CA  EXTERNALLY-MANAGED
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 7 {
            continue;
        }
        if let Some(residual) = parse_residual(w[6]) {
            rows.push(CertExpiry {
                name: w[0].to_string(),
                expires: w[1..6].join(" "),
                residual_seconds: residual,
            });
        }
    }
    rows
}

/// The certificate expiry on a control plane.
pub async fn check(s: &Session) -> Result<Vec<CertExpiry>, crate::ssh::SshError> {
    let out = s.run("kubeadm certs check-expiration").await?;
    Ok(parse_check_expiration(&out))
}

/// The soonest expiry of a list, in whole days.
pub fn soonest_days(certs: &[CertExpiry]) -> Option<u64> {
    certs.iter().map(|c| c.residual_seconds / 86_400).min()
}

/// Renews the certificates of one control plane and restarts its static pods; returns once
/// its own API server (at `address`) and etcd member serve again.
pub async fn renew(s: &Session, address: &str) -> Result<(), crate::ssh::SshError> {
    s.run_with(
        "kubeadm certs renew all >/dev/null",
        Exec {
            display: Some("kubeadm certs renew all"),
            ..Exec::default()
        },
    )
    .await?;
    // the static pods read their certificates at start: move the manifests away until the
    // kubelet has stopped them, then back
    // manifests an interrupted earlier run left aside go back first
    let restart = "set -e\n\
        d=/etc/kubernetes/manifests.kubeforge-restart\n\
        if [ -d $d ]; then for f in $d/*.yaml; do [ -e \"$f\" ] && mv -n \"$f\" /etc/kubernetes/manifests/; done; rm -rf $d; fi\n\
        mkdir -p $d && mv /etc/kubernetes/manifests/*.yaml $d/\n\
        for i in $(seq 1 60); do\n\
          n=$(crictl --runtime-endpoint unix:///run/containerd/containerd.sock ps -q --name 'kube-apiserver|kube-controller-manager|kube-scheduler|etcd' 2>/dev/null | wc -l)\n\
          [ \"$n\" = 0 ] && break\n\
          sleep 1\n\
        done\n\
        mv $d/*.yaml /etc/kubernetes/manifests/ && rmdir $d";
    s.run_with(
        restart,
        Exec {
            display: Some("restart the control-plane static pods"),
            timeout: Some(Duration::from_secs(180)),
            ..Exec::default()
        },
    )
    .await?;
    // its own API server and etcd member, not the endpoint: through a load balancer another
    // control plane answers, and the next one would be restarted before this one is back
    crate::steps::control_plane_ready::wait(s, address, Duration::from_secs(300))
        .await
        .map_err(|m| crate::ssh::SshError::NotReady {
            host: s.name().to_string(),
            message: format!("the control plane did not come back after the renewal: {m}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as kubeadm prints it (the harness double follows upstream's layout).
    const OUT: &str = "[check-expiration] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...
[check-expiration] Use 'kubeadm init phase upload-config --config your-config.yaml' to re-upload it.

CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED
admin.conf                 Nov 22, 2027 01:24 UTC   364d            ca                      no
apiserver                  Nov 22, 2027 01:24 UTC   29d             ca                      no
etcd-server                Nov 22, 2027 01:24 UTC   <invalid>       etcd-ca                 no

CERTIFICATE AUTHORITY   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED
ca                      Nov 20, 2036 01:24 UTC   9y              no
";

    #[test]
    fn parses_kubeadms_table() {
        let c = parse_check_expiration(OUT);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].name, "admin.conf");
        assert_eq!(c[0].expires, "Nov 22, 2027 01:24 UTC");
        assert_eq!(c[0].residual_seconds, 364 * 86_400);
        assert_eq!(c[2].residual_seconds, 0);
        assert_eq!(soonest_days(&c), Some(0));
        assert_eq!(parse_residual("9y"), Some(9 * 365 * 86_400));
        assert_eq!(parse_residual("x"), None);
    }

    #[test]
    fn hostile_output_does_not_panic_the_parser() {
        // a multi-byte last character: slicing one byte off its end falls inside it
        assert_eq!(parse_residual("36é"), None);
        assert_eq!(parse_residual("日"), None);
        assert_eq!(parse_residual("é"), None);
        assert_eq!(parse_residual(""), None);
        assert_eq!(parse_residual("99999999999999999y"), None, "overflow");
        let out = "CERTIFICATE  EXPIRES  RESIDUAL TIME  CERTIFICATE AUTHORITY  EXTERNALLY MANAGED\n\
                   admin.conf   Nov 22, 2027 01:24 UTC   364дн   ca   no\n\
                   apiserver    Nov 22, 2027 01:24 UTC   29d   ca   no\n";
        let c = parse_check_expiration(out);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "apiserver");
    }
}
