"""docs/install.md, followed on a master of its own: the product reaches
a fresh salt-master and fresh minions only the way that page says.

- The master: its own ports and directories. Its file server is the
  gitfs block of docs/install.md, read from the page itself, with the
  example URL replaced by a bare clone of this repository, its `base`
  the release tag the page pins (that of _utils/lb_version.py), made on
  HEAD in the clone. Its
  reactor and engine come from a copy of etc/salt/master.d/reactor.conf.
  Its pillar is the lab's pillar repository, a separate git repository
  read by git_pillar, with its GPG key.
- The minions: new salt-minion processes in lb-a and lb-b, with empty
  caches, so no module of ours is there before the sync. The lab's own
  minions are paused (SIGSTOP) meanwhile, so that only one minion acts on
  each host.
- Then the steps of install.md: fileserver.update, the master's
  sync_all, a restart for the engine, the minions' sync_all; lb.validate,
  lb.roles, state.apply test=True, state.apply with the BACKUP first, a
  second state.apply with no changes, lb.status; HTTP and SQL through
  every VIP; a planned switchover with the new master's runner, its
  transitions recorded by the new master's engine and its MASTER events
  acted on by the new master's reactor.

Afterwards the new master and minions are stopped, the lab's minions
resume, and the lab's own states are applied again (the event hook names
the minion that runs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

import lb_version  # the product's pure module (tests/conftest.py puts _utils on sys.path)
from lab import LAB_DIR, REPO, control, e2e, saltcfg, state
from lab.carp_tools import LBS, all_on, holders, wait_for
from lab.events_tools import SETTLE, _apply_lbs

INSTALL_DOC = REPO / "docs" / "install.md"
REACTOR_CONF = REPO / "etc" / "salt" / "master.d" / "reactor.conf"
EXAMPLE_URL = "https://git.example.net/infra/lb-pair.git"
HOME = LAB_DIR / "install"
MASTER = HOME / "master"
PUBLISH_PORT, RET_PORT = 4605, 4606
STOP_WAIT = 20.0


def gitfs_block(text: str) -> dict:
    """The YAML block under "### With gitfs" in install.md, parsed."""
    section = text.split("### With gitfs", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "install.md has no yaml block under 'With gitfs'"
    return yaml.safe_load(block.group(1))


def _with_url(conf: dict, url: str) -> dict:
    """The block with the example URL replaced."""
    remotes = []
    for remote in conf["gitfs_remotes"]:
        ((key, params),) = remote.items()
        assert key == EXAMPLE_URL, key
        remotes.append({url: params})
    return dict(conf, gitfs_remotes=remotes)


def _bases(conf: dict) -> set:
    return {p["base"] for r in conf["gitfs_remotes"] for p in next(iter(r.values())) if "base" in p}


def test_the_gitfs_block_of_install_md_serves_states_and_modules_from_one_url():
    """Offline: two remotes, one URL, each named (Salt refuses the same
    URL twice without `name`), one rooted at salt/, roots before gitfs."""
    conf = gitfs_block(INSTALL_DOC.read_text())
    assert conf["fileserver_backend"] == ["roots", "gitfs"]
    params = [dict(kv for p in r[EXAMPLE_URL] for kv in p.items()) for r in conf["gitfs_remotes"]]
    assert len(params) == 2 and len({p["name"] for p in params}) == 2
    assert sorted(p.get("root") or "" for p in params) == ["", "salt"]
    moved = _with_url(conf, "file:///x.git")
    assert [next(iter(r)) for r in moved["gitfs_remotes"]] == ["file:///x.git"] * 2
    # both remotes pin this release's tag (CHANGELOG.md: v<VERSION>)
    assert _bases(conf) == {lb_version.TAG}
    assert f"## {lb_version.VERSION} (" in (REPO / "CHANGELOG.md").read_text()


def _salt(cmd: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(saltcfg.BIN / cmd), "-c", str(MASTER), *args], capture_output=True, text=True, timeout=timeout)


def _json(cmd: str, *args: str, timeout: float = 300):
    proc = _salt(cmd, *args, "--out=json", *(["--static"] if cmd == "salt" else []), timeout=timeout)
    try:
        return json.loads(proc.stdout or "null")
    except json.JSONDecodeError:
        raise AssertionError(f"{cmd} {' '.join(args)}: {proc.stdout}{proc.stderr}") from None


def _maybe(cmd: str, *args: str):
    """_json, or None while the new master does not answer yet."""
    try:
        return _json(cmd, *args, timeout=60)
    except (AssertionError, subprocess.TimeoutExpired):
        return None


def _stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM to the process's group, SIGKILL after STOP_WAIT."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(STOP_WAIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def _salt_processes(leader: int) -> list[int]:
    """The processes of the group `leader` leads that are salt-minion's (a
    daemon a job started and that stayed in the group is left alone)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == leader and "salt-minion" in cmdline:
            out.append(int(entry.name))
    return out


