//! The command line: clap types only, no behaviour.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const ABOUT: &str =
    "Turn an inventory file into a production Kubernetes cluster on machines you own";

const LONG_ABOUT: &str = "\
kubeforge turns an inventory file into a production Kubernetes cluster on machines you own \
(bare metal reached over SSH, or VMs it creates on OpenStack) and keeps it there: upgrades, \
node additions and removals are driven by editing the same file.

Start with:
  kubeforge init > cluster.yaml        # a commented example inventory
  kubeforge validate -f cluster.yaml   # check it: every problem with file, line, column and a hint";

#[derive(Debug, Parser)]
#[command(name = "kubeforge", version = crate::VERSION, about = ABOUT, long_about = LONG_ABOUT)]
#[command(propagate_version = true, arg_required_else_help = true)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an inventory file without touching any host
    ///
    /// Reports every problem at once, each with its file, line, column, field path and a hint.
    /// Exits 0 with a one-line summary when the file is valid (warnings go to stderr), and 1
    /// when it is not.
    Validate(ValidateArgs),

    /// Print a commented example inventory to start from
    ///
    /// Example: kubeforge init --name prod > prod.yaml
    Init(InitArgs),

    /// Connect to every host and show its facts and preflight results (read-only)
    ///
    /// Prints a table of reachability, OS, kernel, installed versions, cluster membership and
    /// preflight results. Exits 1 when a host is unreachable or fails a blocking check.
    Status(StatusArgs),

    /// Show what apply would change, on which host (read-only)
    ///
    /// Connects to every host, gathers facts, runs preflight, reads the cluster's API, and
    /// prints per host the actions apply would take. On a converged cluster it prints that
    /// nothing would change.
    Plan(PlanArgs),

    /// Bring the hosts and the cluster to the inventory's state
    ///
    /// Shows the plan, asks for confirmation on a terminal (unless --yes), then: downloads and
    /// verifies every artifact, prepares the hosts (OS, containerd, kubelet, API endpoint),
    /// runs kubeadm init and joins, deploys the CNI, waits until every node is Ready, verifies
    /// the cluster, and writes the admin kubeconfig beside the inventory (<cluster>.kubeconfig,
    /// mode 0600). After a failure, run it again: it continues from the hosts' state.
    Apply(ApplyArgs),

    /// Write the cluster's admin kubeconfig, or merge it into ~/.kube/config
    ///
    /// Without --merge the kubeconfig goes to stdout. The server is the first control plane's
    /// address (or the external endpoint); the context is named after the cluster.
    Kubeconfig(KubeconfigArgs),

    /// Nodes: remove one safely
    #[command(subcommand)]
    Node(NodeCommand),

    /// Tear the cluster down on every reachable host (after a typed confirmation)
    ///
    /// Runs kubeadm reset and removes the kubelet's and etcd's data, the CNI configuration and
    /// interfaces and kube-proxy's iptables rules. containerd and the binaries stay (unless
    /// --remove-binaries), so `kubeforge apply` can build a new cluster on the hosts. Every
    /// host is read first: one whose /etc/kubeforge/cluster names another cluster, or that holds
    /// another CA, is refused (before any host changes) unless --force; one with neither
    /// kubeforge's marker nor kubeadm's state is skipped.
    Reset(ResetArgs),

    /// Save an etcd snapshot, the PKI and the kubeadm configuration locally
    ///
    /// Writes <DIR>/<cluster>-<UTC time>/ (mode 0700: it holds the CA keys) with
    /// SHA256SUMS. See README.md for the restore procedure.
    Backup(BackupArgs),

    /// Control-plane certificates
    #[command(subcommand)]
    Certs(CertsCommand),

    /// Binaries, images and manifests: bundles for air-gapped sites
    #[command(subcommand)]
    Artifacts(ArtifactsCommand),

    /// Delete everything kubeforge created in OpenStack for the cluster (after a typed confirmation)
    ///
    /// Servers, their floating IPs, the load balancer, security groups, server groups, the
    /// router, subnet and network kubeforge made, and the key pair. Nothing else: resources
    /// without the cluster's tag (an existing network named in the inventory, say) stay.
    Destroy(DestroyArgs),

    /// Run a shell command on hosts of the inventory, as root (sudo -n for other users)
    ///
    /// Example: kubeforge exec -f cluster.yaml --role worker -- systemctl is-active kubelet
    Exec(ExecArgs),

    /// Print kubeforge's version and the Kubernetes releases it can install
    Version(VersionArgs),

    /// Print a shell completion script
    ///
    /// Example (bash): kubeforge completion bash > /etc/bash_completion.d/kubeforge
    Completion(CompletionArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people
    Text,
    /// For programs (stable field names)
    Json,
}

