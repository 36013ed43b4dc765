"""The product applies what the pillar says about the host itself (issue 15,
items 1 and 2): the lab gives the load balancers links and base addresses
only (lab/plan.py), so their static routes, forwarding and ip_nonlocal_bind
are there only if the `host` SLS put them there.

- after the highstate every pillar route is live on both nodes, forwarding
  and ip_nonlocal_bind are 1, and the files on each node are what
  `lb.preview` lists for it (content, mode, owner);
- a pillar route deleted on lb-a and ip_forward set to 0 by hand are both
  reported by `state.apply test=True`, which changes neither; `state.apply`
  restores both.
"""

import json
from pathlib import Path

import pytest

from lab import REPO

LBS = ("lb-a", "lb-b")
SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.ip_nonlocal_bind")


def _pillar_routes(lab) -> dict[str, str]:
    pair = next(iter(lab.salt("lb-a", "pillar.get", "lb:pairs", "unmask=True")["lb-a"].values()))
    return {r["destination"]: r["gateway"] for r in pair["routes"].values()}


def _live_routes(lab, host) -> dict[str, str]:
    out = {}
    for line in lab.run(host, "ip", "-4", "route", "show", "table", "main").stdout.splitlines():
        w = line.split()
        if "via" in w:
            out[w[0]] = w[w.index("via") + 1]
    return out


def _sysctl(lab, host, key) -> str:
    return lab.run(host, "sysctl", "-n", key).stdout.strip()


def _by_id(ret: dict) -> dict:
    """A state.apply return keyed by state ID."""
    assert isinstance(ret, dict), ret
    return {v["__id__"]: v for v in ret.values()}


@pytest.fixture
def restored(lab):
    """Whatever a test breaks, a highstate puts back afterwards."""
    yield
    lab.salt("-t", "120", "lb-a", "state.apply", "host", timeout=180)


def test_the_highstate_applied_every_route_and_sysctl_and_the_previewed_files(lab):
    assert lab.converged
    want = _pillar_routes(lab)
    assert want
    for host in LBS:
        assert want.items() <= _live_routes(lab, host).items(), host
        assert {k: _sysctl(lab, host, k) for k in SYSCTLS} == {k: "1" for k in SYSCTLS}, host
        preview = lab.salt(host, "lb.preview")[host]
        host_files = {p: f for p, f in preview.items() if f["state"] == "host"}
        boot = {p for p in host_files if p.startswith(("/etc/systemd/", "/etc/tmpfiles.d/"))}  # lb_boot
        assert set(host_files) - boot == {
            "/etc/sysctl.d/60-lb-pair.conf",
            "/etc/network/if-up.d/lb-pair-routes",
            "/etc/default/lb-pair-routes",
        }
        assert boot, "no boot files"
        for path, f in host_files.items():
            if f["link"]:
                assert lab.run(host, "readlink", path).stdout.strip() == f["link"], (host, path)
                continue
            got = lab.run(host, "stat", "-c", "%a %U %G", path).stdout.split()
            assert got == [f["mode"].lstrip("0"), f["user"], f["group"]], (host, path, got)
            text = f["content"]
            if f["source"]:  # a program of the state tree: its text is that file's
                text = (Path(REPO) / "salt" / f["source"][len("salt://") :]).read_text()
            assert lab.run(host, "cat", path).stdout == text, (host, path)


def test_a_deleted_route_and_forwarding_off_are_reported_then_restored(lab, restored):
    want = _pillar_routes(lab)
    dest = "198.18.4.0/23"
    assert want[dest] == "198.18.3.254"
    assert lab.run("lb-a", "ip", "-4", "route", "del", dest).returncode == 0
    assert lab.run("lb-a", "sysctl", "-qw", "net.ipv4.ip_forward=0").returncode == 0

    dry = _by_id(lab.salt("-t", "120", "lb-a", "state.apply", "host", "test=True", timeout=180)["lb-a"])
    assert dry["lb_host_routes"]["result"] is None, dry["lb_host_routes"]
    assert set(dry["lb_host_routes"]["changes"]) == {dest}
    assert dry["lb_host_sysctl_net.ipv4.ip_forward"]["result"] is None, dry["lb_host_sysctl_net.ipv4.ip_forward"]
    # test=True changed nothing
    assert dest not in _live_routes(lab, "lb-a")
    assert _sysctl(lab, "lb-a", "net.ipv4.ip_forward") == "0"

    done = _by_id(lab.salt("-t", "120", "lb-a", "state.apply", "test=False", timeout=180)["lb-a"])
    assert all(v["result"] is True for v in done.values()), json.dumps(
        {k: v["comment"] for k, v in done.items() if v["result"] is not True}
    )
    assert done["lb_host_routes"]["changes"] == {dest: {"old": None, "new": "via 198.18.3.254"}}
    assert done["lb_host_sysctl_net.ipv4.ip_forward"]["changes"] == {"net.ipv4.ip_forward": "1"}
    assert _live_routes(lab, "lb-a")[dest] == "198.18.3.254"
    assert _sysctl(lab, "lb-a", "net.ipv4.ip_forward") == "1"
