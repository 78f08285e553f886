#!/usr/bin/env python3
"""Helper of benches/images.sh (not a test).

  images-fixture.py build OUT MANIFEST_IN MANIFEST_OUT
      Builds one OCI image layout per release image of MANIFEST_IN (images: and the flannel CNI's
      images) under OUT/layouts/<key>, with layers of random (incompressible) data sized like the
      real release's amd64 images, and writes MANIFEST_OUT: MANIFEST_IN with every one of those
      references pinned to the built digest. OUT/images.tsv lists key, repository path (without
      the registry), tag, digest, control-plane-only (0/1), amd64 bytes (manifest + config +
      layers: what a node of that platform transfers), layout dir. The data is seeded by the key,
      so a rebuild gives the same digests.

  images-fixture.py record RUN_DIR
      Turns what one run left in RUN_DIR (reports, logs, times, counters) into its record (JSON).

  images-fixture.py table RUNS_DIR
      Reads every RUNS_DIR/*/record.json and prints the table (medians over runs).

Each image is an OCI index with two platforms, like the real ones: linux/amd64 with the sized
layers, linux/arm64/v8 with one small layer (nobody here pulls it: it checks that only the node's
platform travels). No layers are shared between images (the real kube-* images share a few MiB
of distroless base, so the real totals are a little smaller in both modes alike).
"""
import gzip
import hashlib
import io
import json
import os
import random
import re
import sys
import tarfile

MIB = 1024 * 1024
# compressed amd64 sizes of the real release images (MiB), kubeforge's default release
SIZES = {
    "images.kube-apiserver": 28,
    "images.kube-controller-manager": 26,
    "images.kube-scheduler": 20,
    "images.kube-proxy": 30,
    "images.etcd": 23,
    "images.coredns": 20,
    "images.pause": 0.3,
    "cni.flannel.images.flannel": 33,
    "cni.flannel.images.flannel-cni-plugin": 5,
}
CONTROL_PLANE_ONLY = {"images.kube-apiserver", "images.kube-controller-manager",
                      "images.kube-scheduler", "images.etcd"}
# share of an image's bytes per layer (real images have a handful of layers)
SPLIT = [0.05, 0.15, 0.3, 0.5]
REF = re.compile(r"^(\s+)([A-Za-z0-9._-]+): ((?:registry\.k8s\.io|ghcr\.io)/[^\s:@]+):([^\s@]+)(@sha256:[0-9a-f]{64})?\s*$")


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def layer(rng, name, size):
    """A gzip'd tar holding one file of `size` random bytes: (blob, diff_id)."""
    data = rng.randbytes(size)
    t = io.BytesIO()
    with tarfile.open(fileobj=t, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = size, 0o644, 0
        tf.addfile(ti, io.BytesIO(data))
    raw = t.getvalue()
    return gzip.compress(raw, compresslevel=1, mtime=0), sha(raw)


def build_image(out, key, tag):
    rng = random.Random(key)
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(b):
        d = sha(b)
        with open(os.path.join(blobs, d[7:]), "wb") as f:
            f.write(b)
        return d

    total = int(SIZES[key] * MIB)
    entries, amd64_bytes = [], 0
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        parts = [total] if total < MIB else [int(total * s) for s in SPLIT]
        if arch == "arm64":
            parts = [4096]
        layers, diff_ids = [], []
        for i, n in enumerate(parts):
            blob, diff = layer(rng, f"opt/{key.rsplit('.', 1)[-1]}/{arch}-{i}.bin", n)
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": put(blob), "size": len(blob)})
            diff_ids.append(diff)
        config = json.dumps({"architecture": arch, "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": diff_ids},
                             "config": {"Cmd": ["/bin/true"]}}, separators=(",", ":")).encode()
        manifest = json.dumps({"schemaVersion": 2,
                               "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": put(config), "size": len(config)},
                               "layers": layers}, separators=(",", ":")).encode()
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": put(manifest), "size": len(manifest), "platform": platform})
        if arch == "amd64":
            amd64_bytes = len(manifest) + len(config) + sum(l["size"] for l in layers)
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": entries}, separators=(",", ":")).encode()
    digest = put(index)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
            "size": len(index), "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return digest, amd64_bytes + len(index)


def build(out, manifest_in, manifest_out):
    lines, rows, section, cni = open(manifest_in).read().splitlines(), [], None, None
    result = []
    for line in lines:
        # which mapping a line is in: top-level `images:`, or `cni: <name>: images:`
        if re.match(r"^\S", line):
            section, cni = line.split(":")[0], None
        elif section == "cni" and re.match(r"^  \S", line):
            cni = line.strip().rstrip(":")
        m = REF.match(line)
        key = None
        if m and section == "images" and len(m.group(1)) == 2:
            key = f"images.{m.group(2)}"
        elif m and section == "cni" and cni == "flannel" and len(m.group(1)) == 6:
            key = f"cni.flannel.images.{m.group(2)}"
        if key not in SIZES:
            result.append(line)
            continue
        indent, name, repo, tag = m.group(1), m.group(2), m.group(3), m.group(4)
        layout = os.path.join(out, "layouts", key)
        digest, size = build_image(layout, key, tag)
        rows.append((key, repo.split("/", 1)[1], tag, digest, int(key in CONTROL_PLANE_ONLY), size, layout))
        result.append(f"{indent}{name}: {repo}:{tag}@{digest}")
    missing = set(SIZES) - {r[0] for r in rows}
    if missing:
        sys.exit(f"{manifest_in}: no reference for {sorted(missing)}")
    with open(manifest_out, "w") as f:
        f.write("\n".join(result) + "\n")
    with open(os.path.join(out, "images.tsv"), "w") as f:
        for r in rows:
            f.write("\t".join(map(str, r)) + "\n")


