"""The lab's waits on its salt-master (lab/saltcfg.py): no `salt` command
before the master's request server is up, test.ping rounds that outlive
their bound are rounds with no answer, a command line salt refuses is an
error, not "no answer yet"."""

import os
import socket
import subprocess
import time

import pytest
import yaml

from lab import saltcfg


@pytest.fixture
def master_dir(tmp_path, monkeypatch):
    """A master directory as Salt leaves it while it starts, and a port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    cfg = {
        "cachedir": str(tmp_path / "cache"),
        "sock_dir": str(tmp_path / "run"),
        "interface": "127.0.0.1",
        "ret_port": listener.getsockname()[1],
    }
    (tmp_path / "master").write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr(saltcfg, "MASTER_DIR", tmp_path)
    yield tmp_path, listener
    listener.close()


def _marks(root, age: float = 0.0):
    ready, workers = root / "cache" / "health" / "ready", root / "run" / "workers-default.ipc"
    for mark in (ready, workers):
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text("")
        os.utime(mark, (time.time() - age, time.time() - age))


def test_the_master_is_ready_only_with_this_start_s_marks_and_its_port(master_dir):
    root, listener = master_dir
    since = time.time()
    assert "no " in saltcfg.master_missing(since) and "ready" in saltcfg.master_missing(since)
    _marks(root, age=600)  # an earlier start's
    assert "is from an earlier start" in saltcfg.master_missing(since)
    _marks(root)
    assert "refuses connections" in saltcfg.master_missing(since)
    listener.listen()
    assert saltcfg.master_missing(since) is None
    assert saltcfg.master_missing(0) is None  # a new lab: whatever is there is this start's


def test_waiting_for_a_master_that_died_or_never_gets_ready_says_so(master_dir):
    with pytest.raises(RuntimeError, match="the salt-master died"):
        saltcfg.wait_for_master(time.time(), timeout=5, master_alive=lambda: False)
    with pytest.raises(RuntimeError, match="not ready after 0 s: no .*ready yet"):
        saltcfg.wait_for_master(time.time(), timeout=0)


def test_a_round_that_does_not_end_is_asked_again_and_only_the_missing_are_asked(monkeypatch):
    asked = []

    def salt_json(*args, timeout):
        asked.append(args[1])
        if len(asked) == 1:
            raise subprocess.TimeoutExpired(["salt"], timeout)
        return {"lb-a": True} if len(asked) == 2 else {"lb-b": True}

    monkeypatch.setattr(saltcfg, "salt_json", salt_json)
    monkeypatch.setattr(saltcfg.time, "sleep", lambda s: None)
    saltcfg.wait_for_minions(["lb-a", "lb-b"], timeout=0)  # over its time at once: still its three rounds
    assert asked == ["lb-a,lb-b", "lb-a,lb-b", "lb-b"]


def test_minions_that_never_answer_fail_after_the_rounds_with_the_master_s_log(monkeypatch, master_dir):
    root, _ = master_dir
    (root / "log").write_text("line one\n[ERROR] the last line\n")
    monkeypatch.setattr(saltcfg, "salt_json", lambda *a, timeout: {"lb-a": True, "lb-b": "Minion did not return. [No response]"})
    monkeypatch.setattr(saltcfg.time, "sleep", lambda s: None)
    with pytest.raises(RuntimeError, match=r"(?s)minions \['lb-b'\] did not answer.*the last line") as exc:
        saltcfg.wait_for_minions(["lb-a", "lb-b"], timeout=0)
    assert "runs" in str(exc.value)


def test_a_command_line_salt_refuses_is_an_error_not_no_answer(monkeypatch):
    refused = subprocess.CompletedProcess(["salt"], saltcfg.EX_USAGE, "", "salt: error: no such option: --gather-job-timeout")
    monkeypatch.setattr(saltcfg, "salt", lambda *a, timeout: refused)
    with pytest.raises(RuntimeError, match="no such option"):
        saltcfg.wait_for_minions(["lb-a"], timeout=60)
