"""The master's bookkeeping of CARP transitions: what the ``lb_recorder``
engine (every transition on the bus, in batches) and the ``lb`` runner
(``lb.status``, ``lb.check_splitbrain``) share.  No Salt here: the caller
hands in how to ask nodes (``query``) and how to announce an event
(``announce``), so the unit tests drive it with plain functions.

Batches, not events: a batch of transitions costs one ``carp.status`` round
trip to the nodes of the pairs it touches, one history write, and one look
per pair for a split brain, however many events it holds.  A split brain
seen for the first time is confirmed ``confirm`` seconds later by a second
look (during an ordinary failover both nodes say MASTER for a moment); the
caller either waits for it (the runner) or asks :meth:`Recorder.due` when
it is time (the engine).  The record lock is held only to read and write
the record files, never across a query or a wait.
"""

from __future__ import annotations

import json
import logging
import time

import lb_events
import lb_records
import lb_status
import lb_topology

CONFIRM = 3.0  # seconds a split brain must last before it is declared

log = logging.getLogger(__name__)


def _load_once(raw, loaded: dict):
    """``lb_topology.load(raw)``, or its TopologyError, once per distinct
    value: most minions share one topology."""
    key = json.dumps(raw, sort_keys=True, default=str)
    if key not in loaded:
        try:
            loaded[key] = lb_topology.load(raw)
        except lb_topology.TopologyError as exc:
            loaded[key] = exc
    return loaded[key]


def site_model(pillars: dict) -> tuple[dict, list[str]]:
    """The master's model of the pairs, each from its own nodes' pillar.

    ``pillars`` is {minion id: the pillar the master has for it} (Salt's
    minion data cache, or one compiled on the master).  A pair is in the
    model when one of its nodes has an ``lb`` topology in its own pillar
    that validates and names that node in that pair: a master that serves
    several sites (each site's pillar assigned to its own minions) sees
    every site's pairs, and no minion's pillar speaks for a node it is not.

    Returns ``({"pairs": {name: pair}}, problems)``; a problem is a string
    naming the minion whose pillar has it: an invalid topology (its first
    error and pillar path), two nodes of one pair whose pillars define it
    differently (a pillar change not yet refreshed on both: the first
    node's, by id, is used), or two pairs that claim one node (the first
    is kept).  ValueError when no pair is left."""
    pairs: dict[str, dict] = {}
    source: dict[str, str] = {}
    claimed: dict[str, str] = {}  # node -> pair name
    problems: list[str] = []
    loaded: dict[str, dict | lb_topology.TopologyError] = {}
    for minion in sorted(pillars or {}):
        pillar = pillars[minion]
        raw = pillar.get(lb_topology.ROOT) if isinstance(pillar, dict) else None
        if raw is None:
            continue
        model = _load_once(raw, loaded)
        if isinstance(model, lb_topology.TopologyError):
            more = f" (and {len(model.errors) - 1} more: salt {minion} lb.validate)" if len(model.errors) > 1 else ""
            problems.append(f"{minion}: its pillar's topology is invalid: {model.errors[0]}{more}")
            continue
        for name, pair in model["pairs"].items():
            if minion not in pair["nodes"]:
                continue
            if name in pairs:
                if pairs[name] != pair:
                    problems.append(f"{minion}: its pillar defines pair {name!r} unlike {source[name]}'s; {source[name]}'s is used")
                continue
            taken = {n: claimed[n] for n in pair["nodes"] if n in claimed}
            if taken:
                problems.append(
                    f"{minion}: its pillar puts {', '.join(sorted(taken))} in pair {name!r}, already in pair {sorted(taken.values())[0]!r}"
                )
                continue
            pairs[name], source[name] = pair, minion
            claimed.update(dict.fromkeys(pair["nodes"], name))
    if not pairs:
        raise ValueError(
            "no load balancer has a valid 'lb' topology naming it in its pillar"
            + (f": {problems[0]}" if problems else " (run saltutil.refresh_pillar)")
        )
    return {"pairs": pairs}, problems


def model_from_file(path: str) -> dict:
    """The model of a topology file (the runner's ``topology=PATH``)."""
    return lb_topology.load(lb_topology.load_file(path))


_EXPECTED: dict = {"at": None, "expected": None, "logged": set()}


