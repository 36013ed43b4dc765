#!/usr/bin/env python3
"""The booted lab (`python -m lab up --booted`, lab/lbhosts.py): a rebooted
primary from power-on to serving through its VIPs and HAProxy killed on the
MASTER, each with the lab's salt-master stopped, and the no-op highstate
through the master.  Medians over --runs, each row with a baseline from the
same invocation:

  primary reboot        power-on of lb-a (its new nspawn) to lb-a holding
                        every VIP with both HTTP VIPs answering 200 from the
                        client; baseline: the same power-on to systemd's
                        "boot over" (`systemctl is-system-running`)
  reboot: client gap    the longest outage of a client connecting to the
                        HTTP VIP every 50 ms (0.5 s patience) over the whole
                        reboot, down and back; failed connects
  HAProxy -9 on MASTER  the same client's longest outage after `kill -9` of
                        HAProxy's master on lb-a; baseline: the client over
                        a quiet window of the same length
  no-op highstate       `salt lb-a state.apply` (no change) through the
                        master, wall; baseline: `salt lb-a test.ping`

Needs a running booted lab; everything it starts it stops by pid.

    .venv/bin/python -m lab up --booted
    .venv/bin/python bench/lab_reboot.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lab import control, lbhosts  # noqa: E402
from lab.carp_tools import Client, all_on, failures, gap, wait_for  # noqa: E402
from lab.e2e import http_check  # noqa: E402
from lab.saltcfg import timed_salt  # noqa: E402

HTTP_VIPS = ("198.18.2.5", "198.18.2.55")
BOUND = 120.0  # seconds: a run that does not settle within this stops the bench


def serving() -> bool:
    return all_on("lb-a") and all(http_check(v, timeout=2).ok for v in HTTP_VIPS)


def settle() -> None:
    if not wait_for(serving, BOUND, every=0.5):
        raise SystemExit(f"the pair did not settle within {BOUND:.0f} s (lb-a holding every VIP, serving)")


def primary_reboot() -> dict:
    client = Client(HTTP_VIPS[0], count=900, every=0.05, port=80, timeout=0.5)
    control.stop_master()
    try:
        t = lbhosts.reboot(["lb-a"])["lb-a"]
        if not wait_for(serving, BOUND, every=0.1):
            raise SystemExit("lb-a did not serve through its VIPs after its reboot")
        served = time.monotonic()
    finally:
        control.start_master()
    results = client.result()
    return {
        "serving": served - t["power_on"],
        "booted": t["booted"] - t["power_on"],
        "gap": gap(results),
        "failed": failures(results),
        "tries": len(results),
    }


def haproxy_kill() -> dict:
    client = Client(HTTP_VIPS[0], count=300, every=0.05, port=80, timeout=0.5)
    control.stop_master()
    try:
        time.sleep(2)
        pid = control.run("lb-a", "systemctl", "show", "--property=MainPID", "--value", "haproxy").stdout.strip()
        control.run("lb-a", "kill", "-9", pid)
        results = client.result()
    finally:
        control.start_master()
    settle()
    quiet = Client(HTTP_VIPS[0], count=300, every=0.05, port=80, timeout=0.5).result()
    return {"gap": gap(results), "failed": failures(results), "tries": len(results), "quiet_gap": gap(quiet)}


def noop_highstate() -> dict:
    wall, out = timed_salt("lb-a", "state.apply")
    ret = out.get("lb-a")
    if not isinstance(ret, dict):
        raise SystemExit(f"state.apply on lb-a returned {ret!r}")
    changed = sorted(k for k, v in ret.items() if v.get("changes") or not v.get("result"))
    if changed:
        raise SystemExit(f"not a no-op: {changed[:5]}")
    return {"wall": wall, "ping": timed_salt("lb-a", "test.ping")[0], "states": len(ret)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    st = control.running()
    if st is None or not st.get("booted"):
        print("lab_reboot: needs a running booted lab (python -m lab up --booted)", file=sys.stderr)
        return 2
    settle()
    timed_salt("lb-a", "state.apply")  # whatever was pending, not measured
    reboots, kills, noops = [], [], []
    for _ in range(args.runs):
        reboots.append(primary_reboot())
        settle()
        kills.append(haproxy_kill())
        settle()
        noops.append(noop_highstate())

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    print(f"\nthe booted lab, lb-a, salt-master stopped for each fault; medians of {args.runs} runs")
    print(f"{'row':34} {'median':>8} {'baseline':>10} {'ratio':>7}  notes")
    s, b = med(reboots, "serving"), med(reboots, "booted")
    print(f"{'primary reboot: power-on to serving':34} {s:7.2f}s {b:9.2f}s {s / b:6.2f}x  baseline: systemd's boot over")
    failed = ", ".join(f"{r['failed']}/{r['tries']}" for r in reboots)
    print(f"{'reboot: client longest gap':34} {med(reboots, 'gap'):7.2f}s {'':>10} {'':>7}  failed connects {failed}")
    k, q = med(kills, "gap"), med(kills, "quiet_gap")
    failed = ", ".join(f"{r['failed']}/{r['tries']}" for r in kills)
    print(f"{'HAProxy -9: client longest gap':34} {k:7.2f}s {q:9.2f}s {'':>7}  baseline: a quiet window; failed {failed}")
    w, p = med(noops, "wall"), med(noops, "ping")
    print(f"{'no-op highstate through the master':34} {w:7.2f}s {p:9.2f}s {w / p:6.2f}x  baseline: test.ping; {noops[0]['states']} states")
    return 0


if __name__ == "__main__":
    sys.exit(main())
