//! Facts: what read-only probes observe on a host, gathered by one script in one round trip.
//! Observed state only; never mixed into the desired state (`model`).
//!
//! The script prints raw sources (os-release, /proc files, `--version` lines) in sections
//! marked `@@kf:<name>`, and the parsing happens here, where it is unit-tested on output
//! captured from real hosts.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The probe script, with `@NAME@` for the paths of [`crate::paths`]. POSIX sh; reads only.
const TEMPLATE: &str = r##"s() { printf '\n@@kf:%s\n' "$1"; }
r() { [ -r "$1" ] || return 0; while IFS= read -r l || [ -n "$l" ]; do printf '%s\n' "$l"; done < "$1"; }
s time; date +%s.%N
s os-release; r /etc/os-release
s uname; read -r kr < /proc/sys/kernel/osrelease; if [ -r /proc/sys/kernel/arch ]; then read -r ma < /proc/sys/kernel/arch; else ma=$(uname -m); fi; echo "$kr $ma"
s init; r /proc/1/comm
s cgroupfs; [ -f /sys/fs/cgroup/cgroup.controllers ] && echo cgroup2fs || echo tmpfs
s nproc; n=0; read -r o < /sys/devices/system/cpu/online; IFS=,; for c in $o; do case $c in *-*) n=$((n + ${c#*-} - ${c%-*} + 1));; *) n=$((n + 1));; esac; done; unset IFS; echo $n
s meminfo; while read -r k v u; do case $k in MemTotal:|SwapTotal:) echo "$k $v $u";; esac; done < /proc/meminfo
s swaps; { read -r _; while IFS= read -r l; do printf '%s\n' "$l"; done; } < /proc/swaps
s hostname; r /proc/sys/kernel/hostname
s machine-id; r /etc/machine-id
s product-uuid; r /sys/class/dmi/id/product_uuid 2>/dev/null
s tcp-listen; awk '$4=="0A"{print $2}' /proc/net/tcp /proc/net/tcp6 2>/dev/null
s kernel
for f in /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/ipv4/ip_forward; do v=missing; [ -r $f ] && read -r v < $f; echo "$f=$v"; done
while read -r a b; do [ "$b" = overlay ] || [ "$a" = overlay ] && echo "fs-overlay=yes"; done < /proc/filesystems
m=/lib/modules/$kr
found=
[ -d /sys/module/overlay ] && [ -d /sys/module/br_netfilter ] || found=$(grep -oE '/(overlay|br_netfilter)\.ko' $m/modules.builtin $m/modules.dep 2>/dev/null)
for mod in overlay br_netfilter; do
  if [ -d /sys/module/$mod ]; then st=loaded
  else case "$found" in *"builtin:/$mod.ko"*) st=builtin;; *"dep:/$mod.ko"*) st=loadable;; *) st=missing;; esac; fi
  echo "module-$mod=$st"
done
s versions
for b in containerd runc kubelet kubeadm kubectl crictl; do
  p=; for d in @SBIN_DIR@ @BIN_DIR@ /usr/sbin /usr/bin /sbin /bin /opt/bin; do [ -x $d/$b ] && { p=$d/$b; break; }; done
  [ -n "$p" ] || continue
  case $b in
    kubeadm) v=$($p version -o short 2>/dev/null) ;;
    kubectl) v=$($p version --client 2>/dev/null | head -n1) ;;
    *) v=$($p --version 2>/dev/null | head -n1) ;;
  esac
  echo "$b=$p|$v"
done
s membership
for f in @KUBECONFIG_NAMES@; do [ -f @KUBERNETES_DIR@/$f ] && echo "conf=$f"; done
for p in kube-apiserver etcd kube-controller-manager kube-scheduler; do [ -f @MANIFESTS_DIR@/$p.yaml ] && echo "manifest=$p"; done
[ -f @CA_CERT@ ] && echo "ca-sha256=$(sha256sum < @CA_CERT@ | cut -d' ' -f1)"
[ -f @CA_CERT@ ] && command -v openssl >/dev/null && k=$(openssl x509 -pubkey -noout -in @CA_CERT@ 2>/dev/null) && [ -n "$k" ] && echo "ca-spki-sha256=$(printf '%s\n' "$k" | openssl pkey -pubin -outform der 2>/dev/null | sha256sum | cut -d' ' -f1)"
[ -f @KUBELET_KUBECONFIG@ ] && while read -r k v; do [ "$k" = server: ] && echo "server=$v" && break; done < @KUBELET_KUBECONFIG@
[ -f @MARKER@ ] && while IFS='=' read -r k v; do [ -n "$k" ] && echo "marker-$k=$v"; done < @MARKER@
[ -f @INITIALIZED@ ] && echo "initialized=yes"
set -- inactive inactive inactive disabled
for d in @SYSTEMD_DIR@ /lib/systemd/system /usr/lib/systemd/system; do
  [ -e $d/kubelet.service ] || [ -e $d/containerd.service ] || [ -e $d/haproxy.service ] && { set -- $(systemctl is-active kubelet containerd haproxy 2>/dev/null) $(systemctl is-enabled kubelet 2>/dev/null); break; }
done
echo "active-kubelet=${1:-unknown}"; echo "active-containerd=${2:-unknown}"; echo "active-haproxy=${3:-unknown}"; echo "enabled-kubelet=${4:-unknown}"
s installed
for f in @INSTALLED_DIR@/*; do [ -f "$f" ] && read -r v < "$f" && echo "${f##*/}=$v"; done
s tools
for b in conntrack socat iptables haproxy apt-get dnf yum zypper; do for d in @SBIN_DIR@ @BIN_DIR@ /usr/sbin /usr/bin /sbin /bin; do [ -x $d/$b ] && { echo $b; break; }; done; done
s packages
pm=none; for m in apt-get dnf yum zypper; do command -v $m >/dev/null 2>&1 && { pm=$m; break; }; done
echo "manager=$pm"
if [ $pm = apt-get ]; then L=/var/lib/apt/lists/; eval "$(apt-config shell L Dir::State::lists/d 2>/dev/null)"; n=0; for f in "$L"*_Packages*; do [ -e "$f" ] && n=$((n + 1)); done; echo "apt-lists=$n"; fi
for t in iptables haproxy; do
  for d in @SBIN_DIR@ @BIN_DIR@ /usr/sbin /usr/bin /sbin /bin; do [ -x $d/$t ] && continue 2; done
  echo "ask=$t"
  case $pm in
    apt-get) o=$(LC_ALL=C apt-get install -s -q --no-install-recommends "$t" 2>&1) ;;
    dnf|yum) o=$(LC_ALL=C $pm -q --cacheonly repoquery --whatprovides "$t" 2>&1) ;;
    zypper) o=$(LC_ALL=C zypper --non-interactive --no-refresh search --match-exact --provides "$t" 2>&1) ;;
    *) o=; false ;;
  esac
  rc=$?; printf '%s\n' "$o" | sed 's/^/| /'; echo "rc=$rc"
