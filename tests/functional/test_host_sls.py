"""The `host` SLS (salt/host) applied for real, as lb-a of the lab pillar, in
a network namespace this test creates (its sysctls and routes are the
namespace's) and a private mount namespace whose /etc/sysctl.d,
/etc/network/if-up.d, /etc/default, /etc/systemd/system and /etc/tmpfiles.d
are this test's directories (tests/functional/host_sls_env.py).

What it proves, on this machine's kernel:
- test=True reports every file, sysctl and route it would set, and changes nothing;
- an apply writes exactly the previewed files (content, mode, owner), sets
  forwarding and ip_nonlocal_bind live, and adds every pillar route;
- a second apply changes nothing, and pays no cmd.run (no `cmd` state);
- a deleted route and forwarding set to 0 are reported by test=True and
  restored by an apply;
- the boot path without Salt: the if-up.d program (as ifupdown runs it)
  adds the routes of its data file, and `sysctl -p` of the file sets the
  values.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO

# lb-a's interfaces in the lab pillar: the routes' gateways are on them
LINKS = {"lb-a-eth0": "198.18.1.241/24", "lb-a-eth1": "198.18.2.241/24", "lb-a-eth2": "198.18.3.241/24"}
PILLAR_ROUTES = {
    "198.19.1.0/24": "198.18.1.254",
    "198.18.0.0/24": "198.18.2.254",
    "198.18.4.0/23": "198.18.3.254",
    "198.18.6.0/24": "198.18.3.254",
    "198.19.2.0/24": "198.18.2.1",
}
SYSCTL = "/etc/sysctl.d/60-lb-pair.conf"
ROUTES = "/etc/network/if-up.d/lb-pair-routes"
ROUTES_DATA = "/etc/default/lb-pair-routes"
DROPIN = "/etc/systemd/system/haproxy.service.d/lb-pair.conf"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("host")
    name = f"lbhost{os.getpid() % 10000}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {res.stderr.strip()}")
    try:
        ns = ["ip", "-n", name]
        subprocess.run([*ns, "link", "set", "lo", "up"], check=True, timeout=10)
        for n, (dev, addr) in enumerate(LINKS.items()):
            subprocess.run([*ns, "link", "add", dev, "type", "veth", "peer", "name", f"hpeer{n}"], check=True, timeout=10)
            subprocess.run([*ns, "addr", "add", addr, "dev", dev], check=True, timeout=10)
            subprocess.run([*ns, "link", "set", dev, "up"], check=True, timeout=10)
            subprocess.run([*ns, "link", "set", f"hpeer{n}", "up"], check=True, timeout=10)
        sysctl_d, if_up, default = tmp / "sysctl.d", tmp / "if-up.d", tmp / "default"
        units, tmpfiles = tmp / "systemd", tmp / "tmpfiles.d"  # the boot files (lb_boot)
        for d in (sysctl_d, if_up, default, units, tmpfiles):
            d.mkdir()
        inner = (
            f"mount --bind {sysctl_d} /etc/sysctl.d && mount --bind {if_up} /etc/network/if-up.d && "
            f"mount --bind {default} /etc/default && "
            f"mount --bind {units} /etc/systemd/system && mount --bind {tmpfiles} /etc/tmpfiles.d && "
            f"exec {sys.executable} {os.path.join(REPO, 'tests', 'functional', 'host_sls_env.py')} {tmp}"
        )
        out = subprocess.run(
            ["ip", "netns", "exec", name, "unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=REPO,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        steps = json.loads(out.stdout)
        steps["dirs"] = {"sysctl.d": str(sysctl_d), "if-up.d": str(if_up), "default": str(default), "systemd": str(units)}
        yield steps
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def routes(text):
    out = {}
    for line in text.splitlines():
        w = line.split()
        if "via" in w:
            out[w[0]] = w[w.index("via") + 1]
    return out


def test_test_mode_reports_everything_and_changes_nothing(run):
    before, dry = run["before"], run["dry"]
    assert before["sysctl"]["net.ipv4.ip_forward"] == "0"  # a new namespace
    assert dry["after"] == before
    assert {sid for sid, r in dry["ret"].items() if r["result"] is not None} == set(), dry["ret"]
    assert set(dry["ret"]["lb_host_routes"]["changes"]) == set(PILLAR_ROUTES)
    assert "net.ipv4.ip_forward" in dry["ret"]["lb_host_sysctl_net.ipv4.ip_forward"]["comment"]


def test_apply_writes_the_previewed_files_and_sets_sysctls_and_routes_live(run):
    after = run["apply"]["after"]
    assert all(r["result"] is True for r in run["apply"]["ret"].values()), run["apply"]["ret"]
    boot = {p for p in run["plan"]["files"] if p.startswith(("/etc/systemd/", "/etc/tmpfiles.d/"))}
    assert set(run["plan"]["files"]) - boot == {SYSCTL, ROUTES, ROUTES_DATA}
    assert DROPIN in boot
    for path in run["plan"]["files"]:
        f, want = after["files"][path], run["preview"][path]
        assert f is not None, path
        content = want["content"]
        if want["source"]:  # a program of the state tree: its text is that file's
            with open(os.path.join(REPO, "salt", want["source"][len("salt://") :])) as fh:
                content = fh.read()
        assert (f["content"], f["mode"], f["uid"], f["gid"], f.get("link")) == (content, want["mode"], 0, 0, want["link"]), path
    assert "net.ipv4.ip_nonlocal_bind = 1" in after["files"][SYSCTL]["content"]
    assert after["sysctl"] == {"net.ipv4.ip_forward": "1", "net.ipv4.ip_nonlocal_bind": "1"}
    assert PILLAR_ROUTES.items() <= routes(after["routes"]).items()
    # the files landed in the test's directories, not in this machine's /etc
    assert os.path.exists(os.path.join(run["dirs"]["sysctl.d"], "60-lb-pair.conf"))
    assert os.path.exists(os.path.join(run["dirs"]["if-up.d"], "lb-pair-routes"))
    assert os.path.exists(os.path.join(run["dirs"]["default"], "lb-pair-routes"))
    assert os.path.exists(os.path.join(run["dirs"]["systemd"], DROPIN.split("/etc/systemd/system/")[1]))


def test_a_second_apply_changes_nothing_and_runs_no_command_state(run):
    again = run["again"]["ret"]
    assert {sid: r["changes"] for sid, r in again.items() if r["changes"]} == {}
    assert all(r["result"] is True for r in again.values())
    assert not [sid for sid in again if sid.startswith("cmd")]
    sysctl_ms = sum(r["duration"] for sid, r in again.items() if sid.startswith("lb_host_sysctl"))
    print(
        f"no-op host SLS: {run['again']['seconds']:.2f} s in all; sysctl states {sysctl_ms:.0f} ms; "
        + ", ".join(f"{sid} {r['duration']:.0f} ms" for sid, r in again.items())
    )
    # sysctl.present reads the file and `sysctl -n`; the cmd.run it replaces took 1.3-4 s
    assert sysctl_ms < 1000, again


def test_a_deleted_route_and_forwarding_off_are_reported_then_restored(run):
    dry, repair = run["broken_dry"], run["repair"]
    assert dry["ret"]["lb_host_routes"]["result"] is None
    assert set(dry["ret"]["lb_host_routes"]["changes"]) == {"198.18.4.0/23"}
    assert dry["ret"]["lb_host_sysctl_net.ipv4.ip_forward"]["result"] is None
    assert dry["after"]["sysctl"]["net.ipv4.ip_forward"] == "0"
    assert "198.18.4.0/23" not in routes(dry["after"]["routes"])
    assert repair["ret"]["lb_host_routes"]["changes"] == {"198.18.4.0/23": {"old": None, "new": "via 198.18.3.254"}}
    assert repair["ret"]["lb_host_sysctl_net.ipv4.ip_forward"]["changes"] == {"net.ipv4.ip_forward": "1"}
    assert repair["after"]["sysctl"]["net.ipv4.ip_forward"] == "1"
    assert PILLAR_ROUTES.items() <= routes(repair["after"]["routes"]).items()


def test_the_boot_files_alone_restore_routes_and_sysctls(run):
    boot = run["boot"]
    assert boot["script_rc"] == 0, boot["script_err"]
    assert PILLAR_ROUTES.items() <= routes(boot["after"]["routes"]).items()
    assert boot["after"]["sysctl"] == {"net.ipv4.ip_forward": "1", "net.ipv4.ip_nonlocal_bind": "1"}
