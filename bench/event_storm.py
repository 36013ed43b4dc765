#!/usr/bin/env python3
"""Benchmark (issue 20): an event storm on the lab master, and the reaction
that matters behind it.

For N in --sizes (default 0, 80, 400): N synthetic CARP transitions
(``salt/beacon/lb-b/carp/<vhid>/BACKUP``, the vhids in turn, as a site's
worth of pairs failing over would send) are fired on the master's own bus,
then one ``salt/beacon/lb-a/carp/4/MASTER`` (lb-a really is MASTER of
vhid 4).  Reported per N, median of --repeat runs:

- ``apply``: from the MASTER event to the master publishing the reactor's
  ``state.single lb_failover.master_serves`` job for lb-a (the job that
  applies the haproxy SLS there);
- ``recorded``: from the first synthetic event to the ``lb_recorder``
  engine having taken all N + 1 (each recorded or dropped as not new:
  ``<cachedir>/lb/recorder.json``);
- both as ratios against the N = 0 row of the same invocation.

With --splitbrain, one more run of the largest N: VRRP is cut between the
two LBs (lab/events_tools.VrrpCut) while the storm is fired.  The
split brain begins when lb-b's keepalived makes it MASTER too (the time in
its state file); reported: from then to ``lb/splitbrain/edge/<vhid>``.
The cut is removed in a finally.

--site: ``lb.status`` and ``lb.check_splitbrain`` over a topology of 50
pairs: the lab's pair and 49 pairs whose 98 minions have accepted keys but
do not run (generated as in bench/topology_scale.py; their keys are copies
of lb-a's public key, removed in a finally).  Reported:
the wall time of each, and how many nodes they said were unreachable.

Needs a running lab (``make lab``) that is yours.

    .venv/bin/python bench/event_storm.py [--sizes 0,80,400] [--repeat 3] [--splitbrain] [--site] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "_utils"), os.path.join(REPO, "bench")]

import salt.config  # noqa: E402
import salt.utils.event  # noqa: E402
import yaml  # noqa: E402

from lab import PILLAR, saltcfg  # noqa: E402
from lab.carp_tools import holders, wait_for  # noqa: E402
from lab.events_tools import EventLog, VrrpCut  # noqa: E402
from lab.plan import plan_from_pillar  # noqa: E402

VHIDS = (4, 5, 44, 55)


def _opts():
    return salt.config.master_config(str(saltcfg.MASTER_DIR / "master"))


def _stats():
    try:
        return json.loads((saltcfg.MASTER_DIR / "cache" / "lb" / "recorder.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"events": 0}


def _fire_storm(bus, n: int) -> None:
    for i in range(n):
        vhid = VHIDS[i % len(VHIDS)]
        data = {"id": "lb-b", "vhid": vhid, "old": "MASTER", "new": "BACKUP", "source": "beacon", "timestamp": time.time()}
        bus.fire_event(data, f"salt/beacon/lb-b/carp/{vhid}/BACKUP")


def _apply_published(log: EventLog, since: float, timeout: float = 60) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t, _, d in log.matching("salt/job/*/new", since):
            if d.get("fun") == "state.single" and d.get("minions") == ["lb-a"] and "lb_failover.master_serves" in json.dumps(d.get("arg")):
                return t
        time.sleep(0.01)
    return None


def one_run(bus, log: EventLog, n: int, bound: float = 120) -> dict:
    before = _stats()["events"]
    time.sleep(11)  # past lb-a's 10 s apply window of the previous run
    t_first = time.time()
    _fire_storm(bus, n)
    t_master = time.time()
    bus.fire_event(
        {"id": "lb-a", "vhid": 4, "old": "BACKUP", "new": "MASTER", "source": "beacon", "timestamp": t_master},
        "salt/beacon/lb-a/carp/4/MASTER",
    )
    published = _apply_published(log, t_master)
    done = None
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        st = _stats()
        if st["events"] - before >= n + 1:
            done = time.time()
            break
        time.sleep(0.05)
    return {
        "n": n,
        "fire_seconds": round(t_master - t_first, 3),
        "apply": round(published - t_master, 3) if published else None,
        "recorded": round(done - t_first, 3) if done else None,
    }


def _lb_b_master_since(vhid: int) -> float | None:
    """When lb-b's CARP daemon made it MASTER of vhid (its state file, in
    its own /run: "<STATE> <pid> <epoch>")."""
    from lab import control

    path = f"/proc/{control.host_pid('lb-b')}/root/run/lb-carp/state/state/{vhid}"
    try:
        state, _pid, when = open(path).read().split()[:3]
    except (OSError, ValueError):
        return None
    return float(when) if state == "MASTER" else None


def _settled() -> bool:
    """Every VIP on lb-a alone, and lb-b's keepalived BACKUP of every group."""
    return all(h == {"lb-a"} for h in holders().values()) and not any(_lb_b_master_since(v) for v in VHIDS)


