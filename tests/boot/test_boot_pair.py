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

Through both reboots a writer INSERTs through the VIP's MySQL listener
every 100 ms (a MariaDB behind the pair): every row it saw committed is in
the database afterwards, and none fails while the peer reboots.

The pair announces its VIP by OSPF (no router answers): BIRD runs under
Debian's bird.service with the routing module's socket and pid file, at
boot too.

A sampler reads both hosts' addresses all along: never two holders.  Times
are printed, not asserted (bench/ has them)."""

import os
import time

import pytest

from lab import booted

REPO = booted.REPO

pytestmark = pytest.mark.skipif(booted.available() is not None, reason=f"booted hosts: {booted.available()}")

salt_call = booted.salt_call
holds = booted.holds
highstate = booted.highstate
Watch = booted.Watch
wait = booted.wait
active = booted.active
started_at = booted.started_at
boot_id = booted.boot_id
serves = booted.serves
settled = booted.settled


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("booted"))
    with booted.serving_pair(workdir, f"{os.getpid() % 100000}", booted.pillar(ospf=True), database=True) as p:
        yield p


def bird_runs_as_the_routing_module_runs_it(node):
    """bird.service runs BIRD with the routing module's pid file and socket,
    and the module sees it running its config."""
    assert active(node, "bird.service")
    assert node.run("systemctl", "is-enabled", "bird.service").stdout.strip() == "enabled"
    assert str(booted.main_pid(node, "bird.service")) == node.run("cat", "/run/bird/bird.pid").stdout.strip()
    code, out = salt_call(node, "routing.loaded")
    assert code == 0 and out.get("current") is True, out


def test_the_highstate_sets_up_boot_and_a_second_run_changes_nothing(pair):
    for node in pair.nodes.values():
        assert highstate(node) == {}, f"{node.name}: a second state.apply changed something"
        for unit in ("haproxy.service", "keepalived.service"):
            assert active(node, unit), f"{unit} on {node.name}"
            assert node.run("systemctl", "is-enabled", unit).stdout.strip() == "enabled"
        # started through systemd, not beside it: the unit's main process is HAProxy's master
        main = node.run("systemctl", "show", "--property=MainPID", "--value", "haproxy.service").stdout.strip()
        assert main == node.run("cat", "/run/haproxy.pid").stdout.strip()
        # no ALERT from reading the config (a `pidfile` in it beside the
        # unit's -p made one at every start and reload); a backend's health
        # is another matter
        journal = node.run("journalctl", "-u", "haproxy.service", "--no-pager", "-o", "cat").stdout
        alerts = [line for line in journal.splitlines() if "[ALERT]" in line and " config : " in line]
        assert alerts == [], alerts
        bird_runs_as_the_routing_module_runs_it(node)
    wait(lambda: settled(pair), "lb-a holds the VIP and serves")


def test_the_primary_reboots_the_peer_serves_and_it_comes_back_serving_before_it_takes_the_vip(pair):
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    before = boot_id(a)
    watch = Watch(pair)
    watch.start()
    writer = booted.Writer(pair, pair.db, 1000)
    writer.start()
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
        time.sleep(1)
    finally:
        watch.stop()
        lost = writer.stop()
    assert lost == [], f"committed rows missing from the database: {lost}"
    assert len(writer.committed) > 20, writer.committed
    print(f"writes through the VIP: {len(writer.committed)} committed, {len(writer.failed)} failed, none lost")
    assert boot_id(a) != before
    assert watch.overlaps == [], f"the VIP on both nodes at {watch.overlaps[:5]}"
    assert a.run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    assert a.run("sysctl", "-n", "net.ipv4.ip_nonlocal_bind").stdout.strip() == "1"
    assert active(a, "haproxy.service") and active(a, "keepalived.service")
    # the order: keepalived started once HAProxy was up (Type=notify)
    assert started_at(a, "keepalived.service") >= started_at(a, "haproxy.service", "ActiveEnterTimestampMonotonic") > 0
    assert a.run("test", "-p", "/run/lb-carp/keepalived-vrrp.fifo", check=False).returncode == 0
    bird_runs_as_the_routing_module_runs_it(a)
    print(f"samples {watch.samples}, requests served {watch.served}, failed {watch.failed}, longest gap {watch.longest_gap:.2f} s")


def test_the_peer_reboots_and_the_primary_keeps_the_vip(pair):
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    watch = Watch(pair)
    watch.start()
    writer = booted.Writer(pair, pair.db, 100000)
    writer.start()
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
        missing = writer.stop()
    assert missing == [], f"committed rows missing from the database: {missing}"
    assert writer.failed == [], f"writes failed while the peer rebooted: {writer.failed}"
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
