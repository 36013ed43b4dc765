"""The three `carp` providers (`_modules/carp_{freebsd,keepalived,ucarp}.py`)
are one module to Salt, whichever answers on a node: the same public
functions, each with a docstring and a CLI Example (what
salt-extension-copier's pre-commit hook checks), and for each changing
function its read-only `<op>_pending` twin with the same arguments less
`test` (the state asks the twin, lb_state.diff_and_apply)."""

import ast
import os

import pytest

from tests.support import REPO, reach

PROVIDERS = ("carp_freebsd.py", "carp_keepalived.py", "carp_ucarp.py")
APPLIERS = ("present", "absent", "maintenance", "unmaintenance")


def _public(name):
    tree = ast.parse(open(os.path.join(REPO, "_modules", name), encoding="utf-8").read())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}


def _args(fn):
    return [a.arg for a in fn.args.args]


def test_every_provider_offers_the_same_functions():
    sets = {name: set(_public(name)) for name in PROVIDERS}
    common = set.intersection(*sets.values())
    # keepalived alone reports the generation it runs (carp.loaded)
    assert {name: s - common for name, s in sets.items()} == {
        "carp_freebsd.py": set(),
        "carp_keepalived.py": {"loaded"},
        "carp_ucarp.py": set(),
    }
    assert {*APPLIERS, *(f"{op}_pending" for op in APPLIERS), "command_lines", "status", "groups", "provider", "programs"} <= common


@pytest.mark.parametrize("name", PROVIDERS)
def test_every_public_function_has_a_cli_example(name):
    missing = [
        fn
        for fn, node in _public(name).items()
        if "CLI Example:" not in (ast.get_docstring(node) or "") or f"carp.{fn}" not in ast.get_docstring(node)
    ]
    assert missing == []


@pytest.mark.parametrize("name", PROVIDERS)
def test_each_applier_has_its_pending_twin_with_its_arguments_less_test(name):
    public = _public(name)
    for op in APPLIERS:
        applier, pending = public[op], public[f"{op}_pending"]
        assert "test" in _args(applier), op
        assert sorted(_args(pending)) == sorted(a for a in _args(applier) if a != "test"), op


# ---------------------------------------------------------------------------
# The read-only side cannot write: nothing a `_pending` function runs (its
# own module's functions, followed) names a writer of the provider's I/O
# module, os or lb_files, a changing Salt function, or an applier.

IO = ("os", "lb_files", "keepalived_io", "ucarp_io", "freebsd_carp_io")
WRITERS = {
    # os, lb_files
    "unlink",
    "makedirs",
    "kill",
    "write_atomic",
    # keepalived_io, ucarp_io, freebsd_carp_io
    "start",
    "stop",
    "reload",
    "check_config",
    "release",
    "drop_address",
    "forget_state",
    "spawn",
    "terminate",
    "record",
    "forget",
    "handover",
    "systemctl",
    "write_managed",
    "write_demotion_record",
    # Salt functions that change the node
    "kmod.load",
    "sysrc.set",
    "sysctl.persist",
    "sysctl.assign",
}


@pytest.mark.parametrize("name", PROVIDERS)
def test_the_pending_functions_reach_no_writer(name):
    tree = ast.parse(open(os.path.join(REPO, "_modules", name), encoding="utf-8").read())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def names(fn):
        # local functions called by name (an argument named `maintenance`
        # is no call); writers as <io>.<x>, or __salt__["<x>"]
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                yield node.func.id
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in IO:
                yield node.attr
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "__salt__":
                if isinstance(node.slice, ast.Constant):
                    yield node.slice.value

    reached, found = reach(funcs, [f"{op}_pending" for op in APPLIERS], names, WRITERS)
    assert {"_present_plan", "_absent_plan"} <= reached
    assert not reached & {*APPLIERS, "_switch"}
    assert found == set()
