"""
The routing daemons' processes and files, for the ``routing`` execution
module (``_modules/routing.py``): BIRD's binary, pid file, run directory,
systemd unit, control socket (``birdc``), its ``bird -p`` check, start,
``birdc configure`` and the generation it reports; OpenBGPD/OpenOSPFD's
checks (``bgpd -n``, ``ospfd -n``), rc services and reloads; the checked
swap of a daemon's file.  Plain Python with no Salt dunders: each caller
passes the paths (``routing.paths()``) and Salt's ``cmd.run_all``.
"""

from __future__ import annotations

import grp
import os
import shutil
import time

from salt.exceptions import CommandExecutionError

import carp_common
import lb_boot
import lb_files
import lb_generation
import lb_parameters
import lb_routing

START_TIMEOUT = 10.0
BIRD_GROUP = "bird"

FREEBSD_CHECK = {"bgpd": ["/usr/local/sbin/bgpd", "-n", "-f"], "ospfd": ["/usr/local/sbin/ospfd", "-n", "-f"]}
FREEBSD_SERVICE = {"bgpd": "openbgpd", "ospfd": "openospfd"}
FREEBSD_RELOAD = {"bgpd": ["bgpctl", "reload"], "ospfd": ["ospfctl", "reload"]}


def run(run_all, argv, quiet=False):
    """`argv` through Salt's ``cmd.run_all`` (`run_all`), no shell, any
    exit status returned."""
    return run_all(argv, python_shell=False, ignore_retcode=True, output_loglevel="quiet" if quiet else "debug")


def first_words(argv):
    return " ".join(str(a) for a in argv[:3])


def run_checked(run_all, argv):
    """`argv`, raising when it fails."""
    res = run(run_all, argv)
    if res["retcode"] != 0:
        raise CommandExecutionError(f"{first_words(argv)} failed (exit {res['retcode']})")
    return res


# -- files --------------------------------------------------------------------


def write(path, text, mode, group=None):
    """Atomically, mode and group set before the content lands."""
    lb_files.write_atomic(path, text, int(mode, 8), group)


def file_state(path):
    """(content, mode, gid) or (None, None, None)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, None, None
    return carp_common.read_text(path), st.st_mode & 0o7777, st.st_gid


def swap_checked(live, cand, text, mode, group, check):
    """`text` written to the candidate `cand` (beside `live`: the same
    include paths), `check(cand)` (the daemon's parser: raises when it
    rejects it), then renamed over `live`; the candidate never stays."""
    write(cand, text, mode, group)
    try:
        check(cand)
        os.replace(cand, live)
    finally:
        if os.path.exists(cand):
            os.unlink(cand)


def set_mode(path, mode, owner=None, gid=None):
    """`mode`, and `owner`:`gid` when `gid` is known."""
    os.chmod(path, mode)
    if gid is not None:
        os.chown(path, owner, gid)


def ensure_private(path):
    """`path` 0600: an empty file when there is none."""
    if os.path.exists(path):
        os.chmod(path, 0o600)
    else:
        write(path, "", "0600")


def uid(name):
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return 0


def bird_gid():
    try:
        return grp.getgrnam(BIRD_GROUP).gr_gid
    except KeyError:
        return None


# -- BIRD (Linux) -------------------------------------------------------------


def bird_binary():
    return shutil.which("bird") or "/usr/sbin/bird"


def bird_pid(p):
    return carp_common.pid_of(p["pidfile"], "bird")


def birdc(run_all, p, *args):
    return run(run_all, [p["birdc"], "-s", p["socket"], *args], quiet=True)


def bird_check(run_all, path):
    res = run(run_all, [bird_binary(), "-p", "-c", path])
    if res["retcode"] != 0:
        raise CommandExecutionError("bird -p rejects the rendered configuration: " + (res.get("stderr") or res.get("stdout") or "").strip())


def bird_run_dir(p):
    d = p["run_dir"]
    os.makedirs(d, exist_ok=True)
    gid = bird_gid()
    if gid is not None:
        os.chown(d, uid("bird"), gid)
    os.chmod(d, 0o775)


def bird_unit(p):
    """bird.service when systemd runs this host and the unit carries the
    product's drop-in (which runs BIRD as bird_start does), on the default
    paths: start and stop go through systemd, whose Restart= covers it."""
    default = lb_parameters.of("Debian", "routing")
    if any(p[k] != default[k] for k in ("bird", "run_dir", "socket")) or p["pidfile"] != lb_routing.bird_pidfile(default["run_dir"]):
        return None
    return lb_boot.managed_unit(lb_boot.BIRD_UNIT)


def systemctl(run_all, verb, unit):
    try:
        lb_boot.systemctl(run_all, verb, unit)
    except RuntimeError as exc:
        raise CommandExecutionError(str(exc)) from exc


def bird_start(run_all, p):
    unit = bird_unit(p)
    if unit:
        # restart: a BIRD the package's unit started (its built-in socket,
        # no pid file) is replaced by one run as the drop-in says
        systemctl(run_all, "restart", unit)
    else:
        argv = lb_boot.bird_argv(bird_binary(), p["bird"], p["socket"], p["pidfile"], BIRD_GROUP if bird_gid() is not None else None)
        res = run(run_all, argv)
        if res["retcode"] != 0:
            raise CommandExecutionError(f"bird did not start (exit {res['retcode']}): {(res.get('stderr') or '').strip()}")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = bird_pid(p)
        if pid and os.path.exists(p["socket"]):
            return pid
        time.sleep(0.1)
    raise CommandExecutionError(f"bird started but wrote no pid file {p['pidfile']} within {START_TIMEOUT:.0f} s")


def bird_stop(run_all, p, pid):
    """Stop the BIRD running as `pid` (through systemd when it runs it,
    else SIGTERM) and wait up to START_TIMEOUT for it to go."""
    unit = bird_unit(p)
    if unit:
        systemctl(run_all, "stop", unit)  # else systemd restarts it
    else:
        os.kill(pid, 15)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and bird_pid(p) == pid:
        time.sleep(0.1)


def bird_configure(run_all, p):
    res = birdc(run_all, p, "configure")
    out = res.get("stdout", "")
    if res["retcode"] != 0 or not any(w in out for w in ("Reconfigured", "Reconfiguration in progress", "queued")):
        raise CommandExecutionError(f"birdc configure failed: {(out + res.get('stderr', '')).strip()}")
    return out


def bird_loaded(run_all, p):
    """The generation the running BIRD reports (``birdc eval
    lb_config_sha256``: a constant of the config it runs), None if it has
    none or does not answer."""
    res = birdc(run_all, p, "eval", lb_generation.BIRD_CONSTANT)
    return lb_generation.bird_loaded(res.get("stdout", "")) if res["retcode"] == 0 else None


def bird_wait_loaded(run_all, p, gen, timeout=START_TIMEOUT):
    """Wait until BIRD runs generation `gen` ("Reconfiguration in progress"
    finishes later); raise if it does not."""
    deadline = time.monotonic() + timeout
    while True:
        got = bird_loaded(run_all, p)
        if got == gen:
            return got
        if time.monotonic() >= deadline:
            raise CommandExecutionError(
                f"BIRD still runs an older config after birdc configure (it reports {(got or 'no marker')[:12]}, the file is {gen[:12]})"
            )
        time.sleep(0.2)


def bird_protocols(run_all, p):
    """BIRD's protocols (``birdc show protocols``): {name: {"proto",
    "state", "info"}}."""
    res = birdc(run_all, p, "show", "protocols")
    protos = {}
    for line in res.get("stdout", "").splitlines()[2:]:
        words = line.split()
        if len(words) >= 4:
            protos[words[0]] = {"proto": words[1], "state": words[3], "info": " ".join(words[5:]) if len(words) > 5 else ""}
    return protos


def vips_protocol_up(run_all, p):
    """Whether BIRD's ``lb_vips`` protocol is up (not disabled)."""
    res = birdc(run_all, p, "show", "protocols", lb_routing.VIPS_PROTOCOL)
    for line in res.get("stdout", "").splitlines():
        words = line.split()
        if words[:1] == [lb_routing.VIPS_PROTOCOL]:
            return len(words) > 3 and words[3] == "up"
    return False


