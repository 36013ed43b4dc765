"""CARP events end to end, with the lab's real salt-master (its reactor
loaded from etc/salt/master.d/reactor.conf) and both LB minions running
keepalived, the carp beacon, the lb-carp-event hook and HAProxy:

- cutting the master's link fires MASTER events from the peer, the reactor's
  state.apply haproxy runs on the peer (in the job cache), `salt-run
  lb.status` shows the peer as MASTER, `lb.history` has the transitions;
- a plain crash of HAProxy on the MASTER moves the VIPs to the peer at
  once (keepalived's lb_serving check), the reactor's heal starts HAProxy
  again and the node preempts back;
- HAProxy that cannot start (another process holds one of its ports there)
  leaves the VIPs on the peer, and the heal says so;
- a split brain (VRRP dropped between the LBs, both reachable) fires
  lb/splitbrain/<pair>/<vhid>, the runner reports it, and it clears when
  the traffic is back.

Waits are bounds, not timings (bench/failover_events.py measures those).
"""

import json
import os
import signal
import subprocess
import time

import pytest

from lab import control, saltcfg, state
from lab.carp_tools import LBS, all_on, holders, link, user_port, wait_for
from lab.events_tools import SETTLE, EventLog, VrrpCut, apply, flat, salt_lbs, salt_run, setup_pair, teardown_pair

PAIR = "edge"
VHIDS = (4, 5, 44, 55)


@pytest.fixture(scope="module")
def pair(lab):
    master_cfg = (saltcfg.MASTER_DIR / "master").read_text()
    if "reactor/carp.sls" not in master_cfg:
        pytest.skip("the running lab's master predates the reactor config (lab/saltcfg.py): take the lab down and up again")
    setup_pair("keepalived")
    yield
    teardown_pair()


@pytest.fixture
def events(pair):
    with EventLog() as log:
        yield log


def _masters(view):
    return {g["vhid"]: g["master"] for g in view["pairs"][PAIR]["groups"]}


def reactor_jobs(events, since):
    """The jobs the reactor published for a MASTER event: the
    lb_failover.master_serves state (state.single, queued), to that node
    alone (a list target)."""
    return [
        (t, d)
        for t, _, d in events.matching("salt/job/*/new", since)
        if d.get("fun") == "state.single" and "lb_failover.master_serves" in json.dumps(d.get("arg")) and d.get("tgt_type") == "list"
    ]


def _haproxy(minion):
    return saltcfg.salt_json(minion, "haproxy_cfg.status")[minion]


def _back_to_lb_a():
    salt_lbs("carp.unmaintenance")
    assert wait_for(lambda: all_on("lb-a"), SETTLE + 5), holders()


def test_the_beacon_is_enabled_and_the_pair_is_healthy(pair):
    beacons = salt_lbs("beacons.list", "return_yaml=False")
    for minion in LBS:
        assert "carp" in beacons[minion], beacons
    view = salt_run("lb.status")
    assert _masters(view) == {v: "lb-a" for v in VHIDS}, view
    pv = view["pairs"][PAIR]
    assert pv["warnings"] == [], pv["warnings"]
    assert all(pv["nodes"][n]["haproxy"] == "running" for n in LBS)
    assert pv["servers"], "HAProxy's servers are listed"
    assert set(pv["listeners"]), "HAProxy's listeners are listed"
    table = salt_run("lb.status", out=None)
    assert "pair edge" in table and "MASTER" in table and "no warnings" in table, table


