#!/usr/bin/env python3
"""A 5-replica rolling update on real containers: Weeble beside Docker Swarm on this engine.

Each run changes the replicas' $MESSAGE and times, from the command, until the update is
complete:
  weeble 25%/25%     Kubernetes' default pacing (2 more, 1 fewer at a time), 3 nodes
  weeble 1/0         maxSurge 1, maxUnavailable 0: one at a time, the new before the old
  swarm start-first  `docker service update --update-parallelism 1 --update-order
                     start-first` (its other settings as they come: a task is watched for
                     `--update-monitor` 5 s before the next one starts), a one-node swarm
Weeble's update is complete when a node reports every replica on the new template and
available, and no other pod (polled every 50 ms); Swarm's when `docker service update`
returns (it waits for the update to converge).

Usage (as a user that may use Docker; nothing else may hold a swarm on the engine):
  cargo build --release -p weeble && python3 bench/rollout.py [--runs 5] [--skip-swarm]

Leaves the engine as it found it (the nodes and their containers removed, the service
removed, the swarm left).
"""

import json
import sys
import time
import urllib.request

from common import arguments, IMAGE, MANIFEST, Cluster, percentile, sh, wait_count, \
    weeble_binary
from vs_swarm import Swarm, SERVICE

IPS = ["127.0.0.24", "127.0.0.25", "127.0.0.26"]
REPLICAS = 5



def manifest(name, strategy, message):
    """common's deployment of REPLICAS replicas with `strategy` and $MESSAGE set."""
    text = MANIFEST.format(name=name, replicas=REPLICAS)
    text = text.replace("  template:\n", f"  strategy: {strategy}\n  template:\n")
    image = "        image: weeble-demo:v1\n"
    return text.replace(image, image + f'        env: [{{name: MESSAGE, value: "{message}"}}]\n')


STRATEGIES = {
    "weeble 25%/25%": "{}",
    "weeble 1/0": "{rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}",
}


def complete(server, name):
    """Whether `server` reports deployment `name` rolled out: every replica on the new
    template and available, nothing else left, the latest spec seen."""
    try:
        url = f"{server}/apis/apps/v1/namespaces/default/deployments/{name}"
        with urllib.request.urlopen(url, timeout=2) as r:
            d = json.load(r)
    except OSError:
        return False
    s = d["status"]
    return (s["observedGeneration"] >= d["metadata"].get("generation", 0)
            and s["updatedReplicas"] == s["replicas"] == s["availableReplicas"] == REPLICAS)


def weeble_updates(cluster, strategy, runs):
    name = "roll"
    def apply(message):
        cluster.cli("apply", "-f", "-", stdin=manifest(name, strategy, message))
    apply("v0")
    wait_count(REPLICAS, f"weeble.deployment=default/{name}")
    times = []
    for run in range(1, runs + 1):
        deadline = time.time() + 120
        while not complete(cluster.server, name):
            if time.time() > deadline:
                sys.exit("the deployment did not settle")
            time.sleep(0.05)
        time.sleep(1)
        t0 = time.time()
        apply(f"v{run}")
        time.sleep(0.05)
        while not complete(cluster.server, name):
            if time.time() - t0 > 120:
                sys.exit(f"the update to v{run} did not complete in 120 s")
            time.sleep(0.05)
        times.append(time.time() - t0)
    cluster.cli("delete", "deployment", name)
    wait_count(0, f"weeble.deployment=default/{name}")
    return times


def swarm_updates(runs):
    swarm = Swarm()
    try:
        sh("docker", "service", "create", "-d", "--replicas", str(REPLICAS), "--name", SERVICE,
           "--env", "MESSAGE=v0", IMAGE)
        wait_count(REPLICAS, swarm.label)
        times = []
        for run in range(1, runs + 1):
            time.sleep(1)
            t0 = time.time()
            sh("docker", "service", "update", "--detach=false", "--quiet",
               "--update-parallelism", "1", "--update-order", "start-first",
               "--env-add", f"MESSAGE=v{run}", SERVICE)
            times.append(time.time() - t0)
        return times
    finally:
        swarm.stop()


def main():
    args = arguments(__doc__)
    results = {}
    cluster = Cluster(weeble_binary(args.weeble), "rollout", IPS, 27947, 27071)
    try:
        for label, strategy in STRATEGIES.items():
            results[label] = weeble_updates(cluster, strategy, args.runs)
    finally:
        cluster.stop()
    if not args.skip_swarm:
        results["swarm start-first"] = swarm_updates(args.runs)
    print(f"\n{args.runs} updates of {REPLICAS} replicas each, seconds from the command to "
          "the update complete")
    print(f"{'what':<20} {'p50':>7} {'p95':>7} {'/swarm':>7}")
    swarm = results.get("swarm start-first")
    for label, times in results.items():
        p50 = percentile(times, 50)
        ratio = f"{p50 / percentile(swarm, 50):>7.2f}" if swarm else ""
        print(f"{label:<20} {p50:>7.2f} {percentile(times, 95):>7.2f} {ratio}")


if __name__ == "__main__":
    main()
