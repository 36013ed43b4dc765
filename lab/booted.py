"""Booted hosts: a Debian 12 root that boots systemd under systemd-nspawn.

The Mininet lab's hosts are network namespaces with no init system: what a
host does at boot cannot be seen there.  Here a load-balancer node is a
real Debian 12 host booted by systemd (`systemd-nspawn --boot`), made from
Debian's own packages by `mmdebstrap`, and joined by a veth to a bridge in a
network namespace of its own (nothing leaves it).

What the lab plays here is what a provisioner and the cabling provide, and
nothing else:

- the root: Debian's packages (systemd, iproute2, ifupdown, python3, and
  the daemons the product configures: haproxy, keepalived, ucarp), as
  `apt-get install` would leave them, the packages' own units enabled;
- the base address of the node's one interface, `host0`, in
  /etc/network/interfaces (ifupdown, Debian's default);
- the client: an address on the bridge and an HTTP server behind the pair.

Everything else (sysctls, HAProxy's and keepalived's files, their units and
boot order) is applied by the product with `salt-call --local state.apply`
run inside the booted host, with the checkout's Salt and modules bound
read-only into it.  A reboot is a real one: `systemctl reboot` in the host
ends its nspawn, and a new nspawn boots the same root in a fresh network
namespace (addresses, routes, VIPs and sysctls start from nothing, as on
real hardware); /run and /tmp are emptied by the boot itself.

The root is built once and cached under `.lab/boot/` by the hash of its
package list and of this recipe; each node boots a copy of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(REPO, ".lab", "boot")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "ifupdown",
    "procps",
    "python3",
    "haproxy",
    "keepalived",
    "nftables",
    "ucarp",
    "bird2",
)
# the recipe's version: change it when build_root() changes what it makes
RECIPE = 1
BOOT_TIMEOUT = 60.0
CMD_TIMEOUT = 300.0


class BootError(RuntimeError):
    pass


class SaltError(BootError):
    """A salt-call inside a booted host failed, or a state did."""


def _run(argv, timeout=CMD_TIMEOUT, check=True, **kw):
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and res.returncode != 0:
        raise BootError(f"{' '.join(argv)} exited {res.returncode}:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return res


def available() -> str | None:
    """None when booted hosts can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("mmdebstrap", "systemd-nspawn", "nsenter", "ip"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make setup installs it)"
    return None


def root_key() -> str:
    text = json.dumps({"suite": SUITE, "packages": sorted(PACKAGES), "recipe": RECIPE}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_root() -> str:
    """The cached pristine root, built if its key changed."""
    path = os.path.join(CACHE, f"root-{root_key()}")
    if os.path.exists(os.path.join(path, ".complete")):
        return path
    os.makedirs(CACHE, exist_ok=True)
    for old in os.listdir(CACHE):
        if old.startswith("root-") and old != os.path.basename(path):
            shutil.rmtree(os.path.join(CACHE, old), ignore_errors=True)
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    argv = ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, tmp, MIRROR]
    _run(argv, timeout=900)
    shutil.rmtree(path, ignore_errors=True)
    os.rename(tmp, path)
    with open(os.path.join(path, ".complete"), "w") as fh:
        fh.write(root_key() + "\n")
    return path


def python_home() -> str:
    """The installation the checkout's venv runs on (bound into the host
    read-only, with the checkout, so salt-call there is the checkout's)."""
    return os.path.realpath(sys.base_prefix)


def find_init(nspawn_pid: int) -> int | None:
    """The booted host's PID 1 (systemd) under an nspawn, as this machine
    sees it; None before it runs."""
    todo = [nspawn_pid]
    seen = 0
    while todo and seen < 64:
        pid = todo.pop(0)
        seen += 1
        try:
            with open(f"/proc/{pid}/comm") as fh:
                comm = fh.read().strip()
            if comm == "systemd" and pid != nspawn_pid:
                return pid
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    todo += [int(x) for x in fh.read().split()]
        except (OSError, ValueError):
            continue
    return None