def test_link_cut_fires_master_events_from_the_peer_and_the_reactor_applies_haproxy_there(lab, events):
    port = user_port(lab.plan, "lb-a")
    t0 = time.time()
    try:
        link(port, up=False)
        got = events.wait("salt/beacon/lb-b/carp/*/MASTER", count=len(VHIDS), timeout=SETTLE + 10, since=t0)
        assert sorted(flat(d)["vhid"] for _, _, d in got) == sorted(VHIDS), [t for _, t, _ in events.matching("salt/beacon/*", t0)]
        for _, _tag, data in got:
            d = flat(data)
            assert d["new"] == "MASTER" and d["provider"] == "keepalived" and d["id"] == "lb-b"
            assert d["vip"].startswith("198.18.2.") and d["interface"]
        assert wait_for(lambda: all_on("lb-b"), SETTLE), holders()

        # the reactor's jobs: lb_failover.master_serves on lb-b, and on lb-b
        # only; one of them (the first; the others within 10 s do nothing)
        # applies the haproxy SLS there
        deadline = time.monotonic() + 120
        applied = []
        while time.monotonic() < deadline and not applied:
            for _, d in reactor_jobs(events, t0):
                for _, _, ret in events.matching(f"salt/job/{d['jid']}/ret/lb-b", t0):
                    states = ret.get("return") if isinstance(ret.get("return"), dict) else {}
                    applied += [s for s in states.values() if isinstance(s, dict) and "haproxy SLS applied" in str(s.get("comment"))]
            time.sleep(0.5)
        jobs = reactor_jobs(events, t0)
        assert [d for _, d in jobs if d["minions"] == ["lb-b"]], "the reactor published no lb_failover.master_serves for lb-b"
        # one node per job, by list: never a glob (a job for lb-a can follow
        # the setup's own transitions)
        assert all(len(d["minions"]) == 1 and d["tgt_type"] == "list" for _, d in jobs), jobs
        assert len(applied) == 1 and applied[0]["result"] is True, applied

        view = salt_run("lb.status")
        assert _masters(view) == {v: "lb-b" for v in VHIDS}, view
    finally:
        link(port, up=True)
    assert wait_for(lambda: all_on("lb-a"), SETTLE + 5), holders()
    back = events.wait("salt/beacon/lb-a/carp/*/MASTER", count=len(VHIDS), timeout=SETTLE, since=t0)
    assert len(back) == len(VHIDS)
    # every transition is on the master's record, once the lb_recorder
    # engine has had them confirmed (a round trip per batch)
    want = {(n, v) for n in LBS for v in VHIDS}
    recent = []

    def recorded():
        nonlocal recent
        recent = [r for r in salt_run("lb.history", "limit=0") if r["received"] >= t0 and r.get("new")]
        return {(r["node"], r["vhid"]) for r in recent if r["new"] == "MASTER"} >= want

    assert wait_for(recorded, 30), recent
    assert "-> MASTER" in salt_run("lb.history", out=None)


def _kill_haproxy(minion):
    st = _haproxy(minion)
    assert st["running"], st
    killed = [(pid, state.start_time(pid)) for pid in [st["master"], *st["workers"]]]
    for pid, _ in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # gone (the healer may already have started a new master: its pid differs)
    assert wait_for(lambda: all(state.start_time(pid) != start for pid, start in killed), 10), killed


def _queued_states(minion):
    """The state runs queued on the minion (Salt 3008's queue=True, the
    reactor's applies): files in its cache, which saltutil.running does not
    list until the minion starts them."""
    return sorted(p.name for p in (saltcfg.MINIONS_DIR / minion / "cache" / "queues").glob("*/state_queue/queued_*.p"))


