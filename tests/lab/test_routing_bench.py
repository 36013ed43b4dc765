"""Runs bench/routing_failover.py in the lab through the lab fixture.  Not a
timed test: it asserts only that every run completed (the route followed
the VIP each time); the table is printed (run with -s).  Off unless
ROUTING_BENCH=1:

    ROUTING_BENCH=1 .venv/bin/pytest tests/lab/test_routing_bench.py -s
"""

import importlib.util
import os

import pytest

from lab import REPO

pytestmark = pytest.mark.skipif(os.environ.get("ROUTING_BENCH") != "1", reason="the routing bench runs only with ROUTING_BENCH=1")


def test_routing_failover_bench(lab):
    if "up1" not in lab.state["hosts"]:
        pytest.skip("the running lab has no upstream router: take it down and run again")
    lab.salt("-t", "120", "-L", "lb-a,lb-b", "state.apply", "carp,carp.events,routing", "queue=True", timeout=240)
    spec = importlib.util.spec_from_file_location("routing_failover", os.path.join(REPO, "bench", "routing_failover.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    runs = int(os.environ.get("ROUTING_BENCH_RUNS", "5"))
    assert bench.main(["--runs", str(runs)]) == 0
