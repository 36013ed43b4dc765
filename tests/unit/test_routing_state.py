"""The routing states over the module's read-only functions (`_pending`)
and its appliers, with the execution module mocked; and the module's
read-only side, held by reading its code (ast): what `present_pending` and
`sync_pending` run cannot write."""

import ast
import importlib.util
import os
from unittest.mock import Mock, patch

import pytest
from salt.exceptions import CommandExecutionError

from tests.support import REPO, reach

_spec = importlib.util.spec_from_file_location("routing_state", os.path.join(REPO, "_states", "routing.py"))
routing_state = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(routing_state)

CHANGES = {"/etc/bird/bird.conf": {"old": "differs", "new": "rendered from the pillar"}}
FUNCS = {"present": ("routing.present_pending", "routing.present"), "announced": ("routing.sync_pending", "routing.sync")}


@pytest.fixture
def configure_loader_modules():
    return {routing_state: {"__salt__": {}, "__opts__": {"test": False}}}


def mocks(state, pending, applied):
    ask, do = FUNCS[state]
    return {ask: Mock(return_value=pending), do: Mock(side_effect=[applied])}


@pytest.mark.parametrize("state", sorted(FUNCS))
def test_nothing_to_do_asks_only_the_pending_function(state):
    salt = mocks(state, {"changes": {}, "comment": "BIRD runs the configuration the topology gives"}, None)
    with patch.dict(routing_state.__salt__, salt):
        ret = getattr(routing_state, state)("edge", topology="/srv/lb.yaml")
    assert ret == {"name": "edge", "result": True, "changes": {}, "comment": "BIRD runs the configuration the topology gives"}
    ask, do = FUNCS[state]
    salt[ask].assert_called_once_with(topology="/srv/lb.yaml")
    salt[do].assert_not_called()


@pytest.mark.parametrize("state", sorted(FUNCS))
def test_test_mode_reports_and_never_calls_the_applier(state):
    salt = mocks(state, {"changes": CHANGES, "comment": "would apply"}, None)
    with patch.dict(routing_state.__salt__, salt), patch.dict(routing_state.__opts__, {"test": True}):
        ret = getattr(routing_state, state)("edge")
    assert ret["result"] is None and ret["changes"] == CHANGES and "would" in ret["comment"]
    ask, do = FUNCS[state]
    salt[ask].assert_called_once_with()
    salt[do].assert_not_called()


@pytest.mark.parametrize("state", sorted(FUNCS))
def test_a_real_run_applies_and_reports_what_changed(state):
    salt = mocks(state, {"changes": CHANGES, "comment": "would apply"}, {"changes": CHANGES, "comment": "bird reconfigured"})
    with patch.dict(routing_state.__salt__, salt):
        ret = getattr(routing_state, state)("edge")
    assert ret["result"] is True and ret["changes"] == CHANGES and ret["comment"].endswith(": bird reconfigured")
    salt[FUNCS[state][1]].assert_called_once_with()


def test_a_failure_after_a_change_fails_with_the_change_and_an_error_fails_without():
    salt = mocks(
        "present", {"changes": CHANGES, "comment": ""}, {"changes": CHANGES, "result": False, "comment": "BIRD still runs the old config"}
    )
    with patch.dict(routing_state.__salt__, salt):
        ret = routing_state.present("edge")
    assert ret["result"] is False and ret["changes"] == CHANGES
    salt = mocks("announced", {"changes": CHANGES, "comment": ""}, CommandExecutionError("the routing daemon does not answer"))
    with patch.dict(routing_state.__salt__, salt):
        ret = routing_state.announced("edge")
    assert ret["result"] is False and ret["changes"] == {} and "does not answer" in ret["comment"]


# ---------------------------------------------------------------------------
# The read-only side of _modules/routing.py cannot write: nothing the
# pending functions run (their own module's functions, followed) names a
# writer of routing_io or os, or an applier.

WRITERS = {
    "write",
    "swap_checked",
    "set_mode",
    "ensure_private",
    "bird_run_dir",
    "bird_start",
    "bird_stop",
    "bird_configure",
    "bird_wait_loaded",
    "bird_vips_renew",
    "run_hook",
    "run_checked",
    "systemctl",
    "chmod",
    "chown",
    "replace",
    "unlink",
    "makedirs",
    "kill",
}


def test_the_pending_functions_reach_no_writer():
    tree = ast.parse(open(os.path.join(REPO, "_modules", "routing.py"), encoding="utf-8").read())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def names(fn):
        # local functions by name; writers as routing_io.<x> or os.<x>
        for node in ast.walk(fn):
            if isinstance(node, ast.Name):
                yield node.id
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("routing_io", "os"):
                yield node.attr

    reached, found = reach(funcs, ["present_pending", "sync_pending"], names, WRITERS)
    assert {"_linux_plan", "_freebsd_plan", "_sync_plan"} <= reached
    assert not reached & {"present", "sync", "stop", "_linux_apply", "_freebsd_apply", "_repair"}
    assert found == set()
