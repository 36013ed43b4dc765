"""What the master makes of a minion's event (_utils/lb_events.py), the
reactor SLS, and the lb runner's heal decisions (_runners/lb.py) with the
nodes' answers given: each forged claim is dropped, each confirmed one acted
on, nothing else.  The bookkeeping: tests/unit/test_lb_bookkeeping.py."""

import copy
import importlib.util
import os
import time

import pytest

import lb_bookkeeping
import lb_events
import lb_status
from tests.support import REPO

EXPECTED = {
    "edge": {
        "nodes": ["lb-a", "lb-b"],
        "groups": {4: {"vip": "198.18.2.4", "primary": "lb-a"}, 5: {"vip": "198.18.2.5", "primary": "lb-a"}},
    }
}


@pytest.mark.parametrize(
    "tag, want",
    [
        ("salt/beacon/lb-a/carp/4/MASTER", {"node": "lb-a", "kind": "transition", "vhid": 4, "state": "MASTER"}),
        ("salt/beacon/lb-b/carp/255/INIT", {"node": "lb-b", "kind": "transition", "vhid": 255, "state": "INIT"}),
        ("salt/beacon/lb-a/carp/haproxy/DOWN", {"node": "lb-a", "kind": "haproxy_down", "vhid": None, "state": "DOWN"}),
    ],
)
def test_parse_accepts_the_tags_the_product_sends(tag, want):
    assert lb_events.parse(tag) == want


@pytest.mark.parametrize(
    "tag",
    [
        "salt/beacon/lb-a/carp/4/MASTER\n",
        "salt/beacon/lb-a/carp/4/MASTER\nlb_evil:\n  local.cmd.run:\n    - tgt: '*'",
        "salt/beacon/lb-a\n/carp/4/MASTER",
        "salt/beacon/lb-a\r/carp/4/MASTER",
        "salt/beacon/*/carp/4/MASTER",
        "salt/beacon/lb-*/carp/4/MASTER",
        "salt/beacon/lb-[ab]/carp/4/MASTER",
        "salt/beacon/L@lb-a,lb-b/carp/4/MASTER",
        "salt/beacon/lb-a/carp/0/MASTER",
        "salt/beacon/lb-a/carp/256/MASTER",
        "salt/beacon/lb-a/carp/04/MASTER",
        "salt/beacon/lb-a/carp/4/FAULT",
        "salt/beacon/lb-a/carp/4/master",
        "salt/beacon/lb-a/carp/haproxy/UP",
        "salt/beacon/lb-a/carp/4/MASTER/x",
        "salt/beacon//carp/4/MASTER",
        "salt/beacon/.lb-a/carp/4/MASTER",
        "salt/beacon/lb a/carp/4/MASTER",
        "salt/beacon/lb-a;id/carp/4/MASTER",
        "salt/beacon/$(id)/carp/4/MASTER",
        "lb/demoted/lb-a",
        None,
        b"salt/beacon/lb-a/carp/4/MASTER",
    ],
)
def test_parse_refuses_anything_else(tag):
    assert lb_events.parse(tag) is None


def test_vet_names_why():
    assert lb_events.vet("salt/beacon/db-1/carp/4/MASTER", EXPECTED) == (None, "db-1 is not a load balancer of the topology")
    assert lb_events.vet("salt/beacon/lb-a/carp/99/MASTER", EXPECTED) == (None, "vhid 99 is not a CARP group of pair edge")
    ev, why = lb_events.vet("salt/beacon/lb-b/carp/5/BACKUP", EXPECTED)
    assert why == "" and ev == {"node": "lb-b", "kind": "transition", "vhid": 5, "state": "BACKUP", "pair": "edge"}


def _status(state, vip="198.18.2.4/32", vhid=4):
    return {vhid: {"state": state, "vip": vip, "interface": "lb-a-eth1"}}


