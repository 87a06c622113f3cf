#!/usr/bin/env python3
"""A node of the container test bed cut off for hours, then reconnected (issue 5's "when it
reconnects after hours, nothing is recreated that did not need to be").

Three nodes run 6 replicas of `long`. The busiest is disconnected from the bed's network for
`--hours`; both sides write during the cut. Then it is connected again, and this prints how
long the heads took to become identical and the duplicates to go, and checks that:
  - during the cut, each side ran all 6 replicas and never more;
  - every write from either side is on every node;
  - no container was created after the heal (every running container existed before it),
    and the cut node's own replicas still run in the containers it had before the cut.

Usage: cargo build --release -p weeble && weeble image build-demo &&
       python3 bench/long_cut.py [--hours 2]
Leaves nothing behind. Exits non-zero if a check fails.
"""

import argparse
import time

from faults import Bed, poll

DEPLOYMENT = "edge-link"  # 3 of its 6 replicas go to one of the nodes named here


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=2.0)
    args = parser.parse_args()
    bed = Bed(3, prefix="172.30.251", network="weeble-long-cut")
    try:
        bed.wait_formed()
        bed.apply(0, DEPLOYMENT, 6)
        total = lambda side: sum(bed.running(i, DEPLOYMENT) for i in side)
        poll("six running", lambda: total(range(3)) == 6, every=0.2)
        time.sleep(5)  # settled: each node runs its share
        print("replicas per node:", [bed.running(i, DEPLOYMENT) for i in range(3)])
        cut = max(range(3), key=lambda i: bed.running(i, DEPLOYMENT))
        rest = [i for i in range(3) if i != cut]
        owned = set(bed.running_ids(cut, DEPLOYMENT))
        bed.disconnect(cut)
        began = time.time()
        print(f"{time.strftime('%H:%M:%S')} cut off {bed.nodes[cut]} (it ran {len(owned)}) "
              f"for {args.hours} h", flush=True)
        poll("both sides running all six",
             lambda: total([cut]) == 6 and total(rest) == 6, every=0.2)
        written, most = [], 0
        while time.time() - began < args.hours * 3600:
            for i in (cut, rest[0]):
                name = f"w{i}-{len(written)}"
                bed.apply(i, name, 0)
                written.append(name)
            most = max(most, total([cut]), total(rest))
            time.sleep(min(300, max(0.0, args.hours * 3600 - (time.time() - began))))
        before = {c for i in range(3) for c in bed.running_ids(i, DEPLOYMENT)}
        healed = time.time()
        bed.connect(cut)
        converged = poll("identical heads", lambda: len(bed.heads()) == 1, every=0.05)
        single = poll("one copy of each", lambda: total(range(3)) == 6, every=0.1)
        time.sleep(5)
        after = {c for i in range(3) for c in bed.running_ids(i, DEPLOYMENT)}
        names = [{d["metadata"]["name"] for d in (bed.get(i, "/apis/apps/v1/deployments")
                                                   or {"items": []})["items"]}
                 for i in range(3)]
        lost = [(i, w) for i in range(3) for w in written if w not in names[i]]
        print(f"cut for {(healed - began) / 3600:.2f} h, {len(written)} writes; heal: heads "
              f"identical after {converged - healed:.2f} s, duplicates gone after "
              f"{single - healed:.2f} s; most on one side during the cut: {most}")
        failures = []
        if most > 6:
            failures.append(f"a side ran {most} copies")
        if lost:
            failures.append(f"writes lost: {lost}")
        if not after <= before:
            failures.append(f"containers created after the heal: {after - before}")
        if not owned <= after:
            failures.append(f"the cut node's own replicas were replaced: {owned - after}")
        if len(after) != 6:
            failures.append(f"{len(after)} running at the end, not 6")
        print("FAILED: " + "; ".join(failures) if failures else
              "ok: nothing lost, nothing recreated", flush=True)
        raise SystemExit(1 if failures else 0)
    finally:
        bed.stop()


if __name__ == "__main__":
    main()
