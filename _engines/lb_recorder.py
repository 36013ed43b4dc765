"""
The master's bookkeeping of CARP transitions, beside the reactor: a Salt
master engine that reads every ``salt/beacon/<id>/carp/<vhid>/<STATE>``
event, and in batches records the transitions the nodes confirm
(``lb.history``) and looks at their pairs for a split brain
(``lb/splitbrain/...`` events, docs/operations.md).

Why an engine: the reactor's runner reactions share one pool of worker
threads, in order.  When a whole site fails over at once (a shared switch,
a rack), hundreds of transitions reach the master within a second; recorded
one by one, each with a round trip to its node, they would hold the pool
while the reactions that act (the haproxy apply on a new MASTER, a heal)
waited behind them.  So the reactor only dispatches those reactions, and
this engine does the rest in its own process, a batch at a time: one
``carp.status`` round trip for the nodes of the pairs a batch touches, one
history write, one look per pair.  A split brain seen for the first time is
looked at again ``confirm`` seconds later (a timer, not a sleep), so the
batches go on meanwhile.

The logic is in ``_utils/lb_bookkeeping.py``; this module only reads the
bus, asks the nodes and fires the events; ``<cachedir>/lb/recorder.json``
counts what it took and recorded.  Configuration (shipped in
``etc/salt/master.d/reactor.conf``)::

    engines:
      - lb_recorder:
          batch: 0.25    # seconds an event waits for others to join its batch
          confirm: 3     # seconds a split brain must last to be declared
          timeout: 10    # seconds a node has to answer
"""

import logging
import queue
import threading
import time

import salt.client
import salt.key
import salt.utils.event
import salt.utils.master

import lb_bookkeeping
import lb_events
import lb_fresh
import lb_query
import lb_records

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "lb_recorder"
TOPOLOGY_TTL = 10.0  # seconds the pairs read from the nodes' cached pillars are used
MAX_BATCH = 5000


def __virtual__():
    return __virtualname__


def _is_carp_tag(tag):
    # every one is vetted, and a drop logged; HAProxy DOWN events that pass
    # are the heal's (the reactor runs lb.heal, which records them)
    return isinstance(tag, str) and tag.startswith("salt/beacon/") and "/carp/" in tag


class _Worker(threading.Thread):
    def __init__(self, opts, items, batch, confirm, timeout):
        super().__init__(name="lb_recorder", daemon=True)
        self.opts = opts
        self.items = items
        self.batch = float(batch)
        self.timeout = float(timeout)
        self.bus = None
        # what an operator (and bench/event_storm.py) reads in
        # <cachedir>/lb/recorder.json: events taken, transitions recorded
        self.stats = {"started": time.time(), "events": 0, "recorded": 0, "batches": 0, "last_batch": None}
        self.recorder = lb_bookkeeping.Recorder(
            lb_records.Records(opts["cachedir"]), self.query, self.announce, confirm=float(confirm), drops=lb_bookkeeping.Drops(log)
        )

    # I/O handed to the recorder ----------------------------------------------

    def query(self, nodes, fun):
        # a client per round trip: one that lived on would keep a
        # subscription per job
        with salt.client.get_local_client(self.opts["conf_file"]) as client:
            return lb_query.ask(client, nodes, fun, self.timeout, lambda: salt.key.get_key(self.opts).list_keys().get("minions", []))

    def announce(self, tag, data):
        if self.bus is None:
            self.bus = salt.utils.event.get_master_event(self.opts, self.opts["sock_dir"], listen=False)
        self.bus.fire_event(data, tag)  # the recorder records it

    def expected(self):
        return lb_bookkeeping.cached_expected(self.pillars, TOPOLOGY_TTL)

    def pillars(self):
        # what the runner's cache.pillar reads (__runners__ is not set in
        # this thread: Salt's loader context is per thread)
        return salt.utils.master.MasterPillarUtil(
            "*", "glob", use_cached_grains=True, grains_fallback=False, use_cached_pillar=True, pillar_fallback=False, opts=self.opts
        ).get_minion_pillar()

    # the loop ------------------------------------------------------------------

    def take(self):
        """The next batch: the first event, and those that arrive within
        ``batch`` seconds of it; [] when a confirmation is due first."""
        due = self.recorder.next_due()
        wait = 1.0 if due is None else max(0.0, min(1.0, due - time.time()))
        try:
            first = self.items.get(timeout=wait)
        except queue.Empty:
            return []
        out = [first]
        end = time.monotonic() + self.batch
        while len(out) < MAX_BATCH:
            left = end - time.monotonic()
            try:
                out.append(self.items.get(timeout=left) if left > 0 else self.items.get_nowait())
            except queue.Empty:
                break
        return out

    def count(self, events, recorded, seconds):
        self.stats["events"] += events
        self.stats["recorded"] += recorded
        self.stats["batches"] += 1
        self.stats["last_batch"] = {"at": round(time.time(), 3), "events": events, "recorded": recorded, "seconds": round(seconds, 3)}
        self.recorder.records.save("recorder.json", self.stats)

    def run(self):
        while True:
            try:
                got = self.take()
                if got or self.recorder.due():
                    expected = self.expected()
                    if got:
                        t0 = time.monotonic()
                        recs = self.recorder.transitions(self.recorder.vet(got, expected), expected)
                        self.count(len(got), len(recs), time.monotonic() - t0)
                    self.recorder.confirm_due(expected)
            except Exception:  # noqa: BLE001 - one bad batch must not end the bookkeeping
                log.exception("lb_recorder: a batch failed")
                time.sleep(1)


def start(batch=0.25, confirm=lb_bookkeeping.CONFIRM, timeout=10):
    """Run the engine: read the master's bus, hand CARP transitions to the
    worker thread."""
    items = queue.Queue()
    worker = _Worker(__opts__, items, batch, confirm, timeout)  # noqa: F821
    worker.start()
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=True) as bus:  # noqa: F821
        while True:
            ev = bus.get_event(wait=1, tag="salt/beacon/", full=True)
            if ev and _is_carp_tag(ev.get("tag")):
                items.put((ev["tag"], lb_events.flat(ev.get("data")), time.time()))
