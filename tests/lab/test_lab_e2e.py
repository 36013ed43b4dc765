"""The lab's own promises (issue 7, second half): `up` ends with the path
working end to end from the client host (HTTP through each HTTP VIP, a SQL
write and read through each MySQL VIP, on the real Galera cluster `up`
bootstrapped), a second `up` converges again and checks again, and a short
drill (cut, HAProxy reload, database kill; shorter settling than `make
drill`, everything real) prints a timeline and writes a PNG.  `down`'s
promises are in test_lab_network.py's lab_teardown test."""

import subprocess
import sys

import pytest

from lab import REPO, drill, e2e, galera


@pytest.fixture(scope="module")
def converged(lab):
    """`up` again: on a running lab it converges (other modules take CARP
    and HAProxy down in their teardown) and runs the end-to-end checks."""
    again = subprocess.run([sys.executable, "-m", "lab", "up"], cwd=REPO, capture_output=True, text=True, timeout=600)
    return again


def test_up_ends_with_the_path_working_end_to_end(lab, converged):
    if lab.up is not None:  # this session's own first `up`
        print(lab.up.stdout)
        assert "end to end, from the client host" in lab.up.stdout, lab.up.stdout[-3000:]
        assert lab.up.returncode == 0, lab.up.stdout[-3000:]
        assert "lab converged in" in lab.up.stdout
    out = converged.stdout
    assert converged.returncode == 0, out[-3000:] + converged.stderr[-2000:]
    assert "already up" in out and "lab converged in" in out and "FAIL" not in out, out[-3000:]
    for vip in ("198.18.2.5:80", "198.18.2.55:80", "198.18.2.4:3306", "198.18.2.44:3306"):
        assert any(line.strip().startswith("OK") and vip in line for line in out.splitlines()), (vip, out[-3000:])


def test_every_vip_answers_and_both_mysql_vips_reach_a_synced_galera(lab, converged):
    checks = {c.what.split()[1]: c for c in e2e.checks()}
    assert set(checks) == {"198.18.2.5:80", "198.18.2.55:80", "198.18.2.4:3306", "198.18.2.44:3306"}
    assert all(c.ok for c in checks.values()), checks
    # the pillar's active servers: galera_a's on db-1; galera_b's (percona_mysql-6,
    # without --galera6 an address of db-3) on db-3
    if not lab.state["galera6"]:
        assert "on db-1" in checks["198.18.2.4:3306"].detail and "on db-3" in checks["198.18.2.44:3306"].detail
    g = galera.Galera(lab.plan)
    assert {h: g.status(h)["wsrep_local_state"] for h in g.hosts} == {"db-1": "4", "db-2": "4", "db-3": "4"}
    assert {g.status(h)["wsrep_cluster_size"] for h in g.hosts} == {"3"}


def test_a_short_drill_prints_a_timeline_and_writes_a_png(lab, converged, capsys):
    report = drill.run(quick=True, phases=("cut", "reload", "kill"))
    out = capsys.readouterr().out
    labels = [p["event"] for p in report["phases"]]
    assert labels[0] == "start" and labels[-1] == "end"
    for event in ("cut lb-a", "VIPs on lb-b", "restore lb-a", "VIPs on lb-a", "reload lb-a", "kill db-1", "restart db-1", "db-1 synced"):
        assert event in labels, labels
        assert event in out
    assert "gaps the clients saw" in out and "timeline" in out
    png = report["png"]
    assert png.startswith(str(REPO / "artifacts" / "drill-")) and png.endswith(".png")
    with open(png, "rb") as fh:
        head = fh.read(8)
    assert head == b"\x89PNG\r\n\x1a\n"
    totals = report["totals"]
    assert totals["http"]["ok"] > 100 and totals["sql"]["ok"] > 20, totals
    # the cut is seen and survived: the VIPs moved, requests succeed after each event
    for phase in report["phases"][1:]:
        if phase["event"] in ("VIPs on lb-b", "VIPs on lb-a", "db-1 synced"):
            assert phase["kinds"]["http"]["ok"] > 0, phase
    # writes through .4 went to db-1, then a backup while db-1 was down: one writer at a time
    nodes = report["writers"].get("198.18.2.4", [])
    assert nodes[:2] in (["db-1", "db-2"], ["db-1", "db-3"]) or nodes == ["db-1"], nodes
    assert e2e.checks() and all(c.ok for c in e2e.checks())
