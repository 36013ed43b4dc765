"""
Manage HAProxy on a minion: its configuration section by section, validated
before it goes live, reloaded without dropping a connection, and operated at
runtime through the stats socket.

Virtual name ``haproxy_cfg`` (Salt's own ``haproxy`` name belongs to the
haproxyconn module).  All system I/O of the ``haproxy_section`` states is
here; the parsing and merging is in ``_utils/haproxy_config.py`` and the
per-node rendering in ``_utils/lb_render.py``.

Paths come from the OS (``lb_render.OS_PARAMS``: Debian or FreeBSD) and can
be overridden in the minion config or pillar under ``haproxy_cfg``:

.. code-block:: yaml

    haproxy_cfg:
      config: /etc/haproxy/haproxy.cfg
      socket: /run/haproxy/admin.sock          # the stats socket (runtime API)
      master_socket: /run/haproxy-master.sock  # the master CLI
      pidfile: /run/haproxy.pid                # holds the master's pid
      certs_dir: /etc/haproxy/certs
      state_file: /run/haproxy/server-state    # runtime states across reloads
      chroot: /var/lib/haproxy
      binary: /usr/sbin/haproxy
      timeout: 10                              # seconds to wait for a reload

How a reload keeps every connection: HAProxy runs in master-worker mode and
its stats socket has ``expose-fd listeners``.  ``reload`` sends SIGUSR2 to
the master (found by its pidfile); the master re-executes itself with the
new configuration and the new worker takes the *same* listening sockets over
from the old one, so no connection waits in a socket that is about to close
(what a plain ``haproxy -sf`` restart loses).  Old workers finish their
sessions, bounded by ``hard-stop-after``.
"""

import datetime
import glob
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time

from salt.exceptions import CommandExecutionError

import haproxy_config
import lb_boot
import lb_files
import lb_fresh
import lb_generation
import lb_grammar
import lb_ops
import lb_render
import lb_settings
import lb_topology

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

try:
    import psutil

    HAS_PSUTIL = True
except ImportError:  # pragma: no cover - Salt depends on psutil
    HAS_PSUTIL = False

log = logging.getLogger(__name__)

__virtualname__ = "haproxy_cfg"

CONTEXT_PREFIX = "haproxy_cfg."
NAME_RE = lb_grammar.HAPROXY_RUNTIME_NAME
ADMIN_FLAGS = {
    0x01: "maint",  # forced (CLI or stats page)
    0x02: "maint-inherited",
    0x04: "maint-config",  # `disabled` in the configuration
    0x08: "drain",  # forced
    0x10: "drain-inherited",
    0x20: "maint-resolution",
    0x40: "maint-hostname",
}
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}
# `show servers state` gives a server's last check as a number (HAProxy's
# enum healthcheck_status, include/haproxy/check-t.h in 2.6); these are the
# words the stats page and `show stat` use for it
CHECK_STATUSES = {
    0: "UNK",
    1: "INI",
    2: "START",
    3: "CHECKED",
    4: "HANA",
    5: "SOCKERR",
    6: "L4OK",
    7: "L4TOUT",
    8: "L4CON",
    9: "L6OK",
    10: "L6TOUT",
    11: "L6RSP",
    12: "L7TOUT",
    13: "L7RSP",
    14: "L57DATA",
    15: "L7OK",
    16: "L7OKC",
    17: "L7STS",
    18: "PROCERR",
    19: "PROCTOUT",
    20: "PROCOK",
}


def __virtual__():
    if not HAS_PSUTIL:
        return (False, "haproxy_cfg needs psutil")
    return __virtualname__


# ---------------------------------------------------------------------------
# settings and helpers


def _os_params():
    osf = __grains__.get("os_family")
    if osf not in lb_render.OS_PARAMS:
        osf = "FreeBSD" if __grains__.get("kernel") == "FreeBSD" else "Debian"
    return osf, lb_render.OS_PARAMS[osf]


