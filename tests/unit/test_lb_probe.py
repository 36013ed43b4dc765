"""The probe's files rendered from the topology (no loader, no system), and
the probe's own decision table and HTTP framing as pure functions."""

import copy
import http.client
import io
import os
import py_compile
import re

import netaddr
import pytest

import lb_parameters
import lb_probe
import lb_topology
from tests.support import PROBE_PROGRAM, probe_module, render_state_file

probe = probe_module()

OSES = ("Debian", "FreeBSD")


def files_of(model, os_family, **kw):
    return lb_probe.render_probe(model, "edge", os_family, **kw)


# -- what each OS gets ---------------------------------------------------------


def test_debian_gets_the_probe_its_option_file_and_an_xinetd_service(lab_model):
    files = files_of(lab_model, "Debian")
    assert sorted(files) == ["/etc/clustercheck/clustercheck.cnf", "/etc/xinetd.d/clustercheck", "/usr/local/bin/clustercheck"]
    cnf = files["/etc/clustercheck/clustercheck.cnf"]
    assert (cnf.mode, cnf.user, cnf.group, cnf.secret) == ("0600", "clustercheck", "clustercheck", True)
    prog = files["/usr/local/bin/clustercheck"]
    assert (prog.mode, prog.user, prog.secret) == ("0755", "root", False)
    assert all(f.block is None for f in files.values())


def test_freebsd_gets_inetd_services_hosts_allow_and_rc_conf_d(lab_model):
    files = files_of(lab_model, "FreeBSD")
    assert sorted(files) == [
        "/etc/hosts.allow",
        "/etc/inetd.conf",
        "/etc/rc.conf.d/inetd",
        "/etc/services",
        "/usr/local/bin/clustercheck",
        "/usr/local/etc/clustercheck/clustercheck.cnf",
    ]
    assert files["/etc/hosts.allow"].block == "prepend"  # before the stock ALL : ALL : allow
    assert files["/etc/inetd.conf"].block == "append"
    assert files["/etc/services"].block == "append"
    assert files["/etc/services"].content == "clustercheck\t9200/tcp\t# Galera health probe for HAProxy\n"
    fields = files["/etc/inetd.conf"].content.split("\t")
    # service socket proto nowait/max-child/per-ip-per-minute/max-child-per-ip user:group program argv0
    assert fields[:3] == ["clustercheck", "stream", "tcp"]
    assert re.fullmatch(r"nowait/\d+/\d+/\d+", fields[3])
    assert fields[4:] == ["clustercheck:clustercheck", "/usr/local/bin/clustercheck", "clustercheck\n"]
    assert files["/etc/hosts.allow"].content == ("clustercheck : 127.0.0.1 198.18.3.241 198.18.3.242 : allow\nclustercheck : ALL : deny\n")
    rc = files["/etc/rc.conf.d/inetd"].content
    assert 'inetd_enable="YES"' in rc
    rate = int(re.search(r"-R (\d+)", rc).group(1))
    assert rate > 256  # inetd's default, which stops the service for 10 minutes
    assert files["/etc/rc.conf.d/inetd"].group == "wheel"


@pytest.mark.parametrize("os_family", OSES)
def test_the_probe_program_is_the_state_trees_file_with_the_os_paths(lab_model, tmp_path, os_family):
    p = lb_parameters.of(os_family, "probe")
    f = files_of(lab_model, os_family)[p["probe"]]
    assert (f.content, f.source, f.mode) == ("", "salt://clustercheck/files/clustercheck.py", "0755")
    assert f.context == {"python": p["python"], "config": p["config"], "client": p["client"], "client_path": p["client_path"]}
    text = render_state_file(f.source, f.context)
    assert text.splitlines()[0] == f"#!{p['python']} -IS"
    assert f'CONFIG = "{p["config"]}"' in text
    assert f'CLIENT = "{p["client"]}"' in text
    assert f'CLIENT_PATH = "{p["client_path"]}"' in text
    with open(PROBE_PROGRAM) as fh:
        source = fh.read()
    # nothing else is templated: the #! line and the three paths
    changed = [(a, b) for a, b in zip(source.splitlines(), text.splitlines(), strict=True) if a != b]
    assert len(changed) == 4
    assert "{{" not in text and "{%" not in text and "{#" not in text
    out = tmp_path / "clustercheck.py"
    out.write_text(text)
    py_compile.compile(str(out), doraise=True)


