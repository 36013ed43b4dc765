"""Per-node derivation and rendering: one topology in, every file a node gets out.

Pure functions of the normalized model from `lb_topology.load()`.  Output is
deterministic: the same model gives the same bytes (dict order comes from the
pillar, sets are sorted).

`node_view(pair, node_id)` derives what differs between the two peers (advskew
and VRRP priority per group, which node is MASTER, the stats bind address).
`render_node(model, node_id, os_family)` returns {absolute path: File}.

Secrets (CARP passwords, the stats users' hashes, md5sig keys, TLS keys)
pass through `_Secrets`; with `redact=True` they render as `<redacted>` so a preview can be
shown or logged without leaking them.
"""

import os
from dataclasses import dataclass, replace

import haproxy_config
import lb_boot
import lb_generation
import lb_grammar
import lb_routing
import lb_topology
import lb_topology_haproxy

OS_FAMILIES = ("FreeBSD", "Debian")
REDACTED = "<redacted>"
HEADER = "Managed by Salt from pillar lb:pairs:{pair} for node {node}. Local edits are overwritten."

# Per-OS facts, the map.jinja of this product: only the differences.
OS_PARAMS = {
    "FreeBSD": {
        "haproxy_config": "/usr/local/etc/haproxy.conf",
        "haproxy_socket": "/var/run/haproxy/admin.sock",
        "haproxy_pidfile": "/var/run/haproxy.pid",
        # No chroot on FreeBSD: the workers log through syslogd's socket
        # /var/run/log, which a chroot would hide from them (HAProxy opens a
        # UNIX log socket by its path, inside the chroot), and /var/empty is
        # immutable (schg), so no socket can be put there (docs/haproxy.md).
        # The workers still run as www (uid 80), not root.
        "haproxy_chroot": None,
        # numeric: the `www` user and group (80) exist on every FreeBSD, and a
        # number lets `haproxy -c` check this file on a Linux host too.
        "haproxy_user": ("uid", 80),
        "haproxy_group": ("gid", 80),
        "haproxy_master_socket": "/var/run/haproxy-master.sock",
        "haproxy_certs_dir": "/usr/local/etc/haproxy/certs",
        "haproxy_server_state": "/var/run/haproxy-server-state",
        "haproxy_binary": "/usr/local/sbin/haproxy",
        "root_group": "wheel",
        "syslog": "/var/run/log",
        "sysctl_file": "/etc/sysctl.conf",
    },
    "Debian": {
        "haproxy_config": "/etc/haproxy/haproxy.cfg",
        "haproxy_socket": "/run/haproxy/admin.sock",
        "haproxy_pidfile": "/run/haproxy.pid",
        "haproxy_chroot": "/var/lib/haproxy",
        "haproxy_user": ("user", "haproxy"),
        "haproxy_group": ("group", "haproxy"),
        # Debian's own haproxy.service uses this master CLI socket
        "haproxy_master_socket": "/run/haproxy-master.sock",
        "haproxy_certs_dir": "/etc/haproxy/certs",
        "haproxy_server_state": "/run/haproxy/server-state",
        "haproxy_binary": "/usr/sbin/haproxy",
        "root_group": "root",
        "syslog": "/dev/log",
        "keepalived_config": "/etc/keepalived/keepalived.conf",
        "ucarp_dir": "/etc/ucarp",
        "sysctl_file": "/etc/sysctl.d/60-lb-pair.conf",
        # the static routes at boot: ifupdown's if-up.d program
        # (ROUTES_PROGRAM), and the routes it reads (render_routes_data)
        "routes_file": "/etc/network/if-up.d/lb-pair-routes",
        "routes_data": "/etc/default/lb-pair-routes",
        # the units' drop-ins and enablement links, HAProxy's tmpfiles line (lb_boot)
        "systemd_dir": lb_boot.SYSTEMD_DIR,
        "tmpfiles_dir": lb_boot.TMPFILES_DIR,
    },
}

# Files of FreeBSD's base system that carry other lines than the node's
# (the host's own interfaces, sshd_enable, its loader settings): the states
# keep the node's lines in a marked block (File.block) and leave the rest.
SHARED_FILES = {"FreeBSD": ("/etc/rc.conf", "/etc/sysctl.conf", "/boot/loader.conf"), "Debian": ()}
# Groups other than the OS's root group: BIRD re-reads its config as `bird`.
FILE_GROUPS = {"/etc/bird/bird.conf": "bird"}

# How long an old HAProxy worker may keep its sessions after a reload.  The
# seed's MySQL listeners allow 3-hour idle sessions; without a bound, every
# reload leaves a worker behind for up to 3 hours.
DEFAULT_HARD_STOP_AFTER = "30m"

