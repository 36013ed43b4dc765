#!/usr/bin/env python3
"""Booted hosts: a no-op highstate, a rebooted primary from power-on to
serving, and HAProxy killed on the MASTER, with no salt-master anywhere.

The pair of tests/boot (lab/booted.py): two Debian 12 hosts booting systemd
under systemd-nspawn, the product applied inside each by
`salt-call --local state.apply`.  Three rows, each a median over --runs,
each with a baseline run in the same invocation:

  no-op highstate       wall time of `salt-call --local state.apply` that
                        changes nothing, on lb-a; baseline: `salt-call
                        --local test.ping` (Salt's own start-up)
  primary reboot        power-on of lb-a (nspawn started) to lb-a holding
                        the VIP and the client served after that; baseline:
                        the same boot to systemd's "boot finished"
                        (FinishTimestamp).  The client's longest gap and
                        failed requests over the whole reboot, down and up
  HAProxy -9 on MASTER  the client's longest gap and failed requests;
                        baseline: the same client over a quiet window

The client, in the bridge's namespace, GETs http://VIP/ every 20 ms; a
request not answered within 0.2 s has failed; a gap runs from the last
success before failures to the first success after them.

Needs root, mmdebstrap and systemd-nspawn (`make setup`); builds the cached
root under .lab/boot/ the first time (about a minute).  Everything it
starts it stops by pid; its network namespace is its own.

    .venv/bin/python bench/boot_reboot.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lab import booted  # noqa: E402

CLIENT = r"""
import json, sys, threading, time, urllib.request
url, every, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
out, deadline = [], time.monotonic() + 900
while not stop.is_set() and time.monotonic() < deadline:
    t = time.monotonic()
    try:
        urllib.request.urlopen(url, timeout=timeout).read()
        ok = True
    except Exception:
        ok = False
    out.append((round(t, 4), ok))
    time.sleep(max(0.0, every - (time.monotonic() - t)))
