"""BIRD's generation marker: a constant at the end of bird.conf that names
the sha256 of the rest, read back from the running BIRD by `birdc eval`."""

import os
import shutil
import subprocess

import pytest

import lb_generation as g
import lb_render_linux
import lb_routing
import lb_topology
import lb_view
from tests.support import SEED_PILLAR


def seed_bird():
    model = lb_topology.load(lb_topology.load_file(SEED_PILLAR))
    pair, _ = lb_topology.find_node(model, "lb-a")
    return lb_routing.render_bird(pair, "lb-a", lb_view.HEADER.format(pair=pair["name"], node="lb-a"), str)


def test_stamp_unstamp_and_the_generation():
    text = seed_bird()
    stamped = g.bird_stamp(text)
    assert stamped.startswith(text) and stamped.splitlines()[-1] == f'define lb_config_sha256 = "{g.bird_generation(text)}";'
    assert g.bird_stamp(stamped) == stamped
    assert g.bird_unstamp(stamped) == text
    assert g.bird_file_generation(stamped) == g.bird_generation(text)
    assert g.bird_file_generation(text) is None  # no marker
    assert g.bird_file_generation(stamped.replace("bgp_med", "bgp_local_pref", 1)) is None  # a hand edit: stale
    assert g.bird_file_generation(None) is None


def test_what_birdc_eval_prints():
    sha = "0f" * 32
    assert g.bird_loaded(f"BIRD 2.0.12 ready.\n{sha}\n") == sha
    assert g.bird_loaded("BIRD 2.0.12 ready.\nsyntax error, unexpected CF_SYM_UNDEFINED\n") is None
    assert g.bird_loaded("") is None
    assert g.bird_loaded(f"BIRD 2.0.12 ready.\n{sha}\n{sha}\n") is None


def test_bird_parses_the_stamped_seed_config(tmp_path):
    bird = shutil.which("bird") or "/usr/sbin/bird"
    if not os.path.exists(bird):
        pytest.skip("bird is not installed")
    path = tmp_path / "bird.conf"
    path.write_text(g.bird_stamp(seed_bird()))
    r = subprocess.run([bird, "-p", "-c", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def seed_keepalived():
    model = lb_topology.load(lb_topology.load_file(SEED_PILLAR))
    pair, _ = lb_topology.find_node(model, "lb-a")
    return lb_render_linux.render_keepalived(pair, "lb-a")


def test_keepalived_router_id_carries_the_generation():
    stamped = seed_keepalived()
    base = g.keepalived_unstamp(stamped)
    gen = g.keepalived_generation(base)
    assert "    router_id lb-a\n" in base and len(gen) == 16
    assert f"    router_id lb-a.lbgen-{gen}\n" in stamped
    assert base.replace("router_id lb-a\n", f"router_id lb-a.lbgen-{gen}\n") == stamped
    assert g.keepalived_stamp(stamped) == stamped
    assert g.keepalived_stamp(base) == stamped
    assert g.keepalived_file_generation(stamped) == gen
    assert g.keepalived_file_generation(base) is None  # no marker
    assert g.keepalived_file_generation(stamped.replace("priority 254", "priority 253", 1)) is None  # a hand edit: stale
    assert g.keepalived_file_generation(None) is None
    # another content, another generation
    other = g.keepalived_stamp(base.replace("priority 254", "priority 253", 1))
    assert g.keepalived_file_generation(other) not in (None, gen)
    assert g.keepalived_stamp("vrrp_instance VI_1 {\n}\n") == "vrrp_instance VI_1 {\n}\n"  # no router_id: unchanged


def test_what_keepalived_dumps():
    gen = "0123456789abcdef"
    dump = (
        f"------< Global definitions >------\n Network namespace = (default)\n Router ID = lb-a.lbgen-{gen}\n Default smtp_alert = unset\n"
    )
    assert g.keepalived_loaded(dump) == gen
    assert g.keepalived_loaded(dump.replace(f".lbgen-{gen}", "")) is None  # a config without a marker
    assert g.keepalived_loaded(dump.replace(gen, gen[:-1])) is None
    assert g.keepalived_loaded(" Router ID = lb-a.lbgen-0123456789abcdef\n Router ID = x\n") == gen  # the global one, first
    assert g.keepalived_loaded("") is None
    assert g.keepalived_loaded(" Router ID = lb-a.lbgen-01234567") is None  # a dump cut short


def test_keepalived_accepts_the_stamped_seed_config(tmp_path):
    keepalived = shutil.which("keepalived") or "/usr/sbin/keepalived"
    if not os.path.exists(keepalived):
        pytest.skip("keepalived is not installed")
    path = tmp_path / "keepalived.conf"
    path.write_text(seed_keepalived())
    r = subprocess.run([keepalived, "--config-test", "--use-file", str(path)], capture_output=True, text=True, timeout=30)
    lines = [x for x in r.stderr.splitlines() if x.strip() and "doesn't exist" not in x and "Non-existent interface" not in x]
    assert not any("router_id" in x.lower() for x in lines), r.stderr


def test_compare_gives_every_daemons_verdict_in_one_shape():
    c = g.compare
    assert c("BIRD", "/etc/bird/bird.conf", "a" * 64, running=False) == {
        "running": False,
        "file": "a" * 64,
        "loaded": None,
        "current": None,
        "reason": "BIRD is not running",
    }
    same = c("HAProxy", "/etc/haproxy/haproxy.cfg", "a" * 64, "a" * 64)
    assert same["current"] is True and same["reason"] == ""
    older = c("HAProxy", "/etc/haproxy/haproxy.cfg", "a" * 64, "b" * 64)
    assert older["current"] is False
    assert older["reason"] == f"HAProxy runs an older config than /etc/haproxy/haproxy.cfg (it reports {'b' * 12}, the file is {'a' * 12})"
    assert "it reports no marker" in c("keepalived", "/k.conf", "a" * 64, None)["reason"]
    mute = c("keepalived", "/k.conf", "a" * 64, unanswered="no dump within 3 s")
    assert mute["current"] is False and mute["reason"] == "no dump within 3 s"
    hand = c("BIRD", "/b.conf", None, "b" * 64, marker="lb_config_sha256 marker")
    assert (
        hand["current"] is None and hand["reason"] == "/b.conf carries no valid lb_config_sha256 marker: cannot tell which config BIRD runs"
    )
