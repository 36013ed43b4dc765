"""The FreeBSD CARP provider: the exact ifconfig, sysrc, sysctl and kmod calls
it makes, against a fake FreeBSD (FreeBSD cannot run here; this and the
parser tests are all that verifies this provider)."""

import json
import os
import shutil
import sys

import pytest
from salt.exceptions import CommandExecutionError

import carp_common
import lb_boot
import lb_render
from tests.support import REPO, with_lb_module

sys.path.insert(0, os.path.join(REPO, "_modules"))
import carp_freebsd  # noqa: E402

LOADER = "/boot/loader.conf"
BOOT = "{ sec = 1700000000, usec = 473316 } Tue Nov 14 22:13:20 2023"


class FakeFreeBSD:
    """Enough of a FreeBSD node for the module: `ifconfig` (FreeBSD 14 format,
    as in tests/fixtures/freebsd), `ifconfig -k`, sysctl, sysrc, kmod."""

    def __init__(self):
        self.groups = {}  # vhid -> dict(device, address, advbase, advskew, key, state)
        self.sysctl = {"net.inet.carp.preempt": "1", "net.inet.carp.demotion": "0", "kern.boottime": BOOT}
        self.loader = {"carp_load": "YES"}
        self.loaded = True
        self.calls = []  # every command or saltext call, in order
        self.fail = None

    def ifconfig_text(self, keys=False, only=None):
        out = []
        for dev in ("hn0", "hn1", "hn2"):
            if only and dev != only:
                continue
            out.append(f"{dev}: flags=8943<UP,BROADCAST,RUNNING,PROMISC,SIMPLEX,MULTICAST> metric 0 mtu 1500")
            mine = {v: g for v, g in sorted(self.groups.items()) if g["device"] == dev}
            for v, g in mine.items():
                out.append(f"\tinet {g['address']} netmask 0xffffffff broadcast {g['address']} vhid {v}")
            for v, g in mine.items():
                key = f' key "{g["key"]}"' if keys else ""
                out.append(f"\tcarp: {g['state']} vhid {v} advbase {g['advbase']} advskew {g['advskew']}{key}")
                out.append("\t      peer 224.0.0.18 peer6 ff02::12")
            out.append("\tstatus: active")
        return "\n".join(out) + "\n"

    def run_all(self, argv, **kwargs):
        self.calls.append(("cmd", list(argv)))
        if argv == ["ifconfig"]:
            return {"retcode": 0, "stdout": self.ifconfig_text(), "stderr": ""}
        if argv[:2] == ["ifconfig", "-k"]:
            assert kwargs.get("output_loglevel") == "quiet"
            return {"retcode": 0, "stdout": self.ifconfig_text(keys=True, only=argv[2]), "stderr": ""}
        if self.fail:
            return {"retcode": 1, "stdout": "", "stderr": self.fail}
        if argv[0] == "ifconfig":
            self.apply_ifconfig(argv)
            return {"retcode": 0, "stdout": "", "stderr": ""}
        raise AssertionError(f"unexpected command {argv}")

    def apply_ifconfig(self, argv):
        dev, words = argv[1], argv[2:]
        if words[-1] == "-alias":
            addr = words[1]
            for v, g in list(self.groups.items()):
                if g["device"] == dev and g["address"] == addr:
                    del self.groups[v]
            return
        i = words.index("vhid")
        vhid = int(words[i + 1])
        g = self.groups.setdefault(vhid, {"device": dev, "advbase": 1, "advskew": 0, "key": "", "state": "INIT"})
        for k in ("advbase", "advskew"):
            if k in words:
                g[k] = int(words[words.index(k) + 1])
        if "pass" in words:
            g["key"] = words[words.index("pass") + 1]
        if words[-1] == "alias":
            g["address"] = words[-2].split("/")[0]
            g["state"] = "BACKUP"

    def salt(self):
        def sysctl_get(name):
            self.calls.append(("sysctl.get", name))
            return self.sysctl[name]

        def sysctl_assign(name, value):
            self.calls.append(("sysctl.assign", name, value))
            if name == "net.inet.carp.demotion":
                self.sysctl[name] = str(int(self.sysctl[name]) + int(value))
            else:
                self.sysctl[name] = str(value)
            return {name: self.sysctl[name]}

        def sysctl_persist(name, value, config="/etc/sysctl.conf"):
            self.calls.append(("sysctl.persist", name, value))
            self.sysctl[name] = str(value)
            return "Updated"

        def sysrc_get(**kw):
            self.calls.append(("sysrc.get", kw))
            v = self.loader.get(kw["name"])
            return {kw["file"]: {kw["name"]: v}} if v is not None else None

        def sysrc_set(name, value, **kw):
            self.calls.append(("sysrc.set", name, value, kw))
            self.loader[name] = value
            return {kw.get("file"): {name: value}}

        def is_loaded(mod):
            self.calls.append(("kmod.is_loaded", mod))
            return self.loaded

        def load(mod, persist=False):
            self.calls.append(("kmod.load", mod, persist))
            self.loaded = True
            return [mod]

        return {
            "cmd.run_all": self.run_all,
            "sysctl.get": sysctl_get,
            "sysctl.assign": sysctl_assign,
            "sysctl.persist": sysctl_persist,
            "sysrc.get": sysrc_get,
            "sysrc.set": sysrc_set,
            "kmod.is_loaded": is_loaded,
            "kmod.load": load,
        }

    def writes(self):
        """The calls that change something."""
        reads = {"sysctl.get", "sysrc.get", "kmod.is_loaded"}
        return [
            c for c in self.calls if c[0] not in reads and not (c[0] == "cmd" and (c[1] == ["ifconfig"] or c[1][:2] == ["ifconfig", "-k"]))
        ]


