"""OSPF and BGP configuration per node, and the hook that makes the VIP
announcements follow CARP.

Pure functions of the normalized model (no Salt, no I/O).  Daemons:

- FreeBSD: OpenBGPD's bgpd.conf and OpenOSPFD's ospfd.conf, the seed's syntax.
- Linux: BIRD 2 (one daemon, one file for BGP and OSPF, ``bird -p`` as the
  config check, ``birdc configure`` as a soft reconfiguration); see
  docs/routing.md for why.  ``render`` on Debian also keeps OpenBGPD's
  /etc/bgpd.conf out: one BGP speaker per node.

What differs from the seed:

- no `announce all` (gone from OpenBGPD since 6.4, and it announced every
  VIP from both nodes, drawing traffic to the BACKUP).  Outbound, a neighbor
  is only ever allowed the pair's VIPs as /32s, and a VIP is announced only
  by the node that holds it as CARP MASTER:
  - FreeBSD: the CARP transition hook (lb-carp-event, from devd) runs
    ``lb-routing-vip VHID STATE`` (salt/routing/files/lb-routing-vip.sh,
    its settings from ``hook_config``), which announces while
    MASTER and not in maintenance and withdraws otherwise: ``bgpctl network
    add|delete <vip>/32`` plus a ``redistribute`` line for ospfd (an
    included file, ``ospfctl reload``).  FreeBSD keeps a BACKUP's CARP
    address configured, so the transition has to decide.
  - Linux needs no hook: the VIP is a host address there
    (``lb_view.linux_vip``), on the node only while it is MASTER, and
    BIRD's ``direct`` protocol ``lb_vips`` turns each VIP address into its
    /32 route the moment the kernel adds it and withdraws it the moment the
    kernel removes it (netlink).  The announcement *is* the address: a node
    never announces a VIP it does not hold, not even for the time a hook
    would take to run, and in maintenance its announcements leave with its
    addresses, when the peer takes them.
  Nothing else is announced; the routing state re-checks (``desired``).
- explicit `deny from any` / `deny to any` then the allows (OpenBGPD); in
  BIRD, export filters that pass only ``lb_vips`` routes: a neighbor cannot
  inject routes we did not ask for, and a VIP learned from the peer (OSPF)
  is never re-announced or installed.
- the md5sig key makes the file secret: mode 0600 (BIRD: 0640, root:bird,
  since BIRD re-reads it as user bird), redacted in previews.
"""

from __future__ import annotations

import shlex

import lb_grammar
import lb_parameters

# FreeBSD's announcement hook: a file of the state tree, installed by salt/routing
HOOK_SOURCE = "salt://routing/files/lb-routing-vip.sh"
# The daemons' files and tools are lb_parameters' routing section (the
# `lb_settings:routing` overrides them: routing.paths).


def bird_pidfile(run_dir: str) -> str:
    """BIRD's pid file (`bird -P`): in its runtime directory."""
    return f"{run_dir}/bird.pid"


VIPS_PROTOCOL = "lb_vips"  # BIRD's direct protocol: the VIP addresses on the node, as /32 routes


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
        out += [f"neighbor {nb['address']} {{", f"\tremote-as {nb['remote_as']}", f"\tdescr {lb_grammar.bgpd_string(nb['descr'])}"]
        out.append(f"\tlocal-address {nb['local_address'][node_id]}")
        if nb["md5sig_password"]:
            # quoted: unquoted, OpenBGPD would end the key at a '#' (a comment)
            out.append(f"\ttcp md5sig password {lb_grammar.bgpd_string(secret(nb['md5sig_password']))}")
        if nb.get("hold_time") is not None:
            out.append(f"\tholdtime {nb['hold_time']}")
        if nb.get("bfd"):
            out.append("\t# bfd: OpenBGPD has none (BIRD on Linux uses it); holdtime bounds the detection here")
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


