"""The per-minion settings, checked before anything reads them.

Pure Python.  One config key, ``lb_settings`` (in the minion config, its
grains or its pillar), moves this product's paths and binaries on one
minion, section by section, and every one of its values ends up in a root
shell or a config file:

- ``carp``: the CARP providers' directories and binaries (the event hook,
  the FreeBSD rc.d script, keepalived's notify command), and a forced
  Linux provider;
- ``routing``: the routing daemons' paths;
- ``haproxy``: HAProxy's paths, binary and owner (the ``haproxy_cfg``
  module);
- ``haproxy_sls``: the haproxy SLS's own parameters (package, unmanaged
  sections, Debian's init defaults);
- ``clustercheck``: the Galera probe's pair, paths, interpreter, account
  host and xinetd ``bind``.

Each section's defaults are `lb_parameters`'.  ``lookup(section, opts,
grains, pillar)`` is the one way a module reads a section: from the first
source whose ``lb_settings`` has it, checked (lb_grammar's rules: absolute
paths of ``[A-Za-z0-9_./+-]``, user names, package names, addresses; no
unknown section or setting), else ``SettingsError`` naming each path
(``lb_settings:carp:state_dir: ...``).  The five keys this replaced
(``lb_carp``, ``lb_routing``, ``haproxy_cfg``, ``lb_haproxy``,
``clustercheck``) are refused wherever they are, naming where each moved.
``findings(data)`` is what the pillar gate refuses.
"""

from __future__ import annotations

from typing import Any

import lb_grammar
import lb_parameters

KEY = "lb_settings"
SECTIONS = ("carp", "routing", "haproxy", "haproxy_sls", "clustercheck")
# the keys of earlier releases, and the section each moved to
MOVED = {"lb_carp": "carp", "lb_routing": "routing", "haproxy_cfg": "haproxy", "lb_haproxy": "haproxy_sls", "clustercheck": "clustercheck"}

_PATH = lb_grammar.SH_PATH
_NAME = lb_grammar.UNIX_NAME


def _choice(*values):
    return ("choice", values)


_PATH_OR_FALSE = ("path_or_false",)
_PORT = ("int", 1, 65535)
_TIMEOUT = ("number", 0.1, 3600)
_PACKAGES = ("list", lb_grammar.PACKAGE_NAME)

SCHEMAS: dict[str, dict[str, Any]] = {
    # lb_parameters' carp section (both families), the binaries, the forced provider
    "carp": {
        **{k: _PATH for k in sorted(lb_parameters.keys("carp"))},
        "keepalived_bin": _PATH,
        "ucarp_bin": _PATH,
        "provider": _choice("keepalived", "ucarp"),
    },
    # haproxy_cfg.settings()
    "haproxy": {
        "os_family": _choice("FreeBSD", "Debian"),
        "config": _PATH,
        "socket": _PATH,
        "master_socket": _PATH,
        "pidfile": _PATH,
        "certs_dir": _PATH,
        "state_file": _PATH,
        "chroot": _PATH,
        "binary": _PATH,
        "user": _NAME,
        "group": _NAME,
        "timeout": _TIMEOUT,
    },
    # lb_parameters' haproxy_sls section (the haproxy SLS's own: haproxy_cfg.sls_params)
    "haproxy_sls": {
        "pkg": lb_grammar.PACKAGE_NAME,
        "unmanaged": _choice("remove", "keep"),
        "init_defaults": _PATH_OR_FALSE,
    },
    # lb_probe.params() (both OS families) and the pair's name
    "clustercheck": {
        "pair": lb_grammar.HAPROXY_NAME,
        "python": _PATH,
        "client": _PATH,
        "client_path": lb_grammar.SH_PATH_LIST,
        "probe": _PATH,
        "config": _PATH,
        "socket": _PATH,
        "xinetd_service": _PATH,
        "inetd_conf": _PATH,
        "services": _PATH,
        "hosts_allow": _PATH,
        "inetd_rc": _PATH,
        "maintenance_file": _PATH,
        "shell": _PATH,
        "packages": _PACKAGES,
        "daemon": _choice("xinetd", "inetd"),
        "root_group": _NAME,
        "user": _NAME,
        "group": _NAME,
        "host": lb_grammar.HOSTNAME,
        "port": _PORT,
        "bind": lb_grammar.IPV4,
    },
    # lb_parameters' routing section (both families) and routing.paths()'s pidfile
    # (not hook_conf: always beside the hook)
    "routing": {k: _PATH for k in sorted({*lb_parameters.keys("routing"), "pidfile"} - {"hook_conf"})},
}
# values a key may leave unset (lb_probe.params() skips a None)
_NULLABLE = {"clustercheck"}


