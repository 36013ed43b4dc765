"""
What the master needs from a load-balancer node for its status view and its
event path: one report (CARP states, maintenance flag, HAProxy's listeners
and servers, whether the files on disk are what the pillar renders), and the
event hook that announces a CARP transition at once (``lb-carp-event``, with
FreeBSD's devd rule).

The rendering is in ``_utils/carp_events.py`` and ``_utils/lb_render.py``;
the CARP and HAProxy I/O is ``carp.*`` and ``haproxy_cfg.*``.
"""

import fcntl
import hashlib
import logging
import os
import shutil
import sys
import time

from salt.exceptions import CommandExecutionError

import carp_common
import carp_events
import haproxy_config
import lb_events
import lb_fresh
import lb_parameters
import lb_render_linux

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "lb_node"
DEVD_RULE = "/usr/local/etc/devd/lb-carp.conf"
APPLY_DEBOUNCE = 10.0  # seconds: one haproxy apply for the MASTER events of one failover
QUEUE_MAX = 100  # state runs on_master's apply waits behind before it gives up


def __virtual__():
    return __virtualname__


def _override():
    return carp_common.checked_override(__opts__, __grains__, __pillar__)


def _family():
    return "FreeBSD" if __grains__.get("kernel") == "FreeBSD" else "Linux"


def paths():
    """
    Where this node's CARP event path lives: the hook (``lb-carp-event``)
    and its settings beside it (``lb-carp-event.conf``), the claims
    directory the hook and the beacon share, and on FreeBSD the
    devd rule.  Follows the ``lb_settings:carp`` settings of the carp module.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' lb_node.paths
    """
    s = carp_common.settings(_family(), _override())
    script_dir = s["script_dir"]
    out = {
        "state_dir": s["state_dir"],
        "events_dir": os.path.join(s["state_dir"], "events"),
        "hook": os.path.join(script_dir, lb_render_linux.EVENT_HOOK),
        "hook_conf": os.path.join(script_dir, lb_render_linux.EVENT_HOOK) + ".conf",
    }
    if _family() == "FreeBSD":
        out["devd_rule"] = DEVD_RULE
    return out


def _salt_call():
    here = os.path.join(os.path.dirname(sys.executable), "salt-call")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("salt-call") or ("/usr/local/bin/salt-call" if _family() == "FreeBSD" else "/usr/bin/salt-call")


def _groups():
    """{vhid: (device, vip)} of this node's groups from the topology."""
    try:
        _, groups = carp_common.node_groups(__salt__["lb.model"](), __opts__["id"], "FreeBSD" if _family() == "FreeBSD" else "Debian")
    except (CommandExecutionError, KeyError) as exc:
        raise CommandExecutionError(f"lb_node: no CARP groups for {__opts__['id']}: {exc}") from exc
    return {g["vhid"]: (g["device"], f"{g['address']}/{g['prefixlen']}") for g in groups}


def event_hook(beacon_interval=1):
    """
    The files of the immediate event path for this node: ``{path: {"mode",
    "content" or "source"}}``: the hook (salt/carp/files/lb-carp-event.sh,
    ``source``), its settings (``salt-call -c <this minion's config dir>
    event.send``, the node's groups) and, on FreeBSD, the devd rule.

    beacon_interval
        The carp beacon's interval: the hook leaves a transition that long
        (+ 0.5 s, at most 3 s) to the beacon before it sends it itself.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' lb_node.event_hook
    """
    p = paths()
    provider = __salt__["carp.provider"]() if "carp.provider" in __salt__ else "unknown"
    config_dir = os.path.dirname(__opts__.get("conf_file") or "/etc/salt/minion")
    try:
        conf = carp_events.hook_config(
            __opts__["id"],
            _salt_call(),
            config_dir,
            p["events_dir"],
            provider,
            _groups(),
            __opts__.get("pidfile") or "",
            # FreeBSD's announcements follow the transitions; Linux's follow the
            # addresses (BIRD's direct protocol, lb_routing), with no hook
            grace=carp_events.hook_grace(float(beacon_interval)),
            routing_hook=lb_parameters.of("FreeBSD", "routing")["hook"] if _family() == "FreeBSD" else "",
        )
    except ValueError as exc:
        # a path or name sh would split or expand: refused, never written
        raise CommandExecutionError(f"lb_node.event_hook: {exc}") from exc
    out = {
        p["hook"]: {"source": lb_render_linux.event_hook_source(), "mode": "0755"},
        p["hook_conf"]: {"content": conf, "mode": "0644"},
    }
    if "devd_rule" in p:
        out[p["devd_rule"]] = {"content": carp_events.devd_rule(p["hook"]), "mode": "0644"}
    return out


