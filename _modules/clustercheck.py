"""
The Galera health probe on a database server: its status, the maintenance
switch (drain / undrain), and the MySQL account it logs in with.

The probe itself (``salt/clustercheck/files/clustercheck.py``) answers
HAProxy on TCP 9200 through xinetd (Linux) or inetd (FreeBSD);
``salt/clustercheck`` installs it, and the files ``_utils/lb_probe.py``
renders from the pillar's ``lb`` topology.  This module is the operator's side:

- ``clustercheck.status``: the probe's answer, run here as the probe's user
  (the same program, the same option file), or fetched over HTTP;
- ``clustercheck.drain`` / ``undrain`` / ``is_drained``: the maintenance file
  that makes the probe answer 503, so HAProxy moves the writes away before
  the server is touched;
- ``clustercheck.account_changes`` / ``ensure_account``: the probe's MySQL
  account, USAGE only, created or corrected through the local client as
  root, with the SQL (and so the password) on the client's stdin, never on a
  command line.  Salt's ``mysql`` module would need PyMySQL or MySQLdb in
  Salt's own environment; the client is on every database server already.

Settings (paths, user, account) come from the pillar: the pair whose galera
pools list one of this minion's addresses.  Every function takes explicit
values too, so it also works without the pillar.
"""

import hashlib
import http.client
import json
import logging
import os
import pwd
import re
import subprocess
import time

from salt.exceptions import CommandExecutionError

import lb_files
import lb_fresh
import lb_parameters
import lb_probe
import lb_settings
import lb_topology
import lb_topology_services

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "clustercheck"

STATUS_TIMEOUT_MARGIN = 5  # s beyond the probe's own bound before status gives up


def __virtual__():
    if __grains__.get("kernel") not in ("Linux", "FreeBSD"):
        return (False, "clustercheck: the probe runs on Linux (xinetd) and FreeBSD (inetd) only")
    return __virtualname__


# ---------------------------------------------------------------------------
# settings


def _os_family(os_family=None):
    family = os_family or __grains__.get("os_family")
    return "FreeBSD" if family == "FreeBSD" else "Debian"


def _addresses():
    return list(__grains__.get("ipv4") or [])


def plan(pair=None, os_family=None, secrets=False, **overrides):
    """
    What ``salt/clustercheck`` installs on this database server: the pair it
    belongs to, the probe's user, paths, packages, the MySQL account and every
    file with its mode and owner.  Secrets show as ``<redacted>`` unless
    ``secrets=True``.

    pair
        The pair's name in the topology.  Default: the pair whose galera pools
        list one of this minion's addresses, or the only pair with a probe.

    os_family
        ``Debian`` or ``FreeBSD``.  Default: this minion's.

    overrides
        Any of lb_probe's parameters (``socket``, ``host``, ``port``, ``user``,
        ``bind``, paths), e.g. ``socket=/run/mysqld/mysqld.sock``.  The
        ``clustercheck`` settings (``pair`` and these parameters; minion
        config, grains or pillar) set them per minion; arguments win.

    CLI Example:

    .. code-block:: bash

        salt-call clustercheck.plan --out=yaml
        salt 'db-*' clustercheck.plan pair=edge
    """
    # the `clustercheck` settings may name the pair and set parameters
    # for this minion (e.g. its socket); explicit arguments win
    try:
        # paths, names and addresses reach the probe's #! line, xinetd's or
        # inetd's config and the SLS: checked before anything is rendered
        local = lb_settings.lookup("clustercheck", __opts__, __grains__, __pillar__)
    except lb_settings.SettingsError as exc:
        raise CommandExecutionError(f"invalid settings: {exc}") from exc
    pair = pair or local.pop("pair", None)
    local.pop("pair", None)
    local.update({k: v for k, v in overrides.items() if not k.startswith("__")})
    overrides = local
    model = __salt__["lb.model"]()
    try:
        out = lb_probe.plan(model, _os_family(os_family), pair, _addresses(), overrides, redact=not secrets)
    except (KeyError, ValueError) as exc:
        raise CommandExecutionError(str(exc.args[0] if exc.args else exc)) from exc
    return out


def preview(pair=None, os_family=None, secrets=False, saltenv="base", **overrides):
    """
    Every file the probe gets on this server, ``{path: content}``; nothing is
    written.  The option file's password shows as ``<redacted>`` unless
    ``secrets=True``.  The probe program is fetched from the state tree
    (``salt://clustercheck/files/clustercheck.py``, from ``saltenv``) and
    rendered by Salt's Jinja with this OS's interpreter and paths, as
    ``file.managed`` renders it.

    CLI Example:

    .. code-block:: bash

        salt-call clustercheck.preview os_family=FreeBSD --out=json
    """
    out = {}
    for path, f in plan(pair, os_family, secrets, **overrides)["files"].items():
        out[path] = _program(f, saltenv) if f["source"] else f["content"]
    return out


