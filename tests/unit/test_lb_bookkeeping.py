"""The master's bookkeeping (_utils/lb_bookkeeping.py): transitions
confirmed a batch at a time, with one round trip per batch; split brains
declared only after a second look, resolved only when both nodes answer;
the record files (_utils/lb_records.py); and the round trip itself, bounded
by its timeout (_utils/lb_query.py).  The nodes' answers are
given; the clock is a variable."""

import copy
import json
import time

import pytest
import yaml

import lb_bookkeeping
import lb_query
import lb_records
import lb_topology

EXPECTED = {
    "edge": {
        "nodes": ["lb-a", "lb-b"],
        "groups": {4: {"vip": "198.18.2.4", "primary": "lb-a"}, 5: {"vip": "198.18.2.5", "primary": "lb-a"}},
    },
    "core": {"nodes": ["lb-c", "lb-d"], "groups": {7: {"vip": "198.18.9.7", "primary": "lb-c"}}},
}


def _carp(**states):
    vips = {4: "198.18.2.4", 5: "198.18.2.5", 7: "198.18.9.7"}
    return {int(k[1:]): {"state": v, "vip": vips[int(k[1:])]} for k, v in states.items()}


class Site:
    """The nodes' carp.status answers, and every query and announcement."""

    def __init__(self, tmp_path, answers):
        self.answers = answers
        self.queries = []
        self.fired = []
        self.now = 1_800_000_000.0
        self.records = lb_records.Records(str(tmp_path))
        self.rec = lb_bookkeeping.Recorder(self.records, self.query, self.announce, confirm=3, clock=lambda: self.now)

    def query(self, nodes, fun):
        self.queries.append((tuple(nodes), fun))
        return {n: self.answers.get(n, "no answer") for n in nodes}

    def announce(self, tag, data):
        self.fired.append(tag)

    def events(self, *tags, data=None):
        return self.rec.vet([(t, dict(data or {}), self.now) for t in tags], EXPECTED)


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path, {"lb-a": _carp(v4="MASTER", v5="MASTER"), "lb-b": _carp(v4="BACKUP", v5="BACKUP")})


def test_a_batch_is_one_round_trip_and_one_record_per_real_transition(site):
    tags = ["salt/beacon/lb-a/carp/4/MASTER", "salt/beacon/lb-b/carp/4/BACKUP"] * 200 + ["salt/beacon/lb-a/carp/5/MASTER"]
    recs = site.rec.transitions(site.events(*tags), EXPECTED)
    assert site.queries == [(("lb-a", "lb-b"), "carp.status")]
    assert [(r["node"], r["vhid"], r["new"]) for r in recs] == [("lb-a", 4, "MASTER"), ("lb-b", 4, "BACKUP"), ("lb-a", 5, "MASTER")]
    assert [r["tag"] for r in site.records.history()] == [r["tag"] for r in recs]
    # the same claims again: not transitions (the states last recorded)
    assert site.rec.transitions(site.events(*tags), EXPECTED) == []
    assert len(site.records.history()) == 3


def test_only_the_pairs_a_batch_touches_are_asked(site):
    site.rec.transitions(site.events("salt/beacon/lb-c/carp/7/MASTER"), EXPECTED)
    assert site.queries == [(("lb-c", "lb-d"), "carp.status")]


def test_what_the_node_does_not_confirm_is_dropped_and_nothing_of_the_claim_is_kept(site, caplog):
    recs = site.rec.transitions(site.events("salt/beacon/lb-b/carp/4/MASTER", data={"id": "lb-b"}), EXPECTED)
    assert recs == [] and site.records.history() == []
    assert "lb-b does not report vhid 4 as a new MASTER" in caplog.text
    recs = site.rec.transitions(
        site.events("salt/beacon/lb-a/carp/4/MASTER", data={"old": "x\n\x1b[2J", "vip": "evil", "source": "\x1b]0;", "timestamp": "now"}),
        EXPECTED,
    )
    (rec,) = site.records.history()
    assert json.dumps(rec).isascii()
    assert rec["vip"] == "198.18.2.4" and rec["source"] is None and rec["old"] == "?"


