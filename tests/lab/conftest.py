"""The lab as a pytest fixture.

`lab` (session scope) brings the lab up with `python -m lab up`, or reuses one
that is already running; it takes down only a lab it brought up itself, and
always does, even when tests fail.  Every test under tests/lab is marked `lab`;
tests marked `lab_teardown` run after all the others.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import PILLAR, REPO, control, lock, saltcfg, state
from lab.plan import plan_from_pillar

UP_TIMEOUT = 600  # seconds for `python -m lab up`, highstate included
SETTLE_WAIT = 90  # seconds for the pair to settle before and after each module
LOCK_WAIT = 3600  # seconds to wait for another lab test run or lab on this machine
HERE = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "lab_teardown: takes the lab down; runs after every other test")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.lab)
    items.sort(key=lambda item: item.get_closest_marker("lab_teardown") is not None)  # stable


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

    def run(self, host: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a command in a lab host."""
        return control.run(host, *cmd, timeout=timeout)

    def salt(self, *args: str, timeout: float = 120) -> dict:
        """`salt ... --out=json --static` against the lab's master: {minion: return}."""
        return saltcfg.salt_json(*args, timeout=timeout)

    def down(self) -> int:
        return control.down()


@pytest.fixture(scope="session")
def lab():
    if os.geteuid() != 0 or not shutil.which("mnexec"):
        pytest.skip("the lab needs root and Mininet (mnexec)")
    yield from _lab_session()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session):
    """One lab test run per machine at a time (lab/lock.py), held for the
    whole run.  Taken here, before the first test starts, so that waiting for
    another run is not counted in a test's timeout."""
    fd = None
    if any(HERE in item.path.parents for item in session.items) and os.geteuid() == 0 and shutil.which("mnexec"):
        fd = lock.acquire(lock.TESTS_LOCK, LOCK_WAIT, what=f"pytest lab session in {REPO}")
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _lab_session():
    up = None
    owned = control.running() is None
    if owned:
        try:
            up = subprocess.run(
                [sys.executable, "-m", "lab", "up", "--wait", str(LOCK_WAIT)],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=UP_TIMEOUT + LOCK_WAIT,
            )
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


@pytest.fixture(autouse=True, scope="module")
def _settled_pair(request, _no_lingering_jobs):
    """Every lab module starts from the settled pair the lab's highstate
    makes (lab/carp_tools.pair_problems: the primary alone holds every
    VIP and is MASTER, the peer BACKUP, no maintenance, HAProxy listening on
    both, no job running) and leaves it so.  Either failure says which
    module, which condition and what was seen."""
    if "lab" not in request.fixturenames:
        yield
        return
    from lab.carp_tools import wait_settled

    lab = request.getfixturevalue("lab")
    name = request.module.__name__
    problems, view = wait_settled(lab.salt, SETTLE_WAIT)
    if problems:
        pytest.fail(f"precondition of {name}: the pair is not settled after {SETTLE_WAIT} s: {problems}; saw {view}")
    yield
    if control.running() is None:
        return  # taken down on purpose (the lab_teardown test)
    problems, view = wait_settled(lab.salt, SETTLE_WAIT)
    if problems:
        pytest.fail(f"{name} left the pair unsettled ({SETTLE_WAIT} s later): {problems}; saw {view}")


@pytest.fixture(autouse=True, scope="module")
def _no_lingering_jobs(request):
    """Before each lab module: no minion still lists a job the master already
    has the return of (lab/saltcfg.py: reap_lingering_jobs); such a job
    refuses every later state run on that minion."""
    if "lab" in request.fixturenames:
        lab = request.getfixturevalue("lab")
        saltcfg.reap_lingering_jobs(lab.plan.minion_ids)
    yield
