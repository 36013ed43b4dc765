"""The Linux carp providers through Salt's loader, on this machine, without
network namespaces: keepalived's config written and checked by the real
`keepalived -t`, keepalived itself started, reloaded and stopped by pid on
DOWN interfaces (ifb0/ifb1: its instances go FAULT, no packet is sent and no
address is added), the ucarp command lines (no password in argv), and the
maintenance files.  Real failovers are the lab's (tests/lab)."""

import importlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import salt.config
import yaml
from salt.exceptions import CommandExecutionError
from saltfactories.utils.functional import Loaders

import carp_common
import lb_files
import lb_render_linux
import lb_topology
import lb_view
from lab import netview
from tests.support import REPO, SEED_PILLAR, carp_program, install_carp_programs, private_minion

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"


@pytest.fixture
def netns(tmp_path):
    """A network namespace of this test's own with two multicast-capable
    interfaces that stay DOWN (a veth pair), and a keepalived wrapper that
    runs keepalived in it: its instances go FAULT, nothing is sent, and what
    its scripts do to addresses and routes stays in the namespace."""
    name = f"lbct{os.getpid() % 10000}"
    devices = [f"{name}a", f"{name}b"]
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {res.stderr.strip()}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        subprocess.run(["ip", "-n", name, "link", "add", devices[0], "type", "veth", "peer", "name", devices[1]], check=True, timeout=10)
        wrapper = tmp_path / "keepalived-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {name} {KEEPALIVED} "$@"\n')
        wrapper.chmod(0o755)
        yield {"name": name, "devices": devices, "keepalived": str(wrapper)}
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def topology_file(tmp_path, provider, vip_dev="hn1", sys_dev="hn2"):
    raw = lb_topology.load_file(SEED_PILLAR)
    pair = raw["pairs"]["edge"]
    pair["carp"]["linux_provider"] = provider
    for node in pair["nodes"].values():
        node["interfaces"]["vip"]["device"] = vip_dev
        node["interfaces"]["systems"]["device"] = sys_dev
    path = tmp_path / "lb.yaml"
    path.write_text(yaml.safe_dump({"lb": raw}))
    return str(path)


def make_loaders(root, provider, carp_paths):
    path = private_minion(root, "salt", lb_settings={"carp": dict(carp_paths, provider=provider)})
    return Loaders(salt.config.minion_config(path))


def install_programs(loaders):
    """What salt/carp does before carp.present: every program carp.programs
    names, installed by Salt's own file.managed from this repo's state tree."""
    for p in loaders.modules.carp.programs():
        ret = loaders.states.file.managed(name=p["path"], source=p["source"], mode=p["mode"], makedirs=True)
        assert ret.result is True, ret


@pytest.fixture
def carp_paths(tmp_path):
    return {
        "state_dir": str(tmp_path / "var-lib-lb-carp"),
        "script_dir": str(tmp_path / "sbin"),
        "run_dir": str(tmp_path / "run"),
        "keepalived_config": str(tmp_path / "etc-keepalived" / "keepalived.conf"),
        "ucarp_dir": str(tmp_path / "etc-ucarp"),
    }


def stop_keepalived(carp_paths):
    """Stop whatever keepalived a test started, by its own pid file."""
    pidfile = os.path.join(carp_paths["run_dir"], "keepalived.pid")
    if not os.path.exists(pidfile):
        return
    pid = int(open(pidfile).read().strip() or 0)
    try:
        if pid and b"keepalived" in open(f"/proc/{pid}/cmdline", "rb").read():
            os.kill(pid, 15)
            for _ in range(100):
                if not os.path.exists(f"/proc/{pid}") or not open(f"/proc/{pid}/cmdline", "rb").read():
                    break
                time.sleep(0.1)
    except OSError:
        pass


@pytest.fixture
def keepalived(tmp_path, carp_paths):
    loaders = make_loaders(tmp_path, "keepalived", carp_paths)
    yield loaders.modules.carp
    stop_keepalived(carp_paths)


@pytest.fixture
def keepalived_in_netns(tmp_path, carp_paths, netns):
    """The carp module with keepalived run in the test's own namespace."""
    loaders = make_loaders(tmp_path, "keepalived", dict(carp_paths, keepalived_bin=netns["keepalived"]))
    install_programs(loaders)
    try:
        yield loaders.modules.carp
    finally:
        stop_keepalived(carp_paths)


@pytest.fixture
def ucarp(tmp_path, carp_paths):
    return make_loaders(tmp_path, "ucarp", carp_paths).modules.carp


def test_the_pillar_chooses_the_provider(keepalived, ucarp):
    assert keepalived.provider() == "keepalived"
    assert ucarp.provider() == "ucarp"