def test_the_template_has_no_jinja_but_its_four_lines():
    """Any other `{{`, `{%` or `{#` in the program would be Jinja's to
    interpret when file.managed renders it."""
    with open(PROBE_PROGRAM) as fh:
        lines = fh.read().splitlines()
    jinja = [i for i, line in enumerate(lines) if re.search(r"\{[{%#]", line)]
    assert [lines[i] for i in jinja] == [
        "#!{{ python }} -IS",
        'CONFIG = "{{ config }}"',
        'CLIENT = "{{ client }}"',
        'CLIENT_PATH = "{{ client_path }}"',
    ]


@pytest.mark.parametrize("os_family", OSES)
def test_option_file_has_the_account_socket_and_settings(lab_model, os_family):
    p = lb_parameters.of(os_family, "probe")
    text = files_of(lab_model, os_family)[p["config"]].content
    assert "[client]\nuser = clustercheck\npassword = 'clustercheck-lab-pw'\n" in text
    assert f"socket = {p['socket']}\nprotocol = socket\n" in text
    assert (
        "[clustercheck]\ntimeout = 2\navailable_when_donor = 0\navailable_when_readonly = 0\nmaintenance_file = /var/lib/clustercheck/maintenance\n"
        in text
    )


def test_the_probe_reads_its_settings_from_the_rendered_option_file(lab_raw, tmp_path):
    lab_raw["pairs"]["edge"]["galera_probe"].update(available_when_donor=True, timeout=7, maintenance_file="/srv/m")
    model = lb_topology.load(lab_raw)
    path = tmp_path / "cc.cnf"
    path.write_text(files_of(model, "Debian")["/etc/clustercheck/clustercheck.cnf"].content)
    assert probe.settings(str(path)) == {
        "timeout": 7.0,
        "available_when_donor": True,
        "available_when_readonly": False,
        "maintenance_file": "/srv/m",
    }
    # and the client's group is what the client reads (quotes stripped)
    assert probe.read_group(str(path), "client")["password"] == "clustercheck-lab-pw"


def test_tcp_instead_of_the_socket_and_the_account_host_follows(lab_model):
    ov = {"host": "127.0.0.1", "port": 3307}
    text = files_of(lab_model, "Debian", overrides=ov)["/etc/clustercheck/clustercheck.cnf"].content
    assert "host = 127.0.0.1\nport = 3307\nprotocol = tcp\n" in text
    assert "socket" not in text
    assert lb_probe.account(lab_model["pairs"]["edge"], lb_probe.params("Debian", ov))["host"] == "127.0.0.1"
    assert lb_probe.account(lab_model["pairs"]["edge"], lb_probe.params("Debian"))["host"] == "localhost"


def test_redacted_render_hides_the_password_everywhere(lab_model):
    for os_family in OSES:
        for f in files_of(lab_model, os_family, redact=True).values():
            assert "clustercheck-lab-pw" not in f.content
    plan = lb_probe.plan(lab_model, "Debian", redact=True)
    assert "clustercheck-lab-pw" not in repr(plan)
    assert plan["account"]["password"] == lb_probe.REDACTED


def test_rendering_is_deterministic(lab_model):
    for os_family in OSES:
        a = files_of(lab_model, os_family)
        b = files_of(copy.deepcopy(lab_model), os_family)
        assert a == b


# -- who may connect ---------------------------------------------------------------


def xinetd_attrs(text):
    body = text.split("{", 1)[1].rsplit("}", 1)[0]
    out = {}
    for line in body.splitlines():
        if "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def test_only_from_is_the_two_lbs_on_the_routed_systems_network_and_localhost(lab_model, seed_model):
    lab = xinetd_attrs(files_of(lab_model, "Debian")["/etc/xinetd.d/clustercheck"].content)
    # the database network 198.18.4.0/23 is reached through the systems network's router
    assert lab["only_from"] == "127.0.0.1 198.18.3.241 198.18.3.242"
    seed = xinetd_attrs(files_of(seed_model, "Debian")["/etc/xinetd.d/clustercheck"].content)
    assert seed["only_from"] == "127.0.0.1 10.3.3.241 10.3.3.242"


def test_a_directly_connected_database_network_is_used_before_routes(lab_raw):
    pair = lab_raw["pairs"]["edge"]
    pair["nodes"]["lb-a"]["interfaces"]["db"] = {"network": "mysql", "address": "198.18.4.241", "device": "lb-a-eth3"}
    pair["nodes"]["lb-b"]["interfaces"]["db"] = {"network": "mysql", "address": "198.18.4.242", "device": "lb-b-eth3"}
    del pair["routes"]["mysqlnet"]
    model = lb_topology.load(lab_raw)
    assert [str(a) for a in lb_probe.lb_sources(model["pairs"]["edge"])] == ["198.18.4.241", "198.18.4.242"]


