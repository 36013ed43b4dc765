"""
Dynamic routing on a load-balancer node (``_modules/routing.py``): the
daemon's configuration, and the VIP announcements re-checked against what
the node holds.

The states only compare and delegate (``lb_state.diff_and_apply``): they ask
the execution module's read-only function what would change
(``routing.present_pending``, ``routing.sync_pending``), report it, and in
a real run, when something differs, let the module apply it
(``routing.present``, ``routing.sync``).  Nothing is touched in test mode;
a ``CommandExecutionError`` is ``result: False``.  The md5sig key never
appears in changes or comments.

.. code-block:: yaml

    lb_routing_daemon:
      routing.present:
        - name: edge

    lb_routing_announced:
      routing.announced:
        - name: edge
"""

import lb_fresh
import lb_state

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)


def __virtual__():
    if "routing.present_pending" in __salt__:
        return "routing"
    return (False, "the routing execution module is not available on this minion")


def _apply(name, pending, apply, kwargs, would, done):
    """`pending` asked first (read-only); `apply` run when something
    differs and Salt is not in test mode."""
    return lb_state.diff_and_apply(
        name,
        lambda: __salt__[pending](**kwargs),
        lambda: __salt__[apply](**kwargs),
        bool(__opts__.get("test")),
        would,
        done,
    )


def present(name, topology=None, **kwargs):  # noqa: ARG001 - Salt may pass its own keys
    """
    The routing daemon runs what the topology gives this node (checked by
    the daemon's parser first, reconfigured without a restart).

    name
        Any label, e.g. the pair's name.
    """
    kw = {"topology": topology} if topology else {}
    return _apply(name, "routing.present_pending", "routing.present", kw, "routing would change", "routing changed")


def announced(name, topology=None, **kwargs):  # noqa: ARG001 - Salt may pass its own keys
    """
    This node announces exactly the VIPs it should (``routing.desired``:
    on Linux the VIP addresses it holds, on FreeBSD those it is CARP MASTER
    for, none in maintenance); what differs is fixed (``routing.sync``).
    """
    kw = {"topology": topology} if topology else {}
    return _apply(name, "routing.sync_pending", "routing.sync", kw, "announcements would change", "announcements fixed")
