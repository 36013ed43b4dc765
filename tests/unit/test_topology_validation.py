"""Validation: every bad input gets an error with its pillar path and reason.

Each case mutates a fresh copy of the seed's topology in one way and asserts
the exact path of the error and a phrase of its message.
"""

import copy
import textwrap

import pytest

import lb_topology

E = "lb:pairs:edge"


def pair(raw):
    return raw["pairs"]["edge"]


def node(raw, n):
    return pair(raw)["nodes"][n]


def group(raw, vhid):
    return pair(raw)["carp"]["groups"][vhid]


def hp(raw):
    return pair(raw)["haproxy"]


def _set(path_fn, key, value):
    def mutate(raw):
        path_fn(raw)[key] = value

    return mutate


def _del(path_fn, key):
    def mutate(raw):
        del path_fn(raw)[key]

    return mutate


def _second_pair(raw, **changes):
    other = copy.deepcopy(pair(raw))
    other["nodes"] = {"lb-c": other["nodes"]["lb-a"], "lb-d": other["nodes"]["lb-b"]}
    for g in other["carp"]["groups"].values():
        g["primary"] = "lb-c"
    for k, v in changes.items():
        other[k] = v
    raw["pairs"]["core"] = other
    return other


def _dup_vhid_other_pair(raw):
    other = _second_pair(raw)
    # same user segment, other VIPs and node addresses, but VHID 4 again
    for _i, (n, last) in enumerate((("lb-c", 243), ("lb-d", 244))):
        for _ifname, iface in other["nodes"][n]["interfaces"].items():
            iface["address"] = iface["address"].rsplit(".", 1)[0] + f".{last}"
    other["carp"]["groups"] = {4: {"interface": "vip", "vip": "10.2.2.104/24", "password": "x", "primary": "lb-c"}}
    other["haproxy"]["listeners"] = {}


def _same_node_other_pair(raw):
    other = _second_pair(raw)
    other["nodes"]["lb-a"] = other["nodes"].pop("lb-c")
    for g in other["carp"]["groups"].values():
        g["primary"] = "lb-a"


def _add_listener(raw):
    hp(raw)["listeners"]["mysql_4_again"] = {"vhid": 4, "port": 3306, "mode": "tcp", "balance": "leastconn", "pool": "galera_b"}


def _second_active(raw):
    hp(raw)["pools"]["galera_a"]["servers"]["percona_mysql-2"]["backup"] = False


def _dup_server_addr(raw):
    hp(raw)["pools"]["web_a"]["servers"]["http_srv-9"] = {"address": "10.6.6.1", "port": 80}


def _vhid_string_dup(raw):
    pair(raw)["carp"]["groups"]["4"] = dict(group(raw, 4), vip="10.2.2.104/24")


def _three_nodes(raw):
    pair(raw)["nodes"]["lb-c"] = copy.deepcopy(node(raw, "lb-b"))


def _lbb_vip_on_systems(raw):
    node(raw, "lb-b")["interfaces"]["vip"] = {"network": "systems", "address": "10.3.3.250", "device": "hn1"}


def _second_vip_same(raw):
    group(raw, 44)["vip"] = "10.2.2.4/24"