def mib(b):
    return f"{b / MIB:.1f}"


def span(d, name):
    a, b = map(float, open(os.path.join(d, name)).read().split())
    return b - a


def lines_between(d, a, b):
    log = open(os.path.join(d, "registry.log"), errors="replace").read().splitlines()
    lo = int(open(os.path.join(d, a)).read())
    hi = int(open(os.path.join(d, b)).read()) if b else len(log)
    return log[lo:hi]


ACCESS = re.compile(r'^(\S+) \S+ \S+ \[[^]]*\] "(\S+) (\S+) [^"]*" (\d+) (\d+)')


def served(lines):
    """Bytes the registry's access log says it sent, by client address."""
    by = {}
    for l in lines:
        m = ACCESS.match(l)
        if m:
            by[m.group(1)] = by.get(m.group(1), 0) + int(m.group(5))
    return by


def veth(d, phase):
    def read(suffix):
        return {a: int(b) for a, b in (l.split() for l in open(os.path.join(d, f"veth-{phase}.{suffix}")))}
    before, after = read("before"), read("after")
    return {k: after[k] - before[k] for k in after}


def push_times(d):
    """Per host: (start, end) of its push-images action, from apply1.log's timestamps."""
    from datetime import datetime
    line = re.compile(r"^(\d{4}-\d\d-\d\dT\S+)\s+INFO\s+(node\d+)\s+(.*)$")
    start, end = {}, {}
    for l in open(os.path.join(d, "apply1.log"), errors="replace"):
        m = line.match(re.sub(r"\x1b\[[0-9;]*m", "", l.rstrip("\n")))
        if not m:
            continue
        t, host, msg = datetime.fromisoformat(m.group(1)).timestamp(), m.group(2), m.group(3)
        if msg.startswith("push-images:"):
            start[host] = t
        elif host in start and host not in end:
            end[host] = t
    return {h: (start[h], end[h]) for h in start if h in end}


