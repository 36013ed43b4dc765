"""The top file and the SLS order, through Salt's own loader and state
compiler (masterless):

- an invalid topology fails the highstate loudly (salt/top.sls ->
  salt/lb/invalid.sls): one failed state naming the first error's pillar
  path, nothing else applied;
- a minion the topology does not concern gets an empty highstate;
- `carp` requires the `haproxy` SLS: a node serves before it takes a VIP.
"""

import os

import salt.config
import yaml
from saltfactories.utils.functional import Loaders

from tests.support import LAB_PILLAR, private_minion

GRAINS = {"os_family": "Debian", "kernel": "Linux", "os": "Debian"}


def _loaders(tmp_path, raw, node="lb-a"):
    pillar = tmp_path / "pillar"
    pillar.mkdir()
    (pillar / "top.sls").write_text("base:\n  '*':\n    - lb\n")
    (pillar / "lb.sls").write_text(yaml.safe_dump({"lb": raw}))
    conf = private_minion(tmp_path, id=node, pillar_roots={"base": [str(pillar)]}, grains=GRAINS)
    return Loaders(salt.config.minion_config(conf))


def test_an_invalid_topology_fails_the_highstate_with_its_path(tmp_path, lab_raw):
    # a quote and a command substitution: the message is pillar text, and
    # it reaches the state's YAML only through `json`
    lab_raw["pairs"]["edge"]["nodes"]["lb-a"]["interfaces"]["mgmt"]["address"] = 'x": $(date)'
    loaders = _loaders(tmp_path, lab_raw)
    low = loaders.modules.state.show_lowstate()
    assert [(c["__sls__"], c["state"], c["fun"]) for c in low] == [("lb.invalid", "test", "fail_without_changes")], low
    ret = loaders.modules.state.highstate()
    (only,) = list(ret)
    assert only.result is False
    assert "lb:pairs:edge:nodes:lb-a:interfaces:mgmt:address" in only.comment, only
    assert 'x": $(date)' in only.comment
    assert not only.changes


def test_a_minion_the_topology_does_not_concern_gets_an_empty_highstate(tmp_path, lab_raw):
    loaders = _loaders(tmp_path, lab_raw, node="web-9")
    assert loaders.modules.lb.roles() == {"lb": [], "galera": [], "routing": [], "invalid": None}
    assert loaders.modules.state.show_lowstate() == []


def test_the_lab_pillar_still_gives_the_states_in_order(tmp_path):
    conf = private_minion(tmp_path, id="lb-a", pillar_roots={"base": [os.path.dirname(LAB_PILLAR)]}, grains=GRAINS)
    loaders = Loaders(salt.config.minion_config(conf))
    assert loaders.modules.lb.roles()["invalid"] is None
    sls = []
    for c in loaders.modules.state.show_lowstate():
        if c["__sls__"] not in sls:
            sls.append(c["__sls__"])
    assert sls[:3] == ["host", "haproxy", "carp"], sls


def test_the_carp_sls_alone_applies_haproxy_first(tmp_path):
    # a node serves before it can take a VIP, whatever the top file says
    conf = private_minion(tmp_path, id="lb-a", pillar_roots={"base": [os.path.dirname(LAB_PILLAR)]}, grains=GRAINS)
    loaders = Loaders(salt.config.minion_config(conf))
    low = loaders.modules.state.show_low_sls("carp")
    assert isinstance(low, list), low
    ids = [c["__id__"] for c in low]
    assert "lb_haproxy_running" in ids and "lb_carp_groups" in ids, ids
    (groups,) = [c for c in low if c["__id__"] == "lb_carp_groups"]
    assert {"sls": "haproxy"} in groups["require"], groups
