"""The lab's salt-master and salt-minions: their configs, commands, and the
`salt` CLI against the lab's master (`salt -c .lab/master`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import yaml

from lab import BIN, LAB_DIR, MASTER_DIR, REPO, pillar_repo, state, tls
from lab.plan import Plan

MINIONS_DIR = LAB_DIR / "minions"
EXTROOT = LAB_DIR / "extroot"  # symlinks to the repo's _modules, _states ... (served as salt://_modules)
EXTENSION_DIRS = ("_modules", "_states", "_grains", "_utils", "_beacons", "_runners", "_engines")
REACTOR_CONF = REPO / "etc" / "salt" / "master.d" / "reactor.conf"
EX_USAGE = 64  # salt's exit status for a command line it refuses (salt.defaults.exitcodes)
SOCKET_MAX = 100  # bytes; unix socket paths are limited to 108


def write_configs(plan: Plan, booted: bool = False) -> None:
    """Write a fresh master config, a config per minion and the extension
    symlinks.  Keys and caches from an earlier lab are dropped.  `booted`:
    the load balancers are booted hosts (lab/lbhosts.py), with their own
    root (the pillar repository is seeded for them)."""
    for path in (MASTER_DIR, MINIONS_DIR, EXTROOT):
        shutil.rmtree(path, ignore_errors=True)
    EXTROOT.mkdir(parents=True)
    for name in EXTENSION_DIRS:
        if (REPO / name).is_dir():
            (EXTROOT / name).symlink_to(REPO / name)
    tls.write_pillar()  # the lab CA, a server certificate and their pillar (.lab/pillar)

    MASTER_DIR.mkdir(parents=True)
    _dump(
        MASTER_DIR / "master",
        {
            "root_dir": str(MASTER_DIR),
            "pki_dir": str(MASTER_DIR / "pki"),
            "cachedir": str(MASTER_DIR / "cache"),
            "sock_dir": _sock_dir(MASTER_DIR, "master_event_pub.ipc"),
            "pidfile": str(MASTER_DIR / "master.pid"),
            "log_file": str(MASTER_DIR / "log"),
            "key_logfile": str(MASTER_DIR / "key.log"),
            "log_level_logfile": "info",
            "user": "root",
            "interface": plan.master_ip,
            "auto_accept": True,  # lab only
            "worker_threads": 3,
            "timeout": 10,
            "file_roots": {"base": [str(REPO / "salt"), str(EXTROOT)]},
            # The pillar: the lab's pillar repository (git_pillar, branch
            # main = env base; seeded from pillar/lab with its secrets
            # encrypted, lab/pillar_repo.py), and what the lab generates at
            # `up` (its own env and top: Salt reads one top.sls per env;
            # lab/tls.py).  pillar/lab itself is not served.
            "pillar_roots": {tls.PILLAR_ENV: [str(tls.PILLAR_DIR)]},
            "ext_pillar": [{"git": [{f"{pillar_repo.BRANCH} file://{pillar_repo.PILLAR_GIT}": [{"env": "base"}]}]}],
            "git_pillar_provider": "gitpython",
            "git_pillar_base": pillar_repo.BRANCH,
            "git_pillar_branch": pillar_repo.BRANCH,
            # the GPG renderer's key (`#!jinja|yaml|gpg`): made at `up`, 0700
            "gpg_keydir": str(MASTER_DIR / "gpgkeys"),
            "runner_dirs": [str(REPO / "_runners")],
            "utils_dirs": [str(REPO / "_utils")],
            "engines_dirs": [str(REPO / "_engines")],
            # the product's reactor and engine, as shipped (etc/salt/master.d/reactor.conf)
            **{k: yaml.safe_load(REACTOR_CONF.read_text())[k] for k in ("reactor", "engines")},
        },
    )
    pillar_repo.make_key()  # the master's GPG key, in its gpg_keydir
    pillar_repo.seed(MASTER_DIR / "master", booted=booted)  # .lab/pillar.git from pillar/lab, hooks installed
    for minion_id in plan.minion_ids:
        root = MINIONS_DIR / minion_id
        root.mkdir(parents=True)
        _dump(
            root / "minion",
            {
                **minion_options(minion_id, plan.master_ip),
                "root_dir": str(root),
                "pki_dir": str(root / "pki"),
                "cachedir": str(root / "cache"),
                "sock_dir": _sock_dir(root, "minion_event_0123456789_pub.ipc"),
                "pidfile": str(root / "minion.pid"),
                "log_file": str(root / "log"),
            },
        )


def minion_options(minion_id: str, master_ip: str) -> dict:
    """A lab minion's options, wherever it runs (its paths aside)."""
    return {
        "id": minion_id,
        "master": master_ip,
        "log_level_logfile": "info",
        # but not salt.minion's info lines: Salt 3008 logs every job's
        # return there ("Job ... execution finished, return_data:"),
        # a pillar.get of a secret included (docs/secrets.md)
        "log_granular_levels": {"salt.minion": "warning"},
        "user": "root",
        "acceptance_wait_time": 1,
        "acceptance_wait_time_max": 2,
        "random_reauth_delay": 0,
        "enable_fqdns_grains": False,  # no reverse DNS in the lab
        # what docs/operations.md recommends: a highstate does not
        # sync every custom module first (1.4 s of each run here);
        # `lab up` and an upgrade run saltutil.sync_all
        "autoload_dynamic_modules": False,
    }


