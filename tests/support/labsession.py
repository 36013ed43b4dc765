"""The Mininet lab as a pytest session: what tests/lab/conftest.py (the
default lab) and tests/lab_booted/conftest.py (`python -m lab up --booted`:
the load balancers booted by systemd under nspawn) share.

A session brings the lab up, or reuses one that is already running (of the
same kind); it takes down only a lab it brought up itself, and always does,
even when tests fail.  Every lab module starts from a settled pair and
leaves one; one lab test run per machine at a time (lab/lock.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

import pytest

from lab import PILLAR, REPO, control, lock, saltcfg, state
from lab.plan import plan_from_pillar

UP_TIMEOUT = 600  # seconds for `python -m lab up`, highstate included
SETTLE_WAIT = 90  # seconds for the pair to settle before and after each module
LOCK_WAIT = 3600  # seconds to wait for another lab test run or lab on this machine


class Lab:
    """A running lab, as the tests see it."""

    def __init__(self, owned: bool, up: subprocess.CompletedProcess | None):
        self.owned = owned  # brought up by this session, so taken down by it
        self.up = up  # the `python -m lab up` run, when this session made it
        self.state = state.load()
        self.plan = plan_from_pillar(PILLAR, galera6=self.state["galera6"])

    @property
    def converged(self) -> bool:
        return self.up is None or self.up.returncode == 0

    @property
    def booted(self) -> list[str]:
        return list(self.state.get("booted") or [])

    def run(self, host: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a command in a lab host."""
        return control.run(host, *cmd, timeout=timeout)

    def salt(self, *args: str, timeout: float = 120) -> dict:
        """`salt ... --out=json --static` against the lab's master: {minion: return}."""
        return saltcfg.salt_json(*args, timeout=timeout)

    def down(self) -> int:
        return control.down()


def skip_unless_possible() -> None:
    if os.geteuid() != 0 or not shutil.which("mnexec"):
        pytest.skip("the lab needs root and Mininet (mnexec)")


def only_one_kind(items, here, other) -> None:
    """Skip the tests under `here` when the run also has tests under `other`
    (the other kind of lab): one lab per machine, so one kind per run."""
    if any(other in item.path.parents for item in items):
        why = f"the lab under {here.name} needs a lab of its own: run `pytest {here.relative_to(REPO)}` by itself"
        for item in items:
            if here in item.path.parents:
                item.add_marker(pytest.mark.skip(reason=why))


def session(booted: bool = False):
    """Yield the Lab: a running one of the same kind, else one brought up
    here (and taken down after the last test)."""
    up = None
    st = control.running()
    if st is not None and bool(st.get("booted")) != booted:
        pytest.fail(f"a lab with booted={bool(st.get('booted'))} is running; these tests need booted={booted}: python -m lab down")
    owned = st is None
    if owned:
        argv = [sys.executable, "-m", "lab", "up", "--wait", str(LOCK_WAIT), *(["--booted"] if booted else [])]
        try:
            up = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=UP_TIMEOUT + LOCK_WAIT)
        except BaseException:
            control.down()
            raise
        if control.running() is None:
            control.down()
            pytest.fail(f"`python -m lab up` failed:\n{up.stdout}\n{up.stderr}")
    try:
        yield Lab(owned, up)
    finally:
        if owned:
            control.down()


@contextlib.contextmanager
def machine_lock(session_items, here):
    """One lab test run per machine at a time: the machine's lab-test lock
    (lab/lock.py), held while the run lasts when it has a test under
    `here`.  Taken in pytest_runtestloop, before the first test starts, so
    that waiting for another run is not counted in a test's timeout."""
    fd = None
    if not _held and any(here in item.path.parents for item in session_items) and os.geteuid() == 0 and shutil.which("mnexec"):
        fd = lock.acquire(lock.TESTS_LOCK, LOCK_WAIT, what=f"pytest lab session in {REPO}")
        _held.append(fd)  # one run with both tiers' conftests takes it once
    try:
        yield
    finally:
        if fd is not None:
            _held.remove(fd)
            os.close(fd)


_held: list[int] = []


def settled_around(request):
    """The body of the autouse module fixture: the pair settled before the
    module (lab/carp_tools.pair_problems) and after it; either failure says
    which module, which condition and what was seen."""
    if "lab" not in request.fixturenames:
        yield
        return
    from lab.carp_tools import wait_settled

    lab = request.getfixturevalue("lab")
    saltcfg.reap_lingering_jobs(lab.plan.minion_ids)
    name = request.module.__name__
    problems, view = wait_settled(lab.salt, SETTLE_WAIT)
    if problems:
        # a lab this session brought up that did not converge: what `up` said
        why = (
            ""
            if lab.converged
            else "\n`python -m lab up` did not converge; its output ends:\n" + "\n".join(lab.up.stdout.splitlines()[-40:])
        )
        pytest.fail(f"precondition of {name}: the pair is not settled after {SETTLE_WAIT} s: {problems}; saw {view}{why}")
    yield
    if control.running() is None:
        return  # taken down on purpose (the lab_teardown test)
    problems, view = wait_settled(lab.salt, SETTLE_WAIT)
    if problems:
        pytest.fail(f"{name} left the pair unsettled ({SETTLE_WAIT} s later): {problems}; saw {view}")
