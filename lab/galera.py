"""A real MariaDB Galera cluster in the lab's database hosts.

`up` (the supervisor, once the network and the minions are up) bootstraps one
cluster per galera pool that has hosts: db-1..3 (galera_a; without --galera6
they also stand in for galera_b's servers, see lab/plan.py), and with
--galera6 db-4..6 as a second cluster.  The first host bootstraps, the others
join by rsync SST.  Then an application account for the client host.

mariadbd runs as on a server without systemd, directly, in its host's
namespaces (`mnexec -a`, so the pid started is mariadbd's own), with the
host's private /etc/mysql (its configuration: /etc/mysql/lab-galera.cnf),
/var/lib/mysql, /run (socket and pid file) and /var/log (error log).  Its pid
file is the record: whoever restarts a node (a test, the drill), the next one
finds it there, and `down` stops it like every process in a lab host.  Every
loop is bounded in count and time; traffic goes only to lab addresses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab import LAB_DIR, control, state
from lab.plan import Plan

MARIADBD = "/usr/sbin/mariadbd"
CLIENT = "/usr/bin/mariadb"
PROVIDER = "/usr/lib/galera/libgalera_smm.so"
CNF = "/etc/mysql/lab-galera.cnf"  # in the host's private /etc/mysql
SOCKET = "/run/mysqld/mysqld.sock"  # private /run: one per host
PIDFILE = "/run/mysqld/mysqld.pid"
ERROR_LOG = "/var/log/mysql/error.log"  # private /var/log
APP_USER, APP_PASSWORD = "app", "lab-app-pw"
APP_NETWORK = "198.18.3.%"  # HAProxy connects from the load balancers' systems addresses
APP_CNF = LAB_DIR / "app.cnf"  # the client host's credentials (0600); .lab is visible in every host
START_TIMEOUT = 120.0
# Galera's own failure detection.  When the active node dies, HAProxy moves
# the writes to a backup within fall x inter, but the survivors cannot commit
# until they have evicted the dead node from the view (all members ack every
# write set): evs.suspect_timeout, PT5S by default, which alone would break
# the <= fall x inter + 1 s target.  The lab runs with what docs/clustercheck.md
# recommends for a LAN; bench/galera_failover.py measures both side by side.
GALERA_DEFAULTS = {"gcache.size": "32M"}
RECOMMENDED = {
    **GALERA_DEFAULTS,
    "evs.suspect_timeout": "PT2S",
    "evs.inactive_timeout": "PT4S",
    "evs.inactive_check_period": "PT0.5S",
    "evs.keepalive_period": "PT0.5S",
}


def private(host: str, path: str) -> Path:
    """A private path of a lab host, as seen from this machine."""
    return state.HOSTS_DIR / host / path.lstrip("/")


def in_host(host: str, *cmd: str, timeout: float = 30, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["mnexec", "-a", str(control.host_pid(host)), *cmd], input=input, capture_output=True, text=True, timeout=timeout)


def pools(plan: Plan) -> dict[str, dict[str, str]]:
    """{pool: {host: address}} for every galera pool of the lab pillar whose
    servers are lab hosts (aliases included), in the pillar's server order."""
    import yaml

    from lab import PILLAR

    pair = next(iter(yaml.safe_load(PILLAR.read_text())["lb"]["pairs"].values()))
    by_address = {}
    for h in plan.hosts:
        if h.role != "db":
            continue
        by_address[h.interfaces[0].address.split("/")[0]] = h.name
        for _, address, _ in h.aliases:
            by_address[address.split("/")[0]] = h.name
    out = {}
    for name, pool in pair["haproxy"]["pools"].items():
        if pool.get("kind") != "galera":
            continue
        hosts = {by_address[str(s["address"])]: str(s["address"]) for s in pool["servers"].values() if str(s["address"]) in by_address}
        if hosts:
            out[name] = hosts
    return out


