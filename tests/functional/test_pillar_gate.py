"""The pillar gate (tools/pillar-gate) on real pillar trees: Salt's own
pillar compiler and renderers (Jinja, YAML, the GPG renderer with a real
gpg key made here), `lb.validate`'s checks and the real `haproxy -c`; and
the pre-receive hook (tools/pillar_hooks.py) in a real bare repository,
refusing a bad push with the errors' pillar paths."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, REPO)

GATE = os.path.join(REPO, "tools", "pillar-gate")
LAB = Path(REPO) / "pillar" / "lab"
SERVERS_ANCHOR = "              http_srv-2: {address: 198.18.6.2, port: 80}\n"


def gate(tree, *args):
    return subprocess.run([GATE, str(tree), "--os", "Debian", *args], capture_output=True, text=True, timeout=300)


def _tree(tmp_path, name="tree", edit=None) -> Path:
    tree = tmp_path / name
    shutil.copytree(LAB, tree)
    if edit:
        path = tree / "lb.sls"
        text = path.read_text()
        new = edit(text)
        assert new != text
        path.write_text(new)
    return tree


@pytest.fixture(scope="module")
def gpg_home(tmp_path_factory):
    from lab import pillar_repo

    home = tmp_path_factory.mktemp("gpg") / "gpgkeys"
    pillar_repo.make_key(home)
    yield home
    pillar_repo.stop_agent(home)


def test_the_lab_pillar_passes_in_clear_text_when_allowed(tmp_path):
    r = gate(_tree(tmp_path), "--allow-cleartext")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lb-a (Debian): " in r.stdout and "haproxy -c OK" in r.stdout and ": OK" in r.stdout


def test_secrets_in_clear_text_are_refused_with_their_paths(tmp_path):
    r = gate(_tree(tmp_path))
    assert r.returncode == 1
    assert "error: lb:pairs:edge:carp:groups:4:password: is in clear text in lb.sls" in r.stdout
    assert "error: lb:pairs:edge:galera_probe:password: is in clear text" in r.stdout
    assert "clustercheck-lab-pw" not in r.stdout + r.stderr and "passwd4" not in r.stdout + r.stderr


def test_a_broken_topology_fails_with_its_pillar_path(tmp_path):
    tree = _tree(
        tmp_path, edit=lambda t: t.replace("44: {interface: vip, vip: 198.18.2.44/24", "44: {interface: vip, vip: 198.18.9.44/24", 1)
    )
    r = gate(tree, "--allow-cleartext")
    assert r.returncode == 1
    assert "error: lb:pairs:edge:carp:groups:44:vip: 198.18.9.44 is outside lb-a's vip subnet" in r.stdout, r.stdout
    assert "haproxy -c" not in r.stdout  # nothing rendered from an invalid topology


def test_a_config_only_haproxy_rejects_fails_with_haproxys_message(tmp_path):
    anchor = "          web_b:\n            kind: http\n"
    tree = _tree(tmp_path, edit=lambda t: t.replace(anchor, anchor + "            default_server: {resolvers: nosuchdns}\n", 1))
    r = gate(tree, "--allow-cleartext")
    assert r.returncode == 1, r.stdout
    assert "lb-a (Debian): 5 files rendered, haproxy -c FAILED" in r.stdout or "haproxy -c FAILED" in r.stdout
    assert (
        "error: lb:pairs:edge:haproxy:pools:web_b:servers:http_srv-4: haproxy -c rejects lb-a's config (Debian):"
        " config : proxy 'haproxy_198.18.2.55_80', server 'http_srv-4': unable to find required resolvers 'nosuchdns'"
    ) in r.stdout


def test_a_yaml_error_is_salts_render_error(tmp_path):
    tree = _tree(tmp_path, edit=lambda t: t.replace("      nodes:\n", "      nodes: [\n", 1))
    r = gate(tree, "--allow-cleartext")
    assert r.returncode == 1
    assert "error: pillar (minion pillar-gate): Rendering SLS 'lb' failed" in r.stdout, r.stdout


def test_an_encrypted_tree_renders_through_the_gpg_renderer(tmp_path, gpg_home):
    from lab import pillar_repo

    tree = _tree(tmp_path)
    (tree / "lb.sls").write_text(pillar_repo.repo_text("lb.sls", (LAB / "lb.sls").read_text(), gpg_home))
    text = (tree / "lb.sls").read_text()
    assert text.startswith("#!jinja|yaml|gpg\n") and "passwd4" not in text and "-----BEGIN PGP MESSAGE-----" in text
    r = gate(tree, "--gpg-keydir", str(gpg_home))
    assert r.returncode == 0, r.stdout + r.stderr
    # without the key, the renderer cannot decrypt: refused, with gpg's reason
    r = gate(tree, "--gpg-keydir", str(tmp_path / "nokeys"))
    assert r.returncode == 1
    assert "Rendering SLS 'lb' failed" in r.stdout and "No secret key" in r.stdout, r.stdout


def test_the_gate_through_its_python_api_leaves_no_gpg_agent(tmp_path, gpg_home):
    import pillar_gate

    from lab import pillar_repo

    tree = _tree(tmp_path)
    (tree / "lb.sls").write_text(pillar_repo.repo_text("lb.sls", (LAB / "lb.sls").read_text(), gpg_home))
    res = pillar_gate.gate(str(tree), gpg_keydir=str(gpg_home), os_families=["Debian"])
    assert res.ok, res.as_dict()
    assert res.topologies["pillar-gate"]["pairs"]["edge"]["carp"]["groups"][4]["password"] == "passwd4"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "pillar-gate-" not in ps  # the gate's own agent (its private key dir copy) is stopped


def test_the_pre_receive_hook_refuses_a_bad_push_and_takes_a_good_one(tmp_path, gpg_home):
    from lab import pillar_repo

    master = tmp_path / "master"
    master.write_text(f"gpg_keydir: {gpg_home}\n")
    repo = tmp_path / "pillar.git"
    pillar_repo.seed(master, repo=repo, home=gpg_home)
    (repo / "hooks" / "post-receive").unlink()  # no master here: the gate only
    head = pillar_repo.head(repo)
    plain = (LAB / "lb.sls").read_text()

    bad = plain.replace("44: {interface: vip, vip: 198.18.2.44/24", "44: {interface: vip, vip: 198.18.9.44/24", 1)
    r = pillar_repo.push({"lb.sls": bad}, "broken", repo=repo, home=gpg_home)
    assert r.returncode != 0
    assert "remote: error: lb:pairs:edge:carp:groups:44:vip: 198.18.9.44 is outside" in r.stderr, r.stderr
    assert "pre-receive hook declined" in r.stderr
    assert pillar_repo.head(repo) == head

    r = pillar_repo.push({"lb.sls": plain}, "in clear text", repo=repo, home=gpg_home, encrypt_secrets=False)
    assert r.returncode != 0 and "is in clear text in lb.sls" in r.stderr, r.stderr
    assert pillar_repo.head(repo) == head

    good = plain.replace(SERVERS_ANCHOR, SERVERS_ANCHOR + "              http_srv-3: {address: 198.18.6.3, port: 80}\n", 1)
    r = pillar_repo.push({"lb.sls": good}, "a server more", repo=repo, home=gpg_home)
    assert r.returncode == 0, r.stderr
    assert "pillar-gate:" in r.stderr and ": OK" in r.stderr
    assert pillar_repo.head(repo) != head
    served = pillar_repo.read("lb.sls", repo)
    assert "http_srv-3" in yaml.safe_load(served)["lb"]["pairs"]["edge"]["haproxy"]["pools"]["web_a"]["servers"]
    assert "passwd4" not in served
