"""
CARP groups on Linux with keepalived (VRRPv3): the ``carp`` provider chosen
when the pair's ``carp:linux_provider`` is ``keepalived`` (the default).

Each CARP group of the node becomes one ``vrrp_instance`` (vhid ->
virtual_router_id, advskew -> priority 254 - advskew), rendered by
``lb_render_linux.render_keepalived``.  A change is applied by rewriting
keepalived.conf (checked first with ``keepalived -t``) and sending keepalived
SIGHUP: a reload, never a restart, so VIPs are not dropped.  keepalived is
started directly (no systemd) with its pid files in ``run_dir``.

keepalived does not add the VIPs itself (its ``virtual_ipaddress`` is a marker
address on lo, see ``lb_render_linux.keepalived_marker``): it writes every transition,
in order, to a FIFO read by ``lb-carp-keepalived-vips``, which does what
ucarp's up and down scripts do, in its own threads.  It records
MASTER/BACKUP/FAULT/STOP in ``<state_dir>/state/<vhid>`` (``carp.status``
reads it) and adds a VIP only once no other host answers an ARP probe for it:
the old master lets go before the new one takes it, so a VIP is never on
both nodes.

Maintenance writes the intent to ``<state_dir>/maintenance`` first, then 1 to
``<state_dir>/maintenance.track``, a keepalived ``track_file`` with weight
-253: every priority drops to 1, the peer preempts, and the node stays
demoted across a keepalived restart or a reboot until maintenance is left.

Paths can be moved with the ``lb_settings:carp`` config key (minion config, grains or
pillar): ``state_dir``, ``script_dir``, ``run_dir``, ``keepalived_config``.
"""

import os
import shutil

from salt.exceptions import CommandExecutionError

import carp_common
import keepalived_io
import lb_files
import lb_fresh
import lb_generation
import lb_parameters
import lb_render_linux

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

__virtualname__ = "carp"
PROVIDER = "keepalived"
RELOAD_TIMEOUT = 10.0  # seconds for a reloaded keepalived to report the new generation


def __virtual__():
    return carp_common.linux_virtual("carp_keepalived", PROVIDER, __opts__, __grains__, __pillar__)


# ---------------------------------------------------------------------------
# helpers (keepalived's process and data dump: _utils/keepalived_io.py)


def _override():
    return carp_common.checked_override(__opts__, __grains__, __pillar__)


def _paths():
    return carp_common.settings("Linux", _override())


def _node():
    return __opts__["id"]


def _pair_groups(topology=None):
    return carp_common.checked_node_groups(__salt__["lb.model"](topology), _node(), "Debian")


def _binary():
    return _override().get("keepalived_bin") or shutil.which("keepalived") or "/usr/sbin/keepalived"


def _haproxy_pidfile():
    """The pid file HAProxy runs with (haproxy_cfg's settings), which
    keepalived's lb_serving check reads."""
    if "haproxy_cfg.settings" in __salt__:
        return __salt__["haproxy_cfg.settings"]()["pidfile"]
    return lb_parameters.of("Debian", "node")["haproxy_pidfile"]


def _render(pair):
    paths = _paths()
    return lb_render_linux.render_keepalived(
        pair,
        _node(),
        state_dir=paths["state_dir"],
        script_dir=paths["script_dir"],
        run_dir=paths["run_dir"],
        haproxy_pidfile=_haproxy_pidfile(),
    )


def _maint_paths():
    paths = _paths()
    return (
        os.path.join(paths["state_dir"], carp_common.MAINTENANCE_FILE),
        os.path.join(paths["state_dir"], lb_render_linux.MAINTENANCE_TRACK_FILE),
    )


def programs(topology=None):
    """
    What salt/carp installs for keepalived before ``carp.present``
    (``[{"name", "path", "source", "mode"}]``, docs/carp.md "Paths"):
    lb-carp-keepalived-vips and the serving checks.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.programs
    """
    return carp_common.programs(_pair_groups(topology)[0], _node(), PROVIDER, _paths()["script_dir"])


