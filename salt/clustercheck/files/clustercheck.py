#!{{ python }} -IS
"""clustercheck: the Galera health probe HAProxy checks on TCP 9200.

xinetd (Linux) or inetd (FreeBSD) runs one copy per connection, as an
unprivileged user, with the connection on stdin/stdout.  It answers one
HTTP/1.1 response and exits:

- ``200 OK`` with ``... is running.`` in the body when the node may take
  traffic: ``wsrep_local_state`` is 4 (Synced) and ``wsrep_cluster_status`` is
  Primary (or state 2, Donor/Desynced, when ``available_when_donor`` is on),
  and ``read_only`` is OFF (unless ``available_when_readonly`` is on);
- ``503 Service Unavailable`` otherwise, with the reason in the body (never
  the words ``is running.``, so HAProxy's ``tcp-check expect string
  is\\ running.`` fails on it, as ``httpchk`` does on the status).

The maintenance file drains the node before anything else is looked at.

Both HAProxy check styles work: ``tcp-check`` sends nothing and waits for the
answer; ``httpchk`` sends a request first.  The request is read (bounded in
size and time) while the query runs, and ignored but for its method (HEAD gets
no body).  Everything is bounded by ``timeout`` seconds: the client gets
``--connect-timeout`` and is killed at the deadline, so a hung server (even a
SIGSTOPped one) gives a 503 in time instead of a hung probe.

The MySQL credentials are in the option file given to the client with
``--defaults-extra-file`` (mode 0600, owned by the probe's user): never on a
command line, never in the environment.  Nothing is written to disk.

``clustercheck --json`` runs the same check and prints it as JSON (exit 0
when available, 1 when not); ``--config PATH`` reads another option file.

Standard library only (Debian's and FreeBSD's python3), run with -I -S.
Installed on the database servers by salt/clustercheck (``file.managed``, a
Jinja template): the interpreter on the first line and the three paths below
are the OS's, from ``lb_probe.program_context`` (shown by
``clustercheck.preview``).  Nothing else in this file is templated.
"""

import os
import select
import socket
import subprocess
import sys
import time

CONFIG = "{{ config }}"
CLIENT = "{{ client }}"
CLIENT_PATH = "{{ client_path }}"

REQUEST_LIMIT = 8192  # bytes of request read at most
REQUEST_GRACE = 0.1  # s to wait for a first request byte once the answer is known
DRAIN_WAIT = 0.5  # s to wait for the client's close after answering
DEFAULTS = {
    "timeout": "2",
    "available_when_donor": "0",
    "available_when_readonly": "0",
    "maintenance_file": "/var/lib/clustercheck/maintenance",
}
STATES = {0: "Undefined", 1: "Joining", 2: "Donor/Desynced", 3: "Joined", 4: "Synced"}
QUERY = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN "
    "('wsrep_local_state', 'wsrep_local_state_comment', 'wsrep_cluster_status'); "
    "SELECT 'read_only', @@global.read_only"
)
UP_MARK = "is running."


def _flag(value):
    return str(value).strip().lower() in ("1", "on", "yes", "true")


def read_group(path, group):
    """`key = value` lines of one [group] of a MySQL option file (the client
    reads [client]; the probe reads [clustercheck]).  A hand parser: the
    configparser import alone costs more than the whole check."""
    values = {}
    current = None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1].strip()
            elif current == group:
                key, _, value = line.partition("=")
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                values[key.strip().replace("-", "_")] = value
    return values


def settings(path):
    """The probe's settings: its [clustercheck] group over the defaults."""
    raw = dict(DEFAULTS)
    raw.update(read_group(path, "clustercheck"))
    return {
        "timeout": min(max(float(raw["timeout"]), 1.0), 10.0),
        "available_when_donor": _flag(raw["available_when_donor"]),
        "available_when_readonly": _flag(raw["available_when_readonly"]),
        "maintenance_file": raw["maintenance_file"],
    }


def _clean(text, limit=200):
    """One printable line, for a reason in a response body."""
    line = " ".join(text.split())
    line = "".join(c if " " <= c <= "~" else "?" for c in line)
    return line[:limit]


def start_query(config, timeout):
    argv = [
        CLIENT,
        "--defaults-extra-file=" + config,
        f"--connect-timeout={max(1, int(timeout))}",
        "--batch",
        "--skip-column-names",
        "--execute=" + QUERY,
    ]
    # A clean environment: no HOME (no ~/.my.cnf), no MYSQL_PWD, no MYSQL_HOST.
    env = {"PATH": CLIENT_PATH, "LC_ALL": "C"}
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, close_fds=True)


