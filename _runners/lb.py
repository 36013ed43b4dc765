"""
The load-balancer pairs seen from the master: one status view of every pair
(``lb.status``), the recorded CARP transitions (``lb.history``), a check of
every pair for a split brain (``lb.check_splitbrain``), and the heal the
reactor calls when HAProxy is down on a node (``lb.heal``).

Who does what on a CARP event (docs/operations.md, "Failover"):

- the reactor (``salt/reactor/carp.sls``) dispatches what acts, at once: a
  MASTER event publishes ``state.single lb_failover.master_serves`` to the
  node the tag names, which applies the haproxy SLS if that node is MASTER
  of the group; a
  HAProxy DOWN event runs :func:`heal` here;
- the ``lb_recorder`` engine (``_engines/lb_recorder.py``) does the
  bookkeeping beside it, in batches: it records the transitions the nodes
  confirm and looks for split brains.

The logic is pure Python in ``_utils/`` (``lb_status``: the view;
``lb_bookkeeping``: confirming, recording, split brains; ``lb_records``: the
files); this module only gathers: the pairs, each from its own nodes'
pillar as the master has it (or ``topology=PATH``), one ``lb_node.report`` per node in one round
trip, and the master's records under ``<cachedir>/lb/``.

A split brain is two nodes claiming MASTER for one vhid.  During an ordinary
failover both may say MASTER for a moment, so a split brain is declared only
when it is still there ``confirm`` seconds later (default 3, above keepalived's
and CARP's 3 x advertisement interval at the default 1 s).  It fires
``lb/splitbrain/<pair>/<vhid>`` once, stays in ``lb.status`` until both nodes
answer and only one is MASTER, then fires
``lb/splitbrain/<pair>/<vhid>/resolved``.
"""

import fcntl
import logging
import time

import salt.client
import salt.key

import lb_bookkeeping
import lb_events
import lb_fresh
import lb_ops
import lb_query
import lb_records
import lb_status

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "lb"
CONFIRM = lb_bookkeeping.CONFIRM
QUERY_TIMEOUT = 10
NODE_ACTION_TIMEOUT = 90  # carp.maintenance waits for the peer to take the VIPs


def __virtual__():
    return __virtualname__


def _records():
    return lb_records.Records(__opts__["cachedir"])


def _announce(tag, data):
    """Fire one of the runner's own ``lb/...`` events and record it in the
    history.  The master records what it announces itself: nothing records
    ``lb/...`` events from the bus, where any minion could put one
    (lb_events)."""
    __salt__["event.send"](tag, data)
    _records().append(lb_status.history_record(tag, data, time.time()))


_drop = lb_bookkeeping.Drops(log)


# ---------------------------------------------------------------------------
# gathering


def _topology(topology=None, problems=None):
    """The pairs' model: from a file, else each pair from its own nodes'
    pillar (``lb_bookkeeping.site_model``).  What the pillars disagree on
    goes into ``problems`` when given (``lb.status`` shows it), else to the
    log."""
    if topology:
        return lb_bookkeeping.model_from_file(topology)
    # the master's minion data cache, as the engine and the reactor read it
    model, found = lb_bookkeeping.site_model(__salt__["cache.pillar"]("*") or {})
    if problems is None:
        for problem in found:
            log.warning("lb: %s", problem)
    else:
        problems.extend(found)
    return model


def _query(nodes, fun, timeout=QUERY_TIMEOUT, arg=()):
    """{node: return, or a string saying why there is none}, in one round
    trip for all nodes, within ``timeout`` seconds: a node that does not
    answer in that time is
    "no answer", a node the master has no key of is "unknown minion"."""
    with _local() as client:
        return lb_query.ask(client, nodes, fun, timeout, lambda: salt.key.get_key(__opts__).list_keys().get("minions", []), arg=arg)


