#!/usr/bin/env python3
"""How long after a VIP moves the upstream router's route follows, in the lab.

Both load balancers run BIRD (salt/routing) and peer by BGP (with BFD, hold
time 9 s: the lab pillar) with up1; up1 learns the VIPs' /32s only from the
node that holds them (BIRD's direct protocol announces each VIP address,
a /32, while it is on the node: docs/routing.md).  Per run, a watcher reads every 5 ms, without spawning a
process, who holds VIP .5 (each node's addresses, lab/netview.py) and where
up1's route to it points (up1's /proc/<pid>/net/route), and records when
each moved:

  link cut      lb-a's user link down: lb-a goes FAULT and withdraws, but
                over a dead link; up1 drops lb-a's routes when BFD sees the
                session die, and keeps lb-b's announcement
  link return   the link back: lb-a preempts, announces; lb-b withdraws
  maintenance   carp.maintenance on lb-a (planned: sessions stay up, the
                new MASTER announces, the old one withdraws)
  unmaintenance carp.unmaintenance on lb-a

The delay is route moved - VIP moved (negative: the route moved first).
Median of N runs (default 5) per row; the maintenance rows are the baseline
(no failure detection involved), and the link rows are also given as a
ratio to it.  Needs a running lab with up1 (`python -m lab up`), and it must
be yours: one lab per machine.  It leaves lb-a's link up and lb-a out of
maintenance, also when it fails.

    .venv/bin/python bench/routing_failover.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import PILLAR, control, saltcfg  # noqa: E402
from lab.carp_tools import all_on, link, local_addresses, user_port  # noqa: E402
from lab.plan import plan_from_pillar  # noqa: E402
from lab.routing_tools import up1_routes  # noqa: E402

VIP = "198.18.2.5"
POLL = 0.005
SETTLE = 30.0  # seconds, bound for one move


class Watch(threading.Thread):
    """First time (after start) the VIP is on `to` only, and up1's route to it points at `gateway`."""

    def __init__(self, to: str, gateway: str):
        super().__init__(daemon=True)
        self.to, self.gateway = to, gateway
        self.vip_at = self.route_at = None
        self._halt = threading.Event()

    def run(self):
        end = time.monotonic() + SETTLE
        other = "lb-b" if self.to == "lb-a" else "lb-a"
        while not self._halt.is_set() and time.monotonic() < end and (self.vip_at is None or self.route_at is None):
            now = time.monotonic()
            if self.vip_at is None and VIP in local_addresses(self.to) and VIP not in local_addresses(other):
                self.vip_at = now
            if self.route_at is None and up1_routes().get(VIP) == self.gateway:
                self.route_at = now
            time.sleep(POLL)

    def result(self) -> float | None:
        self.join(timeout=SETTLE + 5)
        self._halt.set()
        if self.vip_at is None or self.route_at is None:
            return None
        return self.route_at - self.vip_at


def salt(minion: str, fun: str):
    return saltcfg.salt_json("-t", "90", minion, fun, timeout=180).get(minion)


def one_run(plan, addr: dict, action, to: str) -> float | None:
    w = Watch(to, addr[to])
    w.start()
    action()
    return w.result()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    if control.running() is None:
        print("no running lab: .venv/bin/python -m lab up", file=sys.stderr)
        return 2
    plan = plan_from_pillar(PILLAR)
    if "up1" not in control.running().get("hosts", {}):
        print("the running lab has no up1 (it predates the upstream router): take it down and bring it up again", file=sys.stderr)
        return 2
    addr = {h: next(i.address.split("/")[0] for i in plan.host(h).interfaces if i.network == "user") for h in ("lb-a", "lb-b")}
    port = user_port(plan, "lb-a")
    rows = {"link cut": [], "link return": [], "maintenance": [], "unmaintenance": []}
    print(f"CARP provider: {salt('lb-a', 'carp.provider')}", flush=True)
    try:
        salt("lb-a", "carp.unmaintenance")
        for n in range(args.runs):
            for name, action, to in (
                ("link cut", lambda: link(port, up=False), "lb-b"),
                ("link return", lambda: link(port, up=True), "lb-a"),
                ("maintenance", lambda: salt("lb-a", "carp.maintenance"), "lb-b"),
                ("unmaintenance", lambda: salt("lb-a", "carp.unmaintenance"), "lb-a"),
            ):
                # start from a settled pair: every VIP on the other node, the route with it
                frm = "lb-a" if to == "lb-b" else "lb-b"
                deadline = time.monotonic() + SETTLE
                while time.monotonic() < deadline and not (all_on(frm) and up1_routes().get(VIP) == addr[frm]):
                    time.sleep(0.1)
                time.sleep(1.0)
                delay = one_run(plan, addr, action, to)
                rows[name].append(delay)
                print(f"run {n + 1} {name}: {'-' if delay is None else f'{delay:+.3f} s'}", flush=True)
    finally:
        link(port, up=True)
        try:
            salt("lb-a", "carp.unmaintenance")
        except Exception as exc:  # noqa: BLE001 - reported; the link is up already
            print(f"carp.unmaintenance failed: {exc}", file=sys.stderr)

    def med(values):
        ok = [v for v in values if v is not None]
        return statistics.median(ok) if ok else None

    base = med(rows["maintenance"])
    print()
    print("| move | route moved after the VIP (s), each run | median (s) | / maintenance median |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        m = med(values)
        each = " ".join("-" if v is None else f"{v:+.3f}" for v in values)
        ratio = f"{m / base:.1f}" if m is not None and base else "-"
        print(f"| {name} | {each} | {'-' if m is None else f'{m:+.3f}'} | {ratio} |")
    missing = sum(v is None for values in rows.values() for v in values)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
