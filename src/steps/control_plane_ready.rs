//! Whether a control plane that was just changed (certificates renewed, upgraded) serves again
//! by itself: its own API server's /readyz at its own address, not the endpoint admin.conf
//! names (an external or Octavia load balancer answers while another control plane serves),
//! and its own etcd member's /health (which needs a leader, so quorum with this member in it).
//! Only then may the next control plane be restarted.

use crate::cluster_state::kubectl;
use crate::ssh::Session;
use std::time::Duration;

/// `https://ADDRESS:6443` (IPv6 in brackets).
pub fn own_server(address: &str) -> String {
    if address.contains(':') {
        format!("https://[{address}]:{}", crate::desired::API_PORT)
    } else {
        format!("https://{address}:{}", crate::desired::API_PORT)
    }
}

/// The address a control plane's API server advertises, read from its kubeadm manifest
/// (`--advertise-address=`): for a host the inventory gives by name, when no facts were read.
pub async fn advertised_address(s: &Session) -> Result<String, String> {
    let out = s
        .exec(
            "sed -n 's/^ *- --advertise-address=//p' /etc/kubernetes/manifests/kube-apiserver.yaml",
        )
        .await
        .map_err(|e| e.to_string())?;
    let text = out.stdout();
    let addr = text.trim();
    match addr.parse::<std::net::Ipv4Addr>() {
        Ok(ip) if out.success() => Ok(ip.to_string()),
        _ => Err(format!(
            "{}: cannot read its API server's advertise address from /etc/kubernetes/manifests/kube-apiserver.yaml",
            s.name()
        )),
    }
}

/// kubectl with admin.conf's credentials and CA, but to this control plane's own API server.
pub fn own_readyz_command(address: &str) -> String {
    kubectl(&format!(
        "--server {} get --raw /readyz --request-timeout=5s",
        own_server(address)
    ))
}

/// What is not ready yet on the control plane at `address` (None: both its API server and its
/// etcd member are).
pub async fn not_ready(s: &Session, address: &str) -> Option<String> {
    match s.exec(&own_readyz_command(address)).await {
        Ok(o) if o.success() && o.stdout().trim() == "ok" => {}
        Ok(o) => {
            let why = format!("{}{}", o.stdout().trim(), o.stderr().trim());
            let why = why.lines().last().unwrap_or_default().to_string();
            return Some(format!(
                "its API server {} does not answer /readyz ({why})",
                own_server(address)
            ));
        }
        Err(e) => return Some(e.to_string()),
    }
    match crate::etcd::Etcd::connect(s).await {
        Ok(etcd) if etcd.healthy().await => None,
        Ok(_) => Some("its etcd member does not report itself healthy (/health)".into()),
        Err(e) => Some(format!("its etcd member: {e}")),
    }
}

/// Waits until the control plane at `address` serves by itself; the error says what is not ready.
pub async fn wait(s: &Session, address: &str, timeout: Duration) -> Result<(), String> {
    use crate::wait::{Poll, poll_until};
    poll_until(
        timeout,
        Duration::from_secs(1),
        &format!("the control plane at {address} to serve by itself"),
        || async {
            match not_ready(s, address).await {
                None => Poll::Ready(()),
                Some(why) => Poll::Pending(why),
            }
        },
    )
    .await
    .map_err(|e: crate::wait::WaitError<String>| e.into_error(|t| t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_the_control_plane_itself_not_the_endpoint() {
        assert_eq!(
            own_readyz_command("10.0.0.12"),
            "kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://10.0.0.12:6443 get --raw /readyz --request-timeout=5s"
        );
        assert_eq!(own_server("fd00::12"), "https://[fd00::12]:6443");
    }
}
