#!/usr/bin/env python3
"""What a cluster's size costs each node (issue 13): idle traffic, CPU and memory, and how
long a write takes to be acknowledged and to reach every node.

For each size N in `--sizes`, N `weeble node` processes on 127.0.1.1 ... 127.0.1.N (each
joining the first, `--dns-port 0`; no container is ever started). Once every node lists all N
as Ready, and 10 s more:

  idle     over `--idle` seconds, per node: the bytes it sent on its peer-to-peer TCP
           connections (the API port's are left out), from `ss -tinp` every second: per
           connection the last count seen minus the one at the start (0 for a connection
           opened meanwhile; what a connection sends in its last second before it closes is
           missed); its CPU as % of one core (/proc/PID/stat); its RSS at the end. Median and
           max over the nodes.
  writes   `--writes` Deployments of 0 replicas, one a second, each applied at a random node:
           the time until the apply is acknowledged, and until every node's API serves it
           (each node polled every 20 ms, for at most 30 s). p50 and p95.

Usage: cargo build --release -p weeble &&
       python3 bench/scale.py [--sizes 3,10,25,50] [--idle 30] [--writes 10]
                              [--binary target/release/weeble] [--json]
                              [--node-arg=--fanout=5]...
Leaves nothing behind: the nodes are stopped and their data dirs removed.
"""

import argparse
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from common import MANIFEST, ROOT, percentile

P2P_PORT, API_PORT = 7946, 7070
SETTLE = 10.0  # seconds between the cluster forming and the idle window
POLL = 0.02  # seconds between two reads of one node's API while waiting for a write
VISIBLE_TIMEOUT = 30.0
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
PID = re.compile(r"pid=(\d+),")
SENT = re.compile(r"\bbytes_sent:(\d+)")


