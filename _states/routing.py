"""
Dynamic routing on a load-balancer node (``_modules/routing.py``): the
daemon's configuration, and the VIP announcements re-checked against what
the node holds.

Like ``_states/carp.py``, the states only compare and delegate: they ask the
execution module what would change (``test=True``), report it, and in a
real run let the module apply it.  Nothing is touched in test mode; a
``CommandExecutionError`` is ``result: False``.  The md5sig key never
appears in changes or comments.

.. code-block:: yaml

    lb_routing_daemon:
      routing.present:
        - name: edge

    lb_routing_announced:
      routing.announced:
        - name: edge
"""

from salt.exceptions import CommandExecutionError


def __virtual__():
    if "routing.present" in __salt__:
        return "routing"
    return (False, "the routing execution module is not available on this minion")


def _apply(name, func, kwargs, would, done):
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        check = __salt__[func](test=True, **kwargs)
        if not check["changes"]:
            ret["comment"] = check["comment"]
            return ret
        if __opts__.get("test"):
            ret["result"] = None
            ret["changes"] = check["changes"]
            ret["comment"] = f"{would}: {check['comment']}"
            return ret
        res = __salt__[func](**kwargs)
        ret["changes"] = res["changes"]
        ret["comment"] = f"{done}: {res['comment']}"
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = str(exc)
    return ret


def present(name, topology=None, **kwargs):  # noqa: ARG001 - Salt may pass its own keys
    """
    The routing daemon runs what the topology gives this node (checked by
    the daemon's parser first, reconfigured without a restart).

    name
        Any label, e.g. the pair's name.
    """
    kw = {"topology": topology} if topology else {}
    return _apply(name, "routing.present", kw, "routing would change", "routing changed")


def announced(name, topology=None, **kwargs):  # noqa: ARG001 - Salt may pass its own keys
    """
    This node announces exactly the VIPs it holds as CARP MASTER (none in
    maintenance); what differs is fixed through lb-routing-vip.
    """
    kw = {"topology": topology} if topology else {}
    return _apply(name, "routing.sync", kw, "announcements would change", "announcements fixed")
