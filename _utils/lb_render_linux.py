"""The node's Linux files: the carp provider's (keepalived.conf or ucarp's
per-group files, and the programs they run, installed from the state tree),
and the Debian host's (sysctls, static routes at boot, the units that bring
the pair back without a master).

Pure Python, no Salt dunders (lb_render.render_node calls it).
"""

import lb_boot
import lb_generation
import lb_grammar
import lb_parameters
import lb_render_haproxy
import lb_routing
import lb_topology
from lb_view import HEADER, LINUX_VIP_PREFIXLEN, File, device, linux_vip, node_view, peer_of, tracked_devices

# Where the Linux CARP providers keep what must survive a restart (the
# maintenance intent, the instance states the notify script records), the
# scripts they install and their runtime files, by default (lb_parameters'
# carp section; the carp module can move them: `lb_settings:carp`).
CARP = lb_parameters.of("Debian", "carp")
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
    state_dir: str = CARP["state_dir"],
    script_dir: str = CARP["script_dir"],
    run_dir: str = CARP["run_dir"],
    haproxy_pidfile: str = lb_parameters.of("Debian", "node")["haproxy_pidfile"],
) -> str:
    lb_grammar.require(lb_grammar.SH_PATH, haproxy_pidfile, "lb_settings:haproxy:pidfile")
    for what, value in (("state_dir", state_dir), ("script_dir", script_dir), ("run_dir", run_dir)):
        # inside keepalived's quoted notify command, split into argv at spaces
        lb_grammar.require(lb_grammar.SH_PATH, value, f"lb_settings:carp:{what}")
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


def render_ucarp(pair: dict, node_id: str, secret, base: str = CARP["ucarp_dir"]) -> dict[str, File]:
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
    the minion's `lb_settings:carp` paths on top (carp_common.settings, which checks
    them) when given."""
    out = lb_parameters.of("Debian", "carp")
    out.update({k: v for k, v in (override or {}).items() if k in out})
    return out


def linux_provider(pair: dict, carp: dict | None = None) -> str:
    """The node's Linux CARP provider: the minion's `lb_settings:carp:provider` when
    `carp` has one (carp_common.linux_provider, what loads the `carp`
    module), else the pair's `carp:linux_provider`."""
    forced = (carp or {}).get("provider")
    return forced if forced in lb_topology.LINUX_PROVIDERS else pair["carp"]["linux_provider"]


def render_debian(model: dict, pair: dict, node_id: str, secret, carp: dict | None = None) -> dict[str, File]:
    osp = lb_parameters.of("Debian", "node")
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
    files.update(lb_render_haproxy.haproxy_files(model, pair, node_id, "Debian", secret))
    routing = pair["routing"]["bgp"] is not None or pair["routing"]["ospf"] is not None
    rp = lb_parameters.of("Debian", "routing")
    boot = {
        "provider": provider,
        "keepalived_argv": lb_boot.keepalived_argv("/usr/sbin/keepalived", CARP["keepalived_config"], CARP["run_dir"]),
        "run_dir": CARP["run_dir"],
        "state_dir": CARP["state_dir"],
        "ucarp_launcher": f"{CARP['script_dir']}/{lb_boot.UCARP_LAUNCHER}",
        "serving_check": serving_check(pair, node_id, CARP["script_dir"], osp["haproxy_pidfile"]),
        "vhids": [g["vhid"] for g in node_view(pair, node_id)["groups"]],
        "bird_argv": lb_boot.bird_argv("/usr/sbin/bird", rp["bird"], rp["socket"], lb_routing.bird_pidfile(rp["run_dir"]), "bird")
        if routing
        else None,
        "birdc": rp["birdc"],
        "server_state_env": lb_render_haproxy.SERVER_STATE_ENV,
    }
    files.update(lb_boot.debian_files(head, osp, boot, File))
    return files
