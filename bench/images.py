#!/usr/bin/env python3
"""How fast the demo image reaches nodes that each have a Docker engine of their own (a dockerd
with its own data root, socket and bridge, as tests/images.rs starts them), from a registry on
loopback (Debian's docker-registry).

  docker save | docker load   the main engine's image into an empty engine, through a pipe:
                              the floor a transfer between peers is measured against
  docker pull                 from the registry into an empty engine
  docker pull, 3 engines      the same into the three engines at once (what three nodes
                              pulling together cost this machine's 2 cores)
  weeble, from the registry   `weeble apply` of 3 replicas (one per node: --max-pods 1) until
                              the three run, each node pulling into its own empty engine
  weeble, from peers          the same with the image pushed to node 1 only (`weeble image
                              push --nodes`): nodes 2 and 3 fetch it from node 1, no registry
  weeble image push           from `weeble image push` (the main engine's image, through node
                              1) until the three engines hold it
  push to N nodes (--spread)  the same on N nodes (127.0.0.21-28): how the time grows with N
                              (--spread-rate paces what each node sends, as a link would)

Bytes served: what each node sent to peers in all (its log's "image sent to a peer").

Each run starts from empty engines (the image removed from them). The image is the demo image
of the binary given (a debug build's is ~365 MB, a release build's much smaller).

Usage (as root, for the engines' bridges; docker-registry installed, as .ci/run does):
  cargo build --release -p weeble && python3 bench/images.py [--runs 3] [--spread 2,4,8]
      [--demo-from target/debug/weeble]
Leaves nothing behind: the nodes, engines, registry and their files are removed.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import arguments, IMAGE, Cluster, percentile, sh, weeble_binary

IPS = ["127.0.0.27", "127.0.0.28", "127.0.0.29"]
SPREAD_IPS = [f"127.0.0.{21 + i}" for i in range(8)]
REGISTRY = "127.0.0.30:15100"
NAME = f"{REGISTRY}/bench/web:1"
MANIFEST = """kind: Deployment
metadata: {{name: pulled}}
spec:
  replicas: 3
  template:
    metadata: {{labels: {{app: pulled}}}}
    spec:
      containers: [{{name: web, image: "{image}"}}]
"""


class Engine:
    """A dockerd of its own on bridge `wbbench<index>`; `stop` removes it and its files."""

    def __init__(self, index):
        self.dir = tempfile.mkdtemp(prefix=f"weeble-engine-bench{index}-")
        self.bridge = f"wbbench{index}"
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"172.31.{20 + index}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        path = lambda p: os.path.join(self.dir, p)
        with open(path("daemon.json"), "w") as f:
            f.write("{}")
        self.host = f"unix://{path('sock')}"
        self.daemon = subprocess.Popen(
            ["dockerd", "--config-file", path("daemon.json"), "--data-root", path("data"),
             "--exec-root", path("exec"), "--pidfile", path("pid"), "-H", self.host,
             "--bridge", self.bridge, "--iptables=false", "--ip-masq=false"],
            stdout=subprocess.DEVNULL, stderr=open(path("log"), "w"))
        deadline = time.time() + 60
        while self.docker("info", check=False) is None:
            if time.time() > deadline:
                sys.exit(f"the engine in {self.dir} did not start")
            time.sleep(0.5)

    def docker(self, *args, check=True):
        out = subprocess.run(["docker", "-H", self.host, *args], capture_output=True, text=True)
        if out.returncode != 0:
            if check:
                sys.exit(f"docker {' '.join(args)}: {out.stderr.strip()}")
            return None
        return out.stdout

    def empty(self):
        """Removes every container and image."""
        ids = self.docker("ps", "-aq").split()
        if ids:
            self.docker("rm", "-f", *ids)
        images = self.docker("images", "-aq").split()
        if images:
            self.docker("rmi", "-f", *images, check=False)

    def stop(self):
        self.empty()
        self.daemon.terminate()
        try:
            self.daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
        subprocess.run(["pkill", "-KILL", "-f", self.dir], capture_output=True)
        mounts = [line.split()[1] for line in open("/proc/mounts")
                  if line.split()[1].startswith(self.dir)]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class Registry:
    """Debian's docker-registry on REGISTRY, with the demo image pushed as NAME."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="weeble-registry-bench-")
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {self.dir}/data\nhttp:\n  addr: {REGISTRY}\n")
        self.process = subprocess.Popen(["docker-registry", "serve", config],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=1)
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("the registry did not start")
                time.sleep(0.2)
        sh("docker", "tag", IMAGE, NAME)
        sh("docker", "push", NAME)
        sh("docker", "rmi", NAME)

    def stop(self):
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(run):
    start = time.time()
    run()
    return time.time() - start


