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

Paths can be moved with the ``lb_settings:carp`` config key: ``state_dir``,
``script_dir``, ``run_dir``, ``ucarp_dir``.
"""

import os
import shutil

from salt.exceptions import CommandExecutionError

import carp_common
import lb_boot
import lb_files
import lb_fresh
import lb_render_linux
import ucarp_io

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

__virtualname__ = "carp"
PROVIDER = "ucarp"


def __virtual__():
    return carp_common.linux_virtual("carp_ucarp", PROVIDER, __opts__, __grains__, __pillar__)


# ---------------------------------------------------------------------------
# helpers (the ucarp processes: _utils/ucarp_io.py)


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
    paths = _paths()
    running = ucarp_io.running(paths)
    addrs = carp_common.vips_by_device(__salt__["cmd.run_all"]) if running else {}
    maint = in_maintenance()
    out = {}
    for vhid, (pid, argv) in sorted(running.items()):
        g = carp_common.parse_ucarp_argv(argv)
        raw = ucarp_io.recorded_state(paths, vhid)
        out[vhid] = {
            "interface": g["device"],
            "vip": f"{g['address']}/{g['prefixlen']}",
            "state": carp_common.carp_state(raw, True),
            "advbase": g["advbase"],
            "advskew": carp_common.UCARP_MAINTENANCE_ADVSKEW if ucarp_io.demoted(paths, vhid, pid) else g["advskew"],
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


def _present_plan(topology):
    """What present() would change, read only: the changes and comment
    present_pending returns, and the steps the apply step takes."""
    pair, gs = _pair_groups(topology)
    paths = _paths()
    maint = in_maintenance()
    changes = {}
    missing = carp_common.missing_programs(_programs(pair))
    obsolete = carp_common.obsolete_scripts(paths["script_dir"])
    if obsolete:
        changes["obsolete_scripts"] = {"old": obsolete, "new": None}
    files = {p: f for p, f in _files(pair).items() if carp_common.read_text(p) != f.content or carp_common.file_mode(p) != int(f.mode, 8)}
    running = ucarp_io.running(paths)
    plan = {}  # vhid -> (argv or None to stop, reason)
    keeps_vip = set()  # vhids whose change leaves the VIP, interface and password as they are
    for g in gs:
        argv = _argv(g, pair, paths, maint)
        pw_changed = carp_common.ucarp_passfile(paths, g["vhid"]) in files
        cur = running.get(g["vhid"])
        if cur is None:
            plan[g["vhid"]] = argv
            changes[g["vhid"]] = {"old": None, "new": carp_common.ucarp_shown(argv)}
        elif carp_common.ucarp_comparable(cur[1]) != carp_common.ucarp_comparable(argv) or pw_changed:
            plan[g["vhid"]] = argv
            old, new = carp_common.ucarp_shown(cur[1]), carp_common.ucarp_shown(argv)
            delta = carp_common.diff({0: old}, {0: new}).get(0, {"old": {}, "new": {}})
            if pw_changed:
                delta["old"]["password"], delta["new"]["password"] = "<old>", "<changed>"
            elif all(old[k] == new[k] for k in ("device", "address", "prefixlen", "source")):
                keeps_vip.add(g["vhid"])
            changes[g["vhid"]] = delta
        elif cur[1] != carp_common.ucarp_comparable(cur[1]) and ucarp_io.recorded_state(paths, g["vhid"]) != "MASTER":
            # started for a handover (--neutral --deadratio=1) and no longer
            # MASTER: as a BACKUP it would claim the group after one missed
            # advertisement.  Restarting a BACKUP moves nothing.
            plan[g["vhid"]] = argv
            changes[g["vhid"]] = {"old": {"handover_flags": True}, "new": {"handover_flags": False}}
    managed = ucarp_io.managed(paths)
    record = {}  # vhid -> argv: the unit's command line, recorded without a restart
    adopt = {}  # vhid -> argv: runs as the topology says, but outside its unit
    for g in gs if managed else ():
        vhid, cur = g["vhid"], running.get(g["vhid"])
        if vhid in plan or cur is None:
            continue
        argv = _argv(g, pair, paths, maint)
        if ucarp_io.unit_pid(__salt__["cmd.run_all"], vhid) != cur[0]:
            adopt[vhid] = argv
            changes[vhid] = {"old": {"unit": None}, "new": {"unit": lb_boot.ucarp_instance(vhid)}}
        elif carp_common.ucarp_comparable(ucarp_io.recorded_argv(paths, vhid) or []) != carp_common.ucarp_comparable(argv):
            record[vhid] = argv
            changes[vhid] = {"old": {"recorded": False}, "new": {"recorded": True}}
    wanted = {g["vhid"] for g in gs}
    for vhid, (_pid, argv) in running.items():
        if vhid not in wanted:
            plan[vhid] = None
            changes[vhid] = {"old": carp_common.ucarp_shown(argv), "new": None}
    file_changes = sorted(p for p in files if not p.endswith(".pass"))
    pass_changes = sorted(p for p in files if p.endswith(".pass"))
    if file_changes:
        changes["files"] = file_changes
    if pass_changes:
        changes["passfiles"] = pass_changes  # paths only, never contents
    comment = "would apply" if changes else "ucarp runs as the topology says"
    steps = dict(plan=plan, keeps_vip=keeps_vip, managed=managed, record=record, adopt=adopt)
    return dict(changes=changes, comment=comment, paths=paths, missing=missing, obsolete=obsolete, files=files, running=running, **steps)


def present_pending(topology=None):
    """
    What ``carp.present`` would change, touching nothing (the state's
    question), as ``carp.present test=True`` returns it.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.present_pending
    """
    return carp_common.pending(_present_plan(topology))


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
    group after a single missed advertisement.  ``test=True`` is
    ``carp.present_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.present
        salt 'lb*' carp.present test=True
    """
    if test:
        return present_pending(topology)
    p = _present_plan(topology)
    if p["missing"]:
        raise CommandExecutionError(f"not installed: {', '.join(p['missing'])} (salt/carp installs them: state.apply carp)")
    if not p["changes"]:
        return carp_common.pending(p)
    paths, running, plan = p["paths"], p["running"], p["plan"]
    run_all = __salt__["cmd.run_all"]

    for path, f in p["files"].items():
        lb_files.write_atomic(path, f.content, int(f.mode, 8))
    os.makedirs(os.path.join(paths["state_dir"], "state"), exist_ok=True)
    lb_files.write_atomic(os.path.join(paths["state_dir"], "provider"), PROVIDER + "\n", 0o644)  # for the carp_provider grain
    for vhid, argv in sorted(plan.items()):
        if vhid in p["keeps_vip"] and ucarp_io.recorded_state(paths, vhid) == "MASTER":
            ucarp_io.handover(run_all, paths, vhid, running[vhid][0], argv)
            continue
        if vhid in running:
            ucarp_io.terminate(run_all, paths, running[vhid][0])
        if argv is None:
            try:
                os.unlink(ucarp_io.pidfile(paths, vhid))
            except FileNotFoundError:
                pass
            if p["managed"]:
                ucarp_io.forget(paths, vhid)
            continue
        ucarp_io.spawn(run_all, paths, argv, vhid)
    for vhid, argv in sorted(p["record"].items()):
        ucarp_io.record(paths, argv, vhid)
    for vhid, argv in sorted(p["adopt"].items()):
        # a ucarp started before its unit existed (an upgrade): moved under
        # systemd, a MASTER without a gap
        pid = running[vhid][0]
        if ucarp_io.recorded_state(paths, vhid) == "MASTER":
            ucarp_io.handover(run_all, paths, vhid, pid, argv)
        else:
            ucarp_io.terminate(run_all, paths, pid)
            ucarp_io.spawn(run_all, paths, argv, vhid)
    for path in p["obsolete"]:  # after the restarts: a stopping ucarp runs its old down script
        os.unlink(path)
    return {
        "changes": p["changes"],
        "comment": f"ucarp: {len([a for a in plan.values() if a])} group(s) (re)started, {len([a for a in plan.values() if a is None])} stopped",
    }


