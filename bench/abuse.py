#!/usr/bin/env python3
"""What a flood and a large desired state cost, on 3 local nodes (127.0.0.91-93):

  flood      one Deployment of 99,999 replicas (far beyond capacity) on nodes with the
             default --max-pods 110: containers started per node, the time until all that
             may run do, each agent's RSS; then the delete: the time until no container is
             left, and the RSS after it.
  writes     the desired state grown to 100, 1,000, 2,000 and 10,000 Deployments (replicas 0, so
             no container runs): at each size, `--runs` applies (a new image for one
             Deployment) and scales, each timed from the request to its acknowledgement
             (which waits for the live peers to hold it), p50 and p95.
  restart    at 10,000 objects, one node killed and started again: the time from its start
             to its API serving all 10,000.

Usage: cargo build --release -p weeble && python3 bench/abuse.py [--runs 20] [--skip-flood]
Leaves nothing behind: nodes and their containers are removed.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

from common import MANIFEST, ROOT, Cluster, percentile, sh, weeble_binary

IPS = [f"127.0.0.{91 + i}" for i in range(3)]
SIZES = [100, 1_000, 2_000, 10_000]
BATCH = 500



def deployment(name, replicas, image="weeble-demo:v1"):
    """One document of a manifest stream: `MANIFEST` with another image."""
    return "---\n" + MANIFEST.format(name=name, replicas=replicas).replace(
        "image: weeble-demo:v1", f"image: {image}")


def request(url, method="GET", body=None, content_type="application/yaml", timeout=60):
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": content_type} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def timed(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def per_node(cluster):
    return [len(sh("docker", "ps", "-q", "--filter",
                   f"label=weeble.node={cluster.node_name(i)}").split())
            for i in range(len(IPS))]


def flood(cluster):
    server = cluster.api(0)
    start = time.time()
    request(f"{server}/apis/weeble.io/v1/apply", "POST",
            deployment("flood", 99_999))
    # Until the count stops growing for 10 s (or every node is at its limit).
    last, since = -1, time.time()
    while time.time() - since < 10 and sum(per_node(cluster)) < 330:
        now = sum(per_node(cluster))
        if now != last:
            last, since = now, time.time()
        time.sleep(0.5)
        if time.time() - start > 900:
            sys.exit("the flood did not settle in 15 minutes")
    settled = time.time() - start
    counts = per_node(cluster)
    rss = [rss_mb(p.pid) for p in cluster.nodes]
    delete_at = time.time()
    request(f"{server}/apis/apps/v1/namespaces/default/deployments/flood", "DELETE")
    while sum(per_node(cluster)) > 0:
        if time.time() - delete_at > 600:
            sys.exit("the delete was not honoured in 10 minutes")
        time.sleep(0.2)
    honoured = time.time() - delete_at
    time.sleep(15)
    rss_after = [rss_mb(p.pid) for p in cluster.nodes]
    print("\nflood: one Deployment of 99,999 replicas, 3 nodes, --max-pods 110")
    print(f"  containers per node            {counts} (limit 110 each)")
    print(f"  until they all ran             {settled:.1f} s (counting the 10 s of quiet)")
    print(f"  agent RSS while flooded        {', '.join(f'{r:.1f}' for r in rss)} MB")
    print(f"  delete honoured (0 containers) {honoured:.1f} s")
    print(f"  agent RSS 15 s after           {', '.join(f'{r:.1f}' for r in rss_after)} MB")


def grow(cluster, have, want):
    """Adds Deployments `app-{have}` ... `app-{want - 1}`, in batches."""
    server = cluster.api(0)
    for first in range(have, want, BATCH):
        body = "".join(deployment(f"app-{i}", 0, "img:0")
                       for i in range(first, min(want, first + BATCH)))
        request(f"{server}/apis/weeble.io/v1/apply", "POST", body, timeout=300)


def state(server):
    return request(f"{server}/apis/weeble.io/v1/state")


def writes(cluster, runs):
    rows = []
    have = 0
    server = cluster.api(0)
    for size in SIZES:
        grow(cluster, have, size)
        have = size
        deadline = time.time() + 300
        while len({json.dumps(state(cluster.api(i))["heads"]) for i in range(len(IPS))}) != 1:
            if time.time() > deadline:
                sys.exit("the nodes did not converge")
            time.sleep(0.2)
        applies = [timed(lambda i=i: request(
            f"{server}/apis/weeble.io/v1/apply", "POST",
            deployment("app-0", 0, f"img:{size}-{i}")))
            for i in range(runs)]
        scales = [timed(lambda i=i: request(
            f"{server}/apis/apps/v1/namespaces/default/deployments/app-1/scale", "PUT",
            json.dumps({"spec": {"replicas": i % 2}}), content_type="application/json"))
            for i in range(runs)]
        rows.append((size, applies, scales))
    print(f"\nwrites: acknowledged (on every live node's disk), {runs} of each, ms")
    print(f"  {'objects':>8} {'apply p50':>10} {'apply p95':>10} {'scale p50':>10} {'scale p95':>10}")
    for size, applies, scales in rows:
        print(f"  {size:>8} {percentile(applies, 50) * 1000:>10.1f} "
              f"{percentile(applies, 95) * 1000:>10.1f} {percentile(scales, 50) * 1000:>10.1f} "
              f"{percentile(scales, 95) * 1000:>10.1f}")


def restart(cluster):
    cluster.kill(2)
    start = time.time()
    cluster.start(2)
    while True:
        try:
            if state(cluster.api(2))["deployments"] >= SIZES[-1]:
                break
        except OSError:
            pass
        if time.time() - start > 120:
            sys.exit("the restarted node did not serve its state in 2 minutes")
        time.sleep(0.05)
    size = os.path.getsize(os.path.join(cluster.dir, "n3", "state.automerge"))
    print(f"\nrestart at {SIZES[-1]:,} objects: API serving them all {time.time() - start:.2f} s "
          f"after the start (state file {size / 1024:.0f} KiB)")


def main():
    runs = 20
    skip_flood = "--skip-flood" in sys.argv
    if "--runs" in sys.argv:
        runs = int(sys.argv[sys.argv.index("--runs") + 1])
    binary = weeble_binary(os.path.join(ROOT, "target/release/weeble"))
    cluster = Cluster(binary, "abuse", IPS, 7946, 7070, extra=["--dns-port", "0"])
    try:
        if not skip_flood:
            flood(cluster)
        writes(cluster, runs)
        restart(cluster)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
