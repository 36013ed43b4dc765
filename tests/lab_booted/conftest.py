"""The booted lab as a pytest fixture: `python -m lab up --booted`, the load
balancers Debian hosts booted by systemd under nspawn in the Mininet lab
(lab/lbhosts.py), everything else as in tests/lab.  Its own pytest run
(`make test-lab` runs tests/lab, then this): one lab per machine at a time.
"""

from pathlib import Path

import pytest

from tests.support import labsession

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.lab)
    labsession.only_one_kind(items, HERE, HERE.parent / "lab")


@pytest.fixture(scope="session")
def lab():
    labsession.skip_unless_possible()
    from lab import booted

    why = booted.available()
    if why:
        pytest.skip(f"booted hosts cannot run here: {why}")
    yield from labsession.session(booted=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session):
    with labsession.machine_lock(session.items, HERE):
        yield


@pytest.fixture(autouse=True, scope="module")
def _settled_pair(request):
    """Every module starts from a settled pair and leaves one (tests/lab's rule)."""
    yield from labsession.settled_around(request)
