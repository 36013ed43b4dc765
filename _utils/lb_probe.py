"""The Galera health probe's files on a database server, from the topology.

Pure functions of the normalized model from `lb_topology.load()`, like
`lb_render` (which renders the load balancers' side).  For one pair and one
OS family, `render_probe()` returns every file a database server of that
pair gets, keyed by absolute path:

- the probe itself: the program `salt/clustercheck/files/clustercheck.py`
  (`PROBE_SOURCE`), installed by the SLS as a Jinja template whose context
  (`program_context`) is the OS's interpreter, client and option-file
  paths;
- its option file: the MySQL account for the client's ``[client]`` group and
  the probe's own ``[clustercheck]`` settings; a secret (0600, owned by the
  probe's user);
- Linux: the xinetd service (``only_from`` the two load balancers and
  127.0.0.1, ``per_source``, ``instances``, ``cps``);
- FreeBSD: the inetd.conf line, the /etc/services entry inetd needs to find
  the port, the hosts.allow rules (TCP wrappers, what xinetd's only_from
  does), and /etc/rc.conf.d/inetd with a service rate that cannot trip.

Files that are lines in a file the system owns (inetd.conf, services,
hosts.allow) have ``block`` set: the state manages them as a marked block.

The rate limits are computed from the pair's HAProxy check timers; see
`limits()` and docs/clustercheck.md for why xinetd's default ``cps = 50 10``
(and inetd's default ``-R 256``) can take every database server out at once.
"""

import math
import os
import re
from dataclasses import dataclass

import netaddr

import lb_parameters
import lb_settings

OS_FAMILIES = ("Debian", "FreeBSD")
REDACTED = "<redacted>"
SERVICE = "clustercheck"
HEADER = "Managed by Salt from pillar lb:pairs:{pair} (galera_probe). Local edits are overwritten."
# the probe program, a file of the state tree (not of this directory): the
# interpreter is not the xinetd/inetd `server` (FreeBSD's inetd names a
# wrapped service by the basename of its server program: hosts.allow would
# have to allow "python3"), so the OS's interpreter goes in its #! line
PROBE_SOURCE = "salt://clustercheck/files/clustercheck.py"
# The OS's paths, packages and super-server: lb_parameters' probe section.

# What a pool's checks default to when the pillar leaves a timer out
# (HAProxy: inter 2s; fastinter and downinter default to inter).
HAPROXY_DEFAULT_INTER = 2.0
# Margins over the pair's own check traffic (see limits()).
RATE_MARGIN = 25
MIN_CPS = 100
MIN_INSTANCES = 16
MIN_PER_SOURCE = 8
CPS_WAIT = 1  # seconds xinetd keeps the service off once cps trips: the minimum


@dataclass(frozen=True)
class ProbeFile:
    """A rendered file.  `block` is "append" or "prepend" when the content is
    a marked block inside a file the system owns, else None."""

    content: str
    mode: str = "0644"
    user: str = "root"
    group: str = "root"
    secret: bool = False
    block: str | None = None
    # a program of the state tree (content empty): its salt:// source and the
    # context of its Jinja template
    source: str | None = None
    context: dict | None = None


# ---------------------------------------------------------------------------
# which pair, from where


def probe_pairs(model: dict) -> dict:
    """The pairs that have a probe: {name: pair}."""
    return {name: pair for name, pair in model["pairs"].items() if pair.get("galera_probe")}


def galera_servers(pair: dict) -> list[dict]:
    """Every server of the pair's galera pools (a server in two pools once)."""
    seen = {}
    for pool in pair["haproxy"]["pools"].values():
        if pool["kind"] != "galera":
            continue
        for s in pool["servers"].values():
            seen.setdefault(s["address"], s)
    return [seen[a] for a in sorted(seen)]


def find_pair(model: dict, pair_name: str | None = None, addresses=()) -> str:
    """The pair whose probe a database server runs: named, or the one whose
    galera pools list one of `addresses`, or the only pair with a probe."""
    pairs = probe_pairs(model)
    if pair_name is not None:
        if pair_name not in pairs:
            known = ", ".join(sorted(pairs)) or "none"
            raise KeyError(f"pair {pair_name!r} has no galera_probe (pairs with one: {known})")
        return pair_name
    mine = set()
    for a in addresses or ():
        try:
            mine.add(netaddr.IPAddress(str(a)))
        except (netaddr.AddrFormatError, ValueError):
            continue
    matches = [name for name, pair in pairs.items() if any(s["address"] in mine for s in galera_servers(pair))]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise KeyError(f"this server is in the galera pools of several pairs ({', '.join(matches)}); name one")
    if len(pairs) == 1:
        return next(iter(pairs))
    raise KeyError(
        f"no pair's galera pools list this server ({', '.join(sorted(str(a) for a in mine)) or 'no address'}) and there are "
        f"{len(pairs)} pairs with a probe; name one"
    )


