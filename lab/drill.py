"""`python -m lab drill`: what clients see while the pair is operated and
broken, on a running, converged lab.

A bounded load runs in the lab's client host, one thread per VIP, each
request on a new connection: an HTTP GET every ~80 ms through each HTTP
VIP, and an INSERT every ~50 ms through each MySQL VIP (PyMySQL in the one
client process: handshake, login, INSERT, quit).  Meanwhile, in order
(each waits, bounded, until the VIPs or the database have settled):

1. cut    lb-a's user link (the master's; its bridge port goes down)
2. restore it (lb-a preempts the VIPs back)
3. maint  `carp.maintenance` on lb-a (planned: the VIPs move to lb-b)
4. back   `carp.unmaintenance` on lb-a
5. reload HAProxy on lb-a with a changed configuration (a server's
          weight, through haproxy_cfg.write + reload), then back to the
          pillar's (state.apply haproxy: another reload)
6. kill   SIGKILL to the active database node's mariadbd (galera_a's active
          server, db-1), then restart it (it rejoins by IST)

Then a timeline: each event, what each client kind saw in each phase (OK,
failed, the longest gap between two successes that had a failure in it, in
ms, per VIP), and a PNG chart (requests per 100 ms, OK and failed, stacked,
one panel per client kind, each event a labelled vertical line) under
artifacts/drill-<timestamp>.png.  Every loop is bounded in count and time;
traffic goes only to lab addresses; everything started is stopped by pid.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab import LAB_DIR, PILLAR, REPO, control, e2e, galera, netview, saltcfg
from lab.plan import plan_from_pillar

ARTIFACTS = REPO / "artifacts"
LBS = ("lb-a", "lb-b")
HTTP_EVERY, SQL_EVERY = 0.08, 0.05  # seconds between two requests to one VIP (a thread per VIP)
BIN = 0.1  # seconds per bar in the chart
HOLDERS_EVERY = 0.1  # seconds between two reads of who holds the VIPs
PHASES = ("cut", "maint", "reload", "kill")  # each with its way back

LOAD = r"""
import json, os, sys, threading, time, urllib.request
import pymysql
cnf, stop_file, max_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
http_vips, sql_vips = sys.argv[4].split(","), sys.argv[5].split(",")
http_every, sql_every = float(sys.argv[6]), float(sys.argv[7])
end = time.monotonic() + max_s
out, lock = [], threading.Lock()

def done():
    return time.monotonic() > end or os.path.exists(stop_file)

def http(vip):
    while not done():
        t = time.time()
        try:
            with urllib.request.urlopen("http://%s/" % vip, timeout=2) as r:
                ok, detail = r.status == 200, r.read(100).decode(errors="replace")
                detail = detail.split("<body>")[-1].split(" ")[0]
        except Exception as exc:
            ok, detail = False, str(exc)[:80]
        with lock:
            out.append(("http", vip, t, time.time(), ok, detail))
        time.sleep(max(0.0, http_every - (time.time() - t)))

