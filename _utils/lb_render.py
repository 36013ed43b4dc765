"""Per-node derivation and rendering: one topology in, every file a node gets out.

Pure functions of the normalized model from `lb_topology.load()`.  Output is
deterministic: the same model gives the same bytes (dict order comes from the
pillar, sets are sorted).

`lb_view.node_view(pair, node_id)` derives what differs between the two peers (advskew
and VRRP priority per group, which node is MASTER, the stats bind address).
`render_node(model, node_id, os_family)` returns {absolute path: File}.

Secrets (CARP passwords, the stats users' hashes, md5sig keys, TLS keys)
pass through `lb_view.Secrets`; with `redact=True` they render as `<redacted>` so a preview can be
shown or logged without leaking them.

The parts: lb_view (the node's view of its pair, the per-OS parameters, the
file record), lb_render_haproxy (haproxy.cfg, TLS), lb_render_linux (the
carp providers and the Debian host); FreeBSD's files, the whole node, the
preview's manifest and which SLS writes what are here.
"""

import os
from dataclasses import replace

import haproxy_config
import lb_boot
import lb_generation
import lb_parameters
import lb_render_haproxy
import lb_render_linux
import lb_routing
import lb_topology
from lb_view import FILE_GROUPS, HEADER, OS_FAMILIES, SHARED_FILES, File, Secrets, device, node_view


def _rc(key, value) -> str:
    return f'{key}="{value}"'


# libexec/rc/network.subr's get_if_var and ifalias_af_common look a device's
# variables up under its name with each of these turned into `_` (`ltr`):
# em1.100 -> ifconfig_em1_100.  A variable named after the raw device
# (`ifconfig_em1.100=...`) is no assignment at all: sh runs it as a command.
RC_IF_PUNCT = ".-/+"
# where FreeBSD keeps the rc.conf.d/netif and loader.conf lines the carp state writes
FREEBSD_CARP = lb_parameters.of("FreeBSD", "carp")


def rc_ifname(dev: str) -> str:
    """The part of an rc.conf variable name rc derives from device `dev`."""
    out = "".join("_" if ch in RC_IF_PUNCT else ch for ch in dev)
    if not out or not (out[0].isalpha() or out[0] == "_") or not all(ch.isalnum() or ch == "_" for ch in out):
        raise ValueError(f"device {dev!r} gives no rc.conf variable name (ifconfig_{out}); FreeBSD's rc maps only {RC_IF_PUNCT} to _")
    return out


def freebsd_alias_words(g: dict, secret=str) -> list[str]:
    """The ifconfig words of one CARP alias as rc.conf.d/netif holds them.
    rc.d/netif runs `ifconfig hn1 <words> alias` (network.subr's
    ifalias_af_common_handler appends the action), and the carp module
    runs the same argv live (carp_common.ifconfig_add), so the two cannot
    drift (tests/unit/test_freebsd_boot.py runs rc's own scripts on it)."""
    words = ["inet", "vhid", str(g["vhid"])]
    if g["advbase"] != 1:
        words += ["advbase", str(g["advbase"])]
    words += ["advskew", str(g["advskew"]), "pass", secret(g["password"])]
    # /32: the address lies in the interface's own subnet, which
    # already has its route (FreeBSD handbook, CARP section).
    words.append(f"{g['vip'].ip}/32")
    return words


def md5sig_used(pair: dict) -> bool:
    bgp = (pair.get("routing") or {}).get("bgp")
    return bool(bgp) and any(nb.get("md5sig_password") for nb in bgp["neighbors"].values())


