#!/usr/bin/env python3
"""Benchmark: validate and preview generated topologies of 1, 10 and 50 pairs.

Each pair has the seed's shape (two nodes, four CARP groups, two Galera and
two HTTP listeners) with 100 servers.  For every size: the median wall time
of `lb_topology.check` and of previewing every node for both OS families
(over --repeat runs), and the peak memory of one validate+preview
(tracemalloc).  The per-pair cost is reported as a ratio against the 1-pair
run of the same invocation, so the growth is visible whatever the machine's
speed: ~1.0 at every size means linear.

    .venv/bin/python bench/topology_scale.py [--sizes 1,10,50] [--repeat 5] [--json FILE]
"""

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_utils"))

import lb_render  # noqa: E402
import lb_topology  # noqa: E402
import lb_view  # noqa: E402

HASH = "$6$benchsalt012345$lOmziMjs2I/kV14Ifs7gnkRYmZriUgEDGFnplLWVWZsy1sfQ8G.G1TPuWajs3G4NG1Cr2CJLpNtkeKG2704jd1"


def make_pair(i: int, servers: int) -> dict:
    """Pair i lives in 10.i.0.0/16: mgmt .1, user .2, systems .3, servers .16/20."""
    n = f"10.{i}"
    per_pool = servers // 4
    pools, listeners = {}, {}
    groups = {}
    for k, (kind, port, vhid) in enumerate((("galera", 3306, 4), ("galera", 3306, 44), ("http", 80, 5), ("http", 80, 55))):
        name = f"{kind}_{k}"
        srv = {}
        for s in range(per_pool):
            idx = k * per_pool + s
            srv[f"{kind}-{k}-{s}"] = {
                "address": f"{n}.{16 + idx // 250}.{1 + idx % 250}",
                "port": port,
                "backup": kind == "galera" and s > 0,
            }
        pools[name] = {"kind": kind, "servers": srv}
        if kind == "galera":
            pools[name]["check"] = {"type": "tcp-check", "port": 9200, "expect": r"string is\ running."}
        groups[vhid] = {"interface": "vip", "vip": f"{n}.2.{vhid}/24", "password": f"pw{vhid}", "primary": "a" if k % 2 == 0 else "b"}
        listeners[f"l{vhid}"] = {
            "vhid": vhid,
            "port": port,
            "mode": "tcp" if kind == "galera" else "http",
            "balance": "leastconn" if kind == "galera" else "source",
            "pool": name,
        }
    nodes = {}
    for role, last in (("a", 241), ("b", 242)):
        nodes[f"p{i}-lb-{role}"] = {
            "hostname": f"p{i}-lb-{role}.example.com",
            "interfaces": {
                "mgmt": {"network": "mgmt", "address": f"{n}.1.{last}", "device": "hn0"},
                "vip": {"network": "user", "address": f"{n}.2.{last}", "device": "hn1"},
                "systems": {"network": "systems", "address": f"{n}.3.{last}", "device": "hn2"},
            },
        }
    for g in groups.values():
        g["primary"] = f"p{i}-lb-{g['primary']}"
    return {
        "networks": {
            "mgmt": {"cidr": f"{n}.1.0/24", "gateway": f"{n}.1.254"},
            "user": {"cidr": f"{n}.2.0/24", "gateway": f"{n}.2.254"},
            "systems": {"cidr": f"{n}.3.0/24", "gateway": f"{n}.3.254"},
            "servers": {"cidr": f"{n}.16.0/20"},
        },
        "nodes": nodes,
        "carp": {"groups": groups},
        "routes": {"servers": {"destination": f"{n}.16.0/20", "gateway": f"{n}.3.254"}},
        "haproxy": {
            "userlists": {"stats": {"users": {"admin": {"password_hash": HASH}}, "groups": {"admin": ["admin"]}}},
            "stats": {"userlist": "stats", "admin_group": "admin"},
            "pools": pools,
            "listeners": listeners,
        },
        "galera_probe": {"password": "probe-pw"},
    }


def make_topology(pairs: int, servers: int = 100) -> dict:
    return {"pairs": {f"pair{i}": make_pair(i, servers) for i in range(1, pairs + 1)}}


def one_run(raw):
    t0 = time.perf_counter()
    report = lb_topology.check(raw)
    t1 = time.perf_counter()
    assert report.valid, report.errors[:3]
    files = 0
    for pair in report.model["pairs"].values():
        for node in pair["nodes"]:
            for osf in lb_view.OS_FAMILIES:
                files += len(lb_render.preview(report.model, node, osf))
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,10,50")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--servers", type=int, default=100)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for size in sizes:
        raw = make_topology(size, args.servers)
        runs = [one_run(raw) for _ in range(args.repeat)]
        tracemalloc.start()
        one_run(raw)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        v = statistics.median(r[0] for r in runs)
        p = statistics.median(r[1] for r in runs)
        rows.append(
            {"pairs": size, "servers": size * args.servers, "files": runs[0][2], "validate_s": v, "preview_s": p, "peak_mib": peak / 2**20}
        )
    base = (rows[0]["validate_s"] + rows[0]["preview_s"]) / rows[0]["pairs"]
    print(f"median of {args.repeat} runs; per-pair cost relative to the {rows[0]['pairs']}-pair run (1.00 = linear)")
    print(f"{'pairs':>5} {'servers':>7} {'files':>5} {'validate s':>10} {'preview s':>9} {'total s':>8} {'per-pair x':>10} {'peak MiB':>8}")
    for r in rows:
        total = r["validate_s"] + r["preview_s"]
        r["per_pair_ratio"] = (total / r["pairs"]) / base
        print(
            f"{r['pairs']:>5} {r['servers']:>7} {r['files']:>5} {r['validate_s']:>10.3f} {r['preview_s']:>9.3f} {total:>8.3f} {r['per_pair_ratio']:>10.2f} {r['peak_mib']:>8.1f}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
