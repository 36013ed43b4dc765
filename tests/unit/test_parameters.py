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
    assert lb_parameters.keys("carp") <= set(schemas["lb_carp"])
    assert lb_parameters.keys("routing") - {"hook_conf"} <= set(schemas["lb_routing"])  # hook_conf: beside the hook
    assert lb_parameters.keys("probe") <= set(schemas["clustercheck"])
    assert lb_parameters.keys("haproxy") == set(schemas["lb_haproxy"])  # no key that does nothing


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


def test_every_settings_key_is_read_one_way_first_source_wins_whole():
    opts, grains, pillar = {}, {"lb_carp": {"provider": "ucarp"}}, {"lb_carp": {"state_dir": "/srv/c"}, "lb_haproxy": {"unmanaged": "keep"}}
    # the grain's mapping wins whole: the pillar's state_dir is not merged in
    assert lb_settings.lookup("lb_carp", opts, grains, pillar) == {"provider": "ucarp"}
    assert lb_settings.lookup("lb_haproxy", opts, grains, pillar) == {"unmanaged": "keep"}
    assert lb_settings.lookup("lb_routing", opts, grains, pillar) == {}
    with pytest.raises(lb_settings.SettingsError, match=r"^clustercheck:socket: "):
        lb_settings.lookup("clustercheck", {"clustercheck": {"socket": "/run/x\n"}}, grains, pillar)


def test_no_module_reads_a_settings_key_another_way():
    """config.get, pillar.get or a .get of one of the keys: only
    lb_settings.lookup (and carp_common.raw_override, the unchecked read a
    provider's __virtual__ makes, and the carp grain, which loads before
    the pillar and the synced utils)."""
    allowed = {"_utils/lb_settings.py", "_utils/carp_common.py", "_grains/carp.py"}
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
                if getter and node.args[0].value in lb_settings.KEYS and rel not in allowed:
                    found.append(f"{rel}:{node.lineno}")
    for path in pathlib.Path(REPO, "salt").rglob("*.jinja"):
        if any(f'"{k}"' in path.read_text() or f"'{k}'" in path.read_text() for k in lb_settings.KEYS):
            found.append(str(path))
    assert found == []
