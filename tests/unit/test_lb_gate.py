"""The pillar gate's pure logic: secrets in the topology (`lb_secrets`),
HAProxy's messages mapped to pillar paths and what a change touches
(`lb_gate`)."""

import copy

import lb_gate
import lb_render_haproxy
import lb_secrets
import lb_topology


def test_every_secret_of_the_lab_pillar_is_found_with_its_path(lab_raw):
    found = {path: value for path, _, value in lb_secrets.find(lab_raw)}
    assert found["lb:pairs:edge:carp:groups:4:password"] == "passwd4"
    assert found["lb:pairs:edge:carp:groups:44:password"] == "passwd44"
    assert found["lb:pairs:edge:galera_probe:password"] == "clustercheck-lab-pw"
    assert found["lb:pairs:edge:haproxy:userlists:stats-auth:users:admin:password_hash"].startswith("$6$")
    assert "lb:pairs:edge:routing:bgp:neighbors:ebgp1:md5sig_password" in found
    assert len(found) == 8
    assert lb_secrets.values(lab_raw)[0] == max(lb_secrets.values(lab_raw), key=len)


def test_replace_touches_the_secrets_only_and_not_the_input(lab_raw):
    before = copy.deepcopy(lab_raw)
    out = lb_secrets.replace(lab_raw, lambda path, value: f"ENC({path})")
    assert lab_raw == before
    assert out["pairs"]["edge"]["carp"]["groups"][4]["password"] == "ENC(lb:pairs:edge:carp:groups:4:password)"
    assert out["pairs"]["edge"]["networks"] == lab_raw["pairs"]["edge"]["networks"]
    assert lb_secrets.find(out)[0][2].startswith("ENC(")


def test_cleartext_findings_name_the_path_and_the_file(lab_raw):
    files = {"lb.sls": "lb:\n  x: {password: passwd44, primary: lb-a}\n", "other.sls": "# passwd4 is a word here, not a value\n"}
    found = lb_secrets.cleartext_findings(lab_raw, files)
    assert [f.path for f in found] == ["lb:pairs:edge:carp:groups:44:password", "lb:pairs:edge:carp:groups:55:password"]
    assert "in clear text in lb.sls" in found[0].message
    assert lb_secrets.cleartext_findings(lab_raw, {"lb.sls": "password: |\n  -----BEGIN PGP MESSAGE-----\n  abc\n"}) == []


def test_a_haproxy_message_about_a_server_is_the_servers_pillar_path(lab_model):
    pair = lab_model["pairs"]["edge"]
    text = lb_render_haproxy.render_haproxy(lab_model, pair, "lb-a", "Debian")
    msg = "[ALERT]    (12) : config : proxy 'haproxy_198.18.2.55_80', server 'http_srv-4': unable to find required resolvers 'x'\n[ALERT]    (12) : config : Fatal errors found in configuration."
    found = lb_gate.haproxy_findings(pair, "lb-a", "Debian", text, msg)
    assert [str(f.path) for f in found] == ["lb:pairs:edge:haproxy:pools:web_b:servers:http_srv-4"]
    assert "unable to find required resolvers 'x'" in found[0].message and "lb-a" in found[0].message


def test_a_haproxy_message_about_a_line_is_that_lines_pillar_path(lab_model):
    pair = lab_model["pairs"]["edge"]
    text = lb_render_haproxy.render_haproxy(lab_model, pair, "lb-a", "Debian")
    lines = text.splitlines()
    n_server = next(i for i, line in enumerate(lines, 1) if "server percona_mysql-2 " in line)
    n_user = next(i for i, line in enumerate(lines, 1) if line.strip().startswith("user lbuser "))
    n_stats = next(i for i, line in enumerate(lines, 1) if line.strip().startswith("stats uri"))
    paths = lb_gate.section_paths(pair, text)
    assert paths[n_server] == "lb:pairs:edge:haproxy:pools:galera_a:servers:percona_mysql-2"
    assert paths[n_user] == "lb:pairs:edge:haproxy:userlists:stats-auth:users:lbuser"
    assert paths[n_stats] == "lb:pairs:edge:haproxy:stats"
    msg = f"[ALERT]    (1) : config : parsing [/etc/haproxy/haproxy.cfg:{n_server}] : 'server percona_mysql-2' : bad"
    assert lb_gate.haproxy_findings(pair, "lb-a", "Debian", text, msg)[0].path == paths[n_server]
    assert lb_gate.haproxy_findings(pair, "lb-a", "Debian", text, "[WARNING] only a warning") == []


