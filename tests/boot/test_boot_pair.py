"""The pair on booted Debian hosts: what the product sets up comes back at
boot, with no salt-master, in an order that keeps the pair safe.

Two Debian 12 hosts boot systemd under systemd-nspawn (lab/booted.py: the
lab provides the root from Debian's packages, the cabling and the base
address, nothing else).  The product is applied inside each by
`salt-call --local state.apply` with the checkout's states and modules
(all but carp.events, the beacon, which needs a minion daemon and a master).
Then, with no Salt running anywhere:

- lb-a (the primary) reboots: lb-b holds the VIP while lb-a is away; lb-a
  comes back with its sysctls, HAProxy serving and keepalived started after
  HAProxy, and takes the VIP back;
- lb-b reboots: lb-a keeps the VIP throughout;
- both power off and boot at once (a cold start): one holder;
- HAProxy is killed (-9) on the node with the VIP: systemd restarts it, or
  the peer takes the VIP, and the client is served again;
- maintenance set before a reboot holds after it.

A sampler reads both hosts' addresses all along: never two holders.  Times
are printed, not asserted (bench/ has them)."""

import json
import os
import subprocess
import threading
import time

import pytest
import yaml

from lab import booted

REPO = booted.REPO
VIP = "10.99.0.10"
BOUND = 60.0  # seconds for anything to settle (a bound, not a timing target)

pytestmark = pytest.mark.skipif(booted.available() is not None, reason=f"booted hosts: {booted.available()}")

PILLAR = {
    "lb": {
        "pairs": {
            "edge": {
                "description": "a pair on booted Debian hosts (tests/boot)",
                "networks": {"user": {"cidr": "10.99.0.0/24"}},
                "nodes": {
                    "lb-a": {"hostname": "lb-a", "interfaces": {"vip": {"network": "user", "address": "10.99.0.2", "device": "host0"}}},
                    "lb-b": {"hostname": "lb-b", "interfaces": {"vip": {"network": "user", "address": "10.99.0.3", "device": "host0"}}},
                },
                "carp": {
                    "advbase": 1,
                    "backup_advskew": 100,
                    "preempt": True,
                    "linux_provider": "keepalived",
                    "groups": {10: {"interface": "vip", "vip": f"{VIP}/24", "password": "bootpass10", "primary": "lb-a"}},
                },
                "sysctl": {"ip_forwarding": True},
                "haproxy": {
                    "pools": {"web": {"kind": "http", "servers": {"web-1": {"address": "10.99.0.1", "port": 8080}}}},
                    "listeners": {"http_10": {"vhid": 10, "port": 80, "mode": "http", "balance": "roundrobin", "pool": "web"}},
                },
            }
        }
    }
}


def minion_config(node):
    return {
        "id": node,
        "file_client": "local",
        "file_roots": {"base": [os.path.join(REPO, "salt")]},
        "pillar_roots": {"base": ["/srv/pillar"]},
        "module_dirs": [os.path.join(REPO, "_modules")],
        "states_dirs": [os.path.join(REPO, "_states")],
        "grains_dirs": [os.path.join(REPO, "_grains")],
        "utils_dirs": [os.path.join(REPO, "_utils")],
        "beacons_dirs": [os.path.join(REPO, "_beacons")],
        "log_level_logfile": "warning",
    }


def provision_salt(node):
    """What a provisioner gives a minion: its config and the pillar."""
    etc = os.path.join(node.root, "etc", "salt")
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "minion"), "w") as fh:
        yaml.safe_dump(minion_config(node.name), fh)
    pillar = os.path.join(node.root, "srv", "pillar")
    os.makedirs(pillar, exist_ok=True)
    with open(os.path.join(pillar, "top.sls"), "w") as fh:
        fh.write("base:\n  '*':\n    - lb\n")
    with open(os.path.join(pillar, "lb.sls"), "w") as fh:
        yaml.safe_dump(PILLAR, fh)
    os.chmod(os.path.join(pillar, "lb.sls"), 0o600)


