#!/usr/bin/env bash
# Runs kubeforge's whole test suite on a fresh Debian 12 machine, as root: installs what the
# tests need (Debian packages for the test hosts), brings up harness hosts (systemd-nspawn
# machines with a real sshd, ../shared/harness) and the OpenStack lab (real Keystone, Nova,
# Neutron, Glance, Octavia on loopback, ../shared/openstack-lab), builds and runs every test,
# lints the code (clippy with warnings as errors) and every shell script of the repository
# (shellcheck), and always tears the hosts and the lab down. Safe to re-run.
#
# Env: KUBEFORGE_SHARED (default ../shared), HARNESS_DIR (default /tmp/harness),
#      LAB (default /tmp/openstack-lab), KEEP_HOSTS=1 leaves the hosts and the lab up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export KUBEFORGE_SHARED=${KUBEFORGE_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
export HARNESS_DIR=${HARNESS_DIR:-/tmp/harness}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export INSTA_UPDATE=no          # a changed message must be a reviewed snapshot, never rewritten here
export LAB=${LAB:-/tmp/openstack-lab}
NODES=$KUBEFORGE_SHARED/harness/nodes.sh
OSLAB=$KUBEFORGE_SHARED/openstack-lab

say() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

[[ $(id -u) == 0 ]] || { echo "scripts/test.sh needs root (the test hosts are systemd-nspawn machines)" >&2; exit 1; }
[[ -x $NODES || -f $NODES ]] || { echo "harness not found at $NODES (set KUBEFORGE_SHARED)" >&2; exit 1; }

say "install test prerequisites"
PKGS=(debootstrap systemd-container btrfs-progs zstd bridge-utils iproute2 openssh-client util-linux
      python3 python3-yaml curl dpkg iptables shellcheck
      docker-registry skopeo apache2-utils openssl)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

say "build"
command -v cargo >/dev/null || {
  echo "scripts/test.sh needs a Rust toolchain (cargo, Rust 1.89 or newer, as README.md says; Debian 12's is too old): install it with rustup, https://rustup.rs" >&2
  exit 1
}
cargo build --locked --all-targets

say "lint"
# clippy comes with rustup's default profile; a minimal toolchain lacks it
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo clippy --locked --all-targets -- -D warnings
# every shell script: .ci/run and each *.sh outside build output (scripts/, benches/, and
# any added later)
mapfile -d '' sh_files < <(find . \( -path ./target -o -path ./.git \) -prune -o -type f -name '*.sh' -print0 | sort -z)
sh_files+=(.ci/run)
shellcheck "${sh_files[@]}"
echo "shellcheck: ${#sh_files[@]} scripts clean"

say "harness hosts up"
# nodes.sh expects these directories to exist on a fresh machine
mkdir -p "$HARNESS_DIR/debs"
cleanup() {
  if [[ ${KEEP_HOSTS:-0} != 1 ]]; then
    bash "$NODES" down >/dev/null 2>&1 || true
    bash "$OSLAB/down.sh" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
bash "$NODES" up 3

say "tests (all but the OpenStack lab's)"
# unit and integration tests; the harness tests are #[ignore]d in a plain `cargo test`. They run
# before the OpenStack lab starts: its services would compete with the harness hosts for this
# machine's 2 cores, and the etcd doubles' one-second peer probes lose quorum under that load
mapfile -t targets < <(find tests -maxdepth 1 -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | grep -vx openstack_lab | sort)
test_args=()
for t in "${targets[@]}"; do test_args+=(--test "$t"); done
failed=0
cargo test --locked --no-fail-fast --lib --bins "${test_args[@]}" -- --include-ignored || failed=1
cargo test --locked --doc || failed=1

say "OpenStack lab up"
# installs its Debian packages the first time (about 340), then starts and seeds the services.
# A lab left running is stopped first: up.sh does that too, but checks its ports before the old
# services have let go of them.
bash "$OSLAB/down.sh" >/dev/null 2>&1 || true
for _ in $(seq 60); do
  busy=0
  for port in 5000 8774 8778 9292 9696 9876 5672 25672; do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && busy=1
  done
  ((busy)) || break
  sleep 1
done
bash "$OSLAB/up.sh"
export OS_CLIENT_CONFIG_FILE=$LAB/clouds.yaml


say "tests against the OpenStack lab"
cargo test --locked --no-fail-fast --test openstack_lab -- --include-ignored || failed=1
((failed == 0)) || { say "tests failed"; exit 1; }
say "all tests passed"