def render_freebsd(model: dict, pair: dict, node_id: str, secret) -> dict[str, File]:
    view = node_view(pair, node_id)
    node = view["node"]
    head = f"# {HEADER.format(pair=pair['name'], node=node_id)}"
    files = {}

    rc = [head, _rc("hostname", node["hostname"])]
    rc.append(_rc("gateway_enable", "YES" if pair["sysctl"]["ip_forwarding"] else "NO"))
    # HAProxy under the product's rc.d/lb_haproxy (daemon(8) restarts it),
    # not the port's rc.d/haproxy, which starts it once
    rc.append(_rc("haproxy_enable", "NO"))
    rc.append(_rc(f"{lb_boot.FREEBSD_HAPROXY_SERVICE}_enable", "YES"))
    rc.append(_rc(f"{lb_boot.FREEBSD_BOOTHOLD_SERVICE}_enable", "YES"))
    routing = pair["routing"]
    if routing["bgp"] is not None:
        rc.append(_rc("openbgpd_enable", "YES"))
    if routing["ospf"] is not None:
        rc.append(_rc("openospfd_enable", "YES"))
    if md5sig_used(pair):
        # OpenBGPD's `tcp md5sig` needs TCP_SIGNATURE: the tcpmd5 module on
        # FreeBSD, loaded at boot by rc.d/kld before the routing daemons
        rc.append(_rc("kld_list", "tcpmd5"))
    files["/etc/rc.conf"] = File("\n".join(rc) + "\n")
    # the product's rc.d scripts: files of the state tree, and their settings
    for path, source in lb_boot.FREEBSD_RC_SOURCES.items():
        files[path] = File("", mode="0755", source=source)
    files[lb_boot.FREEBSD_BOOTHOLD_SETTINGS] = File(lb_boot.freebsd_boothold_settings(head))
    files[lb_boot.FREEBSD_HAPROXY_SETTINGS] = File(
        lb_boot.freebsd_haproxy_settings(head, lb_parameters.of("FreeBSD", "node"), lb_render_haproxy.SERVER_STATE_ENV)
    )

    # carp's maintenance rc.d script (a file of the state tree) and its settings
    files[lb_boot.FREEBSD_MAINTENANCE_RC] = File("", mode="0755", source=lb_boot.FREEBSD_MAINTENANCE_SOURCE)
    files[lb_boot.FREEBSD_MAINTENANCE_SETTINGS] = File(lb_boot.freebsd_maintenance_settings(head, lb_boot.FREEBSD_CARP_STATE_DIR))

    # Interface lines go to /etc/rc.conf.d/netif, read by rc.d/netif after
    # rc.conf: it can be 0600, and the CARP passwords stay out of the
    # world-readable rc.conf.  Aliases are numbered from 0: network.subr
    # lists every ifconfig_<if>_aliasN that is set (list_vars) in numeric
    # order, gaps or not, and stops only at one set to "" (the seed's
    # alias4, alias44, ... work as well; 0.. is simply tidier).
    netif = [head]
    by_dev: dict[str, list] = {}
    for g in view["groups"]:
        by_dev.setdefault(device(g["device"], "FreeBSD"), []).append(g)
    for iface in node["interfaces"].values():
        dev = device(iface, "FreeBSD")
        var = rc_ifname(dev)
        netif.append(_rc(f"ifconfig_{var}", f"inet {iface['address']} netmask {iface['cidr'].netmask}"))
        for n, g in enumerate(by_dev.get(dev, [])):
            netif.append(_rc(f"ifconfig_{var}_alias{n}", " ".join(freebsd_alias_words(g, secret))))
    files[FREEBSD_CARP["netif_file"]] = File("\n".join(netif) + "\n", mode="0600", secret=True)

    routes = [head]
    if pair["routes"]:
        routes.append(_rc("static_routes", " ".join(pair["routes"])))
        for r in pair["routes"].values():
            routes.append(_rc(f"route_{r['name']}", f"-net {r['destination']} {r['gateway']}"))
    files["/etc/rc.conf.d/routing"] = File("\n".join(routes) + "\n")

    sysctl = [head, f"net.inet.ip.forwarding={1 if pair['sysctl']['ip_forwarding'] else 0}"]
    sysctl.append(f"net.inet.carp.preempt={1 if pair['carp']['preempt'] else 0}")
    sysctl += [f"{k}={v}" for k, v in pair["sysctl"]["extra"]["FreeBSD"].items()]
    files[lb_parameters.of("FreeBSD", "node")["sysctl_file"]] = File("\n".join(sysctl) + "\n")

    files[FREEBSD_CARP["loader_conf"]] = File(head + "\n" + _rc("carp_load", "YES") + "\n")
    files.update(lb_render_haproxy.haproxy_files(model, pair, node_id, "FreeBSD", secret))
    return files


# ---------------------------------------------------------------------------


def render_node(model: dict, node_id: str, os_family: str, redact: bool = False, carp: dict | None = None) -> dict[str, File]:
    """Every file `node_id` gets on `os_family`, keyed by absolute path.
    `carp`: the minion's `lb_settings:carp` paths (lb_render_linux.carp_paths), for the carp SLS's
    files on Debian: keepalived.conf or ucarp's, and the programs; and its
    `provider` when it chose one (linux_provider): which of those files,
    and which units start at boot."""
    if os_family not in OS_FAMILIES:
        raise ValueError(f"os_family {os_family!r} is not supported (supported: {', '.join(OS_FAMILIES)})")
    pair, _ = lb_topology.find_node(model, node_id)
    secret = Secrets(redact)
    if os_family == "FreeBSD":
        files = render_freebsd(model, pair, node_id, secret)
    else:
        files = lb_render_linux.render_debian(model, pair, node_id, secret, carp)
    header = HEADER.format(pair=pair["name"], node=node_id)
    files.update(lb_routing.render(pair, node_id, os_family, header, secret, File))
    root_group = lb_parameters.of(os_family, "node")["root_group"]
    for path, f in files.items():
        group = f.group or FILE_GROUPS.get(path) or root_group
        block = f.block or ("append" if path in SHARED_FILES[os_family] else None)
        files[path] = replace(f, group=group, block=block)
    _stamp(files, model, node_id, os_family, redact)
    return dict(sorted(files.items()))


