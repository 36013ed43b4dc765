"""haproxy_cfg and haproxy_section through Salt's loader, against a REAL
HAProxy on loopback.

The lab pillar is moved onto a random 127.<r>.x.y range (Linux routes all
of 127/8 to lo, so VIPs and the mgmt address bind without namespaces), and
every path the module uses (config, stats socket, master socket, pidfile,
certs, server-state file) points into a temporary directory.  Python HTTP
servers on 127.<r>.6.1-4 are the pools' backends; each answers with its
own name, so a test sees which server served it.  Everything started here
is stopped by its pid at the end.
"""

import http.client
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from base64 import b64encode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
import yaml

import haproxy_config
from tests.support import LAB_PILLAR, REPO

pytestmark = pytest.mark.skipif(not shutil.which("haproxy") and not os.path.exists("/usr/sbin/haproxy"), reason="haproxy is not installed")

R = random.Random().randint(100, 250)  # 127.R.x.y: this run's addresses
USERS = {"admin": "admin-pw", "lbuser": "lbuser-pw"}
HTTP_VIP = f"127.{R}.2.5"
HTTP_LISTENER = f"haproxy_127.{R}.2.5_80"
MGMT = f"127.{R}.1.241"
WEB_A = {"http_srv-1": f"127.{R}.6.1", "http_srv-2": f"127.{R}.6.2"}
RR_VIP = f"127.{R}.2.55"
RR_LISTENER = f"haproxy_127.{R}.2.55_80"


def crypt_hash(password):
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", "funcsalt0123", password], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def base_topology():
    """The lab pillar's `lb` value, moved to 127.R/127.R+1, with known
    stats passwords."""
    text = open(LAB_PILLAR, encoding="utf-8").read()
    text = text.replace("198.18.", f"127.{R}.").replace("198.19.", f"127.{R + 1}.")
    raw = yaml.safe_load(text)["lb"]
    users = raw["pairs"]["edge"]["haproxy"]["userlists"]["stats-auth"]["users"]
    for name, pw in USERS.items():
        users[name]["password_hash"] = crypt_hash(pw)
    # the second HTTP pool balances by weight (source hashing is static:
    # HAProxy accepts only 0% and 100% there)
    raw["pairs"]["edge"]["haproxy"]["listeners"]["http_55"]["balance"] = "roundrobin"
    return raw


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802
        body = self.server.label.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def backends():
    # 127.R.6.1-4 and .9: the servers the topology names, and http_srv-9,
    # which the tests add: a server added while it does not answer yet is
    # taken as UP by the new process until its checks fail (HAProxy 2.6 has
    # no init-state), and a request sent to it then may get a 503 (see
    # docs/haproxy.md); what these tests measure is the reload, not that
    servers = []
    for i in (1, 2, 3, 4, 9):
        srv = ThreadingHTTPServer((f"127.{R}.6.{i}", 80), Backend)
        srv.daemon_threads = True
        srv.label = f"http_srv-{i}"
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    yield servers
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def env(tmp_path_factory, backends):
    import salt.config
    from saltfactories.utils.functional import Loaders

    root = tmp_path_factory.mktemp("hx")
    settings = {
        "config": str(root / "haproxy.cfg"),
        "socket": str(root / "admin.sock"),
        "master_socket": str(root / "master.sock"),
        "pidfile": str(root / "haproxy.pid"),
        "certs_dir": str(root / "certs"),
        "state_file": str(root / "server-state"),
        "chroot": "/var/lib/haproxy",
        "timeout": 10,
    }
    state = root / "salt"
    conf = {
        "id": "lb-a",
        "file_client": "local",
        "root_dir": str(state),
        "cachedir": str(state / "cache"),
        "pki_dir": str(state / "pki"),
        "sock_dir": str(state / "sock"),
        "log_file": str(state / "log"),
        "file_roots": {"base": [os.path.join(REPO, "salt")]},
        "pillar_roots": {"base": [os.path.join(REPO, "pillar", "seed")]},
        "module_dirs": [os.path.join(REPO, "_modules")],
        "states_dirs": [os.path.join(REPO, "_states")],
        "utils_dirs": [os.path.join(REPO, "_utils")],
        "lb_settings": {"haproxy": settings},
    }
    (root / "minion").write_text(yaml.safe_dump(conf))
    opts = salt.config.minion_config(str(root / "minion"))
    # start from Debian's packaged config, as on a fresh node
    shutil.copy(os.path.join(REPO, "tests", "fixtures", "haproxy", "debian-default.cfg"), settings["config"])
    e = Env(Loaders(opts), settings, root)
    yield e
    e.stop_everything()