def _source_toward(pair: dict, node: dict, target: netaddr.IPAddress) -> netaddr.IPAddress | None:
    """The address `node` sends from to reach `target`: its address on a
    connected network, else on the network of the route's gateway (the
    longest matching route)."""
    for iface in node["interfaces"].values():
        if target in iface["cidr"]:
            return iface["address"]
    routes = [r for r in pair["routes"].values() if target in r["destination"]]
    routes.sort(key=lambda r: -r["destination"].prefixlen)
    for r in routes:
        for iface in node["interfaces"].values():
            if r["gateway"] in iface["cidr"]:
                return iface["address"]
    return None


def lb_sources(pair: dict) -> list[netaddr.IPAddress]:
    """The addresses the pair's two nodes check the database servers from:
    what the probe accepts connections from (with 127.0.0.1)."""
    found = set()
    for server in galera_servers(pair):
        for node_id, node in pair["nodes"].items():
            src = _source_toward(pair, node, server["address"])
            if src is None:
                raise ValueError(
                    f"{node_id} has no connected network and no route toward galera server {server['name']} ({server['address']}): "
                    f"cannot tell which address its checks come from"
                )
            found.add(src)
    return sorted(found)


# ---------------------------------------------------------------------------
# rate limits


_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def seconds(value) -> float:
    """A HAProxy time (`2s`, `500ms`, `2000` = ms) in seconds."""
    m = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", str(value))
    if not m:
        raise ValueError(f"{value!r} is not a HAProxy time")
    return int(m.group(1)) * _TIME_UNITS[m.group(2) or "ms"]


def check_load(pair: dict) -> dict:
    """The most HAProxy check traffic one database server gets from the pair:
    `rate` (checks per second: both nodes, every listener whose pool holds
    it, at the shortest of inter / fastinter / downinter) and `concurrent`
    (checks in flight at once: one per node and listener)."""
    rate: dict = {}
    concurrent: dict = {}
    nodes = len(pair["nodes"])
    pools = pair["haproxy"]["pools"]
    for lst in pair["haproxy"]["listeners"].values():
        pool = pools.get(lst["pool"])
        if pool is None or pool["kind"] != "galera":
            continue
        ds = pool["default_server"]
        inter = seconds(ds["inter"]) if "inter" in ds else HAPROXY_DEFAULT_INTER
        shortest = min([inter] + [seconds(ds[k]) for k in ("fastinter", "downinter") if k in ds])
        for s in pool["servers"].values():
            if not s["check"]:
                continue
            rate[s["address"]] = rate.get(s["address"], 0.0) + nodes / max(shortest, 0.001)
            concurrent[s["address"]] = concurrent.get(s["address"], 0) + nodes
    return {"rate": max(rate.values(), default=0.0), "concurrent": max(concurrent.values(), default=0)}


def limits(pair: dict) -> dict:
    """xinetd's and inetd's limits for the probe, from the pair's timers.

    The trap: xinetd's `cps` turns the whole service OFF for `wait` seconds
    when more than `rate` connections arrive in a second (default 50 10),
    and FreeBSD's inetd stops a service for 10 minutes past `-R` invocations
    a minute (default 256).  Every database server gets the same check
    traffic from the same two load balancers, so whatever trips the limit on
    one trips it on all of them in the same second: every server is DOWN in
    HAProxy at once (10 s is more than fall x inter), the outage the probe
    exists to prevent.  So: the rate limits sit far above anything the pair
    can send (RATE_MARGIN x its peak, at least MIN_CPS a second), xinetd
    re-enables after the shortest wait it has (1 s: less than one check
    interval, and fall needs two failed checks), and the load is bounded by
    what refuses single connections instead of the service: `instances` (a
    cap on probes running at once; excess connections wait in the backlog)
    and `per_source` (a cap per client address)."""
    load = check_load(pair)
    rate = load["rate"]
    conc = load["concurrent"]
    cps = max(MIN_CPS, math.ceil(RATE_MARGIN * rate))
    return {
        "check_rate": rate,
        "check_concurrent": conc,
        # a reload runs the old and the new HAProxy's checks side by side: x2;
        # room for local status checks on top
        "instances": max(MIN_INSTANCES, 4 * conc),
        "per_source": max(MIN_PER_SOURCE, conc + 2),
        "cps": (cps, CPS_WAIT),
        # inetd counts per minute
        "per_ip_per_minute": max(60 * MIN_CPS, math.ceil(60 * RATE_MARGIN * rate)),
        "service_per_minute": max(60 * MIN_CPS, math.ceil(60 * RATE_MARGIN * rate)),
    }


