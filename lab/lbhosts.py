"""The load balancers as booted hosts (`python -m lab up --booted`).

In the default lab an LB is a Mininet host: a network namespace with a few
private directories and no init system.  With `--booted` each LB is a real
Debian 12 host booted by systemd under systemd-nspawn (the root is
lab/booted.py's, made from Debian's packages by mmdebstrap), running in the
network namespace of its Mininet host: the same veths, bridges, peers,
Galera cluster and salt-master as the default lab.

What the lab plays is what a provisioner and the cabling give a new host,
nothing else:
- the root: Debian's packages (lab/booted.py, PACKAGES), its hostname;
- the base address of each of its links, in /etc/network/interfaces
  (ifupdown, Debian's default; no route, no gateway);
- a salt-minion: the checkout's Salt (bound read-only with the checkout)
  under a systemd unit, enabled, pointed at the lab's master.

Everything else (routes, sysctls, HAProxy, keepalived or ucarp, BIRD, their
units and boot order) is the product's, applied by the master.

`reboot` power-cycles hosts: `systemctl reboot` inside (nspawn exits, as a
machine powers off), then the network namespace is reset to what it was at
power-on (no address, no route, no nftables ruleset, the sysctls as
recorded before the first boot: what a real reboot resets, since the
Mininet host's namespace outlives its container), and a new nspawn boots
the same root.  Every process of the old boot is gone with its nspawn; /run
and /tmp start empty (nspawn's tmpfs, Debian's tmpfiles).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import yaml

from lab import REPO, booted, saltcfg, state

BOOT_TIMEOUT = 90.0  # seconds from power-on to `systemctl is-system-running` saying the boot is over
POWER_OFF_TIMEOUT = 60.0  # seconds for `systemctl reboot` to end the nspawn, else the power is cut
MINION_UNIT = "lab-salt-minion.service"

# Run in the host's network namespace (python3 there is this machine's):
# every writable, readable sysctl under /proc/sys/net as {path: value}.
_SNAPSHOT = r"""
import json, os
out = {}
for top, dirs, files in os.walk("/proc/sys/net"):
    for name in files:
        path = os.path.join(top, name)
        if not os.access(path, os.R_OK | os.W_OK):
            continue
        try:
            with open(path) as fh:
                out[path] = fh.read()
        except OSError:
            pass
print(json.dumps(out))
"""
# The reverse: write them back (what fails to write, e.g. a value the
# kernel derives, is counted, not fatal).
_RESTORE = r"""
import json, sys
failed = 0
for path, value in json.load(sys.stdin).items():
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError:
        failed += 1
print(failed)
"""


def root_of(name: str):
    return state.HOSTS_DIR / name / "root"


def _console(name: str):
    return state.HOSTS_DIR / name / "console.log"


def _snapshot_file(name: str):
    return state.HOSTS_DIR / name / "power-on-sysctl.json"


# -- provisioning ----------------------------------------------------------
def interfaces_text(host) -> str:
    """/etc/network/interfaces: the base address of each link, nothing else."""
    lines = ["# The provisioner's base addresses (lab/lbhosts.py); nothing else.", "auto lo", "iface lo inet loopback", ""]
    for intf in host.interfaces:
        lines += [f"auto {intf.device}", f"iface {intf.device} inet static", f"    address {intf.address}", ""]
    return "\n".join(lines)


def minion_unit() -> str:
    return (
        "[Unit]\n"
        "Description=Salt minion (the lab's provisioner: the checkout's Salt, bound read-only)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart={saltcfg.BIN / 'salt-minion'} -c /etc/salt -l warning\n"
        "KillMode=process\n"
        "Restart=on-failure\n"
        "RestartSec=2\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def provision(host, master_ip: str, pristine: str) -> None:
    """A fresh copy of the pristine root with the provisioner's files."""
    root = root_of(host.name)
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    booted._run(["cp", "-a", "--reflink=auto", pristine, str(root)])
    (root / "etc" / "hostname").write_text(host.name + "\n")
    (root / "etc" / "network" / "interfaces").write_text(interfaces_text(host))
    salt_etc = root / "etc" / "salt"
    salt_etc.mkdir(parents=True, exist_ok=True)
    (salt_etc / "minion").write_text(yaml.safe_dump(saltcfg.minion_options(host.minion_id, master_ip), sort_keys=False))
    unit = root / "etc" / "systemd" / "system" / MINION_UNIT
    unit.write_text(minion_unit())
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / MINION_UNIT
    if not link.is_symlink():
        link.symlink_to(f"/etc/systemd/system/{MINION_UNIT}")


# -- power -----------------------------------------------------------------
def nspawn_argv(name: str, netns_pid: int) -> list[str]:
    return [
        "systemd-nspawn", "--quiet", "-D", str(root_of(name)), "--boot", "--register=no", "--keep-unit",
        f"--machine={name}", f"--network-namespace-path=/proc/{netns_pid}/ns/net", "--console=passive",
        # the namespace is the host's own (as --private-network's would be),
        # which nspawn grants CAP_NET_ADMIN in only when it made it itself
        "--capability=CAP_NET_ADMIN",
        f"--bind-ro={REPO}", f"--bind-ro={booted.python_home()}",
    ]  # fmt: skip