@pytest.mark.parametrize(
    "tag",
    [
        "salt/beacon/db-1/carp/4/MASTER",
        "salt/beacon/*/carp/4/MASTER",
        "salt/beacon/lb-a/carp/4/MASTER\nx: y",
        "salt/beacon/lb-a/carp/9/MASTER",
    ],
)
def test_a_tag_outside_the_topology_asks_no_node(site, tag, caplog):
    assert site.rec.transitions(site.events(tag), EXPECTED) == []
    assert site.queries == [] and site.records.history() == []
    assert "dropped event" in caplog.text


def test_drops_are_logged_once_a_minute_per_tag_and_reason(caplog):
    clock = [0.0]
    drops = lb_bookkeeping.Drops(every=60, clock=lambda: clock[0])
    for _ in range(100):
        drops("salt/beacon/x/carp/4/MASTER", {"id": "x"}, "x is not a load balancer")
    clock[0] = 61
    drops("salt/beacon/x/carp/4/MASTER", {"id": "x"}, "x is not a load balancer")
    assert caplog.text.count("dropped event") == 2


def test_a_split_brain_is_declared_only_after_a_second_look(site):
    site.answers["lb-b"] = _carp(v4="MASTER", v5="BACKUP")
    site.rec.transitions(site.events("salt/beacon/lb-b/carp/4/MASTER"), EXPECTED)
    assert site.fired == [] and site.rec.due() == []
    assert site.rec.next_due() == site.now + 3
    site.now += 3
    assert site.rec.due() == ["edge"]
    site.rec.confirm_due(EXPECTED)
    assert site.fired == ["lb/splitbrain/edge/4"]
    assert site.records.load("splitbrain.json")["edge"]["4"]["nodes"] == ["lb-a", "lb-b"]
    # the master records what it announced
    assert [r["tag"] for r in site.records.history()] == ["salt/beacon/lb-b/carp/4/MASTER", "lb/splitbrain/edge/4"]
    # many more events for the pair meanwhile: no second declaration
    site.rec.transitions(site.events(*["salt/beacon/lb-b/carp/4/MASTER"] * 50), EXPECTED)
    assert site.fired == ["lb/splitbrain/edge/4"] and site.rec.due() == []


def test_a_split_gone_by_the_second_look_is_not_declared(site):
    site.answers["lb-b"] = _carp(v4="MASTER", v5="BACKUP")
    site.rec.transitions(site.events("salt/beacon/lb-b/carp/4/MASTER"), EXPECTED)
    site.answers["lb-b"] = _carp(v4="BACKUP", v5="BACKUP")
    site.now += 3
    site.rec.confirm_due(EXPECTED)
    assert site.fired == [] and site.records.load("splitbrain.json") == {} and site.rec.next_due() is None


def test_a_split_brain_is_resolved_only_when_both_nodes_answer(site):
    site.records.save("splitbrain.json", {"edge": {"4": {"since": 1.0, "nodes": ["lb-a", "lb-b"], "vip": "198.18.2.4"}}})
    del site.answers["lb-b"]
    site.rec.check(EXPECTED)
    assert site.fired == [] and "edge" in site.records.load("splitbrain.json")
    site.answers["lb-b"] = _carp(v4="BACKUP", v5="BACKUP")
    site.rec.check(EXPECTED)
    assert site.fired == ["lb/splitbrain/edge/4/resolved"] and site.records.load("splitbrain.json") == {}


def test_check_asks_every_node_in_one_round_trip_and_waits_once(site, monkeypatch):
    slept = []
    monkeypatch.setattr(lb_bookkeeping.time, "sleep", slept.append)
    site.answers["lb-b"] = _carp(v4="MASTER", v5="MASTER")
    out = site.rec.check(EXPECTED)
    assert site.queries == [(("lb-a", "lb-b", "lb-c", "lb-d"), "carp.status"), (("lb-a", "lb-b"), "carp.status")]
    assert slept == [3.0]
    assert sorted(out["edge"]) == ["4", "5"] and out["core"] == {}
    assert sorted(site.fired) == ["lb/splitbrain/edge/4", "lb/splitbrain/edge/5"]


