"""The lab's network is derived from the lab pillar (lab/plan.py)."""

import copy

import pytest
import yaml

from lab import PILLAR
from lab.plan import IFNAMSIZ, plan_from_pillar


@pytest.fixture(scope="module")
def plan():
    return plan_from_pillar(PILLAR)


@pytest.fixture
def write_pillar(tmp_path):
    """Write a variant of the lab pillar: pass a function that edits the pair."""
    original = yaml.safe_load(PILLAR.read_text())

    def write(edit):
        doc = copy.deepcopy(original)
        edit(doc["lb"]["pairs"]["edge"])
        path = tmp_path / "lb.sls"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


def addresses(host):
    return {i.device: i.address for i in host.interfaces}


def test_one_bridge_per_pillar_network_plus_the_client(plan):
    assert {name: n.cidr for name, n in plan.networks.items()} == {
        "mgmt": "198.18.1.0/24",
        "user": "198.18.2.0/24",
        "systems": "198.18.3.0/24",
        "mysql": "198.18.4.0/23",
        "http": "198.18.6.0/24",
        "client": "198.18.0.0/24",
        "ext": "198.19.2.0/24",
    }
    assert len(set(plan.bridges)) == 7


def test_load_balancers_get_the_pillars_devices_and_addresses_but_no_route_and_no_vip(plan):
    assert addresses(plan.host("lb-a")) == {
        "lb-a-eth0": "198.18.1.241/24",
        "lb-a-eth1": "198.18.2.241/24",
        "lb-a-eth2": "198.18.3.241/24",
    }
    assert addresses(plan.host("lb-b"))["lb-b-eth1"] == "198.18.2.242/24"
    assert "198.18.2.4/24" not in addresses(plan.host("lb-a")).values()
    # the pillar's routes are the product's to apply (salt/host), not the lab's
    assert plan.host("lb-a").routes == [] and plan.host("lb-b").routes == []
    assert plan.host("lb-a").default_gateway is None


def test_r1_holds_every_gateway_and_a_router_address_on_the_other_segments(plan):
    assert sorted(addresses(plan.host("r1")).values()) == [
        "198.18.0.254/24",
        "198.18.1.254/24",
        "198.18.2.254/24",
        "198.18.3.254/24",
        "198.18.4.254/23",
        "198.18.6.254/24",
    ]


def test_database_hosts_are_the_first_galera_pool_with_a_salt_only_mgmt_address(plan):
    dbs = [h for h in plan.hosts if h.role == "db"]
    assert [(h.name, h.pillar_name) for h in dbs] == [
        ("db-1", "percona_mysql-1"),
        ("db-2", "percona_mysql-2"),
        ("db-3", "percona_mysql-3"),
    ]
    assert addresses(dbs[0]) == {"db-1-eth0": "198.18.4.2/23", "db-1-eth1": "198.18.1.11/24"}
    assert {h.default_gateway for h in dbs} == {"198.18.4.254"}
    assert plan.minion_ids == ["lb-a", "lb-b", "db-1", "db-2", "db-3"]


def test_galera6_adds_the_second_pool(plan):
    dbs = [h for h in plan_from_pillar(PILLAR, galera6=True).hosts if h.role == "db"]
    assert [addresses(h)[f"{h.name}-eth0"] for h in dbs[3:]] == ["198.18.5.2/23", "198.18.5.3/23", "198.18.5.4/23"]
    assert addresses(dbs[5])["db-6-eth1"] == "198.18.1.16/24"


def test_http_hosts_serve_on_their_pillar_address_and_port(plan):
    webs = [h for h in plan.hosts if h.role == "web"]
    assert [h.service for h in webs] == [("198.18.6.1", 80), ("198.18.6.2", 80), ("198.18.6.3", 80), ("198.18.6.4", 80)]
    assert {h.default_gateway for h in webs} == {"198.18.6.254"}
    assert not any(h.minion_id for h in webs)


def test_only_the_client_and_the_masters_link_are_the_labs_own(plan):
    assert addresses(plan.host("client")) == {"client-eth0": "198.18.0.10/24"}
    assert plan.host("client").default_gateway == "198.18.0.254"
    assert (plan.master.device, plan.master.network, plan.master.address) == ("lab-master", "mgmt", "198.18.1.250/24")
    assert plan.master_ip == "198.18.1.250"


def test_every_default_route_points_at_r1(plan):
    r1 = {a.split("/")[0] for a in addresses(plan.host("r1")).values()}
    gateways = {h.name: h.default_gateway for h in plan.hosts if h.default_gateway}
    assert gateways and set(gateways.values()) <= r1
    assert plan.host("r1").default_gateway is None