def _program(f, saltenv):
    """A program of the state tree as file.managed writes it (its template
    rendered with its context)."""
    text = __salt__["cp.get_file_str"](f["source"], saltenv=saltenv)
    if not isinstance(text, str):
        raise CommandExecutionError(f"{f['source']} is not on the master's fileserver (saltenv {saltenv})")
    return __salt__["file.apply_template_on_contents"](text, template="jinja", context=f["context"], defaults=None, saltenv=saltenv)


def _settings(maintenance_file=None, config=None, probe=None, user=None):
    """Paths and user from the pillar when there is one, else the defaults."""
    found = {}
    if None in (maintenance_file, config, probe, user) and __pillar__.get(lb_topology.ROOT) is not None:
        key = "clustercheck.settings"
        if key not in __context__:
            try:
                p = plan()
                __context__[key] = {k: p[k] for k in ("maintenance_file", "config", "probe", "user", "port")}
            except CommandExecutionError as exc:
                log.debug("clustercheck: no probe settings from the pillar: %s", exc)
                __context__[key] = {}
        found = dict(__context__[key])
    params = lb_parameters.of(_os_family(), "probe")
    return {
        "maintenance_file": maintenance_file or found.get("maintenance_file") or lb_topology_services.PROBE_DEFAULTS["maintenance_file"],
        "config": config or found.get("config") or params["config"],
        "probe": probe or found.get("probe") or params["probe"],
        "user": user or found.get("user") or lb_topology_services.PROBE_DEFAULTS["user"],
        "port": found.get("port") or lb_topology_services.PROBE_DEFAULTS["port"],
    }


# ---------------------------------------------------------------------------
# status


def status(via="probe", config=None, probe=None, user=None, host="127.0.0.1", port=None, timeout=None):
    """
    The probe's answer for this server: ``available`` (what HAProxy sees as
    UP), ``code`` (200 or 503), ``reason``, and what the probe read
    (``local_state``, ``local_state_comment``, ``cluster_status``,
    ``read_only``, ``maintenance``).

    via
        ``probe`` (default): run the installed probe here with ``--json``, as
        the probe's user, with its option file: the check xinetd/inetd runs.
        ``http``: ask the served probe on ``host``:``port`` (what HAProxy
        does; 127.0.0.1 is in the allowed sources).

    config, probe, user
        The option file, the probe program and the user to run it as.
        Default: from the pillar, else the OS's defaults.

    CLI Example:

    .. code-block:: bash

        salt 'db-*' clustercheck.status
        salt-call clustercheck.status via=http
    """
    s = _settings(config=config, probe=probe, user=user)
    if via == "http":
        return _status_http(host, int(port or s["port"]), float(timeout or 10))
    if via != "probe":
        raise CommandExecutionError(f"via must be probe or http, not {via!r}")
    try:
        pw = pwd.getpwnam(s["user"])
    except KeyError as exc:
        raise CommandExecutionError(f"the probe's user {s['user']!r} does not exist") from exc
    if not os.path.isfile(s["probe"]):
        raise CommandExecutionError(f"the probe {s['probe']} is not installed")
    argv = [s["probe"], "--json", "--config", s["config"]]
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=float(timeout or 10 + STATUS_TIMEOUT_MARGIN),
            user=pw.pw_uid,
            group=pw.pw_gid,
            extra_groups=[],
            env={"PATH": lb_parameters.of(_os_family(), "probe")["client_path"], "LC_ALL": "C"},
            cwd="/",
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandExecutionError(f"the probe did not finish in {exc.timeout}s") from exc
    try:
        result = json.loads(proc.stdout.decode("utf-8", "replace"))
    except ValueError as exc:
        raise CommandExecutionError(
            f"the probe gave no answer (exit {proc.returncode}): {proc.stderr.decode('utf-8', 'replace').strip()}"
        ) from exc
    result["code"] = 200 if result.get("available") else 503
    return result


