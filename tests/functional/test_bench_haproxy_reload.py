"""The reload benchmark runs end to end (small numbers: it is a smoke test,
the numbers that matter come from running bench/haproxy_reload.py)."""

import json
import os
import subprocess
import sys

import psutil

from tests.support import REPO


def test_bench_runs_both_ways_and_the_projects_reload_loses_nothing(tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "bench", "haproxy_reload.py"),
            "--requests",
            "600",
            "--reloads",
            "4",
            "--clients",
            "2",
            "--runs",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    assert set(data["summary"]) == {"project", "plain-sf"}
    for way in ("project", "plain-sf"):
        (run,) = data["runs"][way]
        assert run["reloads"] == 4 and run["requests"] == 600
    assert data["summary"]["project"]["failed_total"] == 0 and data["target_met"] is True
    assert "ratio project / plain-sf" in r.stdout
    # nothing the bench started is left running (its files live in /tmp/hxb-*)
    left = []
    for p in psutil.process_iter(["name", "status", "cmdline"]):
        if p.info["name"] == "haproxy" and p.info["status"] != psutil.STATUS_ZOMBIE and any("/hxb-" in a for a in p.info["cmdline"] or []):
            left.append(p.pid)
    assert left == []