CASES = [
    # addresses
    (
        "malformed-address",
        _set(lambda r: node(r, "lb-a")["interfaces"]["mgmt"], "address", "10.1.1.300"),
        f"{E}:nodes:lb-a:interfaces:mgmt:address",
        "not a valid IP address",
    ),
    (
        "address-out-of-subnet",
        _set(lambda r: node(r, "lb-a")["interfaces"]["vip"], "address", "10.9.9.9"),
        f"{E}:nodes:lb-a:interfaces:vip:address",
        "outside its network 'user'",
    ),
    (
        "address-is-broadcast",
        _set(lambda r: node(r, "lb-b")["interfaces"]["mgmt"], "address", "10.1.1.255"),
        f"{E}:nodes:lb-b:interfaces:mgmt:address",
        "broadcast",
    ),
    (
        "address-is-gateway",
        _set(lambda r: node(r, "lb-b")["interfaces"]["mgmt"], "address", "10.1.1.254"),
        f"{E}:nodes:lb-b:interfaces:mgmt:address",
        "is the gateway",
    ),
    (
        "same-address-both-nodes",
        _set(lambda r: node(r, "lb-b")["interfaces"]["systems"], "address", "10.3.3.241"),
        f"{E}:nodes:lb-b:interfaces:systems:address",
        "also the address of lb-a:systems",
    ),
    (
        "network-bad-prefix",
        _set(lambda r: pair(r)["networks"]["http"], "cidr", "10.6.6.0/33"),
        f"{E}:networks:http:cidr",
        "not a valid address with a prefix",
    ),
    ("network-host-bits", _set(lambda r: pair(r)["networks"]["mysql"], "cidr", "10.4.5.0/23"), f"{E}:networks:mysql:cidr", "host bits set"),
    (
        "networks-overlap",
        _set(lambda r: pair(r)["networks"]["http"], "cidr", "10.4.4.0/24"),
        f"{E}:networks:http:cidr",
        "overlaps network 'mysql'",
    ),
    (
        "gateway-outside-network",
        _set(lambda r: pair(r)["networks"]["mgmt"], "gateway", "10.1.2.254"),
        f"{E}:networks:mgmt:gateway",
        "not inside 10.1.1.0/24",
    ),
    (
        "ipv6-address",
        _set(lambda r: node(r, "lb-a")["interfaces"]["mgmt"], "address", "fe80::1"),
        f"{E}:nodes:lb-a:interfaces:mgmt:address",
        "IPv6",
    ),
    # CARP
    (
        "vip-outside-interface-subnet",
        _set(lambda r: group(r, 44), "vip", "10.3.3.44/24"),
        f"{E}:carp:groups:44:vip",
        "outside lb-a's vip subnet 10.2.2.0/24",
    ),
    ("vip-prefix-disagrees", _set(lambda r: group(r, 44), "vip", "10.2.2.44/25"), f"{E}:carp:groups:44:vip", "prefix /25 disagrees"),
    ("vip-without-prefix", _set(lambda r: group(r, 5), "vip", "10.2.2.5"), f"{E}:carp:groups:5:vip", "not an address with a prefix"),
    ("vip-is-node-address", _set(lambda r: group(r, 5), "vip", "10.2.2.242/24"), f"{E}:carp:groups:5:vip", "lb-b's own address"),
    ("two-groups-one-vip", _second_vip_same, f"{E}:carp:groups:44:vip", "also the VIP of group 4"),
    ("duplicate-vhid-same-segment", _vhid_string_dup, f"{E}:carp:groups:4", "VHID 4 is used twice on segment 'user'"),
    ("duplicate-vhid-across-pairs", _dup_vhid_other_pair, "lb:pairs:core:carp:groups:4", "one VHID per segment"),
    (
        "vhid-zero",
        lambda r: pair(r)["carp"]["groups"].__setitem__(0, pair(r)["carp"]["groups"].pop(55)),
        f"{E}:carp:groups:0",
        "outside 1-255",
    ),
    (
        "vhid-256",
        lambda r: pair(r)["carp"]["groups"].__setitem__(256, pair(r)["carp"]["groups"].pop(55)),
        f"{E}:carp:groups:256",
        "outside 1-255",
    ),
    ("advskew-255", _set(lambda r: group(r, 4), "advskew_backup", 255), f"{E}:carp:groups:4:advskew_backup", "outside 0-254"),
    ("advskew-negative", _set(lambda r: group(r, 4), "advskew_primary", -1), f"{E}:carp:groups:4:advskew_primary", "outside 0-254"),
    ("advbase-zero", _set(lambda r: pair(r)["carp"], "advbase", 0), f"{E}:carp:advbase", "outside 1-255"),
    ("advbase-256-group", _set(lambda r: group(r, 5), "advbase", 256), f"{E}:carp:groups:5:advbase", "outside 1-255"),
    ("carp-password-too-long", _set(lambda r: group(r, 4), "password", "a" * 20), f"{E}:carp:groups:4:password", "CARP keeps only 19"),
    ("carp-password-space", _set(lambda r: group(r, 4), "password", "pass word"), f"{E}:carp:groups:4:password", "it has ' '"),
    # network.subr reads a hex digit then `-` as an address range and recurses without end
    ("carp-password-range", _set(lambda r: group(r, 4), "password", "abc-def"), f"{E}:carp:groups:4:password", "it has '-'"),
    # eval: `;` runs a command, `~` expands, `*` globs at boot
    ("carp-password-eval", _set(lambda r: group(r, 4), "password", "a;date"), f"{E}:carp:groups:4:password", "it has ';'"),
    ("carp-password-tilde", _set(lambda r: group(r, 4), "password", "~root"), f"{E}:carp:groups:4:password", "it has '~'"),
    ("carp-password-glob", _set(lambda r: group(r, 4), "password", "pw*"), f"{E}:carp:groups:4:password", "it has '*'"),
    ("carp-password-newline", _set(lambda r: group(r, 4), "password", "passwd4\n"), f"{E}:carp:groups:4:password", "it has '\\n'"),
    ("carp-password-missing", _del(lambda r: group(r, 44), "password"), f"{E}:carp:groups:44:password", "is required"),
    ("peers-disagree-advskew", _set(lambda r: group(r, 4), "advskew_primary", 100), f"{E}:carp:groups:4", "peers would disagree"),
    ("peers-disagree-segment", _lbb_vip_on_systems, f"{E}:nodes:lb-b:interfaces:vip:network", "peers disagree"),
    (
        "node-missing-interface",
        _del(lambda r: node(r, "lb-b")["interfaces"], "vip"),
        f"{E}:carp:groups:4:interface",
        "node lb-b has no interface 'vip'",
    ),
    ("primary-unknown-node", _set(lambda r: group(r, 4), "primary", "lb-z"), f"{E}:carp:groups:4:primary", "names no node"),
    (
        "linux-provider-unknown",
        _set(lambda r: pair(r)["carp"], "linux_provider", "vrrpd"),
        f"{E}:carp:linux_provider",
        "not one of keepalived, ucarp",
    ),
    ("keepalived-priority-zero", _set(lambda r: group(r, 4), "advskew_backup", 254), f"{E}:carp:groups:4:advskew_backup", "priority 0"),
    ("second-chance-not-bool", _set(lambda r: pair(r)["carp"], "second_chance", "yes"), f"{E}:carp:second_chance", "true or false"),
    ("three-nodes", _three_nodes, f"{E}:nodes", "exactly two nodes"),
    # listeners
    (
        "listener-unknown-vip",
        _set(lambda r: hp(r)["listeners"]["http_5"], "vhid", 99),
        f"{E}:haproxy:listeners:http_5:vhid",
        "no CARP group 99",
    ),
    ("two-listeners-one-vip-port", _add_listener, f"{E}:haproxy:listeners:mysql_4_again:port", "already bound by listener 'mysql_4'"),
    (
        "unknown-balance",
        _set(lambda r: hp(r)["listeners"]["http_5"], "balance", "roundrobn"),
        f"{E}:haproxy:listeners:http_5:balance",
        "not a balance algorithm",
    ),
    (
        "balance-empty-like-seed-stats",
        _set(lambda r: hp(r)["listeners"]["http_5"], "balance", ""),
        f"{E}:haproxy:listeners:http_5:balance",
        "not a balance algorithm",
    ),
    ("port-zero", _set(lambda r: hp(r)["listeners"]["http_55"], "port", 0), f"{E}:haproxy:listeners:http_55:port", "outside 1-65535"),
    (
        "port-too-big",
        _set(lambda r: hp(r)["listeners"]["http_55"], "port", 70000),
        f"{E}:haproxy:listeners:http_55:port",
        "outside 1-65535",
    ),
    (
        "server-port-bad",
        _set(lambda r: hp(r)["pools"]["web_b"]["servers"]["http_srv-3"], "port", "eighty"),
        f"{E}:haproxy:pools:web_b:servers:http_srv-3:port",
        "must be an integer",
    ),
    (
        "mode-unknown",
        _set(lambda r: hp(r)["listeners"]["http_5"], "mode", "https"),
        f"{E}:haproxy:listeners:http_5:mode",
        "not one of tcp, http",
    ),
    (
        "listener-unknown-pool",
        _set(lambda r: hp(r)["listeners"]["http_5"], "pool", "web_z"),
        f"{E}:haproxy:listeners:http_5:pool",
        "names no pool",
    ),
    (
        "timeout-malformed",
        _set(lambda r: hp(r)["listeners"]["mysql_4"], "timeouts", {"client": "10 s"}),
        f"{E}:haproxy:listeners:mysql_4:timeouts:client",
        "not a HAProxy time",
    ),
    (
        "option-is-check",
        _set(lambda r: hp(r)["listeners"]["mysql_4"], "options", ["tcp-check"]),
        f"{E}:haproxy:listeners:mysql_4:options:0",
        "comes from the pool's check",
    ),
    # pools and servers
    ("duplicate-server-address", _dup_server_addr, f"{E}:haproxy:pools:web_a:servers:http_srv-9", "also server 'http_srv-1'"),
    ("galera-two-writers", _second_active, f"{E}:haproxy:pools:galera_a:servers", "exactly one server"),
    (
        "galera-plain-connect-check",
        _set(lambda r: hp(r)["pools"]["galera_a"], "check", {"type": "connect"}),
        f"{E}:haproxy:pools:galera_a:check:type",
        "needs the probe",
    ),
    (
        "server-param-typo",
        _set(lambda r: hp(r)["pools"]["galera_a"]["default_server"], "inetr", "2s"),
        f"{E}:haproxy:pools:galera_a:default_server:inetr",
        "unknown server parameter",
    ),
    (
        "check-port-twice",
        _set(lambda r: hp(r)["pools"]["galera_a"]["default_server"], "port", 9200),
        f"{E}:haproxy:pools:galera_a:default_server:port",
        "set once",
    ),
    (
        "tcp-check-expect-malformed",
        _set(lambda r: hp(r)["pools"]["galera_b"]["check"], "expect", "is running"),
        f"{E}:haproxy:pools:galera_b:check:expect",
        "not a tcp-check expect rule",
    ),
    (
        "probe-port-mismatch",
        _set(lambda r: hp(r)["pools"]["galera_b"]["check"], "port", 9201),
        f"{E}:haproxy:pools:galera_b:check:port",
        "probe listens on 9200",
    ),
    (
        "server-address-malformed",
        _set(lambda r: hp(r)["pools"]["web_a"]["servers"]["http_srv-2"], "address", "10.6.6"),
        f"{E}:haproxy:pools:web_a:servers:http_srv-2:address",
        "not a valid IP address",
    ),
    # userlists and stats
    (
        "group-unknown-user",
        _set(lambda r: hp(r)["userlists"]["stats-auth"]["groups"], "readonly", ["lbuser", "guest"]),
        f"{E}:haproxy:userlists:stats-auth:groups:readonly:1",
        "unknown user 'guest'",
    ),
    (
        "plaintext-password",
        _set(lambda r: hp(r)["userlists"]["stats-auth"]["users"], "lbuser", {"password": "lbuser"}),
        f"{E}:haproxy:userlists:stats-auth:users:lbuser:password",
        "plaintext passwords are refused",
    ),
    (
        "insecure-password-key",
        _set(lambda r: hp(r)["userlists"]["stats-auth"]["users"], "admin", {"insecure_password": "AdminPasswd"}),
        f"{E}:haproxy:userlists:stats-auth:users:admin:insecure_password",
        "plaintext",
    ),
    (
        "md5-crypt-hash",
        _set(lambda r: hp(r)["userlists"]["stats-auth"]["users"], "admin", {"password_hash": "$1$abc$abcdefghijklmnopqrstuv"}),
        f"{E}:haproxy:userlists:stats-auth:users:admin:password_hash",
        "not a SHA-crypt hash",
    ),
    ("stats-unknown-userlist", _set(lambda r: hp(r)["stats"], "userlist", "nobody"), f"{E}:haproxy:stats:userlist", "names no userlist"),
    ("stats-no-userlist", _del(lambda r: hp(r)["stats"], "userlist"), f"{E}:haproxy:stats:userlist", "never open without authentication"),
    (
        "stats-unknown-admin-group",
        _set(lambda r: hp(r)["stats"], "admin_group", "root"),
        f"{E}:haproxy:stats:admin_group",
        "names no group",
    ),
    (
        "stats-interface-missing",
        _set(lambda r: hp(r)["stats"], "interface", "oob"),
        f"{E}:haproxy:stats:interface",
        "has no interface 'oob'",
    ),
    ("global-managed-keyword", _set(lambda r: hp(r), "global", {"daemon": ""}), f"{E}:haproxy:global:daemon", "managed by the product"),
    # routes
    (
        "route-gateway-not-connected",
        _set(lambda r: pair(r)["routes"]["mysqlnet"], "gateway", "10.9.9.254"),
        f"{E}:routes:mysqlnet:gateway",
        "not on a network connected to lb-a",
    ),
    (
        "route-destination-host-bits",
        _set(lambda r: pair(r)["routes"]["mysqlnet"], "destination", "10.4.4.1/23"),
        f"{E}:routes:mysqlnet:destination",
        "host bits set",
    ),
    (
        "route-name-bad",
        lambda r: pair(r)["routes"].__setitem__("my-net", {"destination": "10.8.8.0/24", "gateway": "10.3.3.254"}),
        f"{E}:routes:my-net",
        "static_routes",
    ),
    # probe
    ("probe-password-missing", _del(lambda r: pair(r)["galera_probe"], "password"), f"{E}:galera_probe:password", "is required"),
    ("probe-timeout-too-long", _set(lambda r: pair(r)["galera_probe"], "timeout", 30), f"{E}:galera_probe:timeout", "outside 1-10"),
    # routing
    (
        "bgp-neighbor-not-connected",
        _set(lambda r: pair(r)["routing"]["bgp"]["neighbors"]["ebgp1"], "address", "10.7.7.1"),
        f"{E}:routing:bgp:neighbors:ebgp1:address",
        "no local-address",
    ),
    (
        "bgp-community-bad",
        _set(lambda r: pair(r)["routing"]["bgp"]["neighbors"]["ebgp1"], "communities", ["65000:700000"]),
        f"{E}:routing:bgp:neighbors:ebgp1:communities:0",
        "0-65535",
    ),
    (
        "bgp-neighbor-is-our-vip",
        _set(lambda r: pair(r)["routing"]["bgp"]["neighbors"]["ebgp1"], "address", "10.2.2.5"),
        f"{E}:routing:bgp:neighbors:ebgp1:address",
        "this pair's own address (VIP of group 5)",
    ),
    (
        "bgp-neighbor-is-a-node",
        _set(lambda r: pair(r)["routing"]["bgp"]["neighbors"]["ebgp1"], "address", "10.2.2.242"),
        f"{E}:routing:bgp:neighbors:ebgp1:address",
        "own address (lb-b)",
    ),
    (
        "bgp-hold-time-too-short",
        _set(lambda r: pair(r)["routing"]["bgp"]["neighbors"]["ebgp1"], "hold_time", 1),
        f"{E}:routing:bgp:neighbors:ebgp1:hold_time",
        "outside 3-65535",
    ),
    (
        "bgp-bfd-not-boolean",
        _set(lambda r: pair(r)["routing"]["bgp"]["neighbors"]["ebgp1"], "bfd", "fast"),
        f"{E}:routing:bgp:neighbors:ebgp1:bfd",
        "true or false",
    ),
    (
        "bgp-neighbor-unknown-key",
        _set(lambda r: pair(r)["routing"]["bgp"]["neighbors"]["ebgp1"], "announce", "all"),
        f"{E}:routing:bgp:neighbors:ebgp1:announce",
        "unknown key",
    ),
    ("router-id-missing", _del(lambda r: node(r, "lb-b"), "router_id"), f"{E}:nodes:lb-b:router_id", "required when routing"),
    (
        "ospf-unknown-interface",
        _set(lambda r: pair(r)["routing"]["ospf"]["interfaces"], "hn9", {}),
        f"{E}:routing:ospf:interfaces:hn9",
        "has no interface 'hn9'",
    ),
    # structure
    ("typo-in-key", lambda r: pair(r).__setitem__("listners", {}), f"{E}:listners", "unknown key"),
    ("node-id-in-two-pairs", _same_node_other_pair, "lb:pairs:core:nodes:lb-a", "also a node of pair 'edge'"),
    (
        "device-name-too-long",
        _set(lambda r: node(r, "lb-a")["interfaces"]["mgmt"], "device", "averyveryverylongname0"),
        f"{E}:nodes:lb-a:interfaces:mgmt:device",
        "not a valid interface name",
    ),
    (
        "hostname-invalid",
        _set(lambda r: node(r, "lb-a"), "hostname", "carp host.example.com"),
        f"{E}:nodes:lb-a:hostname",
        "is not a host name",
    ),
]