def settings():
    """
    The paths and limits this module uses: the OS defaults, overridden by
    the ``haproxy_cfg`` key of the minion config or pillar.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.settings
    """
    osf, p = _os_params()
    out = {
        "os_family": osf,
        "config": p["haproxy_config"],
        "socket": p["haproxy_socket"],
        "master_socket": p["haproxy_master_socket"],
        "pidfile": p["haproxy_pidfile"],
        "certs_dir": p["haproxy_certs_dir"],
        "state_file": p["haproxy_server_state"],
        "chroot": p["haproxy_chroot"],
        "binary": p["haproxy_binary"],
        "user": "root",
        "group": p["root_group"],
        "timeout": 10,
    }
    extra = __salt__["config.get"]("haproxy_cfg", {}) or {}
    try:
        # paths and names go into sh (the init defaults), haproxy.cfg and argv
        extra = lb_settings.validate("haproxy_cfg", extra)
    except lb_settings.SettingsError as exc:
        raise CommandExecutionError(f"invalid haproxy_cfg settings: {exc}") from exc
    out.update(extra)
    return out


def sls_params(params):
    """
    The haproxy SLS's parameters (``salt/haproxy/map.jinja``: defaults, the
    os_family's, then the pillar's ``lb_haproxy``), checked: each value goes
    into the SLS's YAML and a file sh reads.  An unknown key or a value that
    is not a plain path, package name or flag raises, naming
    ``lb_haproxy:<key>``.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.sls_params '{"pkg": "haproxy", "init_defaults": false}'
    """
    try:
        return lb_settings.validate("lb_haproxy", params)
    except lb_settings.SettingsError as exc:
        raise CommandExecutionError(f"invalid lb_haproxy settings: {exc}") from exc


def _render_params(s):
    """lb_render's path overrides from the settings."""
    return {
        "haproxy_config": s["config"],
        "haproxy_socket": s["socket"],
        "haproxy_pidfile": s["pidfile"],
        "haproxy_chroot": s["chroot"],
        "haproxy_certs_dir": s["certs_dir"],
    }


def _binary(s=None):
    s = s or settings()
    path = s["binary"]
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    for d in ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"):
        cand = os.path.join(d, "haproxy")
        if os.access(cand, os.X_OK):
            return cand
    raise CommandExecutionError(f"haproxy is not installed (no executable at {path}); install the haproxy package first")


def _drop_context():
    for key in [k for k in __context__ if str(k).startswith(CONTEXT_PREFIX)]:
        __context__.pop(key, None)


def _read(path):
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CommandExecutionError(f"cannot read {path}: {exc}") from exc


def _mode_of(path):
    try:
        return f"{stat.S_IMODE(os.stat(path).st_mode):04o}"
    except FileNotFoundError:
        return None


def _ids(user, group):
    import grp
    import pwd

    try:
        uid = user if isinstance(user, int) else pwd.getpwnam(user).pw_uid
        gid = group if isinstance(group, int) else grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise CommandExecutionError(f"unknown user or group: {exc}") from exc
    return uid, gid


def _haproxy_message(output):
    """HAProxy's own lines that matter (ALERT and WARNING), without the
    NOTICE banner."""
    lines = [x for x in output.splitlines() if x.strip() and not x.startswith("[NOTICE]")]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# the binary


def features():
    """
    What this HAProxy build offers, from ``haproxy -vv``: version, services
    (``prometheus-exporter``), feature flags, OpenSSL.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.features
    """
    key = CONTEXT_PREFIX + "features"
    if key in __context__:
        return __context__[key]
    out = subprocess.run([_binary(), "-vv"], capture_output=True, text=True, timeout=30, check=False).stdout
    version = re.search(r"^HA-?Proxy version (\S+)", out, re.M)
    services = re.search(r"^Available services\s*:\s*(.*)$", out, re.M)
    feats = re.search(r"^Feature list\s*:\s*(.*)$", out, re.M)
    ssl = re.search(r"^Running on OpenSSL version\s*:\s*(.*)$", out, re.M)
    svc = services.group(1).split() if services else []
    svc = [x for x in svc if x != "none"]
    result = {
        "version": version.group(1) if version else None,
        "services": svc,
        "prometheus": "prometheus-exporter" in svc,
        "features": {w[1:]: w[0] == "+" for w in (feats.group(1).split() if feats else []) if w[:1] in "+-"},
        "openssl": ssl.group(1).strip() if ssl else None,
    }
    __context__[key] = result
    return result