@pytest.fixture
def fake():
    return FakeFreeBSD()


@pytest.fixture
def paths(tmp_path):
    return {
        "state_dir": str(tmp_path / "db"),
        "netif_file": str(tmp_path / "rc.conf.d" / "netif"),
        "loader_conf": LOADER,
        "rc_script": str(tmp_path / "rc.d" / "lb_carp_maintenance"),
        "rc_settings": str(tmp_path / "rc.conf.d" / "lb_carp_maintenance"),
    }


@pytest.fixture
def installed(paths):
    """What the carp SLS installs before carp.maintenance: the rc.d script
    (salt/carp's file.managed) and its settings (carp.present)."""
    os.makedirs(os.path.dirname(paths["rc_script"]))
    shutil.copy(os.path.join(REPO, "salt", "carp", "files", "lb_carp_maintenance.rc"), paths["rc_script"])
    os.chmod(paths["rc_script"], 0o755)
    os.makedirs(os.path.dirname(paths["rc_settings"]), exist_ok=True)
    with open(paths["rc_settings"], "w") as fh:
        fh.write(lb_boot.freebsd_maintenance_settings("# test", paths["state_dir"]))
    return paths


@pytest.fixture
def pillar(seed_raw):
    return {"lb": seed_raw}


@pytest.fixture
def configure_loader_modules(fake, paths, pillar):
    salt, grains = fake.salt(), {"os_family": "FreeBSD", "kernel": "FreeBSD"}
    mods = {
        carp_freebsd: {
            "__salt__": salt,
            "__opts__": {"id": "lb-a", "lb_settings": {"carp": paths}, "test": False},
            "__grains__": grains,
            "__pillar__": pillar,
        }
    }
    return with_lb_module(mods, salt, pillar, "lb-a", grains)


def seed_groups(fake, keys="seed", advskew=0):
    for vhid, pw in ((4, "passwd4"), (44, "passwd44"), (5, "passwd4"), (55, "passwd44")):
        fake.groups[vhid] = {
            "device": "hn1",
            "address": f"10.2.2.{vhid}",
            "advbase": 1,
            "advskew": advskew,
            "key": pw if keys == "seed" else keys,
            "state": "MASTER",
        }


