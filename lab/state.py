"""`.lab/state.json`: everything the lab created, and the process helpers that use it.

Processes are recorded as {"pid", "start"} where `start` is the process's start
time from /proc (field 22), so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lab import LAB_DIR

STATE = LAB_DIR / "state.json"
HOSTS_DIR = LAB_DIR / "hosts"  # each host's private directories, web pages and logs


def load() -> dict | None:
    try:
        return json.loads(STATE.read_text())
    except FileNotFoundError:
        return None


def save(state: dict) -> None:
    """Write atomically: a reader never sees half a file."""
    STATE.parent.mkdir(parents=True, exist_ok=True)
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(STATE)


@contextlib.contextmanager
def locked():
    """Hold the record's lock while reading, changing and saving it from a
    process other than the supervisor (`python -m lab reboot`)."""
    STATE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(STATE.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove() -> None:
    STATE.unlink(missing_ok=True)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def record(pid: int, **extra) -> dict:
    return {"pid": pid, "start": start_time(pid), **extra}


def alive(rec: dict | None) -> bool:
    return bool(rec) and rec.get("start") is not None and start_time(rec["pid"]) == rec["start"]


def netns(pid: int) -> str | None:
    """The network namespace of a process, e.g. 'net:[4026532301]'."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def stop(recs: list[dict], grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Stop recorded processes by pid: send `sig` (SIGTERM) to each (to its
    whole process group: every process the lab starts leads its own group, so
    a daemon and its workers stop together), wait up to `grace` seconds, then
    SIGKILL what is left."""
    recs = [r for r in recs if r]
    for rec in recs:
        if alive(rec):
            _signal(rec, sig)
    deadline = time.monotonic() + grace
    while any(alive(r) for r in recs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for rec in recs:
        _signal(rec, signal.SIGKILL)


def _signal(rec: dict, sig: int) -> None:
    """Signal a recorded process, or the process group it leads.

    Linux never hands out pid N while a process group N exists, so if pid N is
    absent (or a zombie) any group N is still ours; if pid N is a different
    process now, group N is the stranger's and is left alone."""
    now = start_time(rec["pid"])
    if now is not None and now != rec["start"]:
        return
    try:
        if rec.get("group"):
            os.killpg(rec["pid"], sig)
        elif now is not None:
            os.kill(rec["pid"], sig)
    except (ProcessLookupError, PermissionError):
        pass


def lab_namespaces(state: dict) -> dict[str, str]:
    """{'net:[inode]': host} of every lab host (recorded at build time).
    Never this process's own namespace nor init's (the machine's): a record
    that named one of those would otherwise sweep the whole machine."""
    root = {netns(1), netns(os.getpid())}
    return {rec["netns"]: name for name, rec in state.get("nodes", {}).items() if rec.get("netns") and rec["netns"] not in root}


def processes_in(namespaces, exclude: set[int] = frozenset()) -> list[dict]:
    """Every live process whose network namespace is one of `namespaces`, as
    records ({pid, start, netns}), except the pids in `exclude`."""
    out = []
    for pid in _all_pids():
        if pid in exclude or pid == os.getpid():
            continue
        ns = netns(pid)
        if ns in namespaces:
            start = start_time(pid)
            if start is not None:
                out.append({"pid": pid, "start": start, "netns": ns})
    return out