def sql(vip):
    # one process, a new connection (handshake, login, INSERT, QUIT) per row
    while not done():
        t = time.time()
        try:
            conn = pymysql.connect(host=vip, port=3306, read_default_file=cnf, connect_timeout=2,
                                   read_timeout=5, write_timeout=5, autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO lab.events (vip, node, at) VALUES (%%s, @@wsrep_node_name, %.6f)" % t, (vip,))
                    cur.execute("SELECT @@wsrep_node_name")
                    ok, detail = True, str(cur.fetchone()[0])
            finally:
                conn.close()
        except Exception as exc:
            ok, detail = False, str(exc)[:80]
        with lock:
            out.append(("sql", vip, t, time.time(), ok, detail))
        time.sleep(max(0.0, sql_every - (time.time() - t)))

threads = [threading.Thread(target=http, args=(v,)) for v in http_vips]
threads += [threading.Thread(target=sql, args=(v,)) for v in sql_vips]
for th in threads: th.start()
for th in threads: th.join(max_s + 30)
print(json.dumps(out))
"""


@dataclass
class Event:
    t: float
    label: str
    note: str = ""


@dataclass
class Drill:
    quick: bool = False
    phases: tuple[str, ...] = PHASES
    events: list[Event] = field(default_factory=list)
    samples: list[tuple] = field(default_factory=list)
    holders: list[tuple] = field(default_factory=list)  # (time, {lb: VIPs it holds})

    def mark(self, label: str, note: str = "") -> None:
        self.events.append(Event(time.time(), label, note))
        print(f"  {time.strftime('%H:%M:%S')} {label}{': ' + note if note else ''}", flush=True)


# ---------------------------------------------------------------------------
# the load


class Load:
    def __init__(self, max_seconds: float):
        found = e2e.vips()
        self.dir = LAB_DIR / "drill"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stop_file = self.dir / "stop"
        self.stop_file.unlink(missing_ok=True)
        self.max_seconds = max_seconds
        self.proc = subprocess.Popen(
            [
                "mnexec",
                "-a",
                str(control.host_pid("client")),
                "/usr/bin/python3",
                "-c",
                LOAD,
                str(galera.APP_CNF),
                str(self.stop_file),
                str(max_seconds),
                ",".join(v for v, _, _ in found["http"]),
                ",".join(v for v, _, _ in found["mysql"]),
                str(HTTP_EVERY),
                str(SQL_EVERY),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def stop(self) -> list[tuple]:
        self.stop_file.touch()
        try:
            out, err = self.proc.communicate(timeout=self.max_seconds + 60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
        finally:
            self.stop_file.unlink(missing_ok=True)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the client load failed: {err.strip()[-500:]}")
        return [tuple(s) for s in json.loads(out)]


class Holders(threading.Thread):
    """Who holds which VIP, every HOLDERS_EVERY seconds, until stopped: the
    chart's band per node."""

    def __init__(self, vips: list[str], max_seconds: float, every: float = HOLDERS_EVERY):
        super().__init__(daemon=True)
        self.vips, self.max_seconds, self.every = set(vips), max_seconds, every
        self.samples: list[tuple] = []
        self.halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self.halt.is_set() and time.monotonic() < deadline:
            t = time.time()
            try:
                self.samples.append((t, {lb: sorted(_local_addresses(lb) & self.vips) for lb in LBS}))
            except OSError:
                pass
            self.halt.wait(self.every)

    def stop(self) -> list[tuple]:
        self.halt.set()
        self.join(10)
        return self.samples


# ---------------------------------------------------------------------------
# who holds the VIPs (the addresses on each LB, over rtnetlink: lab/netview.py)


def _local_addresses(host: str) -> set[str]:
    return netview.addresses(control.host_pid(host))


def all_on(host: str, vips: list[str]) -> bool:
    held = {h: _local_addresses(h) for h in LBS}
    return all(v in held[host] and not any(v in held[o] for o in LBS if o != host) for v in vips)


def wait_for(predicate, timeout: float, every: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


def _user_port(plan) -> str:
    return next(i.port for i in plan.host("lb-a").interfaces if i.network == "user")


def _link(port: str, up: bool) -> None:
    subprocess.run(["ip", "link", "set", port, "up" if up else "down"], check=True, timeout=10)


# ---------------------------------------------------------------------------
# the phases


def run(quick: bool = False, phases: tuple[str, ...] = PHASES, png: bool = True) -> dict:
    """The drill on a running lab.  Returns the report (also printed)."""
    if control.running() is None:
        raise RuntimeError("no lab is running: python -m lab up")
    plan = plan_from_pillar(PILLAR, galera6=control.running()["galera6"])
    vips = sorted({v for kind in e2e.vips().values() for v, _, _ in kind})
    settle = 1.5 if quick else 3.0
    d = Drill(quick=quick, phases=phases)
    db = galera.Galera(plan)  # galera_a's cluster; its first server (db-1) is the active one
    active = next(iter(db.hosts))

    if not all_on("lb-a", vips):
        raise RuntimeError("the VIPs are not all on lb-a: converge the lab first (python -m lab up)")
    bad = [c for c in e2e.checks() if not c.ok]
    if bad:
        raise RuntimeError(f"the path end to end does not work before the drill: {bad}")

    budget = 60 + 40 * len(phases)
    print(
        f"drill: client load in the client host (each HTTP VIP every {HTTP_EVERY * 1000:.0f} ms, each SQL VIP every {SQL_EVERY * 1000:.0f} ms, a new connection each), phases {', '.join(phases)}"
    )
    load = Load(max_seconds=budget)
    holders = Holders(vips, budget + 30)
    holders.start()
    port = _user_port(plan)
    try:
        time.sleep(settle)
        d.mark("start")
        if "cut" in phases:
            d.mark("cut lb-a", f"user link {port} down")
            _link(port, False)
            moved = wait_for(lambda: all_on("lb-b", vips), 15)
            d.mark("VIPs on lb-b" if moved else "VIPs NOT on lb-b (15 s)")
            time.sleep(settle)
            d.mark("restore lb-a", f"{port} up")
            _link(port, True)
            back = wait_for(lambda: all_on("lb-a", vips), 20)
            d.mark("VIPs on lb-a" if back else "VIPs NOT back on lb-a (20 s)")
            time.sleep(settle)
        if "maint" in phases:
            d.mark("maint lb-a", "carp.maintenance")
            saltcfg.salt_json("lb-a", "carp.maintenance", timeout=60)
            moved = wait_for(lambda: all_on("lb-b", vips), 15)
            d.mark("VIPs on lb-b" if moved else "VIPs NOT on lb-b (15 s)")
            time.sleep(settle)
            d.mark("unmaint lb-a", "carp.unmaintenance")
            saltcfg.salt_json("lb-a", "carp.unmaintenance", timeout=60)
            back = wait_for(lambda: all_on("lb-a", vips), 20)
            d.mark("VIPs on lb-a" if back else "VIPs NOT back on lb-a (20 s)")
            time.sleep(settle)
        if "reload" in phases:
            d.mark("reload lb-a", _reload_with_change())
            time.sleep(settle)
            d.mark("reload lb-a (pillar)", "state.apply haproxy")
            ret = saltcfg.apply(["lb-a"], "haproxy").get("lb-a")
            failed = [k for k, v in ret.items() if isinstance(v, dict) and v.get("result") is False] if isinstance(ret, dict) else [ret]
            if failed:
                d.mark("haproxy state FAILED", str(failed)[:120])
            time.sleep(settle)
        if "kill" in phases:
            d.mark(f"kill {active}", "SIGKILL mariadbd (the active node)")
            db.kill(active)
            time.sleep(8.0 if not quick else 6.0)  # fall x inter (4 s) + the backup taking writes
            d.mark(f"restart {active}")
            db.start(active)
            d.mark(f"{active} synced")
            time.sleep(settle)
        d.mark("end")
    finally:
        _link(port, True)
        if "maint" in phases:
            saltcfg.salt_json("lb-a", "carp.unmaintenance", timeout=60)
        if "kill" in phases and not db.alive(active):
            db.start(active)
        d.samples = load.stop()
        d.holders = holders.stop()
    report = timeline(d)
    # the writer's return: each SQL VIP's writes end where they began
    report["writers_back"] = {vip: nodes[0] == nodes[-1] for vip, nodes in report["writers"].items() if nodes}
    for vip, back in report["writers_back"].items():
        first = report["writers"][vip][0]
        print(f"writes through {vip} back on {first}? {'yes' if back else 'NO: ' + report['writers'][vip][-1]}")
    print_report(report)
    if png:
        report["png"] = str(chart(d, report))
        print(f"chart: {report['png']}")
    return report


def _reload_with_change() -> str:
    """A changed configuration on lb-a, through the product's module: the
    first HTTP server (else the first server) gets `weight 90`; written
    (checked by haproxy -c), then a reload.  Returns what changed."""
    text = saltcfg.salt_json("lb-a", "haproxy_cfg.read", timeout=60)["lb-a"]
    if not isinstance(text, str):
        raise RuntimeError(f"haproxy_cfg.read on lb-a: {text}")
    lines = text.split("\n")
    servers = [i for i, line in enumerate(lines) if re.match(r"\s*server\s+\S+\s+\S+", line)]
    if not servers:
        raise RuntimeError("lb-a's haproxy.cfg has no server line")
    i = next((i for i in servers if re.search(r":80\b", lines[i])), servers[0])
    line = re.sub(r"\s+weight\s+\d+", "", lines[i]) + " weight 90"
    name = lines[i].split()[1]
    lines[i] = line
    # positional, as is: Salt's CLI leaves a multi-line argument a string
    ret = saltcfg.salt_json("lb-a", "haproxy_cfg.write", "\n".join(lines), timeout=60)["lb-a"]
    if not isinstance(ret, dict):
        raise RuntimeError(f"haproxy_cfg.write on lb-a: {ret}")
    ret = saltcfg.salt_json("lb-a", "haproxy_cfg.reload", timeout=60)["lb-a"]
    if isinstance(ret, str):
        raise RuntimeError(f"haproxy_cfg.reload on lb-a: {ret}")
    return f"server {name} weight 90 (haproxy_cfg.write, reload)"


# ---------------------------------------------------------------------------
# the report


STALL = {"http": 0.3, "sql": 0.3}  # seconds without an OK answer that count as a gap (per VIP: ~4x / 6x its cadence)


def gaps(samples: list[tuple], threshold: float = 0.0) -> list[tuple[float, float, int]]:
    """(from, to, failed): each time one client waited longer than
    `threshold` between two OK answers (by completion time), and how many
    of its requests failed in between.  With threshold 0, only the waits
    with a failure in them.  A request that hangs and then succeeds (a SYN
    retransmitted during a failover) is a gap with 0 failed."""
    out, last_ok, failed = [], None, 0
    for s in sorted(samples, key=lambda s: s[3]):
        if s[4]:
            if last_ok is not None and (failed or (threshold and s[3] - last_ok > threshold)):
                out.append((last_ok, s[3], failed))
            last_ok, failed = s[3], 0
        else:
            failed += 1
    if failed and last_ok is not None:
        out.append((last_ok, max(s[3] for s in samples), failed))
    return out


def timeline(d: Drill) -> dict:
    t0 = d.events[0].t if d.events else min(s[2] for s in d.samples)
    phases = []
    for i, ev in enumerate(d.events):
        until = d.events[i + 1].t if i + 1 < len(d.events) else float("inf")
        row = {"event": ev.label, "note": ev.note, "at": round(ev.t - t0, 3), "kinds": {}}
        for kind in ("http", "sql"):
            inside = [s for s in d.samples if s[0] == kind and ev.t <= s[2] < until]
            row["kinds"][kind] = {"ok": sum(1 for s in inside if s[4]), "failed": sum(1 for s in inside if not s[4])}
        phases.append(row)
    outages = []
    for kind in ("http", "sql"):
        for vip in sorted({s[1] for s in d.samples if s[0] == kind}):
            for start, end, failed in gaps([s for s in d.samples if s[0] == kind and s[1] == vip], STALL[kind]):
                outages.append(
                    {"kind": kind, "vip": vip, "from": round(start - t0, 3), "ms": round((end - start) * 1000), "failed": failed}
                )
    totals = {
        k: {"ok": sum(1 for s in d.samples if s[0] == k and s[4]), "failed": sum(1 for s in d.samples if s[0] == k and not s[4])}
        for k in ("http", "sql")
    }
    writers = {}
    for s in d.samples:
        if s[0] == "sql" and s[4]:
            writers.setdefault(s[1], [])
            if not writers[s[1]] or writers[s[1]][-1] != s[5]:
                writers[s[1]].append(s[5])
    return {"t0": t0, "phases": phases, "gaps": sorted(outages, key=lambda g: g["from"]), "totals": totals, "writers": writers}


def print_report(r: dict) -> None:
    print("\ntimeline (seconds from start; per phase: OK/failed)")
    print(f"{'at':>8}  {'event':28} {'http ok/failed':>15} {'sql ok/failed':>14}  note")
    for p in r["phases"]:
        h, s = p["kinds"]["http"], p["kinds"]["sql"]
        print(f"{p['at']:8.2f}  {p['event']:28} {h['ok']:>8}/{h['failed']:<6} {s['ok']:>7}/{s['failed']:<6}  {p['note']}")
    print(
        f"\ngaps the clients saw (from an OK answer to the next, per VIP, longer than {STALL['http'] * 1000:.0f} ms for http, {STALL['sql'] * 1000:.0f} ms for sql, or with failures)"
    )
    if not r["gaps"]:
        print("  none")
    for g in r["gaps"]:
        print(f"  {g['from']:8.2f} s  {g['kind']:4} {g['vip']:12} {g['ms']:6d} ms  {g['failed']} failed")
    t = r["totals"]
    print(f"\ntotal: http {t['http']['ok']} OK, {t['http']['failed']} failed; sql {t['sql']['ok']} OK, {t['sql']['failed']} failed")
    for vip, nodes in r["writers"].items():
        print(f"writes through {vip} went to: {' -> '.join(nodes)}")


def chart(d: Drill, r: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = r["t0"]
    end = max(s[3] for s in d.samples) - t0
    start = min(s[2] for s in d.samples) - t0
    nbins = int((end - start) / BIN) + 1
    edges = [start + i * BIN for i in range(nbins + 1)]
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(3, 1, figsize=(17, 10), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.2]})
    colors = {"ok": "#2e7d32", "failed": "#d32f2f"}
    for ax, kind in ((axes[0], "http"), (axes[1], "sql")):
        ok = [0] * nbins
        bad = [0] * nbins
        for s in d.samples:
            if s[0] != kind:
                continue
            i = min(nbins - 1, max(0, int((s[2] - t0 - start) / BIN)))
            (ok if s[4] else bad)[i] += 1
        # stacked steps (bars this narrow alias into stripes): OK below, failed on top
        total = [o + b for o, b in zip(ok, bad, strict=True)]
        ax.stairs(ok, edges, fill=True, color=colors["ok"], label="OK")
        ax.stairs(total, edges, baseline=ok, fill=True, color=colors["failed"], label="failed")
        # one line per client kind: OK per 100 ms, averaged over 1 s (the bars
        # alone are jagged: 4 or 5 requests, 0 or 1 write in a bin)
        w = int(round(1.0 / BIN))
        smooth = [sum(ok[max(0, i - w + 1) : i + 1]) / len(ok[max(0, i - w + 1) : i + 1]) for i in range(nbins)]
        ax.plot([e + BIN for e in edges[:-1]], smooth, color="black", linewidth=1.2, label="OK, 1 s average")
        ax.set_ylabel(f"{kind}: requests / {int(BIN * 1000)} ms" if kind == "http" else f"{kind}: writes / {int(BIN * 1000)} ms")
        top = max(max(total), 1)
        ax.set_ylim(0, top * 2.0)
        ax.grid(axis="y", alpha=0.3)
        # the gaps the clients saw: shaded, with their length
        spans = []  # overlapping gaps (one per VIP) labelled once, with the longest
        for g in sorted((g for g in r["gaps"] if g["kind"] == kind), key=lambda g: g["from"]):
            a, b = g["from"], g["from"] + g["ms"] / 1000
            ax.axvspan(a, b, color="#d32f2f", alpha=0.18, linewidth=0)
            if spans and a <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(b, spans[-1][1]), max(g["ms"], spans[-1][2]))
            else:
                spans.append((a, b, g["ms"]))
        # labels of nearby gaps on staggered rows, so they never overlap
        last_x, row = None, 0
        for a, b, ms in spans:
            x = (a + b) / 2
            row = (row + 1) % 3 if last_x is not None and x - last_x < 2.5 else 0
            ax.text(x, top * (1.08 + 0.13 * row), f"{ms} ms", fontsize=8, ha="center", color="#b71c1c")
            last_x = x
        # every failed request, one mark each (a single one shows)
        fails = [s[2] - t0 for s in d.samples if s[0] == kind and not s[4]]
        ax.plot(fails, [top * 1.5] * len(fails), linestyle="none", marker="x", color="#b71c1c", markersize=7)
        handles, labels = ax.get_legend_handles_labels()
        handles += [
            Patch(color="#d32f2f", alpha=0.18, linewidth=0),
            Line2D([], [], linestyle="none", marker="x", color="#b71c1c"),
            Line2D([], [], color="#1565c0", linestyle="--"),
        ]
        labels += [
            f"gap: no OK answer for > {int(STALL[kind] * 1000)} ms\n(a retransmitted SYN), or failures",
            "a failed request",
            "an action of the drill",
        ]
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)
        for n, ev in enumerate(e for e in d.events if e.label not in ("start", "end")):
            x_ev = ev.t - t0
            ax.axvline(x_ev, color="#1565c0", linestyle="--", linewidth=1)
            if kind == "http":
                ax.text(x_ev, top * (1.95 - 0.2 * (n % 4)), " " + ev.label, rotation=0, fontsize=8, va="top", color="#1565c0")
        gaps = [g for g in r["gaps"] if g["kind"] == kind]
        worst = max(gaps, key=lambda g: g["ms"]) if gaps else None
        title = f"{kind} (each VIP every {int((HTTP_EVERY if kind == 'http' else SQL_EVERY) * 1000)} ms, a new connection each): {r['totals'][kind]['ok']} OK, {r['totals'][kind]['failed']} failed"
        if worst:
            title += f"; longest gap {worst['ms']} ms ({worst['vip']}, at {worst['from']:.1f} s)"
        ax.set_title(title, fontsize=10, loc="left")
    _holder_bands(axes[2], d, t0)
    axes[2].set_xlabel("seconds from the start of the drill")
    fig.suptitle(f"lab drill {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t0))}: what the client host saw through the VIPs")
    fig.tight_layout()
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"drill-{time.strftime('%Y%m%d-%H%M%S', time.localtime(t0))}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def holder_spans(samples: list[tuple], t0: float, lb: str, total: int) -> list[tuple[float, float, str]]:
    """(from, to, "all"|"some") while `lb` held every VIP or some of them,
    from the holder samples, in seconds from t0."""
    out: list[tuple[float, float, str]] = []
    for (t, held), nxt in zip(samples, samples[1:] + [None], strict=True):
        n = len(held[lb])
        what = "all" if n == total else "some" if n else None
        if what is None:
            continue
        a = t - t0
        b = (nxt[0] - t0) if nxt else a + HOLDERS_EVERY
        if out and out[-1][2] == what and abs(out[-1][1] - a) < 1e-6:
            out[-1] = (out[-1][0], b, what)
        else:
            out.append((a, b, what))
    return out


