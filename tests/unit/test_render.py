"""Per-node rendering: real `haproxy -c` on every config, determinism,
the CARP -> VRRP mapping, providers, secrets."""

import contextlib
import copy
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import lb_grammar
import lb_parameters
import lb_render
import lb_render_haproxy
import lb_render_linux
import lb_topology
import lb_view
from tests.support import REPO, carp_program

NODES = ("lb-a", "lb-b")
OSES = ("FreeBSD", "Debian")


def haproxy_check(path):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    return subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("pillar", ["seed", "lab"])
@pytest.mark.parametrize("os_family", OSES)
@pytest.mark.parametrize("node", NODES)
def test_rendered_haproxy_config_passes_haproxy_check(request, tmp_path, pillar, os_family, node):
    model = request.getfixturevalue(f"{pillar}_model")
    files = lb_render.render_node(model, node, os_family)
    path = lb_parameters.of(os_family, "node")["haproxy_config"]
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(files[path].content)
    result = haproxy_check(cfg)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout
    # no warning either: a warning today is an error in a later HAProxy
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_haproxy_check_really_rejects_a_bad_config(tmp_path, seed_model):
    """The check above can fail: a broken keyword makes haproxy -c exit non-zero."""
    text = lb_render.render_node(seed_model, "lb-a", "Debian")["/etc/haproxy/haproxy.cfg"].content
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text.replace("balance leastconn", "balance leastconnz", 1))
    assert haproxy_check(cfg).returncode != 0


def test_rendering_is_deterministic(seed_raw):
    a = lb_render.preview(lb_topology.load(copy.deepcopy(seed_raw)), "lb-b", "Debian")
    b = lb_render.preview(lb_topology.load(copy.deepcopy(seed_raw)), "lb-b", "Debian")
    assert a == b


def test_every_file_at_its_real_path(seed_model):
    assert sorted(lb_render.render_node(seed_model, "lb-a", "FreeBSD")) == [
        "/boot/loader.conf",
        "/etc/rc.conf",
        "/etc/rc.conf.d/lb_carp_boothold",
        "/etc/rc.conf.d/lb_carp_maintenance",
        "/etc/rc.conf.d/lb_haproxy",
        "/etc/rc.conf.d/netif",
        "/etc/rc.conf.d/routing",
        "/etc/sysctl.conf",
        "/usr/local/etc/bgpd.conf",
        "/usr/local/etc/haproxy.conf",
        "/usr/local/etc/ospfd.conf",
        "/usr/local/etc/rc.d/lb_carp_boothold",
        "/usr/local/etc/rc.d/lb_carp_maintenance",
        "/usr/local/etc/rc.d/lb_haproxy",
        "/usr/local/sbin/lb-routing-vip",
        "/usr/local/sbin/lb-routing-vip.conf",
    ]
    assert sorted(lb_render.render_node(seed_model, "lb-a", "Debian")) == [
        "/etc/bird/bird.conf",
        "/etc/default/lb-pair-routes",
        "/etc/haproxy/haproxy.cfg",
        "/etc/keepalived/keepalived.conf",
        "/etc/network/if-up.d/lb-pair-routes",
        "/etc/sysctl.d/60-lb-pair.conf",
        "/etc/systemd/system/bird.service.d/lb-pair.conf",
        "/etc/systemd/system/haproxy.service.d/lb-pair.conf",
        "/etc/systemd/system/keepalived.service.d/lb-pair.conf",
        "/etc/systemd/system/multi-user.target.wants/bird.service",
        "/etc/systemd/system/multi-user.target.wants/haproxy.service",
        "/etc/systemd/system/multi-user.target.wants/keepalived.service",
        "/etc/tmpfiles.d/lb-haproxy.conf",
        # the programs, installed by salt/carp from salt/carp/files
        "/usr/local/sbin/lb-carp-keepalived-vips",
        "/usr/local/sbin/lb-haproxy-serving",
        "/usr/local/sbin/lb-routing-ready",
    ]
    programs = {p: f for p, f in lb_render.render_node(seed_model, "lb-a", "Debian").items() if f.source}
    assert {p: (f.source, f.mode, f.content) for p, f in programs.items()} == {
        "/etc/network/if-up.d/lb-pair-routes": ("salt://host/files/lb-pair-routes.sh", "0755", ""),
        "/usr/local/sbin/lb-carp-keepalived-vips": ("salt://carp/files/lb_carp_vips.py", "0755", ""),
        "/usr/local/sbin/lb-haproxy-serving": ("salt://carp/files/lb-haproxy-serving.sh", "0755", ""),
        "/usr/local/sbin/lb-routing-ready": ("salt://carp/files/lb-routing-ready.sh", "0755", ""),
    }
    assert {p: lb_render.writer(p, "Debian") for p in programs} == {p: "host" if "if-up.d" in p else "carp" for p in programs}