# Runtime server states (drain, maintenance, weights set through the stats
# socket) survive a reload: the haproxy_cfg module dumps `show servers state`
# into this file just before it signals the master, and starts HAProxy with
# this variable set, so the new worker loads them.  Without the variable
# (`haproxy -c`, a start by the init script at boot) the lines are skipped:
# no warning about a missing file, and a boot starts from the pillar's states.
SERVER_STATE_ENV = "LB_HAPROXY_SERVER_STATE"
# HAProxy's built-in exporter (Debian 12's haproxy -vv lists the service
# prometheus-exporter); the port of HAProxy's own documentation, the default
# of the pillar's haproxy:metrics:port.
PROMETHEUS_PORT = lb_topology_haproxy.METRICS_DEFAULTS["port"]
# OS_PARAMS keys a caller may override for the HAProxy files (tests, or a
# minion whose HAProxy lives elsewhere; see the haproxy_cfg module).
HAPROXY_PARAM_KEYS = ("haproxy_config", "haproxy_socket", "haproxy_pidfile", "haproxy_chroot", "haproxy_certs_dir")


@dataclass(frozen=True)
class File:
    """A rendered file: its content, its mode and owner, whether it holds a
    secret (states must not print its diff), and `block`: "append" when the
    content is the node's marked block inside a file the system owns
    (FreeBSD's /etc/rc.conf), None when the product writes the whole file.
    `group` None is the OS's root group (render_node fills it in).  `link`:
    the file is a symbolic link to that path (content empty; a unit's
    enablement, lb_boot).  `source`: a program installed from the state
    tree (salt://carp/files/...), whose text is that file's (content empty)."""

    content: str
    mode: str = "0644"
    secret: bool = False
    user: str = "root"
    group: str | None = None
    block: str | None = None
    link: str | None = None
    source: str | None = None  # a program: its file in the state tree (content empty)


class _Secrets:
    def __init__(self, redact: bool):
        self.redact = redact
        self.used = False

    def __call__(self, value) -> str:
        self.used = True
        return REDACTED if self.redact else str(value)


# ---------------------------------------------------------------------------
# derivation


def peer_of(pair: dict, node_id: str) -> str:
    others = [n for n in pair["nodes"] if n != node_id]
    return others[0]


def node_view(pair: dict, node_id: str) -> dict:
    """What this node gets from the pair: its groups with its own advskew,
    VRRP priority and role, and its stats bind address."""
    node = pair["nodes"][node_id]
    groups = []
    for vhid, g in pair["carp"]["groups"].items():
        iface = node["interfaces"][g["interface"]]
        primary = g["primary"] == node_id
        advskew = g["advskew_primary"] if primary else g["advskew_backup"]
        groups.append(
            {
                "vhid": vhid,
                "interface": g["interface"],
                "device": iface["device"],
                "vip": g["vip"],
                "password": g["password"],
                "advbase": g["advbase"],
                "advskew": advskew,
                # VRRP: higher priority wins, CARP: lower advskew wins.
                # 254 - advskew keeps the order and stays below 255, which
                # VRRP reserves for the owner of the address.
                "priority": 254 - advskew,
                "role": "MASTER" if primary else "BACKUP",
                "source": iface["address"],
                "peer_source": pair["nodes"][peer_of(pair, node_id)]["interfaces"][g["interface"]]["address"],
            }
        )
    stats = pair["haproxy"]["stats"]
    stats_addr = node["interfaces"][stats["interface"]]["address"] if stats else None
    return {"node": node, "peer": peer_of(pair, node_id), "groups": groups, "stats_address": stats_addr}


# On Linux (keepalived, ucarp) a VIP goes on its interface as a host address,
# whatever prefix the pillar gives it (the pillar's prefix is checked against
# the subnet, and FreeBSD's carp alias uses it).  As a /32 it is never a
# secondary address of the node's subnet, which the kernel would drop together
# with the primary; and it is a route of its own, so BIRD's `direct` protocol
# announces a VIP exactly while the address is on the node (lb_routing).
LINUX_VIP_PREFIXLEN = 32


def linux_vip(vip) -> str:
    """The VIP as Linux nodes configure it: ``<address>/32``."""
    return f"{vip.ip}/{LINUX_VIP_PREFIXLEN}"


def device(iface: dict, os_family: str) -> str:
    dev = iface["device"] if isinstance(iface, dict) and "device" in iface else iface
    return dev.get(os_family) or dev.get("default") or next(iter(dev.values()))


def tracked_devices(pair: dict, node_id: str, os_family: str) -> list[str]:
    """Interfaces whose loss should hand every VIP to the peer (what FreeBSD's
    net.inet.carp.preempt does for all CARP interfaces together): every
    interface but the stats/management one."""
    node = pair["nodes"][node_id]
    stats = pair["haproxy"]["stats"]
    skip = stats["interface"] if stats else None
    return [device(i, os_family) for name, i in node["interfaces"].items() if name != skip]


# ---------------------------------------------------------------------------
# HAProxy


def _ind(lines):
    return ["    " + line if line else "" for line in lines]


