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

Paths can be moved with the ``lb_carp`` config key (minion config, grains or
pillar): ``state_dir``, ``script_dir``, ``run_dir``, ``keepalived_config``.
"""

import logging
import os
import shutil
import signal
import stat
import tempfile
import time

from salt.exceptions import CommandExecutionError

import carp_common
import lb_boot
import lb_files
import lb_fresh
import lb_generation
import lb_render_linux
import lb_view

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "carp"
PROVIDER = "keepalived"
START_TIMEOUT = 10.0  # seconds for keepalived to write its pid file
STOP_TIMEOUT = 10.0
RELEASE_TIMEOUT = 3.0  # seconds for the FIFO script to release the VIPs of a stopped keepalived
DUMP_TIMEOUT = 3.0  # seconds for keepalived to write its data dump after SIGUSR1
RELOAD_TIMEOUT = 10.0  # seconds for a reloaded keepalived to report the new generation


def __virtual__():
    return carp_common.linux_virtual("carp_keepalived", PROVIDER, __opts__, __grains__, __pillar__)


# ---------------------------------------------------------------------------
# helpers


def _override():
    return carp_common.checked_override(__opts__, __grains__, __pillar__)


def _paths():
    return carp_common.settings("Linux", _override())


def _node():
    return __opts__["id"]


def _model(topology=None):
    return __salt__["lb.model"](topology)


def _pair_groups(topology=None):
    return carp_common.checked_node_groups(_model(topology), _node(), "Debian")


def _binary():
    binary = _override().get("keepalived_bin") or shutil.which("keepalived") or "/usr/sbin/keepalived"
    return binary


def _pidfile():
    return os.path.join(_paths()["run_dir"], "keepalived.pid")


def _running_pid():
    """keepalived's parent pid when it runs (pid file and /proc agree)."""
    return carp_common.pid_of(_pidfile(), "keepalived")


def _haproxy_pidfile():
    """The pid file HAProxy runs with (haproxy_cfg's settings), which
    keepalived's lb_serving check reads."""
    if "haproxy_cfg.settings" in __salt__:
        return __salt__["haproxy_cfg.settings"]()["pidfile"]
    return lb_view.OS_PARAMS["Debian"]["haproxy_pidfile"]


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


def _release(vhid, inst, state="STOP"):
    """Make sure an instance keepalived no longer serves holds nothing: its
    VIP removed if it is still here, and then ``state`` recorded."""
    if _drop_address(inst):
        path = os.path.join(_paths()["state_dir"], "state", str(vhid))
        lb_files.write_atomic(path, carp_common.state_line(state), 0o644)


def _recorded(vhid):
    rec = carp_common.parse_state_file(carp_common.read_text(os.path.join(_paths()["state_dir"], "state", str(vhid))))
    return rec["state"] if rec else None


def _drop_address(inst):
    """Remove an instance's VIP from its interface if it is there (True
    then): a VIP the topology changed (the new one is added by
    lb-carp-keepalived-vips) or one keepalived no longer serves."""
    address = (inst["vip"] or "").split("/")[0]
    if not (address and inst["device"] and address in _vips_by_device().get(inst["device"], set())):
        return False
    __salt__["cmd.run_all"](["ip", "-4", "addr", "del", inst["vip"], "dev", inst["device"]], python_shell=False, ignore_retcode=True)
    return True


def _check_config(text):
    """`keepalived -t` on the new config before it replaces the old one.
    Interfaces that do not exist here are only warned about (keepalived
    starts without them and picks them up when they appear)."""
    binary = _binary()
    if not os.path.exists(binary):
        log.warning("carp: %s not found, config not checked", binary)
        return
    fd, tmp = tempfile.mkstemp(prefix="keepalived-check.", suffix=".conf")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        res = __salt__["cmd.run_all"]([binary, "--config-test", "--use-file", tmp], python_shell=False, ignore_retcode=True)
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


def _systemctl(verb, unit):
    try:
        lb_boot.systemctl(__salt__["cmd.run_all"], verb, unit)
    except RuntimeError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _unit():
    """keepalived.service when systemd runs this host and the unit carries
    the product's drop-in (which starts it as _start does), on the default
    paths: start and stop go through systemd, whose Restart= covers it."""
    paths = _paths()
    default = carp_common.DEFAULTS["Linux"]
    if (paths["keepalived_config"], paths["run_dir"]) != (default["keepalived_config"], default["run_dir"]):
        return None
    return lb_boot.managed_unit(lb_boot.KEEPALIVED_UNIT)


