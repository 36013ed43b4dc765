"""_utils/lb_host.py: the host SLS's plan, the routing-table parsers and the
commands; lb_render's routes file and owners."""

import os
import subprocess

import lb_host
import lb_render

# `ip -4 route show table main` of a lab load balancer (iproute2 6.1, Debian 12)
LINUX_ROUTES = """\
default via 198.18.1.254 dev lb-a-eth0
198.18.0.0/24 via 198.18.2.254 dev lb-a-eth1
198.18.1.0/24 dev lb-a-eth0 proto kernel scope link src 198.18.1.241
198.18.2.4 dev lb-a-eth1 proto kernel scope link src 198.18.2.4
198.18.4.0/23 via 198.18.3.254 dev lb-a-eth2 linkdown
unreachable 192.0.2.53
"""

# The layout FreeBSD 14's route(8) prints for `route -n get -net`
# (sbin/route/route_netlink.c print_getmsg): not captured output, no FreeBSD
# host here (tests/fixtures/freebsd/README.md).
FREEBSD_GET = """\
   route to: 10.4.4.0
destination: 10.4.4.0
       mask: 255.255.254.0
    gateway: 10.3.3.254
        fib: 0
  interface: em2
      flags: <UP,GATEWAY,DONE,STATIC>
 recvpipe  sendpipe  ssthresh  rtt,msec    mtu        weight    expire
       0         0         0         0      1500         1         0
"""
FREEBSD_DEFAULT = """\
   route to: 10.4.4.0
destination: default
       mask: default
    gateway: 10.1.1.254
"""


def test_linux_routes():
    got = lb_host.linux_routes(LINUX_ROUTES)
    assert got["0.0.0.0/0"] == "198.18.1.254"
    assert got["198.18.4.0/23"] == "198.18.3.254"
    assert got["198.18.1.0/24"] is None
    assert got["198.18.2.4/32"] is None
    assert got["192.0.2.53/32"] is None


def test_freebsd_route_is_compared_by_destination_and_mask():
    assert lb_host.freebsd_route(FREEBSD_GET) == {"destination": "10.4.4.0/23", "gateway": "10.3.3.254"}
    # `mask: default` is not an address: no exact match, so never "routed"
    assert lb_host.freebsd_route(FREEBSD_DEFAULT)["destination"] != "10.4.4.0/23"
    assert lb_host.freebsd_route("route: route has not been found\n") == {"destination": None, "gateway": None}


def test_route_changes_and_commands():
    wanted = [
        {"name": "a", "destination": "198.18.4.0/23", "gateway": "198.18.3.254"},
        {"name": "b", "destination": "198.18.0.0/24", "gateway": "198.18.2.254"},
        {"name": "c", "destination": "198.18.6.0/24", "gateway": "198.18.3.254"},
    ]
    live = {"198.18.4.0/23": "198.18.3.254", "198.18.0.0/24": "198.18.2.1"}
    todo = lb_host.route_changes(wanted, live)
    assert [(r["destination"], r["old"], r["present"]) for r in todo] == [
        ("198.18.0.0/24", "198.18.2.1", True),
        ("198.18.6.0/24", None, False),
    ]
    assert lb_host.route_argv("Debian", todo[0]) == ["ip", "-4", "route", "replace", "198.18.0.0/24", "via", "198.18.2.254"]
    assert lb_host.route_argv("FreeBSD", todo[0]) == ["route", "-n", "change", "-net", "198.18.0.0/24", "198.18.2.254"]
    assert lb_host.route_argv("FreeBSD", todo[1]) == ["route", "-n", "add", "-net", "198.18.6.0/24", "198.18.3.254"]
    assert lb_host.route_changes(wanted[:1], live) == []


def test_sysctl_values_reads_both_spellings():
    text = "# head\n\nnet.ipv4.ip_forward = 1\nnet.inet.carp.preempt=1\n; note\nkernel.x = a b\n"
    assert lb_host.sysctl_values(text) == {"net.ipv4.ip_forward": "1", "net.inet.carp.preempt": "1", "kernel.x": "a b"}


def test_plan_debian_has_the_sysctl_file_with_nonlocal_bind_and_the_routes_file(lab_model):
    plan = lb_host.plan(lab_model, "lb-a", "Debian")
    boot = {p for p in plan["files"] if p.startswith(("/etc/systemd/", "/etc/tmpfiles.d/"))}  # tests/unit/test_lb_boot.py
    assert set(plan["files"]) - boot == {
        "/etc/sysctl.d/60-lb-pair.conf",
        "/etc/network/if-up.d/lb-pair-routes",
        "/etc/default/lb-pair-routes",
    }
    assert plan["sysctl"] == {"net.ipv4.ip_forward": "1", "net.ipv4.ip_nonlocal_bind": "1"}
    # the if-up.d program is a file of the state tree; the routes are its data
    program = plan["files"]["/etc/network/if-up.d/lb-pair-routes"]
    assert (program["mode"], program["source"], program["content"]) == ("0755", "salt://host/files/lb-pair-routes.sh", "")
    data = plan["files"]["/etc/default/lb-pair-routes"]
    assert data["mode"] == "0644" and data["source"] is None
    lines = [line for line in data["content"].splitlines() if not line.startswith("#")]
    assert lines == [f"{r['destination']} {r['gateway']}" for r in plan["routes"]]
    assert {"name": "mysqlnet", "destination": "198.18.4.0/23", "gateway": "198.18.3.254"} in plan["routes"]


