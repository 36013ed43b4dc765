"""
The master's reaction to a CARP MASTER event, as a state: the reactor runs
it with ``state.single`` (``salt/reactor/carp.sls``), so it is a state run
like any other on the node: queued behind one in progress (``queue=True``)
and seen by the ones that start after it.

- ``lb_failover.master_serves``: if this node is MASTER of ``vhid`` now (its
  own ``carp.status``, not the event's word), the haproxy SLS is applied, at
  most once per 10 s (``lb_node.on_master``); otherwise nothing happens.

.. code-block:: bash

    salt lb-b state.single lb_failover.master_serves name=vhid-4 vhid=4 queue=True
"""

import lb_fresh
import lb_state

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)


def master_serves(name, vhid, **kwargs):
    """
    Apply the haproxy SLS here if this node is MASTER of ``vhid``.

    name
        Any name (the reactor uses ``vhid-<vhid>``).
    vhid
        The CARP group the MASTER event named (1-255).

    ``**kwargs`` takes, and ignores, what Salt adds to a state called by
    ``state.single``: a reaction queued behind a state run (``queue=True``)
    runs later with the publication's fields as ``__pub_*`` keywords, and
    Salt 3008.4 does not strip ``__pub_kwarg`` (its
    ``STATE_INTERNAL_KEYWORDS`` lacks it).  Without ``**kwargs`` every
    queued reaction failed with "'__pub_kwarg' is an invalid keyword
    argument" and applied nothing.
    """
    ret = lb_state.ret(name)
    if __opts__.get("test"):
        ret["result"] = None
        ret["comment"] = f"the haproxy SLS would be applied if this node is MASTER of vhid {vhid}"
        return ret
    got = __salt__["lb_node.on_master"](vhid, nested=True)
    ret["comment"] = got["comment"]
    if got["applied"]:
        state = got["state"] if isinstance(got["state"], dict) else {}
        failed = sorted(k.split("_|-")[1] for k, r in state.items() if isinstance(r, dict) and r.get("result") is False)
        changed = {k.split("_|-")[1]: r["changes"] for k, r in state.items() if isinstance(r, dict) and r.get("changes")}
        if changed:
            ret["changes"] = {"haproxy": changed}
        if failed or not state:
            ret["result"] = False
            ret["comment"] += f"; failed: {', '.join(failed) or got['state']}"
    return ret