def haproxy_params(os_family: str, overrides: dict | None = None) -> dict:
    """OS_PARAMS of `os_family` with some HAProxy paths overridden."""
    bad = sorted(set(overrides or {}) - set(HAPROXY_PARAM_KEYS))
    if bad:
        raise ValueError(f"cannot override {', '.join(bad)} (allowed: {', '.join(HAPROXY_PARAM_KEYS)})")
    return dict(OS_PARAMS[os_family], **(overrides or {}))


def cert_path(lst: dict, certs_dir: str) -> str:
    """Where a TLS listener's combined PEM (certificate chain + key) goes."""
    return f"{certs_dir}/{lst['name']}.pem"


def render_haproxy(
    model: dict, pair: dict, node_id: str, os_family: str, params: dict | None = None, prometheus: bool = True, secret=str
) -> str:
    """The node's whole haproxy.cfg.  `params` overrides HAProxy paths
    (HAPROXY_PARAM_KEYS); `prometheus=False` leaves the exporter out (a
    build without it: the haproxy_cfg module checks `haproxy -vv`).  The
    stats users' hashes pass through `secret` (redacted in previews)."""
    osp = haproxy_params(os_family, params)
    view = node_view(pair, node_id)
    hp = pair["haproxy"]
    out = [f"# {HEADER.format(pair=pair['name'], node=node_id)}", ""]

    g = [
        f"log {osp['syslog']} local0",
        *([f"chroot {osp['haproxy_chroot']}"] if osp["haproxy_chroot"] else []),
        # Debian: the pid file is haproxy.service's `-p $PIDFILE` (the
        # drop-in sets it; a `pidfile` here too makes HAProxy log an ALERT at
        # every start and reload), or the haproxy_cfg module's `-p`.
        *([f"pidfile {osp['haproxy_pidfile']}"] if os_family == "FreeBSD" else []),
        # master-worker with the listening sockets handed to the new worker
        # on reload (expose-fd listeners): no connection refused during it.
        "master-worker",
        f"stats socket {osp['haproxy_socket']} mode 660 level admin expose-fd listeners",
        "stats timeout 30s",
        "{} {}".format(*osp["haproxy_user"]),
        "{} {}".format(*osp["haproxy_group"]),
        # runtime server states carried over a reload (see SERVER_STATE_ENV)
        f".if defined({SERVER_STATE_ENV})",
        f'server-state-file "${{{SERVER_STATE_ENV}}}"',
        ".endif",
    ]
    extra = dict(hp["global"])
    extra.setdefault("hard-stop-after", [DEFAULT_HARD_STOP_AFTER])
    for key, values in extra.items():
        for v in values:
            g.append(f"{key} {v}")
    out += ["global"] + _ind(g) + [""]

    d = hp["defaults"]
    dl = []
    if d["log"]:
        dl.append("log global")
    dl.append(f"mode {d['mode']}")
    dl += [f"option {o}" for o in d["options"]]
    dl.append(f"retries {d['retries']}")
    dl += [f"timeout {k} {v}" for k, v in d["timeouts"].items()]
    dl += [f".if defined({SERVER_STATE_ENV})", "load-server-state-from-file global", ".endif"]
    out += ["defaults"] + _ind(dl) + [""]

    for lst in hp["listeners"].values():
        pool = hp["pools"][lst["pool"]]
        out += [f"listen {lst['name']}"] + _ind(listener_lines(lst, pool, osp["haproxy_certs_dir"])) + [""]

    for ul in hp["userlists"].values():
        lines = []
        for gname, members in ul["groups"].items():
            lines.append(f"group {gname} users {','.join(members)}" if members else f"group {gname}")
        for user in ul["users"].values():
            lines.append(f"user {user['name']} password {secret(user['password_hash'])}")
        out += [f"userlist {ul['name']}"] + _ind(lines) + [""]

    stats = hp["stats"]
    if stats:
        sl = [
            f"bind {view['stats_address']}:{stats['port']}",
            "mode http",
        ]
        sl += [f"timeout {k} {v}" for k, v in stats["timeouts"].items()]
        sl += ["stats enable", f"stats uri {stats['uri']}", f"stats refresh {stats['refresh']}"]
        if stats["show_node"]:
            sl.append("stats show-node")
        ul = stats["userlist"]
        sl.append(f"acl AUTH http_auth({ul})")
        if stats["admin_group"]:
            sl.append(f"acl AUTH_ADMIN http_auth_group({ul}) {stats['admin_group']}")
        sl.append("stats http-request auth unless AUTH")
        if stats["admin_group"]:
            sl.append("stats admin if AUTH_ADMIN")
        out += ["listen stats"] + _ind(sl) + [""]
        metrics = hp.get("metrics")
        if prometheus and metrics:
            # metrics on the management address only, like the stats page,
            # for the scrapers the pillar allows (default: the management
            # network); no authentication (Prometheus' usual setup), and no
            # log line per scrape
            pl = [
                f"bind {view['stats_address']}:{metrics['port']}",
                "mode http",
                f"acl metrics_allowed src {' '.join(metrics['allow'])}",
                "tcp-request connection reject unless metrics_allowed",
                "http-request use-service prometheus-exporter if { path /metrics }",
                "no log",
            ]
            out += ["frontend prometheus"] + _ind(pl) + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def listener_lines(lst: dict, pool: dict, certs_dir: str | None = None) -> list[str]:
    tls = lst.get("tls")
    if tls:
        if certs_dir is None:
            raise ValueError(f"listener {lst['name']} terminates TLS: give certs_dir")
        lines = [f"bind {lst['vip']}:{lst['port']} ssl crt {cert_path(lst, certs_dir)}"]
        if tls["redirect_http"]:
            lines.append(f"bind {lst['vip']}:80")
    else:
        lines = [f"bind {lst['vip']}:{lst['port']}"]
    lines += [f"mode {lst['mode']}", f"balance {lst['balance']}"]
    if tls and tls["redirect_http"]:
        lines.append("http-request redirect scheme https code 301 unless { ssl_fc }")
    if lst["maxconn"]:
        lines.append(f"maxconn {lst['maxconn']}")
    lines += [f"option {o}" for o in lst["options"]]
    lines += [f"timeout {k} {v}" for k, v in lst["timeouts"].items()]
    chk = pool["check"]
    if chk["type"] == "tcp-check":
        lines += ["option tcp-check", f"tcp-check expect {chk['expect']}"]
    elif chk["type"] == "httpchk":
        lines += [f"option httpchk {chk['method']} {chk['uri']}", f"http-check expect status {chk['status']}"]
    ds = []
    if chk.get("port"):
        ds.append(f"port {chk['port']}")
    ds += [f"{k} {v}" for k, v in pool["default_server"].items()]
    if ds:
        lines.append("default-server " + " ".join(ds))
    for s in pool["servers"].values():
        words = [f"server {s['name']} {s['address']}:{s['port']}"]
        if s["check"]:
            words.append("check")
        if s["backup"]:
            words.append("backup")
        if s["weight"] is not None:
            words.append(f"weight {s['weight']}")
        if s["disabled"]:
            words.append("disabled")
        lines.append(" ".join(words))
    return lines