def test_a_transition_is_recorded_only_as_the_node_confirms_it():
    ev = {"node": "lb-a", "kind": "transition", "vhid": 4, "state": "MASTER"}
    assert lb_events.confirm_transition(ev, _status("MASTER"), "BACKUP") == {
        "vhid": 4,
        "old": "BACKUP",
        "new": "MASTER",
        "vip": "198.18.2.4",
    }
    # vhids as strings (Salt's msgpack): the same
    assert lb_events.confirm_transition(ev, {"4": _status("MASTER")[4]}, None)["old"] == "?"
    # the node says otherwise: a forged or superseded claim
    assert lb_events.confirm_transition(ev, _status("BACKUP"), "BACKUP") is None
    # the state it already had: not a transition (a replayed or forged event)
    assert lb_events.confirm_transition(ev, _status("MASTER"), "MASTER") is None
    # no usable answer: nothing recorded on a claim alone
    for answer in (None, "no answer", {}, {4: "x"}, ["MASTER"]):
        assert lb_events.confirm_transition(ev, answer, "BACKUP") is None
    # keepalived's FAULT / STOP are INIT, as the beacon reports them
    init = {"node": "lb-a", "kind": "transition", "vhid": 4, "state": "INIT"}
    assert lb_events.confirm_transition(init, _status("FAULT"), "MASTER")["new"] == "INIT"


def test_what_the_sender_claims_is_shown_only_when_it_is_plausible():
    assert lb_events.claimed_source({"source": "hook"}) == "hook"
    assert lb_events.claimed_source({"source": "beacon\nlb_evil"}) is None
    assert lb_events.claimed_source("x") is None
    now = 1_800_000_000.0
    assert lb_events.claimed_timestamp({"timestamp": now - 1.5}, now) == round(now - 1.5, 3)
    for bad in (now + 3600, now - 86400, "1", True, float("nan"), float("inf"), None):
        assert lb_events.claimed_timestamp({"timestamp": bad}, now) == now


def test_haproxy_verdict_needs_the_node_own_word():
    master = _status("MASTER")
    assert lb_events.haproxy_verdict({"running": True}, master) == "running"
    assert lb_events.haproxy_verdict({"running": False}, master) == "down"
    assert lb_events.haproxy_verdict({"running": False}, _status("BACKUP")) == "down-backup"
    assert lb_events.masters(_status("BACKUP"), "BACKUP") != [] and lb_events.masters(_status("INIT"), "BACKUP") == []
    assert lb_events.haproxy_verdict({"running": False}, "carp.status is not available") == "unknown"
    for hs in (None, "no answer", {}, {"running": "no"}, {"running": 0}):
        assert lb_events.haproxy_verdict(hs, master) == "unknown"
    assert lb_events.masters({"4": {"state": "MASTER"}, 5: {"state": "BACKUP"}, "x": {"state": "MASTER"}}) == [4]


# ---------------------------------------------------------------------------
# the runner, with the nodes' answers given


