"""The `routing` module on Linux through Salt's loader, with the real BIRD 2
on this machine: bird.conf rendered from the seed's pillar, checked by
`bird -p` and written 0640 root:bird, BIRD started (as user bird), left
alone on a second run, reconfigured with `birdc configure` (same pid, the
BGP protocol kept) on a change, test=True touching nothing; the VIP
announcements are BIRD's direct protocol following a VIP address (a /32)
added to and removed from a dummy interface in a network namespace of its
own, and an announcement that drifted (the protocol disabled) is fixed by
`routing.sync`.

No packet leaves this machine: the seed's interfaces (hn0..hn2) do not exist
here, so OSPF has no interface, and BIRD waits for the BGP neighbor
(10.2.2.1) to appear on a connected network, which none is; the kernel
protocol exports only routes learned from neighbors (none).  Real sessions
and failovers are the lab's (tests/lab/test_routing_lab.py)."""

import ctypes
import ipaddress
import os
import shutil
import subprocess
import time

import pytest
import salt.config
import yaml
from saltfactories.utils.functional import Loaders

import lb_render_linux
import lb_topology
from tests.support import SEED_PILLAR, private_minion

BIRD = shutil.which("bird") or "/usr/sbin/bird"
LOADERS = {}  # tmp_path -> the routing fixture's Loaders (for its states)
CLONE_NEWNET = 0x40000000


def local_networks():
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    return [ipaddress.ip_interface(line.split()[3]).network for line in out.splitlines()]


@pytest.fixture
def routing(tmp_path):
    if not os.path.exists(BIRD):
        pytest.skip("bird (Debian's bird2) is not installed")
    if any(net.overlaps(ipaddress.ip_network("10.2.2.0/24")) for net in local_networks()):
        pytest.skip("this machine is on the seed's 10.2.2.0/24: BIRD would reach the seed's BGP neighbor")
    run = tmp_path / "run-bird"
    paths = {
        "bird": str(tmp_path / "etc-bird" / "bird.conf"),
        "run_dir": str(run),
        "socket": str(run / "bird.ctl"),
    }
    carp = {
        "state_dir": str(tmp_path / "carp"),
        "run_dir": str(tmp_path / "carp-run"),
        "keepalived_config": str(tmp_path / "keepalived.conf"),
    }
    # BIRD, dropping to user bird, must reach its config and socket directory:
    # open the way (o+x) through pytest's 0700 directories for this test only
    opened = []
    for d in [tmp_path, *tmp_path.parents]:
        if str(d) in ("/", "/tmp"):
            break
        mode = d.stat().st_mode & 0o7777
        if not mode & 0o001:
            opened.append((d, mode))
            os.chmod(d, mode | 0o001)
    loaders = Loaders(salt.config.minion_config(private_minion(tmp_path, "salt", lb_settings={"routing": paths, "carp": carp})))
    mod = loaders.modules.routing
    LOADERS[str(tmp_path)] = loaders
    try:
        yield mod, paths, tmp_path
    finally:
        for d, mode in opened:
            os.chmod(d, mode)
        pidfile = run / "bird.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().strip() or 0)
            try:
                if pid and open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].endswith(b"bird"):
                    os.kill(pid, 15)
                    for _ in range(100):
                        if not os.path.exists(f"/proc/{pid}"):
                            break
                        time.sleep(0.1)
            except OSError:
                pass


def birdc(paths, *args):
    return subprocess.run(["birdc", "-s", paths["socket"], *args], capture_output=True, text=True, timeout=10).stdout