def haproxy_files(
    model: dict, pair: dict, node_id: str, os_family: str, secret=str, params: dict | None = None, prometheus: bool = True
) -> dict[str, File]:
    """HAProxy's files on the node: the config, and one combined PEM
    (certificate chain, then key; 0600, a secret) per TLS listener."""
    osp = haproxy_params(os_family, params)
    files = {
        osp["haproxy_config"]: File(render_haproxy(model, pair, node_id, os_family, params, prometheus, secret), mode="0640", secret=True)
    }
    for lst in pair["haproxy"]["listeners"].values():
        tls = lst.get("tls")
        if tls:
            pem = tls["certificate"].strip() + "\n" + secret(tls["key"].strip()) + "\n"
            files[cert_path(lst, osp["haproxy_certs_dir"])] = File(pem, mode="0600", secret=True)
    return files


# ---------------------------------------------------------------------------
# FreeBSD


def _rc(key, value) -> str:
    return f'{key}="{value}"'


# libexec/rc/network.subr's get_if_var and ifalias_af_common look a device's
# variables up under its name with each of these turned into `_` (`ltr`):
# em1.100 -> ifconfig_em1_100.  A variable named after the raw device
# (`ifconfig_em1.100=...`) is no assignment at all: sh runs it as a command.
RC_IF_PUNCT = ".-/+"


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
    files[lb_boot.FREEBSD_HAPROXY_SETTINGS] = File(lb_boot.freebsd_haproxy_settings(head, OS_PARAMS["FreeBSD"], SERVER_STATE_ENV))

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
    files["/etc/rc.conf.d/netif"] = File("\n".join(netif) + "\n", mode="0600", secret=True)

    routes = [head]
    if pair["routes"]:
        routes.append(_rc("static_routes", " ".join(pair["routes"])))
        for r in pair["routes"].values():
            routes.append(_rc(f"route_{r['name']}", f"-net {r['destination']} {r['gateway']}"))
    files["/etc/rc.conf.d/routing"] = File("\n".join(routes) + "\n")

    sysctl = [head, f"net.inet.ip.forwarding={1 if pair['sysctl']['ip_forwarding'] else 0}"]
    sysctl.append(f"net.inet.carp.preempt={1 if pair['carp']['preempt'] else 0}")
    sysctl += [f"{k}={v}" for k, v in pair["sysctl"]["extra"]["FreeBSD"].items()]
    files["/etc/sysctl.conf"] = File("\n".join(sysctl) + "\n")

    files["/boot/loader.conf"] = File(head + "\n" + _rc("carp_load", "YES") + "\n")
    files.update(haproxy_files(model, pair, node_id, "FreeBSD", secret))
    return files


# ---------------------------------------------------------------------------
# Debian (Linux)


