"""The Galera side of the lab tests and bench/galera_failover.py: the
cluster itself is lab/galera.py's (the lab bootstraps it in `up`; `Galera`,
`db_hosts`, `in_host` are re-exported from there); here a bounded writer in
the client host, and HAProxy's view from lb-a.

`Galera(plan).start_all()` reuses the lab's running cluster (every node
Synced) and `stop_all()` then leaves it running, each node Synced again (a
node a test killed is restarted); on a lab without one it bootstraps a fresh
cluster and stops it.  Every process started here is stopped by its pid;
every loop is bounded in count and time; traffic goes only to lab addresses.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

from lab import control, saltcfg
from lab.galera import APP_PASSWORD, APP_USER, CLIENT, MARIADBD, PROVIDER, SOCKET, START_TIMEOUT, Galera, db_hosts, in_host, private

__all__ = ["APP_PASSWORD", "APP_USER", "CLIENT", "MARIADBD", "PROVIDER", "SOCKET", "START_TIMEOUT", "Galera", "db_hosts", "in_host"]

VIP = "198.18.2.4"  # listener mysql_4 -> pool galera_a
BACKEND = "haproxy_198.18.2.4_3306"  # lb_render's section name for it


def lb_private(host: str, path: str):
    """A private path of a lab host, as seen from this machine."""
    return private(host, path)


WRITER = r"""
import json, subprocess, sys, time
cnf, vip, count, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
out = []
deadline = time.monotonic() + count * (every + 6.0) + 10
for seq in range(count):
    if time.monotonic() > deadline:
        break
    t = time.time()
    try:
        r = subprocess.run(
            ["/usr/bin/mariadb", "--defaults-extra-file=" + cnf, "-h", vip, "-P", "3306", "--connect-timeout=1", "-N", "-B"],
            input="INSERT INTO lab.writes (seq, node, at) VALUES (%d, @@wsrep_node_name, %f); SELECT @@wsrep_node_name;" % (seq, t),
            capture_output=True, text=True, timeout=5)
        ok = r.returncode == 0
        node = r.stdout.strip() if ok else r.stderr.strip()[:120]
    except subprocess.TimeoutExpired:
        ok, node = False, "timeout"
    out.append((seq, t, time.time(), ok, node))
    time.sleep(every)
print(json.dumps(out))
"""


class Writer:
    """A bounded loop in the lab's client host: every `every` s, a new
    connection to the VIP inserts row `seq` and reads back which node took it."""

    def __init__(self, cnf: str, count: int, every: float = 0.1, vip: str = VIP):
        self.proc = subprocess.Popen(
            ["mnexec", "-a", str(control.host_pid("client")), "/usr/bin/python3", "-c", WRITER, cnf, vip, str(count), str(every)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.limit = count * (every + 6.0) + 30

    def result(self) -> list[dict]:
        try:
            out, err = self.proc.communicate(timeout=self.limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise RuntimeError(f"writer failed: {err}")
        return [dict(zip(("seq", "start", "end", "ok", "node"), row, strict=True)) for row in json.loads(out)]


def writers_in_order(results: list[dict]) -> list[str]:
    """The nodes that took the successful writes, runs collapsed: ["db-1",
    "db-2"] is one failover; ["db-1", "db-2", "db-1", "db-2"] is not."""
    runs = []
    for r in results:
        if r["ok"] and (not runs or runs[-1] != r["node"]):
            runs.append(r["node"])
    return runs


def first_write_after(results: list[dict], t: float, node: str | None = None) -> dict | None:
    for r in results:
        if r["ok"] and r["start"] >= t and (node is None or r["node"] == node):
            return r
    return None


class HaproxyView(threading.Thread):
    """lb-a's HAProxy, every 100 ms through its stats socket (its private
    /run, reachable from here): per server status and current sessions.
    `overlaps` lists samples where two servers of the Galera backend had
    sessions at once.  Bounded by max_seconds."""

    def __init__(self, socket_path: str | None = None, every: float = 0.1, max_seconds: float = 300):
        super().__init__(daemon=True)
        self.socket_path = socket_path or str(lb_private("lb-a", "/run/haproxy/admin.sock"))
        self.every, self.max_seconds = every, max_seconds
        self.samples: list[tuple[float, dict]] = []
        self.overlaps: list[tuple[float, dict]] = []
        self._halt = threading.Event()

    def read(self) -> dict:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(self.socket_path)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        lines = data.decode().splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(","), strict=False))
            if row.get("pxname") == BACKEND and row.get("type") == "2":  # servers only (not the listener's sock-N)
                out[row["svname"]] = {"status": row["status"], "scur": int(row["scur"] or 0)}
        return out

    def run(self):
        end = time.monotonic() + self.max_seconds
        while not self._halt.is_set() and time.monotonic() < end:
            try:
                view = self.read()
            except OSError:
                view = None
            if view is not None:
                t = time.time()
                self.samples.append((t, view))
                if sum(1 for s in view.values() if s["scur"] > 0) > 1:
                    self.overlaps.append((t, view))
            self._halt.wait(self.every)

    def stop(self):
        self._halt.set()
        self.join(timeout=5)

    def first(self, server: str, status: str, after: float) -> float | None:
        """When the sampler first saw `server` in `status` after `after`."""
        for t, view in self.samples:
            if t >= after and view.get(server, {}).get("status", "").startswith(status):
                return t
        return None

    def wait_status(self, want: dict, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                view = self.read()
            except OSError:
                view = {}
            if all(view.get(k, {}).get("status", "").startswith(v) for k, v in want.items()):
                return True
            time.sleep(0.1)
        return False


def salt_ok(ret: dict) -> list:
    """The failed states of a state.apply return ({minion: {id: result}})."""
    bad = []
    for minion, states in ret.items():
        if not isinstance(states, dict):
            bad.append((minion, states))
            continue
        bad += [(minion, k, v.get("comment")) for k, v in states.items() if v.get("result") is False]
    return bad


def apply_probe(db: list[str]) -> dict:
    """salt/clustercheck on each database minion, one after the other: the
    lab's hosts share /etc/passwd, and three useradd at once fight over its
    lock."""
    out = {}
    for minion in db:
        saltcfg.sync_all(minion, timeout=120)
        out.update(saltcfg.salt_json(minion, "state.apply", "clustercheck", "queue=True", timeout=300))
    return out


def server_name_of(plan, host: str) -> str:
    return plan.host(host).pillar_name
