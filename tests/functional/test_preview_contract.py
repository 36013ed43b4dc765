"""The preview is the contract: for every node of the lab's and the seed's
pillar, on Debian and on FreeBSD, the files `lb.preview` lists (path, mode,
owner) are exactly the files the node's highstate writes.

The highstate is compiled by Salt's own loader (`state.show_lowstate`,
masterless, the minion's id and os_family set as grains), so the top file,
`lb.roles` and every SLS are the real ones.  What a state writes:

- `file.managed` / `file.blockreplace` / `file.symlink`: the state's own
  arguments (a link: mode 0777, and its target is the preview's `link`);
- the product's states that write their files themselves ask their own
  module, the one they write through: `haproxy_section.managed` ->
  `haproxy_cfg.render` (and `haproxy_cfg.settings` for the owner),
  `routing.present` -> `routing.render`, `carp.present` -> the provider's
  paths (`carp_common.settings`) and the modes its `present` writes them with.

Not part of the contract, and named here: the event path's own programs
(lb-carp-event and its settings, FreeBSD's devd rule), which depend on the minion's config
(its salt-call, config directory, pid file) and not on the topology.
"""

import os

import pytest
import salt.config
from saltfactories.utils.functional import Loaders

import carp_common
import lb_render
import lb_topology
import lb_view
from tests.support import LAB_PILLAR, REPO, SEED_PILLAR, private_minion

# state IDs of files no preview lists, with why (see the module docstring)
NOT_TOPOLOGY = {"lb_carp_event_hook", "lb_carp_event_hook_conf", "lb_carp_devd_rule"}
GRAINS = {
    "Debian": {"os_family": "Debian", "kernel": "Linux", "os": "Debian"},
    "FreeBSD": {"os_family": "FreeBSD", "kernel": "FreeBSD", "os": "FreeBSD"},
}
ROOT_GROUP = {"Debian": "root", "FreeBSD": "wheel"}
CASES = [
    (pillar, node, os_family)
    for pillar in (LAB_PILLAR, SEED_PILLAR)
    for node in lb_topology.load(lb_topology.load_file(pillar))["pairs"]["edge"]["nodes"]
    for os_family in ("Debian", "FreeBSD")
]


def _arg(chunk, key, default=None):
    return chunk.get(key, default)


def _mode(value):
    return None if value is None else str(value).zfill(4)


def carp_files(loaders, os_family, pillar):
    """What carp.present writes (the carp_* modules' present())."""
    override = carp_common.override(loaders.opts, {}, pillar)
    if os_family == "FreeBSD":
        p = carp_common.settings("FreeBSD", override)
        # carp_freebsd.present: write_atomic(netif_file, 0o600), write_atomic(rc_settings,
        # 0o644); sysrc -f loader_conf
        return {
            (p["netif_file"], "0600", "root", "wheel"),
            (p["rc_settings"], "0644", "root", "wheel"),
            (p["loader_conf"], "0644", "root", "wheel"),
        }
    p = carp_common.settings("Linux", override)
    provider = loaders.modules.carp.provider()
    if provider == "keepalived":
        # carp_keepalived.present: write_atomic(keepalived_config, 0o640)
        return {(p["keepalived_config"], "0640", "root", "root")}
    raise AssertionError(f"no contract for provider {provider} yet")


def managed_files(loaders, os_family, pillar):
    """{(path, mode, user, group)} the compiled highstate writes."""
    low = loaders.modules.state.show_lowstate()
    assert isinstance(low, list), low
    out = set()
    for chunk in low:
        sid, fun = chunk["__id__"], f"{chunk['state']}.{chunk['fun']}"
        if sid in NOT_TOPOLOGY:
            continue
        if fun == "file.managed":
            out.add((chunk["name"], _mode(_arg(chunk, "mode")), _arg(chunk, "user"), _arg(chunk, "group")))
        elif fun == "file.symlink":
            # a link's mode is 0777 and it belongs to the minion's user (root)
            out.add((chunk["name"], "0777", _arg(chunk, "user", "root"), _arg(chunk, "group", ROOT_GROUP[os_family])))
        elif fun == "file.blockreplace":
            # its mode and owner are the file.managed (replace: False) of the same path
            assert any(c["state"] == "file" and c["fun"] == "managed" and c["name"] == chunk["name"] for c in low), chunk
        elif fun == "haproxy_section.managed":
            s = loaders.modules.haproxy_cfg.settings()
            for path, f in loaders.modules.haproxy_cfg.render(os_family=os_family).items():
                out.add((path, _mode(f["mode"]), s["user"], s["group"]))
        elif fun == "routing.present":
            for path, f in loaders.modules.routing.render().items():
                group = "bird" if path.endswith("/bird.conf") else ROOT_GROUP[os_family]
                out.add((path, _mode(f["mode"]), "root", group))
        elif fun == "carp.present":
            out |= carp_files(loaders, os_family, pillar)
        elif chunk["state"] == "file":
            raise AssertionError(f"{sid}: {fun} writes {chunk['name']}; add it to the contract")
    return out


@pytest.mark.parametrize(
    ("pillar", "node", "os_family"), CASES, ids=[f"{os.path.basename(os.path.dirname(p))}-{n}-{o}" for p, n, o in CASES]
)
def test_the_preview_lists_exactly_what_the_highstate_writes(tmp_path, pillar, node, os_family):
    conf = private_minion(tmp_path, id=node, pillar_roots={"base": [os.path.dirname(pillar)]}, grains=GRAINS[os_family])
    loaders = Loaders(salt.config.minion_config(conf))
    preview = loaders.modules.lb.preview(node=node, os_family=os_family)
    listed = {(path, f["mode"], f["user"], f["group"]) for path, f in preview.items()}
    managed = managed_files(loaders, os_family, loaders.pillar)
    assert listed - managed == set(), "previewed, written by no state"
    assert managed - listed == set(), "written by a state, not previewed"
    # each file's `state` is the SLS whose states write it
    low = loaders.modules.state.show_lowstate()
    sls_of = {c["name"]: c["__sls__"] for c in low if c["state"] == "file"}
    for path, f in preview.items():
        assert f["state"] is not None, path
        if path in sls_of:
            assert sls_of[path] == f["state"], path
    # each link points where the preview says (a unit's enablement, lb_boot)
    links = {c["name"]: c["target"] for c in low if (c["state"], c["fun"]) == ("file", "symlink")}
    assert links == {path: f["link"] for path, f in preview.items() if f["link"]}


def test_every_previewed_file_of_every_os_has_a_writer(seed_model, lab_model):
    for model in (seed_model, lab_model):
        for node in model["pairs"]["edge"]["nodes"]:
            for os_family in lb_view.OS_FAMILIES:
                for path, f in lb_render.manifest(model, node, os_family).items():
                    assert f["state"] in ("host", "haproxy", "carp", "routing"), (node, os_family, path)


def test_the_repo_pillars_are_the_ones_compared():
    assert os.path.dirname(LAB_PILLAR) == os.path.join(REPO, "pillar", "lab")
    assert os.path.dirname(SEED_PILLAR) == os.path.join(REPO, "pillar", "seed")
