"""lb-routing-vip, the hook that makes the VIP announcements follow CARP,
run for real by /bin/sh with stand-ins for the daemons' control tools that
record their arguments: Linux (birdc, ip; the real flock) and FreeBSD
(bgpctl, ospfctl, lockf: the exact calls; FreeBSD itself cannot run here).
BIRD reading what the hook writes: tests/functional/test_routing_bird.py."""

import subprocess

import pytest

import lb_routing

VIPS = {4: ("eth1", "198.18.2.4"), 5: ("eth1", "198.18.2.5")}


def fake(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def calls_of(path):
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def linux(tmp_path):
    calls = tmp_path / "calls"
    addrs = tmp_path / "addrs"  # what the fake `ip` says is on eth1
    addrs.write_text("")
    state = tmp_path / "carp"
    (state / "state").mkdir(parents=True)
    paths = {
        "announce_dir": str(tmp_path / "run"),
        "lock": str(tmp_path / "lock"),
        "socket": "/run/bird/bird.ctl",
        "birdc": fake(tmp_path / "birdc", f'echo "birdc $*" >> {calls}\necho Reconfigured\n'),
        "ip": fake(tmp_path / "ip", f'for a in $(cat {addrs}); do echo "2: eth1    inet $a/24 scope global eth1"; done\n'),
        "state_dir": str(state),
        "maintenance": str(state / "maintenance"),
    }
    script = tmp_path / "lb-routing-vip"
    script.write_text(lb_routing.hook_script("Debian", VIPS, paths, master_wait=0.2))
    script.chmod(0o755)

    class Node:
        def set(self, vhid, carp_state, held):
            (state / "state" / str(vhid)).write_text(f"{carp_state} 154 1700000000\n")
            have = set(addrs.read_text().split())
            vip = VIPS[vhid][1]
            have = have | {vip} if held else have - {vip}
            addrs.write_text(" ".join(sorted(have)))

        def run(self, *args):
            r = subprocess.run([str(script), *args], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            return calls_of(calls)

        def announced(self):
            return sorted(p.name for p in (tmp_path / "run").glob("lb-vip-*.conf"))

        def content(self, vip):
            return (tmp_path / "run" / f"lb-vip-{vip}.conf").read_text()

    node = Node()
    node.maintenance = state / "maintenance"
    return node


def test_linux_master_holding_the_vip_announces_it_and_reconfigures_bird(linux):
    linux.set(4, "MASTER", held=True)
    assert linux.run("4", "MASTER") == ["birdc -s /run/bird/bird.ctl configure"]
    assert linux.announced() == ["lb-vip-198.18.2.4.conf"]
    assert linux.content("198.18.2.4") == "route 198.18.2.4/32 blackhole;\n"
    # again: nothing to change, no reconfiguration
    assert len(linux.run("4", "MASTER")) == 1


def test_linux_backup_withdraws(linux):
    linux.set(4, "MASTER", held=True)
    linux.run("4", "MASTER")
    linux.set(4, "BACKUP", held=False)
    assert len(linux.run("4", "BACKUP")) == 2
    assert linux.announced() == []
    assert len(linux.run("4", "BACKUP")) == 2  # nothing more to withdraw


def test_linux_decides_from_the_records_not_the_argument(linux):
    # a late MASTER call after the node went BACKUP must not announce
    linux.set(5, "BACKUP", held=False)
    assert linux.run("5", "MASTER") == []
    assert linux.announced() == []


def test_linux_master_without_the_address_waits_then_does_not_announce(linux):
    linux.set(4, "MASTER", held=False)  # ucarp's MASTER before its ARP probe frees the address
    assert linux.run("4", "MASTER") == []
    assert linux.announced() == []


def test_linux_maintenance_withdraws(linux):
    linux.set(4, "MASTER", held=True)
    linux.set(5, "MASTER", held=True)
    linux.run("4", "MASTER")
    linux.run("5", "MASTER")
    assert linux.announced() == ["lb-vip-198.18.2.4.conf", "lb-vip-198.18.2.5.conf"]
    linux.maintenance.write_text("{}\n")
    linux.run("4", "MASTER")
    linux.run("5")
    assert linux.announced() == []


def test_linux_unknown_vhid_does_nothing(linux):
    assert linux.run("99", "MASTER") == []
    assert linux.run("x", "MASTER") == []


@pytest.fixture
def freebsd(tmp_path):
    calls = tmp_path / "calls"
    rec = f'echo "${{0##*/}} $*" >> {calls}\n'
    db = tmp_path / "db"
    db.mkdir()
    paths = {
        "ospfd_vips": str(db / "ospfd-vips.conf"),
        "lock": str(tmp_path / "lock"),
        "bgpctl": fake(tmp_path / "bgpctl", rec),
        "ospfctl": fake(tmp_path / "ospfctl", rec),
        "maintenance": str(tmp_path / "maintenance"),
    }
    text = lb_routing.hook_script("FreeBSD", {4: ("hn1", "10.2.2.4"), 5: ("hn1", "10.2.2.5")}, paths)
    assert "exec /usr/bin/lockf -k -t 10 " in text
    # FreeBSD's lockf(1) here: record it, then run the command it guards
    lockf = fake(tmp_path / "lockf", rec + 'shift 4\nexec "$@"\n')
    script = tmp_path / "lb-routing-vip"
    script.write_text(text.replace("/usr/bin/lockf", lockf))
    script.chmod(0o755)

    def run(*args):
        calls.unlink(missing_ok=True)
        r = subprocess.run([str(script), *args], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return calls_of(calls), (db / "ospfd-vips.conf").read_text()

    run.maintenance = tmp_path / "maintenance"
    run.lock = paths["lock"]
    run.script = script
    return run


def test_freebsd_master_adds_the_network_and_redistributes_it(freebsd):
    calls, ospf = freebsd("4", "MASTER")
    assert calls == [
        f"lockf -k -t 10 {freebsd.lock} {freebsd.script} 4 MASTER",
        "bgpctl network add 10.2.2.4/32",
        "ospfctl reload",
    ]
    assert ospf == "redistribute 10.2.2.4/32\n"
    calls, ospf = freebsd("5", "MASTER")
    assert calls[1:] == ["bgpctl network add 10.2.2.5/32", "ospfctl reload"]
    assert ospf == "redistribute 10.2.2.4/32\nredistribute 10.2.2.5/32\n"


def test_freebsd_backup_and_init_delete_the_network(freebsd):
    freebsd("4", "MASTER")
    freebsd("5", "MASTER")
    calls, ospf = freebsd("4", "BACKUP")
    assert calls[1:] == ["bgpctl network delete 10.2.2.4/32", "ospfctl reload"]
    assert ospf == "redistribute 10.2.2.5/32\n"
    calls, ospf = freebsd("5", "INIT")
    assert calls[1:] == ["bgpctl network delete 10.2.2.5/32", "ospfctl reload"]
    assert ospf == ""
    calls, _ = freebsd("5", "BACKUP")  # ospfd's file unchanged: no reload
    assert calls[1:] == ["bgpctl network delete 10.2.2.5/32"]


def test_freebsd_maintenance_withdraws_even_a_master(freebsd):
    freebsd("4", "MASTER")
    freebsd.maintenance.write_text("{}\n")
    calls, ospf = freebsd("4", "MASTER")
    assert calls[1:] == ["bgpctl network delete 10.2.2.4/32", "ospfctl reload"]
    assert ospf == ""


def test_linux_files_are_readable_by_bird_whatever_the_callers_umask(linux, tmp_path):
    linux.set(4, "MASTER", held=True)
    script = tmp_path / "lb-routing-vip"
    subprocess.run(["sh", "-c", f"umask 077; exec {script} 4 MASTER"], env={"PATH": "/usr/bin:/bin"}, check=True, timeout=30)
    f = tmp_path / "run" / "lb-vip-198.18.2.4.conf"
    assert oct(f.stat().st_mode & 0o777) == "0o644"


def test_linux_a_failed_reconfiguration_is_an_error(linux, tmp_path):
    (tmp_path / "birdc").write_text("#!/bin/sh\necho 'bird.conf:26:11 Unable to open included file: Permission denied'\n")
    linux.set(4, "MASTER", held=True)
    r = subprocess.run([str(tmp_path / "lb-routing-vip"), "4"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "Permission denied" in r.stderr


def test_linux_one_call_settles_every_vip_with_one_reconfiguration(linux):
    linux.set(4, "MASTER", held=True)
    linux.set(5, "MASTER", held=True)
    assert len(linux.run("4", "MASTER")) == 1
    assert linux.announced() == ["lb-vip-198.18.2.4.conf", "lb-vip-198.18.2.5.conf"]
    assert len(linux.run("5", "MASTER")) == 1  # nothing left to do: no second configure
    linux.set(4, "BACKUP", held=False)
    linux.set(5, "BACKUP", held=False)
    assert len(linux.run("5", "BACKUP")) == 2
    assert linux.announced() == []
    assert len(linux.run("4", "BACKUP")) == 2
