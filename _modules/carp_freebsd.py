"""
CARP groups with FreeBSD's kernel CARP (carp(4)), as the seed does it by hand.

Live: ``ifconfig <if> inet vhid N [advbase B] advskew S pass P alias VIP/32``
adds a group, ``ifconfig <if> vhid N advskew S`` changes one in place (no
password on that command line), ``ifconfig <if> inet VIP -alias`` removes
one.  State is read back from ``ifconfig`` (``carp: MASTER vhid 4 advbase 1
advskew 0``) by ``_utils/carp_parse.py``.

Persistent: ``/etc/rc.conf.d/netif`` (mode 0600, rendered by lb_render, the
CARP aliases in the handbook's form) is written as a file, not with ``sysrc``
whose command line would carry the passwords; ``carp_load="YES"`` goes to
/boot/loader.conf with ``sysrc -f``; ``net.inet.carp.preempt`` with
``sysctl.persist``; the module is loaded with ``kmod.load``.  On Salt 3008
sysrc, sysctl and kmod for FreeBSD come from the ``saltext-freebsd`` package.

The password and ``ps``: ifconfig(8) takes the CARP password only as the
``pass`` argument (no file, no stdin), so it is visible in the process list
for the few milliseconds that ifconfig runs.  This module passes it only when
a group is created or its password changes (never for advskew or advbase
changes, never when reading), keeps it out of Salt's logs and returns, and
the docs recommend ``security.bsd.see_other_uids=0`` so that only root sees
other users' command lines.

Maintenance: the intent goes to ``<state_dir>/maintenance`` first; then
``net.inet.carp.demotion`` is raised by 240 (the kernel ADDS what is written
to it).  What was added, for which boot, is recorded in
``<state_dir>/demotion`` so that it is undone exactly once;
rc.d/lb_carp_maintenance (salt/carp installs it, ``carp.present`` writes its
settings) demotes again at boot, before netif, while the intent exists.

This provider is verified only by unit tests (parsing real FreeBSD output,
and the exact commands it runs against mocks): FreeBSD cannot run where this
project's tests run.
"""

import logging
import os

from salt.exceptions import CommandExecutionError

import carp_common
import freebsd_carp_io
import lb_boot
import lb_files
import lb_fresh
import lb_parameters
import lb_render
import lb_view

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "carp"
PROVIDER = "freebsd"
PREEMPT = "net.inet.carp.preempt"
DEMOTION = "net.inet.carp.demotion"
NEEDS = ("sysctl.get", "sysctl.assign", "sysctl.persist", "sysrc.get", "sysrc.set", "kmod.is_loaded", "kmod.load")


def __virtual__():
    if __grains__.get("os_family") != "FreeBSD":
        return (False, "carp_freebsd: FreeBSD only")
    return __virtualname__


# ---------------------------------------------------------------------------
# helpers


def _override():
    return carp_common.checked_override(__opts__, __grains__, __pillar__)


def _paths():
    return carp_common.settings("FreeBSD", _override())


def _node():
    return __opts__["id"]


def _need_saltext():
    missing = [f for f in NEEDS if f not in __salt__]
    if missing:
        raise CommandExecutionError(
            "the FreeBSD carp provider needs the sysctl, sysrc and kmod modules of the saltext-freebsd package "
            f"(pip install saltext-freebsd on the minion); missing: {', '.join(missing)}"
        )


def _model(topology=None):
    return __salt__["lb.model"](topology)


def _pair_groups(topology=None):
    return carp_common.checked_node_groups(_model(topology), _node(), "FreeBSD")


def _shown(vhid, device, vip, advbase, advskew):
    return {"device": device, "vip": vip, "advbase": advbase, "advskew": advskew}


def _run(argv, secret=False):
    return freebsd_carp_io.run(__salt__["cmd.run_all"], argv, secret=secret)


def _current():
    return freebsd_carp_io.current(__salt__["cmd.run_all"])


def _int_sysctl(name):
    return freebsd_carp_io.int_sysctl(__salt__["sysctl.get"], name)


# ---------------------------------------------------------------------------
# public


def provider():
    """
    The CARP provider answering as ``carp`` on this node.

    CLI Example:

    .. code-block:: bash

        salt '*' carp.provider
    """
    return PROVIDER


