"""A real three-node MariaDB Galera cluster in the lab's database hosts, a
bounded writer in the client host, and HAProxy's view from lb-a.  Used by
tests/lab/test_clustercheck_lab.py and bench/galera_failover.py.

mariadbd runs in each database host's namespaces (`mnexec -a`, so the pid we
start is mariadbd's own) with the host's private /var/lib/mysql and /run;
its configuration and error log are in a scratch directory of this machine
(the hosts share /tmp).  db-1 bootstraps, db-2 and db-3 join by rsync SST.
Every process started here is recorded by pid and start time and stopped by
that pid; every loop is bounded in count and time; traffic goes only to lab
addresses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from lab import control, saltcfg, state

MARIADBD = "/usr/sbin/mariadbd"
CLIENT = "/usr/bin/mariadb"
PROVIDER = "/usr/lib/galera/libgalera_smm.so"
SOCKET = "/run/mysqld/mysqld.sock"  # private /run: one per host
VIP = "198.18.2.4"  # listener mysql_4 -> pool galera_a
BACKEND = "haproxy_198.18.2.4_3306"  # lb_render's section name for it
APP_USER, APP_PASSWORD = "app", "lab-app-pw"
START_TIMEOUT = 120.0


def db_hosts(plan) -> dict[str, str]:
    """{host: address on the database network} for galera_a's servers, in
    the pillar's order (the first is the active server)."""
    out = {}
    for h in plan.hosts:
        if h.role == "db":
            addr = next(i.address.split("/")[0] for i in h.interfaces if i.network == "mysql")
            out[h.name] = addr
    return dict(sorted(out.items(), key=lambda kv: tuple(int(x) for x in kv[1].split("."))))


def in_host(host: str, *cmd: str, timeout: float = 30, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["mnexec", "-a", str(control.host_pid(host)), *cmd], input=input, capture_output=True, text=True, timeout=timeout)


def lb_private(host: str, path: str) -> Path:
    """A private path of a lab host, as seen from this machine."""
    return state.HOSTS_DIR / host / path.lstrip("/")