def test_interface_names_fit_linux_and_ports_name_their_bridge(plan):
    names = plan.bridges + plan.root_links + [i.device for h in plan.hosts for i in h.interfaces]
    assert max(len(n) for n in names) <= IFNAMSIZ
    assert len(set(plan.root_links)) == len(plan.root_links)
    for host in plan.hosts:
        for intf in host.interfaces:
            assert intf.port.startswith(plan.networks[intf.network].bridge + "-p")


def test_a_server_added_to_the_pillar_becomes_a_host(write_pillar):
    def add_server(pair):
        pair["haproxy"]["pools"]["web_b"]["servers"]["http_srv-5"] = {"address": "198.18.6.5", "port": 8080}

    webs = [h for h in plan_from_pillar(write_pillar(add_server)).hosts if h.role == "web"]
    assert webs[-1].name == "web-5" and webs[-1].service == ("198.18.6.5", 8080)


def test_router_takes_the_last_free_address_when_254_is_a_server(write_pillar):
    def take_254(pair):
        pair["haproxy"]["pools"]["web_b"]["servers"]["http_srv-4"]["address"] = "198.18.6.254"

    plan = plan_from_pillar(write_pillar(take_254))
    assert addresses(plan.host("r1"))["r1-eth4"] == "198.18.6.253/24"
    assert plan.host("web-4").default_gateway == "198.18.6.253"


def test_a_changed_pillar_gateway_moves_r1(write_pillar):
    def move(pair):
        pair["networks"]["systems"]["gateway"] = "198.18.3.1"

    assert addresses(plan_from_pillar(write_pillar(move)).host("r1"))["r1-eth2"] == "198.18.3.1/24"


def test_a_server_outside_every_network_is_refused(write_pillar):
    def stray(pair):
        pair["haproxy"]["pools"]["web_a"]["servers"]["http_srv-1"]["address"] = "192.0.2.1"

    with pytest.raises(ValueError, match="192.0.2.1 is in none of the pair's networks"):
        plan_from_pillar(write_pillar(stray))


def test_the_masters_address_must_be_free(write_pillar):
    def take(pair):
        pair["nodes"]["lb-b"]["interfaces"]["mgmt"]["address"] = "198.18.1.250"

    with pytest.raises(ValueError, match="master's address 198.18.1.250"):
        plan_from_pillar(write_pillar(take))


def test_without_galera6_the_first_pools_hosts_stand_in_for_the_second_pool(plan):
    dbs = [h for h in plan.hosts if h.role == "db"]
    assert [h.aliases for h in dbs] == [
        [("db-1-eth0", "198.18.5.2/23", "percona_mysql-4")],
        [("db-2-eth0", "198.18.5.3/23", "percona_mysql-5")],
        [("db-3-eth0", "198.18.5.4/23", "percona_mysql-6")],
    ]
    assert not any(h.aliases for h in plan_from_pillar(PILLAR, galera6=True).hosts)


def test_upstream_router_at_the_bgp_neighbor_address_and_ext_behind_it(plan):
    up1 = plan.host("up1")
    assert up1.role == "upstream" and not up1.minion_id and up1.default_gateway is None
    assert addresses(up1) == {"up1-eth0": "198.18.2.1/24", "up1-eth1": "198.19.2.1/24"}
    # no prefix route on the VIPs' segment: only its BGP peers, the nodes
    assert up1.peers == ("up1-eth0", ["198.18.2.241", "198.18.2.242"])
    ext = plan.host("ext")
    assert addresses(ext) == {"ext-eth0": "198.19.2.10/24"}
    assert ext.default_gateway is None and ext.routes == [("198.18.2.0/24", "198.19.2.1")]
    # r1 and the client are as before: r1 is not on the ext network
    assert "198.19.2.254/24" not in addresses(plan.host("r1")).values()
    assert all(i.network != "ext" for i in plan.host("r1").interfaces)
    assert plan.networks["ext"].router == "198.19.2.1/24"
    # the nodes' route to ext through up1 is the pillar's extnet, which the
    # product applies (salt/host): the lab gives the nodes no route
    assert plan.host("lb-a").routes == []


def test_no_bgp_no_upstream_router(write_pillar):
    def drop(pair):
        del pair["routing"]["bgp"]

    plan = plan_from_pillar(write_pillar(drop))
    assert not [h for h in plan.hosts if h.role in ("upstream", "ext")]
    assert "ext" not in plan.networks


def test_upstream_bird_conf_peers_with_both_nodes_and_passes_bird_p(plan, tmp_path):
    import shutil
    import subprocess

    from lab import upstream

    text = upstream.bird_conf(plan, PILLAR)
    assert "neighbor 198.18.2.241 as 65000;" in text and "neighbor 198.18.2.242 as 65000;" in text
    assert text.count("local 198.18.2.1 as 65001;") == 2
    assert text.count("export none;") == 2 and "bfd on;" in text
    cfg = tmp_path / "bird.conf"
    cfg.write_text(text)
    r = subprocess.run([shutil.which("bird") or "/usr/sbin/bird", "-p", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