def _start():
    paths = _paths()
    os.makedirs(paths["run_dir"], exist_ok=True)
    unit = _unit()
    if unit:
        _systemctl("start", unit)
        return _wait_pid()
    argv = carp_common.keepalived_argv(_binary(), paths["keepalived_config"], paths["run_dir"])
    # keepalived reads TMPDIR once, at start: its SIGUSR1 data dump (which
    # says what config it runs, see loaded()) goes to run_dir, not to /tmp
    res = __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True, env={"TMPDIR": paths["run_dir"]})
    if res["retcode"] != 0:
        raise CommandExecutionError(f"keepalived did not start (exit {res['retcode']}): {res.get('stderr', '').strip()}")
    return _wait_pid()


def _wait_pid():
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = _running_pid()
        if pid:
            return pid
        time.sleep(0.1)
    raise CommandExecutionError(f"keepalived started but wrote no pid file {_pidfile()} within {START_TIMEOUT:.0f} s")


def _fifo_script_running():
    """Whether lb-carp-keepalived-vips runs under keepalived's VRRP process
    (True when that process cannot be found: nothing to compare with)."""
    vrrp = carp_common.pid_of(os.path.join(_paths()["run_dir"], "keepalived-vrrp.pid"), "keepalived")
    if vrrp is None:
        return True
    return bool(carp_common.children_running(vrrp, lb_render_linux.KEEPALIVED_VIPS_SCRIPT))


def _fifo_program_replaced():
    """Whether a running lb-carp-keepalived-vips started before its file was
    last written (salt/carp installed another version since)."""
    vrrp = carp_common.pid_of(os.path.join(_paths()["run_dir"], "keepalived-vrrp.pid"), "keepalived")
    if vrrp is None:
        return False
    path = os.path.join(_paths()["script_dir"], lb_render_linux.KEEPALIVED_VIPS_SCRIPT)
    return any(carp_common.started_before(pid, path) for pid in carp_common.children_running(vrrp, lb_render_linux.KEEPALIVED_VIPS_SCRIPT))


def _reload(pid):
    os.kill(pid, signal.SIGHUP)


