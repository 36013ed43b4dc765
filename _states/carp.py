"""
CARP groups on a load-balancer node, whichever provider answers as ``carp``
(FreeBSD's kernel CARP, keepalived or ucarp).

The state functions only compare and delegate (``lb_state.diff_and_apply``):
they ask the execution module's read-only ``carp.<op>_pending`` what would
change, report it, and in a real run let ``carp.<op>`` apply it.  Nothing is
touched in test mode; changes are reported in both modes; a
``CommandExecutionError`` becomes ``result: False``.  Passwords never appear
in changes or comments (the module reports ``<changed>``).

.. code-block:: yaml

    lb_carp_groups:
      carp.present:
        - name: edge

    lb_carp_maintenance:
      carp.maintenance:
        - name: lb-a maintenance
        - enabled: true     # or false; name alone may also be on/off, present/absent
"""

from salt.exceptions import CommandExecutionError

import lb_fresh
import lb_state

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

ON = {True, "true", "True", "on", "yes", "present", "enabled"}
OFF = {False, "false", "False", "off", "no", "absent", "disabled"}


def __virtual__():
    if "carp.present" in __salt__:
        return "carp"
    return (False, "the carp execution module is not available on this minion")


def _apply(name, func, kwargs, would, done):
    """``carp.<func>_pending`` (the question), then ``carp.<func>`` (the change)."""
    return lb_state.diff_and_apply(
        name,
        lambda: __salt__[f"{func}_pending"](**kwargs),
        lambda: __salt__[func](**kwargs),
        bool(__opts__.get("test")),
        would,
        done,
    )


def present(name, topology=None, **kwargs):  # noqa: ARG001 - Salt may pass its own keys
    """
    This node's CARP groups as the topology (the pillar's ``lb`` key, or a
    YAML file given as ``topology``) says: every group with its vhid,
    interface, VIP, advbase, advskew and password, preemption as the
    topology says (on by default), and the provider's daemon or kernel
    settings.

    name
        Any label, e.g. the pair's name.
    """
    kwargs = {"topology": topology} if topology else {}
    return _apply(name, "carp.present", kwargs, "CARP groups would change", "CARP groups changed")


def absent(name, vhids=None, **kwargs):  # noqa: ARG001 - Salt may pass its own keys
    """
    The given CARP groups (a list of vhids; default: all this node runs)
    are gone from this node.
    """
    kwargs = {"vhids": vhids} if vhids is not None else {}
    return _apply(name, "carp.absent", kwargs, "CARP groups would be removed", "CARP groups removed")


def maintenance(name, enabled=None, **kwargs):  # noqa: ARG001 - Salt may pass its own keys
    """
    The node is (``name: true``) or is not (``name: false``) in maintenance.
    ``name`` also takes on/off and present/absent; ``enabled`` overrides it.

    Entering needs preemption on (without it the peer waits for this node
    to stop advertising): the state fails with a clear comment otherwise.
    """
    want = enabled if enabled is not None else name
    if isinstance(want, str):
        want = want.strip()
    if want in ON:
        on = True
    elif want in OFF:
        on = False
    else:
        ret = lb_state.ret(name)
        ret["result"] = False
        ret["comment"] = f"carp.maintenance: name (or enabled) must be true/false, on/off or present/absent, not {want!r}"
        return ret
    if on:
        try:
            if not __salt__["carp.preempt_enabled"]():
                ret = lb_state.ret(name)
                ret["result"] = False
                ret["comment"] = "preemption is off on this node: set lb:pairs:<pair>:carp:preempt true and apply carp.present first"
                return ret
        except CommandExecutionError as exc:
            ret = lb_state.ret(name)
            ret["result"] = False
            ret["comment"] = str(exc)
            return ret
        return _apply(name, "carp.maintenance", {}, "would enter maintenance", "entered maintenance")
    return _apply(name, "carp.unmaintenance", {}, "would leave maintenance", "left maintenance")
