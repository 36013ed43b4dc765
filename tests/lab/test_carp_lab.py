"""CARP in the lab, for keepalived and for ucarp: two nodes with real
salt-minions apply `salt/carp`; the primary holds every VIP; a second apply
changes nothing; test=True on a changed pillar reports and touches nothing;
a changed parameter applied to both nodes leaves every VIP on the master;
ucarp: a handed-over ucarp back to BACKUP is restarted plainly; link loss on the master moves the VIPs and its return brings them back;
maintenance moves them with no failed client connection and back.  During
these, a sampler reads both nodes every 50 ms: no VIP may be on both.

Timings are not asserted here (bench/carp_failover.py measures them); the
waits below are generous bounds.
"""

import json
import time

import pytest

from lab import saltcfg
from lab.carp_tools import (
    LAB_CARP,
    LBS,
    VIPS,
    Client,
    Sampler,
    Services,
    all_on,
    failures,
    holders,
    link,
    slowest,
    ucarp_argvs,
    user_port,
    wait_for,
)

PROVIDERS = ("keepalived", "ucarp")
SETTLE = {"keepalived": 10, "ucarp": 15}  # seconds, bounds for a move to finish
# A connect that a client would still wait for: a SYN lost in a switchover is
# sent again after 1 s, and that connection succeeds; it has not failed.
CLIENT_PATIENCE = 3.0
FIRST_APPLY = {}  # provider: the module's first state.apply carp, by the fixture


def salt(lab, *args, timeout=180):
    return lab.salt("-t", "90", "-L", ",".join(LBS), *args, timeout=timeout)


def one(lab, minion, *args):
    """A call to one node; -t 90: a state run may wait for another (queue=True),
    e.g. one the master's reactor started on a CARP transition."""
    return lab.salt("-t", "90", minion, *args, timeout=180)[minion]


def state_results(ret):
    """{minion: [(id, result, changes)]} of a state.apply return."""
    out = {}
    for minion, states in ret.items():
        assert isinstance(states, dict), f"{minion}: {states}"
        out[minion] = [(k, v["result"], v["changes"]) for k, v in states.items()]
    return out


@pytest.fixture(scope="module", params=PROVIDERS)
def carp(lab, request):
    provider = request.param
    # every provider that could be running goes first (a previous module's)
    for minion in LBS:
        saltcfg.sync_all(minion)
    # the CARP beacon and the master's reactor act on the transitions these
    # tests cause (healing HAProxy, demoting a node): not what is tested here
    salt(lab, "beacons.disable_beacon", "carp")
    salt(lab, "carp.absent")
    for minion in LBS:
        lab.salt(minion, "grains.delkey", "lb_settings", "force=True")
    salt(lab, "saltutil.refresh_grains")
    saltcfg.sync_all("-L", ",".join(LBS))
    lab_provider = salt(lab, "carp.provider")  # the pillar's, to be restored
    for minion in LBS:
        conf = json.dumps({"carp": dict(LAB_CARP, provider=provider)})
        lab.salt(minion, "grains.setval", "lb_settings", conf)
    saltcfg.sync_all("-L", ",".join(LBS))
    # what the pillar's sysctl:ip_forwarding (true) gives the nodes
    salt(lab, "sysctl.assign", "net.ipv4.ip_forward", "1")
    assert all(v == provider for v in salt(lab, "carp.provider").values())
    salt(lab, "carp.unmaintenance")
    # every test starts from a settled pair, whichever ran before it: the
    # groups applied from nothing, the primary holding every VIP
    first = state_results(salt(lab, "state.apply", "carp", "queue=True"))
    settled = wait_for(lambda: all_on("lb-a"), SETTLE[provider])
    assert settled, f"{provider}: the pair did not settle on lb-a after the first apply: {holders()}"
    FIRST_APPLY[provider] = first
    yield provider
    # leave the pair as the lab's highstate made it, for the tests after these
    salt(lab, "carp.unmaintenance")
    salt(lab, "carp.absent")
    for minion in LBS:
        lab.salt(minion, "grains.delkey", "lb_settings", "force=True")
    # the minions' grains in memory too, or carp stays this module's provider
    salt(lab, "saltutil.refresh_grains")
    saltcfg.sync_all("-L", ",".join(LBS))
    assert salt(lab, "carp.provider") == lab_provider
    salt(lab, "state.apply", "carp", "queue=True")
    salt(lab, "beacons.enable_beacon", "carp")


def test_apply_gives_the_primary_every_vip(lab, carp):
    ret = FIRST_APPLY[carp]
    for minion, results in ret.items():
        assert all(r is True for _, r, _ in results), (minion, results)
        assert any(c for _, _, c in results), (minion, "the first apply changed nothing", results)
    assert wait_for(lambda: all_on("lb-a"), SETTLE[carp]), holders()
    st_a = one(lab, "lb-a", "carp.status")
    st_b = one(lab, "lb-b", "carp.status")
    assert {int(v): s["state"] for v, s in st_a.items()} == {4: "MASTER", 44: "MASTER", 5: "MASTER", 55: "MASTER"}
    assert {s["state"] for s in st_b.values()} == {"BACKUP"}
    assert all(s["provider"] == carp for s in st_a.values())