def _absent_plan(vhids):
    """What absent() would change, read only."""
    paths = _paths()
    running = ucarp_io.running(paths)
    targets = sorted(running) if vhids is None else sorted(int(v) for v in vhids if int(v) in running)
    changes = {v: {"old": carp_common.ucarp_shown(running[v][1]), "new": None} for v in targets}
    comment = "would stop" if changes else "no such CARP group runs here"
    return dict(changes=changes, comment=comment, paths=paths, running=running, targets=targets)


def absent_pending(vhids=None):
    """
    What ``carp.absent`` would stop, touching nothing, as
    ``carp.absent test=True`` returns it.

    CLI Example:

    .. code-block:: bash

        salt 'lb-b' carp.absent_pending vhids='[55]'
    """
    return carp_common.pending(_absent_plan(vhids))


def absent(vhids=None, test=False):
    """
    Stop the ucarp of the given groups (a list of vhids; default: every group
    this module runs).  A MASTER runs its down script as it stops, releasing
    the VIP.  ``test=True`` is ``carp.absent_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb-b' carp.absent vhids='[55]'
    """
    if test:
        return absent_pending(vhids)
    plan = _absent_plan(vhids)
    changes, paths, running = plan["changes"], plan["paths"], plan["running"]
    if not changes:
        return carp_common.pending(plan)
    managed = ucarp_io.managed(paths)
    for v in plan["targets"]:
        ucarp_io.terminate(__salt__["cmd.run_all"], paths, running[v][0])
        for path in (ucarp_io.pidfile(paths, v), os.path.join(paths["state_dir"], "state", str(v))):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if managed:
            ucarp_io.forget(paths, v)
    return {"changes": changes, "comment": f"stopped ucarp for vhid {', '.join(map(str, plan['targets']))}"}


