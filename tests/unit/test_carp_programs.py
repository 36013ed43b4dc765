"""The programs salt/carp installs (salt/carp/files/): every one lb_render
names exists and parses, and the facts a shell program cannot import are
the same as the Python side's.  What they do is tested where they run:
the ARP probe and the FIFO program under keepalived and ucarp in network
namespaces (tests/functional/test_carp_*), ucarp's launcher and the serving
checks under `sh` with stand-ins (test_lb_boot, test_render)."""

import os
import re
import subprocess

import pytest

import carp_common
import lb_boot
import lb_carp_vips
import lb_parameters
import lb_render_linux
from tests.support import CARP_FILES, carp_program


def _sh_value(text, name):
    return re.search(rf"^{name}=(\S+)$", text, re.M).group(1)


def test_every_program_lb_render_names_is_a_file_of_the_state_tree_that_parses():
    assert set(lb_render_linux.CARP_PROGRAMS) == set(lb_render_linux.PROGRAM_FILES)
    # and FreeBSD's maintenance rc.d script (carp_freebsd.programs)
    freebsd = os.path.basename(lb_boot.FREEBSD_MAINTENANCE_SOURCE)
    assert set(lb_render_linux.PROGRAM_FILES.values()) | {freebsd} == set(os.listdir(CARP_FILES)) - {"__pycache__"}
    for name in lb_render_linux.CARP_PROGRAMS:
        text = carp_program(name)
        if text.startswith("#!/usr/bin/python3\n"):
            compile(text, name, "exec")
        else:
            assert text.startswith("#!/bin/sh\n"), name
            assert subprocess.run(["sh", "-n"], input=text, text=True, timeout=10).returncode == 0, name


@pytest.mark.parametrize("provider", ["keepalived", "ucarp"])
def test_the_programs_of_each_provider(provider):
    import lb_topology
    from tests.support import LAB_PILLAR

    pair = lb_topology.load(lb_topology.load_file(LAB_PILLAR))["pairs"]["edge"]
    programs = lb_render_linux.carp_programs(pair, "lb-a", provider)
    if provider == "keepalived":
        assert list(programs) == ["lb-carp-keepalived-vips", "lb-haproxy-serving", "lb-routing-ready"]
    else:
        assert list(programs) == [
            "lb-carp-vip-up",
            "lb-carp-vip-down",
            "lb-carp-arp-probe",
            "lb-ucarp-exec",
            "lb-haproxy-serving",
            "lb-routing-ready",
        ]
    assert all(s.startswith("salt://carp/files/") for s in programs.values())
    listed = carp_common.programs(pair, "lb-a", provider, "/opt/sbin")
    assert [p["path"] for p in listed] == [f"/opt/sbin/{n}" for n in programs]
    assert {p["mode"] for p in listed} == {"0755"}
    with pytest.raises(ValueError):
        lb_render_linux.carp_programs(pair, "lb-a", "freebsd")


def test_the_shell_programs_say_what_the_python_side_says():
    vip = carp_program(lb_render_linux.VIP_UP)
    assert vip == carp_program(lb_render_linux.VIP_DOWN)
    assert int(_sh_value(vip, "ACQUIRE_SECONDS")) == lb_carp_vips.ACQUIRE_SECONDS
    assert _sh_value(vip, "HANDOVER_TABLE") == lb_carp_vips.HANDOVER_TABLE
    ready = re.search(r"handover_ready\(\) \{\n\tprintf '%s\\n' \\\n(.*?)\n\}", vip, re.S).group(1)
    lines = [re.fullmatch(r"\t\t'([^']*)'(?: \\)?", line).group(1) for line in ready.splitlines()]
    assert lines == lb_carp_vips.HANDOVER_READY
    launcher = carp_program(lb_boot.UCARP_LAUNCHER)
    assert int(_sh_value(launcher, "DEMOTED_ADVSKEW")) == carp_common.UCARP_MAINTENANCE_ADVSKEW
    assert int(_sh_value(launcher, "FALL")) == lb_boot.SERVING_FALL
    assert int(_sh_value(launcher, "SOFT_SECONDS")) == lb_carp_vips.SOFT_SECONDS
    assert "\n\tsleep 3\n" in vip  # the down script's soft release, as long
    ready = carp_program(lb_render_linux.ROUTING_READY_SCRIPT)
    paths = lb_parameters.of("Debian", "routing")
    assert f"{paths['birdc']} -s {paths['socket']} show protocols" in ready


def test_the_vip_script_refuses_another_name(tmp_path):
    path = tmp_path / "lb-carp-vip"
    path.write_text(carp_program(lb_render_linux.VIP_UP))
    path.chmod(0o755)
    res = subprocess.run([str(path), "eth0", "10.0.0.1", "24 1 /nonexistent"], capture_output=True, text=True, timeout=10)
    assert res.returncode == 2 and "lb-carp-vip-up or lb-carp-vip-down" in res.stderr
    assert not (tmp_path / "nonexistent").exists()


def test_the_python_program_dispatches_on_its_name(capsys):
    assert lb_carp_vips.main(["/usr/local/sbin/lb_carp_vips.py"]) == 2
    assert "lb-carp-arp-probe or lb-carp-keepalived-vips" in capsys.readouterr().err
    assert set(lb_carp_vips.PROGRAMS) == {lb_render_linux.KEEPALIVED_VIPS_SCRIPT, lb_render_linux.ARP_PROBE}


def test_the_fifo_program_reads_its_groups_as_canonical_dotted_quads():
    groups, peers = lb_carp_vips.parse_groups(["44=eth1,192.0.2.044/24,192.0.2.2", "45=eth2,10.1.1.5"])
    # what goes on to nft is inet_aton's reading (a leading 0 is octal), never the raw word
    assert groups == {44: ("eth1", "192.0.2.36", "24"), 45: ("eth2", "10.1.1.5", "32")}
    assert peers == {44: "192.0.2.2"}
    with pytest.raises(OSError):
        lb_carp_vips.parse_groups(["46=eth1,10.0.0.1;date/24"])


def test_the_handover_lines_name_one_table():
    assert all(f" {lb_carp_vips.HANDOVER_TABLE}" in line for line in lb_carp_vips.HANDOVER_READY)
    elements = lb_carp_vips.takeover_elements("192.0.2.44", "192.0.2.2")
    assert elements[0] == (
        f"add element ip {lb_carp_vips.HANDOVER_TABLE} takeover {{ 192.0.2.44 timeout {int(lb_carp_vips.HANDOVER_SECONDS * 1000)}ms : 192.0.2.2 }}"
    )
    assert len(elements) == 3
