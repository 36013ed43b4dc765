"""
The HAProxy process, one of the three files of the ``haproxy_cfg`` execution
module (virtual name ``haproxy_cfg``; ``haproxy_cfg.py`` has the module's
overview, its settings and the configuration): its status, and start,
reload and stop the way the OS runs it (the product's systemd unit on
Debian, ``rc.d/lb_haproxy`` under ``daemon(8)`` on FreeBSD, by hand
elsewhere).

How a reload keeps every connection: HAProxy runs in master-worker mode and
its stats socket has ``expose-fd listeners``.  ``reload`` sends SIGUSR2 to
the master (found by its pidfile); the master re-executes itself with the
new configuration and the new worker takes the *same* listening sockets over
from the old one, so no connection waits in a socket that is about to close
(what a plain ``haproxy -sf`` restart loses).  Old workers finish their
sessions, bounded by ``hard-stop-after``.
"""

import logging
import os
import signal
import subprocess
import tempfile
import time

from salt.exceptions import CommandExecutionError

import haproxy_config
import haproxy_io
import lb_boot
import lb_files
import lb_fresh
import lb_generation
import lb_parameters
import lb_render_haproxy

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

try:
    import psutil

    HAS_PSUTIL = True
except ImportError:  # pragma: no cover - Salt depends on psutil
    HAS_PSUTIL = False

log = logging.getLogger(__name__)

__virtualname__ = "haproxy_cfg"


def __virtual__():
    if not HAS_PSUTIL:
        return (False, "haproxy_cfg's process functions need psutil")
    return __virtualname__


def _settings():
    return __salt__["haproxy_cfg.settings"]()


def _pidfile_of(config_path, s):
    """The pidfile HAProxy itself will write: the config's `pidfile`
    directive (global), else the setting."""
    text = haproxy_io.read(config_path)
    if text:
        try:
            g = haproxy_config.parse(text).find("global")
        except haproxy_config.ConfigError:
            g = None
        if g is not None:
            for d in g.directives():
                w = d.split()
                if len(w) == 2 and w[0] == "pidfile":
                    return w[1], True
    return s["pidfile"], False


def _proc(pid):
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        name = p.name()
        exe = os.path.basename((p.cmdline() or [""])[0])
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return p if "haproxy" in (name, exe) else None


def _children(p):
    out = []
    try:
        kids = p.children()
    except psutil.NoSuchProcess:
        return out
    for c in kids:
        try:
            if c.status() != psutil.STATUS_ZOMBIE and c.name() == "haproxy":
                out.append(c.pid)
        except psutil.NoSuchProcess:
            continue
    return sorted(out)