def bird_vips_routes(run_all, p):
    """The VIPs BIRD's ``lb_vips`` protocol announces (``birdc show route
    protocol lb_vips``), sorted; None when BIRD does not answer."""
    res = birdc(run_all, p, "show", "route", "protocol", lb_routing.VIPS_PROTOCOL)
    if res["retcode"] != 0 or "ready" not in res.get("stdout", ""):
        return None
    return sorted(lb_routing.parse_bird_routes(res["stdout"]))


def bird_vips_renew(run_all, p):
    """``birdc enable lb_vips`` when someone disabled it, else ``birdc
    restart lb_vips`` (it re-reads the interfaces' addresses)."""
    verb = "restart" if vips_protocol_up(run_all, p) else "enable"
    res = birdc(run_all, p, verb, lb_routing.VIPS_PROTOCOL)
    if res["retcode"] != 0:
        raise CommandExecutionError(
            f"birdc {verb} {lb_routing.VIPS_PROTOCOL} failed: {(res.get('stdout', '') + res.get('stderr', '')).strip()}"
        )


# -- OpenBGPD / OpenOSPFD (FreeBSD) -------------------------------------------


def service_running(run_all, daemon):
    """Whether the rc service of `daemon` ("bgpd", "ospfd") runs."""
    return run(run_all, ["service", FREEBSD_SERVICE[daemon], "onestatus"], quiet=True)["retcode"] == 0


def bgpctl_networks(run_all, p):
    """The networks OpenBGPD announces (``bgpctl show network``), sorted;
    None when bgpd does not answer."""
    res = run(run_all, [p["bgpctl"], "show", "network"], quiet=True)
    return sorted(lb_routing.parse_bgpctl_networks(res["stdout"])) if res["retcode"] == 0 else None


def freebsd_check(run_all, daemon, path):
    """``bgpd -n -f`` / ``ospfd -n -f`` on `path`; raises when it rejects it."""
    res = run(run_all, [*FREEBSD_CHECK[daemon], path])
    if res["retcode"] != 0:
        raise CommandExecutionError(f"{daemon} -n rejects the rendered configuration: {(res.get('stderr') or '').strip()}")


def run_hook(run_all, hook, vhid, master):
    """``lb-routing-vip VHID MASTER|BACKUP``: announce or withdraw a VIP."""
    res = run(run_all, [hook, str(vhid), "MASTER" if master else "BACKUP"])
    if res["retcode"] != 0:
        raise CommandExecutionError(f"lb-routing-vip {vhid} failed (exit {res['retcode']}): {(res.get('stderr') or '').strip()}")
