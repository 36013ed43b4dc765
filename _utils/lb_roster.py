"""A salt-ssh roster from the topology: every node of every pair (or of the
pairs named), addressed on its management interface, so that
`salt-ssh 'lb*' state.apply` reaches the same hosts the minions are.

The management interface is the one the pair's HAProxy stats page binds to
(`haproxy.stats.interface`, `mgmt` by default) unless one is named.  Pure:
the topology model in, a dict out (lb.roster renders it as YAML); errors
name their pillar path.
"""

from __future__ import annotations

import lb_topology
import lb_topology_haproxy
from lb_topology import Finding, TopologyError

DEFAULT_INTERFACE = lb_topology_haproxy.STATS_DEFAULTS["interface"]

# Roster keys a caller may set for every entry (Salt's roster options; the
# host comes from the topology).
OPTIONS = (
    "user",
    "port",
    "priv",
    "sudo",
    "tty",
    "timeout",
    "thin_dir",
    "set_path",
    "minion_opts",
    "ssh_options",
    "identities_only",
)


def roster(model: dict, pairs=None, interface: str | None = None, **options) -> dict:
    """{node id: {"host": its management address, **options}} for the nodes
    of `pairs` (default: every pair), in the topology's order.

    interface
        The node interface to address (default: the pair's stats interface,
        else `mgmt`).
    options
        Roster options given to every entry (see OPTIONS), e.g. user=root.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown roster options {unknown}; known: {', '.join(OPTIONS)}")
    names = list(model["pairs"]) if pairs is None else ([pairs] if isinstance(pairs, str) else list(pairs))
    errors: list[Finding] = []
    out: dict[str, dict] = {}
    for name in names:
        pair = model["pairs"].get(name)
        if pair is None:
            errors.append(Finding(f"{lb_topology.ROOT}:pairs:{name}", f"no such pair (pairs: {', '.join(model['pairs'])})"))
            continue
        stats = pair.get("haproxy", {}).get("stats") or {}
        iface = interface or stats.get("interface") or DEFAULT_INTERFACE
        for node_id, node in pair["nodes"].items():
            intf = node["interfaces"].get(iface)
            if intf is None:
                errors.append(
                    Finding(
                        f"{lb_topology.ROOT}:pairs:{name}:nodes:{node_id}:interfaces:{iface}",
                        f"is missing: the roster reaches each node on its {iface!r} interface "
                        f"(the node has {', '.join(node['interfaces'])}); give interface=",
                    )
                )
                continue
            out[node_id] = {"host": str(intf["address"]), **options}
    if errors:
        raise TopologyError(errors)
    return out
