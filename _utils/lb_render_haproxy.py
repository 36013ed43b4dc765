"""The node's HAProxy files: haproxy.cfg (sections in the pillar's order,
each listener bound to its VIP) and the TLS PEM files of its listeners.

Pure Python, no Salt dunders (lb_render.render_node calls it).
"""

import lb_parameters
import lb_topology_haproxy
from lb_view import HEADER, File, node_view

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
# node parameters (lb_parameters) a caller may override for the HAProxy files (tests, or a
# minion whose HAProxy lives elsewhere; see the haproxy_cfg module).
HAPROXY_PARAM_KEYS = ("haproxy_config", "haproxy_socket", "haproxy_pidfile", "haproxy_chroot", "haproxy_certs_dir")


def _ind(lines):
    return ["    " + line if line else "" for line in lines]


def haproxy_params(os_family: str, overrides: dict | None = None) -> dict:
    """The node parameters of `os_family` (lb_parameters) with some HAProxy
    paths overridden."""
    bad = sorted(set(overrides or {}) - set(HAPROXY_PARAM_KEYS))
    if bad:
        raise ValueError(f"cannot override {', '.join(bad)} (allowed: {', '.join(HAPROXY_PARAM_KEYS)})")
    return dict(lb_parameters.of(os_family, "node"), **(overrides or {}))


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
