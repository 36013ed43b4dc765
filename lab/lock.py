"""One lab per machine: a lock under /run that the lab's supervisor holds.

The lab's bridges (lab-*), the master's address in the root namespace and the
hosts' shared directories are machine-wide, so two labs (two clones, two
sessions) would break each other.  `python -m lab up` takes LAB_LOCK (waiting
up to --wait seconds for another lab to go), hands it to the supervisor, and
the lock lives exactly as long as the supervisor does: a crashed supervisor
cannot leave it held.  Lab test sessions take TESTS_LOCK for their whole run,
so two pytest runs never drive the same lab at once.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

RUN = Path(os.environ.get("LB_LAB_RUN", "/run"))
LAB_LOCK = RUN / "lb-lab.lock"
TESTS_LOCK = RUN / "lb-lab-tests.lock"
POLL = 2.0  # seconds between attempts while waiting


def holder(path: Path) -> str:
    """Who holds the lock, as its holder wrote it (best effort)."""
    try:
        return path.with_suffix(".owner").read_text().strip() or "unknown"
    except FileNotFoundError:
        return "unknown"


def acquire(path: Path, wait: float = 0.0, what: str = "") -> int:
    """Open and lock `path`; return the fd (held until closed).  Waits up to
    `wait` seconds, first come first served among waiters (a queue of
    `<time>-<pid>` entries beside the lock; a dead waiter's entry is dropped);
    raises TimeoutError naming the holder when it cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    queue = path.with_suffix(".queue")
    queue.mkdir(exist_ok=True)
    me = queue / f"{time.time():.6f}-{os.getpid()}"
    me.touch()
    deadline = time.monotonic() + wait
    told = False
    try:
        while True:
            if _first_in(queue, me):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
            if time.monotonic() >= deadline:
                os.close(fd)
                raise TimeoutError(f"{path} is held by {holder(path)}")
            if not told:
                print(f"waiting up to {wait:.0f} s for {path} (held by {holder(path)})", flush=True)
                told = True
            time.sleep(POLL)
    finally:
        me.unlink(missing_ok=True)
    path.with_suffix(".owner").write_text(f"pid {os.getpid()} {what}\n")
    return fd


def _first_in(queue: Path, me: Path) -> bool:
    """Whether `me` is the oldest live waiter in `queue`."""
    live = []
    for entry in queue.iterdir():
        try:
            stamp, pid = entry.name.rsplit("-", 1)
            alive = os.path.exists(f"/proc/{int(pid)}")
            key = (float(stamp), int(pid))
        except ValueError:
            alive = False
        if not alive:
            entry.unlink(missing_ok=True)
            continue
        live.append((key, entry))
    return not live or min(live)[1] == me
