"""Dynamic routing in the lab: both load balancers run BIRD (salt/routing,
from the lab pillar's routing section) and peer by BGP with the upstream
router up1 (BIRD, lab/upstream.py), which has no route to the VIPs but what
it learns.  The route to each VIP points at the CARP MASTER; after a failover
(the master's user link cut) at the new one, and back; a node in CARP
maintenance withdraws everything (its addresses go to the peer); while these
happen a sampler reads both nodes every 100 ms: at no sample may a node
announce a VIP it does not hold (BIRD's direct protocol announces the
addresses themselves); ext, behind up1, reaches the VIPs through those
routes.

Timings are not asserted (bench/routing_failover.py measures them); the waits
are generous bounds.
"""

import json
import time

import pytest

from lab import saltcfg
from lab.carp_tools import LBS, VIPS, all_on, holders, link, user_port
from lab.routing_tools import UPSTREAM, AnnounceSampler, announced, bgp_established, up1_routes, wait_for

SETTLE = 20  # seconds, bound for a VIP move and the routes to follow
FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())"


def node_address(lab, host):
    return next(i.address.split("/")[0] for i in lab.plan.host(host).interfaces if i.network == "user")


def routes_point_at(lab, host):
    want = {vip: node_address(lab, host) for vip in VIPS}
    return up1_routes() == want


def one(lab, minion, *args):
    return lab.salt("-t", "90", minion, *args, timeout=180)[minion]


@pytest.fixture(scope="module")
def routing(lab):
    if UPSTREAM not in lab.state["hosts"]:
        pytest.skip("the running lab has no upstream router (it predates lab/plan.py's up1): take it down and run again")
    for minion in LBS:
        saltcfg.sync_all(minion)
    # the carp state as the highstate leaves it (another module may have changed it), then routing
    ret = lab.salt("-t", "120", "-L", ",".join(LBS), "state.apply", "carp,carp.events,routing", "queue=True", timeout=240)
    for minion, states in ret.items():
        assert isinstance(states, dict), f"{minion}: {states}"
        bad = {k: v["comment"] for k, v in states.items() if v["result"] is not True}
        assert not bad, (minion, bad)
    one(lab, "lb-a", "carp.unmaintenance")
    assert wait_for(lambda: all_on("lb-a"), SETTLE), holders()
    up1_sessions = lambda: bgp_established(UPSTREAM, "/run/bird-upstream.ctl")  # noqa: E731
    assert wait_for(lambda: up1_sessions() and all(up1_sessions().values()), 60), up1_sessions()
    yield
    one(lab, "lb-a", "carp.unmaintenance")
    link(user_port(lab.plan, "lb-a"), up=True)


def test_routing_state_is_idempotent_and_test_mode_changes_nothing(lab, routing):
    ret = lab.salt("-t", "120", "-L", ",".join(LBS), "state.apply", "routing", "queue=True", timeout=240)
    for minion, states in ret.items():
        assert [(k, v["changes"]) for k, v in states.items() if v["changes"]] == [], minion
    before = one(lab, "lb-a", "routing.status")
    ret = one(lab, "lb-a", "state.apply", "routing", "test=True", "queue=True")
    assert all(v["result"] is True and not v["changes"] for v in ret.values()), ret
    assert one(lab, "lb-a", "routing.status")["pid"] == before["pid"]
    assert "lab-bgp-md5-key" not in json.dumps(ret) + json.dumps(before)


def test_bird_conf_is_not_world_readable(lab, routing):
    r = lab.run("lb-a", "stat", "-c", "%a %U %G", "/etc/bird/bird.conf")
    assert r.stdout.split() == ["640", "root", "bird"], r.stdout
    # the key is never on a command line
    ps = lab.run("lb-a", "ps", "-eo", "args")
    assert "lab-bgp-md5-key" not in ps.stdout


def test_the_route_to_each_vip_points_at_the_master(lab, routing):
    assert wait_for(lambda: routes_point_at(lab, "lb-a"), SETTLE), up1_routes()
    assert announced("lb-a") == set(VIPS)
    assert announced("lb-b") == set()
    route = lab.run(UPSTREAM, "ip", "-4", "route", "get", "198.18.2.5")
    assert f"via {node_address(lab, 'lb-a')}" in route.stdout, route.stdout


def test_ext_reaches_the_vips_through_the_upstream_router(lab, routing):
    assert wait_for(lambda: routes_point_at(lab, "lb-a"), SETTLE), up1_routes()
    for vip in ("198.18.2.5", "198.18.2.55"):
        r = lab.run("ext", "python3", "-c", FETCH, f"http://{vip}/", timeout=15)
        assert r.returncode == 0, r.stderr
        assert "web-" in r.stdout
    # two hops: ext -> up1 -> the MASTER
    trace = lab.run("ext", "ping", "-c", "1", "-W", "2", "198.18.2.5")
    assert trace.returncode == 0 and "ttl=63" in trace.stdout, trace.stdout


def test_failover_moves_the_routes_and_the_backup_never_announces_what_it_does_not_hold(lab, routing):
    port = user_port(lab.plan, "lb-a")
    sampler = AnnounceSampler(every=0.1)
    sampler.start()
    t0 = time.time()
    events = {}
    try:
        link(port, up=False)
        assert wait_for(lambda: all_on("lb-b"), SETTLE), holders()
        events["vips on lb-b"] = time.time()
        assert wait_for(lambda: routes_point_at(lab, "lb-b"), SETTLE), up1_routes()
        events["routes via lb-b"] = time.time()
        link(port, up=True)
        assert wait_for(lambda: all_on("lb-a"), SETTLE), holders()
        events["vips back on lb-a"] = time.time()
        assert wait_for(lambda: routes_point_at(lab, "lb-a"), SETTLE + 30), up1_routes()
        events["routes via lb-a"] = time.time()
    finally:
        link(port, up=True)
        sampler.stop()
    print(
        f"failover: {[(k, round(v - t0, 2)) for k, v in events.items()]}; {sampler.samples} samples, "
        f"violations {[(round(t - t0, 2), h, v) for t, h, v in sampler.violations]}, unanswered {sampler.unanswered}"
    )
    assert sampler.samples > 20
    assert sampler.violations == []