def test_second_apply_changes_nothing(lab, carp):
    ret = state_results(salt(lab, "state.apply", "carp", "queue=True"))
    for minion, results in ret.items():
        assert [(i, c) for i, _, c in results if c] == [], minion


def test_test_mode_on_a_changed_pillar_reports_and_touches_nothing(lab, carp):
    before = holders()
    # merged into the master's pillar for this run only (YAML: 44 is an int key)
    change = "pillar={lb: {pairs: {edge: {carp: {groups: {44: {advskew_primary: 20}}}}}}}"
    ret = one(lab, "lb-a", "state.apply", "carp", "test=True", "queue=True", change)
    present = next(v for k, v in ret.items() if "carp_|-lb_carp_groups" in k)
    assert present["result"] is None
    assert "44" in {str(k) for k in present["changes"]}
    assert "passwd" not in json.dumps(ret)
    # nothing was touched: the real pillar still matches what runs
    again = one(lab, "lb-a", "carp.present", "test=True")
    assert again["changes"] == {}
    assert holders() == before


def test_a_changed_parameter_applied_to_both_nodes_leaves_every_vip_on_the_master(lab, carp):
    """carp:second_chance turned off (keepalived: a changed keepalived.conf,
    reloaded; ucarp: every group's command line changed, so each ucarp is
    replaced, a MASTER's without a gap), applied to the BACKUP and then to
    the MASTER, and back: every VIP stays on lb-a the whole time, never on
    both, and no client connection fails."""
    change = "pillar={lb: {pairs: {edge: {carp: {second_chance: false}}}}}"
    with Services():
        assert wait_for(lambda: all_on("lb-a"), SETTLE[carp])
        for pillar in ([change], []):
            sampler = Sampler(holder="lb-a")
            sampler.start()
            client = Client(VIPS[0], count=int(SETTLE[carp] * 2 / 0.02), timeout=CLIENT_PATIENCE)
            try:
                for node in ("lb-b", "lb-a"):
                    ret = one(lab, node, "state.apply", "carp", "queue=True", *pillar)
                    present = next(v for k, v in ret.items() if "carp_|-lb_carp_groups" in k)
                    assert present["result"] is True and present["changes"], (node, pillar, present)
                time.sleep(2 * SETTLE[carp] / 3)  # a VIP the peer were to take would have moved by now
            finally:
                results = client.result()
                sampler.stop()
            print(f"{carp} {pillar or 'back'}: {len(results)} connects, slowest {slowest(results):.3f} s")
            assert failures(results) == 0, [r for r in results if not r[1]]
            assert sampler.overlaps == [], sampler.overlaps
            assert sampler.away == [], sampler.away[:5]
            assert all_on("lb-a"), holders()


def test_a_handed_over_ucarp_back_to_backup_is_restarted_plainly(lab, carp):
    """ucarp: a changed parameter hands a MASTER over to a ucarp started with
    --neutral --deadratio=1 (quick to claim, so the VIP never leaves).  Here
    lb-b is that MASTER (lb-a in maintenance); once lb-a is back, lb-b is a
    BACKUP still running with those flags, which would claim the group after
    one missed advertisement.  The next apply restarts it plainly, the VIPs
    stay on lb-a, and the apply after that changes nothing."""
    if carp != "ucarp":
        pytest.skip("ucarp only: keepalived is reloaded, never replaced")
    handover = ("--neutral", "--deadratio=1")
    change = "pillar={lb: {pairs: {edge: {carp: {second_chance: false}}}}}"
    one(lab, "lb-a", "carp.maintenance")
    try:
        assert wait_for(lambda: all_on("lb-b"), SETTLE[carp]), holders()
        ret = one(lab, "lb-b", "state.apply", "carp", "queue=True", change)
        present = next(v for k, v in ret.items() if "carp_|-lb_carp_groups" in k)
        assert present["result"] is True and present["changes"], present
        argvs = ucarp_argvs("lb-b")
        assert sorted(argvs) == [4, 5, 44, 55] and all(set(handover) <= set(a) for a in argvs.values()), argvs
    finally:
        one(lab, "lb-a", "carp.unmaintenance")
    assert wait_for(lambda: all_on("lb-a"), SETTLE[carp]), holders()
    assert {s["state"] for s in one(lab, "lb-b", "carp.status").values()} == {"BACKUP"}
    sampler = Sampler(holder="lb-a")
    sampler.start()
    try:
        ret = one(lab, "lb-b", "state.apply", "carp", "queue=True", change)
        present = next(v for k, v in ret.items() if "carp_|-lb_carp_groups" in k)
        assert present["result"] is True, present
        assert {int(k): v for k, v in present["changes"].items() if str(k).isdigit()} == {
            v: {"old": {"handover_flags": True}, "new": {"handover_flags": False}} for v in (4, 5, 44, 55)
        }, present["changes"]
        argvs = ucarp_argvs("lb-b")
        assert sorted(argvs) == [4, 5, 44, 55] and not any(set(handover) & set(a) for a in argvs.values()), argvs
        again = one(lab, "lb-b", "state.apply", "carp", "queue=True", change)
        assert [k for k, v in again.items() if v["changes"]] == [], again
        time.sleep(2)
    finally:
        sampler.stop()
        one(lab, "lb-b", "state.apply", "carp", "queue=True")  # the pillar's second_chance again
    assert sampler.overlaps == [] and sampler.away == [], (sampler.overlaps, sampler.away[:5])
    assert all_on("lb-a"), holders()