done
s fstab-swap
[ -r /etc/fstab ] && while read -r dev mnt type rest; do case $dev in \#*|'') ;; *) [ "$type" = swap ] && echo "$dev";; esac; done < /etc/fstab
s node-ip
c=${SSH_CONNECTION:-}; p=$$
while [ -z "$c" ] && [ "${p:-1}" -gt 1 ]; do
  p=$(while read -r k v; do [ "$k" = PPid: ] && echo "$v"; done 2>/dev/null < /proc/$p/status)
  [ -n "$p" ] && [ -r /proc/$p/environ ] && c=$(tr '\0' '\n' 2>/dev/null < /proc/$p/environ | while IFS= read -r l; do case $l in SSH_CONNECTION=*) echo "${l#SSH_CONNECTION=}";; esac; done)
done
set -- $c; echo "ssh-local=${3:-}"
ip -o addr show scope global 2>/dev/null | while read -r _ dev fam a _; do echo "addr=$dev $fam ${a%/*}"; done
s hosts-block
b=; while IFS= read -r l; do case $l in "@HOSTS_BLOCK_BEGIN@"*) b=1;; esac; [ -n "$b" ] && printf '%s\n' "$l"; case $l in "@HOSTS_BLOCK_END@"*) b=;; esac; done < @HOSTS_FILE@
s images
c=; for d in @BIN_DIR@ /usr/bin /usr/sbin; do [ -x $d/ctr ] && { c=$d/ctr; break; }; done
[ -n "$c" ] && [ -S @CONTAINERD_SOCKET@ ] && timeout 20 $c --address @CONTAINERD_SOCKET@ -n k8s.io images ls 2>/dev/null
"##;

/// sha256 of no bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The probe script, hashing `paths` (managed files) too.
pub fn script(paths: &[String]) -> String {
    let mut s = crate::paths::fill(TEMPLATE);
    if !paths.is_empty() {
        s.push_str("s files\nsha256sum -- ");
        for p in paths {
            s.push_str(&crate::util::shell_quote(p));
            s.push(' ');
        }
        s.push_str("2>/dev/null\n");
    }
    s.push_str("s end\n");
    s
}

/// A kernel feature: compiled in, loaded, loadable as a module, or absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Feature {
    Loaded,
    Builtin,
    Loadable,
    Missing,
}

