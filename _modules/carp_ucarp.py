"""
CARP groups on Linux with ucarp (userspace CARP): the ``carp`` provider chosen
when the pair's ``carp:linux_provider`` is ``ucarp``.

One ucarp process per group, its pid in ``<run_dir>/ucarp-<vhid>.pid``.
Under systemd, once the ``host`` SLS has installed ``lb-ucarp@.service``
(lb_boot), each group's ucarp is that unit's instance ``lb-ucarp@<vhid>``:
this module records the group's command line in
``<state_dir>/ucarp/<vhid>.argv`` and starts, restarts and stops the
instance, so systemd restarts a ucarp that dies and starts every group at
boot (after HAProxy), maintenance included.  Without systemd (an image, the
Mininet lab) the module starts ucarp itself.  The password is read by ucarp from a 0600
passfile (``--passfile``): it is never on a command line, so never in ``ps``.
ucarp's up script adds the VIP with ``ip addr`` and its down script removes
it; both record the state in ``<state_dir>/state/<vhid>``.

Maintenance writes the intent first (``<state_dir>/maintenance``), then hands
every group over without a gap: a second ucarp for the group is started with
advskew 254 (it does not hear the first, which has the same source address),
the first is killed without running its down script (the VIP stays and keeps
answering), the new one becomes master within about a second and advertises
advskew 254, the peer (with preempt) takes over at once and this node's down
script removes the VIP.  Then the group is restarted normally at advskew 254,
which is how it stays, across restarts and reboots (``carp.present`` starts
groups at advskew 254 while the intent exists), until maintenance is left.

Paths can be moved with the ``lb_carp`` config key: ``state_dir``,
``script_dir``, ``run_dir``, ``ucarp_dir``.
"""

import logging
import os
import shutil
import signal
import subprocess
import time

from salt.exceptions import CommandExecutionError

import carp_common
import lb_boot
import lb_files
import lb_fresh
import lb_render_linux

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "carp"
PROVIDER = "ucarp"
STOP_TIMEOUT = 10.0
START_TIMEOUT = 10.0
# ucarp ignores advertisements from its own source address, so during a
# handover the new process does not hear the old one: start it, give it this
# long to open its socket, then kill the old one.
HANDOVER_LEAD = 0.5


def __virtual__():
    return carp_common.linux_virtual("carp_ucarp", PROVIDER, __opts__, __grains__, __pillar__)


# ---------------------------------------------------------------------------
# helpers


def _override():
    return carp_common.checked_override(__opts__, __grains__, __pillar__)


def _paths():
    return carp_common.settings("Linux", _override())


def _node():
    return __opts__["id"]


def _pair_groups(topology=None):
    return carp_common.checked_node_groups(__salt__["lb.model"](topology), _node(), "Debian")


def _binary():
    return _override().get("ucarp_bin") or shutil.which("ucarp") or "/usr/sbin/ucarp"


def _argv(group, pair, paths, maintenance):
    carp = pair["carp"]
    return carp_common.ucarp_argv(
        _binary(), group, paths, preempt=carp["preempt"], maintenance=maintenance, second_chance=carp["second_chance"]
    )


def _pidfile(vhid):
    return os.path.join(_paths()["run_dir"], f"ucarp-{vhid}.pid")


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    return argv if argv and os.path.basename(argv[0]) == "ucarp" else None