# Where the Linux CARP providers keep what must survive a restart (the
# maintenance intent, the instance states the notify script records) and the
# scripts they install.  The carp module can move them (config `lb_carp`).
CARP_STATE_DIR = "/var/lib/lb-carp"
CARP_SCRIPT_DIR = "/usr/local/sbin"
CARP_RUN_DIR = "/run/lb-carp"
# The programs the Linux carp providers run, by the names they are installed
# under in the carp script directory.  They are files in the state tree,
# salt/carp/files/, installed by salt/carp (file.managed) before carp.present
# runs; lb_carp_vips.py is installed under two names, as is lb-carp-vip.sh.
# keepalived hands its transitions, in order, to lb-carp-keepalived-vips
# through a FIFO; it adds and removes the VIPs.
KEEPALIVED_VIPS_SCRIPT = "lb-carp-keepalived-vips"
# ucarp's up and down scripts, and the ARP probe the up script runs
VIP_UP = "lb-carp-vip-up"
VIP_DOWN = "lb-carp-vip-down"
ARP_PROBE = "lb-carp-arp-probe"
KEEPALIVED_FIFO = "keepalived-vrrp.fifo"
MAINTENANCE_TRACK_FILE = "maintenance.track"
# The maintenance track file holds 1 while the node is in maintenance: every
# instance's priority drops by 253, to 1 (keepalived keeps it >= 1), below any
# peer's; the node stays a BACKUP that still takes over if the peer dies.
MAINTENANCE_WEIGHT = -253
# With BGP in the pillar: a node none of whose BGP sessions is up would hold
# VIPs the upstream routers cannot reach it for (a link back from a cut
# preempts at once; the session needs seconds more).  keepalived runs this
# script every second; while it fails, the node's priorities drop below its
# peer's (routing_hold_weight), so it does not preempt yet, and it still
# takes over when the peer dies.
ROUTING_READY_SCRIPT = "lb-routing-ready"
# HAProxy: a node whose HAProxy does not run cannot serve its VIPs.
# keepalived runs this script every second; while it fails, the node's
# priorities drop below its peer's (hold_weight): the peer takes the VIPs
# within about a second, without a salt-master, and the node preempts again
# once HAProxy runs (restarted by its init, or by the reactor's heal).
# When both nodes' HAProxy are down, both drop alike and nothing moves.
HAPROXY_SERVING_SCRIPT = "lb-haproxy-serving"
# the CARP event hook (salt/carp/events.sls installs it, with its settings;
# not part of the preview: it depends on the minion's config, not the topology)
EVENT_HOOK = "lb-carp-event"
CARP_PROGRAM_SOURCES = "salt://carp/files"
# {installed name: its file in salt/carp/files/}
PROGRAM_FILES = {
    KEEPALIVED_VIPS_SCRIPT: "lb_carp_vips.py",
    ARP_PROBE: "lb_carp_vips.py",
    VIP_UP: "lb-carp-vip.sh",
    VIP_DOWN: "lb-carp-vip.sh",
    lb_boot.UCARP_LAUNCHER: "lb-ucarp-exec.sh",
    HAPROXY_SERVING_SCRIPT: "lb-haproxy-serving.sh",
    ROUTING_READY_SCRIPT: "lb-routing-ready.sh",
    EVENT_HOOK: "lb-carp-event.sh",
}
CARP_PROGRAMS = tuple(PROGRAM_FILES)


def event_hook_source() -> str:
    return f"{CARP_PROGRAM_SOURCES}/{PROGRAM_FILES[EVENT_HOOK]}"


def carp_programs(pair: dict, node_id: str, provider: str) -> dict[str, str]:
    """{installed name: salt:// source} of the programs `node_id` runs with
    the Linux provider `provider`: keepalived's FIFO program, or ucarp's up
    and down scripts, ARP probe and launcher; the serving check (and the BGP
    check when the pair has BGP)."""
    if provider == "keepalived":
        names = [KEEPALIVED_VIPS_SCRIPT]
    elif provider == "ucarp":
        names = [VIP_UP, VIP_DOWN, ARP_PROBE, lb_boot.UCARP_LAUNCHER]
    else:
        raise ValueError(f"no programs for the CARP provider {provider!r}")
    names.append(HAPROXY_SERVING_SCRIPT)
    if routing_hold_weight(pair, node_id) is not None:
        names.append(ROUTING_READY_SCRIPT)
    return {name: f"{CARP_PROGRAM_SOURCES}/{PROGRAM_FILES[name]}" for name in names}


def hold_weight(pair: dict, node_id: str) -> int:
    """How far a node's priorities drop while a check fails (HAProxy not
    running, no BGP session up): one more than the largest gap between the
    two nodes' priorities in any group, the same on both nodes.  So the node
    falls below its peer everywhere, and when both fail alike the order
    between them stays as it was: nothing moves."""
    own = {g["vhid"]: g["priority"] for g in node_view(pair, node_id)["groups"]}
    theirs = {g["vhid"]: g["priority"] for g in node_view(pair, peer_of(pair, node_id))["groups"]}
    gap = max([abs(own[v] - theirs[v]) for v in own if v in theirs] + [0])
    return min(gap + 1, 252)


