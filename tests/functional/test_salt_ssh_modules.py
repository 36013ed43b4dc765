"""What salt-ssh ships to a target, through Salt's own code (no ssh): the
extension modules tarball (`salt.client.ssh.mod_data`) from a config laid
out like the lab's salt-ssh config (lab/sshcfg.py: the repo's state tree
and a directory of _modules/_states/_utils symlinks as file roots), and the
thin's extra modules for `thin_extra_mods: netaddr` (the Saltfile's).  Then the shipped
_utils imported and run by this machine's /usr/bin/python3 (a Debian 12
target's interpreter, with its own cryptography 38), the way the target's
salt-call finds them: the thin first, then the shipped utils.
"""

import os
import shutil
import subprocess
import tarfile
import textwrap

import pytest
import salt.version
import yaml

from lab import REPO
from tests.support import LAB_PILLAR

TARGET_PYTHON = "/usr/bin/python3"
EXT = ("_modules", "_states", "_grains", "_utils")

# Salt 3006's salt-ssh ships no extension utils: its mod_data packs _modules,
# _states, _grains, _renderers and _returners only, so on a target the
# product's modules cannot import lb_topology and the rest.  Agentless use
# needs Salt 3007 or later where salt-ssh runs (docs/agentless.md).
_SALT_MAJOR = salt.version.__saltstack_version__.major
needs_shipped_utils = pytest.mark.skipif(
    _SALT_MAJOR < 3007, reason=f"Salt {_SALT_MAJOR}'s salt-ssh does not ship _utils (mod_data): agentless use needs Salt 3007+"
)


@pytest.fixture(scope="module")
def opts(tmp_path_factory):
    import salt.config

    from lab import sshcfg

    root = tmp_path_factory.mktemp("salt-ssh")
    extroot = root / "extroot"
    extroot.mkdir()
    for name in EXT:
        (extroot / name).symlink_to(REPO / name)
    master = {
        "root_dir": str(root),
        "cachedir": str(root / "cache"),
        "pki_dir": str(root / "pki"),
        "sock_dir": str(root / "run"),
        "log_file": str(root / "log"),
        "file_roots": {"base": [str(REPO / "salt"), str(extroot)]},
        "pillar_roots": {"base": [str(REPO / "pillar" / "seed")]},
        "utils_dirs": [str(REPO / "_utils")],
    }
    cfg = sshcfg.salt_ssh_config(master)
    for key in ("root_dir", "cachedir", "pki_dir", "sock_dir", "log_file", "ssh_log_file", "key_logfile", "pidfile"):
        cfg[key] = master.get(key, str(root / key))
    (root / "master").write_text(yaml.safe_dump(cfg))
    return salt.config.master_config(str(root / "master"))


@pytest.fixture(scope="module")
def shipped(opts, tmp_path_factory):
    """{ext_mods tarball member names}, and a directory with the thin's
    and the ext_mods' contents unpacked, as on a target."""
    import salt.client.ssh
    import salt.fileclient
    import salt.utils.thin

    mods = salt.client.ssh.mod_data(salt.fileclient.FSClient(opts))
    target = tmp_path_factory.mktemp("target")
    with tarfile.open(mods["file"]) as tar:
        names = set(tar.getnames())
        tar.extractall(target / "extmods", filter="data")
    # what gen_thin packs into the thin's py3/ (the tarball itself takes
    # ~20 s to build; salt-ssh in the lab test builds and uses it for real)
    tops = salt.utils.thin.get_tops(extra_mods="netaddr")
    (target / "thin" / "py3").mkdir(parents=True)
    for top in tops:
        # Salt 3008 lists (path, None) pairs, 3006 and 3007 bare paths.
        top = top[0] if isinstance(top, tuple) else top
        if os.path.basename(top) == "netaddr":
            shutil.copytree(top, target / "thin" / "py3" / "netaddr")
    return names, target


@needs_shipped_utils
def test_the_projects_modules_are_in_the_ext_mods_tarball(shipped):
    names, _ = shipped
    for member in (
        "modules/haproxy_cfg.py",
        "modules/haproxy_cfg_process.py",
        "modules/haproxy_cfg_runtime.py",
        "modules/lb.py",
        "states/haproxy_section.py",
        "utils/lb_topology.py",
        "utils/lb_topology_haproxy.py",
        "utils/lb_topology_services.py",
        "utils/lb_check.py",
        "utils/lb_render.py",
        "utils/haproxy_config.py",
        "utils/lb_roster.py",
    ):
        assert member in names, sorted(names)
    assert not [n for n in names if n.startswith(("beacons/", "runners/"))]  # minion and master only


def test_the_thin_carries_netaddr(shipped):
    _, target = shipped
    assert (target / "thin" / "py3" / "netaddr" / "__init__.py").is_file()


@needs_shipped_utils
def test_a_debian_targets_python_runs_the_shipped_utils(shipped):
    """The lab pillar validated and rendered, and certificate dates read with
    the target's cryptography (38 on Debian 12: no *_utc properties)."""
    _, target = shipped
    code = textwrap.dedent(
        """
        import datetime, sys
        sys.path[:0] = [sys.argv[1] + "/thin/py3", sys.argv[1] + "/thin/pyall", sys.argv[1] + "/extmods/utils"]
        import lb_topology, lb_topology_haproxy, lb_render, haproxy_config, lb_roster, netaddr
        assert netaddr.__file__.startswith(sys.argv[1]), netaddr.__file__
        model = lb_topology.load(lb_topology.load_file(sys.argv[2]))
        files = lb_render.preview(model, "lb-b", "Debian", redact=True)
        assert any(p.endswith("haproxy.cfg") for p in files), list(files)
        assert lb_roster.roster(model)["lb-b"]["host"] == "198.18.1.242"
        try:
            import cryptography
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError:
            print("no cryptography")
            sys.exit(0)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
        now = datetime.datetime(2030, 1, 2, 3, 4, 5)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        before, after = lb_topology_haproxy.cert_validity(cert)
        assert before == now.replace(tzinfo=datetime.timezone.utc), before
        assert after - before == datetime.timedelta(days=1)
        print("cryptography", cryptography.__version__, "utc properties:", hasattr(cert, "not_valid_after_utc"))
        """
    )
    r = subprocess.run([TARGET_PYTHON, "-c", code, str(target), LAB_PILLAR], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    if "no cryptography" in r.stdout:
        pytest.skip(f"{TARGET_PYTHON} has no cryptography: the certificate dates are not checked (the rest passed)")
    assert "cryptography" in r.stdout, r.stdout