def groups(topology=None):
    """
    The CARP groups the topology gives this node (passwords left out).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.groups
    """
    _, gs = _pair_groups(topology)
    return [dict(carp_common.public(g), provider=PROVIDER) for g in gs]


def status():
    """
    The kernel's CARP state per vhid, from ``ifconfig``: interface, VIP(s),
    state (MASTER, BACKUP or INIT), advbase, advskew, provider, and the
    node-wide demotion (added to every advskew advertised, up to 240).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.status
    """
    cur = _current()
    try:
        demotion = _int_sysctl(DEMOTION) if cur else 0
    except CommandExecutionError:
        demotion = None
    maint = in_maintenance()
    out = {}
    for vhid, c in sorted(cur.items()):
        v4 = [a for a in c["vips"] if ":" not in a]
        out[vhid] = {
            "interface": c["interface"],
            "vip": v4[0] if v4 else (c["vips"][0] if c["vips"] else None),
            "vips": c["vips"],
            "state": c["state"],
            "advbase": c["advbase"],
            "advskew": c["advskew"],
            "provider": PROVIDER,
            "demotion": demotion,
            "maintenance": maint,
        }
    return out


def command_lines(topology=None):
    """
    The command lines this provider runs for the node's groups, as every
    provider offers them: here ``{vhid: argv}``, the ``ifconfig`` that adds
    each group (the same words rc.d/netif runs at boot), the password shown
    as ``<redacted>``.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.command_lines
    """
    _, gs = _pair_groups(topology)
    return {g["vhid"]: carp_common.ifconfig_add(g, secret=lambda _: lb_view.REDACTED) for g in gs}


def programs(topology=None):
    """
    What salt/carp installs for kernel CARP before ``carp.present``: the
    maintenance rc.d script (salt/carp/files/lb_carp_maintenance.rc; run
    before netif, it demotes the node again at boot while
    ``carp.maintenance``'s intent is on disk).  ``carp.present`` writes its
    settings, ``/etc/rc.conf.d/lb_carp_maintenance``.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.programs
    """
    _pair_groups(topology)  # an invalid topology fails here as everywhere
    path = _paths()["rc_script"]
    return [{"name": os.path.basename(path), "path": path, "source": lb_boot.FREEBSD_MAINTENANCE_SOURCE, "mode": "0755"}]


