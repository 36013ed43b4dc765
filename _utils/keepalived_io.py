"""
keepalived's process and what it says back, for the keepalived ``carp``
provider (``_modules/carp_keepalived.py``): its pid file, start and stop
(directly or through systemd), SIGHUP, the ``keepalived -t`` check of a new
config, the data dump SIGUSR1 makes it write (which config generation it
runs), and whether its FIFO program runs and is current.  Plain Python with
no Salt dunders: the module passes its paths (``carp_common.settings``), the
keepalived binary and Salt's ``cmd.run_all``.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import tempfile
import time

from salt.exceptions import CommandExecutionError

import carp_common
import lb_boot
import lb_files
import lb_generation
import lb_parameters
import lb_render_linux

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0  # seconds for keepalived to write its pid file
STOP_TIMEOUT = 10.0
DUMP_TIMEOUT = 3.0  # seconds for keepalived to write its data dump after SIGUSR1
RELEASE_TIMEOUT = 3.0  # seconds for the FIFO script to release the VIPs of a stopped keepalived


def pidfile(paths):
    return os.path.join(paths["run_dir"], "keepalived.pid")


def running_pid(paths):
    """keepalived's parent pid when it runs (pid file and /proc agree)."""
    return carp_common.pid_of(pidfile(paths), "keepalived")


def check_config(run_all, binary, text):
    """`keepalived -t` on the new config before it replaces the old one.
    Interfaces that do not exist here are only warned about (keepalived
    starts without them and picks them up when they appear)."""
    if not os.path.exists(binary):
        log.warning("carp: %s not found, config not checked", binary)
        return
    fd, tmp = tempfile.mkstemp(prefix="keepalived-check.", suffix=".conf")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        res = run_all([binary, "--config-test", "--use-file", tmp], python_shell=False, ignore_retcode=True)
    finally:
        os.unlink(tmp)
    if res["retcode"] == 0:
        return
    lines = [line for line in (res.get("stderr", "") + "\n" + res.get("stdout", "")).splitlines() if line.strip()]
    benign = ("doesn't exist", "Non-existent interface", "Unknown interface")
    serious = [line for line in lines if not any(b in line for b in benign)]
    if serious or not lines:
        raise CommandExecutionError("keepalived rejects the rendered configuration:\n" + "\n".join(lines or [f"exit {res['retcode']}"]))
    log.warning("carp: keepalived config check: %s", "; ".join(lines))


def systemctl(run_all, verb, unit_name):
    try:
        lb_boot.systemctl(run_all, verb, unit_name)
    except RuntimeError as exc:
        raise CommandExecutionError(str(exc)) from exc


def unit(paths):
    """keepalived.service when systemd runs this host and the unit carries
    the product's drop-in (which starts it as start() does), on the default
    paths: start and stop go through systemd, whose Restart= covers it."""
    default = lb_parameters.of("Debian", "carp")
    if (paths["keepalived_config"], paths["run_dir"]) != (default["keepalived_config"], default["run_dir"]):
        return None
    return lb_boot.managed_unit(lb_boot.KEEPALIVED_UNIT)


def start(run_all, binary, paths):
    """Start keepalived (through its unit when there is one); its pid."""
    os.makedirs(paths["run_dir"], exist_ok=True)
    name = unit(paths)
    if name:
        systemctl(run_all, "start", name)
        return wait_pid(paths)
    argv = carp_common.keepalived_argv(binary, paths["keepalived_config"], paths["run_dir"])
    # keepalived reads TMPDIR once, at start: its SIGUSR1 data dump (which
    # says what config it runs, see loaded()) goes to run_dir, not to /tmp
    res = run_all(argv, python_shell=False, ignore_retcode=True, env={"TMPDIR": paths["run_dir"]})
    if res["retcode"] != 0:
        raise CommandExecutionError(f"keepalived did not start (exit {res['retcode']}): {res.get('stderr', '').strip()}")
    return wait_pid(paths)


def wait_pid(paths):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = running_pid(paths)
        if pid:
            return pid
        time.sleep(0.1)
    raise CommandExecutionError(f"keepalived started but wrote no pid file {pidfile(paths)} within {START_TIMEOUT:.0f} s")


def stop(run_all, paths, pid, released=()):
    """Stop keepalived; then give its FIFO script RELEASE_TIMEOUT to
    record STOP for the vhids `released` (it releases every VIP as
    keepalived goes)."""
    name = unit(paths)
    if name:
        systemctl(run_all, "stop", name)  # else systemd restarts it
    else:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if running_pid(paths) != pid:
            break
        time.sleep(0.1)
    else:
        raise CommandExecutionError(f"keepalived (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s")
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while time.monotonic() < deadline and not all(recorded(paths, v) == "STOP" for v in released):
        time.sleep(0.1)


def reload(pid):
    os.kill(pid, signal.SIGHUP)


def _vrrp_pid(paths):
    return carp_common.pid_of(os.path.join(paths["run_dir"], "keepalived-vrrp.pid"), "keepalived")


def fifo_script_running(paths):
    """Whether lb-carp-keepalived-vips runs under keepalived's VRRP process
    (True when that process cannot be found: nothing to compare with)."""
    vrrp = _vrrp_pid(paths)
    if vrrp is None:
        return True
    return bool(carp_common.children_running(vrrp, lb_render_linux.KEEPALIVED_VIPS_SCRIPT))


def fifo_program_replaced(paths):
    """Whether a running lb-carp-keepalived-vips started before its file was
    last written (salt/carp installed another version since)."""
    vrrp = _vrrp_pid(paths)
    if vrrp is None:
        return False
    path = os.path.join(paths["script_dir"], lb_render_linux.KEEPALIVED_VIPS_SCRIPT)
    return any(carp_common.started_before(pid, path) for pid in carp_common.children_running(vrrp, lb_render_linux.KEEPALIVED_VIPS_SCRIPT))


