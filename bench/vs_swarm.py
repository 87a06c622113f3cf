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

import random
import subprocess
import sys
import time

from common import arguments, IMAGE, Cluster, Starts, containers, percentile, sh, wait_count, \
    weeble_binary

IPS = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
SERVICE = "wbench"
DEPLOYMENT = "default/bench"
KILL_REPLICAS = 10  # each replica is killed at most once every KILL_REPLICAS * KILL_GAP s
KILL_GAP = 3.5


def classify(labels):
    if labels.get("weeble.deployment") == DEPLOYMENT:
        return "weeble"
    if labels.get("com.docker.swarm.service.name") == SERVICE:
        return "swarm"
    if labels.get("weeble.bench") == "floor":
        return "floor"
    return None


class Weeble(Cluster):
    """Three nodes on 127.0.0.21-23 running deployment `bench`."""

    label = f"weeble.deployment={DEPLOYMENT}"
    name = "weeble"

    def __init__(self, binary):
        super().__init__(binary, "bench", IPS, 27946, 27070)

    def apply(self, replicas):
        super().apply("bench", replicas)

    def scale(self, replicas):
        self.cli("scale", "deployment", "bench", "--replicas", str(replicas))

    def remove(self):
        self.cli("delete", "deployment", "bench")


class Swarm:
    """A single-node swarm on this engine."""

    label = f"com.docker.swarm.service.name={SERVICE}"
    name = "swarm"

    def __init__(self):
        state = sh("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").strip()
        if state != "inactive":
            sys.exit(f"the engine is already in a swarm ({state}): not touching it")
        # `swarm init` makes the docker_gwbridge network, which `swarm leave` keeps.
        self.had_gwbridge = bool(sh("docker", "network", "ls", "-q", "--filter",
                                    "name=^docker_gwbridge$").strip())
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
        if not self.had_gwbridge:
            sh("docker", "network", "rm", "docker_gwbridge", check=False)


def measure(system, starts, runs):
    """apply, kill and scale figures (seconds) for one system."""
    figures = {"apply": [], "kill": [], "scale": []}
    for _ in range(runs):
        starts.drain()
        t0 = time.time()
        system.apply(3)
        figures["apply"].append(starts.wait(system.name, 3, t0))
        system.remove()
        wait_count(0, system.label)
        time.sleep(0.5)
    system.apply(3)
    wait_count(3, system.label)
    for _ in range(runs):
        time.sleep(1)
        starts.drain()
        t0 = time.time()
        system.scale(5)
        figures["scale"].append(starts.wait(system.name, 2, t0))
        system.scale(3)
        wait_count(3, system.label)
    system.scale(KILL_REPLICAS)
    wait_count(KILL_REPLICAS, system.label)
    time.sleep(30)  # every replica has run long enough not to count as crash-looping
    for i in range(runs):
        victims = containers(system.label)
        victim = victims[i % len(victims)] if system.name == "weeble" else random.choice(victims)
        starts.drain()
        t0 = time.time()
        sh("docker", "kill", victim)
        figures["kill"].append(starts.wait(system.name, 1, t0))
        wait_count(KILL_REPLICAS, system.label)
        time.sleep(KILL_GAP)
    system.remove()
    wait_count(0, system.label)
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
    args = arguments(__doc__)
    starts = Starts(classify)
    results, idle = {}, None
    weeble = Weeble(weeble_binary(args.weeble))
    try:
        results["weeble"] = measure(weeble, starts, args.runs)
        weeble.apply(3)
        wait_count(3, weeble.label)
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
