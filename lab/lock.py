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
    `wait` seconds; raises TimeoutError naming the holder when it cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise TimeoutError(f"{path} is held by {holder(path)}") from None
            if not told:
                print(f"waiting up to {wait:.0f} s for {path} (held by {holder(path)})", flush=True)
                told = True
            time.sleep(POLL)
    path.with_suffix(".owner").write_text(f"pid {os.getpid()} {what}\n")
    return fd
