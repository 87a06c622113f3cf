#!/usr/bin/env python3
"""Weeble under faults, each repeated `--runs` times (default 20), with p50/p95:

  node crash        5 nodes on 127.0.0.81-85 run 10 replicas; the busiest node's agent is
                    killed and its containers removed (the machine died). Detection: until a
                    survivor's API shows it NotReady. Replacement: until every replica it ran
                    has started on a survivor (the engine's start events). It is then started
                    again (same data dir), and the cluster settles before the next run.
  partition heal    the container test bed: nodes each in a container on a private Docker
                    network, running 6 replicas. Cut off: of 3 nodes, the busiest is
                    disconnected until both sides run all 6, then connected again. Split: 5
                    nodes, 3 | 2 by iptables rules on the bridge traffic, then healed.
                    Convergence: until every document has identical heads. Duplicate window:
                    until one copy of each replica is left.

Swarm, in the same run: `../shared/bench/swarm-baseline.sh` (a 2-node swarm on this engine,
3 node crashes); its crash lines are printed beside ours. Kubernetes and Nomad defaults are
quoted in docs/benchmarks.md.

Usage: cargo build --release -p weeble && python3 bench/faults.py [--runs 20] [--skip-swarm]
Leaves nothing behind: nodes, containers and the test network are removed.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

from common import arguments, ROOT, IMAGE, MANIFEST, Cluster, Starts, containers, \
    percentile, sh, wait_count, weeble_binary

CRASH_IPS = [f"127.0.0.{81 + i}" for i in range(5)]
BED_PREFIX = "172.30.250"
BED_NETWORK = "weeble-bench-bed"


def classify(labels):
    return "crash" if labels.get("weeble.deployment") == "default/crash" else None


def poll(what, check, limit=60.0, every=0.02):
    """The time (Unix seconds) at which `check()` was first seen true."""
    start = time.time()
    while not check():
        if time.time() - start > limit:
            sys.exit(f"timed out after {limit} s waiting for {what}")
        time.sleep(every)
    return time.time()


def node_crash(binary, runs):
    cluster = Cluster(binary, "crash", CRASH_IPS, 27946, 27070)
    starts = Starts(classify)
    detection, replacement = [], []
    try:
        cluster.apply("crash", 10)
        wait_count(10, "weeble.deployment=default/crash")
        for _ in range(runs):
            time.sleep(2)
            counts = [len(containers(f"weeble.node={cluster.node_name(i)}",
                                     "weeble.deployment=default/crash"))
                      for i in range(len(CRASH_IPS))]
            victim = counts.index(max(counts))
            witness = cluster.api((victim + 1) % len(CRASH_IPS))
            starts.drain()
            t0 = time.time()
            cluster.kill(victim)
            # Its containers die with it, while the survivors are already at work.
            ids = sh("docker", "ps", "-aq", "--filter", f"label=weeble.node={cluster.node_name(victim)}")
            remove = threading.Thread(target=sh, args=("docker", "rm", "-f", *ids.split()))
            remove.start()
            seen = poll("the crash to be seen",
                        lambda: cluster.node_name(victim) not in cluster.nodes_ready(witness))
            detection.append(seen - t0)
            remove.join()
            replacement.append(starts.wait("crash", counts[victim], t0))
            cluster.start(victim)
            cluster.wait_ready(len(CRASH_IPS), witness)
            wait_count(10, "weeble.deployment=default/crash")
    finally:
        starts.stop()
        cluster.stop()
    return detection, replacement


class Bed:
    """`n` nodes, each in a container on a private network (as in tests/bed.rs)."""

    def __init__(self, n, prefix=BED_PREFIX, network=BED_NETWORK):
        self.prefix, self.network = prefix, network
        sh("docker", "network", "create", "--subnet", f"{prefix}.0/24", network)
        self.nodes = []
        for i in range(n):
            name, ip = f"{network}-{i}", self.ip(i)
            args = ["docker", "run", "-d", "--name", name, "--label", "weeble.bed=node",
                    "--network", network, "--ip", ip,
                    "-v", "/var/run/docker.sock:/var/run/docker.sock",
                    "--entrypoint", "/weeble", IMAGE, "node", "--name", name,
                    "--data-dir", "/data", "--p2p", f"{ip}:7946", "--api", "0.0.0.0:7070",
                    "--publish-ip", f"{prefix}.1"]
            if i:
                args += ["--join", f"{self.ip(0)}:7946"]
            sh(*args)
            self.nodes.append(name)

    def ip(self, i):
        return f"{self.prefix}.{10 + i}"

    def get(self, i, path):
        try:
            with urllib.request.urlopen(f"http://{self.ip(i)}:7070{path}", timeout=1) as r:
                return json.load(r)
        except OSError:
            return None

    def running(self, i, deployment="edge"):
        return len(self.running_ids(i, deployment))

    def running_ids(self, i, deployment="edge"):
        return containers(f"weeble.node={self.nodes[i]}", f"weeble.deployment=default/{deployment}")

    def apply(self, i, name, replicas):
        """Applies a deployment through node `i`'s own API (from inside its container)."""
        subprocess.run(["docker", "exec", "-i", self.nodes[i], "/weeble", "--server",
                        "http://127.0.0.1:7070", "apply", "-f", "-"],
                       input=MANIFEST.format(name=name, replicas=replicas),
                       text=True, check=True, capture_output=True)

    def wait_formed(self):
        n = len(self.nodes)
        poll("the bed to form", lambda: all(
            sum(node["status"]["conditions"][0]["status"] == "True"
                for node in (self.get(i, "/api/v1/nodes") or {"items": []})["items"]) == n
            for i in range(n)), limit=60, every=0.2)

    def heads(self):
        """The distinct document heads across the nodes (one when converged)."""
        return {json.dumps((self.get(i, "/apis/weeble.io/v1/state") or {}).get("heads"))
                for i in range(len(self.nodes))}

    def disconnect(self, i):
        sh("docker", "network", "disconnect", self.network, self.nodes[i])

    def connect(self, i):
        sh("docker", "network", "connect", "--ip", self.ip(i), self.network, self.nodes[i])

    def split(self, one, other, verb):
        """Drops (`-I`) or lets through again (`-D`) the bridge traffic between two groups."""
        for a in one:
            for b in other:
                for src, dst in ((a, b), (b, a)):
                    sh("iptables", verb, "DOCKER-USER", "-s", self.ip(src), "-d", self.ip(dst),
                       "-m", "comment", "--comment", self.network, "-j", "DROP", check=verb == "-I")

    def stop(self):
        self.split(range(len(self.nodes)), range(len(self.nodes)), "-D")
        sh("docker", "rm", "-f", *self.nodes, check=False)
        for node in self.nodes:
            ids = sh("docker", "ps", "-aq", "--filter", f"label=weeble.node={node}").split()
            if ids:
                sh("docker", "rm", "-f", *ids, check=False)
        sh("docker", "network", "rm", self.network, check=False)


