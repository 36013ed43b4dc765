"""Runs bench/carp_failover.py in the lab through the lab fixture (the one
way this project's tools may use the lab).  Not a timed test: it asserts only
that the bench completed; the table is printed (run with -s).  Off unless
CARP_BENCH=1, since it takes about 15 minutes:

    CARP_BENCH=1 .venv/bin/pytest tests/lab/test_carp_bench.py -s
"""

import importlib.util
import os

import pytest

from lab import REPO

pytestmark = pytest.mark.skipif(os.environ.get("CARP_BENCH") != "1", reason="the CARP failover bench runs only with CARP_BENCH=1")


def test_carp_failover_bench(lab):
    spec = importlib.util.spec_from_file_location("carp_failover", os.path.join(REPO, "bench", "carp_failover.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    runs = int(os.environ.get("CARP_BENCH_RUNS", "5"))
    only = os.environ.get("CARP_BENCH_ONLY")  # keepalived or ucarp: that daemon's two rows
    assert bench.main(["--runs", str(runs), *(["--only", only] if only else [])]) == 0