def test_keepalived_config_written_checked_and_idempotent(keepalived, tmp_path, carp_paths):
    topo = topology_file(tmp_path, "keepalived")
    first = keepalived.present(topology=topo, test=True)
    assert sorted(k for k in first["changes"] if isinstance(k, int)) == [4, 5, 44, 55]
    assert keepalived.present_pending(topology=topo) == first  # what the state asks
    assert keepalived.absent_pending() == {"changes": {}, "comment": "no such CARP group here"}
    assert not os.path.exists(carp_paths["keepalived_config"])  # test mode wrote nothing

    # the same check keepalived.present makes, on the real binary: the
    # rendered config is valid but for the interfaces this machine lacks
    model = lb_topology.load(lb_topology.load_file(topo))
    pair, _ = lb_topology.find_node(model, "lb-a")
    text = lb_render_linux.render_keepalived(pair, "lb-a", state_dir=carp_paths["state_dir"], script_dir=carp_paths["script_dir"])
    conf = tmp_path / "check.conf"
    conf.write_text(text)
    res = subprocess.run([KEEPALIVED, "--config-test", "--use-file", str(conf)], capture_output=True, text=True, timeout=30)
    other = [
        line for line in res.stderr.splitlines() if line.strip() and "doesn't exist" not in line and "Non-existent interface" not in line
    ]
    assert other == [], res.stderr
    fifo_script = f'vrrp_notify_fifo_script "{carp_paths["script_dir"]}/lb-carp-keepalived-vips {carp_paths["state_dir"]} 4=hn1,'
    assert fifo_script in text
    # keepalived adds only the markers on lo; the VIPs are the scripts'
    assert "127.77.4.1/32 dev lo scope host" in text and " dev hn1\n" not in text
    assert {v: i["vip"] for v, i in carp_common.parse_keepalived(text).items()} == {
        v: str(g["vip"].ip) + "/32" for v, g in ((g["vhid"], g) for g in lb_view.node_view(pair, "lb-a")["groups"])
    }
    assert f"file {carp_paths['state_dir']}/maintenance.track" in text


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(KEEPALIVED), reason="needs root and keepalived")
def test_keepalived_started_reloaded_stopped_by_pid(keepalived_in_netns, netns, tmp_path, carp_paths):
    keepalived = keepalived_in_netns
    topo = topology_file(tmp_path, "keepalived", *netns["devices"])
    # a program missing (salt/carp did not run): test mode says what would
    # change, a real run fails naming it, before anything is written
    fifo_script = os.path.join(carp_paths["script_dir"], "lb-carp-keepalived-vips")
    os.rename(fifo_script, fifo_script + ".away")
    assert keepalived.present(topology=topo, test=True)["changes"]["keepalived"] == {"old": "stopped", "new": "running"}
    with pytest.raises(CommandExecutionError, match="not installed: .*lb-carp-keepalived-vips .*state.apply carp"):
        keepalived.present(topology=topo)
    assert not os.path.exists(carp_paths["keepalived_config"])
    os.rename(fifo_script + ".away", fifo_script)
    ret = keepalived.present(topology=topo)
    assert ret["changes"]["keepalived"] == {"old": "stopped", "new": "running"}
    assert sorted(k for k in ret["changes"] if isinstance(k, int)) == [4, 5, 44, 55]
    pid = int(open(os.path.join(carp_paths["run_dir"], "keepalived.pid")).read())
    with open(carp_paths["keepalived_config"]) as fh:
        assert "virtual_router_id 44" in fh.read()
    assert os.stat(carp_paths["keepalived_config"]).st_mode & 0o777 == 0o640
    for script in ("lb-carp-keepalived-vips",):
        assert os.stat(os.path.join(carp_paths["script_dir"], script)).st_mode & 0o777 == 0o755

    # the second run changes nothing
    again = keepalived.present(topology=topo)
    assert again["changes"] == {}, again

    # keepalived's FIFO script recorded every instance (FAULT: its interface is down)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(os.listdir(os.path.join(carp_paths["state_dir"], "state"))) < 4:
        time.sleep(0.1)
    st = keepalived.status()
    assert sorted(st) == [4, 5, 44, 55]
    assert st[4]["daemon_state"] == "FAULT" and st[4]["state"] == "INIT"
    assert st[4]["advskew"] == 0 and st[4]["holds_vip"] is False and st[4]["provider"] == "keepalived"

    # a changed topology: reloaded (SIGHUP), the same pid, not restarted
    raw = yaml.safe_load(open(topo))
    raw["lb"]["pairs"]["edge"]["carp"]["groups"][44]["advskew_primary"] = 20
    open(topo, "w").write(yaml.safe_dump(raw))
    check = keepalived.present(topology=topo, test=True)
    assert check["changes"] == {
        44: {"old": {"advskew": 0, "priority": 254}, "new": {"advskew": 20, "priority": 234}},
        "keepalived": {"old": f"running (pid {pid})", "new": "reloaded"},
    }
    ret = keepalived.present(topology=topo)
    assert ret["changes"] == check["changes"] and "SIGHUP" in ret["comment"]
    assert int(open(os.path.join(carp_paths["run_dir"], "keepalived.pid")).read()) == pid

    # keepalived restarted its FIFO script on the reload: one copy runs, a
    # child of keepalived's VRRP process
    vrrp_pid = int(open(os.path.join(carp_paths["run_dir"], "keepalived-vrrp.pid")).read())
    copies = [str(p) for p in carp_common.children_running(vrrp_pid, "lb-carp-keepalived-vips")]
    deadline = time.monotonic() + 10
    while len(copies) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        copies = [str(p) for p in carp_common.children_running(vrrp_pid, "lb-carp-keepalived-vips")]
    assert len(copies) == 1

    # the FIFO script killed: keepalived starts a new copy only when it next
    # writes to the FIFO; carp.present sees none running and reloads
    os.kill(int(copies[0]), 9)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and int(copies[0]) in carp_common.children_running(vrrp_pid, "lb-carp-keepalived-vips"):
        time.sleep(0.05)
    ret = keepalived.present(topology=topo)
    if carp_common.children_running(vrrp_pid, "lb-carp-keepalived-vips") == [] or ret["changes"]:
        assert ret["changes"] == {"keepalived": {"old": f"running (pid {pid}) without lb-carp-keepalived-vips", "new": "reloaded"}}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(carp_common.children_running(vrrp_pid, "lb-carp-keepalived-vips")) != 1:
        time.sleep(0.1)
    copies = [str(p) for p in carp_common.children_running(vrrp_pid, "lb-carp-keepalived-vips")]
    assert len(copies) == 1
    assert keepalived.present(topology=topo)["changes"] == {}

    # an upgrade: salt/carp replaced the FIFO program after the running copy
    # started, so that copy is the old one: present reloads, and a new copy runs
    lb_files.write_atomic(fifo_script, carp_program("lb-carp-keepalived-vips") + "# a later release\n", 0o755)
    ret = keepalived.present(topology=topo)
    assert ret["changes"] == {
        "keepalived": {"old": f"running (pid {pid}) an older lb-carp-keepalived-vips", "new": "reloaded"},
    }, ret
    old_copies = copies

    def new_copy_only():
        now = [str(p) for p in carp_common.children_running(vrrp_pid, "lb-carp-keepalived-vips")]
        return len(now) == 1 and now != old_copies  # the old copy gone, one new one

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not new_copy_only():
        time.sleep(0.1)
    assert new_copy_only(), carp_common.children_running(vrrp_pid, "lb-carp-keepalived-vips")
    copies = [str(p) for p in carp_common.children_running(vrrp_pid, "lb-carp-keepalived-vips")]
    assert keepalived.present(topology=topo)["changes"] == {}

    # absent: keepalived stops, its config goes, every group is recorded STOP
    gone = keepalived.absent()
    assert gone["changes"]["keepalived"]["new"] == "stopped"
    assert not os.path.exists(carp_paths["keepalived_config"])
    assert not os.path.exists(f"/proc/{copies[0]}") or not _cmdline(copies[0])  # the FIFO script went with it