def test_maintenance_withdraws_the_nodes_routes(lab, routing):
    sampler = AnnounceSampler(every=0.1)
    sampler.start()
    try:
        ret = one(lab, "lb-a", "carp.maintenance")
        assert isinstance(ret, dict) and ret["changes"], ret
        assert wait_for(lambda: all_on("lb-b"), SETTLE), holders()
        assert wait_for(lambda: routes_point_at(lab, "lb-b"), SETTLE), up1_routes()
        assert wait_for(lambda: announced("lb-a") == set(), SETTLE), announced("lb-a")
        # the state agrees: nothing to fix
        sync = one(lab, "lb-a", "routing.sync", "test=True")
        assert sync["changes"] == {}, sync
        ret = one(lab, "lb-a", "carp.unmaintenance")
        assert isinstance(ret, dict) and ret["changes"], ret
        assert wait_for(lambda: all_on("lb-a"), SETTLE), holders()
        assert wait_for(lambda: routes_point_at(lab, "lb-a"), SETTLE), up1_routes()
    finally:
        one(lab, "lb-a", "carp.unmaintenance")
        sampler.stop()
    print(f"maintenance: {sampler.samples} samples, violations {sampler.violations}")
    assert sampler.samples > 20
    assert sampler.violations == []


def test_the_state_fixes_an_announcement_that_drifted(lab, routing):
    assert wait_for(lambda: routes_point_at(lab, "lb-a"), SETTLE), up1_routes()
    # lb-a (MASTER) stops announcing behind the product's back: someone
    # disabled the announcements while debugging; up1 loses the VIPs
    lab.run("lb-a", "birdc", "-s", "/run/bird/bird.ctl", "disable", "lb_vips")
    try:
        assert wait_for(lambda: announced("lb-a") == set(), 10)
        assert wait_for(lambda: not up1_routes(), SETTLE), up1_routes()
        check = one(lab, "lb-a", "state.apply", "routing", "test=True", "queue=True")
        sync = next(v for k, v in check.items() if "lb_routing_announced" in k)
        assert sync["result"] is None and set(sync["changes"]) == set(VIPS), sync
        assert announced("lb-a") == set()  # test=True touched nothing
        fix = one(lab, "lb-a", "state.apply", "routing", "queue=True")
        sync = next(v for k, v in fix.items() if "lb_routing_announced" in k)
        assert sync["result"] is True and sync["changes"]["198.18.2.5"] == {"old": False, "new": True}, sync
        assert announced("lb-a") == set(VIPS)
        assert wait_for(lambda: routes_point_at(lab, "lb-a"), SETTLE), up1_routes()
    finally:
        lab.run("lb-a", "birdc", "-s", "/run/bird/bird.ctl", "enable", "lb_vips")


def up1_since():
    """{protocol: seconds of the day} of up1's BGP sessions' 'Since' column (when each last changed state)."""
    r = lab_run_up1("birdc", "-s", "/run/bird-upstream.ctl", "show", "protocols")
    rows = [w for w in (line.split() for line in r.stdout.splitlines()) if len(w) >= 6 and w[1] == "BGP"]
    return {w[0]: _seconds_of_day(w[4]) for w in rows}


def _seconds_of_day(since):
    h, m, s = since.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def same_instants(before, after, tolerance=0.05):
    """BIRD prints a state change's time as now_real - (now_mono - t), two clocks read
    one after the other (lib/timer.c tm_format_time), so the same instant can print
    1 ms apart.  A session that went down and up shows the time of the flap instead."""
    return before.keys() == after.keys() and all(abs(after[k] - before[k]) < tolerance for k in before)


def lab_run_up1(*cmd):
    from lab import control

    return control.run(UPSTREAM, *cmd, timeout=10)


def test_a_changed_attribute_reconfigures_without_dropping_the_session(lab, routing):
    assert wait_for(lambda: routes_point_at(lab, "lb-a"), SETTLE), up1_routes()
    before = up1_since()
    pid = one(lab, "lb-a", "routing.status")["pid"]
    change = "pillar={lb: {pairs: {edge: {routing: {bgp: {neighbors: {ebgp1: {med: 20}}}}}}}}"
    try:
        ret = one(lab, "lb-a", "state.apply", "routing", "queue=True", change)
        daemon = next(v for k, v in ret.items() if "lb_routing_daemon" in k)
        assert daemon["result"] is True and "reconfigured" in daemon["comment"], daemon
        assert "bgp_med = 20;" in lab.run("lb-a", "cat", "/etc/bird/bird.conf").stdout
        assert one(lab, "lb-a", "routing.status")["pid"] == pid
        time.sleep(2)
        after = up1_since()
        assert same_instants(before, after), (before, after)  # no session went down and up
        assert routes_point_at(lab, "lb-a")
    finally:
        one(lab, "lb-a", "state.apply", "routing", "queue=True")
    assert "bgp_med = 10;" in lab.run("lb-a", "cat", "/etc/bird/bird.conf").stdout
