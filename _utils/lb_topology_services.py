"""The pair's other services in the `lb` pillar: the routing daemons that
announce the VIPs (BGP, OSPF) and the Galera probe on the database servers
(lb_topology.py's walk calls `ServiceChecks.routing` and `.probe`).

Pure Python, no Salt dunders.
"""

import lb_grammar
from lb_check import COMMUNITY_RE, PROBE_USER_RE
from lb_check import pillar_path as _p

PROBE_DEFAULTS = {
    "port": 9200,
    "user": "clustercheck",
    "available_when_donor": False,
    "available_when_readonly": False,
    "timeout": 2,
    "maintenance_file": "/var/lib/clustercheck/maintenance",
}


class ServiceChecks:
    """The routing and probe sections' checks, a part of lb_topology's checker."""

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