def _linux_listening_inodes(pid):
    """Inodes of the TCP sockets `pid` holds that are listening, read the
    cheap way: the LISTEN lines of /proc/<pid>/net/tcp{,6} only.  (psutil
    parses every line, and after a load there are tens of thousands of
    TIME_WAIT lines: ~30 ms a call, on the CPU the clients need.)"""
    fds = set()
    base = f"/proc/{pid}/fd"
    for fd in os.listdir(base):
        try:
            target = os.readlink(f"{base}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            fds.add(target[8:-1])
    if not fds:
        return []
    found = []
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        # st 0A (TCP_LISTEN) is the only " 0A " word on a line: jump from
        # one to the next at C speed instead of splitting every line
        i = data.find(b" 0A ")
        while i != -1:
            start = data.rfind(b"\n", 0, i) + 1
            end = data.find(b"\n", i)
            end = len(data) if end == -1 else end
            fields = data[start:end].split()
            if len(fields) > 9 and fields[3] == b"0A" and fields[9].decode() in fds:
                found.append(fields[1].decode())
            i = data.find(b" 0A ", end)
    return found


def _listening(pid):
    """The TCP addresses `pid` listens on ([] once it has let go of them)."""
    if _proc(pid) is None:
        return []
    if os.path.isdir(f"/proc/{pid}/fd"):
        try:
            return _linux_listening_inodes(pid)
        except OSError:
            return []
    try:
        return [f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []


def status(pidfile=None):
    """
    Whether HAProxy runs: the master's pid (from the pidfile), its workers,
    and whether it runs in master-worker mode.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.status
    """
    s = _settings()
    pidfile = pidfile or _pidfile_of(s["config"], s)[0]
    out = {"running": False, "pidfile": pidfile, "master": None, "workers": [], "master_worker": False, "pids": []}
    text = haproxy_io.read(pidfile)
    pids = [int(x) for x in (text or "").split() if x.isdigit()]
    procs = [p for p in (_proc(pid) for pid in pids) if p is not None]
    if not procs:
        return out
    p = procs[0]
    cmd = p.cmdline()
    workers = _children(p)
    out.update(running=True, master=p.pid, pids=[x.pid for x in procs], workers=workers, cmdline=cmd)
    out["master_worker"] = bool(workers) and ("-W" in cmd or "-Ws" in cmd or _global_has(s["config"], "master-worker"))
    if not out["master_worker"]:
        out["workers"] = []
    return out


def _global_has(path, keyword):
    text = haproxy_io.read(path)
    if not text:
        return False
    try:
        g = haproxy_config.parse(text).find("global")
    except haproxy_config.ConfigError:
        return False
    return g is not None and any(d.split()[0] == keyword for d in g.directives())


def _wait(predicate, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _ensure_state_file(s):
    path = s.get("state_file")
    if not path:
        return None
    if not os.path.exists(path):
        d = os.path.dirname(path)
        if not os.path.isdir(d):
            os.makedirs(d, mode=0o755)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("1\n")
    return path


def _systemctl(verb, unit):
    try:
        lb_boot.systemctl(__salt__["cmd.run_all"], verb, unit)
    except RuntimeError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _unit(config, s):
    """haproxy.service when systemd runs this host, the unit carries the
    product's drop-in and HAProxy runs on the default config: start and
    stop go through it (lb_boot)."""
    return (
        lb_boot.managed_unit(lb_boot.HAPROXY_UNIT)
        if config == s["config"] == lb_parameters.of("Debian", "node")["haproxy_config"]
        else None
    )


def _supervisor(config, s, running=False):
    """What starts and stops HAProxy here, so that it is restarted whatever
    ends it: ("systemctl", "haproxy.service") under systemd (above), ("service",
    "lb_haproxy") on FreeBSD once the host SLS installed rc.d/lb_haproxy
    (daemon(8), lb_boot) on the default config, None otherwise (this module
    starts it itself).  With running=True, on FreeBSD only if daemon(8)
    supervises the HAProxy that runs now (one started by hand is not)."""
    if s["os_family"] != "FreeBSD":
        unit = _unit(config, s)
        return ("systemctl", unit) if unit else None
    if (
        config != s["config"]
        or config != lb_parameters.of("FreeBSD", "node")["haproxy_config"]
        or not os.path.exists(lb_boot.FREEBSD_HAPROXY_RC)
    ):
        return None
    if running and not _daemon_supervises():
        return None
    return ("service", lb_boot.FREEBSD_HAPROXY_SERVICE)


def _daemon_supervises():
    """Whether daemon(8) runs, by rc.d/lb_haproxy's pid file (FreeBSD)."""
    try:
        with open(lb_boot.FREEBSD_HAPROXY_SUPERVISOR_PID, encoding="ascii") as fh:
            pid = int(fh.read().split()[0])
        return psutil.Process(pid).name() == "daemon"
    except (OSError, ValueError, IndexError, psutil.Error):
        return False


def _supervise(sup, verb):
    kind, name = sup
    if kind == "systemctl":
        _systemctl(verb, name)
        return f"systemctl {verb} {name}"
    argv = ["service", name, "one" + verb]  # one*: whatever rc.conf says yet
    res = __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True, output_loglevel="quiet")
    if res["retcode"] != 0:
        raise CommandExecutionError(
            f"{' '.join(argv)} failed (exit {res['retcode']}): {(res.get('stdout', '') + res.get('stderr', '')).strip()}"
        )
    return " ".join(argv)


def _start_by_hand(cmd, env):
    with tempfile.TemporaryFile(mode="w+") as out:
        # not a pipe: the daemon would keep it open
        r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=60, check=False, close_fds=True, cwd="/")
        out.seek(0)
        output = haproxy_io.haproxy_message(out.read())
    if r.returncode != 0:
        raise CommandExecutionError(f"haproxy did not start (exit {r.returncode}):\n{output}")
    return output


def start(config=None, takeover=None):
    """
    Start HAProxy in master-worker mode if it is not running:
    ``haproxy -W -D -f <config> [-p <pidfile>] -S <master socket>``, after a
    ``haproxy -c``.  Waits for the first worker.  On a host that runs
    systemd, with the product's drop-in on haproxy.service (the ``host``
    SLS), ``systemctl start haproxy.service`` instead: systemd then
    restarts it whatever ends it (lb_boot).

    takeover
        Pids of a running HAProxy that is not in master-worker mode (e.g.
        one started by the package with its default config): passed as
        ``-sf`` so it finishes its sessions and exits.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.start
    """
    s = _settings()
    config = config or s["config"]
    current = status()
    if current["running"] and not takeover:
        return {"started": False, "master": current["master"], "workers": current["workers"], "comment": "HAProxy is already running"}
    if not os.path.exists(config):
        raise CommandExecutionError(f"{config} does not exist")
    chk = haproxy_io.run_check(config, s)
    if not chk["valid"]:
        raise CommandExecutionError(f"haproxy -c refused {config}; not started:\n{chk['message']}")
    pidfile, in_config = _pidfile_of(config, s)
    for path in (pidfile, s["socket"], s["master_socket"]):
        d = os.path.dirname(path)
        if d and not os.path.isdir(d):
            os.makedirs(d, mode=0o755)
    cmd = [haproxy_io.binary(s["binary"]), "-W", "-D", "-f", config]
    if not in_config:
        cmd += ["-p", pidfile]
    if s.get("master_socket"):
        cmd += ["-S", f"{s['master_socket']},mode,600"]
    if takeover:
        cmd += ["-sf", *[str(p) for p in takeover]]
    env = dict(os.environ)
    state = _ensure_state_file(s)
    if state:
        env[lb_render_haproxy.SERVER_STATE_ENV] = state
    sup = None if takeover else _supervisor(config, s)
    if sup:
        output = "started by " + _supervise(sup, "start")
    else:
        output = _start_by_hand(cmd, env)
    haproxy_io.drop_context(__context__)

    def ready():
        st = status(pidfile)
        return st if st["running"] and st["workers"] and (not takeover or st["master"] not in takeover) else None

    st = _wait(ready, float(s["timeout"]))
    if not st:
        raise CommandExecutionError(f"haproxy was started but no worker runs after {s['timeout']}s (a bind error? see its log):\n{output}")
    _wait(lambda: _master_workers(s) is not False, float(s["timeout"]))  # its CLI answers: it takes a reload
    return {"started": True, "master": st["master"], "workers": st["workers"], "comment": output}


def stop(graceful=False, pidfile=None):
    """
    Stop HAProxy: SIGTERM to the master (SIGUSR1 with ``graceful=True``:
    the workers finish their sessions first), and wait for it to exit.
    Under systemd (see ``start``): ``systemctl stop haproxy.service``.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.stop
        salt-call haproxy_cfg.stop graceful=True
    """
    s = _settings()
    st = status(pidfile)
    if not st["running"]:
        return {"stopped": False, "comment": "HAProxy is not running"}
    sup = None if pidfile else _supervisor(s["config"], s, running=True)
    if sup:
        if graceful:
            # systemd or daemon(8) would restart a master that ends by itself
            raise CommandExecutionError(
                f"HAProxy runs under {sup[1]}: drain its servers (haproxy_cfg.drain), then stop it without graceful=True"
            )
        return {"stopped": True, "master": st["master"], "comment": _supervise(sup, "stop")}
    sig = signal.SIGUSR1 if graceful else signal.SIGTERM
    for pid in st["pids"]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    gone = _wait(lambda: all(_proc(p) is None for p in st["pids"] + st["workers"]), float(s["timeout"]) * (6 if graceful else 1))
    if not gone:
        raise CommandExecutionError(f"HAProxy (master {st['master']}) did not exit after {sig.name}")
    return {"stopped": True, "master": st["master"]}


def dump_server_state(path=None):
    """
    Save the runtime server states (``show servers state``: drain,
    maintenance, weights) to the state file that the next worker loads, so
    they survive a reload.  Done by ``reload`` before it signals the master.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.dump_server_state
    """
    s = _settings()
    path = path or s.get("state_file")
    if not path:
        return None
    text = haproxy_io.ask(s["socket"], "show servers state")
    if not text.startswith("1\n"):
        raise CommandExecutionError(f"unexpected answer to show servers state: {text[:200]!r}")
    lb_files.write_atomic(path, text, 0o644)
    return path


RESIGNAL_AFTER = 1.0


def _master_workers(s):
    """The worker pids the master CLI lists; None without a master socket,
    False while the master does not answer (it is re-executing itself)."""
    path = s.get("master_socket")
    if not path or not os.path.exists(path):
        return None
    try:
        text = haproxy_io.ask(path, "show proc", timeout=2.0)
    except CommandExecutionError:
        return False
    section, workers = None, set()
    for line in text.splitlines():
        if line.startswith("# "):
            section = line[2:].strip()
        elif section == "workers" and line.split() and line.split()[0].isdigit():
            workers.add(int(line.split()[0]))
    return workers if text.startswith("#<PID>") else False


def reload(config=None):
    """
    Reload HAProxy without dropping a connection: SIGUSR2 to the master
    (master-worker mode; the new worker takes the listening sockets over
    from the old one), then wait until a new worker runs and no old worker
    listens any more.  Runtime server states are saved first and loaded by
    the new worker.  With no HAProxy running, start it; with one that is
    not in master-worker mode, take over from it (``-sf``).

    The configuration is not checked here: ``write`` checks before it
    swaps, and the master refuses a bad file by keeping the old workers.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.reload
    """
    s = _settings()
    st = status()
    if not st["running"]:
        res = start(config)
        res["reloaded"] = False
        return res
    if not st["master_worker"]:
        res = start(config, takeover=st["pids"])
        res.update(reloaded=True, comment=f"took over from HAProxy {st['pids']} (not in master-worker mode)")
        return res
    old = set(st["workers"])
    try:
        _ensure_state_file(s)
        dump_server_state()
    except (CommandExecutionError, OSError) as exc:
        log.warning("haproxy_cfg: runtime server states not saved before the reload: %s", exc)
    master = psutil.Process(st["master"])
    timeout = float(s["timeout"])
    _wait(lambda: _master_workers(s) is not False, timeout)  # a reload still in flight
    t0 = time.monotonic()
    sent = [t0]
    os.kill(st["master"], signal.SIGUSR2)

    def new_workers():
        # the master CLI's list when there is one (a socket call; psutil
        # walks every process of the host to find children), else psutil;
        # once the CLI lists the new worker the master runs its loop again
        # and takes the next reload
        listed = _master_workers(s)
        if listed is None:
            found = [p for p in _children(master) if p not in old]
        else:
            found = sorted(listed - old) if listed else []
        if not found and time.monotonic() - sent[-1] > RESIGNAL_AFTER:
            # a signal that reached the master while it was re-executing
            # itself is lost (seen with HAProxy 2.6); a second reload of
            # the same file is harmless
            sent.append(time.monotonic())
            os.kill(st["master"], signal.SIGUSR2)
        return found

    new = _wait(new_workers, timeout, interval=0.025)
    if not new:
        detail = ""
        try:
            detail = __salt__["haproxy_cfg.master_command"]("show proc")
        except CommandExecutionError:
            pass
        raise CommandExecutionError(
            f"HAProxy's master {st['master']} started no new worker within {timeout:g}s; the old workers keep serving.\n{detail}".rstrip()
        )

    still = _wait(lambda: not any(_listening(p) for p in old), timeout, interval=0.05)
    haproxy_io.drop_context(__context__)
    return {
        "reloaded": True,
        "master": st["master"],
        "old_workers": sorted(old),
        "new_workers": new,
        "old_still_listening": [] if still else sorted(p for p in old if _listening(p)),
        "seconds": round(time.monotonic() - t0, 3),
        "signals": len(sent),
    }


def loaded(path=None, wait=0):
    """
    Whether the running HAProxy has loaded the configuration file: the
    generation marker the file carries (``description lb-config-sha256=``,
    the sha256 of the rest of the file, written by the ``haproxy_section``
    states) against the one the running worker reports in ``show info``.
    A reload that failed leaves the old workers, which report the old one.

    wait
        Seconds to keep asking while the answer is False (right after a
        reload an old worker may still answer on the shared stats socket).

    Returns ``{"running", "file", "loaded", "current", "reason"}``:
    ``current`` is True when both are the same, False when HAProxy runs
    and reports another generation (or none, or does not answer on its
    stats socket), None when HAProxy does not run or the file carries no
    valid marker (hand-written, or edited by hand since): nothing to
    compare.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.loaded
    """
    deadline = time.monotonic() + float(wait)
    while True:
        out = _loaded(path)
        if out["current"] is not False or time.monotonic() >= deadline:
            return out
        time.sleep(0.1)


def _loaded(path):
    s = _settings()
    path = path or s["config"]
    file_gen = haproxy_config.file_generation(haproxy_io.read(path))
    marker = f"{haproxy_config.MARKER_PREFIX} marker"
    if not status()["running"]:
        return lb_generation.compare("HAProxy", path, file_gen, running=False, marker=marker)
    try:
        gen = haproxy_config.loaded_generation(haproxy_io.ask(s["socket"], "show info", timeout=5.0))
    except CommandExecutionError as exc:
        return lb_generation.compare("HAProxy", path, file_gen, unanswered=f"cannot ask HAProxy which config it runs: {exc}", marker=marker)
    return lb_generation.compare("HAProxy", path, file_gen, gen, marker=marker)