def _present_plan(topology):
    """What present() would change, read only: the changes and comment
    present_pending returns, and the steps the apply step takes."""
    _need_saltext()
    paths = _paths()
    model = _model(topology)
    pair, gs = carp_common.checked_node_groups(model, _node(), "FreeBSD")
    changes = {}
    steps = []  # (argv, secret) in order

    loaded = bool(__salt__["kmod.is_loaded"]("carp"))
    if not loaded:
        changes["kernel_module"] = {"old": "not loaded", "new": "carp loaded"}
    loader = __salt__["sysrc.get"](name="carp_load", file=paths["loader_conf"]) or {}
    carp_load = (loader.get(paths["loader_conf"]) or {}).get("carp_load")
    if carp_load != "YES":
        changes["carp_load"] = {"old": carp_load, "new": "YES"}
    want_preempt = 1 if pair["carp"]["preempt"] else 0
    preempt = str(__salt__["sysctl.get"](PREEMPT)).strip() if loaded else None
    if preempt != str(want_preempt):
        changes[PREEMPT] = {"old": preempt, "new": want_preempt}

    cur = _current() if loaded else {}
    desired = {g["vhid"]: g for g in gs}
    keys = freebsd_carp_io.keys(__salt__["cmd.run_all"], {c["interface"] for v, c in cur.items() if v in desired}) if cur else {}
    for vhid, g in sorted(desired.items()):
        c = cur.get(vhid)
        new = _shown(vhid, g["device"], g["address"], g["advbase"], g["advskew"])
        if c is None:
            steps.append((carp_common.ifconfig_add(g), True))
            changes[vhid] = {"old": None, "new": new}
            continue
        old = _shown(vhid, c["interface"], c["vips"][0] if c["vips"] else None, c["advbase"], c["advskew"])
        if c["interface"] != g["device"] or g["address"] not in c["vips"]:
            for addr in c["vips"]:
                if ":" not in addr:
                    steps.append((carp_common.ifconfig_remove(c["interface"], addr), False))
            steps.append((carp_common.ifconfig_add(g), True))
            changes[vhid] = carp_common.diff({0: old}, {0: new})[0]
            continue
        fields = [f for f in ("advbase", "advskew") if c[f] != g[f]]
        if vhid in keys and keys[vhid] != g["password"]:
            fields.append("password")
        if fields:
            steps.append((carp_common.ifconfig_set(g, fields), "password" in fields))
            delta = carp_common.diff({0: old}, {0: new}).get(0, {"old": {}, "new": {}})
            if "password" in fields:
                delta["old"]["password"], delta["new"]["password"] = "<old>", "<changed>"
            changes[vhid] = delta
    for vhid, (dev, addr) in sorted(freebsd_carp_io.managed(paths["state_dir"]).items()):
        if vhid not in desired and vhid in cur:
            steps.append((carp_common.ifconfig_remove(dev, addr), False))
            changes[vhid] = {"old": _shown(vhid, dev, addr, cur[vhid]["advbase"], cur[vhid]["advskew"]), "new": None}

    netif = lb_render.render_node(model, _node(), "FreeBSD")[lb_parameters.of("FreeBSD", "carp")["netif_file"]]
    netif_changed = carp_common.read_text(paths["netif_file"]) != netif.content or carp_common.file_mode(paths["netif_file"]) != 0o600
    if netif_changed:
        changes["netif_file"] = {"old": "differs" if os.path.exists(paths["netif_file"]) else None, "new": paths["netif_file"]}
    head = f"# {lb_view.HEADER.format(pair=pair['name'], node=_node())}"
    rc_settings = lb_boot.freebsd_maintenance_settings(head, paths["state_dir"])
    rc_changed = carp_common.read_text(paths["rc_settings"]) != rc_settings or carp_common.file_mode(paths["rc_settings"]) != 0o644
    if rc_changed:
        changes["rc_settings"] = {"old": "differs" if os.path.exists(paths["rc_settings"]) else None, "new": paths["rc_settings"]}

    comment = "would apply" if changes else "CARP is configured as the topology says"
    plan = dict(changes=changes, comment=comment, paths=paths, gs=gs, steps=steps, loaded=loaded, want_preempt=want_preempt)
    return dict(plan, netif=netif if netif_changed else None, rc_settings=rc_settings if rc_changed else None)


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
    Make this node's CARP groups what the topology says, live and across
    reboots: the carp module loaded (and ``carp_load="YES"`` in loader.conf),
    ``net.inet.carp.preempt`` as the topology says (on by default), every
    group on its interface with its vhid, advbase, advskew, password and VIP,
    groups this module added and the topology dropped removed, and
    /etc/rc.conf.d/netif (0600) rendered from the topology.

    The password is passed to ifconfig only when a group is added or its
    password changes.  ``test=True`` is ``carp.present_pending``: nothing is
    touched and the same changes are returned.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.present
        salt 'lb*' carp.present test=True
    """
    if test:
        return present_pending(topology)
    plan = _present_plan(topology)
    changes, paths, steps, want_preempt = plan["changes"], plan["paths"], plan["steps"], plan["want_preempt"]
    if not changes:
        return carp_common.pending(plan)

    if not plan["loaded"]:
        __salt__["kmod.load"]("carp")
    if "carp_load" in changes:
        __salt__["sysrc.set"](name="carp_load", value="YES", file=paths["loader_conf"])
    if PREEMPT in changes:
        __salt__["sysctl.persist"](PREEMPT, want_preempt)
    for argv, secret in steps:
        _run(argv, secret=secret)
    if plan["netif"] is not None:
        lb_files.write_atomic(paths["netif_file"], plan["netif"].content, 0o600)
    if plan["rc_settings"] is not None:
        lb_files.write_atomic(paths["rc_settings"], plan["rc_settings"], 0o644)
    freebsd_carp_io.write_managed(paths["state_dir"], {g["vhid"]: (g["device"], g["address"]) for g in plan["gs"]})
    return {"changes": changes, "comment": f"CARP configured ({len(steps)} ifconfig command(s))"}


def _absent_plan(vhids):
    """What absent() would change, read only."""
    cur = _current()
    managed = freebsd_carp_io.managed(_paths()["state_dir"])
    targets = sorted(managed) if vhids is None else sorted(int(v) for v in vhids)
    changes = {}
    steps = []
    for vhid in targets:
        c = cur.get(vhid)
        if c is None:
            continue
        for addr in c["vips"]:
            if ":" not in addr:
                steps.append(carp_common.ifconfig_remove(c["interface"], addr))
        changes[vhid] = {"old": _shown(vhid, c["interface"], c["vips"][0] if c["vips"] else None, c["advbase"], c["advskew"]), "new": None}
    comment = "would remove" if changes else "no such CARP group here"
    return dict(changes=changes, comment=comment, managed=managed, steps=steps)


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
    Remove CARP groups (a list of vhids; default: every group this module
    configured) from their interfaces.  /etc/rc.conf.d/netif is left to
    ``carp.present``, which renders it from the topology.  ``test=True`` is
    ``carp.absent_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb-b' carp.absent vhids='[55]'
    """
    if test:
        return absent_pending(vhids)
    plan = _absent_plan(vhids)
    changes, managed = plan["changes"], plan["managed"]
    if not changes:
        return carp_common.pending(plan)
    for argv in plan["steps"]:
        _run(argv)
    remaining = {v: m for v, m in managed.items() if v not in changes}
    freebsd_carp_io.write_managed(_paths()["state_dir"], dict(sorted(remaining.items())))
    return {"changes": changes, "comment": f"removed vhid {', '.join(map(str, changes))}"}


