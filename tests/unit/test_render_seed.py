"""The seed's pillar, previewed for FreeBSD, says what the seed's files say.

The seed's own haproxy.conf and rc.conf blocks are read from the how-to
(tests/fixtures/seed-howto.md, a verbatim copy) and compared section by
section with what the product renders for each node.  Where the seed is wrong
(docs/seed-differences.md) the test asserts the corrected output instead.
"""

import re
import shlex

import pytest

import lb_render
from tests.support import SEED_HOWTO

NODES = {"lb-a": "Primary", "lb-b": "Secondary"}


def _howto():
    with open(SEED_HOWTO, encoding="utf-8") as fh:
        return fh.read()


def _block_after(text, marker):
    start = text.index(marker)
    end = text.index("```", start)
    return text[start:end]


def parse_sections(cfg: str) -> dict:
    """{section header: [directive lines]} with comments and blank lines
    dropped and whitespace collapsed."""
    sections, current = {}, None
    for raw in cfg.splitlines():
        line = re.sub(r"\s+#.*$", "", raw) if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        words = " ".join(line.split())
        if not raw[0].isspace():
            current = words
            sections[current] = []
        elif current is not None:
            sections[current].append(words)
    return sections


def seed_haproxy(role):
    return parse_sections(_block_after(_howto(), f"# /usr/local/etc/haproxy.conf - {role} #"))


def seed_carp(role):
    """[(device, vhid, advskew, password, vip)] from the seed's rc.conf."""
    text = _howto()
    start = text.index(f"# -- {role} Host -- #")
    end = text.index("#\n", text.index("static_routes", start))
    out = []
    for m in re.finditer(r'^ifconfig_(\w+?)_alias\d+="([^"]+)"', text[start:end], re.M):
        words = shlex.split(m.group(2))
        kv = dict(zip(words[0::2], words[1::2], strict=False))
        vip = next(w for w in words if "/" in w)
        out.append((m.group(1), int(kv["vhid"]), int(kv.get("advskew", 0)), kv["pass"], vip.split("/")[0]))
    return sorted(out, key=lambda x: x[1])


def ours(model, node):
    files = lb_render.render_node(model, node, "FreeBSD")
    return files, parse_sections(files["/usr/local/etc/haproxy.conf"].content)


def _directives(lines, keyword):
    return [line for line in lines if line.split()[0] == keyword]


def _default_server(lines):
    (line,) = _directives(lines, "default-server")
    words = line.split()[1:]
    return dict(zip(words[0::2], words[1::2], strict=False))


def _servers(lines):
    return {line.split()[1]: (line.split()[2], "check" in line.split(), "backup" in line.split()) for line in _directives(lines, "server")}


@pytest.mark.parametrize("node", NODES)
def test_listen_sections_match_the_seed(seed_model, node):
    seed = seed_haproxy(NODES[node])
    _, mine = ours(seed_model, node)
    seed_listens = {k: v for k, v in seed.items() if k.startswith("listen haproxy_")}
    assert len(seed_listens) == 4
    for name, theirs in seed_listens.items():
        assert name in mine, f"{name} missing from the rendered config"
        got = mine[name]
        for keyword in ("bind", "mode", "balance", "timeout", "tcp-check"):
            assert _directives(got, keyword) == _directives(theirs, keyword), (name, keyword)
        assert _servers(got) == _servers(theirs), name
        # every option of the seed but allbackups (deliberately dropped)
        seed_opts = set(_directives(theirs, "option")) - {"option allbackups"}
        assert seed_opts <= set(_directives(got, "option")), name
        assert "option allbackups" not in got
        if _directives(theirs, "default-server"):
            theirs_ds, got_ds = _default_server(theirs), _default_server(got)
            assert {k: got_ds.get(k) for k in theirs_ds} == theirs_ds, name
            # the addition: sessions are cut when the active server changes
            assert got_ds["on-marked-down"] == "shutdown-sessions"
            assert got_ds["on-marked-up"] == "shutdown-backup-sessions"