def splitbrain_run(bus, log: EventLog, n: int) -> dict:
    plan = plan_from_pillar(PILLAR)
    if not wait_for(_settled, 60):
        return {"n": n, "error": "the pair did not settle before the cut"}
    time.sleep(2)  # the engine has looked at the settled pair
    t0 = time.time()
    since = None
    with VrrpCut(plan):
        _fire_storm(bus, n)
        got = log.wait("lb/splitbrain/edge/*", count=1, timeout=30, since=t0)
        if got:
            vhid = int(got[0][1].split("/")[3])
            since = _lb_b_master_since(vhid)
    # healed: the engine resolves it once both nodes answer with one MASTER
    wait_for(_settled, 60)
    resolved = log.wait("lb/splitbrain/edge/*/resolved", count=1, timeout=30, since=t0)
    return {
        "n": n,
        "split_began_after": round(since - t0, 3) if since else None,
        "declared_after": round(got[0][0] - t0, 3) if got else None,
        "declared_after_split_began": round(got[0][0] - since, 3) if got and since else None,
        "resolved": bool(resolved),
    }


def _site_topology(pairs: int) -> dict:
    """The lab's topology and pairs-1 generated pairs (bench/topology_scale.py,
    10.<i>.0.0/16, nodes p<i>-lb-a and p<i>-lb-b)."""
    from topology_scale import make_pair

    raw = yaml.safe_load(open(PILLAR))["lb"]
    out = copy.deepcopy(raw)
    for i in range(1, pairs):
        out["pairs"][f"pair{i}"] = make_pair(i, 8)
    return out


def site_run(pairs: int = 50) -> dict:
    import lb_topology

    raw = _site_topology(pairs)
    keydir = saltcfg.MASTER_DIR / "pki" / "minions"
    pub = (keydir / "lb-a").read_text()
    ghosts = [f"p{i}-lb-{s}" for i in range(1, pairs) for s in "ab"]
    out = {"pairs": pairs, "ghost_minions": len(ghosts)}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(raw, fh)
        topo = fh.name
    try:
        try:
            lb_topology.load(raw)
            out["topology_valid"] = True
        except lb_topology.TopologyError as exc:
            out["topology_valid"] = str(exc)[:300]
        for g in ghosts:
            (keydir / g).write_text(pub)
        for fun in ("lb.status", "lb.check_splitbrain"):
            t0 = time.monotonic()
            ret = saltcfg.salt_run_json(fun, f"topology={topo}", timeout=300)
            out[fun] = {"seconds": round(time.monotonic() - t0, 2)}
            if fun == "lb.status":
                warn = [w for p in (ret.get("pairs") or {}).values() for w in p.get("warnings", [])]
                out[fun]["unreachable"] = sum("unreachable" in w for w in warn)
                out[fun]["lab_pair_masters"] = (
                    {g["vhid"]: g["master"] for g in ret["pairs"]["edge"]["groups"]} if "edge" in (ret.get("pairs") or {}) else None
                )
            elif not isinstance(ret, dict):
                out[fun]["error"] = str(ret)[:500]
            else:
                out[fun]["unreachable"] = len(ret.get("unreachable") or {})
                out[fun]["splitbrain"] = ret.get("splitbrain")
    finally:
        for g in ghosts:
            (keydir / g).unlink(missing_ok=True)
        os.unlink(topo)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0,80,400")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--splitbrain", action="store_true")
    ap.add_argument("--site", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    opts = _opts()
    result = {"rows": [], "runs": []}
    with EventLog(max_seconds=3600) as log, salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as bus:
        for n in sizes:
            runs = [one_run(bus, log, n) for _ in range(args.repeat)]
            result["runs"] += runs
            row = {"n": n}
            for k in ("apply", "recorded", "fire_seconds"):
                vals = [r[k] for r in runs if r[k] is not None]
                row[k] = round(statistics.median(vals), 3) if vals else None
                row[f"{k}_missing"] = sum(r[k] is None for r in runs)
            result["rows"].append(row)
        base = result["rows"][0]
        print(f"{'N':>5} {'fire s':>7} {'MASTER->apply s':>16} {'ratio':>6} {'all recorded s':>15} {'ratio':>6}")
        for row in result["rows"]:
            ra = row["apply"] / base["apply"] if row["apply"] and base["apply"] else float("nan")
            rr = row["recorded"] / base["recorded"] if row["recorded"] and base["recorded"] else float("nan")
            print(f"{row['n']:>5} {row['fire_seconds']:>7} {row['apply']!s:>16} {ra:>6.2f} {row['recorded']!s:>15} {rr:>6.2f}")
        if args.splitbrain:
            runs = [splitbrain_run(bus, log, max(sizes)) for _ in range(args.repeat)]
            vals = [r["declared_after_split_began"] for r in runs if r.get("declared_after_split_began") is not None]
            result["splitbrain"] = {"runs": runs, "median_declared_after_split_began": round(statistics.median(vals), 3) if vals else None}
            print("split brain during the storm:", json.dumps(result["splitbrain"]))
    if args.site:
        result["site"] = site_run()
        print("simulated site:", json.dumps(result["site"]))
    result["git"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