def clusters(plan: Plan) -> list[Galera]:
    """One Galera per distinct set of hosts (galera_b's stand-ins are
    galera_a's cluster): one without --galera6, two with it."""
    out, seen = [], set()
    for name, hosts in pools(plan).items():
        key = frozenset(hosts)
        if key in seen:
            continue
        seen.add(key)
        out.append(Galera(plan, name=name))
    return out


def db_hosts(plan: Plan, pool: str | None = None) -> dict[str, str]:
    """{host: address on the database network} of a pool's cluster (the
    first galera pool's by default), ordered by address: the first is
    db-1, the pillar's active server of galera_a."""
    found = pools(plan)
    hosts = found[pool] if pool else next(iter(found.values()))
    addrs = {h: next(i.address.split("/")[0] for i in plan.host(h).interfaces if i.network == "mysql") for h in hosts}
    return dict(sorted(addrs.items(), key=lambda kv: tuple(int(x) for x in kv[1].split("."))))


class Galera:
    """One cluster.  `stop_check` is called while waiting (the supervisor
    passes one that raises when it is asked to stop)."""

    def __init__(self, plan: Plan, name: str | None = None, stop_check=lambda: None, provider_options: dict | None = None):
        self.name = name or next(iter(pools(plan)))
        self.provider_options = dict(RECOMMENDED if provider_options is None else provider_options)
        self.hosts = db_hosts(plan, self.name)
        self.stop_check = stop_check
        self.reused = False  # start_all found the cluster running (the lab's)
        self.procs: dict[str, subprocess.Popen] = {}  # mariadbd this object started

    # -- files ---------------------------------------------------------------

    def cnf(self, host: str) -> str:
        path = private(host, CNF)
        peers = ",".join(self.hosts.values())
        path.write_text(
            "\n".join(
                [
                    "# Written by the lab (lab/galera.py)",
                    "[mariadbd]",
                    "datadir=/var/lib/mysql",
                    f"socket={SOCKET}",
                    f"pid-file={PIDFILE}",
                    f"log-error={ERROR_LOG}",
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
                    f"wsrep_node_address={self.hosts[host]}",
                    f"wsrep_node_name={host}",
                    "wsrep_sst_method=rsync",
                    'wsrep_provider_options="{}"'.format(";".join(f"{k}={v}" for k, v in self.provider_options.items())),
                    "",
                ]
            )
        )
        return CNF

    def tail(self, host: str, lines: int = 25) -> str:
        try:
            return "\n".join(private(host, ERROR_LOG).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no error log)"

    # -- processes -----------------------------------------------------------

    def pid(self, host: str) -> int | None:
        """mariadbd's pid in `host` (its pid file), if it runs there."""
        try:
            pid = int(private(host, PIDFILE).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            host_ns = state.netns(control.host_pid(host))
        except LookupError:
            return None
        if state.start_time(pid) is None or state.netns(pid) != host_ns:
            return None
        return pid

    def alive(self, host: str) -> bool:
        proc = self.procs.get(host)
        if proc is not None and proc.poll() is not None:
            return False
        return self.pid(host) is not None or (proc is not None and proc.poll() is None)

    def synced(self, host: str) -> bool:
        try:
            return self.pid(host) is not None and self.status(host).get("wsrep_local_state") == "4"
        except (RuntimeError, subprocess.SubprocessError):
            return False

    def prepare(self, host: str, install: bool) -> None:
        """The host's private datadir emptied (a fresh cluster each time), and
        system tables on the bootstrap node only (joiners get them by SST)."""
        r = in_host(
            host,
            "sh",
            "-c",
            "install -d -o mysql -g mysql -m 0755 /run/mysqld /var/log/mysql"
            " && find /var/lib/mysql -mindepth 1 -delete && chown mysql:mysql /var/lib/mysql",
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

    def start(self, host: str, bootstrap: bool = False, timeout: float = START_TIMEOUT) -> subprocess.Popen:
        """Start mariadbd in `host` (its own session) and wait until it is
        Synced.  Restarting a node that was killed is this, without prepare:
        it rejoins by IST or SST."""
        in_host(host, "install", "-d", "-o", "mysql", "-g", "mysql", "-m", "0755", "/run/mysqld", "/var/log/mysql")
        argv = ["mnexec", "-a", str(control.host_pid(host)), MARIADBD, f"--defaults-file={self.cnf(host)}"]
        if bootstrap:
            argv.append("--wsrep-new-cluster")
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.procs[host] = proc
        try:
            self.wait(host, lambda: self.status(host).get("wsrep_local_state") == "4", timeout, "Synced")
        except RuntimeError:
            # a node cannot join a cluster that has no primary component;
            # give the cluster one back (as an operator would), then join once more
            if bootstrap or not self.recover_primary(exclude=host):
                raise
            self.stop(host)
            return self.start(host, timeout=timeout)
        return proc

    def wait_settled(self, timeout: float = 120, hold: float = 3.0) -> None:
        """Until every node reports the whole cluster (size = the nodes),
        Primary and Synced, and still does `hold` seconds later.  A node
        resumed after SIGSTOP reports its old Synced state at once, before
        it has found out that the others went on without it; stopping or
        killing a node in that moment has left the other two without a
        primary component here."""
        n = len(self.hosts)

        def whole():
            for h in self.hosts:
                st = self.status(h)
                if (
                    st.get("wsrep_cluster_size") != str(n)
                    or st.get("wsrep_cluster_status") != "Primary"
                    or st.get("wsrep_local_state") != "4"
                ):
                    return False
            return True

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.wait(next(iter(self.hosts)), whole, max(1.0, end - time.monotonic()), f"a whole cluster of {n}")
            time.sleep(hold)
            try:
                if whole():
                    return
            except (RuntimeError, subprocess.SubprocessError):
                pass
        raise RuntimeError(f"the cluster did not settle as {n} Synced nodes in {timeout:.0f} s")

    def recover_primary(self, exclude: str | None = None) -> str | None:
        """When no running node (but `exclude`) is in a primary component,
        make the one with the latest commit primary (``pc.bootstrap=YES``)
        and wait until it is; returns that node, None when there was a
        primary component or no node runs.  Galera loses its primary
        component when the nodes left cannot prove a majority of the last
        one: on this loaded 2-core machine, with the short evs timers the
        lab runs, a node stopped right after a SIGSTOP/SIGCONT can leave
        the two others suspecting each other.  Said on stderr: never silent."""
        running = [h for h in self.hosts if h != exclude and self.alive(h)]
        seen = {}
        for h in running:
            try:
                seen[h] = self.status(h)
            except (RuntimeError, subprocess.SubprocessError):
                continue
        if not seen or any(st.get("wsrep_cluster_status") == "Primary" for st in seen.values()):
            return None
        best = max(seen, key=lambda h: int(seen[h].get("wsrep_last_committed") or -1))
        print(f"lab/galera: no primary component among {', '.join(sorted(seen))}; pc.bootstrap on {best}", file=sys.stderr)
        self.sql(best, "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
        self.wait(best, lambda: self.status(best).get("wsrep_cluster_status") == "Primary", 60, "Primary after pc.bootstrap")
        return best

    def start_all(self, fresh: bool = False) -> None:
        """A fresh cluster; or, when every node already runs Synced (the lab
        brought it up) and `fresh` is not asked for, that one (`reused`)."""
        if not fresh and all(self.synced(h) for h in self.hosts):
            self.reused = True
            return
        for host in self.hosts:
            self.stop(host)
        first, *rest = self.hosts
        self.prepare(first, install=True)
        self.start(first, bootstrap=True)
        for host in rest:
            self.prepare(host, install=False)
            self.start(host)

    def restart_with(self, provider_options: dict) -> None:
        """The whole cluster again, from scratch, with these provider options
        (Galera reads most of them only at start).  A cluster that was the
        lab's stays the lab's (`reused`): stop_all leaves it running."""
        for host in reversed(list(self.hosts)):
            self.stop(host)
        self.provider_options = dict(provider_options)
        self.start_all(fresh=True)

    def live_options(self, host: str) -> dict:
        """The provider options a running node uses, as Galera reports them."""
        out = self.sql(host, "SHOW GLOBAL VARIABLES LIKE 'wsrep_provider_options'")
        text = out.split("\t", 1)[1] if "\t" in out else ""
        pairs = (kv.partition("=") for kv in text.strip().split(";"))
        return {k.strip(): v.strip() for k, sep, v in pairs if sep}

    def restore(self, timeout: float = START_TIMEOUT) -> None:
        """Every node running and Synced again: a node that is down rejoins
        (a cluster left without a primary component gets one back first)."""
        self.recover_primary()
        for host in self.hosts:
            if not self.alive(host):
                self.start(host, timeout=timeout)
            else:
                self.wait(host, lambda h=host: self.status(h).get("wsrep_local_state") == "4", timeout, "Synced")

    def wait(self, host: str, cond, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.stop_check()
            proc = self.procs.get(host)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{host}: mariadbd exited waiting for {what}:\n{self.tail(host)}")
            try:
                if cond():
                    return
            except (RuntimeError, subprocess.SubprocessError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{host}: not {what} after {timeout:.0f} s:\n{self.tail(host)}")

    def kill(self, host: str) -> float:
        """The node dies: SIGKILL to mariadbd.  Returns the time (time.time())."""
        pid = self.pid(host)
        t = time.time()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        self._gone(host, pid, 30)
        return t

    def stop(self, host: str, timeout: float = 60) -> None:
        """A clean shutdown (SIGTERM), SIGKILL after `timeout`."""
        pid = self.pid(host)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
            if not self._gone(host, pid, timeout):
                os.kill(pid, signal.SIGKILL)
                self._gone(host, pid, 10)
        proc = self.procs.pop(host, None)
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # an SST's rsync left in its group
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(10)

    def _gone(self, host: str, pid: int | None, timeout: float) -> bool:
        if pid is None:
            return True
        start = state.start_time(pid)
        proc = self.procs.get(host)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc is not None and proc.pid == pid:
                if proc.poll() is not None:
                    return True
            elif state.start_time(pid) != start or start is None:
                return True
            time.sleep(0.05)
        return False

    def stop_all(self) -> None:
        """Stop the cluster; a cluster that was the lab's is left running,
        every node Synced (restarted if it was killed)."""
        if self.reused:
            self.restore()
            return
        for host in reversed(list(self.hosts)):
            self.stop(host)

    # -- SQL -----------------------------------------------------------------

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

    def app_account(self, truncate: bool = True) -> str:
        """The application's account (from the load balancers' systems
        network, where HAProxy connects from) and a table lab.writes; returns
        the option file with its credentials for the client host (0600)."""
        first = next(iter(self.hosts))
        self.sql(
            first,
            "CREATE DATABASE IF NOT EXISTS lab;"
            " CREATE TABLE IF NOT EXISTS lab.writes (seq INT PRIMARY KEY, node VARCHAR(16), at DOUBLE) ENGINE=InnoDB;"
            " CREATE TABLE IF NOT EXISTS lab.events (id INT AUTO_INCREMENT PRIMARY KEY, vip VARCHAR(16), node VARCHAR(16), at DOUBLE) ENGINE=InnoDB;"
            + (" TRUNCATE lab.writes;" if truncate else "")
            + f" CREATE USER IF NOT EXISTS '{APP_USER}'@'{APP_NETWORK}' IDENTIFIED BY '{APP_PASSWORD}';"
            f" GRANT ALL ON lab.* TO '{APP_USER}'@'{APP_NETWORK}';",
        )
        write_app_cnf()
        return str(APP_CNF)


def write_app_cnf() -> None:
    APP_CNF.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(APP_CNF, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"[client]\nuser = {APP_USER}\npassword = '{APP_PASSWORD}'\n")
