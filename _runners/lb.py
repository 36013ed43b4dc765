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

import lb_events
import lb_fresh
import lb_status
import lb_topology

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

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


def _announce(tag, data):
    """Fire one of the runner's own ``lb/...`` events and record it in the
    history.  The master records what it announces itself: the reactor
    does not record ``lb/...`` events from the bus, where any minion could
    put one (lb_events)."""
    __salt__["event.send"](tag, data)
    _append(lb_status.history_record(tag, data, time.time()))


_DROPPED = {}  # (reason, tag) -> when it was last logged: each logged once a minute


def _drop(tag, data, why):
    """Log an event the master does not act on, once a minute per tag and
    reason, with the id the sender claims (Salt does not authenticate it)."""
    claimed = data.get("id") if isinstance(data, dict) else None
    key = (why, tag if isinstance(tag, str) else repr(tag))
    now = time.monotonic()
    if now - _DROPPED.get(key, -3600.0) >= 60:
        _DROPPED[key] = now
        if len(_DROPPED) > 4096:
            _DROPPED.clear()
        log.warning("lb: dropped event %r (claimed sender %r): %s", key[1][:300], str(claimed)[:100], why)
    return {"dropped": why}


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
    with _local() as client:
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


def _live(reports):
    return {n: r for n, r in reports.items() if isinstance(r, dict)}