def test_keepalived_present_is_up_to_date_only_when_keepalived_runs_the_file(keepalived_in_netns, netns, tmp_path, carp_paths):
    keepalived = keepalived_in_netns
    conf = carp_paths["keepalived_config"]
    topo_a = topology_file(tmp_path, "keepalived", *netns["devices"])
    raw = yaml.safe_load(open(topo_a))
    raw["lb"]["pairs"]["edge"]["carp"]["groups"][44]["advskew_primary"] = 20
    topo_b = str(tmp_path / "lb-b.yaml")
    open(topo_b, "w").write(yaml.safe_dump(raw))

    assert keepalived.present(topology=topo_b)["changes"]["keepalived"]["new"] == "running"
    pid = int(open(os.path.join(carp_paths["run_dir"], "keepalived.pid")).read())
    # keepalived dumps into its run dir, not into /tmp
    assert f"TMPDIR={carp_paths['run_dir']}".encode() in open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    text_b = open(conf).read()
    gen_b = keepalived.loaded(wait=10)
    assert gen_b["current"] is True and gen_b["loaded"] == gen_b["file"] and len(gen_b["file"]) == 16, gen_b
    ret = keepalived.present(topology=topo_a)
    assert ret["changes"][44] and "it runs the new config" in ret["comment"], ret
    gen_a = keepalived.loaded()
    assert gen_a["current"] is True and gen_a["loaded"] != gen_b["loaded"], gen_a

    # B's file put back behind keepalived's back, no reload: the file is as
    # B wants, but keepalived runs A; present(B) sees it and reloads
    lb_files.write_atomic(conf, text_b, 0o640)
    stale = keepalived.loaded()
    assert stale["current"] is False and stale["loaded"] == gen_a["loaded"] and stale["file"] == gen_b["file"], stale
    check = keepalived.present(topology=topo_b, test=True)
    assert list(check["changes"]) == ["keepalived"] and check["changes"]["keepalived"]["new"] == "reloaded", check
    assert "an older config" in check["changes"]["keepalived"]["old"]
    ret = keepalived.present(topology=topo_b)
    assert ret["changes"] == check["changes"] and ret.get("result", True) is True and "it runs the new config" in ret["comment"], ret
    assert keepalived.loaded()["loaded"] == gen_b["loaded"]
    assert keepalived.present(topology=topo_b)["changes"] == {}
    assert int(open(os.path.join(carp_paths["run_dir"], "keepalived.pid")).read()) == pid  # reloaded, never restarted

    # the SIGHUP does not reach keepalived (stopped): present writes A,
    # sees keepalived still report B, and fails with its changes
    os.kill(pid, signal.SIGSTOP)
    try:
        ret = keepalived.present(topology=topo_a)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert ret["result"] is False and ret["changes"][44] and ret["changes"]["keepalived"]["new"] == "reloaded", ret
    assert "keepalived still runs the old config" in ret["comment"] and "the next run reloads" in ret["comment"], ret
    # continued, keepalived acts on the SIGHUP it had pending; the next
    # run finds (or makes) keepalived running the file, and reports so
    keepalived.present(topology=topo_a)
    assert keepalived.loaded(wait=10)["loaded"] == gen_a["loaded"]
    assert keepalived.present(topology=topo_a)["changes"] == {}

    # removing one group rewrites the file with a marker that names it,
    # and is checked like present: keepalived runs the new file
    ret = keepalived.absent(vhids=[55])
    assert list(ret["changes"]) == [55] and "keepalived runs the new config" in ret["comment"], ret
    after = keepalived.loaded()
    assert after["current"] is True and after["loaded"] not in (gen_a["loaded"], gen_b["loaded"]), after
    # a SIGHUP keepalived does not act on: absent says so, loudly
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(CommandExecutionError, match="still runs the old config after SIGHUP"):
            keepalived.absent(vhids=[44])
    finally:
        os.kill(pid, signal.SIGCONT)
    assert keepalived.present(topology=topo_a)["changes"]  # 44 and 55 back
    assert keepalived.loaded(wait=10)["current"] is True


