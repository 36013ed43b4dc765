"""The pillar gate's logic: what a change to the `lb` pillar means.

Pure Python, no Salt (the Salt side is `tools/pillar_gate.py`: it renders
the pillar repository's SLS through Salt's own renderers and runs
`haproxy -c` through the haproxy_cfg module).

- `haproxy_findings`: HAProxy's `haproxy -c` messages on a rendered config,
  each at the pillar path that produced the line HAProxy names
  (`lb:pairs:edge:haproxy:pools:web_a:servers:http_srv-9`).
- `affected`: which minions a change of topology touches, and with which
  states (the post-receive hook applies exactly those).
"""

from __future__ import annotations

import re

import haproxy_config
import lb_probe
import lb_render
from lb_topology import ROOT, Finding

# HAProxy names the line: "parsing [/path/haproxy.cfg:42] : ..."
_LINE_RE = re.compile(r"\[[^\]\s]*?:(\d+)\]")
# ... or the proxy (and server): "proxy 'haproxy_198.18.2.5_80', server 'http_srv-1': ..."
_PROXY_RE = re.compile(r"proxy '([^']+)'(?:, server '([^']+)')?")

# The SLS a change applies, in this order.  Which SLS writes which file is
# lb_render.writer (the preview's `state`), the same table the states and
# the preview contract test use.
LB_STATE_ORDER = ("host", "carp", "haproxy", "routing")


def _p(*parts) -> str:
    return ":".join(str(p) for p in parts)


def section_paths(pair: dict, text: str) -> dict[int, str]:
    """{line number (1-based): pillar path} for every line of a rendered
    haproxy.cfg of `pair`."""
    base = _p(ROOT, "pairs", pair["name"], "haproxy")
    hp = pair["haproxy"]
    by_name = {lst["name"]: key for key, lst in hp["listeners"].items()}
    users_by_name = {ul["name"]: key for key, ul in hp["userlists"].items()}
    out = {}
    here = base
    pool = None
    for n, line in enumerate(text.splitlines(), start=1):
        header = haproxy_config.header_of(line)
        if header:
            kind, name = header
            pool = None
            if kind in ("global", "defaults"):
                here = _p(base, kind)
            elif kind == "userlist" and name in users_by_name:
                here = _p(base, "userlists", users_by_name[name])
            elif kind == "listen" and name in by_name:
                here = _p(base, "listeners", by_name[name])
                pool = hp["listeners"][by_name[name]]["pool"]
            elif (kind, name) in (("listen", "stats"), ("frontend", "prometheus")):
                here = _p(base, "stats")
            else:
                here = base
            out[n] = here
            continue
        words = haproxy_config.words(line)
        if pool and words[:1] == ["server"] and len(words) > 1:
            out[n] = _p(base, "pools", pool, "servers", words[1])
        elif pool and words[:1] == ["default-server"]:
            out[n] = _p(base, "pools", pool, "default_server")
        elif pool and (words[:1] in (["tcp-check"], ["http-check"]) or words[:2] in (["option", "tcp-check"], ["option", "httpchk"])):
            out[n] = _p(base, "pools", pool, "check")
        elif words[:1] == ["user"] and len(words) > 1 and here.startswith(_p(base, "userlists")):
            out[n] = _p(here, "users", words[1])
        else:
            out[n] = here
    return out


def proxy_path(pair: dict, proxy: str, server: str | None = None) -> str | None:
    """The pillar path of a rendered proxy (and one of its servers)."""
    hp = pair["haproxy"]
    base = _p(ROOT, "pairs", pair["name"], "haproxy")
    for key, lst in hp["listeners"].items():
        if lst["name"] == proxy:
            if server and server in hp["pools"][lst["pool"]]["servers"]:
                return _p(base, "pools", lst["pool"], "servers", server)
            return _p(base, "listeners", key)
    if proxy in ("stats", "prometheus"):
        return _p(base, "stats")
    return None