def in_maintenance():
    """
    True while this node is in maintenance (the intent file exists).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.in_maintenance
    """
    return os.path.exists(os.path.join(_paths()["state_dir"], carp_common.MAINTENANCE_FILE))


def _maintenance_plan():
    """What maintenance() would change, read only."""
    _need_saltext()
    paths = _paths()
    intent_path = os.path.join(paths["state_dir"], carp_common.MAINTENANCE_FILE)
    boot = freebsd_carp_io.boot(__salt__["sysctl.get"])
    rec = freebsd_carp_io.demotion_record(paths["state_dir"])
    current = rec if rec and rec["boot"] == boot else None
    has_intent = os.path.exists(intent_path)
    plan = dict(paths=paths, intent_path=intent_path, boot=boot, current=current, has_intent=has_intent)
    if has_intent and current and current["phase"] == "applied":
        return dict(plan, changes={}, comment=f"already in maintenance (demoted by {current['amount']})")
    return dict(plan, changes={"maintenance": {"old": False, "new": True}}, comment="would enter maintenance")


def maintenance_pending(topology=None):  # noqa: ARG001 - same signature for every provider
    """
    Whether ``carp.maintenance`` would change anything, touching nothing,
    as ``carp.maintenance test=True`` returns it.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.maintenance_pending
    """
    return carp_common.pending(_maintenance_plan())


