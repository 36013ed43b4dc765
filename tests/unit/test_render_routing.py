"""OSPF and BGP rendering: the seed's semantics per node, checked by the real
`bgpd -n` (Debian's OpenBGPD)."""

import re
import shutil
import subprocess

import pytest

import lb_render
import lb_topology

NODES = {"lb-a": "241", "lb-b": "242"}


def bgpd_check(tmp_path, text):
    cfg = tmp_path / "bgpd.conf"
    cfg.write_text(text)
    cfg.chmod(0o600)
    bgpd = shutil.which("bgpd") or "/usr/sbin/bgpd"
    return subprocess.run([bgpd, "-n", "-f", str(cfg)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("os_family,path", [("FreeBSD", "/usr/local/etc/bgpd.conf"), ("Debian", "/etc/bgpd.conf")])
@pytest.mark.parametrize("node", NODES)
def test_bgpd_conf_has_the_seeds_semantics_and_passes_bgpd_n(tmp_path, seed_model, node, os_family, path):
    f = lb_render.render_node(seed_model, node, os_family)[path]
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
    text = lb_render.render_node(seed_model, "lb-a", "Debian")["/etc/bgpd.conf"].content
    assert bgpd_check(tmp_path, text.replace("remote-as 65001", "remote-as")).returncode != 0


@pytest.mark.parametrize("node", NODES)
def test_ospfd_conf_has_the_seeds_semantics(seed_model, node):
    text = lb_render.render_node(seed_model, node, "FreeBSD")["/usr/local/etc/ospfd.conf"].content
    body = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert body == [
        f"router-id 10.255.255.{NODES[node]}",
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
    assert not any("bgpd" in p or "ospfd" in p for p in files)