def _cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""


def test_keepalived_maintenance_files(keepalived, carp_paths):
    track = os.path.join(carp_paths["state_dir"], "maintenance.track")
    intent = os.path.join(carp_paths["state_dir"], "maintenance")
    assert keepalived.in_maintenance() is False
    assert keepalived.unmaintenance() == {"changes": {}, "comment": "not in maintenance"}
    assert keepalived.maintenance(test=True)["changes"] == {"maintenance": {"old": False, "new": True}}
    assert keepalived.maintenance_pending() == keepalived.maintenance(test=True)
    assert keepalived.unmaintenance_pending() == {"changes": {}, "comment": "not in maintenance"}
    assert not os.path.exists(intent) and not os.path.exists(track)
    ret = keepalived.maintenance()
    assert ret["changes"] == {"maintenance": {"old": False, "new": True}}
    assert open(track).read() == "1\n" and json.loads(open(intent).read())["provider"] == "keepalived"
    assert keepalived.maintenance() == {"changes": {}, "comment": "already in maintenance"}
    assert keepalived.in_maintenance() is True
    assert keepalived.unmaintenance_pending()["changes"] == {"maintenance": {"old": True, "new": False}}
    assert open(track).read() == "1\n"
    assert keepalived.unmaintenance()["changes"] == {"maintenance": {"old": True, "new": False}}
    assert open(track).read() == "0\n" and not os.path.exists(intent)
    assert keepalived.unmaintenance()["changes"] == {}


def test_keepalived_present_keeps_the_demotion_of_a_node_in_maintenance(keepalived, tmp_path, carp_paths):
    topo = topology_file(tmp_path, "keepalived")
    keepalived.maintenance()
    check = keepalived.present(topology=topo, test=True)
    assert "maintenance_track" not in check["changes"]  # stays 1
    os.unlink(os.path.join(carp_paths["state_dir"], "maintenance.track"))  # e.g. lost
    check = keepalived.present(topology=topo, test=True)
    assert check["changes"]["maintenance_track"] == {"old": None, "new": "1\n"}


