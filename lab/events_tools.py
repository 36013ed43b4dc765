"""Helpers for the CARP event tests and bench/failover_events.py: a listener
on the lab master's event bus (every event with its arrival time), the
module setup (keepalived with per-host paths, the event path, HAProxy), and
a cut of the CARP (VRRP) traffic only between the two load balancers.

Every loop is bounded; every tc change is removed in a finally.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import threading
import time

import salt.config
import salt.utils.event

from lab import saltcfg
from lab.carp_tools import LAB_CARP, LBS, all_on, holders, user_port, wait_for

SETTLE = 15  # seconds, bound for a VIP move


class EventLog(threading.Thread):
    """Every event on the lab master's bus, as (arrival time, tag, data).
    Bounded: stops after max_seconds."""

    def __init__(self, max_seconds: float = 600):
        super().__init__(daemon=True)
        self.max_seconds = max_seconds
        self.events: list[tuple[float, str, dict]] = []
        self._halt = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()

    def run(self):
        opts = salt.config.master_config(str(saltcfg.MASTER_DIR / "master"))
        with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True) as bus:
            bus.connect_pub(timeout=5)
            self._ready.set()
            end = time.monotonic() + self.max_seconds
            while not self._halt.is_set() and time.monotonic() < end:
                ev = bus.get_event(wait=0.2, full=True, no_block=False)
                if ev:
                    with self._lock:
                        self.events.append((time.time(), ev["tag"], ev.get("data") or {}))

    def __enter__(self):
        self.start()
        assert self._ready.wait(10), "could not listen on the lab master's event bus"
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self._halt.set()
        self.join(timeout=5)

    def matching(self, pattern: str, since: float = 0.0) -> list[tuple[float, str, dict]]:
        with self._lock:
            return [e for e in self.events if e[0] >= since and fnmatch.fnmatch(e[1], pattern)]

    def wait(self, pattern: str, count: int = 1, timeout: float = 30, since: float = 0.0) -> list[tuple[float, str, dict]]:
        """The first `count` events matching `pattern` (glob) after `since`;
        fewer when the timeout passes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(pattern, since)
            if len(found) >= count:
                return found[:count]
            time.sleep(0.05)
        return self.matching(pattern, since)

    def job_returns(self, fun: str, minion: str, since: float = 0.0) -> list[tuple[float, str, dict]]:
        return [e for e in self.matching(f"salt/job/*/ret/{minion}", since) if e[2].get("fun") == fun]


def flat(data: dict) -> dict:
    """An event's own data (salt-call event.send nests it under data)."""
    if data.get("cmd") == "_minion_event" and isinstance(data.get("data"), dict):
        return dict(data["data"], id=data.get("id"))
    return data


def salt_lbs(*args, timeout=180) -> dict:
    return saltcfg.salt_json("-L", ",".join(LBS), *args, timeout=timeout)


