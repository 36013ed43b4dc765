"""One rule for strings (issue 16): every string that reaches a config
language or a shell is checked against that language's grammar
(``lb_grammar``), in the pillar (``lb_topology``) and in the per-minion
settings (``lb_settings``), with full-match rules: a trailing newline or a
carriage return is refused with its pillar or settings path.

And the other half: values that look hostile but are valid (quotes, '#',
'$', spaces where the language quotes them) render files the daemons' own
checkers accept: ``haproxy -c``, ``bird -p``, ``bgpd -n``, ``keepalived
--config-test`` (each skipped only when its binary is absent)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import carp_common
import carp_events
import lb_boot
import lb_grammar
import lb_parameters
import lb_probe
import lb_render
import lb_render_linux
import lb_routing
import lb_settings
import lb_topology

E = "lb:pairs:edge"
# made with crypt(3): $6$, 10000 rounds (the most lb_grammar allows)
HASH_10000 = "$6$rounds=10000$grammarsalt0123$R.e9dWUrL/EAh8OCxa.1DMWUz9KqmvpmGhSXrLKLFnipapziaDIVrXcGyEizD.6QGKu0mDFC6T.pPKn3W6DdT0"


def edge(raw):
    return raw["pairs"]["edge"]


def setter(where, key, value):
    def mutate(raw):
        where(raw)[key] = value

    return mutate


def rename(where, old, new):
    def mutate(raw):
        d = where(raw)
        d[new] = d.pop(old)

    return mutate


def hp(raw):
    return edge(raw)["haproxy"]


def nb(raw):
    return edge(raw)["routing"]["bgp"]["neighbors"]["ebgp1"]


def listener(raw):
    return hp(raw)["listeners"]["http_5"]


# (id, mutation of the seed pillar, pillar path of the error, fragment of its message)
INJECTIONS = [
    # HAProxy
    (
        "haproxy-global-key-newline",
        setter(lambda r: hp(r).setdefault("global", {}), "nosplice\n", "stats socket ipv4@0.0.0.0:9999 level admin"),
        f"{E}:haproxy:global:nosplice\n",
        "line break",
    ),
    (
        "haproxy-global-key-cr",
        setter(lambda r: hp(r).setdefault("global", {}), "nosplice\r", "1"),
        f"{E}:haproxy:global:nosplice\r",
        "line break",
    ),
    (
        "haproxy-global-value-newline",
        setter(lambda r: hp(r).setdefault("global", {}), "maxconn", "100\nstats socket ipv4@0.0.0.0:9999 level admin"),
        f"{E}:haproxy:global:maxconn",
        "line break",
    ),
    (
        "haproxy-global-value-comment",
        setter(lambda r: hp(r).setdefault("global", {}), "maxconn", "100 # more"),
        f"{E}:haproxy:global:maxconn",
        "'#' only escaped",
    ),
    (
        "haproxy-global-value-open-quote",
        setter(lambda r: hp(r).setdefault("global", {}), "description", 'edge "pair'),
        f"{E}:haproxy:global:description",
        "quotes closed",
    ),
    ("haproxy-option-cr", setter(listener, "options", ["httplog\r"]), f"{E}:haproxy:listeners:http_5:options:0", "line break"),
    (
        "haproxy-defaults-option-newline",
        setter(lambda r: hp(r).setdefault("defaults", {}), "options", ["dontlognull\nstats socket :9999"]),
        f"{E}:haproxy:defaults:options:0",
        "line break",
    ),
    ("haproxy-balance-cr", setter(listener, "balance", "uri\r"), f"{E}:haproxy:listeners:http_5:balance", "line break"),
    ("haproxy-listener-name-newline", setter(listener, "name", "web\nlisten evil"), f"{E}:haproxy:listeners:http_5:name", "line break"),
    ("haproxy-pool-name-newline", rename(lambda r: hp(r)["pools"], "web_a", "web_a\n"), f"{E}:haproxy:pools:web_a\n", "line break"),
    (
        "haproxy-user-newline",
        rename(lambda r: hp(r)["userlists"]["stats-auth"]["users"], "lbuser", "lbuser\n"),
        f"{E}:haproxy:userlists:stats-auth:users:lbuser\n",
        "line break",
    ),
    ("haproxy-stats-uri-comment", setter(lambda r: hp(r)["stats"], "uri", "/stats#x"), f"{E}:haproxy:stats:uri", "is not an absolute path"),
    ("haproxy-stats-uri-newline", setter(lambda r: hp(r)["stats"], "uri", "/stats\n"), f"{E}:haproxy:stats:uri", "line break"),
    (
        "haproxy-tcp-expect-cr",
        setter(lambda r: hp(r)["pools"]["galera_a"]["check"], "expect", "string ok\r"),
        f"{E}:haproxy:pools:galera_a:check:expect",
        "line break",
    ),
    (
        "haproxy-hash-newline",
        setter(lambda r: hp(r)["userlists"]["stats-auth"]["users"]["admin"], "password_hash", HASH_10000 + "\n"),
        f"{E}:haproxy:userlists:stats-auth:users:admin:password_hash",
        "SHA-crypt",
    ),
    (
        "haproxy-hash-rounds",
        setter(
            lambda r: hp(r)["userlists"]["stats-auth"]["users"]["admin"],
            "password_hash",
            HASH_10000.replace("rounds=10000", "rounds=999999"),
        ),
        f"{E}:haproxy:userlists:stats-auth:users:admin:password_hash",
        "rounds=999999; use 1000-10000",
    ),
    # keepalived, BIRD, ospfd (device names), rc.conf (host name)
    (
        "device-newline",
        setter(lambda r: edge(r)["nodes"]["lb-a"]["interfaces"]["vip"], "device", "hn1\n"),
        f"{E}:nodes:lb-a:interfaces:vip:device",
        "line break",
    ),
    (
        "device-cr-per-os",
        setter(lambda r: edge(r)["nodes"]["lb-a"]["interfaces"]["vip"], "device", {"Debian": "ens4\r"}),
        f"{E}:nodes:lb-a:interfaces:vip:device:Debian",
        "line break",
    ),
    ("node-id-newline", rename(lambda r: edge(r)["nodes"], "lb-b", "lb-b\n"), f"{E}:nodes:lb-b\n", "line break"),
    (
        "hostname-newline",
        setter(lambda r: edge(r)["nodes"]["lb-a"], "hostname", "lb-a\nifconfig_hn1=up"),
        f"{E}:nodes:lb-a:hostname",
        "line break",
    ),
    # rc.conf (FreeBSD: the CARP password, static routes) and sysctl.conf
    (
        "carp-password-newline",
        setter(lambda r: edge(r)["carp"]["groups"][4], "password", "secret\n"),
        f"{E}:carp:groups:4:password",
        "may hold only letters, digits",
    ),
    (
        "route-name-newline",
        setter(lambda r: edge(r), "routes", {"r1\n": {"destination": "10.9.0.0/16", "gateway": "10.2.2.254"}}),
        f"{E}:routes:r1\n",
        "line break",
    ),
    (
        "sysctl-name-newline",
        setter(lambda r: edge(r)["sysctl"].setdefault("extra", {}), "FreeBSD", {"kern.x\n": 1}),
        f"{E}:sysctl:extra:FreeBSD:kern.x\n",
        "line break",
    ),
    (
        "sysctl-value-cr",
        setter(lambda r: edge(r)["sysctl"].setdefault("extra", {}), "Debian", {"net.core.somaxconn": "4096\rkernel.x=1"}),
        f"{E}:sysctl:extra:Debian:net.core.somaxconn",
        "line break",
    ),
    (
        "sysctl-value-comment",
        setter(lambda r: edge(r)["sysctl"].setdefault("extra", {}), "Debian", {"net.core.somaxconn": "4096 # x"}),
        f"{E}:sysctl:extra:Debian:net.core.somaxconn",
        "not a sysctl value",
    ),
    # BIRD and OpenBGPD
    ("bgp-descr-newline", setter(nb, "descr", 'x";\n\timport all; export all;\n#'), f"{E}:routing:bgp:neighbors:ebgp1:descr", "line break"),
    ("bgp-descr-quote", setter(nb, "descr", 'x" passive "y'), f"{E}:routing:bgp:neighbors:ebgp1:descr", "without '\"'"),
    ("bgp-descr-too-long", setter(nb, "descr", "x" * 32), f"{E}:routing:bgp:neighbors:ebgp1:descr", "more than 31"),
    (
        "bgp-name-newline",
        rename(lambda r: edge(r)["routing"]["bgp"]["neighbors"], "ebgp1", "ebgp1\n"),
        f"{E}:routing:bgp:neighbors:ebgp1\n",
        "line break",
    ),
    (
        "bgp-name-cr",
        rename(lambda r: edge(r)["routing"]["bgp"]["neighbors"], "ebgp1", "ebgp1\r"),
        f"{E}:routing:bgp:neighbors:ebgp1\r",
        "line break",
    ),
    (
        "bgp-name-bird-keyword",
        rename(lambda r: edge(r)["routing"]["bgp"]["neighbors"], "ebgp1", "import"),
        f"{E}:routing:bgp:neighbors:import",
        "BIRD reserves",
    ),
    ("bgp-md5-quote", setter(nb, "md5sig_password", 'lab"; passive; "'), f"{E}:routing:bgp:neighbors:ebgp1:md5sig_password", "TCP MD5 key"),
    ("bgp-md5-newline", setter(nb, "md5sig_password", "lab\n"), f"{E}:routing:bgp:neighbors:ebgp1:md5sig_password", "TCP MD5 key"),
    ("bgp-md5-backslash", setter(nb, "md5sig_password", "lab\\"), f"{E}:routing:bgp:neighbors:ebgp1:md5sig_password", "TCP MD5 key"),
    # the probe's option file (MySQL) and the probe's paths
    ("probe-password-cr", setter(lambda r: edge(r)["galera_probe"], "password", "pw\r"), f"{E}:galera_probe:password", "one line"),
    (
        "probe-maintenance-file-sh",
        setter(lambda r: edge(r)["galera_probe"], "maintenance_file", "/var/lib/x;id"),
        f"{E}:galera_probe:maintenance_file",
        "absolute path",
    ),
    # addresses: a VIP that is the segment's router
    (
        "vip-is-gateway",
        setter(lambda r: edge(r)["carp"]["groups"][4], "vip", "10.2.2.254/24"),
        f"{E}:carp:groups:4:vip",
        "gateway of network 'user'",
    ),
]


@pytest.mark.parametrize(("mutate", "path", "fragment"), [c[1:] for c in INJECTIONS], ids=[c[0] for c in INJECTIONS])
def test_injection_is_refused_with_its_pillar_path(seed_raw, mutate, path, fragment):
    mutate(seed_raw)
    report = lb_topology.check(seed_raw)
    matching = [e for e in report.errors if e.path == path]
    assert matching, f"no error at {path!r}; errors: {[str(e) for e in report.errors]}"
    assert any(fragment in e.message for e in matching), [str(e) for e in matching]


# (settings key, mapping, settings path, fragment)
SETTINGS_INJECTIONS = [
    ("carp", {"state_dir": "/x$(touch /tmp/p)"}, "lb_settings:carp:state_dir", "absolute path of [A-Za-z0-9_./+-]"),
    ("carp", {"state_dir": "/var/lib/lb-carp\n"}, "lb_settings:carp:state_dir", "line break"),
    ("carp", {"script_dir": "/usr/local/sbin x"}, "lb_settings:carp:script_dir", "absolute path"),
    ("carp", {"run_dir": "/run/lb-carp\r"}, "lb_settings:carp:run_dir", "line break"),
    ("carp", {"ucarp_bin": "/usr/sbin/ucarp;id"}, "lb_settings:carp:ucarp_bin", "absolute path"),
    ("carp", {"keepalived_bin": "keepalived"}, "lb_settings:carp:keepalived_bin", "absolute path"),
    ("carp", {"keepalived_config": "/etc/keepalived/k.conf\n"}, "lb_settings:carp:keepalived_config", "line break"),
    ("carp", {"ucarp_dir": "/etc/`id`"}, "lb_settings:carp:ucarp_dir", "absolute path"),
    ("carp", {"netif_file": "/etc/rc.conf.d/netif\r"}, "lb_settings:carp:netif_file", "line break"),
    ("carp", {"loader_conf": "/boot/loader.conf $x"}, "lb_settings:carp:loader_conf", "absolute path"),
    ("carp", {"rc_script": "/usr/local/etc/rc.d/x\n"}, "lb_settings:carp:rc_script", "line break"),
    ("carp", {"rc_settings": "/etc/rc.conf.d/x y"}, "lb_settings:carp:rc_settings", "absolute path"),
    ("carp", {"provider": "keepalived\n"}, "lb_settings:carp:provider", "one of keepalived, ucarp"),
    ("carp", {"statedir": "/srv"}, "lb_settings:carp:statedir", "unknown setting"),
    ("haproxy", {"binary": "/usr/sbin/haproxy -d"}, "lb_settings:haproxy:binary", "absolute path"),
    ("haproxy", {"config": '/etc/haproxy/haproxy.cfg"\nEXTRAOPTS="-x'}, "lb_settings:haproxy:config", "line break"),
    ("haproxy", {"master_socket": "/run/m.sock,mode,666"}, "lb_settings:haproxy:master_socket", "absolute path"),
    ("haproxy", {"socket": "/run/haproxy/admin.sock\r"}, "lb_settings:haproxy:socket", "line break"),
    ("haproxy", {"pidfile": "/run/$(id).pid"}, "lb_settings:haproxy:pidfile", "absolute path"),
    ("haproxy", {"certs_dir": "/etc/haproxy/certs\n"}, "lb_settings:haproxy:certs_dir", "line break"),
    ("haproxy", {"state_file": "/run/x y"}, "lb_settings:haproxy:state_file", "absolute path"),
    ("haproxy", {"chroot": "/var/lib/haproxy\n"}, "lb_settings:haproxy:chroot", "line break"),
    ("haproxy", {"user": "root\n"}, "lb_settings:haproxy:user", "line break"),
    ("haproxy", {"group": "root;id"}, "lb_settings:haproxy:group", "user or group name"),
    ("haproxy", {"timeout": "10; id"}, "lb_settings:haproxy:timeout", "a number"),
    ("haproxy", {"os_family": "Debian\n"}, "lb_settings:haproxy:os_family", "one of FreeBSD, Debian"),
    ("clustercheck", {"bind": "0.0.0.0\n}\nservice evil\n{"}, "lb_settings:clustercheck:bind", "line break"),
    ("clustercheck", {"bind": "0.0.0.0 only_from = 0.0.0.0/0"}, "lb_settings:clustercheck:bind", "IPv4 address"),
    ("clustercheck", {"python": "/usr/bin/python3 -c import os"}, "lb_settings:clustercheck:python", "absolute path"),
    ("clustercheck", {"python": "/usr/bin/python3\r"}, "lb_settings:clustercheck:python", "line break"),
    ("clustercheck", {"socket": "/run/mysqld/mysqld.sock; id"}, "lb_settings:clustercheck:socket", "absolute path"),
    ("clustercheck", {"probe": "/usr/local/bin/clustercheck\n"}, "lb_settings:clustercheck:probe", "line break"),
    ("clustercheck", {"client": "/usr/bin/mariadb --x"}, "lb_settings:clustercheck:client", "absolute path"),
    ("clustercheck", {"client_path": "/usr/bin:$HOME"}, "lb_settings:clustercheck:client_path", "PATH list"),
    ("clustercheck", {"config": "/etc/clustercheck/c.cnf\n"}, "lb_settings:clustercheck:config", "line break"),
    ("clustercheck", {"xinetd_service": "/etc/xinetd.d/c c"}, "lb_settings:clustercheck:xinetd_service", "absolute path"),
    ("clustercheck", {"inetd_conf": "/etc/inetd.conf\r"}, "lb_settings:clustercheck:inetd_conf", "line break"),
    ("clustercheck", {"services": "/etc/services\n"}, "lb_settings:clustercheck:services", "line break"),
    ("clustercheck", {"hosts_allow": "/etc/hosts.allow x"}, "lb_settings:clustercheck:hosts_allow", "absolute path"),
    ("clustercheck", {"inetd_rc": "/etc/rc.conf.d/inetd\n"}, "lb_settings:clustercheck:inetd_rc", "line break"),
    ("clustercheck", {"maintenance_file": "/var/lib/c/m\r"}, "lb_settings:clustercheck:maintenance_file", "line break"),
    ("clustercheck", {"shell": "/bin/sh -i"}, "lb_settings:clustercheck:shell", "absolute path"),
    ("clustercheck", {"packages": ["xinetd", "mariadb-client\n"]}, "lb_settings:clustercheck:packages", "line break"),
    ("clustercheck", {"daemon": "xinetd; id"}, "lb_settings:clustercheck:daemon", "one of xinetd, inetd"),
    ("clustercheck", {"root_group": "wheel\n"}, "lb_settings:clustercheck:root_group", "line break"),
    ("clustercheck", {"user": "clustercheck\n"}, "lb_settings:clustercheck:user", "line break"),
    ("clustercheck", {"group": "clustercheck server = /bin/sh"}, "lb_settings:clustercheck:group", "user or group name"),
    ("clustercheck", {"host": "db1\r"}, "lb_settings:clustercheck:host", "line break"),
    ("clustercheck", {"port": "3306\n"}, "lb_settings:clustercheck:port", "a number"),
    ("clustercheck", {"pair": "edge\n"}, "lb_settings:clustercheck:pair", "line break"),
    ("haproxy_sls", {"init_defaults": "/etc/default/haproxy\n"}, "lb_settings:haproxy_sls:init_defaults", "line break"),
    ("haproxy_sls", {"init_defaults": "/etc/default/haproxy x"}, "lb_settings:haproxy_sls:init_defaults", "absolute path"),
    ("haproxy_sls", {"pkg": "haproxy\n    - name: evil"}, "lb_settings:haproxy_sls:pkg", "line break"),
    ("haproxy_sls", {"unmanaged": "remove\n"}, "lb_settings:haproxy_sls:unmanaged", "one of remove, keep"),
    ("haproxy_sls", {"nonlocal_bind": True}, "lb_settings:haproxy_sls:nonlocal_bind", "unknown setting"),
    ("routing", {"bgpctl": "/usr/local/sbin/bgpctl; id"}, "lb_settings:routing:bgpctl", "absolute path"),
    ("routing", {"bird": "/etc/bird/bird.conf\n"}, "lb_settings:routing:bird", "line break"),
]


@pytest.mark.parametrize(
    ("key", "mapping", "path", "fragment"), SETTINGS_INJECTIONS, ids=[f"{c[2]}-{i}" for i, c in enumerate(SETTINGS_INJECTIONS)]
)
def test_settings_injection_is_refused_with_its_settings_path(key, mapping, path, fragment):
    errors = lb_settings.check(key, mapping)
    assert [p for p, _ in errors] == [path], errors
    assert fragment in errors[0][1], errors
    with pytest.raises(lb_settings.SettingsError) as exc:
        lb_settings.validate(key, mapping)
    assert str(exc.value).startswith(f"{path}: ")


def test_every_settings_key_has_an_injection_case():
    covered = {c[2] for c in SETTINGS_INJECTIONS}
    for key in ("carp", "haproxy", "haproxy_sls", "clustercheck"):
        missing = {f"lb_settings:{key}:{k}" for k in lb_settings.SCHEMAS[key]} - covered
        assert not missing, missing


def test_valid_settings_pass_unchanged_and_the_defaults_still_apply():
    carp = {"state_dir": "/srv/lb-carp/", "keepalived_bin": "/opt/keepalived-2.2/sbin/keepalived", "provider": "ucarp"}
    assert lb_settings.validate("carp", carp) == carp
    assert lb_settings.validate("carp", None) == {}
    paths = carp_common.settings("Linux", carp_common.override({"lb_settings": {"carp": carp}}))
    assert paths["state_dir"] == "/srv/lb-carp" and paths["run_dir"] == lb_render_linux.CARP["run_dir"]
    assert lb_settings.validate("haproxy_sls", {"pkg": "haproxy", "init_defaults": False, "unmanaged": "keep"})
    assert lb_settings.validate("clustercheck", {"bind": "10.4.4.11", "port": 9200, "packages": ["xinetd", "mariadb-client"], "host": None})


def test_carp_override_refuses_an_unsafe_state_dir_before_anything_renders():
    with pytest.raises(lb_settings.SettingsError, match=r"^lb_settings:carp:state_dir: "):
        carp_common.override({}, {"lb_settings": {"carp": {"state_dir": "/x$(touch /tmp/p)"}}})
    # a provider module's __virtual__ still reads the provider
    assert carp_common.raw_override({"lb_settings": {"carp": {"state_dir": "/x$(id)"}}}) == {"state_dir": "/x$(id)"}


def test_renderers_refuse_what_their_language_cannot_hold(seed_model):
    pair = seed_model["pairs"]["edge"]
    with pytest.raises(lb_grammar.GrammarError, match="lb_settings:carp:state_dir"):
        lb_boot.freebsd_maintenance_settings("#", "/x$(touch /tmp/p)")
    with pytest.raises(lb_grammar.GrammarError, match="lb_settings:carp:state_dir"):
        lb_render_linux.render_keepalived(pair, "lb-a", state_dir="/var/lib/lb carp")
    with pytest.raises(lb_grammar.GrammarError, match="events_dir"):
        carp_events.hook_config("lb-a", "/usr/bin/salt-call", "/etc/salt", "/var/lib/x\nid", "keepalived", {4: ("eth1", "10.2.2.4/24")})
    with pytest.raises(lb_grammar.GrammarError, match="minion id"):
        carp_events.hook_config("lb-a$(id)", "/usr/bin/salt-call", "/etc/salt", "/var/lib/x", "keepalived", {})
    with pytest.raises(lb_grammar.GrammarError, match="lb_settings:routing:bgpctl"):
        lb_routing.hook_config("FreeBSD", {}, {"bgpctl": "/usr/local/sbin/bgpctl `id`"})
    with pytest.raises(lb_grammar.GrammarError):
        lb_grammar.bird_string('hn1"; import all; "')
    with pytest.raises(ValueError, match="lb_settings:clustercheck:bind"):
        lb_probe.params("Debian", {"bind": "0.0.0.0\n}\nservice evil"})


def test_findings_checks_every_settings_section_of_a_pillar():
    """What the pillar gate calls: the settings of a compiled pillar, every
    section, and the keys of earlier releases named with where they moved."""
    pillar = {
        "lb": {},
        "lb_settings": {"carp": {"state_dir": "/x$(id)"}, "haproxy": {"binary": "/usr/sbin/haproxy"}, "clustercheck": "db", "carpp": {}},
    }
    assert lb_settings.findings(pillar) == [
        ("lb_settings:carp:state_dir", "'/x$(id)' is not an absolute path of [A-Za-z0-9_./+-]"),
        ("lb_settings:clustercheck", "must be a mapping, got str"),
        ("lb_settings:carpp", "unknown section (known: carp, routing, haproxy, haproxy_sls, clustercheck)"),
    ]
    assert lb_settings.findings({"lb_carp": {"state_dir": "/srv/c"}, "lb_haproxy": {}}) == [
        ("lb_carp", "moved to lb_settings:carp (CHANGELOG.md)"),
        ("lb_haproxy", "moved to lb_settings:haproxy_sls (CHANGELOG.md)"),
    ]
    assert lb_settings.findings({"lb_settings": "x"}) == [
        ("lb_settings", "must be a mapping of carp, routing, haproxy, haproxy_sls, clustercheck, got str")
    ]


@pytest.mark.parametrize(
    ("rule", "value"),
    [
        (lb_grammar.HAPROXY_NAME, "web\n"),
        (lb_grammar.HAPROXY_KEYWORD, "nosplice\n"),
        (lb_grammar.HAPROXY_OPTION, "httplog\r"),
        (lb_grammar.HAPROXY_ARGS, "1\n"),
        (lb_grammar.DEVICE, "hn1\n"),
        (lb_grammar.SYSCTL_NAME, "kern.x\n"),
        (lb_grammar.ROUTE_NAME, "r1\n"),
        (lb_grammar.SH_PATH, "/usr/sbin/x\n"),
        (lb_grammar.BIRD_STRING, "x\n"),
        (lb_grammar.BGPD_STRING, "x\r"),
        (lb_grammar.MD5SIG, "lab\n"),
        (lb_grammar.SHA_CRYPT, HASH_10000 + "\n"),
        (lb_grammar.HOSTNAME, "lb-a\n"),
        (lb_grammar.IPV4, "10.0.0.1\n"),
        (lb_grammar.RC_CONF_VALUE, "YES\n"),
    ],
)
def test_a_trailing_newline_never_passes_a_rule(rule, value):
    # the bug this module exists for: re.match with a final $ accepts "x\n"
    assert not rule.ok(value)
    assert not rule.ok(value.rstrip("\n") + "\r\n")


def test_rc_conf_quotes_or_refuses():
    assert lb_grammar.rc_conf("hostname", "lb-a.example.com") == 'hostname="lb-a.example.com"'
    for bad in ('x"; id; "', "x$(id)", "x`id`", "x\\", "x\n"):
        with pytest.raises(lb_grammar.GrammarError):
            lb_grammar.rc_conf("hostname", bad)


# ---------------------------------------------------------------------------
# hostile-looking but valid: the daemons' own checkers accept the files


def hostile_but_valid(raw):
    h = edge(raw)["haproxy"]
    h["global"] = {
        "description": "edge pair \"#1\" it\\'s 'ours'",
        "log-send-hostname": "lb\\#1",
        "presetenv": "LB_NOTE 'a # b $c'",
    }
    h["listeners"]["http_5"]["options"] = ["httplog", "forwardfor header X-Client\\#IP"]
    h["stats"]["uri"] = "/st@ts:$x~1"  # unquoted, '$' is literal in HAProxy
    h["userlists"]["stats-auth"]["users"]["admin"]["password_hash"] = HASH_10000
    nbr = edge(raw)["routing"]["bgp"]["neighbors"].pop("ebgp1")
    nbr["descr"] = "up #1 $HOME 'x' {a};"
    nbr["md5sig_password"] = "lab#bgp$x{}';"
    edge(raw)["routing"]["bgp"]["neighbors"]["Ebgp-1"] = nbr
    return raw


def _run(argv):
    binary = shutil.which(argv[0]) or f"/usr/sbin/{argv[0]}"
    if not shutil.which(argv[0]) and not shutil.os.path.exists(binary):
        pytest.skip(f"{argv[0]} is not installed")
    return subprocess.run([binary, *argv[1:]], capture_output=True, text=True, timeout=30)


def test_hostile_but_valid_topology_is_accepted(seed_raw):
    report = lb_topology.check(hostile_but_valid(seed_raw))
    assert report.valid, [str(e) for e in report.errors]


@pytest.mark.parametrize("os_family", ["FreeBSD", "Debian"])
def test_haproxy_c_accepts_the_hostile_but_valid_config(tmp_path, seed_raw, os_family):
    model = lb_topology.load(hostile_but_valid(seed_raw))
    text = lb_render.render_node(model, "lb-a", os_family)[lb_parameters.of(os_family, "node")["haproxy_config"]].content
    assert "    description edge pair \"#1\" it\\'s 'ours'" in text
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    r = _run(["haproxy", "-c", "-f", str(cfg)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stdout + r.stderr, r.stdout + r.stderr


def test_haproxy_c_would_have_taken_the_injected_admin_socket(tmp_path, seed_model):
    """Why the key check matters: the injected line is one HAProxy accepts."""
    text = lb_render.render_node(seed_model, "lb-a", "Debian")["/etc/haproxy/haproxy.cfg"].content
    text = text.replace("global\n", "global\n    nosplice\nstats socket ipv4@0.0.0.0:9999 level admin\n", 1)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    assert _run(["haproxy", "-c", "-f", str(cfg)]).returncode == 0


def test_bgpd_n_accepts_the_hostile_but_valid_config_and_keys_the_whole_password(tmp_path, seed_raw):
    model = lb_topology.load(hostile_but_valid(seed_raw))
    text = lb_render.render_node(model, "lb-a", "FreeBSD")["/usr/local/etc/bgpd.conf"].content
    assert 'tcp md5sig password "lab#bgp$x{}\';"' in text
    assert "descr \"up #1 $HOME 'x' {a};\"" in text
    cfg = tmp_path / "bgpd.conf"
    cfg.write_text(text)
    cfg.chmod(0o600)
    r = _run(["bgpd", "-nv", "-f", str(cfg)])
    assert r.returncode == 0, r.stdout + r.stderr
    # OpenBGPD read the descr whole (it prints it back; never the key)
    assert "descr \"up #1 $HOME 'x' {a};\"" in r.stdout, r.stdout


def test_bird_p_accepts_the_hostile_but_valid_config(tmp_path, seed_raw):
    model = lb_topology.load(hostile_but_valid(seed_raw))
    text = lb_render.render_node(model, "lb-a", "Debian")["/etc/bird/bird.conf"].content
    assert "protocol bgp Ebgp_1 {" in text
    assert "description \"up #1 $HOME 'x' {a};\";" in text and 'password "lab#bgp$x{}\';";' in text
    cfg = tmp_path / "bird.conf"
    cfg.write_text(text)
    r = _run(["bird", "-p", "-c", str(cfg)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_keepalived_config_test_accepts_the_rendered_config(tmp_path, lab_model):
    text = lb_render_linux.render_keepalived(
        lab_model["pairs"]["edge"], "lb-a", state_dir=str(tmp_path / "carp"), script_dir=str(tmp_path / "sbin")
    )
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)
    r = _run(["keepalived", "--config-test", "--use-file", str(conf)])
    # this machine lacks the lab's interfaces and scripts: those lines only
    other = [
        line for line in r.stderr.splitlines() if line.strip() and "doesn't exist" not in line and "Non-existent interface" not in line
    ]
    assert other == [], r.stderr


def test_bird_reserved_words_match_the_installed_bird(tmp_path):
    """BIRD_RESERVED was made from BIRD 2.0.12; a BIRD that reserves more
    words (a newer Debian) fails here, so the list is made again."""
    bird = shutil.which("bird") or "/usr/sbin/bird"
    if not shutil.os.path.exists(bird):
        pytest.skip("bird is not installed")
    strings = subprocess.run(["strings", "-n", "2", bird], capture_output=True, text=True, timeout=60).stdout
    words = set()
    for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", strings):
        if len(w) <= 30:
            words.update(w[i:] for i in range(len(w)) if re.match(r"[A-Za-z_]", w[i]))
    candidates = sorted(words - lb_grammar.BIRD_RESERVED)
    # every candidate in one file; the first refused name stops the parse
    refused = []
    while candidates:
        lines = ["router id 10.0.0.1;"]
        lines += [
            f"protocol bgp {n} {{ local 10.0.0.1 as 65000; neighbor 10.0.0.2 as 65001; ipv4 {{ import all; export none; }}; }}"
            for n in candidates
        ]
        cfg = tmp_path / "sweep.conf"
        cfg.write_text("\n".join(lines) + "\n")
        r = subprocess.run([bird, "-p", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            break
        line = int(re.search(r"sweep\.conf:(\d+):", r.stderr).group(1))
        bad = candidates[line - 2]
        refused.append(bad)
        candidates = candidates[line - 1 :]
        assert len(refused) < 50, refused
    assert refused == [], f"BIRD reserves words lb_grammar.BIRD_RESERVED lacks: {refused}"
