"""The `lb` topology pillar: load it, check it, and turn it into a model.

Pure Python (netaddr and PyYAML only): no Salt dunders, so it is unit-tested
without a loader and imported by the `lb` execution module, the states and
the lab alike.  Salt puts `_utils/` on `sys.path` on masters and minions, so
a plain `import lb_topology` works there too.

`check(raw)` walks the pillar once, collecting every problem as a `Finding`
with the pillar path that holds it (`lb:pairs:edge:carp:groups:44:vip`) and
building the normalized model (defaults filled in, addresses parsed).
`load(raw)` returns that model or raises `TopologyError` with all errors.
"""

import datetime
import re
from dataclasses import dataclass, field
from typing import Any

import netaddr
import yaml

import lb_grammar

ROOT = "lb"

# FreeBSD's ifconfig copies the CARP password with
# strlcpy(carpr_key, val, CARP_KEY_LEN) and CARP_KEY_LEN is 20: anything past
# 19 bytes is silently dropped, so two peers could "agree" on a longer
# password that CARP never sees in full.
CARP_PASSWORD_MAX = 19
# The password reaches FreeBSD's boot in rc.conf.d/netif
# (ifconfig_<if>_aliasN="... pass P ..."), and libexec/rc/network.subr
# (ifalias_af_common) splits that line unquoted (so `*`, `?`, `[` glob),
# runs it through `eval` (so `;`, `|`, `&`, `<`, `>`, `(`, `)`, quotes, `\`,
# `$`, backquote, a leading `#` or `~` act), and reads any hex digit
# followed by `-` as an address range ("abc-def" recurses without end).
# What survives all of that unchanged: letters, digits and these marks, so
# the key the kernel gets at boot is the one `ifconfig` sets live
# (tests/unit/test_freebsd_boot.py runs network.subr on every one of them).
CARP_PASSWORD_MARKS = "!%+,./:=@^_"
CARP_PASSWORD_RE = re.compile("[A-Za-z0-9" + re.escape(CARP_PASSWORD_MARKS) + "]+")

LINUX_PROVIDERS = ("keepalived", "ucarp")
POOL_KINDS = ("galera", "http", "tcp")
MODES = ("tcp", "http")
CHECK_TYPES = ("tcp-check", "httpchk", "connect", "none")

# Every string that reaches a config file or a shell is checked against
# its language's grammar in lb_grammar (full-match rules); these names are
# the ones this module uses.
BALANCE_RE = lb_grammar.HAPROXY_BALANCE
TIME_RE = lb_grammar.HAPROXY_TIME
NAME_RE = lb_grammar.HAPROXY_NAME
HOSTNAME_RE = lb_grammar.HOSTNAME
DEVICE_RE = lb_grammar.DEVICE
OPTION_RE = lb_grammar.HAPROXY_OPTION
COMMUNITY_RE = lb_grammar.COMMUNITY
# the probe's account: a MySQL user name and the Unix user the probe runs as
PROBE_USER_RE = lb_grammar.Rule("probe_user", re.compile(r"[A-Za-z0-9_]{1,32}"), "a MySQL user name (letters, digits, '_'; at most 32)")

# TLS material in the pillar (listener `tls:`): PEM blocks as RFC 7468 writes them.
PEM_BLOCK_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)
PEM_KEY_TYPES = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")

# default-server / server keywords a pool may set (HAProxy 2.6, the ones that
# take one value).  Unknown keys are an error: a typo here would otherwise
# only show up as `haproxy -c` failing on the minion.
SERVER_PARAMS = {
    "inter": "time",
    "fastinter": "time",
    "downinter": "time",
    "rise": "int",
    "fall": "int",
    "slowstart": "time",
    "maxconn": "int",
    "maxqueue": "int",
    "minconn": "int",
    "weight": "weight",
    "on-marked-down": ("shutdown-sessions",),
    "on-marked-up": ("shutdown-backup-sessions",),
    "on-error": ("fastinter", "fail-check", "sudden-death", "mark-down"),
    "observe": ("layer4", "layer7"),
    "error-limit": "int",
    "agent-inter": "time",
    "init-addr": "word",
    "resolvers": "word",
}

# What a Galera pool gets unless the pillar says otherwise: the seed's timers,
# and sessions cut when a server changes state, so that a recovered active
# server does not take writes while old connections still write on a backup.
GALERA_DEFAULT_SERVER = {
    "inter": "2s",
    "downinter": "5s",
    "rise": 3,
    "fall": 2,
    "slowstart": "60s",
    "maxconn": 300,
    "maxqueue": 128,
    "weight": 100,
    "on-marked-down": "shutdown-sessions",
    "on-marked-up": "shutdown-backup-sessions",
    # Faster than fall x inter when the writer dies: after a first failed
    # check the next ones come every 500 ms, and three failed connections of
    # real traffic (observe layer4) mark it down at once.
    "fastinter": "500ms",
    "observe": "layer4",
    "error-limit": 3,
    "on-error": "mark-down",
}
GALERA_DEFAULT_CHECK = {"type": "tcp-check", "port": 9200, "expect": r"string is\ running."}

STATS_DEFAULTS = {
    "enabled": True,
    "interface": "mgmt",
    "port": 9000,
    "uri": "/haproxy_stats",
    "refresh": "10s",
    "show_node": True,
    "timeouts": {"client": "5s", "connect": "4s", "server": "30s"},
}

# HAProxy's Prometheus exporter (port: the one of HAProxy's documentation)
METRICS_DEFAULTS = {"port": 8405}

PROBE_DEFAULTS = {
    "port": 9200,
    "user": "clustercheck",
    "available_when_donor": False,
    "available_when_readonly": False,
    "timeout": 2,
    "maintenance_file": "/var/lib/clustercheck/maintenance",
}


@dataclass(frozen=True)
class Finding:
    """One problem in the topology, at one pillar path."""

    path: str
    message: str

    def as_dict(self) -> dict:
        return {"path": self.path, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class TopologyError(ValueError):
    """The topology has errors; `.errors` lists every one of them."""

    def __init__(self, errors: list[Finding], warnings: list[Finding] | None = None):
        self.errors = list(errors)
        self.warnings = list(warnings or [])
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(f"invalid lb topology ({len(self.errors)} errors):\n{lines}")


@dataclass
class Report:
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    model: dict | None = None

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "errors": [e.as_dict() for e in self.errors],
            "warnings": [w.as_dict() for w in self.warnings],
        }


def _duplicate_keys(node, path: str, found: list) -> None:
    """Walk a composed YAML node tree; every key given twice in one mapping
    becomes a Finding at its pillar path (PyYAML would keep the last value
    silently; Salt's renderer refuses the file)."""
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key_node, value_node in node.value:
            key = key_node.value
            here = f"{path}:{key}" if path else str(key)
            if key in seen:
                found.append(
                    Finding(here, f"is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); YAML keeps only one")
                )
            else:
                seen[key] = key_node.start_mark.line
            _duplicate_keys(value_node, here, found)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, f"{path}:{i}", found)