def salt_call(node, *args, timeout=300):
    res = node.run(
        os.path.join(REPO, ".venv", "bin", "salt-call"),
        "--local",
        "--out=json",
        "--retcode-passthrough",
        *args,
        check=False,
        timeout=timeout,
    )
    try:
        out = json.loads(res.stdout)["local"]
    except (ValueError, KeyError):
        raise AssertionError(
            f"salt-call {' '.join(args)} on {node.name} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        ) from None
    return res.returncode, out


def highstate(node):
    # carp.events (the beacon) needs a running minion and a master: not here
    code, out = salt_call(node, "state.apply", 'exclude=[{"sls": "carp.events"}]')
    assert isinstance(out, dict), out
    failed = {k: v.get("comment") for k, v in out.items() if not v.get("result")}
    assert code == 0 and not failed, f"{node.name}: {failed or out}"
    return {k: v["changes"] for k, v in out.items() if v.get("changes")}


def holds(node):
    """Whether the node has the VIP now (False while it is down)."""
    pid = node.leader()
    if pid is None:
        return False
    res = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-4", "-o", "addr", "show", "dev", "host0"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return f" {VIP}/" in res.stdout


class Watch(threading.Thread):
    """Samples both hosts (lb-a, lb-b, lb-a: a VIP counts as on both only if
    lb-a had it at both reads around lb-b's) and asks the VIP over HTTP from
    the client, until stopped."""

    def __init__(self, pair):
        super().__init__(daemon=True)
        self.pair = pair
        self.overlaps, self.samples, self.failed, self.served = [], 0, 0, 0
        self.longest_gap, self.halt = 0.0, threading.Event()

    def run(self):
        a, b = self.pair.nodes["lb-a"], self.pair.nodes["lb-b"]
        deadline = time.monotonic() + 600
        last_ok = time.monotonic()
        first = holds(a)
        while not self.halt.is_set() and time.monotonic() < deadline:
            second = holds(b)
            third = holds(a)
            if first and second and third:
                self.overlaps.append(round(time.monotonic(), 3))
            first = third
            self.samples += 1
            res = self.pair.in_switch("python3", "-c", FETCH, check=False, timeout=10)
            now = time.monotonic()
            if res.returncode == 0:
                self.served += 1
                self.longest_gap = max(self.longest_gap, now - last_ok)
                last_ok = now
            else:
                self.failed += 1

    def stop(self):
        self.halt.set()
        self.join(30)


FETCH = f"import urllib.request; urllib.request.urlopen('http://{VIP}/', timeout=1).read()"


def wait(predicate, what, bound=BOUND):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {bound:.0f} s: {what}")


def active(node, unit):
    return node.run("systemctl", "is-active", unit, check=False).stdout.strip() == "active"


def started_at(node, unit, prop="ExecMainStartTimestampMonotonic"):
    return int(node.run("systemctl", "show", f"--property={prop}", "--value", unit).stdout.strip() or 0)


def boot_id(node):
    return node.run("cat", "/proc/sys/kernel/random/boot_id").stdout.strip()


def serves(pair):
    return pair.in_switch("python3", "-c", FETCH, check=False, timeout=10).returncode == 0


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("booted"))
    p = booted.Pair(workdir, f"{os.getpid() % 100000}")
    with p:
        backend = subprocess.Popen(
            ["ip", "netns", "exec", p.switch, "python3", "-m", "http.server", "8080", "--bind", p.client],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for node in p.nodes.values():
                provision_salt(node)
                node.boot()
            for node in p.nodes.values():
                highstate(node)
            yield p
        finally:
            backend.terminate()
            backend.wait(10)


def settled(pair):
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    return holds(a) and not holds(b) and serves(pair)


def test_the_highstate_sets_up_boot_and_a_second_run_changes_nothing(pair):
    for node in pair.nodes.values():
        assert highstate(node) == {}, f"{node.name}: a second state.apply changed something"
        for unit in ("haproxy.service", "keepalived.service"):
            assert active(node, unit), f"{unit} on {node.name}"
            assert node.run("systemctl", "is-enabled", unit).stdout.strip() == "enabled"
        # started through systemd, not beside it: the unit's main process is HAProxy's master
        main = node.run("systemctl", "show", "--property=MainPID", "--value", "haproxy.service").stdout.strip()
        assert main == node.run("cat", "/run/haproxy.pid").stdout.strip()
    wait(lambda: settled(pair), "lb-a holds the VIP and serves")


def test_the_primary_reboots_the_peer_serves_and_it_comes_back_serving_before_it_takes_the_vip(pair):
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    before = boot_id(a)
    watch = Watch(pair)
    watch.start()
    try:
        a.run("systemctl", "reboot", check=False, timeout=20)
        a._wait_exit(booted.BOOT_TIMEOUT)
        wait(lambda: holds(b), "lb-b takes the VIP while lb-a is down")
        wait(lambda: serves(pair), "the client is served through lb-b")
        t0 = time.monotonic()
        a.boot()
        wait(lambda: holds(a) and not holds(b), "lb-a takes the VIP back")
        print(f"\nlb-a: booted and holding the VIP {time.monotonic() - t0:.1f} s after power-on")
        wait(lambda: serves(pair), "the client is served through lb-a")
    finally:
        watch.stop()
    assert boot_id(a) != before
    assert watch.overlaps == [], f"the VIP on both nodes at {watch.overlaps[:5]}"
    assert a.run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    assert a.run("sysctl", "-n", "net.ipv4.ip_nonlocal_bind").stdout.strip() == "1"
    assert active(a, "haproxy.service") and active(a, "keepalived.service")
    # the order: keepalived started once HAProxy was up (Type=notify)
    assert started_at(a, "keepalived.service") >= started_at(a, "haproxy.service", "ActiveEnterTimestampMonotonic") > 0
    assert a.run("test", "-p", "/run/lb-carp/keepalived-vrrp.fifo", check=False).returncode == 0
    print(f"samples {watch.samples}, requests served {watch.served}, failed {watch.failed}, longest gap {watch.longest_gap:.2f} s")


def test_the_peer_reboots_and_the_primary_keeps_the_vip(pair):
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    watch = Watch(pair)
    watch.start()
    lost = []
    try:
        b.run("systemctl", "reboot", check=False, timeout=20)
        b._wait_exit(booted.BOOT_TIMEOUT)
        b.boot()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # lb-b back and settled as BACKUP
            if not holds(a):
                lost.append(round(time.monotonic(), 3))
            time.sleep(0.1)
        wait(lambda: active(b, "keepalived.service"), "keepalived runs on lb-b")
    finally:
        watch.stop()
    assert lost == [], "lb-a lost the VIP while lb-b rebooted"
    assert watch.overlaps == []
    assert settled(pair)


def test_a_cold_start_of_both_ends_with_one_holder(pair):
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    for node in (a, b):
        node.shutdown("poweroff")
    assert not holds(a) and not holds(b)
    watch = Watch(pair)
    watch.start()
    try:
        a.boot()
        b.boot()
        wait(lambda: settled(pair), "after a cold start, lb-a holds the VIP and serves")
    finally:
        watch.stop()
    assert watch.overlaps == []


def test_haproxy_killed_on_the_master_is_restarted_by_systemd(pair):
    a = pair.nodes["lb-a"]
    wait(lambda: settled(pair), "a settled pair")
    master = a.run("cat", "/run/haproxy.pid").stdout.strip()
    watch = Watch(pair)
    watch.start()
    try:
        a.run("kill", "-9", master)
        wait(
            lambda: a.run("cat", "/run/haproxy.pid", check=False).stdout.strip() not in ("", master) and active(a, "haproxy.service"),
            "HAProxy restarted",
        )
        wait(lambda: serves(pair), "the client is served again")
        wait(lambda: settled(pair), "lb-a holds the VIP again")
    finally:
        watch.stop()
    assert watch.overlaps == []
    print(f"\nHAProxy -9 on the master: requests failed {watch.failed}, longest client gap {watch.longest_gap:.2f} s")


def test_maintenance_holds_across_a_reboot(pair):
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    code, out = salt_call(a, "carp.maintenance")
    assert code == 0, out
    try:
        wait(lambda: holds(b) and not holds(a), "lb-b holds the VIP while lb-a is in maintenance")
        a.reboot()
        time.sleep(3)  # several adverts: lb-a must not preempt
        assert holds(b) and not holds(a), "lb-a took the VIP back after a reboot in maintenance"
    finally:
        code, out = salt_call(a, "carp.unmaintenance")
    assert code == 0, out
    wait(lambda: settled(pair), "lb-a takes the VIP back once out of maintenance")