def test_the_routes_program_adds_each_route_of_its_data_and_runs_nothing_of_it(lab_model, tmp_path):
    """salt/host/files/lb-pair-routes.sh under sh, as ifupdown runs it, with
    a stand-in ip(8) recording its argv and the data file lb_render writes
    (plus a hostile line: each word must reach ip as one argument)."""
    import shlex

    from tests.support import REPO

    plan = lb_host.plan(lab_model, "lb-a", "Debian")
    data = tmp_path / "lb-pair-routes"
    data.write_text(plan["files"]["/etc/default/lb-pair-routes"]["content"] + "\n$(touch${IFS}pwned) ;date\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "ip.log"
    (bin_dir / "ip").write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s|" "$a"; done >> {shlex.quote(str(log))}\necho >> {log}\nexit 1\n')
    (bin_dir / "ip").chmod(0o755)
    with open(os.path.join(REPO, "salt", "host", "files", "lb-pair-routes.sh")) as fh:
        program = fh.read().replace("routes=/etc/default/lb-pair-routes", f"routes={shlex.quote(str(data))}")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "IFACE": "lb-a-eth2", "MODE": "start", "PHASE": "post-up"}
    res = subprocess.run(["sh", "-c", program], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr  # ip failing (a gateway not up yet) is quiet
    calls = log.read_text().splitlines()
    want = [f"-4|route|replace|{r['destination']}|via|{r['gateway']}|" for r in plan["routes"]]
    assert calls == want + ["-4|route|replace|$(touch${IFS}pwned)|via|;date|"]
    assert not (tmp_path / "pwned").exists()
    # no data file: nothing to do
    res = subprocess.run(["sh", "-c", program.replace(shlex.quote(str(data)), "/nonexistent")], env=env, capture_output=True, timeout=30)
    assert res.returncode == 0


def test_plan_freebsd_keeps_rc_conf_and_sysctl_conf_as_blocks(seed_model):
    plan = lb_host.plan(seed_model, "lb-a", "FreeBSD")
    assert set(plan["files"]) == {
        "/etc/rc.conf",
        "/etc/rc.conf.d/lb_carp_boothold",
        "/etc/rc.conf.d/lb_haproxy",
        "/etc/rc.conf.d/routing",
        "/etc/sysctl.conf",
        "/usr/local/etc/rc.d/lb_carp_boothold",
        "/usr/local/etc/rc.d/lb_haproxy",
    }
    # the rc.d scripts are files of the state tree; their settings are rendered
    assert plan["files"]["/usr/local/etc/rc.d/lb_haproxy"]["source"] == "salt://host/files/lb_haproxy.rc"
    assert 'lb_haproxy_config="/usr/local/etc/haproxy.conf"' in plan["files"]["/etc/rc.conf.d/lb_haproxy"]["content"]
    assert plan["files"]["/etc/rc.conf"]["block"] == "append"
    assert plan["files"]["/etc/sysctl.conf"]["block"] == "append"
    assert plan["files"]["/etc/rc.conf.d/routing"]["block"] is None
    assert all(f["group"] == "wheel" for f in plan["files"].values())
    assert plan["sysctl_file"] == "/etc/sysctl.conf"
    assert plan["sysctl"]["net.inet.ip.forwarding"] == "1"


def test_no_routes_no_routes_file(seed_raw):
    import lb_topology

    seed_raw["pairs"]["edge"]["routes"] = {}
    model = lb_topology.load(seed_raw)
    assert "/etc/network/if-up.d/lb-pair-routes" not in lb_render.render_node(model, "lb-a", "Debian")
    assert lb_host.plan(model, "lb-a", "Debian")["routes"] == []


def test_bird_conf_is_group_bird_and_freebsd_files_group_wheel(seed_model):
    deb = lb_render.manifest(seed_model, "lb-a", "Debian")
    assert (deb["/etc/bird/bird.conf"]["user"], deb["/etc/bird/bird.conf"]["group"]) == ("root", "bird")
    assert deb["/etc/haproxy/haproxy.cfg"]["group"] == "root"
    bsd = lb_render.manifest(seed_model, "lb-a", "FreeBSD")
    assert {f["group"] for f in bsd.values()} == {"wheel"}


def test_the_salt_ssh_wrapper_gives_the_same_plan_from_the_compiled_pillar(lab_raw, lab_model):
    """salt-ssh renders salt/host with _wrapper/lb.py's `lb.host` (the
    target has no pillar while the SLS renders)."""
    import importlib.util
    import os

    from tests.support import REPO

    spec = importlib.util.spec_from_file_location("lb_wrapper_under_test", os.path.join(REPO, "_wrapper", "lb.py"))
    wrapper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wrapper)
    wrapper.__pillar__ = {"lb": lab_raw}
    wrapper.__opts__ = {"id": "lb-b"}
    wrapper.__grains__ = {"os_family": "Debian"}
    wrapper.__context__ = {}
    assert wrapper.host() == lb_host.plan(lab_model, "lb-b", "Debian")
