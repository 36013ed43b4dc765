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
        "tcp md5sig password secret",
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
    assert "tcp md5sig password <redacted>" in text and "secret" not in text


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
    """`bird -p` (parse only) on a rendered bird.conf, its announce directory
    moved under tmp_path (it must exist: BIRD's include glob needs it)."""
    announce = tmp_path / "announce"
    announce.mkdir(exist_ok=True)
    cfg = tmp_path / "bird.conf"
    cfg.write_text(text.replace(lb_routing.PATHS["Debian"]["announce_dir"] + "/", f"{announce}/"))
    cfg.chmod(0o600)
    bird = shutil.which("bird") or "/usr/sbin/bird"
    return subprocess.run([bird, "-p", "-c", str(cfg)], capture_output=True, text=True, timeout=30), announce


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
    assert ospf[-4:] == ['interface "hn1" { };', 'interface "hn0" { stub yes; };', 'interface "hn2" { cost 10; };', "};"]
    assert 'export where proto = "lb_vips" && net ~ LB_VIPS;' in ospf
    assert bird_blocks(text, "static")["lb_vips"] == ["ipv4;", 'include "/run/bird/lb-vip-*.conf";']
    r, _ = bird_check(tmp_path, text)
    assert r.returncode == 0, r.stdout + r.stderr


def test_bird_p_accepts_announced_vips_and_rejects_a_broken_config(tmp_path, lab_model):
    text = lb_render.render_node(lab_model, "lb-b", "Debian")["/etc/bird/bird.conf"].content
    r, announce = bird_check(tmp_path, text)
    assert r.returncode == 0, r.stderr
    (announce / "lb-vip-198.18.2.5.conf").write_text("route 198.18.2.5/32 blackhole;\n")
    r, _ = bird_check(tmp_path, text)
    assert r.returncode == 0, r.stderr
    (announce / "lb-vip-198.18.2.5.conf").write_text("route 198.18.2.5/32 blakhole;\n")
    r, _ = bird_check(tmp_path, text)
    assert r.returncode != 0
    (announce / "lb-vip-198.18.2.5.conf").unlink()
    r, _ = bird_check(tmp_path, text.replace("neighbor 198.18.2.1 as 65001;", "neighbor 198.18.2.1 as;"))
    assert r.returncode != 0


def test_bird_conf_bfd_and_hold_time(tmp_path, lab_raw):
    nb = lab_raw["pairs"]["edge"]["routing"]["bgp"]["neighbors"]["ebgp1"]
    nb["bfd"], nb["hold_time"] = True, 9
    text = lb_render.render_node(lb_topology.load(lab_raw), "lb-a", "Debian")["/etc/bird/bird.conf"].content
    assert "protocol bfd {\n}" in text
    block = bird_blocks(text, "bgp")["ebgp1"]
    assert "bfd on;" in block and "hold time 9;" in block
    r, _ = bird_check(tmp_path, text)
    assert r.returncode == 0, r.stderr


def test_bird_conf_without_a_password_is_not_secret(lab_raw):
    del lab_raw["pairs"]["edge"]["routing"]["bgp"]["neighbors"]["ebgp1"]["md5sig_password"]
    f = lb_render.render_node(lb_topology.load(lab_raw), "lb-a", "Debian")["/etc/bird/bird.conf"]
    assert not f.secret and "password" not in f.content


def test_bird_md5_key_is_redacted_in_a_preview(seed_model):
    text = lb_render.preview(seed_model, "lb-a", "Debian", redact=True)["/etc/bird/bird.conf"]
    assert 'password "<redacted>";' in text and "secret" not in text


def test_desired_follows_master_holding_and_maintenance():
    status = {
        4: {"state": "MASTER", "vip": "198.18.2.4/24", "holds_vip": True},
        5: {"state": "MASTER", "vip": "198.18.2.5/24", "holds_vip": False},  # ucarp, before its ARP probe
        44: {"state": "BACKUP", "vip": "198.18.2.44/24", "holds_vip": False},
        55: {"state": "INIT", "vip": "198.18.2.55/24", "holds_vip": True},
    }
    assert lb_routing.desired(status, False) == {"198.18.2.4"}
    assert lb_routing.desired(status, False, linux=False) == {"198.18.2.4", "198.18.2.5"}
    assert lb_routing.desired(status, True) == set()
    assert lb_routing.desired({}, False) == set()


def test_parse_bird_and_bgpctl_output():
    bird = "BIRD 2.0.12 ready.\nTable master4:\n198.18.2.5/32        blackhole [lb_vips 01:31:08.720] * (200)\n198.18.2.4/32   blackhole [lb_vips 01:31:08] * (200)\n"
    assert lb_routing.parse_bird_routes(bird) == {"198.18.2.5", "198.18.2.4"}
    bgpctl = (
        "flags: S = Static\nflags prio destination                      gateway\n*     32768 198.18.2.5/32                    0.0.0.0\n"
    )
    assert lb_routing.parse_bgpctl_networks(bgpctl) == {"198.18.2.5"}