def _stamps(os_family: str) -> dict:
    """{path: (stamp, marker)}: the files whose states add a generation
    marker the running daemon reports back (HAProxy's `description`,
    BIRD's `define`), so the preview shows them as written."""
    return {
        lb_parameters.of(os_family, "node")["haproxy_config"]: (haproxy_config.stamp, haproxy_config.marker),
        lb_parameters.of("Debian", "routing")["bird"]: (lb_generation.bird_stamp, lb_generation.bird_file_generation),
    }


def _stamp(files: dict, model: dict, node_id: str, os_family: str, redact: bool) -> None:
    """The markers, as the states write them: the hash of the file with its
    secrets, also in a redacted preview (where only the secrets differ)."""
    stamps = {p: fm for p, fm in _stamps(os_family).items() if p in files}
    if not stamps:
        return
    full = render_node(model, node_id, os_family) if redact else None
    for path, (stamp, marker) in stamps.items():
        text = stamp(files[path].content)
        if full is not None:
            own, real = marker(text), marker(full[path].content)
            if own and real:
                text = text.replace(own, real, 1)
        files[path] = replace(files[path], content=text)


def preview(model: dict, node_id: str, os_family: str, redact: bool = False) -> dict[str, str]:
    return {path: f.content for path, f in render_node(model, node_id, os_family, redact).items()}


def manifest(model: dict, node_id: str, os_family: str, redact: bool = True, carp: dict | None = None) -> dict[str, dict]:
    """Every file `node_id` gets, as `lb.preview` lists it: ``{path:
    {"mode", "user", "group", "block", "state", "link", "source", "content"}}``;
    `state` is the SLS that writes it (`writer`); a program's text is its
    `source` in the state tree (content empty)."""
    return {
        path: {
            "mode": f.mode,
            "user": f.user,
            "group": f.group,
            "block": f.block,
            "state": writer(path, os_family, carp),
            "link": f.link,
            "source": f.source,
            "content": f.content,
        }
        for path, f in render_node(model, node_id, os_family, redact, carp).items()
    }


# Which SLS writes which file: keys of the node's and the carp parameters
# (lb_parameters; a path, or a directory for
# every file under it), then fixed paths.  The `host` SLS writes what no
# daemon's state owns: sysctls, static routes, FreeBSD's rc.conf lines.
WRITERS = (
    ("haproxy", ("haproxy_config", "haproxy_certs_dir")),
    ("carp", ("keepalived_config", "ucarp_dir")),
    ("host", ("sysctl_file", "routes_file", "routes_data", "systemd_dir", "tmpfiles_dir")),
)
WRITER_PATHS = {
    "FreeBSD": {
        # carp.present: the aliases (0600, CARP passwords) and carp_load (sysrc)
        lb_parameters.of("FreeBSD", "carp")["netif_file"]: "carp",
        lb_parameters.of("FreeBSD", "carp")["loader_conf"]: "carp",
        lb_boot.FREEBSD_MAINTENANCE_RC: "carp",
        lb_boot.FREEBSD_MAINTENANCE_SETTINGS: "carp",
        "/etc/rc.conf": "host",
        "/etc/rc.conf.d/routing": "host",
        lb_boot.FREEBSD_HAPROXY_RC: "host",
        lb_boot.FREEBSD_BOOTHOLD_RC: "host",
        lb_boot.FREEBSD_HAPROXY_SETTINGS: "host",
        lb_boot.FREEBSD_BOOTHOLD_SETTINGS: "host",
    },
    "Debian": {},
}


def writer(path: str, os_family: str, carp: dict | None = None) -> str | None:
    """The SLS (salt/<name>) whose states write `path` on `os_family`, or
    None when no state writes it (the contract test fails on that)."""
    osp = lb_parameters.of(os_family, "node")
    if os_family == "Debian":
        osp = {**osp, **lb_render_linux.carp_paths(carp)}
    for state, keys in WRITERS:
        for key in keys:
            where = osp.get(key)
            if where and (path == where or path.startswith(where.rstrip("/") + "/")):
                return state
    if path in WRITER_PATHS[os_family]:
        return WRITER_PATHS[os_family][path]
    if os_family == "Debian" and os.path.dirname(path) == osp["script_dir"] and os.path.basename(path) in lb_render_linux.CARP_PROGRAMS:
        return "carp"
    if path in lb_parameters.of(os_family, "routing").values():
        return "routing"
    return None
