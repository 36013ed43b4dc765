#!py
"""Every CARP event from a load balancer (salt/beacon/<id>/carp/...): the
reaction, as data.

The event's tag and data are handed to the ``lb`` runner as Python values:
nothing of them is pasted into YAML or a command line here, so no value a
minion sends can add a reaction or change a target.  The runner checks the
tag's grammar, that it names a load balancer of the topology, and asks that
node before it records or acts (_utils/lb_events.py, docs/secrets.md).

- .../carp/<vhid>/<STATE>: lb.transition records the transition the node
  confirms, applies the haproxy SLS on a confirmed new MASTER, and checks
  the pair for a split brain;
- .../carp/haproxy/DOWN: lb.heal heals HAProxy in place, else demotes the
  node (carp.maintenance), each step only on the node's own word.
"""


def run():
    parts = tag.split("/") if isinstance(tag, str) else []  # noqa: F821 - the reactor's globals
    event = [{"tag": tag}, {"data": data}]  # noqa: F821
    if parts[-2:] == ["haproxy", "DOWN"]:
        return {"lb_haproxy_down": {"runner.lb.heal": [{"args": event}]}}
    return {"lb_carp_transition": {"runner.lb.transition": [{"args": event}]}}
