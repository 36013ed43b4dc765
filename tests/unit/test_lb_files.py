"""The one atomic write (_utils/lb_files.py)."""

import os
import stat

import pytest

import lb_files


def test_writes_with_the_mode_and_makes_the_directory(tmp_path):
    path = tmp_path / "a" / "b" / "secret.conf"
    lb_files.write_atomic(str(path), "key\n", 0o600)
    assert path.read_text() == "key\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lb_files.write_atomic(str(path), "new\n", 0o640, group=os.getgid())
    assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(path.parent) == ["secret.conf"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "x.conf"
    path.write_text("old\n")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        lb_files.write_atomic(str(path), "new\n")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["x.conf"]