def finish_query(proc, deadline):
    """(stdout, stderr, timed_out); the client is killed at the deadline."""
    try:
        # a client that has already exited is read whatever the time
        left = None if proc.poll() is not None else max(0.0, deadline - time.monotonic())
        out, err = proc.communicate(timeout=left)
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), True


# What the client's errors mean, by MySQL error number.  The server's own text
# is never passed on: it names the account ("Access denied for user 'x'@'y'")
# and the body goes to anyone allowed to connect to the probe.
CLIENT_ERRORS = {
    1040: "the server has too many connections",
    1044: "the probe's account lacks a privilege",
    1045: "the server refused the probe's login (its account or password)",
    1129: "the server blocks this host after connection errors (FLUSH HOSTS)",
    1130: "the server refuses the probe's host",
    1142: "the probe's account lacks a privilege",
    1203: "the probe's account is at its connection limit",
    1226: "the probe's account is at its connection limit",
    1227: "the probe's account lacks a privilege",
    2002: "no server on the socket (is mariadbd running?)",
    2003: "no server on the TCP port (is mariadbd running?)",
    2005: "the server's host name does not resolve",
    2006: "the server went away",
    2013: "lost the connection to the server",
}


def client_error(err, returncode):
    """Why the client failed, as a reason fit for the response body: the
    MySQL error number and a fixed text, never the server's message (it may
    name the probe's account, a host or a path)."""
    code = None
    for line in (err or "").splitlines():
        # "ERROR 1045 (28000): Access denied for user ..." (no `re`: its import costs)
        if line.startswith("ERROR "):
            number = line[6:].split(" ", 1)[0].split(":", 1)[0]
            if number.isdigit() and len(number) <= 5:
                code = int(number)
                break
    if code is None:
        return f"cannot query MariaDB: the client failed (exit status {int(returncode)})"
    return f"cannot query MariaDB (error {code}): " + CLIENT_ERRORS.get(code, "the client failed")


def verdict(cfg, out, err, returncode, timed_out):
    """(available, reason, facts) from the client's answer."""
    facts = {}
    if timed_out:
        return False, f"MariaDB did not answer within {cfg['timeout']:g}s", facts
    if returncode != 0:
        return False, client_error(err, returncode), facts
    values = {}
    for line in out.splitlines():
        name, _, value = line.partition("\t")
        values[name.strip().lower()] = value.strip()
    if "wsrep_local_state" not in values:
        return False, "wsrep is off: this server is not a Galera node", facts
    try:
        state = int(values["wsrep_local_state"])
    except ValueError:
        return False, f"wsrep_local_state is {_clean(values['wsrep_local_state'], 20)!r}, not a number", facts
    comment = values.get("wsrep_local_state_comment") or STATES.get(state, "unknown")
    cluster = values.get("wsrep_cluster_status", "")
    read_only = _flag(values.get("read_only", "0"))
    facts = {"local_state": state, "local_state_comment": comment, "cluster_status": cluster, "read_only": read_only}
    where = f"wsrep_local_state {state} ({_clean(comment, 40)}), cluster {_clean(cluster, 40) or 'unknown'}"
    if cluster != "Primary":
        return False, "not in the primary component: " + where, facts
    if state == 4:
        pass
    elif state == 2 and cfg["available_when_donor"]:
        where += ", available as donor"
    else:
        return False, "not synced: " + where, facts
    if read_only and not cfg["available_when_readonly"]:
        return False, "read_only is ON: " + where, facts
    if read_only:
        where += ", read_only"
    return True, where, facts


