"""OSPF and BGP rendering: the seed's semantics per node, checked by the real
daemons' parsers: `bgpd -n` (Debian's OpenBGPD, the same OpenBGPD the
FreeBSD port ships) for bgpd.conf, `bird -p` (Debian's BIRD 2) for Linux's
bird.conf.  OpenOSPFD is not packaged for Debian: ospfd.conf is checked by
its text only."""

import re
import shutil
import subprocess

import pytest

import lb_render
import lb_routing
import lb_topology

NODES = {"lb-a": "241", "lb-b": "242"}


def bgpd_check(tmp_path, text):
    cfg = tmp_path / "bgpd.conf"
    cfg.write_text(text)
    cfg.chmod(0o600)
    bgpd = shutil.which("bgpd") or "/usr/sbin/bgpd"
    return subprocess.run([bgpd, "-n", "-f", str(cfg)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("node", NODES)
def test_bgpd_conf_has_the_seeds_semantics_and_passes_bgpd_n(tmp_path, seed_model, node):
    f = lb_render.render_node(seed_model, node, "FreeBSD")["/usr/local/etc/bgpd.conf"]
    assert f.mode == "0600" and f.secret
    text = f.content
    last = NODES[node]
    assert "AS 65000\n" in text
    assert f"router-id 10.255.255.{last}\n" in text
    block = re.search(r"neighbor 10\.2\.2\.1 \{(.*?)\n\}", text, re.S).group(1).split("\n")
    block = [line.strip() for line in block if line.strip()]
    assert block == [
        "remote-as 65001",
        'descr "ebgp1"',
        f"local-address 10.2.2.{last}",
        'tcp md5sig password "secret"',
        "set med 10",
        "set localpref 80",
        "set community 65000:180",
    ]
    assert "announce all" not in text
    assert "allow to 10.2.2.1 prefix { 10.2.2.4/32 10.2.2.44/32 10.2.2.5/32 10.2.2.55/32 }" in text
    r = bgpd_check(tmp_path, text)
    assert r.returncode == 0, r.stdout + r.stderr


def test_bgpd_n_rejects_a_broken_config(tmp_path, seed_model):
    text = lb_render.render_node(seed_model, "lb-a", "FreeBSD")["/usr/local/etc/bgpd.conf"].content
    assert bgpd_check(tmp_path, text.replace("remote-as 65001", "remote-as")).returncode != 0


@pytest.mark.parametrize("node", NODES)
def test_ospfd_conf_has_the_seeds_semantics(seed_model, node):
    text = lb_render.render_node(seed_model, node, "FreeBSD")["/usr/local/etc/ospfd.conf"].content
    body = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert body == [
        f"router-id 10.255.255.{NODES[node]}",
        'include "/var/db/lb-routing/ospfd-vips.conf"',
        "area 0.0.0.0 {",
        "interface hn1",
        "interface hn0 {",
        "passive",
        "}",
        "interface hn2 {",
        "metric 10",
        "}",
        "}",
    ]


def test_md5_key_is_redacted_in_a_preview(seed_model):
    text = lb_render.preview(seed_model, "lb-a", "FreeBSD", redact=True)["/usr/local/etc/bgpd.conf"]
    assert 'tcp md5sig password "<redacted>"' in text and "secret" not in text


def test_no_routing_no_routing_files(seed_raw):
    del seed_raw["pairs"]["edge"]["routing"]
    files = lb_render.render_node(lb_topology.load(seed_raw), "lb-a", "FreeBSD")
    assert not any("bgpd" in p or "ospfd" in p or "bird" in p or "lb-routing" in p for p in files)
    files = lb_render.render_node(lb_topology.load(seed_raw), "lb-a", "Debian")
    assert not any("bird" in p or "lb-routing" in p for p in files)


def test_bgpd_conf_hold_time(tmp_path, seed_raw):
    seed_raw["pairs"]["edge"]["routing"]["bgp"]["neighbors"]["ebgp1"]["hold_time"] = 9
    text = lb_render.render_node(lb_topology.load(seed_raw), "lb-a", "FreeBSD")["/usr/local/etc/bgpd.conf"].content
    assert "\tholdtime 9\n" in text
    r = bgpd_check(tmp_path, text)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------------------
# Linux: BIRD 2


def bird_check(tmp_path, text):
    """`bird -p` (parse only) on a rendered bird.conf."""
    cfg = tmp_path / "bird.conf"
    cfg.write_text(text)
    cfg.chmod(0o600)
    bird = shutil.which("bird") or "/usr/sbin/bird"
    return subprocess.run([bird, "-p", "-c", str(cfg)], capture_output=True, text=True, timeout=30)


def bird_blocks(text, kind):
    """{name: [lines]} of each `protocol <kind> <name> {` block."""
    out = {}
    for m in re.finditer(rf"^protocol {kind} (\w+) \{{\n(.*?)^\}}", text, re.S | re.M):
        out[m.group(1)] = [line.strip() for line in m.group(2).splitlines() if line.strip()]
    return out


@pytest.mark.parametrize("node", NODES)
def test_bird_conf_has_the_seeds_semantics_and_passes_bird_p(tmp_path, seed_model, node):
    f = lb_render.render_node(seed_model, node, "Debian")["/etc/bird/bird.conf"]
    assert f.mode == "0640" and f.secret
    text = f.content
    last = NODES[node]
    assert f"router id 10.255.255.{last};\n" in text
    assert "define LB_VIPS = [ 10.2.2.4/32, 10.2.2.44/32, 10.2.2.5/32, 10.2.2.55/32 ];" in text
    assert bird_blocks(text, "bgp")["ebgp1"] == [
        'description "ebgp1";',
        f"local 10.2.2.{last} as 65000;",
        "neighbor 10.2.2.1 as 65001;",
        'password "secret";',
        "connect retry time 5;",
        "error wait time 1, 5;",
        "ipv4 {",
        # OpenBGPD's neighbor `set` applies to what is received from it
        "import filter { bgp_med = 10; bgp_local_pref = 80; bgp_community.add((65000,180)); accept; };",
        'export where proto = "lb_vips" && net ~ LB_VIPS;',
        "};",
    ]
    ospf = bird_blocks(text, "ospf v2")["lb_ospf"]
    # the VIP interface (hn1) without the VIP addresses: no stub network
    # for a VIP in the router LSA, which would outlive the address
    not_vips = '-"*" 10.2.2.4/32, -"*" 10.2.2.44/32, -"*" 10.2.2.5/32, -"*" 10.2.2.55/32, '
    assert ospf[-4:] == [f'interface {not_vips}"hn1" {{ }};', 'interface "hn0" { stub yes; };', 'interface "hn2" { cost 10; };', "};"]
    assert 'export where proto = "lb_vips" && net ~ LB_VIPS;' in ospf
    # the announcements are the VIP addresses on the VIP interface
    assert bird_blocks(text, "direct")["lb_vips"] == ["ipv4 { import where net ~ LB_VIPS; };", 'interface "hn1";']
    assert "protocol static" not in text
    r = bird_check(tmp_path, text)
    assert r.returncode == 0, r.stdout + r.stderr


def test_bird_p_accepts_the_lab_config_and_rejects_a_broken_one(tmp_path, lab_model):
    text = lb_render.render_node(lab_model, "lb-b", "Debian")["/etc/bird/bird.conf"].content
    assert 'interface "lb-b-eth1";' in bird_blocks(text, "direct")["lb_vips"]
    r = bird_check(tmp_path, text)
    assert r.returncode == 0, r.stderr
    r = bird_check(tmp_path, text.replace("neighbor 198.18.2.1 as 65001;", "neighbor 198.18.2.1 as;"))
    assert r.returncode != 0


def test_bird_conf_bfd_and_hold_time(tmp_path, lab_raw):
    nb = lab_raw["pairs"]["edge"]["routing"]["bgp"]["neighbors"]["ebgp1"]
    nb["bfd"], nb["hold_time"] = True, 9
    text = lb_render.render_node(lb_topology.load(lab_raw), "lb-a", "Debian")["/etc/bird/bird.conf"].content
    assert "protocol bfd {\n}" in text
    block = bird_blocks(text, "bgp")["ebgp1"]
    assert "bfd on;" in block and "hold time 9;" in block
    r = bird_check(tmp_path, text)
    assert r.returncode == 0, r.stderr


def test_bird_conf_without_a_password_is_not_secret(lab_raw):
    del lab_raw["pairs"]["edge"]["routing"]["bgp"]["neighbors"]["ebgp1"]["md5sig_password"]
    f = lb_render.render_node(lb_topology.load(lab_raw), "lb-a", "Debian")["/etc/bird/bird.conf"]
    assert not f.secret and "password" not in f.content


def test_bird_md5_key_is_redacted_in_a_preview(seed_model):
    text = lb_render.preview(seed_model, "lb-a", "Debian", redact=True)["/etc/bird/bird.conf"]
    assert 'password "<redacted>";' in text and "secret" not in text


def test_desired_linux_follows_the_addresses_freebsd_the_state():
    status = {
        4: {"state": "MASTER", "vip": "198.18.2.4/32", "holds_vip": True},
        5: {"state": "MASTER", "vip": "198.18.2.5/32", "holds_vip": False},  # ucarp, before its ARP probe
        44: {"state": "BACKUP", "vip": "198.18.2.44/32", "holds_vip": False},
        55: {"state": "INIT", "vip": "198.18.2.55/32", "holds_vip": True},  # what BIRD's direct protocol sees
    }
    assert lb_routing.desired(status, False) == {"198.18.2.4", "198.18.2.55"}
    # in maintenance a Linux node announces what it still holds (until the
    # peer takes it): its addresses are still what clients reach
    assert lb_routing.desired(status, True) == {"198.18.2.4", "198.18.2.55"}
    # FreeBSD keeps a BACKUP's CARP address: the state decides, and maintenance
    assert lb_routing.desired(status, False, linux=False) == {"198.18.2.4", "198.18.2.5"}
    assert lb_routing.desired(status, True, linux=False) == set()
    assert lb_routing.desired({}, False) == set()


def test_parse_bird_and_bgpctl_output():
    # `birdc show route protocol lb_vips` (BIRD 2.0.12, the direct protocol)
    bird = (
        "BIRD 2.0.12 ready.\nTable master4:\n198.18.2.5/32        unicast [lb_vips 04:12:36.690] * (240)\n\tdev lb-a-eth1\n"
        "198.18.2.4/32        unicast [lb_vips 04:12:36.690] * (240)\n\tdev lb-a-eth1\n"
    )
    assert lb_routing.parse_bird_routes(bird) == {"198.18.2.5", "198.18.2.4"}
    bgpctl = (
        "flags: S = Static\nflags prio destination                      gateway\n*     32768 198.18.2.5/32                    0.0.0.0\n"
    )
    assert lb_routing.parse_bgpctl_networks(bgpctl) == {"198.18.2.5"}