@pytest.mark.parametrize("node", NODES)
def test_stats_listener_on_each_nodes_own_mgmt_address(seed_model, node):
    seed = seed_haproxy(NODES[node])
    _, mine = ours(seed_model, node)
    theirs, got = seed["listen stats"], mine["listen stats"]
    assert _directives(got, "bind") == _directives(theirs, "bind")
    assert _directives(got, "bind") == [f"bind 10.1.1.{241 if node == 'lb-a' else 242}:9000"]
    assert _directives(got, "acl") == _directives(theirs, "acl")
    for line in theirs:
        if line.startswith("stats ") or line.startswith("timeout "):
            assert line in got, line
    # the seed's bare `balance` is an error in HAProxy: not rendered
    assert "balance" in theirs and not _directives(got, "balance")


@pytest.mark.parametrize("node", NODES)
def test_userlist_keeps_users_and_groups_with_hashed_passwords(seed_model, node):
    theirs = seed_haproxy(NODES[node])["userlist stats-auth"]
    got = ours(seed_model, node)[1]["userlist stats-auth"]
    assert _directives(got, "group") == _directives(theirs, "group")
    assert [line.split()[1] for line in _directives(got, "user")] == ["admin", "lbuser"]
    assert sorted(line.split()[1] for line in _directives(theirs, "user")) == ["admin", "lbuser"]
    for line in _directives(got, "user"):
        assert line.split()[2] == "password" and line.split()[3].startswith("$6$")
    assert not any("insecure-password" in line for line in got)


@pytest.mark.parametrize("node", NODES)
def test_carp_groups_match_the_seed(seed_model, node):
    files, _ = ours(seed_model, node)
    netif = files["/etc/rc.conf.d/netif"].content
    mine = []
    for m in re.finditer(r'^ifconfig_(\w+?)_alias(\d+)="([^"]+)"', netif, re.M):
        words = m.group(3).split()
        kv = dict(zip(words[1::2], words[2::2], strict=False))
        mine.append((m.group(1), int(kv["vhid"]), int(kv["advskew"]), kv["pass"], words[-1].split("/")[0]))
    mine.sort(key=lambda x: x[1])
    assert mine == seed_carp(NODES[node])
    assert {x[2] for x in mine} == ({0} if node == "lb-a" else {100})
    # aliases numbered 0.. without a gap (rc.d/netif stops at the first gap)
    numbers = [int(n) for n in re.findall(r"^ifconfig_hn1_alias(\d+)=", netif, re.M)]
    assert numbers == list(range(len(numbers)))
    assert files["/etc/rc.conf.d/netif"].mode == "0600"


@pytest.mark.parametrize("node", NODES)
def test_interfaces_forwarding_and_preempt(seed_model, node):
    files, _ = ours(seed_model, node)
    text = _howto()
    role = NODES[node]
    start = text.index(f"# -- {role} Host -- #")
    block = text[start : text.index("static_routes", start)]
    netif = files["/etc/rc.conf.d/netif"].content
    for dev, addr, mask in re.findall(r'^ifconfig_(hn\d)="inet (\S+) netmask (\S+)', block, re.M):
        assert f'ifconfig_{dev}="inet {addr} netmask {mask}"' in netif
    hostname = re.search(r'^hostname="([^"]+)"', block, re.M).group(1)
    assert f'hostname="{hostname}"' in files["/etc/rc.conf"].content
    assert 'gateway_enable="YES"' in files["/etc/rc.conf"].content
    sysctl = files["/etc/sysctl.conf"].content.splitlines()
    assert "net.inet.ip.forwarding=1" in sysctl and "net.inet.carp.preempt=1" in sysctl
    assert 'carp_load="YES"' in files["/boot/loader.conf"].content


def test_static_routes_are_the_same_on_both_nodes(seed_model):
    a = lb_render.render_node(seed_model, "lb-a", "FreeBSD")["/etc/rc.conf.d/routing"].content
    b = lb_render.render_node(seed_model, "lb-b", "FreeBSD")["/etc/rc.conf.d/routing"].content
    assert a.replace("lb-a", "lb-b") == b
    # the primary's seed routes, with mysqlnet behind the systems router
    assert 'route_mysqlnet="-net 10.4.4.0/23 10.3.3.254"' in a
    assert 'route_httpnet="-net 10.6.6.0/24 10.3.3.254"' in a
    assert 'static_routes="mgmtnet usernet mysqlnet httpnet"' in a