def test_the_records_are_not_world_readable(site):
    site.records.append({"tag": "x"})
    site.records.save("last.json", {"lb-a/4": "MASTER"})
    import os
    import stat

    for name in ("history.jsonl", "last.json"):
        assert not stat.S_IMODE(os.stat(site.records.path(name)).st_mode) & 0o007


# ---------------------------------------------------------------------------
# lb_query: one job to many nodes, within a deadline


class IterClient:
    """cmd_iter_no_block as Salt's: a return per answering node, None while
    nothing comes (Salt waits 10 ms per None), and it records being closed."""

    def __init__(self, answers, silent_for=0.0):
        self.answers = answers
        self.silent_for = silent_for
        self.closed = False
        self.calls = []
        self.nones = 0

    def cmd_iter_no_block(self, tgt, fun, arg=(), tgt_type="glob", timeout=None):
        self.calls.append((tuple(tgt), fun, tgt_type) + ((tuple(arg),) if arg else ()))
        try:
            for node in tgt:
                if node in self.answers:
                    yield {node: {"ret": self.answers[node]}}
            while True:  # the silent ones: Salt would go on past the timeout
                time.sleep(0.01)
                self.nones += 1
                yield None
        finally:
            self.closed = True


def test_ask_ends_when_every_node_answered():
    client = IterClient({"lb-a": {"4": "x"}, "lb-b": {}})
    assert lb_query.ask(client, ["lb-a", "lb-b"], "carp.status", 10, lambda: pytest.fail("no key lookup needed")) == {
        "lb-a": {"4": "x"},
        "lb-b": {},
    }
    # it stopped at the last answer: it never waited for more
    assert client.nones == 0 and client.closed and client.calls == [(("lb-a", "lb-b"), "carp.status", "list")]


def test_ask_ends_at_the_deadline_and_says_who_did_not_answer():
    client = IterClient({"lb-a": {}})
    t0 = time.monotonic()
    # the fake never ends by itself: ask returning at all is the deadline
    got = lb_query.ask(client, ["lb-a", "p1-lb-a", "ghost"], "carp.status", 0.3, lambda: ["lb-a", "p1-lb-a"])
    assert time.monotonic() - t0 >= 0.3 and client.closed
    assert got == {"lb-a": {}, "p1-lb-a": "no answer", "ghost": "unknown minion (no accepted key)"}


def test_ask_passes_the_functions_arguments():
    client = IterClient({"lb-a": {"admin": ["drain"]}})
    got = lb_query.ask(client, ["lb-a"], "haproxy_cfg.drain", 10, lambda: [], arg=["haproxy_198.18.2.5_80", "http_srv-1"])
    assert got == {"lb-a": {"admin": ["drain"]}}
    assert client.calls == [(("lb-a",), "haproxy_cfg.drain", "list", ("haproxy_198.18.2.5_80", "http_srv-1"))]


# ---------------------------------------------------------------------------
# the master's model: each pair from its own nodes' pillar (site_model)


def _other_site(lab_raw):
    """The lab's topology as another site's: pair `core` of lb-c and lb-d."""
    text = yaml.safe_dump(lab_raw).replace("lb-a", "lb-c").replace("lb-b", "lb-d")
    raw = yaml.safe_load(text)
    raw["pairs"] = {"core": raw["pairs"].pop("edge")}
    return raw


def test_each_site_s_pairs_come_from_their_own_nodes_pillars(lab_raw):
    core = _other_site(lab_raw)
    pillars = {"db-1": {"lb": lab_raw}, "lb-a": {"lb": lab_raw}, "lb-b": {"lb": lab_raw}, "lb-c": {"lb": core}, "lb-d": {"lb": core}}
    model, problems = lb_bookkeeping.site_model(pillars)
    assert problems == []
    assert sorted(model["pairs"]) == ["core", "edge"]
    assert sorted(model["pairs"]["core"]["nodes"]) == ["lb-c", "lb-d"]
    assert sorted(model["pairs"]["edge"]["nodes"]) == ["lb-a", "lb-b"]


