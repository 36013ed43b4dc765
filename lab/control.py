"""`python -m lab up|down|status|exec`, and helpers the lab tests use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from lab import LAB_DIR, PILLAR, REPO, lock, pillar_repo, saltcfg, state
from lab.plan import plan_from_pillar

SUPERVISOR_LOG = LAB_DIR / "supervisor.log"
BUILD_TIMEOUT = 120.0  # seconds for the supervisor to report "ready"
STOP_TIMEOUT = 60.0  # seconds for the supervisor to stop everything on `down`
GALERA_TIMEOUT = 240.0  # seconds for the supervisor's Galera bootstrap
MINION_TIMEOUT_BOOTED = 180.0  # seconds for booted hosts' minions: boot, then the minion's start
STOP_NAMESPACES_GRACE = 10.0  # seconds between SIGTERM and SIGKILL for the hosts' processes


def running() -> dict | None:
    """The state of a running lab (its supervisor alive), else None."""
    st = state.load()
    return st if st and state.alive(st.get("supervisor")) else None


def up(galera6: bool = False, wait: float = 0.0, booted: bool = False) -> int:
    """Bring the lab up and converge it.  On a running lab: converge again
    (sync_all and highstate), without rebuilding.  Another clone's lab on this
    machine: wait up to `wait` seconds for it to go (lab/lock.py).  With
    `booted`, the load balancers are Debian hosts booted by systemd under
    nspawn (lab/lbhosts.py)."""
    t0 = time.monotonic()
    st = running()
    if st and st["phase"] != "ready":
        print(f"the lab is {st['phase']} (supervisor pid {st['supervisor']['pid']}); try again or run down")
        return 1
    if st:
        print(f"the lab is already up (supervisor pid {st['supervisor']['pid']}): converging it again")
        if st["galera6"] != galera6 or bool(st.get("booted")) != booted:
            print(f"note: it was built with galera6={st['galera6']}, booted={bool(st.get('booted'))}; run down first to change that")
    else:
        if state.load():
            print("a previous lab did not stop cleanly: removing what is left of it")
            if down() != 0:
                return 1
        plan = plan_from_pillar(PILLAR, galera6=galera6)  # a bad pillar fails here, before anything starts
        try:
            machine_lock = lock.acquire(lock.LAB_LOCK, wait, what=f"lab supervisor for {REPO}")
        except TimeoutError as exc:
            print(f"another lab is running on this machine: {exc}; take it down first (from its clone: make lab-down)")
            return 1
        stale = state.delete_interfaces(plan.bridges + plan.root_links)
        if stale:
            print(f"removed interfaces an earlier lab left on this machine (none is recorded): {' '.join(stale)}")
        saltcfg.write_configs(plan, booted)
        try:
            if booted:
                from lab import booted as booted_root

                booted_root.build_root()  # cached under .lab/boot; built here, before the supervisor's clock
            _start_supervisor(galera6, machine_lock, booted)
        except (RuntimeError, KeyboardInterrupt) as exc:
            os.close(machine_lock)
            print(f"building the lab failed: {str(exc) or 'interrupted'}\n--- {SUPERVISOR_LOG} (end) ---")
            print(saltcfg.log_tail(SUPERVISOR_LOG, 30))
            down()
            return 1
        os.close(machine_lock)  # the supervisor holds it now
        print(f"network and daemons up in {time.monotonic() - t0:.1f} s")
        st = running()
        if st is None:
            print(f"the supervisor exited right after the build; see {SUPERVISOR_LOG}")
            down()
            return 1
    ids = plan_from_pillar(PILLAR, galera6=st["galera6"]).minion_ids

    def master_alive() -> bool:
        return state.alive(st["daemons"]["salt-master"])

    try:
        # a new lab's master directory is new: whatever is in it is this start's
        saltcfg.wait_for_master(0, timeout=60, master_alive=master_alive)
        took = saltcfg.wait_for_minions(ids, timeout=MINION_TIMEOUT_BOOTED if st.get("booted") else 60, master_alive=master_alive)
        print(f"all {len(ids)} minions answer test.ping (waited {took:.1f} s)")
        converged = saltcfg.converge(ids, before_highstate=_wait_galera)
    except KeyboardInterrupt:
        print("interrupted: taking the lab down")
        down()
        return 130
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        converged = False
        print(f"converging failed: {exc}")
    took = time.monotonic() - t0
    status()
    if not converged:
        print("the lab is up but did not converge; inspect it, then: python -m lab down")
        return 1
    print(f"lab converged in {took:.1f} s (from the command to the last highstate)")
    return 0


def _wait_galera(timeout: float = GALERA_TIMEOUT) -> None:
    """Wait for the supervisor's Galera bootstrap (lab/galera.py): the
    highstate applies the probe, which needs a running server."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        st = running()
        if st is None:
            raise RuntimeError("the supervisor is gone")
        phase = st.get("galera", {}).get("phase", "synced")  # a lab from before Galera
        if phase == "synced":
            print(f"galera synced (waited {time.monotonic() - t0:.1f} s)")
            return
        if phase.startswith("failed"):
            raise RuntimeError(f"galera {phase}; see {SUPERVISOR_LOG} and .lab/hosts/db-*/var/log/mysql/error.log")
        time.sleep(0.5)
    raise RuntimeError(f"galera was not synced within {timeout:.0f} s")


