#!/usr/bin/env bash
# Benchmark: `kubeforge status` against Ansible's fact gathering (`ansible all -m setup`, forks =
# host count) on the same harness hosts, side by side in the same run, at 5, 10 and 20 hosts.
# Reports the median wall time of each, the ratio ansible/kubeforge, and peak memory (max RSS of
# the process, GNU time). Not a test: it asserts nothing.
#
#   sudo bash benches/status.sh            # RUNS=5 SIZES="5 10 20" by default
#
# Needs root and the harness (../shared/harness); installs ansible-core from PyPI into a venv.
# Ansible runs with ControlPersist off, so both tools open fresh connections in every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SHARED=${KUBEFORGE_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
NODES=$SHARED/harness/nodes.sh
H=${HARNESS_DIR:-/tmp/harness}
RUNS=${RUNS:-5}
SIZES=${SIZES:-"5 10 20"}
VENV=${VENV:-/tmp/kubeforge-bench-venv}
W=$(mktemp -d /tmp/kubeforge-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT

[[ -x $VENV/bin/ansible ]] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q ansible-core; }
cargo build --release --locked -q
KF=$ROOT/target/release/kubeforge
mkdir -p "$H/debs"

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

printf '%-6s %-14s %-14s %-8s %-16s %-16s\n' hosts kubeforge_s ansible_s ratio kubeforge_maxrss ansible_maxrss
for n in $SIZES; do
  bash "$NODES" up "$n" >/dev/null 2>&1
  inv=$W/inv-$n.yaml; ans=$W/hosts-$n.ini
  {
    echo "apiVersion: kubeforge.io/v1alpha1"; echo "kind: Cluster"; echo "metadata: {name: bench}"
    echo "spec:"; echo "  kubernetes: {version: 1.33.5}"
    echo "  ssh: {keyPath: $H/id_ed25519, knownHosts: $H/state/known_hosts, config: none}"
    echo "  options: {concurrency: $n}"
    echo "  hosts:"
    for i in $(seq 1 "$n"); do
      role=worker; ((i <= 3)) && role=control-plane
      echo "    - {name: node$i, address: 10.123.0.$((10 + i)), role: $role}"
    done
  } > "$inv"
  {
    echo "[all]"
    for i in $(seq 1 "$n"); do echo "node$i ansible_host=10.123.0.$((10 + i))"; done
    echo "[all:vars]"
    echo "ansible_user=root"
    echo "ansible_ssh_private_key_file=$H/id_ed25519"
    echo "ansible_python_interpreter=/usr/bin/python3"
    echo "ansible_ssh_common_args='-o UserKnownHostsFile=$H/state/known_hosts -o StrictHostKeyChecking=yes -o ControlMaster=no -o ControlPersist=no'"
  } > "$ans"
  export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_PIPELINING=True ANSIBLE_STDOUT_CALLBACK=minimal ANSIBLE_LOCAL_TEMP=$W/ansible-tmp
  # warm-up (and a check that both work)
  "$KF" status -f "$inv" -o json > "$W/kf.json" 2>/dev/null || { echo "kubeforge status failed at $n hosts" >&2; "$KF" status -f "$inv" >&2; exit 1; }
  "$VENV/bin/ansible" all -i "$ans" -m setup -f "$n" > "$W/ans.out" 2>&1 || { echo "ansible failed at $n hosts" >&2; tail "$W/ans.out" >&2; exit 1; }
  : > "$W/kf.t"; : > "$W/ans.t"
  for _ in $(seq 1 "$RUNS"); do   # alternate A B A B so drift hits both
    /usr/bin/time -f '%e %M' -a -o "$W/kf.t" "$KF" status -f "$inv" -o json > /dev/null 2>&1 || true
    /usr/bin/time -f '%e %M' -a -o "$W/ans.t" "$VENV/bin/ansible" all -i "$ans" -m setup -f "$n" > /dev/null 2>&1 || true
  done
  kf=$(cut -d' ' -f1 "$W/kf.t" | median); an=$(cut -d' ' -f1 "$W/ans.t" | median)
  kfm=$(cut -d' ' -f2 "$W/kf.t" | sort -n | tail -1); anm=$(cut -d' ' -f2 "$W/ans.t" | sort -n | tail -1)
  ratio=$(awk -v a="$an" -v k="$kf" 'BEGIN{ if (k > 0) printf "%.1fx", a/k; else print "inf" }')
  printf '%-6s %-14s %-14s %-8s %-16s %-16s\n' "$n" "$kf" "$an" "$ratio" "${kfm} KiB" "${anm} KiB"
done
echo "(median of $RUNS runs each, alternating; ratio = ansible / kubeforge; maxrss = largest single process, so Ansible's forked workers are not summed)"
