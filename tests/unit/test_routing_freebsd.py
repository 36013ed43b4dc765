"""The `routing` module on FreeBSD: the exact calls it makes (the daemons'
config checks, starts, reloads, and the hook for the announcements), against
a fake FreeBSD.  FreeBSD cannot run here: this, the rendering tests
(`bgpd -n` on Debian's OpenBGPD) and the hook's exact-call tests are all
that verifies the FreeBSD side."""

import os
import shutil
import sys

import pytest
from salt.exceptions import CommandExecutionError

from tests.support import REPO, with_lb_module

sys.path.insert(0, os.path.join(REPO, "_modules"))
import routing  # noqa: E402


class Fake:
    def __init__(self):
        self.calls = []
        self.running = set()
        self.reject = False
        self.networks = set()
        self.carp = {}
        self.bgpd_down = False

    def run_all(self, argv, **kwargs):
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        name = os.path.basename(argv[0])
        if argv[0] == "service" and argv[2] == "onestatus":
            return {"retcode": 0 if argv[1] in self.running else 1, "stdout": "", "stderr": ""}
        if argv[0] == "service" and argv[2] == "onestart":
            self.running.add(argv[1])
            return {"retcode": 0, "stdout": "", "stderr": ""}
        if argv[1:3] == ["-n", "-f"]:
            assert oct(os.stat(argv[3]).st_mode & 0o777) == "0o600"
            return {"retcode": 1 if self.reject else 0, "stdout": "", "stderr": "syntax error" if self.reject else ""}
        if name == "bgpctl" and argv[1:] == ["show", "network"] and self.bgpd_down:
            return {"retcode": 1, "stdout": "", "stderr": "connect: /var/run/bgpd.sock: No such file or directory"}
        if name == "bgpctl" and argv[1:] == ["show", "network"]:
            lines = [f"*     32768 {n}/32      0.0.0.0" for n in sorted(self.networks)]
            return {"retcode": 0, "stdout": "flags prio destination gateway\n" + "\n".join(lines), "stderr": ""}
        if name in ("bgpctl", "ospfctl") and argv[1:] == ["reload"]:
            return {"retcode": 0, "stdout": "", "stderr": ""}
        if name == "lb-routing-vip":
            vip = {"4": "10.2.2.4", "44": "10.2.2.44", "5": "10.2.2.5", "55": "10.2.2.55"}[argv[1]]
            (self.networks.add if argv[2] == "MASTER" else self.networks.discard)(vip)
            return {"retcode": 0, "stdout": "", "stderr": ""}
        raise AssertionError(f"unexpected command {argv}")

    def salt(self):
        return {
            "cmd.run_all": self.run_all,
            "carp.status": lambda: self.carp,
            "carp.in_maintenance": lambda: False,
        }


@pytest.fixture
def fake():
    return Fake()


@pytest.fixture
def paths(tmp_path):
    # the hook installed first, as salt/routing does (file.managed)
    hook = tmp_path / "sbin" / "lb-routing-vip"
    hook.parent.mkdir()
    shutil.copy(os.path.join(REPO, "salt", "routing", "files", "lb-routing-vip.sh"), hook)
    hook.chmod(0o755)
    return {
        "bgpd": str(tmp_path / "etc" / "bgpd.conf"),
        "ospfd": str(tmp_path / "etc" / "ospfd.conf"),
        "ospfd_vips": str(tmp_path / "db" / "ospfd-vips.conf"),
        "hook": str(hook),
    }


@pytest.fixture
def pillar(seed_raw):
    return {"lb": seed_raw}


@pytest.fixture
def configure_loader_modules(fake, paths, pillar, tmp_path):
    salt, grains = fake.salt(), {"os_family": "FreeBSD", "kernel": "FreeBSD"}
    mods = {
        routing: {
            "__salt__": salt,
            "__opts__": {"id": "lb-a", "lb_settings": {"routing": paths, "carp": {"state_dir": str(tmp_path / "carp")}}, "test": False},
            "__grains__": grains,
            "__pillar__": pillar,
        }
    }
    return with_lb_module(mods, salt, pillar, "lb-a", grains)


def commands(fake):
    return [" ".join(os.path.basename(w) if i == 0 else w for i, w in enumerate(c)) for c in fake.calls]


def test_present_from_scratch_checks_then_starts_both_daemons(fake, paths):
    ret = routing.present()
    cands = [c[3] for c in fake.calls if c[1:3] == ["-n", "-f"]]
    assert commands(fake) == [
        "service openbgpd onestatus",
        "service openospfd onestatus",
        f"bgpd -n -f {cands[0]}",
        "service openbgpd onestart",
        f"ospfd -n -f {cands[1]}",
        "service openospfd onestart",
    ]
    assert cands == [paths["bgpd"] + ".candidate", paths["ospfd"] + ".candidate"]
    for key in ("bgpd", "ospfd"):
        assert oct(os.stat(paths[key]).st_mode & 0o777) == "0o600"
    assert 'tcp md5sig password "secret"' in open(paths["bgpd"]).read()
    assert f'include "{paths["ospfd_vips"]}"' in open(paths["ospfd"]).read()
    assert open(paths["ospfd_vips"]).read() == ""
    # ospfd refuses an included file others can read (check_file_secrecy)
    assert oct(os.stat(paths["ospfd_vips"]).st_mode & 0o777) == "0o600"
    conf = open(paths["hook"] + ".conf").read()
    assert "vips='" in conf and "bgp=yes\n" in conf and f"ospfd_vips={paths['ospfd_vips']}\n" in conf
    assert oct(os.stat(paths["hook"] + ".conf").st_mode & 0o777) == "0o644"
    assert "secret" not in repr(ret)
    fake.calls.clear()
    assert routing.present()["changes"] == {}
    assert commands(fake) == ["service openbgpd onestatus", "service openospfd onestatus"]


