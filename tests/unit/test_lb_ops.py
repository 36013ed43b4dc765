"""An operator's commands by the pillar's names (lb_ops, behind salt-run
lb.drain / lb.maint / lb.ready / lb.maintenance / lb.unmaintenance)."""

import pytest

import lb_ops
import lb_topology
from tests.support import LAB_PILLAR


@pytest.fixture(scope="module")
def model():
    return lb_topology.load(lb_topology.load_file(LAB_PILLAR))


def test_a_pools_server_is_found_in_every_section_of_both_nodes(model):
    t = lb_ops.server_targets(model, "web_a", "http_srv-1")
    assert t == {"pair": "edge", "pool": "web_a", "server": "http_srv-1", "nodes": ["lb-a", "lb-b"], "backends": ["haproxy_198.18.2.5_80"]}
    assert lb_ops.pair_targets(model, "edge", "galera_a", "percona_mysql-2")["backends"] == ["haproxy_198.18.2.4_3306"]


@pytest.mark.parametrize(
    "pool,server,said",
    [
        ("web_z", "http_srv-1", "no pool 'web_z' in the topology (pools: galera_a, galera_b, web_a, web_b)"),
        ("web_a", "http_srv-9", "pool 'web_a' has no server 'http_srv-9' (servers: http_srv-1, http_srv-2)"),
        (None, "x", "pool and server are the pillar's names"),
    ],
)
def test_unknown_names_are_refused_with_what_exists(model, pool, server, said):
    with pytest.raises(ValueError) as exc:
        lb_ops.server_targets(model, pool, server)
    assert said in str(exc.value)
    with pytest.raises(ValueError, match="no pair 'core'"):
        lb_ops.pair_targets(model, "core", "web_a", "http_srv-1")


def test_a_node_is_found_in_its_pair(model):
    assert lb_ops.node_pair(model, "lb-b") == "edge"
    with pytest.raises(ValueError, match="'db-1' is no load balancer of the topology"):
        lb_ops.node_pair(model, "db-1")


def test_a_nodes_answer_is_read_by_the_server_state_it_shows():
    assert lb_ops.server_result("drain", {"admin": ["drain"]}) == {"ok": True, "admin": ["drain"]}
    assert lb_ops.server_result("drain", {"admin": []})["ok"] is False
    assert lb_ops.server_result("maint", {"admin": ["maint", "drain"]})["ok"] is True
    assert lb_ops.server_result("ready", {"admin": []})["ok"] is True
    assert lb_ops.server_result("ready", {"admin": ["drain"]})["ok"] is False
    assert lb_ops.server_result("drain", "no answer") == {"ok": False, "error": "no answer"}
    assert lb_ops.server_result("drain", "ERROR: no HAProxy socket")["error"].startswith("ERROR")
    assert lb_ops.node_result({"changes": {4: {}}, "comment": "x"}) == {"ok": True, "changed": True, "comment": "x"}
    assert lb_ops.node_result("no answer") == {"ok": False, "error": "no answer"}


def test_the_record_says_who_did_what_to_which_node_and_why():
    rec = lb_ops.record("drain", "lb-a", "web_a/http_srv-1", {"ok": True}, "alice", "kernel update", 100.0)
    assert rec["what"] == "alice drained web_a/http_srv-1 (kernel update): done"
    assert (rec["node"], rec["tag"], rec["source"], rec["user"], rec["ok"]) == ("lb-a", "lb/operator/drain", "operator", "alice", True)
    failed = lb_ops.record("maintenance", "lb-b", "lb-b", {"ok": False, "error": "no answer"}, "bob", None, 1.0)
    assert failed["what"] == "bob entered maintenance lb-b: FAILED: no answer" and failed["ok"] is False


def test_a_reason_is_one_printable_line_and_a_user_a_plain_name():
    assert lb_ops.reason_of("disk swap, ticket #42") == "disk swap, ticket #42"
    assert lb_ops.reason_of(None) is None
    for bad in ("two\nlines", "\x1b]0;title", "", "x" * 201):
        with pytest.raises(ValueError, match="one line of printable text"):
            lb_ops.reason_of(bad)
    assert lb_ops.who({"SUDO_USER": "alice"}) == "alice"
    assert lb_ops.who({"SUDO_USER": "al ice$(id)"}) != "al ice$(id)"