def _instances(text):
    out = {}
    for m in re.finditer(r"vrrp_instance VI_(\d+) \{(.*?)\n\}", text, re.S):
        body = m.group(2)
        vips = dict(w.split("=", 1) for w in re.search(r'vrrp_notify_fifo_script "\S+ \S+ ([^"]*)"', text).group(1).split())
        out[int(m.group(1))] = {
            "vip": tuple(reversed(vips[m.group(1)].split(",")[:2])),
            "peer": (vips[m.group(1)].split(",")[2:] or [None])[0],
            "vrid": int(re.search(r"virtual_router_id (\d+)", body).group(1)),
            "priority": int(re.search(r"priority (\d+)", body).group(1)),
            "state": re.search(r"state (\w+)", body).group(1),
            "advert": re.search(r"advert_int (\S+)", body).group(1),
            "marker": re.search(r"virtual_ipaddress \{\s*(.*?)\s*\}", body, re.S).group(1),
            "track": re.search(r"track_interface \{(.*?)\}", body, re.S).group(1).split(),
        }
    return out


def test_keepalived_maps_vhid_and_advskew(lab_model):
    a = _instances(lb_render.render_node(lab_model, "lb-a", "Debian")["/etc/keepalived/keepalived.conf"].content)
    b = _instances(lb_render.render_node(lab_model, "lb-b", "Debian")["/etc/keepalived/keepalived.conf"].content)
    assert sorted(a) == sorted(b) == [4, 5, 44, 55]
    for vhid in a:
        assert a[vhid]["vrid"] == b[vhid]["vrid"] == vhid
        assert a[vhid]["priority"] == 254 and b[vhid]["priority"] == 154  # 254 - advskew
        assert a[vhid]["state"] == b[vhid]["state"] == "BACKUP"
        assert a[vhid]["advert"] == b[vhid]["advert"] == "0.2"
    # a host address on Linux, whatever the pillar's prefix (lb_view.linux_vip)
    assert a[4]["vip"] == ("198.18.2.4/32", "lb-a-eth1")
    assert b[4]["vip"] == ("198.18.2.4/32", "lb-b-eth1")
    # the peer's address on the VIP's network: where a planned handover's
    # connections in flight go on to
    pair = lab_model["pairs"]["edge"]
    for node, view in (("lb-a", a), ("lb-b", b)):
        peer = pair["nodes"][lb_view.peer_of(pair, node)]
        for vhid, g in pair["carp"]["groups"].items():
            assert view[vhid]["peer"] == str(peer["interfaces"][g["interface"]]["address"])
    assert a[4]["peer"] != b[4]["peer"]
    # carp:second_chance false: no peer addresses, so the script makes no nft table
    pair["carp"]["second_chance"] = False  # (the fixture is this test's own)
    off = _instances(lb_render.render_node(lab_model, "lb-a", "Debian")["/etc/keepalived/keepalived.conf"].content)
    assert {v: off[v]["peer"] for v in off} == {v: None for v in off}
    assert {v: off[v]["vip"] for v in off} == {v: a[v]["vip"] for v in a}
    # keepalived adds only a marker on lo; the VIP is lb-carp-keepalived-vips'
    assert a[4]["marker"] == b[4]["marker"] == "127.77.4.1/32 dev lo scope host"
    assert {a[v]["marker"] for v in a} == {f"127.77.{v}.1/32 dev lo scope host" for v in a}
    # losing the user or systems link hands the VIPs over; mgmt does not.
    # The instance's own interface (lb-a-eth1) is tracked by keepalived
    # anyway; listing it makes `keepalived -t` warn and exit 5.
    assert a[4]["track"] == ["lb-a-eth2"]
    text = lb_render.render_node(lab_model, "lb-a", "Debian")["/etc/keepalived/keepalived.conf"].content
    assert "vrrp_version 3" in text and "nopreempt" not in text