class Nodes:
    """`weeble node` processes `scale-1` ... `scale-N` on 127.0.1.1 ... 127.0.1.N, the first
    alone and every other one joining it; `stop` ends them and removes their data dirs."""

    def __init__(self, binary, count, node_args=()):
        self.binary = binary
        self.node_args = list(node_args)
        self.ips = [f"127.0.1.{i + 1}" for i in range(count)]
        self.dir = tempfile.mkdtemp(prefix="weeble-scale-")
        self.procs = []

    def start(self):
        """Starts the nodes; exits if something already listens on one of their ports."""
        for ip in self.ips:
            for port in (P2P_PORT, API_PORT):
                try:
                    socket.create_connection((ip, port), timeout=1).close()
                except OSError:
                    continue
                sys.exit(f"{ip}:{port} is in use (another bench/scale.py running?)")
        for i, ip in enumerate(self.ips):
            join = ["--join", f"{self.ips[0]}:{P2P_PORT}"] if i else []
            args = [self.binary, "node", "--name", f"scale-{i + 1}", "--data-dir",
                    os.path.join(self.dir, f"n{i + 1}"), "--p2p", f"{ip}:{P2P_PORT}",
                    "--api", f"{ip}:{API_PORT}", "--dns-port", "0", *join, *self.node_args]
            with open(self.log(i), "w") as log:
                self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log))

    def log(self, i):
        return os.path.join(self.dir, f"n{i + 1}.log")

    def tail(self, i, lines=5):
        """The last lines of node `i`'s log, for an error message."""
        with open(self.log(i), errors="replace") as log:
            return "".join(log.readlines()[-lines:])

    def api(self, i):
        return f"http://{self.ips[i]}:{API_PORT}"

    def ready(self, i):
        """How many nodes node `i` lists as Ready (0 if its API does not answer)."""
        try:
            with urllib.request.urlopen(f"{self.api(i)}/api/v1/nodes", timeout=5) as r:
                items = json.load(r)["items"]
        except (OSError, ValueError):
            return 0
        return sum(n["status"]["conditions"][0]["status"] == "True" for n in items)

    def wait_formed(self):
        """Seconds until every node lists all N as Ready; exits if it takes over 60 + 2N s."""
        count, start = len(self.ips), time.monotonic()
        deadline = start + 60 + 2 * count
        while True:
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    sys.exit(f"scale-{i + 1} exited ({proc.returncode}):\n{self.tail(i)}")
            seen = [self.ready(i) for i in range(count)]
            if min(seen) == count:
                return time.monotonic() - start
            if time.monotonic() > deadline:
                late = seen.index(min(seen))
                sys.exit(f"after {deadline - start:.0f} s, {sum(s < count for s in seen)} of "
                         f"{count} nodes do not list all as Ready (scale-{late + 1} lists "
                         f"{seen[late]}):\n{self.tail(late)}")
            time.sleep(1.0)

    def stop(self):
        """SIGTERM to every node, SIGKILL to those still running 5 s later; the dirs go."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def connections(pids):
    """Bytes sent so far on each TCP connection of the processes `pids` that is not on the
    API port: {(local, peer): (pid, bytes)}."""
    out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    found, header = {}, None
    for line in out.splitlines():
        if not line[:1].isspace():
            header = line.split()
            continue
        owner = PID.search(" ".join(header[5:])) if header and len(header) >= 5 else None
        if owner and int(owner.group(1)) in pids:
            local, peer = header[3], header[4]
            if str(API_PORT) not in (local.rsplit(":", 1)[1], peer.rsplit(":", 1)[1]):
                sent = SENT.search(line)
                found[(local, peer)] = (int(owner.group(1)), int(sent.group(1)) if sent else 0)
        header = None
    return found


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle(nodes, seconds):
    """Per node over `seconds`: KB/s sent to peers, CPU % of one core, RSS MB at the end;
    and how many peer-to-peer sockets there were at the start and were opened meanwhile."""
    pids = {proc.pid for proc in nodes.procs}
    start = connections(pids)
    cpu = {pid: cpu_seconds(pid) for pid in pids}
    began = time.monotonic()
    # Per connection: the count at the start (0 for a new one) and the last one seen. A count
    # that went down is a new connection on the same addresses: the old one's share is banked.
    base = {key: sent for key, (_, sent) in start.items()}
    last = dict(start)
    banked = dict.fromkeys(pids, 0)
    opened = 0
    while time.monotonic() - began < seconds:
        time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - began))))
        for key, (pid, sent) in connections(pids).items():
            if key in last and (last[key][0] != pid or sent < last[key][1]):
                banked[last[key][0]] += last[key][1] - base.pop(key)
            if key not in base:
                base[key] = 0
                opened += 1
            last[key] = (pid, sent)
    elapsed = time.monotonic() - began
    sent = dict(banked)
    for key, (pid, count) in last.items():
        sent[pid] += count - base[key]
    return {
        "kbps": [sent[pid] / elapsed / 1000 for pid in pids],
        "cpu": [100 * (cpu_seconds(pid) - cpu[pid]) / elapsed for pid in pids],
        "rss": [rss_mb(pid) for pid in pids],
        "sockets": len(start),
        "opened": opened,
    }


def wait_visible(host, path, deadline, seen, i):
    """GETs `path` at `host` every 20 ms, on one kept-alive connection, until it answers 200
    (the time goes in `seen[i]`) or until `deadline`."""
    conn = http.client.HTTPConnection(host, timeout=5)
    while time.perf_counter() < deadline:
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
            answer.read()
            if answer.status == 200:
                seen[i] = time.perf_counter()
                break
        except (OSError, http.client.HTTPException):
            conn.close()
        time.sleep(POLL)
    conn.close()


def write(nodes, name):
    """Applies Deployment `name` (0 replicas) at a random node: seconds until it is
    acknowledged, and until every node serves it (inf if one did not within 30 s)."""
    count = len(nodes.ips)
    seen = [None] * count
    deadline = time.perf_counter() + VISIBLE_TIMEOUT
    path = f"/apis/apps/v1/namespaces/default/deployments/{name}"
    pollers = [threading.Thread(target=wait_visible, daemon=True,
                                args=(f"{ip}:{API_PORT}", path, deadline, seen, i))
               for i, ip in enumerate(nodes.ips)]
    for poller in pollers:
        poller.start()
    request = urllib.request.Request(
        f"{nodes.api(random.randrange(count))}/apis/weeble.io/v1/apply", method="POST",
        data=MANIFEST.format(name=name, replicas=0).encode(),
        headers={"Content-Type": "application/yaml"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
    except urllib.error.HTTPError as e:
        sys.exit(f"apply {name}: {e.code} {e.read().decode(errors='replace')}")
    acknowledged = time.perf_counter() - start
    for poller in pollers:
        poller.join(timeout=VISIBLE_TIMEOUT + 10)
    visible = math.inf if None in seen else max(seen) - start
    return acknowledged, visible


def measure(binary, size, idle_seconds, writes, node_args):
    """One row of the table: a cluster of `size` nodes started, measured and stopped."""
    nodes = Nodes(binary, size, node_args)
    try:
        nodes.start()
        formed = nodes.wait_formed()
        print(f"{size} nodes: all Ready on every node after {formed:.1f} s", file=sys.stderr,
              flush=True)
        time.sleep(SETTLE)
        usage = idle(nodes, idle_seconds)
        print(f"{size} nodes: {usage['sockets'] / size:.1f} peer-to-peer sockets per node, "
              f"{usage['opened']} opened during the {idle_seconds:g} s idle window",
              file=sys.stderr, flush=True)
        timings = []
        for k in range(writes):
            timings.append(write(nodes, f"scale-{k}"))
            time.sleep(1.0)
    finally:
        nodes.stop()
    acknowledged, visible = zip(*timings)
    return {
        "nodes": size,
        "formed_s": formed,
        "sent_kbps": [statistics.median(usage["kbps"]), max(usage["kbps"])],
        "cpu_pct": [statistics.median(usage["cpu"]), max(usage["cpu"])],
        "rss_mb": statistics.median(usage["rss"]),
        "sockets_per_node": usage["sockets"] / size,
        "acknowledged_s": [percentile(acknowledged, 50), percentile(acknowledged, 95)],
        "visible_s": [percentile(visible, 50), percentile(visible, 95)],
    }


def seconds(value):
    return f"{value:.2f}" if math.isfinite(value) else f">{VISIBLE_TIMEOUT:g}"


def plain(value):
    """`value` for JSON: a write never seen everywhere (inf) becomes null."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isinf(value) else value


