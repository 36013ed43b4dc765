"""The runner's view (`salt-run lb.status`) from fixed inputs: who is MASTER,
split brain, no MASTER, an unreachable node, config drift, HAProxy's servers,
the table, and the history records."""

import lb_status
import lb_topology

EXPECTED = {
    "nodes": ["lb-a", "lb-b"],
    "groups": {4: {"vip": "198.18.2.4", "primary": "lb-a"}, 5: {"vip": "198.18.2.5", "primary": "lb-a"}},
}


def report(states, maintenance=False, running=True, drift=None, servers=(), listeners=()):
    return {
        "carp": {
            str(v): {"state": s, "vip": EXPECTED["groups"][v]["vip"], "interface": "eth1", "provider": "keepalived"}
            for v, s in states.items()
        },
        "maintenance": maintenance,
        "provider": "keepalived",
        "haproxy": {"running": running},
        "listeners": list(listeners),
        "servers": list(servers),
        "drift": drift or {"/etc/haproxy/haproxy.cfg": {"match": True}},
        "errors": [],
    }


def test_expected_pairs_from_the_lab_topology(lab_model):
    exp = lb_status.expected_pairs(lab_model)
    (name,) = exp
    assert sorted(exp[name]["nodes"]) == ["lb-a", "lb-b"]
    assert all(g["vip"].startswith("198.18.") for g in exp[name]["groups"].values())
    assert lb_topology.roles(lab_model, "lb-a")["lb"] == [name]


def test_healthy_pair():
    pv = lb_status.pair_view(
        "edge", EXPECTED, {"lb-a": report({4: "MASTER", 5: "MASTER"}), "lb-b": report({4: "BACKUP", 5: "BACKUP"})}, now=0
    )
    assert [(g["vhid"], g["master"]) for g in pv["groups"]] == [(4, "lb-a"), (5, "lb-a")]
    assert pv["warnings"] == []
    assert pv["splitbrain"] == {}


def test_split_brain_is_reported_with_both_nodes():
    pv = lb_status.pair_view(
        "edge", EXPECTED, {"lb-a": report({4: "MASTER", 5: "MASTER"}), "lb-b": report({4: "MASTER", 5: "BACKUP"})}, now=0
    )
    assert pv["splitbrain"] == {"4": {"nodes": ["lb-a", "lb-b"], "since": None}}
    assert pv["groups"][0]["master"] == ["lb-a", "lb-b"]
    assert any(w.startswith("SPLIT BRAIN: vhid 4") and "lb-a and lb-b" in w for w in pv["warnings"])
    assert "SPLIT: lb-a+lb-b" in lb_status.table(
        lb_status.view({"edge": EXPECTED}, {"lb-a": report({4: "MASTER"}), "lb-b": report({4: "MASTER"})})
    )


def test_split_brains_pure():
    reps = {"lb-a": report({4: "MASTER", 5: "BACKUP"}), "lb-b": report({4: "MASTER", 5: "MASTER"}), "lb-c": None}
    assert lb_status.split_brains(reps) == {4: ["lb-a", "lb-b"]}


def test_no_master():
    pv = lb_status.pair_view(
        "edge", EXPECTED, {"lb-a": report({4: "BACKUP", 5: "MASTER"}), "lb-b": report({4: "INIT", 5: "BACKUP"})}, now=0
    )
    assert pv["warnings"] == ["vhid 4 (198.18.2.4): no MASTER"]


def test_unreachable_node_and_a_recorded_split_brain_stays_until_confirmed():
    recorded = {"4": {"since": 100.0, "nodes": ["lb-a", "lb-b"]}}
    pv = lb_status.pair_view(
        "edge", EXPECTED, {"lb-a": report({4: "MASTER", 5: "MASTER"}), "lb-b": "Minion did not return. [No response]"}, recorded, now=0
    )
    assert pv["nodes"]["lb-b"] == {"reachable": False}
    assert "lb-b: unreachable (Minion did not return. [No response])" in pv["warnings"]
    assert pv["splitbrain"]["4"]["unconfirmed"] is True
    # both answer and one MASTER: it is no longer shown
    pv = lb_status.pair_view(
        "edge", EXPECTED, {"lb-a": report({4: "MASTER", 5: "MASTER"}), "lb-b": report({4: "BACKUP", 5: "BACKUP"})}, recorded, now=0
    )
    assert pv["splitbrain"] == {} and pv["warnings"] == []