def test_loads_on_freebsd_only(configure_loader_modules):
    assert carp_freebsd.__virtual__() == "carp"
    carp_freebsd.__grains__["os_family"] = "Debian"
    assert carp_freebsd.__virtual__()[0] is False


def test_present_from_scratch_makes_these_calls(fake, paths, seed_model):
    fake.loaded = False
    fake.loader = {}
    fake.sysctl["net.inet.carp.preempt"] = "0"
    ret = carp_freebsd.present()
    assert fake.writes() == [
        ("kmod.load", "carp", False),
        ("sysrc.set", "carp_load", "YES", {"file": LOADER}),
        ("sysctl.persist", "net.inet.carp.preempt", 1),
        ("cmd", ["ifconfig", "hn1", "inet", "vhid", "4", "advskew", "0", "pass", "passwd4", "10.2.2.4/32", "alias"]),
        ("cmd", ["ifconfig", "hn1", "inet", "vhid", "5", "advskew", "0", "pass", "passwd4", "10.2.2.5/32", "alias"]),
        ("cmd", ["ifconfig", "hn1", "inet", "vhid", "44", "advskew", "0", "pass", "passwd44", "10.2.2.44/32", "alias"]),
        ("cmd", ["ifconfig", "hn1", "inet", "vhid", "55", "advskew", "0", "pass", "passwd44", "10.2.2.55/32", "alias"]),
    ]
    assert sorted(k for k in ret["changes"] if isinstance(k, int)) == [4, 5, 44, 55]
    assert ret["changes"][4] == {"old": None, "new": {"device": "hn1", "vip": "10.2.2.4", "advbase": 1, "advskew": 0}}
    assert "passwd" not in json.dumps(ret)
    # the persistent config: the rendered rc.conf.d/netif, mode 0600
    netif = lb_render.render_node(seed_model, "lb-a", "FreeBSD")["/etc/rc.conf.d/netif"].content
    with open(paths["netif_file"]) as fh:
        assert fh.read() == netif
    assert os.stat(paths["netif_file"]).st_mode & 0o777 == 0o600
    # the password lines went to the file, never to a sysrc command line
    assert not [c for c in fake.calls if c[0] == "sysrc.set" and "pass" in str(c)]


def test_second_run_changes_nothing_and_passes_no_password(fake):
    carp_freebsd.present()
    fake.calls.clear()
    ret = carp_freebsd.present()
    assert ret["changes"] == {}
    assert fake.writes() == []
    assert ("cmd", ["ifconfig", "-k", "hn1"]) in fake.calls  # keys read to compare, quietly


def test_test_mode_touches_nothing(fake, paths):
    fake.loaded = False
    ret = carp_freebsd.present(test=True)
    assert ret["changes"] and fake.writes() == []
    assert not os.path.exists(paths["netif_file"])


def test_the_pending_functions_answer_as_test_mode_and_touch_nothing(fake, paths, installed):
    fake.loaded = False
    assert carp_freebsd.present_pending() == carp_freebsd.present(test=True)
    assert carp_freebsd.present_pending()["changes"]
    assert carp_freebsd.maintenance_pending() == {
        "changes": {"maintenance": {"old": False, "new": True}},
        "comment": "would enter maintenance",
    }
    assert carp_freebsd.unmaintenance_pending() == {"changes": {}, "comment": "not in maintenance"}
    assert fake.writes() == [] and not os.path.exists(paths["netif_file"])
    fake.loaded = True
    carp_freebsd.present()
    carp_freebsd.maintenance()
    fake.calls.clear()
    assert carp_freebsd.absent_pending(vhids=[44]) == carp_freebsd.absent(vhids=[44], test=True)
    assert list(carp_freebsd.absent_pending(vhids=[44])["changes"]) == [44]
    assert carp_freebsd.maintenance_pending()["changes"] == {}
    assert carp_freebsd.unmaintenance_pending()["changes"] == {"maintenance": {"old": True, "new": False}}
    assert fake.writes() == []


