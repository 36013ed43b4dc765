"""The one parameters map (`_utils/lb_parameters.py`): every per-OS fact
once, the override keys' schemas in step with it, and no other product
module holding one of its paths as a literal of its own."""

import ast
import pathlib

import pytest

import lb_parameters
import lb_settings
from tests.support import REPO

# Literals equal to a map value that are another fact: Salt loads grains
# before it syncs `_utils/` (the carp_provider grain reads the default state
# directory on its own), and haproxy_io's search path for a binary.
NOT_THE_SAME_FACT = {("_grains/carp.py", "/var/lib/lb-carp"), ("_utils/haproxy_io.py", "/usr/local/sbin")}


def test_every_family_has_every_section_and_only_what_differs():
    for fam in lb_parameters.FAMILIES:
        assert set(lb_parameters.OS_FAMILY[fam]) == set(lb_parameters.SECTIONS)
        for section in lb_parameters.SECTIONS:
            same = {k for k, v in lb_parameters.OS_FAMILY[fam][section].items() if lb_parameters.DEFAULTS[section].get(k, object()) == v}
            assert not same, f"{fam}:{section} repeats the defaults: {same}"


def test_of_merges_the_defaults_and_hands_out_copies():
    probe = lb_parameters.of("FreeBSD", "probe")
    assert probe["probe"] == "/usr/local/bin/clustercheck"  # a default
    assert probe["python"] == "/usr/local/bin/python3"  # FreeBSD's
    probe["packages"].append("x")
    assert "x" not in lb_parameters.of("FreeBSD", "probe")["packages"]
    # any other family (a Linux grain) is Debian's
    assert lb_parameters.of("RedHat", "carp") == lb_parameters.of("Debian", "carp")
    with pytest.raises(KeyError, match="no parameters section 'nope'"):
        lb_parameters.of("Debian", "nope")


def test_the_override_keys_can_set_what_the_map_holds():
    schemas = lb_settings.SCHEMAS
    assert lb_parameters.keys("carp") <= set(schemas["carp"])
    assert lb_parameters.keys("routing") - {"hook_conf"} <= set(schemas["routing"])  # hook_conf: beside the hook
    assert lb_parameters.keys("probe") <= set(schemas["clustercheck"])
    assert lb_parameters.keys("haproxy_sls") == set(schemas["haproxy_sls"])  # no key that does nothing


def test_no_other_module_holds_a_path_of_the_map():
    values = {
        v
        for fam in lb_parameters.FAMILIES
        for section in lb_parameters.SECTIONS
        for v in lb_parameters.of(fam, section).values()
        if isinstance(v, str) and v.startswith("/")
    }
    found = []
    for d in ("_modules", "_states", "_utils", "_runners", "_wrapper", "_beacons", "_engines", "_grains"):
        for path in sorted(pathlib.Path(REPO, d).glob("*.py")):
            rel = f"{d}/{path.name}"
            if rel == "_utils/lb_parameters.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in values and (rel, node.value) not in NOT_THE_SAME_FACT:
                    found.append(f"{rel}:{node.lineno} {node.value}")
    assert found == [], "read it from lb_parameters"


def test_every_section_is_read_one_way_first_source_wins_it_whole():
    opts = {}
    grains = {"lb_settings": {"carp": {"provider": "ucarp"}}}
    pillar = {"lb_settings": {"carp": {"state_dir": "/srv/c"}, "haproxy_sls": {"unmanaged": "keep"}}}
    # the grain's section wins whole: the pillar's state_dir is not merged in
    assert lb_settings.lookup("carp", opts, grains, pillar) == {"provider": "ucarp"}
    # a section the grain does not set comes from the pillar
    assert lb_settings.lookup("haproxy_sls", opts, grains, pillar) == {"unmanaged": "keep"}
    assert lb_settings.lookup("routing", opts, grains, pillar) == {}
    with pytest.raises(lb_settings.SettingsError, match=r"^lb_settings:clustercheck:socket: "):
        lb_settings.lookup("clustercheck", {"lb_settings": {"clustercheck": {"socket": "/run/x\n"}}}, grains, pillar)
    # a wrong section anywhere in the source that is read is an error too
    with pytest.raises(lb_settings.SettingsError, match=r"^lb_settings:routng: unknown section"):
        lb_settings.lookup("carp", {"lb_settings": {"routng": {}, "carp": {}}})
    # a key of an earlier release, wherever it is, names where it moved
    with pytest.raises(lb_settings.SettingsError, match=r"^lb_carp: moved to lb_settings:carp"):
        lb_settings.lookup("haproxy", opts, grains, dict(pillar, lb_carp={"state_dir": "/srv/c"}))
    # what a provider's __virtual__ reads: never raises
    assert lb_settings.raw("carp", {"lb_settings": "x"}, grains) == {"provider": "ucarp"}


def test_no_module_reads_the_settings_another_way():
    """config.get, pillar.get or a .get of the settings key (or one of the
    keys it replaced): only lb_settings (lookup, and raw for a provider's
    __virtual__), and the carp grain, which loads before the pillar and the
    synced utils."""
    allowed = {"_utils/lb_settings.py", "_grains/carp.py"}
    keys = {lb_settings.KEY, *lb_settings.MOVED}
    found = []
    for d in ("_modules", "_states", "_utils", "_runners", "_wrapper", "_beacons", "_engines", "_grains"):
        for path in sorted(pathlib.Path(REPO, d).glob("*.py")):
            rel = f"{d}/{path.name}"
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                    continue
                f = node.func
                getter = (isinstance(f, ast.Attribute) and f.attr == "get") or (
                    isinstance(f, ast.Subscript) and isinstance(f.slice, ast.Constant) and f.slice.value in ("config.get", "pillar.get")
                )
                if getter and node.args[0].value in keys and rel not in allowed:
                    found.append(f"{rel}:{node.lineno}")
    for path in pathlib.Path(REPO, "salt").rglob("*.jinja"):
        if any(f'"{k}"' in path.read_text() or f"'{k}'" in path.read_text() for k in keys):
            found.append(str(path))
    assert found == []