def maintenance(test=False, topology=None):
    """
    Put this node in maintenance: ``net.inet.carp.demotion`` is raised by 240,
    every advertisement of this node gets slower, and the peer (with preempt)
    takes every VIP while this node still answers.  The intent is recorded on
    disk before the demotion, and what was added is recorded for this boot so
    that ``carp.unmaintenance`` undoes it exactly once; rc.d/lb_carp_maintenance
    demotes again at boot while the intent exists.  It and its settings must
    be installed as the topology says (the carp SLS: ``carp.programs``,
    ``carp.present``), else nothing is changed and this fails: a reboot
    would bring the node back undemoted.  Entering twice changes nothing.
    ``test=True`` is ``carp.maintenance_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.maintenance
    """
    if test:
        return maintenance_pending(topology)
    plan = _maintenance_plan()
    changes, paths, intent_path, boot, current = (plan[k] for k in ("changes", "paths", "intent_path", "boot", "current"))
    if not changes:
        return carp_common.pending(plan)
    # the boot half first: without it a reboot would bring the node back undemoted
    intent_line = f'lb_carp_maintenance_intent="{intent_path}"'
    if not os.access(paths["rc_script"], os.X_OK) or intent_line not in (carp_common.read_text(paths["rc_settings"]) or "").splitlines():
        raise CommandExecutionError(
            f"{paths['rc_script']} or its settings {paths['rc_settings']} are not installed as the topology says: "
            "apply the carp SLS first (state.apply carp); nothing was changed"
        )
    if not plan["has_intent"]:
        lb_files.write_atomic(intent_path, carp_common.intent(PROVIDER, _node()), 0o644)
    if current and current["phase"] == "applying":
        # interrupted after recording, before or after the sysctl: look
        if _int_sysctl(DEMOTION) >= current["before"] + current["amount"]:
            freebsd_carp_io.write_demotion_record(paths["state_dir"], boot, current["amount"], current["before"], "applied")
            return {"changes": changes, "comment": "in maintenance (an interrupted demotion had been applied)"}
        before = current["before"]
    elif current and current["phase"] == "applied":
        return {"changes": changes, "comment": "in maintenance"}
    else:
        before = _int_sysctl(DEMOTION)
    freebsd_carp_io.write_demotion_record(paths["state_dir"], boot, carp_common.FREEBSD_DEMOTION, before, "applying")
    __salt__["sysctl.assign"](DEMOTION, carp_common.FREEBSD_DEMOTION)
    freebsd_carp_io.write_demotion_record(paths["state_dir"], boot, carp_common.FREEBSD_DEMOTION, before, "applied")
    changes[DEMOTION] = {"old": before, "new": before + carp_common.FREEBSD_DEMOTION}
    return {"changes": changes, "comment": f"in maintenance: demoted by {carp_common.FREEBSD_DEMOTION}"}


def _unmaintenance_plan():
    """What unmaintenance() would change, read only."""
    _need_saltext()
    paths = _paths()
    intent_path = os.path.join(paths["state_dir"], carp_common.MAINTENANCE_FILE)
    record_path = os.path.join(paths["state_dir"], carp_common.DEMOTION_RECORD)
    rec = freebsd_carp_io.demotion_record(paths["state_dir"])
    plan = dict(state_dir=paths["state_dir"], intent_path=intent_path, record_path=record_path, rec=rec)
    if not os.path.exists(intent_path) and rec is None:
        return dict(plan, changes={}, comment="not in maintenance")
    return dict(plan, changes={"maintenance": {"old": True, "new": False}}, comment="would leave maintenance")


def unmaintenance_pending(topology=None):  # noqa: ARG001 - same signature for every provider
    """
    Whether ``carp.unmaintenance`` would change anything, touching nothing,
    as ``carp.unmaintenance test=True`` returns it.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.unmaintenance_pending
    """
    return carp_common.pending(_unmaintenance_plan())


def unmaintenance(test=False, topology=None):
    """
    Take this node out of maintenance: the demotion this module added in this
    boot is taken back (once), the intent is removed (rc.d/lb_carp_maintenance
    stays: without the intent it does nothing at boot),
    and with preempt the node takes back its VIPs.  Leaving when not in
    maintenance changes nothing.  ``test=True`` is
    ``carp.unmaintenance_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.unmaintenance
    """
    if test:
        return unmaintenance_pending(topology)
    plan = _unmaintenance_plan()
    changes, rec = plan["changes"], plan["rec"]
    if not changes:
        return carp_common.pending(plan)
    if rec is not None and rec["boot"] == freebsd_carp_io.boot(__salt__["sysctl.get"]):
        now = _int_sysctl(DEMOTION)
        applied = rec["phase"] == "applied" or (rec["phase"] == "applying" and now >= rec["before"] + rec["amount"])
        undone = rec["phase"] == "removing" and now <= rec["before"]
        if applied or (rec["phase"] == "removing" and not undone):
            freebsd_carp_io.write_demotion_record(plan["state_dir"], rec["boot"], rec["amount"], rec["before"], "removing")
            __salt__["sysctl.assign"](DEMOTION, -rec["amount"])
            changes[DEMOTION] = {"old": now, "new": now - rec["amount"]}
    for path in (plan["record_path"], plan["intent_path"]):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return {"changes": changes, "comment": "out of maintenance"}


def preempt_enabled(topology=None):
    """
    Whether ``net.inet.carp.preempt`` is 1 on this node.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.preempt_enabled
    """
    _need_saltext()
    return str(__salt__["sysctl.get"](PREEMPT)).strip() == "1"