def test_active_active_pair(seed_raw):
    seed_raw["pairs"]["edge"]["carp"]["groups"][44]["primary"] = "lb-b"
    seed_raw["pairs"]["edge"]["carp"]["groups"][55]["primary"] = "lb-b"
    model = lb_topology.load(seed_raw)
    for node, mine in (("lb-a", {4, 5}), ("lb-b", {44, 55})):
        netif = lb_render.render_node(model, node, "FreeBSD")["/etc/rc.conf.d/netif"].content
        skews = {int(v): int(s) for v, s in re.findall(r"vhid (\d+) advskew (\d+)", netif)}
        assert {v for v, s in skews.items() if s == 0} == mine
        assert {v for v, s in skews.items() if s == 100} == {4, 5, 44, 55} - mine


def test_ucarp_provider_keeps_the_password_in_a_0600_file(lab_raw):
    lab_raw["pairs"]["edge"]["carp"]["linux_provider"] = "ucarp"
    model = lb_topology.load(lab_raw)
    files = lb_render.render_node(model, "lb-b", "Debian")
    assert "/etc/keepalived/keepalived.conf" not in files
    conf = files["/etc/ucarp/vhid-44.conf"]
    assert "UCARP_ADVSKEW=100" in conf.content and "UCARP_ADDR=198.18.2.44" in conf.content
    assert "UCARP_SRCIP=198.18.2.242" in conf.content
    assert "passwd44" not in conf.content
    pw = files["/etc/ucarp/vhid-44.pass"]
    assert pw.content == "passwd44\n" and pw.mode == "0600" and pw.secret


def test_redaction_hides_every_secret(seed_model):
    secrets = ["passwd4", "passwd44"]
    for os_family in OSES:
        for node in NODES:
            for path, content in lb_render.preview(seed_model, node, os_family, redact=True).items():
                for s in secrets:
                    assert not re.search(rf"\b{s}\b", content), (path, s)
    netif = lb_render.preview(seed_model, "lb-a", "FreeBSD", redact=True)["/etc/rc.conf.d/netif"]
    assert "pass <redacted> 10.2.2." in netif


def test_non_default_advbase_is_rendered(seed_raw):
    seed_raw["pairs"]["edge"]["carp"]["groups"][5]["advbase"] = 3
    netif = lb_render.preview(lb_topology.load(seed_raw), "lb-a", "FreeBSD")["/etc/rc.conf.d/netif"]
    assert "inet vhid 5 advbase 3 advskew 0 pass passwd4 10.2.2.5/32" in netif


def test_httpchk_pool(seed_raw, tmp_path):
    pools = seed_raw["pairs"]["edge"]["haproxy"]["pools"]
    pools["galera_a"]["check"] = {"type": "httpchk", "port": 9200, "uri": "/"}
    pools["web_a"]["check"] = {"type": "httpchk", "uri": "/health", "method": "HEAD", "status": 204}
    text = lb_render.preview(lb_topology.load(seed_raw), "lb-a", "Debian")["/etc/haproxy/haproxy.cfg"]
    assert "option httpchk GET /\n" in text
    assert "option httpchk HEAD /health\n    http-check expect status 204" in text
    cfg = tmp_path / "h.cfg"
    cfg.write_text(text)
    assert haproxy_check(cfg).returncode == 0