def down() -> int:
    """Stop the lab: ask the supervisor (SIGTERM), then sweep whatever is left
    from the record.  Works after a failed or interrupted `up` too."""
    st = state.load()
    if not st:
        print("no lab to take down")
        return 0
    # Every process in a lab host first, by pid, found by its network
    # namespace: the daemons the states started (haproxy, keepalived,
    # xinetd, mariadbd ...) are in no record, and would outlive the hosts.
    found = state.stop_namespaces(st, grace=STOP_NAMESPACES_GRACE)
    if found:
        print(f"stopped {len(found)} processes in the lab's hosts")
    sup = st.get("supervisor")
    if state.alive(sup):
        os.kill(sup["pid"], signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while state.alive(sup) and time.monotonic() < deadline:
            time.sleep(0.2)
        state.stop([sup], grace=0, sig=signal.SIGKILL)
    st = state.load() or st  # the supervisor's last word on what it created
    state.sweep(st)
    pillar_repo.stop_agent()  # the gpg-agent the master's GPG renderer started for its key directory
    left = state.leftovers(st)
    if left:
        print("could not remove: " + "; ".join(left))
        return 1
    state.remove()
    from lab import sshcfg

    sshcfg.remove_keys()
    print("lab is down")
    return 0


def status() -> int:
    st = state.load()
    if not st:
        print("lab: not running")
        return 1
    sup = st["supervisor"]
    print(f"lab: {st['phase']}, supervisor pid {sup['pid']} ({'alive' if state.alive(sup) else 'dead'})")
    print(f"{'host':8} {'pid':>7}  addresses (live)")
    for name, host in st["hosts"].items():
        node = st["nodes"].get(name)
        pid = node["pid"] if node else "-"
        live = run(name, "ip", "-br", "-4", "addr", "show", timeout=5) if state.alive(node) else None
        if live and live.returncode == 0:
            addresses = " ".join(
                f"{fields[0].split('@')[0]}={','.join(fields[2:])}"
                for fields in (line.split() for line in live.stdout.splitlines())
                if fields and fields[0] != "lo"
            )
        else:
            addresses = "(down) " + " ".join(host["addresses"])
        print(f"{name:8} {pid:>7}  {addresses}")
    print(f"{'daemon':20} {'host':8} {'pid':>7}  state")
    for name, rec in st["daemons"].items():
        print(f"{name:20} {rec['host'] or '(root)':8} {rec['pid']:>7}  {'running' if state.alive(rec) else 'DEAD'}")
    print(f"bridges: {' '.join(st['bridges'])}")
    print(f"master: salt -c {saltcfg.MASTER_DIR.relative_to(REPO)} '*' test.ping")
    return 0


def host_pid(host: str) -> int:
    st = running()
    node = (st or {}).get("nodes", {}).get(host)
    if not node or node.get("kind") != "host" or not state.alive(node):
        raise LookupError(f"no running lab host {host!r}")
    return node["pid"]


def booted_hosts() -> list[str]:
    return list((running() or {}).get("booted") or [])


def run(host: str, *cmd: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
    """Run a command in a lab host: its network and mount namespaces, or,
    for a booted host, all of its own (lab/lbhosts.py)."""
    if host in booted_hosts():
        from lab import lbhosts

        return lbhosts.run(host, *cmd, timeout=timeout, check=check)
    return subprocess.run(["mnexec", "-a", str(host_pid(host)), *cmd], capture_output=True, text=True, timeout=timeout, check=check)


def exec_in(host: str, cmd: list[str]) -> int:
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    try:
        pid = host_pid(host)
        if host in booted_hosts():
            from lab import booted, lbhosts

            init = lbhosts.leader((running() or {})["daemons"].get(f"host@{host}"))
            if init is None:
                raise LookupError(f"the booted host {host} is not running")
            argv = booted.enter_argv(init, cmd or ["bash"], env={"TERM": os.environ.get("TERM", "dumb")})
            os.execvp(argv[0], argv)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 2
    os.execvp("mnexec", ["mnexec", "-a", str(pid), *(cmd or ["bash"])])


def stop_master() -> None:
    """Stop the lab's salt-master by its pid (its whole group), as an
    outage would: the minions keep running without it."""
    st = running()
    if st is None:
        raise RuntimeError("no lab is running")
    state.stop([st["daemons"]["salt-master"]], grace=10)


def start_master() -> None:
    """Start the lab's salt-master again (its own session) and record it;
    return once it answers the minions (every minion pings)."""
    st = running()
    if st is None:
        raise RuntimeError("no lab is running")
    if state.alive(st["daemons"]["salt-master"]):
        return
    log = saltcfg.MASTER_DIR / "console.log"
    since = time.time()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            saltcfg.master_command(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
        )
    rec = state.record(proc.pid, group=True, host=None, cmd=saltcfg.master_command())
    with state.locked():
        st = state.load()
        st["daemons"]["salt-master"] = rec
        state.save(st)
    ids = plan_from_pillar(PILLAR, galera6=st["galera6"]).minion_ids
    saltcfg.wait_for_master(since, timeout=60, master_alive=lambda: state.alive(rec))
    saltcfg.wait_for_minions(ids, timeout=120, master_alive=lambda: state.alive(rec))


def reboot(hosts: list[str]) -> int:
    """Power-cycle booted hosts together; return once each has booted."""
    if running() is None:
        print("no lab is running", file=sys.stderr)
        return 2
    from lab import lbhosts

    t0 = time.monotonic()
    try:
        took = lbhosts.reboot(hosts)
    except (LookupError, RuntimeError) as exc:
        print(f"reboot: {exc}", file=sys.stderr)
        return 1
    for name, t in took.items():
        print(f"{name}: off {t['off'] - t0:.1f} s after `systemctl reboot`, booted {t['booted'] - t['power_on']:.1f} s after power-on")
    return 0


def _start_supervisor(galera6: bool, machine_lock: int, booted: bool = False) -> None:
    """Start the supervisor detached (own session) and wait until it reports
    ready.  It inherits the machine's lab lock and holds it while it lives."""
    LAB_DIR.mkdir(exist_ok=True)
    with open(SUPERVISOR_LOG, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab",
                "_supervise",
                "--lock-fd",
                str(machine_lock),
                *(["--galera6"] if galera6 else []),
                *(["--booted"] if booted else []),
            ],  # fmt: skip
            pass_fds=(machine_lock,),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + BUILD_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the supervisor exited with {proc.returncode}")
            st = state.load()
            if st and st.get("supervisor", {}).get("pid") == proc.pid and st["phase"] == "ready":
                return
            time.sleep(0.2)
        raise RuntimeError(f"the lab was not ready within {BUILD_TIMEOUT:.0f} s")
    except BaseException:
        # Stop it ourselves: it may not have recorded itself in state.json yet.
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        raise
