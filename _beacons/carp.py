"""
Watch CARP transitions (MASTER / BACKUP / INIT) on a load balancer.

Every interval the beacon reads ``carp.status`` (whichever provider answers
as ``carp``: FreeBSD, keepalived or ucarp) and returns one event per group
whose state changed since the last read.  Salt fires each as
``salt/beacon/<minion>/carp/<vhid>/<NEWSTATE>`` with data ``vhid``, ``vip``,
``interface``, ``old``, ``new``, ``provider``, ``timestamp`` (epoch seconds
on the node), ``source`` and ``id``.  The first pass only learns the states.

The daemons' hooks (the Linux up/down scripts, FreeBSD devd) send the
same event at once through ``lb-carp-event``; the beacon does not send a
transition a hook has already claimed (``_utils/carp_events.py``), and sends
it itself when the hook failed.

With ``haproxy: true`` (the default) it also fires
``salt/beacon/<minion>/carp/haproxy/DOWN`` while this node is MASTER of a
group and HAProxy is not running; the reactor heals it or demotes the node.

.. code-block:: yaml

    beacons:
      carp:
        - interval: 1
        - haproxy: true
        - haproxy_refire: 30

Enabled on every load balancer by ``salt/carp/events.sls`` (docs/operations.md).
"""

import logging
import os
import sys
import time

# Salt's beacon loader, unlike the execution module loader, does not put the
# custom utils on sys.path: find them beside this file (synced:
# <extmods>/beacons and <extmods>/utils; in the repository: _beacons, _utils).
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _name in ("utils", "_utils"):
    _dir = os.path.join(_HERE, _name)
    if os.path.isfile(os.path.join(_dir, "carp_events.py")) and _dir not in sys.path:
        sys.path.append(_dir)

import carp_common  # noqa: E402
import carp_events  # noqa: E402
import lb_files  # noqa: E402
import lb_fresh  # noqa: E402

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "carp"
CONTEXT = "carp_beacon.snapshot"
PENDING = "carp_beacon.pending"
HAPROXY = "carp_beacon.haproxy_fired"
DEFAULT_REFIRE = 30.0


def __virtual__():
    return __virtualname__


def validate(config):
    """Reject a bad config with a message that names the option."""
    return carp_events.validate(config)


def _config(config):
    merged = {}
    for item in config if isinstance(config, list) else [config]:
        merged.update(item)
    return merged


def _events_dir(cfg):
    if cfg.get("events_dir"):
        return cfg["events_dir"]
    try:
        return __salt__["lb_node.paths"]()["events_dir"]
    except Exception as exc:  # noqa: BLE001 - no claims: every change is fired
        log.debug("carp beacon: no events_dir (%s)", exc)
        return None


def _claim(events_dir, vhid):
    if not events_dir:
        return None
    return carp_events.parse_claim(carp_common.read_text(os.path.join(events_dir, str(vhid))))


def _write_claim(events_dir, vhid, state, now):
    if not events_dir:
        return
    try:
        lb_files.write_atomic(os.path.join(events_dir, str(vhid)), carp_events.claim_text(state, now, "beacon"), 0o644)
    except OSError as exc:
        log.warning("carp beacon: cannot write claim for vhid %s: %s", vhid, exc)


def beacon(config):
    """One event per changed CARP group (none on the first pass), plus
    ``haproxy/DOWN`` while MASTER without HAProxy.  Never blocks: one
    ``carp.status`` read and a few small files."""
    cfg = _config(config)
    now = time.time()
    try:
        status = __salt__["carp.status"]()
    except Exception as exc:  # noqa: BLE001 - a beacon must not raise
        log.warning("carp beacon: carp.status failed: %s", exc)
        return []
    current = carp_events.snapshot(status)
    previous = __context__.get(CONTEXT)
    __context__[CONTEXT] = current
    events_dir = _events_dir(cfg)
    pending = __context__.setdefault(PENDING, {})
    out = []

    # transitions left to a hook at an earlier pass
    for vhid, (ev, since) in sorted(pending.items()):
        if current.get(vhid, {}).get("state", "INIT") != ev["new"]:
            del pending[vhid]  # moved on; the newer transition is judged on its own
            continue
        verdict = carp_events.decide(_claim(events_dir, vhid), ev["new"], now, since)
        if verdict == "wait":
            continue
        del pending[vhid]
        if verdict == "fire":
            _write_claim(events_dir, vhid, ev["new"], now)
            out.append(dict(ev, source="beacon (hook did not send)"))

    for ev in carp_events.changes(previous, current, now):
        vhid = ev["vhid"]
        pending.pop(vhid, None)
        verdict = carp_events.decide(_claim(events_dir, vhid), ev["new"], now)
        if verdict == "fire":
            _write_claim(events_dir, vhid, ev["new"], now)
            out.append(ev)
        elif verdict == "wait":
            pending[vhid] = (ev, now)

    if cfg.get("haproxy", True) and carp_events.masters(current):
        try:
            running = bool(__salt__["haproxy_cfg.status"]()["running"])
        except Exception as exc:  # noqa: BLE001
            log.warning("carp beacon: haproxy_cfg.status failed: %s", exc)
            running = True  # unknown is not down
        ev = carp_events.haproxy_event(current, running, __context__.get(HAPROXY), now, float(cfg.get("haproxy_refire", DEFAULT_REFIRE)))
        if running:
            __context__.pop(HAPROXY, None)
        elif ev:
            __context__[HAPROXY] = now
            out.append(ev)
    else:
        __context__.pop(HAPROXY, None)
    return out
