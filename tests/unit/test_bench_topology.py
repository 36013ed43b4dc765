"""The scale benchmark's generator makes valid topologies (so the bench
measures real work, and does not rot)."""

import os
import subprocess
import sys

import lb_topology
from tests.support import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))

import topology_scale  # noqa: E402


def test_generated_topology_is_valid_and_sized():
    raw = topology_scale.make_topology(3, servers=100)
    model = lb_topology.load(raw)
    assert len(model["pairs"]) == 3
    assert sum(len(p["servers"]) for pair in model["pairs"].values() for p in pair["haproxy"]["pools"].values()) == 300


def test_bench_runs_and_reports_a_table():
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "topology_scale.py"), "--sizes", "1,2", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "per-pair x" in r.stdout and len(r.stdout.strip().splitlines()) == 4