def _alive(pid):
    """True unless the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _running():
    """{vhid: (pid, argv)} of the ucarp processes this module started."""
    out = {}
    run_dir = _paths()["run_dir"]
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
        argv = _cmdline(pid)
        if argv and _alive(pid):
            try:
                vhid = int(name[len("ucarp-") : -len(".pid")])
            except ValueError:
                continue
            out[vhid] = (pid, _undemoted(vhid, pid, argv))
    return out


def _demoted(vhid, pid):
    """True when the unit's launcher started this ucarp demoted (the node
    could not serve: lb-ucarp-exec), as its .demoted file says."""
    text = carp_common.read_text(lb_boot.ucarp_demoted_file(_paths()["run_dir"], vhid)) or ""
    return text.strip() == str(pid)


def _undemoted(vhid, pid, argv):
    """The command line as recorded, for a ucarp its launcher demoted: the
    demotion is the node's runtime state (like a killed ucarp's --neutral),
    not a difference from the topology that carp.present would undo."""
    if not _demoted(vhid, pid):
        return argv
    recorded = _recorded_argv(vhid) or []
    skew = next((a for a in recorded if a.startswith("--advskew=")), None)
    return [skew if skew and a.startswith("--advskew=") else a for a in argv]


def _managed():
    """Whether each group's ucarp runs as an instance of lb-ucarp@.service:
    systemd runs this host, the host SLS installed the template, and the
    paths are the defaults it names."""
    paths = _paths()
    default = carp_common.DEFAULTS["Linux"]
    if any(paths[k] != default[k] for k in ("state_dir", "run_dir", "script_dir")):
        return False
    return lb_boot.systemd_booted() and os.path.exists(os.path.join(lb_boot.SYSTEMD_DIR, lb_boot.UCARP_TEMPLATE))


def _systemctl(verb, vhid, *options):
    try:
        lb_boot.systemctl(__salt__["cmd.run_all"], verb, lb_boot.ucarp_instance(vhid), *options)
    except RuntimeError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _unit_pid(vhid):
    return lb_boot.main_pid(__salt__["cmd.run_all"], lb_boot.ucarp_instance(vhid))


def _argv_file(vhid):
    return lb_boot.ucarp_argv_file(_paths()["state_dir"], vhid)


def _recorded_argv(vhid):
    text = carp_common.read_text(_argv_file(vhid))
    return None if text is None else carp_common.parse_ucarp_argv_text(text)


def _record(argv, vhid):
    """The command line the group's unit runs, at its next start."""
    path = _argv_file(vhid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lb_files.write_atomic(path, carp_common.ucarp_argv_text(argv), 0o644)


def _forget(vhid):
    """A stopped group stays stopped across a reboot: no recorded command
    line (the unit's condition), no enablement link."""
    for path in (_argv_file(vhid), lb_boot.wants_path(lb_boot.ucarp_instance(vhid))):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _wait_new_pid(vhid, old):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        cur = _running().get(vhid)
        if cur and cur[0] != old:
            return cur[0]
        time.sleep(0.05)
    raise CommandExecutionError(f"{lb_boot.ucarp_instance(vhid)} ran no ucarp within {START_TIMEOUT:.0f} s")


def _spawn(argv, vhid):
    """Start one ucarp and record its pid: as the group's unit instance
    under systemd, else detached in its own session."""
    if _managed():
        _record(argv, vhid)
        old = _running().get(vhid)
        _systemctl("restart", vhid)
        return _wait_new_pid(vhid, old[0] if old else None)
    paths = _paths()
    os.makedirs(paths["run_dir"], exist_ok=True)
    log_path = os.path.join(paths["run_dir"], f"ucarp-{vhid}.log")
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True
        )
    lb_files.write_atomic(_pidfile(vhid), f"{proc.pid}\n", 0o644)
    return proc.pid


