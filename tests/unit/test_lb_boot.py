"""lb_boot: the Debian boot files (units' drop-ins, enablement links,
tmpfiles line), what they say, and that they reach the preview with the
`host` SLS as their writer.  tests/boot boots them for real."""

import configparser
import os

import pytest

import carp_common
import lb_boot
import lb_host
import lb_parameters
import lb_render
import lb_render_haproxy
import lb_render_linux
import lb_topology
import lb_view
from tests.support import LAB_PILLAR, REPO, SEED_PILLAR, carp_program

HEAD = "# head"
OSP = lb_parameters.of("Debian", "node")


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
    argv = lb_boot.keepalived_argv("/usr/sbin/keepalived", lb_render_linux.CARP["keepalived_config"], lb_render_linux.CARP["run_dir"])
    text = lb_boot.keepalived_dropin(HEAD, argv, lb_render_linux.CARP["run_dir"])
    u = unit(text)
    assert u["Unit"]["After"] == u["Unit"]["Wants"] == "haproxy.service"
    assert u["Service"]["RuntimeDirectory"] == "lb-carp"  # the notify FIFO's directory exists before keepalived
    assert u["Service"]["Restart"] == "always"
    assert u["Service"]["Environment"] == "TMPDIR=/run/lb-carp"
    # ExecStart= is reset, then set: the package's own argv is not run
    assert text.count("ExecStart=") == 2 and "\nExecStart=\n" in text
    assert text.split("\nExecStart=", 2)[2].split("\n")[0].split() == [argv[0], "--dont-fork", *argv[1:]]


def test_haproxy_restarts_and_reloads_with_the_server_states():
    u = unit(lb_boot.haproxy_dropin(HEAD, OSP, lb_render_haproxy.SERVER_STATE_ENV))
    assert u["Service"]["Restart"] == "always"
    assert u["Unit"]["StartLimitIntervalSec"] == "0"
    text = lb_boot.haproxy_dropin(HEAD, OSP, lb_render_haproxy.SERVER_STATE_ENV)
    assert f'Environment="{lb_render_haproxy.SERVER_STATE_ENV}={OSP["haproxy_server_state"]}"' in text
    assert f"-S {OSP['haproxy_master_socket']},mode,600" in text
    assert lb_boot.haproxy_tmpfiles(HEAD, OSP).splitlines()[-1] == f"f {OSP['haproxy_server_state']} 0644 root root - 1"


@pytest.mark.parametrize("bad", ["/run/a b", '/run/x"', "/run/%n", "/run/$X", "relative", "/run/a\nExecStartPre=/bin/sh"])
def test_a_path_that_would_change_the_unit_is_refused(bad):
    with pytest.raises(ValueError):
        lb_boot.haproxy_dropin(HEAD, {**OSP, "haproxy_server_state": bad}, lb_render_haproxy.SERVER_STATE_ENV)
    if bad.startswith("/"):  # an argv word need not be a path, but must stay one word
        with pytest.raises(ValueError):
            lb_boot.keepalived_dropin(HEAD, ["/usr/sbin/keepalived", "--use-file", bad], lb_render_linux.CARP["run_dir"])


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
        # both pillars' pairs route (BGP, OSPF): BIRD's unit
        "/etc/systemd/system/bird.service.d/lb-pair.conf",
        "/etc/systemd/system/multi-user.target.wants/bird.service",
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