# ---------------------------------------------------------------------------
# reading the configuration


def read(path=None):
    """
    The text of the configuration file (None if it does not exist).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.read
    """
    return _read(path or settings()["config"])


def sections(path=None):
    """
    The sections of the configuration, in order: type, name, first line,
    whether it holds a secret, and its directives (secrets redacted).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.sections
        salt-call haproxy_cfg.sections path=/usr/local/etc/haproxy.conf
    """
    path = path or settings()["config"]
    text = _read(path)
    if text is None:
        raise CommandExecutionError(f"{path} does not exist")
    cfg = haproxy_config.parse(text)
    out = []
    line = len(cfg.preamble) + 1
    for s in cfg.sections:
        out.append(
            {
                "type": s.type,
                "name": s.name,
                "label": s.label,
                "line": line + len(s.leading),
                "secret": s.secret(),
                "directives": [haproxy_config.normalize(haproxy_config.redact_line(x)) for x in s.body if haproxy_config.normalize(x)],
            }
        )
        line += len(s.lines())
    return out


def section(kind, name="", path=None):
    """
    One section's text, as it is in the file (None if it is not there).
    Password hashes are redacted.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.section listen haproxy_10.2.2.4_3306
        salt-call haproxy_cfg.section global
    """
    text = _read(path or settings()["config"])
    if text is None:
        return None
    try:
        s = haproxy_config.parse(text).find(kind, name)
    except haproxy_config.ConfigError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return None if s is None else haproxy_config.redact(s.text())


# ---------------------------------------------------------------------------
# checking and writing


def _run_check(path, s):
    env = dict(os.environ)
    if s.get("state_file") and os.path.exists(s["state_file"]):
        env[lb_render.SERVER_STATE_ENV] = s["state_file"]
    r = subprocess.run([_binary(s), "-c", "-f", path], capture_output=True, text=True, timeout=60, env=env, check=False)
    message = _haproxy_message(r.stdout + "\n" + r.stderr)
    return {"valid": r.returncode == 0, "message": message}


def _map_paths(text, mapping):
    """The config text with every word equal to a key of `mapping` replaced
    by its value (cert paths pointed at their candidates for the check)."""
    for live, cand in mapping.items():
        text = re.sub(r"(?<=\s)" + re.escape(live) + r"(?=\s|$)", cand.replace("\\", "\\\\"), text, flags=re.M)
    return text