def load_file(path: str) -> Any:
    """Read a topology file: either what the pillar's `lb` key holds, or a
    whole pillar SLS with a top-level `lb` key (unwrapped).  A key given
    twice, or YAML that does not parse, raises TopologyError."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError([Finding(path, f"is not valid YAML: {exc}")]) from exc
    wrapped = isinstance(data, dict) and set(data) == {ROOT}
    found: list = []
    _duplicate_keys(node, "" if wrapped else ROOT, found)
    if found:
        raise TopologyError(found)
    return data[ROOT] if wrapped else data


def check(raw: Any) -> Report:
    """Validate `raw` (the value of the pillar's `lb` key).  Never raises on
    bad input: every problem becomes a Finding."""
    return _Checker().run(raw)


def load(raw: Any) -> dict:
    """The normalized model of a valid topology, or TopologyError."""
    report = check(raw)
    if report.errors:
        raise TopologyError(report.errors, report.warnings)
    return report.model


def find_node(model: dict, node_id: str) -> tuple[dict, dict]:
    """(pair, node) for a node id, or KeyError naming the known ids."""
    for pair in model["pairs"].values():
        if node_id in pair["nodes"]:
            return pair, pair["nodes"][node_id]
    known = sorted(n for p in model["pairs"].values() for n in p["nodes"])
    raise KeyError(f"node {node_id!r} is in no pair of the topology (known nodes: {', '.join(known)})")


def roles(model: dict, minion_id: str, addresses=()) -> dict:
    """What a minion is in the topology: {"lb": [pair names it is a node of],
    "galera": [pair names whose galera pools list one of its addresses],
    "routing": [pairs it is a node of that have `routing` (OSPF or BGP)]}.
    The state top file assigns states from this, so the topology is the only
    place that says which host does what."""
    addrs = {str(a) for a in addresses}
    out = {"lb": [], "galera": [], "routing": []}
    for name, pair in model["pairs"].items():
        if minion_id in pair["nodes"]:
            out["lb"].append(name)
            routing = pair.get("routing") or {}
            if routing.get("bgp") is not None or routing.get("ospf") is not None:
                out["routing"].append(name)
        for pool in pair["haproxy"]["pools"].values():
            if pool["kind"] == "galera" and any(str(s["address"]) in addrs for s in pool["servers"].values()):
                if name not in out["galera"]:
                    out["galera"].append(name)
    return out


def declared_linux_provider(raw, node_id: str) -> str:
    """The `carp:linux_provider` the raw (unvalidated) topology gives the
    pair that has `node_id` among its nodes, when it is one of
    LINUX_PROVIDERS; else the default, keepalived."""
    pairs = raw.get("pairs") if isinstance(raw, dict) else None
    for pair in pairs.values() if isinstance(pairs, dict) else ():
        if isinstance(pair, dict) and isinstance(pair.get("nodes"), dict) and node_id in pair["nodes"]:
            carp = pair.get("carp")
            provider = carp.get("linux_provider") if isinstance(carp, dict) else None
            return provider if provider in LINUX_PROVIDERS else "keepalived"
    return "keepalived"


def minion_roles(raw, minion_id: str, addresses=()) -> dict:
    """`roles()` from the pillar's raw `lb` value, for the state top file:
    no `lb` key gives no role (a minion the topology does not concern); an
    invalid topology gives no role and ``"invalid"``, its first error with
    its pillar path and the count, so that the top file fails the highstate
    loudly instead of applying nothing (salt/lb/invalid.sls)."""
    out = {"lb": [], "galera": [], "routing": [], "invalid": None}
    if raw is None:
        return out
    report = check(raw)
    if report.errors:
        more = len(report.errors) - 1
        out["invalid"] = str(report.errors[0]) + (f" (and {more} more)" if more else "")
        return out
    out.update(roles(report.model, minion_id, addresses))
    return out


# ---------------------------------------------------------------------------


def cert_validity(cert) -> tuple[datetime.datetime, datetime.datetime]:
    """(not before, not after) of a `cryptography` certificate, as aware UTC
    datetimes.  cryptography >= 42 has the `*_utc` properties; older ones
    (Debian 12's python3-cryptography 38, what a salt-ssh target's python3
    imports: docs/agentless.md) only the naive UTC ones."""
    try:
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    except AttributeError:
        return cert.not_valid_before.replace(tzinfo=datetime.UTC), cert.not_valid_after.replace(tzinfo=datetime.UTC)


def _p(*parts) -> str:
    return ":".join(str(p) for p in parts)


class _Checker:
    def __init__(self):
        self.errors: list[Finding] = []
        self.warnings: list[Finding] = []
        # per pair name: the VHIDs of CARP groups that are declared but
        # invalid (their own errors said why); what refers to them says
        # nothing more, so only the root cause is reported
        self.broken_vhids: dict[str, set[int]] = {}

    # -- helpers ----------------------------------------------------------
    def err(self, path, message):
        self.errors.append(Finding(path, message))

    def warn(self, path, message):
        self.warnings.append(Finding(path, message))

    def mapping(self, value, path, required=True) -> dict | None:
        if value is None:
            if required:
                self.err(path, "is required (a mapping)")
            return None
        if not isinstance(value, dict):
            self.err(path, f"must be a mapping, not {type(value).__name__}")
            return None
        return value

    def unknown_keys(self, d: dict, allowed, path):
        for key in d:
            if key not in allowed:
                self.err(_p(path, key), f"unknown key (allowed here: {', '.join(sorted(allowed))})")

    def integer(self, value, path, lo, hi, what="") -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            else:
                self.err(path, f"must be an integer{what} in {lo}-{hi}, got {value!r}")
                return None
        if not lo <= value <= hi:
            self.err(path, f"{value} is outside {lo}-{hi}{what}")
            return None
        return value

    def boolean(self, value, path) -> bool | None:
        if not isinstance(value, bool):
            self.err(path, f"must be true or false, got {value!r}")
            return None
        return value

    def text(self, value, path, rule: lb_grammar.Rule) -> str | None:
        """A string its target language reads back unchanged (``rule``,
        from lb_grammar); numbers are taken as their decimal text."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        problem = rule.problem(value)
        if problem is not None:
            self.err(path, problem)
            return None
        return value

    def name(self, value, path, rule: lb_grammar.Rule = NAME_RE) -> bool:
        """A mapping key that names something in a rendered file."""
        problem = rule.problem(value)
        if problem is not None:
            self.err(path, problem)
            return False
        return True

    def time(self, value, path) -> str | None:
        if isinstance(value, bool):
            value = None
        if isinstance(value, int):
            value = str(value)
        if not isinstance(value, str) or not TIME_RE.fullmatch(value):
            self.err(path, f"{value!r} is not {TIME_RE.what}")
            return None
        return value

    def ip(self, value, path) -> netaddr.IPAddress | None:
        if not isinstance(value, str):
            self.err(path, f"must be an IPv4 address as a string, got {value!r}")
            return None
        try:
            addr = netaddr.IPAddress(value, flags=netaddr.INET_PTON)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            self.err(path, f"{value!r} is not a valid IP address")
            return None
        if addr.version != 4:
            self.err(path, f"{value} is IPv6; this product manages IPv4 CARP/VRRP pairs only")
            return None
        return addr

    def cidr(self, value, path, strict=True) -> netaddr.IPNetwork | None:
        if not isinstance(value, str) or "/" not in value:
            self.err(path, f"{value!r} is not an address with a prefix (like 10.2.2.0/24)")
            return None
        try:
            addr, prefix = value.split("/", 1)
            netaddr.IPAddress(addr, flags=netaddr.INET_PTON)
            net = netaddr.IPNetwork(value)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            self.err(path, f"{value!r} is not a valid address with a prefix")
            return None
        if net.version != 4:
            self.err(path, f"{value} is IPv6; this product manages IPv4 only")
            return None
        if strict and net.ip != net.network:
            self.err(path, f"{value} has host bits set; the network is {net.cidr}")
            return None
        return net

    # -- walk -------------------------------------------------------------
    def run(self, raw) -> Report:
        model = None
        top = self.mapping(raw, ROOT)
        if top is not None:
            self.unknown_keys(top, {"pairs"}, ROOT)
            pairs = self.mapping(top.get("pairs"), _p(ROOT, "pairs"))
            if pairs is not None:
                if not pairs:
                    self.err(_p(ROOT, "pairs"), "holds no pair")
                model = {"pairs": {}}
                for name, pair in pairs.items():
                    path = _p(ROOT, "pairs", name)
                    if not self.name(name, path):
                        continue
                    built = self.pair(pair, path, name)
                    if built is not None:
                        model["pairs"][name] = built
                self.across_pairs(model, _p(ROOT, "pairs"))
        return Report(self.errors, self.warnings, model if not self.errors else None)

    def pair(self, raw, path, name) -> dict | None:
        d = self.mapping(raw, path)
        if d is None:
            return None
        allowed = {
            "description",
            "networks",
            "nodes",
            "carp",
            "sysctl",
            "routes",
            "haproxy",
            "galera_probe",
            "routing",
        }
        self.unknown_keys(d, allowed, path)
        pair = {"name": name, "description": str(d.get("description") or "")}
        pair["networks"] = self.networks(d.get("networks"), _p(path, "networks"))
        pair["nodes"] = self.nodes(d.get("nodes"), _p(path, "nodes"), pair["networks"])
        pair["carp"] = self.carp(d.get("carp"), _p(path, "carp"), pair)
        pair["sysctl"] = self.sysctl(d.get("sysctl"), _p(path, "sysctl"))
        pair["routes"] = self.routes(d.get("routes"), _p(path, "routes"), pair)
        pair["haproxy"] = self.haproxy(d.get("haproxy"), _p(path, "haproxy"), pair)
        pair["galera_probe"] = self.probe(d.get("galera_probe"), _p(path, "galera_probe"), pair)
        pair["routing"] = self.routing(d.get("routing"), _p(path, "routing"), pair)
        return pair

    # -- networks and nodes -------------------------------------------------
    def networks(self, raw, path) -> dict:
        d = self.mapping(raw, path)
        out = {}
        if d is None:
            return out
        seen = []
        for name, net in d.items():
            npath = _p(path, name)
            nd = self.mapping(net, npath)
            if nd is None:
                continue
            self.unknown_keys(nd, {"cidr", "gateway", "description"}, npath)
            cidr = self.cidr(nd.get("cidr"), _p(npath, "cidr"))
            if cidr is None:
                continue
            for other_name, other in seen:
                if cidr in other or other in cidr:
                    self.err(_p(npath, "cidr"), f"{cidr} overlaps network {other_name!r} ({other})")
            seen.append((name, cidr))
            entry = {"name": name, "cidr": cidr, "gateway": None}
            if nd.get("gateway") is not None:
                gw = self.ip(nd["gateway"], _p(npath, "gateway"))
                if gw is not None:
                    if gw not in cidr:
                        self.err(_p(npath, "gateway"), f"{gw} is not inside {cidr}")
                    elif gw in (cidr.network, cidr.broadcast):
                        self.err(_p(npath, "gateway"), f"{gw} is the network or broadcast address of {cidr}")
                    else:
                        entry["gateway"] = gw
            out[name] = entry
        return out

    def nodes(self, raw, path, networks) -> dict:
        d = self.mapping(raw, path)
        out = {}
        if d is None:
            return out
        if len(d) != 2:
            self.err(path, f"a pair has exactly two nodes, this one has {len(d)}")
        for node_id, node in d.items():
            npath = _p(path, node_id)
            if not self.name(node_id, npath):
                continue
            nd = self.mapping(node, npath)
            if nd is None:
                continue
            self.unknown_keys(nd, {"hostname", "interfaces", "router_id"}, npath)
            entry = {"id": node_id, "interfaces": {}, "router_id": None}
            entry["hostname"] = self.text(nd.get("hostname"), _p(npath, "hostname"), HOSTNAME_RE)
            if nd.get("router_id") is not None:
                entry["router_id"] = self.ip(nd["router_id"], _p(npath, "router_id"))
            ifs = self.mapping(nd.get("interfaces"), _p(npath, "interfaces"))
            used_devices = {}
            for ifname, iface in (ifs or {}).items():
                ipath = _p(npath, "interfaces", ifname)
                idict = self.mapping(iface, ipath)
                if idict is None:
                    continue
                self.unknown_keys(idict, {"network", "address", "device"}, ipath)
                device = self.device(idict.get("device"), _p(ipath, "device"))
                for dev in (device or {}).values():
                    if dev in used_devices and used_devices[dev] != ifname:
                        self.err(_p(ipath, "device"), f"device {dev} is already used by interface {used_devices[dev]!r}")
                    used_devices[dev] = ifname
                netname = idict.get("network")
                net = networks.get(netname) if isinstance(netname, str) else None
                if net is None:
                    self.err(_p(ipath, "network"), f"names no network of this pair ({netname!r}; known: {', '.join(sorted(networks))})")
                addr = self.ip(idict.get("address"), _p(ipath, "address"))
                if addr is not None and net is not None:
                    if addr not in net["cidr"]:
                        self.err(_p(ipath, "address"), f"{addr} is outside its network {netname!r} ({net['cidr']})")
                        addr = None
                    elif addr in (net["cidr"].network, net["cidr"].broadcast):
                        self.err(_p(ipath, "address"), f"{addr} is the network or broadcast address of {net['cidr']}")
                        addr = None
                    elif net["gateway"] is not None and addr == net["gateway"]:
                        self.err(_p(ipath, "address"), f"{addr} is the gateway of network {netname!r}")
                        addr = None
                if addr is not None and net is not None and device:
                    entry["interfaces"][ifname] = {
                        "name": ifname,
                        "network": netname,
                        "address": addr,
                        "cidr": net["cidr"],
                        "device": device,
                    }
            out[node_id] = entry
        # addresses unique across the pair
        seen = {}
        for node_id, node in out.items():
            for ifname, iface in node["interfaces"].items():
                a = iface["address"]
                if a in seen:
                    self.err(_p(path, node_id, "interfaces", ifname, "address"), f"{a} is also the address of {seen[a]}")
                seen[a] = f"{node_id}:{ifname}"
        if len(out) == 2:
            a, b = out.values()
            for ifname in sorted(set(a["interfaces"]) | set(b["interfaces"])):
                ia, ib = a["interfaces"].get(ifname), b["interfaces"].get(ifname)
                if ia and ib and ia["network"] != ib["network"]:
                    self.err(
                        _p(path, b["id"], "interfaces", ifname, "network"),
                        f"peers disagree: {a['id']} has interface {ifname!r} on {ia['network']!r}, {b['id']} on {ib['network']!r}",
                    )
        return out

    def device(self, raw, path) -> dict | None:
        """A device name, or one per os_family ({FreeBSD: hn1, Debian: ens4})."""
        if isinstance(raw, str):
            raw = {"default": raw}
        elif isinstance(raw, dict):
            for k in raw:
                if k not in ("FreeBSD", "Debian", "default"):
                    self.err(_p(path, k), "a device per OS is keyed by FreeBSD, Debian or default")
                    return None
        else:
            self.err(path, f"must be a device name (hn0, eth1) or a mapping per os_family, got {raw!r}")
            return None
        out = {}
        for k, v in raw.items():
            problem = DEVICE_RE.problem(v)
            if problem is not None:
                self.err(path if len(raw) == 1 and "default" in raw else _p(path, k), problem)
                return None
            out[k] = v
        return out

    # -- CARP -----------------------------------------------------------------
    def carp(self, raw, path, pair) -> dict:
        d = self.mapping(raw, path)
        out = {
            "advbase": 1,
            "backup_advskew": 100,
            "preempt": True,
            "linux_provider": "keepalived",
            "vrrp_advert_int": 0.2,
            "second_chance": True,
            "groups": {},
        }
        if d is None:
            return out
        self.unknown_keys(d, {"advbase", "backup_advskew", "preempt", "linux_provider", "vrrp_advert_int", "second_chance", "groups"}, path)
        if "second_chance" in d:
            out["second_chance"] = self.boolean(d["second_chance"], _p(path, "second_chance"))
        if "advbase" in d:
            out["advbase"] = self.integer(d["advbase"], _p(path, "advbase"), 1, 255, " seconds")
        if "backup_advskew" in d:
            out["backup_advskew"] = self.integer(d["backup_advskew"], _p(path, "backup_advskew"), 1, 254)
        if "preempt" in d:
            out["preempt"] = self.boolean(d["preempt"], _p(path, "preempt"))
            if out["preempt"] is False:
                self.warn(
                    _p(path, "preempt"),
                    "preempt is off: a node leaving maintenance or coming back never takes its VIPs back, and a planned switchover waits for the master to stop advertising",
                )
        if "linux_provider" in d:
            if d["linux_provider"] not in LINUX_PROVIDERS:
                self.err(_p(path, "linux_provider"), f"{d['linux_provider']!r} is not one of {', '.join(LINUX_PROVIDERS)}")
            else:
                out["linux_provider"] = d["linux_provider"]
        if "vrrp_advert_int" in d:
            v = d["vrrp_advert_int"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.01 <= v <= 40.95:
                self.err(_p(path, "vrrp_advert_int"), f"{v!r} is outside 0.01-40.95 seconds (VRRPv3 counts in centiseconds)")
            elif round(v * 100) != v * 100 and abs(round(v * 100) - v * 100) > 1e-6:
                self.err(_p(path, "vrrp_advert_int"), f"{v!r} is not a whole number of centiseconds")
            else:
                out["vrrp_advert_int"] = v
        groups = self.mapping(d.get("groups"), _p(path, "groups"))
        nodes = pair["nodes"]
        seen_vips = {}
        seen_segment = {}
        declared = set()
        for vhid_key, group in (groups or {}).items():
            gpath = _p(path, "groups", vhid_key)
            vhid = self.integer(vhid_key, gpath, 1, 255, " (a VHID)")
            gd = self.mapping(group, gpath)
            if vhid is not None:
                declared.add(vhid)
            if vhid is None or gd is None:
                continue
            self.unknown_keys(gd, {"interface", "vip", "password", "primary", "advbase", "advskew_primary", "advskew_backup"}, gpath)
            g = {"vhid": vhid}
            ifname = gd.get("interface")
            g["interface"] = ifname
            if not isinstance(ifname, str):
                self.err(_p(gpath, "interface"), "is required: the logical interface (as in the nodes' interfaces) that carries the VIP")
                continue
            lacking = [node_id for node_id, node in nodes.items() if ifname not in node["interfaces"]]
            missing = bool(lacking)
            if missing:
                self.err(
                    _p(gpath, "interface"),
                    f"{'node' if len(lacking) == 1 else 'nodes'} {', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no interface {ifname!r}",
                )
            vip = self.cidr(gd.get("vip"), _p(gpath, "vip"), strict=False)
            if vip is not None:
                for node_id, node in nodes.items():
                    iface = node["interfaces"].get(ifname)
                    if iface is None:
                        continue
                    if vip.ip not in iface["cidr"]:
                        self.err(_p(gpath, "vip"), f"{vip.ip} is outside {node_id}'s {ifname} subnet {iface['cidr']}")
                        vip = None
                        break
                    if vip.cidr != iface["cidr"]:
                        self.err(_p(gpath, "vip"), f"prefix /{vip.prefixlen} disagrees with {node_id}'s {ifname} subnet {iface['cidr']}")
                        vip = None
                        break
                    if vip.ip == iface["address"]:
                        self.err(_p(gpath, "vip"), f"{vip.ip} is {node_id}'s own address on {ifname}")
                        vip = None
                        break
                    if vip.ip in (iface["cidr"].network, iface["cidr"].broadcast):
                        self.err(_p(gpath, "vip"), f"{vip.ip} is the network or broadcast address of {iface['cidr']}")
                        vip = None
                        break
                    gateway = (pair["networks"].get(iface["network"]) or {}).get("gateway")
                    if gateway is not None and vip.ip == gateway:
                        self.err(
                            _p(gpath, "vip"),
                            f"{vip.ip} is the gateway of network {iface['network']!r}: both nodes would claim the router's address",
                        )
                        vip = None
                        break
            if vip is not None:
                if vip.ip in seen_vips:
                    self.err(_p(gpath, "vip"), f"{vip.ip} is also the VIP of group {seen_vips[vip.ip]}")
                seen_vips[vip.ip] = vhid
            # a VHID is unique per segment (the virtual MAC is 00:00:5e:00:01:<vhid>)
            segment = None
            for node in nodes.values():
                if ifname in node["interfaces"]:
                    segment = node["interfaces"][ifname]["network"]
            if segment is not None:
                if (segment, vhid) in seen_segment:
                    self.err(gpath, f"VHID {vhid} is used twice on segment {segment!r} (also by group {seen_segment[(segment, vhid)]})")
                seen_segment[(segment, vhid)] = vhid_key
            g["segment"] = segment
            pw = gd.get("password")
            if pw is None:
                self.err(_p(gpath, "password"), "is required (CARP authenticates advertisements with it)")
            elif not isinstance(pw, str):
                self.err(_p(gpath, "password"), "must be a string")
            elif len(pw.encode()) > CARP_PASSWORD_MAX:
                self.err(
                    _p(gpath, "password"),
                    f"is {len(pw.encode())} bytes; CARP keeps only {CARP_PASSWORD_MAX} (CARP_KEY_LEN 20 with its NUL) and silently drops the rest",
                )
            elif not CARP_PASSWORD_RE.fullmatch(pw):
                bad = "".join(sorted({ch for ch in pw if not CARP_PASSWORD_RE.fullmatch(ch)}))
                self.err(
                    _p(gpath, "password"),
                    f"may hold only letters, digits and {' '.join(CARP_PASSWORD_MARKS)} (it has {bad!r}): FreeBSD's rc "
                    "(network.subr) runs the netif alias line through eval and reads 'X-' as an address range, so the key "
                    "set at boot would differ from the one set live",
                )
            g["password"] = pw
            primary = gd.get("primary")
            if primary not in nodes:
                self.err(_p(gpath, "primary"), f"names no node of this pair ({primary!r}; nodes: {', '.join(sorted(nodes))})")
            g["primary"] = primary
            g["advbase"] = out["advbase"]
            if "advbase" in gd:
                g["advbase"] = self.integer(gd["advbase"], _p(gpath, "advbase"), 1, 255, " seconds")
            g["advskew_primary"] = 0
            g["advskew_backup"] = out["backup_advskew"]
            if "advskew_primary" in gd:
                g["advskew_primary"] = self.integer(gd["advskew_primary"], _p(gpath, "advskew_primary"), 0, 254)
            if "advskew_backup" in gd:
                g["advskew_backup"] = self.integer(gd["advskew_backup"], _p(gpath, "advskew_backup"), 0, 254)
            if g["advskew_primary"] is not None and g["advskew_backup"] is not None and g["advskew_primary"] >= g["advskew_backup"]:
                self.err(
                    gpath,
                    f"peers would disagree on who is master: the primary's advskew ({g['advskew_primary']}) must be lower than the backup's ({g['advskew_backup']})",
                )
            if out["linux_provider"] == "keepalived" and g["advskew_backup"] is not None and g["advskew_backup"] > 253:
                self.err(_p(gpath, "advskew_backup"), "254 maps to VRRP priority 0, which keepalived reserves; use at most 253")
            if vip is None or missing or None in (g["advbase"], g["advskew_primary"], g["advskew_backup"]) or primary not in nodes:
                continue
            g["vip"] = vip
            out["groups"][vhid] = g
        if groups is not None and not groups:
            self.err(_p(path, "groups"), "holds no CARP group")
        self.broken_vhids[pair["name"]] = declared - set(out["groups"])
        return out

    def sysctl(self, raw, path) -> dict:
        out = {"ip_forwarding": True, "extra": {"FreeBSD": {}, "Debian": {}}}
        d = self.mapping(raw, path, required=False)
        if d is None:
            return out
        self.unknown_keys(d, {"ip_forwarding", "extra"}, path)
        if "ip_forwarding" in d:
            out["ip_forwarding"] = self.boolean(d["ip_forwarding"], _p(path, "ip_forwarding"))
        extra = self.mapping(d.get("extra"), _p(path, "extra"), required=False) or {}
        for osf, values in extra.items():
            epath = _p(path, "extra", osf)
            if osf not in ("FreeBSD", "Debian"):
                self.err(epath, "sysctl extras are keyed by os_family: FreeBSD or Debian")
                continue
            vd = self.mapping(values, epath) or {}
            for key, value in vd.items():
                if not self.name(key, _p(epath, key), lb_grammar.SYSCTL_NAME):
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, str)):
                    self.err(_p(epath, key), f"value {value!r} must be a number or a string ({lb_grammar.SYSCTL_VALUE.what})")
                    continue
                if self.text(value, _p(epath, key), lb_grammar.SYSCTL_VALUE) is None:
                    continue
                out["extra"][osf][key] = value
        return out

    def routes(self, raw, path, pair) -> dict:
        out = {}
        d = self.mapping(raw, path, required=False)
        if d is None:
            return out
        for name, route in d.items():
            rpath = _p(path, name)
            if not self.name(name, rpath, lb_grammar.ROUTE_NAME):
                continue
            rd = self.mapping(route, rpath)
            if rd is None:
                continue
            self.unknown_keys(rd, {"destination", "gateway"}, rpath)
            dest = self.cidr(rd.get("destination"), _p(rpath, "destination"))
            gw = self.ip(rd.get("gateway"), _p(rpath, "gateway"))
            if gw is not None:
                for node_id, node in pair["nodes"].items():
                    if not any(gw in i["cidr"] for i in node["interfaces"].values()):
                        self.err(_p(rpath, "gateway"), f"{gw} is not on a network connected to {node_id}")
                        gw = None
                        break
            if dest is not None and gw is not None:
                for node in pair["nodes"].values():
                    for iface in node["interfaces"].values():
                        if dest == iface["cidr"]:
                            self.warn(
                                _p(rpath, "destination"),
                                f"{dest} is directly connected on {node['id']}'s {iface['name']}; the route is never used",
                            )
                out[name] = {"name": name, "destination": dest, "gateway": gw}
        return out

    # -- HAProxy --------------------------------------------------------------
    def haproxy(self, raw, path, pair) -> dict:
        d = self.mapping(raw, path)
        out = {"global": {}, "defaults": {}, "userlists": {}, "stats": None, "metrics": None, "pools": {}, "listeners": {}}
        if d is None:
            return out
        self.unknown_keys(d, {"global", "defaults", "userlists", "stats", "metrics", "pools", "listeners"}, path)
        out["global"] = self.directives(d.get("global"), _p(path, "global"))
        out["defaults"] = self.defaults(d.get("defaults"), _p(path, "defaults"))
        out["userlists"] = self.userlists(d.get("userlists"), _p(path, "userlists"))
        out["pools"] = self.pools(d.get("pools"), _p(path, "pools"))
        out["listeners"] = self.listeners(d.get("listeners"), _p(path, "listeners"), pair, out["pools"], out["defaults"]["mode"])
        out["stats"] = self.stats(d.get("stats"), _p(path, "stats"), pair, out["userlists"])
        out["metrics"] = self.metrics(d.get("metrics"), _p(path, "metrics"), pair, out["stats"])
        return out

    def directives(self, raw, path) -> dict:
        """Extra `global` lines: keyword -> value (or list of values)."""
        out = {}
        d = self.mapping(raw, path, required=False) or {}
        managed = {"daemon", "master-worker", "stats", "user", "group", "chroot", "pidfile"}
        for key, value in d.items():
            kpath = _p(path, key)
            if not self.name(key, kpath, lb_grammar.HAPROXY_KEYWORD):
                continue
            if key in managed:
                self.err(kpath, f"{key!r} is managed by the product (master-worker, stats socket, user); it cannot be set here")
                continue
            values = value if isinstance(value, list) else [value]
            clean = []
            for i, v in enumerate(values):
                s = self.text(v, _p(kpath, i) if isinstance(value, list) else kpath, lb_grammar.HAPROXY_ARGS)
                if s is not None:
                    clean.append(s)
            out[key] = clean
        return out

    def defaults(self, raw, path) -> dict:
        out = {
            "mode": "tcp",
            "timeouts": {"connect": "5s", "client": "1m", "server": "1m", "queue": "30s", "check": "2s"},
            "options": ["dontlognull", "redispatch"],
            "retries": 3,
            "log": True,
        }
        d = self.mapping(raw, path, required=False)
        if d is None:
            return out
        self.unknown_keys(d, {"mode", "timeouts", "options", "retries", "log"}, path)
        if "mode" in d:
            if d["mode"] not in MODES:
                self.err(_p(path, "mode"), f"{d['mode']!r} is not one of {', '.join(MODES)}")
            else:
                out["mode"] = d["mode"]
        if "timeouts" in d:
            out["timeouts"] = dict(out["timeouts"], **self.timeouts(d["timeouts"], _p(path, "timeouts")))
        if "options" in d:
            out["options"] = self.options(d["options"], _p(path, "options"))
        if "retries" in d:
            out["retries"] = self.integer(d["retries"], _p(path, "retries"), 0, 100)
        if "log" in d:
            out["log"] = self.boolean(d["log"], _p(path, "log"))
        return out

    def timeouts(self, raw, path) -> dict:
        out = {}
        d = self.mapping(raw, path) or {}
        known = {
            "connect",
            "client",
            "server",
            "queue",
            "check",
            "tunnel",
            "http-request",
            "http-keep-alive",
            "client-fin",
            "server-fin",
            "tarpit",
        }
        for key, value in d.items():
            if key not in known:
                self.err(_p(path, key), f"unknown timeout (known: {', '.join(sorted(known))})")
                continue
            t = self.time(value, _p(path, key))
            if t is not None:
                out[key] = t
        return out

    def options(self, raw, path) -> list:
        if not isinstance(raw, list):
            self.err(path, "must be a list of option names (without the word `option`)")
            return []
        out = []
        for i, opt in enumerate(raw):
            if not self.name(opt, _p(path, i), OPTION_RE):
                continue
            if opt in ("tcp-check", "httpchk") or opt.startswith("httpchk "):
                self.err(_p(path, i), f"`option {opt}` comes from the pool's check; set it there")
                continue
            if opt in out:
                self.err(_p(path, i), f"option {opt!r} is listed twice")
                continue
            out.append(opt)
        return out

    def userlists(self, raw, path) -> dict:
        out = {}
        d = self.mapping(raw, path, required=False) or {}
        for name, ul in d.items():
            upath = _p(path, name)
            if not self.name(name, upath):
                continue
            ud = self.mapping(ul, upath)
            if ud is None:
                continue
            self.unknown_keys(ud, {"users", "groups"}, upath)
            users = {}
            for uname, user in (self.mapping(ud.get("users"), _p(upath, "users")) or {}).items():
                uupath = _p(upath, "users", uname)
                if not self.name(uname, uupath):
                    continue
                udict = self.mapping(user, uupath)
                if udict is None:
                    continue
                if "password" in udict or "insecure_password" in udict:
                    key = "password" if "password" in udict else "insecure_password"
                    self.err(
                        _p(uupath, key),
                        "plaintext passwords are refused (the seed's insecure-password): give password_hash, a SHA-crypt hash ($6$...) made with `mkpasswd -m sha-512`",
                    )
                    continue
                self.unknown_keys(udict, {"password_hash"}, uupath)
                h = udict.get("password_hash")
                problem = lb_grammar.password_hash_problem(h)
                if problem is not None:
                    # the reason names the rounds, never the hash itself
                    if lb_grammar.SHA_CRYPT.fullmatch(h) is None:
                        problem = f"is not {lb_grammar.SHA_CRYPT.what}"
                    self.err(_p(uupath, "password_hash"), problem)
                    continue
                users[uname] = {"name": uname, "password_hash": h}
            groups = {}
            for gname, members in (self.mapping(ud.get("groups"), _p(upath, "groups"), required=False) or {}).items():
                gpath = _p(upath, "groups", gname)
                if not self.name(gname, gpath):
                    continue
                if not isinstance(members, list):
                    self.err(gpath, "must be a list of user names")
                    continue
                ok = []
                for i, m in enumerate(members):
                    if m not in users:
                        self.err(_p(gpath, i), f"names unknown user {m!r} (users: {', '.join(sorted(users))})")
                    else:
                        ok.append(m)
                groups[gname] = ok
            out[name] = {"name": name, "users": users, "groups": groups}
        return out

    def check_spec(self, raw, path, kind) -> dict:
        if raw is None:
            return dict(GALERA_DEFAULT_CHECK) if kind == "galera" else {"type": "connect", "port": None}
        d = self.mapping(raw, path) or {}
        self.unknown_keys(d, {"type", "port", "expect", "uri", "method", "status"}, path)
        ctype = d.get("type", "connect")
        out = {"type": ctype, "port": None}
        if ctype not in CHECK_TYPES:
            self.err(_p(path, "type"), f"{ctype!r} is not one of {', '.join(CHECK_TYPES)}")
            return out
        if "port" in d:
            out["port"] = self.integer(d["port"], _p(path, "port"), 1, 65535, " (a TCP port)")
        if ctype == "tcp-check":
            out["expect"] = self.text(d.get("expect"), _p(path, "expect"), lb_grammar.HAPROXY_TCP_EXPECT)
        elif ctype == "httpchk":
            out["method"] = d.get("method", "GET")
            if out["method"] not in ("GET", "HEAD", "OPTIONS"):
                self.err(_p(path, "method"), f"{out['method']!r} is not GET, HEAD or OPTIONS")
            out["uri"] = self.text(d.get("uri", "/"), _p(path, "uri"), lb_grammar.HAPROXY_URI)
            out["status"] = self.integer(d.get("status", 200), _p(path, "status"), 100, 599)
        elif "expect" in d:
            self.err(_p(path, "expect"), f"only a tcp-check has an expect rule, this check is {ctype!r}")
        return out

    def server_params(self, raw, path) -> dict:
        out = {}
        d = self.mapping(raw, path, required=False) or {}
        for key, value in d.items():
            kpath = _p(path, key)
            spec = SERVER_PARAMS.get(key)
            if spec is None:
                if key == "port":
                    self.err(kpath, "the check port is set once, in the pool's check:port")
                else:
                    self.err(kpath, f"unknown server parameter (known: {', '.join(sorted(SERVER_PARAMS))})")
                continue
            if spec == "time":
                v = self.time(value, kpath)
            elif spec == "int":
                v = self.integer(value, kpath, 0, 1_000_000)
            elif spec == "weight":
                v = self.integer(value, kpath, 0, 256)
            elif spec == "word":
                v = self.text(value, kpath, lb_grammar.HAPROXY_SERVER_WORD)
            else:
                v = value if value in spec else None
                if v is None:
                    self.err(kpath, f"{value!r} is not one of {', '.join(spec)}")
            if v is not None:
                out[key] = v
        return out

    def pools(self, raw, path) -> dict:
        out = {}
        d = self.mapping(raw, path) or {}
        for name, pool in d.items():
            ppath = _p(path, name)
            if not self.name(name, ppath):
                continue
            pd = self.mapping(pool, ppath)
            if pd is None:
                continue
            self.unknown_keys(pd, {"kind", "check", "default_server", "servers"}, ppath)
            kind = pd.get("kind", "tcp")
            if kind not in POOL_KINDS:
                self.err(_p(ppath, "kind"), f"{kind!r} is not one of {', '.join(POOL_KINDS)}")
                continue
            entry = {"name": name, "kind": kind}
            entry["check"] = self.check_spec(pd.get("check"), _p(ppath, "check"), kind)
            params = self.server_params(pd.get("default_server"), _p(ppath, "default_server"))
            if kind == "galera":
                params = dict(GALERA_DEFAULT_SERVER, **params)
            entry["default_server"] = params
            servers = {}
            seen_addr = {}
            sd = self.mapping(pd.get("servers"), _p(ppath, "servers")) or {}
            if not sd and pd.get("servers") is not None:
                self.err(_p(ppath, "servers"), "holds no server")
            for sname, server in sd.items():
                spath = _p(ppath, "servers", sname)
                if not self.name(sname, spath):
                    continue
                sdict = self.mapping(server, spath)
                if sdict is None:
                    continue
                self.unknown_keys(sdict, {"address", "port", "backup", "check", "weight", "disabled"}, spath)
                addr = self.ip(sdict.get("address"), _p(spath, "address"))
                port = self.integer(sdict.get("port"), _p(spath, "port"), 1, 65535, " (a TCP port)")
                backup = self.boolean(sdict.get("backup", False), _p(spath, "backup"))
                chk = self.boolean(sdict.get("check", entry["check"]["type"] != "none"), _p(spath, "check"))
                disabled = self.boolean(sdict.get("disabled", False), _p(spath, "disabled"))
                weight = None
                if "weight" in sdict:
                    weight = self.integer(sdict["weight"], _p(spath, "weight"), 0, 256)
                if addr is not None and port is not None:
                    if (addr, port) in seen_addr:
                        self.err(spath, f"{addr}:{port} is also server {seen_addr[(addr, port)]!r} of this pool")
                    seen_addr[(addr, port)] = sname
                if None in (addr, port, backup, chk, disabled):
                    continue
                servers[sname] = {
                    "name": sname,
                    "address": addr,
                    "port": port,
                    "backup": backup,
                    "check": chk,
                    "weight": weight,
                    "disabled": disabled,
                }
            entry["servers"] = servers
            if kind == "galera" and servers:
                active = [s for s in servers.values() if not s["backup"]]
                if len(active) != 1:
                    self.err(
                        _p(ppath, "servers"),
                        f"a galera pool takes writes on exactly one server, the others are `backup: true`; this one has {len(active)} active ({', '.join(s['name'] for s in active) or 'none'})",
                    )
                if entry["check"]["type"] in ("connect", "none"):
                    self.err(
                        _p(ppath, "check", "type"),
                        "a galera pool needs the probe (tcp-check or httpchk on the probe port): a TCP connect succeeds on a desynced node",
                    )
            out[name] = entry
        return out

    def listeners(self, raw, path, pair, pools, default_mode) -> dict:
        out = {}
        d = self.mapping(raw, path) or {}
        groups = pair["carp"]["groups"]
        binds = {}
        section_names = {}
        for name, lst in d.items():
            lpath = _p(path, name)
            if not self.name(name, lpath):
                continue
            ld = self.mapping(lst, lpath)
            if ld is None:
                continue
            self.unknown_keys(ld, {"name", "vhid", "port", "mode", "balance", "timeouts", "options", "pool", "maxconn", "tls"}, lpath)
            entry = {"key": name}
            vhid = self.integer(ld.get("vhid"), _p(lpath, "vhid"), 1, 255, " (the CARP group whose VIP it binds)")
            if vhid is not None and vhid not in groups:
                if vhid not in self.broken_vhids.get(pair["name"], ()):
                    self.err(
                        _p(lpath, "vhid"),
                        f"no CARP group {vhid} carries a VIP for this listener (groups: {', '.join(str(v) for v in sorted(groups)) or 'none'})",
                    )
                vhid = None
            port = self.integer(ld.get("port"), _p(lpath, "port"), 1, 65535, " (a TCP port)")
            mode = ld.get("mode", default_mode)
            if mode not in MODES:
                self.err(_p(lpath, "mode"), f"{mode!r} is not one of {', '.join(MODES)}")
                mode = None
            balance = ld.get("balance", "roundrobin")
            if not self.name(balance, _p(lpath, "balance"), BALANCE_RE):
                balance = None
            timeouts = self.timeouts(ld.get("timeouts") or {}, _p(lpath, "timeouts"))
            options = self.options(ld.get("options", []), _p(lpath, "options"))
            maxconn = None
            if "maxconn" in ld:
                maxconn = self.integer(ld["maxconn"], _p(lpath, "maxconn"), 1, 10_000_000)
            pool_name = ld.get("pool")
            pool = pools.get(pool_name) if isinstance(pool_name, str) else None
            if pool is None:
                self.err(_p(lpath, "pool"), f"names no pool ({pool_name!r}; pools: {', '.join(sorted(pools)) or 'none'})")
            if vhid is not None and port is not None:
                key = (groups[vhid]["vip"].ip, port)
                if key in binds:
                    self.err(_p(lpath, "port"), f"{key[0]}:{port} is already bound by listener {binds[key]!r}")
                binds[key] = name
            if "allbackups" in options and pool is not None and pool["kind"] == "galera":
                self.warn(
                    _p(lpath, "options"),
                    "option allbackups on a galera pool sends writes to every backup at once when the active server fails: the deadlocks one-active-plus-backups exists to avoid",
                )
            if (
                pool is not None
                and pool["kind"] == "galera"
                and balance not in (None, "leastconn", "first", "roundrobin", "static-rr", "source")
            ):
                self.warn(
                    _p(lpath, "balance"),
                    f"balance {balance} on a galera pool: with one active server the algorithm only matters among backups",
                )
            if pool is not None and mode == "tcp" and pool["kind"] == "http":
                self.warn(_p(lpath, "mode"), "an http pool behind a tcp listener: no HTTP logging or header handling")
            tls = None
            if ld.get("tls") is not None:
                tls = self.tls(ld["tls"], _p(lpath, "tls"), mode, port)
                if tls is not None and tls["redirect_http"] and vhid is not None:
                    key = (groups[vhid]["vip"].ip, 80)
                    if key in binds:
                        self.err(_p(lpath, "tls", "redirect_http"), f"{key[0]}:80 is already bound by listener {binds[key]!r}")
                    binds[key] = f"{name} (redirect_http)"
            if None in (vhid, port, mode, balance) or pool is None or (ld.get("tls") is not None and tls is None):
                continue
            vip = groups[vhid]["vip"].ip
            section = ld.get("name") or f"haproxy_{vip}_{port}"
            if not self.name(section, _p(lpath, "name")):
                continue
            if section in section_names:
                self.err(_p(lpath, "name"), f"section name {section!r} is also listener {section_names[section]!r}")
                continue
            section_names[section] = name
            entry.update(
                {
                    "name": section,
                    "vhid": vhid,
                    "vip": vip,
                    "port": port,
                    "mode": mode,
                    "balance": balance,
                    "timeouts": timeouts,
                    "options": options,
                    "pool": pool_name,
                    "maxconn": maxconn,
                    "tls": tls,
                }
            )
            out[name] = entry
        return out

    def pem_blocks(self, value, path, what) -> list[tuple[str, bytes]] | None:
        """The PEM blocks of a pillar string as (label, DER bytes), or None
        after an error at `path`."""
        import base64
        import binascii

        if not isinstance(value, str) or "-----BEGIN " not in value:
            self.err(
                path,
                f"must be {what} in PEM form (-----BEGIN ...-----), got {type(value).__name__ if not isinstance(value, str) else 'text without a PEM block'}",
            )
            return None
        blocks = []
        for m in PEM_BLOCK_RE.finditer(value):
            body = m.group(2)
            if "Proc-Type: 4,ENCRYPTED" in body:
                blocks.append((m.group(1) + " (ENCRYPTED)", b""))
                continue
            try:
                der = base64.b64decode("".join(body.split()), validate=True)
            except (binascii.Error, ValueError):
                self.err(path, f"the {m.group(1)} block is not valid base64")
                return None
            if not der or der[0] != 0x30:
                self.err(path, f"the {m.group(1)} block does not hold DER data")
                return None
            blocks.append((m.group(1), der))
        if not blocks:
            self.err(path, f"has a BEGIN line but no complete PEM block (is an END line missing?); must be {what}")
            return None
        return blocks

    def tls(self, raw, path, mode, port) -> dict | None:
        """A listener's `tls`: certificate (chain) and key from the pillar,
        deployed 0600 as one PEM that HAProxy's `bind ... ssl crt` reads."""
        d = self.mapping(raw, path)
        if d is None:
            return None
        self.unknown_keys(d, {"certificate", "key", "redirect_http"}, path)
        errors = len(self.errors)
        if mode is not None and mode != "http":
            self.err(path, f"TLS is terminated on HTTP listeners; this one has mode {mode}")
        redirect = d.get("redirect_http", False)
        if not isinstance(redirect, bool):
            self.err(_p(path, "redirect_http"), f"must be true or false, got {redirect!r}")
        elif redirect and port == 80:
            self.err(
                _p(path, "redirect_http"),
                "the listener itself is on port 80; redirect_http adds a plain-HTTP bind on port 80 that redirects to it",
            )
        certs = self.pem_blocks(d.get("certificate"), _p(path, "certificate"), "the certificate (and its chain)")
        if certs is not None:
            labels = [b[0] for b in certs]
            if any("PRIVATE KEY" in label for label in labels):
                self.err(_p(path, "certificate"), "holds a private key; give it under tls:key")
            elif labels[0] != "CERTIFICATE" or any(label not in ("CERTIFICATE", "TRUSTED CERTIFICATE") for label in labels):
                self.err(_p(path, "certificate"), f"must hold CERTIFICATE blocks only, found {', '.join(labels)}")
        keys = self.pem_blocks(d.get("key"), _p(path, "key"), "the private key")
        if keys is not None:
            labels = [b[0] for b in keys]
            if len(keys) != 1:
                self.err(_p(path, "key"), f"must hold exactly one private key block, found {', '.join(labels)}")
            elif "ENCRYPTED" in labels[0]:
                self.err(
                    _p(path, "key"),
                    "is encrypted; HAProxy cannot ask for a passphrase at start: give the key unencrypted (the pillar is where it is protected)",
                )
            elif labels[0] not in PEM_KEY_TYPES:
                self.err(_p(path, "key"), f"must be a private key block ({', '.join(PEM_KEY_TYPES)}), found {labels[0]}")
        if len(self.errors) == errors:
            self.tls_pair(certs[0][1], keys[0][1], path)
        if len(self.errors) != errors:
            return None
        return {"certificate": d["certificate"], "key": d["key"], "redirect_http": redirect}

    def tls_pair(self, cert_der: bytes, key_der: bytes, path) -> None:
        """With `cryptography` at hand (Salt depends on it): the key must be
        the certificate's, and an expired certificate is a warning."""
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization
        except ImportError:  # pragma: no cover - Salt always brings it
            return
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError as exc:
            self.err(_p(path, "certificate"), f"is not a readable X.509 certificate ({exc})")
            return
        try:
            key = serialization.load_der_private_key(key_der, password=None)
        except (ValueError, TypeError) as exc:
            self.err(_p(path, "key"), f"is not a readable private key ({exc})")
            return
        fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*fmt) != cert.public_key().public_bytes(*fmt):
            self.err(
                _p(path, "key"), f"does not belong to the certificate ({cert.subject.rfc4514_string()}): HAProxy would refuse the pair"
            )
            return
        _, not_after = cert_validity(cert)
        if not_after < datetime.datetime.now(datetime.UTC):
            self.warn(_p(path, "certificate"), f"expired on {not_after:%Y-%m-%d} ({cert.subject.rfc4514_string()})")

    def stats(self, raw, path, pair, userlists) -> dict | None:
        d = self.mapping(raw, path, required=False)
        if d is None:
            self.warn(path, "no stats listener: operators have no status page")
            return None
        allowed = {"enabled", "interface", "port", "uri", "userlist", "admin_group", "refresh", "show_node", "timeouts"}
        self.unknown_keys(d, allowed, path)
        out = dict(STATS_DEFAULTS, timeouts=dict(STATS_DEFAULTS["timeouts"]))
        if "enabled" in d:
            out["enabled"] = self.boolean(d["enabled"], _p(path, "enabled"))
        if not out["enabled"]:
            return None
        ifname = d.get("interface", out["interface"])
        for node_id, node in pair["nodes"].items():
            if ifname not in node["interfaces"]:
                self.err(_p(path, "interface"), f"node {node_id} has no interface {ifname!r} to bind the stats page to")
        out["interface"] = ifname
        if "port" in d:
            out["port"] = self.integer(d["port"], _p(path, "port"), 1, 65535, " (a TCP port)")
        out["uri"] = self.text(d.get("uri", out["uri"]), _p(path, "uri"), lb_grammar.HAPROXY_URI)
        if "refresh" in d:
            out["refresh"] = self.time(d["refresh"], _p(path, "refresh"))
        if "show_node" in d:
            out["show_node"] = self.boolean(d["show_node"], _p(path, "show_node"))
        if "timeouts" in d:
            out["timeouts"].update(self.timeouts(d["timeouts"], _p(path, "timeouts")))
        ul = d.get("userlist")
        if ul is None:
            self.err(_p(path, "userlist"), "is required: the stats page is never open without authentication")
        elif ul not in userlists:
            self.err(_p(path, "userlist"), f"names no userlist ({ul!r}; userlists: {', '.join(sorted(userlists)) or 'none'})")
        out["userlist"] = ul
        ag = d.get("admin_group")
        if ag is not None and ul in userlists and ag not in userlists[ul]["groups"]:
            self.err(_p(path, "admin_group"), f"names no group of userlist {ul!r} ({ag!r})")
        out["admin_group"] = ag
        return out

    def metrics(self, raw, path, pair, stats) -> dict | None:
        """HAProxy's Prometheus exporter: on the stats address (the
        management network), open only to `allow` (default: the stats
        interface's network)."""
        d = {} if raw is None else self.mapping(raw, path)
        if d is None:
            return None
        self.unknown_keys(d, {"enabled", "port", "allow"}, path)
        enabled = self.boolean(d["enabled"], _p(path, "enabled")) if "enabled" in d else True
        if not enabled or stats is None:
            if enabled and d:
                self.err(path, "the exporter binds the stats page's address: it needs haproxy:stats (or set enabled: false)")
            return None
        out = {"port": METRICS_DEFAULTS["port"], "allow": []}
        if "port" in d:
            out["port"] = self.integer(d["port"], _p(path, "port"), 1, 65535, " (a TCP port)")
            if out["port"] is not None and out["port"] == stats["port"]:
                self.err(_p(path, "port"), f"{out['port']} is the stats page's port")
        allow = d.get("allow")
        if allow is None:
            # the network of the interface the exporter binds (the same on both nodes)
            ifname = stats["interface"]
            nets = {str(n["interfaces"][ifname]["cidr"].cidr) for n in pair["nodes"].values() if ifname in n["interfaces"]}
            out["allow"] = sorted(nets)
        elif not isinstance(allow, list) or not allow:
            self.err(
                _p(path, "allow"), "must be a non-empty list of networks (like [10.1.1.0/24]); set enabled: false to turn the exporter off"
            )
        else:
            for i, item in enumerate(allow):
                ipath = _p(path, "allow", i)
                if not isinstance(item, str) or not re.fullmatch(r"[0-9.]{7,15}/[0-9]{1,2}", item):
                    self.err(ipath, f"{item!r} is not an IPv4 network with a prefix (like 10.1.1.0/24, or 10.1.1.7/32 for one host)")
                    continue
                net = self.cidr(item, ipath)
                if net is not None and str(net) not in out["allow"]:
                    out["allow"].append(str(net))
        return out

    def probe(self, raw, path, pair) -> dict | None:
        has_galera = any(p["kind"] == "galera" for p in pair["haproxy"]["pools"].values())
        d = self.mapping(raw, path, required=False)
        if d is None:
            if has_galera:
                self.err(path, "is required when a pool has kind galera (the probe's port and MySQL account)")
            return None
        self.unknown_keys(d, set(PROBE_DEFAULTS) | {"password"}, path)
        out = dict(PROBE_DEFAULTS)
        if "port" in d:
            out["port"] = self.integer(d["port"], _p(path, "port"), 1, 65535, " (a TCP port)")
        out["user"] = self.text(d.get("user", out["user"]), _p(path, "user"), PROBE_USER_RE)
        pw = d.get("password")
        if not isinstance(pw, str) or not pw:
            self.err(_p(path, "password"), "is required (the probe's MySQL password; keep it encrypted in the pillar)")
        elif not lb_grammar.MYSQL_OPTION_VALUE.ok(pw):
            self.err(_p(path, "password"), f"must be {lb_grammar.MYSQL_OPTION_VALUE.what} (one line)")
        out["password"] = pw
        for key in ("available_when_donor", "available_when_readonly"):
            if key in d:
                out[key] = self.boolean(d[key], _p(path, key))
        if "timeout" in d:
            out["timeout"] = self.integer(d["timeout"], _p(path, "timeout"), 1, 10, " seconds")
        if "maintenance_file" in d:
            out["maintenance_file"] = self.text(d["maintenance_file"], _p(path, "maintenance_file"), lb_grammar.SH_PATH)
        for pname, pool in pair["haproxy"]["pools"].items():
            if pool["kind"] == "galera" and pool["check"].get("port") not in (None, out["port"]):
                self.err(
                    _p(path.rsplit(":", 1)[0], "haproxy", "pools", pname, "check", "port"),
                    f"checks port {pool['check']['port']} but the probe listens on {out['port']}",
                )
        return out

    def routing(self, raw, path, pair) -> dict:
        out = {"ospf": None, "bgp": None}
        d = self.mapping(raw, path, required=False)
        if d is None:
            return out
        self.unknown_keys(d, {"ospf", "bgp"}, path)
        if d.get("ospf") is not None or d.get("bgp") is not None:
            for node_id, node in pair["nodes"].items():
                if node["router_id"] is None:
                    self.err(_p(path.rsplit(":", 1)[0], "nodes", node_id, "router_id"), "is required when routing is configured")
            rids = [n["router_id"] for n in pair["nodes"].values() if n["router_id"] is not None]
            if len(rids) == 2 and rids[0] == rids[1]:
                self.err(path, f"both nodes have router-id {rids[0]}")
        if d.get("ospf") is not None:
            opath = _p(path, "ospf")
            od = self.mapping(d["ospf"], opath) or {}
            self.unknown_keys(od, {"area", "interfaces"}, opath)
            area = self.ip(str(od.get("area", "0.0.0.0")), _p(opath, "area"))
            ifaces = {}
            for ifname, opts in (self.mapping(od.get("interfaces"), _p(opath, "interfaces")) or {}).items():
                ipath = _p(opath, "interfaces", ifname)
                for node_id, node in pair["nodes"].items():
                    if ifname not in node["interfaces"]:
                        self.err(ipath, f"node {node_id} has no interface {ifname!r}")
                o = self.mapping(opts if opts is not None else {}, ipath) or {}
                self.unknown_keys(o, {"passive", "metric"}, ipath)
                entry = {"passive": False, "metric": None}
                if "passive" in o:
                    entry["passive"] = self.boolean(o["passive"], _p(ipath, "passive"))
                if "metric" in o:
                    entry["metric"] = self.integer(o["metric"], _p(ipath, "metric"), 1, 65535)
                ifaces[ifname] = entry
            out["ospf"] = {"area": area, "interfaces": ifaces}
        if d.get("bgp") is not None:
            bpath = _p(path, "bgp")
            bd = self.mapping(d["bgp"], bpath) or {}
            self.unknown_keys(bd, {"asn", "neighbors"}, bpath)
            asn = self.integer(bd.get("asn"), _p(bpath, "asn"), 1, 4294967295, " (an AS number)")
            neighbors = {}
            symbols = {}
            for nname, nb in (self.mapping(bd.get("neighbors"), _p(bpath, "neighbors")) or {}).items():
                npath = _p(bpath, "neighbors", nname)
                if not self.name(nname, npath, lb_grammar.BGP_NEIGHBOR_NAME):
                    continue
                reserved = lb_grammar.bird_symbol_problem(nname)
                if reserved is not None:
                    self.err(npath, reserved)
                    continue
                sym = lb_grammar.bird_symbol(nname)
                if sym in symbols:
                    self.err(npath, f"is BIRD protocol {sym!r} in bird.conf, like neighbor {symbols[sym]!r}")
                    continue
                symbols[sym] = nname
                nd = self.mapping(nb, npath)
                if nd is None:
                    continue
                self.unknown_keys(
                    nd, {"address", "remote_as", "md5sig_password", "med", "localpref", "communities", "descr", "hold_time", "bfd"}, npath
                )
                addr = self.ip(nd.get("address"), _p(npath, "address"))
                local = {}
                ours = {str(i["address"]): nid for nid, n in pair["nodes"].items() for i in n["interfaces"].values()}
                ours.update({str(g["vip"].ip): f"VIP of group {v}" for v, g in pair["carp"]["groups"].items()})
                if addr is not None and str(addr) in ours:
                    self.err(_p(npath, "address"), f"{addr} is this pair's own address ({ours[str(addr)]}), not a neighbor's")
                elif addr is not None:
                    for node_id, node in pair["nodes"].items():
                        match = [i for i in node["interfaces"].values() if addr in i["cidr"]]
                        if not match:
                            self.err(_p(npath, "address"), f"{addr} is not on a network connected to {node_id} (no local-address)")
                        else:
                            local[node_id] = match[0]["address"]
                entry = {
                    "name": nname,
                    "descr": self.text(nd.get("descr", nname), _p(npath, "descr"), lb_grammar.BGP_DESCR),
                    "address": addr,
                    "local_address": local,
                    "remote_as": self.integer(nd.get("remote_as"), _p(npath, "remote_as"), 1, 4294967295, " (an AS number)"),
                    "md5sig_password": None,
                    "med": None,
                    "localpref": None,
                    "communities": [],
                    "hold_time": None,
                    "bfd": False,
                }
                if "hold_time" in nd:
                    entry["hold_time"] = self.integer(nd["hold_time"], _p(npath, "hold_time"), 3, 65535, " (seconds)")
                if "bfd" in nd:
                    # BIRD (Linux) only; OpenBGPD has no BFD (docs/routing.md)
                    entry["bfd"] = bool(self.boolean(nd["bfd"], _p(npath, "bfd")))
                if "md5sig_password" in nd:
                    pw = nd["md5sig_password"]
                    # quoted in bgpd.conf and bird.conf: '#' and '$' are the key's own
                    if not isinstance(pw, str) or not lb_grammar.MD5SIG.ok(pw):
                        self.err(_p(npath, "md5sig_password"), f"must be {lb_grammar.MD5SIG.what}")
                    else:
                        entry["md5sig_password"] = pw
                if "med" in nd:
                    entry["med"] = self.integer(nd["med"], _p(npath, "med"), 0, 4294967295)
                if "localpref" in nd:
                    entry["localpref"] = self.integer(nd["localpref"], _p(npath, "localpref"), 0, 4294967295)
                comms = nd.get("communities", [])
                if not isinstance(comms, list):
                    self.err(_p(npath, "communities"), "must be a list like ['65000:180']")
                else:
                    for i, c in enumerate(comms):
                        if not isinstance(c, str) or not COMMUNITY_RE.fullmatch(c) or any(int(x) > 65535 for x in c.split(":")):
                            self.err(_p(npath, "communities", i), f"{c!r} is not a community ASN:VALUE with both parts in 0-65535")
                        else:
                            entry["communities"].append(c)
                if asn is not None and entry["remote_as"] == asn:
                    self.warn(_p(npath, "remote_as"), "iBGP neighbor (remote-as equals our AS): the seed peers eBGP")
                neighbors[nname] = entry
            out["bgp"] = {"asn": asn, "neighbors": neighbors}
        return out

    # -- across pairs --------------------------------------------------------
    def across_pairs(self, model, path):
        node_owner = {}
        vip_owner = {}
        segment_vhid = {}
        for pname, pair in model["pairs"].items():
            for node_id in pair["nodes"]:
                if node_id in node_owner:
                    self.err(
                        _p(path, pname, "nodes", node_id),
                        f"node id {node_id!r} is also a node of pair {node_owner[node_id]!r} (node ids are minion ids: unique)",
                    )
                node_owner[node_id] = pname
            for vhid, g in pair["carp"]["groups"].items():
                key = g["vip"].ip
                if key in vip_owner and vip_owner[key][0] != pname:
                    self.err(
                        _p(path, pname, "carp", "groups", vhid, "vip"),
                        f"{key} is also a VIP of pair {vip_owner[key][0]!r} (group {vip_owner[key][1]})",
                    )
                vip_owner[key] = (pname, vhid)
                seg = (g["vip"].cidr, vhid)
                if seg in segment_vhid and segment_vhid[seg] != pname:
                    self.err(
                        _p(path, pname, "carp", "groups", vhid),
                        f"VHID {vhid} is also used on segment {seg[0]} by pair {segment_vhid[seg]!r}: one VHID per segment",
                    )
                segment_vhid.setdefault(seg, pname)
