"""HAProxy's Prometheus exporter: bound to the management address, open only
to the networks of the pillar's `haproxy:metrics:allow` (default: the
management network); every bad value rejected with its pillar path; every
rendered config passes the real `haproxy -c`."""

import re
import shutil
import subprocess

import pytest

import lb_parameters
import lb_render
import lb_topology

M = "lb:pairs:edge:haproxy:metrics"


def haproxy_check(path):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    return subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)


def frontend(model, node="lb-a", os_family="Debian"):
    text = lb_render.render_node(model, node, os_family)[lb_parameters.of(os_family, "node")["haproxy_config"]].content
    m = re.search(r"^frontend prometheus\n((?:    .*\n)+)", text, re.M)
    return text, (m.group(1).splitlines() if m else None)


def errors(raw):
    return {(e.path, e.message) for e in lb_topology.check(raw).errors}


def test_default_binds_the_mgmt_address_and_allows_the_mgmt_network_only(seed_model):
    _, lines = frontend(seed_model)
    assert [x.strip() for x in lines] == [
        "bind 10.1.1.241:8405",
        "mode http",
        "acl metrics_allowed src 10.1.1.0/24",
        "tcp-request connection reject unless metrics_allowed",
        "http-request use-service prometheus-exporter if { path /metrics }",
        "no log",
    ]
    _, lines = frontend(seed_model, "lb-b", "FreeBSD")
    assert "    bind 10.1.1.242:8405" in lines and "    acl metrics_allowed src 10.1.1.0/24" in lines


@pytest.mark.parametrize("os_family", ["Debian", "FreeBSD"])
def test_allow_and_port_from_the_pillar_pass_haproxy_check(seed_raw, tmp_path, os_family):
    seed_raw["pairs"]["edge"]["haproxy"]["metrics"] = {"port": 9101, "allow": ["10.1.1.7/32", "192.0.2.0/28", "10.1.1.7/32"]}
    text, lines = frontend(lb_topology.load(seed_raw), os_family=os_family)
    assert "    bind 10.1.1.241:9101" in lines
    assert "    acl metrics_allowed src 10.1.1.7/32 192.0.2.0/28" in lines  # each once, in pillar order
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    r = haproxy_check(cfg)
    assert r.returncode == 0 and "WARNING" not in r.stdout + r.stderr, r.stdout + r.stderr


def test_disabled_renders_no_exporter(seed_raw):
    seed_raw["pairs"]["edge"]["haproxy"]["metrics"] = {"enabled": False}
    text, lines = frontend(lb_topology.load(seed_raw))
    assert lines is None and "prometheus-exporter" not in text and ":8405" not in text


@pytest.mark.parametrize(
    ("metrics", "path", "fragment"),
    [
        ({"allow": "10.1.1.0/24"}, f"{M}:allow", "must be a non-empty list"),
        ({"allow": []}, f"{M}:allow", "must be a non-empty list"),
        ({"allow": ["10.1.1.0/24\n"]}, f"{M}:allow:0", "is not an IPv4 network with a prefix"),
        ({"allow": ["10.1.1.0/24\r"]}, f"{M}:allow:0", "is not an IPv4 network with a prefix"),
        ({"allow": ["10.1.1.0/24", "10.1.1.0/24 0.0.0.0/0"]}, f"{M}:allow:1", "is not an IPv4 network with a prefix"),
        ({"allow": ["10.1.1.0/24\ntcp-request connection accept"]}, f"{M}:allow:0", "is not an IPv4 network with a prefix"),
        ({"allow": ["10.1.1.1"]}, f"{M}:allow:0", "is not an IPv4 network with a prefix"),
        ({"allow": ["2001:db8::/32"]}, f"{M}:allow:0", "is not an IPv4 network with a prefix"),
        ({"allow": [24]}, f"{M}:allow:0", "is not an IPv4 network with a prefix"),
        ({"allow": ["10.1.1.5/24"]}, f"{M}:allow:0", "has host bits set; the network is 10.1.1.0/24"),
        ({"allow": ["10.1.1.0/33"]}, f"{M}:allow:0", "is not a valid address with a prefix"),
        ({"allow": ["300.1.1.0/24"]}, f"{M}:allow:0", "is not a valid address with a prefix"),
        ({"port": 9000}, f"{M}:port", "is the stats page's port"),
        ({"port": 70000}, f"{M}:port", "outside 1-65535"),
        ({"enabled": "yes"}, f"{M}:enabled", "must be true or false"),
        ({"allowed": ["10.1.1.0/24"]}, f"{M}:allowed", "unknown key"),
        ("on", M, "must be a mapping"),
    ],
)
def test_bad_values_are_rejected_with_their_path(seed_raw, metrics, path, fragment):
    seed_raw["pairs"]["edge"]["haproxy"]["metrics"] = metrics
    found = errors(seed_raw)
    assert any(p == path and fragment in msg for p, msg in found), found


def test_an_exporter_asked_for_without_a_stats_page_is_an_error(seed_raw):
    hp = seed_raw["pairs"]["edge"]["haproxy"]
    hp["stats"]["enabled"] = False
    assert not errors(seed_raw)  # no stats, no metrics key: no exporter, as before
    hp["metrics"] = {"allow": ["10.1.1.0/24"]}
    assert any(p == M and "needs haproxy:stats" in msg for p, msg in errors(seed_raw))
