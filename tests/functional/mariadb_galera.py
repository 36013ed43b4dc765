"""A real MariaDB Galera cluster on 127.0.0.1, for the probe's tests.

Debian's `mariadbd` and `galera-4`, each node in its own scratch directory
(datadir, socket, pid file, error log) with its own ports: the first node
bootstraps the cluster (`gcomm://`), the others join it and receive the data
by rsync SST.  Every process is started here, recorded by pid, and stopped by
that pid (SIGTERM, then SIGKILL after a bounded wait); SST helpers left in a
node's process group are killed by that group's id.  Waits are bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
CLIENT = "/usr/bin/mariadb"
PROVIDER = "/usr/lib/galera/libgalera_smm.so"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


def missing() -> str | None:
    """Why the cluster cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (mariadbd runs as the mysql user)"
    for path in (MARIADBD, INSTALL_DB, CLIENT, PROVIDER, "/usr/bin/rsync"):
        if not os.path.exists(path):
            return f"{path} is missing (apt-get install mariadb-server galera-4 mariadb-client rsync)"
    try:
        import pwd

        pwd.getpwnam("mysql")
    except KeyError:
        return "no mysql user (installed by mariadb-server)"
    return None


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Node:
    def __init__(self, base: Path, name: str, cluster: str):
        self.name = name
        self.dir = base / name
        self.datadir = self.dir / "data"
        self.socket = str(self.dir / "sock")
        self.pidfile = self.dir / "pid"
        self.errlog = self.dir / "err.log"
        self.cnf = self.dir / "my.cnf"
        self.cluster = cluster
        self.port, self.gport, self.sst_port, self.ist_port = free_ports(4)
        self.proc: subprocess.Popen | None = None
        self.paused = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def write_config(self, peers: list[Node]) -> None:
        address = "gcomm://" + ",".join(f"127.0.0.1:{p.gport}" for p in peers)
        options = ";".join(
            [
                f"gmcast.listen_addr=tcp://127.0.0.1:{self.gport}",
                f"ist.recv_addr=127.0.0.1:{self.ist_port}",
                "gcache.size=16M",
            ]
        )
        self.cnf.write_text(
            "\n".join(
                [
                    "[mariadbd]",
                    f"datadir={self.datadir}",
                    f"socket={self.socket}",
                    f"port={self.port}",
                    "bind-address=127.0.0.1",
                    f"pid-file={self.pidfile}",
                    f"log-error={self.errlog}",
                    "user=mysql",
                    "skip-name-resolve",
                    "innodb_buffer_pool_size=16M",
                    "innodb_log_file_size=8M",
                    "innodb_flush_log_at_trx_commit=2",
                    "performance_schema=OFF",
                    "binlog_format=ROW",
                    "default_storage_engine=InnoDB",
                    "innodb_autoinc_lock_mode=2",
                    "wsrep_on=ON",
                    f"wsrep_provider={PROVIDER}",
                    f"wsrep_cluster_name={self.cluster}",
                    f"wsrep_cluster_address={address}",
                    f"wsrep_node_address=127.0.0.1:{self.gport}",
                    f"wsrep_node_name={self.name}",
                    "wsrep_sst_method=rsync",
                    f"wsrep_sst_receive_address=127.0.0.1:{self.sst_port}",
                    f'wsrep_provider_options="{options}"',
                    "",
                ]
            )
        )

    def install(self) -> None:
        subprocess.run(
            [
                INSTALL_DB,
                "--no-defaults",
                "--user=mysql",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--innodb-log-file-size=8M",
                "--innodb-buffer-pool-size=16M",
                "--skip-name-resolve",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start mariadbd and wait (bounded) until the node is Synced."""
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is already running"
        self.datadir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.datadir, "mysql", "mysql")
        log = open(self.dir / "stdout.log", "ab")
        try:
            self.proc = subprocess.Popen(
                [MARIADBD, f"--defaults-file={self.cnf}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.wait_for(lambda: self.status("wsrep_local_state") == "4", timeout, "Synced")

    def wait_for(self, cond, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: mariadbd exited ({self.proc.returncode}) waiting for {what}:\n{self.tail()}")
            try:
                if cond():
                    return
            except (subprocess.SubprocessError, OSError, RuntimeError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: not {what} after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.errlog.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no error log)"

    def sql(self, query: str, timeout: float = 20) -> str:
        """Run SQL as root through the socket (unix_socket authentication)."""
        r = subprocess.run(
            [CLIENT, "--no-defaults", f"--socket={self.socket}", "--batch", "--skip-column-names", "--connect-timeout=5"],
            input=query,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: {query!r}: {r.stderr.strip()}")
        return r.stdout

    def status(self, name: str) -> str | None:
        out = self.sql(f"SHOW GLOBAL STATUS LIKE '{name}'", timeout=5)
        for line in out.splitlines():
            key, _, value = line.partition("\t")
            if key == name:
                return value
        return None

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused and self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM by pid, bounded wait, SIGKILL; then whatever is left in
        the node's own process group (an SST's rsync) by the group's id."""
        if self.proc is None:
            return
        pid = self.proc.pid
        if self.proc.poll() is None:
            self.resume()
            os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.proc.wait(10)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Cluster:
    """`size` nodes on 127.0.0.1; `base` holds everything (removed by stop())."""

    def __init__(self, size: int = 2, name: str = "cctest"):
        self.base = Path(tempfile.mkdtemp(prefix="ccg-", dir="/tmp"))
        os.chmod(self.base, 0o755)  # the mysql user and the probe's user traverse it
        self.nodes = [Node(self.base, f"n{i + 1}", name) for i in range(size)]
        for node in self.nodes:
            node.dir.mkdir()
            os.chmod(node.dir, 0o755)
            shutil.chown(node.dir, "mysql", "mysql")  # socket, pid file, error log

    def start(self) -> None:
        first = self.nodes[0]
        first.write_config([])  # gcomm:// : bootstrap a new cluster
        first.install()
        first.start()
        for node in self.nodes[1:]:
            node.write_config([first])  # empty datadir: the data comes by SST
            node.start()
        # a node restarted later joins through every other node
        for node in self.nodes:
            node.write_config([n for n in self.nodes if n is not node])

    def stop(self) -> None:
        errors = []
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{node.name}: {exc}")
        if not any(n.proc is not None and alive(n.proc.pid) for n in self.nodes):
            shutil.rmtree(self.base, ignore_errors=True)
        if errors:
            raise RuntimeError("; ".join(errors))

    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes if n.pid is not None]
