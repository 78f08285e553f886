//! The paths kubeforge reads and writes on a host, in one place: the desired state writes them,
//! the facts probe reads them, the reset script removes them. Each path is written once here;
//! the remote scripts name them as `@NAME@` placeholders, filled by [`fill`].

// The directories other paths are built from (literals, for `concat!`).
macro_rules! etc_kubeforge {
    () => {
        "/etc/kubeforge"
    };
}
macro_rules! etc_kubernetes {
    () => {
        "/etc/kubernetes"
    };
}
macro_rules! systemd_dir {
    () => {
        "/etc/systemd/system"
    };
}
macro_rules! etc_containerd {
    () => {
        "/etc/containerd"
    };
}

/// Defines the constants and [`ALL`], so that no constant is missing from the placeholders.
macro_rules! paths {
    ($($(#[$m:meta])* $name:ident = $value:expr;)*) => {
        $($(#[$m])* pub const $name: &str = $value;)*
        /// Every constant of this module by name: what a script's `@NAME@` stands for.
        pub const ALL: &[(&str, &str)] = &[$((stringify!($name), $name)),*];
    };
}

paths! {
    // kubeforge's own files
    KUBEFORGE_DIR = etc_kubeforge!();
    /// Which cluster the host belongs to (kubeforge's ownership marker).
    MARKER = concat!(etc_kubeforge!(), "/cluster");
    /// One file per installed component: `<sha256> <version>`.
    INSTALLED_DIR = concat!(etc_kubeforge!(), "/installed");
    STAGING_DIR = "/var/cache/kubeforge";
    CNI_MANIFEST = concat!(etc_kubeforge!(), "/cni.yaml");
    /// The kubeadm configuration of the last init or join.
    KUBEADM_CONFIG = concat!(etc_kubeforge!(), "/kubeadm.yaml");
    CLOUD_PROVIDER_MANIFEST = concat!(etc_kubeforge!(), "/cloud-provider.yaml");
    /// Written once `kubeadm init` or a control-plane join completed on the host: kubeadm's
    /// files without it on the first control plane mean an interrupted init, not a cluster.
    INITIALIZED = concat!(etc_kubeforge!(), "/initialized");

    // kubeadm's
    KUBERNETES_DIR = etc_kubernetes!();
    /// The kubeconfigs kubeadm writes in KUBERNETES_DIR (file names, space-separated).
    KUBECONFIG_NAMES = "admin.conf super-admin.conf kubelet.conf bootstrap-kubelet.conf controller-manager.conf scheduler.conf";
    ADMIN_KUBECONFIG = concat!(etc_kubernetes!(), "/admin.conf");
    KUBELET_KUBECONFIG = concat!(etc_kubernetes!(), "/kubelet.conf");
    /// The static pods' manifests.
    MANIFESTS_DIR = concat!(etc_kubernetes!(), "/manifests");
    PKI_DIR = concat!(etc_kubernetes!(), "/pki");
    /// The cluster CA's certificate.
    CA_CERT = concat!(etc_kubernetes!(), "/pki/ca.crt");
    ETCD_DATA_DIR = "/var/lib/etcd";

    // the kubelet's
    KUBELET_DIR = "/var/lib/kubelet";
    KUBELET_UNIT = concat!(systemd_dir!(), "/kubelet.service");
    KUBELET_DROPIN_DIR = concat!(systemd_dir!(), "/kubelet.service.d");
    KUBELET_DROPIN = concat!(systemd_dir!(), "/kubelet.service.d/10-kubeadm.conf");

    // containerd's
    CONTAINERD_DIR = etc_containerd!();
    CONTAINERD_CONFIG = concat!(etc_containerd!(), "/config.toml");
    /// Registry mirrors: `<registry>/hosts.toml` below it.
    CONTAINERD_CERTS_DIR = concat!(etc_containerd!(), "/certs.d");
    CONTAINERD_UNIT = concat!(systemd_dir!(), "/containerd.service");
    CONTAINERD_SOCKET = "/run/containerd/containerd.sock";
    CRI_SOCKET = concat!("unix://", "/run/containerd/containerd.sock");
    /// Where image archives wait for `ctr images import` (removed afterwards).
    IMAGE_IMPORT_DIR = "/var/lib/kubeforge/images";
    CRICTL_CONFIG = "/etc/crictl.yaml";

    // CNI
    CNI_CONF_DIR = "/etc/cni/net.d";
    CNI_BIN_DIR = "/opt/cni/bin";
    /// The CNI plugins' state (IP allocations).
    CNI_STATE_DIR = "/var/lib/cni";
    FLANNEL_RUN_DIR = "/run/flannel";

    // where binaries and units are installed
    BIN_DIR = "/usr/local/bin";
    /// runc's directory.
    SBIN_DIR = "/usr/local/sbin";
    SYSTEMD_DIR = systemd_dir!();

    // OS configuration kubeforge writes
    SYSCTL_CONF = "/etc/sysctl.d/99-kubernetes.conf";
    MODULES_CONF = "/etc/modules-load.d/kubernetes.conf";
    HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg";
    /// The hosts file, where kubeforge keeps one block (the API endpoint's name).
    HOSTS_FILE = "/etc/hosts";
    HOSTS_BLOCK_BEGIN = "# BEGIN kubeforge";
    HOSTS_BLOCK_END = "# END kubeforge";
}

/// The API server's port on every control plane.
pub const API_PORT: u16 = 6443;

/// The directory a component's binaries are installed in.
pub fn install_dir(component: &str) -> &'static str {
    match component {
        "runc" => SBIN_DIR,
        "cni-plugins" => CNI_BIN_DIR,
        _ => BIN_DIR,
    }
}

/// Replaces every `@NAME@` of a script by the constant NAME of this module. A name that is
/// not one stays as written (the unit tests of each script check that none is left).
pub fn fill(template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(i) = rest.find('@') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let n = name_len(after);
        if n > 0
            && after.as_bytes().get(n) == Some(&b'@')
            && let Some((_, v)) = ALL.iter().find(|(name, _)| *name == &after[..n])
        {
            out.push_str(v);
            rest = &after[n + 1..];
        } else {
            out.push('@');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn name_len(s: &str) -> usize {
    s.bytes()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        .count()
}

/// The `@NAME@` placeholders of a script, in order.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('@') {
        let after = &rest[i + 1..];
        let n = name_len(after);
        if n > 0 && after.as_bytes().get(n) == Some(&b'@') {
            out.push(&after[..n]);
            rest = &after[n + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// The constants whose value a script holds literally (what should be a placeholder).
pub fn literals_in(script: &str) -> Vec<&'static str> {
    ALL.iter()
        .filter(|(_, v)| script.contains(v))
        .map(|(n, _)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_other_at_signs_kept() {
        assert_eq!(
            fill("rm -f @MARKER@ @INITIALIZED@; printf '@@kf:%s' x@y @NOPE@ @"),
            "rm -f /etc/kubeforge/cluster /etc/kubeforge/initialized; printf '@@kf:%s' x@y @NOPE@ @"
        );
        assert_eq!(
            placeholders("a @MARKER@ @@kf: @NOPE@ @x@"),
            vec!["MARKER", "NOPE"]
        );
    }

    #[test]
    fn every_constant_is_named_once_and_paths_are_built_from_their_directories() {
        let mut names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for (name, v) in ALL {
            assert!(
                v.starts_with('/')
                    || v.starts_with("unix:///")
                    || v.starts_with('#')
                    || *name == "KUBECONFIG_NAMES",
                "{name} = {v}"
            );
        }
        for p in [ADMIN_KUBECONFIG, KUBELET_KUBECONFIG] {
            let name = p
                .strip_prefix(KUBERNETES_DIR)
                .unwrap()
                .trim_start_matches('/');
            assert!(KUBECONFIG_NAMES.split(' ').any(|n| n == name), "{p}");
        }
        assert!(CA_CERT.starts_with(PKI_DIR));
        assert!(KUBELET_DROPIN.starts_with(KUBELET_DROPIN_DIR));
        assert!(CRI_SOCKET.ends_with("/run/containerd/containerd.sock"));
        assert_eq!(install_dir("runc"), "/usr/local/sbin");
        assert_eq!(install_dir("kubeadm"), "/usr/local/bin");
        assert_eq!(install_dir("cni-plugins"), "/opt/cni/bin");
    }
}