def _terminate(pid, sig=signal.SIGTERM):
    """Stop a ucarp.  SIGTERM runs the down script if it is MASTER (the VIP
    goes); SIGKILL leaves the VIP where it is (used during a handover).  A
    unit's ucarp is stopped through systemd, which would restart it."""
    argv = _cmdline(pid)
    vhid = carp_common.parse_ucarp_argv(argv)["vhid"] if argv else None
    if sig == signal.SIGTERM and vhid is not None and _managed() and _unit_pid(vhid) == pid:
        _systemctl("stop", vhid)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not _alive(pid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return
        time.sleep(0.05)
    raise CommandExecutionError(f"ucarp (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s")


def _recorded(vhid):
    rec = carp_common.parse_state_file(carp_common.read_text(os.path.join(_paths()["state_dir"], "state", str(vhid))))
    return rec["state"] if rec else None


def _wait_state(vhid, want, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _recorded(vhid) == want:
            return True
        time.sleep(0.1)
    return False


def _vips_by_device():
    res = __salt__["cmd.run_all"](["ip", "-o", "-4", "addr", "show"], python_shell=False, ignore_retcode=True, output_loglevel="quiet")
    out = {}
    for line in res.get("stdout", "").splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] == "inet":
            out.setdefault(words[1], set()).add(words[3].split("/")[0])
    return out


def programs(topology=None):
    """
    The programs ucarp and its unit run: the up and down scripts, the ARP
    probe, the unit's launcher and the serving checks, each with the file
    of the state tree (salt/carp/files/) salt/carp installs it from before
    ``carp.present``: ``[{"name", "path", "source", "mode"}]``.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.programs
    """
    return _programs(_pair_groups(topology)[0])


def _programs(pair):
    return carp_common.programs(pair, _node(), PROVIDER, _paths()["script_dir"])


def _files(pair):
    """The passfiles (0600) and the descriptive vhid-N.conf files lb_render
    renders, in this node's ucarp_dir."""
    return lb_render_linux.render_ucarp(pair, _node(), str, _paths()["ucarp_dir"])


def _shown(argv):
    """The fields of a command line that a change report shows."""
    g = carp_common.parse_ucarp_argv(argv)
    return {k: g[k] for k in ("device", "address", "prefixlen", "source", "advbase", "advskew", "preempt", "peer")}


def _comparable(argv):
    # --neutral and --deadratio are only used during a handover
    return [a for a in argv if a != "--neutral" and not a.startswith("--deadratio=")]


# ---------------------------------------------------------------------------
# public


def groups(topology=None):
    """
    The CARP groups the topology gives this node (passwords left out).

    CLI Example:

    .. code-block:: bash

        salt '*' carp.groups
    """
    _, gs = _pair_groups(topology)
    return [dict(carp_common.public(g), provider=PROVIDER) for g in gs]


def status():
    """
    The state of every CARP group on this node, per vhid: interface, VIP,
    state (MASTER, BACKUP or INIT), advbase, advskew (as running: 254 in
    maintenance, and while the unit's launcher runs the group demoted
    because this node cannot serve), provider, the ucarp pid and whether the VIP is configured
    here now (``holds_vip``).  INIT: no ucarp running for the group, or it
    has recorded no state yet.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.status
    """
    running = _running()
    addrs = _vips_by_device() if running else {}
    maint = in_maintenance()
    out = {}
    for vhid, (pid, argv) in sorted(running.items()):
        g = carp_common.parse_ucarp_argv(argv)
        raw = _recorded(vhid)
        out[vhid] = {
            "interface": g["device"],
            "vip": f"{g['address']}/{g['prefixlen']}",
            "state": carp_common.carp_state(raw, True),
            "advbase": g["advbase"],
            "advskew": carp_common.UCARP_MAINTENANCE_ADVSKEW if _demoted(vhid, pid) else g["advskew"],
            "provider": PROVIDER,
            "pid": pid,
            "holds_vip": g["address"] in addrs.get(g["device"], set()),
            "maintenance": maint,
        }
    return out


def command_lines(topology=None):
    """
    The ucarp command line of every group of this node, as this module
    starts them (maintenance included).  The password is not in them: ucarp
    reads it from the 0600 passfile.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.command_lines
    """
    pair, gs = _pair_groups(topology)
    maint = in_maintenance()
    return {g["vhid"]: _argv(g, pair, _paths(), maint) for g in gs}


def present(topology=None, test=False):
    """
    Make this node's CARP groups what the topology says (its programs
    installed first by salt/carp: ``carp.programs``): one 0600 passfile
    per group, and one ucarp per group running with the topology's
    parameters (started if missing, restarted if its command line
    or password changed, advskew 254 while in maintenance); ucarp processes
    of groups the topology no longer has are stopped.

    A MASTER whose VIP, interface and password stay is handed over to its
    new command line without a gap (as maintenance does: the VIP stays on
    this node); a change of those, or a BACKUP's change, restarts its
    ucarp, and a MASTER's restart releases its VIP (the peer takes it
    after its timeout).  A ucarp still running with a handover's
    ``--neutral --deadratio=1`` once it is no longer MASTER is restarted
    with the plain command line: as a BACKUP it would otherwise claim the
    group after a single missed advertisement.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.present
        salt 'lb*' carp.present test=True
    """
    pair, gs = _pair_groups(topology)
    paths = _paths()
    maint = in_maintenance()
    changes = {}
    missing = carp_common.missing_programs(_programs(pair))
    if missing and not test:
        raise CommandExecutionError(f"not installed: {', '.join(missing)} (salt/carp installs them: state.apply carp)")
    obsolete = carp_common.obsolete_scripts(paths["script_dir"])
    if obsolete:
        changes["obsolete_scripts"] = {"old": obsolete, "new": None}
    files = {p: f for p, f in _files(pair).items() if carp_common.read_text(p) != f.content or carp_common.file_mode(p) != int(f.mode, 8)}
    running = _running()
    plan = {}  # vhid -> (argv or None to stop, reason)
    keeps_vip = set()  # vhids whose change leaves the VIP, interface and password as they are
    for g in gs:
        argv = _argv(g, pair, paths, maint)
        pw_changed = carp_common.ucarp_passfile(paths, g["vhid"]) in files
        cur = running.get(g["vhid"])
        if cur is None:
            plan[g["vhid"]] = argv
            changes[g["vhid"]] = {"old": None, "new": _shown(argv)}
        elif _comparable(cur[1]) != _comparable(argv) or pw_changed:
            plan[g["vhid"]] = argv
            old, new = _shown(cur[1]), _shown(argv)
            delta = carp_common.diff({0: old}, {0: new}).get(0, {"old": {}, "new": {}})
            if pw_changed:
                delta["old"]["password"], delta["new"]["password"] = "<old>", "<changed>"
            elif all(old[k] == new[k] for k in ("device", "address", "prefixlen", "source")):
                keeps_vip.add(g["vhid"])
            changes[g["vhid"]] = delta
        elif cur[1] != _comparable(cur[1]) and _recorded(g["vhid"]) != "MASTER":
            # started for a handover (--neutral --deadratio=1) and no longer
            # MASTER: as a BACKUP it would claim the group after one missed
            # advertisement.  Restarting a BACKUP moves nothing.
            plan[g["vhid"]] = argv
            changes[g["vhid"]] = {"old": {"handover_flags": True}, "new": {"handover_flags": False}}
    managed = _managed()
    record = {}  # vhid -> argv: the unit's command line, recorded without a restart
    adopt = {}  # vhid -> argv: runs as the topology says, but outside its unit
    for g in gs if managed else ():
        vhid, cur = g["vhid"], running.get(g["vhid"])
        if vhid in plan or cur is None:
            continue
        argv = _argv(g, pair, paths, maint)
        if _unit_pid(vhid) != cur[0]:
            adopt[vhid] = argv
            changes[vhid] = {"old": {"unit": None}, "new": {"unit": lb_boot.ucarp_instance(vhid)}}
        elif _comparable(_recorded_argv(vhid) or []) != _comparable(argv):
            record[vhid] = argv
            changes[vhid] = {"old": {"recorded": False}, "new": {"recorded": True}}
    wanted = {g["vhid"] for g in gs}
    for vhid, (_pid, argv) in running.items():
        if vhid not in wanted:
            plan[vhid] = None
            changes[vhid] = {"old": _shown(argv), "new": None}
    file_changes = sorted(p for p in files if not p.endswith(".pass"))
    pass_changes = sorted(p for p in files if p.endswith(".pass"))
    if file_changes:
        changes["files"] = file_changes
    if pass_changes:
        changes["passfiles"] = pass_changes  # paths only, never contents

    if not changes or test:
        return {"changes": changes, "comment": "would apply" if changes else "ucarp runs as the topology says"}

    for path, f in files.items():
        lb_files.write_atomic(path, f.content, int(f.mode, 8))
    os.makedirs(os.path.join(paths["state_dir"], "state"), exist_ok=True)
    lb_files.write_atomic(os.path.join(paths["state_dir"], "provider"), PROVIDER + "\n", 0o644)  # for the carp_provider grain
    for vhid, argv in sorted(plan.items()):
        if vhid in keeps_vip and _recorded(vhid) == "MASTER":
            _handover(vhid, running[vhid][0], argv)
            continue
        if vhid in running:
            _terminate(running[vhid][0])
        if argv is None:
            try:
                os.unlink(_pidfile(vhid))
            except FileNotFoundError:
                pass
            if managed:
                _forget(vhid)
            continue
        _spawn(argv, vhid)
    for vhid, argv in sorted(record.items()):
        _record(argv, vhid)
    for vhid, argv in sorted(adopt.items()):
        # a ucarp started before its unit existed (an upgrade): moved under
        # systemd, a MASTER without a gap
        pid = running[vhid][0]
        if _recorded(vhid) == "MASTER":
            _handover(vhid, pid, argv)
        else:
            _terminate(pid)
            _spawn(argv, vhid)
    for path in obsolete:  # after the restarts: a stopping ucarp runs its old down script
        os.unlink(path)
    return {
        "changes": changes,
        "comment": f"ucarp: {len([a for a in plan.values() if a])} group(s) (re)started, {len([a for a in plan.values() if a is None])} stopped",
    }


def absent(vhids=None, test=False):
    """
    Stop the ucarp of the given groups (a list of vhids; default: every group
    this module runs).  A MASTER runs its down script as it stops, releasing
    the VIP.

    CLI Example:

    .. code-block:: bash

        salt 'lb-b' carp.absent vhids='[55]'
    """
    running = _running()
    targets = sorted(running) if vhids is None else sorted(int(v) for v in vhids if int(v) in running)
    changes = {v: {"old": _shown(running[v][1]), "new": None} for v in targets}
    if not changes or test:
        return {"changes": changes, "comment": "would stop" if changes else "no such CARP group runs here"}
    managed = _managed()
    for v in targets:
        _terminate(running[v][0])
        for path in (_pidfile(v), os.path.join(_paths()["state_dir"], "state", str(v))):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if managed:
            _forget(v)
    return {"changes": changes, "comment": f"stopped ucarp for vhid {', '.join(map(str, targets))}"}


def in_maintenance():
    """
    True while this node is in maintenance (the intent file exists).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.in_maintenance
    """
    return os.path.exists(os.path.join(_paths()["state_dir"], carp_common.MAINTENANCE_FILE))


def _handover(vhid, pid, argv):
    """Replace a MASTER's ucarp without a gap (see the module docstring).
    Under systemd the old one is killed first and the unit starts the new
    one 100 ms later (lb_boot.UCARP_RESTART_SEC); its launcher sees the VIP
    still configured and adds --neutral --deadratio=1 itself."""
    if _managed():
        _record(argv, vhid)
        if _unit_pid(vhid) == pid:
            _systemctl("kill", vhid, "--kill-who=main", "--signal=SIGKILL")
        else:
            _terminate(pid, signal.SIGKILL)
            _systemctl("start", vhid)
        return _wait_new_pid(vhid, pid)
    new_argv = argv[:]
    # announce quickly: master after 1 x advbase + advskew/256, before the
    # peer's own timeout (3 x advbase + its advskew/256)
    new_argv.insert(-3, "--neutral")
    new_argv.insert(-3, "--deadratio=1")
    new_pid = _spawn(new_argv, vhid)
    time.sleep(HANDOVER_LEAD)
    _terminate(pid, signal.SIGKILL)
    return new_pid


def _switch(gs, pair, maintenance_on):
    """Restart every group at its maintenance (or normal) advskew, handing a
    MASTER over without a gap.  Returns what happened per vhid."""
    paths = _paths()
    running = _running()
    done = {}
    handovers = []
    for g in gs:
        argv = _argv(g, pair, paths, maintenance_on)
        cur = running.get(g["vhid"])
        if cur is not None and _comparable(cur[1]) == _comparable(argv):
            continue
        if cur is not None and _recorded(g["vhid"]) == "MASTER":
            new_pid = _handover(g["vhid"], cur[0], argv)
            handovers.append((g, argv, new_pid))
            done[g["vhid"]] = "handed over"
        else:
            if cur is not None:
                _terminate(cur[0])  # BACKUP: no down script, nothing moves
            _spawn(argv, g["vhid"])
            done[g["vhid"]] = "restarted"
    # entering maintenance: once the peer holds a group, restart it plainly
    # (the handover process runs with --deadratio=1, quick to claim mastership)
    if maintenance_on:
        for g, argv, pid in handovers:
            if _wait_state(g["vhid"], "BACKUP", 3 * g["advbase"] + 3):
                _terminate(pid)
                _spawn(argv, g["vhid"])
            else:
                done[g["vhid"]] = "handed over; still MASTER (is the peer up?)"
    return done


def maintenance(test=False, topology=None):
    """
    Put this node in maintenance: its VIPs move to the peer and stay there
    (every group runs at advskew 254), across a restart or a reboot, until
    ``carp.unmaintenance``.  The intent is recorded before anything moves.
    Entering twice changes nothing.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.maintenance
    """
    pair, gs = _pair_groups(topology)
    path = os.path.join(_paths()["state_dir"], carp_common.MAINTENANCE_FILE)
    running = _running()
    demoted = all(
        carp_common.parse_ucarp_argv(running[g["vhid"]][1])["advskew"] == carp_common.UCARP_MAINTENANCE_ADVSKEW
        for g in gs
        if g["vhid"] in running
    )
    if os.path.exists(path) and demoted:
        return {"changes": {}, "comment": "already in maintenance"}
    changes = {"maintenance": {"old": False, "new": True}}
    if test:
        return {"changes": changes, "comment": "would enter maintenance"}
    if not os.path.exists(path):
        lb_files.write_atomic(path, carp_common.intent(PROVIDER, _node()), 0o644)
    done = _switch([g for g in gs if g["vhid"] in running], pair, True)
    if done:
        changes["groups"] = done
    return {"changes": changes, "comment": "in maintenance: groups at advskew 254"}


def unmaintenance(test=False, topology=None):
    """
    Take this node out of maintenance: every group runs at its topology
    advskew again and, with preempt, takes back the VIPs it is primary for.
    Leaving when not in maintenance changes nothing.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.unmaintenance
    """
    pair, gs = _pair_groups(topology)
    path = os.path.join(_paths()["state_dir"], carp_common.MAINTENANCE_FILE)
    running = _running()
    demoted = any(
        carp_common.parse_ucarp_argv(running[g["vhid"]][1])["advskew"] == carp_common.UCARP_MAINTENANCE_ADVSKEW
        and g["advskew"] != carp_common.UCARP_MAINTENANCE_ADVSKEW
        for g in gs
        if g["vhid"] in running
    )
    if not os.path.exists(path) and not demoted:
        return {"changes": {}, "comment": "not in maintenance"}
    changes = {"maintenance": {"old": True, "new": False}}
    if test:
        return {"changes": changes, "comment": "would leave maintenance"}
    done = _switch([g for g in gs if g["vhid"] in running], pair, False)
    if os.path.exists(path):
        os.unlink(path)
    if done:
        changes["groups"] = done
    return {"changes": changes, "comment": "out of maintenance: groups at their topology advskew"}


def preempt_enabled(topology=None):
    """
    Whether every running ucarp has ``--preempt`` (the topology's
    ``carp:preempt`` when none runs).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.preempt_enabled
    """
    running = _running()
    if running:
        return all(carp_common.parse_ucarp_argv(argv)["preempt"] for _, argv in running.values())
    pair, _ = _pair_groups(topology)
    return bool(pair["carp"]["preempt"])


def provider():
    """
    The CARP provider answering as ``carp`` on this node.

    CLI Example:

    .. code-block:: bash

        salt '*' carp.provider
    """
    return PROVIDER