#[derive(Debug, Args)]
pub struct FileArg {
    /// The inventory file
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        env = "KUBEFORGE_FILE"
    )]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub file: FileArg,

    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Record the keys of hosts not yet in known_hosts (like OpenSSH's accept-new); a changed
    /// key is still refused
    #[arg(long)]
    pub accept_new_host_keys: bool,

    /// Seconds to wait for a host's SSH handshake and each authentication exchange, 1-3600
    /// [default: ConnectTimeout from ~/.ssh/config, else 10]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The inventory file
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        env = "KUBEFORGE_FILE",
        required_unless_present = "list_checks"
    )]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Preflight checks to skip, by name (or `all`); see `kubeforge status --list-checks`
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    pub ignore_preflight: Vec<String>,

    /// List the preflight checks and exit (needs no inventory)
    #[arg(long)]
    pub list_checks: bool,

    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub file: FileArg,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Preflight checks to skip, by name (or `all`)
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    pub ignore_preflight: Vec<String>,

    /// Also show the removal of the cluster's nodes that the inventory no longer lists (as
    /// `apply --prune` would do)
    #[arg(long)]
    pub prune: bool,

    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub file: FileArg,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Preflight checks to skip, by name (or `all`)
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    pub ignore_preflight: Vec<String>,

    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Also remove (drain, delete, reset) the cluster's nodes that the inventory no longer lists.
    /// Destructive: confirmed on a terminal, or by --yes (off a terminal, refused without it)
    #[arg(long)]
    pub prune: bool,

    /// Reset the hosts of pruned or scaled-down nodes even when the cluster cannot vouch for
    /// them (no kubeforge marker of this cluster nor its CA; a marker or CA of another cluster)
    #[arg(long)]
    pub force: bool,

    /// With spec.openstack: only create or adopt the cloud resources, then stop (no bootstrap)
    #[arg(long)]
    pub cloud_only: bool,

    /// Output format of the final report
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Drain a node, delete it, remove its etcd member (control planes), reset its host
    ///
    /// Refuses to remove the last control plane, or one whose removal would leave etcd without
    /// quorum. An unreachable host is still removed from the cluster (its own cleanup is
    /// skipped, with a warning); a dead etcd member needs --force. The host is read before
    /// anything changes: one the cluster cannot vouch for (another cluster's marker or CA, or
    /// neither marker nor CA of this one, or a name other than the node's) is refused unless
    /// --force. Afterwards, delete the host from the inventory.
    Remove(NodeRemoveArgs),
}

#[derive(Debug, Args)]
pub struct NodeRemoveArgs {
    /// Node names
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,

    #[command(flatten)]
    pub file: FileArg,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Remove a control plane whose etcd member is dead, and reset a host that the cluster
    /// cannot vouch for (no kubeforge marker of this cluster nor its CA; a marker or CA of
    /// another cluster)
    #[arg(long)]
    pub force: bool,

    /// Also remove kubeforge's binaries and units from the host
    #[arg(long)]
    pub remove_binaries: bool,

    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub file: FileArg,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Also remove kubeforge's binaries, units and containerd from the hosts
    #[arg(long)]
    pub remove_binaries: bool,

    /// Reset hosts that the cluster cannot vouch for: a host whose /etc/kubeforge/cluster names
    /// another cluster, or with kubeadm's state but neither the marker nor the cluster's CA
    #[arg(long)]
    pub force: bool,

    /// Do not ask for the typed confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub file: FileArg,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Directory to write the backup into (default: backups/ beside the inventory)
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub file: FileArg,

    /// Do not ask for the typed confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Renew the certificates of every control plane, one at a time, and restart its static pods
    Renew(CertsRenewArgs),
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Download everything the cluster needs into one directory, verified (a bundle)
    ///
    /// Every binary of the release for the arches (at its upstream path, so the directory is
    /// also a valid spec.artifacts.mirror), every container image it needs (blobs under
    /// images/sha256/), the CNI manifest from its URL and a copy of the release manifest, and
    /// index.json listing every file with its sha256 and size. Run it again to add what is
    /// missing: what is there is verified, not downloaded again. Carry the directory to the
    /// site and set spec.artifacts.bundle: apply then needs no network on the operator's
    /// machine.
    Fetch(ArtifactsFetchArgs),
}

#[derive(Debug, Args)]
pub struct ArtifactsFetchArgs {
    #[command(flatten)]
    pub file: FileArg,

    /// The bundle directory: created, or an existing bundle to complete [default:
    /// spec.artifacts.bundle, else <cluster>-bundle beside the inventory]
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// Only these arches [default: every arch the release manifest lists]
    #[arg(long, value_name = "ARCH[,ARCH]", value_delimiter = ',')]
    pub arch: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CertsRenewArgs {
    #[command(flatten)]
    pub file: FileArg,

    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    pub file: FileArg,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Merge into ~/.kube/config (or the first file of $KUBECONFIG), as a context named after
    /// the cluster, keeping the other contexts
    #[arg(long, conflicts_with = "output")]
    pub merge: bool,

    /// Write to PATH (mode 0600) instead; `-` prints it to stdout. Without --merge or
    /// --output, ~/.kube/config is written when it does not exist yet
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub file: FileArg,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Only these hosts (inventory names)
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    pub hosts: Vec<String>,

    /// Only hosts with this role
    #[arg(long, value_parser = ["control-plane", "worker"])]
    pub role: Option<String>,

    /// Seconds the command may run on each host, 1-86400 (24 h)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout: Option<u64>,

    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// The command (a POSIX shell command line)
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Cluster name (a DNS label)
    #[arg(long, default_value = "prod")]
    pub name: String,

    /// Kubernetes release (default: the newest kubeforge knows)
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