def power_on(name: str, netns_pid: int) -> dict:
    """Start the host's nspawn (its own session) and return its record."""
    argv = nspawn_argv(name, netns_pid)
    with open(_console(name), "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # /proc/sys/net writable inside, as with --private-network (the
            # namespace is the host's own): systemd's docs/ENVIRONMENT.md
            env={**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"},
        )
    return state.record(proc.pid, group=True, host=name, cmd=argv, kind="nspawn")


def leader(rec: dict | None) -> int | None:
    """The host's PID 1 (systemd) as this machine sees it, while it runs."""
    if not state.alive(rec):
        return None
    return booted.find_init(rec["pid"])


def run(name: str, *argv: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
    """Run argv inside the booted host (all its namespaces)."""
    pid = leader(_record(name))
    if pid is None:
        raise LookupError(f"the booted host {name} is not running")
    return subprocess.run(booted.enter_argv(pid, argv), capture_output=True, text=True, timeout=timeout, check=check)


def wait_booted(name: str, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait until systemd in the host says the boot is over."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        rec = _record(name)
        if not state.alive(rec):
            raise RuntimeError(f"{name}: its nspawn exited while booting ({_tail(name)})")
        if leader(rec) is not None:
            seen = run(name, "systemctl", "is-system-running", timeout=20).stdout.strip()
            if seen in ("running", "degraded"):
                return seen
        time.sleep(0.2)
    raise RuntimeError(f"{name}: not booted after {timeout:.0f} s (system state {seen!r})")


def _record(name: str) -> dict | None:
    return ((state.load() or {}).get("daemons") or {}).get(f"host@{name}")


def _tail(name: str, n: int = 1500) -> str:
    try:
        return _console(name).read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""


# -- the network namespace at power-on ---------------------------------------
def _in_netns(netns_pid: int, argv: list[str], data: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nsenter", f"--net=/proc/{netns_pid}/ns/net", *argv], input=data, capture_output=True, text=True, timeout=60, check=False
    )


def snapshot(name: str, netns_pid: int) -> None:
    """Record the namespace's sysctls before the host's first boot."""
    res = _in_netns(netns_pid, [sys.executable, "-c", _SNAPSHOT])
    if res.returncode != 0:
        raise RuntimeError(f"{name}: reading its sysctls failed: {res.stderr.strip()}")
    _snapshot_file(name).parent.mkdir(parents=True, exist_ok=True)
    _snapshot_file(name).write_text(res.stdout)


def reset_network(name: str, netns_pid: int) -> None:
    """What a power cycle resets in the namespace the host boots in: no
    address on any link but lo's, no route in the main table, no neighbour,
    no nftables ruleset, and every sysctl as at power-on."""
    links = json.loads(_in_netns(netns_pid, ["ip", "-j", "link", "show"]).stdout or "[]")
    for link in links:
        if link.get("ifname") and link["ifname"] != "lo":
            _in_netns(netns_pid, ["ip", "addr", "flush", "dev", link["ifname"]])
    for argv in (["ip", "route", "flush", "table", "main"], ["ip", "neigh", "flush", "all"], ["nft", "flush", "ruleset"]):
        _in_netns(netns_pid, argv)
    res = _in_netns(netns_pid, [sys.executable, "-c", _RESTORE], data=_snapshot_file(name).read_text())
    if res.returncode != 0:
        raise RuntimeError(f"{name}: restoring its sysctls failed: {res.stderr.strip()}")


# -- reboot ------------------------------------------------------------------
def reboot(names: list[str], timeout: float = BOOT_TIMEOUT, while_off=None) -> dict[str, dict[str, float]]:
    """Power-cycle the booted hosts `names` together and return once each
    has booted.  `while_off()`, when given, runs while every one of them is
    off.  Returns {name: {"off", "power_on", "booted"}}: time.monotonic()
    of the moment its nspawn was seen gone, of its new nspawn's start, and
    of systemd saying its boot is over."""
    st = state.load() or {}
    booted_names = st.get("booted") or []
    for name in names:
        if name not in booted_names:
            raise LookupError(f"{name} is not a booted host of this lab (booted: {booted_names or 'none; up --booted'})")
    times: dict[str, dict[str, float]] = {name: {} for name in names}
    for name in names:
        run(name, "systemctl", "reboot", timeout=20)
    for name in names:
        _wait_gone(name)
        times[name]["off"] = time.monotonic()
    for name in names:
        reset_network(name, st["nodes"][name]["pid"])
    if while_off is not None:
        while_off()
    for name in names:
        times[name]["power_on"] = time.monotonic()
        _save_record(name, power_on(name, st["nodes"][name]["pid"]))
    for name in names:
        wait_booted(name, timeout)
        times[name]["booted"] = time.monotonic()
    return times


def _wait_gone(name: str) -> None:
    rec = _record(name)
    deadline = time.monotonic() + POWER_OFF_TIMEOUT
    while state.alive(rec) and time.monotonic() < deadline:
        time.sleep(0.1)
    if state.alive(rec):  # the power is cut
        state.stop([rec], grace=0, sig=signal.SIGKILL)
        deadline = time.monotonic() + 10
        while state.alive(rec) and time.monotonic() < deadline:
            time.sleep(0.1)
    if state.alive(rec):
        raise RuntimeError(f"{name}: its nspawn (pid {rec['pid']}) did not exit")


def _save_record(name: str, rec: dict) -> None:
    with state.locked():
        st = state.load() or {}
        st.setdefault("daemons", {})[f"host@{name}"] = rec
        state.save(st)
