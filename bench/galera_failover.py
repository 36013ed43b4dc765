#!/usr/bin/env python3
"""Galera behind the VIP, in the lab: how long writes stop when the active
database node dies, and how long a drain takes to stop new connections.

Setup: a real three-node MariaDB Galera cluster in the lab's database hosts
(lab/galera_tools.py), the probe applied by their salt-minions
(salt/clustercheck), CARP (keepalived) and HAProxy on the load balancers from
their SLS, the pillar's timers (inter 2s, fall 2, rise 3).  A client in the
lab's client host writes one row per new connection through the VIP every
100 ms.

- unplanned: SIGKILL to the active node's mariadbd; the gap is the time from
  the kill to the end of the first successful write after it (through the
  VIP, on a backup).  Target: <= fall x inter + 1 s = 5 s, 0 committed rows
  lost, one writer at a time.  The node restarts (IST) and HAProxy takes it
  back before the next run.
- planned: `clustercheck.drain` on the active node; from the maintenance
  file's creation to the first write on the backup, and the last new
  connection the drained node took after it.  Then undrain.

Median of N runs each (default 5).  Needs a running lab (`.venv/bin/python -m
lab up`), and it must be yours: only one lab runs on a machine.  Everything it
starts it stops by pid.

    .venv/bin/python bench/galera_failover.py [--runs 5] [--json out.json]
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

from lab import control, saltcfg  # noqa: E402
from lab.carp_tools import LAB_CARP, LBS  # noqa: E402
from lab.galera import GALERA_DEFAULTS, RECOMMENDED  # noqa: E402
from lab.galera_tools import Galera, HaproxyView, Writer, apply_probe, first_write_after, in_host, salt_ok, writers_in_order  # noqa: E402

FALL, INTER = 2, 2.0
TARGET = FALL * INTER + 1.0


def salt(*args, timeout=300):
    return saltcfg.salt_json(*args, timeout=timeout)


def setup(g: Galera) -> str:
    g.start_all()
    bad = salt_ok(apply_probe(list(g.hosts)))
    saltcfg.sync_all("-L", ",".join(LBS))
    salt("-L", ",".join(LBS), "carp.absent")  # the converge's CARP, on its own paths
    for m in LBS:
        salt(m, "grains.setval", "lb_settings", json.dumps({"carp": dict(LAB_CARP, provider="keepalived")}))
    bad += salt_ok(salt("-L", ",".join(LBS), "state.apply", "carp", "queue=True"))
    bad += salt_ok(salt("-L", ",".join(LBS), "state.apply", "haproxy", "queue=True"))
    if bad:
        raise RuntimeError(f"states failed: {bad}")
    return g.app_account()


def teardown(g: Galera) -> None:
    for m in g.hosts:
        salt(m, "clustercheck.undrain")
        salt(m, "service.stop", "xinetd")
    salt("-L", ",".join(LBS), "haproxy_cfg.stop")
    salt("-L", ",".join(LBS), "carp.absent")
    for m in LBS:
        salt(m, "grains.delkey", "lb_settings", "force=True")
    g.stop_all()


def committed_lost(g: Galera, results, survivor: str) -> int:
    rows = {int(line.split("\t")[0]) for line in g.sql(survivor, "SELECT seq FROM lab.writes").splitlines()}
    return len({r["seq"] for r in results if r["ok"]} - rows)


def unplanned(g: Galera, cnf: str, view: HaproxyView, names: dict, active: str, backup: str) -> dict:
    g.sql(active, "TRUNCATE lab.writes")
    sampler = HaproxyView()
    sampler.start()
    writer = Writer(cnf, count=220, every=0.1)
    try:
        time.sleep(3)
        killed = g.kill(active)
        results = writer.result()
    finally:
        sampler.stop()
    first = first_write_after(results, killed)
    down = sampler.first(names[active], "DOWN", killed)
    out = {
        "gap_s": round(first["end"] - killed, 3) if first else None,
        "marked_down_s": round(down - killed, 3) if down else None,
        "two_servers_with_sessions": len(sampler.overlaps),
        "writers": writers_in_order(results),
        "failed_writes": sum(1 for r in results if not r["ok"]),
        "lost_committed_rows": committed_lost(g, results, backup),
    }
    g.start(active)  # IST from the others
    if not view.wait_status({names[active]: "UP"}, 90):
        raise RuntimeError(f"{active} did not come back UP in HAProxy: {view.read()}")
    time.sleep(1)
    return out


def planned(g: Galera, cnf: str, view: HaproxyView, names: dict, active: str, backup: str) -> dict:
    g.sql(active, "TRUNCATE lab.writes")
    writer = Writer(cnf, count=150, every=0.1)
    time.sleep(3)
    called = time.time()
    salt(active, "clustercheck.drain", "reason=bench")
    made = float(in_host(active, "stat", "-c", "%.6Y", "/run/clustercheck/maintenance").stdout.strip() or called)
    results = writer.result()
    salt(active, "clustercheck.undrain")
    to_backup = first_write_after(results, made, backup)
    on_drained = [r for r in results if r["ok"] and r["node"] == active and r["start"] >= made]
    out = {
        "salt_call_s": round(made - called, 3),
        "to_first_write_on_backup_s": round(to_backup["end"] - made, 3) if to_backup else None,
        "last_new_connection_on_drained_s": round(max(r["start"] for r in on_drained) - made, 3) if on_drained else 0.0,
        "writers": writers_in_order(results),
        "failed_writes": sum(1 for r in results if not r["ok"]),
    }
    if not view.wait_status({names[active]: "UP"}, 60):
        raise RuntimeError(f"{active} did not come back UP: {view.read()}")
    time.sleep(1)
    return out


VARIANTS = (
    # (label, provider options): the baseline first, what the lab runs last
    ("Galera defaults (evs.suspect_timeout PT5S)", GALERA_DEFAULTS),
    ("recommended (evs.suspect_timeout PT2S, inactive PT4S)", RECOMMENDED),
)


def prepare_variant(g: Galera, options: dict, view: HaproxyView, names: dict) -> str:
    """A fresh cluster with these provider options, the probe's account (the
    clustercheck state), the application's account, every server UP."""
    g.restart_with(options)
    live = g.live_options(next(iter(g.hosts)))
    want = options.get("evs.suspect_timeout", "PT5S")
    if live.get("evs.suspect_timeout") != want:
        raise RuntimeError(f"evs.suspect_timeout is {live.get('evs.suspect_timeout')}, not {want}")
    bad = salt_ok(apply_probe(list(g.hosts)))
    if bad:
        raise RuntimeError(f"states failed: {bad}")
    cnf = g.app_account()
    if not view.wait_status({names[h]: "UP" for h in g.hosts}, 120):
        raise RuntimeError(f"not every server UP in HAProxy: {view.read()}")
    return cnf