class FakeClient:
    """The runner's LocalClient: answers from a table, records what it was asked."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def cmd(self, tgt, fun, arg=(), tgt_type="glob", timeout=None, full_return=False, **kw):
        self.calls.append(("cmd", tgt, fun, tgt_type))
        assert tgt_type == "list" and isinstance(tgt, list)
        out = {}
        for node in tgt:
            if isinstance(fun, list):
                out[node] = {f: self.answers[node][f] for f in fun}
            elif full_return:
                out[node] = {"ret": self.answers[node][fun], "retcode": 0}
            else:
                out[node] = self.answers[node][fun]
        return out

    def cmd_async(self, tgt, fun, arg=(), tgt_type="glob", kwarg=None, **kw):
        self.calls.append(("cmd_async", tgt, fun, tgt_type))
        assert tgt_type == "list" and isinstance(tgt, list)
        return "20261202000000000001"


@pytest.fixture
def reactor_topology(monkeypatch):
    # the topology the reactor reads from the minions' cached pillar
    monkeypatch.setitem(lb_bookkeeping._EXPECTED, "at", time.monotonic() + 3600)
    monkeypatch.setitem(lb_bookkeeping._EXPECTED, "expected", EXPECTED)


@pytest.fixture
def runner(tmp_path, monkeypatch, lab_raw):
    spec = importlib.util.spec_from_file_location("lb_runner_under_test", os.path.join(REPO, "_runners", "lb.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fired = []
    mod.__opts__ = {"cachedir": str(tmp_path), "conf_file": str(tmp_path / "master")}
    mod.__salt__ = {
        "event.send": lambda tag, data: fired.append((tag, data)),
        "cache.pillar": lambda tgt: {"lb-a": {"lb": lab_raw}},  # the master's pillar for lb-a
        "jobs.lookup_jid": lambda jid, display_progress=False: {"lb-a": {"x": "y"}},
    }
    mod.fired = fired
    monkeypatch.setattr(mod.time, "sleep", lambda s: None)
    mod.HEAL_POLL = 0
    return mod


def _use(runner, answers):
    client = FakeClient(answers)
    runner._local = lambda: client
    return client


def _carp(state4, state5="BACKUP"):
    return {4: {"state": state4, "vip": "198.18.2.4"}, 5: {"state": state5, "vip": "198.18.2.5"}}


def _history(runner):
    return runner.history(limit=0, raw=True)


@pytest.mark.parametrize(
    "tag",
    [
        "salt/beacon/db-1/carp/4/MASTER",
        "salt/beacon/*/carp/4/MASTER",
        "salt/beacon/lb-a/carp/4/MASTER\nx: y",
        "salt/beacon/lb-a/carp/9/MASTER",
    ],
)
def test_heal_asks_no_node_for_a_tag_outside_the_topology(runner, tag):
    client = _use(runner, {})
    assert "dropped" in runner.heal(tag, {"id": "lb-a"})
    assert client.calls == [] and _history(runner) == [] and runner.fired == []


def test_heal_does_nothing_when_the_node_says_haproxy_runs(runner):
    client = _use(runner, {"lb-a": {"haproxy_cfg.status": {"running": True}, "carp.status": _carp("MASTER")}})
    out = runner.heal("salt/beacon/lb-a/carp/haproxy/DOWN", {"id": "lb-a"})
    assert "running" in out["dropped"]
    assert [c[2] for c in client.calls] == [["haproxy_cfg.status", "carp.status"]]
    assert _history(runner) == [] and runner.fired == []


def test_heal_never_demotes_a_node_that_is_not_master(runner):
    client = _use(runner, {"lb-a": {"haproxy_cfg.status": {"running": False}, "carp.status": _carp("BACKUP")}})
    runner.heal("salt/beacon/lb-a/carp/haproxy/DOWN", {})
    assert not any(c[2] == "carp.maintenance" for c in client.calls)


class Sequence(FakeClient):
    """HAProxy's status answers in turn (the last one repeats)."""

    def __init__(self, answers, running):
        super().__init__(answers)
        self.running = list(running)

    def cmd(self, tgt, fun, *a, **kw):
        if isinstance(fun, list) and "haproxy_cfg.status" in fun:
            now = self.running.pop(0) if len(self.running) > 1 else self.running[0]
            self.answers["lb-a"]["haproxy_cfg.status"] = {"running": now}
        return super().cmd(tgt, fun, *a, **kw)


def test_heal_applies_haproxy_and_announces_the_heal(runner):
    client = Sequence({"lb-a": {"carp.status": _carp("MASTER")}}, [False, False, True])
    runner._local = lambda: client
    out = runner.heal("salt/beacon/lb-a/carp/haproxy/DOWN", {})
    assert out["healed"] is True
    assert ("cmd_async", ["lb-a"], "state.apply", "list") in client.calls
    assert [t for t, _ in runner.fired] == ["lb/haproxy/healed/lb-a"]
    assert [r["tag"] for r in _history(runner)] == ["salt/beacon/lb-a/carp/haproxy/DOWN", "lb/haproxy/healed/lb-a"]


def test_heal_demotes_only_on_the_node_fresh_word(runner):
    client = Sequence({"lb-a": {"carp.status": _carp("MASTER"), "carp.maintenance": {"changes": {"maintenance": True}}}}, [False])
    runner._local = lambda: client
    out = runner.heal("salt/beacon/lb-a/carp/haproxy/DOWN", {})
    assert out["demoted"] is True
    assert ("cmd", ["lb-a"], "carp.maintenance", "list") in client.calls
    assert [t for t, _ in runner.fired] == ["lb/demoted/lb-a"]
    assert _history(runner)[-1]["tag"] == "lb/demoted/lb-a"


def _reactions(tag, data=None):
    path = os.path.join(REPO, "salt", "reactor", "carp.sls")
    src = open(path).read()
    assert src.startswith("#!py\n")
    ns = {"tag": tag, "data": data, "__opts__": {"utils_dirs": [os.path.join(REPO, "_utils")], "extension_modules": "/nonexistent"}}
    exec(compile(src, path, "exec"), ns)  # noqa: S102 - the project's own SLS
    return ns["run"]()


