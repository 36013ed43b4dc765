"""The master's runner on a master that serves two sites: a real
salt-master whose pillar top file gives lb-a the lab's topology (pair
`edge`) and lb-c another site's (pair `core`, lb-c and lb-d), and two real
minions, lb-a and lb-c.  ``salt-run lb.status`` shows both sites' pairs,
each from its own nodes' pillar (``lb_bookkeeping.site_model``); before,
the runner took the first cached pillar that validated, and lb.status
showed one site and never the other."""

import os
import shutil
import tempfile

import pytest
import yaml

from tests.support import LAB_PILLAR, REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def salt_factories_config():
    # a short root of its own: unix socket paths must stay under ~100 bytes
    root = tempfile.mkdtemp(prefix="lbsites-", dir="/tmp")
    yield {"root_dir": root}
    shutil.rmtree(root, ignore_errors=True)


def _core_site() -> dict:
    """The lab's topology as another site's: pair `core` of lb-c and lb-d."""
    with open(LAB_PILLAR) as fh:
        text = fh.read().replace("lb-a", "lb-c").replace("lb-b", "lb-d")
    raw = yaml.safe_load(text)
    raw["lb"]["pairs"] = {"core": raw["lb"]["pairs"].pop("edge")}
    return raw


@pytest.fixture(scope="module")
def master(salt_factories, tmp_path_factory):
    pillar = tmp_path_factory.mktemp("pillar")
    shutil.copy(LAB_PILLAR, pillar / "edge.sls")
    (pillar / "core.sls").write_text(yaml.safe_dump(_core_site()))
    (pillar / "top.sls").write_text("base:\n  'lb-a':\n    - edge\n  'lb-c':\n    - core\n")
    factory = salt_factories.salt_master_daemon(
        "lbsites",
        overrides={
            "file_roots": {"base": [os.path.join(REPO, "salt")]},
            "pillar_roots": {"base": [str(pillar)]},
            "runner_dirs": [os.path.join(REPO, "_runners")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "log_level_logfile": "warning",
        },
    )
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="module")
def minions(master):
    started = [
        master.salt_minion_daemon(
            mid,
            overrides={
                "module_dirs": [os.path.join(REPO, "_modules")],
                "utils_dirs": [os.path.join(REPO, "_utils")],
                "log_level_logfile": "warning",
            },
        )
        for mid in ("lb-a", "lb-c")
    ]
    with started[0].started(start_timeout=120), started[1].started(start_timeout=120):
        for m in started:
            ret = master.salt_cli(timeout=60).run("saltutil.refresh_pillar", "wait=True", minion_tgt=m.id)
            assert ret.returncode == 0, ret
        yield started


def test_lb_status_shows_each_site_s_pairs_from_their_own_nodes_pillars(master, minions):
    ret = master.salt_run_cli(timeout=120).run("lb.status", "timeout=5", "--out=json")
    assert ret.returncode == 0, ret
    assert isinstance(ret.data, dict) and "error" not in ret.data, ret.data
    assert sorted(ret.data["pairs"]) == ["core", "edge"]
    # and quietly: no "unclosed Runner ... call destroy()" or other noise
    assert not ret.stderr.strip(), ret.stderr
    # the peers run no minion here: each pair says so, by its own node ids
    warnings = "\n".join(ret.data["warnings"])
    assert "edge: lb-b: unreachable" in warnings and "core: lb-d: unreachable" in warnings, warnings


def test_an_operator_command_finds_the_node_in_its_own_site(master, minions):
    # lb-d is only in the core site's pillar: the runner knows its pair
    ret = master.salt_run_cli(timeout=120).run("lb.maintenance", "node=lb-d", "timeout=5", "--out=json")
    assert isinstance(ret.data, dict) and ret.data.get("pair") == "core", ret