def record(d):
    rd = lambda f: open(os.path.join(d, f)).read().strip()
    n, mode, cps = int(rd("hosts")), rd("mode"), int(rd("cps"))
    a1, a2 = json.load(open(os.path.join(d, "apply1.json"))), json.load(open(os.path.join(d, "apply2.json")))
    r = {"hosts": n, "mode": mode, "run": int(rd("run")), "cps": cps,
         "roles": {f"node{i}": "cp" if i <= cps else "worker" for i in range(1, n + 1)},
         "apply_s": round(span(d, "apply1.time"), 1), "second_s": round(span(d, "apply2.time"), 1),
         "phases": a1["phases"], "second_phases": a2["phases"],
         "uploaded": a1["uploaded_bytes"], "second_uploaded": a2["uploaded_bytes"],
         "veth_apply": veth(d, "apply1"), "veth_second": veth(d, "apply2"),
         "operator_fetch_bytes": served(lines_between(d, "registry.apply1.line", "registry.apply2.line")).get("10.123.0.1", 0),
         "second_registry_bytes": sum(served(lines_between(d, "registry.apply2.line",
                                     "registry.pull.line" if mode == "pull" else "registry.end.line")).values())}
    r["fetch_s"] = sum(s for p, s in a1["phases"] if p == "fetch images")
    tsv = [l.split("\t") for l in open(os.path.join(d, "images.tsv")).read().splitlines()]
    r["image_set_bytes"] = {"cp": sum(int(x[5]) for x in tsv),
                            "worker": sum(int(x[5]) for x in tsv if x[4] == "0")}
    if mode == "push":
        t = push_times(d)
        r["node_s"] = {h: round(b - a, 1) for h, (a, b) in t.items()}
        r["images_s"] = round(max(b for a, b in t.values()) - min(a for a, b in t.values()), 1) if t else 0.0
    else:
        by_ip = served(lines_between(d, "registry.pull.line", "registry.end.line"))
        r["served"] = {f"node{i}": by_ip.get(f"10.123.0.{10 + i}", 0) for i in range(1, n + 1)}
        r["veth_pull"] = veth(d, "pull")
        r["node_s"] = {f"node{i}": round(span(d, f"pull-node{i}.time"), 1) for i in range(1, n + 1)}
        r["images_s"] = round(span(d, "pull.time"), 1)
    json.dump(r, sys.stdout, indent=1)


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def table(runs):
    recs = [json.load(open(os.path.join(runs, d, "record.json"))) for d in sorted(os.listdir(runs))
            if os.path.exists(os.path.join(runs, d, "record.json"))]
    groups = {}
    for r in recs:
        groups.setdefault((r["hosts"], r["mode"]), []).append(r)
    # pull-mode applies upload the binaries and configs only: the same cluster's push-mode
    # uploads less those are its image bytes
    base = {n: {h: med([r["uploaded"].get(h, 0) for r in rs]) for h in rs[0]["roles"]}
            for (n, mode), rs in groups.items() if mode == "pull"}
    rows = {}
    for (n, mode), rs in sorted(groups.items()):
        per = []
        for r in rs:
            if mode == "push":
                b = base.get(n)
                img = {h: r["uploaded"].get(h, 0) - (b[h] if b else 0) for h in r["roles"]}
            else:
                img = r["served"]
            per.append((r, img))
        def role_mean(img, r, role):
            xs = [v for h, v in img.items() if r["roles"][h] == role]
            return sum(xs) / len(xs) if xs else 0
        def node_s(r, role):
            xs = [v for h, v in r["node_s"].items() if r["roles"][h] == role]
            return sum(xs) / len(xs) if xs else 0
        rows[(n, mode)] = {
            "runs": len(rs), "cps": rs[0]["cps"],
            "apply_s": med([r["apply_s"] for r in rs]), "images_s": med([r["images_s"] for r in rs]),
            "cp": med([role_mean(i, r, "cp") for r, i in per]),
            "worker": med([role_mean(i, r, "worker") for r, i in per]),
            "total": med([sum(i.values()) for r, i in per]),
            "second": med([sum(r["second_uploaded"].values()) for r in rs]),
            "second_wire": med([sum(r["veth_second"].values()) for r in rs]),
            "second_registry": med([r["second_registry_bytes"] for r in rs]),
            "second_s": med([r["second_s"] for r in rs]),
            "fetch_s": med([r["fetch_s"] for r in rs]),
            "operator_fetch": med([r["operator_fetch_bytes"] for r in rs]),
            "cp_s": med([node_s(r, "cp") for r in rs]), "worker_s": med([node_s(r, "worker") for r in rs]),
            "set": rs[0]["image_set_bytes"], "exact": mode == "pull" or n in base,
        }
    hdr = ("hosts", "mode", "runs", "apply s", "images s", "MiB per cp", "MiB per worker",
           "upload total MiB", "2nd apply: images MiB", "2nd apply s")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for (n, mode), x in rows.items():
        src = "operator" if mode == "push" else "registry"
        star = "" if x["exact"] else " (incl. binaries)"
        print(f"| {n} ({x['cps']} cp) | {mode} | {x['runs']} | {x['apply_s']:.1f} | {x['images_s']:.1f} | "
              f"{mib(x['cp'])} | {mib(x['worker'])} | {mib(x['total'])} {src}{star} | "
              f"{mib(x['second'] if mode == 'push' else x['second_registry'])} | {x['second_s']:.1f} |")
    print()
    for (n, mode), x in rows.items():
        tput = (x["cp"] / x["cp_s"] if x["cp_s"] else 0, x["worker"] / x["worker_s"] if x["worker_s"] else 0)
        extra = (f", fetch images (operator, once, empty cache) {x['fetch_s']:.1f} s for "
                 f"{mib(x['operator_fetch'])} MiB from the registry") if mode == "push" else ""
        print(f"- {n} hosts {mode}: per node {x['cp_s']:.1f} s (cp) / {x['worker_s']:.1f} s (worker), "
              f"{mib(tput[0])} / {mib(tput[1])} MiB/s per node; aggregate "
              f"{mib(x['total'] / x['images_s']) if x['images_s'] else '-'} MiB/s{extra}; 2nd apply: "
              f"uploaded {x['second']} B, {mib(x['second_wire'])} MiB on the wire (SSH: facts), "
              f"registry {x['second_registry']} B")
    s = next(iter(rows.values()))["set"]
    print(f"- image set: {mib(s['cp'])} MiB (control plane: all 9 images), {mib(s['worker'])} MiB (worker: 5)")
    print()
    ns = sorted({n for n, _ in rows})
    for n in ns:
        p, q = rows.get((n, "push")), rows.get((n, "pull"))
        if p and q:
            print(f"- push/pull at {n} hosts: images time {p['images_s'] / q['images_s']:.2f}, apply time "
                  f"{p['apply_s'] / q['apply_s']:.2f}, bytes per cp {p['cp'] / max(q['cp'], 1):.3f}, "
                  f"per worker {p['worker'] / max(q['worker'], 1):.3f}, total {p['total'] / max(q['total'], 1):.3f}")
    if len(ns) >= 2:
        a, b = ns[0], ns[-1]
        for mode in ("push", "pull"):
            x, y = rows.get((a, mode)), rows.get((b, mode))
            if x and y:
                print(f"- {mode} {b}/{a} hosts: upload total {y['total'] / x['total']:.2f}, images time "
                      f"{y['images_s'] / x['images_s']:.2f}, apply time {y['apply_s'] / x['apply_s']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "build":
        build(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "record":
        record(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)
