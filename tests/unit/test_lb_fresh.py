"""lb_fresh: after saltutil.sync_all rewrites a pure module's file, a
long-running process (a salt-minion) sees the new code, in place."""

import importlib
import os
import sys
import time

import lb_fresh


def _write(path, text, bump):
    path.write_text(text)
    t = time.time() + bump
    os.utime(path, (t, t))


def test_a_changed_file_is_reloaded_in_place_and_from_imports_follow(tmp_path, monkeypatch):
    # a private copy of lb_fresh in a directory of its own, as in extmods/utils
    d = tmp_path / "utils"
    d.mkdir()
    (d / "lb_fresh.py").write_text(open(lb_fresh.__file__).read())
    _write(d / "lbx_base.py", "class Finding:\n    version = 1\n\ndef script():\n    return 'old'\n", -100)
    _write(d / "lbx_user.py", "from lbx_base import Finding\n", -100)
    monkeypatch.syspath_prepend(str(d))
    for name in ("lb_fresh", "lbx_base", "lbx_user"):
        sys.modules.pop(name, None)
    try:
        fresh = importlib.import_module("lb_fresh")
        base = importlib.import_module("lbx_base")
        user = importlib.import_module("lbx_user")
        monkeypatch.setattr(fresh, "_process_start", lambda: time.time() - 10)
        assert fresh.refresh() == []  # loaded before this process started: current
        assert fresh.refresh() == []

        # a sync rewrites the base module: both are reloaded, in place
        _write(d / "lbx_base.py", "class Finding:\n    version = 2\n\ndef script():\n    return 'new'\n", 0)
        assert fresh.refresh() == ["lbx_base", "lbx_user"]
        assert base.script() == "new"  # the same module object, new code
        assert sys.modules["lbx_base"] is base
        assert user.Finding.version == 2 and user.Finding is base.Finding
        assert fresh.refresh() == []
    finally:
        for name in ("lb_fresh", "lbx_base", "lbx_user"):
            sys.modules.pop(name, None)
        importlib.import_module("lb_fresh")


def test_a_module_whose_file_changed_since_the_process_started_is_reloaded_at_first_sight(tmp_path, monkeypatch):
    """A minion that ran a release without lb_fresh imported the old pure
    modules; the sync writes new files and the first refresh must catch it."""
    d = tmp_path / "utils"
    d.mkdir()
    (d / "lb_fresh.py").write_text(open(lb_fresh.__file__).read())
    _write(d / "lbx_old.py", "VALUE = 'old'\n", -100)
    monkeypatch.syspath_prepend(str(d))
    for name in ("lb_fresh", "lbx_old"):
        sys.modules.pop(name, None)
    try:
        old = importlib.import_module("lbx_old")
        _write(d / "lbx_old.py", "VALUE = 'new'\n", 0)  # the sync, after the process started
        fresh = importlib.import_module("lb_fresh")
        monkeypatch.setattr(fresh, "_process_start", lambda: time.time() - 50)
        assert fresh.refresh() == ["lbx_old"]
        assert old.VALUE == "new"
    finally:
        for name in ("lb_fresh", "lbx_old"):
            sys.modules.pop(name, None)
        importlib.import_module("lb_fresh")
