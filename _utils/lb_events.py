"""What the master makes of an event from a minion, as plain functions of
data (the ``lb`` runner, ``_runners/lb.py``, acts on their answers).

The trust model (docs/secrets.md, "What a minion can make the master do"):
Salt does not tell the master who sent a minion event.  A beacon's events
reach the bus as a batch whose data the minion writes itself (``id``
included), and ``event.fire_master``/``event.send`` with ``preload`` can
build the same batch, so any minion can put any ``salt/beacon/<id>/...``
tag with any data on the master's bus.  So an event is only a *claim*:

- its tag must match the grammar below exactly (``re.fullmatch``), and the
  node it names must be a load balancer of the topology;
- nothing of its data is pasted into YAML or a command: the reactor hands
  the tag and data on as Python values (``salt/reactor/carp.sls`` is a
  ``#!py`` SLS), targets are a list of one topology node, never a glob;
- before the master records or acts, it asks the named node itself, by a
  job whose return the master authenticates by the node's key
  (``carp.status``, ``haproxy_cfg.status``).  A transition is recorded
  only when the node reports the claimed state and that differs from the
  state last recorded for it; a heal or a demotion happens only when the
  node itself reports HAProxy not running while it is MASTER.

What a forged event can still do: make the master ask an LB for its status,
and (a forged MASTER) apply the haproxy SLS on an LB, which is idempotent;
both are rate-limited per node.
"""

from __future__ import annotations

import math
import re

import lb_grammar

STATES = ("MASTER", "BACKUP", "INIT")
SOURCES = ("beacon", "hook")
# A Salt minion id as this product accepts it for a load balancer: the same
# characters lb_topology accepts for a node id, no '/', no glob characters.
NODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
VIP_RE = re.compile(rf"(?P<address>{lb_grammar.IPV4.pattern.pattern})(?:/(?:3[0-2]|[12]?[0-9]))?")
TAG_RE = re.compile(r"salt/beacon/(?P<node>[^/]{1,128})/carp/(?:(?P<vhid>[1-9][0-9]{0,2})/(?P<state>MASTER|BACKUP|INIT)|haproxy/DOWN)")


def parse(tag) -> dict | None:
    """``{"node", "kind", "vhid", "state"}`` from a CARP event's tag, or None
    when the tag is not one exactly.  ``kind`` is ``transition`` (``vhid``
    1-255, ``state`` one of STATES) or ``haproxy_down``."""
    if not isinstance(tag, str):
        return None
    m = TAG_RE.fullmatch(tag)
    if not m or not NODE_RE.fullmatch(m["node"]):
        return None
    if m["vhid"] is None:
        return {"node": m["node"], "kind": "haproxy_down", "vhid": None, "state": "DOWN"}
    vhid = int(m["vhid"])
    if vhid > 255:
        return None
    return {"node": m["node"], "kind": "transition", "vhid": vhid, "state": m["state"]}


def pair_of(node: str, expected: dict) -> str | None:
    """The pair (``lb_status.expected_pairs``) whose node ``node`` is, or None."""
    for pair, exp in expected.items():
        if node in exp["nodes"]:
            return pair
    return None


def vet(tag, expected: dict) -> tuple[dict | None, str]:
    """(event with its ``pair``, "") for a well-formed tag naming a load
    balancer of the topology, else (None, why it is dropped)."""
    ev = parse(tag)
    if ev is None:
        return None, "not a CARP event tag this product sends"
    pair = pair_of(ev["node"], expected)
    if pair is None:
        return None, f"{ev['node']} is not a load balancer of the topology"
    if ev["kind"] == "transition" and ev["vhid"] not in expected[pair]["groups"]:
        return None, f"vhid {ev['vhid']} is not a CARP group of pair {pair}"
    return dict(ev, pair=pair), ""


def flat(data) -> dict:
    """An event's own data: ``salt-call event.send`` (the hooks) nests it
    under ``data`` in the master's ``_minion_event`` load."""
    data = dict(data) if isinstance(data, dict) else {}
    if data.get("cmd") == "_minion_event" and isinstance(data.get("data"), dict):
        inner = dict(data["data"])
        inner.setdefault("id", data.get("id"))
        return inner
    return data


def vip_address(value) -> str | None:
    """A VIP as operators write it, in every view: the bare address.  The
    pillar says ``198.18.2.5/24`` (the subnet's prefix), Linux configures
    ``198.18.2.5/32``: both are ``198.18.2.5``.  None for anything that is
    not an IPv4 address with an optional prefix."""
    m = VIP_RE.fullmatch(value) if isinstance(value, str) else None
    return m.group("address") if m else None