def test_a_world_readable_redistribute_file_is_made_private(fake, paths):
    routing.present()
    os.chmod(paths["ospfd_vips"], 0o644)
    ret = routing.present()
    assert ret["changes"][paths["ospfd_vips"]] == {"old": "mode 0644", "new": "mode 0600"}
    assert oct(os.stat(paths["ospfd_vips"]).st_mode & 0o777) == "0o600"


def test_test_mode_touches_nothing(fake, paths):
    ret = routing.present(test=True)
    assert set(ret["changes"]) == {paths["bgpd"], paths["ospfd"], paths["ospfd_vips"], paths["hook"] + ".conf", "openbgpd", "openospfd"}
    assert [p for p in paths.values() if os.path.exists(p)] == [paths["hook"]]  # the installed hook only
    assert not os.path.exists(paths["hook"] + ".conf")
    assert commands(fake) == ["service openbgpd onestatus", "service openospfd onestatus"]


def test_a_change_is_checked_then_reloaded(fake, paths, pillar):
    routing.present()
    fake.calls.clear()
    pillar["lb"]["pairs"]["edge"]["routing"]["bgp"]["neighbors"]["ebgp1"]["med"] = 20
    ret = routing.present()
    assert list(ret["changes"]) == [paths["bgpd"]]
    assert commands(fake)[2:] == [f"bgpd -n -f {paths['bgpd']}.candidate", "bgpctl reload"]
    assert "set med 20" in open(paths["bgpd"]).read()


def test_a_rejected_config_leaves_the_live_one(fake, paths, pillar):
    routing.present()
    live = open(paths["bgpd"]).read()
    pillar["lb"]["pairs"]["edge"]["routing"]["bgp"]["neighbors"]["ebgp1"]["med"] = 30
    fake.reject = True
    with pytest.raises(CommandExecutionError, match="bgpd -n rejects"):
        routing.present()
    assert open(paths["bgpd"]).read() == live
    assert not os.path.exists(paths["bgpd"] + ".candidate")
    assert "bgpctl reload" not in commands(fake)


def test_sync_announces_the_masters_vips_and_withdraws_the_rest(fake):
    fake.carp = {
        4: {"state": "MASTER", "vip": "10.2.2.4/24"},
        5: {"state": "MASTER", "vip": "10.2.2.5/24"},
        44: {"state": "BACKUP", "vip": "10.2.2.44/24"},
        55: {"state": "BACKUP", "vip": "10.2.2.55/24"},
    }
    fake.networks = {"10.2.2.44"}
    check = routing.sync(test=True)
    assert check["changes"] == {
        "10.2.2.4": {"old": False, "new": True},
        "10.2.2.44": {"old": True, "new": False},
        "10.2.2.5": {"old": False, "new": True},
    }
    assert fake.networks == {"10.2.2.44"}  # test=True: untouched
    fake.calls.clear()
    ret = routing.sync()
    assert [c for c in commands(fake) if c.startswith("lb-routing-vip")] == [
        "lb-routing-vip 4 MASTER",
        "lb-routing-vip 44 BACKUP",
        "lb-routing-vip 5 MASTER",
    ]
    assert fake.networks == {"10.2.2.4", "10.2.2.5"}
    assert ret["comment"] == "announced: 10.2.2.4, 10.2.2.5"
    assert routing.sync()["changes"] == {}


def test_sync_in_test_mode_while_the_daemon_is_down_says_what_it_would_announce(fake):
    """state.apply test=True on a node whose routing daemon is not running
    (routing.present would start it first): what would be announced, not a
    failure.  Applied for real, the same refuses (the daemon first)."""
    fake.carp = {4: {"state": "MASTER", "vip": "10.2.2.4/24"}, 44: {"state": "BACKUP", "vip": "10.2.2.44/24"}}
    fake.bgpd_down = True
    check = routing.sync(test=True)
    assert check["changes"] == {"10.2.2.4": {"old": None, "new": True}}
    assert "does not answer yet" in check["comment"] and "10.2.2.4" in check["comment"]
    assert not [c for c in commands(fake) if c.startswith("lb-routing-vip")]
    with pytest.raises(CommandExecutionError, match="does not answer"):
        routing.sync()


def test_the_pending_functions_are_test_mode_and_touch_nothing(fake, paths):
    fake.carp = {4: {"state": "MASTER", "vip": "10.2.2.4/24"}}
    pending = routing.present_pending()
    assert pending == routing.present(test=True)
    assert pending["comment"] == "would apply" and paths["bgpd"] in pending["changes"]
    assert [p for p in paths.values() if os.path.exists(p)] == [paths["hook"]]
    assert set(commands(fake)) == {"service openbgpd onestatus", "service openospfd onestatus"}
    routing.present()
    assert routing.present_pending() == {"changes": {}, "comment": "the routing daemons run the configuration the topology gives"}
    fake.calls.clear()
    assert (
        routing.sync_pending()
        == routing.sync(test=True)
        == {
            "changes": {"10.2.2.4": {"old": False, "new": True}},
            "comment": "would change the announcements",
        }
    )
    assert fake.networks == set() and not [c for c in commands(fake) if c.startswith("lb-routing-vip")]
    routing.sync()
    assert routing.sync_pending() == {"changes": {}, "comment": "announced: 10.2.2.4"}
