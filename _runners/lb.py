"""
The load-balancer pairs seen from the master: one status view of every pair
(``lb.status``), the recorded CARP transitions (``lb.history``), and what the
reactor calls on each transition (``lb.transition``, ``lb.record``): it
records the event and checks the node's pair for a split brain.

The view logic is pure Python in ``_utils/lb_status.py``; this module only
gathers: the topology from the minions' cached pillar (or ``topology=PATH``),
one ``lb_node.report`` per node, and the master's records under
``<cachedir>/lb/``:

- ``history.jsonl``: one JSON line per transition or ``lb/...`` event;
- ``splitbrain.json``: the split brains seen and not yet resolved.

A split brain is two nodes claiming MASTER for one vhid.  During an ordinary
failover both may say MASTER for a moment, so a split brain is declared only
when it is still there ``confirm`` seconds later (default 3, above keepalived's
and CARP's 3 x advertisement interval at the default 1 s).  It fires
``lb/splitbrain/<pair>/<vhid>`` once, stays in ``lb.status`` until both nodes
answer and only one is MASTER, then fires
``lb/splitbrain/<pair>/<vhid>/resolved``.
"""

import fcntl
import json
import logging
import os
import time

import salt.client

import lb_status
import lb_topology

log = logging.getLogger(__name__)

__virtualname__ = "lb"
CONFIRM = 3.0  # seconds a split brain must last before it is declared
QUERY_TIMEOUT = 10


def __virtual__():
    return __virtualname__


# ---------------------------------------------------------------------------
# master-side records


def _dir():
    path = os.path.join(__opts__["cachedir"], "lb")
    os.makedirs(path, exist_ok=True)
    return path


class _Lock:
    """An exclusive lock across the reactor's threads and salt-run processes."""

    def __enter__(self):
        self.fh = open(os.path.join(_dir(), "lock"), "a+")  # noqa: SIM115
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _history_path():
    return os.path.join(_dir(), "history.jsonl")


