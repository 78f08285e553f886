#!/usr/bin/env bash
# Writes an inventory (and the release manifest it needs) for harness hosts, so kubeforge can
# be tried without real machines: the harness (../shared/harness) runs systemd-nspawn hosts
# with a real sshd and serves an artifact mirror with containerd, runc, CNI plugins and
# documented doubles of kubeadm/kubelet/kubectl/crictl.
#
#   sudo bash scripts/harness-inventory.sh -c 1 -w 1 -o /tmp/demo     # writes /tmp/demo/demo.yaml
#   options: -c CONTROL_PLANES (1)  -w WORKERS (1)  -v VERSION (1.33.5)  -n NAME (demo)  -o DIR
#
# Bring the hosts up first: sudo bash ../shared/harness/nodes.sh up $((C + W)).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
H=${HARNESS_DIR:-/tmp/harness}
CPS=1 WORKERS=1 VERSION=1.33.5 NAME=demo OUT=.
while getopts c:w:v:n:o: opt; do
  case $opt in c) CPS=$OPTARG;; w) WORKERS=$OPTARG;; v) VERSION=$OPTARG;; n) NAME=$OPTARG;; o) OUT=$OPTARG;; *) exit 2;; esac
done
[[ -f $H/mirror/index.json ]] || { echo "no harness mirror at $H/mirror: run ../shared/harness/nodes.sh up first" >&2; exit 1; }
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
python3 - "$H/mirror/index.json" "$VERSION" "$ROOT/images" > "$OUT/manifest-$VERSION.yaml" <<'PY'
import glob, json, re, sys
idx, ver, images = sys.argv[1], sys.argv[2], sys.argv[3]
minor = ver.rsplit(".", 1)[0]
print(f"# kubeforge release manifest for the harness doubles of Kubernetes {ver} (from {idx})")
print(f"apiVersion: kubeforge.io/v1alpha1\nkind: ReleaseManifest\nkubernetes: {ver}\nartifacts:")
found = set()
for a in json.load(open(idx))["artifacts"]:
    c, v = a["component"], a["version"]
    # the index also lists runc.sha256sum (arch "sha256sum"): binaries only
    if a["arch"] != "amd64" or (c in ("kubeadm", "kubelet", "kubectl") and v != ver) or (c == "crictl" and not v.startswith(minor + ".")):
        continue
    found.add(c)
    print(f"  - {{component: {c}, version: {v}, arch: amd64, url: 'http://10.123.0.1:8080/{a['path']}', path: '{a['path']}', sha256: {a['sha256']}, size: {a['size']}, source: 'harness mirror index.json'}}")
if len(found) < 7:
    sys.exit(f"the harness mirror has no doubles of Kubernetes {ver} (set HARNESS_K8S_VERSIONS)")
# tools (helm, for spec.addons.charts): the mirror's "addons" list, the harness's helm double
tools = [a for a in json.load(open(idx)).get("addons", []) if a["component"] == "helm" and a["arch"] == "amd64"]
if tools:
    print("tools:")
    for a in tools:
        print(f"  - {{component: helm, version: {a['version']}, arch: amd64, url: 'http://10.123.0.1:8080/{a['path']}', path: '{a['path']}', sha256: {a['sha256']}, size: {a['size']}, source: 'harness mirror index.json addons (the helm double)'}}")
builtin = sorted(glob.glob(f"{images}/{minor}.*.yaml"))
if not builtin:
    sys.exit(f"no built-in manifest of Kubernetes {minor} to take the image names from")
text = open(builtin[-1]).read()
bv = [l.split(": ")[1] for l in text.splitlines() if l.startswith("kubernetes: ")][0]
# Image tags of the built-in release are rewritten to the harness version (the kubelet double
# reads versions from tags). A rewritten tag would not match the digest pinned for the old one,
# so its digest is dropped: `repo:v<ver>` stays a valid, tag-only reference. Untouched lines keep
# their digests.
for line in text[text.index("\nimages:") + 1:].splitlines():
    if ver != bv and f":v{bv}" in line:
        line = re.sub(r"@sha256:[0-9a-f]{64}", "", line.replace(f":v{bv}", f":v{ver}"))
    print(line)
PY
{
  echo "# kubeforge inventory for harness hosts (written by scripts/harness-inventory.sh)"
  echo "apiVersion: kubeforge.io/v1alpha1"; echo "kind: Cluster"; echo "metadata: {name: $NAME}"
  echo "spec:"; echo "  kubernetes: {version: $VERSION}"
  echo "  ssh: {keyPath: $H/id_ed25519, knownHosts: $H/state/known_hosts, config: none}"
  echo "  artifacts:"
  echo "    mirror: http://10.123.0.1:8080/"
  echo "    manifest: $OUT/manifest-$VERSION.yaml"
  echo "    # the harness's kubelet double runs no images, and the release's cannot be fetched offline"
  echo "    images: {mode: pull}"
  echo "  hosts:"
  for i in $(seq 1 $((CPS + WORKERS))); do
    role=worker; ((i <= CPS)) && role=control-plane
    echo "    - {name: node$i, address: 10.123.0.$((10 + i)), role: $role}"
  done
} > "$OUT/$NAME.yaml"
echo "$OUT/$NAME.yaml"
