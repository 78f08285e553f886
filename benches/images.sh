#!/usr/bin/env bash
# Benchmark: getting the release's container images onto the nodes, image mode `push` (kubeforge
# sends each node an OCI archive of what it lacks, over SSH) against `pull` through a mirror
# (containerd pulls from a registry via hosts.toml), at 3 hosts (1 control plane + 2 workers)
# and 20 hosts (3 + 17), on fresh harness hosts each time. Not a test.
#
#   sudo bash benches/images.sh                 # RUNS=1, HOSTS="3 20", MODES="push pull"
#   RUNS=3 HOSTS=3 sudo -E bash benches/images.sh
#
# Per run it records the wall time of `kubeforge apply` and of its push-images step, the bytes
# each node got (push: kubeforge's uploaded_bytes less what the same cluster's pull-mode apply
# uploads, i.e. binaries and configs; pull: what the registry's access log says it served that
# node), the operator's (push) or registry's (pull) upload in total, and what a second apply
# sends and takes. Then one table (benches/images-fixture.py table), written to $OUT/table.md.
#
# The images are built here (benches/images-fixture.py): the release's references, with layers
# of random data sized like the real amd64 images, pushed by skopeo into Debian's
# docker-registry. That registry serves both modes on 10.123.0.1:$REGISTRY_PORT:
# push mode fetches through it as `registryMirrors` (operator side), pull mode's nodes pull
# through it. The Kubernetes binaries are the harness's doubles, which run no image; pull mode's
# pull is therefore made the way the kubelet would trigger it: on every node at once,
# `ctr images pull --hosts-dir /etc/containerd/certs.d` of each image the node runs, by digest,
# one after the other (the kubelet's default serializeImagePulls).
#
# The harness hosts are shared: every locked part (hosts up, apply, pull, hosts down) runs under
# `flock $HARNESS_LOCK` (default /tmp/kf-harness.lock), one (hosts, mode, run) at a time, each
# bounded by LOCKED_TIMEOUT (default 11m), the lock released in between.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SHARED=${KUBEFORGE_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
NODES=$SHARED/harness/nodes.sh
H=${HARNESS_DIR:-/tmp/harness}
RUNS=${RUNS:-1}
HOSTS=${HOSTS:-"3 20"}
MODES=${MODES:-"push pull"}
VERSION=${VERSION:-1.33.5}
PORT=${REGISTRY_PORT:-5123}
LOCK=${HARNESS_LOCK:-/tmp/kf-harness.lock}
LOCKED_TIMEOUT=${LOCKED_TIMEOUT:-11m}
# the built images and the registry's storage, kept between invocations (same digests each time)
FIX=${BENCH_FIXTURE:-/var/tmp/kubeforge-bench-images}
KF=${CARGO_TARGET_DIR:-$ROOT/target}/release/kubeforge
export ROOT NODES H VERSION PORT FIX KF

# The registry on $1 (address) with the fixture's storage, its logs in $2; pid in $FIX/registry.pid.
registry_start() {
  cat > "$FIX/registry.yml" <<EOF
version: 0.1
log: {level: info}
storage: {filesystem: {rootdirectory: $FIX/registry}, delete: {enabled: false}}
http: {addr: "$1:$PORT"}
EOF
  docker-registry serve "$FIX/registry.yml" < /dev/null > "$2" 2>&1 &
  echo $! > "$FIX/registry.pid"
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://$1:$PORT/v2/" && return 0
    kill -0 "$(<"$FIX/registry.pid")" 2>/dev/null || { cat "$2" >&2; return 1; }
    sleep 0.1
  done
  echo "the registry on $1:$PORT does not answer" >&2; return 1
}
registry_stop() {
  if [[ -f $FIX/registry.pid ]]; then
    kill "$(<"$FIX/registry.pid")" 2>/dev/null || true
    wait "$(<"$FIX/registry.pid")" 2>/dev/null || true
    rm -f "$FIX/registry.pid"
  fi
}
# host side of each node's veth: what was sent to the node (tx of vb-nodeI), "nodeI bytes" lines
veth() { for i in $(seq 1 "$1"); do echo "node$i $(<"/sys/class/net/vb-node$i/statistics/tx_bytes")"; done; }
now() { date +%s.%N; }

