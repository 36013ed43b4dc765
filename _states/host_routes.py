"""
A load balancer's static routes, live (``salt/host``).

``host_routes.present`` compares the routing table with the pair's routes (given
by the SLS from ``lb.host``) and sets the ones missing or going through
another gateway.  The file that sets them at boot is a ``file.managed`` of
the same SLS.  A route removed from the pillar is not removed live (it is
gone from the boot file, so at the next boot).
"""

from salt.exceptions import CommandExecutionError

import lb_fresh
import lb_host
import lb_state

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)


def __virtual__():
    if "host_routes.live" not in __salt__:
        return (False, "host_routes: the host_routes execution module is not loaded")
    return "host_routes"


def present(name, routes=None):
    """
    The live routing table holds each of ``routes``.

    name
        A label (the pair's name).
    routes
        ``[{"name", "destination", "gateway"}]``, as ``lb.host`` gives them.
    """
    ret = lb_state.ret(name)
    wanted = routes or []
    try:
        live = __salt__["host_routes.live"]([r["destination"] for r in wanted])
    except CommandExecutionError as exc:
        return dict(ret, result=False, comment=f"cannot read the routing table: {exc}")
    todo = lb_host.route_changes(wanted, live)
    if not todo:
        return dict(ret, comment=f"{len(wanted)} static routes are live")
    changes = {r["destination"]: {"old": f"via {r['old']}" if r["old"] else None, "new": f"via {r['gateway']}"} for r in todo}
    what = ", ".join(f"{r['destination']} via {r['gateway']}" for r in todo)
    if __opts__["test"]:
        return dict(ret, result=None, changes=changes, comment=f"would route {what}")
    failed = []
    for r in todo:
        try:
            __salt__["host_routes.set"](r["destination"], r["gateway"], present=r["present"])
        except CommandExecutionError as exc:
            failed.append(str(exc))
    live = __salt__["host_routes.live"]([r["destination"] for r in wanted])
    left = lb_host.route_changes(wanted, live)
    done = {d: c for d, c in changes.items() if d not in {r["destination"] for r in left}}
    if left:
        missing = ", ".join(f"{r['destination']} via {r['gateway']}" for r in left)
        return dict(ret, result=False, changes=done, comment=f"still not routed: {missing}" + ("; " + "; ".join(failed) if failed else ""))
    return dict(ret, changes=done, comment=f"routed {what}")