def test_change_advskew_in_place_without_password(fake, paths, pillar):
    carp_freebsd.present()
    pillar["lb"]["pairs"]["edge"]["carp"]["groups"][44]["advskew_primary"] = 20
    fake.calls.clear()
    ret = carp_freebsd.present()
    assert fake.writes() == [("cmd", ["ifconfig", "hn1", "vhid", "44", "advskew", "20"])]
    assert ret["changes"][44] == {"old": {"advskew": 0}, "new": {"advskew": 20}}
    with open(paths["netif_file"]) as fh:
        assert 'ifconfig_hn1_alias1="inet vhid 44 advskew 20 pass passwd44 10.2.2.44/32"' in fh.read()


def test_change_password_only(fake, pillar):
    carp_freebsd.present()
    pillar["lb"]["pairs"]["edge"]["carp"]["groups"][5]["password"] = "n3wpass"
    fake.calls.clear()
    ret = carp_freebsd.present()
    assert fake.writes() == [("cmd", ["ifconfig", "hn1", "vhid", "5", "pass", "n3wpass"])]
    assert ret["changes"][5] == {"old": {"password": "<old>"}, "new": {"password": "<changed>"}}
    assert "n3wpass" not in json.dumps(ret)


def test_a_group_dropped_from_the_topology_is_removed(fake, pillar):
    carp_freebsd.present()
    del pillar["lb"]["pairs"]["edge"]["carp"]["groups"][55]
    pillar["lb"]["pairs"]["edge"]["haproxy"]["listeners"].pop("http_55")
    fake.calls.clear()
    ret = carp_freebsd.present()
    assert fake.writes() == [("cmd", ["ifconfig", "hn1", "inet", "10.2.2.55", "-alias"])]
    assert ret["changes"][55]["new"] is None


def test_absent(fake):
    carp_freebsd.present()
    fake.calls.clear()
    ret = carp_freebsd.absent(vhids=[4, 44])
    assert fake.writes() == [
        ("cmd", ["ifconfig", "hn1", "inet", "10.2.2.4", "-alias"]),
        ("cmd", ["ifconfig", "hn1", "inet", "10.2.2.44", "-alias"]),
    ]
    assert sorted(ret["changes"]) == [4, 44]
    fake.calls.clear()
    assert carp_freebsd.absent(vhids=[4])["changes"] == {}
    assert fake.writes() == []


def test_ifconfig_failure_is_a_clear_error_without_the_password(fake):
    fake.fail = "ifconfig: SIOCSVH: Protocol not available"
    with pytest.raises(CommandExecutionError) as exc:
        carp_freebsd.present()
    assert "Protocol not available" in str(exc.value)
    assert "passwd" not in str(exc.value)


def test_missing_saltext_freebsd_is_named(configure_loader_modules):
    del carp_freebsd.__salt__["sysrc.set"]
    with pytest.raises(CommandExecutionError, match="saltext-freebsd"):
        carp_freebsd.present()


def demotions(fake):
    return [c for c in fake.calls if c[:2] == ("sysctl.assign", "net.inet.carp.demotion")]


