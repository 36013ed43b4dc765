"""Real reboots in the lab (issue 15, item 4): the load balancers are Debian
hosts booted by systemd under nspawn (`python -m lab up --booted`,
lab/lbhosts.py), with the lab's salt-master, Galera cluster, routers and
client.  The salt-master is stopped for each whole reboot: what comes back
comes back by itself, from what the product set up.

- lb-a (the primary) rebooted: lb-b holds every VIP while lb-a is off;
  lb-a comes back with the pillar's routes, forwarding and HAProxy, and
  takes its VIPs back only after its HAProxy has started;
- the same for lb-b (lb-a keeps every VIP);
- both at once (a cold start of the pair);
- HAProxy killed (-9) on the MASTER: it serves again, or the peer holds the
  VIPs.

Throughout: the sampler never sees a VIP on both nodes, the client through
the HTTP VIP sees at most one outage in each direction, and no row the
client saw committed through the MySQL VIP is missing from the cluster.
Each reboot is a power cycle: no process of the old boot is left, and /run
and /tmp start empty.
Timings are printed (bench/ holds the targets), never asserted.
"""

from __future__ import annotations

import contextlib
import json
import re
import time

import pytest

from lab import LAB_DIR, control, lbhosts, saltcfg, state
from lab.carp_tools import LBS, VIPS, Client, Sampler, all_on, holders, wait_for
from lab.e2e import http_check
from lab.galera import APP_CNF
from lab.galera_tools import Galera, Writer

HTTP_VIP = "198.18.2.5"  # listener http_5: HAProxy on port 80 to the web pool
BOUND = 120.0  # seconds for the pair to settle after a reboot (a bound, not a target)
CLIENT_COUNT = 1400  # about 75 s of connects every 50 ms when all succeed
WRITER_COUNT = 300  # about 75 s of inserts every 200 ms


@pytest.fixture(scope="module")
def galera(lab):
    return Galera(lab.plan)


def _outages(results) -> list[float]:
    """The client's outages: from the last success before each run of
    failures to the first success after it."""
    out, last_ok, failing = [], None, False
    for t, ok, *_ in results:
        if ok:
            if failing and last_ok is not None:
                out.append(round(t - last_ok, 2))
            last_ok, failing = t, False
        else:
            failing = True
    if failing:
        out.append(float("inf"))  # never recovered
    return out


def _journal_monotonic(lab, host: str, pattern: str) -> float | None:
    """The first line of this boot's journal matching `pattern`: its
    monotonic time, else None."""
    out = lab.run(host, "journalctl", "-b", "-o", "short-monotonic", "--no-pager", timeout=30).stdout
    for line in out.splitlines():
        if re.search(pattern, line):
            m = re.match(r"\[\s*([0-9.]+)\]", line)
            if m:
                return float(m.group(1))
    return None


def _pillar_routes(lab) -> dict[str, str]:
    import yaml

    from lab import PILLAR

    pair = next(iter(yaml.safe_load(PILLAR.read_text())["lb"]["pairs"].values()))
    return {r["destination"]: r["gateway"] for r in pair["routes"].values()}


def _live_routes(lab, host: str) -> dict[str, str]:
    out = {}
    for line in lab.run(host, "ip", "-4", "route", "show", "table", "main").stdout.splitlines():
        w = line.split()
        if "via" in w:
            out[w[0]] = w[w.index("via") + 1]
    return out