def render_ospfd(pair: dict, node_id: str, os_family: str, header: str, vips_file: str | None = None) -> str:
    """ospfd.conf; with ``vips_file``, an include of the file the hook
    rewrites with a ``redistribute <vip>/32`` line per VIP this node holds."""
    ospf = pair["routing"]["ospf"]
    node = pair["nodes"][node_id]
    out = [f"# {header}", f"router-id {node['router_id']}", ""]
    if vips_file:
        out += [
            "# the VIPs this node is CARP MASTER for (lb-routing-vip rewrites it, then ospfctl reload)",
            f"include {lb_grammar.bgpd_string(vips_file)}",
            "",
        ]
    out.append(f"area {ospf['area']} {{")
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


def _bird_device(name: str) -> str:
    """An interface name as a BIRD string (BIRD has no escape in strings:
    lb_grammar refuses what it cannot hold)."""
    return lb_grammar.bird_string(name)


def render_bird(pair: dict, node_id: str, header: str, secret) -> str:
    """BIRD 2's bird.conf for one node: OSPF and BGP from the same pillar
    keys as ospfd.conf and bgpd.conf, with the seed's semantics:

    - OpenOSPFD ``passive`` is BIRD's ``stub yes``, ``metric`` its ``cost``;
    - a neighbor's ``set med|localpref|community`` applies, as in OpenBGPD,
      to the routes received from it (the import filter);
    - ``tcp md5sig password`` is ``password``; ``holdtime`` ``hold time``;
      ``bfd`` (BIRD only) ``bfd on`` plus a ``protocol bfd``.

    The announced VIPs are the routes of the direct protocol ``lb_vips``
    on the VIP interfaces: a /32 for each VIP address the node holds (a
    host address on Linux, ``lb_view.linux_vip``), there exactly while
    the kernel has the address.  Only those routes are exported to BGP and
    OSPF; learned routes go to the kernel except the pair's VIPs.  OSPF
    leaves the VIP addresses out of its interfaces (negative patterns):
    otherwise it would also originate each as a stub network in its router
    LSA, which it re-originates only every few seconds, so a VIP that left
    would stay announced that long.
    """
    routing = pair["routing"]
    node = pair["nodes"][node_id]
    vips = ", ".join(vip_prefixes(pair))
    vip_devs = sorted({_device(node["interfaces"][g["interface"]], "Debian") for g in pair["carp"]["groups"].values()})
    not_vips = "".join(f'-"*" {p}, ' for p in vip_prefixes(pair))  # on the VIP interfaces' OSPF lines
    out = [
        f"# {header}",
        "# A VIP is announced exactly while its address is on this node (CARP MASTER):",
        f"# the direct protocol {VIPS_PROTOCOL} follows the kernel's addresses.",
        f"router id {node['router_id']};",
        "log syslog all;",
        "",
        f"define LB_VIPS = [ {vips} ];",
        "",
        "protocol device {",
        "}",
        "",
        "# routes learned from neighbors go to the kernel, never a VIP of the pair",
        "protocol kernel {",
        "\tipv4 {",
        "\t\timport none;",
        "\t\texport filter {",
        "\t\t\tif net ~ LB_VIPS then reject;",
        "\t\t\tif source ~ [ RTS_BGP, RTS_OSPF, RTS_OSPF_IA, RTS_OSPF_EXT1, RTS_OSPF_EXT2 ] then accept;",
        "\t\t\treject;",
        "\t\t};",
        "\t};",
        "}",
        "",
        "# the VIP addresses on this node, each a /32 route while the kernel has it",
        f"protocol direct {VIPS_PROTOCOL} {{",
        "\tipv4 { import where net ~ LB_VIPS; };",
        "\tinterface " + ", ".join(_bird_device(d) for d in vip_devs) + ";",
        "}",
    ]
    export = f'export where proto = "{VIPS_PROTOCOL}" && net ~ LB_VIPS;'
    ospf = routing["ospf"]
    if ospf is not None:
        out += ["", "protocol ospf v2 lb_ospf {", "\tipv4 {", "\t\timport all;", f"\t\t{export}", "\t};", f"\tarea {ospf['area']} {{"]
        for ifname, opts in ospf["interfaces"].items():
            dev = _bird_device(_device(node["interfaces"][ifname], "Debian"))
            body = []
            if opts["passive"]:
                body.append("stub yes;")
            if opts["metric"] is not None:
                body.append(f"cost {opts['metric']};")
            skip = not_vips if _device(node["interfaces"][ifname], "Debian") in vip_devs else ""
            out.append(f"\t\tinterface {skip}{dev} {{ {' '.join(body)} }};".replace("{  }", "{ }"))
        out += ["\t};", "}"]
    bgp = routing["bgp"]
    if bgp is not None:
        if any(nb.get("bfd") for nb in bgp["neighbors"].values()):
            out += ["", "protocol bfd {", "}"]
        for name, nb in bgp["neighbors"].items():
            sets = []
            if nb["med"] is not None:
                sets.append(f"bgp_med = {nb['med']};")
            if nb["localpref"] is not None:
                sets.append(f"bgp_local_pref = {nb['localpref']};")
            for c in nb["communities"]:
                a, b = c.split(":")
                sets.append(f"bgp_community.add(({a},{b}));")
            out += [
                "",
                f"protocol bgp {_bird_name(name)} {{",
                f"\tdescription {lb_grammar.bird_string(nb['descr'])};",
                f"\tlocal {nb['local_address'][node_id]} as {bgp['asn']};",
                f"\tneighbor {nb['address']} as {nb['remote_as']};",
            ]
            if nb["md5sig_password"]:
                out.append(f"\tpassword {lb_grammar.bird_string(secret(nb['md5sig_password']))};")
            if nb.get("hold_time") is not None:
                out.append(f"\thold time {nb['hold_time']};")
            if nb.get("bfd"):
                out.append("\tbfd on;")
            # back within seconds after a lost session (a cut link, BFD); the
            # backoff grows only to 5 s, so a returning link is used soon:
            # BIRD would wait 60 s by default, while the node may be MASTER
            out += ["\tconnect retry time 5;", "\terror wait time 1, 5;"]
            out += [
                "\tipv4 {",
                f"\t\timport filter {{ {' '.join(sets + ['accept;'])} }};",
                f"\t\t{export}",
                "\t};",
                "}",
            ]
    return "\n".join(out) + "\n"