def _holder_bands(ax, d: Drill, t0: float) -> None:
    """A band per load balancer: the VIPs it holds (all, some), and a mark
    wherever one VIP was on both."""
    from matplotlib.patches import Patch

    total = len({v for _, held in d.holders for vs in held.values() for v in vs}) or 1
    shades = {"all": "#1565c0", "some": "#90caf9"}
    for row, lb in enumerate(LBS):
        for a, b, what in holder_spans(d.holders, t0, lb, total):
            ax.broken_barh([(a, b - a)], (row + 0.15, 0.7), color=shades[what], linewidth=0)
    both = [t - t0 for t, held in d.holders if set(held[LBS[0]]) & set(held[LBS[1]])]
    ax.plot(both, [1.0] * len(both), linestyle="none", marker="|", color="#d32f2f", markersize=18)
    ax.set_yticks([0.5, 1.5], labels=[f"{lb} holds" for lb in LBS])
    ax.set_ylim(0, 2)
    ax.legend(
        [Patch(color=shades["all"]), Patch(color=shades["some"]), Patch(color="#d32f2f")],
        [f"every VIP ({total})", "some VIPs", "a VIP on both (never expected)"],
        loc="upper left",
        bbox_to_anchor=(1.005, 1.0),
        fontsize=8,
    )
    ax.set_title(f"who holds the VIPs (each node's addresses, every {int(HOLDERS_EVERY * 1000)} ms)", fontsize=10, loc="left")


def main(quick: bool = False, phases: str | None = None, json_out: str | None = None) -> int:
    chosen = tuple(p.strip() for p in phases.split(",")) if phases else PHASES
    unknown = set(chosen) - set(PHASES)
    if unknown:
        print(f"unknown phases {sorted(unknown)}; known: {', '.join(PHASES)}")
        return 2
    try:
        report = run(quick=quick, phases=chosen)
    except RuntimeError as exc:
        print(f"drill failed: {exc}")
        return 1
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=1))
    return 0