def cached_expected(read_pillars, ttl: float = 10.0, clock=time.monotonic) -> dict:
    """The pairs (``lb_status.expected_pairs``) of :func:`site_model` over
    the minions' cached pillars (``read_pillars()``, e.g. Salt's
    ``cache.pillar``), read again when older than ``ttl`` seconds: the
    reactor and the engine vet every event against it without reading every
    pillar per event.  A problem is logged once, when it first shows; {}
    (and a warning) while no cached pillar holds a valid topology."""
    now = clock()
    if _EXPECTED["expected"] is None or now - _EXPECTED["at"] > ttl:
        try:
            model, problems = site_model(read_pillars() or {})
            expected = lb_status.expected_pairs(model)
        except (ValueError, OSError) as exc:
            problems, expected = [str(exc)], _EXPECTED["expected"] or {}
        for problem in problems:
            if problem not in _EXPECTED["logged"]:
                log.warning("lb: %s", problem)
        _EXPECTED.update(at=now, expected=expected, logged=set(problems))
    return _EXPECTED["expected"]


def as_reports(raw: dict) -> dict:
    """Job returns by node: ``lb_node.report`` returns as they are,
    ``carp.status`` returns wrapped as ``{"carp": ...}``; anything else
    (no answer, an error) becomes a string saying so."""
    out = {}
    for n, r in raw.items():
        if isinstance(r, dict) and "carp" not in r and all(isinstance(v, dict) for v in r.values()):
            r = {"carp": r}
        out[n] = r if isinstance(r, dict) else (str(r) if r else "no answer")
    return out


class Drops:
    """Events the master does not act on, logged once a minute per tag and
    reason with the id the sender claims (Salt does not authenticate it)."""

    def __init__(self, logger=None, every: float = 60.0, clock=time.monotonic):
        self.log = logger or log
        self.every = every
        self.clock = clock
        self.seen: dict = {}

    def __call__(self, tag, data, why: str) -> dict:
        claimed = data.get("id") if isinstance(data, dict) else None
        key = (why, tag if isinstance(tag, str) else repr(tag))
        now = self.clock()
        if now - self.seen.get(key, now - 2 * self.every - 1) >= self.every:
            self.seen[key] = now
            if len(self.seen) > 4096:
                self.seen.clear()
            self.log.warning("lb: dropped event %r (claimed sender %r): %s", key[1][:300], str(claimed)[:100], why)
        return {"dropped": why}


