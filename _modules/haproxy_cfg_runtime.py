"""
HAProxy's runtime API, one of the three files of the ``haproxy_cfg``
execution module (virtual name ``haproxy_cfg``; ``haproxy_cfg.py`` has the
module's overview and its settings): one command on the stats socket or
the master CLI, the servers' states, and drain / maint / ready / weight of
one server, each checked by reading it back.
"""

import logging
import re

from salt.exceptions import CommandExecutionError

import haproxy_io
import lb_fresh
import lb_grammar
import lb_ops

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "haproxy_cfg"

NAME_RE = lb_grammar.HAPROXY_RUNTIME_NAME
ADMIN_FLAGS = {
    0x01: "maint",  # forced (CLI or stats page)
    0x02: "maint-inherited",
    0x04: "maint-config",  # `disabled` in the configuration
    0x08: "drain",  # forced
    0x10: "drain-inherited",
    0x20: "maint-resolution",
    0x40: "maint-hostname",
}
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}
# `show servers state` gives a server's last check as a number (HAProxy's
# enum healthcheck_status, include/haproxy/check-t.h in 2.6); these are the
# words the stats page and `show stat` use for it
CHECK_STATUSES = {
    0: "UNK",
    1: "INI",
    2: "START",
    3: "CHECKED",
    4: "HANA",
    5: "SOCKERR",
    6: "L4OK",
    7: "L4TOUT",
    8: "L4CON",
    9: "L6OK",
    10: "L6TOUT",
    11: "L6RSP",
    12: "L7TOUT",
    13: "L7RSP",
    14: "L57DATA",
    15: "L7OK",
    16: "L7OKC",
    17: "L7STS",
    18: "PROCERR",
    19: "PROCTOUT",
    20: "PROCOK",
}


def __virtual__():
    return __virtualname__


def _settings():
    return __salt__["haproxy_cfg.settings"]()


def command(cmd, socket_path=None):
    """
    Send one command to the runtime API (the stats socket) and return the
    answer, e.g. ``show info``, ``show stat``, ``show servers state``.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.command "show info"
    """
    return haproxy_io.ask(socket_path or _settings()["socket"], cmd)


def master_command(cmd):
    """
    Send one command to the master CLI (``show proc``, ``reload``).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.master_command "show proc"
    """
    s = _settings()
    if not s.get("master_socket"):
        raise CommandExecutionError("no master socket configured (lb_settings:haproxy:master_socket)")
    return haproxy_io.ask(s["master_socket"], cmd)


def _name(value, what):
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise CommandExecutionError(f"{value!r} is not a valid {what} name")
    return value


def _check_status(raw):
    """The stats page's word for a `show servers state` check status
    number (``6`` is ``L4OK``); what is not a known number stays as it is."""
    return CHECK_STATUSES.get(int(raw), raw) if isinstance(raw, str) and raw.isdigit() else raw


def server_state(backend=None, server=None):
    """
    ``show servers state`` parsed: one dict per server with its backend,
    name, address, operational state, admin flags (maint, drain, ...),
    weights and the last check's status as the stats page words it
    (``L4OK``, ``L7STS``, ``L4CON`` ...).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.server_state
        salt-call haproxy_cfg.server_state backend=haproxy_10.2.2.5_80
    """
    cmd = "show servers state" + (f" {_name(backend, 'backend')}" if backend else "")
    text = command(cmd)
    lines = text.splitlines()
    if not lines or lines[0].strip() != "1":
        raise CommandExecutionError(text.strip() or "empty answer to show servers state")
    header = None
    out = []
    for line in lines[1:]:
        if line.startswith("# "):
            header = line[2:].split()
            continue
        if not line.strip() or header is None:
            continue
        row = dict(zip(header, line.split(), strict=False))
        admin = int(row.get("srv_admin_state", 0))
        entry = {
            "backend": row.get("be_name"),
            "server": row.get("srv_name"),
            "address": row.get("srv_addr"),
            "port": int(row["srv_port"]) if row.get("srv_port", "").isdigit() else None,
            "operational": OP_STATES.get(int(row.get("srv_op_state", -1)), row.get("srv_op_state")),
            "admin": [flag for bit, flag in ADMIN_FLAGS.items() if admin & bit],
            "weight": int(row.get("srv_uweight", 0)),
            "initial_weight": int(row.get("srv_iweight", 0)),
            "check_status": _check_status(row.get("srv_check_status")),
        }
        if server is None or entry["server"] == server:
            out.append(entry)
    return out


