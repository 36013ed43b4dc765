"""lab/lock.py: one holder at a time, waiters served in order, a dead
waiter does not block the queue."""

import os
import subprocess
import sys
import time

import pytest

from lab import REPO, lock

HOLD = """
import sys, time
from pathlib import Path
from lab import lock
lock.POLL = 0.05
fd = lock.acquire(Path(sys.argv[1]), float(sys.argv[2]), what=sys.argv[3])
with open(sys.argv[5], "a") as log:
    print(sys.argv[3], file=log)
time.sleep(float(sys.argv[4]))
"""


def holder(path, name, log, wait=30.0, hold=0.3):
    """A process that waits for the lock, writes its name to `log` once it
    holds it, holds it `hold` seconds."""
    return subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(wait), name, str(hold), str(log)], cwd=REPO)


def test_a_held_lock_times_out_naming_its_holder(tmp_path):
    path = tmp_path / "t.lock"
    fd = lock.acquire(path, 0, what="first")
    try:
        with pytest.raises(TimeoutError, match="first"):
            lock.acquire(path, 0.1)
    finally:
        os.close(fd)
    os.close(lock.acquire(path, 0))  # free again once closed
    assert list((tmp_path / "t.queue").iterdir()) == []


def test_waiters_are_served_in_arrival_order(tmp_path):
    path, log = tmp_path / "t.lock", tmp_path / "order"
    fd = lock.acquire(path, 0, what="first")
    procs = []
    try:
        for name in ("c", "a", "b"):
            procs.append(holder(path, name, log))
            for _ in range(100):  # until it is queued
                if len(list((tmp_path / "t.queue").iterdir())) == len(procs):
                    break
                time.sleep(0.05)
    finally:
        os.close(fd)
    for p in procs:
        assert p.wait(timeout=60) == 0
    assert log.read_text().split() == ["c", "a", "b"]


def test_a_dead_waiter_does_not_block_the_queue(tmp_path):
    path = tmp_path / "t.lock"
    queue = tmp_path / "t.queue"
    queue.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (queue / f"{time.time() - 100:.6f}-{dead.pid}").touch()  # an older entry, its process gone
    os.close(lock.acquire(path, 5))
    assert list(queue.iterdir()) == []
