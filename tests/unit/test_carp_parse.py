"""The FreeBSD ifconfig/sysctl parser on real output (tests/fixtures/freebsd,
sources in its README)."""

import os

import pytest

import carp_parse
from tests.support import REPO

FIX = os.path.join(REPO, "tests", "fixtures", "freebsd")


def fixture(name):
    with open(os.path.join(FIX, name), encoding="utf-8") as fh:
        return fh.read()


def test_freebsd14_backup_one_vhid_with_v4_and_v6_vips():
    groups = carp_parse.carp_groups(fixture("fbsd14-vnet0-backup.txt"))
    assert groups == {
        1: {
            "interface": "vnet0",
            "state": "BACKUP",
            "advbase": 1,
            "advskew": 0,
            "peer": "224.0.0.18",
            "peer6": "ff02::12",
            "vips": ["10.1.60.200", "fd5e:d1c2:c9de:60::200"],
        }
    }


def test_freebsd14_master_one_vhid():
    g = carp_parse.carp_groups(fixture("fbsd14-vnet0-master.txt"))[1]
    assert (g["state"], g["advskew"], g["vips"][0]) == ("MASTER", 100, "10.1.60.200")


def test_interface_addresses_and_prefixes():
    iface = carp_parse.parse_ifconfig(fixture("fbsd14-vnet0-master.txt"))["vnet0"]
    assert iface["inet"] == [
        {"address": "10.1.60.202", "prefixlen": 24, "vhid": None},
        {"address": "10.1.60.200", "prefixlen": 32, "vhid": 1},
    ]
    assert iface["status"] == "active"
    assert [a["vhid"] for a in iface["inet6"]] == [None, None, None, 1]


def test_freebsd14_several_vhids_from_grep_output():
    groups = carp_parse.carp_groups(fixture("fbsd14-grep-two-vhids-master.txt"))
    assert {v: (g["state"], g["advskew"], g["peer"]) for v, g in groups.items()} == {
        11: ("MASTER", 0, "224.0.0.18"),
        33: ("MASTER", 0, "224.0.0.18"),
    }


def test_pre14_format_full_ifconfig():
    g = carp_parse.carp_groups(fixture("fbsd11-vtnet0-master.txt"))
    assert g == {
        1: {"interface": "vtnet0", "state": "MASTER", "advbase": 1, "advskew": 0, "peer": None, "peer6": None, "vips": ["10.0.0.230"]}
    }


def test_pre14_vip_with_the_interface_prefix():
    iface = carp_parse.parse_ifconfig(fixture("fbsd11-em0-master-vhid2.txt"))["em0"]
    assert iface["inet"][1] == {"address": "192.168.1.1", "prefixlen": 24, "vhid": 2}
    assert carp_parse.carp_groups(fixture("fbsd11-em0-master-vhid2.txt"))[2]["state"] == "MASTER"


@pytest.mark.parametrize(
    "name, state, skew",
    [("fbsd11-grep-fw1-two-vhids-master.txt", "MASTER", 0), ("fbsd11-grep-fw2-two-vhids-backup.txt", "BACKUP", 100)],
)
def test_pre14_two_vhids_tab_indented(name, state, skew):
    groups = carp_parse.carp_groups(fixture(name))
    assert sorted(groups) == [1, 3]
    assert {(g["state"], g["advbase"], g["advskew"]) for g in groups.values()} == {(state, 1, skew)}


def test_init_state_line():
    # No real pasted INIT output was found (see the fixtures' README); this line
    # is built from the kernel's state names and carp_status()'s format.
    text = "em1: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n\tcarp: INIT vhid 44 advbase 1 advskew 100\n"
    assert carp_parse.carp_groups(text)[44]["state"] == "INIT"


def test_key_from_ifconfig_k_is_kept_apart():
    text = '\tcarp: MASTER vhid 4 advbase 1 advskew 0 key "passwd4"\n\t      peer 224.0.0.18 peer6 ff02::12\n'
    g = carp_parse.carp_groups(text)[4]
    assert g["key"] == "passwd4" and g["peer"] == "224.0.0.18"


def test_unknown_state_and_duplicate_vhid_are_errors():
    with pytest.raises(carp_parse.ParseError, match="unknown CARP state"):
        carp_parse.parse_ifconfig("\tcarp: WOBBLE vhid 7 advbase 1 advskew 0\n")
    two = "em0: flags=1\n\tcarp: MASTER vhid 4 advbase 1 advskew 0\nem1: flags=1\n\tcarp: BACKUP vhid 4 advbase 1 advskew 0\n"
    with pytest.raises(carp_parse.ParseError, match="vhid 4 is on both em0 and em1"):
        carp_parse.carp_groups(two)


def test_sysctl_output():
    values = carp_parse.parse_sysctl(fixture("fbsd11-sysctl-net.inet.carp.txt"))
    assert values["net.inet.carp.demotion"] == "0" and values["net.inet.carp.preempt"] == "1"
    assert len(values) == 6
    with pytest.raises(carp_parse.ParseError):
        carp_parse.parse_sysctl("garbage")


def test_boot_id():
    assert carp_parse.boot_id("{ sec = 1700000000, usec = 473316 } Tue Nov 14 22:13:20 2023") == "1700000000"
    with pytest.raises(carp_parse.ParseError):
        carp_parse.boot_id("")