def test_several_pairs_in_one_pillar(seed_raw):
    other = copy.deepcopy(seed_raw["pairs"]["edge"])
    other["nodes"] = {"lb-c": other["nodes"]["lb-a"], "lb-d": other["nodes"]["lb-b"]}
    shift = {"10.1.1.": "10.11.1.", "10.2.2.": "10.12.2.", "10.3.3.": "10.13.3."}

    def move(v):
        for a, b in shift.items():
            v = v.replace(a, b)
        return v

    for net in other["networks"].values():
        net["cidr"] = move(net["cidr"])
        if "gateway" in net:
            net["gateway"] = move(net["gateway"])
    other["networks"]["mysql"]["cidr"] = "10.14.4.0/23"
    other["networks"]["http"]["cidr"] = "10.16.6.0/24"
    for n in other["nodes"].values():
        for iface in n["interfaces"].values():
            iface["address"] = move(iface["address"])
    for g in other["carp"]["groups"].values():
        g["vip"] = move(g["vip"])
        g["primary"] = "lb-c"
    for r in other["routes"].values():
        r["gateway"] = move(r["gateway"])
    other["routing"]["bgp"]["neighbors"]["ebgp1"]["address"] = "10.12.2.1"
    seed_raw["pairs"]["core"] = other
    model = lb_topology.load(seed_raw)
    assert "bind 10.12.2.4:3306" in lb_render.preview(model, "lb-c", "Debian")["/etc/haproxy/haproxy.cfg"]
    assert "bind 10.2.2.4:3306" in lb_render.preview(model, "lb-a", "Debian")["/etc/haproxy/haproxy.cfg"]


def test_unknown_node_and_os(seed_model):
    with pytest.raises(KeyError, match="lb-x.*known nodes: lb-a, lb-b"):
        lb_render.render_node(seed_model, "lb-x", "Debian")
    with pytest.raises(ValueError, match="os_family 'Windows' is not supported"):
        lb_render.render_node(seed_model, "lb-a", "Windows")


def test_roles_come_from_the_topology(lab_model):
    assert lb_topology.roles(lab_model, "lb-a", ["198.18.1.241"]) == {"lb": ["edge"], "galera": [], "routing": ["edge"]}
    assert lb_topology.roles(lab_model, "db-1", ["127.0.0.1", "198.18.4.2", "198.18.1.11"]) == {"lb": [], "galera": ["edge"], "routing": []}
    assert lb_topology.roles(lab_model, "web-1", ["198.18.6.1"]) == {"lb": [], "galera": [], "routing": []}


def test_keepalived_holds_preemption_until_bgp_is_up(lab_model, lab_raw):
    # the lab pillar has BGP: each instance tracks lb-routing-ready, with one
    # weight on both nodes: larger than the 100 between lb-a (254) and lb-b
    # (154), so lb-a without BGP is below lb-b (153 < 154), and with both
    # without BGP the order stays (153 > 53)
    for node in ("lb-a", "lb-b"):
        text = lb_render.render_node(lab_model, node, "Debian")["/etc/keepalived/keepalived.conf"].content
        script = re.search(r"vrrp_script lb_serving \{(.*?)\n\}", text, re.S).group(1)
        assert 'script "/usr/local/sbin/lb-haproxy-serving /run/haproxy.pid /usr/local/sbin/lb-routing-ready"' in script
        assert "weight -101" in script and "fall 2" in script
        assert text.count("track_script {\n        lb_serving\n    }") == 4
    pair = lab_model["pairs"]["edge"]
    assert lb_render_linux.routing_hold_weight(pair, "lb-a") == lb_render_linux.routing_hold_weight(pair, "lb-b") == 101
    ready = carp_program(lb_render_linux.ROUTING_READY_SCRIPT)
    assert "birdc -s /run/bird/bird.ctl show protocols" in ready and "Established" in ready
    assert lb_render_linux.ROUTING_READY_SCRIPT in lb_render_linux.carp_programs(pair, "lb-a", "keepalived")
    # without BGP: no script, no tracking
    del lab_raw["pairs"]["edge"]["routing"]["bgp"]
    model = lb_topology.load(lab_raw)
    text = lb_render.render_node(model, "lb-a", "Debian")["/etc/keepalived/keepalived.conf"].content
    assert "lb-routing-ready" not in text
    assert text.count("track_script {\n        lb_serving\n    }") == 4
    assert lb_render_linux.routing_hold_weight(model["pairs"]["edge"], "lb-a") is None
    assert lb_render_linux.ROUTING_READY_SCRIPT not in lb_render_linux.carp_programs(model["pairs"]["edge"], "lb-a", "keepalived")