def test_maintenance_demotes_once_and_undoes_once(fake, paths, installed):
    seed_groups(fake)
    ret = carp_freebsd.maintenance()
    assert ret["changes"]["maintenance"] == {"old": False, "new": True}
    assert demotions(fake) == [("sysctl.assign", "net.inet.carp.demotion", 240)]
    assert carp_freebsd.in_maintenance()
    assert os.access(paths["rc_script"], os.X_OK)
    with open(os.path.join(paths["state_dir"], "demotion")) as fh:
        assert fh.read() == "boot=1700000000\namount=240\nbefore=0\nphase=applied\n"
    # entering twice changes nothing
    assert carp_freebsd.maintenance() == {"changes": {}, "comment": "already in maintenance (demoted by 240)"}
    assert len(demotions(fake)) == 1
    assert fake.sysctl["net.inet.carp.demotion"] == "240"

    ret = carp_freebsd.unmaintenance()
    assert ret["changes"]["net.inet.carp.demotion"] == {"old": 240, "new": 0}
    assert demotions(fake)[-1] == ("sysctl.assign", "net.inet.carp.demotion", -240)
    assert fake.sysctl["net.inet.carp.demotion"] == "0"
    # the boot script stays: without the intent it does nothing at boot
    assert not carp_freebsd.in_maintenance() and os.access(paths["rc_script"], os.X_OK)
    # leaving twice changes nothing
    assert carp_freebsd.unmaintenance()["changes"] == {}
    assert len(demotions(fake)) == 2


def test_maintenance_adds_to_an_existing_demotion_and_takes_back_only_its_own(fake, installed):
    fake.sysctl["net.inet.carp.demotion"] = "240"  # e.g. an interface is down
    carp_freebsd.maintenance()
    assert fake.sysctl["net.inet.carp.demotion"] == "480"
    carp_freebsd.unmaintenance()
    assert fake.sysctl["net.inet.carp.demotion"] == "240"


def test_maintenance_test_mode(fake, paths):
    assert carp_freebsd.maintenance(test=True)["changes"] == {"maintenance": {"old": False, "new": True}}
    assert demotions(fake) == [] and not carp_freebsd.in_maintenance()


def test_after_a_reboot_the_old_record_is_not_undone(fake, paths, installed):
    carp_freebsd.maintenance()
    fake.sysctl["kern.boottime"] = "{ sec = 1700009999, usec = 1 } Wed Nov 15 00:00:00 2023"
    fake.sysctl["net.inet.carp.demotion"] = "0"  # a new boot, and the boot script did not run
    ret = carp_freebsd.maintenance()  # the intent is there: demote again, for this boot
    assert demotions(fake)[-1] == ("sysctl.assign", "net.inet.carp.demotion", 240)
    assert ret["changes"]["net.inet.carp.demotion"] == {"old": 0, "new": 240}
    fake.sysctl["kern.boottime"] = "{ sec = 1700099999, usec = 1 } Thu Nov 16 00:00:00 2023"
    fake.sysctl["net.inet.carp.demotion"] = "0"
    carp_freebsd.unmaintenance()  # the record is from another boot: nothing to take back
    assert len(demotions(fake)) == 2


def test_an_interrupted_demotion_is_not_applied_twice(fake, paths, installed):
    os.makedirs(paths["state_dir"])
    with open(os.path.join(paths["state_dir"], "maintenance"), "w") as fh:
        fh.write("{}")
    with open(os.path.join(paths["state_dir"], "demotion"), "w") as fh:
        fh.write(carp_common.demotion_record("1700000000", 240, 0, "applying"))
    fake.sysctl["net.inet.carp.demotion"] = "240"  # the sysctl ran before the crash
    carp_freebsd.maintenance()
    assert demotions(fake) == []
    with open(os.path.join(paths["state_dir"], "demotion")) as fh:
        assert "phase=applied" in fh.read()


def test_status_from_ifconfig(fake):
    seed_groups(fake)
    fake.groups[44]["state"] = "BACKUP"
    st = carp_freebsd.status()
    assert st[4] == {
        "interface": "hn1",
        "vip": "10.2.2.4",
        "vips": ["10.2.2.4"],
        "state": "MASTER",
        "advbase": 1,
        "advskew": 0,
        "provider": "freebsd",
        "demotion": 0,
        "maintenance": False,
    }
    assert st[44]["state"] == "BACKUP"


def test_groups_leave_the_password_out():
    gs = carp_freebsd.groups()
    assert [g["vhid"] for g in gs] == [4, 44, 5, 55]
    assert all("password" not in g for g in gs)
    assert gs[0]["device"] == "hn1" and gs[0]["provider"] == "freebsd"


