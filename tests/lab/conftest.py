"""The lab as a pytest fixture (tests/support/labsession.py).

`lab` (session scope) brings the lab up with `python -m lab up`, or reuses one
that is already running; it takes down only a lab it brought up itself, and
always does, even when tests fail.  Every test under tests/lab is marked `lab`;
tests marked `lab_teardown` run after all the others.
"""

from pathlib import Path

import pytest

from tests.support import labsession

HERE = Path(__file__).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "lab_teardown: takes the lab down; runs after every other test")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.lab)
    items.sort(key=lambda item: item.get_closest_marker("lab_teardown") is not None)  # stable


@pytest.fixture(scope="session")
def lab():
    labsession.skip_unless_possible()
    yield from labsession.session(booted=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session):
    with labsession.machine_lock(session.items, HERE):
        yield


@pytest.fixture(autouse=True, scope="module")
def _settled_pair(request):
    """Every lab module starts from the settled pair the lab's highstate
    makes (lab/carp_tools.pair_problems: the primary alone holds every
    VIP and is MASTER, the peer BACKUP, no maintenance, HAProxy listening on
    both, no job running: no minion still lists a job the master already has
    the return of, lab/saltcfg.py reap_lingering_jobs) and leaves it so."""
    yield from labsession.settled_around(request)