class Recorder:
    """Records transitions and looks for split brains, a batch at a time.

    query(nodes, fun) -> {node: answer or a string}: one round trip;
    announce(tag, data): fire an ``lb/...`` event; its record is appended
    here, so the history holds what the master announced and nothing a
    minion put on the bus."""

    def __init__(self, records: lb_records.Records, query, announce, confirm: float = CONFIRM, clock=time.time, drops: Drops | None = None):
        self.records = records
        self.query = query
        self.announce = announce
        self.confirm = float(confirm)
        self.clock = clock
        self.drops = drops or Drops()
        self.confirm_at: dict[str, float] = {}  # pair -> when its new split brain is to be looked at again

    # transitions ------------------------------------------------------------

    def vet(self, items, expected: dict) -> list[dict]:
        """The transition events of ``items`` ((tag, data, received)) that
        name a group of the topology, as :func:`lb_events.vet` events with
        ``data`` and ``received``; the others are dropped and logged."""
        out = []
        for tag, data, received in items:
            ev, why = lb_events.vet(tag, expected)
            if ev is None:
                self.drops(tag, data, why)
            elif ev["kind"] == "transition":
                out.append(dict(ev, data=data, received=received))
        return out

    def transitions(self, events: list[dict], expected: dict) -> list[dict]:
        """Confirm a batch of vetted transition events with one round trip
        to the nodes of their pairs, record the confirmed ones in one
        write, and look at those pairs for a split brain.  The records
        written."""
        if not events:
            return []
        pairs = sorted({ev["pair"] for ev in events})
        nodes = sorted({n for p in pairs for n in expected[p]["nodes"]})
        reports = as_reports(self.query(nodes, "carp.status"))
        answers = {n: r.get("carp") for n, r in reports.items() if isinstance(r, dict)}
        with self.records.lock():
            last = self.records.load("last.json")
            trs, dropped = lb_events.confirm_batch(events, answers, last)
            recs = [
                lb_status.history_record(
                    f"salt/beacon/{tr['node']}/carp/{tr['vhid']}/{tr['new']}",
                    {
                        "old": tr["old"],
                        "vip": tr["vip"] or expected[tr["pair"]]["groups"][tr["vhid"]]["vip"],
                        "timestamp": lb_events.claimed_timestamp(tr["data"], tr["received"]),
                        "source": lb_events.claimed_source(tr["data"]),
                    },
                    tr["received"],
                )
                for tr in trs
            ]
            if trs:
                self.records.save("last.json", last)
                self.records.append(*recs)
        for ev, why in dropped:
            self.drops(f"salt/beacon/{ev['node']}/carp/{ev['vhid']}/{ev['state']}", ev["data"], why)
        self.look(expected, reports, pairs)
        return recs

    # split brain ------------------------------------------------------------

    def look(self, expected: dict, reports: dict, pairs, confirmed: bool = False) -> dict:
        """Update the split-brain records of ``pairs`` from the nodes'
        reports; fire what is declared or resolved.  A split brain not yet
        recorded is declared only when ``confirmed``; otherwise its pair is
        due for another look in ``confirm`` seconds (:meth:`due`).
        Returns {pair: its record}."""
        now = self.clock()
        fire, out = [], {}
        with self.records.lock():
            allrec = self.records.load("splitbrain.json")
            for pair in pairs:
                exp = expected[pair]
                live = {n: reports.get(n) for n in exp["nodes"] if isinstance(reports.get(n), dict)}
                splits = lb_status.split_brains(live)
                rec, f, pending = lb_status.split_update(
                    pair, exp, allrec.get(pair, {}), splits, len(live) == len(exp["nodes"]), now, confirmed
                )
                fire += f
                if rec:
                    allrec[pair] = rec
                else:
                    allrec.pop(pair, None)
                out[pair] = rec
                if pending and pair not in self.confirm_at:
                    self.confirm_at[pair] = now + self.confirm
                elif not pending:
                    self.confirm_at.pop(pair, None)
            self.records.save("splitbrain.json", allrec)
        for tag, data in fire:
            if "/resolved" not in tag:
                log.warning("lb: %s (pair %s)", data["message"], data["pair"])
            self.announce(tag, data)
        # the master records what it announces itself
        self.records.append(*(lb_status.history_record(tag, data, now) for tag, data in fire))
        return out

    def due(self) -> list[str]:
        """The pairs whose new split brain is to be confirmed now."""
        now = self.clock()
        return sorted(p for p, t in self.confirm_at.items() if t <= now)

    def next_due(self) -> float | None:
        return min(self.confirm_at.values()) if self.confirm_at else None

    def _look_again(self, expected: dict, pairs: list[str]) -> dict:
        """One round trip to the nodes of ``pairs``, and a confirmed look
        (which also ends their wait in ``confirm_at``)."""
        nodes = sorted({n for p in pairs for n in expected[p]["nodes"]})
        return self.look(expected, as_reports(self.query(nodes, "carp.status")), pairs, confirmed=True)

    def confirm_due(self, expected: dict) -> dict:
        """Look again, in one round trip, at every pair that is due, and
        declare the split brains that are still there."""
        due = self.due()
        for p in due:
            if p not in expected:  # gone from the topology meanwhile
                del self.confirm_at[p]
        pairs = [p for p in due if p in expected]
        return self._look_again(expected, pairs) if pairs else {}

    def check(self, expected: dict, reports: dict | None = None) -> dict:
        """Every pair of ``expected`` now (the runner's ``lb.status`` and
        ``lb.check_splitbrain``): one round trip for all nodes unless
        ``reports`` are given, then, if a split brain is new, one wait of ``confirm`` seconds and one more round trip for the
        pairs concerned.  {pair: its record}."""
        if reports is None:
            nodes = sorted({n for p in expected.values() for n in p["nodes"]})
            reports = as_reports(self.query(nodes, "carp.status"))
        out = self.look(expected, reports, sorted(expected), confirmed=self.confirm <= 0)
        pending = [p for p in sorted(expected) if p in self.confirm_at]
        if pending:  # (none when confirm <= 0: declared at once)
            time.sleep(self.confirm)
            out.update(self._look_again(expected, pending))
        return out
