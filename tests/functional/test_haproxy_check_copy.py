"""haproxy_cfg.write's check copy through Salt's loader, with the real
``haproxy -c``: the copy it checks holds the stats users' hashes, so it is
0600 from its creation, removed afterwards, and one a killed run left
behind is removed by the next run.

The module's ``binary`` setting points at a wrapper that records the mode
of the file it is asked to check, then runs the real HAProxy on it.
"""

import os
import shutil
import stat

import pytest

from tests.support import private_minion

pytestmark = pytest.mark.skipif(not shutil.which("haproxy") and not os.path.exists("/usr/sbin/haproxy"), reason="haproxy is not installed")

HASH = "$6$checkcopysalt01$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ./0123456789abcdefghi"


@pytest.fixture
def env(tmp_path):
    import salt.config
    from saltfactories.utils.functional import Loaders

    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    log = tmp_path / "checked"
    wrapper = tmp_path / "haproxy-wrapper"
    # the file is the argument after -f; its mode and size, then the real check
    wrapper.write_text(
        "#!/bin/sh\n"
        'prev=""; for a in "$@"; do [ "$prev" = "-f" ] && stat -c "%a %n" "$a" >> ' + str(log) + '; prev="$a"; done\n'
        f'exec {haproxy} "$@"\n'
    )
    wrapper.chmod(0o755)
    settings = {
        "config": str(conf_dir / "haproxy.cfg"),
        "certs_dir": str(tmp_path / "certs"),
        "state_file": str(tmp_path / "server-state"),
        "binary": str(wrapper),
    }
    path = private_minion(tmp_path, id="lb-a", lb_settings={"haproxy": settings})
    return Loaders(salt.config.minion_config(path)), settings, log


def config_text(errorfile):
    return (
        "global\n    log stdout local0\n\n"
        "defaults\n    mode http\n    timeout client 5s\n    timeout server 5s\n    timeout connect 5s\n\n"
        f"userlist stats-auth\n    user admin password {HASH}\n\n"
        f"frontend fe\n    bind 127.0.0.1:1\n    errorfile 503 {errorfile}\n    default_backend be\n\n"
        "backend be\n    server s1 127.0.0.1:2\n"
    )


def leftovers(settings):
    d = os.path.dirname(settings["config"])
    return sorted(f for f in os.listdir(d) if ".salt-check" in f or ".salt-candidate" in f)


def test_the_check_copy_is_0600_and_removed_and_a_stale_one_goes(env):
    loaders, settings, log = env
    mod = loaders.modules.haproxy_cfg
    d = os.path.dirname(settings["config"])
    errorfile = os.path.join(d, "errors", "503.http")
    files = {errorfile: {"content": "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "mode": "0644"}}

    # what a minion killed during an earlier check left: the old fixed name
    # (0644, as the module wrote it) and a copy of this version's naming
    stale = [os.path.join(d, ".haproxy.cfg.salt-check"), os.path.join(d, ".haproxy.cfg.salt-check.k1ll3d")]
    for p in stale:
        with open(p, "w") as fh:
            fh.write(config_text(errorfile))
        os.chmod(p, 0o644)

    # the errorfile is new: the config is checked through a copy that points
    # at its candidate (the check copy), not at the live path
    out = mod.write(config_text(errorfile), files=files)
    assert sorted(out["changed"]) == sorted([settings["config"], errorfile])
    checked = log.read_text().splitlines()
    copies = [line for line in checked if ".salt-check" in line]
    assert copies, f"the check never went through a check copy: {checked}"
    assert all(line.split()[0] == "600" for line in copies), copies
    assert leftovers(settings) == []
    assert oct(stat.S_IMODE(os.stat(settings["config"]).st_mode)) == "0o640"

    # a run with nothing to write still removes what a killed run left
    with open(stale[1], "w") as fh:
        fh.write(config_text(errorfile))
    assert mod.write(config_text(errorfile), files=files) == {"changed": [], "message": ""}
    assert leftovers(settings) == []


def test_a_refused_config_leaves_no_check_copy(env):
    from salt.exceptions import CommandExecutionError

    loaders, settings, log = env
    mod = loaders.modules.haproxy_cfg
    d = os.path.dirname(settings["config"])
    errorfile = os.path.join(d, "errors", "503.http")
    files = {errorfile: "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"}
    with pytest.raises(CommandExecutionError, match="haproxy -c refused the new configuration"):
        mod.write(config_text(errorfile) + "    frobnicate on\n", files=files)
    assert any(".salt-check" in line for line in log.read_text().splitlines())
    assert leftovers(settings) == []
    assert not os.path.exists(settings["config"])