def _job(job):
    """One saltutil.running entry, for a message: fun, jid, arg, pid, age,
    and the process's command line (the lab's hosts share this pid space)."""
    if not isinstance(job, dict):
        return repr(job)
    jid = str(job.get("jid", ""))
    try:
        age = f"{time.time() - time.mktime(time.strptime(jid[:14], '%Y%m%d%H%M%S')):.0f} s"
    except ValueError:
        age = "?"
    try:
        cmdline = open(f"/proc/{job.get('pid')}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmdline = "(gone)"
    return f"{job.get('fun')} jid={jid} arg={job.get('arg')} tgt={job.get('tgt')} pid={job.get('pid')} running for {age}: {cmdline}"


def _settled(minion, timeout=180):
    """Nothing runs or waits on the minion: the reactor's applies queued by
    an earlier test's transitions (one per group) have all run.  One of them
    would otherwise restart a killed HAProxy before the beacon sees it.
    Fails with what the minion still lists."""
    last = {}

    def idle():
        last["running"] = saltcfg.salt_json(minion, "saltutil.running").get(minion)
        last["queued"] = _queued_states(minion)
        return last["running"] == [] and not last["queued"]

    if wait_for(idle, timeout):
        return
    running = last["running"]
    jobs = "\n  ".join(_job(j) for j in running) if isinstance(running, list) else f"no answer: {running!r}"
    raise AssertionError(f"{minion} is not idle after {timeout} s.\nsaltutil.running:\n  {jobs}\nqueued state runs: {last['queued']}")


def test_a_reaction_queued_behind_a_state_run_still_applies_haproxy(lab, events):
    """The reactor's state.single is queued (queue=True) when the node is
    in a state run: it runs afterwards, and applies the haproxy SLS there.
    Salt 3008.4 passes such a queued job's publication as __pub_* keywords,
    which a state without **kwargs refused: the reaction then applied
    nothing, silently (seen in the minions' logs)."""
    stamp = saltcfg.MINIONS_DIR / "lb-b" / "cache" / "lb_node" / "on_master.stamp"
    before = stamp.stat().st_mtime if stamp.exists() else 0.0
    log = saltcfg.MINIONS_DIR / "lb-b" / "log"
    logged = log.stat().st_size
    t0 = time.time()
    # a state run on lb-b that lasts 8 s, not waited for
    busy = saltcfg.salt("--async", "lb-b", "state.single", "cmd.run", "name=sleep 8", timeout=60)
    assert busy.returncode == 0, busy.stdout + busy.stderr

    def running():
        jobs = saltcfg.salt_json("lb-b", "saltutil.running", timeout=30).get("lb-b") or []
        return any(j.get("fun") == "state.single" for j in jobs if isinstance(j, dict))

    assert wait_for(running, 30), "the 8 s state run did not start"
    try:
        ret = saltcfg.salt_json("lb-a", "carp.maintenance", timeout=120).get("lb-a")
        assert isinstance(ret, dict), ret
        assert wait_for(lambda: all_on("lb-b"), SETTLE), holders()
        assert wait_for(lambda: reactor_jobs(events, t0), 60, every=0.5), "the reactor published nothing for lb-b"
        # the queued reaction ran once the sleep was over, and applied
        assert wait_for(lambda: stamp.exists() and stamp.stat().st_mtime > max(before, t0 + 8), 90, every=1), (
            f"the haproxy SLS was not applied on lb-b after the state run: {log.read_text()[logged:][-2000:]}"
        )
        problems = [line for line in log.read_text()[logged:].splitlines() if "Problem executing" in line]
        assert problems == [], problems
    finally:
        _back_to_lb_a()


def test_a_crash_of_haproxy_is_healed_and_lb_a_serves_again(events):
    """HAProxy killed on the MASTER: the reactor's heal starts it again on
    lb-a, which ends holding every VIP; no demotion.  Whether the VIPs went
    to lb-b meanwhile is a race between the heal (seconds) and keepalived's
    lb_serving check (fall 2 with the lab's BGP: about 2 s), so it is not
    asserted here; test_carp_keepalived_pair.py shows the check alone moving
    them, and the next test shows it with HAProxy kept down."""
    assert wait_for(lambda: all_on("lb-a"), SETTLE), holders()
    _settled("lb-a")
    t0 = time.time()
    _kill_haproxy("lb-a")
    assert events.wait("salt/beacon/lb-a/carp/haproxy/DOWN", timeout=15, since=t0), "no haproxy/DOWN event"
    healed = events.wait("lb/haproxy/healed/lb-a", timeout=90, since=t0)
    assert healed, [t for _, t, _ in events.matching("lb/*", t0)]
    assert _haproxy("lb-a")["running"]
    assert wait_for(lambda: all_on("lb-a"), SETTLE + 5), holders()
    assert events.matching("lb/demoted/*", t0) == []


def _a_port(minion):
    """A TCP port HAProxy listens on in that host."""
    out = control.run(minion, "ss", "-Hltnp").stdout
    for line in out.splitlines():
        if "haproxy" in line:
            return int(line.split()[3].rsplit(":", 1)[1])
    raise AssertionError(f"HAProxy listens on nothing in {minion}:\n{out}")


def test_haproxy_that_cannot_start_leaves_the_vips_on_the_peer_and_says_so(events):
    """HAProxy killed on lb-a and its port taken by another process: the
    VIPs go to lb-b (lb_serving), the heal cannot start HAProxy and says so
    (lb/haproxy/heal-failed/lb-a, in the history); nothing is demoted, and
    lb-a takes its VIPs back once HAProxy runs there again."""
    assert wait_for(lambda: all_on("lb-a"), SETTLE), holders()
    _settled("lb-a")
    port = _a_port("lb-a")
    t0 = time.time()
    blocker = None
    try:
        _kill_haproxy("lb-a")
        # another process takes HAProxy's port on lb-a only
        blocker = subprocess.Popen(
            [
                "mnexec",
                "-a",
                str(control.host_pid("lb-a")),
                "python3",
                "-c",
                f"import socket, time; s = socket.socket(); s.bind(('0.0.0.0', {port})); s.listen(); time.sleep(300)",
            ],
            start_new_session=True,
        )
        assert wait_for(lambda: all_on("lb-b"), SETTLE), holders()
        failed = events.wait("lb/haproxy/heal-failed/lb-a", timeout=120, since=t0)
        assert failed, [t for _, t, _ in events.matching("lb/*", t0)] + [t for _, t, _ in events.matching("salt/beacon/*", t0)]
        assert "peer serves" in flat(failed[0][2])["message"]
        view = salt_run("lb.status")
        pv = view["pairs"][PAIR]
        assert _masters(view) == {v: "lb-b" for v in VHIDS}
        assert pv["nodes"]["lb-a"]["maintenance"] is False and pv["nodes"]["lb-a"]["haproxy"] == "stopped"
        assert pv["nodes"]["lb-b"]["haproxy"] == "running"
        assert any(r["tag"] == "lb/haproxy/heal-failed/lb-a" for r in salt_run("lb.history", "limit=0"))
        assert events.matching("lb/demoted/*", t0) == []
    finally:
        if blocker:
            os.killpg(blocker.pid, signal.SIGTERM)
            blocker.wait(timeout=10)
    ret = apply("lb-a", "haproxy")
    assert all(v["result"] for v in ret.values()), ret
    assert wait_for(lambda: all_on("lb-a"), SETTLE + 5), holders()
    _back_to_lb_a()


def test_split_brain_is_detected_reported_and_cleared(lab, events):
    assert wait_for(lambda: all_on("lb-a"), SETTLE), holders()
    t0 = time.time()
    with VrrpCut(lab.plan):
        found = events.wait(f"lb/splitbrain/{PAIR}/*", count=len(VHIDS), timeout=45, since=t0)
        found = [e for e in found if not e[1].endswith("/resolved")]
        assert sorted(flat(d)["vhid"] for _, _, d in found) == sorted(VHIDS), [t for _, t, _ in events.matching("*", t0) if "job" not in t]
        assert all(sorted(flat(d)["nodes"]) == ["lb-a", "lb-b"] for _, _, d in found)
        # both nodes are reachable and hold every VIP
        assert all(hs == {"lb-a", "lb-b"} for hs in holders().values()), holders()
        view = salt_run("lb.status")
        pv = view["pairs"][PAIR]
        assert sorted(pv["splitbrain"]) == sorted(str(v) for v in VHIDS), pv
        assert all(pv["nodes"][n]["reachable"] for n in LBS)
        assert sum(w.startswith("SPLIT BRAIN") for w in pv["warnings"]) == len(VHIDS)
        assert "SPLIT" in salt_run("lb.status", out=None)
    t1 = time.time()
    resolved = events.wait(f"lb/splitbrain/{PAIR}/*/resolved", count=len(VHIDS), timeout=45, since=t1)
    assert len(resolved) == len(VHIDS), [t for _, t, _ in events.matching("lb/*", t1)]
    if not wait_for(lambda: all_on("lb-a"), SETTLE):
        # what each node's daemon said last (carp.status: FAULT and STOP show as INIT)
        status = {m: saltcfg.salt_json(m, "carp.status").get(m) for m in LBS}
        raise AssertionError(f"after the split brain: holders {holders()}; carp.status {status}")
    pv = salt_run("lb.status")["pairs"][PAIR]
    assert pv["splitbrain"] == {} and pv["warnings"] == [], pv
