"""BIRD's generation marker: a constant at the end of bird.conf that names
the sha256 of the rest, read back from the running BIRD by `birdc eval`."""

import os
import shutil
import subprocess

import pytest
from conftest import SEED_PILLAR

import lb_generation as g
import lb_render
import lb_routing
import lb_topology


def seed_bird():
    model = lb_topology.load(lb_topology.load_file(SEED_PILLAR))
    pair, _ = lb_topology.find_node(model, "lb-a")
    return lb_routing.render_bird(pair, "lb-a", lb_render.HEADER.format(pair=pair["name"], node="lb-a"), str)


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