def _status_http(host, port, timeout):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"User-Agent": "salt clustercheck.status"})
        resp = conn.getresponse()
        body = resp.read().decode("ascii", "replace")
    except (OSError, http.client.HTTPException) as exc:
        raise CommandExecutionError(f"no answer from the probe on {host}:{port}: {exc or type(exc).__name__}") from exc
    finally:
        conn.close()
    reason = body.strip()
    for prefix in ("MariaDB Galera node unavailable: ", "MariaDB Galera node is running. "):
        if reason.startswith(prefix):
            reason = reason[len(prefix) :]
    return {"available": resp.status == 200, "code": resp.status, "reason": reason, "body": body}


# ---------------------------------------------------------------------------
# maintenance


def is_drained(maintenance_file=None):
    """
    True when the maintenance file exists (the probe answers 503).

    CLI Example:

    .. code-block:: bash

        salt 'db-*' clustercheck.is_drained
    """
    return os.path.exists(_settings(maintenance_file=maintenance_file)["maintenance_file"])


def drain(reason=None, maintenance_file=None):
    """
    Take this server out of rotation: create the maintenance file.  The probe
    answers 503 from the next check on, HAProxy marks the server DOWN after
    ``fall`` checks and moves new connections (and, with
    ``on-marked-down shutdown-sessions``, the open ones) to a backup.

    Returns ``{"drained": True, "changed": bool, "maintenance_file": path}``.

    reason
        A note kept in the file and shown in the probe's 503 body.

    CLI Example:

    .. code-block:: bash

        salt db-1 clustercheck.drain reason='kernel upgrade'
    """
    path = _settings(maintenance_file=maintenance_file)["maintenance_file"]
    if os.path.exists(path):
        return {"drained": True, "changed": False, "maintenance_file": path}
    note = f"drained at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}"
    if reason:
        note += f": {' '.join(str(reason).split())}"
    try:
        lb_files.write_atomic(path, note + "\n", 0o644)
    except OSError as exc:
        raise CommandExecutionError(f"cannot create {path}: {exc}") from exc
    log.info("clustercheck: drained (%s)", path)
    return {"drained": True, "changed": True, "maintenance_file": path}


def undrain(maintenance_file=None):
    """
    Put this server back: remove the maintenance file.  HAProxy marks it UP
    after ``rise`` good checks (and ramps it up over ``slowstart``).

    Returns ``{"drained": False, "changed": bool, "maintenance_file": path}``.

    CLI Example:

    .. code-block:: bash

        salt db-1 clustercheck.undrain
    """
    path = _settings(maintenance_file=maintenance_file)["maintenance_file"]
    try:
        os.unlink(path)
    except FileNotFoundError:
        return {"drained": False, "changed": False, "maintenance_file": path}
    except OSError as exc:
        raise CommandExecutionError(f"cannot remove {path}: {exc}") from exc
    log.info("clustercheck: undrained (%s)", path)
    return {"drained": False, "changed": True, "maintenance_file": path}


# ---------------------------------------------------------------------------
# the MySQL account


def _sql_string(value):
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _account_id(name, host):
    return f"{_sql_string(name)}@{_sql_string(host)}"