def group_state(answer, vhid: int) -> dict | None:
    """``{"state", "vip"}`` of one group from a node's ``carp.status``
    answer (a job return: a dict keyed by vhid, as int or str), or None
    when the answer is not such a dict or lacks the group.  States other
    than STATES (keepalived's FAULT, STOP) count as INIT, as the beacon
    reports them."""
    if not isinstance(answer, dict):
        return None
    g = answer.get(vhid, answer.get(str(vhid)))
    if not isinstance(g, dict):
        return None
    state = g.get("state")
    return {"state": state if state in STATES else "INIT", "vip": vip_address(g.get("vip"))}


def confirm_transition(ev: dict, answer, last: str | None) -> dict | None:
    """The transition to record for event ``ev``, or None.

    Recorded only when the node's own answer shows the group in the state
    the event claims, and that is not the state last recorded for it: a
    forged event claiming another state, or the current state again, is
    not a transition.  A real transition the node has already left (a flap
    shorter than the round trip) is not recorded either; its successor is,
    from the state last recorded."""
    got = group_state(answer, ev["vhid"])
    if got is None or got["state"] != ev["state"] or got["state"] == last:
        return None
    return {"vhid": ev["vhid"], "old": last if last in STATES else "?", "new": got["state"], "vip": got["vip"]}


def claimed_source(data) -> str | None:
    """The event's ``source`` when it is one this product sends, else None
    (the value is the sender's own word; it is shown, never acted on)."""
    src = data.get("source") if isinstance(data, dict) else None
    return src if src in SOURCES else None


def claimed_timestamp(data, received: float, skew: float = 300.0) -> float:
    """The node's own timestamp for the event when it is a number within
    ``skew`` seconds before (or 5 s after) the master received it, else
    the reception time."""
    ts = data.get("timestamp") if isinstance(data, dict) else None
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return round(received, 3)
    if not received - skew <= ts <= received + 5:
        return round(received, 3)
    return round(float(ts), 3)


def haproxy_verdict(status_answer, carp_answer) -> str:
    """What a node says of its HAProxy, from its ``haproxy_cfg.status`` and
    ``carp.status`` answers: ``running``; ``down`` (not running, and the
    node MASTER of at least one group: a heal or a demotion is due);
    ``down-backup`` (not running, MASTER of nothing: its peer serves);
    ``unknown`` (no usable answer: nothing is done on a claim alone)."""
    if not isinstance(status_answer, dict) or not isinstance(status_answer.get("running"), bool):
        return "unknown"
    if status_answer["running"]:
        return "running"
    if not isinstance(carp_answer, dict):
        return "unknown"
    return "down" if masters(carp_answer) else "down-backup"


def masters(carp_answer, state: str = "MASTER") -> list[int]:
    """The vhids a node's ``carp.status`` answer reports in ``state``
    (MASTER by default), sorted."""
    out = []
    for k in carp_answer if isinstance(carp_answer, dict) else ():
        try:
            vhid = int(k)
        except (TypeError, ValueError):
            continue
        if (group_state(carp_answer, k) or {}).get("state") == state:
            out.append(vhid)
    return sorted(out)


def confirm_batch(events: list[dict], answers: dict, last: dict) -> tuple[list[dict], list[tuple[dict, str]]]:
    """The transitions to record for a batch of vetted transition events,
    in the order they came, and the events dropped with why.

    ``events``: vetted events (:func:`vet`) with ``data`` and ``received``;
    ``answers``: each node's ``carp.status`` answer (anything else: no
    answer); ``last``: the state last recorded per ``<node>/<vhid>``,
    updated in place.  Each node is asked once per batch, so of several
    events for one group only the first that matches the node's answer is
    a transition (:func:`confirm_transition`): the others repeat it.  Each
    returned transition has ``node``, ``pair``, ``vhid``, ``old``, ``new``,
    ``vip``, ``data`` and ``received``."""
    out, dropped = [], []
    for ev in events:
        key = f"{ev['node']}/{ev['vhid']}"
        answer = answers.get(ev["node"])
        tr = confirm_transition(ev, answer if isinstance(answer, dict) else None, last.get(key))
        if tr is None:
            dropped.append((ev, f"{ev['node']} does not report vhid {ev['vhid']} as a new {ev['state']}"))
            continue
        last[key] = tr["new"]
        out.append(dict(tr, node=ev["node"], pair=ev["pair"], data=ev.get("data") or {}, received=ev.get("received")))
    return out, dropped