def median_of(rows: list[dict], key: str):
    values = [r[key] for r in rows if r[key] is not None]
    return statistics.median(values) if values else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    st = control.running()
    if st is None or st.get("phase") != "ready":
        print("no ready lab: run `.venv/bin/python -m lab up` first (and make sure it is yours)")
        return 2
    from lab.plan import plan_from_pillar

    plan = plan_from_pillar(os.path.join(REPO, "pillar", "lab", "lb.sls"), galera6=st["galera6"])
    g = Galera(plan)
    active, backup = list(g.hosts)[:2]
    names = {h: plan.host(h).pillar_name for h in g.hosts}
    report = {"target_s": TARGET, "variants": {}, "planned": []}
    try:
        setup(g)
        view = HaproxyView()
        for label, options in VARIANTS:
            cnf = prepare_variant(g, options, view, names)
            rows = report["variants"][label] = []
            for i in range(args.runs):
                r = unplanned(g, cnf, view, names, active, backup)
                print(
                    f"{label}, unplanned {i + 1}: gap {r['gap_s']} s (HAProxy marked it DOWN after {r['marked_down_s']} s), "
                    f"writers {r['writers']}, lost {r['lost_committed_rows']}",
                    flush=True,
                )
                rows.append(r)
        for i in range(args.runs):  # with the last variant's (the lab's) options
            r = planned(g, cnf, view, names, active, backup)
            print(
                f"planned {i + 1}: first write on {backup} {r['to_first_write_on_backup_s']} s after the drain, last new connection on {active} {r['last_new_connection_on_drained_s']} s after",
                flush=True,
            )
            report["planned"].append(r)
    finally:
        teardown(g)
    base_label = VARIANTS[0][0]
    base = median_of(report["variants"].get(base_label, []), "gap_s")
    print(
        "\n| Galera provider options | gaps (s) | median gap | vs baseline | HAProxy marked DOWN (median) | lost rows | one writer at a time |"
    )
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for label, rows in report["variants"].items():
        med = median_of(rows, "gap_s")
        one_writer = all(len(r["writers"]) <= 2 and not r["two_servers_with_sessions"] for r in rows)
        lost = sum(r["lost_committed_rows"] for r in rows)
        ratio = f"{med / base:.2f}" if med and base else "-"
        gaps = " ".join(str(r["gap_s"]) for r in rows)
        print(f"| {label} | {gaps} | {med} | {ratio} | {median_of(rows, 'marked_down_s')} | {lost} | {one_writer} |")
        summary[label] = {"gap_median_s": med, "ratio_to_baseline": ratio, "lost_committed_rows": lost, "one_writer_at_a_time": one_writer}
    moves = [r["to_first_write_on_backup_s"] for r in report["planned"] if r["to_first_write_on_backup_s"] is not None]
    summary["drain_to_backup_median_s"] = statistics.median(moves) if moves else None
    summary["drain_last_new_connection_on_drained_max_s"] = max(
        (r["last_new_connection_on_drained_s"] for r in report["planned"]), default=None
    )
    report["summary"] = summary
    print(json.dumps(summary, indent=1))
    last = report["variants"].get(VARIANTS[-1][0], [])
    gaps = [r["gap_s"] for r in last if r["gap_s"] is not None]
    met = gaps and statistics.median(gaps) <= TARGET and all(r["lost_committed_rows"] == 0 for r in last)
    print(f"target (recommended options): median gap <= {TARGET:.0f} s, 0 committed rows lost: {'met' if met else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