def salt_run(*args, timeout=120, out="json"):
    """`salt-run` against the lab master; parsed JSON, or the text."""
    cmd = [str(saltcfg.BIN / "salt-run"), "-c", str(saltcfg.MASTER_DIR), *args]
    if out:
        cmd.append(f"--out={out}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out == "json":
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(f"salt-run {' '.join(args)}: {proc.stdout}{proc.stderr}") from None
    return proc.stdout + proc.stderr


def apply(minion: str, mods: str, attempts: int = 12) -> dict:
    """state.apply on one minion, waiting (bounded) for a state run already
    in progress there (a reactor's, someone's highstate).  Salt 3008's
    queue=True returns at once without the result, so it is not used."""
    ret = None
    for _ in range(attempts):
        ret = saltcfg.salt_json(minion, "state.apply", mods, timeout=300).get(minion)
        if isinstance(ret, dict):
            return ret
        busy = isinstance(ret, list) and any("is running as PID" in str(x) for x in ret)
        if not busy and ret is not None:  # None: no answer yet (a minion still starting)
            break
        time.sleep(5)
    raise AssertionError(f"state.apply {mods} on {minion}: {ret}")


def _apply_lbs(mods: str) -> None:
    """state.apply mods on both LBs; fails with every state that failed."""
    for minion in LBS:
        states = apply(minion, mods)
        failed = {k: v.get("comment") for k, v in states.items() if v.get("result") is False}
        assert not failed, (minion, failed)


def setup_pair(provider: str = "keepalived") -> None:
    """Both LBs: per-host CARP paths (the lab's hosts share /var/lib and
    /usr/local/sbin), keepalived, the event path (hook and beacon) and
    HAProxy, all through the real states; then every VIP on lb-a."""
    saltcfg.wait_for_minions(list(LBS), timeout=60)
    for minion in LBS:
        saltcfg.sync_all(minion)
    salt_lbs("carp.absent")
    for minion in LBS:
        saltcfg.salt_json(minion, "grains.setval", "lb_settings", json.dumps({"carp": dict(LAB_CARP, provider=provider)}))
    saltcfg.sync_all("-L", ",".join(LBS))
    salt_lbs("sysctl.assign", "net.ipv4.ip_forward", "1")
    salt_lbs("carp.unmaintenance")
    _apply_lbs("carp,carp.events,haproxy")
    assert wait_for(lambda: all_on("lb-a"), SETTLE), "the VIPs did not settle on lb-a"


def teardown_pair() -> None:
    """The pair as the lab's highstate made it, settled on lb-a: this
    module's CARP paths and event path gone, the lab's own applied again
    (the next module starts from that, tests/lab/conftest.py)."""
    salt_lbs("carp.unmaintenance")
    salt_lbs("beacons.delete", "carp", "save=True")
    # the daemons' scripts stay: no event path left
    salt_lbs("file.remove", f"{LAB_CARP['script_dir']}/lb-carp-event")
    salt_lbs("file.remove", f"{LAB_CARP['script_dir']}/lb-carp-event.conf")
    salt_lbs("carp.absent")
    for minion in LBS:
        saltcfg.salt_json(minion, "grains.delkey", "lb_settings", "force=True")
    salt_lbs("saltutil.refresh_grains")  # in the minions' memory too
    saltcfg.sync_all("-L", ",".join(LBS))
    _apply_lbs("haproxy,carp,carp.events")
    assert wait_for(lambda: all_on("lb-a"), SETTLE), f"the VIPs did not settle on lb-a: {holders()}"


# ---------------------------------------------------------------------------
# CARP traffic cut between the two LBs


class VrrpDrop:
    """Drop VRRP (IP protocol 112) leaving each of `ports` (in network
    namespace `netns`, or this one), nothing else.  This kernel has no tc
    actions and no nftables, so the drop is an HTB class with a zero-length
    pfifo, selected by a u32 filter.  A context manager: whatever it added
    is removed on exit, also when adding failed half-way."""

    def __init__(self, ports, netns=None):
        self.ports, self.netns = list(ports), netns
        self.applied: list[str] = []

    def _tc(self, *args, check=True):
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        subprocess.run([*prefix, "tc", *args], check=check, timeout=10, capture_output=True)

    def __enter__(self):
        try:
            for port in self.ports:
                self.applied.append(port)
                self._tc("qdisc", "add", "dev", port, "root", "handle", "1:", "htb", "default", "1")
                self._tc("class", "add", "dev", port, "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit")
                self._tc("class", "add", "dev", port, "parent", "1:", "classid", "1:2", "htb", "rate", "8kbit")
                self._tc("qdisc", "add", "dev", port, "parent", "1:2", "handle", "20:", "pfifo", "limit", "0")
                match = ["u32", "match", "ip", "protocol", "112", "0xff", "flowid", "1:2"]
                self._tc("filter", "add", "dev", port, "parent", "1:", "protocol", "ip", "prio", "1", *match)
        except BaseException:
            self.restore()
            raise
        return self

    def restore(self):
        for port in self.applied:
            self._tc("qdisc", "del", "dev", port, "root", check=False)
        self.applied = []

    def __exit__(self, *exc):
        self.restore()


class VrrpCut(VrrpDrop):
    """VRRP cut between the lab's two LBs: dropped on its way from the user
    bridge to each LB (egress of the bridge-side ports), so each LB stops
    hearing the other's advertisements while both stay reachable."""

    def __init__(self, plan):
        super().__init__([user_port(plan, h) for h in LBS])
