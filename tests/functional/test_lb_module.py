"""The `lb` execution module through Salt's loader, and through `salt-call`
run from the repo root (the Saltfile's masterless setup)."""

import json
import os
import subprocess
import sys

import pytest
import yaml

import lb_render
import lb_topology
import lb_version
from tests.support import LAB_PILLAR, REPO, SEED_PILLAR, private_minion


@pytest.fixture(scope="module")
def loaders(tmp_path_factory):

    import salt.config
    from saltfactories.utils.functional import Loaders

    opts = salt.config.minion_config(private_minion(tmp_path_factory.mktemp("minion")))
    return Loaders(opts)


def test_validate_through_the_loader(loaders):
    assert loaders.modules.lb.validate() == {"valid": True, "errors": [], "warnings": []}


def test_preview_through_the_loader_is_the_renderer_with_secrets_redacted(loaders):
    got = loaders.modules.lb.preview(node="lb-b", os_family="FreeBSD")
    model = lb_topology.load(lb_topology.load_file(SEED_PILLAR))
    assert {p: f["content"] for p, f in got.items()} == lb_render.preview(model, "lb-b", "FreeBSD", redact=True)
    assert "passwd4" not in json.dumps(got)
    assert "$6$" not in json.dumps(got)  # the stats users' hashes
    assert "user admin password <redacted>" in got["/usr/local/etc/haproxy.conf"]["content"]
    # each file with its mode, owner and the SLS that writes it
    assert {k: v for k, v in got["/etc/rc.conf.d/netif"].items() if k != "content"} == {
        "mode": "0600",
        "user": "root",
        "group": "wheel",
        "block": None,
        "state": "carp",
        "link": None,
        "source": None,
    }
    assert got["/etc/rc.conf"]["state"] == "host" and got["/etc/rc.conf"]["block"] == "append"
    with_secrets = loaders.modules.lb.preview(node="lb-b", os_family="FreeBSD", secrets=True)
    assert "pass passwd4 10.2.2." in with_secrets["/etc/rc.conf.d/netif"]["content"]
    assert "user admin password $6$" in with_secrets["/usr/local/etc/haproxy.conf"]["content"]
    # a program: its text is the file of the state tree salt/carp (salt/host:
    # the if-up.d routes program) installs
    debian = loaders.modules.lb.preview(node="lb-b", os_family="Debian")
    programs = {p: f for p, f in debian.items() if f["source"]}
    assert programs and {p: f["state"] for p, f in programs.items()} == {
        p: "host" if p.startswith("/etc/network/if-up.d/") else "carp" for p in programs
    }
    for path, f in programs.items():
        assert f["mode"] == "0755" and f["content"] == "", path
        assert os.path.isfile(os.path.join(REPO, "salt", f["source"][len("salt://") :])), f["source"]


def test_the_minion_says_which_release_it_runs(loaders):
    """lb.version: _utils/lb_version.py's VERSION, the release tag v<VERSION> (CHANGELOG.md)."""
    assert loaders.modules.lb.version() == lb_version.VERSION
    assert lb_version.TAG == f"v{lb_version.VERSION}"
    with open(os.path.join(REPO, "CHANGELOG.md")) as fh:
        assert f"\n## {lb_version.VERSION} (" in fh.read()


def test_preview_unknown_node_is_a_clear_error(loaders):
    from salt.exceptions import CommandExecutionError

    with pytest.raises(CommandExecutionError, match="node 'lb-z' is in no pair"):
        loaders.modules.lb.preview(node="lb-z", os_family="Debian")


# The venv the tests run in: .venv, or .venv-salt3006 under `make test SALT=3006`.
VENV_BIN = os.path.dirname(sys.executable)


def salt_call(*args):
    return subprocess.run(
        [os.path.join(VENV_BIN, "salt-call"), "--out=json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_salt_call_from_the_repo_root_validates_the_seed_pillar():
    r = salt_call("lb.validate")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["local"] == {"valid": True, "errors": [], "warnings": []}


def test_salt_call_preview_of_the_seed_pair():
    r = salt_call("lb.preview", "node=lb-a", "os_family=FreeBSD")
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stdout)["local"]
    assert "bind 10.1.1.241:9000" in files["/usr/local/etc/haproxy.conf"]["content"]
    assert "inet vhid 4 advskew 0 pass <redacted> 10.2.2.4/32" in files["/etc/rc.conf.d/netif"]["content"]


def test_salt_call_with_a_topology_file_a_ci_can_check(tmp_path):
    r = salt_call("lb.preview", "node=lb-b", "os_family=Debian", f"topology={LAB_PILLAR}")
    assert r.returncode == 0, r.stderr
    assert "bind 198.18.1.242:9000" in json.loads(r.stdout)["local"]["/etc/haproxy/haproxy.cfg"]["content"]

    raw = lb_topology.load_file(LAB_PILLAR)
    raw["pairs"]["edge"]["carp"]["groups"][44]["vip"] = "198.18.3.44/24"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"lb": raw}))
    r = salt_call("lb.validate", f"topology={bad}")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)["local"]
    assert report["valid"] is False
    assert {"path": "lb:pairs:edge:carp:groups:44:vip", "message": "198.18.3.44 is outside lb-a's vip subnet 198.18.2.0/24"} in report[
        "errors"
    ]

    r = salt_call("lb.preview", "node=lb-a", "os_family=Debian", f"topology={bad}")
    assert r.returncode != 0
    assert "lb:pairs:edge:carp:groups:44:vip" in r.stdout + r.stderr


def test_make_lab_s_topology_check_lists_every_file_with_mode_and_writer():
    """tools/check-topology.py, the first step of `make lab` and `make validate`."""
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "check-topology.py"), LAB_PILLAR, "--os", "Debian"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "/etc/sysctl.d/60-lb-pair.conf (3 lines, 0644, host)" in r.stdout, r.stdout