impl Feature {
    pub fn available(self) -> bool {
        self != Feature::Missing
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelFeatures {
    pub overlay: Feature,
    pub br_netfilter: Feature,
    /// `/proc/sys/net/bridge/bridge-nf-call-iptables`: None when the file is absent.
    pub bridge_nf_call_iptables: Option<bool>,
    pub ip_forward: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installed {
    pub path: String,
    /// The version as `x.y.z` when it could be read.
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberRole {
    ControlPlane,
    Worker,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub kubeconfigs: Vec<String>,
    pub static_pods: Vec<String>,
    /// sha256 of /etc/kubernetes/pki/ca.crt: identifies the cluster the host belongs to.
    pub ca_sha256: Option<String>,
    /// sha256 of that CA's public key (DER SubjectPublicKeyInfo), as kubeadm's
    /// discovery-token-ca-cert-hash: the same for every copy of the CA, however encoded
    /// (None when the host has no openssl).
    pub ca_spki_sha256: Option<String>,
    /// The API server the kubelet talks to.
    pub server: Option<String>,
    /// /etc/kubeforge/cluster, written when kubeforge installs a node.
    pub marker: BTreeMap<String, String>,
    pub kubelet_active: bool,
    pub containerd_active: bool,
    /// /etc/kubeforge/initialized: kubeadm init or a control-plane join completed here.
    pub initialized: bool,
}

impl Membership {
    /// The role the host plays in a cluster, if it is in one.
    pub fn role(&self) -> Option<MemberRole> {
        if self.static_pods.iter().any(|p| p == "kube-apiserver") {
            Some(MemberRole::ControlPlane)
        } else if self.kubeconfigs.iter().any(|c| c == "kubelet.conf") {
            Some(MemberRole::Worker)
        } else {
            None
        }
    }

    /// The cluster name kubeforge recorded on the host.
    pub fn cluster(&self) -> Option<&str> {
        self.marker.get("cluster").map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub os_id: String,
    pub os_version: String,
    pub os_like: Vec<String>,
    pub os_pretty: String,
    pub kernel: String,
    /// As Kubernetes names it: amd64, arm64, ... (raw `uname -m` when unknown).
    pub arch: String,
    pub init: String,
    pub cgroup_version: u8,
    pub cpus: u32,
    pub memory_mib: u64,
    /// Active swap (sum of /proc/swaps).
    pub swap_mib: u64,
    pub hostname: String,
    pub machine_id: String,
    pub product_uuid: Option<String>,
    /// Host clock minus the operator's clock, in milliseconds (round-trip corrected).
    pub clock_offset_ms: i64,
    pub listening_ports: BTreeSet<u16>,
    pub kernel_features: KernelFeatures,
    pub installed: BTreeMap<String, Installed>,
    pub membership: Membership,
    /// sha256 of the managed files that exist (path -> digest).
    pub files: BTreeMap<String, String>,
    /// What kubeforge installed: component -> "sha256 version" (/etc/kubeforge/installed).
    pub markers: BTreeMap<String, String>,
    /// Tools found in the usual directories (conntrack, socat, iptables, haproxy, package managers).
    pub tools: BTreeSet<String>,
    /// Swap devices /etc/fstab enables at boot.
    pub fstab_swap: Vec<String>,
    /// The kubeforge block of /etc/hosts, lines included.
    pub hosts_block: Vec<String>,
    pub kubelet_enabled: bool,
    pub haproxy_active: bool,
    /// The host's own end of the SSH connection kubeforge came in on (`$SSH_CONNECTION`'s
    /// server address, read from the login's environment when sudo dropped it).
    pub ssh_local_address: Option<IpAddr>,
    /// The host's global-scope addresses (`ip -o addr show scope global`): (interface, address).
    pub addresses: Vec<(String, IpAddr)>,
    /// The package manager os-prep installs OS packages with: the first of apt-get, dnf, yum,
    /// zypper the host has (None when it has none).
    pub package_manager: Option<String>,
    /// For each tool kubeforge installs as an OS package ([`crate::steps::os_prep::PACKAGE_TOOLS`])
    /// that the host lacks: whether its package manager can install it, asked without changing
    /// anything and without a network (`apt-get install -s`, `dnf --cacheonly repoquery`,
    /// `zypper --no-refresh search`).
    pub package_checks: BTreeMap<String, Installable>,
    /// The images in containerd's `k8s.io` namespace (what the kubelet sees): reference ->
    /// the digest it points at (`ctr images ls`); empty while containerd does not run.
    pub images: BTreeMap<String, String>,
}

/// What a package manager said when asked whether it can install a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "verdict", content = "reason")]
pub enum Installable {
    Yes,
    /// It cannot: its own words (`E: Unable to locate package haproxy`).
    No(String),
    /// It cannot tell without a network: no package lists or metadata cache yet.
    Unknown(String),
}

/// The node IP a host reports, and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedIp {
    pub ip: IpAddr,
    /// The interface that holds it, when `ip` listed it.
    pub interface: Option<String>,
    /// The SSH connection's local address (true), or the host's only global IPv4 address.
    pub from_ssh: bool,
}

impl Facts {
    /// The sha256 recorded for an installed component.
    pub fn marker_sha(&self, component: &str) -> Option<&str> {
        self.markers
            .get(component)
            .and_then(|m| m.split_whitespace().next())
    }

    pub fn has_tool(&self, t: &str) -> bool {
        self.tools.contains(t)
    }

    /// The IPv4 address the host is reached on from the operator's side: the local address of
    /// the SSH connection (what the inventory's name resolved to, after any NAT; over a
    /// bastion, the address facing it), when it is a routable IPv4 address the host holds.
    /// Else the host's only global IPv4 address. None when neither settles it.
    pub fn observed_node_ip(&self) -> Option<ObservedIp> {
        let interface = |ip: IpAddr| {
            self.addresses
                .iter()
                .find(|(_, a)| *a == ip)
                .map(|(i, _)| i.clone())
        };
        let usable = usable_node_ip;
        if let Some(ip) = self.ssh_local_address.filter(usable)
            && (self.addresses.is_empty() || interface(ip).is_some())
        {
            return Some(ObservedIp {
                ip,
                interface: interface(ip),
                from_ssh: true,
            });
        }
        // the interfaces a CNI or container runtime makes (cni0, flannel.1, cali*, ...) carry
        // global addresses too once the cluster runs: never the node's own address
        let made_by_cni = |i: &str| {
            [
                "cni",
                "flannel",
                "cali",
                "cilium",
                "vxlan",
                "docker",
                "kube-",
                "veth",
                "tunl",
                "weave",
                "lxc",
                "genev",
                "nodelocaldns",
            ]
            .iter()
            .any(|p| i.starts_with(p))
        };
        let v4: Vec<&(String, IpAddr)> = self
            .addresses
            .iter()
            .filter(|(i, a)| usable(a) && !made_by_cni(i))
            .collect();
        match v4.as_slice() {
            [(i, ip)] => Some(ObservedIp {
                ip: *ip,
                interface: Some(i.clone()),
                from_ssh: false,
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the facts output: {0}")]
pub struct ParseError(pub String);

/// Why the facts of a host could not be gathered: the SSH command failed (of that error's
/// kind), or the probe ran and its output could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error(transparent)]
    Ssh(Box<crate::ssh::SshError>),
    #[error("{host}: {error} (stderr: {stderr})")]
    Parse {
        host: String,
        error: ParseError,
        /// What the probe wrote to stderr (trimmed).
        stderr: String,
    },
}

impl From<crate::ssh::SshError> for FactsError {
    fn from(e: crate::ssh::SshError) -> Self {
        FactsError::Ssh(Box::new(e))
    }
}

impl FactsError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        match self {
            FactsError::Ssh(e) => e.kind(),
            FactsError::Parse { .. } => crate::error::ErrorKind::Parse,
        }
    }

    pub fn host(&self) -> &str {
        match self {
            FactsError::Ssh(e) => e.host(),
            FactsError::Parse { host, .. } => host,
        }
    }
}

fn sections(text: &str) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut cur: Option<&str> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("@@kf:") {
            cur = Some(name.trim());
            out.entry(name.trim()).or_default();
        } else if let Some(c) = cur
            && !line.is_empty()
        {
            out.entry(c).or_default().push(line);
        }
    }
    out
}

fn kv<'a>(lines: &[&'a str]) -> BTreeMap<&'a str, &'a str> {
    lines.iter().filter_map(|l| l.split_once('=')).collect()
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(v)
        .to_string()
}

pub fn normalize_arch(machine: &str) -> String {
    match machine {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv7" => "arm",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
    .to_string()
}

/// The first `x.y.z` in a `--version` line (`containerd github.com/containerd/containerd v1.6.20
/// ...`, `Kubernetes v1.33.5`, `runc version 1.1.5`).
pub fn version_in(line: &str) -> Option<String> {
    line.split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.trim_start_matches('v'))
        .find(|w| {
            let parts: Vec<&str> = w.split(['.', '-', '+', '~']).collect();
            parts.len() >= 3
                && parts[..3]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|w| {
            // keep x.y.z and a pre-release tag; drop distro suffixes such as ~ds1
            let end = w.find(['~', '+']).unwrap_or(w.len());
            w[..end].to_string()
        })
}

/// Parses the probe script's output. `sent` and `received` are the operator's clock (seconds
/// since the epoch) just before the command was sent and after its answer arrived.
pub fn parse(text: &str, sent: f64, received: f64) -> Result<Facts, ParseError> {
    let s = sections(text);
    if !s.contains_key("end") {
        return Err(ParseError(
            "the output is incomplete (no end marker)".into(),
        ));
    }
    let get = |name: &str| s.get(name).cloned().unwrap_or_default();
    let one = |name: &str| {
        get(name)
            .first()
            .map(|l| l.trim().to_string())
            .unwrap_or_default()
    };

    let os = kv(&get("os-release"));
    let os_id = os.get("ID").map(|v| unquote(v)).unwrap_or_default();
    if os_id.is_empty() {
        return Err(ParseError("no ID in /etc/os-release".into()));
    }
    // `uname -r -m`: "6.1.0-13-amd64 x86_64"
    let uname: Vec<&str> = get("uname")
        .iter()
        .flat_map(|l| l.split_whitespace())
        .collect();
    let kernel = uname.first().map(|w| w.to_string()).unwrap_or_default();
    let arch = normalize_arch(uname.get(1).copied().unwrap_or_default());
    let cgroup_version = if one("cgroupfs") == "cgroup2fs" { 2 } else { 1 };
    let cpus = one("nproc")
        .parse()
        .map_err(|_| ParseError(format!("nproc said {:?}", one("nproc"))))?;
    let mut memory_mib = None;
    for l in get("meminfo") {
        let mut w = l.split_whitespace();
        if w.next() == Some("MemTotal:") {
            let kib = w
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ParseError(format!("/proc/meminfo said {l:?}")))?;
            memory_mib = Some(kib / 1024);
        }
    }
    let memory_mib = memory_mib.ok_or_else(|| ParseError("no MemTotal in /proc/meminfo".into()))?;
    // /proc/swaps: Filename Type Size(KiB) Used Priority
    let swap_mib = get("swaps")
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ParseError(format!("/proc/swaps said {l:?}")))
        })
        .sum::<Result<u64, ParseError>>()?
        / 1024;
    let remote: f64 = one("time")
        .parse()
        .map_err(|_| ParseError(format!("date said {:?}", one("time"))))?;
    let clock_offset_ms = ((remote - (sent + received) / 2.0) * 1000.0).round() as i64;
    let listening_ports = get("tcp-listen")
        .iter()
        .map(|a| {
            a.rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p.trim(), 16).ok())
                .ok_or_else(|| ParseError(format!("/proc/net/tcp has local address {a:?}")))
        })
        .collect::<Result<_, _>>()?;
    let k = kv(&get("kernel"));
    let feature = |name: &str| match k.get(name).copied() {
        Some("loaded") => Feature::Loaded,
        Some("builtin") => Feature::Builtin,
        Some("loadable") => Feature::Loadable,
        _ => Feature::Missing,
    };
    let mut overlay = feature("module-overlay");
    if k.get("fs-overlay") == Some(&"yes") && overlay == Feature::Missing {
        overlay = Feature::Loaded;
    }
    let bridge_nf = k
        .get("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .copied();
    let mut br_netfilter = feature("module-br_netfilter");
    if bridge_nf.is_some_and(|v| v != "missing") && br_netfilter == Feature::Missing {
        br_netfilter = Feature::Loaded;
    }
    let kernel_features = KernelFeatures {
        overlay,
        br_netfilter,
        bridge_nf_call_iptables: match bridge_nf {
            Some("missing") | None => None,
            Some(v) => Some(v.trim() == "1"),
        },
        ip_forward: k.get("/proc/sys/net/ipv4/ip_forward").map(|v| v.trim()) == Some("1"),
    };
    let installed = get("versions")
        .iter()
        .filter_map(|l| {
            let (name, rest) = l.split_once('=')?;
            let (path, ver) = rest.split_once('|').unwrap_or((rest, ""));
            Some((
                name.to_string(),
                Installed {
                    path: path.to_string(),
                    version: version_in(ver),
                },
            ))
        })
        .collect();
    let node_ip = get("node-ip");
    let ssh_local_address = match kv(&node_ip).get("ssh-local").map(|v| v.trim()) {
        None | Some("") => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| ParseError(format!("SSH_CONNECTION names {v:?}, not an address")))?,
        ),
    };
    let addresses = node_ip
        .iter()
        .filter_map(|l| {
            let mut w = l.strip_prefix("addr=")?.split_whitespace();
            let (dev, _family, ip) = (w.next()?, w.next()?, w.next()?);
            // `ip -o addr` lines kubeforge cannot read name no address a node could use
            Some((dev.to_string(), ip.parse().ok()?))
        })
        .collect();
    let (package_manager, package_checks) = package_section(&get("packages"))?;
    let mut membership = Membership::default();
    let mut haproxy_active = false;
    let mut kubelet_enabled = false;
    for (key, value) in get("membership").iter().filter_map(|l| l.split_once('=')) {
        match key {
            "conf" => membership.kubeconfigs.push(value.to_string()),
            "manifest" => membership.static_pods.push(value.to_string()),
            "ca-sha256" if value.len() == 64 => membership.ca_sha256 = Some(value.to_string()),
            // the digest of nothing: openssl could not read the key
            "ca-spki-sha256" if value.len() == 64 && value != EMPTY_SHA256 => {
                membership.ca_spki_sha256 = Some(value.to_string())
            }
            "server" if !value.is_empty() => membership.server = Some(value.to_string()),
            "active-kubelet" => membership.kubelet_active = value == "active",
            "active-containerd" => membership.containerd_active = value == "active",
            "initialized" => membership.initialized = value == "yes",
            "active-haproxy" => haproxy_active = value == "active",
            "enabled-kubelet" => kubelet_enabled = value == "enabled",
            k => {
                if let Some(m) = k.strip_prefix("marker-") {
                    membership.marker.insert(m.to_string(), value.to_string());
                }
            }
        }
    }
    Ok(Facts {
        os_pretty: os
            .get("PRETTY_NAME")
            .map(|v| unquote(v))
            .unwrap_or_else(|| os_id.clone()),
        os_version: os.get("VERSION_ID").map(|v| unquote(v)).unwrap_or_default(),
        os_like: os
            .get("ID_LIKE")
            .map(|v| unquote(v).split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        os_id,
        kernel,
        arch,
        init: one("init"),
        cgroup_version,
        cpus,
        memory_mib,
        swap_mib,
        hostname: one("hostname"),
        machine_id: one("machine-id"),
        product_uuid: Some(one("product-uuid"))
            .filter(|u| !u.is_empty())
            .map(|u| u.to_ascii_lowercase()),
        clock_offset_ms,
        listening_ports,
        kernel_features,
        installed,
        membership,
        files: get("files")
            .iter()
            .filter_map(|l| {
                let (hash, path) = l.split_once("  ")?;
                (hash.len() == 64).then(|| (path.to_string(), hash.to_string()))
            })
            .collect(),
        markers: get("installed")
            .iter()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect(),
        tools: get("tools").iter().map(|t| t.trim().to_string()).collect(),
        fstab_swap: get("fstab-swap")
            .iter()
            .map(|t| t.trim().to_string())
            .collect(),
        hosts_block: get("hosts-block").iter().map(|t| t.to_string()).collect(),
        kubelet_enabled,
        haproxy_active,
        ssh_local_address,
        addresses,
        package_manager,
        package_checks,
        images: parse_images(&get("images")),
    })
}

