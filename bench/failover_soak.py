#!/usr/bin/env python3
"""Failover soak: N cycles of mixed faults under client load, in the lab.

The faults, in turn, each with its way back:

  link        lb-a's user link down, then up (lb-b takes the VIPs, lb-a preempts)
  maint       carp.maintenance on lb-a, then carp.unmaintenance (planned: hitless)
  keepalived  keepalived killed (-9) on lb-a, then carp.present starts it again
  haproxy     HAProxy's master killed (-9) on lb-a: keepalived's check hands the
              VIPs over, the reactor's heal brings HAProxy back, lb-a preempts
  split       VRRP dropped between the LBs for 3 s (both MASTER), then healed
  db          the active Galera node killed (-9), then started again

The client load is the drill's (lab/drill.py): a thread per VIP, HTTP
through each HTTP VIP every 80 ms and an INSERT through each SQL VIP every
50 ms, each a new connection.  Who holds each VIP is read every 50 ms
(each LB's addresses, lab/netview.py).  A failover window runs from just
before a fault's action until the VIPs are where they should be and stay
there for STABLE seconds (or its bound; the window ends where that stable
stretch began): a move
that follows a first settling (keepalived's HAProxy check demoting a node
whose HAProxy the reactor already restarted) belongs to the failover.  The
split's whole cycle is its window for two holders, on purpose.

Per cause: cycles, failed HTTP and SQL requests, the longest gap each client
kind saw (from an OK answer to the next), the samples with a VIP on both
nodes and the samples with a VIP on neither outside a failover window.
Then the committed rows lost: every INSERT the client saw succeed must be
in lab.events at the end.  The load runs QUIET seconds before the first
fault: the longest gaps in that stretch are the clients' own cadence (a
VIP is asked every 80 ms over HTTP and every 50 ms over SQL, plus the
request's own time), the baseline the planned switchovers' gaps are set
against.  One summary line ends the output.

Needs a running lab (`make lab`) that is yours; it first sets the pair up
as the events lab tests do (keepalived, the event path; --no-setup skips it).  Everything it changes it
restores in a finally (links up, maintenance off, the VRRP cut removed,
keepalived and the database node running).

    .venv/bin/python bench/failover_soak.py [--cycles 50] [--json FILE]
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

from lab import PILLAR, control, drill, galera, saltcfg  # noqa: E402
from lab.carp_tools import LAB_CARP, LBS, VIPS, all_on, holders, link, user_port, wait_for  # noqa: E402
from lab.events_tools import VrrpCut, setup_pair  # noqa: E402
from lab.plan import plan_from_pillar  # noqa: E402

FAULTS = ("link", "maint", "keepalived", "haproxy", "split", "db")
SETTLE = 3.0  # seconds between a fault's steps, and after each cycle
BOUND = 30.0  # seconds for the VIPs to get where they should (a bound, not a target)
STABLE = 3.0  # seconds the VIPs must stay where they should for a failover window to end
QUIET = 10.0  # seconds of load before the first fault: the clients' baseline gaps


class Soak:
    def __init__(self, plan):
        self.plan = plan
        self.port = user_port(plan, "lb-a")
        self.db = galera.Galera(plan)
        self.active = next(iter(self.db.hosts))
        self.windows: list[tuple[float, float, str]] = []  # (from, to, fault): failover windows
        self.split_windows: list[tuple[float, float]] = []
        self.cycles: list[dict] = []

    def window(self, fault: str, action, predicate) -> bool:
        """action(), then wait (bounded) until predicate() holds for STABLE s;
        the window runs from just before the action to where that began."""
        t = time.time()
        action()
        end = time.monotonic() + BOUND
        since = None  # when predicate() last became true
        while time.monotonic() < end:
            if predicate():
                since = since or time.time()
                if time.time() - since >= STABLE:
                    break
            else:
                since = None
            time.sleep(0.05)
        self.windows.append((t, since or time.time(), fault))
        return since is not None

    def link(self) -> bool:
        ok = self.window("link", lambda: link(self.port, False), lambda: all_on("lb-b"))
        time.sleep(SETTLE)
        return self.window("link", lambda: link(self.port, True), lambda: all_on("lb-a")) and ok

    def maint(self) -> bool:
        def enter():
            saltcfg.salt_json("lb-a", "carp.maintenance", timeout=60)

        def leave():
            saltcfg.salt_json("lb-a", "carp.unmaintenance", timeout=60)

        ok = self.window("maint", enter, lambda: all_on("lb-b"))
        time.sleep(SETTLE)
        return self.window("maint", leave, lambda: all_on("lb-a")) and ok

    def keepalived(self) -> bool:
        pid = control.run("lb-a", "cat", f"{LAB_CARP['run_dir']}/keepalived.pid", timeout=10).stdout.strip()
        ok = self.window("keepalived", lambda: control.run("lb-a", "kill", "-9", pid, timeout=10), lambda: all_on("lb-b"))
        time.sleep(SETTLE)
        return self.window("keepalived", lambda: saltcfg.salt_json("lb-a", "carp.present", timeout=120), lambda: all_on("lb-a")) and ok

    def haproxy(self) -> bool:
        pid = control.run("lb-a", "cat", "/run/haproxy.pid", timeout=10).stdout.split()[0]
        # keepalived's check moves the VIPs, the reactor's heal restarts HAProxy, lb-a preempts
        return self.window(
            "haproxy",
            lambda: control.run("lb-a", "kill", "-9", pid, timeout=10),
            lambda: all_on("lb-a") and _haproxy_pid() not in ("", pid),
        )

    def split(self) -> bool:
        t = time.time()
        with VrrpCut(self.plan):
            wait_for(lambda: all(hs == set(LBS) for hs in holders().values()), 10)
            time.sleep(3.0)
        ok = self.window("split", lambda: None, lambda: all_on("lb-a"))  # the heal: VrrpCut's exit
        self.split_windows.append((t, time.time()))
        return ok

    def db_node(self) -> bool:
        self.db.kill(self.active)
        time.sleep(8.0)  # fall x inter + the backup taking writes
        t = time.time()
        self.db.start(self.active)
        self.windows.append((t, time.time(), "db"))
        return self.db.synced(self.active)

    def restore(self) -> None:
        link(self.port, True)
        saltcfg.salt_json("lb-a", "carp.unmaintenance", timeout=60)
        saltcfg.salt_json("lb-a", "carp.present", timeout=120)
        if not self.db.alive(self.active):
            self.db.start(self.active)


def _haproxy_pid() -> str:
    res = control.run("lb-a", "cat", "/run/haproxy.pid", timeout=10)
    return res.stdout.split()[0] if res.returncode == 0 and res.stdout.split() else ""


def inside(t: float, spans) -> bool:
    return any(a <= t <= b for a, b, *_ in spans)


def longest_gap(samples: list[tuple], t_from: float, t_to: float) -> float:
    """The longest time between two OK answers of one VIP, within [t_from, t_to]."""
    worst = 0.0
    by_vip: dict[str, list[tuple]] = {}
    for s in samples:
        if t_from <= s[3] <= t_to:
            by_vip.setdefault(s[1], []).append(s)
    for rows in by_vip.values():
        last = None
        for s in sorted(rows, key=lambda s: s[3]):
            if s[4]:
                if last is not None:
                    worst = max(worst, s[3] - last)
                last = s[3]
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--json", help="also write the raw numbers here")
    ap.add_argument("--no-setup", action="store_true", help="the pair is set up already (events_tools.setup_pair)")
    args = ap.parse_args()
    if control.running() is None:
        print("failover_soak: the lab is not running (make lab)", file=sys.stderr)
        return 2
    plan = plan_from_pillar(PILLAR)
    if not args.no_setup:
        setup_pair("keepalived")  # the events lab tests' pair: keepalived, the event path, the reactor
    if not wait_for(lambda: all_on("lb-a"), 30):
        print(f"failover_soak: the pair is not settled on lb-a: {holders()}", file=sys.stderr)
        return 1
    soak = Soak(plan)
    steps = {
        "link": soak.link,
        "maint": soak.maint,
        "keepalived": soak.keepalived,
        "haproxy": soak.haproxy,
        "split": soak.split,
        "db": soak.db_node,
    }
    per_cycle = 2 * SETTLE + 2 * BOUND + 15
    load = drill.Load(max_seconds=args.cycles * per_cycle + 60)
    watch = drill.Holders(VIPS, args.cycles * per_cycle + 90, every=0.05)
    watch.start()
    t_start = time.time()
    try:
        time.sleep(QUIET)
        t_quiet = time.time()
        for i in range(args.cycles):
            fault = FAULTS[i % len(FAULTS)]
            t0 = time.time()
            ok = steps[fault]()
            time.sleep(SETTLE)
            soak.cycles.append({"fault": fault, "from": t0, "to": time.time(), "settled": bool(ok)})
            print(
                f"  cycle {i + 1:3}/{args.cycles} {fault:10} {'settled' if ok else 'NOT SETTLED'} in {time.time() - t0:5.1f} s", flush=True
            )
    finally:
        try:
            soak.restore()
        finally:
            samples = load.stop()
            held = watch.stop()
    # the committed rows: every INSERT the client saw succeed
    committed = {round(s[2], 6) for s in samples if s[0] == "sql" and s[4]}
    found_text = soak.db.sql(soak.active, f"SELECT at FROM lab.events WHERE at >= {t_start - 1:.6f}", timeout=60)
    found = {round(float(x), 6) for x in found_text.split()}
    lost = len(committed - found)

    rows = []
    for fault in FAULTS:
        cyc = [c for c in soak.cycles if c["fault"] == fault]
        if not cyc:
            continue
        spans = [(c["from"], c["to"]) for c in cyc]
        mine = [s for s in samples if inside(s[2], spans)]
        both = sum(1 for t, h in held if inside(t, spans) and set(h["lb-a"]) & set(h["lb-b"]) and not inside(t, soak.split_windows))
        split_both = sum(1 for t, h in held if inside(t, spans) and set(h["lb-a"]) & set(h["lb-b"]) and inside(t, soak.split_windows))
        none = sum(
            1
            for t, h in held
            if inside(t, spans) and not inside(t, soak.windows) and any(v not in h["lb-a"] and v not in h["lb-b"] for v in VIPS)
        )
        rows.append(
            {
                "fault": fault,
                "cycles": len(cyc),
                "settled": sum(1 for c in cyc if c["settled"]),
                "http_failed": sum(1 for s in mine if s[0] == "http" and not s[4]),
                "sql_failed": sum(1 for s in mine if s[0] == "sql" and not s[4]),
                "http_gap_ms": round(max(longest_gap([s for s in samples if s[0] == "http"], a, b) for a, b in spans) * 1000),
                "sql_gap_ms": round(max(longest_gap([s for s in samples if s[0] == "sql"], a, b) for a, b in spans) * 1000),
                "two_holders": both,
                "two_holders_split": split_both,
                "no_holder_outside": none,
            }
        )
    print(f"\nfailover soak, {len(soak.cycles)} cycles, holders every 50 ms")
    head = (
        "fault",
        "cycles",
        "settled",
        "http_failed",
        "sql_failed",
        "http_gap_ms",
        "sql_gap_ms",
        "two_holders",
        "two_holders_split",
        "no_holder_outside",
    )
    print("  ".join(f"{h:>12}" for h in head))
    for r in rows:
        print("  ".join(f"{r[h]!s:>12}" for h in head))
    # the clients' own cadence: the longest gaps of the quiet stretch before the first fault
    quiet = {k: round(longest_gap([s for s in samples if s[0] == k], t_start + 1.0, t_quiet) * 1000) for k in ("http", "sql")}
    total_both = sum(r["two_holders"] for r in rows)
    total_none = sum(r["no_holder_outside"] for r in rows)
    planned = next((r for r in rows if r["fault"] == "maint"), None)
    print(
        f"\nsummary: {len(soak.cycles)} cycles, {sum(r['settled'] for r in rows)} settled; two holders {total_both} samples; "
        f"no holder outside a failover window {total_none}; committed rows lost {lost} of {len(committed)}; "
        f"planned switchovers: {planned['http_failed'] + planned['sql_failed'] if planned else '-'} failed, "
        f"longest gap HTTP {planned['http_gap_ms'] if planned else '-'} ms, SQL {planned['sql_gap_ms'] if planned else '-'} ms "
        f"(quiet baseline HTTP {quiet['http']} ms, SQL {quiet['sql']} ms); "
        f"median cycle {statistics.median(c['to'] - c['from'] for c in soak.cycles):.1f} s"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "quiet": quiet, "lost": lost, "committed": len(committed), "cycles": soak.cycles}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