def _sha(text):
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def drift():
    """
    Whether the files on this node are what the pillar renders, by checksum:
    ``{path: {"match", "expected", "actual"}}`` (sha256; no content leaves
    the node).  HAProxy's config is compared section by section as
    ``haproxy_section.managed`` writes it (sections the pillar does not own
    are kept), and matches only if the running HAProxy has loaded it
    (``haproxy_cfg.loaded``: ``file_match``, ``loaded`` and ``reason`` say
    which part differs); keepalived.conf whole.  ucarp has no config file (its command
    lines are checked by ``carp.present test=True``).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' lb_node.drift
    """
    out = {}
    try:
        settings = __salt__["haproxy_cfg.settings"]()
        files = __salt__["haproxy_cfg.render"](secrets=True)
        config = files.pop(settings["config"])
        live = __salt__["haproxy_cfg.read"](settings["config"])
        merged = haproxy_config.merge(
            haproxy_config.parse(haproxy_config.unstamp(live or "")), haproxy_config.parse(config["content"]), "keep"
        )
        want = haproxy_config.stamp(merged.text)
        # the file as wanted is not enough: the running HAProxy must have
        # loaded it (a reload that failed after the swap leaves the old one)
        gen = __salt__["haproxy_cfg.loaded"](settings["config"])
        file_match = live is not None and want == live
        out[settings["config"]] = {
            "match": file_match and gen["current"] is not False,
            "file_match": file_match,
            "loaded": gen["current"],
            "expected": _sha(want),
            "actual": _sha(live),
        }
        if gen["current"] is False:
            out[settings["config"]]["reason"] = gen["reason"]
        for path, f in files.items():
            actual = carp_common.read_text(path)
            out[path] = {"match": actual == f["content"], "expected": _sha(f["content"]), "actual": _sha(actual)}
    except (CommandExecutionError, haproxy_config.ConfigError, KeyError) as exc:
        out["haproxy"] = {"match": False, "error": str(exc)}
    provider = __salt__["carp.provider"]() if "carp.provider" in __salt__ else None
    if provider == "keepalived":
        s = carp_common.settings("Linux", _override())
        try:
            pair = __salt__["lb.node"]()["pair"]
            pidfile = __salt__["haproxy_cfg.settings"]()["pidfile"] if "haproxy_cfg.settings" in __salt__ else None
            want = lb_render_linux.render_keepalived(
                pair,
                __opts__["id"],
                state_dir=s["state_dir"],
                script_dir=s["script_dir"],
                run_dir=s["run_dir"],
                **({"haproxy_pidfile": pidfile} if pidfile else {}),
            )
            live = carp_common.read_text(s["keepalived_config"])
            out[s["keepalived_config"]] = {"match": live == want, "expected": _sha(want), "actual": _sha(live)}
        except (ValueError, KeyError, OSError) as exc:
            out["keepalived"] = {"match": False, "error": str(exc)}
    return out