def test_no_way_to_the_database_servers_is_a_clear_error(lab_raw):
    del lab_raw["pairs"]["edge"]["routes"]["mysqlnet"]
    model = lb_topology.load(lab_raw)
    with pytest.raises(
        ValueError, match=r"lb-a has no connected network and no route toward galera server percona_mysql-1 \(198\.18\.4\.2\)"
    ):
        files_of(model, "Debian")


def test_the_service_runs_unprivileged_unlisted_on_the_probe_port(lab_model):
    a = xinetd_attrs(files_of(lab_model, "Debian")["/etc/xinetd.d/clustercheck"].content)
    assert a["user"] == "clustercheck" and a["group"] == "clustercheck"
    assert a["type"] == "UNLISTED"  # 9200 is in no /etc/services: the seed's file would not start
    assert a["port"] == "9200" and a["wait"] == "no" and a["disable"] == "no"
    assert a["server"] == "/usr/local/bin/clustercheck"
    assert a["log_on_success"] == ""  # no syslog line per check


# -- rate limits ---------------------------------------------------------------------


def test_rate_limits_sit_far_above_the_pairs_check_traffic(lab_model):
    pair = lab_model["pairs"]["edge"]
    load = lb_probe.check_load(pair)
    # two nodes, one listener per server, at the galera pools' fastinter
    # 500ms (the shortest of inter 2s, fastinter 500ms, downinter 5s)
    assert load == {"rate": 4.0, "concurrent": 2}
    lim = lb_probe.limits(pair)
    a = xinetd_attrs(files_of(lab_model, "Debian")["/etc/xinetd.d/clustercheck"].content)
    cps, wait = (int(x) for x in a["cps"].split())
    assert (cps, wait) == lim["cps"]
    assert cps >= 20 * load["rate"] and cps > 50  # above xinetd's default
    assert wait == 1  # xinetd's default 10 s is longer than fall x inter = 4 s
    assert int(a["instances"]) >= 4 * load["concurrent"]
    assert int(a["per_source"]) >= load["concurrent"]


def test_many_listeners_and_fast_timers_raise_the_limits(lab_raw):
    pair = lab_raw["pairs"]["edge"]
    pair["haproxy"]["pools"]["galera_a"]["default_server"].update(inter="200ms", fastinter="100ms")
    for i in range(10):
        pair["carp"]["groups"][100 + i] = {"interface": "vip", "vip": f"198.18.2.{100 + i}/24", "password": "pw", "primary": "lb-a"}
        pair["haproxy"]["listeners"][f"extra_{i}"] = {
            "vhid": 100 + i,
            "port": 3306,
            "mode": "tcp",
            "balance": "leastconn",
            "pool": "galera_a",
        }
    model = lb_topology.load(lab_raw)
    load = lb_probe.check_load(model["pairs"]["edge"])
    # 11 listeners x 2 nodes, every 100 ms at the fastest
    assert load == {"rate": pytest.approx(220.0), "concurrent": 22}
    lim = lb_probe.limits(model["pairs"]["edge"])
    assert lim["cps"][0] >= 25 * 220
    assert lim["instances"] == 88 and lim["per_source"] == 24


@pytest.mark.parametrize(("value", "seconds"), [("2s", 2.0), ("500ms", 0.5), ("2000", 2.0), ("1m", 60.0)])
def test_haproxy_times(value, seconds):
    assert lb_probe.seconds(value) == seconds


# -- which pair ---------------------------------------------------------------------


def test_find_pair_by_the_servers_address(lab_model):
    assert lb_probe.find_pair(lab_model, addresses=["127.0.0.1", "198.18.4.3"]) == "edge"
    assert lb_probe.find_pair(lab_model) == "edge"  # the only pair with a probe
    with pytest.raises(KeyError, match="pair 'nope' has no galera_probe"):
        lb_probe.find_pair(lab_model, "nope")


