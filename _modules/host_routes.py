"""
The live side of a load balancer's static routes: read the routing table,
set a route.  Used by the ``host_routes.present`` state (``salt/host``); the
logic (what differs, which command) is ``_utils/lb_host.py``.

The persistent side is a file the ``host`` SLS writes with ``file.managed``
(Debian: ``/etc/network/if-up.d/lb-pair-routes``; FreeBSD:
``/etc/rc.conf.d/routing``), as ``lb.preview`` lists it.
"""

import logging

from salt.exceptions import CommandExecutionError

import lb_fresh
import lb_host

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "host_routes"
__func_alias__ = {"set_": "set"}


def __virtual__():
    if __grains__.get("kernel") not in ("Linux", "FreeBSD"):
        return (False, "host_routes: Linux and FreeBSD only")
    return __virtualname__


def _family():
    return "FreeBSD" if __grains__.get("kernel") == "FreeBSD" else "Debian"


def _run(argv):
    res = __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True, output_loglevel="debug")
    return res["retcode"], res.get("stdout", ""), res.get("stderr", "")


def live(destinations=None):
    """
    The live IPv4 routes: ``{destination: gateway}`` (gateway None for a
    route with no next hop).  Linux: the main table, in one ``ip -4 route
    show``.  FreeBSD: one ``route -n get -net`` per destination given (its
    best match; only an exact match is listed).

    destinations
        The networks to look up (FreeBSD needs them; Linux lists all and
        keeps these when given).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' host_routes.live
        salt 'lb*' host_routes.live '["198.18.4.0/23"]'
    """
    if _family() == "Debian":
        code, out, err = _run(["ip", "-4", "route", "show", "table", "main"])
        if code != 0:
            raise CommandExecutionError(f"ip -4 route show failed (exit {code}): {err.strip()}")
        table = lb_host.linux_routes(out)
        if destinations:
            wanted = frozenset(destinations)
            table = {d: g for d, g in table.items() if d in wanted}
        return table
    out = {}
    for dest in destinations or []:
        _, text, _ = _run(["route", "-n", "get", "-net", dest])
        found = lb_host.freebsd_route(text)
        if found["destination"] == dest:
            out[dest] = found["gateway"]
    return out


def set_(destination, gateway, present=False):
    """
    Route ``destination`` through ``gateway`` now (not persistent: the
    ``host`` SLS writes the file that does it at boot).  Linux: ``ip -4 route
    replace``; FreeBSD: ``route add``, or ``route change`` with
    ``present=True`` (the destination is routed elsewhere already).

    CLI Example:

    .. code-block:: bash

        salt lb-a host_routes.set 198.18.4.0/23 198.18.3.254
    """
    argv = lb_host.route_argv(_family(), {"destination": destination, "gateway": gateway, "present": present})
    code, _, err = _run(argv)
    if code != 0:
        raise CommandExecutionError(f"`{' '.join(argv)}` failed (exit {code}): {err.strip()}")
    return True
