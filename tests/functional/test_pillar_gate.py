"""The pillar gate (tools/pillar-gate) on real pillar trees: Salt's own
pillar compiler and renderers (Jinja, YAML, the GPG renderer with a real
gpg key made here), `lb.validate`'s checks and the real `haproxy -c`; and
the pre-receive hook (tools/pillar_hooks.py) in a real bare repository,
refusing a bad push with the errors' pillar paths."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

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


def _master(tmp_path, repo, gpg_home, branch="main"):
    """A salt-master config serving `repo`'s `branch` through git_pillar (as
    the lab's master does), with the test's key directory."""
    master = tmp_path / "master"
    master.write_text(
        f"gpg_keydir: {gpg_home}\ncachedir: {tmp_path / 'mcache'}\n"
        f"ext_pillar:\n  - git:\n    - {branch} file://{repo}:\n      - env: base\n"
        f"git_pillar_base: {branch}\ngit_pillar_branch: {branch}\n"
    )
    return master


def _repo(tmp_path, gpg_home, branch="main"):
    from lab import pillar_repo

    repo = tmp_path / "pillar.git"
    master = _master(tmp_path, repo, gpg_home, branch)
    pillar_repo.seed(master, repo=repo, home=gpg_home)
    (repo / "hooks" / "post-receive").unlink()  # no master here: the gate only
    return repo


def _push_to(repo, files, ref, gpg_home):
    """Commit `files` (as they are) on a clone of `repo`'s main and push
    them to `ref`: git push's result."""
    from lab import pillar_repo

    work = Path(tempfile.mkdtemp(prefix="pillar-push-"))
    try:
        pillar_repo._git("clone", "-q", "-b", "main", str(repo), str(work / "w"))
        for rel, text in files.items():
            (work / "w" / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / "w" / rel).write_text(text)
        pillar_repo._git("add", "-A", cwd=work / "w")
        pillar_repo._git("commit", "-q", "--allow-empty", "-m", "test", cwd=work / "w")
        return pillar_repo._git("push", "origin", f"HEAD:{ref}", cwd=work / "w", check=False, timeout=900)
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
    assert "error: lb:pairs:edge:carp:groups:4:password: cannot be decrypted with the master's key" in r.stdout, r.stdout
    assert "No secret key" in r.stdout and r.stdout.count("carp:groups:4:password") == 1


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

    repo = tmp_path / "pillar.git"
    master = _master(tmp_path, repo, gpg_home)
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


def test_a_push_that_calls_salt_is_refused_and_runs_nothing(tmp_path, gpg_home):
    from lab import pillar_repo

    repo = _repo(tmp_path, gpg_home)
    head = pillar_repo.head(repo)
    ran = [tmp_path / f"ran-{i}" for i in range(4)]
    top = (LAB / "top.sls").read_text().replace("    - lb\n", "    - lb\n    - extra\n    - code\n", 1)
    extra = (
        f"extra: {{{{ salt['cmd.run']('touch {ran[0]}') }}}}\n"
        f"{{% do salt['file.write']('{ran[1]}', 'x') %}}\n"
        f"more: {{{{ salt.cmd.run('touch {ran[2]}') }}}}\n"
    )
    code = f"#!py\ndef run():\n    open('{ran[3]}', 'w').close()\n    return {{}}\n"
    r = pillar_repo.push({"top.sls": top, "extra.sls": extra, "code.sls": code}, "exec", repo=repo, home=gpg_home)
    assert r.returncode != 0 and "pre-receive hook declined" in r.stderr, r.stderr
    assert "remote: error: extra.sls:1: calls Salt's execution functions (salt[...])" in r.stderr, r.stderr
    assert "remote: error: extra.sls:2: calls Salt's execution functions" in r.stderr
    assert "remote: error: extra.sls:3: calls Salt's execution functions" in r.stderr
    assert "remote: error: code.sls: renders with 'py'" in r.stderr
    assert [p for p in ran if p.exists()] == []
    assert pillar_repo.head(repo) == head


def test_the_render_refuses_salt_calls_even_past_the_static_check(tmp_path):
    """The second line of defence: the render child's `salt` refuses every
    call (here called directly, as if the static check had missed one)."""
    import pillar_gate

    tree = _tree(tmp_path)
    ran = tmp_path / "ran"
    (tree / "top.sls").write_text("base:\n  '*':\n    - lb\n    - extra\n")
    (tree / "extra.sls").write_text(f"extra: {{{{ salt['cmd.run']('touch {ran}') }}}}\n")
    out = pillar_gate.compile_in_child(str(tree), {"renderer": "jinja|yaml"}, {"lb-a": {"os_family": "Debian"}})
    errors = [str(f) for f in pillar_gate._render_errors(out["pillars"]["lb-a"].get("_errors"), "lb-a")]
    assert errors == [
        "pillar (minion lb-a): Rendering SLS 'extra' failed, render error: Jinja error: salt['cmd.run']: a pushed pillar"
        " may not call Salt's execution functions (the gate refuses it) (line 1)"
    ]
    assert not ran.exists()


