#!/usr/bin/env bash
# Benchmark: wall time of `kubeforge apply` for 1 control plane + 1 worker and for 3 control
# planes + 1 worker on fresh harness hosts, split into kubeforge's own time and the time spent
# waiting on kubeadm and the kubelets, plus the bytes uploaded per host. Not a test.
#
#   sudo bash benches/apply.sh        # RUNS=3 by default; each run starts from fresh hosts
#
# The Kubernetes binaries are the harness doubles (kubeadm init takes ~7 s there, less than a
# real one); containerd, runc and the CNI plugins are real. The artifact cache is warm after
# the first run, so "download" is mostly hashing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SHARED=${KUBEFORGE_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
NODES=$SHARED/harness/nodes.sh
H=${HARNESS_DIR:-/tmp/harness}
RUNS=${RUNS:-3}
VERSION=${VERSION:-1.33.5}
W=$(mktemp -d /tmp/kubeforge-bench-apply.XXXXXX)
trap 'rm -rf "$W"' EXIT
cargo build --release --locked -q
KF=$ROOT/target/release/kubeforge
mkdir -p "$H/debs"
[[ -f $H/mirror/index.json ]] || bash "$NODES" mirror >/dev/null

# inventories and the manifest they need, as a newcomer makes them (scripts/harness-inventory.sh)
inv_one=$(bash scripts/harness-inventory.sh -c 1 -w 1 -v "$VERSION" -n one -o "$W")
inv_ha=$(bash scripts/harness-inventory.sh -c 3 -w 1 -v "$VERSION" -n ha -o "$W")
for f in "$inv_one" "$inv_ha"; do sed -i "s@^  artifacts:@  artifacts:\n    cacheDir: $W/cache@" "$f"; done

printf '%-6s %-4s %-8s %-10s %-10s %s\n' topo run wall_s kubeforge_s waiting_s uploaded_per_host
for topo in one ha; do
  n=2; [[ $topo == ha ]] && n=4
  for r in $(seq 1 "$RUNS"); do
    bash "$NODES" down >/dev/null 2>&1 || true
    mkdir -p "$H/debs"; bash "$NODES" up "$n" >/dev/null 2>&1
    start=$(date +%s.%N)
    "$KF" apply -f "$W/$topo.yaml" --yes -o json > "$W/report.json" 2> "$W/apply.log" || { tail -20 "$W/apply.log" >&2; exit 1; }
    wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    python3 - "$W/report.json" "$topo" "$r" "$wall" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1])); topo, run, wall = sys.argv[2], sys.argv[3], float(sys.argv[4])
up = ", ".join(f"{h} {b/1048576:.1f}MiB" for h, b in rep["uploaded_bytes"].items())
phases = " ".join(f"{p}={s}" for p, s in rep["phases"])
print(f"{topo:<6} {run:<4} {wall:<8.1f} {wall - rep['waited_seconds']:<10.1f} {rep['waited_seconds']:<10.1f} {up}")
print(f"{'':12}phases: {phases}")
PY
  done
done
bash "$NODES" down >/dev/null 2>&1 || true