/// The `packages` section: `manager=`, `apt-lists=` (apt only), then for each tool asked about
/// `ask=TOOL`, the package manager's output with `| ` before each line, and `rc=` its exit code.
fn package_section(
    lines: &[&str],
) -> Result<(Option<String>, BTreeMap<String, Installable>), ParseError> {
    let mut manager: Option<String> = None;
    let mut apt_lists: Option<u32> = None;
    let mut checks = BTreeMap::new();
    let mut asking: Option<(&str, Vec<&str>)> = None;
    for l in lines {
        if let Some(m) = l.strip_prefix("manager=") {
            manager = Some(m.trim())
                .filter(|m| !m.is_empty() && *m != "none")
                .map(String::from);
        } else if let Some(n) = l.strip_prefix("apt-lists=") {
            apt_lists = Some(
                n.trim()
                    .parse()
                    .map_err(|_| ParseError(format!("the apt package lists counted {n:?}")))?,
            );
        } else if let Some(t) = l.strip_prefix("ask=") {
            asking = Some((t.trim(), Vec::new()));
        } else if let Some(said) = l.strip_prefix('|') {
            if let Some((_, out)) = asking.as_mut() {
                out.push(said.strip_prefix(' ').unwrap_or(said));
            }
        } else if let Some(rc) = l.strip_prefix("rc=") {
            let rc: i32 = rc
                .trim()
                .parse()
                .map_err(|_| ParseError(format!("the package manager's exit code reads {rc:?}")))?;
            if let Some((tool, said)) = asking.take() {
                checks.insert(
                    tool.to_string(),
                    installable(manager.as_deref(), apt_lists, rc, &said),
                );
            }
        }
    }
    Ok((manager, checks))
}

