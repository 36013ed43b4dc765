"""The lab's network, its salt-master and minions, and its teardown."""

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import LAB_DIR, REPO, state

FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())"
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")


def ping(lab, host: str, address: str) -> subprocess.CompletedProcess:
    return lab.run(host, "ping", "-c", "1", "-W", "2", address, timeout=10)


def processes():
    """(pid, command line) of every process on the machine."""
    for entry in os.listdir("/proc"):
        try:
            yield int(entry), Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (ValueError, OSError):
            continue


def ip(address: str) -> str:
    return address.split("/")[0]


def r1_addresses(lab) -> set[str]:
    return {ip(i.address) for i in lab.plan.host("r1").interfaces}


def test_lb_a_reaches_r1_on_each_of_its_segments(lab):
    for intf in lab.plan.host("lb-a").interfaces:
        gateway = ip(lab.plan.networks[intf.network].router)
        assert ping(lab, "lb-a", gateway).returncode == 0, gateway


def test_lb_a_reaches_every_database_host_through_r1(lab):
    for host in (h for h in lab.plan.hosts if h.role == "db"):
        address = ip(host.interfaces[0].address)
        result = ping(lab, "lb-a", address)
        assert result.returncode == 0, result.stdout
        assert "ttl=63" in result.stdout  # one router between them: r1


def test_lb_a_fetches_each_http_servers_page(lab):
    for host in (h for h in lab.plan.hosts if h.role == "web"):
        address, port = host.service
        result = lab.run("lb-a", "python3", "-c", FETCH, f"http://{address}:{port}/", timeout=10)
        assert result.returncode == 0, result.stderr
        assert f"{host.name} ({host.pillar_name})" in result.stdout


def test_client_reaches_lb_a_through_r1(lab):
    route = lab.run("client", "ip", "route", "get", "198.18.2.241")
    assert "via 198.18.0.254" in route.stdout
    result = ping(lab, "client", "198.18.2.241")
    assert result.returncode == 0, result.stdout
    assert "ttl=63" in result.stdout


def test_no_lab_host_has_a_route_out_of_the_lab(lab):
    for name, node in lab.state["nodes"].items():
        if node["kind"] != "host":
            continue
        for family in ("-4", "-6"):
            for line in lab.run(name, "ip", family, "route", "show", "table", "all").stdout.splitlines():
                fields = line.split()
                if fields[0] in ("local", "broadcast", "multicast", "anycast") or "table local" in line:
                    continue  # the namespace's own addresses
                if fields[0] in ("unreachable", "prohibit", "blackhole"):
                    continue  # no route: this machine's DNS servers (lab/supervisor.py)
                if fields[0] == "default":
                    assert family == "-4" and name != "r1", f"{name}: {line}"
                    assert fields[1] == "via" and fields[2] in r1_addresses(lab), f"{name}: {line}"
                elif family == "-4":
                    assert ipaddress.ip_network(fields[0]).subnet_of(LAB_RANGE), f"{name}: {line}"
                else:
                    network = ipaddress.ip_network(fields[0])
                    assert network.is_link_local or network.is_loopback, f"{name}: {line}"


def test_the_masters_link_carries_only_the_management_subnet(lab):
    routes = subprocess.run(["ip", "-4", "route", "show", "dev", "lab-master"], capture_output=True, text=True).stdout
    assert [line.split()[0] for line in routes.splitlines()] == ["198.18.1.0/24"]
    assert Path("/proc/sys/net/ipv4/conf/lab-master/forwarding").read_text().strip() == "0"
    assert Path("/proc/sys/net/ipv6/conf/lab-master/disable_ipv6").read_text().strip() == "1"
    # r1, where every lab default route ends, has no route out of the lab
    assert "unreachable" in lab.run("r1", "ip", "route", "get", "192.0.2.1").stderr


def test_the_master_sees_every_minion(lab):
    pings = lab.salt("*", "test.ping", "-t", "10")
    assert pings == {minion: True for minion in lab.plan.minion_ids}


def test_hosts_have_private_directories(lab):
    lab.run("lb-a", "sh", "-c", "echo lb-a > /run/lab-probe && echo lb-a > /etc/haproxy/lab-probe")
    try:
        assert lab.run("lb-a", "cat", "/run/lab-probe", "/etc/haproxy/lab-probe").stdout == "lb-a\nlb-a\n"
        assert lab.run("lb-b", "cat", "/run/lab-probe").returncode != 0
        assert lab.run("lb-b", "test", "-f", "/etc/haproxy/haproxy.cfg").returncode == 0  # seeded from this machine
        assert not Path("/run/lab-probe").exists() and not Path("/etc/haproxy/lab-probe").exists()
    finally:
        lab.run("lb-a", "rm", "-f", "/run/lab-probe", "/etc/haproxy/lab-probe")


def test_status_and_exec_from_the_command_line(lab):
    status = subprocess.run([sys.executable, "-m", "lab", "status"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0
    for name, rec in lab.state["daemons"].items():
        assert f"{name}" in status.stdout and str(rec["pid"]) in status.stdout
    exec_ = subprocess.run(
        [sys.executable, "-m", "lab", "exec", "lb-a", "--", "ip", "-br", "addr"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert exec_.returncode == 0 and "lb-a-eth0" in exec_.stdout and "198.18.1.241/24" in exec_.stdout


def test_up_on_a_running_lab_converges_it_again_without_rebuilding(lab):
    before = state.load()["supervisor"]
    again = subprocess.run([sys.executable, "-m", "lab", "up"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert "already up" in again.stdout, again.stdout + again.stderr
    assert state.load()["supervisor"] == before and state.alive(before)
    assert again.returncode == 0 or not lab.converged, again.stdout


@pytest.mark.lab_teardown
def test_down_leaves_nothing_behind(lab):
    if not lab.owned:
        pytest.skip("the lab was up before this session: leaving it up")
    recorded = state.load()
    # a stray process in a host (what a state or an operator could leave),
    # started like an operator would, with `lab exec`; and what the states
    # started in the hosts (haproxy, keepalived, xinetd, mariadbd ...): none
    # is in the record, every one must go, by pid
    stray = subprocess.Popen(
        [sys.executable, "-m", "lab", "exec", "db-1", "--", "sleep", "600"], cwd=REPO, stdin=subprocess.DEVNULL, start_new_session=True
    )
    namespaces = state.lab_namespaces(recorded)
    deadline = time.monotonic() + 10
    while state.netns(stray.pid) not in namespaces and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.netns(stray.pid) in namespaces  # `lab exec` execs: the pid is the sleep's, in db-1
    in_hosts = state.processes_in(namespaces, exclude={rec["pid"] for rec in recorded["nodes"].values()})
    assert stray.pid in {p["pid"] for p in in_hosts}
    assert lab.down() == 0
    stray.wait(timeout=10)  # reaped: gone, not a zombie of ours
    assert stray.returncode == -signal.SIGTERM
    assert not [p for p in in_hosts if state.start_time(p["pid"]) == p["start"]]
    assert state.processes_in(namespaces) == []
    assert not [p for p in recorded.get("mountpoints", []) if os.path.lexists(p)]
    assert state.leftovers(recorded) == []
    assert not any(state.alive(rec) for rec in [recorded["supervisor"], *recorded["daemons"].values(), *recorded["nodes"].values()])
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in netns for name in recorded["nodes"])
    links = os.listdir("/sys/class/net")
    assert not [name for name in recorded["bridges"] + recorded["links"] if name in links]
    assert [pid for pid, cmdline in processes() if str(LAB_DIR) in cmdline] == []
    assert state.load() is None
