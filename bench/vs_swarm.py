#!/usr/bin/env python3
"""Weeble beside Docker Swarm on this machine's own engine, on the talk's demo work.

Measures, for each system, `--runs` times (default 20), and prints p50/p95 side by side with
the ratio and the issue's target:

  apply -> 3 running    create a 3-replica deployment / service until 3 containers started
  killed -> running     `docker kill` one replica until a container of it started again
  scale 3 -> 5          scale until the 2 new containers started
  engine floor          the engine alone doing the same starts (what no orchestrator beats)
  idle agent            RSS and CPU of each of 3 idle agents running 3 replicas, over 30 s

Every time is from the moment the command is issued to the engine's own `start` event
(`docker events` timestamps), so both systems are timed by the same clock, the same way.
A killed replica is one that has run for at least 30 s: Weeble, like Kubernetes, backs off
a container that crash-loops, and Swarm waits its 5 s restart delay every time.

Usage (as a user that may use Docker; nothing else may hold a swarm on the engine):
  cargo build --release -p weeble && python3 bench/vs_swarm.py [--runs 20] [--skip-swarm]

Leaves the engine as it found it: the weeble nodes and their containers are stopped and
removed, the Swarm service removed and the swarm left (`docker swarm leave --force`).
"""

import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "weeble-demo:latest"
IPS = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
P2P_PORT, API_PORT = 27946, 27070
SERVICE = "wbench"
DEPLOYMENT = "default/bench"
KILL_REPLICAS = 10  # each replica is killed at most once every KILL_REPLICAS * KILL_GAP s
KILL_GAP = 3.5
TIMEOUT = 60.0

MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: bench
spec:
  replicas: {replicas}
  template:
    metadata:
      labels:
        app: bench
    spec:
      containers:
      - name: web
        image: weeble-demo:latest
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


class Starts:
    """The engine's container start events, tagged with the system that made them."""

    def __init__(self):
        self.events = queue.Queue()
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "event=start",
             "--format", "{{json .}}"],
            stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            event = json.loads(line)
            labels = event.get("Actor", {}).get("Attributes", {})
            system = ("weeble" if labels.get("weeble.deployment") == DEPLOYMENT
                      else "swarm" if labels.get("com.docker.swarm.service.name") == SERVICE
                      else "floor" if labels.get("weeble.bench") == "floor" else None)
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


def containers(label):
    return sh("docker", "ps", "-q", "--filter", f"label={label}").split()


def wait_count(label, count):
    deadline = time.time() + TIMEOUT
    while len(containers(label)) != count:
        if time.time() > deadline:
            sys.exit(f"{label}: never got to {count} containers")
        time.sleep(0.1)