def test_preempt():
    assert carp_freebsd.preempt_enabled() is True


def test_command_lines_are_the_live_argv_without_the_password(fake):
    lines = carp_freebsd.command_lines()
    assert sorted(lines) == [4, 5, 44, 55]
    assert lines[4][:2] == ["ifconfig", "hn1"] and lines[4][-1] == "alias"
    words = lines[44]
    assert words[words.index("pass") + 1] == "<redacted>"
    assert not any("passwd" in w for argv in lines.values() for w in argv)
    assert fake.calls == []  # nothing run


def test_maintenance_needs_its_boot_half_installed_and_changes_nothing_without_it(fake, paths):
    seed_groups(fake)
    with pytest.raises(CommandExecutionError, match="state.apply carp"):
        carp_freebsd.maintenance()
    assert demotions(fake) == [] and not carp_freebsd.in_maintenance()
    assert carp_freebsd.maintenance(test=True)["changes"] == {"maintenance": {"old": False, "new": True}}


def test_present_writes_the_maintenance_scripts_settings_and_programs_names_the_script(fake, paths):
    seed_groups(fake)
    carp_freebsd.present()
    with open(paths["rc_settings"]) as fh:
        text = fh.read()
    assert f'lb_carp_maintenance_intent="{paths["state_dir"]}/maintenance"' in text.splitlines()
    assert 'lb_carp_maintenance_demotion="240"' in text.splitlines()
    assert os.stat(paths["rc_settings"]).st_mode & 0o777 == 0o644
    assert carp_freebsd.programs() == [
        {"name": "lb_carp_maintenance", "path": paths["rc_script"], "source": "salt://carp/files/lb_carp_maintenance.rc", "mode": "0755"}
    ]


def test_the_boot_script_demotes_again_only_while_the_intent_is_on_disk(tmp_path, installed):
    """rc.d/lb_carp_maintenance's start under dash, its settings sourced as
    load_rc_config would, with `sysctl` and `kldstat` stand-ins that record
    their argv (FreeBSD's rc.subr and kernel are not run here)."""
    import subprocess

    bin_, log = tmp_path / "bin", tmp_path / "argv.log"
    bin_.mkdir()
    (bin_ / "kldstat").write_text(f'#!/bin/sh\necho "kldstat $*" >> {log}\n')
    (bin_ / "sysctl").write_text(
        f'#!/bin/sh\necho "sysctl $*" >> {log}\n'
        'case "$2" in kern.boottime) echo "{ sec = 1700000123, usec = 5 } Tue Nov 14";; net.inet.carp.demotion) echo 7;; esac\n'
    )
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    with open(installed["rc_script"]) as fh:
        body = "\n".join(
            line for line in fh.read().splitlines() if not line.startswith((". /etc/rc.subr", "run_rc_command", "load_rc_config"))
        )
    with open(installed["rc_settings"]) as fh:
        script = fh.read() + body + "\nlb_carp_maintenance_start\n"
    env = {"PATH": f"{bin_}:/usr/bin:/bin"}
    record = os.path.join(installed["state_dir"], "demotion")
    os.makedirs(installed["state_dir"])
    assert subprocess.run(["dash", "-c", script], env=env, timeout=10).returncode == 0
    assert not log.exists() and not os.path.exists(record)  # no intent: nothing at all
    with open(os.path.join(installed["state_dir"], "maintenance"), "w") as fh:
        fh.write("{}\n")
    assert subprocess.run(["dash", "-c", script], env=env, timeout=10).returncode == 0
    assert log.read_text().splitlines() == [
        "kldstat -q -m carp",
        "sysctl -n kern.boottime",
        "sysctl -n net.inet.carp.demotion",
        "sysctl net.inet.carp.demotion=240",
    ]
    with open(record) as fh:
        assert fh.read() == "boot=1700000123\namount=240\nbefore=7\nphase=applied\n"