def table(rows):
    print("| nodes | sent per node idle KB/s (median / max) | CPU per node % (median / max) "
          "| RSS MB (median) | write acknowledged p50 / p95 s "
          "| visible on every node p50 / p95 s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['nodes']} | {row['sent_kbps'][0]:.1f} / {row['sent_kbps'][1]:.1f} "
              f"| {row['cpu_pct'][0]:.2f} / {row['cpu_pct'][1]:.2f} | {row['rss_mb']:.1f} "
              f"| {seconds(row['acknowledged_s'][0])} / {seconds(row['acknowledged_s'][1])} "
              f"| {seconds(row['visible_s'][0])} / {seconds(row['visible_s'][1])} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="3,10,25,50",
                        type=lambda text: [int(n) for n in text.split(",")])
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--writes", type=int, default=10)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/weeble"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--node-arg", action="append", default=[],
                        help="an argument for every `weeble node` (repeat): --node-arg=--fanout=5")
    args = parser.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} is missing: run `cargo build --release -p weeble` first")
    if not all(1 <= n <= 254 for n in args.sizes) or args.writes < 1:
        sys.exit("--sizes takes 1 to 254 nodes each, --writes at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    try:
        rows = [measure(args.binary, n, args.idle, args.writes, args.node_arg) for n in args.sizes]
    except KeyboardInterrupt:
        sys.exit("interrupted")
    table(rows)
    if args.json:
        print(json.dumps(plain(rows), indent=2))


if __name__ == "__main__":
    main()