/// At most 200 characters of what a package manager said.
fn clip(line: &str) -> String {
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// The verdict on one package from what `manager` printed and its exit code.
fn installable(
    manager: Option<&str>,
    apt_lists: Option<u32>,
    rc: i32,
    said: &[&str],
) -> Installable {
    let said: Vec<&str> = said
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let first = || {
        said.first()
            .map(|l| clip(l))
            .unwrap_or_else(|| format!("exit code {rc}"))
    };
    match manager {
        None => {
            Installable::No("the host has no package manager (apt-get, dnf, yum, zypper)".into())
        }
        Some("apt-get") => {
            if rc == 0 {
                Installable::Yes
            } else if apt_lists == Some(0) {
                // "Unable to locate package" says nothing before the lists exist
                Installable::Unknown(
                    "apt has no package lists yet (apt-get update has not run)".into(),
                )
            } else {
                let errors: Vec<String> = said
                    .iter()
                    .filter(|l| l.starts_with("E:"))
                    .map(|l| clip(l))
                    .collect();
                Installable::No(if errors.is_empty() {
                    said.last()
                        .map(|l| clip(l))
                        .unwrap_or_else(|| format!("apt-get exit code {rc}"))
                } else {
                    errors.join("; ")
                })
            }
        }
        Some(m @ ("dnf" | "yum")) => {
            if rc == 0 && !said.is_empty() {
                Installable::Yes
            } else if rc == 0 {
                Installable::No(format!("no repository in {m}'s cache provides it"))
            } else if said
                .iter()
                .any(|l| l.to_ascii_lowercase().contains("cache"))
            {
                Installable::Unknown(first())
            } else {
                Installable::No(first())
            }
        }
        Some("zypper") => {
            // 104: nothing matched; 7: another process holds the zypp lock
            let refresh = said.iter().find(|l| l.contains("zypper refresh"));
            if rc == 0 {
                Installable::Yes
            } else if let Some(l) = refresh {
                Installable::Unknown(clip(l))
            } else if rc == 7 {
                Installable::Unknown(first())
            } else if rc == 104 {
                Installable::No("no repository zypper knows provides it".into())
            } else {
                Installable::No(first())
            }
        }
        Some(other) => Installable::Unknown(format!("kubeforge cannot ask {other}")),
    }
}

/// `ctr images ls` lines (`REF TYPE DIGEST SIZE PLATFORMS LABELS`, header first): reference ->
/// digest.
pub fn parse_images(lines: &[&str]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (r, _, d) = (f.next()?, f.next()?, f.next()?);
            (r != "REF" && d.starts_with("sha256:")).then(|| (r.to_string(), d.to_string()))
        })
        .collect()
}

impl Facts {
    /// Whether containerd on the host holds `image` at its pinned digest (under its tag or its
    /// digest reference). An image without a digest is never "present": nothing proves it.
    pub fn has_image(&self, image: &crate::release::Image) -> bool {
        holds_image(&self.images, image)
    }
}

/// Whether `images` (reference -> digest, as `ctr images ls` lists them) hold `image` at its
/// pinned digest.
pub fn holds_image(images: &BTreeMap<String, String>, image: &crate::release::Image) -> bool {
    let Some(d) = &image.digest else { return false };
    images.get(&image.tag_ref()) == Some(d) || images.get(&image.digest_ref()) == Some(d)
}

/// The host's end of the session's SSH connection (`$SSH_CONNECTION`, read without sudo, which
/// drops it), when it is a usable IPv4 address.
pub async fn ssh_local_address(session: &crate::ssh::Session) -> Option<IpAddr> {
    let out = session
        .exec_with(
            "set -- ${SSH_CONNECTION:-}; echo \"${3:-}\"",
            crate::ssh::session::Exec {
                unprivileged: true,
                ..Default::default()
            },
        )
        .await;
    // a fallback for the node IP: without it the caller keeps what the facts found
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("cannot read $SSH_CONNECTION: {e}");
            return None;
        }
    };
    let said = out.stdout();
    let said = said.trim();
    if said.is_empty() {
        return None;
    }
    match said.parse::<IpAddr>() {
        Ok(ip) => usable_node_ip(&ip).then_some(ip),
        Err(_) => {
            tracing::warn!(
                "{}: $SSH_CONNECTION names {said:?}, not an address",
                session.name()
            );
            None
        }
    }
}

/// An IPv4 address a node can register with: not loopback, unspecified, link-local,
/// multicast or broadcast.
pub fn usable_node_ip(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() && !v4.is_link_local() && !v4.is_multicast() && !v4.is_broadcast())
}

/// Gathers the facts of one host over its session.
pub async fn gather(session: &crate::ssh::Session) -> Result<Facts, FactsError> {
    gather_with(session, &[]).await
}