def _dump_path(pid):
    """Where keepalived writes its data dump: ``$TMPDIR/keepalived.data``,
    TMPDIR as keepalived got it at start (``_start`` gives it run_dir; a
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


def _read_dump(path, uid):
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


def _ask(pid, timeout=DUMP_TIMEOUT):
    """(answered, generation): SIGUSR1, then the ``Router ID`` of the dump
    keepalived writes (the old dump removed first, so only a new one
    counts).  (False, None) when no dump came within ``timeout``."""
    path = _dump_path(pid)
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
        text = _read_dump(path, uid)
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


def _loaded(pid, file_gen):
    if pid is None:
        return lb_generation.compare("keepalived", _paths()["keepalived_config"], file_gen, running=False)
    answered, gen = _ask(pid)
    unanswered = "" if answered else f"keepalived (pid {pid}) wrote no data dump within {DUMP_TIMEOUT:.0f} s of SIGUSR1"
    return lb_generation.compare("keepalived", _paths()["keepalived_config"], file_gen, gen, unanswered=unanswered)


def _wait_loaded(pid, file_gen, wait):
    deadline = time.monotonic() + float(wait)
    while True:
        out = _loaded(pid, file_gen)
        if out["current"] is not False or time.monotonic() >= deadline:
            return out
        time.sleep(0.1)


def _stop(pid):
    unit = _unit()
    if unit:
        _systemctl("stop", unit)  # else systemd restarts it
    else:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if _running_pid() != pid:
            return
        time.sleep(0.1)
    raise CommandExecutionError(f"keepalived (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s")


def _vips_by_device():
    """{device: {address, ...}} of the IPv4 addresses configured now."""
    res = __salt__["cmd.run_all"](["ip", "-o", "-4", "addr", "show"], python_shell=False, ignore_retcode=True, output_loglevel="quiet")
    out = {}
    for line in res.get("stdout", "").splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] == "inet":
            out.setdefault(words[1], set()).add(words[3].split("/")[0])
    return out


def _public_instance(vhid, inst):
    return {
        "device": inst["device"],
        "vip": inst["vip"],
        "priority": inst["priority"],
        "advskew": 254 - inst["priority"],
        "advert_int": inst["advert_int"],
        "preempt": inst["preempt"],
    }


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
    running = _running_pid() is not None
    addrs = _vips_by_device() if instances else {}
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
    file_gen = lb_generation.keepalived_file_generation(carp_common.read_text(_paths()["keepalived_config"]))
    return _wait_loaded(_running_pid(), file_gen, wait)


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
    old and new values.  With ``test=True`` nothing is touched and the same
    changes are returned.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' carp.present
        salt 'lb*' carp.present test=True
    """
    paths = _paths()
    pair, _ = _pair_groups(topology)
    desired_text = _render(pair)
    current_text = carp_common.read_text(paths["keepalived_config"])
    changes = {}

    old_i = carp_common.parse_keepalived(current_text)
    new_i = carp_common.parse_keepalived(desired_text)
    changes.update(
        carp_common.diff({v: _public_instance(v, i) for v, i in old_i.items()}, {v: _public_instance(v, i) for v, i in new_i.items()})
    )
    config_changed = current_text != desired_text
    if config_changed and not changes:
        changes["config"] = {"old": "differs" if current_text is not None else None, "new": paths["keepalived_config"]}

    missing = carp_common.missing_programs(carp_common.programs(pair, _node(), PROVIDER, paths["script_dir"]))
    if missing and not test:
        raise CommandExecutionError(f"not installed: {', '.join(missing)} (salt/carp installs them: state.apply carp)")
    obsolete = carp_common.obsolete_scripts(paths["script_dir"])
    if obsolete:
        changes["obsolete_scripts"] = {"old": obsolete, "new": None}

    intent_path, track_path = _maint_paths()
    want_track = "1\n" if os.path.exists(intent_path) else "0\n"
    if carp_common.read_text(track_path) != want_track:
        changes["maintenance_track"] = {"old": carp_common.read_text(track_path), "new": want_track}

    pid = _running_pid()
    want_gen = lb_generation.keepalived_file_generation(desired_text)
    if pid is None:
        changes["keepalived"] = {"old": "stopped", "new": "running"}
    elif config_changed:
        changes["keepalived"] = {"old": f"running (pid {pid})", "new": "reloaded"}
    elif not _fifo_script_running():
        # keepalived starts it again only when it next writes to the FIFO;
        # a reload starts it now, and it applies the recorded states
        changes["keepalived"] = {"old": f"running (pid {pid}) without {lb_render_linux.KEEPALIVED_VIPS_SCRIPT}", "new": "reloaded"}
    elif _fifo_program_replaced():
        # the copy that runs is an older program (salt/carp replaced the
        # file since it started: an upgrade): a reload starts the new one,
        # which keeps the VIPs held and applies the recorded states
        changes["keepalived"] = {"old": f"running (pid {pid}) an older {lb_render_linux.KEEPALIVED_VIPS_SCRIPT}", "new": "reloaded"}
    else:
        # the file is as wanted: is it the config keepalived runs?
        gen = _loaded(pid, want_gen)
        if gen["current"] is False:
            changes["keepalived"] = {"old": f"running (pid {pid}) an older config: {gen['reason']}", "new": "reloaded"}

    if not changes or test:
        return {"changes": changes, "comment": "would apply" if changes else "keepalived is configured as the topology says"}

    for path in obsolete:
        os.unlink(path)
    os.makedirs(paths["run_dir"], exist_ok=True)
    if "maintenance_track" in changes:
        lb_files.write_atomic(track_path, want_track, 0o644)
    os.makedirs(os.path.join(paths["state_dir"], "state"), exist_ok=True)
    lb_files.write_atomic(os.path.join(paths["state_dir"], "provider"), PROVIDER + "\n", 0o644)  # for the carp_provider grain
    if config_changed:
        _check_config(desired_text)
        lb_files.write_atomic(paths["keepalived_config"], desired_text, 0o640)
    if pid is None:
        pid = _start()
        comment = f"keepalived started (pid {pid})"
    elif "keepalived" in changes:
        _reload(pid)
        comment = f"keepalived reloaded (SIGHUP to pid {pid})"
        for vhid, inst in old_i.items():
            if vhid not in new_i:
                _release(vhid, inst)
            elif (inst["vip"], inst["device"]) != (new_i[vhid]["vip"], new_i[vhid]["device"]):
                _drop_address(inst)
        gen = _wait_loaded(pid, want_gen, RELOAD_TIMEOUT)
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