def check(path=None, text=None, files=None):
    """
    Check a configuration with the real ``haproxy -c``: the file at `path`
    (default: the live one), or `text` written to a private temporary
    directory, with the `files` it reads (``{live path: content}``, e.g. TLS
    PEM files) written beside it and its references pointed at them.
    Nothing outside that temporary directory is touched.

    Returns ``{"valid": bool, "message": HAProxy's alerts and warnings}``.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.check
        salt-call haproxy_cfg.check path=/tmp/candidate.cfg
    """
    s = settings()
    if text is None:
        return _run_check(path or s["config"], s)
    with tempfile.TemporaryDirectory(prefix="haproxy-check-") as tmp:
        mapping = {}
        for n, (live, spec) in enumerate(sorted(_normalize_files(files).items())):
            cand = os.path.join(tmp, f"{n}-{os.path.basename(live)}")
            fd = os.open(cand, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(spec["content"])
            mapping[live] = cand
        cand = os.path.join(tmp, "haproxy.cfg")
        with open(cand, "w", encoding="utf-8") as fh:
            fh.write(_map_paths(text, mapping))
        result = _run_check(cand, s)
        message = result["message"].replace(cand, path or "<candidate>")
        for live, c in mapping.items():
            message = message.replace(c, live)
        result["message"] = message
        return result


def _candidate_path(path):
    d, base = os.path.split(path)
    return os.path.join(d, f".{base}.salt-candidate")


def _check_copy_prefix(path):
    d, base = os.path.split(path)
    return os.path.join(d, f".{base}.salt-check")


def _drop_leftovers(path):
    """The check copies and the candidate a killed run left beside `path`
    (they hold the stats users' hashes)."""
    for p in [*glob.glob(glob.escape(_check_copy_prefix(path)) + "*"), _candidate_path(path)]:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _write_candidate(path, content, mode, uid, gid):
    """Write `content` beside `path` (same directory: os.replace is atomic),
    with its final mode and owner from the first byte on."""
    cand = _candidate_path(path)
    try:
        os.unlink(cand)
    except FileNotFoundError:
        pass
    fd = os.open(cand, os.O_WRONLY | os.O_CREAT | os.O_EXCL, int(mode, 8))
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, int(mode, 8))
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fd = None
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        if fd is not None:
            os.close(fd)
    return cand


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _normalize_files(files):
    out = {}
    for path, spec in (files or {}).items():
        if isinstance(spec, str):
            spec = {"content": spec}
        if not os.path.isabs(path):
            raise CommandExecutionError(f"{path} is not an absolute path")
        out[path] = {"content": spec["content"], "mode": str(spec.get("mode") or "0600").zfill(4)}
    return out


def pending(text, path=None, files=None, mode=None):
    """
    What ``write`` would change, without writing: ``{path: [reasons]}`` for
    the config and each file whose content or mode differs.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.pending "$(cat candidate.cfg)"
    """
    s = settings()
    path = path or s["config"]
    out = {}
    want = {path: {"content": text, "mode": str(mode or _mode_of(path) or "0640").zfill(4)}}
    want.update(_normalize_files(files))
    for p, spec in want.items():
        reasons = []
        current = _read(p)
        if current is None:
            reasons.append("new file")
        elif current != spec["content"]:
            reasons.append("content")
        cur_mode = _mode_of(p)
        if cur_mode is not None and cur_mode != spec["mode"]:
            reasons.append(f"mode {cur_mode} -> {spec['mode']}")
        if reasons:
            out[p] = reasons
    return out


def prune_certs(keep=None, dry_run=False):
    """
    Remove the ``*.pem`` files of the certs directory that are not in
    `keep` (the PEM files the pillar still renders): a TLS listener taken out
    of the pillar leaves no private key behind.  Only that directory, only
    ``*.pem``.  Returns the paths removed (or, with ``dry_run=True``, that
    would be).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.prune_certs dry_run=True
    """
    d = settings()["certs_dir"]
    keep = {os.path.realpath(p) for p in (keep or [])}
    if not os.path.isdir(d):
        return []
    stale = [p for p in sorted(glob.glob(os.path.join(d, "*.pem"))) if os.path.realpath(p) not in keep and os.path.isfile(p)]
    if not dry_run:
        for p in stale:
            os.unlink(p)
        if stale:
            _fsync_dir(d)
    return stale