def test_no_minion_s_pillar_speaks_for_a_node_it_is_not(lab_raw):
    # db-1's pillar holds another site's topology: it names lb-c and lb-d,
    # whose own pillars do not; the first by id no longer decides
    pillars = {"db-1": {"lb": _other_site(lab_raw)}, "lb-a": {"lb": lab_raw}, "lb-b": {}}
    model, problems = lb_bookkeeping.site_model(pillars)
    assert list(model["pairs"]) == ["edge"] and problems == []


def test_what_the_pillars_disagree_on_is_said_with_the_minion_and_the_path(lab_raw):
    changed = copy.deepcopy(lab_raw)
    changed["pairs"]["edge"]["carp"]["backup_advskew"] = 120
    broken = copy.deepcopy(lab_raw)
    broken["pairs"]["edge"]["nodes"]["lb-b"]["interfaces"]["vip"]["device"] = "eth1; reboot"
    model, problems = lb_bookkeeping.site_model({"lb-a": {"lb": lab_raw}, "lb-b": {"lb": changed}, "lb-c": {"lb": broken}})
    assert list(model["pairs"]) == ["edge"]
    assert model["pairs"]["edge"] == lb_topology.load(lab_raw)["pairs"]["edge"]  # the first node's, by id
    assert problems[0] == "lb-b: its pillar defines pair 'edge' unlike lb-a's; lb-a's is used"
    assert problems[1].startswith("lb-c: its pillar's topology is invalid: lb:pairs:edge:nodes:lb-b:interfaces:vip:device: ")
    assert problems[1].endswith(" more: salt lb-c lb.validate)") and "\n" not in problems[1]


def test_two_pairs_cannot_claim_one_node(lab_raw):
    other = copy.deepcopy(lab_raw)
    other["pairs"] = {"edge2": other["pairs"].pop("edge")}
    model, problems = lb_bookkeeping.site_model({"lb-a": {"lb": lab_raw}, "lb-b": {"lb": other}})
    assert list(model["pairs"]) == ["edge"]
    assert problems == ["lb-b: its pillar puts lb-a, lb-b in pair 'edge2', already in pair 'edge'"]


@pytest.mark.parametrize("pillars", [{}, {"lb-a": {}}, {"lb-a": "an error string"}, {"db-1": {"lb": "not a topology"}}])
def test_no_pair_at_all_is_an_error_that_says_what_to_do(pillars):
    with pytest.raises(ValueError, match="no load balancer has a valid 'lb' topology naming it"):
        lb_bookkeeping.site_model(pillars)


def test_the_cached_pairs_are_read_again_after_the_ttl_and_a_problem_is_logged_once(lab_raw, monkeypatch, caplog):
    monkeypatch.setattr(lb_bookkeeping, "_EXPECTED", {"at": None, "expected": None, "logged": set()})
    changed = copy.deepcopy(lab_raw)
    changed["pairs"]["edge"]["carp"]["backup_advskew"] = 120
    reads, now = [], [0.0]

    def read():
        reads.append(now[0])
        return {"lb-a": {"lb": lab_raw}, "lb-b": {"lb": changed}}

    for t in (0.0, 5.0, 11.0, 30.0):
        now[0] = t
        expected = lb_bookkeeping.cached_expected(read, ttl=10, clock=lambda: now[0])
    assert reads == [0.0, 11.0, 30.0]
    assert list(expected) == ["edge"]
    assert [r.getMessage() for r in caplog.records].count("lb: lb-b: its pillar defines pair 'edge' unlike lb-a's; lb-a's is used") == 1


def test_a_topology_many_minions_share_is_validated_once(lab_raw, monkeypatch):
    calls = []
    real = lb_topology.load
    monkeypatch.setattr(lb_topology, "load", lambda raw: calls.append(1) or real(raw))
    pillars = {m: {"lb": copy.deepcopy(lab_raw)} for m in ("db-1", "db-2", "lb-a", "lb-b")}
    model, problems = lb_bookkeeping.site_model(pillars)
    assert list(model["pairs"]) == ["edge"] and problems == [] and len(calls) == 1
