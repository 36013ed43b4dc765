"""A ucarp pair on booted Debian hosts: each CARP group's ucarp is an
instance of the product's lb-ucarp@.service, so it comes back at boot after
HAProxy, and systemd restarts a ucarp that dies, with no salt-master.

The hosts of lab/booted.py (Debian 12 under systemd-nspawn), the product
applied inside each by `salt-call --local state.apply` with
`carp:linux_provider: ucarp`.  Then, with no Salt running:

- ucarp killed (-9) on the MASTER: systemd starts it again 100 ms later;
  its launcher sees the VIP still configured and keeps it (--neutral), so
  the VIP never leaves lb-a and never shows on lb-b;
- lb-a (the primary) reboots: lb-b holds the VIP while it is away; lb-a's
  ucarp starts after HAProxy serves and takes the VIP back;
- `carp.maintenance` hands the VIP over under systemd, holds across a
  reboot, and `carp.unmaintenance` takes it back;
- HAProxy -9 on the MASTER: systemd restarts it and leaves ucarp alone;
- HAProxy unable to start on the MASTER: the group runs demoted, the peer
  takes the VIP (never both), and lb-a takes it back once HAProxy starts."""

import os
import time

import pytest

from lab import booted

pytestmark = pytest.mark.skipif(booted.available() is not None, reason=f"booted hosts: {booted.available()}")

UNIT = "lb-ucarp@10.service"
PIDFILE = "/run/lb-carp/ucarp-10.pid"
salt_call, holds, wait, active = booted.salt_call, booted.holds, booted.wait, booted.active
settled = booted.settled


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("booted-ucarp"))
    with booted.serving_pair(workdir, f"u{os.getpid() % 100000}", booted.pillar("ucarp")) as p:
        yield p


def argv_of(node, pid):
    return node.run("cat", f"/proc/{pid}/cmdline").stdout.split("\0")[:-1]


def test_each_group_is_a_unit_instance_and_a_second_run_changes_nothing(pair):
    for node in pair.nodes.values():
        assert booted.highstate(node) == {}, f"{node.name}: a second state.apply changed something"
        assert active(node, UNIT), node.name
        assert node.run("systemctl", "is-enabled", UNIT).stdout.strip() == "enabled"
        pid = booted.main_pid(node, UNIT)
        assert str(pid) == node.run("cat", PIDFILE).stdout.strip()
        assert os.path.basename(argv_of(node, pid)[0]) == "ucarp"
        # the launcher runs what the carp module recorded, as one process
        recorded = node.run("cat", "/var/lib/lb-carp/ucarp/10.argv").stdout.splitlines()
        assert [a for a in argv_of(node, pid) if a not in ("--neutral", "--deadratio=1")] == recorded
    wait(lambda: settled(pair), "lb-a holds the VIP and serves")


def test_a_killed_ucarp_is_restarted_by_systemd_and_the_vip_stays(pair):
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    old = booted.main_pid(a, UNIT)
    lost, on_b = [], []
    a.run("kill", "-9", str(old))
    deadline = time.monotonic() + 8  # past the peer's timeout (3 x advbase)
    while time.monotonic() < deadline:
        if not holds(a):
            lost.append(round(time.monotonic(), 2))
        if holds(b):
            on_b.append(round(time.monotonic(), 2))
        time.sleep(0.1)
    new = booted.main_pid(a, UNIT)
    assert new not in (0, old) and active(a, UNIT)
    assert "--neutral" in argv_of(a, new)  # the VIP was configured: kept, claimed at once
    assert lost == [] and on_b == [], f"VIP gone from lb-a at {lost[:3]}, on lb-b at {on_b[:3]}"
    assert settled(pair)
    code, out = salt_call(a, "carp.status")
    assert code == 0 and out["10"]["state"] == "MASTER", out


def test_the_primary_reboots_and_its_ucarp_starts_after_haproxy(pair):
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    watch = booted.Watch(pair)
    watch.start()
    try:
        a.run("systemctl", "reboot", check=False, timeout=20)
        a._wait_exit(booted.BOOT_TIMEOUT)
        wait(lambda: holds(b), "lb-b takes the VIP while lb-a is down")
        a.boot()
        wait(lambda: holds(a) and not holds(b), "lb-a takes the VIP back")
        wait(lambda: booted.serves(pair), "the client is served through lb-a")
    finally:
        watch.stop()
    assert watch.overlaps == [], f"the VIP on both nodes at {watch.overlaps[:5]}"
    assert active(a, UNIT) and active(a, "haproxy.service")
    assert booted.started_at(a, UNIT) >= booted.started_at(a, "haproxy.service", "ActiveEnterTimestampMonotonic") > 0
    # started plainly at boot (no VIP was configured): the down script ran, the state is recorded
    assert "--neutral" not in argv_of(a, booted.main_pid(a, UNIT))
    print(f"\nucarp, lb-a reboot: requests failed {watch.failed}, longest client gap {watch.longest_gap:.2f} s")