def check(config, deadline_from=None, on_wait=None):
    """Run the check; `on_wait(proc, deadline)` is called while the client
    runs (the HTTP side reads the request there).  Returns a dict."""
    started = deadline_from if deadline_from is not None else time.monotonic()
    result = {"available": False, "reason": "", "maintenance": False}
    try:
        cfg = settings(config)
    except (OSError, ValueError, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        result["reason"] = f"cannot read the probe's settings {config}: {_clean(why)}"
        if on_wait is not None:
            on_wait(None, started + 1.0)
        return result
    deadline = started + cfg["timeout"]
    result["timeout"] = cfg["timeout"]
    if os.path.exists(cfg["maintenance_file"]):
        note = ""
        try:
            with open(cfg["maintenance_file"], encoding="utf-8", errors="replace") as fh:
                note = _clean(fh.read(400))
        except OSError:
            pass
        result["maintenance"] = True
        result["reason"] = f"maintenance: {cfg['maintenance_file']} exists" + (f" ({note})" if note else "")
        if on_wait is not None:
            on_wait(None, deadline)
        return result
    try:
        proc = start_query(config, cfg["timeout"])
    except OSError as exc:
        result["reason"] = f"cannot run {CLIENT}: {_clean(getattr(exc, 'strerror', None) or type(exc).__name__)}"
        if on_wait is not None:
            on_wait(None, deadline)
        return result
    if on_wait is not None:
        on_wait(proc, deadline)
    out, err, timed_out = finish_query(proc, deadline)
    available, reason, facts = verdict(cfg, out, err, proc.returncode, timed_out)
    result.update(facts)
    result["available"] = available
    result["reason"] = reason
    return result


class Request:
    """Reads the client's request from fd 0 while the check runs: at most
    REQUEST_LIMIT bytes, never past the deadline.  A client that sends
    nothing (HAProxy tcp-check) costs REQUEST_GRACE once the answer is known."""

    def __init__(self, fd=0):
        self.fd = fd
        self.data = b""
        self.eof = False

    def complete(self):
        return self.eof or len(self.data) >= REQUEST_LIMIT or b"\r\n\r\n" in self.data or b"\n\n" in self.data

    def read(self, proc, deadline):
        grace_end = None
        while not self.complete():
            now = time.monotonic()
            if now >= deadline:
                return
            running = proc is not None and proc.poll() is None
            if not self.data and not running:
                if grace_end is None:
                    grace_end = now + REQUEST_GRACE
                if now >= grace_end:
                    return
            end = min(deadline, grace_end) if grace_end is not None else deadline
            wait = end - now
            if running:
                wait = min(wait, 0.02)  # look at the client again soon
            try:
                ready, _, _ = select.select([self.fd], [], [], max(0.0, wait))
            except (OSError, ValueError):
                self.eof = True
                return
            if ready:
                try:
                    chunk = os.read(self.fd, REQUEST_LIMIT - len(self.data))
                except OSError:
                    chunk = b""
                if not chunk:
                    self.eof = True
                    return
                self.data += chunk

    @property
    def method(self):
        return self.data.split(b" ", 1)[0].strip().upper() if self.data else b""


def http_response(result, head=False):
    if result["available"]:
        status = "200 OK"
        body = f"MariaDB Galera node {UP_MARK} {result['reason']}\r\n"
    else:
        status = "503 Service Unavailable"
        body = f"MariaDB Galera node unavailable: {result['reason']}\r\n"
        # whatever a reason quotes, a 503 must never match the up check
        body = body.replace(UP_MARK, "is running (refused).")
    payload = body.encode("ascii", "replace")
    headers = [
        "HTTP/1.1 " + status,
        "Date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
        "Server: clustercheck",
        "Content-Type: text/plain; charset=us-ascii",
        f"Content-Length: {len(payload)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + (b"" if head else payload)


def _write_all(fd, data):
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _finish_connection(fd_in, fd_out):
    """Half-close and wait (bounded) for the client's close, so unread request
    bytes never turn our close into a reset that loses the answer."""
    try:
        sock = socket.socket(fileno=os.dup(fd_out))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
        end = time.monotonic() + DRAIN_WAIT
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([fd_in], [], [], left)
            if not ready or not os.read(fd_in, 4096):
                break
    except OSError:
        pass
    finally:
        sock.close()


def serve(config):
    started = time.monotonic()
    # xinetd and inetd give the connection as stderr too: nothing may leak there.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    request = Request(0)
    try:
        result = check(config, started, request.read)
    except Exception as exc:  # a probe that dies answers nothing: say why instead
        # the exception's type only: its text could quote anything it touched
        result = {"available": False, "reason": f"probe error: {type(exc).__name__}"}
    try:
        _write_all(1, http_response(result, head=request.method == b"HEAD"))
    except OSError:
        return 0
    _finish_connection(0, 1)
    return 0


def main(argv):
    config = CONFIG
    as_json = False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--json":
            as_json = True
        elif arg == "--config" and args:
            config = args.pop(0)
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            sys.stderr.write("usage: clustercheck [--config PATH] [--json]\n")
            return 2
    if as_json:
        import json

        result = check(config)
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
        return 0 if result["available"] else 1
    return serve(config)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
