"""The salt-ssh roster derived from the topology (_utils/lb_roster.py)."""

import pytest

import lb_roster
import lb_topology


def test_the_seeds_roster_addresses_each_node_on_its_management_interface(seed_model):
    assert lb_roster.roster(seed_model, user="root") == {
        "lb-a": {"host": "10.1.1.241", "user": "root"},
        "lb-b": {"host": "10.1.1.242", "user": "root"},
    }


def test_the_labs_roster_follows_the_lab_pillar(lab_model):
    r = lb_roster.roster(lab_model, pairs="edge", thin_dir="/run/salt-ssh")
    assert r == {
        "lb-a": {"host": "198.18.1.241", "thin_dir": "/run/salt-ssh"},
        "lb-b": {"host": "198.18.1.242", "thin_dir": "/run/salt-ssh"},
    }


def test_the_stats_interface_is_the_management_interface(lab_raw):
    pair = lab_raw["pairs"]["edge"]
    pair["haproxy"]["stats"]["interface"] = "systems"
    r = lb_roster.roster(lb_topology.load(lab_raw))
    assert {n: e["host"] for n, e in r.items()} == {"lb-a": "198.18.3.241", "lb-b": "198.18.3.242"}


def test_an_explicit_interface_wins(seed_model):
    r = lb_roster.roster(seed_model, interface="vip")
    assert {n: e["host"] for n, e in r.items()} == {"lb-a": "10.2.2.241", "lb-b": "10.2.2.242"}


def test_a_missing_interface_is_an_error_at_each_nodes_pillar_path(seed_model):
    with pytest.raises(lb_topology.TopologyError) as err:
        lb_roster.roster(seed_model, interface="oob")
    assert [e.path for e in err.value.errors] == [
        "lb:pairs:edge:nodes:lb-a:interfaces:oob",
        "lb:pairs:edge:nodes:lb-b:interfaces:oob",
    ]
    assert "mgmt, vip, systems" in err.value.errors[0].message


def test_an_unknown_pair_is_an_error_at_its_path(seed_model):
    with pytest.raises(lb_topology.TopologyError) as err:
        lb_roster.roster(seed_model, pairs=["edge", "core"])
    assert [str(e) for e in err.value.errors] == ["lb:pairs:core: no such pair (pairs: edge)"]


def test_unknown_roster_options_are_refused(seed_model):
    with pytest.raises(ValueError, match="unknown roster options \\['passwd'\\]"):
        lb_roster.roster(seed_model, passwd="secret")
