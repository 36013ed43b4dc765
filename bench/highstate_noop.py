#!/usr/bin/env python3
"""Wall time of a no-op highstate on a lab load balancer, through the lab's
salt-master, against `test.ping` through the same master in the same run.

Each run is `salt lb-a state.apply` (every state already as the pillar
says: the run must report no change, or the bench stops) timed from the CLI's
start to its end, as an operator sees it; the baseline is `salt lb-a
test.ping` (Salt's own start-up, publish and return).  Also printed: the
time inside the states (their `duration`s) and the number of states.

Needs a running lab (`make lab`).

    .venv/bin/python bench/highstate_noop.py [--runs 5] [--minion lb-a]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lab import control  # noqa: E402
from lab.saltcfg import timed_salt  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--minion", default="lb-a")
    args = ap.parse_args()
    if control.running() is None:
        print("highstate_noop: the lab is not running (make lab)", file=sys.stderr)
        return 2
    timed_salt(args.minion, "state.apply")  # whatever was pending, not measured
    walls, inside, states = [], [], 0
    for _ in range(args.runs):
        wall, out = timed_salt(args.minion, "state.apply")
        ret = out.get(args.minion)
        if not isinstance(ret, dict):
            raise SystemExit(f"state.apply on {args.minion} returned {ret!r}")
        changed = sorted(k for k, v in ret.items() if v.get("changes") or not v.get("result"))
        if changed:
            raise SystemExit(f"not a no-op: {changed[:5]}")
        walls.append(wall)
        inside.append(sum(float(v.get("duration") or 0) for v in ret.values()) / 1000)
        states = len(ret)
    pings = [timed_salt(args.minion, "test.ping")[0] for _ in range(args.runs)]
    hs, ping = statistics.median(walls), statistics.median(pings)
    print(f"\nno-op highstate on {args.minion} through the lab's master; medians of {args.runs} runs")
    print(f"state.apply (no-op)  {hs:.2f} s  ({states} states, {statistics.median(inside):.2f} s inside them)")
    print(f"test.ping            {ping:.2f} s")
    print(f"ratio                {hs / ping:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