class SettingsError(ValueError):
    """Per-minion settings with errors; ``.errors`` is [(path, message)]."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {m}" for p, m in self.errors))


def _describe(spec) -> str:
    if isinstance(spec, lb_grammar.Rule):
        return spec.what
    kind = spec[0]
    if kind == "choice":
        return "one of " + ", ".join(spec[1])
    if kind == "bool":
        return "true or false"
    if kind == "path_or_false":
        return f"false or {_PATH.what}"
    if kind in ("int", "number"):
        return f"a number in {spec[1]}-{spec[2]}"
    return f"a list of {spec[1].what}"


def _value_problem(spec, value) -> str | None:
    if isinstance(spec, lb_grammar.Rule):
        return spec.problem(value)
    kind = spec[0]
    if kind == "choice":
        return None if isinstance(value, str) and value in spec[1] else f"{value!r} is not {_describe(spec)}"
    if kind == "bool":
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    if kind == "path_or_false":
        return None if value is False else _PATH.problem(value)
    if kind in ("int", "number"):
        ok_type = int if kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type) or not spec[1] <= value <= spec[2]:
            return f"{value!r} is not {_describe(spec)}"
        return None
    if not isinstance(value, list) or not value:
        return f"{value!r} is not {_describe(spec)}"
    for item in value:
        problem = spec[1].problem(item)
        if problem is not None:
            return problem
    return None


def check(section: str, mapping) -> list[tuple[str, str]]:
    """Every problem of the settings mapping ``mapping`` of ``section``, as
    (settings path, message); [] when it is fine (None, an empty mapping,
    is fine: the defaults apply)."""
    if section not in SCHEMAS:
        raise KeyError(f"no settings section {section!r} (known: {', '.join(SECTIONS)})")
    if mapping is None:
        return []
    where = f"{KEY}:{section}"
    if not isinstance(mapping, dict):
        return [(where, f"must be a mapping, got {type(mapping).__name__}")]
    schema = SCHEMAS[section]
    out = []
    for name, value in mapping.items():
        path = f"{where}:{name}"
        if name not in schema:
            out.append((path, f"unknown setting (known: {', '.join(sorted(schema))})"))
            continue
        if value is None and section in _NULLABLE:
            continue
        problem = _value_problem(schema[name], value)
        if problem is not None:
            out.append((path, problem))
    return out


def validate(section: str, mapping) -> dict:
    """``mapping`` (a copy; {} for None) when ``check`` finds nothing, else
    SettingsError with every problem and its settings path."""
    errors = check(section, mapping)
    if errors:
        raise SettingsError(errors)
    return dict(mapping or {})


def check_value(value) -> list[tuple[str, str]]:
    """Every problem of a whole ``lb_settings`` value: not a mapping, an
    unknown section, each section's problems."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [(KEY, f"must be a mapping of {', '.join(SECTIONS)}, got {type(value).__name__}")]
    out = []
    for section, mapping in value.items():
        if section not in SCHEMAS:
            out.append((f"{KEY}:{section}", f"unknown section (known: {', '.join(SECTIONS)})"))
        else:
            out += check(section, mapping)
    return out


def moved(data) -> list[tuple[str, str]]:
    """The keys of earlier releases ``data`` still has, each with where it
    moved."""
    if not hasattr(data, "get"):
        return []
    return [(old, f"moved to {KEY}:{new} (CHANGELOG.md)") for old, new in MOVED.items() if data.get(old) is not None]


def lookup(section: str, *sources) -> dict:
    """The one way every module reads its settings: ``section`` of the
    ``lb_settings`` mapping of the first of `sources` that has it (pass the
    minion's config, grains and pillar, in that order: the first place
    that sets a section wins it whole, as Salt's config.get does for a
    key), checked: SettingsError naming each path when that source's
    ``lb_settings`` is wrong anywhere, or when any source still has a key
    of an earlier release; {} when none sets the section."""
    errors = [e for source in sources for e in moved(source)]
    if errors:
        raise SettingsError(errors)
    for source in sources:
        value = source.get(KEY) if hasattr(source, "get") else None
        if value is None:
            continue
        errors = check_value(value)
        if errors:
            raise SettingsError(errors)
        if value.get(section) is not None:
            return dict(value[section])
    return {}


def raw(section: str, *sources) -> dict:
    """``section`` as ``lookup`` finds it, unchecked and never raising: for
    what must not fail (a provider module's __virtual__ reads only the
    forced `provider`; the module's first call checks)."""
    for source in sources:
        value = source.get(KEY) if hasattr(source, "get") else None
        if isinstance(value, dict) and isinstance(value.get(section), dict):
            return value[section]
    return {}


def findings(data) -> list[tuple[str, str]]:
    """Every problem of the settings ``data`` (a compiled pillar, a minion
    config or grains) holds: what the pillar gate refuses."""
    if not isinstance(data, dict):
        return []
    return moved(data) + check_value(data.get(KEY))