def _recorder(confirm=CONFIRM, timeout=QUERY_TIMEOUT):
    # the recorder records what it announces: it is handed the bare send
    return lb_bookkeeping.Recorder(
        _records(), lambda nodes, fun: _query(nodes, fun, timeout), __salt__["event.send"], confirm=float(confirm), drops=_drop
    )


# ---------------------------------------------------------------------------
# public


def status(topology=None, timeout=QUERY_TIMEOUT):
    """
    Every pair: each group's VIP and which node is MASTER, each node's
    maintenance flag, HAProxy's listeners and servers (UP/DOWN/DRAIN/MAINT),
    whether the files on the nodes are what the pillar renders, and
    warnings: split brain, no MASTER, a node unreachable, config drift,
    minions' pillars that disagree on a pair.

    A table by default; ``--out=json`` (or any ``--out``) gives the data.
    A split brain found here that the reactor has not recorded yet is
    confirmed, recorded and fired like one found on a transition.

    topology
        A YAML topology file instead of the nodes' pillars.

    CLI Example:

    .. code-block:: bash

        salt-run lb.status
        salt-run lb.status --out=json
    """
    problems = []
    try:
        model = _topology(topology, problems)
    except (ValueError, OSError) as exc:
        return {"error": str(exc)}
    expected = lb_status.expected_pairs(model)
    nodes = sorted({n for p in expected.values() for n in p["nodes"]})
    reports = lb_bookkeeping.as_reports(_query(nodes, "lb_node.report", timeout))
    recorded = _recorder(timeout=timeout).check(expected, reports)
    v = lb_status.view(expected, reports, recorded, pillar=problems)
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
    recs = _records().history()
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
    a planned switchover.  (Nothing on the event path calls this: the
    master records the ``lb/...`` events it fires itself, and CARP
    transitions only as the nodes confirm them, the ``lb_recorder``
    engine.)

    CLI Example:

    .. code-block:: bash

        salt-run lb.record tag=lb/note data='{"message": "planned switchover"}'
    """
    rec = lb_status.history_record(str(tag), lb_events.flat(data), time.time())
    _records().append(rec)
    return rec


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
        self.path = _records().path(f"heal-{node}.lock")

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
    data = lb_events.flat(data)
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
        _records().append(
            lb_status.history_record(f"salt/beacon/{node}/carp/haproxy/DOWN", {"masters": masters, "source": "confirmed"}, time.time())
        )
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


def check_splitbrain(confirm=CONFIRM, topology=None, timeout=QUERY_TIMEOUT):
    """
    Check every pair for a split brain now (what the ``lb_recorder`` engine
    does for the pairs a batch of transitions touches).  All nodes are asked
    in one round trip; a new split brain is confirmed ``confirm`` seconds
    later by one more round trip for the pairs concerned, then recorded and
    fired; resolved ones are cleared.  Returns the active split brains per
    pair, and the nodes that did not answer within ``timeout`` seconds.

    CLI Example:

    .. code-block:: bash

        salt-run lb.check_splitbrain
        salt-run lb.check_splitbrain topology=/srv/lb/site.yaml timeout=5
    """
    expected = lb_status.expected_pairs(_topology(topology))
    nodes = sorted({n for p in expected.values() for n in p["nodes"]})
    reports = lb_bookkeeping.as_reports(_query(nodes, "carp.status", timeout))
    records = _recorder(confirm=confirm, timeout=timeout).check(expected, reports)
    return {
        "splitbrain": {pair: rec for pair, rec in records.items() if rec},
        "unreachable": {n: r for n, r in sorted(reports.items()) if not isinstance(r, dict)},
    }


# ---------------------------------------------------------------------------
# an operator's commands, by the pillar's names, recorded with who and why


def _server_admin(action, pool, server, pair, reason, topology, timeout):
    try:
        why = lb_ops.reason_of(reason)
        model = _topology(topology)
        t = lb_ops.pair_targets(model, pair, pool, server) if pair else lb_ops.server_targets(model, pool, server)
    except (ValueError, OSError) as exc:
        return {"error": str(exc)}
    user = lb_ops.who()
    nodes = {n: {} for n in t["nodes"]}
    for backend in t["backends"]:
        for node, answer in _query(t["nodes"], f"haproxy_cfg.{action}", timeout, arg=[backend, server]).items():
            nodes[node][backend] = lb_ops.server_result(action, answer)
    now = time.time()
    records = _records()
    for node, per_backend in nodes.items():
        failed = {b: r for b, r in per_backend.items() if not r["ok"]}
        result = {"ok": not failed, "error": "; ".join(f"{b}: {r.get('error') or r.get('admin')}" for b, r in failed.items())}
        records.append(lb_ops.record(action, node, f"{pool}/{server}", result, user, why, now))
    return {
        "pair": t["pair"],
        "pool": pool,
        "server": server,
        "action": action,
        "backends": t["backends"],
        "nodes": nodes,
        "ok": all(r["ok"] for per in nodes.values() for r in per.values()),
    }


def drain(pool, server, pair=None, reason=None, topology=None, timeout=QUERY_TIMEOUT):
    """
    Drain a pool's server on both nodes of its pair: HAProxy sends it no new
    connections and lets the running ones finish, in every section that
    uses the pool.  Named as in the pillar; recorded in ``lb.history`` with
    who ran it and the optional ``reason``.

    CLI Example:

    .. code-block:: bash

        salt-run lb.drain pool=web_a server=http_srv-1 reason="kernel update"
    """
    return _server_admin("drain", pool, server, pair, reason, topology, timeout)


def maint(pool, server, pair=None, reason=None, topology=None, timeout=QUERY_TIMEOUT):
    """
    Put a pool's server in maintenance on both nodes (no traffic, no
    checks), like ``lb.drain``.

    CLI Example:

    .. code-block:: bash

        salt-run lb.maint pool=galera_a server=percona_mysql-2 reason="disk swap"
    """
    return _server_admin("maint", pool, server, pair, reason, topology, timeout)


def ready(pool, server, pair=None, reason=None, topology=None, timeout=QUERY_TIMEOUT):
    """
    Make a drained or maintained server ready again on both nodes, like
    ``lb.drain``.

    CLI Example:

    .. code-block:: bash

        salt-run lb.ready pool=web_a server=http_srv-1
    """
    return _server_admin("ready", pool, server, pair, reason, topology, timeout)


def _node_admin(action, node, reason, topology, timeout):
    try:
        why = lb_ops.reason_of(reason)
        pair = lb_ops.node_pair(_topology(topology), node)
    except (ValueError, OSError) as exc:
        return {"error": str(exc)}
    result = lb_ops.node_result(_query([node], f"carp.{action}", timeout).get(node))
    _records().append(lb_ops.record(action, node, node, result, lb_ops.who(), why, time.time()))
    return {"pair": pair, "node": node, "action": action, **result}


def maintenance(node, reason=None, topology=None, timeout=NODE_ACTION_TIMEOUT):
    """
    Put a load balancer in CARP maintenance: its peer takes every VIP, with
    no failed client connection (docs/carp.md).  Recorded in
    ``lb.history`` with who ran it and the optional ``reason``.

    CLI Example:

    .. code-block:: bash

        salt-run lb.maintenance node=lb-a reason="firmware update"
    """
    return _node_admin("maintenance", node, reason, topology, timeout)


def unmaintenance(node, reason=None, topology=None, timeout=NODE_ACTION_TIMEOUT):
    """
    Bring a load balancer back from CARP maintenance: it takes back the VIPs
    it is primary for.  Recorded like ``lb.maintenance``.

    CLI Example:

    .. code-block:: bash

        salt-run lb.unmaintenance node=lb-a
    """
    return _node_admin("unmaintenance", node, reason, topology, timeout)