def test_find_pair_among_several(lab_model):
    other = copy.deepcopy(lab_model["pairs"]["edge"])
    for pool in other["haproxy"]["pools"].values():
        for s in pool["servers"].values():
            s["address"] = netaddr.IPAddress(int(s["address"]) + 100)
    model = {"pairs": {"edge": lab_model["pairs"]["edge"], "other": other}}
    assert lb_probe.find_pair(model, addresses=["198.18.4.102"]) == "other"
    assert lb_probe.find_pair(model, addresses=["198.18.4.2"]) == "edge"
    with pytest.raises(KeyError, match="no pair's galera pools list this server"):
        lb_probe.find_pair(model, addresses=["192.0.2.1"])


def test_unknown_parameter_is_refused(lab_model):
    with pytest.raises(KeyError, match="unknown probe parameter 'sockett'"):
        files_of(lab_model, "Debian", overrides={"sockett": "/x"})


# -- the probe's decisions (pure) -------------------------------------------------------

CFG = {"timeout": 2.0, "available_when_donor": False, "available_when_readonly": False, "maintenance_file": "/nonexistent"}


def answer(state, cluster="Primary", read_only="0", comment=None, **cfg):
    out = f"wsrep_local_state\t{state}\nwsrep_local_state_comment\t{comment or probe.STATES.get(state, '?')}\nwsrep_cluster_status\t{cluster}\nread_only\t{read_only}\n"
    return probe.verdict(dict(CFG, **cfg), out, "", 0, False)


@pytest.mark.parametrize(
    ("args", "cfg", "available", "reason"),
    [
        ((4,), {}, True, "wsrep_local_state 4 (Synced), cluster Primary"),
        ((2,), {}, False, "not synced: wsrep_local_state 2 (Donor/Desynced), cluster Primary"),
        ((2,), {"available_when_donor": True}, True, "wsrep_local_state 2 (Donor/Desynced), cluster Primary, available as donor"),
        ((1,), {"available_when_donor": True}, False, "not synced: wsrep_local_state 1 (Joining), cluster Primary"),
        ((3,), {}, False, "not synced: wsrep_local_state 3 (Joined), cluster Primary"),
        ((4, "non-Primary"), {}, False, "not in the primary component: wsrep_local_state 4 (Synced), cluster non-Primary"),
        ((0, "non-Primary"), {}, False, "not in the primary component: wsrep_local_state 0 (Undefined), cluster non-Primary"),
        ((4, "Primary", "1"), {}, False, "read_only is ON: wsrep_local_state 4 (Synced), cluster Primary"),
        ((4, "Primary", "1"), {"available_when_readonly": True}, True, "wsrep_local_state 4 (Synced), cluster Primary, read_only"),
    ],
)
def test_verdict_table(args, cfg, available, reason):
    ok, why, facts = answer(*args, **cfg)
    assert (ok, why) == (available, reason)


def test_verdict_on_client_errors_and_odd_answers():
    ok, why, _ = probe.verdict(CFG, "", "ERROR 2002 (HY000): Can't connect to local server through socket '/x' (2)\n", 1, False)
    assert not ok and why == "cannot query MariaDB (error 2002): no server on the socket (is mariadbd running?)"
    ok, why, _ = probe.verdict(CFG, "", "", 0, True)
    assert not ok and why == "MariaDB did not answer within 2s"
    ok, why, _ = probe.verdict(CFG, "read_only\t0\n", "", 0, False)
    assert not ok and why == "wsrep is off: this server is not a Galera node"
    # the seed's probe ran `[ $status -ne 4 ]` on an empty status: a shell error, not a 503
    ok, why, _ = probe.verdict(CFG, "wsrep_local_state\t\n", "", 0, False)
    assert not ok and "not a number" in why


def test_a_503_for_a_refused_login_names_no_account_and_quotes_no_server_text():
    """The server's own error text names the account (and the host it came
    from); the body goes to whoever may connect to the probe: only the error
    number and a fixed text reach it."""
    err = "ERROR 1045 (28000): Access denied for user 'probe_acct_x9'@'localhost' (using password: YES)\n"
    ok, why, _ = probe.verdict(CFG, "", err, 1, False)
    assert not ok and why == "cannot query MariaDB (error 1045): the server refused the probe's login (its account or password)"
    body = probe.http_response({"available": False, "reason": why})
    assert b"probe_acct_x9" not in body and b"Access denied" not in body and b"localhost" not in body
    # an error number the table does not know: still no server text
    ok, why, _ = probe.verdict(CFG, "", "ERROR 4031 (HY000): user 'probe_acct_x9' idle too long\n", 1, False)
    assert why == "cannot query MariaDB (error 4031): the client failed"
    # no ERROR line at all (the client itself complains, quoting its options)
    ok, why, _ = probe.verdict(CFG, "", "mariadb: unknown variable 'user=probe_acct_x9'\n", 7, False)
    assert why == "cannot query MariaDB: the client failed (exit status 7)"


