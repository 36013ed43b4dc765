"""lb_boot: the Debian boot files (units' drop-ins, enablement links,
tmpfiles line), what they say, and that they reach the preview with the
`host` SLS as their writer.  tests/boot boots them for real."""

import configparser

import pytest
from conftest import LAB_PILLAR, SEED_PILLAR

import lb_boot
import lb_host
import lb_render
import lb_topology

HEAD = "# head"
OSP = lb_render.OS_PARAMS["Debian"]


def model(path=SEED_PILLAR, provider="keepalived"):
    raw = lb_topology.load_file(path)
    for pair in raw["pairs"].values():
        pair["carp"]["linux_provider"] = provider
    return lb_topology.load(raw)


def unit(text):
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
    parser.optionxform = str
    parser.read_string(text)
    return parser


def test_keepalived_runs_under_systemd_as_the_module_runs_it_after_haproxy():
    argv = lb_boot.keepalived_argv("/usr/sbin/keepalived", OSP["keepalived_config"], lb_render.CARP_RUN_DIR)
    text = lb_boot.keepalived_dropin(HEAD, argv, lb_render.CARP_RUN_DIR)
    u = unit(text)
    assert u["Unit"]["After"] == u["Unit"]["Wants"] == "haproxy.service"
    assert u["Service"]["RuntimeDirectory"] == "lb-carp"  # the notify FIFO's directory exists before keepalived
    assert u["Service"]["Restart"] == "always"
    assert u["Service"]["Environment"] == "TMPDIR=/run/lb-carp"
    # ExecStart= is reset, then set: the package's own argv is not run
    assert text.count("ExecStart=") == 2 and "\nExecStart=\n" in text
    assert text.split("\nExecStart=", 2)[2].split("\n")[0].split() == [argv[0], "--dont-fork", *argv[1:]]


def test_haproxy_restarts_and_reloads_with_the_server_states():
    u = unit(lb_boot.haproxy_dropin(HEAD, OSP, lb_render.SERVER_STATE_ENV))
    assert u["Service"]["Restart"] == "always"
    assert u["Unit"]["StartLimitIntervalSec"] == "0"
    text = lb_boot.haproxy_dropin(HEAD, OSP, lb_render.SERVER_STATE_ENV)
    assert f'Environment="{lb_render.SERVER_STATE_ENV}={OSP["haproxy_server_state"]}"' in text
    assert f"-S {OSP['haproxy_master_socket']},mode,600" in text
    assert lb_boot.haproxy_tmpfiles(HEAD, OSP).splitlines()[-1] == f"f {OSP['haproxy_server_state']} 0644 root root - 1"


@pytest.mark.parametrize("bad", ["/run/a b", '/run/x"', "/run/%n", "/run/$X", "relative", "/run/a\nExecStartPre=/bin/sh"])
def test_a_path_that_would_change_the_unit_is_refused(bad):
    with pytest.raises(ValueError):
        lb_boot.haproxy_dropin(HEAD, {**OSP, "haproxy_server_state": bad}, lb_render.SERVER_STATE_ENV)
    if bad.startswith("/"):  # an argv word need not be a path, but must stay one word
        with pytest.raises(ValueError):
            lb_boot.keepalived_dropin(HEAD, ["/usr/sbin/keepalived", "--use-file", bad], lb_render.CARP_RUN_DIR)


def test_the_run_directory_must_be_one_under_run():
    argv = ["/usr/sbin/keepalived"]
    for bad in ("/var/run/x", "/run/a/b", "/tmp/x"):
        with pytest.raises(ValueError):
            lb_boot.keepalived_dropin(HEAD, argv, bad)


@pytest.mark.parametrize("pillar", [SEED_PILLAR, LAB_PILLAR])
def test_the_preview_lists_the_boot_files_and_the_host_sls_writes_them(pillar):
    m = model(pillar)
    node = next(iter(next(iter(m["pairs"].values()))["nodes"]))
    files = lb_render.render_node(m, node, "Debian")
    boot = {p: f for p, f in files.items() if p.startswith(("/etc/systemd/", "/etc/tmpfiles.d/"))}
    assert set(boot) == {
        "/etc/systemd/system/haproxy.service.d/lb-pair.conf",
        "/etc/systemd/system/keepalived.service.d/lb-pair.conf",
        "/etc/systemd/system/multi-user.target.wants/haproxy.service",
        "/etc/systemd/system/multi-user.target.wants/keepalived.service",
        "/etc/tmpfiles.d/lb-haproxy.conf",
    }
    assert files["/etc/systemd/system/multi-user.target.wants/keepalived.service"].link == "/lib/systemd/system/keepalived.service"
    assert all(lb_render.writer(p, "Debian") == "host" for p in boot)
    plan = lb_host.plan(m, node, "Debian")
    assert {p for p in plan["files"] if p in boot} == set(boot)
    assert plan["files"]["/etc/systemd/system/multi-user.target.wants/haproxy.service"]["link"] == "/lib/systemd/system/haproxy.service"
    manifest = lb_render.manifest(m, node, "Debian")
    assert manifest["/etc/systemd/system/multi-user.target.wants/haproxy.service"]["link"] == "/lib/systemd/system/haproxy.service"


def test_ucarp_and_freebsd_get_no_keepalived_unit():
    m = model(provider="ucarp")
    files = lb_render.render_node(m, "lb-a", "Debian")
    assert not any("keepalived" in p for p in files)
    assert "/etc/systemd/system/haproxy.service.d/lb-pair.conf" in files
    assert not any(p.startswith("/etc/systemd/") for p in lb_render.render_node(model(), "lb-a", "FreeBSD"))


def test_managed_unit_only_under_systemd_with_the_drop_in(tmp_path, monkeypatch):
    monkeypatch.setattr(lb_boot, "systemd_booted", lambda: False)
    assert lb_boot.managed_unit("haproxy.service") is None
    monkeypatch.setattr(lb_boot, "systemd_booted", lambda: True)
    monkeypatch.setattr(lb_boot, "SYSTEMD_DIR", str(tmp_path))
    assert lb_boot.managed_unit("haproxy.service") is None
    (tmp_path / "haproxy.service.d").mkdir()
    (tmp_path / "haproxy.service.d" / "lb-pair.conf").write_text("[Service]\n")
    assert lb_boot.managed_unit("haproxy.service") == "haproxy.service"


def test_systemctl_reloads_systemd_first_when_the_files_changed():
    calls = []

    def run_all(argv, **kw):
        calls.append(argv)
        if argv[1] == "show":
            return {"retcode": 0, "stdout": "yes\n"}
        if argv[1] == "start":
            return {"retcode": 1, "stdout": "", "stderr": "Job failed"}
        return {"retcode": 0, "stdout": ""}

    with pytest.raises(RuntimeError, match="systemctl start haproxy.service failed .*Job failed"):
        lb_boot.systemctl(run_all, "start", "haproxy.service")
    assert [c[1] for c in calls] == ["show", "daemon-reload", "start"]
