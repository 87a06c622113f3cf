#!/usr/bin/env python3
"""Weeble under faults, each repeated `--runs` times (default 20), with p50/p95:

  node crash        5 nodes on 127.0.0.81-85 run 10 replicas; the busiest node's agent is
                    killed and its containers removed (the machine died). Detection: until a
                    survivor's API shows it NotReady. Replacement: until every replica it ran
                    has started on a survivor (the engine's start events). It is then started
                    again (same data dir), and the cluster settles before the next run.
  node frozen       the same, but the agent is stopped with SIGSTOP (its containers keep
                    running): detection and replacement by SWIM's suspicion alone; then it is
                    continued, and the duplicate window is until one copy of each is left.
  bed node killed   the container test bed (below), 3 nodes: the busiest node's container is
                    killed and its workloads removed; detection and replacement as above.
  lossy link        the bed, 3 nodes, one node's packets dropped at 10/20/30% for 60 s:
                    suspicions, false deaths and replicas moved (none is the aim).
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
       [--faults crash,frozen,killed,cut,split,lossy] (default: all of them)
Leaves nothing behind: nodes, containers and the test network are removed.
"""

import json
import os
import signal
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


def node_crash(binary, runs, freeze=False):
    """The busiest node's agent is killed and its containers removed (a crash), or, with
    `freeze`, stopped with SIGSTOP (its containers keep running) and continued after its
    replicas run elsewhere. Returns detection, replacement and (freeze only) the duplicate
    window after it continues."""
    name = "freeze" if freeze else "crash"
    cluster = Cluster(binary, name, CRASH_IPS, 27946, 27070)
    starts = Starts(classify)
    detection, replacement, duplicates = [], [], []
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
            if freeze:
                cluster.nodes[victim].send_signal(signal.SIGSTOP)
                remove = threading.Thread(target=lambda: None)
            else:
                cluster.kill(victim)
                # Its containers die with it, while the survivors are already at work.
                ids = sh("docker", "ps", "-aq", "--filter",
                         f"label=weeble.node={cluster.node_name(victim)}")
                remove = threading.Thread(target=sh, args=("docker", "rm", "-f", *ids.split()))
            remove.start()
            seen = poll("the fault to be seen",
                        lambda: cluster.node_name(victim) not in cluster.nodes_ready(witness))
            detection.append(seen - t0)
            remove.join()
            replacement.append(starts.wait("crash", counts[victim], t0))
            if freeze:
                t1 = time.time()
                cluster.nodes[victim].send_signal(signal.SIGCONT)
                single = poll("one copy of each", lambda: len(
                    containers("weeble.deployment=default/crash")) == 10, every=0.1)
                duplicates.append(single - t1)
            else:
                cluster.start(victim)
            cluster.wait_ready(len(CRASH_IPS), witness)
            wait_count(10, "weeble.deployment=default/crash")
    finally:
        starts.stop()
        cluster.stop()
    return detection, replacement, duplicates


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
                    "--insecure-api", "--publish-ip", f"{prefix}.1", "--log-format", "json"]
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

    def run_edge(self):
        """Once every node sees every other, applies 6 replicas of `edge` and waits until
        they all run."""
        self.wait_formed()
        self.apply(0, "edge", 6)
        wait_count(6, "weeble.deployment=default/edge")

    def wait_formed(self):
        n = len(self.nodes)
        poll("the bed to form", lambda: all(len(self.ready(i)) == n for i in range(n)),
             limit=60, every=0.2)

    def heads(self):
        """The distinct document heads across the nodes (one when converged)."""
        return {json.dumps((self.get(i, "/apis/weeble.io/v1/state") or {}).get("heads"))
                for i in range(len(self.nodes))}

    def ready(self, i):
        """The names of the nodes node `i` sees as Ready."""
        return {n["metadata"]["name"] for n in (self.get(i, "/api/v1/nodes") or {"items": []})[
            "items"] if n["status"]["conditions"][0]["status"] == "True"}

    def log(self, i):
        """The messages of node `i`'s JSON log."""
        out = subprocess.run(["docker", "logs", self.nodes[i]], capture_output=True, text=True)
        lines = (out.stdout + out.stderr).splitlines()
        return [json.loads(l).get("fields", {}).get("message") for l in lines if l.startswith("{")]

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
        rules = sh("iptables", "-S", "DOCKER-USER").splitlines()
        for rule in (r for r in rules if self.network in r):
            sh("iptables", *rule.replace("-A ", "-D ", 1).replace('"', "").split(), check=False)
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
        bed.run_edge()
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