def test_link_loss_moves_the_vips_and_its_return_brings_them_back(lab, carp):
    port = user_port(lab.plan, "lb-a")
    sampler = Sampler()
    sampler.start()
    events = {}
    try:
        events["down"] = time.time()
        link(port, up=False)
        assert wait_for(lambda: all_on("lb-b"), SETTLE[carp]), holders()
        events["moved"] = time.time()
        events["up"] = time.time()
        link(port, up=True)
        assert wait_for(lambda: all_on("lb-a"), SETTLE[carp] + 5), holders()
        events["back"] = time.time()
    finally:
        link(port, up=True)
        sampler.stop()
    assert sampler.samples > 20
    when = [(round(t - events["down"], 2), vip) for t, vip, _ in sampler.overlaps]
    print(f"{carp}: overlaps (s after link down, vip): {when}; events {[(k, round(v - events['down'], 2)) for k, v in events.items()]}")
    assert sampler.overlaps == [], f"both nodes held a VIP: {when}"


def test_maintenance_moves_the_vips_with_no_failed_connection(lab, carp):
    with Services():
        assert wait_for(lambda: all_on("lb-a"), SETTLE[carp])
        sampler = Sampler()
        sampler.start()
        client = Client(VIPS[0], count=int(SETTLE[carp] * 2 / 0.02), timeout=CLIENT_PATIENCE)
        try:
            # the module, not state.single: a state run would queue behind any
            # the master's reactor starts on these transitions
            ret = one(lab, "lb-a", "carp.maintenance")
            assert isinstance(ret, dict) and ret["changes"], ret
            assert wait_for(lambda: all_on("lb-b"), SETTLE[carp]), holders()
            assert one(lab, "lb-a", "carp.in_maintenance") is True
        finally:
            results = client.result()
            sampler.stop()
        assert len(results) > 100
        print(f"{carp} maintenance: {len(results)} connects, slowest {slowest(results):.3f} s, overlaps {len(sampler.overlaps)}")
        assert failures(results) == 0, [r for r in results if not r[1]]
        assert sampler.overlaps == [], sampler.overlaps

        # entering twice changes nothing
        again = one(lab, "lb-a", "carp.maintenance")
        assert isinstance(again, dict) and again["changes"] == {}, again

        sampler = Sampler()
        sampler.start()
        client = Client(VIPS[0], count=int(SETTLE[carp] * 2 / 0.02), timeout=CLIENT_PATIENCE)
        try:
            ret = one(lab, "lb-a", "carp.unmaintenance")
            assert isinstance(ret, dict) and ret["changes"], ret
            assert wait_for(lambda: all_on("lb-a"), SETTLE[carp]), holders()
        finally:
            results = client.result()
            sampler.stop()
        print(f"{carp} leaving maintenance: {len(results)} connects, slowest {slowest(results):.3f} s, overlaps {len(sampler.overlaps)}")
        assert failures(results) == 0, [r for r in results if not r[1]]
        assert sampler.overlaps == [], sampler.overlaps


def test_maintenance_survives_a_restart_of_the_daemon(lab, carp):
    one(lab, "lb-a", "carp.maintenance")
    assert wait_for(lambda: all_on("lb-b"), SETTLE[carp])
    # what a reboot does to the daemon: gone, then started again by the state
    one(lab, "lb-a", "carp.absent")
    one(lab, "lb-a", "state.apply", "carp", "queue=True")
    assert wait_for(lambda: all_on("lb-b"), 3)  # and stays there
    st = one(lab, "lb-a", "carp.status")
    assert {s["state"] for s in st.values()} <= {"BACKUP", "INIT"}
    one(lab, "lb-a", "carp.unmaintenance")
    assert wait_for(lambda: all_on("lb-a"), SETTLE[carp]), holders()