def haproxy_findings(pair: dict, node_id: str, os_family: str, text: str, message: str) -> list[Finding]:
    """`haproxy -c`'s ALERT lines about the node's rendered config `text`,
    each as a Finding at the pillar path of the line, or the proxy and
    server, it names (the pair's `haproxy` key when it names none).  The
    closing "Fatal errors found" line only when it is the only one."""
    paths = section_paths(pair, text)
    base = _p(ROOT, "pairs", pair["name"], "haproxy")
    found = []
    alerts = [line for line in message.splitlines() if "[ALERT]" in line]
    if len(alerts) > 1:
        alerts = [line for line in alerts if "Fatal errors found" not in line]
    for line in alerts:
        m = _LINE_RE.search(line)
        path = paths.get(int(m.group(1)), base) if m else base
        if not m:
            pm = _PROXY_RE.search(line)
            if pm:
                path = proxy_path(pair, pm.group(1), pm.group(2)) or base
        what = line.split("]", 1)[1].strip() if "]" in line else line
        what = re.sub(r"^\(\d+\)\s*:\s*", "", what)
        found.append(Finding(path, f"haproxy -c rejects {node_id}'s config ({os_family}): {what}"))
    return found


# ---------------------------------------------------------------------------
# what a change touches


def _lb_files(model: dict, pair: dict, node_id: str, os_family: str) -> dict[str, str]:
    return {path: f.content for path, f in lb_render.render_node(model, node_id, os_family).items()}


def _state_of(path: str, os_family: str) -> str | None:
    return lb_render.writer(path, os_family)


def _all_states(pair: dict) -> list[str]:
    """Every SLS a node of `pair` gets (salt/top.sls): routing only with
    OSPF or BGP in the pair."""
    routing = pair.get("routing") or {}
    return [s for s in LB_STATE_ORDER if s != "routing" or routing.get("bgp") is not None or routing.get("ospf") is not None]


def affected(old_model: dict | None, new_model: dict, os_family: str = "Debian") -> dict:
    """What a change from `old_model` to `new_model` touches:

        {"lb": {node id: [states]}, "galera": {pair name: [server addresses]},
         "unassigned": {node id: [paths no state writes]}}

    A load balancer is affected when a file it gets changes (compared by
    rendered content, secrets included); each such file maps to the state
    that writes it.  A pair's database servers are affected when the probe's
    files change; their addresses (old and new) are given, since the
    minions running the probe are found by address (`lb.roles`).  A node
    that is new, or gone, gets every LB state."""
    out = {"lb": {}, "galera": {}, "unassigned": {}}
    old_pairs = (old_model or {}).get("pairs", {})
    for name, pair in new_model["pairs"].items():
        old_pair = old_pairs.get(name)
        for node_id in pair["nodes"]:
            new_files = _lb_files(new_model, pair, node_id, os_family)
            if old_pair is None or node_id not in old_pair["nodes"]:
                out["lb"][node_id] = _all_states(pair)
                continue
            old_files = _lb_files(old_model, old_pair, node_id, os_family)
            changed = sorted(p for p in set(new_files) | set(old_files) if new_files.get(p) != old_files.get(p))
            states = {_state_of(p, os_family) for p in changed}
            unassigned = [p for p in changed if _state_of(p, os_family) is None]
            if unassigned:
                out["unassigned"][node_id] = unassigned
            states.discard(None)
            if states:
                out["lb"][node_id] = [s for s in LB_STATE_ORDER if s in states]
        if pair.get("galera_probe"):
            new_probe = {p: f.content for p, f in lb_probe.render_probe(new_model, name, os_family).items()}
            old_probe = None
            if old_pair is not None and old_pair.get("galera_probe"):
                old_probe = {p: f.content for p, f in lb_probe.render_probe(old_model, name, os_family).items()}
            if new_probe != old_probe:
                addrs = {str(s["address"]) for s in lb_probe.galera_servers(pair)}
                if old_pair is not None:
                    addrs |= {str(s["address"]) for s in lb_probe.galera_servers(old_pair)}
                out["galera"][name] = sorted(addrs)
    for name, old_pair in old_pairs.items():
        for node_id in old_pair["nodes"]:
            if name not in new_model["pairs"] or node_id not in new_model["pairs"][name]["nodes"]:
                out["lb"].setdefault(node_id, _all_states(old_pair))
    return out


def primaries_last(model: dict, nodes) -> list[str]:
    """`nodes` ordered so that a node that is primary for a CARP group comes
    after its peer: the BACKUP changes first, the node serving the VIPs last."""

    def primary_count(node_id):
        return sum(1 for pair in model["pairs"].values() for g in pair["carp"]["groups"].values() if g["primary"] == node_id)

    return sorted(nodes, key=lambda n: (primary_count(n), n))