def write(text, path=None, files=None, mode=None, user=None, group=None):
    """
    Validate, then swap: write the configuration (and the `files` it reads,
    e.g. TLS PEM files) beside the live ones, check the candidate with the
    real ``haproxy -c``, and only then move everything into place with
    ``os.replace``.  A candidate HAProxy refuses never replaces a live file:
    the candidates are removed and the error carries HAProxy's own message.

    Nothing is written when nothing differs.  Does not reload (see
    ``reload``).  Returns ``{"changed": [paths], "message": check output}``.

    text
        The whole configuration.
    path
        Default: the live config (``settings``).
    files
        ``{path: content}`` or ``{path: {"content": ..., "mode": "0600"}}``,
        written with the config; their directories are created 0700.
    mode, user, group
        Of the config file; default: the live file's, else 0640 root.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.write "$(cat new.cfg)"
    """
    s = settings()
    path = path or s["config"]
    files = _normalize_files(files)
    _drop_leftovers(path)
    todo = pending(text, path, files, mode)
    if not todo:
        return {"changed": [], "message": ""}
    try:
        st = os.stat(path)
        cur_uid, cur_gid = st.st_uid, st.st_gid
    except FileNotFoundError:
        cur_uid = cur_gid = None
    uid, gid = _ids(user if user is not None else s["user"], group if group is not None else s["group"])
    if user is None and cur_uid is not None:
        uid = cur_uid
    if group is None and cur_gid is not None:
        gid = cur_gid
    cfg_mode = str(mode or _mode_of(path) or "0640").zfill(4)
    root_uid, root_gid = _ids(s["user"], s["group"])

    candidates = {}
    check_copy = None
    try:
        for p, spec in files.items():
            if p in todo:
                d = os.path.dirname(p)
                if not os.path.isdir(d):
                    os.makedirs(d, mode=0o700)
                candidates[p] = _write_candidate(p, spec["content"], spec["mode"], root_uid, root_gid)
        d = os.path.dirname(path)
        if not os.path.isdir(d):
            os.makedirs(d, mode=0o755)
        cfg_cand = _write_candidate(path, text, cfg_mode, uid, gid) if path in todo else None
        check_text = _map_paths(text, candidates)
        if check_text != text or cfg_cand is None:
            # 0600 from its creation (mkstemp), a fresh name (O_EXCL)
            fd, check_copy = tempfile.mkstemp(prefix=os.path.basename(_check_copy_prefix(path)) + ".", dir=d)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(check_text)
            result = _run_check(check_copy, s)
        else:
            result = _run_check(cfg_cand, s)
        if not result["valid"]:
            where = check_copy or cfg_cand
            raise CommandExecutionError(
                f"haproxy -c refused the new configuration; {path} was left as it was:\n" + result["message"].replace(where, path)
            )
        for p, cand in candidates.items():
            os.replace(cand, p)
            _fsync_dir(os.path.dirname(p))
        if cfg_cand:
            os.replace(cfg_cand, path)
            _fsync_dir(d)
    finally:
        for cand in [*candidates.values(), _candidate_path(path), check_copy]:
            if cand and os.path.exists(cand):
                os.unlink(cand)
        _drop_context()
    return {"changed": sorted(todo), "message": result["message"]}


def render(node=None, os_family=None, topology=None, prometheus=None, secrets=False):
    """
    HAProxy's files for this node, rendered from the ``lb`` pillar (or a
    topology file): ``{path: {"content", "mode", "secret"}}`` for the config
    and each TLS listener's PEM.  Paths follow ``settings``.  Nothing is
    written.  Secrets (the stats users' hashes, TLS keys) are redacted unless
    ``secrets=True``.

    node
        Default: this minion's id.
    os_family
        Default: the ``os_family`` grain.
    prometheus
        Render the exporter frontend; default: when ``haproxy -vv`` lists
        the prometheus-exporter service (yes when HAProxy is not installed
        yet: Debian's and FreeBSD's builds have it).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.render
        salt-call haproxy_cfg.render node=lb-b topology=pillar/lab/lb.sls
    """
    node = node or __opts__["id"]
    s = settings()
    os_family = os_family or s["os_family"]
    found = __salt__["lb.node"](node, topology)  # the model validated once, and this node's pair in it
    if prometheus is None:
        try:
            prometheus = features()["prometheus"]
        except CommandExecutionError:
            prometheus = True
    secret = str if secrets else (lambda value: lb_render.REDACTED)
    files = lb_render.haproxy_files(
        found["model"], found["pair"], node, os_family, secret=secret, params=_render_params(s), prometheus=prometheus
    )
    return {p: {"content": f.content, "mode": f.mode, "secret": f.secret} for p, f in files.items()}


# ---------------------------------------------------------------------------
# the process