def test_a_2_mib_file_with_a_cleartext_password_is_refused(tmp_path, gpg_home):
    from lab import pillar_repo

    tree = _tree(tmp_path)
    (tree / "lb.sls").write_text(pillar_repo.repo_text("lb.sls", (LAB / "lb.sls").read_text(), gpg_home))
    filler = "# " + "x" * 1021 + "\n"
    (tree / "notes").mkdir()
    (tree / "notes" / "big.txt").write_text(filler * 2048 + "carp password: passwd44\n")
    # and one 2 MiB line, the secret in its middle
    (tree / "notes" / "line.txt").write_text("y" * (1 << 20) + " password: passwd4, " + "y" * (1 << 20) + "\n")
    assert (tree / "notes" / "big.txt").stat().st_size > 2 << 20
    r = gate(tree, "--gpg-keydir", str(gpg_home))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "error: lb:pairs:edge:carp:groups:44:password: is in clear text in notes/big.txt;" in r.stdout, r.stdout
    assert "error: lb:pairs:edge:carp:groups:4:password: is in clear text in notes/line.txt;" in r.stdout, r.stdout
    assert "passwd4" not in r.stdout + r.stderr


GRAIN_TOP = """base:
  '*':
    - lb
  'os_family:Debian':
    - match: grain
    - debian
  'G@os_family:FreeBSD and lb-*':
    - match: compound
    - freebsd
"""


def _grain_tree(tmp_path):
    tree = _tree(tmp_path)
    (tree / "top.sls").write_text(GRAIN_TOP)
    (tree / "debian.sls").write_text("lb:\n  pairs:\n    edge:\n      description: for Debian minions only\n")
    (tree / "freebsd.sls").write_text("lb:\n  pairs:\n    edge:\n      description: for FreeBSD minions only\n")
    (tree / "grains").mkdir()
    (tree / "grains" / "lb-a.yaml").write_text("os_family: Debian\nos: Debian\n")
    (tree / "grains" / "lb-b.yaml").write_text("os_family: FreeBSD\nos: FreeBSD\n")
    return tree


def test_a_grain_targeted_pillar_is_compiled_with_each_nodes_grains(tmp_path):
    import pillar_gate

    tree = _grain_tree(tmp_path)
    res = pillar_gate.gate(str(tree), os_families=["Debian"], allow_cleartext=True)
    assert res.ok, res.as_dict()
    assert res.topologies["lb-a"]["pairs"]["edge"]["description"] == "for Debian minions only"
    assert res.topologies["lb-b"]["pairs"]["edge"]["description"] == "for FreeBSD minions only"
    assert "lb-a: compiled with its grains from grains/lb-a.yaml" in res.checked

    # a node whose grains nobody knows is an error, not a compile with its id
    (tree / "grains" / "lb-b.yaml").unlink()
    res = pillar_gate.gate(str(tree), os_families=["Debian"], allow_cleartext=True)
    assert [str(e) for e in res.errors] == [
        "lb:pairs:edge:nodes:lb-b: its grains are unknown (no grains/lb-b.yaml in the tree, and no --master-config for the"
        " master's grains cache) and the pillar depends on grains (base: 'os_family:Debian' (match: grain);"
        " base: 'G@os_family:FreeBSD and lb-*' (match: compound))"
    ]


def test_the_masters_grains_cache_wins(tmp_path, gpg_home):
    import pillar_gate
    import salt.cache
    import salt.config

    tree = _grain_tree(tmp_path)
    master = _master(tmp_path, tmp_path / "pillar.git", gpg_home)
    cache = salt.cache.factory(salt.config.master_config(str(master)))
    cache.store("minions/lb-a", "data", {"grains": {"id": "lb-a", "os_family": "FreeBSD"}})
    res = pillar_gate.gate(str(tree), master_config=str(master), os_families=["Debian"], allow_cleartext=True)
    assert res.ok, res.as_dict()
    assert res.topologies["lb-a"]["pairs"]["edge"]["description"] == "for FreeBSD minions only"
    assert "lb-a: compiled with its grains from the master's grains cache" in res.checked


def test_a_push_to_a_branch_the_master_does_not_serve_is_refused(tmp_path, gpg_home):
    from lab import pillar_repo

    repo = _repo(tmp_path, gpg_home)
    broken = (LAB / "lb.sls").read_text().replace("vip: 198.18.2.44/24", "vip: 198.18.9.44/24", 1)
    r = _push_to(repo, {"lb.sls": broken}, "refs/heads/feature", gpg_home)
    assert r.returncode != 0 and "pre-receive hook declined" in r.stderr, r.stderr
    assert (
        f"remote: pillar-gate: refusing branch 'feature': the master serves only main of this repository (git_pillar in {tmp_path / 'master'})"
        in r.stderr
    )
    assert "feature" not in pillar_repo._git("--git-dir", str(repo), "branch", "--list").stdout
    r = _push_to(repo, {}, "refs/tags/v1", gpg_home)
    assert r.returncode != 0 and "remote: pillar-gate: refusing refs/tags/v1: the master serves only main" in r.stderr, r.stderr


def test_per_minion_settings_that_would_inject_are_refused_with_their_path(tmp_path):
    tree = _tree(tmp_path)
    (tree / "settings.sls").write_text(
        "lb_settings:\n  carp:\n    keepalived_bin: /x$(touch /tmp/p)\n  haproxy:\n    binary: /usr/sbin/haproxy\n    colour: blue\n"
        "lb_routing:\n  bird: /etc/bird/bird.conf\n"
    )
    top = tree / "top.sls"
    top.write_text(top.read_text().replace("  'lb-*':\n", "  'lb-*':\n    - settings\n", 1))
    r = gate(tree, "--allow-cleartext")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "error: lb_settings:carp:keepalived_bin (minion lb-a): " in r.stdout, r.stdout
    assert "error: lb_settings:haproxy:colour (minion lb-a): unknown setting" in r.stdout, r.stdout
    assert "error: lb_routing (minion lb-a): moved to lb_settings:routing" in r.stdout, r.stdout
    assert not os.path.exists("/tmp/p") or os.path.getmtime("/tmp/p") < os.path.getmtime(tree / "settings.sls")