def bed_kill(runs):
    """3 nodes of the bed run 6 replicas; the busiest node's container is killed and its
    workloads removed, then started again (same disk) once its replicas run elsewhere."""
    bed = Bed(3)
    starts = Starts(lambda labels: "edge" if labels.get("weeble.deployment") == "default/edge"
                    else None)
    detection, replacement = [], []
    try:
        bed.run_edge()
        for _ in range(runs):
            time.sleep(2)
            victim = max(range(3), key=bed.running)
            count, witness = bed.running(victim), (victim + 1) % 3
            starts.drain()
            t0 = time.time()
            sh("docker", "kill", bed.nodes[victim])
            ids = sh("docker", "ps", "-aq", "--filter", f"label=weeble.node={bed.nodes[victim]}")
            sh("docker", "rm", "-f", *ids.split())
            seen = poll("the kill to be seen", lambda: bed.nodes[victim] not in bed.ready(witness))
            detection.append(seen - t0)
            replacement.append(starts.wait("edge", count, t0))
            sh("docker", "start", bed.nodes[victim])
            bed.wait_formed()
            wait_count(6, "weeble.deployment=default/edge")
    finally:
        starts.stop()
        bed.stop()
    return detection, replacement


def lossy_link(losses, seconds):
    """For each loss rate: 3 nodes of the bed with 6 replicas; for `seconds`, that share of
    the packets to and from one node is dropped (iptables' statistic match: this kernel has
    no netem). Counts packets dropped, suspicions, evictions (false deaths) and replicas
    that moved."""
    rows = []
    for loss in losses:
        bed = Bed(3)
        try:
            bed.run_edge()
            time.sleep(3)
            before = {c for i in range(3) for c in bed.running_ids(i)}
            for way in ("-s", "-d"):
                sh("iptables", "-I", "DOCKER-USER", way, bed.ip(2), "-m", "statistic", "--mode",
                   "random", "--probability", str(loss), "-m", "comment", "--comment",
                   bed.network, "-j", "DROP")
            time.sleep(seconds)
            after = {c for i in range(3) for c in bed.running_ids(i)}
            logs = [bed.log(i) for i in range(3)]
            counters = sh("iptables", "-L", "DOCKER-USER", "-v", "-n", "-x").splitlines()
            dropped = sum(int(line.split()[0]) for line in counters if bed.network in line)
            rows.append((loss, dropped, sum(m == "peer suspected" for log in logs for m in log),
                         sum(m == "peer declared dead" for log in logs for m in log),
                         len(after ^ before)))
        finally:
            bed.stop()
    return rows


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


FAULTS = ("crash", "frozen", "killed", "cut", "split", "lossy")


def main():
    args = arguments(__doc__, lambda parser: parser.add_argument(
        "--faults", default=",".join(FAULTS),
        help=f"which to run, comma-separated, of {', '.join(FAULTS)}"))
    chosen = set(args.faults.split(","))
    if chosen - set(FAULTS):
        sys.exit(f"--faults: no such fault {', '.join(sorted(chosen - set(FAULTS)))}; "
                 f"choose among {', '.join(FAULTS)}")
    binary = weeble_binary(args.weeble)
    none = ([], [], [])
    detection, replacement, _ = node_crash(binary, args.runs) if "crash" in chosen else none
    frozen = node_crash(binary, args.runs, freeze=True) if "frozen" in chosen else none
    killed = bed_kill(args.runs) if "killed" in chosen else none
    cut_off = partition_heal(args.runs, 3) if "cut" in chosen else none
    split = partition_heal(args.runs, 5) if "split" in chosen else none
    lossy = lossy_link([0.1, 0.2, 0.3], 60) if "lossy" in chosen else []
    swarm = [] if args.skip_swarm or "crash" not in chosen else swarm_crash()
    print(f"\n{args.runs} runs each, seconds")
    print(f"{'fault':<48} {'p50':>7} {'p95':>7} {'target':>8}")
    for name, values, target in [
        ("node crash: detected (5 nodes)", detection, "-"),
        ("node crash: every replica running again", replacement, "p95 3"),
        ("node frozen (SIGSTOP): suspected (not Ready)", frozen[0], "-"),
        ("node frozen: every replica running again", frozen[1], "-"),
        ("node frozen, continued: duplicates gone", frozen[2], "-"),
        ("bed node container killed: detected (3 nodes)", killed[0], "-"),
        ("bed node container killed: replicas running", killed[1], "p95 3"),
        ("one node cut off, healed: identical heads", cut_off[0], "2"),
        ("one node cut off, healed: duplicates gone", cut_off[1], "5"),
        ("3 | 2 split, healed: identical heads", split[0], "2"),
        ("3 | 2 split, healed: duplicates gone", split[1], "5"),
    ]:
        if values:  # a fault not chosen has none
            print(f"{name:<48} {percentile(values, 50):>7.2f} {percentile(values, 95):>7.2f} "
                  f"{target:>8}")
    if lossy:
        print("\nlossy link, one node of 3, 60 s:")
        print("  loss  packets dropped  suspicions  false deaths  replicas moved")
    for loss, dropped, suspected, dead, moved in lossy:
        print(f"  {loss:>4.0%}  {dropped:>15}  {suspected:>10}  {dead:>12}  {moved:>14}")
    if swarm:
        print(f"Swarm, same run, 2-node crash -> replicas back ({len(swarm)} crashes): "
              f"p50 {percentile(swarm, 50):.2f}, max {max(swarm):.2f}")


if __name__ == "__main__":
    main()