def _check_pair(pair, expected, reports=None, confirm=CONFIRM, timeout=QUERY_TIMEOUT):
    """Compare the pair's nodes now, record and fire new split brains (after
    ``confirm`` seconds), clear resolved ones.  Returns the pair's current
    record {vhid: {...}}.  The nodes are asked, and the confirmation waited
    for, without the lock; the lock is held only to read and write the
    records."""
    nodes = expected["nodes"]
    if reports is None:
        reports = _as_reports(_query(nodes, "carp.status", timeout))
    splits = lb_status.split_brains(_live(reports))
    with _Lock():
        known = _splitbrains().get(pair, {})
    if confirm and any(str(v) not in known for v in splits):
        time.sleep(confirm)
        reports = _as_reports(_query(nodes, "carp.status", timeout))
        splits = lb_status.split_brains(_live(reports))
    fire = []
    with _Lock():
        allrec = _splitbrains()
        rec = allrec.get(pair, {})
        now = time.time()
        for vhid in [v for v in splits if str(v) not in rec]:
            vip = expected["groups"].get(vhid, {}).get("vip")
            msg = f"split brain: vhid {vhid} ({vip}) is MASTER on {' and '.join(splits[vhid])}"
            rec[str(vhid)] = {"since": now, "nodes": splits[vhid], "vip": vip}
            log.warning("lb: %s (pair %s)", msg, pair)
            fire.append((f"lb/splitbrain/{pair}/{vhid}", {"pair": pair, "vhid": vhid, "vip": vip, "nodes": splits[vhid], "message": msg}))
        if len(_live(reports)) == len(nodes):
            for key in [k for k in rec if int(k) not in splits]:
                old = rec.pop(key)
                msg = f"split brain resolved: vhid {key} ({old.get('vip')}) has one MASTER again"
                fire.append(
                    (
                        f"lb/splitbrain/{pair}/{key}/resolved",
                        {"pair": pair, "vhid": int(key), "vip": old.get("vip"), "message": msg, "since": old.get("since")},
                    )
                )
        if rec:
            allrec[pair] = rec
        else:
            allrec.pop(pair, None)
        _save_splitbrains(allrec)
    for tag, data in fire:
        _announce(tag, data)
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
    Append one note to the master's history, e.g. an operator's reason for
    a planned switchover.  (The reactor does not call this: the master
    records the ``lb/...`` events it fires itself, and CARP transitions
    only as the nodes confirm them, ``lb.transition``.)

    CLI Example:

    .. code-block:: bash

        salt-run lb.record tag=lb/note data='{"message": "planned switchover"}'
    """
    rec = lb_status.history_record(str(tag), _flat(data), time.time())
    _append(rec)
    return rec


def _last_path():
    return os.path.join(_dir(), "last.json")


def _load_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _save_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, sort_keys=True, indent=1)
    os.replace(tmp, path)


def _vetted(tag, data, kind):
    """(event, expected pairs) for a tag naming a load balancer of the
    topology, of the given kind, else (None, the drop's return)."""
    try:
        expected = lb_status.expected_pairs(_topology())
    except (ValueError, OSError) as exc:
        return None, _drop(tag, data, f"no topology to check it against ({exc})")
    ev, why = lb_events.vet(tag, expected)
    if ev is None:
        return None, _drop(tag, data, why)
    if ev["kind"] != kind:
        return None, _drop(tag, data, f"not a {kind} event")
    return (ev, expected), None


def transition(tag, data=None, confirm=CONFIRM):
    """
    The reactor's call for every CARP transition
    (``salt/beacon/<id>/carp/<vhid>/<STATE>``): ask the node named in the
    tag for its CARP state and record the transition in the history when
    the node confirms it (lb_events.confirm_transition).  A confirmed new
    MASTER gets the haproxy SLS at once (queued behind a state run in
    progress there), so the node that now holds the VIP serves with the
    current config.  Then the node's pair is checked for a split brain.
    An event that names no load balancer of the topology, or that the node
    does not confirm, is dropped and logged: nothing runs on any node for
    it but the status query.

    CLI Example:

    .. code-block:: bash

        salt-run lb.transition tag=salt/beacon/lb-b/carp/4/MASTER
    """
    received = time.time()
    data = _flat(data)
    vetted, dropped = _vetted(tag, data, "transition")
    if vetted is None:
        return dropped
    ev, expected = vetted
    pair, exp = ev["pair"], expected[ev["pair"]]
    reports = _as_reports(_query(exp["nodes"], "carp.status", QUERY_TIMEOUT))
    answer = reports.get(ev["node"])
    answer = answer.get("carp") if isinstance(answer, dict) else None
    key = f"{ev['node']}/{ev['vhid']}"
    with _Lock():
        last = _load_json(_last_path())
        tr = lb_events.confirm_transition(ev, answer, last.get(key))
        if tr is not None:
            last[key] = tr["new"]
            _save_json(_last_path(), last)
            rec = lb_status.history_record(
                f"salt/beacon/{ev['node']}/carp/{tr['vhid']}/{tr['new']}",
                {
                    "old": tr["old"],
                    "vip": tr["vip"] or exp["groups"][ev["vhid"]]["vip"],
                    "timestamp": lb_events.claimed_timestamp(data, received),
                    "source": lb_events.claimed_source(data),
                },
                received,
            )
            _append(rec)
    out = {"pair": pair}
    if tr is None:
        out.update(_drop(tag, data, f"{ev['node']} does not report vhid {ev['vhid']} as a new {ev['state']}"))
    else:
        out["recorded"] = rec
    # the apply follows the node's own answer, not the record: a record can
    # lag the node (an event lost while the master was away), and the node
    # that holds a VIP now must serve with the current config.  One apply
    # per node per APPLY_DEBOUNCE seconds: a failover's events are one
    # apply (it is idempotent, and queued behind a state run there).
    if ev["state"] == "MASTER" and (now := lb_events.group_state(answer, ev["vhid"])) and now["state"] == "MASTER":
        if _debounced(f"apply/{ev['node']}", APPLY_DEBOUNCE):
            out["haproxy_apply"] = _apply_haproxy(ev["node"])
    out["splitbrain"] = _check_pair(pair, exp, reports=reports, confirm=float(confirm))
    return out


APPLY_DEBOUNCE = 10.0  # seconds: one haproxy apply per node for the events of one failover


def _debounced(key, window):
    """True (and noted) when `key` was not let through in the last `window`
    seconds; the times live beside the record files, under the lock."""
    path = os.path.join(os.path.dirname(_last_path()), "debounce.json")
    now = time.time()
    with _Lock():
        seen = _load_json(path)
        if now - float(seen.get(key, 0)) < window:
            return False
        seen[key] = now
        _save_json(path, seen)
    return True


def _local():
    # from the master's config file, not __opts__: in the reactor's runners
    # __opts__["user"] is "Reactor", whose key does not exist
    return salt.client.get_local_client(__opts__["conf_file"])


def _apply_haproxy(node):
    """Dispatch the haproxy SLS to one node, queued behind a state run in
    progress there; the jid."""
    with _local() as client:
        return client.cmd_async([node], "state.apply", ["haproxy"], tgt_type="list", kwarg={"queue": True})


HEAL_TIMEOUT = 90.0  # seconds the heal waits for HAProxy to run again
HEAL_POLL = 2.0


class _NodeLock:
    """A non-blocking per-node lock: one heal per node at a time."""

    def __init__(self, node):
        self.path = os.path.join(_dir(), f"heal-{node}.lock")

    def __enter__(self):
        self.fh = open(self.path, "a+")  # noqa: SIM115
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            return False
        return True

    def __exit__(self, *exc):
        if not self.fh.closed:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()


def _ask_haproxy(node, timeout=QUERY_TIMEOUT):
    """The node's own answer: (haproxy_cfg.status, carp.status), or Nones."""
    with _local() as client:
        ret = client.cmd([node], ["haproxy_cfg.status", "carp.status"], [[], []], tgt_type="list", timeout=timeout)
    ans = ret.get(node) if isinstance(ret, dict) else None
    if not isinstance(ans, dict):
        return None, None
    return ans.get("haproxy_cfg.status"), ans.get("carp.status")


def _job_returned(jid, node):
    try:
        ret = __salt__["jobs.lookup_jid"](jid, display_progress=False)
    except Exception:  # noqa: BLE001 - the job cache is a hint here, the node's answer decides
        return False
    return isinstance(ret, dict) and node in ret


def heal(tag, data=None, timeout=HEAL_TIMEOUT):
    """
    The reactor's call for ``salt/beacon/<id>/carp/haproxy/DOWN``: HAProxy
    is said not to run on a node.

    1. The node is asked (haproxy_cfg.status, carp.status).  Unless it says
       itself that HAProxy is not running, nothing is done: the event is
       dropped and logged.  (A keepalived node has usually given its VIPs
       to its peer by then: its lb_serving check, docs/carp.md.)
    2. Heal in place: the haproxy SLS is applied there, queued behind a
       state run in progress, and HAProxy's status polled until it runs
       (``lb/haproxy/healed/<node>``) or the apply has returned without it,
       or ``timeout`` seconds.
    3. Not healed: the node is asked again.  MASTER of nothing:
       ``lb/haproxy/heal-failed/<node>`` (its peer serves).  Still MASTER
       with HAProxy down (ucarp, FreeBSD: no such check): demoted with
       ``carp.maintenance`` (persistent: its peer takes every VIP until an
       operator runs ``carp.unmaintenance``), ``lb/demoted/<node>``, or
       ``lb/demote-failed/<node>`` when that fails.

    One heal per node at a time; each announcement is recorded in the
    history.

    CLI Example:

    .. code-block:: bash

        salt-run lb.heal tag=salt/beacon/lb-a/carp/haproxy/DOWN
    """
    data = _flat(data)
    vetted, dropped = _vetted(tag, data, "haproxy_down")
    if vetted is None:
        return dropped
    node = vetted[0]["node"]
    with _NodeLock(node) as mine:
        if not mine:
            return {"node": node, "skipped": f"a heal of {node} is already running"}
        hs, carp = _ask_haproxy(node)
        verdict = lb_events.haproxy_verdict(hs, carp)
        if verdict == "down-backup" and not lb_events.masters(carp, "BACKUP"):
            # CARP does not run there (every group INIT): not a standby the
            # reactor repairs, whoever says its HAProxy is down
            verdict = "down, and CARP not running there"
        if verdict not in ("down", "down-backup"):
            return dict(_drop(tag, data, f"{node} does not confirm it: HAProxy {verdict}"), node=node)
        # down-backup: the node already gave its VIPs up (keepalived's
        # lb_serving check, within a second): HAProxy is healed there all the
        # same, so that the node can serve, and preempt, again
        masters = lb_events.masters(carp)
        _append(lb_status.history_record(f"salt/beacon/{node}/carp/haproxy/DOWN", {"masters": masters, "source": "confirmed"}, time.time()))
        jid = _apply_haproxy(node)
        deadline = time.monotonic() + float(timeout)
        returned = False
        while time.monotonic() < deadline:
            time.sleep(HEAL_POLL)
            hs, carp = _ask_haproxy(node)
            if lb_events.haproxy_verdict(hs, carp) == "running":
                break
            if returned:  # the apply returned a poll ago and HAProxy still does not run
                break
            returned = _job_returned(jid, node)
        hs, carp = _ask_haproxy(node)
        verdict = lb_events.haproxy_verdict(hs, carp)
        if verdict == "running":
            where = f"MASTER of vhid {', '.join(map(str, masters))}" if masters else "its peer served its VIPs meanwhile"
            msg = f"HAProxy was down on {node} ({where}); the haproxy SLS started it again"
            _announce(f"lb/haproxy/healed/{node}", {"node": node, "message": msg})
            return {"node": node, "healed": True, "jid": jid}
        if verdict == "down-backup":
            msg = f"HAProxy could not be started on {node}; it is MASTER of nothing (its peer serves the VIPs). Fix HAProxy there"
            _announce(f"lb/haproxy/heal-failed/{node}", {"node": node, "message": msg})
            return {"node": node, "healed": False, "demoted": False, "jid": jid}
        if verdict != "down":
            msg = (
                f"HAProxy on {node} did not come back, but {node} does not confirm it is MASTER with HAProxy down ({verdict}): not demoted"
            )
            log.warning("lb: %s", msg)
            return {"node": node, "healed": False, "demoted": False, "comment": msg}
        with _local() as client:
            ret = client.cmd([node], "carp.maintenance", tgt_type="list", timeout=QUERY_TIMEOUT, full_return=True)
        ans = ret.get(node) if isinstance(ret, dict) else None
        ok = isinstance(ans, dict) and ans.get("retcode", 1) == 0 and isinstance(ans.get("ret"), dict)
        if ok:
            msg = (
                f"HAProxy could not be started on {node}; the node is in CARP maintenance and its peer takes the VIPs. "
                f"Fix HAProxy, then salt {node} carp.unmaintenance"
            )
            _announce(f"lb/demoted/{node}", {"node": node, "message": msg})
        else:
            msg = f"HAProxy could not be started on {node} and carp.maintenance failed there too"
            _announce(f"lb/demote-failed/{node}", {"node": node, "message": msg})
        return {"node": node, "healed": False, "demoted": ok, "jid": jid}


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
    return {pair: _check_pair(pair, exp, confirm=float(confirm)) for pair, exp in expected.items()}
