#!/usr/bin/env python3
"""From a VIP moving to the master knowing, and to the reactor having acted.

In the lab, with keepalived at the project's defaults, the carp beacon
(interval 1 s) and the lb-carp-event hook on both LBs, and the reactor of
etc/salt/master.d/reactor.conf on the lab's master.  Each run:

1. a client in the lab's client host connects to the first VIP every 20 ms;
2. the master's (lb-a) link to the user segment goes down;
3. measured, all on this machine's clock:
   - moved: the client's first successful connect after its failures
     (the VIP answers from lb-b);
   - event: the first ``salt/beacon/lb-b/carp/<vhid>/MASTER`` for that VIP
     on the master's event bus (whoever sent it: beacon or hook);
   - job: the return of the reactor's ``state.apply haproxy`` from lb-b;
4. the link comes back, the VIPs return to lb-a, the reactor's job on lb-a
   finishes, and the next run starts.

Prints a table (median of N runs, default 5) and writes
bench/results/failover_events.json (or --json PATH).  Under the lab fixture:
`EVENTS_BENCH=1 .venv/bin/pytest -s tests/lab/test_events_bench.py`.  Target: event <= 2 s after the move.
A negative "event" means the master heard of the transition before the
client saw the VIP answer.

Needs a running lab (`.venv/bin/python -m lab up`), and it must be yours:
only one lab runs on a machine.  Everything it starts it stops by pid.

    .venv/bin/python bench/failover_events.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lab import (  # noqa: E402
    PILLAR,
    control,  # noqa: E402
    state,
)
from lab.carp_tools import VIPS, Client, Services, all_on, holders, link, user_port, wait_for  # noqa: E402
from lab.events_tools import SETTLE, EventLog, flat, setup_pair, teardown_pair  # noqa: E402
from lab.plan import plan_from_pillar  # noqa: E402

VIP = VIPS[0]
EVERY = 0.02


def moved_at(results) -> float | None:
    """Completion time of the first successful connect after a failure."""
    failing = False
    for t, ok, dur, *_ in results:  # (start, ok, seconds[, error])
        if not ok:
            failing = True
        elif failing:
            return t + dur
    return None


def one_run(plan, events: EventLog, i: int) -> dict:
    port = user_port(plan, "lb-a")
    assert wait_for(lambda: all_on("lb-a"), SETTLE), holders()
    client = Client(VIP, count=int(12 / EVERY), every=EVERY)
    time.sleep(1.0)
    t_cut = time.time()
    try:
        link(port, up=False)
        ev = events.wait("salt/beacon/lb-b/carp/*/MASTER", count=4, timeout=SETTLE + 10, since=t_cut)
        deadline = time.monotonic() + 120
        while not events.job_returns("state.apply", "lb-b", since=t_cut) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        results = client.result()
        link(port, up=True)
    moved = moved_at(results)
    mine = [e for e in ev if (flat(e[2]).get("vip") or "").split("/")[0] == VIP]
    job = events.job_returns("state.apply", "lb-b", since=t_cut)
    row = {
        "run": i,
        "cut": t_cut,
        "moved": moved,
        "event": mine[0][0] if mine else None,
        "event_source": flat(mine[0][2]).get("source") if mine else None,
        "job": job[0][0] if job else None,
    }
    row["moved_after_cut"] = round(moved - t_cut, 3) if moved else None
    row["event_after_move"] = round(row["event"] - moved, 3) if moved and row["event"] else None
    row["job_after_move"] = round(row["job"] - moved, 3) if moved and row["job"] else None
    # back to lb-a, and let the reactor's job there finish before the next run
    t_back = time.time()
    assert wait_for(lambda: all_on("lb-a"), SETTLE + 5), holders()
    deadline = time.monotonic() + 120
    while not events.job_returns("state.apply", "lb-a", since=t_back) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    return row


def med(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return (round(statistics.median(vals), 3), len(vals)) if vals else (None, 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", default=os.path.join(REPO, "bench", "results", "failover_events.json"))
    args = ap.parse_args(argv)
    if args.runs < 5:
        ap.error("--runs: at least 5 (a median of fewer says little)")
    if control.running() is None:
        print("no running lab: `.venv/bin/python -m lab up` first", file=sys.stderr)
        return 2
    plan = plan_from_pillar(PILLAR, galera6=state.load()["galera6"])
    print("setting up: keepalived, the carp beacon and hook, HAProxy on both LBs ...", flush=True)
    setup_pair("keepalived")
    rows = []
    try:
        with Services(), EventLog(max_seconds=args.runs * 300) as events:
            for i in range(1, args.runs + 1):
                row = one_run(plan, events, i)
                rows.append(row)
                print(
                    f"run {i}: VIP moved {row['moved_after_cut']} s after the cut; event +{row['event_after_move']} s "
                    f"({row['event_source']}); reactor job done +{row['job_after_move']} s",
                    flush=True,
                )
    finally:
        teardown_pair()
    summary = {k: med(rows, k) for k in ("moved_after_cut", "event_after_move", "job_after_move")}
    print()
    print(f"{'measure (median of ' + str(args.runs) + ')':<44} {'seconds':>8}  runs")
    labels = {
        "moved_after_cut": "link cut -> VIP answers from the peer",
        "event_after_move": "VIP moved -> MASTER event on the master bus",
        "job_after_move": "VIP moved -> reactor's state.apply returned",
    }
    for k, label in labels.items():
        value, n = summary[k]
        print(f"{label:<44} {value if value is not None else '-':>8}  {n}")
    sources = sorted({r["event_source"] for r in rows if r["event_source"]})
    print(f"first event sent by: {', '.join(sources)}; target: event <= 2 s after the move")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump({"runs": rows, "median": {k: v[0] for k, v in summary.items()}, "when": time.time()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