def test_drift_maintenance_and_haproxy_down_on_a_master():
    reps = {
        "lb-a": report({4: "BACKUP", 5: "BACKUP"}, maintenance=True, drift={"/etc/keepalived/keepalived.conf": {"match": False}}),
        "lb-b": report({4: "MASTER", 5: "MASTER"}, running=False),
    }
    pv = lb_status.pair_view("edge", EXPECTED, reps, now=0)
    assert pv["nodes"]["lb-a"]["maintenance"] is True
    assert pv["nodes"]["lb-a"]["config_drift"] == ["/etc/keepalived/keepalived.conf"]
    assert "lb-a: /etc/keepalived/keepalived.conf differs from what the pillar renders (run state.apply)" in pv["warnings"]
    assert "lb-b: MASTER of vhid 4, 5 but HAProxy is not running" in pv["warnings"]


def test_servers_and_listeners_per_node():
    servers = [
        {"backend": "mysql", "server": "db-1", "status": "UP", "admin": []},
        {"backend": "mysql", "server": "db-2", "status": "DOWN (agent)", "admin": []},
        {"backend": "mysql", "server": "db-3", "status": "UP", "admin": ["drain"]},
        {"backend": "web", "server": "w1", "status": "MAINT", "admin": ["maint"]},
    ]
    listeners = [{"name": "mysql", "status": "OPEN"}]
    reps = {
        "lb-a": report({4: "MASTER", 5: "MASTER"}, servers=servers, listeners=listeners),
        "lb-b": report({4: "BACKUP", 5: "BACKUP"}, servers=servers[:1]),
    }
    v = lb_status.view({"edge": EXPECTED}, reps, now=0)
    pv = v["pairs"]["edge"]
    assert pv["servers"] == {
        "mysql/db-1": {"lb-a": "UP", "lb-b": "UP"},
        "mysql/db-2": {"lb-a": "DOWN"},
        "mysql/db-3": {"lb-a": "DRAIN"},
        "web/w1": {"lb-a": "MAINT"},
    }
    assert pv["listeners"] == {"mysql": {"lb-a": "OPEN"}}
    text = lb_status.table(v)
    lines = text.splitlines()
    assert lines[0] == "pair edge"
    assert any(line.split() == ["4", "198.18.2.4", "lb-a", "MASTER", "BACKUP"] for line in lines)
    assert any(line.split() == ["mysql/db-3", "DRAIN", "-"] for line in lines)
    assert "no warnings" in text


def test_server_status_words():
    assert lb_status.server_status({"status": "UP 1/3"}) == "UP"
    assert lb_status.server_status({"status": "no check", "operational": "RUNNING"}) == "UP"  # no health check: HAProxy's own state
    assert lb_status.server_status({"operational": "STOPPED"}) == "DOWN"
    assert lb_status.server_status({"status": "MAINT (via x)"}) == "MAINT"


def test_history_records_and_table():
    r = lb_status.history_record(
        "salt/beacon/lb-b/carp/4/MASTER",
        {"vhid": 4, "old": "BACKUP", "vip": "198.18.2.4/32", "timestamp": 1000.0, "source": "beacon"},
        1000.5,
    )
    assert (r["node"], r["vhid"], r["what"], r["new"]) == ("lb-b", 4, "BACKUP -> MASTER (198.18.2.4)", "MASTER")
    h = lb_status.history_record("salt/beacon/lb-a/carp/haproxy/DOWN", {"masters": [4, 5]}, 1001.0)
    assert h["what"] == "HAProxy DOWN while MASTER of 4, 5" and h["node"] == "lb-a"
    s = lb_status.history_record("lb/splitbrain/edge/4", {"message": "split brain: vhid 4 MASTER on lb-a and lb-b", "vhid": 4}, 1002.0)
    assert s["what"].startswith("split brain") and s["vhid"] == 4
    text = lb_status.history_table([r, h, s])
    assert len(text.splitlines()) == 4 and "BACKUP -> MASTER" in text
    assert lb_status.history_table([]) == "no transitions recorded\n"