def test_present_checks_starts_reconfigures_and_is_idempotent(routing, tmp_path):
    mod, paths, _ = routing
    check = mod.present(test=True)
    assert set(check["changes"]) == {paths["bird"], paths["run_dir"], "bird"}
    assert not os.path.exists(paths["bird"]) and not os.path.exists(paths["run_dir"])  # test=True touched nothing

    first = mod.present()
    assert first["comment"].startswith("bird started"), first
    st = os.stat(paths["bird"])
    assert oct(st.st_mode & 0o777) == "0o640" and st.st_uid == 0
    assert __import__("grp").getgrgid(st.st_gid).gr_name == "bird"
    assert "secret" not in repr(first)  # the md5sig key never in a return
    pid = mod.status()["pid"]
    assert pid
    argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    assert b"secret" not in b" ".join(argv)
    assert "ebgp1" in birdc(paths, "show", "protocols") and "lb_ospf" in birdc(paths, "show", "protocols")

    assert mod.present()["changes"] == {}

    # a changed pillar value: birdc configure, same pid, the session's protocol kept
    raw = lb_topology.load_file(SEED_PILLAR)
    raw["pairs"]["edge"]["routing"]["bgp"]["neighbors"]["ebgp1"]["med"] = 20
    topo = tmp_path / "topo.yaml"
    topo.write_text(yaml.safe_dump({"lb": raw}))
    assert mod.present(topology=str(topo), test=True)["changes"]["bird"]["new"].startswith("reconfigured")
    again = mod.present(topology=str(topo))
    assert "reconfigured" in again["comment"], again
    assert mod.status()["pid"] == pid
    assert "bgp_med = 20;" in open(paths["bird"]).read()
    assert mod.present(topology=str(topo))["changes"] == {}


def test_a_rejected_candidate_leaves_the_live_config(routing, tmp_path, monkeypatch):
    mod, paths, _ = routing
    mod.present()
    live = open(paths["bird"]).read()
    raw = lb_topology.load_file(SEED_PILLAR)
    raw["pairs"]["edge"]["routing"]["bgp"]["neighbors"]["ebgp1"]["med"] = 30
    topo = tmp_path / "topo.yaml"
    topo.write_text(yaml.safe_dump({"lb": raw}))
    # a BIRD that rejects everything stands in for a config it cannot parse
    fake = tmp_path / "bin" / "bird"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bird: syntax error' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with pytest.raises(Exception, match="bird -p rejects"):
        mod.present(topology=str(topo))
    assert open(paths["bird"]).read() == live
    assert not [n for n in os.listdir(os.path.dirname(paths["bird"])) if "candidate" in n]


def test_a_configure_that_fails_after_the_swap_fails_the_state_and_the_next_run_reconfigures(routing, tmp_path):
    """A real failure after the swap: BIRD re-reads bird.conf as user bird,
    and the directory has become unreadable to it (bird -p, run as root,
    still accepts the file).  The state fails WITH its change, BIRD reports
    the old generation (birdc eval lb_config_sha256), and once the directory
    is readable again the next run sees the pending reconfiguration and
    applies it; only then is it "up to date"."""
    mod, paths, _ = routing
    states = LOADERS[str(tmp_path)].states.routing
    assert mod.present()["comment"].startswith("bird started")
    first = mod.loaded()
    assert first["current"] is True and first["loaded"] == first["file"], first
    pid = mod.status()["pid"]
    raw = lb_topology.load_file(SEED_PILLAR)
    raw["pairs"]["edge"]["routing"]["bgp"]["neighbors"]["ebgp1"]["med"] = 40
    topo = tmp_path / "topo.yaml"
    topo.write_text(yaml.safe_dump({"lb": raw}))
    etc = os.path.dirname(paths["bird"])
    mode = os.stat(etc).st_mode & 0o7777
    os.chmod(etc, 0o700)
    try:
        res = states.present(name="edge", topology=str(topo))
        assert res.result is False, res
        assert set(res.changes) == {paths["bird"], "bird"}  # the file did change
        assert "BIRD still runs the old config" in res.comment
        assert "bgp_med = 40;" in open(paths["bird"]).read()
        gen = mod.loaded()
        assert gen["current"] is False and gen["loaded"] == first["loaded"] != gen["file"], gen
        # test=True: the pending reconfiguration, nothing touched
        res = states.present(name="edge", topology=str(topo), test=True)
        assert res.result is None and set(res.changes) == {"bird"}, res
        assert res.changes["bird"]["old"].startswith("BIRD runs an older config")
        # still unreadable: the next run fails loudly, changing nothing
        res = states.present(name="edge", topology=str(topo))
        assert res.result is False and res.changes == {}, res
    finally:
        os.chmod(etc, mode)
    res = states.present(name="edge", topology=str(topo))
    assert res.result is True and set(res.changes) == {"bird"}, res
    assert "runs an older config" in res.comment and res.comment.endswith("reconfigured")
    assert mod.loaded()["current"] is True and mod.status()["pid"] == pid
    again = states.present(name="edge", topology=str(topo))
    assert again.result is True and again.changes == {}, again