def _listeners(stat_text):
    rows = stat_text.splitlines()
    if not rows or not rows[0].startswith("# "):
        return []
    header = rows[0][2:].split(",")
    out = []
    for line in rows[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("svname") == "FRONTEND":
            out.append(
                {
                    "name": row.get("pxname"),
                    "status": row.get("status"),
                    "sessions": int(row["scur"]) if row.get("scur", "").isdigit() else None,
                }
            )
    return out


def report():
    """
    Everything ``salt-run lb.status`` shows for this node, in one call:
    ``carp`` (``carp.status``), ``maintenance``, ``provider``, ``haproxy``
    (running, master pid), ``listeners`` (frontends and their status),
    ``servers`` (``haproxy_cfg.list_servers``), ``drift`` (``lb_node.drift``)
    and ``errors`` (what could not be read).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' lb_node.report --out=json
    """
    out = {
        "node": __opts__["id"],
        "errors": [],
        "carp": {},
        "maintenance": None,
        "provider": None,
        "haproxy": {},
        "listeners": [],
        "servers": [],
    }
    for key, fun in (("carp", "carp.status"), ("maintenance", "carp.in_maintenance"), ("provider", "carp.provider")):
        try:
            out[key] = __salt__[fun]()
        except Exception as exc:  # noqa: BLE001 - reported, the rest still shown
            out["errors"].append(f"{fun}: {exc}")
    try:
        st = __salt__["haproxy_cfg.status"]()
        out["haproxy"] = {"running": st["running"], "master": st.get("master"), "workers": st.get("workers", [])}
        if st["running"]:
            out["listeners"] = _listeners(__salt__["haproxy_cfg.command"]("show stat"))
            out["servers"] = __salt__["haproxy_cfg.list_servers"]()
    except Exception as exc:  # noqa: BLE001
        out["errors"].append(f"haproxy: {exc}")
    out["drift"] = drift()
    return out


def on_master(vhid, nested=False):
    """
    What the master's reactor publishes, at once, to the node a
    ``salt/beacon/<id>/carp/<vhid>/MASTER`` event names: if this node is
    MASTER of ``vhid`` now (its own ``carp.status``, not the event's word),
    apply the haproxy SLS here (after a state run in progress: this job
    waits for it), so the node that holds the VIP serves with the current
    config.  One apply per ``APPLY_DEBOUNCE`` (10) seconds: a failover's
    MASTER events, one per group, are one apply.  Anything else (another
    state, no such group, not a load balancer) does nothing, whoever sent
    the event.

    nested
        Called from a state run (``lb_failover.master_serves``, what the
        reactor runs): that run is already queued behind the others, so the
        apply runs inside it (``concurrent``).  Called alone, it waits for a
        state run in progress first.

    Returns ``applied`` (bool), ``comment``, and the state run's return as
    ``state`` when it applied; the job fails when the state run did.

    CLI Example:

    .. code-block:: bash

        salt lb-b lb_node.on_master 4
    """
    try:
        vhid = int(vhid)
    except (TypeError, ValueError):
        raise CommandExecutionError(f"lb_node.on_master: vhid {vhid!r} is not a number") from None
    if not 1 <= vhid <= 255:
        raise CommandExecutionError(f"lb_node.on_master: vhid {vhid} is not 1-255")
    if "carp.status" not in __salt__:
        return {"applied": False, "comment": "no CARP here (not a load balancer)"}
    got = lb_events.group_state(__salt__["carp.status"](), vhid)
    if got is None or got["state"] != "MASTER":
        state = got["state"] if got else "not a group"
        return {"applied": False, "comment": f"vhid {vhid} is {state} here, not MASTER: nothing to apply"}
    stamp = os.path.join(__opts__["cachedir"], "lb_node", "on_master.stamp")
    os.makedirs(os.path.dirname(stamp), exist_ok=True)
    with open(stamp, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        age = time.time() - os.fstat(fh.fileno()).st_mtime
        if fh.tell() > 0 and 0 <= age < APPLY_DEBOUNCE:
            return {"applied": False, "comment": f"MASTER of vhid {vhid}; the haproxy SLS was applied {age:.1f} s ago"}
        fh.write("x" if fh.tell() == 0 else "")
        fh.flush()
        os.utime(fh.fileno())
    if nested:
        ret = __salt__["state.apply"]("haproxy", concurrent=True)
    else:
        # queue=<int>: wait here for a state run in progress, then apply.
        # (queue=True would save this call for later as the job's own
        # function, which a nested call does not have.)
        ret = __salt__["state.apply"]("haproxy", queue=QUEUE_MAX)
    failed = not isinstance(ret, dict) or any(isinstance(r, dict) and r.get("result") is False for r in ret.values())
    if failed:
        __context__["retcode"] = 2
    return {"applied": True, "comment": f"MASTER of vhid {vhid}: the haproxy SLS applied", "state": ret}