print(json.dumps(out))
"""


class Client:
    """GETs through the VIP from the bridge's namespace until stopped."""

    def __init__(self, pair: booted.Pair, every: float = 0.02, timeout: float = 0.2):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", pair.switch, "python3", "-c", CLIENT, f"http://{booted.VIP}/", str(every), str(timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> list[tuple[float, bool]]:
        try:
            out, err = self.proc.communicate("", timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise RuntimeError(f"client failed: {err}")
        return [tuple(x) for x in json.loads(out)]


def gap(results) -> float:
    """The longest time from a success to the next success across failures
    (0 when nothing failed)."""
    worst, last_ok, failing = 0.0, None, False
    for t, ok in results:
        if ok:
            if failing and last_ok is not None:
                worst = max(worst, t - last_ok)
            last_ok, failing = t, False
        else:
            failing = True
    if failing and last_ok is not None:
        worst = max(worst, results[-1][0] - last_ok)
    return worst


def failed(results) -> int:
    return sum(1 for _, ok in results if not ok)


def wait(predicate, what, bound=90.0, every=0.05):
    """When predicate() first held (time.monotonic())."""
    booted.wait(predicate, what, bound, every)
    return time.monotonic()


serves = booted.serves
settled = booted.settled


def noop_highstate(pair, runs) -> dict:
    a = pair.nodes["lb-a"]
    walls, inside = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        code, out = booted.salt_call(a, "state.apply", 'exclude=[{"sls": "carp.events"}]')
        walls.append(time.monotonic() - t0)
        changed = {k: v["changes"] for k, v in out.items() if v.get("changes")}
        if code or changed:
            raise RuntimeError(f"the highstate was not a no-op: exit {code}, changes {changed}")
        inside.append(sum(float(v.get("duration") or 0) for v in out.values()) / 1000)
    pings = []
    for _ in range(runs):
        t0 = time.monotonic()
        booted.salt_call(a, "test.ping")
        pings.append(time.monotonic() - t0)
    return {"states": len(out), "wall": walls, "in_states": inside, "baseline": pings}


def manager_finished(node) -> float:
    """systemd's FinishTimestampMonotonic in the host, as seconds of this
    machine's monotonic clock."""
    return int(node.run("systemctl", "show", "--property=FinishTimestampMonotonic", "--value").stdout.strip()) / 1e6


def primary_reboot(pair) -> dict:
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    client = Client(pair)
    try:
        a.run("systemctl", "reboot", check=False, timeout=20)
        a._wait_exit(booted.BOOT_TIMEOUT)
        wait(lambda: booted.holds(b), "lb-b takes the VIP while lb-a is down")
        time.sleep(1.0)  # lb-b serving for a while: the client's gap is the failover's
        t_on = a.power_on()
        t_hold = wait(lambda: booted.holds(a) and not booted.holds(b), "lb-a takes the VIP back", every=0.02)
        wait(lambda: serves(pair), "the client is served through lb-a")
        time.sleep(1.0)
    finally:
        results = client.stop()
    a.wait_booted()
    served = next((t for t, ok in results if ok and t >= t_hold), None)
    if served is None:
        raise RuntimeError("the client was never served once lb-a held the VIP")
    return {
        "to_serving": served - t_on,
        "to_vip": t_hold - t_on,
        "baseline": manager_finished(a) - t_on,
        "gap": gap(results),
        "failed": failed(results),
        "requests": len(results),
    }


def haproxy_kill(pair) -> dict:
    a = pair.nodes["lb-a"]
    wait(lambda: settled(pair), "a settled pair")
    quiet = Client(pair)
    time.sleep(3.0)
    q = quiet.stop()
    master = a.run("cat", "/run/haproxy.pid").stdout.strip()
    client = Client(pair)
    try:
        time.sleep(0.5)
        a.run("kill", "-9", master)
        wait(lambda: a.run("cat", "/run/haproxy.pid", check=False).stdout.strip() not in ("", master), "HAProxy restarted")
        wait(lambda: settled(pair), "lb-a holds the VIP and serves again")
        time.sleep(1.0)
    finally:
        results = client.stop()
    return {"gap": gap(results), "failed": failed(results), "requests": len(results), "baseline": gap(q), "baseline_failed": failed(q)}


def med(xs) -> float:
    return statistics.median(xs)


def ratio(x, base) -> str:
    return f"{x / base:.2f}x" if base > 0 else "n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="also write the raw numbers here")
    args = ap.parse_args()
    why = booted.available()
    if why:
        print(f"boot_reboot: cannot run here: {why}", file=sys.stderr)
        return 2
    raw = {}
    with (
        tempfile.TemporaryDirectory(prefix="lb-boot-bench-") as workdir,
        booted.serving_pair(workdir, f"b{os.getpid() % 100000}", booted.pillar()) as pair,
    ):
        wait(lambda: settled(pair), "a settled pair after the first highstate")
        raw["noop"] = noop_highstate(pair, args.runs)
        raw["reboot"] = [primary_reboot(pair) for _ in range(args.runs)]
        raw["kill"] = [haproxy_kill(pair) for _ in range(args.runs)]
    n, r, k = raw["noop"], raw["reboot"], raw["kill"]
    rows = [
        ("no-op highstate (wall)", f"{med(n['wall']):.2f} s", f"test.ping {med(n['baseline']):.2f} s", ratio(med(n["wall"]), med(n["baseline"])),
         f"{n['states']} states, {med(n['in_states']):.2f} s inside them"),
        ("primary reboot: power-on to serving", f"{med([x['to_serving'] for x in r]):.2f} s",
         f"boot finished {med([x['baseline'] for x in r]):.2f} s", ratio(med([x["to_serving"] for x in r]), med([x["baseline"] for x in r])),
         f"VIP taken at {med([x['to_vip'] for x in r]):.2f} s"),
        ("primary reboot: client's longest gap", f"{med([x['gap'] for x in r]):.2f} s", "", "",
         f"failed {sorted(x['failed'] for x in r)} of ~{med([x['requests'] for x in r]):.0f} requests"),
        ("HAProxy -9 on MASTER: longest gap", f"{med([x['gap'] for x in k]):.2f} s", f"quiet {med([x['baseline'] for x in k]):.2f} s", "",
         f"failed {sorted(x['failed'] for x in k)} of ~{med([x['requests'] for x in k]):.0f} requests"),
    ]  # fmt: skip
    print(f"\nbooted pair, no salt-master; medians of {args.runs} runs")
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(raw, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