def test_a_file_haproxy_has_not_loaded_is_not_matches_pillar():
    # what lb_node.drift reports after a reload that failed after the swap
    drift = {
        "/etc/haproxy/haproxy.cfg": {
            "match": False,
            "file_match": True,
            "loaded": False,
            "reason": "HAProxy runs an older config than /etc/haproxy/haproxy.cfg (it reports 1a2b3c4d5e6f, the file is 6f5e4d3c2b1a)",
        }
    }
    reps = {"lb-a": report({4: "MASTER", 5: "MASTER"}, drift=drift), "lb-b": report({4: "BACKUP", 5: "BACKUP"})}
    v = lb_status.view({"edge": EXPECTED}, reps, now=0)
    pv = v["pairs"]["edge"]
    assert pv["nodes"]["lb-a"]["not_loaded"] == ["/etc/haproxy/haproxy.cfg"]
    assert any(
        w.startswith("lb-a: /etc/haproxy/haproxy.cfg is as the pillar renders it, but not loaded: HAProxy runs an older")
        for w in pv["warnings"]
    )
    rows = {line.split()[0]: line for line in lb_status.table(v).splitlines() if line.strip().startswith("lb-")}
    assert "NOT LOADED: /etc/haproxy/haproxy.cfg" in rows["lb-a"] and "matches pillar" not in rows["lb-a"]
    assert "matches pillar" in rows["lb-b"]


def test_the_server_taking_a_galera_pools_writes_is_marked_per_node():
    """One writer, two backups: the active server while it is UP, else the
    first backup that is UP, as HAProxy routes; a pool without backups has
    no writer mark, and none is marked when no server is UP."""

    def pool(*rows):
        return [{"backend": "mysql", "server": n, "status": st, "admin": [], "backup": b} for n, st, b in rows]

    assert lb_status.writers(pool(("db-1", "UP", False), ("db-2", "UP", True), ("db-3", "UP", True))) == {"mysql": "db-1"}
    assert lb_status.writers(pool(("db-1", "DOWN", False), ("db-2", "DOWN", True), ("db-3", "UP", True))) == {"mysql": "db-3"}
    assert lb_status.writers(pool(("db-1", "MAINT", False), ("db-2", "UP", True), ("db-3", "UP", True))) == {"mysql": "db-2"}
    assert lb_status.writers(pool(("db-1", "DOWN", False), ("db-2", "DOWN", True))) == {"mysql": None}
    web = [{"backend": "web", "server": "w1", "status": "UP", "admin": [], "backup": False}]
    assert lb_status.writers(web) == {}

    reps = {
        "lb-a": report({4: "MASTER", 5: "MASTER"}, servers=pool(("db-1", "UP", False), ("db-2", "UP", True))),
        "lb-b": report({4: "BACKUP", 5: "BACKUP"}, servers=pool(("db-1", "DOWN", False), ("db-2", "UP", True))),
    }
    v = lb_status.view({"edge": EXPECTED}, reps, now=0)
    assert v["pairs"]["edge"]["servers"] == {
        "mysql/db-1": {"lb-a": "UP writer", "lb-b": "DOWN"},
        "mysql/db-2": {"lb-a": "UP", "lb-b": "UP writer"},
    }
    assert any(line.split() == ["mysql/db-1", "UP", "writer", "DOWN"] for line in lb_status.table(v).splitlines())
