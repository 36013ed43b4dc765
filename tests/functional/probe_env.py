"""Install the rendered probe into a scratch directory and serve it the way
a database server does: files from `lb_probe.render_probe` with their modes
and owners (the probe program rendered from the state tree by Salt's Jinja,
as file.managed does), xinetd started on them, HAProxy in front.  Every daemon started
here is recorded by pid and stopped by that pid."""

from __future__ import annotations

import copy
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import netaddr

import lb_probe
import lb_render_haproxy
from tests.support import render_state_file

PROBE_USER = "nobody"  # an unprivileged account every Debian has
PROBE_GROUP = "nogroup"
XINETD = shutil.which("xinetd") or "/usr/sbin/xinetd"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


class Install:
    """The probe's files for one node, as the SLS lays them down."""

    def __init__(self, model: dict, node, base: Path, bind: str, pair: str = "edge"):
        self.node = node
        self.bind = bind
        self.dir = base / f"probe-{node.name}"
        self.dir.mkdir(mode=0o755)
        self.probe = str(self.dir / "clustercheck")
        self.config = str(self.dir / "clustercheck.cnf")
        self.maintenance_file = str(self.dir / "maintenance")
        self.xinetd_dir = self.dir / "xinetd.d"
        self.overrides = {
            "probe": self.probe,
            "config": self.config,
            "xinetd_service": str(self.xinetd_dir / "clustercheck"),
            "user": PROBE_USER,
            "group": PROBE_GROUP,
            "socket": node.socket,
            "bind": bind,
            "maintenance_file": self.maintenance_file,
        }
        self.files = lb_probe.render_probe(model, pair, "Debian", self.overrides)
        self.port = model["pairs"][pair]["galera_probe"]["port"]
        for path, f in self.files.items():
            write(path, render_state_file(f.source, f.context) if f.source else f.content, f.mode, f.user, f.group)

    def variant(self, name: str, **settings) -> str:
        """Another option file beside the real one, with [clustercheck]
        settings changed (the client's part unchanged)."""
        lines = []
        for line in Path(self.config).read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if key in settings:
                line = f"{key} = {settings[key]}"
            lines.append(line)
        path = str(self.dir / f"{name}.cnf")
        write(path, "\n".join(lines) + "\n", "0600", PROBE_USER, PROBE_GROUP)
        return path


def write(path: str, content: str, mode: str, user: str, group: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(content)
    os.chmod(path, int(mode, 8))
    shutil.chown(path, user, group)


def ask(install: Install, request: bytes = b"", config: str | None = None, timeout: float = 20.0) -> tuple[bytes, float]:
    """Run the probe the way xinetd does (the connection on stdin, stdout and
    stderr, as the probe's user) and read its answer: (bytes, seconds to EOF)."""
    ours, theirs = socket.socketpair()
    pw = pwd.getpwnam(PROBE_USER)
    argv = [install.probe] + (["--config", config] if config else [])
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=theirs, stdout=theirs, stderr=theirs, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env={}, cwd="/"
    )
    theirs.close()
    try:
        if request:
            ours.sendall(request)
        data = read_all(ours, t0 + timeout)
        elapsed = time.monotonic() - t0
    finally:
        ours.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return data, elapsed