def _changed(raw, edit):
    new = copy.deepcopy(raw)
    edit(new["pairs"]["edge"])
    return lb_topology.load(new)


def test_a_new_backend_server_touches_haproxy_on_both_nodes_only(lab_raw, lab_model):
    new = _changed(
        lab_raw, lambda p: p["haproxy"]["pools"]["web_a"]["servers"].update({"http_srv-9": {"address": "198.18.6.9", "port": 80}})
    )
    assert lb_gate.affected(lab_model, new) == {"lb": {"lb-a": ["haproxy"], "lb-b": ["haproxy"]}, "galera": {}, "unassigned": {}}
    assert lb_gate.affected(lab_model, lab_model) == {"lb": {}, "galera": {}, "unassigned": {}}


def test_a_carp_priority_touches_carp_and_the_probe_password_the_database_servers(lab_raw, lab_model):
    new = _changed(lab_raw, lambda p: p["carp"]["groups"][44].update(advskew_primary=20))
    assert lb_gate.affected(lab_model, new)["lb"] == {"lb-a": ["carp"]}
    new = _changed(lab_raw, lambda p: p["galera_probe"].update(password="other-pw"))
    change = lb_gate.affected(lab_model, new)
    assert change["lb"] == {}
    assert change["galera"] == {"edge": ["198.18.4.2", "198.18.4.3", "198.18.4.4", "198.18.5.2", "198.18.5.3", "198.18.5.4"]}


def test_a_first_push_touches_every_node_and_the_backup_goes_first(lab_model):
    change = lb_gate.affected(None, lab_model)
    assert change["lb"] == {"lb-a": ["host", "carp", "haproxy", "routing"], "lb-b": ["host", "carp", "haproxy", "routing"]}
    assert lb_gate.primaries_last(lab_model, ["lb-a", "lb-b"]) == ["lb-b", "lb-a"]


# ---------------------------------------------------------------------------
# what a pushed pillar may not do


def _env():
    import jinja2

    return jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])


def test_renderers_that_run_code_are_refused_with_the_files_path():
    for line in ("#!py", "#!pyobjects", "#!mako|yaml", "#!wempy|yaml", "#!yaml_mako", "#!jinja|yaml|pydsl", "#!cheetah"):
        found = lb_gate.renderer_findings("sub/x.sls", line, "jinja|yaml")
        assert [f.path for f in found] == ["sub/x.sls"], line
        assert "a renderer that can run code on the master" in found[0].message
    assert lb_gate.renderer_findings("x.sls", "#!gpg|jinja|yaml", "jinja|yaml")[0].message.startswith("renders with gpg before jinja|yaml")
    for line in ("#!jinja|yaml|gpg", "#!yaml", "#!json", "#!yaml_jinja", "lb:", "#!/bin/sh"):
        assert lb_gate.renderer_findings("x.sls", line, "jinja|yaml") == [], line
    # no shebang: the master's `renderer` option decides
    assert "the master's `renderer` option" in lb_gate.renderer_findings("x.sls", "lb:", "py")[0].message


def test_templates_that_reach_salt_opts_or_internals_are_refused_at_their_line():
    cases = {
        "a: {{ salt['cmd.run']('id') }}": "calls Salt's execution functions (salt[...])",
        "a: 1\n{% do __salt__['file.write']('/x', 'y') %}": "calls Salt's execution functions (__salt__)",
        "{% set s = salt %}{{ s.cmd.run('id') }}": "calls Salt's execution functions (salt[...])",
        "{% macro m() %}{{ salt.cmd.run('id') }}{% endmacro %}": "calls Salt's execution functions",
        "a: {{ opts['gpg_keydir'] }}": "reads the master's options (opts)",
        "a: {{ show_full_context() }}": "reads the whole render context",
        "a: {{ 'http://x' | http_query }}": "uses the `http_query` filter",
        "a: {{ '' | method_call('upper') }}": "uses the `method_call` filter",
        "a: {{ ''.__class__ }}": "reads the attribute '__class__'",
        "a: {{ x['__globals__'] }}": "reads the key '__globals__'",
    }
    for text, why in cases.items():
        found, _ = lb_gate.template_findings("t.sls", text, _env())
        assert found and why in found[0].message, text
        assert found[0].path == f"t.sls:{text.count(chr(10)) + 1}", text
    header = lb_gate.template_findings("t.sls", '#!jinja|yaml\n#jinja2: {"variable_start_string": "<<"}\n', _env())[0]
    assert header[0].message.startswith("has a `#jinja2:` header")
    # a local of the same name, grains, and text that is not Jinja
    assert lb_gate.template_findings("t.sls", "{% set salt = 1 %}a: {{ salt }}", _env()) == ([], False)
    assert lb_gate.template_findings("t.sls", "a: {{ grains['os_family'] }}", _env()) == ([], True)
    assert lb_gate.template_findings("t.sls", "a: {{ unclosed", _env()) == ([], False)