def _bird_name(name: str) -> str:
    """A BIRD protocol name from a pillar neighbor name (letters, digits, _);
    lb_topology refuses names BIRD reserves or two names giving one symbol."""
    return lb_grammar.bird_symbol(name)


def node_vips(pair: dict, node_id: str, os_family: str) -> dict[int, tuple[str, str]]:
    """{vhid: (device, vip address)} of the pair's groups on this node."""
    node = pair["nodes"][node_id]
    return {
        int(v): (_device(node["interfaces"][g["interface"]], os_family), str(g["vip"].ip))
        for v, g in sorted(pair["carp"]["groups"].items())
    }


def desired(status: dict, maintenance: bool, linux: bool = True) -> set[str]:
    """The VIP addresses this node should announce, from ``carp.status``.

    - Linux: the VIP addresses on the node (``holds_vip``), whatever the
      recorded state: BIRD's direct protocol announces exactly those, and
      the address is what the node serves (a MASTER adds it, ucarp only
      after an ARP probe; in maintenance it goes when the peer takes over).
    - FreeBSD: MASTER for the group and not in maintenance, the rule
      lb-routing-vip applies in sh (a BACKUP keeps its CARP address).
    """
    out = set()
    for g in (status or {}).values():
        if not isinstance(g, dict) or not g.get("vip"):
            continue
        if linux:
            if not g.get("holds_vip"):
                continue
        elif maintenance or g.get("state") != "MASTER":
            continue
        out.add(str(g["vip"]).split("/")[0])
    return out


def parse_bird_routes(text: str) -> set[str]:
    """The /32 prefixes in ``birdc show route protocol lb_vips`` output."""
    out = set()
    for line in (text or "").splitlines():
        first = line.split()[0] if line.split() else ""
        if first.endswith("/32") and first[0].isdigit():
            out.add(first[:-3])
    return out


def parse_bgpctl_networks(text: str) -> set[str]:
    """The /32 prefixes in ``bgpctl show network`` output."""
    out = set()
    for line in (text or "").splitlines():
        for word in line.split():
            if word.endswith("/32") and word[0].isdigit():
                out.add(word[:-3])
    return out


