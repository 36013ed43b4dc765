"""The lab's upstream router (up1): BIRD 2 peering by BGP with both load
balancers, as the provider's router would.  Its configuration comes from the
lab pillar's routing:bgp (the neighbor is up1: its AS is the neighbor's
remote_as, its peers are the pair's nodes, with the same md5sig key, hold
time and BFD).  It accepts what the nodes announce, exports nothing back, and
installs what it learned into its kernel: the only routes to the VIPs it has
(lab/plan.py gives it no route covering them).

Pure: `bird_conf` computes text; lab/supervisor.py writes and starts it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lab.plan import Plan

SOCKET = "/run/bird-upstream.ctl"  # in up1's private /run


def neighbor(pillar: Path) -> dict:
    """The pillar's first BGP neighbor and the pair's ASN: {asn, remote_as, address, ...}."""
    doc = yaml.safe_load(Path(pillar).read_text())
    pair = next(iter(doc["lb"]["pairs"].values()))
    bgp = pair["routing"]["bgp"]
    nb = dict(next(iter(bgp["neighbors"].values())))
    nb["asn"] = bgp["asn"]
    return nb


def bird_conf(plan: Plan, pillar: Path) -> str:
    host = plan.host("up1")
    device, peers = host.peers
    nb = neighbor(pillar)
    own = next(i.address.split("/")[0] for i in host.interfaces if i.device == device)
    out = [
        "# The lab's upstream router (lab/upstream.py). Not the product's.",
        f"router id {own};",
        "log stderr all;",
        "",
        "protocol device {",
        "}",
        "",
        "protocol kernel {",
        "\tipv4 {",
        "\t\timport none;",
        "\t\texport all;",
        "\t};",
        "}",
    ]
    if nb.get("bfd"):
        out += ["", "protocol bfd {", "}"]
    for n, peer in enumerate(peers, start=1):
        out += [
            "",
            f"protocol bgp lb{n} {{",
            f"\tlocal {own} as {nb['remote_as']};",
            f"\tneighbor {peer} as {nb['asn']};",
        ]
        if nb.get("md5sig_password"):
            out.append(f'\tpassword "{nb["md5sig_password"]}";')
        if nb.get("hold_time"):
            out.append(f"\thold time {nb['hold_time']};")
        if nb.get("bfd"):
            out.append("\tbfd on;")
        out += ["\tconnect retry time 5;", "\terror wait time 1, 5;"]
        out += ["\tipv4 {", "\t\timport all;", "\t\texport none;", "\t};", "}"]
    return "\n".join(out) + "\n"


def command(config: str) -> list[str]:
    """BIRD in the foreground (a supervisor daemon), its socket in up1's /run."""
    return ["/usr/sbin/bird", "-f", "-c", config, "-s", SOCKET, "-P", "/run/bird-upstream.pid"]
