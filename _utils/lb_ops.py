"""An operator's daily commands by the names the pillar gives, as plain
functions of data: which HAProxy sections and nodes a pool's server lives
in, what a node's answer to a server command means, and the history record
that says who did what and why.  The ``lb`` runner (``lb.drain``,
``lb.maint``, ``lb.ready``, ``lb.maintenance``, ``lb.unmaintenance``) does
the round trips; no Salt here.
"""

from __future__ import annotations

import getpass
import os
import re

SERVER_ACTIONS = ("drain", "maint", "ready")
NODE_ACTIONS = ("maintenance", "unmaintenance")
PAST = {
    "drain": "drained",
    "maint": "put in maintenance",
    "ready": "made ready",
    "maintenance": "entered maintenance",
    "unmaintenance": "left maintenance",
}
# a reason is one line of printable text: it goes into the history, which
# lb.history prints to a terminal
REASON_RE = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")


def server_targets(model: dict, pool, server) -> dict:
    """{"pair", "pool", "server", "nodes", "backends"} for a pool's server:
    the HAProxy sections of the listeners using that pool, on both nodes of
    its pair.  ValueError naming what the topology does not have."""
    if not isinstance(pool, str) or not isinstance(server, str):
        raise ValueError("pool and server are the pillar's names (strings)")
    pools = {}
    for name, pair in model["pairs"].items():
        for p in pair["haproxy"]["pools"]:
            pools.setdefault(p, []).append(name)
    if pool not in pools:
        raise ValueError(f"no pool {pool!r} in the topology (pools: {', '.join(sorted(pools)) or 'none'})")
    if len(pools[pool]) > 1:
        raise ValueError(f"pool {pool!r} is in pairs {', '.join(sorted(pools[pool]))}: name the pair (pair=...)")
    return _targets(model, pools[pool][0], pool, server)


def _targets(model, pair_name, pool, server):
    pair = model["pairs"][pair_name]
    servers = pair["haproxy"]["pools"][pool]["servers"]
    if server not in servers:
        raise ValueError(f"pool {pool!r} has no server {server!r} (servers: {', '.join(servers)})")
    backends = sorted(lst["name"] for lst in pair["haproxy"]["listeners"].values() if lst["pool"] == pool)
    if not backends:
        raise ValueError(f"pool {pool!r} is used by no listener: HAProxy has no section with its servers")
    return {"pair": pair_name, "pool": pool, "server": server, "nodes": sorted(pair["nodes"]), "backends": backends}


def pair_targets(model: dict, pair, pool, server) -> dict:
    """server_targets within one named pair."""
    if pair not in model["pairs"]:
        raise ValueError(f"no pair {pair!r} in the topology (pairs: {', '.join(sorted(model['pairs']))})")
    if pool not in model["pairs"][pair]["haproxy"]["pools"]:
        raise ValueError(f"pair {pair!r} has no pool {pool!r}")
    return _targets(model, pair, pool, server)


def node_pair(model: dict, node) -> str:
    """The pair a load balancer belongs to; ValueError if none."""
    for name, pair in model["pairs"].items():
        if node in pair["nodes"]:
            return name
    nodes = sorted(n for p in model["pairs"].values() for n in p["nodes"])
    raise ValueError(f"{node!r} is no load balancer of the topology (nodes: {', '.join(nodes)})")


def admin_reached(action: str, flags) -> bool:
    """Whether HAProxy's admin flags for a server show what ``action``
    (drain, maint, ready) asks: the one rule, for haproxy_cfg's own check
    after the command and for reading a node's answer here."""
    flags = set(flags)
    return {"drain": "drain" in flags and "maint" not in flags, "maint": "maint" in flags, "ready": not flags & {"maint", "drain"}}[action]


def server_result(action: str, answer) -> dict:
    """What one node's answer to ``haproxy_cfg.<action>`` says: {"ok",
    "admin"} from the server's state, or {"ok": False, "error"}: the
    minion's error text, or why there is none ("no answer")."""
    if isinstance(answer, dict) and isinstance(answer.get("admin"), list):
        return {"ok": admin_reached(action, answer["admin"]), "admin": sorted(set(answer["admin"]))}
    return {"ok": False, "error": str(answer)[:500]}


def node_result(answer) -> dict:
    """What a node's answer to ``carp.maintenance``/``unmaintenance`` says."""
    if isinstance(answer, dict) and "changes" in answer:
        return {"ok": True, "changed": bool(answer["changes"]), "comment": str(answer.get("comment") or "")[:500]}
    return {"ok": False, "error": str(answer)[:500]}


def reason_of(reason) -> str | None:
    """The operator's reason, checked: one printable line, or ValueError."""
    if reason is None:
        return None
    text = str(reason)
    if not REASON_RE.fullmatch(text):
        raise ValueError("reason: one line of printable text, at most 200 characters")
    return text


def who(environ=None) -> str:
    """Who runs the command: sudo's user when run through sudo, else the
    process's; "unknown" if neither is a plain user name."""
    environ = os.environ if environ is None else environ
    for name in (environ.get("SUDO_USER"), _login()):
        if isinstance(name, str) and USER_RE.fullmatch(name):
            return name
    return "unknown"


def _login():
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def record(action: str, node: str, target: str, result: dict, user: str, reason: str | None, now: float) -> dict:
    """One history line (the shape lb_status.history_record gives): who did
    what to which node and why, and whether the node did it."""
    outcome = "done" if result.get("ok") else f"FAILED: {result.get('error') or result}"
    message = f"{user} {PAST[action]} {target}" + (f" ({reason})" if reason else "") + f": {outcome}"
    return {
        "tag": f"lb/operator/{action}",
        "received": round(now, 3),
        "timestamp": round(now, 3),
        "source": "operator",
        "node": node,
        "vhid": None,
        "what": message,
        "user": user,
        "reason": reason,
        "ok": bool(result.get("ok")),
    }