def _pidfile_of(config_path, s):
    """The pidfile HAProxy itself will write: the config's `pidfile`
    directive (global), else the setting."""
    text = _read(config_path)
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
    s = settings()
    pidfile = pidfile or _pidfile_of(s["config"], s)[0]
    out = {"running": False, "pidfile": pidfile, "master": None, "workers": [], "master_worker": False, "pids": []}
    text = _read(pidfile)
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
    text = _read(path)
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
    return lb_boot.managed_unit(lb_boot.HAPROXY_UNIT) if config == s["config"] == lb_render.OS_PARAMS["Debian"]["haproxy_config"] else None


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
        or config != lb_render.OS_PARAMS["FreeBSD"]["haproxy_config"]
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
        output = _haproxy_message(out.read())
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
    s = settings()
    config = config or s["config"]
    current = status()
    if current["running"] and not takeover:
        return {"started": False, "master": current["master"], "workers": current["workers"], "comment": "HAProxy is already running"}
    if not os.path.exists(config):
        raise CommandExecutionError(f"{config} does not exist")
    chk = _run_check(config, s)
    if not chk["valid"]:
        raise CommandExecutionError(f"haproxy -c refused {config}; not started:\n{chk['message']}")
    pidfile, in_config = _pidfile_of(config, s)
    for path in (pidfile, s["socket"], s["master_socket"]):
        d = os.path.dirname(path)
        if d and not os.path.isdir(d):
            os.makedirs(d, mode=0o755)
    cmd = [_binary(s), "-W", "-D", "-f", config]
    if not in_config:
        cmd += ["-p", pidfile]
    if s.get("master_socket"):
        cmd += ["-S", f"{s['master_socket']},mode,600"]
    if takeover:
        cmd += ["-sf", *[str(p) for p in takeover]]
    env = dict(os.environ)
    state = _ensure_state_file(s)
    if state:
        env[lb_render.SERVER_STATE_ENV] = state
    sup = None if takeover else _supervisor(config, s)
    if sup:
        output = "started by " + _supervise(sup, "start")
    else:
        output = _start_by_hand(cmd, env)
    _drop_context()

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
    s = settings()
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
    s = settings()
    path = path or s.get("state_file")
    if not path:
        return None
    text = command("show servers state")
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
        text = _ask(path, "show proc", timeout=2.0)
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
    s = settings()
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
            detail = master_command("show proc")
        except CommandExecutionError:
            pass
        raise CommandExecutionError(
            f"HAProxy's master {st['master']} started no new worker within {timeout:g}s; the old workers keep serving.\n{detail}".rstrip()
        )

    still = _wait(lambda: not any(_listening(p) for p in old), timeout, interval=0.05)
    _drop_context()
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
    s = settings()
    path = path or s["config"]
    file_gen = haproxy_config.file_generation(_read(path))
    marker = f"{haproxy_config.MARKER_PREFIX} marker"
    if not status()["running"]:
        return lb_generation.compare("HAProxy", path, file_gen, running=False, marker=marker)
    try:
        gen = haproxy_config.loaded_generation(_ask(s["socket"], "show info", timeout=5.0))
    except CommandExecutionError as exc:
        return lb_generation.compare("HAProxy", path, file_gen, unanswered=f"cannot ask HAProxy which config it runs: {exc}", marker=marker)
    return lb_generation.compare("HAProxy", path, file_gen, gen, marker=marker)


# ---------------------------------------------------------------------------
# runtime API (stats socket)


def _ask(path, cmd, timeout=5.0):
    if "\n" in cmd or "\r" in cmd:
        raise CommandExecutionError("a runtime command is one line")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(cmd.encode() + b"\n")
            # end of input: HAProxy answers and closes (the master CLI
            # would otherwise wait for the next command)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
    except FileNotFoundError as exc:
        raise CommandExecutionError(f"no HAProxy socket at {path} (is HAProxy running?)") from exc
    except OSError as exc:
        raise CommandExecutionError(f"cannot talk to HAProxy at {path}: {exc}") from exc
    return b"".join(chunks).decode(errors="replace")


