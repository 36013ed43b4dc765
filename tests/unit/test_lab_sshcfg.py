"""The lab's salt-ssh and sshd configuration (lab/sshcfg.py), and the
salt-ssh wrapper's lb.roles (_wrapper/lb.py)."""

import importlib.util
from pathlib import Path

import pytest

import lb_topology
from lab import LAB_DIR, PILLAR, REPO, sshcfg
from lab.plan import plan_from_pillar

SSH = LAB_DIR / "ssh"


@pytest.fixture(scope="module")
def plan():
    return plan_from_pillar(PILLAR)


def test_sshd_runs_in_each_load_balancer_on_its_management_address(plan):
    assert sshcfg.ssh_hosts(plan) == {"lb-a": "198.18.1.241", "lb-b": "198.18.1.242"}
    assert {h.name for h in plan.hosts if h.role == "lb"} == set(sshcfg.ssh_hosts(plan))


def test_the_roster_is_lb_roster_with_the_labs_options(plan):
    r = sshcfg.roster(plan)
    assert r["lb-b"] == {
        "host": "198.18.1.242",
        "user": "root",
        "port": 22,
        "priv": str(SSH / "salt-ssh.key"),
        "identities_only": True,
        "thin_dir": "/run/salt-ssh",  # the host's private /run, not the shared /var/tmp
        "set_path": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }


def test_salt_ssh_config_is_the_masters_with_its_own_paths():
    master = {
        "root_dir": "/x/master",
        "cachedir": "/x/master/cache",
        "pki_dir": "/x/master/pki",
        "log_file": "/x/master/log",
        "interface": "198.18.1.250",
        "reactor": [{"a": ["b"]}],
        "auto_accept": True,
        "file_roots": {"base": ["/r/salt", "/r/.lab/extroot"]},
        "ext_pillar": [{"git": ["main file:///r/.lab/pillar.git"]}],
        "gpg_keydir": "/x/master/gpgkeys",
        "utils_dirs": ["/r/_utils"],
    }
    cfg = sshcfg.salt_ssh_config(master)
    # the same state tree, modules and pillar (and the GPG renderer's key)
    for key in ("file_roots", "ext_pillar", "gpg_keydir", "utils_dirs"):
        assert cfg[key] == master[key]
    # its own cache, keys and logs, under .lab/ssh; nothing of the master daemon's
    assert cfg["root_dir"] == str(SSH)
    assert all(cfg[k].startswith(str(SSH) + "/") for k in ("cachedir", "pki_dir", "log_file", "ssh_log_file", "sock_dir"))
    assert not {"interface", "reactor", "auto_accept"} & set(cfg)
    assert cfg["module_dirs"] == [str(REPO)]  # the wrapper loader finds <dir>/_wrapper
    assert cfg["roster_file"] == str(SSH / "roster") and cfg["known_hosts_file"] == str(SSH / "known_hosts")
    assert cfg["ssh_priv"] == str(SSH / "salt-ssh.key")


def test_sshd_config_is_key_only_on_one_address_with_lab_files():
    text = sshcfg.sshd_config("lb-b", "198.18.1.242")
    lines = dict(line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert lines["ListenAddress"] == "198.18.1.242:22"
    assert lines["HostKey"] == str(SSH / "lb-b" / "ssh_host_ed25519_key")
    # not under the checkout, which may lie under /tmp (StrictModes checks every directory above it)
    keys = lines["AuthorizedKeysFile"]
    assert keys.startswith("/var/lib/lb-pair-lab/") and keys.endswith("/authorized_keys") and not keys.startswith(str(REPO))
    parts = keys.split("/")
    assert [len(parts), len(parts[4])] == [6, 12]  # /var/lib/lb-pair-lab/<12 hex of the checkout's path>/authorized_keys
    assert lines["PasswordAuthentication"] == "no" and lines["KbdInteractiveAuthentication"] == "no"
    assert lines["PermitRootLogin"] == "prohibit-password" and lines["UsePAM"] == "no"
    assert lines["StrictModes"] == "yes" and lines["PidFile"] == "none"
    assert "/etc/ssh" not in text and "/root" not in text
    assert sshcfg.sshd_command("lb-b") == ["/usr/sbin/sshd", "-D", "-e", "-f", str(SSH / "lb-b" / "sshd_config")]


def _wrapper(pillar, minion_id, ipv4=()):
    spec = importlib.util.spec_from_file_location("lb_wrapper_under_test", REPO / "_wrapper" / "lb.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.__pillar__ = pillar
    mod.__opts__ = {"id": minion_id}
    mod.__grains__ = {"ipv4": list(ipv4)}
    mod.__context__ = {"master_opts": {"utils_dirs": [str(REPO / "_utils")]}}
    return mod


def test_the_wrappers_roles_come_from_the_pillar_it_is_given(lab_raw):
    got = _wrapper({"lb": lab_raw}, "lb-b").roles()
    want = lb_topology.roles(lb_topology.load(lab_raw), "lb-b")
    assert got == dict(want, invalid=None, agentless=True) and got["lb"] == ["edge"]
    db = _wrapper({"lb": lab_raw}, "db-1", ipv4=["198.18.4.2"]).roles()
    assert db["galera"] == ["edge"] and db["lb"] == [] and db["agentless"] is True


def test_the_wrapper_gives_no_role_without_a_valid_topology(lab_raw):
    assert _wrapper({}, "lb-b").roles() == {"lb": [], "galera": [], "routing": [], "invalid": None, "agentless": True}
    lab_raw["pairs"]["edge"]["nodes"]["lb-a"]["interfaces"]["mgmt"]["address"] = "not an address"
    roles = _wrapper({"lb": lab_raw}, "lb-b").roles()
    assert roles["lb"] == []
    assert roles["invalid"].startswith("lb:pairs:edge:nodes:lb-a:interfaces:mgmt:address: "), roles


def test_the_top_file_gives_only_haproxy_over_salt_ssh():
    import jinja2

    top = (REPO / "salt" / "top.sls").read_text()

    def render(roles):
        out = jinja2.Template(top).render(salt={"lb.roles": lambda: roles}, grains={"id": "lb-b"})
        return [line.strip()[2:] for line in out.splitlines() if line.strip().startswith("- ")]

    roles = {"lb": ["edge"], "galera": [], "routing": ["edge"]}
    # the host (sysctls, routes) first, HAProxy before CARP: a node serves
    # before it can take a VIP
    assert render(roles) == ["host", "haproxy", "carp", "carp.events", "routing"]
    # agentless: the host's sysctls (ip_nonlocal_bind) and routes, and HAProxy
    assert render(dict(roles, agentless=True)) == ["host", "haproxy"]
    assert render({"lb": [], "galera": ["edge"], "routing": [], "agentless": True}) == []
    # an invalid topology: one failing state, with or without an agent
    bad = {"lb": [], "galera": [], "routing": [], "invalid": "lb:pairs: not a mapping"}
    assert render(bad) == ["lb.invalid"]
    assert render(dict(bad, agentless=True)) == ["lb.invalid"]


def test_the_repo_has_the_wrapper_where_the_config_says():
    assert Path(sshcfg.salt_ssh_config({})["module_dirs"][0], "_wrapper", "lb.py").is_file()
