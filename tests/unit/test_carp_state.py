"""The carp state's compare-and-delegate logic, with the execution module
mocked (saltext-vault's tests/unit/states style)."""

import importlib.util
import os
from unittest.mock import Mock, call, patch

import pytest
from salt.exceptions import CommandExecutionError

from tests.support import REPO

_spec = importlib.util.spec_from_file_location("carp_state", os.path.join(REPO, "_states", "carp.py"))
carp_state = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(carp_state)

CHANGES = {4: {"old": {"advskew": 0}, "new": {"advskew": 20}}}


@pytest.fixture
def configure_loader_modules():
    return {carp_state: {"__salt__": {"carp.present": Mock()}, "__opts__": {"test": False}}}


def module(returns):
    """A carp.<func> mock: first call (test=True) then the real one."""
    return Mock(spec=lambda test=False, **kw: None, side_effect=returns)


def test_no_changes_is_true_and_applies_nothing():
    present = module([{"changes": {}, "comment": "keepalived is configured as the topology says"}])
    with patch.dict(carp_state.__salt__, {"carp.present": present}):
        ret = carp_state.present("edge")
    assert ret == {"name": "edge", "result": True, "changes": {}, "comment": "keepalived is configured as the topology says"}
    present.assert_called_once_with(test=True)


def test_test_mode_reports_and_touches_nothing():
    present = module([{"changes": CHANGES, "comment": "would apply"}])
    with patch.dict(carp_state.__salt__, {"carp.present": present}), patch.dict(carp_state.__opts__, {"test": True}):
        ret = carp_state.present("edge")
    assert ret["result"] is None and ret["changes"] == CHANGES
    assert "would change" in ret["comment"]
    present.assert_called_once_with(test=True)


def test_real_run_applies_and_reports_the_same_changes():
    present = module([{"changes": CHANGES, "comment": "would apply"}, {"changes": CHANGES, "comment": "keepalived reloaded"}])
    with patch.dict(carp_state.__salt__, {"carp.present": present}):
        ret = carp_state.present("edge", topology="/srv/lb.yaml")
    assert ret["result"] is True and ret["changes"] == CHANGES
    assert present.call_args_list == [call(test=True, topology="/srv/lb.yaml"), call(topology="/srv/lb.yaml")]
    assert "keepalived reloaded" in ret["comment"]


def test_command_execution_error_is_result_false():
    present = module([{"changes": CHANGES, "comment": ""}, CommandExecutionError("keepalived rejects the rendered configuration")])
    with patch.dict(carp_state.__salt__, {"carp.present": present}):
        ret = carp_state.present("edge")
    assert ret["result"] is False and "rejects" in ret["comment"] and ret["changes"] == {}


def test_absent_passes_the_vhids():
    absent = module(
        [{"changes": {55: {"old": {}, "new": None}}, "comment": ""}, {"changes": {55: {"old": {}, "new": None}}, "comment": "removed"}]
    )
    with patch.dict(carp_state.__salt__, {"carp.absent": absent}):
        ret = carp_state.absent("gone", vhids=[55])
    assert ret["result"] is True and 55 in ret["changes"]
    assert absent.call_args_list == [call(test=True, vhids=[55]), call(vhids=[55])]


@pytest.mark.parametrize("name", [True, "true", "on", "present", "enabled"])
def test_maintenance_on_forms(name):
    enter = module([{"changes": {"maintenance": {"old": False, "new": True}}, "comment": ""}] * 2)
    with patch.dict(carp_state.__salt__, {"carp.maintenance": enter, "carp.preempt_enabled": Mock(return_value=True)}):
        ret = carp_state.maintenance(name)
    assert ret["result"] is True and ret["changes"] == {"maintenance": {"old": False, "new": True}}
    assert enter.call_count == 2


@pytest.mark.parametrize("name", [False, "false", "off", "absent"])
def test_maintenance_off_forms(name):
    leave = module([{"changes": {}, "comment": "not in maintenance"}])
    with patch.dict(carp_state.__salt__, {"carp.unmaintenance": leave}):
        ret = carp_state.maintenance(name)
    assert ret == {"name": name, "result": True, "changes": {}, "comment": "not in maintenance"}


def test_maintenance_enabled_overrides_the_name():
    leave = module([{"changes": {}, "comment": "not in maintenance"}])
    with patch.dict(carp_state.__salt__, {"carp.unmaintenance": leave}):
        assert carp_state.maintenance("lb-a maintenance", enabled=False)["result"] is True
    leave.assert_called_once_with(test=True)


def test_maintenance_refuses_without_preempt():
    enter = Mock()
    with patch.dict(carp_state.__salt__, {"carp.maintenance": enter, "carp.preempt_enabled": Mock(return_value=False)}):
        ret = carp_state.maintenance(True)
    assert ret["result"] is False and "preemption is off" in ret["comment"]
    enter.assert_not_called()


def test_maintenance_bad_name():
    ret = carp_state.maintenance("sometimes")
    assert ret["result"] is False and "true/false" in ret["comment"]


def test_maintenance_test_mode():
    enter = module([{"changes": {"maintenance": {"old": False, "new": True}}, "comment": "would enter maintenance"}])
    with (
        patch.dict(carp_state.__salt__, {"carp.maintenance": enter, "carp.preempt_enabled": Mock(return_value=True)}),
        patch.dict(carp_state.__opts__, {"test": True}),
    ):
        ret = carp_state.maintenance(True)
    assert ret["result"] is None and ret["changes"]
    enter.assert_called_once_with(test=True)