# ---------------------------------------------------------------------------
# rendering


def params(os_family: str, overrides: dict | None = None) -> dict:
    """The OS's paths and names (lb_parameters' probe section), with
    `overrides` (any key of that section, and `user`, `group`, `host`,
    `port`, `bind`, `maintenance_file`) on top."""
    if os_family not in OS_FAMILIES:
        raise ValueError(f"os_family {os_family!r} is not supported for the probe (supported: {', '.join(OS_FAMILIES)})")
    out = lb_parameters.of(os_family, "probe")
    out.update({"user": None, "group": None, "host": None, "port": None, "bind": None, "maintenance_file": None})
    known = set(out) | lb_parameters.keys("probe")
    for key in overrides or {}:
        if key not in known:
            raise KeyError(f"unknown probe parameter {key!r} (known: {', '.join(sorted(known))})")
    # every value reaches a root-owned file (the probe's #! line, xinetd's
    # or inetd's config): the `clustercheck` settings' grammar
    lb_settings.validate("clustercheck", overrides)
    for key, value in (overrides or {}).items():
        # a key of the other OS (xinetd_service on FreeBSD) does not apply here
        if value is not None and key in out:
            out[key] = value
    return out


def account(pair: dict, p: dict) -> dict:
    """The MySQL account the probe logs in with: USAGE only (SHOW STATUS and
    @@read_only need no privilege), limited to as many connections as the
    super-server runs probes."""
    probe = pair["galera_probe"]
    host = "localhost" if not p["host"] else str(p["host"])
    return {"name": probe["user"], "password": probe["password"], "host": host, "max_connections": limits(pair)["instances"]}


def program_context(p: dict) -> dict:
    """The probe program's template context: its interpreter and the paths
    it reads (`clustercheck_settings` grammar: absolute paths of
    [A-Za-z0-9_./+-], so each is safe in the #! line and in a Python string
    literal)."""
    return {"python": p["python"], "config": p["config"], "client": p["client"], "client_path": p["client_path"]}


def _quote_option(value: str) -> str:
    # MySQL option files: a value in single quotes is taken literally but for
    # backslash escapes; the pillar check refuses ' and \ in the password.
    if "'" in value or "\\" in value or "\n" in value:
        raise ValueError("an option value may not hold ', \\ or a newline")
    return f"'{value}'"


def render_option_file(pair: dict, p: dict, redact: bool = False) -> str:
    probe = pair["galera_probe"]
    acct = account(pair, p)
    out = [
        f"# {HEADER.format(pair=pair['name'])}",
        "# The Galera probe's MySQL account (read by the client with",
        "# --defaults-extra-file) and the probe's own settings.  Secret: 0600.",
        "[client]",
        f"user = {acct['name']}",
        f"password = {REDACTED if redact else _quote_option(acct['password'])}",
    ]
    if p["host"]:
        out.append(f"host = {p['host']}")
        out.append(f"port = {p['port'] or 3306}")
        out.append("protocol = tcp")
    else:
        out.append(f"socket = {p['socket']}")
        out.append("protocol = socket")
    out += [
        "",
        f"[{SERVICE}]",
        f"timeout = {probe['timeout']}",
        f"available_when_donor = {int(bool(probe['available_when_donor']))}",
        f"available_when_readonly = {int(bool(probe['available_when_readonly']))}",
        f"maintenance_file = {p['maintenance_file'] or probe['maintenance_file']}",
    ]
    return "\n".join(out) + "\n"


