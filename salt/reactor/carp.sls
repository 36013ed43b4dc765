#!py
"""The reactions that act on a CARP event from a load balancer, dispatched
at once; the bookkeeping (recording transitions, split brains) is the
``lb_recorder`` engine's, beside the reactor (docs/operations.md).

Nothing of the event's data is used, and its tag only after it matched the
product's grammar exactly (``_utils/lb_events.py``, ``re.fullmatch``): no
value a minion sends is pasted into YAML or a command line, and the target
is the one node id of the tag, as a list target (never a glob).

- ``salt/beacon/<id>/carp/<vhid>/MASTER``, ``<id>`` a load balancer of the
  topology and ``<vhid>`` a group of its pair: ``state.single
  lb_failover.master_serves vhid=<vhid> queue=True`` is published to
  ``<id>``, a state run queued like any other.  The node itself checks that
  it is MASTER of that group now and, if so, applies the haproxy SLS (once
  per 10 s, ``lb_node.on_master``): it acts on its own state, not on the
  event's word, so a forged event does nothing on a node that is not
  MASTER.  A local reaction: published from the reactor's own loop, it
  never waits in the runner pool.
- ``salt/beacon/<id>/carp/haproxy/DOWN``: ``lb.heal`` (runner) asks the
  node and heals HAProxy in place, else demotes the node, each step only on
  the node's own word.
"""

import os
import sys


def _utils():
    """The product's pure modules (lb_events, lb_bookkeeping): in
    utils_dirs, or synced to the master's extension_modules by
    saltutil.sync_utils."""
    dirs = list(__opts__.get("utils_dirs") or []) + [os.path.join(__opts__.get("extension_modules") or "", "utils")]  # noqa: F821
    for d in dirs:
        if os.path.isfile(os.path.join(d, "lb_events.py")):
            if d not in sys.path:
                sys.path.append(d)
            break
    import lb_fresh

    lb_fresh.refresh()
    import lb_bookkeeping
    import lb_events

    return lb_events, lb_bookkeeping


def _pillars():
    import salt.utils.master

    return salt.utils.master.MasterPillarUtil(
        "*", "glob", use_cached_grains=True, grains_fallback=False, use_cached_pillar=True, pillar_fallback=False, opts=__opts__  # noqa: F821
    ).get_minion_pillar()


def run():
    lb_events, lb_bookkeeping = _utils()
    # the tag's grammar, and a node and group of its pair (each pair from
    # its own nodes' cached pillar, read at most every 10 s); a drop is logged by the
    # lb_recorder engine, which vets every carp event
    if lb_events.parse(tag) is None:  # noqa: F821 - the reactor's globals
        return {}
    ev, _why = lb_events.vet(tag, lb_bookkeeping.cached_expected(_pillars))  # noqa: F821
    if ev is None:
        return {}
    if ev["kind"] == "haproxy_down":
        return {"lb_haproxy_down": {"runner.lb.heal": [{"args": [{"tag": tag}, {"data": data}]}]}}  # noqa: F821
    if ev["state"] == "MASTER":
        return {
            "lb_carp_master": {
                "local.state.single": [
                    {"tgt": [ev["node"]]},
                    {"tgt_type": "list"},
                    {"args": [{"fun": "lb_failover.master_serves"}, {"name": f"vhid-{ev['vhid']}"}, {"vhid": ev["vhid"]}, {"queue": True}]},
                ]
            }
        }
    return {}
