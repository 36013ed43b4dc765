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

import re
from typing import Any

import yaml

import lb_grammar
from lb_check import DEVICE_RE, HOSTNAME_RE, Checker, Finding, Report, TopologyError  # noqa: F401 - Finding, Report: lb_topology's names too
from lb_check import pillar_path as _p
from lb_topology_haproxy import HaproxyChecks
from lb_topology_services import ServiceChecks

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


class _Checker(Checker, HaproxyChecks, ServiceChecks):
    """One walk of the pillar: the pair's structure here, its sections in
    lb_topology_haproxy and lb_topology_services, the checks in lb_check."""

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