@pytest.mark.parametrize("mutate,path,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_reported_with_its_path(seed_raw, mutate, path, fragment):
    mutate(seed_raw)
    report = lb_topology.check(seed_raw)
    assert not report.valid
    matching = [e for e in report.errors if e.path == path]
    assert matching, f"no error at {path}; errors: {[str(e) for e in report.errors]}"
    assert any(fragment in e.message for e in matching), [str(e) for e in matching]
    with pytest.raises(lb_topology.TopologyError) as exc:
        lb_topology.load(seed_raw)
    assert path in str(exc.value)


def test_there_are_at_least_thirty_distinct_cases():
    assert len({c[0] for c in CASES}) >= 30
    assert len({c[2] for c in CASES}) >= 30  # distinct paths too


def test_shipped_pillars_are_valid(seed_raw, lab_raw):
    for raw in (seed_raw, lab_raw):
        report = lb_topology.check(raw)
        assert report.errors == []
        assert report.warnings == []
        assert report.model is not None


def test_several_errors_are_all_reported(seed_raw):
    group(seed_raw, 4)["vip"] = "10.3.3.4/24"
    hp(seed_raw)["listeners"]["http_5"]["balance"] = "fastest"
    pair(seed_raw)["routes"]["httpnet"]["gateway"] = "10.9.9.9"
    paths = {e.path for e in lb_topology.check(seed_raw).errors}
    assert {f"{E}:carp:groups:4:vip", f"{E}:haproxy:listeners:http_5:balance", f"{E}:routes:httpnet:gateway"} <= paths


def test_not_a_mapping():
    assert lb_topology.check(None).errors[0].path == "lb"
    assert lb_topology.check({"pairs": []}).errors[0].path == "lb:pairs"


WARNING_CASES = [
    (
        "allbackups-on-galera",
        lambda r: hp(r)["listeners"]["mysql_4"]["options"].append("allbackups"),
        f"{E}:haproxy:listeners:mysql_4:options",
        "sends writes to every backup",
    ),
    ("preempt-off", _set(lambda r: pair(r)["carp"], "preempt", False), f"{E}:carp:preempt", "preempt is off"),
    (
        "route-to-connected-net",
        _set(lambda r: pair(r)["routes"]["httpnet"], "destination", "10.3.3.0/24"),
        f"{E}:routes:httpnet:destination",
        "directly connected",
    ),
    (
        "ibgp",
        _set(lambda r: pair(r)["routing"]["bgp"]["neighbors"]["ebgp1"], "remote_as", 65000),
        f"{E}:routing:bgp:neighbors:ebgp1:remote_as",
        "iBGP",
    ),
    ("no-stats", _del(lambda r: hp(r), "stats"), f"{E}:haproxy:stats", "no stats listener"),
]


@pytest.mark.parametrize("mutate,path,fragment", [c[1:] for c in WARNING_CASES], ids=[c[0] for c in WARNING_CASES])
def test_risky_but_legal_choices_warn(seed_raw, mutate, path, fragment):
    mutate(seed_raw)
    report = lb_topology.check(seed_raw)
    assert report.valid, [str(e) for e in report.errors]
    assert any(w.path == path and fragment in w.message for w in report.warnings), [str(w) for w in report.warnings]


def test_duplicate_yaml_key_is_an_error_with_its_path(tmp_path):
    text = textwrap.dedent(
        """\
        lb:
          pairs:
            edge:
              haproxy:
                pools:
                  web_a:
                    servers:
                      http_srv-1: {address: 10.6.6.1, port: 80}
                      http_srv-1: {address: 10.6.6.2, port: 80}
        """
    )
    f = tmp_path / "lb.sls"
    f.write_text(text)
    with pytest.raises(lb_topology.TopologyError) as exc:
        lb_topology.load_file(str(f))
    (err,) = exc.value.errors
    assert err.path == "lb:pairs:edge:haproxy:pools:web_a:servers:http_srv-1"
    assert "given twice (lines 8 and 9)" in err.message


def test_load_file_accepts_bare_topology(tmp_path, seed_raw):
    import yaml

    f = tmp_path / "topo.yaml"
    f.write_text(yaml.safe_dump(seed_raw))
    assert lb_topology.check(lb_topology.load_file(str(f))).valid


@pytest.mark.parametrize(
    "key,value,root",
    [
        ("vip", "10.3.3.4/24", "vip"),
        ("password", "a;date", "password"),
        ("primary", "lb-z", "primary"),
        ("interface", "nosuch", "interface"),
        ("advskew_primary", 300, "advskew_primary"),
    ],
)
def test_a_bad_group_is_reported_once_at_its_root_not_again_where_it_is_used(seed_raw, key, value, root):
    """Group 5 carries listener http_5's VIP: one mistake in the group is
    one error, at the group's key; the listener that uses it says nothing
    (it did say `no CARP group 5 carries a VIP`, a cascade)."""
    group(seed_raw, 5)[key] = value
    errors = lb_topology.check(seed_raw).errors
    assert [e.path for e in errors] == [f"{E}:carp:groups:5:{root}"], [str(e) for e in errors]