def command(cmd, socket_path=None):
    """
    Send one command to the runtime API (the stats socket) and return the
    answer, e.g. ``show info``, ``show stat``, ``show servers state``.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.command "show info"
    """
    return _ask(socket_path or settings()["socket"], cmd)


def master_command(cmd):
    """
    Send one command to the master CLI (``show proc``, ``reload``).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.master_command "show proc"
    """
    s = settings()
    if not s.get("master_socket"):
        raise CommandExecutionError("no master socket configured (haproxy_cfg:master_socket)")
    return _ask(s["master_socket"], cmd)


def _name(value, what):
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise CommandExecutionError(f"{value!r} is not a valid {what} name")
    return value


def _check_status(raw):
    """The stats page's word for a `show servers state` check status
    number (``6`` is ``L4OK``); what is not a known number stays as it is."""
    return CHECK_STATUSES.get(int(raw), raw) if isinstance(raw, str) and raw.isdigit() else raw


def server_state(backend=None, server=None):
    """
    ``show servers state`` parsed: one dict per server with its backend,
    name, address, operational state, admin flags (maint, drain, ...),
    weights and the last check's status as the stats page words it
    (``L4OK``, ``L7STS``, ``L4CON`` ...).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.server_state
        salt-call haproxy_cfg.server_state backend=haproxy_10.2.2.5_80
    """
    cmd = "show servers state" + (f" {_name(backend, 'backend')}" if backend else "")
    text = command(cmd)
    lines = text.splitlines()
    if not lines or lines[0].strip() != "1":
        raise CommandExecutionError(text.strip() or "empty answer to show servers state")
    header = None
    out = []
    for line in lines[1:]:
        if line.startswith("# "):
            header = line[2:].split()
            continue
        if not line.strip() or header is None:
            continue
        row = dict(zip(header, line.split(), strict=False))
        admin = int(row.get("srv_admin_state", 0))
        entry = {
            "backend": row.get("be_name"),
            "server": row.get("srv_name"),
            "address": row.get("srv_addr"),
            "port": int(row["srv_port"]) if row.get("srv_port", "").isdigit() else None,
            "operational": OP_STATES.get(int(row.get("srv_op_state", -1)), row.get("srv_op_state")),
            "admin": [flag for bit, flag in ADMIN_FLAGS.items() if admin & bit],
            "weight": int(row.get("srv_uweight", 0)),
            "initial_weight": int(row.get("srv_iweight", 0)),
            "check_status": _check_status(row.get("srv_check_status")),
        }
        if server is None or entry["server"] == server:
            out.append(entry)
    return out


def list_servers(backend=None):
    """
    Every server with what a status table needs: ``show servers state``
    joined with ``show stat`` (status as the stats page shows it, e.g. UP,
    DOWN, MAINT, DRAIN; effective weight; current sessions; ``backup``:
    a backup server, which takes traffic only when no active one is UP).

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.list_servers
    """
    states = server_state(backend)
    stat_text = command("show stat")
    rows = stat_text.splitlines()
    stats = {}
    if rows and rows[0].startswith("# "):
        header = rows[0][2:].split(",")
        for line in rows[1:]:
            if not line.strip():
                continue
            row = dict(zip(header, line.split(","), strict=False))
            stats[(row.get("pxname"), row.get("svname"))] = row
    for entry in states:
        row = stats.get((entry["backend"], entry["server"]), {})
        entry["status"] = row.get("status")
        entry["sessions"] = int(row["scur"]) if row.get("scur", "").isdigit() else None
        entry["effective_weight"] = int(row["weight"]) if row.get("weight", "").isdigit() else None
        entry["backup"] = row.get("bck") == "1"
    return states


def _one(backend, server):
    found = server_state(backend, server)
    if not found:
        raise CommandExecutionError(f"no server {server} in backend {backend}")
    return found[0]