def master_command() -> list[str]:
    return [str(BIN / "salt-master"), "-c", str(MASTER_DIR), "-l", "warning"]


def minion_command(minion_id: str) -> list[str]:
    return [str(BIN / "salt-minion"), "-c", str(MINIONS_DIR / minion_id), "-l", "warning"]


def salt(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `salt` against the lab's master."""
    return subprocess.run(
        [str(BIN / "salt"), "-c", str(MASTER_DIR), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def timed_salt(*args: str) -> tuple[float, dict]:
    """`salt ... --out=json --static` as an operator runs it: (its wall
    time from start to end, {minion: return}); SystemExit when the output is
    not JSON (the benches stop there)."""
    t0 = time.monotonic()
    res = salt(*args, "--out=json", "--static", timeout=300)
    wall = time.monotonic() - t0
    try:
        return wall, json.loads(res.stdout)
    except ValueError:
        raise SystemExit(f"salt {' '.join(args)} exited {res.returncode}: {res.stdout[-2000:]}{res.stderr[-2000:]}") from None


def salt_json(*args: str, timeout: float = 120) -> dict:
    """Run `salt ... --out=json --static` and return {minion: return}."""
    proc = salt(*args, "--out=json", "--static", timeout=timeout)
    if proc.returncode == EX_USAGE:  # a command line salt refuses: no publish, never "no answer yet"
        raise RuntimeError(f"salt {' '.join(args)}: {proc.stderr.strip()[-500:]}")
    try:
        return json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise RuntimeError(f"salt {' '.join(args)}: {proc.stdout}{proc.stderr}") from None


MASTER_RET_PORT = 4506  # Salt's default ret_port: the master's request server


def master_missing(since: float) -> str | None:
    """What the lab's master, started at `since` (time.time()), does not
    have yet before a `salt` command can use it, or None when it has it
    all: the readiness mark and the workers' socket of this start (Salt
    writes both as it starts: a restart's are newer than `since`), and its
    request port taking connections.  A `salt` command sent before that
    waits out its request timeouts ("Request timed out while waiting for a
    response. reconnecting."): CI's first test.ping after a master restart
    did not end in 30 s."""
    cfg = yaml.safe_load((MASTER_DIR / "master").read_text())
    for mark in (Path(cfg["cachedir"]) / "health" / "ready", Path(cfg["sock_dir"]) / "workers-default.ipc"):
        try:
            if mark.stat().st_mtime < since - 1:
                return f"{mark} is from an earlier start"
        except FileNotFoundError:
            return f"no {mark} yet"
    port = cfg.get("ret_port", MASTER_RET_PORT)
    try:
        with socket.create_connection((cfg["interface"], port), timeout=2):
            pass
    except OSError as exc:
        return f"{cfg['interface']}:{port} refuses connections ({exc})"
    return None


def wait_for_master(since: float, timeout: float = 60, master_alive=lambda: True) -> float:
    """Wait until the master started at `since` takes `salt` commands
    (master_missing); the seconds it took.  RuntimeError, with the master's
    log, when it died or did not get there in `timeout` seconds."""
    start = time.monotonic()
    while True:
        if not master_alive():
            raise RuntimeError(f"the salt-master died; its log ends:\n{log_tail(MASTER_DIR / 'log')}")
        missing = master_missing(since)
        if missing is None:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise RuntimeError(
                f"the salt-master is not ready after {timeout:.0f} s: {missing}; its log ends:\n{log_tail(MASTER_DIR / 'log')}"
            )
        time.sleep(0.2)


def wait_for_minions(ids: list[str], timeout: float = 60, master_alive=lambda: True, rounds: int = 3) -> float:
    """Wait until every minion has answered test.ping (keys are
    auto-accepted); each round asks only those that have not.  Returns the
    seconds it took; bounded by `timeout` (but at least `rounds` rounds) and
    60 rounds.  Call wait_for_master first after starting the master.

    A round is one `salt` run, and it can take far longer than its `-t`: a
    minion that reconnects after the publish is waited for through
    saltutil.find_job (16 s here right after a master restart, twice that
    on a slower machine), and a master busy with the reactor's work answers
    late.  A round that outlives its own bound (30 s) is killed and counts
    as a round with no answer, not as the end of the wait."""
    start = time.monotonic()
    answered: set[str] = set()
    for done in range(1, 61):
        if not master_alive():
            raise RuntimeError(f"the salt-master died; its log ends:\n{log_tail(MASTER_DIR / 'log')}")
        missing = sorted(set(ids) - answered)
        try:
            pings = salt_json("-L", ",".join(missing), "test.ping", "-t", "5", timeout=30)
        except subprocess.TimeoutExpired:
            print(f"salt test.ping to {missing}: no end in 30 s (killed; asking again)")
            pings = {}
        answered |= {m for m, ret in pings.items() if ret is True}
        if answered >= set(ids):
            return time.monotonic() - start
        if time.monotonic() - start > timeout and done >= rounds:
            break
        time.sleep(1)
    missing = sorted(set(ids) - answered)
    raise RuntimeError(
        f"minions {missing} did not answer test.ping within {time.monotonic() - start:.0f} s; "
        f"the master {'runs' if master_alive() else 'is dead'}, its log ends:\n{log_tail(MASTER_DIR / 'log')}"
    )


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log (for a failure's message)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


def sync_all(*target: str, timeout: float = 300) -> dict:
    """`saltutil.sync_all` on the target (`"*"`, a minion id, or `"-L",
    "a,b"`), then a module refresh that returns only once each minion has
    done it (`saltutil.refresh_modules async=False`).  sync_all's own refresh
    is asynchronous: a job started right after it may still run the old
    modules, and with `autoload_dynamic_modules: False` (the lab's minions,
    docs/operations.md) no state run syncs or reloads them by itself."""
    synced = salt_json(*target, "saltutil.sync_all", timeout=timeout)
    salt_json(*target, "saltutil.refresh_modules", "async=False", timeout=120)
    return synced


def converge(ids: list[str], before_highstate=lambda: None) -> bool:
    """sync_all, then a highstate when salt/top.sls exists (after
    `before_highstate()`).  True if nothing failed."""
    synced = sync_all("*")
    bad = sorted(m for m in ids if not isinstance(synced.get(m), dict))
    if bad:
        print(f"saltutil.sync_all failed on {bad}: {[synced.get(m) for m in bad]}")
        return False
    print(f"saltutil.sync_all: {len(synced)} minions synced")
    # sync_all refreshes the execution modules but not the minion's beacon
    # loader: beacon.present would not find the project's `carp` beacon
    # until sync_beacons (refresh=True) refreshes it.
    salt_json("*", "saltutil.sync_beacons", timeout=120)
    if not (REPO / "salt" / "top.sls").exists():
        print("salt/top.sls does not exist yet: skipping the highstate")
        return True
    before_highstate()
    results = apply(ids)
    return _report_highstate(ids, results)


def apply(ids: list[str], *mods: str, attempts: int = 20) -> dict:
    """state.apply (highstate, or `mods`) on the minions `ids`.  A state run
    already in progress (the reactor's state.apply haproxy after a CARP
    transition) makes a minion refuse: wait for it and apply again, bounded."""
    args = ["state.apply", ",".join(mods)] if mods else ["state.apply"]
    results = salt_json("-L", ",".join(ids), *args, timeout=600)
    for _ in range(attempts):
        # No answer at all: the lab on 2 cores sometimes loses a minion's
        # return.  A state run is idempotent, so ask again (queued behind it
        # if it is in fact still running).
        lost = [m for m in ids if _lost(results.get(m))]
        if lost:
            print(f"state.apply: no answer from {lost}; asking again")
            results.update(salt_json("-L", ",".join(lost), *args, "queue=True", timeout=600))
        busy = [m for m in ids if _busy(results.get(m))]
        if not busy and not any(_lost(results.get(m)) for m in ids):
            break
        if not busy:
            continue
        print(f"state.apply: a state run is in progress on {busy}; waiting for it")
        reap_lingering_jobs(busy)
        time.sleep(3)
        results.update(salt_json("-L", ",".join(busy), *args, timeout=600))
    return results


def salt_run_json(*args: str, timeout: float = 120) -> dict:
    """`salt-run ... --out=json` against the lab's master."""
    proc = subprocess.run(
        [str(BIN / "salt-run"), "-c", str(MASTER_DIR), *args, "--out=json"], capture_output=True, text=True, timeout=timeout
    )
    try:
        return json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        return {}


def reap_lingering_jobs(ids: list[str]) -> list[str]:
    """Job processes that outlive their job.  Seen in the lab with Salt 3008:
    a minion's job process sends its return (the master has it) and never
    exits; the minion then refuses every state run ("is running as PID ...")
    and a queued one waits forever.  For each job a minion reports running
    whose return the master already holds: SIGKILL to its process when it
    is that job's (started within seconds of the jid), and the minion's proc
    file removed (it may name a pid since reused).  Returns (and prints)
    the processes it killed; a stale proc file alone is removed quietly."""
    done = []
    # a booted host's minion reports pids of its own pid namespace, not
    # this machine's: nothing of it is killed from here
    ids = [i for i in ids if i not in ((state.load() or {}).get("booted") or [])]
    if not ids:
        return done
    running = salt_json("-L", ",".join(ids), "saltutil.running", "-t", "20", timeout=60)
    for minion, jobs in running.items():
        for job in jobs if isinstance(jobs, list) else []:
            jid, pid = str(job.get("jid", "")), job.get("pid")
            if not (jid.isdigit() and len(jid) == 20 and isinstance(pid, int)):
                continue
            if minion not in salt_run_json("jobs.lookup_jid", jid):
                continue  # really running: its caller waits for it
            started = time.mktime(time.strptime(jid[:14], "%Y%m%d%H%M%S"))
            proc_start = _process_start(pid)
            for proc_file in (MINIONS_DIR / minion).glob(f"**/proc/{jid}"):
                proc_file.unlink(missing_ok=True)
            if proc_start is not None and abs(proc_start - started) < 10:
                os.kill(pid, signal.SIGKILL)
                done.append(f"{minion}: job {jid} ({job.get('fun')}) had returned but its process {pid} still ran; killed it")
            # else: only a stale proc file (its pid since reused), removed;
            # nothing an operator of the lab needs to read about
    for line in done:
        print(f"lab: {line}", flush=True)
    return done


def _process_start(pid: int) -> float | None:
    """A process's start, as an epoch time, from /proc."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
        btime = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
    except (OSError, StopIteration):
        return None
    ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def _lost(ret) -> bool:
    return ret is None or ret == "" or (isinstance(ret, str) and "did not return" in ret)


def _busy(ret) -> bool:
    return isinstance(ret, list) and any("is running as PID" in str(item) for item in ret)


def _report_highstate(ids: list[str], results: dict) -> bool:
    ok = True
    for minion in ids:
        ret = results.get(minion)
        if not isinstance(ret, dict):
            ok = False
            print(f"highstate {minion}: {ret!r}")
            continue
        failed = {k: v for k, v in ret.items() if isinstance(v, dict) and v.get("result") is False}
        changed = sum(1 for v in ret.values() if isinstance(v, dict) and v.get("changes"))
        print(f"highstate {minion}: {len(ret)} states, {changed} changed, {len(failed)} failed")
        for key, value in failed.items():
            ok = False
            print(f"  FAILED {key}: {value.get('comment')}")
    return ok


def _sock_dir(root, longest_socket: str) -> str:
    sock_dir = root / "run"
    if len(str(sock_dir / longest_socket)) >= SOCKET_MAX:
        raise RuntimeError(f"{sock_dir} is too long for unix sockets: move the repository to a shorter path")
    return str(sock_dir)


def _dump(path, data) -> None:
    path.write_text(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))
