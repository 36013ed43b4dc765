"""An operator's commands by the pillar's names, through the lab's real
master and both nodes' HAProxy: `salt-run lb.drain pool=web_a
server=http_srv-1` drains that server in its section on lb-a and lb-b,
`lb.ready` brings it back, `lb.history` says who did it and why, and a
name the pillar does not have changes nothing.

Pool web_a serves two listeners on lb-a and lb-b: HTTP on port 80 and the
lab's HTTPS on 443 (lab/tls.py adds it to the load balancers' pillar
alone).  A drain takes the server out of both: the runner reads the pair
from its nodes' own pillar.  It read the first minion's (db-1's, which
lacks the HTTPS listener) and drained port 80 alone, so the server went on
taking HTTPS."""

from __future__ import annotations

from lab import saltcfg
from lab.carp_tools import LBS
from lab.events_tools import salt_run

BACKEND = "haproxy_198.18.2.5_80"
BACKEND_TLS = "haproxy_198.18.2.5_443"  # lab/tls.py's listener https_5, pool web_a too


def _admin(server, backend=BACKEND):
    """{node: the server's admin flags in `backend`}"""
    out = {}
    for node, ret in saltcfg.salt_json("-L", ",".join(LBS), "haproxy_cfg.server_state", backend).items():
        assert isinstance(ret, list), (node, ret)
        out[node] = next(s["admin"] for s in ret if s["server"] == server)
    return out


def test_drain_and_ready_by_pool_and_server_on_both_nodes_recorded_with_the_reason(lab):
    for backend in (BACKEND, BACKEND_TLS):
        assert _admin("http_srv-1", backend) == {"lb-a": [], "lb-b": []}
    try:
        ret = salt_run("lb.drain", "pool=web_a", "server=http_srv-1", "reason=lab test: kernel update")
        assert ret["ok"] is True, ret
        assert sorted(ret["backends"]) == sorted([BACKEND, BACKEND_TLS]) and sorted(ret["nodes"]) == sorted(LBS)
        for backend in (BACKEND, BACKEND_TLS):
            assert _admin("http_srv-1", backend) == {"lb-a": ["drain"], "lb-b": ["drain"]}
            assert _admin("http_srv-2", backend) == {"lb-a": [], "lb-b": []}
    finally:
        back = salt_run("lb.ready", "pool=web_a", "server=http_srv-1")
    assert back["ok"] is True, back
    for backend in (BACKEND, BACKEND_TLS):
        assert _admin("http_srv-1", backend) == {"lb-a": [], "lb-b": []}

    recs = [r for r in salt_run("lb.history", "limit=10") if r.get("tag", "").startswith("lb/operator/")]
    drained = [r for r in recs if r["tag"] == "lb/operator/drain"][-2:]
    assert sorted(r["node"] for r in drained) == sorted(LBS)
    assert all(r["reason"] == "lab test: kernel update" and r["ok"] and r["user"] for r in drained), drained
    assert all("drained web_a/http_srv-1 (lab test: kernel update): done" in r["what"] for r in drained)
    assert sorted(r["node"] for r in recs if r["tag"] == "lb/operator/ready")[-2:] == sorted(LBS)


def test_a_name_the_pillar_does_not_have_changes_nothing(lab):
    ret = salt_run("lb.drain", "pool=web_a", "server=http_srv-9")
    assert "has no server 'http_srv-9'" in ret["error"], ret
    # a terminal escape in the reason (salt-run's own parser already keeps a
    # newline out of a key=value argument)
    ret = salt_run("lb.drain", "pool=web_a", "server=http_srv-1", "reason=x\x1b]0;owned")
    assert "one line of printable text" in ret["error"], ret
    assert _admin("http_srv-1") == {"lb-a": [], "lb-b": []}