def test_ucarp_command_lines_carry_no_password(ucarp, tmp_path, carp_paths):
    topo = topology_file(tmp_path, "ucarp")
    lines = ucarp.command_lines(topology=topo)
    assert sorted(lines) == [4, 5, 44, 55]
    argv = lines[44]
    assert argv[1:] == [
        "--interface=hn1",
        "--srcip=10.2.2.241",
        "--vhid=44",
        f"--passfile={carp_paths['ucarp_dir']}/vhid-44.pass",
        "--addr=10.2.2.44",
        "--advbase=1",
        "--advskew=0",
        "--preempt",
        "--shutdown",
        f"--upscript={carp_paths['script_dir']}/lb-carp-vip-up",
        f"--downscript={carp_paths['script_dir']}/lb-carp-vip-down",
        f"--xparam=32 44 {carp_paths['state_dir']} 10.2.2.242",
    ]
    for argv in lines.values():
        joined = " ".join(argv)
        assert "passwd" not in joined and "--pass=" not in joined and " -p " not in joined
    assert carp_common.parse_ucarp_argv(argv)["vhid"] in lines


def test_ucarp_test_mode_then_files(ucarp, tmp_path, carp_paths, monkeypatch):
    topo = topology_file(tmp_path, "ucarp")
    check = ucarp.present(topology=topo, test=True)
    assert sorted(k for k in check["changes"] if isinstance(k, int)) == [4, 5, 44, 55]
    assert check["changes"]["passfiles"] == sorted(f"{carp_paths['ucarp_dir']}/vhid-{v}.pass" for v in (4, 5, 44, 55))
    assert "passwd" not in json.dumps(check)
    assert ucarp.present_pending(topology=topo) == check  # what the state asks
    assert ucarp.absent_pending() == {"changes": {}, "comment": "no such CARP group runs here"}
    assert not os.path.exists(carp_paths["ucarp_dir"])  # nothing written in test mode


def test_ucarp_maintenance_intent_with_no_group_running(ucarp, tmp_path, carp_paths):
    topo = topology_file(tmp_path, "ucarp")
    assert ucarp.unmaintenance_pending(topology=topo) == {"changes": {}, "comment": "not in maintenance"}
    assert ucarp.maintenance_pending(topology=topo) == {
        "changes": {"maintenance": {"old": False, "new": True}},
        "comment": "would enter maintenance",
    }
    assert not ucarp.in_maintenance()
    assert ucarp.maintenance(topology=topo)["changes"] == {"maintenance": {"old": False, "new": True}}
    assert ucarp.maintenance_pending(topology=topo)["changes"] == {}
    assert ucarp.maintenance(topology=topo)["changes"] == {}
    # while in maintenance, groups start at advskew 254
    assert {argv[7] for argv in ucarp.command_lines(topology=topo).values()} == {"--advskew=254"}
    assert ucarp.unmaintenance(topology=topo)["changes"] == {"maintenance": {"old": True, "new": False}}
    assert ucarp.unmaintenance(topology=topo)["changes"] == {}
    assert {argv[7] for argv in ucarp.command_lines(topology=topo).values()} == {"--advskew=0"}


def test_scripts_record_state_atomically(tmp_path):
    """ucarp's up/down scripts, run by hand as ucarp runs them, and with the
    state and priority given in the environment."""
    state = tmp_path / "state-dir"
    (tmp_path / "lb-carp-arp-probe").write_text("#!/bin/sh\n")
    (tmp_path / "lb-carp-arp-probe").chmod(0o755)
    install_carp_programs(tmp_path, [carp_common.VIP_UP, carp_common.VIP_DOWN], edit=lambda t: t.replace("/sbin/ip ", "true "))
    up, down = tmp_path / carp_common.VIP_UP, tmp_path / carp_common.VIP_DOWN
    env = dict(os.environ, LB_CARP_STATE="MASTER", LB_CARP_PRIO="254")
    subprocess.run([str(up), "lb-b-eth1", "198.18.2.44", f"32 44 {state}"], check=True, timeout=10, env=env)
    rec = carp_common.parse_state_file((state / "state" / "44").read_text())
    assert rec["state"] == "MASTER" and rec["priority"] == 254 and rec["since"] > 0
    subprocess.run([str(down), "lb-b-eth1", "198.18.2.44", f"32 44 {state}"], check=True, timeout=10)
    rec = carp_common.parse_state_file((state / "state" / "44").read_text())
    assert rec["state"] == "BACKUP" and rec["priority"] is None  # ucarp: no priority
    subprocess.run(
        [str(down), "lb-b-eth1", "198.18.2.44", f"32 44 {state}"],
        check=True,
        timeout=10,
        env=dict(os.environ, LB_CARP_STATE="FAULT", LB_CARP_PRIO="154"),
    )
    assert (state / "state" / "44").read_text().split()[:2] == ["FAULT", "154"]
    assert [n for n in os.listdir(state / "state") if not n.startswith(".44.acquire")] == ["44"]  # no temporary left