def stop_namespaces(state: dict, grace: float = 10.0, keep_shells: bool = True) -> list[dict]:
    """Stop every process in a lab host's network namespace, by pid: what
    the supervisor started and what states started inside the hosts
    (haproxy, keepalived, ucarp, xinetd, mariadbd and their workers), which
    the record does not know.  SIGTERM to each, wait up to `grace` seconds,
    SIGKILL what is left (only a pid whose start time and namespace are
    still the ones seen).  The Mininet shells are kept while Mininet still
    has to unmount through them (`keep_shells`).  Returns what was found."""
    namespaces = lab_namespaces(state)
    if not namespaces:
        return []
    shells = {rec["pid"] for rec in state.get("nodes", {}).values() if rec} if keep_shells else set()
    found = processes_in(namespaces, exclude=shells)
    for rec in found:
        _signal_if_same(rec, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        _signal_if_same(rec, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_same(r) for r in found) and time.monotonic() < deadline:
        time.sleep(0.1)
    for rec in found:
        _signal_if_same(rec, signal.SIGKILL)
    # what a dying daemon started meanwhile (a worker forked at SIGTERM)
    late = processes_in(namespaces, exclude=shells)
    for rec in late:
        _signal_if_same(rec, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_same(r) for r in found + late) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found + late


def _same(rec: dict) -> bool:
    return start_time(rec["pid"]) == rec["start"] and netns(rec["pid"]) == rec["netns"]


def _signal_if_same(rec: dict, sig: int) -> None:
    if _same(rec):
        try:
            os.kill(rec["pid"], sig)
        except (ProcessLookupError, PermissionError):
            pass


def sweep(state: dict) -> None:
    """Remove whatever the lab still has on the machine, from its record alone:
    every process in a lab host's namespace, daemons and Mininet shells by
    pid, then bridges and root-side veths, then the mount points the lab
    created.  Idempotent; used by the supervisor after Mininet's own stop,
    and by `down` (which also covers a supervisor that died)."""
    stop(list(state.get("daemons", {}).values()), grace=10)
    stop_namespaces(state, grace=5)
    stop(list(state.get("nodes", {}).values()), grace=2, sig=signal.SIGHUP)
    stop_namespaces(state, grace=2, keep_shells=False)
    delete_interfaces(state.get("links", []) + state.get("bridges", []))
    remove_mountpoints(state)
    shutil.rmtree(HOSTS_DIR, ignore_errors=True)
    shutil.rmtree(LAB_DIR / "drill", ignore_errors=True)
    (LAB_DIR / "app.cnf").unlink(missing_ok=True)  # lab/galera.py's


def delete_interfaces(names: list[str]) -> list[str]:
    """Delete those of `names` that exist in this network namespace; return
    them.  `sweep` removes the recorded lab's with it; `up`, holding the
    machine's lab lock with no lab recorded, removes what an earlier lab
    left (another clone's, or one whose record was lost): Mininet would
    fail on the first name it finds taken ("RTNETLINK answers: File
    exists")."""
    removed = []
    for name in names:
        if Path("/sys/class/net", name).exists():
            subprocess.run(["ip", "link", "del", name], capture_output=True, timeout=10)
            removed.append(name)
    return removed


def remove_mountpoints(state: dict) -> None:
    """The empty directories the lab created on this machine as mount points
    for private directories (e.g. /etc/ucarp): removed once no host needs
    them, and only while empty (rmdir)."""
    if any(alive(rec) for rec in state.get("nodes", {}).values()):
        return
    for path in sorted(state.get("mountpoints", []), key=len, reverse=True):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            pass  # not empty: something else wrote there; leftovers() names it


def leftovers(state: dict) -> list[str]:
    """What of the recorded lab is still on the machine (empty when it is gone)."""
    left = []
    procs = {**state.get("daemons", {}), **state.get("nodes", {}), "supervisor": state.get("supervisor")}
    left += [f"process {name} pid {rec['pid']}" for name, rec in procs.items() if alive(rec)]
    left += [f"interface {n}" for n in state.get("links", []) + state.get("bridges", []) if Path("/sys/class/net", n).exists()]
    namespaces = lab_namespaces(state)
    for rec in processes_in(namespaces):
        left.append(f"namespace {rec['netns']} of {namespaces[rec['netns']]} (held by pid {rec['pid']})")
    left += [f"mount point {p}" for p in state.get("mountpoints", []) if os.path.lexists(p)]
    return left


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]
