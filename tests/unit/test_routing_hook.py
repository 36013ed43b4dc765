"""lb-routing-vip, FreeBSD's hook that makes the VIP announcements follow
CARP, run for real by /bin/sh with stand-ins for the daemons' control tools
that record their arguments (bgpctl, ospfctl, lockf: the exact calls;
FreeBSD itself cannot run here).  Linux has no hook: BIRD's direct protocol
follows the addresses (test_render_routing, tests/functional/test_routing_bird.py)."""

import subprocess

import pytest

import lb_routing
from tests.support import REPO

VIPS = {4: ("eth1", "198.18.2.4"), 5: ("eth1", "198.18.2.5")}
PROGRAM = f"{REPO}/salt/routing/files/lb-routing-vip.sh"


def fake(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def calls_of(path):
    return path.read_text().splitlines() if path.exists() else []


def test_linux_has_no_hook():
    # Linux announces with BIRD's direct protocol, which follows the VIP
    # addresses themselves (test_render_routing, the lab's samplers)
    with pytest.raises(ValueError, match="direct protocol"):
        lb_routing.hook_config("Debian", VIPS)


def _freebsd(tmp_path, **protocols):
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
    conf = lb_routing.hook_config("FreeBSD", {4: ("hn1", "10.2.2.4"), 5: ("hn1", "10.2.2.5")}, paths, **protocols)
    text = open(PROGRAM).read()
    assert 'exec /usr/bin/lockf -k -t 10 "$lock" ' in text
    # FreeBSD's lockf(1) here: record it, then run the command it guards
    lockf = fake(tmp_path / "lockf", rec + 'shift 4\nexec "$@"\n')
    script = tmp_path / "lb-routing-vip"
    script.write_text(text.replace("/usr/bin/lockf", lockf))
    script.chmod(0o755)
    (tmp_path / "lb-routing-vip.conf").write_text(conf)

    def run(*args):
        calls.unlink(missing_ok=True)
        r = subprocess.run([str(script), *args], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        vips = db / "ospfd-vips.conf"
        return calls_of(calls), vips.read_text() if vips.exists() else None

    run.maintenance = tmp_path / "maintenance"
    run.lock = paths["lock"]
    run.script = script
    run.vips = db / "ospfd-vips.conf"
    return run


@pytest.fixture
def freebsd(tmp_path):
    return _freebsd(tmp_path)


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


def test_freebsd_ospf_only_redistributes_without_bgpctl(tmp_path):
    # an OSPF-only pair has no bgpd: `bgpctl network add || exit 1` would
    # fail every announcement
    hook = _freebsd(tmp_path, bgp=False)
    calls, ospf = hook("4", "MASTER")
    assert calls[1:] == ["ospfctl reload"]
    assert ospf == "redistribute 10.2.2.4/32\n"
    # ospfd refuses an included file others can read (check_file_secrecy)
    assert hook.vips.stat().st_mode & 0o777 == 0o600
    calls, ospf = hook("4", "BACKUP")
    assert calls[1:] == ["ospfctl reload"]
    assert ospf == ""


def test_freebsd_bgp_only_never_reloads_ospfd(tmp_path):
    hook = _freebsd(tmp_path, ospf=False)
    calls, ospf = hook("4", "MASTER")
    assert calls[1:] == ["bgpctl network add 10.2.2.4/32"]
    assert ospf is None
    calls, _ = hook("4", "BACKUP")
    assert calls[1:] == ["bgpctl network delete 10.2.2.4/32"]


def test_the_redistribute_file_is_private_with_both_protocols(freebsd):
    freebsd("4", "MASTER")
    assert freebsd.vips.stat().st_mode & 0o777 == 0o600


def test_redistribute_lines_parse():
    assert lb_routing.parse_redistribute("redistribute 10.2.2.4/32\nredistribute 10.2.2.5/32\n# x\n") == {"10.2.2.4", "10.2.2.5"}


def test_the_hook_is_the_state_tree_s_file_and_salt_routing_installs_it():
    assert lb_routing.HOOK_SOURCE == "salt://routing/files/lb-routing-vip.sh"
    assert f"- source: {lb_routing.HOOK_SOURCE}\n" in open(f"{REPO}/salt/routing/init.sls").read()
    assert subprocess.run(["sh", "-n", PROGRAM], timeout=10).returncode == 0


def test_an_unknown_vhid_or_no_settings_changes_nothing(freebsd, tmp_path):
    calls, ospf = freebsd("9", "MASTER")
    assert calls[1:] == [] and ospf is None
    (tmp_path / "lb-routing-vip.conf").unlink()
    r = subprocess.run([str(freebsd.script), "4", "MASTER"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "no settings in" in r.stderr


def test_the_settings_are_checked_and_quoted():
    conf = lb_routing.hook_config("FreeBSD", {5: ("em1.100", "10.2.2.5"), 4: ("hn1", "10.2.2.4")}, bgp=False)
    assert "vips='4=hn1,10.2.2.4 5=em1.100,10.2.2.5'\n" in conf and "bgp=no\n" in conf and "ospf=yes\n" in conf
    with pytest.raises(ValueError, match="vhid 4 VIP"):
        lb_routing.hook_config("FreeBSD", {4: ("hn1", "10.2.2.4;id")})
    with pytest.raises(ValueError, match="BGP or OSPF"):
        lb_routing.hook_config("FreeBSD", VIPS, bgp=False, ospf=False)