def native_password_hash(password):
    """mysql_native_password's stored form: '*' + hex(SHA1(SHA1(password)))."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode("utf-8")).digest()).hexdigest().upper()


def _client(socket_path=None, defaults_file=None, client=None):
    argv = [client or lb_parameters.of(_os_family(), "probe")["client"]]
    if defaults_file:
        argv.append(f"--defaults-extra-file={defaults_file}")
    if socket_path:
        argv += ["--protocol=socket", f"--socket={socket_path}"]
    argv += ["--batch", "--skip-column-names", "--connect-timeout=5"]
    return argv


# mysql_native_password's stored form: a secret as good as the password for an
# offline attack
_PASSWORD_HASH = re.compile(r"\*[0-9A-Fa-f]{40}")


def _sql(statements, socket_path=None, defaults_file=None, client=None):
    """Run SQL as the local administrator (root through the unix socket, or
    the account in `defaults_file`); the SQL goes on stdin."""
    res = __salt__["cmd.run_all"](
        _client(socket_path, defaults_file, client),
        stdin=statements,
        python_shell=False,
        output_loglevel="quiet",
        ignore_retcode=True,
        timeout=60,
    )
    if res["retcode"] != 0:
        # a syntax error quotes the statement near it: never the password's hash
        why = _PASSWORD_HASH.sub("<redacted>", res["stderr"].strip() or res["stdout"].strip())
        raise CommandExecutionError(f"the MySQL client failed: {why}")
    return res["stdout"]


def _read_account(name, host, socket_path=None, defaults_file=None, client=None):
    who = _account_id(name, host)
    rows = _sql(
        f"SELECT plugin, authentication_string, max_user_connections FROM mysql.user WHERE User = {_sql_string(name)} AND Host = {_sql_string(host)};\n",
        socket_path,
        defaults_file,
        client,
    ).splitlines()
    if not rows:
        return None
    plugin, auth, max_conn = (rows[0].split("\t") + ["", "", "0"])[:3]
    grants = _sql(f"SHOW GRANTS FOR {who};\n", socket_path, defaults_file, client).splitlines()
    return {"plugin": plugin, "authentication_string": auth, "max_connections": int(max_conn or 0), "grants": grants}


def account_changes(name=None, password=None, host=None, max_connections=None, socket=None, defaults_file=None, client=None):
    """
    What the probe's MySQL account lacks: a list of ``{"change", "sql"}``
    (the SQL without the password in ``change``).  An empty list: nothing
    to do.  Nothing is changed.

    name, password, max_connections
        The account; default: the pillar's probe account.

    host
        The account's host part; ``localhost`` for a probe on the unix socket.

    socket, defaults_file
        How to reach the server as its administrator: root through the unix
        socket (Debian's default), or an option file holding an admin account.

    CLI Example:

    .. code-block:: bash

        salt 'db-*' clustercheck.account_changes
    """
    if name is None or password is None:
        acct = plan(secrets=True)["account"]
        name = name or acct["name"]
        password = password if password is not None else acct["password"]
        host = host or acct["host"]
        max_connections = max_connections or acct["max_connections"]
    host = host or "localhost"
    max_connections = int(max_connections or lb_probe.MIN_INSTANCES)
    who = _account_id(name, host)
    current = _read_account(name, host, socket, defaults_file, client)
    # the stored hash, not the password: the server never sees it in clear
    # (a statement's text reaches the binary log and Galera's write-set cache)
    ident = f"IDENTIFIED BY PASSWORD {_sql_string(native_password_hash(password))}"
    if current is None:
        return [
            {
                "change": f"create {name}@{host} (USAGE only, at most {max_connections} connections)",
                # IF NOT EXISTS and then ALTER: every node of a Galera cluster
                # runs this in its own highstate, at the same time; a peer's
                # CREATE may replicate between our read and our write
                "sql": f"CREATE USER IF NOT EXISTS {who} {ident} WITH MAX_USER_CONNECTIONS {max_connections};\n"
                f"ALTER USER {who} {ident} WITH MAX_USER_CONNECTIONS {max_connections};",
            }
        ]
    changes = []
    if current["plugin"] not in ("mysql_native_password", "") or current["authentication_string"] != native_password_hash(password):
        changes.append({"change": f"set the password of {name}@{host}", "sql": f"ALTER USER {who} {ident};"})
    if current["max_connections"] != max_connections:
        changes.append(
            {
                "change": f"limit {name}@{host} to {max_connections} connections (was {current['max_connections'] or 'unlimited'})",
                "sql": f"ALTER USER {who} WITH MAX_USER_CONNECTIONS {max_connections};",
            }
        )
    extra = [g for g in current["grants"] if not g.startswith("GRANT USAGE ON *.* TO ") or " WITH GRANT OPTION" in g]
    if extra:
        changes.append(
            {
                "change": f"revoke what {name}@{host} holds beyond USAGE: {'; '.join(g.split(' IDENTIFIED BY ')[0] for g in extra)}",
                "sql": f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who};",
            }
        )
    return changes


def ensure_account(name=None, password=None, host=None, max_connections=None, socket=None, defaults_file=None, client=None, test=False):
    """
    Create or correct the probe's MySQL account: USAGE only (all it needs for
    SHOW STATUS and @@read_only), the pillar's password, at most as many
    connections as xinetd/inetd runs probes.  On a Galera cluster the
    statements replicate; running it on every node is harmless.

    Returns ``{"changes": [descriptions], "test": bool}``.

    CLI Example:

    .. code-block:: bash

        salt 'db-*' clustercheck.ensure_account
        salt-call clustercheck.ensure_account test=True
    """
    changes = account_changes(name, password, host, max_connections, socket, defaults_file, client)
    if changes and not test:
        _sql("\n".join(c["sql"] for c in changes) + "\n", socket, defaults_file, client)
        left = account_changes(name, password, host, max_connections, socket, defaults_file, client)
        if left:
            raise CommandExecutionError(f"the account still needs: {'; '.join(c['change'] for c in left)}")
    return {"changes": [c["change"] for c in changes], "test": bool(test)}