def read_all(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no EOF from the probe; got {data!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def http_get(
    host: str, port: int, source: str | None = None, request: bytes = b"GET / HTTP/1.1\r\nHost: db\r\n\r\n", timeout: float = 15.0
) -> bytes:
    """One request over TCP, optionally from a given source address."""
    sock = socket.socket()
    try:
        if source:
            sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect((host, port))
        if request:
            sock.sendall(request)
        return read_all(sock, time.monotonic() + timeout)
    finally:
        sock.close()


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def stop_pid(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Xinetd:
    """xinetd serving one install's rendered service file (and nothing else)."""

    def __init__(self, install: Install, service_text: str | None = None, name: str = "xinetd", port: int | None = None):
        self.install = install
        self.bind = install.bind
        self.port = port or install.port
        self.dir = install.dir / name
        self.dir.mkdir(mode=0o755)
        self.conf = self.dir / "xinetd.conf"
        self.log = self.dir / "xinetd.log"
        self.pidfile = self.dir / "xinetd.pid"
        services = self.dir / "xinetd.d"
        services.mkdir(mode=0o755)
        text = service_text if service_text is not None else (install.xinetd_dir / "clustercheck").read_text()
        (services / "clustercheck").write_text(text)
        # FILE logging: no syslog here; the service file's own log_on_* apply
        self.conf.write_text(f"defaults\n{{\n    log_type = FILE {self.log}\n}}\nincludedir {services}\n")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> None:
        out = open(self.dir / "stderr.log", "ab")
        try:
            self.proc = subprocess.Popen(
                [XINETD, "-f", str(self.conf), "-pidfile", str(self.pidfile), "-dontfork", "-filelog", str(self.dir / "xinetd-debug.log")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        finally:
            out.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xinetd exited ({self.proc.returncode}): {self.diagnostics()}")
            try:
                with socket.create_connection((self.bind, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"xinetd does not listen on {self.bind}:{self.port}: {self.diagnostics()}")

    def diagnostics(self) -> str:
        parts = []
        for name in ("stderr.log", "xinetd-debug.log", "xinetd.log"):
            p = self.dir / name
            if p.exists():
                parts.append(f"{name}: {p.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is None:
            return
        kids = children(self.proc.pid)
        stop_pid(self.proc)
        # probes still answering when xinetd went: bounded wait, then by pid
        end = time.monotonic() + 5
        for pid in kids:
            while time.monotonic() < end:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def haproxy_listener(
    model: dict,
    pool_name: str,
    listen_port: int,
    servers: list[dict],
    check: dict | None = None,
    timers: dict | None = None,
    name: str = "galera",
) -> str:
    """A Galera listener rendered by lb_render from the pillar's pool, moved
    to loopback: its servers replaced by `servers` ({name, port, check_addr,
    backup}), optionally another check and faster timers."""
    pair = model["pairs"]["edge"]
    pool = copy.deepcopy(pair["haproxy"]["pools"][pool_name])
    lst = next(copy.deepcopy(lst) for lst in pair["haproxy"]["listeners"].values() if lst["pool"] == pool_name)
    lst.update(vip=netaddr.IPAddress("127.0.0.1"), port=listen_port, name=name)
    if check is not None:
        pool["check"] = dict(check, port=pool["check"]["port"])
    pool["default_server"].update(timers or {})
    pool["servers"] = {
        s["name"]: {
            "name": s["name"],
            "address": netaddr.IPAddress("127.0.0.1"),
            "port": s["port"],
            "backup": s["backup"],
            "check": True,
            "weight": None,
            "disabled": False,
        }
        for s in servers
    }
    lines = lb_render_haproxy.listener_lines(lst, pool)
    addr = {s["name"]: s["check_addr"] for s in servers}
    out = []
    for line in lines:
        words = line.split()
        if words[0] == "server" and addr.get(words[1]):
            # each probe listens on its own loopback address: checks go there
            line += f" addr {addr[words[1]]}"
        out.append(line)
    return f"listen {name}\n" + "\n".join("    " + line for line in out) + "\n"


class Haproxy:
    def __init__(self, base: Path, listeners: list[str]):
        self.dir = base / "haproxy"
        self.dir.mkdir(mode=0o755, exist_ok=True)
        self.socket = str(self.dir / "admin.sock")
        self.cfg = self.dir / "haproxy.cfg"
        self.cfg.write_text(
            "global\n"
            f"    stats socket {self.socket} mode 600 level admin\n"
            "    log stdout format raw local0 info\n"
            "\n"
            "defaults\n"
            "    mode tcp\n"
            "    log global\n"
            "    timeout connect 2s\n"
            "    timeout client 30s\n"
            "    timeout server 30s\n"
            "    timeout check 3s\n"
            "\n" + "\n".join(listeners)
        )
        self.proc: subprocess.Popen | None = None

    def check(self) -> subprocess.CompletedProcess:
        return subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True, text=True, timeout=30)

    def start(self) -> None:
        out = open(self.dir / "haproxy.log", "ab")
        try:
            self.proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(self.cfg)], stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        finally:
            out.close()
        end = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"haproxy did not start: {(self.dir / 'haproxy.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def command(self, cmd: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.socket)
            s.sendall(cmd.encode() + b"\n")
            return read_all(s, time.monotonic() + 5).decode()

    def states(self, backend: str) -> dict:
        """{server: UP|DOWN|...} from `show stat`."""
        out = {}
        lines = self.command("show stat").splitlines()
        head = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(head, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row["status"]
        return out

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, signal.SIGTERM)
