"""bench/galera_failover.py run under the lab fixture (the lab is used only
through it): `GALERA_BENCH=1 .venv/bin/pytest -s tests/lab/test_galera_bench.py`.
Skipped otherwise: it takes minutes, and the targets are the benchmark's to
report, not a timed test's to hold; here only correctness is asserted (no
committed row lost, one writer at a time)."""

import json
import os
import sys

import pytest

from tests.support import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("GALERA_BENCH") != "1", reason="set GALERA_BENCH=1 to run the Galera failover benchmark"),
]


def test_galera_failover_benchmark(lab, tmp_path):
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import galera_failover

    out = tmp_path / "galera_failover.json"
    runs = int(os.environ.get("GALERA_BENCH_RUNS", "5"))
    assert galera_failover.main(["--runs", str(runs), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    print(json.dumps(report["summary"], indent=1))
    # not a timed test: the gaps are reported, never asserted; what must hold
    # is that every run completed, lost no committed row, had one writer
    assert len(report["planned"]) == runs
    for label, rows in report["variants"].items():
        assert len(rows) == runs, label
        assert report["summary"][label]["lost_committed_rows"] == 0, label
        assert report["summary"][label]["one_writer_at_a_time"] is True, label