def test_grains(tmp_path):
    spec = importlib.util.spec_from_file_location("carp_grains", os.path.join(REPO, "_grains", "carp.py"))
    carp_grains = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(carp_grains)

    carp_grains.__opts__ = {"lb_settings": {"carp": {"state_dir": str(tmp_path)}}}
    g = carp_grains.carp()
    assert g["carp_capable"] is True  # keepalived and ucarp are installed here
    assert g["carp_provider"] == "keepalived"
    (tmp_path / "provider").write_text("ucarp\n")
    assert carp_grains.carp()["carp_provider"] == "ucarp"


def test_ucarp_up_script_adds_the_vip_only_once_nobody_answers_for_it(tmp_path):
    """ucarp hears the old master's release up to 1 s late (libpcap's read
    timeout): the up script returns at once, drops traffic for the VIP
    (blackhole route) and adds the VIP in the background once the ARP probe
    finds it free; the down script cancels a pending add."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "ip").write_text(f'#!/bin/sh\necho "ip $*" >> {calls}\n')
    (bin_dir / "ip").chmod(0o755)
    scripts = tmp_path / "sbin"
    scripts.mkdir()
    # the probe: the address is still answered for 0.3 s, then free
    (scripts / "lb-carp-arp-probe").write_text(f'#!/bin/sh\necho "probe $*" >> {calls}\nsleep 0.3\n')
    (scripts / "lb-carp-arp-probe").chmod(0o755)
    state = tmp_path / "state-dir"
    install_carp_programs(
        scripts,
        [carp_common.VIP_UP, carp_common.VIP_DOWN],
        edit=lambda t: t.replace("/sbin/ip ", f"{bin_dir}/ip ").replace("sleep 3", "sleep 0.2"),
    )
    up = scripts / carp_common.VIP_UP
    t0 = time.monotonic()
    subprocess.run([str(up), "lb-b-eth1", "198.18.2.44", f"32 44 {state}"], check=True, timeout=10)
    assert time.monotonic() - t0 < 0.25  # returned at once: ucarp advertises now
    assert (state / "state" / "44").read_text().split()[0] == "MASTER"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (state / "state" / ".44.acquire").exists():
        time.sleep(0.02)
    while time.monotonic() < deadline and "--announce" not in calls.read_text():  # the last step, after the wait file goes
        time.sleep(0.02)
    assert calls.read_text().splitlines() == [
        "ip -4 -o addr show dev lb-b-eth1",  # not held here: a takeover (no peer given: no second chance)
        "ip -4 route del local 198.18.2.44/32 dev lb-b-eth1 table local proto static",  # a soft release's route, if any
        "ip -4 route replace blackhole 198.18.2.44/32",
        "probe lb-b-eth1 198.18.2.44 3",
        "ip -4 addr replace 198.18.2.44/32 dev lb-b-eth1",
        "ip -4 route del blackhole 198.18.2.44/32",
        "probe --announce lb-b-eth1 198.18.2.44",  # the neighbours learn the address is here now
    ]

    # a down event while the add is pending cancels it
    calls.unlink()
    subprocess.run([str(up), "lb-b-eth1", "198.18.2.44", f"32 44 {state}"], check=True, timeout=10)
    down = scripts / carp_common.VIP_DOWN
    time.sleep(0.1)
    subprocess.run([str(down), "lb-b-eth1", "198.18.2.44", f"32 44 {state}"], check=True, timeout=10)
    time.sleep(0.6)
    got = calls.read_text().splitlines()
    assert "ip -4 addr replace 198.18.2.44/32 dev lb-b-eth1" not in got
    assert got[-4:] == [
        "ip -4 -o addr show dev lb-b-eth1",  # not held (the stub holds nothing): no soft release
        "ip -4 route replace blackhole 198.18.2.44/32",
        "ip -4 addr del 198.18.2.44/32 dev lb-b-eth1",
        "ip -4 route del blackhole 198.18.2.44/32",  # once the peer has had time to take it
    ]
    assert (state / "state" / "44").read_text().split()[0] == "BACKUP"


def test_keepalived_absent_of_one_group_rewrites_the_config(keepalived, tmp_path, carp_paths):
    topo = topology_file(tmp_path, "keepalived")
    model = lb_topology.load(lb_topology.load_file(topo))
    pair, _ = lb_topology.find_node(model, "lb-a")
    text = lb_render_linux.render_keepalived(pair, "lb-a", state_dir=carp_paths["state_dir"], script_dir=carp_paths["script_dir"])
    os.makedirs(os.path.dirname(carp_paths["keepalived_config"]))
    with open(carp_paths["keepalived_config"], "w") as fh:
        fh.write(text)
    assert keepalived.absent(vhids=[55], test=True)["changes"][55]["new"] is None
    assert open(carp_paths["keepalived_config"]).read() == text  # test mode: untouched
    ret = keepalived.absent(vhids=[55])
    assert list(ret["changes"]) == [55]
    left = carp_common.parse_keepalived(open(carp_paths["keepalived_config"]).read())
    assert sorted(left) == [4, 5, 44]
    assert "VI_55" not in open(carp_paths["keepalived_config"]).read()
    assert keepalived.absent(vhids=[55])["changes"] == {}
    assert sorted(keepalived.status()) == [4, 5, 44]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_arp_probe_tells_a_held_address_from_a_free_one(tmp_path):
    """The real lb-carp-arp-probe on a veth pair of this namespace (nothing
    leaves the pair): answered while the address is on the other end, at
    one probe per 30 ms; free once it is removed."""
    install_carp_programs(tmp_path, [carp_common.ARP_PROBE])
    probe = tmp_path / carp_common.ARP_PROBE
    a, b = f"lbpr{os.getpid() % 10000}a", f"lbpr{os.getpid() % 10000}b"
    res = subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        pytest.skip(f"cannot create a veth pair here: {res.stderr.strip()}")
    try:
        # no IPv6 on the pair: its router solicitations and MLD reports,
        # sent for seconds after a link comes up, would be counted below
        # with the probes (one CI run counted 30 frames for 27 probes)
        for end in (a, b):
            with open(f"/proc/sys/net/ipv6/conf/{end}/disable_ipv6", "w") as fh:
                fh.write("1\n")
        for cmd in (["ip", "link", "set", a, "up"], ["ip", "link", "set", b, "up"], ["ip", "addr", "add", "198.18.254.9/32", "dev", b]):
            subprocess.run(cmd, check=True, timeout=10)
        time.sleep(0.5)
        rx = f"/sys/class/net/{b}/statistics/rx_packets"
        before = int(open(rx).read())
        held = subprocess.run([str(probe), a, "198.18.254.9", "0.8"], timeout=10)
        assert held.returncode == 1  # still answered when the time was up
        # one probe per 30 ms while answered, not one per answer (a flood)
        sent = int(open(rx).read()) - before
        assert 5 <= sent <= 0.8 / 0.03 + 3, sent
        subprocess.run(["ip", "addr", "del", "198.18.254.9/32", "dev", b], check=True, timeout=10)
        t0 = time.monotonic()
        free = subprocess.run([str(probe), a, "198.18.254.9", "3"], timeout=10)
        assert free.returncode == 0 and time.monotonic() - t0 < 1.5
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True, timeout=10)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_arp_announcement_moves_a_neighbours_entry_to_the_new_holder(tmp_path):
    """lb-carp-arp-probe --announce, for real, between two network namespaces
    of their own joined by a veth pair (nothing leaves them): the router's
    side has a REACHABLE entry for the VIP with the old master's MAC; after
    the announcement it has the announcer's."""
    install_carp_programs(tmp_path, [carp_common.ARP_PROBE])
    probe = tmp_path / carp_common.ARP_PROBE
    tag = os.getpid() % 10000
    node, router = f"lbann{tag}n", f"lbann{tag}r"
    made = []
    try:
        for ns in (node, router):
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
            made.append(ns)
        subprocess.run(
            ["ip", "link", "add", "n0", "netns", node, "type", "veth", "peer", "name", "r0", "netns", router], check=True, timeout=10
        )
        for ns, dev, addr in ((node, "n0", "198.18.254.9/32"), (router, "r0", "198.18.254.1/24")):
            for cmd in (["ip", "link", "set", dev, "up"], ["ip", "addr", "add", addr, "dev", dev]):
                subprocess.run(["ip", "-n", ns, *cmd[1:]], check=True, timeout=10)
        old_mac = "02:00:5e:00:00:99"
        subprocess.run(
            ["ip", "-n", router, "neigh", "replace", "198.18.254.9", "lladdr", old_mac, "dev", "r0", "nud", "reachable"],
            check=True,
            timeout=10,
        )
        mac = subprocess.run(["ip", "-n", node, "-br", "link", "show", "n0"], capture_output=True, text=True, timeout=10).stdout.split()[2]

        def entry():
            return subprocess.run(
                ["ip", "-n", router, "neigh", "show", "198.18.254.9", "dev", "r0"], capture_output=True, text=True, timeout=10
            ).stdout

        assert old_mac in entry()
        t0 = time.monotonic()
        subprocess.run(["ip", "netns", "exec", node, str(probe), "--announce", "n0", "198.18.254.9"], check=True, timeout=10)
        assert time.monotonic() - t0 < 3  # three announcements, 1.2 s of gaps
        assert mac in entry() and old_mac not in entry(), entry()
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_ucarp_down_script_hands_a_served_vip_over_softly_and_the_up_script_takes_it_back(netns, tmp_path):
    """The real scripts and `ip` in a namespace of this test's own (veth up,
    nothing sent out): a VIP that HAProxy (here a listening socket) serves
    becomes a local route for 3 s when the node goes BACKUP, so what still
    reaches it is answered while no ARP names it (arp_ignore 1); a VIP
    nobody listens on is dropped at once; the up script removes a pending
    soft route before it adds the address."""
    ns, dev = netns["name"], netns["devices"][0]
    vip = "10.9.9.44"

    def ip(*args):
        return subprocess.run(["ip", "-n", ns, *args], capture_output=True, text=True, timeout=10, check=True).stdout

    for d in netns["devices"]:
        ip("link", "set", d, "up")
    ip("addr", "add", "10.9.9.2/24", "dev", dev)  # the node's own address (a device left with none loses every route)
    scripts = tmp_path / "sbin"
    scripts.mkdir()
    (scripts / "lb-carp-arp-probe").write_text("#!/bin/sh\nexit 0\n")  # nobody answers; no announcement
    install_carp_programs(scripts, [carp_common.VIP_UP, carp_common.VIP_DOWN])
    for f in scripts.iterdir():
        f.chmod(0o755)
    state = tmp_path / "state"

    def run(name):
        subprocess.run(["ip", "netns", "exec", ns, str(scripts / name), dev, vip, f"32 44 {state}"], check=True, timeout=10)

    def soft_routes():
        return ip("route", "show", "table", "local", "proto", "static")

    def addresses():
        return ip("-4", "-o", "addr", "show", "dev", dev)

    run("lb-carp-vip-up")
    assert wait(lambda: f" {vip}/32 " in addresses(), 5), addresses()
    assert (
        subprocess.run(
            ["ip", "netns", "exec", ns, "cat", f"/proc/sys/net/ipv4/conf/{dev}/arp_ignore"], capture_output=True, text=True
        ).stdout.strip()
        == "1"
    )
    listener = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "python3",
            "-c",
            f"import socket,time; s=socket.socket(); s.bind(('{vip}', 18080)); s.listen(); time.sleep(30)",
        ]
    )
    try:
        assert wait(lambda: "18080" in subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn"], capture_output=True, text=True).stdout, 5)
        run("lb-carp-vip-down")
        assert f" {vip}/32 " not in addresses()
        assert f"local {vip} dev {dev}" in soft_routes()
        # the lab's samplers (lab/netview.py) see no holder in a soft route
        holder = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "30"])
        try:
            own = os.stat(f"/run/netns/{ns}").st_ino
            assert wait(lambda: os.stat(f"/proc/{holder.pid}/ns/net").st_ino == own, 5)  # `ip netns exec` has entered it
            assert wait(lambda: "10.9.9.2" in netview.addresses(holder.pid), 5), netview.addresses(holder.pid)
            assert vip not in netview.addresses(holder.pid)
        finally:
            holder.kill()
            holder.wait(10)
        # what reaches the node for the VIP is still taken
        probe = f"import socket; socket.create_connection(('{vip}', 18080), timeout=1).close()"
        assert subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", probe], timeout=10).returncode == 0
        # back to MASTER within the 3 s: the up script removes the soft route, then adds the address
        run("lb-carp-vip-up")
        assert wait(lambda: f" {vip}/32 " in addresses(), 5), addresses()
        assert vip not in soft_routes()
        # BACKUP again, then the soft route goes after 3 s
        run("lb-carp-vip-down")
        assert f"local {vip} dev {dev}" in soft_routes()
        assert wait(lambda: vip not in soft_routes(), 6), soft_routes()
    finally:
        listener.kill()
        listener.wait(10)
    # nobody listens: dropped at once, no soft route
    run("lb-carp-vip-up")
    assert wait(lambda: f" {vip}/32 " in addresses(), 5)
    run("lb-carp-vip-down")
    assert f" {vip}/32 " not in addresses() and vip not in soft_routes()


def wait(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
