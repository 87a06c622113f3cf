"""What the benchmark scripts share: running commands, percentiles, the engine's container
start events, and a cluster of local `weeble node` processes."""

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "weeble-demo:v1"
TIMEOUT = 60.0

MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: web
        image: weeble-demo:v1
        ports:
        - containerPort: 80
"""


def sh(*args, check=True):
    out = subprocess.run(args, capture_output=True, text=True)
    if check and out.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def arguments(doc, extra=None):
    """The options every benchmark takes: how many runs, which binary, whether to run Swarm;
    `extra(parser)` adds a benchmark's own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--weeble", default=os.path.join(ROOT, "target/release/weeble"))
    parser.add_argument("--skip-swarm", action="store_true")
    if extra:
        extra(parser)
    return parser.parse_args()


def weeble_binary(path):
    """The release binary, after making the demo image with it."""
    if not os.access(path, os.X_OK):
        sys.exit(f"{path} is missing: run `cargo build --release -p weeble` first")
    sh(path, "image", "build-demo")
    return path


class Starts:
    """The engine's container start events, each tagged by `classify(labels)` (events it
    tags None are ignored)."""

    def __init__(self, classify):
        self.classify = classify
        self.events = queue.Queue()
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "event=start",
             "--format", "{{json .}}"],
            stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            event = json.loads(line)
            system = self.classify(event.get("Actor", {}).get("Attributes", {}))
            if system:
                self.events.put((system, event["timeNano"] / 1e9))

    def drain(self):
        while not self.events.empty():
            self.events.get_nowait()

    def wait(self, system, count, since):
        """Seconds from `since` to the `count`-th start of `system` after it."""
        seen, deadline = [], time.time() + TIMEOUT
        while len(seen) < count:
            try:
                who, at = self.events.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                sys.exit(f"{system}: only {len(seen)} of {count} containers started in {TIMEOUT} s")
            if who == system and at >= since:
                seen.append(at)
        return max(seen) - since

    def stop(self):
        self.proc.terminate()


def containers(*labels):
    filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
    return sh("docker", "ps", "-q", *filters).split()


def wait_count(count, *labels):
    deadline = time.time() + TIMEOUT
    while len(containers(*labels)) != count:
        if time.time() > deadline:
            sys.exit(f"{labels}: never got to {count} containers")
        time.sleep(0.1)


class Cluster:
    """`weeble node` processes named `<prefix>-<i>` on the given 127.0.0.x addresses, each
    joining the next, with `extra` arguments and node i's own `node_extra(i)`; all stopped,
    with their containers, by `stop`."""

    def __init__(self, binary, prefix, ips, p2p_port, api_port, extra=(), node_extra=None):
        self.binary, self.prefix, self.ips = binary, prefix, ips
        self.p2p_port, self.api_port, self.extra = p2p_port, api_port, list(extra)
        self.node_extra = node_extra or (lambda i: [])
        self.dir = tempfile.mkdtemp(prefix=f"weeble-{prefix}-")
        self.nodes = [None] * len(ips)
        for i in range(len(ips)):
            self.start(i)
        self.server = self.api(1 % len(ips))
        self.wait_ready(len(ips))

    def node_name(self, i):
        return f"{self.prefix}-{i + 1}"

    def api(self, i):
        return f"http://{self.ips[i]}:{self.api_port}"

    def start(self, i):
        seed = self.ips[(i + 1) % len(self.ips)]
        args = [self.binary, "node", "--name", self.node_name(i), "--data-dir",
                os.path.join(self.dir, f"n{i + 1}"), "--p2p", f"{self.ips[i]}:{self.p2p_port}",
                "--api", f"{self.ips[i]}:{self.api_port}", "--join", f"{seed}:{self.p2p_port}",
                *self.extra, *self.node_extra(i)]
        log = open(os.path.join(self.dir, f"n{i + 1}.log"), "a")
        self.nodes[i] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)

    def kill(self, i):
        self.nodes[i].send_signal(signal.SIGKILL)
        self.nodes[i].wait()

    def nodes_ready(self, server=None):
        """The names of the nodes `server` (default: the cluster's) sees as Ready."""
        try:
            with urllib.request.urlopen(f"{server or self.server}/api/v1/nodes", timeout=2) as r:
                items = json.load(r)["items"]
        except OSError:
            return set()
        return {n["metadata"]["name"] for n in items
                if n["status"]["conditions"][0]["status"] == "True"}

    def wait_ready(self, count, server=None):
        deadline = time.time() + TIMEOUT
        while len(self.nodes_ready(server)) != count:
            if time.time() > deadline:
                sys.exit(f"the weeble nodes did not form a cluster; logs in {self.dir}")
            time.sleep(0.2)

    def cli(self, *args, stdin=None, server=None):
        out = subprocess.run([self.binary, "--server", server or self.server, *args],
                             input=stdin, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"weeble {' '.join(args)}: {out.stderr.strip()}")

    def apply(self, name, replicas):
        self.cli("apply", "-f", "-", stdin=MANIFEST.format(name=name, replicas=replicas))

    def idle(self, seconds=30):
        """Per agent: RSS in MB at the end, and CPU as % of one core over `seconds`."""
        tick = os.sysconf("SC_CLK_TCK")

        def cpu(pid):
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick

        before = [cpu(p.pid) for p in self.nodes]
        time.sleep(seconds)
        after = [cpu(p.pid) for p in self.nodes]
        rss = []
        for p in self.nodes:
            for line in open(f"/proc/{p.pid}/status"):
                if line.startswith("VmRSS:"):
                    rss.append(int(line.split()[1]) / 1024)
        return rss, [100 * (a - b) / seconds for a, b in zip(after, before)]

    def stop(self):
        for i in range(len(self.nodes)):
            if self.nodes[i].poll() is None:
                self.kill(i)
        for i in range(len(self.nodes)):
            ids = sh("docker", "ps", "-aq", "--filter", f"label=weeble.node={self.node_name(i)}").split()
            if ids:
                sh("docker", "rm", "-f", *ids, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