def list_servers(backend=None):
    """
    Every server with what a status table needs: ``show servers state``
    joined with ``show stat`` (status as the stats page shows it, e.g. UP,
    DOWN, MAINT, DRAIN; effective weight; current sessions; ``backup``:
    a backup server, which takes traffic only when no active one is UP).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.list_servers
    """
    states = server_state(backend)
    stat_text = command("show stat")
    rows = stat_text.splitlines()
    stats = {}
    if rows and rows[0].startswith("# "):
        header = rows[0][2:].split(",")
        for line in rows[1:]:
            if not line.strip():
                continue
            row = dict(zip(header, line.split(","), strict=False))
            stats[(row.get("pxname"), row.get("svname"))] = row
    for entry in states:
        row = stats.get((entry["backend"], entry["server"]), {})
        entry["status"] = row.get("status")
        entry["sessions"] = int(row["scur"]) if row.get("scur", "").isdigit() else None
        entry["effective_weight"] = int(row["weight"]) if row.get("weight", "").isdigit() else None
        entry["backup"] = row.get("bck") == "1"
    return states


def _one(backend, server):
    found = server_state(backend, server)
    if not found:
        raise CommandExecutionError(f"no server {server} in backend {backend}")
    return found[0]


def _set_state(backend, server, state):
    backend, server = _name(backend, "backend"), _name(server, "server")
    answer = command(f"set server {backend}/{server} state {state}").strip()
    if answer:
        raise CommandExecutionError(f"HAProxy refused to set {backend}/{server} to {state}: {answer}")
    entry = _one(backend, server)
    if not lb_ops.admin_reached(state, entry["admin"]):
        raise CommandExecutionError(f"{backend}/{server} is not in state {state} after the command: admin flags {sorted(entry['admin'])}")
    return entry


def drain(backend, server):
    """
    Drain a server: no new connections (except persistent ones), current
    ones finish.  The pillar is untouched; the state survives a reload.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.drain haproxy_10.2.2.4_3306 percona_mysql-1
    """
    return _set_state(backend, server, "drain")


def maint(backend, server):
    """
    Put a server into maintenance: no traffic, checks stopped.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.maint haproxy_10.2.2.5_80 http_srv-1
    """
    return _set_state(backend, server, "maint")


def ready(backend, server):
    """
    Take a server out of drain or maintenance.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.ready haproxy_10.2.2.5_80 http_srv-1
    """
    return _set_state(backend, server, "ready")


def set_weight(backend, server, weight):
    """
    Set a server's weight (0-256, or a percentage of its configured weight
    like ``50%``) and read it back: returns the weight HAProxy now uses.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.set_weight haproxy_10.2.2.5_80 http_srv-2 10
    """
    backend, server = _name(backend, "backend"), _name(server, "server")
    w = str(weight).strip()
    if not re.fullmatch(r"\d{1,3}%?", w) or (not w.endswith("%") and int(w) > 256):
        raise CommandExecutionError(f"{weight!r} is not a weight (0-256, or a percentage like 50%)")
    answer = command(f"set server {backend}/{server} weight {w}").strip()
    if answer:
        raise CommandExecutionError(f"HAProxy refused the weight of {backend}/{server}: {answer}")
    got = command(f"get weight {backend}/{server}").strip()
    m = re.match(r"^(\d+) \(initial (\d+)\)$", got)
    if not m:
        raise CommandExecutionError(f"cannot read the weight of {backend}/{server} back: {got}")
    current, initial = int(m.group(1)), int(m.group(2))
    expected = int(w) if not w.endswith("%") else initial * int(w[:-1]) // 100
    if current != expected:
        raise CommandExecutionError(f"{backend}/{server} has weight {current} after setting {w} (expected {expected})")
    return {"backend": backend, "server": server, "weight": current, "initial_weight": initial}