def enter_argv(init_pid: int, argv, env: dict | None = None) -> list[str]:
    """argv run inside the booted host whose PID 1 is `init_pid` (all its
    namespaces), with a clean environment."""
    cmd = ["nsenter", "-t", str(init_pid), "-m", "-u", "-i", "-n", "-p", "--", "/usr/bin/env", "-i"]
    cmd.append("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    cmd += [f"{k}={v}" for k, v in (env or {}).items()]
    return cmd + list(argv)


class Node:
    """One booted host: its root (a copy of the pristine one), its address
    on the bridge, and the nspawn that runs it."""

    def __init__(self, pair: Pair, name: str, address: str):
        self.pair, self.name, self.address = pair, name, address
        self.root = os.path.join(pair.workdir, name)
        self.proc: subprocess.Popen | None = None
        self.boots = 0

    # -- provisioning ----------------------------------------------------
    def provision(self, pristine: str) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        _run(["cp", "-a", "--reflink=auto", pristine, self.root])
        with open(os.path.join(self.root, "etc", "hostname"), "w") as fh:
            fh.write(self.name + "\n")
        with open(os.path.join(self.root, "etc", "network", "interfaces"), "w") as fh:
            fh.write(
                "# The provisioner's base address (lab/booted.py); nothing else.\n"
                "auto lo\niface lo inet loopback\n\n"
                f"auto host0\niface host0 inet static\n    address {self.address}/{self.pair.prefix}\n"
            )
        os.makedirs(os.path.join(self.root, "etc", "salt"), exist_ok=True)

    # -- power -----------------------------------------------------------
    def boot(self) -> None:
        """Power on and return once systemd says the boot is over."""
        self.power_on()
        self.wait_booted()

    def power_on(self) -> float:
        """Start the host's nspawn and return at once: the time.monotonic()
        of power-on (the host's clock is this machine's: no time namespace)."""
        if self.proc and self.proc.poll() is None:
            raise BootError(f"{self.name} is already running")
        log = open(os.path.join(self.pair.workdir, f"{self.name}.console.log"), "ab")
        argv = [
            "nsenter", f"--net=/run/netns/{self.pair.switch}",
            "systemd-nspawn", "--quiet", "-D", self.root, "--boot", "--register=no", "--keep-unit",
            f"--machine={self.name}", f"--network-bridge={self.pair.bridge}", "--console=passive",
            f"--bind-ro={REPO}", f"--bind-ro={python_home()}",
        ]  # fmt: skip
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.boots += 1
        return t0

    def leader(self) -> int | None:
        """The host's PID 1 (systemd) as this machine sees it."""
        if not self.proc or self.proc.poll() is not None:
            return None
        return find_init(self.proc.pid)

    def run(self, *argv, check=True, timeout=CMD_TIMEOUT, env=None) -> subprocess.CompletedProcess:
        """Run argv inside the booted host (all its namespaces)."""
        pid = self.leader()
        if pid is None:
            raise BootError(f"{self.name} is not running")
        return _run(enter_argv(pid, argv, env), timeout=timeout, check=check)

    def wait_booted(self) -> str:
        """Wait until systemd says the boot is over (running or degraded)."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BootError(f"{self.name}: nspawn exited {self.proc.returncode} while booting ({self.console_tail()})")
            if self.leader() is not None:
                res = self.run("systemctl", "is-system-running", check=False, timeout=20)
                state = res.stdout.strip()
                if state in ("running", "degraded"):
                    return state
            time.sleep(0.2)
        raise BootError(f"{self.name}: not booted after {BOOT_TIMEOUT:.0f} s (system state {state!r})")

    def reboot(self) -> float:
        """`systemctl reboot` inside; nspawn exits (as a machine powers off)
        and is started again.  Returns the seconds the host was away."""
        t0 = time.monotonic()
        self.run("systemctl", "reboot", check=False, timeout=20)
        self._wait_exit(BOOT_TIMEOUT)
        self.boot()
        return time.monotonic() - t0

    def shutdown(self, how: str = "poweroff") -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.run("systemctl", how, check=False, timeout=20)
        self._wait_exit(BOOT_TIMEOUT)

    def _wait_exit(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Power cut: the nspawn and everything under it, by process group."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)

    def console_tail(self, n: int = 1500) -> str:
        try:
            with open(os.path.join(self.pair.workdir, f"{self.name}.console.log"), "rb") as fh:
                return fh.read()[-n:].decode(errors="replace")
        except OSError:
            return ""


class Pair:
    """Two booted hosts on one bridge in a network namespace of their own;
    the namespace holds the client's address (`.1`) too."""

    def __init__(self, workdir: str, tag: str, net: str = "10.99.0", prefix: int = 24, names=("lb-a", "lb-b")):
        self.workdir = workdir
        self.switch = f"lbboot-{tag}"
        self.bridge = "br0"
        self.net, self.prefix = net, prefix
        self.client = f"{net}.1"
        self.nodes = {n: Node(self, n, f"{net}.{i + 2}") for i, n in enumerate(names)}
        self.db: Database | None = None  # serving_pair(database=True)

    def __enter__(self) -> Pair:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self) -> None:
        pristine = build_root()
        _run(["ip", "netns", "add", self.switch])
        sw = ["ip", "-n", self.switch]
        _run([*sw, "link", "set", "lo", "up"])
        _run([*sw, "link", "add", self.bridge, "type", "bridge", "forward_delay", "0"])
        _run([*sw, "addr", "add", f"{self.client}/{self.prefix}", "dev", self.bridge])
        _run([*sw, "link", "set", self.bridge, "up"])
        for node in self.nodes.values():
            node.provision(pristine)

    def down(self) -> None:
        for node in self.nodes.values():
            try:
                node.shutdown()
            except (BootError, subprocess.SubprocessError, OSError):
                pass
            node.kill()
            shutil.rmtree(node.root, ignore_errors=True)  # a copy of the cached root, 275 MB
        _run(["ip", "netns", "del", self.switch], check=False)

    def in_switch(self, *argv, check=True, timeout=CMD_TIMEOUT) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", self.switch, *argv], check=check, timeout=timeout)


