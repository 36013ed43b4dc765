"""The end of `up`: the path end to end from the lab's client host, and the
pair's status.

- an HTTP GET through each HTTP VIP (listeners of mode http): 200 and a page
  from one of the pool's web hosts;
- a SQL write and read through each MySQL VIP (listeners of a galera pool):
  a new connection with the application's account inserts a row into
  lab.events, reads it back, and says which database node took it;
- the status: `salt-run lb.status` (the product's table) when the runner
  exists, else a table built here from `carp.status` and HAProxy's servers.

Every check is one bounded command in the client host (timeouts of a few
seconds); traffic goes only to lab addresses.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass

import yaml

from lab import PILLAR, REPO, control, galera, saltcfg

HTTP_GET = r"""
import sys, urllib.request
try:
    with urllib.request.urlopen("http://%s:%s/" % (sys.argv[1], sys.argv[2]), timeout=float(sys.argv[3])) as r:
        print(r.status, r.read(200).decode(errors="replace").strip())
except Exception as exc:
    print("ERR", exc)
    sys.exit(1)
"""


@dataclass
class Check:
    what: str  # "http 198.18.2.5:80"
    ok: bool
    detail: str


def vips() -> dict[str, list[tuple[str, int, str]]]:
    """{"http": [(vip, port, listener)], "mysql": [...]} from the lab pillar."""
    pair = next(iter(yaml.safe_load(PILLAR.read_text())["lb"]["pairs"].values()))
    groups = pair["carp"]["groups"]
    pools = pair["haproxy"]["pools"]
    out = {"http": [], "mysql": []}
    for name, lst in pair["haproxy"]["listeners"].items():
        vip = str(groups[lst["vhid"]]["vip"]).split("/")[0]
        kind = pools[lst["pool"]]["kind"]
        if lst.get("mode") == "http" or kind == "http":
            out["http"].append((vip, int(lst["port"]), name))
        elif kind == "galera":
            out["mysql"].append((vip, int(lst["port"]), name))
    return out


def http_check(vip: str, port: int = 80, timeout: float = 5) -> Check:
    r = control.run("client", "/usr/bin/python3", "-c", HTTP_GET, vip, str(port), str(timeout), timeout=timeout + 10)
    out = r.stdout.strip() or r.stderr.strip()
    ok = r.returncode == 0 and out.startswith("200 ") and "web-" in out
    return Check(f"http  {vip}:{port}", ok, out.replace("<html><body>", "").replace("</body></html>", ""))


def sql_check(vip: str, port: int = 3306, timeout: float = 10) -> Check:
    """Insert a row through the VIP, read it back on the same connection,
    and again on a new one (the row committed, not only in a transaction)."""
    base = ["/usr/bin/mariadb", f"--defaults-extra-file={galera.APP_CNF}", "-h", vip, "-P", str(port), "--connect-timeout=3", "-N", "-B"]
    write = (
        f"INSERT INTO lab.events (vip, node, at) VALUES ('{vip}', @@wsrep_node_name, UNIX_TIMESTAMP(NOW(6)));"
        " SELECT id, node FROM lab.events WHERE id = LAST_INSERT_ID();"
    )
    r = subprocess.run(
        ["mnexec", "-a", str(control.host_pid("client")), *base], input=write, capture_output=True, text=True, timeout=timeout
    )
    if r.returncode != 0 or not r.stdout.strip():
        return Check(f"mysql {vip}:{port}", False, (r.stderr or r.stdout).strip()[:200])
    row_id, node = r.stdout.split()[:2]
    r = subprocess.run(
        ["mnexec", "-a", str(control.host_pid("client")), *base],
        input=f"SELECT node FROM lab.events WHERE id = {int(row_id)};",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    ok = r.returncode == 0 and r.stdout.strip() == node
    return Check(f"mysql {vip}:{port}", ok, f"row {row_id} written on {node}, read back" if ok else (r.stderr or r.stdout).strip()[:200])


# A highstate's end is not the pair's settling: the LBs' and the database
# servers' highstates run side by side, so HAProxy may have checked a server
# before its probe listened, and a DOWN server needs `rise` good checks at
# `downinter` (lab pillar: 3 x 5 s) to come back.  A failing check is asked
# again until this bound; one still failing then is reported as failed.
SETTLE_BOUND = 60.0


def checks(settle: float = SETTLE_BOUND) -> list[Check]:
    found = vips()
    todo = [(http_check, v, p) for v, p, _ in found["http"]] + [(sql_check, v, p) for v, p, _ in found["mysql"]]
    results = {i: fn(v, p) for i, (fn, v, p) in enumerate(todo)}
    t0 = time.monotonic()
    while any(not c.ok for c in results.values()) and time.monotonic() - t0 < settle:
        time.sleep(2)
        for i, (fn, v, p) in enumerate(todo):
            if not results[i].ok:
                c = fn(v, p)
                if c.ok:
                    c.detail += f" (after {time.monotonic() - t0:.0f} s settling)"
                results[i] = c
    return [results[i] for i in range(len(todo))]


def print_checks(results: list[Check]) -> bool:
    print("end to end, from the client host (198.18.0.10):")
    for c in results:
        print(f"  {'OK  ' if c.ok else 'FAIL'} {c.what:22} {c.detail}")
    return all(c.ok for c in results)


def pair_status() -> str:
    """The pair's status table: the product's runner if it exists."""
    if (REPO / "_runners" / "lb.py").exists():
        r = subprocess.run(
            [str(saltcfg.BIN / "salt-run"), "-c", str(saltcfg.MASTER_DIR), "lb.status"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.rstrip()
        return f"salt-run lb.status failed ({r.returncode}): {(r.stderr or r.stdout).strip()[:500]}"
    return _own_status()


def _own_status() -> str:
    carp = saltcfg.salt_json("lb-*", "carp.status", timeout=60)
    servers = saltcfg.salt_json("lb-*", "haproxy_cfg.list_servers", timeout=60)
    lines = [f"{'vhid':>4}  {'vip':18} " + "  ".join(f"{n:8}" for n in sorted(carp))]
    vhids = sorted({int(v) for st in carp.values() if isinstance(st, dict) for v in st})
    for vhid in vhids:
        row = [carp[n].get(str(vhid), {}) if isinstance(carp[n], dict) else {} for n in sorted(carp)]
        vip = next((g.get("vip", "") for g in row if g), "")
        lines.append(f"{vhid:>4}  {vip:18} " + "  ".join(f"{g.get('state', '?'):8}" for g in row))
    lines.append(json.dumps(servers, indent=1)[:2000])
    return "\n".join(lines)


def after_up(t0: float) -> int:
    """The end of `python -m lab up` (lab/__main__.py), once control.up has
    converged the lab: the checks end to end, the pair's status, and the
    exit status (t0: when `up` started, time.monotonic())."""
    try:
        ok = print_checks(checks())
        print(pair_status())
    except (RuntimeError, LookupError, subprocess.TimeoutExpired) as exc:
        ok = False
        print(f"the end-to-end checks failed: {exc}")
    if not ok:
        print("the lab converged but the path end to end does not work; inspect it, then: python -m lab down")
        return 1
    print(f"lab up and checked in {time.monotonic() - t0:.1f} s")
    return 0


def main() -> int:
    """`python -m lab check`: the end-to-end checks and the status again."""
    if control.running() is None:
        print("no lab is running")
        return 1
    ok = print_checks(checks())
    print(pair_status())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