class Weeble:
    """Three `weeble node` processes on 127.0.0.21-23."""

    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="weeble-bench-")
        self.nodes = []
        for i, ip in enumerate(IPS):
            seed = IPS[(i + 1) % len(IPS)]
            args = [binary, "node", "--name", f"bench-{i + 1}", "--data-dir",
                    os.path.join(self.dir, f"n{i + 1}"), "--p2p", f"{ip}:{P2P_PORT}",
                    "--api", f"{ip}:{API_PORT}", "--join", f"{seed}:{P2P_PORT}"]
            log = open(os.path.join(self.dir, f"n{i + 1}.log"), "w")
            self.nodes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log))
        self.server = f"http://{IPS[1]}:{API_PORT}"
        deadline = time.time() + TIMEOUT
        while self.ready_nodes() != len(IPS):
            if time.time() > deadline:
                sys.exit(f"the weeble nodes did not form a cluster; logs in {self.dir}")
            time.sleep(0.2)

    def ready_nodes(self):
        try:
            with urllib.request.urlopen(f"{self.server}/api/v1/nodes", timeout=2) as r:
                items = json.load(r)["items"]
        except OSError:
            return 0
        return sum(n["status"]["conditions"][0]["status"] == "True" for n in items)

    def cli(self, *args, stdin=None):
        out = subprocess.run([self.binary, "--server", self.server, *args], input=stdin,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"weeble {' '.join(args)}: {out.stderr.strip()}")

    def apply(self, replicas):
        self.cli("apply", "-f", "-", stdin=MANIFEST.format(replicas=replicas))

    def scale(self, replicas):
        self.cli("scale", "deployment", "bench", "--replicas", str(replicas))

    def remove(self):
        self.cli("delete", "deployment", "bench")

    label = f"weeble.deployment={DEPLOYMENT}"
    name = "weeble"

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
        for p in self.nodes:
            p.send_signal(signal.SIGKILL)
            p.wait()
        ids = sh("docker", "ps", "-aq", "--filter", "label=weeble.node").split()
        ids = [i for i in ids if "bench-" in sh("docker", "inspect", "-f",
                                                 '{{index .Config.Labels "weeble.node"}}', i)]
        if ids:
            sh("docker", "rm", "-f", *ids, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class Swarm:
    """A single-node swarm on this engine."""

    label = f"com.docker.swarm.service.name={SERVICE}"
    name = "swarm"

    def __init__(self):
        state = sh("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").strip()
        if state != "inactive":
            sys.exit(f"the engine is already in a swarm ({state}): not touching it")
        sh("docker", "swarm", "init", "--advertise-addr", "127.0.0.1")

    def apply(self, replicas):
        sh("docker", "service", "create", "-d", "--replicas", str(replicas), "--name", SERVICE,
           IMAGE)

    def scale(self, replicas):
        sh("docker", "service", "scale", "-d", f"{SERVICE}={replicas}")

    def remove(self):
        sh("docker", "service", "rm", SERVICE)

    def stop(self):
        sh("docker", "service", "rm", SERVICE, check=False)
        sh("docker", "swarm", "leave", "--force", check=False)


def measure(system, starts, runs):
    """apply, kill and scale figures (seconds) for one system."""
    figures = {"apply": [], "kill": [], "scale": []}
    for _ in range(runs):
        starts.drain()
        t0 = time.time()
        system.apply(3)
        figures["apply"].append(starts.wait(system.name, 3, t0))
        system.remove()
        wait_count(system.label, 0)
        time.sleep(0.5)
    system.apply(3)
    wait_count(system.label, 3)
    for _ in range(runs):
        time.sleep(1)
        starts.drain()
        t0 = time.time()
        system.scale(5)
        figures["scale"].append(starts.wait(system.name, 2, t0))
        system.scale(3)
        wait_count(system.label, 3)
    system.scale(KILL_REPLICAS)
    wait_count(system.label, KILL_REPLICAS)
    time.sleep(30)  # every replica has run long enough not to count as crash-looping
    for i in range(runs):
        victims = containers(system.label)
        victim = victims[i % len(victims)] if system.name == "weeble" else random.choice(victims)
        starts.drain()
        t0 = time.time()
        sh("docker", "kill", victim)
        figures["kill"].append(starts.wait(system.name, 1, t0))
        wait_count(system.label, KILL_REPLICAS)
        time.sleep(KILL_GAP)
    system.remove()
    wait_count(system.label, 0)
    return figures


def floor(starts, runs):
    """The engine alone, for each figure: `docker run -d` of as many containers at once as
    the step starts (3 for apply, 2 for scale), and `docker kill` then `docker start`."""
    figures = {"apply": [], "scale": [], "kill": []}

    def run(count):
        return [subprocess.Popen(["docker", "run", "-d", "--label", "weeble.bench=floor",
                                  "-p", "127.0.0.1::80", IMAGE],
                                 stdout=subprocess.PIPE, text=True) for _ in range(count)]

    for _ in range(runs):
        for key, count in (("apply", 3), ("scale", 2)):
            starts.drain()
            t0 = time.time()
            procs = run(count)
            figures[key].append(starts.wait("floor", count, t0))
            ids = [p.communicate()[0].strip() for p in procs]
            sh("docker", "rm", "-f", *ids)
    cid = run(1)[0].communicate()[0].strip()
    for _ in range(runs):
        time.sleep(0.5)
        starts.drain()
        t0 = time.time()
        sh("docker", "kill", cid)
        sh("docker", "start", cid)
        figures["kill"].append(starts.wait("floor", 1, t0))
    sh("docker", "rm", "-f", cid)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--weeble", default=os.path.join(ROOT, "target/release/weeble"))
    parser.add_argument("--skip-swarm", action="store_true")
    args = parser.parse_args()
    if not os.access(args.weeble, os.X_OK):
        sys.exit(f"{args.weeble} is missing: run `cargo build --release -p weeble` first")
    sh(args.weeble, "image", "build-demo")
    starts = Starts()
    results, idle = {}, None
    weeble = Weeble(args.weeble)
    try:
        results["weeble"] = measure(weeble, starts, args.runs)
        weeble.apply(3)
        wait_count(weeble.label, 3)
        time.sleep(5)
        idle = weeble.idle()
    finally:
        weeble.stop()
    results["floor"] = floor(starts, args.runs)
    if not args.skip_swarm:
        swarm = Swarm()
        try:
            results["swarm"] = measure(swarm, starts, args.runs)
        finally:
            swarm.stop()
    starts.stop()
    report(results, idle, args.runs)


def report(results, idle, runs):
    targets = {"apply": 0.5, "kill": 0.5, "scale": 0.4}
    names = {"apply": "apply -> 3 running", "kill": "killed -> running", "scale": "scale 3 -> 5"}
    columns = [c for c in ("weeble", "swarm", "floor") if c in results]
    print(f"\n{runs} runs each, seconds from the command to the engine's start event.")
    print("floor: the engine alone (docker run -d of 3 / 2 at once; docker kill then start)")
    print(f"{'what':<20}" + "".join(f" {c + ' p50':>11} {'p95':>6}" for c in columns)
          + "".join(f" {'/' + c:>8}" for c in columns[1:]) + f" {'target p95':>10}")
    for key, name in names.items():
        p50 = {c: percentile(results[c][key], 50) for c in columns}
        row = f"{name:<20}" + "".join(
            f" {p50[c]:>11.3f} {percentile(results[c][key], 95):>6.3f}" for c in columns)
        row += "".join(f" {p50['weeble'] / p50[c]:>8.2f}" for c in columns[1:])
        print(f"{row} {targets[key]:>10.2f}")
    print("(/swarm, /floor: weeble's p50 divided by theirs)")
    if idle:
        rss, cpu = idle
        print(f"idle agent (3 nodes, 3 replicas, 30 s): RSS MB {', '.join(f'{r:.1f}' for r in rss)}"
              f" (target 20); CPU % of a core {', '.join(f'{c:.2f}' for c in cpu)} (target 0.5)")


if __name__ == "__main__":
    main()
