"""
Manage HAProxy on a minion: its configuration section by section, validated
before it goes live, reloaded without dropping a connection, and operated at
runtime through the stats socket.

Virtual name ``haproxy_cfg`` (Salt's own ``haproxy`` name belongs to the
haproxyconn module).  All system I/O of the ``haproxy_section`` states is in
its three files; the parsing and merging is in ``_utils/haproxy_config.py`` and the
per-node rendering in ``_utils/lb_render.py``.

One module in three files, each with one job, all under the virtual name
``haproxy_cfg`` (Salt's loader merges files that share a virtual name):
this one, the configuration (settings, reading, ``haproxy -c``, the checked
swap, rendering, certificates); ``haproxy_cfg_process.py``, the process
(status, start, reload, stop); ``haproxy_cfg_runtime.py``, the runtime API
(the stats socket and the master CLI).  What they share is in
``_utils/haproxy_io.py``.

Paths come from the OS (lb_parameters' node section: Debian or FreeBSD) and can
be overridden in the minion config, grains or pillar under
``lb_settings:haproxy``:

.. code-block:: yaml

    lb_settings:
     haproxy:
      config: /etc/haproxy/haproxy.cfg
      socket: /run/haproxy/admin.sock          # the stats socket (runtime API)
      master_socket: /run/haproxy-master.sock  # the master CLI
      pidfile: /run/haproxy.pid                # holds the master's pid
      certs_dir: /etc/haproxy/certs
      state_file: /run/haproxy/server-state    # runtime states across reloads
      chroot: /var/lib/haproxy
      binary: /usr/sbin/haproxy
      timeout: 10                              # seconds to wait for a reload

How a reload keeps every connection is told in ``haproxy_cfg_process.py``.
"""

import datetime
import glob
import logging
import os
import re
import subprocess
import tempfile

from salt.exceptions import CommandExecutionError

import haproxy_config
import haproxy_io
import lb_fresh
import lb_parameters
import lb_render_haproxy
import lb_settings
import lb_topology_haproxy
import lb_view

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "haproxy_cfg"


def __virtual__():
    return __virtualname__


# ---------------------------------------------------------------------------
# settings and helpers


def _os_params():
    osf = __grains__.get("os_family")
    if osf not in lb_parameters.FAMILIES:
        osf = "FreeBSD" if __grains__.get("kernel") == "FreeBSD" else "Debian"
    return osf, lb_parameters.of(osf, "node")


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
    try:
        # paths and names go into sh (the init defaults), haproxy.cfg and argv
        extra = lb_settings.lookup("haproxy", __opts__, __grains__, __pillar__)
    except lb_settings.SettingsError as exc:
        raise CommandExecutionError(f"invalid settings: {exc}") from exc
    out.update(extra)
    return out


def sls_params(params=None):
    """
    The haproxy SLS's parameters (``salt/haproxy/map.jinja``): the
    parameters map's ``haproxy_sls`` section for this minion's OS family,
    with this minion's ``lb_settings:haproxy_sls`` (``pkg``, ``unmanaged``,
    ``init_defaults``) on top, checked: each value goes into the SLS's YAML
    and a file sh reads.  An unknown key or a value that is not a plain
    path, package name or flag raises, naming
    ``lb_settings:haproxy_sls:<key>``.  Given ``params``, checks those
    instead.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.sls_params
        salt-call haproxy_cfg.sls_params '{"pkg": "haproxy", "init_defaults": false}'
    """
    try:
        if params is not None:
            return lb_settings.validate("haproxy_sls", params)
        out = lb_parameters.of(__grains__.get("os_family"), "haproxy_sls")
        out.update(lb_settings.lookup("haproxy_sls", __opts__, __grains__, __pillar__))
        return out
    except lb_settings.SettingsError as exc:
        raise CommandExecutionError(f"invalid settings: {exc}") from exc


