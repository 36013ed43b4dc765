"""A compromised minion against the product's reactor: a real salt-master
(with the shipped reactor config, salt/reactor/carp.sls and the lb runner)
and two real minions, lb-a (a load balancer of the lab's topology) and db-1
(one of its database servers, playing the attacker).

db-1 sends every forged event of issue 16: a newline in the tag, a newline in
``data['id']``, another load balancer's id, a glob, and ``preload`` batches
(which let a minion write the whole event data itself, ``id`` included).
Afterwards: no marker file an injected command would write exists, the
master published no job but status queries to lb-a and the
lb_failover.master_serves state there, which applied nothing because lb-a is not MASTER (nothing ran on any
minion: no state.apply, no carp.maintenance, no cmd.run),
lb.history holds no entry, and the master logged each drop.  Before the
fix, the tag and ``data['id']`` were pasted into the reactor's YAML: the
newline cases compiled into ``local cmd.run tgt '*'``.
"""

import json
import os
import shutil
import tempfile
import time

import pytest
import yaml

from tests.support import LAB_PILLAR, REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def salt_factories_config():
    # a short root of its own: unix socket paths must stay under ~100 bytes,
    # and the default root under /tmp is shared between runs
    root = tempfile.mkdtemp(prefix="lbrt-", dir="/tmp")
    yield {"root_dir": root}
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def marker_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def master(salt_factories, tmp_path_factory):
    pillar = tmp_path_factory.mktemp("pillar")
    shutil.copy(LAB_PILLAR, pillar / "lb.sls")
    (pillar / "top.sls").write_text("base:\n  '*':\n    - lb\n")
    with open(os.path.join(REPO, "etc", "salt", "master.d", "reactor.conf")) as fh:
        shipped = yaml.safe_load(fh)
    factory = salt_factories.salt_master_daemon(
        "lbm",
        overrides={
            "file_roots": {"base": [os.path.join(REPO, "salt")]},
            "pillar_roots": {"base": [str(pillar)]},
            "runner_dirs": [os.path.join(REPO, "_runners")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "engines_dirs": [os.path.join(REPO, "_engines")],
            "reactor": shipped["reactor"],
            "engines": shipped["engines"],
            "log_level_logfile": "warning",
        },
    )
    with factory.started(start_timeout=120):
        yield factory


def _minion(master, minion_id):
    return master.salt_minion_daemon(
        minion_id,
        overrides={
            "module_dirs": [os.path.join(REPO, "_modules")],
            "states_dirs": [os.path.join(REPO, "_states")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "log_level_logfile": "warning",
        },
    )


@pytest.fixture(scope="module")
def minions(master):
    lb_a = _minion(master, "lb-a")
    db_1 = _minion(master, "db-1")
    with lb_a.started(start_timeout=120), db_1.started(start_timeout=120):
        # the master caches each minion's pillar when it compiles it
        for m in (lb_a, db_1):
            ret = master.salt_cli(timeout=60).run("saltutil.refresh_pillar", "wait=True", minion_tgt=m.id)
            assert ret.returncode == 0, ret
        yield lb_a, db_1


def _forged(marker_dir):
    """(how it is sent, args for salt-call event.send) per forged event."""
    touch = f"touch {marker_dir}/pwned"
    nl_tag = (
        "salt/beacon/lb-a/carp/4/MASTER\n"
        "lb_evil:\n"
        "  local.cmd.run:\n"
        "    - tgt: '*'\n"
        "    - args:\n"
        f"      - cmd: {touch}-tag"
    )  # no newline at the end: Salt's event bus would split the frame there and drop it
    nl_id = "lb-a\n    - tgt_type: glob\nlb_evil:\n  local.cmd.run:\n    - tgt: '*'\n    - arg: ['" + touch + "-id']"
    out = [
        ("newline in the tag", [nl_tag, json.dumps({"id": "lb-a", "old": "BACKUP"})]),
        (
            "newline in data['id'], batch",
            ["x", "{}", "with_env=False", f"preload={json.dumps(_batch('salt/beacon/lb-a/carp/haproxy/DOWN', nl_id))}"],
        ),
        ("another LB's id, batch", ["x", "{}", f"preload={json.dumps(_batch('salt/beacon/lb-a/carp/haproxy/DOWN', 'lb-a'))}"]),
        ("another LB's MASTER, batch", ["x", "{}", f"preload={json.dumps(_batch('salt/beacon/lb-a/carp/4/MASTER', 'lb-a'))}"]),
        ("another LB's BACKUP, plain", ["salt/beacon/lb-a/carp/4/BACKUP", json.dumps({"old": "MASTER", "source": "hook"})]),
        ("a glob as the node", ["x", "{}", f"preload={json.dumps(_batch('salt/beacon/*/carp/haproxy/DOWN', '*'))}"]),
        ("a glob in the tag, plain", ["salt/beacon/lb-*/carp/4/MASTER", json.dumps({"old": "BACKUP"})]),
        ("a non-LB named, batch", ["x", "{}", f"preload={json.dumps(_batch('salt/beacon/db-1/carp/4/MASTER', 'db-1'))}"]),
        ("a vhid the pair lacks", ["salt/beacon/lb-a/carp/99/MASTER", "{}"]),
    ]
    return out


def _batch(tag, claimed_id):
    return {"events": [{"tag": tag, "data": {"id": claimed_id, "old": "BACKUP", "source": "beacon", "timestamp": time.time()}}]}


def _bus_tag(args):
    """The tag the event reaches the master's bus with."""
    for a in args:
        if a.startswith("preload="):
            return json.loads(a[len("preload=") :])["events"][0]["tag"]
    return args[0]


def _jobs(master):
    ret = master.salt_run_cli(timeout=60).run("jobs.list_jobs")
    assert ret.returncode == 0 and isinstance(ret.data, dict), ret
    return ret.data


def test_forged_events_run_nothing_and_record_nothing(master, minions, marker_dir):
    lb_a, db_1 = minions
    log_file = master.config["log_file"]
    before = set(_jobs(master))
    sent = _forged(marker_dir)
    call = db_1.salt_call_cli(timeout=60)
    for what, args in sent:
        ret = call.run("event.send", *args)
        assert ret.returncode == 0, (what, ret)

    # every forged event is dropped, and the master says so (the engine,
    # the reactor's heal; once a minute per tag and reason)
    tags = {_bus_tag(args) for _, args in sent}
    deadline = time.monotonic() + 90
    drops, missing = [], tags
    while missing and time.monotonic() < deadline:
        time.sleep(1)
        with open(log_file, errors="replace") as fh:
            drops = [line for line in fh if "lb: dropped event" in line]
        missing = {t for t in tags if not any(f"dropped event {repr(t)[:60]}" in line for line in drops)}
    time.sleep(3)  # anything an event set off has been published by now

    assert not list(marker_dir.iterdir()), "an injected command ran"
    # (the attacker's own salt-call event.send runs are jobs too)
    new_jobs = {
        jid: j for jid, j in _jobs(master).items() if jid not in before and not (j["Function"] == "event.send" and j["Target"] == "db-1")
    }
    for jid, job in new_jobs.items():
        if job["Function"] in ("runner.lb.heal", "runner.jobs.list_jobs"):  # on the master: the heal, and this test
            continue
        assert job["Function"] in ("carp.status", ["haproxy_cfg.status", "carp.status"], "state.single"), (jid, job)
        # the load balancers of the topology, by list (the engine asks both
        # nodes of a pair at once: the split-brain look needs both)
        assert set(job["Target"]) <= {"lb-a", "lb-b"} and job["Target-type"] == "list", (jid, job)
        if job["Function"] != "carp.status":
            assert job["Target"] == ["lb-a"], (jid, job)
    # the forged MASTER for lb-a reached lb-a alone, which applied nothing:
    # it is not MASTER of vhid 4 (its own carp.status)
    on_master = [jid for jid, job in new_jobs.items() if job["Function"] == "state.single"]
    assert on_master, new_jobs
    for jid in on_master:
        assert new_jobs[jid]["Arguments"][0]["fun"] == "lb_failover.master_serves", new_jobs[jid]
        ret = master.salt_run_cli(timeout=60).run("jobs.lookup_jid", jid, "--out=json")
        assert ret.returncode == 0, ret
        assert isinstance(ret.data["lb-a"], dict), ret.data
        ((_, state),) = ret.data["lb-a"].items()
        assert state["result"] is True and state["changes"] == {} and "nothing to apply" in state["comment"], state
    history = master.salt_run_cli(timeout=60).run("lb.history", "--out=json")
    assert history.returncode == 0, history
    assert history.data == [], history.data
    # the forged DOWN for lb-a did not put lb-a in maintenance: no such job ran
    assert not any(j["Function"] == "carp.maintenance" for j in new_jobs.values())
    assert not missing, (missing, drops)
    # the drop lines name the claimed sender, and no secret or YAML reached them
    assert any("claimed sender 'lb-a" in line for line in drops), drops