def routing_hold_weight(pair: dict, node_id: str) -> int | None:
    """hold_weight while the node's BGP sessions are down; None when the
    pair has no BGP."""
    if (pair.get("routing") or {}).get("bgp") is None:
        return None
    return hold_weight(pair, node_id)


def keepalived_marker(vhid: int) -> str:
    """The address keepalived itself adds for an instance, on lo: VRRPv3
    needs one per instance, and the VIP is not keepalived's to add (break
    before make: salt/carp/files/lb_carp_vips.py).  All of 127.0.0.0/8 is
    local on lo anyway, so it changes nothing; it goes in the advertisements
    and is the same on both nodes."""
    return f"127.77.{vhid}.1/32 dev lo scope host"


def serving_check(pair: dict, node_id: str, script_dir: str, haproxy_pidfile: str) -> list[str]:
    """The node's serving check as argv: HAProxy runs with a worker, and,
    when the pair has BGP, one BGP session is Established.  keepalived
    tracks it (vrrp_script lb_serving); ucarp's launcher demotes the group
    while it fails."""
    check = [f"{script_dir}/{HAPROXY_SERVING_SCRIPT}", haproxy_pidfile]
    if routing_hold_weight(pair, node_id) is not None:
        check.append(f"{script_dir}/{ROUTING_READY_SCRIPT}")
    return check


def render_keepalived(
    pair: dict,
    node_id: str,
    state_dir: str = CARP_STATE_DIR,
    script_dir: str = CARP_SCRIPT_DIR,
    run_dir: str = CARP_RUN_DIR,
    haproxy_pidfile: str = OS_PARAMS["Debian"]["haproxy_pidfile"],
) -> str:
    lb_grammar.require(lb_grammar.SH_PATH, haproxy_pidfile, "haproxy_cfg:pidfile")
    for what, value in (("state_dir", state_dir), ("script_dir", script_dir), ("run_dir", run_dir)):
        # inside keepalived's quoted notify command, split into argv at spaces
        lb_grammar.require(lb_grammar.SH_PATH, value, f"lb_carp:{what}")
    view = node_view(pair, node_id)
    carp = pair["carp"]
    tracked = tracked_devices(pair, node_id, "Debian")
    # the peer's address only with the second chance (carp:second_chance):
    # without one, the script makes no nft table
    peers = {g["vhid"]: f",{g['peer_source']}" if carp["second_chance"] else "" for g in view["groups"]}
    vips = " ".join(f"{g['vhid']}={device(g['device'], 'Debian')},{linux_vip(g['vip'])}{peers[g['vhid']]}" for g in view["groups"])
    out = [
        f"# {HEADER.format(pair=pair['name'], node=node_id)}",
        "# One vrrp_instance per CARP group: vhid -> virtual_router_id,",
        "# advskew -> priority 254 - advskew (lower advskew wins in CARP, higher",
        "# priority in VRRP), VRRPv3 (no authentication in v3: the CARP password",
        "# is used by the FreeBSD and ucarp providers only).",
        "global_defs {",
        f"    router_id {node_id}",
        "    vrrp_version 3",
        "    enable_script_security",
        "    script_user root",
        "    # Every transition goes, in order, through this FIFO to",
        f"    # {KEEPALIVED_VIPS_SCRIPT} (<vhid>=<interface>,<VIP>,<peer>): it records",
        "    # the state and adds a VIP only once no other host answers ARP for it,",
        "    # so a VIP is never on both nodes; after a planned handover it sends",
        "    # the peer's connections in flight on to it (docs/carp.md).",
        f"    vrrp_notify_fifo {run_dir}/{KEEPALIVED_FIFO}",
        f'    vrrp_notify_fifo_script "{script_dir}/{KEEPALIVED_VIPS_SCRIPT} {state_dir} {vips}"',
        "}",
        "",
        "# Maintenance (carp.maintenance): the file holds 1 while the node is in",
        f"# maintenance, and every priority drops by {-MAINTENANCE_WEIGHT} (to 1); read at start",
        "# and watched while running, so it survives a restart or a reboot.",
        "vrrp_track_file lb_carp_maintenance {",
        f"    file {state_dir}/{MAINTENANCE_TRACK_FILE}",
        f"    weight {MAINTENANCE_WEIGHT}",
        "    init_file 0",
        "}",
        "",
    ]
    hold = hold_weight(pair, node_id)
    bgp = routing_hold_weight(pair, node_id) is not None
    check = " ".join(serving_check(pair, node_id, script_dir, haproxy_pidfile))
    out += [
        "# Serving: while HAProxy does not run" + (", or none of this node's BGP sessions is up" if bgp else "") + ",",
        f"# priorities drop by {hold} (the same on both nodes, once, whatever fails): the",
        "# peer serves the VIPs, without a salt-master (docs/carp.md, docs/routing.md).",
        "vrrp_script lb_serving {",
        f'    script "{check}"',
        "    interval 1",
        "    timeout 3",
        f"    weight -{hold}",
        "    rise 1",
        # a BGP check tolerates one slow birdc; HAProxy's alone acts at once
        f"    fall {2 if bgp else 1}",
        "}",
        "",
    ]
    for g in view["groups"]:
        dev = device(g["device"], "Debian")
        out += [
            f"vrrp_instance VI_{g['vhid']} {{",
            # every instance starts BACKUP and the priority decides: a node
            # that restarts never grabs a VIP before hearing its peer.
            "    state BACKUP",
            f"    interface {dev}",
            f"    virtual_router_id {g['vhid']}",
            f"    priority {g['priority']}",
            f"    advert_int {carp['vrrp_advert_int']}",
        ]
        if not carp["preempt"]:
            out.append("    nopreempt")
        out += [
            f"    # VIP {linux_vip(g['vip'])} on {dev}: added by {KEEPALIVED_VIPS_SCRIPT}; this is a marker",
            "    virtual_ipaddress {",
            f"        {keepalived_marker(g['vhid'])}",
            "    }",
        ]
        # the instance's own interface is tracked anyway (keepalived warns
        # about, and ignores, an explicit entry for it)
        others = [t for t in tracked if t != dev]
        if others:
            out.append("    track_interface {")
            out += [f"        {t}" for t in others]
            out.append("    }")
        out += ["    track_script {", "        lb_serving", "    }"]
        out += [
            "    track_file {",
            "        lb_carp_maintenance",
            "    }",
            "}",
            "",
        ]
    # router_id carries the generation marker the running keepalived reports
    # (lb_generation: "up to date" means keepalived runs this file)
    return lb_generation.keepalived_stamp("\n".join(out).rstrip("\n") + "\n")


