#!/usr/bin/env python3
"""Split brain and heal, N times, in the lab (issue 17, item 1).

Each cycle: VRRP (IP protocol 112) is dropped between the two LBs for
`--cut` seconds, while both stay reachable (lab/events_tools.VrrpCut):
both become MASTER of every group.  Then VRRP flows again, and the cycle
ends when every VIP has exactly one holder, lb-a (the primary, preempt), or
after `--bound` seconds.  Who holds each VIP is sampled every 50 ms from the
heal on (carp_tools.Sampler).

Per cycle: the time from the heal to one holder per VIP on lb-a, the
samples with no holder of a VIP after the heal, and whether it ended
settled.  The outage this looks for (a heal that ended with no holder:
keepalived's MASTER_RX_LOWER_PRI read as a state, fixed on 2026-12-02)
shows as a cycle that never settles.

Needs a running lab whose pair runs keepalived with the event path
(the events lab tests' setup), and it must be yours.  Everything it changes
(tc qdiscs) it removes in a finally.

    .venv/bin/python bench/splitbrain_cycles.py [--cycles 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lab import PILLAR  # noqa: E402
from lab.carp_tools import LBS, VIPS, all_on, holders, wait_for  # noqa: E402
from lab.events_tools import VrrpCut, setup_pair  # noqa: E402
from lab.plan import plan_from_pillar  # noqa: E402


def cycle(plan, cut: float, bound: float) -> dict:
    with VrrpCut(plan):
        both = wait_for(lambda: all(hs == set(LBS) for hs in holders().values()), cut + 10)
        time.sleep(cut)
    healed = time.monotonic()
    no_holder = 0
    settled_at = None
    deadline = healed + bound
    while time.monotonic() < deadline:
        hs = holders()
        no_holder += sum(1 for v in VIPS if not hs[v])
        if all(h == {"lb-a"} for h in hs.values()):
            settled_at = time.monotonic()
            break
        time.sleep(0.05)
    return {
        "split": bool(both),
        "settled": settled_at is not None,
        "seconds": round(settled_at - healed, 2) if settled_at else None,
        "no_holder_samples": no_holder,
        "end": {v: sorted(h) for v, h in holders().items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--cut", type=float, default=3.0, help="seconds both nodes stay MASTER")
    ap.add_argument("--bound", type=float, default=20.0, help="seconds for a heal to settle")
    ap.add_argument("--setup", action="store_true", help="set the pair up first (keepalived, events path)")
    args = ap.parse_args()
    plan = plan_from_pillar(PILLAR)
    if args.setup:
        setup_pair("keepalived")
    if not wait_for(lambda: all_on("lb-a"), 30):
        print(f"the pair is not settled on lb-a: {holders()}")
        return 1
    rows = []
    for i in range(args.cycles):
        r = cycle(plan, args.cut, args.bound)
        rows.append(r)
        print(
            f"cycle {i + 1:2}: split {'yes' if r['split'] else 'NO '}  settled {'yes' if r['settled'] else 'NO '}"
            f"  {r['seconds'] if r['seconds'] is not None else '-':>5} s  no-holder samples {r['no_holder_samples']}"
            + ("" if r["settled"] else f"  end {r['end']}"),
            flush=True,
        )
        if not r["settled"]:
            wait_for(lambda: all_on("lb-a"), 30)
    times = [r["seconds"] for r in rows if r["seconds"] is not None]
    bad = [i + 1 for i, r in enumerate(rows) if not r["settled"]]
    med = f"{statistics.median(times):.2f} s" if times else "-"
    print(
        f"summary: {len(rows)} cycles, {len(rows) - len(bad)} settled on one holder per VIP (median {med} after the heal), "
        f"{len(bad)} not settled {bad if bad else ''}".rstrip()
    )
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