def partition_heal(runs, n):
    """n = 3: the busiest node is disconnected from the network and connected again.
    n = 5: nodes 0-2 and 3-4 are split by iptables rules on the bridge, then healed."""
    bed = Bed(n)
    convergence, duplicates = [], []
    try:
        bed.wait_formed()
        bed.apply(0, "edge", 6)
        wait_count(6, "weeble.deployment=default/edge")
        for _ in range(runs):
            if n == 3:
                cut = max(range(3), key=bed.running)
                sides = ([cut], [i for i in range(3) if i != cut])
                bed.disconnect(cut)
            else:
                sides = ([0, 1, 2], [3, 4])
                bed.split(*sides, "-I")
            poll("both sides running all six", lambda: all(
                sum(bed.running(i) for i in side) == 6 for side in sides), every=0.2)
            t0 = time.time()
            if n == 3:
                bed.connect(cut)
            else:
                bed.split(*sides, "-D")
            converged = poll("identical heads", lambda: len(bed.heads()) == 1, every=0.05)
            convergence.append(converged - t0)
            single = poll("one copy of each",
                          lambda: sum(bed.running(i) for i in range(n)) == 6, every=0.1)
            duplicates.append(single - t0)
            time.sleep(3)
    finally:
        bed.stop()
    return convergence, duplicates


def swarm_crash():
    """Swarm's node-crash figures from the shared baseline script, run now. Its second
    dockerd gets an empty configuration file of its own: this machine's daemon.json names a
    data root, which would clash with the script's `--data-root`."""
    script = os.path.join(ROOT, "..", "shared", "bench", "swarm-baseline.sh")
    if not os.path.exists(script):
        return []
    had_gwbridge = bool(sh("docker", "network", "ls", "-q", "--filter",
                           "name=^docker_gwbridge$").strip())
    text = open(script).read().replace(
        "(setsid dockerd ",
        '(echo {} > "$D2/daemon.json"; setsid dockerd --config-file "$D2/daemon.json" ')
    out = subprocess.run(["bash", "-c", text, script], env={**os.environ, "IMG": IMAGE},
                         capture_output=True, text=True).stdout
    if not had_gwbridge:  # made by `swarm init`, kept by `swarm leave`
        sh("docker", "network", "rm", "docker_gwbridge", check=False)
    crashes = [float(line.rsplit(":", 1)[1].split()[0]) for line in out.splitlines()
               if line.startswith("swarm node crash ->")]
    if not crashes:
        print(f"the Swarm baseline gave no crash figure:\n{out}", file=sys.stderr)
    return crashes


def main():
    args = arguments(__doc__)
    binary = weeble_binary(args.weeble)
    detection, replacement = node_crash(binary, args.runs)
    cut_off = partition_heal(args.runs, 3)
    split = partition_heal(args.runs, 5)
    swarm = [] if args.skip_swarm else swarm_crash()
    print(f"\n{args.runs} runs each, seconds")
    print(f"{'fault':<44} {'p50':>7} {'p95':>7} {'target':>8}")
    for name, values, target in [
        ("node crash: detected (5 nodes)", detection, "-"),
        ("node crash: every replica running again", replacement, "p95 3"),
        ("one node cut off, healed: identical heads", cut_off[0], "2"),
        ("one node cut off, healed: duplicates gone", cut_off[1], "5"),
        ("3 | 2 split, healed: identical heads", split[0], "2"),
        ("3 | 2 split, healed: duplicates gone", split[1], "5"),
    ]:
        print(f"{name:<44} {percentile(values, 50):>7.2f} {percentile(values, 95):>7.2f} "
              f"{target:>8}")
    if swarm:
        print(f"Swarm, same run, 2-node crash -> replicas back ({len(swarm)} crashes): "
              f"p50 {percentile(swarm, 50):.2f}, max {max(swarm):.2f}")


if __name__ == "__main__":
    main()