def in_maintenance():
    """
    True while this node is in maintenance (the intent file exists).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.in_maintenance
    """
    return os.path.exists(os.path.join(_paths()["state_dir"], carp_common.MAINTENANCE_FILE))


def _switch(gs, pair, maintenance_on):
    """Restart every group at its maintenance (or normal) advskew, handing a
    MASTER over without a gap.  Returns what happened per vhid."""
    paths = _paths()
    run_all = __salt__["cmd.run_all"]
    running = ucarp_io.running(paths)
    done = {}
    handovers = []
    for g in gs:
        argv = _argv(g, pair, paths, maintenance_on)
        cur = running.get(g["vhid"])
        if cur is not None and carp_common.ucarp_comparable(cur[1]) == carp_common.ucarp_comparable(argv):
            continue
        if cur is not None and ucarp_io.recorded_state(paths, g["vhid"]) == "MASTER":
            new_pid = ucarp_io.handover(run_all, paths, g["vhid"], cur[0], argv)
            handovers.append((g, argv, new_pid))
            done[g["vhid"]] = "handed over"
        else:
            if cur is not None:
                ucarp_io.terminate(run_all, paths, cur[0])  # BACKUP: no down script, nothing moves
            ucarp_io.spawn(run_all, paths, argv, g["vhid"])
            done[g["vhid"]] = "restarted"
    # entering maintenance: once the peer holds a group, restart it plainly
    # (the handover process runs with --deadratio=1, quick to claim mastership)
    if maintenance_on:
        for g, argv, pid in handovers:
            if ucarp_io.wait_state(paths, g["vhid"], "BACKUP", 3 * g["advbase"] + 3):
                ucarp_io.terminate(run_all, paths, pid)
                ucarp_io.spawn(run_all, paths, argv, g["vhid"])
            else:
                done[g["vhid"]] = "handed over; still MASTER (is the peer up?)"
    return done


def _maintenance_plan(on, topology):
    """What maintenance() (`on`) or unmaintenance() would change, read only."""
    pair, gs = _pair_groups(topology)
    paths = _paths()
    path = os.path.join(paths["state_dir"], carp_common.MAINTENANCE_FILE)
    running = ucarp_io.running(paths)
    gs = [g for g in gs if g["vhid"] in running]
    skew = carp_common.UCARP_MAINTENANCE_ADVSKEW
    at_254 = {g["vhid"]: carp_common.parse_ucarp_argv(running[g["vhid"]][1])["advskew"] == skew for g in gs}
    plan = dict(pair=pair, gs=gs, path=path)
    if on and os.path.exists(path) and all(at_254.values()):
        return dict(plan, changes={}, comment="already in maintenance")
    if not on and not os.path.exists(path) and not any(at_254[g["vhid"]] and g["advskew"] != skew for g in gs):
        return dict(plan, changes={}, comment="not in maintenance")
    verb = "enter" if on else "leave"
    return dict(plan, changes={"maintenance": {"old": not on, "new": on}}, comment=f"would {verb} maintenance")


def maintenance_pending(topology=None):
    """
    Whether ``carp.maintenance`` would change anything, touching nothing,
    as ``carp.maintenance test=True`` returns it.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.maintenance_pending
    """
    return carp_common.pending(_maintenance_plan(True, topology))


def maintenance(test=False, topology=None):
    """
    Put this node in maintenance: its VIPs move to the peer and stay there
    (every group runs at advskew 254), across a restart or a reboot, until
    ``carp.unmaintenance``.  The intent is recorded before anything moves.
    Entering twice changes nothing.  ``test=True`` is
    ``carp.maintenance_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.maintenance
    """
    if test:
        return maintenance_pending(topology)
    plan = _maintenance_plan(True, topology)
    changes = plan["changes"]
    if not changes:
        return carp_common.pending(plan)
    if not os.path.exists(plan["path"]):
        lb_files.write_atomic(plan["path"], carp_common.intent(PROVIDER, _node()), 0o644)
    done = _switch(plan["gs"], plan["pair"], True)
    if done:
        changes["groups"] = done
    return {"changes": changes, "comment": "in maintenance: groups at advskew 254"}


def unmaintenance_pending(topology=None):
    """
    Whether ``carp.unmaintenance`` would change anything, touching nothing,
    as ``carp.unmaintenance test=True`` returns it.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.unmaintenance_pending
    """
    return carp_common.pending(_maintenance_plan(False, topology))


def unmaintenance(test=False, topology=None):
    """
    Take this node out of maintenance: every group runs at its topology
    advskew again and, with preempt, takes back the VIPs it is primary for.
    Leaving when not in maintenance changes nothing.  ``test=True`` is
    ``carp.unmaintenance_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.unmaintenance
    """
    if test:
        return unmaintenance_pending(topology)
    plan = _maintenance_plan(False, topology)
    changes = plan["changes"]
    if not changes:
        return carp_common.pending(plan)
    done = _switch(plan["gs"], plan["pair"], False)
    if os.path.exists(plan["path"]):
        os.unlink(plan["path"])
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
    running = ucarp_io.running(_paths())
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
