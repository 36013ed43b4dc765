"""
The ucarp processes of the ucarp ``carp`` provider
(``_modules/carp_ucarp.py``): their pid files and command lines, whether
one is alive, starting one (as the group's ``lb-ucarp@<vhid>`` unit
instance under systemd, else detached) and stopping it, the command line
recorded for the unit, the state its scripts record, and waiting for
either.  Plain Python with no Salt dunders: the module passes its paths
(``carp_common.settings``) and Salt's ``cmd.run_all``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from salt.exceptions import CommandExecutionError

import carp_common
import lb_boot
import lb_files
import lb_parameters

STOP_TIMEOUT = 10.0
START_TIMEOUT = 10.0
# ucarp ignores advertisements from its own source address, so during a
# handover the new process does not hear the old one: start it, give it this
# long to open its socket, then kill the old one.
HANDOVER_LEAD = 0.5


def pidfile(paths, vhid):
    return os.path.join(paths["run_dir"], f"ucarp-{vhid}.pid")


def cmdline(pid):
    """The argv of `pid` when it is a ucarp, else None."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    return argv if argv and os.path.basename(argv[0]) == "ucarp" else None


def alive(pid):
    """True unless the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def running(paths):
    """{vhid: (pid, argv)} of the ucarp processes the module started."""
    out = {}
    run_dir = paths["run_dir"]
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return out
    for name in names:
        if not (name.startswith("ucarp-") and name.endswith(".pid")):
            continue
        text = carp_common.read_text(os.path.join(run_dir, name)) or ""
        if not text.strip().isdigit():
            continue
        pid = int(text.strip())
        argv = cmdline(pid)
        if argv and alive(pid):
            try:
                vhid = int(name[len("ucarp-") : -len(".pid")])
            except ValueError:
                continue
            out[vhid] = (pid, undemoted(paths, vhid, pid, argv))
    return out


def demoted(paths, vhid, pid):
    """True when the unit's launcher started this ucarp demoted (the node
    could not serve: lb-ucarp-exec), as its .demoted file says."""
    text = carp_common.read_text(lb_boot.ucarp_demoted_file(paths["run_dir"], vhid)) or ""
    return text.strip() == str(pid)


def undemoted(paths, vhid, pid, argv):
    """The command line as recorded, for a ucarp its launcher demoted: the
    demotion is the node's runtime state (like a killed ucarp's --neutral),
    not a difference from the topology that carp.present would undo."""
    if not demoted(paths, vhid, pid):
        return argv
    recorded = recorded_argv(paths, vhid) or []
    skew = next((a for a in recorded if a.startswith("--advskew=")), None)
    return [skew if skew and a.startswith("--advskew=") else a for a in argv]


def managed(paths):
    """Whether each group's ucarp runs as an instance of lb-ucarp@.service:
    systemd runs this host, the host SLS installed the template, and the
    paths are the defaults it names."""
    default = lb_parameters.of("Debian", "carp")
    if any(paths[k] != default[k] for k in ("state_dir", "run_dir", "script_dir")):
        return False
    return lb_boot.systemd_booted() and os.path.exists(os.path.join(lb_boot.SYSTEMD_DIR, lb_boot.UCARP_TEMPLATE))


def systemctl(run_all, verb, vhid, *options):
    try:
        lb_boot.systemctl(run_all, verb, lb_boot.ucarp_instance(vhid), *options)
    except RuntimeError as exc:
        raise CommandExecutionError(str(exc)) from exc


def unit_pid(run_all, vhid):
    return lb_boot.main_pid(run_all, lb_boot.ucarp_instance(vhid))


def argv_file(paths, vhid):
    return lb_boot.ucarp_argv_file(paths["state_dir"], vhid)


def recorded_argv(paths, vhid):
    text = carp_common.read_text(argv_file(paths, vhid))
    return None if text is None else carp_common.parse_ucarp_argv_text(text)


def record(paths, argv, vhid):
    """The command line the group's unit runs, at its next start."""
    path = argv_file(paths, vhid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lb_files.write_atomic(path, carp_common.ucarp_argv_text(argv), 0o644)


def forget(paths, vhid):
    """A stopped group stays stopped across a reboot: no recorded command
    line (the unit's condition), no enablement link."""
    for path in (argv_file(paths, vhid), lb_boot.wants_path(lb_boot.ucarp_instance(vhid))):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def wait_new_pid(paths, vhid, old):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        cur = running(paths).get(vhid)
        if cur and cur[0] != old:
            return cur[0]
        time.sleep(0.05)
    raise CommandExecutionError(f"{lb_boot.ucarp_instance(vhid)} ran no ucarp within {START_TIMEOUT:.0f} s")


def spawn(run_all, paths, argv, vhid):
    """Start one ucarp and record its pid: as the group's unit instance
    under systemd, else detached in its own session."""
    if managed(paths):
        record(paths, argv, vhid)
        old = running(paths).get(vhid)
        systemctl(run_all, "restart", vhid)
        return wait_new_pid(paths, vhid, old[0] if old else None)
    os.makedirs(paths["run_dir"], exist_ok=True)
    log_path = os.path.join(paths["run_dir"], f"ucarp-{vhid}.log")
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True
        )
    lb_files.write_atomic(pidfile(paths, vhid), f"{proc.pid}\n", 0o644)
    return proc.pid


def terminate(run_all, paths, pid, sig=signal.SIGTERM):
    """Stop a ucarp.  SIGTERM runs the down script if it is MASTER (the VIP
    goes); SIGKILL leaves the VIP where it is (used during a handover).  A
    unit's ucarp is stopped through systemd, which would restart it."""
    argv = cmdline(pid)
    vhid = carp_common.parse_ucarp_argv(argv)["vhid"] if argv else None
    if sig == signal.SIGTERM and vhid is not None and managed(paths) and unit_pid(run_all, vhid) == pid:
        systemctl(run_all, "stop", vhid)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not alive(pid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return
        time.sleep(0.05)
    raise CommandExecutionError(f"ucarp (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s")


def handover(run_all, paths, vhid, pid, argv):
    """Replace a MASTER's ucarp without a gap (see carp_ucarp's docstring).
    Under systemd the old one is killed first and the unit starts the new
    one 100 ms later (lb_boot.UCARP_RESTART_SEC); its launcher sees the VIP
    still configured and adds --neutral --deadratio=1 itself."""
    if managed(paths):
        record(paths, argv, vhid)
        if unit_pid(run_all, vhid) == pid:
            systemctl(run_all, "kill", vhid, "--kill-who=main", "--signal=SIGKILL")
        else:
            terminate(run_all, paths, pid, signal.SIGKILL)
            systemctl(run_all, "start", vhid)
        return wait_new_pid(paths, vhid, pid)
    new_argv = argv[:]
    # announce quickly: master after 1 x advbase + advskew/256, before the
    # peer's own timeout (3 x advbase + its advskew/256)
    new_argv.insert(-3, "--neutral")
    new_argv.insert(-3, "--deadratio=1")
    new_pid = spawn(run_all, paths, new_argv, vhid)
    time.sleep(HANDOVER_LEAD)
    terminate(run_all, paths, pid, signal.SIGKILL)
    return new_pid


def recorded_state(paths, vhid):
    """The state the group's up or down script recorded (None: none)."""
    rec = carp_common.parse_state_file(carp_common.read_text(os.path.join(paths["state_dir"], "state", str(vhid))))
    return rec["state"] if rec else None


def wait_state(paths, vhid, want, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if recorded_state(paths, vhid) == want:
            return True
        time.sleep(0.1)
    return False