def render_xinetd(pair: dict, p: dict) -> str:
    probe = pair["galera_probe"]
    lim = limits(pair)
    allowed = ["127.0.0.1"] + [str(a) for a in lb_sources(pair)]
    lines = [
        f"# {HEADER.format(pair=pair['name'])}",
        "# The Galera health probe HAProxy checks (docs/clustercheck.md).",
        f"# Rate limits from the pair's check timers: at most {lim['check_rate']:g} checks/s and",
        f"# {lim['check_concurrent']} at once per server; cps trips far above that and re-enables",
        "# after 1 s (xinetd's default `cps = 50 10` could take every node out at once).",
        f"service {SERVICE}",
        "{",
        "    type            = UNLISTED",
        "    socket_type     = stream",
        "    protocol        = tcp",
        f"    port            = {probe['port']}",
    ]
    if p["bind"]:
        lines.append(f"    bind            = {p['bind']}")
    lines += [
        "    wait            = no",
        f"    user            = {p['user'] or probe['user']}",
        f"    group           = {p['group'] or p['user'] or probe['user']}",
        f"    server          = {p['probe']}",
        f"    only_from       = {' '.join(allowed)}",
        f"    instances       = {lim['instances']}",
        f"    per_source      = {lim['per_source']}",
        f"    cps             = {lim['cps'][0]} {lim['cps'][1]}",
        # one line per check per second per node would flood syslog
        "    log_on_success  =",
        "    log_on_failure  = HOST",
        "    disable         = no",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_inetd(pair: dict, p: dict) -> dict[str, ProbeFile]:
    probe = pair["galera_probe"]
    lim = limits(pair)
    user = p["user"] or probe["user"]
    group = p["group"] or user
    head = f"# {HEADER.format(pair=pair['name'])}"
    allowed = ["127.0.0.1"] + [str(a) for a in lb_sources(pair)]
    files = {}
    # inetd finds the port by the service name in /etc/services.
    files[p["services"]] = ProbeFile(
        f"{SERVICE}\t{probe['port']}/tcp\t# Galera health probe for HAProxy\n", group=p["root_group"], block="append"
    )
    # nowait/max-child/max-connections-per-ip-per-minute/max-child-per-ip
    wait = f"nowait/{lim['instances']}/{lim['per_ip_per_minute']}/{lim['per_source']}"
    files[p["inetd_conf"]] = ProbeFile(
        f"{SERVICE}\tstream\ttcp\t{wait}\t{user}:{group}\t{p['probe']}\t{SERVICE}\n", group=p["root_group"], block="append"
    )
    # TCP wrappers (inetd -w): the daemon name is the server's name.  First
    # match wins, so these go before the stock `ALL : ALL : allow`.
    files[p["hosts_allow"]] = ProbeFile(
        f"{SERVICE} : {' '.join(allowed)} : allow\n{SERVICE} : ALL : deny\n", group=p["root_group"], block="prepend"
    )
    rc = [
        head,
        'inetd_enable="YES"',
        # -wW: TCP wrappers (hosts.allow); -C: FreeBSD's default per-address
        # rate for the other services; -R: the per-service rate past which
        # inetd stops a service for 10 minutes (default 256 a minute).
        f'inetd_flags="-wW -C 60 -R {lim["service_per_minute"]}"',
    ]
    files[p["inetd_rc"]] = ProbeFile("\n".join(rc) + "\n", group=p["root_group"])
    return files


def render_probe(model: dict, pair_name: str, os_family: str, overrides: dict | None = None, redact: bool = False) -> dict[str, ProbeFile]:
    """Every file a database server of `pair_name` gets on `os_family`.

    `overrides`: see `params()` (tests use it to serve the probe from a
    scratch directory as another user against another socket)."""
    pair = model["pairs"][pair_name]
    if not pair.get("galera_probe"):
        raise KeyError(f"pair {pair_name!r} has no galera_probe")
    p = params(os_family, overrides)
    user = p["user"] or pair["galera_probe"]["user"]
    group = p["group"] or user
    head_group = p["root_group"]
    files = {
        p["probe"]: ProbeFile("", mode="0755", group=head_group, source=PROBE_SOURCE, context=program_context(p)),
        p["config"]: ProbeFile(render_option_file(pair, p, redact), mode="0600", user=user, group=group, secret=True),
    }
    if os_family == "Debian":
        files[p["xinetd_service"]] = ProbeFile(render_xinetd(pair, p), group=head_group)
    else:
        files.update(render_inetd(pair, p))
    return dict(sorted(files.items()))


def plan(
    model: dict, os_family: str, pair_name: str | None = None, addresses=(), overrides: dict | None = None, redact: bool = False
) -> dict:
    """Everything the `clustercheck` SLS needs for one database server:
    files (as plain dicts), the account, packages, the user, the daemon."""
    name = find_pair(model, pair_name, addresses)
    pair = model["pairs"][name]
    p = params(os_family, overrides)
    files = render_probe(model, name, os_family, overrides, redact)
    user = p["user"] or pair["galera_probe"]["user"]
    maintenance_file = p["maintenance_file"] or pair["galera_probe"]["maintenance_file"]
    return {
        "pair": name,
        "os_family": os_family,
        "user": user,
        "group": p["group"] or user,
        "shell": p["shell"],
        "home": os.path.dirname(maintenance_file),
        "maintenance_file": maintenance_file,
        "socket": p["socket"],
        "config": p["config"],
        "probe": p["probe"],
        "port": pair["galera_probe"]["port"],
        "packages": list(p["packages"]),
        "daemon": p["daemon"],
        "account": dict(account(pair, p), password=REDACTED) if redact else account(pair, p),
        "files": {
            path: {
                "content": f.content,
                "mode": f.mode,
                "user": f.user,
                "group": f.group,
                "secret": f.secret,
                "block": f.block,
                "source": f.source,
                "context": f.context,
            }
            for path, f in files.items()
        },
    }