def render_ucarp(pair: dict, node_id: str, secret, base: str = OS_PARAMS["Debian"]["ucarp_dir"]) -> dict[str, File]:
    view = node_view(pair, node_id)
    files = {}
    for g in view["groups"]:
        dev = device(g["device"], "Debian")
        conf = [
            f"# {HEADER.format(pair=pair['name'], node=node_id)}",
            f"UCARP_INTERFACE={dev}",
            f"UCARP_SRCIP={g['source']}",
            f"UCARP_VHID={g['vhid']}",
            f"UCARP_ADDR={g['vip'].ip}",
            f"UCARP_PREFIX={LINUX_VIP_PREFIXLEN}",
            f"UCARP_ADVBASE={g['advbase']}",
            f"UCARP_ADVSKEW={g['advskew']}",
            f"UCARP_PREEMPT={'yes' if pair['carp']['preempt'] else 'no'}",
            f"UCARP_PASSFILE={base}/vhid-{g['vhid']}.pass",
        ]
        files[f"{base}/vhid-{g['vhid']}.conf"] = File("\n".join(conf) + "\n")
        files[f"{base}/vhid-{g['vhid']}.pass"] = File(secret(g["password"]) + "\n", mode="0600", secret=True)
    return files


ROUTES_PROGRAM = "salt://host/files/lb-pair-routes.sh"


def render_routes_data(pair: dict, head: str) -> str:
    """/etc/default/lb-pair-routes: the pair's static routes, one
    "DESTINATION GATEWAY" per line, for ifupdown's if-up.d program
    (ROUTES_PROGRAM, which passes each word to ip(8) as one argument).  The
    `host` SLS applies the same routes live (lb_host.routes)."""
    out = [
        head,
        f"# The static routes of pillar lb:pairs:{pair['name']}:routes, one",
        "# DESTINATION GATEWAY per line, added by /etc/network/if-up.d/lb-pair-routes",
        "# each time ifupdown brings an interface up.",
    ]
    out += [f"{r['destination']} {r['gateway']}" for r in pair["routes"].values()]
    return "\n".join(out) + "\n"


def carp_paths(override: dict | None = None) -> dict:
    """Where the Linux carp providers keep their files: the defaults, with
    the minion's `lb_carp` paths on top (carp_common.settings, which checks
    them) when given."""
    out = {
        "state_dir": CARP_STATE_DIR,
        "script_dir": CARP_SCRIPT_DIR,
        "run_dir": CARP_RUN_DIR,
        "keepalived_config": OS_PARAMS["Debian"]["keepalived_config"],
        "ucarp_dir": OS_PARAMS["Debian"]["ucarp_dir"],
    }
    out.update({k: v for k, v in (override or {}).items() if k in out})
    return out


def linux_provider(pair: dict, carp: dict | None = None) -> str:
    """The node's Linux CARP provider: the minion's `lb_carp:provider` when
    `carp` has one (carp_common.linux_provider, what loads the `carp`
    module), else the pair's `carp:linux_provider`."""
    forced = (carp or {}).get("provider")
    return forced if forced in lb_topology.LINUX_PROVIDERS else pair["carp"]["linux_provider"]