# ---------------------------------------------------------------------------
# public


def groups(topology=None):
    """
    The CARP groups the topology gives this node (passwords left out).

    topology
        Path of a YAML topology file instead of the pillar.

    CLI Example:

    .. code-block:: bash

        salt '*' carp.groups
        salt-call carp.groups topology=pillar/lab/lb.sls --out=json
    """
    _, gs = _pair_groups(topology)
    return [dict(carp_common.public(g), provider=PROVIDER) for g in gs]


def status():
    """
    The state of every CARP group on this node, per vhid: interface, VIP,
    state (MASTER, BACKUP or INIT), advbase, advskew, provider; plus whether
    the VIP is configured here now (``holds_vip``) and keepalived's own state.

    Read from the running config, the states the notify script recorded, and
    ``ip addr``.  INIT: keepalived is not running, or the instance is FAULT or
    STOP, or has recorded nothing yet.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.status
    """
    paths = _paths()
    instances = carp_common.parse_keepalived(carp_common.read_text(paths["keepalived_config"]))
    running = keepalived_io.running_pid(paths) is not None
    addrs = carp_common.vips_by_device(__salt__["cmd.run_all"]) if instances else {}
    maint = in_maintenance()
    out = {}
    for vhid, inst in sorted(instances.items()):
        rec = carp_common.parse_state_file(carp_common.read_text(os.path.join(paths["state_dir"], "state", str(vhid))))
        raw = rec["state"] if rec else None
        address = (inst["vip"] or "").split("/")[0]
        out[vhid] = {
            "interface": inst["device"],
            "vip": inst["vip"],
            "state": carp_common.carp_state(raw, running),
            "advbase": inst["advert_int"],
            "advskew": 254 - inst["priority"],
            "provider": PROVIDER,
            "daemon_state": raw if running else "STOPPED",
            "holds_vip": address in addrs.get(inst["device"], set()),
            "maintenance": maint,
        }
    return out


def loaded(wait=0):
    """
    Whether the running keepalived has loaded keepalived.conf: the
    generation marker the file carries (in ``router_id``, see
    ``lb_generation``) against the one keepalived reports in the data dump
    SIGUSR1 makes it write (``$TMPDIR/keepalived.data``; run_dir when this
    module started it).  A SIGHUP keepalived has not acted on leaves the
    old value.

    wait
        Seconds to keep asking while the answer is False (a reload in
        progress).

    Returns ``{"running", "file", "loaded", "current", "reason"}``:
    ``current`` is True when both are the same, False when keepalived runs
    and reports another generation (or none, or writes no dump within
    3 s), None when keepalived does not run or the file carries no valid
    marker (hand-written, or edited by hand since).

    CLI Example:

    .. code-block:: bash

        salt-call carp.loaded
    """
    paths = _paths()
    file_gen = lb_generation.keepalived_file_generation(carp_common.read_text(paths["keepalived_config"]))
    return keepalived_io.wait_loaded(paths, keepalived_io.running_pid(paths), file_gen, wait)