def absent(vhids=None, test=False):
    """
    Remove CARP groups from this node.  With ``vhids`` (a list), only those
    instances leave keepalived.conf and keepalived reloads; without, every
    group goes: keepalived stops (releasing its VIPs) and its config and
    recorded states are removed.

    CLI Example:

    .. code-block:: bash

        salt 'lb-b' carp.absent vhids='[55]'
        salt 'lb-b' carp.absent test=True
    """
    import re

    paths = _paths()
    text = carp_common.read_text(paths["keepalived_config"])
    instances = carp_common.parse_keepalived(text)
    pid = _running_pid()
    targets = sorted(instances) if vhids is None else sorted(int(v) for v in vhids if int(v) in instances)
    changes = {v: {"old": _public_instance(v, instances[v]), "new": None} for v in targets}
    if vhids is None and pid is not None:
        changes["keepalived"] = {"old": f"running (pid {pid})", "new": "stopped"}
    if not changes or test:
        return {"changes": changes, "comment": "would remove" if changes else "no such CARP group here"}
    if vhids is None:
        if pid is not None:
            _stop(pid)
            # its FIFO script releases every VIP as keepalived goes; make sure
            deadline = time.monotonic() + RELEASE_TIMEOUT
            while time.monotonic() < deadline and not all(_recorded(v) == "STOP" for v in targets):
                time.sleep(0.1)
        for v in targets:
            _release(v, instances[v])
        if text is not None:
            os.unlink(paths["keepalived_config"])
        for v in targets:
            try:
                os.unlink(os.path.join(paths["state_dir"], "state", str(v)))
            except FileNotFoundError:
                pass
        return {"changes": changes, "comment": "keepalived stopped, its CARP groups removed"}
    new_text = text
    for v in targets:
        new_text = re.sub(rf"^vrrp_instance VI_{v} \{{\n.*?^\}}\n\n?", "", new_text, flags=re.S | re.M)
        new_text = re.sub(rf' {v}=[^\s"]+', "", new_text, count=1)  # its VIP, from lb-carp-keepalived-vips' arguments
    if lb_generation.keepalived_file_generation(text) is not None:
        new_text = lb_generation.keepalived_stamp(new_text)  # the marker names the new content
    _check_config(new_text)
    lb_files.write_atomic(paths["keepalived_config"], new_text, 0o640)
    if pid is not None:
        _reload(pid)
    for v in targets:
        _release(v, instances[v])
        try:
            os.unlink(os.path.join(paths["state_dir"], "state", str(v)))
        except FileNotFoundError:
            pass
    comment = f"removed vhid {', '.join(map(str, targets))}"
    if pid is not None:
        gen = _wait_loaded(pid, lb_generation.keepalived_file_generation(new_text), RELOAD_TIMEOUT)
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


def maintenance(test=False, topology=None):  # noqa: ARG001 - same signature for every provider
    """
    Put this node in maintenance: its VIPs move to the peer and stay there,
    across a keepalived restart or a reboot, until ``carp.unmaintenance``.

    The intent is written first (``<state_dir>/maintenance``), then 1 to the
    track file keepalived watches: every priority drops to 1, the peer (with
    preempt) takes over at its next advertisement timeout while this node
    still answers, so no client connection fails.  Entering twice changes
    nothing.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.maintenance
        salt 'lb-a' carp.maintenance test=True
    """
    intent_path, track_path = _maint_paths()
    has_intent = os.path.exists(intent_path)
    demoted = carp_common.read_text(track_path) == "1\n"
    if has_intent and demoted:
        return {"changes": {}, "comment": "already in maintenance"}
    changes = {"maintenance": {"old": False, "new": True}}
    if test:
        return {"changes": changes, "comment": "would enter maintenance"}
    if not has_intent:
        lb_files.write_atomic(intent_path, carp_common.intent(PROVIDER, _node()), 0o644)
    lb_files.write_atomic(track_path, "1\n", 0o644)
    return {"changes": changes, "comment": "in maintenance: priorities lowered to 1, the peer takes the VIPs"}


def unmaintenance(test=False, topology=None):  # noqa: ARG001 - same signature for every provider
    """
    Take this node out of maintenance: priorities return to the topology's,
    and with preempt the node takes back the VIPs it is primary for.  Leaving
    when not in maintenance changes nothing.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' carp.unmaintenance
    """
    intent_path, track_path = _maint_paths()
    has_intent = os.path.exists(intent_path)
    demoted = carp_common.read_text(track_path) == "1\n"
    if not has_intent and not demoted:
        return {"changes": {}, "comment": "not in maintenance"}
    changes = {"maintenance": {"old": True, "new": False}}
    if test:
        return {"changes": changes, "comment": "would leave maintenance"}
    if demoted or os.path.exists(track_path):
        lb_files.write_atomic(track_path, "0\n", 0o644)
    if has_intent:
        os.unlink(intent_path)
    return {"changes": changes, "comment": "out of maintenance: priorities restored"}


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
