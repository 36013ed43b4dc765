"""The drill's report and chart from a recorded run (lab/drill.py): the
gaps the clients saw, the writer's return, who held the VIPs, and a chart
with a band per node, a mark per failed request and a legend for every
mark.  No lab: the samples are made up here."""

import pytest

from lab import drill

VIPS = ["198.18.2.4", "198.18.2.5"]


def recorded():
    d = drill.Drill(quick=True, phases=("maint",))
    t0 = 1000.0
    d.events = [drill.Event(t0, "start"), drill.Event(t0 + 2, "maint lb-a", "carp.maintenance"), drill.Event(t0 + 6, "end")]
    for i in range(300):  # http every 20 ms; one failure at 3.0 s
        t = t0 + i * 0.02
        d.samples.append(("http", VIPS[i % 2], t, t + 0.005, i != 150, "web-1"))
    for i in range(60):  # sql every 100 ms: db-1, then db-2 from 2.5 s, back to db-1 from 4 s
        t = t0 + i * 0.1
        node = "db-2" if 2.5 <= t - t0 < 4 else "db-1"
        d.samples.append(("sql", "198.18.2.44", t, t + 0.01, True, node))
    for i in range(60):  # lb-a holds both, lb-b from 2.2 s to 4 s
        t = t0 + i * 0.1
        on_b = 2.2 <= t - t0 < 4
        d.holders.append((t, {"lb-a": [] if on_b else VIPS, "lb-b": VIPS if on_b else []}))
    return d, t0


def test_the_report_finds_the_failure_and_the_writers_return():
    d, t0 = recorded()
    r = drill.timeline(d)
    http = [g for g in r["gaps"] if g["kind"] == "http"]
    assert len(http) == 1 and http[0]["failed"] == 1 and http[0]["vip"] == VIPS[0]
    assert r["writers"]["198.18.2.44"] == ["db-1", "db-2", "db-1"]


def test_holder_spans_follow_the_samples():
    d, t0 = recorded()
    a = drill.holder_spans(d.holders, t0, "lb-a", 2)
    b = drill.holder_spans(d.holders, t0, "lb-b", 2)
    assert [w for *_, w in a] == ["all", "all"] and [w for *_, w in b] == ["all"]
    assert b[0][0] == pytest.approx(2.2) and b[0][1] == pytest.approx(4.0)
    assert a[0][1] == pytest.approx(2.2) and a[1][0] == pytest.approx(4.0)


def test_the_chart_is_drawn(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(drill, "ARTIFACTS", tmp_path)
    d, _ = recorded()
    path = drill.chart(d, drill.timeline(d))
    assert path.parent == tmp_path and path.stat().st_size > 10_000