def _present_plan(topology):
    """What present() would change, read only (keepalived is asked which
    config it runs, nothing is written)."""
    paths = _paths()
    pair, _ = _pair_groups(topology)
    desired_text = _render(pair)
    current_text = carp_common.read_text(paths["keepalived_config"])
    changes = {}

    old_i = carp_common.parse_keepalived(current_text)
    new_i = carp_common.parse_keepalived(desired_text)
    changes.update(
        carp_common.diff(
            {v: carp_common.keepalived_public(i) for v, i in old_i.items()}, {v: carp_common.keepalived_public(i) for v, i in new_i.items()}
        )
    )
    config_changed = current_text != desired_text
    if config_changed and not changes:
        changes["config"] = {"old": "differs" if current_text is not None else None, "new": paths["keepalived_config"]}

    missing = carp_common.missing_programs(carp_common.programs(pair, _node(), PROVIDER, paths["script_dir"]))
    obsolete = carp_common.obsolete_scripts(paths["script_dir"])
    if obsolete:
        changes["obsolete_scripts"] = {"old": obsolete, "new": None}

    intent_path, track_path = _maint_paths()
    want_track = "1\n" if os.path.exists(intent_path) else "0\n"
    if carp_common.read_text(track_path) != want_track:
        changes["maintenance_track"] = {"old": carp_common.read_text(track_path), "new": want_track}

    pid = keepalived_io.running_pid(paths)
    want_gen = lb_generation.keepalived_file_generation(desired_text)
    process = keepalived_io.process_change(paths, pid, config_changed, want_gen)
    if process:
        changes["keepalived"] = process
    comment = "would apply" if changes else "keepalived is configured as the topology says"
    # the public part (changes, comment) and what the apply step needs
    plan = dict(changes=changes, comment=comment, paths=paths, pid=pid, missing=missing, obsolete=obsolete, want_gen=want_gen)
    return dict(plan, desired_text=desired_text, config_changed=config_changed, old_i=old_i, new_i=new_i, track=(track_path, want_track))


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
    Make this node's CARP groups what the topology says: keepalived.conf
    rendered from it (checked by ``keepalived -t``), the maintenance track
    file, and keepalived running (started if stopped, reloaded with SIGHUP
    if its config changed, if the running keepalived reports another
    generation than the file's: ``loaded``, or if its FIFO program started
    before salt/carp last replaced that file).  The programs
    (``carp.programs``) are salt/carp's to install, before this runs; it
    fails if one is missing.
    Up to date only when keepalived runs the file: after a SIGHUP the new
    generation must appear within 10 s, else the changes are returned with
    ``result: False`` (keepalived still runs the old config; the next run
    reloads).

    Returns ``{"changes": {...}, "comment": str}``; changes per vhid show
    old and new values.  ``test=True`` is ``carp.present_pending``: nothing
    is touched and the same changes are returned.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.present
        salt 'lb*' carp.present test=True
    """
    if test:
        return present_pending(topology)
    plan = _present_plan(topology)
    if plan["missing"]:
        raise CommandExecutionError(f"not installed: {', '.join(plan['missing'])} (salt/carp installs them: state.apply carp)")
    changes, paths, pid = plan["changes"], plan["paths"], plan["pid"]
    if not changes:
        return carp_common.pending(plan)

    for path in plan["obsolete"]:
        os.unlink(path)
    os.makedirs(paths["run_dir"], exist_ok=True)
    if "maintenance_track" in changes:
        lb_files.write_atomic(*plan["track"], 0o644)
    os.makedirs(os.path.join(paths["state_dir"], "state"), exist_ok=True)
    lb_files.write_atomic(os.path.join(paths["state_dir"], "provider"), PROVIDER + "\n", 0o644)  # for the carp_provider grain
    if plan["config_changed"]:
        keepalived_io.check_config(__salt__["cmd.run_all"], _binary(), plan["desired_text"])
        lb_files.write_atomic(paths["keepalived_config"], plan["desired_text"], 0o640)
    if pid is None:
        pid = keepalived_io.start(__salt__["cmd.run_all"], _binary(), paths)
        comment = f"keepalived started (pid {pid})"
    elif "keepalived" in changes:
        keepalived_io.reload(pid)
        comment = f"keepalived reloaded (SIGHUP to pid {pid})"
        old_i, new_i = plan["old_i"], plan["new_i"]
        for vhid, inst in old_i.items():
            if vhid not in new_i:
                keepalived_io.release(__salt__["cmd.run_all"], paths, vhid, inst)
            elif (inst["vip"], inst["device"]) != (new_i[vhid]["vip"], new_i[vhid]["device"]):
                keepalived_io.drop_address(__salt__["cmd.run_all"], inst)
        gen = keepalived_io.wait_loaded(paths, pid, plan["want_gen"], RELOAD_TIMEOUT)
        if gen["current"] is False:
            return {
                "result": False,
                "changes": changes,
                "comment": f"SIGHUP sent to pid {pid}, but keepalived still runs the old config ({gen['reason']}); the next run reloads",
            }
        comment += ", it runs the new config"
    else:
        comment = "keepalived files updated"
    return {"changes": changes, "comment": comment}


def _absent_plan(vhids):
    """What absent() would change, read only."""
    paths = _paths()
    text = carp_common.read_text(paths["keepalived_config"])
    instances = carp_common.parse_keepalived(text)
    pid = keepalived_io.running_pid(paths)
    targets = sorted(instances) if vhids is None else sorted(int(v) for v in vhids if int(v) in instances)
    changes = {v: {"old": carp_common.keepalived_public(instances[v]), "new": None} for v in targets}
    if vhids is None and pid is not None:
        changes["keepalived"] = {"old": f"running (pid {pid})", "new": "stopped"}
    comment = "would remove" if changes else "no such CARP group here"
    return dict(changes=changes, comment=comment, paths=paths, text=text, instances=instances, pid=pid, targets=targets)


def absent_pending(vhids=None):
    """
    What ``carp.absent`` would remove, touching nothing, as
    ``carp.absent test=True`` returns it.

    CLI Example:

    .. code-block:: bash

        salt 'lb-b' carp.absent_pending vhids='[55]'
    """
    return carp_common.pending(_absent_plan(vhids))


def absent(vhids=None, test=False):
    """
    Remove CARP groups from this node.  With ``vhids`` (a list), only those
    instances leave keepalived.conf and keepalived reloads; without, every
    group goes: keepalived stops (releasing its VIPs) and its config and
    recorded states are removed.  ``test=True`` is ``carp.absent_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb-b' carp.absent vhids='[55]'
        salt 'lb-b' carp.absent test=True
    """
    if test:
        return absent_pending(vhids)
    plan = _absent_plan(vhids)
    changes, paths, text, instances, pid, targets = (plan[k] for k in ("changes", "paths", "text", "instances", "pid", "targets"))
    if not changes:
        return carp_common.pending(plan)
    run_all = __salt__["cmd.run_all"]
    if vhids is None:
        if pid is not None:
            keepalived_io.stop(run_all, paths, pid, released=targets)
        for v in targets:
            keepalived_io.release(run_all, paths, v, instances[v])
        if text is not None:
            os.unlink(paths["keepalived_config"])
        for v in targets:
            keepalived_io.forget_state(paths, v)
        return {"changes": changes, "comment": "keepalived stopped, its CARP groups removed"}
    new_text = carp_common.keepalived_without(text, targets)
    if lb_generation.keepalived_file_generation(text) is not None:
        new_text = lb_generation.keepalived_stamp(new_text)  # the marker names the new content
    keepalived_io.check_config(run_all, _binary(), new_text)
    lb_files.write_atomic(paths["keepalived_config"], new_text, 0o640)
    if pid is not None:
        keepalived_io.reload(pid)
    for v in targets:
        keepalived_io.release(run_all, paths, v, instances[v])
        keepalived_io.forget_state(paths, v)
    comment = f"removed vhid {', '.join(map(str, targets))}"
    if pid is not None:
        gen = keepalived_io.wait_loaded(paths, pid, lb_generation.keepalived_file_generation(new_text), RELOAD_TIMEOUT)
        if gen["current"] is False:
            raise CommandExecutionError(
                f"{comment} from {paths['keepalived_config']}, but keepalived (pid {pid}) still runs the old config after SIGHUP ({gen['reason']}); carp.present reloads it"
            )
        if gen["current"]:
            comment += "; keepalived runs the new config"
    return {"changes": changes, "comment": comment}


def in_maintenance():
    """
    True while this node is in maintenance (the intent file exists).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.in_maintenance
    """
    return os.path.exists(_maint_paths()[0])


def _maintenance_plan(on):
    """What maintenance() (`on`) or unmaintenance() would change, read only."""
    intent_path, track_path = _maint_paths()
    has_intent = os.path.exists(intent_path)
    demoted = carp_common.read_text(track_path) == "1\n"
    plan = dict(intent_path=intent_path, track_path=track_path, has_intent=has_intent, demoted=demoted)
    if on and has_intent and demoted:
        return dict(plan, changes={}, comment="already in maintenance")
    if not on and not has_intent and not demoted:
        return dict(plan, changes={}, comment="not in maintenance")
    verb = "enter" if on else "leave"
    return dict(plan, changes={"maintenance": {"old": not on, "new": on}}, comment=f"would {verb} maintenance")


def maintenance_pending(topology=None):  # noqa: ARG001 - same signature for every provider
    """
    Whether ``carp.maintenance`` would change anything, touching nothing,
    as ``carp.maintenance test=True`` returns it.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.maintenance_pending
    """
    return carp_common.pending(_maintenance_plan(True))


def maintenance(test=False, topology=None):
    """
    Put this node in maintenance: its VIPs move to the peer and stay there,
    across a keepalived restart or a reboot, until ``carp.unmaintenance``.

    The intent is written first (``<state_dir>/maintenance``), then 1 to the
    track file keepalived watches: every priority drops to 1, the peer (with
    preempt) takes over at its next advertisement timeout while this node
    still answers, so no client connection fails.  Entering twice changes
    nothing.  ``test=True`` is ``carp.maintenance_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.maintenance
        salt 'lb-a' carp.maintenance test=True
    """
    if test:
        return maintenance_pending(topology)
    plan = _maintenance_plan(True)
    if not plan["changes"]:
        return carp_common.pending(plan)
    if not plan["has_intent"]:
        lb_files.write_atomic(plan["intent_path"], carp_common.intent(PROVIDER, _node()), 0o644)
    lb_files.write_atomic(plan["track_path"], "1\n", 0o644)
    return {"changes": plan["changes"], "comment": "in maintenance: priorities lowered to 1, the peer takes the VIPs"}


def unmaintenance_pending(topology=None):  # noqa: ARG001 - same signature for every provider
    """
    Whether ``carp.unmaintenance`` would change anything, touching nothing,
    as ``carp.unmaintenance test=True`` returns it.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.unmaintenance_pending
    """
    return carp_common.pending(_maintenance_plan(False))


def unmaintenance(test=False, topology=None):
    """
    Take this node out of maintenance: priorities return to the topology's,
    and with preempt the node takes back the VIPs it is primary for.  Leaving
    when not in maintenance changes nothing.  ``test=True`` is
    ``carp.unmaintenance_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.unmaintenance
    """
    if test:
        return unmaintenance_pending(topology)
    plan = _maintenance_plan(False)
    if not plan["changes"]:
        return carp_common.pending(plan)
    intent_path, track_path = plan["intent_path"], plan["track_path"]
    if plan["demoted"] or os.path.exists(track_path):
        lb_files.write_atomic(track_path, "0\n", 0o644)
    if plan["has_intent"]:
        os.unlink(intent_path)
    return {"changes": plan["changes"], "comment": "out of maintenance: priorities restored"}


def preempt_enabled(topology=None):
    """
    Whether preemption is on for this node's groups (keepalived preempts
    unless ``nopreempt`` is set; the topology's ``carp:preempt`` decides).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.preempt_enabled
    """
    instances = carp_common.parse_keepalived(carp_common.read_text(_paths()["keepalived_config"]))
    if instances:
        return all(i["preempt"] for i in instances.values())
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


def command_lines(topology=None):  # noqa: ARG001 - the same signature as every provider's
    """
    The command lines this provider runs for the node's groups, as every
    provider offers them: here ``{"keepalived": argv}``, the one keepalived
    that holds every group (no secret in it: VRRPv3 has no password).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.command_lines
    """
    paths = _paths()
    return {"keepalived": carp_common.keepalived_argv(_binary(), paths["keepalived_config"], paths["run_dir"])}