def _came_back(lab, host: str, carp_unit: str | None = "keepalived") -> None:
    """What the product set up is there after the boot, without a master."""
    assert lab.run(host, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    assert lab.run(host, "sysctl", "-n", "net.ipv4.ip_nonlocal_bind").stdout.strip() == "1"
    live = _live_routes(lab, host)
    for dest, gw in _pillar_routes(lab).items():
        assert live.get(dest) == gw, f"{host}: route {dest} via {gw} not live after the boot: {live}"
    for unit in ["haproxy"] + ([carp_unit] if carp_unit else []):
        state = lab.run(host, "systemctl", "is-active", unit).stdout.strip()
        assert state == "active", f"{host}: {unit} is {state} after the boot"


MASTER_LINES = {
    "keepalived": r"Keepalived_vrrp.*Entering MASTER STATE",
    "ucarp": r"ucarp\[\d+\]: .*Switching to state: MASTER",
}


def _preempted_after_haproxy(lab, host: str, provider: str = "keepalived") -> None:
    """The CARP daemon on `host` became MASTER this boot only after systemd
    had started HAProxy (the seed's promise: serve before taking a VIP)."""
    started = _journal_monotonic(lab, host, r"systemd\[1\]: Started haproxy\.service")
    master = _journal_monotonic(lab, host, MASTER_LINES[provider])
    assert started is not None, f"{host}: no 'Started haproxy.service' in this boot's journal"
    assert master is not None, f"{host}: {provider} never became MASTER this boot"
    assert master > started, f"{host}: {provider} MASTER at {master} s, before HAProxy started at {started} s"


class _Load:
    """The client through the HTTP VIP, the writer through the MySQL VIP and
    the holder sampler, for one reboot."""

    def __init__(self, galera: Galera):
        self.galera = galera
        galera.sql("db-1", "TRUNCATE lab.writes")
        self.sampler = Sampler(every=0.05, max_seconds=300)
        self.sampler.start()
        self.client = Client(HTTP_VIP, count=CLIENT_COUNT, every=0.05, port=80, timeout=0.5)
        self.writer = Writer(str(APP_CNF), count=WRITER_COUNT, every=0.2)

    def abandon(self) -> None:
        """Stop everything at once (a test that failed before finish): no
        client, writer or sampler outlives its test."""
        for proc in (self.client.proc, self.writer.proc):
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        self.sampler.stop(check=False)

    def finish(self) -> dict:
        results = self.client.result()
        writes = self.writer.result()
        self.sampler.stop()
        committed = {w["seq"] for w in writes if w["ok"]}
        rows = {int(x) for x in self.galera.sql("db-1", "SELECT seq FROM lab.writes").split()}
        return {
            "outages": _outages(results),
            "overlaps": self.sampler.overlaps,
            "samples": self.sampler.samples,
            "lost": sorted(committed - rows),
            "committed": len(committed),
            "failed_writes": sum(1 for w in writes if not w["ok"]),
        }


@contextlib.contextmanager
def _without_master(load: _Load):
    """The salt-master stopped for the block and started again after it,
    whatever happened; the load abandoned when anything failed (the block
    or the master's start), so that nothing of it outlives the test."""
    control.stop_master()
    try:
        try:
            yield
        finally:
            control.start_master()
    except BaseException:
        load.abandon()
        raise


MARKERS = ("/run/lab-reboot-marker", "/tmp/lab-reboot-marker")


def _before_power_off(lab, hosts: list[str]) -> list[dict]:
    """Markers in /run and /tmp of each host, and its processes as this
    machine sees them ({pid, start, netns}: state.processes_in)."""
    for host in hosts:
        for marker in MARKERS:
            assert lab.run(host, "touch", marker).returncode == 0, (host, marker)
    st = state.load()
    namespaces = {st["nodes"][h]["netns"] for h in hosts}
    procs = state.processes_in(namespaces, exclude={st["nodes"][h]["pid"] for h in hosts})  # not the Mininet shells
    assert len(procs) > 5, procs
    return procs


def _power_cycled(lab, hosts: list[str], procs: list[dict]) -> None:
    """Every process of the old boot is gone; /run and /tmp start empty."""
    left = [p for p in procs if state.start_time(p["pid"]) == p["start"]]
    assert not left, f"processes of the old boot still run: {left}"
    for host in hosts:
        for marker in MARKERS:
            assert lab.run(host, "test", "-e", marker).returncode != 0, f"{host}: {marker} survived the reboot"


def _reboot_without_master(lab, galera, hosts: list[str], while_off) -> dict:
    """Reboot `hosts` with the master stopped, under load, and check it."""
    procs = _before_power_off(lab, hosts)
    load = _Load(galera)
    with _without_master(load):
        took = lbhosts.reboot(hosts, while_off=while_off)
        _power_cycled(lab, hosts, procs)
        assert wait_for(lambda: all_on("lb-a"), BOUND), f"lb-a does not hold every VIP {BOUND:.0f} s after the reboot: {holders()}"
        served = wait_for(lambda: http_check(HTTP_VIP).ok, 30, every=1)
        assert served, "the HTTP VIP does not serve after the reboot"
    report = load.finish()
    report["booted_after"] = {name: round(t["booted"] - t["power_on"], 1) for name, t in took.items()}
    print(f"reboot {hosts}: {report['booted_after']}; outages {report['outages']} s; "
          f"{report['committed']} rows committed, {report['failed_writes']} writes failed")  # fmt: skip
    assert report["samples"] > 100
    if report["overlaps"]:
        pytest.fail(f"a VIP on both nodes: {report['overlaps'][:5]}; the nodes' logs: {_overlap_evidence(lab, report['overlaps'])}")
    assert not report["lost"], f"committed rows missing from the cluster: {report['lost']}"
    assert report["committed"] > 0
    return report


def test_the_primary_rebooted_without_a_master(lab, galera):
    seen = {}

    def while_off():
        seen["peer"] = wait_for(lambda: all_on("lb-b"), 15)

    report = _reboot_without_master(lab, galera, ["lb-a"], while_off)
    assert seen["peer"], "lb-b did not hold every VIP while lb-a was off"
    assert len(report["outages"]) <= 2, f"more than one outage each way: {report['outages']}"
    _came_back(lab, "lb-a")
    _preempted_after_haproxy(lab, "lb-a")


def test_the_peer_rebooted_without_a_master(lab, galera):
    seen = {}

    def while_off():
        seen["primary"] = all_on("lb-a")

    report = _reboot_without_master(lab, galera, ["lb-b"], while_off)
    assert seen["primary"], "lb-a did not keep every VIP while lb-b was off"
    assert report["outages"] == [], f"the client saw outages while only the peer rebooted: {report['outages']}"
    _came_back(lab, "lb-b")


def test_a_cold_start_of_the_pair_without_a_master(lab, galera):
    seen = {}

    def while_off():
        seen["held"] = {v: h for v, h in holders().items() if h}

    report = _reboot_without_master(lab, galera, list(LBS), while_off)
    assert seen["held"] == {}, f"a VIP held while both nodes were off: {seen['held']}"
    assert len(report["outages"]) <= 2, f"more than one outage each way: {report['outages']}"
    for host in LBS:
        _came_back(lab, host)
    _preempted_after_haproxy(lab, "lb-a")


def test_haproxy_killed_on_the_master_without_a_master(lab, galera):
    """kill -9 of HAProxy's master process on lb-a: systemd starts it again,
    or keepalived's track script gives the VIPs to lb-b; either way the
    client is served again, with no salt-master to help."""
    load = _Load(galera)
    with _without_master(load):
        pid = lab.run("lb-a", "systemctl", "show", "--property=MainPID", "--value", "haproxy").stdout.strip()
        assert pid.isdigit() and int(pid) > 0, pid
        lab.run("lb-a", "kill", "-9", pid)
        assert wait_for(lambda: http_check(HTTP_VIP).ok, 60, every=0.5), "the HTTP VIP does not serve after HAProxy's kill"
        new = lab.run("lb-a", "systemctl", "show", "--property=MainPID", "--value", "haproxy").stdout.strip()
        assert wait_for(lambda: lab.run("lb-a", "systemctl", "is-active", "haproxy").stdout.strip() == "active", 60)
        assert new != pid
        assert wait_for(lambda: all_on("lb-a"), BOUND), f"lb-a does not hold every VIP again: {holders()}"
    report = load.finish()
    print(f"HAProxy -9 on lb-a: outages {report['outages']} s; {report['committed']} rows committed")
    assert not report["overlaps"], f"a VIP on both nodes: {report['overlaps'][:5]}"
    assert not report["lost"], f"committed rows missing from the cluster: {report['lost']}"
    assert len(report["outages"]) <= 2, f"more than one outage each way: {report['outages']}"
    assert all(v in VIPS for v in holders())


def _apply(lab, *args) -> None:
    """state.apply on both nodes; every state succeeded."""
    for minion, ret in saltcfg.apply(list(LBS), *args).items():
        assert isinstance(ret, dict), (minion, ret)
        failed = {k: v.get("comment") for k, v in ret.items() if isinstance(v, dict) and v.get("result") is False}
        assert not failed, (minion, failed)


def _provider(lab, provider: str | None) -> None:
    """Switch both nodes' CARP provider by the per-minion override (None:
    back to the pillar's), as an operator would: carp.absent, the grain,
    then the highstate."""
    lab.salt("-L", ",".join(LBS), "carp.absent")
    for minion in LBS:
        if provider:
            lab.salt(minion, "grains.setval", "lb_settings", json.dumps({"carp": {"provider": provider}}))
        else:
            lab.salt(minion, "grains.delkey", "lb_settings", "force=True")
    lab.salt("-L", ",".join(LBS), "saltutil.refresh_grains")
    saltcfg.sync_all("-L", ",".join(LBS))
    _apply(lab)


def test_the_primary_rebooted_with_ucarp_without_a_master(lab, galera):
    """The pair switched to ucarp (lb-ucarp@.service per group), then lb-a
    rebooted with the salt-master stopped: as with keepalived, and
    keepalived does not come back at boot."""
    _provider(lab, "ucarp")
    try:
        assert wait_for(lambda: all_on("lb-a"), BOUND), f"ucarp: the pair did not settle on lb-a: {holders()}"
        seen = {}

        def while_off():
            seen["peer"] = wait_for(lambda: all_on("lb-b"), 20)

        report = _reboot_without_master(lab, galera, ["lb-a"], while_off)
        assert seen["peer"], "lb-b did not hold every VIP while lb-a was off"
        assert len(report["outages"]) <= 2, f"more than one outage each way: {report['outages']}"
        units = lab.run("lb-a", "systemctl", "list-units", "--state=active", "--plain", "--no-legend", "lb-ucarp@*").stdout
        assert len(units.splitlines()) == len(VIPS), units
        assert lab.run("lb-a", "systemctl", "is-active", "keepalived").stdout.strip() != "active"
        _came_back(lab, "lb-a", carp_unit=None)  # ucarp: one unit per group, above
        _preempted_after_haproxy(lab, "lb-a", provider="ucarp")
    finally:
        _provider(lab, None)
    assert wait_for(lambda: all_on("lb-a"), BOUND), f"keepalived again: the pair did not settle on lb-a: {holders()}"


def _overlap_evidence(lab, overlaps) -> str:
    """Both nodes' journals from 30 s before the first overlap, their CARP
    state files and the overlaps, in .lab/: the path.  (How the ucarp
    reboot's overlap was found: ucarp without --shutdown left its VIPs on
    the node shutting down.)"""
    first = min(t for t, _vip, _nodes in overlaps)
    out = [f"overlaps (epoch, vip, holders): {overlaps}"]
    for host in LBS:
        j = lab.run(host, "journalctl", "-o", "short-unix", "--no-pager", f"--since=@{int(first) - 30}", timeout=30).stdout
        out += [f"--- {host} ---", j]
        out += [f"--- {host} state files ---", lab.run(host, "sh", "-c", "grep -H . /var/lib/lb-carp/state/* 2>&1").stdout]
    path = LAB_DIR / f"overlap-{int(time.time())}.log"
    path.write_text("\n".join(out))
    return str(path)
