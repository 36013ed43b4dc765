"""The carp state's compare-and-delegate logic, with the execution module
mocked (saltext-vault's tests/unit/states style): the state asks
``carp.<op>_pending`` (read-only) and only in a real run with changes calls
``carp.<op>``."""

import importlib.util
import os
from unittest.mock import Mock, patch

import pytest
from salt.exceptions import CommandExecutionError

from tests.support import REPO

_spec = importlib.util.spec_from_file_location("carp_state", os.path.join(REPO, "_states", "carp.py"))
carp_state = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(carp_state)

CHANGES = {4: {"old": {"advskew": 0}, "new": {"advskew": 20}}}


@pytest.fixture
def configure_loader_modules():
    return {carp_state: {"__salt__": {"carp.present": Mock(), "carp.present_pending": Mock()}, "__opts__": {"test": False}}}


def pair(op, pending, applied=None):
    """{carp.<op>_pending, carp.<op>} mocks: the question's answer and the
    change's (a CommandExecutionError to raise, or None: never called)."""
    ask = Mock(return_value=pending)
    apply = Mock(side_effect=applied) if isinstance(applied, Exception) else Mock(return_value=applied)
    return {f"carp.{op}_pending": ask, f"carp.{op}": apply}, ask, apply


def test_no_changes_is_true_and_applies_nothing():
    funcs, ask, apply = pair("present", {"changes": {}, "comment": "keepalived is configured as the topology says"})
    with patch.dict(carp_state.__salt__, funcs):
        ret = carp_state.present("edge")
    assert ret == {"name": "edge", "result": True, "changes": {}, "comment": "keepalived is configured as the topology says"}
    ask.assert_called_once_with()
    apply.assert_not_called()


def test_test_mode_reports_and_touches_nothing():
    funcs, ask, apply = pair("present", {"changes": CHANGES, "comment": "would apply"})
    with patch.dict(carp_state.__salt__, funcs), patch.dict(carp_state.__opts__, {"test": True}):
        ret = carp_state.present("edge")
    assert ret["result"] is None and ret["changes"] == CHANGES
    assert "would change" in ret["comment"]
    ask.assert_called_once_with()
    apply.assert_not_called()


def test_real_run_applies_and_reports_the_same_changes():
    funcs, ask, apply = pair(
        "present", {"changes": CHANGES, "comment": "would apply"}, {"changes": CHANGES, "comment": "keepalived reloaded"}
    )
    with patch.dict(carp_state.__salt__, funcs):
        ret = carp_state.present("edge", topology="/srv/lb.yaml")
    assert ret["result"] is True and ret["changes"] == CHANGES
    ask.assert_called_once_with(topology="/srv/lb.yaml")
    apply.assert_called_once_with(topology="/srv/lb.yaml")
    assert "keepalived reloaded" in ret["comment"]


def test_a_failed_step_after_a_change_is_result_false_with_the_changes():
    applied = {"result": False, "changes": CHANGES, "comment": "SIGHUP sent to pid 7, but keepalived still runs the old config"}
    funcs, _, _ = pair("present", {"changes": CHANGES, "comment": "would apply"}, applied)
    with patch.dict(carp_state.__salt__, funcs):
        ret = carp_state.present("edge")
    assert ret["result"] is False and ret["changes"] == CHANGES and "old config" in ret["comment"]


def test_command_execution_error_is_result_false():
    funcs, _, _ = pair(
        "present", {"changes": CHANGES, "comment": ""}, CommandExecutionError("keepalived rejects the rendered configuration")
    )
    with patch.dict(carp_state.__salt__, funcs):
        ret = carp_state.present("edge")
    assert ret["result"] is False and "rejects" in ret["comment"] and ret["changes"] == {}


def test_a_failing_question_is_result_false_and_applies_nothing():
    funcs, ask, apply = pair("present", None)
    ask.side_effect = CommandExecutionError("lb.model: no pair has node lb-x")
    with patch.dict(carp_state.__salt__, funcs):
        ret = carp_state.present("edge")
    assert ret["result"] is False and "lb-x" in ret["comment"]
    apply.assert_not_called()


def test_absent_passes_the_vhids():
    gone = {55: {"old": {}, "new": None}}
    funcs, ask, apply = pair("absent", {"changes": gone, "comment": ""}, {"changes": gone, "comment": "removed"})
    with patch.dict(carp_state.__salt__, funcs):
        ret = carp_state.absent("gone", vhids=[55])
    assert ret["result"] is True and 55 in ret["changes"]
    ask.assert_called_once_with(vhids=[55])
    apply.assert_called_once_with(vhids=[55])


@pytest.mark.parametrize("name", [True, "true", "on", "present", "enabled"])
def test_maintenance_on_forms(name):
    entered = {"changes": {"maintenance": {"old": False, "new": True}}, "comment": ""}
    funcs, ask, apply = pair("maintenance", entered, entered)
    with patch.dict(carp_state.__salt__, dict(funcs, **{"carp.preempt_enabled": Mock(return_value=True)})):
        ret = carp_state.maintenance(name)
    assert ret["result"] is True and ret["changes"] == {"maintenance": {"old": False, "new": True}}
    ask.assert_called_once_with()
    apply.assert_called_once_with()


@pytest.mark.parametrize("name", [False, "false", "off", "absent"])
def test_maintenance_off_forms(name):
    funcs, _, apply = pair("unmaintenance", {"changes": {}, "comment": "not in maintenance"})
    with patch.dict(carp_state.__salt__, funcs):
        ret = carp_state.maintenance(name)
    assert ret == {"name": name, "result": True, "changes": {}, "comment": "not in maintenance"}
    apply.assert_not_called()


def test_maintenance_off_applies_unmaintenance():
    left = {"changes": {"maintenance": {"old": True, "new": False}}, "comment": "out of maintenance"}
    funcs, _, apply = pair("unmaintenance", dict(left, comment="would leave maintenance"), left)
    with patch.dict(carp_state.__salt__, funcs):
        ret = carp_state.maintenance(False)
    assert ret["result"] is True and ret["changes"] == left["changes"] and "left maintenance" in ret["comment"]
    apply.assert_called_once_with()


def test_maintenance_enabled_overrides_the_name():
    funcs, ask, _ = pair("unmaintenance", {"changes": {}, "comment": "not in maintenance"})
    with patch.dict(carp_state.__salt__, funcs):
        assert carp_state.maintenance("lb-a maintenance", enabled=False)["result"] is True
    ask.assert_called_once_with()


def test_maintenance_refuses_without_preempt():
    funcs, ask, apply = pair("maintenance", {"changes": {"maintenance": {"old": False, "new": True}}, "comment": ""})
    with patch.dict(carp_state.__salt__, dict(funcs, **{"carp.preempt_enabled": Mock(return_value=False)})):
        ret = carp_state.maintenance(True)
    assert ret["result"] is False and "preemption is off" in ret["comment"]
    ask.assert_not_called()
    apply.assert_not_called()


def test_maintenance_bad_name():
    ret = carp_state.maintenance("sometimes")
    assert ret["result"] is False and "true/false" in ret["comment"]


def test_maintenance_test_mode():
    funcs, ask, apply = pair("maintenance", {"changes": {"maintenance": {"old": False, "new": True}}, "comment": "would enter maintenance"})
    with (
        patch.dict(carp_state.__salt__, dict(funcs, **{"carp.preempt_enabled": Mock(return_value=True)})),
        patch.dict(carp_state.__opts__, {"test": True}),
    ):
        ret = carp_state.maintenance(True)
    assert ret["result"] is None and ret["changes"]
    ask.assert_called_once_with()
    apply.assert_not_called()