def test_ucarp_gets_a_template_unit_and_one_enabled_instance_per_group():
    m = model(provider="ucarp")
    files = lb_render.render_node(m, "lb-a", "Debian")
    vhids = [g["vhid"] for g in lb_view.node_view(next(iter(m["pairs"].values())), "lb-a")["groups"]]
    assert len(vhids) > 1
    links = {p: f.link for p, f in files.items() if p.startswith("/etc/systemd/system/multi-user.target.wants/lb-ucarp@")}
    assert links == {
        f"/etc/systemd/system/multi-user.target.wants/lb-ucarp@{v}.service": "/etc/systemd/system/lb-ucarp@.service" for v in vhids
    }
    u = unit(files["/etc/systemd/system/lb-ucarp@.service"].content)
    # after HAProxy, and not stopped by HAProxy's own restarts (Wants=, not
    # Requires=: a ucarp stopped with its VIP configured would leave it to
    # both nodes); while HAProxy cannot serve the launcher demotes the group
    assert "Requires" not in u["Unit"] and "haproxy.service" in u["Unit"]["Wants"].split()
    assert "haproxy.service" in u["Unit"]["After"].split()
    assert u["Unit"]["ConditionPathExists"] == "/var/lib/lb-carp/ucarp/%i.argv"  # a group the module has not started stays off
    assert u["Service"]["ExecStart"].split() == [
        "/usr/local/sbin/lb-ucarp-exec",
        "/var/lib/lb-carp/ucarp/%i.argv",
        "/run/lb-carp/ucarp-%i.pid",
        "/usr/local/sbin/lb-haproxy-serving",
        "/run/haproxy.pid",
        "/usr/local/sbin/lb-routing-ready",  # the model's pair has BGP
    ]
    assert u["Service"]["Restart"] == "always" and u["Service"]["RestartSec"] == "100ms"
    assert u["Service"]["ExecStopPost"].split() == ["/usr/local/sbin/lb-ucarp-exec", "--stopped", "/var/lib/lb-carp/ucarp/%i.argv"]
    assert u["Service"]["RuntimeDirectory"] == "lb-carp"
    assert all(lb_render.writer(p, "Debian") == "host" for p in [*links, "/etc/systemd/system/lb-ucarp@.service"])


def test_bird_runs_under_its_unit_as_the_routing_module_runs_it():
    files = lb_render.render_node(model(), "lb-a", "Debian")
    text = files["/etc/systemd/system/bird.service.d/lb-pair.conf"].content
    u = unit(text)
    argv = lb_boot.bird_argv("/usr/sbin/bird", "/etc/bird/bird.conf", "/run/bird/bird.ctl", "/run/bird/bird.pid", "bird")
    assert text.split("\nExecStart=", 2)[2].split("\n")[0].split() == [argv[0], "-f", *argv[1:]]
    assert "\nExecStartPre=\n" in text and "ExecStartPre=/usr/sbin/bird -p -c /etc/bird/bird.conf" in text
    assert "ExecReload=/usr/sbin/birdc -s /run/bird/bird.ctl configure" in text
    assert u["Service"]["Restart"] == "always"
    assert files["/etc/systemd/system/multi-user.target.wants/bird.service"].link == "/lib/systemd/system/bird.service"


def test_a_pair_without_routing_gets_no_bird_unit():
    raw = lb_topology.load_file(SEED_PILLAR)
    for pair in raw["pairs"].values():
        pair.pop("routing", None)
    files = lb_render.render_node(lb_topology.load(raw), "lb-a", "Debian")
    assert not any("bird" in p for p in files)


