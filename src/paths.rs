//! The paths kubeforge reads and writes on a host, in one place: the desired state writes them,
//! the facts probe reads them, the reset script removes them.

pub const MARKER: &str = "/etc/kubeforge/cluster";
pub const INSTALLED_DIR: &str = "/etc/kubeforge/installed";
pub const STAGING_DIR: &str = "/var/cache/kubeforge";
pub const CRI_SOCKET: &str = "unix:///run/containerd/containerd.sock";
pub const CNI_MANIFEST: &str = "/etc/kubeforge/cni.yaml";
/// Written once `kubeadm init` or a control-plane join completed on the host: kubeadm's files
/// without it on the first control plane mean an interrupted init, not a cluster.
pub const INITIALIZED: &str = "/etc/kubeforge/initialized";
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";

/// The API server's port on every control plane.
pub const API_PORT: u16 = 6443;

/// The OpenStack cloud provider's manifests as last applied (and a digest of its Secret).
pub const CLOUD_PROVIDER_MANIFEST: &str = "/etc/kubeforge/cloud-provider.yaml";
