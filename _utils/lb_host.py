"""What the `host` SLS applies to a load balancer: its sysctls and static
routes, live and persistent.  Pure functions, no Salt.

- `plan(model, node_id, os_family)`: the files the `host` SLS writes (the
  part of `lb_render.render_node` whose writer is "host"), the sysctl values
  of the node's sysctl file, and the pair's static routes;
- the live routing table, read from `ip -4 route show` (Linux) or
  `route -n get` (FreeBSD), and the commands that bring it to the pillar's
  routes (`ip -4 route replace`, `route add` / `route change`).

Persistence is the files: on Debian `/etc/sysctl.d/60-lb-pair.conf`
(systemd-sysctl at boot) and `/etc/network/if-up.d/lb-pair-routes`
(ifupdown); on FreeBSD the node's block in `/etc/sysctl.conf` and
`/etc/rc.conf.d/routing` (`static_routes`, read by rc.d/routing).
"""

from __future__ import annotations

import netaddr

import lb_parameters
import lb_render
import lb_topology

STATE = "host"


def sysctl_values(text: str) -> dict[str, str]:
    """``{key: value}`` of a sysctl file (``key = value`` or ``key=value``
    lines; comments and blank lines skipped), in file order."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def routes(pair: dict) -> list[dict]:
    """The pair's static routes: ``[{"name", "destination", "gateway"}]``,
    the destination as its network (``198.18.4.0/23``)."""
    return [{"name": r["name"], "destination": str(r["destination"].cidr), "gateway": str(r["gateway"])} for r in pair["routes"].values()]


def plan(model: dict, node_id: str, os_family: str, carp: dict | None = None) -> dict:
    """What the `host` SLS applies on `node_id`:

        {"os_family", "files": {path: {"content", "mode", "user", "group", "block", "link", "source"}},
         "sysctl_file": path, "sysctl": {key: value}, "routes": [...]}

    The files hold no secret (checked: a secret in one would be a bug).
    `carp`: the minion's `lb_settings:carp` settings (lb_render.render_node): its
    provider decides which units are enabled at boot."""
    pair, _ = lb_topology.find_node(model, node_id)
    files = {}
    for path, f in lb_render.render_node(model, node_id, os_family, carp=carp).items():
        if lb_render.writer(path, os_family, carp) != STATE:
            continue
        if f.secret:
            raise ValueError(f"{path} holds a secret; the host SLS shows its diff")
        files[path] = {
            "content": f.content,
            "mode": f.mode,
            "user": f.user,
            "group": f.group,
            "block": f.block,
            "link": f.link,
            "source": f.source,
        }
    sysctl_file = lb_parameters.of(os_family, "node")["sysctl_file"]
    return {
        "os_family": os_family,
        "files": files,
        "sysctl_file": sysctl_file,
        "sysctl": sysctl_values(files[sysctl_file]["content"]) if sysctl_file in files else {},
        "routes": routes(pair),
    }


# ---------------------------------------------------------------------------
# the live routing table


def linux_routes(text: str) -> dict[str, str | None]:
    """``{destination: gateway}`` from ``ip -4 route show table main``: one
    entry per line, the destination as a network (``default`` as
    ``0.0.0.0/0``, a bare address as a /32), gateway None for a route
    without ``via`` (on-link, unreachable, ...)."""
    out = {}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] in ("broadcast", "local", "multicast", "anycast", "nat"):
            continue
        if words[0] in ("unicast", "unreachable", "blackhole", "prohibit", "throw"):
            kind, words = words[0], words[1:]
        else:
            kind = "unicast"
        if not words:
            continue
        dest = "0.0.0.0/0" if words[0] == "default" else words[0]
        try:
            dest = str(netaddr.IPNetwork(dest).cidr)
        except (netaddr.AddrFormatError, ValueError):
            continue
        via = words[words.index("via") + 1] if "via" in words[:-1] and kind == "unicast" else None
        out.setdefault(dest, via)
    return out


def freebsd_route(text: str) -> dict[str, str | None]:
    """The answer of FreeBSD's ``route -n get -net <dest>``:
    ``{"destination": "198.18.4.0/23", "gateway": "198.18.3.254"}``
    (destination None when the output names none, e.g. "route has not been
    found").  FreeBSD answers with the best match, so the caller compares
    the destination."""
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    dest, mask = fields.get("destination"), fields.get("mask")
    if dest is None:
        return {"destination": None, "gateway": None}
    if dest == "default":
        dest, mask = "0.0.0.0", "0.0.0.0"
    try:
        net = netaddr.IPNetwork(f"{dest}/{mask or '255.255.255.255'}")
    except (netaddr.AddrFormatError, ValueError):
        return {"destination": None, "gateway": None}
    return {"destination": str(net.cidr), "gateway": fields.get("gateway")}


def route_changes(wanted: list[dict], live: dict[str, str | None]) -> list[dict]:
    """The routes of `wanted` that `live` ({destination: gateway}) lacks or
    has through another gateway: ``[{"name", "destination", "gateway",
    "old"}]`` (old: the live gateway, None when the route is missing)."""
    out = []
    for r in wanted:
        if r["destination"] in live and live[r["destination"]] == r["gateway"]:
            continue
        out.append(dict(r, old=live.get(r["destination"]), present=r["destination"] in live))
    return out


def route_argv(os_family: str, route: dict) -> list[str]:
    """The command that sets `route` live (one of `route_changes`): Linux
    ``ip -4 route replace``, FreeBSD ``route add`` or, when the destination
    is routed elsewhere, ``route change`` (what rc.d/routing runs at boot is
    ``route add`` of the same words)."""
    if os_family == "FreeBSD":
        verb = "change" if route.get("present") else "add"
        return ["route", "-n", verb, "-net", route["destination"], route["gateway"]]
    return ["ip", "-4", "route", "replace", route["destination"], "via", route["gateway"]]