def _set_state(backend, server, state):
    backend, server = _name(backend, "backend"), _name(server, "server")
    answer = command(f"set server {backend}/{server} state {state}").strip()
    if answer:
        raise CommandExecutionError(f"HAProxy refused to set {backend}/{server} to {state}: {answer}")
    entry = _one(backend, server)
    if not lb_ops.admin_reached(state, entry["admin"]):
        raise CommandExecutionError(f"{backend}/{server} is not in state {state} after the command: admin flags {sorted(entry['admin'])}")
    return entry


def drain(backend, server):
    """
    Drain a server: no new connections (except persistent ones), current
    ones finish.  The pillar is untouched; the state survives a reload.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.drain haproxy_10.2.2.4_3306 percona_mysql-1
    """
    return _set_state(backend, server, "drain")


def maint(backend, server):
    """
    Put a server into maintenance: no traffic, checks stopped.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.maint haproxy_10.2.2.5_80 http_srv-1
    """
    return _set_state(backend, server, "maint")


def ready(backend, server):
    """
    Take a server out of drain or maintenance.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.ready haproxy_10.2.2.5_80 http_srv-1
    """
    return _set_state(backend, server, "ready")


def set_weight(backend, server, weight):
    """
    Set a server's weight (0-256, or a percentage of its configured weight
    like ``50%``) and read it back: returns the weight HAProxy now uses.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.set_weight haproxy_10.2.2.5_80 http_srv-2 10
    """
    backend, server = _name(backend, "backend"), _name(server, "server")
    w = str(weight).strip()
    if not re.fullmatch(r"\d{1,3}%?", w) or (not w.endswith("%") and int(w) > 256):
        raise CommandExecutionError(f"{weight!r} is not a weight (0-256, or a percentage like 50%)")
    answer = command(f"set server {backend}/{server} weight {w}").strip()
    if answer:
        raise CommandExecutionError(f"HAProxy refused the weight of {backend}/{server}: {answer}")
    got = command(f"get weight {backend}/{server}").strip()
    m = re.match(r"^(\d+) \(initial (\d+)\)$", got)
    if not m:
        raise CommandExecutionError(f"cannot read the weight of {backend}/{server} back: {got}")
    current, initial = int(m.group(1)), int(m.group(2))
    expected = int(w) if not w.endswith("%") else initial * int(w[:-1]) // 100
    if current != expected:
        raise CommandExecutionError(f"{backend}/{server} has weight {current} after setting {w} (expected {expected})")
    return {"backend": backend, "server": server, "weight": current, "initial_weight": initial}


# ---------------------------------------------------------------------------
# certificates


def cert_expiry(path=None):
    """
    When each certificate expires: for a PEM file, or every ``*.pem`` in a
    directory (default: the certs directory), the first certificate's
    subject, issuer, names, ``not_after`` (UTC, ISO 8601) and days left.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.cert_expiry
        salt-call haproxy_cfg.cert_expiry path=/etc/haproxy/certs/haproxy_10.2.2.5_443.pem
    """
    from cryptography import x509

    path = path or settings()["certs_dir"]
    if os.path.isdir(path):
        paths = sorted(glob.glob(os.path.join(path, "*.pem")))
    elif os.path.exists(path):
        paths = [path]
    else:
        raise CommandExecutionError(f"{path} does not exist")
    now = datetime.datetime.now(datetime.UTC)
    out = {}
    for p in paths:
        try:
            with open(p, "rb") as fh:
                certs = x509.load_pem_x509_certificates(fh.read())
        except (OSError, ValueError) as exc:
            out[p] = {"error": f"no readable certificate: {exc}"}
            continue
        cert = certs[0]
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        not_before, not_after = lb_topology.cert_validity(cert)
        left = not_after - now
        out[p] = {
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "names": names,
            "not_before": not_before.isoformat(),
            "not_after": not_after.isoformat(),
            "days_left": round(left.total_seconds() / 86400, 1),
            "expired": left.total_seconds() <= 0,
            "chain_length": len(certs),
        }
    return out