# One (hosts, mode, run), under the harness lock: fresh hosts, the registry on the bridge, the
# applies (and pull mode's pull), hosts down. Results into $2 (a run directory).
locked_run() {
  local n=$1 d=$2 mode cps inv t
  mode=$(<"$d/mode"); cps=$(<"$d/cps"); inv=$d/cluster.yaml
  trap 'registry_stop; bash "$NODES" down >/dev/null 2>&1 || true' EXIT
  trap 'exit 143' TERM INT
  bash "$NODES" down >/dev/null 2>&1 || true
  mkdir -p "$H/debs"
  t=$(now); bash "$NODES" up "$n" > "$d/up.log" 2>&1 || { tail -20 "$d/up.log" >&2; return 1; }
  echo "$t $(now)" > "$d/up.time"
  registry_start 10.123.0.1 "$d/registry.log"
  for k in 1 2; do
    veth "$n" > "$d/veth-apply$k.before"; wc -l < "$d/registry.log" > "$d/registry.apply$k.line"
    t=$(now)
    "$KF" apply -f "$inv" --yes -o json > "$d/apply$k.json" 2> "$d/apply$k.log" \
      || { tail -30 "$d/apply$k.log" >&2; return 1; }
    echo "$t $(now)" > "$d/apply$k.time"
    veth "$n" > "$d/veth-apply$k.after"
  done
  if [[ $mode == pull ]]; then
    # every node pulls what it runs (the images its role needs), all nodes at once
    veth "$n" > "$d/veth-pull.before"; wc -l < "$d/registry.log" > "$d/registry.pull.line"
    local i refs pids=()
    t=$(now)
    for i in $(seq 1 "$n"); do
      refs=$(awk -F'\t' -v cp=$((i <= cps)) '$5 == 0 || cp {printf "%s ", $8}' "$d/images.tsv")
      # shellcheck disable=SC2086 # refs: one word per reference, none has a space
      bash "$NODES" ssh "$i" "s=\$(date +%s.%N); for r in $refs; do /usr/local/bin/ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d \"\$r\" >/dev/null || exit 1; done; echo \$s \$(date +%s.%N)" \
        > "$d/pull-node$i.time" 2> "$d/pull-node$i.log" &
      pids+=($!)
    done
    local failed=0
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || { echo "node$((i + 1)): the pull failed: $(cat "$d/pull-node$((i + 1)).log")" >&2; failed=1; }; done
    echo "$t $(now)" > "$d/pull.time"
    veth "$n" > "$d/veth-pull.after"
    ((failed == 0)) || return 1
    # proof that containerd holds each image by the pinned digest
    bash "$NODES" ssh 1 /usr/local/bin/ctr -n k8s.io images ls > "$d/node1-images.txt"
  fi
  bash "$NODES" ssh "$n" /usr/local/bin/ctr -n k8s.io images ls > "$d/node$n-images.txt"
  wc -l < "$d/registry.log" > "$d/registry.end.line"
}

if [[ ${1:-} == __locked ]]; then
  shift; locked_run "$@"; exit
fi

[[ $(id -u) == 0 ]] || { echo "run as root (the harness needs it)" >&2; exit 1; }
for tool in docker-registry skopeo curl flock python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (Debian packages docker-registry skopeo curl util-linux python3)" >&2; exit 1; }
done
OUT=${OUT:-$(mktemp -d /tmp/kubeforge-bench-images.XXXXXX)}
mkdir -p "$OUT" "$FIX"
cargo build --release --locked -q
[[ -f $H/mirror/index.json ]] || flock -o "$LOCK" bash "$NODES" mirror >/dev/null

# the images, built once, and the manifest pinning them (rebuilt when the helper changes)
bash scripts/harness-inventory.sh -v "$VERSION" -n unused -o "$OUT" >/dev/null
stamp=$(sha256sum benches/images-fixture.py "$OUT/manifest-$VERSION.yaml" | sha256sum | cut -c1-16)
if [[ ! -f $FIX/stamp || $(<"$FIX/stamp") != "$stamp" ]]; then
  echo "building the images (random layers, ~190 MiB) into $FIX" >&2
  rm -rf "$FIX/layouts" "$FIX/registry" "$FIX/images.tsv"
  python3 benches/images-fixture.py build "$FIX" "$OUT/manifest-$VERSION.yaml" "$FIX/manifest.yaml"
  # pushed through a registry on loopback (the bridge exists only while the harness is up)
  registry_start 127.0.0.1 "$FIX/registry-fill.log"
  trap registry_stop EXIT
  while IFS=$'\t' read -r _ repo tag _ _ _ layout; do
    skopeo copy --all --preserve-digests --quiet --dest-tls-verify=false \
      "oci:$layout:$tag" "docker://127.0.0.1:$PORT/$repo:$tag"
  done < "$FIX/images.tsv"
  registry_stop; trap - EXIT
  echo "$stamp" > "$FIX/stamp"
fi

echo "results in $OUT" >&2
for n in $HOSTS; do
  cps=1; ((n >= 5)) && cps=3
  for mode in $MODES; do
    for r in $(seq 1 "$RUNS"); do
      d=$OUT/runs/$n-$mode-$r; mkdir -p "$d"
      echo "$n" > "$d/hosts"; echo "$mode" > "$d/mode"; echo "$r" > "$d/run"; echo "$cps" > "$d/cps"
      # each node's references (repo:tag@digest): column 8 of the run's images.tsv
      awk -F'\t' 'BEGIN {OFS = "\t"} {
          reg = ($1 ~ /^cni\./) ? "ghcr.io" : "registry.k8s.io"
          print $0, reg "/" $2 ":" $3 "@" $4 }' "$FIX/images.tsv" > "$d/images.tsv"
      bash scripts/harness-inventory.sh -c "$cps" -w $((n - cps)) -v "$VERSION" -n "bench$n" -o "$d" >/dev/null
      # the built images' manifest, the image mode, an empty operator cache, the registry as
      # the mirror of both registries (operator side in push mode, nodes' side in pull mode)
      sed -i -e "s@^    manifest: .*@    manifest: $FIX/manifest.yaml@" \
        -e "s@^    images: {mode: pull}@    images: {mode: $mode}\n    cacheDir: $d/cache\n    allowHttpRegistryMirrors: true\n    registryMirrors: {registry.k8s.io: ['http://10.123.0.1:$PORT'], ghcr.io: ['http://10.123.0.1:$PORT']}@" \
        -e '/^    # the harness.s kubelet double runs no images/d' "$d/bench$n.yaml"
      mv "$d/bench$n.yaml" "$d/cluster.yaml"
      echo "== $n hosts ($cps control planes), $mode, run $r" >&2
      if ! flock -o "$LOCK" timeout "$LOCKED_TIMEOUT" bash "$ROOT/benches/images.sh" __locked "$n" "$d"; then
        echo "run $d failed or timed out (see its logs)" >&2; exit 1
      fi
      python3 benches/images-fixture.py record "$d" > "$d/record.json"
    done
  done
done
python3 benches/images-fixture.py table "$OUT/runs" | tee "$OUT/table.md"