def parse_redistribute(text: str) -> set[str]:
    """The /32 prefixes of ``redistribute <vip>/32`` lines (the file
    lb-routing-vip writes for ospfd to include)."""
    out = set()
    for line in (text or "").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "redistribute" and words[1].endswith("/32"):
            out.add(words[1][:-3])
    return out


def hook_config(os_family: str, vips: dict[int, tuple[str, str]], paths: dict | None = None, bgp: bool = True, ospf: bool = True) -> str:
    """lb-routing-vip.conf: the settings of FreeBSD's announcement hook
    (salt/routing/files/lb-routing-vip.sh, which sources this file from
    beside itself; OpenBGPD and OpenOSPFD), one sh assignment a line: the
    node's VIPs by vhid, which protocols to drive (``bgp``, ``ospf``: the
    pair has them), and the paths of lockf's lock, the control tools,
    ospfd's included redistribute file and the maintenance intent.  Linux
    has no hook: BIRD's direct protocol follows the VIP addresses
    themselves (``render_bird``).  Every value must be a word sh neither
    splits nor expands (lb_grammar; ValueError naming it), and is quoted
    besides."""
    if not (bgp or ospf):
        raise ValueError("lb-routing-vip needs BGP or OSPF")
    if os_family != "FreeBSD":
        raise ValueError(f"lb-routing-vip is FreeBSD's announcement hook; {os_family} announces with BIRD's direct protocol")
    p = lb_parameters.of(os_family, "routing")
    p.update(paths or {})
    for key, value in p.items():
        if value is not None:
            lb_grammar.require(lb_grammar.SH_PATH, value, f"lb_settings:routing:{key}")
    for v, (d, a) in vips.items():
        lb_grammar.require(lb_grammar.DEVICE, d, f"vhid {v} device")
        lb_grammar.require(lb_grammar.IPV4, a, f"vhid {v} VIP")
    values = {
        "vips": " ".join(f"{int(v)}={d},{a}" for v, (d, a) in sorted(vips.items())),
        "bgp": "yes" if bgp else "no",
        "ospf": "yes" if ospf else "no",
        **{k: p[k] for k in ("lock", "bgpctl", "ospfctl", "ospfd_vips", "maintenance")},
    }
    lines = ["# lb-routing-vip's settings, rendered by the routing module (lb_routing.hook_config). Do not edit."]
    return "\n".join(lines + [f"{k}={shlex.quote(v)}" for k, v in values.items()]) + "\n"


def render(pair: dict, node_id: str, os_family: str, header: str, secret, file_cls) -> dict:
    """{path: File} for the routing daemons this node runs (none without
    `routing` in the pillar): FreeBSD bgpd.conf, ospfd.conf and the
    announcement hook lb-routing-vip (its program, from the state tree, and
    its settings); Linux bird.conf."""
    files = {}
    routing = pair["routing"]
    if routing["bgp"] is None and routing["ospf"] is None:
        return files
    paths = lb_parameters.of(os_family, "routing")
    if os_family == "FreeBSD":
        if routing["bgp"] is not None:
            files[paths["bgpd"]] = file_cls(render_bgpd(pair, node_id, header, secret), mode="0600", secret=True)
        if routing["ospf"] is not None:
            files[paths["ospfd"]] = file_cls(render_ospfd(pair, node_id, os_family, header, paths["ospfd_vips"]), mode="0600")
        conf = hook_config(os_family, node_vips(pair, node_id, os_family), bgp=routing["bgp"] is not None, ospf=routing["ospf"] is not None)
        files[paths["hook"]] = file_cls("", mode="0755", source=HOOK_SOURCE)
        files[paths["hook_conf"]] = file_cls(conf, mode="0644")
    else:
        secret_file = any(nb["md5sig_password"] for nb in (routing["bgp"] or {"neighbors": {}})["neighbors"].values())
        files[paths["bird"]] = file_cls(render_bird(pair, node_id, header, secret), mode="0640", secret=secret_file)
    return files