def test_a_crashing_check_answers_with_the_exception_type_only(tmp_path, monkeypatch):
    """serve() answers even when the check raises; the exception's text
    (which could quote the option file) does not reach the body."""
    cnf = tmp_path / "c.cnf"
    cnf.write_text("[client]\nuser = probe_acct_x9\n\n[clustercheck]\nmaintenance_file = /nonexistent\n")

    def boom(*_a, **_k):
        raise RuntimeError("user = probe_acct_x9, password = s3cret")

    monkeypatch.setattr(probe, "start_query", boom)
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    os.close(w)  # the client sends nothing and closes
    saved = [os.dup(0), os.dup(1), os.dup(2)]
    try:
        os.dup2(r, 0)
        os.dup2(out_w, 1)
        probe.serve(str(cnf))
    finally:
        for fd, old in zip((0, 1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)
        os.close(r)
        os.close(out_w)
    raw = os.read(out_r, 65536)
    os.close(out_r)
    assert raw.startswith(b"HTTP/1.1 503 ")
    assert raw.endswith(b"MariaDB Galera node unavailable: probe error: RuntimeError\r\n")
    assert b"probe_acct_x9" not in raw and b"s3cret" not in raw


def parse(raw):
    class FakeSock:
        def makefile(self, *_a, **_k):
            return io.BytesIO(raw)

    resp = http.client.HTTPResponse(FakeSock())
    resp.begin()
    return resp, resp.read()


@pytest.mark.parametrize("available", [True, False])
def test_http_response_is_well_formed(available):
    raw = probe.http_response({"available": available, "reason": "why"})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\n" not in head.replace(b"\r\n", b"")  # CRLF only, no doubled line ends
    resp, got = parse(raw)
    assert resp.status == (200 if available else 503)
    assert int(resp.getheader("Content-Length")) == len(body) == len(got)
    assert (b"is running." in got) is available


def test_a_503_never_matches_the_tcp_check_string_whatever_the_reason_quotes():
    raw = probe.http_response({"available": False, "reason": "cannot query MariaDB: ERROR: MariaDB is running. but"})
    assert b"is running." not in raw


def test_head_gets_the_headers_and_the_length_of_the_body_it_does_not_get():
    full = probe.http_response({"available": True, "reason": "x"})
    head = probe.http_response({"available": True, "reason": "x"}, head=True)
    assert full.startswith(head) and head.endswith(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    assert length == len(full) - len(head)


def test_settings_clamp_the_timeout(tmp_path):
    cnf = tmp_path / "c.cnf"
    cnf.write_text("[client]\nuser = x\n\n[clustercheck]\ntimeout = 60\n")
    assert probe.settings(str(cnf))["timeout"] == 10.0
    cnf.write_text("[clustercheck]\ntimeout = 0\n")
    assert probe.settings(str(cnf))["timeout"] == 1.0
    assert probe.settings(str(cnf))["maintenance_file"] == "/var/lib/clustercheck/maintenance"


# -- the seed's probe, for contrast ---------------------------------------------------------


def seed_function(name):
    from tests.support import SEED_HOWTO

    text = open(SEED_HOWTO, encoding="utf-8").read()
    m = re.search(rf"^{name}\(\)\n\{{\n.*?^\}}\n", text, re.S | re.M)
    assert m, name
    return m.group(0)


def test_the_seeds_probe_answers_malformed_http(tmp_path):
    """The seed's return_ok, run by bash as the seed runs it: `echo -e` adds a
    newline after every `\\r\\n`, so an empty line follows the status line and
    the headers end up in the body; its Content-Length is not the body's."""
    import subprocess

    script = seed_function("return_ok") + f"TMP_FILE={tmp_path}/t ERR_FILE={tmp_path}/e\nreturn_ok\n"
    raw = subprocess.run(["bash", "-c", script], capture_output=True, timeout=10).stdout
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n\n")
    resp, body = parse(raw)
    assert resp.getheader("Content-Length") is None  # the parser saw no header at all
    assert b"Content-Length: 43" in body  # it is in the body
    assert len(raw.split(b"\r\n\n\r\n\n", 1)[-1]) != 43
    ours, _ = parse(probe.http_response({"available": True, "reason": "x"}))
    assert ours.getheader("Content-Length") is not None
