"""The one owner of the topology model (_modules/lb.py: lb.model, lb.node),
the top file's roles from the raw pillar (lb_topology.minion_roles), and the
provider choice Salt makes when it loads the carp modules
(lb_topology.declared_linux_provider), which validates nothing."""

import pytest
from salt.exceptions import CommandExecutionError

import lb_topology
from tests.support import lb_execution_module

lb = lb_execution_module()


@pytest.fixture
def pillar(lab_raw):
    return {"lb": lab_raw}


@pytest.fixture
def configure_loader_modules(pillar):
    return {lb: {"__opts__": {"id": "lb-a"}, "__pillar__": pillar, "__grains__": {"os_family": "Debian"}, "__context__": {}}}


def test_the_model_is_validated_once_and_each_caller_gets_its_own_copy(pillar, monkeypatch):
    calls = []
    real = lb_topology.check
    monkeypatch.setattr(lb_topology, "check", lambda raw: calls.append(1) or real(raw))
    first = lb.model()
    first["pairs"].clear()  # a caller that mutates its copy
    second = lb.model()
    assert "edge" in second["pairs"]
    assert len(calls) == 1


def test_a_pillar_change_is_seen_at_the_next_call(pillar):
    assert lb.model()["pairs"]["edge"]["carp"]["linux_provider"] == "keepalived"
    pillar["lb"]["pairs"]["edge"]["carp"]["linux_provider"] = "ucarp"
    assert lb.model()["pairs"]["edge"]["carp"]["linux_provider"] == "ucarp"


def test_an_invalid_topology_raises_with_every_path(pillar):
    pillar["lb"]["pairs"]["edge"]["nodes"]["lb-a"]["interfaces"]["mgmt"]["address"] = "nope"
    with pytest.raises(CommandExecutionError, match="lb:pairs:edge:nodes:lb-a:interfaces:mgmt:address"):
        lb.model()
    with pytest.raises(CommandExecutionError, match="lb:pairs:edge:nodes:lb-a:interfaces:mgmt:address"):
        lb.node()


def test_no_lb_key_says_so(pillar):
    pillar.clear()
    with pytest.raises(CommandExecutionError, match="no 'lb' key"):
        lb.model()


def test_node_gives_the_pair_and_names_the_known_nodes():
    got = lb.node()
    assert got["pair"]["name"] == "edge" and got["node"] is got["pair"]["nodes"]["lb-a"]
    with pytest.raises(CommandExecutionError, match="known nodes: lb-a, lb-b"):
        lb.node("web-1")


def test_minion_roles_from_the_raw_pillar(lab_raw):
    assert lb_topology.minion_roles(None, "lb-a") == {"lb": [], "galera": [], "routing": [], "invalid": None}
    assert lb_topology.minion_roles(lab_raw, "lb-a")["lb"] == ["edge"]
    lab_raw["pairs"]["edge"]["nodes"]["lb-a"]["interfaces"]["mgmt"]["address"] = "nope"
    got = lb_topology.minion_roles(lab_raw, "lb-a")
    assert got["lb"] == [] and got["invalid"].startswith("lb:pairs:edge:nodes:lb-a:interfaces:mgmt:address: ")
    # one bad address also breaks what is derived from it: the count says so
    assert got["invalid"].endswith(f"(and {len(lb_topology.check(lab_raw).errors) - 1} more)")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (None, "keepalived"),
        ("not a mapping", "keepalived"),
        ({"pairs": ["a list"]}, "keepalived"),
        ({"pairs": {"p": {"nodes": {"lb-a": {}}, "carp": {"linux_provider": "ucarp"}}}}, "ucarp"),
        ({"pairs": {"p": {"nodes": {"lb-a": {}}, "carp": {"linux_provider": "$(reboot)"}}}}, "keepalived"),
        ({"pairs": {"p": {"nodes": {"lb-b": {}}, "carp": {"linux_provider": "ucarp"}}}}, "keepalived"),
        ({"pairs": {"p": {"nodes": {"lb-a": {}}, "carp": "ucarp"}}}, "keepalived"),
    ],
)
def test_the_provider_is_looked_up_without_validating(raw, want):
    assert lb_topology.declared_linux_provider(raw, "lb-a") == want


def test_node_gives_the_model_it_found_the_pair_in():
    got = lb.node()
    assert got["pair"] is got["model"]["pairs"]["edge"]
