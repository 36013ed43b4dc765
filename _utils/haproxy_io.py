"""
The system calls the three files of the ``haproxy_cfg`` execution module
share (``_modules/haproxy_cfg.py``: the configuration,
``haproxy_cfg_process.py``: the process, ``haproxy_cfg_runtime.py``: the
runtime API): reading a file, ``haproxy -c``, the binary, one command on a
HAProxy socket.  Plain Python with no Salt dunders: each caller passes what
it read from its settings.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess

from salt.exceptions import CommandExecutionError

import lb_render_haproxy

# what the module caches in Salt's __context__ (haproxy -vv), dropped when
# the binary or its config may have changed
CONTEXT_PREFIX = "haproxy_cfg."


def drop_context(context) -> None:
    for key in [k for k in context if str(k).startswith(CONTEXT_PREFIX)]:
        context.pop(key, None)


def read(path):
    """The file's text; None when it does not exist."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CommandExecutionError(f"cannot read {path}: {exc}") from exc


def mode_of(path):
    try:
        return f"{stat.S_IMODE(os.stat(path).st_mode):04o}"
    except FileNotFoundError:
        return None


def ids(user, group):
    import grp
    import pwd

    try:
        uid = user if isinstance(user, int) else pwd.getpwnam(user).pw_uid
        gid = group if isinstance(group, int) else grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise CommandExecutionError(f"unknown user or group: {exc}") from exc
    return uid, gid


def haproxy_message(output):
    """HAProxy's own lines that matter (ALERT and WARNING), without the
    NOTICE banner."""
    lines = [x for x in output.splitlines() if x.strip() and not x.startswith("[NOTICE]")]
    return "\n".join(lines)


def binary(path):
    """The haproxy executable: `path` (the setting), else the first in the
    usual directories."""
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    for d in ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"):
        cand = os.path.join(d, "haproxy")
        if os.access(cand, os.X_OK):
            return cand
    raise CommandExecutionError(f"haproxy is not installed (no executable at {path}); install the haproxy package first")


def run_check(path, s):
    """``haproxy -c -f path`` with the settings `s` (the binary, and the
    server-state file the config loads): {"valid", "message"}."""
    env = dict(os.environ)
    if s.get("state_file") and os.path.exists(s["state_file"]):
        env[lb_render_haproxy.SERVER_STATE_ENV] = s["state_file"]
    r = subprocess.run([binary(s["binary"]), "-c", "-f", path], capture_output=True, text=True, timeout=60, env=env, check=False)
    message = haproxy_message(r.stdout + "\n" + r.stderr)
    return {"valid": r.returncode == 0, "message": message}


def ask(path, cmd, timeout=5.0):
    """One command on a HAProxy socket (the stats socket or the master
    CLI), its whole answer."""
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
