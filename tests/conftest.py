"""Shared test setup: the repo's _utils on sys.path, as Salt puts it there."""

import copy
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "_utils"))
# salt/carp/files/lb_carp_vips.py: a program salt/carp installs, imported by
# its unit tests as a module
sys.path.insert(0, os.path.join(REPO, "salt", "carp", "files"))
sys.path.insert(0, REPO)

import salt._logging.impl  # noqa: E402

import lb_fresh  # noqa: E402

# The test process never has the pure modules rewritten under it, but a file
# saved within a second of its start would count as changed (lb_fresh's
# guard for a minion that synced), and the Salt modules the tests load call
# refresh(): a reloaded lb_topology's TopologyError would not be the class a
# test holds.  tests/unit/test_lb_fresh.py tests a private copy.
lb_fresh.refresh = lambda: []

import lb_topology  # noqa: E402

# Salt installs a deferred stderr handler when it is first imported and
# flushes it at exit, onto the stream pytest captured and has closed by
# then ("--- Logging error ---" after the summary).  Records go to pytest's
# own handlers instead (shown with a failing test).
salt._logging.impl.shutdown_temp_handler()

from tests.support import LAB_PILLAR, SEED_PILLAR  # noqa: E402

_cache = {}


def _load(path):
    if path not in _cache:
        _cache[path] = lb_topology.load_file(path)
    return copy.deepcopy(_cache[path])


@pytest.fixture
def seed_raw():
    """The seed's topology (the pillar's `lb` value), a fresh copy per test."""
    return _load(SEED_PILLAR)


@pytest.fixture
def lab_raw():
    return _load(LAB_PILLAR)


@pytest.fixture
def seed_model():
    return lb_topology.load(_load(SEED_PILLAR))


@pytest.fixture
def lab_model():
    return lb_topology.load(_load(LAB_PILLAR))