# -- the product inside a booted host -------------------------------------
VIP = "10.99.0.10"


def pillar(provider: str = "keepalived", ospf: bool = False) -> dict:
    """The pair's pillar: one VIP on the hosts' one interface, HTTP to the
    client's server (`.1:8080`); with `ospf`, BIRD announcing the VIP by
    OSPF on that interface (no router answers: BIRD runs, nothing more)."""
    data = {
        "lb": {
            "pairs": {
                "edge": {
                    "description": "a pair on booted Debian hosts (lab/booted.py)",
                    "networks": {"user": {"cidr": "10.99.0.0/24"}},
                    "nodes": {
                        "lb-a": {"hostname": "lb-a", "interfaces": {"vip": {"network": "user", "address": "10.99.0.2", "device": "host0"}}},
                        "lb-b": {"hostname": "lb-b", "interfaces": {"vip": {"network": "user", "address": "10.99.0.3", "device": "host0"}}},
                    },
                    "carp": {
                        "advbase": 1,
                        "backup_advskew": 100,
                        "preempt": True,
                        "linux_provider": provider,
                        "groups": {10: {"interface": "vip", "vip": f"{VIP}/24", "password": "bootpass10", "primary": "lb-a"}},
                    },
                    "sysctl": {"ip_forwarding": True},
                    "haproxy": {
                        "pools": {
                            "web": {"kind": "http", "servers": {"web-1": {"address": "10.99.0.1", "port": 8080}}},
                            "db": {"kind": "tcp", "servers": {"db-1": {"address": "10.99.0.1", "port": DB_PORT}}},
                        },
                        "listeners": {
                            "http_10": {"vhid": 10, "port": 80, "mode": "http", "balance": "roundrobin", "pool": "web"},
                            "mysql_10": {"vhid": 10, "port": DB_PORT, "mode": "tcp", "balance": "leastconn", "pool": "db"},
                        },
                    },
                }
            }
        }
    }
    if ospf:
        edge = data["lb"]["pairs"]["edge"]
        edge["routing"] = {"ospf": {"area": "0.0.0.0", "interfaces": {"vip": {}}}}
        for node in edge["nodes"].values():
            node["router_id"] = node["interfaces"]["vip"]["address"]
    return data


@contextlib.contextmanager
def serving_pair(workdir: str, tag: str, data: dict, database: bool = False):
    """A Pair booted, the product applied on both hosts by `salt-call
    --local` with `data` as the pillar, and the HTTP server behind it
    (`.1:8080` in the bridge's namespace) running, with `database` a MariaDB
    too (`pair.db`); all stopped on exit."""
    with Pair(workdir, tag) as pair:
        backend = subprocess.Popen(
            ["ip", "netns", "exec", pair.switch, "python3", "-m", "http.server", "8080", "--bind", pair.client],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pair.db = Database(pair) if database else None
        try:
            if pair.db:
                pair.db.start()
            for node in pair.nodes.values():
                provision_salt(node, data)
                node.boot()
            for node in pair.nodes.values():
                highstate(node)
            yield pair
        finally:
            backend.terminate()
            backend.wait(10)
            if pair.db:
                pair.db.stop()


def minion_config(node_id: str) -> dict:
    """A masterless minion on the checkout's states and modules (bound
    read-only into the host)."""
    return {
        "id": node_id,
        "file_client": "local",
        "file_roots": {"base": [os.path.join(REPO, "salt")]},
        "pillar_roots": {"base": ["/srv/pillar"]},
        "module_dirs": [os.path.join(REPO, "_modules")],
        "states_dirs": [os.path.join(REPO, "_states")],
        "grains_dirs": [os.path.join(REPO, "_grains")],
        "utils_dirs": [os.path.join(REPO, "_utils")],
        "beacons_dirs": [os.path.join(REPO, "_beacons")],
        "log_level_logfile": "warning",
    }


def provision_salt(node: Node, data: dict) -> None:
    """What a provisioner gives a minion: its config and the pillar (0600)."""
    etc = os.path.join(node.root, "etc", "salt")
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "minion"), "w") as fh:
        yaml.safe_dump(minion_config(node.name), fh)
    top = os.path.join(node.root, "srv", "pillar")
    os.makedirs(top, exist_ok=True)
    with open(os.path.join(top, "top.sls"), "w") as fh:
        fh.write("base:\n  '*':\n    - lb\n")
    path = os.path.join(top, "lb.sls")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        yaml.safe_dump(data, fh)