def test_keepalived_gives_up_the_vips_while_haproxy_does_not_run(lab_model):
    """Every instance tracks lb_serving (HAProxy, then BGP) with one hold weight (lb-a
    without HAProxy: 254 - 101 = 153 < lb-b's 154), checked every second."""
    for node in ("lb-a", "lb-b"):
        text = lb_render.render_node(lab_model, node, "Debian")["/etc/keepalived/keepalived.conf"].content
        script = re.search(r"vrrp_script lb_serving \{(.*?)\n\}", text, re.S).group(1)
        assert 'script "/usr/local/sbin/lb-haproxy-serving /run/haproxy.pid' in script
        assert "weight -101" in script and "interval 1" in script
    pair = lab_model["pairs"]["edge"]
    assert lb_render_linux.hold_weight(pair, "lb-a") == lb_render_linux.hold_weight(pair, "lb-b") == 101
    with pytest.raises(lb_grammar.GrammarError, match="lb_settings:haproxy:pidfile"):
        lb_render_linux.render_keepalived(pair, "lb-a", haproxy_pidfile="/run/h a.pid")


def _fake_haproxy(tmp_path, name="haproxy"):
    """A process whose comm is `name` (a copy of sleep), started by pid."""
    binary = tmp_path / name
    shutil.copy("/bin/sleep", binary)
    return subprocess.Popen([str(binary), "30"], start_new_session=True)


def _children_comms(pid):
    try:
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
        return [open(f"/proc/{k}/comm").read().strip() for k in kids]
    except OSError:
        return None