class Env:
    def __init__(self, loaders, settings, root):
        self.loaders = loaders
        self.settings = settings
        self.root = root
        self.n = 0
        self.pids = set()

    @property
    def mod(self):
        return self.loaders.modules.haproxy_cfg

    @property
    def states(self):
        return self.loaders.states.haproxy_section

    def topology(self, mutate=None):
        raw = base_topology()
        if mutate:
            mutate(raw["pairs"]["edge"])
        self.n += 1
        path = self.root / f"topology-{self.n}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return str(path)

    def managed(self, mutate=None, test=False, **kw):
        kw.setdefault("unmanaged", "remove")
        res = self.states.managed(name=self.settings["config"], topology=self.topology(mutate), test=test, **kw)
        self.remember()
        return res

    def remember(self):
        st = self.mod.status()
        if st["running"]:
            self.pids.update([st["master"], *st["workers"]])

    def config(self):
        with open(self.settings["config"], encoding="utf-8") as fh:
            return fh.read()

    def stop_everything(self):
        try:
            self.mod.stop()
        except Exception:  # noqa: BLE001 - teardown must go on
            pass
        for pid in self.pids:
            try:
                p = psutil.Process(pid)
                if p.name() == "haproxy":
                    p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass


def get(host, port=80, path="/", timeout=5, source=None):
    """(status, body) of one HTTP request on a new connection (from the
    address `source` when given)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def wait_for(predicate, timeout=10.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def servers_up(env, backend, names):
    def check():
        state = {s["server"]: s["status"] for s in env.mod.list_servers(backend)}
        return all(state.get(n) == "UP" for n in names)

    return wait_for(check, 15)


class Load:
    """A bounded client loop in a thread: `count` requests, one connection
    each, every failure recorded."""

    def __init__(self, host, port=80, count=200, pause=0.005, context=None):
        self.host, self.port, self.count, self.pause, self.context = host, port, count, pause, context
        self.ok = 0
        self.failures = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        for _ in range(self.count):
            try:
                if self.context:
                    conn = http.client.HTTPSConnection(self.host, self.port, timeout=5, context=self.context)
                else:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                conn.request("GET", "/", headers={"Connection": "close"})
                r = conn.getresponse()
                r.read()
                conn.close()
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {r.status}")
            except OSError as exc:
                self.failures.append(repr(exc))
            time.sleep(self.pause)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(60)
        assert not self.thread.is_alive(), "the client loop did not finish"


def add_server(name, address):
    def mutate(pair):
        pair["haproxy"]["pools"]["web_a"]["servers"][name] = {"address": address, "port": 80}

    return mutate


# ---------------------------------------------------------------------------
# the module's basics


def test_settings_come_from_the_minion_config(env):
    s = env.mod.settings()
    assert s["config"] == env.settings["config"] and s["socket"] == env.settings["socket"]
    assert s["os_family"] == "Debian"
    assert env.mod.features()["prometheus"] is True  # Debian 12's build has the exporter


def test_sections_of_the_packaged_config(env):
    got = env.mod.sections()
    assert [s["label"] for s in got] == ["global", "defaults"]
    assert "daemon" in got[0]["directives"]


def test_check_returns_haproxys_own_message(env):
    text = "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n"
    ok = env.mod.check(text=text + "listen x\n    bind 127.0.0.1:1\n")
    assert ok["valid"] is True
    # valid but without a listener HAProxy would not start: not valid here
    none = env.mod.check(text=text)
    assert none["valid"] is False and "will not start" in none["message"]
    bad = env.mod.check(text="listen x\n    bind 127.0.0.1:1\n    frobnicate on\n")
    assert bad["valid"] is False
    assert "unknown keyword 'frobnicate'" in bad["message"]
    assert "[NOTICE]" not in bad["message"]


# ---------------------------------------------------------------------------
# managed: first apply, second apply, test mode


def test_managed_writes_the_rendered_config_then_reports_no_changes(env):
    before = env.config()
    res = env.managed()
    assert res.result is True, res.comment
    sections = res.changes["sections"]
    assert sections["global"] == "changed" and sections["defaults"] == "changed"
    assert sections[f"listen {HTTP_LISTENER}"] == "added" and sections["frontend prometheus"] == "added"
    assert "user admin password <redacted>" in res.changes["diff"]
    assert "$6$" not in res.changes["diff"]  # no password hash in the changes
    text = env.config()
    assert text != before and text.startswith("# Managed by Salt")
    assert f"bind {MGMT}:9000" in text
    assert oct(os.stat(env.settings["config"]).st_mode & 0o777) == "0o640"
    assert not [f for f in os.listdir(env.root) if "salt-candidate" in f or "salt-check" in f]

    again = env.managed()
    assert again.result is True and again.changes == {}
    assert "is up to date" in again.comment


def test_running_starts_haproxy_in_master_worker_mode(env):
    assert env.mod.status()["running"] is False
    res = env.states.running(name="haproxy", test=True)
    assert res.result is None and env.mod.status()["running"] is False
    res = env.states.running(name="haproxy")
    assert res.result is True, res.comment
    env.remember()
    st = env.mod.status()
    assert st["running"] and st["master_worker"] and st["workers"]
    assert env.states.running(name="haproxy").changes == {}
    assert servers_up(env, HTTP_LISTENER, WEB_A)
    assert get(HTTP_VIP)[0] == 200
    assert "master" in env.mod.master_command("show proc")


def test_test_mode_reports_the_change_and_touches_nothing(env):
    before, mtime = env.config(), os.stat(env.settings["config"]).st_mtime_ns
    st = env.mod.status()
    res = env.managed(add_server("http_srv-9", f"127.{R}.6.9"), test=True)
    assert res.result is None, res.comment
    assert res.changes["sections"] == {f"listen {HTTP_LISTENER}": "changed"}
    assert f"+    server http_srv-9 127.{R}.6.9:80 check" in res.changes["diff"]
    assert "would be updated" in res.comment
    assert env.config() == before and os.stat(env.settings["config"]).st_mtime_ns == mtime
    after = env.mod.status()
    assert (after["master"], after["workers"]) == (st["master"], st["workers"])  # not reloaded
    assert [s["server"] for s in env.mod.server_state(HTTP_LISTENER)] == list(WEB_A)


def test_test_mode_reports_a_candidate_haproxy_would_refuse(env):
    def broken(pair):
        pair["haproxy"]["listeners"]["http_5"]["options"] = ["frobnicate"]

    before = env.config()
    res = env.managed(broken, test=True)
    assert res.result is False
    assert "unknown option 'frobnicate'" in res.comment
    assert env.config() == before


def test_a_pillar_edit_changes_one_section_and_reloads(env):
    before = env.config()
    old = env.mod.status()
    res = env.managed(add_server("http_srv-9", f"127.{R}.6.9"))
    assert res.result is True, res.comment
    assert res.changes["sections"] == {f"listen {HTTP_LISTENER}": "changed"}
    assert res.changes["reload"]["master"] == old["master"]
    new = env.mod.status()
    assert new["master"] == old["master"] and set(new["workers"]).isdisjoint(old["workers"])
    # only that listener's lines changed in the file
    cfg = haproxy_config.parse(before)
    span_start = len(cfg.preamble) + sum(len(s.lines()) for s in cfg.sections[: cfg.index("listen", HTTP_LISTENER)])
    span = range(span_start, span_start + len(cfg.find("listen", HTTP_LISTENER).lines()))
    # ... and the generation marker in global (a hash of the rest)
    assert haproxy_config.file_generation(env.config()) not in (None, haproxy_config.file_generation(before))
    a, b = haproxy_config.unstamp(before).splitlines(), haproxy_config.unstamp(env.config()).splitlines()
    import difflib

    for op, i1, i2, _, _ in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            assert all(i in span for i in range(i1, max(i2, i1 + 1))), (op, i1, i2)
    assert "http_srv-9" in [s["server"] for s in env.mod.server_state(HTTP_LISTENER)]
    # back to the base pillar
    assert env.managed().result is True


def test_a_candidate_haproxy_refuses_fails_the_state_and_leaves_haproxy_serving(env):
    def broken(pair):
        # legal for the pillar's schema, unknown to HAProxy
        pair["haproxy"]["listeners"]["http_5"]["options"] = ["frobnicate"]

    before, mtime = env.config(), os.stat(env.settings["config"]).st_mtime_ns
    st = env.mod.status()
    with Load(HTTP_VIP, count=50) as load:
        res = env.managed(broken)
    assert res.result is False
    assert "haproxy -c refused the new configuration" in res.comment
    assert "unknown option 'frobnicate'" in res.comment
    assert env.settings["config"] in res.comment  # HAProxy's message names the live path
    assert res.changes == {}
    assert env.config() == before and os.stat(env.settings["config"]).st_mtime_ns == mtime
    assert not [f for f in os.listdir(env.root) if "salt-candidate" in f or "salt-check" in f]
    after = env.mod.status()
    assert (after["master"], after["workers"]) == (st["master"], st["workers"])
    assert load.failures == [] and load.ok == 50
    assert get(HTTP_VIP)[0] == 200


def test_a_reload_that_fails_after_the_swap_fails_the_state_and_the_next_run_reloads(env):
    """A real failure after the swap: the new listener's port is held by
    another process.  `haproxy -c` binds nothing and accepts the file; the
    re-executed master cannot bind and keeps the old workers.  The state
    fails WITH its changes (the file did change), HAProxy still reports the
    old generation, the next run sees that and reloads, and only once HAProxy
    runs the file is it "up to date"."""
    port = 8077
    listener = f"haproxy_{HTTP_VIP}_{port}"

    def extra_listener(pair):
        pair["haproxy"]["listeners"]["http_77"] = {"vhid": 5, "port": port, "mode": "http", "balance": "source", "pool": "web_a"}

    assert env.managed().result is True  # the base pillar, loaded
    assert env.mod.loaded()["current"] is True
    old_generation = env.mod.loaded()["loaded"]
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # no SO_REUSEPORT: HAProxy cannot share it
    holder.bind((HTTP_VIP, port))
    holder.listen(1)
    try:
        res = env.managed(extra_listener)
        assert res.result is False, res.comment
        assert res.changes["sections"] == {f"listen {listener}": "added"}  # the file did change
        assert "reload" not in res.changes
        assert "HAProxy still runs the old config" in res.comment
        assert f"bind {HTTP_VIP}:{port}" in env.config()
        gen = env.mod.loaded()
        assert gen["current"] is False and gen["loaded"] == old_generation != gen["file"]
        assert "runs an older config" in gen["reason"]
        assert get(HTTP_VIP)[0] == 200  # the old workers keep serving

        # test=True: a reload is pending, nothing is touched
        st = env.mod.status()
        res = env.managed(extra_listener, test=True)
        assert res.result is None and list(res.changes) == ["reload"], res
        assert "runs an older config" in res.changes["reload"]
        assert env.mod.status()["workers"] == st["workers"]

        # the port is still held: the next run tries and fails loudly
        res = env.managed(extra_listener)
        assert res.result is False and res.changes == {}, res
        assert "runs an older config" in res.comment and "the reload failed" in res.comment
    finally:
        holder.close()

    res = env.managed(extra_listener)
    assert res.result is True, res.comment
    assert list(res.changes) == ["reload"] and "runs an older config" in res.changes["reload"]["reason"]
    assert res.comment.endswith("; reloaded")
    assert env.mod.loaded()["current"] is True
    assert wait_for(lambda: get(HTTP_VIP, port)[0] == 200)
    again = env.managed(extra_listener)
    assert again.result is True and again.changes == {}
    assert "is up to date" in again.comment and "HAProxy runs it" in again.comment
    assert env.managed().result is True  # back to the base pillar


def test_a_config_haproxy_runs_but_the_marker_does_not_name_is_reloaded(env):
    """The file as wanted, HAProxy running an older one, whatever the cause
    (here: a reload that never happened because the file was put in place
    by hand): the state reloads it and reports it as a change."""
    assert env.managed().result is True
    text = env.config()
    mutated = env.topology(add_server("http_srv-9", f"127.{R}.6.9"))
    want = env.mod.render(topology=mutated, secrets=True)[env.settings["config"]]["content"]
    merged = haproxy_config.merge(haproxy_config.parse(haproxy_config.unstamp(text)), haproxy_config.parse(want), "remove")
    stamped = haproxy_config.stamp(merged.text)
    assert env.mod.write(stamped)["changed"] == [env.settings["config"]]  # swapped, not reloaded
    assert env.mod.loaded()["current"] is False
    res = env.states.managed(name=env.settings["config"], topology=mutated, unmanaged="remove")
    assert res.result is True and list(res.changes) == ["reload"], res
    assert "http_srv-9" in [s["server"] for s in env.mod.server_state(HTTP_LISTENER)]
    assert env.managed().result is True


# ---------------------------------------------------------------------------
# reload without loss


def test_reloads_under_load_lose_no_request(env):
    with Load(HTTP_VIP, count=200, pause=0.002) as load:
        for i in range(6):
            mutate = add_server("http_srv-9", f"127.{R}.6.9") if i % 2 == 0 else None
            res = env.managed(mutate)
            assert res.result is True, res.comment
            assert "reload" in res.changes
        for _ in range(4):
            r = env.mod.reload()
            assert r["reloaded"] and r["old_still_listening"] == []
    assert load.failures == [], load.failures[:5]
    assert load.ok == 200


# ---------------------------------------------------------------------------
# runtime operations


def served_by(host=HTTP_VIP):
    status, body = get(host)
    assert status == 200
    return body


def test_maint_drain_ready_change_what_a_client_sees(env):
    assert servers_up(env, HTTP_LISTENER, WEB_A)
    first = served_by()  # balance source: this client sticks to one server
    other = next(n for n in WEB_A if n != first)
    state = env.mod.maint(HTTP_LISTENER, first)
    assert "maint" in state["admin"]
    raw = env.mod.command(f"show servers state {HTTP_LISTENER}")
    line = next(x for x in raw.splitlines() if f" {first} " in x)
    assert int(line.split()[6]) & 0x01  # srv_admin_state: forced maintenance
    assert {served_by() for _ in range(5)} == {other}
    listed = {s["server"]: s for s in env.mod.list_servers(HTTP_LISTENER)}
    assert listed[first]["status"] == "MAINT"

    env.mod.ready(HTTP_LISTENER, first)
    assert servers_up(env, HTTP_LISTENER, [first])
    assert served_by() == first

    state = env.mod.drain(HTTP_LISTENER, first)
    assert state["admin"] == ["drain"]
    assert {s["server"]: s["status"] for s in env.mod.list_servers(HTTP_LISTENER)}[first] == "DRAIN"
    # drained: no new connection goes to it
    assert {served_by() for _ in range(5)} == {other}
    env.mod.ready(HTTP_LISTENER, first)
    assert env.mod.server_state(HTTP_LISTENER, first)[0]["admin"] == []


def test_list_servers_says_which_servers_are_backups(env):
    """A galera pool's one writer and its backups, in the config's order:
    what lb.status needs to mark the server taking the writes."""
    listed = env.mod.list_servers(f"haproxy_127.{R}.2.4_3306")
    # the check status in words, as `show stat` words it
    stat = env.mod.command("show stat").splitlines()
    header = stat[0][2:].split(",")
    words = {
        (r["pxname"], r["svname"]): r["check_status"].lstrip("* ")
        for r in (dict(zip(header, x.split(","), strict=False)) for x in stat[1:] if x)
    }
    every = env.mod.list_servers()
    assert every and all(s["check_status"] == words[(s["backend"], s["server"])] for s in every), [
        (s["server"], s["check_status"], words[(s["backend"], s["server"])]) for s in every
    ]
    assert {s["check_status"] for s in every} >= {"L4OK", "L4CON"}  # web servers up, the DBs not running here
    assert [(s["server"], s["backup"]) for s in listed] == [
        ("percona_mysql-1", False),
        ("percona_mysql-2", True),
        ("percona_mysql-3", True),
    ]


def test_set_weight_really_sets_the_weight(env):
    srv = "http_srv-4"
    assert servers_up(env, RR_LISTENER, ["http_srv-3", srv])
    assert {served_by(RR_VIP) for _ in range(6)} == {"http_srv-3", srv}  # roundrobin, weights 1:1
    before = env.mod.server_state(RR_LISTENER, srv)[0]
    assert before["weight"] == 1
    r = env.mod.set_weight(RR_LISTENER, srv, 37)
    assert r == {"backend": RR_LISTENER, "server": srv, "weight": 37, "initial_weight": 1}
    assert env.mod.server_state(RR_LISTENER, srv)[0]["weight"] == 37
    assert env.mod.command(f"get weight {RR_LISTENER}/{srv}").strip() == "37 (initial 1)"
    line = next(x for x in env.mod.command(f"show servers state {RR_LISTENER}").splitlines() if f" {srv} " in x)
    assert line.split()[7] == "37"  # srv_uweight
    # weight 0: a client never reaches it
    assert env.mod.set_weight(RR_LISTENER, srv, 0)["weight"] == 0
    assert {served_by(RR_VIP) for _ in range(6)} == {"http_srv-3"}
    assert env.mod.set_weight(RR_LISTENER, srv, "100%")["weight"] == 1
    assert {served_by(RR_VIP) for _ in range(6)} == {"http_srv-3", srv}


def test_runtime_ops_refuse_bad_names_and_unknown_servers(env):
    from salt.exceptions import CommandExecutionError

    with pytest.raises(CommandExecutionError, match="not a valid server name"):
        env.mod.drain(HTTP_LISTENER, "x; shutdown sessions")
    with pytest.raises(CommandExecutionError, match="HAProxy refused"):
        env.mod.maint(HTTP_LISTENER, "nope")
    with pytest.raises(CommandExecutionError, match="not a weight"):
        env.mod.set_weight(HTTP_LISTENER, "http_srv-1", 300)
    # HAProxy's own refusal comes through: source hashing has static weights
    with pytest.raises(CommandExecutionError, match="static LB algorithm"):
        env.mod.set_weight(HTTP_LISTENER, "http_srv-1", 5)


def test_runtime_states_survive_a_reload(env):
    env.mod.drain(HTTP_LISTENER, "http_srv-1")
    env.mod.maint(RR_LISTENER, "http_srv-3")
    env.mod.set_weight(RR_LISTENER, "http_srv-4", 5)
    r = env.mod.reload()
    assert r["reloaded"]
    assert env.mod.server_state(HTTP_LISTENER, "http_srv-1")[0]["admin"] == ["drain"]
    rr = {s["server"]: s for s in env.mod.server_state(RR_LISTENER)}
    assert rr["http_srv-3"]["admin"] == ["maint"] and rr["http_srv-4"]["weight"] == 5
    # and a pillar-driven reload keeps them too
    assert env.managed(add_server("http_srv-9", f"127.{R}.6.9")).result is True
    assert env.mod.server_state(HTTP_LISTENER, "http_srv-1")[0]["admin"] == ["drain"]
    assert env.mod.server_state(RR_LISTENER, "http_srv-3")[0]["admin"] == ["maint"]
    assert env.managed().result is True
    env.mod.ready(HTTP_LISTENER, "http_srv-1")
    env.mod.ready(RR_LISTENER, "http_srv-3")
    env.mod.set_weight(RR_LISTENER, "http_srv-4", 1)


# ---------------------------------------------------------------------------
# stats page and exporter on the mgmt address


def _stats(user=None, password=None, data=None):
    """(status, page, headers) of the stats page; a POST is not followed."""
    headers = {"Connection": "close"}
    if user:
        headers["Authorization"] = "Basic " + b64encode(f"{user}:{password}".encode()).decode()
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn = http.client.HTTPConnection(MGMT, 9000, timeout=5)
    try:
        conn.request("POST" if data is not None else "GET", "/haproxy_stats", body=data, headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace"), r.headers
    finally:
        conn.close()


def test_stats_page_admin_can_change_state_readonly_cannot_wrong_password_401(env):
    assert _stats()[0] == 401
    assert _stats("admin", "wrong")[0] == 401
    status, page, _ = _stats("lbuser", USERS["lbuser"])
    assert status == 200 and HTTP_LISTENER in page
    assert 'method="post"' not in page.lower()  # no admin form for the read-only group
    assert 'method="post"' in _stats("admin", USERS["admin"])[1].lower()
    be_id = next(x.split()[0] for x in env.mod.command("show servers state").splitlines() if f" {HTTP_LISTENER} " in x)
    form = f"s=http_srv-2&action=maint&b=%23{be_id}".encode()
    # the read-only user: the POST is served as a plain page, nothing changes
    status, _, headers = _stats("lbuser", USERS["lbuser"], form)
    assert (status, headers.get("Location", "").split(";")[-1]) == (303, "st=DENY"), (status, dict(headers))
    assert "maint" not in env.mod.server_state(HTTP_LISTENER, "http_srv-2")[0]["admin"]
    # the admin: done (HAProxy answers 303 to ...;st=DONE)
    status, _, headers = _stats("admin", USERS["admin"], form)
    assert status == 303 and "st=DONE" in headers.get("Location", ""), (status, dict(headers))
    assert "maint" in env.mod.server_state(HTTP_LISTENER, "http_srv-2")[0]["admin"]
    env.mod.ready(HTTP_LISTENER, "http_srv-2")


ARTIFACTS = os.path.join(REPO, "artifacts")


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="Debian's chromium is not installed")
def test_stats_page_in_headless_chromium(env):
    """The stats page as an operator's browser sees it, on the mgmt address:
    the admin puts a server into maintenance from the page, the read-only
    user gets no form and a forged POST is denied, a wrong password gets
    401.  Screenshots go to artifacts/ (not in git)."""
    from chromium_cdp import Browser

    url = f"http://{MGMT}:9000/haproxy_stats"
    be_id = next(x.split()[0] for x in env.mod.command("show servers state").splitlines() if f" {HTTP_LISTENER} " in x)
    browser = Browser()
    try:
        page = browser.page()
        page.basic_auth("admin", "not-the-password")
        assert page.goto(url)[0] == 401

        page.basic_auth("lbuser", USERS["lbuser"])
        status, _ = page.goto(url)
        assert status == 200
        assert page.js("document.querySelectorAll('select[name=action]').length") == 0
        assert page.js(f"document.body.innerText.includes('{HTTP_LISTENER}')")
        page.screenshot(os.path.join(ARTIFACTS, "haproxy-stats-readonly.png"))
        # what the admin's form would send, posted by the read-only user
        _, where = page.submit(
            "(() => { const f = document.createElement('form'); f.method = 'post';"
            f" for (const [k, v] of [['s', 'http_srv-2'], ['action', 'maint'], ['b', '#{be_id}']])"
            " { const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }"
            " document.body.appendChild(f); HTMLFormElement.prototype.submit.call(f); })()"
        )
        assert where.endswith(";st=DENY"), where
        assert "maint" not in env.mod.server_state(HTTP_LISTENER, "http_srv-2")[0]["admin"]

        page.basic_auth("admin", USERS["admin"])
        assert page.goto(url)[0] == 200
        assert page.js("document.querySelectorAll('select[name=action]').length") > 0
        # tick http_srv-2 in its backend's table, choose "Set state to MAINT", Apply
        _, where = page.submit(
            "(() => { const b = [...document.querySelectorAll('input[name=b]')]"
            f".find(i => i.value === '#{be_id}'); const f = b.form;"
            " f.querySelector('input[type=checkbox][value=\"http_srv-2\"]').checked = true;"
            " f.elements['action'].value = 'maint'; HTMLFormElement.prototype.submit.call(f); })()"
        )
        assert where.endswith(";st=DONE"), where
        assert env.mod.server_state(HTTP_LISTENER, "http_srv-2")[0]["admin"] == ["maint"]
        assert page.js("document.body.innerText.includes('Action processed successfully')")
        page.screenshot(os.path.join(ARTIFACTS, "haproxy-stats-admin-maint.png"))
        page.close()
    finally:
        browser.close()
        env.mod.ready(HTTP_LISTENER, "http_srv-2")


def test_prometheus_exporter_on_the_mgmt_address(env):
    """Bound to the mgmt address, open to the mgmt network only (the
    pillar's default: 127.R.1.0/24 here); any other source is cut off at
    connect."""
    status, body = get(MGMT, 8405, "/metrics", source=f"127.{R}.1.250")
    assert status == 200
    assert "haproxy_process_nbthread" in body or "haproxy_process_" in body
    assert f'proxy="{HTTP_LISTENER}"' in body
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        get(MGMT, 8405, "/metrics", source=f"127.{R}.2.250")
    with pytest.raises(ConnectionRefusedError):  # nothing on another address
        get(f"127.{R}.2.5", 8405, "/metrics", source=f"127.{R}.1.250")


# ---------------------------------------------------------------------------
# present / absent: one section


def test_present_and_absent_one_section(env):
    st = env.states
    res = st.present(name="be_extra", kind="backend", lines=["balance roundrobin", f"server x1 127.{R}.6.3:80 check"], test=True)
    assert res.result is None and res.changes["sections"] == {"backend be_extra": "added"}
    assert "be_extra" not in env.config()
    res = st.present(name="be_extra", kind="backend", lines=["balance roundrobin", f"server x1 127.{R}.6.3:80 check"])
    assert res.result is True, res.comment
    assert "backend be_extra" in env.config()
    assert any(s["backend"] == "be_extra" for s in env.mod.server_state())  # reloaded: HAProxy knows it
    again = st.present(name="be_extra", kind="backend", lines=["balance   roundrobin", f"server x1 127.{R}.6.3:80   check"])
    assert again.changes == {} and again.result is True
    # managed with unmanaged=keep leaves it alone, with remove takes it out
    keep = env.managed(unmanaged="keep")
    assert keep.result is True and keep.changes == {} and "1 kept" in keep.comment
    bad = st.present(name="be_extra", kind="backend", lines=["balance leastconnz"])
    assert bad.result is False and "balance only supports" in bad.comment
    res = st.absent(name="be_extra", kind="backend")
    assert res.result is True and res.changes["sections"] == {"backend be_extra": "removed"}
    assert "be_extra" not in env.config()
    assert st.absent(name="be_extra", kind="backend").changes == {}
    assert env.managed().changes == {}


# ---------------------------------------------------------------------------
# TLS


def make_cert(cn):
    sys_path = os.path.join(REPO, "tests", "unit")
    import sys

    if sys_path not in sys.path:
        sys.path.insert(0, sys_path)
    from test_haproxy_tls import make_cert as mk

    return mk(cn)


def test_https_with_the_pillars_certificate_and_a_certificate_change_without_failure(env):
    https_vip = f"127.{R}.2.4"
    cert1, key1 = make_cert("one.example.test")
    cert2, key2 = make_cert("two.example.test")

    def tls(cert, key):
        def mutate(pair):
            pair["haproxy"]["listeners"]["https_4"] = {
                "vhid": 4,
                "port": 443,
                "mode": "http",
                "balance": "roundrobin",
                "pool": "web_a",
                "tls": {"certificate": cert, "key": key, "redirect_http": True},
            }

        return mutate

    res = env.managed(tls(cert1, key1))
    assert res.result is True, res.comment
    pem = os.path.join(env.settings["certs_dir"], f"haproxy_{https_vip}_443.pem")
    assert res.changes["files"] == {pem: "new file"}
    assert "PRIVATE KEY" not in str(res.changes)
    assert oct(os.stat(pem).st_mode & 0o777) == "0o600"
    assert servers_up(env, f"haproxy_{https_vip}_443", WEB_A)

    def served_cert(cafile_pem):
        ctx = ssl.create_default_context(cadata=cafile_pem)
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection(https_vip, 443, timeout=5, context=ctx)
        conn.request("GET", "/")
        r = conn.getresponse()
        body = r.read().decode()
        der = conn.sock.getpeercert(binary_form=True)
        conn.close()
        return r.status, body, ssl.DER_cert_to_PEM_cert(der)

    status, body, served = served_cert(cert1)
    assert status == 200 and body.startswith("http_srv-")
    assert served.split() == cert1.split()
    # port 80 on that VIP redirects to https
    conn = http.client.HTTPConnection(https_vip, 80, timeout=5)
    conn.request("GET", "/x")
    r = conn.getresponse()
    assert r.status == 301 and r.getheader("Location") == f"https://{https_vip}/x"
    conn.close()
    expiry = env.mod.cert_expiry()
    assert expiry[pem]["subject"] == "CN=one.example.test" and 29 < expiry[pem]["days_left"] <= 30

    # a new certificate in the pillar: served after the apply, no failed request
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with Load(https_vip, 443, count=100, context=ctx) as load:
        time.sleep(0.1)
        res = env.managed(tls(cert2, key2))
    assert res.result is True, res.comment
    assert res.changes["files"] == {pem: "content"} and "sections" not in res.changes
    assert "reload" in res.changes
    assert load.failures == [] and load.ok == 100
    assert served_cert(cert2)[2].split() == cert2.split()
    assert env.mod.cert_expiry(pem)[pem]["subject"] == "CN=two.example.test"
    assert env.managed(tls(cert2, key2)).changes == {}

    # a key that is not the certificate's never reaches HAProxy: the pillar
    # check refuses it (haproxy -c would too)
    res = env.managed(tls(cert1, key2))
    assert res.result is False and "does not belong to the certificate" in res.comment
    assert served_cert(cert2)[2].split() == cert2.split()
    # back to the base pillar: the TLS listener goes, and its key with it
    res = env.managed()
    assert res.result is True, res.comment
    assert res.changes["files"] == {pem: "removed"} and res.changes["sections"] == {f"listen haproxy_{https_vip}_443": "removed"}
    assert not os.path.exists(pem)
    assert env.managed().changes == {}


# ---------------------------------------------------------------------------
# the SLS


def sls_pillar():
    # /etc/default is left alone here: the SLS's own switch turns that state
    # off (its rendering is checked below); the sysctls are the host SLS's
    return {"lb": base_topology(), "lb_settings": {"haproxy_sls": {"init_defaults": False}}}


def test_sls_renders_stable_state_ids_and_the_linux_extras(env):
    ids = env.loaders.modules.state.show_sls(
        "haproxy", pillar={"lb": base_topology(), "lb_settings": {"haproxy_sls": {"init_defaults": "/etc/default/haproxy"}}}
    )
    assert isinstance(ids, dict), ids
    assert sorted(ids) == [
        "lb_haproxy_config",
        "lb_haproxy_init_defaults",
        "lb_haproxy_package",
        "lb_haproxy_running",
    ]
    assert {"name": env.settings["config"]} in ids["lb_haproxy_config"]["haproxy_section"]
    assert {"unmanaged": "remove"} in ids["lb_haproxy_config"]["haproxy_section"]
    contents = next(x["contents"] for x in ids["lb_haproxy_init_defaults"]["file"] if isinstance(x, dict) and "contents" in x)
    assert f'EXTRAOPTS="-S {env.settings["master_socket"]},mode,600"' in contents
    off = env.loaders.modules.state.show_sls("haproxy", pillar=sls_pillar())
    assert sorted(off) == ["lb_haproxy_config", "lb_haproxy_package", "lb_haproxy_running"]
    default = env.loaders.modules.state.show_sls("haproxy", pillar={"lb": base_topology()})
    assert "lb_haproxy_init_defaults" not in default  # opt-in: a file outside /etc/haproxy
    # no command state: ip_nonlocal_bind is a persistent sysctl of the host SLS
    assert not [sid for sid, decl in default.items() if "cmd" in decl]


def test_sls_refuses_haproxy_settings_that_would_inject(env):
    """A value of `lb_settings:haproxy_sls` goes into this SLS's YAML and into a file sh
    reads: one that could carry more (a newline, a space) is refused with
    its settings path before any state is compiled (lb_settings)."""
    for key, value in (
        ("init_defaults", "/etc/default/haproxy\n    - mode: '0777'"),
        ("pkg", "haproxy\r"),
        ("init_defaults", "/etc/x y.conf"),
        ("bogus", 1),
    ):
        out = env.loaders.modules.state.show_sls("haproxy", pillar={"lb": base_topology(), "lb_settings": {"haproxy_sls": {key: value}}})
        assert not isinstance(out, dict), out
        assert f"lb_settings:haproxy_sls:{key}" in str(out), out
    # the key of an earlier release is refused, naming where it moved
    out = env.loaders.modules.state.show_sls("haproxy", pillar={"lb": base_topology(), "lb_haproxy": {"pkg": "haproxy"}})
    assert not isinstance(out, dict) and "lb_haproxy: moved to lb_settings:haproxy_sls" in str(out), out


def test_sls_applies_from_scratch_then_changes_nothing(env):
    env.mod.stop()
    shutil.copy(os.path.join(REPO, "tests", "fixtures", "haproxy", "debian-default.cfg"), env.settings["config"])
    dry = env.loaders.modules.state.sls("haproxy", pillar=sls_pillar(), test=True)
    assert not dry.failed, dry.errors
    assert dry["lb_haproxy_config"].result is None and dry["lb_haproxy_running"].result is None
    assert env.mod.status()["running"] is False
    assert env.config() == fixture_text("debian-default.cfg")

    ret = env.loaders.modules.state.sls("haproxy", pillar=sls_pillar())
    assert not ret.failed, ret.errors
    assert all(r.result is True for r in ret), [(r.id, r.comment) for r in ret]
    assert ret["lb_haproxy_config"].changes["sections"]["global"] == "changed"
    assert ret["lb_haproxy_running"].changes["haproxy"] == "started"
    env.remember()
    assert servers_up(env, HTTP_LISTENER, WEB_A) and get(HTTP_VIP)[0] == 200

    again = env.loaders.modules.state.sls("haproxy", pillar=sls_pillar())
    assert all(r.result is True and r.changes == {} for r in again), [(r.id, r.changes) for r in again]


def fixture_text(name):
    with open(os.path.join(REPO, "tests", "fixtures", "haproxy", name), encoding="utf-8") as fh:
        return fh.read()


def test_a_daemon_without_master_is_taken_over(env):
    """The package's init script may have started HAProxy as a plain daemon
    (Debian's default config: `daemon`, no master): the first reload starts
    a master-worker HAProxy with -sf, and the old process leaves."""
    env.mod.stop()
    cfg = env.config()
    plain = cfg.replace("    master-worker\n", "    daemon\n").replace(" expose-fd listeners", "")
    path = env.root / "plain.cfg"
    path.write_text(plain)
    pidfile = env.mod.status()["pidfile"]
    # as Debian's init script starts it (`-p $PIDFILE`; the product's Debian
    # config has no `pidfile`: the unit's or the module's -p gives it)
    subprocess.run(["haproxy", "-q", "-D", "-f", str(path), "-p", pidfile], check=True, timeout=30)
    with open(pidfile) as fh:  # stopped by the fixture even if an assertion below fails
        env.pids.update(int(w) for w in fh.read().split() if w.isdigit())
    st = env.mod.status()
    env.pids.update(st["pids"])
    assert st["running"] and not st["master_worker"], st
    old = st["pids"]
    assert get(HTTP_VIP)[0] == 200
    with Load(HTTP_VIP, count=60) as load:
        res = env.states.running(name="haproxy")
    assert res.result is True, res.comment
    assert "taken over" in res.comment
    env.remember()
    new = env.mod.status()
    assert new["master_worker"] and new["master"] not in old
    assert wait_for(lambda: all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in old), 10)
    assert load.failures == [] and load.ok == 60
    assert env.states.running(name="haproxy").changes == {}


def test_stop(env):
    r = env.mod.stop()
    assert r["stopped"]
    assert env.mod.status()["running"] is False
    assert not [
        p
        for p in env.pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE and psutil.Process(p).name() == "haproxy"
    ]