class Paused:
    """The lab's own minions on the LBs, stopped (SIGSTOP) while the test's
    minions work, continued at the end."""

    def __init__(self):
        self.pids: list[int] = []

    def __enter__(self):
        daemons = state.load()["daemons"]
        for lb in LBS:
            rec = daemons[f"salt-minion@{lb}"]
            assert state.alive(rec), f"the lab's minion on {lb} is not running"
            for pid in _salt_processes(rec["pid"]):
                os.kill(pid, signal.SIGSTOP)
                self.pids.append(pid)
        return self

    def __exit__(self, *exc):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def _master_config(plan) -> None:
    """The new master: its own directories and ports, the lab's pillar
    repository and GPG key, and master.d as install.md says."""
    lab_master = yaml.safe_load((saltcfg.MASTER_DIR / "master").read_text())
    MASTER.mkdir(parents=True)
    (MASTER / "master.d").mkdir()
    conf = {
        "root_dir": str(MASTER),
        "pki_dir": str(MASTER / "pki"),
        "cachedir": str(MASTER / "cache"),
        "sock_dir": saltcfg._sock_dir(MASTER, "master_event_pub.ipc"),
        "pidfile": str(MASTER / "master.pid"),
        "log_file": str(MASTER / "log"),
        "key_logfile": str(MASTER / "key.log"),
        "log_level_logfile": "info",
        "user": "root",
        "interface": plan.master_ip,
        "publish_port": PUBLISH_PORT,
        "ret_port": RET_PORT,
        "worker_threads": 3,
        "timeout": 10,
        "default_include": "master.d/*.conf",
        # no file_roots of our own: only gitfs serves the product
        "file_roots": {"base": [str(MASTER / "srv")]},
        # the operator's pillar: a git repository of its own (the lab's), its key
        **{
            k: lab_master[k]
            for k in ("pillar_roots", "ext_pillar", "git_pillar_provider", "git_pillar_base", "git_pillar_branch", "gpg_keydir")
        },
    }
    (MASTER / "srv").mkdir()
    (MASTER / "master").write_text(yaml.safe_dump(conf, sort_keys=False))
    bare = HOME / "lb-pair.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(REPO), str(bare)], check=True, timeout=120)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    # the release tag install.md pins, on what is tested here (a clone of
    # this checkout: HEAD, whatever tags the checkout has)
    subprocess.run(["git", "-C", str(bare), "tag", "-f", lb_version.TAG, head], check=True, timeout=30, capture_output=True)
    gitfs = _with_url(gitfs_block(INSTALL_DOC.read_text()), f"file://{bare}")
    (MASTER / "master.d" / "lb-pair.conf").write_text(yaml.safe_dump(gitfs, sort_keys=False))
    shutil.copy(REACTOR_CONF, MASTER / "master.d" / "reactor.conf")


def _minion_config(lb: str, plan) -> Path:
    root = HOME / "minions" / lb
    root.mkdir(parents=True)
    conf = {
        "id": lb,
        "master": plan.master_ip,
        "master_port": RET_PORT,
        "root_dir": str(root),
        "pki_dir": str(root / "pki"),
        "cachedir": str(root / "cache"),
        "sock_dir": saltcfg._sock_dir(root, "minion_event_0123456789_pub.ipc"),
        "pidfile": str(root / "minion.pid"),
        "log_file": str(root / "log"),
        "log_granular_levels": {"salt.minion": "warning"},
        "user": "root",
        "acceptance_wait_time": 1,
        "acceptance_wait_time_max": 2,
        "random_reauth_delay": 0,
        "enable_fqdns_grains": False,
    }
    (root / "minion").write_text(yaml.safe_dump(conf, sort_keys=False))
    return root


