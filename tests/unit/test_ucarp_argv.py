"""The command line the carp module gives ucarp (carp_common.ucarp_argv) and
its inverse: the peer's address rides in --xparam with the second chance
(carp:second_chance), and a command line an earlier release started (no
peer) still reads."""

import pytest

import carp_common
import lb_topology
from tests.support import SEED_PILLAR

PATHS = {"script_dir": "/usr/local/sbin", "state_dir": "/var/lib/lb-carp", "ucarp_dir": "/etc/lb-carp/ucarp"}


def group(vhid=44):
    _, groups = carp_common.node_groups(lb_topology.load(lb_topology.load_file(SEED_PILLAR)), "lb-b", "Debian")
    return next(g for g in groups if g["vhid"] == vhid)


def test_the_second_chance_gives_the_scripts_the_peers_address():
    argv = carp_common.ucarp_argv("/usr/sbin/ucarp", group(), PATHS)
    assert argv[-3:] == [
        "--upscript=/usr/local/sbin/lb-carp-vip-up",
        "--downscript=/usr/local/sbin/lb-carp-vip-down",
        "--xparam=32 44 /var/lib/lb-carp 10.2.2.241",
    ]
    parsed = carp_common.parse_ucarp_argv(argv)
    assert parsed["peer"] == "10.2.2.241" and parsed["state_dir"] == "/var/lib/lb-carp" and parsed["vhid"] == 44


def test_without_the_second_chance_there_is_no_peer():
    argv = carp_common.ucarp_argv("/usr/sbin/ucarp", group(), PATHS, second_chance=False)
    assert argv[-1] == "--xparam=32 44 /var/lib/lb-carp"
    assert carp_common.parse_ucarp_argv(argv)["peer"] is None


def test_a_handover_inserts_its_options_before_the_scripts_and_xparam():
    # ucarp_io.handover (carp_ucarp) inserts --neutral --deadratio=1 at -3
    argv = carp_common.ucarp_argv("/usr/sbin/ucarp", group(), PATHS, neutral=True, deadratio=1)
    assert argv[-5:-3] == ["--neutral", "--deadratio=1"]


def test_an_xparam_of_another_shape_is_not_ours():
    argv = carp_common.ucarp_argv("/usr/sbin/ucarp", group(), PATHS)
    argv[-1] += " extra"
    with pytest.raises(ValueError, match="not a ucarp command line written by this module"):
        carp_common.parse_ucarp_argv(argv)
