"""
salt-ssh's side of the ``lb`` module (a salt-ssh wrapper module).

Under salt-ssh, an execution module the state tree calls while it is
rendered runs on the target with ``salt-call --local``, where the master's
pillar is not: ``lb.roles`` there finds no topology, and the top file
(``salt/top.sls``) would give a host no state at all.  This wrapper replaces
``lb.roles`` for salt-ssh: it runs where salt-ssh compiles the run, with the
pillar salt-ssh compiled for that target and the target's grains, over the
same logic (``_utils/lb_topology.py``).  Its answer says ``agentless: True``:
the top file then assigns only the states that work without a minion
(docs/agentless.md).  Every other ``lb.*`` function runs on the target.

salt-ssh finds it through ``module_dirs: [<repository>]`` in its config
(``<dir>/_wrapper``; the lab's: lab/sshcfg.py).  Not ``wrapper_dirs``: salt-ssh
3008 builds the loader it runs a wrapper with from the target's options plus
``module_dirs``, so a ``wrapper_dirs`` entry is seen by the first check only.
"""

import logging
import os
import sys

log = logging.getLogger(__name__)

__virtualname__ = "lb"


def __virtual__():
    return __virtualname__


def _lb_topology():
    # salt-ssh's wrapper loader does not put the master's utils_dirs on
    # sys.path (and its __opts__ are the target's): take them from the
    # master's opts, else the repository's _utils beside this file
    master = (__context__ or {}).get("master_opts") or {}
    dirs = list(master.get("utils_dirs") or []) + [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_utils")]
    for path in dirs:
        if path not in sys.path and os.path.isdir(path):
            sys.path.append(path)
    import lb_topology  # pylint: disable=import-outside-toplevel

    return lb_topology


def roles(topology=None):
    """
    ``lb.roles`` for salt-ssh: ``{"lb": [...], "galera": [...], "routing": [...],
    "agentless": True}`` from the pillar salt-ssh compiled for the target (or
    a topology file on the master, ``topology=PATH``).

    CLI Example:

    .. code-block:: bash

        salt-ssh 'lb*' lb.roles
    """
    lb_topology = _lb_topology()
    try:
        raw = lb_topology.load_file(topology) if topology else __pillar__.get(lb_topology.ROOT)
    except (OSError, lb_topology.TopologyError) as exc:
        raise ValueError(f"cannot read topology {topology}: {exc}") from exc
    out = lb_topology.minion_roles(raw, __opts__["id"], __grains__.get("ipv4", []))
    if out["invalid"]:
        log.error("lb.roles: the topology is invalid: %s; run lb.validate", out["invalid"])
    out["agentless"] = True
    return out


def host(node=None, os_family=None, topology=None):
    """
    ``lb.host`` for salt-ssh: what the ``host`` SLS applies to the target,
    from the pillar salt-ssh compiled for it (the SLS calls this while it is
    rendered, where the target has no pillar).  None of it is secret.

    CLI Example:

    .. code-block:: bash

        salt-ssh 'lb*' lb.host
    """
    lb_topology = _lb_topology()
    import lb_host  # pylint: disable=import-outside-toplevel

    raw = lb_topology.load_file(topology) if topology else __pillar__.get(lb_topology.ROOT)
    if raw is None:
        raise ValueError(f"the pillar has no 'lb' key for {__opts__.get('id')}")
    report = lb_topology.check(raw)
    if report.errors:
        raise ValueError(f"the topology is invalid ({len(report.errors)} errors); run lb.validate")
    return lb_host.plan(report.model, node or __opts__["id"], os_family or __grains__.get("os_family"))
