"""Helpers for the CARP lab tests and bench/carp_failover.py: who holds which
VIP (the addresses on each host, over rtnetlink: lab/netview.py), a
50 ms sampler that flags any moment both nodes hold one VIP, a bounded TCP
client inside the lab's client host, and link loss on a node's user link.

Everything started here is stopped by its own pid; every loop is bounded in
count and time; traffic goes only to lab addresses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

from lab import control, netview

LBS = ("lb-a", "lb-b")
VIPS = ("198.18.2.4", "198.18.2.44", "198.18.2.5", "198.18.2.55")
BIRD_SOCKET = "/run/bird/bird.ctl"  # each node's BIRD (salt/routing), in its private /run
SERVICE_PORT = 18080
# per-host paths: the lab's hosts share this machine's /var/lib, /etc/ucarp
# and /usr/local/sbin, but each has its own /run
LAB_CARP = {
    "state_dir": "/run/lb-carp/state",
    "script_dir": "/run/lb-carp/sbin",
    "run_dir": "/run/lb-carp/run",
    "ucarp_dir": "/run/lb-carp/ucarp",
    "keepalived_config": "/etc/keepalived/keepalived.conf",
}

CLIENT = r"""
import json, socket, sys, time
vip, port, count, every, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
out = []
deadline = time.monotonic() + count * (every + limit) + 5
for i in range(count):
    if time.monotonic() > deadline:
        break
    t = time.time()
    s = socket.socket()
    s.settimeout(limit)
    why = ""
    try:
        s.connect((vip, port))
        ok = True
    except OSError as exc:
        ok, why = False, type(exc).__name__ + ":" + str(exc.errno)
    finally:
        s.close()
    out.append((t, ok, round(time.time() - t, 4), why))
    time.sleep(every)
print(json.dumps(out))
"""


def local_addresses(host: str) -> set[str]:
    """The IPv4 addresses on a lab host's interfaces (lab/netview.py: an
    address dump over rtnetlink, no process spawned).  Only an address
    answers ARP: a handover's soft local route is not one."""
    return netview.addresses(control.host_pid(host))


def ucarp_argvs(host: str) -> dict[int, list[str]]:
    """{vhid: argv} of the ucarp processes in a lab host's network namespace
    (read from /proc: the hosts share this machine's process table)."""
    want = os.stat(f"/proc/{control.host_pid(host)}/ns/net").st_ino
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = [a.decode() for a in fh.read().split(b"\0") if a]
            if not argv or os.path.basename(argv[0]) != "ucarp" or os.stat(f"/proc/{pid}/ns/net").st_ino != want:
                continue
        except OSError:
            continue
        vhid = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--vhid=")), None)
        if vhid is not None:
            out[vhid] = argv
    return out


def holders() -> dict[str, set[str]]:
    """{vip: {hosts holding it}}."""
    addrs = {h: local_addresses(h) for h in LBS}
    return {v: {h for h in LBS if v in addrs[h]} for v in VIPS}