def test_grain_targets_are_the_targets_that_need_more_than_the_id():
    top = {
        "base": {
            "*": ["lb"],
            "lb-*": [{"match": "glob"}, "x"],
            "E@lb-[ab] or L@db-1,db-2": [{"match": "compound"}, "x"],
            "lb-* and G@os:Debian": [{"match": "compound"}, "x"],
            "os_family:Debian": [{"match": "grain"}, "x"],
            "roles:lb": [{"match": "pillar"}, "x"],
            "10.0.0.0/8": [{"match": "ipcidr"}, "x"],
        }
    }
    assert lb_gate.grain_targets(top) == [
        "base: 'lb-* and G@os:Debian' (match: compound)",
        "base: 'os_family:Debian' (match: grain)",
        "base: 'roles:lb' (match: pillar)",
        "base: '10.0.0.0/8' (match: ipcidr)",
    ]


def test_served_branches_follow_the_masters_git_pillar_remotes():
    ext = [{"git": ["main file:///srv/pillar.git", {"file:///srv/other.git": [{"branch": "prod"}]}]}]
    assert lb_gate.served_branches(ext) == ({"main", "prod"}, False)
    assert lb_gate.served_branches(ext, is_this_repo=lambda url: url == "file:///srv/pillar.git") == ({"main"}, False)
    assert lb_gate.served_branches([{"git": ["file:///srv/p.git"]}], "stable") == ({"stable"}, False)
    assert lb_gate.served_branches([{"git": ["__env__ file:///srv/p.git"]}], base="main") == ({"main"}, True)
    assert lb_gate.served_branches([{"git": [{"__env__ file:///srv/p.git": [{"all_saltenvs": "main"}]}]}]) == ({"main"}, False)
    assert lb_gate.served_branches([{"cmd_yaml": "cat x"}]) == (set(), False)


def test_a_secret_cut_by_a_piece_boundary_is_still_found(tmp_path, lab_raw):
    path = tmp_path / "f"
    # "passwd44" straddles the first 64 KiB piece of one long line
    path.write_text("x" * (lb_secrets.PIECE - 12) + " password: passwd44, " + "y" * 100)
    pieces = list(lb_secrets.read_pieces(str(path)))
    assert len(pieces) == 2 and "passwd44" not in pieces[0]
    found = lb_secrets.cleartext_findings(lab_raw, [("f", lb_secrets.read_pieces(str(path)))])
    assert [f.path for f in found] == ["lb:pairs:edge:carp:groups:44:password", "lb:pairs:edge:carp:groups:55:password"]  # one value


def test_a_route_or_a_sysctl_touches_the_host_sls_on_both_os_families(lab_raw, lab_model):
    new = _changed(lab_raw, lambda p: p["routes"].update({"extra": {"destination": "198.19.9.0/24", "gateway": "198.18.3.254"}}))
    for os_family in ("Debian", "FreeBSD"):
        change = lb_gate.affected(lab_model, new, os_family)
        assert change["lb"] == {"lb-a": ["host"], "lb-b": ["host"]}, os_family
        assert change["unassigned"] == {}
    new = _changed(lab_raw, lambda p: p["sysctl"].update(ip_forwarding=False))
    # FreeBSD: gateway_enable in rc.conf and forwarding in sysctl.conf, both the host SLS's
    assert lb_gate.affected(lab_model, new, "FreeBSD")["lb"] == {"lb-a": ["host"], "lb-b": ["host"]}
    assert lb_gate.affected(lab_model, new, "Debian")["lb"] == {"lb-a": ["host"], "lb-b": ["host"]}


def test_freebsd_rc_conf_is_the_host_sls_and_netif_the_carp_one(lab_raw, lab_model):
    assert lb_gate._state_of("/etc/rc.conf", "FreeBSD") == "host"
    assert lb_gate._state_of("/etc/rc.conf.d/netif", "FreeBSD") == "carp"
    # a changed hostname is rc.conf only: carp is not re-applied for it
    new = _changed(lab_raw, lambda p: p["nodes"]["lb-a"].update(hostname="lb-a.example.net"))
    assert lb_gate.affected(lab_model, new, "FreeBSD")["lb"] == {"lb-a": ["host"]}