def process_change(paths, pid, config_changed, want_gen):
    """What carp.present must do to the keepalived of `pid` (None: not
    running), as a change ``{"old", "new"}``, or None: start it, or reload
    it when its config changed, its FIFO program does not run or is older
    than its file, or it reports another generation than `want_gen`."""
    if pid is None:
        return {"old": "stopped", "new": "running"}
    if config_changed:
        return {"old": f"running (pid {pid})", "new": "reloaded"}
    if not fifo_script_running(paths):
        # keepalived starts it again only when it next writes to the FIFO;
        # a reload starts it now, and it applies the recorded states
        return {"old": f"running (pid {pid}) without {lb_render_linux.KEEPALIVED_VIPS_SCRIPT}", "new": "reloaded"}
    if fifo_program_replaced(paths):
        # the copy that runs is an older program (salt/carp replaced the
        # file since it started: an upgrade): a reload starts the new one,
        # which keeps the VIPs held and applies the recorded states
        return {"old": f"running (pid {pid}) an older {lb_render_linux.KEEPALIVED_VIPS_SCRIPT}", "new": "reloaded"}
    # the file is as wanted: is it the config keepalived runs?
    gen = loaded(paths, pid, want_gen)
    if gen["current"] is False:
        return {"old": f"running (pid {pid}) an older config: {gen['reason']}", "new": "reloaded"}
    return None


def dump_path(pid):
    """Where keepalived writes its data dump: ``$TMPDIR/keepalived.data``,
    TMPDIR as keepalived got it at start (``start`` gives it run_dir; a
    keepalived started otherwise uses /tmp)."""
    tmpdir = "/tmp"
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            for item in fh.read().split(b"\0"):
                if item.startswith(b"TMPDIR="):
                    value = item[len(b"TMPDIR=") :].decode(errors="replace")
                    tmpdir = value if value.startswith("/") else tmpdir
    except OSError:
        pass
    return os.path.join(tmpdir, lb_generation.KEEPALIVED_DUMP)


def read_dump(path, uid):
    """The dump if it is a regular file (not a link) owned by keepalived's
    user, else None: in /tmp anybody could have put something there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not (stat.S_ISREG(st.st_mode) and st.st_uid == uid):
            return None
        return fh.read(1 << 20).decode(errors="replace")


def ask(pid, timeout=DUMP_TIMEOUT):
    """(answered, generation): SIGUSR1, then the ``Router ID`` of the dump
    keepalived writes (the old dump removed first, so only a new one
    counts).  (False, None) when no dump came within ``timeout``."""
    path = dump_path(pid)
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return False, None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("carp: cannot remove %s: %s", path, exc)
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError:
        return False, None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = read_dump(path, uid)
        # written with stdio: the global definitions (Router ID is their
        # fourth line) come first, whole once any of the file is there
        if text and any(x.lstrip().startswith("Router ID = ") for x in text.splitlines(keepends=True) if x.endswith("\n")):
            try:
                os.unlink(path)
            except OSError:
                pass
            return True, lb_generation.keepalived_loaded(text)
        time.sleep(0.05)
    return False, None


def loaded(paths, pid, file_gen):
    """lb_generation.compare of the file's generation with the one the
    keepalived of `pid` reports (None: keepalived does not run)."""
    if pid is None:
        return lb_generation.compare("keepalived", paths["keepalived_config"], file_gen, running=False)
    answered, gen = ask(pid)
    unanswered = "" if answered else f"keepalived (pid {pid}) wrote no data dump within {DUMP_TIMEOUT:.0f} s of SIGUSR1"
    return lb_generation.compare("keepalived", paths["keepalived_config"], file_gen, gen, unanswered=unanswered)


def wait_loaded(paths, pid, file_gen, wait):
    """loaded(), asked again for up to `wait` seconds while it is False."""
    deadline = time.monotonic() + float(wait)
    while True:
        out = loaded(paths, pid, file_gen)
        if out["current"] is not False or time.monotonic() >= deadline:
            return out
        time.sleep(0.1)


# ---------------------------------------------------------------------------
# the VIPs of instances keepalived no longer serves


def recorded(paths, vhid):
    """The state lb-carp-keepalived-vips recorded for `vhid` (None: none)."""
    rec = carp_common.parse_state_file(carp_common.read_text(os.path.join(paths["state_dir"], "state", str(vhid))))
    return rec["state"] if rec else None


def drop_address(run_all, inst):
    """Remove an instance's VIP from its interface if it is there (True
    then): a VIP the topology changed (the new one is added by
    lb-carp-keepalived-vips) or one keepalived no longer serves."""
    address = (inst["vip"] or "").split("/")[0]
    if not (address and inst["device"] and address in carp_common.vips_by_device(run_all).get(inst["device"], set())):
        return False
    run_all(["ip", "-4", "addr", "del", inst["vip"], "dev", inst["device"]], python_shell=False, ignore_retcode=True)
    return True


def release(run_all, paths, vhid, inst, state="STOP"):
    """Make sure an instance keepalived no longer serves holds nothing: its
    VIP removed if it is still here, and then ``state`` recorded."""
    if drop_address(run_all, inst):
        path = os.path.join(paths["state_dir"], "state", str(vhid))
        lb_files.write_atomic(path, carp_common.state_line(state), 0o644)


def forget_state(paths, vhid):
    """Remove the state recorded for `vhid` (a group no longer here)."""
    try:
        os.unlink(os.path.join(paths["state_dir"], "state", str(vhid)))
    except FileNotFoundError:
        pass