def wait_for(predicate, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


def all_on(host: str) -> bool:
    return all(h == {host} for h in holders().values())


class Sampler(threading.Thread):
    """Every 50 ms, who holds each VIP.  One sample reads lb-a, lb-b, then
    lb-a again (three reads of /proc, a millisecond or two apart: not one
    atomic moment): a VIP counts as held by both when lb-a had it in both
    of its reads and lb-b in the one between them, so both certainly held
    it at lb-b's read.  `overlaps`: those samples (the tests require none).
    With `holder` (lb-a), `away`: the samples where a VIP was in neither of
    lb-a's reads.  Bounded: stops after max_seconds."""

    def __init__(self, every: float = 0.05, max_seconds: float = 120, holder: str | None = None):
        super().__init__(daemon=True)
        self.every, self.max_seconds, self.holder = every, max_seconds, holder
        self.samples = 0
        self.error: str | None = None  # why it stopped early (a host gone from the lab)
        self.overlaps: list[tuple[float, str, set]] = []
        self.away: list[tuple[float, str]] = []
        self._halt = threading.Event()

    def run(self):
        end = time.monotonic() + self.max_seconds
        first, second = LBS
        while not self._halt.is_set() and time.monotonic() < end:
            t = time.time()
            try:
                a1, b, a2 = local_addresses(first), local_addresses(second), local_addresses(first)
            except (LookupError, OSError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self.overlaps += [(t, vip, {first, second}) for vip in VIPS if vip in a1 and vip in b and vip in a2]
            if self.holder == first:
                self.away += [(t, vip) for vip in VIPS if vip not in a1 and vip not in a2]
            self.samples += 1
            self._halt.wait(self.every)

    def stop(self, check: bool = True):
        """Stop sampling; with `check`, RuntimeError if it had stopped early
        (its samples do not cover the test)."""
        self._halt.set()
        self.join(timeout=5)
        if check and self.error:
            raise RuntimeError(f"the VIP sampler stopped after {self.samples} samples: {self.error}")


class Client:
    """A bounded TCP connect loop from the lab's client host to one VIP.  A
    connect not established within `timeout` seconds has failed (0.5 s to
    measure gaps; a client's own patience, e.g. 3 s, to count failures)."""

    def __init__(self, vip: str, count: int, every: float = 0.02, port: int = SERVICE_PORT, timeout: float = 0.5):
        self.proc = subprocess.Popen(
            [
                "mnexec",
                "-a",
                str(control.host_pid("client")),
                "python3",
                "-c",
                CLIENT,
                vip,
                str(port),
                str(count),
                str(every),
                str(timeout),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.limit = count * (every + timeout) + 30

    def result(self) -> list[tuple]:
        try:
            out, err = self.proc.communicate(timeout=self.limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise RuntimeError(f"client failed: {err}")
        return [tuple(x) for x in json.loads(out)]


def failures(results) -> int:
    return sum(1 for r in results if not r[1])


def slowest(results) -> float:
    """The longest successful connect (a lost SYN costs a 1 s retransmit)."""
    return max((r[2] for r in results if r[1]), default=0.0)


def longest_wait(results) -> float:
    """The longest time from one successful connect's answer to the next's
    (the client's cadence, 20 ms, when nothing is in the way; a lost SYN
    shows as a second more)."""
    done = sorted(t + took for t, ok, took, *_ in results if ok)
    return max((b - a for a, b in zip(done, done[1:], strict=False)), default=0.0)


def gap(results) -> float:
    """The longest client-observed outage: from the last success before a run
    of failures to the first success after it (0 when nothing failed)."""
    return outage(results)[0]


def outage(results) -> tuple[float, bool]:
    """(longest outage, whether the client recovered from every one).  A run
    of failures that lasts to the client's last attempt counts from the last
    success to that attempt, as a lower bound, with recovered False; a
    client that never connected at all counts its whole run, not recovered."""
    if results and not any(ok for _, ok, *_ in results):
        return results[-1][0] - results[0][0], False
    worst, last_ok, failing = 0.0, None, False
    for t, ok, *_ in results:
        if ok:
            if failing and last_ok is not None:
                worst = max(worst, t - last_ok)
            last_ok, failing = t, False
        else:
            failing = True
    if failing and last_ok is not None and results:
        return max(worst, results[-1][0] - last_ok), False
    return worst, True


class Services:
    """A TCP service on SERVICE_PORT in each node (python http.server on
    0.0.0.0), so a client connect to a VIP succeeds wherever it lives."""

    def __init__(self):
        self.procs = []

    def __enter__(self):
        for host in LBS:
            self.procs.append(
                subprocess.Popen(
                    ["mnexec", "-a", str(control.host_pid(host)), "python3", "-m", "http.server", str(SERVICE_PORT), "--bind", "0.0.0.0"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)


def user_port(plan, host: str) -> str:
    """The bridge-side end of a node's link to the VIP (user) segment."""
    return next(i.port for i in plan.host(host).interfaces if i.network == "user")


def user_device(plan, host: str) -> str:
    return next(i.device for i in plan.host(host).interfaces if i.network == "user")


def link(port: str, up: bool) -> None:
    subprocess.run(["ip", "link", "set", port, "up" if up else "down"], check=True, timeout=10)


PRIMARY = "lb-a"  # the lab pillar's primary of every group


def pair_view(salt) -> dict:
    """What the lab tests call the pair's state: who holds each VIP, each
    node's CARP states, maintenance, whether HAProxy listens, and the jobs
    its minion runs.  `salt(*args)` calls the lab's master ({minion: ret})."""
    lbs = ",".join(LBS)
    status = salt("-L", lbs, "carp.status")
    maint = salt("-L", lbs, "carp.in_maintenance")
    running = salt("-L", lbs, "saltutil.running")
    haproxy, bird = {}, {}
    for h in LBS:
        out = control.run(h, "ss", "-Hltnp", timeout=10).stdout
        haproxy[h] = "haproxy" in out
        # a node the routing SLS configured (its bird.conf is there) has BIRD answering
        probe = f"test ! -e /etc/bird/bird.conf || birdc -s {BIRD_SOCKET} show status >/dev/null"
        bird[h] = control.run(h, "sh", "-c", probe, timeout=10).returncode == 0
    states = {}
    for h in LBS:
        st = status.get(h)
        states[h] = {int(v): s.get("state") for v, s in st.items()} if isinstance(st, dict) else st
    jobs = {h: [j.get("fun") for j in r] if isinstance(r, list) else r for h, r in running.items()}
    return {
        "holders": {v: sorted(h) for v, h in holders().items()},
        "carp": states,
        "maintenance": maint,
        "haproxy": haproxy,
        "bird": bird,
        "jobs": jobs,
    }


def pair_problems(view: dict) -> list[str]:
    """Why a pair_view is not the settled pair the lab's highstate makes
    (empty: settled): the primary alone holds every VIP and is MASTER of
    every group, the peer BACKUP of every one, no node in maintenance,
    HAProxy listening on both, BIRD answering where the routing SLS
    configured it, no job running on either minion."""
    out = []
    for vip, hs in view["holders"].items():
        if hs != [PRIMARY]:
            out.append(f"VIP {vip} held by {hs or 'no node'}, not {PRIMARY} alone")
    for h in LBS:
        st = view["carp"].get(h)
        want = "MASTER" if h == PRIMARY else "BACKUP"
        if not isinstance(st, dict) or not st:
            out.append(f"{h}: carp.status answered {st!r}")
        elif any(s != want for s in st.values()):
            out.append(f"{h}: CARP states {st}, not all {want}")
        if view["maintenance"].get(h) is not False:
            out.append(f"{h}: carp.in_maintenance is {view['maintenance'].get(h)!r}")
        if not view["haproxy"].get(h):
            out.append(f"{h}: HAProxy listens on nothing")
        if not view["bird"].get(h, True):
            out.append(f"{h}: the routing SLS configured BIRD and it does not answer on {BIRD_SOCKET}")
        if view["jobs"].get(h) != []:
            out.append(f"{h}: jobs still running {view['jobs'].get(h)!r}")
    return out


def wait_settled(salt, timeout: float = 60) -> tuple[list[str], dict]:
    """(problems, view) once the pair is settled, or at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        view = pair_view(salt)
        problems = pair_problems(view)
        if not problems or time.monotonic() > deadline:
            return problems, view
        time.sleep(1)