def test_the_shipped_reactor_sls_publishes_on_master_to_the_tag_node_alone(reactor_topology):
    """salt/reactor/carp.sls, run as the py renderer runs it: a MASTER
    event is the lb_failover.master_serves state (queued) with the vhid, to
    the one node of the tag by
    a list target; nothing of the data is used."""
    got = _reactions("salt/beacon/lb-b/carp/4/MASTER", {"id": "*\n- tgt: '*'", "vhid": "5; rm -rf /"})
    args = [{"fun": "lb_failover.master_serves"}, {"name": "vhid-4"}, {"vhid": 4}, {"queue": True}]
    assert got == {"lb_carp_master": {"local.state.single": [{"tgt": ["lb-b"]}, {"tgt_type": "list"}, {"args": args}]}}
    got = _reactions("salt/beacon/lb-a/carp/haproxy/DOWN", {"id": "lb-a"})
    assert got == {
        "lb_haproxy_down": {"runner.lb.heal": [{"args": [{"tag": "salt/beacon/lb-a/carp/haproxy/DOWN"}, {"data": {"id": "lb-a"}}]}]}
    }


@pytest.mark.parametrize(
    "tag",
    [
        "salt/beacon/lb-a/carp/4/MASTER\nlb_evil:\n  local.cmd.run: []",
        "salt/beacon/x/carp/haproxy/DOWN\n",
        "salt/beacon/lb-*/carp/4/MASTER",
        "salt/beacon/L@lb-a,db-1/carp/4/MASTER",
        "salt/beacon/lb-a/carp/0/MASTER",
        # outside the topology: no job for db-1, nor for a group lb-a lacks
        "salt/beacon/db-1/carp/4/MASTER",
        "salt/beacon/lb-a/carp/99/MASTER",
        "salt/beacon/db-1/carp/haproxy/DOWN",
        # the bookkeeping is the engine's: no reaction
        "salt/beacon/lb-a/carp/4/BACKUP",
        "salt/beacon/lb-a/carp/4/INIT",
        None,
    ],
)
def test_the_shipped_reactor_sls_reacts_to_nothing_else(tag, reactor_topology):
    assert _reactions(tag, {"id": "lb-a"}) == {}


def test_history_record_is_what_the_runner_writes():
    rec = lb_status.history_record(
        "salt/beacon/lb-a/carp/4/MASTER", {"old": "BACKUP", "vip": "198.18.2.4", "timestamp": 1.0, "source": "hook"}, 2.0
    )
    assert rec["node"] == "lb-a" and rec["vhid"] == 4 and rec["new"] == "MASTER"


def test_a_vip_is_shown_as_its_bare_address_in_every_view():
    """The pillar's /24, Linux's /32 and a bare address are one VIP; what is
    not an IPv4 address is no VIP (fullmatch: no trailing newline)."""
    for text in ("198.18.2.4/24", "198.18.2.4/32", "198.18.2.4"):
        assert lb_events.vip_address(text) == "198.18.2.4"
    for bad in ("198.18.2.4\n", "198.18.2.256", "198.18.2.4/33", "evil", "", None, 4, "1.2.3.4/24 x"):
        assert lb_events.vip_address(bad) is None, bad


def test_status_shows_what_the_minions_pillars_disagree_on(runner, lab_raw, monkeypatch):
    changed = copy.deepcopy(lab_raw)
    changed["pairs"]["edge"]["carp"]["backup_advskew"] = 120
    runner.__salt__["cache.pillar"] = lambda tgt: {"lb-a": {"lb": lab_raw}, "lb-b": {"lb": changed}}
    monkeypatch.setattr(runner, "_query", lambda nodes, fun, timeout=10, arg=(): {n: "no answer" for n in nodes})
    runner.__opts__["output"] = "json"
    v = runner.status()
    problem = "lb-b: its pillar defines pair 'edge' unlike lb-a's; lb-a's is used"
    assert v["pillar"] == [problem] and v["warnings"][0] == f"pillar: {problem}"
    runner.__opts__.pop("output")
    assert f"  ! {problem}" in runner.status()["data"]