@pytest.fixture
def own_netns():
    """This thread in a network namespace of its own for the test (Linux
    keeps the network namespace per thread, and the processes Salt starts
    inherit it): hn1, the seed's VIP interface, is one end of a veth pair
    that stays inside it.  Nothing inside reaches this machine's networks."""
    name = f"lbt-bird-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            for argv in (
                ["ip", "link", "set", "lo", "up"],
                ["ip", "link", "add", "hn1", "type", "veth", "peer", "name", "hn1-peer"],
                ["ip", "link", "set", "hn1", "up"],
                ["ip", "link", "set", "hn1-peer", "up"],
            ):
                subprocess.run(argv, check=True, timeout=10)
            yield name
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)
        subprocess.run(["ip", "netns", "del", name], timeout=10)


def wait_announced(mod, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and mod.announced() != want:
        time.sleep(0.05)
    return mod.announced()


def test_the_announcements_follow_the_vip_addresses_and_sync_repairs_them(own_netns, routing):
    mod, paths, tmp_path = routing
    mod.present()
    assert mod.announced() == []
    # a VIP arrives on the node as keepalived and ucarp add it: a /32
    subprocess.run(["ip", "addr", "add", "10.2.2.5/32", "dev", "hn1"], check=True, timeout=10)
    assert wait_announced(mod, ["10.2.2.5"]) == ["10.2.2.5"]
    # not an address of the pair's VIPs, or a VIP on another prefix: never announced
    subprocess.run(["ip", "addr", "add", "10.2.2.9/32", "dev", "hn1"], check=True, timeout=10)
    subprocess.run(["ip", "addr", "add", "10.2.2.44/24", "dev", "hn1"], check=True, timeout=10)
    time.sleep(0.3)
    assert mod.announced() == ["10.2.2.5"]
    # OSPF originates no stub network for a VIP (it would outlive the address)
    assert "10.2.2.5/32" not in birdc(paths, "show", "ospf", "interface")
    subprocess.run(["ip", "addr", "del", "10.2.2.44/24", "dev", "hn1"], check=True, timeout=10)
    # the VIP leaves: so does its route
    subprocess.run(["ip", "addr", "del", "10.2.2.5/32", "dev", "hn1"], check=True, timeout=10)
    assert wait_announced(mod, []) == []

    # drift: someone disabled the announcements while debugging
    subprocess.run(["ip", "addr", "add", "10.2.2.4/32", "dev", "hn1"], check=True, timeout=10)
    assert wait_announced(mod, ["10.2.2.4"]) == ["10.2.2.4"]
    assert "disabled" in birdc(paths, "disable", "lb_vips")
    assert mod.announced() == []
    # routing.sync asks carp.status (keepalived's provider, real: its config
    # file and `ip addr`) what this node holds
    pair = lb_topology.load(lb_topology.load_file(SEED_PILLAR))["pairs"]["edge"]
    with open(tmp_path / "keepalived.conf", "w") as fh:
        fh.write(lb_render_linux.render_keepalived(pair, "lb-a"))
    assert mod.desired() == ["10.2.2.4"]
    check = mod.sync(test=True)
    assert check["changes"] == {"10.2.2.4": {"old": False, "new": True}}
    assert mod.announced() == []  # test=True touched nothing
    fixed = mod.sync()
    assert fixed["changes"] == {"10.2.2.4": {"old": False, "new": True}}
    assert mod.announced() == ["10.2.2.4"]
    assert mod.sync()["changes"] == {}
