"""OSPF and BGP configuration per node (OpenOSPFD / OpenBGPD syntax, as the seed).

Pure functions of the normalized model.  What differs from the seed:

- no `announce all` (gone from OpenBGPD since 6.4, and it announced every
  VIP from both nodes, drawing traffic to the BACKUP).  Outbound, a neighbor
  is only ever allowed the pair's VIPs as /32s; which of them are announced
  is decided at run time by the CARP transition hooks (`bgpctl network add`
  on MASTER, `bgpctl network delete` on BACKUP), so only the node holding a
  VIP announces it.  Nothing is announced until a hook (or the state that
  re-checks) says so.
- explicit `deny from any` / `deny to any` then the allows: a neighbor
  cannot inject routes we did not ask for.
- the md5sig key makes the file secret: mode 0600, redacted in previews.
"""

from __future__ import annotations

PATHS = {
    "FreeBSD": {"bgpd": "/usr/local/etc/bgpd.conf", "ospfd": "/usr/local/etc/ospfd.conf"},
    "Debian": {"bgpd": "/etc/bgpd.conf"},
}


def _device(iface: dict, os_family: str) -> str:
    dev = iface["device"]
    return dev.get(os_family) or dev.get("default") or next(iter(dev.values()))


def vip_prefixes(pair: dict) -> list[str]:
    return [f"{g['vip'].ip}/32" for g in pair["carp"]["groups"].values()]


def render_bgpd(pair: dict, node_id: str, header: str, secret) -> str:
    bgp = pair["routing"]["bgp"]
    node = pair["nodes"][node_id]
    out = [
        f"# {header}",
        "# VIPs are announced only by the node that is CARP MASTER for them:",
        "# the transition hooks run `bgpctl network add|delete <vip>/32`.",
        f"AS {bgp['asn']}",
        f"router-id {node['router_id']}",
        "",
    ]
    for nb in bgp["neighbors"].values():
        out += [f"neighbor {nb['address']} {{", f"\tremote-as {nb['remote_as']}", f'\tdescr "{nb["descr"]}"']
        out.append(f"\tlocal-address {nb['local_address'][node_id]}")
        if nb["md5sig_password"]:
            out.append(f"\ttcp md5sig password {secret(nb['md5sig_password'])}")
        if nb["med"] is not None:
            out.append(f"\tset med {nb['med']}")
        if nb["localpref"] is not None:
            out.append(f"\tset localpref {nb['localpref']}")
        for c in nb["communities"]:
            out.append(f"\tset community {c}")
        out += ["}", ""]
    out += ["deny from any", "deny to any"]
    prefixes = " ".join(vip_prefixes(pair))
    for nb in bgp["neighbors"].values():
        out.append(f"allow from {nb['address']}")
        out.append(f"allow to {nb['address']} prefix {{ {prefixes} }}")
    return "\n".join(out) + "\n"


def render_ospfd(pair: dict, node_id: str, os_family: str, header: str) -> str:
    ospf = pair["routing"]["ospf"]
    node = pair["nodes"][node_id]
    out = [f"# {header}", f"router-id {node['router_id']}", "", f"area {ospf['area']} {{"]
    for ifname, opts in ospf["interfaces"].items():
        dev = _device(node["interfaces"][ifname], os_family)
        body = []
        if opts["passive"]:
            body.append("\t\tpassive")
        if opts["metric"] is not None:
            body.append(f"\t\tmetric {opts['metric']}")
        if body:
            out += [f"\tinterface {dev} {{"] + body + ["\t}"]
        else:
            out.append(f"\tinterface {dev}")
    out.append("}")
    return "\n".join(out) + "\n"


def render(pair: dict, node_id: str, os_family: str, header: str, secret, file_cls) -> dict:
    """{path: File} for the routing daemons this node runs (none without
    `routing` in the pillar).  OSPF on Linux is left to the routing work."""
    files = {}
    routing = pair["routing"]
    paths = PATHS[os_family]
    if routing["bgp"] is not None:
        files[paths["bgpd"]] = file_cls(render_bgpd(pair, node_id, header, secret), mode="0600", secret=True)
    if routing["ospf"] is not None and "ospfd" in paths:
        files[paths["ospfd"]] = file_cls(render_ospfd(pair, node_id, os_family, header), mode="0600")
    return files