/// Gathers the facts of one host, hashing the given managed files too.
pub async fn gather_with(
    session: &crate::ssh::Session,
    paths: &[String],
) -> Result<Facts, FactsError> {
    // a clock before 1970 gives no offset worth reporting; the clock-skew check then sees a
    // large offset and says so
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let sent = now();
    let script = script(paths);
    let out = session
        .exec_with(
            &script,
            crate::ssh::session::Exec {
                display: Some("gather facts"),
                timeout: Some(std::time::Duration::from_secs(60)),
                ..Default::default()
            },
        )
        .await?;
    let received = now();
    parse(&out.stdout(), sent, received).map_err(|error| FactsError::Parse {
        host: session.name().to_string(),
        error,
        stderr: out.stderr().trim().to_string(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn images_are_read_from_ctr_images_ls() {
        // containerd 2.1.9's `ctr -n k8s.io images ls` on a harness node, after an import
        let out = "REF                                                                                                      TYPE                                    DIGEST                                                                  SIZE     PLATFORMS   LABELS\n\
registry.k8s.io/pause:3.10                                                                                   application/vnd.oci.image.index.v1+json sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a 310.0 KiB linux/amd64 io.cri-containerd.image=managed,io.cri-containerd.pinned=pinned\n\
registry.k8s.io/pause@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a application/vnd.oci.image.index.v1+json sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a 310.0 KiB linux/amd64 -\n";
        let lines: Vec<&str> = out.lines().collect();
        let images = parse_images(&lines);
        assert_eq!(images.len(), 2, "{images:?}");
        let pinned = crate::release::Image::parse("registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a").unwrap();
        assert!(holds_image(&images, &pinned));
        let other = crate::release::Image::parse("registry.k8s.io/pause:3.10@sha256:1111111111111111111111111111111111111111111111111111111111111111").unwrap();
        assert!(
            !holds_image(&images, &other),
            "another digest under the same tag"
        );
        let unpinned = crate::release::Image::parse("registry.k8s.io/pause:3.10").unwrap();
        assert!(
            !holds_image(&images, &unpinned),
            "nothing proves an unpinned image"
        );
        assert!(parse_images(&[]).is_empty());
    }

    #[test]
    fn versions_from_version_lines() {
        assert_eq!(
            version_in("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1")
                .as_deref(),
            Some("1.6.20")
        );
        assert_eq!(
            version_in("containerd github.com/containerd/containerd v2.1.5 abc").as_deref(),
            Some("2.1.5")
        );
        assert_eq!(
            version_in("runc version 1.1.5+ds1").as_deref(),
            Some("1.1.5")
        );
        assert_eq!(version_in("Kubernetes v1.33.5").as_deref(), Some("1.33.5"));
        assert_eq!(
            version_in("Client Version: v1.34.0-rc.1").as_deref(),
            Some("1.34.0-rc.1")
        );
        assert_eq!(
            version_in("crictl version v1.33.0").as_deref(),
            Some("1.33.0")
        );
        assert_eq!(version_in("no version here 1.2").as_deref(), None);
    }

    #[test]
    fn a_parse_failure_is_of_kind_parse_and_names_the_host_and_what() {
        use crate::error::ErrorKind;
        let e = FactsError::Parse {
            host: "node2".into(),
            error: parse("@@kf:time\n1.0\n", 0.0, 0.0).unwrap_err(),
            stderr: "sh: 1: oops".into(),
        };
        assert_eq!(e.kind(), ErrorKind::Parse);
        assert!(!e.kind().is_unreachable());
        assert_eq!(e.host(), "node2");
        assert_eq!(
            e.to_string(),
            "node2: cannot read the facts output: the output is incomplete (no end marker) (stderr: sh: 1: oops)"
        );
        let e = FactsError::from(crate::ssh::SshError::ConnectTimeout {
            host: "node3".into(),
            addr: "10.0.0.3:22".into(),
            timeout: std::time::Duration::from_secs(3),
        });
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        assert_eq!(
            e.to_string(),
            "node3: no SSH answer from 10.0.0.3:22 within 3s"
        );
    }

    /// `sh -n`: the script parses as shell.
    pub(crate) fn assert_parses_as_shell(script: &str) {
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_probe_reads_the_paths_of_paths_rs_and_types_none_itself() {
        use crate::paths;
        assert_eq!(
            paths::literals_in(TEMPLATE),
            Vec::<&str>::new(),
            "paths typed in the probe instead of @NAME@"
        );
        let used = paths::placeholders(TEMPLATE);
        for must in [
            "MARKER",
            "INITIALIZED",
            "INSTALLED_DIR",
            "KUBERNETES_DIR",
            "KUBECONFIG_NAMES",
            "KUBELET_KUBECONFIG",
            "MANIFESTS_DIR",
            "CA_CERT",
            "SYSTEMD_DIR",
            "BIN_DIR",
            "SBIN_DIR",
            "HOSTS_FILE",
            "HOSTS_BLOCK_BEGIN",
            "HOSTS_BLOCK_END",
        ] {
            assert!(used.contains(&must), "the probe does not read {must}");
        }
        let s = script(&["/etc/containerd/config.toml".into()]);
        assert_eq!(paths::placeholders(&s), Vec::<&str>::new(), "unfilled");
        for v in [
            paths::MARKER,
            paths::INITIALIZED,
            paths::CA_CERT,
            paths::KUBELET_KUBECONFIG,
            paths::HOSTS_FILE,
            paths::BIN_DIR,
        ] {
            assert!(s.contains(v), "{v}");
        }
        assert!(s.contains("for f in admin.conf super-admin.conf kubelet.conf"));
        assert!(
            s.ends_with("s files\nsha256sum -- /etc/containerd/config.toml 2>/dev/null\ns end\n")
        );
        assert_parses_as_shell(&s);
    }

    #[test]
    fn incomplete_output_is_an_error() {
        assert!(parse("@@kf:time\n1.0\n", 0.0, 0.0).is_err());
    }

    /// The probe's node-ip lines, run here as the host runs them: as root, and under sudo,
    /// which starts the script without `$SSH_CONNECTION` (the login's environment still has it).
    #[test]
    fn the_probe_finds_the_ssh_connection_under_sudo_too() {
        let script = script(&[]);
        let start = script.find("s node-ip\n").unwrap();
        let end = script.find("s hosts-block\n").unwrap();
        let probe = format!(
            "s() {{ printf '\\n@@kf:%s\\n' \"$1\"; }}\n{}",
            &script[start..end]
        );
        for wrapper in [
            "sh -c \"$0\"",
            // as sudo does: a child without the variable, its parent still holding it
            "env -u SSH_CONNECTION sh -c \"$0\"; exit $?",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(wrapper)
                .arg(&probe)
                .env("SSH_CONNECTION", "192.0.2.7 50022 10.9.8.7 22")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("@@kf:node-ip\nssh-local=10.9.8.7\n"),
                "{wrapper}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // no SSH connection anywhere up the process tree: an empty value, no error
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&probe)
            .env_remove("SSH_CONNECTION")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("ssh-local=\n"));
    }

    #[test]
    fn arch_names() {
        assert_eq!(normalize_arch("x86_64"), "amd64");
        assert_eq!(normalize_arch("aarch64"), "arm64");
        assert_eq!(normalize_arch("mips"), "mips");
    }
}

#[cfg(test)]
pub(crate) mod fixture_tests {
    use super::*;

    /// Output of the probe script on a bare harness host (Debian 12 in systemd-nspawn), captured with
    /// `ssh node1 sh -s < script` (the node-ip section added from a later capture, as root).
    const BARE: &str = include_str!("../tests/fixtures/facts/harness-bare.txt");

    /// The host's clock in the capture.
    pub fn captured_at() -> f64 {
        BARE.lines().nth(2).unwrap().parse().unwrap()
    }

    #[test]
    fn unreadable_numbers_in_the_probe_output_are_errors_not_zeros() {
        let t = captured_at();
        for (from, to, said) in [
            (
                "MemTotal: 24684092 kB",
                "MemTotal: lots kB",
                "/proc/meminfo said",
            ),
            ("MemTotal: 24684092 kB", "MemFree: 1 kB", "no MemTotal"),
        ] {
            assert!(BARE.contains(from), "{from}");
            let e = parse(&BARE.replace(from, to), t, t).unwrap_err();
            assert!(e.0.contains(said), "{e}");
        }
        let with_port = BARE.replace("@@kf:tcp-listen\n", "@@kf:tcp-listen\n0100007F:zz\n");
        assert!(
            parse(&with_port, t, t)
                .unwrap_err()
                .0
                .contains("/proc/net/tcp"),
            "a port that is not hex"
        );
        let with_swap = BARE.replace("@@kf:swaps\n", "@@kf:swaps\n/swapfile file big 0 -2\n");
        assert!(
            parse(&with_swap, t, t)
                .unwrap_err()
                .0
                .contains("/proc/swaps said")
        );
        let ok = BARE.replace("@@kf:swaps\n", "@@kf:swaps\n/swapfile file 2097148 0 -2\n");
        assert_eq!(parse(&ok, t, t).unwrap().swap_mib, 2047);
    }

    #[test]
    fn bare_harness_host() {
        // sent 0.1 s before the host read its clock, answered 0.3 s after that
        let sent = captured_at() - 0.1;
        let f = parse(BARE, sent, sent + 0.4).unwrap();
        assert_eq!((f.os_id.as_str(), f.os_version.as_str()), ("debian", "12"));
        assert_eq!(f.os_pretty, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(
            (f.kernel.as_str(), f.arch.as_str()),
            ("6.18.44-fc-v657", "amd64")
        );
        assert_eq!(
            (f.init.as_str(), f.cgroup_version, f.cpus),
            ("systemd", 1, 2)
        );
        assert_eq!(f.memory_mib, 24684092 / 1024);
        assert_eq!(f.swap_mib, 0);
        assert_eq!(f.hostname, "node1");
        assert_eq!(f.machine_id, "fe87e41b970f181be90949a8fcca5e52");
        assert_eq!(f.product_uuid, None);
        assert_eq!(f.clock_offset_ms, -100);
        assert_eq!(f.listening_ports, BTreeSet::from([22]));
        assert_eq!(
            f.kernel_features,
            KernelFeatures {
                overlay: Feature::Builtin,
                br_netfilter: Feature::Builtin,
                bridge_nf_call_iptables: Some(true),
                ip_forward: false,
            }
        );
        assert!(f.installed.is_empty());
        assert_eq!(f.membership.role(), None);
        assert!(!f.membership.kubelet_active);
        assert!(!f.kubelet_enabled && !f.haproxy_active);
        assert!(f.markers.is_empty() && f.fstab_swap.is_empty() && f.hosts_block.is_empty());
        assert_eq!(
            f.tools.iter().map(String::as_str).collect::<Vec<_>>(),
            vec!["apt-get", "conntrack", "iptables", "socat"]
        );
        assert_eq!(f.files.len(), 1);
        assert_eq!(f.files["/etc/hostname"].len(), 64);
    }

    #[test]
    fn node_ip_lines() {
        let f = parse(BARE, 0.0, 0.0).unwrap();
        // captured over the harness's ssh, as root: the connection came in on host0
        assert_eq!(f.ssh_local_address, Some("10.123.0.11".parse().unwrap()));
        assert_eq!(
            f.addresses,
            vec![("host0".to_string(), "10.123.0.11".parse().unwrap())]
        );
        let o = f.observed_node_ip().unwrap();
        assert_eq!(
            (o.ip.to_string(), o.interface.as_deref(), o.from_ssh),
            ("10.123.0.11".to_string(), Some("host0"), true)
        );
        let text = BARE.replace("ssh-local=10.123.0.11", "ssh-local=").replace(
            "addr=host0 inet 10.123.0.11",
            "addr=host0 inet 10.123.0.11\naddr=cni0 inet 10.244.0.1\naddr=host0 inet6 fd00::11",
        );
        let f = parse(&text, 0.0, 0.0).unwrap();
        assert_eq!(f.ssh_local_address, None);
        assert_eq!(f.addresses.len(), 3);
        // cni0 (and flannel.1, ...) exist once the CNI runs: they are never the node's address
        let o = f.observed_node_ip().unwrap();
        assert_eq!(
            (o.ip.to_string(), o.interface.as_deref(), o.from_ssh),
            ("10.123.0.11".to_string(), Some("host0"), false)
        );
        let text = text.replace(
            "addr=cni0 inet 10.244.0.1",
            "addr=cni0 inet 10.244.0.1\naddr=flannel.1 inet 10.244.0.0\naddr=eth1 inet 192.0.2.7",
        );
        let f = parse(&text, 0.0, 0.0).unwrap();
        assert_eq!(f.observed_node_ip(), None, "two host interfaces: no guess");
    }

    /// The `packages` section as the probe printed it on Debian 12 (this machine, apt lists in
    /// place): `apt-get install -s -q --no-install-recommends` for a package the lists have,
    /// one they do not, and one they only name (captured for `python`, which Debian 12 names
    /// but no longer ships; the tool's name put in).
    const APT_SECTION: &str = "@@kf:packages
manager=apt-get
apt-lists=3
ask=iptables
| Reading package lists...
| Building dependency tree...
| Reading state information...
| Package iptables is not available, but is referred to by another package.
| This may mean that the package is missing, has been obsoleted, or
| is only available from another source
| However the following packages replace it:
|   python-is-python3 2to3
| 
| E: Package 'iptables' has no installation candidate
rc=100
ask=haproxy
| Reading package lists...
| Building dependency tree...
| Reading state information...
| E: Unable to locate package haproxy
rc=100
";

    const APT_INSTALLABLE: &str = "@@kf:packages
manager=apt-get
apt-lists=3
ask=haproxy
| Reading package lists...
| Building dependency tree...
| Reading state information...
| The following additional packages will be installed:
|   liblua5.3-0 libopentracing-c-wrapper0 libopentracing1
| Suggested packages:
|   vim-haproxy haproxy-doc
| The following NEW packages will be installed:
|   haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1
| 0 upgraded, 4 newly installed, 0 to remove and 125 not upgraded.
| Inst liblua5.3-0 (5.3.6-2 Debian:12.15/oldstable [amd64])
| Inst libopentracing1 (1.6.0-4 Debian:12.15/oldstable [amd64])
| Inst libopentracing-c-wrapper0 (1.1.3-3+b1 Debian:12.15/oldstable [amd64])
| Inst haproxy (2.6.12-1+deb12u4 Debian-Security:12/oldstable-security [amd64])
| Conf liblua5.3-0 (5.3.6-2 Debian:12.15/oldstable [amd64])
| Conf libopentracing1 (1.6.0-4 Debian:12.15/oldstable [amd64])
| Conf libopentracing-c-wrapper0 (1.1.3-3+b1 Debian:12.15/oldstable [amd64])
| Conf haproxy (2.6.12-1+deb12u4 Debian-Security:12/oldstable-security [amd64])
rc=0
";

    fn with_section(section: &str) -> Facts {
        let text = BARE.replace(
            "@@kf:fstab-swap\n",
            &format!("{section}\n@@kf:fstab-swap\n"),
        );
        parse(&text, 0.0, 0.0).unwrap()
    }

    #[test]
    fn what_apt_says_it_can_and_cannot_install() {
        let f = with_section(APT_SECTION);
        assert_eq!(f.package_manager.as_deref(), Some("apt-get"));
        assert_eq!(
            f.package_checks,
            BTreeMap::from([
                (
                    "haproxy".to_string(),
                    Installable::No("E: Unable to locate package haproxy".into())
                ),
                (
                    "iptables".to_string(),
                    Installable::No("E: Package 'iptables' has no installation candidate".into())
                ),
            ])
        );
        let f = with_section(APT_INSTALLABLE);
        assert_eq!(
            f.package_checks,
            BTreeMap::from([("haproxy".to_string(), Installable::Yes)])
        );
        // before the first apt-get update, "Unable to locate" says nothing (captured with
        // -o Dir::State::Lists= an empty directory)
        let f = with_section(&APT_SECTION.replace("apt-lists=3", "apt-lists=0"));
        assert!(
            matches!(&f.package_checks["haproxy"], Installable::Unknown(why) if why.contains("apt-get update")),
            "{:?}",
            f.package_checks
        );
        // ... but an answer that it can is an answer
        let f = with_section(&APT_INSTALLABLE.replace("apt-lists=3", "apt-lists=0"));
        assert_eq!(f.package_checks["haproxy"], Installable::Yes);
        // the bare capture predates the section: nothing asked, nothing known
        let f = parse(BARE, 0.0, 0.0).unwrap();
        assert_eq!((f.package_manager, f.package_checks.len()), (None, 0));
        // an exit code that is not a number is an error, not a verdict
        let broken = APT_INSTALLABLE.replace("rc=0", "rc=zero");
        let e = parse(
            &BARE.replace("@@kf:fstab-swap\n", &format!("{broken}\n@@kf:fstab-swap\n")),
            0.0,
            0.0,
        )
        .unwrap_err();
        assert!(e.0.contains("exit code"), "{e}");
    }

    /// dnf, zypper and no package manager at all, from their documented messages and exit
    /// codes (not captured here: this machine has neither).
    #[test]
    fn what_dnf_and_zypper_say_and_a_host_without_a_package_manager() {
        let f = with_section(
            "@@kf:packages\nmanager=dnf\nask=haproxy\n| haproxy-0:2.4.22-3.el9_5.1.x86_64\nrc=0\nask=iptables\n| \nrc=0\n",
        );
        assert_eq!(f.package_checks["haproxy"], Installable::Yes);
        assert!(
            matches!(&f.package_checks["iptables"], Installable::No(w) if w.contains("dnf's cache"))
        );
        let f = with_section(
            "@@kf:packages\nmanager=dnf\nask=haproxy\n| Error: Cache-only enabled but no cache for 'baseos'\nrc=1\n",
        );
        assert_eq!(
            f.package_checks["haproxy"],
            Installable::Unknown("Error: Cache-only enabled but no cache for 'baseos'".into())
        );
        let f = with_section(
            "@@kf:packages\nmanager=zypper\nask=haproxy\n| Loading repository data...\n| Reading installed packages...\n| No matching items found.\nrc=104\n",
        );
        assert!(
            matches!(&f.package_checks["haproxy"], Installable::No(w) if w.contains("no repository"))
        );
        let f = with_section(
            "@@kf:packages\nmanager=zypper\nask=haproxy\n| Repository 'SLES15-SP5-Pool' is out-of-date. You can run 'zypper refresh' as root to update it.\n| No matching items found.\nrc=104\n",
        );
        assert!(matches!(
            &f.package_checks["haproxy"],
            Installable::Unknown(_)
        ));
        let f = with_section("@@kf:packages\nmanager=none\nask=haproxy\n| \nrc=1\n");
        assert_eq!(f.package_manager, None);
        assert!(
            matches!(&f.package_checks["haproxy"], Installable::No(w) if w.contains("no package manager"))
        );
    }

    /// The probe's packages section, run here: it names the first package manager on the
    /// PATH, asks it about every tool of os-prep's list this machine lacks and nothing else,
    /// and its answer parses.
    #[test]
    fn the_probe_asks_the_package_manager_here() {
        let script = script(&[]);
        let start = script.find("s packages\n").unwrap();
        let end = script.find("s fstab-swap\n").unwrap();
        let probe = format!(
            "s() {{ printf '\\n@@kf:%s\\n' \"$1\"; }}\n{}s end\n",
            &script[start..end]
        );
        let t = std::time::Instant::now();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&probe)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let s = sections(&text);
        let (manager, checks) = package_section(&s["packages"]).unwrap();
        let on_path = |b: &str| {
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .unwrap()
                .status
                .success()
        };
        let expected = ["apt-get", "dnf", "yum", "zypper"]
            .into_iter()
            .find(|m| on_path(m));
        assert_eq!(manager.as_deref(), expected, "{text}");
        let lacking: Vec<&str> = crate::steps::os_prep::PACKAGE_TOOLS
            .iter()
            .copied()
            .filter(|t| {
                ![
                    "/usr/local/sbin",
                    "/usr/local/bin",
                    "/usr/sbin",
                    "/usr/bin",
                    "/sbin",
                    "/bin",
                ]
                .iter()
                .any(|d| std::path::Path::new(&format!("{d}/{t}")).exists())
            })
            .collect();
        assert_eq!(
            checks.keys().map(String::as_str).collect::<Vec<_>>(),
            {
                let mut l = lacking.clone();
                l.sort();
                l
            },
            "{text}"
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn markers_fstab_and_hosts_block() {
        let text = BARE
            .replace("@@kf:installed\n", "@@kf:installed\nkubelet=abc 1.33.5\n")
            .replace("@@kf:fstab-swap\n", "@@kf:fstab-swap\n/swap.img\n")
            .replace(
                "@@kf:hosts-block\n",
                "@@kf:hosts-block\n# BEGIN kubeforge (x)\n10.0.0.1 api.x\n# END kubeforge\n",
            );
        let f = parse(&text, 0.0, 0.0).unwrap();
        assert_eq!(f.marker_sha("kubelet"), Some("abc"));
        assert_eq!(f.fstab_swap, vec!["/swap.img"]);
        assert_eq!(f.hosts_block.len(), 3);
    }

    #[test]
    fn swap_ports_modules_and_membership() {
        let text = BARE
            .replace(
                "@@kf:swaps\n",
                "@@kf:swaps\n/swap.img                               file\t\t2097148\t\t0\t\t-2\n/dev/zram0 partition 1048572 0 100\n",
            )
            .replace("00000000:0016\n", "00000000:0016\n0100007F:1A0B\n00000000:2B67\n")
            .replace("module-br_netfilter=builtin", "module-br_netfilter=loadable")
            .replace("/proc/sys/net/bridge/bridge-nf-call-iptables=1", "/proc/sys/net/bridge/bridge-nf-call-iptables=missing")
            .replace("fs-overlay=yes\nmodule-overlay=builtin", "module-overlay=missing")
            .replace("@@kf:cgroupfs\ntmpfs", "@@kf:cgroupfs\ncgroup2fs")
            .replace(
                "@@kf:versions\n",
                "@@kf:versions\ncontainerd=/usr/local/bin/containerd|containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\nkubelet=/usr/local/bin/kubelet|Kubernetes v1.33.5\n",
            )
            .replace(
                "@@kf:membership\n",
                "@@kf:membership\nconf=admin.conf\nconf=kubelet.conf\nmanifest=kube-apiserver\nmanifest=etcd\nca-sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nca-spki-sha256=fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210\nserver=https://node1:6443\nmarker-cluster=prod\n",
            )
            .replace("active-kubelet=inactive", "active-kubelet=active");
        let f = parse(&text, 0.0, 0.0).unwrap();
        assert_eq!(f.swap_mib, (2097148 + 1048572) / 1024);
        assert_eq!(f.listening_ports, BTreeSet::from([22, 6667, 11111]));
        assert_eq!(f.kernel_features.br_netfilter, Feature::Loadable);
        assert_eq!(f.kernel_features.bridge_nf_call_iptables, None);
        assert_eq!(f.kernel_features.overlay, Feature::Missing);
        assert_eq!(f.cgroup_version, 2);
        assert_eq!(f.installed["containerd"].version.as_deref(), Some("1.6.20"));
        assert_eq!(f.installed["kubelet"].path, "/usr/local/bin/kubelet");
        assert_eq!(f.membership.role(), Some(MemberRole::ControlPlane));
        assert_eq!(f.membership.cluster(), Some("prod"));
        assert_eq!(
            f.membership.ca_spki_sha256.as_deref(),
            Some("fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210")
        );
        assert_eq!(f.membership.server.as_deref(), Some("https://node1:6443"));
        assert!(f.membership.kubelet_active);
    }
}
