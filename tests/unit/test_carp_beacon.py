"""The CARP beacon's change detection: first pass, no change, one change,
many; the claims that keep a hook's event and the beacon's from doubling;
validate().  carp.status is a fixed dict here (its own tests cover it)."""

import importlib.util
import os

import pytest

import carp_events

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def status(**states):
    """carp.status's shape for vhids given as v4="MASTER" ..."""
    out = {}
    for key, state in states.items():
        vhid = int(key[1:])
        out[vhid] = {
            "interface": "eth1",
            "vip": f"198.18.2.{vhid}/24",
            "state": state,
            "advbase": 1,
            "advskew": 0,
            "provider": "keepalived",
            "holds_vip": state == "MASTER",
        }
    return out


@pytest.fixture
def beacon(tmp_path):
    """The beacon module loaded by path, with a carp.status we set per pass
    and HAProxy running unless a test says otherwise."""
    spec = importlib.util.spec_from_file_location("carp_beacon_under_test", os.path.join(REPO, "_beacons", "carp.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    box = {"status": {}, "haproxy": True}
    mod.__salt__ = {
        "carp.status": lambda: box["status"],
        "haproxy_cfg.status": lambda: {"running": box["haproxy"]},
        "lb_node.paths": lambda: {"events_dir": str(tmp_path / "events")},
    }
    mod.__context__ = {}
    mod.box = box
    mod.events_dir = tmp_path / "events"
    return mod


def run(beacon, **states):
    beacon.box["status"] = status(**states)
    return beacon.beacon([{"interval": 1}])


# --- pure change detection --------------------------------------------------


def test_first_pass_is_silent():
    assert carp_events.changes(None, carp_events.snapshot(status(v4="MASTER")), 1.0) == []


def test_no_change_no_event():
    snap = carp_events.snapshot(status(v4="MASTER", v5="BACKUP"))
    assert carp_events.changes(snap, dict(snap), 2.0) == []


def test_one_change_one_event_with_its_data():
    before = carp_events.snapshot(status(v4="BACKUP", v5="BACKUP"))
    after = carp_events.snapshot(status(v4="MASTER", v5="BACKUP"))
    (ev,) = carp_events.changes(before, after, 10.5)
    assert ev == {
        "tag": "4/MASTER",
        "vhid": 4,
        "vip": "198.18.2.4/24",
        "interface": "eth1",
        "old": "BACKUP",
        "new": "MASTER",
        "provider": "keepalived",
        "timestamp": 10.5,
        "source": "beacon",
    }


def test_many_changes_one_event_each_in_vhid_order():
    before = carp_events.snapshot(status(v4="MASTER", v44="MASTER", v5="MASTER", v55="BACKUP"))
    after = carp_events.snapshot(status(v4="INIT", v44="INIT", v5="MASTER", v55="MASTER"))
    evs = carp_events.changes(before, after, 3.0)
    assert [(e["tag"], e["old"]) for e in evs] == [("4/INIT", "MASTER"), ("44/INIT", "MASTER"), ("55/MASTER", "BACKUP")]


def test_groups_appearing_and_going():
    before = carp_events.snapshot(status(v4="MASTER"))
    after = carp_events.snapshot(status(v5="BACKUP"))
    evs = carp_events.changes(before, after, 1.0)
    assert [(e["vhid"], e["old"], e["new"]) for e in evs] == [(4, "MASTER", "INIT"), (5, "INIT", "BACKUP")]


def test_string_vhids_and_unknown_states_are_normalised():
    snap = carp_events.snapshot({"4": {"state": "FAULT", "vip": "x"}, "junk": {"state": "MASTER"}})
    assert snap == {4: {"state": "INIT", "vip": "x", "interface": None, "provider": None}}


# --- claims -----------------------------------------------------------------


@pytest.mark.parametrize(
    "claim,now,since,verdict",
    [
        (None, 100, None, "fire"),
        ("BACKUP 99 sent", 100, None, "fire"),  # another state
        ("MASTER 10 sent", 100, None, "fire"),  # stale
        ("MASTER 99 sent", 100, None, "skip"),
        ("MASTER 99 beacon", 100, None, "skip"),
        ("MASTER 99 failed", 100, None, "fire"),
        ("MASTER 99 pending", 100, None, "fire"),  # the hook's grace period: the beacon takes it
        ("MASTER 99 sending", 100, None, "wait"),
        ("MASTER 99 sending", 120, 100, "fire"),  # the hook hangs
        ("garbage", 100, None, "fire"),
    ],
)
def test_decide(claim, now, since, verdict):
    assert carp_events.decide(carp_events.parse_claim(claim), "MASTER", now, since) == verdict


def test_claim_round_trip():
    assert carp_events.parse_claim(carp_events.claim_text("BACKUP", 12.5, "sent")) == {"state": "BACKUP", "epoch": 12.5, "how": "sent"}
    with pytest.raises(ValueError):
        carp_events.claim_text("BACKUP", 1, "maybe")


# --- the beacon function ----------------------------------------------------


def test_beacon_first_pass_then_changes(beacon):
    assert run(beacon, v4="BACKUP", v5="BACKUP") == []
    assert run(beacon, v4="BACKUP", v5="BACKUP") == []
    evs = run(beacon, v4="MASTER", v5="MASTER")
    assert [e["tag"] for e in evs] == ["4/MASTER", "5/MASTER"]
    # it claimed them: a hook arriving late does not send them again
    assert (beacon.events_dir / "4").read_text().split()[::2] == ["MASTER", "beacon"]
    assert run(beacon, v4="MASTER", v5="MASTER") == []


def test_beacon_leaves_a_sent_transition_to_the_hook(beacon):
    run(beacon, v4="BACKUP")
    beacon.events_dir.mkdir()
    import time

    (beacon.events_dir / "4").write_text(carp_events.claim_text("MASTER", time.time(), "sent"))
    assert run(beacon, v4="MASTER") == []


def test_beacon_takes_over_a_hook_in_its_grace_period(beacon):
    import time

    run(beacon, v4="BACKUP")
    beacon.events_dir.mkdir()
    (beacon.events_dir / "4").write_text(carp_events.claim_text("MASTER", time.time(), "pending"))
    (ev,) = run(beacon, v4="MASTER")
    assert ev["tag"] == "4/MASTER"
    assert carp_events.parse_claim((beacon.events_dir / "4").read_text())["how"] == "beacon"


def test_beacon_fires_when_the_sending_hook_fails(beacon):
    import time

    run(beacon, v4="BACKUP")
    beacon.events_dir.mkdir()
    (beacon.events_dir / "4").write_text(carp_events.claim_text("MASTER", time.time(), "sending"))
    assert run(beacon, v4="MASTER") == []  # the hook is sending
    (beacon.events_dir / "4").write_text(carp_events.claim_text("MASTER", time.time(), "failed"))
    (ev,) = run(beacon, v4="MASTER")
    assert (ev["tag"], ev["old"]) == ("4/MASTER", "BACKUP")


def test_beacon_survives_carp_status_failing(beacon):
    def boom():
        raise RuntimeError("no carp")

    beacon.__salt__["carp.status"] = boom
    assert beacon.beacon([{"interval": 1}]) == []


def test_haproxy_down_on_a_master_fires_once_per_outage(beacon):
    run(beacon, v4="MASTER", v5="BACKUP")
    beacon.box["haproxy"] = False
    (ev,) = run(beacon, v4="MASTER", v5="BACKUP")
    assert ev["tag"] == "haproxy/DOWN" and ev["masters"] == [4] and ev["vips"] == ["198.18.2.4/24"]
    assert run(beacon, v4="MASTER", v5="BACKUP") == []  # not again before haproxy_refire
    beacon.box["haproxy"] = True
    assert run(beacon, v4="MASTER", v5="BACKUP") == []
    beacon.box["haproxy"] = False
    assert [e["tag"] for e in run(beacon, v4="MASTER", v5="BACKUP")] == ["haproxy/DOWN"]  # a new outage


def test_haproxy_down_on_a_backup_is_not_an_event(beacon):
    beacon.box["haproxy"] = False
    run(beacon, v4="BACKUP")
    assert run(beacon, v4="BACKUP") == []


@pytest.mark.parametrize(
    "config,ok,words",
    [
        ([{"interval": 1}, {"haproxy": True}], True, "valid"),
        ({"interval": 5}, True, "valid"),
        ([{"interval": 0}], False, "interval"),
        ([{"interval": "often"}], False, "interval"),
        ([{"haproxy": "yes"}], False, "haproxy"),
        ([{"haproxy_refire": -1}], False, "haproxy_refire"),
        ([{"events_dir": "relative/dir"}], False, "events_dir"),
        ([{"intervall": 1}], False, "unknown option(s) intervall"),
        (["interval"], False, "mapping"),
        ("interval: 1", False, "list of mappings"),
    ],
)
def test_validate(beacon, config, ok, words):
    valid, message = beacon.validate(config)
    assert valid is ok
    assert words in message