def test_the_haproxy_serving_script_reads_the_pid_file_and_the_master_s_workers(tmp_path):
    script = tmp_path / "lb-haproxy-serving"
    script.write_text(carp_program(lb_render_linux.HAPROXY_SERVING_SCRIPT))
    script.chmod(0o755)
    pidfile = tmp_path / "haproxy.pid"

    def serving():
        return subprocess.run([str(script), str(pidfile)], timeout=10).returncode == 0

    assert not serving()  # no pid file
    pidfile.write_text("12ab\n")
    assert not serving()  # not a pid
    other = _fake_haproxy(tmp_path, "notproxy")
    # a shell named haproxy as the master, with or without a haproxy child
    master = tmp_path / "haproxy"
    shutil.copy("/bin/sh", master)
    procs = [other]
    try:
        pidfile.write_text(f"{other.pid}\n")
        assert not serving()  # another program's pid
        lone = subprocess.Popen([str(master), "-c", "sleep 30; :"], start_new_session=True)
        procs.append(lone)
        pidfile.write_text(f"{lone.pid}\n")
        # until the shell's child has exec'ed sleep, it is a copy named haproxy
        deadline = time.monotonic() + 5
        while _children_comms(lone.pid) != ["sleep"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _children_comms(lone.pid) == ["sleep"]
        assert not serving()  # the master, its only child not HAProxy
        child_bin = tmp_path / "w" / "haproxy"
        child_bin.parent.mkdir()
        shutil.copy("/bin/sleep", child_bin)
        with_worker = subprocess.Popen([str(master), "-c", f"{child_bin} 30; :"], start_new_session=True)
        procs.append(with_worker)
        deadline = time.monotonic() + 5
        pidfile.write_text(f"{with_worker.pid}\n")
        while not serving() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert serving()  # master and a worker named haproxy
        # the next check runs only then, and decides
        assert subprocess.run([str(script), str(pidfile), "/bin/false"], timeout=10).returncode == 1
        assert subprocess.run([str(script), str(pidfile), "/bin/true"], timeout=10).returncode == 0
    finally:
        # each in a session of its own: the shell's child goes with it
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert not serving()  # the master is gone


@pytest.mark.parametrize(
    ("protocols", "ready"),
    [
        # `birdc show protocols` (BIRD 2.0.12): one session up is enough
        (
            "ebgp1      BGP        ---        up     04:05:48.123  Established   \nebgp2      BGP        ---        start  04:05:48.123  Active\n",
            True,
        ),
        (
            "ebgp1      BGP        ---        start  04:05:48.123  Connect       \nlb_vips    Direct     ---        up     04:05:41.001\n",
            False,
        ),
        ("lb_ospf    OSPF       master4    up     04:05:41.001  Running\n", False),
    ],
)
def test_routing_ready_script_reads_birds_sessions(tmp_path, protocols, ready):
    fake = tmp_path / "birdc"
    fake.write_text(
        "#!/bin/sh\ncat <<'OUT'\nBIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\n" + protocols + "OUT\n"
    )
    fake.chmod(0o755)
    script = tmp_path / "lb-routing-ready"
    script.write_text(carp_program(lb_render_linux.ROUTING_READY_SCRIPT).replace("/usr/sbin/birdc", str(fake)))
    script.chmod(0o755)
    assert subprocess.run([str(script)], timeout=10).returncode == (0 if ready else 1)
    # BIRD not answering: not ready
    fake.write_text("#!/bin/sh\necho 'Unable to connect to server control socket' >&2\nexit 1\n")
    assert subprocess.run([str(script)], timeout=10, capture_output=True).returncode == 1


def test_freebsd_rc_conf_starts_haproxy_under_daemon_and_loads_tcpmd5(seed_raw, tmp_path):
    files = lb_render.render_node(lb_topology.load(copy.deepcopy(seed_raw)), "lb-a", "FreeBSD")
    rc = files["/etc/rc.conf"].content
    # the product's rc.d/lb_haproxy, not the port's (which starts it once)
    assert 'haproxy_enable="NO"' in rc.splitlines() and 'lb_haproxy_enable="YES"' in rc.splitlines()
    # the seed routes by BGP and OSPF: both daemons at boot
    assert {'openbgpd_enable="YES"', 'openospfd_enable="YES"'} <= set(rc.splitlines())
    script = files["/usr/local/etc/rc.d/lb_haproxy"]
    assert script.mode == "0755" and lb_render.writer("/usr/local/etc/rc.d/lb_haproxy", "FreeBSD") == "host"
    assert script.source == "salt://host/files/lb_haproxy.rc" and script.content == ""
    assert lb_render.writer("/etc/rc.conf.d/lb_haproxy", "FreeBSD") == "host"
    text = open(os.path.join(REPO, "salt", "host", "files", "lb_haproxy.rc")).read()
    assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0
    assert "# PROVIDE: lb_haproxy" in text and "# KEYWORD: shutdown" in text
    assert 'command="/usr/sbin/daemon"' in text
    # what rc would evaluate: the settings (load_rc_config), then the script's assignments
    settings = files["/etc/rc.conf.d/lb_haproxy"].content
    assigns = "\n".join(line for line in text.splitlines() if line.startswith(("pidfile=", "command_args=")))
    shown = subprocess.run(
        ["sh", "-c", settings + assigns + '\nprintf "%s\\n%s\\n" "$pidfile" "$command_args"'], capture_output=True, text=True, timeout=10
    ).stdout.splitlines()
    assert shown[0] == "/var/run/lb_haproxy.pid"
    args = shown[1].split()
    # daemon(8): -r restarts it, -P its own pid file (rc's pidfile), then HAProxy in the foreground
    assert args[:6] == ["-r", "-S", "-T", "haproxy", "-P", "/var/run/lb_haproxy.pid"]
    haproxy = args[6:]
    assert haproxy[0] == "/usr/local/sbin/haproxy" and "-D" not in haproxy and {"-W", "-db"} <= set(haproxy)
    assert haproxy[haproxy.index("-f") + 1] == "/usr/local/etc/haproxy.conf"
    assert haproxy[haproxy.index("-S") + 1] == "/var/run/haproxy-master.sock,mode,600"
    # HAProxy writes the master's pid where haproxy_cfg reloads it
    assert "    pidfile /var/run/haproxy.pid\n" in files["/usr/local/etc/haproxy.conf"].content
    assert 'lb_haproxy_master_pidfile="/var/run/haproxy.pid"' in settings.splitlines()
    assert f'lb_haproxy_server_state_env="{lb_render_haproxy.SERVER_STATE_ENV}"' in settings.splitlines()
    assert 'lb_haproxy_server_state="/var/run/haproxy-server-state"' in settings.splitlines()
    assert 'export "${lb_haproxy_server_state_env}=${lb_haproxy_server_state}"' in text
    # the seed's neighbors have md5sig keys: tcpmd5.ko at boot
    assert 'kld_list="tcpmd5"' in rc.splitlines()
    for nb in seed_raw["pairs"]["edge"]["routing"]["bgp"]["neighbors"].values():
        nb.pop("md5sig_password", None)
    rc = lb_render.render_node(lb_topology.load(seed_raw), "lb-a", "FreeBSD")["/etc/rc.conf"].content
    assert "kld_list" not in rc


def test_freebsd_haproxy_has_no_chroot_debian_keeps_it(seed_model):
    # FreeBSD: the workers log to /var/run/log, which a chroot would hide
    fb = lb_render.render_node(seed_model, "lb-a", "FreeBSD")["/usr/local/etc/haproxy.conf"].content
    assert "chroot" not in fb and "log /var/run/log local0" in fb
    deb = lb_render.render_node(seed_model, "lb-a", "Debian")["/etc/haproxy/haproxy.cfg"].content
    assert "    chroot /var/lib/haproxy\n" in deb


@pytest.mark.parametrize("pillar", ["seed", "lab"])
def test_a_preview_without_secrets_holds_none_of_the_pillars_secrets(request, pillar):
    """Every value lb_secrets lists (CARP passwords, the stats users' hashes,
    the probe's password, md5sig keys) is absent from every file of every
    node's preview for both OS families; the same preview with secrets has
    the hashes (so the check looks where they would be)."""
    import lb_secrets

    raw = request.getfixturevalue(f"{pillar}_raw")
    model = lb_topology.load(copy.deepcopy(raw))
    secrets = lb_secrets.values(raw)
    hashes = [h for h in secrets if h.startswith("$6$")]
    assert len(hashes) == 2 and any("passwd" in s for s in secrets)
    for os_family in OSES:
        for node in NODES:
            redacted = lb_render.preview(model, node, os_family, redact=True)
            for path, content in redacted.items():
                for s in secrets:
                    assert not re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", content), (path, s)
            cfg = redacted[lb_parameters.of(os_family, "node")["haproxy_config"]]
            assert "user admin password <redacted>" in cfg
            full = lb_render.preview(model, node, os_family)[lb_parameters.of(os_family, "node")["haproxy_config"]]
            assert all(h in full for h in hashes)


def test_freebsd_lb_haproxy_prestart_checks_the_config_and_exports_the_server_state(seed_raw, tmp_path):
    """rc.d/lb_haproxy's start_precmd under dash, its settings sourced as
    load_rc_config would, with a stand-in haproxy that records its argv and
    the server-state variable it was started with."""
    files = lb_render.render_node(lb_topology.load(copy.deepcopy(seed_raw)), "lb-a", "FreeBSD")
    text = open(os.path.join(REPO, "salt", "host", "files", "lb_haproxy.rc")).read()
    fake, log, state = tmp_path / "haproxy", tmp_path / "log", tmp_path / "server-state"
    fake.write_text(f'#!/bin/sh\necho "$* ${{{lb_render_haproxy.SERVER_STATE_ENV}:-unset}}" >> {log}\nexit ${{FAKE_RC:-0}}\n')
    fake.chmod(0o755)
    settings = files["/etc/rc.conf.d/lb_haproxy"].content
    settings = settings.replace("/usr/local/sbin/haproxy", str(fake)).replace("/var/run/haproxy-server-state", str(state))
    body = "\n".join(line for line in text.splitlines() if not line.startswith((". /etc/rc.subr", "run_rc_command", "load_rc_config")))
    script = settings + body + f'\nlb_haproxy_prestart && "{fake}" started\n'
    assert subprocess.run(["dash", "-c", script], timeout=10).returncode == 0
    assert log.read_text().splitlines() == [
        "-c -q -f /usr/local/etc/haproxy.conf unset",  # checked before it starts
        f"started {state}",  # what daemon(8) starts next inherits the server states' path
    ]
    assert state.read_text() == "1\n"  # no saved states yet: HAProxy's "version 1" empty file
    # a config HAProxy refuses: no start
    log.unlink()
    res = subprocess.run(["dash", "-c", script], env={"FAKE_RC": "1", "PATH": "/usr/bin:/bin"}, timeout=10)
    assert res.returncode != 0 and log.read_text().splitlines() == ["-c -q -f /usr/local/etc/haproxy.conf unset"]


@pytest.mark.parametrize("os_family", ["Debian", "FreeBSD"])
def test_every_program_a_node_gets_is_a_file_of_the_state_tree(seed_model, lab_model, os_family):
    """Whatever `source` the preview names (the carp, host and routing
    programs), salt:// resolves it to a file of this repository's state tree
    that parses as its #! line says."""
    sources = {
        f.source
        for model in (seed_model, lab_model)
        for node in ("lb-a", "lb-b")
        for f in lb_render.render_node(model, node, os_family).values()
        if f.source
    }
    assert sources
    for source in sources:
        assert source.startswith("salt://"), source
        path = os.path.join(REPO, "salt", source[len("salt://") :])
        with open(path) as fh:
            text = fh.read()
        if text.startswith("#!/usr/bin/python3\n"):
            compile(text, path, "exec")
        else:
            assert text.startswith("#!/bin/sh\n"), path
            assert subprocess.run(["sh", "-n", path], timeout=10).returncode == 0, path


def test_the_minions_provider_decides_the_carp_files_and_the_units_at_boot(lab_model):
    """A node whose minion chose ucarp (`lb_carp: {provider: ucarp}`) in a
    keepalived pair: its preview, and so the carp and host SLS, give it
    ucarp's files and enable its lb-ucarp@ units at boot, not keepalived's
    (before, the boot files followed the pillar alone: after a reboot the
    node ran neither)."""
    links = "/etc/systemd/system/multi-user.target.wants/"
    plain = lb_render.render_node(lab_model, "lb-a", "Debian")
    assert lab_model["pairs"]["edge"]["carp"]["linux_provider"] == "keepalived"
    assert links + "keepalived.service" in plain
    forced = lb_render.render_node(lab_model, "lb-a", "Debian", carp={"provider": "ucarp"})
    assert links + "keepalived.service" not in forced
    assert "/etc/keepalived/keepalived.conf" not in forced
    vhids = sorted(g["vhid"] for g in lab_model["pairs"]["edge"]["carp"]["groups"].values())
    assert {p for p in forced if p.startswith(links + "lb-ucarp@")} == {f"{links}lb-ucarp@{v}.service" for v in vhids}
    assert all(f"/etc/ucarp/vhid-{v}.conf" in forced for v in vhids)
    assert "/usr/local/sbin/lb-ucarp-exec" in forced
    # and the host SLS's plan follows it
    import lb_host

    plan = lb_host.plan(lab_model, "lb-a", "Debian", carp={"provider": "ucarp"})
    assert links + "lb-ucarp@4.service" in plan["files"]
    assert links + "keepalived.service" not in plan["files"]