def _salt_call_path() -> str:
    """The salt-call of the venv running this when it is in the checkout
    (bound into the host): .venv, or .venv-salt3006 under `make test
    SALT=3006` (docs/install.md, "Salt versions"); .venv's otherwise."""
    prefix = os.path.realpath(sys.prefix)
    if prefix != os.path.realpath(sys.base_prefix) and prefix.startswith(os.path.realpath(REPO) + os.sep):
        return os.path.join(sys.prefix, "bin", "salt-call")
    return os.path.join(REPO, ".venv", "bin", "salt-call")


def salt_call(node: Node, *args, timeout=300) -> tuple[int, object]:
    """`salt-call --local` inside the host: (exit code, its return)."""
    res = node.run(
        _salt_call_path(),
        "--local",
        "--out=json",
        "--retcode-passthrough",
        *args,
        check=False,
        timeout=timeout,
    )
    try:
        out = json.loads(res.stdout)["local"]
    except (ValueError, KeyError):
        raise SaltError(
            f"salt-call {' '.join(args)} on {node.name} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        ) from None
    return res.returncode, out


def highstate(node: Node) -> dict:
    """The highstate, all but carp.events (the beacon needs a running minion
    and a master); the changes it made, by state id."""
    code, out = salt_call(node, "state.apply", 'exclude=[{"sls": "carp.events"}]')
    if not isinstance(out, dict):
        raise SaltError(f"{node.name}: state.apply returned {out!r}")
    failed = {k: v.get("comment") for k, v in out.items() if not v.get("result")}
    if code != 0 or failed:
        raise SaltError(f"{node.name}: state.apply exited {code}: {failed or out}")
    return {k: v["changes"] for k, v in out.items() if v.get("changes")}


def holds(node: Node, vip: str = VIP, device: str = "host0") -> bool:
    """Whether the node has the VIP now (False while it is down)."""
    pid = node.leader()
    if pid is None:
        return False
    res = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-4", "-o", "addr", "show", "dev", device],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return f" {vip}/" in res.stdout


# -- watching the pair -----------------------------------------------------
BOUND = 60.0  # seconds for anything to settle (a bound, not a timing target)
FETCH = f"import urllib.request; urllib.request.urlopen('http://{VIP}/', timeout=1).read()"


def wait(predicate, what: str, bound: float = BOUND, every: float = 0.2):
    """predicate()'s first true value within `bound` seconds, else
    BootError saying what did not happen."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise BootError(f"not within {bound:.0f} s: {what}")


def serves(pair: Pair) -> bool:
    """One HTTP request through the VIP from the client's namespace."""
    return pair.in_switch("python3", "-c", FETCH, check=False, timeout=10).returncode == 0


def settled(pair: Pair) -> bool:
    """lb-a (the primary) holds the VIP, lb-b does not, the client is served."""
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    return holds(a) and not holds(b) and serves(pair)


def active(node: Node, unit: str) -> bool:
    return node.run("systemctl", "is-active", unit, check=False).stdout.strip() == "active"


def started_at(node: Node, unit: str, prop: str = "ExecMainStartTimestampMonotonic") -> int:
    return int(node.run("systemctl", "show", f"--property={prop}", "--value", unit).stdout.strip() or 0)


def main_pid(node: Node, unit: str) -> int:
    return int(node.run("systemctl", "show", "--property=MainPID", "--value", unit).stdout.strip() or 0)


def boot_id(node: Node) -> str:
    return node.run("cat", "/proc/sys/kernel/random/boot_id").stdout.strip()


class Watch(threading.Thread):
    """Samples both hosts (lb-a, lb-b, lb-a: a VIP counts as on both only if
    lb-a had it at both reads around lb-b's) and asks the VIP over HTTP from
    the client, until stopped."""

    def __init__(self, pair: Pair):
        super().__init__(daemon=True)
        self.pair = pair
        self.overlaps, self.samples, self.failed, self.served = [], 0, 0, 0
        self.longest_gap, self.halt = 0.0, threading.Event()

    def run(self):
        a, b = self.pair.nodes["lb-a"], self.pair.nodes["lb-b"]
        deadline = time.monotonic() + 600
        last_ok = time.monotonic()
        first = holds(a)
        while not self.halt.is_set() and time.monotonic() < deadline:
            second = holds(b)
            third = holds(a)
            if first and second and third:
                self.overlaps.append(round(time.monotonic(), 3))
            first = third
            self.samples += 1
            ok = serves(self.pair)
            now = time.monotonic()
            if ok:
                self.served += 1
                self.longest_gap = max(self.longest_gap, now - last_ok)
                last_ok = now
            else:
                self.failed += 1

    def stop(self):
        self.halt.set()
        self.join(30)


# -- the database behind the pair ------------------------------------------
DB_PORT = 3306
DB_USER, DB_PASSWORD = "app", "boot-app-pw"  # the lab's own account (an option file, 0600)


class Database:
    """One MariaDB server (not Galera: the point is the load balancers'
    reboots) on the client's address in the bridge's namespace, behind the
    pair's MySQL listener; an `app` account for the load balancers'
    addresses and a table of sequence numbers.  Stopped by its pid."""

    def __init__(self, pair: Pair):
        self.pair = pair
        self.dir = os.path.join(pair.workdir, "db")
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mariadbd.sock")
        self.cnf = os.path.join(self.dir, "client.cnf")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        # as root: the test's directories (under pytest's 0700 tmp) are root's
        os.makedirs(self.datadir, exist_ok=True)
        _run(
            [
                "mariadb-install-db",
                "--no-defaults",
                "--user=root",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            timeout=120,
        )
        argv = [
            "ip", "netns", "exec", self.pair.switch, "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.datadir}",
            f"--socket={self.socket}", f"--bind-address={self.pair.client}", f"--port={DB_PORT}", "--user=root",
            "--skip-name-resolve", f"--log-error={self.dir}/error.log", f"--pid-file={self.dir}/mariadbd.pid",
            "--innodb-buffer-pool-size=16M",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait(lambda: os.path.exists(self.socket) and self.sql("SELECT 1").strip() == "1", "mariadbd answers", 60)
        net = self.pair.net + ".%"
        self.sql(
            "CREATE DATABASE IF NOT EXISTS lab; CREATE TABLE IF NOT EXISTS lab.t (seq INT PRIMARY KEY) ENGINE=InnoDB;"
            f" CREATE USER IF NOT EXISTS '{DB_USER}'@'{net}' IDENTIFIED BY '{DB_PASSWORD}'; GRANT ALL ON lab.* TO '{DB_USER}'@'{net}';"
        )
        with open(os.open(self.cnf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(f"[client]\nuser={DB_USER}\npassword={DB_PASSWORD}\n")

    def sql(self, query: str) -> str:
        res = _run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-N", "-B", "-e", query], check=False, timeout=30)
        if res.returncode != 0:
            raise BootError(f"mariadb: {query!r}: {res.stderr.strip()}")
        return res.stdout

    def rows(self) -> set[int]:
        return {int(x) for x in self.sql("SELECT seq FROM lab.t").split()}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


class Writer(threading.Thread):
    """INSERTs through the VIP's MySQL listener every 100 ms (a new
    connection each, the client's option file), until stopped: the sequence
    numbers the client saw committed, and those that failed."""

    def __init__(self, pair: Pair, db: Database, first: int):
        super().__init__(daemon=True)
        self.pair, self.db, self.seq = pair, db, first
        self.committed: list[int] = []
        self.failed: list[int] = []
        self.halt = threading.Event()

    def run(self):
        deadline = time.monotonic() + 600
        while not self.halt.is_set() and time.monotonic() < deadline:
            self.seq += 1
            res = self.pair.in_switch(
                "mariadb", f"--defaults-extra-file={self.db.cnf}", "-h", VIP, "-P", str(DB_PORT), "--connect-timeout=2",
                "-e", f"INSERT INTO lab.t VALUES ({self.seq})", check=False, timeout=15,
            )  # fmt: skip
            (self.committed if res.returncode == 0 else self.failed).append(self.seq)
            self.halt.wait(0.1)

    def stop(self) -> list[int]:
        """The committed sequence numbers the database does not have."""
        self.halt.set()
        self.join(30)
        return sorted(set(self.committed) - self.db.rows())