def test_maintenance_hands_over_under_systemd_and_holds_across_a_reboot(pair):
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    watch = booted.Watch(pair)
    watch.start()
    try:
        code, out = salt_call(a, "carp.maintenance")
        assert code == 0, out
        wait(lambda: holds(b) and not holds(a), "lb-b holds the VIP while lb-a is in maintenance")
    finally:
        watch.stop()
    assert watch.overlaps == []
    pid = booted.main_pid(a, UNIT)
    assert "--advskew=254" in argv_of(a, pid) and "--neutral" not in argv_of(a, pid)
    try:
        a.reboot()
        time.sleep(4)  # past the peer's timeout: lb-a must not take the VIP
        assert holds(b) and not holds(a), "lb-a took the VIP back after a reboot in maintenance"
        assert "--advskew=254" in argv_of(a, booted.main_pid(a, UNIT))
    finally:
        code, out = salt_call(a, "carp.unmaintenance")
    assert code == 0, out
    wait(lambda: settled(pair), "lb-a takes the VIP back once out of maintenance")
    assert booted.highstate(a) == {}


def test_haproxy_killed_on_the_master_is_restarted_and_ucarp_is_left_alone(pair):
    """HAProxy -9 on the MASTER: systemd restarts it 200 ms later.  The
    group's ucarp is not stopped with it (Wants=, not Requires=), so the
    VIP never leaves lb-a and never shows on lb-b."""
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    ucarp, haproxy = booted.main_pid(a, UNIT), booted.main_pid(a, "haproxy.service")
    watch = booted.Watch(pair)
    watch.start()
    try:
        a.run("kill", "-9", str(haproxy))
        wait(lambda: booted.main_pid(a, "haproxy.service") not in (0, haproxy) and booted.serves(pair), "HAProxy restarted")
        time.sleep(4)  # past the peer's timeout (3 x advbase)
    finally:
        watch.stop()
    assert booted.main_pid(a, UNIT) == ucarp, "ucarp was restarted with HAProxy"
    assert watch.overlaps == [] and holds(a) and not holds(b)
    print(f"\nucarp, HAProxy -9 on the MASTER: requests failed {watch.failed}, longest client gap {watch.longest_gap:.2f} s")


def test_a_master_whose_haproxy_cannot_come_back_hands_its_vip_over(pair):
    """HAProxy killed on the MASTER and unable to start again (its binary
    not executable).  Before, systemd stopped the group's ucarp with HAProxy
    (Requires=) and left its VIP configured: the peer took the VIP after its
    timeout and both held it.  Now the launcher's watch restarts the group
    demoted (advskew 254) and the peer takes the VIP, never on both nodes.
    carp.present does not undo the demotion (it restarts the handed-over
    BACKUP plainly, which the launcher demotes again).  Once HAProxy can
    start again, the group is restarted plainly and lb-a takes the VIP back."""
    a, b = pair.nodes["lb-a"], pair.nodes["lb-b"]
    wait(lambda: settled(pair), "a settled pair")
    watch = booted.Watch(pair)
    watch.start()
    try:
        a.run("chmod", "a-x", "/usr/sbin/haproxy")
        a.run("kill", "-9", str(booted.main_pid(a, "haproxy.service")))
        wait(lambda: holds(b) and not holds(a), "lb-b takes the VIP from lb-a, whose HAProxy cannot start")
        assert active(a, UNIT), "lb-a's ucarp is not running"
        code, out = salt_call(a, "carp.status")
        assert code == 0 and out["10"]["advskew"] == 254 and out["10"]["state"] == "BACKUP", out
        # the demoted restart of a MASTER kept its VIP (--neutral
        # --deadratio=1); as a BACKUP it is restarted plainly, still demoted
        code, out = salt_call(a, "carp.present")
        flags = {"old": {"handover_flags": True}, "new": {"handover_flags": False}}
        assert code == 0 and set(map(str, out["changes"])) <= {"10"} and all(v == flags for v in out["changes"].values()), out
        code, out = salt_call(a, "carp.present", "test=True")
        assert code == 0 and out["changes"] == {}, out
        code, out = salt_call(a, "carp.status")
        assert code == 0 and out["10"]["advskew"] == 254, out
        time.sleep(4)  # past the peer's timeout: it stays so
        assert holds(b) and not holds(a)
    finally:
        a.run("chmod", "a+x", "/usr/sbin/haproxy")
    try:
        wait(lambda: settled(pair), "lb-a serves again and takes the VIP back")
    finally:
        watch.stop()
    assert watch.overlaps == [], f"the VIP on both nodes at {watch.overlaps[:5]}"
    code, out = salt_call(a, "carp.status")
    assert code == 0 and out["10"]["advskew"] != 254 and out["10"]["state"] == "MASTER", out
    print(f"\nucarp, HAProxy unable to start on the MASTER: requests failed {watch.failed}, longest client gap {watch.longest_gap:.2f} s")