def _append(rec):
    line = json.dumps(rec, sort_keys=True, default=str) + "\n"
    fd = os.open(_history_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _splitbrains():
    try:
        with open(os.path.join(_dir(), "splitbrain.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _save_splitbrains(data):
    path = os.path.join(_dir(), "splitbrain.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, sort_keys=True, indent=1)
    os.replace(tmp, path)


def _fire(tag, data):
    __salt__["event.send"](tag, data)


def _flat(data):
    """An event's own data: ``salt-call event.send`` (the hooks) nests it
    under ``data`` in the master's ``_minion_event`` load."""
    data = dict(data or {})
    if data.get("cmd") == "_minion_event" and isinstance(data.get("data"), dict):
        inner = dict(data["data"])
        inner.setdefault("id", data.get("id"))
        return inner
    return data


# ---------------------------------------------------------------------------
# gathering


def _topology(topology=None):
    """The topology model: from a file, else the first cached minion pillar
    with an ``lb`` key that validates."""
    if topology:
        return lb_topology.load(lb_topology.load_file(topology))
    pillars = __salt__["cache.pillar"]("*") or {}
    errors = []
    for minion in sorted(pillars):
        raw = (pillars[minion] or {}).get(lb_topology.ROOT)
        if raw is None:
            continue
        try:
            return lb_topology.load(raw)
        except lb_topology.TopologyError as exc:
            errors.append(f"{minion}: {exc}")
    raise ValueError(
        "no valid 'lb' topology in the minions' cached pillar" + (f": {errors[0]}" if errors else " (run saltutil.refresh_pillar)")
    )


def _query(nodes, fun, timeout):
    """{node: return, or a string saying why there is none}."""
    if not nodes:
        return {}
    # from the master's config file, not __opts__: in the reactor's runners
    # __opts__["user"] is "Reactor", whose key does not exist
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        ret = client.cmd(list(nodes), fun, tgt_type="list", timeout=timeout)
    return {n: ret[n] if n in ret else "no answer" for n in nodes}


def _as_reports(raw):
    """lb_node.report returns, or carp.status returns wrapped as reports;
    errors (strings) stay strings."""
    out = {}
    for n, r in raw.items():
        if isinstance(r, dict) and "carp" not in r and all(isinstance(v, dict) for v in r.values()):
            r = {"carp": r}
        out[n] = r if isinstance(r, dict) else (str(r) if r else "no answer")
    return out


# ---------------------------------------------------------------------------
# split brain


def _check_pair(pair, expected, reports=None, confirm=CONFIRM, timeout=QUERY_TIMEOUT):
    """Compare the pair's nodes now, record and fire new split brains (after
    ``confirm`` seconds), clear resolved ones.  Returns the pair's current
    record {vhid: {...}}.  Call under _Lock."""
    nodes = expected["nodes"]
    if reports is None:
        reports = _as_reports(_query(nodes, "carp.status", timeout))
    live = {n: r for n, r in reports.items() if isinstance(r, dict)}
    splits = lb_status.split_brains(live)
    allrec = _splitbrains()
    rec = allrec.get(pair, {})
    new = [v for v in splits if str(v) not in rec]
    if new and confirm:
        time.sleep(confirm)
        reports = _as_reports(_query(nodes, "carp.status", timeout))
        live = {n: r for n, r in reports.items() if isinstance(r, dict)}
        splits = lb_status.split_brains(live)
        new = [v for v in splits if str(v) not in rec]
    now = time.time()
    for vhid in new:
        vip = expected["groups"].get(vhid, {}).get("vip")
        msg = f"split brain: vhid {vhid} ({vip}) is MASTER on {' and '.join(splits[vhid])}"
        rec[str(vhid)] = {"since": now, "nodes": splits[vhid], "vip": vip}
        log.warning("lb: %s (pair %s)", msg, pair)
        _fire(f"lb/splitbrain/{pair}/{vhid}", {"pair": pair, "vhid": vhid, "vip": vip, "nodes": splits[vhid], "message": msg})
    if len(live) == len(nodes):
        for key in [k for k in rec if int(k) not in splits]:
            old = rec.pop(key)
            msg = f"split brain resolved: vhid {key} ({old.get('vip')}) has one MASTER again"
            _fire(
                f"lb/splitbrain/{pair}/{key}/resolved",
                {"pair": pair, "vhid": int(key), "vip": old.get("vip"), "message": msg, "since": old.get("since")},
            )
    if rec:
        allrec[pair] = rec
    else:
        allrec.pop(pair, None)
    _save_splitbrains(allrec)
    return rec


# ---------------------------------------------------------------------------
# public


def status(topology=None, timeout=QUERY_TIMEOUT):
    """
    Every pair: each group's VIP and which node is MASTER, each node's
    maintenance flag, HAProxy's listeners and servers (UP/DOWN/DRAIN/MAINT),
    whether the files on the nodes are what the pillar renders, and
    warnings: split brain, no MASTER, a node unreachable, config drift.

    A table by default; ``--out=json`` (or any ``--out``) gives the data.
    A split brain found here that the reactor has not recorded yet is
    confirmed, recorded and fired like one found on a transition.

    topology
        A YAML topology file instead of the minions' cached pillar.

    CLI Example:

    .. code-block:: bash

        salt-run lb.status
        salt-run lb.status --out=json
    """
    try:
        model = _topology(topology)
    except (ValueError, OSError) as exc:
        return {"error": str(exc)}
    expected = lb_status.expected_pairs(model)
    nodes = sorted({n for p in expected.values() for n in p["nodes"]})
    reports = _as_reports(_query(nodes, "lb_node.report", timeout))
    with _Lock():
        recorded = {}
        for name, exp in expected.items():
            sub = {n: reports.get(n) for n in exp["nodes"]}
            recorded[name] = _check_pair(name, exp, reports=sub, timeout=timeout)
    v = lb_status.view(expected, reports, recorded)
    if __opts__.get("output"):
        return v
    return {"outputter": "txt", "data": lb_status.table(v)}


def history(limit=50, node=None, vhid=None, raw=False):
    """
    The recorded CARP transitions and ``lb/...`` events (split brain,
    demotion, heal), oldest first: a table, or the records with ``--out``.

    limit
        The last N records (default 50; 0 for all).

    CLI Example:

    .. code-block:: bash

        salt-run lb.history
        salt-run lb.history node=lb-a limit=10 --out=json
    """
    recs = []
    try:
        with open(_history_path(), encoding="utf-8") as fh:
            for line in fh:
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    if node:
        recs = [r for r in recs if r.get("node") == node]
    if vhid is not None:
        recs = [r for r in recs if str(r.get("vhid")) == str(vhid)]
    if limit:
        recs = recs[-int(limit) :]
    if raw or __opts__.get("output"):
        return recs
    return {"outputter": "txt", "data": lb_status.history_table(recs)}


def record(tag, data=None):
    """
    Append one event to the master's history (the reactor calls this for
    ``lb/...`` events).

    CLI Example:

    .. code-block:: bash

        salt-run lb.record tag=lb/note data='{"message": "planned switchover"}'
    """
    rec = lb_status.history_record(tag, _flat(data), time.time())
    _append(rec)
    return rec


def transition(tag, data=None, confirm=CONFIRM):
    """
    The reactor's call for every CARP event
    (``salt/beacon/<id>/carp/<vhid>/<STATE>``, ``.../carp/haproxy/DOWN``):
    record it, then check the node's pair for a split brain.

    CLI Example:

    .. code-block:: bash

        salt-run lb.transition tag=salt/beacon/lb-b/carp/4/MASTER data='{"old": "BACKUP"}'
    """
    data = _flat(data)
    rec = record(tag, data)
    parts = tag.split("/")
    if len(parts) < 6 or not parts[4].isdigit():
        return {"recorded": rec}
    node = parts[2]
    try:
        expected = lb_status.expected_pairs(_topology())
    except (ValueError, OSError) as exc:
        return {"recorded": rec, "error": str(exc)}
    for pair, exp in expected.items():
        if node in exp["nodes"]:
            with _Lock():
                active = _check_pair(pair, exp, confirm=float(confirm))
            return {"recorded": rec, "pair": pair, "splitbrain": active}
    return {"recorded": rec, "error": f"{node} is in no pair of the topology"}


def check_splitbrain(confirm=CONFIRM, topology=None):
    """
    Check every pair for a split brain now (what ``lb.transition`` does for
    one pair): new ones are confirmed, recorded and fired, resolved ones
    cleared.  Returns the active split brains per pair.

    CLI Example:

    .. code-block:: bash

        salt-run lb.check_splitbrain
    """
    expected = lb_status.expected_pairs(_topology(topology))
    out = {}
    with _Lock():
        for pair, exp in expected.items():
            out[pair] = _check_pair(pair, exp, confirm=float(confirm))
    return out