def _render_params(s):
    """lb_render's path overrides from the settings."""
    return {
        "haproxy_config": s["config"],
        "haproxy_socket": s["socket"],
        "haproxy_pidfile": s["pidfile"],
        "haproxy_chroot": s["chroot"],
        "haproxy_certs_dir": s["certs_dir"],
    }


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
    key = haproxy_io.CONTEXT_PREFIX + "features"
    if key in __context__:
        return __context__[key]
    out = subprocess.run([haproxy_io.binary(settings()["binary"]), "-vv"], capture_output=True, text=True, timeout=30, check=False).stdout
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
    return haproxy_io.read(path or settings()["config"])


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
    text = haproxy_io.read(path)
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
    text = haproxy_io.read(path or settings()["config"])
    if text is None:
        return None
    try:
        s = haproxy_config.parse(text).find(kind, name)
    except haproxy_config.ConfigError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return None if s is None else haproxy_config.redact(s.text())


# ---------------------------------------------------------------------------
# checking and writing


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
        return haproxy_io.run_check(path or s["config"], s)
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
        result = haproxy_io.run_check(cand, s)
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
    want = {path: {"content": text, "mode": str(mode or haproxy_io.mode_of(path) or "0640").zfill(4)}}
    want.update(_normalize_files(files))
    for p, spec in want.items():
        reasons = []
        current = haproxy_io.read(p)
        if current is None:
            reasons.append("new file")
        elif current != spec["content"]:
            reasons.append("content")
        cur_mode = haproxy_io.mode_of(p)
        if cur_mode is not None and cur_mode != spec["mode"]:
            reasons.append(f"mode {cur_mode} -> {spec['mode']}")
        if reasons:
            out[p] = reasons
    return out


def prune_certs_pending(keep=None):
    """
    The ``*.pem`` files of the certs directory that ``haproxy_cfg.prune_certs``
    would remove (those not in `keep`), touching nothing.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.prune_certs_pending
    """
    d = settings()["certs_dir"]
    keep = {os.path.realpath(p) for p in (keep or [])}
    if not os.path.isdir(d):
        return []
    return [p for p in sorted(glob.glob(os.path.join(d, "*.pem"))) if os.path.realpath(p) not in keep and os.path.isfile(p)]


def prune_certs(keep=None, dry_run=False):
    """
    Remove the ``*.pem`` files of the certs directory that are not in
    `keep` (the PEM files the pillar still renders): a TLS listener taken out
    of the pillar leaves no private key behind.  Only that directory, only
    ``*.pem``.  Returns the paths removed; ``dry_run=True`` is
    ``haproxy_cfg.prune_certs_pending``.

    CLI Example:

    .. code-block:: bash

        salt-call haproxy_cfg.prune_certs dry_run=True
    """
    stale = prune_certs_pending(keep)
    if dry_run:
        return stale
    for p in stale:
        os.unlink(p)
    if stale:
        _fsync_dir(settings()["certs_dir"])
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
    uid, gid = haproxy_io.ids(user if user is not None else s["user"], group if group is not None else s["group"])
    if user is None and cur_uid is not None:
        uid = cur_uid
    if group is None and cur_gid is not None:
        gid = cur_gid
    cfg_mode = str(mode or haproxy_io.mode_of(path) or "0640").zfill(4)
    root_uid, root_gid = haproxy_io.ids(s["user"], s["group"])

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
            result = haproxy_io.run_check(check_copy, s)
        else:
            result = haproxy_io.run_check(cfg_cand, s)
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
        haproxy_io.drop_context(__context__)
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
    secret = str if secrets else (lambda value: lb_view.REDACTED)
    files = lb_render_haproxy.haproxy_files(
        found["model"], found["pair"], node, os_family, secret=secret, params=_render_params(s), prometheus=prometheus
    )
    return {p: {"content": f.content, "mode": f.mode, "secret": f.secret} for p, f in files.items()}


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
        not_before, not_after = lb_topology_haproxy.cert_validity(cert)
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
