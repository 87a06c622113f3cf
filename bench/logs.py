#!/usr/bin/env python3
"""A pod's log read at its own node and at another node, which asks the pod's node over the
cluster's connections and streams the log through (`weeble_node::pods`).

  whole log   `GET pods/NAME/log` of a log of --lines lines (the demo server writes one a
              request), at the pod's node and at the other: seconds and MB/s (--runs / 4
              reads, by curl); `docker logs` of the container beside it
  follow      `GET pods/NAME/log?follow=true&tailLines=0` open at both nodes; a request to the
              pod; the time from it until its line arrives through each (--runs samples)

Usage: cargo build --release -p weeble && python3 bench/logs.py [--runs 20] [--lines 50000]
Leaves nothing behind (the nodes and their containers removed).
"""

import http.client
import json
import statistics
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from common import arguments, Cluster, percentile, sh, weeble_binary

IPS = ["127.0.0.21", "127.0.0.22"]
LOG = "/api/v1/namespaces/default/pods/{pod}/log"


def get(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def placed(cluster):
    """The pod's name, the index of its node, and where its port is published."""
    deadline = time.time() + 60
    while time.time() < deadline:
        pods = json.loads(get(f"{cluster.api(0)}/api/v1/namespaces/default/pods"))["items"]
        for pod in pods:
            status = pod["status"]
            if status.get("phase") == "Running" and status.get("ports"):
                names = [cluster.node_name(i) for i in range(len(cluster.ips))]
                node = names.index(pod["spec"]["nodeName"])
                published = f"{status['podIP']}:{status['ports'][0]['hostPort']}"
                return pod["metadata"]["name"], node, published
        time.sleep(0.2)
    raise SystemExit("the pod did not run")


def fill(published, lines):
    """`lines` requests to the demo server: a line each in its log."""
    def one(i):
        conn = http.client.HTTPConnection(published, timeout=10)
        conn.request("GET", f"/fill-{i}")
        conn.getresponse().read()
        conn.close()
    started = time.time()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(lines)))
    return time.time() - started


def whole(cluster, node, pod, runs):
    """Seconds of each whole read at node `node` (by curl, as a Go client reads it), and the
    bytes read."""
    times, size = [], 0
    for _ in range(runs):
        out = sh("curl", "-sS", "-o", "/dev/null", "-w", "%{time_total} %{size_download}",
                 cluster.api(node) + LOG.format(pod=pod))
        seconds, size = out.split()
        times.append(float(seconds))
    return times, int(size)


class Follower:
    """A followed log at one node: when each line arrived."""

    def __init__(self, cluster, node, pod):
        host = cluster.ips[node]
        self.conn = http.client.HTTPConnection(host, cluster.api_port, timeout=60)
        self.conn.request("GET", LOG.format(pod=pod) + "?follow=true&tailLines=0")
        self.response = self.conn.getresponse()
        self.arrived = {}
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        try:
            for line in self.response:
                self.arrived[line.decode(errors="replace")] = time.perf_counter()
        except (OSError, AttributeError):  # closed under it, at the end
            pass

    def when(self, mark, limit=10):
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            for line, at in list(self.arrived.items()):
                if mark in line:
                    return at
            time.sleep(0.002)
        raise SystemExit(f"{mark} never arrived")

    def close(self):
        self.conn.close()


def follow(cluster, pod, published, runs):
    """Per node: seconds from a request to its line in the followed log."""
    followers = [Follower(cluster, i, pod) for i in range(2)]
    time.sleep(1)
    latencies = [[], []]
    for run in range(runs):
        mark = f"/mark-{run}-{time.time_ns()}"
        started = time.perf_counter()
        get(f"http://{published}{mark}", timeout=10)
        for i, follower in enumerate(followers):
            latencies[i].append(follower.when(mark) - started)
        time.sleep(0.25 + (run % 7) * 0.29)
    for f in followers:
        f.close()
    return latencies


def main():
    args = arguments(__doc__, lambda p: p.add_argument("--lines", type=int, default=50000))
    binary = weeble_binary(args.weeble)
    cluster = Cluster(binary, "wblogs", IPS, 17946, 17070)
    try:
        cluster.apply("logs", 1)
        pod, node, published = placed(cluster)
        other = 1 - node
        filled = fill(published, args.lines)
        print(f"{args.lines} requests to the pod in {filled:.1f} s; its log at {cluster.node_name(node)}")
        reads = max(3, args.runs // 4)
        container = sh("docker", "ps", "-q", "--filter", f"label=weeble.pod={pod}").split()[0]
        engine = []
        for _ in range(reads):
            started = time.perf_counter()
            sh("docker", "logs", container)
            engine.append(time.perf_counter() - started)
        here, size = whole(cluster, node, pod, reads)
        there, _ = whole(cluster, other, pod, reads)
        latencies = follow(cluster, pod, published, args.runs)
        lat_here, lat_there = latencies[node], latencies[other]
        mb = size / 1e6
        print(f"\n`docker logs` of the same container (the engine's floor): "
              f"{statistics.median(engine):.3f} s median")
        print(f"\n| what | at the pod's node | at another node | ratio |")
        print("| --- | --- | --- | --- |")
        med_here, med_there = statistics.median(here), statistics.median(there)
        print(f"| whole log, {mb:.1f} MB ({reads} reads), median | {med_here:.3f} s "
              f"({mb / med_here:.0f} MB/s) | {med_there:.3f} s ({mb / med_there:.0f} MB/s) | "
              f"{med_there / med_here:.2f}x |")
        for label, p in (("median", 50), ("p90", 90)):
            a, b = percentile(lat_here, p) * 1000, percentile(lat_there, p) * 1000
            print(f"| follow: request to its line, {label} ({args.runs} samples) | {a:.0f} ms | "
                  f"{b:.0f} ms | {b - a:+.0f} ms |")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