class Installed:
    """The new master and minions, running; stopped by their pids."""

    def __init__(self, lab):
        self.lab, self.master, self.minions = lab, None, {}

    def start_master(self) -> None:
        log = open(MASTER / "console.log", "ab")
        with log:
            self.master = subprocess.Popen(
                [str(saltcfg.BIN / "salt-master"), "-c", str(MASTER), "-l", "warning"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=HOME,
            )

    def restart_master(self) -> None:
        _stop(self.master)
        self.start_master()

    def start_minion(self, lb: str, root: Path) -> None:
        with open(root / "console.log", "ab") as log:
            self.minions[lb] = subprocess.Popen(
                ["mnexec", "-a", str(control.host_pid(lb)), str(saltcfg.BIN / "salt-minion"), "-c", str(root), "-l", "warning"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=HOME,
            )

    def ping(self, timeout: float = 90) -> None:
        def answered():
            if self.master.poll() is not None:
                raise AssertionError(f"the new salt-master exited; see {MASTER / 'log'}")
            ret = _maybe("salt", "-L", ",".join(LBS), "test.ping", "-t", "5") or {}
            return all(ret.get(lb) is True for lb in LBS)

        assert wait_for(answered, timeout, every=1), "the new minions do not answer the new master"

    def stop(self) -> None:
        for proc in self.minions.values():
            _stop(proc)
        _stop(self.master)


def _apply(lb: str, *args: str) -> dict:
    """state.apply on one new minion, waiting (bounded) for a state run in
    progress there (the new master's reactor queues its own)."""
    ret = None
    for _ in range(24):
        ret = (_json("salt", lb, "state.apply", *args, timeout=600) or {}).get(lb)
        if isinstance(ret, dict):
            return ret
        if not (isinstance(ret, list) and any("is running as PID" in str(x) for x in ret)):
            break
        time.sleep(5)
    raise AssertionError(f"state.apply {' '.join(args)} on {lb}: {ret}")


def _changed(ret: dict) -> dict:
    return {k: v.get("changes") for k, v in ret.items() if isinstance(v, dict) and v.get("changes")}


def _accept(minions, rounds: int = 5) -> None:
    """salt-key -a until every minion's key is accepted, as an operator
    checks `salt-key -L` after accepting.  A minion's auth retry can land
    while salt-key changes its key's state: Salt 3008's master reads no key
    at that moment (master.py, `elif not key:`) and stores it as pending
    again, after salt-key accepted it.  Seen once in a fresh-clone run: lb-b
    stayed pending and never answered."""
    keys = {}
    for _ in range(rounds):
        _salt("salt-key", "-y", "-a", "lb-*", timeout=60)
        keys = _maybe("salt-key", "-L") or {}
        if set(keys.get("minions", [])) >= set(minions) and not set(keys.get("minions_pre", [])) & set(minions):
            return
        time.sleep(2)
    raise AssertionError(f"the keys of {', '.join(minions)} are not all accepted after {rounds} rounds: {keys}")


def _failed(ret) -> dict:
    if not isinstance(ret, dict):
        return {"return": ret}
    return {k: v.get("comment") for k, v in ret.items() if isinstance(v, dict) and v.get("result") is False}


def test_install_md_on_a_fresh_master_and_fresh_minions(lab):
    plan = lab.plan
    if HOME.exists():
        shutil.rmtree(HOME)
    HOME.mkdir(parents=True)
    _master_config(plan)
    roots = {lb: _minion_config(lb, plan) for lb in LBS}
    run = Installed(lab)
    try:
        with Paused():
            try:
                run.start_master()
                for lb in LBS:
                    run.start_minion(lb, roots[lb])
                # the keys: a fresh master accepts them on purpose
                assert wait_for(lambda: set((_maybe("salt-key", "-L") or {}).get("minions_pre", [])) >= set(LBS), 60, every=1)
                _accept(LBS)
                run.ping()
                extmods = {lb: roots[lb] / "var" / "cache" / "salt" / "minion" / "extmods" for lb in LBS}
                for lb in LBS:
                    assert not (extmods[lb] / "modules" / "lb.py").exists(), f"{lb}: modules before the sync"

                # 2. sync (the master's side, a restart for the engine, the minions)
                update = _salt("salt-run", "fileserver.update", timeout=300)
                assert update.returncode == 0, update.stdout + update.stderr
                synced = _json("salt-run", "saltutil.sync_all", timeout=300)
                assert "lb" in " ".join(synced.get("runners", [])), synced
                assert any("lb_recorder" in m for m in synced.get("engines", [])), synced
                run.restart_master()
                run.ping()
                minions = _json("salt", "lb-*", "saltutil.sync_all", timeout=300)
                for lb in LBS:
                    assert (extmods[lb] / "modules" / "lb.py").exists(), f"{lb}: the lb module was not synced"
                    assert any(m.endswith(".lb") for m in minions[lb]["modules"]), minions[lb]
                    assert any(b.endswith(".carp") for b in minions[lb]["beacons"]), minions[lb]

                # 6. the checklist
                valid = _json("salt", "lb-*", "lb.validate")
                assert all(valid[lb]["valid"] for lb in LBS), valid
                roles = _json("salt", "lb-*", "lb.roles")
                assert all(roles[lb]["lb"] for lb in LBS), roles
                assert _json("salt", "lb-*", "lb.version") == {lb: lb_version.VERSION for lb in LBS}
                dry = {lb: _apply(lb, "test=True") for lb in LBS}
                assert not any(_failed(dry[lb]) for lb in LBS), {lb: _failed(dry[lb]) for lb in LBS}
                for lb in ("lb-b", "lb-a"):  # the BACKUP first
                    ret = _apply(lb)
                    assert not _failed(ret), _failed(ret)
                again = {lb: _apply(lb) for lb in LBS}
                assert {lb: _changed(again[lb]) for lb in LBS} == {lb: {} for lb in LBS}
                assert not any(_failed(again[lb]) for lb in LBS)
                status = _json("salt-run", "lb.status", timeout=120)
                (pair,) = status["pairs"].values()
                assert not status["warnings"], status["warnings"]
                assert all(g["master"] == "lb-a" for g in pair["groups"]), pair["groups"]
                checks = e2e.checks()
                assert all(c.ok for c in checks), [(c.what, c.detail) for c in checks if not c.ok]

                # a planned switchover through the new master: its runner moves
                # the VIPs, its engine records the transitions, its reactor acts
                since = time.time()

                def recorded():
                    rows = _json("salt-run", "lb.history", "raw=True", timeout=60) or []
                    return {(r.get("node"), r.get("new")) for r in rows if isinstance(r, dict) and float(r.get("received") or 0) >= since}

                # each way, its MASTER transitions recorded before the next
                # move (the engine records what the node confirms, seconds later)
                moved = _json("salt-run", "lb.maintenance", "node=lb-a", "reason=install.md checklist", timeout=180)
                assert wait_for(lambda: all_on("lb-b"), SETTLE), (moved, holders())
                assert wait_for(lambda: ("lb-b", "MASTER") in recorded(), 60, every=2), recorded()
                back = _json("salt-run", "lb.unmaintenance", "node=lb-a", "reason=install.md checklist", timeout=180)
                assert wait_for(lambda: all_on("lb-a"), SETTLE), (back, holders())
                assert wait_for(lambda: ("lb-a", "MASTER") in recorded(), 60, every=2), recorded()
                jobs = _json("salt-run", "jobs.list_jobs", "search_function=state.single", timeout=60) or {}
                reacted = [
                    j for j in jobs.values() if "lb-b" in str(j.get("Target")) and "lb_failover.master_serves" in str(j.get("Arguments"))
                ]
                assert reacted, jobs
                # every job on the new minions ran: no reaction refused (the
                # reactor's state.single, queued or not), no render error
                for lb in LBS:
                    log = (roots[lb] / "log").read_text()
                    assert not [line for line in log.splitlines() if "Problem executing" in line or "Rendering exception" in line], lb
            finally:
                run.stop()  # before the lab's minions go on
    finally:
        # the lab's minions again, whatever happened: the lab's own states
        # (the event hook names the minion that runs it)
        saltcfg.wait_for_minions(list(LBS), timeout=90)
        _apply_lbs("haproxy,carp,carp.events")
        assert wait_for(lambda: all_on("lb-a"), SETTLE), holders()