class Galera:
    def __init__(self, plan, name: str = "lab"):
        self.hosts = db_hosts(plan)
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="ccl-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "mysql", "mysql")  # error logs
        self.procs: dict[str, dict] = {}  # host -> {"pid", "start", "popen"}

    def cnf(self, host: str) -> str:
        path = self.dir / f"{host}.cnf"
        addr = self.hosts[host]
        peers = ",".join(self.hosts.values())
        path.write_text(
            "\n".join(
                [
                    "[mariadbd]",
                    "datadir=/var/lib/mysql",
                    f"socket={SOCKET}",
                    "pid-file=/run/mysqld/mysqld.pid",
                    f"log-error={self.dir}/{host}.err",
                    "user=mysql",
                    "bind-address=0.0.0.0",
                    "port=3306",
                    "skip-name-resolve",
                    "innodb_buffer_pool_size=32M",
                    "innodb_log_file_size=16M",
                    "performance_schema=OFF",
                    "binlog_format=ROW",
                    "default_storage_engine=InnoDB",
                    "innodb_autoinc_lock_mode=2",
                    "wsrep_on=ON",
                    f"wsrep_provider={PROVIDER}",
                    f"wsrep_cluster_name={self.name}",
                    f"wsrep_cluster_address=gcomm://{peers}",
                    f"wsrep_node_address={addr}",
                    f"wsrep_node_name={host}",
                    "wsrep_sst_method=rsync",
                    'wsrep_provider_options="gcache.size=32M"',
                    "",
                ]
            )
        )
        return str(path)

    def prepare(self, host: str, install: bool) -> None:
        """The host's private datadir emptied (a fresh cluster each time), and
        system tables on the bootstrap node only (joiners get them by SST)."""
        r = in_host(
            host,
            "sh",
            "-c",
            "install -d -o mysql -g mysql -m 0755 /run/mysqld && find /var/lib/mysql -mindepth 1 -delete && chown mysql:mysql /var/lib/mysql",
        )
        if r.returncode != 0:
            raise RuntimeError(f"{host}: {r.stderr}")
        if install:
            r = in_host(
                host,
                "mariadb-install-db",
                "--no-defaults",
                "--user=mysql",
                "--datadir=/var/lib/mysql",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--innodb-log-file-size=16M",
                timeout=120,
            )
            if r.returncode != 0:
                raise RuntimeError(f"{host}: mariadb-install-db: {r.stdout}{r.stderr}")

    def start(self, host: str, bootstrap: bool = False, timeout: float = START_TIMEOUT) -> None:
        argv = ["mnexec", "-a", str(control.host_pid(host)), MARIADBD, f"--defaults-file={self.cnf(host)}"]
        if bootstrap:
            argv.append("--wsrep-new-cluster")
        with open(self.dir / f"{host}.out", "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[host] = {"pid": proc.pid, "start": state.start_time(proc.pid), "popen": proc}
        self.wait(host, lambda: self.status(host).get("wsrep_local_state") == "4", timeout, "Synced")

    def start_all(self) -> None:
        first, *rest = self.hosts
        self.prepare(first, install=True)
        self.start(first, bootstrap=True)
        for host in rest:
            self.prepare(host, install=False)
            self.start(host)

    def alive(self, host: str) -> bool:
        rec = self.procs.get(host)
        return bool(rec) and rec["popen"].poll() is None and state.start_time(rec["pid"]) == rec["start"]

    def wait(self, host: str, cond, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if host in self.procs and not self.alive(host):
                raise RuntimeError(f"{host}: mariadbd exited waiting for {what}:\n{self.tail(host)}")
            try:
                if cond():
                    return
            except (RuntimeError, subprocess.SubprocessError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{host}: not {what} after {timeout:.0f} s:\n{self.tail(host)}")

    def tail(self, host: str, lines: int = 25) -> str:
        try:
            return "\n".join((self.dir / f"{host}.err").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no error log)"

    def sql(self, host: str, query: str, timeout: float = 20) -> str:
        r = in_host(
            host,
            CLIENT,
            "--no-defaults",
            f"--socket={SOCKET}",
            "--batch",
            "--skip-column-names",
            "--connect-timeout=5",
            input=query,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{host}: {query!r}: {r.stderr.strip()}")
        return r.stdout

    def status(self, host: str) -> dict:
        out = self.sql(host, "SHOW GLOBAL STATUS LIKE 'wsrep_%'", timeout=10)
        return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)

    def kill(self, host: str) -> float:
        """The node dies: SIGKILL to mariadbd.  Returns the time (time.time())."""
        rec = self.procs[host]
        t = time.time()
        if self.alive(host):
            os.kill(rec["pid"], signal.SIGKILL)
        rec["popen"].wait(30)
        return t

    def stop(self, host: str, timeout: float = 60) -> None:
        rec = self.procs.get(host)
        if not rec:
            return
        proc = rec["popen"]
        if self.alive(host):
            os.kill(rec["pid"], signal.SIGCONT)
            os.kill(rec["pid"], signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(rec["pid"], signal.SIGKILL)
                proc.wait(10)
        try:
            os.killpg(rec["pid"], signal.SIGKILL)  # an SST's rsync left in its group
        except (ProcessLookupError, PermissionError):
            pass

    def stop_all(self) -> None:
        for host in reversed(list(self.procs)):
            self.stop(host)
        shutil.rmtree(self.dir, ignore_errors=True)

    def app_account(self) -> str:
        """The application's account (from the load balancers' systems
        network, where HAProxy connects from) and a table; returns an option
        file with its credentials for the client host (0600, root)."""
        first = next(iter(self.hosts))
        self.sql(
            first,
            "CREATE DATABASE IF NOT EXISTS lab;"
            " CREATE TABLE IF NOT EXISTS lab.writes (seq INT PRIMARY KEY, node VARCHAR(16), at DOUBLE) ENGINE=InnoDB;"
            " TRUNCATE lab.writes;"
            f" CREATE USER IF NOT EXISTS '{APP_USER}'@'198.18.3.%' IDENTIFIED BY '{APP_PASSWORD}';"
            f" GRANT ALL ON lab.* TO '{APP_USER}'@'198.18.3.%';",
        )
        path = self.dir / "app.cnf"
        path.write_text(f"[client]\nuser = {APP_USER}\npassword = '{APP_PASSWORD}'\n")
        os.chmod(path, 0o600)
        return str(path)


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
        saltcfg.salt_json(minion, "saltutil.sync_all", timeout=120)
        out.update(saltcfg.salt_json(minion, "state.apply", "clustercheck", timeout=300))
    return out


def server_name_of(plan, host: str) -> str:
    return plan.host(host).pillar_name