def pull_together(engines):
    """NAME pulled into every engine at once; returns once all have it."""
    pulls = [subprocess.Popen(["docker", "-H", e.host, "pull", "-q", NAME],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for e in engines]
    if any(p.wait() != 0 for p in pulls):
        sys.exit("a docker pull failed")


def running(cluster):
    """How many pods of `pulled` run, as the cluster's node sees them."""
    try:
        url = f"{cluster.server}/api/v1/namespaces/default/pods"
        with urllib.request.urlopen(url, timeout=2) as r:
            items = json.load(r)["items"]
    except OSError:
        return 0
    return sum(1 for p in items
               if p["metadata"]["name"].startswith("pulled-") and p["status"]["phase"] == "Running")


def weeble_pull(cluster, engines, image=NAME):
    """From `apply` of 3 replicas of `image` until the three pods run; then the deployment is
    deleted and the engines emptied."""
    start = time.time()
    cluster.cli("apply", "-f", "-", stdin=MANIFEST.format(image=image))
    deadline = start + 300
    while running(cluster) < 3:
        if time.time() > deadline:
            sys.exit(f"the pods did not run; logs in {cluster.dir}")
        time.sleep(0.1)
    took = time.time() - start
    cluster.cli("delete", "deployment", "pulled")
    for engine in engines:
        while engine.docker("ps", "-aq").strip():
            time.sleep(0.2)
        engine.empty()
    return took


def push(cluster, server, tag, *more):
    """The main engine's IMAGE pushed as `tag` through node `server`."""
    sh("docker", "tag", IMAGE, tag)
    cluster.cli("image", "push", tag, *more, server=cluster.api(server))
    sh("docker", "rmi", tag)


def held(engines, image, start):
    """Waits until every engine holds `image`; the seconds from `start` each took, sorted."""
    done = {}
    while len(done) < len(engines):
        for i, engine in enumerate(engines):
            if i not in done and engine.docker("image", "inspect", image, check=False):
                done[i] = time.time() - start
        if time.time() > start + 600:
            sys.exit(f"{image} did not reach every engine")
        time.sleep(0.1)
    return sorted(done.values())


def served(cluster):
    """The bytes each node sent to peers, from its log."""
    sent = []
    for i in range(len(cluster.ips)):
        total = 0
        for line in open(os.path.join(cluster.dir, f"n{i + 1}.log")):
            if '"image sent to a peer"' in line:
                total += json.loads(line)["fields"]["size"]
        sent.append(total)
    return sent


def fleet(binary, prefix, ips, engines, extra=()):
    """Nodes on `ips`, node i on engine i, one pod each at most, logging JSON."""
    return Cluster(binary, prefix, ips, 17401, 17402,
                   extra=["--max-pods", "1", "--log-format", "json", *extra],
                   node_extra=lambda i: ["--docker-host", engines[i].host])


def weeble_from_peers(cluster, engines, run):
    """The image pushed to node 1 only, then 3 replicas of it: until the three run."""
    tag = f"bench/peers:{run}"
    push(cluster, 0, tag, "--nodes", cluster.node_name(0))
    held(engines[:1], tag, time.time())
    return weeble_pull(cluster, engines, tag)


def weeble_push(cluster, engines, run):
    """From `weeble image push` until every engine holds the image; then they are emptied."""
    tag = f"bench/pushed:{run}"
    start = time.time()
    push(cluster, 0, tag)
    took = held(engines, tag, start)
    for engine in engines:
        engine.empty()
    return took


def main():
    def extra(parser):
        parser.add_argument("--spread", default="", help="node counts to push to, such as 2,4,8")
        parser.add_argument("--spread-rate", help="--image-serve-rate of the --spread nodes, "
                            "as a link that is the bottleneck would be (20Mi)")
        parser.add_argument("--only-spread", action="store_true", help="skip the 3-node rows")
        parser.add_argument("--demo-from", help="the binary whose demo image is moved (a debug "
                            "build's is ~370 MB; default: --weeble's)")
    args = arguments(__doc__, extra=extra)
    binary = weeble_binary(args.weeble)
    if args.demo_from:
        sh(args.demo_from, "image", "build-demo")
    size_mb = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", IMAGE)) / 1e6
    state = {"registry": None, "engines": [], "cluster": None}
    try:
        if not args.only_spread:
            three_nodes(args, binary, size_mb, state)
        for n in [int(n) for n in args.spread.split(",") if n]:
            runs = spread(args, binary, n, state)
            last = percentile([r[-1] for r in runs], 50)
            median_run = sorted(runs, key=lambda r: r[-1])[len(runs) // 2]
            paced = f", each node sending {args.spread_rate}/s at most" if args.spread_rate else ""
            print(f"push to {n} nodes{paced}: every node holds it after {last:.2f} s (median); "
                  f"arrivals of the median run: {' '.join(f'{t:.1f}' for t in median_run)}")
    finally:
        if state["cluster"]:
            state["cluster"].stop()
        for engine in state["engines"]:
            engine.stop()
        if state["registry"]:
            state["registry"].stop()


def three_nodes(args, binary, size_mb, state):
    """The 3-node rows, printed; `state` holds what is to be stopped if it fails."""
    registry = state["registry"] = Registry()
    engines = state["engines"] = [Engine(i) for i in range(3)]
    rows = {"docker save | docker load": [], "docker pull": [], "docker pull, 3 engines": [],
            "weeble, from the registry": [], "weeble, from peers": [],
            "weeble image push, 3 nodes": []}
    for _ in range(args.runs):
        load = f"docker save {IMAGE} | docker -H {engines[0].host} load -q"
        rows["docker save | docker load"].append(
            timed(lambda: subprocess.run(load, shell=True, check=True, capture_output=True)))
        engines[0].empty()
        rows["docker pull"].append(timed(lambda: engines[0].docker("pull", "-q", NAME)))
        engines[0].empty()
        rows["docker pull, 3 engines"].append(timed(lambda: pull_together(engines)))
        for engine in engines:
            engine.empty()
    cluster = state["cluster"] = fleet(binary, "images", IPS, engines)
    for run in range(args.runs):
        rows["weeble, from the registry"].append(weeble_pull(cluster, engines))
    registry.stop()
    state["registry"] = None
    for run in range(args.runs):
        rows["weeble, from peers"].append(weeble_from_peers(cluster, engines, run))
    pushed = []
    for run in range(args.runs):
        pushed.append(weeble_push(cluster, engines, run))
        rows["weeble image push, 3 nodes"].append(pushed[-1][-1])
    sent = served(cluster)
    stop(state)
    print(f"image: {IMAGE}, {size_mb:.0f} MB; {args.runs} runs each")
    print(f"{'':28} {'median s':>9} {'max s':>7} {'MB/s':>7}")
    for name, values in rows.items():
        median = percentile(values, 50)
        print(f"{name:28} {median:9.2f} {max(values):7.2f} {size_mb / median:7.0f}")
    print("weeble image push, 3 nodes: each node's arrival (s), per run:",
          "; ".join(" ".join(f"{t:.1f}" for t in run) for run in pushed))
    print("bytes each node sent to peers (MB), over every run above:",
          " ".join(f"{b / 1e6:.0f}" for b in sent))


def spread(args, binary, n, state):
    """`weeble image push` to `n` nodes, `args.runs` times: each run's arrivals."""
    state["engines"] = engines = [Engine(i) for i in range(n)]
    paced = ["--image-serve-rate", args.spread_rate] if args.spread_rate else []
    cluster = state["cluster"] = fleet(binary, "spread", SPREAD_IPS[:n], engines, paced)
    runs = [weeble_push(cluster, engines, run) for run in range(args.runs)]
    stop(state)
    return runs


def stop(state):
    """Stops the cluster and the engines of `state`."""
    state["cluster"].stop()
    state["cluster"] = None
    for engine in state["engines"]:
        engine.stop()
    state["engines"] = []


if __name__ == "__main__":
    main()