def test_the_ucarp_launcher_runs_the_recorded_command_line_as_itself(tmp_path):
    """lb-ucarp-exec under a POSIX sh, with a stand-in `ucarp` that prints
    its argv and pid: one argument a line (spaces kept), exec'd (the pid in
    the pid file is the ucarp's)."""
    import subprocess

    fake = tmp_path / "bin" / "ucarp"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "pid $$"\nfor a in "$@"; do echo "arg <$a>"; done\n')
    fake.chmod(0o755)
    launcher = tmp_path / "lb-ucarp-exec"
    launcher.write_text(carp_program(lb_boot.UCARP_LAUNCHER))
    launcher.chmod(0o755)
    argv = [str(fake), "--vhid=55", "--xparam=24 55 /var/lib/lb-carp", "  lead", "$(touch x)"]
    (tmp_path / "55.argv").write_text(carp_common.ucarp_argv_text(argv))
    res = subprocess.run(
        ["sh", str(launcher), str(tmp_path / "55.argv"), str(tmp_path / "ucarp-55.pid")], capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"pid {(tmp_path / 'ucarp-55.pid').read_text().strip()}"
    assert lines[1:] == [f"arg <{a}>" for a in argv[1:]]
    assert not (tmp_path / "x").exists()
    # a recorded line that is not ucarp is not run
    (tmp_path / "1.argv").write_text("/bin/echo\nhello\n")
    res = subprocess.run(["sh", str(launcher), str(tmp_path / "1.argv"), str(tmp_path / "p")], capture_output=True, text=True)
    assert res.returncode == 1 and "does not run ucarp" in res.stderr and not (tmp_path / "p").exists()
    # the group's VIP still configured (its ucarp was killed): the new one keeps it and claims quickly
    stub = tmp_path / "bin" / "ip"
    stub.write_text('#!/bin/sh\n[ "$6" = host0 ] && echo "2: host0    inet 10.0.0.55/24 scope global host0"\nexit 0\n')
    stub.chmod(0o755)
    env = {"PATH": f"{stub.parent}:/usr/bin:/bin"}
    for addr, added in (("10.0.0.55", ["--neutral", "--deadratio=1"]), ("10.0.0.5", [])):
        argv = [str(fake), "--interface=host0", f"--addr={addr}", "--xparam=24 55 /var/lib/lb-carp"]
        (tmp_path / "55.argv").write_text(carp_common.ucarp_argv_text(argv))
        res = subprocess.run(
            ["sh", str(launcher), str(tmp_path / "55.argv"), str(tmp_path / "ucarp-55.pid")], capture_output=True, text=True, env=env
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines()[1:] == [f"arg <{a}>" for a in argv[1:] + added]
    with pytest.raises(ValueError):
        carp_common.ucarp_argv_text(["/usr/sbin/ucarp", "--addr=1\n--upscript=/tmp/x"])
    assert carp_common.parse_ucarp_argv_text(carp_common.ucarp_argv_text(argv)) == argv


def test_the_ucarp_units_stop_keeps_a_killed_ucarps_vip_and_ends_a_releases_routes(tmp_path):
    """lb-ucarp-exec --stopped (ExecStopPost) under a POSIX sh, with a
    stand-in `ip` that answers from files and records what it is asked to
    delete, and `sleep` that records its seconds."""
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    (bin_dir / "ip").write_text(
        "#!/bin/sh\n"
        f'echo "ip $*" >> {log}\n'
        'case "$*" in\n'
        f'"-4 -o addr show dev host0") cat {tmp_path}/addr 2>/dev/null ;;\n'
        f'"-4 route show table local"*) cat {tmp_path}/local 2>/dev/null ;;\n'
        "esac\n"
    )
    (bin_dir / "sleep").write_text(f'#!/bin/sh\necho "sleep $*" >> {log}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    launcher = tmp_path / "lb-ucarp-exec"
    launcher.write_text(carp_program(lb_boot.UCARP_LAUNCHER))
    argv = tmp_path / "55.argv"
    argv.write_text(
        carp_common.ucarp_argv_text(["/usr/sbin/ucarp", "--interface=host0", "--addr=10.0.0.55", "--xparam=32 55 /var/lib/lb-carp"])
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}

    def stopped():
        log.write_text("")
        res = subprocess.run(["sh", str(launcher), "--stopped", str(argv)], capture_output=True, text=True, env=env, timeout=10)
        assert res.returncode == 0, res.stderr
        return [line for line in log.read_text().splitlines() if " del " in line or line.startswith("sleep")]

    # killed (the VIP still here): nothing touched, no wait
    (tmp_path / "addr").write_text("2: host0    inet 10.0.0.55/32 scope global host0\n")
    assert stopped() == []
    # released while HAProxy listened: the soft local route's seconds, then both routes go
    (tmp_path / "addr").unlink()
    (tmp_path / "local").write_text("local 10.0.0.55 proto static scope host\n")
    assert stopped() == [
        "sleep 3",
        "ip -4 route del local 10.0.0.55/32 dev host0 table local proto static",
        "ip -4 route del blackhole 10.0.0.55/32",
    ]
    # released with nothing listening (or a BACKUP): the blackhole goes at once
    (tmp_path / "local").unlink()
    assert stopped() == ["ip -4 route del blackhole 10.0.0.55/32"]
    # a recorded line whose address is not an IPv4 address reaches no ip command
    argv.write_text(carp_common.ucarp_argv_text(["/usr/sbin/ucarp", "--interface=host0", "--addr=$(touch x)"]))
    assert stopped() == [] and not (tmp_path / "x").exists()
    # no recorded line (the module forgot the group): nothing, and no failed unit
    argv.unlink()
    assert stopped() == []


def test_the_ucarp_launcher_demotes_the_group_while_the_node_cannot_serve(tmp_path):
    """lb-ucarp-exec with the serving check (a stand-in that passes while a
    file exists): a failing check starts ucarp at advskew 254 and names the
    pid in the .demoted file; a passing one starts the recorded line.  Its
    watch ends the ucarp (SIGKILL, for systemd to start the group again)
    at once when the node serves again, and after two failed checks when it
    stops serving.  Bounded waits; nothing is timed."""
    import signal
    import subprocess

    fake = tmp_path / "ucarp"  # its comm is "ucarp", as the watch checks
    fake.write_text('#!/bin/sh\necho "pid $$"\nfor a in "$@"; do echo "arg <$a>"; done\nsleep 30 >/dev/null 2>&1\n')
    fake.chmod(0o755)
    serving = tmp_path / "serving"
    check = tmp_path / "lb-haproxy-serving"
    check.write_text(f'#!/bin/sh\n[ "$1" = /run/haproxy.pid ] && [ "$2" = /next ] && [ -e {serving} ]\n')
    check.chmod(0o755)
    launcher = tmp_path / "lb-ucarp-exec"
    launcher.write_text(carp_program(lb_boot.UCARP_LAUNCHER))
    launcher.chmod(0o755)
    argv = [str(fake), "--vhid=55", "--advskew=100", "--addr=10.0.0.55"]
    (tmp_path / "55.argv").write_text(carp_common.ucarp_argv_text(argv))
    pidfile, demoted = tmp_path / "ucarp-55.pid", tmp_path / "ucarp-55.demoted"

    started = []

    def start():
        proc = subprocess.Popen(
            ["sh", str(launcher), str(tmp_path / "55.argv"), str(pidfile), str(check), "/run/haproxy.pid", "/next"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(proc)
        first = proc.stdout.readline()
        return proc, [first] + [proc.stdout.readline() for _ in argv[1:]]

    def ended(proc):
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError("the watch did not end ucarp within 10 s") from None
        return proc.returncode, err

    try:
        # cannot serve: demoted, and ended once the node serves again
        proc, lines = start()
        assert lines[1:] == ["arg <--vhid=55>\n", "arg <--advskew=254>\n", "arg <--addr=10.0.0.55>\n"]
        assert demoted.read_text().strip() == pidfile.read_text().strip() == lines[0].split()[1]
        serving.touch()
        code, err = ended(proc)
        assert code == -signal.SIGKILL and "restarting the group" in err, (code, err)
        # serves: the recorded line, no .demoted file; ended once it stops serving
        proc, lines = start()
        assert lines[1:] == [f"arg <{a}>\n" for a in argv[1:]]
        assert not demoted.exists()
        serving.unlink()
        code, err = ended(proc)
        assert code == -signal.SIGKILL and "not serving" in err, (code, err)
    finally:
        for p in started:  # the stand-in's sleep too (its process group)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.communicate()


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


def _rc_functions(files, script, settings, subst):
    """A product rc.d script (the state tree's file `files[script]` names)
    as rc runs it, but for rc.subr: its settings (what load_rc_config reads
    from /etc/rc.conf.d) first, then its functions only (no rc.subr, no
    run_rc_command), with the absolute paths moved under a test directory."""
    source = files[script].source
    assert source and not files[script].content
    with open(os.path.join(REPO, "salt", source[len("salt://") :]), encoding="utf-8") as fh:
        text = fh.read()
    skip = (". /etc/rc.subr", "run_rc_command", "load_rc_config")
    body = files[settings].content + "\n".join(line for line in text.splitlines() if not line.startswith(skip))
    for old, new in subst.items():
        body = body.replace(old, new)
    return body


def test_freebsd_boot_hold_and_serving_watch(tmp_path):
    """rc.d/lb_carp_boothold and rc.d/lb_haproxy's serving watch under
    dash, with `sysctl`, `kldstat`, `pgrep`, `daemon` and `sleep` stubs that
    record their argv (FreeBSD cannot run here: rc.subr and the kernel are
    not run).  The watch takes the boot hold back once HAProxy serves,
    demotes once after two failed checks, and takes that back."""
    import subprocess

    m = model()
    files = lb_render.render_node(m, "lb-a", "FreeBSD")
    rc = files["/etc/rc.conf"].content.splitlines()
    assert 'lb_carp_boothold_enable="YES"' in rc and 'lb_haproxy_enable="YES"' in rc
    with open(os.path.join(REPO, "salt", "host", "files", "lb_carp_boothold.rc"), encoding="utf-8") as fh:
        rc_d = fh.read()
    assert "# BEFORE: netif" in rc_d and "# REQUIRE: FILESYSTEMS kld" in rc_d
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "argv.log"
    for tool in ("sysctl", "kldstat"):
        (bin_ / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n')
    (bin_ / "sleep").write_text("#!/bin/sh\nexec /bin/sleep 0.02\n")  # the loop's 0.1 s, shorter
    (bin_ / "pgrep").write_text(
        f'#!/bin/sh\necho "pgrep $*" >> {log}\ncase "$2" in -F) [ -e {tmp_path}/watch ] ;; *) [ -e {tmp_path}/worker ] ;; esac\n'
    )
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    subst = {"/var/db/lb-carp/boothold": str(tmp_path / "db" / "boothold"), "/var/run/haproxy.pid": str(tmp_path / "haproxy.pid")}
    env = {"PATH": f"{bin_}:/usr/bin:/bin"}
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "boothold").write_text("")  # a record from before the reboot
    script = _rc_functions(files, "/usr/local/etc/rc.d/lb_carp_boothold", "/etc/rc.conf.d/lb_carp_boothold", subst)
    script += "\nlb_carp_boothold_start\n"
    assert subprocess.run(["dash", "-c", script], env=env, timeout=10).returncode == 0
    assert (tmp_path / "db" / "boothold").exists()
    assert log.read_text().splitlines() == ["kldstat -q -m carp", "sysctl net.inet.carp.demotion=240"]
    log.unlink()
    # rc.d/lb_haproxy's serving watch (what its poststart runs under
    # daemon(8)): HAProxy's master runs, a worker comes up later
    (tmp_path / "haproxy.pid").write_text("4242\n")
    watch = _rc_functions(files, "/usr/local/etc/rc.d/lb_haproxy", "/etc/rc.conf.d/lb_haproxy", subst) + "\nlb_haproxy_watch\n"
    hold_file = tmp_path / "db" / "boothold"

    def sysctls():
        return [line for line in log.read_text().splitlines() if line.startswith("sysctl")] if log.exists() else []

    def until(predicate, what):
        for _ in range(100):  # 10 s at most
            if predicate():
                return
            subprocess.run(["sleep", "0.1"])
        raise AssertionError(f"the watch did not {what} within 10 s: {log.read_text() if log.exists() else ''}")

    run = subprocess.Popen(["dash", "-c", watch], env=env, start_new_session=True)
    try:
        until(lambda: log.exists() and log.read_text().count("pgrep -q -P 4242") >= 3, "check")
        assert hold_file.exists() and sysctls() == []  # no worker yet: still held, nothing added
        (tmp_path / "worker").write_text("")
        until(lambda: not hold_file.exists(), "take the boot hold back")
        until(lambda: sysctls() == ["sysctl net.inet.carp.demotion=-240"], "take the boot hold back")
        # HAProxy stops serving: demoted once, after two failed checks
        (tmp_path / "worker").unlink()
        until(lambda: hold_file.exists(), "demote")
        until(lambda: len(sysctls()) == 2, "demote")
        assert sysctls()[1] == "sysctl net.inet.carp.demotion=240"
        before = log.read_text().count("pgrep -q -P 4242")
        until(lambda: log.read_text().count("pgrep -q -P 4242") >= before + 3, "check")
        assert len(sysctls()) == 2  # held once, not once a check
        # serving again: taken back once
        (tmp_path / "worker").write_text("")
        until(lambda: not hold_file.exists() and len(sysctls()) == 3, "take the hold back")
        assert sysctls()[2] == "sysctl net.inet.carp.demotion=-240"
    finally:
        os.killpg(run.pid, 9)
        run.wait(10)
    # the poststart starts the watch under daemon(8) once (a running one is kept)
    post = _rc_functions(files, "/usr/local/etc/rc.d/lb_haproxy", "/etc/rc.conf.d/lb_haproxy", subst) + "\nlb_haproxy_poststart\n"
    (bin_ / "daemon").write_text(f'#!/bin/sh\necho "daemon $*" >> {log}\n')
    (bin_ / "daemon").chmod(0o755)
    post = post.replace("/usr/sbin/daemon", str(bin_ / "daemon"))
    log.unlink()
    assert subprocess.run(["dash", "-c", post], env=env, timeout=10).returncode == 0
    assert log.read_text().splitlines() == [
        "pgrep -q -F /var/run/lb_haproxy_watch.pid",
        "daemon -f -r -P /var/run/lb_haproxy_watch.pid /usr/local/etc/rc.d/lb_haproxy watch",
    ]
    log.unlink()
    (tmp_path / "watch").write_text("")  # a watch runs already
    assert subprocess.run(["dash", "-c", post], env=env, timeout=10).returncode == 0
    assert log.read_text().splitlines() == ["pgrep -q -F /var/run/lb_haproxy_watch.pid"]