def render_debian(model: dict, pair: dict, node_id: str, secret, carp: dict | None = None) -> dict[str, File]:
    osp = OS_PARAMS["Debian"]
    cp = carp_paths(carp)
    provider = linux_provider(pair, carp)
    head = f"# {HEADER.format(pair=pair['name'], node=node_id)}"
    files = {}
    sysctl = [
        head,
        f"net.ipv4.ip_forward = {1 if pair['sysctl']['ip_forwarding'] else 0}",
        # HAProxy on the BACKUP binds VIPs it does not hold, so a failover
        # needs no HAProxy restart.
        "net.ipv4.ip_nonlocal_bind = 1",
    ]
    sysctl += [f"{k} = {v}" for k, v in pair["sysctl"]["extra"]["Debian"].items()]
    files[osp["sysctl_file"]] = File("\n".join(sysctl) + "\n")
    if pair["routes"]:
        files[osp["routes_data"]] = File(render_routes_data(pair, head))
        files[osp["routes_file"]] = File("", mode="0755", source=ROUTES_PROGRAM)
    if provider == "keepalived":
        keepalived = render_keepalived(pair, node_id, state_dir=cp["state_dir"], script_dir=cp["script_dir"], run_dir=cp["run_dir"])
        files[cp["keepalived_config"]] = File(keepalived, mode="0640")
    else:
        files.update(render_ucarp(pair, node_id, secret, cp["ucarp_dir"]))
    for name, source in carp_programs(pair, node_id, provider).items():
        files[f"{cp['script_dir']}/{name}"] = File("", mode="0755", source=source)
    files.update(haproxy_files(model, pair, node_id, "Debian", secret))
    routing = pair["routing"]["bgp"] is not None or pair["routing"]["ospf"] is not None
    rp = lb_routing.PATHS["Debian"]
    boot = {
        "provider": provider,
        "keepalived_argv": lb_boot.keepalived_argv("/usr/sbin/keepalived", osp["keepalived_config"], CARP_RUN_DIR),
        "run_dir": CARP_RUN_DIR,
        "state_dir": CARP_STATE_DIR,
        "ucarp_launcher": f"{CARP_SCRIPT_DIR}/{lb_boot.UCARP_LAUNCHER}",
        "serving_check": serving_check(pair, node_id, CARP_SCRIPT_DIR, osp["haproxy_pidfile"]),
        "vhids": [g["vhid"] for g in node_view(pair, node_id)["groups"]],
        "bird_argv": lb_boot.bird_argv("/usr/sbin/bird", rp["bird"], rp["socket"], lb_routing.bird_pidfile(rp["run_dir"]), "bird")
        if routing
        else None,
        "birdc": rp["birdc"],
        "server_state_env": SERVER_STATE_ENV,
    }
    files.update(lb_boot.debian_files(head, osp, boot, File))
    return files


# ---------------------------------------------------------------------------


def render_node(model: dict, node_id: str, os_family: str, redact: bool = False, carp: dict | None = None) -> dict[str, File]:
    """Every file `node_id` gets on `os_family`, keyed by absolute path.
    `carp`: the minion's `lb_carp` paths (carp_paths), for the carp SLS's
    files on Debian: keepalived.conf or ucarp's, and the programs; and its
    `provider` when it chose one (linux_provider): which of those files,
    and which units start at boot."""
    if os_family not in OS_FAMILIES:
        raise ValueError(f"os_family {os_family!r} is not supported (supported: {', '.join(OS_FAMILIES)})")
    pair, _ = lb_topology.find_node(model, node_id)
    secret = _Secrets(redact)
    if os_family == "FreeBSD":
        files = render_freebsd(model, pair, node_id, secret)
    else:
        files = render_debian(model, pair, node_id, secret, carp)
    header = HEADER.format(pair=pair["name"], node=node_id)
    files.update(lb_routing.render(pair, node_id, os_family, header, secret, File))
    root_group = OS_PARAMS[os_family]["root_group"]
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
        OS_PARAMS[os_family]["haproxy_config"]: (haproxy_config.stamp, haproxy_config.marker),
        lb_routing.PATHS[os_family].get("bird", "/etc/bird/bird.conf"): (lb_generation.bird_stamp, lb_generation.bird_file_generation),
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


# Which SLS writes which file: OS_PARAMS keys (a path, or a directory for
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
        "/etc/rc.conf.d/netif": "carp",
        "/boot/loader.conf": "carp",
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
    osp = OS_PARAMS[os_family]
    if os_family == "Debian":
        osp = {**osp, **carp_paths(carp)}
    for state, keys in WRITERS:
        for key in keys:
            where = osp.get(key)
            if where and (path == where or path.startswith(where.rstrip("/") + "/")):
                return state
    if path in WRITER_PATHS[os_family]:
        return WRITER_PATHS[os_family][path]
    if os_family == "Debian" and os.path.dirname(path) == osp["script_dir"] and os.path.basename(path) in CARP_PROGRAMS:
        return "carp"
    if path in lb_routing.PATHS[os_family].values():
        return "routing"
    return None
